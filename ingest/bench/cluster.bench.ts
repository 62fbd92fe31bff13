/**
 * `pnpm --filter @citypulse/ingest bench:cluster [--quick] [--json FILE]` (also run by
 * `npm run bench`, after ingest.bench.ts): the broker cluster (issue 8) against a single node, side
 * by side in one invocation, same fleet, same offered rate, one reading per message at QoS 1.
 *
 * 1. single node: one broker (BROKER_STORE=disk, its default) + one ingest worker (1/1);
 * 2. single node on Redis: one broker with BROKER_STORE=redis (BROKER_MQ=local) + one ingest
 *    worker: the cost of the Redis store alone;
 * 3. cluster: two brokers (BROKER_MQ=redis, BROKER_STORE=redis) + two ingest workers
 *    (INGEST_SHARD 1/2 and 2/2, one on each broker); the generators' device connections are split
 *    evenly over the two brokers, connected directly (a production TCP balancer in front of the
 *    nodes is not our code and is left out, so its CPU is in no figure);
 * 4. optional (BENCH_CLUSTER_RATE > 0): the cluster again at that offered rate, to see where it
 *    saturates.
 *
 * Every run has its own broker and ingest processes (`src/server.ts` of each, as the ingest bench
 * starts them: services.ts), its own InfluxDB database on one influxd, and a flushed private Redis
 * (infra's startRedis; FLUSHALL and CONFIG RESETSTAT before each run that uses it). Devices are
 * provisioned once (the ingest bench's fleet, fleet.ts) and publish through forked generator
 * processes (generator.ts, raw-link.ts). Per run it measures, over the window after a warm-up:
 * offered, acknowledged (PUBACK) and stored readings/s; zero loss (points counted in InfluxDB once
 * everything drained, against every acknowledged reading); device→stored lag p50/p95/p99 from
 * ingest's histogram (the workers' histograms summed); CPU per process from /proc (brokers, ingest
 * workers, redis-server, influxd, generators, this process) and the whole machine's (others'
 * included: the machine may be shared); Redis round trips per message from `INFO commandstats`
 * and `total_commands_processed`, with the time Redis spent in each command, and Redis's
 * used_memory.
 *
 * `--runs single,single-redis,cluster,cluster-high` runs a subset. Prints on stdout a Markdown
 * table for BENCHMARKS.md, a "what limits it" paragraph computed from the figures and the per-node
 * figures a capacity plan needs; progress on stderr. Exits non-zero
 * only when something broke (a process died, an acknowledged reading is missing), not for slow
 * figures. Environment: BENCH_CLUSTER_SECONDS (measured window per run, default 30; --quick 15),
 * BENCH_CLUSTER_BASE_RATE (offered readings/s of the three side-by-side runs, default 2,000, a rate
 * every topology sustains on 2 cores; --quick 1,000), BENCH_CLUSTER_RATE (offered readings/s of the
 * cluster's second run, default 4,000; 0 turns it off; --quick: off),
 * BENCH_CLUSTER_RATE_SECONDS (its window, default 30 or the run's if shorter), BENCH_DEVICES
 * (1,000), BENCH_GENERATORS (2), BENCH_CLUSTER_LOG_DIR (when set, each run's broker and worker
 * logs, warnings and up, and their metrics at the end are written there: `<run>-<service>.log`,
 * `.metrics`). INGEST_* and BROKER_* variables of the caller reach the services (except those the
 * bench sets) and are reported.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeTelemetry } from '@citypulse/contracts';
import { DeviceRegistry } from '@citypulse/broker/registry';
import { connectRedis, freePort, startInfluxd, startRedis, type RunningRedis } from '@citypulse/infra';
import { shardClientId, shardOf } from '../src/shards.js';
import { fleetDevice, fleetReading } from './fleet.js';
import type { GeneratorConnection, GeneratorCounts } from './protocol.js';
import {
  countReadings,
  cpuSeconds,
  exitCleanup,
  histogramBetween,
  quantileOf,
  residentBytes,
  scrape,
  startBrokerService,
  startGenerator,
  provisionFleetDevices,
  startIngestService,
  total,
  type Generator,
  type Quantile,
  type Samples,
  type Service,
} from './services.js';

const args = process.argv.slice(2);
/**
 * Run by the package's `bench` script after ingest.bench.ts, with the same arguments: `--only` is
 * then that bench's (a short look at one of its runs), so this one steps aside, and `--json FILE`
 * gets `.cluster` before its extension, not to overwrite that bench's figures.
 */
const SHARED_ARGS = process.env.npm_lifecycle_event === 'bench';
const QUICK = args.includes('--quick');
const jsonAt = args.indexOf('--json');
const jsonArg = jsonAt >= 0 ? args[jsonAt + 1] : undefined;
const JSON_FILE = jsonArg && SHARED_ARGS ? jsonArg.replace(/(\.json)?$/, '.cluster$1') : jsonArg;
const runsAt = args.indexOf('--runs');
/** `--runs single,single-redis,cluster,cluster-high`: a subset of the runs. */
const RUNS = runsAt >= 0 ? (args[runsAt + 1] ?? '').split(',') : undefined;
const RUN_KEYS = ['single', 'single-redis', 'cluster', 'cluster-high'];
if (RUNS?.some((k) => !RUN_KEYS.includes(k))) throw new Error(`--runs ${RUNS.join(',')}: use ${RUN_KEYS.join(', ')}`);

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const value = Number(raw);
  return raw !== undefined && raw !== '' && Number.isFinite(value) && value >= 0 ? Math.floor(value) : fallback;
};
// Defaults a 2-core machine sustains on every topology: at 10,000 readings/s the Redis store's
// runs fall behind without end (BENCHMARKS.md), which measures the backlog, not the cost per reading.
// Its own variables, not the ingest bench's BENCH_SECONDS/BENCH_RATE (npm run bench sets those for both).
const SECONDS = Math.max(1, envInt('BENCH_CLUSTER_SECONDS', QUICK ? 15 : 30));
const RATE = Math.max(1, envInt('BENCH_CLUSTER_BASE_RATE', QUICK ? 1000 : 2000));
const HIGH_RATE = envInt('BENCH_CLUSTER_RATE', QUICK ? 0 : 4000);
const HIGH_SECONDS = Math.max(1, envInt('BENCH_CLUSTER_RATE_SECONDS', Math.min(SECONDS, 30)));
const DEVICES = Math.max(3, envInt('BENCH_DEVICES', 1000));
const GENERATORS = Math.max(1, envInt('BENCH_GENERATORS', 2));
const WARMUP_S = QUICK ? 3 : 5;
/** Messages awaiting their PUBACK per connection, at most (as the ingest bench). */
const INFLIGHT = 64;
const P99_TARGET_S = 2;
const LAG = 'citypulse_ingest_lag_seconds';
const READINGS = 'citypulse_ingest_readings_written_total';
const LINES = 'citypulse_ingest_lines_written_total';
const ROLLUP_POINTS = 'citypulse_ingest_rollup_points_written_total';
const QUEUED = 'citypulse_broker_queued_messages';
/**
 * Redis commands the bench causes, left out of the per-message figures: its own (INFO, CONFIG
 * RESETSTAT, FLUSHALL) and those of the brokers' /metrics it scrapes (SMEMBERS, ZCARD: the queue gauge).
 */
const BENCH_COMMANDS = new Set(['info', 'config|resetstat', 'config', 'flushall', 'ping', 'smembers', 'zcard', 'llen']);
/**
 * Commands the broker's queue scripts run inside one EVALSHA (broker/src/redis-queue.ts): Redis
 * counts them too, but they are not round trips, and their time is inside EVALSHA's.
 */
const IN_SCRIPT = new Set(['zadd', 'hset', 'zrem', 'hdel', 'zscore']);
/**
 * The Redis round trips of a QoS 1 message through the Redis store, in path order (the broker's
 * queue, redis-queue.ts, and mqemitter-redis 7): before the device's PUBACK, one after the other,
 * an EVALSHA queueing it for ingest's session (ZADD + HSET), then in a cluster a PUBLISH (to every
 * node); nothing on delivery to ingest (the packet id is kept in the node's memory); on ingest's
 * PUBACK an EVALSHA clearing it (ZREM + HDEL). Each is counted by a command Redis counts exactly
 * once per message for it (`marker`), over the messages of its own stage, so a run whose stages
 * drift apart (the store clearing ingest's PUBACKs slower than it queues messages) still gives the
 * cost of one message; and the stages' rates show where the store falls behind.
 */
const PATH: readonly { readonly name: string; readonly marker: string; readonly stage: keyof StoreStages; readonly beforePuback: boolean }[] = [
  { name: 'EVALSHA (ZADD + HSET)', marker: 'zadd', stage: 'queued', beforePuback: true },
  { name: 'PUBLISH', marker: 'publish', stage: 'queued', beforePuback: true },
  { name: 'EVALSHA (ZREM + HDEL)', marker: 'zrem', stage: 'cleared', beforePuback: false },
];

