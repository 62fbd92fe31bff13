import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import type { Level } from 'level';
import type { Logger } from 'pino';
import { CodedError } from '@citypulse/contracts';
import { connectRedis } from '@citypulse/infra';
import { BROKER_STORES } from './config.js';
import { Journal } from './journal.js';
import { withRedisQueue } from './redis-queue.js';
import { withJournalQueue, withMemoryQueue, type FastQueue } from './session-queue.js';

/**
 * Where the broker keeps MQTT sessions: subscriptions of persistent (clean: false) clients, their
 * queued QoS 1/2 messages, retained messages and wills. 'memory' loses them on restart; 'disk'
 * (LevelDB under DATA_DIR) and 'redis' keep them, so ingest's queue survives a broker restart.
 */
export type BrokerStoreKind = (typeof BROKER_STORES)[number];

export const BROKER_STORE_DEFAULTS = {
  /** LevelDB folder inside DATA_DIR (subscriptions, retained messages, wills). */
  diskFolder: 'mqtt-sessions',
  /** Folder of the queued-message journal inside DATA_DIR (beside LevelDB's: it would take the segment files for its own logs). */
  queueFolder: 'mqtt-queue',
  /** Longest close() waits for the persistence to let go before dropping the connection. */
  closeTimeoutMs: 5_000,
} as const;

export interface BrokerStore {
  readonly kind: BrokerStoreKind;
  /** Pass to buildBroker({ persistence }). */
  readonly persistence: unknown;
  /** For logs, e.g. "disk (/var/lib/citypulse/mqtt-sessions, queue /var/lib/citypulse/mqtt-queue)". */
  readonly description: string;
  /**
   * QoS 1/2 messages stored for persistent sessions and not yet acknowledged (queued while the
   * client is away, or in flight). May read the store: call it from a metrics scrape, not per message.
   */
  queuedMessages?(): Promise<number>;
  /** 'redis' only: whether Redis is reachable now (for /healthz and /readyz). */
  connected?(): boolean;
  /** Releases the LevelDB lock / Redis connection. Close the broker first; safe to call twice. */
  close(): Promise<void>;
}

export interface OpenBrokerStoreOptions {
  readonly kind: BrokerStoreKind;
  /** The service's DATA_DIR; 'disk' uses `${dataDir}/mqtt-sessions` and `${dataDir}/mqtt-queue`. */
  readonly dataDir: string;
  /** redis://[user:password@]host[:port][/db] — required for 'redis'. */
  readonly redisUrl?: string;
  readonly logger: Logger;
}

/** The slice of an aedes persistence (aedes-persistence 11 CallBackPersistence) used here. */
interface AedesPersistence {
  setup(broker: BrokerCounter): Promise<void>;
  destroy(): Promise<void>;
}
interface BrokerCounter {
  counter: number;
}


// The persistences are CommonJS without type declarations: load them (only when chosen) with require.
const requireCjs = createRequire(import.meta.url);

export async function openBrokerStore(options: OpenBrokerStoreOptions): Promise<BrokerStore> {
  const { kind } = options;
  switch (kind) {
    case 'memory': {
      const persistence = memoryPersistence();
      return {
        kind,
        persistence,
        description: 'memory (sessions and queued messages are lost on restart)',
        queuedMessages: () => persistence.queuedMessages(),
        close: once(() => bounded(persistence.destroy(), options.logger, 'memory session store')),
      };
    }
    case 'disk':
      return openDisk(options);
    case 'redis':
      return openRedis(options);
    default:
      throw new CodedError('E_CONFIG', `BROKER_STORE "${String(kind)}" must be one of ${BROKER_STORES.join(', ')}`);
  }
}

/** Aedes' own memory persistence, its queue swapped for one that stays O(1) per message (session-queue.ts). */
export function memoryPersistence(): FastQueue<AedesPersistence> {
  const createMemoryPersistence = requireCjs('aedes-persistence') as () => AedesPersistence;
  return withMemoryQueue(createMemoryPersistence());
}

async function openDisk(options: OpenBrokerStoreOptions): Promise<BrokerStore> {
  const location = resolve(options.dataDir, BROKER_STORE_DEFAULTS.diskFolder);
  await mkdir(location, { recursive: true });
  // Imported here: the native LevelDB binding is loaded only when the disk store is chosen.
  const { Level } = await import('level');
  const db = new Level<string, Buffer>(location);
  try {
    await db.open();
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new CodedError('E_CONFIG', `MQTT session store ${location} is in use by another process: stop the other broker, or give this one its own DATA_DIR`, { cause: err });
    }
    throw new CodedError('E_INTERNAL', `cannot open MQTT session store ${location} (${(err as Error).message}): if it is damaged, move the folder aside to start with empty sessions`, { cause: err });
  }
  // LevelDB's lock (held from here on) keeps a second broker off the journal too.
  const queueLocation = resolve(options.dataDir, BROKER_STORE_DEFAULTS.queueFolder);
  let journal: Journal;
  try {
    journal = await Journal.open(queueLocation, options.logger);
  } catch (err) {
    await db.close();
    throw new CodedError('E_INTERNAL', `cannot read the MQTT message queue ${queueLocation} (${(err as Error).message}): if it is damaged, move the folder aside to start with an empty queue`, { cause: err });
  }
  const createLevelPersistence = requireCjs('aedes-persistence-level') as (db: Level<string, Buffer>) => AedesPersistence;
  const persistence = withUniqueCounters(withJournalQueue(createLevelPersistence(db), journal, db, options.logger));
  return {
    kind: 'disk',
    persistence,
    description: `disk (${location}, queue ${queueLocation})`,
    queuedMessages: () => persistence.queuedMessages(),
    close: once(async () => {
      await bounded(persistence.destroy(), options.logger, 'disk session store');
      await journal.close();
      if (db.status !== 'closed') await db.close();
    }),
  };
}

