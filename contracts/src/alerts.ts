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

/**
 * An operator's acknowledgement of an alert instance: who saw it, when, and what they noted. One
 * per alert id (the first is kept); stored in InfluxDB (`alert_acks`) and kept with the alert.
 */
export const AlertAck = Type.Object(
  {
    /** The alert instance acknowledged (AlertEvent.id). */
    id: Type.String({ minLength: 1, maxLength: 200 }),
    province: ProvinceCode,
    deviceId: DeviceId,
    operator: Type.String({ maxLength: 64 }),
    /** What the operator noted (their text: escape it before showing it). */
    note: Type.String({ maxLength: 500 }),
    /** When, epoch ms. */
    ts: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type AlertAck = Static<typeof AlertAck>;

/** An alert as the api serves it: its newest event (raised, or cleared) and its acknowledgement, if any. */
export const AlertView = Type.Object({ ...AlertEvent.properties, ack: Type.Union([AlertAck, Type.Null()]) }, { additionalProperties: false });
export type AlertView = AlertEvent & { readonly ack: AlertAck | null };

export const AlertNote = Type.String({ maxLength: 500, description: 'what the operator noted (optional, up to 500 characters)' });

/** POST /alerts/ack: acknowledge one active alert (operator role, in scope). */
export const AckAlertBody = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 200, description: 'the alert id (AlertEvent.id)' }), note: Type.Optional(AlertNote) },
  { additionalProperties: false },
);
export type AckAlertBody = Static<typeof AckAlertBody>;

const AlertFilters = {
  province: Type.Optional(ProvinceCode),
  domain: Type.Optional(DomainName),
  severity: Type.Optional(Type.Enum(ALERT_SEVERITIES)),
  device: Type.Optional(DeviceId),
};

/** GET /alerts/active: the alerts raised and not yet cleared, newest first. */
export const ActiveAlertsQuery = Type.Object(AlertFilters, { additionalProperties: false });
export type ActiveAlertsQuery = Static<typeof ActiveAlertsQuery>;
export const ActiveAlertList = Type.Object({ alerts: Type.Array(AlertView), total: Type.Integer({ minimum: 0 }) }, { additionalProperties: false });
export type ActiveAlertList = { readonly alerts: AlertView[]; readonly total: number };

/** GET /alerts: alert events stored in a range (raised and cleared), newest first, with acknowledgements. */
export const AlertHistoryQuery = Type.Object(
  {
    ...AlertFilters,
    from: Type.Optional(Type.String({ description: 'start, ISO 8601 or epoch ms; default 24 hours before "to"' })),
    to: Type.Optional(Type.String({ description: 'end, ISO 8601 or epoch ms; default now' })),
    state: Type.Optional(Type.Enum(ALERT_STATES)),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000, description: 'newest events returned (default 500)' })),
  },
  { additionalProperties: false },
);
export type AlertHistoryQuery = Static<typeof AlertHistoryQuery>;
export const AlertHistory = Type.Object({ from: Type.Number(), to: Type.Number(), events: Type.Array(AlertView) }, { additionalProperties: false });
export type AlertHistory = { readonly from: number; readonly to: number; readonly events: AlertView[] };
