import { vnAqiBand, vnAqiIndicative } from './aqi.js';
import { deriveEnergy, type EnergyDevice } from './energy.js';
import type { EnergyReading, EnvironmentReading, ReadingByDomain, TrafficReading } from './schemas.js';
import type { Domain } from './topics.js';
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
  const walk = (prefix: string, value: unknown): void => {
    if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') {
      fields[prefix] = value;
    } else if (typeof value === 'object' && value !== null) {
      for (const [key, inner] of Object.entries(value)) walk(prefix === '' ? key : `${prefix}_${key}`, inner);
    }
  };
  for (const [key, value] of Object.entries(reading)) {
    if (key !== 'ts') walk(key, value);
  }
  return fields;
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
