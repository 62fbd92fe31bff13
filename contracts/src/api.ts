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
  /** A disabled device may not connect; the device list leaves it out, GET /devices/:id still shows it. */
  enabled: Type.Boolean(),
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

/** How a history comes back: JSON (default) or CSV (`text/csv`, a header row, ISO 8601 UTC times). */
export const HistoryFormat = Type.Union([Type.Literal('json'), Type.Literal('csv')], { description: 'json (default) or csv: a download with a header row and ISO 8601 UTC times' });
export type HistoryFormat = Static<typeof HistoryFormat>;

const historyRange = {
  from: Type.String({ maxLength: 40, description: 'start, ISO 8601 or epoch ms; moved back to the start of its window' }),
  to: Type.Optional(Type.String({ maxLength: 40, description: 'end, ISO 8601 or epoch ms; default now; moved on to the end of its window' })),
  maxPoints: Type.Optional(
    Type.Integer({
      minimum: 10,
      maximum: 2000,
      description: 'at most this many windows (default 1,000: 30 days in 1-hour windows); windows of 1 min and more are read from the roll-ups',
    }),
  ),
  format: Type.Optional(HistoryFormat),
};

export const HistoryQuery = Type.Object(
  {
    ...historyRange,
    fields: Type.Optional(Type.String({ maxLength: 1024, description: "comma-separated field names; default: the domain's main fields" })),
    aggregate: Type.Optional(Type.Union([Type.Literal('mean'), Type.Literal('min'), Type.Literal('max'), Type.Literal('count')], { description: 'per window (default mean)' })),
  },
  { additionalProperties: false },
);
export type HistoryQuery = Static<typeof HistoryQuery>;

/**
 * Where a history's windows came from: the roll-ups (`rollup_1m`, `rollup_1h`) up to their newest
 * complete window, raw readings (the raw retention policy, `raw` by default) after it. A window
 * that spans the boundary combines both.
 */
export const HistorySource = Type.Object(
  {
    measurement: Type.String({ description: 'traffic, environment or energy' }),
    retentionPolicy: Type.String({ description: 'raw, rollup_1m or rollup_1h' }),
    from: Type.Number({ description: 'epoch ms, inclusive' }),
    to: Type.Number({ description: 'epoch ms, exclusive' }),
  },
  { additionalProperties: false },
);
export type HistorySource = Static<typeof HistorySource>;

const HistoryPoint = Type.Object({ t: Type.Number(), values: Type.Record(Type.String(), Type.Union([Type.Number(), Type.Null()])) });

export const HistoryResponse = Type.Object({
  deviceId: Type.String(),
  domain: DomainName,
  /** Start of the first window, epoch ms (the requested start moved back to a window boundary). */
  from: Type.Number(),
  /** End of the last window, epoch ms. */
  to: Type.Number(),
  /**
   * Width of each aggregation window, ms; chosen so the range yields at most maxPoints windows.
   * Windows of 3 h and more start on Vietnam's local boundaries (UTC+7: days at local midnight, weeks on Monday).
   */
  windowMs: Type.Number(),
  aggregate: Type.String(),
  fields: Type.Array(Type.String()),
  /** What was read for which part of the range (added with the roll-ups; older clients ignore it). */
  sources: Type.Array(HistorySource),
  /** One row per window with data: t (window start, epoch ms) and one value (or null) per field. */
  points: Type.Array(HistoryPoint),
});
export type HistoryResponse = Static<typeof HistoryResponse>;

/**
 * Province aggregates over time (GET /provinces/:code/history), one metric per domain, each a set
 * of columns named `<stored field>_<aggregate>`. Every mean is over the readings of the
 * province's devices in the window, Σ(mean × count) / Σ count from the roll-ups, so a value means
 * the same at every window size (a station reporting twice as often weighs twice).
 */
