import { appendFile, mkdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { pino } from 'pino';
import { connectRedis, startRedis, type RunningRedis } from '@citypulse/infra';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Journal } from '../src/journal.js';
import { journalFolder, readQueue } from './journal-dir.js';
import { withRedisQueue, type RedisConnection } from '../src/redis-queue.js';
import { msgpack, QUEUE_READ_PAGE, withJournalQueue, withMemoryQueue, type QueuedPacket } from '../src/session-queue.js';

/** The queues that replace those of aedes-persistence-level (disk: the journal, beside a real LevelDB) and of Aedes' memory persistence. */
const logger = pino({ level: 'silent' });
type Plain = {
  setup(broker: { id: string; counter: number }): Promise<void>;
  outgoingEnqueue(sub: { clientId: string }, packet: QueuedPacket): Promise<void>;
  outgoingUpdate(client: { id: string }, packet: QueuedPacket): Promise<void>;
};
const createLevelPersistence = createRequire(import.meta.url)('aedes-persistence-level') as (db: Level<string, Buffer>) => Plain;
const broker = { id: 'broker-a', counter: 0 };
const packet = (counter: number, extra: Partial<QueuedPacket> = {}): QueuedPacket => ({
  cmd: 'publish', brokerId: broker.id, brokerCounter: counter, topic: 'cp/v1/01/environment/d1/telemetry', payload: Buffer.from(`{"seq":${counter}}`), qos: 1, retain: false, dup: false, ...extra,
});
const keys = async (db: Level<string, Buffer>) => {
  const found: string[] = [];
  for await (const key of db.keys()) found.push(key);
  return found;
};
const drain = async (stream: NodeJS.ReadableStream): Promise<QueuedPacket[]> => {
  const out: QueuedPacket[] = [];
  for await (const item of stream) out.push(item as unknown as QueuedPacket);
  return out;
};

/** A PUBREL (QoS 2) replaces its publish in the queue, in its place; one for a packet id never handed out is refused. */
const expectPubrelInPlace = async (queue: ReturnType<typeof withMemoryQueue<Plain>>) => {
    await queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(1, { qos: 2 }));
    await queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(2, { qos: 2 }));
    await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(1, { qos: 2 }), messageId: 5 });
    await queue.outgoingUpdate({ id: 'ingest-1' }, { cmd: 'pubrel', messageId: 5 });
    expect((await drain(queue.outgoingStream({ id: 'ingest-1' }))).map((p) => [p.cmd, p.brokerCounter])).toEqual([['pubrel', 1], ['publish', 2]]);
    await expect(queue.outgoingUpdate({ id: 'ingest-1' }, { cmd: 'pubrel', messageId: 6 })).rejects.toThrow('no such packet');
};

const { dir, openJournal, segments } = journalFolder('session-queue');
let db: Level<string, Buffer>;
beforeEach(async () => {
  db = new Level<string, Buffer>(join(dir(), 'level'));
  await db.open();
});
afterEach(async () => {
  await db.close();
});

