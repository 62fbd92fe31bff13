/**
 * `pnpm --filter @citypulse/broker bench` (also run by `npm run bench`): the platform's broker
 * against Debian's Mosquitto 2.0 on the same machine, in the same run.
 *
 * - fan-in: 100 devices (one MQTT.js connection each, spread over several generator processes)
 *   publish readings to their telemetry topics; one subscriber process (the ingest account on our
 *   broker) receives them all on `city/+/+/+/telemetry` and records each message's latency in an
 *   HDR histogram. QoS 0 and QoS 1 as fast as a window of in-flight messages per connection
 *   allows, then QoS 1 at a fixed rate of half Mosquitto's QoS 1 maximum (the same offered rate
 *   for both brokers). Figures: messages/s delivered to the subscriber, p50/p99 latency, and the
 *   broker process's own CPU seconds (/proc/PID/stat utime + stime) per 100,000 messages.
 * - idle connections: 10,000 devices connected and idle, the broker's VmRSS before and after,
 *   per connection.
 *
 * Our broker runs as its own process (`node --import tsx src/server.ts`) with authentication,
 * the ACL, the per-device rate limit and /metrics on; Mosquitto anonymous, with an unlimited queue.
 * Devices are provisioned once (10,000 scrypt hashes take minutes) into a cache folder under the
 * system temp folder, reused by later runs.
 *
 * Prints a Markdown table for BENCHMARKS.md on stdout, progress on stderr; `--json FILE` also
 * writes the figures; `--quick` for a short try (1,000 idle connections, 5 s runs); `--cpu-prof`
 * runs only a QoS 1 fan-in against our broker under the V8 profiler and prints where its CPU goes.
 * Environment: BENCH_SECONDS (measured seconds per run), BENCH_GENERATORS, BENCH_DEVICES,
 * BENCH_IDLE (idle connections), BENCH_WINDOW (in-flight messages per connection), BENCH_HALF_RATE
 * (offered rate of the half-load runs instead of half Mosquitto's QoS 1 maximum), BENCH_RATE (with
 * --cpu-prof: profile at this offered rate instead of the maximum); `--only fan-in|idle`.
 */
import { fork, spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { connectAsync } from 'mqtt';
import { deviceTopic } from '@citypulse/contracts';
import { findExecutable, freePort, SERVICE_NODE_FLAGS, startMosquitto, type RunningMosquitto } from '@citypulse/infra';
import { BROKER_DEFAULTS } from '../src/config.js';
import { DeviceRegistry } from '../src/registry.js';
import { deviceIdOf, type BenchDevice, type GeneratorCommand, type GeneratorReply, type SubscriberCommand, type SubscriberReply } from './protocol.js';
import { summariseCpuProfile, type CpuProfile, type ProfileSummary } from './profile.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const BROKER_DIR = dirname(HERE);
const TSX = import.meta.resolve('tsx');
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const PROFILE = args.includes('--cpu-prof');
const jsonIndex = args.indexOf('--json');
const JSON_FILE = jsonIndex >= 0 ? args[jsonIndex + 1] : undefined;
const onlyIndex = args.indexOf('--only');
const ONLY = onlyIndex >= 0 ? args[onlyIndex + 1] : undefined; // fan-in | idle

const envInt = (name: string, fallback: number) => {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value > 0 ? Math.floor(value) : fallback;
};
const MEASURE_S = envInt('BENCH_SECONDS', QUICK ? 5 : 15);
const WARMUP_S = QUICK ? 2 : 3;
const GENERATORS = envInt('BENCH_GENERATORS', 3);
const FAN_IN_DEVICES = envInt('BENCH_DEVICES', 100);
const IDLE_CONNECTIONS = envInt('BENCH_IDLE', QUICK ? 1000 : 10_000);
const WINDOW = envInt('BENCH_WINDOW', 16);
/** --cpu-prof: profile QoS 1 at this offered rate instead of as fast as possible. */
const PROFILE_RATE = process.env.BENCH_RATE ? envInt('BENCH_RATE', 1000) : undefined;
/** Offered rate of the "half load" runs; default: half Mosquitto's QoS 1 maximum measured in the run. */
const HALF_RATE = process.env.BENCH_HALF_RATE ? envInt('BENCH_HALF_RATE', 1000) : undefined;
const IDLE_GENERATORS = 4;
const IDLE_CONNECT_CONCURRENCY = 32; // per generator: CONNECTs awaiting CONNACK at once
const IDLE_KEEPALIVE_S = 120;
/** High enough that no bench device is ever limited: the limiter runs, drops nothing. */
const RATE_LIMIT = '100000';
/** Set by the bench itself; any other BROKER_* variable of the caller's environment reaches the broker and is reported. */
const BENCH_BROKER_ENV = ['BROKER_HTTP_PORT', 'BROKER_RATE_PER_S', 'BROKER_RATE_BURST', 'BROKER_STORE'];
const CACHE_VERSION = 'v2'; // v2: generated secrets hashed at the low scrypt cost
/** Devices in the full run's cache: 10,000 idle connections and the warm-up logins. */
const FULL_CACHE = 10_100;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const FILTER = 'city/+/+/+/telemetry';
const LOCATION = [105.8525, 21.0287] as const; // Hà Nội (province 01)

const log = (line: string) => console.error(`[broker bench] ${line}`);
const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

// ---------------------------------------------------------------------------------------------
// Process accounting

/** CPU time of a process, seconds: utime and stime (fields 14 and 15 of /proc/PID/stat). */
async function cpuTimesOf(pid: number): Promise<{ user: number; system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK };
}

