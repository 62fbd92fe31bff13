import { GRID_CODE, type EnergyReading } from '@citypulse/contracts';
import { WalkSet, deriveSeed, Rng, type WalkSpec } from '../random.js';
import { isWeekend, localTime, type LocalTime } from '../time.js';
import type { World } from '../world.js';
import {
  bump,
  clamp,
  elapsedSeconds,
  monthly,
  provinceClimate,
  round,
  stepRng,
  TraitCache,
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
 * Consumption peaks in the evening (18–21 h) and bottoms out before dawn. Below about 16°N the
 * rooftop solar behind a meter generates at midday: the net import falls, and where the panels
 * out-produce the load the meter exports (negative active power and power factor, a growing
 * export register). Voltage sags with the net load within the grid code's ±5 %; frequency is one
 * grid-wide signal well inside 50 ± 0.2 Hz. The world adds frequency excursions, voltage sags and
 * outages (zero voltage, current, power and frequency: the meter runs on its battery).
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

const ENERGY_WALKS = new WalkSet({
  load: { sigma: 0.06, tauS: 30 * 60 },
  powerFactor: { sigma: 0.012, tauS: 3600 },
  unbalanceL1: { sigma: 0.04, tauS: 2 * 3600 },
  unbalanceL2: { sigma: 0.04, tauS: 2 * 3600 },
  unbalanceL3: { sigma: 0.04, tauS: 2 * 3600 },
  voltageL1: { sigma: 0.005, tauS: 10 * 60 },
  voltageL2: { sigma: 0.005, tauS: 10 * 60 },
  voltageL3: { sigma: 0.005, tauS: 10 * 60 },
  harmonics: { sigma: 0.15, tauS: 3600 },
} as const satisfies Record<string, WalkSpec>);

/** Air-conditioning season lifts the northern summer load; the south is hot all year. */
const NORTH_SEASON: Monthly = [0.9, 0.88, 0.9, 0.97, 1.08, 1.14, 1.15, 1.12, 1.06, 0.98, 0.92, 0.9];
const SOUTH_SEASON: Monthly = [0.97, 0.99, 1.04, 1.08, 1.07, 1.01, 0.99, 0.99, 0.98, 0.98, 0.97, 0.96];
/** Clear-sky weight for rooftop solar (dry season strongest). */
const SOLAR_SEASON: Monthly = [0.9, 1, 1, 0.95, 0.8, 0.65, 0.6, 0.6, 0.6, 0.65, 0.75, 0.85];
/** The load shape's value at the evening peak, so a device's `peakLoading` is its share of rating then. */
const SHAPE_PEAK = 0.8;

/**
 * Consumption over the day relative to the evening peak (about 1 at 19–20 h, about 0.5 at 03 h),
 * for a province at `ts`. Weekends and seasons scale it. Rooftop solar is not in it: it is
 * generated behind each meter (see solarGenerationW).
 */
export function loadShape(ts: number, provinceCode: string): number {
  return loadShapeAt(localTime(ts), provinceClimate(provinceCode));
}

function loadShapeAt(time: LocalTime, climate: ProvinceClimate): number {
  const h = time.hour;
  const morning = 0.12 * bump(h, 10, 2.2); // offices, shops, small industry
  const afternoon = 0.1 * bump(h, 14.5, 2.5); // air conditioning
  const evening = 0.38 * bump(h, 19.5, 1.5); // households: lighting, cooking, AC, TV
  const season = climate.north * monthly(NORTH_SEASON, time.monthPosition) + (1 - climate.north) * monthly(SOUTH_SEASON, time.monthPosition);
  return ((0.42 + morning + afternoon + evening) / SHAPE_PEAK) * season * (isWeekend(time) ? 0.92 : 1);
}

/**
 * Output of rooftop solar as a share of its peak, 0 … 1: zero at night, a bell from about 06 to
 * 18 h peaking at noon, strongest in the dry season, and cut by rain clouds when the world has rain.
 */
export function solarShare(ts: number, provinceCode: string, world?: World): number {
  return solarShareAt(localTime(ts), ts, provinceCode, world);
}

function solarShareAt(time: LocalTime, ts: number, provinceCode: string, world: World | undefined): number {
  const h = time.hour;
  if (h <= 6 || h >= 18) return 0;
  const sun = Math.sin((Math.PI * (h - 6)) / 12) ** 1.5;
  const clouds = world ? Math.max(1 - Math.exp(-world.rainMmPerHour(provinceCode, ts) / 3), 0.5 * world.rainWashout(provinceCode, ts)) : 0;
  return sun * monthly(SOLAR_SEASON, time.monthPosition) * (1 - 0.75 * clouds);
}

/**
 * Rooftop solar generation behind an energy meter at `ts`, W. Only below about 16°N (the central
 * and southern provinces, where Vietnam's 2019–2020 rooftop boom installed almost all of it); zero
 * in the north and at night.
 */
export function solarGenerationW(device: SimulatedDevice, ts: number, options: Pick<ModelOptions, 'seed' | 'world'>): number {
  const traits = traitCache.get(options.seed, device);
  return traits.pvPeakW > 0 ? traits.pvPeakW * solarShare(ts, device.province, options.world) : 0;
}

/**
 * One synchronous grid, one frequency: every meter sees the same slow swings (a sum of seeded
 * sinusoids, at most ±0.08 Hz) plus its own tiny measurement noise.
 */
export function gridFrequencyHz(ts: number, seed: number): number {
  return GRID_CODE.nominalFrequencyHz + gridDeviationHz(ts, seed);
}

function gridDeviationHz(ts: number, seed: number): number {
  const t = ts / 1000;
  let deviation = 0;
  for (const { amplitudeHz, periodS, phase } of frequencyComponents(seed)) {
    deviation += amplitudeHz * Math.sin((2 * Math.PI * t) / periodS + phase);
  }
  return deviation;
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
  readonly kind: EnergyKind;
  readonly ratedPowerVA: number;
  readonly nominalV: number;
  /** Share of the rating drawn at the evening peak. */
  readonly peakLoading: number;
  /** Meter reading when the simulation first sees the device, kWh. */
  readonly initialImportKWh: number;
  /** Peak output of the rooftop solar behind the meter, W; 0 north of 16°N. */
  readonly pvPeakW: number;
  readonly initialExportKWh: number;
}

const traitCache = new TraitCache<EnergyTraits>((seed, device) => {
  const kind = isEnergyKind(device.kind) ? device.kind : 'substation-0.4kv';
  const ratedPowerVA = device.profile?.ratedPowerVA ?? ENERGY_RATINGS_VA[kind][0];
  const rng = traitRng(seed, device);
  const peakLoading = kind === 'feeder-22kv' ? rng.between(0.55, 0.85) : rng.between(0.6, 0.95);
  // Half a year to four years of service at about half load.
  const initialImportKWh = ratedPowerVA * 0.5 * 8760 * rng.between(0.5, 4) * 1e-3;
  // Rooftop solar relative to the peak load: a few substations have more panels than midday load
  // (reverse flow); a feeder collects many substations, so its share is smaller and never exceeds the load.
  const u = rng.uniform();
  const pvRatio = provinceClimate(device.province).rooftopSolar ? (kind === 'substation-0.4kv' ? 1.2 * u ** 1.5 : 0.05 + 0.3 * u) : 0;
  const pvPeakW = ratedPowerVA * peakLoading * pvRatio;
  return {
    kind,
    ratedPowerVA,
    nominalV: device.profile?.nominalPhaseVoltageV ?? NOMINAL_PHASE_VOLTAGE_V[kind],
    peakLoading,
    initialImportKWh,
    pvPeakW,
    // About 1000 full-load hours a year, a fifth of it exported, since the 2020 boom.
    initialExportKWh: pvPeakW * 1000 * 0.2 * rng.between(1, 5) * 1e-3,
  };
});

/** Phase voltage per unit: within the tolerance in normal operation, moved out of it by a sag. */
function perUnitVoltage(netLoading: number, walk: number, tolerance: number, sag: number): number {
  return clamp(clamp(1.025 - 0.05 * netLoading + walk, 1 - tolerance, 1 + tolerance) + sag, 0.5, 1.3);
}

/** The next reading of an energy meter at `ts`. */
export function energyReading(device: SimulatedDevice, state: DeviceState, ts: number, options: ModelOptions): ModelStep<EnergyReading> {
  const traits = traitCache.get(options.seed, device);
  const { ratedPowerVA, nominalV } = traits;
  const rng = stepRng(options.seed, device, state.seq);
  const dtS = elapsedSeconds(state, ts);
  const w = ENERGY_WALKS.advance(state.walks, dtS, rng);
  const time = localTime(ts);
  const world = options.world;
  const previousImportKWh = state.energyImportKWh ?? traits.initialImportKWh;
  const previousExportKWh = state.energyExportKWh ?? traits.initialExportKWh;
  const hasSolar = traits.pvPeakW > 0;

  if (world?.inOutage(device, ts)) {
    // No supply: the meter runs on its battery and reads zero; its registers stand still.
    const reading: EnergyReading = {
      ts,
      seq: state.seq,
      frequency: 0,
      totalActivePower: 0,
      totalReactivePower: 0,
      totalApparentPower: 0,
      powerFactor: 0,
      phaseVoltage: { L1: 0, L2: 0, L3: 0 },
      current: { L1: 0, L2: 0, L3: 0 },
      totalActiveEnergyImport: round(previousImportKWh, 3),
      ...(hasSolar ? { totalActiveEnergyExport: round(previousExportKWh, 3) } : {}),
    };
    return { reading, state: { ...state, seq: state.seq + 1, lastTs: ts, walks: w, energyImportKWh: previousImportKWh, energyExportKWh: previousExportKWh } };
  }

  const consumptionVA = ratedPowerVA * traits.peakLoading * loadShapeAt(time, provinceClimate(device.province)) * Math.exp(w.load);
  // Heavier load brings more motors (AC compressors, pumps) onto the feeder.
  const loadPowerFactor = clamp(0.955 - 0.05 * (consumptionVA / ratedPowerVA - 0.5) + w.powerFactor, 0.85, 0.98);
  // Solar inverters run at unity power factor: they offset active power only.
  const solarW = hasSolar ? traits.pvPeakW * solarShareAt(time, ts, device.province, world) : 0;
  const activeW = consumptionVA * loadPowerFactor - solarW;
  const reactiveVAr = consumptionVA * Math.sqrt(1 - loadPowerFactor * loadPowerFactor);
  const apparentVA = Math.hypot(activeW, reactiveVAr);
  // IEC sign convention: the power factor takes the sign of the active power (negative when exporting).
  const powerFactor = apparentVA > 0 ? activeW / apparentVA : 1;
  const loadFactor = apparentVA / ratedPowerVA;

  // Tap changers hold the no-load voltage slightly high; the line drop grows with the net import,
  // and reverse flow from the panels lifts the voltage instead. A sag moves the whole province.
  const tolerance = GRID_CODE.voltageTolerance * 0.9;
  const sag = world ? world.voltageOffset(device.province, ts) : 0;
  const netLoading = activeW / ratedPowerVA;
  const phaseVoltage = {
    L1: round(nominalV * perUnitVoltage(netLoading, w.voltageL1, tolerance, sag), 1),
    L2: round(nominalV * perUnitVoltage(netLoading, w.voltageL2, tolerance, sag), 1),
    L3: round(nominalV * perUnitVoltage(netLoading, w.voltageL3, tolerance, sag), 1),
  };
  // Single-phase customers never split evenly over the three phases.
  const weightSum = 3 + w.unbalanceL1 + w.unbalanceL2 + w.unbalanceL3;
  const perPhaseVA = apparentVA / weightSum;

  const importKWh = previousImportKWh + (dtS === undefined ? 0 : (Math.max(0, activeW) * dtS) / 3_600_000);
  const exportKWh = previousExportKWh + (dtS === undefined ? 0 : (Math.max(0, -activeW) * dtS) / 3_600_000);
  const lightLoad = clamp(1 - loadFactor, 0, 1);
  const lowVoltage = traits.kind === 'substation-0.4kv';
  const frequency = GRID_CODE.nominalFrequencyHz + gridDeviationHz(ts, options.seed) + (world ? world.frequencyOffsetHz(ts) : 0);

  const reading: EnergyReading = {
    ts,
    seq: state.seq,
    frequency: round(frequency + 0.002 * rng.normal(), 3),
    totalActivePower: Math.round(activeW),
    totalReactivePower: Math.round(reactiveVAr),
    totalApparentPower: Math.round(apparentVA),
    powerFactor: round(powerFactor, 3),
    phaseVoltage,
    current: {
      L1: round((perPhaseVA * (1 + w.unbalanceL1)) / phaseVoltage.L1, 2),
      L2: round((perPhaseVA * (1 + w.unbalanceL2)) / phaseVoltage.L2, 2),
      L3: round((perPhaseVA * (1 + w.unbalanceL3)) / phaseVoltage.L3, 2),
    },
    thdVoltage: round(clamp((lowVoltage ? 0.02 : 0.012) * (1 + 0.5 * loadFactor) * Math.exp(0.5 * w.harmonics), 0.003, 0.08), 4),
    // Electronic loads (and inverters) dominate at light load, so current distortion is relatively higher then.
    thdCurrent: round(clamp((lowVoltage ? 0.06 : 0.035) * (1 + 1.2 * lightLoad) * Math.exp(w.harmonics), 0.01, 0.4), 4),
    totalActiveEnergyImport: round(importKWh, 3),
    ...(hasSolar ? { totalActiveEnergyExport: round(exportKWh, 3) } : {}),
  };
  return { reading, state: { ...state, seq: state.seq + 1, lastTs: ts, walks: w, energyImportKWh: importKWh, energyExportKWh: exportKWh } };
}
