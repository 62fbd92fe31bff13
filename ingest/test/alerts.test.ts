import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import { AlertEvent, enrichReading, flattenReading, type Derived, type EnergyReading, type Fields } from '@citypulse/contracts';
import { AlertEngine, formatDuration, type AlertDevice } from '../src/alerts/engine.js';
import { validateAlertRules } from '../src/alerts/rules.js';

/** The alert engine is pure: these tests drive it with readings and clock ticks, no I/O. */

const T0 = Date.UTC(2026, 0, 15, 0, 0, 0); // 07:00 in Hà Nội
const SEC = 1000;
const MIN = 60 * SEC;

const air: AlertDevice = { deviceId: 'hn-air-01', province: '01', domain: 'environment', kind: 'roadside' };
const road: AlertDevice = { deviceId: 'hcm-loop-01', province: '79', domain: 'traffic', kind: 'arterial' };
const feeder: AlertDevice = { deviceId: 'hcm-feeder-01', province: '79', domain: 'energy', kind: 'feeder-22kv' };

const checkEvent = Compile(AlertEvent);

function engineWith(...rules: Record<string, unknown>[]): AlertEngine {
  return new AlertEngine(validateAlertRules({ rules }, 'test-rules.yaml'));
}

/** One reading per step, `stepMs` apart from `start`; returns every event in order. */
function feed(engine: AlertEngine, device: AlertDevice, start: number, stepMs: number, series: readonly (Fields | [Fields, Derived])[]): AlertEvent[] {
  const events: AlertEvent[] = [];
  series.forEach((item, i) => {
    const [values, derived] = Array.isArray(item) ? item : [item, {}];
    events.push(...engine.onReading(device, start + i * stepMs, values, derived));
  });
  return events;
}

const pm25 = (value: number): Fields => ({ pm25: value });
const aqi = (value: number): [Fields, Derived] => [{}, { vnAqi: value }];

const PM25_RULE = { id: 'pm25-high', kind: 'threshold', domain: 'environment', field: 'pm25', above: 55.4, for: '10m', severity: 'warning' };

