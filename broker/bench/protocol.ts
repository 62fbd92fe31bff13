/**
 * What the broker bench's orchestrator (broker.bench.ts) and its child processes (generator.ts,
 * subscriber.ts) say to each other over the fork IPC channel, and the few helpers they share.
 */

/** One MQTT connection a generator opens: a device, with its login on our broker (none on Mosquitto). */
export interface BenchDevice {
  readonly id: string;
  readonly topic: string;
  readonly password?: string;
}

export type GeneratorCommand =
  | {
      readonly type: 'connect';
      readonly url: string;
      readonly devices: readonly BenchDevice[];
      readonly keepaliveS: number;
      /** CONNECTs awaiting their CONNACK at once (a bounded storm: logins cost a scrypt on our broker). */
      readonly connectConcurrency: number;
    }
  /**
   * ratePerS 0: as fast as the windows allow: `window` messages awaiting their PUBACK (QoS 1) or
   * their write (QoS 0) per connection, and `endToEndWindow` messages sent by this process but not
   * yet received by the subscriber (0: no such limit).
   */
  | { readonly type: 'start'; readonly qos: 0 | 1; readonly window: number; readonly endToEndWindow: number; readonly ratePerS: number }
  /** How many of this generator's messages the subscriber has received so far (relayed by the orchestrator). */
  | { readonly type: 'credit'; readonly received: number }
  | { readonly type: 'stop' }
  | { readonly type: 'close' };

export type GeneratorReply =
  | { readonly type: 'progress'; readonly connected: number; readonly failed: number }
  | { readonly type: 'connected'; readonly connected: number; readonly failed: number; readonly seconds: number; readonly firstError?: string }
  | { readonly type: 'started' }
  /** After stop: every message sent, acknowledged (QoS 1) or written (QoS 0), and this process's CPU. */
  | {
      readonly type: 'stopped';
      readonly sent: number;
      readonly completed: number;
      readonly errors: number;
      /** Fixed rate: turns skipped because the connection's window was full or this process fell behind its schedule. */
      readonly skipped: number;
      /** End-to-end window: messages written off after 2 s without any reaching the subscriber. */
      readonly writtenOff: number;
      readonly cpuSeconds: number;
      readonly seconds: number;
    }
  | { readonly type: 'fatal'; readonly message: string };

export type SubscriberCommand =
  | {
      readonly type: 'connect';
      readonly url: string;
      readonly username?: string;
      readonly password?: string;
      readonly filter: string;
      readonly qos: 0 | 1;
      /** Generator processes: device `bench-N` belongs to generator N % generators (for the credit counts). */
      readonly generators: number;
    }
  /** Starts a measurement window: clears the histogram and the window's count. */
  | { readonly type: 'reset' }
  | { readonly type: 'report' }
  | { readonly type: 'close' };

export type SubscriberReply =
  | { readonly type: 'ready' }
  /** Messages received so far per generator (sent every few ms while they change). */
  | { readonly type: 'credit'; readonly received: readonly number[] }
  | { readonly type: 'reset' }
  | {
      readonly type: 'report';
      /** Messages received in the window, the window's length, latencies in the window (ms). */
      readonly count: number;
      readonly seconds: number;
      readonly p50Ms: number;
      readonly p99Ms: number;
      readonly maxMs: number;
      /** Every message received since connecting (for the loss check). */
      readonly total: number;
      readonly cpuSeconds: number;
    }
  | { readonly type: 'fatal'; readonly message: string };

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export const nowMs = (): number => performance.timeOrigin + performance.now();

/**
 * A realistic environment reading (FIWARE AirQualityObserved fields, as the simulators send),
 * about 250 bytes, with the send time first so the subscriber reads it without parsing the JSON.
 */
const READING_TAIL =
  ',"pm25":42.57,"pm10":71.23,"no2":38.14,"o3":61.22,"co":912.4,"so2":8.13,"temperature":27.31,"relativeHumidity":0.812,"LAeq":64.21,"site":"bench-roadside","note":"synthetic load generator reading"}';

export const SENT_PREFIX = '{"sent":';

export function readingPayload(sentMs: number, seq: number): string {
  return `${SENT_PREFIX}${sentMs.toFixed(3)},"ts":${Math.floor(sentMs)},"seq":${seq}${READING_TAIL}`;
}

/** The send time written by readingPayload, or NaN. */
export function sentTimeOf(payload: Buffer): number {
  // '{"sent":' is 8 bytes; 13 digits, a point and 3 decimals follow.
  return Number.parseFloat(payload.toString('latin1', SENT_PREFIX.length, SENT_PREFIX.length + 20));
}

/** Device ids of the bench: `bench-00042`; their number says which generator sends for them. */
export const deviceIdOf = (i: number): string => `bench-${String(i).padStart(5, '0')}`;

/** The device number in a bench device's topic (`city/01/environment/bench-00042/telemetry` → 42), or -1. */
export function deviceNumberOf(topic: string): number {
  const at = topic.indexOf('/bench-');
  return at < 0 ? -1 : Number.parseInt(topic.slice(at + 7, at + 12), 10);
}

/** Sends a reply to the parent process (no-op without an IPC channel). */
export function reply<T>(message: T): void {
  process.send?.(message);
}
