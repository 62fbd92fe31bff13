import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CodedError } from '@citypulse/contracts';
import { connectRedis, parseRedisUrl, redisWhere } from '@citypulse/infra';
import type { DeviceRecord, RegistryData, RegistryImport, RegistryLogger, RegistrySink, RegistryStore, ServiceAccount, WriteScope } from './registry.js';

/**
 * The device registry in Redis (REGISTRY_STORE=redis), for a cluster whose nodes share no file
 * system. The records are the same JSON as in devices.json, one hash field each:
 *
 *   registry:devices    hash  device id → DeviceRecord JSON
 *   registry:services   hash  service id → ServiceAccount JSON
 *   registry:version    integer, incremented by every write
 *   registry:meta       hash  createdAt (first write), importedFrom / importedAt (devices.json imports)
 *   registry:changes:DB pub/sub channel: {"version":N,"devices":[ids],"services":[ids]} or {"version":N,"all":true}
 *
 * Every reader keeps the whole registry in memory, as with the file: a login reads nothing from
 * Redis. A reader that watches applies each change message by fetching the records it names
 * (HMGET), in version order; a gap in the versions, a reconnect after an outage or a message it
 * cannot read makes it read everything again (it may have missed messages). A write is one Lua
 * script that checks the records the change was computed from are still as they were read
 * (compare-and-set per record, so writers of different records never conflict and a write never
 * resurrects a record removed meanwhile), stores what changed, increments the version and
 * publishes the change, atomically; on a conflict the change is computed again from fresh reads.
 */
export const REDIS_REGISTRY_DEFAULTS = {
  keyPrefix: 'registry:',
  /** A write is computed again this many times when a record it read changed meanwhile (then E_CONFLICT). */
  writeAttempts: 20,
  /** Before attempt n + 1, a pause of up to n times this (random). */
  retryPauseMs: 10,
  /** A refresh waits this long for change messages already published to arrive, then reads everything. */
  catchUpMs: 1_000,
  /** A write changing more records than this tells the readers to read everything rather than listing them. */
  changeListMax: 1_000,
  /** After a failed resync, the next attempt. */
  resyncRetryMs: 2_000,
} as const;

type RedisConnection = Awaited<ReturnType<typeof connectRedis>>['conn'];
type Hash = 'd' | 's';

interface ChangeMessage {
  readonly version: number;
  readonly devices?: readonly string[];
  readonly services?: readonly string[];
  readonly all?: boolean;
}

/**
 * KEYS: devices, services, version, meta. ARGV: channel, now, the change message after its version,
 * the number of checks, then per check (d|s, id, expected JSON or '' for absent), the number of
 * writes, then per write (d|s, id, JSON or '' to remove). Returns the new version, or 0 when a
 * record is no longer as it was read (nothing written).
 */
const WRITE_SCRIPT = `
local hashes = { d = KEYS[1], s = KEYS[2] }
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local current = redis.call('HGET', hashes[ARGV[i]], ARGV[i + 1])
  if (current or '') ~= ARGV[i + 2] then return 0 end
  i = i + 3
end
local writes = tonumber(ARGV[i])
i = i + 1
for _ = 1, writes do
  if ARGV[i + 2] == '' then
    redis.call('HDEL', hashes[ARGV[i]], ARGV[i + 1])
  else
    redis.call('HSET', hashes[ARGV[i]], ARGV[i + 1], ARGV[i + 2])
  end
  i = i + 3
end
redis.call('HSETNX', KEYS[4], 'createdAt', ARGV[2])
local version = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[1], '{"version":' .. version .. ARGV[3])
return version
`;

/**
 * KEYS: devices, services, version, meta. ARGV: channel, now, source file, mode, then the devices
 * (count, then id and JSON each) and the services (likewise). Mode "once" imports only into a
 * registry that was never written (no meta, both hashes empty); "merge" adds the ids not
 * registered yet as a device or a service. Returns { version (0: nothing added), devices added,
 * services added, skipped }.
 */
