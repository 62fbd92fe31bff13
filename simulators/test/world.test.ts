import { frequencyBand } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import type { RainEvent, TrafficIncident, WorldEvent } from '../src/events.js';
import { buildWorld, parseSegmentId, placeDevices, vnLocalMs, WORLD_DEFAULTS, type SimulatedDevice, type World } from '../src/index.js';

const SEED = 7;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const devices: readonly SimulatedDevice[] = placeDevices({
  seed: SEED,
  groups: ['01', '79', '48', '12'].flatMap((province) => [
    { province, domain: 'traffic' as const, count: 40 },
    { province, domain: 'energy' as const, count: 50 },
  ]),
});

function worldOf(events: readonly WorldEvent[], background = false, seed = SEED): World {
  return buildWorld({ seed, events, devices, background });
}

const monday = vnLocalMs(2026, 3, 2);

describe('traffic incidents', () => {
  const startMs = monday + 8 * HOUR;
  const endMs = startMs + 30 * MINUTE;
  const severity = 0.8;
  const world = worldOf([{ type: 'traffic-incident', province: '01', segment: '01-c1-s1', severity, startMs, endMs }]);
  const capacity = (segment: string, minute: number, direction: 'forward' | 'backward' = 'forward') => world.segmentCapacity(segment, direction, startMs + minute * MINUTE);
  const { spillDelayMs, spillDecay, clearanceBaseMs, clearancePerSeverityMs, oppositeShare } = WORLD_DEFAULTS.incident;
  const spillMin = spillDelayMs / MINUTE;
  const clearanceMin = (clearanceBaseMs + severity * clearancePerSeverityMs) / MINUTE;

  it('take their severity off the segment within a minute, and a share off the opposite direction', () => {
    expect(capacity('01-c1-s1', -1)).toBe(1);
    expect(capacity('01-c1-s1', 1)).toBeCloseTo(1 - severity, 6);
    expect(capacity('01-c1-s1', 20)).toBeCloseTo(1 - severity, 6);
    expect(capacity('01-c1-s1', 20, 'backward')).toBeCloseTo(1 - oppositeShare * severity, 6);
    // Other corridors and provinces are untouched.
    expect(capacity('01-c2-s1', 20)).toBe(1);
    expect(capacity('79-c1-s2', 20)).toBe(1);
    expect(world.segmentCapacity('not-a-segment', 'forward', startMs + 20 * MINUTE)).toBe(1);
  });

  it('spread upstream one segment per spill delay, shallower with distance, never downstream', () => {
    expect(capacity('01-c1-s2', spillMin * 0.9)).toBe(1);
    expect(capacity('01-c1-s2', spillMin * 2 + 1)).toBeCloseTo(1 - severity * spillDecay, 6);
    expect(capacity('01-c1-s3', spillMin * 2)).toBe(1);
    expect(capacity('01-c1-s3', spillMin * 3 + 1)).toBeCloseTo(1 - severity * spillDecay ** 2, 6);
    // Only the inbound direction queues behind the incident.
    expect(capacity('01-c1-s2', 20, 'backward')).toBe(1);
  });

  it('clear over time after the end, the incident segment first and the queue behind it later', () => {
    const after = (minutes: number) => 30 + minutes;
    expect(capacity('01-c1-s1', after(clearanceMin / 2))).toBeCloseTo(1 - severity / 2, 6);
    expect(capacity('01-c1-s2', after(clearanceMin / 2))).toBeCloseTo(1 - severity * spillDecay, 6);
    expect(capacity('01-c1-s1', after(clearanceMin))).toBe(1);
    expect(capacity('01-c1-s2', after(clearanceMin))).toBeLessThan(1);
    expect(capacity('01-c1-s2', after(1.5 * clearanceMin))).toBe(1);
    const effectEnd = world.eventsBetween(startMs, endMs)[0];
    expect(effectEnd).toMatchObject({ type: 'traffic-incident', segment: '01-c1-s1' });
    // Long after, every segment of the corridor is back to normal.
    for (let s = 1; s <= 8; s++) expect(capacity(`01-c1-s${s}`, 4 * 60)).toBe(1);
  });

  it('raise the congestion of their province while they last', () => {
    expect(world.trafficCongestion('01', startMs - MINUTE)).toBe(0);
    expect(world.trafficCongestion('01', startMs + 20 * MINUTE)).toBeGreaterThan(severity);
    expect(world.trafficCongestion('79', startMs + 20 * MINUTE)).toBe(0);
  });

  it('without a segment, land on a segment with detectors whose upstream neighbour has detectors too', () => {
    const events: TrafficIncident[] = Array.from({ length: 20 }, (_, i) => ({ type: 'traffic-incident', province: '79', severity: 0.5, startMs: monday + i * DAY, endMs: monday + i * DAY + HOUR }));
    const watched = new Set(devices.filter((d) => d.province === '79').map((d) => d.segment?.id));
    const world79 = worldOf(events);
    for (const event of events) {
      // Find the chosen segment from its effect: the one whose capacity drops.
      const hit = [...watched].filter((id) => id !== undefined && world79.segmentCapacity(id, 'forward', event.startMs + 10 * MINUTE) < 0.6);
      expect(hit).toHaveLength(1);
      const parsed = parseSegmentId(hit[0] ?? '');
      expect(watched.has(`79-c${parsed?.corridor}-s${(parsed?.index ?? 0) + 1}`)).toBe(true);
    }
  });
});

