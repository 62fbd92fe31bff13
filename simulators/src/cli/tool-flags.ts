import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { CodedError, COMMON_CONFIG, DOMAINS, isDomain, type Domain } from '@citypulse/contracts';
import { parseDuration } from '../units.js';

/**
 * Flags and helpers shared by the `record` and `replay` commands: broker URL, the tools service
 * account's credentials, data folder, log level; sizes, durations and times as people write them.
 * Parsing is pure (tests call it); only resolveToolsCredentials reads a file.
 */

/** A mistake in the command line: printed with the usage hint, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const TOOL_DEFAULTS = {
  mqttUrl: 'mqtt://127.0.0.1:1883',
  dataDir: COMMON_CONFIG.DATA_DIR.default,
  logLevel: COMMON_CONFIG.LOG_LEVEL.default,
  /** The tools service account `npm start` creates (scripts/start.ts). */
  toolsUsername: 'tools',
  credentialsFile: 'credentials.json',
} as const;

const LOG_LEVELS: readonly string[] = COMMON_CONFIG.LOG_LEVEL.values;

export const BROKER_FLAGS = {
  'mqtt-url': { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  'data-dir': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const BROKER_FLAGS_USAGE = `Broker and account:
  --mqtt-url URL         broker URL (env MQTT_URL, default ${TOOL_DEFAULTS.mqttUrl})
  --username NAME        a tools service account (env MQTT_USERNAME, default ${TOOL_DEFAULTS.toolsUsername})
  --password SECRET      its secret (env MQTT_PASSWORD; default: the tools secret in DATA_DIR/${TOOL_DEFAULTS.credentialsFile},
                         which npm start writes)
  --data-dir DIR         folder of ${TOOL_DEFAULTS.credentialsFile} (env DATA_DIR, default ${TOOL_DEFAULTS.dataDir},
                         relative to where you ran the command)
  --log-level LEVEL      ${LOG_LEVELS.join(', ')} (env LOG_LEVEL, default ${TOOL_DEFAULTS.logLevel}); logs go to stderr
  -h, --help             show this help`;

export interface BrokerFlagValues {
  readonly mqttUrl: string;
  /** Undefined: the tools account from the credentials file. */
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly dataDir: string;
  readonly logLevel: string;
}

type Env = Readonly<Record<string, string | undefined>>;

export function parseBrokerFlags(values: { 'mqtt-url'?: string; username?: string; password?: string; 'data-dir'?: string; 'log-level'?: string }, env: Env, baseDir: string): BrokerFlagValues {
  const urlFromFlag = values['mqtt-url'];
  const mqttUrl = urlFromFlag ?? nonEmpty(env.MQTT_URL) ?? TOOL_DEFAULTS.mqttUrl;
  checkMqttUrl(mqttUrl, urlFromFlag === undefined && nonEmpty(env.MQTT_URL) !== undefined ? 'MQTT_URL' : '--mqtt-url');
  const username = values.username ?? nonEmpty(env.MQTT_USERNAME);
  if (username !== undefined && username.trim() === '') throw new UsageError('--username must not be empty');
  const password = values.password ?? nonEmpty(env.MQTT_PASSWORD);
  if (password !== undefined && password === '') throw new UsageError('--password must not be empty');
  const dataDirText = values['data-dir'] ?? nonEmpty(env.DATA_DIR) ?? TOOL_DEFAULTS.dataDir;
  if (dataDirText.trim() === '') throw new UsageError('--data-dir must name a folder');
  const logLevel = values['log-level'] ?? nonEmpty(env.LOG_LEVEL) ?? TOOL_DEFAULTS.logLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`--log-level "${logLevel}" must be one of ${LOG_LEVELS.join(', ')}`);
  return { mqttUrl, username, password, dataDir: resolvePath(baseDir, dataDirText), logLevel };
}

/**
 * The account to log in with: --username/--password (or MQTT_USERNAME/MQTT_PASSWORD), else the
 * tools account from DATA_DIR/credentials.json as `npm start` writes it
 * (`{"services":{"tools":SECRET,…},…}`).
 */
export async function resolveToolsCredentials(flags: BrokerFlagValues): Promise<{ username: string; password: string }> {
  const username = flags.username ?? TOOL_DEFAULTS.toolsUsername;
  if (flags.password !== undefined) return { username, password: flags.password };
  const file = join(flags.dataDir, TOOL_DEFAULTS.credentialsFile);
  const hint = `pass --password (or set MQTT_PASSWORD), or point --data-dir at the folder where npm start keeps ${TOOL_DEFAULTS.credentialsFile}`;
  if (username !== TOOL_DEFAULTS.toolsUsername) throw new CodedError('E_CONFIG', `no password for ${username}: ${hint}`);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new CodedError('E_CONFIG', `no password given and ${file} cannot be read: ${hint}`);
  }
  let secret: unknown;
  try {
    secret = (JSON.parse(text) as { services?: { tools?: unknown } }).services?.tools;
  } catch {
    secret = undefined;
  }
  if (typeof secret !== 'string' || secret === '') throw new CodedError('E_CONFIG', `${file} holds no tools secret (services.tools): ${hint}`);
  return { username, password: secret };
}

