import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { DeviceRegistry, generateSecret, type DeviceRecord, type NewDevice, type RegistryOpenOptions } from '@citypulse/broker/registry';
import { CodedError, type Domain } from '@citypulse/contracts';
import { pino, type Level, type Logger } from 'pino';
import { Engine, gatewayIndex, heapBytesHere, SIMULATION_DEFAULTS, type EngineOptions, type MessageSink, type SimulationStats } from './engine.js';
import type { SimulatedDevice } from './models/common.js';
import { placeDevices } from './placement.js';
import { FAULT_TYPES, type FaultType, type Scenario } from './scenario.js';
import { readSecrets, secretsFilePath, writeSecrets } from './secrets.js';
import type { FromWorker, RecordEntry, ToWorker, WorkerData } from './simulation-worker.js';
import { redactUrl } from './cli/tool-flags.js';

export { heapBytesHere, SIMULATION_DEFAULTS, type MessageSink, type SimulationStats };

/**
 * A simulation: places a scenario's devices, provisions them in the device registry, and drives
 * them with the engine (engine.ts), in this thread or, for a large real-time run, in worker threads
 * that each run a share of the connections (one process, every core).
 */

export interface SimulationOptions {
  /** Broker URL, e.g. mqtt://127.0.0.1:1883. */
  readonly mqttUrl: string;
  /** Folder of the device registry (devices.json) and of simulator-secrets.json. */
  readonly dataDir: string;
  /** Where the registry is (default: the file in dataDir); `{ store: 'redis', redisUrl }` in a cluster. */
  readonly registry?: Pick<RegistryOpenOptions, 'store' | 'redisUrl'>;
  /** A resolved scenario (see loadScenarioFile, resolveScenario, scenarioFromFlags). */
  readonly scenario: Scenario;
  readonly logger?: Logger;
  /** Wall clock, epoch ms (default Date.now). */
  readonly wallClock?: () => number;
  /** Receives every message as it is handed to MQTT (a Recorder from recording.ts). */
  readonly recorder?: MessageSink;
  /**
   * Register devices (and gateways) in the registry and log in with their secrets (default). Off
   * only for benchmarks against a broker without authentication: devices then log in with their
   * id and an empty password.
   */
  readonly provision?: boolean;
  /** Devices connecting per second at start and after a broker restart (device mode). */
  readonly connectRatePerSecond?: number;
  /**
   * Worker threads that run the connections (default "auto": one per core, up to the connections,
   * for 5,000 devices or more at a real-time speed; else 1). Under speed "max" one clock orders every
   * message, so it runs in one thread. A `wallClock` can only drive one thread.
   */
  readonly threads?: number | 'auto';
}

export interface Simulation {
  readonly devices: readonly SimulatedDevice[];
  readonly scenario: Scenario;
  /** Threads the engines run in (1: this one). */
  readonly threads: number;
  stats(): SimulationStats;
  /** Resolves when the scenario's duration has run out and everything was sent (never without a duration). */
  readonly finished: Promise<void>;
  /** Sends what the devices hold, publishes each device's offline status, disconnects cleanly and resolves when every client is closed. */
  stop(): Promise<void>;
  /** Heap the simulation's threads hold (after a full collection when run with --expose-gc), bytes. */
  heapBytes(): Promise<number>;
}

/** Devices from which "auto" spreads a real-time simulation over worker threads. */
export const THREADS_AUTO_MIN_DEVICES = 5_000;
export const MAX_THREADS = 64;

const MQTT_PROTOCOLS = ['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'];