describe('threshold rules', () => {
  it('raises only after the condition held continuously for `for`, with an operator-readable event', () => {
    const engine = engineWith(PM25_RULE);
    // 9 minutes above, one reading below, then 10 minutes above: only the second run raises.
    const first = feed(engine, air, T0, MIN, [...Array<Fields>(10).fill(pm25(62.1)), pm25(40)]);
    expect(first).toEqual([]);
    const second = feed(engine, air, T0 + 11 * MIN, MIN, Array<Fields>(11).fill(pm25(62.1)));
    expect(second).toHaveLength(1);
    const raisedAt = T0 + 21 * MIN;
    expect(second[0]).toEqual({
      id: `pm25-high|hn-air-01|${raisedAt}`,
      ruleId: 'pm25-high',
      kind: 'threshold',
      state: 'raised',
      severity: 'warning',
      deviceId: 'hn-air-01',
      province: '01',
      domain: 'environment',
      field: 'pm25',
      value: 62.1,
      threshold: 55.4,
      message: 'PM2.5 above 55.4 µg/m³ for 10 min (62.1)',
      raisedAt,
      ts: raisedAt,
    });
    expect(checkEvent.Check(second[0])).toBe(true);
    // The contract's schema is strict, so the api can refuse anything else.
    expect(checkEvent.Check({ ...second[0], state: 'open' })).toBe(false);
    expect(checkEvent.Check({ ...second[0], ruleId: 'a|b' })).toBe(false);
    expect(checkEvent.Check({ ...second[0], note: 'x' })).toBe(false);
    expect(engine.active()).toEqual(second);
  });

  it('raises at once with `for` 0 and never twice for the same rule and device', () => {
    const engine = engineWith({ ...PM25_RULE, for: 0 });
    const events = feed(engine, air, T0, MIN, [pm25(60), pm25(70), pm25(80)]);
    expect(events.map((e) => [e.state, e.ts, e.message])).toEqual([['raised', T0, 'PM2.5 above 55.4 µg/m³ (60)']]);
  });

  it('does not flap around the threshold: clears only past threshold − hysteresis, after clearFor', () => {
    const engine = engineWith({ id: 'aqi-bad', kind: 'threshold', domain: 'environment', field: 'vnAqi', above: 150, hysteresis: 10, clearFor: '2m', severity: 'warning' });
    const hovering = feed(engine, air, T0, MIN, [aqi(151), aqi(149), aqi(152), aqi(141), aqi(150), aqi(155)]);
    expect(hovering.map((e) => e.state)).toEqual(['raised']);
    // At or below 140 for 2 minutes: one reading at 140 is not enough, a return above 140 restarts the wait.
    const settling = feed(engine, air, T0 + 6 * MIN, MIN, [aqi(140), aqi(138), aqi(145), aqi(130), aqi(125), aqi(120)]);
    expect(settling.map((e) => [e.state, e.ts])).toEqual([['cleared', T0 + 11 * MIN]]);
    expect(settling[0]).toMatchObject({ id: `aqi-bad|hn-air-01|${T0}`, raisedAt: T0, value: 120, message: 'VN_AQI back at or below 140 for 2 min (120)' });
    expect(checkEvent.Check(settling[0])).toBe(true);
    expect(engine.active()).toEqual([]);
    // Below the hysteresis band and back above the threshold: a new alert instance with a new id.
    const again = feed(engine, air, T0 + 12 * MIN, MIN, [aqi(160)]);
    expect(again.map((e) => e.id)).toEqual([`aqi-bad|hn-air-01|${T0 + 12 * MIN}`]);
  });

  it('escalates with two rules on the same field, and de-escalates one at a time', () => {
    const rule = { kind: 'threshold', domain: 'environment', field: 'vnAqi', hysteresis: 10, severity: 'warning' };
    const engine = engineWith({ ...rule, id: 'aqi-bad', above: 150 }, { ...rule, id: 'aqi-very-bad', above: 200, severity: 'critical' });
    const events = feed(engine, air, T0, MIN, [aqi(120), aqi(160), aqi(210), aqi(250), aqi(195), aqi(185), aqi(145), aqi(135)]);
    expect(events.map((e) => [e.ruleId, e.severity, e.state, (e.ts - T0) / MIN])).toEqual([
      ['aqi-bad', 'warning', 'raised', 1],
      ['aqi-very-bad', 'critical', 'raised', 2],
      ['aqi-very-bad', 'critical', 'cleared', 5],
      ['aqi-bad', 'warning', 'cleared', 7],
    ]);
  });

  it('watches a band with above and below, reporting the side that was crossed (raw frequency)', () => {
    const engine = engineWith({ id: 'freq', kind: 'threshold', domain: 'energy', field: 'frequency', below: 49.8, above: 50.2, hysteresis: 0.02, for: '30s', severity: 'warning' });
    const low = feed(engine, feeder, T0, 15 * SEC, [{ frequency: 49.75 }, { frequency: 49.7 }, { frequency: 49.71 }, { frequency: 49.81 }, { frequency: 49.82 }]);
    expect(low.map((e) => [e.state, e.threshold, e.message])).toEqual([
      ['raised', 49.8, 'frequency outside 49.8–50.2 Hz for 30 s (49.71)'],
      ['cleared', 49.8, 'frequency back within 49.82–50.18 Hz (49.82)'],
    ]);
    const high = feed(engine, feeder, T0 + 5 * MIN, 15 * SEC, [{ frequency: 50.3 }, { frequency: 50.3 }, { frequency: 50.31 }]);
    expect(high.map((e) => [e.state, e.threshold, e.value])).toEqual([['raised', 50.2, 50.31]]);
  });

  it('watches a lower limit (below)', () => {
    const engine = engineWith({ id: 'slow', kind: 'threshold', domain: 'traffic', field: 'averageVehicleSpeed', below: 10, hysteresis: 5, severity: 'info' });
    const events = feed(engine, road, T0, 30 * SEC, [{ averageVehicleSpeed: 25 }, { averageVehicleSpeed: 8 }, { averageVehicleSpeed: 12 }, { averageVehicleSpeed: 15 }]);
    expect(events.map((e) => [e.state, e.message])).toEqual([
      ['raised', 'average speed below 10 km/h (8)'],
      ['cleared', 'average speed back at or above 15 km/h (15)'],
    ]);
  });

  it('uses derived grid values: voltage deviation beyond ±5 % for 1 min, from enrichReading', () => {
    const engine = engineWith({ id: 'voltage', kind: 'threshold', domain: 'energy', field: 'voltageDeviation', above: 0.05, hysteresis: 0.005, for: '1m', severity: 'warning' });
    const profile = { ratedPowerVA: 10_000_000, nominalPhaseVoltageV: 12_700 };
    const reading = (l1: number, ts: number): EnergyReading => ({
      ts,
      seq: 1,
      frequency: 50.01,
      totalActivePower: 6_000_000,
      totalReactivePower: 2_000_000,
      powerFactor: 0.95,
      phaseVoltage: { L1: l1, L2: 12_700, L3: 12_700 },
      current: { L1: 166, L2: 165, L3: 167 },
    });
    const events: AlertEvent[] = [];
    [13_500, 13_500, 13_500, 13_400, 13_250].forEach((l1, i) => {
      const r = reading(l1, T0 + i * 30 * SEC);
      events.push(...engine.onReading(feeder, r.ts, flattenReading(r), enrichReading('energy', r, profile)));
    });
    // 13 500 V on a 12 700 V phase is 6.3 %; 13 400 V (5.5 %) keeps it, 13 250 V (4.33 %) is under 5 % − 0.5 %.
    expect(events.map((e) => [e.state, e.ts - T0, e.message])).toEqual([
      ['raised', 60 * SEC, 'voltage deviation above 5 % for 1 min (6.3 %)'],
      ['cleared', 120 * SEC, 'voltage deviation back at or below 4.5 % (4.33 %)'],
    ]);
  });

  it('ignores readings without the field, and redelivered or older readings', () => {
    const engine = engineWith({ ...PM25_RULE, for: '2m' });
    expect(feed(engine, air, T0, MIN, [pm25(60), { pm10: 80 }, pm25(61)])).toHaveLength(1); // the gap neither holds nor breaks it
    const other = engineWith({ ...PM25_RULE, for: '2m' });
    expect(other.onReading(air, T0, pm25(60), {})).toHaveLength(0);
    expect(other.onReading(air, T0 + 2 * MIN, pm25(60), {})).toHaveLength(1);
    // A straggler from before, below the threshold, does not clear it.
    expect(other.onReading(air, T0 + MIN, pm25(10), {})).toHaveLength(0);
    expect(other.onReading(air, T0 + 2 * MIN, pm25(10), {})).toHaveLength(0);
    expect(other.active()).toHaveLength(1);
  });

  it('returns one shared empty result when nothing changes (no allocation per reading)', () => {
    const engine = engineWith(PM25_RULE, { id: 'frozen', kind: 'frozen', domain: 'environment', field: 'pm25', readings: 1000, severity: 'info' });
    const first = engine.onReading(air, T0, pm25(20), {});
    for (let i = 1; i < 100; i++) expect(engine.onReading(air, T0 + i * MIN, pm25(20 + (i % 7)), {})).toBe(first);
    expect(first).toHaveLength(0);
    expect(Object.isFrozen(first)).toBe(true);
  });
});

