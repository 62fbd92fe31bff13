import { existsSync, readdirSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { COMMON_CONFIG, DOMAINS, isProvinceCode, PROVINCE_CODES, provinceByCode, REGISTRY_STORES, type Domain } from '@citypulse/contracts';
import { REDIS_CONFIG } from '@citypulse/infra';
import { CONNECTION_MODES, FAULT_TYPES, parseTime, SCENARIO_DEFAULTS, SCENARIO_LIMITS, SCENARIOS_DIR, shippedScenarioPath, vnClock, type ConnectionMode, type FaultType } from '../scenario.js';
import { MAX_THREADS, SIMULATION_DEFAULTS, THREADS_AUTO_MIN_DEVICES, type SimulationStats } from '../simulation.js';
import { checkMqttUrl, nonEmpty, parseToolFlags, parseDomains, parseDurationFlag, parseSize, splitList, UsageError } from './tool-flags.js';

/** Command-line flags of `simulate`, parsed and validated without side effects (so tests can call it). */
export interface CliOptions {
  readonly mqttUrl: string;
  readonly dataDir: string;
  /** The device registry the devices are provisioned in (REGISTRY_STORE, REDIS_URL), as the broker's. */
  readonly registry: { readonly store: (typeof REGISTRY_STORES)[number]; readonly redisUrl: string };
  /** A scenario file or a shipped scenario's name; undefined: one built from --provinces etc. */
  readonly scenario: string | undefined;
  /** Used when there is no scenario file. */
  readonly provinces: readonly string[];
  readonly domains: readonly Domain[];
  readonly devicesPerProvince: number;
  readonly intervalMs: number;
  /** Overrides of the scenario. */
  readonly seed: number | undefined;
  readonly mode: ConnectionMode | undefined;
  readonly gateways: number | undefined;
  readonly uploadMs: number | undefined;
  readonly speed: number | 'max' | undefined;
  readonly start: string | undefined;
  readonly durationMs: number | undefined;
  readonly timestamps: 'wall' | 'scenario' | undefined;
  readonly faults: readonly FaultType[];
  readonly record: { readonly path: string; readonly gzip: boolean; readonly rotateBytes: number | undefined; readonly rotateMs: number | undefined } | undefined;
  readonly provision: boolean;
  readonly connectRate: number | undefined;
  /** Worker threads, or "auto" (the default). */
  readonly threads: number | 'auto';
  /** Validate and describe the scenario, then exit. */
  readonly check: boolean;
  readonly statusIntervalMs: number;
  readonly logLevel: string;
}

export type CliCommand = { readonly help: true } | { readonly help: false; readonly options: CliOptions };


export const CLI_DEFAULTS = {
  mqttUrl: 'mqtt://127.0.0.1:1883',
  dataDir: COMMON_CONFIG.DATA_DIR.default,
  provinces: '01,79,48',
  domains: DOMAINS.join(','),
  devices: '3',
  interval: '5s',
  statusInterval: '10s',
  logLevel: COMMON_CONFIG.LOG_LEVEL.default,
} as const;

const LOG_LEVELS: readonly string[] = COMMON_CONFIG.LOG_LEVEL.values;
const FAULT_FLAG_NAMES: Readonly<Record<string, FaultType>> = { dropout: 'dropout', stuck: 'stuck', spike: 'spike', malformed: 'malformed', 'wrong-topic': 'wrongTopic', wrongtopic: 'wrongTopic', flood: 'flood' };

export const USAGE = `Usage: pnpm --filter @citypulse/simulators simulate -- [flags]

Simulated field devices publishing readings to the MQTT broker, from a scenario file or from flags.

Scenario:
  --scenario FILE|NAME   YAML or JSON scenario, or a shipped one: ${shippedScenarioNames().join(', ')}
  --check                validate the scenario, print what it would run, and exit
  --provinces CODES      without --scenario: comma-separated province codes, or "all" (default ${CLI_DEFAULTS.provinces})
  --domains LIST         without --scenario: any of ${DOMAINS.join(',')} (default all)
  --devices N            without --scenario: devices per province and domain, 1–${SCENARIO_LIMITS.maxDevicesPerGroup} (default ${CLI_DEFAULTS.devices})
  --interval DURATION    without --scenario: publish interval per device, e.g. 5s, 500ms, 1m (default ${CLI_DEFAULTS.interval})
  --seed N               seed of placement, readings and faults (default: the scenario's, else ${SCENARIO_DEFAULTS.seed})
  --faults LIST          switch faults on with their defaults: ${Object.keys(FAULT_FLAG_NAMES).filter((k) => k !== 'wrongtopic').join(',')}, or all

Clock and connections (override the scenario):
  --speed N|max          scenario seconds per wall second (1 = real time), or max: as fast as the broker takes it
  --start TIME           scenario clock start: now, 2026-01-15T07:00 (Vietnam time) or an ISO date-time
  --duration D           stop after this much scenario time, e.g. 2h
  --timestamps wall|scenario  stamp readings with the wall clock (default) or the scenario clock
  --mode device|gateway  one MQTT connection per device, or a few gateway connections for many devices
  --gateways N           gateway connections in gateway mode (default: one per ${SCENARIO_DEFAULTS.gatewayDevices} devices)
  --upload D             gateway mode: upload each device's readings every D in one message (default: at once)
  --connect-rate N       device connections opened per second (default ${SIMULATION_DEFAULTS.connectRatePerSecond})
  --threads N|auto       worker threads sharing the connections (default auto: one per core from
                         ${THREADS_AUTO_MIN_DEVICES} devices at a real-time speed; speed max runs in one)

Recording:
  --record FILE          record everything published (NDJSON; FILE ending in .gz is gzipped)
  --record-rotate-size S start a new file after S bytes, e.g. 100MB
  --record-rotate-time D start a new file after D of publish time, e.g. 1h

Broker and output:
  --mqtt-url URL         broker URL (env MQTT_URL, default ${CLI_DEFAULTS.mqttUrl})
  --data-dir DIR         folder of devices.json and simulator-secrets.json
                         (env DATA_DIR, default ${CLI_DEFAULTS.dataDir}, relative to where you ran the command);
                         with env REGISTRY_STORE=redis the devices are registered in Redis at REDIS_URL
  --no-provision         do not register devices; log in with the device id and no password
                         (only for a benchmark broker without authentication)
  --status-interval D    how often to print the status line (default ${CLI_DEFAULTS.statusInterval})
  --log-level LEVEL      ${LOG_LEVELS.join(', ')} (env LOG_LEVEL, default ${CLI_DEFAULTS.logLevel}); logs go to stderr
  -h, --help             show this help`;

const FLAGS = {
  'mqtt-url': { type: 'string' },
  'data-dir': { type: 'string' },
  scenario: { type: 'string' },
  check: { type: 'boolean' },
  provinces: { type: 'string' },
  domains: { type: 'string' },
  devices: { type: 'string' },
  interval: { type: 'string' },
  seed: { type: 'string' },
  faults: { type: 'string' },
  speed: { type: 'string' },
  start: { type: 'string' },
  duration: { type: 'string' },
  timestamps: { type: 'string' },
  mode: { type: 'string' },
  gateways: { type: 'string' },
  upload: { type: 'string' },
  'connect-rate': { type: 'string' },
  threads: { type: 'string' },
  record: { type: 'string' },
  'record-rotate-size': { type: 'string' },
  'record-rotate-time': { type: 'string' },
  'no-provision': { type: 'boolean' },
  'status-interval': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * Parses `argv` (without node and the script). `baseDir` resolves a relative --data-dir: pnpm runs
 * the script inside simulators/, so the CLI passes the directory the user ran pnpm from (INIT_CWD).
 */
export function parseCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, baseDir: string): CliCommand {
  const values = parseToolFlags(argv, FLAGS);
  if (values.help) return { help: true };

  const mqttUrl = values['mqtt-url'] ?? nonEmpty(env.MQTT_URL) ?? CLI_DEFAULTS.mqttUrl;
  checkMqttUrl(mqttUrl, values['mqtt-url'] !== undefined ? '--mqtt-url' : nonEmpty(env.MQTT_URL) !== undefined ? 'MQTT_URL' : '--mqtt-url');
  const dataDirText = values['data-dir'] ?? nonEmpty(env.DATA_DIR) ?? CLI_DEFAULTS.dataDir;
  if (dataDirText.trim() === '') throw new UsageError('--data-dir must name a folder');
  const logLevel = values['log-level'] ?? nonEmpty(env.LOG_LEVEL) ?? CLI_DEFAULTS.logLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`--log-level "${logLevel}" must be one of ${LOG_LEVELS.join(', ')}`);
  const registryStore = nonEmpty(env.REGISTRY_STORE) ?? COMMON_CONFIG.REGISTRY_STORE.default;
  if (!isRegistryStore(registryStore)) throw new UsageError(`REGISTRY_STORE="${registryStore}" must be one of ${REGISTRY_STORES.join(', ')}`);
  const redisUrl = nonEmpty(env.REDIS_URL) ?? REDIS_CONFIG.REDIS_URL.default;

  const scenario = values.scenario;
  if (scenario !== undefined) {
    if (scenario.trim() === '') throw new UsageError('--scenario needs a file or the name of a shipped scenario');
    for (const flag of ['provinces', 'domains', 'devices', 'interval'] as const) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} cannot be combined with --scenario: the scenario file sets it`);
    }
  }
  const intervalMs = parseDurationFlag('--interval', values.interval ?? CLI_DEFAULTS.interval);
  if (intervalMs < SCENARIO_LIMITS.minIntervalMs || intervalMs > SCENARIO_LIMITS.maxIntervalMs) {
    throw new UsageError(`--interval ${values.interval ?? CLI_DEFAULTS.interval} must be from ${SCENARIO_LIMITS.minIntervalMs} ms to 1 h`);
  }
  const statusIntervalMs = parseDurationFlag('--status-interval', values['status-interval'] ?? CLI_DEFAULTS.statusInterval);
  if (statusIntervalMs < 1000) throw new UsageError('--status-interval must be at least 1s');

  return {
    help: false,
    options: {
      mqttUrl,
      dataDir: isAbsolute(dataDirText) ? dataDirText : resolve(baseDir, dataDirText),
      registry: { store: registryStore, redisUrl },
      scenario: scenario === undefined ? undefined : resolveScenarioArg(scenario, baseDir),
      provinces: parseProvinces(values.provinces ?? CLI_DEFAULTS.provinces),
      domains: parseDomains(values.domains ?? CLI_DEFAULTS.domains),
      devicesPerProvince: parseWholeNumber('--devices', values.devices ?? CLI_DEFAULTS.devices, 1, SCENARIO_LIMITS.maxDevicesPerGroup),
      intervalMs,
      seed: values.seed === undefined ? undefined : parseWholeNumber('--seed', values.seed, 0, 0xffff_ffff),
      mode: values.mode === undefined ? undefined : parseChoice('--mode', values.mode, CONNECTION_MODES),
      gateways: values.gateways === undefined ? undefined : parseWholeNumber('--gateways', values.gateways, 1, SCENARIO_LIMITS.maxGateways),
      uploadMs: values.upload === undefined ? undefined : parseDurationFlag('--upload', values.upload, 0),
      speed: values.speed === undefined ? undefined : parseSpeed(values.speed),
      start: values.start === undefined ? undefined : parseStart(values.start),
      durationMs: values.duration === undefined ? undefined : parseDurationFlag('--duration', values.duration),
      timestamps: values.timestamps === undefined ? undefined : parseChoice('--timestamps', values.timestamps, ['wall', 'scenario'] as const),
      faults: values.faults === undefined ? [] : parseFaults(values.faults),
      record: values.record === undefined ? undefined : parseRecord(values.record, values['record-rotate-size'], values['record-rotate-time'], baseDir),
      provision: values['no-provision'] !== true,
      connectRate: values['connect-rate'] === undefined ? undefined : parseWholeNumber('--connect-rate', values['connect-rate'], 1, 100_000),
      threads: values.threads === undefined || values.threads === 'auto' ? 'auto' : parseWholeNumber('--threads', values.threads, 1, MAX_THREADS),
      check: values.check === true,
      statusIntervalMs,
      logLevel,
    },
  };
}

function isRegistryStore(value: string): value is (typeof REGISTRY_STORES)[number] {
  return (REGISTRY_STORES as readonly string[]).includes(value);
}

/** One status line: what an engineer watching the terminal needs at a glance. */
export function formatStatus(stats: SimulationStats, rates: { readings: number; messages: number }, at: Date): string {
  const time = at.toISOString().slice(11, 19);
  const faults = Object.entries(stats.faults)
    .filter(([, n]) => n > 0)
    .map(([type, n]) => `${type} ${n}`)
    .join(', ');
  const progress = stats.progress === undefined ? '' : `  ${(stats.progress * 100).toFixed(1)}%`;
  return (
    `${time}Z  ${rates.readings.toFixed(1)} readings/s (${rates.messages.toFixed(1)} msg/s)  connected ${stats.connected}/${stats.devices}` +
    `  published ${stats.readings}  buffered ${stats.buffered}  lost ${stats.lost}  errors ${stats.errors}` +
    `${faults ? `  faults: ${faults}` : ''}  clock ${vnClock(stats.scenarioMs)}${progress}`
  );
}

function resolveScenarioArg(text: string, baseDir: string): string {
  if (existsSync(resolve(baseDir, text))) return resolve(baseDir, text);
  if (shippedScenarioPath(text)) return text;
  throw new UsageError(`--scenario "${text}" is neither a file nor a shipped scenario (${shippedScenarioNames().join(', ')})`);
}

function parseChoice<T extends string>(flag: string, text: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(text)) throw new UsageError(`${flag} "${text}" must be one of ${choices.join(', ')}`);
  return text as T;
}

function parseSpeed(text: string): number | 'max' {
  if (text === 'max') return 'max';
  const value = Number(text.replace(/x$/, ''));
  if (!Number.isFinite(value) || value < 0.01 || value > 10_000) throw new UsageError(`--speed "${text}" must be a number from 0.01 to 10000 (1 = real time) or "max"`);
  return value;
}

function parseStart(text: string): string {
  if (text !== 'now' && Number.isNaN(parseTime(text, undefined))) throw new UsageError(`--start "${text}" must be now, 2026-01-15T07:00 (Vietnam time) or an ISO date-time with an offset`);
  return text;
}

function parseFaults(text: string): FaultType[] {
  const names = splitList(text.toLowerCase());
  if (names.includes('all')) return [...FAULT_TYPES];
  if (names.length === 0) throw new UsageError(`--faults needs a list, e.g. --faults stuck,spike (any of ${Object.keys(FAULT_FLAG_NAMES).join(', ')}, or all)`);
  return names.map((name) => {
    const type = FAULT_FLAG_NAMES[name];
    if (!type) throw new UsageError(`--faults: "${name}" must be one of dropout, stuck, spike, malformed, wrong-topic, flood, or all`);
    return type;
  });
}

function parseRecord(path: string, sizeText: string | undefined, timeText: string | undefined, baseDir: string): NonNullable<CliOptions['record']> {
  if (path.trim() === '') throw new UsageError('--record needs a file name, e.g. --record rec/city.ndjson.gz');
  const rotateBytes = sizeText === undefined ? undefined : parseSize('--record-rotate-size', sizeText);
  const rotateMs = timeText === undefined ? undefined : parseDurationFlag('--record-rotate-time', timeText);
  return { path: isAbsolute(path) ? path : resolve(baseDir, path), gzip: path.endsWith('.gz'), rotateBytes, rotateMs };
}


function parseProvinces(text: string): string[] {
  if (text.trim() === 'all') return [...PROVINCE_CODES];
  const codes = splitList(text);
  if (codes.length === 0) throw new UsageError('--provinces needs at least one province code, e.g. --provinces 01,79,48');
  for (const code of codes) {
    if (!isProvinceCode(code)) {
      throw new UsageError(`--provinces: "${code}" is not a province code; use codes such as ${['01', '79', '48'].map((c) => `${c} (${provinceByCode(c)?.name ?? '?'})`).join(', ')}; all 34: ${PROVINCE_CODES.join(', ')}`);
    }
  }
  return codes;
}

function parseWholeNumber(flag: string, text: string, min: number, max: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new UsageError(`${flag} "${text}" must be a whole number from ${min} to ${max}`);
  return value;
}






/** Names of the scenarios in simulators/scenarios/. */
export function shippedScenarioNames(): string[] {
  try {
    return readdirSync(SCENARIOS_DIR)
      .filter((f) => /\.(ya?ml|json)$/.test(f))
      .map((f) => f.replace(/\.(ya?ml|json)$/, ''))
      .sort();
  } catch {
    return [];
  }
}

export { parseDuration } from '../units.js';
export { parseSize, UsageError } from './tool-flags.js';
