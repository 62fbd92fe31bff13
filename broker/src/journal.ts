import { closeSync, openSync, write } from 'node:fs';
import { mkdir, open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';

/**
 * The disk store's queue of QoS 1/2 messages for persistent sessions, as an append-only log.
 *
 * Almost every message the broker queues for ingest is acknowledged within a second, so keeping
 * them in a sorted store (LevelDB: a put and a delete per message, each compacted later) spends
 * CPU on order nobody needs, and LevelDB's compactions stall its writes, and with them every
 * publisher's PUBACK, for a second at a time at 10,000 messages/s. Here:
 * - a message is appended to the current segment file (group-committed: everything queued while
 *   a write is on its way goes in the next write, one `write` call each);
 * - an acknowledgement appends a small delete record and counts the message out of its segment;
 * - a segment whose messages are all acknowledged is deleted, file and all: no compaction;
 * - a reconnecting client's queue is read back a page at a time, oldest first, each page from where
 *   the last stopped (a segment and an offset in it), a chunk of a segment file at a time.
 * Memory: counts per segment, and the keys deleted from segments still on disk (a segment holds
 * SEGMENT_BYTES of messages), so a backlog of millions of messages for an absent client costs
 * disk, not memory.
 *
 * Durability is LevelDB's default: a write is in the file (the OS has it) before its promise
 * resolves; it survives the process being killed, not the machine losing power (no fsync).
 *
 * Record: u32 length of the rest, u8 type, u16 key length, key (UTF-8), body. Keys are the queue
 * keys of session-queue.ts ("outgoing:<client>:<brokerId>:<counter>"); a body is a packet: u32
 * length of its JSON, the JSON of every field but the payload, the payload.
 */
export const JOURNAL_DEFAULTS = {
  /** A segment is closed past this size and deleted once all its messages are acknowledged. */
  segmentBytes: 16 * 1024 * 1024,
  /** Bytes of a segment file read at a time: a backlog is paged through, not held in memory whole. */
  readChunkBytes: 1024 * 1024,
} as const;

export interface JournalPacket {
  brokerId?: string;
  brokerCounter?: number;
  payload?: Buffer;
  [field: string]: unknown;
}

const ENQ = 1;
const DEL = 2;
const REPLACE = 3;
const NAME = /^(\d{10})\.seg$/;

/** Where a page read stopped: a segment number and a byte offset in its file. */
export interface JournalPosition {
  readonly segment: number;
  readonly offset: number;
}

export interface JournalPage {
  readonly packets: JournalPacket[];
  /** Where the following page starts: just after the last record this one consumed. */
  readonly next: JournalPosition;
  /** This page reached the end of what the journal holds: nothing more after `next` for now. */
  readonly end: boolean;
}

interface Segment {
  readonly no: number;
  readonly path: string;
  /** Messages appended here. */
  enqueued: number;
  /** Keys of those messages acknowledged since. */
  readonly deleted: Set<string>;
  /** Replacements (PUBREL for a QoS 2 publish) kept here for messages still queued. */
  pins: number;
  /**
   * brokerId → lowest and highest counter of the messages appended here in counter order: the
   * ranges of the segments do not overlap, so a key's counter says which segment holds it…
   */
  readonly ranges: Map<string, [number, number]>;
  /** …except for a message appended after one numbered above it (a slow retained store, say): kept by key. */
  readonly stragglers: Set<string>;
}

interface Pending {
  readonly type: number;
  readonly key: string;
  readonly record: Buffer;
  readonly packet?: JournalPacket;
  cancelled: boolean;
}

/** brokerId and counter of a queue key (see above), or undefined for a key not of that form. */
function keyParts(key: string): { brokerId: string; counter: number } | undefined {
  const last = key.lastIndexOf(':');
  const before = key.lastIndexOf(':', last - 1);
  if (last < 0 || before < 0) return undefined;
  const counter = Number(key.slice(last + 1));
  return Number.isSafeInteger(counter) ? { brokerId: key.slice(before + 1, last), counter } : undefined;
}

function encodeRecord(type: number, key: string, packet?: JournalPacket): Buffer {
  const keyBytes = Buffer.byteLength(key);
  let json = '';
  let payload: Buffer | undefined;
  if (packet) {
    const { payload: body, ...rest } = packet;
    json = JSON.stringify(rest);
    payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(String(body));
  }
  const jsonBytes = packet ? Buffer.byteLength(json) : 0;
  const bodyBytes = packet ? 4 + jsonBytes + (payload?.length ?? 0) : 0;
  const record = Buffer.allocUnsafe(4 + 1 + 2 + keyBytes + bodyBytes);
  record.writeUInt32LE(record.length - 4, 0);
  record.writeUInt8(type, 4);
  record.writeUInt16LE(keyBytes, 5);
  record.write(key, 7, 'utf8');
  if (packet) {
    const at = 7 + keyBytes;
    record.writeUInt32LE(jsonBytes, at);
    record.write(json, at + 4, 'utf8');
    payload?.copy(record, at + 4 + jsonBytes);
  }
  return record;
}

function decodePacket(body: Buffer): JournalPacket {
  const jsonBytes = body.readUInt32LE(0);
  const packet = JSON.parse(body.toString('utf8', 4, 4 + jsonBytes)) as JournalPacket;
  packet.payload = Buffer.from(body.subarray(4 + jsonBytes));
  return packet;
}

/**
 * The records of a segment file (or of a chunk of it), up to the first one cut short (a write the
 * process did not finish), each with the offset just after it.
 */
function* records(file: Buffer): Generator<{ type: number; key: string; body: Buffer; end: number }> {
  let at = 0;
  while (at + 7 <= file.length) {
    const length = file.readUInt32LE(at);
    const end = at + 4 + length;
    if (length < 3 || end > file.length) return;
    const type = file.readUInt8(at + 4);
    const keyBytes = file.readUInt16LE(at + 5);
    if (7 + keyBytes > 4 + length) return;
    yield { type, key: file.toString('utf8', at + 7, at + 7 + keyBytes), body: file.subarray(at + 7 + keyBytes, end), end };
    at = end;
  }
}

/**
 * The records of an open segment file from `offset`, read a chunk at a time, each with the file
 * offset just after it, up to the first one cut short, as records(). A record is read whole: one
 * cut by a chunk's end is read again from its start in the next chunk, grown to fit it if need be.
 * A body is a view of the chunk: decode it before asking for the next record.
 */
async function* fileRecords(handle: FileHandle, offset: number): AsyncGenerator<{ type: number; key: string; body: Buffer; end: number }> {
  // Up to the size now: what is appended while this reads is for the next page.
  const { size } = await handle.stat();
  // No bigger than what is left: a page from near the end (a queue kept up with) reads little.
  let chunk = Buffer.allocUnsafe(Math.max(0, Math.min(JOURNAL_DEFAULTS.readChunkBytes, size - offset)));
  let at = offset;
  while (at < size) {
    const { bytesRead } = await handle.read(chunk, 0, Math.min(chunk.length, size - at), at);
    let used = 0;
    for (const record of records(chunk.subarray(0, bytesRead))) {
      yield { ...record, end: at + record.end };
      used = record.end;
    }
    if (used === 0) {
      // Not one whole record in the chunk: one bigger than the chunk is read again in one that
      // fits it; one past the end of the file is cut short, one within it not a record: stop.
      const whole = bytesRead >= 4 ? 4 + chunk.readUInt32LE(0) : Infinity;
      if (whole <= bytesRead || at + whole > size) return;
      chunk = Buffer.allocUnsafe(whole);
    }
    at += used;
  }
}

export class Journal {
  readonly #dir: string;
  readonly #logger: Logger;
  readonly #segmentBytes: number;
  /** Oldest first; the last is the one written to. */
  readonly #segments: Segment[] = [];
  #fd = -1;
  #size = 0;
  #pending: Pending[] = [];
  /** Messages waiting for the next write, by key: an acknowledgement before it cancels them. */
  readonly #pendingEnq = new Map<string, Pending>();
  #waiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  #writing: Promise<void> | undefined;
  #scheduled = false;
  /** Replaced messages (a PUBREL in place of its publish) still queued, and the segment holding the replacement. */
  readonly #replaced = new Map<string, { packet: JournalPacket; segment: Segment }>();
  #closed = false;
  /** While reading back at open: no segment is deleted before all of them are read. */
  #replaying = false;
  /** Segment numbers are not reused within a process (an emptied segment's file is deleted asynchronously). */
  #nextNo = 1;
  /** brokerId → highest counter appended. */
  readonly #maxCounters = new Map<string, number>();
  /** The segment of every straggler key (see Segment.stragglers), so an acknowledgement finds it in O(1). */
  readonly #stragglers = new Map<string, Segment>();
  #writes = 0;

  private constructor(dir: string, logger: Logger, segmentBytes: number) {
    this.#dir = dir;
    this.#logger = logger;
    this.#segmentBytes = segmentBytes;
  }

  /** Opens (or creates) the journal in `dir` and reads back what it holds. One process at a time: the caller holds a lock. */
  static async open(dir: string, logger: Logger, segmentBytes: number = JOURNAL_DEFAULTS.segmentBytes): Promise<Journal> {
    await mkdir(dir, { recursive: true });
    const journal = new Journal(dir, logger, segmentBytes);
    await journal.#replay();
    return journal;
  }

  /** Writes to segment files since open (each a group of appends). */
  get writes(): number {
    return this.#writes;
  }

  /** Queued messages (appended, not yet acknowledged). */
  get size(): number {
    let count = 0;
    for (const segment of this.#segments) count += segment.enqueued - segment.deleted.size;
    for (const pending of this.#pendingEnq.values()) if (!pending.cancelled) count++;
    return count;
  }

  /** Highest counter of `brokerId`'s messages in the journal: a restarted broker numbers on from above it. */
  maxCounter(brokerId: string): number | undefined {
    let max = this.#maxCounters.get(brokerId);
    for (const pending of this.#pendingEnq.values()) {
      const parts = keyParts(pending.key);
      if (parts?.brokerId === brokerId && (max === undefined || parts.counter > max)) max = parts.counter;
    }
    return max;
  }

  /** Appends a message under its key; resolves once it is in the file. */
  enqueue(key: string, packet: JournalPacket): Promise<void> {
    const pending: Pending = { type: ENQ, key, record: encodeRecord(ENQ, key, packet), cancelled: false };
    this.#pending.push(pending);
    this.#pendingEnq.set(key, pending);
    return this.#wait();
  }

  /** Puts `packet` in place of the queued message `key` (a PUBREL for its publish); resolves once in the file. */
  replace(key: string, packet: JournalPacket): Promise<void> {
    const queued = this.#pendingEnq.get(key);
    if (queued && !queued.cancelled) {
      queued.cancelled = true;
      this.#pendingEnq.delete(key);
      return this.enqueue(key, packet);
    }
    this.#pending.push({ type: REPLACE, key, record: encodeRecord(REPLACE, key, packet), packet, cancelled: false });
    return this.#wait();
  }

  /** Removes the message `key` (acknowledged). Not waited for: lost in a crash, it means one more delivery. */
  delete(key: string): void {
    const queued = this.#pendingEnq.get(key);
    if (queued) {
      queued.cancelled = true;
      this.#pendingEnq.delete(key);
      return;
    }
    if (!this.#applyDelete(key)) return;
    this.#pending.push({ type: DEL, key, record: encodeRecord(DEL, key), cancelled: false });
    this.#schedule();
  }

  /**
   * Up to `limit` queued messages whose keys start with `prefix`, in append order, from `from`
   * (undefined: the oldest segment's start). Positions stay good while messages are appended and
   * acknowledged: records are only appended, and a segment gone (all of it acknowledged) is
   * passed over to the next one, whose numbers are never reused within a process. A position
   * means nothing to another process: a reopened journal is read from undefined. No file stays
   * open between pages.
   */
  async page(prefix: string, from: JournalPosition | undefined, limit: number): Promise<JournalPage> {
    await this.#settled();
    const packets: JournalPacket[] = [];
    let next: JournalPosition = from ?? { segment: 0, offset: 0 };
    let end = true;
    for (const segment of this.#segments.filter((s) => s.no >= next.segment)) {
      next = { segment: segment.no, offset: segment.no === next.segment ? next.offset : 0 };
      let handle: FileHandle;
      try {
        handle = await open(segment.path, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // emptied and deleted meanwhile
        throw err;
      }
      try {
        for await (const { type, key, body, end: after } of fileRecords(handle, next.offset)) {
          // Stopped at the record after the last one taken, so `end` says whether any is left.
          if (packets.length >= limit) {
            end = false;
            break;
          }
          next = { segment: segment.no, offset: after };
          if (type !== ENQ || !key.startsWith(prefix) || segment.deleted.has(key)) continue;
          packets.push(this.#replaced.get(key)?.packet ?? decodePacket(body));
        }
      } finally {
        await handle.close();
      }
      if (!end) break;
    }
    return { packets, next, end };
  }

  /**
   * What was appended before the call is in the file (or failed). Unlike flush(), later appends
   * are not waited for: under steady traffic there is always another write on its way.
   */
  async #settled(): Promise<void> {
    if (this.#pending.length > 0) await this.#wait().catch(() => undefined);
    else await this.#writing;
  }

  /** Everything appended so far is in the file (or failed). */
  async flush(): Promise<void> {
    while (this.#writing || this.#pending.length > 0) {
      if (!this.#writing) this.#write();
      await this.#writing;
    }
  }

  async close(): Promise<void> {
    await this.flush().catch(() => undefined);
    this.#closed = true;
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  #wait(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#writing) return;
    this.#scheduled = true;
    // setImmediate: what this turn of the event loop appends shares the first write.
    setImmediate(() => this.#write());
  }

  #write(): void {
    this.#scheduled = false;
    if (this.#writing || this.#pending.length === 0) return;
    if (this.#closed) {
      for (const waiter of this.#waiters.splice(0)) waiter.reject(new Error('MQTT message queue is closed'));
      this.#pending = [];
      return;
    }
    if (this.#fd < 0 || this.#size >= this.#segmentBytes) {
      try {
        this.#rotate();
      } catch (err) {
        // No new segment (disk full, folder gone): refuse this batch, as a failed write does.
        this.#logger.error({ err, code: 'E_INTERNAL', dir: this.#dir }, 'MQTT message queue could not open a segment; publishers get no PUBACK and will resend');
        for (const pending of this.#pending) if (pending.type === ENQ) this.#pendingEnq.delete(pending.key);
        this.#pending = [];
        for (const waiter of this.#waiters.splice(0)) waiter.reject(err as Error);
        return;
      }
    }
    const segment = this.#segments.at(-1) as Segment;
    const parts: Buffer[] = [];
    const waiters = this.#waiters;
    for (const pending of this.#pending) {
      if (pending.cancelled) continue;
      parts.push(pending.record);
      if (pending.type === ENQ) {
        this.#pendingEnq.delete(pending.key);
        this.#appended(segment, pending.key);
      } else if (pending.type === REPLACE && pending.packet) {
        this.#replace(pending.key, pending.packet, segment);
      }
    }
    this.#pending = [];
    this.#waiters = [];
    if (parts.length === 0) {
      // Everything in this batch was acknowledged before it was written: nothing to keep.
      for (const waiter of waiters) waiter.resolve();
      return;
    }
    const batch = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
    this.#size += batch.length;
    this.#writes++;
    this.#writing = writeAll(this.#fd, batch)
      .then(
        () => {
          for (const waiter of waiters) waiter.resolve();
        },
        (err: Error) => {
          this.#logger.error({ err, code: 'E_INTERNAL', bytes: batch.length }, 'MQTT message queue write failed; publishers get no PUBACK and will resend');
          for (const waiter of waiters) waiter.reject(err);
        },
      )
      .finally(() => {
        this.#writing = undefined;
        if (this.#pending.length > 0) this.#write();
      });
  }

  /** Closes the segment written to (deleting it if it is already empty) and starts the next. */
  #rotate(): void {
    const last = this.#segments.at(-1);
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
    const no = this.#nextNo++;
    const path = join(this.#dir, `${String(no).padStart(10, '0')}.seg`);
    this.#fd = openSync(path, 'w');
    this.#size = 0;
    this.#segments.push({ no, path, enqueued: 0, deleted: new Set(), pins: 0, ranges: new Map(), stragglers: new Set() });
    if (last) this.#dropIfDone(last);
  }

  /** Counts a message in to the segment it was appended to. */
  #appended(segment: Segment, key: string): void {
    segment.enqueued++;
    const parts = keyParts(key);
    const max = parts && this.#maxCounters.get(parts.brokerId);
    // The same counter again is the same message for another client: in range if in the same segment.
    const range = parts && segment.ranges.get(parts.brokerId);
    if (!parts || (max !== undefined && (parts.counter < max || (parts.counter === max && range?.[1] !== max)))) {
      segment.stragglers.add(key);
      this.#stragglers.set(key, segment);
      return;
    }
    this.#maxCounters.set(parts.brokerId, parts.counter);
    if (range) range[1] = parts.counter;
    else segment.ranges.set(parts.brokerId, [parts.counter, parts.counter]);
  }

  /** The segment holding a message: a straggler by its key, any other by its counter. */
  #segmentOf(key: string): Segment | undefined {
    const straggler = this.#stragglers.get(key);
    if (straggler) return straggler;
    const parts = keyParts(key);
    if (!parts) return undefined;
    for (let i = this.#segments.length - 1; i >= 0; i--) {
      const segment = this.#segments[i] as Segment;
      const range = segment.ranges.get(parts.brokerId);
      if (range && parts.counter >= range[0] && parts.counter <= range[1]) return segment;
    }
    return undefined;
  }

  /** Counts a message out of its segment; false when it is not (or no longer) there. */
  #applyDelete(key: string): boolean {
    const segment = this.#segmentOf(key);
    if (!segment || segment.deleted.has(key)) return false;
    segment.deleted.add(key);
    const replaced = this.#replaced.get(key);
    if (replaced) {
      this.#replaced.delete(key);
      replaced.segment.pins--;
      this.#dropIfDone(replaced.segment);
    }
    this.#dropIfDone(segment);
    return true;
  }

  #replace(key: string, packet: JournalPacket, segment: Segment): void {
    const before = this.#replaced.get(key);
    this.#replaced.set(key, { packet, segment });
    segment.pins++;
    if (before) {
      before.segment.pins--;
      this.#dropIfDone(before.segment);
    }
  }

  /** Deletes a segment no longer written to once it holds nothing queued. */
  #dropIfDone(segment: Segment): void {
    if (this.#replaying) return;
    if (segment === this.#segments.at(-1) && this.#fd >= 0) return;
    if (segment.deleted.size < segment.enqueued || segment.pins > 0) return;
    const at = this.#segments.indexOf(segment);
    if (at < 0) return;
    this.#segments.splice(at, 1);
    for (const key of segment.stragglers) this.#stragglers.delete(key);
    unlink(segment.path).catch((err: unknown) => this.#logger.warn({ err, path: segment.path }, 'could not delete an emptied MQTT queue segment'));
  }

  async #replay(): Promise<void> {
    const names = (await readdir(this.#dir)).filter((name) => NAME.test(name)).sort();
    this.#replaying = true;
    for (const name of names) {
      const path = join(this.#dir, name);
      const segment: Segment = { no: Number(NAME.exec(name)?.[1]), path, enqueued: 0, deleted: new Set(), pins: 0, ranges: new Map(), stragglers: new Set() };
      this.#segments.push(segment);
      const file = await readFile(path);
      let bytes = 0;
      for (const { type, key, body } of records(file)) {
        bytes += 7 + Buffer.byteLength(key) + body.length;
        if (type === ENQ) {
          this.#appended(segment, key);
        } else if (type === DEL) {
          this.#applyDelete(key);
        } else if (type === REPLACE) {
          this.#replace(key, decodePacket(body), segment);
        }
      }
      if (bytes < file.length) this.#logger.warn({ path, bytes, fileBytes: file.length }, 'MQTT queue segment ends in a record cut short (a write the broker did not finish): read up to it');
    }
    this.#replaying = false;
    this.#nextNo = (this.#segments.at(-1)?.no ?? 0) + 1;
    // Every segment read is closed: the next write starts a new one; the emptied ones go.
    for (const segment of [...this.#segments]) this.#dropIfDone(segment);
    if (names.length > 0) this.#logger.info({ segments: this.#segments.length, queued: this.size }, 'MQTT message queue read back');
  }
}

function writeAll(fd: number, buffer: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const next = (offset: number): void => {
      write(fd, buffer, offset, buffer.length - offset, null, (err, written) => {
        if (err) reject(err);
        else if (offset + written < buffer.length) next(offset + written);
        else resolve();
      });
    };
    next(0);
  });
}
