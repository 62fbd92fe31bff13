import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { Level } from 'level';
import type { Logger } from 'pino';
import type { Journal, JournalPacket } from './journal.js';

/**
 * The queue of QoS 1/2 messages for persistent sessions (ingest's, above all), made cheap.
 *
 * aedes-persistence-level keeps every queued message in LevelDB under
 * "outgoing:<client>:<broker>:<counter>" and, per message delivered, also a copy under
 * "outgoing-id:<client>:<messageId>": six LevelDB calls and five msgpack passes per message per
 * subscriber, each awaited on its own, then LevelDB's compactions of all of it. Aedes' memory
 * persistence searches an array per delivery and per acknowledgement, which a backlog turns
 * quadratic; aedes-persistence-redis clears each acknowledgement with an LREM that scans the
 * client's list. This replaces the outgoing-queue methods of each:
 * - disk (withJournalQueue): a message is appended once to an append-only log and counted out on
 *   its acknowledgement (journal.ts); a store the LevelDB queue wrote is moved into the log at start;
 * - memory (withMemoryQueue): a map per client, in queue order;
 * - redis (withRedisQueue, redis-queue.ts): a sorted set and a hash per client.
 * Which message a packet id stands for is kept in memory (`inFlight`), as Aedes gives queued
 * messages new packet ids on every reconnect anyway. A put resolves (and the publisher gets its
 * PUBACK) once the message is kept; a delete is not waited for: if it is lost in a crash, the
 * message is delivered again, which the platform's subscribers treat as the same reading.
 * Subscriptions, retained messages, wills and QoS 2 incoming state stay with the plain persistence.
 */
export interface QueuedPacket {
  cmd?: string;
  brokerId?: string;
  brokerCounter?: number;
  topic?: string;
  payload?: Buffer;
  qos?: number;
  messageId?: number;
  [field: string]: unknown;
}
interface Client {
  readonly id: string;
}
interface Subscription {
  readonly clientId: string;
}

/** The async outgoing-queue methods Aedes 1.x calls on its persistence. */
export interface OutgoingQueue {
  outgoingEnqueue(sub: Subscription, packet: QueuedPacket): Promise<void>;
  outgoingEnqueueCombi(subs: readonly Subscription[] | undefined, packet: QueuedPacket): Promise<void>;
  outgoingUpdate(client: Client, packet: QueuedPacket): Promise<void>;
  outgoingClearMessageId(client: Client, packet: QueuedPacket): Promise<QueuedPacket | undefined>;
  outgoingStream(client: Client): Readable;
}

interface Codec {
  encode(value: unknown): Buffer;
  decode(blob: Buffer): QueuedPacket;
}
type PacketConstructor = new (original: QueuedPacket) => QueuedPacket;

// Same encoding and packet copy as aedes-persistence-level (its own dependencies), so entries
// written by either read the same.
const requirePersistence = createRequire(createRequire(import.meta.url).resolve('aedes-persistence-level'));
export const msgpack = requirePersistence('msgpack-lite') as Codec;
export const Packet = requirePersistence('aedes-packet') as PacketConstructor;

const OUTGOING = 'outgoing:';
const OUTGOING_ID = 'outgoing-id:';

/** aedes-persistence-level 9 key layout: ids URI-encoded (no ':'), counters zero-padded to sort. */
const clientPrefix = (clientId: string): string => `${OUTGOING}${encodeURIComponent(clientId)}:`;
const pad = (n: number | undefined): string => String(n ?? 0).padStart(16, '0');
const outgoingKey = (clientId: string, packet: QueuedPacket): string => `${clientPrefix(clientId)}${packet.brokerId}:${pad(packet.brokerCounter)}`;
const prefixRange = (prefix: string) => ({ gte: prefix, lt: `${prefix.slice(0, -1)};` });

interface InFlight {
  readonly key: string;
  packet: QueuedPacket;
}

