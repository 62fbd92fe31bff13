import type { TrafficReading, VehicleType } from './schemas.js';

/**
 * Level of service for a basic road segment from density, after the HCM's basic freeway segment
 * table (pc/mi/ln). The source for these thresholds is secondary: they are defaults that operators
 * can replace with their own.
 */
export const LOS_LEVELS = ['A', 'B', 'C', 'D', 'E', 'F'] as const;
export type LevelOfService = (typeof LOS_LEVELS)[number];

/** Upper density bound (pc/mi/ln) of A … E; above E's bound the segment is F. */
export const HCM_LOS_DENSITY_PC_PER_MI_LN: Readonly<Record<Exclude<LevelOfService, 'F'>, number>> = { A: 11, B: 18, C: 26, D: 35, E: 45 };

/**
 * Passenger-car-unit factors for Vietnamese mixed traffic. US tables assume few two-wheelers;
 * here motorcycles dominate and weigh a fraction of a car. Defaults, meant to be configured.
 */
export const DEFAULT_PCU_FACTORS: Readonly<Record<VehicleType, number>> = {
  motorcycle: 0.3,
  bicycle: 0.2,
  car: 1,
  van: 1,
  bus: 2,
  lorry: 2,
};

const KM_PER_MILE = 1.609344;
/** Below this speed a lane with traffic on it counts as jammed (density undefined from flow/speed). */
const STANDSTILL_KMH = 2;

export interface TrafficDerived {
  /** Vehicles per hour in this lane. */
  readonly flowVehPerHour: number;
  /** Passenger-car units per mile per lane; undefined at a standstill. */
  readonly densityPcPerMiLn: number | undefined;
  readonly los: LevelOfService;
}

/** Flow, density = flow / speed (in passenger-car units), and level of service of one lane's reading. */
export function deriveTraffic(
  reading: Pick<TrafficReading, 'intensity' | 'periodSeconds' | 'averageVehicleSpeed' | 'occupancy' | 'intensityByVehicleType'>,
  pcuFactors: Readonly<Record<VehicleType, number>> = DEFAULT_PCU_FACTORS,
  thresholds: Readonly<Record<Exclude<LevelOfService, 'F'>, number>> = HCM_LOS_DENSITY_PC_PER_MI_LN,
): TrafficDerived {
  const perHour = 3600 / reading.periodSeconds;
  const flowVehPerHour = reading.intensity * perHour;
  const classes = reading.intensityByVehicleType;
  const pcuPerPeriod = classes
    ? (Object.entries(classes) as [VehicleType, number | undefined][]).reduce((sum, [type, n]) => sum + (n ?? 0) * pcuFactors[type], 0)
    : reading.intensity;
  const pcuPerHour = pcuPerPeriod * perHour;
  if (reading.averageVehicleSpeed < STANDSTILL_KMH) {
    // Nothing moving: an empty road is free flow, an occupied one is jammed.
    const jammed = flowVehPerHour > 0 || reading.occupancy > 0.3;
    return { flowVehPerHour, densityPcPerMiLn: undefined, los: jammed ? 'F' : 'A' };
  }
  const densityPcPerMiLn = (pcuPerHour / reading.averageVehicleSpeed) * KM_PER_MILE;
  return { flowVehPerHour, densityPcPerMiLn, los: levelOfService(densityPcPerMiLn, thresholds) };
}

export function levelOfService(
  densityPcPerMiLn: number,
  thresholds: Readonly<Record<Exclude<LevelOfService, 'F'>, number>> = HCM_LOS_DENSITY_PC_PER_MI_LN,
): LevelOfService {
  for (const level of ['A', 'B', 'C', 'D', 'E'] as const) {
    if (densityPcPerMiLn <= thresholds[level]) return level;
  }
  return 'F';
}

/** Colours from free (green) to breakdown (dark red), readable on a dark map. */
export const LOS_COLORS: Readonly<Record<LevelOfService, string>> = {
  A: '#1a9850',
  B: '#66bd63',
  C: '#d9ef8b',
  D: '#fee08b',
  E: '#f46d43',
  F: '#a50026',
};
