/**
 * Local time for the models. Vietnam has one time zone, Asia/Ho_Chi_Minh, UTC+7 with no daylight
 * saving, so shifting the epoch by 7 h is exact (and needs no ICU data). The calendar is computed
 * with integer arithmetic instead of a `Date` per reading: the models ask for it on every reading.
 */
export const VN_UTC_OFFSET_MS = 7 * 3_600_000;
export const DAY_MS = 86_400_000;

export interface LocalTime {
  /** Fractional hour of the local day, 0 ≤ hour < 24. */
  readonly hour: number;
  /** 0 = Sunday … 6 = Saturday. */
  readonly weekday: number;
  /** 1 = January … 12 = December. */
  readonly month: number;
  /** Fractional month position, 0 = 1 January … 12 = 31 December at midnight, for smooth seasons. */
  readonly monthPosition: number;
  /** Local days since 1 January 1970: a bucket for things drawn once a day. */
  readonly day: number;
}

interface CalendarDay {
  readonly day: number;
  readonly weekday: number;
  readonly month: number;
  readonly dayOfMonth: number;
  readonly daysInMonth: number;
}

/** One-slot cache: the readings of a tick share their day, so the calendar is computed once a day. */
let lastDay: CalendarDay = calendarDay(0);

export function localTime(utcMs: number): LocalTime {
  const localMs = utcMs + VN_UTC_OFFSET_MS;
  const day = Math.floor(localMs / DAY_MS);
  if (day !== lastDay.day) lastDay = calendarDay(day);
  const cal = lastDay;
  const hour = (localMs - day * DAY_MS) / 3_600_000;
  return { hour, weekday: cal.weekday, month: cal.month, monthPosition: cal.month - 1 + (cal.dayOfMonth - 1 + hour / 24) / cal.daysInMonth, day };
}

/** Proleptic Gregorian date of a day number (Howard Hinnant's civil_from_days). */
function calendarDay(day: number): CalendarDay {
  const z = day + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const dayOfMonth = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  // 1 January 1970 was a Thursday (4).
  return { day, weekday: (((day + 4) % 7) + 7) % 7, month, dayOfMonth, daysInMonth };
}

export function isWeekend(time: LocalTime): boolean {
  return time.weekday === 0 || time.weekday === 6;
}

/** Epoch ms of a local (UTC+7) wall-clock time; handy in tests and examples. */
export function vnLocalMs(year: number, month: number, day: number, hour = 0, minute = 0): number {
  return Date.UTC(year, month - 1, day, hour, minute) - VN_UTC_OFFSET_MS;
}
