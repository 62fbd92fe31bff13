/**
 * What the ingest bench's orchestrator (ingest.bench.ts) and its load generators (generator.ts)
 * say to each other over the fork IPC channel.
 */

/** One MQTT connection of a generator: a device logging in as itself, or a gateway account publishing for its devices. */
export interface GeneratorConnection {
  readonly clientId: string;
  readonly username: string;
  readonly password: string;
  /** Fleet numbers (fleet.ts) of the devices this connection publishes for. */
  readonly devices: readonly number[];
}

export type GeneratorCommand =
  | { readonly type: 'connect'; readonly url: string; readonly connections: readonly GeneratorConnection[]; readonly connectConcurrency: number }
  /**
   * messagesPerS > 0: a fixed offered rate (this generator's share), round-robin over its devices.
   * messagesPerS 0: as fast as the pipeline stores: at most `readingsWindow` readings sent and not
   * yet stored (the orchestrator relays this generator's share of what ingest stored).
   * Each message carries `readingsPerMessage` readings (1: the single form, more: `{"readings":[…]}`);
   * each connection keeps at most `inflight` messages awaiting their PUBACK.
   */
  | { readonly type: 'start'; readonly messagesPerS: number; readonly readingsPerMessage: number; readonly inflight: number; readonly readingsWindow: number }
  | { readonly type: 'stored'; readonly readings: number }
  | { readonly type: 'count' }
  | { readonly type: 'stop' }
  | { readonly type: 'close' };

/** Counts since 'start'. "Acknowledged" is the broker's PUBACK: the platform now owes those readings to InfluxDB. */
export interface GeneratorCounts {
  readonly messagesSent: number;
  readonly messagesAcked: number;
  readonly readingsSent: number;
  readonly readingsAcked: number;
  /** Publishes that failed (connection lost): not acknowledged, so not owed. */
  readonly errors: number;
  /** Fixed rate: messages not sent because a connection's window was full or the process fell behind its schedule. */
  readonly skipped: number;
  readonly cpuSeconds: number;
  readonly seconds: number;
}

export type GeneratorReply =
  | { readonly type: 'connected'; readonly connected: number; readonly failed: number; readonly seconds: number; readonly firstError?: string }
  | { readonly type: 'started' }
  | ({ readonly type: 'counts' } & GeneratorCounts)
  /** After stop, once every message in flight was acknowledged (or 60 s passed). */
  | ({ readonly type: 'stopped' } & GeneratorCounts)
  | { readonly type: 'fatal'; readonly message: string };