export async function startSimulation(options: SimulationOptions): Promise<Simulation> {
  const { scenario } = options;
  checkUrl(options.mqttUrl);
  const logger = (options.logger ?? pino({ enabled: false })).child({ component: 'simulators' });
  const wallClock = options.wallClock ?? Date.now;
  const planned = placeDevices({ seed: scenario.seed, groups: scenario.groups });
  const gatewayIds = scenario.mode === 'gateway' ? Array.from({ length: scenario.gateways }, (_, i) => `sim-gw-${String(i + 1).padStart(3, '0')}`) : [];
  const threads = resolveThreads(options, planned.length, gatewayIds.length);
  const gatewayOf = (index: number) => gatewayIds[gatewayIndex(index, planned.length, gatewayIds.length)] ?? '';
  const provisioned = options.provision === false ? undefined : await provision(options.dataDir, options.registry ?? {}, planned, gatewayIds, gatewayOf, logger);
  const skip = provisioned?.disabled ?? new Set<string>();
  const devices = planned.filter((d) => !skip.has(d.id));
  const shared: SharedEngineOptions = {
    mqttUrl: options.mqttUrl,
    scenario,
    devices: planned,
    skip,
    gatewayIds,
    ...(provisioned ? { secrets: provisioned.secrets } : {}),
    ...(options.connectRatePerSecond !== undefined ? { connectRatePerSecond: options.connectRatePerSecond } : {}),
  };
  const run = threads === 1 ? await runHere({ ...shared, logger, wallClock, ...(options.recorder ? { recorder: options.recorder } : {}) }) : await runInWorkers(shared, threads, logger, options.recorder);
  logger.info(
    { scenario: scenario.name, devices: devices.length, mode: scenario.mode, connections: run.connections, threads, speed: scenario.speed, start: new Date(scenario.startMs).toISOString(), mqttUrl: redactUrl(options.mqttUrl) },
    'simulation started',
  );
  return { devices, scenario, threads, stats: run.stats, finished: run.finished, stop: run.stop, heapBytes: run.heapBytes };
}

/** How many threads run the simulation; see SimulationOptions.threads. */
export function resolveThreads(options: Pick<SimulationOptions, 'threads' | 'scenario' | 'wallClock'>, devices: number, gateways: number): number {
  const wanted = options.threads ?? 'auto';
  const connections = Math.max(1, gateways > 0 ? gateways : devices);
  if (wanted === 'auto') {
    if (options.scenario.speed === 'max' || options.wallClock || devices < THREADS_AUTO_MIN_DEVICES) return 1;
    return Math.max(1, Math.min(availableParallelism(), connections));
  }
  if (!Number.isInteger(wanted) || wanted < 1 || wanted > MAX_THREADS) throw new CodedError('E_CONFIG', `threads ${String(wanted)} must be "auto" or a whole number from 1 to ${MAX_THREADS}`);
  if (wanted > 1 && options.scenario.speed === 'max') throw new CodedError('E_CONFIG', `threads ${wanted} needs a real-time speed: under speed "max" one clock orders every message, so it runs in one thread`);
  if (wanted > 1 && options.wallClock) throw new CodedError('E_CONFIG', `threads ${wanted}: a custom wall clock can only drive one thread`);
  return Math.min(wanted, connections);
}

interface Run {
  readonly connections: number;
  readonly stats: () => SimulationStats;
  readonly finished: Promise<void>;
  readonly stop: () => Promise<void>;
  readonly heapBytes: () => Promise<number>;
}

/** What every thread's engine gets alike. */
export type SharedEngineOptions = Omit<EngineOptions, 'logger' | 'wallClock' | 'recorder' | 'share'>;

async function runHere(options: EngineOptions): Promise<Run> {
  const engine = new Engine(options);
  await engine.start();
  let stopped: Promise<void> | undefined;
  return { connections: engine.linkCount, stats: () => engine.stats(), finished: engine.finished, stop: () => (stopped ??= engine.stop()), heapBytes: async () => heapBytesHere() };
}

const WORKER_URL = new URL('./simulation-worker-entry.mjs', import.meta.url);

/**
 * Runs the engines in worker threads, each owning every count-th connection. This thread adds up
 * their stats, logs their log lines through its own logger, and merges what they publish into the
 * recorder in time order.
 */
