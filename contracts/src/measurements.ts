/**
 * What ingest stores in InfluxDB besides the readings (each domain's readings go to a measurement
 * named after the domain: traffic, environment, energy). The api reads them under the same names.
 *
 *   status    tags device, domain, province   fields state, reason, deviceTs; time: received
 *   rejected  tags code, device, province     fields topic, reason, payload (the first
 *             DEAD_LETTER_PAYLOAD_BYTES), bytes; time: received. One point per rejection: the
 *             dead-letter record.
 *   alerts    tags device, domain, province, rule, severity, state; fields id, kind, message, …
 *   alert_acks  tags device, province; fields id, operator, note; time: acknowledged (the api
 *             writes these)
 */
export const MEASUREMENTS = { status: 'status', rejected: 'rejected', alerts: 'alerts', alertAcks: 'alert_acks' } as const;

/** Payload bytes kept in a dead-letter record. */
export const DEAD_LETTER_PAYLOAD_BYTES = 1024;
