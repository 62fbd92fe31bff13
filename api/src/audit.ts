import { createReadStream } from 'node:fs';
import { appendFile, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';

/**
 * The audit log of operator actions (logins, logouts, acknowledgements, replays, operator, device
 * and rule changes): one JSON line per action in `DATA_DIR/audit/audit-YYYY-MM.ndjson`, appended
 * in order, never rewritten. Admins read it through GET /api/v1/audit.
 */
export interface AuditEntry {
  /** Epoch ms. */
  readonly ts: number;
  /** Who acted ("-" for a failed login by an unknown name). */
  readonly operator: string;
  /** What, e.g. "login", "login.failed", "alert.ack", "operator.create". */
  readonly action: string;
  /** On what: an operator name, a device id, an alert id. */
  readonly target?: string;
  readonly detail?: Readonly<Record<string, unknown>>;
  readonly ip?: string;
}

export interface AuditQuery {
  readonly fromMs: number;
  readonly toMs: number;
  readonly operator?: string | undefined;
  readonly action?: string | undefined;
  readonly limit: number;
}

const FILE = /^audit-(\d{4})-(\d{2})\.ndjson$/;

export class AuditLog {
  readonly dir: string;
  readonly #logger: Logger;
  #chain: Promise<void> = Promise.resolve();

  private constructor(dir: string, logger: Logger) {
    this.dir = dir;
    this.#logger = logger;
  }

  static async open(dataDir: string, logger: Logger): Promise<AuditLog> {
    const dir = join(dataDir, 'audit');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new AuditLog(dir, logger);
  }

  /** Appends an entry (in call order); resolves once it is in the file. A failed write is logged, never thrown at the caller. */
  record(entry: Omit<AuditEntry, 'ts'> & { ts?: number }): Promise<void> {
    const full: AuditEntry = { ts: entry.ts ?? Date.now(), ...entry };
    const month = new Date(full.ts).toISOString().slice(0, 7);
    this.#chain = this.#chain.then(() =>
      appendFile(join(this.dir, `audit-${month}.ndjson`), `${JSON.stringify(full)}\n`, { mode: 0o600 }).catch((err: unknown) => {
        this.#logger.error({ err, entry: full }, 'audit log write failed');
      }),
    );
    return this.#chain;
  }

  /** Entries in [fromMs, toMs), newest first, at most `limit`. */
  async query(query: AuditQuery): Promise<AuditEntry[]> {
    await this.#chain;
    const months = (await readdir(this.dir))
      .map((name) => ({ name, m: FILE.exec(name) }))
      .filter((f): f is { name: string; m: RegExpExecArray } => f.m !== null)
      .filter(({ m }) => {
        const start = Date.UTC(Number(m[1]), Number(m[2]) - 1, 1);
        const end = Date.UTC(Number(m[1]), Number(m[2]), 1);
        return start < query.toMs && end > query.fromMs;
      })
      .map(({ name }) => name)
      .sort()
      .reverse();
    const found: AuditEntry[] = [];
    for (const name of months) {
      const inMonth: AuditEntry[] = [];
      const lines = createInterface({ input: createReadStream(join(this.dir, name), 'utf8'), crlfDelay: Infinity });
      for await (const line of lines) {
        let entry: AuditEntry;
        try {
          entry = JSON.parse(line) as AuditEntry;
        } catch {
          continue; // a line cut short by a crash
        }
        if (entry.ts < query.fromMs || entry.ts >= query.toMs) continue;
        if (query.operator !== undefined && entry.operator !== query.operator) continue;
        if (query.action !== undefined && entry.action !== query.action && !entry.action.startsWith(`${query.action}.`)) continue;
        inMonth.push(entry);
      }
      found.push(...inMonth.reverse());
      if (found.length >= query.limit) break;
    }
    return found.slice(0, query.limit);
  }

  /** Waits for the entries recorded so far to be written. */
  flush(): Promise<void> {
    return this.#chain;
  }
}
