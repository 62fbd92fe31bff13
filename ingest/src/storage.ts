import { Compile } from 'typebox/compile';
import type { Validator } from 'typebox/compile';
import { AlertAck, AlertEvent, ALERT_SEVERITIES, ALERT_STATES, CodedError, DOMAINS, isDeviceId, isProvinceCode, MEASUREMENTS, type Domain } from '@citypulse/contracts';
import { checkDuration, durationMs, InfluxQueryError, quoteIdentifier, type Influx, type SeriesResult } from '@citypulse/infra';
import { formatLine } from './line-protocol.js';

/**
 * Storage layout on InfluxDB 1.x, created (or brought up to date) by ensureStorage at every start
 * of every ingest worker:
 *
 *   raw         (DEFAULT RP, INFLUX_RAW_RETENTION)   traffic, environment, energy: one point per
 *                                                    reading; alerts: one point per alert event
 *   rollup_1m   (rollup1mRetention)                  1-minute windows of each domain measurement
 *   rollup_1h   (rollup1hRetention)                  1-hour windows of each domain measurement
 *
 * ## Roll-up field naming (what the api reads)
 *
 * Each roll-up point is one device's window: same measurement name as the raw data (`traffic`,
 * `environment`, `energy`), same tags (`province`, `device`, `kind`), time = the window's start
 * (UTC-aligned; Vietnam is UTC+7 with no daylight saving, so hours are also local hours). Windows
 * without readings have no point. Fields, as InfluxDB 1.6.7 names the results of
 * `SELECT min(*), mean(*), max(*), count(*)` (measured, see test/storage.test.ts):
 *
 * - numeric field f (reading fields flattened as stored, e.g. phaseVoltage_L1, derived ones such
 *   as vnAqi, loadFactor, and seq): `min_f`, `mean_f`, `max_f` (float) and `count_f` (integer,
 *   readings in the window that had f). E.g. `mean_pm25`, `max_vnAqi`, `min_phaseVoltage_L1`.
 * - boolean field b (outOfBand, congested): `min_b`, `max_b` (boolean: max = true in at least one
 *   reading, min = true in all) and `count_b`; no mean.
 * - string field s (los, frequencyBand, vnAqiDominant, laneDirection, refRoadSegment): `count_s`
 *   only; min, max and mean skip strings.
 * - `count_seq` is the number of readings in the window (every reading has seq).
 *
 * Combining windows: min of min_f, max of max_f, sum of count_f; a mean over several windows must
 * be weighted, Σ(mean_f × count_f) / Σ count_f (a plain mean of means is wrong when windows hold
 * different numbers of readings). rollupField() builds the names.
 *
 * ## Late readings: RESAMPLE
 *
 * A continuous query normally computes only the window that just ended, once, at its end; a
 * reading stored after that (ingest's flush, a gateway's 5 s upload, QoS 1 redelivery after a
 * reconnect, a device's offline backlog) would never reach the roll-up. Each roll-up therefore has
 * two CQs that recompute recent windows (a recomputed window overwrites its point, so repeats are
 * harmless):
 *
 * | roll-up | fresh CQ                 | late CQ                    | a late reading is included if it is at most |
 * |---------|--------------------------|----------------------------|----------------------------------------------|
 * | 1m      | RESAMPLE EVERY 1m FOR 2m | RESAMPLE EVERY 15m FOR 75m | 1 min late: within 1 min; 1 h late: within 15 min |
 * | 1h      | RESAMPLE EVERY 1h FOR 2h | RESAMPLE EVERY 6h FOR 30h  | 1 h late: within 1 h; 24 h late: within 6 h |
 *
 * Why two CQs rather than one `RESAMPLE EVERY 1m FOR 1h` and `EVERY 1h FOR 1d`: every run
 * re-aggregates all raw points in FOR, so one raw point is aggregated FOR/EVERY times. Measured on
 * this project's 2-core machines with InfluxDB 1.6.7 and 1,000 energy devices at 30 s (16 fields):
 * `EVERY 1m FOR 1h` took about 40 s per run, i.e. more than half a core all the time, and
 * `EVERY 1h FOR 1d` about 90 s per hourly run. The pairs above aggregate each raw point 2 + 5 = 7
 * times per roll-up instead of 60 and 24, and the fresh CQ keeps the newest windows current.
 * Readings later than that (a device offline for days, an import) need backfillRollups; ingest
 * can call it with `{ device }` for a backlog batch older than ROLLUPS[r].lateReadingsMs, which
 * costs only that device's series.
 *
 * Capacity: InfluxDB 1.6.7 aggregated 120,000 energy points (16 fields, 2,000 devices, one
 * minute) into 1-minute windows in 6.0 s on these 2-core machines, about 20,000 points/s, the
 * same as it writes them. With every raw point aggregated 7 times per roll-up (14 in all), CQ
 * roll-ups keep up with about 1,400 readings/s if InfluxDB gives them a whole core, call it
 * 1,000 readings/s: a province's fleet (thousands of devices at 20–60 s), not the 10,000+
 * readings/s of a national deployment, where the roll-ups belong in the stream: INGEST_ROLLUPS=stream
 * (the default; rollups.ts) computes the same points in ingest and uses backfillRollups only for
 * late readings and restarts. INGEST_ROLLUPS=none (continuousQueries: false, as for stream)
 * leaves no CQ behind.
 */

