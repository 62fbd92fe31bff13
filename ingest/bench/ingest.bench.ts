/**
 * `pnpm --filter @citypulse/ingest bench` (also run by `npm run bench`): ingest against InfluxDB's
 * own write ceiling, in one run on this machine (issue 5).
 *
 * 1. Raw ceiling: a fresh influxd (infra's startInfluxd, own temp folder, free port) takes line
 *    protocol over HTTP in 5,000-line batches from this process, no MQTT. The lines are made by
 *    ingest's own code (readingLine, enrichReading, flattenReading) for the same fleet of devices
 *    the MQTT runs use, so they have the shape and the series of ingest's lines.
 * 2. One reading per message: devices provisioned in a fresh registry log in to our broker (its
 *    own process, `broker/src/server.ts`) with their secrets, one MQTT 3.1.1 connection each (raw-link.ts, a lean client), spread
 *    over forked generator processes, and publish at QoS 1 at a fixed offered rate; ingest (its
 *    own process, `ingest/src/server.ts`, configured by its environment variables) stores them
 *    in the same influxd.
 * 3. Gateway batches: gateway accounts publish `{"readings":[…]}` messages of many readings for
 *    the devices registered behind them, as fast as ingest stores them (a window of readings
 *    sent and not yet stored, fed from ingest's /metrics) or at a fixed rate (BENCH_BATCH_RATE).
 *
 * Each MQTT run gets its own ingest process and database. Zero loss is checked by counting the
 * points in InfluxDB after ingest drained and stopped, against the readings of every message the
 * broker acknowledged (PUBACK) to the generators. Device-to-stored latency comes from ingest's
 * `citypulse_ingest_lag_seconds` histogram (device timestamp → batch stored), the difference of
 * two scrapes around the measured window. CPU is utime + stime from /proc/PID/stat of the broker,
 * ingest, influxd and the generators over the measured window.
 *
 * Prints a Markdown table for BENCHMARKS.md on stdout, progress on stderr; `--json FILE` also
 * writes the figures; `--quick` for a short try (20 s runs, 5,000 readings/s); `--only ceiling|single|batch` runs the
 * raw ceiling and at most one of the MQTT runs. Environment:
 * BENCH_SECONDS (one-reading run, default 300), BENCH_BATCH_SECONDS (default 60),
 * BENCH_CEILING_SECONDS (default 30), BENCH_RATE (offered readings/s of the one-reading run,
 * default 10,000), BENCH_DEVICES (1,000), BENCH_GATEWAYS (20), BENCH_BATCH (readings per batch
 * message, 100), BENCH_BATCH_RATE (readings/s; default 0: as fast as stored), BENCH_BATCH_WINDOW
 * (readings in flight when as fast as stored, 20,000), BENCH_GENERATORS (2),
 * BENCH_CEILING_CONCURRENCY (writes in flight for the ceiling, 2), BENCH_BROKER_STORE (disk, the
 * broker's default, or memory). INGEST_* and BROKER_* variables of the caller reach the services
 * and are reported.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeTelemetry, enrichReading, flattenReading, type Fields } from '@citypulse/contracts';
import { DeviceRegistry } from '@citypulse/broker/registry';
import { freePort, Influx, startInfluxd } from '@citypulse/infra';
import { readingLine } from '../src/records.js';
import { fleetDevice, fleetReading, GATEWAY_DEVICE_BASE } from './fleet.js';
import type { GeneratorConnection, GeneratorCounts } from './protocol.js';
import {
  countReadings,
  cpuSeconds,
  exitCleanup,
  startBrokerService,
  startGenerator,
  type Generator,
  histogramBetween,
  quantileOf,
  residentBytes,
  scrape,
  shareAtMost,
  provisionFleetDevices,
  startIngestService,
  total,
  type Quantile,
  type Samples,
  type Service,
} from './services.js';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const jsonAt = args.indexOf('--json');
const JSON_FILE = jsonAt >= 0 ? args[jsonAt + 1] : undefined;
const onlyAt = args.indexOf('--only');
/** `--only ceiling|single|batch`: the raw ceiling always runs (the ratios need it), then only that MQTT run. */
const ONLY = onlyAt >= 0 ? args[onlyAt + 1] : undefined;
/** `--timeline`: one line a second during each MQTT run (stored/s, lag, buffer, CPU per process), to see where a tail comes from. */
const TIMELINE = args.includes('--timeline');
if (ONLY !== undefined && !['ceiling', 'single', 'batch'].includes(ONLY)) throw new Error(`--only ${ONLY}: use ceiling, single or batch`);

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const value = Number(raw);
  return raw !== undefined && raw !== '' && Number.isFinite(value) && value >= 0 ? Math.floor(value) : fallback;
};
const SINGLE_SECONDS = Math.max(1, envInt('BENCH_SECONDS', QUICK ? 20 : 300));
const BATCH_SECONDS = Math.max(1, envInt('BENCH_BATCH_SECONDS', QUICK ? 20 : 60));
const CEILING_SECONDS = Math.max(1, envInt('BENCH_CEILING_SECONDS', QUICK ? 10 : 30));
const WARMUP_S = QUICK ? 3 : 5;
const SINGLE_RATE = envInt('BENCH_RATE', QUICK ? 5000 : 10_000);
const DEVICES = Math.max(3, envInt('BENCH_DEVICES', 1000));
const GATEWAYS = Math.max(1, envInt('BENCH_GATEWAYS', 20));
const BATCH = Math.min(1000, Math.max(2, envInt('BENCH_BATCH', 100)));
const BATCH_RATE = envInt('BENCH_BATCH_RATE', 0);
const GENERATORS = Math.max(1, envInt('BENCH_GENERATORS', 2));
/** As fast as stored: readings sent and not yet stored, over all generators (below ingest's 40,000-line bound, so it never pauses). */
const BATCH_WINDOW = Math.max(BATCH * GENERATORS, envInt('BENCH_BATCH_WINDOW', 20_000));
const CEILING_WRITERS = Math.max(1, envInt('BENCH_CEILING_CONCURRENCY', 2));
const BROKER_STORE = process.env.BENCH_BROKER_STORE ?? 'disk';
const CEILING_BATCH_LINES = 5000;
/** Messages awaiting their PUBACK per connection, at most. */
const INFLIGHT = 64;
/** The readings of a series in the ceiling run are this far apart (10 Hz, as in the one-reading run at its defaults). */
const CEILING_SPACING_MS = 100;
const TARGET = { sustainedPerS: 10_000, sustainedSeconds: 300, ratioToCeiling: 0.5, p99Seconds: 2 } as const;
const LAG = 'citypulse_ingest_lag_seconds';
const READINGS = 'citypulse_ingest_readings_written_total';

