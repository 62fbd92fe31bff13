import { decodeTelemetry, parseDeviceTopic, type Reading } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import { applyFaults, faultsForDevice, initialFaultState, MALFORMED_KINDS, malformedPayload, WRONG_TOPIC_KINDS, wrongTopicFor, type DeviceFaults } from '../src/faults.js';
import { initialState, nextReading, type SimulatedDevice } from '../src/models/index.js';
import { placeDevices } from '../src/placement.js';
import { FAULT_DEFAULTS, resolveScenario, type FaultSettings } from '../src/scenario.js';
import { vnLocalMs } from '../src/time.js';

const SEED = 42;
const devices = placeDevices({ seed: SEED, groups: [{ province: '01', domain: 'traffic', count: 4 }, { province: '01', domain: 'environment', count: 4 }, { province: '79', domain: 'energy', count: 4 }] });
const START = vnLocalMs(2026, 1, 15, 8, 0);
const INTERVAL = 60_000;

/** A device's readings over `n` intervals with its faults applied, as the engine would send them. */
function run(device: SimulatedDevice, faults: DeviceFaults, n: number) {
  let state = initialState();
  const faultState = initialFaultState();
  const out = [];
  for (let k = 0; k < n; k++) {
    const at = START + k * INTERVAL;
    const step = nextReading(device, state, at, { seed: SEED, periodSeconds: 60 });
    state = step.state;
    out.push({ clean: step.reading, outcome: applyFaults(device, faults, faultState, step.reading, at, INTERVAL, SEED) });
  }
  return out;
}

const everyone = { share: 1 };
const device = devices[4] as SimulatedDevice; // an environment station
const decode = (d: SimulatedDevice, payload: string) => decodeTelemetry(d.domain, payload, START + 3_600_000);

