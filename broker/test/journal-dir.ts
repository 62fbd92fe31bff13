import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach } from 'vitest';
import { Journal } from '../src/journal.js';

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
