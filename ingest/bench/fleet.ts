/**
 * The ingest bench's simulated fleet: which device a number stands for (domain, province, kind,
 * profile) and the readings it sends. Shared by the orchestrator (provisioning, the raw-ceiling
 * lines) and the generator processes (MQTT payloads), so the lines of the raw ceiling have
 * exactly the shape of the lines ingest writes for the readings the generators send.
 */
import { deviceTopic, PROVINCES, type DeviceProfile, type Domain, type LngLat, type ReadingByDomain } from '@citypulse/contracts';
import { deviceIdOf } from '../../broker/bench/protocol.js';

/** Devices of the gateway run are numbered from here (their own series, never a device of the single run). */
export const GATEWAY_DEVICE_BASE = 50_000;

const DOMAIN_CYCLE: readonly Domain[] = ['traffic', 'environment', 'energy'];
const KIND: Readonly<Record<Domain, string>> = { traffic: 'arterial', environment: 'roadside', energy: 'feeder' };
const ENERGY_PROFILE: DeviceProfile = { ratedPowerVA: 630_000, nominalPhaseVoltageV: 230 };

export interface FleetDevice {
  readonly n: number;
  readonly id: string;
  readonly domain: Domain;
  readonly province: string;
  readonly kind: string;
  readonly location: LngLat;
  readonly profile?: DeviceProfile;
  readonly topic: string;
}

/** Device number n: domains in turn, provinces in turn (all 34), so every series is distinct. */
export function fleetDevice(n: number): FleetDevice {
  const domain = DOMAIN_CYCLE[n % DOMAIN_CYCLE.length] as Domain;
  const province = PROVINCES[Math.floor(n / DOMAIN_CYCLE.length) % PROVINCES.length] as (typeof PROVINCES)[number];
  const id = deviceIdOf(n);
  return {
    n,
    id,
    domain,
    province: province.code,
    kind: KIND[domain],
    location: province.label,
    ...(domain === 'energy' ? { profile: ENERGY_PROFILE } : {}),
    topic: deviceTopic({ province: province.code, domain, deviceId: id }, 'telemetry'),
  };
}

/** A deterministic value in [0, 1) from a device, a sequence number and a channel. */
function jitter(n: number, seq: number, channel: number): number {
  let h = Math.imul(n + 1, 0x9e3779b1) ^ Math.imul(seq + 1, 0x85ebca6b) ^ Math.imul(channel + 1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  h ^= h >>> 13;
  return (h >>> 0) / 4_294_967_296;
}

const around = (base: number, spread: number, decimals: number, n: number, seq: number, channel: number) => {
  const scale = 10 ** decimals;
  return Math.round((base + (jitter(n, seq, channel) - 0.5) * 2 * spread) * scale) / scale;
};

/** A plausible reading of device n (the values the simulators' models produce, roughly), valid for its domain's schema. */
export function fleetReading(device: FleetDevice, seq: number, ts: number): ReadingByDomain[Domain] {
  const { n } = device;
  const v = (base: number, spread: number, decimals: number, channel: number) => around(base, spread, decimals, n, seq, channel);
  switch (device.domain) {
    case 'traffic': {
      const motorcycle = Math.round(v(260, 120, 0, 1));
      const car = Math.round(v(60, 30, 0, 2));
      const bus = Math.round(v(4, 3, 0, 3));
      const lorry = Math.round(v(6, 4, 0, 4));
      return {
        ts,
        seq,
        intensity: motorcycle + car + bus + lorry,
        periodSeconds: 60,
        occupancy: v(0.3, 0.25, 3, 5),
        averageVehicleSpeed: v(32, 20, 1, 6),
        laneId: n % 4,
        laneDirection: n % 2 === 0 ? 'forward' : 'backward',
        intensityByVehicleType: { motorcycle, car, bus, lorry },
      } satisfies ReadingByDomain['traffic'];
    }
    case 'environment':
      return {
        ts,
        seq,
        pm25: v(42, 30, 2, 1),
        pm10: v(70, 40, 2, 2),
        no2: v(38, 20, 2, 3),
        o3: v(60, 30, 2, 4),
        co: v(900, 400, 1, 5),
        so2: v(8, 5, 2, 6),
        temperature: v(29, 4, 2, 7),
        relativeHumidity: v(0.75, 0.15, 3, 8),
        LAeq: v(64, 8, 1, 9),
      } satisfies ReadingByDomain['environment'];
    case 'energy':
      return {
        ts,
        seq,
        frequency: v(50, 0.08, 3, 1),
        totalActivePower: v(380_000, 120_000, 0, 2),
        totalReactivePower: v(90_000, 30_000, 0, 3),
        powerFactor: v(0.95, 0.03, 3, 4),
        phaseVoltage: { L1: v(230, 6, 1, 5), L2: v(230, 6, 1, 6), L3: v(230, 6, 1, 7) },
        current: { L1: v(560, 150, 1, 8), L2: v(560, 150, 1, 9), L3: v(560, 150, 1, 10) },
        thdVoltage: v(0.03, 0.01, 4, 11),
        totalActiveEnergyImport: 1_250_000 + seq,
      } satisfies ReadingByDomain['energy'];
  }
}
