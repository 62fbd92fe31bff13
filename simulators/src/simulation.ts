import { DeviceRegistry, generateSecret, type DeviceRecord, type NewDevice } from '@citypulse/broker/registry';
import { CodedError, deviceTopic, DOMAINS, isDomain, isProvinceCode, type DeviceStatusPayload, type Domain } from '@citypulse/contracts';
import { connect, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { initialState, type DeviceState, type ModelOptions, type SimulatedDevice } from './models/common.js';
import { nextReading } from './models/index.js';
import { placeDevices } from './placement.js';
import { deriveSeed, Rng } from './random.js';
import { readSecrets, secretsFilePath, writeSecrets } from './secrets.js';

export interface SimulationOptions {
  /** Broker URL, e.g. mqtt://127.0.0.1:1883; devices log in with username = device id, password = secret. */
  readonly mqttUrl: string;
  /** Folder of the device registry (devices.json) and of simulator-secrets.json. */
  readonly dataDir: string;
  /** Province codes from the contract, e.g. '01' Hà Nội, '79' Hồ Chí Minh, '48' Đà Nẵng. */
  readonly provinces: readonly string[];
  readonly domains: readonly Domain[];
  /** Devices per province and domain. */
  readonly devicesPerProvince: number;
  /** Publish interval of each device, ms. */
  readonly intervalMs: number;
  /** Seed of placement and readings (default SIMULATION_DEFAULTS.seed). */
  readonly seed?: number;
  readonly logger?: Logger;
  /** Clock for reading timestamps, ms since the epoch (default Date.now). */
  readonly clock?: () => number;
}

export interface SimulationStats {
  /** Devices currently connected to the broker. */
  readonly connected: number;
  /** Telemetry readings published (acknowledged by the broker for QoS 1). */
  readonly published: number;
  /** Connection failures, refused logins and failed publishes. */
  readonly errors: number;
}

export interface Simulation {
  readonly devices: readonly SimulatedDevice[];
  stats(): SimulationStats;
  /** Publishes each device's offline status, disconnects cleanly and resolves when every client is closed. */
  stop(): Promise<void>;
}

export const SIMULATION_DEFAULTS = {
  seed: 20_250_701, // 1 July 2025, the day the 34-unit scheme took effect
  minIntervalMs: 100,
  maxIntervalMs: 3_600_000, // 1 hour, the schema's longest counting period
  maxDevicesPerProvince: 999, // ids carry three digits
  keepaliveS: 30,
  connectTimeoutMs: 10_000,
  reconnectMinMs: 1_000,
  reconnectMaxMs: 30_000,
  stopTimeoutMs: 5_000,
} as const;

/**
 * QoS 1 for every domain, as the contract's topic scheme asks. For traffic too: a reading is the
 * count of its own period, not a snapshot the next one supersedes, so a lost message is a hole in
 * the flow totals; one PUBACK per device per interval costs little.
 */
const TELEMETRY_QOS: Readonly<Record<Domain, 0 | 1>> = { traffic: 1, environment: 1, energy: 1 };
const MQTT_PROTOCOLS = ['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'];

/** Places, provisions and connects the simulated devices; readings start within one interval. */
export async function startSimulation(options: SimulationOptions): Promise<Simulation> {
  const config = validateOptions(options);
  const logger = (options.logger ?? pino({ enabled: false })).child({ component: 'simulators' });
  const planned = placeDevices(config);
  const { secrets, disabled } = await provision(options.dataDir, planned, logger);
  const devices = planned.filter((d) => !disabled.has(d.id));

  const counters = { connected: 0, published: 0, errors: 0 };
  const context: RunnerContext = {
    mqttUrl: options.mqttUrl,
    intervalMs: config.intervalMs,
    model: { seed: config.seed, periodSeconds: Math.max(1, Math.round(config.intervalMs / 1000)) },
    clock: options.clock ?? Date.now,
    counters,
    logger,
  };
  const runners = devices.map((device, index) => {
    const secret = secrets.get(device.id);
    if (secret === undefined) throw new Error(`no secret for ${device.id} after provisioning`); // provision() guarantees one
    // Spread first publishes evenly over one interval so N devices never fire together.
    return new DeviceRunner(device, secret, ((index + 0.5) / devices.length) * config.intervalMs, context);
  });
  try {
    for (const runner of runners) runner.start();
  } catch (err) {
    await Promise.all(runners.map((r) => r.stop()));
    throw err;
  }
  logger.info({ devices: devices.length, provinces: config.provinces, domains: config.domains, intervalMs: config.intervalMs, mqttUrl: redactUrl(options.mqttUrl) }, 'simulation started');

  let stopping: Promise<void> | undefined;
  return {
    devices,
    stats: () => ({ ...counters }),
    stop: () => {
      stopping ??= Promise.all(runners.map((r) => r.stop())).then(() => {
        logger.info({ published: counters.published, errors: counters.errors }, 'simulation stopped');
      });
      return stopping;
    },
  };
}

interface ValidatedOptions {
  readonly provinces: readonly string[];
  readonly domains: readonly Domain[];
  readonly devicesPerProvince: number;
  readonly intervalMs: number;
  readonly seed: number;
}

function validateOptions(options: SimulationOptions): ValidatedOptions {
  const problems: string[] = [];
  let url: URL | undefined;
  try {
    url = new URL(options.mqttUrl);
  } catch {
    problems.push(`mqttUrl "${options.mqttUrl}" is not a URL (e.g. mqtt://127.0.0.1:1883)`);
  }
  if (url && !MQTT_PROTOCOLS.includes(url.protocol)) problems.push(`mqttUrl "${redactUrl(options.mqttUrl)}" must use mqtt://, mqtts://, ws:// or wss://`);
  if (options.dataDir.trim() === '') problems.push('dataDir must name a folder');
  const provinces = [...new Set(options.provinces)];
  if (provinces.length === 0) problems.push('provinces must name at least one province code (e.g. 01 for Hà Nội)');
  for (const code of provinces) {
    if (!isProvinceCode(code)) problems.push(`provinces: "${code}" is not one of the 34 province codes (e.g. 01 Hà Nội, 79 Hồ Chí Minh, 48 Đà Nẵng)`);
  }
  const domains = [...new Set(options.domains)];
  if (domains.length === 0) problems.push(`domains must name at least one of ${DOMAINS.join(', ')}`);
  for (const domain of domains) {
    if (!isDomain(domain)) problems.push(`domains: "${String(domain)}" must be one of ${DOMAINS.join(', ')}`);
  }
  const { maxDevicesPerProvince, minIntervalMs, maxIntervalMs } = SIMULATION_DEFAULTS;
  if (!Number.isInteger(options.devicesPerProvince) || options.devicesPerProvince < 1 || options.devicesPerProvince > maxDevicesPerProvince) {
    problems.push(`devicesPerProvince ${options.devicesPerProvince} must be a whole number from 1 to ${maxDevicesPerProvince}`);
  }
  if (!Number.isFinite(options.intervalMs) || options.intervalMs < minIntervalMs || options.intervalMs > maxIntervalMs) {
    problems.push(`intervalMs ${options.intervalMs} must be from ${minIntervalMs} to ${maxIntervalMs} ms`);
  }
  const seed = options.seed ?? SIMULATION_DEFAULTS.seed;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) problems.push(`seed ${seed} must be a whole number from 0 to 4294967295`);
  if (problems.length > 0) throw new CodedError('E_CONFIG', `invalid simulation options:\n  ${problems.join('\n  ')}`);
  return { provinces, domains, devicesPerProvince: options.devicesPerProvince, intervalMs: options.intervalMs, seed };
}

