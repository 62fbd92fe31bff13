/**
 * Local time for the models. Vietnam has one time zone, Asia/Ho_Chi_Minh, UTC+7 with no daylight
 * saving, so shifting the epoch by 7 h and reading the UTC fields is exact (and needs no ICU data).
 */
export const VN_UTC_OFFSET_MS = 7 * 3_600_000;

export interface LocalTime {
  /** Fractional hour of the local day, 0 ≤ hour < 24. */
  readonly hour: number;
  /** 0 = Sunday … 6 = Saturday. */
  readonly weekday: number;
  /** 1 = January … 12 = December. */
  readonly month: number;
  /** Fractional month position, 0 = 1 January … 12 = 31 December at midnight, for smooth seasons. */
  readonly monthPosition: number;
}

export function localTime(utcMs: number): LocalTime {
  const local = new Date(utcMs + VN_UTC_OFFSET_MS);
  const hour = local.getUTCHours() + local.getUTCMinutes() / 60 + local.getUTCSeconds() / 3600;
  const year = local.getUTCFullYear();
  const month = local.getUTCMonth();
  const daysInMonth = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  const dayFraction = (local.getUTCDate() - 1 + hour / 24) / daysInMonth;
  return { hour, weekday: local.getUTCDay(), month: month + 1, monthPosition: month + dayFraction };
}

export function isWeekend(time: LocalTime): boolean {
  return time.weekday === 0 || time.weekday === 6;
}

/** Epoch ms of a local (UTC+7) wall-clock time; handy in tests and examples. */
export function vnLocalMs(year: number, month: number, day: number, hour = 0, minute = 0): number {
  return Date.UTC(year, month - 1, day, hour, minute) - VN_UTC_OFFSET_MS;
}
