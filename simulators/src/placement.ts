import { DEVICE_ID_PATTERN, isInsideProvince, provinceByCode, type DeviceProfile, type Domain, type LngLat } from '@citypulse/contracts';
import { clamp, type SimulatedDevice } from './models/common.js';
import { ENERGY_RATINGS_VA, NOMINAL_PHASE_VOLTAGE_V, type EnergyKind } from './models/energy.js';
import { type EnvironmentKind } from './models/environment.js';
import { type TrafficKind } from './models/traffic.js';
import { deriveSeed, Rng } from './random.js';

/**
 * Where simulated devices stand: clustered around each province's urban centre (its
 * administrative centre city, where sensors are actually deployed), with Gaussian offsets
 * rejected until they fall inside the province polygon.
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
  '82': [106.3601, 10.3600], // Mỹ Tho (centre of the merged Đồng Tháp)
  '86': [105.9723, 10.2537], // Vĩnh Long
  '91': [105.0910, 10.0125], // Rạch Giá (centre of the merged An Giang)
  '92': [105.7469, 10.0452], // Cần Thơ
  '96': [105.1524, 9.1769], // Cà Mau
};

export const DEVICE_KINDS = {
  traffic: ['urban', 'arterial', 'highway'],
  environment: ['urban-station', 'roadside'],
  energy: ['feeder-22kv', 'substation-0.4kv'],
} as const satisfies Record<Domain, readonly string[]>;

/**
 * Kinds cycle in a fixed pattern by device number, so even a few devices per province cover
 * every kind, in proportions like a real deployment (more street counters than highway ones).
 */
const KIND_CYCLE: { readonly traffic: readonly TrafficKind[]; readonly environment: readonly EnvironmentKind[]; readonly energy: readonly EnergyKind[] } = {
  traffic: ['urban', 'arterial', 'highway', 'urban', 'arterial'],
  environment: ['urban-station', 'roadside'],
  energy: ['substation-0.4kv', 'feeder-22kv', 'substation-0.4kv'],
};

/** Spread of devices around the centre (1 σ), km, for a province of 4 million people. */
const SPREAD_KM: Readonly<Record<string, number>> = {
  urban: 4,
  arterial: 8,
  highway: 18,
  'urban-station': 5,
  roadside: 6,
  'substation-0.4kv': 6,
  'feeder-22kv': 14,
};

export const PLACEMENT_DEFAULTS = {
  /** Draws before falling back to the centre itself. */
  maxAttempts: 64,
  /** Coordinates are rounded to 1e-6° (about 0.1 m) so they survive a JSON round trip unchanged. */
  coordinateDigits: 6,
} as const;

export interface PlacementOptions {
  readonly provinces: readonly string[];
  readonly domains: readonly Domain[];
  /** Devices per province and domain. */
  readonly devicesPerProvince: number;
  readonly seed: number;
}

/** `sim-{province}-{domain}-{nnn}`, e.g. sim-01-traffic-001. */
export function simulatedDeviceId(province: string, domain: Domain, index: number): string {
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

/** Every simulated device, in a stable order; placement depends only on the seed and the device id. */
export function placeDevices(options: PlacementOptions): SimulatedDevice[] {
  const devices: SimulatedDevice[] = [];
  for (const province of options.provinces) {
    for (const domain of options.domains) {
      for (let index = 1; index <= options.devicesPerProvince; index++) {
        devices.push(planDevice(province, domain, index, options.seed));
      }
    }
  }
  return devices;
}

function planDevice(provinceCode: string, domain: Domain, index: number, seed: number): SimulatedDevice {
  const province = provinceByCode(provinceCode);
  if (!province) throw new RangeError(`unknown province code "${provinceCode}"`);
  const id = simulatedDeviceId(provinceCode, domain, index);
  const kind = kindFor(domain, index);
  const rng = new Rng(deriveSeed(seed, 'placement', id));
  // Bigger cities sprawl further; small provincial towns are compact.
  const spreadKm = (SPREAD_KM[kind] ?? 6) * clamp(Math.sqrt(province.population / 4_000_000), 0.5, 1.6);
  const location = placeNear(provinceCode, urbanCentre(provinceCode), spreadKm, rng);
  const profile = domain === 'energy' ? energyProfile(kind as EnergyKind, rng) : undefined;
  return {
    id,
    province: provinceCode,
    domain,
    location,
    kind,
    name: `${KIND_NAMES[kind] ?? 'Thiết bị'} ${province.name} ${index}`,
    ...(profile ? { profile } : {}),
  };
}

function kindFor(domain: Domain, index: number): string {
  const cycle: readonly string[] = KIND_CYCLE[domain];
  return cycle[(index - 1) % cycle.length] ?? DEVICE_KINDS[domain][0];
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

function energyProfile(kind: EnergyKind, rng: Rng): DeviceProfile {
  return { ratedPowerVA: rng.pick(ENERGY_RATINGS_VA[kind]), nominalPhaseVoltageV: NOMINAL_PHASE_VOLTAGE_V[kind] };
}

const KM_PER_DEGREE_LAT = 110.574;
const KM_PER_DEGREE_LNG_AT_EQUATOR = 111.32;

/** A Gaussian draw around `centre`, retried until inside the polygon; the centre itself as the last resort. */
function placeNear(provinceCode: string, centre: LngLat, spreadKm: number, rng: Rng): readonly [number, number] {
  const [lng0, lat0] = centre;
  const kmPerDegreeLng = KM_PER_DEGREE_LNG_AT_EQUATOR * Math.cos((lat0 * Math.PI) / 180);
  const digits = PLACEMENT_DEFAULTS.coordinateDigits;
  for (let attempt = 0; attempt < PLACEMENT_DEFAULTS.maxAttempts; attempt++) {
    const point = [roundTo(lng0 + (spreadKm * rng.normal()) / kmPerDegreeLng, digits), roundTo(lat0 + (spreadKm * rng.normal()) / KM_PER_DEGREE_LAT, digits)] as const;
    if (isInsideProvince(provinceCode, point)) return point;
  }
  return [roundTo(lng0, digits), roundTo(lat0, digits)];
}

function roundTo(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
