import { type TrafficReading, type VehicleType } from '@citypulse/contracts';
import { WalkSet, deriveSeed, type Rng, type WalkSpec } from '../random.js';
import { isWeekend, localTime, type LocalTime } from '../time.js';
import {
  bump,
  clamp,
  elapsedSeconds,
  provinceClimate,
  round,
  smoothstep,
  stepRng,
  TraitCache,
  traitRng,
  type DeviceState,
  type ModelOptions,
  type ModelStep,
  type SimulatedDevice,
} from './common.js';

/**
 * One loop detector per device, counting one lane of one road segment. Demand follows the local
 * day (rush hours 07–09 and 17–19, inbound in the morning and outbound in the evening), the
 * speed–flow curve turns demand over the lane's capacity into speed and occupancy, and counts are
 * Poisson draws split by vehicle class (motorcycles dominate Vietnamese traffic). The world lowers
 * capacity where an incident or its queue is, and rain slows everyone a little.
 */
export const TRAFFIC_KINDS = ['urban', 'arterial', 'highway'] as const;
export type TrafficKind = (typeof TRAFFIC_KINDS)[number];
export type LaneDirection = 'forward' | 'backward';

export interface RoadClass {
  readonly freeFlowKmh: number;
  /** Mixed-traffic lane capacity in vehicles (not pcu): motorcycles ride two or three abreast. */
  readonly capacityVehPerHourLane: number;
  /** Daytime share of each class in the flow; sums to 1. */
  readonly shares: Readonly<Record<VehicleType, number>>;
}

export const ROAD_CLASSES: Readonly<Record<TrafficKind, RoadClass>> = {
  urban: {
    freeFlowKmh: 35,
    capacityVehPerHourLane: 3000,
    shares: { motorcycle: 0.84, car: 0.12, bus: 0.012, lorry: 0.006, van: 0.012, bicycle: 0.01 },
  },
  arterial: {
    freeFlowKmh: 50,
    capacityVehPerHourLane: 3600,
    shares: { motorcycle: 0.8, car: 0.14, bus: 0.015, lorry: 0.02, van: 0.02, bicycle: 0.005 },
  },
  // A national highway (quốc lộ) near the city, not an expressway: motorcycles are allowed on it.
  highway: {
    freeFlowKmh: 65,
    capacityVehPerHourLane: 2600,
    shares: { motorcycle: 0.78, car: 0.13, bus: 0.02, lorry: 0.05, van: 0.02, bicycle: 0 },
  },
};

const VEHICLE_ORDER: readonly VehicleType[] = ['car', 'bus', 'lorry', 'van', 'bicycle', 'motorcycle'];
const VEHICLE_LENGTH_M: Readonly<Record<VehicleType, number>> = { motorcycle: 1.9, bicycle: 1.7, car: 4.5, van: 5.2, bus: 10.5, lorry: 8.5 };
/**
 * Length over which a vehicle occupies the loop (its length plus ~1.8 m of detector). Two-wheelers
 * share the lane side by side, so each occupies it for a fraction of its own length.
 */
const OCCUPANCY_LENGTH_M: Readonly<Record<VehicleType, number>> = { motorcycle: 1.2, bicycle: 1, car: 6.3, van: 7, bus: 12.3, lorry: 10.3 };
/** Below this share of free-flow speed the lane reports `congested`. */
const CONGESTED_SPEED_RATIO = 0.45;
/** Occupancy of a loop under a standing queue: vehicles stopped over it most of the time. */
const QUEUE_OCCUPANCY = 0.85;

/**
 * Rain: speed drops by up to 15 % and capacity by up to 10 % (wet roads, poor visibility, riders
 * in ponchos), saturating with the rate (8 mm/h is moderate rain).
 */
const RAIN = { maxSpeedLoss: 0.15, maxCapacityLoss: 0.1, scaleMmPerHour: 8 } as const;
/** A lane beside an incident is slower even when it flows (rubbernecking, merging past the wreck). */
const INCIDENT_SPEED_LOSS = 0.3;

const TRAFFIC_WALKS = new WalkSet({
  demand: { sigma: 0.12, tauS: 20 * 60 }, // slow swings: events, weather, an incident upstream
  speed: { sigma: 0.05, tauS: 5 * 60 },
} as const satisfies Record<string, WalkSpec>);

export function isTrafficKind(kind: string): kind is TrafficKind {
  return (TRAFFIC_KINDS as readonly string[]).includes(kind);
}

/**
 * Demand as a fraction of lane capacity over the local day, before the province and road factors:
 * about 0.05 at night, about 1 at the weekday rush peaks, lower at weekends.
 */
