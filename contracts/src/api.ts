import Type, { type Static, type TSchema } from 'typebox';
import { READING_SCHEMAS } from './schemas.js';
import { DOMAINS, DEVICE_ID_PATTERN, type Domain } from './topics.js';

/**
 * REST shapes shared by the api (route schemas, OpenAPI) and the dashboard (types).
 * Every error response is ErrorBody with a stable code from errors.ts.
 */
export const API_PREFIX = '/api/v1';

export const ErrorBody = Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false });
export type ErrorBody = Static<typeof ErrorBody>;

export const ProvinceCode = Type.String({ pattern: '^[0-9]{2}$', description: 'two-digit province code, e.g. 01' });
export const DomainName = Type.Union([Type.Literal('traffic'), Type.Literal('environment'), Type.Literal('energy')]);
export const DeviceId = Type.String({ pattern: DEVICE_ID_PATTERN.source, maxLength: 64 });

export const LoginBody = Type.Object(
  { username: Type.String({ minLength: 1, maxLength: 64 }), password: Type.String({ minLength: 1, maxLength: 256 }) },
  { additionalProperties: false },
);
export type LoginBody = Static<typeof LoginBody>;

export const OperatorRoleName = Type.Union([Type.Literal('viewer'), Type.Literal('operator'), Type.Literal('admin')], {
  description: 'viewer: sees; operator: also acknowledges alerts and runs replays; admin: also manages operators, devices and rules',
});
/** The provinces an operator may see; null: all 34. */
export const ProvinceScope = Type.Union([Type.Array(ProvinceCode, { minItems: 1, maxItems: 34 }), Type.Null()]);

export const SessionInfo = Type.Object(
  { username: Type.String(), role: OperatorRoleName, provinces: ProvinceScope, expiresAt: Type.Number({ description: 'session expiry, epoch ms' }) },
  { additionalProperties: false },
);
export type SessionInfo = Static<typeof SessionInfo>;

export const DevicesQuery = Type.Object(
  {
    province: Type.Optional(ProvinceCode),
    domain: Type.Optional(DomainName),
    status: Type.Optional(Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('unknown')])),
    q: Type.Optional(Type.String({ maxLength: 64, description: 'text in the device id or name (case- and accent-insensitive)' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 20_000, description: 'devices per page (default 1,000)' })),
    offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000, description: 'devices skipped (ordered by id)' })),
  },
  { additionalProperties: false },
);
export type DevicesQuery = Static<typeof DevicesQuery>;

const Scalar = Type.Union([Type.Number(), Type.Boolean(), Type.String()]);

export const LatestReading = Type.Object({
  ts: Type.Number(),
  seq: Type.Number(),
  values: Type.Record(Type.String(), Scalar),
  derived: Type.Record(Type.String(), Scalar),
  state: Type.Object({ level: Type.String(), color: Type.String() }),
});

export const DeviceView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  province: Type.String(),
  domain: DomainName,
  kind: Type.String(),
  /** [lng, lat] */
  location: Type.Tuple([Type.Number(), Type.Number()]),
  status: Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('unknown')]),
  latest: Type.Union([LatestReading, Type.Null()]),
});
export type DeviceView = Static<typeof DeviceView>;

export const DeviceList = Type.Object({
  devices: Type.Array(DeviceView),
  /** Devices matching the filter, all pages. */
  total: Type.Integer({ minimum: 0 }),
  limit: Type.Integer({ minimum: 1 }),
  offset: Type.Integer({ minimum: 0 }),
});
export type DeviceList = Static<typeof DeviceList>;

export const HistoryQuery = Type.Object(
  {
    from: Type.String({ description: 'start, ISO 8601 or epoch ms' }),
    to: Type.Optional(Type.String({ description: 'end, ISO 8601 or epoch ms; default now' })),
    fields: Type.Optional(Type.String({ description: 'comma-separated field names; default: the domain\'s main fields' })),
    aggregate: Type.Optional(Type.Union([Type.Literal('mean'), Type.Literal('min'), Type.Literal('max'), Type.Literal('count')])),
    maxPoints: Type.Optional(Type.Integer({ minimum: 10, maximum: 2000 })),
  },
  { additionalProperties: false },
);
export type HistoryQuery = Static<typeof HistoryQuery>;

export const HistoryResponse = Type.Object({
  deviceId: Type.String(),
  domain: DomainName,
  from: Type.Number(),
  to: Type.Number(),
  /** Width of each aggregation window, ms; chosen so the range yields at most maxPoints windows. */
  windowMs: Type.Number(),
  aggregate: Type.String(),
  fields: Type.Array(Type.String()),
  /** One row per window: t (window start, epoch ms) and one value (or null) per field. */
  points: Type.Array(Type.Object({ t: Type.Number(), values: Type.Record(Type.String(), Type.Union([Type.Number(), Type.Null()])) })),
});
export type HistoryResponse = Static<typeof HistoryResponse>;

/** A device's dead-letter records: what ingest refused from it, and why (GET /devices/:id/rejected). */
export const RejectedQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ description: 'start, ISO 8601 or epoch ms; default 24 hours before "to"' })),
    to: Type.Optional(Type.String({ description: 'end, ISO 8601 or epoch ms; default now' })),
    code: Type.Optional(Type.String({ pattern: '^E_[A-Z_]{1,40}$', description: 'only this rejection code, e.g. E_PAYLOAD_SCHEMA' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'newest records returned (default 100); counts cover the whole range' })),
  },
  { additionalProperties: false },
);
export type RejectedQuery = Static<typeof RejectedQuery>;

