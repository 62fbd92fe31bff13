import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { connectRedis, startRedis, waitFor, type RunningRedis } from '@citypulse/infra';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisRouter, createRouter, Fifo } from '../src/router.js';

describe('Fifo', () => {
  it('gives items back in order across its compactions, and undefined when empty', () => {
    const fifo = new Fifo<number>();
    expect(fifo.shift()).toBeUndefined();
    const out: number[] = [];
    let pushed = 0;
    // Interleaved: the queue grows to thousands, shrinks past the compaction point, grows again.
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 10_000; i++) fifo.push(pushed++);
      for (let i = 0; i < 7_000; i++) out.push(fifo.shift() as number);
    }
    expect(fifo.length).toBe(15_000);
    for (let item = fifo.shift(); item !== undefined; item = fifo.shift()) out.push(item);
    expect(fifo.length).toBe(0);
    expect(out).toEqual(Array.from({ length: pushed }, (_, i) => i));
  });
});

describe('createRouter', () => {
  it('routes every message, in order, when more arrive than it handles at once', async () => {
    const router = createRouter(2) as unknown as {
      on(topic: string, notify: (message: { topic: string; n: number }, done: () => void) => void, ready: () => void): void;
      emit(message: { topic: string; n: number }, done: () => void): void;
      readonly length: number;
    };
    const seen: number[] = [];
    const held: Array<() => void> = [];
    await new Promise<void>((ready) => router.on('a/#', (message, done) => (seen.push(message.n), held.push(done)), ready));
    for (let n = 0; n < 1_000; n++) router.emit({ topic: 'a/b', n }, () => undefined);
    expect(seen).toEqual([0, 1]); // two at once; the rest wait in the queue
    expect(router.length).toBe(998);
    while (held.length > 0) held.shift()?.();
    expect(seen).toEqual(Array.from({ length: 1_000 }, (_, i) => i));
    expect(router.length).toBe(0);
  });

  it('routes a queue of 200,000 messages that nobody subscribes to without overflowing the stack, in order', async () => {
    type Message = { topic: string; n: number };
    const router = createRouter(1) as unknown as {
      on(topic: string, notify: (message: Message, done: () => void) => void, ready: () => void): void;
      emit(message: Message, done: () => void): void;
      readonly length: number;
    };
    let release: (() => void) | undefined;
    await new Promise<void>((ready) => router.on('held', (_message, done) => (release = done), ready));
    const completed: number[] = [];
    router.emit({ topic: 'held', n: -1 }, () => undefined);
    // Queued behind the held one; each finishes at once when its turn comes (no subscriber), which
    // mqemitter alone answers by taking the next inside the completion: a stack frame set per message.
    const n = 200_000;
    for (let i = 0; i < n; i++) router.emit({ topic: 'nobody/listens', n: i }, () => completed.push(i));
    // Emitted while the queue drains: routed after everything before it.
    const late = new Promise<void>((done) => setImmediate(() => router.emit({ topic: 'nobody/listens', n }, () => (completed.push(n), done()))));
    expect(router.length).toBe(n);
    expect(() => release?.()).not.toThrow();
    await late;
    expect(completed).toHaveLength(n + 1);
    expect(completed.every((value, i) => value === i)).toBe(true);
    expect(router.length).toBe(0);
  });

  it('matches an empty topic level as Aedes does [MQTT-4.7.1-3]', async () => {
    const router = createRouter(10) as unknown as {
      on(topic: string, notify: (message: { topic: string }, done: () => void) => void, ready: () => void): void;
      emit(message: { topic: string }, done: () => void): void;
    };
    const seen: string[] = [];
    await new Promise<void>((ready) => router.on('a/+/c', (message, done) => (seen.push(message.topic), done()), ready));
    router.emit({ topic: 'a//c' }, () => undefined);
    expect(seen).toEqual(['a//c']);
  });
});

