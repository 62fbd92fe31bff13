import type { Domain } from '@citypulse/contracts';

/**
 * Things that happen in the simulated city at given times, as the models see them. A scenario
 * file lists them (times resolved to epoch ms of the scenario clock); the models also draw
 * background events of their own (a random accident, a rare frequency dip) from the seed.
 */
export type WorldEvent = TrafficIncident | RainEvent | PollutionEpisode | GridOutage | FrequencyExcursion | VoltageSag;

interface EventWindow {
  /** Start and end on the scenario clock, epoch ms; endMs > startMs. */
  readonly startMs: number;
  readonly endMs: number;
}

/** An accident or a closure on one road segment: capacity drops, the queue spills upstream, then clears. */
export interface TrafficIncident extends EventWindow {
  readonly type: 'traffic-incident';
  readonly province: string;
  /** A segment id from placement (e.g. "01-c2-s3"); when absent the models pick one in the province from the seed. */
  readonly segment?: string;
  /** Share of the segment's capacity lost, 0–1 (1 = road closed). */
  readonly severity: number;
}

/** Rain over provinces: washes particles out, cools the air, slows traffic a little. */
export interface RainEvent extends EventWindow {
  readonly type: 'rain';
  readonly provinces: readonly string[];
  readonly mmPerHour: number;
}

/** Stagnant air, crop burning or a dust event: pollutant concentrations multiplied by `factor`. */
export interface PollutionEpisode extends EventWindow {
  readonly type: 'pollution-episode';
  readonly provinces: readonly string[];
  readonly factor: number;
}

/** Supply lost on a share of a province's feeders and substations: zero voltage, current and power. */
export interface GridOutage extends EventWindow {
  readonly type: 'grid-outage';
  readonly province: string;
  /** Share of the province's energy devices without supply, 0–1. */
  readonly share: number;
}

/** A system-wide frequency deviation (a large unit trips): Hz added to the grid frequency. */
export interface FrequencyExcursion extends EventWindow {
  readonly type: 'frequency-excursion';
  readonly deltaHz: number;
}

/** A voltage sag or swell on a province's network: per-unit change of phase voltages (−0.15 = 15 % low). */
export interface VoltageSag extends EventWindow {
  readonly type: 'voltage-sag';
  readonly province: string;
  readonly depth: number;
}

export const WORLD_EVENT_TYPES = ['traffic-incident', 'rain', 'pollution-episode', 'grid-outage', 'frequency-excursion', 'voltage-sag'] as const satisfies readonly WorldEvent['type'][];

/** How many devices of each domain a province has in a scenario. */
export interface DeviceGroup {
  readonly province: string;
  readonly domain: Domain;
  readonly count: number;
}
