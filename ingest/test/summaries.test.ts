import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import { ProvinceSummary, type Derived, type Fields } from '@citypulse/contracts';
import { ProvinceSummaries, SUMMARY_DEFAULTS, type SummaryDevice } from '../src/summaries.js';

/** ProvinceSummaries is pure state: these tests feed it readings and statuses with explicit clocks. */

const T0 = Date.UTC(2026, 0, 15, 1, 0, 0); // 08:00 in Hà Nội
const SEC = 1000;
const MIN = 60 * SEC;
const checkSummary = Compile(ProvinceSummary);

const air = (id: string, province = '01'): SummaryDevice => ({ deviceId: id, province, domain: 'environment' });
const loop = (id: string, province = '79'): SummaryDevice => ({ deviceId: id, province, domain: 'traffic' });
const feeder = (id: string, province = '79'): SummaryDevice => ({ deviceId: id, province, domain: 'energy' });

/** Builds and checks every summary against the contract's schema. */
function build(summaries: ProvinceSummaries, now: number, alerts: Parameters<ProvinceSummaries['build']>[1] = {}): Map<string, ProvinceSummary> {
  const out = summaries.build(now, alerts);
  for (const summary of out) expect(checkSummary.Check(summary), JSON.stringify(checkSummary.Errors(summary)[0])).toBe(true);
  return new Map(out.map((s) => [s.province, s]));
}

function reading(summaries: ProvinceSummaries, device: SummaryDevice, at: number, values: Fields, derived: Derived = {}): void {
  summaries.onReading(device, values, derived, at, at);
}

describe('figures', () => {
  it('environment: mean and max VN_AQI with its station, mean PM2.5 over the stations that measure it', () => {
    const s = new ProvinceSummaries();
    reading(s, air('hn-air-01'), T0, { pm25: 20 }, { vnAqi: 40, vnAqiDominant: 'pm25' });
    reading(s, air('hn-air-02'), T0, { pm25: 62.5 }, { vnAqi: 120, vnAqiDominant: 'pm25' });
    reading(s, air('hn-air-03'), T0, { no2: 30 }, {}); // no PM: no indicative VN_AQI
    reading(s, air('hn-air-04'), T0, { pm25: 35.5, pm10: 80 }, { vnAqi: 71 });
    expect(build(s, T0 + SEC).get('01')?.environment).toEqual({
      devices: 4,
      reporting: 4,
      vnAqiMean: (40 + 120 + 71) / 3,
      vnAqiMax: 120,
      vnAqiMaxDevice: 'hn-air-02',
      pm25Mean: (20 + 62.5 + 35.5) / 3,
    });
  });

  it('traffic: share at LOS E or F, worst LOS with its detector (ties to the smaller id), speed ratio only from probe data', () => {
    const s = new ProvinceSummaries();
    reading(s, loop('hcm-loop-01'), T0, { averageVehicleSpeed: 50 }, { los: 'A' });
    reading(s, loop('hcm-loop-02'), T0, { averageVehicleSpeed: 30 }, { los: 'C' });
    reading(s, loop('hcm-loop-04'), T0, { averageVehicleSpeed: 5 }, { los: 'F' });
    reading(s, loop('hcm-loop-03'), T0, { averageVehicleSpeed: 8 }, { los: 'F' });
    reading(s, loop('hcm-loop-05'), T0, { averageVehicleSpeed: 15 }, { los: 'E' });
    const traffic = build(s, T0 + SEC).get('79')?.traffic;
    expect(traffic).toEqual({ devices: 5, reporting: 5, congestedShare: 3 / 5, worstLos: 'F', worstDevice: 'hcm-loop-03' });
    expect(traffic).not.toHaveProperty('meanSpeedRatio'); // loop detectors report no free-flow speed

    reading(s, loop('hcm-probe-01'), T0 + SEC, { currentSpeed: 20, freeFlowSpeed: 50 }, {});
    reading(s, loop('hcm-probe-02'), T0 + SEC, { averageVehicleSpeed: 45, freeFlowSpeed: 60 }, {});
    const withProbes = build(s, T0 + 2 * SEC).get('79')?.traffic;
    expect(withProbes?.meanSpeedRatio).toBeCloseTo((0.4 + 0.75) / 2, 12);
    // Probes without a LOS do not change the congested share's denominator.
    expect(withProbes).toMatchObject({ devices: 7, reporting: 7, congestedShare: 3 / 5 });
  });

  it('energy: mean and max load factor with its feeder, feeders out of band', () => {
    const s = new ProvinceSummaries();
    reading(s, feeder('hcm-feeder-01'), T0, { frequency: 50.01 }, { loadFactor: 0.5, outOfBand: false });
    reading(s, feeder('hcm-feeder-02'), T0, { frequency: 50.3 }, { loadFactor: 0.92, outOfBand: true });
    reading(s, feeder('hcm-feeder-03'), T0, { frequency: 49.7 }, { outOfBand: true }); // rating unknown: no load factor
    expect(build(s, T0 + SEC).get('79')?.energy).toEqual({
      devices: 3,
      reporting: 3,
      loadFactorMean: (0.5 + 0.92) / 2,
      loadFactorMax: 0.92,
      loadFactorMaxDevice: 'hcm-feeder-02',
      outOfBand: 2,
    });
  });

  it('uses the latest reading of each device, and an older one arriving late does not replace it', () => {
    const s = new ProvinceSummaries();
    const device = air('hn-air-01');
    s.onReading(device, { pm25: 30 }, { vnAqi: 60 }, T0, T0);
    s.onReading(device, { pm25: 80 }, { vnAqi: 160 }, T0 + MIN, T0 + MIN);
    // Part of a backlog: measured earlier, received later.
    s.onReading(device, { pm25: 10 }, { vnAqi: 20 }, T0 + MIN + SEC, T0 - 10 * MIN);
    expect(build(s, T0 + MIN + 2 * SEC).get('01')?.environment).toMatchObject({ vnAqiMax: 160, pm25Mean: 80 });
    // A value missing from the latest reading is missing, not the previous one.
    s.onReading(device, { no2: 40 }, {}, T0 + 2 * MIN, T0 + 2 * MIN);
    expect(build(s, T0 + 2 * MIN).get('01')?.environment).toEqual({ devices: 1, reporting: 1 });
  });

  it('passes the active alert counts through, zeros for a province without any', () => {
    const s = new ProvinceSummaries();
    s.declare('01');
    s.declare('79');
    const summaries = build(s, T0, { '79': { info: 1, warning: 2, critical: 3 } });
    expect(summaries.get('79')?.alerts).toEqual({ info: 1, warning: 2, critical: 3 });
    expect(summaries.get('01')?.alerts).toEqual({ info: 0, warning: 0, critical: 0 });
  });
});

