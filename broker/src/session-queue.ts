import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { Level } from 'level';
import type { Logger } from 'pino';
import type { Journal, JournalPacket, JournalPosition } from './journal.js';

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
  /**
   * Up to `limit` of a client's queued messages in queue order, from `from` (a previous page's
   * `next`; undefined: the start). Messages acknowledged between two pages are not skipped over
   * nor read twice.
   */
  page(clientId: string, from: unknown, limit: number): Promise<QueuePage>;
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

export interface QueuePage {
  readonly packets: QueuedPacket[];
  /** Where the next page starts. */
  readonly next: unknown;
  /** Nothing more is queued after this page, for now. */
  readonly end: boolean;
  /** A shared store: when the last message looked at was queued (ms), for the sweep (QueueEntry.queuedAt). */
  readonly reachedAt?: number;
}

/** Keys remembered as given before their live turn, at most (past it, forgotten: a turn may repeat a delivery). */
const AHEAD_OF_LIVE_MAX = 100_000;

/**
 * Messages read from a store per page (a reconnect's queue, the in-flight window's pulls): on a
 * broker whose event loop is full, each read waits its turn, so a page must carry many.
 */
export const QUEUE_READ_PAGE = 2_000;

/** The slice of an Aedes client (lib/client.js) the sweep uses. */
export interface SweptClient {
  readonly id: string;
  readonly clean: boolean;
  readonly connected: boolean;
  /** Between CONNECT and the end of sending its queue (Aedes sets `connected` only then). */
  readonly connecting: boolean;
  readonly closed: boolean;
  /** Per broker id, the highest message number delivered live to this connection (Aedes' dedupe). */
  readonly duplicates: Record<string, number>;
  /** Aedes' delivery of a QoS 1/2 message (its dedupe, ACL check, packet id, outgoingUpdate, write); windowClient wraps it. */
  deliverQoS: Deliver;
}
type Deliver = (packet: QueuedPacket, done: (err?: Error | null) => void) => void;

/** What the in-flight window has done since start (broker metrics). */
export interface WindowStats {
  /** Times a connection's window filled, so its queue was read from the store instead of delivered live. */
  windowFull: number;
  /** Messages delivered from the store as acknowledgements freed the window. */
  pulled: number;
  /** Publishes whose completion waited for a subscriber past its window (back-pressure). */
  held: number;
  /** …of which were let go after WINDOW_HOLD_DEFAULTS.maxHoldMs rather than by its acknowledgements. */
  heldTimedOut: number;
}

