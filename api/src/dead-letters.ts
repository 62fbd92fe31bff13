import { CodedError, isRejectionCode, MEASUREMENTS, type RejectedList, type RejectedRecord } from '@citypulse/contracts';
import { quoteIdentifier, type Influx } from '@citypulse/infra';
import { HISTORY_DEFAULTS } from './history.js';

export const DEAD_LETTER_DEFAULTS = {
  /** Range when the request names no "from". */
  rangeMs: 86_400_000,
  limit: 100,
} as const;

export interface DeadLetterRequest {
  readonly deviceId: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly code?: string | undefined;
  readonly limit: number;
}

/**
 * A device's dead-letter records (the `rejected` measurement ingest writes): the newest `limit`
 * of the range, and the counts by code over all of it. The device id and code are bound
 * parameters, the code is checked against the catalogue, times are numbers.
 */
export async function queryDeadLetters(influx: Influx, request: DeadLetterRequest): Promise<RejectedList> {
  const { deviceId, fromMs, toMs, code, limit } = request;
  if (toMs <= fromMs) throw new CodedError('E_BAD_REQUEST', '"to" must be after "from"');
  if (toMs - fromMs > HISTORY_DEFAULTS.maxRangeMs) throw new CodedError('E_BAD_REQUEST', 'range is longer than one year; narrow it');
  if (code !== undefined && !isRejectionCode(code)) throw new CodedError('E_BAD_REQUEST', `code "${code.slice(0, 40)}" is not a rejection code (E_PAYLOAD_SCHEMA, E_CLOCK_SKEW, …)`);
  const from = `${quoteIdentifier(influx.settings.retentionPolicy)}.${quoteIdentifier(MEASUREMENTS.rejected)}`;
  const where = `"device" = $device AND time >= ${Math.floor(fromMs)}ms AND time < ${Math.ceil(toMs)}ms${code ? ' AND "code" = $code' : ''}`;
  const params: Record<string, string> = { device: deviceId };
  if (code) params.code = code;
  const [countSeries = [], recordSeries = []] = await influx.query(
    `SELECT count("bytes") FROM ${from} WHERE ${where} GROUP BY "code"; ` +
      `SELECT "code", "topic", "reason", "payload", "bytes" FROM ${from} WHERE ${where} ORDER BY time DESC LIMIT ${Math.trunc(limit)}`,
    params,
  );
  const counts: Record<string, number> = {};
  let total = 0;
  for (const s of countSeries) {
    const n = Number(s.values[0]?.[1] ?? 0);
    const key = s.tags?.code ?? '';
    if (!key || n === 0) continue;
    counts[key] = n;
    total += n;
  }
  const records: RejectedRecord[] = [];
  for (const s of recordSeries) {
    const at = new Map(s.columns.map((c, i) => [c, i]));
    const text = (row: readonly unknown[], column: string): string => {
      const v = row[at.get(column) ?? -1];
      return typeof v === 'string' ? v : '';
    };
    for (const row of s.values) {
      records.push({ ts: Number(row[0]), code: text(row, 'code'), topic: text(row, 'topic'), reason: text(row, 'reason'), payload: text(row, 'payload'), bytes: Number(row[at.get('bytes') ?? -1] ?? 0) });
    }
  }
  return { deviceId, from: fromMs, to: toMs, counts, total, records };
}