const log = (line: string) => console.error(`[ingest bench] ${line}`);
const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

// ---------------------------------------------------------------------------------------------
// Cleanup: every child process and temp folder, on success, failure, Ctrl+C or SIGTERM

const { cleanups, cleanup, cleaning } = exitCleanup(log);

// ---------------------------------------------------------------------------------------------
// 1. InfluxDB's raw ceiling

interface CeilingResult {
  readonly database: string;
  readonly seconds: number;
  readonly writers: number;
  readonly batchLines: number;
  readonly series: number;
  readonly points: number;
  readonly pointsPerS: number;
  readonly bytesPerLine: number;
  /** Every point written, warm-up included, and what InfluxDB counted back. */
  readonly written: number;
  readonly counted: number;
  readonly influxdCpuSeconds: number;
  readonly benchCpuSeconds: number;
}

/** Everything of ingest's line for a fleet device's reading but the timestamp, a few variants each. */
function lineBodies(variants: number): string[][] {
  const bodies: string[][] = [];
  for (let n = 0; n < DEVICES; n++) {
    const device = fleetDevice(n);
    const list: string[] = [];
    for (let v = 1; v <= variants; v++) {
      const reading = fleetReading(device, v, Date.now());
      // As ingest's app.ts makes a line: the flattened reading, its derived values, readingLine.
      const fields = flattenReading(reading);
      Object.assign(fields, enrichReading(device.domain, reading, device.profile) as Fields);
      const line = readingLine(device.domain, device.province, device.id, device.kind, reading.ts, fields);
      list.push(line.slice(0, line.lastIndexOf(' ') + 1));
    }
    bodies.push(list);
  }
  return bodies;
}

async function rawCeiling(influxUrl: string, influxdPid: number): Promise<CeilingResult> {
  const database = 'bench_ceiling';
  await new Influx({ url: influxUrl, database, retentionPolicy: 'raw', apiVersion: 'v1' }).ensureDatabase('30d');
  const variants = 8;
  const bodies = lineBodies(variants);
  const t0Ms = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;
  let nextPoint = 0;
  const batch = (): string => {
    const parts = new Array<string>(CEILING_BATCH_LINES);
    for (let i = 0; i < CEILING_BATCH_LINES; i++) {
      const p = nextPoint++;
      const round = Math.floor(p / DEVICES);
      parts[i] = `${(bodies[p % DEVICES] as string[])[round % variants] as string}${t0Ms + round * CEILING_SPACING_MS}`;
    }
    return parts.join('\n');
  };
  const url = `${influxUrl}/write?${new URLSearchParams({ db: database, rp: 'raw', precision: 'ms' }).toString()}`;
  let written = 0;
  let bytes = 0;
  const started = performance.now();
  const measureFrom = started + WARMUP_S * 1000;
  const deadline = measureFrom + CEILING_SECONDS * 1000;
  let window: { t: number; written: number; influxd: number; bench: NodeJS.CpuUsage } | undefined;
  log(`raw ceiling: ${CEILING_WRITERS} writer(s) of ${fmt(CEILING_BATCH_LINES)}-line batches for ${WARMUP_S} + ${CEILING_SECONDS} s (${fmt(DEVICES)} series) …`);
  const writer = async () => {
    while (performance.now() < deadline) {
      if (!window && performance.now() >= measureFrom) window = { t: performance.now(), written, influxd: await cpuSeconds(influxdPid), bench: process.cpuUsage() };
      const body = batch();
      const response = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/plain; charset=utf-8' } });
      const text = await response.text();
      if (response.status !== 204) throw new Error(`InfluxDB answered ${response.status} to a ceiling batch: ${text.slice(0, 300)}`);
      written += CEILING_BATCH_LINES;
      bytes += Buffer.byteLength(body);
    }
  };
  await Promise.all(Array.from({ length: CEILING_WRITERS }, writer));
  const end = performance.now();
  const influxdEnd = await cpuSeconds(influxdPid);
  const w = window ?? { t: started, written: 0, influxd: 0, bench: process.cpuUsage() };
  const bench = process.cpuUsage(w.bench);
  const seconds = (end - w.t) / 1000;
  const points = written - w.written;
  const counted = await countReadings(influxUrl, database);
  const result: CeilingResult = {
    database,
    seconds,
    writers: CEILING_WRITERS,
    batchLines: CEILING_BATCH_LINES,
    series: DEVICES,
    points,
    pointsPerS: points / seconds,
    bytesPerLine: bytes / Math.max(1, written),
    written,
    counted,
    influxdCpuSeconds: influxdEnd - w.influxd,
    benchCpuSeconds: (bench.user + bench.system) / 1e6,
  };
  log(
    `raw ceiling: ${fmt(result.pointsPerS)} points/s over ${seconds.toFixed(1)} s (${fmt(result.bytesPerLine)} bytes per line), influxd ${((result.influxdCpuSeconds / seconds) * 100).toFixed(0)} % of a core, this writer ${((result.benchCpuSeconds / seconds) * 100).toFixed(0)} %; ${fmt(written)} written, ${fmt(counted)} counted back`,
  );
  return result;
}

// ---------------------------------------------------------------------------------------------
// Platform: provisioning, broker, ingest

interface Provisioned {
  readonly dataDir: string;
  readonly ingestSecret: string;
  readonly deviceConnections: GeneratorConnection[];
  readonly gatewayConnections: GeneratorConnection[];
}

