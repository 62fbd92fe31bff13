/**
 * Process plumbing of the ingest bench: the broker and ingest as their own Node processes
 * (`node --import tsx src/server.ts`, so /proc accounting is theirs alone), the forked load
 * generators over IPC, CPU time from /proc, Prometheus scrapes and point counts in InfluxDB.
 */
import { fork, spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { DeviceRegistry } from '@citypulse/broker/registry';
import { freePort, SERVICE_NODE_FLAGS } from '@citypulse/infra';
import { fleetDevice } from './fleet.js';
import type { GeneratorCommand, GeneratorConnection, GeneratorReply } from './protocol.js';

const TSX = import.meta.resolve('tsx');
const INGEST_DIR = fileURLToPath(new URL('..', import.meta.url));
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime + stime of a process (/proc/PID/stat fields 14 and 15), seconds; NaN once it is gone. */
/**
 * What a bench started, undone in reverse order on success, failure, Ctrl+C or SIGTERM: push a
 * step onto `cleanups` as each thing starts; `cleanup()` runs them once.
 */
export function exitCleanup(log: (line: string) => void): { cleanups: (() => Promise<unknown>)[]; cleanup: () => Promise<void>; cleaning: () => boolean } {
  const cleanups: (() => Promise<unknown>)[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      for (const step of cleanups.splice(0).reverse()) await step().catch((err: unknown) => log(`cleanup: ${err instanceof Error ? err.message : String(err)}`));
    })();
    return cleaning;
  };
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(signal, () => {
      log(`${signal}: stopping every process the bench started …`);
      void cleanup().then(() => process.exit(code));
    });
  }
  return { cleanups, cleanup, cleaning: () => cleaning !== undefined };
}

const BROKER_DIR = fileURLToPath(new URL('../../broker', import.meta.url));

/**
 * The platform's broker as its own process (`pnpm start` in broker/) on a free MQTT port, the
 * other listeners off, waited for until it accepts connections. `env` adds settings (store, rate
 * limits, metrics port) or overrides these.
 */
export async function startBrokerService(dataDir: string, env: Readonly<Record<string, string>> = {}): Promise<{ service: Service; port: number; url: string }> {
  const port = await freePort();
  const service = startService('broker', BROKER_DIR, {
    DATA_DIR: dataDir,
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: String(port),
    MQTT_WS_PORT: '0',
    MQTT_TLS_PORT: '0',
    MQTT_WSS_PORT: '0',
    BROKER_HTTP_PORT: '0',
    LOG_LEVEL: 'warn',
    ...env,
  });
  try {
    await waitUntil(service, `MQTT on port ${port}`, () => listening(port));
  } catch (err) {
    await service.stop();
    throw err;
  }
  return { service, port, url: `mqtt://127.0.0.1:${port}` };
}

export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  if (!stat) return Number.NaN;
  const afterName = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(afterName[11]) + Number(afterName[12])) / CLK_TCK;
}

/** VmRSS of a process, bytes. */
export async function residentBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN) * 1024;
}

// ---------------------------------------------------------------------------------------------
// Services (broker, ingest)

export interface Service {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** The last lines it printed (its log level is warn). */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts `node <SERVICE_NODE_FLAGS> --import tsx src/server.ts` in a package folder with `env` added to ours. It runs
 * supervised (CITYPULSE_SUPERVISED=1, stdin a pipe): if the bench dies, the service sees its stdin
 * close and stops by itself.
 */
export function startService(name: string, cwd: string, env: Readonly<Record<string, string>>): Service {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, CITYPULSE_SUPERVISED: '1' };
  delete childEnv.NODE_OPTIONS;
  // BENCH_PROFILE_DIR=/some/dir: each service writes V8 CPU profiles (one per thread: the largest is
  // the main thread, the other tsx's loader) into <dir>/<name>/ when it stops.
  const profileDir = process.env.BENCH_PROFILE_DIR;
  const profile = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, name)}`] : [];
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, ...profile, '--import', TSX, 'src/server.ts'], { cwd, env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
  let text = '';
  const keep = (chunk: Buffer) => {
    text = (text + chunk.toString()).slice(-12_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let stopping = false;
  // A service that dies mid-run says so at once, with what it printed last (a run would otherwise just stall).
  child.once('exit', (code, signal) => {
    if (!stopping) console.error(`[bench] ${name} (pid ${child.pid}) exited unexpectedly (code ${code}, signal ${signal}); its last output:\n${text.slice(-4000)}`);
  });
  return {
    name,
    pid: child.pid as number,
    child,
    output: () => text,
    stop: () => {
      stopping = true;
      return ended(child, () => child.kill('SIGTERM'), 30_000);
    },
  };
}

/** Polls until `ready` holds; fails early when the service exits, with its output. */
export async function waitUntil(service: Service, what: string, ready: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (service.child.exitCode !== null) throw new Error(`${service.name} exited (${service.child.exitCode}) before ${what}:\n${service.output()}`);
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${service.name}: no ${what} within ${timeoutMs / 1000} s:\n${service.output()}`);
    await sleep(100);
  }
}