export const ROLLUP_AGGREGATES = ['min', 'mean', 'max', 'count'] as const;
export type RollupAggregate = (typeof ROLLUP_AGGREGATES)[number];

export const ROLLUP_RESOLUTIONS = ['1m', '1h'] as const;
export type RollupResolution = (typeof ROLLUP_RESOLUTIONS)[number];

/** A CQ's RESAMPLE clause. Durations are written as InfluxDB prints them back (1h, not 60m). */
export interface RollupSchedule {
  /** Appended to the CQ name. */
  readonly suffix: string;
  readonly every: string;
  readonly for: string;
}

export interface RollupSpec {
  readonly resolution: RollupResolution;
  readonly retentionPolicy: string;
  /** GROUP BY time(…) of the roll-up. */
  readonly interval: string;
  readonly intervalMs: number;
  readonly schedules: readonly RollupSchedule[];
  /** Readings later than this (device time to arrival) are guaranteed to reach the roll-up only through backfillRollups. */
  readonly lateReadingsMs: number;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** The roll-ups: retention policy names, window sizes and CQ schedules (see the module comment). */
export const ROLLUPS: { readonly [R in RollupResolution]: RollupSpec } = {
  '1m': {
    resolution: '1m',
    retentionPolicy: 'rollup_1m',
    interval: '1m',
    intervalMs: MINUTE,
    schedules: [
      { suffix: '', every: '1m', for: '2m' },
      { suffix: '_late', every: '15m', for: '75m' },
    ],
    lateReadingsMs: HOUR, // 75m − 15m
  },
  '1h': {
    resolution: '1h',
    retentionPolicy: 'rollup_1h',
    interval: '1h',
    intervalMs: HOUR,
    schedules: [
      { suffix: '', every: '1h', for: '2h' },
      { suffix: '_late', every: '6h', for: '30h' },
    ],
    lateReadingsMs: DAY, // 30h − 6h
  },
};

/** The roll-up field holding `aggregate` of raw field `field`, e.g. rollupField('mean', 'pm25') = 'mean_pm25'. */
export function rollupField(aggregate: RollupAggregate, field: string): string {
  return `${aggregate}_${field}`;
}

/** Alert events: one point per event in the raw retention policy (see alertEventLine). */
export const ALERTS_MEASUREMENT = MEASUREMENTS.alerts;
export const ACKS_MEASUREMENT = MEASUREMENTS.alertAcks;

/** Every continuous query ensureStorage manages starts with this; others on the database are left alone. */
export const CQ_PREFIX = 'cq_rollup_';

export const STORAGE_DEFAULTS = {
  /** Backfill statements cover at most this much time each, so one statement never holds months of windows. */
  backfillChunkMs: DAY,
  /** loadAlertEvents reads at most this many rows (the newest). */
  alertEventsLimit: 100_000,
} as const;

export interface StorageOptions {
  /** Raw readings and alert events, e.g. 30d. */
  readonly rawRetention: string;
  /** 1-minute roll-ups, e.g. 90d. */
  readonly rollup1mRetention: string;
  /** 1-hour roll-ups, e.g. 730d or INF. */
  readonly rollup1hRetention: string;
  /**
   * Keep the roll-up continuous queries (default true). False (INGEST_ROLLUPS=stream or none) drops the
   * `cq_rollup_…` ones: roll-ups are made elsewhere, or not at all. See "Capacity" above.
   */
  readonly continuousQueries?: boolean;
}

export interface ContinuousQuery {
  readonly name: string;
  /** The CREATE CONTINUOUS QUERY statement. */
  readonly query: string;
}

export interface StorageChange {
  readonly object: 'retention policy' | 'continuous query';
  readonly name: string;
  readonly action: 'created' | 'altered' | 'recreated' | 'dropped' | 'unchanged';
}

/** What exists after ensureStorage; the api reads roll-ups through it (or through ROLLUPS directly). */
export interface StorageLayout {
  readonly database: string;
  readonly raw: { readonly retentionPolicy: string; readonly duration: string };
  readonly rollups: { readonly [R in RollupResolution]: RollupSpec & { readonly duration: string } };
  readonly measurements: readonly Domain[];
  readonly alerts: { readonly retentionPolicy: string; readonly measurement: string };
  readonly continuousQueries: readonly ContinuousQuery[];
  /** What this call did to each object, for the start-up log. */
  readonly changes: readonly StorageChange[];
}

/**
 * Creates or updates the database, the three retention policies and the roll-up continuous
 * queries. Idempotent and safe to run concurrently from several workers: an object that exists
 * as wanted is left alone, a changed retention duration is ALTERed, a changed CQ (compared with
 * SHOW CONTINUOUS QUERIES) is dropped and created again, and a `cq_rollup_…` CQ that is no longer
 * wanted is dropped.
 */
export async function ensureStorage(influx: Influx, options: StorageOptions): Promise<StorageLayout> {
  const database = influx.settings.database;
  const rawRp = influx.settings.retentionPolicy;
  // Every duration is checked before anything is sent: they are spliced into statements.
  const rawRetention = checkDuration(options.rawRetention);
  const durations: Record<RollupResolution, string> = { '1m': checkDuration(options.rollup1mRetention), '1h': checkDuration(options.rollup1hRetention) };
  const changes: StorageChange[] = [];

  const before = await retentionPolicies(influx);
  await influx.ensureDatabase(rawRetention);
  const existingRaw = before.get(rawRp);
  changes.push({
    object: 'retention policy',
    name: rawRp,
    action: existingRaw === undefined ? 'created' : sameDuration(existingRaw, rawRetention) ? 'unchanged' : 'altered',
  });

  const after = await retentionPolicies(influx);
  for (const resolution of ROLLUP_RESOLUTIONS) {
    changes.push(await ensureRetentionPolicy(influx, ROLLUPS[resolution].retentionPolicy, durations[resolution], after));
  }

  const wanted = options.continuousQueries === false ? [] : continuousQueries(database, rawRp);
  const existing = await showContinuousQueries(influx);
  for (const cq of wanted) changes.push(await ensureContinuousQuery(influx, cq, existing.get(cq.name)));
  const wantedNames = new Set(wanted.map((cq) => cq.name));
  for (const name of existing.keys()) {
    if (!name.startsWith(CQ_PREFIX) || wantedNames.has(name)) continue;
    await dropContinuousQuery(influx, name);
    changes.push({ object: 'continuous query', name, action: 'dropped' });
  }

  return {
    database,
    raw: { retentionPolicy: rawRp, duration: rawRetention },
    rollups: {
      '1m': { ...ROLLUPS['1m'], duration: durations['1m'] },
      '1h': { ...ROLLUPS['1h'], duration: durations['1h'] },
    },
    measurements: DOMAINS,
    alerts: { retentionPolicy: rawRp, measurement: ALERTS_MEASUREMENT },
    continuousQueries: wanted,
    changes,
  };
}

/** The CQs ensureStorage keeps: per domain and roll-up, one per schedule. */
export function continuousQueries(database: string, rawRetentionPolicy: string): ContinuousQuery[] {
  const db = quoteIdentifier(database);
  const out: ContinuousQuery[] = [];
  for (const resolution of ROLLUP_RESOLUTIONS) {
    const spec = ROLLUPS[resolution];
    for (const domain of DOMAINS) {
      for (const schedule of spec.schedules) {
        const name = `${CQ_PREFIX}${resolution}_${domain}${schedule.suffix}`;
        const select = rollupSelect(database, rawRetentionPolicy, spec, domain, '');
        out.push({
          name,
          query: `CREATE CONTINUOUS QUERY ${quoteIdentifier(name)} ON ${db} RESAMPLE EVERY ${schedule.every} FOR ${schedule.for} BEGIN ${select} END`,
        });
      }
    }
  }
  return out;
}

/**
 * The roll-up statement: every numeric field's min, mean and max and every field's count, per
 * device series (GROUP BY * keeps the tags as tags), into the roll-up's retention policy.
 * fill(none): an empty window writes nothing (count would otherwise write zeros).
 */
function rollupSelect(database: string, rawRetentionPolicy: string, spec: RollupSpec, domain: Domain, where: string): string {
  const db = quoteIdentifier(database);
  const measurement = quoteIdentifier(domain);
  const aggregates = ROLLUP_AGGREGATES.map((aggregate) => `${aggregate}(*)`).join(', ');
  return (
    `SELECT ${aggregates} INTO ${db}.${quoteIdentifier(spec.retentionPolicy)}.${measurement} ` +
    `FROM ${db}.${quoteIdentifier(rawRetentionPolicy)}.${measurement}${where} GROUP BY time(${spec.interval}), * fill(none)`
  );
}

export interface BackfillOptions {
  /** Only this device's series (cheap: for one device's late backlog). */
  readonly device?: string;
  /** Only the series of these provinces (an ingest shard's). */
  readonly provinces?: readonly string[];
  /** Only these roll-ups; default both. */
  readonly resolutions?: readonly RollupResolution[];
  /** Only these measurements; default every domain. */
  readonly domains?: readonly Domain[];
}

export interface BackfillResult {
  /** Roll-up points written, per resolution. */
  readonly written: { readonly [R in RollupResolution]: number };
  /** The range actually recomputed per resolution: widened to whole windows. */
  readonly ranges: { readonly [R in RollupResolution]: { readonly from: number; readonly to: number } };
}

/**
 * Runs the roll-up statements of the CQs for an explicit time range [from, to) in epoch ms:
 * after an import of old data, a backlog later than the CQs reach, or in tests (CQs only run on
 * interval boundaries). The range is widened to whole windows, since a window computed from part
 * of its raw points would overwrite a complete one. Windows whose raw points are gone (past the
 * raw retention) are left as they are.
 */
export async function backfillRollups(influx: Influx, from: number, to: number, options: BackfillOptions = {}): Promise<BackfillResult> {
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || to <= from) {
    throw new CodedError('E_BAD_REQUEST', `backfill range must be whole epoch milliseconds with from < to (got ${from} … ${to})`);
  }
  if (options.device !== undefined && !isDeviceId(options.device)) throw new CodedError('E_BAD_REQUEST', 'backfill device is not a device id');
  const database = influx.settings.database;
  const rawRp = influx.settings.retentionPolicy;
  let where = options.device === undefined ? '' : ' AND "device" = $device';
  if (options.provinces !== undefined) where += ` AND "province" =~ ${provincesRegex(options.provinces)}`;
  const written = { '1m': 0, '1h': 0 };
  const ranges = { '1m': { from, to }, '1h': { from, to } };
  for (const resolution of options.resolutions ?? ROLLUP_RESOLUTIONS) {
    const spec = ROLLUPS[resolution];
    const start = Math.floor(from / spec.intervalMs) * spec.intervalMs;
    const end = Math.ceil(to / spec.intervalMs) * spec.intervalMs;
    ranges[resolution] = { from: start, to: end };
    // Chunks on window boundaries (backfillChunkMs is a whole number of hours), one statement each.
    for (let chunk = start; chunk < end; chunk += STORAGE_DEFAULTS.backfillChunkMs) {
      const params: Record<string, string> = {
        from: new Date(chunk).toISOString(),
        to: new Date(Math.min(end, chunk + STORAGE_DEFAULTS.backfillChunkMs)).toISOString(),
      };
      if (options.device !== undefined) params.device = options.device;
      for (const domain of options.domains ?? DOMAINS) {
        const statement = rollupSelect(database, rawRp, spec, domain, ` WHERE time >= $from AND time < $to${where}`);
        const [series = []] = await influx.query(statement, params);
        written[resolution] += writtenCount(series);
      }
    }
  }
  return { written, ranges };
}

