import { randomBytes, scrypt as scryptCb, timingSafeEqual, createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { promisify } from 'node:util';
import { CodedError, isDeviceId, isDomain, isInsideProvince, isProvinceCode, type DeviceProfile, type Domain, type LngLat } from '@citypulse/contracts';

/**
 * The device registry: one module and one storage format (a JSON file in the data folder),
 * read by the broker, ingest and api, written by the provisioning CLI, the simulators and
 * `npm start`. Secrets are stored only as salted scrypt hashes. Writes are atomic (temp file +
 * rename) under a lock file; readers pick changes up without restart.
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

interface RegistryFile {
  version: 1;
  devices: Record<string, DeviceRecord>;
  services: Record<string, ServiceAccount>;
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

export class DeviceRegistry extends EventEmitter<{ change: [RegistryChange] }> {
  readonly file: string;
  #data: RegistryFile = emptyFile();
  #watcher: FSWatcher | undefined;
  #reloadTimer: NodeJS.Timeout | undefined;
  /** Cache of recent successful logins: sha256(id, secret, hash) → true, so a reconnect storm does not redo scrypt. */
  readonly #verified = new Map<string, string>();
  #loadedMtimeMs = 0;
  #reloading: Promise<void> | undefined;

  private constructor(file: string) {
    super();
    this.file = file;
  }

  /** Opens (and creates if missing) the registry in `dataDir`. With `watch`, changes on disk are applied live. */
  static async open(dataDir: string, options: { watch?: boolean } = {}): Promise<DeviceRegistry> {
    const registry = new DeviceRegistry(join(dataDir, REGISTRY_DEFAULTS.fileName));
    await mkdir(dataDir, { recursive: true });
    await registry.reload();
    if (options.watch) registry.#startWatching();
    return registry;
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
    // A device provisioned a moment ago may log in before the file watch fires: look again once.
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
    // Hashing is slow, so it happens before the lock: decide now which secrets to keep, re-check under the lock.
    if (existingMode === 'update') await this.refreshIfChanged();
    const keeps = (input: NewDevice) => existingMode === 'update' && input.secret === undefined && this.device(input.id)?.secretHash !== undefined;
    const prepared = await Promise.all(
      inputs.map(async (input) => {
        if (input.gateway !== undefined || keeps(input)) return { input, secret: undefined, secretHash: undefined };
        const secret = input.secret ?? generateSecret();
        return { input, secret, secretHash: await hashSecret(secret) };
      }),
    );
    await this.#mutate((data) => {
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
    await this.#mutate((data) => {
      const device = data.devices[id];
      if (!device) throw new CodedError('E_NOT_FOUND', `no device "${id}"`);
      data.devices[id] = { ...device, enabled, updatedAt: new Date().toISOString() };
    });
  }

  async rotateSecret(id: string): Promise<string> {
    const secret = generateSecret();
    const secretHash = await hashSecret(secret);
    await this.#mutate((data) => {
      const device = data.devices[id];
      if (!device) throw new CodedError('E_NOT_FOUND', `no device "${id}"`);
      data.devices[id] = { ...device, secretHash, updatedAt: new Date().toISOString() };
    });
    return secret;
  }

  async removeDevice(id: string): Promise<void> {
    await this.#mutate((data) => {
      if (!data.devices[id]) throw new CodedError('E_NOT_FOUND', `no device "${id}"`);
      delete data.devices[id];
    });
  }

  /** Creates or replaces a service account (ingest, api, tools, gateway) and returns its secret. */
  async upsertService(id: string, role: ServiceRole, secret: string = generateSecret()): Promise<string> {
    if (!isDeviceId(id)) throw new CodedError('E_BAD_REQUEST', `service id "${id}" must be 3–64 of a-z, 0-9, '-', '_'`);
    if (!SERVICE_ROLES.includes(role)) throw new CodedError('E_BAD_REQUEST', `service role "${String(role)}" must be one of ${SERVICE_ROLES.join(', ')}`);
    const secretHash = await hashSecret(secret);
    await this.#mutate((data) => {
      if (data.devices[id]) throw new CodedError('E_BAD_REQUEST', `"${id}" is already a device id`);
      data.services[id] = { id, role, secretHash, enabled: true, createdAt: data.services[id]?.createdAt ?? new Date().toISOString() };
    });
    return secret;
  }

  /**
   * Re-reads the file now if it changed since the last read (or waits for a reload in progress):
   * for a lookup that missed a device provisioned a moment ago, before the file watch fired.
   */
  async refreshIfChanged(): Promise<void> {
    // A reload under way may have read the file just before the write being looked for: wait for
    // it, then look at the file again.
    if (this.#reloading) await this.#reloading.catch(() => undefined);
    if (await this.#changedOnDisk()) await this.reload();
  }

  /** True when the file was written since it was last read (one stat, no read). */
  async #changedOnDisk(): Promise<boolean> {
    try {
      return (await stat(this.file)).mtimeMs !== this.#loadedMtimeMs;
    } catch {
      return false;
    }
  }

  /** Re-reads the file; emits `change` with the accounts that were revoked. */
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
    this.#loadedMtimeMs = await stat(this.file).then(
      (s) => s.mtimeMs,
      () => 0,
    );
    const next = await readRegistryFile(this.file);
    const revoked: string[] = [];
    const accounts = (d: RegistryFile) => new Map<string, { enabled: boolean; secretHash?: string | undefined }>([...Object.entries(d.devices), ...Object.entries(d.services)]);
    const after = accounts(next);
    for (const [id, before] of accounts(this.#data)) {
      const now = after.get(id);
      if (!now || (before.enabled && !now.enabled) || now.secretHash !== before.secretHash) revoked.push(id);
    }
    for (const id of revoked) this.#verified.delete(id);
    this.#data = next;
    if (revoked.length > 0) this.emit('change', { revoked });
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    clearTimeout(this.#reloadTimer);
  }

  #startWatching(): void {
    const name = basename(this.file);
    // Watch the folder: an atomic rename replaces the file's inode, which a file watch would lose.
    this.#watcher = watch(dirname(this.file), (_event, changed) => {
      if (changed !== name) return;
      clearTimeout(this.#reloadTimer);
      this.#reloadTimer = setTimeout(() => {
        this.reload().catch(() => undefined);
      }, 50);
    });
    this.#watcher.unref();
  }

  async #mutate(change: (data: RegistryFile) => void): Promise<void> {
    await withLock(`${this.file}.lock`, async () => {
      const data = await readRegistryFile(this.file);
      change(data);
      const tmp = `${this.file}.${process.pid}.${Date.now()}.tmp`;
      await writeFile(tmp, `${JSON.stringify(data, null, 1)}\n`, { mode: 0o600 });
      await rename(tmp, this.file);
    });
    await this.reload();
  }
}

function emptyFile(): RegistryFile {
  return { version: 1, devices: {}, services: {} };
}

async function readRegistryFile(file: string): Promise<RegistryFile> {
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
