import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import { connectRedis } from '@citypulse/infra';

/**
 * Aedes' router (mqemitter) with a queue that stays cheap when it backs up.
 *
 * mqemitter routes at most `concurrency` messages at once and queues the rest in two arrays it
 * drains with Array#shift. Once such an array is large, V8 copies it on every shift, so a queue of
 * n messages costs O(n²): a subscriber that falls behind (ingest waiting for InfluxDB, a slow
 * link) turned into a broker at 100 % CPU that could no longer catch up (profiled at 10,000
 * messages/s: 26 % of the broker's busy time in mqemitter's `released`). The same router, with both
 * queues swapped for a FIFO whose shift is O(1).
 */
export interface Router {
  readonly length: number;
  [member: string]: unknown;
}

/** First in, first out, O(1) amortised: an array read from a moving head, compacted now and then. */
export class Fifo<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): number {
    this.items.push(item);
    return this.length;
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 4096 && this.head * 2 >= this.items.length) {
      // Amortised: at least as many shifts happened as elements are copied.
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

type MQEmitterFactory = (options: { concurrency: number; matchEmptyLevels: boolean }) => Router & {
  _messageQueue: unknown;
  _messageCallbacks: unknown;
};

const requireCjs = createRequire(import.meta.url);
// mqemitter comes with aedes (the broker does not depend on it): load it from there.
const requireAedes = createRequire(createRequire(import.meta.url).resolve('aedes'));
const mqemitter = requireAedes('mqemitter') as MQEmitterFactory;

/** What Aedes builds when given no `mq` (mqemitter, empty topic levels match [MQTT-4.7.1-3]), with O(1) queues. */
export function createRouter(concurrency: number): Router {
  return withFifoQueues(mqemitter({ concurrency, matchEmptyLevels: true }));
}

function withFifoQueues<R extends Router & { _messageQueue: unknown; _messageCallbacks: unknown }>(router: R): R {
  if (!Array.isArray(router._messageQueue) || !Array.isArray(router._messageCallbacks)) {
    throw new Error('mqemitter changed: _messageQueue/_messageCallbacks are no longer arrays; review broker/src/router.ts');
  }
  router._messageQueue = new Fifo();
  router._messageCallbacks = new Fifo();
  return router;
}

export interface RedisRouter {
  /** Pass to buildBroker({ mq }); Aedes closes it (and its two connections) when it closes. */
  readonly router: Router;
  /** For logs: redis://host:port/db. */
  readonly where: string;
}

/**
 * The router of a broker cluster: mqemitter-redis, so a message published on any node reaches the
 * subscribers of every node (each message is one Redis PUBLISH, and comes back to every node,
 * this one included, through its subscriber connection). Sessions, queued messages and retained
 * messages are shared separately, by the Redis store (BROKER_STORE=redis). Both connections are
 * made and checked before the broker starts, so a Redis that is down fails the start clearly.
 */
export async function createRedisRouter(concurrency: number, redisUrl: string | undefined, logger: Logger): Promise<RedisRouter> {
  const connect = (role: 'publish' | 'subscribe') =>
    connectRedis(redisUrl, { purpose: `MQTT cluster router (${role})`, requiredWhen: 'when BROKER_MQ=redis', connectionName: `citypulse-broker-${role}`, logger });
  const pub = await connect('publish');
  let sub: Awaited<ReturnType<typeof connectRedis>>;
  try {
    sub = await connect('subscribe');
  } catch (err) {
    pub.conn.disconnect();
    throw err;
  }
  const MQEmitterRedis = requireCjs('mqemitter-redis') as (options: Record<string, unknown>) => Router & {
    _messageQueue: unknown;
    _messageCallbacks: unknown;
    state: { on(event: 'error', listener: (err: Error) => void): void };
  };
  const router = withFifoQueues(MQEmitterRedis({ pubConn: pub.conn, subConn: sub.conn, concurrency, matchEmptyLevels: true }));
  // The connections log their own outages (connectRedis); without a listener the emitter's
  // 'error' would throw.
  router.state.on('error', () => undefined);
  return { router, where: pub.where };
}
