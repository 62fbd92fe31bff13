import { LOS_COLORS, VN_AQI_METHOD, vnAqiBand, type Domain, type FieldValue } from '@citypulse/contracts';

/**
 * How readings are shown to operators: Vietnamese labels first, units, number formats. Pure (no
 * DOM), so it is unit-tested in Node. Field names are the contract's (FIWARE Smart Data Models
 * plus the derived fields of contracts/enrich.ts, flattened with '_').
 */

/** All provinces share one time zone (UTC+7, no daylight saving); times are shown in it. */
export const TIME_ZONE = 'Asia/Ho_Chi_Minh';

export const DOMAIN_LABELS: Readonly<Record<Domain, { readonly vi: string; readonly en: string }>> = {
  traffic: { vi: 'Giao thông', en: 'Traffic' },
  environment: { vi: 'Môi trường', en: 'Environment' },
  energy: { vi: 'Năng lượng', en: 'Energy' },
};

export const STATUS_LABELS: Readonly<Record<string, string>> = {
  online: 'Trực tuyến / online',
  offline: 'Mất kết nối / offline',
  unknown: 'Chưa rõ / unknown',
};

type Kind = 'number' | 'integer' | 'fraction-percent' | 'power' | 'text' | 'bool';

interface FieldSpec {
  readonly vi: string;
  readonly en: string;
  readonly unit?: string;
  readonly kind: Kind;
  /** Decimal places for 'number' (and for percentages). */
  readonly digits?: number;
}

const pollutant = (vi: string, en: string): FieldSpec => ({ vi, en, unit: 'µg/m³', kind: 'number', digits: 1 });
const phase = (vi: string, en: string, unit: string, digits: number): FieldSpec => ({ vi, en, unit, kind: 'number', digits });

