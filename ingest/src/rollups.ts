import { DOMAINS, type Domain, type Fields } from '@citypulse/contracts';
import { escapeFieldKey } from './line-protocol.js';
import { ROLLUPS, rollupField, type RollupResolution } from './storage.js';

/**
 * Roll-ups computed in ingest's stream (INGEST_ROLLUPS=stream, the default): every reading ingest
 * stores also goes into its series' 1-minute window in memory (min, max, sum and count of each
 * field); a window is written to `rollup_1m` once its minute is over and `graceMs` more have
 * passed, and folded into its hour, written to `rollup_1h` once the hour's last minute is. The
 * points are the ones the continuous queries write (same measurement, tags, field names and
 * types: min_, mean_ and max_ of numbers as floats, min_ and max_ of booleans, count_ of every
 * field as an integer), for
 * about 1/60 of a write per reading instead of InfluxDB reading every raw point back once per
 * window and schedule (which the 2 cores here do at about 1,000 readings/s; see storage.ts).
 *
 * Exact, whatever the order things arrive in:
 * - A reading whose timestamp a window already holds is a redelivery (same point): not counted twice.
 * - A reading for a minute already written (late: a device's backlog, a resend after a reconnect)
 *   is not in memory any more: `add` says which roll-ups it is late for, and ingest recomputes that
 *   device's window from the raw points once the reading is stored (backfillRollups); its hour,
 *   if still open, is then recomputed from raw too instead of written from memory.
 * - A process that starts mid-way has not seen the minutes before it: the minute it starts in
 *   and the ones back to the newest roll-up the previous process wrote (`recoverFrom`) are
 *   recomputed from raw for the shard's provinces once that minute is over, and the hour it
 *   starts in is recomputed from raw at its end. Readings of those minutes are not kept in memory.
 *   A process that finds no raw reading of its shard since then (a first start) skips all that:
 *   one shard-wide recompute costs InfluxDB about as much CPU as a minute of writes at full load.
 */
export interface RollupJob {
  /** One device's series (a late reading, a dirty hour), or every device of the shard's provinces. */
  readonly device?: string;
  readonly provinces?: readonly string[];
  readonly domain: Domain;
  readonly from: number;
  readonly to: number;
  readonly resolutions: readonly RollupResolution[];
}

export interface StreamRollupsOptions {
  /** When this process started: windows before the next minute boundary are recovered from raw. */
  readonly startedAt: number;
  /**
   * Start of the first minute that may lack its roll-up (the minute after the newest one stored),
   * or undefined when the shard has no raw reading from there up to `startedAt` (a first start, or
   * one after a quiet spell): then nothing is recovered and the stream counts from the minute and
   * hour it starts in, since every reading of them reaches it.
   */
  readonly recoverFrom: number | undefined;
  /** The shard's provinces, for the recovery jobs. */
  readonly provinces: readonly string[];
  /** How long after its end a window waits for readings still on their way. */
  readonly graceMs: number;
}

export interface DueRollups {
  readonly minute: string[];
  readonly hour: string[];
  readonly jobs: RollupJob[];
}

/**
 * One field of a window: count of any; min, max and sum of a number; min and max of a boolean (as
 * 0/1: InfluxDB's min is false if any is, max true if any is, and it has no mean of booleans).
 */
interface Acc {
  min: number;
  max: number;
  sum: number;
  count: number;
  type: 'number' | 'boolean' | 'string';
}

interface Window {
  readonly prefix: string;
  readonly device: string;
  readonly domain: Domain;
  readonly fields: Map<string, Acc>;
}

interface MinuteWindow extends Window {
  /** Timestamps counted: a redelivered reading is not counted again. */
  readonly seen: Set<number>;
}

interface HourWindow extends Window {
  /** A late reading went to raw after its minute was written: recompute from raw, not from memory. */
  dirty: boolean;
}

const MINUTE = ROLLUPS['1m'].intervalMs;
const HOUR = ROLLUPS['1h'].intervalMs;

