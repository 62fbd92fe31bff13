/**
 * VN_AQI, Decision 1459/QĐ-TCMT of 12 November 2019 (replaced Decision 878/QĐ-TCMT of 2011).
 * All concentrations in µg/m³, CO too. This is NOT the US EPA AQI, whose breakpoints many
 * public repositories mislabel as "VN_AQI"; always say which scale is shown.
 */

export const VN_AQI_METHOD = 'VN_AQI (QĐ 1459/QĐ-TCMT, 2019)';

/** Index levels I[i] shared by every breakpoint column. */
const INDEX_LEVELS = [0, 50, 100, 150, 200, 300, 400, 500] as const;

/** Breakpoints BP[i] per parameter (Table 2 of the decision). O3 8h stops at 400 µg/m³. */
export const VN_AQI_BREAKPOINTS = {
  o3_1h: [0, 160, 200, 300, 400, 800, 1000, 1200],
  o3_8h: [0, 100, 120, 170, 210, 400],
  co: [0, 10_000, 30_000, 45_000, 60_000, 90_000, 120_000, 150_000],
  so2: [0, 125, 350, 550, 800, 1600, 2100, 2630],
  no2: [0, 100, 200, 700, 1200, 2350, 3100, 3850],
  pm10: [0, 50, 150, 250, 350, 420, 500, 600],
  pm25: [0, 25, 50, 80, 150, 250, 350, 500],
} as const satisfies Record<string, readonly number[]>;

export type VnAqiParameter = keyof typeof VN_AQI_BREAKPOINTS;

/**
 * Sub-index by linear interpolation: AQI = (I[i+1] − I[i]) / (BP[i+1] − BP[i]) × (C − BP[i]) + I[i].
 * Returns undefined when C lies beyond the table (O3 8h above 400: the decision then uses 1h only);
 * concentrations above the top of the other columns are capped at 500.
 */
export function vnAqiSubIndex(parameter: VnAqiParameter, concentration: number): number | undefined {
  if (!Number.isFinite(concentration) || concentration < 0) return undefined;
  const bp: readonly number[] = VN_AQI_BREAKPOINTS[parameter];
  const top = bp[bp.length - 1] ?? 0;
  if (concentration > top) return parameter === 'o3_8h' ? undefined : 500;
  for (let i = 0; i < bp.length - 1; i++) {
    const lo = bp[i] ?? 0;
    const hi = bp[i + 1] ?? 0;
    if (concentration <= hi) {
      const iLo = INDEX_LEVELS[i] ?? 0;
      const iHi = INDEX_LEVELS[i + 1] ?? 0;
      return ((iHi - iLo) / (hi - lo)) * (concentration - lo) + iLo;
    }
  }
  return undefined;
}

/**
 * NowCast for PM2.5 and PM10 over the last 12 hourly means, c[0] the latest hour. A missing hour
 * is null (weight 0). Needs at least 2 of the latest 3 hours, else undefined.
 * w* = Cmin / Cmax; w = max(w*, 1/2); NowCast = Σ w^(i−1)·ci / Σ w^(i−1).
 */
export function nowCast(hourlyMeans: readonly (number | null | undefined)[]): { value: number; weight: number } | undefined {
  const hours = hourlyMeans.slice(0, 12);
  const recent = hours.slice(0, 3).filter(isPresent).length;
  if (recent < 2) return undefined;
  const present = hours.filter(isPresent);
  const cMax = Math.max(...present);
  const cMin = Math.min(...present);
  const ratio = cMax === 0 ? 1 : cMin / cMax;
  const weight = Math.max(ratio, 0.5);
  let numerator = 0;
  let denominator = 0;
  hours.forEach((c, i) => {
    if (!isPresent(c)) return;
    const w = weight ** i;
    numerator += w * c;
    denominator += w;
  });
  return { value: numerator / denominator, weight };
}

export interface HourlyInputs {
  /** Last 12 hourly means, latest first (NowCast). */
  readonly pm25Hours?: readonly (number | null | undefined)[];
  readonly pm10Hours?: readonly (number | null | undefined)[];
  /** 1-hour means. */
  readonly o3?: number;
  readonly no2?: number;
  readonly co?: number;
  readonly so2?: number;
}