describe('withJournalQueue (the disk store)', () => {
  const queueOn = async (journal?: Journal) => {
    const queue = withJournalQueue(createLevelPersistence(db), journal ?? (await openJournal()), db, logger);
    await queue.setup(broker);
    return queue;
  };

  it('writes the messages queued in one turn in one write, and each put resolves once written', async () => {
    const journal = await openJournal();
    const queue = await queueOn(journal);
    const writes = Array.from({ length: 500 }, (_, i) => queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(i + 1)));
    await Promise.all(writes);
    expect(journal.writes).toBe(1);
    expect(await queue.queuedMessages()).toBe(500);
    expect((await drain(queue.outgoingStream({ id: 'ingest-1' }))).map((p) => p.brokerCounter)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
  });

  it('delivers under a packet id, clears on acknowledgement, per client', async () => {
    const queue = await queueOn();
    await queue.outgoingEnqueueCombi([{ clientId: 'ingest-1' }, { clientId: 'ingest-2' }], packet(7));
    await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(7), messageId: 42 });
    const acked = await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 42 });
    expect(acked?.brokerCounter).toBe(7);
    expect(await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 42 })).toBeUndefined(); // twice: nothing
    await queue.flushQueue();
    expect(await queue.queuedMessages()).toBe(1);
    expect(await drain(queue.outgoingStream({ id: 'ingest-1' }))).toEqual([]);
    const left = await drain(queue.outgoingStream({ id: 'ingest-2' }));
    expect(left.map((p) => [p.brokerCounter, p.topic, p.payload?.toString(), p.qos])).toEqual([[7, packet(7).topic, '{"seq":7}', 1]]);
  });

  it('clears the oldest of two messages given under one packet id (the id came round with more than 65,535 in flight), in the order acknowledged', async () => {
    const queue = await queueOn();
    await queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(1));
    await queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(2));
    await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(1), messageId: 9 });
    await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(2), messageId: 9 });
    expect((await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 9 }))?.brokerCounter).toBe(1);
    await queue.flushQueue();
    expect((await drain(queue.outgoingStream({ id: 'ingest-1' }))).map((p) => p.brokerCounter)).toEqual([2]);
    await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(2), messageId: 9 });
    expect((await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 9 }))?.brokerCounter).toBe(2);
    await queue.flushQueue();
    expect(await queue.queuedMessages()).toBe(0);
  });

  it('stores a PUBREL in place of its message and refuses one for an unknown packet id', async () => {
    const queue = await queueOn();
    await queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(9, { qos: 2 }));
    await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(9, { qos: 2 }), messageId: 5 });
    await queue.outgoingUpdate({ id: 'ingest-1' }, { cmd: 'pubrel', messageId: 5 });
    expect((await drain(queue.outgoingStream({ id: 'ingest-1' }))).map((p) => p.cmd)).toEqual(['pubrel']);
    await expect(queue.outgoingUpdate({ id: 'ingest-1' }, { cmd: 'pubrel', messageId: 6 })).rejects.toThrow('no such packet');
  });

  it('moves a queue the LevelDB store holds into the journal, dropping its packet-id copies, and numbers on above it', async () => {
    const plain = createLevelPersistence(db);
    await plain.setup(broker);
    await plain.outgoingEnqueue({ clientId: 'ingest-1' }, packet(1));
    await plain.outgoingEnqueue({ clientId: 'ingest-1' }, packet(2));
    await plain.outgoingUpdate({ id: 'ingest-1' }, { ...packet(1), messageId: 1 });
    expect((await keys(db)).some((k) => k.startsWith('outgoing-id:'))).toBe(true);

    const starting = { id: broker.id, counter: 0 };
    const queue = withJournalQueue(createLevelPersistence(db), await openJournal(), db, logger);
    await queue.setup(starting);
    expect((await keys(db)).filter((k) => k.startsWith('outgoing'))).toEqual([]);
    expect(starting.counter).toBe(3);
    const stored = await drain(queue.outgoingStream({ id: 'ingest-1' }));
    expect(stored.map((p) => [p.brokerCounter, p.payload?.toString()])).toEqual([[1, '{"seq":1}'], [2, '{"seq":2}']]);
    // A clean session's reconnect clears the stored messages it will not receive.
    for (const p of stored) await queue.outgoingClearMessageId({ id: 'ingest-1' }, p);
    expect(await queue.queuedMessages()).toBe(0);
  });
});

