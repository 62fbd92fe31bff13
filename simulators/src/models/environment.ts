import { type EnvironmentReading } from '@citypulse/contracts';
import { WalkSet, type WalkSpec } from '../random.js';
import { localTime, type LocalTime } from '../time.js';
import {
  bump,
  clamp,
  elapsedSeconds,
  monthly,
  provinceClimate,
  rainSeason,
  regional,
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
 * plus the province's traffic, with the north's winter-monsoon haze; NO2, CO and noise follow
 * the province's traffic (its daily shape, its size and the congestion of incidents); O3 is
 * photochemical and peaks in the early afternoon. Rain from the world washes particles out, cools
 * the air and raises humidity; pollution episodes multiply the primary pollutants.
 */
export const ENVIRONMENT_KINDS = ['urban-station', 'roadside'] as const;
export type EnvironmentKind = (typeof ENVIRONMENT_KINDS)[number];

export function isEnvironmentKind(kind: string): kind is EnvironmentKind {
  return (ENVIRONMENT_KINDS as readonly string[]).includes(kind);
}

const ENVIRONMENT_WALKS = new WalkSet({
  pm: { sigma: 0.3, tauS: 4 * 3600 }, // log scale: PM episodes build and clear over hours
  pmRatio: { sigma: 0.04, tauS: 6 * 3600 },
  gas: { sigma: 0.2, tauS: 3600 },
  o3: { sigma: 0.15, tauS: 2 * 3600 },
  so2: { sigma: 0.3, tauS: 3 * 3600 },
  temperature: { sigma: 1, tauS: 3 * 3600 },
  humidity: { sigma: 0.04, tauS: 2 * 3600 },
  noise: { sigma: 1.5, tauS: 10 * 60 },
} as const satisfies Record<string, WalkSpec>);

/** Weight of the northern winter-monsoon haze season (Nov–Mar: inversions, little rain, regional smoke). */
const NORTH_HAZE: Monthly = [1, 0.85, 0.55, 0.2, 0, 0, 0, 0, 0.05, 0.3, 0.7, 1];
/** Monthly mean air temperature, °C, at sea level (Hà Nội, Đà Nẵng, Hồ Chí Minh as the three regions). */
const TEMPERATURE_NORTH: Monthly = [16.5, 17.5, 20, 24, 28, 29.5, 30, 29, 28, 25.5, 22, 18.5];
const TEMPERATURE_CENTRAL: Monthly = [21.5, 22.5, 24, 26.5, 28.5, 29.5, 29.5, 29, 27.5, 25.5, 24, 22];
const TEMPERATURE_SOUTH: Monthly = [26, 27, 28, 29.5, 29, 28, 27.5, 27.5, 27, 27, 26.5, 26];
/** Monthly mean relative humidity, fraction. */
const HUMIDITY_NORTH: Monthly = [0.8, 0.84, 0.87, 0.87, 0.82, 0.8, 0.81, 0.84, 0.82, 0.78, 0.76, 0.76];
const HUMIDITY_CENTRAL: Monthly = [0.86, 0.85, 0.84, 0.82, 0.79, 0.76, 0.75, 0.77, 0.82, 0.86, 0.87, 0.87];
const HUMIDITY_SOUTH: Monthly = [0.7, 0.68, 0.68, 0.7, 0.78, 0.82, 0.83, 0.83, 0.85, 0.84, 0.8, 0.75];

/** Seasonal multiplier of particle concentrations: northern winter haze up, rainy seasons down. */
export function particleSeason(climate: ProvinceClimate, time: LocalTime): number {
  const m = time.monthPosition;
  const haze = climate.north * monthly(NORTH_HAZE, m);
  // Humid air and frequent showers keep the rainy season cleaner on average; the world adds the actual showers.
  return (1 + 0.7 * haze) * (1 - 0.25 * rainSeason(climate, m)) * (climate.south > 0.5 ? 1.1 : 1);
}

/**
 * Mixing of the lower atmosphere over the day: the nocturnal inversion traps pollution (highest
 * before dawn), afternoon convection dilutes it (lowest around 15–16 h).
 */
export function inversionFactor(time: LocalTime): number {
  return 1 + 0.3 * Math.cos((2 * Math.PI * (time.hour - 4)) / 24);
}

/**
 * Traffic in the province relative to a metropolis at its weekday rush peak (≈ 1): the daily
 * shape (rush hours, quiet nights and weekends) times the city's scale, raised by incident queues
 * (idling engines) when the world has any.
 */
export function provinceTraffic(ts: number, provinceCode: string, options?: Pick<ModelOptions, 'world'>): number {
  const base = dailyTrafficShape(localTime(ts)) * provinceClimate(provinceCode).cityScale;
  const congestion = options?.world ? options.world.trafficCongestion(provinceCode, ts) : 0;
  return base * (1 + Math.min(0.5, 0.1 * congestion));
}

/** Limits the model never leaves (the schema allows more): physical for the air of a Vietnamese city. */
export const ENVIRONMENT_BOUNDS = {
  pm25: [1, 900],
  pm10: [2, 1400],
  no2: [1, 2000],
  o3: [1, 600],
  co: [100, 40_000],
  so2: [0.5, 300],
  temperature: [-5, 45],
  relativeHumidity: [0.25, 0.99],
  LAeq: [30, 100],
} as const satisfies Record<string, readonly [number, number]>;

/** Expected PM2.5 (µg/m³) at a station, before the device's own variation, rain and episodes. */
export function pm25Baseline(ts: number, provinceCode: string, kind: EnvironmentKind = 'urban-station', options?: Pick<ModelOptions, 'world'>): number {
  return pm25At(localTime(ts), provinceClimate(provinceCode), kind === 'roadside', provinceTraffic(ts, provinceCode, options));
}

function pm25At(time: LocalTime, climate: ProvinceClimate, roadside: boolean, traffic: number): number {
  const annual = (18 + 14 * climate.north) * (0.7 + 0.5 * climate.cityScale) * (roadside ? 1.25 : 1);
  // Exhaust and road dust: about +45 % of the background at a metropolis' rush hour, more at the kerb.
  const fromTraffic = (roadside ? 0.75 : 0.45) * traffic;
  return annual * particleSeason(climate, time) * (inversionFactor(time) + fromTraffic);
}

/** How rain changes the air: particles washed out, gases a little, the air cooler and wetter. */
const RAIN_EFFECT = { pm25: 0.6, gases: 0.2, coolingC: 3, ozone: 0.4, fineShare: 0.15 } as const;

/** The next reading of an environment station at `ts`. */
export function environmentReading(device: SimulatedDevice, state: DeviceState, ts: number, options: ModelOptions): ModelStep<EnvironmentReading> {
  const kind = isEnvironmentKind(device.kind) ? device.kind : 'urban-station';
  const roadside = kind === 'roadside';
  const rng = stepRng(options.seed, device, state.seq);
  const w = ENVIRONMENT_WALKS.advance(state.walks, elapsedSeconds(state, ts), rng);
  const time = localTime(ts);
  const climate = provinceClimate(device.province);
  const h = time.hour;
  const traffic = provinceTraffic(ts, device.province, options);
  const inversion = inversionFactor(time);
  const haze = climate.north * monthly(NORTH_HAZE, time.monthPosition);
  const world = options.world;
  const washout = world ? world.rainWashout(device.province, ts) : 0;
  const raining = world ? 1 - Math.exp(-world.rainMmPerHour(device.province, ts) / 4) : 0;
  const episode = world ? world.pollutionFactor(device.province, ts) : 1;

  // Lognormal around the baseline (mean-corrected), as measured PM distributions are.
  const pm25 = pm25At(time, climate, roadside, traffic) * Math.exp(w.pm - 0.045) * (1 - RAIN_EFFECT.pm25 * washout) * episode;
  // Fine particles dominate in haze; road dust adds coarse ones at the kerb; rain takes the coarse ones first.
  const fineShare = clamp(0.6 + 0.1 * haze - (roadside ? 0.08 : 0) + RAIN_EFFECT.fineShare * washout + w.pmRatio, 0.4, 0.9);
  const pm10 = pm25 / fineShare;

  // Gases: a regional background (higher in the north: coal, winter inversions; higher in big
  // cities) plus exhaust that scales with traffic (1 ≈ a metropolis at rush hour), doubled at the kerb.
  const kerb = roadside ? 2 : 1;
  const gasRain = (1 - RAIN_EFFECT.gases * washout) * episode;
  const photolysis = 1 - 0.25 * bump(h, 13, 2.5); // sunlight splits NO2 at midday
  const urban = 0.5 + 0.5 * climate.cityScale;
  const no2 = ((6 + 6 * climate.north) * urban + 22 * kerb * traffic) * inversion * photolysis * Math.exp(w.gas) * gasRain;
  const co = ((400 + 200 * climate.north) * urban + 1200 * kerb * traffic) * inversion * Math.exp(0.8 * w.gas) * gasRain;
  const sunny = 1 - 0.6 * haze;
  const clouds = 1 - RAIN_EFFECT.ozone * Math.max(raining, washout);
  // Fresh NO at the kerb titrates ozone, so roadside O3 is lower.
  const o3 = (15 + (50 + 40 * sunny) * bump(h, 14, 2.6) * clouds) * (roadside ? 0.75 : 1) * Math.exp(w.o3);
  const so2 = (5 + 8 * climate.north) * (0.8 + 0.3 * inversion) * Math.exp(w.so2) * gasRain;

  const dayCycle = Math.cos((2 * Math.PI * (h - 14.5)) / 24); // warmest mid-afternoon, coolest before dawn
  const meanTemperature = regional(climate, TEMPERATURE_NORTH, TEMPERATURE_CENTRAL, TEMPERATURE_SOUTH, time.monthPosition) - climate.altitudeCoolingC;
  // Northern winters are overcast and drizzly: a small daily range; the south swings more. Rain cools the afternoon most.
  const temperature = meanTemperature + (2.8 + 1.2 * climate.south) * dayCycle + w.temperature - RAIN_EFFECT.coolingC * washout * (0.6 + 0.4 * Math.max(0, dayCycle));
  const meanHumidity = regional(climate, HUMIDITY_NORTH, HUMIDITY_CENTRAL, HUMIDITY_SOUTH, time.monthPosition);
  const dryHumidity = meanHumidity - 0.12 * dayCycle - 0.02 * w.temperature + w.humidity;
  const wetting = clamp(0.8 * washout + 0.2 * raining, 0, 1);
  const relativeHumidity = dryHumidity + (0.97 - dryHumidity) * wetting;

  // Road noise grows with 10·log10 of the flow; heavy rain on roofs and roads adds its own.
  const noiseAtPeak = roadside ? 74 : 62;
  const LAeq = noiseAtPeak + 10 * Math.log10(Math.max(0.02, traffic)) + w.noise + 4 * raining;

  const b = ENVIRONMENT_BOUNDS;
  const pm25Value = round(clamp(pm25, b.pm25[0], b.pm25[1]), 1);
  const reading: EnvironmentReading = {
    ts,
    seq: state.seq,
    pm25: pm25Value,
    pm10: round(clamp(Math.max(pm10, pm25Value + 0.2), b.pm10[0], b.pm10[1]), 1),
    no2: round(clamp(no2, b.no2[0], b.no2[1]), 1),
    o3: round(clamp(o3, b.o3[0], b.o3[1]), 1),
    co: Math.round(clamp(co, b.co[0], b.co[1])),
    so2: round(clamp(so2, b.so2[0], b.so2[1]), 1),
    temperature: round(clamp(temperature, b.temperature[0], b.temperature[1]), 1),
    relativeHumidity: round(clamp(relativeHumidity, b.relativeHumidity[0], b.relativeHumidity[1]), 3),
    LAeq: round(clamp(LAeq, b.LAeq[0], b.LAeq[1]), 1),
  };
  return { reading, state: { ...state, seq: state.seq + 1, lastTs: ts, walks: w } };
}
