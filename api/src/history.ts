import { CodedError, DEFAULT_HISTORY_FIELDS, HISTORY_FIELDS, type Domain, type HistoryResponse } from '@citypulse/contracts';
import { quoteIdentifier, type Influx } from '@citypulse/infra';

/** History query limits (units in the names). */
export const HISTORY_DEFAULTS = {
  maxPoints: 500,
  maxRangeMs: 366 * 86_400_000, // one year
  maxFields: 8,
} as const;

/** Window widths a chart reads naturally; the smallest that keeps the range within maxPoints wins. */
const NICE_WINDOWS_MS = [1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 10_800, 21_600, 43_200, 86_400, 604_800].map((s) => s * 1000);

const AGGREGATES = { mean: 'MEAN', min: 'MIN', max: 'MAX', count: 'COUNT' } as const;
export type Aggregate = keyof typeof AGGREGATES;

/** Parses an ISO 8601 time or epoch milliseconds; throws E_BAD_REQUEST naming the parameter. */
export function parseTime(name: string, text: string): number {
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms) || ms < 0 || text.length > 40) {
    throw new CodedError('E_BAD_REQUEST', `${name}="${text.slice(0, 40)}" is not a time: use ISO 8601 (2026-11-22T08:00:00Z) or epoch milliseconds`);
  }
  return ms;
}

export function chooseWindowMs(rangeMs: number, maxPoints: number): number {
  const needed = rangeMs / maxPoints;
  return NICE_WINDOWS_MS.find((w) => w >= needed) ?? Math.ceil(needed / 86_400_000) * 86_400_000;
}

export function resolveFields(domain: Domain, requested: string | undefined): string[] {
  if (requested === undefined || requested.trim() === '') return [...DEFAULT_HISTORY_FIELDS[domain]];
  const names = requested.split(',').map((f) => f.trim());
  if (names.length > HISTORY_DEFAULTS.maxFields) throw new CodedError('E_BAD_REQUEST', `at most ${HISTORY_DEFAULTS.maxFields} fields per query`);
  const allowed = HISTORY_FIELDS[domain];
  for (const name of names) {
    if (!allowed.includes(name)) {
      throw new CodedError('E_BAD_REQUEST', `field "${name.slice(0, 64)}" is not a numeric ${domain} field; choose from ${allowed.join(', ')}`);
    }
  }
  return [...new Set(names)];
}

export interface HistoryRequest {
  readonly deviceId: string;
  readonly domain: Domain;
  readonly fromMs: number;
  readonly toMs: number;
  readonly fields: readonly string[];
  readonly aggregate: Aggregate;
  readonly maxPoints: number;
}

/**
 * One device's history, aggregated into windows so any range returns a bounded number of points.
 * The device id is a bound parameter; field names were checked against the catalogue; times and
 * window are numbers we computed.
 */
export async function queryHistory(influx: Influx, request: HistoryRequest): Promise<HistoryResponse> {
  const { fromMs, toMs, fields, aggregate, maxPoints, domain, deviceId } = request;
  if (toMs <= fromMs) throw new CodedError('E_BAD_REQUEST', '"to" must be after "from"');
  if (toMs - fromMs > HISTORY_DEFAULTS.maxRangeMs) throw new CodedError('E_BAD_REQUEST', 'range is longer than one year; narrow it');
  const windowMs = chooseWindowMs(toMs - fromMs, maxPoints);
  const fn = AGGREGATES[aggregate];
  const select = fields.map((f) => `${fn}(${quoteIdentifier(f)}) AS ${quoteIdentifier(f)}`).join(', ');
  const measurement = `${quoteIdentifier(influx.settings.retentionPolicy)}.${quoteIdentifier(domain)}`;
  const q =
    `SELECT ${select} FROM ${measurement} WHERE "device" = $device AND time >= ${Math.floor(fromMs)}ms AND time < ${Math.ceil(toMs)}ms ` +
    `GROUP BY time(${windowMs}ms) fill(none)`;
  const [series = []] = await influx.query(q, { device: deviceId });
  const points: HistoryResponse['points'] = [];
  for (const s of series) {
    for (const row of s.values) {
      const values: Record<string, number | null> = {};
      s.columns.forEach((column, i) => {
        if (i === 0) return;
        const v = row[i];
        values[column] = typeof v === 'number' ? v : null;
      });
      points.push({ t: row[0] as number, values });
    }
  }
  return { deviceId, domain, from: fromMs, to: toMs, windowMs, aggregate, fields: [...fields], points };
}