/** Catalogue order is display order. */
const FIELDS: Readonly<Record<string, FieldSpec>> = {
  // environment (concentrations in µg/m³, CO too, as VN_AQI expects)
  vnAqi: { vi: 'VN_AQI (tức thời)', en: 'indicative VN_AQI', kind: 'integer' },
  vnAqiDominant: { vi: 'Chất ô nhiễm chính', en: 'dominant pollutant', kind: 'text' },
  pm25: pollutant('PM2.5', 'PM2.5'),
  pm10: pollutant('PM10', 'PM10'),
  no2: pollutant('NO₂', 'NO2'),
  o3: pollutant('O₃', 'O3'),
  co: { vi: 'CO', en: 'CO', unit: 'µg/m³', kind: 'number', digits: 0 },
  so2: pollutant('SO₂', 'SO2'),
  temperature: { vi: 'Nhiệt độ', en: 'temperature', unit: '°C', kind: 'number', digits: 1 },
  relativeHumidity: { vi: 'Độ ẩm', en: 'humidity', kind: 'fraction-percent', digits: 0 },
  LAeq: { vi: 'Độ ồn LAeq', en: 'noise', unit: 'dB(A)', kind: 'number', digits: 1 },
  // traffic (FIWARE TrafficFlowObserved)
  los: { vi: 'Mức phục vụ (LOS)', en: 'level of service', kind: 'text' },
  averageVehicleSpeed: { vi: 'Tốc độ trung bình', en: 'average speed', unit: 'km/h', kind: 'number', digits: 1 },
  intensity: { vi: 'Lưu lượng trong kỳ', en: 'vehicles in period', unit: 'xe', kind: 'integer' },
  flowVehPerHour: { vi: 'Lưu lượng', en: 'flow', unit: 'xe/h', kind: 'integer' },
  densityPcPerMiLn: { vi: 'Mật độ', en: 'density', unit: 'pcu/mi/làn', kind: 'number', digits: 1 },
  occupancy: { vi: 'Độ chiếm dụng', en: 'occupancy', kind: 'fraction-percent', digits: 0 },
  periodSeconds: { vi: 'Chu kỳ đếm', en: 'period', unit: 's', kind: 'integer' },
  averageVehicleLength: { vi: 'Chiều dài xe TB', en: 'average length', unit: 'm', kind: 'number', digits: 1 },
  averageHeadwayTime: { vi: 'Giãn cách TB', en: 'average headway', unit: 's', kind: 'number', digits: 1 },
  congested: { vi: 'Ùn tắc', en: 'congested', kind: 'bool' },
  laneId: { vi: 'Làn', en: 'lane', kind: 'integer' },
  laneDirection: { vi: 'Hướng', en: 'direction', kind: 'text' },
  intensityByVehicleType_motorcycle: { vi: 'Xe máy', en: 'motorcycles', unit: 'xe', kind: 'integer' },
  intensityByVehicleType_car: { vi: 'Ô tô con', en: 'cars', unit: 'xe', kind: 'integer' },
  intensityByVehicleType_bus: { vi: 'Xe buýt', en: 'buses', unit: 'xe', kind: 'integer' },
  intensityByVehicleType_lorry: { vi: 'Xe tải', en: 'lorries', unit: 'xe', kind: 'integer' },
  intensityByVehicleType_van: { vi: 'Xe van', en: 'vans', unit: 'xe', kind: 'integer' },
  intensityByVehicleType_bicycle: { vi: 'Xe đạp', en: 'bicycles', unit: 'xe', kind: 'integer' },
  // energy (FIWARE ThreePhaseAcMeasurement)
  loadFactor: { vi: 'Hệ số tải', en: 'load factor', kind: 'fraction-percent', digits: 0 },
  totalActivePower: { vi: 'Công suất tác dụng', en: 'active power', unit: 'W', kind: 'power' },
  totalReactivePower: { vi: 'Công suất phản kháng', en: 'reactive power', unit: 'VAr', kind: 'power' },
  totalApparentPower: { vi: 'Công suất biểu kiến', en: 'apparent power', unit: 'VA', kind: 'power' },
  apparentPowerVA: { vi: 'Công suất biểu kiến (tính)', en: 'apparent power', unit: 'VA', kind: 'power' },
  frequency: { vi: 'Tần số', en: 'frequency', unit: 'Hz', kind: 'number', digits: 2 },
  frequencyBand: { vi: 'Dải tần số', en: 'frequency band', kind: 'text' },
  outOfBand: { vi: 'Ngoài dải cho phép', en: 'out of band', kind: 'bool' },
  voltageDeviation: { vi: 'Độ lệch điện áp', en: 'voltage deviation', kind: 'fraction-percent', digits: 1 },
  powerFactor: { vi: 'Hệ số công suất', en: 'power factor', kind: 'number', digits: 2 },
  phaseVoltage_L1: phase('Điện áp L1', 'voltage L1', 'V', 1),
  phaseVoltage_L2: phase('Điện áp L2', 'voltage L2', 'V', 1),
  phaseVoltage_L3: phase('Điện áp L3', 'voltage L3', 'V', 1),
  current_L1: phase('Dòng điện L1', 'current L1', 'A', 1),
  current_L2: phase('Dòng điện L2', 'current L2', 'A', 1),
  current_L3: phase('Dòng điện L3', 'current L3', 'A', 1),
  thdVoltage: { vi: 'THD điện áp', en: 'voltage THD', kind: 'fraction-percent', digits: 1 },
  thdCurrent: { vi: 'THD dòng điện', en: 'current THD', kind: 'fraction-percent', digits: 1 },
  totalActiveEnergyImport: { vi: 'Điện năng nhận', en: 'energy import', unit: 'kWh', kind: 'number', digits: 1 },
  totalActiveEnergyExport: { vi: 'Điện năng phát', en: 'energy export', unit: 'kWh', kind: 'number', digits: 1 },
};

/** Transport bookkeeping rather than measurements (seq is shown with the reading time instead). */
const HIDDEN_FIELDS = new Set(['seq', 'ts']);

const FIELD_ORDER = new Map(Object.keys(FIELDS).map((name, i) => [name, i]));

/** VN_AQI parameter keys (contracts/aqi.ts) as operators read them, and the field each one comes from. */
const POLLUTANT_NAMES: Readonly<Record<string, { readonly label: string; readonly field: string }>> = {
  pm25: { label: 'PM2.5', field: 'pm25' },
  pm10: { label: 'PM10', field: 'pm10' },
  o3_1h: { label: 'O₃ (1 giờ)', field: 'o3' },
  o3_8h: { label: 'O₃ (8 giờ)', field: 'o3' },
  no2: { label: 'NO₂', field: 'no2' },
  co: { label: 'CO', field: 'co' },
  so2: { label: 'SO₂', field: 'so2' },
};

