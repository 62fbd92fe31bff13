import { DEVICE_ID_PATTERN, DOMAINS, isInsideProvince, PROVINCE_CODES, provinceByCode } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import type { DeviceGroup } from '../src/events.js';
import {
  DEVICE_KINDS,
  parseSegmentId,
  placeDevices,
  RoadNetwork,
  SECONDARY_TOWNS,
  simulatedDeviceId,
  URBAN_CENTRES,
  urbanCentre,
  urbanHubs,
  type SimulatedDevice,
} from '../src/index.js';

const SEED = 42;
const groupsOf = (provinces: readonly string[], count: number): DeviceGroup[] => provinces.flatMap((province) => DOMAINS.map((domain) => ({ province, domain, count })));
const all = { seed: SEED, groups: groupsOf(PROVINCE_CODES, 4) };

function distanceKm([lng1, lat1]: readonly [number, number], [lng2, lat2]: readonly [number, number]): number {
  const rad = Math.PI / 180;
  const x = (lng2 - lng1) * rad * Math.cos(((lat1 + lat2) / 2) * rad);
  return Math.hypot(x, (lat2 - lat1) * rad) * 6371;
}

describe('placeDevices', () => {
  const devices = placeDevices(all);

  it('puts every device of every province inside its province polygon, groups in order', () => {
    expect(devices).toHaveLength(34 * 3 * 4);
    const outside = devices.filter((d) => !isInsideProvince(d.province, d.location));
    expect(outside).toEqual([]);
    expect(devices.map((d) => `${d.province}/${d.domain}`)).toEqual(all.groups.flatMap((g) => Array.from({ length: g.count }, () => `${g.province}/${g.domain}`)));
  });

  it('places 50,000 devices inside their polygons in well under 5 s, the same every time', () => {
    const groups: DeviceGroup[] = [
      { province: '01', domain: 'traffic', count: 20_000 },
      { province: '79', domain: 'environment', count: 10_000 },
      { province: '56', domain: 'energy', count: 10_000 }, // Khánh Hoà: a coast of islands and bays
      { province: '22', domain: 'traffic', count: 10_000 }, // Quảng Ninh: Hạ Long Bay
    ];
    const started = performance.now();
    const many = placeDevices({ seed: SEED, groups });
    const elapsedMs = performance.now() - started;
    expect(many).toHaveLength(50_000);
    expect(elapsedMs).toBeLessThan(5000);
    expect(many.filter((d) => !isInsideProvince(d.province, d.location))).toEqual([]);
    expect(new Set(many.map((d) => d.id)).size).toBe(50_000);
    expect(many.at(-1)?.id).toBe('sim-22-traffic-10000');
    expect(placeDevices({ seed: SEED, groups })).toEqual(many);
  });

  it('clusters devices around the urban hubs', () => {
    const distances = devices.map((d) => distanceKm(d.location, urbanCentre(d.province))).sort((a, b) => a - b);
    const median = distances[Math.floor(distances.length / 2)] ?? Infinity;
    expect(median).toBeLessThan(20);
    // Hồ Chí Minh's stations stand in the city or its former provincial capitals, not around the contract's label point.
    const hcm = placeDevices({ seed: SEED, groups: [{ province: '79', domain: 'environment', count: 60 }] });
    for (const d of hcm) expect(Math.min(...urbanHubs('79').map((hub) => distanceKm(d.location, hub)))).toBeLessThan(40);
    const nearCentre = hcm.filter((d) => distanceKm(d.location, urbanCentre('79')) < 30).length;
    expect(nearCentre / hcm.length).toBeGreaterThan(0.5);
    expect(nearCentre).toBeLessThan(hcm.length); // some stand in Thủ Dầu Một or Vũng Tàu
  });

  it('is deterministic for a seed, differs between seeds, and keeps devices in place when more are added', () => {
    expect(placeDevices(all)).toEqual(devices);
    const other = placeDevices({ ...all, seed: 43 });
    expect(other.map((d) => d.location)).not.toEqual(devices.map((d) => d.location));
    const more = placeDevices({ seed: SEED, groups: groupsOf(['01', '79'], 40) });
    const fewer = placeDevices({ seed: SEED, groups: groupsOf(['79'], 7) });
    for (const device of fewer) expect(more.find((d) => d.id === device.id)).toEqual(device);
  });

  it('gives contract-valid unique ids of 3 to 5 digits, known kinds, Vietnamese names and energy ratings', () => {
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
      expect(d.segment !== undefined).toBe(d.domain === 'traffic');
    }
    expect(devices.find((d) => d.id === 'sim-01-environment-001')?.name).toBe('Trạm quan trắc Hà Nội 1');
    expect(devices.find((d) => d.id === 'sim-01-traffic-001')?.name).toMatch(/^Trạm đếm xe .+ Hà Nội 1, đoạn 1 – làn 1$/);
    // Four stations and meters per province cover every kind.
    for (const domain of ['environment', 'energy'] as const) {
      expect(new Set(devices.filter((d) => d.domain === domain && d.province === '01').map((d) => d.kind))).toEqual(new Set(DEVICE_KINDS[domain]));
    }
    expect(simulatedDeviceId('01', 'traffic', 7)).toBe('sim-01-traffic-007');
    expect(simulatedDeviceId('01', 'traffic', 99_999)).toBe('sim-01-traffic-99999');
    expect(() => simulatedDeviceId('01', 'traffic', 100_000)).toThrow(RangeError);
    expect(() => placeDevices({ seed: SEED, groups: [{ province: '01', domain: 'traffic', count: 100_000 }] })).toThrow(RangeError);
    expect(() => placeDevices({ seed: SEED, groups: [{ province: '99', domain: 'traffic', count: 1 }] })).toThrow(RangeError);
  });

  it('has an urban centre and secondary towns inside each province', () => {
    expect(Object.keys(URBAN_CENTRES).sort()).toEqual([...PROVINCE_CODES].sort());
    for (const [code, centre] of Object.entries(URBAN_CENTRES)) expect(isInsideProvince(code, centre), code).toBe(true);
    for (const [code, towns] of Object.entries(SECONDARY_TOWNS)) {
      for (const town of towns) expect(isInsideProvince(code, town), `${code} ${town.join(',')}`).toBe(true);
    }
  });
});

