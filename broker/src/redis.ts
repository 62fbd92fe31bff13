import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { CodedError } from '@citypulse/contracts';
import { parseRedisUrl } from './persistence.js';

export const REDIS_CONNECT_TIMEOUT_MS = 5_000;
/** ioredis reports every failed reconnect; one line per this long is enough to see an outage. */
const WARN_EVERY_MS = 10_000;

/**
 * One Redis connection, connected and answering PING before it is returned, so a Redis that is
 * down fails the broker's start with a clear message instead of a client queueing commands and
 * retrying forever. Afterwards ioredis reconnects by itself; outages are logged, rate-limited.
 * `purpose` names what the connection is for in those logs ("MQTT session store", …).
 */
export async function connectRedis(url: string | undefined, purpose: string, logger: Logger): Promise<{ readonly conn: Redis; readonly where: string }> {
  const connection = parseRedisUrl(url);
  const where = `redis://${connection.host}:${connection.port}/${connection.db}`;
  const conn = new Redis({ ...connection, lazyConnect: true, connectTimeout: REDIS_CONNECT_TIMEOUT_MS });
  let lastError: Error | undefined;
  let lastLoggedAt = 0;
  conn.on('error', (err: Error) => {
    lastError = err;
    if (Date.now() - lastLoggedAt > WARN_EVERY_MS) {
      lastLoggedAt = Date.now();
      logger.warn({ code: 'E_UPSTREAM', err, redis: where }, `${purpose} (Redis) unavailable`);
    }
  });
  try {
    await conn.connect();
    await conn.ping();
  } catch (err) {
    conn.disconnect();
    const reason = lastError?.message ?? (err as Error).message;
    throw new CodedError('E_UPSTREAM', `cannot reach Redis at ${where} for the ${purpose} (${reason}): start it (Debian: apt-get install redis-server) or fix REDIS_URL`, { cause: err });
  }
  lastLoggedAt = 0;
  return { conn, where };
}
