import Type, { type Static } from 'typebox';
import { DeviceId, DomainName, ProvinceCode } from './api.js';

/**
 * Alerts: what ingest's rules engine raises and clears, what the api stores and serves, what the
 * dashboard lists. Every alert instance has exactly two events at most, `raised` and then
 * `cleared`, sharing one `id`.
 */

export const ALERT_SEVERITIES = ['info', 'warning', 'critical'] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

/**
 * What a rule watches: `threshold` a number above and/or below limits, `category` a
 * categorical value (level of service, frequency band) among listed values, `no-data` a silent
 * device, `frozen` a field that stopped changing.
 */
export const ALERT_KINDS = ['threshold', 'category', 'no-data', 'frozen'] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

export const ALERT_STATES = ['raised', 'cleared'] as const;
export type AlertState = (typeof ALERT_STATES)[number];

/** Rule ids: short, lower case, no '|' (the separator of alert ids). */
export const ALERT_RULE_ID_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

export const AlertEvent = Type.Object(
  {
    /** Stable id of this alert instance: `${ruleId}|${deviceId}|${raisedAt}` (see alertId). */
    id: Type.String({ minLength: 1, maxLength: 200 }),
    ruleId: Type.String({ pattern: ALERT_RULE_ID_PATTERN.source, maxLength: 64 }),
    kind: Type.Enum(ALERT_KINDS),
    state: Type.Enum(ALERT_STATES),
    severity: Type.Enum(ALERT_SEVERITIES),
    deviceId: DeviceId,
    province: ProvinceCode,
    domain: DomainName,
    /** The reading or derived field the rule watches; absent for no-data. */
    field: Type.Optional(Type.String({ maxLength: 64 })),
    /** The field's value when the event happened (raised: the value that raised it). */
    value: Type.Optional(Type.Union([Type.Number(), Type.String({ maxLength: 64 }), Type.Boolean()])),
    /** The limit that was crossed (for a band, the side that was crossed). */
    threshold: Type.Optional(Type.Number()),
    /** Plain English an operator reads, e.g. "PM2.5 above 55.4 µg/m³ for 10 min (62.1)". */
    message: Type.String({ maxLength: 500 }),
    /** When the alert instance was raised, epoch ms. */
    raisedAt: Type.Integer({ minimum: 0 }),
    /** When this event happened, epoch ms (for `raised`, equal to raisedAt). */
    ts: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type AlertEvent = Static<typeof AlertEvent>;

/** The id shared by the raised and the cleared event of one alert instance. */
export function alertId(ruleId: string, deviceId: string, raisedAt: number): string {
  return `${ruleId}|${deviceId}|${raisedAt}`;
}
