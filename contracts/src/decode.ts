import { Compile } from 'typebox/compile';
import type { Validator } from 'typebox/compile';
import { fail, ok, type Rejection, type Result } from './result.js';
import { AIR_POLLUTANTS, DeviceStatusPayload, MAX_BATCH_READINGS, READING_SCHEMAS, type ReadingByDomain } from './schemas.js';
import { DOMAINS, type Domain } from './topics.js';

/** Limits applied while decoding, one defaults object (units in the names). */
export interface DecodeLimits {
  /** Largest accepted payload; bigger ones are refused before parsing. */
  readonly maxPayloadBytes: number;
  /** How far a device clock may run ahead of ours. */
  readonly maxClockSkewMs: number;
  /** Oldest accepted reading (a device's offline backlog), normally the raw retention period. */
  readonly maxAgeMs: number;
}

export const DEFAULT_DECODE_LIMITS: DecodeLimits = {
  maxPayloadBytes: 256 * 1024, // 256 KiB: a full batch of 1000 readings fits
  maxClockSkewMs: 5 * 60_000, // 5 minutes
  maxAgeMs: 30 * 24 * 3_600_000, // 30 days
};

export interface ReadingRejection extends Rejection {
  /** Position in a batch; 0 for a single reading. */
  readonly index: number;
}

export interface DecodedTelemetry<D extends Domain = Domain> {
  readonly readings: ReadingByDomain[D][];
  /** Readings of a batch that were refused one by one; the rest of the batch is kept. */
  readonly rejected: ReadingRejection[];
  readonly batch: boolean;
}

const singleValidators = Object.fromEntries(DOMAINS.map((d) => [d, Compile(READING_SCHEMAS[d])])) as Record<Domain, Validator>;
const statusValidator = Compile(DeviceStatusPayload);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes a telemetry payload of one domain, single or batch form. The envelope (size, UTF-8,
 * JSON, shape) is all or nothing; inside a batch each reading is checked on its own, so one bad
 * reading never costs the good ones.
 */
export function decodeTelemetry<D extends Domain>(
  domain: D,
  payload: Uint8Array | string,
  nowMs: number,
  limits: DecodeLimits = DEFAULT_DECODE_LIMITS,
): Result<DecodedTelemetry<D>> {
  const size = typeof payload === 'string' ? payload.length : payload.byteLength;
  if (size > limits.maxPayloadBytes) {
    return fail('E_TOO_LARGE', `payload of ${size} bytes exceeds the limit of ${limits.maxPayloadBytes} bytes; split the batch`);
  }
  const parsed = parseJson(payload);
  if (!parsed.ok) return parsed;
  const body = parsed.value;

  const isBatch = typeof body === 'object' && body !== null && !Array.isArray(body) && Object.hasOwn(body, 'readings');
  if (isBatch) {
    const readings = (body as { readings: unknown }).readings;
    if (Array.isArray(readings) && readings.length > MAX_BATCH_READINGS) {
      return fail('E_BATCH_TOO_LARGE', `batch holds ${readings.length} readings; send at most ${MAX_BATCH_READINGS} per message`);
    }
    if (!Array.isArray(readings) || readings.length === 0 || Object.keys(body).length !== 1) {
      return fail('E_PAYLOAD_SCHEMA', 'batch form must be {"readings":[…]} with 1 or more readings and no other key');
    }
    const accepted: ReadingByDomain[D][] = [];
    const rejected: ReadingRejection[] = [];
    readings.forEach((item: unknown, index) => {
      const checked = checkReading(domain, item, nowMs, limits);
      if (checked.ok) accepted.push(checked.value);
      else rejected.push({ ...checked.error, index, message: `readings[${index}]: ${checked.error.message}` });
    });
    // A batch whose readings all fail is one rejection with the first reason.
    if (accepted.length === 0) {
      const first = rejected[0];
      return fail(first?.code ?? 'E_PAYLOAD_SCHEMA', first?.message ?? 'no valid reading in batch');
    }
    return ok({ readings: accepted, rejected, batch: true });
  }
  const checked = checkReading(domain, body, nowMs, limits);
  if (!checked.ok) return checked;
  return ok({ readings: [checked.value], rejected: [], batch: false });
}

function checkReading<D extends Domain>(domain: D, item: unknown, nowMs: number, limits: DecodeLimits): Result<ReadingByDomain[D]> {
  const validator = singleValidators[domain];
  if (!validator.Check(item)) {
    return fail('E_PAYLOAD_SCHEMA', describeSchemaErrors(validator, item, domain));
  }
  const reading = item as ReadingByDomain[D];
  if (reading.ts > nowMs + limits.maxClockSkewMs) {
    return fail('E_CLOCK_SKEW', `ts ${new Date(reading.ts).toISOString()} is ${Math.round((reading.ts - nowMs) / 1000)} s ahead of the server clock (limit ${limits.maxClockSkewMs / 1000} s); check the device clock (NTP)`);
  }
  if (reading.ts < nowMs - limits.maxAgeMs) {
    return fail('E_TOO_OLD', `ts ${new Date(reading.ts).toISOString()} is older than the ${Math.round(limits.maxAgeMs / 86_400_000)}-day retention period`);
  }
  if (domain === 'environment' && !AIR_POLLUTANTS.some((p) => (reading as ReadingByDomain['environment'])[p] !== undefined)) {
    const env = reading as ReadingByDomain['environment'];
    if (env.temperature === undefined && env.relativeHumidity === undefined && env.LAeq === undefined) {
      return fail('E_PAYLOAD_SCHEMA', 'environment reading carries no measured value (pm25, pm10, no2, o3, co, so2, temperature, relativeHumidity or LAeq)');
    }
  }
  return ok(reading);
}

/** Decodes a retained status payload (also the last will). */
export function decodeStatus(payload: Uint8Array | string): Result<DeviceStatusPayload> {
  const parsed = parseJson(payload);
  if (!parsed.ok) return parsed;
  if (!statusValidator.Check(parsed.value)) {
    return fail('E_PAYLOAD_SCHEMA', describeSchemaErrors(statusValidator, parsed.value, 'status'));
  }
  return ok(parsed.value);
}

function parseJson(payload: Uint8Array | string): Result<unknown> {
  let text: string;
  try {
    text = typeof payload === 'string' ? payload : utf8.decode(payload);
  } catch {
    return fail('E_PAYLOAD_JSON', 'payload is not valid UTF-8; send JSON text');
  }
  try {
    return ok(JSON.parse(text) as unknown);
  } catch (err) {
    return fail('E_PAYLOAD_JSON', `payload is not JSON: ${(err as Error).message}`);
  }
}

/** The first few schema errors, as "path: message" the device author can act on. */
function describeSchemaErrors(validator: Validator, value: unknown, what: string): string {
  const errors = validator.Errors(value).slice(0, 3);
  const parts = errors.map((e) => {
    const path = e.instancePath === '' ? '(root)' : e.instancePath;
    const extra = e.keyword === 'additionalProperties' ? ` ${JSON.stringify((e.params as { additionalProperties?: unknown }).additionalProperties)}` : '';
    return `${path} ${e.message}${extra}`;
  });
  return `${what} reading: ${parts.join('; ') || 'does not match the schema'}`;
}