/** Messages through each stage of the Redis store in the window: queued for ingest (ZADD), ingest's PUBACK cleared (ZREM). */
interface StoreStages {
  readonly queued: number;
  readonly cleared: number;
}

/** Messages through each stage of the pipeline in the window, from the generators and the workers (read at the same moment). */
interface Stages {
  /** PUBACKs the devices received. */
  readonly acknowledged: number;
  /** Messages the workers received (delivered by the brokers). */
  readonly delivered: number;
  /** PUBACKs the workers sent, each once its reading was stored. */
  readonly ingestAcks: number;
}

const BENCH_START = performance.now();
const log = (line: string) => console.error(`[cluster bench ${((performance.now() - BENCH_START) / 1000).toFixed(0).padStart(3)} s] ${line}`);
const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '–');

const { cleanups, cleanup, cleaning } = exitCleanup(log);

// ---------------------------------------------------------------------------------------------
// Redis statistics through one connection of its own (infra's connectRedis, ioredis)

type RedisConnection = Awaited<ReturnType<typeof connectRedis>>['conn'];

interface CommandStat {
  readonly calls: number;
  readonly usec: number;
}

interface RedisInfo {
  readonly version: string;
  readonly totalCommands: number;
  readonly commands: ReadonlyMap<string, CommandStat>;
  readonly usedMemory: number;
  readonly usedMemoryPeak: number;
  readonly netInputBytes: number;
  readonly netOutputBytes: number;
}

async function redisInfo(conn: RedisConnection): Promise<RedisInfo> {
  const text = String(await conn.call('INFO', 'server', 'stats', 'memory', 'commandstats'));
  const fields = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  const commands = new Map<string, CommandStat>();
  for (const [key, value] of fields) {
    if (!key.startsWith('cmdstat_')) continue;
    const stat = new Map(value.split(',').map((kv) => kv.split('=') as [string, string]));
    commands.set(key.slice('cmdstat_'.length), { calls: Number(stat.get('calls') ?? 0), usec: Number(stat.get('usec') ?? 0) });
  }
  const num = (key: string) => Number(fields.get(key) ?? Number.NaN);
  return {
    version: fields.get('redis_version') ?? '?',
    totalCommands: num('total_commands_processed'),
    commands,
    usedMemory: num('used_memory'),
    usedMemoryPeak: num('used_memory_peak'),
    netInputBytes: num('total_net_input_bytes'),
    netOutputBytes: num('total_net_output_bytes'),
  };
}

/** Empties Redis and zeroes its statistics (commandstats, total_commands_processed, peak memory). */
async function freshRedis(conn: RedisConnection): Promise<void> {
  await conn.flushall();
  await conn.call('CONFIG', 'RESETSTAT');
  await conn.call('MEMORY', 'PURGE').catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------
// Machine CPU (every process, others' included) from /proc/stat

interface MachineCpu {
  readonly busy: number;
  readonly all: number;
}

async function machineCpu(): Promise<MachineCpu> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  return { busy, all: busy + (idle ?? 0) + (iowait ?? 0) };
}

// ---------------------------------------------------------------------------------------------
// Provisioning: the ingest bench's fleet, one connection per device

interface Provisioned {
  readonly dataDir: string;
  readonly ingestSecret: string;
  readonly connections: GeneratorConnection[];
}

async function provision(dataDir: string): Promise<Provisioned> {
  const t0 = performance.now();
  const registry = await DeviceRegistry.open(dataDir);
  try {
    const ingestSecret = await registry.upsertService('ingest', 'ingest');
    const connections = await provisionFleetDevices(registry, DEVICES);
    log(`provisioned ${fmt(DEVICES)} devices with secrets and the ingest account in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { dataDir, ingestSecret, connections };
  } finally {
    registry.close();
  }
}

/** Fail fast if the fleet's payloads would be rejected (a schema change in contracts). */
function checkPayloads(): void {
  for (let n = 0; n < 3; n++) {
    const device = fleetDevice(n);
    const now = Date.now();
    const decoded = decodeTelemetry(device.domain, JSON.stringify(fleetReading(device, 1, now)), now);
    if (!decoded.ok) throw new Error(`the bench's ${device.domain} payload is rejected: ${decoded.error.code} ${decoded.error.message}`);
  }
}

/** Variables of the caller's environment with this prefix (passed through to the services), except those the bench sets. */
const passedThrough = (prefix: string, own: readonly string[]) =>
  Object.entries(process.env)
    .filter(([key]) => key.startsWith(prefix) && !own.includes(key))
    .map(([key, value]) => `${key}=${value}`);
const BROKER_OWN = ['BROKER_HTTP_PORT', 'BROKER_HTTP_HOST', 'BROKER_RATE_PER_S', 'BROKER_RATE_BURST', 'BROKER_STORE', 'BROKER_MQ'];
const INGEST_OWN = ['INGEST_MQTT_PASSWORD', 'INGEST_HTTP_HOST', 'INGEST_HTTP_PORT', 'INGEST_SHARD', 'INGEST_CLIENT_ID'];

// ---------------------------------------------------------------------------------------------
// Services of a run

interface Broker {
  readonly name: string;
  readonly service: Service;
  readonly url: string;
  readonly metricsUrl: string;
}

interface Worker {
  readonly name: string;
  readonly shard: string;
  readonly service: Service;
  readonly metricsUrl: string;
  readonly brokerName: string;
}

async function startBroker(name: string, dataDir: string, store: 'disk' | 'redis', mq: 'local' | 'redis', redis: RunningRedis): Promise<Broker> {
  const httpPort = await freePort();
  const { service, url } = await startBrokerService(dataDir, {
    BROKER_HTTP_HOST: '127.0.0.1',
    BROKER_HTTP_PORT: String(httpPort),
    // The bench's devices publish far above a real device's 10/s: the limiter runs, drops nothing.
    BROKER_RATE_PER_S: '1000000',
    BROKER_RATE_BURST: '1000000',
    BROKER_STORE: store,
    BROKER_MQ: mq,
    REDIS_URL: `${redis.url}/0`,
  });
  cleanups.push(() => service.stop());
  log(`${name}: pid ${service.pid}, ${url}, BROKER_STORE=${store}, BROKER_MQ=${mq}`);
  return { name, service, url, metricsUrl: `http://127.0.0.1:${httpPort}/metrics` };
}

async function startWorker(p: Provisioned, broker: Broker, influxUrl: string, database: string, index: number, count: number): Promise<Worker> {
  const shard = `${index}/${count}`;
  const name = `ingest ${shard}`;
  const { service, metricsUrl } = await startIngestService({
    dataDir: p.dataDir,
    mqttUrl: broker.url,
    ingestSecret: p.ingestSecret,
    influxUrl,
    database,
    env: { INGEST_SHARD: shard, INGEST_CLIENT_ID: shardClientId(shardOf(index, count)) },
    label: name,
    log,
    cleanups,
  });
  log(`${name}: pid ${service.pid}, on ${broker.name}, database ${database}`);
  return { name, shard, service, metricsUrl, brokerName: broker.name };
}

/** The workers' scrapes added up, sample by sample (their families and labels are the same). */
function mergeSamples(list: readonly Samples[]): Samples {
  const merged = new Map<string, number>();
  for (const samples of list) for (const [key, value] of samples) merged.set(key, (merged.get(key) ?? 0) + value);
  return merged;
}

// ---------------------------------------------------------------------------------------------
// One run

interface RunSpec {
  readonly key: 'single' | 'single-redis' | 'cluster' | 'cluster-high';
  readonly label: string;
  readonly brokers: number;
  readonly store: 'disk' | 'redis';
  readonly mq: 'local' | 'redis';
  readonly workers: number;
  readonly offeredPerS: number;
  readonly seconds: number;
  readonly database: string;
}

interface ProcessCpu {
  readonly process: string;
  readonly cpuSeconds: number;
  /** One core = 100 %. */
  readonly percent: number;
}

interface RedisFigures {
  /** total_commands_processed over the window (the bench's own left out) per acknowledged message. */
  readonly commandsPerAcked: number;
  /** Each round trip of PATH counted per message of its own stage, summed: the steady-state figure. */
  readonly commandsPerMessage: number;
  /** Of them, issued before the device's PUBACK (the queueing EVALSHA, PUBLISH). */
  readonly beforePubackPerMessage: number;
  /** The round trips of PATH seen in the window, in the order of a message's path. */
  readonly path: readonly string[];
  readonly storeStages: StoreStages;
  readonly commandsPerS: number;
  /** Time Redis spent executing commands (commandstats usec), per message. */
  readonly usecPerMessage: number;
  readonly top: readonly { readonly command: string; readonly perMessage: number; readonly usecPerCall: number; readonly shareOfTime: number }[];
  readonly usedMemoryMiB: number;
  readonly usedMemoryPeakMiB: number;
  readonly netBytesPerMessage: number;
}

interface RunResult {
  readonly key: RunSpec['key'];
  readonly label: string;
  readonly topology: string;
  readonly brokers: number;
  readonly workers: number;
  readonly store: RunSpec['store'];
  readonly mq: RunSpec['mq'];
  readonly database: string;
  readonly offeredPerS: number;
  readonly seconds: number;
  readonly ackedPerS: number;
  readonly storedPerS: number;
  readonly influxPointsPerS: number;
  readonly acked: number;
  readonly counted: number;
  readonly lost: number;
  /** The bench stopped waiting while readings were still arriving (BENCH time limit): `lost` is then what was still queued, not a loss. */
  readonly outOfTime: boolean;
  /** A broker or worker died after the measured window (while stopping or draining): the window's figures stand, `lost` is NaN (not checked). */
  readonly brokeAfterWindow: string | undefined;
  readonly afterReconnect: number | undefined;
  readonly drained: boolean;
  readonly drainSeconds: number;
  /** Messages the broker's store still listed for ingest once every acknowledged reading was stored (acknowledgements not yet cleared). */
  readonly queuedAfterDrain: number | undefined;
  readonly p50: Quantile | undefined;
  readonly p95: Quantile | undefined;
  readonly p99: Quantile | undefined;
  readonly withinTarget: number | undefined;
  readonly cpu: readonly ProcessCpu[];
  /** Sums by kind, % of one core. */
  readonly cpuBy: { readonly brokers: number; readonly ingest: number; readonly redis: number | undefined; readonly influxd: number; readonly generators: number; readonly bench: number };
  /** broker + ingest + redis-server, % of one core per 1,000 readings/s stored. */
  readonly platformPctPer1000: number;
  /** Every process on the machine (others' included), % of one core; and the part that was not this bench's. */
  readonly machinePct: number;
  readonly othersPct: number;
  readonly redis: RedisFigures | undefined;
  /** Messages through each stage in the window (per second in the table). */
  readonly stages: Stages;
  readonly generators: GeneratorCounts;
  readonly brokerQueuedAtEnd: number | undefined;
  readonly rssMiB: { readonly brokers: readonly number[]; readonly ingest: readonly number[]; readonly redis: number | undefined };
  readonly rejected: number;
  readonly redelivered: number;
  readonly writeFailures: number;
  readonly backpressurePauses: number;
}

interface Snapshot {
  readonly t: number;
  readonly ingest: Samples;
  readonly cpu: ReadonlyMap<string, number>;
  readonly machine: MachineCpu;
  readonly bench: NodeJS.CpuUsage;
  readonly counts: readonly GeneratorCounts[];
  readonly redis: RedisInfo | undefined;
}

const ZERO_COUNTS: GeneratorCounts = { messagesSent: 0, messagesAcked: 0, readingsSent: 0, readingsAcked: 0, errors: 0, skipped: 0, cpuSeconds: 0, seconds: 0 };
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
    ZERO_COUNTS,
  );

