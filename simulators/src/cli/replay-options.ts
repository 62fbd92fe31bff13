import { DOMAINS, isDeviceId, isProvinceCode, readConfig, type Domain } from '@citypulse/contracts';
import { INFLUX_CONFIG, influxSettingsFrom, type InfluxSettings } from '@citypulse/infra';
import { REPLAY_DEFAULTS, type ReplaySpeed } from '../replay.js';
import {
  BROKER_FLAGS,
  BROKER_FLAGS_USAGE,
  parseBrokerFlags,
  parseDomains,
  parseTimeFlag,
  parseToolFlags,
  resolvePath,
  splitList,
  UsageError,
  type BrokerFlagValues,
} from './tool-flags.js';

export type ReplayCliSource =
  | { readonly kind: 'recording'; readonly paths: readonly string[] }
  | {
      readonly kind: 'influx';
      readonly influx: InfluxSettings;
      readonly from: number;
      readonly to: number;
      readonly provinces: readonly string[] | undefined;
      readonly domains: readonly Domain[] | undefined;
      readonly devices: readonly string[] | undefined;
    };

/** Command-line flags of `replay`, parsed and validated without side effects (so tests can call it). */
export interface ReplayCliOptions extends BrokerFlagValues {
  readonly source: ReplayCliSource;
  readonly speed: ReplaySpeed;
  readonly shiftToNow: boolean;
  readonly maxInFlight: number;
}

export type ReplayCliCommand = { readonly help: true } | { readonly help: false; readonly options: ReplayCliOptions };

export const REPLAY_USAGE = `Usage: pnpm --filter @citypulse/simulators replay -- (--from-file FILE | --from-influx --start TIME [--end TIME]) [flags]

Publishes a recording, or readings read back from InfluxDB, into the broker, keeping their order
and relative timing. Ingest, alerts and dashboards see them as live data. On a terminal: space
pauses and resumes, q stops.

Source (one of):
  --from-file FILE       a recording; repeatable; the first part of a rotated set brings the other parts
  --from-influx          readings stored in InfluxDB, one message per reading on its device's telemetry topic
    --start TIME         start of the range, ISO 8601 (2026-11-22T08:00:00+07:00) or epoch ms (required)
    --end TIME           end of the range, exclusive (default: now)
    --provinces CODES    only these provinces, e.g. 01,79
    --domains LIST       only these domains (${DOMAINS.join(',')})
    --devices IDS        only these devices
    --influx-url URL     InfluxDB (env INFLUX_URL, default ${INFLUX_CONFIG.INFLUX_URL.default})
    --influx-database DB database (env INFLUX_DATABASE, default ${INFLUX_CONFIG.INFLUX_DATABASE.default});
                         retention policy, API version and token from INFLUX_RETENTION_POLICY, INFLUX_API, INFLUX_TOKEN …

Replay:
  --speed S              ${REPLAY_DEFAULTS.minSpeed}–${REPLAY_DEFAULTS.maxSpeed} (times real time) or "max" (as fast as the broker acknowledges); default 1
  --shift-to-now         rewrite each reading's ts so it looks measured now (keeps the gaps between readings)
  --max-in-flight N      messages awaiting acknowledgement, 1–${REPLAY_DEFAULTS.maxInFlightLimit} (default ${REPLAY_DEFAULTS.maxInFlight})

${BROKER_FLAGS_USAGE}`;

const FLAGS = {
  ...BROKER_FLAGS,
  'from-file': { type: 'string', multiple: true },
  'from-influx': { type: 'boolean' },
  start: { type: 'string' },
  end: { type: 'string' },
  provinces: { type: 'string' },
  domains: { type: 'string' },
  devices: { type: 'string' },
  'influx-url': { type: 'string' },
  'influx-database': { type: 'string' },
  speed: { type: 'string' },
  'shift-to-now': { type: 'boolean' },
  'max-in-flight': { type: 'string' },
} as const;

