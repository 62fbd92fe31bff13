import type { FrequencyExcursion, GridOutage, PollutionEpisode, RainEvent, TrafficIncident, VoltageSag, WorldEvent } from './events.js';
import { clamp, provinceClimate, rainSeason, type SimulatedDevice } from './models/common.js';
import { dailyTrafficShape, type LaneDirection } from './models/traffic.js';
import { parseSegmentId, segmentId } from './placement.js';
import { deriveSeed, Rng } from './random.js';
import { DAY_MS, localTime } from './time.js';

/**
 * What happens in the simulated city, as the models see it: traffic incidents and the queues they
 * push upstream, rain, pollution episodes, and the grid's frequency excursions, voltage sags and
 * outages. Scenario events come in; background events (a random accident, an afternoon shower in
 * the rainy season, a rare unit trip) are drawn from the seed by time bucket, without state, so
 * any moment can be asked about in any order and the answer is always the same.
 *
 * The models ask once per reading, so answers come from per-province lists of the events active
 * in the current hour, rebuilt when the hour changes; a question is a few comparisons.
 */
export interface World {
  readonly seed: number;
  /**
   * Share of a segment's capacity left at `ts` (1 = normal, 0 = closed). An incident takes its
   * severity off the inbound lanes of its segment (a share of it off the outbound ones), its queue
   * spills to the inbound segments upstream, one every few minutes with decaying depth, and after
   * the end each segment recovers linearly over the clearance time, the incident's own first.
   */
  segmentCapacity(segmentId: string, direction: LaneDirection, ts: number): number;
  /** Incident congestion in a province: lost capacity summed over the affected segments (0 = none). */
  trafficCongestion(province: string, ts: number): number;
  rainMmPerHour(province: string, ts: number): number;
  /** 0 … 1: how far recent rain has washed the air out (rises during rain, fades over hours after). */
  rainWashout(province: string, ts: number): number;
  /** Multiplier of pollutant concentrations (pollution episodes); 1 when none. */
  pollutionFactor(province: string, ts: number): number;
  /** Hz added to the grid frequency (frequency excursions); 0 when none. */
  frequencyOffsetHz(ts: number): number;
  /** Per-unit change of the province's phase voltages (sags and swells); 0 when none. */
  voltageOffset(province: string, ts: number): number;
  /** Whether an energy device has lost supply at `ts` (grid outages over a share of the province's devices). */
  inOutage(device: SimulatedDevice, ts: number): boolean;
  /** Scenario and background events overlapping [fromMs, toMs), by start; background ones for the provinces of the world's devices and events. */
  eventsBetween(fromMs: number, toMs: number): WorldEvent[];
}

export interface WorldOptions {
  readonly seed: number;
  readonly events: readonly WorldEvent[];
  /** The simulated devices: traffic segments (where incidents can happen) and energy devices (who an outage hits). */
  readonly devices: readonly SimulatedDevice[];
  /** Draw background incidents, showers, excursions, sags and outages from the seed (default true). */
  readonly background?: boolean;
}

export const WORLD_DEFAULTS = {
  /** Active-event lists are rebuilt once per window. */
  windowMs: 3_600_000, // 1 hour
  incident: {
    /** A crash blocks its segment within a minute. */
    rampMs: 60_000,
    /** The queue reaches the next segment upstream after this long (a 1 km segment at ~12 km/h of queue growth). */
    spillDelayMs: 5 * 60_000,
    /** Depth of the queue's effect on each further segment, relative to the previous one. */
    spillDecay: 0.65,
    /** The queue stops spreading where its effect would be smaller than this. */
    minSpillDepth: 0.1,
    maxSpillSegments: 6,
    /** Clearance after the end: 10 min plus 30 min for a full closure; each upstream segment starts half a clearance later. */
    clearanceBaseMs: 10 * 60_000,
    clearancePerSeverityMs: 30 * 60_000,
    /** Share of the severity felt by the outbound lanes of the incident's segment (rubbernecking). */
    oppositeShare: 0.3,
  },
  rain: {
    /** Washout strength saturates with the rate: 1 − e^(−rate / scale). */
    washoutScaleMmPerHour: 4,
    washoutRiseMs: 30 * 60_000,
    /** After the rain, the washed-out air fills up again with this time constant. */
    washoutDecayMs: 3 * 3_600_000,
  },
  pollutionRampMs: 30 * 60_000,
  frequency: { rampInMs: 5_000, rampOutMs: 60_000 },
  background: {
    /** Chance of an accident per province and hour at a rush-hour peak, by city scale (metropolis, city, province). */
    incidentPerHour: { metropolis: 0.35, city: 0.15, province: 0.05 },
    incidentMinutes: [10, 50],
    /** Chances per day: a convective afternoon shower and a long rain, times the rainy-season weight. */
    showerPerDay: 0.55,
    longRainPerDay: 0.2,
    /** A unit trip that takes the frequency out of the ±0.2 Hz band, grid-wide: about one a month. */
    frequencyExcursionPerDay: 0.035,
    /** A sag on a province's network, per day. */
    voltageSagPerDay: 0.03,
    /** An outage over part of a province's network, per day, doubled and more in the stormy season. */
    outagePerDay: 0.03,
  },
} as const;