describe('rain and pollution', () => {
  const startMs = monday + 14 * HOUR;
  const endMs = startMs + 2 * HOUR;
  const world = worldOf([
    { type: 'rain', provinces: ['01', '48'], mmPerHour: 12, startMs, endMs },
    { type: 'pollution-episode', provinces: ['01'], factor: 3, startMs, endMs: startMs + 6 * HOUR },
  ]);

  it('rains at the given rate in the given provinces only, and the washout builds up and fades over hours', () => {
    expect(world.rainMmPerHour('01', startMs + HOUR)).toBe(12);
    expect(world.rainMmPerHour('48', startMs + HOUR)).toBe(12);
    expect(world.rainMmPerHour('79', startMs + HOUR)).toBe(0);
    expect(world.rainMmPerHour('01', endMs)).toBe(0);
    const washout = [-1, 0.25, 1, 2, 3, 5, 12, 20].map((h) => world.rainWashout('01', startMs + h * HOUR));
    expect(washout[0]).toBe(0);
    expect(washout[1]).toBeGreaterThan(0.2);
    expect(washout[2]).toBeGreaterThan(washout[1] ?? 1);
    expect(washout[2]).toBeLessThanOrEqual(1);
    // After the rain it fades: still felt an hour later, almost gone by the next morning.
    expect(washout[4]).toBeLessThan(washout[3] ?? 0);
    expect(washout[4]).toBeGreaterThan(0.3);
    expect(washout[6]).toBeLessThan(0.05);
    expect(washout[7]).toBe(0);
  });

  it('multiplies pollution during an episode, ramping in and out', () => {
    expect(world.pollutionFactor('01', startMs - MINUTE)).toBe(1);
    expect(world.pollutionFactor('01', startMs + 10 * MINUTE)).toBeGreaterThan(1);
    expect(world.pollutionFactor('01', startMs + 10 * MINUTE)).toBeLessThan(3);
    expect(world.pollutionFactor('01', startMs + 3 * HOUR)).toBe(3);
    expect(world.pollutionFactor('01', startMs + 7 * HOUR)).toBe(1);
    expect(world.pollutionFactor('48', startMs + 3 * HOUR)).toBe(1);
  });

  it('draws background showers in each region’s rainy season', () => {
    const bg = worldOf([], true);
    const rainyDays = (province: string, month: number) => {
      const from = vnLocalMs(2026, month, 1);
      return new Set(bg.eventsBetween(from, from + 30 * DAY).filter((e): e is RainEvent => e.type === 'rain' && e.provinces.includes(province)).map((e) => Math.floor(e.startMs / DAY))).size;
    };
    // Hà Nội: summer monsoon; Hồ Chí Minh: May–November; Đà Nẵng: September–December.
    expect(rainyDays('01', 7)).toBeGreaterThan(2 * rainyDays('01', 1));
    expect(rainyDays('79', 8)).toBeGreaterThan(2 * rainyDays('79', 2));
    expect(rainyDays('48', 10)).toBeGreaterThan(2 * rainyDays('48', 4));
    expect(rainyDays('79', 8)).toBeGreaterThan(10);
    // Afternoon showers are what the dry months miss.
    const showers = bg.eventsBetween(vnLocalMs(2026, 7, 1), vnLocalMs(2026, 8, 1)).filter((e): e is RainEvent => e.type === 'rain');
    for (const shower of showers) {
      expect(shower.mmPerHour).toBeGreaterThan(0);
      expect(shower.endMs).toBeGreaterThan(shower.startMs);
      expect(bg.rainMmPerHour(shower.provinces[0] ?? '', (shower.startMs + shower.endMs) / 2)).toBeGreaterThanOrEqual(shower.mmPerHour);
    }
  });
});

