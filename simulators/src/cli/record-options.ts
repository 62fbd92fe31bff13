import { BROKER_RECORDING_DEFAULTS } from '../recording.js';
import { BROKER_FLAGS, BROKER_FLAGS_USAGE, parseBrokerFlags, parseDurationFlag, parseSize, parseToolFlags, resolvePath, UsageError, type BrokerFlagValues } from './tool-flags.js';

/** Command-line flags of `record`, parsed and validated without side effects (so tests can call it). */
export interface RecordCliOptions extends BrokerFlagValues {
  /** First file of the recording (absolute). */
  readonly out: string;
  readonly gzip: boolean;
  readonly rotateBytes: number | undefined;
  readonly rotateMs: number | undefined;
  readonly filters: readonly string[];
  /** Stop after this long; undefined: until Ctrl+C. */
  readonly durationMs: number | undefined;
  readonly includeRetained: boolean;
  readonly overwrite: boolean;
  readonly statusIntervalMs: number | undefined;
}

export type RecordCliCommand = { readonly help: true } | { readonly help: false; readonly options: RecordCliOptions };

export const RECORD_USAGE = `Usage: pnpm --filter @citypulse/simulators record -- --out FILE [flags]

Subscribes to the broker and records every message it receives (NDJSON, one message per line).

Recording:
  --out FILE             first file of the recording, e.g. rec/city.ndjson or rec/city.ndjson.gz (required)
  --gzip                 compress (implied by an --out ending in .gz; ".gz" is appended otherwise)
  --rotate-size SIZE     start a new part after SIZE of uncompressed data, e.g. 100MB, 1GB
  --rotate-time D        start a new part after D of recorded time, e.g. 1h, 30m
                         parts: city.ndjson.gz, city.1.ndjson.gz, city.2.ndjson.gz …
  --filter TOPIC         topic filter, repeatable (default ${BROKER_RECORDING_DEFAULTS.filters.join(', ')})
  --duration D           stop after D, e.g. 10m (default: until Ctrl+C)
  --include-retained     also record the retained messages the broker sends on subscribing
  --force                replace an existing recording at --out
  --status-interval D    print a status line every D (default: redrawn line on a terminal, 10s otherwise)

${BROKER_FLAGS_USAGE}`;

const FLAGS = {
  ...BROKER_FLAGS,
  out: { type: 'string' },
  gzip: { type: 'boolean' },
  'rotate-size': { type: 'string' },
  'rotate-time': { type: 'string' },
  filter: { type: 'string', multiple: true },
  duration: { type: 'string' },
  'include-retained': { type: 'boolean' },
  force: { type: 'boolean' },
  'status-interval': { type: 'string' },
} as const;

/** Parses `argv` (without node and the script); `baseDir` resolves relative paths (pnpm's INIT_CWD). */
export function parseRecordCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, baseDir: string): RecordCliCommand {
  const values = parseToolFlags(argv, FLAGS);
  if (values.help) return { help: true };
  const broker = parseBrokerFlags(values, env, baseDir);

  if (values.out === undefined || values.out.trim() === '') throw new UsageError('--out is required: the file to record to, e.g. --out rec/city.ndjson.gz');
  const gzip = values.gzip === true || values.out.endsWith('.gz');
  const out = resolvePath(baseDir, gzip && !values.out.endsWith('.gz') ? `${values.out}.gz` : values.out);
  const filters = values.filter ?? [...BROKER_RECORDING_DEFAULTS.filters];
  for (const filter of filters) checkFilter(filter);

  return {
    help: false,
    options: {
      ...broker,
      out,
      gzip,
      rotateBytes: values['rotate-size'] === undefined ? undefined : parseSize('--rotate-size', values['rotate-size']),
      rotateMs: values['rotate-time'] === undefined ? undefined : parseDurationFlag('--rotate-time', values['rotate-time'], 1000),
      filters: [...new Set(filters)],
      durationMs: values.duration === undefined ? undefined : parseDurationFlag('--duration', values.duration, 100),
      includeRetained: values['include-retained'] === true,
      overwrite: values.force === true,
      statusIntervalMs: values['status-interval'] === undefined ? undefined : parseDurationFlag('--status-interval', values['status-interval'], 100),
    },
  };
}

/** MQTT topic filter syntax [MQTT-4.7.1]: '#' only as the whole last level, '+' only as a whole level. */
function checkFilter(filter: string): void {
  const levels = filter.split('/');
  const bad =
    filter === '' ||
    filter.length > 1024 ||
    levels.some((level, i) => (level.includes('#') && (level !== '#' || i !== levels.length - 1)) || (level.includes('+') && level !== '+'));
  if (bad) throw new UsageError(`--filter "${filter}" is not an MQTT topic filter; e.g. city/#, city/01/#, city/+/traffic/+/telemetry`);
}
