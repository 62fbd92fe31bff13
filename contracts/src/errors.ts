/**
 * Stable rejection codes. Logs, metrics, dead-letter records, REST errors and tests all use
 * these strings; never rename one, only add.
 */
export const REJECTION_CODES = {
  E_TOPIC: 'topic does not follow city/{province}/{domain}/{deviceId}/{channel}',
  E_PROVINCE: 'unknown province code',
  E_PAYLOAD_JSON: 'payload is not UTF-8 JSON',
  E_PAYLOAD_SCHEMA: 'payload does not match the reading schema of its domain',
  E_TOO_LARGE: 'payload is larger than the limit',
  E_BATCH_TOO_LARGE: 'batch holds more readings than the limit',
  E_CLOCK_SKEW: 'reading timestamp is too far in the future',
  E_TOO_OLD: 'reading timestamp is older than the retention period',
  E_AUTH: 'bad device id or secret',
  E_DEVICE_DISABLED: 'device is disabled',
  E_ACL_PUBLISH: 'client may not publish to this topic',
  E_ACL_SUBSCRIBE: 'client may not subscribe to this topic filter',
  E_BAD_REQUEST: 'request parameters are invalid',
  E_UNAUTHORIZED: 'login required',
  E_FORBIDDEN: 'not allowed for this account',
  E_NOT_FOUND: 'no such resource',
  E_CONFLICT: 'the change conflicts with what exists (a name taken, the last admin)',
  E_RATE_LIMITED: 'too many requests',
  E_CONFIG: 'configuration value is invalid',
  E_UPSTREAM: 'a backing service (InfluxDB, broker) is unavailable',
  E_STORE_REFUSED: 'InfluxDB refused the line (e.g. a field that changed type)',
  E_INTERNAL: 'internal error',
  E_TIMEOUT: 'no answer in time (another api node of the cluster)',
} as const;

export type RejectionCode = keyof typeof REJECTION_CODES;

export function isRejectionCode(value: string): value is RejectionCode {
  return Object.hasOwn(REJECTION_CODES, value);
}

/** An Error that carries a stable code, for code paths that throw rather than return a Result. */
export class CodedError extends Error {
  readonly code: RejectionCode;
  constructor(code: RejectionCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CodedError';
    this.code = code;
  }
}
