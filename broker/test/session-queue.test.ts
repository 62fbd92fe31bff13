import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { withGroupCommittedQueue, withMemoryQueue, type QueuedPacket } from '../src/session-queue.js';

/** The group-committed queue on a real LevelDB, beside the plain aedes-persistence-level it replaces. */
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

let dir: string;
let db: Level<string, Buffer>;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'citypulse-session-queue-'));
  db = new Level<string, Buffer>(dir);
  await db.open();
});
afterEach(async () => {
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

describe('withGroupCommittedQueue', () => {
  it('writes the messages queued in one turn in one batch, and each put resolves once written', async () => {
    const queue = withGroupCommittedQueue(createLevelPersistence(db), db, logger);
    await queue.setup(broker);
    const batch = vi.spyOn(db, 'batch');
    const writes = Array.from({ length: 500 }, (_, i) => queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(i + 1)));
    await Promise.all(writes);
    expect(batch).toHaveBeenCalledTimes(1);
    expect((await keys(db)).filter((k) => k.startsWith('outgoing:'))).toHaveLength(500);
  });

  it('keeps one key per message: delivered under a packet id, acknowledged, gone', async () => {
    const queue = withGroupCommittedQueue(createLevelPersistence(db), db, logger);
    await queue.setup(broker);
    await queue.outgoingEnqueueCombi([{ clientId: 'ingest-1' }, { clientId: 'ingest-2' }], packet(7));
    await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(7), messageId: 42 });
    expect(await keys(db)).toEqual([`outgoing:ingest-1:broker-a:${'7'.padStart(16, '0')}`, `outgoing:ingest-2:broker-a:${'7'.padStart(16, '0')}`]);
    const acked = await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 42 });
    expect(acked?.brokerCounter).toBe(7);
    expect(await queue.outgoingClearMessageId({ id: 'ingest-1' }, { cmd: 'puback', messageId: 42 })).toBeUndefined(); // twice: nothing
    await queue.flushQueue();
    expect(await keys(db)).toEqual([`outgoing:ingest-2:broker-a:${'7'.padStart(16, '0')}`]);
    expect((await drain(queue.outgoingStream({ id: 'ingest-2' }))).map((p) => p.brokerCounter)).toEqual([7]);
  });

  it('stores a PUBREL in place of its message and refuses one for an unknown packet id', async () => {
    const queue = withGroupCommittedQueue(createLevelPersistence(db), db, logger);
    await queue.setup(broker);
    await queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(9, { qos: 2 }));
    await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(9, { qos: 2 }), messageId: 5 });
    await queue.outgoingUpdate({ id: 'ingest-1' }, { cmd: 'pubrel', messageId: 5 });
    expect((await drain(queue.outgoingStream({ id: 'ingest-1' }))).map((p) => p.cmd)).toEqual(['pubrel']);
    await expect(queue.outgoingUpdate({ id: 'ingest-1' }, { cmd: 'pubrel', messageId: 6 })).rejects.toThrow('no such packet');
  });

  it('reads a store the plain persistence wrote, dropping its packet-id copies, and clears a message dropped without delivery', async () => {
    const plain = createLevelPersistence(db);
    await plain.setup(broker);
    await plain.outgoingEnqueue({ clientId: 'ingest-1' }, packet(1));
    await plain.outgoingEnqueue({ clientId: 'ingest-1' }, packet(2));
    await plain.outgoingUpdate({ id: 'ingest-1' }, { ...packet(1), messageId: 1 });
    expect((await keys(db)).some((k) => k.startsWith('outgoing-id:'))).toBe(true);

    const queue = withGroupCommittedQueue(createLevelPersistence(db), db, logger);
    await queue.setup(broker);
    expect((await keys(db)).some((k) => k.startsWith('outgoing-id:'))).toBe(false);
    const stored = await drain(queue.outgoingStream({ id: 'ingest-1' }));
    expect(stored.map((p) => [p.brokerCounter, p.payload?.toString()])).toEqual([[1, '{"seq":1}'], [2, '{"seq":2}']]);
    // A clean session's reconnect clears the stored messages it will not receive.
    for (const p of stored) await queue.outgoingClearMessageId({ id: 'ingest-1' }, p);
    await queue.flushQueue();
    expect(await keys(db)).toEqual([]);
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
    await queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(1, { qos: 2 }));
    await queue.outgoingEnqueue({ clientId: 'ingest-1' }, packet(2, { qos: 2 }));
    await queue.outgoingUpdate({ id: 'ingest-1' }, { ...packet(1, { qos: 2 }), messageId: 5 });
    await queue.outgoingUpdate({ id: 'ingest-1' }, { cmd: 'pubrel', messageId: 5 });
    expect((await drain(queue.outgoingStream({ id: 'ingest-1' }))).map((p) => [p.cmd, p.brokerCounter])).toEqual([['pubrel', 1], ['publish', 2]]);
    await expect(queue.outgoingUpdate({ id: 'ingest-1' }, { cmd: 'pubrel', messageId: 6 })).rejects.toThrow('no such packet');
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
