import type { FieldValue } from '@citypulse/contracts';

/**
 * InfluxDB line protocol, written the way InfluxDB 1.x parses it (checked against Debian's 1.6.7):
 *
 *   measurement[,tagKey=tagValue…] fieldKey=fieldValue[,…] timestamp
 *
 * - Tag keys, tag values and field keys: `,`, `=` and space are escaped with a backslash. Any other
 *   backslash is kept as it is, so `a\,b` is written `a\\,b` and reads back exactly.
 * - Measurement: `,` and space are escaped (1.x would keep a `\=` literally).
 * - String field values: inside double quotes, `"` and `\` are escaped; line breaks may stay.
 *
 * Three things cannot be written in a 1.x tag or key at all: an empty value, a line break (it ends
 * the line), and a trailing backslash (the parser takes the separator after it for an escaped
 * character). Tags carry text from the outside (a dead-letter record's device id comes from a
 * malformed topic), and one bad line must not fail a whole batch, so escapeTag never throws: it
 * writes `-` for an empty value, a space for each line break and `＼` (U+FF3C) for a trailing
 * backslash. Those are the only inputs that do not read back exactly. Measurement names are the
 * program's own constants: escapeMeasurement throws on what it cannot write.
 */

const TAG_SPECIAL = /[,= \\\n\r]/;
const TAG_ESCAPE = /[,= ]/g;
const LINE_BREAKS = /\r\n|[\n\r]/g;
const MEASUREMENT_SPECIAL = /[, \\\n\r]/;
const MEASUREMENT_ESCAPE = /[, ]/g;
const STRING_SPECIAL = /["\\]/;
const STRING_ESCAPE = /["\\]/g;

/** Written for an empty tag value, which line protocol cannot carry. */
export const EMPTY_TAG_VALUE = '-';

/**
 * Escapes a tag key, tag value or field key. Total: see the module comment for the three inputs
 * 1.x cannot carry and what is written instead.
 */
export function escapeTag(value: string): string {
  if (value.length === 0) return EMPTY_TAG_VALUE;
  if (!TAG_SPECIAL.test(value)) return value;
  let text = value.replace(LINE_BREAKS, ' ');
  if (text.endsWith('\\')) text = `${text.slice(0, -1)}\uFF3C`;
  return text.replace(TAG_ESCAPE, '\\$&');
}

/** Field keys follow the tag rules. */
export const escapeFieldKey = escapeTag;

/**
 * A string field value as written, surrounding double quotes included: `say "hi"` → `"say \"hi\""`.
 * Keep values under 64 KiB, the largest string InfluxDB 1.x stores.
 */
export function escapeStringField(value: string): string {
  return `"${STRING_SPECIAL.test(value) ? value.replace(STRING_ESCAPE, '\\$&') : value}"`;
}

/** Escapes a measurement name; throws RangeError on a name 1.x cannot write (a program error). */
export function escapeMeasurement(name: string): string {
  if (name.length === 0) throw new RangeError('line protocol: a measurement name may not be empty');
  if (name.startsWith('#')) throw new RangeError(`line protocol: measurement "${clip(name)}" starts with '#', which makes the line a comment`);
  if (!MEASUREMENT_SPECIAL.test(name)) return name;
  if (/[\n\r]/.test(name) || name.endsWith('\\')) throw new RangeError(`line protocol: measurement "${clip(name)}" holds a line break or ends with a backslash`);
  return name.replace(MEASUREMENT_ESCAPE, '\\$&');
}

/**
 * A field value as written: numbers as floats (no `i` suffix: the project stores every number as a
 * float, so a whole number never conflicts with a fraction), booleans as true/false, strings quoted.
 * Throws RangeError on a non-finite number, which InfluxDB cannot store.
 */
export function formatFieldValue(value: FieldValue): string {
  if (typeof value === 'string') return escapeStringField(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (!Number.isFinite(value)) throw new RangeError(`line protocol: ${value} cannot be stored (InfluxDB keeps finite numbers only)`);
  return String(value);
}

/**
 * One point as a line. Tags and fields whose value is undefined are left out (optional values); at
 * least one field must remain. `timestampMs` is epoch milliseconds: write with precision=ms. Pass
 * tags sorted by key, as InfluxDB recommends. Throws RangeError on what cannot be a point at all
 * (no field, `time` as a key, a non-integer timestamp, a non-finite number).
 */
export function formatLine(
  measurement: string,
  tags: Readonly<Record<string, string | undefined>>,
  fields: Readonly<Record<string, FieldValue | undefined>>,
  timestampMs: number,
): string {
  if (!Number.isSafeInteger(timestampMs)) throw new RangeError(`line protocol: timestamp ${timestampMs} is not an integer number of milliseconds`);
  let line = escapeMeasurement(measurement);
  for (const key in tags) {
    const value = tags[key];
    if (value === undefined) continue;
    // 1.x refuses the point ("invalid tag key"/"invalid field name"): fail here, where the cause is.
    if (key === 'time') throw new RangeError('line protocol: "time" cannot be a tag key');
    line += `,${escapeTag(key)}=${escapeTag(value)}`;
  }
  let separator = ' ';
  for (const key in fields) {
    const value = fields[key];
    if (value === undefined) continue;
    if (key === 'time') throw new RangeError('line protocol: "time" cannot be a field key');
    line += `${separator}${escapeFieldKey(key)}=${formatFieldValue(value)}`;
    separator = ',';
  }
  if (separator === ' ') throw new RangeError(`line protocol: a point of ${clip(measurement)} needs at least one field`);
  return `${line} ${timestampMs}`;
}

function clip(text: string, max = 48): string {
  const flat = JSON.stringify(text).slice(1, -1);
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