export function dailyTrafficShape(time: LocalTime): number {
  const h = time.hour;
  const day = smoothstep(5, 7, h) * (1 - smoothstep(21, 23.5, h));
  const morning = bump(h, 7.6, 0.75);
  const evening = bump(h, 17.8, 0.95);
  const noon = bump(h, 11.8, 0.8);
  return isWeekend(time) ? 0.05 + 0.4 * day + 0.12 * morning + 0.25 * evening + 0.06 * noon : 0.05 + 0.45 * day + 0.55 * morning + 0.6 * evening + 0.08 * noon;
}

/** Typical demand over capacity of a lane in the province at `ts`: Hà Nội and Hồ Chí Minh are busiest. */
export function trafficDemand(ts: number, provinceCode: string): number {
  return dailyTrafficShape(localTime(ts)) * provinceClimate(provinceCode).cityScale;
}

/**
 * Tidal flow: into the centre in the morning, out of it in the evening. Multiplies the demand of
 * inbound ('forward') and outbound ('backward') lanes.
 */
export function directionFactor(direction: LaneDirection, time: LocalTime): number {
  const tide = 0.2 * (bump(time.hour, 7.6, 1) - bump(time.hour, 17.8, 1.2));
  return direction === 'forward' ? 1 + tide : 1 - tide;
}

/** Direction of a lane of a segment: lanes 1 … ⌈lanes/2⌉ run inbound ('forward'), the others outbound. */
export function laneDirection(lane: number, lanes: number): LaneDirection {
  return lane <= Math.ceil(lanes / 2) ? 'forward' : 'backward';
}

/**
 * Greenshields speed–flow relation. Below capacity the speed falls from free flow to half of it as
 * flow approaches capacity; demand above capacity breaks the flow down onto the congested branch,
 * where flow and speed fall together.
 */
export function speedFlow(demandRatio: number): { flowRatio: number; speedRatio: number } {
  const x = Math.max(0, demandRatio);
  if (x <= 1) return { flowRatio: x, speedRatio: (1 + Math.sqrt(1 - x)) / 2 };
  const breakdown = Math.min(0.8, x - 1);
  return { flowRatio: 1 - breakdown, speedRatio: (1 - Math.sqrt(breakdown)) / 2 };
}

/** Precomputed class shares per road class and quarter hour, normalised; lorries enter the city at night, when daytime truck bans lift. */
const SHARES_PER_QUARTER: Readonly<Record<TrafficKind, readonly Readonly<Record<VehicleType, number>>[]>> = {
  urban: sharesByQuarter('urban'),
  arterial: sharesByQuarter('arterial'),
  highway: sharesByQuarter('highway'),
};

function sharesByQuarter(kind: TrafficKind): Record<VehicleType, number>[] {
  return Array.from({ length: 96 }, (_, q) => {
    const base = ROAD_CLASSES[kind].shares;
    const night = bump((q + 0.5) / 4, 2, 2.5);
    const raw = { ...base, lorry: base.lorry * (1 + 0.6 * night), bicycle: base.bicycle * (1 - 0.7 * night) };
    const total = Object.values(raw).reduce((a, b) => a + b, 0);
    for (const type of VEHICLE_ORDER) raw[type] /= total;
    return raw;
  });
}

/** Class shares at this hour (quarter-hour resolution). */
export function vehicleShares(kind: TrafficKind, time: LocalTime): Readonly<Record<VehicleType, number>> {
  const table = SHARES_PER_QUARTER[kind];
  return table[Math.min(95, Math.floor(time.hour * 4))] ?? ROAD_CLASSES[kind].shares;
}

interface TrafficTraits {
  readonly kind: TrafficKind;
  readonly road: RoadClass;
  /** This lane's demand relative to the province's typical lane. */
  readonly demandFactor: number;
  readonly laneId: number;
  readonly laneDirection: LaneDirection;
  readonly segmentId: string | undefined;
}

const traitCache = new TraitCache<TrafficTraits>((seed, device) => {
  const kind = isTrafficKind(device.kind) ? device.kind : 'urban';
  const rng = traitRng(seed, device);
  const kindFactor = kind === 'highway' ? 0.85 : kind === 'arterial' ? 1 : 0.95;
  const segment = device.segment;
  // Lanes of one segment carry related traffic: a shared segment factor, then the lane's own.
  const segmentFactor = segment ? Math.exp(0.1 * normalFrom(deriveSeed(seed, 'segment', segment.id))) : 1;
  const demandFactor = kindFactor * segmentFactor * Math.exp(0.08 * rng.normal());
  const laneId = segment?.lane ?? 1 + Math.floor(rng.uniform() * 3);
  const direction: LaneDirection = segment ? laneDirection(segment.lane, segment.lanes) : rng.uniform() < 0.5 ? 'forward' : 'backward';
  return { kind, road: ROAD_CLASSES[kind], demandFactor, laneId, laneDirection: direction, segmentId: segment?.id };
});