describe('createRedisRouter', () => {
  // A real Redis (Debian's redis-server) shared with others' channels, as in a cluster.
  let redis: RunningRedis;
  beforeAll(async () => {
    redis = await startRedis({ dataDir: join(tmpdir(), `citypulse-router-${process.pid}`) });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('routes to a # subscriber what the router carries, and ignores the other channels of its Redis', async () => {
    const logger = pino({ level: 'silent' });
    const { router } = await createRedisRouter(100, redis.url, logger);
    const mq = router as unknown as {
      on(topic: string, notify: (message: { topic: string }, done: () => void) => void, ready: () => void): void;
      emit(message: { topic: string; payload: Buffer }, done: (err?: Error) => void): void;
      close(done: () => void): void;
    };
    const seen: string[] = [];
    await new Promise<void>((ready) => mq.on('#', (message, done) => (seen.push(message.topic), done()), ready));
    const { conn } = await connectRedis(redis.url, { purpose: 'test', logger });
    try {
      // The device registry's change channel and a socket.io adapter's: JSON and msgpack arrays.
      await conn.publish('registry:changes:0', JSON.stringify({ version: 2, devices: ['hn-aq-001'] }));
      await conn.publish('socket.io#/#', Buffer.from([0x93, 0x01, 0x02, 0x03]));
      await new Promise<void>((done, fail) => mq.emit({ topic: 'cp/v1/01/environment/d1/telemetry', payload: Buffer.from('{}') }, (err) => (err ? fail(err) : done())));
      await waitFor('the routed message', () => (seen.length > 0 ? true : undefined), 5_000);
      await new Promise((done) => setTimeout(done, 200));
      expect(seen).toEqual(['cp/v1/01/environment/d1/telemetry']);
    } finally {
      conn.disconnect();
      await new Promise<void>((done) => mq.close(done));
    }
  });

  it('holds the completion of publishes while its subscribers are behind, and lets them go once they catch up', async () => {
    const logger = pino({ level: 'silent' });
    const { router } = await createRedisRouter(100, redis.url, logger, { holdAbove: 200, releaseBelow: 50, maxHoldMs: 60_000, checkMs: 10 });
    const mq = router as unknown as {
      on(topic: string, notify: (message: { topic: string }, done: () => void) => void, ready: () => void): void;
      emit(message: { topic: string; payload: Buffer }, done: (err?: Error) => void): void;
      close(done: () => void): void;
    };
    // A subscriber that does not finish its deliveries until told: the router's backlog grows.
    let stalled = true;
    const pending: Array<() => void> = [];
    let delivered = 0;
    await new Promise<void>((ready) => mq.on('cp/v1/#', (_m, done) => (delivered++, stalled ? pending.push(done) : done()), ready));
    let completed = 0;
    const emit = () => mq.emit({ topic: 'cp/v1/01/environment/d1/telemetry', payload: Buffer.from('{}') }, () => completed++);
    try {
      // Under 200 behind: publishes complete as Redis takes them.
      for (let i = 0; i < 150; i++) emit();
      // While the subscriber is stalled, everything routed is still in the router.
      const backlog = () => delivered + (router as unknown as { length: number }).length;
      await waitFor('150 messages back from Redis, stuck at the subscriber', () => (backlog() >= 150 && completed === 150 ? true : undefined), 10_000);
      // Past 200 behind: the publishes made now are in Redis, and routed, but not all completed
      // (those whose PUBLISH reply came before their messages crossed 200 did).
      for (let i = 0; i < 150; i++) emit();
      await waitFor('the new messages routed', () => (backlog() >= 300 ? true : undefined), 10_000);
      // Over 200 behind from the start: none of these completes while the subscriber is stalled.
      const before = completed;
      for (let i = 0; i < 100; i++) emit();
      await waitFor('the last messages routed', () => (backlog() >= 400 ? true : undefined), 10_000);
      await new Promise((done) => setTimeout(done, 100));
      expect(completed).toBe(before);
      stalled = false;
      for (const done of pending.splice(0)) done();
      await waitFor('every publish completed once the subscriber caught up', () => (completed === 400 ? true : undefined), 10_000);
    } finally {
      await new Promise<void>((done) => mq.close(done));
    }
  });
});
