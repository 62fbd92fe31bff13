import {
  CodedError,
  DEFAULT_HISTORY_FIELDS,
  HISTORY_FIELDS,
  PROVINCE_HISTORY_METRICS,
  type Domain,
  type HistoryResponse,
  type HistorySource,
  type ProvinceHistoryMetric,
  type ProvinceHistoryResponse,
} from '@citypulse/contracts';
import { InfluxQueryError, quoteIdentifier, type Influx, type SeriesResult } from '@citypulse/infra';
import { ROLLUP_RESOLUTIONS, ROLLUPS, rollupField, type RollupResolution } from '@citypulse/ingest/storage';

/**
 * History queries (issue 6): a device's fields, or a province's aggregates, over a range in
 * windows, read from the roll-ups where they can answer (see ingest/src/storage.ts for their
 * layout) and from raw readings where they cannot yet.
 *
 * - Source by window: raw below 1 min, `rollup_1m` for 1 min up to 1 h, `rollup_1h` from 1 h. A
 *   source whose retention no longer reaches the range's start gives way to the next coarser
 *   one, with windows at least its size (a day three months ago comes from `rollup_1h`).
 * - The newest part of a range is not rolled up yet (ingest writes a window after it ends plus a
 *   grace; CQs at the boundary). Roll-ups are read up to their newest window, and never past
 *   `rollupLagMs` before now; raw readings after that. A window spanning that boundary gets a
 *   partial aggregate from each side (sum and count for a mean), combined here: one row per window.
 * - Combining roll-up rows: mean = Σ(mean_f × count_f) / Σ count_f, min of min_f, max of max_f,
 *   count = Σ count_f. A mean of means would be wrong where windows hold different counts.
 * - Nothing from the request reaches InfluxQL as text: field and metric names are checked against
 *   the catalogue in contracts, the device id and province code are bound parameters, times and
 *   windows are integers computed here.
 */

/** History query limits and timings (units in the names). */
export const HISTORY_DEFAULTS = {
  /** 30 days in 1-hour windows is 720: within this. */
  maxPoints: 1000,
  maxRangeMs: 366 * 86_400_000, // one year
  maxFields: 8,
  /** The same bound as readings' timestamps (2100-01-01): InfluxDB's nanosecond times end in 2262. */
  maxTimeMs: 4_102_444_800_000,
  /**
   * A roll-up window is trusted this long after it ends: ingest's stream writes it after its
   * 15 s grace and the next flush, the CQs at the boundary. Younger windows come from raw.
   */
  rollupLagMs: 60_000,
  /** Retention durations are read from InfluxDB (SHOW RETENTION POLICIES) at most this often. */
  retentionCacheMs: 60_000,
} as const;

/** Window widths a chart reads naturally; the smallest that keeps the range within maxPoints wins. */
const NICE_WINDOWS_MS = [1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 10_800, 21_600, 43_200, 86_400, 604_800].map((s) => s * 1000);
const DAY_MS = 86_400_000;

/**
 * Monday 1970-01-05 00:00 in Vietnam (UTC+7, no daylight saving): windows start a whole number of
 * windows from here, so days begin at local midnight and weeks on Monday, where diurnal and weekly
 * patterns begin (domain.md). Windows up to 1 h are unaffected (7 h is a whole number of them).
 */
const LOCAL_WINDOW_ANCHOR_MS = Date.UTC(1970, 0, 4, 17);

export type Aggregate = 'mean' | 'min' | 'max' | 'count';

/** Where windows are read from: raw readings or one of the roll-ups. */
export type HistorySourceName = 'raw' | RollupResolution;

/** Parses an ISO 8601 time or epoch milliseconds; throws E_BAD_REQUEST naming the parameter. */
export function parseTime(name: string, text: string): number {
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms) || ms < 0 || ms > HISTORY_DEFAULTS.maxTimeMs || text.length > 40) {
    throw new CodedError('E_BAD_REQUEST', `${name}=${JSON.stringify(text.slice(0, 40))} is not a time before 2100: use ISO 8601 (2026-11-22T08:00:00Z) or epoch milliseconds`);
  }
  return ms;
}

export function chooseWindowMs(rangeMs: number, maxPoints: number): number {
  const needed = rangeMs / maxPoints;
  return NICE_WINDOWS_MS.find((w) => w >= needed) ?? Math.ceil(needed / DAY_MS) * DAY_MS;
}