export const WINDOW_HOLD_DEFAULTS = {
  /**
   * Longest a publish waits for a subscriber past its window (its publisher may not be read
   * meanwhile: well under any keep-alive; as the cluster router's admission).
   */
  maxHoldMs: 5_000,
  checkMs: 100,
  /** Deliveries past the window kept in memory for a connection, past which it reads from the store. */
  maxParked: 65_535,
  /** Publishes held at once, every connection's: keep it well under Aedes' concurrency (app.ts: half of it). */
  maxHeld: 10_000,
} as const;
export type WindowHoldSettings = { -readonly [K in keyof typeof WINDOW_HOLD_DEFAULTS]: number };

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
    /**
     * Gives a connecting client an outgoing in-flight window of `maxInflight` messages (see
     * withQueue): call before its subscriptions are made (Aedes' preConnect).
     */
    windowClient(client: SweptClient, maxInflight: number, hold?: Partial<WindowHoldSettings>): void;
    windowStats(): Readonly<WindowStats>;
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
    page: async (clientId, from, limit) => {
      const page = await journal.page(clientPrefix(clientId), from as JournalPosition | undefined, limit);
      return { packets: page.packets, next: page.next, end: page.end };
    },
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
interface MemoryCursor {
  readonly queue: Map<string, QueuedPacket>;
  readonly values: Iterator<QueuedPacket>;
}

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
    // A Map's iterator goes on past entries added after it was made and skips deleted ones: it is
    // the cursor, while the client's map lasts (an emptied queue's map is dropped: start again).
    async page(clientId, from, limit) {
      const queue = queues.get(clientId);
      if (!queue) return { packets: [], next: undefined, end: true };
      const cursor = from as MemoryCursor | undefined;
      const values = cursor?.queue === queue ? cursor.values : queue.values();
      const packets: QueuedPacket[] = [];
      while (packets.length < limit) {
        const next = values.next();
        if (next.done) return { packets, next: undefined, end: true };
        packets.push(next.value);
      }
      return { packets, next: { queue, values } satisfies MemoryCursor, end: false };
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
 * **In-flight window** (windowClient; like Mosquitto's max_inflight_messages). Aedes writes every
 * message for a subscriber to its socket as it arrives, with no limit on how many are
 * unacknowledged: once ingest falls behind, the backlog sits in the broker's memory (the socket's
 * buffer, up to the drain limit) and in ingest's, not in the store, and every reconnect sends the
 * whole queue at once. Here a persistent client's connection holds at most `maxInflight` messages
 * given and not acknowledged:
 * - live, while the window has room, a message is delivered as Aedes does;
 * - once it is full, live deliveries are parked in memory, in order, and go out as
 *   acknowledgements free the window; their publishes complete then (back-pressure, park);
 * - past `maxParked` parked, the connection turns to the store: the parked messages are dropped
 *   (each is queued before it is routed, Aedes' enqueueOffline), and as acknowledgements free the
 *   window the queue is read on, in order, from where the last read stopped, and delivered;
 * - once a read finds nothing more, live delivery resumes: the messages refused while that last
 *   read was on its way go out first.
 * A reconnect is sent the first window of its queue (outgoingStream), then goes on the same way.
 *
 * **Sweep** (a shared store: a backend with `scan` and `get`, Redis). A message is queued for a
 * persistent session by the node it was published on, then routed through Redis to the node its
 * subscriber is connected to. When the routing is lost (the router's subscriber connection dropped
 * and came back, Redis went away between the two steps, a node died between them), the message
 * stayed in the queue until the subscriber next reconnected, however long it stayed connected. The
 * sweep looks through each connected persistent client's queue and delivers what its connection
 * was never given:
 * - live: a message numbered at or below the highest number the connection had already been
 *   delivered live from the same node at the previous sweep (a node routes its messages in the
 *   order it numbers them, so that message's turn had passed and it was missed), or queued more
 *   than `staleAfterMs` ago (its node may have died before routing it);
 * - reading from the store: a message behind where the reads got to (queued by another node
 *   under a time its read had already passed: clocks differ by a little).
 * Never while the connection is still being sent its queue (a reconnect). It goes out as on a
 * reconnect, under a new packet id, and is cleared by the subscriber's acknowledgement as any other.
 */
export function withQueue<P extends object>(persistence: P, backend: QueueBackend, beforeSetup?: (broker: BrokerIdentity | undefined) => Promise<void>): FastQueue<P> {
  /** Per client id: what its connection was given and has not acknowledged. */
  const given = new Map<string, Given>();
  /** Clients whose connection is being sent its queue: outgoingStream open, by count. */
  const reading = new Map<string, number>();
  /** The in-flight window of each connection given one. */
  const flows = new WeakMap<object, Flow>();
  /** Per client id, the window of its newest connection (persistent clients only). */
  const latest = new Map<string, WeakRef<Flow>>();
  const stats: WindowStats = { windowFull: 0, pulled: 0, held: 0, heldTimedOut: 0 };
  /** Publishes held now, every connection's (hold, letGo). */
  let heldNow = 0;
  const letGo = (flow: Flow, count: number): void => {
    heldNow -= releaseHeld(flow, count);
  };
  const keyOf = backend.keyOf ?? outgoingKey;
  const givenTo = (clientId: string): Given => {
    let g = given.get(clientId);
    if (!g) given.set(clientId, (g = { ids: new Map<number, InFlight>(), keys: new Map<string, number>() }));
    return g;
  };
  /** Given to the connection, or on its way to it: not to be delivered again. */
  const holds = (clientId: string, flow: Flow | undefined, key: string): boolean =>
    (flow?.pending.has(key) ?? false) || (flow?.parkedKeys.has(key) ?? false) || (given.get(clientId)?.keys.has(key) ?? false);
  const inFlight = (flow: Flow): number => flow.pending.size + (given.get(flow.client.id)?.keys.size ?? 0);
  /** Hands a stored message to the connection (its window not checked). */
  const give = (client: SweptClient, flow: Flow | undefined, packet: QueuedPacket, key: string): void => {
    if (flow) {
      flow.pending.add(key);
      noteAheadOfLive(flow, packet, key);
    }
    deliverAgain(flow?.deliver ?? client.deliverQoS, client, packet);
  };

  /**
   * Back-pressure. A publish completes once its subscribers took the message, and a publisher with
   * too many publishes unfinished is not read (app.ts): that is what slows devices to what the
   * subscribers take. A delivery past the window must not complete at once, or the devices would
   * no longer be slowed by a subscriber that acknowledges slowly (measured: on a broker whose CPU
   * was full, the intake crowded out the subscriber's deliveries).
   * - Live: the delivery is parked in memory, in order; as PUBACKs free room the oldest parked
   *   message goes out and the oldest held publish completes (drainParked). Past `maxParked`
   *   parked, the connection turns to the store (every such message is queued there) and memory
   *   is freed.
   * - Reading from the store: the message is left to the reads, and its publish completes as the
   *   reads give the connection as many messages as were let in before it (flow.credit).
   * A publish held longer than `maxHoldMs` completes anyway (its message still goes out in its
   * turn): a node's routing is shared by every subscriber, and a subscriber that publishes what a
   * held connection subscribes to waits for its own PUBACKs to be read.
   */
  const park = (flow: Flow, packet: QueuedPacket, key: string, done: () => void): void => {
    if (flow.parked.length === 0) stats.windowFull++;
    if (flow.parked.length >= flow.hold.maxParked) {
      // Too much in memory: the reads from the store take over from where the window stands.
      dropParked(flow);
      flow.mode = 'pull';
      flow.atEnd = false;
      holdBack(flow, done);
      kick(flow);
      return;
    }
    flow.parked.push({ packet, key });
    flow.parkedKeys.add(key);
    hold(flow, done);
    // Room freed without an acknowledgement (a delivery Aedes dropped as a duplicate).
    if (inFlight(flow) < flow.window) drainParked(flow);
  };
  /** Sends parked messages, oldest first, while the window has room; as many held publishes complete. */
  const drainParked = (flow: Flow): void => {
    let sent = 0;
    while (flow.parked.length > 0 && inFlight(flow) < flow.window) {
      const { packet, key } = flow.parked.take() as Parked;
      sent++;
      flow.parkedKeys.delete(key);
      if (holds(flow.client.id, flow, key)) continue;
      flow.pending.add(key);
      // Past Aedes' duplicate check: a QoS 0 message to this client since may have raised its mark.
      deliverAgain(flow.deliver, flow.client, packet);
    }
    letGo(flow, sent);
  };
  /** Reading from the store: a refused delivery's publish completes on credit, or is held. */
  const holdBack = (flow: Flow, done: () => void): void => {
    if (flow.credit > 0) {
      flow.credit--;
      setImmediate(done);
      return;
    }
    hold(flow, done);
  };
  const hold = (flow: Flow, done: () => void): void => {
    if (heldNow >= flow.hold.maxHeld) {
      // Every held publish keeps one of the router's places (Aedes' concurrency): past this many,
      // the node's other subscribers would wait too. The message still goes out in its turn.
      setImmediate(done);
      return;
    }
    heldNow++;
    flow.held.push({ at: Date.now(), done });
    stats.held++;
    // Lets go of what waits too long, and of everything once the connection closed.
    flow.holdTimer ??= setInterval(() => {
      if (flow.client.closed) {
        dropParked(flow);
        return letGo(flow, flow.held.length);
      }
      const limit = Date.now() - flow.hold.maxHoldMs;
      const late = flow.held.countWhile((h) => h.at <= limit);
      stats.heldTimedOut += late;
      letGo(flow, late);
    }, flow.hold.checkMs).unref();
  };
  /** `count` messages given from the store: as many held publishes complete, or later refusals pass. */
  const credit = (flow: Flow, count: number): void => {
    const released = Math.min(count, flow.held.length);
    letGo(flow, released);
    flow.credit = Math.min(flow.window, flow.credit + count - released);
  };

  /**
   * Reads on from the store and delivers while the window has room; back to live delivery at the
   * queue's end. The next page is read while the window is full, so PUBACKs find it ready.
   */
  const pull = async (flow: Flow): Promise<void> => {
    const { client } = flow;
    const alive = () => flows.get(client) === flow && (client.connected || client.connecting) && !client.closed && !reading.has(client.id);
    try {
      await pullWhileAlive(flow, alive);
    } finally {
      // Closed, taken over or caught up: nothing to wait for.
      if (flow.mode === 'live' || client.closed) {
        flow.credit = 0;
        letGo(flow, flow.held.length);
      }
    }
  };
  const pullWhileAlive = async (flow: Flow, alive: () => boolean): Promise<void> => {
    const { client } = flow;
    while (flow.mode === 'pull' && alive()) {
      const refused: QueuedPacket[] = [];
      if (flow.ahead.length === 0) {
        const read: PageRead = { refused, acked: new Set() };
        flow.read = read;
        let page: QueuePage;
        try {
          page = await backend.page(client.id, flow.position, Math.min(flow.window, QUEUE_READ_PAGE));
        } finally {
          flow.read = undefined;
        }
        if (!alive()) return;
        flow.position = page.next;
        if (page.reachedAt !== undefined) flow.reachedAt = page.reachedAt;
        flow.atEnd = page.end;
        // Only what is still to give: not held now, nor acknowledged while the page was on its way.
        flow.ahead = page.packets.filter((packet) => {
          // A PUBREL in place of its publish: resent on the connection's reconnect, not from here.
          if ((packet.cmd ?? 'publish') !== 'publish' || !packet.brokerId) return false;
          const key = keyOf(client.id, packet);
          return !read.acked.has(key) && !holds(client.id, flow, key);
        });
      }
      let given = 0;
      let sent = 0;
      for (let free = flow.window - inFlight(flow); given < flow.ahead.length && free > 0; given++) {
        const packet = flow.ahead[given] as QueuedPacket;
        const key = keyOf(client.id, packet);
        if (holds(client.id, flow, key)) continue;
        give(client, flow, packet, key);
        sent++;
        free--;
      }
      stats.pulled += sent;
      credit(flow, sent);
      flow.ahead = flow.ahead.slice(given);
      if (flow.ahead.length === 0 && flow.atEnd) {
        // Caught up. What was refused while the last page was read may be queued after it: it goes out now.
        flow.mode = 'live';
        for (const packet of refused) {
          const key = keyOf(client.id, packet);
          if (!holds(client.id, flow, key)) give(client, flow, packet, key);
        }
        return;
      }
      // Not caught up yet: what was refused meanwhile is queued after where the reads got to.
      if (refused.length > 0) flow.atEnd = false;
      // The window is full and the next page is read: PUBACKs go on from here.
      if (flow.ahead.length > 0) return;
    }
  };
  /** Live: sends what is parked while there is room. Reading from the store: starts a pull if the window has room for a batch. */
  const kick = (flow: Flow): void => {
    if (flow.mode === 'live') {
      if (flow.parked.length > 0) drainParked(flow);
      return;
    }
    if (flow.pulling || flow.window - inFlight(flow) < flow.batch) return;
    flow.pulling = true;
    pull(flow)
      .catch(() => {
        // The store is away (its connection logs the outage): tried again shortly; the messages stay queued.
        setTimeout(() => kick(flow), 1_000).unref();
      })
      .finally(() => {
        flow.pulling = false;
      });
  };

  const queue: OutgoingQueue & Omit<FastQueue<object>, 'sweepQueues'> = {
    async outgoingEnqueue(sub, packet) {
      await backend.put([sub.clientId], packet);
    },
    async outgoingEnqueueCombi(subs, packet) {
      if (!subs || subs.length === 0) return;
      await backend.put(subs.map((sub) => sub.clientId), packet);
    },
    async outgoingUpdate(client, packet) {
      // A delivery that reaches here after its connection closed: what it gives is not this
      // client's next connection's to hold (the record is per client id).
      if ((client as { closed?: boolean }).closed) return;
      const g = givenTo(client.id);
      const id = packet.messageId ?? 0;
      if (packet.brokerId) {
        // A queued publish handed to the client under a (new) packet id.
        const key = keyOf(client.id, packet);
        flows.get(client)?.pending.delete(key);
        const entry: InFlight = { key, packet };
        const first = g.ids.get(id);
        if (first) {
          // The id came round again while its message is unacknowledged (a window above 65,535,
          // or a client without one): PUBACKs come in the order the messages were received
          // [MQTT-4.6.0-2], so the oldest goes first.
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
      const flow = flows.get(client);
      if (!g || !entry) {
        // A stored message dropped without a delivery (clean session, not to be forwarded, a
        // duplicate) — unless this connection holds it under a packet id (the sweep or the window
        // gave it): its acknowledgement clears it then.
        if (!packet.brokerId) return undefined;
        const key = keyOf(client.id, packet);
        const freed = flow?.pending.delete(key) ?? false;
        if (!g?.keys.has(key)) backend.del(client.id, key);
        if (freed && flow) kick(flow);
        return packet;
      }
      if (entry.next) g.ids.set(id, entry.next);
      else g.ids.delete(id);
      if (g.keys.get(entry.key) === id) g.keys.delete(entry.key);
      if (g.ids.size === 0) given.delete(client.id);
      backend.del(client.id, entry.key);
      if (flow) {
        flow.read?.acked.add(entry.key);
        kick(flow);
      }
      return entry.packet;
    },
    outgoingStream(client) {
      // A (re)connect: every stored message is sent again under a new packet id, so the ids of
      // the last connection are forgotten.
      given.delete(client.id);
      reading.set(client.id, (reading.get(client.id) ?? 0) + 1);
      const flow = flows.get(client);
      if (flow) {
        flow.mode = 'pull';
        flow.position = undefined;
        flow.ahead = [];
        // Parked while the last connection's messages still filled the window: in the store, read
        // from there in order (their held publishes complete as the first window is read).
        dropParked(flow);
      }
      if (flow) latest.set(client.id, new WeakRef(flow));
      const stream = Readable.from(flow ? firstWindow(flow) : readAll(client.id));
      stream.once('close', () => {
        const left = (reading.get(client.id) ?? 1) - 1;
        if (left > 0) reading.set(client.id, left);
        else reading.delete(client.id);
        // The client id's newest connection goes on (a takeover's old stream may close after the new one's).
        const current = latest.get(client.id)?.deref();
        if (current && left === 0) kick(current);
      });
      return stream;
    },
    windowClient(client, maxInflight, hold) {
      const deliver = client.deliverQoS;
      const flow: Flow = {
        client,
        deliver,
        window: maxInflight,
        batch: Math.max(1, Math.min(QUEUE_READ_PAGE, Math.ceil(maxInflight / 4))),
        mode: 'live',
        position: undefined,
        ahead: [],
        atEnd: false,
        pending: new Set(),
        liveMarks: new Map(),
        aheadOfLive: new Set(),
        pulling: false,
        held: new Fifo(),
        parked: new Fifo(),
        parkedKeys: new Set(),
        credit: 0,
        hold: { ...WINDOW_HOLD_DEFAULTS, ...hold },
      };
      flows.set(client, flow);
      client.deliverQoS = (packet, done) => {
        // Only what the store keeps for this client is held back: QoS 1/2 from a node (not a
        // retained message sent on SUBSCRIBE, nor one to a clean session).
        if (client.clean || !packet.brokerId || packet.retain || !packet.qos) {
          deliver(packet, done);
          return;
        }
        const key = keyOf(client.id, packet);
        const brokerId = packet.brokerId;
        if ((packet.brokerCounter ?? 0) > (flow.liveMarks.get(brokerId) ?? 0)) flow.liveMarks.set(brokerId, packet.brokerCounter ?? 0);
        if (flow.aheadOfLive.delete(key) || holds(client.id, flow, key)) {
          // Already given from the store (its live turn came after): once is enough.
          setImmediate(done);
          return;
        }
        if (flow.mode === 'live') {
          if (flow.parked.length === 0 && inFlight(flow) < flow.window) {
            flow.pending.add(key);
            deliver(packet, done);
          } else park(flow, packet, key, done);
          return;
        }
        // Reading from the store: queued, read in its turn. One refused while a read is on its way
        // may be queued after what that read finds.
        if (flow.read) flow.read.refused.push(packet);
        else flow.atEnd = false;
        holdBack(flow, done);
        kick(flow);
      };
    },
    windowStats: () => stats,
    flushQueue: () => backend.flush(),
    queuedMessages: async () => backend.count(),
  };

  /** A reconnect's first window of its queue (PUBRELs on top); the rest follows as it is acknowledged. */
  async function* firstWindow(flow: Flow): AsyncGenerator<QueuedPacket> {
    let publishes = 0;
    while (publishes < flow.window) {
      const page = await backend.page(flow.client.id, flow.position, Math.min(QUEUE_READ_PAGE, flow.window - publishes));
      flow.position = page.next;
      if (page.reachedAt !== undefined) flow.reachedAt = page.reachedAt;
      for (const packet of page.packets) {
        if ((packet.cmd ?? 'publish') === 'publish') {
          publishes++;
          credit(flow, 1);
        }
        // Held from here: the stream may end (and reads from the store start) before Aedes has given it an id.
        if (packet.brokerId) {
          const key = keyOf(flow.client.id, packet);
          flow.pending.add(key);
          noteAheadOfLive(flow, packet, key);
        }
        yield packet;
      }
      if (page.end) return;
    }
  }

  /** A client's whole queue (a connection without a window). */
  async function* readAll(clientId: string): AsyncGenerator<QueuedPacket> {
    let from: unknown;
    for (;;) {
      const page = await backend.page(clientId, from, QUEUE_READ_PAGE);
      yield* page.packets;
      if (page.end) return;
      from = page.next;
    }
  }

  const sweep = hasScan(backend) ? queueSweep(backend, { reading, flows, holds, give, kick }, keyOf) : undefined;

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

/** A message given from the store before its live turn came (routing lags the store): that turn is to be dropped. */
function noteAheadOfLive(flow: Flow, packet: QueuedPacket, key: string): void {
  const brokerId = packet.brokerId as string;
  if ((packet.brokerCounter ?? 0) <= (flow.liveMarks.get(brokerId) ?? 0)) return;
  if (flow.aheadOfLive.size >= AHEAD_OF_LIVE_MAX) {
    // Forget the turns that will not come: passed (a node routes in number order), or of a node
    // not routing to this connection (one restarted under a new id, or gone).
    for (const held of flow.aheadOfLive) {
      const at = held.lastIndexOf(':');
      const mark = flow.liveMarks.get(held.slice(held.lastIndexOf(':', at - 1) + 1, at));
      if (mark === undefined || Number(held.slice(at + 1)) <= mark) flow.aheadOfLive.delete(held);
    }
    if (flow.aheadOfLive.size >= AHEAD_OF_LIVE_MAX / 2) flow.aheadOfLive.clear();
  }
  flow.aheadOfLive.add(key);
}

/** A connection's in-flight window (withQueue, windowClient). */
interface Flow {
  readonly client: SweptClient;
  /** Aedes' own deliverQoS (windowClient wraps the client's). */
  readonly deliver: Deliver;
  readonly window: number;
  /** Free places in the window that start a read from the store. */
  readonly batch: number;
  /** live: delivered as routed; pull: read from the store (the window filled, or a reconnect). */
  mode: 'live' | 'pull';
  /** Where the next read from the store starts (the backend's cursor). */
  position: unknown;
  /** Read from the store, not yet delivered (the window filled first). */
  ahead: QueuedPacket[];
  /** The last read found the end of the queue, and nothing was refused since. */
  atEnd: boolean;
  /** A shared store: when the message the reads got to was queued (ms). */
  reachedAt?: number;
  /** Keys handed to Aedes' delivery, not yet given a packet id (outgoingUpdate) or dropped. */
  readonly pending: Set<string>;
  /** A read from the store on its way. */
  read?: PageRead;
  /** Per broker id, the highest number whose live turn came (delivered or refused): a node routes in number order. */
  readonly liveMarks: Map<string, number>;
  /** Keys given from the store before their live turn came. */
  readonly aheadOfLive: Set<string>;
  pulling: boolean;
  /** Completions of publishes held back, oldest first (park, holdBack). */
  readonly held: Fifo<Held>;
  /** Live deliveries past the full window, oldest first (park). */
  readonly parked: Fifo<Parked>;
  readonly parkedKeys: Set<string>;
  holdTimer?: NodeJS.Timeout;
  /** Messages given from the store with no held publish to let go: as many refusals pass at once. */
  credit: number;
  readonly hold: WindowHoldSettings;
}

interface Held {
  readonly at: number;
  readonly done: () => void;
}
interface Parked {
  readonly packet: QueuedPacket;
  readonly key: string;
}

/** Completes the oldest `count` held publishes (a turn later: they may route to this connection again); how many. */
function releaseHeld(flow: Flow, count: number): number {
  const out = count > 0 ? flow.held.take(count) : [];
  if (out.length > 0) {
    setImmediate(() => {
      for (const h of out) h.done();
    });
  }
  unwatch(flow);
  return out.length;
}

/** Forgets the parked messages (each is in the store). */
function dropParked(flow: Flow): void {
  flow.parked.clear();
  flow.parkedKeys.clear();
}

/** A first-in first-out queue taken from the front in O(1) (an array's shift moves every entry). */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** The oldest entry (no count), or the oldest `count` entries. */
  take(): T | undefined;
  take(count: number): T[];
  take(count?: number): T | undefined | T[] {
    const n = Math.min(count ?? 1, this.length);
    const out = this.#items.slice(this.#head, this.#head + n);
    this.#head += n;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1_024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return count === undefined ? out[0] : out;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }

  /** How many entries from the front satisfy `test`. */
  countWhile(test: (item: T) => boolean): number {
    let n = 0;
    while (this.#head + n < this.#items.length && test(this.#items[this.#head + n] as T)) n++;
    return n;
  }
}

/** Nothing waits: the hold timer stops. */
function unwatch(flow: Flow): void {
  if (flow.held.length === 0 && flow.holdTimer) {
    clearInterval(flow.holdTimer);
    flow.holdTimer = undefined;
  }
}

/** What happens while a page is read from the store. */
interface PageRead {
  /** Live messages refused: they may be queued after what the page finds. */
  readonly refused: QueuedPacket[];
  /** Keys acknowledged: the page may still hold them. */
  readonly acked: Set<string>;
}

interface SweepState {
  /** `duplicates` of the connection at the previous sweep. */
  marks: Record<string, number>;
  /** Where the previous sweep stopped in the queue. */
  cursor: string | undefined;
}

type ScanningBackend = QueueBackend & Required<Pick<QueueBackend, 'scan' | 'get'>>;
const hasScan = (backend: QueueBackend): backend is ScanningBackend => typeof backend.scan === 'function' && typeof backend.get === 'function';

/** What the sweep shares with withQueue. */
interface SweepContext {
  readonly reading: ReadonlyMap<string, number>;
  readonly flows: WeakMap<object, Flow>;
  holds(clientId: string, flow: Flow | undefined, key: string): boolean;
  give(client: SweptClient, flow: Flow | undefined, packet: QueuedPacket, key: string): void;
  kick(flow: Flow): void;
}

/** The sweep of withQueue, over a backend's scan and get and the queue's record of what was given. */
function queueSweep(backend: ScanningBackend, queue: SweepContext, keyOf: (clientId: string, packet: QueuedPacket) => string): NonNullable<FastQueue<object>['sweepQueues']> {
  const states = new WeakMap<SweptClient, SweepState>();
  let sweeping = false;

  /** Messages delivered again; undefined when the queue was not read (a connection's first look). */
  const sweepClient = async (client: SweptClient, s: QueueSweepSettings): Promise<number | undefined> => {
    const marks = { ...client.duplicates };
    const state = states.get(client);
    const flow = queue.flows.get(client);
    if (!state || queue.reading.has(client.id)) {
      // A new connection, or one still being sent its queue: note how far live delivery got.
      states.set(client, { marks, cursor: state?.cursor });
      return undefined;
    }
    const passed = state.marks;
    state.marks = marks;
    const now = Date.now();
    // Reading from the store: only what lies behind where the reads got to was passed over.
    const behind = flow?.mode === 'pull' ? flow.reachedAt : undefined;
    if (flow?.mode === 'pull') {
      queue.kick(flow); // a read that failed (the store was away) is tried again
      if (behind === undefined) return 0;
    }
    const ahead = new Set(flow?.ahead.map((packet) => keyOf(client.id, packet)));
    const missed = (entry: QueueEntry): boolean => {
      if (behind !== undefined) return !ahead.has(entry.key);
      const mark = passed[entry.brokerId];
      return (mark !== undefined && entry.brokerCounter <= mark) || entry.queuedAt < now - s.staleAfterMs;
    };
    const candidates: string[] = [];
    let scanned = 0;
    let cursor = state.cursor;
    do {
      const page = await backend.scan(client.id, cursor, behind ?? now - s.intervalMs, Math.min(s.scanPage, s.scanPerSweep - scanned));
      // Checked against what was given as each page arrives: a message acknowledged after this is
      // not a candidate, and one acknowledged before has had its removal sent ahead of the get below.
      for (const entry of page.entries) if (!queue.holds(client.id, flow, entry.key) && missed(entry)) candidates.push(entry.key);
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
      const key = keyOf(client.id, packet);
      if (queue.holds(client.id, flow, key)) continue;
      queue.give(client, flow, packet, key);
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
function deliverAgain(deliver: Deliver, client: SweptClient, packet: QueuedPacket): void {
  const duplicates = client.duplicates;
  const brokerId = packet.brokerId as string;
  const had = brokerId in duplicates ? duplicates[brokerId] : undefined;
  duplicates[brokerId] = (packet.brokerCounter ?? 1) - 1;
  try {
    deliver(new Packet(packet), () => undefined);
  } finally {
    if (had === undefined) delete duplicates[brokerId];
    else duplicates[brokerId] = had;
  }
}