export interface DailyInputs {
  /** 24-hour means. */
  readonly pm25?: number;
  readonly pm10?: number;
  /** The day's maximum 1-hour mean. */
  readonly o3_1hMax?: number;
  /** The day's maximum 8-hour rolling mean. */
  readonly o3_8hMax?: number;
  readonly no2_1hMax?: number;
  readonly co_1hMax?: number;
  readonly so2_1hMax?: number;
}

export interface VnAqiResult {
  /** The station's index: the largest sub-index, rounded to an integer. */
  readonly aqi: number;
  /** Unrounded sub-indices by parameter. */
  readonly subIndices: Partial<Record<VnAqiParameter, number>>;
  /** The parameter that set the index. */
  readonly dominant: VnAqiParameter;
}

/** Hourly VN_AQI (AQI^h). Undefined without PM (the decision requires PM10 or PM2.5). */
export function vnAqiHourly(inputs: HourlyInputs): VnAqiResult | undefined {
  const pm25 = inputs.pm25Hours ? nowCast(inputs.pm25Hours)?.value : undefined;
  const pm10 = inputs.pm10Hours ? nowCast(inputs.pm10Hours)?.value : undefined;
  return combine({ pm25, pm10, o3_1h: inputs.o3, no2: inputs.no2, co: inputs.co, so2: inputs.so2 });
}

/** Daily VN_AQI (AQI^d). O3 uses the larger of the 1-hour and 8-hour sub-indices. */
export function vnAqiDaily(inputs: DailyInputs): VnAqiResult | undefined {
  return combine({
    pm25: inputs.pm25,
    pm10: inputs.pm10,
    o3_1h: inputs.o3_1hMax,
    o3_8h: inputs.o3_8hMax,
    no2: inputs.no2_1hMax,
    co: inputs.co_1hMax,
    so2: inputs.so2_1hMax,
  });
}

/**
 * Index of a single reading, its concentrations taken as the hour's means (PM without NowCast).
 * It is what a live map can show per reading; it is labelled "indicative" wherever it is shown,
 * because the official hourly index needs hourly means and a 12-hour NowCast.
 */
export function vnAqiIndicative(c: { pm25?: number; pm10?: number; o3?: number; no2?: number; co?: number; so2?: number }): VnAqiResult | undefined {
  return combine({ pm25: c.pm25, pm10: c.pm10, o3_1h: c.o3, no2: c.no2, co: c.co, so2: c.so2 });
}

function combine(concentrations: Partial<Record<VnAqiParameter, number | undefined>>): VnAqiResult | undefined {
  if (concentrations.pm25 === undefined && concentrations.pm10 === undefined) return undefined;
  const worst = maxSubIndex(Object.keys(concentrations) as VnAqiParameter[], concentrations, vnAqiSubIndex);
  return worst && { aqi: Math.round(worst.max), subIndices: worst.subIndices, dominant: worst.dominant };
}

/**
 * Both scales' index of a reading: every pollutant's sub-index, the largest of them and the
 * pollutant that gave it (the dominant one); undefined when no pollutant has one.
 */
function maxSubIndex<P extends string>(
  parameters: readonly P[],
  concentrations: Partial<Record<P, number | undefined>>,
  subIndex: (parameter: P, concentration: number) => number | undefined,
): { max: number; dominant: P; subIndices: Partial<Record<P, number>> } | undefined {
  const subIndices: Partial<Record<P, number>> = {};
  let dominant: P | undefined;
  let max = -1;
  for (const parameter of parameters) {
    const concentration = concentrations[parameter];
    if (concentration === undefined) continue;
    const index = subIndex(parameter, concentration);
    if (index === undefined) continue;
    subIndices[parameter] = index;
    if (index > max) {
      max = index;
      dominant = parameter;
    }
  }
  return dominant === undefined ? undefined : { max, dominant, subIndices };
}

/** Band keys of VN_AQI (Decision 1459/QĐ-TCMT). */
export type VnAqiBandKey = 'good' | 'moderate' | 'poor' | 'bad' | 'very-bad' | 'hazardous';

/**
 * One category of an AQI scale. The key type defaults to VN_AQI's keys, so `AqiBand` alone still
 * means a VN_AQI band; the US EPA scale uses `AqiBand<UsEpaAqiBandKey>` (see US_EPA_AQI_BANDS).
 */