export class StreamRollups {
  readonly #options: StreamRollupsOptions;
  readonly #minutes = new Map<number, Map<string, MinuteWindow>>();
  readonly #hours = new Map<number, Map<string, HourWindow>>();
  /** Minutes before this are written (or left to a recovery job): a reading for one is late. */
  #minuteDone: number;
  #hourDone: number;
  /** Minutes from here on are counted in memory. */
  readonly #firstOwnMinute: number;
  /** Hours from here on are whole in memory; the one before (if this is not an hour boundary) is recomputed from raw. */
  readonly #firstOwnHour: number;
  #recovered = false;

  constructor(options: StreamRollupsOptions) {
    this.#options = options;
    if (options.recoverFrom === undefined) {
      this.#firstOwnMinute = Math.floor(options.startedAt / MINUTE) * MINUTE;
      this.#firstOwnHour = Math.floor(options.startedAt / HOUR) * HOUR;
      this.#minuteDone = this.#firstOwnMinute;
      this.#recovered = true;
    } else {
      this.#firstOwnMinute = Math.floor(options.startedAt / MINUTE) * MINUTE + MINUTE;
      this.#firstOwnHour = Math.ceil(this.#firstOwnMinute / HOUR) * HOUR;
      this.#minuteDone = Math.min(Math.floor(options.recoverFrom / MINUTE) * MINUTE, this.#firstOwnMinute - MINUTE);
    }
    this.#hourDone = Math.floor(this.#minuteDone / HOUR) * HOUR;
  }