/**
 * Registers the devices that are missing from the registry, whose record differs from the plan,
 * or whose secret the simulator does not hold, in one registry write (scrypt costs ~40 ms each,
 * so devices already in place are left alone). Devices an operator disabled are not touched.
 */
async function provision(dataDir: string, devices: readonly SimulatedDevice[], logger: Logger): Promise<{ secrets: Map<string, string>; disabled: Set<string> }> {
  const file = secretsFilePath(dataDir);
  const registry = await DeviceRegistry.open(dataDir);
  try {
    const secrets = await readSecrets(file);
    const disabled = new Set<string>();
    const missing: SimulatedDevice[] = [];
    for (const device of devices) {
      const record = registry.device(device.id);
      if (record && !record.enabled) {
        disabled.add(device.id);
      } else if (!record || !secrets.has(device.id) || !matchesPlan(record, device)) {
        missing.push(device);
      }
    }
    if (disabled.size > 0) logger.warn({ devices: [...disabled] }, 'devices disabled in the registry are not simulated');
    if (missing.length === 0) return { secrets, disabled };

    for (const device of missing) if (!secrets.has(device.id)) secrets.set(device.id, generateSecret());
    // Secrets first: a crash between the two writes then leaves secrets without hashes (re-provisioned
    // next start), never hashes whose secrets are lost.
    await writeSecrets(file, secrets);
    await registry.upsertDevices(missing.map((device) => toNewDevice(device, secrets.get(device.id))));
    logger.info({ provisioned: missing.length, reused: devices.length - missing.length - disabled.size }, 'devices provisioned');
    return { secrets, disabled };
  } finally {
    registry.close();
  }
}

