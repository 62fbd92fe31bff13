import { LOS_COLORS, VN_AQI_METHOD, vnAqiBand, type Domain, type FieldValue } from '@citypulse/contracts';
import { lang, messages, pick, type Lang, type Translation } from './i18n.js';

/**
 * How readings are shown to operators: labels, units and number formats in the current language
 * (Vietnamese first, English as the toggle: "42,5" / "42.5"). No DOM, so it is unit-tested in Node. Field names are the contract's (FIWARE Smart Data Models
 * plus the derived fields of contracts/enrich.ts, flattened with '_').
 */

/** All provinces share one time zone (UTC+7, no daylight saving); times are shown in it. */
export const TIME_ZONE = 'Asia/Ho_Chi_Minh';

export const DOMAIN_LABELS: Readonly<Record<Domain, { readonly vi: string; readonly en: string }>> = {
  traffic: { vi: 'Giao thông', en: 'Traffic' },
  environment: { vi: 'Môi trường', en: 'Environment' },
  energy: { vi: 'Năng lượng', en: 'Energy' },
};

const M = messages({
  yes: { vi: 'có', en: 'yes' },
  no: { vi: 'không', en: 'no' },
  noDust: { vi: 'chưa đủ dữ liệu bụi (PM2.5/PM10)', en: 'not enough dust data (PM2.5/PM10)' },
  dominant: (name: string) => ({ vi: ` · chất chính ${name}`, en: ` · dominant ${name}` }),
  indicative: { vi: `Chỉ số tức thời theo ${VN_AQI_METHOD}, không phải AQI giờ chính thức.`, en: `Indicative index after ${VN_AQI_METHOD}, not the official hourly AQI.` },
  speed: (speed: string) => ({ vi: `tốc độ TB ${speed}`, en: `average speed ${speed}` }),
  load: (load: string) => ({ vi: `Tải ${load}`, en: `Load ${load}` }),
  frequency: (band: string) => ({ vi: `tần số ${band}`, en: `frequency ${band}` }),
  outOfBand: { vi: ' · NGOÀI DẢI', en: ' · OUT OF BAND' },
  minutes: (n: string) => ({ vi: `${n} phút`, en: `${n} min` }),
  hours: (n: string) => ({ vi: `${n} giờ`, en: `${n} h` }),
  ago: (duration: string) => ({ vi: `${duration} trước`, en: `${duration} ago` }),
});

type Kind = 'number' | 'integer' | 'fraction-percent' | 'power' | 'text' | 'bool';

interface FieldSpec {
  readonly vi: string;
  readonly en: string;
  /** A symbol ('µg/m³') or, for words, the unit in both languages. */
  readonly unit?: string | Translation;
  readonly kind: Kind;
  /** Decimal places for 'number' (and for percentages). */
  readonly digits?: number;
}

const pollutant = (vi: string, en: string): FieldSpec => ({ vi, en, unit: 'µg/m³', kind: 'number', digits: 1 });
const phase = (vi: string, en: string, unit: string, digits: number): FieldSpec => ({ vi, en, unit, kind: 'number', digits });