export const PROVINCE_HISTORY_METRICS = {
  /** VN_AQI (indicative, per reading; never the US EPA scale) of the province's air stations: mean and max. */
  vnAqi: { domain: 'environment', columns: [{ name: 'vnAqi_mean', field: 'vnAqi', aggregate: 'mean' }, { name: 'vnAqi_max', field: 'vnAqi', aggregate: 'max' }] },
  /**
   * Road congestion of the province's lanes. densityPcPerMiLn_mean: mean density, passenger-car
   * units per mile per lane, the HCM level-of-service scale (A ≤ 11, B ≤ 18, C ≤ 26, D ≤ 35,
   * E ≤ 45, F above; contracts/src/traffic.ts), over readings with moving traffic (density is
   * undefined at a standstill). occupancy_mean: mean detector occupancy (0–1) of every reading,
   * standstill included, so a jammed lane still counts. Not the LOS letters or `congested`: the
   * roll-ups keep only counts of strings and no share of true booleans, so neither could be
   * averaged exactly over a window.
   */
  congestion: {
    domain: 'traffic',
    columns: [{ name: 'densityPcPerMiLn_mean', field: 'densityPcPerMiLn', aggregate: 'mean' }, { name: 'occupancy_mean', field: 'occupancy', aggregate: 'mean' }],
  },
  /** Grid load: apparent power over rated power (loadFactor) of the province's meters: mean and max. */
  gridLoad: { domain: 'energy', columns: [{ name: 'loadFactor_mean', field: 'loadFactor', aggregate: 'mean' }, { name: 'loadFactor_max', field: 'loadFactor', aggregate: 'max' }] },
} as const satisfies Readonly<
  Record<string, { readonly domain: Domain; readonly columns: readonly { readonly name: string; readonly field: string; readonly aggregate: 'mean' | 'min' | 'max' | 'count' }[] }>
>;
export type ProvinceHistoryMetric = keyof typeof PROVINCE_HISTORY_METRICS;

export const ProvinceHistoryQuery = Type.Object(
  {
    ...historyRange,
    metrics: Type.Optional(
      Type.String({
        maxLength: 256,
        description:
          'comma-separated, default all: vnAqi (vnAqi_mean, vnAqi_max over the air stations), congestion (densityPcPerMiLn_mean: mean lane density in pc/mi/ln, the HCM LOS scale A ≤ 11 … E ≤ 45, F above, over moving traffic; occupancy_mean: mean detector occupancy 0–1, standstill included), gridLoad (loadFactor_mean, loadFactor_max: apparent over rated power). Means are over every reading in the window, exact at every window size.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ProvinceHistoryQuery = Static<typeof ProvinceHistoryQuery>;

export const ProvinceHistoryResponse = Type.Object({
  province: Type.String(),
  /** Start of the first window, epoch ms. */
  from: Type.Number(),
  /** End of the last window, epoch ms. */
  to: Type.Number(),
  windowMs: Type.Number(),
  metrics: Type.Array(Type.String()),
  /** The columns of `values`, e.g. vnAqi_mean, vnAqi_max (see PROVINCE_HISTORY_METRICS). */
  fields: Type.Array(Type.String()),
  sources: Type.Array(HistorySource),
  points: Type.Array(HistoryPoint),
});
export type ProvinceHistoryResponse = Static<typeof ProvinceHistoryResponse>;

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

/** Device management (admin, within the admin's provinces). */
export const DeviceProfileBody = Type.Object(
  {
    ratedPowerVA: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1e10, description: 'energy: rated apparent power, VA (gives the load factor)' })),
    nominalPhaseVoltageV: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1e6, description: 'energy: nominal phase-to-neutral voltage, V' })),
  },
  { additionalProperties: false },
);
const DeviceKind = Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]{0,39}$', description: 'a low-cardinality kind such as a road class or station type' });
const DeviceName = Type.String({ minLength: 1, maxLength: 120 });
const LngLat = Type.Tuple([Type.Number({ minimum: -180, maximum: 180 }), Type.Number({ minimum: -90, maximum: 90 })], { description: '[longitude, latitude], inside the province' });
export const CreateDeviceBody = Type.Object(
  { id: DeviceId, province: ProvinceCode, domain: DomainName, location: LngLat, kind: Type.Optional(DeviceKind), name: Type.Optional(DeviceName), profile: Type.Optional(DeviceProfileBody) },
  { additionalProperties: false },
);
export type CreateDeviceBody = Static<typeof CreateDeviceBody>;
export const UpdateDeviceBody = Type.Object(
  { enabled: Type.Optional(Type.Boolean()), location: Type.Optional(LngLat), kind: Type.Optional(DeviceKind), name: Type.Optional(DeviceName), profile: Type.Optional(DeviceProfileBody) },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateDeviceBody = Static<typeof UpdateDeviceBody>;
/** A device's secret, returned once (at creation or rotation); only its hash is kept. */
export const DeviceSecret = Type.Object({ device: DeviceView, secret: Type.String() }, { additionalProperties: false });