function redisFigures(before: RedisInfo, after: RedisInfo, acknowledged: number, seconds: number): RedisFigures {
  const perCommand: { command: string; calls: number; usec: number }[] = [];
  let benchCalls = 0;
  for (const [command, stat] of after.commands) {
    const prior = before.commands.get(command) ?? { calls: 0, usec: 0 };
    const calls = stat.calls - prior.calls;
    if (calls <= 0) continue;
    if (BENCH_COMMANDS.has(command)) benchCalls += calls;
    else perCommand.push({ command, calls, usec: stat.usec - prior.usec });
  }
  const m = Math.max(1, acknowledged);
  const callsOf = (command: string) => perCommand.find((c) => c.command === command)?.calls ?? 0;
  const storeStages: StoreStages = { queued: callsOf('zadd'), cleared: callsOf('zrem') };
  const per = (calls: number, stage: keyof StoreStages) => calls / (storeStages[stage] > 0 ? storeStages[stage] : m);
  const path = PATH.filter((step) => callsOf(step.marker) > 0);
  // Round trips: the client's commands; those run inside a script are in its EVALSHA's time.
  const sent = perCommand.filter((c) => !IN_SCRIPT.has(c.command));
  const perMessage = (c: { command: string; calls: number }) => per(c.calls, 'queued');
  sent.sort((a, b) => perMessage(b) - perMessage(a) || b.usec - a.usec);
  const usec = sent.reduce((a, c) => a + c.usec, 0);
  const scriptCalls = perCommand.filter((c) => IN_SCRIPT.has(c.command)).reduce((a, c) => a + c.calls, 0);
  const commands = after.totalCommands - before.totalCommands - benchCalls - scriptCalls;
  return {
    commandsPerAcked: commands / m,
    commandsPerMessage: path.reduce((a, step) => a + per(callsOf(step.marker), step.stage), 0),
    beforePubackPerMessage: path.filter((step) => step.beforePuback).reduce((a, step) => a + per(callsOf(step.marker), step.stage), 0),
    path: path.map((step) => step.name),
    storeStages,
    commandsPerS: commands / seconds,
    usecPerMessage: usec / Math.max(1, storeStages.queued),
    top: sent.slice(0, 10).map((c) => ({ command: c.command.toUpperCase(), perMessage: perMessage(c), usecPerCall: c.usec / c.calls, shareOfTime: usec > 0 ? c.usec / usec : 0 })),
    usedMemoryMiB: after.usedMemory / 2 ** 20,
    usedMemoryPeakMiB: after.usedMemoryPeak / 2 ** 20,
    netBytesPerMessage: (after.netInputBytes - before.netInputBytes + (after.netOutputBytes - before.netOutputBytes)) / m,
  };
}