describe('fault injection', () => {
  it('is off unless switched on, and then touches only its share of devices', () => {
    expect(faultsForDevice(device, SEED, {})).toBeUndefined();
    const settings: FaultSettings = { stuck: { ...FAULT_DEFAULTS.stuck, share: 0.5 } };
    const many = placeDevices({ seed: SEED, groups: [{ province: '01', domain: 'environment', count: 400 }] });
    const affected = many.filter((d) => faultsForDevice(d, SEED, settings)).length;
    expect(affected).toBeGreaterThan(150);
    expect(affected).toBeLessThan(250);
    // Scope: provinces and domains.
    const scoped: FaultSettings = { spike: { ...FAULT_DEFAULTS.spike, share: 1, domains: new Set(['energy']) } };
    expect(devices.filter((d) => faultsForDevice(d, SEED, scoped)).map((d) => d.domain)).toEqual(['energy', 'energy', 'energy', 'energy']);
  });

  it('stuck: a frozen sensor repeats one reading\'s values with new ts and seq', () => {
    // One episode longer than the run: it starts within the first readings and never ends.
    const out = run(device, { stuck: { ...FAULT_DEFAULTS.stuck, ...everyone, rate: 3600, durationMs: 100 * INTERVAL } }, 12);
    const frozen = out.filter((o) => o.outcome.applied.includes('stuck')).map((o) => o.outcome.reading);
    expect(frozen.length).toBeGreaterThanOrEqual(10);
    const values = (r: Reading) => JSON.stringify({ ...r, ts: 0, seq: 0 });
    expect(new Set(frozen.map(values)).size).toBe(1);
    expect(new Set(frozen.map((r) => r.seq)).size).toBe(frozen.length);
    // The clean readings underneath kept changing.
    expect(new Set(out.map((o) => values(o.clean))).size).toBeGreaterThan(5);
  });

  it('spike: one value jumps by the factor and still passes the schema', () => {
    for (const d of [devices[0], devices[4], devices[8]] as SimulatedDevice[]) {
      const out = run(d, { spike: { ...FAULT_DEFAULTS.spike, ...everyone, probability: 1, factor: 10 } }, 3);
      for (const { clean, outcome } of out) {
        expect(outcome.applied).toEqual(['spike']);
        const field = d.domain === 'traffic' ? 'intensity' : d.domain === 'environment' ? 'pm25' : 'totalActivePower';
        const before = (clean as unknown as Record<string, number>)[field] ?? 0;
        const after = (outcome.reading as unknown as Record<string, number>)[field] ?? 0;
        expect(Math.abs(after)).toBeGreaterThanOrEqual(Math.abs(before) * 5);
        expect(decode(d, JSON.stringify(outcome.reading)).ok).toBe(true);
      }
    }
  });

  it('malformed: every kind is rejected by ingest\'s decoder with a stable code', () => {
    const reading = run(device, {}, 1)[0]?.clean as Reading;
    const codes = Object.fromEntries(MALFORMED_KINDS.map((kind) => [kind, decode(device, malformedPayload(reading, kind))]));
    for (const [kind, result] of Object.entries(codes)) expect(result.ok, kind).toBe(false);
    const code = (kind: (typeof MALFORMED_KINDS)[number]) => {
      const r = codes[kind];
      return r && !r.ok ? r.error.code : undefined;
    };
    expect(code('truncated-json')).toBe('E_PAYLOAD_JSON');
    expect(code('not-json')).toBe('E_PAYLOAD_JSON');
    expect(code('wrong-type')).toBe('E_PAYLOAD_SCHEMA');
    expect(code('unknown-field')).toBe('E_PAYLOAD_SCHEMA');
    expect(code('seconds-timestamp')).toBe('E_PAYLOAD_SCHEMA');
    expect(['E_BATCH_TOO_LARGE', 'E_TOO_LARGE', 'E_PAYLOAD_SCHEMA']).toContain(code('oversized-batch'));
    // Drawn per reading when switched on.
    const out = run(device, { malformed: { ...FAULT_DEFAULTS.malformed, ...everyone, probability: 1 } }, 20);
    expect(out.every((o) => o.outcome.payload !== undefined && !decode(device, o.outcome.payload).ok)).toBe(true);
    expect(new Set(out.map((o) => o.outcome.malformed)).size).toBeGreaterThan(2);
  });

  it('wrong topic: each kind names a topic this device may not publish to', () => {
    for (const kind of WRONG_TOPIC_KINDS) {
      const topic = wrongTopicFor(device, kind);
      const parsed = parseDeviceTopic(topic);
      const own = parsed.ok && parsed.value.deviceId === device.id && parsed.value.province === device.province && parsed.value.domain === device.domain && parsed.value.channel !== 'commands';
      expect(own, `${kind}: ${topic}`).toBe(false);
    }
  });

  it('dropout: the device goes offline for the episode, then comes back', () => {
    const out = run(device, { dropout: { ...FAULT_DEFAULTS.dropout, ...everyone, rate: 60, durationMs: 5 * INTERVAL } }, 40);
    const starts = out.filter((o) => o.outcome.dropoutStarts).length;
    expect(starts).toBeGreaterThan(0);
    const offline = out.filter((o) => o.outcome.offline).length;
    expect(offline).toBeGreaterThanOrEqual(5 * starts - 4);
    expect(out.some((o) => !o.outcome.offline)).toBe(true);
    expect(out.every((o) => !o.outcome.lose)).toBe(true);
    const losing = run(device, { dropout: { ...FAULT_DEFAULTS.dropout, ...everyone, rate: 60, durationMs: 5 * INTERVAL, lose: true } }, 40);
    expect(losing.filter((o) => o.outcome.offline).every((o) => o.outcome.lose)).toBe(true);
  });

  it('flood: the device sends each reading many times during the episode', () => {
    const out = run(device, { flood: { ...FAULT_DEFAULTS.flood, ...everyone, rate: 3600, durationMs: 3 * INTERVAL, factor: 25 } }, 6);
    expect(out.filter((o) => o.outcome.copies === 25).length).toBeGreaterThanOrEqual(3);
  });

  it('gives the same faults for the same seed, and different ones for another', () => {
    const settings = resolveScenario({ name: 'f', provinces: [{ code: '01' }] }, { nowMs: START, faults: ['dropout', 'stuck', 'spike', 'malformed', 'wrongTopic', 'flood'] }).faults;
    const all: DeviceFaults = Object.fromEntries(Object.entries(settings).map(([k, v]) => [k, { ...v, share: 1 }]));
    const a = JSON.stringify(run(device, all, 200).map((o) => o.outcome));
    const b = JSON.stringify(run(device, all, 200).map((o) => o.outcome));
    expect(a).toBe(b);
    expect(a).toMatch(/"applied":\["[a-zA-Z]+/);
  });
});
