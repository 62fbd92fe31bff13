/**
 * `pnpm --filter @citypulse/api bench:history`: response time of a device's 30-day history
 * (issue 6; target p99 under 200 ms), in one run on this machine.
 *
 * A fresh influxd (infra's startInfluxd, own temp folder, free port) holds 30 days of one energy
 * meter at one reading a minute (43,200 readings, the fields ingest stores: the flattened reading
 * and its derived values) and of BENCH_OTHERS more devices of all three domains in the same
 * province at one reading every 5 minutes, with their roll-ups made by ingest's backfillRollups up
 * to the last complete window, as ingest's stream keeps them. The api (buildApi, the broker
 * address has nothing listening: REST needs none) listens on a free port; requests go through
 * real HTTP with a Bearer token, one at a time, after a warm-up:
 *
 * - the device's 30-day history with the default fields and aggregate (1-hour windows from
 *   `rollup_1h`, the current hour from raw), as JSON and as CSV;
 * - the province's 30-day aggregates (VN_AQI, congestion, grid load), for scale;
 * - baseline: the same 30-day hourly means computed from raw readings (`GROUP BY time(1h)` on
 *   `raw`, no roll-ups), sent straight to InfluxDB, so without the api's own HTTP and JSON cost.
 *
 * Prints a Markdown table on stdout, progress on stderr; `--json FILE` also writes the figures.
 * `--requests N` per row (default 300); BENCH_OTHERS (default 30).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { DeviceRegistry, type NewDevice } from '@citypulse/broker/registry';
import { DEFAULT_HISTORY_FIELDS, enrichReading, flattenReading, type Domain, type Fields, type HistoryResponse, type Reading } from '@citypulse/contracts';
import { freePort, Influx, startInfluxd } from '@citypulse/infra';
import { readingLine } from '@citypulse/ingest';
import { backfillRollups, ensureStorage } from '@citypulse/ingest/storage';
import { buildApi, OperatorStore, SessionSigner } from '../src/index.js';
import { mulberry32 } from '@citypulse/simulators/random';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const RANGE_MS = 30 * DAY;

const args = process.argv.slice(2);
const argAfter = (name: string) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const JSON_FILE = argAfter('--json');
const REQUESTS = Number(argAfter('--requests') ?? 300);
const WARMUP = 20;
const OTHERS = Number(process.env.BENCH_OTHERS ?? 30);
if (!Number.isInteger(REQUESTS) || REQUESTS < 1) throw new Error('--requests N: a positive integer');

const progress = (line: string) => process.stderr.write(`${line}\n`);

/** A reading of the domain with a daily swing (local evening peak) and noise. */
function reading(domain: Domain, next: () => number, ts: number, seq: number): Reading {
  const daily = 0.5 + 0.5 * Math.sin(((ts / HOUR + 7 - 13) / 24) * 2 * Math.PI);
  switch (domain) {
    case 'energy': {
      const p = 80_000 + 200_000 * daily + 20_000 * next();
      return {
        ts,
        seq,
        frequency: 49.9 + 0.2 * next(),
        totalActivePower: p,
        totalReactivePower: p * 0.3,
        powerFactor: 0.9 + 0.05 * next(),
        phaseVoltage: { L1: 225 + 10 * next(), L2: 225 + 10 * next(), L3: 225 + 10 * next() },
        current: { L1: p / 690, L2: p / 700, L3: p / 710 },
        totalActiveEnergyImport: 1_000_000 + seq * 3,
      };
    }
    case 'environment': {
      const pm25 = 10 + 80 * daily + 20 * next();
      return { ts, seq, pm25, pm10: pm25 * 1.6, no2: 30 + 60 * daily, o3: 40 + 40 * next(), co: 800 + 400 * next(), temperature: 24 + 8 * daily, relativeHumidity: 0.6 + 0.3 * next() };
    }
    case 'traffic': {
      const motorcycle = Math.round(20 + 120 * daily * next());
      return {
        ts,
        seq,
        intensity: motorcycle + 15,
        periodSeconds: 60,
        occupancy: 0.05 + 0.4 * daily,
        averageVehicleSpeed: 50 - 35 * daily,
        intensityByVehicleType: { motorcycle, car: 12, bus: 1, lorry: 2 },
      };
    }
  }
}

