import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { CodedError, type Domain, type LiveFrame, type LiveReading, type ReplayState } from '@citypulse/contracts';
import { provincesRegex } from '@citypulse/ingest/storage';
import { quoteIdentifier, type Influx } from '@citypulse/infra';
import { readingFromRow } from './live.js';

/** Replay knobs (units in the names). */
export const REPLAY_DEFAULTS = {
  /** Longest range one replay covers. */
  maxRangeMs: 31 * 86_400_000,
  /** Replays running at once on one api node. */
  maxSessions: 16,
  /** Rows one read takes per domain at most: a chunk ends where a domain reached it. */
  chunkRows: 20_000,
  /** Readings held ahead of the clock at most (memory bound: a dense fleet at 60x plays as fast as this allows, the clock waits). */
  maxBufferedReadings: 60_000,
  /** Keep this much wall time of replay read ahead of the clock. */
  aheadWallMs: 4000,
  /** A chunk covers at least this much device time. */
  minChunkMs: 60_000,
  /** A seek shows each device's latest reading from at most this long before the new clock. */
  seekLookbackMs: 15 * 60_000,
  /** A failed read is tried this many times (a second apart) before the replay stops with E_UPSTREAM. */
  readAttempts: 3,
} as const;

export interface ReplaySink {
  /** Readings that the clock passed, coalesced per device, one frame per province and domain. */
  frame(frame: LiveFrame): void;
  /** The state at the clock after a start or seek, one per province and domain. */
  snapshot(frame: LiveFrame): void;
  state(state: ReplayState): void;
}

export interface ReplayRange {
  readonly from: number;
  readonly to: number;
  readonly speed: number;
  readonly provinces: readonly string[];
  readonly domains: readonly Domain[];
}

/**
 * One operator's replay: plays stored readings of a time range through the live frame format at
 * 1–60× device time, with pause, seek and speed changes. Reads InfluxDB in chunks a few seconds
 * of wall time ahead of the clock (never the whole range), bounded in rows, so a replay of a busy
 * month holds seconds of it in memory. The clock never runs past what has been read: when
 * InfluxDB is slower than the replay, the state is `buffering` and the clock waits.
 */
export class ReplaySession {
  /** Random: another screen (on any api node) names the session by it in a replayControl. */
  readonly id = randomUUID();
  readonly #influx: Influx;
  readonly #sink: ReplaySink;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #range: ReplayRange;
  #speed: number;
  #state: ReplayState['state'] = 'paused';
  #clock: number;
  /** Wall time the clock was last moved. */
  #wallAt: number;
  /** Readings read and not yet played, in time order, and how far (device time, exclusive) they reach. */
  #buffer: LiveReading[] = [];
  #cursor = 0;
  #loadedTo: number;
  #loading: Promise<void> | undefined;
  /** Bumped by every seek and stop: a read started before it is thrown away. */
  #generation = 0;
  /** A seek is reading its snapshot: the clock holds and nothing is read ahead until it is sent. */
  #seeking = false;
  #error: ReplayState['error'];

  constructor(influx: Influx, sink: ReplaySink, range: ReplayRange, logger: Logger, now: () => number = Date.now) {
    this.#influx = influx;
    this.#sink = sink;
    this.#logger = logger;
    this.#now = now;
    this.#range = range;
    this.#speed = range.speed;
    this.#clock = range.from;
    this.#loadedTo = range.from;
    this.#wallAt = now();
  }