function toNewDevice(device: SimulatedDevice, secret: string | undefined): NewDevice {
  return {
    id: device.id,
    province: device.province,
    domain: device.domain,
    kind: device.kind,
    name: device.name,
    location: device.location,
    ...(device.profile ? { profile: device.profile } : {}),
    ...(secret !== undefined ? { secret } : {}),
  };
}

function matchesPlan(record: DeviceRecord, device: SimulatedDevice): boolean {
  return (
    record.province === device.province &&
    record.domain === device.domain &&
    record.kind === device.kind &&
    record.name === device.name &&
    record.location[0] === device.location[0] &&
    record.location[1] === device.location[1] &&
    record.profile?.ratedPowerVA === device.profile?.ratedPowerVA &&
    record.profile?.nominalPhaseVoltageV === device.profile?.nominalPhaseVoltageV
  );
}

interface RunnerContext {
  readonly mqttUrl: string;
  readonly intervalMs: number;
  readonly model: ModelOptions;
  readonly clock: () => number;
  readonly counters: { connected: number; published: number; errors: number };
  readonly logger: Logger;
}

/** One field device: one MQTT connection, one publish schedule, one model state. */
class DeviceRunner {
  readonly #device: SimulatedDevice;
  readonly #secret: string;
  readonly #offsetMs: number;
  readonly #ctx: RunnerContext;
  readonly #telemetryTopic: string;
  readonly #statusTopic: string;
  readonly #jitter: Rng;
  #client: MqttClient | undefined;
  #state: DeviceState = initialState();
  #connected = false;
  #stopping = false;
  /** Consecutive connection failures, for the back-off. */
  #failures = 0;
  #tickTimer: NodeJS.Timeout | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #scheduleStart = 0;
  #tickIndex = 0;

  constructor(device: SimulatedDevice, secret: string, offsetMs: number, ctx: RunnerContext) {
    this.#device = device;
    this.#secret = secret;
    this.#offsetMs = offsetMs;
    this.#ctx = ctx;
    const address = { province: device.province, domain: device.domain, deviceId: device.id };
    this.#telemetryTopic = deviceTopic(address, 'telemetry');
    this.#statusTopic = deviceTopic(address, 'status');
    this.#jitter = new Rng(deriveSeed(ctx.model.seed, 'reconnect', device.id));
  }

