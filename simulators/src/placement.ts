import { DEVICE_ID_PATTERN, isInsideProvince, provinceByCode, provinceFeature, type DeviceProfile, type Domain, type LngLat } from '@citypulse/contracts';
import type { DeviceGroup } from './events.js';
import { clamp, type SimulatedDevice } from './models/common.js';
import { ENERGY_RATINGS_VA, NOMINAL_PHASE_VOLTAGE_V, type EnergyKind } from './models/energy.js';
import { type EnvironmentKind } from './models/environment.js';
import { type TrafficKind } from './models/traffic.js';
import { deriveSeed, Rng } from './random.js';

/**
 * Where simulated devices stand. Air-quality stations and energy meters cluster around each
 * province's urban hubs (the administrative centre city, where sensors are actually deployed, and
 * the former provincial capitals of merged provinces), with Gaussian offsets rejected until they
 * fall inside the province polygon. Traffic detectors sit on a seeded road network: corridors
 * radiating from the hubs, cut into segments of 0.5–2 km with 2–4 lanes, one detector per lane.
 * Everything depends only on the seed and the device id: adding devices never moves others.
 */

/**
 * [lng, lat] of the administrative centre city of each of the 34 units (since 1 July 2025).
 * The contract's label point is only "somewhere inside the polygon" (for Hồ Chí Minh it lies in
 * former Bình Dương), so devices cluster here instead; tests check each point is inside its unit.
 */
export const URBAN_CENTRES: Readonly<Record<string, LngLat>> = {
  '01': [105.8521, 21.0285], // Hà Nội, Hoàn Kiếm
  '04': [106.2576, 22.6657], // Cao Bằng
  '08': [105.2148, 21.8236], // Tuyên Quang
  '11': [103.0169, 21.3856], // Điện Biên Phủ
  '12': [103.4582, 22.3964], // Lai Châu
  '14': [103.9104, 21.3271], // Sơn La
  '15': [104.8719, 21.7229], // Yên Bái (centre of the merged Lào Cai)
  '19': [105.8442, 21.5942], // Thái Nguyên
  '20': [106.7615, 21.8537], // Lạng Sơn
  '22': [107.0843, 20.9599], // Hạ Long
  '24': [106.1946, 21.2731], // Bắc Giang (centre of the merged Bắc Ninh)
  '25': [105.4019, 21.3227], // Việt Trì
  '31': [106.6881, 20.8449], // Hải Phòng
  '33': [106.0511, 20.6464], // Hưng Yên
  '37': [105.9745, 20.2506], // Ninh Bình
  '38': [105.7768, 19.8067], // Thanh Hoá
  '40': [105.6813, 18.6796], // Vinh
  '42': [105.9057, 18.3428], // Hà Tĩnh
  '44': [106.6223, 17.4683], // Đồng Hới (centre of the merged Quảng Trị)
  '46': [107.5909, 16.4637], // Huế
  '48': [108.2022, 16.0544], // Đà Nẵng
  '51': [108.8044, 15.1214], // Quảng Ngãi
  '52': [109.2196, 13.7765], // Quy Nhơn (centre of the merged Gia Lai)
  '56': [109.1943, 12.2388], // Nha Trang
  '66': [108.0378, 12.6667], // Buôn Ma Thuột
  '68': [108.4583, 11.9404], // Đà Lạt
  '75': [106.8243, 10.9574], // Biên Hoà
  '79': [106.7009, 10.7769], // Hồ Chí Minh, District 1 (now Sài Gòn ward)
  '80': [106.4137, 10.5359], // Tân An (centre of the merged Tây Ninh)
  '82': [106.3601, 10.36], // Mỹ Tho (centre of the merged Đồng Tháp)
  '86': [105.9723, 10.2537], // Vĩnh Long
  '91': [105.091, 10.0125], // Rạch Giá (centre of the merged An Giang)
  '92': [105.7469, 10.0452], // Cần Thơ
  '96': [105.1524, 9.1769], // Cà Mau
};