async function cpuSecondsOf(pid: number): Promise<number> {
  const { user, system } = await cpuTimesOf(pid);
  return user + system;
}

/** Resident set size of a process, bytes (VmRSS in /proc/PID/status). */
async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  return Number(kb) * 1024;
}

/** Monotonic clock in µs: the clock V8 CPU profiles are stamped with (CLOCK_MONOTONIC). */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

// ---------------------------------------------------------------------------------------------
// Provisioning (cached: hashing 10,000 secrets takes minutes)

interface Provisioned {
  readonly dir: string;
  readonly devices: readonly { id: string; secret: string }[];
  readonly ingestSecret: string;
}

async function loadCache(dir: string): Promise<Provisioned | undefined> {
  try {
    const secrets = JSON.parse(await readFile(join(dir, 'secrets.json'), 'utf8')) as Omit<Provisioned, 'dir'>;
    if (!existsSync(join(dir, 'devices.json'))) return undefined;
    return { dir, ...secrets };
  } catch {
    return undefined;
  }
}

async function provision(count: number): Promise<Provisioned> {
  // A bigger cache serves a smaller run (--quick uses the full run's devices when it exists).
  for (const size of [...new Set([count, FULL_CACHE])].filter((n) => n >= count)) {
    const cached = await loadCache(join(tmpdir(), `citypulse-broker-bench-${size}-${CACHE_VERSION}`));
    if (cached && cached.devices.length >= count) {
      log(`devices: reusing ${fmt(cached.devices.length)} provisioned devices in ${cached.dir}`);
      return cached;
    }
  }
  // Round up so a full run and a quick one share the cache.
  const size = count <= FULL_CACHE ? FULL_CACHE : count;
  const dir = join(tmpdir(), `citypulse-broker-bench-${size}-${CACHE_VERSION}`);
  const building = `${dir}.building-${process.pid}`;
  await rm(building, { recursive: true, force: true });
  log(`devices: provisioning ${fmt(size)} devices with secrets into ${dir} (one scrypt hash each, cached for later runs) …`);
  const t0 = performance.now();
  const registry = await DeviceRegistry.open(building);
  try {
    const ingestSecret = await registry.upsertService('ingest', 'ingest');
    const devices: { id: string; secret: string }[] = [];
    const batch = 500;
    for (let start = 0; start < size; start += batch) {
      const inputs = Array.from({ length: Math.min(batch, size - start) }, (_, k) => ({ id: deviceIdOf(start + k), province: '01', domain: 'environment' as const, kind: 'bench', location: LOCATION }));
      for (const { id, secret } of await registry.upsertDevices(inputs)) devices.push({ id, secret: secret as string });
      log(`devices: ${fmt(devices.length)}/${fmt(size)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
    await writeFile(join(building, 'secrets.json'), `${JSON.stringify({ devices, ingestSecret })}\n`, { mode: 0o600 });
    registry.close();
    await rm(dir, { recursive: true, force: true });
    await rename(building, dir);
    return { dir, devices, ingestSecret };
  } finally {
    registry.close();
    await rm(building, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Brokers under test

interface Broker {
  readonly name: 'ours' | 'mosquitto';
  readonly url: string;
  readonly pid: number;
  /** Logins for devices and the subscriber (our broker); Mosquitto is anonymous. */
  readonly auth: boolean;
  readonly httpPort?: number;
  stop(): Promise<void>;
  tail(): string;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

async function startOurs(cache: Provisioned, cpuProfDir?: string): Promise<Broker> {
  const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-broker-bench-run-'));
  await cp(cache.dir, dataDir, { recursive: true });
  await rm(join(dataDir, 'secrets.json'), { force: true });
  const port = await freePort();
  const httpPort = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATA_DIR: dataDir,
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: String(port),
    MQTT_WS_PORT: '0',
    LOG_LEVEL: 'warn',
    BROKER_HTTP_PORT: String(httpPort),
    BROKER_RATE_PER_S: RATE_LIMIT,
    BROKER_RATE_BURST: RATE_LIMIT,
    BROKER_STORE: 'memory',
  };
  delete env.CITYPULSE_SUPERVISED;
  delete env.NODE_OPTIONS;
  const nodeArgs = [...SERVICE_NODE_FLAGS, ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []), '--import', TSX, 'src/server.ts'];
  // One process, no tsx wrapper: its /proc accounting is the broker's own.
  const child = spawn(process.execPath, nodeArgs, { cwd: BROKER_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = once(child, 'exit');
  const deadline = Date.now() + 60_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null) throw new Error(`our broker exited (${child.exitCode}) before listening:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`our broker did not listen on ${port} within 60 s:\n${output}`);
    }
    await sleep(100);
  }
  const healthz = await fetch(`http://127.0.0.1:${httpPort}/healthz`, { signal: AbortSignal.timeout(2000) }).then(
    (r) => `/healthz ${r.status}`,
    () => 'no /healthz (BROKER_HTTP_PORT not served)',
  );
  log(`our broker: pid ${child.pid}, mqtt://127.0.0.1:${port}, ${healthz}`);
  return {
    name: 'ours',
    url: `mqtt://127.0.0.1:${port}`,
    pid: child.pid as number,
    auth: true,
    httpPort,
    tail: () => output,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function startMosq(): Promise<Broker> {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-broker-bench-mosquitto-'));
  const mosquitto: RunningMosquitto = await startMosquitto({ dataDir: dir, unlimitedQueue: true, log });
  log(`mosquitto: pid ${mosquitto.process.pid}, ${mosquitto.url}`);
  return {
    name: 'mosquitto',
    url: mosquitto.url,
    pid: mosquitto.process.pid as number,
    auth: false,
    tail: () => '',
    async stop() {
      await mosquitto.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Child processes (generators, subscriber) over IPC

class Child<Command, Reply extends { type: string }> {
  readonly process: ChildProcess;
  readonly #waiters = new Set<(reply: Reply) => void>();
  #failure: Error | undefined;

  constructor(script: string, label: string) {
    this.process = fork(join(HERE, script), [], { execArgv: ['--import', TSX], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.process.on('message', (reply: Reply) => {
      if (reply.type === 'fatal') this.#failure = new Error(`${label}: ${(reply as unknown as { message: string }).message}`);
      for (const waiter of [...this.#waiters]) waiter(reply);
    });
    this.process.on('error', () => undefined); // a send after the child exited; the exit is reported below
    this.process.on('exit', (code) => {
      this.#failure ??= new Error(`${label} exited (${code})`);
      for (const waiter of [...this.#waiters]) waiter({ type: 'fatal' } as Reply);
    });
  }

  send(command: Command): void {
    if (this.process.connected) this.process.send(command as object, (err) => err && undefined);
  }

  onReply(listener: (reply: Reply) => void): void {
    this.process.on('message', listener);
  }

  /** The next reply of this type (progress replies go to onOther). */
  next<T extends Reply['type']>(type: T, timeoutMs = 600_000, onOther?: (reply: Reply) => void): Promise<Extract<Reply, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`no ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (reply: Reply) => {
        if (reply.type === type) {
          this.#waiters.delete(waiter);
          clearTimeout(timer);
          resolve(reply as Extract<Reply, { type: T }>);
        } else if (reply.type === 'fatal' || this.#failure) {
          this.#waiters.delete(waiter);
          clearTimeout(timer);
          reject(this.#failure ?? new Error('child failed'));
        } else onOther?.(reply);
      };
      if (this.#failure) reject(this.#failure);
      else this.#waiters.add(waiter);
    });
  }

  async close(closeCommand: Command): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = once(this.process, 'exit');
    try {
      this.send(closeCommand);
    } catch {
      // channel already closed
    }
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

type Generator = Child<GeneratorCommand, GeneratorReply>;
type Subscriber = Child<SubscriberCommand, SubscriberReply>;

function benchDevices(broker: Broker, cache: Provisioned, count: number): BenchDevice[] {
  return cache.devices.slice(0, count).map(({ id, secret }) => ({
    id,
    topic: deviceTopic({ province: '01', domain: 'environment', deviceId: id }, 'telemetry'),
    ...(broker.auth ? { password: secret } : {}),
  }));
}

/** Forks `processes` generators and connects `devices` over them (round-robin). */
async function startGenerators(broker: Broker, devices: readonly BenchDevice[], processes: number, keepaliveS: number, connectConcurrency: number, progressLabel?: string) {
  const groups = Array.from({ length: processes }, (_, g) => devices.filter((_d, i) => i % processes === g));
  const generators: Generator[] = groups.map((_, g) => new Child<GeneratorCommand, GeneratorReply>('generator.ts', `generator ${g}`));
  const progress = new Map<number, number>();
  let lastLog = performance.now();
  const onProgress = (g: number) => (reply: GeneratorReply) => {
    if (reply.type !== 'progress' || !progressLabel) return;
    progress.set(g, reply.connected);
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      log(`${progressLabel}: ${fmt([...progress.values()].reduce((a, b) => a + b, 0))}/${fmt(devices.length)} connected`);
    }
  };
  const t0 = performance.now();
  generators.forEach((gen, g) => gen.send({ type: 'connect', url: broker.url, devices: groups[g] as BenchDevice[], keepaliveS, connectConcurrency }));
  const results = await Promise.all(generators.map((gen, g) => gen.next('connected', 900_000, onProgress(g))));
  const connected = results.reduce((a, r) => a + r.connected, 0);
  const failed = results.reduce((a, r) => a + r.failed, 0);
  const firstError = results.find((r) => r.firstError)?.firstError;
  return { generators, connected, failed, firstError, seconds: (performance.now() - t0) / 1000 };
}

async function closeAll(children: readonly { close(command: never): Promise<void> }[]): Promise<void> {
  await Promise.all(children.map((c) => (c as Child<{ type: 'close' }, { type: string }>).close({ type: 'close' })));
}

// ---------------------------------------------------------------------------------------------
// Fan-in

interface FanInResult {
  readonly broker: Broker['name'];
  readonly qos: 0 | 1;
  /** As fast as the windows allow, or a fixed offered rate: half (or a quarter of) Mosquitto's QoS 1 maximum. */
  readonly mode: Load;
  readonly offeredPerS: number | undefined;
  readonly devices: number;
  readonly generators: number;
  readonly window: number;
  readonly seconds: number;
  readonly delivered: number;
  readonly deliveredPerS: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly brokerCpuSeconds: number;
  readonly brokerCpuPer100k: number;
  readonly brokerCpuPercent: number;
  /** Share of the broker's CPU time spent in the kernel (stime / (utime + stime)). */
  readonly brokerSystemShare: number;
  readonly generatorCpuPercent: number;
  readonly subscriberCpuPercent: number;
  readonly sent: number;
  readonly completed: number;
  readonly receivedTotal: number;
  readonly lost: number;
  readonly skipped: number;
  readonly writtenOff: number;
  readonly errors: number;
  /** For a CPU profile: the measurement window on the monotonic clock, µs. */
  readonly windowUs: readonly [number, number];
}

type Load = 'max' | 'half' | 'quarter';

async function fanIn(broker: Broker, cache: Provisioned, qos: 0 | 1, mode: Load, offeredPerS?: number): Promise<FanInResult> {
  const label = `${broker.name} QoS ${qos} ${mode}${offeredPerS ? ` (${fmt(offeredPerS)} msg/s offered)` : ''}`;
  const subscriber: Subscriber = new Child<SubscriberCommand, SubscriberReply>('subscriber.ts', 'subscriber');
  const children: Child<never, { type: string }>[] = [subscriber as unknown as Child<never, { type: string }>];
  try {
    subscriber.send({ type: 'connect', url: broker.url, ...(broker.auth ? { username: 'ingest', password: cache.ingestSecret } : {}), filter: FILTER, qos, generators: GENERATORS });
    await subscriber.next('ready', 60_000);
    const devices = benchDevices(broker, cache, FAN_IN_DEVICES);
    const { generators, connected, failed, firstError } = await startGenerators(broker, devices, GENERATORS, 60, 16);
    children.push(...(generators as unknown as Child<never, { type: string }>[]));
    subscriber.onReply((message) => {
      if (message.type === 'credit') generators.forEach((g, i) => g.send({ type: 'credit', received: message.received[i] ?? 0 }));
    });
    if (connected < devices.length) throw new Error(`${label}: only ${connected}/${devices.length} devices connected (${failed} failed: ${firstError})`);
    const window = offeredPerS ? Math.max(64, WINDOW) : WINDOW;
    const started = generators.map((g) => g.next('started', 30_000));
    // End to end, as many messages in flight per generator as its connections' windows hold.
    for (const g of generators) g.send({ type: 'start', qos, window, endToEndWindow: WINDOW * Math.ceil(devices.length / generators.length), ratePerS: offeredPerS ? offeredPerS / generators.length : 0 });
    await Promise.all(started);
    await sleep(WARMUP_S * 1000);

    const reset = subscriber.next('reset', 30_000);
    subscriber.send({ type: 'reset' });
    await reset;
    const cpu0 = await cpuTimesOf(broker.pid);
    const t0 = performance.now();
    const us0 = monotonicUs();
    await sleep(MEASURE_S * 1000);
    const cpu1 = await cpuTimesOf(broker.pid);
    const us1 = monotonicUs();
    const wall = (performance.now() - t0) / 1000;
    const reported = subscriber.next('report', 30_000);
    subscriber.send({ type: 'report' });
    const report = await reported;

    const stoppedPromises = generators.map((g) => g.next('stopped', 60_000));
    for (const g of generators) g.send({ type: 'stop' });
    const stopped = await Promise.all(stoppedPromises);
    const sent = stopped.reduce((a, s) => a + s.sent, 0);
    const completed = stopped.reduce((a, s) => a + s.completed, 0);
    // Drain: wait until the subscriber has everything that was acknowledged (or stops receiving).
    let total = report.total;
    let last = -1;
    const drainDeadline = Date.now() + 60_000;
    while (total < completed && total !== last && Date.now() < drainDeadline) {
      last = total;
      await sleep(1000);
      const next = subscriber.next('report', 30_000);
      subscriber.send({ type: 'report' });
      total = (await next).total;
    }
    const generatorCpu = stopped.reduce((a, s) => a + s.cpuSeconds / s.seconds, 0);
    const brokerCpuSeconds = cpu1.user + cpu1.system - cpu0.user - cpu0.system;
    const brokerSystemShare = brokerCpuSeconds > 0 ? (cpu1.system - cpu0.system) / brokerCpuSeconds : 0;
    const result: FanInResult = {
      broker: broker.name,
      qos,
      mode,
      offeredPerS,
      devices: devices.length,
      generators: generators.length,
      window,
      seconds: report.seconds,
      delivered: report.count,
      deliveredPerS: report.count / report.seconds,
      p50Ms: report.p50Ms,
      p99Ms: report.p99Ms,
      maxMs: report.maxMs,
      brokerCpuSeconds,
      brokerCpuPer100k: (brokerCpuSeconds / report.count) * 100_000,
      brokerCpuPercent: (brokerCpuSeconds / wall) * 100,
      brokerSystemShare,
      generatorCpuPercent: generatorCpu * 100,
      subscriberCpuPercent: (report.cpuSeconds / report.seconds) * 100,
      sent,
      completed,
      receivedTotal: total,
      lost: Math.max(0, completed - total),
      skipped: stopped.reduce((a, s) => a + s.skipped, 0),
      writtenOff: stopped.reduce((a, s) => a + s.writtenOff, 0),
      errors: stopped.reduce((a, s) => a + s.errors, 0),
      windowUs: [us0, us1],
    };
    log(
      `${label}: ${fmt(result.deliveredPerS)} msg/s delivered, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, broker ${result.brokerCpuPer100k.toFixed(2)} CPU s/100k (${result.brokerCpuPercent.toFixed(0)} % of a core, ${(result.brokerSystemShare * 100).toFixed(0)} % of it in the kernel), generators ${result.generatorCpuPercent.toFixed(0)} %, subscriber ${result.subscriberCpuPercent.toFixed(0)} %; ${fmt(completed)} acknowledged, ${fmt(total)} received, ${fmt(result.lost)} lost${result.skipped ? `, ${fmt(result.skipped)} turns skipped (window full or generator behind)` : ''}${result.writtenOff ? `, ${fmt(result.writtenOff)} written off (end-to-end window stalled)` : ''}${result.errors ? `, ${result.errors} errors` : ''}`,
    );
    return result;
  } finally {
    await closeAll(children);
  }
}

// ---------------------------------------------------------------------------------------------
// Idle connections

interface IdleResult {
  readonly broker: Broker['name'];
  readonly requested: number;
  readonly connected: number;
  readonly failed: number;
  readonly connectSeconds: number;
  readonly connectCpuSeconds: number;
  /** VmRSS of the broker as started, before the warm-up logins. */
  readonly rssFresh: number;
  readonly rssBefore: number;
  readonly rssAfter: number;
  readonly bytesPerConnection: number;
}

/** Devices logged in (concurrently) and out before the idle baseline is taken. */
const IDLE_WARMUP_LOGINS = 16;

async function idle(broker: Broker, cache: Provisioned, count: number): Promise<IdleResult> {
  // A login's scrypt takes 1–16 MiB in a libuv thread (by its cost); glibc keeps each thread's arena once used.
  // That is a fixed cost of the process, not of a connection: pay it before the baseline, with a
  // few logins of devices outside the measured set (the same for Mosquitto, where it costs nothing).
  await sleep(1000);
  const rssFresh = await rssOf(broker.pid);
  const warm = await startGenerators(broker, benchDevices(broker, cache, count + IDLE_WARMUP_LOGINS).slice(count), 1, IDLE_KEEPALIVE_S, IDLE_WARMUP_LOGINS);
  await closeAll(warm.generators);
  await sleep(2000);
  const rssBefore = await rssOf(broker.pid);
  const cpu0 = await cpuSecondsOf(broker.pid);
  log(`${broker.name}: opening ${fmt(count)} idle connections over ${IDLE_GENERATORS} processes (keepalive ${IDLE_KEEPALIVE_S} s, ${IDLE_CONNECT_CONCURRENCY} CONNECTs pending per process) …`);
  const started = await startGenerators(broker, benchDevices(broker, cache, count), IDLE_GENERATORS, IDLE_KEEPALIVE_S, IDLE_CONNECT_CONCURRENCY, `${broker.name} idle`);
  try {
    const connectCpuSeconds = (await cpuSecondsOf(broker.pid)) - cpu0;
    await sleep(5000);
    const rssAfter = await rssOf(broker.pid);
    const result: IdleResult = {
      broker: broker.name,
      requested: count,
      connected: started.connected,
      failed: started.failed,
      connectSeconds: started.seconds,
      connectCpuSeconds,
      rssFresh,
      rssBefore,
      rssAfter,
      bytesPerConnection: (rssAfter - rssBefore) / Math.max(1, started.connected),
    };
    log(
      `${broker.name} idle: ${fmt(result.connected)}/${fmt(count)} connected in ${result.connectSeconds.toFixed(1)} s (broker CPU ${result.connectCpuSeconds.toFixed(1)} s)${result.failed ? `, ${result.failed} failed: ${started.firstError}` : ''}; VmRSS ${fmt(rssFresh / 2 ** 20, 1)} MiB fresh, ${fmt(rssBefore / 2 ** 20, 1)} after ${IDLE_WARMUP_LOGINS} warm-up logins, ${fmt(rssAfter / 2 ** 20, 1)} MiB with the connections: ${fmt(result.bytesPerConnection)} B per connection`,
    );
    return result;
  } finally {
    await closeAll(started.generators);
  }
}

// ---------------------------------------------------------------------------------------------
// Proof that authentication, the ACL, the rate limit and metrics were on

async function probeSecurity(broker: Broker, cache: Provisioned): Promise<string> {
  const [a, b] = cache.devices as [{ id: string; secret: string }, { id: string; secret: string }];
  const outcomes: string[] = [];
  const refused = async (label: string, options: Parameters<typeof connectAsync>[1]) => {
    try {
      const client = await connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, ...options });
      await client.endAsync(true);
      outcomes.push(`${label} ACCEPTED`);
    } catch (err) {
      const code = (err as { code?: number }).code;
      outcomes.push(`${label} refused${code !== undefined ? ` (CONNACK ${code})` : ''}`);
    }
  };
  await refused('wrong secret', { clientId: a.id, username: a.id, password: `${a.secret}x` });
  await refused('anonymous', { clientId: a.id });
  const client = await connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0, clientId: a.id, username: a.id, password: a.secret });
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  client.publish(deviceTopic({ province: '01', domain: 'environment', deviceId: b.id }, 'telemetry'), '{"ts":1,"seq":1}', { qos: 1 }, () => undefined);
  const verdict = await Promise.race([closed.then(() => 'disconnected'), sleep(3000).then(() => 'NOT disconnected')]);
  client.end(true);
  outcomes.push(`publish on another device's topic ${verdict}`);
  return outcomes.join('; ');
}

interface MetricsScrape {
  readonly up: boolean;
  readonly rateLimited?: number;
  readonly authFailures?: number;
  readonly lines: readonly string[];
}

async function scrapeMetrics(broker: Broker): Promise<MetricsScrape> {
  if (!broker.httpPort) return { up: false, lines: [] };
  try {
    const response = await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) return { up: false, lines: [`HTTP ${response.status}`] };
    const samples = (await response.text()).split('\n').filter((l) => l && !l.startsWith('#'));
    const sum = (pattern: RegExp) => {
      const matching = samples.filter((l) => pattern.test(l.split(/[{\s]/)[0] ?? ''));
      return matching.length ? matching.reduce((a, l) => a + (Number(l.trim().split(/\s+/).at(-1)) || 0), 0) : undefined;
    };
    const rateLimited = sum(/rate_?limit|throttl|dropped/i);
    const authFailures = sum(/auth.*fail/i);
    return {
      up: true,
      ...(rateLimited !== undefined ? { rateLimited } : {}),
      ...(authFailures !== undefined ? { authFailures } : {}),
      lines: samples.filter((l) => /rate|drop|auth|acl|throttl/i.test(l.split(/[{\s]/)[0] ?? '')),
    };
  } catch {
    return { up: false, lines: [] };
  }
}

// ---------------------------------------------------------------------------------------------
// Report

interface Report {
  readonly machine: string;
  readonly mosquittoVersion: string;
  readonly measureSeconds: number;
  readonly warmupSeconds: number;
  readonly fanIn: readonly FanInResult[];
  readonly idle: readonly IdleResult[];
  readonly security: string;
  readonly metrics: MetricsScrape;
  /** BROKER_* variables passed through from the caller's environment (e.g. BROKER_CONCURRENCY=20000). */
  readonly brokerOverrides: readonly string[];
  readonly loadAverage: { readonly start: readonly number[]; readonly end: readonly number[] };
}

function table(report: Report): string {
  const find = (broker: Broker['name'], qos: 0 | 1, mode: Load) => report.fanIn.find((r) => r.broker === broker && r.qos === qos && r.mode === mode);
  const idleOf = (broker: Broker['name']) => report.idle.find((r) => r.broker === broker);
  const rows: string[] = [];
  const row = (what: string, mosq: number | undefined, ours: number | undefined, show: (n: number) => string, target?: { text: string; pass: (ratio: number, ours: number) => boolean }) => {
    if (mosq === undefined && ours === undefined) return; // not measured in this run (--only)
    const ratio = mosq !== undefined && ours !== undefined && mosq > 0 ? ours / mosq : undefined;
    const verdict = target && ratio !== undefined && ours !== undefined ? (target.pass(ratio, ours) ? '**pass**' : '**FAIL**') : '';
    rows.push(`| ${what} | ${mosq === undefined ? '–' : show(mosq)} | ${ours === undefined ? '–' : show(ours)} | ${ratio === undefined ? '–' : `${ratio.toFixed(2)}×`} | ${target?.text ?? ''} | ${verdict} |`);
  };
  const rate = (n: number) => fmt(n);
  const ms = (n: number) => `${n < 10 ? n.toFixed(2) : fmt(n, 1)} ms`;
  const cpu = (n: number) => `${n.toFixed(2)} s`;
  const pct = (n: number) => `${n.toFixed(0)} %`;
  for (const qos of [0, 1] as const) {
    const m = find('mosquitto', qos, 'max');
    const o = find('ours', qos, 'max');
    const q1 = qos === 1;
    row(`fan-in QoS ${qos}, max: messages/s delivered`, m?.deliveredPerS, o?.deliveredPerS, rate, q1 ? { text: 'ours ≥ 0.6× Mosquitto', pass: (r) => r >= 0.6 } : undefined);
    row(`fan-in QoS ${qos}, max: broker CPU per 100,000 messages`, m?.brokerCpuPer100k, o?.brokerCpuPer100k, cpu, q1 ? { text: 'ours ≤ 1.5× Mosquitto', pass: (r) => r <= 1.5 } : undefined);
    row(`fan-in QoS ${qos}, max: broker CPU busy (one core = 100 %)`, m?.brokerCpuPercent, o?.brokerCpuPercent, pct);
    row(`fan-in QoS ${qos}, max: p50 latency`, m?.p50Ms, o?.p50Ms, ms);
    row(`fan-in QoS ${qos}, max: p99 latency`, m?.p99Ms, o?.p99Ms, ms);
  }
  for (const load of ['half', 'quarter'] as const) {
    const mh = find('mosquitto', 1, load);
    const oh = find('ours', 1, load);
    if (!mh && !oh) continue;
    const offered = mh?.offeredPerS ?? oh?.offeredPerS;
    const label = `fan-in QoS 1, ${load} load (${offered === undefined ? '?' : fmt(offered)} msg/s offered to both)`;
    row(`${label}: messages/s delivered`, mh?.deliveredPerS, oh?.deliveredPerS, rate);
    row(`${label}: p50 latency`, mh?.p50Ms, oh?.p50Ms, ms);
    row(`${label}: p99 latency`, mh?.p99Ms, oh?.p99Ms, ms, load === 'half' ? { text: 'ours ≤ 2× Mosquitto', pass: (r) => r <= 2 } : undefined);
    row(`${label}: broker CPU per 100,000 messages`, mh?.brokerCpuPer100k, oh?.brokerCpuPer100k, cpu);
    row(`${label}: broker CPU busy (one core = 100 %)`, mh?.brokerCpuPercent, oh?.brokerCpuPercent, pct);
  }
  const mi = idleOf('mosquitto');
  const oi = idleOf('ours');
  const n = oi?.requested ?? mi?.requested ?? IDLE_CONNECTIONS;
  row(`${fmt(n)} idle connections: time to connect them all`, mi?.connectSeconds, oi?.connectSeconds, (s) => `${s.toFixed(1)} s`);
  row(`${fmt(n)} idle connections: broker CPU to accept them`, mi?.connectCpuSeconds, oi?.connectCpuSeconds, cpu);
  row(`broker VmRSS as started`, mi?.rssFresh, oi?.rssFresh, (b) => `${fmt(b / 2 ** 20, 1)} MiB`);
  row(`broker VmRSS after ${IDLE_WARMUP_LOGINS} logins (the baseline)`, mi?.rssBefore, oi?.rssBefore, (b) => `${fmt(b / 2 ** 20, 1)} MiB`);
  row(`${fmt(n)} idle connections: broker VmRSS with them`, mi?.rssAfter, oi?.rssAfter, (b) => `${fmt(b / 2 ** 20, 1)} MiB`);
  row(`${fmt(n)} idle connections: memory per connection (ΔVmRSS / connections)`, mi?.bytesPerConnection, oi?.bytesPerConnection, (b) => `${fmt(b / 1000, 1)} KB`, {
    text: 'ours ≤ 20 KB',
    pass: (_r, ours) => ours <= 20_000,
  });
  return ['| measurement | Mosquitto | our broker | ours / Mosquitto | target | result |', '|---|---:|---:|---:|---|---|', ...rows].join('\n');
}

function notes(report: Report): string {
  const anyFan = report.fanIn[0];
  const losses = report.fanIn.filter((r) => r.lost > 0).map((r) => `${r.broker} QoS ${r.qos} ${r.mode}: ${fmt(r.lost)} of ${fmt(r.completed)}`);
  const m = report.metrics;
  const metrics = m.up
    ? `/metrics answered at the end of the fan-in runs: rate-limited drops ${m.rateLimited ?? 'n/a (no such series)'}, auth failures ${m.authFailures ?? 'n/a (no such series)'} (2 expected: the probe's)`
    : '/metrics did not answer (BROKER_HTTP_PORT not served by this broker build): rate limits and metrics could not be confirmed';
  const cpuLines = report.fanIn.map((r) => `${r.broker} QoS ${r.qos} ${r.mode}: broker ${r.brokerCpuPercent.toFixed(0)} % (${(r.brokerSystemShare * 100).toFixed(0)} % of it kernel), generators ${r.generatorCpuPercent.toFixed(0)} %, subscriber ${r.subscriberCpuPercent.toFixed(0)} %`);
  return [
    `- Setup: ${anyFan ? `${anyFan.devices} publishing devices (one MQTT.js connection each) over ${anyFan.generators} generator processes` : 'no fan-in run'}, ~250-byte environment readings carrying their send time, one subscriber process on \`${FILTER}\` at the run's QoS recording each message's latency (HDR histogram); ${report.warmupSeconds} s warm-up, ${report.measureSeconds} s measured per run; brokers interleaved run by run. Max runs: each connection keeps at most ${WINDOW} messages awaiting their PUBACK (QoS 1) or socket write (QoS 0), and each generator at most ${WINDOW} × its connections sent but not yet received by the subscriber (counts relayed from the subscriber every 5 ms), so neither broker can build an unbounded queue. Fixed-rate runs send on a 1 ms tick, round-robin over the connections (${Math.max(64, WINDOW)} in flight allowed per connection; a turn is skipped, and counted, when the connection's window is full or the generator fell more than 20 ms behind its schedule).`,
    `- Our broker: its own process (\`node --import tsx src/server.ts\`), every device and the subscriber logging in with secrets (scrypt, cached after the first login), ACL on, per-device rate limit ${RATE_LIMIT}/s (burst ${RATE_LIMIT}: never reached), BROKER_STORE=memory, LOG_LEVEL=warn. Mosquitto ${report.mosquittoVersion}: anonymous, no persistence, \`max_queued_messages 0\` (unlimited queue), \`set_tcp_nodelay true\`, other settings default (e.g. 20 QoS 1 messages in flight per client).`,
    `- Broker settings from the environment of this run (beyond the bench's own): ${report.brokerOverrides.length ? report.brokerOverrides.join(', ') : `none: the broker's defaults (e.g. BROKER_CONCURRENCY ${BROKER_DEFAULTS.concurrency})`}.`,
    `- Probe of our broker before the runs: ${report.security}. ${metrics}.`,
    `- Loss check (acknowledged or written by publishers vs received, after draining): ${losses.length ? losses.join('; ') : 'none lost'}. Turns skipped in the fixed-rate runs (offered rate not met): ${
      report.fanIn
        .filter((r) => r.mode !== 'max')
        .map((r) => `${r.broker} ${r.mode} ${fmt(r.skipped)}`)
        .join(', ') || 'no fixed-rate run'
    }.`,
    `- CPU share (one core = 100 %) during the measured windows: ${cpuLines.join('; ')}.`,
    `- Broker CPU is utime + stime of the broker process (/proc/PID/stat, CLK_TCK ${CLK_TCK}), all its threads. Memory per connection is VmRSS (/proc/PID/status) 5 s after the last of the idle connections, minus VmRSS before the first, divided by the connections (KB = 1,000 bytes); the baseline is taken after ${IDLE_WARMUP_LOGINS} logins of other devices, because our broker's first scrypt verify in each of its 4 libuv threads leaves a memory arena (1–16 MiB by the hash cost) that glibc keeps: a fixed cost of the process, not of a connection (see the two VmRSS rows). Load average at start ${report.loadAverage.start.map((l) => l.toFixed(2)).join(' ')}, at end ${report.loadAverage.end.map((l) => l.toFixed(2)).join(' ')}.`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

async function withBroker<T>(start: () => Promise<Broker>, fn: (broker: Broker) => Promise<T>): Promise<T> {
  const broker = await start();
  try {
    return await fn(broker);
  } catch (err) {
    const tail = broker.tail();
    if (tail) log(`${broker.name} output (tail):\n${tail}`);
    throw err;
  } finally {
    await broker.stop();
  }
}

async function profileRun(cache: Provisioned): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-broker-bench-prof-'));
  let windowUs: readonly [number, number] = [0, 0];
  let result: FanInResult | undefined;
  await withBroker(
    () => startOurs(cache, dir),
    async (broker) => {
      result = await fanIn(broker, cache, 1, PROFILE_RATE ? 'half' : 'max', PROFILE_RATE);
      windowUs = result.windowUs;
    },
  );
  const file = (await readdir(dir)).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile written in ${dir}`);
  const summary: ProfileSummary = summariseCpuProfile(JSON.parse(await readFile(join(dir, file), 'utf8')) as CpuProfile, windowUs);
  console.log(`CPU profile of our broker, fan-in QoS 1 ${PROFILE_RATE ? `at ${fmt(PROFILE_RATE)} msg/s offered` : 'max'}, ${MEASURE_S} s window (${result ? fmt(result.deliveredPerS) : '?'} msg/s delivered; the profiler itself slows it). Profile: ${join(dir, file)}\n`);
  console.log(`Sampled ${summary.totalMs.toFixed(0)} ms in the window, of which idle ${summary.idleMs.toFixed(0)} ms; shares below are of the non-idle time.\n`);
  console.log('| where (package or area) | self time | share |\n|---|---:|---:|');
  for (const g of summary.byGroup.slice(0, 15)) console.log(`| ${g.name} | ${g.ms.toFixed(0)} ms | ${g.share.toFixed(1)} % |`);
  console.log('\n| function (self time) | location | self time | share |\n|---|---|---:|---:|');
  for (const f of summary.byFunction.slice(0, 30)) console.log(`| \`${f.name}\` | ${f.location} | ${f.ms.toFixed(0)} ms | ${f.share.toFixed(1)} % |`);
  if (JSON_FILE) await writeFile(JSON_FILE, `${JSON.stringify({ result, summary }, null, 1)}\n`);
}

async function main(): Promise<void> {
  const fdLimit = Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
  if (Number.isFinite(fdLimit) && fdLimit < IDLE_CONNECTIONS + 1000) {
    log(`warning: ulimit -n is ${fdLimit}; the broker needs one descriptor per idle connection (${fmt(IDLE_CONNECTIONS)}). Raise it (ulimit -n 20000) or set BENCH_IDLE lower.`);
  }
  const start = loadavg();
  const cache = await provision(Math.max(IDLE_CONNECTIONS + IDLE_WARMUP_LOGINS, FAN_IN_DEVICES, 2));
  if (args.includes('--provision')) return;
  if (PROFILE) return profileRun(cache);

  let mosquittoVersion = '2.0';
  const fan: FanInResult[] = [];
  let security = '';
  let metrics: MetricsScrape = { up: false, lines: [] };
  // Fan-in: both brokers up at once, runs interleaved (the machine's noise drifts over minutes).
  if (ONLY !== 'idle') await withBroker(startMosq, (mosquitto) =>
    withBroker(
      () => startOurs(cache),
      async (ours) => {
        const binary = await findExecutable('mosquitto');
        // `mosquitto -h` prints its version and exits non-zero.
        if (binary) mosquittoVersion = /version\s+(\S+)/.exec(spawnSync(binary, ['-h'], { encoding: 'utf8' }).stdout)?.[1] ?? mosquittoVersion;
        security = await probeSecurity(ours, cache);
        log(`probe: ${security}`);
        for (const qos of [0, 1] as const) {
          fan.push(await fanIn(mosquitto, cache, qos, 'max'));
          fan.push(await fanIn(ours, cache, qos, 'max'));
        }
        const mosqMax = fan.find((r) => r.broker === 'mosquitto' && r.qos === 1 && r.mode === 'max') as FanInResult;
        const halfRate = HALF_RATE ?? Math.round(mosqMax.deliveredPerS / 2 / 100) * 100;
        fan.push(await fanIn(mosquitto, cache, 1, 'half', halfRate));
        fan.push(await fanIn(ours, cache, 1, 'half', halfRate));
        // Context for the half-load latency: the same at a quarter of Mosquitto's maximum.
        const quarterRate = Math.round(halfRate / 2 / 100) * 100;
        fan.push(await fanIn(mosquitto, cache, 1, 'quarter', quarterRate));
        fan.push(await fanIn(ours, cache, 1, 'quarter', quarterRate));
        metrics = await scrapeMetrics(ours);
        if (metrics.up) for (const line of metrics.lines) log(`metrics: ${line}`);
        else log('metrics: /metrics not served (BROKER_HTTP_PORT not implemented yet?)');
      },
    ),
  );
  // Idle connections: a fresh process of each broker, so the baseline is a broker that served nothing.
  const idleResults: IdleResult[] = [];
  if (ONLY !== 'fan-in') {
    idleResults.push(await withBroker(startMosq, (b) => idle(b, cache, IDLE_CONNECTIONS)));
    idleResults.push(await withBroker(() => startOurs(cache), (b) => idle(b, cache, IDLE_CONNECTIONS)));
  }

  const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const brokerOverrides = Object.entries(process.env)
    .filter(([key]) => key.startsWith('BROKER_') && !BENCH_BROKER_ENV.includes(key))
    .map(([key, value]) => `${key}=${value}`);
  const report: Report = { machine, mosquittoVersion, measureSeconds: MEASURE_S, warmupSeconds: WARMUP_S, fanIn: fan, idle: idleResults, security, metrics, brokerOverrides, loadAverage: { start, end: loadavg() } };
  console.log(`Broker: ours (Aedes, auth + ACL + rate limit + metrics) vs Mosquitto ${mosquittoVersion}, same run (${machine}; ${MEASURE_S} s per fan-in run after ${WARMUP_S} s warm-up)\n`);
  console.log(table(report));
  console.log('');
  console.log(notes(report));
  if (JSON_FILE) {
    await mkdir(dirname(JSON_FILE), { recursive: true });
    await writeFile(JSON_FILE, `${JSON.stringify(report, null, 1)}\n`);
  }
}

main().catch((err: unknown) => {
  console.error('broker bench failed:', err);
  process.exitCode = 1;
});