async function runInWorkers(options: SharedEngineOptions, count: number, logger: Logger, recorder: MessageSink | undefined): Promise<Run> {
  const latest: (SimulationStats | undefined)[] = Array.from({ length: count }, () => undefined);
  const merge = recorder ? new RecordMerge(recorder, count) : undefined;
  const started: Promise<number>[] = [];
  const finishedEach: Promise<void>[] = [];
  const stoppedEach: Promise<void>[] = [];
  const memoryWaiters: ((bytes: number) => void)[][] = Array.from({ length: count }, () => []);
  const workers: Worker[] = [];
  const { secrets, skip, ...rest } = options;
  for (let index = 0; index < count; index++) {
    const data: WorkerData = { ...rest, skip: [...(skip ?? [])], secrets: secrets ? [...secrets] : [], share: { index, count }, logLevel: logger.level, record: recorder !== undefined };
    const worker = new Worker(WORKER_URL, { workerData: data });
    workers.push(worker);
    let onStarted: (links: number) => void = () => undefined;
    let onFailed: (err: Error) => void = () => undefined;
    let onFinished: () => void = () => undefined;
    let onStopped: () => void = () => undefined;
    started.push(
      new Promise<number>((resolve, reject) => {
        onStarted = resolve;
        onFailed = reject;
      }),
    );
    finishedEach.push(new Promise<void>((resolve) => (onFinished = resolve)));
    stoppedEach.push(new Promise<void>((resolve) => (onStopped = resolve)));
    const gone = () => {
      merge?.close(index);
      onStopped();
      for (const waiter of memoryWaiters[index]?.splice(0) ?? []) waiter(0);
    };
    worker.on('message', (message: FromWorker) => {
      switch (message.type) {
        case 'started':
          onStarted(message.links);
          break;
        case 'stats':
          latest[index] = message.stats;
          break;
        case 'record':
          merge?.add(index, message.entries, message.watermark);
          break;
        case 'log':
          relog(logger, message.line, index);
          break;
        case 'memory':
          for (const waiter of memoryWaiters[index]?.splice(0) ?? []) waiter(message.bytes);
          break;
        case 'finished':
          latest[index] = message.stats;
          onFinished();
          break;
        case 'stopped':
          latest[index] = message.stats;
          gone();
          break;
        case 'failed':
          onFailed(new CodedError(message.code, message.message));
          break;
      }
    });
    worker.on('error', (err) => {
      logger.error({ err, thread: index }, 'simulation thread failed');
      onFailed(err);
      gone();
    });
    worker.on('exit', gone);
  }
  let connections: number;
  try {
    connections = (await Promise.all(started)).reduce((a, b) => a + b, 0);
  } catch (err) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw err;
  }

  const stop = async () => {
    for (const worker of workers) worker.postMessage({ type: 'stop' } satisfies ToWorker);
    // Each engine bounds its own stop; past that (and a margin) the thread is ended.
    const timeoutMs = 4 * SIMULATION_DEFAULTS.stopTimeoutMs + 5_000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(stoppedEach), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    await Promise.all(workers.map((w) => w.terminate()));
    merge?.drain();
  };
  let stopped: Promise<void> | undefined;
  return {
    connections,
    stats: () => aggregate(latest, options.scenario),
    finished: Promise.all(finishedEach).then(() => undefined),
    stop: () => (stopped ??= stop()),
    heapBytes: async () => {
      const here = heapBytesHere();
      const there = await Promise.all(
        workers.map(
          (worker, index) =>
            new Promise<number>((resolve) => {
              memoryWaiters[index]?.push(resolve);
              worker.postMessage({ type: 'memory' } satisfies ToWorker);
            }),
        ),
      );
      return there.reduce((a, b) => a + b, here);
    },
  };
}