export interface AqiBand<K extends string = VnAqiBandKey> {
  readonly key: K;
  readonly min: number;
  readonly max: number;
  readonly labelVi: string;
  readonly labelEn: string;
  /** The scale's official RGB colour (VN_AQI: the decision's; US EPA: the TAD's). */
  readonly color: string;
  readonly adviceVi: string;
  readonly adviceEn: string;
}

export const VN_AQI_BANDS: readonly AqiBand[] = [
  { key: 'good', min: 0, max: 50, labelVi: 'Tốt', labelEn: 'Good', color: 'rgb(0,228,0)', adviceVi: 'Tự do thực hiện các hoạt động ngoài trời.', adviceEn: 'Enjoy outdoor activities freely.' },
  { key: 'moderate', min: 51, max: 100, labelVi: 'Trung bình', labelEn: 'Moderate', color: 'rgb(255,255,0)', adviceVi: 'Nhóm nhạy cảm nên hạn chế thời gian ở bên ngoài.', adviceEn: 'Sensitive groups should limit their time outdoors.' },
  { key: 'poor', min: 101, max: 150, labelVi: 'Kém', labelEn: 'Poor', color: 'rgb(255,126,0)', adviceVi: 'Nhóm nhạy cảm hạn chế ra ngoài; mọi người giảm hoạt động mạnh ngoài trời.', adviceEn: 'Sensitive groups should limit going out; everyone should reduce strenuous outdoor activity.' },
  { key: 'bad', min: 151, max: 200, labelVi: 'Xấu', labelEn: 'Bad', color: 'rgb(255,0,0)', adviceVi: 'Mọi người hạn chế hoạt động ngoài trời; nhóm nhạy cảm tránh ra ngoài.', adviceEn: 'Everyone should limit outdoor activity; sensitive groups should avoid going out.' },
  { key: 'very-bad', min: 201, max: 300, labelVi: 'Rất xấu', labelEn: 'Very bad', color: 'rgb(143,63,151)', adviceVi: 'Mọi người hạn chế tối đa thời gian ở bên ngoài.', adviceEn: 'Everyone should keep time outdoors to a minimum.' },
  { key: 'hazardous', min: 301, max: 500, labelVi: 'Nguy hại', labelEn: 'Hazardous', color: 'rgb(126,0,35)', adviceVi: 'Mọi người nên ở trong nhà, đóng cửa.', adviceEn: 'Everyone should stay indoors with doors and windows closed.' },
];

export function vnAqiBand(aqi: number): AqiBand {
  const rounded = Math.round(aqi);
  return VN_AQI_BANDS.find((b) => rounded <= b.max) ?? (VN_AQI_BANDS[VN_AQI_BANDS.length - 1] as AqiBand);
}

function isPresent(c: number | null | undefined): c is number {
  return typeof c === 'number' && Number.isFinite(c);
}

/* ──────────────────────────── US EPA AQI: a second, labelled scale ──────────────────────────── */

/**
 * Label of the US EPA Air Quality Index as revised in 2024 (PM2.5 breakpoints of the
 * 7 February 2024 rule; Technical Assistance Document EPA-454/B-24-002, May 2024).
 *
 * The US EPA AQI is NOT VN_AQI. It has its own breakpoints, units (ppb/ppm for gases), averaging
 * periods, truncation rules and category names, and the two give different numbers for the same
 * air (PM2.5 35.9 µg/m³: EPA 102, VN_AQI 72). VN_AQI remains the platform's index; wherever an
 * EPA value is shown, show this label next to it, never a bare "AQI" and never in VN_AQI's place.
 */
export const US_EPA_AQI_METHOD = 'US EPA AQI (2024)';

/** Pollutants of the US EPA AQI, as carried by our readings (all in µg/m³, CO too). */
export type UsEpaAqiParameter = 'pm25' | 'pm10' | 'o3' | 'no2' | 'co' | 'so2';

/** One breakpoint table of the US EPA AQI (TAD 2024, Table 6). */
export interface UsEpaBreakpointTable {
  /** Unit of the table's concentrations. Gases are converted from µg/m³ first (ugM3ToPpb). */
  readonly unit: 'µg/m³' | 'ppb' | 'ppm';
  /** Averaging period EPA defines the table for. */
  readonly averaging: '1h' | '8h' | '24h';
  /** EPA truncates (never rounds) the concentration to this many decimals before the lookup. */
  readonly decimals: number;
  /** Rows [C_lo, C_hi, I_lo, I_hi], ascending; the gaps between rows are below the truncation step. */
  readonly rows: readonly (readonly [number, number, number, number])[];
}

