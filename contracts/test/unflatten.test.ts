import { describe, expect, it } from 'vitest';
import { enrichReading, flattenReading, unflattenReading, type EnergyReading, type EnvironmentReading, type Fields, type TrafficReading } from '../src/index.js';

const TS = Date.UTC(2026, 10, 22, 1, 0, 0);
const traffic: TrafficReading = {
  ts: TS,
  seq: 41,
  intensity: 42,
  periodSeconds: 60,
  occupancy: 0.18,
  averageVehicleSpeed: 31.5,
  congested: false,
  laneId: 2,
  laneDirection: 'forward',
  intensityByVehicleType: { motorcycle: 34, car: 6, bus: 2 },
};
const environment: EnvironmentReading = { ts: TS, seq: 7, pm25: 35.2, pm10: 60, no2: 41.3, temperature: 29.4, relativeHumidity: 0.81, LAeq: 67.5 };
const energy: EnergyReading = {
  ts: TS,
  seq: 1,
  frequency: 50.02,
  totalActivePower: 310_000,
  totalReactivePower: 95_000,
  powerFactor: 0.95,
  phaseVoltage: { L1: 229.1, L2: 231, L3: 230.4 },
  current: { L1: 470, L2: 465.5, L3: 472 },
  totalActiveEnergyImport: 123_456.789,
};

/** What ingest stores: the flattened reading plus derived fields, every number as a float. */
function storedRow(domain: 'traffic' | 'environment' | 'energy', reading: TrafficReading | EnvironmentReading | EnergyReading): Fields {
  return { ...flattenReading(reading), ...(enrichReading(domain, reading as never) as Fields) };
}

describe('unflattenReading', () => {
  it.each([
    ['traffic', traffic],
    ['environment', environment],
    ['energy', energy],
  ] as const)('is the inverse of flattenReading for %s, derived fields dropped', (domain, reading) => {
    const result = unflattenReading(domain, storedRow(domain, reading), reading.ts);
    expect(result).toEqual({ ok: true, value: reading });
    // The schema's key order, so a replayed payload reads like the original.
    expect(result.ok && JSON.stringify(result.value)).toBe(JSON.stringify(reading));
  });

  it('rebuilds nested objects from parent_child columns', () => {
    const result = unflattenReading('energy', { seq: 3, frequency: 50, totalActivePower: 1, totalReactivePower: 0, powerFactor: 1, phaseVoltage_L1: 230, phaseVoltage_L2: 231, phaseVoltage_L3: 229, current_L1: 1, current_L2: 2, current_L3: 3 }, TS);
    expect(result.ok && result.value.phaseVoltage).toEqual({ L1: 230, L2: 231, L3: 229 });
    expect(result.ok && result.value.current).toEqual({ L1: 1, L2: 2, L3: 3 });
  });

  it('skips null columns (fields the row does not have) and takes ts from the fields when not given', () => {
    const result = unflattenReading('environment', { ts: TS, seq: 2, pm25: 12, pm10: null, LAeq: undefined, vnAqi: 50 });
    expect(result).toEqual({ ok: true, value: { ts: TS, seq: 2, pm25: 12 } });
  });

  it('gives integer fields their integer form back and keeps fractional numbers', () => {
    const result = unflattenReading('traffic', { seq: 41.000000001, intensity: 42, periodSeconds: 60, occupancy: 0.5, averageVehicleSpeed: 40, laneId: 1, intensityByVehicleType_car: 3 }, TS + 0.0000001);
    expect(result.ok && result.value).toMatchObject({ ts: TS, seq: 41, laneId: 1, intensityByVehicleType: { car: 3 } });
    const bad = unflattenReading('traffic', { seq: 1, intensity: 42.5, periodSeconds: 60, occupancy: 0.5, averageVehicleSpeed: 40 }, TS);
    expect(bad).toMatchObject({ ok: false, error: { code: 'E_PAYLOAD_SCHEMA' } });
    expect(!bad.ok && bad.error.message).toMatch(/intensity/);
  });

  it.each([
    ['an unknown field', { seq: 1, pm25: 3, hacked: 1 }, /"hacked" is not part of the environment reading schema/],
    ['a tag passed as a field', { seq: 1, pm25: 3, province: '01' }, /"province"/],
    ['an unknown nested child', { seq: 1, pm25: 3, pm25_x: 1 }, /"pm25_x"/],
    ['a prototype key', JSON.parse('{"seq":1,"pm25":3,"__proto___x":1}') as Fields, /__proto__/],
    ['a value out of range', { seq: 1, pm25: -3 }, /pm25/],
    ['a missing seq', { pm25: 3 }, /seq/],
  ])('refuses %s with E_PAYLOAD_SCHEMA', (_name, fields, message) => {
    const result = unflattenReading('environment', fields, TS);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.code).toBe('E_PAYLOAD_SCHEMA');
    expect(!result.ok && result.error.message).toMatch(message);
  });

  it('refuses a row without a time', () => {
    expect(unflattenReading('environment', { seq: 1, pm25: 3 }).ok).toBe(false);
  });
});
