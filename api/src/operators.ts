import { randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CodedError, isProvinceCode, type OperatorView } from '@citypulse/contracts';
import { hashSecret, verifySecret } from '@citypulse/broker/registry';
import { isOperatorRole, OPERATOR_ROLES, type OperatorRole, type Principal } from './rights.js';

export { OPERATOR_ROLES, type OperatorRole } from './rights.js';

/**
 * Operator accounts in the data folder (`operators.json`, mode 600); passwords kept only as
 * scrypt hashes. Writes are atomic (temp file + rename) and the file is watched, so an account
 * changed by the `operators` command or another api process on this host takes effect here
 * without a restart. The same file keeps the sessions revoked by logout until they expire.
 */
export interface Operator {
  readonly username: string;
  readonly role: OperatorRole;
  /** Province codes this operator may see; null: all. */
  readonly provinces: readonly string[] | null;
  readonly passwordHash: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** Bumped when the password changes or the account is disabled: older sessions stop working. */
  readonly tokenVersion: number;
  readonly disabled: boolean;
}

export interface OperatorChanges {
  readonly role?: OperatorRole;
  readonly provinces?: readonly string[] | null;
  readonly password?: string;
  readonly disabled?: boolean;
}

export const OPERATOR_RULES = {
  usernamePattern: /^[a-z0-9][a-z0-9._-]{1,63}$/,
  minPasswordLength: 12,
  maxPasswordLength: 256,
} as const;

interface FileFormat {
  version: 2;
  operators: Operator[];
  /** Session ids logged out before they expire: sid → expiry (epoch ms). */
  revoked: Record<string, number>;
}

export class OperatorStore {
  readonly file: string;
  #operators = new Map<string, Operator>();
  #revoked = new Map<string, number>();
  #watcher: FSWatcher | undefined;
  /** Serialises read-modify-write cycles within this process. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(file: string) {
    this.file = file;
  }

  static async open(dataDir: string, options: { watch?: boolean } = {}): Promise<OperatorStore> {
    await mkdir(dataDir, { recursive: true });
    const store = new OperatorStore(join(dataDir, 'operators.json'));
    await store.#load();
    if (options.watch) store.#watch();
    return store;
  }

  get count(): number {
    return this.#operators.size;
  }

  list(): OperatorView[] {
    return [...this.#operators.values()].sort((a, b) => a.username.localeCompare(b.username)).map(toView);
  }

  get(username: string): Operator | undefined {
    return this.#operators.get(username);
  }

  /** The account as the rights checks see it, if it exists and is enabled. */
  principal(username: string): (Principal & { readonly tokenVersion: number }) | undefined {
    const operator = this.#operators.get(username);
    if (!operator || operator.disabled) return undefined;
    return { username: operator.username, role: operator.role, provinces: operator.provinces, tokenVersion: operator.tokenVersion };
  }

  async verify(username: string, password: string): Promise<Operator | undefined> {
    const operator = this.#operators.get(username);
    if (!operator || operator.disabled) {
      // Spend the same time as a real check so a missing user is not told apart by timing.
      await verifySecret(password, DUMMY_HASH);
      return undefined;
    }
    return (await verifySecret(password, operator.passwordHash)) ? operator : undefined;
  }

