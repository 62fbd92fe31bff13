import { type EnvironmentReading } from '@citypulse/contracts';
import { advanceWalks, type WalkSpec } from '../random.js';
import { localTime, type LocalTime } from '../time.js';
import {
  bump,
  clamp,
  elapsedSeconds,
  monthly,
  provinceClimate,
  round,
  stepRng,
  type DeviceState,
  type Monthly,
  type ModelOptions,
  type ModelStep,
  type ProvinceClimate,
  type SimulatedDevice,
} from './common.js';
import { dailyTrafficShape } from './traffic.js';

/**
 * An air-quality and noise station. Concentrations are µg/m³ (CO too), as VN_AQI expects.
 * Particles follow the boundary layer (high at night under the inversion, lowest mid-afternoon)
 * plus traffic peaks, with the north's winter-monsoon haze; NO2, CO and noise follow traffic;
 * O3 is photochemical and peaks in the early afternoon.
 */
export const ENVIRONMENT_KINDS = ['urban-station', 'roadside'] as const;
export type EnvironmentKind = (typeof ENVIRONMENT_KINDS)[number];

export function isEnvironmentKind(kind: string): kind is EnvironmentKind {
  return (ENVIRONMENT_KINDS as readonly string[]).includes(kind);
}

const ENVIRONMENT_WALKS = {
  pm: { sigma: 0.3, tauS: 4 * 3600 }, // log scale: PM episodes build and clear over hours
  pmRatio: { sigma: 0.04, tauS: 6 * 3600 },
  gas: { sigma: 0.2, tauS: 3600 },
  o3: { sigma: 0.15, tauS: 2 * 3600 },
  so2: { sigma: 0.3, tauS: 3 * 3600 },
  temperature: { sigma: 1, tauS: 3 * 3600 },
  humidity: { sigma: 0.04, tauS: 2 * 3600 },
  noise: { sigma: 1.5, tauS: 10 * 60 },
} as const satisfies Record<string, WalkSpec>;

/** Weight of the northern winter-monsoon haze season (Nov–Mar: inversions, little rain, regional smoke). */
const NORTH_HAZE: Monthly = [1, 0.85, 0.55, 0.2, 0, 0, 0, 0, 0.05, 0.3, 0.7, 1];
/** Weight of the rainy season that washes particles out, in the north (summer) and in the south (May–Nov). */
const NORTH_RAIN: Monthly = [0, 0, 0, 0.1, 0.5, 0.9, 1, 1, 0.6, 0.2, 0, 0];
const SOUTH_RAIN: Monthly = [0, 0, 0, 0.2, 0.7, 1, 1, 1, 1, 0.9, 0.5, 0.1];
/** Central coast: rain and typhoons Sep–Dec. */
const CENTRAL_RAIN: Monthly = [0.3, 0.1, 0, 0, 0.1, 0.1, 0.1, 0.2, 0.6, 1, 1, 0.7];

/** Monthly mean air temperature, °C, at sea level (Hà Nội, Đà Nẵng, Hồ Chí Minh as the three regions). */
const TEMPERATURE_NORTH: Monthly = [16.5, 17.5, 20, 24, 28, 29.5, 30, 29, 28, 25.5, 22, 18.5];
const TEMPERATURE_CENTRAL: Monthly = [21.5, 22.5, 24, 26.5, 28.5, 29.5, 29.5, 29, 27.5, 25.5, 24, 22];
const TEMPERATURE_SOUTH: Monthly = [26, 27, 28, 29.5, 29, 28, 27.5, 27.5, 27, 27, 26.5, 26];
/** Monthly mean relative humidity, fraction. */
const HUMIDITY_NORTH: Monthly = [0.8, 0.84, 0.87, 0.87, 0.82, 0.8, 0.81, 0.84, 0.82, 0.78, 0.76, 0.76];
const HUMIDITY_CENTRAL: Monthly = [0.86, 0.85, 0.84, 0.82, 0.79, 0.76, 0.75, 0.77, 0.82, 0.86, 0.87, 0.87];
const HUMIDITY_SOUTH: Monthly = [0.7, 0.68, 0.68, 0.7, 0.78, 0.82, 0.83, 0.83, 0.85, 0.84, 0.8, 0.75];

function regional(climate: ProvinceClimate, north: Monthly, central: Monthly, south: Monthly, monthPosition: number): number {
  const centralWeight = Math.max(0, 1 - climate.north - climate.south);
  return climate.north * monthly(north, monthPosition) + centralWeight * monthly(central, monthPosition) + climate.south * monthly(south, monthPosition);
}

/** Seasonal multiplier of particle concentrations: northern winter haze up, rainy seasons down. */
export function particleSeason(climate: ProvinceClimate, time: LocalTime): number {
  const m = time.monthPosition;
  const haze = climate.north * monthly(NORTH_HAZE, m);
  const rain = regional(climate, NORTH_RAIN, CENTRAL_RAIN, SOUTH_RAIN, m);
  return (1 + 0.7 * haze) * (1 - 0.35 * rain) * (climate.south > 0.5 ? 1.1 : 1);
}

