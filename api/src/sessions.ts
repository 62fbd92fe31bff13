import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Signed session tokens: base64url(payload).base64url(HMAC-SHA256). The key is generated at first
 * start and kept in the data folder, so sessions survive an api restart and any api node with the
 * same key accepts them. A token names its operator, not their rights: role and provinces are
 * looked up on every request, so a change takes effect at once. Logout revokes the token's `sid`;
 * a new password (or a disabled account) bumps the operator's `version`, which ends all of theirs.
 */
export interface Session {
  /** Random id of this login, revoked by logout. */
  readonly sid: string;
  readonly username: string;
  /** The operator's tokenVersion when the session was issued. */
  readonly version: number;
  /** Expiry, epoch ms. */
  readonly exp: number;
}

export const SESSION_COOKIE = 'cp_session';

export class SessionSigner {
  readonly #key: Buffer;
  readonly ttlMs: number;

  constructor(key: Buffer, ttlMs: number) {
    this.#key = key;
    this.ttlMs = ttlMs;
  }

  static async fromDataDir(dataDir: string, ttlMs: number): Promise<SessionSigner> {
    const file = join(dataDir, 'session.key');
    let key: Buffer;
    try {
      key = Buffer.from((await readFile(file, 'utf8')).trim(), 'base64url');
    } catch {
      key = randomBytes(32);
      await writeFile(file, key.toString('base64url'), { mode: 0o600, flag: 'wx' }).catch(async () => {
        key = Buffer.from((await readFile(file, 'utf8')).trim(), 'base64url');
      });
    }
    return new SessionSigner(key, ttlMs);
  }

  issue(username: string, version: number, now = Date.now()): { token: string; session: Session } {
    const session: Session = { sid: randomBytes(12).toString('base64url'), username, version, exp: now + this.ttlMs };
    const payload = Buffer.from(JSON.stringify(session)).toString('base64url');
    return { token: `${payload}.${this.#sign(payload)}`, session };
  }

  verify(token: string | undefined, now = Date.now()): Session | undefined {
    if (!token || token.length > 1024) return undefined;
    const [payload, signature] = token.split('.');
    if (!payload || !signature) return undefined;
    const expected = Buffer.from(this.#sign(payload));
    const actual = Buffer.from(signature);
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return undefined;
    try {
      const session = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Partial<Session>;
      if (typeof session.sid !== 'string' || typeof session.username !== 'string' || typeof session.version !== 'number' || typeof session.exp !== 'number') return undefined;
      return session.exp > now ? (session as Session) : undefined;
    } catch {
      return undefined;
    }
  }

  #sign(payload: string): string {
    return createHmac('sha256', this.#key).update(payload).digest('base64url');
  }
}

/** Reads one cookie from a Cookie header without a parser dependency. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}
