/**
 * Batches line protocol for InfluxDB and writes it without ever dropping a line.
 *
 * - A batch is written when it holds `batchLines` lines or `flushIntervalMs` after its first
 *   line, whichever comes first; up to `concurrency` batches are in flight.
 * - A failed write is retried with capped exponential backoff, for as long as it takes: the
 *   batch keeps its place, and new lines wait behind it. Nothing is dropped to make room (the
 *   InfluxDB client's own retry buffer drops its oldest lines when full, so it is not used).
 *   Instead `bufferedLines` grows, and the caller stops taking input past its bound.
 * - InfluxDB refuses a batch as a whole when one line is bad (400). Such a batch is split in
 *   halves until the bad lines are alone; those are handed to `onRefused` (the dead-letter
 *   record), and every other line is written.
 * - `onWritten` receives the items (the messages' PUBACK tokens) of a batch once every one of its
 *   lines is stored or refused.
 */

export interface WriteFailure {
  readonly status?: number;
  readonly message: string;
}

export interface BatchWriterOptions<T> {
  /** One write of these lines; rejects on failure. */
  write(lines: readonly string[]): Promise<void>;
  readonly batchLines: number;
  readonly flushIntervalMs: number;
  readonly concurrency: number;
  readonly minRetryDelayMs?: number;
  readonly maxRetryDelayMs?: number;
  onWritten(items: readonly T[], lines: number, startedAt: number): void;
  /** A line InfluxDB refused on its own (never retried). */
  onRefused(line: string, reason: string): void;
  /** A write failed and will be retried after `delayMs`. */
  onRetry?(failure: WriteFailure, attempt: number, lines: number, delayMs: number): void;
  now?: () => number;
}

interface Batch<T> {
  readonly id: number;
  lines: string[];
  items: T[];
  /** Parts not yet stored; the items are released when it reaches 0. */
  pending: number;
  readonly createdAt: number;
}

interface Part<T> {
  readonly batch: Batch<T>;
  readonly lines: string[];
  attempt: number;
}

export class BatchWriter<T> {
  readonly #options: BatchWriterOptions<T>;
  readonly #now: () => number;
  #open: Batch<T> | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #queue: Part<T>[] = [];
  #inFlight = 0;
  #buffered = 0;
  #closed = false;
  #idle: (() => void)[] = [];
  #nextBatchId = 0;
  /** Batches created and not yet stored (open, queued, in flight), by id. */
  readonly #unstored = new Set<number>();
  /** whenStored() waiters: resolved once no batch up to `upTo` is unstored. */
  #storedWaiters: { upTo: number; resolve: () => void }[] = [];
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  /** Consecutive failed writes (0 while InfluxDB answers). */
  #failing = 0;
  #lastFailure: WriteFailure | undefined;

  constructor(options: BatchWriterOptions<T>) {
    this.#options = options;
    this.#now = options.now ?? (() => Date.now());
  }