/** Builds the world of a run: scenario events indexed by province, background drawn lazily from the seed. */
export function buildWorld(options: WorldOptions): World {
  return new SimulatedWorld(options);
}

// ---------------------------------------------------------------------------------------------
// Resolved events: the scenario's and the background's, with what the models need precomputed

interface Active {
  /** First and last moment the event has any effect (queues and washout outlast the event). */
  readonly effectStartMs: number;
  readonly effectEndMs: number;
}

interface Incident extends Active {
  readonly event: TrafficIncident;
  readonly segment: string | undefined;
  /** `{province}-c{corridor}`: spillback stays on the corridor. */
  readonly corridorKey: string | undefined;
  readonly index: number;
  readonly severity: number;
  readonly clearanceMs: number;
  /** Upstream segments the queue reaches. */
  readonly reach: number;
}

interface Rain extends Active {
  readonly event: RainEvent;
  readonly mmPerHour: number;
  readonly strength: number;
}

interface Episode extends Active {
  readonly event: PollutionEpisode;
}

interface Excursion extends Active {
  readonly event: FrequencyExcursion;
}

interface Sag extends Active {
  readonly event: VoltageSag;
}

interface Outage extends Active {
  readonly event: GridOutage;
  /** Rotates which devices an outage takes, so successive outages do not always hit the same ones. */
  readonly phase: number;
}

/**
 * The events of one kind and place that matter in the current window: the scenario's, found by
 * binary search, and the background's, drawn for the buckets that can reach into the window.
 */
class ActiveEvents<E extends Active> {
  readonly #scenario: readonly E[];
  readonly #maxSpanMs: number;
  readonly #background: ((bucket: number) => readonly E[]) | undefined;
  readonly #bucketMs: number;
  readonly #maxBackgroundSpanMs: number;
  #window = Number.NaN;
  #active: readonly E[] = [];

  constructor(scenario: readonly E[], background?: { readonly draw: (bucket: number) => readonly E[]; readonly bucketMs: number; readonly maxSpanMs: number }) {
    this.#scenario = [...scenario].sort((a, b) => a.effectStartMs - b.effectStartMs);
    this.#maxSpanMs = Math.max(0, ...scenario.map((e) => e.effectEndMs - e.effectStartMs));
    this.#background = background?.draw;
    this.#bucketMs = background?.bucketMs ?? DAY_MS;
    this.#maxBackgroundSpanMs = background?.maxSpanMs ?? 0;
  }

  get empty(): boolean {
    return this.#scenario.length === 0 && this.#background === undefined;
  }

  at(ts: number): readonly E[] {
    const window = Math.floor(ts / WORLD_DEFAULTS.windowMs);
    if (window !== this.#window) {
      this.#window = window;
      this.#active = this.between(window * WORLD_DEFAULTS.windowMs, (window + 1) * WORLD_DEFAULTS.windowMs);
    }
    return this.#active;
  }