/** A broker or an ingest worker exited by itself during a run: something broke. */
class ServiceDied extends Error {
  constructor(name: string, pid: number, code: number | null, signal: string | null, output: string) {
    // The error and its first frames outside Node's own code, from what it printed last (a stack
    // trace when Node crashed), with pnpm's store paths shortened to package@version/file.
    const lines = output.trim().split('\n').map((l) => l.trim());
    const at = lines.findIndex((l) => /^\w*Error\b|^Error:|Error: /.test(l));
    const frames = at >= 0 ? lines.slice(at + 1).filter((l) => l.startsWith('at ') && !/\(node:|^at node:/.test(l)).slice(0, 4) : [];
    const excerpt = (at >= 0 ? [lines[at] as string, ...frames] : lines.slice(-6))
      .map((l) => l.replace(/(?:file:\/\/)?\/\S*\/node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)\//g, '$1/').slice(0, 300))
      .join('\n    ');
    super(`${name} (pid ${pid}) died during the run (exit code ${code}, signal ${signal}):\n    ${excerpt}`);
    this.name = 'ServiceDied';
  }
}

async function runTopology(spec: RunSpec, p: Provisioned, influx: { url: string; pid: number }, redis: RunningRedis, stats: RedisConnection): Promise<RunResult> {
  const usesRedis = spec.store === 'redis' || spec.mq === 'redis';
  if (usesRedis) await freshRedis(stats);
  const redisPid = redis.process.pid as number;
  log(`${spec.label}: ${spec.brokers} broker(s), ${spec.workers} ingest worker(s), ${fmt(spec.offeredPerS)} readings/s offered for ${WARMUP_S} + ${spec.seconds} s …`);

  const brokers = await Promise.all(Array.from({ length: spec.brokers }, (_, b) => startBroker(`broker ${b + 1}`, p.dataDir, spec.store, spec.mq, redis)));
  const workers: Worker[] = [];
  const generators: Generator[] = [];
  const closeGenerators = () => Promise.all(generators.map((g) => g.close({ type: 'close' })));
  cleanups.push(closeGenerators);
  /** Services the bench itself stopped (their exit is no crash). */
  const stopped = new Set<Service>();
  const stopWorkers = () =>
    Promise.all(
      workers.map((w) => {
        stopped.add(w.service);
        return w.service.stop();
      }),
    );
  // A Redis-store broker's clean stop waits for its queue of Redis commands (after a run that fell
  // behind, thousands of scripts clearing ingest's PUBACKs); its state is flushed before the next
  // run anyway, so it is killed. The disk store's broker stops cleanly.
  const stopBrokers = () =>
    Promise.all(
      brokers.map((b) => {
        stopped.add(b.service);
        if (spec.store === 'redis') b.service.child.kill('SIGKILL');
        return b.service.stop();
      }),
    );
  /** Fails the run at once when a broker or a worker died (a crash, not a stop), with what it said last. */
  const assertAlive = () => {
    for (const s of [...brokers.map((b) => ({ name: b.name, service: b.service })), ...workers.map((w) => ({ name: w.name, service: w.service }))]) {
      const { exitCode, signalCode } = s.service.child;
      if (stopped.has(s.service)) continue;
      if (exitCode !== null || signalCode !== null) throw new ServiceDied(s.name, s.service.pid, exitCode, signalCode, s.service.output());
    }
  };
  try {
    // Worker i on broker i (in turn): in the cluster, each node delivers to one worker, and every
    // reading published on the other node crosses Redis to reach its owner.
    workers.push(...(await Promise.all(Array.from({ length: spec.workers }, (_, w) => startWorker(p, brokers[w % brokers.length] as Broker, influx.url, spec.database, w + 1, spec.workers)))));

    for (let g = 0; g < GENERATORS; g++) generators.push(startGenerator(`generator ${g}`));
    // Connection i: generator i mod G, broker ⌊i / G⌋ mod B: every generator spreads its own share evenly over the brokers.
    const perBroker = brokers.map(() => 0);
    const linksOf = generators.map(() => 0);
    const t0 = performance.now();
    await Promise.all(
      generators.map(async (gen, g) => {
        for (let b = 0; b < brokers.length; b++) {
          const share = p.connections.filter((_c, i) => i % generators.length === g && Math.floor(i / generators.length) % brokers.length === b);
          if (share.length === 0) continue;
          const connected = await gen.ask({ type: 'connect', url: (brokers[b] as Broker).url, connections: share, connectConcurrency: 16 }, 'connected', 600_000);
          if (connected.failed > 0) throw new Error(`${spec.label}: ${connected.failed} connections to ${(brokers[b] as Broker).name} failed: ${connected.firstError}`);
          // The generator counts its links over every connect command: this one's are the new ones.
          perBroker[b] = (perBroker[b] ?? 0) + connected.connected - (linksOf[g] ?? 0);
          linksOf[g] = connected.connected;
        }
      }),
    );
    log(`${spec.label}: ${fmt(p.connections.length)} device connections (${perBroker.map((n, b) => `${fmt(n)} on broker ${b + 1}`).join(', ')}) over ${generators.length} generators in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const pids = (): [string, number][] => [
      ...brokers.map((b): [string, number] => [b.name, b.service.pid]),
      ...workers.map((w): [string, number] => [w.name, w.service.pid]),
      ...(usesRedis ? [['redis-server', redisPid] as [string, number]] : []),
      ['influxd', influx.pid],
      ...generators.map((g, i): [string, number] => [`generator ${i}`, g.pid]),
    ];
    const snapshot = async (): Promise<Snapshot> => {
      const t = performance.now();
      const bench = process.cpuUsage();
      const [samples, counts, cpu, machine, info] = await Promise.all([
        Promise.all(workers.map((w) => scrape(w.metricsUrl, 60_000))),
        Promise.all(generators.map((g) => g.ask({ type: 'count' }, 'counts', 30_000))),
        Promise.all(pids().map(async ([name, pid]): Promise<[string, number]> => [name, await cpuSeconds(pid)])),
        machineCpu(),
        usesRedis ? redisInfo(stats) : Promise.resolve(undefined),
      ]);
      return { t, ingest: mergeSamples(samples), cpu: new Map(cpu), machine, bench, counts, redis: info };
    };

    await Promise.all(generators.map((g) => g.ask({ type: 'start', messagesPerS: spec.offeredPerS / generators.length, readingsPerMessage: 1, inflight: INFLIGHT, readingsWindow: 0 }, 'started')));
    let watching = true;
    const progressEveryMs = QUICK ? 5000 : 15_000;
    const watcher = (async () => {
      let last = { t: performance.now(), stored: 0 };
      while (watching) {
        await sleep(500);
        const samples = await Promise.all(workers.map((w) => scrape(w.metricsUrl).catch(() => undefined)));
        if (samples.some((s) => s === undefined)) continue;
        const merged = mergeSamples(samples as Samples[]);
        const stored = total(merged, READINGS);
        const now = performance.now();
        if (now - last.t >= progressEveryMs) {
          log(`${spec.label}: ${fmt(((stored - last.stored) * 1000) / (now - last.t))} readings/s stored, ${fmt(total(merged, 'citypulse_ingest_buffered_lines'))} lines buffered, ${total(merged, 'citypulse_ingest_backpressure_pauses_total')} pauses`);
          last = { t: now, stored };
        }
      }
    })();

    await sleep(WARMUP_S * 1000);
    const w0 = await snapshot();
    log(`${spec.label}: measuring for ${spec.seconds} s …`);
    await sleep(Math.max(0, spec.seconds * 1000 - (performance.now() - w0.t)));
    const w1 = await snapshot();
    assertAlive();
    const rss = {
      brokers: await Promise.all(brokers.map(async (b) => (await residentBytes(b.service.pid)) / 2 ** 20)),
      ingest: await Promise.all(workers.map(async (w) => (await residentBytes(w.service.pid)) / 2 ** 20)),
      redis: usesRedis ? (await residentBytes(redisPid)) / 2 ** 20 : undefined,
    };
    const queuedOf = async (): Promise<number | undefined> => {
      const scrapes = await Promise.all(brokers.map((b) => scrape(b.metricsUrl, 60_000).catch(() => new Map<string, number>())));
      const values = scrapes.filter((s) => s.has(QUEUED)).map((s) => total(s, QUEUED));
      // One Redis store, so every node reports the same queue: the largest, not the sum.
      return values.length ? Math.max(...values) : undefined;
    };
    // Stop, drain and count. A broker or worker dying from here on breaks the run, but the window
    // above was measured: its figures are kept, and the loss check is reported as not done.
    let brokerQueuedAtEnd: number | undefined;
    let totals = sumCounts(w1.counts);
    let drainStart = performance.now();
    let drainSeconds = 0;
    let drained = false;
    /** Stopped waiting while readings were still arriving: what is missing is queued, not known lost. */
    let outOfTime = false;
    let queuedAfterDrain: number | undefined;
    let end = w1.ingest;
    let counted = Number.NaN;
    let afterReconnect: number | undefined;
    let brokeAfterWindow: string | undefined;
    try {
      const stopAt = performance.now();
      const [queuedAtEnd, stoppedCounts] = await Promise.all([queuedOf(), Promise.all(generators.map((g) => g.ask({ type: 'stop' }, 'stopped', 120_000)))]);
      brokerQueuedAtEnd = queuedAtEnd;
      log(`${spec.label}: generators stopped (${((performance.now() - stopAt) / 1000).toFixed(1)} s for the PUBACKs in flight); draining …`);
      watching = false;
      await watcher;
      totals = sumCounts(stoppedCounts);

      // Drain: the workers store whatever they hold or the broker still queues for them. Every
      // acknowledged reading counted in InfluxDB and nothing buffered is enough: what the store may
      // still list for ingest then (PUBACKs not yet cleared: a script call each) is thrown away with
      // these brokers and the flushed Redis; the next run starts afresh.
      drainStart = performance.now();
      const drainLimitMs = Math.max(120, 2 * spec.seconds) * 1000;
      let lastProgress = -1;
      let lastChange = drainStart;
      let lastLog = drainStart;
      for (;;) {
        assertAlive();
        end = mergeSamples(await Promise.all(workers.map((w) => scrape(w.metricsUrl))));
        // Counted in InfluxDB: a message delivered twice overwrites its own point there.
        const stored = await countReadings(influx.url, spec.database);
        if (stored >= totals.readingsAcked && total(end, 'citypulse_ingest_buffered_lines') === 0) {
          drained = true;
          queuedAfterDrain = await queuedOf();
          break;
        }
        const now = performance.now();
        // Progress: the count in InfluxDB, or ingest still writing (redeliveries move only its counter).
        const progress = stored + total(end, READINGS);
        if (progress !== lastProgress) {
          lastProgress = progress;
          lastChange = now;
        }
        if (now - lastChange > 30_000 || now - drainStart > drainLimitMs) {
          outOfTime = now - lastChange <= 30_000;
          log(
            `${spec.label}: gave up waiting after ${((now - drainStart) / 1000).toFixed(0)} s (${fmt(stored)} of ${fmt(totals.readingsAcked)} acknowledged readings stored, ${fmt((await queuedOf()) ?? 0)} queued in the broker; ${outOfTime ? 'still arriving: the rest is counted as not drained' : 'nothing arrived for 30 s'})`,
          );
          break;
        }
        if (now - lastLog > 15_000) {
          lastLog = now;
          log(`${spec.label}: draining, ${fmt(stored)} of ${fmt(totals.readingsAcked)} acknowledged readings stored`);
        }
        await sleep(1000);
      }
      drainSeconds = (performance.now() - drainStart) / 1000;
      await closeGenerators();
      await stopWorkers(); // each stores and acknowledges what it holds, then exits
      counted = await countReadings(influx.url, spec.database);
      // Missing readings may still sit in the broker's queue for a worker's persistent session (MQTT
      // resends only on a new connection): new workers on the same sessions collect them.
      assertAlive();
      if (counted < totals.readingsAcked && !outOfTime) {
        const missing = totals.readingsAcked - counted;
        log(`${spec.label}: ${fmt(missing)} acknowledged readings not in InfluxDB; starting the workers again on the same sessions to collect what the broker still holds …`);
        const again = await Promise.all(Array.from({ length: spec.workers }, (_, w) => startWorker(p, brokers[w % brokers.length] as Broker, influx.url, spec.database, w + 1, spec.workers)));
        let last = -1;
        const until = performance.now() + 60_000;
        for (let quiet = 0; quiet < 10 && counted < totals.readingsAcked && performance.now() < until; ) {
          await sleep(1000);
          counted = await countReadings(influx.url, spec.database);
          quiet = counted === last ? quiet + 1 : 0;
          last = counted;
        }
        await Promise.all(again.map((w) => w.service.stop()));
        counted = await countReadings(influx.url, spec.database);
        afterReconnect = missing - Math.max(0, totals.readingsAcked - counted);
        log(`${spec.label}: ${fmt(afterReconnect)} of them arrived after the reconnect`);
      }
    } catch (err) {
      if (!(err instanceof ServiceDied)) throw err;
      brokeAfterWindow = err.message;
      drainSeconds = (performance.now() - drainStart) / 1000;
      log(`${spec.label}: BROKE after the measured window: ${err.message}`);
    }

    const seconds = (w1.t - w0.t) / 1000;
    const storedInWindow = total(w1.ingest, READINGS) - total(w0.ingest, READINGS);
    const storedPerS = storedInWindow / seconds;
    const windowAcked = sumCounts(w1.counts);
    const before = sumCounts(w0.counts);
    const messagesInWindow = windowAcked.messagesAcked - before.messagesAcked;
    const lag = histogramBetween(w0.ingest, w1.ingest, LAG);
    const delta = (name: string) => (w1.cpu.get(name) ?? Number.NaN) - (w0.cpu.get(name) ?? Number.NaN);
    const cpuRow = (name: string, cpu: number): ProcessCpu => ({ process: name, cpuSeconds: cpu, percent: (cpu / seconds) * 100 });
    const benchUsage = process.cpuUsage(w0.bench);
    const cpu: ProcessCpu[] = [
      ...brokers.map((b) => cpuRow(b.name, delta(b.name))),
      ...workers.map((w) => cpuRow(w.name, delta(w.name))),
      ...(usesRedis ? [cpuRow('redis-server', delta('redis-server'))] : []),
      cpuRow('influxd', delta('influxd')),
      cpuRow(`generators (${generators.length})`, generators.reduce((a, _g, i) => a + delta(`generator ${i}`), 0)),
      cpuRow('bench (scrapes, IPC)', (benchUsage.user + benchUsage.system) / 1e6),
    ];
    const sumOf = (prefix: string) => cpu.filter((c) => c.process.startsWith(prefix)).reduce((a, c) => a + c.percent, 0);
    const cpuBy = { brokers: sumOf('broker'), ingest: sumOf('ingest'), redis: usesRedis ? sumOf('redis-server') : undefined, influxd: sumOf('influxd'), generators: sumOf('generators'), bench: sumOf('bench') };
    const ours = cpu.reduce((a, c) => a + c.percent, 0);
    const machinePct = ((w1.machine.busy - w0.machine.busy) / Math.max(1, w1.machine.all - w0.machine.all)) * cpus().length * 100;
    const platformPct = cpuBy.brokers + cpuBy.ingest + (cpuBy.redis ?? 0);
    const influxPoints = total(w1.ingest, LINES) + total(w1.ingest, ROLLUP_POINTS) - total(w0.ingest, LINES) - total(w0.ingest, ROLLUP_POINTS);
    const within = lag.bounds.indexOf(P99_TARGET_S);
    const stages: Stages = {
      acknowledged: messagesInWindow,
      delivered: total(w1.ingest, 'citypulse_ingest_messages_received_total') - total(w0.ingest, 'citypulse_ingest_messages_received_total'),
      ingestAcks: total(w1.ingest, 'citypulse_ingest_acks_total') - total(w0.ingest, 'citypulse_ingest_acks_total'),
    };
    const result: RunResult = {
      key: spec.key,
      label: spec.label,
      topology: `${spec.brokers} broker${spec.brokers > 1 ? 's' : ''} (BROKER_STORE=${spec.store}, BROKER_MQ=${spec.mq}) + ${spec.workers} ingest worker${spec.workers > 1 ? 's' : ''} (${workers.map((w) => w.shard).join(', ')})`,
      brokers: spec.brokers,
      workers: spec.workers,
      store: spec.store,
      mq: spec.mq,
      database: spec.database,
      offeredPerS: spec.offeredPerS,
      seconds,
      ackedPerS: (windowAcked.readingsAcked - before.readingsAcked) / seconds,
      storedPerS,
      influxPointsPerS: influxPoints / seconds,
      acked: totals.readingsAcked,
      counted,
      lost: brokeAfterWindow === undefined ? Math.max(0, totals.readingsAcked - counted) : Number.NaN,
      outOfTime,
      brokeAfterWindow,
      afterReconnect,
      drained,
      drainSeconds,
      queuedAfterDrain,
      p50: quantileOf(lag, 0.5),
      p95: quantileOf(lag, 0.95),
      p99: quantileOf(lag, 0.99),
      withinTarget: within >= 0 && lag.count > 0 ? (lag.cumulative[within] as number) / lag.count : undefined,
      cpu,
      cpuBy,
      platformPctPer1000: storedPerS > 0 ? platformPct / (storedPerS / 1000) : Number.NaN,
      machinePct,
      othersPct: Math.max(0, machinePct - ours),
      redis: w0.redis && w1.redis ? redisFigures(w0.redis, w1.redis, messagesInWindow, seconds) : undefined,
      stages,
      generators: totals,
      brokerQueuedAtEnd,
      rssMiB: rss,
      rejected: total(end, 'citypulse_ingest_rejected_total'),
      redelivered: total(end, 'citypulse_ingest_messages_redelivered_total'),
      writeFailures: total(end, 'citypulse_ingest_write_failures_total'),
      backpressurePauses: total(end, 'citypulse_ingest_backpressure_pauses_total'),
    };
    const q = (x: Quantile | undefined) => (x ? `${x.estimate.toFixed(2)} s` : '–');
    log(
      `${spec.label}: ${fmt(result.storedPerS)} readings/s stored of ${fmt(spec.offeredPerS)} offered (${fmt(result.ackedPerS)} acknowledged); p50 ${q(result.p50)}, p99 ${q(result.p99)}; ` +
        `${fmt(result.acked)} acknowledged, ${fmt(counted)} in InfluxDB, ${fmt(result.lost)} lost; ` +
        `${cpu.map((c) => `${c.process} ${c.percent.toFixed(0)} %`).join(', ')}; machine ${machinePct.toFixed(0)} % (others ${result.othersPct.toFixed(0)} %)` +
        (result.redis ? `; Redis ${result.redis.path.join(' ')} per message (measured ${result.redis.commandsPerMessage.toFixed(2)} per stage's message, ${result.redis.commandsPerAcked.toFixed(2)} per acknowledged one)` : ''),
    );
    return result;
  } catch (err) {
    log(`${spec.label} failed; output (tail) of ${[...brokers, ...workers].map((s) => `${s.name}:\n${s.service.output().slice(-3000)}`).join('\n')}`);
    throw err;
  } finally {
    const services = [...brokers, ...workers];
    // Scraped before the stop: the metrics say what the run did (drain timeouts, redeliveries).
    const metrics = process.env.BENCH_CLUSTER_LOG_DIR ? await Promise.all(services.map((s) => fetch(s.metricsUrl, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text(), () => ''))) : [];
    await closeGenerators();
    await stopWorkers();
    await stopBrokers();
    await keepLogs(spec.key, services, metrics);
  }
}

/** BENCH_CLUSTER_LOG_DIR: what each service of a run logged, and its metrics at the end, for looking into a run that fell behind. */
async function keepLogs(run: string, services: ReadonlyArray<{ readonly name: string; readonly service: Service }>, metrics: readonly string[]): Promise<void> {
  const dir = process.env.BENCH_CLUSTER_LOG_DIR;
  if (!dir) return;
  await mkdir(dir, { recursive: true });
  for (const [i, { name, service }] of services.entries()) {
    const file = join(dir, `${run}-${name.replace(/[^a-z0-9]+/gi, '-')}`);
    await writeFile(`${file}.log`, service.output());
    if (metrics[i]) await writeFile(`${file}.metrics`, metrics[i]);
  }
  log(`${run}: service logs in ${dir}`);
}

// ---------------------------------------------------------------------------------------------
// Report

interface Report {
  readonly date: string;
  readonly machine: string;
  readonly cores: number;
  readonly quick: boolean;
  readonly influxdVersion: string;
  readonly redisVersion: string;
  readonly devices: number;
  readonly generators: number;
  readonly warmupSeconds: number;
  readonly brokerOverrides: readonly string[];
  readonly ingestOverrides: readonly string[];
  readonly runs: readonly RunResult[];
  /** Runs that broke (a broker or worker died, a start failed): no figures. */
  readonly broken: readonly { readonly label: string; readonly error: string }[];
  readonly loadAverage: { readonly start: readonly number[]; readonly end: readonly number[] };
}

const secondsText = (s: number) => (s < 0.1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);
const quantileText = (q: Quantile | undefined) => (q ? (q.bound === Infinity ? '> the largest bucket' : `≤ ${secondsText(q.bound)} (≈ ${secondsText(q.estimate)})`) : '–');
const perThousand = (r: RunResult, percent: number | undefined) => (percent === undefined || r.storedPerS <= 0 ? '–' : `${fmt(percent)} % (${(percent / (r.storedPerS / 1000)).toFixed(1)} % per 1,000/s)`);

function table(report: Report): string {
  const runs = report.runs;
  const rows: string[] = [];
  const row = (what: string, cell: (r: RunResult) => string) => rows.push(`| ${what} | ${runs.map(cell).join(' | ')} |`);
  row('topology', (r) => r.topology);
  row('offered (one reading per message, QoS 1)', (r) => `${fmt(r.offeredPerS)} readings/s, ${fmt(report.devices)} devices`);
  row('measured for', (r) => `${r.seconds.toFixed(0)} s`);
  row('acknowledged (PUBACK) readings/s', (r) => fmt(r.ackedPerS));
  row('messages/s acknowledged to devices · received by ingest · acknowledged by ingest', (r) => [r.stages.acknowledged, r.stages.delivered, r.stages.ingestAcks].map((n) => fmt(n / r.seconds)).join(' · '));
  row("messages/s through the Redis store: queued for ingest (ZADD) · ingest's PUBACK cleared (ZREM)", (r) => (r.redis ? [r.redis.storeStages.queued, r.redis.storeStages.cleared].map((n) => fmt(n / r.seconds)).join(' · ') : '–'));
  row('stored readings/s', (r) => `**${fmt(r.storedPerS)}**`);
  row(
    'loss check: acknowledged vs counted in InfluxDB',
    (r) =>
      r.brokeAfterWindow !== undefined
        ? `${fmt(r.acked)} acknowledged: **not checked, a process died after the window** (see below)`
        : `${fmt(r.acked)} acknowledged, ${fmt(r.counted)} counted: **${r.lost === 0 ? 'none lost' : r.outOfTime ? `${fmt(r.lost)} still queued when the bench stopped waiting (loss not checked)` : `${fmt(r.lost)} lost`}**`,
  );
  row('device→stored lag p50 (bucket bound, ≈ interpolated)', (r) => quantileText(r.p50));
  row('device→stored lag p95', (r) => quantileText(r.p95));
  row('device→stored lag p99', (r) => `**${quantileText(r.p99)}**`);
  row(`stored within ${P99_TARGET_S} s of device time`, (r) => (r.withinTarget === undefined ? '–' : `${(r.withinTarget * 100).toFixed(2)} %`));
  row('drain after the generators stopped (every acknowledged reading stored)', (r) =>
    r.brokeAfterWindow !== undefined ? '– (a process died)' : `${secondsText(r.drainSeconds)}${r.drained ? '' : ' (gave up)'}${r.queuedAfterDrain ? `; ${fmt(r.queuedAfterDrain)} PUBACKs of ingest not yet cleared from the store then` : ''}`,
  );
  row('CPU brokers, one core = 100 %', (r) => `${perThousand(r, r.cpuBy.brokers)}${r.brokers > 1 ? `: ${r.cpu.filter((c) => c.process.startsWith('broker')).map((c) => fmt(c.percent)).join(' + ')}` : ''}`);
  row('CPU ingest workers', (r) => `${perThousand(r, r.cpuBy.ingest)}${r.workers > 1 ? `: ${r.cpu.filter((c) => c.process.startsWith('ingest')).map((c) => fmt(c.percent)).join(' + ')}` : ''}`);
  row('CPU redis-server', (r) => perThousand(r, r.cpuBy.redis));
  row('CPU influxd', (r) => perThousand(r, r.cpuBy.influxd));
  row('CPU generators (load, not platform)', (r) => perThousand(r, r.cpuBy.generators));
  row('**CPU broker + ingest + Redis per 1,000 readings/s**', (r) => `**${r.platformPctPer1000.toFixed(1)} % of a core**`);
  row(`whole machine busy (${report.cores} cores = ${report.cores * 100} %), of it not this bench's`, (r) => `${fmt(r.machinePct)} %, ${fmt(r.othersPct)} %`);
  row('Redis round trips (commands) per message: all · before the device\'s PUBACK', (r) =>
    r.redis
      ? steady(r)
        ? `**${r.redis.commandsPerMessage.toFixed(2)}** · ${r.redis.beforePubackPerMessage.toFixed(2)}`
        : `**${roundTrips(r.redis, false).all}** · ${roundTrips(r.redis, false).beforePuback}: one each of ${r.redis.path.join(', ')} (not steady: measured ${r.redis.commandsPerMessage.toFixed(1)} · ${r.redis.beforePubackPerMessage.toFixed(1)}, counting commands of messages still in flight)`
      : '– (no Redis)',
  );
  row('Redis commands per message, by command', (r) => (r.redis ? r.redis.top.slice(0, 8).map((c) => `${c.command} ${c.perMessage.toFixed(2)}`).join(', ') : '–'));
  row('Redis total_commands_processed per acknowledged message', (r) => (r.redis ? r.redis.commandsPerAcked.toFixed(2) : '–'));
  row('Redis commands/s · time in commands per message', (r) => (r.redis ? `${fmt(r.redis.commandsPerS)} · ${r.redis.usecPerMessage.toFixed(1)} µs` : '–'));
  row('Redis time by command (share · µs per call)', (r) => (r.redis ? [...r.redis.top].sort((a, b) => b.shareOfTime - a.shareOfTime).slice(0, 4).map((c) => `${c.command} ${(c.shareOfTime * 100).toFixed(0)} % · ${c.usecPerCall.toFixed(1)}`).join(', ') : '–'));
  row('Redis used_memory at the end of the window (peak)', (r) => (r.redis ? `${r.redis.usedMemoryMiB.toFixed(1)} MiB (${r.redis.usedMemoryPeakMiB.toFixed(1)} MiB)` : '–'));
  row("messages queued for ingest in the broker's store at the end of the window", (r) => (r.brokerQueuedAtEnd === undefined ? '–' : fmt(r.brokerQueuedAtEnd)));
  row('VmRSS brokers · ingest workers · redis-server', (r) => `${r.rssMiB.brokers.map((m) => fmt(m)).join(' + ')} MiB · ${r.rssMiB.ingest.map((m) => fmt(m)).join(' + ')} MiB · ${r.rssMiB.redis === undefined ? '–' : `${fmt(r.rssMiB.redis)} MiB`}`);
  return [`| measurement | ${runs.map((r) => r.label).join(' | ')} |`, `|---|${runs.map(() => '---:').join('|')}|`, ...rows].join('\n');
}

/** The busiest single process of a run (platform and influxd; the generators are load). */
function busiest(r: RunResult): ProcessCpu | undefined {
  return r.cpu.filter((c) => !c.process.startsWith('generators') && !c.process.startsWith('bench')).reduce<ProcessCpu | undefined>((a, c) => (a === undefined || c.percent > a.percent ? c : a), undefined);
}

/**
 * Redis round trips per message: measured (each command over its stage's messages) when the run
 * was steady; else the commands on a message's path, one each (what a steady run measures), since
 * a backed-up chain counts the commands of messages still in flight too.
 */
function roundTrips(redis: RedisFigures, isSteady: boolean): { all: string; beforePuback: string } {
  if (isSteady) return { all: redis.commandsPerMessage.toFixed(1), beforePuback: redis.beforePubackPerMessage.toFixed(1) };
  return { all: String(redis.path.length), beforePuback: String(PATH.filter((step) => step.beforePuback && redis.path.includes(step.name)).length) };
}

/** The Redis store cleared ingest's PUBACKs as fast as it queued messages: per-message counts are then exact. */
const steady = (r: RunResult) => r.redis === undefined || r.redis.storeStages.cleared >= 0.95 * r.redis.storeStages.queued;
const keptUp = (r: RunResult) => r.storedPerS >= 0.98 * r.offeredPerS && (r.p99?.bound ?? Infinity) <= P99_TARGET_S;

function limits(report: Report): string {
  const single = report.runs.find((r) => r.key === 'single');
  const onRedis = report.runs.find((r) => r.key === 'single-redis');
  const cluster = report.runs.find((r) => r.key === 'cluster');
  const high = report.runs.find((r) => r.key === 'cluster-high');
  const capacity = report.cores * 100;
  const parts: string[] = [];
  for (const r of report.runs) {
    const top = busiest(r);
    const perS = (n: number) => fmt(n / r.seconds);
    const { acknowledged, delivered, ingestAcks } = r.stages;
    const store = r.redis?.storeStages;
    const backlog = acknowledged > 0 && (delivered < 0.95 * acknowledged || ingestAcks < 0.95 * acknowledged);
    const clearing = store !== undefined && store.queued > 0 && store.cleared < 0.95 * store.queued;
    parts.push(
      `${r.label}: ${keptUp(r) ? 'kept up' : '**did not keep up**'} (${fmt(r.storedPerS)} of ${fmt(r.offeredPerS)} readings/s stored, p99 ${quantileText(r.p99)}); busiest process ${top ? `${top.process} at ${fmt(top.percent)} % of a core` : '–'}` +
        (backlog ? `; the devices got ${perS(acknowledged)} PUBACKs/s but ingest received ${perS(delivered)} messages/s and acknowledged ${perS(ingestAcks)}/s: the queue for ingest grew${r.brokerQueuedAtEnd === undefined ? '' : ` (${fmt(r.brokerQueuedAtEnd)} messages at the end of the window)`}` : '') +
        (clearing ? `; the Redis store queued ${perS(store.queued)} messages/s for ingest and cleared ingest's PUBACKs for only ${perS(store.cleared)}/s` : '') +
        `; the machine was ${fmt(r.machinePct)} % busy of ${capacity} % (${fmt(r.othersPct)} % not this bench's)` +
        (r.machinePct > 0.9 * capacity ? `: **the cores were full**${r.othersPct > 0.2 * capacity ? ', largely with other work: this run measured a shared machine' : ''}` : '') +
        (r.brokeAfterWindow === undefined ? '' : `. After the window **${r.brokeAfterWindow.split('\n').slice(0, 3).map((l) => l.trim()).join(' ')}**`) +
        '.',
    );
  }
  if (single && onRedis) {
    const extra = onRedis.platformPctPer1000 - single.platformPctPer1000;
    parts.push(
      `The Redis store costs ${extra >= 0 ? `${extra.toFixed(1)} % of a core more` : `${(-extra).toFixed(1)} % of a core less`} per 1,000 readings/s than the disk store (broker + ingest + Redis: ${onRedis.platformPctPer1000.toFixed(1)} against ${single.platformPctPer1000.toFixed(1)} %)` +
        (onRedis.redis ? `, with ${roundTrips(onRedis.redis, steady(onRedis)).all} Redis round trips per message, ${roundTrips(onRedis.redis, steady(onRedis)).beforePuback} of them awaited one after the other before the device's PUBACK (the disk store: none).` : '.'),
    );
  }
  for (const r of report.runs) {
    const script = r.redis?.top.find((c) => c.command === 'EVALSHA');
    if (!r.redis || !script) continue;
    parts.push(
      `${r.label}: the queue's scripts (queueing a message for ingest: ZADD + HSET; clearing it on ingest's PUBACK: ZREM + HDEL) took ${fmt(script.usecPerCall, 1)} µs a call, ${(script.shareOfTime * 100).toFixed(0)} % of Redis's command time` +
        `${r.brokerQueuedAtEnd ? `, with ${fmt(r.brokerQueuedAtEnd)} messages queued for ingest at the end of the window` : ''}: O(log n) in the backlog, where aedes-persistence-redis' LREM scanned ingest's whole list per PUBACK.`,
    );
  }
  if (cluster) {
    const base = single ?? onRedis;
    const redis = cluster.redis;
    const redisPct = cluster.cpuBy.redis ?? 0;
    const publish = redis?.top.find((c) => c.command === 'PUBLISH');
    parts.push(
      `The cluster spends ${cluster.platformPctPer1000.toFixed(1)} % of a core per 1,000 readings/s on brokers + ingest + Redis` +
        (base ? ` (${(cluster.platformPctPer1000 / base.platformPctPer1000).toFixed(2)}× the ${base.label}'s ${base.platformPctPer1000.toFixed(1)} %${onRedis && onRedis !== base ? `, ${(cluster.platformPctPer1000 / onRedis.platformPctPer1000).toFixed(2)}× the single node on Redis` : ''})` : '') +
        (redis
          ? `: every message costs ${roundTrips(redis, steady(cluster)).all} Redis round trips (${steady(cluster) ? redis.top.slice(0, 8).map((c) => `${c.command} ${c.perMessage.toFixed(2)}`).join(', ') : redis.path.join(', ')}), ${roundTrips(redis, steady(cluster)).beforePuback} of them one after the other before the device's PUBACK` +
            `${publish ? `; PUBLISH, the cluster's own, is ${(publish.shareOfTime * 100).toFixed(0)} % of Redis's command time at ${fmt(publish.usecPerCall, 1)} µs a call, and every node's subscriber connection reads back what the other published` : ''}. ` +
            `Redis executed ${fmt(redis.commandsPerS)} commands/s at ${fmt(redisPct)} % of its one core, ${fmt(redis.usecPerMessage, 1)} µs of command time per message`
          : '') +
        '.',
    );
    if (redis && redisPct > 0) {
      parts.push(
        `Redis runs its commands on one thread: at ${fmt(redisPct)} % of a core for ${fmt(cluster.storedPerS)} readings/s, one Redis holds about ${fmt((cluster.storedPerS * 100) / redisPct)} readings/s before its core is full${keptUp(cluster) ? '' : ' (from a run that did not keep up, so take it as a floor)'}, however many broker nodes share it; beyond that the broker's store needs Redis Cluster (aedes-persistence-redis takes a cluster) and the router more Redis capacity.`,
      );
    }
    const ours = cluster.machinePct - cluster.othersPct;
    parts.push(
      `On this ${report.cores}-core machine the cluster's processes (brokers, workers, Redis, influxd, generators) used ${fmt(ours)} % for ${fmt(cluster.storedPerS)} readings/s` +
        (ours > 0 ? `: with the machine to itself it would saturate near ${fmt((cluster.storedPerS * capacity) / ours)} readings/s at that cost per reading` : '') +
        ". Two nodes on one machine add Redis's work and share the same cores: the cluster's gain is more machines, not more from this one.",
    );
  }
  if (high) parts.push(`Saturation run: offered ${fmt(high.offeredPerS)} readings/s, the cluster stored ${fmt(high.storedPerS)}/s (${fmt(high.ackedPerS)}/s acknowledged), p99 ${quantileText(high.p99)}; ${keptUp(high) ? 'it kept up, so saturation is above that rate' : `it saturated: about ${fmt(high.storedPerS)} readings/s on this machine`}.`);
  return parts.join('\n\n');
}

function capacityFigures(report: Report): string {
  const lines = [
    `| per-node figure (measured here; divide the target rate by it, leave headroom) | ${report.runs.map((r) => r.label).join(' | ')} |`,
    `|---|${report.runs.map(() => '---:').join('|')}|`,
  ];
  const row = (what: string, cell: (r: RunResult) => string) => lines.push(`| ${what} | ${report.runs.map(cell).join(' | ')} |`);
  const perCore = (rate: number, percent: number | undefined) => (percent === undefined || percent <= 0 ? '–' : fmt((rate * 100) / percent));
  row('kept up with the offered rate (else the figures below are a saturated machine\'s, not a per-node cost)', (r) => (keptUp(r) ? 'yes' : '**no**'));
  row('readings/s per broker core', (r) => perCore(r.storedPerS, r.cpuBy.brokers));
  row('readings/s per ingest core', (r) => perCore(r.storedPerS, r.cpuBy.ingest));
  row("readings/s per Redis core (Redis is single-threaded: one instance's ceiling)", (r) => perCore(r.storedPerS, r.cpuBy.redis));
  row('Redis commands/s per 1,000 readings/s', (r) => (r.redis ? fmt((r.redis.commandsPerS * 1000) / Math.max(1, r.storedPerS)) : '–'));
  row('Redis network bytes (in + out) per message', (r) => (r.redis ? fmt(r.redis.netBytesPerMessage) : '–'));
  row('InfluxDB points/s written (readings, statuses, roll-ups)', (r) => fmt(r.influxPointsPerS));
  row('InfluxDB points/s per influxd core', (r) => perCore(r.influxPointsPerS, r.cpuBy.influxd));
  row('broker + ingest + Redis cores per 10,000 readings/s', (r) => (Number.isFinite(r.platformPctPer1000) ? (r.platformPctPer1000 / 10).toFixed(2) : '–'));
  row('Redis used_memory, end of window (messages queued for ingest then)', (r) => (r.redis ? `${r.redis.usedMemoryMiB.toFixed(1)} MiB (${r.brokerQueuedAtEnd === undefined ? '?' : fmt(r.brokerQueuedAtEnd)})` : '–'));
  return lines.join('\n');
}

function notes(report: Report): string {
  return [
    `- One invocation, runs in turn on the same machine (${report.machine}), same fleet of ${fmt(report.devices)} devices (each logs in with its own secret on its own MQTT 3.1.1 connection, lean client raw-link.ts), ${report.generators} forked generator processes, one reading per message at QoS 1, at most ${INFLIGHT} messages awaiting their PUBACK per connection; ${report.warmupSeconds} s warm-up, then the measured window. Each run: fresh broker and ingest processes (\`src/server.ts\`), its own InfluxDB ${report.influxdVersion} database, Redis ${report.redisVersion} flushed with its statistics reset (FLUSHALL, CONFIG RESETSTAT).`,
    `- Cluster: the devices' connections are split evenly over the two brokers and connected to them directly, worker 1/2 on broker 1 and 2/2 on broker 2. In production a TCP load balancer (HAProxy, nginx stream, a cloud NLB; not our code) sits in front of the nodes: it is left out here, so its CPU is in no figure.${report.brokerOverrides.length ? ` Broker overrides from the environment: ${report.brokerOverrides.join(', ')}.` : ''}${report.ingestOverrides.length ? ` Ingest overrides: ${report.ingestOverrides.join(', ')}.` : ''}`,
    `- Acknowledged: PUBACKs the generators received; stored: ingest's \`${READINGS}\` (the workers' summed); loss: every acknowledged reading against \`SELECT count("seq")\` once everything drained and the workers stopped. Lag: ingest's \`${LAG}\` histogram over the window, the workers' buckets summed; the buckets bound a percentile, ≈ is Prometheus-style interpolation.`,
    '- CPU: utime + stime from /proc/PID/stat over the window, one core = 100 %; "per 1,000/s" divides by the stored rate. Whole machine: /proc/stat, every process, others\' included (the machine may be shared: then the figures are noisier and a saturation is the machine\'s).',
    `- Redis: \`INFO commandstats\` and \`total_commands_processed\` before and after the window, the bench's own commands and those of the brokers' /metrics (SMEMBERS, ZCARD) left out, and the commands the queue's scripts run inside an EVALSHA (ZADD, HSET, ZREM, HDEL: Redis counts them, but they are not round trips and their time is in EVALSHA's). Round trips per message: each round trip of a message's path over the messages of its own stage, counted by a command Redis counts once per message there (the queueing EVALSHA and PUBLISH per message queued for ingest, i.e. per ZADD; the clearing EVALSHA per PUBACK of ingest cleared, i.e. per ZREM), so a run whose stages drift apart still gives the cost of one message; total_commands_processed per acknowledged message is beside it. Before the device's PUBACK: the queueing EVALSHA (broker/src/redis-queue.ts), then PUBLISH in a cluster (mqemitter-redis), one after the other; nothing on delivery to ingest; the clearing EVALSHA on ingest's PUBACK, not awaited.`,
    ...report.runs.map(
      (r) =>
        `- ${r.label}: ${fmt(r.generators.messagesSent)} messages sent, ${fmt(r.generators.messagesAcked)} acknowledged, ${r.generators.errors} failed, ${fmt(r.generators.skipped)} sends skipped (connection window full or generator behind); ingest rejected ${r.rejected}, redelivered ${r.redelivered}, write failures ${r.writeFailures}, back-pressure pauses ${r.backpressurePauses}${r.afterReconnect === undefined ? '' : `; ${fmt(r.afterReconnect)} readings arrived only after the workers reconnected`}.`,
    ),
    `- Load average at start ${report.loadAverage.start.map((l) => l.toFixed(2)).join(' ')}, at end ${report.loadAverage.end.map((l) => l.toFixed(2)).join(' ')}.`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (SHARED_ARGS && args.includes('--only')) {
    log("skipped: --only picks runs of the ingest bench (run this one with bench:cluster, or without --only)");
    return;
  }
  checkPayloads();
  const loadStart = loadavg();
  const root = await mkdtemp(join(tmpdir(), 'citypulse-cluster-bench-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  const [influxd, redis] = await Promise.all([startInfluxd({ dataDir: join(root, 'influxdb'), log }), startRedis({ dataDir: join(root, 'redis'), log })]);
  cleanups.push(() => influxd.stop());
  cleanups.push(() => redis.stop());
  log(`influxd pid ${influxd.process.pid}, ${influxd.url}; redis-server pid ${redis.process.pid}, ${redis.url}`);
  const influx = { url: influxd.url, pid: influxd.process.pid as number };
  const influxdVersion = (await fetch(`${influxd.url}/ping`).then((r) => r.headers.get('x-influxdb-version'))) ?? '1.x';
  const { conn: stats } = await connectRedis(`${redis.url}/0`, { purpose: 'bench statistics', logger: { warn: (_object, message) => log(message) } });
  cleanups.push(() => stats.quit());
  const redisVersion = (await redisInfo(stats)).version;
  const provisioned = await provision(join(root, 'data'));

  const specs: RunSpec[] = [
    { key: 'single', label: 'single node', brokers: 1, store: 'disk', mq: 'local', workers: 1, offeredPerS: RATE, seconds: SECONDS, database: 'bench_cluster_single' },
    { key: 'single-redis', label: 'single node, Redis store', brokers: 1, store: 'redis', mq: 'local', workers: 1, offeredPerS: RATE, seconds: SECONDS, database: 'bench_cluster_single_redis' },
    { key: 'cluster', label: 'cluster (2 + 2)', brokers: 2, store: 'redis', mq: 'redis', workers: 2, offeredPerS: RATE, seconds: SECONDS, database: 'bench_cluster_cluster' },
  ];
  if (HIGH_RATE > 0) specs.push({ key: 'cluster-high', label: `cluster (2 + 2) at ${fmt(HIGH_RATE)}/s`, brokers: 2, store: 'redis', mq: 'redis', workers: 2, offeredPerS: HIGH_RATE, seconds: HIGH_SECONDS, database: 'bench_cluster_high' });
  const runs: RunResult[] = [];
  const broken: { readonly label: string; readonly error: string }[] = [];
  for (const spec of specs.filter((sp) => !RUNS || RUNS.includes(sp.key))) {
    try {
      runs.push(await runTopology(spec, provisioned, influx, redis, stats));
    } catch (err) {
      // A run that broke (a process died, a start failed) is reported; the others still run.
      if (cleaning()) throw err;
      const error = err instanceof Error ? err.message : String(err);
      log(`${spec.label}: BROKE: ${error}`);
      broken.push({ label: spec.label, error });
    }
  }

  const report: Report = {
    date: new Date().toISOString(),
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    cores: cpus().length,
    quick: QUICK,
    influxdVersion,
    redisVersion,
    devices: DEVICES,
    generators: GENERATORS,
    warmupSeconds: WARMUP_S,
    brokerOverrides: passedThrough('BROKER_', BROKER_OWN),
    ingestOverrides: passedThrough('INGEST_', INGEST_OWN),
    runs,
    broken,
    loadAverage: { start: loadStart, end: loadavg() },
  };
  console.log(`Cluster vs single node, one run${QUICK ? ' (--quick)' : ''} of ${report.date.slice(0, 10)} (${report.machine}; InfluxDB ${influxdVersion}, Redis ${redisVersion})\n`);
  if (runs.length > 0) {
    console.log(table(report));
    console.log('\n**What limits it** (computed from the figures above)\n');
    console.log(limits(report));
    console.log('\n**Per-node figures for the capacity plan**\n');
    console.log(capacityFigures(report));
    console.log('');
  }
  const afterWindow = runs.filter((r) => r.brokeAfterWindow !== undefined);
  if (broken.length > 0 || afterWindow.length > 0) {
    console.log('**Runs that broke** (the bench exits non-zero)\n');
    for (const b of broken) console.log(`- ${b.label} (no figures): ${b.error.replace(/\n\s*/g, ' ⏎ ')}`);
    for (const r of afterWindow) console.log(`- ${r.label} (after its measured window, whose figures are above; loss not checked): ${(r.brokeAfterWindow ?? '').replace(/\n\s*/g, ' ⏎ ')}`);
    console.log('');
  }
  console.log(notes(report));
  if (JSON_FILE) {
    await mkdir(dirname(JSON_FILE), { recursive: true });
    await writeFile(JSON_FILE, `${JSON.stringify(report, null, 1)}\n`);
  }
  const lost = runs.filter((r) => r.lost > 0 && !r.outOfTime);
  for (const r of runs.filter((x) => x.lost > 0 && x.outOfTime)) console.error(`cluster bench: ${r.label}: ${fmt(r.lost)} acknowledged readings still on their way when the bench stopped waiting; loss not checked for this run`);
  if (lost.length > 0) {
    console.error(`cluster bench: acknowledged readings missing from InfluxDB in ${lost.map((r) => `${r.label} (${fmt(r.lost)})`).join(', ')}`);
    process.exitCode = 1;
  }
  if (broken.length > 0 || afterWindow.length > 0) {
    console.error(`cluster bench: ${[...broken.map((b) => b.label), ...afterWindow.map((r) => r.label)].join(', ')} broke`);
    process.exitCode = 1;
  }
}

main()
  .catch((err: unknown) => {
    // After Ctrl+C the runs fail as their processes go: not worth a stack trace.
    if (!cleaning()) console.error('cluster bench failed:', err);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
