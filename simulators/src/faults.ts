import { deviceTopic, MAX_BATCH_READINGS, type Reading } from '@citypulse/contracts';
import type { SimulatedDevice } from './models/common.js';
import { deriveSeed, Rng } from './random.js';
import type { FaultSettings, FaultType } from './scenario.js';

/**
 * Fault injection: the ways real field devices misbehave, off unless a scenario or a flag switches
 * them on. Which devices are affected and when depends only on the seed, the device and the
 * reading's sequence number, so a fault scenario replays the same way every time.
 *
 * - dropout: the device loses its connection for a while; it buffers its readings (or loses them,
 *   `lose: true`) and sends the backlog in the batch form when it is back.
 * - stuck: a frozen sensor repeats the values of one reading (new ts and seq) for a while.
 * - spike: one value jumps by `factor` (still inside the schema's bounds: a glitch, not garbage).
 * - malformed: the payload is broken in one of MALFORMED_KINDS; ingest rejects it with a code.
 * - wrongTopic: the reading goes to a topic the device may not use; the broker refuses it (and, as
 *   MQTT 3.1.1 has no negative PUBACK, closes the connection).
 * - flood: for a while the device sends each reading `factor` times (same ts and seq).
 */

export const MALFORMED_KINDS = ['truncated-json', 'not-json', 'wrong-type', 'unknown-field', 'seconds-timestamp', 'oversized-batch'] as const;
export type MalformedKind = (typeof MALFORMED_KINDS)[number];
export const WRONG_TOPIC_KINDS = ['other-device', 'other-province', 'outside-scheme', 'command-topic'] as const;
export type WrongTopicKind = (typeof WRONG_TOPIC_KINDS)[number];

/** The faults one device takes part in (a device is in a fault's share or not, once, from the seed). */
export type DeviceFaults = { readonly [K in FaultType]?: NonNullable<FaultSettings[K]> };

export function faultsForDevice(device: SimulatedDevice, seed: number, settings: FaultSettings): DeviceFaults | undefined {
  const chosen: Record<string, unknown> = {};
  let any = false;
  for (const [type, fault] of Object.entries(settings) as [FaultType, NonNullable<FaultSettings[FaultType]>][]) {
    if (fault.provinces && !fault.provinces.has(device.province)) continue;
    if (fault.domains && !fault.domains.has(device.domain)) continue;
    if (new Rng(deriveSeed(seed, 'fault-member', type, device.id)).uniform() >= fault.share) continue;
    chosen[type] = fault;
    any = true;
  }
  return any ? (chosen) : undefined;
}

/** Episode state of one device; mutable, owned by its runner. */
export interface FaultState {
  dropoutUntil: number;
  stuckUntil: number;
  stuckReading: Reading | undefined;
  floodUntil: number;
}

export function initialFaultState(): FaultState {
  return { dropoutUntil: -Infinity, stuckUntil: -Infinity, stuckReading: undefined, floodUntil: -Infinity };
}

/** What the engine does with one reading after the faults had their say. */
export interface FaultOutcome {
  readonly reading: Reading;
  /** The device is (still) cut off: buffer the reading, or lose it when `lose`. */
  readonly offline: boolean;
  readonly lose: boolean;
  /** A dropout begins with this reading: cut the connection now. */
  readonly dropoutStarts: boolean;
  /** Send this text instead of the reading's JSON. */
  readonly payload?: string;
  readonly malformed?: MalformedKind;
  /** Send to this topic instead of the device's telemetry topic. */
  readonly topic?: string;
  readonly wrongTopic?: WrongTopicKind;
  /** How many times to send it (flood > 1). */
  readonly copies: number;
  /** Faults that acted on this reading, for the counters. */
  readonly applied: readonly FaultType[];
}

/**
 * Applies a device's faults to the reading it just measured at scenario time `atMs`, with the
 * device's publish interval `intervalMs` (episode rates are per device-hour).
 */