/** Start of the first window on or after the anchor grid: GROUP BY time(windowMs, offset) with this offset. */
export function windowOffsetMs(windowMs: number): number {
  return LOCAL_WINDOW_ANCHOR_MS % windowMs;
}

export function resolveFields(domain: Domain, requested: string | undefined): string[] {
  if (requested === undefined || requested === '') return [...DEFAULT_HISTORY_FIELDS[domain]];
  const names = requested.split(',').map((f) => f.trim());
  if (names.length > HISTORY_DEFAULTS.maxFields) throw new CodedError('E_BAD_REQUEST', `at most ${HISTORY_DEFAULTS.maxFields} fields per query`);
  const allowed = HISTORY_FIELDS[domain];
  for (const name of names) {
    if (!allowed.includes(name)) {
      throw new CodedError('E_BAD_REQUEST', `field ${JSON.stringify(name.slice(0, 64))} is not a numeric ${domain} field; choose from ${allowed.join(', ')}`);
    }
  }
  return [...new Set(names)];
}

/** The province metrics named in `requested` (comma-separated), default all; E_BAD_REQUEST for another name. */
export function resolveMetrics(requested: string | undefined): ProvinceHistoryMetric[] {
  const all = Object.keys(PROVINCE_HISTORY_METRICS) as ProvinceHistoryMetric[];
  if (requested === undefined || requested === '') return all;
  const names = requested.split(',').map((m) => m.trim());
  for (const name of names) {
    if (!Object.hasOwn(PROVINCE_HISTORY_METRICS, name)) {
      throw new CodedError('E_BAD_REQUEST', `metric ${JSON.stringify(name.slice(0, 64))} is not a province metric; choose from ${all.join(', ')}`);
    }
  }
  return all.filter((m) => names.includes(m));
}

/** Throws E_BAD_REQUEST unless from < to and the range is at most maxRangeMs. Checked before any query is sent. */
export function checkRange(fromMs: number, toMs: number): void {
  if (toMs <= fromMs) throw new CodedError('E_BAD_REQUEST', '"to" must be after "from"');
  if (toMs - fromMs > HISTORY_DEFAULTS.maxRangeMs) throw new CodedError('E_BAD_REQUEST', 'range is longer than one year; narrow it');
}

/* ---- Planning: window, alignment, source ---- */

/** How a range is read: whole windows of windowMs (aligned with offsetMs) from `source`, then raw after the roll-ups end. */
export interface HistoryPlan {
  /** Start of the first window. */
  readonly fromMs: number;
  /** End of the last window. */
  readonly toMs: number;
  readonly windowMs: number;
  readonly offsetMs: number;
  readonly source: HistorySourceName;
  /** The time the plan was made for: roll-up windows ending after nowMs − rollupLagMs are read from raw. */
  readonly nowMs: number;
  /** Raw readings before this are past the raw retention: gone, not worth a query. */
  readonly rawKeptFromMs: number;
}

/** How long each source keeps data, ms (Infinity when unknown or INF). */
export type RetentionMs = Readonly<Record<HistorySourceName, number>>;

const SOURCES: readonly HistorySourceName[] = ['raw', ...ROLLUP_RESOLUTIONS];

function resolutionMs(source: HistorySourceName): number {
  return source === 'raw' ? 0 : ROLLUPS[source].intervalMs;
}

/** The coarsest source whose windows tile the chart's: raw below 1 min, rollup_1m below 1 h, rollup_1h from 1 h. */
export function sourceForWindow(windowMs: number): HistorySourceName {
  let chosen: HistorySourceName = 'raw';
  for (const resolution of ROLLUP_RESOLUTIONS) {
    const size = ROLLUPS[resolution].intervalMs;
    if (windowMs >= size && windowMs % size === 0) chosen = resolution;
  }
  return chosen;
}

function alignDown(ms: number, windowMs: number): number {
  const offset = windowOffsetMs(windowMs);
  return Math.floor((ms - offset) / windowMs) * windowMs + offset;
}

function alignUp(ms: number, windowMs: number): number {
  const offset = windowOffsetMs(windowMs);
  return Math.ceil((ms - offset) / windowMs) * windowMs + offset;
}

/**
 * Window, alignment and source for a range: the smallest nice window that keeps the range, moved
 * out to whole windows, within maxPoints; then the source for that window, or a coarser one when
 * its retention no longer reaches back to the range's start.
 */