  start(): void {
    const id = this.#device.id;
    const offline: DeviceStatusPayload = { state: 'offline' };
    const client = connect(this.#ctx.mqttUrl, {
      clientId: id,
      username: id,
      password: this.#secret,
      protocolVersion: 4, // MQTT 3.1.1: the broker does not speak MQTT 5
      clean: true,
      keepalive: SIMULATION_DEFAULTS.keepaliveS,
      connectTimeout: SIMULATION_DEFAULTS.connectTimeoutMs,
      // MQTT.js retries at a fixed period; after a broker restart a thousand devices would log in
      // (scrypt each) in lockstep, so reconnects are scheduled here with jittered back-off.
      reconnectPeriod: 0,
      will: { topic: this.#statusTopic, payload: JSON.stringify(offline), qos: 1, retain: true },
    });
    this.#client = client;
    client.on('connect', () => this.#onConnect(client));
    client.on('close', () => this.#onClose());
    client.on('error', (err) => this.#onError(err));
    this.#scheduleStart = performance.now() + this.#offsetMs;
    this.#scheduleTick();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#tickTimer);
    clearTimeout(this.#reconnectTimer);
    const client = this.#client;
    if (!client) return;
    if (this.#connected) {
      // A clean DISCONNECT discards the last will [MQTT-3.14.4-3], so say offline explicitly.
      const status: DeviceStatusPayload = { state: 'offline', ts: Math.round(this.#ctx.clock()), reason: 'simulator stopped' };
      const sent = await withTimeout(client.publishAsync(this.#statusTopic, JSON.stringify(status), { qos: 1, retain: true }), SIMULATION_DEFAULTS.stopTimeoutMs);
      if (!sent) this.#ctx.counters.errors++;
      if (await withTimeout(client.endAsync(), SIMULATION_DEFAULTS.stopTimeoutMs)) return;
    }
    await withTimeout(client.endAsync(true), SIMULATION_DEFAULTS.stopTimeoutMs);
  }

  #onConnect(client: MqttClient): void {
    const { counters, logger } = this.#ctx;
    this.#connected = true;
    counters.connected++;
    if (this.#failures > 0) logger.info({ deviceId: this.#device.id, attempts: this.#failures }, 'device reconnected');
    this.#failures = 0;
    const status: DeviceStatusPayload = { state: 'online', ts: Math.round(this.#ctx.clock()) };
    client.publish(this.#statusTopic, JSON.stringify(status), { qos: 1, retain: true }, (err) => {
      if (err) this.#onError(err);
    });
  }

  #onClose(): void {
    if (this.#connected) {
      this.#connected = false;
      this.#ctx.counters.connected--;
    }
    if (this.#stopping || this.#reconnectTimer) return;
    const { reconnectMinMs, reconnectMaxMs } = SIMULATION_DEFAULTS;
    const ceilingMs = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** this.#failures);
    this.#failures++;
    const delayMs = ceilingMs * (0.5 + 0.5 * this.#jitter.uniform());
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (!this.#stopping) this.#client?.reconnect();
    }, delayMs);
  }

  #onError(err: Error): void {
    this.#ctx.counters.errors++;
    // The first failure of a streak at warn; the retries of an outage at debug, not a log storm.
    const level = this.#failures === 0 ? 'warn' : 'debug';
    this.#ctx.logger[level]({ err, deviceId: this.#device.id }, 'device connection error');
  }

  /** Publishes on a fixed grid (start + k·interval), skipping slots missed while the loop was busy. */
  #scheduleTick(): void {
    const interval = this.#ctx.intervalMs;
    const now = performance.now();
    this.#tickIndex = Math.max(this.#tickIndex, Math.ceil((now - this.#scheduleStart) / interval));
    const dueAt = this.#scheduleStart + this.#tickIndex * interval;
    this.#tickIndex++;
    this.#tickTimer = setTimeout(() => {
      this.#tick();
      if (!this.#stopping) this.#scheduleTick();
    }, Math.max(0, dueAt - now));
  }

  #tick(): void {
    const client = this.#client;
    // Offline: the device skips the measurement; the seq gap and the longer energy integration
    // period show it, as with a real meter.
    if (!client || !this.#connected || this.#stopping) return;
    const step = nextReading(this.#device, this.#state, Math.round(this.#ctx.clock()), this.#ctx.model);
    this.#state = step.state;
    client.publish(this.#telemetryTopic, JSON.stringify(step.reading), { qos: TELEMETRY_QOS[this.#device.domain] }, (err) => {
      if (err) {
        this.#ctx.counters.errors++;
        this.#ctx.logger.debug({ err, deviceId: this.#device.id }, 'publish failed');
      } else {
        this.#ctx.counters.published++;
      }
    });
  }
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

function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return text;
  }
}