const FREQUENCY_BANDS: Readonly<Record<string, string>> = {
  normal: 'bình thường (±0,2 Hz)',
  unstable: 'dao động (±0,5 Hz)',
  outside: 'ngoài dải',
};

const numberFormats = new Map<number, Intl.NumberFormat>();
function numberFormat(digits: number): Intl.NumberFormat {
  let format = numberFormats.get(digits);
  if (!format) {
    format = new Intl.NumberFormat('vi-VN', { minimumFractionDigits: digits, maximumFractionDigits: digits });
    numberFormats.set(digits, format);
  }
  return format;
}

export function formatNumber(value: number, digits = 0): string {
  return numberFormat(digits).format(value);
}

/** W, VA or VAr scaled to k/M with the unit kept (1 234 567 W → "1,23 MW"). */
export function formatPower(value: number, unit: string): string {
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${formatNumber(value / 1e6, 2)} M${unit}`;
  if (abs >= 1e3) return `${formatNumber(value / 1e3, 1)} k${unit}`;
  return `${formatNumber(value, 0)} ${unit}`;
}

export function pollutantName(parameter: string): string {
  return POLLUTANT_NAMES[parameter]?.label ?? parameter;
}

export function fieldLabel(name: string): { readonly vi: string; readonly en: string } {
  const spec = FIELDS[name];
  return spec ? { vi: spec.vi, en: spec.en } : { vi: name, en: name };
}

export function fieldUnit(name: string): string {
  const spec = FIELDS[name];
  if (!spec) return '';
  return spec.kind === 'fraction-percent' ? '%' : (spec.unit ?? '');
}

/** A value with its unit, e.g. "42,5 µg/m³", "73 %", "1,2 kW", "có". */
export function formatFieldValue(name: string, value: FieldValue): string {
  const spec = FIELDS[name];
  if (typeof value === 'boolean') return value ? 'có' : 'không';
  if (typeof value === 'string') {
    if (name === 'vnAqiDominant') return pollutantName(value);
    if (name === 'frequencyBand') return FREQUENCY_BANDS[value] ?? value;
    return value;
  }
  if (!Number.isFinite(value)) return '—';
  if (!spec) return formatNumber(value, Number.isInteger(value) ? 0 : 2);
  switch (spec.kind) {
    case 'integer':
      return withUnit(formatNumber(Math.round(value), 0), spec.unit);
    case 'number':
      return withUnit(formatNumber(value, spec.digits ?? 1), spec.unit);
    case 'fraction-percent':
      return `${formatNumber(value * 100, spec.digits ?? 0)} %`;
    case 'power':
      return formatPower(value, spec.unit ?? 'W');
    case 'text':
    case 'bool':
      return String(value);
    default: {
      const unreachable: never = spec.kind;
      return String(unreachable);
    }
  }
}

function withUnit(text: string, unit: string | undefined): string {
  return unit ? `${text} ${unit}` : text;
}

export interface ValueRow {
  readonly name: string;
  readonly labelVi: string;
  readonly labelEn: string;
  readonly text: string;
  /** The parameter that set the VN_AQI (publishing rules: highlight the dominant one). */
  readonly highlight: boolean;
}

/** Every value and derived value of a reading as display rows: catalogue fields first, the rest after. */
export function describeReading(values: Readonly<Record<string, FieldValue>>, derived: Readonly<Record<string, FieldValue>>): ValueRow[] {
  const dominant = typeof derived.vnAqiDominant === 'string' ? POLLUTANT_NAMES[derived.vnAqiDominant]?.field : undefined;
  const merged = new Map<string, FieldValue>();
  for (const [name, value] of Object.entries(derived)) merged.set(name, value);
  for (const [name, value] of Object.entries(values)) if (!HIDDEN_FIELDS.has(name)) merged.set(name, value);
  const names = [...merged.keys()].sort((a, b) => (FIELD_ORDER.get(a) ?? 1e6) - (FIELD_ORDER.get(b) ?? 1e6) || a.localeCompare(b));
  return names.map((name) => {
    const label = fieldLabel(name);
    return { name, labelVi: label.vi, labelEn: label.en, text: formatFieldValue(name, merged.get(name) as FieldValue), highlight: name === dominant };
  });
}

export interface Headline {
  /** The big value: "VN_AQI 57", "LOS C", "Tải 72 %". */
  readonly title: string;
  /** Its meaning: band label and dominant pollutant, speed, frequency band. */
  readonly detail: string;
  /** Extra line, e.g. the VN_AQI health advice and method. */
  readonly note?: string;
}

/** The one-line summary the panel leads with, per domain. */
export function headline(domain: Domain, values: Readonly<Record<string, FieldValue>>, derived: Readonly<Record<string, FieldValue>>): Headline {
  switch (domain) {
    case 'environment': {
      const aqi = typeof derived.vnAqi === 'number' ? derived.vnAqi : undefined;
      if (aqi === undefined) return { title: 'VN_AQI —', detail: 'chưa đủ dữ liệu bụi (PM2.5/PM10)' };
      const band = vnAqiBand(aqi);
      const dominant = typeof derived.vnAqiDominant === 'string' ? ` · chất chính ${pollutantName(derived.vnAqiDominant)}` : '';
      return {
        title: `VN_AQI ${formatNumber(aqi, 0)}`,
        detail: `${band.labelVi} (${band.labelEn})${dominant}`,
        note: `${band.adviceVi} Chỉ số tức thời theo ${VN_AQI_METHOD}, không phải AQI giờ chính thức.`,
      };
    }
    case 'traffic': {
      const los = typeof derived.los === 'string' && derived.los in LOS_COLORS ? derived.los : undefined;
      const speed = typeof values.averageVehicleSpeed === 'number' ? formatFieldValue('averageVehicleSpeed', values.averageVehicleSpeed) : '—';
      return { title: `LOS ${los ?? '—'}`, detail: `tốc độ TB ${speed}` };
    }
    case 'energy': {
      const load = typeof derived.loadFactor === 'number' ? formatFieldValue('loadFactor', derived.loadFactor) : '—';
      const band = typeof derived.frequencyBand === 'string' ? formatFieldValue('frequencyBand', derived.frequencyBand) : '—';
      return { title: `Tải ${load}`, detail: `tần số ${band}${derived.outOfBand === true ? ' · NGOÀI DẢI' : ''}` };
    }
    default: {
      const unreachable: never = domain;
      return { title: String(unreachable), detail: '' };
    }
  }
}

const timeFormat = new Intl.DateTimeFormat('en-GB', { timeZone: TIME_ZONE, hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
const shortTimeFormat = new Intl.DateTimeFormat('en-GB', { timeZone: TIME_ZONE, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
const dayFormat = new Intl.DateTimeFormat('en-GB', { timeZone: TIME_ZONE, day: '2-digit', month: '2-digit' });

/** HH:mm:ss in Vietnam time. */
export function formatTime(ms: number): string {
  return timeFormat.format(ms);
}

/** HH:mm in Vietnam time (chart axes). */
export function formatShortTime(ms: number): string {
  return shortTimeFormat.format(ms);
}

/** dd/MM HH:mm:ss in Vietnam time, the way Vietnamese dates are written. */
export function formatDateTime(ms: number): string {
  return `${dayFormat.format(ms)} ${timeFormat.format(ms)}`;
}

/** "12 s", "3 phút", "1,5 giờ". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} phút`;
  return `${formatNumber(m / 60, 1)} giờ`;
}

/** "12 s trước", "3 phút trước". */
export function formatAge(ms: number): string {
  return `${formatDuration(ms)} trước`;
}

const compactFormat = new Intl.NumberFormat('vi-VN', { notation: 'compact', maximumFractionDigits: 1 });

/**
 * Chart axis ticks: as many decimals as the tick increment needs (so 20,2 / 20,4 never both read
 * "20"), compact notation from 10 000 up.
 */
export function formatAxisValue(value: number, increment: number): string {
  if (Math.abs(value) >= 10_000 && increment >= 1000) return compactFormat.format(value);
  const digits = increment > 0 && Number.isFinite(increment) ? Math.min(4, Math.max(0, -Math.floor(Math.log10(increment) + 1e-9))) : 0;
  return formatNumber(value, digits);
}