/** Where a queue keeps its messages: the journal (disk), a map (memory) or Redis. */
export interface QueueBackend {
  /** The key of a client's queued message (default: the LevelDB layout's, outgoingKey). */
  readonly keyOf?: (clientId: string, packet: QueuedPacket) => string;
  /** Stores the message for these clients under its key (or replaces it); resolves once it is kept. */
  put(clientIds: readonly string[], packet: QueuedPacket): Promise<void>;
  /** Replaces a client's message under an existing key (a PUBREL for its publish). */
  replace(clientId: string, key: string, packet: QueuedPacket): Promise<void>;
  del(clientId: string, key: string): void;
  /** A client's queued messages, oldest first. */
  read(clientId: string): AsyncIterable<QueuedPacket>;
  flush(): Promise<void>;
  count(): number | Promise<number>;
  close?(): Promise<void>;
}

export type FastQueue<P> = P & OutgoingQueue & { flushQueue(): Promise<void>; queuedMessages(): Promise<number> };

/**
 * Swaps the outgoing-queue methods of an aedes-persistence-level instance for the journal's. Call
 * before the broker's setup; `setup` moves what the LevelDB queue holds (a store written before
 * the journal, by this broker or the plain persistence) into the journal, drops the
 * "outgoing-id:" copies, and numbers new messages above the journal's.
 */
export function withJournalQueue<P extends object>(persistence: P, journal: Journal, db: Level<string, Buffer>, logger: Logger): FastQueue<P> {
  const backend: QueueBackend = {
    put(clientIds, packet) {
      const copy = new Packet(packet) as JournalPacket;
      if (clientIds.length === 1) return journal.enqueue(outgoingKey(clientIds[0] as string, packet), copy);
      return Promise.all(clientIds.map((id) => journal.enqueue(outgoingKey(id, packet), copy))).then(() => undefined);
    },
    replace: (_clientId, key, packet) => journal.replace(key, packet),
    del: (_clientId, key) => journal.delete(key),
    read: (clientId) => journal.read(clientPrefix(clientId)) as AsyncIterable<QueuedPacket>,
    flush: () => journal.flush(),
    count: () => journal.size,
    close: () => journal.close(),
  };
  return withQueue(persistence, backend, async (broker) => {
    let moved = 0;
    const writes: Promise<void>[] = [];
    for await (const [key, blob] of db.iterator({ ...prefixRange(OUTGOING), valueEncoding: 'buffer' })) {
      writes.push(journal.enqueue(key, msgpack.decode(blob)));
      moved++;
    }
    await Promise.all(writes);
    await journal.flush();
    if (moved > 0) {
      await db.clear(prefixRange(OUTGOING));
      logger.info({ moved }, 'MQTT message queue moved from LevelDB to the journal');
    }
    await db.clear(prefixRange(OUTGOING_ID));
    const max = broker?.id === undefined ? undefined : journal.maxCounter(broker.id);
    if (broker && max !== undefined && broker.counter <= max) broker.counter = max + 1;
  });
}

/**
 * The same queue in memory, for BROKER_STORE=memory: Aedes' own memory persistence keeps a client's
 * queue in an array searched from the start on every delivery and acknowledgement, so once a
 * subscriber falls behind by tens of thousands of messages each PUBACK costs a scan and the broker
 * spends its whole CPU there (measured: 100 % of a core delivering 5,000 messages a second).
 * Here a client's queue is a map in queue order, so both are O(1).
 */
