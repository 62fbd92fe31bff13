import { DEVICE_ID_PATTERN, DOMAINS, isInsideProvince, PROVINCE_CODES, provinceByCode } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import { DEVICE_KINDS, placeDevices, URBAN_CENTRES, urbanCentre } from '../src/index.js';

const all = { provinces: PROVINCE_CODES, domains: DOMAINS, devicesPerProvince: 4, seed: 42 };

function distanceKm([lng1, lat1]: readonly [number, number], [lng2, lat2]: readonly [number, number]): number {
  const rad = Math.PI / 180;
  const x = (lng2 - lng1) * rad * Math.cos(((lat1 + lat2) / 2) * rad);
  return Math.hypot(x, (lat2 - lat1) * rad) * 6371;
}

describe('placeDevices', () => {
  const devices = placeDevices(all);

  it('puts every device of every province inside its province polygon', () => {
    expect(devices).toHaveLength(34 * 3 * 4);
    const outside = devices.filter((d) => !isInsideProvince(d.province, d.location));
    expect(outside).toEqual([]);
  });

  it('clusters devices around the urban centre', () => {
    const distances = devices.map((d) => distanceKm(d.location, urbanCentre(d.province))).sort((a, b) => a - b);
    const median = distances[Math.floor(distances.length / 2)] ?? Infinity;
    expect(median).toBeLessThan(20);
    // Hồ Chí Minh's devices stand in the city, not around the contract's label point in former Bình Dương.
    const hcm = devices.filter((d) => d.province === '79' && d.kind !== 'highway' && d.kind !== 'feeder-22kv');
    for (const d of hcm) expect(distanceKm(d.location, [106.7009, 10.7769])).toBeLessThan(40);
  });

  it('is deterministic for a seed, differs between seeds, and keeps devices in place when more are added', () => {
    expect(placeDevices(all)).toEqual(devices);
    const other = placeDevices({ ...all, seed: 43 });
    expect(other.map((d) => d.location)).not.toEqual(devices.map((d) => d.location));
    const more = placeDevices({ ...all, provinces: ['01'], devicesPerProvince: 8 });
    const fewer = placeDevices({ ...all, provinces: ['01'], devicesPerProvince: 2 });
    for (const device of fewer) expect(more.find((d) => d.id === device.id)).toEqual(device);
  });

  it('gives contract-valid unique ids, known kinds, Vietnamese names and energy ratings', () => {
    expect(new Set(devices.map((d) => d.id)).size).toBe(devices.length);
    for (const d of devices) {
      expect(d.id).toMatch(DEVICE_ID_PATTERN);
      expect(d.id).toBe(`sim-${d.province}-${d.domain}-${d.id.slice(-3)}`);
      expect(DEVICE_KINDS[d.domain] as readonly string[]).toContain(d.kind);
      expect(d.name).toContain(provinceByCode(d.province)?.name);
      if (d.domain === 'energy') {
        expect(d.profile?.nominalPhaseVoltageV).toBe(d.kind === 'feeder-22kv' ? 12_702 : 230);
        expect(d.profile?.ratedPowerVA).toBeGreaterThan(0);
      } else {
        expect(d.profile).toBeUndefined();
      }
    }
    expect(devices.find((d) => d.id === 'sim-01-environment-001')?.name).toBe('Trạm quan trắc Hà Nội 1');
    // Four devices per domain cover every kind.
    for (const domain of DOMAINS) {
      expect(new Set(devices.filter((d) => d.domain === domain && d.province === '01').map((d) => d.kind))).toEqual(new Set(DEVICE_KINDS[domain]));
    }
  });

  it('has an urban centre inside each of the 34 provinces', () => {
    expect(Object.keys(URBAN_CENTRES).sort()).toEqual([...PROVINCE_CODES].sort());
    for (const [code, centre] of Object.entries(URBAN_CENTRES)) expect(isInsideProvince(code, centre), code).toBe(true);
  });
});
