import { appendFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JOURNAL_DEFAULTS, type Journal, type JournalPacket, type JournalPosition } from '../src/journal.js';
import { journalFolder, readQueue } from './journal-dir.js';

/** Journal.page: a client's queue read a page at a time, each page from where the last one stopped. */
const brokerId = 'broker-a';
const key = (client: string, counter: number) => `outgoing:${client}:${brokerId}:${String(counter).padStart(16, '0')}`;
const prefix = (client: string) => `outgoing:${client}:`;
const packet = (counter: number, payload: Buffer = Buffer.from(`{"seq":${counter}}`)): JournalPacket => ({
  cmd: 'publish', brokerId, brokerCounter: counter, topic: 'cp/v1/01/environment/d1/telemetry', payload, qos: 1, retain: false, dup: false,
});
const counters = (packets: JournalPacket[]) => packets.map((p) => p.brokerCounter);

const { dir, openJournal, segments } = journalFolder('journal-page');
/** Every page from `from` to the end, and where the last one left off. */
const pages = async (journal: Journal, client: string, limit: number, from?: JournalPosition) => {
  const read: JournalPacket[][] = [];
  let at = from;
  for (;;) {
    const { packets, next, end } = await journal.page(prefix(client), at, limit);
    read.push(packets);
    at = next;
    if (end) return { read, next };
  }
};