/**
 * US EPA AQI breakpoints (2024). NOT VN_AQI_BREAKPOINTS: other units and other numbers.
 * Since 2024 the Hazardous category is one row, 301–500, for every pollutant.
 * - `o3_8h` stops at 0.200 ppm (index 300): EPA defines indices ≥ 301 with 1-hour ozone only.
 * - `o3_1h` starts at 0.125 ppm (index 101): EPA has no 1-hour ozone rows below that.
 * - `so2` is the 1-hour table; EPA reports indices ≥ 200 from 24-hour means, the indicative index
 *   applies the same rows to a single reading.
 */
export const US_EPA_AQI_BREAKPOINTS = {
  pm25: {
    unit: 'µg/m³',
    averaging: '24h',
    decimals: 1,
    rows: [[0.0, 9.0, 0, 50], [9.1, 35.4, 51, 100], [35.5, 55.4, 101, 150], [55.5, 125.4, 151, 200], [125.5, 225.4, 201, 300], [225.5, 325.4, 301, 500]],
  },
  pm10: {
    unit: 'µg/m³',
    averaging: '24h',
    decimals: 0,
    rows: [[0, 54, 0, 50], [55, 154, 51, 100], [155, 254, 101, 150], [255, 354, 151, 200], [355, 424, 201, 300], [425, 604, 301, 500]],
  },
  o3_8h: {
    unit: 'ppm',
    averaging: '8h',
    decimals: 3,
    rows: [[0.0, 0.054, 0, 50], [0.055, 0.07, 51, 100], [0.071, 0.085, 101, 150], [0.086, 0.105, 151, 200], [0.106, 0.2, 201, 300]],
  },
  o3_1h: {
    unit: 'ppm',
    averaging: '1h',
    decimals: 3,
    rows: [[0.125, 0.164, 101, 150], [0.165, 0.204, 151, 200], [0.205, 0.404, 201, 300], [0.405, 0.604, 301, 500]],
  },
  no2: {
    unit: 'ppb',
    averaging: '1h',
    decimals: 0,
    rows: [[0, 53, 0, 50], [54, 100, 51, 100], [101, 360, 101, 150], [361, 649, 151, 200], [650, 1249, 201, 300], [1250, 2049, 301, 500]],
  },
  co: {
    unit: 'ppm',
    averaging: '8h',
    decimals: 1,
    rows: [[0.0, 4.4, 0, 50], [4.5, 9.4, 51, 100], [9.5, 12.4, 101, 150], [12.5, 15.4, 151, 200], [15.5, 30.4, 201, 300], [30.5, 50.4, 301, 500]],
  },
  so2: {
    unit: 'ppb',
    averaging: '1h',
    decimals: 0,
    rows: [[0, 35, 0, 50], [36, 75, 51, 100], [76, 185, 101, 150], [186, 304, 151, 200], [305, 604, 201, 300], [605, 1004, 301, 500]],
  },
} as const satisfies Record<string, UsEpaBreakpointTable>;

/** Keys of US_EPA_AQI_BREAKPOINTS (ozone has two tables). */
export type UsEpaAqiTable = keyof typeof US_EPA_AQI_BREAKPOINTS;

/** Molar volume of an ideal gas at 25 °C and 1 atm, L/mol: the conversion basis EPA uses. */
export const US_EPA_MOLAR_VOLUME = 24.45;

/** Molecular weights (g/mol) for the µg/m³ → ppb conversion. */
export const US_EPA_MOLECULAR_WEIGHTS = { o3: 48.0, no2: 46.01, so2: 64.07, co: 28.01 } as const;

export type UsEpaGas = keyof typeof US_EPA_MOLECULAR_WEIGHTS;

/** µg/m³ → ppb at 25 °C and 1 atm: ppb = µg/m³ × 24.45 / molecular weight (ppm = ppb / 1000). */
export function ugM3ToPpb(gas: UsEpaGas, concentrationUgM3: number): number {
  return (concentrationUgM3 * US_EPA_MOLAR_VOLUME) / US_EPA_MOLECULAR_WEIGHTS[gas];
}

/**
 * A reading's concentration (µg/m³) in the unit of its EPA table, truncated as EPA does
 * (PM2.5 0.1 µg/m³, PM10 1 µg/m³, O3 0.001 ppm, NO2 and SO2 1 ppb, CO 0.1 ppm).
 * Undefined for a negative or non-finite concentration.
 */