describe('Journal', () => {
  const key = (client: string, counter: number) => `outgoing:${client}:${broker.id}:${String(counter).padStart(16, '0')}`;

  it('reads back after a restart what was queued and not acknowledged, replacements included', async () => {
    const journal = await openJournal(4096);
    for (let i = 1; i <= 100; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    for (let i = 1; i <= 100; i++) if (i % 10 !== 0) journal.delete(key('ingest-1', i));
    await journal.replace(key('ingest-1', 50), { cmd: 'pubrel', brokerId: broker.id, brokerCounter: 50, messageId: 3 });
    await journal.flush();
    await journal.close();

    const again = await openJournal(4096);
    expect(again.size).toBe(10);
    expect(again.maxCounter(broker.id)).toBe(100);
    const back = await readQueue(again, 'outgoing:ingest-1:');
    expect(back.map((p) => [p.brokerCounter, p.cmd])).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 100].map((n) => [n, n === 50 ? 'pubrel' : 'publish']));
    expect(back[0]?.payload?.toString()).toBe('{"seq":10}');
  });

  it('deletes a segment once everything in it is acknowledged, and keeps one with a message still queued', async () => {
    const journal = await openJournal(2048); // about 10 messages a segment
    for (let i = 1; i <= 60; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    await journal.enqueue(key('ingest-1', 61), packet(61)); // starts one more segment after the full ones
    const before = await segments();
    expect(before.length).toBeGreaterThan(4);
    for (let i = 1; i <= 61; i++) if (i !== 5) journal.delete(key('ingest-1', i));
    await journal.flush();
    await new Promise((resolve) => setTimeout(resolve, 50)); // deletes of files are not waited for
    const after = await segments();
    expect(after).toContain(before[0]); // message 5 is in the first
    expect(after.length).toBeLessThanOrEqual(2); // that one and the one being written
    expect(journal.size).toBe(1);
  });

  it('finds a message stored after one numbered above it (a slow retained store), also after a restart', async () => {
    const journal = await openJournal(2048);
    for (let i = 2; i <= 30; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    await journal.enqueue(key('ingest-1', 1), packet(1)); // numbered first, stored last
    await journal.enqueue(key('ingest-2', 30), packet(30)); // the same message for a second client
    journal.delete(key('ingest-1', 1));
    expect(journal.size).toBe(30);
    await journal.close();
    const again = await openJournal(2048);
    expect(again.size).toBe(30);
    for (let i = 2; i <= 30; i++) again.delete(key('ingest-1', i));
    again.delete(key('ingest-2', 30));
    expect(again.size).toBe(0);
    await again.flush();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await segments()).length).toBeLessThanOrEqual(1);
  });

  it('counts a message acknowledged before it was written once, and writes nothing for it', async () => {
    const journal = await openJournal();
    const put = journal.enqueue(key('ingest-1', 1), packet(1));
    journal.delete(key('ingest-1', 1));
    await put;
    expect(journal.size).toBe(0);
    await journal.close();
    expect((await openJournal()).size).toBe(0);
  });

  it('reads up to a record cut short by a crash and goes on from there', async () => {
    const journal = await openJournal();
    for (let i = 1; i <= 3; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    await journal.close();
    const [first] = await segments();
    await appendFile(join(dir(), 'queue', first as string), Buffer.from([200, 0, 0, 0, 1, 5])); // a record's first bytes
    const again = await openJournal();
    expect(again.size).toBe(3);
    await again.enqueue(key('ingest-1', 4), packet(4));
    const back = (await readQueue(again, 'outgoing:ingest-1:')).map((p) => p.brokerCounter);
    expect(back).toEqual([1, 2, 3, 4]);
  });
  it('refuses the messages it cannot store (no segment can be opened) without stopping, and stores again once it can', async () => {
    const journal = await openJournal(100); // a segment per message
    await journal.enqueue(key('ingest-1', 1), packet(1));
    await journal.enqueue(key('ingest-1', 2), packet(2));
    await rm(join(dir(), 'queue'), { recursive: true, force: true }); // the folder is gone: the next segment cannot be opened
    await expect(journal.enqueue(key('ingest-1', 3), packet(3))).rejects.toThrow(/ENOENT/);
    expect(journal.size).toBe(2); // the refused message is not counted: its publisher gets no PUBACK and resends
    await mkdir(join(dir(), 'queue'));
    await journal.enqueue(key('ingest-1', 4), packet(4));
    expect(journal.size).toBe(3);
  });
});