  /** Events whose effect overlaps [fromMs, toMs). */
  between(fromMs: number, toMs: number): E[] {
    const found: E[] = [];
    const scenario = this.#scenario;
    // First event that can still be in effect at fromMs.
    let lo = 0;
    let hi = scenario.length;
    const earliest = fromMs - this.#maxSpanMs;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((scenario[mid]?.effectStartMs ?? Infinity) < earliest) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < scenario.length; i++) {
      const e = scenario[i];
      if (!e || e.effectStartMs >= toMs) break;
      if (e.effectEndMs > fromMs) found.push(e);
    }
    if (this.#background) {
      const first = Math.floor((fromMs - this.#maxBackgroundSpanMs) / this.#bucketMs);
      const last = Math.floor((toMs - 1) / this.#bucketMs);
      for (let bucket = first; bucket <= last; bucket++) {
        for (const e of this.#background(bucket)) if (e.effectStartMs < toMs && e.effectEndMs > fromMs) found.push(e);
      }
    }
    return found;
  }
}

interface ProvinceEvents {
  readonly incidents: ActiveEvents<Incident>;
  readonly rain: ActiveEvents<Rain>;
  readonly pollution: ActiveEvents<Episode>;
  readonly sags: ActiveEvents<Sag>;
  readonly outages: ActiveEvents<Outage>;
}

interface SegmentRef {
  readonly province: string;
  readonly corridorKey: string | undefined;
  readonly index: number;
}

const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;

class SimulatedWorld implements World {
  readonly seed: number;
  readonly #background: boolean;
  readonly #events: readonly WorldEvent[];
  /** Traffic segments with detectors, per province, in placement order: where incidents are put. */
  readonly #segmentsByProvince = new Map<string, string[]>();
  readonly #segments = new Map<string, SegmentRef | undefined>();
  readonly #outageDraws = new Map<string, number>();
  readonly #provinces: readonly string[];
  readonly #byProvince = new Map<string, ProvinceEvents>();
  readonly #frequency: ActiveEvents<Excursion>;

  constructor(options: WorldOptions) {
    this.seed = options.seed;
    this.#background = options.background ?? true;
    this.#events = options.events;
    const provinces = new Set<string>();
    for (const device of options.devices) {
      provinces.add(device.province);
      if (device.segment) {
        const id = device.segment.id;
        if (!this.#segments.has(id)) {
          const parsed = parseSegmentId(id);
          this.#segments.set(id, { province: device.province, corridorKey: parsed ? corridorKey(parsed.province, parsed.corridor) : undefined, index: parsed?.index ?? 0 });
          const list = this.#segmentsByProvince.get(device.province) ?? [];
          list.push(id);
          this.#segmentsByProvince.set(device.province, list);
        }
      }
      if (device.domain === 'energy') this.#outageDraws.set(device.id, this.#outageDraw(device.id));
    }
    for (const event of options.events) {
      if ('province' in event) provinces.add(event.province);
      if ('provinces' in event) for (const p of event.provinces) provinces.add(p);
    }
    this.#provinces = [...provinces].sort();
    const excursions = options.events.filter((e): e is FrequencyExcursion => e.type === 'frequency-excursion').map(resolveExcursion);
    this.#frequency = new ActiveEvents(excursions, this.#background ? { draw: (day) => this.#backgroundExcursions(day), bucketMs: DAY_MS, maxSpanMs: DAY_MS } : undefined);
  }

  segmentCapacity(id: string, direction: LaneDirection, ts: number): number {
    const segment = this.#segment(id);
    if (!segment) return 1;
    const incidents = this.#province(segment.province).incidents.at(ts);
    let capacity = 1;
    for (const incident of incidents) {
      if (ts < incident.effectStartMs || ts >= incident.effectEndMs) continue;
      if (incident.segment === id) {
        capacity *= 1 - incidentLoss(incident, 0, ts) * (direction === 'forward' ? 1 : WORLD_DEFAULTS.incident.oppositeShare);
      } else if (direction === 'forward' && incident.corridorKey !== undefined && incident.corridorKey === segment.corridorKey) {
        // Inbound traffic flows from index + 1 to index: the queue grows towards higher indices.
        const upstream = segment.index - incident.index;
        if (upstream > 0 && upstream <= incident.reach) capacity *= 1 - incidentLoss(incident, upstream, ts);
      }
    }
    return capacity;
  }

  trafficCongestion(province: string, ts: number): number {
    let lost = 0;
    for (const incident of this.#province(province).incidents.at(ts)) {
      if (ts < incident.effectStartMs || ts >= incident.effectEndMs) continue;
      for (let d = 0; d <= incident.reach; d++) lost += incidentLoss(incident, d, ts);
    }
    return lost;
  }

  rainMmPerHour(province: string, ts: number): number {
    let rate = 0;
    for (const rain of this.#province(province).rain.at(ts)) if (ts >= rain.event.startMs && ts < rain.event.endMs) rate += rain.mmPerHour;
    return rate;
  }

  rainWashout(province: string, ts: number): number {
    const { washoutRiseMs, washoutDecayMs } = WORLD_DEFAULTS.rain;
    let clean = 1;
    for (const rain of this.#province(province).rain.at(ts)) {
      const { startMs, endMs } = rain.event;
      if (ts < startMs || ts >= rain.effectEndMs) continue;
      const during = rain.strength * (1 - Math.exp(-(Math.min(ts, endMs) - startMs) / washoutRiseMs));
      clean *= 1 - (ts < endMs ? during : during * Math.exp(-(ts - endMs) / washoutDecayMs));
    }
    return 1 - clean;
  }

  pollutionFactor(province: string, ts: number): number {
    let factor = 1;
    for (const episode of this.#province(province).pollution.at(ts)) {
      const share = ramp(ts, episode.event.startMs, episode.event.endMs, WORLD_DEFAULTS.pollutionRampMs, WORLD_DEFAULTS.pollutionRampMs);
      factor *= 1 + (episode.event.factor - 1) * share;
    }
    return factor;
  }

  frequencyOffsetHz(ts: number): number {
    let offset = 0;
    for (const excursion of this.#frequency.at(ts)) {
      offset += excursion.event.deltaHz * ramp(ts, excursion.event.startMs, excursion.event.endMs, WORLD_DEFAULTS.frequency.rampInMs, WORLD_DEFAULTS.frequency.rampOutMs);
    }
    return offset;
  }

  voltageOffset(province: string, ts: number): number {
    let offset = 0;
    for (const sag of this.#province(province).sags.at(ts)) if (ts >= sag.event.startMs && ts < sag.event.endMs) offset += sag.event.depth;
    return offset;
  }

  inOutage(device: SimulatedDevice, ts: number): boolean {
    const outages = this.#province(device.province).outages.at(ts);
    if (outages.length === 0) return false;
    let draw = this.#outageDraws.get(device.id);
    if (draw === undefined) this.#outageDraws.set(device.id, (draw = this.#outageDraw(device.id)));
    for (const outage of outages) {
      if (ts < outage.event.startMs || ts >= outage.event.endMs) continue;
      if ((draw + outage.phase) % 1 < outage.event.share) return true;
    }
    return false;
  }

  eventsBetween(fromMs: number, toMs: number): WorldEvent[] {
    const overlapping = (e: WorldEvent): boolean => e.startMs < toMs && e.endMs > fromMs;
    const found = new Set<WorldEvent>(this.#events.filter(overlapping));
    for (const e of this.#frequency.between(fromMs, toMs)) if (overlapping(e.event)) found.add(e.event);
    for (const province of this.#provinces) {
      const events = this.#province(province);
      for (const list of [events.incidents, events.rain, events.pollution, events.sags, events.outages] as const) {
        for (const e of (list as ActiveEvents<Active & { readonly event: WorldEvent }>).between(fromMs, toMs)) if (overlapping(e.event)) found.add(e.event);
      }
    }
    return [...found].sort((a, b) => a.startMs - b.startMs);
  }

  #segment(id: string): SegmentRef | undefined {
    if (this.#segments.has(id)) return this.#segments.get(id);
    const parsed = parseSegmentId(id);
    const ref = parsed ? { province: parsed.province, corridorKey: corridorKey(parsed.province, parsed.corridor), index: parsed.index } : undefined;
    this.#segments.set(id, ref);
    return ref;
  }

  #outageDraw(deviceId: string): number {
    return deriveSeed(this.seed, 'outage', deviceId) / 4_294_967_296;
  }

  #province(province: string): ProvinceEvents {
    let events = this.#byProvince.get(province);
    if (!events) this.#byProvince.set(province, (events = this.#indexProvince(province)));
    return events;
  }

  #indexProvince(province: string): ProvinceEvents {
    const mine = this.#events.filter((e) => ('province' in e && e.province === province) || ('provinces' in e && e.provinces.includes(province)));
    const segments = incidentSegments(this.#segmentsByProvince.get(province) ?? []);
    const bg = this.#background;
    const incidents = mine.filter((e): e is TrafficIncident => e.type === 'traffic-incident').map((e) => resolveIncident(e, e.segment ?? this.#pickSegment(province, segments, e.startMs)));
    const rains = mine.filter((e): e is RainEvent => e.type === 'rain').map(resolveRain);
    const episodes = mine.filter((e): e is PollutionEpisode => e.type === 'pollution-episode').map((event) => ({ event, effectStartMs: event.startMs, effectEndMs: event.endMs + WORLD_DEFAULTS.pollutionRampMs }));
    const sags = mine.filter((e): e is VoltageSag => e.type === 'voltage-sag').map((event) => ({ event, effectStartMs: event.startMs, effectEndMs: event.endMs }));
    const outages = mine.filter((e): e is GridOutage => e.type === 'grid-outage').map((event) => this.#resolveOutage(event));
    return {
      incidents: new ActiveEvents(incidents, bg ? { draw: (hour) => this.#backgroundIncidents(province, segments, hour), bucketMs: HOUR_MS, maxSpanMs: 4 * HOUR_MS } : undefined),
      rain: new ActiveEvents(rains, bg ? { draw: (day) => this.#backgroundRain(province, day), bucketMs: DAY_MS, maxSpanMs: DAY_MS } : undefined),
      pollution: new ActiveEvents(episodes),
      sags: new ActiveEvents(sags, bg ? { draw: (day) => this.#backgroundSags(province, day), bucketMs: DAY_MS, maxSpanMs: DAY_MS } : undefined),
      outages: new ActiveEvents(outages, bg ? { draw: (day) => this.#backgroundOutages(province, day), bucketMs: DAY_MS, maxSpanMs: DAY_MS } : undefined),
    };
  }

  /** A segment with detectors for an incident that names none; undefined when the province has none. */
  #pickSegment(province: string, segments: readonly string[], startMs: number): string | undefined {
    return pickSegment(segments, new Rng(deriveSeed(this.seed, 'incident-segment', province, startMs)));
  }

  #resolveOutage(event: GridOutage): Outage {
    const phase = deriveSeed(this.seed, 'outage-phase', event.province, event.startMs) / 4_294_967_296;
    return { event, phase, effectStartMs: event.startMs, effectEndMs: event.endMs };
  }

  // Background draws: one stream per (kind, place, bucket), so each bucket is independent of every other.

  #backgroundIncidents(province: string, segments: readonly string[], hour: number): Incident[] {
    const rng = new Rng(deriveSeed(this.seed, 'bg-incident', province, hour));
    const { incidentPerHour, incidentMinutes } = WORLD_DEFAULTS.background;
    const scale = provinceClimate(province).cityScale;
    const base = scale >= 1 ? incidentPerHour.metropolis : scale >= 0.8 ? incidentPerHour.city : incidentPerHour.province;
    // More accidents when the roads are busy, a few at night (drunk driving, speeding lorries).
    const chance = base * (0.25 + 0.75 * dailyTrafficShape(localTime(hour * HOUR_MS + HOUR_MS / 2)));
    if (rng.uniform() >= chance) return [];
    const startMs = Math.round(hour * HOUR_MS + rng.uniform() * HOUR_MS);
    const endMs = startMs + Math.round(rng.between(incidentMinutes[0], incidentMinutes[1]) * MINUTE_MS);
    const severity = Math.round(rng.between(0.3, 0.9) * 100) / 100;
    const segment = pickSegment(segments, rng);
    const event: TrafficIncident = { type: 'traffic-incident', startMs, endMs, province, severity, ...(segment !== undefined ? { segment } : {}) };
    return [resolveIncident(event, segment)];
  }

  /**
   * Showers follow the region's rainy season: a convective afternoon shower (short, heavy) and a
   * long rain (monsoon or typhoon, light to moderate, any hour). Buckets are UTC days (07:00 to
   * 07:00 local), so an afternoon shower never straddles two buckets.
   */
  #backgroundRain(province: string, day: number): Rain[] {
    const rng = new Rng(deriveSeed(this.seed, 'bg-rain', province, day));
    const dayStart = day * DAY_MS;
    const season = rainSeason(provinceClimate(province), localTime(dayStart + DAY_MS / 2).monthPosition);
    const rains: Rain[] = [];
    const { showerPerDay, longRainPerDay } = WORLD_DEFAULTS.background;
    // Light showers happen in the dry season too, rarely.
    if (rng.uniform() < showerPerDay * (0.08 + 0.92 * season)) {
      const localHour = rng.between(13, 19);
      const startMs = Math.round(dayStart + ((localHour - 7) * HOUR_MS));
      const endMs = startMs + Math.round(rng.between(0.5, 2) * HOUR_MS);
      rains.push(resolveRain({ type: 'rain', startMs, endMs, provinces: [province], mmPerHour: Math.round((2 + 8 * -Math.log(1 - rng.uniform())) * 10) / 10 }));
    }
    if (rng.uniform() < longRainPerDay * season) {
      const startMs = Math.round(dayStart + rng.uniform() * DAY_MS);
      const endMs = startMs + Math.round(rng.between(2, 6) * HOUR_MS);
      rains.push(resolveRain({ type: 'rain', startMs, endMs, provinces: [province], mmPerHour: Math.round((1 + 3 * -Math.log(1 - rng.uniform())) * 10) / 10 }));
    }
    return rains;
  }

  /** Most unit trips pull the frequency down; a large load rejection pushes it up. */
  #backgroundExcursions(day: number): Excursion[] {
    const rng = new Rng(deriveSeed(this.seed, 'bg-frequency', day));
    if (rng.uniform() >= WORLD_DEFAULTS.background.frequencyExcursionPerDay) return [];
    const startMs = Math.round(day * DAY_MS + rng.uniform() * DAY_MS);
    const endMs = startMs + Math.round(rng.between(60, 300) * 1000);
    const deltaHz = Math.round((rng.uniform() < 0.85 ? -rng.between(0.22, 0.45) : rng.between(0.21, 0.3)) * 1000) / 1000;
    return [resolveExcursion({ type: 'frequency-excursion', startMs, endMs, deltaHz })];
  }

  #backgroundSags(province: string, day: number): Sag[] {
    const rng = new Rng(deriveSeed(this.seed, 'bg-sag', province, day));
    if (rng.uniform() >= WORLD_DEFAULTS.background.voltageSagPerDay) return [];
    const startMs = Math.round(day * DAY_MS + rng.uniform() * DAY_MS);
    const endMs = startMs + Math.round(rng.between(20, 300) * 1000);
    const event: VoltageSag = { type: 'voltage-sag', startMs, endMs, province, depth: -Math.round(rng.between(0.06, 0.15) * 1000) / 1000 };
    return [{ event, effectStartMs: startMs, effectEndMs: endMs }];
  }

  /** Storms bring most outages: the chance rises with the rainy season. */
  #backgroundOutages(province: string, day: number): Outage[] {
    const rng = new Rng(deriveSeed(this.seed, 'bg-outage', province, day));
    const season = rainSeason(provinceClimate(province), localTime(day * DAY_MS + DAY_MS / 2).monthPosition);
    if (rng.uniform() >= WORLD_DEFAULTS.background.outagePerDay * (1 + 1.5 * season)) return [];
    const startMs = Math.round(day * DAY_MS + rng.uniform() * DAY_MS);
    const endMs = startMs + Math.round(rng.between(20, 150) * MINUTE_MS);
    return [this.#resolveOutage({ type: 'grid-outage', startMs, endMs, province, share: Math.round(rng.between(0.03, 0.25) * 100) / 100 })];
  }
}

/**
 * Where incidents happen when nobody said: segments with detectors, preferably those whose
 * upstream neighbour has detectors too, so the queue an incident pushes back is seen.
 */
function incidentSegments(segments: readonly string[]): readonly string[] {
  const known = new Set(segments);
  const watched = segments.filter((id) => {
    const parsed = parseSegmentId(id);
    return parsed !== undefined && known.has(segmentId(parsed.province, parsed.corridor, parsed.index + 1));
  });
  return watched.length > 0 ? watched : segments;
}

function pickSegment(candidates: readonly string[], rng: Rng): string | undefined {
  return candidates.length > 0 ? candidates[Math.floor(rng.uniform() * candidates.length)] : undefined;
}

function corridorKey(province: string, corridor: number): string {
  return `${province}-c${corridor}`;
}

function resolveIncident(event: TrafficIncident, segment: string | undefined): Incident {
  const d = WORLD_DEFAULTS.incident;
  const severity = clamp(event.severity, 0, 1);
  const clearanceMs = d.clearanceBaseMs + d.clearancePerSeverityMs * severity;
  // The queue keeps growing while the incident lasts and during the first half of the clearance.
  let reach = 0;
  while (
    reach < d.maxSpillSegments &&
    severity * d.spillDecay ** (reach + 1) >= d.minSpillDepth &&
    (reach + 1) * d.spillDelayMs < event.endMs - event.startMs + clearanceMs / 2
  ) {
    reach++;
  }
  const parsed = segment !== undefined ? parseSegmentId(segment) : undefined;
  return {
    event,
    segment,
    corridorKey: parsed ? corridorKey(parsed.province, parsed.corridor) : undefined,
    index: parsed?.index ?? 0,
    severity,
    clearanceMs,
    reach,
    effectStartMs: event.startMs,
    effectEndMs: event.endMs + (reach * clearanceMs) / 2 + clearanceMs,
  };
}

/**
 * Capacity lost on the segment `upstream` segments behind the incident: the queue arrives there
 * `upstream` spill delays after the start and builds up over one more; after the end each segment
 * starts recovering half a clearance after the one in front of it, then recovers linearly.
 */
function incidentLoss(incident: Incident, upstream: number, ts: number): number {
  const d = WORLD_DEFAULTS.incident;
  const onsetMs = incident.event.startMs + upstream * d.spillDelayMs;
  if (ts <= onsetMs) return 0;
  let share = Math.min(1, (ts - onsetMs) / (upstream === 0 ? d.rampMs : d.spillDelayMs));
  const clearStartMs = incident.event.endMs + (upstream * incident.clearanceMs) / 2;
  if (ts > clearStartMs) share = Math.min(share, Math.max(0, 1 - (ts - clearStartMs) / incident.clearanceMs));
  return incident.severity * d.spillDecay ** upstream * share;
}

function resolveRain(event: RainEvent): Rain {
  const mmPerHour = Math.max(0, event.mmPerHour);
  return {
    event,
    mmPerHour,
    strength: 1 - Math.exp(-mmPerHour / WORLD_DEFAULTS.rain.washoutScaleMmPerHour),
    effectStartMs: event.startMs,
    // After four time constants the washout is below 2 %: forget the rain.
    effectEndMs: event.endMs + 4 * WORLD_DEFAULTS.rain.washoutDecayMs,
  };
}

function resolveExcursion(event: FrequencyExcursion): Excursion {
  return { event, effectStartMs: event.startMs, effectEndMs: event.endMs + WORLD_DEFAULTS.frequency.rampOutMs };
}

/** 0 before `startMs`, rising to 1 over `rampInMs`, 1 until `endMs`, then falling to 0 over `rampOutMs`. */
function ramp(ts: number, startMs: number, endMs: number, rampInMs: number, rampOutMs: number): number {
  if (ts < startMs || ts >= endMs + rampOutMs) return 0;
  const rising = Math.min(1, (ts - startMs) / rampInMs);
  return ts < endMs ? rising : Math.min(rising, 1 - (ts - endMs) / rampOutMs);
}