  /** Creates an account; E_CONFLICT if the name is taken. */
  async create(username: string, role: OperatorRole, password: string, provinces: readonly string[] | null = null): Promise<OperatorView> {
    checkUsername(username);
    checkPassword(password);
    checkRole(role);
    const scope = checkProvinces(provinces);
    const passwordHash = await hashSecret(password, 'password');
    return this.#change((operators) => {
      if (operators.has(username)) throw new CodedError('E_CONFLICT', `operator "${username}" already exists`);
      const now = new Date().toISOString();
      const operator: Operator = { username, role, provinces: scope, passwordHash, createdAt: now, updatedAt: now, tokenVersion: 0, disabled: false };
      operators.set(username, operator);
      return toView(operator);
    });
  }

  /** Changes an account; a new password or disabling it ends its sessions. The last enabled admin stays one. */
  async update(username: string, changes: OperatorChanges): Promise<OperatorView> {
    if (changes.password !== undefined) checkPassword(changes.password);
    if (changes.role !== undefined) checkRole(changes.role);
    const scope = changes.provinces === undefined ? undefined : checkProvinces(changes.provinces);
    const passwordHash = changes.password === undefined ? undefined : await hashSecret(changes.password, 'password');
    return this.#change((operators) => {
      const before = operators.get(username);
      if (!before) throw new CodedError('E_NOT_FOUND', `no operator "${username}"`);
      const after: Operator = {
        ...before,
        ...(changes.role === undefined ? {} : { role: changes.role }),
        ...(scope === undefined ? {} : { provinces: scope }),
        ...(passwordHash === undefined ? {} : { passwordHash }),
        ...(changes.disabled === undefined ? {} : { disabled: changes.disabled }),
        updatedAt: new Date().toISOString(),
        tokenVersion: before.tokenVersion + (passwordHash !== undefined || (changes.disabled === true && !before.disabled) ? 1 : 0),
      };
      keepAnAdmin(operators, () => operators.set(username, after), `operator "${username}" is the last enabled admin with all provinces: make another admin first`);
      return toView(after);
    });
  }

  /** Creates or replaces an account (the `operators` command and tests). */
  async upsert(username: string, role: OperatorRole, password: string, provinces: readonly string[] | null = null): Promise<OperatorView> {
    if (this.#operators.has(username)) return this.update(username, { role, password, provinces });
    return this.create(username, role, password, provinces);
  }

  async remove(username: string): Promise<void> {
    await this.#change((operators) => {
      if (!operators.has(username)) throw new CodedError('E_NOT_FOUND', `no operator "${username}"`);
      keepAnAdmin(operators, () => operators.delete(username), `operator "${username}" is the last enabled admin with all provinces: make another admin first`);
    });
  }

  /** Ends one session before its expiry (logout). */
  async revoke(sid: string, expiresAt: number): Promise<void> {
    await this.#change(() => {
      this.#revoked.set(sid, expiresAt);
    });
  }

  isRevoked(sid: string): boolean {
    return this.#revoked.has(sid);
  }

  /** Creates the first admin with a generated password when there is no operator yet; returns the password once. */
  async ensureFirstAdmin(username = 'admin'): Promise<string | undefined> {
    if (this.#operators.size > 0) return undefined;
    const password = randomBytes(12).toString('base64url');
    await this.create(username, 'admin', password);
    return password;
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  /** Reads the file again, applies `mutate` and writes it back atomically, one change at a time. */
  #change<T>(mutate: (operators: Map<string, Operator>) => T): Promise<T> {
    const run = this.#queue.then(async () => {
      await this.#load();
      const operators = new Map(this.#operators);
      const result = mutate(operators);
      const now = Date.now();
      for (const [sid, exp] of this.#revoked) if (exp <= now) this.#revoked.delete(sid);
      const body: FileFormat = { version: 2, operators: [...operators.values()], revoked: Object.fromEntries(this.#revoked) };
      const tmp = `${this.file}.${process.pid}.tmp`;
      await writeFile(tmp, `${JSON.stringify(body, null, 1)}\n`, { mode: 0o600 });
      await rename(tmp, this.file);
      this.#operators = operators;
      return result;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const parsed = JSON.parse(text) as { version?: number; operators?: Array<Partial<Operator>>; revoked?: Record<string, number> };
    if ((parsed.version !== 1 && parsed.version !== 2) || !Array.isArray(parsed.operators)) {
      throw new CodedError('E_CONFIG', `${this.file} has an unknown format (expected version 1 or 2)`);
    }
    const operators = new Map<string, Operator>();
    for (const o of parsed.operators) {
      if (typeof o.username !== 'string' || !isOperatorRole(o.role) || typeof o.passwordHash !== 'string') {
        throw new CodedError('E_CONFIG', `${this.file}: an operator entry lacks username, role or passwordHash`);
      }
      const createdAt = o.createdAt ?? new Date(0).toISOString();
      operators.set(o.username, {
        username: o.username,
        role: o.role,
        provinces: Array.isArray(o.provinces) ? (o.provinces as unknown[]).filter((p): p is string => typeof p === 'string' && isProvinceCode(p)) : null,
        passwordHash: o.passwordHash,
        createdAt,
        updatedAt: o.updatedAt ?? createdAt,
        tokenVersion: typeof o.tokenVersion === 'number' ? o.tokenVersion : 0,
        disabled: o.disabled === true,
      });
    }
    this.#operators = operators;
    this.#revoked = new Map(Object.entries(parsed.revoked ?? {}).filter((e): e is [string, number] => typeof e[1] === 'number'));
  }

  #watch(): void {
    let timer: NodeJS.Timeout | undefined;
    const name = basename(this.file);
    this.#watcher = watch(dirname(this.file), (_event, changed) => {
      if (changed !== name) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        this.#queue = this.#queue.then(() => this.#load()).catch(() => undefined);
      }, 50);
    });
    this.#watcher.unref();
  }
}

function toView(o: Operator): OperatorView {
  return { username: o.username, role: o.role, provinces: o.provinces === null ? null : [...o.provinces], disabled: o.disabled, createdAt: o.createdAt, updatedAt: o.updatedAt };
}

function checkUsername(username: string): void {
  if (!OPERATOR_RULES.usernamePattern.test(username)) {
    throw new CodedError('E_BAD_REQUEST', `username "${username.slice(0, 64)}" must be 2–64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit`);
  }
}

function checkPassword(password: string): void {
  if (password.length < OPERATOR_RULES.minPasswordLength || password.length > OPERATOR_RULES.maxPasswordLength) {
    throw new CodedError('E_BAD_REQUEST', `password must have ${OPERATOR_RULES.minPasswordLength}–${OPERATOR_RULES.maxPasswordLength} characters`);
  }
}

function checkRole(role: string): void {
  if (!isOperatorRole(role)) throw new CodedError('E_BAD_REQUEST', `role "${String(role).slice(0, 32)}" must be one of ${OPERATOR_ROLES.join(', ')}`);
}

function checkProvinces(provinces: readonly string[] | null): readonly string[] | null {
  if (provinces === null) return null;
  if (provinces.length === 0) throw new CodedError('E_BAD_REQUEST', 'provinces must list at least one province code, or be null for all');
  for (const p of provinces) if (!isProvinceCode(p)) throw new CodedError('E_PROVINCE', `province "${String(p).slice(0, 16)}" is not one of the 34 codes`);
  return [...new Set(provinces)].sort();
}

/** Somebody must still be able to manage operators: a change may not remove the last enabled admin without a province limit. */
function keepAnAdmin(operators: Map<string, Operator>, change: () => void, message: string): void {
  const hasAdmin = () => [...operators.values()].some((o) => o.role === 'admin' && !o.disabled && o.provinces === null);
  const before = hasAdmin();
  change();
  if (before && !hasAdmin()) throw new CodedError('E_CONFLICT', message);
}

const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