export function applyFaults(device: SimulatedDevice, faults: DeviceFaults, state: FaultState, reading: Reading, atMs: number, intervalMs: number, seed: number): FaultOutcome {
  const rng = new Rng(deriveSeed(seed, 'faults', device.id, reading.seq));
  const hours = intervalMs / 3_600_000;
  const starts = (rate: number) => rng.uniform() < 1 - Math.exp(-rate * hours);
  const applied: FaultType[] = [];
  let out = reading;
  let offline = false;
  let dropoutStarts = false;
  let lose = false;

  // Every draw happens whether or not the fault acts, so one fault never shifts another's stream.
  const dropoutDraw = faults.dropout ? starts(faults.dropout.rate) : false;
  const stuckDraw = faults.stuck ? starts(faults.stuck.rate) : false;
  const spikeDraw = rng.uniform();
  const malformedDraw = rng.uniform();
  const wrongTopicDraw = rng.uniform();
  const floodDraw = faults.flood ? starts(faults.flood.rate) : false;
  const pick = rng.uniform();

  if (faults.dropout) {
    if (atMs < state.dropoutUntil) {
      offline = true;
    } else if (dropoutDraw) {
      state.dropoutUntil = atMs + faults.dropout.durationMs;
      offline = true;
      dropoutStarts = true;
    }
    if (offline) {
      lose = faults.dropout.lose;
      applied.push('dropout');
    }
  }

  if (faults.stuck) {
    if (atMs >= state.stuckUntil && stuckDraw) {
      state.stuckUntil = atMs + faults.stuck.durationMs;
      state.stuckReading = reading;
    }
    if (atMs < state.stuckUntil && state.stuckReading) {
      out = { ...state.stuckReading, ts: reading.ts, seq: reading.seq };
      applied.push('stuck');
    } else {
      state.stuckReading = undefined;
    }
  }

  if (faults.spike && spikeDraw < faults.spike.probability) {
    out = spikeReading(device, out, faults.spike.factor);
    applied.push('spike');
  }

  let payload: string | undefined;
  let malformed: MalformedKind | undefined;
  if (faults.malformed && malformedDraw < faults.malformed.probability) {
    malformed = MALFORMED_KINDS[Math.floor(pick * MALFORMED_KINDS.length)] ?? 'not-json';
    payload = malformedPayload(out, malformed);
    applied.push('malformed');
  }

  let topic: string | undefined;
  let wrongTopic: WrongTopicKind | undefined;
  if (faults.wrongTopic && wrongTopicDraw < faults.wrongTopic.probability) {
    wrongTopic = WRONG_TOPIC_KINDS[Math.floor(pick * WRONG_TOPIC_KINDS.length)] ?? 'other-device';
    topic = wrongTopicFor(device, wrongTopic);
    applied.push('wrongTopic');
  }

  let copies = 1;
  if (faults.flood) {
    if (atMs >= state.floodUntil && floodDraw) state.floodUntil = atMs + faults.flood.durationMs;
    if (atMs < state.floodUntil) {
      copies = faults.flood.factor;
      applied.push('flood');
    }
  }

  return {
    reading: out,
    offline,
    lose,
    dropoutStarts,
    copies,
    applied,
    ...(payload !== undefined ? { payload, malformed } : {}),
    ...(topic !== undefined ? { topic, wrongTopic } : {}),
  };
}

/** The value a glitch hits per domain, with the schema's ceiling it must stay under. */
function spikeReading(device: SimulatedDevice, reading: Reading, factor: number): Reading {
  const r = reading as unknown as Record<string, unknown>;
  switch (device.domain) {
    case 'traffic':
      return { ...r, intensity: Math.min(100_000, Math.round((r.intensity as number) * factor) + 1) } as unknown as Reading;
    case 'environment':
      return typeof r.pm25 === 'number' ? ({ ...r, pm25: Math.min(2000, round1(r.pm25 * factor)) } as unknown as Reading) : reading;
    case 'energy':
      return { ...r, totalActivePower: Math.min(1e10, Math.round((r.totalActivePower as number) * factor)) } as unknown as Reading;
  }
}

export function malformedPayload(reading: Reading, kind: MalformedKind): string {
  const json = JSON.stringify(reading);
  switch (kind) {
    case 'truncated-json':
      return json.slice(0, Math.max(1, Math.floor(json.length / 2)));
    case 'not-json':
      return `ERR 0x1F sensor fault; seq=${reading.seq}`;
    case 'wrong-type':
      return JSON.stringify({ ...reading, ts: String(reading.ts) });
    case 'unknown-field':
      return JSON.stringify({ ...reading, firmware: 'v2.3.1-rc' });
    case 'seconds-timestamp':
      return JSON.stringify({ ...reading, ts: Math.floor(reading.ts / 1000) });
    case 'oversized-batch':
      // One more reading than the batch form allows, each cut to ts and seq: ~30 KB, far under the
      // broker's packet limit (300 KB), so it reaches ingest and is refused there (E_BATCH_TOO_LARGE).
      // Full readings came to 250–320 KB: over the limit the broker dropped the connection, and the
      // device resent the same QoS 1 message after every reconnect, never to connect for long.
      return JSON.stringify({ readings: Array.from({ length: MAX_BATCH_READINGS + 1 }, (_, i) => ({ ts: reading.ts, seq: reading.seq + i })) });
  }
}

export function wrongTopicFor(device: SimulatedDevice, kind: WrongTopicKind): string {
  const address = { province: device.province, domain: device.domain, deviceId: device.id };
  switch (kind) {
    case 'other-device':
      return deviceTopic({ ...address, deviceId: `${device.id.slice(0, 60)}-x` }, 'telemetry');
    case 'other-province':
      return deviceTopic({ ...address, province: device.province === '01' ? '79' : '01' }, 'telemetry');
    case 'outside-scheme':
      return `${deviceTopic(address, 'telemetry')}/raw`;
    case 'command-topic':
      return deviceTopic(address, 'commands');
  }
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
