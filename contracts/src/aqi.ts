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
  const subIndices: Partial<Record<VnAqiParameter, number>> = {};
  let dominant: VnAqiParameter | undefined;
  let max = -1;
  for (const [parameter, c] of Object.entries(concentrations) as [VnAqiParameter, number | undefined][]) {
    if (c === undefined) continue;
    const index = vnAqiSubIndex(parameter, c);
    if (index === undefined) continue;
    subIndices[parameter] = index;
    if (index > max) {
      max = index;
      dominant = parameter;
    }
  }
  if (dominant === undefined) return undefined;
  return { aqi: Math.round(max), subIndices, dominant };
}

export interface AqiBand {
  readonly key: 'good' | 'moderate' | 'poor' | 'bad' | 'very-bad' | 'hazardous';
  readonly min: number;
  readonly max: number;
  readonly labelVi: string;
  readonly labelEn: string;
  /** The decision's official RGB colour. */
  readonly color: string;
  readonly adviceVi: string;
}

export const VN_AQI_BANDS: readonly AqiBand[] = [
  { key: 'good', min: 0, max: 50, labelVi: 'Tốt', labelEn: 'Good', color: 'rgb(0,228,0)', adviceVi: 'Tự do thực hiện các hoạt động ngoài trời.' },
  { key: 'moderate', min: 51, max: 100, labelVi: 'Trung bình', labelEn: 'Moderate', color: 'rgb(255,255,0)', adviceVi: 'Nhóm nhạy cảm nên hạn chế thời gian ở bên ngoài.' },
  { key: 'poor', min: 101, max: 150, labelVi: 'Kém', labelEn: 'Poor', color: 'rgb(255,126,0)', adviceVi: 'Nhóm nhạy cảm hạn chế ra ngoài; mọi người giảm hoạt động mạnh ngoài trời.' },
  { key: 'bad', min: 151, max: 200, labelVi: 'Xấu', labelEn: 'Bad', color: 'rgb(255,0,0)', adviceVi: 'Mọi người hạn chế hoạt động ngoài trời; nhóm nhạy cảm tránh ra ngoài.' },
  { key: 'very-bad', min: 201, max: 300, labelVi: 'Rất xấu', labelEn: 'Very bad', color: 'rgb(143,63,151)', adviceVi: 'Mọi người hạn chế tối đa thời gian ở bên ngoài.' },
  { key: 'hazardous', min: 301, max: 500, labelVi: 'Nguy hại', labelEn: 'Hazardous', color: 'rgb(126,0,35)', adviceVi: 'Mọi người nên ở trong nhà, đóng cửa.' },
];

export function vnAqiBand(aqi: number): AqiBand {
  const rounded = Math.round(aqi);
  return VN_AQI_BANDS.find((b) => rounded <= b.max) ?? (VN_AQI_BANDS[VN_AQI_BANDS.length - 1] as AqiBand);
}

function isPresent(c: number | null | undefined): c is number {
  return typeof c === 'number' && Number.isFinite(c);
}