describe('category rules: level of service', () => {
  const rule = { kind: 'category', domain: 'traffic', field: 'los', for: '5m', clearFor: '2m' };
  const los = (value: string): [Fields, Derived] => [{ intensity: 10 }, { los: value }];

  it('raises LOS E as a warning and F as critical after 5 min, and clears after 2 min better', () => {
    const engine = engineWith({ ...rule, id: 'los-e', in: ['E', 'F'], severity: 'warning' }, { ...rule, id: 'los-f', in: ['F'], severity: 'critical' });
    const series = ['D', 'E', 'E', 'E', 'F', 'F', 'E', 'F', 'F', 'F', 'F', 'F', 'F', 'C', 'D', 'C', 'C'].map(los);
    const events = feed(engine, road, T0, MIN, series);
    expect(events.map((e) => [e.ruleId, e.state, (e.ts - T0) / MIN, e.message])).toEqual([
      ['los-e', 'raised', 6, 'level of service E or F for 5 min (E)'],
      ['los-f', 'raised', 12, 'level of service F for 5 min (F)'],
      ['los-e', 'cleared', 15, 'level of service back to C for 2 min'],
      ['los-f', 'cleared', 15, 'level of service back to C for 2 min'],
    ]);
    expect(events[0]).toMatchObject({ field: 'los', value: 'E' });
    expect(events[0]).not.toHaveProperty('threshold');
    for (const event of events) expect(checkEvent.Check(event)).toBe(true);
  });

  it('matches boolean derived values (outOfBand) with a readable message', () => {
    const engine = engineWith({ id: 'oob', kind: 'category', domain: 'energy', field: 'outOfBand', in: [true], severity: 'warning' });
    const events = feed(engine, feeder, T0, 15 * SEC, [[{}, { outOfBand: false }], [{}, { outOfBand: true }], [{}, { outOfBand: false }]]);
    expect(events.map((e) => [e.state, e.value, e.message])).toEqual([
      ['raised', true, "outside the grid code's normal band"],
      ['cleared', false, "no longer outside the grid code's normal band"],
    ]);
  });
});