/** A regex literal matching exactly these province codes (checked: two digits each). */
export function provincesRegex(provinces: readonly string[]): string {
  for (const code of provinces) if (!/^\d{2}$/.test(code)) throw new CodedError('E_BAD_REQUEST', `province code "${code.slice(0, 20)}" is not two digits`);
  return `/^(${provinces.join('|')})$/`;
}

/**
 * Time of the newest 1-minute roll-up point of these provinces (any domain), or undefined when
 * there is none: where a starting ingest takes over the roll-ups (see rollups.ts).
 */
export function newestRollup(influx: Influx, provinces: readonly string[]): Promise<number | undefined> {
  return newestPoint(influx, ROLLUPS['1m'].retentionPolicy, provinces);
}

/**
 * Time of the newest raw reading of these provinces (any domain) in [from, to), or undefined when
 * there is none: a starting ingest with nothing stored before it has nothing to recompute.
 */
export function newestRaw(influx: Influx, provinces: readonly string[], from: number, to: number): Promise<number | undefined> {
  return newestPoint(influx, influx.settings.retentionPolicy, provinces, { from, to });
}

async function newestPoint(influx: Influx, retentionPolicy: string, provinces: readonly string[], range?: { from: number; to: number }): Promise<number | undefined> {
  const db = quoteIdentifier(influx.settings.database);
  const rp = quoteIdentifier(retentionPolicy);
  const params: Record<string, string> = range ? { from: new Date(range.from).toISOString(), to: new Date(range.to).toISOString() } : {};
  const when = range ? ' AND time >= $from AND time < $to' : '';
  let newest: number | undefined;
  for (const domain of DOMAINS) {
    const [series = []] = await influx.query(`SELECT * FROM ${db}.${rp}.${quoteIdentifier(domain)} WHERE "province" =~ ${provincesRegex(provinces)}${when} ORDER BY time DESC LIMIT 1`, params);
    const ts = series[0]?.values[0]?.[0];
    if (typeof ts === 'number' && (newest === undefined || ts > newest)) newest = ts;
  }
  return newest;
}