export function planHistory(fromMs: number, toMs: number, maxPoints: number, nowMs: number, retention: RetentionMs): HistoryPlan {
  checkRange(fromMs, toMs);
  let windowMs = chooseWindowMs(toMs - fromMs, maxPoints);
  // Whole windows can add one at each end: widen until they fit too.
  while ((alignUp(toMs, windowMs) - alignDown(fromMs, windowMs)) / windowMs > maxPoints) windowMs = chooseWindowMs(windowMs * maxPoints + 1, maxPoints);
  let source = sourceForWindow(windowMs);
  for (let i = SOURCES.indexOf(source); i < SOURCES.length - 1 && fromMs < nowMs - retention[source]; i++) {
    source = SOURCES[i + 1] as HistorySourceName;
    windowMs = Math.max(windowMs, resolutionMs(source));
  }
  // A window aligned to local time can start before 1970; InfluxQL times are not negative here.
  return { fromMs: Math.max(0, alignDown(fromMs, windowMs)), toMs: alignUp(toMs, windowMs), windowMs, offsetMs: windowOffsetMs(windowMs), source, nowMs, rawKeptFromMs: nowMs - retention.raw };
}

/* ---- Retention of the sources, read from InfluxDB ---- */

const retentionCache = new WeakMap<Influx, { readonly readAtMs: number; readonly retention: Promise<RetentionMs> }>();

/**
 * How long raw data and each roll-up are kept, from SHOW RETENTION POLICIES (cached for
 * retentionCacheMs). A server that cannot say (a 2.x/3.x without the statement, a missing policy)
 * gives Infinity: the source is then used by window size alone.
 */
export function retentionOf(influx: Influx, nowMs = Date.now()): Promise<RetentionMs> {
  const cached = retentionCache.get(influx);
  if (cached && nowMs - cached.readAtMs < HISTORY_DEFAULTS.retentionCacheMs) return cached.retention;
  const retention = readRetention(influx);
  retentionCache.set(influx, { readAtMs: nowMs, retention });
  // A failed read (InfluxDB down) is not kept: the next request asks again.
  retention.catch(() => {
    if (retentionCache.get(influx)?.retention === retention) retentionCache.delete(influx);
  });
  return retention;
}

async function readRetention(influx: Influx): Promise<RetentionMs> {
  const durations = new Map<string, number>();
  try {
    const [series = []] = await influx.query(`SHOW RETENTION POLICIES ON ${quoteIdentifier(influx.settings.database)}`);
    for (const s of series) {
      const name = s.columns.indexOf('name');
      const duration = s.columns.indexOf('duration');
      for (const row of s.values ?? []) {
        const [rp, text] = [row[name], row[duration]];
        if (typeof rp === 'string' && typeof text === 'string') durations.set(rp, goDurationMs(text));
      }
    }
  } catch (err) {
    if (!(err instanceof InfluxQueryError)) throw err;
  }
  const of = (rp: string) => durations.get(rp) ?? Infinity;
  return { raw: of(influx.settings.retentionPolicy), '1m': of(ROLLUPS['1m'].retentionPolicy), '1h': of(ROLLUPS['1h'].retentionPolicy) };
}

/** A duration as SHOW RETENTION POLICIES prints it (720h0m0s; 0s is INF) in ms. */
function goDurationMs(text: string): number {
  const match = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!match) return Infinity;
  const ms = (Number(match[1] ?? 0) * 3600 + Number(match[2] ?? 0) * 60 + Number(match[3] ?? 0)) * 1000;
  return ms === 0 ? Infinity : ms;
}

/* ---- Reading windows ---- */

/** One output column: `aggregate` of stored field `field` per window, named `name` in the response. */
export interface HistoryColumn {
  readonly name: string;
  readonly field: string;
  readonly aggregate: Aggregate;
}

/** Whose series: one device, or every device of a province, in one domain's measurement. */
interface Target {
  readonly measurement: Domain;
  readonly tag: 'device' | 'province';
  readonly value: string;
}

/**
 * What one source knows of one column in one window: for a mean the sum and count of readings
 * (so partials from two sources combine exactly), otherwise the aggregate itself in `value`.
 */
interface Partial {
  value: number;
  count: number;
}

/** Partials per window start, one slot per column. */
type Windows = Map<number, (Partial | undefined)[]>;

