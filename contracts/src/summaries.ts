import Type, { type Static } from 'typebox';
import { DeviceId, ProvinceCode } from './api.js';
import { LOS_LEVELS } from './traffic.js';

/**
 * Province summaries: what ingest publishes periodically for each province it owns and the api
 * forwards to dashboards. Figures come from each device's latest reading, and only from devices
 * that are reporting (online and not stale): a station silent for an hour does not hold the
 * province's AQI up. A figure is absent when no reporting device has the value.
 */

const Count = Type.Integer({ minimum: 0 });
const Share = Type.Number({ minimum: 0, maximum: 1 });

/** Each device counts in exactly one of online, offline and stale. */
export const SummaryDeviceCounts = Type.Object(
  {
    total: Count,
    /** Reporting: not offline, and a reading (or its online status) no older than its stale limit. */
    online: Count,
    /** Its last word was an offline status (its own, or its last will). */
    offline: Count,
    /** Not offline, but no reading for longer than N × its reporting interval. */
    stale: Count,
  },
  { additionalProperties: false },
);
export type SummaryDeviceCounts = Static<typeof SummaryDeviceCounts>;

const domainCounts = {
  /** Devices of this domain in the province, in any state. */
  devices: Count,
  /** Of those, reporting now: the figures below come from their latest readings. */
  reporting: Count,
};

export const EnvironmentSummary = Type.Object(
  {
    ...domainCounts,
    /** Mean of the reporting stations' indicative VN_AQI (QĐ 1459/QĐ-TCMT, not US EPA). */
    vnAqiMean: Type.Optional(Type.Number({ minimum: 0 })),
    vnAqiMax: Type.Optional(Type.Number({ minimum: 0 })),
    vnAqiMaxDevice: Type.Optional(DeviceId),
    /** Mean PM2.5 of the reporting stations that measure it, µg/m³. */
    pm25Mean: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type EnvironmentSummary = Static<typeof EnvironmentSummary>;

export const TrafficSummary = Type.Object(
  {
    ...domainCounts,
    /** Share of reporting detectors at level of service E or F. */
    congestedShare: Type.Optional(Share),
    /** Mean of current speed over free-flow speed, where a source reports both (probe data). */
    meanSpeedRatio: Type.Optional(Type.Number({ minimum: 0 })),
    worstLos: Type.Optional(Type.Enum(LOS_LEVELS)),
    worstDevice: Type.Optional(DeviceId),
  },
  { additionalProperties: false },
);
export type TrafficSummary = Static<typeof TrafficSummary>;

export const EnergySummary = Type.Object(
  {
    ...domainCounts,
    /** Apparent over rated power, where the device's rating is known. */
    loadFactorMean: Type.Optional(Type.Number({ minimum: 0 })),
    loadFactorMax: Type.Optional(Type.Number({ minimum: 0 })),
    loadFactorMaxDevice: Type.Optional(DeviceId),
    /** Reporting devices outside the grid code's normal frequency or voltage band. */
    outOfBand: Count,
  },
  { additionalProperties: false },
);
export type EnergySummary = Static<typeof EnergySummary>;

/** Active alerts by severity (see alerts.ts). */
export const SummaryAlertCounts = Type.Object({ info: Count, warning: Count, critical: Count }, { additionalProperties: false });
export type SummaryAlertCounts = Static<typeof SummaryAlertCounts>;

export const ProvinceSummary = Type.Object(
  {
    province: ProvinceCode,
    /** When the summary was built, epoch ms. */
    ts: Type.Integer({ minimum: 0 }),
    devices: SummaryDeviceCounts,
    environment: EnvironmentSummary,
    traffic: TrafficSummary,
    energy: EnergySummary,
    alerts: SummaryAlertCounts,
  },
  { additionalProperties: false },
);
export type ProvinceSummary = Static<typeof ProvinceSummary>;
