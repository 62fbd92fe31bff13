import { Compile } from 'typebox/compile';
import type { Validator } from 'typebox/compile';
import { vnAqiBand, vnAqiIndicative } from './aqi.js';
import { deriveEnergy, type EnergyDevice } from './energy.js';
import { fail, ok, type Result } from './result.js';
import { READING_SCHEMAS, type EnergyReading, type EnvironmentReading, type ReadingByDomain, type TrafficReading } from './schemas.js';
import { DOMAINS, type Domain } from './topics.js';
import { deriveTraffic, LOS_COLORS } from './traffic.js';

/** Scalar values as stored (InfluxDB fields) and sent in live frames. */
export type FieldValue = number | boolean | string;
export type Fields = Record<string, FieldValue>;

/** What ingest and api know about a device beyond its topic; from the device registry. */
export type DeviceProfile = EnergyDevice;

/**
 * Derived values stored beside each reading. Names are stable: they are InfluxDB field names.
 * vnAqi is the indicative per-reading VN_AQI (see vnAqiIndicative), never the US EPA AQI.
 */
export interface Derived {
  vnAqi?: number;
  vnAqiDominant?: string;
  los?: string;
  flowVehPerHour?: number;
  densityPcPerMiLn?: number;
  loadFactor?: number;
  apparentPowerVA?: number;
  frequencyBand?: string;
  voltageDeviation?: number;
  outOfBand?: boolean;
}

/** Field names of Derived: how a stored row is split back into reading values and derived values. */
export const DERIVED_FIELDS: readonly (keyof Derived)[] = [
  'vnAqi',
  'vnAqiDominant',
  'los',
  'flowVehPerHour',
  'densityPcPerMiLn',
  'loadFactor',
  'apparentPowerVA',
  'frequencyBand',
  'voltageDeviation',
  'outOfBand',
];

/** Pure enrichment shared by every service: VN_AQI, level of service, grid load. */
export function enrichReading<D extends Domain>(domain: D, reading: ReadingByDomain[D], device: DeviceProfile = {}): Derived {
  switch (domain) {
    case 'environment': {
      const result = vnAqiIndicative(reading as EnvironmentReading);
      return result ? { vnAqi: result.aqi, vnAqiDominant: result.dominant } : {};
    }
    case 'traffic': {
      const t = deriveTraffic(reading as TrafficReading);
      return { los: t.los, flowVehPerHour: t.flowVehPerHour, ...(t.densityPcPerMiLn !== undefined ? { densityPcPerMiLn: round(t.densityPcPerMiLn, 2) } : {}) };
    }
    case 'energy': {
      const e = deriveEnergy(reading as EnergyReading, device);
      return {
        apparentPowerVA: round(e.apparentPowerVA, 1),
        frequencyBand: e.frequencyBand,
        outOfBand: e.outOfBand,
        ...(e.loadFactor !== undefined ? { loadFactor: round(e.loadFactor, 4) } : {}),
        ...(e.voltageDeviation !== undefined ? { voltageDeviation: round(e.voltageDeviation, 4) } : {}),
      };
    }
    default:
      return assertNever(domain);
  }
}

/**
 * Flattens a reading to scalar fields (nested objects joined with '_', e.g. phaseVoltage_L1);
 * `ts` is the timestamp, not a field.
 */
export function flattenReading(reading: object): Fields {
  const fields: Fields = {};
  for (const key in reading) {
    if (key !== 'ts') flattenInto(fields, key, (reading as Record<string, unknown>)[key]);
  }
  return fields;
}

// A module-level function, not a closure per reading: this runs for every reading ingest stores.
function flattenInto(fields: Fields, name: string, value: unknown): void {
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') {
    fields[name] = value;
  } else if (typeof value === 'object' && value !== null) {
    for (const key in value) flattenInto(fields, `${name}_${key}`, (value as Record<string, unknown>)[key]);
  }
}

/** A stored row's field columns: InfluxDB answers null for a field the row does not have. */
export type StoredFields = Readonly<Record<string, FieldValue | null | undefined>>;

interface SchemaNode {
  readonly type?: string;
  readonly properties?: Readonly<Record<string, SchemaNode>>;
}

const DERIVED_NAMES: ReadonlySet<string> = new Set(DERIVED_FIELDS);
let readingValidators: Record<Domain, Validator> | undefined;

/**
 * The inverse of flattenReading, for rows read back from InfluxDB: derived fields are dropped,
 * `parent_child` columns become nested objects again where the schema has such an object
 * (phaseVoltage_L1 → phaseVoltage.L1, intensityByVehicleType_motorcycle → …), numbers the
 * schema declares as integers are rounded back (InfluxDB stores every number as a float), and
 * the result is checked against the domain's reading schema. `ts` is the row's time; without it
 * `fields.ts` is used. Pass field columns only, not tags (province, device, kind).
 */