/**
 * The former provincial capitals of the units merged on 1 July 2025 (Resolution 202/2025/QH15):
 * still towns with their own traffic, air and load, so some devices cluster there too.
 */
export const SECONDARY_TOWNS: Readonly<Record<string, readonly LngLat[]>> = {
  '08': [[104.9836, 22.8233]], // Hà Giang
  '15': [[103.975, 22.4856]], // Lào Cai
  '19': [[105.8348, 22.147]], // Bắc Kạn
  '24': [[106.0763, 21.1861]], // Bắc Ninh
  '25': [[105.5967, 21.3089], [105.3383, 20.8133]], // Vĩnh Yên, Hoà Bình
  '31': [[106.3146, 20.9373]], // Hải Dương
  '33': [[106.34, 20.4463]], // Thái Bình
  '37': [[106.1621, 20.42], [105.912, 20.5411]], // Nam Định, Phủ Lý
  '44': [[107.1, 16.816]], // Đông Hà
  '48': [[108.474, 15.5736]], // Tam Kỳ
  '51': [[108.0, 14.3545]], // Kon Tum
  '52': [[108.002, 13.9833]], // Pleiku
  '56': [[108.989, 11.5649]], // Phan Rang–Tháp Chàm
  '66': [[109.3, 13.0882]], // Tuy Hoà
  '68': [[108.1, 10.9289], [107.69, 12.0]], // Phan Thiết, Gia Nghĩa
  '75': [[106.899, 11.535]], // Đồng Xoài
  '79': [[106.652, 10.9804], [107.0843, 10.346]], // Thủ Dầu Một, Vũng Tàu
  '80': [[106.098, 11.31]], // Tây Ninh
  '82': [[105.633, 10.46]], // Cao Lãnh
  '86': [[106.375, 10.2434], [106.342, 9.9347]], // Bến Tre, Trà Vinh
  '91': [[105.435, 10.386]], // Long Xuyên
  '92': [[105.972, 9.603], [105.47, 9.784]], // Sóc Trăng, Vị Thanh
  '96': [[105.724, 9.294]], // Bạc Liêu
};

export const DEVICE_KINDS = {
  traffic: ['urban', 'arterial', 'highway'],
  environment: ['urban-station', 'roadside'],
  energy: ['feeder-22kv', 'substation-0.4kv'],
} as const satisfies Record<Domain, readonly string[]>;

/**
 * Kinds cycle in a fixed pattern by device number, so even a few devices per province cover
 * every kind, in proportions like a real deployment. Traffic detectors take the class of their road.
 */
const KIND_CYCLE: { readonly environment: readonly EnvironmentKind[]; readonly energy: readonly EnergyKind[] } = {
  environment: ['urban-station', 'roadside'],
  energy: ['substation-0.4kv', 'feeder-22kv', 'substation-0.4kv'],
};

/** Spread of stations and meters around a hub (1 σ), km, for a province of 4 million people. */
const SPREAD_KM: Readonly<Record<string, number>> = {
  'urban-station': 5,
  roadside: 6,
  'substation-0.4kv': 6,
  'feeder-22kv': 14,
};

/** Corridor geometry by road class: segment length, lanes of the cross-section, how far it runs. */
const ROAD_GEOMETRY: Readonly<Record<TrafficKind, { readonly segmentKm: readonly [number, number]; readonly lanes: readonly [number, number]; readonly maxKm: number }>> = {
  urban: { segmentKm: [0.5, 0.9], lanes: [2, 3], maxKm: 6 },
  arterial: { segmentKm: [0.8, 1.5], lanes: [3, 4], maxKm: 18 },
  // A national highway (quốc lộ) leaving the city, not an expressway: motorcycles ride on it.
  highway: { segmentKm: [1.2, 2], lanes: [2, 4], maxKm: 45 },
};
/** Classes of the corridors leaving a hub, in corridor order. */
const CORRIDOR_CLASSES: readonly TrafficKind[] = ['arterial', 'highway', 'urban'];

