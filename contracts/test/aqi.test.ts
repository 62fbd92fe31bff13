import { describe, expect, it } from 'vitest';
import { nowCast, vnAqiBand, vnAqiDaily, vnAqiHourly, vnAqiIndicative, vnAqiSubIndex } from '../src/index.js';

/** Worked examples of Decision 1459/QĐ-TCMT (2019), as quoted in shared/docs/domain.md. */
describe('VN_AQI (Decision 1459/QĐ-TCMT)', () => {
  it('hourly example: O3 136.1 → 43, PM2.5 20.3 → 41, NO2 118.7 → 59.35', () => {
    expect(Math.round(vnAqiSubIndex('o3_1h', 136.1) ?? NaN)).toBe(43);
    expect(Math.round(vnAqiSubIndex('pm25', 20.3) ?? NaN)).toBe(41);
    expect(vnAqiSubIndex('no2', 118.7)).toBeCloseTo(59.35, 10);
  });

  it('hourly example: AQI^h is set by NO2', () => {
    // Hourly PM2.5 of 20.3 µg/m³ every hour gives NowCast 20.3.
    const result = vnAqiHourly({ pm25Hours: Array(12).fill(20.3), o3: 136.1, no2: 118.7 });
    expect(result?.dominant).toBe('no2');
    expect(result?.subIndices.no2).toBeCloseTo(59.35, 10);
    // The decision prints 60 for the NO2 sub-index 59.35. Rounding to the nearest integer gives 59,
    // and the decision's own daily example rounds 65.4 down to 65, so we keep nearest-integer
    // rounding and record the printed 60 as the decision's rounding slip.
    expect(result?.aqi).toBe(59);
  });

  it('daily example: O3-8h 89.3 → 45, O3-1h 114.6 → 36, NO2 130.8 → 65, PM2.5 55.7 → 110, AQI^d = 110', () => {
    const result = vnAqiDaily({ o3_8hMax: 89.3, o3_1hMax: 114.6, no2_1hMax: 130.8, pm25: 55.7 });
    expect(Math.round(result?.subIndices.o3_8h ?? NaN)).toBe(45);
    expect(Math.round(result?.subIndices.o3_1h ?? NaN)).toBe(36);
    expect(Math.round(result?.subIndices.no2 ?? NaN)).toBe(65);
    expect(Math.round(result?.subIndices.pm25 ?? NaN)).toBe(110);
    expect(result?.aqi).toBe(110);
    expect(result?.dominant).toBe('pm25');
  });

  it('NowCast: a 12-hour series with w = 0.61 gives 20.3', () => {
    // The decision's worked example has w = 0.61 and NowCast 20.3; its hourly series is not
    // reproduced in domain.md, so this series is built to the same w (15.25 / 25.0) and result.
    const series = [20.02, 19.0, 20.5, 22.0, 25.0, 23.0, 20.0, 18.0, 16.5, 15.25, 16.0, 17.0];
    const result = nowCast(series);
    expect(result?.weight).toBeCloseTo(0.61, 10);
    expect(result?.value.toFixed(1)).toBe('20.3');
    expect(Math.round(vnAqiSubIndex('pm25', Number(result?.value.toFixed(1))) ?? NaN)).toBe(41);
  });

  it('NowCast: w floors at 1/2, missing hours weigh 0, and it needs 2 of the latest 3 hours', () => {
    expect(nowCast([100, 10, 10])?.weight).toBe(0.5);
    expect(nowCast([30, null, 10])?.value).toBeCloseTo((30 + 0.5 ** 2 * 10) / (1 + 0.5 ** 2), 10);
    expect(nowCast([30, null, null, 10, 10])).toBeUndefined();
    expect(nowCast([])).toBeUndefined();
  });

  it('needs PM: no PM10 or PM2.5 means no index', () => {
    expect(vnAqiIndicative({ no2: 100, o3: 50 })).toBeUndefined();
  });

  it('skips O3 8h above 400 µg/m³ and caps other parameters at 500', () => {
    expect(vnAqiSubIndex('o3_8h', 401)).toBeUndefined();
    expect(vnAqiSubIndex('pm25', 900)).toBe(500);
  });

  it('bands and official colours', () => {
    expect(vnAqiBand(50)).toMatchObject({ labelVi: 'Tốt', color: 'rgb(0,228,0)' });
    expect(vnAqiBand(51)).toMatchObject({ labelVi: 'Trung bình', color: 'rgb(255,255,0)' });
    expect(vnAqiBand(150)).toMatchObject({ labelVi: 'Kém', color: 'rgb(255,126,0)' });
    expect(vnAqiBand(151)).toMatchObject({ labelVi: 'Xấu', color: 'rgb(255,0,0)' });
    expect(vnAqiBand(300)).toMatchObject({ labelVi: 'Rất xấu', color: 'rgb(143,63,151)' });
    expect(vnAqiBand(420)).toMatchObject({ labelVi: 'Nguy hại', color: 'rgb(126,0,35)' });
  });
});