describe('withMemoryQueue', () => {
  type Memory = Plain & { destroy(): Promise<void> };
  const createMemoryPersistence = createRequire(import.meta.url)('aedes-persistence') as () => Memory;
  const memory = () => withMemoryQueue(createMemoryPersistence());

  it('queues per client in order, hands out packet ids, clears on acknowledgement and counts what is left', async () => {
    const queue = memory();
    await queue.setup(broker);
    for (let i = 1; i <= 5; i++) await queue.outgoingEnqueueCombi([{ clientId: 'ingest-1' }, { clientId: 'ingest-2' }], packet(i));
    expect(await queue.queuedMessages()).toBe(10);
    const stored = await drain(queue.outgoingStream({ id: 'ingest-1' }));
    expect(stored.map((p) => p.brokerCounter)).toEqual([1, 2, 3, 4, 5]);
    // Delivered under packet ids 101…105, acknowledged out of order.
    for (const p of stored) await queue.outgoingUpdate({ id: 'ingest-1' }, { ...p, messageId: 100 + (p.brokerCounter ?? 0) });
    expect((await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 104 }))?.brokerCounter).toBe(4);
    expect((await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 101 }))?.brokerCounter).toBe(1);
    expect(await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 101 })).toBeUndefined();
    expect((await drain(queue.outgoingStream({ id: 'ingest-1' }))).map((p) => p.brokerCounter)).toEqual([2, 3, 5]);
    expect((await drain(queue.outgoingStream({ id: 'ingest-2' }))).map((p) => p.brokerCounter)).toEqual([1, 2, 3, 4, 5]);
    expect(await queue.queuedMessages()).toBe(8);
    // A message dropped without a delivery (a clean session's reconnect) is cleared by its key.
    await queue.outgoingClearMessageId({ id: 'ingest-2' }, packet(3));
    expect((await drain(queue.outgoingStream({ id: 'ingest-2' }))).map((p) => p.brokerCounter)).toEqual([1, 2, 4, 5]);
  });

  it('stores a PUBREL in place of its message, keeping its place in the queue', async () => {
    const queue = memory();
    await queue.setup(broker);
    await expectPubrelInPlace(queue);
  });

  it('takes a backlog of 100,000 messages in flight, acknowledged in order', async () => {
    const queue = memory();
    await queue.setup(broker);
    const n = 100_000;
    for (let i = 1; i <= n; i++) {
      await queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(i));
      await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(i), messageId: (i % 65_535) + 1 });
      // Acknowledged 50,000 behind: Aedes' own memory queue searches an array for each of these.
      if (i > 50_000) await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: ((i - 50_000) % 65_535) + 1 });
    }
    expect(await queue.queuedMessages()).toBe(50_000);
  });
});