export const PLACEMENT_DEFAULTS = {
  /** Draws before falling back to the hub itself. */
  maxAttempts: 64,
  /** Coordinates are rounded to 1e-6° (about 0.1 m) so they survive a JSON round trip unchanged. */
  coordinateDigits: 6,
  /** Devices per province and domain: ids carry 3 to 5 digits. */
  maxDevicesPerGroup: 99_999,
  /** Corridors leaving the administrative centre, for a metropolis; provinces get fewer. */
  centreCorridors: 10,
  /** Corridors leaving each secondary town. */
  townCorridors: 3,
  /** Main corridors are filled in rounds of this many consecutive segments, so a detector's upstream neighbour is usually covered too. */
  fillBlockSegments: 2,
  /** Lateral distance between the detectors of neighbouring lanes, m. */
  laneWidthM: 3.5,
  /** Share of stations and meters around the administrative centre when a province has secondary towns. */
  centreShare: 0.65,
} as const;

export interface PlacementOptions {
  readonly seed: number;
  /** Devices per province and domain, in the order they are placed. */
  readonly groups: readonly DeviceGroup[];
}

/** `sim-{province}-{domain}-{nnn}` with 3 to 5 digits, e.g. sim-01-traffic-001. */
export function simulatedDeviceId(province: string, domain: Domain, index: number): string {
  if (!Number.isInteger(index) || index < 1 || index > PLACEMENT_DEFAULTS.maxDevicesPerGroup) {
    throw new RangeError(`device number ${index} is outside 1–${PLACEMENT_DEFAULTS.maxDevicesPerGroup}`);
  }
  const id = `sim-${province}-${domain}-${String(index).padStart(3, '0')}`;
  if (!DEVICE_ID_PATTERN.test(id)) throw new RangeError(`device id "${id}" does not match the contract's DEVICE_ID_PATTERN`);
  return id;
}

/** The urban centre of a province, or its label point when the table has none. */
export function urbanCentre(provinceCode: string): LngLat {
  const province = provinceByCode(provinceCode);
  if (!province) throw new RangeError(`unknown province code "${provinceCode}"`);
  const centre = URBAN_CENTRES[provinceCode];
  return centre && isInsideProvince(provinceCode, centre) ? centre : province.label;
}

/** The administrative centre first, then the secondary towns that lie inside the polygon. */
export function urbanHubs(provinceCode: string): readonly LngLat[] {
  const towns = (SECONDARY_TOWNS[provinceCode] ?? []).filter((town) => isInsideProvince(provinceCode, town));
  return [urbanCentre(provinceCode), ...towns];
}

/** Every simulated device, groups in order and devices by number within a group. */
export function placeDevices(options: PlacementOptions): SimulatedDevice[] {
  const devices: SimulatedDevice[] = [];
  const networks = new Map<string, RoadNetwork>();
  for (const group of options.groups) {
    if (!Number.isInteger(group.count) || group.count < 0 || group.count > PLACEMENT_DEFAULTS.maxDevicesPerGroup) {
      throw new RangeError(`group ${group.province}/${group.domain}: count ${group.count} is outside 0–${PLACEMENT_DEFAULTS.maxDevicesPerGroup}`);
    }
    const province = provinceByCode(group.province);
    if (!province) throw new RangeError(`unknown province code "${group.province}"`);
    if (group.domain === 'traffic') {
      let network = networks.get(group.province);
      if (!network) networks.set(group.province, (network = new RoadNetwork(group.province, options.seed)));
      const lanes = network.lanes();
      for (let index = 1; index <= group.count; index++) {
        const slot = lanes.next();
        if (slot.done) throw new Error(`road network of ${group.province} ran out of segments`); // the network is unbounded
        devices.push(planDetector(province.name, index, slot.value));
      }
    } else {
      for (let index = 1; index <= group.count; index++) devices.push(planStation(group.province, province.name, province.population, group.domain, index, options.seed));
    }
  }
  return devices;
}

