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

/**
 * How every platform connection rides out a Redis outage (ioredis' defaults let a command wait
 * through 20 reconnects, ~10 s, then ~40 s more each time after, and never notice a Redis that
 * stops answering without closing the connection).
 */
export const REDIS_CLIENT_DEFAULTS = {
  connectTimeoutMs: 5_000,
  /** ioredis reports every failed reconnect; one warning per this long is enough to see an outage. */
  warnEveryMs: 10_000,
  /** First pause before reconnecting; doubled after each failed attempt up to reconnectMaxDelayMs. */
  reconnectMinDelayMs: 100,
  /** Longest pause between reconnect attempts, so a node is back within ~2 s of Redis. Never gives up. */
  reconnectMaxDelayMs: 2_000,
  /**
   * Reconnect attempts a command waits through (ioredis' maxRetriesPerRequest) before it fails:
   * 5 is ~5 s from the moment Redis went away (0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 2 s), enough for a
   * restart or a failover, and ~12 s for a command sent later in a long outage. Commands do not pile
   * up in memory meanwhile, and a device does not wait without a PUBACK for more than that.
   */
  maxRetriesPerRequest: 5,
  /**
   * A connection with commands waiting and no byte from Redis for this long is dropped and made
   * again (ioredis' socketTimeout): a paused or hung Redis, or a network that silently drops
   * packets, otherwise holds every command until TCP gives up, many minutes later.
   */
  replyTimeoutMs: 10_000,
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
  /** For "Redis is back"; without it only the outage is logged. */
  info?(object: object, message: string): void;
  debug?(object: object, message: string): void;
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
 * An ioredis connection whose commands never become unhandled promise rejections, which end a
 * Node 20 process. Libraries send commands without waiting on them: @socket.io/redis-adapter 8.3
 * PUBLISHes every broadcast that way, aedes-persistence-redis 12 its LREM and RPUSH of wills, ioredis
 * its own resubscribe after a reconnect. In an outage ioredis rejects them after maxRetriesPerRequest
 * reconnects, and a Redis restart stopped every broker and api node at once. A caller that waits on
 * a command still gets its rejection; the connection also counts the failures for its outage log.
 */
class PlatformRedis extends Redis {
  onCommandFailed: (err: Error) => void = () => undefined;

  override sendCommand(...args: Parameters<Redis['sendCommand']>): unknown {
    const reply = super.sendCommand(...args);
    if (reply instanceof Promise) reply.catch((err: Error) => this.onCommandFailed(err));
    return reply;
  }
}

/**
 * One Redis connection, connected and answering PING before it is returned, so a Redis that is
 * down fails the service's start with E_UPSTREAM saying what to fix, instead of a client queueing
 * commands and retrying forever (or a node that runs alone while believing it is joined).
 * Afterwards it reconnects by itself, forever (REDIS_CLIENT_DEFAULTS); meanwhile commands wait a
 * few seconds, then fail, and none goes unhandled. Outages are logged rate-limited, with the
 * commands that failed, and the return once Redis is back.
 */
export async function connectRedis(url: string | undefined, options: ConnectRedisOptions): Promise<{ readonly conn: Redis; readonly where: string }> {
  const connection = parseRedisUrl(url, options.requiredWhen);
  const where = redisWhere(connection);
  const defaults = REDIS_CLIENT_DEFAULTS;
  const conn = new PlatformRedis({
    ...connection,
    lazyConnect: true,
    connectTimeout: defaults.connectTimeoutMs,
    retryStrategy: (attempt) => Math.min(defaults.reconnectMinDelayMs * 2 ** (attempt - 1), defaults.reconnectMaxDelayMs),
    maxRetriesPerRequest: defaults.maxRetriesPerRequest,
    // Commands sent while reconnecting wait (above) rather than fail at once: a restart is a blip.
    enableOfflineQueue: true,
    socketTimeout: defaults.replyTimeoutMs,
    ...(options.connectionName ? { connectionName: options.connectionName } : {}),
  });
  const logger = options.logger;
  let lastError: Error | undefined;
  let lastWarnedAt = 0;
  /** When the connection was lost (undefined while it is up), and the commands that failed since. */
  let downSince: number | undefined;
  let failedCommands = 0;
  conn.onCommandFailed = (err) => {
    // Redis answered with an error: no outage, and mostly expected by whoever sent the command
    // (NOSCRIPT asks EVALSHA for its script; a Redis before 7.2 refuses ioredis' CLIENT SETINFO).
    if (err.name === 'ReplyError') logger.debug?.({ err, redis: where }, `${options.purpose} (Redis): a command was refused`);
    else failedCommands++;
  };
  conn.on('error', (err: Error) => {
    lastError = err;
    if (Date.now() - lastWarnedAt > defaults.warnEveryMs) {
      lastWarnedAt = Date.now();
      logger.warn({ code: 'E_UPSTREAM', err, redis: where, failedCommands }, `${options.purpose} (Redis) unavailable${options.outage ? `: ${options.outage}` : ''}`);
    }
  });
  conn.on('close', () => {
    downSince ??= Date.now();
  });
  conn.on('ready', () => {
    if (downSince === undefined) return;
    const downMs = Date.now() - downSince;
    logger.info?.({ redis: where, downMs, failedCommands }, `${options.purpose} (Redis) is back after ${Math.round(downMs / 1000)} s${failedCommands > 0 ? `; ${failedCommands} commands failed meanwhile` : ''}`);
    downSince = undefined;
    failedCommands = 0;
    lastWarnedAt = 0;
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