/** A standard normal from a 32-bit seed (one Box–Muller draw). */
function normalFrom(seed: number): number {
  const u = ((seed >>> 16) + 1) / 65_537;
  const v = (seed & 0xffff) / 65_536;
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** The next reading of a traffic detector at `ts`. */
export function trafficReading(device: SimulatedDevice, state: DeviceState, ts: number, options: ModelOptions): ModelStep<TrafficReading> {
  const traits = traitCache.get(options.seed, device);
  const road = traits.road;
  const rng = stepRng(options.seed, device, state.seq);
  const walks = TRAFFIC_WALKS.advance(state.walks, elapsedSeconds(state, ts), rng);
  const time = localTime(ts);
  const periodSeconds = clamp(Math.round(options.periodSeconds), 1, 3600);
  const world = options.world;

  // Share of the lane's capacity left by incidents and their queues, and by rain.
  const incidentCapacity = world && traits.segmentId !== undefined ? world.segmentCapacity(traits.segmentId, traits.laneDirection, ts) : 1;
  const rain = world ? 1 - Math.exp(-world.rainMmPerHour(device.province, ts) / RAIN.scaleMmPerHour) : 0;
  const capacity = Math.max(0.02, incidentCapacity * (1 - RAIN.maxCapacityLoss * rain));

  const demand = dailyTrafficShape(time) * provinceClimate(device.province).cityScale * traits.demandFactor * directionFactor(traits.laneDirection, time) * Math.exp(walks.demand);
  const { flowRatio, speedRatio } = speedFlow(demand / capacity);
  const intensity = rng.poisson((flowRatio * capacity * road.capacityVehPerHourLane * periodSeconds) / 3600);
  const counts = splitByVehicleType(intensity, vehicleShares(traits.kind, time), rng);
  const slowdown = (1 - RAIN.maxSpeedLoss * rain) * (1 - INCIDENT_SPEED_LOSS * (1 - incidentCapacity));
  const speedKmh = clamp(road.freeFlowKmh * speedRatio * slowdown * Math.exp(walks.speed), 1, road.freeFlowKmh * 1.25);

  let lengthSum = 0;
  let occupiedSeconds = 0;
  for (const type of VEHICLE_ORDER) {
    const n = counts[type] ?? 0;
    lengthSum += n * VEHICLE_LENGTH_M[type];
    occupiedSeconds += (n * OCCUPANCY_LENGTH_M[type]) / (speedKmh / 3.6);
  }
  // In a standing queue the loop stays covered whether or not vehicles cross it.
  const queue = QUEUE_OCCUPANCY * (1 - smoothstep(0.08, 0.3, speedKmh / road.freeFlowKmh));

  const reading: TrafficReading = {
    ts,
    seq: state.seq,
    intensity,
    periodSeconds,
    occupancy: round(clamp(Math.max(occupiedSeconds / periodSeconds, queue), 0, 0.98), 3),
    averageVehicleSpeed: round(speedKmh, 1),
    ...(intensity > 0 ? { averageVehicleLength: round(lengthSum / intensity, 2), averageHeadwayTime: round(periodSeconds / intensity, 2) } : {}),
    congested: speedKmh < CONGESTED_SPEED_RATIO * road.freeFlowKmh,
    laneId: traits.laneId,
    laneDirection: traits.laneDirection,
    ...(traits.segmentId !== undefined ? { refRoadSegment: traits.segmentId } : {}),
    intensityByVehicleType: counts,
  };
  return { reading, state: { ...state, seq: state.seq + 1, lastTs: ts, walks } };
}

/** Multinomial split of `total` by sequential binomials; classes with no share are left out. */
function splitByVehicleType(total: number, shares: Readonly<Record<VehicleType, number>>, rng: Rng): Partial<Record<VehicleType, number>> {
  const counts: Partial<Record<VehicleType, number>> = {};
  let remaining = total;
  let remainingShare = 1;
  for (const type of VEHICLE_ORDER) {
    const share = shares[type];
    if (share <= 0) continue;
    const n = type === 'motorcycle' ? remaining : rng.binomial(remaining, clamp(share / remainingShare, 0, 1));
    counts[type] = n;
    remaining -= n;
    remainingShare -= share;
  }
  return counts;
}