export const RejectedRecord = Type.Object(
  {
    /** When ingest received it, epoch ms. */
    ts: Type.Number(),
    code: Type.String(),
    topic: Type.String(),
    reason: Type.String(),
    /** The payload's first 1 KiB (DEAD_LETTER_PAYLOAD_BYTES), as text. Device text: escape it before showing it. */
    payload: Type.String(),
    /** The payload's full size. */
    bytes: Type.Number(),
  },
  { additionalProperties: false },
);
export type RejectedRecord = Static<typeof RejectedRecord>;

export const RejectedList = Type.Object(
  {
    deviceId: Type.String(),
    from: Type.Number(),
    to: Type.Number(),
    /** Rejections in the range, by code (all of them, not only those returned). */
    counts: Type.Record(Type.String(), Type.Integer({ minimum: 0 })),
    total: Type.Integer({ minimum: 0 }),
    /** The newest first, at most `limit`. */
    records: Type.Array(RejectedRecord),
  },
  { additionalProperties: false },
);
export type RejectedList = Static<typeof RejectedList>;

/** Fields charted by default, per domain. */
export const DEFAULT_HISTORY_FIELDS = {
  traffic: ['averageVehicleSpeed', 'intensity', 'occupancy'],
  environment: ['pm25', 'pm10', 'vnAqi'],
  energy: ['totalActivePower', 'frequency', 'loadFactor'],
} as const;

/** Numeric derived fields that can be charted, per domain. */
const DERIVED_NUMERIC: Readonly<Record<Domain, readonly string[]>> = {
  traffic: ['flowVehPerHour', 'densityPcPerMiLn'],
  environment: ['vnAqi'],
  energy: ['loadFactor', 'apparentPowerVA', 'voltageDeviation'],
};

/**
 * Every numeric field a history query may name, per domain: the schema's numeric properties
 * (nested ones flattened with '_', as stored) and the numeric derived values. Queries check field
 * names against this list, so no user text reaches InfluxQL as an identifier.
 */
export const HISTORY_FIELDS: Readonly<Record<Domain, readonly string[]>> = Object.fromEntries(
  DOMAINS.map((domain) => [domain, [...numericProperties(READING_SCHEMAS[domain], ''), ...DERIVED_NUMERIC[domain]]]),
) as unknown as Record<Domain, readonly string[]>;

function numericProperties(schema: TSchema, prefix: string): string[] {
  const properties = (schema as { properties?: Record<string, TSchema & { type?: string }> }).properties ?? {};
  return Object.entries(properties).flatMap(([name, property]) => {
    const path = prefix === '' ? name : `${prefix}_${name}`;
    if (name === 'ts' && prefix === '') return [];
    if (property.type === 'number' || property.type === 'integer') return [path];
    if (property.type === 'object') return numericProperties(property, path);
    return [];
  });
}

/** Operator accounts (admin routes). */
export const OperatorView = Type.Object(
  { username: Type.String(), role: OperatorRoleName, provinces: ProvinceScope, disabled: Type.Boolean(), createdAt: Type.String(), updatedAt: Type.String() },
  { additionalProperties: false },
);
export type OperatorView = Static<typeof OperatorView>;
export const OperatorList = Type.Object({ operators: Type.Array(OperatorView) }, { additionalProperties: false });
export type OperatorList = Static<typeof OperatorList>;
export const Username = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{1,63}$', description: "2–64 of a-z, 0-9, '.', '_', '-'" });
export const Password = Type.String({ minLength: 12, maxLength: 256 });
export const CreateOperatorBody = Type.Object(
  { username: Username, role: OperatorRoleName, password: Password, provinces: Type.Optional(ProvinceScope) },
  { additionalProperties: false },
);
export type CreateOperatorBody = Static<typeof CreateOperatorBody>;
export const UpdateOperatorBody = Type.Object(
  { role: Type.Optional(OperatorRoleName), password: Type.Optional(Password), provinces: Type.Optional(ProvinceScope), disabled: Type.Optional(Type.Boolean()) },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateOperatorBody = Static<typeof UpdateOperatorBody>;

/** The audit log of operator actions (admin). */
export const AuditQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ description: 'start, ISO 8601 or epoch ms; default 7 days before "to"' })),
    to: Type.Optional(Type.String({ description: 'end, ISO 8601 or epoch ms; default now' })),
    operator: Type.Optional(Username),
    action: Type.Optional(Type.String({ pattern: '^[a-z][a-z.]{0,40}$', description: 'an action or its prefix, e.g. login or alert' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000 })),
  },
  { additionalProperties: false },
);
export type AuditQuery = Static<typeof AuditQuery>;
export const AuditEntryView = Type.Object({
  ts: Type.Number(),
  operator: Type.String(),
  action: Type.String(),
  target: Type.Optional(Type.String()),
  detail: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  ip: Type.Optional(Type.String()),
});
export const AuditList = Type.Object({ from: Type.Number(), to: Type.Number(), entries: Type.Array(AuditEntryView) });
export type AuditList = Static<typeof AuditList>;