/** One set of stats from the threads' latest reports. */
function aggregate(parts: readonly (SimulationStats | undefined)[], scenario: Scenario): SimulationStats {
  const faults = Object.fromEntries(FAULT_TYPES.map((t) => [t, 0])) as Record<FaultType, number>;
  const sum = { devices: 0, connected: 0, connections: 0, connectionsUp: 0, published: 0, readings: 0, buffered: 0, lost: 0, errors: 0 };
  let scenarioMs = scenario.startMs;
  let lagMs = 0;
  for (const part of parts) {
    if (!part) continue;
    for (const key of Object.keys(sum) as (keyof typeof sum)[]) sum[key] += part[key];
    for (const type of FAULT_TYPES) faults[type] += part.faults[type];
    scenarioMs = Math.max(scenarioMs, part.scenarioMs);
    lagMs = Math.max(lagMs, part.lagMs);
  }
  const { durationMs, startMs } = scenario;
  return { ...sum, faults, scenarioMs, lagMs, progress: durationMs === undefined ? undefined : Math.min(1, Math.max(0, (scenarioMs - startMs) / durationMs)) };
}

/** A worker's pino line, logged again through this thread's logger (level, fields and message kept). */
function relog(logger: Logger, line: string, thread: number): void {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return;
  }
  const { level, msg, time: _time, pid: _pid, hostname: _hostname, ...fields } = record;
  const label = (typeof level === 'number' ? pino.levels.labels[level] : undefined) as Level | undefined;
  if (!label) return;
  logger[label]({ ...fields, thread }, typeof msg === 'string' ? msg : '');
}

/**
 * Merges the threads' published messages into one recording in time order. Each thread sends its
 * messages in order with a watermark (it will send nothing older); a message is written once no
 * other thread can still send an older one.
 */
export class RecordMerge {
  readonly #sink: MessageSink;
  readonly #queues: RecordEntry[][];
  readonly #heads: number[];
  readonly #watermarks: number[];

  constructor(sink: MessageSink, threads: number) {
    this.#sink = sink;
    this.#queues = Array.from({ length: threads }, () => []);
    this.#heads = Array.from({ length: threads }, () => 0);
    this.#watermarks = Array.from({ length: threads }, () => -Infinity);
  }

  add(thread: number, entries: readonly RecordEntry[], watermark: number): void {
    const queue = this.#queues[thread] as RecordEntry[];
    for (const entry of entries) queue.push(entry);
    this.#watermarks[thread] = Math.max(this.#watermarks[thread] as number, watermark);
    this.#write(false);
  }

  /** The thread sends nothing more. */
  close(thread: number): void {
    this.#watermarks[thread] = Infinity;
    this.#write(false);
  }

  /** Everything left, in order (at stop). */
  drain(): void {
    this.#write(true);
  }

