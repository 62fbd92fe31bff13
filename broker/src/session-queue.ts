import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { Level } from 'level';
import type { Logger } from 'pino';

/**
 * The queue of QoS 1/2 messages for persistent sessions on the disk store, made cheap.
 *
 * aedes-persistence-level keeps every queued message under "outgoing:<client>:<broker>:<counter>"
 * and, per message delivered, also a copy under "outgoing-id:<client>:<messageId>": six LevelDB
 * calls (put; get, put, put; get, del+del) and five msgpack passes per message per subscriber,
 * each awaited on its own. At a few thousand messages a second that is the broker's whole CPU,
 * and Aedes' router (mqemitter) backs up behind it.
 *
 * This replaces the outgoing-queue methods of that persistence, on the same database and the same
 * keys (a store written by the plain persistence is read as before):
 * - a message is written once (put at enqueue) and deleted once (on PUBACK/PUBCOMP); which message
 *   a packet id stands for is kept in memory (`inFlight`), as Aedes gives queued messages new
 *   packet ids on every reconnect anyway;
 * - writes are group-committed: every put and delete that arrives while a LevelDB batch is being
 *   written goes into the next batch, so there is one batch in flight, sized by the load;
 * - a put is confirmed (and the publisher gets its PUBACK) only once its batch is written; a
 *   delete is not waited for: if it is lost in a crash, the message is delivered again, which the
 *   platform's subscribers treat as the same reading.
 * Subscriptions, retained messages, wills and QoS 2 incoming state stay with the plain persistence.
 *
 * The memory store gets the same queue over a map (withMemoryQueue): Aedes' memory persistence
 * searches an array per delivery and per acknowledgement, which a backlog turns quadratic.
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

type Batch = Array<{ type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string }>;

interface Codec {
  encode(value: unknown): Buffer;
  decode(blob: Buffer): QueuedPacket;
}
type PacketConstructor = new (original: QueuedPacket) => QueuedPacket;

// Same encoding and packet copy as aedes-persistence-level (its own dependencies), so entries
// written by either read the same.
const requirePersistence = createRequire(createRequire(import.meta.url).resolve('aedes-persistence-level'));
const msgpack = requirePersistence('msgpack-lite') as Codec;
const Packet = requirePersistence('aedes-packet') as PacketConstructor;

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

/** Puts and deletes grouped into one LevelDB batch at a time. */
class GroupCommit {
  /** Key → value to put, or null to delete; insertion order is write order within a batch. */
  private pending = new Map<string, Buffer | null>();
  private waiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private writing: Promise<void> | undefined;
  private scheduled = false;

  constructor(
    private readonly db: Level<string, Buffer>,
    private readonly logger: Logger,
  ) {}

  /** Resolves once the value is in LevelDB (its write-ahead log, written by the OS). */
  put(key: string, value: Buffer): Promise<void> {
    this.pending.set(key, value);
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.schedule();
    });
  }

  /** Not waited for: a delete lost in a crash means one more delivery, never a lost message. */
  del(key: string): void {
    this.pending.set(key, null);
    this.schedule();
  }

  /** Everything queued so far is written (or failed). */
  async flush(): Promise<void> {
    while (this.writing || this.pending.size > 0) {
      if (!this.writing) this.write();
      await this.writing;
    }
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    // setImmediate: the puts and deletes of this turn of the event loop share the first batch.
    setImmediate(() => this.write());
  }

  private write(): void {
    this.scheduled = false;
    if (this.writing || this.pending.size === 0) return;
    const batch: Batch = [];
    for (const [key, value] of this.pending) batch.push(value === null ? { type: 'del', key } : { type: 'put', key, value });
    const waiters = this.waiters;
    this.pending = new Map();
    this.waiters = [];
    this.writing = this.db.batch(batch, { valueEncoding: 'buffer' }).then(
      () => {
        for (const waiter of waiters) waiter.resolve();
      },
      (err: Error) => {
        this.logger.error({ err, code: 'E_INTERNAL', operations: batch.length }, 'MQTT session store write failed; publishers get no PUBACK and will resend');
        for (const waiter of waiters) waiter.reject(err);
      },
    ).finally(() => {
      this.writing = undefined;
      if (this.pending.size > 0) this.write();
    });
  }
}

/** Where a queue keeps its messages: LevelDB (disk) or a map (memory). */
interface QueueBackend {
  /** Stores the message for these clients under its key (or replaces it); resolves once it is kept. */
  put(clientIds: readonly string[], packet: QueuedPacket): Promise<void>;
  /** Replaces a client's message under an existing key (a PUBREL for its publish). */
  replace(clientId: string, key: string, packet: QueuedPacket): Promise<void>;
  del(clientId: string, key: string): void;
  /** A client's queued messages, oldest first. */
  read(clientId: string): AsyncIterable<QueuedPacket>;
  flush(): Promise<void>;
  count(): number | Promise<number>;
}

export type FastQueue<P> = P & OutgoingQueue & { flushQueue(): Promise<void>; queuedMessages(): Promise<number> };

/**
 * Swaps the outgoing-queue methods of an aedes-persistence-level instance (see above) for the
 * group-committed ones. Call before the broker's setup; `setup` also drops the "outgoing-id:"
 * copies a store written by the plain persistence may hold (the ids they map are not reused).
 */
export function withGroupCommittedQueue<P extends object>(persistence: P, db: Level<string, Buffer>, logger: Logger): FastQueue<P> {
  const commits = new GroupCommit(db, logger);
  const backend: QueueBackend = {
    put(clientIds, packet) {
      const value = msgpack.encode(new Packet(packet));
      if (clientIds.length === 1) return commits.put(outgoingKey(clientIds[0] as string, packet), value);
      return Promise.all(clientIds.map((id) => commits.put(outgoingKey(id, packet), value))).then(() => undefined);
    },
    replace: (_clientId, key, packet) => commits.put(key, msgpack.encode(packet)),
    del: (_clientId, key) => commits.del(key),
    async *read(clientId) {
      // What waits for a batch must be on disk before the read.
      await commits.flush();
      for await (const blob of db.values({ ...prefixRange(clientPrefix(clientId)), valueEncoding: 'buffer' })) yield msgpack.decode(blob);
    },
    flush: () => commits.flush(),
    async count() {
      // Keys "outgoing:<client>:<broker>:<counter>", one per unacknowledged message (aedes-persistence-level 9).
      let count = 0;
      for await (const _key of db.keys(prefixRange(OUTGOING))) count++;
      return count;
    },
  };
  return withQueue(persistence, backend, async () => {
    await db.clear(prefixRange(OUTGOING_ID));
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

function withQueue<P extends object>(persistence: P, backend: QueueBackend, beforeSetup?: () => Promise<void>): FastQueue<P> {
  /** Per client id: packet id → the queued message it was last given to. */
  const inFlight = new Map<string, Map<number, InFlight>>();

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
        ids.set(packet.messageId ?? 0, { key: outgoingKey(client.id, packet), packet });
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
        backend.del(client.id, outgoingKey(client.id, packet));
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
    setup: async function setupQueue(broker: unknown) {
      await beforeSetup?.();
      await setup?.(broker);
    },
    destroy: async function destroyQueue() {
      await backend.flush().catch(() => undefined);
      await destroy?.();
    },
  });
  return persistence as FastQueue<P>;
}
