import { InfluxDB } from '@influxdata/influxdb-client';

/**
 * The one way the services talk to InfluxDB. Writes go through the client's transport
 * (writeLines); reads are InfluxQL over `/query`, which InfluxDB 1.x, 2.x (v1 compatibility with
 * a DBRP mapping) and 3.x all answer, so one query layer serves every server version.
 */
export interface InfluxSettings {
  readonly url: string;
  /** 1.x database (2.x/3.x: the database name mapped to the bucket). */
  readonly database: string;
  /** Retention policy of raw data. */
  readonly retentionPolicy: string;
  /** 'v1' writes to /write?db=… (InfluxDB 1.x); 'v2' to /api/v2/write with org and bucket. */
  readonly apiVersion: 'v1' | 'v2';
  readonly token?: string | undefined;
  readonly org?: string | undefined;
  readonly bucket?: string | undefined;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
}

export interface SeriesResult {
  readonly name: string;
  readonly tags?: Record<string, string>;
  readonly columns: readonly string[];
  readonly values: readonly (readonly unknown[])[];
}

interface QueryResponse {
  results?: { statement_id?: number; series?: SeriesResult[]; error?: string }[];
  error?: string;
}

export class InfluxQueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InfluxQueryError';
  }
}

export interface WriteOptions {
  /** 1.x only: into this retention policy instead of the raw one (the roll-ups). */
  readonly retentionPolicy?: string;
  /** Bodies from this size on are gzipped (unless InfluxDB is on loopback); default 64 KiB. */
  readonly gzipMinBytes?: number;
}

export class Influx {
  readonly settings: InfluxSettings;
  readonly client: InfluxDB;
  /** Where writeLines posts: v1 /write?db&rp&precision=ms, v2 /api/v2/write?org&bucket&precision=ms. */
  readonly #writePath: string;
  /** Off on loopback (see writeLines). */
  readonly #gzip: boolean;
  readonly #rpPaths = new Map<string, string>();

  constructor(settings: InfluxSettings) {
    this.settings = settings;
    const token = settings.token ?? (settings.username ? `${settings.username}:${settings.password ?? ''}` : undefined);
    this.client = new InfluxDB({ url: settings.url, ...(token ? { token } : {}) });
    this.#writePath =
      settings.apiVersion === 'v2'
        ? `/api/v2/write?${new URLSearchParams({ org: settings.org ?? '', bucket: settings.bucket ?? settings.database, precision: 'ms' }).toString()}`
        : `/write?${new URLSearchParams({ db: settings.database, rp: settings.retentionPolicy, precision: 'ms' }).toString()}`;
    this.#gzip = !isLoopback(settings.url);
  }

  /**
   * Writes lines of line protocol (millisecond timestamps) in one request, through the client's
   * transport: its authentication, and its HttpError (statusCode, body) when InfluxDB refuses.
   * Unlike the WriteApi it keeps no buffer of its own, which measures every line's UTF-8 length
   * in JavaScript (about 3 µs a line: a seventh of ingest's CPU in the bench). The body is
   * gzipped from `gzipMinBytes` on, unless InfluxDB is on this machine (loopback), where
   * compressing costs both processes CPU and saves nothing.
   */
  async writeLines(lines: readonly string[], options: WriteOptions = {}): Promise<void> {
    if (lines.length === 0) return;
    const gzipMinBytes = options.gzipMinBytes ?? 64 * 1024;
    await this.client.transport.request(options.retentionPolicy === undefined ? this.#writePath : this.#rpWritePath(options.retentionPolicy), lines.join('\n'), {
      method: 'POST',
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      ...(this.#gzip ? { gzipThreshold: gzipMinBytes } : {}),
    });
  }

