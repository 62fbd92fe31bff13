import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceRegistry, type NewDevice } from '@citypulse/broker/registry';
import {
  enrichReading,
  flattenReading,
  type Domain,
  type EnergyReading,
  type EnvironmentReading,
  type HistoryResponse,
  type ProvinceHistoryResponse,
  type TrafficReading,
} from '@citypulse/contracts';
import { freePort, Influx, startInfluxd, type RunningInfluxd } from '@citypulse/infra';
import { readingLine } from '@citypulse/ingest';
import { backfillRollups, ensureStorage, rollupField } from '@citypulse/ingest/storage';
import { buildApi, OperatorStore, SessionSigner, windowOffsetMs, type ApiApp } from '../src/index.js';
import { mulberry32 } from '@citypulse/simulators/random';

/**
 * History against a real InfluxDB 1.6.7: readings written as ingest writes them, roll-ups made by
 * ingest's own backfillRollups, and every number the api returns checked against the same
 * aggregate computed directly from raw readings with InfluxQL. No timing assertions (BENCHMARKS.md
 * has the figures, api/bench/history.bench.ts makes them).
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const PASSWORD = 'a-long-enough-password';
const AGGREGATES = ['mean', 'min', 'max', 'count'] as const;

const DEVICES: NewDevice[] = [
  { id: 'hn-energy-01', province: '01', domain: 'energy', kind: 'feeder', location: [105.85, 21.03], profile: { ratedPowerVA: 400_000, nominalPhaseVoltageV: 230 } },
  { id: 'hn-energy-02', province: '01', domain: 'energy', kind: 'feeder', location: [105.8, 21.0], profile: { ratedPowerVA: 250_000, nominalPhaseVoltageV: 230 } },
  { id: 'hn-air-01', province: '01', domain: 'environment', kind: 'urban', location: [105.85, 21.03] },
  { id: 'hn-air-02', province: '01', domain: 'environment', kind: 'roadside', location: [105.82, 21.01] },
  { id: 'hn-traffic-01', province: '01', domain: 'traffic', kind: 'arterial', location: [105.84, 21.02] },
  { id: 'hn-traffic-02', province: '01', domain: 'traffic', kind: 'arterial', location: [105.83, 21.02] },
  { id: 'hcm-energy-01', province: '79', domain: 'energy', kind: 'feeder', location: [106.7, 10.78], profile: { ratedPowerVA: 400_000, nominalPhaseVoltageV: 230 } },
  { id: 'hcm-air-01', province: '79', domain: 'environment', kind: 'urban', location: [106.7, 10.77] },
];

function energyReading(next: () => number, ts: number, seq: number): EnergyReading {
  const p = 120_000 + 150_000 * next();
  return {
    ts,
    seq,
    frequency: 49.9 + 0.2 * next(),
    totalActivePower: p,
    totalReactivePower: p * 0.3 * next(),
    powerFactor: 0.85 + 0.1 * next(),
    phaseVoltage: { L1: 225 + 10 * next(), L2: 225 + 10 * next(), L3: 225 + 10 * next() },
    current: { L1: p / 690, L2: p / 700, L3: p / 710 },
  };
}

function environmentReading(next: () => number, ts: number, seq: number): EnvironmentReading {
  const pm25 = 5 + 120 * next();
  // Every fifth reading lacks PM10, so counts differ between fields.
  return { ts, seq, pm25, ...(seq % 5 === 0 ? {} : { pm10: pm25 * (1.3 + next()) }), no2: 20 + 80 * next(), temperature: 22 + 10 * next() };
}

function trafficReading(next: () => number, ts: number, seq: number): TrafficReading {
  // Every seventh reading is a jammed standstill: no density, high occupancy.
  const jammed = seq % 7 === 0;
  const motorcycle = Math.round(30 + 80 * next());
  return {
    ts,
    seq,
    intensity: jammed ? 3 : motorcycle + 10,
    periodSeconds: 60,
    occupancy: jammed ? 0.6 + 0.3 * next() : 0.05 + 0.3 * next(),
    averageVehicleSpeed: jammed ? 1 : 15 + 40 * next(),
    intensityByVehicleType: { motorcycle: jammed ? 3 : motorcycle, car: jammed ? 0 : 10 },
  };
}

/** One device's readings as ingest stores them (flattened reading and its derived values), at `times`. */
function readingLines(device: NewDevice, times: readonly number[], seed: number): string[] {
  const next = mulberry32(seed);
  return times.map((ts, seq) => {
    const reading =
      device.domain === 'energy' ? energyReading(next, ts, seq) : device.domain === 'environment' ? environmentReading(next, ts, seq) : trafficReading(next, ts, seq);
    const derived = enrichReading(device.domain, reading, device.profile);
    return readingLine(device.domain, device.province, device.id, device.kind ?? 'default', ts, { ...flattenReading(reading), ...(derived as Record<string, number | string | boolean>) });
  });
}