/**
 * While Redis is down a QoS 1/2 message that cannot be stored is not acknowledged: aedes (with
 * our patch) sends the PUBACK only once the message is queued for the persistent sessions, and
 * ends the connection when that fails; the device sends it again when it reconnects. Logins need
 * the store too, so they fail until Redis is back (infra's connectRedis reconnects by itself).
 */
async function openRedis(options: OpenBrokerStoreOptions): Promise<BrokerStore> {
  const { logger } = options;
  const { conn, where } = await connectRedis(options.redisUrl, { purpose: 'MQTT session store', requiredWhen: 'when BROKER_STORE=redis', logger });
  const createRedisPersistence = requireCjs('aedes-persistence-redis') as (opts: { conn: unknown; maxSessionDelivery: number }) => AedesPersistence & { addSubscriptions(client: unknown, subs: readonly unknown[]): Promise<unknown> };
  // maxSessionDelivery -1 replays the whole queue on reconnect: the default (1000) leaves the
  // rest of a long outage's backlog waiting until the client's next reconnect. (Its queue is
  // replaced by withRedisQueue's; the option still covers anything that reads its lists.)
  const persistence = withUniqueCounters(withRedisQueue(withOneStorePerSubscribe(createRedisPersistence({ conn, maxSessionDelivery: -1 })), conn, logger));
  return {
    kind: 'redis',
    persistence,
    description: `redis (${where})`,
    // A scrape during an outage answers at once, without the queue depth, rather than wait for Redis.
    queuedMessages: () => (conn.status === 'ready' ? persistence.queuedMessages() : Promise.reject(new CodedError('E_UPSTREAM', `Redis at ${where} is unavailable`))),
    connected: () => conn.status === 'ready',
    close: once(async () => {
      // quit() lets commands already sent finish; destroy() then only unsubscribes from the broker.
      if (conn.status === 'ready') await conn.quit().catch(() => undefined);
      await bounded(persistence.destroy(), logger, 'redis session store');
      conn.disconnect();
    }),
  };
}

/**
 * Aedes numbers messages per broker (`counter`, from 0 on every start) and both persistences key
 * queued messages by broker id + counter. The platform's broker id is fixed, so after a restart
 * new messages would reuse the keys of messages still queued and overwrite them. Starting the
 * counter at the clock in microseconds keeps keys unique across restarts (and LevelDB's queue in
 * publish order), as long as the broker handles fewer than a million messages a second.
 */
function withUniqueCounters<P extends AedesPersistence>(persistence: P): P {
  const setup = persistence.setup.bind(persistence);
  // Must stay an `async function`: aedes checks setup.constructor.name === 'AsyncFunction'.
  persistence.setup = async (broker: BrokerCounter) => {
    broker.counter = Math.max(broker.counter, Date.now() * 1000);
    await setup(broker);
  };
  return persistence;
}

/**
 * Aedes (1.2, lib/handlers/subscribe.js) stores a persistent client's SUBSCRIBE once per filter
 * in it, each time with all of the packet's filters. aedes-persistence-redis then broadcasts each
 * store on `$SYS/sub/add` and waits for it to come back, keyed by client id and first filter, so
 * the waits of one packet overwrite each other: only one is ever released. With the local router
 * the broadcast comes back before the next store starts; through Redis (BROKER_MQ=redis) it does
 * not, and the SUBACK of a packet with two or more filters never came (ingest subscribes to 34).
 * Storing each packet's filters once, as the calls all carry the same array, removes the race and
 * N − 1 Redis round trips per SUBSCRIBE.
 */
function withOneStorePerSubscribe<P extends AedesPersistence & { addSubscriptions(client: unknown, subs: readonly unknown[]): Promise<unknown> }>(persistence: P): P {
  const add = persistence.addSubscriptions.bind(persistence);
  const inFlight = new WeakMap<readonly unknown[], Promise<unknown>>();
  persistence.addSubscriptions = (client: unknown, subs: readonly unknown[]) => {
    const pending = inFlight.get(subs);
    if (pending) return pending;
    const stored = add(client, subs);
    inFlight.set(subs, stored);
    return stored;
  };
  return persistence;
}

/** Aedes' close() does not destroy the persistence; destroy() can hang or throw if the broker never set it up. */
async function bounded(work: Promise<unknown>, logger: Logger, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((done) => {
    timer = setTimeout(() => {
      logger.warn({ what }, `closing the ${what} took longer than ${BROKER_STORE_DEFAULTS.closeTimeoutMs} ms; dropping it`);
      done();
    }, BROKER_STORE_DEFAULTS.closeTimeoutMs);
  });
  try {
    await Promise.race([work, timeout]);
  } catch (err) {
    logger.debug({ err, what }, 'session store destroy failed (already closed?)');
  } finally {
    clearTimeout(timer);
  }
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}