const IMPORT_SCRIPT = `
if ARGV[4] == 'once' and (redis.call('EXISTS', KEYS[4]) == 1 or redis.call('HLEN', KEYS[1]) > 0 or redis.call('HLEN', KEYS[2]) > 0) then
  return { 0, 0, 0, 0 }
end
local added = { 0, 0 }
local skipped = 0
local i = 5
for h = 1, 2 do
  local count = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, count do
    local id = ARGV[i]
    if redis.call('HEXISTS', KEYS[1], id) == 1 or redis.call('HEXISTS', KEYS[2], id) == 1 then
      skipped = skipped + 1
    else
      redis.call('HSET', KEYS[h], id, ARGV[i + 1])
      added[h] = added[h] + 1
    end
    i = i + 2
  end
end
redis.call('HSETNX', KEYS[4], 'createdAt', ARGV[2])
local version = 0
if added[1] + added[2] > 0 then
  redis.call('HSET', KEYS[4], 'importedFrom', ARGV[3], 'importedAt', ARGV[2])
  version = redis.call('INCR', KEYS[3])
  redis.call('PUBLISH', ARGV[1], '{"version":' .. version .. ',"all":true}')
end
return { version, added[1], added[2], skipped }
`;

const SILENT: RegistryLogger = { info: () => undefined, warn: () => undefined };

export interface RedisRegistryStoreOptions {
  /** DATA_DIR/devices.json: imported once into an empty registry. */
  readonly file: string;
  readonly sink: RegistrySink;
  readonly redisUrl: string | undefined;
  readonly logger?: RegistryLogger | undefined;
  /** Reads a devices.json (registry.ts readRegistryFile; passed in to keep the modules acyclic at load time). */
  readonly readFile: (file: string) => Promise<RegistryData>;
  /** Key and channel prefix (default registry:). */
  readonly keyPrefix?: string;
}