export function withMemoryQueue<P extends object>(persistence: P): FastQueue<P> {
  const queues = new Map<string, Map<string, QueuedPacket>>();
  const backend: QueueBackend = {
    async put(clientIds, packet) {
      for (const id of clientIds) {
        let queue = queues.get(id);
        if (!queue) queues.set(id, (queue = new Map<string, QueuedPacket>()));
        queue.set(outgoingKey(id, packet), new Packet(packet));
      }
    },
    async replace(clientId, key, packet) {
      queues.get(clientId)?.set(key, packet);
    },
    del(clientId, key) {
      const queue = queues.get(clientId);
      if (queue?.delete(key) && queue.size === 0) queues.delete(clientId);
    },
    async *read(clientId) {
      yield* [...(queues.get(clientId)?.values() ?? [])];
    },
    flush: async () => undefined,
    count() {
      let count = 0;
      for (const queue of queues.values()) count += queue.size;
      return count;
    },
  };
  return withQueue(persistence, backend);
}

export interface BrokerIdentity {
  readonly id?: string;
  counter: number;
}

/** Gives a persistence the outgoing-queue methods over a backend (used by redis-queue.ts too). */
export function withQueue<P extends object>(persistence: P, backend: QueueBackend, beforeSetup?: (broker: BrokerIdentity | undefined) => Promise<void>): FastQueue<P> {
  /** Per client id: packet id → the queued message it was last given to. */
  const inFlight = new Map<string, Map<number, InFlight>>();
  const keyOf = backend.keyOf ?? outgoingKey;

  const queue: OutgoingQueue & { flushQueue(): Promise<void>; queuedMessages(): Promise<number> } = {
    async outgoingEnqueue(sub, packet) {
      await backend.put([sub.clientId], packet);
    },
    async outgoingEnqueueCombi(subs, packet) {
      if (!subs || subs.length === 0) return;
      await backend.put(subs.map((sub) => sub.clientId), packet);
    },
    async outgoingUpdate(client, packet) {
      let ids = inFlight.get(client.id);
      if (!ids) inFlight.set(client.id, (ids = new Map<number, InFlight>()));
      if (packet.brokerId) {
        // A queued publish handed to the client under a (new) packet id.
        ids.set(packet.messageId ?? 0, { key: keyOf(client.id, packet), packet });
        return;
      }
      // A PUBREL (QoS 2) replaces the publish it follows, in the store too: it is what a reconnect resends.
      const entry = ids.get(packet.messageId ?? 0);
      if (!entry) throw new Error('no such packet');
      packet.brokerId = entry.packet.brokerId;
      packet.brokerCounter = entry.packet.brokerCounter;
      entry.packet = packet;
      await backend.replace(client.id, entry.key, packet);
    },
    async outgoingClearMessageId(client, packet) {
      const ids = inFlight.get(client.id);
      const id = packet.messageId ?? 0;
      const entry = ids?.get(id);
      if (!entry) {
        // A stored message dropped without a delivery (clean session, or not to be forwarded).
        if (!packet.brokerId) return undefined;
        backend.del(client.id, keyOf(client.id, packet));
        return packet;
      }
      ids!.delete(id);
      if (ids!.size === 0) inFlight.delete(client.id);
      backend.del(client.id, entry.key);
      return entry.packet;
    },
    outgoingStream(client) {
      // A (re)connect: every stored message is sent again under a new packet id, so the ids of
      // the last connection are forgotten.
      inFlight.delete(client.id);
      return Readable.from(backend.read(client.id));
    },
    flushQueue: () => backend.flush(),
    queuedMessages: async () => backend.count(),
  };

  const target = persistence as P & { setup?: (broker: unknown) => Promise<void>; destroy?: () => Promise<void> };
  const setup = target.setup?.bind(persistence);
  const destroy = target.destroy?.bind(persistence);
  // Must stay `async function`s: Aedes checks setup.constructor.name === 'AsyncFunction'.
  Object.assign(persistence, queue, {
    setup: async function setupQueue(broker: BrokerIdentity | undefined) {
      await beforeSetup?.(broker);
      await setup?.(broker);
    },
    destroy: async function destroyQueue() {
      await backend.flush().catch(() => undefined);
      await backend.close?.();
      await destroy?.();
    },
  });
  return persistence as FastQueue<P>;
}