describe('device states', () => {
  it('counts a device stale after staleIntervals × its learnt interval, never sooner than minStaleMs', () => {
    const s = new ProvinceSummaries();
    const fast = loop('hcm-loop-01'); // every 20 s: stale after max(3 × 20 s, 30 s) = 60 s
    const slow = loop('hcm-loop-02'); // every 60 s: stale after 180 s
    const gateway = loop('hcm-loop-03'); // 1 Hz: 3 s, but never stale sooner than 30 s
    for (let i = 0; i <= 3; i++) reading(s, fast, T0 + i * 20 * SEC, {}, { los: 'B' });
    for (let i = 0; i <= 1; i++) reading(s, slow, T0 + i * MIN, {}, { los: 'C' });
    for (let i = 0; i <= 60; i++) reading(s, gateway, T0 + i * SEC, {}, { los: 'D' });
    const last = { fast: T0 + 60 * SEC, slow: T0 + MIN, gateway: T0 + 60 * SEC };
    expect(SUMMARY_DEFAULTS).toMatchObject({ staleIntervals: 3, minStaleMs: 30_000 });

    const at = (now: number) => build(s, now).get('79');
    expect(at(last.fast + 30 * SEC)?.devices).toEqual({ total: 3, online: 3, offline: 0, stale: 0 });
    expect(at(last.gateway + 30 * SEC + 1)?.devices).toEqual({ total: 3, online: 2, offline: 0, stale: 1 });
    expect(at(last.fast + 60 * SEC + 1)?.devices).toEqual({ total: 3, online: 1, offline: 0, stale: 2 });
    expect(at(last.slow + 180 * SEC)?.devices.stale).toBe(2);
    const allStale = at(last.slow + 180 * SEC + 1);
    expect(allStale?.devices).toEqual({ total: 3, online: 0, offline: 0, stale: 3 });
    // Stale devices keep counting as devices of their domain, not in the figures.
    expect(allStale?.traffic).toEqual({ devices: 3, reporting: 0 });
  });

  it('uses the registry interval when given, and a default until an interval is known', () => {
    const s = new ProvinceSummaries();
    reading(s, { ...air('hn-air-01'), expectedIntervalMs: 5 * MIN }, T0, { pm25: 10 });
    reading(s, air('hn-air-02'), T0, { pm25: 20 }); // one reading: default 60 s interval, stale after 180 s
    const at = (now: number) => build(s, now).get('01')?.devices;
    expect(at(T0 + 180 * SEC)).toMatchObject({ online: 2, stale: 0 });
    expect(at(T0 + 180 * SEC + 1)).toMatchObject({ online: 1, stale: 1 });
    expect(at(T0 + 15 * MIN + 1)).toMatchObject({ online: 0, stale: 2 });
  });

  it('counts offline from a status until the next reading; an older offline status does not count', () => {
    const s = new ProvinceSummaries();
    const device = feeder('hcm-feeder-01');
    reading(s, device, T0, {}, { loadFactor: 0.5, outOfBand: true });
    s.onStatus(device.deviceId, '79', 'energy', 'offline', T0 + SEC);
    const offline = build(s, T0 + 2 * SEC).get('79');
    expect(offline?.devices).toEqual({ total: 1, online: 0, offline: 1, stale: 0 });
    expect(offline?.energy).toEqual({ devices: 1, reporting: 0, outOfBand: 0 });

    reading(s, device, T0 + 10 * SEC, {}, { loadFactor: 0.6, outOfBand: false });
    // The last will, delivered after a reading that came later.
    s.onStatus(device.deviceId, '79', 'energy', 'offline', T0 + 5 * SEC);
    expect(build(s, T0 + 11 * SEC).get('79')?.devices).toEqual({ total: 1, online: 1, offline: 0, stale: 0 });
  });

  it('counts a device that said online but sent nothing as online until its stale limit, then stale', () => {
    const s = new ProvinceSummaries();
    s.onStatus('hn-air-09', '01', 'environment', 'online', T0);
    expect(build(s, T0 + 180 * SEC).get('01')?.devices).toEqual({ total: 1, online: 1, offline: 0, stale: 0 });
    const later = build(s, T0 + 180 * SEC + 1).get('01');
    expect(later?.devices).toEqual({ total: 1, online: 0, offline: 0, stale: 1 });
    // A device without readings has nothing to report even while online.
    expect(build(s, T0).get('01')?.environment).toEqual({ devices: 1, reporting: 0 });
  });

  it('staleness counts from the newest sign of life: an online status restarts it', () => {
    const s = new ProvinceSummaries();
    reading(s, air('hn-air-01'), T0, { pm25: 10 });
    s.onStatus('hn-air-01', '01', 'environment', 'online', T0 + 2 * MIN);
    expect(build(s, T0 + 4 * MIN).get('01')?.devices).toMatchObject({ online: 1, stale: 0 });
    expect(build(s, T0 + 5 * MIN + 1).get('01')?.devices).toMatchObject({ online: 0, stale: 1 });
  });
});

