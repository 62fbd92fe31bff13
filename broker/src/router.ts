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

type MQEmitterFactory = (options: { concurrency: number; matchEmptyLevels: boolean }) => Emitter;

const requireCjs = createRequire(import.meta.url);
// mqemitter comes with aedes (the broker does not depend on it): load it from there.
const requireAedes = createRequire(createRequire(import.meta.url).resolve('aedes'));
const mqemitter = requireAedes('mqemitter') as MQEmitterFactory;

/** What Aedes builds when given no `mq` (mqemitter, empty topic levels match [MQTT-4.7.1-3]), with O(1) queues. */
export function createRouter(concurrency: number): Router {
  return withFifoQueues(mqemitter({ concurrency, matchEmptyLevels: true }));
}

export const ROUTER_DEFAULTS = {
  /** Messages routed one inside the other's completion before the rest wait for the next turn of the event loop. */
  maxNesting: 200,
  /** Messages that waited for a turn routed per turn of the event loop, so I/O is not starved. */
  resumeBatch: 1_000,
} as const;

type Emitter = Router & { _messageQueue: unknown; _messageCallbacks: unknown; _do?: (message: unknown, done: unknown) => unknown; current?: number };

function withFifoQueues<R extends Emitter>(router: R): R {
  if (!Array.isArray(router._messageQueue) || !Array.isArray(router._messageCallbacks) || typeof router._do !== 'function' || typeof router.current !== 'number') {
    throw new Error('mqemitter changed: _messageQueue/_messageCallbacks are no longer arrays, or _do/current are gone; review broker/src/router.ts');
  }
  router._messageQueue = new Fifo();
  router._messageCallbacks = new Fifo();
  return withBoundedNesting(router);
}

/**
 * When a routed message's subscribers all finish at once (none matched: a node of a cluster sees
 * every message and holds the subscribers of some; or a duplicate dropped), mqemitter takes the
 * next queued message inside that completion: `released → _do → fastparallel → released …`, one
 * set of stack frames per message. A queue of tens of thousands of messages (a backlog, a burst
 * from Redis) then overflowed the stack and killed the broker (RangeError: Maximum call stack size
 * exceeded, seen at 10,000 messages/s). Past `maxNesting` messages deep, messages wait for the next
 * turn of the event loop instead, in order: once one waits, every later one waits behind it (a
 * subscriber's dedupe drops a message that arrives after a later one of the same node), and each
 * keeps its slot of the emitter's concurrency meanwhile, so new messages queue behind them too.
 */
function withBoundedNesting<R extends Emitter>(router: R): R {
  const route = router._do as (this: R, message: unknown, done: unknown) => unknown;
  const waiting = new Fifo<{ readonly message: unknown; readonly done: unknown }>();
  let depth = 0;
  let scheduled = false;
  const run = (message: unknown, done: unknown) => {
    depth++;
    try {
      return route.call(router, message, done);
    } finally {
      depth--;
    }
  };
  const resume = () => {
    scheduled = false;
    for (let n = 0; n < ROUTER_DEFAULTS.resumeBatch && waiting.length > 0; n++) {
      const next = waiting.shift() as { message: unknown; done: unknown };
      (router.current as number)--;
      run(next.message, next.done);
    }
    if (waiting.length > 0) schedule();
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(resume);
  };
  router._do = function boundedDo(message: unknown, done: unknown) {
    if (waiting.length === 0 && depth < ROUTER_DEFAULTS.maxNesting) return run(message, done);
    (router.current as number)++;
    waiting.push({ message, done });
    schedule();
    return router;
  };
  return router;
}

export interface RedisRouter {
  /** Pass to buildBroker({ mq }); Aedes closes it (and its two connections) when it closes. */
  readonly router: Router;
  /** For logs: redis://host:port/db. */
  readonly where: string;
  /** Both connections are up: messages reach the other nodes (for /healthz and /readyz). */
  connected(): boolean;
}

