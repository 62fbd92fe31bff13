import { provinceByCode, type DeviceProfile, type Domain } from '@citypulse/contracts';
import { deriveSeed, Rng } from '../random.js';

/** What the models know about a device; `startSimulation` places and provisions them. */
export interface SimulatedDevice {
  readonly id: string;
  readonly province: string;
  readonly domain: Domain;
  /** [lng, lat] inside the province polygon. */
  readonly location: readonly [number, number];
  /** Low-cardinality kind stored as a registry tag (road class, station type, network level). */
  readonly kind: string;
  /** Human-readable name in Vietnamese, e.g. "Trạm quan trắc Hà Nội 1". */
  readonly name: string;
  /** Rating and nominal voltage of energy devices, so ingest can derive load factor and voltage deviation. */
  readonly profile?: DeviceProfile;
}

/**
 * A device's evolving model state. Models are pure: (device, state, ts) → (reading, next state),
 * so the same seed and timestamps always give the same readings.
 */
export interface DeviceState {
  /** seq of the next reading. */
  readonly seq: number;
  /** ts of the previous reading; undefined before the first. */
  readonly lastTs: number | undefined;
  /** Device-level random walks (Ornstein–Uhlenbeck), named per domain. */
  readonly walks: Readonly<Record<string, number>>;
  /** Cumulative active energy import, kWh (energy devices only; set by the first reading). */
  readonly energyImportKWh: number | undefined;
}

export interface ModelStep<R> {
  readonly reading: R;
  readonly state: DeviceState;
}

export interface ModelOptions {
  readonly seed: number;
  /** Counting period of traffic readings, s (the publish interval, at least 1 s). */
  readonly periodSeconds: number;
}

export function initialState(): DeviceState {
  return { seq: 0, lastTs: undefined, walks: {}, energyImportKWh: undefined };
}

/** The random stream of one device's reading number `seq`: independent of every other draw. */
export function stepRng(seed: number, device: SimulatedDevice, seq: number): Rng {
  return new Rng(deriveSeed(seed, 'reading', device.id, seq));
}

/** Fixed per-device traits (a road's share of capacity, a transformer's loading) drawn once from the seed. */
export function traitRng(seed: number, device: SimulatedDevice): Rng {
  return new Rng(deriveSeed(seed, 'traits', device.id));
}

/** Seconds since the previous reading, or undefined for the first. */
export function elapsedSeconds(state: DeviceState, ts: number): number | undefined {
  return state.lastTs === undefined ? undefined : Math.max(0, (ts - state.lastTs) / 1000);
}

export interface ProvinceClimate {
  /** Latitude of the province's label point, °N: decides the region. */
  readonly lat: number;
  /** 1 for the two metropolises, 0.8 for other centrally-run cities, 0.6 for provinces. */
  readonly cityScale: number;
  /** 1 north of ~20°N (winter monsoon haze, cool winters), 0 south of 19.5°N. */
  readonly north: number;
  /** 1 in the south (two seasons, hot all year), 0 from the central coast northwards. */
  readonly south: number;
  /** Rooftop solar is concentrated in the central and southern provinces (below 16°N). */
  readonly rooftopSolar: boolean;
  /** Cooling of the urban centre by altitude, °C (Đà Lạt, the Central Highlands, the north-west). */
  readonly altitudeCoolingC: number;
}

const METROPOLIS_POPULATION = 8_000_000;

/** Altitude of the administrative centre, as a cooling in °C (≈ 6.5 °C per 1000 m). */
const ALTITUDE_COOLING_C: Readonly<Record<string, number>> = {
  '68': 8.5, // Đà Lạt, ~1500 m
  '66': 3, // Buôn Ma Thuột, ~500 m
  '12': 5, // Lai Châu town, ~900 m
  '14': 3.5, // Sơn La, ~600 m
  '11': 2.5, // Điện Biên Phủ, ~480 m
  '04': 1.5, // Cao Bằng, ~200 m, continental winters
};

const climateCache = new Map<string, ProvinceClimate>();

export function provinceClimate(code: string): ProvinceClimate {
  const cached = climateCache.get(code);
  if (cached) return cached;
  const province = provinceByCode(code);
  if (!province) throw new RangeError(`unknown province code "${code}"`);
  const lat = province.label[1];
  const cityScale = province.population >= METROPOLIS_POPULATION ? 1 : province.type === 'city' ? 0.8 : 0.6;
  const climate: ProvinceClimate = {
    lat,
    cityScale,
    north: smoothstep(19.5, 20.5, lat),
    south: 1 - smoothstep(11.5, 15, lat),
    rooftopSolar: lat < 16,
    altitudeCoolingC: ALTITUDE_COOLING_C[code] ?? 0,
  };
  climateCache.set(code, climate);
  return climate;
}

/** Gaussian bump on the 24-hour circle, 1 at `centreH`. */
export function bump(hour: number, centreH: number, widthH: number): number {
  let d = Math.abs(hour - centreH) % 24;
  if (d > 12) d = 24 - d;
  return Math.exp(-0.5 * (d / widthH) ** 2);
}

/** 0 below `edge0`, 1 above `edge1`, smooth (cubic) in between. */
export function smoothstep(edge0: number, edge1: number, x: number): number {
  const t = clamp((x - edge0) / (edge1 - edge0), 0, 1);
  return t * t * (3 - 2 * t);
}

export function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Twelve monthly values (January first), read at mid-month and interpolated around the year. */
export type Monthly = readonly [number, number, number, number, number, number, number, number, number, number, number, number];

export function monthly(table: Monthly, monthPosition: number): number {
  const x = monthPosition - 0.5;
  const i = Math.floor(x);
  const frac = x - i;
  const a = table[(i + 12) % 12] ?? 0;
  const b = table[(i + 13) % 12] ?? 0;
  return a + (b - a) * frac;
}