/** Times every stepMs in [fromMs, toMs). */
function every(stepMs: number, fromMs: number, toMs: number): number[] {
  const out: number[] = [];
  for (let t = fromMs; t < toMs; t += stepMs) out.push(t);
  return out;
}

describe('history', () => {
  let dir: string;
  let influxd: RunningInfluxd;
  let influx: Influx;
  let api: ApiApp;
  /** When the data was written: readings reach up to it. */
  let now: number;
  /** The 1-minute roll-ups are made up to here, the 1-hour ones up to rolledHour: raw after. */
  let rolledMinute: number;
  let rolledHour: number;
  const tokens: Record<string, string> = {};

  const get = (url: string, who = 'root') => api.app.inject({ url: `/api/v1${url}`, headers: { authorization: `Bearer ${tokens[who]}` } });
  const getJson = async <T>(url: string, who = 'root'): Promise<T> => {
    const res = await get(url, who);
    expect(res.statusCode, res.body).toBe(200);
    return res.json<T>();
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-api-history-'));
    influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
    influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
    await ensureStorage(influx, { rawRetention: '30d', rollup1mRetention: '90d', rollup1hRetention: '730d', continuousQueries: false });

    now = Date.now();
    const lines: string[] = [];
    DEVICES.forEach((device, i) => {
      // hn-energy-01: 30 days every 10 min, then every 30 s for the last 6 hours. The others: 10 days every 30 min, then every minute for 8 hours.
      const dense = device.id === 'hn-energy-01' ? { since: now - 6 * HOUR, stepMs: 30_000, start: now - 30 * DAY + HOUR, sparseMs: 10 * MINUTE } : { since: now - 8 * HOUR, stepMs: MINUTE, start: now - 10 * DAY, sparseMs: 30 * MINUTE };
      const times = [...every(dense.sparseMs, dense.start, dense.since), ...every(dense.stepMs, dense.since, now + 1)];
      lines.push(...readingLines(device, times, i + 1));
    });
    for (let i = 0; i < lines.length; i += 5000) await influx.writeLines(lines.slice(i, i + 5000));

    // Roll-ups of what is complete, minus a tail: the api must take that tail from raw.
    rolledMinute = Math.floor(now / MINUTE) * MINUTE - 5 * MINUTE;
    rolledHour = Math.floor(now / HOUR) * HOUR - HOUR;
    await backfillRollups(influx, now - 31 * DAY, rolledMinute, { resolutions: ['1m'] });
    await backfillRollups(influx, now - 31 * DAY, rolledHour, { resolutions: ['1h'] });
    await writeOldRollups();

    const registry = await DeviceRegistry.open(dir);
    await registry.upsertDevices(DEVICES);
    const operators = await OperatorStore.open(dir);
    await operators.upsert('root', 'admin', PASSWORD);
    await operators.upsert('hanoi-desk', 'viewer', PASSWORD, ['01']);
    api = await buildApi({
      influx,
      registry,
      operators,
      sessions: await SessionSigner.fromDataDir(dir, HOUR),
      logger: pino({ level: 'silent' }),
      // Nothing listens there: REST needs no broker.
      mqtt: { url: `mqtt://127.0.0.1:${await freePort()}`, username: 'api', password: 'x' },
      dashboardDir: join(dir, 'no-dashboard'),
      dataDir: dir,
      // The hostile-input test sends hundreds of requests; the rate limit is rights.test.ts's subject.
      expensiveQueriesPerMinute: 1_000_000,
    });
    for (const username of ['root', 'hanoi-desk']) {
      const res = await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username, password: PASSWORD } });
      expect(res.statusCode, res.body).toBe(200);
      tokens[username] = res.json<{ token: string }>().token;
    }
  }, 180_000);

  afterAll(async () => {
    await api?.close();
    await influxd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** 40 days ago, past the raw retention: roll-up points such as ingest made then, for hn-energy-01. */
  const OLD_VALUES = [100_000, 200_000, 150_000];
  const oldStart = () => Math.floor((now - 40 * DAY) / HOUR) * HOUR;
  async function writeOldRollups(): Promise<void> {
    const line = (t: number, mean: number, count: number) =>
      `energy,device=hn-energy-01,kind=feeder,province=01 ${rollupField('mean', 'totalActivePower')}=${mean},${rollupField('min', 'totalActivePower')}=${mean - 10},${rollupField('max', 'totalActivePower')}=${mean + 10},${rollupField('count', 'totalActivePower')}=${count}i,${rollupField('count', 'seq')}=${count}i ${t}`;
    await influx.writeLines(OLD_VALUES.map((mean, i) => line(oldStart() + i * HOUR, mean, 60)), { retentionPolicy: 'rollup_1h' });
    await influx.writeLines(OLD_VALUES.map((mean, i) => line(oldStart() + i * MINUTE, mean, 2)), { retentionPolicy: 'rollup_1m' });
  }

  /** The same aggregates computed directly from raw readings: `SELECT fn(f) … GROUP BY time(window, offset)`. */
  async function direct(measurement: Domain, tag: 'device' | 'province', value: string, selects: readonly string[], body: { from: number; to: number; windowMs: number }) {
    const q =
      `SELECT ${selects.join(', ')} FROM "raw"."${measurement}" WHERE "${tag}" = $value AND time >= ${body.from}ms AND time < ${body.to}ms ` +
      `GROUP BY time(${body.windowMs}ms, ${windowOffsetMs(body.windowMs)}ms) fill(none)`;
    const [[series] = []] = await influx.query(q, { value });
    return new Map((series?.values ?? []).map((row) => [row[0] as number, row.slice(1) as (number | null)[]]));
  }

  /** Each column of `points` equals the directly computed one, window by window (floating-point sums aside). */
  function expectSame(points: HistoryResponse['points'], names: readonly string[], expected: Map<number, (number | null)[]>, label: string): void {
    const ours = new Map(points.map((p) => [p.t, p]));
    for (const t of expected.keys()) expect(ours.has(t), `${label}: window ${new Date(t).toISOString()} missing`).toBe(true);
    for (const point of points) {
      const row = expected.get(point.t);
      names.forEach((name, i) => {
        const want = row?.[i] ?? null;
        const got = point.values[name] ?? null;
        if (want === null || got === null) expect(got, `${label} ${name} at ${new Date(point.t).toISOString()}`).toBe(want);
        else expect(Math.abs(got - want), `${label} ${name} at ${new Date(point.t).toISOString()}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(want)));
      });
    }
  }

  const fieldsOfEnergy = ['totalActivePower', 'frequency', 'loadFactor'];

  it('reads 5-minute windows from rollup_1m, the not-yet-rolled minutes from raw, and matches raw InfluxQL for every aggregate', async () => {
    for (const aggregate of AGGREGATES) {
      const body = await getJson<HistoryResponse>(`/devices/hn-energy-01/history?from=${now - 3 * HOUR}&to=${now}&maxPoints=40&aggregate=${aggregate}`);
      expect(body.windowMs).toBe(5 * MINUTE);
      expect(body.fields).toEqual(fieldsOfEnergy);
      expect(body.sources).toEqual([
        { measurement: 'energy', retentionPolicy: 'rollup_1m', from: body.from, to: rolledMinute },
        { measurement: 'energy', retentionPolicy: 'raw', from: rolledMinute, to: body.to },
      ]);
      // One row per window, including the one the roll-up/raw boundary cuts through.
      expect(new Set(body.points.map((p) => p.t)).size).toBe(body.points.length);
      expect(body.points.length).toBeGreaterThanOrEqual(36); // 3 h, and the window the start falls in
      const expected = await direct('energy', 'device', 'hn-energy-01', fieldsOfEnergy.map((f) => `${aggregate}("${f}")`), body);
      expectSame(body.points, fieldsOfEnergy, expected, aggregate);
    }
  });

  it('reads 1-hour windows from rollup_1h with a raw tail, and local-time 6-hour windows across the boundary', async () => {
    const hourly = await getJson<HistoryResponse>(`/devices/hn-energy-01/history?from=${now - 3 * DAY}&maxPoints=73&fields=totalActivePower,loadFactor,phaseVoltage_L1`);
    expect(hourly.windowMs).toBe(HOUR);
    expect(hourly.sources.map((s) => [s.retentionPolicy, s.to])).toEqual([
      ['rollup_1h', rolledHour],
      ['raw', hourly.to],
    ]);
    const fields = ['totalActivePower', 'loadFactor', 'phaseVoltage_L1'];
    expectSame(hourly.points, fields, await direct('energy', 'device', 'hn-energy-01', fields.map((f) => `mean("${f}")`), hourly), '1h mean');

    for (const aggregate of AGGREGATES) {
      const sixHourly = await getJson<HistoryResponse>(`/devices/hn-energy-01/history?from=${now - 3 * DAY}&to=${now}&maxPoints=14&aggregate=${aggregate}`);
      expect(sixHourly.windowMs).toBe(6 * HOUR);
      // Vietnam is UTC+7: 6-hour windows start at 00, 06, 12 and 18 local time.
      for (const point of sixHourly.points) expect((point.t + 7 * HOUR) % (6 * HOUR)).toBe(0);
      expect(sixHourly.sources[0]?.retentionPolicy).toBe('rollup_1h');
      expectSame(sixHourly.points, fieldsOfEnergy, await direct('energy', 'device', 'hn-energy-01', fieldsOfEnergy.map((f) => `${aggregate}("${f}")`), sixHourly), `6h ${aggregate}`);
    }
  });

  it('answers 30 days in at most about a thousand points per field, from rollup_1h', async () => {
    const body = await getJson<HistoryResponse>(`/devices/hn-energy-01/history?from=${encodeURIComponent(new Date(now - 30 * DAY).toISOString())}`);
    expect(body.windowMs).toBe(HOUR);
    expect(body.points.length).toBeLessThanOrEqual(1000);
    expect(body.points.length).toBeGreaterThan(700);
    expect(body.sources[0]).toEqual({ measurement: 'energy', retentionPolicy: 'rollup_1h', from: body.from, to: rolledHour });
    expectSame(body.points, fieldsOfEnergy, await direct('energy', 'device', 'hn-energy-01', fieldsOfEnergy.map((f) => `mean("${f}")`), body), '30 d');
  });

  it('reads a range partly older than the raw retention from the roll-ups', async () => {
    const body = await getJson<HistoryResponse>(`/devices/hn-energy-01/history?from=${now - 45 * DAY}&maxPoints=2000&fields=totalActivePower`);
    expect(body.windowMs).toBe(HOUR);
    const old = body.points.filter((p) => p.t < now - 31 * DAY);
    expect(old).toEqual(OLD_VALUES.map((mean, i) => ({ t: oldStart() + i * HOUR, values: { totalActivePower: mean } })));
    expectSame(
      body.points.filter((p) => p.t >= now - 31 * DAY),
      ['totalActivePower'],
      await direct('energy', 'device', 'hn-energy-01', ['mean("totalActivePower")'], body),
      'recent part',
    );

    // Two hours 40 days ago would be 10-second windows of raw readings, which are gone: 1-minute roll-ups instead.
    const short = await getJson<HistoryResponse>(`/devices/hn-energy-01/history?from=${oldStart()}&to=${oldStart() + 2 * HOUR}&fields=totalActivePower&aggregate=max`);
    expect(short.windowMs).toBe(MINUTE);
    expect(short.sources).toEqual([{ measurement: 'energy', retentionPolicy: 'rollup_1m', from: oldStart(), to: oldStart() + 2 * HOUR }]);
    expect(short.points).toEqual(OLD_VALUES.map((mean, i) => ({ t: oldStart() + i * MINUTE, values: { totalActivePower: mean + 10 } })));
  });

  it('reads short ranges from raw readings', async () => {
    const body = await getJson<HistoryResponse>(`/devices/hn-energy-01/history?from=${now - HOUR}&to=${now}&fields=totalActivePower&aggregate=count`);
    expect(body.windowMs).toBe(5000);
    expect(body.sources).toEqual([{ measurement: 'energy', retentionPolicy: 'raw', from: body.from, to: body.to }]);
    expectSame(body.points, ['totalActivePower'], await direct('energy', 'device', 'hn-energy-01', ['count("totalActivePower")'], body), 'raw count');
    expect(body.points.reduce((sum, p) => sum + (p.values.totalActivePower ?? 0), 0)).toBeGreaterThanOrEqual(120); // every 30 s
  });

  it('exports any history as CSV with a header row and ISO 8601 UTC times', async () => {
    const url = `/devices/hn-energy-01/history?from=${now - 3 * DAY}&maxPoints=73&aggregate=max`;
    const json = await getJson<HistoryResponse>(url);
    const res = await get(`${url}&format=csv`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(res.headers['content-disposition']).toMatch(/^attachment; filename="citypulse_hn-energy-01_max_\d{8}T\d{4}Z_\d{8}T\d{4}Z\.csv"$/);
    const rows = res.body.trimEnd().split('\r\n');
    expect(rows[0]).toBe('time,totalActivePower_max,frequency_max,loadFactor_max');
    expect(rows).toHaveLength(json.points.length + 1);
    json.points.forEach((point, i) => {
      const cells = (rows[i + 1] as string).split(',');
      expect(cells[0]).toBe(new Date(point.t).toISOString());
      expect(cells[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(cells.slice(1).map(Number)).toEqual(fieldsOfEnergy.map((f) => point.values[f]));
    });

    const province = await get(`/provinces/01/history?from=${now - 8 * HOUR}&maxPoints=16&metrics=vnAqi,gridLoad&format=csv`);
    expect(province.statusCode).toBe(200);
    expect(province.headers['content-disposition']).toMatch(/^attachment; filename="citypulse_province-01_\d{8}T\d{4}Z_\d{8}T\d{4}Z\.csv"$/);
    expect(province.body.split('\r\n')[0]).toBe('time,vnAqi_mean,vnAqi_max,loadFactor_mean,loadFactor_max');
  });

  it("aggregates a province's VN_AQI, congestion and grid load like raw InfluxQL over its devices", async () => {
    for (const [query, windowMs, source] of [
      [`from=${now - 8 * HOUR}&maxPoints=20`, 30 * MINUTE, 'rollup_1m'],
      [`from=${now - 10 * DAY}&to=${now}&maxPoints=241`, HOUR, 'rollup_1h'],
    ] as const) {
      const body = await getJson<ProvinceHistoryResponse>(`/provinces/01/history?${query}`);
      expect(body).toMatchObject({ province: '01', windowMs, metrics: ['vnAqi', 'congestion', 'gridLoad'] });
      expect(body.fields).toEqual(['vnAqi_mean', 'vnAqi_max', 'densityPcPerMiLn_mean', 'occupancy_mean', 'loadFactor_mean', 'loadFactor_max']);
      expect(body.sources.filter((s) => s.retentionPolicy === source).map((s) => s.measurement)).toEqual(['environment', 'traffic', 'energy']);
      expect(body.points.length).toBeGreaterThan(10);
      const label = `${source} province`;
      expectSame(body.points, ['vnAqi_mean', 'vnAqi_max'], await direct('environment', 'province', '01', ['mean("vnAqi")', 'max("vnAqi")'], body), `${label} VN_AQI`);
      expectSame(body.points, ['densityPcPerMiLn_mean', 'occupancy_mean'], await direct('traffic', 'province', '01', ['mean("densityPcPerMiLn")', 'mean("occupancy")'], body), `${label} congestion`);
      expectSame(body.points, ['loadFactor_mean', 'loadFactor_max'], await direct('energy', 'province', '01', ['mean("loadFactor")', 'max("loadFactor")'], body), `${label} grid load`);
    }
    const one = await getJson<ProvinceHistoryResponse>(`/provinces/79/history?from=${now - 8 * HOUR}&maxPoints=20&metrics=gridLoad`);
    expect(one.fields).toEqual(['loadFactor_mean', 'loadFactor_max']);
    expectSame(one.points, ['loadFactor_mean', 'loadFactor_max'], await direct('energy', 'province', '79', ['mean("loadFactor")', 'max("loadFactor")'], one), '79 grid load');
  });

  it('answers a year from the epoch, and documents both routes with their CSV form in OpenAPI', async () => {
    const epoch = await getJson<HistoryResponse>(`/devices/hn-energy-01/history?from=0&to=${366 * DAY}`);
    expect(epoch).toMatchObject({ from: 0, windowMs: 12 * HOUR, points: [] });
    const doc = (await api.app.inject({ url: '/docs/json' })).json<{ paths: Record<string, { get?: { responses?: Record<string, { content?: Record<string, unknown> }> } }> }>();
    for (const path of ['/api/v1/devices/{id}/history', '/api/v1/provinces/{code}/history']) {
      expect(Object.keys(doc.paths[path]?.get?.responses?.['200']?.content ?? {}), path).toEqual(['application/json', 'text/csv']);
    }
  });

  it('keeps a province-scoped operator to its provinces', async () => {
    for (const url of [`/provinces/79/history?from=${now - HOUR}`, `/devices/hcm-energy-01/history?from=${now - HOUR}`, `/devices/hcm-energy-01/history?from=${now - HOUR}&format=csv`]) {
      const res = await get(url, 'hanoi-desk');
      expect(res.statusCode, url).toBe(403);
      expect(res.json<{ code: string }>().code).toBe('E_FORBIDDEN');
    }
    expect((await get(`/provinces/01/history?from=${now - HOUR}`, 'hanoi-desk')).statusCode).toBe(200);
    expect((await get(`/devices/hn-air-01/history?from=${now - HOUR}`, 'hanoi-desk')).statusCode).toBe(200);
  });

  it.each([
    ['/provinces/99/history?from=0', 400, 'E_PROVINCE'],
    ['/provinces/1/history?from=0', 400, 'E_PROVINCE'],
    ['/provinces/01/history?from=0&metrics=vnAqi,rainfall', 400, 'E_BAD_REQUEST'],
    ['/provinces/01/history?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 400, 'E_BAD_REQUEST'],
    ['/provinces/01/history?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', 400, 'E_BAD_REQUEST'],
    ['/provinces/01/history?from=2199-01-01T00:00:00Z', 400, 'E_BAD_REQUEST'],
    ['/devices/nobody-here/history?from=0', 404, 'E_NOT_FOUND'],
    ['/devices/hn-air-01/history?from=0&fields=totalActivePower', 400, 'E_BAD_REQUEST'],
    ['/devices/hn-air-01/history?from=0&format=xlsx', 400, 'E_BAD_REQUEST'],
  ])('GET %s → %i %s', async (url, status, code) => {
    const res = await get(url);
    expect(res.statusCode, res.body).toBe(status);
    expect(res.json<{ code: string }>().code).toBe(code);
  });

  const HOSTILE = [
    "'",
    '"',
    '"; DROP DATABASE citypulse',
    "01' OR '1'='1",
    '/.*/',
    '.*|^$',
    '$target',
    '\\',
    'a\nb',
    '\r\n',
    'x'.repeat(5000),
    'Hà Nội 🚦',
    '\u0000',
    '１２',
    '${7*7}',
    'vnAqi,congestion) FROM /.*/ --',
  ];

  it('answers a hostile string in every string parameter with a 4xx and a code, and InfluxDB keeps its data', async () => {
    const validFrom = String(now - HOUR);
    const deviceUrls = (s: string) => {
      const v = encodeURIComponent(s);
      return [
        `/devices/hn-energy-01/history?from=${v}`,
        `/devices/hn-energy-01/history?from=${validFrom}&to=${v}`,
        `/devices/hn-energy-01/history?from=${validFrom}&fields=${v}`,
        `/devices/hn-energy-01/history?from=${validFrom}&fields=totalActivePower,${v}`,
        `/devices/hn-energy-01/history?from=${validFrom}&aggregate=${v}`,
        `/devices/hn-energy-01/history?from=${validFrom}&format=${v}`,
        `/devices/hn-energy-01/history?from=${validFrom}&maxPoints=${v}`,
        `/devices/${v}/history?from=${validFrom}`,
      ];
    };
    const provinceUrls = (s: string) => {
      const v = encodeURIComponent(s);
      return [
        `/provinces/01/history?from=${v}`,
        `/provinces/01/history?from=${validFrom}&to=${v}`,
        `/provinces/01/history?from=${validFrom}&metrics=${v}`,
        `/provinces/01/history?from=${validFrom}&metrics=vnAqi,${v}`,
        `/provinces/01/history?from=${validFrom}&format=${v}`,
        `/provinces/01/history?from=${validFrom}&maxPoints=${v}`,
        `/provinces/${v}/history?from=${validFrom}`,
        `/provinces/01${v}/history?from=${validFrom}`,
      ];
    };
    for (const s of HOSTILE) {
      for (const url of [...deviceUrls(s), ...provinceUrls(s)]) {
        const res = await get(url);
        const label = `${url.slice(0, 120)} → ${res.statusCode} ${res.body.slice(0, 200)}`;
        expect(res.statusCode, label).toBeGreaterThanOrEqual(400);
        expect(res.statusCode, label).toBeLessThan(500);
        // (A path segment over 100 characters is refused by Fastify's router: 414, still with a stable code.)
        expect(res.json<{ code: string }>().code, label).toMatch(/^E_[A-Z_]+$/);
      }
    }
    const [[databases] = []] = await influx.query('SHOW DATABASES');
    expect(databases?.values.flat()).toContain('citypulse');
    const [[count] = []] = await influx.query('SELECT count("seq") FROM "raw"."energy" WHERE "device" = $device', { device: 'hn-energy-01' });
    expect(count?.values[0]?.[1]).toBeGreaterThan(4000);
  });
});
