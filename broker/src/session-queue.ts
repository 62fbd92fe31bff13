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
 * Which message a packet id stands for is kept in memory (`given`), as Aedes gives queued
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
  /** A later message given under the same packet id while this one was unacknowledged. */
  next?: InFlight;
}

/** What a client's connection was given and has not acknowledged: by packet id, and by queue key. */
interface Given {
  readonly ids: Map<number, InFlight>;
  /** Queue key → the packet id it was last given under. */
  readonly keys: Map<string, number>;
}

/** A client's queued message as the sweep sees it before reading it (QueueBackend.scan). */
export interface QueueEntry {
  readonly key: string;
  readonly brokerId: string;
  readonly brokerCounter: number;
  /** When it was queued, ms since the epoch (by the clock of the node that queued it). */
  readonly queuedAt: number;
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
  /**
   * For the sweep (a shared store, where another node delivers live): up to `limit` of a client's
   * queued messages queued before `before` (ms), oldest first, from after `cursor` (a previous
   * answer's); `cursor` undefined once the end is reached.
   */
  scan?(clientId: string, cursor: string | undefined, before: number, limit: number): Promise<{ entries: QueueEntry[]; cursor: string | undefined }>;
  /** The messages under these keys (undefined: no longer queued). */
  get?(clientId: string, keys: readonly string[]): Promise<Array<QueuedPacket | undefined>>;
}

/** The slice of an Aedes client (lib/client.js) the sweep uses. */
export interface SweptClient {
  readonly id: string;
  readonly clean: boolean;
  readonly connected: boolean;
  readonly closed: boolean;
  /** Per broker id, the highest message number delivered live to this connection (Aedes' dedupe). */
  readonly duplicates: Record<string, number>;
  deliverQoS(packet: QueuedPacket, done: (err?: Error | null) => void): void;
}

export const QUEUE_SWEEP_DEFAULTS = {
  /** How often each connected persistent client's queue is looked through. */
  intervalMs: 5_000,
  /**
   * A message queued this long ago and not given to the client's connection is delivered even if
   * nothing later from its node was (that node may have died between queueing and routing it).
   */
  staleAfterMs: 60_000,
  /** Queue entries looked at per client per sweep (the next sweep goes on from there). */
  scanPerSweep: 5_000,
  /** Messages delivered again per client per sweep, at most. */
  deliverPerSweep: 2_000,
  /** Queue entries read per round trip. */
  scanPage: 500,
} as const;
export type QueueSweepSettings = { -readonly [K in keyof typeof QUEUE_SWEEP_DEFAULTS]: number };

export interface SweepResult {
  /** Messages delivered again, by client id. */
  readonly delivered: Map<string, number>;
  /** Queues read from the store (0: no connected persistent client was due). */
  readonly read: number;
}

export type FastQueue<P> = P &
  OutgoingQueue & {
    flushQueue(): Promise<void>;
    queuedMessages(): Promise<number>;
    /** Present when the store is shared (redis): see withQueue. */
    sweepQueues?(clients: Iterable<SweptClient>, settings?: Partial<QueueSweepSettings>): Promise<SweepResult>;
  };

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

/**
 * Gives a persistence the outgoing-queue methods over a backend (used by redis-queue.ts too).
 *
 * With a shared store (a backend with `scan` and `get`: Redis), `sweepQueues` closes a liveness
 * gap of cluster mode. A message is queued for a persistent session by the node it was published
 * on, then routed through Redis to the node its subscriber is connected to. When the routing is
 * lost (the router's subscriber connection dropped and came back, Redis went away between the two
 * steps, a node died between them), the message stayed in the queue until the subscriber next
 * reconnected, however long it stayed connected. The sweep looks through each connected persistent
 * client's queue and delivers what its connection was never given:
 * - a message numbered at or below the highest number the connection had already been delivered
 *   live from the same node at the previous sweep: a node routes its messages in the order it
 *   numbers them, so that message's turn had passed and it was missed;
 * - any message queued more than `staleAfterMs` ago (its node may have died before routing it).
 * Never while the connection is still being sent its queue (a reconnect). It goes out as on a
 * reconnect, under a new packet id, and is cleared by the subscriber's acknowledgement as any other.
 */