/** Parses `argv` (without node and the script); `baseDir` resolves relative paths; `now` is the default --end. */
export function parseReplayCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, baseDir: string, now: number = Date.now()): ReplayCliCommand {
  const values = parseToolFlags(argv, FLAGS);
  if (values.help) return { help: true };
  const broker = parseBrokerFlags(values, env, baseDir);

  const files = values['from-file'];
  const fromInflux = values['from-influx'] === true;
  if (files && fromInflux) throw new UsageError('--from-file and --from-influx exclude each other: replay one source at a time');
  if (!files && !fromInflux) throw new UsageError('say what to replay: --from-file FILE or --from-influx --start TIME');
  const influxOnly = (['start', 'end', 'provinces', 'domains', 'devices', 'influx-url', 'influx-database'] as const).filter((flag) => values[flag] !== undefined);
  if (files && influxOnly.length > 0) throw new UsageError(`--${influxOnly[0]} belongs to --from-influx; a recording is replayed whole`);

  let source: ReplayCliSource;
  if (files) {
    if (files.some((f) => f.trim() === '')) throw new UsageError('--from-file must name a file');
    source = { kind: 'recording', paths: files.map((f) => resolvePath(baseDir, f)) };
  } else {
    if (values.start === undefined) throw new UsageError('--from-influx needs --start TIME (ISO 8601 or epoch ms)');
    const from = parseTimeFlag('--start', values.start);
    const to = values.end === undefined ? now : parseTimeFlag('--end', values.end);
    if (to <= from) throw new UsageError(`--end ${new Date(to).toISOString()} must be after --start ${new Date(from).toISOString()}`);
    source = {
      kind: 'influx',
      influx: influxSettings(values['influx-url'], values['influx-database'], env),
      from,
      to,
      provinces: values.provinces === undefined ? undefined : parseProvinces(values.provinces),
      domains: values.domains === undefined ? undefined : parseDomains(values.domains),
      devices: values.devices === undefined ? undefined : parseDevices(values.devices),
    };
  }

  return {
    help: false,
    options: {
      ...broker,
      source,
      speed: parseSpeed(values.speed ?? '1'),
      shiftToNow: values['shift-to-now'] === true,
      maxInFlight: parseMaxInFlight(values['max-in-flight'] ?? String(REPLAY_DEFAULTS.maxInFlight)),
    },
  };
}

export function parseSpeed(text: string): ReplaySpeed {
  if (text.trim().toLowerCase() === 'max') return 'max';
  const trimmed = text.trim().toLowerCase().replace(/[x×]$/, '');
  const speed = /^\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!(speed >= REPLAY_DEFAULTS.minSpeed && speed <= REPLAY_DEFAULTS.maxSpeed)) {
    throw new UsageError(`--speed "${text}" must be ${REPLAY_DEFAULTS.minSpeed}–${REPLAY_DEFAULTS.maxSpeed} or "max"`);
  }
  return speed;
}

function parseMaxInFlight(text: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1 || value > REPLAY_DEFAULTS.maxInFlightLimit) {
    throw new UsageError(`--max-in-flight "${text}" must be a whole number from 1 to ${REPLAY_DEFAULTS.maxInFlightLimit} (MQTT packet ids are 16-bit)`);
  }
  return value;
}

function parseProvinces(text: string): string[] {
  const codes = splitList(text);
  if (codes.length === 0) throw new UsageError('--provinces needs at least one province code, e.g. --provinces 01,79');
  for (const code of codes) if (!isProvinceCode(code)) throw new UsageError(`--provinces: "${code}" is not one of the 34 province codes (e.g. 01 Hà Nội, 79 Hồ Chí Minh)`);
  return codes;
}

function parseDevices(text: string): string[] {
  const ids = splitList(text);
  if (ids.length === 0) throw new UsageError('--devices needs at least one device id');
  for (const id of ids) if (!isDeviceId(id)) throw new UsageError(`--devices: "${id}" is not a device id (3–64 of a-z, 0-9, '-', '_')`);
  return ids;
}

function influxSettings(url: string | undefined, database: string | undefined, env: Readonly<Record<string, string | undefined>>): InfluxSettings {
  let config;
  try {
    config = readConfig(INFLUX_CONFIG, { ...env, ...(url !== undefined ? { INFLUX_URL: url } : {}), ...(database !== undefined ? { INFLUX_DATABASE: database } : {}) });
  } catch (err) {
    const message = (err as Error).message.replace(/INFLUX_URL/g, url !== undefined ? '--influx-url' : 'INFLUX_URL').replace(/INFLUX_DATABASE/g, database !== undefined ? '--influx-database' : 'INFLUX_DATABASE');
    throw new UsageError(message);
  }
  return influxSettingsFrom(config);
}