export function unflattenReading<D extends Domain>(domain: D, fields: StoredFields, ts?: number): Result<ReadingByDomain[D]> {
  const properties = (READING_SCHEMAS[domain] as SchemaNode).properties ?? {};
  const values = new Map<string, unknown>();
  const nested = new Map<string, Map<string, unknown>>();
  const time = ts ?? fields.ts;
  if (time !== undefined && time !== null) values.set('ts', coerceStored(properties.ts, time));
  for (const [name, value] of Object.entries(fields)) {
    if (value === null || value === undefined || name === 'ts' || DERIVED_NAMES.has(name)) continue;
    const own = Object.hasOwn(properties, name) ? properties[name] : undefined;
    if (own && own.type !== 'object') {
      values.set(name, coerceStored(own, value));
      continue;
    }
    // flattenReading joins nesting with '_': split at the first one and look the parts up in the schema.
    const cut = name.indexOf('_');
    const parentName = cut > 0 ? name.slice(0, cut) : '';
    const childName = name.slice(cut + 1);
    const parent = Object.hasOwn(properties, parentName) ? properties[parentName] : undefined;
    const child = parent?.type === 'object' && parent.properties && Object.hasOwn(parent.properties, childName) ? parent.properties[childName] : undefined;
    if (!child) return fail('E_PAYLOAD_SCHEMA', `${domain} field "${name.slice(0, 64)}" is not part of the ${domain} reading schema`);
    let group = nested.get(parentName);
    if (!group) nested.set(parentName, (group = new Map<string, unknown>()));
    group.set(childName, coerceStored(child, value));
  }
  // Rebuild in the schema's key order, so a replayed payload reads like the device's original.
  const reading: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(properties)) {
    if (values.has(name)) reading[name] = values.get(name);
    const group = nested.get(name);
    if (group) {
      const object: Record<string, unknown> = {};
      for (const childName of Object.keys(schema.properties ?? {})) if (group.has(childName)) object[childName] = group.get(childName);
      reading[name] = object;
    }
  }
  readingValidators ??= Object.fromEntries(DOMAINS.map((d) => [d, Compile(READING_SCHEMAS[d])])) as Record<Domain, Validator>;
  const validator = readingValidators[domain];
  if (!validator.Check(reading)) {
    const problems = validator
      .Errors(reading)
      .slice(0, 3)
      .map((e) => `${e.instancePath === '' ? '(root)' : e.instancePath} ${e.message}`);
    return fail('E_PAYLOAD_SCHEMA', `stored ${domain} row is not a valid reading: ${problems.join('; ')}`);
  }
  return ok(reading as ReadingByDomain[D]);
}

/** InfluxDB keeps numbers as floats: give integers back their integer form (seq, intensity, laneId …). */
function coerceStored(schema: SchemaNode | undefined, value: FieldValue): FieldValue {
  if (schema?.type === 'integer' && typeof value === 'number' && Number.isFinite(value)) {
    const rounded = Math.round(value);
    if (Math.abs(value - rounded) < 1e-6) return rounded;
  }
  return value;
}

export interface ReadingState {
  /** Short machine key, e.g. an AQI band key, a LOS letter or a load level. */
  readonly level: string;
  /** Fill colour for the map. */
  readonly color: string;
}

const UNKNOWN_STATE: ReadingState = { level: 'unknown', color: '#9e9e9e' };

/** The colour a device shows on the map, from its derived values. */
export function readingState(domain: Domain, derived: Derived): ReadingState {
  switch (domain) {
    case 'environment': {
      if (derived.vnAqi === undefined) return UNKNOWN_STATE;
      const band = vnAqiBand(derived.vnAqi);
      return { level: band.key, color: band.color };
    }
    case 'traffic': {
      const los = derived.los as keyof typeof LOS_COLORS | undefined;
      return los && los in LOS_COLORS ? { level: `los-${los}`, color: LOS_COLORS[los] } : UNKNOWN_STATE;
    }
    case 'energy': {
      if (derived.outOfBand) return { level: 'out-of-band', color: '#d500f9' };
      if (derived.loadFactor === undefined) return UNKNOWN_STATE;
      if (derived.loadFactor >= 0.9) return { level: 'load-high', color: '#e53935' };
      if (derived.loadFactor >= 0.7) return { level: 'load-elevated', color: '#fb8c00' };
      return { level: 'load-normal', color: '#43a047' };
    }
    default:
      return assertNever(domain);
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function assertNever(value: never): never {
  throw new Error(`unexpected domain ${String(value)}`);
}
