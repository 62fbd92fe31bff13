import { randomBytes, scrypt as scryptCb, timingSafeEqual, createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { promisify } from 'node:util';
import { CodedError, isDeviceId, isDomain, isInsideProvince, isProvinceCode, REGISTRY_STORES, type DeviceProfile, type Domain, type LngLat } from '@citypulse/contracts';
import { RedisRegistryStore } from './registry-redis.js';

/**
 * The device registry: one module and one record format, read by the broker, ingest and api,
 * written by the provisioning CLI, the simulators, `npm start` and the api's admin routes.
 * Secrets are stored only as salted scrypt hashes. Two stores (REGISTRY_STORE): a JSON file in the
 * data folder (one host; writes are atomic, temp file + rename, under a lock file) or Redis (a
 * cluster; registry-redis.ts). Either way every reader keeps the whole registry in memory (a login
 * reads no storage) and picks changes up without restart.
 */

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>;

export const REGISTRY_DEFAULTS = {
  fileName: 'devices.json',
  scryptN: 16384, // 2^14: about 25–50 ms per login on these cores, for a secret someone chose
  /**
   * For a secret as the registry generates it (see isRandomSecret): 2^10, about 2 ms. A slow hash
   * protects guessable secrets; 192 random bits cannot be guessed at any cost, while 50,000 devices
   * reconnecting after a broker restart would each pay it (at 2^14: 35 CPU-minutes).
   */
  scryptNRandom: 1024,
  scryptR: 8,
  scryptP: 1,
  hashBytes: 32,
  saltBytes: 16,
  secretBytes: 24, // 32 base64url characters
  lockStaleMs: 10_000,
  lockRetryMs: 25,
} as const;

/**
 * ingest and api read telemetry; tools record and replay it; a gateway publishes for the devices
 * registered behind it (a roadside controller, a data logger, the simulator's gateway mode).
 */
export type ServiceRole = 'ingest' | 'api' | 'tools' | 'gateway';
export const SERVICE_ROLES: readonly ServiceRole[] = ['ingest', 'api', 'tools', 'gateway'];

export interface DeviceRecord {
  readonly id: string;
  readonly province: string;
  readonly domain: Domain;
  /** Low-cardinality kind stored as a tag: road class, station type, feeder level. */
  readonly kind: string;
  readonly name: string;
  readonly location: LngLat;
  readonly profile?: DeviceProfile;
  /** Absent for a device behind a gateway: it cannot log in by itself. */
  readonly secretHash?: string;
  /** Service account (role gateway) that publishes for this device. */
  readonly gateway?: string;
  readonly enabled: boolean;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface ServiceAccount {
  readonly id: string;
  readonly role: ServiceRole;
  readonly secretHash: string;
  readonly enabled: boolean;
  readonly createdAt: string;
}

/** devices.json. */
export interface RegistryFile extends RegistryData {
  version: 1;
}

export interface NewDevice {
  readonly id: string;
  readonly province: string;
  readonly domain: Domain;
  readonly kind?: string;
  readonly name?: string;
  readonly location: LngLat;
  readonly profile?: DeviceProfile;
  /** Use this secret instead of generating one (e.g. a simulator re-provisioning its own devices). */
  readonly secret?: string;
  /**
   * Id of a gateway service account that publishes for this device. Such a device gets no secret
   * of its own (it never logs in), which also makes provisioning tens of thousands of them cheap.
   */
  readonly gateway?: string;
}

export interface UpsertOptions {
  /**
   * A device id that is already registered: `replace` (the default) re-provisions it (new secret,
   * enabled); `update` changes only its metadata and keeps its secret and its enabled flag;
   * `refuse` fails the whole write.
   */
  readonly existing?: 'replace' | 'update' | 'refuse';
}

export type Principal = { readonly type: 'device'; readonly device: DeviceRecord } | { readonly type: 'service'; readonly service: ServiceAccount };

export interface RegistryChange {
  /** Devices or services that were removed or disabled since the last load: disconnect them. */
  readonly revoked: readonly string[];
}

export function generateSecret(): string {
  return randomBytes(REGISTRY_DEFAULTS.secretBytes).toString('base64url');
}

/**
 * Whether a secret has the shape of a generated one: at least 32 base64url characters (192 bits
 * when random), with at least 16 different characters (a random one has about 25).
 */
export function isRandomSecret(secret: string): boolean {
  return secret.length >= 32 && /^[A-Za-z0-9_-]+$/.test(secret) && new Set(secret).size >= 16;
}

/**
 * Salted scrypt hash. `kind` 'password' always takes the full cost (people's passwords, where the
 * time a login takes must not depend on the password); 'secret' takes the low cost when the secret
 * looks generated (isRandomSecret).
 */
export async function hashSecret(secret: string, kind: 'secret' | 'password' = 'secret'): Promise<string> {
  const { scryptR: r, scryptP: p, hashBytes, saltBytes } = REGISTRY_DEFAULTS;
  const N = kind === 'secret' && isRandomSecret(secret) ? REGISTRY_DEFAULTS.scryptNRandom : REGISTRY_DEFAULTS.scryptN;
  const salt = randomBytes(saltBytes);
  const hash = await scrypt(secret, salt, hashBytes, { N, r, p, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scrypt(secret, Buffer.from(salt, 'base64url'), expected.length, { N: Number(n), r: Number(r), p: Number(p), maxmem: 64 * 1024 * 1024 });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

export function validateNewDevice(input: NewDevice): void {
  if (!isDeviceId(input.id)) throw new CodedError('E_BAD_REQUEST', `device id "${input.id}" must be 3–64 of a-z, 0-9, '-', '_' and start with a letter or digit`);
  if (!isProvinceCode(input.province)) throw new CodedError('E_PROVINCE', `province "${input.province}" is not one of the 34 province codes`);
  if (!isDomain(input.domain)) throw new CodedError('E_BAD_REQUEST', `domain "${String(input.domain)}" must be traffic, environment or energy`);
  const [lng, lat] = input.location;
  if (!Number.isFinite(lng) || !Number.isFinite(lat) || !isInsideProvince(input.province, input.location)) {
    throw new CodedError('E_BAD_REQUEST', `location [${lng}, ${lat}] is not inside province ${input.province}`);
  }
}

/** Where the registry is kept: REGISTRY_STORE (COMMON_CONFIG). */
export type RegistryStoreKind = (typeof REGISTRY_STORES)[number];

/** A pino logger fits. */
export interface RegistryLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

export interface RegistryOpenOptions {
  /** Follow what other processes write: the file store watches its folder, the Redis store the change channel. */
  readonly watch?: boolean;
  /** `file` (the default): DATA_DIR/devices.json. `redis`: the hashes at `redisUrl` (registry-redis.ts). */
  readonly store?: RegistryStoreKind;
  /** REDIS_URL, for the Redis store. */
  readonly redisUrl?: string | undefined;
  /** Redis store: outages, resyncs and the one-time import of devices.json. */
  readonly logger?: RegistryLogger | undefined;
}

/**
 * The store options out of a service's configuration (COMMON_CONFIG's REGISTRY_STORE, REDIS_URL):
 * `DeviceRegistry.open(config.DATA_DIR, { watch: true, ...registryStoreOptions(config, logger) })`.
 */
export function registryStoreOptions(config: { readonly REGISTRY_STORE: string; readonly REDIS_URL?: string | undefined }, logger?: RegistryLogger): Omit<RegistryOpenOptions, 'watch'> {
  const store = config.REGISTRY_STORE as RegistryStoreKind;
  if (!REGISTRY_STORES.includes(store)) throw new CodedError('E_CONFIG', `REGISTRY_STORE="${store}" must be one of ${REGISTRY_STORES.join(', ')}`);
  return { store, redisUrl: config.REDIS_URL, ...(logger ? { logger } : {}) };
}

/** The records, as devices.json holds them (beside its version) and as the Redis hashes hold them. */
export interface RegistryData {
  devices: Record<string, DeviceRecord>;
  services: Record<string, ServiceAccount>;
}

/** The records a write reads and may change: the Redis store reads and checks only these. */
export interface WriteScope {
  readonly devices: readonly string[];
  readonly services: readonly string[];
}

/** How a store hands the registry what it read. */
export interface RegistrySink {
  /** Every record, as stored now. */
  replace(data: RegistryData): void;
  /** These records as stored now (undefined: removed); the others are unchanged. */
  patch(devices: ReadonlyMap<string, DeviceRecord | undefined>, services: ReadonlyMap<string, ServiceAccount | undefined>): void;
}

/** What `importFile` copied into the Redis store. */
export interface RegistryImport {
  readonly devices: number;
  readonly services: number;
  /** Ids already in the registry, left as they are. */
  readonly skipped: number;
}

/** The storage under the registry: the JSON file (FileRegistryStore, below) or Redis (registry-redis.ts). */
export interface RegistryStore {
  /** For logs: the file, or redis://host:port/db. */
  readonly where: string;
  /** Reads everything (sink.replace); with `watch`, follows what other processes write. */
  open(watch: boolean): Promise<void>;
  /** Reads everything again. */
  reload(): Promise<void>;
  /** Catches up with writes made elsewhere that may not have arrived yet (a lookup missed). */
  refresh(): Promise<void>;
  /**
   * Runs `change` on the current records (at least those of `scope`; it must touch no other) and
   * stores what it changed, atomically with respect to other writers. The registry holds the
   * result when this resolves. `change` may run more than once (the Redis store retries when a
   * record it read changed meanwhile), so it must not have side effects.
   */
  write(scope: WriteScope, change: (data: RegistryData) => void): Promise<void>;
  /** Copies the records of a devices.json whose ids are not registered yet (the Redis store). */
  importFile?(file: string): Promise<RegistryImport>;
  close(): void;
}

export class DeviceRegistry extends EventEmitter<{ change: [RegistryChange] }> {
  /** DATA_DIR/devices.json: the registry itself (file store), or what an empty Redis store imports once. */
  readonly file: string;
  readonly store: RegistryStoreKind;
  #data: RegistryData = emptyData();
  readonly #backend: RegistryStore;
  /** Cache of recent successful logins: sha256(id, secret, hash) → true, so a reconnect storm does not redo scrypt. */
  readonly #verified = new Map<string, string>();

  private constructor(file: string, store: RegistryStoreKind, makeBackend: (sink: RegistrySink) => RegistryStore) {
    super();
    this.file = file;
    this.store = store;
    this.#backend = makeBackend({
      replace: (data) => this.#replace(data),
      patch: (devices, services) => this.#patch(devices, services),
    });
  }

  /**
   * Opens the registry of `dataDir` (created if missing). With `watch`, what other
   * processes write is applied live. The Redis store (`store: 'redis'`) needs `redisUrl`: without
   * it E_CONFIG, with a Redis that does not answer E_UPSTREAM.
   */
  static async open(dataDir: string, options: RegistryOpenOptions = {}): Promise<DeviceRegistry> {
    const store = options.store ?? 'file';
    if (!REGISTRY_STORES.includes(store)) throw new CodedError('E_CONFIG', `REGISTRY_STORE="${String(store)}" must be one of ${REGISTRY_STORES.join(', ')}`);
    const file = join(dataDir, REGISTRY_DEFAULTS.fileName);
    // Created for either store: callers keep files of their own beside the registry (the simulators' secrets).
    await mkdir(dataDir, { recursive: true });
    const registry = new DeviceRegistry(file, store, (sink) =>
      store === 'redis' ? new RedisRegistryStore({ file, sink, redisUrl: options.redisUrl, logger: options.logger, readFile: readRegistryFile }) : new FileRegistryStore(file, sink),
    );
    await registry.#backend.open(options.watch ?? false);
    return registry;
  }

  /** For logs: DATA_DIR/devices.json, or redis://host:port/db. */
  get where(): string {
    return this.#backend.where;
  }

  get devices(): readonly DeviceRecord[] {
    return Object.values(this.#data.devices);
  }

  device(id: string): DeviceRecord | undefined {
    return Object.hasOwn(this.#data.devices, id) ? this.#data.devices[id] : undefined;
  }

  service(id: string): ServiceAccount | undefined {
    return Object.hasOwn(this.#data.services, id) ? this.#data.services[id] : undefined;
  }

  /** Checks a login. Returns the principal, or undefined for an unknown id, a wrong secret or a disabled account. */
  async authenticate(id: string, secret: string): Promise<Principal | undefined> {
    // A device provisioned a moment ago may log in before the change arrives: look again once.
    if (!this.device(id) && !this.service(id)) await this.refreshIfChanged();
    const device = this.device(id);
    const service = device ? undefined : this.service(id);
    const stored = device?.secretHash ?? service?.secretHash;
    if (!stored || !(device?.enabled ?? service?.enabled)) {
      return undefined;
    }
    const cacheKey = createHash('sha256').update(id).update('\0').update(secret).update('\0').update(stored).digest('base64');
    if (this.#verified.get(id) !== cacheKey) {
      if (!(await verifySecret(secret, stored))) return undefined;
      this.#verified.set(id, cacheKey);
    }
    return device ? { type: 'device', device } : { type: 'service', service: service as ServiceAccount };
  }

  /**
   * Adds or replaces devices in one write. Returns each device's secret (generated unless given);
   * devices behind a gateway have none, and so does a device whose secret `existing: 'update'` kept.
   */
  async upsertDevices(inputs: readonly NewDevice[], options: UpsertOptions = {}): Promise<{ id: string; secret: string | undefined }[]> {
    inputs.forEach(validateNewDevice);
    const existingMode = options.existing ?? 'replace';
    // Hashing is slow, so it happens before the write: decide now which secrets to keep, re-check in the write.
    if (existingMode === 'update') await this.refreshIfChanged();
    const keeps = (input: NewDevice) => existingMode === 'update' && input.secret === undefined && this.device(input.id)?.secretHash !== undefined;
    const prepared = await Promise.all(
      inputs.map(async (input) => {
        if (input.gateway !== undefined || keeps(input)) return { input, secret: undefined, secretHash: undefined };
        const secret = input.secret ?? generateSecret();
        return { input, secret, secretHash: await hashSecret(secret) };
      }),
    );
    const ids = inputs.map((input) => input.id);
    const gateways = inputs.flatMap((input) => (input.gateway === undefined ? [] : [input.gateway]));
    await this.#backend.write({ devices: ids, services: [...new Set([...ids, ...gateways])] }, (data) => {
      const now = new Date().toISOString();
      for (const { input, secretHash } of prepared) {
        if (input.gateway !== undefined && data.services[input.gateway]?.role !== 'gateway') {
          throw new CodedError('E_BAD_REQUEST', `device ${input.id}: "${input.gateway}" is not a gateway account; create it first (role gateway)`);
        }
        if (data.services[input.id]) throw new CodedError('E_BAD_REQUEST', `"${input.id}" is already a service account id`);
        const existing = data.devices[input.id];
        if (existing && existingMode === 'refuse') throw new CodedError('E_BAD_REQUEST', `device "${input.id}" already exists`);
        const update = existing !== undefined && existingMode === 'update';
        const hash = secretHash ?? (update && input.gateway === undefined ? existing.secretHash : undefined);
        if (input.gateway === undefined && hash === undefined) {
          throw new CodedError('E_BAD_REQUEST', `device "${input.id}" changed while it was being updated; run the update again`);
        }
        data.devices[input.id] = {
          id: input.id,
          province: input.province,
          domain: input.domain,
          kind: input.kind ?? 'default',
          name: input.name ?? input.id,
          location: [input.location[0], input.location[1]],
          ...(input.profile ? { profile: input.profile } : {}),
          ...(hash !== undefined ? { secretHash: hash } : {}),
          ...(input.gateway !== undefined ? { gateway: input.gateway } : {}),
          enabled: update ? existing.enabled : true,
          createdAt: existing?.createdAt ?? now,
          updatedAt: now,
        };
      }
    });
    return prepared.map(({ input, secret }) => ({ id: input.id, secret }));
  }

  async setEnabled(id: string, enabled: boolean): Promise<void> {
    await this.#backend.write({ devices: [id], services: [] }, (data) => {
      const device = data.devices[id];
      if (!device) throw new CodedError('E_NOT_FOUND', `no device "${id}"`);
      data.devices[id] = { ...device, enabled, updatedAt: new Date().toISOString() };
    });
  }

  async rotateSecret(id: string): Promise<string> {
    const secret = generateSecret();
    const secretHash = await hashSecret(secret);
    await this.#backend.write({ devices: [id], services: [] }, (data) => {
      const device = data.devices[id];
      if (!device) throw new CodedError('E_NOT_FOUND', `no device "${id}"`);
      data.devices[id] = { ...device, secretHash, updatedAt: new Date().toISOString() };
    });
    return secret;
  }

  async removeDevice(id: string): Promise<void> {
    await this.#backend.write({ devices: [id], services: [] }, (data) => {
      if (!data.devices[id]) throw new CodedError('E_NOT_FOUND', `no device "${id}"`);
      delete data.devices[id];
    });
  }

  /** Creates or replaces a service account (ingest, api, tools, gateway) and returns its secret. */
  async upsertService(id: string, role: ServiceRole, secret: string = generateSecret()): Promise<string> {
    if (!isDeviceId(id)) throw new CodedError('E_BAD_REQUEST', `service id "${id}" must be 3–64 of a-z, 0-9, '-', '_'`);
    if (!SERVICE_ROLES.includes(role)) throw new CodedError('E_BAD_REQUEST', `service role "${String(role)}" must be one of ${SERVICE_ROLES.join(', ')}`);
    const secretHash = await hashSecret(secret);
    const now = new Date().toISOString();
    await this.#backend.write({ devices: [id], services: [id] }, (data) => {
      if (data.devices[id]) throw new CodedError('E_BAD_REQUEST', `"${id}" is already a device id`);
      data.services[id] = { id, role, secretHash, enabled: true, createdAt: data.services[id]?.createdAt ?? now };
    });
    return secret;
  }

  /**
   * Redis store: copies the devices and service accounts of a devices.json (default DATA_DIR's)
   * whose ids are not registered yet; the others are left as they are. The file store has nothing
   * to import into (E_CONFIG).
   */
  async importFile(file: string = this.file): Promise<RegistryImport> {
    if (!this.#backend.importFile) throw new CodedError('E_CONFIG', `the registry is the file ${this.file} itself: set REGISTRY_STORE=redis (and REDIS_URL) to import a devices.json into Redis`);
    return this.#backend.importFile(file);
  }

  /**
   * Picks up a write made elsewhere that may not have arrived yet (the file: re-read if it changed
   * since the last read; Redis: one GET of the version, and the changes behind it), for a lookup
   * that missed a device provisioned a moment ago.
   */
  async refreshIfChanged(): Promise<void> {
    await this.#backend.refresh();
  }

  /** Reads every record again; emits `change` with the accounts that were revoked. */
  reload(): Promise<void> {
    return this.#backend.reload();
  }

  close(): void {
    this.#backend.close();
  }

  /** Everything, as read: accounts removed, disabled or re-keyed are revoked. */
  #replace(next: RegistryData): void {
    const after = new Map<string, DeviceRecord | ServiceAccount>([...Object.entries(next.devices), ...Object.entries(next.services)]);
    const revoked: string[] = [];
    for (const [id, before] of [...Object.entries(this.#data.devices), ...Object.entries(this.#data.services)]) {
      if (isRevoked(before, after.get(id))) revoked.push(id);
    }
    this.#data = next;
    this.#revoke(revoked);
  }

  /** Some records, as read (the Redis store's change messages and its own writes). */
  #patch(devices: ReadonlyMap<string, DeviceRecord | undefined>, services: ReadonlyMap<string, ServiceAccount | undefined>): void {
    const revoked: string[] = [];
    const apply = <T extends DeviceRecord | ServiceAccount>(records: Record<string, T>, changes: ReadonlyMap<string, T | undefined>) => {
      for (const [id, record] of changes) {
        const before = Object.hasOwn(records, id) ? records[id] : undefined;
        if (before && isRevoked(before, record)) revoked.push(id);
        if (record) records[id] = record;
        else delete records[id];
      }
    };
    apply(this.#data.devices, devices);
    apply(this.#data.services, services);
    this.#revoke(revoked);
  }

  #revoke(revoked: readonly string[]): void {
    for (const id of revoked) this.#verified.delete(id);
    if (revoked.length > 0) this.emit('change', { revoked });
  }
}

/** Removed, disabled or given another secret: its sessions must end. */
function isRevoked(before: { enabled: boolean; secretHash?: string | undefined }, after: { enabled: boolean; secretHash?: string | undefined } | undefined): boolean {
  return !after || (before.enabled && !after.enabled) || after.secretHash !== before.secretHash;
}

/**
 * The file store: DATA_DIR/devices.json, rewritten whole on each write, atomically (temp file +
 * rename) under a lock file; with `watch`, the folder is watched and the file re-read on a change.
 */
class FileRegistryStore implements RegistryStore {
  readonly where: string;
  readonly #file: string;
  readonly #sink: RegistrySink;
  #watcher: FSWatcher | undefined;
  #reloadTimer: NodeJS.Timeout | undefined;
  #loadedMtimeMs = 0;
  #reloading: Promise<void> | undefined;

  constructor(file: string, sink: RegistrySink) {
    this.where = file;
    this.#file = file;
    this.#sink = sink;
  }

  async open(watch: boolean): Promise<void> {
    await this.reload();
    if (watch) this.#startWatching();
  }

  async refresh(): Promise<void> {
    // A reload under way may have read the file just before the write being looked for: wait for
    // it, then look at the file again.
    if (this.#reloading) await this.#reloading.catch(() => undefined);
    if (await this.#changedOnDisk()) await this.reload();
  }

  /** True when the file was written since it was last read (one stat, no read). */
  async #changedOnDisk(): Promise<boolean> {
    try {
      return (await stat(this.#file)).mtimeMs !== this.#loadedMtimeMs;
    } catch {
      return false;
    }
  }

  reload(): Promise<void> {
    const reloading = this.#reloadNow();
    this.#reloading = reloading;
    const clear = () => {
      if (this.#reloading === reloading) this.#reloading = undefined;
    };
    reloading.then(clear, clear);
    return reloading;
  }

  async #reloadNow(): Promise<void> {
    this.#loadedMtimeMs = await stat(this.#file).then(
      (s) => s.mtimeMs,
      () => 0,
    );
    const next = await readRegistryFile(this.#file);
    this.#sink.replace({ devices: next.devices, services: next.services });
  }

  async write(_scope: WriteScope, change: (data: RegistryData) => void): Promise<void> {
    await withLock(`${this.#file}.lock`, async () => {
      const data = await readRegistryFile(this.#file);
      change(data);
      const tmp = `${this.#file}.${process.pid}.${Date.now()}.tmp`;
      await writeFile(tmp, `${JSON.stringify(data, null, 1)}\n`, { mode: 0o600 });
      await rename(tmp, this.#file);
    });
    await this.reload();
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    clearTimeout(this.#reloadTimer);
  }

  #startWatching(): void {
    const name = basename(this.#file);
    // Watch the folder: an atomic rename replaces the file's inode, which a file watch would lose.
    this.#watcher = watch(dirname(this.#file), (_event, changed) => {
      if (changed !== name) return;
      clearTimeout(this.#reloadTimer);
      this.#reloadTimer = setTimeout(() => {
        this.reload().catch(() => undefined);
      }, 50);
    });
    this.#watcher.unref();
  }
}

function emptyData(): RegistryData {
  return { devices: {}, services: {} };
}

function emptyFile(): RegistryFile {
  return { version: 1, devices: {}, services: {} };
}

/** Reads and checks a devices.json; a missing file is an empty registry. */
export async function readRegistryFile(file: string): Promise<RegistryFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyFile();
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CodedError('E_CONFIG', `device registry ${file} is not valid JSON; restore it from a backup or remove it to start empty`, { cause: err });
  }
  const data = parsed as Partial<RegistryFile>;
  if (data.version !== 1 || typeof data.devices !== 'object' || typeof data.services !== 'object' || !data.devices || !data.services) {
    throw new CodedError('E_CONFIG', `device registry ${file} has an unknown format (expected version 1 with devices and services)`);
  }
  return { version: 1, devices: data.devices, services: data.services };
}

/** A lock file created with O_EXCL; a lock older than lockStaleMs is taken over (its writer died). */
async function withLock<T>(lockFile: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      const handle = await open(lockFile, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (Date.now() - started > REGISTRY_DEFAULTS.lockStaleMs) {
        await rm(lockFile, { force: true });
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, REGISTRY_DEFAULTS.lockRetryMs));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockFile, { force: true });
  }
}
