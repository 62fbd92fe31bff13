import { RedisAdapter } from '@socket.io/redis-adapter';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { CodedError } from '@citypulse/contracts';
import { connectRedis } from '@citypulse/infra';

/**
 * Cluster mode (API_ADAPTER=redis): api nodes joined by @socket.io/redis-adapter, so an event one
 * node raises for everyone (an acknowledgement, a replay's state for its operator's other screens)
 * reaches the dashboards of every node, and a node can ask its peers (a replay control for a
 * session another node holds). Live frames are not shared: each node builds them from its own MQTT
 * subscription (see realtime.ts).
 *
 * When Redis is down each node goes on alone: its screens get what it builds itself, events for
 * everyone reach this node's screens only (the other nodes' never get them: nothing is replayed),
 * a control for a replay on another node is refused at once with E_UPSTREAM, and it all resumes
 * when Redis is back (infra's connectRedis reconnects; no command becomes an unhandled rejection).
 */
export const CLUSTER_DEFAULTS = {
  /** How long a node waits for its peers to answer (a replay control forwarded to the node holding the replay). */
  peerTimeoutMs: 10_000,
  /** Prefix of the adapter's Redis channels: apart from whatever else shares the Redis (the broker's session store). */
  channelPrefix: 'citypulse-api',
} as const;

export interface ClusterOptions {
  /** REDIS_URL: redis://[user:password@]host[:port][/db], or rediss:// for TLS. */
  readonly url: string;
  readonly logger: Logger;
  /** CLUSTER_DEFAULTS.peerTimeoutMs; tests lower it. */
  readonly peerTimeoutMs?: number | undefined;
}

export interface ClusterLink {
  /** Pass to socket.io's `adapter` option. */
  readonly adapter: (nsp: unknown) => RedisAdapter;
  readonly peerTimeoutMs: number;
  /** For logs, e.g. "redis://10.0.0.5:6379/0" (no password). */
  readonly where: string;
  /** Both Redis connections are up: events reach the other nodes (for /healthz). */
  connected(): boolean;
  /** Calls `listener` each time both connections are up again after either dropped. */
  onRejoined(listener: () => void): void;
  /** Closes both connections: call after socket.io closed (its adapter unsubscribes first). */
  close(): Promise<void>;
}

/**
 * Opens the two Redis connections the adapter needs (one publishes, one is held in subscriber
 * mode), each answering PING before this returns: a Redis that is down fails the start with
 * E_UPSTREAM saying what to fix, instead of a node that runs alone while believing it is joined.
 * Afterwards ioredis reconnects by itself; outages are logged, rate-limited.
 */
export async function joinCluster(options: ClusterOptions): Promise<ClusterLink> {
  const { logger } = options;
  const open = (role: 'publish' | 'subscribe') =>
    connectRedis(options.url, {
      purpose: `api cluster (${role})`,
      requiredWhen: 'when API_ADAPTER=redis',
      connectionName: `citypulse-api-${role}`,
      alternative: 'or set API_ADAPTER=local to run a single api node',
      outage: 'acknowledgements and replay controls do not reach the other api nodes until it is back',
      logger,
    });
  const { conn: pub, where } = await open('publish');
  let sub: Redis;
  try {
    sub = (await open('subscribe')).conn;
  } catch (err) {
    pub.disconnect();
    throw err;
  }
  const peerTimeoutMs = options.peerTimeoutMs ?? CLUSTER_DEFAULTS.peerTimeoutMs;
  logger.info({ redis: where }, 'api cluster: joined through Redis');
  const rejoined: Array<() => void> = [];
  let apart = false;
  for (const conn of [pub, sub]) {
    conn.on('close', () => (apart = true));
    conn.on('ready', () => {
      if (!apart || pub.status !== 'ready' || sub.status !== 'ready') return;
      apart = false;
      for (const listener of rejoined) listener();
    });
  }
  let closing: Promise<void> | undefined;
  return {
    // A function, not an arrow: socket.io calls it with `new` (as it would the adapter's class).
    adapter: function outageAwareAdapter(nsp: unknown) {
      return new OutageAwareAdapter(nsp, pub, sub, { key: CLUSTER_DEFAULTS.channelPrefix, requestsTimeout: peerTimeoutMs });
    },
    peerTimeoutMs,
    where,
    connected: () => pub.status === 'ready' && sub.status === 'ready',
    onRejoined: (listener) => void rejoined.push(listener),
    close: () =>
      (closing ??= (async () => {
        // quit() lets what was published finish (the 'stopped' state of replays ended by the close).
        await Promise.all([pub, sub].map(async (conn) => (conn.status === 'ready' ? conn.quit().catch(() => undefined) : undefined)));
        pub.disconnect();
        sub.disconnect();
      })()),
  };
}

/**
 * @socket.io/redis-adapter 8.3, with an answer for every peer request. Its serverSideEmit with an
 * acknowledgement first counts the peers (PUBSUB NUMSUB) and, when that fails (Redis is down),
 * drops the error without ever calling the acknowledgement: an operator's replay control waited
 * for nothing. Here a request fails at once with E_UPSTREAM while Redis is away, and gets an
 * answer in any case once twice the peers' time is over.
 */
class OutageAwareAdapter extends RedisAdapter {
  readonly #pub: Redis;
  readonly #timeoutMs: number;

  constructor(nsp: unknown, pub: Redis, sub: Redis, options: { key: string; requestsTimeout: number }) {
    super(nsp, pub, sub, options);
    this.#pub = pub;
    this.#timeoutMs = options.requestsTimeout;
  }

  override serverSideEmit(packet: unknown[]): void {
    const ack = packet.at(-1);
    if (typeof ack !== 'function') return super.serverSideEmit(packet);
    const answer = ack as (err: Error | null, responses: unknown[]) => void;
    if (this.#pub.status !== 'ready') return answer(unreachable(), []);
    let answered = false;
    const once = (err: Error | null, responses: unknown[]) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      answer(err, responses);
    };
    const timer = setTimeout(() => once(unreachable(), []), 2 * this.#timeoutMs);
    super.serverSideEmit([...packet.slice(0, -1), once]);
  }
}

const unreachable = () => new CodedError('E_UPSTREAM', 'the other api nodes cannot be reached now (their Redis is unavailable): try again shortly, or from the screen that started the replay');
