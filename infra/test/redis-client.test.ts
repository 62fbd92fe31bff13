import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectRedis, REDIS_CLIENT_DEFAULTS, startRedis, waitFor, type RunningRedis } from '../src/index.js';

/**
 * connectRedis through an outage of a real Redis (stopped, then started again on the same port;
 * paused with SIGSTOP): a command nobody waits on, as @socket.io/redis-adapter and
 * aedes-persistence-redis send them, must not become an unhandled rejection (which ends a Node 20
 * process); a command that is waited on fails within the retry budget; the connection comes back
 * by itself and says so.
 */
interface Line {
  readonly level: 'warn' | 'info';
  readonly object: Record<string, unknown>;
  readonly message: string;
}

let dir: string;
let redis: RunningRedis;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'citypulse-redis-client-'));
  redis = await startRedis({ dataDir: dir });
  // Observed, not handled: vitest would report one too, but this names it in the assertion.
  process.on('unhandledRejection', onUnhandled);
});

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await redis?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const recorder = () => {
  const lines: Line[] = [];
  return {
    lines,
    logger: {
      warn: (object: object, message: string) => lines.push({ level: 'warn', object: object as Record<string, unknown>, message }),
      info: (object: object, message: string) => lines.push({ level: 'info', object: object as Record<string, unknown>, message }),
    },
  };
};

describe('connectRedis through a Redis outage', () => {
  it('fails what waits, leaves nothing unhandled, and is back by itself when Redis is', { timeout: 90_000 }, async () => {
    const { lines, logger } = recorder();
    const { conn } = await connectRedis(redis.url, { purpose: 'test store', logger, outage: 'tests wait' });
    try {
      expect(await conn.set('k', 'before')).toBe('OK');
      const port = redis.port;
      await redis.stop();

      // What the libraries do: send and never look at the result.
      void conn.publish('citypulse-test', 'lost');
      void conn.lrem('will', 0, 'key');
      const started = Date.now();
      await expect(conn.get('k')).rejects.toThrow(/max retries per request/i);
      // Within the budget (~5 s from the outage), with room for a loaded machine.
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(lines.find((l) => l.level === 'warn')).toMatchObject({ object: { code: 'E_UPSTREAM' }, message: 'test store (Redis) unavailable: tests wait' });

      redis = await startRedis({ dataDir: dir, port });
      const back = await waitFor('the connection back', () => lines.find((l) => l.level === 'info' && l.message.startsWith('test store (Redis) is back after')), 30_000);
      expect(unhandled).toEqual([]);
      expect(back.object.failedCommands).toBeGreaterThanOrEqual(3);
      expect(conn.status).toBe('ready');
      expect(await conn.set('k', 'after')).toBe('OK');
    } finally {
      conn.disconnect();
    }
  });

  it('drops a connection whose Redis stops answering (paused), instead of waiting on it for good', { timeout: 90_000 }, async () => {
    const { lines, logger } = recorder();
    const { conn } = await connectRedis(redis.url, { purpose: 'test router', logger });
    try {
      redis.process.kill('SIGSTOP');
      try {
        // Unanswered: held until replyTimeoutMs, then the connection is made again.
        void conn.publish('citypulse-test', 'held');
        const warned = await waitFor('the connection given up', () => lines.find((l) => l.level === 'warn'), REDIS_CLIENT_DEFAULTS.replyTimeoutMs + 20_000, 100);
        expect((warned.object.err as Error).message).toMatch(/Socket timeout/);
        expect(conn.status).not.toBe('ready');
      } finally {
        redis.process.kill('SIGCONT');
      }
      await waitFor('the connection back', () => (conn.status === 'ready' ? true : undefined), 30_000);
      expect(await conn.ping()).toBe('PONG');
      expect(unhandled).toEqual([]);
    } finally {
      conn.disconnect();
    }
  });
});