/** "100MB", "1.5GiB", "512k", "1000000" → bytes (K, M, G are 1024-based, with or without "B"/"iB"). */
export function parseSize(flag: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$/i.exec(text.trim());
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(match?.[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g'];
  const bytes = match ? Math.round(Number(match[1]) * unit) : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1024) throw new UsageError(`${flag} "${text}" must be a size of at least 1KB, e.g. 100MB or 1GB`);
  return bytes;
}

export function parseDurationFlag(flag: string, text: string, minMs = 1): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new UsageError(`${flag} "${text}" is not a duration; write it with a unit, e.g. 10m, 1h, 30s or 500ms`);
  if (ms < minMs) throw new UsageError(`${flag} "${text}" must be at least ${minMs} ms`);
  return ms;
}

/** ISO 8601 ("2026-11-22T08:00:00+07:00") or epoch milliseconds → epoch ms. */
export function parseTimeFlag(flag: string, text: string): number {
  const trimmed = text.trim();
  const ms = /^\d{1,15}$/.test(trimmed) ? Number(trimmed) : /^\d{4}-\d{2}-\d{2}/.test(trimmed) ? Date.parse(trimmed) : Number.NaN;
  if (!Number.isFinite(ms) || ms < 0) throw new UsageError(`${flag} "${text}" is not a time: use ISO 8601 (2026-11-22T08:00:00+07:00) or epoch milliseconds`);
  return ms;
}

/** `--domains traffic,energy` → the domains, each checked. */
export function parseDomains(text: string): Domain[] {
  const names = splitList(text);
  if (names.length === 0) throw new UsageError(`--domains needs at least one of ${DOMAINS.join(', ')}`);
  return names.map((name) => {
    if (!isDomain(name)) throw new UsageError(`--domains: "${name}" must be one of ${DOMAINS.join(', ')}`);
    return name;
  });
}

export function splitList(text: string): string[] {
  return [
    ...new Set(
      text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    ),
  ];
}

export function resolvePath(baseDir: string, path: string): string {
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

export function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** `pnpm … record -- --out x` forwards the "--" itself; parseArgs would treat the rest as positionals. */
export function withoutLeadingDashes(argv: readonly string[]): string[] {
  return argv[0] === '--' ? argv.slice(1) : [...argv];
}

/** Parses a command's flags (strict, no positionals); a bad command line is a UsageError naming the flag. */
export function parseToolFlags<const O extends NonNullable<ParseArgsConfig['options']>>(argv: readonly string[], options: O) {
  try {
    return parseArgs({ args: withoutLeadingDashes(argv), options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
}

export function checkMqttUrl(text: string, source: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${source} "${text}" is not a URL; e.g. ${TOOL_DEFAULTS.mqttUrl}`);
  }
  if (!['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'ws:', 'wss:'].includes(url.protocol)) {
    throw new UsageError(`${source} "${text}" must use mqtt://, mqtts://, ws:// or wss://`);
  }
}

/** The URL without its password, for logs and status lines. */
export function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return text;
  }
}

/** node:util parseArgs errors, said in terms of the flags. */
export function describeParseError(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  const flag = /'(-{1,2}[^' ]+)/.exec(message)?.[1] ?? '';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${flag}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return `${flag} needs a value (write ${flag}=VALUE when the value starts with "-")`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? ''}; every value belongs to a flag`;
    default:
      return message;
  }
}