/** Registers devices 0…count−1 of the fleet with fresh secrets: one MQTT connection each, as the generators open them. */
export async function provisionFleetDevices(registry: DeviceRegistry, count: number): Promise<GeneratorConnection[]> {
  const connections: GeneratorConnection[] = [];
  for (let from = 0; from < count; from += 500) {
    const batch = Array.from({ length: Math.min(500, count - from) }, (_, k) => fleetDevice(from + k));
    const created = await registry.upsertDevices(batch.map((d) => ({ id: d.id, province: d.province, domain: d.domain, kind: d.kind, location: d.location, ...(d.profile ? { profile: d.profile } : {}) })));
    created.forEach(({ id, secret }, k) => connections.push({ clientId: id, username: id, password: secret as string, devices: [from + k] }));
  }
  return connections;
}

export interface IngestServiceOptions {
  readonly dataDir: string;
  readonly mqttUrl: string;
  readonly ingestSecret: string;
  readonly influxUrl: string;
  readonly database: string;
  /** More variables (INGEST_SHARD, INGEST_CLIENT_ID, …). */
  readonly env?: Readonly<Record<string, string>>;
  /** Name in the progress lines ("ingest", "ingest 1/2"). */
  readonly label: string;
  readonly log: (line: string) => void;
  /** Where the bench keeps its clean-up steps (exitCleanup). */
  readonly cleanups: (() => Promise<unknown>)[];
}

/**
 * Starts ingest (`src/server.ts` of this package) as its own process and waits until it has
 * subscribed (/metrics answers once startIngest returned) and is ready. Ingest exits when its
 * first connection fails (e.g. a CONNACK slower than 10 s on a loaded machine): one more try.
 */
export async function startIngestService(options: IngestServiceOptions, attempt = 1): Promise<{ service: Service; metricsUrl: string }> {
  const httpPort = await freePort();
  const service = startService('ingest', INGEST_DIR, {
    DATA_DIR: options.dataDir,
    MQTT_URL: options.mqttUrl,
    INGEST_MQTT_PASSWORD: options.ingestSecret,
    ...options.env,
    INFLUX_URL: options.influxUrl,
    INFLUX_DATABASE: options.database,
    INGEST_HTTP_HOST: '127.0.0.1',
    INGEST_HTTP_PORT: String(httpPort),
    LOG_LEVEL: 'warn',
  });
  options.cleanups.push(() => service.stop());
  const metricsUrl = `http://127.0.0.1:${httpPort}/metrics`;
  try {
    await waitUntil(service, '/metrics', async () => (await scrape(metricsUrl)).size > 0);
    await waitUntil(service, '/readyz', async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok);
  } catch (err) {
    await service.stop();
    if (attempt > 1) throw err;
    options.log(`${options.label} did not start (${(err instanceof Error ? err.message : String(err)).split('\n')[0]}); trying once more. Its output:\n${service.output()}`);
    return startIngestService(options, attempt + 1);
  }
  return { service, metricsUrl };
}

export async function listening(port: number): Promise<boolean> {
  const socket = createConnection({ port, host: '127.0.0.1' });
  try {
    await once(socket, 'connect'); // rejects on 'error'
    return true;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

/** Asks a child process to end (`ask`), kills it after `graceMs`, resolves once it is gone. */
async function ended(child: ChildProcess, ask: () => void, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = once(child, 'exit');
  ask();
  const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    await gone;
  } finally {
    clearTimeout(killer);
  }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text

/** A scrape: every sample by its name and labels as written (`name{label="x"}`). */
export type Samples = ReadonlyMap<string, number>;

export async function scrape(url: string, timeoutMs = 10_000): Promise<Samples> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** Sum of every sample of a family (all label sets). */
export function total(samples: Samples, name: string): number {
  let sum = 0;
  for (const [key, value] of samples) if (key === name || key.startsWith(`${name}{`)) sum += value;
  return sum;
}

export interface BucketCounts {
  /** Upper bounds, seconds, ascending; the last is Infinity. */
  readonly bounds: readonly number[];
  /** Cumulative counts per bound. */
  readonly cumulative: readonly number[];
  readonly count: number;
}

/** A histogram's cumulative buckets, minus those of an earlier scrape (a window's own observations). */
export function histogramBetween(before: Samples, after: Samples, name: string): BucketCounts {
  const rows: [number, number][] = [];
  for (const [key, value] of after) {
    const le = key.startsWith(`${name}_bucket{`) ? /le="([^"]+)"/.exec(key)?.[1] : undefined;
    if (le === undefined) continue;
    rows.push([le === '+Inf' ? Infinity : Number(le), value - (before.get(key) ?? 0)]);
  }
  rows.sort((a, b) => a[0] - b[0]);
  return { bounds: rows.map((r) => r[0]), cumulative: rows.map((r) => r[1]), count: rows.at(-1)?.[1] ?? 0 };
}

