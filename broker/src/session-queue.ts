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

/**
 * Swaps the outgoing-queue methods of an aedes-persistence-level instance (see above) for the
 * group-committed ones. Call before the broker's setup; `setup` also drops the "outgoing-id:"
 * copies a store written by the plain persistence may hold (the ids they map are not reused).
 */
export function withGroupCommittedQueue<P extends object>(persistence: P, db: Level<string, Buffer>, logger: Logger): P & OutgoingQueue & { flushQueue(): Promise<void> } {
  const commits = new GroupCommit(db, logger);
  /** Per client id: packet id → the queued message it was last given to. */
  const inFlight = new Map<string, Map<number, InFlight>>();

  const queue: OutgoingQueue & { flushQueue(): Promise<void> } = {
    async outgoingEnqueue(sub, packet) {
      await commits.put(outgoingKey(sub.clientId, packet), msgpack.encode(new Packet(packet)));
    },
    async outgoingEnqueueCombi(subs, packet) {
      if (!subs || subs.length === 0) return;
      if (subs.length === 1) return queue.outgoingEnqueue(subs[0]!, packet);
      const value = msgpack.encode(new Packet(packet));
      await Promise.all(subs.map((sub) => commits.put(outgoingKey(sub.clientId, packet), value)));
    },
    async outgoingUpdate(client, packet) {
      let ids = inFlight.get(client.id);
      if (!ids) inFlight.set(client.id, (ids = new Map<number, InFlight>()));
      if (packet.brokerId) {
        // A queued publish handed to the client under a (new) packet id.
        ids.set(packet.messageId ?? 0, { key: outgoingKey(client.id, packet), packet });
        return;
      }
      // A PUBREL (QoS 2) replaces the publish it follows, on disk too: it is what a reconnect resends.
      const entry = ids.get(packet.messageId ?? 0);
      if (!entry) throw new Error('no such packet');
      packet.brokerId = entry.packet.brokerId;
      packet.brokerCounter = entry.packet.brokerCounter;
      entry.packet = packet;
      await commits.put(entry.key, msgpack.encode(packet));
    },
    async outgoingClearMessageId(client, packet) {
      const ids = inFlight.get(client.id);
      const id = packet.messageId ?? 0;
      const entry = ids?.get(id);
      if (!entry) {
        // A stored message dropped without a delivery (clean session, or not to be forwarded).
        if (!packet.brokerId) return undefined;
        commits.del(outgoingKey(client.id, packet));
        return packet;
      }
      ids!.delete(id);
      if (ids!.size === 0) inFlight.delete(client.id);
      commits.del(entry.key);
      return entry.packet;
    },
    outgoingStream(client) {
      async function* stored(): AsyncGenerator<QueuedPacket> {
        // A (re)connect: every stored message is sent again under a new packet id, so the ids of
        // the last connection are forgotten. What waits for a batch must be on disk before the read.
        inFlight.delete(client.id);
        await commits.flush();
        for await (const blob of db.values({ ...prefixRange(clientPrefix(client.id)), valueEncoding: 'buffer' })) {
          yield msgpack.decode(blob);
        }
      }
      return Readable.from(stored());
    },
    flushQueue: () => commits.flush(),
  };

  const target = persistence as P & { setup?: (broker: unknown) => Promise<void>; destroy?: () => Promise<void> };
  const setup = target.setup?.bind(persistence);
  const destroy = target.destroy?.bind(persistence);
  // Must stay `async function`s: Aedes checks setup.constructor.name === 'AsyncFunction'.
  Object.assign(persistence, queue, {
    setup: async function setupQueue(broker: unknown) {
      await db.clear(prefixRange(OUTGOING_ID));
      await setup?.(broker);
    },
    destroy: async function destroyQueue() {
      await commits.flush().catch(() => undefined);
      await destroy?.();
    },
  });
  return persistence as P & OutgoingQueue & { flushQueue(): Promise<void> };
}