describe('the grid', () => {
  it('shifts the frequency during an excursion and the voltage of one province during a sag', () => {
    const startMs = monday + 10 * HOUR;
    const world = worldOf([
      { type: 'frequency-excursion', deltaHz: -0.3, startMs, endMs: startMs + 3 * MINUTE },
      { type: 'voltage-sag', province: '48', depth: -0.1, startMs, endMs: startMs + MINUTE },
    ]);
    expect(world.frequencyOffsetHz(startMs - 1000)).toBe(0);
    expect(world.frequencyOffsetHz(startMs + MINUTE)).toBeCloseTo(-0.3, 6);
    expect(world.frequencyOffsetHz(startMs + 3 * MINUTE + WORLD_DEFAULTS.frequency.rampOutMs / 2)).toBeCloseTo(-0.15, 6);
    expect(world.frequencyOffsetHz(startMs + 5 * MINUTE)).toBe(0);
    expect(world.voltageOffset('48', startMs + 30_000)).toBe(-0.1);
    expect(world.voltageOffset('01', startMs + 30_000)).toBe(0);
    expect(world.voltageOffset('48', startMs + 2 * MINUTE)).toBe(0);
  });

  it('cuts the supply of about the given share of a province’s energy devices, the same ones throughout', () => {
    const startMs = monday + 19 * HOUR;
    const world = worldOf([{ type: 'grid-outage', province: '12', share: 0.4, startMs, endMs: startMs + HOUR }]);
    const energy = devices.filter((d) => d.domain === 'energy' && d.province === '12');
    const out = (ts: number) => energy.filter((d) => world.inOutage(d, ts)).map((d) => d.id);
    expect(out(startMs - 1)).toEqual([]);
    expect(out(startMs).length / energy.length).toBeGreaterThan(0.25);
    expect(out(startMs).length / energy.length).toBeLessThan(0.55);
    expect(out(startMs + 59 * MINUTE)).toEqual(out(startMs));
    expect(out(startMs + HOUR)).toEqual([]);
    expect(devices.filter((d) => d.province === '01' && world.inOutage(d, startMs + MINUTE))).toEqual([]);
  });

  it('has rare background excursions out of the ±0.2 Hz band, sags and outages', () => {
    const bg = worldOf([], true);
    const year = bg.eventsBetween(vnLocalMs(2026, 1, 1), vnLocalMs(2027, 1, 1));
    const excursions = year.filter((e) => e.type === 'frequency-excursion');
    expect(excursions.length).toBeGreaterThanOrEqual(3);
    expect(excursions.length).toBeLessThanOrEqual(30);
    for (const e of excursions) expect(frequencyBand(50 + bg.frequencyOffsetHz((e.startMs + e.endMs) / 2))).not.toBe('normal');
    expect(year.filter((e) => e.type === 'grid-outage').length).toBeGreaterThan(10);
    expect(year.filter((e) => e.type === 'voltage-sag').length).toBeGreaterThan(5);
    // None of it without background.
    expect(worldOf([]).eventsBetween(vnLocalMs(2026, 1, 1), vnLocalMs(2027, 1, 1))).toEqual([]);
  });
});

describe('the background', () => {
  it('puts accidents on busy cities every few hours and rarely in a mountain province', () => {
    const bg = worldOf([], true);
    const week = bg.eventsBetween(monday, monday + 7 * DAY).filter((e): e is TrafficIncident => e.type === 'traffic-incident');
    const count = (province: string) => week.filter((e) => e.province === province).length;
    expect(count('01')).toBeGreaterThan(7 * 2);
    expect(count('01')).toBeLessThan(7 * 12);
    expect(count('12')).toBeLessThan(count('48'));
    expect(count('48')).toBeLessThan(count('79'));
    for (const e of week) expect(devices.some((d) => d.segment?.id === e.segment)).toBe(true);
  });

  it('is the same for a seed whatever the order of questions, and differs for another seed', () => {
    const span = [vnLocalMs(2026, 6, 1), vnLocalMs(2026, 6, 15)] as const;
    const a = worldOf([], true);
    const b = worldOf([], true);
    expect(JSON.stringify(a.eventsBetween(...span))).toBe(JSON.stringify(b.eventsBetween(...span)));
    expect(JSON.stringify(worldOf([], true, SEED + 1).eventsBetween(...span))).not.toBe(JSON.stringify(a.eventsBetween(...span)));
    // Ask one world in time order and the other in a scrambled order: the answers agree.
    const moments = Array.from({ length: 400 }, (_, i) => span[0] + i * 47 * MINUTE);
    const scrambled = [...moments].sort((x, y) => ((x * 7919) % 1009) - ((y * 7919) % 1009));
    const ask = (w: World, ts: number) => [w.segmentCapacity('01-c1-s1', 'forward', ts), w.rainMmPerHour('79', ts), w.rainWashout('48', ts), w.frequencyOffsetHz(ts), w.trafficCongestion('01', ts)];
    const inOrder = new Map(moments.map((ts) => [ts, ask(a, ts)]));
    const fresh = worldOf([], true);
    for (const ts of scrambled) expect(ask(fresh, ts)).toEqual(inOrder.get(ts));
  });

  it('does not depend on devices of other provinces', () => {
    const alone = buildWorld({ seed: SEED, events: [], devices: devices.filter((d) => d.province === '48') });
    const with01 = worldOf([], true);
    const day = vnLocalMs(2026, 10, 12);
    for (let h = 0; h < 48; h++) {
      expect(alone.rainMmPerHour('48', day + h * HOUR)).toBe(with01.rainMmPerHour('48', day + h * HOUR));
      expect(alone.segmentCapacity('48-c1-s1', 'forward', day + h * HOUR)).toBe(with01.segmentCapacity('48-c1-s1', 'forward', day + h * HOUR));
    }
  });
});