/** Names as an operator in a Vietnamese operations centre would write them. */
const KIND_NAMES: Readonly<Record<string, string>> = {
  urban: 'Trạm đếm xe nội đô',
  arterial: 'Trạm đếm xe trục chính',
  highway: 'Trạm đếm xe quốc lộ',
  'urban-station': 'Trạm quan trắc',
  roadside: 'Trạm quan trắc ven đường',
  'substation-0.4kv': 'Trạm biến áp 22/0,4 kV',
  'feeder-22kv': 'Xuất tuyến 22 kV',
};

function planDetector(provinceName: string, index: number, slot: LaneSlot): SimulatedDevice {
  const { segment, lane } = slot;
  return {
    id: simulatedDeviceId(segment.province, 'traffic', index),
    province: segment.province,
    domain: 'traffic',
    location: laneLocation(segment, lane),
    kind: segment.kind,
    name: `${KIND_NAMES[segment.kind] ?? 'Trạm đếm xe'} ${provinceName} ${segment.corridor}, đoạn ${segment.index} – làn ${lane}`,
    segment: { id: segment.id, lane, lanes: segment.lanes },
  };
}

function planStation(provinceCode: string, provinceName: string, population: number, domain: Exclude<Domain, 'traffic'>, index: number, seed: number): SimulatedDevice {
  const id = simulatedDeviceId(provinceCode, domain, index);
  const cycle: readonly string[] = KIND_CYCLE[domain];
  const kind = cycle[(index - 1) % cycle.length] ?? DEVICE_KINDS[domain][0];
  const rng = new Rng(deriveSeed(seed, 'placement', id));
  const hubs = urbanHubs(provinceCode);
  // Most stations stand in the administrative centre; the rest share the secondary towns.
  const u = rng.uniform();
  const town = hubs.length > 1 && u >= PLACEMENT_DEFAULTS.centreShare ? 1 + Math.floor(((u - PLACEMENT_DEFAULTS.centreShare) / (1 - PLACEMENT_DEFAULTS.centreShare)) * (hubs.length - 1)) : 0;
  const hub = hubs[Math.min(town, hubs.length - 1)] ?? hubs[0] ?? urbanCentre(provinceCode);
  // Bigger provinces sprawl further; small provincial towns are compact, secondary towns more so.
  const spreadKm = (SPREAD_KM[kind] ?? 6) * clamp(Math.sqrt(population / 4_000_000), 0.5, 1.6) * (town > 0 ? 0.6 : 1);
  const location = placeNear(provinceCode, hub, spreadKm, rng);
  const profile = domain === 'energy' ? energyProfile(kind as EnergyKind, rng) : undefined;
  return { id, province: provinceCode, domain, location, kind, name: `${KIND_NAMES[kind] ?? 'Thiết bị'} ${provinceName} ${index}`, ...(profile ? { profile } : {}) };
}

function energyProfile(kind: EnergyKind, rng: Rng): DeviceProfile {
  return { ratedPowerVA: rng.pick(ENERGY_RATINGS_VA[kind]), nominalPhaseVoltageV: NOMINAL_PHASE_VOLTAGE_V[kind] };
}

// ---------------------------------------------------------------------------------------------
// Road network

/** One road segment of a corridor; lanes of its cross-section share its midpoint. */
export interface RoadSegment {
  /** `{province}-c{corridor}-s{index}`, e.g. "01-c2-s3". */
  readonly id: string;
  readonly province: string;
  /** Corridor number within the province, from 1. */
  readonly corridor: number;
  /** Position along the corridor, 1 = nearest its hub; inbound traffic flows from index + 1 to index. */
  readonly index: number;
  readonly kind: TrafficKind;
  readonly lanes: number;
  readonly from: LngLat;
  readonly to: LngLat;
  readonly lengthKm: number;
}

interface LaneSlot {
  readonly segment: RoadSegment;
  readonly lane: number;
}

const SEGMENT_ID_PATTERN = /^(\d{2})-c(\d+)-s(\d+)$/;

export function segmentId(province: string, corridor: number, index: number): string {
  return `${province}-c${corridor}-s${index}`;
}

