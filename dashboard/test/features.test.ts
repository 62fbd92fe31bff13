import { LOS_COLORS, VN_AQI_BANDS, readingState, usEpaBand } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import { NO_READING_COLOR, SEVERITY_PALETTE, SPREAD_RADIUS_DEG, displayColor, drawnLocations, featureProperties, rankOf } from '../src/live/features.js';
import { type DeviceEntry } from '../src/live/store.js';

function entry(id: string, overrides: Partial<DeviceEntry> = {}): DeviceEntry {
  return { id, name: id, province: '01', domain: 'environment', kind: 'station', location: [105.8, 21.0], status: 'online', reading: null, ...overrides };
}

const pm25Reading = (pm25: number, vnAqi: number) => ({
  ts: 0,
  seq: 1,
  values: { pm25 },
  derived: { vnAqi },
  state: readingState('environment', { vnAqi }),
});

describe('severity palette', () => {
  it('holds every colour a device can be drawn in, least to most severe', () => {
    for (const band of VN_AQI_BANDS) expect(SEVERITY_PALETTE).toContain(band.color);
    for (const color of Object.values(LOS_COLORS)) expect(SEVERITY_PALETTE).toContain(color);
    expect(SEVERITY_PALETTE).toContain(readingState('energy', { outOfBand: true }).color);
    expect(new Set(SEVERITY_PALETTE).size).toBe(SEVERITY_PALETTE.length);
    // A cluster takes the max rank: a hazardous station outranks a jammed road, which outranks a good one.
    expect(rankOf(VN_AQI_BANDS[5]?.color ?? '')).toBeGreaterThan(rankOf(LOS_COLORS.F));
    expect(rankOf(LOS_COLORS.F)).toBeGreaterThan(rankOf(LOS_COLORS.A));
    expect(rankOf(NO_READING_COLOR)).toBe(0);
    expect(rankOf('#123456')).toBe(0);
  });
});

describe('displayColor', () => {
  it('colours stations by VN_AQI by default and by US EPA AQI on that scale', () => {
    // PM2.5 35.9 µg/m³: VN_AQI 72 (moderate) but US EPA 102 (unhealthy for sensitive groups).
    const station = entry('env-a', { reading: pm25Reading(35.9, 72) });
    expect(displayColor(station, 'vn')).toBe(VN_AQI_BANDS[1]?.color);
    expect(displayColor(station, 'epa')).toBe(usEpaBand(102).color);
    expect(displayColor(station, 'epa')).not.toBe(displayColor(station, 'vn'));
    // The heatmap weight, in steps of 10.
    expect(featureProperties(station, { scale: 'epa', domains: new Set() }, 0).aqi).toBe(100);
    expect(featureProperties(station, { scale: 'vn', domains: new Set() }, 2)).toMatchObject({ aqi: 70, alert: 2 });
  });

  it('leaves other domains on their own colours whatever the scale', () => {
    const road = entry('tr-a', { domain: 'traffic', reading: { ts: 0, seq: 1, values: {}, derived: { los: 'F' }, state: { level: 'los-F', color: LOS_COLORS.F } } });
    expect(displayColor(road, 'epa')).toBe(LOS_COLORS.F);
    expect(displayColor(entry('x'), 'epa')).toBe(NO_READING_COLOR);
  });
});

describe('drawnLocations', () => {
  it('keeps a lone device where it is and spreads co-located ones on a small ring', () => {
    const lanes = [entry('lane-2', { location: [106.7, 10.8] }), entry('lane-1', { location: [106.7, 10.8] }), entry('lane-3', { location: [106.7, 10.8] })];
    const drawn = drawnLocations([entry('alone'), ...lanes]);
    expect(drawn.get('alone')).toEqual([105.8, 21.0]);
    const points = lanes.map((l): [number, number] => drawn.get(l.id) ?? [0, 0]);
    expect(new Set(points.map((p) => p.join(','))).size).toBe(3);
    for (const [lng, lat] of points) {
      const dLat = lat - 10.8;
      const dLng = (lng - 106.7) * Math.cos((10.8 * Math.PI) / 180);
      expect(Math.hypot(dLat, dLng)).toBeCloseTo(SPREAD_RADIUS_DEG, 8);
    }
    // Deterministic: the same devices land in the same places in any order.
    expect(drawnLocations([...lanes].reverse()).get('lane-1')).toEqual(drawn.get('lane-1'));
  });
});
