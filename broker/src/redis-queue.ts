import type { Logger } from 'pino';
import type { connectRedis } from '@citypulse/infra';
import { msgpack, Packet, withQueue, type FastQueue, type QueueBackend, type QueuedPacket, type QueueEntry, type QueuePage } from './session-queue.js';

/**
 * The queue of QoS 1/2 messages for persistent sessions in Redis (BROKER_STORE=redis), O(log n)
 * per message whatever the backlog.
 *
 * aedes-persistence-redis keeps a client's queue in a list and takes an acknowledged message out
 * with LREM, which scans the list: with ingest behind by tens of thousands of messages, each PUBACK
 * cost milliseconds of Redis's one thread, Redis fell behind, and the backlog grew without end
 * (measured: 10,000 readings/s offered, 1,580 stored/s). It also spends seven round trips per
 * message (MSET, RPUSH, SET on delivery, GET, LREM, DECR, DEL). Here, per client:
 * - a sorted set "mq-order:{client}" of "<brokerId>:<counter>", scored by the time the message was
 *   queued (queue order, across broker nodes);
 * - a hash "mq-data:{client}" of the same members to the encoded message.
 * A put is one script call per client (ZADD + HSET, atomic), an acknowledgement one more (ZREM +
 * HDEL), not waited for, as in the other queues; which packet id stands for which message stays in
 * the memory of the node the client is connected to. The queue is read in pages, in order, from a
 * score cursor (readPage), so messages acknowledged meanwhile are not skipped over.
 * The braces make both keys of a client hash to one Redis Cluster slot.
 */
export type RedisConnection = Awaited<ReturnType<typeof connectRedis>>['conn'];

const orderKey = (clientId: string) => `mq-order:{${encodeURIComponent(clientId)}}`;
const dataKey = (clientId: string) => `mq-data:{${encodeURIComponent(clientId)}}`;
const memberOf = (packet: QueuedPacket) => `${packet.brokerId}:${packet.brokerCounter ?? 0}`;

// KEYS: order, data. ARGV: score, member, encoded message.
const ENQUEUE = `redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1`;
// KEYS: order, data. ARGV: member.
const REMOVE = `redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])`;
// KEYS: order, data. ARGV: member, encoded message. Only while the message is still queued.
const REPLACE = `if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
return 0`;

interface QueueCommands {
  citypulseEnqueue(order: string, data: string, score: number, member: string, blob: Buffer): Promise<number>;
  citypulseRemove(order: string, data: string, member: string): Promise<number>;
  citypulseReplace(order: string, data: string, member: string, blob: Buffer): Promise<number>;
}
type Pipeline = { [K in keyof QueueCommands]: (...args: Parameters<QueueCommands[K]>) => Pipeline } & { exec(): Promise<Array<[Error | null, unknown]> | null> };

/**
 * Swaps the outgoing-queue methods of an aedes-persistence-redis instance for the sorted-set queue
 * above. `setup` moves what that persistence's own lists hold (a store written before this queue)
 * into it.
 */
export function withRedisQueue<P extends object>(persistence: P, conn: RedisConnection, logger: Logger): FastQueue<P> {
  for (const [name, lua] of [['citypulseEnqueue', ENQUEUE], ['citypulseRemove', REMOVE], ['citypulseReplace', REPLACE]] as const) {
    conn.defineCommand(name, { numberOfKeys: 2, lua });
  }
  const commands = conn as unknown as QueueCommands & { pipeline(): Pipeline };
  const nextScore = scoreClock();
  // Per message, so debug: in an outage the connection logs the failed commands, rate-limited.
  const failed = (what: string) => (err: Error) => logger.debug({ code: 'E_UPSTREAM', err }, `MQTT message queue (Redis): ${what} failed; the message is delivered again on the client's next connection`);

  const backend: QueueBackend = {
    keyOf: (_clientId, packet) => memberOf(packet),
    async put(clientIds, packet) {
      const blob = msgpack.encode(new Packet(packet));
      const member = memberOf(packet);
      const score = nextScore();
      if (clientIds.length === 1) {
        const id = clientIds[0] as string;
        await commands.citypulseEnqueue(orderKey(id), dataKey(id), score, member, blob);
        return;
      }
      const pipeline = commands.pipeline();
      for (const id of clientIds) pipeline.citypulseEnqueue(orderKey(id), dataKey(id), score, member, blob);
      const results = await pipeline.exec();
      const error = results?.find(([err]) => err)?.[0];
      if (error) throw error;
    },
    async replace(clientId, member, packet) {
      await commands.citypulseReplace(orderKey(clientId), dataKey(clientId), member, msgpack.encode(packet));
    },
    del(clientId, member) {
      commands.citypulseRemove(orderKey(clientId), dataKey(clientId), member).catch(failed('clearing an acknowledged message'));
    },
    page: (clientId, from, limit) => readPage(conn, clientId, from as ReadCursor | undefined, limit, failed),
    async scan(clientId, cursor, before, limit) {
      const rows = await conn.zrangebyscore(orderKey(clientId), cursor ?? '-inf', Math.floor(before * 1000), 'WITHSCORES', 'LIMIT', 0, limit);
      const entries: QueueEntry[] = [];
      for (let i = 0; i < rows.length; i += 2) {
        const member = rows[i] as string;
        const at = member.lastIndexOf(':');
        entries.push({ key: member, brokerId: member.slice(0, at), brokerCounter: Number(member.slice(at + 1)), queuedAt: Number(rows[i + 1]) / 1000 });
      }
      // Exclusive: two messages of one microsecond split across pages are looked at next time round.
      return { entries, cursor: entries.length < limit ? undefined : `(${rows[rows.length - 1] as string}` };
    },
    async get(clientId, members) {
      const blobs = await conn.hmgetBuffer(dataKey(clientId), ...members);
      return blobs.map((blob) => (blob ? msgpack.decode(blob) : undefined));
    },
    // Every command is on the one connection, answered in order: a PING comes back after them.
    flush: async () => {
      await conn.ping();
    },
    async count() {
      const clients = await conn.smembers(CLIENTS);
      const sizes = await Promise.all(clients.map((id) => conn.zcard(orderKey(id))));
      return sizes.reduce((a, b) => a + b, 0);
    },
  };
  return withQueue(persistence, backend, () => moveLegacyQueues(conn, backend, logger));
}

