import type { EnergyReading } from './schemas.js';

/**
 * Vietnam's distribution code (Circular 39/2015/TT-BCT, consolidated 2019): 50 Hz nominal, normal
 * band ±0.2 Hz (±0.5 Hz while the system is unstable); ±5 % voltage at customer connection points
 * in normal operation. Nominal voltages 110, 35, 22, 15, 10, 6 and 0.4 kV.
 */
export const GRID_CODE = {
  nominalFrequencyHz: 50,
  normalFrequencyBandHz: 0.2,
  unstableFrequencyBandHz: 0.5,
  voltageTolerance: 0.05,
  nominalVoltagesKv: [110, 35, 22, 15, 10, 6, 0.4],
} as const;

export type FrequencyBand = 'normal' | 'unstable' | 'outside';

export function frequencyBand(hz: number): FrequencyBand {
  // Round to mHz first: 50.2 − 50 is 0.2000000000000028 in binary floating point.
  const deviation = Math.round(Math.abs(hz - GRID_CODE.nominalFrequencyHz) * 1000) / 1000;
  if (deviation <= GRID_CODE.normalFrequencyBandHz) return 'normal';
  if (deviation <= GRID_CODE.unstableFrequencyBandHz) return 'unstable';
  return 'outside';
}

export interface EnergyDevice {
  /** Rated apparent power of the transformer or feeder, VA. */
  readonly ratedPowerVA?: number | undefined;
  /** Nominal phase-to-neutral voltage, V (230 V on 0.4 kV networks). */
  readonly nominalPhaseVoltageV?: number | undefined;
}

export interface EnergyDerived {
  readonly apparentPowerVA: number;
  /** Apparent power over rated power; undefined when the rating is unknown. */
  readonly loadFactor: number | undefined;
  readonly frequencyBand: FrequencyBand;
  /** Largest relative deviation of a phase voltage from nominal (0.05 = 5 %). */
  readonly voltageDeviation: number | undefined;
  /** True when frequency or voltage is outside the grid code's normal band. */
  readonly outOfBand: boolean;
}

export function deriveEnergy(reading: EnergyReading, device: EnergyDevice = {}): EnergyDerived {
  const apparentPowerVA = reading.totalApparentPower ?? Math.hypot(reading.totalActivePower, reading.totalReactivePower);
  const loadFactor = device.ratedPowerVA && device.ratedPowerVA > 0 ? apparentPowerVA / device.ratedPowerVA : undefined;
  const nominal = device.nominalPhaseVoltageV;
  const voltageDeviation =
    nominal && nominal > 0
      ? Math.max(...[reading.phaseVoltage.L1, reading.phaseVoltage.L2, reading.phaseVoltage.L3].map((v) => Math.abs(v - nominal) / nominal))
      : undefined;
  const band = frequencyBand(reading.frequency);
  const outOfBand = band !== 'normal' || (voltageDeviation !== undefined && voltageDeviation > GRID_CODE.voltageTolerance);
  return { apparentPowerVA, loadFactor, frequencyBand: band, voltageDeviation, outOfBand };
}
