import { afterEach, describe, expect, it } from 'vitest';
import { describeReading, formatAge, formatAxisValue, formatDateTime, formatDuration, formatFieldValue, formatPower, formatTime, headline } from '../src/format.js';
import { setLang } from '../src/i18n.js';

afterEach(() => setLang('vi'));

describe('formatFieldValue', () => {
  it('formats concentrations, percentages and power with Vietnamese number style and units', () => {
    expect(formatFieldValue('pm25', 42.51)).toBe('42,5 µg/m³');
    expect(formatFieldValue('occupancy', 0.734)).toBe('73 %');
    expect(formatFieldValue('loadFactor', 0.9)).toBe('90 %');
    expect(formatFieldValue('averageVehicleSpeed', 37.25)).toBe('37,3 km/h');
    expect(formatFieldValue('flowVehPerHour', 1234.4)).toBe('1.234 xe/h');
    expect(formatFieldValue('frequency', 50.013)).toBe('50,01 Hz');
    expect(formatPower(1_234_567, 'W')).toBe('1,23 MW');
    expect(formatPower(2_500, 'VAr')).toBe('2,5 kVAr');
    expect(formatPower(250, 'W')).toBe('250 W');
  });

  it('names the dominant pollutant and frequency band, and shows booleans in Vietnamese', () => {
    expect(formatFieldValue('vnAqiDominant', 'o3_1h')).toBe('O₃ (1 giờ)');
    expect(formatFieldValue('vnAqiDominant', 'pm25')).toBe('PM2.5');
    expect(formatFieldValue('frequencyBand', 'normal')).toBe('bình thường (±0,2 Hz)');
    expect(formatFieldValue('congested', true)).toBe('có');
  });

  it('keeps unknown fields readable', () => {
    expect(formatFieldValue('somethingNew', 3)).toBe('3');
    expect(formatFieldValue('somethingNew', 'text')).toBe('text');
  });
});

describe('headline', () => {
  it('shows VN_AQI with its band, dominant pollutant and the method, labelled indicative', () => {
    const h = headline('environment', { pm25: 20 }, { vnAqi: 61, vnAqiDominant: 'no2' });
    expect(h.title).toBe('VN_AQI 61');
    expect(h.detail).toContain('Trung bình');
    expect(h.detail).toContain('NO₂');
    expect(h.note).toContain('VN_AQI (QĐ 1459/QĐ-TCMT, 2019)');
  });

  it('shows the LOS letter and the load factor', () => {
    expect(headline('traffic', { averageVehicleSpeed: 42 }, { los: 'C' }).title).toBe('LOS C');
    expect(headline('energy', {}, { loadFactor: 0.72, frequencyBand: 'normal' }).title).toBe('Tải 72 %');
  });
});

describe('describeReading', () => {
  it('lists derived values first in catalogue order and highlights the dominant pollutant', () => {
    const rows = describeReading({ pm10: 30, pm25: 20, no2: 120, seq: 7 }, { vnAqi: 61, vnAqiDominant: 'no2' });
    expect(rows.map((r) => r.name)).toEqual(['vnAqi', 'vnAqiDominant', 'pm25', 'pm10', 'no2']);
    expect(rows.filter((r) => r.highlight).map((r) => r.name)).toEqual(['no2']);
  });
});

describe('times', () => {
  it('are shown in Asia/Ho_Chi_Minh (UTC+7) whatever the machine zone', () => {
    expect(formatTime(Date.UTC(2026, 0, 1, 0, 0, 0))).toBe('07:00:00');
    expect(formatDateTime(Date.UTC(2025, 6, 1, 17, 30, 5))).toBe('02/07 00:30:05');
  });
});

describe('formatAxisValue', () => {
  it('uses as many decimals as the tick increment needs', () => {
    expect([20, 20.2, 20.4].map((v) => formatAxisValue(v, 0.2))).toEqual(['20,0', '20,2', '20,4']);
    expect(formatAxisValue(150, 50)).toBe('150');
    expect(formatAxisValue(0.25, 0.05)).toBe('0,25');
    expect(formatAxisValue(250_000, 50_000)).toMatch(/^250\sN$/); // ICU puts a no-break space before N (nghìn)
  });
});

describe('in English', () => {
  it('formats numbers, units, booleans and bands in English', () => {
    setLang('en');
    expect(formatFieldValue('pm25', 42.51)).toBe('42.5 µg/m³');
    expect(formatFieldValue('flowVehPerHour', 1234.4)).toBe('1,234 veh/h');
    expect(formatFieldValue('intensityByVehicleType_motorcycle', 12)).toBe('12 veh');
    expect(formatFieldValue('congested', false)).toBe('no');
    expect(formatFieldValue('outOfBand', true)).toBe('yes');
    expect(formatFieldValue('frequencyBand', 'unstable')).toBe('unstable (±0.5 Hz)');
    expect(formatFieldValue('vnAqiDominant', 'o3_8h')).toBe('O₃ (8 h)');
    expect(formatPower(1_234_567, 'W')).toBe('1.23 MW');
    expect(formatAxisValue(20.2, 0.2)).toBe('20.2');
  });

  it('writes headlines without Vietnamese, keeping the official band name beside the English one', () => {
    setLang('en');
    const env = headline('environment', { pm25: 20 }, { vnAqi: 61, vnAqiDominant: 'no2' });
    expect(env.title).toBe('VN_AQI 61');
    expect(env.detail).toBe('Moderate (Trung bình) · dominant NO₂');
    expect(env.note).toBe('Sensitive groups should limit their time outdoors. Indicative index after VN_AQI (QĐ 1459/QĐ-TCMT, 2019), not the official hourly AQI.');
    expect(headline('environment', {}, {}).detail).toBe('not enough dust data (PM2.5/PM10)');
    expect(headline('traffic', { averageVehicleSpeed: 42 }, { los: 'C' }).detail).toBe('average speed 42.0 km/h');
    const energy = headline('energy', {}, { loadFactor: 0.72, frequencyBand: 'outside', outOfBand: true });
    expect(energy).toEqual({ title: 'Load 72 %', detail: 'frequency outside the band · OUT OF BAND' });
  });

  it('writes durations and ages in English, and Vietnamese again after switching back', () => {
    setLang('en');
    expect(formatDuration(12_000)).toBe('12 s');
    expect(formatAge(180_000)).toBe('3 min ago');
    expect(formatAge(90 * 60_000)).toBe('1.5 h ago');
    setLang('vi');
    expect(formatAge(180_000)).toBe('3 phút trước');
    expect(formatAge(90 * 60_000)).toBe('1,5 giờ trước');
    expect(formatFieldValue('congested', false)).toBe('không');
  });
});