export function usEpaConcentration(parameter: UsEpaAqiParameter, concentrationUgM3: number): { value: number; unit: UsEpaBreakpointTable['unit'] } | undefined {
  if (!Number.isFinite(concentrationUgM3) || concentrationUgM3 < 0) return undefined;
  const table: UsEpaBreakpointTable = US_EPA_AQI_BREAKPOINTS[parameter === 'o3' ? 'o3_8h' : parameter];
  let value = concentrationUgM3;
  if (parameter !== 'pm25' && parameter !== 'pm10') value = ugM3ToPpb(parameter, concentrationUgM3);
  if (table.unit === 'ppm') value /= 1000;
  return { value: truncate(value, table.decimals), unit: table.unit };
}

/**
 * US EPA sub-index of one pollutant from a concentration in µg/m³ (converted and truncated as
 * usEpaConcentration does), by EPA's linear interpolation
 * I = (I_hi − I_lo) / (C_hi − C_lo) × (C − C_lo) + I_lo, rounded to the nearest integer.
 * Above the top breakpoint the sub-index is capped at 500. Undefined for a negative or non-finite
 * concentration.
 *
 * Ozone: our readings are instantaneous, so neither EPA averaging period applies exactly. For this
 * indicative use we do what EPA prescribes where both ozone indices are available: the 8-hour table
 * up to 0.200 ppm, the 1-hour table from 0.125 ppm (its first row) upward, and the larger of the two
 * where both apply; from 0.201 ppm only the 1-hour table. As in EPA's tables, the index therefore
 * drops where the 8-hour table ends (0.200 ppm → 300, 0.201 ppm → 196).
 */
export function usEpaSubIndex(parameter: UsEpaAqiParameter, concentrationUgM3: number): number | undefined {
  const c = usEpaConcentration(parameter, concentrationUgM3);
  if (c === undefined) return undefined;
  if (parameter !== 'o3') return tableSubIndex(US_EPA_AQI_BREAKPOINTS[parameter], c.value) ?? 500;
  const eightHour = tableSubIndex(US_EPA_AQI_BREAKPOINTS.o3_8h, c.value);
  const oneHour = c.value < US_EPA_AQI_BREAKPOINTS.o3_1h.rows[0][0] ? undefined : (tableSubIndex(US_EPA_AQI_BREAKPOINTS.o3_1h, c.value) ?? 500);
  return Math.max(eightHour ?? -1, oneHour ?? -1);
}

export interface UsEpaAqiResult {
  /** Always US_EPA_AQI_METHOD: show it with the value. */
  readonly method: typeof US_EPA_AQI_METHOD;
  /** The largest sub-index, an integer 0–500. */
  readonly aqi: number;
  /** The parameter that set the index (the first in pm25, pm10, o3, no2, co, so2 order on a tie). */
  readonly dominant: UsEpaAqiParameter;
  /** Integer sub-indices (EPA rounds each one) of the pollutants given. */
  readonly subIndices: Partial<Record<UsEpaAqiParameter, number>>;
}

/**
 * Indicative US EPA AQI of a single reading (concentrations in µg/m³, CO too): each pollutant's
 * table is applied to the reading as if it were the table's average (PM 24 h, CO 8 h, NO2 and
 * SO2 1 h; ozone as in usEpaSubIndex). NOT VN_AQI, and not EPA's official (daily or NowCast)
 * AQI either: show it as "indicative" and labelled with US_EPA_AQI_METHOD.
 * Unlike VN_AQI, no PM is required; undefined when no pollutant has a usable concentration.
 */
export function usEpaAqiIndicative(c: { pm25?: number; pm10?: number; o3?: number; no2?: number; co?: number; so2?: number }): UsEpaAqiResult | undefined {
  const worst = maxSubIndex(US_EPA_PARAMETERS, c, usEpaSubIndex);
  return worst && { method: US_EPA_AQI_METHOD, aqi: worst.max, dominant: worst.dominant, subIndices: worst.subIndices };
}

/** Band keys of the US EPA AQI. */
export type UsEpaAqiBandKey = 'good' | 'moderate' | 'unhealthy-sensitive' | 'unhealthy' | 'very-unhealthy' | 'hazardous';