export function withQueue<P extends object>(persistence: P, backend: QueueBackend, beforeSetup?: (broker: BrokerIdentity | undefined) => Promise<void>): FastQueue<P> {
  /** Per client id: what its connection was given and has not acknowledged. */
  const given = new Map<string, Given>();
  /** Clients whose connection is being sent its queue: outgoingStream open, by count. */
  const reading = new Map<string, number>();
  const keyOf = backend.keyOf ?? outgoingKey;
  const givenTo = (clientId: string): Given => {
    let g = given.get(clientId);
    if (!g) given.set(clientId, (g = { ids: new Map<number, InFlight>(), keys: new Map<string, number>() }));
    return g;
  };

  const queue: OutgoingQueue & { flushQueue(): Promise<void>; queuedMessages(): Promise<number> } = {
    async outgoingEnqueue(sub, packet) {
      await backend.put([sub.clientId], packet);
    },
    async outgoingEnqueueCombi(subs, packet) {
      if (!subs || subs.length === 0) return;
      await backend.put(subs.map((sub) => sub.clientId), packet);
    },
    async outgoingUpdate(client, packet) {
      const g = givenTo(client.id);
      const id = packet.messageId ?? 0;
      if (packet.brokerId) {
        // A queued publish handed to the client under a (new) packet id.
        const key = keyOf(client.id, packet);
        const entry: InFlight = { key, packet };
        const first = g.ids.get(id);
        if (first) {
          // The id came round again while its message is unacknowledged: Aedes numbers deliveries
          // 1–65,535 in turn with no in-flight window, and ingest far behind holds more. PUBACKs
          // come in the order the messages were received [MQTT-4.6.0-2]: the oldest goes first.
          let last = first;
          while (last.next) last = last.next;
          last.next = entry;
        } else g.ids.set(id, entry);
        g.keys.set(key, id);
        return;
      }
      // A PUBREL (QoS 2) replaces the publish it follows, in the store too: it is what a reconnect resends.
      const entry = g.ids.get(id);
      if (!entry) throw new Error('no such packet');
      packet.brokerId = entry.packet.brokerId;
      packet.brokerCounter = entry.packet.brokerCounter;
      entry.packet = packet;
      await backend.replace(client.id, entry.key, packet);
    },
    async outgoingClearMessageId(client, packet) {
      const g = given.get(client.id);
      const id = packet.messageId ?? 0;
      const entry = g?.ids.get(id);
      if (!g || !entry) {
        // A stored message dropped without a delivery (clean session, or not to be forwarded) —
        // unless this connection holds it under a packet id (the sweep gave it): its
        // acknowledgement clears it then.
        if (!packet.brokerId) return undefined;
        const key = keyOf(client.id, packet);
        if (!g?.keys.has(key)) backend.del(client.id, key);
        return packet;
      }
      if (entry.next) g.ids.set(id, entry.next);
      else g.ids.delete(id);
      if (g.keys.get(entry.key) === id) g.keys.delete(entry.key);
      if (g.ids.size === 0) given.delete(client.id);
      backend.del(client.id, entry.key);
      return entry.packet;
    },
    outgoingStream(client) {
      // A (re)connect: every stored message is sent again under a new packet id, so the ids of
      // the last connection are forgotten.
      given.delete(client.id);
      reading.set(client.id, (reading.get(client.id) ?? 0) + 1);
      const stream = Readable.from(backend.read(client.id));
      stream.once('close', () => {
        const left = (reading.get(client.id) ?? 1) - 1;
        if (left > 0) reading.set(client.id, left);
        else reading.delete(client.id);
      });
      return stream;
    },
    flushQueue: () => backend.flush(),
    queuedMessages: async () => backend.count(),
  };

  const sweep = hasScan(backend) ? queueSweep(backend, given, reading, keyOf) : undefined;

  const target = persistence as P & { setup?: (broker: unknown) => Promise<void>; destroy?: () => Promise<void> };
  const setup = target.setup?.bind(persistence);
  const destroy = target.destroy?.bind(persistence);
  // Must stay `async function`s: Aedes checks setup.constructor.name === 'AsyncFunction'.
  Object.assign(persistence, queue, sweep ? { sweepQueues: sweep } : {}, {
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

interface SweepState {
  /** `duplicates` of the connection at the previous sweep. */
  marks: Record<string, number>;
  /** Where the previous sweep stopped in the queue. */
  cursor: string | undefined;
}

type ScanningBackend = QueueBackend & Required<Pick<QueueBackend, 'scan' | 'get'>>;
const hasScan = (backend: QueueBackend): backend is ScanningBackend => typeof backend.scan === 'function' && typeof backend.get === 'function';

/** The sweep of withQueue, over a backend's scan and get and the queue's record of what was given. */
function queueSweep(
  backend: ScanningBackend,
  given: ReadonlyMap<string, Given>,
  reading: ReadonlyMap<string, number>,
  keyOf: (clientId: string, packet: QueuedPacket) => string,
): NonNullable<FastQueue<object>['sweepQueues']> {
  const states = new WeakMap<SweptClient, SweepState>();
  let sweeping = false;

  /** Messages delivered again; undefined when the queue was not read (a connection's first look). */
  const sweepClient = async (client: SweptClient, s: QueueSweepSettings): Promise<number | undefined> => {
    const marks = { ...client.duplicates };
    const state = states.get(client);
    if (!state || reading.has(client.id)) {
      // A new connection, or one still being sent its queue: note how far live delivery got.
      states.set(client, { marks, cursor: state?.cursor });
      return undefined;
    }
    const passed = state.marks;
    state.marks = marks;
    const now = Date.now();
    const candidates: string[] = [];
    let scanned = 0;
    let cursor = state.cursor;
    do {
      const page = await backend.scan(client.id, cursor, now - s.intervalMs, Math.min(s.scanPage, s.scanPerSweep - scanned));
      // Checked against what was given as each page arrives: a message acknowledged after this is
      // not a candidate, and one acknowledged before has had its removal sent ahead of the get below.
      const keys = given.get(client.id)?.keys;
      for (const entry of page.entries) {
        if (keys?.has(entry.key)) continue;
        const mark = passed[entry.brokerId];
        if ((mark !== undefined && entry.brokerCounter <= mark) || entry.queuedAt < now - s.staleAfterMs) candidates.push(entry.key);
      }
      scanned += page.entries.length;
      cursor = page.cursor;
    } while (cursor !== undefined && scanned < s.scanPerSweep && candidates.length < s.deliverPerSweep);
    state.cursor = cursor;
    if (candidates.length === 0) return 0;
    const packets = await backend.get(client.id, candidates.slice(0, s.deliverPerSweep));
    let delivered = 0;
    for (const packet of packets) {
      if (!client.connected || client.closed) break;
      // Gone (acknowledged meanwhile), a PUBREL (its publish was given), or given meanwhile.
      if (!packet || (packet.cmd ?? 'publish') !== 'publish' || !packet.brokerId) continue;
      if (given.get(client.id)?.keys.has(keyOf(client.id, packet))) continue;
      deliverAgain(client, packet);
      delivered++;
    }
    return delivered;
  };

  return async (clients, overrides = {}) => {
    const delivered = new Map<string, number>();
    let read = 0;
    if (sweeping) return { delivered, read };
    sweeping = true;
    try {
      const settings: QueueSweepSettings = { ...QUEUE_SWEEP_DEFAULTS, ...overrides };
      for (const client of clients) {
        if (client.clean || !client.connected || client.closed) continue;
        const count = await sweepClient(client, settings);
        if (count === undefined) continue;
        read++;
        if (count > 0) delivered.set(client.id, count);
      }
    } finally {
      sweeping = false;
    }
    return { delivered, read };
  };
}

/**
 * Hands a queued message to a connected client as Aedes' live delivery does (its ACL check, QoS
 * downgrade, packet id, outgoingUpdate, batched write). Aedes' dedupe would drop it, as it is
 * numbered below what the client was last delivered from that node: its mark is lowered for the
 * synchronous check and put back at once, so later live messages are judged as before.
 */
function deliverAgain(client: SweptClient, packet: QueuedPacket): void {
  const duplicates = client.duplicates;
  const brokerId = packet.brokerId as string;
  const had = brokerId in duplicates ? duplicates[brokerId] : undefined;
  duplicates[brokerId] = (packet.brokerCounter ?? 1) - 1;
  try {
    client.deliverQoS(new Packet(packet), () => undefined);
  } finally {
    if (had === undefined) delete duplicates[brokerId];
    else duplicates[brokerId] = had;
  }
}
