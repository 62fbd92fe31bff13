import { Redis } from 'ioredis';
import { CodedError, type ConfigSpec } from '@citypulse/contracts';

/**
 * REDIS_URL and the Redis connections of the services that share one in cluster mode: the
 * broker's session store and router (BROKER_STORE=redis, BROKER_MQ=redis), the api's socket.io
 * adapter (API_ADAPTER=redis) and the device registry of every service (REGISTRY_STORE=redis). One parser and one way of connecting, so a wrong URL or a Redis that
 * is down reads the same whichever service reports it.
 */
export interface RedisConnectionOptions {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: Record<string, never>;
}

/** One definition of REDIS_URL for every service that reads it (broker, api, and ingest for the registry), so one Redis, one variable. */
export const REDIS_CONFIG = {
  REDIS_URL: {
    kind: 'url',
    default: 'redis://127.0.0.1:6379/0',
    values: ['redis', 'rediss'],
    description: 'Redis for BROKER_STORE=redis and BROKER_MQ=redis, for API_ADAPTER=redis and for REGISTRY_STORE=redis (npm start and npm run cluster run a private one when nothing answers on a loopback address)',
  },
} as const satisfies ConfigSpec;

export const REDIS_CLIENT_DEFAULTS = {
  connectTimeoutMs: 5_000,
  /** ioredis reports every failed reconnect; one warning per this long is enough to see an outage. */
  warnEveryMs: 10_000,
} as const;

const EXAMPLE = 'redis://127.0.0.1:6379/0';

/** Validates REDIS_URL and turns it into ioredis options; every way it can be wrong says what to write. */
export function parseRedisUrl(url: string | undefined, requiredWhen = 'in cluster mode'): RedisConnectionOptions {
  if (!url) throw new CodedError('E_CONFIG', `REDIS_URL is required ${requiredWhen}, e.g. ${EXAMPLE}`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CodedError('E_CONFIG', `REDIS_URL "${clip(url)}" is not a URL: write it as ${EXAMPLE}`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new CodedError('E_CONFIG', `REDIS_URL must start with redis:// (or rediss:// for TLS), not ${clip(parsed.protocol)}//, e.g. ${EXAMPLE}`);
  }
  if (!parsed.hostname) throw new CodedError('E_CONFIG', `REDIS_URL "${clip(url)}" has no host, e.g. ${EXAMPLE}`);
  const dbText = parsed.pathname.replace(/^\//, '');
  if (!/^\d{0,2}$/.test(dbText)) {
    throw new CodedError('E_CONFIG', `REDIS_URL database "${clip(dbText)}" must be a number (0–15 on a default Redis), as in ${EXAMPLE}`);
  }
  if (parsed.search || parsed.hash) throw new CodedError('E_CONFIG', `REDIS_URL takes no ?query or #fragment; write it as ${EXAMPLE}`);
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'), // [::1] → ::1
    port: parsed.port ? Number(parsed.port) : 6379,
    db: dbText ? Number(dbText) : 0,
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** redis[s]://host:port/db of a REDIS_URL, without credentials: for logs and messages. */
export function redisWhere(connection: RedisConnectionOptions): string {
  return `${connection.tls ? 'rediss' : 'redis'}://${connection.host}:${connection.port}/${connection.db}`;
}

interface WarnLogger {
  warn(object: object, message: string): void;
}

export interface ConnectRedisOptions {
  /** What the connection is for, in logs and errors ("MQTT session store", …). */
  readonly purpose: string;
  /** When REDIS_URL is needed, for the error when it is missing ("when BROKER_STORE=redis"). */
  readonly requiredWhen?: string;
  readonly logger: WarnLogger;
  /** Shown by CLIENT LIST on the Redis side. */
  readonly connectionName?: string;
  /** Said after the fix in the start error, e.g. "or set API_ADAPTER=local to run a single api node". */
  readonly alternative?: string;
  /** Said in the outage warning, e.g. what stops working while Redis is away. */
  readonly outage?: string;
}

/**
 * One Redis connection, connected and answering PING before it is returned, so a Redis that is
 * down fails the service's start with E_UPSTREAM saying what to fix, instead of a client queueing
 * commands and retrying forever (or a node that runs alone while believing it is joined).
 * Afterwards ioredis reconnects by itself; outages are logged, rate-limited.
 */
export async function connectRedis(url: string | undefined, options: ConnectRedisOptions): Promise<{ readonly conn: Redis; readonly where: string }> {
  const connection = parseRedisUrl(url, options.requiredWhen);
  const where = redisWhere(connection);
  const conn = new Redis({
    ...connection,
    lazyConnect: true,
    connectTimeout: REDIS_CLIENT_DEFAULTS.connectTimeoutMs,
    ...(options.connectionName ? { connectionName: options.connectionName } : {}),
  });
  let lastError: Error | undefined;
  let lastWarnedAt = 0;
  conn.on('error', (err: Error) => {
    lastError = err;
    if (Date.now() - lastWarnedAt > REDIS_CLIENT_DEFAULTS.warnEveryMs) {
      lastWarnedAt = Date.now();
      options.logger.warn({ code: 'E_UPSTREAM', err, redis: where }, `${options.purpose} (Redis) unavailable${options.outage ? `: ${options.outage}` : ''}`);
    }
  });
  try {
    await conn.connect();
    await conn.ping();
  } catch (err) {
    conn.disconnect();
    const reason = lastError?.message ?? (err as Error).message;
    throw new CodedError(
      'E_UPSTREAM',
      `cannot reach Redis at ${where} for the ${options.purpose} (${reason}): start it (Debian: apt-get install redis-server)${options.alternative ? `, fix REDIS_URL, ${options.alternative}` : ' or fix REDIS_URL'}`,
      { cause: err },
    );
  }
  lastWarnedAt = 0;
  return { conn, where };
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}
