import { createAdapter } from '@socket.io/redis-adapter';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { connectRedis } from '@citypulse/infra';

/**
 * Cluster mode (API_ADAPTER=redis): api nodes joined by @socket.io/redis-adapter, so an event one
 * node raises for everyone (an acknowledgement, a replay's state for its operator's other screens)
 * reaches the dashboards of every node, and a node can ask its peers (a replay control for a
 * session another node holds). Live frames are not shared: each node builds them from its own MQTT
 * subscription (see realtime.ts).
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
  readonly adapter: ReturnType<typeof createAdapter>;
  readonly peerTimeoutMs: number;
  /** For logs, e.g. "redis://10.0.0.5:6379/0" (no password). */
  readonly where: string;
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
  let closing: Promise<void> | undefined;
  return {
    adapter: createAdapter(pub, sub, { key: CLUSTER_DEFAULTS.channelPrefix, requestsTimeout: peerTimeoutMs }),
    peerTimeoutMs,
    where,
    close: () =>
      (closing ??= (async () => {
        // quit() lets what was published finish (the 'stopped' state of replays ended by the close).
        await Promise.all([pub, sub].map(async (conn) => (conn.status === 'ready' ? conn.quit().catch(() => undefined) : undefined)));
        pub.disconnect();
        sub.disconnect();
      })()),
  };
}