  #write(all: boolean): void {
    const queues = this.#queues;
    const heads = this.#heads;
    for (;;) {
      let best = -1;
      let bestAt = Infinity;
      for (let t = 0; t < queues.length; t++) {
        const entry = (queues[t] as RecordEntry[])[heads[t] as number];
        if (entry && entry.at < bestAt) {
          best = t;
          bestAt = entry.at;
        }
      }
      if (best < 0) return;
      // A thread with nothing queued may still send something older than bestAt, unless its watermark says not.
      if (!all && queues.some((queue, t) => (heads[t] as number) >= queue.length && (this.#watermarks[t] as number) < bestAt)) return;
      const queue = queues[best] as RecordEntry[];
      this.#sink.write(queue[heads[best] as number] as RecordEntry);
      const head = (heads[best] as number) + 1;
      if (head >= 4096 && head * 2 >= queue.length) {
        queue.splice(0, head);
        heads[best] = 0;
      } else heads[best] = head;
    }
  }
}

interface Provisioned {
  readonly secrets: Map<string, string>;
  readonly disabled: Set<string>;
}

/**
 * Registers what is missing from the registry or differs from the plan, in one registry write
 * (each new secret costs a scrypt hash, so devices already in place are left alone). Devices behind a
 * gateway get no secret; the gateways do. Devices an operator disabled are not touched.
 */
async function provision(
  dataDir: string,
  store: Pick<RegistryOpenOptions, 'store' | 'redisUrl'>,
  devices: readonly SimulatedDevice[],
  gatewayIds: readonly string[],
  gatewayOf: (index: number) => string,
  logger: Logger,
): Promise<Provisioned> {
  const file = secretsFilePath(dataDir);
  const registry = await DeviceRegistry.open(dataDir, { ...store, logger });
  try {
    const secrets = await readSecrets(file);
    let changed = false;
    for (const id of gatewayIds) {
      if (!secrets.has(id)) {
        secrets.set(id, generateSecret());
        changed = true;
      }
    }
    const missingGateways = [];
    for (const id of gatewayIds) {
      const secret = secrets.get(id) ?? '';
      if (!(await registry.authenticate(id, secret))) missingGateways.push(id);
    }
    const disabled = new Set<string>();
    const missing: NewDevice[] = [];
    devices.forEach((device, index) => {
      const gateway = gatewayIds.length > 0 ? gatewayOf(index) : undefined;
      const record = registry.device(device.id);
      if (record && !record.enabled) {
        disabled.add(device.id);
        return;
      }
      if (record && matchesPlan(record, device, gateway) && (gateway !== undefined || secrets.has(device.id))) return;
      if (gateway === undefined && !secrets.has(device.id)) {
        secrets.set(device.id, generateSecret());
        changed = true;
      }
      missing.push(toNewDevice(device, gateway === undefined ? secrets.get(device.id) : undefined, gateway));
    });
    if (disabled.size > 0) logger.warn({ devices: [...disabled].slice(0, 20), count: disabled.size }, 'devices disabled in the registry are not simulated');
    // Secrets first: a crash between the writes leaves secrets without hashes (re-provisioned
    // next start), never hashes whose secrets are lost.
    if (changed) await writeSecrets(file, secrets);
    for (const id of missingGateways) await registry.upsertService(id, 'gateway', secrets.get(id));
    if (missing.length > 0) await registry.upsertDevices(missing);
    if (missing.length + missingGateways.length > 0) {
      logger.info({ provisioned: missing.length, gateways: missingGateways.length, reused: devices.length - missing.length - disabled.size }, 'devices provisioned');
    }
    return { secrets, disabled };
  } finally {
    registry.close();
  }
}

function toNewDevice(device: SimulatedDevice, secret: string | undefined, gateway: string | undefined): NewDevice {
  return {
    id: device.id,
    province: device.province,
    domain: device.domain,
    kind: device.kind,
    name: device.name,
    location: device.location,
    ...(device.profile ? { profile: device.profile } : {}),
    ...(secret !== undefined ? { secret } : {}),
    ...(gateway !== undefined ? { gateway } : {}),
  };
}

function matchesPlan(record: DeviceRecord, device: SimulatedDevice, gateway: string | undefined): boolean {
  return (
    record.province === device.province &&
    record.domain === device.domain &&
    record.kind === device.kind &&
    record.name === device.name &&
    record.location[0] === device.location[0] &&
    record.location[1] === device.location[1] &&
    record.gateway === gateway &&
    (gateway !== undefined || record.secretHash !== undefined) &&
    record.profile?.ratedPowerVA === device.profile?.ratedPowerVA &&
    record.profile?.nominalPhaseVoltageV === device.profile?.nominalPhaseVoltageV
  );
}

function checkUrl(text: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CodedError('E_CONFIG', `mqttUrl "${text}" is not a URL (e.g. mqtt://127.0.0.1:1883)`);
  }
  if (!MQTT_PROTOCOLS.includes(url.protocol)) throw new CodedError('E_CONFIG', `mqttUrl "${redactUrl(text)}" must use mqtt://, mqtts://, ws:// or wss://`);
}

export type { Domain, SimulatedDevice };
