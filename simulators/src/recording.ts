import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { access, mkdir, open, readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream';
import type { Readable } from 'node:stream';
import { constants as zlibConstants, createGunzip, createGzip, type Gzip } from 'node:zlib';
import { CodedError } from '@citypulse/contracts';
import { connect, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';

/**
 * Recordings of MQTT traffic: NDJSON, one JSON object per line, UTF-8, optionally gzipped and
 * split into parts. The first line of every file is a header
 * `{"format":"citypulse-recording","version":1,"createdAt":ISO,…extra}`; each further line is one
 * message `{"at":ms,"topic":…,"qos":1,"retain":false,"payload":"…"}`. The payload is kept verbatim
 * as a string, so a malformed payload replays bit for bit; one that is not valid UTF-8 is stored as
 * `"payloadBase64"` instead.
 *
 * Parts: `city.ndjson.gz`, then `city.1.ndjson.gz`, `city.2.ndjson.gz`… (the part number goes
 * before `.ndjson`/`.gz`). Each part starts with the same header. Reading the first part's path
 * reads the whole set.
 */
export const RECORDING_FORMAT = 'citypulse-recording';
export const RECORDING_VERSION = 1;

/** Recorder knobs in one place (units in the names). */
export const RECORDER_DEFAULTS = {
  chunkBytes: 256 * 1024, // lines gathered before one write to the file (or gzip) stream
  flushIntervalMs: 1000, // gathered lines reach the stream at least this often
  gzipLevel: 6,
} as const;

export interface RecordedMessage {
  /** Epoch ms on the publisher's (or receiver's) clock when the message was published (received). */
  readonly at: number;
  readonly topic: string;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  readonly payload: string | Buffer;
}

export interface RecorderOptions {
  readonly path: string;
  /** Default: true when `path` ends with .gz. ".gz" is appended to a path without it. */
  readonly gzip?: boolean;
  /** rotate after this many bytes (uncompressed) */
  readonly rotateBytes?: number;
  /** rotate after this many ms of `at` time */
  readonly rotateMs?: number;
  /** Extra header fields (scenario, seed …); a `createdAt` here replaces the current time, for byte-identical files. */
  readonly header?: Readonly<Record<string, unknown>>;
  /** Replace an existing recording at `path` (and its parts). Default false: refuse with E_CONFIG. */
  readonly overwrite?: boolean;
}

export interface RecorderStats {
  readonly messages: number;
  /** Uncompressed bytes, headers included. */
  readonly bytes: number;
  readonly files: readonly string[];
}

export interface Recorder {
  /** Cheap and synchronous: the line is buffered and written in chunks. Throws once the file has failed (disk full …). */
  write(message: RecordedMessage): void;
  /** resolves when everything written so far is on disk */
  flush(): Promise<void>;
  close(): Promise<void>;
  stats(): RecorderStats;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const PART_SUFFIXES = ['.ndjson.gz', '.ndjson', '.gz'] as const;

/** `city.ndjson.gz` → { stem: 'city', suffix: '.ndjson.gz' }; a path without a known suffix has stem = path. */
function splitSuffix(path: string): { stem: string; suffix: string } {
  const suffix = PART_SUFFIXES.find((s) => path.endsWith(s) && path.length > s.length) ?? '';
  return { stem: path.slice(0, path.length - suffix.length), suffix };
}

/** Path of part `n` of the recording whose first part is `base` (n = 0 is `base` itself). */
export function recordingPartPath(base: string, n: number): string {
  if (n === 0) return base;
  const { stem, suffix } = splitSuffix(base);
  return `${stem}.${n}${suffix}`;
}

/** `city.3.ndjson.gz` → { base: 'city.ndjson.gz', n: 3 }; undefined for a name without a part number. */
function parsePartPath(path: string): { base: string; n: number } | undefined {
  const { stem, suffix } = splitSuffix(path);
  const match = /^(.*)\.(\d{1,9})$/.exec(stem);
  if (!match?.[1] || !match[2] || Number(match[2]) === 0) return undefined;
  return { base: `${match[1]}${suffix}`, n: Number(match[2]) };
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Existing numbered parts of `base` on disk (for overwrite and for the refusal message). */
async function existingParts(base: string): Promise<string[]> {
  const names = await readdir(dirname(base)).catch(() => [] as string[]);
  const dir = dirname(base);
  return names.map((name) => join(dir, name)).filter((path) => parsePartPath(path)?.base === join(dir, basename(base)));
}

/** One recorded message as its NDJSON line (without the newline); fixed key order, so equal writes give equal bytes. */
export function encodeRecordedMessage(message: RecordedMessage): string {
  const { at, topic, qos, retain, payload } = message;
  if (!Number.isFinite(at)) throw new CodedError('E_BAD_REQUEST', `recorded message "at" must be a number of epoch ms, got ${String(at)}`);
  if (typeof topic !== 'string' || topic === '') throw new CodedError('E_BAD_REQUEST', 'recorded message needs a topic');
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new CodedError('E_BAD_REQUEST', `recorded message qos must be 0, 1 or 2, got ${String(qos)}`);
  if (typeof payload === 'string') return JSON.stringify({ at, topic, qos, retain: retain === true, payload });
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return JSON.stringify({ at, topic, qos, retain: retain === true, payloadBase64: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('base64') });
  }
  return JSON.stringify({ at, topic, qos, retain: retain === true, payload: text });
}

interface Part {
  readonly path: string;
  readonly file: WriteStream;
  readonly gzip: Gzip | undefined;
  /** Uncompressed bytes in this part, header included. */
  bytes: number;
  messages: number;
  firstAt: number;
  /** Resolves when the file is closed after end(). */
  readonly closed: Promise<void>;
}

/**
 * Opens a recording for writing. Refuses (E_CONFIG) when the file or a part of it exists, unless
 * `overwrite`. Lines are gathered in memory and handed to the file stream in chunks of
 * RECORDER_DEFAULTS.chunkBytes (and at least every flushIntervalMs); while the disk is behind,
 * lines stay in memory and `flush()` waits. Output depends only on the sequence of write(),
 * flush() and close() calls (and the header), never on timing.
 */
export async function openRecorder(options: RecorderOptions): Promise<Recorder> {
  const gzip = options.gzip ?? options.path.endsWith('.gz');
  const base = gzip && !options.path.endsWith('.gz') ? `${options.path}.gz` : options.path;
  if (!gzip && base.endsWith('.gz')) throw new CodedError('E_CONFIG', `recording ${base} ends with .gz but gzip is off; drop ".gz" or turn gzip on`);
  for (const [name, value] of [['rotateBytes', options.rotateBytes], ['rotateMs', options.rotateMs]] as const) {
    if (value !== undefined && (!Number.isFinite(value) || value <= 0)) throw new CodedError('E_CONFIG', `${name} must be a positive number, got ${value}`);
  }
  await mkdir(dirname(base), { recursive: true });
  const stale = [...((await exists(base)) ? [base] : []), ...(await existingParts(base))];
  if (stale.length > 0) {
    if (!options.overwrite) {
      const what = stale.length > 1 ? `${stale[0]} (and ${stale.length - 1} more parts)` : stale[0];
      throw new CodedError('E_CONFIG', `recording ${what} already exists; choose another path or allow overwriting`);
    }
    await Promise.all(stale.map((path) => rm(path, { force: true })));
  }
  const header = { format: RECORDING_FORMAT, version: RECORDING_VERSION, createdAt: new Date().toISOString(), ...options.header } as Record<string, unknown>;
  header.format = RECORDING_FORMAT;
  header.version = RECORDING_VERSION;
  const recorder = new NdjsonRecorder(base, gzip, `${JSON.stringify(header)}\n`, options.rotateBytes, options.rotateMs);
  await recorder.opened();
  return recorder;
}

class NdjsonRecorder implements Recorder {
  readonly #base: string;
  readonly #gzip: boolean;
  readonly #headerLine: string;
  readonly #rotateBytes: number | undefined;
  readonly #rotateMs: number | undefined;
  readonly #files: string[] = [];
  readonly #closing: Promise<void>[] = [];
  readonly #timer: NodeJS.Timeout;
  #part: Part;
  #pending: string[] = [];
  #pendingBytes = 0;
  #waitingForDrain = false;
  #messages = 0;
  #bytes = 0;
  #error: Error | undefined;
  #closed: Promise<void> | undefined;

  constructor(base: string, gzip: boolean, headerLine: string, rotateBytes: number | undefined, rotateMs: number | undefined) {
    this.#base = base;
    this.#gzip = gzip;
    this.#headerLine = headerLine;
    this.#rotateBytes = rotateBytes;
    this.#rotateMs = rotateMs;
    this.#part = this.#openPart();
    this.#timer = setInterval(() => this.#pump(), RECORDER_DEFAULTS.flushIntervalMs);
    this.#timer.unref();
  }

  /** Resolves once the first file is open; rejects with its error (no such folder, no permission). */
  async opened(): Promise<void> {
    const { file } = this.#part;
    if (file.pending) {
      await new Promise<void>((resolve, reject) => {
        file.once('ready', resolve);
        file.once('error', reject);
      });
    }
    this.#throwIfFailed();
  }

  write(message: RecordedMessage): void {
    this.#throwIfFailed();
    if (this.#closed) throw new CodedError('E_INTERNAL', `recording ${this.#base} is closed`);
    const line = `${encodeRecordedMessage(message)}\n`;
    const lineBytes = Buffer.byteLength(line);
    const part = this.#part;
    if (part.messages > 0 && ((this.#rotateBytes !== undefined && part.bytes + lineBytes > this.#rotateBytes) || (this.#rotateMs !== undefined && message.at - part.firstAt >= this.#rotateMs))) {
      this.#rotate();
    }
    const current = this.#part;
    if (current.messages === 0) current.firstAt = message.at;
    current.messages++;
    current.bytes += lineBytes;
    this.#messages++;
    this.#bytes += lineBytes;
    this.#pending.push(line);
    this.#pendingBytes += lineBytes;
    if (this.#pendingBytes >= RECORDER_DEFAULTS.chunkBytes) this.#pump();
  }

  async flush(): Promise<void> {
    this.#throwIfFailed();
    if (this.#closed) return this.#closed;
    this.#pump(true);
    const { file, gzip } = this.#part;
    // A sync flush ends the deflate block so a reader (or a crash) sees every line written so far.
    if (gzip) await new Promise<void>((resolve) => gzip.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
    // Writes complete in order: this empty write's callback runs after everything queued before it.
    await new Promise<void>((resolve, reject) => file.write('', (err) => (err ? reject(err) : resolve())));
    this.#throwIfFailed();
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      clearInterval(this.#timer);
      this.#pump(true);
      this.#endPart(this.#part);
      await Promise.all(this.#closing);
      this.#throwIfFailed();
    })();
    return this.#closed;
  }

  stats(): RecorderStats {
    return { messages: this.#messages, bytes: this.#bytes, files: [...this.#files] };
  }

  #openPart(): Part {
    const path = recordingPartPath(this.#base, this.#files.length);
    // 'wx': a part that appeared since openRecorder checked is never overwritten.
    const file = createWriteStream(path, { flags: 'wx', mode: 0o644 });
    const gzip = this.#gzip ? createGzip({ level: RECORDER_DEFAULTS.gzipLevel }) : undefined;
    const closed = new Promise<void>((resolve) => file.once('close', resolve));
    file.on('error', (err) => this.#fail(err, path));
    if (gzip) {
      gzip.on('error', (err) => this.#fail(err, path));
      // Not pipe(): gzip output goes straight to the file, so a flush() sees it queued there at once.
      gzip.on('data', (chunk: Buffer) => file.write(chunk));
      gzip.once('end', () => file.end());
    }
    (gzip ?? file).write(this.#headerLine);
    this.#files.push(path);
    const headerBytes = Buffer.byteLength(this.#headerLine);
    this.#bytes += headerBytes;
    return { path, file, gzip, bytes: headerBytes, messages: 0, firstAt: 0, closed };
  }

  #rotate(): void {
    this.#pump(true);
    this.#endPart(this.#part);
    this.#part = this.#openPart();
  }

  #endPart(part: Part): void {
    (part.gzip ?? part.file).end();
    this.#closing.push(part.closed);
  }

  /** Hands gathered lines to the stream, unless it is asking us to wait (`force` writes anyway: flush, rotate, close). */
  #pump(force = false): void {
    if (this.#pending.length === 0) return;
    const { file, gzip } = this.#part;
    if (!force && (file.writableNeedDrain || gzip?.writableNeedDrain)) {
      this.#waitForDrain();
      return;
    }
    const chunk = this.#pending.length === 1 ? (this.#pending[0] as string) : this.#pending.join('');
    this.#pending = [];
    this.#pendingBytes = 0;
    (gzip ?? file).write(chunk);
    if (file.writableNeedDrain || gzip?.writableNeedDrain) this.#waitForDrain();
  }

  #waitForDrain(): void {
    if (this.#waitingForDrain) return;
    const { file, gzip } = this.#part;
    const stream = gzip?.writableNeedDrain ? gzip : file;
    this.#waitingForDrain = true;
    stream.once('drain', () => {
      this.#waitingForDrain = false;
      if (this.#pendingBytes >= RECORDER_DEFAULTS.chunkBytes) this.#pump();
    });
  }

  #fail(err: Error, path: string): void {
    this.#error ??= new CodedError('E_INTERNAL', `writing recording ${path} failed: ${err.message}`, { cause: err });
  }

  #throwIfFailed(): void {
    if (this.#error) throw this.#error;
  }
}

/**
 * The files a list of paths stands for, in replay order: the first part of a rotated set brings its
 * numbered parts along (`city.ndjson.gz`, `city.1.ndjson.gz` …); a numbered part whose set is also
 * listed is skipped, so `rec/city*` from a shell glob works too. A missing path is E_CONFIG.
 */
export async function resolveRecordingFiles(paths: string | readonly string[]): Promise<string[]> {
  const list = typeof paths === 'string' ? [paths] : [...paths];
  if (list.length === 0) throw new CodedError('E_CONFIG', 'no recording given');
  const listed = new Set(list);
  const files: string[] = [];
  for (const path of list) {
    const part = parsePartPath(path);
    if (part && listed.has(part.base)) continue;
    if (!(await exists(path))) throw new CodedError('E_CONFIG', `recording ${path} does not exist`);
    files.push(path);
    if (part) continue;
    for (let n = 1; await exists(recordingPartPath(path, n)); n++) files.push(recordingPartPath(path, n));
  }
  return [...new Set(files)];
}

/** Messages in the files (lines minus one header each), counted without parsing: the total of a progress bar. */
export async function countRecordedMessages(files: readonly string[]): Promise<number> {
  let lines = 0;
  for (const file of files) {
    let last = 0x0a;
    for await (const chunk of await openRaw(file)) {
      const buffer = chunk as Buffer;
      for (let i = buffer.indexOf(0x0a); i !== -1; i = buffer.indexOf(0x0a, i + 1)) lines++;
      if (buffer.length > 0) last = buffer[buffer.length - 1] as number;
    }
    if (last !== 0x0a) lines++; // a last line without its newline
    lines--; // the header
  }
  return Math.max(0, lines);
}

/** The file's bytes, gunzipped when it starts with the gzip magic bytes (1f 8b). */
async function openRaw(file: string): Promise<Readable> {
  const handle = await open(file, 'r');
  const magic = Buffer.alloc(2);
  const { bytesRead } = await handle.read(magic, 0, 2, 0);
  await handle.close();
  const raw = createReadStream(file);
  if (bytesRead < 2 || magic[0] !== 0x1f || magic[1] !== 0x8b) return raw;
  const gunzip = createGunzip();
  // pipeline() passes a read error on to gunzip, whose iteration then throws it.
  pipeline(raw, gunzip, () => undefined);
  return gunzip;
}

/**
 * Reads recorded messages back in order: from a file, a list of files, or the first part of a
 * rotated set (see resolveRecordingFiles); gzip is detected by its magic bytes. A line that is not
 * a recorded message stops the reading with CodedError E_BAD_REQUEST naming the file and line.
 */
export async function* readRecording(paths: string | readonly string[]): AsyncGenerator<RecordedMessage, void, undefined> {
  for (const file of await resolveRecordingFiles(paths)) yield* readFile(file);
}

async function* readFile(file: string): AsyncGenerator<RecordedMessage, void, undefined> {
  const input = await openRaw(file);
  let lineNo = 0;
  let rest: Buffer | undefined;
  const parse = (bytes: Buffer): RecordedMessage | undefined => {
    lineNo++;
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      throw badLine(file, lineNo, 'is not valid UTF-8');
    }
    if (lineNo === 1) {
      checkHeader(text, file);
      return undefined;
    }
    return text.trim() === '' ? undefined : parseMessageLine(text, file, lineNo);
  };
  try {
    for await (const chunk of input) {
      const buffer = chunk as Buffer;
      let start = 0;
      for (let end = buffer.indexOf(0x0a); end !== -1; end = buffer.indexOf(0x0a, start)) {
        const piece = buffer.subarray(start, end);
        const message = parse(rest ? Buffer.concat([rest, piece]) : piece);
        rest = undefined;
        start = end + 1;
        if (message) yield message;
      }
      if (start < buffer.length) rest = rest ? Buffer.concat([rest, buffer.subarray(start)]) : Buffer.from(buffer.subarray(start));
    }
  } catch (err) {
    if (err instanceof CodedError) throw err;
    throw new CodedError('E_BAD_REQUEST', `recording ${file}: cannot be read after line ${lineNo} (${(err as Error).message}); a gzip file cut short means the recorder was stopped without closing it`, { cause: err });
  } finally {
    input.destroy();
  }
  if (rest && rest.length > 0) {
    const message = parse(rest);
    if (message) yield message;
  }
  if (lineNo === 0) throw badLine(file, 1, `is missing: the file is empty, not a ${RECORDING_FORMAT}`);
}

function badLine(file: string, lineNo: number, problem: string): CodedError {
  return new CodedError('E_BAD_REQUEST', `recording ${file} line ${lineNo} ${problem}`);
}

function checkHeader(text: string, file: string): void {
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch {
    header = undefined;
  }
  const h = header as { format?: unknown; version?: unknown } | undefined;
  if (typeof h !== 'object' || h === null || h.format !== RECORDING_FORMAT) {
    throw badLine(file, 1, `is not a ${RECORDING_FORMAT} header ({"format":"${RECORDING_FORMAT}","version":${RECORDING_VERSION},…}); is this a recording?`);
  }
  if (h.version !== RECORDING_VERSION) throw badLine(file, 1, `has format version ${JSON.stringify(h.version)}; this reader knows version ${RECORDING_VERSION}`);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function parseMessageLine(text: string, file: string, lineNo: number): RecordedMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw badLine(file, lineNo, `is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badLine(file, lineNo, 'is not a JSON object');
  const m = value as Record<string, unknown>;
  if (typeof m.at !== 'number' || !Number.isFinite(m.at)) throw badLine(file, lineNo, '"at" must be epoch milliseconds');
  if (typeof m.topic !== 'string' || m.topic === '') throw badLine(file, lineNo, '"topic" must be a non-empty string');
  if (m.qos !== 0 && m.qos !== 1 && m.qos !== 2) throw badLine(file, lineNo, '"qos" must be 0, 1 or 2');
  if (typeof m.retain !== 'boolean') throw badLine(file, lineNo, '"retain" must be true or false');
  let payload: string | Buffer;
  if (typeof m.payload === 'string' && m.payloadBase64 === undefined) payload = m.payload;
  else if (typeof m.payloadBase64 === 'string' && m.payload === undefined && BASE64.test(m.payloadBase64)) payload = Buffer.from(m.payloadBase64, 'base64');
  else throw badLine(file, lineNo, 'needs either "payload" (a string) or "payloadBase64" (base64)');
  return { at: m.at, topic: m.topic, qos: m.qos, retain: m.retain, payload };
}

/** Knobs of the broker recorder (units in the names). */
export const BROKER_RECORDING_DEFAULTS = {
  filters: ['city/#'] as readonly string[],
  connectTimeoutMs: 10_000,
  reconnectPeriodMs: 1000,
} as const;

export interface BrokerRecordingOptions {
  readonly mqttUrl: string;
  /** A `tools` service account: it may subscribe to city/#. */
  readonly username: string;
  readonly password: string;
  readonly recorder: Recorder;
  /** Topic filters, subscribed at QoS 1 (default city/#). */
  readonly filters?: readonly string[];
  /** Also record the retained messages the broker sends on subscribing (default false: only live traffic). */
  readonly includeRetained?: boolean;
  readonly clientId?: string;
  readonly logger?: Logger;
  /** Receive time, epoch ms (default Date.now). */
  readonly clock?: () => number;
}

export interface BrokerRecordingStats {
  readonly received: number;
  readonly recorded: number;
  /** Retained messages replayed by the broker at subscribe time and left out. */
  readonly retainedSkipped: number;
  readonly errors: number;
}

export interface BrokerRecording {
  readonly client: MqttClient;
  stats(): BrokerRecordingStats;
  /** Unsubscribes and disconnects; the recorder stays open (its owner closes it). */
  stop(): Promise<void>;
}

/**
 * Subscribes to the broker and writes every message it receives to `recorder` (at = receive time).
 * Resolves once the subscriptions are granted; a refused filter is E_ACL_SUBSCRIBE.
 */
export async function recordBroker(options: BrokerRecordingOptions): Promise<BrokerRecording> {
  const logger = (options.logger ?? pino({ enabled: false })).child({ component: 'record' });
  const filters = options.filters ?? BROKER_RECORDING_DEFAULTS.filters;
  const clock = options.clock ?? Date.now;
  const counters = { received: 0, recorded: 0, retainedSkipped: 0, errors: 0 };
  const client = connect(options.mqttUrl, {
    clientId: options.clientId ?? `citypulse-record-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    username: options.username,
    password: options.password,
    clean: true,
    protocolVersion: 4,
    reconnectPeriod: BROKER_RECORDING_DEFAULTS.reconnectPeriodMs,
    connectTimeout: BROKER_RECORDING_DEFAULTS.connectTimeoutMs,
  });
  let failed = false;
  client.on('message', (topic, payload, packet) => {
    counters.received++;
    // Live messages arrive with retain 0 [MQTT-3.3.1-9]; retain 1 means a stored message sent on subscribing.
    if (packet.retain && !options.includeRetained) {
      counters.retainedSkipped++;
      return;
    }
    if (failed) return;
    try {
      options.recorder.write({ at: clock(), topic, qos: packet.qos, retain: packet.retain, payload });
      counters.recorded++;
    } catch (err) {
      failed = true;
      counters.errors++;
      logger.error({ err }, 'recording failed; messages are no longer recorded');
    }
  });
  try {
    await waitForConnect(client);
    const granted = await client.subscribeAsync([...filters], { qos: 1 });
    const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
    if (refused.length > 0) throw new CodedError('E_ACL_SUBSCRIBE', `the broker refused the subscription to ${refused.join(', ')} for ${options.username}; use a tools account and filters under city/#`);
  } catch (err) {
    client.end(true);
    throw err;
  }
  client.on('error', (err) => logger.warn({ err }, 'MQTT error'));
  // A clean session loses the subscription on reconnect; MQTT.js subscribes again (resubscribe).
  client.on('reconnect', () => logger.info('reconnecting to the broker'));
  logger.info({ filters }, 'recording');
  return {
    client,
    stats: () => ({ ...counters }),
    stop: async () => {
      await client.endAsync();
    },
  };
}

/** Resolves on CONNACK; a refused login, an unreachable broker or a timeout rejects with a coded error and the client ended. */
export async function waitForConnect(client: MqttClient, timeoutMs: number = BROKER_RECORDING_DEFAULTS.connectTimeoutMs): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const settle = (err?: CodedError) => {
      clearTimeout(timer);
      client.off('connect', onConnect);
      client.off('error', onError);
      if (!err) return resolve();
      client.end(true);
      reject(err);
    };
    const onError = (err: Error & { code?: unknown }) => {
      const refusedLogin = err.code === 4 || err.code === 5 || err.code === 134 || err.code === 135;
      settle(new CodedError(refusedLogin ? 'E_AUTH' : 'E_UPSTREAM', refusedLogin ? `the broker refused the login (${err.message}); check the username and password of the tools account` : `cannot reach the broker: ${err.message}`, { cause: err }));
    };
    const onConnect = () => settle();
    const timer = setTimeout(() => settle(new CodedError('E_UPSTREAM', `no answer from the broker within ${timeoutMs / 1000} s`)), timeoutMs);
    client.on('error', onError);
    client.once('connect', onConnect);
  });
}
