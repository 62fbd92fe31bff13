import type { FieldValue } from '@citypulse/contracts';

/**
 * InfluxDB line protocol, written the way InfluxDB 1.x parses it (checked against Debian's 1.6.7):
 *
 *   measurement[,tagKey=tagValue…] fieldKey=fieldValue[,…] timestamp
 *
 * - Measurement, tag keys and tag values: a separator (`,` and space, for tags also `=`) preceded
 *   by a backslash is part of the text and is unescaped; any other backslash stays as it is. So
 *   `a\,b` is written `a\\,b` and reads back exactly.
 * - Field keys: `,`, `=`, space and `"` are escaped, but the fields are split by a scanner that
 *   takes every backslash with the character after it, so a key cannot have an odd run of
 *   backslashes right before a comma, an equals sign or a space.
 * - String field values: inside double quotes, `"` and `\` are escaped; line breaks may stay.
 *
 * Some text cannot be written at all: an empty tag value, a line break in a name, key or tag (it
 * ends the line), a trailing backslash (it escapes the separator after it), and the field-key case
 * above. Tags carry text from the outside (a dead-letter record's device id comes from a malformed
 * topic), and one bad line must not fail a whole batch, so escapeTag and escapeFieldKey never
 * throw: they write `-` for an empty value, a space for a line break and `\uFF3C` (＼, fullwidth
 * reverse solidus) for the offending backslash. Those are the only inputs that do not read back
 * exactly. Measurement names are the program's own constants: escapeMeasurement throws instead.
 */

const TAG_SPECIAL = /[,= \\\n\r]/;
const TAG_ESCAPE = /[,= ]/g;
const FIELD_KEY_SPECIAL = /[,= "\\\n\r]/;
const FIELD_KEY_ESCAPE = /[,= "]/g;
/** A run of backslashes before a comma, equals sign or space, or at the end. */
const FIELD_KEY_BACKSLASHES = /\\+(?=[,= ]|$)/g;
const LINE_BREAKS = /\r\n|[\n\r]/g;
const MEASUREMENT_SPECIAL = /[, \\\n\r]/;
const MEASUREMENT_ESCAPE = /[, ]/g;
const STRING_SPECIAL = /["\\]/;
const STRING_ESCAPE = /["\\]/g;
const FULLWIDTH_BACKSLASH = '\uFF3C';

/** Written for an empty tag value, which line protocol cannot carry. */
export const EMPTY_TAG_VALUE = '-';

/**
 * Escapes a tag key or tag value. Total: see the module comment for what 1.x cannot carry and
 * what is written instead.
 */
export function escapeTag(value: string): string {
  if (value.length === 0) return EMPTY_TAG_VALUE;
  if (!TAG_SPECIAL.test(value)) return value;
  let text = value.replace(LINE_BREAKS, ' ');
  if (text.endsWith('\\')) text = `${text.slice(0, -1)}${FULLWIDTH_BACKSLASH}`;
  return text.replace(TAG_ESCAPE, '\\$&');
}

/** Escapes a field key. Total, like escapeTag (field names from the schemas never need it). */
export function escapeFieldKey(key: string): string {
  if (key.length === 0) return EMPTY_TAG_VALUE;
  if (!FIELD_KEY_SPECIAL.test(key)) return key;
  const text = key
    .replace(LINE_BREAKS, ' ')
    .replace(FIELD_KEY_BACKSLASHES, (run: string, offset: number, whole: string) =>
      offset + run.length === whole.length || run.length % 2 === 1 ? `${run.slice(0, -1)}${FULLWIDTH_BACKSLASH}` : run,
    );
  return text.replace(FIELD_KEY_ESCAPE, '\\$&');
}

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