  /** The 1.x write path into another retention policy of the database (roll-ups). */
  #rpWritePath(retentionPolicy: string): string {
    if (this.settings.apiVersion !== 'v1') throw new Error(`writing to retention policy "${retentionPolicy}" needs the 1.x write API (INFLUX_API=v1)`);
    let path = this.#rpPaths.get(retentionPolicy);
    if (path === undefined) {
      path = `/write?${new URLSearchParams({ db: this.settings.database, rp: retentionPolicy, precision: 'ms' }).toString()}`;
      this.#rpPaths.set(retentionPolicy, path);
    }
    return path;
  }

  /**
   * Runs InfluxQL. Values are passed as bound parameters (`$name` in the query, InfluxDB's
   * `params`), never spliced into the text; identifiers must be checked by the caller
   * (see quoteIdentifier).
   */
  async query(influxql: string, params: Record<string, string | number | boolean> = {}): Promise<SeriesResult[][]> {
    const form = new URLSearchParams({ db: this.settings.database, q: influxql, epoch: 'ms' });
    if (Object.keys(params).length > 0) form.set('params', JSON.stringify(params));
    const body = (await this.client.transport.request('/query', form.toString(), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    })) as QueryResponse | string;
    const parsed: QueryResponse = typeof body === 'string' ? (JSON.parse(body) as QueryResponse) : body;
    if (parsed.error) throw new InfluxQueryError(parsed.error);
    return (parsed.results ?? []).map((r) => {
      if (r.error) throw new InfluxQueryError(r.error);
      return r.series ?? [];
    });
  }

  async ping(timeoutMs = 2000): Promise<boolean> {
    try {
      const res = await fetch(`${this.settings.url}/ping`, { signal: AbortSignal.timeout(timeoutMs) });
      return res.status === 204 || res.status === 200;
    } catch {
      return false;
    }
  }

  /**
   * Creates the database and its raw retention policy (1.x). Idempotent: both statements succeed
   * when the objects exist; a changed duration is applied with ALTER.
   */
  async ensureDatabase(rawRetention: string): Promise<void> {
    const db = quoteIdentifier(this.settings.database);
    const rp = quoteIdentifier(this.settings.retentionPolicy);
    await this.query(`CREATE DATABASE ${db}`);
    await this.query(`CREATE RETENTION POLICY ${rp} ON ${db} DURATION ${checkDuration(rawRetention)} REPLICATION 1 SHARD DURATION 1d DEFAULT`).catch(async (err: unknown) => {
      if (!(err instanceof InfluxQueryError) || !/already exists/.test(err.message)) throw err;
      await this.query(`ALTER RETENTION POLICY ${rp} ON ${db} DURATION ${checkDuration(rawRetention)} DEFAULT`);
    });
  }
}

/** Double-quotes an InfluxQL identifier, escaping backslashes and quotes. */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** InfluxQL duration literal such as 30d, 12h, 90m or INF. */
export function checkDuration(text: string): string {
  if (!/^(INF|\d+(ns|u|µ|ms|s|m|h|d|w))$/.test(text)) throw new Error(`"${text}" is not an InfluxQL duration (e.g. 30d, 12h, INF)`);
  return text;
}

const DURATION_UNIT_MS: Record<string, number> = { ns: 1e-6, u: 1e-3, µ: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** An InfluxQL duration literal (30d, 12h, INF) in milliseconds; INF is Infinity. */
export function durationMs(text: string): number {
  checkDuration(text);
  if (text === 'INF') return Infinity;
  const match = /^(\d+)(ns|u|µ|ms|s|m|h|d|w)$/.exec(text) as RegExpExecArray;
  return Number(match[1]) * (DURATION_UNIT_MS[match[2] as string] as number);
}

/** Environment variables for InfluxDB, shared by ingest and api. */
export const INFLUX_CONFIG = {
  INFLUX_URL: { kind: 'url', default: 'http://127.0.0.1:8086', values: ['http', 'https'], description: 'InfluxDB base URL (1.x, 2.x or 3.x)' },
  INFLUX_DATABASE: { kind: 'string', default: 'citypulse', description: 'database (1.x) or database mapped to the bucket (2.x/3.x)' },
  INFLUX_RETENTION_POLICY: { kind: 'string', default: 'raw', description: 'retention policy of raw readings' },
  INFLUX_RAW_RETENTION: { kind: 'string', default: '30d', description: 'how long raw readings are kept (InfluxQL duration)' },
  INFLUX_API: { kind: 'enum', default: 'v1', values: ['v1', 'v2'], description: 'write endpoint: v1 (/write, InfluxDB 1.x) or v2 (/api/v2/write with org, bucket, token)' },
  INFLUX_TOKEN: { kind: 'string', optional: true, secret: true, description: 'API token (2.x/3.x) — optional' },
  INFLUX_ORG: { kind: 'string', optional: true, description: 'organisation (2.x, with INFLUX_API=v2) — optional' },
  INFLUX_BUCKET: { kind: 'string', optional: true, description: 'bucket (2.x, with INFLUX_API=v2) — optional' },
} as const;

export function influxSettingsFrom(config: {
  INFLUX_URL: string;
  INFLUX_DATABASE: string;
  INFLUX_RETENTION_POLICY: string;
  INFLUX_API: string;
  INFLUX_TOKEN: string | undefined;
  INFLUX_ORG: string | undefined;
  INFLUX_BUCKET: string | undefined;
}): InfluxSettings {
  return {
    url: config.INFLUX_URL,
    database: config.INFLUX_DATABASE,
    retentionPolicy: config.INFLUX_RETENTION_POLICY,
    apiVersion: config.INFLUX_API === 'v2' ? 'v2' : 'v1',
    token: config.INFLUX_TOKEN,
    org: config.INFLUX_ORG,
    bucket: config.INFLUX_BUCKET,
  };
}

/** True when the URL's host is this machine (localhost, 127.0.0.0/8, ::1). */
export function isLoopback(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return false;
  }
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