/** The province, corridor and position of a segment id made by {@link segmentId}; undefined for other ids. */
export function parseSegmentId(id: string): { readonly province: string; readonly corridor: number; readonly index: number } | undefined {
  const match = SEGMENT_ID_PATTERN.exec(id);
  if (!match?.[1] || !match[2] || !match[3]) return undefined;
  return { province: match[1], corridor: Number(match[2]), index: Number(match[3]) };
}

/**
 * A province's roads, grown from the seed. Main corridors radiate from the administrative centre
 * (arterials, national highways, inner streets) and from each secondary town; local corridors
 * start at Gaussian-spread points around the hubs and are added as more detectors ask for them,
 * so the network never runs out. Detectors fill lanes in a fixed order that does not depend on
 * how many are asked for: main corridors first, in rounds of a few segments outwards from the
 * hubs, then local corridors one by one.
 */
export class RoadNetwork {
  readonly province: string;
  readonly #seed: number;
  readonly #shape: ProvinceShape;
  readonly #hubs: readonly LngLat[];
  readonly #mainCorridors: number;
  readonly #spreadKm: number;

  constructor(province: string, seed: number) {
    const info = provinceByCode(province);
    if (!info) throw new RangeError(`unknown province code "${province}"`);
    this.province = province;
    this.#seed = seed;
    this.#shape = provinceShape(province);
    this.#hubs = urbanHubs(province);
    const scale = clamp(Math.sqrt(info.population / 8_000_000), 0.5, 1);
    const centre = Math.round(PLACEMENT_DEFAULTS.centreCorridors * scale);
    this.#mainCorridors = centre + (this.#hubs.length - 1) * PLACEMENT_DEFAULTS.townCorridors;
    this.#spreadKm = 8 * clamp(Math.sqrt(info.population / 4_000_000), 0.5, 1.6);
  }

