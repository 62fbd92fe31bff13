import { LOS_COLORS, VN_AQI_BANDS, readingState, usEpaAqiIndicative, usEpaBand, type AlertSeverity, type Domain } from '@citypulse/contracts';
import { type DeviceEntry } from './store.js';

/**
 * What the map draws for each device, as plain data (no map, no DOM; unit-tested in Node): the
 * colour on the chosen air-quality scale, a rank that orders every colour by severity (so a
 * cluster can take its worst member's colour through a `max` cluster property), the alert level,
 * and where to draw co-located devices so that each stays visible when zoomed in.
 */

/** Colour of a device without a usable reading; the same grey contracts' readingState uses. */
export const NO_READING_COLOR = '#9e9e9e';

/** Which air-quality scale colours environment stations: VN_AQI (the default) or US EPA AQI. */
export type AqiScale = 'vn' | 'epa';

export interface DisplayOptions {
  readonly scale: AqiScale;
  /** Domains drawn; a hidden domain leaves the clusters too. */
  readonly domains: ReadonlySet<Domain>;
}

/** Alert level of a device: 0 none, then info, warning, critical. */
export const ALERT_LEVEL: Readonly<Record<AlertSeverity, number>> = { info: 1, warning: 2, critical: 3 };

const energy = (derived: Parameters<typeof readingState>[1]) => readingState('energy', derived).color;

/**
 * Every colour a device can have, least to most severe. VN_AQI and US EPA share their six
 * colours; level of service and grid load sit at the VN_AQI band of like severity.
 */
export const SEVERITY_PALETTE: readonly string[] = [
  NO_READING_COLOR,
  LOS_COLORS.A,
  LOS_COLORS.B,
  energy({ loadFactor: 0.5 }),
  VN_AQI_BANDS[0]?.color ?? 'rgb(0,228,0)',
  LOS_COLORS.C,
  VN_AQI_BANDS[1]?.color ?? 'rgb(255,255,0)',
  LOS_COLORS.D,
  energy({ loadFactor: 0.8 }),
  VN_AQI_BANDS[2]?.color ?? 'rgb(255,126,0)',
  LOS_COLORS.E,
  energy({ loadFactor: 0.95 }),
  VN_AQI_BANDS[3]?.color ?? 'rgb(255,0,0)',
  LOS_COLORS.F,
  energy({ outOfBand: true }),
  VN_AQI_BANDS[4]?.color ?? 'rgb(143,63,151)',
  VN_AQI_BANDS[5]?.color ?? 'rgb(126,0,35)',
];
const RANK = new Map(SEVERITY_PALETTE.map((color, i) => [color, i]));

/** Severity rank of a colour (index into SEVERITY_PALETTE); 0 for no reading or an unknown colour. */
export function rankOf(color: string): number {
  return RANK.get(color) ?? 0;
}

/** The colour a device is drawn in on the chosen scale. */
export function displayColor(entry: DeviceEntry, scale: AqiScale): string {
  const reading = entry.reading;
  if (!reading) return NO_READING_COLOR;
  if (scale === 'epa' && entry.domain === 'environment') {
    const aqi = epaAqiOf(entry);
    return aqi === undefined ? NO_READING_COLOR : usEpaBand(aqi).color;
  }
  return reading.state.color;
}

/** US EPA AQI of a station's latest reading (indicative, from instantaneous concentrations). */
export function epaAqiOf(entry: DeviceEntry): number | undefined {
  const values = entry.reading?.values;
  if (!values) return undefined;
  const num = (name: string): number | undefined => {
    const v = values[name];
    return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
  };
  return usEpaAqiIndicative({ pm25: num('pm25'), pm10: num('pm10'), o3: num('o3'), no2: num('no2'), co: num('co'), so2: num('so2') })?.aqi;
}

/** Resolution of the heatmap's weight (AQI units). */
export const HEAT_WEIGHT_STEP = 10;

export interface DeviceFeatureProperties {
  readonly deviceId: string;
  readonly domain: Domain;
  readonly color: string;
  /** SEVERITY_PALETTE index of `color`; clusters keep the max. */
  readonly rank: number;
  readonly offline: boolean;
  /** ALERT_LEVEL of the device's most severe active alert, 0 for none. */
  readonly alert: number;
  /** Environment only: VN_AQI (or EPA AQI on that scale) in steps of HEAT_WEIGHT_STEP, the heatmap's weight; 0 without one. */
  readonly aqi: number;
}

export interface DeviceFeature {
  readonly type: 'Feature';
  readonly properties: DeviceFeatureProperties;
  readonly geometry: { readonly type: 'Point'; readonly coordinates: [number, number] };
}

export interface DeviceFeatureCollection {
  readonly type: 'FeatureCollection';
  readonly features: DeviceFeature[];
}

export function featureProperties(entry: DeviceEntry, options: DisplayOptions, alertLevel: number): DeviceFeatureProperties {
  const color = displayColor(entry, options.scale);
  let aqi = 0;
  if (entry.domain === 'environment' && entry.reading) {
    const value = options.scale === 'epa' ? epaAqiOf(entry) : entry.reading.derived.vnAqi;
    // In steps of HEAT_WEIGHT_STEP: the heatmap cannot show a finer difference, and a reading that
    // keeps its station in the same step and band changes nothing on the map.
    if (typeof value === 'number' && Number.isFinite(value)) aqi = Math.round(value / HEAT_WEIGHT_STEP) * HEAT_WEIGHT_STEP;
  }
  return { deviceId: entry.id, domain: entry.domain, color, rank: rankOf(color), offline: entry.status === 'offline', alert: alertLevel, aqi };
}

/** Radius of the ring co-located devices are spread on, in degrees (≈ 17 m at Vietnam's latitudes). */
export const SPREAD_RADIUS_DEG = 0.00015;

/**
 * Where to draw each device: its own location, except that devices sharing one location (the
 * lanes of one detector, meters in one substation) are spread evenly on a small ring around it,
 * in id order, so each can be seen and clicked when zoomed in. At country scale they cluster.
 */
export function drawnLocations(entries: Iterable<DeviceEntry>): Map<string, [number, number]> {
  const groups = new Map<string, DeviceEntry[]>();
  for (const entry of entries) {
    const key = `${entry.location[0].toFixed(5)},${entry.location[1].toFixed(5)}`;
    const group = groups.get(key);
    if (group) group.push(entry);
    else groups.set(key, [entry]);
  }
  const out = new Map<string, [number, number]>();
  for (const group of groups.values()) {
    if (group.length === 1) {
      const only = group[0] as DeviceEntry;
      out.set(only.id, [only.location[0], only.location[1]]);
      continue;
    }
    group.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    // Larger groups get a larger ring so neighbours stay a similar distance apart.
    const radius = SPREAD_RADIUS_DEG * Math.max(1, group.length / 6);
    const [lng, lat] = group[0]?.location ?? [0, 0];
    const lngScale = 1 / Math.cos((lat * Math.PI) / 180);
    group.forEach((entry, i) => {
      const angle = (2 * Math.PI * i) / group.length;
      out.set(entry.id, [lng + radius * Math.sin(angle) * lngScale, lat + radius * Math.cos(angle)]);
    });
  }
  return out;
}
