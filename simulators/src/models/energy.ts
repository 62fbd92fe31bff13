import { GRID_CODE, type EnergyReading } from '@citypulse/contracts';
import { advanceWalks, deriveSeed, Rng, type WalkSpec } from '../random.js';
import { isWeekend, localTime, type LocalTime } from '../time.js';
import {
  bump,
  clamp,
  elapsedSeconds,
  monthly,
  provinceClimate,
  round,
  stepRng,
  traitRng,
  type DeviceState,
  type Monthly,
  type ModelOptions,
  type ModelStep,
  type ProvinceClimate,
  type SimulatedDevice,
} from './common.js';

/**
 * A three-phase meter on a 22 kV feeder or on the 0.4 kV side of a distribution substation.
 * Load peaks in the evening (18–21 h), bottoms out before dawn, dips at midday where rooftop
 * solar is common (central and south); voltage sags with load within the grid code's ±5 %;
 * frequency is one grid-wide signal well inside 50 ± 0.2 Hz.
 */
export const ENERGY_KINDS = ['feeder-22kv', 'substation-0.4kv'] as const;
export type EnergyKind = (typeof ENERGY_KINDS)[number];

export function isEnergyKind(kind: string): kind is EnergyKind {
  return (ENERGY_KINDS as readonly string[]).includes(kind);
}

/** Phase-to-neutral voltage of a network: U / √3 (0.4 kV → 230 V, 22 kV → 12,702 V). */
export function phaseVoltageV(lineVoltageKv: number): number {
  return lineVoltageKv === 0.4 ? 230 : Math.round((lineVoltageKv * 1000) / Math.sqrt(3));
}

/** Typical ratings in Vietnamese distribution networks (EVN standard transformer sizes; feeder limits). */
export const ENERGY_RATINGS_VA: Readonly<Record<EnergyKind, readonly [number, ...number[]]>> = {
  'substation-0.4kv': [250_000, 400_000, 560_000, 630_000, 750_000, 1_000_000],
  'feeder-22kv': [6_000_000, 8_000_000, 10_000_000],
};

export const NOMINAL_PHASE_VOLTAGE_V: Readonly<Record<EnergyKind, number>> = {
  'substation-0.4kv': phaseVoltageV(0.4),
  'feeder-22kv': phaseVoltageV(22),
};

const ENERGY_WALKS = {
  load: { sigma: 0.06, tauS: 30 * 60 },
  powerFactor: { sigma: 0.012, tauS: 3600 },
  unbalanceL1: { sigma: 0.04, tauS: 2 * 3600 },
  unbalanceL2: { sigma: 0.04, tauS: 2 * 3600 },
  unbalanceL3: { sigma: 0.04, tauS: 2 * 3600 },
  voltageL1: { sigma: 0.005, tauS: 10 * 60 },
  voltageL2: { sigma: 0.005, tauS: 10 * 60 },
  voltageL3: { sigma: 0.005, tauS: 10 * 60 },
  harmonics: { sigma: 0.15, tauS: 3600 },
} as const satisfies Record<string, WalkSpec>;

/** Air-conditioning season lifts the northern summer load; the south is hot all year. */
const NORTH_SEASON: Monthly = [0.9, 0.88, 0.9, 0.97, 1.08, 1.14, 1.15, 1.12, 1.06, 0.98, 0.92, 0.9];
const SOUTH_SEASON: Monthly = [0.97, 0.99, 1.04, 1.08, 1.07, 1.01, 0.99, 0.99, 0.98, 0.98, 0.97, 0.96];
/** Clear-sky weight for rooftop solar (dry season strongest). */
const SOLAR_SEASON: Monthly = [0.9, 1, 1, 0.95, 0.8, 0.65, 0.6, 0.6, 0.6, 0.65, 0.75, 0.85];
/** The load shape's value at the evening peak, so a device's `peakLoading` is its share of rating then. */
const SHAPE_PEAK = 0.8;

/**
 * Load over the day relative to the evening peak (about 1 at 19–20 h, about 0.5 at 03 h), for
 * a province at `ts`. Weekends and seasons scale it; rooftop solar cuts the midday net load.
 */
export function loadShape(ts: number, provinceCode: string): number {
  return loadShapeAt(localTime(ts), provinceClimate(provinceCode));
}

function loadShapeAt(time: LocalTime, climate: ProvinceClimate): number {
  const h = time.hour;
  const morning = 0.12 * bump(h, 10, 2.2); // offices, shops, small industry
  const afternoon = 0.1 * bump(h, 14.5, 2.5); // air conditioning
  const evening = 0.38 * bump(h, 19.5, 1.5); // households: lighting, cooking, AC, TV
  const solar = climate.rooftopSolar ? 0.14 * bump(h, 12, 1.8) * monthly(SOLAR_SEASON, time.monthPosition) : 0;
  const season = climate.north * monthly(NORTH_SEASON, time.monthPosition) + (1 - climate.north) * monthly(SOUTH_SEASON, time.monthPosition);
  return ((0.42 + morning + afternoon + evening - solar) / SHAPE_PEAK) * season * (isWeekend(time) ? 0.92 : 1);
}

/**
 * One synchronous grid, one frequency: every meter sees the same slow swings (a sum of seeded
 * sinusoids, at most ±0.08 Hz) plus its own tiny measurement noise.
 */
export function gridFrequencyHz(ts: number, seed: number): number {
  const t = ts / 1000;
  let deviation = 0;
  for (const { amplitudeHz, periodS, phase } of frequencyComponents(seed)) {
    deviation += amplitudeHz * Math.sin((2 * Math.PI * t) / periodS + phase);
  }
  return GRID_CODE.nominalFrequencyHz + deviation;
}

