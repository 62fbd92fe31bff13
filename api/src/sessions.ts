import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OperatorRole } from './operators.js';

/**
 * Stateless signed session tokens: base64url(payload).base64url(HMAC-SHA256). The key is
 * generated at first start and kept in the data folder, so sessions survive an api restart.
 */
export interface Session {
  readonly username: string;
  readonly role: OperatorRole;
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

  issue(username: string, role: OperatorRole, now = Date.now()): { token: string; session: Session } {
    const session: Session = { username, role, exp: now + this.ttlMs };
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
      const session = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Session;
      return typeof session.exp === 'number' && session.exp > now ? session : undefined;
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
