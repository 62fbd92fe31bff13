import { describe, expect, it } from 'vitest';
import {
  REPLAY_MAX_RANGE_MS,
  REPLAY_SPEED_CHOICES,
  checkRange,
  clampToRange,
  formatVnClock,
  formatVnRange,
  fromVnInputValue,
  jumpRange,
  presetRange,
  toVnInputValue,
} from '../src/live/replay-time.js';

// 2026-03-05 01:30:15 UTC is 08:30:15 in Vietnam.
const T = Date.UTC(2026, 2, 5, 1, 30, 15);
const MIN = 60_000;

describe('datetime-local values in Vietnam time', () => {
  it('writes and reads UTC+7 whatever the process zone', () => {
    expect(toVnInputValue(T)).toBe('2026-03-05T08:30:15');
    expect(fromVnInputValue('2026-03-05T08:30:15')).toBe(T);
    // Browsers drop ":00" seconds; fractions are allowed.
    expect(fromVnInputValue('2026-03-05T08:30')).toBe(T - 15_000);
    expect(fromVnInputValue('2026-03-05T08:30:15.5')).toBe(T + 500);
  });

  it('crosses the date line at Vietnamese midnight, not UTC midnight', () => {
    const utcEvening = Date.UTC(2026, 11, 31, 17, 0, 0); // 00:00 on 1 January in Vietnam
    expect(toVnInputValue(utcEvening)).toBe('2027-01-01T00:00:00');
    expect(toVnInputValue(utcEvening - 1000)).toBe('2026-12-31T23:59:59');
    expect(fromVnInputValue('2027-01-01T00:00:00')).toBe(utcEvening);
  });

  it('round-trips whole seconds', () => {
    for (const ms of [7 * 3_600_000, T, Date.UTC(2024, 1, 29, 16, 59, 59), Date.UTC(2030, 5, 30, 23, 0, 1)]) expect(fromVnInputValue(toVnInputValue(ms))).toBe(ms);
  });

  it('refuses empty, malformed and impossible values', () => {
    for (const value of ['', 'now', '2026-03-05', '2026-03-05 08:30', '2026-02-30T10:00', '2026-13-01T10:00', '2026-03-05T24:00', '2026-03-05T08:60']) {
      expect(fromVnInputValue(value), value).toBeNull();
    }
    // Two-digit years are years, not 19xx (Date.UTC would say 1999).
    expect(fromVnInputValue('0099-01-01T07:00:00')).toBe(new Date('0099-01-01T00:00:00Z').getTime());
  });
});

describe('ranges', () => {
  it('presets end now, on a whole second', () => {
    expect(presetRange('15m', T + 999)).toEqual({ from: T - 15 * MIN, to: T });
    expect(presetRange('1h', T)).toEqual({ from: T - 60 * MIN, to: T });
    expect(presetRange('6h', T).to - presetRange('6h', T).from).toBe(6 * 60 * MIN);
    expect(presetRange('24h', T).to - presetRange('24h', T).from).toBe(24 * 60 * MIN);
  });

  it('replays an alert from 10 min before to 20 min after, clipped to now', () => {
    expect(jumpRange(T, T + 60 * MIN)).toEqual({ from: T - 10 * MIN, to: T + 20 * MIN });
    expect(jumpRange(T, T + 5 * MIN)).toEqual({ from: T - 10 * MIN, to: T + 5 * MIN });
    // Stamped ahead of now: still a 10-minute range ending now.
    expect(jumpRange(T + 3 * MIN, T)).toEqual({ from: T - 10 * MIN, to: T });
    expect(jumpRange(T + 123, T + 60 * MIN + 456)).toEqual({ from: T - 10 * MIN, to: T + 20 * MIN });
  });

  it('says why the api would refuse a range', () => {
    expect(checkRange(T - MIN, T, T)).toBeNull();
    expect(checkRange(null, T, T)).toBe('missing');
    expect(checkRange(T, null, T)).toBe('missing');
    expect(checkRange(T, T, T)).toBe('order');
    expect(checkRange(T, T - 1, T)).toBe('order');
    expect(checkRange(T - MIN, T + 61_000, T)).toBe('future');
    expect(checkRange(T - MIN, T + 59_000, T)).toBeNull();
    expect(checkRange(T - REPLAY_MAX_RANGE_MS, T, T)).toBeNull();
    expect(checkRange(T - REPLAY_MAX_RANGE_MS - 1, T, T)).toBe('too-long');
  });

  it('clamps a seek into the range', () => {
    const range = { from: T - MIN, to: T };
    expect(clampToRange(T - 2 * MIN, range)).toBe(T - MIN);
    expect(clampToRange(T + 1, range)).toBe(T);
    expect(clampToRange(T - 1, range)).toBe(T - 1);
  });
});

describe('clock and speeds', () => {
  it('shows the clock as HH:mm:ss dd/MM in Vietnam time', () => {
    expect(formatVnClock(T)).toBe('08:30:15 05/03');
    expect(formatVnClock(Date.UTC(2026, 11, 31, 17, 0, 0))).toBe('00:00:00 01/01');
    // A range within one Vietnamese day names the day once; across midnight (VN), both.
    expect(formatVnRange(T, T + 3_600_000)).toBe('08:30:15–09:30:15 05/03');
    expect(formatVnRange(Date.UTC(2026, 11, 31, 16, 0, 0), Date.UTC(2026, 11, 31, 17, 30, 0))).toBe('23:00:00 31/12 – 00:30:00 01/01');
  });

  it('offers 1–60× within the contract bounds', () => {
    expect(REPLAY_SPEED_CHOICES).toEqual([1, 2, 5, 10, 30, 60]);
  });
});