interface FrequencyComponent {
  readonly amplitudeHz: number;
  readonly periodS: number;
  readonly phase: number;
}

const frequencyCache = new Map<number, readonly FrequencyComponent[]>();

function frequencyComponents(seed: number): readonly FrequencyComponent[] {
  let components = frequencyCache.get(seed);
  if (!components) {
    const rng = new Rng(deriveSeed(seed, 'grid-frequency'));
    components = [
      { amplitudeHz: 0.04, periodS: 317 },
      { amplitudeHz: 0.025, periodS: 97 },
      { amplitudeHz: 0.015, periodS: 41 },
    ].map((c) => ({ ...c, phase: 2 * Math.PI * rng.uniform() }));
    frequencyCache.set(seed, components);
  }
  return components;
}

interface EnergyTraits {
  /** Share of the rating drawn at the evening peak. */
  readonly peakLoading: number;
  /** Meter reading when the simulation first sees the device, kWh. */
  readonly initialImportKWh: number;
}

function energyTraits(seed: number, device: SimulatedDevice, kind: EnergyKind, ratedPowerVA: number): EnergyTraits {
  const rng = traitRng(seed, device);
  const peakLoading = kind === 'feeder-22kv' ? rng.between(0.55, 0.85) : rng.between(0.6, 0.95);
  // Half a year to four years of service at about half load.
  const initialImportKWh = ratedPowerVA * 0.5 * 8760 * rng.between(0.5, 4) * 1e-3;
  return { peakLoading, initialImportKWh };
}

/** The next reading of an energy meter at `ts`. */
export function energyReading(device: SimulatedDevice, state: DeviceState, ts: number, options: ModelOptions): ModelStep<EnergyReading> {
  const kind = isEnergyKind(device.kind) ? device.kind : 'substation-0.4kv';
  const ratedPowerVA = device.profile?.ratedPowerVA ?? ENERGY_RATINGS_VA[kind][0];
  const nominalV = device.profile?.nominalPhaseVoltageV ?? NOMINAL_PHASE_VOLTAGE_V[kind];
  const traits = energyTraits(options.seed, device, kind, ratedPowerVA);
  const rng = stepRng(options.seed, device, state.seq);
  const dtS = elapsedSeconds(state, ts);
  const w = advanceWalks(ENERGY_WALKS, state.walks, dtS, rng);
  const time = localTime(ts);
  const shape = loadShapeAt(time, provinceClimate(device.province));

  const apparentVA = ratedPowerVA * traits.peakLoading * shape * Math.exp(w.load);
  const loadFactor = apparentVA / ratedPowerVA;
  // Heavier load brings more motors (AC compressors, pumps) onto the feeder.
  const powerFactor = clamp(0.955 - 0.05 * (loadFactor - 0.5) + w.powerFactor, 0.85, 0.98);
  const activeW = apparentVA * powerFactor;
  const reactiveVAr = apparentVA * Math.sqrt(1 - powerFactor * powerFactor);

  // Tap changers hold the no-load voltage slightly high; the line drop grows with load.
  const tolerance = GRID_CODE.voltageTolerance * 0.9;
  const voltage = (walk: number): number => nominalV * clamp(1.025 - 0.045 * loadFactor + walk, 1 - tolerance, 1 + tolerance);
  const phaseVoltage = { L1: voltage(w.voltageL1), L2: voltage(w.voltageL2), L3: voltage(w.voltageL3) };
  // Single-phase customers never split evenly over the three phases.
  const weights = { L1: 1 + w.unbalanceL1, L2: 1 + w.unbalanceL2, L3: 1 + w.unbalanceL3 };
  const weightSum = weights.L1 + weights.L2 + weights.L3;
  const current = (phase: 'L1' | 'L2' | 'L3'): number => round((apparentVA * weights[phase]) / weightSum / phaseVoltage[phase], 2);

  const previousKWh = state.energyImportKWh ?? traits.initialImportKWh;
  const energyImportKWh = previousKWh + (dtS === undefined ? 0 : (activeW * dtS) / 3_600_000);
  const lightLoad = clamp(1 - loadFactor, 0, 1);
  const lowVoltage = kind === 'substation-0.4kv';

  const reading: EnergyReading = {
    ts,
    seq: state.seq,
    frequency: round(gridFrequencyHz(ts, options.seed) + 0.002 * rng.normal(), 3),
    totalActivePower: Math.round(activeW),
    totalReactivePower: Math.round(reactiveVAr),
    totalApparentPower: Math.round(apparentVA),
    powerFactor: round(powerFactor, 3),
    phaseVoltage: { L1: round(phaseVoltage.L1, 1), L2: round(phaseVoltage.L2, 1), L3: round(phaseVoltage.L3, 1) },
    current: { L1: current('L1'), L2: current('L2'), L3: current('L3') },
    thdVoltage: round(clamp((lowVoltage ? 0.02 : 0.012) * (1 + 0.5 * loadFactor) * Math.exp(0.5 * w.harmonics), 0.003, 0.08), 4),
    // Electronic loads dominate at light load, so current distortion is relatively higher then.
    thdCurrent: round(clamp((lowVoltage ? 0.06 : 0.035) * (1 + 1.2 * lightLoad) * Math.exp(w.harmonics), 0.01, 0.4), 4),
    totalActiveEnergyImport: round(energyImportKWh, 3),
  };
  return { reading, state: { ...state, seq: state.seq + 1, lastTs: ts, walks: w, energyImportKWh } };
}
