/**
 * What the live bench's orchestrator (live.bench.ts) and its child processes (publisher.ts,
 * clients.ts, ws-server.ts) say to each other over the fork IPC channel (held by BenchChild,
 * ingest/bench/services.ts), and the latency histogram the clients fill and it merges.
 */

/** A gateway account of the bench and the fleet numbers (ingest/bench/fleet.ts) of the devices behind it. */
export interface BenchGateway {
  readonly username: string;
  readonly password: string;
  readonly devices: readonly number[];
}

export type PublisherCommand =
  | { readonly type: 'connect'; readonly url: string; readonly gateways: readonly BenchGateway[] }
  /** Every device publishes at this rate from now on (0 stops), one reading per message at QoS 0. */
  | { readonly type: 'rate'; readonly perDeviceHz: number }
  | { readonly type: 'reset' }
  | { readonly type: 'report' }
  | { readonly type: 'close' };

export interface PublisherCounts {
  readonly sent: number;
  /** Messages not sent because the process fell more than a few ms behind its schedule (a stall). */
  readonly skipped: number;
  /** Readings sent per province code. */
  readonly byProvince: Readonly<Record<string, number>>;
  readonly seconds: number;
}

export type PublisherReply =
  | { readonly type: 'connected'; readonly connections: number }
  | { readonly type: 'rate' }
  | { readonly type: 'reset' }
  | ({ readonly type: 'report' } & PublisherCounts)
  | { readonly type: 'fatal'; readonly message: string };

export const TRANSPORTS = ['socket.io', 'ws'] as const;
export type Transport = (typeof TRANSPORTS)[number];

export type ClientsCommand =
  /** One client per entry of `watch`, subscribed to those provinces (all three domains). */
  | {
      readonly type: 'connect';
      readonly transport: Transport;
      readonly url: string;
      /** Session token for socket.io (the ws baseline has no login). */
      readonly token: string;
      readonly watch: readonly (readonly string[])[];
      /** The server's frame interval: a room's frames further apart than this missed one. */
      readonly frameIntervalMs: number;
    }
  | { readonly type: 'reset' }
  | { readonly type: 'report' }
  | { readonly type: 'close' };

export interface ClientCounts {
  readonly clients: number;
  /** 'frame' messages (coalesced deltas) received by all clients of the process. */
  readonly frames: number;
  readonly readings: number;
  /** 'snapshot' messages after the subscribe: a lagging socket's resync (socket.io only). */
  readonly snapshots: number;
  /** Frame intervals of a room that brought no frame (sentAt jumped by more than one interval). */
  readonly missedSlots: number;
  /** Device sequence numbers never seen (a reading lost, or coalesced away when a device outpaces the interval). */
  readonly seqGaps: number;
  readonly disconnects: number;
  readonly latency: SparseHistogram;
  readonly seconds: number;
}

export type ClientsReply =
  | { readonly type: 'connected'; readonly clients: number; readonly failed: number; readonly firstError?: string }
  | { readonly type: 'reset' }
  | ({ readonly type: 'report' } & ClientCounts)
  | { readonly type: 'fatal'; readonly message: string };

export type WsServerCommand =
  | { readonly type: 'start'; readonly mqttUrl: string; readonly username: string; readonly password: string; readonly dataDir: string; readonly frameIntervalMs: number }
  | { readonly type: 'close' };

export type WsServerReply = { readonly type: 'listening'; readonly port: number } | { readonly type: 'fatal'; readonly message: string };

/** Sends a message to the parent (no-op without an IPC channel). */
export function reply<T>(message: T): void {
  process.send?.(message);
}

/** Runs a child's command handler; a failure goes to the parent as 'fatal'. The child ends with its parent. */
export function serveCommands<C>(handle: (command: C) => Promise<void>): void {
  process.on('message', (command: C) => {
    handle(command).catch((err: unknown) => reply({ type: 'fatal', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }));
  });
  process.on('disconnect', () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------
// Latency histogram: one count per millisecond up to a minute (exact at the resolution of a
// reading's `ts`, which is whole milliseconds), plus an overflow count; merged across clients.

/** [latency ms, count] pairs of the non-empty buckets, and the largest value seen. */
export interface SparseHistogram {
  readonly buckets: readonly (readonly [number, number])[];
  readonly maxMs: number;
}

export class LatencyHistogram {
  static readonly limitMs = 60_000;
  readonly #counts = new Uint32Array(LatencyHistogram.limitMs + 1);
  count = 0;
  maxMs = 0;

  /** A latency in ms; negative values (clock granularity) count as 0, above a minute in the last bucket. */
  record(ms: number): void {
    const bucket = ms <= 0 ? 0 : ms >= LatencyHistogram.limitMs ? LatencyHistogram.limitMs : Math.round(ms);
    this.#counts[bucket] = (this.#counts[bucket] ?? 0) + 1;
    this.count++;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  add(sparse: SparseHistogram): void {
    for (const [ms, n] of sparse.buckets) {
      this.#counts[ms] = (this.#counts[ms] ?? 0) + n;
      this.count += n;
    }
    this.maxMs = Math.max(this.maxMs, sparse.maxMs);
  }

  sparse(): SparseHistogram {
    const buckets: [number, number][] = [];
    this.#counts.forEach((n, ms) => {
      if (n > 0) buckets.push([ms, n]);
    });
    return { buckets, maxMs: this.maxMs };
  }

  /** The smallest latency (ms) that at least `q` of the values do not exceed; NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let ms = 0; ms < this.#counts.length; ms++) {
      seen += this.#counts[ms] as number;
      if (seen >= rank) return ms;
    }
    return LatencyHistogram.limitMs;
  }
}