/**
 * US EPA AQI categories and official colours (TAD 2024, Tables 1–2). NOT VN_AQI_BANDS: the colours
 * coincide but the names, the meaning of each range and the advice differ; label with
 * US_EPA_AQI_METHOD wherever shown.
 */
export const US_EPA_AQI_BANDS: readonly AqiBand<UsEpaAqiBandKey>[] = [
  { key: 'good', min: 0, max: 50, labelVi: 'Tốt', labelEn: 'Good', color: 'rgb(0,228,0)', adviceVi: 'Chất lượng không khí đạt yêu cầu; tự do hoạt động ngoài trời.', adviceEn: 'Air quality is satisfactory; enjoy outdoor activities.' },
  { key: 'moderate', min: 51, max: 100, labelVi: 'Trung bình', labelEn: 'Moderate', color: 'rgb(255,255,0)', adviceVi: 'Người đặc biệt nhạy cảm nên cân nhắc giảm hoạt động gắng sức kéo dài ngoài trời.', adviceEn: 'Unusually sensitive people should consider reducing prolonged or heavy exertion outdoors.' },
  { key: 'unhealthy-sensitive', min: 101, max: 150, labelVi: 'Kém cho nhóm nhạy cảm', labelEn: 'Unhealthy for Sensitive Groups', color: 'rgb(255,126,0)', adviceVi: 'Nhóm nhạy cảm nên giảm hoạt động gắng sức kéo dài ngoài trời.', adviceEn: 'Sensitive groups should reduce prolonged or heavy exertion outdoors.' },
  { key: 'unhealthy', min: 151, max: 200, labelVi: 'Có hại', labelEn: 'Unhealthy', color: 'rgb(255,0,0)', adviceVi: 'Nhóm nhạy cảm tránh hoạt động gắng sức kéo dài ngoài trời; mọi người giảm hoạt động gắng sức.', adviceEn: 'Sensitive groups should avoid prolonged or heavy exertion outdoors; everyone else should reduce it.' },
  { key: 'very-unhealthy', min: 201, max: 300, labelVi: 'Rất có hại', labelEn: 'Very Unhealthy', color: 'rgb(143,63,151)', adviceVi: 'Nhóm nhạy cảm tránh mọi hoạt động ngoài trời; mọi người tránh hoạt động gắng sức kéo dài.', adviceEn: 'Sensitive groups should avoid all outdoor physical activity; everyone else should avoid prolonged or heavy exertion.' },
  { key: 'hazardous', min: 301, max: 500, labelVi: 'Nguy hại', labelEn: 'Hazardous', color: 'rgb(126,0,35)', adviceVi: 'Mọi người tránh mọi hoạt động ngoài trời; nhóm nhạy cảm ở trong nhà.', adviceEn: 'Everyone should avoid all outdoor physical activity; sensitive groups should remain indoors.' },
];

/** US EPA category of an index (rounded to an integer first; above 500 stays Hazardous). */
export function usEpaBand(aqi: number): AqiBand<UsEpaAqiBandKey> {
  const rounded = Math.round(aqi);
  return US_EPA_AQI_BANDS.find((b) => rounded <= b.max) ?? (US_EPA_AQI_BANDS[US_EPA_AQI_BANDS.length - 1] as AqiBand<UsEpaAqiBandKey>);
}

const US_EPA_PARAMETERS: readonly UsEpaAqiParameter[] = ['pm25', 'pm10', 'o3', 'no2', 'co', 'so2'];

/** EPA's interpolation on one table; undefined below its first row or above its last. */
function tableSubIndex(table: UsEpaBreakpointTable, c: number): number | undefined {
  const first = table.rows[0];
  if (first === undefined || c < first[0]) return undefined;
  for (const [cLo, cHi, iLo, iHi] of table.rows) {
    // A truncated value never falls in the gap between rows; if float noise put it there, the
    // row above takes it, at its lower bound.
    if (c <= cHi) return Math.round(((iHi - iLo) / (cHi - cLo)) * (Math.max(c, cLo) - cLo) + iLo);
  }
  return undefined;
}

/** Truncate (toward zero) to `decimals`, ignoring binary float noise (12.09 → 12.0, 35.9 stays 35.9). */
function truncate(value: number, decimals: number): number {
  const factor = 10 ** decimals;
  return Math.floor(Number((value * factor).toPrecision(12))) / factor;
}
