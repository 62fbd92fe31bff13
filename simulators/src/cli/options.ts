import { isAbsolute, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { COMMON_CONFIG, DOMAINS, isDomain, isProvinceCode, PROVINCE_CODES, provinceByCode, type Domain } from '@citypulse/contracts';
import { SIMULATION_DEFAULTS, type SimulationOptions, type SimulationStats } from '../simulation.js';

/** Command-line flags of `simulate`, parsed and validated without side effects (so tests can call it). */
export interface CliOptions extends Omit<SimulationOptions, 'logger' | 'clock'> {
  readonly seed: number;
  readonly statusIntervalMs: number;
  readonly logLevel: string;
}

export type CliCommand = { readonly help: true } | { readonly help: false; readonly options: CliOptions };

/** A mistake in the command line: printed with the usage hint, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

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

export const USAGE = `Usage: pnpm --filter @citypulse/simulators simulate -- [flags]

Simulated field devices publishing readings to the MQTT broker.

Flags:
  --mqtt-url URL         broker URL (env MQTT_URL, default ${CLI_DEFAULTS.mqttUrl})
  --data-dir DIR         folder of devices.json and simulator-secrets.json
                         (env DATA_DIR, default ${CLI_DEFAULTS.dataDir}, relative to where you ran the command)
  --provinces CODES      comma-separated province codes, or "all" (default ${CLI_DEFAULTS.provinces})
  --domains LIST         any of ${DOMAINS.join(',')} (default all)
  --devices N            devices per province and domain, 1–${SIMULATION_DEFAULTS.maxDevicesPerProvince} (default ${CLI_DEFAULTS.devices})
  --interval DURATION    publish interval per device, e.g. 5s, 500ms, 1m (default ${CLI_DEFAULTS.interval})
  --seed N               seed of placement and readings (default ${SIMULATION_DEFAULTS.seed})
  --status-interval D    how often to print the status line (default ${CLI_DEFAULTS.statusInterval})
  --log-level LEVEL      ${LOG_LEVELS.join(', ')} (env LOG_LEVEL, default ${CLI_DEFAULTS.logLevel}); logs go to stderr
  -h, --help             show this help`;

const FLAGS = {
  'mqtt-url': { type: 'string' },
  'data-dir': { type: 'string' },
  provinces: { type: 'string' },
  domains: { type: 'string' },
  devices: { type: 'string' },
  interval: { type: 'string' },
  seed: { type: 'string' },
  'status-interval': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * Parses `argv` (without node and the script). `baseDir` resolves a relative --data-dir: pnpm runs
 * the script inside simulators/, so the CLI passes the directory the user ran pnpm from (INIT_CWD).
 */
export function parseCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, baseDir: string): CliCommand {
  // `pnpm … simulate -- --devices 2` forwards the "--" itself; parseArgs would treat the rest as positionals.
  const args = argv[0] === '--' ? argv.slice(1) : [...argv];
  let values: { [K in keyof typeof FLAGS]?: (typeof FLAGS)[K]['type'] extends 'boolean' ? boolean : string };
  try {
    ({ values } = parseArgs({ args, options: FLAGS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  if (values.help) return { help: true };

  const mqttUrl = values['mqtt-url'] ?? nonEmpty(env.MQTT_URL) ?? CLI_DEFAULTS.mqttUrl;
  checkMqttUrl(mqttUrl, values['mqtt-url'] !== undefined ? '--mqtt-url' : nonEmpty(env.MQTT_URL) !== undefined ? 'MQTT_URL' : '--mqtt-url');
  const dataDirText = values['data-dir'] ?? nonEmpty(env.DATA_DIR) ?? CLI_DEFAULTS.dataDir;
  if (dataDirText.trim() === '') throw new UsageError('--data-dir must name a folder');
  const logLevel = values['log-level'] ?? nonEmpty(env.LOG_LEVEL) ?? CLI_DEFAULTS.logLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`--log-level "${logLevel}" must be one of ${LOG_LEVELS.join(', ')}`);

  const intervalMs = parseDurationFlag('--interval', values.interval ?? CLI_DEFAULTS.interval);
  if (intervalMs < SIMULATION_DEFAULTS.minIntervalMs || intervalMs > SIMULATION_DEFAULTS.maxIntervalMs) {
    throw new UsageError(`--interval ${values.interval ?? CLI_DEFAULTS.interval} must be from ${SIMULATION_DEFAULTS.minIntervalMs} ms to 1 h`);
  }
  const statusIntervalMs = parseDurationFlag('--status-interval', values['status-interval'] ?? CLI_DEFAULTS.statusInterval);
  if (statusIntervalMs < 1000) throw new UsageError('--status-interval must be at least 1s');

  return {
    help: false,
    options: {
      mqttUrl,
      dataDir: isAbsolute(dataDirText) ? dataDirText : resolve(baseDir, dataDirText),
      provinces: parseProvinces(values.provinces ?? CLI_DEFAULTS.provinces),
      domains: parseDomains(values.domains ?? CLI_DEFAULTS.domains),
      devicesPerProvince: parseWholeNumber('--devices', values.devices ?? CLI_DEFAULTS.devices, 1, SIMULATION_DEFAULTS.maxDevicesPerProvince),
      intervalMs,
      seed: values.seed === undefined ? SIMULATION_DEFAULTS.seed : parseWholeNumber('--seed', values.seed, 0, 0xffff_ffff),
      statusIntervalMs,
      logLevel,
    },
  };
}

/** "5s", "500ms", "1.5s", "2m" → milliseconds; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(text.trim());
  if (!match) return undefined;
  const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(match[1]) * unitMs);
}

/** One status line: what an operator watching the terminal needs at a glance. */
export function formatStatus(stats: SimulationStats, devices: number, ratePerSecond: number, at: Date): string {
  const time = at.toISOString().slice(11, 19);
  return `${time}Z  ${ratePerSecond.toFixed(1)} msg/s  connected ${stats.connected}/${devices}  published ${stats.published}  errors ${stats.errors}`;
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

function parseDomains(text: string): Domain[] {
  const names = splitList(text);
  if (names.length === 0) throw new UsageError(`--domains needs at least one of ${DOMAINS.join(', ')}`);
  return names.map((name) => {
    if (!isDomain(name)) throw new UsageError(`--domains: "${name}" must be one of ${DOMAINS.join(', ')}`);
    return name;
  });
}

function parseWholeNumber(flag: string, text: string, min: number, max: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new UsageError(`${flag} "${text}" must be a whole number from ${min} to ${max}`);
  return value;
}

function parseDurationFlag(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new UsageError(`${flag} "${text}" is not a duration; write it with a unit, e.g. 5s, 500ms or 1m`);
  return ms;
}

function checkMqttUrl(text: string, source: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${source} "${text}" is not a URL; e.g. ${CLI_DEFAULTS.mqttUrl}`);
  }
  if (!['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'].includes(url.protocol)) {
    throw new UsageError(`${source} "${text}" must use mqtt://, mqtts://, ws:// or wss://`);
  }
}

function splitList(text: string): string[] {
  return [
    ...new Set(
      text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    ),
  ];
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function describeParseError(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  const flag = /'(-{1,2}[^' ]+)/.exec(message)?.[1] ?? '';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${flag}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return `${flag} needs a value (write ${flag}=VALUE when the value starts with "-")`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? ''}; every value belongs to a flag, e.g. --devices 3`;
    default:
      return message;
  }
}