/* ---- Alert events ---- */

/**
 * An alert event as one point of `alerts` (timestamp = event ts, ms):
 *
 *   tags    province, device, domain, rule, severity, state
 *   fields  id, kind, message (strings); raisedAt, threshold (floats); field (string, optional);
 *           the value under one of three names so each field keeps one type:
 *           value (float) for a number, value_text (string) for a category such as a LOS letter,
 *           value_bool (boolean) for a flag such as outOfBand.
 *
 * A raised and a cleared event differ in `state`, so both are kept; the alert's `id` ties them.
 */
export function alertEventLine(event: AlertEvent): string {
  const value = event.value;
  return formatLine(
    ALERTS_MEASUREMENT,
    { device: event.deviceId, domain: event.domain, province: event.province, rule: event.ruleId, severity: event.severity, state: event.state },
    {
      id: event.id,
      kind: event.kind,
      field: event.field,
      value: typeof value === 'number' ? value : undefined,
      value_text: typeof value === 'string' ? value : undefined,
      value_bool: typeof value === 'boolean' ? value : undefined,
      threshold: event.threshold,
      message: event.message,
      raisedAt: event.raisedAt,
    },
    event.ts,
  );
}

export interface LoadAlertEventsOptions {
  /** Called once per stored row that is not a valid AlertEvent (it is skipped); count it. */
  readonly onSkip?: (reason: string) => void;
  /** At most this many stored rows (the newest), skipped ones included; default STORAGE_DEFAULTS.alertEventsLimit. */
  readonly limit?: number;
  /** Only events before this time (epoch ms, exclusive); default: no end. */
  readonly until?: number;
  /** Only the events with these tag values (checked; bound as parameters). */
  readonly device?: string;
  readonly domain?: Domain;
  readonly severity?: AlertEvent['severity'];
  readonly state?: AlertEvent['state'];
}