async function provision(dataDir: string): Promise<Provisioned> {
  const t0 = performance.now();
  const registry = await DeviceRegistry.open(dataDir);
  try {
    const ingestSecret = await registry.upsertService('ingest', 'ingest');
    const deviceConnections = await provisionFleetDevices(registry, DEVICES);
    const gatewayConnections: GeneratorConnection[] = [];
    for (let g = 0; g < GATEWAYS; g++) {
      const id = `bench-gateway-${g}`;
      const password = await registry.upsertService(id, 'gateway');
      gatewayConnections.push({ clientId: id, username: id, password, devices: Array.from({ length: Math.ceil((DEVICES - g) / GATEWAYS) }, (_, k) => GATEWAY_DEVICE_BASE + g + k * GATEWAYS) });
    }
    const behind = gatewayConnections.flatMap((c) => c.devices.map((n) => ({ n, gateway: c.username })));
    await registry.upsertDevices(
      behind.map(({ n, gateway }) => {
        const d = fleetDevice(n);
        return { id: d.id, province: d.province, domain: d.domain, kind: d.kind, location: d.location, gateway, ...(d.profile ? { profile: d.profile } : {}) };
      }),
    );
    log(`provisioned ${fmt(DEVICES)} devices with secrets, ${GATEWAYS} gateway accounts with ${fmt(behind.length)} devices behind them and the ingest account in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { dataDir, ingestSecret, deviceConnections, gatewayConnections };
  } finally {
    registry.close();
  }
}

/** Variables of the caller's environment with this prefix (passed through to the service), except those the bench sets. */
const passedThrough = (prefix: string, own: readonly string[]) =>
  Object.entries(process.env)
    .filter(([key]) => key.startsWith(prefix) && !own.includes(key))
    .map(([key, value]) => `${key}=${value}`);
const BROKER_OWN = ['BROKER_HTTP_PORT', 'BROKER_HTTP_HOST', 'BROKER_RATE_PER_S', 'BROKER_RATE_BURST', 'BROKER_STORE'];
const INGEST_OWN = ['INGEST_MQTT_PASSWORD', 'INGEST_HTTP_HOST', 'INGEST_HTTP_PORT'];

interface Broker {
  readonly service: Service;
  readonly url: string;
  readonly metricsUrl: string;
}

async function startBroker(dataDir: string): Promise<Broker> {
  const httpPort = await freePort();
  const { service, url } = await startBrokerService(dataDir, {
    BROKER_HTTP_HOST: '127.0.0.1',
    BROKER_HTTP_PORT: String(httpPort),
    // The bench's devices publish far above a real device's 10/s: the limiter runs, drops nothing.
    BROKER_RATE_PER_S: '1000000',
    BROKER_RATE_BURST: '1000000',
    BROKER_STORE,
  });
  cleanups.push(() => service.stop());
  log(`broker: pid ${service.pid}, ${url}, store ${BROKER_STORE}`);
  return { service, url, metricsUrl: `http://127.0.0.1:${httpPort}/metrics` };
}

/** Waits until the broker is quiet (under 5 % of a core over a second; at most 120 s): the previous run's disconnects and store clean-up done. */
async function brokerSettled(broker: Broker): Promise<number> {
  const t0 = performance.now();
  for (let before = await cpuSeconds(broker.service.pid); performance.now() - t0 < 120_000; ) {
    await sleep(1000);
    const now = await cpuSeconds(broker.service.pid);
    if (now - before < 0.05) break;
    before = now;
  }
  return (performance.now() - t0) / 1000;
}

async function startIngestProcess(p: Provisioned, broker: Broker, influxUrl: string, database: string): Promise<{ service: Service; metricsUrl: string }> {
  const settle = await brokerSettled(broker);
  if (settle > 1.5) log(`waited ${settle.toFixed(0)} s for the broker to go quiet before starting ingest`);
  const started = await startIngestService({ dataDir: p.dataDir, mqttUrl: broker.url, ingestSecret: p.ingestSecret, influxUrl, database, label: 'ingest', log, cleanups });
  log(`ingest: pid ${started.service.pid}, database ${database}, ${started.metricsUrl}`);
  return started;
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. End to end

interface RunSpec {
  readonly key: 'single' | 'batch';
  readonly label: string;
  readonly database: string;
  readonly connections: readonly GeneratorConnection[];
  readonly readingsPerMessage: number;
  /** Offered messages/s over all generators; 0: as fast as stored. */
  readonly messagesPerS: number;
  /** Readings sent and not yet stored, at most, over all generators (as fast as stored). */
  readonly readingsWindow: number;
  readonly seconds: number;
}

interface ProcessCpu {
  readonly process: string;
  readonly cpuSeconds: number;
  /** One core = 100 %. */
  readonly percent: number;
  readonly per100kReadings: number;
}

interface RunResult {
  readonly key: RunSpec['key'];
  readonly label: string;
  readonly database: string;
  readonly connections: number;
  readonly devices: number;
  readonly readingsPerMessage: number;
  readonly offeredReadingsPerS: number | undefined;
  readonly readingsWindow: number | undefined;
  readonly seconds: number;
  readonly storedInWindow: number;
  readonly storedPerS: number;
  readonly ackedPerS: number;
  readonly messagesPerS: number;
  readonly ratioToCeiling: number;
  readonly lagObservations: number;
  readonly p50: Quantile | undefined;
  readonly p99: Quantile | undefined;
  readonly max: number | undefined;
  readonly withinTarget: number | undefined;
  readonly cpu: readonly ProcessCpu[];
  readonly generators: GeneratorCounts;
  /** Readings InfluxDB holds after ingest drained and stopped, and the acknowledged ones missing. */
  readonly counted: number;
  readonly lost: number;
  /** Acknowledged readings that reached InfluxDB only through a second ingest process on the same session (undefined: none were missing). */
  readonly afterReconnect?: number | undefined;
  /** False when the bench stopped waiting for ingest to store the backlog: then `lost` may include readings still queued in the broker. */
  readonly drained: boolean;
  readonly drainSeconds: number;
  readonly rejected: number;
  /** ingest's own view of its InfluxDB writes over the window: lines per batch and time per write. */
  readonly batchLinesMean: number;
  readonly writeSecondsMean: number;
  readonly writeSecondsP99: Quantile | undefined;
  readonly backpressurePauses: number;
  readonly redelivered: number;
  readonly writeFailures: number;
  readonly brokerRateLimited: number;
  /** QoS 1 messages the broker's store held for ingest at the end of the window (disk and redis stores only). */
  readonly brokerQueuedAtEnd: number | undefined;
  readonly ingestRssMiB: number;
  readonly brokerRssMiB: number;
}

interface Snapshot {
  readonly t: number;
  readonly ingest: Samples;
  readonly cpu: ReadonlyMap<string, number>;
  readonly bench: NodeJS.CpuUsage;
  readonly counts: readonly GeneratorCounts[];
}

/** Mean of a histogram's observations between two scrapes (its _sum over its _count). */
const meanBetween = (before: Samples, after: Samples, name: string): number =>
  (total(after, `${name}_sum`) - total(before, `${name}_sum`)) / Math.max(1, total(after, `${name}_count`) - total(before, `${name}_count`));

const sumCounts = (list: readonly GeneratorCounts[]): GeneratorCounts =>
  list.reduce<GeneratorCounts>(
    (a, c) => ({
      messagesSent: a.messagesSent + c.messagesSent,
      messagesAcked: a.messagesAcked + c.messagesAcked,
      readingsSent: a.readingsSent + c.readingsSent,
      readingsAcked: a.readingsAcked + c.readingsAcked,
      errors: a.errors + c.errors,
      skipped: a.skipped + c.skipped,
      cpuSeconds: a.cpuSeconds + c.cpuSeconds,
      seconds: Math.max(a.seconds, c.seconds),
    }),
    { messagesSent: 0, messagesAcked: 0, readingsSent: 0, readingsAcked: 0, errors: 0, skipped: 0, cpuSeconds: 0, seconds: 0 },
  );

async function endToEnd(spec: RunSpec, p: Provisioned, broker: Broker, influx: { url: string; pid: number }, ceilingPerS: number): Promise<RunResult> {
  const { service: ingest, metricsUrl } = await startIngestProcess(p, broker, influx.url, spec.database);
  const generators: Generator[] = [];
  const closeGenerators = () => Promise.all(generators.map((g) => g.close({ type: 'close' })));
  cleanups.push(closeGenerators);
  const closedLoop = spec.messagesPerS <= 0;
  let feeding = true;
  let feeder: Promise<void> = Promise.resolve();
  try {
    for (let g = 0; g < GENERATORS; g++) generators.push(startGenerator(`generator ${g}`));
    const shares = generators.map((_, g) => spec.connections.filter((_c, i) => i % generators.length === g));
    const connected = await Promise.all(generators.map((gen, g) => gen.ask({ type: 'connect', url: broker.url, connections: shares[g] as GeneratorConnection[], connectConcurrency: 16 }, 'connected', 600_000)));
    const failed = connected.reduce((a, c) => a + c.failed, 0);
    if (failed > 0) throw new Error(`${spec.label}: ${failed} connections failed: ${connected.find((c) => c.firstError)?.firstError}`);
    log(`${spec.label}: ${fmt(spec.connections.length)} connections over ${generators.length} generator processes in ${Math.max(...connected.map((c) => c.seconds)).toFixed(1)} s`);

    const pids = (): [string, number][] => [['broker', broker.service.pid], ['ingest', ingest.pid], ['influxd', influx.pid], ...generators.map((g, i): [string, number] => [`generator ${i}`, g.pid])];
    const snapshot = async (): Promise<Snapshot> => {
      const [samples, counts, cpu] = await Promise.all([
        scrape(metricsUrl, 60_000),
        Promise.all(generators.map((g) => g.ask({ type: 'count' }, 'counts', 30_000))),
        Promise.all(pids().map(async ([name, pid]): Promise<[string, number]> => [name, await cpuSeconds(pid)])),
      ]);
      return { t: performance.now(), ingest: samples, cpu: new Map(cpu), bench: process.cpuUsage(), counts };
    };

    await Promise.all(
      generators.map((g) =>
        g.ask({ type: 'start', messagesPerS: spec.messagesPerS / generators.length, readingsPerMessage: spec.readingsPerMessage, inflight: INFLIGHT, readingsWindow: spec.readingsWindow / generators.length }, 'started'),
      ),
    );
    const startAt = performance.now();
    // Feed the generators what ingest stored (as fast as stored), and say how it goes.
    const progressEveryMs = QUICK ? 5000 : 15_000;
    feeder = (async () => {
      let last = { t: performance.now(), stored: 0 };
      let tick: { t: number; samples: Samples; cpu: Map<string, number> } | undefined;
      while (feeding) {
        const samples = await scrape(metricsUrl).catch(() => undefined);
        if (samples && TIMELINE && (tick === undefined || performance.now() - tick.t >= 1000)) {
          const cpu = new Map(await Promise.all(pids().map(async ([name, pid]): Promise<[string, number]> => [name, await cpuSeconds(pid).catch(() => 0)])));
          const now = performance.now();
          if (tick) {
            const s = (now - tick.t) / 1000;
            const lag = histogramBetween(tick.samples, samples, LAG);
            const over2 = lag.count - (lag.cumulative[lag.bounds.indexOf(2)] ?? lag.count);
            const busy = [...cpu].map(([name, c]) => `${name.replace('generator ', 'g')} ${fmt((100 * (c - (tick?.cpu.get(name) ?? c))) / s)}%`).join(' ');
            log(
              `timeline ${((now - startAt) / 1000).toFixed(1)} s: stored ${fmt((total(samples, READINGS) - total(tick.samples, READINGS)) / s)}/s, lag p50 ${quantileOf(lag, 0.5)?.estimate.toFixed(2) ?? '-'} s, > 2 s ${fmt(over2)}, buffered ${fmt(total(samples, 'citypulse_ingest_buffered_lines'))}; CPU ${busy}`,
            );
          }
          tick = { t: now, samples, cpu };
        }
        if (samples) {
          const stored = total(samples, READINGS);
          if (closedLoop) for (const g of generators) g.send({ type: 'stored', readings: stored / generators.length });
          const now = performance.now();
          if (now - last.t >= progressEveryMs) {
            log(
              `${spec.label}: ${fmt(((stored - last.stored) * 1000) / (now - last.t))} readings/s stored, ${fmt(total(samples, 'citypulse_ingest_buffered_lines'))} lines buffered, ${total(samples, 'citypulse_ingest_backpressure_pauses_total')} pauses`,
            );
            last = { t: now, stored };
          }
        }
        await sleep(closedLoop ? 50 : 500);
      }
    })();

    await sleep(WARMUP_S * 1000);
    const w0 = await snapshot();
    log(`${spec.label}: measuring for ${spec.seconds} s …`);
    await sleep(spec.seconds * 1000);
    const w1 = await snapshot();
    const rss = { ingest: await residentBytes(ingest.pid), broker: await residentBytes(broker.service.pid) };
    // Stop sending now; the broker's view of its queue is taken meanwhile (a busy broker answers slowly).
    const [brokerAtEnd, stopped] = await Promise.all([
      scrape(broker.metricsUrl).catch(() => new Map<string, number>()),
      Promise.all(generators.map((g) => g.ask({ type: 'stop' }, 'stopped', 120_000))),
    ]);
    feeding = false;
    await feeder;
    const totals = sumCounts(stopped);

    // Drain: ingest stores whatever it took or the broker still holds for it (a backlog, if the run fell behind).
    const drainStart = performance.now();
    const drainLimitMs = Math.max(300, 2 * spec.seconds) * 1000;
    let lastProgress = -1;
    let lastChange = drainStart;
    let lastLog = drainStart;
    let drained = false;
    let end = w1.ingest;
    for (;;) {
      end = await scrape(metricsUrl);
      // Counted in InfluxDB, not from ingest's counter: a message delivered twice (a device's
      // QoS 1 resend after a reconnect) is counted twice there but overwrites its own point.
      const stored = await countReadings(influx.url, spec.database);
      // And nothing left in the broker's queue for ingest: what is still there (stored, not yet
      // acknowledged, or resends) would otherwise be delivered to the next run's ingest.
      const brokerNow = await scrape(broker.metricsUrl).catch(() => new Map<string, number>());
      const queuedInBroker = brokerNow.has('citypulse_broker_queued_messages') ? total(brokerNow, 'citypulse_broker_queued_messages') : 0;
      if (stored >= totals.readingsAcked && total(end, 'citypulse_ingest_buffered_lines') === 0 && queuedInBroker === 0) {
        drained = true;
        break;
      }
      const now = performance.now();
      // Progress: the count in InfluxDB, or ingest still writing (a backlog of duplicates moves only its counter).
      const progress = stored + total(end, READINGS) - queuedInBroker;
      if (progress !== lastProgress) {
        lastProgress = progress;
        lastChange = now;
      }
      if (now - lastChange > 30_000 || now - drainStart > drainLimitMs) {
        log(`${spec.label}: gave up waiting after ${((now - drainStart) / 1000).toFixed(0)} s (${fmt(stored)} of ${fmt(totals.readingsAcked)} acknowledged readings stored): counting what is there`);
        break;
      }
      if (now - lastLog > 15_000) {
        lastLog = now;
        log(`${spec.label}: draining, ${fmt(stored)} of ${fmt(totals.readingsAcked)} acknowledged readings stored`);
      }
      await sleep(1000);
    }
    const drainSeconds = (performance.now() - drainStart) / 1000;
    const brokerSamples = await scrape(broker.metricsUrl).catch(() => new Map<string, number>());
    await closeGenerators();
    await ingest.stop(); // stores and acknowledges what it holds, then exits
    let counted = await countReadings(influx.url, spec.database);
    // Missing readings may still sit in the broker's queue for ingest's persistent session (MQTT
    // resends only on a new connection): a new ingest process on the same session collects them.
    let afterReconnect: number | undefined;
    if (counted < totals.readingsAcked) {
      const missing = totals.readingsAcked - counted;
      log(`${spec.label}: ${fmt(missing)} acknowledged readings not in InfluxDB; starting ingest again on the same session to collect what the broker still holds …`);
      const again = await startIngestProcess(p, broker, influx.url, spec.database);
      let last = -1;
      for (let quiet = 0; quiet < 10 && counted < totals.readingsAcked; ) {
        await sleep(1000);
        counted = await countReadings(influx.url, spec.database);
        quiet = counted === last ? quiet + 1 : 0;
        last = counted;
      }
      await again.service.stop();
      counted = await countReadings(influx.url, spec.database);
      afterReconnect = missing - Math.max(0, totals.readingsAcked - counted);
      log(`${spec.label}: ${fmt(afterReconnect)} of them arrived after the reconnect`);
    }

    const seconds = (w1.t - w0.t) / 1000;
    const storedInWindow = total(w1.ingest, READINGS) - total(w0.ingest, READINGS);
    const windowCounts = sumCounts(w1.counts);
    const before = sumCounts(w0.counts);
    const lag = histogramBetween(w0.ingest, w1.ingest, LAG);
    const per100k = (cpu: number) => (storedInWindow > 0 ? (cpu / storedInWindow) * 100_000 : Number.NaN);
    const cpuRow = (name: string, cpu: number): ProcessCpu => ({ process: name, cpuSeconds: cpu, percent: (cpu / seconds) * 100, per100kReadings: per100k(cpu) });
    const delta = (name: string) => (w1.cpu.get(name) ?? Number.NaN) - (w0.cpu.get(name) ?? Number.NaN);
    const generatorCpu = generators.reduce((a, _g, i) => a + delta(`generator ${i}`), 0);
    const benchCpu = process.cpuUsage(w0.bench);
    const result: RunResult = {
      key: spec.key,
      label: spec.label,
      database: spec.database,
      connections: spec.connections.length,
      devices: spec.connections.reduce((a, c) => a + c.devices.length, 0),
      readingsPerMessage: spec.readingsPerMessage,
      offeredReadingsPerS: closedLoop ? undefined : spec.messagesPerS * spec.readingsPerMessage,
      readingsWindow: closedLoop ? spec.readingsWindow : undefined,
      seconds,
      storedInWindow,
      storedPerS: storedInWindow / seconds,
      ackedPerS: (windowCounts.readingsAcked - before.readingsAcked) / seconds,
      messagesPerS: (windowCounts.messagesAcked - before.messagesAcked) / seconds,
      ratioToCeiling: storedInWindow / seconds / ceilingPerS,
      lagObservations: lag.count,
      p50: quantileOf(lag, 0.5),
      p99: quantileOf(lag, 0.99),
      max: quantileOf(lag, 1)?.bound,
      withinTarget: shareAtMost(lag, TARGET.p99Seconds),
      cpu: [cpuRow('broker', delta('broker')), cpuRow('ingest', delta('ingest')), cpuRow('influxd', delta('influxd')), cpuRow(`generators (${generators.length})`, generatorCpu), cpuRow('bench (scrapes, IPC)', (benchCpu.user + benchCpu.system) / 1e6)],
      generators: totals,
      counted,
      lost: Math.max(0, totals.readingsAcked - counted),
      afterReconnect,
      drained,
      drainSeconds,
      rejected: total(end, 'citypulse_ingest_rejected_total'),
      batchLinesMean: meanBetween(w0.ingest, w1.ingest, 'citypulse_ingest_batch_lines'),
      writeSecondsMean: meanBetween(w0.ingest, w1.ingest, 'citypulse_ingest_write_seconds'),
      writeSecondsP99: quantileOf(histogramBetween(w0.ingest, w1.ingest, 'citypulse_ingest_write_seconds'), 0.99),
      backpressurePauses: total(end, 'citypulse_ingest_backpressure_pauses_total'),
      redelivered: total(end, 'citypulse_ingest_messages_redelivered_total'),
      writeFailures: total(end, 'citypulse_ingest_write_failures_total'),
      brokerRateLimited: total(brokerSamples, 'citypulse_broker_rate_limited_total'),
      brokerQueuedAtEnd: brokerAtEnd.has('citypulse_broker_queued_messages') ? total(brokerAtEnd, 'citypulse_broker_queued_messages') : undefined,
      ingestRssMiB: rss.ingest / 2 ** 20,
      brokerRssMiB: rss.broker / 2 ** 20,
    };
    const s = (q: Quantile | undefined) => (q ? `≤ ${q.bound} s (est. ${q.estimate.toFixed(2)} s)` : 'n/a');
    log(
      `${spec.label}: ${fmt(result.storedPerS)} readings/s stored (${fmt(result.messagesPerS)} msg/s, ${result.ratioToCeiling.toFixed(2)}× the raw ceiling); p50 ${s(result.p50)}, p99 ${s(result.p99)}; ` +
        `${fmt(totals.readingsAcked)} readings acknowledged, ${fmt(counted)} in InfluxDB, ${fmt(result.lost)} lost; drained in ${drainSeconds.toFixed(1)} s; ` +
        result.cpu.map((c) => `${c.process} ${c.percent.toFixed(0)} %`).join(', '),
    );
    return result;
  } catch (err) {
    log(`${spec.label} failed; ingest output (tail):\n${ingest.output()}\nbroker output (tail):\n${broker.service.output()}`);
    throw err;
  } finally {
    feeding = false;
    await feeder.catch(() => undefined);
    await closeGenerators();
    await ingest.stop();
  }
}

/** Fail fast if the fleet's payloads would be rejected (a schema change in contracts). */
function checkPayloads(): void {
  for (let n = 0; n < 3; n++) {
    const device = fleetDevice(n);
    const now = Date.now();
    const single = decodeTelemetry(device.domain, JSON.stringify(fleetReading(device, 1, now)), now);
    const batch = decodeTelemetry(device.domain, JSON.stringify({ readings: Array.from({ length: BATCH }, (_, k) => fleetReading(device, k + 1, now - BATCH + k)) }), now);
    for (const decoded of [single, batch]) {
      if (!decoded.ok) throw new Error(`the bench's ${device.domain} payload is rejected: ${decoded.error.code} ${decoded.error.message}`);
      if (decoded.value.rejected.length > 0) throw new Error(`the bench's ${device.domain} batch has rejected readings: ${decoded.value.rejected[0]?.message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Report

interface Report {
  readonly date: string;
  readonly machine: string;
  readonly quick: boolean;
  readonly influxdVersion: string;
  readonly brokerStore: string;
  readonly brokerOverrides: readonly string[];
  readonly ingestOverrides: readonly string[];
  readonly warmupSeconds: number;
  readonly ceiling: CeilingResult;
  readonly runs: readonly RunResult[];
  readonly loadAverage: { readonly start: readonly number[]; readonly end: readonly number[] };
}

const seconds = (s: number) => (s < 0.1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);
const quantileText = (q: Quantile | undefined) => (q ? (q.bound === Infinity ? `> ${seconds(3600)}` : `≤ ${seconds(q.bound)} (≈ ${seconds(q.estimate)})`) : '–');

function table(report: Report): string {
  const { ceiling } = report;
  const single = report.runs.find((r) => r.key === 'single');
  const batch = report.runs.find((r) => r.key === 'batch');
  const rows: string[] = [];
  const row = (what: string, c: string, s: (r: RunResult) => string, b: (r: RunResult) => string = s) => rows.push(`| ${what} | ${c} | ${single ? s(single) : '–'} | ${batch ? b(batch) : '–'} |`);
  row(
    'load',
    `${ceiling.writers} writer(s), ${fmt(ceiling.batchLines)}-line batches`,
    (r) => `${fmt(r.offeredReadingsPerS ?? 0)} readings/s offered, ${fmt(r.devices)} devices logged in`,
    (r) => `${r.offeredReadingsPerS ? `${fmt(r.offeredReadingsPerS)} readings/s offered` : `as fast as stored (≤ ${fmt(r.readingsWindow ?? 0)} readings in flight)`}, ${r.readingsPerMessage} per message, ${r.connections} gateways for ${fmt(r.devices)} devices`,
  );
  row('measured for', `${ceiling.seconds.toFixed(0)} s`, (r) => `${r.seconds.toFixed(0)} s`);
  row('readings (points) stored per second', `**${fmt(ceiling.pointsPerS)}**`, (r) => `**${fmt(r.storedPerS)}**`);
  row('ratio to the raw ceiling', '1.00×', (r) => `${r.ratioToCeiling.toFixed(2)}×`);
  row('MQTT messages/s (acknowledged by the broker)', '–', (r) => fmt(r.messagesPerS));
  row(
    'loss check: acknowledged readings vs points counted in InfluxDB',
    `${fmt(ceiling.written)} written, ${fmt(ceiling.counted)} counted`,
    (r) =>
      `${fmt(r.generators.readingsAcked)} acknowledged, ${fmt(r.counted)} counted: **${r.lost === 0 ? 'none lost' : r.drained ? `${fmt(r.lost)} lost` : `${fmt(r.lost)} missing (not drained: queued or lost)`}**`,
  );
  row('device-to-stored latency p50 (bucket bound, ≈ interpolated)', '–', (r) => quantileText(r.p50));
  row('device-to-stored latency p99 (bucket bound, ≈ interpolated)', '–', (r) => `**${quantileText(r.p99)}**`);
  row(`readings stored within ${TARGET.p99Seconds} s of their device time`, '–', (r) => (r.withinTarget === undefined ? '–' : `${(r.withinTarget * 100).toFixed(2)} %`));
  row('delivered only after ingest reconnected (held in the broker\'s queue)', '–', (r) => (r.afterReconnect === undefined ? 'none missing' : fmt(r.afterReconnect)));
  row('drain after the generators stopped', '–', (r) => `${seconds(r.drainSeconds)}${r.drained ? '' : ' (gave up)'}`);
  const cpuOf = (r: RunResult, name: string) => r.cpu.find((c) => c.process.startsWith(name));
  const cpuText = (c: ProcessCpu | undefined) => (c ? `${c.cpuSeconds.toFixed(1)} s · ${c.percent.toFixed(0)} % · ${c.per100kReadings.toFixed(2)} s` : '–');
  for (const name of ['broker', 'ingest', 'influxd', 'generators', 'bench'] as const) {
    const ceilingCpu = name === 'influxd' ? ceiling.influxdCpuSeconds : name === 'bench' ? ceiling.benchCpuSeconds : undefined;
    const label = name === 'generators' ? 'generators' : name === 'bench' ? 'bench process (ceiling: the HTTP writer)' : name;
    row(
      `CPU ${label}: seconds · one core = 100 % · per 100,000 readings`,
      ceilingCpu === undefined ? '–' : `${ceilingCpu.toFixed(1)} s · ${((ceilingCpu / ceiling.seconds) * 100).toFixed(0)} % · ${((ceilingCpu / Math.max(1, ceiling.points)) * 100_000).toFixed(2)} s`,
      (r) => cpuText(cpuOf(r, name)),
    );
  }
  row('VmRSS at the end of the window: ingest, broker', '–', (r) => `${fmt(r.ingestRssMiB)} MiB, ${fmt(r.brokerRssMiB)} MiB`);
  return [`| measurement | InfluxDB raw ceiling (HTTP, no MQTT) | one reading per message | gateway batches |`, '|---|---:|---:|---:|', ...rows].join('\n');
}

function targets(report: Report): string {
  const single = report.runs.find((r) => r.key === 'single');
  const batch = report.runs.find((r) => r.key === 'batch');
  const verdict = (pass: boolean | undefined, why = '') => (pass === undefined ? `not checked${why}` : pass ? '**met**' : '**not met**');
  const lines = ['| target | figure | result |', '|---|---|---|'];
  if (single) {
    const keptUp = single.offeredReadingsPerS !== undefined && single.storedPerS >= 0.99 * single.offeredReadingsPerS && single.generators.skipped <= 0.01 * single.generators.messagesSent;
    const full = (single.offeredReadingsPerS ?? 0) >= TARGET.sustainedPerS && single.seconds >= TARGET.sustainedSeconds - 1;
    lines.push(
      `| ≥ ${fmt(TARGET.sustainedPerS)} readings/s for ${TARGET.sustainedSeconds / 60} minutes with zero loss, one reading per message | ${fmt(single.storedPerS)} readings/s stored of ${fmt(single.offeredReadingsPerS ?? 0)} offered for ${single.seconds.toFixed(0)} s, ${fmt(single.lost)} lost, ${fmt(single.generators.skipped)} sends skipped | ${full ? verdict(keptUp && single.lost === 0) : keptUp && single.lost === 0 ? 'not checked: offered rate or duration below the target (kept up with what was offered, none lost)' : verdict(false)} |`,
    );
  }
  if (batch) lines.push(`| gateway batches ≥ ${TARGET.ratioToCeiling}× the raw ceiling of the same run | ${fmt(batch.storedPerS)} / ${fmt(report.ceiling.pointsPerS)} = ${batch.ratioToCeiling.toFixed(2)}×, ${fmt(batch.lost)} lost | ${verdict(batch.ratioToCeiling >= TARGET.ratioToCeiling && batch.lost === 0)} |`);
  for (const r of report.runs) {
    const bound = r.p99?.bound;
    lines.push(`| p99 device-to-stored ≤ ${TARGET.p99Seconds} s, ${r.label} | ${quantileText(r.p99)}; ${r.withinTarget === undefined ? '–' : `${(r.withinTarget * 100).toFixed(2)} %`} within ${TARGET.p99Seconds} s | ${verdict(bound === undefined ? undefined : bound <= TARGET.p99Seconds)} |`);
  }
  return lines.join('\n');
}

function notes(report: Report): string {
  const { ceiling } = report;
  const health = report.runs.map(
    (r) =>
      `${r.label}: ${fmt(r.generators.messagesSent)} messages sent, ${fmt(r.generators.messagesAcked)} acknowledged, ${r.generators.errors} failed, ${fmt(r.generators.skipped)} sends skipped (connection window full or generator behind); ingest wrote batches of ${fmt(r.batchLinesMean)} lines on average, ${seconds(r.writeSecondsMean)} per write (p99 ${quantileText(r.writeSecondsP99)}), rejected ${r.rejected}, redelivered ${r.redelivered}, write failures ${r.writeFailures}, back-pressure pauses ${r.backpressurePauses}; broker rate-limited ${r.brokerRateLimited}${r.brokerQueuedAtEnd === undefined ? '' : `, messages queued in the broker's store for ingest at the end of the window ${fmt(r.brokerQueuedAtEnd)}`}`,
  );
  return [
    `- Raw ceiling: ${ceiling.writers} concurrent HTTP writes of ${fmt(ceiling.batchLines)} lines (plain, not gzipped; ${fmt(ceiling.bytesPerLine)} bytes per line) to \`/write?db=${ceiling.database}&rp=raw&precision=ms\` of InfluxDB ${report.influxdVersion} from the bench process, ${fmt(ceiling.series)} series (the fleet's traffic, environment and energy devices over 34 provinces, lines made by ingest's readingLine with the derived values), ${report.warmupSeconds} s warm-up then ${ceiling.seconds.toFixed(0)} s measured.`,
    `- MQTT runs: our broker (\`broker/src/server.ts\`, its own process, auth + ACL + rate limit at 1,000,000/s + metrics, BROKER_STORE=${report.brokerStore}${report.brokerOverrides.length ? `, ${report.brokerOverrides.join(', ')}` : ''}) and ingest (\`ingest/src/server.ts\`, its own process, its defaults${report.ingestOverrides.length ? ` plus ${report.ingestOverrides.join(', ')}` : ''}; a fresh process and database per run) on the same influxd; ${GENERATORS} forked generator processes publishing at QoS 1 over a lean MQTT 3.1.1 client (raw-link.ts); ${report.warmupSeconds} s warm-up, then the measured window. One reading per message: each device logs in with its own secret on its own connection and sends the single form at a fixed total rate, round-robin. Gateway batches: gateway accounts publish \`{"readings":[…]}\` for the devices registered behind them, ${report.runs.find((r) => r.key === 'batch')?.readingsPerMessage ?? BATCH} readings 1 ms apart ending at the send time.`,
    `- Stored per second: ingest's \`${READINGS}\` over the window. Loss: readings of every message the broker acknowledged, against \`SELECT count("seq")\` over the three measurements once ingest drained and stopped.`,
    `- Latency: ingest's \`${LAG}\` histogram over the window (a message's first reading's device time to its batch being stored; for a batch the first reading is ${BATCH - 1} ms older than the send). The histogram's buckets (…, 0.25, 0.5, 1, 2, 5 s) bound the percentile; ≈ is Prometheus' linear interpolation inside the bucket, an estimate.`,
    `- CPU: utime + stime (/proc/PID/stat) over the measured window; "one core = 100 %" on ${report.machine}.`,
    ...health.map((h) => `- ${h}.`),
    `- Load average at start ${report.loadAverage.start.map((l) => l.toFixed(2)).join(' ')}, at end ${report.loadAverage.end.map((l) => l.toFixed(2)).join(' ')}.`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  checkPayloads();
  const loadStart = loadavg();
  const root = await mkdtemp(join(tmpdir(), 'citypulse-ingest-bench-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  const influxd = await startInfluxd({ dataDir: join(root, 'influxdb'), log });
  cleanups.push(() => influxd.stop());
  const influx = { url: influxd.url, pid: influxd.process.pid as number };
  const influxdVersion = (await fetch(`${influxd.url}/ping`).then((r) => r.headers.get('x-influxdb-version'))) ?? '1.x';

  const ceiling = await rawCeiling(influx.url, influx.pid);

  const runs: RunResult[] = [];
  const specs: RunSpec[] = [];
  if (ONLY !== 'ceiling') {
    const provisioned = await provision(join(root, 'data'));
    if (ONLY !== 'batch') {
      specs.push({ key: 'single', label: 'one reading per message', database: 'bench_single', connections: provisioned.deviceConnections, readingsPerMessage: 1, messagesPerS: SINGLE_RATE, readingsWindow: 0, seconds: SINGLE_SECONDS });
    }
    if (ONLY !== 'single') {
      specs.push({ key: 'batch', label: 'gateway batches', database: 'bench_batch', connections: provisioned.gatewayConnections, readingsPerMessage: BATCH, messagesPerS: BATCH_RATE / BATCH, readingsWindow: BATCH_WINDOW, seconds: BATCH_SECONDS });
    }
    const broker = await startBroker(provisioned.dataDir);
    for (const spec of specs) runs.push(await endToEnd(spec, provisioned, broker, influx, ceiling.pointsPerS));
  }

  const report: Report = {
    date: new Date().toISOString(),
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    quick: QUICK,
    influxdVersion,
    brokerStore: BROKER_STORE,
    brokerOverrides: passedThrough('BROKER_', BROKER_OWN),
    ingestOverrides: passedThrough('INGEST_', INGEST_OWN),
    warmupSeconds: WARMUP_S,
    ceiling,
    runs,
    loadAverage: { start: loadStart, end: loadavg() },
  };
  console.log(`Ingest vs InfluxDB's raw ceiling, one run${QUICK ? ' (--quick)' : ''} of ${report.date.slice(0, 10)} (${report.machine}; InfluxDB ${influxdVersion})\n`);
  console.log(table(report));
  console.log('');
  console.log(targets(report));
  console.log('');
  console.log(notes(report));
  if (JSON_FILE) {
    await mkdir(dirname(JSON_FILE), { recursive: true });
    await writeFile(JSON_FILE, `${JSON.stringify(report, null, 1)}\n`);
  }
}

main()
  .catch((err: unknown) => {
    // After Ctrl+C the runs fail as their processes go: not worth a stack trace.
    if (!cleaning()) console.error('ingest bench failed:', err);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