export class RedisRegistryStore implements RegistryStore {
  readonly where: string;
  readonly #options: RedisRegistryStoreOptions;
  readonly #logger: RegistryLogger;
  readonly #keys: { readonly devices: string; readonly services: string; readonly version: string; readonly meta: string };
  /** Pub/sub ignores the database number: two registries on one Redis (…/0 and …/1) must not hear each other. */
  readonly #channel: string;
  #conn: RedisConnection | undefined;
  #sub: RedisConnection | undefined;
  /** The version whose changes, and every earlier one, are in memory. */
  #applied = 0;
  /** Loads and change fetches run one after another, so a later read is never overwritten by an earlier one. */
  #queue: Promise<void> = Promise.resolve();
  #waiters: { version: number; done: (caughtUp: boolean) => void; timer: NodeJS.Timeout }[] = [];
  #resyncTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: RedisRegistryStoreOptions) {
    const connection = parseRedisUrl(options.redisUrl, 'when REGISTRY_STORE=redis');
    this.where = redisWhere(connection);
    this.#options = options;
    this.#logger = options.logger ?? SILENT;
    const prefix = options.keyPrefix ?? REDIS_REGISTRY_DEFAULTS.keyPrefix;
    this.#keys = { devices: `${prefix}devices`, services: `${prefix}services`, version: `${prefix}version`, meta: `${prefix}meta` };
    this.#channel = `${prefix}changes:${connection.db}`;
  }

  async open(watch: boolean): Promise<void> {
    const connect = (role: string) =>
      connectRedis(this.#options.redisUrl, {
        purpose: `device registry${role}`,
        requiredWhen: 'when REGISTRY_STORE=redis',
        connectionName: `citypulse-registry${role ? '-changes' : ''}`,
        logger: this.#logger,
        alternative: 'or set REGISTRY_STORE=file to keep the registry in DATA_DIR/devices.json (one host)',
        outage: 'logins go on from the registry in memory; registry changes wait for Redis',
      });
    this.#conn = (await connect('')).conn;
    try {
      if (watch) {
        this.#sub = (await connect(' (changes)')).conn;
        this.#sub.on('message', (channel: string, message: string) => {
          if (channel === this.#channel) this.#onMessage(message);
        });
        await this.#sub.subscribe(this.#channel);
        // connectRedis returned once connected: a later 'ready' is a reconnect, after which
        // messages may have been missed.
        this.#sub.on('ready', () => this.#resync('reconnected'));
        this.#conn.on('ready', () => {
          if (this.#resyncTimer) this.#resync('reconnected');
        });
      }
      await this.#serially(() => this.#loadAll());
      await this.#importOnce();
    } catch (err) {
      this.close();
      throw err;
    }
  }

  reload(): Promise<void> {
    return this.#serially(() => this.#loadAll());
  }

  async refresh(): Promise<void> {
    // During an outage a lookup must not wait for Redis: logins go on from memory.
    if (this.#closed || this.#conn?.status !== 'ready') return;
    await this.#queue;
    let version: number;
    try {
      version = Number(await this.#conn.get(this.#keys.version)) || 0;
    } catch {
      return;
    }
    if (version === this.#applied) return;
    // Changes published a moment ago are on their way: wait for them rather than read everything.
    if (this.#sub && version > this.#applied && (await this.#caughtUp(version))) return;
    await this.reload();
  }

  async write(scope: WriteScope, change: (data: RegistryData) => void): Promise<void> {
    const conn = this.#ready();
    const deviceIds = [...new Set(scope.devices)];
    const serviceIds = [...new Set(scope.services)];
    for (let attempt = 1; attempt <= REDIS_REGISTRY_DEFAULTS.writeAttempts; attempt++) {
      const [storedDevices, storedServices] = await this.#upstream(() => Promise.all([hmget(conn, this.#keys.devices, deviceIds), hmget(conn, this.#keys.services, serviceIds)]));
      const data: RegistryData = { devices: parseRecords<DeviceRecord>(deviceIds, storedDevices), services: parseRecords<ServiceAccount>(serviceIds, storedServices) };
      change(data);
      const checks: string[] = [];
      const writes: string[] = [];
      const devices = new Map<string, DeviceRecord | undefined>();
      const services = new Map<string, ServiceAccount | undefined>();
      const compare = <T>(hash: Hash, ids: readonly string[], stored: readonly (string | null)[], after: Record<string, T>, changed: Map<string, T | undefined>) => {
        const scoped = new Set(ids);
        for (const id of Object.keys(after)) if (!scoped.has(id)) throw new Error(`registry write changed ${id}, outside the records it declared`);
        ids.forEach((id, i) => {
          const before = stored[i] ?? '';
          const record = Object.hasOwn(after, id) ? after[id] : undefined;
          const now = record === undefined ? '' : JSON.stringify(record);
          checks.push(hash, id, before);
          if (now === before) return;
          writes.push(hash, id, now);
          changed.set(id, record);
        });
      };
      compare('d', deviceIds, storedDevices, data.devices, devices);
      compare('s', serviceIds, storedServices, data.services, services);
      if (writes.length === 0) return;
      const message = devices.size + services.size > REDIS_REGISTRY_DEFAULTS.changeListMax ? ',"all":true}' : `,"devices":${JSON.stringify([...devices.keys()])},"services":${JSON.stringify([...services.keys()])}}`;
      const args = [this.#channel, new Date().toISOString(), message, String(checks.length / 3), ...checks, String(writes.length / 3), ...writes];
      const version = Number(await this.#upstream(() => runScript(conn, WRITE_SCRIPT, [this.#keys.devices, this.#keys.services, this.#keys.version, this.#keys.meta], args)));
      if (version === 0) {
        // A record changed since it was read: compute the change again, after a random pause that
        // grows with the attempts, so writers contending for one record do not collide in step.
        await sleep(Math.random() * attempt * REDIS_REGISTRY_DEFAULTS.retryPauseMs);
        continue;
      }
      // What this write stored is known: apply it now, after the reads queued before it. Unless a
      // change message or a full read at or past this version came first (it read what is newer),
      // and counting this version only when it is the next one (the messages before it will come).
      await this.#serially(async () => {
        if (version <= this.#applied) return;
        this.#options.sink.patch(devices, services);
        if (version === this.#applied + 1) this.#advance(version);
      });
      return;
    }
    throw new CodedError('E_CONFLICT', `the device registry kept changing under this write (${REDIS_REGISTRY_DEFAULTS.writeAttempts} attempts); try again`);
  }

  async importFile(file: string): Promise<RegistryImport> {
    return this.#import(file, 'merge');
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#resyncTimer);
    this.#resyncTimer = undefined;
    for (const waiter of this.#waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.done(false);
    }
    this.#sub?.disconnect();
    this.#conn?.disconnect();
  }

  /** Into a registry never written to, the devices.json of this node's DATA_DIR, once. */
  async #importOnce(): Promise<void> {
    if (this.#applied > 0) return;
    const result = await this.#import(this.#options.file, 'once');
    if (result.devices + result.services > 0) {
      this.#logger.info({ devices: result.devices, services: result.services, from: this.#options.file, redis: this.where }, `device registry: imported ${result.devices} devices and ${result.services} service accounts from ${this.#options.file} into Redis (once)`);
    }
  }

  async #import(file: string, mode: 'once' | 'merge'): Promise<RegistryImport> {
    const conn = this.#ready();
    const data = await this.#options.readFile(file);
    const entries = (records: Record<string, DeviceRecord | ServiceAccount>) => Object.entries(records).filter(([id, record]) => record.id === id);
    const devices = entries(data.devices);
    const services = entries(data.services);
    if (devices.length + services.length === 0) return { devices: 0, services: 0, skipped: 0 };
    const args = [this.#channel, new Date().toISOString(), file, mode, String(devices.length), ...devices.flatMap(([id, r]) => [id, JSON.stringify(r)]), String(services.length), ...services.flatMap(([id, r]) => [id, JSON.stringify(r)])];
    const [version, addedDevices, addedServices, skipped] = ((await this.#upstream(() => runScript(conn, IMPORT_SCRIPT, [this.#keys.devices, this.#keys.services, this.#keys.version, this.#keys.meta], args))) as number[]).map(Number);
    if (version) await this.reload();
    return { devices: addedDevices ?? 0, services: addedServices ?? 0, skipped: skipped ?? 0 };
  }

  /** Reads everything at once (one MULTI), with the version it is at. */
  async #loadAll(): Promise<void> {
    const conn = this.#conn;
    if (!conn || this.#closed) return;
    const replies = await this.#upstream(() => conn.multi().get(this.#keys.version).hgetall(this.#keys.devices).hgetall(this.#keys.services).exec());
    if (!replies) throw this.#upstreamError(new Error('the read was aborted'));
    const [version, devices, services] = replies.map(([err, value]) => {
      if (err) throw this.#upstreamError(err);
      return value;
    }) as [string | null, Record<string, string>, Record<string, string>];
    const parse = <T>(hash: Record<string, string>) => {
      const records = Object.create(null) as Record<string, T>;
      for (const [id, text] of Object.entries(hash)) {
        const record = this.#parse<T>(id, text);
        if (record) records[id] = record;
      }
      return records;
    };
    this.#options.sink.replace({ devices: parse<DeviceRecord>(devices), services: parse<ServiceAccount>(services) });
    this.#advance(Number(version) || 0, true);
  }

  /** The records a change message names, as they are now. */
  async #fetch(deviceIds: readonly string[], serviceIds: readonly string[]): Promise<void> {
    const conn = this.#conn;
    if (!conn || this.#closed) return;
    const [storedDevices, storedServices] = await this.#upstream(() => Promise.all([hmget(conn, this.#keys.devices, deviceIds), hmget(conn, this.#keys.services, serviceIds)]));
    const toMap = <T>(ids: readonly string[], stored: readonly (string | null)[]) => new Map(ids.map((id, i) => [id, stored[i] ? this.#parse<T>(id, stored[i]) : undefined]));
    this.#options.sink.patch(toMap<DeviceRecord>(deviceIds, storedDevices), toMap<ServiceAccount>(serviceIds, storedServices));
  }

  #onMessage(text: string): void {
    let message: ChangeMessage;
    try {
      message = JSON.parse(text) as ChangeMessage;
      if (!Number.isInteger(message.version)) throw new Error('no version');
    } catch (err) {
      this.#logger.warn({ code: 'E_CONFIG', err, channel: this.#channel }, 'device registry: unreadable change message; reading everything again');
      this.#resync('unreadable change message');
      return;
    }
    this.#serially(async () => {
      if (this.#closed || message.version <= this.#applied) return;
      // A gap: messages were missed (a reconnect not noticed yet). Read everything.
      if (message.all || message.version !== this.#applied + 1) return this.#loadAll();
      await this.#fetch(message.devices ?? [], message.services ?? []);
      this.#advance(message.version);
    }).catch((err: unknown) => {
      this.#logger.warn({ code: 'E_UPSTREAM', err, redis: this.where }, 'device registry: a change could not be read; reading everything again once Redis answers');
      this.#resync('change not read');
    });
  }

  /** Reads everything again (after a reconnect, messages may have been missed); retried until it works. */
  #resync(reason: string): void {
    clearTimeout(this.#resyncTimer);
    this.#resyncTimer = undefined;
    if (this.#closed) return;
    const sub = this.#sub;
    // Subscribed again before reading, so a change made during the read is not missed.
    Promise.resolve(sub?.subscribe(this.#channel))
      .then(() => this.reload())
      .then(
        () => this.#logger.info({ reason, redis: this.where, version: this.#applied }, 'device registry: read again from Redis'),
        (err: unknown) => {
          if (this.#closed) return;
          this.#logger.warn({ code: 'E_UPSTREAM', err, redis: this.where }, 'device registry: Redis did not answer the resync; trying again');
          this.#resyncTimer = setTimeout(() => this.#resync(reason), REDIS_REGISTRY_DEFAULTS.resyncRetryMs);
          this.#resyncTimer.unref();
        },
      );
  }

  #serially(task: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Records `version` as applied (`reset`: a full read, which may also go back after Redis lost data). */
  #advance(version: number, reset = false): void {
    this.#applied = reset ? version : Math.max(this.#applied, version);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (waiter.version > this.#applied) return true;
      clearTimeout(waiter.timer);
      waiter.done(true);
      return false;
    });
  }

  /** True once `version` is applied, false when it is not within catchUpMs. */
  #caughtUp(version: number): Promise<boolean> {
    return new Promise((done) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((waiter) => waiter.timer !== timer);
        done(false);
      }, REDIS_REGISTRY_DEFAULTS.catchUpMs);
      timer.unref();
      this.#waiters.push({ version, done, timer });
    });
  }

  #parse<T>(id: string, text: string): T | undefined {
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      this.#logger.warn({ code: 'E_CONFIG', err, id, redis: this.where }, 'device registry: a record in Redis is not JSON; ignored');
      return undefined;
    }
  }

  /** The command connection, or E_UPSTREAM at once while Redis is away (a write must not hang). */
  #ready(): RedisConnection {
    if (this.#closed || !this.#conn) throw new CodedError('E_UPSTREAM', 'the device registry is closed');
    if (this.#conn.status !== 'ready') throw new CodedError('E_UPSTREAM', `the device registry's Redis at ${this.where} is unavailable (${this.#conn.status}); try again once it answers`);
    return this.#conn;
  }

  async #upstream<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (err) {
      throw err instanceof CodedError ? err : this.#upstreamError(err);
    }
  }

  #upstreamError(err: unknown): CodedError {
    return new CodedError('E_UPSTREAM', `the device registry's Redis at ${this.where} failed (${(err as Error).message}); try again once it answers`, { cause: err });
  }
}

/** HMGET, nothing for no ids (HMGET needs at least one field). Arguments as one array: a batch may name 100,000 ids, too many to spread into a call. */
async function hmget(conn: RedisConnection, key: string, ids: readonly string[]): Promise<(string | null)[]> {
  return ids.length === 0 ? [] : ((await conn.call('HMGET', [key, ...ids])) as (string | null)[]);
}

/** Records by id (a prototype-less object: an id such as "__proto__" is just a missing record). */
function parseRecords<T>(ids: readonly string[], stored: readonly (string | null)[]): Record<string, T> {
  const records = Object.create(null) as Record<string, T>;
  ids.forEach((id, i) => {
    const text = stored[i];
    if (text) records[id] = JSON.parse(text) as T;
  });
  return records;
}

const SHA1 = new Map<string, string>();

/** EVALSHA, loading the script with EVAL the first time a Redis does not know it. */
async function runScript(conn: RedisConnection, script: string, keys: readonly string[], args: readonly string[]): Promise<unknown> {
  let sha = SHA1.get(script);
  if (!sha) {
    sha = createHash('sha1').update(script).digest('hex');
    SHA1.set(script, sha);
  }
  try {
    return await conn.call('EVALSHA', [sha, keys.length, ...keys, ...args]);
  } catch (err) {
    if (!(err as Error).message.startsWith('NOSCRIPT')) throw err;
    return conn.call('EVAL', [script, keys.length, ...keys, ...args]);
  }
}