const ALERT_COLUMNS = ['id', 'kind', 'field', 'value', 'value_text', 'value_bool', 'threshold', 'message', 'raisedAt', 'device', 'domain', 'province', 'rule', 'severity', 'state'] as const;
let alertValidator: Validator | undefined;

/**
 * Every alert event stored since `since` (epoch ms, inclusive) for the given provinces, oldest
 * first (at one instant a raised event before a cleared one): what AlertEngine.restore() and the
 * api's alert list take. Rows that are not a valid AlertEvent are skipped and reported to onSkip.
 * An alert raised before `since` and still active is not seen: pass at least the longest time an
 * alert may stay active (the raw retention is the natural choice).
 *
 * Province codes are checked against the catalogue (CodedError E_PROVINCE) and passed as bound
 * parameters, never spliced into the query.
 */
export async function loadAlertEvents(influx: Influx, provinces: readonly string[], since: number, options: LoadAlertEventsOptions = {}): Promise<AlertEvent[]> {
  for (const code of provinces) {
    if (typeof code !== 'string' || !isProvinceCode(code)) throw new CodedError('E_PROVINCE', `"${String(code).slice(0, 16)}" is not one of the 34 province codes`);
  }
  if (!Number.isSafeInteger(since) || since < 0) throw new CodedError('E_BAD_REQUEST', `since must be whole epoch milliseconds (got ${since})`);
  const limit = options.limit ?? STORAGE_DEFAULTS.alertEventsLimit;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new CodedError('E_BAD_REQUEST', `limit must be a positive integer (got ${limit})`);
  const unique = [...new Set(provinces)];
  if (unique.length === 0) return [];

  const params: Record<string, string> = { since: new Date(since).toISOString() };
  const byProvince = unique.map((code, i) => {
    params[`p${i}`] = code;
    return `"province" = $p${i}`;
  });
  let where = `time >= $since AND (${byProvince.join(' OR ')})`;
  if (options.until !== undefined) {
    if (!Number.isSafeInteger(options.until) || options.until <= since) throw new CodedError('E_BAD_REQUEST', `until must be whole epoch milliseconds after since (got ${options.until})`);
    params.until = new Date(options.until).toISOString();
    where += ' AND time < $until';
  }
  where += alertTagFilters(options, params);
  const from = `${quoteIdentifier(influx.settings.database)}.${quoteIdentifier(influx.settings.retentionPolicy)}.${quoteIdentifier(ALERTS_MEASUREMENT)}`;
  const columns = ALERT_COLUMNS.map((c) => quoteIdentifier(c)).join(', ');
  // Newest first so LIMIT keeps the newest; turned around below.
  const [series = []] = await influx.query(`SELECT ${columns} FROM ${from} WHERE ${where} ORDER BY time DESC LIMIT ${limit}`, params);

  alertValidator ??= Compile(AlertEvent);
  const events: AlertEvent[] = [];
  for (const s of series) {
    const at = columnIndex(s);
    for (const row of s.values ?? []) {
      const event = alertFromRow(row, at);
      if (alertValidator.Check(event)) {
        events.push(event as AlertEvent);
        continue;
      }
      const problem = alertValidator.Errors(event)[0];
      options.onSkip?.(`alert row at ${String(row[0])}: ${problem ? `${problem.instancePath || '(root)'} ${problem.message}` : 'invalid'}`);
    }
  }
  events.reverse();
  // Stable: rows at one instant keep their order, except that a raised event comes first.
  return events.sort((a, b) => a.ts - b.ts || (a.state === b.state ? 0 : a.state === 'raised' ? -1 : 1));
}