  /** Adds one message's lines (all in the same batch) and the item released once they are stored. */
  add(lines: readonly string[], item: T): void {
    if (this.#closed) throw new Error('writer closed');
    let batch = this.#open;
    if (!batch) {
      batch = { id: this.#nextBatchId++, lines: [], items: [], pending: 1, createdAt: this.#now() };
      this.#unstored.add(batch.id);
      this.#open = batch;
      this.#timer = setTimeout(() => this.#seal(), this.#options.flushIntervalMs);
    }
    for (const line of lines) batch.lines.push(line);
    batch.items.push(item);
    this.#buffered += lines.length;
    if (batch.lines.length >= this.#options.batchLines) this.#seal();
  }

  /** Lines added and not yet stored or refused. */
  get bufferedLines(): number {
    return this.#buffered;
  }

  /** Writes that failed in a row; 0 while InfluxDB answers. */
  get failingWrites(): number {
    return this.#failing;
  }

  get lastFailure(): WriteFailure | undefined {
    return this.#lastFailure;
  }

  /** Marks what has been added so far: whenStored(mark) later waits for exactly that much. */
  get addedMark(): number {
    return this.#nextBatchId - 1;
  }

  /**
   * Resolves once every line added before this call (or before `upTo` = addedMark was read) is stored (or refused), whatever comes after:
   * for work that reads back what was written (roll-ups recomputed from raw points). Batches are
   * written concurrently, so the batch holding the last line added is not enough to wait for.
   */
  whenStored(upTo = this.addedMark): Promise<void> {
    if (!this.#pendingUpTo(upTo)) return Promise.resolve();
    return new Promise((resolve) => this.#storedWaiters.push({ upTo, resolve }));
  }

  #pendingUpTo(upTo: number): boolean {
    for (const id of this.#unstored) if (id <= upTo) return true;
    return false;
  }

  /** Seals the open batch and resolves once everything added so far is stored. */
  async flush(): Promise<void> {
    this.#seal();
    if (this.#buffered === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  /** Flushes, waiting at most `timeoutMs`; resolves with the lines still unwritten (0: all stored). */
  async close(timeoutMs: number): Promise<number> {
    const flushed = this.flush();
    this.#closed = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([flushed, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    for (const retry of this.#retryTimers) clearTimeout(retry);
    this.#retryTimers.clear();
    return this.#buffered;
  }

  #seal(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#open;
    if (!batch) return;
    this.#open = undefined;
    this.#queue.push({ batch, lines: batch.lines, attempt: 0 });
    this.#pump();
  }

  #pump(): void {
    while (this.#inFlight < this.#options.concurrency && this.#queue.length > 0) {
      const part = this.#queue.shift() as Part<T>;
      this.#inFlight++;
      void this.#write(part);
    }
  }

  async #write(part: Part<T>): Promise<void> {
    const startedAt = this.#now();
    try {
      await this.#options.write(part.lines);
    } catch (err) {
      const failure = describe(err);
      this.#lastFailure = failure;
      if (failure.status === 400 || failure.status === 413) {
        // Refused as a whole: split until the bad lines are alone (a 413 until it fits).
        this.#failing = 0;
        this.#inFlight--;
        this.#split(part, failure);
        this.#pump();
        return;
      }
      this.#failing++;
      part.attempt++;
      const min = this.#options.minRetryDelayMs ?? 250;
      const max = this.#options.maxRetryDelayMs ?? 10_000;
      const delayMs = Math.min(max, min * 2 ** Math.min(part.attempt - 1, 16)) * (0.8 + Math.random() * 0.4);
      this.#options.onRetry?.(failure, part.attempt, part.lines.length, Math.round(delayMs));
      if (this.#closed) {
        this.#inFlight--;
        return; // shutting down: left for the broker to redeliver
      }
      // The part keeps its slot while it waits, so at most `concurrency` writes are ever pending.
      const timer = setTimeout(() => {
        this.#retryTimers.delete(timer);
        void this.#write(part);
      }, delayMs);
      this.#retryTimers.add(timer);
      return;
    }
    this.#failing = 0;
    this.#inFlight--;
    this.#stored(part.batch, part.lines.length, startedAt);
    this.#pump();
  }

  #split(part: Part<T>, failure: WriteFailure): void {
    if (part.lines.length === 1) {
      this.#options.onRefused(part.lines[0] as string, failure.message);
      this.#stored(part.batch, 1, this.#now());
      return;
    }
    const half = Math.ceil(part.lines.length / 2);
    part.batch.pending += 1; // one part becomes two
    this.#queue.unshift({ batch: part.batch, lines: part.lines.slice(0, half), attempt: 0 }, { batch: part.batch, lines: part.lines.slice(half), attempt: 0 });
  }

  #stored(batch: Batch<T>, lines: number, startedAt: number): void {
    this.#buffered -= lines;
    batch.pending--;
    if (batch.pending === 0) {
      this.#unstored.delete(batch.id);
      this.#options.onWritten(batch.items, batch.lines.length, startedAt);
      if (this.#storedWaiters.length > 0) {
        const waiting = this.#storedWaiters;
        this.#storedWaiters = [];
        for (const waiter of waiting) {
          if (this.#pendingUpTo(waiter.upTo)) this.#storedWaiters.push(waiter);
          else waiter.resolve();
        }
      }
    }
    if (this.#buffered === 0 && !this.#open) for (const resolve of this.#idle.splice(0)) resolve();
  }
}

function describe(err: unknown): WriteFailure {
  const status = typeof err === 'object' && err !== null && typeof (err as { statusCode?: unknown }).statusCode === 'number' ? (err as { statusCode: number }).statusCode : undefined;
  const body = typeof err === 'object' && err !== null && typeof (err as { body?: unknown }).body === 'string' ? (err as { body: string }).body : '';
  const message = err instanceof Error ? err.message : String(err);
  return { ...(status !== undefined ? { status } : {}), message: (body && !message.includes(body) ? `${message}: ${body}` : message).slice(0, 500) };
}