describe('withRedisQueue (the Redis store)', () => {
  // A real Redis (Debian's redis-server) on a free port, and aedes-persistence-redis beside the queue as in the broker.
  type RedisPlain = Plain & { destroy(): Promise<void> };
  const createRedisPersistence = createRequire(import.meta.url)('aedes-persistence-redis') as (opts: { conn: unknown }) => RedisPlain;
  let redis: RunningRedis;
  const conns: RedisConnection[] = [];
  const connect = async () => {
    const { conn } = await connectRedis(redis.url, { purpose: 'test', logger });
    conns.push(conn);
    return conn;
  };
  // What aedes-persistence-redis' setup needs of a broker: its id and a subscription for its broadcasts.
  const brokerNamed = (id: string) => ({ id, counter: 0, subscribe: (_topic: string, _fn: unknown, done: () => void) => setImmediate(done), unsubscribe: (_topic: string, _fn: unknown, done: () => void) => setImmediate(done) });
  const queueOn = async (conn?: RedisConnection, id = broker.id) => {
    const c = conn ?? (await connect());
    const queue = withRedisQueue(createRedisPersistence({ conn: c }), c, logger);
    await queue.setup(brokerNamed(id));
    return queue;
  };
  beforeAll(async () => {
    redis = await startRedis({ dataDir: join(tmpdir(), `citypulse-redis-queue-${process.pid}`) });
  });
  afterAll(async () => {
    await redis?.stop();
  });
  beforeEach(async () => {
    const conn = await connect();
    await conn.flushdb();
  });
  afterEach(() => {
    for (const conn of conns.splice(0)) conn.disconnect();
  });

  it('queues per client in order, hands out packet ids, clears on acknowledgement and counts what is left', async () => {
    const conn = await connect();
    const queue = await queueOn(conn);
    await conn.sadd('clients', 'ingest-1', 'ingest-2');
    for (let i = 1; i <= 5; i++) await queue.outgoingEnqueueCombi([{ clientId: 'ingest-1' }, { clientId: 'ingest-2' }], packet(i));
    expect(await queue.queuedMessages()).toBe(10);
    const stored = await drain(queue.outgoingStream({ id: 'ingest-1' }));
    expect(stored.map((p) => p.brokerCounter)).toEqual([1, 2, 3, 4, 5]);
    expect(stored[0]?.payload?.toString()).toBe('{"seq":1}');
    for (const p of stored) await queue.outgoingUpdate({ id: 'ingest-1' }, { ...p, messageId: 100 + (p.brokerCounter ?? 0) });
    expect((await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 104 }))?.brokerCounter).toBe(4);
    expect((await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 101 }))?.brokerCounter).toBe(1);
    expect(await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 101 })).toBeUndefined();
    await queue.flushQueue();
    expect((await drain(queue.outgoingStream({ id: 'ingest-1' }))).map((p) => p.brokerCounter)).toEqual([2, 3, 5]);
    expect((await drain(queue.outgoingStream({ id: 'ingest-2' }))).map((p) => p.brokerCounter)).toEqual([1, 2, 3, 4, 5]);
    expect(await queue.queuedMessages()).toBe(8);
    await queue.outgoingClearMessageId({ id: 'ingest-2' }, packet(3));
    await queue.flushQueue();
    expect((await drain(queue.outgoingStream({ id: 'ingest-2' }))).map((p) => p.brokerCounter)).toEqual([1, 2, 4, 5]);
  });

  it('stores a PUBREL in place of its message, keeping its place, and does not bring back an acknowledged one', async () => {
    const queue = await queueOn();
    await expectPubrelInPlace(queue);
  });

  it('reads a backlog in chunks without skipping what follows messages acknowledged while it reads', async () => {
    const conn = await connect();
    const queue = await queueOn(conn);
    const n = QUEUE_READ_PAGE * 3 + 7;
    await Promise.all(Array.from({ length: n }, (_, i) => queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(i + 1))));
    const seen: number[] = [];
    for await (const item of queue.outgoingStream({ id: 'ingest-1' })) {
      const p = item as unknown as QueuedPacket;
      seen.push(p.brokerCounter ?? 0);
      // Delivered and acknowledged at once, as a fast subscriber does while the rest is read.
      await queue.outgoingUpdate({ id: 'ingest-1' }, { ...p, messageId: (seen.length % 65_535) + 1 });
      await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: (seen.length % 65_535) + 1 });
    }
    expect(seen).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    await queue.flushQueue();
    expect(await conn.zcard('mq-order:{ingest-1}')).toBe(0);
    expect(await conn.hlen('mq-data:{ingest-1}')).toBe(0);
  });

  it('reads messages two nodes queued at the same microsecond once each', async () => {
    const conn = await connect();
    await queueOn(conn);
    // Same score, members across a chunk boundary: the cursor must neither repeat nor skip them.
    const members = Array.from({ length: QUEUE_READ_PAGE + 3 }, (_, i) => `node-${i}:1`);
    for (const [i, member] of members.entries()) {
      await conn.zadd('mq-order:{ingest-1}', 42, member);
      await conn.hset('mq-data:{ingest-1}', member, msgpack.encode({ ...packet(i + 1), brokerId: `node-${i}`, brokerCounter: 1 }));
    }
    await conn.zadd('mq-order:{ingest-1}', 43, 'broker-a:9');
    await conn.hset('mq-data:{ingest-1}', 'broker-a:9', msgpack.encode(packet(9)));
    const queue = withRedisQueue(createRedisPersistence({ conn }), conn, logger);
    const read = await drain(queue.outgoingStream({ id: 'ingest-1' }));
    expect(read).toHaveLength(members.length + 1);
    expect(new Set(read.map((p) => `${p.brokerId}:${p.brokerCounter}`)).size).toBe(members.length + 1);
    expect(read.at(-1)?.brokerId).toBe('broker-a');
  });

  it('is one queue for every node: queued through one, delivered and acknowledged through another', async () => {
    const a = await queueOn(undefined, 'broker-a');
    const b = await queueOn(undefined, 'broker-b');
    await a.outgoingEnqueue({ clientId: 'ingest-1' }, packet(1));
    await b.outgoingEnqueue({ clientId: 'ingest-1' }, { ...packet(1), brokerId: 'broker-b' });
    const stored = await drain(b.outgoingStream({ id: 'ingest-1' }));
    expect(stored.map((p) => p.brokerId)).toEqual(['broker-a', 'broker-b']);
    for (const [i, p] of stored.entries()) await b.outgoingUpdate({ id: 'ingest-1' }, { ...p, messageId: i + 1 });
    await b.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 1 });
    await b.flushQueue();
    expect((await drain(a.outgoingStream({ id: 'ingest-1' }))).map((p) => p.brokerId)).toEqual(['broker-b']);
  });

  it('moves the lists aedes-persistence-redis kept into the queue, in order, once', async () => {
    const conn = await connect();
    // As aedes-persistence-redis 12 lays out a client's queue (outgoingEnqueueCombi).
    await conn.sadd('clients', 'ingest-1');
    for (let i = 1; i <= 3; i++) {
      await conn.set(`packet:old:${i}`, msgpack.encode({ ...packet(i), brokerId: 'old' }));
      await conn.set(`packet:old:${i}:offlineCount`, 1);
      await conn.rpush('outgoing:ingest-1', `packet:old:${i}`);
    }
    const queue = await queueOn(conn);
    expect((await drain(queue.outgoingStream({ id: 'ingest-1' }))).map((p) => [p.brokerId, p.brokerCounter])).toEqual([['old', 1], ['old', 2], ['old', 3]]);
    expect(await conn.exists('outgoing:ingest-1', 'packet:old:1', 'packet:old:1:offlineCount')).toBe(0);
    const again = await queueOn(conn);
    expect(await again.queuedMessages()).toBe(3);
  });

  it('takes a backlog of 100,000 messages in flight, acknowledged 50,000 behind', async () => {
    const conn = await connect();
    const queue = await queueOn(conn);
    await conn.sadd('clients', 'ingest-1');
    const n = 100_000;
    const puts: Promise<void>[] = [];
    for (let i = 1; i <= n; i++) {
      puts.push(queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(i)));
      if (i % 1000 === 0) await Promise.all(puts.splice(0));
      await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(i), messageId: (i % 65_535) + 1 });
      if (i > 50_000) await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: ((i - 50_000) % 65_535) + 1 });
    }
    await Promise.all(puts);
    await queue.flushQueue();
    expect(await queue.queuedMessages()).toBe(50_000);
    // aedes-persistence-redis cleared each acknowledgement with LREM, a scan of the whole list: none here.
    const stats = await conn.info('commandstats');
    expect(stats).not.toMatch(/cmdstat_lrem/);
  });
});
