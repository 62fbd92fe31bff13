import Type, { type Static, type TSchema } from 'typebox';
import type { Domain } from './topics.js';

/**
 * Payload schemas (JSON Schema via TypeBox). Field names follow FIWARE Smart Data Models
 * (TrafficFlowObserved, AirQualityObserved, ThreePhaseAcMeasurement) so an NGSI-LD export is
 * mechanical. Identity (device, province, domain) is never in the body: it comes from the
 * authenticated topic.
 */

/** 2000-01-01 .. 2100-01-01 in ms: catches seconds-instead-of-milliseconds at the schema. */
const TS_MIN_MS = 946_684_800_000;
const TS_MAX_MS = 4_102_444_800_000;

const common = {
  /** The device's own time of measurement, Unix epoch milliseconds. */
  ts: Type.Integer({ minimum: TS_MIN_MS, maximum: TS_MAX_MS, description: 'time of measurement, Unix epoch ms' }),
  /** Per-device sequence number; lets ingest and auditors see gaps and redeliveries. */
  seq: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'per-device sequence number' }),
};

const nonNegative = (maximum: number, description: string) => Type.Number({ minimum: 0, maximum, description });

export const VEHICLE_TYPES = ['motorcycle', 'car', 'bus', 'lorry', 'van', 'bicycle'] as const;
export type VehicleType = (typeof VEHICLE_TYPES)[number];

const vehicleCount = Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 }));

export const TrafficReading = Type.Object(
  {
    ...common,
    intensity: Type.Integer({ minimum: 0, maximum: 100_000, description: 'vehicles counted in the period' }),
    periodSeconds: Type.Integer({ minimum: 1, maximum: 3600, description: 'length of the counting period, s' }),
    occupancy: nonNegative(1, 'fraction of the period the detector was occupied, 0–1'),
    averageVehicleSpeed: nonNegative(300, 'km/h'),
    averageVehicleLength: Type.Optional(nonNegative(30, 'm')),
    averageHeadwayTime: Type.Optional(nonNegative(3600, 's')),
    congested: Type.Optional(Type.Boolean()),
    laneId: Type.Optional(Type.Integer({ minimum: 0, maximum: 20 })),
    laneDirection: Type.Optional(Type.Union([Type.Literal('forward'), Type.Literal('backward')])),
    /** The road segment the lane belongs to (FIWARE TrafficFlowObserved `refRoadSegment`), e.g. "01-c2-s3". */
    refRoadSegment: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', maxLength: 64, description: 'road segment id' })),
    /** Vehicles per class in the period; motorcycles dominate in Vietnam, so classes stay separate. */
    intensityByVehicleType: Type.Optional(
      Type.Object(
        { motorcycle: vehicleCount, car: vehicleCount, bus: vehicleCount, lorry: vehicleCount, van: vehicleCount, bicycle: vehicleCount },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type TrafficReading = Static<typeof TrafficReading>;

/** Concentrations in µg/m³ (CO too), as VN_AQI (Decision 1459/QĐ-TCMT) expects them. */
export const AIR_POLLUTANTS = ['pm25', 'pm10', 'no2', 'o3', 'co', 'so2'] as const;
export type AirPollutant = (typeof AIR_POLLUTANTS)[number];

export const EnvironmentReading = Type.Object(
  {
    ...common,
    pm25: Type.Optional(nonNegative(2000, 'PM2.5, µg/m³')),
    pm10: Type.Optional(nonNegative(3000, 'PM10, µg/m³')),
    no2: Type.Optional(nonNegative(10_000, 'NO2, µg/m³')),
    o3: Type.Optional(nonNegative(5000, 'O3, µg/m³')),
    co: Type.Optional(nonNegative(500_000, 'CO, µg/m³')),
    so2: Type.Optional(nonNegative(10_000, 'SO2, µg/m³')),
    temperature: Type.Optional(Type.Number({ minimum: -30, maximum: 70, description: '°C' })),
    relativeHumidity: Type.Optional(nonNegative(1, 'fraction 0–1')),
    /** Equivalent continuous sound level, dB(A) (FIWARE NoiseLevelObserved LAeq). */
    LAeq: Type.Optional(nonNegative(200, 'dB(A)')),
  },
  { additionalProperties: false },
);
export type EnvironmentReading = Static<typeof EnvironmentReading>;

const phases = (maximum: number, description: string) =>
  Type.Object({ L1: nonNegative(maximum, description), L2: nonNegative(maximum, description), L3: nonNegative(maximum, description) }, { additionalProperties: false });

export const EnergyReading = Type.Object(
  {
    ...common,
    frequency: Type.Number({ minimum: 0, maximum: 100, description: 'Hz' }),
    totalActivePower: Type.Number({ minimum: -1e10, maximum: 1e10, description: 'W' }),
    totalReactivePower: Type.Number({ minimum: -1e10, maximum: 1e10, description: 'VAr' }),
    totalApparentPower: Type.Optional(nonNegative(1e10, 'VA')),
    powerFactor: Type.Number({ minimum: -1, maximum: 1 }),
    phaseVoltage: phases(500_000, 'phase-to-neutral voltage, V'),
    current: phases(100_000, 'A'),
    thdVoltage: Type.Optional(nonNegative(1, 'fraction 0–1')),
    thdCurrent: Type.Optional(nonNegative(1, 'fraction 0–1')),
    totalActiveEnergyImport: Type.Optional(nonNegative(1e15, 'kWh, cumulative')),
    totalActiveEnergyExport: Type.Optional(nonNegative(1e15, 'kWh, cumulative')),
  },
  { additionalProperties: false },
);
export type EnergyReading = Static<typeof EnergyReading>;

export interface ReadingByDomain {
  traffic: TrafficReading;
  environment: EnvironmentReading;
  energy: EnergyReading;
}
export type Reading = ReadingByDomain[Domain];

export const READING_SCHEMAS: { readonly [D in Domain]: TSchema } = {
  traffic: TrafficReading,
  environment: EnvironmentReading,
  energy: EnergyReading,
};

/** The batch form: a device that was offline sends its backlog in one message. */
export const MAX_BATCH_READINGS = 1000;
export const batchSchema = (reading: TSchema) =>
  Type.Object({ readings: Type.Array(reading, { minItems: 1, maxItems: MAX_BATCH_READINGS }) }, { additionalProperties: false });

/** Retained on …/status; also the device's last will (state offline). */
export const DeviceStatusPayload = Type.Object(
  {
    state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    ts: Type.Optional(common.ts),
    reason: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
export type DeviceStatusPayload = Static<typeof DeviceStatusPayload>;