describe('Journal.page', () => {
  it('pages through two clients’ interleaved messages: each page full but the last, none repeated or missed', async () => {
    const journal = await openJournal();
    for (let i = 1; i <= 300; i++) {
      void journal.enqueue(key('ingest-1', i), packet(i));
      void journal.enqueue(key('ingest-2', i), packet(i));
    }
    const { read } = await pages(journal, 'ingest-1', 7);
    expect(read.slice(0, -1).every((page) => page.length === 7)).toBe(true);
    expect(read.at(-1)?.length).toBe(300 % 7);
    expect(counters(read.flat())).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(read.flat().every((p) => p.payload?.toString() === `{"seq":${p.brokerCounter}}`)).toBe(true);
    expect(counters((await pages(journal, 'ingest-2', 50)).read.flat())).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect((await pages(journal, 'ingest-3', 7)).read.flat()).toEqual([]);
  });

  it('goes on from `next` with what is appended between pages and after the end, and skips what is acknowledged meanwhile', async () => {
    const journal = await openJournal();
    for (let i = 1; i <= 10; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    const first = await journal.page(prefix('ingest-1'), undefined, 4);
    expect([counters(first.packets), first.end]).toEqual([[1, 2, 3, 4], false]);
    journal.delete(key('ingest-1', 2)); // already read: changes nothing ahead
    journal.delete(key('ingest-1', 5));
    journal.delete(key('ingest-1', 7));
    for (let i = 11; i <= 12; i++) void journal.enqueue(key('ingest-1', i), packet(i)); // not waited for: the page flushes
    const second = await journal.page(prefix('ingest-1'), first.next, 4);
    expect([counters(second.packets), second.end]).toEqual([[6, 8, 9, 10], false]);
    const third = await journal.page(prefix('ingest-1'), second.next, 4);
    expect([counters(third.packets), third.end]).toEqual([[11, 12], true]);
    // At the end: the same position again finds nothing until something is appended.
    const again = await journal.page(prefix('ingest-1'), third.next, 4);
    expect([counters(again.packets), again.end, again.next]).toEqual([[], true, third.next]);
    await journal.enqueue(key('ingest-1', 13), packet(13));
    await journal.enqueue(key('ingest-2', 13), packet(13));
    const after = await journal.page(prefix('ingest-1'), again.next, 4);
    expect([counters(after.packets), after.end]).toEqual([[13], true]);
  });

  it('stops with the limit exactly at the end of the journal and says so on the next page', async () => {
    const journal = await openJournal();
    for (let i = 1; i <= 4; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    await journal.enqueue(key('ingest-2', 1), packet(1));
    // ingest-1's last message is followed by ingest-2's: the page cannot know none of ingest-1's follows.
    const first = await journal.page(prefix('ingest-1'), undefined, 4);
    expect([counters(first.packets), first.end]).toEqual([[1, 2, 3, 4], false]);
    expect(await journal.page(prefix('ingest-1'), first.next, 4)).toMatchObject({ packets: [], end: true });
    // ingest-2's is the last record: the page that takes it reaches the end.
    expect(await journal.page(prefix('ingest-2'), undefined, 1)).toMatchObject({ packets: [{ brokerCounter: 1 }], end: true });
  });

  it('returns a replaced message as its replacement, in its place', async () => {
    const journal = await openJournal();
    for (let i = 1; i <= 6; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    const first = await journal.page(prefix('ingest-1'), undefined, 2);
    await journal.replace(key('ingest-1', 4), { cmd: 'pubrel', brokerId, brokerCounter: 4, messageId: 9 });
    const { read } = await pages(journal, 'ingest-1', 2, first.next);
    expect(read.flat().map((p) => [p.brokerCounter, p.cmd])).toEqual([[3, 'publish'], [4, 'pubrel'], [5, 'publish'], [6, 'publish']]);
  });

  it('pages across segments, past one deleted between pages because all of it was acknowledged', async () => {
    const journal = await openJournal(2048); // about 10 messages a segment
    for (let i = 1; i <= 60; i++) {
      await journal.enqueue(key('ingest-1', i), packet(i));
      await journal.enqueue(key('ingest-2', i), packet(i));
    }
    expect((await segments()).length).toBeGreaterThan(5);
    const first = await journal.page(prefix('ingest-1'), undefined, 3);
    expect(counters(first.packets)).toEqual([1, 2, 3]);
    // Both clients acknowledge everything up to 30: the segments holding only those go, the page's among them.
    for (let i = 1; i <= 30; i++) {
      journal.delete(key('ingest-1', i));
      journal.delete(key('ingest-2', i));
    }
    await journal.flush();
    await new Promise((resolve) => setTimeout(resolve, 50)); // deletes of files are not waited for
    expect(await segments()).not.toContain(`${String(first.next.segment).padStart(10, '0')}.seg`);
    const { read } = await pages(journal, 'ingest-1', 3, first.next);
    expect(counters(read.flat())).toEqual(Array.from({ length: 30 }, (_, i) => i + 31));
  });

  it('passes over a segment file gone from under it (deleted while a page was on its way)', async () => {
    const journal = await openJournal(2048);
    for (let i = 1; i <= 40; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    const files = await segments();
    expect(files.length).toBeGreaterThan(2);
    await rm(join(dir(), 'queue', files[1] as string));
    const read = counters((await pages(journal, 'ingest-1', 5)).read.flat());
    expect(read[0]).toBe(1);
    expect(read.at(-1)).toBe(40);
    expect(read.length).toBeLessThan(40); // the gone segment's messages
    expect(read).toEqual([...read].sort((a, b) => (a ?? 0) - (b ?? 0)));
  });

  it('reads records bigger than a chunk, and records cut by a chunk’s end, whole', async () => {
    const journal = await openJournal();
    const big = Buffer.alloc(Math.floor(JOURNAL_DEFAULTS.readChunkBytes * 2.5), 'b');
    const mid = (i: number) => Buffer.alloc(300_001, String(i % 10)); // odd-sized: the chunks end inside records
    await journal.enqueue(key('ingest-1', 1), packet(1));
    await journal.enqueue(key('ingest-1', 2), packet(2, big));
    for (let i = 3; i <= 12; i++) await journal.enqueue(key(i % 2 ? 'ingest-1' : 'ingest-2', i), packet(i, mid(i)));
    await journal.enqueue(key('ingest-1', 13), packet(13));
    const { read } = await pages(journal, 'ingest-1', 2);
    const all = read.flat();
    expect(counters(all)).toEqual([1, 2, 3, 5, 7, 9, 11, 13]);
    expect(all[1]?.payload?.equals(big)).toBe(true);
    for (const p of all.slice(2, -1)) expect(p.payload?.equals(mid(p.brokerCounter ?? 0))).toBe(true);
    expect(all.at(-1)?.payload?.toString()).toBe('{"seq":13}');
  });

  it('stops at a record cut short at the end of the last segment, and goes on past it once another segment follows', async () => {
    const journal = await openJournal();
    for (let i = 1; i <= 3; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    await journal.close();
    const [file] = await segments();
    await appendFile(join(dir(), 'queue', file as string), Buffer.from([200, 0, 0, 0, 1, 5, 0, 1, 2])); // a record's first bytes
    const again = await openJournal();
    const first = await again.page(prefix('ingest-1'), undefined, 10);
    expect([counters(first.packets), first.end]).toEqual([[1, 2, 3], true]);
    await again.enqueue(key('ingest-1', 4), packet(4)); // in a new segment
    const second = await again.page(prefix('ingest-1'), first.next, 10);
    expect([counters(second.packets), second.end]).toEqual([[4], true]);
  });

  it('reads the same after a restart, from the start', async () => {
    const journal = await openJournal(2048);
    for (let i = 1; i <= 50; i++) {
      await journal.enqueue(key('ingest-1', i), packet(i));
      await journal.enqueue(key('ingest-2', i), packet(i));
    }
    for (let i = 1; i <= 50; i += 3) journal.delete(key('ingest-1', i));
    await journal.replace(key('ingest-1', 20), { cmd: 'pubrel', brokerId, brokerCounter: 20, messageId: 4 });
    // A replacement read back from its record has an empty payload where the one given had none.
    const shown = (packets: JournalPacket[]) => packets.map((p) => [p.brokerCounter, p.cmd, p.payload?.toString() ?? '']);
    const before = shown((await pages(journal, 'ingest-1', 4)).read.flat());
    expect(before).toHaveLength(50 - 17);
    expect(before).toContainEqual([20, 'pubrel', '']);
    await journal.close();
    const again = await openJournal(2048);
    expect(shown((await pages(again, 'ingest-1', 4)).read.flat())).toEqual(before);
    const streamed = await readQueue(again, prefix('ingest-1'));
    expect(shown(streamed)).toEqual(before);
  });

  it('keeps no file open between pages', async () => {
    const journal = await openJournal(2048);
    for (let i = 1; i <= 40; i++) await journal.enqueue(key('ingest-1', i), packet(i));
    const open = async () => (await readdir('/proc/self/fd')).length;
    const before = await open();
    const first = await journal.page(prefix('ingest-1'), undefined, 5);
    expect(await open()).toBe(before);
    await pages(journal, 'ingest-1', 5, first.next);
    expect(await open()).toBe(before);
  });
});