/** Set of the clients with a persistent session (aedes-persistence-redis 12). */
const CLIENTS = 'clients';

/**
 * A score per queued message: the time in microseconds, kept strictly increasing on this node, so
 * a node's messages keep their order and different nodes' interleave by time. Integers below 2^53
 * are exact in Redis's doubles.
 */
function scoreClock(): () => number {
  let last = 0;
  return () => (last = Math.max(last + 1, Date.now() * 1000));
}

/**
 * Where a read of a client's queue got to: the last score read, inclusive, with the members read at
 * that score. Two nodes may queue a message at the same microsecond, and acknowledgements arriving
 * meanwhile must not shift what is read next (as an offset would).
 */
interface ReadCursor {
  readonly score: string;
  readonly members: ReadonlySet<string>;
}

/** A page of a client's queue, in order, from a cursor (session-queue.ts QueueBackend.page). */
async function readPage(conn: RedisConnection, clientId: string, from: ReadCursor | undefined, limit: number, failed: (what: string) => (err: Error) => void): Promise<QueuePage> {
  const order = orderKey(clientId);
  const min = from?.score ?? '-inf';
  const atMin = from?.members ?? new Set<string>();
  const asked = limit + atMin.size;
  const rows = await conn.zrangebyscore(order, min, '+inf', 'WITHSCORES', 'LIMIT', 0, asked);
  const members: string[] = [];
  let lastScore = min;
  let atLast = new Set<string>();
  for (let i = 0; i < rows.length; i += 2) {
    const member = rows[i] as string;
    const score = rows[i + 1] as string;
    if (score === min && atMin.has(member)) continue;
    members.push(member);
    if (score !== lastScore) {
      lastScore = score;
      atLast = new Set<string>();
    }
    atLast.add(member);
  }
  const end = rows.length < asked * 2;
  if (members.length === 0) return { packets: [], next: from, end };
  if (lastScore === min) for (const member of atMin) atLast.add(member);
  const blobs = await conn.hmgetBuffer(dataKey(clientId), ...members);
  const packets: QueuedPacket[] = [];
  for (let i = 0; i < members.length; i++) {
    const blob = blobs[i];
    // Acknowledged between the two reads, or a put cut short: nothing to deliver.
    if (!blob) {
      conn.zrem(order, members[i] as string).catch(failed('dropping an empty queue entry'));
      continue;
    }
    packets.push(msgpack.decode(blob));
  }
  return { packets, next: { score: lastScore, members: atLast } satisfies ReadCursor, end, reachedAt: Number(lastScore) / 1000 };
}

/**
 * Moves the queues aedes-persistence-redis kept (list "outgoing:<client>" of keys "packet:<broker>:
 * <counter>", or "outgoing:<client>:<broker>:<counter>" once a QoS 2 message was released) into
 * this queue, in their order, then deletes them. Several nodes starting at once move the same
 * messages to the same members: nothing is doubled.
 */
async function moveLegacyQueues(conn: RedisConnection, backend: QueueBackend, logger: Logger): Promise<void> {
  let moved = 0;
  const emptied = new Set<string>();
  for (const clientId of await conn.smembers(CLIENTS)) {
    const list = `outgoing:${encodeURIComponent(clientId)}`;
    const keys = await conn.lrange(list, 0, -1);
    if (keys.length === 0) continue;
    const blobs = await conn.mgetBuffer(...keys);
    for (const blob of blobs) {
      if (!blob) continue;
      await backend.put([clientId], msgpack.decode(blob));
      moved++;
    }
    await conn.del(list);
    for (const key of keys) emptied.add(key);
  }
  for (const key of emptied) await conn.del(key, `${key}:offlineCount`);
  if (moved > 0) logger.info({ moved }, 'MQTT message queue moved from aedes-persistence-redis lists to the sorted-set queue');
}