function linesOf(device: NewDevice, fromMs: number, toMs: number, stepMs: number, seed: number): string[] {
  const next = mulberry32(seed);
  const lines: string[] = [];
  let seq = 0;
  for (let ts = fromMs; ts < toMs; ts += stepMs) {
    const r = reading(device.domain, next, ts, seq++);
    const fields: Fields = { ...flattenReading(r), ...(enrichReading(device.domain, r, device.profile) as Fields) };
    lines.push(readingLine(device.domain, device.province, device.id, device.kind ?? 'default', ts, fields));
  }
  return lines;
}

interface Stats {
  readonly n: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  readonly maxMs: number;
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
  return { n: sorted.length, p50Ms: rank(0.5), p99Ms: rank(0.99), meanMs: sorted.reduce((s, x) => s + x, 0) / sorted.length, maxMs: sorted.at(-1) ?? Number.NaN };
}

/** Runs `once` WARMUP times unmeasured, then REQUESTS times one after the other, timing each. */
async function measure(label: string, once: () => Promise<void>): Promise<Stats> {
  for (let i = 0; i < WARMUP; i++) await once();
  const samples: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const start = performance.now();
    await once();
    samples.push(performance.now() - start);
  }
  const result = stats(samples);
  progress(`${label}: p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms`);
  return result;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-history-bench-'));
  const influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
  const influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
  try {
    const influxVersion = (await fetch(`${influxd.url}/ping`)).headers.get('x-influxdb-version') ?? 'unknown';
    await ensureStorage(influx, { rawRetention: '30d', rollup1mRetention: '90d', rollup1hRetention: '730d', continuousQueries: false });

    const now = Date.now();
    const start = now - RANGE_MS + MINUTE; // inside the 30-day raw retention
    const target: NewDevice = { id: 'hn-feeder-0001', province: '01', domain: 'energy', kind: 'feeder', location: [105.85, 21.03], profile: { ratedPowerVA: 400_000, nominalPhaseVoltageV: 230 } };
    const domains: Domain[] = ['energy', 'environment', 'traffic'];
    const others: NewDevice[] = Array.from({ length: OTHERS }, (_, i) => {
      const domain = domains[i % domains.length] as Domain;
      return { id: `hn-${domain}-${String(i + 2).padStart(4, '0')}`, province: '01', domain, location: [105.8 + i * 0.001, 21.0], ...(domain === 'energy' ? { profile: { ratedPowerVA: 250_000, nominalPhaseVoltageV: 230 } } : {}) };
    });

    let written = 0;
    const write = async (lines: string[]) => {
      for (let i = 0; i < lines.length; i += 5000) await influx.writeLines(lines.slice(i, i + 5000));
      written += lines.length;
    };
    const t0 = performance.now();
    await write(linesOf(target, start, now, MINUTE, 1));
    for (const [i, device] of others.entries()) await write(linesOf(device, start, now, 5 * MINUTE, i + 2));
    progress(`wrote ${written.toLocaleString('en')} readings in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // Roll-ups as ingest's stream leaves them: every complete window.
    const t1 = performance.now();
    await backfillRollups(influx, start, Math.floor(now / MINUTE) * MINUTE, { resolutions: ['1m'] });
    await backfillRollups(influx, start, Math.floor(now / HOUR) * HOUR, { resolutions: ['1h'] });
    progress(`roll-ups made in ${((performance.now() - t1) / 1000).toFixed(1)} s`);

    const registry = await DeviceRegistry.open(dir);
    await registry.upsertDevices([target, ...others]);
    const operators = await OperatorStore.open(dir);
    const password = 'bench-password-long-enough';
    await operators.upsert('bench', 'viewer', password);
    const api = await buildApi({
      influx,
      registry,
      operators,
      sessions: await SessionSigner.fromDataDir(dir, HOUR),
      logger: pino({ level: 'error' }), // not the broker's absence every second
      mqtt: { url: `mqtt://127.0.0.1:${await freePort()}`, username: 'api', password: 'x' },
      dashboardDir: join(dir, 'no-dashboard'),
      dataDir: dir,
      expensiveQueriesPerMinute: 1_000_000,
    });
    try {
      const address = await api.app.listen({ port: 0, host: '127.0.0.1' });
      const login = await fetch(`${address}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'bench', password }) });
      const { token } = (await login.json()) as { token: string };
      const headers = { authorization: `Bearer ${token}` };
      const from = () => String(Date.now() - RANGE_MS);

      const deviceUrl = (format: string) => `${address}/api/v1/devices/${target.id}/history?from=${from()}${format}`;
      const probe = (await (await fetch(deviceUrl(''), { headers })).json()) as HistoryResponse;
      progress(`device history: ${probe.points.length} points of ${probe.windowMs / MINUTE} min, sources ${probe.sources.map((s) => s.retentionPolicy).join(' + ')}`);
      const getOk = async (url: string) => {
        const res = await fetch(url, { headers });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
      };

      const fields = DEFAULT_HISTORY_FIELDS.energy.map((f) => `mean("${f}")`).join(', ');
      const rawBaseline = async () => {
        const to = Date.now();
        await influx.query(`SELECT ${fields} FROM "raw"."energy" WHERE "device" = $device AND time >= ${to - RANGE_MS}ms AND time < ${to}ms GROUP BY time(1h) fill(none)`, { device: target.id });
      };

      const rows = [
        { what: `api: device 30-day history, JSON (default fields, ${probe.points.length} points of 1 h)`, source: 'rollup_1h + raw tail', stats: await measure('device JSON', () => getOk(deviceUrl(''))) },
        { what: 'api: the same as CSV', source: 'rollup_1h + raw tail', stats: await measure('device CSV', () => getOk(deviceUrl('&format=csv'))) },
        {
          what: `api: province 30-day history (VN_AQI, congestion, grid load of ${OTHERS + 1} devices)`,
          source: 'rollup_1h + raw tail',
          stats: await measure('province JSON', () => getOk(`${address}/api/v1/provinces/01/history?from=${from()}`)),
        },
        { what: 'baseline: the same device query on raw readings, InfluxQL straight to InfluxDB', source: 'raw (GROUP BY time(1h))', stats: await measure('raw baseline', rawBaseline) },
      ];

      const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
      const report = { date: new Date().toISOString(), machine, influxdb: influxVersion, requests: REQUESTS, warmup: WARMUP, readings: written, devices: OTHERS + 1, rows };
      console.log(`30-day history response times, ${report.date.slice(0, 10)} (${machine}; InfluxDB ${influxVersion}); ${REQUESTS} sequential requests per row after ${WARMUP} warm-up\n`);
      console.log('| query | read from | p50 | p99 | mean | max |');
      console.log('|---|---|---:|---:|---:|---:|');
      for (const row of rows) {
        const s = row.stats;
        console.log(`| ${row.what} | ${row.source} | ${s.p50Ms.toFixed(1)} ms | ${s.p99Ms.toFixed(1)} ms | ${s.meanMs.toFixed(1)} ms | ${s.maxMs.toFixed(1)} ms |`);
      }
      const p99 = rows[0]?.stats.p99Ms ?? Number.NaN;
      console.log(`\nTarget: 30-day history p99 under 200 ms: ${p99 < 200 ? 'met' : 'NOT met'} (${p99.toFixed(1)} ms).`);
      if (JSON_FILE) await writeFile(JSON_FILE, `${JSON.stringify(report, null, 2)}\n`);
    } finally {
      await api.close();
    }
  } finally {
    await influxd.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