export interface Quantile {
  /** Upper bound of the bucket holding the quantile: what the histogram proves (q of them were at most this). */
  readonly bound: number;
  /** Linear interpolation inside that bucket, as Prometheus' histogram_quantile does: an estimate. */
  readonly estimate: number;
}

export function quantileOf(h: BucketCounts, q: number): Quantile | undefined {
  if (h.count <= 0) return undefined;
  const rank = q * h.count;
  for (let i = 0; i < h.bounds.length; i++) {
    const cum = h.cumulative[i] as number;
    if (cum < rank) continue;
    const upper = h.bounds[i] as number;
    const lower = i === 0 ? 0 : (h.bounds[i - 1] as number);
    const below = i === 0 ? 0 : (h.cumulative[i - 1] as number);
    if (upper === Infinity) return { bound: Infinity, estimate: lower };
    return { bound: upper, estimate: lower + ((upper - lower) * (rank - below)) / Math.max(1, cum - below) };
  }
  return undefined;
}

/** Share of the observations at most `bound` (which must be one of the histogram's bounds). */
export function shareAtMost(h: BucketCounts, bound: number): number | undefined {
  const i = h.bounds.indexOf(bound);
  return i < 0 || h.count <= 0 ? undefined : (h.cumulative[i] as number) / h.count;
}

// ---------------------------------------------------------------------------------------------
// InfluxDB

/** Points of the fleet's three measurements in a database's raw retention policy (counted on `seq`, which every reading has). */
export async function countReadings(influxUrl: string, database: string, retentionPolicy = 'raw'): Promise<number> {
  const form = new URLSearchParams({ db: database, q: `SELECT count("seq") FROM "${retentionPolicy}"./^(traffic|environment|energy)$/` });
  const response = await fetch(`${influxUrl}/query`, { method: 'POST', body: form, signal: AbortSignal.timeout(600_000) });
  const body = (await response.json()) as { results?: { series?: { values: [unknown, number][] }[]; error?: string }[]; error?: string };
  const result = body.results?.[0];
  const error = body.error ?? result?.error;
  if (!response.ok || error) throw new Error(`count in ${database}: ${error ?? `HTTP ${response.status}`}`);
  return (result?.series ?? []).reduce((sum, s) => sum + s.values.reduce((a, [, n]) => a + n, 0), 0);
}

// ---------------------------------------------------------------------------------------------
// Load generators (generator.ts) over IPC

/**
 * The orchestrator's end of a forked bench child (a load generator, publishers, clients, a
 * baseline server): commands out, typed replies in; a `fatal` reply or an exit fails what waits.
 */
export class BenchChild<C extends { readonly type: string }, R extends { readonly type: string }> {
  readonly child: ChildProcess;
  readonly label: string;
  #replies: R[] = [];
  #wake: (() => void) | undefined;
  #dead: Error | undefined;

  /** `execArgv` defaults to running TypeScript through tsx. */
  constructor(label: string, script: URL, execArgv: readonly string[] = ['--import', TSX]) {
    this.label = label;
    this.child = fork(fileURLToPath(script), [], { execArgv: [...execArgv], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (message: R | { type: 'fatal'; message: string }) => {
      if (message.type === 'fatal') this.#dead = new Error(`${label}: ${(message as { message: string }).message}`);
      else this.#replies.push(message as R);
      this.#wake?.();
    });
    this.child.on('error', () => undefined); // a send after exit; the exit below says what happened
    this.child.on('exit', (code, signal) => {
      this.#dead ??= new Error(`${label} exited (${signal ?? code})`);
      this.#wake?.();
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  send(command: C): void {
    if (this.child.connected) this.child.send(command, () => undefined);
  }

  /** Sends `command` and waits for the first reply of type `type` after it. */
  async ask<T extends R['type']>(command: C, type: T, timeoutMs = 120_000): Promise<Extract<R, { type: T }>> {
    this.#replies = [];
    this.send(command);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.#replies.find((r) => r.type === type);
      if (found) return found as Extract<R, { type: T }>;
      if (this.#dead) throw this.#dead;
      if (Date.now() > deadline) throw new Error(`${this.label}: no '${type}' within ${timeoutMs / 1000} s`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 1000).unref();
      });
    }
  }

  /** Sends the child its close command, kills it after 15 s; resolves once it is gone. */
  close(command: C): Promise<void> {
    return ended(this.child, () => this.send(command), 15_000);
  }
}

/** A load generator (generator.ts). */
export type Generator = BenchChild<GeneratorCommand, GeneratorReply>;
export function startGenerator(label: string): Generator {
  return new BenchChild<GeneratorCommand, GeneratorReply>(label, new URL('./generator.ts', import.meta.url));
}