describe('provinces and devices', () => {
  it('summarises every province seen or declared, sorted, with absent figures when there is no data', () => {
    const s = new ProvinceSummaries();
    s.declare('48');
    reading(s, feeder('hcm-feeder-01'), T0, {}, { outOfBand: false });
    reading(s, air('hn-air-01'), T0, { no2: 12 });
    const summaries = s.build(T0 + SEC, {});
    expect(summaries.map((x) => x.province)).toEqual(['01', '48', '79']);
    expect(summaries[1]).toEqual({
      province: '48',
      ts: T0 + SEC,
      devices: { total: 0, online: 0, offline: 0, stale: 0 },
      environment: { devices: 0, reporting: 0 },
      traffic: { devices: 0, reporting: 0 },
      energy: { devices: 0, reporting: 0, outOfBand: 0 },
      alerts: { info: 0, warning: 0, critical: 0 },
    });
    expect(() => s.declare('63')).toThrow(expect.objectContaining({ code: 'E_PROVINCE' }));
  });

  it('forget drops a device; its province stays listed', () => {
    const s = new ProvinceSummaries();
    reading(s, air('hn-air-01'), T0, { pm25: 10 }, { vnAqi: 20 });
    reading(s, air('hn-air-02'), T0, { pm25: 90 }, { vnAqi: 170 });
    s.forget('hn-air-02');
    s.forget('not-a-device');
    expect(s.size).toBe(1);
    expect(build(s, T0 + SEC).get('01')?.environment).toEqual({ devices: 1, reporting: 1, vnAqiMean: 20, vnAqiMax: 20, vnAqiMaxDevice: 'hn-air-01', pm25Mean: 10 });
    s.forget('hn-air-01');
    expect(build(s, T0 + SEC).get('01')?.devices.total).toBe(0);
  });

  it('moves a device registered again in another province or domain, without its old values', () => {
    const s = new ProvinceSummaries();
    reading(s, air('dev-01', '01'), T0, { pm25: 50 }, { vnAqi: 100 });
    s.onStatus('dev-01', '79', 'energy', 'online', T0 + SEC);
    const summaries = build(s, T0 + 2 * SEC);
    expect(summaries.get('01')?.devices.total).toBe(0);
    expect(summaries.get('79')?.energy).toEqual({ devices: 1, reporting: 0, outOfBand: 0 });
  });
});