/**
 * The router of a broker cluster: mqemitter-redis, so a message published on any node reaches the
 * subscribers of every node (each message is one Redis PUBLISH, and comes back to every node,
 * this one included, through its subscriber connection). Sessions, queued messages and retained
 * messages are shared separately, by the Redis store (BROKER_STORE=redis). Both connections are
 * made and checked before the broker starts, so a Redis that is down fails the start clearly.
 */
export async function createRedisRouter(concurrency: number, redisUrl: string | undefined, logger: Logger, admission: Partial<AdmissionSettings> = {}): Promise<RedisRouter> {
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
  const MQEmitterRedis = requireCjs('mqemitter-redis') as (options: Record<string, unknown>) => Emitter & {
    state: { on(event: 'error', listener: (err: Error) => void): void };
    _topics: Record<string, number>;
    emit: (message: unknown, done?: (err?: Error) => void) => unknown;
    close: (done?: () => void) => unknown;
  };
  const router = withAdmission(withFifoQueues(MQEmitterRedis({ pubConn: pub.conn, subConn: sub.conn, concurrency, matchEmptyLevels: true })), { ...ADMISSION_DEFAULTS, ...admission }, logger);
  ignoreForeignChannels(sub.conn, logger);
  // The connections log their own outages (connectRedis); without a listener the emitter's
  // 'error' would throw.
  router.state.on('error', () => undefined);
  resubscribeOnReconnect(router, sub.conn, logger);
  return { router, where: pub.where, connected: () => pub.conn.status === 'ready' && sub.conn.status === 'ready' };
}

/**
 * mqemitter-redis counts a topic as subscribed before Redis confirms it, and ioredis subscribes
 * again after a reconnect only to what Redis confirmed: a SUBSCRIBE that failed in an outage (a
 * client subscribing meanwhile) stayed lost, and the node silently missed that topic from the
 * other nodes until it restarted. After every reconnect each topic the emitter holds is subscribed
 * again (Redis ignores a repeat). A topic with '*' is a pattern: mqemitter-redis turns + and # into
 * '*', and a literal '*' subscribed as a pattern only brings messages its matcher then drops.
 */
function resubscribeOnReconnect(router: { readonly _topics: Record<string, number> }, sub: RedisConnection, logger: Logger): void {
  if (typeof router._topics !== 'object') throw new Error('mqemitter-redis changed: _topics is gone; review broker/src/router.ts');
  sub.on('ready', () => {
    const topics = Object.keys(router._topics);
    const patterns = topics.filter((t) => t.includes('*'));
    const channels = topics.filter((t) => !t.includes('*'));
    const failed = (err: unknown) => logger.warn({ code: 'E_UPSTREAM', err }, 'MQTT cluster router (Redis): subscribing again after a reconnect failed; it is tried again on the next one');
    if (patterns.length > 0) sub.psubscribe(...patterns).catch(failed);
    if (channels.length > 0) sub.subscribe(...channels).catch(failed);
  });
}

type RedisConnection = Awaited<ReturnType<typeof connectRedis>>['conn'];

export const ADMISSION_DEFAULTS = {
  /** Messages this node has taken from Redis and not yet delivered, past which publishers wait. */
  holdAbove: 10_000,
  /** …and below which they go on. */
  releaseBelow: 2_000,
  /** Longest a publisher waits (well under any keep-alive: its socket is not read meanwhile). */
  maxHoldMs: 5_000,
  checkMs: 50,
} as const;
export type AdmissionSettings = { -readonly [K in keyof typeof ADMISSION_DEFAULTS]: number };