/** Catalogue order is display order. */
const VEHICLES: Translation = { vi: 'xe', en: 'veh' };

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
  intensity: { vi: 'Lưu lượng trong kỳ', en: 'vehicles in period', unit: VEHICLES, kind: 'integer' },
  flowVehPerHour: { vi: 'Lưu lượng', en: 'flow', unit: { vi: 'xe/h', en: 'veh/h' }, kind: 'integer' },
  densityPcPerMiLn: { vi: 'Mật độ', en: 'density', unit: { vi: 'pcu/mi/làn', en: 'pcu/mi/lane' }, kind: 'number', digits: 1 },
  occupancy: { vi: 'Độ chiếm dụng', en: 'occupancy', kind: 'fraction-percent', digits: 0 },
  periodSeconds: { vi: 'Chu kỳ đếm', en: 'period', unit: 's', kind: 'integer' },
  averageVehicleLength: { vi: 'Chiều dài xe TB', en: 'average length', unit: 'm', kind: 'number', digits: 1 },
  averageHeadwayTime: { vi: 'Giãn cách TB', en: 'average headway', unit: 's', kind: 'number', digits: 1 },
  congested: { vi: 'Ùn tắc', en: 'congested', kind: 'bool' },
  laneId: { vi: 'Làn', en: 'lane', kind: 'integer' },
  laneDirection: { vi: 'Hướng', en: 'direction', kind: 'text' },
  intensityByVehicleType_motorcycle: { vi: 'Xe máy', en: 'motorcycles', unit: VEHICLES, kind: 'integer' },
  intensityByVehicleType_car: { vi: 'Ô tô con', en: 'cars', unit: VEHICLES, kind: 'integer' },
  intensityByVehicleType_bus: { vi: 'Xe buýt', en: 'buses', unit: VEHICLES, kind: 'integer' },
  intensityByVehicleType_lorry: { vi: 'Xe tải', en: 'lorries', unit: VEHICLES, kind: 'integer' },
  intensityByVehicleType_van: { vi: 'Xe van', en: 'vans', unit: VEHICLES, kind: 'integer' },
  intensityByVehicleType_bicycle: { vi: 'Xe đạp', en: 'bicycles', unit: VEHICLES, kind: 'integer' },
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
const same = (text: string): Translation => ({ vi: text, en: text });
const POLLUTANT_NAMES: Readonly<Record<string, { readonly label: Translation; readonly field: string }>> = {
  pm25: { label: same('PM2.5'), field: 'pm25' },
  pm10: { label: same('PM10'), field: 'pm10' },
  o3_1h: { label: { vi: 'O₃ (1 giờ)', en: 'O₃ (1 h)' }, field: 'o3' },
  o3_8h: { label: { vi: 'O₃ (8 giờ)', en: 'O₃ (8 h)' }, field: 'o3' },
  no2: { label: same('NO₂'), field: 'no2' },
  co: { label: same('CO'), field: 'co' },
  so2: { label: same('SO₂'), field: 'so2' },
};

const FREQUENCY_BANDS: Readonly<Record<string, Translation>> = {
  normal: { vi: 'bình thường (±0,2 Hz)', en: 'normal (±0.2 Hz)' },
  unstable: { vi: 'dao động (±0,5 Hz)', en: 'unstable (±0.5 Hz)' },
  outside: { vi: 'ngoài dải', en: 'outside the band' },
};

/** Number style per language: Vietnamese "1.234,5", English "1,234.5". */
const LOCALES: Readonly<Record<Lang, string>> = { vi: 'vi-VN', en: 'en-GB' };