function combine(a: Partial, b: Partial, aggregate: Aggregate): Partial {
  switch (aggregate) {
    case 'mean':
      return { value: a.value + b.value, count: a.count + b.count };
    case 'count':
      return { value: a.value + b.value, count: 0 };
    case 'min':
      return { value: Math.min(a.value, b.value), count: 0 };
    case 'max':
      return { value: Math.max(a.value, b.value), count: 0 };
  }
}

function finalValue(partial: Partial | undefined, aggregate: Aggregate): number | null {
  if (partial === undefined) return null;
  if (aggregate !== 'mean') return partial.value;
  return partial.count > 0 ? partial.value / partial.count : null;
}

/** Column aliases in InfluxQL: by index, so no name from anywhere is ever spliced in as an alias. */
const valueAlias = (i: number) => `c${i}_v`;
const countAlias = (i: number) => `c${i}_n`;

/** Adds one statement's rows (columns c{i}_v and, for means, c{i}_n) into `windows`. */
function addRows(windows: Windows, columns: readonly HistoryColumn[], series: readonly SeriesResult[]): void {
  for (const s of series) {
    const at = columns.map((_, i) => [s.columns.indexOf(valueAlias(i)), s.columns.indexOf(countAlias(i))] as const);
    for (const row of s.values ?? []) {
      const t = row[0];
      if (typeof t !== 'number') continue;
      let slots = windows.get(t);
      columns.forEach((column, i) => {
        const [v, n] = at[i] as readonly [number, number];
        const value = row[v];
        const count = n >= 0 ? row[n] : 0;
        if (typeof value !== 'number' || typeof count !== 'number') return;
        slots ??= new Array<Partial | undefined>(columns.length).fill(undefined);
        const previous = slots[i];
        // Two statements can hold one window: the roll-ups' side of the boundary and raw's.
        slots[i] = previous === undefined ? { value, count } : combine(previous, { value, count }, column.aggregate);
      });
      if (slots) windows.set(t, slots);
    }
  }
}

const timeRange = (fromMs: number, toMs: number) => `time >= ${fromMs}ms AND time < ${toMs}ms`;
const groupByWindow = (plan: HistoryPlan) => `GROUP BY time(${plan.windowMs}ms, ${plan.offsetMs}ms) fill(none)`;
const measurementIn = (retentionPolicy: string, target: Target) => `${quoteIdentifier(retentionPolicy)}.${quoteIdentifier(target.measurement)}`;
const targetIs = (target: Target) => `${quoteIdentifier(target.tag)} = $target`;

/** Partial aggregates of raw readings in [fromMs, toMs), per chart window. */
function rawStatement(influx: Influx, target: Target, columns: readonly HistoryColumn[], plan: HistoryPlan, fromMs: number, toMs: number): string {
  const selects = columns.flatMap((column, i) => {
    const f = quoteIdentifier(column.field);
    switch (column.aggregate) {
      case 'mean':
        return [`sum(${f}) AS "${valueAlias(i)}"`, `count(${f}) AS "${countAlias(i)}"`];
      case 'min':
      case 'max':
      case 'count':
        return [`${column.aggregate}(${f}) AS "${valueAlias(i)}"`];
    }
  });
  return `SELECT ${selects.join(', ')} FROM ${measurementIn(influx.settings.retentionPolicy, target)} WHERE ${targetIs(target)} AND ${timeRange(fromMs, toMs)} ${groupByWindow(plan)}`;
}

/**
 * Partial aggregates of roll-up rows in [fromMs, toMs), per chart window. InfluxQL has no
 * aggregate of an expression, so the weights (mean_f × count_f) are computed in a subquery.
 */
function rollupStatement(target: Target, columns: readonly HistoryColumn[], plan: HistoryPlan, resolution: RollupResolution, fromMs: number, toMs: number): string {
  const inner: string[] = [];
  const outer: string[] = [];
  columns.forEach((column, i) => {
    const v = quoteIdentifier(valueAlias(i));
    const n = quoteIdentifier(countAlias(i));
    const count = quoteIdentifier(rollupField('count', column.field));
    switch (column.aggregate) {
      case 'mean':
        inner.push(`${quoteIdentifier(rollupField('mean', column.field))} * ${count} AS ${v}`, `${count} AS ${n}`);
        outer.push(`sum(${v}) AS ${v}`, `sum(${n}) AS ${n}`);
        return;
      case 'min':
      case 'max':
        inner.push(`${quoteIdentifier(rollupField(column.aggregate, column.field))} AS ${v}`);
        outer.push(`${column.aggregate}(${v}) AS ${v}`);
        return;
      case 'count':
        inner.push(`${count} AS ${v}`);
        outer.push(`sum(${v}) AS ${v}`);
        return;
    }
  });
  const range = timeRange(fromMs, toMs);
  const from = measurementIn(ROLLUPS[resolution].retentionPolicy, target);
  return `SELECT ${outer.join(', ')} FROM (SELECT ${inner.join(', ')} FROM ${from} WHERE ${targetIs(target)} AND ${range}) WHERE ${range} ${groupByWindow(plan)}`;
}