/**
 * Back-pressure across the cluster. On one node a publish completes once its subscribers have
 * taken it (mqemitter calls back when every delivery is written), and Aedes reads a client's next
 * packets only then: a node that cannot deliver as fast as devices publish slows the devices. A
 * cluster's router calls back once Redis has the PUBLISH, whatever the subscribers' nodes make of
 * it, so devices were acknowledged at the full offered rate while the nodes' routers fell minutes
 * behind (measured: 10,000 readings/s acknowledged on 2 cores, 700/s delivered to ingest, whose
 * reconnects then waited behind the backlog). Here, while this node's router holds more than
 * `holdAbove` messages taken from Redis and not yet delivered, the completion of the publishes made
 * on this node waits until it is back under `releaseBelow` (or `maxHoldMs` passed): their devices'
 * next packets are read later, and the cluster takes what its slowest node delivers. PUBACKs are
 * not held (a message is acknowledged once stored), only the reading of what comes after.
 */
function withAdmission<R extends Emitter & { emit: (message: unknown, done?: (err?: Error) => void) => unknown; close: (done?: () => void) => unknown }>(router: R, settings: AdmissionSettings, logger: Logger): R {
  if (typeof router.emit !== 'function') throw new Error('mqemitter-redis changed: no emit; review broker/src/router.ts');
  const emit = router.emit.bind(router);
  let held: Array<{ readonly at: number; readonly release: () => void }> = [];
  let timer: NodeJS.Timeout | undefined;
  let holding = false;
  const backlog = () => (router.current ?? 0) + router.length;
  const release = () => {
    const waiting = held;
    held = [];
    for (const h of waiting) h.release();
  };
  const check = () => {
    const caughtUp = backlog() <= settings.releaseBelow;
    const oldest = held[0];
    if (!caughtUp && oldest && Date.now() - oldest.at < settings.maxHoldMs) return;
    if (caughtUp) {
      holding = false;
      clearInterval(timer);
      timer = undefined;
    }
    release();
  };
  router.emit = ((message: unknown, done?: (err?: Error) => void) =>
    emit(message, (err?: Error) => {
      if (!holding && backlog() > settings.holdAbove) {
        holding = true;
        logger.debug({ backlog: backlog() }, 'MQTT cluster router behind: publishers wait');
        timer ??= setInterval(check, settings.checkMs).unref();
      }
      if (!holding) return done?.(err);
      held.push({ at: Date.now(), release: () => done?.(err) });
    }));
  const close = router.close.bind(router);
  router.close = (done?: () => void) => {
    clearInterval(timer);
    timer = undefined;
    holding = false;
    release();
    return close(done);
  };
  return router;
}

/**
 * mqemitter-redis subscribes an MQTT filter that starts with a wildcard (`#`, `+/…`) as the Redis
 * pattern `*`, which also brings the messages of everything else on that Redis (the device
 * registry's change channel, the api's socket.io adapter), and it decodes each as its own msgpack
 * envelope: a JSON message decoded to a number, and the emitter's assertion then killed the
 * broker. Only the ACL stands in the way of such a filter (a device may not subscribe to `#`), so
 * with BROKER_AUTH=false any client could. Its envelope is always a msgpack map of two entries,
 * { id, msg }: anything else is not the router's and is dropped before it gets there.
 */
function ignoreForeignChannels(sub: RedisConnection, logger: Logger): void {
  const MSGPACK_MAP_OF_TWO = 0x82;
  let warned = false;
  for (const event of ['messageBuffer', 'pmessageBuffer'] as const) {
    const listeners = sub.listeners(event) as ((...args: Buffer[]) => void)[];
    if (listeners.length === 0) throw new Error(`mqemitter-redis changed: no ${event} listener; review broker/src/router.ts`);
    sub.removeAllListeners(event);
    for (const listener of listeners) {
      sub.on(event, (...args: Buffer[]) => {
        const message = args[args.length - 1];
        if (message?.[0] === MSGPACK_MAP_OF_TWO) return listener(...args);
        if (!warned) {
          warned = true;
          logger.warn({ code: 'E_INTERNAL', channel: String(args[args.length - 2]) }, 'MQTT cluster router: ignored a Redis message that is not the router\'s (a subscription to # or +/… matches every channel of the shared Redis)');
        }
      });
    }
  }
}