/** The tag conditions of loadAlertEvents' filters, values checked and bound as parameters. */
function alertTagFilters(options: LoadAlertEventsOptions, params: Record<string, string>): string {
  let where = '';
  const filter = (tag: string, value: string | undefined, valid: boolean) => {
    if (value === undefined) return;
    if (!valid) throw new CodedError('E_BAD_REQUEST', `alert filter ${tag} "${value.slice(0, 40)}" is not valid`);
    params[`f_${tag}`] = value;
    where += ` AND ${quoteIdentifier(tag)} = $f_${tag}`;
  };
  filter('device', options.device, options.device !== undefined && isDeviceId(options.device));
  filter('domain', options.domain, options.domain !== undefined && (DOMAINS as readonly string[]).includes(options.domain));
  filter('severity', options.severity, options.severity !== undefined && (ALERT_SEVERITIES as readonly string[]).includes(options.severity));
  filter('state', options.state, options.state !== undefined && (ALERT_STATES as readonly string[]).includes(options.state));
  return where;
}

/* ---- Alert acknowledgements (written by the api) ---- */

/**
 * An operator's acknowledgement as one point of `alert_acks` (timestamp = when, ms): tags
 * province, device; fields id, operator, note. One alert has at most one (the api refuses a
 * second), and the id ties it to the alert's events.
 */
export function alertAckLine(ack: AlertAck): string {
  return formatLine(ACKS_MEASUREMENT, { device: ack.deviceId, province: ack.province }, { id: ack.id, operator: ack.operator, note: ack.note }, ack.ts);
}

/**
 * The acknowledgements stored since `since` (epoch ms) for these provinces, oldest first; rows
 * that are not a valid AlertAck are skipped (counted through onSkip).
 */