const numberFormats = new Map<string, Intl.NumberFormat>();
function numberFormat(digits: number): Intl.NumberFormat {
  const key = `${lang()}:${digits}`;
  let format = numberFormats.get(key);
  if (!format) {
    format = new Intl.NumberFormat(LOCALES[lang()], { minimumFractionDigits: digits, maximumFractionDigits: digits });
    numberFormats.set(key, format);
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
  const name = POLLUTANT_NAMES[parameter];
  return name ? pick(name.label) : parameter;
}

export function fieldLabel(name: string): { readonly vi: string; readonly en: string } {
  const spec = FIELDS[name];
  return spec ? { vi: spec.vi, en: spec.en } : { vi: name, en: name };
}

export function fieldUnit(name: string): string {
  const spec = FIELDS[name];
  if (!spec) return '';
  return spec.kind === 'fraction-percent' ? '%' : unitText(spec.unit);
}

function unitText(unit: string | Translation | undefined): string {
  if (unit === undefined) return '';
  return typeof unit === 'string' ? unit : pick(unit);
}

/** A value with its unit in the current language, e.g. "42,5 µg/m³", "73 %", "1,2 kW", "có". */
export function formatFieldValue(name: string, value: FieldValue): string {
  const spec = FIELDS[name];
  if (typeof value === 'boolean') return value ? M.yes() : M.no();
  if (typeof value === 'string') {
    if (name === 'vnAqiDominant') return pollutantName(value);
    if (name === 'frequencyBand') {
      const band = FREQUENCY_BANDS[value];
      return band ? pick(band) : value;
    }
    return value;
  }
  if (!Number.isFinite(value)) return '—';
  if (!spec) return formatNumber(value, Number.isInteger(value) ? 0 : 2);
  switch (spec.kind) {
    case 'integer':
      return withUnit(formatNumber(Math.round(value), 0), unitText(spec.unit));
    case 'number':
      return withUnit(formatNumber(value, spec.digits ?? 1), unitText(spec.unit));
    case 'fraction-percent':
      return `${formatNumber(value * 100, spec.digits ?? 0)} %`;
    case 'power':
      return formatPower(value, unitText(spec.unit) || 'W');
    case 'text':
    case 'bool':
      return String(value);
    default: {
      const unreachable: never = spec.kind;
      return String(unreachable);
    }
  }
}

function withUnit(text: string, unit: string): string {
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

/** The one-line summary the panel leads with, per domain, in the current language. */
export function headline(domain: Domain, values: Readonly<Record<string, FieldValue>>, derived: Readonly<Record<string, FieldValue>>): Headline {
  switch (domain) {
    case 'environment': {
      const aqi = typeof derived.vnAqi === 'number' ? derived.vnAqi : undefined;
      if (aqi === undefined) return { title: 'VN_AQI —', detail: M.noDust() };
      const band = vnAqiBand(aqi);
      const dominant = typeof derived.vnAqiDominant === 'string' ? M.dominant(pollutantName(derived.vnAqiDominant)) : '';
      return {
        title: `VN_AQI ${formatNumber(aqi, 0)}`,
        // The band keeps its official Vietnamese name beside the English one.
        detail: `${lang() === 'en' ? `${band.labelEn} (${band.labelVi})` : `${band.labelVi} (${band.labelEn})`}${dominant}`,
        note: `${pick({ vi: band.adviceVi, en: band.adviceEn })} ${M.indicative()}`,
      };
    }
    case 'traffic': {
      const los = typeof derived.los === 'string' && derived.los in LOS_COLORS ? derived.los : undefined;
      const speed = typeof values.averageVehicleSpeed === 'number' ? formatFieldValue('averageVehicleSpeed', values.averageVehicleSpeed) : '—';
      return { title: `LOS ${los ?? '—'}`, detail: M.speed(speed) };
    }
    case 'energy': {
      const load = typeof derived.loadFactor === 'number' ? formatFieldValue('loadFactor', derived.loadFactor) : '—';
      const band = typeof derived.frequencyBand === 'string' ? formatFieldValue('frequencyBand', derived.frequencyBand) : '—';
      return { title: M.load(load), detail: `${M.frequency(band)}${derived.outOfBand === true ? M.outOfBand() : ''}` };
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

/** "12 s", "3 phút", "1,5 giờ" (English: "12 s", "3 min", "1.5 h"). */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return M.minutes(String(m));
  return M.hours(formatNumber(m / 60, 1));
}

/** "12 s trước", "3 phút trước" (English: "12 s ago"). */
export function formatAge(ms: number): string {
  return M.ago(formatDuration(ms));
}

const compactFormats: Readonly<Record<Lang, Intl.NumberFormat>> = {
  vi: new Intl.NumberFormat(LOCALES.vi, { notation: 'compact', maximumFractionDigits: 1 }),
  en: new Intl.NumberFormat(LOCALES.en, { notation: 'compact', maximumFractionDigits: 1 }),
};

/**
 * Chart axis ticks: as many decimals as the tick increment needs (so 20,2 / 20,4 never both read
 * "20"), compact notation from 10 000 up.
 */
export function formatAxisValue(value: number, increment: number): string {
  if (Math.abs(value) >= 10_000 && increment >= 1000) return compactFormats[lang()].format(value);
  const digits = increment > 0 && Number.isFinite(increment) ? Math.min(4, Math.max(0, -Math.floor(Math.log10(increment) + 1e-9))) : 0;
  return formatNumber(value, digits);
}
