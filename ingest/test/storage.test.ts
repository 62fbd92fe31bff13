import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AlertEvent, type FieldValue } from '@citypulse/contracts';
import { Influx, isLoopback, startInfluxd, type RunningInfluxd, type SeriesResult } from '@citypulse/infra';
import { escapeStringField, escapeTag, formatLine } from '../src/line-protocol.js';
import { alertEventLine, backfillRollups, continuousQueries, ensureStorage, loadAlertEvents, rollupField, ROLLUPS, type StorageOptions } from '../src/storage.js';

/** Storage against a real InfluxDB 1.6.7 (Debian's influxd on a free port, temporary folder). */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const OPTIONS: StorageOptions = { rawRetention: '30d', rollup1mRetention: '90d', rollup1hRetention: '730d' };

let dir: string;
let influxd: RunningInfluxd;
let influx: Influx;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'citypulse-storage-'));
  influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
  influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
}, 60_000);

afterAll(async () => {
  await influxd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Writes lines to the raw retention policy; any refusal fails the test with InfluxDB's message. */
async function write(lines: readonly string[]): Promise<void> {
  const res = await fetch(`${influxd.url}/write?db=citypulse&rp=raw&precision=ms`, { method: 'POST', body: lines.join('\n') });
  expect(res.status, await res.text()).toBe(204);
}

async function retentionPolicies(): Promise<Map<string, { duration: string; default: boolean }>> {
  const [[series] = []] = await influx.query('SHOW RETENTION POLICIES ON "citypulse"');
  return new Map((series?.values ?? []).map((row) => [row[0] as string, { duration: row[1] as string, default: row[4] as boolean }]));
}

async function showCqs(): Promise<Map<string, string>> {
  const [series = []] = await influx.query('SHOW CONTINUOUS QUERIES');
  return new Map((series.find((s) => s.name === 'citypulse')?.values ?? []).map((row) => [row[0] as string, row[1] as string]));
}

/** Rows of one series as objects keyed by column. */
function rows(series: SeriesResult | undefined): Record<string, unknown>[] {
  if (!series) return [];
  return series.values.map((row) => Object.fromEntries(series.columns.map((c, i) => [c, row[i]])));
}

describe('ensureStorage', () => {
  it('creates the retention policies and continuous queries, and a second run changes nothing', async () => {
    const first = await ensureStorage(influx, OPTIONS);
    expect(first.changes.filter((c) => c.object === 'retention policy')).toEqual([
      { object: 'retention policy', name: 'raw', action: 'created' },
      { object: 'retention policy', name: 'rollup_1m', action: 'created' },
      { object: 'retention policy', name: 'rollup_1h', action: 'created' },
    ]);
    const cqChanges = first.changes.filter((c) => c.object === 'continuous query');
    expect(cqChanges).toHaveLength(12); // 3 domains × 2 roll-ups × (fresh + late)
    expect(cqChanges.every((c) => c.action === 'created')).toBe(true);

    const rps = await retentionPolicies();
    expect(rps.get('raw')).toEqual({ duration: '720h0m0s', default: true });
    expect(rps.get('rollup_1m')).toEqual({ duration: '2160h0m0s', default: false });
    expect(rps.get('rollup_1h')).toEqual({ duration: '17520h0m0s', default: false });

    // The CQ text as InfluxDB prints it back: what the api author and operators see.
    const cqs = await showCqs();
    expect(cqs.get('cq_rollup_1m_energy')).toBe(
      'CREATE CONTINUOUS QUERY cq_rollup_1m_energy ON citypulse RESAMPLE EVERY 1m FOR 2m BEGIN SELECT min(*), mean(*), max(*), count(*) INTO citypulse.rollup_1m.energy FROM citypulse.raw.energy GROUP BY time(1m), * fill(none) END',
    );
    expect(cqs.get('cq_rollup_1m_traffic_late')).toContain('RESAMPLE EVERY 15m FOR 75m');
    expect(cqs.get('cq_rollup_1h_environment')).toContain('RESAMPLE EVERY 1h FOR 2h BEGIN SELECT min(*), mean(*), max(*), count(*) INTO citypulse.rollup_1h.environment');
    expect(cqs.get('cq_rollup_1h_environment_late')).toContain('RESAMPLE EVERY 6h FOR 30h');

    const second = await ensureStorage(influx, OPTIONS);
    expect(second.changes).toHaveLength(15);
    expect(second.changes.filter((c) => c.action !== 'unchanged')).toEqual([]);
    expect(second.rollups['1m']).toMatchObject({ retentionPolicy: 'rollup_1m', duration: '90d', intervalMs: MINUTE });
    expect(second.alerts).toEqual({ retentionPolicy: 'raw', measurement: 'alerts' });
  });

  it('ALTERs retention policies whose duration changed', async () => {
    const changed = await ensureStorage(influx, { rawRetention: '14d', rollup1mRetention: '120d', rollup1hRetention: 'INF' });
    expect(changed.changes.filter((c) => c.action !== 'unchanged')).toEqual([
      { object: 'retention policy', name: 'raw', action: 'altered' },
      { object: 'retention policy', name: 'rollup_1m', action: 'altered' },
      { object: 'retention policy', name: 'rollup_1h', action: 'altered' },
    ]);
    const rps = await retentionPolicies();
    expect(rps.get('raw')).toEqual({ duration: '336h0m0s', default: true });
    expect(rps.get('rollup_1m')?.duration).toBe('2880h0m0s');
    expect(rps.get('rollup_1h')?.duration).toBe('0s'); // INF
    // The same durations written differently are the same durations.
    const same = await ensureStorage(influx, { rawRetention: '2w', rollup1mRetention: '2880h', rollup1hRetention: 'INF' });
    expect(same.changes.filter((c) => c.action !== 'unchanged')).toEqual([]);

    const back = await ensureStorage(influx, OPTIONS);
    expect(back.changes.filter((c) => c.action !== 'unchanged').map((c) => c.action)).toEqual(['altered', 'altered', 'altered']);
  });

  it('re-creates a CQ whose definition changed, drops an obsolete one of its own and leaves others alone', async () => {
    // An older version of the platform: other resample window, and a roll-up that no longer exists.
    await influx.query('DROP CONTINUOUS QUERY "cq_rollup_1m_energy" ON "citypulse"');
    await influx.query(
      'CREATE CONTINUOUS QUERY "cq_rollup_1m_energy" ON "citypulse" RESAMPLE EVERY 1m FOR 5m BEGIN SELECT mean(*) INTO "citypulse"."rollup_1m"."energy" FROM "citypulse"."raw"."energy" GROUP BY time(1m), * END',
    );
    await influx.query(
      'CREATE CONTINUOUS QUERY "cq_rollup_10m_energy" ON "citypulse" BEGIN SELECT mean(*) INTO "citypulse"."rollup_1m"."energy10" FROM "citypulse"."raw"."energy" GROUP BY time(10m), * END',
    );
    await influx.query('CREATE CONTINUOUS QUERY "operators_own" ON "citypulse" BEGIN SELECT count(*) INTO "citypulse"."rollup_1h"."x" FROM "citypulse"."raw"."energy" GROUP BY time(1h) END');

    const layout = await ensureStorage(influx, OPTIONS);
    expect(layout.changes.filter((c) => c.action !== 'unchanged')).toEqual([
      { object: 'continuous query', name: 'cq_rollup_1m_energy', action: 'recreated' },
      { object: 'continuous query', name: 'cq_rollup_10m_energy', action: 'dropped' },
    ]);
    const cqs = await showCqs();
    expect(cqs.get('cq_rollup_1m_energy')).toContain('RESAMPLE EVERY 1m FOR 2m BEGIN SELECT min(*), mean(*), max(*), count(*)');
    expect(cqs.has('cq_rollup_10m_energy')).toBe(false);
    expect(cqs.has('operators_own')).toBe(true);
    expect([...cqs.keys()].filter((name) => name.startsWith('cq_rollup_')).sort()).toEqual(continuousQueries('citypulse', 'raw').map((cq) => cq.name).sort());
  });

  it('INGEST_ROLLUPS=none drops its own roll-up CQs (and only those), and cq brings them back', async () => {
    const off = await ensureStorage(influx, { ...OPTIONS, continuousQueries: false });
    expect(off.continuousQueries).toEqual([]);
    expect(off.changes.filter((c) => c.action === 'dropped')).toHaveLength(12);
    const cqs = await showCqs();
    expect([...cqs.keys()].filter((name) => name.startsWith('cq_rollup_'))).toEqual([]);
    expect(cqs.has('operators_own')).toBe(true);
    const on = await ensureStorage(influx, OPTIONS);
    expect(on.changes.filter((c) => c.action === 'created')).toHaveLength(12);
  });

  it('refuses a retention that is not an InfluxQL duration before touching the server', async () => {
    await expect(ensureStorage(influx, { ...OPTIONS, rollup1mRetention: '90 days; DROP DATABASE citypulse' })).rejects.toThrow(/not an InfluxQL duration/);
  });
});

/* ---- Roll-ups ---- */

/** Two hours old at least, so none of the CQs (the late 1h one reaches back 30 h…) is involved: */
const T0 = Math.floor((Date.now() - 2 * DAY) / HOUR) * HOUR;

interface Raw {
  readonly device: string;
  readonly ts: number;
  readonly fields: Readonly<Record<string, FieldValue>>;
}

/** Device a: every 20 s for 5 min, loadFactor on two readings of three. Device b: every 30 s, minute 2 silent. */
const ENERGY: readonly Raw[] = [
  ...Array.from({ length: 15 }, (_, i): Raw => ({
    device: 'hcm-feeder-01',
    ts: T0 + i * 20_000,
    fields: {
      seq: i,
      frequency: 50 + (((i * 7) % 5) - 2) / 100,
      phaseVoltage_L1: 12_600 + ((i * 37) % 11) * 10,
      ...(i % 3 !== 0 ? { loadFactor: 0.5 + i / 100 } : {}),
      frequencyBand: i === 4 ? 'unstable' : 'normal',
      outOfBand: i === 4,
    },
  })),
  ...[0, 1, 2, 3, 6, 7, 8, 9].map(
    (i): Raw => ({
      device: 'hcm-feeder-02',
      ts: T0 + i * 30_000,
      fields: { seq: 100 + i, frequency: 49.9 + i / 100, phaseVoltage_L1: 230 + i, loadFactor: 0.2 + i / 50, frequencyBand: 'normal', outOfBand: false },
    }),
  ),
];

function rawLine(measurement: string, r: Raw): string {
  return formatLine(measurement, { device: r.device, kind: 'feeder-22kv', province: '79' }, r.fields, r.ts);
}

interface Expected {
  min: number;
  mean: number;
  max: number;
  count: number;
}

/** min/mean/max/count of each numeric field per device and window, computed here. */
function expectedWindows(raw: readonly Raw[], windowMs: number): Map<string, Map<string, Expected>> {
  const out = new Map<string, Map<string, Expected>>();
  for (const r of raw) {
    const key = `${r.device}@${Math.floor(r.ts / windowMs) * windowMs}`;
    let fields = out.get(key);
    if (!fields) out.set(key, (fields = new Map<string, Expected>()));
    for (const [name, value] of Object.entries(r.fields)) {
      if (typeof value !== 'number') continue;
      const e = fields.get(name);
      if (!e) fields.set(name, { min: value, mean: value, max: value, count: 1 });
      else {
        e.mean = (e.mean * e.count + value) / (e.count + 1);
        e.count++;
        e.min = Math.min(e.min, value);
        e.max = Math.max(e.max, value);
      }
    }
  }
  return out;
}

async function rollupRows(resolution: '1m' | '1h', measurement: string): Promise<SeriesResult[]> {
  const [series = []] = await influx.query(`SELECT * FROM "citypulse"."${ROLLUPS[resolution].retentionPolicy}"."${measurement}" WHERE time >= $from AND time < $to GROUP BY *`, {
    from: new Date(T0).toISOString(),
    to: new Date(T0 + HOUR).toISOString(),
  });
  return series;
}

function checkAgainst(series: readonly SeriesResult[], expected: Map<string, Map<string, Expected>>): number {
  let windows = 0;
  for (const s of series) {
    expect(s.tags).toMatchObject({ kind: 'feeder-22kv', province: '79' });
    for (const row of rows(s)) {
      const fields = expected.get(`${s.tags?.device}@${String(row.time)}`);
      expect(fields, `unexpected window ${s.tags?.device} ${String(row.time)}`).toBeDefined();
      for (const [name, e] of fields ?? []) {
        expect(row[rollupField('min', name)], `min ${name}`).toBe(e.min);
        expect(row[rollupField('max', name)], `max ${name}`).toBe(e.max);
        expect(row[rollupField('count', name)], `count ${name}`).toBe(e.count);
        expect(row[rollupField('mean', name)] as number, `mean ${name}`).toBeCloseTo(e.mean, 9);
      }
      windows++;
    }
  }
  return windows;
}

describe('roll-ups', () => {
  beforeAll(async () => {
    await ensureStorage(influx, OPTIONS);
    await write(ENERGY.map((r) => rawLine('energy', r)));
  });

  it('backfillRollups computes min, mean, max and count of every numeric field per device and window', async () => {
    // A range that starts and ends inside windows: widened to whole windows.
    const result = await backfillRollups(influx, T0 + 10_000, T0 + 5 * MINUTE - 1);
    expect(result.ranges).toEqual({ '1m': { from: T0, to: T0 + 5 * MINUTE }, '1h': { from: T0, to: T0 + HOUR } });
    // a: 5 windows; b: minutes 0, 1, 3, 4 (minute 2 silent: fill(none) writes nothing); 1h: one each.
    expect(result.written).toEqual({ '1m': 9, '1h': 2 });

    const minute = expectedWindows(ENERGY, MINUTE);
    expect(checkAgainst(await rollupRows('1m', 'energy'), minute)).toBe(9);
    expect(minute.size).toBe(9);
    expect(checkAgainst(await rollupRows('1h', 'energy'), expectedWindows(ENERGY, HOUR))).toBe(2);
  });

  it('names and types roll-up fields as documented: booleans get min/max, strings only count', async () => {
    const [[series] = []] = await influx.query('SHOW FIELD KEYS FROM "rollup_1m"."energy"');
    const types = new Map((series?.values ?? []).map((row) => [row[0] as string, row[1] as string]));
    for (const name of ['frequency', 'phaseVoltage_L1', 'loadFactor', 'seq']) {
      expect(types.get(`min_${name}`)).toBe('float');
      expect(types.get(`mean_${name}`)).toBe('float');
      expect(types.get(`max_${name}`)).toBe('float');
      expect(types.get(`count_${name}`)).toBe('integer');
    }
    expect(types.get('min_outOfBand')).toBe('boolean');
    expect(types.get('max_outOfBand')).toBe('boolean');
    expect(types.get('count_outOfBand')).toBe('integer');
    expect(types.has('mean_outOfBand')).toBe(false);
    expect(types.get('count_frequencyBand')).toBe('integer');
    for (const aggregate of ['min', 'mean', 'max']) expect(types.has(`${aggregate}_frequencyBand`)).toBe(false);

    // max of a boolean: true when any reading in the window had it; count_seq: readings in the window.
    const series1m = await rollupRows('1m', 'energy');
    const a = rows(series1m.find((s) => s.tags?.device === 'hcm-feeder-01'));
    expect(a.map((r) => r.max_outOfBand)).toEqual([false, true, false, false, false]); // reading 4, at 80 s, is in minute 1
    expect(a.map((r) => r.count_seq)).toEqual([3, 3, 3, 3, 3]);
  });

  it('running a backfill again changes nothing, and { device } recomputes only that device', async () => {
    await backfillRollups(influx, T0, T0 + 5 * MINUTE);
    expect(checkAgainst(await rollupRows('1m', 'energy'), expectedWindows(ENERGY, MINUTE))).toBe(9);

    // A late reading of device b in its silent minute 2, arriving days later.
    const late: Raw = { device: 'hcm-feeder-02', ts: T0 + 2 * MINUTE + 15_000, fields: { seq: 104.5, frequency: 50.3, phaseVoltage_L1: 231, loadFactor: 0.9, frequencyBand: 'unstable', outOfBand: true } };
    await write([rawLine('energy', late)]);
    const result = await backfillRollups(influx, late.ts, late.ts + 1, { device: 'hcm-feeder-02' });
    expect(result.written).toEqual({ '1m': 1, '1h': 1 });
    const withLate = [...ENERGY, late];
    expect(checkAgainst(await rollupRows('1m', 'energy'), expectedWindows(withLate, MINUTE))).toBe(10);
    expect(checkAgainst(await rollupRows('1h', 'energy'), expectedWindows(withLate, HOUR))).toBe(2);
  });

  it('string and boolean fields of traffic and environment roll up without breaking anything', async () => {
    const traffic = ['A', 'C', 'E', 'F'].map(
      (los, i): Raw => ({
        device: 'hcm-loop-01',
        ts: T0 + i * 30_000,
        fields: { seq: i, intensity: 10 + i, averageVehicleSpeed: 40 - i * 10, los, congested: los >= 'E', laneDirection: 'forward', refRoadSegment: '79-c1-s2', densityPcPerMiLn: 10 + i * 12 },
      }),
    );
    const environment = [40, 61, 75].map(
      (pm25, i): Raw => ({ device: 'hn-air-01', ts: T0 + i * 20_000, fields: { seq: i, pm25, vnAqi: Math.round(pm25 * 1.3), vnAqiDominant: 'pm25', temperature: 30 + i } }),
    );
    await write([...traffic.map((r) => rawLine('traffic', r)), ...environment.map((r) => rawLine('environment', r))]);
    const result = await backfillRollups(influx, T0, T0 + 2 * MINUTE, { resolutions: ['1m'], domains: ['traffic', 'environment'] });
    expect(result.written['1m']).toBe(3); // traffic minutes 0 and 1, environment minute 0

    const [t0, t1] = rows((await rollupRows('1m', 'traffic'))[0]);
    expect(t0).toMatchObject({ count_los: 2, max_congested: false, min_intensity: 10, max_intensity: 11, mean_averageVehicleSpeed: 35, count_refRoadSegment: 2 });
    expect(t1).toMatchObject({ count_los: 2, min_congested: true, max_congested: true, mean_densityPcPerMiLn: 40 });
    expect(t0).not.toHaveProperty('mean_los');
    const [e0] = rows((await rollupRows('1m', 'environment'))[0]);
    expect(e0).toMatchObject({ count_vnAqiDominant: 3, max_pm25: 75, min_vnAqi: 52, mean_temperature: 31 });
    expect(e0?.mean_pm25 as number).toBeCloseTo(176 / 3, 9);
  });

  it('refuses a backwards range or a device that is not a device id', async () => {
    await expect(backfillRollups(influx, T0, T0)).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
    await expect(backfillRollups(influx, T0, T0 + 1, { device: '" OR 1=1' })).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
  });
});

/* ---- Alert events ---- */

describe('alert events', () => {
  const base = Date.now() - HOUR;
  const pm25Raised: AlertEvent = {
    id: `pm25-high|hn-air-01|${base}`,
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
    raisedAt: base,
    ts: base,
  };
  const pm25Cleared: AlertEvent = { ...pm25Raised, state: 'cleared', value: 40.2, message: 'PM2.5 back below 50.4 µg/m³ for 10 min (40.2)', ts: base + 20 * MINUTE };
  const losRaised: AlertEvent = {
    id: `los-f|hcm-loop-01|${base + MINUTE}`,
    ruleId: 'los-f',
    kind: 'category',
    state: 'raised',
    severity: 'critical',
    deviceId: 'hcm-loop-01',
    province: '79',
    domain: 'traffic',
    field: 'los',
    value: 'F',
    // Text an operator might paste into a rule's message: quotes, backslashes, separators, a line break.
    message: 'LOS "F" on C:\\loops\\, lane=2 — see\nrunbook \\"jam\\"',
    raisedAt: base + MINUTE,
    ts: base + MINUTE,
  };
  const outOfBand: AlertEvent = {
    id: `oob|hcm-feeder-01|${base + 20 * MINUTE}`,
    ruleId: 'oob',
    kind: 'category',
    state: 'raised',
    severity: 'warning',
    deviceId: 'hcm-feeder-01',
    province: '79',
    domain: 'energy',
    field: 'outOfBand',
    value: true,
    message: "outside the grid code's normal band",
    raisedAt: base + 20 * MINUTE,
    ts: base + 20 * MINUTE, // the same instant as pm25Cleared: raised events come first
  };
  const noData: AlertEvent = {
    id: `silent|hn-air-02|${base + 30 * MINUTE}`,
    ruleId: 'silent',
    kind: 'no-data',
    state: 'raised',
    severity: 'info',
    deviceId: 'hn-air-02',
    province: '01',
    domain: 'environment',
    message: 'no data for 15 min',
    raisedAt: base + 30 * MINUTE,
    ts: base + 30 * MINUTE,
  };
  const otherProvince: AlertEvent = { ...noData, id: `silent|dn-air-01|${base}`, deviceId: 'dn-air-01', province: '48', raisedAt: base, ts: base };
  const tooOld: AlertEvent = { ...noData, id: `silent|hn-air-03|${base - DAY}`, deviceId: 'hn-air-03', raisedAt: base - DAY, ts: base - DAY };

  beforeAll(async () => {
    await ensureStorage(influx, OPTIONS);
    await write([pm25Cleared, losRaised, outOfBand, noData, pm25Raised, otherProvince, tooOld].map(alertEventLine));
  });

  it('round-trip exactly through alertEventLine and loadAlertEvents, oldest first, for the given provinces only', async () => {
    const events = await loadAlertEvents(influx, ['01', '79'], base - HOUR);
    expect(events).toEqual([pm25Raised, losRaised, outOfBand, pm25Cleared, noData]);
  });

  it('store each value under a field of one type', async () => {
    const [[series] = []] = await influx.query('SHOW FIELD KEYS FROM "raw"."alerts"');
    expect(Object.fromEntries((series?.values ?? []).map((row) => [row[0], row[1]]))).toEqual({
      field: 'string',
      id: 'string',
      kind: 'string',
      message: 'string',
      raisedAt: 'float',
      threshold: 'float',
      value: 'float',
      value_bool: 'boolean',
      value_text: 'string',
    });
  });

  it('skip and report stored rows that are not valid events, and keep the newest within the limit', async () => {
    await write([
      formatLine('alerts', { device: 'hn-air-01', domain: 'environment', province: '01', rule: 'pm25-high', severity: 'urgent', state: 'raised' }, { id: 'x', kind: 'threshold', message: 'm', raisedAt: base }, base + 40 * MINUTE),
    ]);
    const skipped: string[] = [];
    const events = await loadAlertEvents(influx, ['01'], base - HOUR, { onSkip: (reason) => skipped.push(reason) });
    expect(events).toEqual([pm25Raised, pm25Cleared, noData]);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatch(/severity/);

    // The limit counts stored rows, the bad one included: the newest four are bad, noData and the two at +20 min.
    expect(await loadAlertEvents(influx, ['01', '79'], base - HOUR, { limit: 4 })).toEqual([outOfBand, pm25Cleared, noData]);
  });

  it('check province codes against the catalogue and never put them in the query text', async () => {
    expect(await loadAlertEvents(influx, [], 0)).toEqual([]);
    await expect(loadAlertEvents(influx, ['01', "01' OR province =~ /.*/"], 0)).rejects.toMatchObject({ code: 'E_PROVINCE' });
    await expect(loadAlertEvents(influx, ['63'], 0)).rejects.toMatchObject({ code: 'E_PROVINCE' }); // an old 63-unit code, gone since 2025
    expect(await loadAlertEvents(influx, ['48'], 0)).toEqual([otherProvince]);
  });
});

/* ---- Escaping ---- */

describe('line protocol against InfluxDB 1.6.7', () => {
  it('reads hostile tag keys, tag values and string fields back exactly', async () => {
    const hostile = ['a,b c=d', 'back\\slash', 'a\\,b', 'a\\ b\\=c', 'quote"x', '\\"', 'Hà Nội, Việt Nam', 'tab\tx', '#hash', "'; DROP DATABASE citypulse", '==,,  '];
    const strings = [...hostile, 'say "hi"', 'C:\\dir\\', 'line 1\nline 2', 'trailing\\', '\\\\"', ''];
    await write(strings.map((text, i) => formatLine('probe', { n: String(i), [`k ${hostile[i] ?? 'plain'}`]: hostile[i] ?? 'plain' }, { s: text }, T0 + i)));
    const [series = []] = await influx.query('SELECT * FROM "raw"."probe" GROUP BY *');
    expect(series).toHaveLength(strings.length);
    for (const s of series) {
      const i = Number(s.tags?.n);
      const tags = Object.entries(s.tags ?? {}).filter(([key, value]) => key !== 'n' && value !== '');
      expect(tags).toEqual([[`k ${hostile[i] ?? 'plain'}`, hostile[i] ?? 'plain']]);
      expect(rows(s)[0]?.s).toBe(strings[i]);
    }
  });

  it('reads field keys back exactly, except the backslashes 1.x cannot carry there', async () => {
    const keys: [written: string, readBack: string][] = [
      ['a,b c=d', 'a,b c=d'],
      ['say "hi" = x', 'say "hi" = x'],
      ['back\\slash', 'back\\slash'],
      ['a\\\\,b', 'a\\\\,b'],
      ['\\"', '\\"'],
      ['a\\,b', 'a\uFF3C,b'],
      ['a\\ b', 'a\uFF3C b'],
      ['a\\=b', 'a\uFF3C=b'],
      ['end\\', 'end\uFF3C'],
      ['two\nlines', 'two lines'],
    ];
    await write(keys.map(([key], i) => formatLine('probe_keys', { n: String(i) }, { [key]: i }, T0)));
    const [series = []] = await influx.query('SELECT * FROM "raw"."probe_keys" GROUP BY *');
    const readBack = new Map(series.map((s) => [Number(s.tags?.n), Object.entries(rows(s)[0] ?? {}).find(([column, value]) => column !== 'time' && value !== null)?.[0]]));
    keys.forEach(([, expected], i) => expect(readBack.get(i)).toBe(expected));
  });

  it('writes what 1.x cannot carry in a tag as documented, and the line still stores', async () => {
    await write([`lossy,a=${escapeTag('')},b=${escapeTag('two\nlines')},c=${escapeTag('ends\\')} s=${escapeStringField('ok')} ${T0}`]);
    const [[series] = []] = await influx.query('SELECT * FROM "raw"."lossy" GROUP BY *');
    expect(series?.tags).toEqual({ a: '-', b: 'two lines', c: 'ends\uFF3C' });
  });
});

describe('Influx.writeLines', () => {
  it('writes lines in one request and reports a refused line as the client does (HttpError: statusCode, body)', async () => {
    await ensureStorage(influx, OPTIONS);
    const ts = Date.now() - MINUTE;
    await influx.writeLines([`writelines,device=a value=1 ${ts}`, `writelines,device=b value=2 ${ts}`]);
    const [[series] = []] = await influx.query('SELECT count("value") FROM "raw"."writelines"');
    expect(series?.values[0]?.[1]).toBe(2);
    await expect(influx.writeLines([`writelines,device=a value="text" ${ts + 1}`])).rejects.toMatchObject({ statusCode: 400, body: expect.stringContaining('field type conflict') as unknown });
    await influx.writeLines([]); // nothing to send: no request
  });

  it('gzips only when InfluxDB is not on this machine', () => {
    expect(['http://127.0.0.1:8086', 'http://localhost:8086', 'http://[::1]:8086', 'http://127.3.2.1'].map(isLoopback)).toEqual([true, true, true, true]);
    expect(['http://10.0.0.5:8086', 'https://influx.example.vn', 'not a url'].map(isLoopback)).toEqual([false, false, false]);
  });
});
