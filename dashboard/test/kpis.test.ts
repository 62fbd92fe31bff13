import { type FieldValue, type ProvinceSummary } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import { kpisFromDevices, kpisFromSummaries } from '../src/live/kpis.js';
import type { DeviceEntry } from '../src/live/store.js';

const T = Date.UTC(2026, 0, 1, 3, 0, 0);
const WINDOW = 5 * 60_000;

function summary(province: string, over: { env?: Partial<ProvinceSummary['environment']>; traffic?: Partial<ProvinceSummary['traffic']>; energy?: Partial<ProvinceSummary['energy']>; ts?: number } = {}): ProvinceSummary {
  return {
    province,
    ts: over.ts ?? T,
    devices: { total: 10, online: 7, offline: 2, stale: 1 },
    environment: { devices: 4, reporting: 2, ...over.env },
    traffic: { devices: 4, reporting: 4, ...over.traffic },
    energy: { devices: 2, reporting: 1, outOfBand: 0, ...over.energy },
    alerts: { info: 1, warning: 2, critical: 3 },
  };
}

describe('kpisFromSummaries', () => {
  it('weights means by reporting devices, takes the max of maxima and sums counts', () => {
    const kpis = kpisFromSummaries([
      summary('01', { env: { reporting: 1, vnAqiMean: 100, vnAqiMax: 100 }, traffic: { reporting: 3, congestedShare: 1, worstLos: 'E' }, energy: { reporting: 1, loadFactorMean: 0.9, loadFactorMax: 0.9, outOfBand: 1 }, ts: T - 2_000 }),
      summary('79', { env: { reporting: 3, vnAqiMean: 40, vnAqiMax: 60 }, traffic: { reporting: 1, congestedShare: 0, worstLos: 'F' }, energy: { reporting: 3, loadFactorMean: 0.5, loadFactorMax: 1.2, outOfBand: 2 } }),
    ]);
    expect(kpis.devices).toEqual({ total: 20, online: 14, offline: 4, stale: 2 });
    expect(kpis.vnAqiMean).toBeCloseTo((100 * 1 + 40 * 3) / 4);
    expect(kpis.vnAqiMax).toBe(100);
    expect(kpis.congestedShare).toBeCloseTo(3 / 4);
    expect(kpis.worstLos).toBe('F');
    expect(kpis.loadFactorMean).toBeCloseTo((0.9 + 0.5 * 3) / 4);
    expect(kpis.loadFactorMax).toBe(1.2);
    expect(kpis.outOfBand).toBe(3);
    expect(kpis.alerts).toEqual({ info: 2, warning: 4, critical: 6 });
    // As of the oldest summary used.
    expect(kpis.asOf).toBe(T - 2_000);
  });

  it('uses only the provinces asked for, and leaves figures no province has absent', () => {
    const all = [summary('01', { env: { vnAqiMean: 80, vnAqiMax: 90 } }), summary('79')];
    const hcm = kpisFromSummaries(all, ['79']);
    expect(hcm.devices.total).toBe(10);
    expect('vnAqiMean' in hcm).toBe(false);
    expect(hcm.vnAqiMax).toBeUndefined();
    expect(hcm.worstLos).toBeUndefined();
    expect(kpisFromSummaries(all, ['01']).vnAqiMean).toBe(80);
  });

  it('gives zeros and no time for no summaries', () => {
    expect(kpisFromSummaries([])).toEqual({ devices: { total: 0, online: 0, offline: 0, stale: 0 }, outOfBand: 0, alerts: { info: 0, warning: 0, critical: 0 }, asOf: null });
  });

  it('does not let a mean with no reporting devices weigh in', () => {
    const kpis = kpisFromSummaries([summary('01', { env: { reporting: 0, vnAqiMean: 300 } }), summary('79', { env: { reporting: 2, vnAqiMean: 50 } })]);
    expect(kpis.vnAqiMean).toBe(50);
  });
});

function entry(id: string, domain: DeviceEntry['domain'], ts: number | null, derived: Record<string, FieldValue> = {}, over: Partial<DeviceEntry> = {}): DeviceEntry {
  return {
    id,
    name: `Thiết bị ${id}`,
    province: '01',
    domain,
    kind: 'x',
    location: [105.8, 21],
    status: 'online',
    reading: ts === null ? null : { ts, seq: 1, values: {}, derived, state: { level: 'x', color: '#000' } },
    ...over,
  };
}

describe('kpisFromDevices', () => {
  const devices = [
    entry('e1', 'environment', T - 1_000, { vnAqi: 40 }),
    entry('e2', 'environment', T - 2_000, { vnAqi: 120 }),
    // Stale: its AQI must not count.
    entry('e3', 'environment', T - WINDOW - 1, { vnAqi: 400 }),
    entry('e4', 'environment', null),
    entry('t1', 'traffic', T, { los: 'F' }),
    entry('t2', 'traffic', T, { los: 'B' }),
    entry('t3', 'traffic', T, { los: 'C' }),
    entry('t4', 'traffic', T, { los: 'E' }, { province: '79' }),
    entry('g1', 'energy', T - WINDOW, { loadFactor: 0.5, outOfBand: true }),
    entry('g2', 'energy', T, { loadFactor: 0.9, outOfBand: false }),
    // Reported offline after its last reading.
    entry('g3', 'energy', T, { loadFactor: 2, outOfBand: true }, { status: 'offline' }),
  ];

  it('judges devices at the clock and aggregates the reporting ones', () => {
    const kpis = kpisFromDevices(devices, { clock: T, liveWindowMs: WINDOW, alerts: { info: 0, warning: 1, critical: 2 } });
    expect(kpis.devices).toEqual({ total: 11, online: 8, offline: 1, stale: 2 });
    expect(kpis.vnAqiMean).toBe(80);
    expect(kpis.vnAqiMax).toBe(120);
    expect(kpis.congestedShare).toBeCloseTo(2 / 4);
    expect(kpis.worstLos).toBe('F');
    expect(kpis.loadFactorMean).toBeCloseTo(0.7);
    expect(kpis.loadFactorMax).toBe(0.9);
    expect(kpis.outOfBand).toBe(1);
    expect(kpis.alerts).toEqual({ info: 0, warning: 1, critical: 2 });
    expect(kpis.asOf).toBe(T);
  });

  it('filters by province and ignores live status in a replay', () => {
    const hcm = kpisFromDevices(devices, { province: '79', clock: T, liveWindowMs: WINDOW });
    expect(hcm.devices).toEqual({ total: 1, online: 1, offline: 0, stale: 0 });
    expect(hcm.congestedShare).toBe(1);
    expect(hcm.worstLos).toBe('E');
    expect(hcm.vnAqiMean).toBeUndefined();
    expect(hcm.alerts).toEqual({ info: 0, warning: 0, critical: 0 });

    const replay = kpisFromDevices(devices, { clock: T, liveWindowMs: WINDOW, mode: 'replay' });
    expect(replay.devices).toEqual({ total: 11, online: 9, offline: 0, stale: 2 });
    expect(replay.loadFactorMax).toBe(2);
    expect(replay.outOfBand).toBe(2);
  });

  it('does not count readings after the replay clock, but allows them live (device clocks run ahead)', () => {
    const early = T - 10 * 60_000;
    expect(kpisFromDevices(devices, { clock: early, liveWindowMs: WINDOW, mode: 'replay' }).devices).toEqual({ total: 11, online: 0, offline: 0, stale: 11 });
    expect(kpisFromDevices(devices, { clock: early, liveWindowMs: WINDOW }).devices.online).toBe(9);
  });
});
