import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CodedError } from '@citypulse/contracts';
import { hashSecret, verifySecret } from '@citypulse/broker/registry';

/** Operator accounts in the data folder; passwords kept only as scrypt hashes. */
export const OPERATOR_ROLES = ['viewer', 'operator', 'admin'] as const;
export type OperatorRole = (typeof OPERATOR_ROLES)[number];

export interface Operator {
  readonly username: string;
  readonly role: OperatorRole;
  readonly passwordHash: string;
  readonly createdAt: string;
}

const USERNAME = /^[a-z0-9][a-z0-9._-]{1,63}$/;

export class OperatorStore {
  readonly file: string;
  #operators = new Map<string, Operator>();

  private constructor(file: string) {
    this.file = file;
  }

  static async open(dataDir: string): Promise<OperatorStore> {
    await mkdir(dataDir, { recursive: true });
    const store = new OperatorStore(join(dataDir, 'operators.json'));
    await store.#load();
    return store;
  }

  get count(): number {
    return this.#operators.size;
  }

  async verify(username: string, password: string): Promise<Operator | undefined> {
    const operator = this.#operators.get(username);
    if (!operator) {
      // Spend the same time as a real check so a missing user is not told apart by timing.
      await verifySecret(password, DUMMY_HASH);
      return undefined;
    }
    return (await verifySecret(password, operator.passwordHash)) ? operator : undefined;
  }

  async upsert(username: string, role: OperatorRole, password: string): Promise<void> {
    if (!USERNAME.test(username)) throw new CodedError('E_BAD_REQUEST', `username "${username}" must be 2–64 of a-z, 0-9, '.', '_', '-'`);
    if (password.length < 12) throw new CodedError('E_BAD_REQUEST', 'password must have at least 12 characters');
    await this.#load();
    this.#operators.set(username, { username, role, passwordHash: await hashSecret(password, 'password'), createdAt: this.#operators.get(username)?.createdAt ?? new Date().toISOString() });
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ version: 1, operators: [...this.#operators.values()] }, null, 1)}\n`, { mode: 0o600 });
    await rename(tmp, this.file);
  }

  /** Creates the first admin with a generated password when there is no operator yet; returns the password once. */
  async ensureFirstAdmin(username = 'admin'): Promise<string | undefined> {
    if (this.#operators.size > 0) return undefined;
    const password = randomBytes(12).toString('base64url');
    await this.upsert(username, 'admin', password);
    return password;
  }

  async #load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const parsed = JSON.parse(text) as { version?: number; operators?: Operator[] };
    if (parsed.version !== 1 || !Array.isArray(parsed.operators)) throw new CodedError('E_CONFIG', `${this.file} has an unknown format`);
    this.#operators = new Map(parsed.operators.map((o) => [o.username, o]));
  }
}

const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
