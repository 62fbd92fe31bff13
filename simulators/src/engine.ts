import { deviceTopic, MAX_BATCH_READINGS, type DeviceStatusPayload, type Reading } from '@citypulse/contracts';
import { connect, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { applyFaults, faultsForDevice, initialFaultState, type DeviceFaults, type FaultState } from './faults.js';
import { initialState, type DeviceState, type ModelOptions, type SimulatedDevice } from './models/common.js';
import { nextReading } from './models/index.js';
import { deriveSeed, Rng } from './random.js';
import { FAULT_TYPES, type FaultType, type Scenario } from './scenario.js';
import { buildWorld } from './world.js';

/**
 * The engine that drives simulated devices on the scenario clock. Each device measures on its own
 * fixed grid (start + offset + k·interval); readings come from the pure models, go through the
 * faults, and leave over MQTT, one connection per device or a few gateway connections that publish
 * for many devices. A device that cannot send (offline, or its connection's in-flight window is
 * full) keeps its readings and sends the backlog in the contract's batch form when it can.
 *
 * One engine runs in one thread; a large simulation runs one per worker thread, each with a share
 * of the connections (see simulation.ts and simulation-worker.ts).
 */

export const SIMULATION_DEFAULTS = {
  keepaliveS: 30,
  connectTimeoutMs: 10_000,
  reconnectMinMs: 1_000,
  reconnectMaxMs: 30_000,
  stopTimeoutMs: 10_000,
  /** QoS 1 messages in flight per device connection, and per gateway connection. */
  deviceWindow: 50,
  gatewayWindow: 2_000,
  connectRatePerSecond: 500,
  /** A batch stays well under the contract's 256 KiB payload limit. */
  maxBatchBytes: 200_000,
  /** Devices handled per turn of the event loop before I/O gets a turn. */
  ticksPerTurn: 2_000,
} as const;

export interface MessageSink {
  write(message: { readonly at: number; readonly topic: string; readonly qos: 0 | 1 | 2; readonly retain: boolean; readonly payload: string }): void;
}

export interface SimulationStats {
  readonly devices: number;
  /** Devices whose connection (their own or their gateway's) is up. */
  readonly connected: number;
  readonly connections: number;
  readonly connectionsUp: number;
  /** MQTT messages accepted by the broker (PUBACK for QoS 1, written for QoS 0). */
  readonly published: number;
  /** Readings inside those messages (a batch carries many). */
  readonly readings: number;
  /** Readings waiting in device buffers. */
  readonly buffered: number;
  /** Readings lost: buffer overflow, or a dropout with `lose`. */
  readonly lost: number;
  /** Connection failures, refused logins, failed publishes. */
  readonly errors: number;
  readonly faults: Readonly<Record<FaultType, number>>;
  /** The scenario clock, epoch ms. */
  readonly scenarioMs: number;
  /** How far the schedule runs behind the scenario clock, ms (0 when it keeps up). */
  readonly lagMs: number;
  /** Share of the scenario's duration done, 0–1; undefined without a duration. */
  readonly progress: number | undefined;
}

export interface EngineOptions {
  readonly mqttUrl: string;
  readonly scenario: Scenario;
  /** Every planned device, in plan order: connections and schedule offsets follow this order. */
  readonly devices: readonly SimulatedDevice[];
  /** Ids of planned devices not to simulate (disabled in the registry). */
  readonly skip?: ReadonlySet<string>;
  /** Gateway connection ids (gateway mode), else empty. */
  readonly gatewayIds: readonly string[];
  /** Passwords by connection id (gateway or device); empty passwords without. */
  readonly secrets?: ReadonlyMap<string, string>;
  /** Of the connections (gateways, or devices in device mode), this engine runs those numbered `index` modulo `count`. */
  readonly share?: { readonly index: number; readonly count: number };
  readonly recorder?: MessageSink;
  readonly connectRatePerSecond?: number;
  readonly logger: Logger;
  readonly wallClock: () => number;
}

/** The gateway a device (by plan index) connects through: devices split into equal runs of the plan. */
export function gatewayIndex(index: number, devices: number, gateways: number): number {
  return Math.floor((index * gateways) / devices);
}

/** One simulated device as the engine drives it (plain fields: there may be 50,000 of them). */
interface Runner {
  readonly device: SimulatedDevice;
  readonly index: number;
  readonly intervalMs: number;
  readonly qos: 0 | 1;
  readonly telemetryTopic: string;
  readonly statusTopic: string;
  readonly skewMs: number;
  readonly model: ModelOptions;
  readonly faults: DeviceFaults | undefined;
  readonly faultState: FaultState | undefined;
  readonly link: Link;
  state: DeviceState;
  nextDue: number;
  backlog: Reading[];
  /** Status to publish when the link can (gateway mode and dropouts). */
  pendingStatus: 'online' | 'offline' | undefined;
  /** Inside a dropout (gateway mode: the device is silent while its gateway stays up). */
  droppedOut: boolean;
}

/** One MQTT connection: a device's own, or a gateway's. */
interface Link {
  readonly id: string;
  readonly username: string;
  readonly password: string;
  readonly members: Runner[];
  readonly window: number;
  readonly jitter: Rng;
  client: MqttClient | undefined;
  connected: boolean;
  inflight: number;
  failures: number;
  reconnectTimer: NodeJS.Timeout | undefined;
  /** Wall time before which a dropout keeps the link down. */
  holdUntil: number;
  /** Members with a backlog. */
  readonly pending: Set<Runner>;
  /** Members with a status to publish. */
  readonly statusPending: Set<Runner>;
  /** A periodic gateway upload is under way: held readings go out until none is left. */
  uploading: boolean;
}

export class Engine {
  readonly finished: Promise<void>;
  readonly #options: EngineOptions;
  readonly #scenario: Scenario;
  readonly #logger: Logger;
  readonly #wallClock: () => number;
  readonly #runners: Runner[] = [];
  readonly #links: Link[] = [];
  readonly #heap: Runner[] = [];
  readonly #endMs: number;
  readonly #counters = { published: 0, readings: 0, lost: 0, errors: 0, buffered: 0 };
  readonly #faultCounts = Object.fromEntries(FAULT_TYPES.map((t) => [t, 0])) as Record<FaultType, number>;
  #resolveFinished: () => void = () => undefined;
  #wallStart = 0;
  #virtualNow: number;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  readonly #uploadMs: number;
  #nextUploadAt = Infinity;
  #loopTimer: NodeJS.Timeout | undefined;
  #wakeMax: (() => void) | undefined;
  #linksUp = 0;
  #devicesUp = 0;
  /** The schedule has started (under speed "max", only once every link is up). */
  #running = false;

  constructor(options: EngineOptions) {
    this.#options = options;
    this.#scenario = options.scenario;
    this.#logger = options.logger;
    this.#wallClock = options.wallClock;
    this.#virtualNow = this.#scenario.startMs;
    this.#uploadMs = options.scenario.mode === 'gateway' ? options.scenario.uploadMs : 0;
    this.#nextUploadAt = this.#scenario.startMs + this.#uploadMs;
    this.#endMs = this.#scenario.durationMs === undefined ? Infinity : this.#scenario.startMs + this.#scenario.durationMs;
    this.finished = new Promise((resolve) => {
      this.#resolveFinished = resolve;
    });

    const scenario = this.#scenario;
    const { devices, gatewayIds, secrets, skip } = options;
    const share = options.share ?? { index: 0, count: 1 };
    const owned = (connection: number) => connection % share.count === share.index;
    // The world comes from every planned device, so a device disabled (or run by another thread)
    // changes nobody else's readings.
    const world = buildWorld({ seed: scenario.seed, events: scenario.events, devices });
    const groupOf = new Map(scenario.groups.map((g) => [`${g.province}/${g.domain}`, g]));
    const models = new Map<number, ModelOptions>();
    const modelFor = (intervalMs: number): ModelOptions => {
      let model = models.get(intervalMs);
      if (!model) {
        model = { seed: scenario.seed, periodSeconds: Math.max(1, Math.round(intervalMs / 1000)), world };
        models.set(intervalMs, model);
      }
      return model;
    };
    const secretOf = (id: string) => secrets?.get(id) ?? '';
    const gatewayLinks = gatewayIds.map((id, g) => (owned(g) ? this.#newLink(id, secretOf(id), SIMULATION_DEFAULTS.gatewayWindow) : undefined));
    for (const link of gatewayLinks) if (link) this.#links.push(link);

    devices.forEach((device, index) => {
      if (skip?.has(device.id)) return;
      const gateway = gatewayIds.length > 0 ? gatewayIndex(index, devices.length, gatewayIds.length) : undefined;
      if (!owned(gateway ?? index)) return;
      const intervalMs = groupOf.get(`${device.province}/${device.domain}`)?.intervalMs ?? 60_000;
      const link = gateway !== undefined ? (gatewayLinks[gateway] as Link) : this.#newLink(device.id, secretOf(device.id), SIMULATION_DEFAULTS.deviceWindow);
      if (gateway === undefined) this.#links.push(link);
      const faults = faultsForDevice(device, scenario.seed, scenario.faults);
      const address = { province: device.province, domain: device.domain, deviceId: device.id };
      // Spread first readings over one interval (golden-ratio steps): devices never fire together.
      const offset = Math.floor(((index * 0.618_033_988_75) % 1) * intervalMs);
      const runner: Runner = {
        device,
        index,
        intervalMs,
        qos: scenario.qos[device.domain],
        telemetryTopic: deviceTopic(address, 'telemetry'),
        statusTopic: deviceTopic(address, 'status'),
        skewMs: clockSkew(scenario, device),
        model: modelFor(intervalMs),
        faults,
        faultState: faults ? initialFaultState() : undefined,
        link,
        state: initialState(),
        nextDue: scenario.startMs + offset,
        backlog: [],
        pendingStatus: undefined,
        droppedOut: false,
      };
      link.members.push(runner);
      this.#runners.push(runner);
      if (runner.nextDue < this.#endMs) this.#push(runner);
    });
  }

  get linkCount(): number {
    return this.#links.length;
  }

  async start(): Promise<void> {
    this.#wallStart = this.#wallClock();
    const rate = this.#options.connectRatePerSecond ?? SIMULATION_DEFAULTS.connectRatePerSecond;
    // Connect at a bounded rate: 50,000 devices logging in at once would only measure the broker's scrypt.
    const batch = Math.max(1, Math.ceil(rate / 20));
    for (let i = 0; i < this.#links.length; i += batch) {
      for (const link of this.#links.slice(i, i + batch)) this.#connect(link);
      if (i + batch < this.#links.length) await sleep(50);
      if (this.#stopping) return;
    }
    if (this.#scenario.speed === 'max') {
      // Virtual time only moves while every connection is up, so a run is the same every time.
      await this.#waitFor(() => this.#linksUp === this.#links.length, 60_000);
      void this.#runMax();
    } else {
      this.#wallStart = this.#wallClock();
      this.#running = true;
      this.#runRealTime();
    }
  }

  stats(): SimulationStats {
    const scenarioMs = this.#scenarioNow();
    const { durationMs, startMs } = this.#scenario;
    return {
      devices: this.#runners.length,
      connected: this.#devicesUp,
      connections: this.#links.length,
      connectionsUp: this.#linksUp,
      published: this.#counters.published,
      readings: this.#counters.readings,
      buffered: this.#counters.buffered,
      lost: this.#counters.lost,
      errors: this.#counters.errors,
      faults: { ...this.#faultCounts },
      scenarioMs,
      lagMs: this.#heap[0] ? Math.max(0, scenarioMs - this.#heap[0].nextDue) : 0,
      progress: durationMs === undefined ? undefined : Math.min(1, Math.max(0, (scenarioMs - startMs) / durationMs)),
    };
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#loopTimer);
    this.#wakeMax?.();
    await Promise.all(this.#links.map((link) => this.#closeLink(link)));
    this.#resolveFinished();
    this.#logger.info({ published: this.#counters.published, readings: this.#counters.readings, errors: this.#counters.errors }, 'simulation stopped');
  }

  // ── the scenario clock ────────────────────────────────────────────────────────────────────

  #scenarioNow(): number {
    const { speed, startMs } = this.#scenario;
    if (speed === 'max') return this.#virtualNow;
    return startMs + (this.#wallClock() - this.#wallStart) * speed;
  }

  /** Timestamp a reading measured at scenario time `atMs` carries on the wire (before the device's skew). */
  #wireTime(atMs: number): number {
    return this.#scenario.timestamps === 'scenario' ? atMs : Math.round(this.#wallClock());
  }

  #runRealTime(): void {
    if (this.#stopping) return;
    const now = this.#scenarioNow();
    this.#uploadDue(now);
    let handled = 0;
    let top = this.#heap[0];
    while (top && top.nextDue <= now) {
      this.#tick(this.#pop());
      top = this.#heap[0];
      if (++handled >= SIMULATION_DEFAULTS.ticksPerTurn) {
        this.#loopTimer = setTimeout(() => this.#runRealTime(), 0);
        return;
      }
    }
    if (!top) {
      void this.#finish();
      return;
    }
    const speed = this.#scenario.speed as number;
    const waitMs = Math.min(1000, Math.max(1, (top.nextDue - now) / speed));
    this.#loopTimer = setTimeout(() => this.#runRealTime(), waitMs);
  }

  async #runMax(): Promise<void> {
    this.#running = true;
    for (const link of this.#links) this.#flush(link);
    let handled = 0;
    while (!this.#stopping) {
      const top = this.#heap[0];
      if (!top) break;
      // Back-pressure: time stands still until the connection can take more.
      // Back-pressure, and uploads finish before time moves on (so a run is the same every time).
      const uploading = this.#uploadMs > 0 ? this.#links.find((l) => l.uploading) : undefined;
      if (uploading) {
        this.#flush(uploading);
        await this.#waitFor(() => this.#stopping || !uploading.uploading, Infinity);
        continue;
      }
      if (!top.link.connected || top.link.inflight >= top.link.window || congested(top.link)) {
        await this.#waitFor(() => this.#stopping || (top.link.connected && top.link.inflight < top.link.window / 2 && !congested(top.link)), Infinity);
        continue;
      }
      this.#virtualNow = top.nextDue;
      // An upload that could not go out in one go finishes (above) before the next reading.
      if (this.#uploadDue(top.nextDue)) continue;
      this.#tick(this.#pop());
      if (++handled >= SIMULATION_DEFAULTS.ticksPerTurn) {
        handled = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    if (!this.#stopping) {
      this.#virtualNow = Math.max(this.#virtualNow, Math.min(this.#endMs, this.#virtualNow));
      await this.#finish();
    }
  }

  /** The duration ran out: send what is buffered, wait for the acknowledgements, resolve `finished`. */
  async #finish(): Promise<void> {
    for (const link of this.#links) {
      link.uploading = true;
      this.#flush(link);
    }
    await this.#waitFor(() => this.#stopping || this.#links.every((l) => l.pending.size === 0 && l.statusPending.size === 0 && l.inflight === 0), 120_000);
    this.#logger.info({ readings: this.#counters.readings, published: this.#counters.published }, 'scenario finished');
    this.#resolveFinished();
  }

  /** Polls `condition` each time a publish completes or a link changes state (and every 100 ms). */
  async #waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
    // Always give I/O a turn: a caller looping on a condition that is already true must not starve it.
    await new Promise((resolve) => setImmediate(resolve));
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() >= deadline) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.#wakeMax = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return true;
  }

  #wake(): void {
    const wake = this.#wakeMax;
    this.#wakeMax = undefined;
    wake?.();
  }

  // ── one reading ───────────────────────────────────────────────────────────────────────────

  #tick(runner: Runner): void {
    const at = runner.nextDue;
    runner.nextDue = at + runner.intervalMs;
    if (runner.nextDue < this.#endMs) this.#push(runner);

    const step = nextReading(runner.device, runner.state, at, runner.model);
    runner.state = step.state;
    let reading = step.reading;
    const ts = this.#wireTime(at) + runner.skewMs;
    if (ts !== reading.ts) reading = { ...reading, ts };

    let payload: string | undefined;
    let topic = runner.telemetryTopic;
    let copies = 1;
    if (runner.faults && runner.faultState) {
      const outcome = applyFaults(runner.device, runner.faults, runner.faultState, reading, at, runner.intervalMs, this.#scenario.seed);
      for (const type of outcome.applied) this.#faultCounts[type]++;
      reading = outcome.reading;
      if (outcome.dropoutStarts) this.#dropOut(runner, runner.faultState.dropoutUntil - at);
      if (outcome.offline) {
        if (outcome.lose) this.#counters.lost++;
        else this.#buffer(runner, reading);
        return;
      }
      if (runner.droppedOut) {
        runner.droppedOut = false;
        if (this.#scenario.mode === 'gateway') this.#setStatus(runner, 'online');
      }
      payload = outcome.payload;
      topic = outcome.topic ?? topic;
      copies = outcome.copies;
    }

    const link = runner.link;
    if (this.#uploadMs > 0 && payload === undefined && topic === runner.telemetryTopic) {
      // A gateway that uploads periodically holds the reading until its next upload.
      for (let i = 0; i < copies; i++) this.#buffer(runner, reading);
      return;
    }
    if (!link.connected || link.inflight >= link.window || runner.backlog.length > 0 || congested(link)) {
      // Keep order: a device with a backlog sends it first, in the batch form.
      this.#buffer(runner, reading);
      if (link.connected && link.inflight < link.window) this.#flush(link);
      return;
    }
    const text = payload ?? JSON.stringify(reading);
    for (let i = 0; i < copies; i++) this.#send(link, topic, text, runner.qos, false, payload === undefined ? 1 : 0);
  }

  /** Gateway uploads: every uploadMs of scenario time, each device's held readings go out in one message. */
  #uploadDue(now: number): boolean {
    if (this.#uploadMs <= 0 || now < this.#nextUploadAt) return false;
    this.#nextUploadAt = (Math.floor((now - this.#scenario.startMs) / this.#uploadMs) + 1) * this.#uploadMs + this.#scenario.startMs;
    for (const link of this.#links) {
      link.uploading = true;
      this.#flush(link);
    }
    return this.#links.some((link) => link.uploading);
  }

  #buffer(runner: Runner, reading: Reading): void {
    runner.backlog.push(reading);
    this.#counters.buffered++;
    if (runner.backlog.length > this.#scenario.bufferMaxReadings) {
      runner.backlog.shift(); // a device with full memory overwrites its oldest reading
      this.#counters.buffered--;
      this.#counters.lost++;
    }
    runner.link.pending.add(runner);
  }

  /** Sends pending statuses and backlogs of a link's devices while its window has room. */
  #flush(link: Link): void {
    if (!link.connected) return;
    for (const runner of link.statusPending) {
      if (link.inflight >= link.window || congested(link)) return;
      if (runner.pendingStatus) this.#publishStatus(link, runner, runner.pendingStatus);
      runner.pendingStatus = undefined;
      link.statusPending.delete(runner);
    }
    // Between uploads a periodically uploading gateway holds its devices' readings.
    if (this.#uploadMs > 0 && !link.uploading) return;
    for (const runner of link.pending) {
      if (link.inflight >= link.window || congested(link)) return;
      while (runner.backlog.length > 0 && link.inflight < link.window) {
        const batch = takeBatch(runner.backlog);
        this.#counters.buffered -= batch.count;
        this.#send(link, runner.telemetryTopic, batch.payload, runner.qos, false, batch.count);
      }
      if (runner.backlog.length === 0) link.pending.delete(runner);
    }
    link.uploading = false; // everything held went out
  }

  /** Whether a flush now would send anything. */
  #hasWork(link: Link): boolean {
    return link.statusPending.size > 0 || (link.pending.size > 0 && (this.#uploadMs === 0 || link.uploading));
  }

  #send(link: Link, topic: string, payload: string, qos: 0 | 1, retain: boolean, readings: number): void {
    const client = link.client;
    if (!client) return;
    this.#options.recorder?.write({ at: this.recordTime(), topic, qos, retain, payload });
    link.inflight++;
    client.publish(topic, payload, { qos, retain }, (err) => {
      link.inflight--;
      if (err) {
        this.#counters.errors++;
        this.#logger.debug({ err, connection: link.id, topic }, 'publish failed');
      } else {
        this.#counters.published++;
        this.#counters.readings += readings;
      }
      if (link.inflight < link.window / 2 && this.#hasWork(link)) this.#flush(link);
      this.#wake();
    });
  }

  /** The clock published messages are recorded with (scenario or wall time, epoch ms). */
  recordTime(): number {
    return this.#scenario.timestamps === 'scenario' ? this.#scenarioNow() : this.#wallClock();
  }

  #setStatus(runner: Runner, state: 'online' | 'offline'): void {
    runner.pendingStatus = state;
    runner.link.statusPending.add(runner);
    if (runner.link.connected && runner.link.inflight < runner.link.window) this.#flush(runner.link);
  }

  #publishStatus(link: Link, runner: Runner, state: 'online' | 'offline', reason?: string): void {
    const status: DeviceStatusPayload = { state, ts: Math.round(this.#wireTime(this.#scenarioNow())), ...(reason ? { reason } : {}) };
    this.#send(link, runner.statusTopic, JSON.stringify(status), 1, true, 0);
  }

  /**
   * A dropout: a device on its own connection loses it abruptly (the broker publishes its last
   * will) and stays away for the episode; a device behind a gateway falls silent and its gateway
   * reports it offline. Under speed "max" the connection stays up, so runs stay reproducible.
   */
  #dropOut(runner: Runner, durationMs: number): void {
    const link = runner.link;
    if (this.#scenario.mode === 'gateway' || this.#scenario.speed === 'max') {
      runner.droppedOut = true;
      if (this.#scenario.mode === 'gateway') this.#setStatus(runner, 'offline');
      return;
    }
    link.holdUntil = this.#wallClock() + durationMs / (this.#scenario.speed);
    link.client?.stream.destroy();
  }

  // ── connections ───────────────────────────────────────────────────────────────────────────

  #newLink(id: string, password: string, window: number): Link {
    return {
      id,
      username: id,
      password,
      members: [],
      window,
      jitter: new Rng(deriveSeed(this.#scenario.seed, 'reconnect', id)),
      client: undefined,
      connected: false,
      inflight: 0,
      failures: 0,
      reconnectTimer: undefined,
      holdUntil: 0,
      pending: new Set(),
      statusPending: new Set(),
      uploading: false,
    };
  }

  #connect(link: Link): void {
    const isGateway = this.#scenario.mode === 'gateway';
    const first = link.members[0];
    const offline: DeviceStatusPayload = { state: 'offline', reason: 'connection lost' };
    const client = connect(this.#options.mqttUrl, {
      clientId: link.id,
      username: link.username,
      password: link.password,
      protocolVersion: 4, // MQTT 3.1.1
      clean: true,
      keepalive: SIMULATION_DEFAULTS.keepaliveS,
      connectTimeout: SIMULATION_DEFAULTS.connectTimeoutMs,
      // MQTT.js would retry at a fixed period; after a broker restart 50,000 devices would log in
      // in lockstep, so reconnects are scheduled here with jittered back-off.
      reconnectPeriod: 0,
      // A gateway has one will for many devices: their statuses go stale instead (see README).
      ...(!isGateway && first ? { will: { topic: first.statusTopic, payload: Buffer.from(JSON.stringify(offline)), qos: 1 as const, retain: true } } : {}),
    });
    link.client = client;
    client.on('connect', () => {
      client.stream.on('drain', () => {
        if (this.#hasWork(link)) this.#flush(link);
        this.#wake();
      });
      this.#onConnect(link);
    });
    client.on('close', () => this.#onClose(link));
    client.on('error', (err) => this.#onError(link, err));
  }

  #onConnect(link: Link): void {
    link.connected = true;
    this.#linksUp++;
    this.#devicesUp += link.members.length;
    if (link.failures > 0) this.#logger.info({ connection: link.id, attempts: link.failures }, 'reconnected');
    link.failures = 0;
    // MQTT.js resends unacknowledged QoS 1 messages itself; inflight restarts from its own count.
    for (const runner of link.members) {
      if (!runner.droppedOut) {
        runner.pendingStatus = 'online';
        link.statusPending.add(runner);
      }
    }
    // Under speed "max" the first statuses go out in device order once every link is up (see
    // #runMax), not in the order the connections happened to complete: runs stay identical.
    if (this.#scenario.speed !== 'max' || this.#running) this.#flush(link);
    this.#wake();
  }

  #onClose(link: Link): void {
    if (link.connected) {
      link.connected = false;
      this.#linksUp--;
      this.#devicesUp -= link.members.length;
    }
    // QoS 0 callbacks have failed by now; MQTT.js keeps unacknowledged QoS 1 messages and resends
    // them on reconnect, so they stay counted in the window until their PUBACK.
    this.#wake();
    if (this.#stopping || link.reconnectTimer) return;
    const { reconnectMinMs, reconnectMaxMs } = SIMULATION_DEFAULTS;
    const ceilingMs = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** link.failures);
    link.failures++;
    const backoffMs = ceilingMs * (0.5 + 0.5 * link.jitter.uniform());
    const delayMs = Math.max(backoffMs, link.holdUntil - this.#wallClock());
    link.reconnectTimer = setTimeout(() => {
      link.reconnectTimer = undefined;
      const client = link.client;
      // MQTT.js's reconnect() starts with empty stores unless given its own: the QoS 1 messages
      // still waiting for a PUBACK would be neither resent nor failed, and the window would leak.
      if (!this.#stopping && client) client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore });
    }, delayMs);
  }

  #onError(link: Link, err: Error): void {
    this.#counters.errors++;
    // The first failure of a streak at warn; the retries of an outage at debug, not a log storm.
    this.#logger[link.failures === 0 ? 'warn' : 'debug']({ err, connection: link.id }, 'connection error');
  }

  async #closeLink(link: Link): Promise<void> {
    clearTimeout(link.reconnectTimer);
    const client = link.client;
    if (!client) return;
    if (link.connected) {
      // What the devices hold goes out first (a gateway's last upload); then each says offline,
      // since a clean DISCONNECT discards the last will [MQTT-3.14.4-3].
      link.uploading = true;
      this.#flush(link);
      const sent = await until(() => !link.connected || (link.pending.size === 0 && link.statusPending.size === 0), SIMULATION_DEFAULTS.stopTimeoutMs);
      for (const runner of link.members) this.#publishStatus(link, runner, 'offline', 'simulator stopped');
      const drained = await until(() => link.inflight <= 0 || !link.connected, SIMULATION_DEFAULTS.stopTimeoutMs);
      if (!sent || !drained) this.#counters.errors++;
      if (await withTimeout(client.endAsync(), SIMULATION_DEFAULTS.stopTimeoutMs)) return;
    }
    await withTimeout(client.endAsync(true), SIMULATION_DEFAULTS.stopTimeoutMs);
  }

  // ── the schedule: a binary min-heap on (nextDue, index) ───────────────────────────────────

  #push(runner: Runner): void {
    const heap = this.#heap;
    let i = heap.push(runner) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent] as Runner;
      if (!before(runner, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = runner;
  }

  #pop(): Runner {
    const heap = this.#heap;
    const top = heap[0] as Runner;
    const last = heap.pop() as Runner;
    if (heap.length > 0) {
      let i = 0;
      const n = heap.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const child = r < n && before(heap[r] as Runner, heap[l] as Runner) ? r : l;
        if (!before(heap[child] as Runner, last)) break;
        heap[i] = heap[child] as Runner;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}

/** The socket's buffer is full: writing more now would only queue inside MQTT.js, one drain listener per message. */
function congested(link: Link): boolean {
  const stream = link.client?.stream as { writableNeedDrain?: boolean } | undefined;
  return stream?.writableNeedDrain === true;
}

function before(a: Runner, b: Runner): boolean {
  return a.nextDue < b.nextDue || (a.nextDue === b.nextDue && a.index < b.index);
}

/** Takes the oldest readings that fit one batch message (count and bytes), as JSON. */
function takeBatch(backlog: Reading[]): { payload: string; count: number } {
  const parts: string[] = [];
  let bytes = 14;
  let count = 0;
  for (const reading of backlog) {
    if (count >= MAX_BATCH_READINGS) break;
    const text = JSON.stringify(reading);
    if (count > 0 && bytes + text.length + 1 > SIMULATION_DEFAULTS.maxBatchBytes) break;
    parts.push(text);
    bytes += text.length + 1;
    count++;
  }
  if (count === backlog.length) backlog.length = 0;
  else backlog.splice(0, count);
  return { payload: count === 1 ? (parts[0] as string) : `{"readings":[${parts.join(',')}]}`, count };
}


/** A device's clock error: none for most; up to ±maxMs for the scenario's share, from the seed. */
function clockSkew(scenario: Scenario, device: SimulatedDevice): number {
  const skew = scenario.clockSkew;
  if (!skew || skew.maxMs === 0) return 0;
  const rng = new Rng(deriveSeed(scenario.seed, 'clock-skew', device.id));
  if (rng.uniform() >= skew.share) return 0;
  return Math.round((2 * rng.uniform() - 1) * skew.maxMs);
}

/** Resolves true once `condition` holds (checked every 20 ms), false after `ms`. */
function until(condition: () => boolean, ms: number): Promise<boolean> {
  return withTimeout(
    new Promise<void>((resolve) => {
      const check = () => (condition() ? resolve() : setTimeout(check, 20));
      check();
    }),
    ms,
  );
}

/** Resolves true when `promise` settles in time without error, false otherwise. */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** This thread's heap, after a full collection when the process runs with --expose-gc. */
export function heapBytesHere(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.external + m.arrayBuffers;
}