export async function loadAlertAcks(influx: Influx, provinces: readonly string[], since: number, options: { readonly onSkip?: (reason: string) => void; readonly limit?: number } = {}): Promise<AlertAck[]> {
  for (const code of provinces) {
    if (typeof code !== 'string' || !isProvinceCode(code)) throw new CodedError('E_PROVINCE', `"${String(code).slice(0, 16)}" is not one of the 34 province codes`);
  }
  if (!Number.isSafeInteger(since) || since < 0) throw new CodedError('E_BAD_REQUEST', `since must be whole epoch milliseconds (got ${since})`);
  const unique = [...new Set(provinces)];
  if (unique.length === 0) return [];
  const limit = options.limit ?? STORAGE_DEFAULTS.alertEventsLimit;
  const params: Record<string, string> = { since: new Date(since).toISOString() };
  const byProvince = unique.map((code, i) => {
    params[`p${i}`] = code;
    return `"province" = $p${i}`;
  });
  const from = `${quoteIdentifier(influx.settings.database)}.${quoteIdentifier(influx.settings.retentionPolicy)}.${quoteIdentifier(ACKS_MEASUREMENT)}`;
  const [series = []] = await influx.query(`SELECT "id", "operator", "note", "device", "province" FROM ${from} WHERE time >= $since AND (${byProvince.join(' OR ')}) ORDER BY time DESC LIMIT ${limit}`, params);
  ackValidator ??= Compile(AlertAck);
  const acks: AlertAck[] = [];
  for (const s of series) {
    const at = columnIndex(s);
    const get = (row: readonly unknown[], name: string) => row[at.get(name) ?? -1] ?? null;
    for (const row of s.values ?? []) {
      const ack = { id: get(row, 'id'), province: get(row, 'province'), deviceId: get(row, 'device'), operator: get(row, 'operator'), note: get(row, 'note') ?? '', ts: row[0] };
      if (ackValidator.Check(ack)) acks.push(ack as AlertAck);
      else options.onSkip?.(`alert ack row at ${String(row[0])}: invalid`);
    }
  }
  return acks.reverse();
}

let ackValidator: Validator | undefined;

function alertFromRow(row: readonly unknown[], at: ReadonlyMap<string, number>): unknown {
  const get = (name: string): unknown => {
    const index = at.get(name);
    return index === undefined ? null : row[index];
  };
  const event: Record<string, unknown> = {
    id: get('id'),
    ruleId: get('rule'),
    kind: get('kind'),
    state: get('state'),
    severity: get('severity'),
    deviceId: get('device'),
    province: get('province'),
    domain: get('domain'),
    message: get('message'),
    raisedAt: get('raisedAt'),
    ts: row[0],
  };
  const field = get('field');
  if (field !== null) event.field = field;
  const value = get('value') ?? get('value_text') ?? get('value_bool');
  if (value !== null) event.value = value;
  const threshold = get('threshold');
  if (threshold !== null) event.threshold = threshold;
  return event;
}

/* ---- InfluxDB helpers ---- */

interface RetentionPolicyRow {
  /** As SHOW RETENTION POLICIES prints it: a Go duration such as 720h0m0s; 0s is INF. */
  readonly duration: string;
}

async function retentionPolicies(influx: Influx): Promise<Map<string, RetentionPolicyRow>> {
  const out = new Map<string, RetentionPolicyRow>();
  let series: SeriesResult[];
  try {
    [series = []] = await influx.query(`SHOW RETENTION POLICIES ON ${quoteIdentifier(influx.settings.database)}`);
  } catch (err) {
    if (err instanceof InfluxQueryError && /database not found/.test(err.message)) return out;
    throw err;
  }
  for (const s of series) {
    const at = columnIndex(s);
    for (const row of s.values ?? []) {
      const name = row[at.get('name') ?? -1];
      const duration = row[at.get('duration') ?? -1];
      if (typeof name === 'string' && typeof duration === 'string') out.set(name, { duration });
    }
  }
  return out;
}