describe('no-data rules', () => {
  const rule = { id: 'no-data', kind: 'no-data', domain: 'environment', intervals: 5, interval: '60s', severity: 'warning' };

  it('watches a device only once it has been seen, then raises once after N intervals of silence', () => {
    const engine = engineWith(rule);
    expect(engine.tick(T0 + 60 * MIN)).toHaveLength(0); // never seen: not watched
    engine.onReading(air, T0, pm25(10), {});
    expect(engine.tick(T0 + 5 * MIN)).toHaveLength(0); // exactly 5 intervals: not yet
    const raised = engine.tick(T0 + 5 * MIN + 1);
    expect(raised).toHaveLength(1);
    expect(raised[0]).toMatchObject({ kind: 'no-data', state: 'raised', raisedAt: T0 + 5 * MIN + 1, message: 'no data for 5 min (expected every 1 min)' });
    expect(raised[0]).not.toHaveProperty('field');
    expect(checkEvent.Check(raised[0])).toBe(true);
    expect(engine.tick(T0 + 30 * MIN)).toHaveLength(0); // still silent: not raised again

    const back = engine.onReading(air, T0 + 31 * MIN, pm25(11), {});
    expect(back).toEqual([{ ...raised[0], state: 'cleared', ts: T0 + 31 * MIN, message: 'data again after 31 min without readings' }]);
    expect(engine.active()).toEqual([]);
  });

  it('watches a declared device from watch() even if it never sends', () => {
    const engine = engineWith(rule);
    expect(engine.watch(air, T0)).toHaveLength(0);
    expect(engine.tick(T0 + 5 * MIN)).toHaveLength(0);
    expect(engine.tick(T0 + 6 * MIN).map((e) => e.deviceId)).toEqual(['hn-air-01']);
    // watch() again (a registry reload) does not move the silence start of a device already watched.
    engine.watch(air, T0 + 7 * MIN);
    expect(engine.active()).toHaveLength(1);
  });

  it('clears with the arrival time, even when a backlog with older device times arrives', () => {
    const engine = engineWith(rule);
    engine.onReading(air, T0, pm25(10), {}, T0);
    expect(engine.tick(T0 + 20 * MIN)).toHaveLength(1);
    const cleared = engine.onReading(air, T0 + MIN, pm25(10), {}, T0 + 21 * MIN);
    expect(cleared).toMatchObject([{ state: 'cleared', ts: T0 + 21 * MIN, message: 'data again after 21 min without readings' }]);
  });

  it('gives a device that reports less often than the rule says its own, learnt interval', () => {
    const engine = engineWith(rule);
    feed(engine, air, T0, 3 * MIN, [pm25(1), pm25(2), pm25(3)]); // every 3 minutes, not every 1
    const last = T0 + 6 * MIN;
    expect(engine.tick(last + 14 * MIN)).toHaveLength(0);
    expect(engine.tick(last + 15 * MIN + 1)).toMatchObject([{ message: 'no data for 15 min (expected every 3 min)' }]);
  });

  it("uses the registry's interval when the device has one", () => {
    const engine = engineWith(rule);
    engine.onReading({ ...air, expectedIntervalMs: 10 * SEC }, T0, pm25(1), {});
    expect(engine.tick(T0 + 51 * SEC)).toMatchObject([{ message: 'no data for 51 s (expected every 10 s)' }]);
  });
});