/**
 * Mixing of the lower atmosphere over the day: the nocturnal inversion traps pollution (highest
 * before dawn), afternoon convection dilutes it (lowest around 15–16 h).
 */
export function inversionFactor(time: LocalTime): number {
  return 1 + 0.3 * Math.cos((2 * Math.PI * (time.hour - 4)) / 24);
}

/** Expected PM2.5 (µg/m³) at an urban background station, before the device's own variation. */
export function pm25Baseline(ts: number, provinceCode: string, kind: EnvironmentKind = 'urban-station'): number {
  const time = localTime(ts);
  const climate = provinceClimate(provinceCode);
  const roadside = kind === 'roadside';
  const annual = (18 + 14 * climate.north) * (0.7 + 0.5 * climate.cityScale) * (roadside ? 1.25 : 1);
  const traffic = (roadside ? 1.6 : 1) * (0.25 * bump(time.hour, 8, 1.2) + 0.2 * bump(time.hour, 19, 1.5));
  return annual * particleSeason(climate, time) * (inversionFactor(time) + traffic);
}

/** The next reading of an environment station at `ts`. */
export function environmentReading(device: SimulatedDevice, state: DeviceState, ts: number, options: ModelOptions): ModelStep<EnvironmentReading> {
  const kind = isEnvironmentKind(device.kind) ? device.kind : 'urban-station';
  const roadside = kind === 'roadside';
  const rng = stepRng(options.seed, device, state.seq);
  const w = advanceWalks(ENVIRONMENT_WALKS, state.walks, elapsedSeconds(state, ts), rng);
  const time = localTime(ts);
  const climate = provinceClimate(device.province);
  const h = time.hour;
  const traffic = dailyTrafficShape(time);
  const inversion = inversionFactor(time);
  const haze = climate.north * monthly(NORTH_HAZE, time.monthPosition);

  // Lognormal around the baseline (mean-corrected), as measured PM distributions are.
  const pm25 = clamp(pm25Baseline(ts, device.province, kind) * Math.exp(w.pm - 0.045), 1, 900);
  // Fine particles dominate in haze; road dust adds coarse ones at the kerb.
  const fineShare = clamp(0.6 + 0.1 * haze - (roadside ? 0.08 : 0) + w.pmRatio, 0.4, 0.85);
  const pm10 = pm25 / fineShare;

  const trafficScale = (roadside ? 2 : 1) * (0.6 + 0.6 * climate.cityScale);
  const photolysis = 1 - 0.25 * bump(h, 13, 2.5); // sunlight splits NO2 at midday
  const no2 = (12 + 10 * climate.north) * trafficScale * (0.45 + 0.75 * traffic) * inversion * photolysis * Math.exp(w.gas);
  const co = (600 + 400 * climate.cityScale) * (roadside ? 1.1 : 1) * trafficScale * (0.5 + 0.7 * traffic) * inversion * Math.exp(0.8 * w.gas);
  const sunny = 1 - 0.6 * haze;
  // Fresh NO at the kerb titrates ozone, so roadside O3 is lower.
  const o3 = (15 + (50 + 40 * sunny) * bump(h, 14, 2.6)) * (roadside ? 0.75 : 1) * Math.exp(w.o3);
  const so2 = (5 + 8 * climate.north) * (0.8 + 0.3 * inversion) * Math.exp(w.so2);

  const dayCycle = Math.cos((2 * Math.PI * (h - 14.5)) / 24); // warmest mid-afternoon, coolest before dawn
  const meanTemperature = regional(climate, TEMPERATURE_NORTH, TEMPERATURE_CENTRAL, TEMPERATURE_SOUTH, time.monthPosition) - climate.altitudeCoolingC;
  // Northern winters are overcast and drizzly: a small daily range; the south swings more.
  const temperature = meanTemperature + (2.8 + 1.2 * climate.south) * dayCycle + w.temperature;
  const meanHumidity = regional(climate, HUMIDITY_NORTH, HUMIDITY_CENTRAL, HUMIDITY_SOUTH, time.monthPosition);
  const relativeHumidity = clamp(meanHumidity - 0.12 * dayCycle - 0.02 * w.temperature + w.humidity, 0.25, 0.99);

  // Road noise grows with 10·log10 of the flow.
  const noiseAtPeak = roadside ? 74 : 62;
  const LAeq = clamp(noiseAtPeak + 10 * Math.log10(Math.max(0.02, traffic * climate.cityScale)) + w.noise, 35, 95);

  const reading: EnvironmentReading = {
    ts,
    seq: state.seq,
    pm25: round(pm25, 1),
    pm10: round(Math.max(pm10, pm25 + 0.2), 1),
    no2: round(clamp(no2, 1, 2000), 1),
    o3: round(clamp(o3, 1, 600), 1),
    co: Math.round(clamp(co, 100, 40_000)),
    so2: round(clamp(so2, 0.5, 300), 1),
    temperature: round(clamp(temperature, -5, 45), 1),
    relativeHumidity: round(relativeHumidity, 3),
    LAeq: round(LAeq, 1),
  };
  return { reading, state: { ...state, seq: state.seq + 1, lastTs: ts, walks: w } };
}