async function ensureRetentionPolicy(influx: Influx, name: string, duration: string, existing: ReadonlyMap<string, RetentionPolicyRow>): Promise<StorageChange> {
  const db = quoteIdentifier(influx.settings.database);
  const rp = quoteIdentifier(name);
  const current = existing.get(name);
  if (current && sameDuration(current, duration)) return { object: 'retention policy', name, action: 'unchanged' };
  if (!current) {
    try {
      // Creating one that exists with the same duration succeeds; with another it fails and is ALTERed.
      await influx.query(`CREATE RETENTION POLICY ${rp} ON ${db} DURATION ${duration} REPLICATION 1`);
      return { object: 'retention policy', name, action: 'created' };
    } catch (err) {
      if (!(err instanceof InfluxQueryError) || !/already exists/.test(err.message)) throw err;
    }
  }
  await influx.query(`ALTER RETENTION POLICY ${rp} ON ${db} DURATION ${duration}`);
  return { object: 'retention policy', name, action: 'altered' };
}

async function showContinuousQueries(influx: Influx): Promise<Map<string, string>> {
  const [series = []] = await influx.query('SHOW CONTINUOUS QUERIES');
  const out = new Map<string, string>();
  for (const s of series) {
    if (s.name !== influx.settings.database) continue;
    const at = columnIndex(s);
    // A database without CQs is listed without `values`.
    for (const row of s.values ?? []) {
      const name = row[at.get('name') ?? -1];
      const query = row[at.get('query') ?? -1];
      if (typeof name === 'string' && typeof query === 'string') out.set(name, query);
    }
  }
  return out;
}

async function ensureContinuousQuery(influx: Influx, cq: ContinuousQuery, current: string | undefined): Promise<StorageChange> {
  if (current !== undefined && sameStatement(current, cq.query)) return { object: 'continuous query', name: cq.name, action: 'unchanged' };
  if (current !== undefined) await dropContinuousQuery(influx, cq.name);
  try {
    await influx.query(cq.query);
  } catch (err) {
    if (!(err instanceof InfluxQueryError) || !/already exists/.test(err.message)) throw err;
    // Another worker created it between our SHOW and CREATE: keep it if it is ours, else replace it once.
    const now = (await showContinuousQueries(influx)).get(cq.name);
    if (now !== undefined && sameStatement(now, cq.query)) return { object: 'continuous query', name: cq.name, action: current === undefined ? 'unchanged' : 'recreated' };
    await dropContinuousQuery(influx, cq.name);
    await influx.query(cq.query);
  }
  return { object: 'continuous query', name: cq.name, action: current === undefined ? 'created' : 'recreated' };
}

async function dropContinuousQuery(influx: Influx, name: string): Promise<void> {
  await influx.query(`DROP CONTINUOUS QUERY ${quoteIdentifier(name)} ON ${quoteIdentifier(influx.settings.database)}`).catch((err: unknown) => {
    // Dropped meanwhile by another worker: what we wanted.
    if (!(err instanceof InfluxQueryError) || !/not found|does not exist/.test(err.message)) throw err;
  });
}

/**
 * SHOW CONTINUOUS QUERIES prints the statement re-formatted: identifiers lose their quotes when
 * they need none. Compared without quotes and with whitespace collapsed, the two forms match.
 */
function sameStatement(a: string, b: string): boolean {
  const norm = (s: string) => s.replace(/"/g, '').replace(/\s+/g, ' ').trim();
  return norm(a) === norm(b);
}

function sameDuration(row: RetentionPolicyRow, duration: string): boolean {
  return goDurationMs(row.duration) === influxqlDurationMs(duration);
}

/** Units of a Go duration. */
const GO_UNIT_MS: Readonly<Record<string, number>> = { ns: 1e-6, µs: 1e-3, us: 1e-3, ms: 1, s: 1000, m: MINUTE, h: HOUR };

/** InfluxQL literal (30d, INF) to ms; INF is 0, as InfluxDB shows it. */
function influxqlDurationMs(text: string): number {
  const ms = durationMs(text);
  return ms === Infinity ? 0 : ms;
}

/** Go duration as SHOW RETENTION POLICIES prints it (2160h0m0s, 1h30m0s, 0s) to ms. */
function goDurationMs(text: string): number {
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|µs|us|ms|s|m|h)/g)) total += Number(amount) * (GO_UNIT_MS[unit ?? ''] ?? Number.NaN);
  return total;
}

function columnIndex(series: SeriesResult): Map<string, number> {
  return new Map(series.columns.map((name, i) => [name, i]));
}

function writtenCount(series: readonly SeriesResult[]): number {
  const row = series[0]?.values?.[0];
  const index = series[0]?.columns.indexOf('written') ?? -1;
  const value = index >= 0 ? row?.[index] : undefined;
  return typeof value === 'number' ? value : 0;
}
