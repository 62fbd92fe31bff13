import { provinceByCode, type DeviceProfile, type Domain } from '@citypulse/contracts';
import { deriveSeed, Rng, seedFromPrefix, seedPrefix } from '../random.js';
import type { World } from '../world.js';

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
  /** Traffic detectors: the road segment (e.g. "01-c2-s3") and the lane (1 … lanes) the loop sits in. */
  readonly segment?: DeviceSegment;
}

export interface DeviceSegment {
  /** `{province}-c{corridor}-s{index}`: segment `index` (1 = nearest the hub) of corridor `corridor`. */
  readonly id: string;
  readonly lane: number;
  /** Lanes of the cross-section; lanes 1 … ⌈lanes/2⌉ run inbound (towards the hub), the rest outbound. */
  readonly lanes: number;
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
  /** Cumulative active energy export, kWh (energy devices with rooftop solar behind them). */
  readonly energyExportKWh?: number | undefined;
}

export interface ModelStep<R> {
  readonly reading: R;
  readonly state: DeviceState;
}

export interface ModelOptions {
  readonly seed: number;
  /** Counting period of traffic readings, s (the publish interval, at least 1 s). */
  readonly periodSeconds: number;
  /**
   * What happens in the city (incidents, rain, pollution episodes, grid events; see buildWorld).
   * Absent: a calm world, with the daily and seasonal patterns only, no events and no background
   * incidents, showers or outages.
   */
  readonly world?: World | undefined;
}

export function initialState(): DeviceState {
  return { seq: 0, lastTs: undefined, walks: {}, energyImportKWh: undefined };
}

const readingPrefixes = new WeakMap<SimulatedDevice, { readonly seed: number; readonly prefix: number }>();

/** The random stream of one device's reading number `seq`: independent of every other draw. */
export function stepRng(seed: number, device: SimulatedDevice, seq: number): Rng {
  let entry = readingPrefixes.get(device);
  if (entry?.seed !== seed) {
    entry = { seed, prefix: seedPrefix(seed, 'reading', device.id) };
    readingPrefixes.set(device, entry);
  }
  // The same stream as deriveSeed(seed, 'reading', device.id, seq), without rehashing the id.
  return new Rng(seedFromPrefix(entry.prefix, seq));
}

/** Fixed per-device traits (a road's share of capacity, a transformer's loading) drawn once from the seed. */
export function traitRng(seed: number, device: SimulatedDevice): Rng {
  return new Rng(deriveSeed(seed, 'traits', device.id));
}

/**
 * Per-device traits, computed once per device object and seed. Device objects live as long as the
 * simulation, so a WeakMap keyed by them never grows past the fleet.
 */
export class TraitCache<T> {
  readonly #entries = new WeakMap<SimulatedDevice, { readonly seed: number; readonly traits: T }>();
  readonly #build: (seed: number, device: SimulatedDevice) => T;

  constructor(build: (seed: number, device: SimulatedDevice) => T) {
    this.#build = build;
  }

  get(seed: number, device: SimulatedDevice): T {
    const entry = this.#entries.get(device);
    if (entry?.seed === seed) return entry.traits;
    const traits = this.#build(seed, device);
    this.#entries.set(device, { seed, traits });
    return traits;
  }
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

/** Weight of the rainy season: north May–Sep, south May–Nov, central coast Sep–Dec (rain and typhoons). */
const NORTH_RAIN: Monthly = [0, 0, 0, 0.1, 0.5, 0.9, 1, 1, 0.6, 0.2, 0, 0];
const SOUTH_RAIN: Monthly = [0, 0, 0, 0.2, 0.7, 1, 1, 1, 1, 0.9, 0.5, 0.1];
const CENTRAL_RAIN: Monthly = [0.3, 0.1, 0, 0, 0.1, 0.1, 0.1, 0.2, 0.6, 1, 1, 0.7];

/** 0 (dry season) … 1 (height of the rainy season) for the province's region at `monthPosition`. */
export function rainSeason(climate: ProvinceClimate, monthPosition: number): number {
  return regional(climate, NORTH_RAIN, CENTRAL_RAIN, SOUTH_RAIN, monthPosition);
}

/** A monthly table per region, blended by the province's latitude weights. */
export function regional(climate: ProvinceClimate, north: Monthly, central: Monthly, south: Monthly, monthPosition: number): number {
  const centralWeight = Math.max(0, 1 - climate.north - climate.south);
  return climate.north * monthly(north, monthPosition) + centralWeight * monthly(central, monthPosition) + climate.south * monthly(south, monthPosition);
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

const POWERS_OF_TEN = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000];

export function round(value: number, digits: number): number {
  const f = POWERS_OF_TEN[digits] ?? 10 ** digits;
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
