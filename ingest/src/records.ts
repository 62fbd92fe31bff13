import { DEAD_LETTER_PAYLOAD_BYTES, MEASUREMENTS, type DeviceStatusPayload, type Domain, type Fields, type RejectionCode } from '@citypulse/contracts';
import { escapeFieldKey, escapeStringField, escapeTag, formatFieldValue } from './line-protocol.js';

/**
 * What ingest stores, as InfluxDB line protocol (millisecond timestamps); the other measurements
 * are described with their names in contracts (MEASUREMENTS):
 *
 *   {domain}   tags device, kind, province   fields: the flattened reading and its derived values
 *              (numbers always floats, so a field never changes type), time: the device's
 *
 * A reading's series and time are its identity: a redelivered message overwrites its own points,
 * which is what makes at-least-once delivery store every reading exactly once.
 */
export function readingLine(domain: Domain, province: string, deviceId: string, kind: string, ts: number, fields: Fields): string {
  return seriesReadingLine(seriesPrefix(domain, province, deviceId, kind), ts, fields);
}

/** A reading's series as line protocol: measurement and tags (the roll-ups keep the same). */
export function seriesPrefix(domain: Domain, province: string, deviceId: string, kind: string): string {
  return `${domain},device=${escapeTag(deviceId)},kind=${escapeTag(kind)},province=${escapeTag(province)}`;
}

/** readingLine for a series already written as seriesPrefix. */
export function seriesReadingLine(prefix: string, ts: number, fields: Fields): string {
  let line = `${prefix} `;
  let first = true;
  for (const name in fields) {
    const value = fields[name];
    if (value === undefined || (typeof value === 'number' && !Number.isFinite(value))) continue;
    line += `${first ? '' : ','}${escapeFieldKey(name)}=${formatFieldValue(value)}`;
    first = false;
  }
  return `${line} ${Math.trunc(ts)}`;
}

export function statusLine(domain: Domain, province: string, deviceId: string, status: DeviceStatusPayload, receivedAt: number): string {
  let line = `${MEASUREMENTS.status},device=${escapeTag(deviceId)},domain=${domain},province=${escapeTag(province)} state=${escapeStringField(status.state)}`;
  if (status.ts !== undefined) line += `,deviceTs=${formatFieldValue(status.ts)}`;
  if (status.reason) line += `,reason=${escapeStringField(status.reason)}`;
  return `${line} ${Math.trunc(receivedAt)}`;
}

export interface Rejected {
  readonly code: RejectionCode;
  readonly topic: string;
  readonly reason: string;
  readonly payload: Buffer;
  readonly deviceId?: string | undefined;
  readonly province?: string | undefined;
}

export function rejectedLine(rejected: Rejected, ts: number): string {
  const payload = rejected.payload.toString('utf8', 0, Math.min(rejected.payload.length, DEAD_LETTER_PAYLOAD_BYTES));
  return (
    `${MEASUREMENTS.rejected},code=${rejected.code},device=${escapeTag(rejected.deviceId ?? '-')},province=${escapeTag(rejected.province ?? '-')} ` +
    `topic=${escapeStringField(rejected.topic.slice(0, 256))},reason=${escapeStringField(rejected.reason.slice(0, 500))},payload=${escapeStringField(payload)},bytes=${rejected.payload.length} ${Math.trunc(ts)}`
  );
}