describe('traffic detectors', () => {
  const detectors = placeDevices({ seed: SEED, groups: [{ province: '01', domain: 'traffic', count: 300 }, { province: '48', domain: 'traffic', count: 100 }] });
  const bySegment = new Map<string, SimulatedDevice[]>();
  for (const d of detectors) bySegment.set(d.segment?.id ?? '', [...(bySegment.get(d.segment?.id ?? '') ?? []), d]);

  it('sit one per lane: the lanes of a segment are consecutive devices, side by side a few metres apart', () => {
    for (const [id, lanes] of bySegment) {
      const first = lanes[0];
      if (!first?.segment) throw new Error(`no segment on ${id}`);
      expect(parseSegmentId(id)).toMatchObject({ province: first.province });
      const numbers = lanes.map((d) => Number(d.id.slice(-3)));
      expect(numbers).toEqual(numbers.map((_, i) => (numbers[0] ?? 0) + i));
      expect(lanes.map((d) => d.segment?.lane)).toEqual(lanes.map((_, i) => i + 1));
      expect(first.segment.lanes).toBeGreaterThanOrEqual(2);
      expect(first.segment.lanes).toBeLessThanOrEqual(4);
      for (const d of lanes) {
        expect(d.segment?.lanes).toBe(first.segment.lanes);
        expect(d.kind).toBe(first.kind);
        expect(d.name).toContain(`làn ${d.segment?.lane}`);
        if (d !== first) {
          expect(d.location).not.toEqual(first.location);
          expect(distanceKm(d.location, first.location)).toBeLessThan(0.02);
        }
      }
    }
  });

  it('fill main corridors from the centre outwards, covering each segment’s upstream neighbour early', () => {
    const first = placeDevices({ seed: SEED, groups: [{ province: '01', domain: 'traffic', count: 8 }] });
    const ids = new Set(first.map((d) => d.segment?.id));
    expect(ids.has('01-c1-s1') && ids.has('01-c1-s2')).toBe(true);
    // Main corridors: arterials, national highways and inner streets all appear within the first hundreds.
    expect(new Set(detectors.filter((d) => d.province === '01').map((d) => d.kind))).toEqual(new Set(DEVICE_KINDS.traffic));
  });

  it('lie on corridors of 0.5–2 km segments inside the province, chained end to start', () => {
    for (const code of ['01', '48', '22', '56', '79']) {
      const network = new RoadNetwork(code, SEED);
      for (let c = 1; c <= 12; c++) {
        const segments = network.corridor(c);
        segments.forEach((segment, i) => {
          expect(segment.id).toBe(`${code}-c${c}-s${i + 1}`);
          expect(segment.lengthKm).toBeGreaterThanOrEqual(0.5);
          expect(segment.lengthKm).toBeLessThanOrEqual(2);
          expect(isInsideProvince(code, segment.to), segment.id).toBe(true);
          expect(distanceKm(segment.from, segment.to)).toBeCloseTo(segment.lengthKm, 1);
          if (i > 0) expect(segment.from).toEqual(segments[i - 1]?.to);
        });
      }
      // The centre's first corridors start within a kilometre of it.
      expect(distanceKm(network.corridor(1)[0]?.from ?? [0, 0], urbanCentre(code))).toBeLessThan(1);
    }
  });
});