describe('frozen rules', () => {
  it('raises after N equal consecutive readings and clears at the first change', () => {
    const engine = engineWith({ id: 'stuck', kind: 'frozen', domain: 'environment', field: 'pm25', readings: 4, severity: 'warning' });
    const events = feed(engine, air, T0, MIN, [pm25(30), pm25(35.2), pm25(35.2), pm25(35.2), pm25(35.2), pm25(35.2), pm25(36)]);
    expect(events.map((e) => [e.state, (e.ts - T0) / MIN, e.value, e.message])).toEqual([
      ['raised', 4, 35.2, 'PM2.5 unchanged at 35.2 µg/m³ for 4 readings over 3 min'],
      ['cleared', 6, 36, 'PM2.5 changing again (36)'],
    ]);
  });

  it('needs the duration too when `for` is given, and treats changes within the tolerance as equal', () => {
    const engine = engineWith({ id: 'stuck', kind: 'frozen', domain: 'energy', field: 'frequency', readings: 3, for: '1m', tolerance: 0.001, severity: 'warning' });
    const series = [50.0, 50.0005, 50.001, 49.9995, 50.0, 50.0].map((frequency) => ({ frequency }));
    const events = feed(engine, feeder, T0, 15 * SEC, series);
    expect(events.map((e) => [e.state, (e.ts - T0) / SEC])).toEqual([['raised', 60]]);
    expect(engine.onReading(feeder, T0 + 90 * SEC, { frequency: 50.02 }, {})).toMatchObject([{ state: 'cleared' }]);
  });
});

describe('rule selection', () => {
  it('selects devices by domain, province list and device kind', () => {
    const engine = engineWith({ ...PM25_RULE, id: 'hanoi-roadside', for: 0, provinces: ['01'], deviceKinds: ['roadside'] });
    expect(engine.onReading(air, T0, pm25(90), {})).toHaveLength(1);
    expect(engine.onReading({ ...air, deviceId: 'hcm-air-01', province: '79' }, T0, pm25(90), {})).toHaveLength(0);
    expect(engine.onReading({ ...air, deviceId: 'hn-air-02', kind: 'background' }, T0, pm25(90), {})).toHaveLength(0);
    expect(engine.onReading({ ...air, deviceId: 'hn-air-03', kind: undefined }, T0, pm25(90), {})).toHaveLength(0);
    // Another domain's device with a field of the same name is not selected.
    expect(engine.onReading({ ...road, province: '01', kind: 'roadside' }, T0, pm25(90), {})).toHaveLength(0);
  });

  it('clears the alerts of a device whose province or kind changed, then selects again', () => {
    const engine = engineWith({ ...PM25_RULE, for: 0, deviceKinds: ['roadside'] });
    engine.onReading(air, T0, pm25(90), {});
    const moved = engine.onReading({ ...air, kind: 'background' }, T0 + MIN, pm25(90), {});
    expect(moved).toMatchObject([{ state: 'cleared', message: "cleared: the device's province or kind changed" }]);
    expect(engine.active()).toEqual([]);
  });

  it('forgets a removed device, clearing its active alerts', () => {
    const engine = engineWith({ ...PM25_RULE, for: 0 });
    engine.onReading(air, T0, pm25(90), {});
    expect(engine.size).toBe(1);
    expect(engine.forget('hn-air-01', T0 + MIN)).toMatchObject([{ state: 'cleared', ts: T0 + MIN, message: 'cleared: device removed from the registry' }]);
    expect(engine.size).toBe(0);
    expect(engine.forget('hn-air-01', T0 + MIN)).toHaveLength(0);
  });
});

