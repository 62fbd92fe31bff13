import { describe, expect, it } from 'vitest';
import { BatchWriter, type BatchWriterOptions } from '../src/writer.js';

/** BatchWriter with a scripted write function (the InfluxDB side is tested in delivery.test.ts). */
function writerWith(write: (lines: readonly string[]) => Promise<void>, overrides: Partial<BatchWriterOptions<number>> = {}) {
  const written: number[] = [];
  const refused: string[] = [];
  const writer = new BatchWriter<number>({
    write,
    batchLines: 4,
    flushIntervalMs: 20,
    concurrency: 2,
    minRetryDelayMs: 5,
    maxRetryDelayMs: 20,
    onWritten: (items) => written.push(...items),
    onRefused: (line) => refused.push(line),
    ...overrides,
  });
  return { writer, written, refused };
}

class HttpLikeError extends Error {
  constructor(readonly statusCode: number) {
    super(`status ${statusCode}`);
  }
}

describe('BatchWriter', () => {
  it('whenStored waits for every batch added before it, also when a later one is written first', async () => {
    const pending: { lines: readonly string[]; done: () => void }[] = [];
    const { writer } = writerWith((lines) => new Promise<void>((resolve) => pending.push({ lines, done: resolve })));
    writer.add(['a', 'b', 'c', 'd'], 1); // full: written at once
    writer.add(['e', 'f', 'g', 'h'], 2); // second write in flight
    let stored = false;
    const waiting = writer.whenStored().then(() => (stored = true));
    writer.add(['i'], 3); // after the call: not waited for
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(pending.map((p) => p.lines[0])).toEqual(['a', 'e']);
    pending[1]?.done(); // the later batch first
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(stored).toBe(false);
    pending[0]?.done();
    await waiting;
    expect(stored).toBe(true);
    expect(writer.bufferedLines).toBe(1); // 'i' is still open or in flight
    await expect(new BatchWriter<number>({ write: async () => undefined, batchLines: 1, flushIntervalMs: 10, concurrency: 1, onWritten: () => undefined, onRefused: () => undefined }).whenStored()).resolves.toBeUndefined();
    for (const p of pending.slice(2)) p.done();
    const rest = writer.flush();
    await new Promise((resolve) => setTimeout(resolve, 30));
    for (const p of pending.slice(2)) p.done();
    await rest;
  });

  it('writes a batch when it is full or after the flush interval, and releases its items once stored', async () => {
    const batches: string[][] = [];
    const { writer, written } = writerWith(async (lines) => {
      batches.push([...lines]);
    });
    writer.add(['a', 'b'], 1);
    writer.add(['c', 'd'], 2); // 4 lines: full
    writer.add(['e'], 3); // waits for the interval
    await writer.flush();
    expect(batches).toEqual([['a', 'b', 'c', 'd'], ['e']]);
    expect(written).toEqual([1, 2, 3]);
    expect(writer.bufferedLines).toBe(0);
  });

  it("keeps a message's lines in one batch even past the batch size", async () => {
    const batches: string[][] = [];
    const { writer } = writerWith(async (lines) => {
      batches.push([...lines]);
    });
    writer.add(['a', 'b', 'c', 'd', 'e', 'f'], 1);
    await writer.flush();
    expect(batches).toEqual([['a', 'b', 'c', 'd', 'e', 'f']]);
  });

  it('retries a failed write until it succeeds, dropping nothing and holding the items', async () => {
    let failures = 3;
    const retries: number[] = [];
    const { writer, written } = writerWith(
      async () => {
        if (failures-- > 0) throw new Error('connect ECONNREFUSED');
      },
      { onRetry: (_f, attempt) => retries.push(attempt) },
    );
    writer.add(['a'], 1);
    writer.add(['b'], 2);
    expect(writer.bufferedLines).toBe(2);
    await writer.flush();
    expect(retries).toEqual([1, 2, 3]);
    expect(written).toEqual([1, 2]);
    expect(writer.failingWrites).toBe(0);
  });

  it('splits a batch InfluxDB refuses (400) until the bad lines are alone, and stores the rest', async () => {
    const stored: string[] = [];
    const { writer, written, refused } = writerWith(async (lines) => {
      if (lines.some((l) => l.startsWith('bad'))) throw new HttpLikeError(400);
      stored.push(...lines);
    });
    writer.add(['ok1', 'bad1'], 1);
    writer.add(['ok2', 'ok3'], 2);
    writer.add(['bad2'], 3);
    await writer.flush();
    expect(refused.sort()).toEqual(['bad1', 'bad2']);
    expect(stored.sort()).toEqual(['ok1', 'ok2', 'ok3']);
    expect(written.sort()).toEqual([1, 2, 3]);
    expect(writer.bufferedLines).toBe(0);
  });

  it('never has more writes pending than its concurrency, retries included', async () => {
    let pending = 0;
    let most = 0;
    let calls = 0;
    const { writer } = writerWith(async () => {
      pending++;
      most = Math.max(most, pending);
      await new Promise((resolve) => setTimeout(resolve, 5));
      pending--;
      if (++calls % 3 === 0) throw new Error('timeout');
    });
    for (let i = 0; i < 40; i++) writer.add([`l${i}`], i);
    await writer.flush();
    expect(most).toBeLessThanOrEqual(2);
  });

  it('close() gives up after its timeout and reports what is left unwritten', async () => {
    const { writer, written } = writerWith(async () => {
      throw new Error('down');
    });
    writer.add(['a', 'b'], 1);
    expect(await writer.close(100)).toBe(2);
    expect(written).toEqual([]);
    expect(() => writer.add(['c'], 2)).toThrow(/closed/);
  });
});
