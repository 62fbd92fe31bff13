import { describe, expect, it } from 'vitest';
import { deriveEnergy, deriveTraffic, enrichReading, frequencyBand, HCM_LOS_DENSITY_PC_PER_MI_LN, levelOfService, readingState } from '../src/index.js';

describe('level of service', () => {
  it('pins the HCM density thresholds (pc/mi/ln)', () => {
    expect(HCM_LOS_DENSITY_PC_PER_MI_LN).toEqual({ A: 11, B: 18, C: 26, D: 35, E: 45 });
    expect([0, 11, 11.01, 18, 26, 35, 45, 45.1, 120].map((d) => levelOfService(d))).toEqual(['A', 'A', 'B', 'B', 'C', 'D', 'E', 'F', 'F']);
  });

  it('derives density = flow / speed in passenger-car units', () => {
    // 30 vehicles in 60 s = 1800 veh/h; 20 cars + 10 motorcycles × 0.3 = 23 pcu → 1380 pcu/h at 40 km/h
    const t = deriveTraffic({ intensity: 30, periodSeconds: 60, averageVehicleSpeed: 40, occupancy: 0.2, intensityByVehicleType: { car: 20, motorcycle: 10 } });
    expect(t.flowVehPerHour).toBe(1800);
    expect(t.densityPcPerMiLn).toBeCloseTo((1380 / 40) * 1.609344, 10);
    expect(t.los).toBe('F');
  });

  it('treats a standstill as jammed when occupied and free when empty', () => {
    expect(deriveTraffic({ intensity: 2, periodSeconds: 60, averageVehicleSpeed: 0, occupancy: 0.9 }).los).toBe('F');
    expect(deriveTraffic({ intensity: 0, periodSeconds: 60, averageVehicleSpeed: 0, occupancy: 0 }).los).toBe('A');
  });
});

describe('grid', () => {
  it('classifies frequency against the distribution code', () => {
    expect([50, 50.2, 49.75, 50.5, 50.51].map(frequencyBand)).toEqual(['normal', 'normal', 'unstable', 'unstable', 'outside']);
  });

  it('computes load factor and voltage deviation', () => {
    const e = deriveEnergy(
      { ts: 0, seq: 0, frequency: 50, totalActivePower: 300_000, totalReactivePower: 400_000, powerFactor: 0.6, phaseVoltage: { L1: 230, L2: 245, L3: 225 }, current: { L1: 1, L2: 1, L3: 1 } },
      { ratedPowerVA: 1_000_000, nominalPhaseVoltageV: 230 },
    );
    expect(e.apparentPowerVA).toBe(500_000);
    expect(e.loadFactor).toBe(0.5);
    expect(e.voltageDeviation).toBeCloseTo(15 / 230, 10);
    expect(e.outOfBand).toBe(true);
  });

  it('colours the map from the derived state', () => {
    const derived = enrichReading('environment', { ts: 0, seq: 0, pm25: 55.7 });
    expect(derived).toEqual({ vnAqi: 110, vnAqiDominant: 'pm25' });
    expect(readingState('environment', derived)).toEqual({ level: 'poor', color: 'rgb(255,126,0)' });
    expect(readingState('traffic', { los: 'A' }).level).toBe('los-A');
    expect(readingState('energy', { loadFactor: 0.95, outOfBand: false }).level).toBe('load-high');
  });
});