  state(): ReplayState {
    const { from, to, provinces, domains } = this.#range;
    const state: ReplayState = { state: this.#state, from, to, speed: this.#speed, clock: this.#clock, provinces, domains, replayId: this.id };
    return this.#error ? { ...state, error: this.#error } : state;
  }

  get stopped(): boolean {
    return this.#state === 'stopped';
  }

  /** Shows the state at `from` and starts playing. */
  async start(): Promise<ReplayState> {
    const generation = this.#generation + 1; // the seek's
    await this.seek(this.#range.from);
    // Stopped (InfluxDB failed, a new replay, the socket left) or sought again meanwhile: leave it so.
    if (this.#state !== 'stopped' && generation === this.#generation) this.#setState('playing');
    return this.state();
  }

  pause(): ReplayState {
    if (this.#state === 'playing' || this.#state === 'buffering') {
      this.#play(); // what the clock passed until now is still drawn
      this.#setState('paused');
    }
    return this.state();
  }

  resume(): ReplayState {
    if (this.#state === 'paused') {
      this.#wallAt = this.#now();
      this.#setState('playing');
    }
    return this.state();
  }

  setSpeed(speed: number): ReplayState {
    if (this.#state === 'playing' || this.#state === 'buffering') this.#play(); // the time played so far at the old speed
    this.#wallAt = this.#now();
    this.#speed = speed;
    this.#emitState();
    return this.state();
  }

  /** Moves the clock to `at` (within the range): the map shows each device's reading as of then. */
  async seek(at: number): Promise<ReplayState> {
    if (this.#state === 'stopped') return this.state();
    const { from, to } = this.#range;
    if (!Number.isFinite(at) || at < from || at > to) throw new CodedError('E_BAD_REQUEST', `seek time must be within the replay, ${new Date(from).toISOString()} … ${new Date(to).toISOString()}`);
    const generation = ++this.#generation;
    this.#clock = at;
    this.#wallAt = this.#now();
    this.#buffer = [];
    this.#cursor = 0;
    this.#loadedTo = at;
    this.#loading = undefined;
    this.#seeking = true;
    if (this.#state === 'ended') this.#state = 'paused';
    const snapshot = await this.#retry(() => this.#readSnapshot(at));
    if (generation !== this.#generation || snapshot === undefined) return this.state();
    this.#seeking = false;
    const sentAt = this.#now();
    for (const frame of groupFrames(snapshot, this.#range, sentAt, at, true)) this.#sink.snapshot(frame);
    this.#wallAt = this.#now(); // reading the snapshot took time the replay did not play
    this.#emitState();
    this.#readAhead();
    return this.state();
  }

  stop(): void {
    if (this.#state === 'stopped') return;
    this.#generation++;
    this.#buffer = [];
    this.#setState('stopped');
  }

  /** Moves the clock by the wall time since the last tick and sends what it passed. Called every frame interval. */
  tick(): void {
    if ((this.#state !== 'playing' && this.#state !== 'buffering') || this.#seeking) return;
    this.#play();
    if (this.#clock >= this.#range.to) this.#setState('ended');
    else this.#emitState();
    this.#readAhead();
  }

  /** Moves the clock to now and sends the readings it passed as frames. */
  #play(): void {
    const passed = this.#advance();
    if (passed.length > 0) for (const frame of groupFrames(passed, this.#range, this.#now(), this.#clock, false)) this.#sink.frame(frame);
  }

  /** Advances the clock to now (at the speed, up to what is read and to `to`) and takes the readings it passed. */
  #advance(): LiveReading[] {
    const now = this.#now();
    let target = Math.min(this.#range.to, this.#clock + (now - this.#wallAt) * this.#speed);
    this.#wallAt = now;
    if (target > this.#loadedTo && this.#loadedTo < this.#range.to) {
      target = Math.max(this.#clock, this.#loadedTo);
      if (this.#state === 'playing') this.#state = 'buffering';
    } else if (this.#state === 'buffering') {
      this.#state = 'playing';
    }
    this.#clock = target;
    const start = this.#cursor;
    while (this.#cursor < this.#buffer.length && (this.#buffer[this.#cursor] as LiveReading).ts <= target) this.#cursor++;
    const passed = this.#buffer.slice(start, this.#cursor);
    if (this.#cursor > 10_000) {
      this.#buffer = this.#buffer.slice(this.#cursor);
      this.#cursor = 0;
    }
    return passed;
  }

  /** Starts the next read when less than aheadWallMs of replay is buffered. */
  #readAhead(): void {
    if (this.#loading || this.#seeking || this.#state === 'stopped' || this.#loadedTo >= this.#range.to) return;
    if (this.#loadedTo - this.#clock > REPLAY_DEFAULTS.aheadWallMs * this.#speed) return;
    if (this.#buffer.length - this.#cursor >= REPLAY_DEFAULTS.maxBufferedReadings) return;
    const generation = this.#generation;
    const from = this.#loadedTo;
    const to = Math.min(this.#range.to, from + Math.max(REPLAY_DEFAULTS.minChunkMs, 2 * REPLAY_DEFAULTS.aheadWallMs * this.#speed));
    this.#loading = this.#retry(() => this.#readChunk(from, to)).then((chunk) => {
      if (generation !== this.#generation || chunk === undefined) return;
      this.#loading = undefined;
      this.#buffer = this.#buffer.slice(this.#cursor).concat(chunk.readings);
      this.#cursor = 0;
      this.#loadedTo = chunk.to;
      this.#readAhead();
    });
  }

  /** Readings of [from, to) in time order; `to` is cut short where a domain filled its row limit. */
  async #readChunk(from: number, to: number): Promise<{ readings: LiveReading[]; to: number }> {
    const params = { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
    const results = await Promise.all(
      this.#range.domains.map(async (domain) => {
        const [series = []] = await this.#influx.query(`SELECT * FROM ${this.#measurement(domain)} WHERE time >= $from AND time < $to AND "province" =~ ${provincesRegex(this.#range.provinces)} ORDER BY time ASC LIMIT ${REPLAY_DEFAULTS.chunkRows}`, params);
        const rows = series.flatMap((s) => s.values);
        const readings = series.flatMap((s) => s.values.map((row) => readingFromRow(domain, s.columns, row)));
        // Where this domain's rows stop, if it filled the limit (a row that did not parse still counts).
        const lastTs = rows.length >= REPLAY_DEFAULTS.chunkRows ? (rows[rows.length - 1]?.[0] as number | undefined) : undefined;
        return { readings: readings.filter((r): r is LiveReading => r !== undefined), lastTs };
      }),
    );
    // A domain that filled its limit may have more rows at its last instant: the chunk ends before it.
    let end = to;
    for (const r of results) if (typeof r.lastTs === 'number') end = Math.min(end, r.lastTs);
    if (end <= from) end = from + 1; // one instant with more rows than the limit: take what was read
    const readings = results.flatMap((r) => r.readings).filter((r) => r.ts < end);
    readings.sort((a, b) => a.ts - b.ts);
    return { readings, to: end };
  }

  /** Each device's latest reading in the lookback before `at`. */
  async #readSnapshot(at: number): Promise<LiveReading[]> {
    const params = { from: new Date(Math.max(0, at - REPLAY_DEFAULTS.seekLookbackMs)).toISOString(), at: new Date(at).toISOString() };
    const out: LiveReading[] = [];
    for (const domain of this.#range.domains) {
      const [series = []] = await this.#influx.query(
        `SELECT * FROM ${this.#measurement(domain)} WHERE time > $from AND time <= $at AND "province" =~ ${provincesRegex(this.#range.provinces)} GROUP BY "device" ORDER BY time DESC LIMIT 1`,
        params,
      );
      for (const s of series) {
        const row = s.values[0];
        const reading = row && readingFromRow(domain, s.columns, row, s.tags?.device);
        if (reading) out.push(reading);
      }
    }
    return out;
  }

  #measurement(domain: Domain): string {
    return `${quoteIdentifier(this.#influx.settings.database)}.${quoteIdentifier(this.#influx.settings.retentionPolicy)}.${quoteIdentifier(domain)}`;
  }

  /** Runs a read, retrying a failure; after the last attempt the replay stops with E_UPSTREAM. */
  async #retry<T>(read: () => Promise<T>): Promise<T | undefined> {
    const generation = this.#generation;
    for (let attempt = 1; ; attempt++) {
      try {
        return await read();
      } catch (err) {
        if (generation !== this.#generation) return undefined;
        if (attempt >= REPLAY_DEFAULTS.readAttempts) {
          this.#logger.warn({ err }, 'replay: InfluxDB read failed; replay stopped');
          this.#error = { code: 'E_UPSTREAM', message: 'InfluxDB did not answer the replay read; start the replay again shortly' };
          this.stop();
          return undefined;
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  #setState(state: ReplayState['state']): void {
    this.#state = state;
    this.#emitState();
  }

  #emitState(): void {
    this.#sink.state(this.state());
  }
}

/** Readings as frames, one per province and domain of the replay (all of them for a snapshot, so a screen can clear the rest). */
function groupFrames(readings: readonly LiveReading[], range: ReplayRange, sentAt: number, clock: number, all: boolean): LiveFrame[] {
  const byRoom = new Map<string, Map<string, LiveReading>>();
  if (all) for (const province of range.provinces) for (const domain of range.domains) byRoom.set(`${province}/${domain}`, new Map<string, LiveReading>());
  for (const reading of readings) {
    const key = `${reading.province}/${reading.domain}`;
    let devices = byRoom.get(key);
    if (!devices) byRoom.set(key, (devices = new Map<string, LiveReading>()));
    devices.set(reading.deviceId, reading); // later readings of a device replace earlier ones
  }
  const frames: LiveFrame[] = [];
  for (const [key, devices] of byRoom) {
    const [province = '', domain = 'traffic'] = key.split('/') as [string, Domain];
    frames.push({ province, domain, mode: 'replay', sentAt, clock, readings: [...devices.values()] });
  }
  return frames;
}
