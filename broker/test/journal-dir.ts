import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach } from 'vitest';
import { Journal, type JournalPacket, type JournalPosition } from '../src/journal.js';

/**
 * A fresh folder for each test of the calling file, with journals opened in its `queue`
 * subfolder; after each test they are closed and the folder removed. `dir()` is the folder.
 */
export function journalFolder(name: string) {
  let dir = '';
  const journals: Journal[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), `citypulse-${name}-`));
  });
  afterEach(async () => {
    for (const journal of journals.splice(0)) await journal.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    dir: () => dir,
    openJournal: async (segmentBytes?: number) => {
      const journal = await Journal.open(join(dir, 'queue'), pino({ level: 'silent' }), segmentBytes);
      journals.push(journal);
      return journal;
    },
    /** The journal's segment files, oldest first. */
    segments: async () => (await readdir(join(dir, 'queue'))).filter((f) => f.endsWith('.seg')).sort(),
  };
}

/** Every queued message whose key starts with `prefix`, oldest first, read a page at a time. */
export async function readQueue(journal: Journal, prefix: string): Promise<JournalPacket[]> {
  const all: JournalPacket[] = [];
  let from: JournalPosition | undefined;
  for (;;) {
    const { packets, next, end } = await journal.page(prefix, from, 1000);
    all.push(...packets);
    if (end) return all;
    from = next;
  }
}