describe('restore()', () => {
  const rule = { id: 'aqi-bad', kind: 'threshold', domain: 'environment', field: 'vnAqi', above: 150, hysteresis: 10, severity: 'warning' };

  /** Events as a first engine produced them, as the api would store them. */
  function history(): AlertEvent[] {
    const before = engineWith(rule);
    return feed(before, air, T0, MIN, [aqi(160), aqi(170)]);
  }

  it('does not raise an alert that was active before the restart, and clears it later under the same id', () => {
    const stored = history();
    const engine = engineWith(rule);
    expect(engine.restore(stored, T0 + 10 * MIN)).toHaveLength(0);
    expect(engine.active()).toEqual(stored);
    expect(feed(engine, air, T0 + 10 * MIN, MIN, [aqi(180), aqi(145)])).toHaveLength(0); // still active, inside the hysteresis
    const cleared = engine.onReading(air, T0 + 12 * MIN, {}, { vnAqi: 120 });
    expect(cleared).toMatchObject([{ id: stored[0]?.id, state: 'cleared', raisedAt: T0 }]);
  });

  it('takes the latest event per rule and device, in any order', () => {
    const before = engineWith(rule);
    const stored = feed(before, air, T0, MIN, [aqi(160), aqi(100), aqi(170)]); // raised, cleared, raised again
    expect(stored.map((e) => e.state)).toEqual(['raised', 'cleared', 'raised']);
    const engine = engineWith(rule);
    engine.restore([...stored].reverse(), T0 + 5 * MIN);
    expect(engine.active()).toEqual([stored[2]]);
    const clearedOnly = engineWith(rule);
    clearedOnly.restore(stored.slice(0, 2), T0 + 5 * MIN);
    expect(clearedOnly.active()).toEqual([]);
  });

  it('clears restored alerts whose rule is gone or no longer selects the device', () => {
    const stored = history();
    const engine = engineWith({ ...rule, id: 'aqi-renamed' });
    expect(engine.restore(stored, T0 + 5 * MIN)).toMatchObject([{ id: stored[0]?.id, state: 'cleared', ts: T0 + 5 * MIN, message: 'cleared: rule aqi-bad was removed or no longer applies to this device' }]);
    expect(engine.active()).toEqual([]);

    // The device's kind is only known when it is next seen.
    const byKind = engineWith({ ...rule, deviceKinds: ['background'] });
    expect(byKind.restore(stored, T0 + 5 * MIN)).toHaveLength(0);
    expect(byKind.active()).toHaveLength(1);
    expect(byKind.onReading(air, T0 + 6 * MIN, {}, { vnAqi: 170 })).toMatchObject([{ state: 'cleared', message: 'cleared: rule aqi-bad no longer applies to this device' }]);
  });

  it('restores no-data and frozen alerts so that the next reading can clear them', () => {
    const rules = [
      { id: 'silent', kind: 'no-data', domain: 'environment', intervals: 5, interval: '1m', severity: 'warning' },
      { id: 'stuck', kind: 'frozen', domain: 'environment', field: 'pm25', readings: 3, severity: 'warning' },
    ];
    const before = engineWith(...rules);
    const stored = [...feed(before, air, T0, MIN, [pm25(40), pm25(40), pm25(40)]), ...before.tick(T0 + 20 * MIN)];
    expect(stored.map((e) => e.ruleId)).toEqual(['stuck', 'silent']);

    const engine = engineWith(...rules);
    engine.restore(stored, T0 + 30 * MIN);
    expect(engine.watch(air, T0 + 30 * MIN)).toHaveLength(0);
    expect(engine.tick(T0 + 60 * MIN)).toHaveLength(0); // already active: not raised again
    // The same frozen value keeps "stuck" active; the reading clears "silent".
    expect(engine.onReading(air, T0 + 61 * MIN, pm25(40), {}).map((e) => [e.ruleId, e.state])).toEqual([['silent', 'cleared']]);
    expect(engine.onReading(air, T0 + 62 * MIN, pm25(41), {}).map((e) => [e.ruleId, e.state])).toEqual([['stuck', 'cleared']]);
  });
});

describe('formatDuration', () => {
  it('writes durations as operators read them', () => {
    expect([500, 30 * SEC, 10 * MIN, 150 * SEC, 3_600_000, 5_400_000, 90_061_000].map(formatDuration)).toEqual(['500 ms', '30 s', '10 min', '2 min 30 s', '1 h', '1 h 30 min', '1 d 1 h']);
  });
});