  /**
   * Counts one reading of the series `prefix` (its line up to the fields: measurement and tags).
   * Returns the roll-ups it is late for, to be recomputed from raw once it is stored (usually none).
   */
  add(prefix: string, device: string, domain: Domain, ts: number, fields: Fields): RollupResolution[] {
    const minute = Math.floor(ts / MINUTE) * MINUTE;
    if (minute < this.#minuteDone) {
      const hour = Math.floor(ts / HOUR) * HOUR;
      if (hour < this.#hourDone) return ['1m', '1h'];
      if (hour >= this.#firstOwnHour) this.#hourWindow(hour, prefix, device, domain).dirty = true;
      return ['1m'];
    }
    if (minute < this.#firstOwnMinute) return []; // recovered from raw with the shard's first minute
    let windows = this.#minutes.get(minute);
    if (!windows) this.#minutes.set(minute, (windows = new Map<string, MinuteWindow>()));
    let window = windows.get(prefix);
    if (!window) windows.set(prefix, (window = { prefix, device, domain, fields: new Map(), seen: new Set() }));
    if (window.seen.has(ts)) return [];
    window.seen.add(ts);
    for (const name in fields) {
      const value = fields[name];
      if (value === undefined) continue;
      const acc = window.fields.get(name);
      if (typeof value === 'number' || typeof value === 'boolean') {
        if (typeof value === 'number' && !Number.isFinite(value)) continue; // not stored either (readingLine)
        const x = Number(value);
        if (!acc) window.fields.set(name, { min: x, max: x, sum: x, count: 1, type: typeof value === 'number' ? 'number' : 'boolean' });
        else {
          if (x < acc.min) acc.min = x;
          if (x > acc.max) acc.max = x;
          acc.sum += x;
          acc.count++;
        }
      } else if (!acc) window.fields.set(name, { min: 0, max: 0, sum: 0, count: 1, type: 'string' });
      else acc.count++;
    }
    return [];
  }

  /** The windows whose time is up at `now` (wall clock): their lines, and what to recompute from raw. */
  due(now: number): DueRollups {
    const out: DueRollups = { minute: [], hour: [], jobs: [] };
    const minuteBound = Math.floor((now - this.#options.graceMs) / MINUTE) * MINUTE; // minutes before it are over
    if (minuteBound <= this.#minuteDone) return out;
    for (const start of [...this.#minutes.keys()].sort((a, b) => a - b)) {
      if (start >= minuteBound) break;
      const windows = this.#minutes.get(start) as Map<string, MinuteWindow>;
      this.#minutes.delete(start);
      const hour = Math.floor(start / HOUR) * HOUR;
      for (const window of windows.values()) {
        out.minute.push(windowLine(window, start));
        if (hour >= this.#firstOwnHour) mergeInto(this.#hourWindow(hour, window.prefix, window.device, window.domain), window);
      }
    }
    this.#minuteDone = minuteBound;
    if (!this.#recovered && this.#minuteDone >= this.#firstOwnMinute) {
      this.#recovered = true;
      out.jobs.push(...this.#recoveryJobs());
    }
    const hourBound = Math.floor(this.#minuteDone / HOUR) * HOUR;
    for (const start of [...this.#hours.keys()].sort((a, b) => a - b)) {
      if (start >= hourBound) break;
      const windows = this.#hours.get(start) as Map<string, HourWindow>;
      this.#hours.delete(start);
      for (const window of windows.values()) {
        if (window.dirty) out.jobs.push({ device: window.device, domain: window.domain, from: start, to: start + HOUR, resolutions: ['1h'] });
        else if (window.fields.size > 0) out.hour.push(windowLine(window, start));
      }
    }
    // The hour this process started in (unless it started on its boundary): from raw, once over.
    const partialHour = this.#firstOwnHour - HOUR;
    if (this.#firstOwnHour !== Math.floor(this.#firstOwnMinute / HOUR) * HOUR && this.#hourDone <= partialHour && hourBound > partialHour) {
      out.jobs.push(...this.#shardJobs(partialHour, this.#firstOwnHour, ['1h']));
    }
    if (hourBound > this.#hourDone) this.#hourDone = hourBound;
    return out;
  }

  #recoveryJobs(): RollupJob[] {
    const from = this.#options.recoverFrom ?? this.#firstOwnMinute;
    const jobs = this.#shardJobs(Math.min(from, this.#firstOwnMinute - MINUTE), this.#firstOwnMinute, ['1m']);
    // Whole hours between the newest roll-up and the hour this process started in.
    const partialHour = Math.floor(this.#firstOwnMinute / HOUR) * HOUR;
    const fromHour = Math.floor(from / HOUR) * HOUR;
    if (fromHour < partialHour) jobs.push(...this.#shardJobs(fromHour, partialHour, ['1h']));
    return jobs;
  }

  #shardJobs(from: number, to: number, resolutions: readonly RollupResolution[]): RollupJob[] {
    return DOMAINS.map((domain) => ({ provinces: this.#options.provinces, domain, from, to, resolutions }));
  }

  #hourWindow(hour: number, prefix: string, device: string, domain: Domain): HourWindow {
    let windows = this.#hours.get(hour);
    if (!windows) this.#hours.set(hour, (windows = new Map<string, HourWindow>()));
    let window = windows.get(prefix);
    if (!window) windows.set(prefix, (window = { prefix, device, domain, fields: new Map(), dirty: false }));
    return window;
  }
}

function mergeInto(hour: HourWindow, minute: Window): void {
  for (const [name, m] of minute.fields) {
    const acc = hour.fields.get(name);
    if (!acc) hour.fields.set(name, { ...m });
    else {
      if (m.min < acc.min) acc.min = m.min;
      if (m.max > acc.max) acc.max = m.max;
      acc.sum += m.sum;
      acc.count += m.count;
    }
  }
}

/** The roll-up point of a window, as the continuous query writes it. */
function windowLine(window: Window, start: number): string {
  let line = `${window.prefix} `;
  let first = true;
  for (const [name, acc] of window.fields) {
    const sep = first ? '' : ',';
    first = false;
    if (acc.type === 'number') {
      line += `${sep}${escapeFieldKey(rollupField('min', name))}=${acc.min},${escapeFieldKey(rollupField('mean', name))}=${acc.sum / acc.count},${escapeFieldKey(rollupField('max', name))}=${acc.max},`;
    } else if (acc.type === 'boolean') {
      line += `${sep}${escapeFieldKey(rollupField('min', name))}=${acc.min === 1},${escapeFieldKey(rollupField('max', name))}=${acc.max === 1},`;
    } else line += sep;
    line += `${escapeFieldKey(rollupField('count', name))}=${acc.count}i`;
  }
  return `${line} ${start}`;
}