/** The newest roll-up window of the target in [fromMs, toMs): count_seq is in every roll-up point. */
function newestRollupStatement(target: Target, resolution: RollupResolution, fromMs: number, toMs: number): string {
  const from = measurementIn(ROLLUPS[resolution].retentionPolicy, target);
  return `SELECT last(${quoteIdentifier(rollupField('count', 'seq'))}) FROM ${from} WHERE ${targetIs(target)} AND ${timeRange(fromMs, toMs)}`;
}

interface WindowsRead {
  readonly windows: Windows;
  readonly sources: HistorySource[];
}

/**
 * Reads the target's columns over the plan's range. With a roll-up source, two requests go out at
 * once: the roll-ups (with their newest window) up to the settled boundary, and raw after it. When
 * the roll-ups stop short of it (a device silent lately, ingest catching up after a restart, or
 * INGEST_ROLLUPS=none), a third reads raw for the gap.
 */
async function readWindows(influx: Influx, target: Target, columns: readonly HistoryColumn[], plan: HistoryPlan): Promise<WindowsRead> {
  const windows: Windows = new Map();
  const params = { target: target.value };
  const source = (retentionPolicy: string, fromMs: number, toMs: number): HistorySource => ({ measurement: target.measurement, retentionPolicy, from: fromMs, to: toMs });
  const rawRp = influx.settings.retentionPolicy;
  const rawPart = async (fromMs: number, toMs: number) => {
    if (fromMs >= toMs) return;
    const [series = []] = await influx.query(rawStatement(influx, target, columns, plan, fromMs, toMs), params);
    addRows(windows, columns, series);
  };
  if (plan.source === 'raw') {
    await rawPart(plan.fromMs, plan.toMs);
    return { windows, sources: [source(rawRp, plan.fromMs, plan.toMs)] };
  }

  const resolution = plan.source;
  const sizeMs = ROLLUPS[resolution].intervalMs;
  const settledMs = Math.min(plan.toMs, Math.max(plan.fromMs, Math.floor((plan.nowMs - HISTORY_DEFAULTS.rollupLagMs) / sizeMs) * sizeMs));
  const rollups =
    settledMs > plan.fromMs
      ? influx.query(`${rollupStatement(target, columns, plan, resolution, plan.fromMs, settledMs)}; ${newestRollupStatement(target, resolution, plan.fromMs, settledMs)}`, params)
      : Promise.resolve([]);
  const tail = settledMs < plan.toMs ? influx.query(rawStatement(influx, target, columns, plan, settledMs, plan.toMs), params) : Promise.resolve([]);
  const [[rollupSeries = [], newestSeries = []], [tailSeries = []]] = await Promise.all([rollups, tail]);
  addRows(windows, columns, rollupSeries);
  addRows(windows, columns, tailSeries);

  // Roll-ups stop at their newest window; raw fills the gap up to the settled boundary, where raw still holds readings.
  const newest = newestSeries[0]?.values[0]?.[0];
  const rollupEndMs = typeof newest === 'number' ? Math.min(settledMs, newest + sizeMs) : plan.fromMs;
  const rawFromMs = Math.min(settledMs, Math.max(rollupEndMs, plan.rawKeptFromMs));
  await rawPart(rawFromMs, settledMs);
  const sources: HistorySource[] = [];
  if (rawFromMs > plan.fromMs) sources.push(source(ROLLUPS[resolution].retentionPolicy, plan.fromMs, rawFromMs));
  if (rawFromMs < plan.toMs) sources.push(source(rawRp, rawFromMs, plan.toMs));
  return { windows, sources };
}

type Point = HistoryResponse['points'][number];