  /** Segments of corridor `corridor` (from 1), from its hub outwards; empty when it starts outside the polygon. */
  corridor(corridor: number): RoadSegment[] {
    const rng = new Rng(deriveSeed(this.#seed, 'road', this.province, corridor));
    const main = corridor <= this.#mainCorridors;
    let kind: TrafficKind;
    let start: LngLat;
    let bearing: number;
    let maxKm: number;
    if (main) {
      const centreCorridors = this.#mainCorridors - (this.#hubs.length - 1) * PLACEMENT_DEFAULTS.townCorridors;
      const town = corridor <= centreCorridors ? 0 : 1 + Math.floor((corridor - centreCorridors - 1) / PLACEMENT_DEFAULTS.townCorridors);
      const k = town === 0 ? corridor - 1 : (corridor - centreCorridors - 1) % PLACEMENT_DEFAULTS.townCorridors;
      const count = town === 0 ? centreCorridors : PLACEMENT_DEFAULTS.townCorridors;
      kind = CORRIDOR_CLASSES[k % CORRIDOR_CLASSES.length] ?? 'arterial';
      // Evenly around the hub, with a seeded rotation per hub and some jitter per corridor.
      const rotation = new Rng(deriveSeed(this.#seed, 'road-hub', this.province, town)).uniform() * 2 * Math.PI;
      bearing = rotation + (2 * Math.PI * k) / count + 0.15 * rng.normal();
      start = this.#hubs[town] ?? urbanCentre(this.province);
      maxKm = ROAD_GEOMETRY[kind].maxKm * (town === 0 ? 1 : 0.5);
    } else {
      kind = rng.uniform() < 0.7 ? 'urban' : 'arterial';
      const u = rng.uniform();
      const hub = this.#hubs.length > 1 && u >= PLACEMENT_DEFAULTS.centreShare ? 1 + Math.floor(rng.uniform() * (this.#hubs.length - 1)) : 0;
      start = placeNear(this.province, this.#hubs[hub] ?? urbanCentre(this.province), this.#spreadKm * (hub > 0 ? 0.6 : 1), rng);
      bearing = rng.uniform() * 2 * Math.PI;
      maxKm = rng.between(2, 8);
    }
    const geometry = ROAD_GEOMETRY[kind];
    const lanes = Math.round(rng.between(geometry.lanes[0] - 0.49, geometry.lanes[1] + 0.49));
    const segments: RoadSegment[] = [];
    const kmPerDegreeLng = KM_PER_DEGREE_LNG_AT_EQUATOR * Math.cos((start[1] * Math.PI) / 180);
    const baseBearing = bearing;
    // The road starts a few hundred metres out, so the first segments of a hub's corridors are apart.
    let from: LngLat = offsetKm(start, 0.3, bearing, kmPerDegreeLng);
    if (!this.#shape.contains(from[0], from[1])) return segments;
    let travelledKm = 0;
    while (travelledKm < maxKm) {
      const lengthKm = rng.between(geometry.segmentKm[0], geometry.segmentKm[1]);
      // Roads wander but keep heading away from the hub; at the border or the coast they try to turn along it.
      bearing = baseBearing + 0.6 * (bearing - baseBearing) + 0.12 * rng.normal();
      let to: LngLat | undefined;
      for (const turn of [0, 0.5, -0.5]) {
        const candidate = offsetKm(from, lengthKm, bearing + turn, kmPerDegreeLng);
        const middle = offsetKm(from, lengthKm / 2, bearing + turn, kmPerDegreeLng);
        if (this.#shape.contains(candidate[0], candidate[1]) && this.#shape.contains(middle[0], middle[1])) {
          to = candidate;
          bearing += turn;
          break;
        }
      }
      if (!to) break;
      const index = segments.length + 1;
      segments.push({ id: segmentId(this.province, corridor, index), province: this.province, corridor, index, kind, lanes, from, to, lengthKm });
      from = to;
      travelledKm += lengthKm;
    }
    return segments;
  }

  /** Every lane of the network, in fill order: endless (local corridors keep coming). */
  *lanes(): Generator<LaneSlot, void> {
    for (const segment of this.segments()) {
      for (let lane = 1; lane <= segment.lanes; lane++) yield { segment, lane };
    }
  }

  /** Every segment, in fill order. */
  *segments(): Generator<RoadSegment, void> {
    const main = Array.from({ length: this.#mainCorridors }, (_, i) => this.corridor(i + 1));
    const block = PLACEMENT_DEFAULTS.fillBlockSegments;
    const longest = Math.max(0, ...main.map((c) => c.length));
    for (let round = 0; round * block < longest; round++) {
      for (const corridor of main) yield* corridor.slice(round * block, (round + 1) * block);
    }
    for (let corridor = this.#mainCorridors + 1; ; corridor++) yield* this.corridor(corridor);
  }
}

/** A lane's detector: the segment's midpoint, moved sideways by whole lane widths so lanes are not co-located. */
function laneLocation(segment: RoadSegment, lane: number): readonly [number, number] {
  const digits = PLACEMENT_DEFAULTS.coordinateDigits;
  const mid: LngLat = [(segment.from[0] + segment.to[0]) / 2, (segment.from[1] + segment.to[1]) / 2];
  const kmPerDegreeLng = KM_PER_DEGREE_LNG_AT_EQUATOR * Math.cos((mid[1] * Math.PI) / 180);
  const dx = (segment.to[0] - segment.from[0]) * kmPerDegreeLng;
  const dy = (segment.to[1] - segment.from[1]) * KM_PER_DEGREE_LAT;
  const bearing = Math.atan2(dx, dy) + Math.PI / 2; // perpendicular to the road
  const sideKm = ((lane - (segment.lanes + 1) / 2) * PLACEMENT_DEFAULTS.laneWidthM) / 1000;
  const shifted = offsetKm(mid, sideKm, bearing, kmPerDegreeLng);
  const point = provinceShape(segment.province).contains(shifted[0], shifted[1]) ? shifted : mid;
  return [roundTo(point[0], digits), roundTo(point[1], digits)];
}

// ---------------------------------------------------------------------------------------------
// Geometry

const KM_PER_DEGREE_LAT = 110.574;
const KM_PER_DEGREE_LNG_AT_EQUATOR = 111.32;

/** The point `km` away from `from` on `bearing` (radians clockwise from north), flat-earth (fine at city scale). */
function offsetKm(from: LngLat, km: number, bearing: number, kmPerDegreeLng: number): LngLat {
  return [from[0] + (km * Math.sin(bearing)) / kmPerDegreeLng, from[1] + (km * Math.cos(bearing)) / KM_PER_DEGREE_LAT];
}

/** A Gaussian draw around `centre`, retried until inside the polygon; the centre itself as the last resort. */
function placeNear(provinceCode: string, centre: LngLat, spreadKm: number, rng: Rng): readonly [number, number] {
  const [lng0, lat0] = centre;
  const kmPerDegreeLng = KM_PER_DEGREE_LNG_AT_EQUATOR * Math.cos((lat0 * Math.PI) / 180);
  const digits = PLACEMENT_DEFAULTS.coordinateDigits;
  const shape = provinceShape(provinceCode);
  for (let attempt = 0; attempt < PLACEMENT_DEFAULTS.maxAttempts; attempt++) {
    const lng = roundTo(lng0 + (spreadKm * rng.normal()) / kmPerDegreeLng, digits);
    const lat = roundTo(lat0 + (spreadKm * rng.normal()) / KM_PER_DEGREE_LAT, digits);
    if (shape.contains(lng, lat)) return [lng, lat];
  }
  return [roundTo(lng0, digits), roundTo(lat0, digits)];
}

function roundTo(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * A province polygon flattened into typed arrays with a bounding box per part: the same even-odd
 * test as the contract's isInsideProvince, several times faster, which matters when tens of
 * thousands of devices and segments are placed.
 */
class ProvinceShape {
  readonly #parts: readonly { readonly box: readonly [number, number, number, number]; readonly rings: readonly Float64Array[] }[];

  constructor(code: string) {
    const feature = provinceFeature(code);
    if (!feature) throw new RangeError(`unknown province code "${code}"`);
    const polygons = feature.geometry.type === 'Polygon' ? [feature.geometry.coordinates] : feature.geometry.coordinates;
    this.#parts = polygons.map((rings) => {
      const box: [number, number, number, number] = [Infinity, Infinity, -Infinity, -Infinity];
      const flat = rings.map((ring) => {
        const xy = new Float64Array(ring.length * 2);
        ring.forEach(([x, y], i) => {
          xy[2 * i] = x;
          xy[2 * i + 1] = y;
          box[0] = Math.min(box[0], x);
          box[1] = Math.min(box[1], y);
          box[2] = Math.max(box[2], x);
          box[3] = Math.max(box[3], y);
        });
        return xy;
      });
      return { box, rings: flat };
    });
  }

  contains(x: number, y: number): boolean {
    for (const { box, rings } of this.#parts) {
      if (x < box[0] || x > box[2] || y < box[1] || y > box[3]) continue;
      let inside = false;
      for (const ring of rings) if (ringContains(ring, x, y)) inside = !inside;
      if (inside) return true;
    }
    return false;
  }
}

function ringContains(ring: Float64Array, x: number, y: number): boolean {
  let inside = false;
  const n = ring.length / 2;
  for (let i = 0, j = n - 1; i < n; j = i++) {
    const ax = ring[2 * i] ?? 0;
    const ay = ring[2 * i + 1] ?? 0;
    const bx = ring[2 * j] ?? 0;
    const by = ring[2 * j + 1] ?? 0;
    if (ay > y !== by > y && x < ((bx - ax) * (y - ay)) / (by - ay) + ax) inside = !inside;
  }
  return inside;
}

const shapes = new Map<string, ProvinceShape>();

function provinceShape(code: string): ProvinceShape {
  let shape = shapes.get(code);
  if (!shape) shapes.set(code, (shape = new ProvinceShape(code)));
  return shape;
}
