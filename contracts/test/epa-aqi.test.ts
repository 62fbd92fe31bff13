import { describe, expect, it } from 'vitest';
import {
  US_EPA_AQI_BANDS,
  US_EPA_AQI_BREAKPOINTS,
  US_EPA_AQI_METHOD,
  VN_AQI_BANDS,
  VN_AQI_METHOD,
  ugM3ToPpb,
  usEpaAqiIndicative,
  usEpaBand,
  usEpaConcentration,
  usEpaSubIndex,
  vnAqiSubIndex,
  type UsEpaBreakpointTable,
} from '../src/index.js';

/** US EPA AQI (2024 revision, TAD EPA-454/B-24-002), as quoted in shared/docs/domain.md. */
describe('US EPA AQI (2024): a second, labelled scale', () => {
  it('is labelled, and is not VN_AQI', () => {
    expect(US_EPA_AQI_METHOD).toBe('US EPA AQI (2024)');
    expect(US_EPA_AQI_METHOD).not.toBe(VN_AQI_METHOD);
    // The same PM2.5 gives different numbers on the two scales.
    expect(usEpaSubIndex('pm25', 35.9)).toBe(102);
    expect(Math.round(vnAqiSubIndex('pm25', 35.9) ?? NaN)).toBe(72);
    expect(usEpaAqiIndicative({ pm25: 35.9 })?.method).toBe(US_EPA_AQI_METHOD);
  });

  it('PM2.5 with the 2024 table: 35.9 → 102, 9.0 → 50, 9.1 → 51', () => {
    expect(usEpaSubIndex('pm25', 35.9)).toBe(102);
    expect(usEpaSubIndex('pm25', 9.0)).toBe(50);
    expect(usEpaSubIndex('pm25', 9.1)).toBe(51);
    expect(usEpaSubIndex('pm25', 0)).toBe(0);
  });

  it('truncates to EPA precision before the lookup: PM2.5 12.09 → 12.0', () => {
    expect(usEpaConcentration('pm25', 12.09)).toEqual({ value: 12.0, unit: 'µg/m³' });
    // 12.09 untruncated would give 56.57 → 57; truncated to 12.0 it gives 56.40 → 56.
    expect(usEpaSubIndex('pm25', 12.09)).toBe(56);
    expect(usEpaSubIndex('pm25', 12.09)).toBe(usEpaSubIndex('pm25', 12.0));
    // Between 9.0 and 9.1 (the table's gap) the value truncates into the lower row.
    expect(usEpaSubIndex('pm25', 9.05)).toBe(50);
  });

  it('PM10 is truncated to an integer: 155 → 101, 154.9 → 100', () => {
    expect(usEpaSubIndex('pm10', 155)).toBe(101);
    expect(usEpaSubIndex('pm10', 154.9)).toBe(100);
    expect(usEpaConcentration('pm10', 154.9)).toEqual({ value: 154, unit: 'µg/m³' });
  });

  it('converts gases from µg/m³ at 25 °C and 1 atm: NO2 101.62 µg/m³ = 54 ppb → 51', () => {
    expect(ugM3ToPpb('no2', 46.01)).toBeCloseTo(24.45, 12);
    expect(ugM3ToPpb('no2', 101.62)).toBeCloseTo(54.0015, 4);
    expect(usEpaConcentration('no2', 101.62)).toEqual({ value: 54, unit: 'ppb' });
    expect(usEpaSubIndex('no2', 101.62)).toBe(51);
    // 101.61 µg/m³ is 53.996 ppb, truncated to 53: still Good.
    expect(usEpaSubIndex('no2', 101.61)).toBe(50);
    // 200 µg/m³ = 106.28 ppb → 106 → 101.95 → 102.
    expect(usEpaSubIndex('no2', 200)).toBe(102);
  });

  it('CO in µg/m³ becomes ppm (ppb / 1000), truncated to 0.1', () => {
    // 10 000 µg/m³ = 8.729 ppm → 8.7 → 93.
    expect(usEpaConcentration('co', 10_000)).toEqual({ value: 8.7, unit: 'ppm' });
    expect(usEpaSubIndex('co', 10_000)).toBe(93);
  });

  it('SO2 in µg/m³ becomes ppb (molecular weight 64.07)', () => {
    // 100 µg/m³ = 38.16 ppb → 38 → 53.51 → 54.
    expect(usEpaConcentration('so2', 100)).toEqual({ value: 38, unit: 'ppb' });
    expect(usEpaSubIndex('so2', 100)).toBe(54);
  });

  it('ozone: 8-hour table below 0.125 ppm, the larger with the 1-hour table above, 1-hour only past 0.200', () => {
    // 100 µg/m³ = 0.050 ppm: 8-hour table only.
    expect(usEpaConcentration('o3', 100)).toEqual({ value: 0.05, unit: 'ppm' });
    expect(usEpaSubIndex('o3', 100)).toBe(46);
    // 250 µg/m³ = 0.127 ppm: 8-hour 223 beats 1-hour 104.
    expect(usEpaSubIndex('o3', 250)).toBe(223);
    // 393 µg/m³ = 0.200 ppm, the top of the 8-hour table.
    expect(usEpaSubIndex('o3', 393)).toBe(300);
    // 600 µg/m³ = 0.305 ppm: 1-hour table only.
    expect(usEpaSubIndex('o3', 600)).toBe(251);
    // 1000 µg/m³ = 0.509 ppm: Hazardous on the 1-hour table.
    expect(usEpaSubIndex('o3', 1000)).toBe(405);
  });

  it('caps at 500 above the top breakpoint', () => {
    expect(usEpaSubIndex('pm25', 325.4)).toBe(500);
    expect(usEpaSubIndex('pm25', 325.5)).toBe(500);
    expect(usEpaSubIndex('pm25', 1000)).toBe(500);
    expect(usEpaSubIndex('pm10', 700)).toBe(500);
    expect(usEpaSubIndex('o3', 1300)).toBe(500);
    expect(usEpaSubIndex('so2', 2700)).toBe(500);
    expect(usEpaAqiIndicative({ pm25: 900, no2: 5000 })?.aqi).toBe(500);
  });

  it('rejects negative and non-finite concentrations', () => {
    expect(usEpaSubIndex('pm25', -1)).toBeUndefined();
    expect(usEpaSubIndex('no2', Number.NaN)).toBeUndefined();
    expect(usEpaSubIndex('co', Number.POSITIVE_INFINITY)).toBeUndefined();
  });

  it('undefined when no pollutant is given', () => {
    expect(usEpaAqiIndicative({})).toBeUndefined();
    expect(usEpaAqiIndicative({ pm25: Number.NaN })).toBeUndefined();
  });

  it('takes the largest sub-index and names the dominant pollutant', () => {
    const result = usEpaAqiIndicative({ pm25: 20, pm10: 155, no2: 100 });
    expect(result).toEqual({ method: US_EPA_AQI_METHOD, aqi: 101, dominant: 'pm10', subIndices: { pm25: 71, pm10: 101, no2: 50 } });
    // Unlike VN_AQI, a gas alone is enough.
    expect(usEpaAqiIndicative({ o3: 250, co: 10_000 })).toMatchObject({ aqi: 223, dominant: 'o3' });
  });

  it('breakpoint rows are contiguous at each table’s truncation step', () => {
    for (const [name, table] of Object.entries(US_EPA_AQI_BREAKPOINTS) as [string, UsEpaBreakpointTable][]) {
      const step = 10 ** -table.decimals;
      table.rows.forEach((row, i) => {
        const previous = table.rows[i - 1];
        if (!previous) return;
        expect(row[0], `${name} row ${i}`).toBeCloseTo(previous[1] + step, 9);
        expect(row[2], `${name} row ${i}`).toBe(previous[3] + 1);
      });
      expect(table.rows[table.rows.length - 1]?.[3], name).toBe(name === 'o3_8h' ? 300 : 500);
    }
  });

  it('bands: EPA categories, Vietnamese labels and official colours', () => {
    expect(usEpaBand(0)).toMatchObject({ key: 'good', labelVi: 'Tốt', labelEn: 'Good', color: 'rgb(0,228,0)' });
    expect(usEpaBand(50)).toMatchObject({ key: 'good' });
    expect(usEpaBand(51)).toMatchObject({ key: 'moderate', labelVi: 'Trung bình', labelEn: 'Moderate', color: 'rgb(255,255,0)' });
    expect(usEpaBand(100.4)).toMatchObject({ key: 'moderate' });
    expect(usEpaBand(101)).toMatchObject({ key: 'unhealthy-sensitive', labelVi: 'Kém cho nhóm nhạy cảm', labelEn: 'Unhealthy for Sensitive Groups', color: 'rgb(255,126,0)' });
    expect(usEpaBand(150)).toMatchObject({ key: 'unhealthy-sensitive' });
    expect(usEpaBand(151)).toMatchObject({ key: 'unhealthy', labelVi: 'Có hại', labelEn: 'Unhealthy', color: 'rgb(255,0,0)' });
    expect(usEpaBand(201)).toMatchObject({ key: 'very-unhealthy', labelVi: 'Rất có hại', labelEn: 'Very Unhealthy', color: 'rgb(143,63,151)' });
    expect(usEpaBand(300)).toMatchObject({ key: 'very-unhealthy' });
    expect(usEpaBand(301)).toMatchObject({ key: 'hazardous', labelVi: 'Nguy hại', labelEn: 'Hazardous', color: 'rgb(126,0,35)' });
    expect(usEpaBand(500)).toMatchObject({ key: 'hazardous' });
    expect(usEpaBand(650)).toMatchObject({ key: 'hazardous' });
    expect(US_EPA_AQI_BANDS.map((b) => [b.min, b.max])).toEqual([[0, 50], [51, 100], [101, 150], [151, 200], [201, 300], [301, 500]]);
    expect(usEpaBand(usEpaSubIndex('pm25', 35.9) ?? NaN).key).toBe('unhealthy-sensitive');
  });

  it('leaves VN_AQI bands as they were', () => {
    expect(VN_AQI_BANDS.map((b) => b.key)).toEqual(['good', 'moderate', 'poor', 'bad', 'very-bad', 'hazardous']);
  });
});