/** One row per window with any value, oldest first; values keyed by column name. */
function toPoints(parts: readonly { readonly columns: readonly HistoryColumn[]; readonly windows: Windows }[]): Point[] {
  const times = new Set<number>();
  for (const part of parts) for (const t of part.windows.keys()) times.add(t);
  const points: Point[] = [];
  for (const t of [...times].sort((a, b) => a - b)) {
    const values: Record<string, number | null> = {};
    let any = false;
    for (const { columns, windows } of parts) {
      const slots = windows.get(t);
      columns.forEach((column, i) => {
        const value = finalValue(slots?.[i], column.aggregate);
        values[column.name] = value;
        any ||= value !== null;
      });
    }
    if (any) points.push({ t, values });
  }
  return points;
}

/* ---- The two queries ---- */

export interface HistoryRequest {
  readonly deviceId: string;
  readonly domain: Domain;
  readonly fromMs: number;
  readonly toMs: number;
  readonly fields: readonly string[];
  readonly aggregate: Aggregate;
  readonly maxPoints: number;
  /** Default Date.now(). */
  readonly nowMs?: number;
}

/** One device's history, aggregated into windows so any range returns a bounded number of points. */
export async function queryHistory(influx: Influx, request: HistoryRequest): Promise<HistoryResponse> {
  const { fromMs, toMs, fields, aggregate, maxPoints, domain, deviceId } = request;
  checkRange(fromMs, toMs);
  const nowMs = request.nowMs ?? Date.now();
  const plan = planHistory(fromMs, toMs, maxPoints, nowMs, await retentionOf(influx, nowMs));
  const columns = fields.map((field): HistoryColumn => ({ name: field, field, aggregate }));
  const { windows, sources } = await readWindows(influx, { measurement: domain, tag: 'device', value: deviceId }, columns, plan);
  return { deviceId, domain, from: plan.fromMs, to: plan.toMs, windowMs: plan.windowMs, aggregate, fields: [...fields], sources, points: toPoints([{ columns, windows }]) };
}

export interface ProvinceHistoryRequest {
  readonly province: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly metrics: readonly ProvinceHistoryMetric[];
  readonly maxPoints: number;
  readonly nowMs?: number;
}

/** A province's metrics over time (PROVINCE_HISTORY_METRICS): one query per domain, in parallel, merged by window. */
export async function queryProvinceHistory(influx: Influx, request: ProvinceHistoryRequest): Promise<ProvinceHistoryResponse> {
  const { province, fromMs, toMs, metrics, maxPoints } = request;
  checkRange(fromMs, toMs);
  const nowMs = request.nowMs ?? Date.now();
  const plan = planHistory(fromMs, toMs, maxPoints, nowMs, await retentionOf(influx, nowMs));
  const parts = await Promise.all(
    metrics.map(async (metric) => {
      const { domain, columns } = PROVINCE_HISTORY_METRICS[metric];
      const read = await readWindows(influx, { measurement: domain, tag: 'province', value: province }, columns, plan);
      return { columns, ...read };
    }),
  );
  return {
    province,
    from: plan.fromMs,
    to: plan.toMs,
    windowMs: plan.windowMs,
    metrics: [...metrics],
    fields: parts.flatMap((part) => part.columns.map((c) => c.name)),
    sources: parts.flatMap((part) => part.sources),
    points: toPoints(parts),
  };
}

/* ---- CSV ---- */

/**
 * A history as CSV (RFC 4180): a header row `time,<columns>`, then one row per window with its
 * start as ISO 8601 UTC and empty cells for no value. Every cell is a time, a number or a name from
 * the catalogue, so none needs quoting and none can start a spreadsheet formula.
 */
export function historyCsv(columns: readonly { readonly key: string; readonly header: string }[], points: readonly Point[]): string {
  const lines = [['time', ...columns.map((c) => c.header)].join(',')];
  for (const point of points) {
    lines.push([new Date(point.t).toISOString(), ...columns.map((c) => numberCell(point.values[c.key]))].join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

function numberCell(value: number | null | undefined): string {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : '';
}

/** A download name made of safe characters only: `citypulse_<what>_<from>_<to>.csv`, times as 20260101T0000Z. */
export function csvFilename(what: string, fromMs: number, toMs: number): string {
  const stamp = (ms: number) => new Date(ms).toISOString().slice(0, 16).replace(/[-:]/g, '') + 'Z';
  const safe = what.replace(/[^A-Za-z0-9_-]+/g, '-').slice(0, 80);
  return `citypulse_${safe}_${stamp(fromMs)}_${stamp(toMs)}.csv`;
}
