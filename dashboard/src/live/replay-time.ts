import { REPLAY_SPEEDS } from '@citypulse/contracts';

/**
 * Replay times as operators type and read them: Vietnam time (UTC+7), whatever zone the browser
 * is in. Plain offset arithmetic rather than Date's local getters, because the wall screen's OS zone
 * is not the operators' zone. Pure (no DOM), unit-tested in Node.
 */

/** Vietnam's offset from UTC; no daylight saving, so it is constant. */
export const VN_OFFSET_MS = 7 * 3_600_000;

/** Longest range the api replays (REPLAY_DEFAULTS.maxRangeMs in api/src/replay.ts). */
export const REPLAY_MAX_RANGE_MS = 31 * 86_400_000;

/** How far past now "to" may be before the api refuses it (it allows 60 s of clock skew). */
const FUTURE_TOLERANCE_MS = 60_000;

/** Speeds offered, within the contract's bounds. */
export const REPLAY_SPEED_CHOICES: readonly number[] = [1, 2, 5, 10, 30, 60].filter((s) => s >= REPLAY_SPEEDS.min && s <= REPLAY_SPEEDS.max);

/** Quick ranges, ending now. */
export const REPLAY_PRESETS = { '15m': 15 * 60_000, '1h': 3_600_000, '6h': 6 * 3_600_000, '24h': 24 * 3_600_000 } as const;
export type ReplayPreset = keyof typeof REPLAY_PRESETS;

/** "Replay from this alert": this long before the alert … */
export const JUMP_BEFORE_MS = 10 * 60_000;
/** … to this long after it (never past now). */
export const JUMP_AFTER_MS = 20 * 60_000;

export interface TimeRange {
  /** Epoch ms, whole seconds (what a datetime-local input with step=1 round-trips). */
  readonly from: number;
  readonly to: number;
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** `YYYY-MM-DDTHH:mm:ss` in Vietnam time: the value of an `<input type="datetime-local" step="1">`. */
export function toVnInputValue(ms: number): string {
  const d = new Date(ms + VN_OFFSET_MS);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

const INPUT_VALUE = /^(\d{4,6})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/;

/**
 * Epoch ms of a datetime-local value read as Vietnam time, or null when it is empty or not a real
 * date (browsers drop ":00" seconds, so both forms are accepted).
 */
export function fromVnInputValue(value: string): number | null {
  const m = INPUT_VALUE.exec(value.trim());
  if (!m) return null;
  const [, y, mo, d, hh, mi, ss = '0', frac = ''] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(hh);
  const minute = Number(mi);
  const second = Number(ss);
  const millis = Number(frac.padEnd(3, '0'));
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0–99 to 1900–1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, millis);
  // A day or time that rolled over (31/02, 24:00) is not a date the operator meant.
  const rolled = date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || date.getUTCHours() !== hour || date.getUTCMinutes() !== minute || date.getUTCSeconds() !== second;
  return rolled || Number.isNaN(date.getTime()) ? null : date.getTime() - VN_OFFSET_MS;
}

/** The preset's range ending now (whole seconds). */
export function presetRange(preset: ReplayPreset, now: number): TimeRange {
  const to = floorSecond(now);
  return { from: to - REPLAY_PRESETS[preset], to };
}

/** The range "replay from this alert" plays: 10 min before `ts` to 20 min after, clipped to now. */
export function jumpRange(ts: number, now: number): TimeRange {
  const to = floorSecond(Math.min(ts + JUMP_AFTER_MS, now));
  // An alert stamped in the future (device clock ahead) still gets its 10 minutes before now.
  return { from: floorSecond(Math.min(ts, to) - JUMP_BEFORE_MS), to };
}

export type RangeProblem = 'missing' | 'order' | 'future' | 'too-long';

/** Why the api would refuse this range, checked before asking it; null when it is fine. */
export function checkRange(from: number | null, to: number | null, now: number): RangeProblem | null {
  if (from === null || to === null || from < 0) return 'missing';
  if (to <= from) return 'order';
  if (to > now + FUTURE_TOLERANCE_MS) return 'future';
  if (to - from > REPLAY_MAX_RANGE_MS) return 'too-long';
  return null;
}

/** The replay clock as shown: `HH:mm:ss dd/MM`, Vietnam time. */
export function formatVnClock(ms: number): string {
  const d = new Date(ms + VN_OFFSET_MS);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} ${pad(d.getUTCDate())}/${pad(d.getUTCMonth() + 1)}`;
}

/** A replay's range as shown: `HH:mm:ss–HH:mm:ss dd/MM` within one Vietnamese day, else both dates. */
export function formatVnRange(from: number, to: number): string {
  const [fromTime = '', fromDate = ''] = formatVnClock(from).split(' ');
  const [toTime = '', toDate = ''] = formatVnClock(to).split(' ');
  return fromDate === toDate ? `${fromTime}–${toTime} ${toDate}` : `${fromTime} ${fromDate} – ${toTime} ${toDate}`;
}

/** `ms` within [from, to]. */
export function clampToRange(ms: number, range: TimeRange): number {
  return Math.min(range.to, Math.max(range.from, ms));
}

function floorSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}
