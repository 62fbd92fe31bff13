/**
 * Bulk provisioning from a CSV file: `pnpm devices import FILE.csv [--update] [--secrets-out FILE]`.
 *
 * Every row is checked before anything is written, and every problem is reported as
 * `line N: column: what is wrong`; one bad row and the registry is left as it was. The good file
 * goes in as one registry write, and the generated secrets are printed once, as CSV `id,secret`.
 */
import { open, readFile, rm } from 'node:fs/promises';
import { parse, CsvError } from 'csv-parse/sync';
import { CodedError, isDeviceId, isDomain, isProvinceCode, type DeviceProfile } from '@citypulse/contracts';
import { validateNewDevice, type DeviceRegistry, type NewDevice } from '../registry.js';

/** Columns of the import file (header row, any order). Names are matched case-insensitively. */
export const CSV_COLUMNS = {
  required: ['id', 'province', 'domain', 'lng', 'lat'],
  /** kind and name default to "default" and the id; the profile columns are for energy devices. */
  optional: ['kind', 'name', 'gateway', 'ratedPowerVA', 'nominalPhaseVoltageV'],
} as const;

type Column = (typeof CSV_COLUMNS.required)[number] | (typeof CSV_COLUMNS.optional)[number];
const ALL_COLUMNS: readonly Column[] = [...CSV_COLUMNS.required, ...CSV_COLUMNS.optional];
const PROFILE_COLUMNS = ['ratedPowerVA', 'nominalPhaseVoltageV'] as const satisfies readonly (Column & keyof DeviceProfile)[];

/** Limits on the free-text columns; kind is stored as a tag, so it stays short. */
const MAX_KIND = 64;
const MAX_NAME = 200;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
// eslint-disable-next-line no-control-regex -- the point is to find control characters
const CONTROL = /[\u0000-\u001f\u007f]/;

export interface CsvRowError {
  /** Line in the file, 1 for the header; a record spanning several lines is named by its first. */
  readonly line: number;
  readonly column: string;
  readonly message: string;
}

export interface CsvDeviceRow {
  readonly line: number;
  readonly device: NewDevice;
}

export interface ParsedDeviceCsv {
  readonly devices: readonly CsvDeviceRow[];
  readonly errors: readonly CsvRowError[];
}

export function formatCsvError(error: CsvRowError): string {
  return `line ${error.line}: ${error.column}: ${error.message}`;
}

interface ParsedRecord {
  readonly record: string[];
  readonly info: { readonly lines: number };
}

/**
 * Parses and checks an import file (UTF-8, with or without BOM, LF or CRLF, RFC 4180 quoting).
 * Checks only what the file alone can tell; see checkAgainstRegistry for the rest.
 */
export function parseDeviceCsv(text: string): ParsedDeviceCsv {
  let records: ParsedRecord[];
  try {
    // One line ending everywhere: csv-parse counts a CRLF inside a quoted field as two lines.
    records = parse(text.replace(/\r\n?/g, '\n'), { bom: true, info: true, relax_column_count: true, skip_empty_lines: true, trim: true }) as unknown as ParsedRecord[];
  } catch (err) {
    if (err instanceof CsvError) return { devices: [], errors: [{ line: typeof err.lines === 'number' ? err.lines : 1, column: 'csv', message: err.message }] };
    throw err;
  }
  const [header, ...rows] = records;
  if (!header) return { devices: [], errors: [{ line: 1, column: 'csv', message: 'the file is empty; it needs a header row and one row per device' }] };

  const errors: CsvRowError[] = [];
  const headerLine = startLine(header);
  const columns: (Column | undefined)[] = header.record.map((raw) => ALL_COLUMNS.find((c) => c.toLowerCase() === raw.toLowerCase()));
  header.record.forEach((raw, i) => {
    const column = columns[i];
    if (!column) errors.push({ line: headerLine, column: raw || `column ${i + 1}`, message: `unknown column; the columns are ${ALL_COLUMNS.join(', ')}` });
    else if (columns.indexOf(column) !== i) errors.push({ line: headerLine, column, message: 'column appears twice' });
  });
  for (const required of CSV_COLUMNS.required) {
    if (!columns.includes(required)) errors.push({ line: headerLine, column: required, message: 'required column is missing from the header' });
  }
  if (errors.length > 0) return { devices: [], errors };
  if (rows.length === 0) return { devices: [], errors: [{ line: headerLine, column: 'csv', message: 'no devices: the file has a header row only' }] };

  const devices: CsvDeviceRow[] = [];
  const firstLineOfId = new Map<string, number>();
  for (const row of rows) {
    const line = startLine(row);
    if (row.record.length !== header.record.length) {
      errors.push({ line, column: 'csv', message: `the row has ${row.record.length} field(s), the header ${header.record.length} (a comma inside a name needs "quotes")` });
      continue;
    }
    const cell = (column: Column): string => row.record[columns.indexOf(column)] ?? '';
    const before = errors.length;
    checkRow(cell, (column, message) => errors.push({ line, column, message }));
    const id = cell('id');
    const first = firstLineOfId.get(id);
    if (first !== undefined) errors.push({ line, column: 'id', message: `duplicate id "${id}": already on line ${first}` });
    else if (id) firstLineOfId.set(id, line);
    if (errors.length > before) continue;
    const device = toNewDevice(cell);
    try {
      validateNewDevice(device); // the registry's own rule, the same one upsertDevices applies
    } catch (err) {
      // Every field was checked one by one above, so what is left is where the point lies.
      errors.push({ line, column: 'lng,lat', message: err instanceof Error ? err.message : String(err) });
      continue;
    }
    devices.push({ line, device });
  }
  return { devices: errors.length > 0 ? [] : devices, errors };
}

/** The line a record starts on: csv-parse reports the line it ends on. */
function startLine(parsed: ParsedRecord): number {
  const breaks = parsed.record.reduce((n, field) => n + field.split('\n').length - 1, 0);
  return parsed.info.lines - breaks;
}

/** Reports every problem of one row's fields, each with its column. */
function checkRow(cell: (column: Column) => string, fail: (column: Column, message: string) => void): void {
  const id = cell('id');
  if (!id) fail('id', 'required');
  else if (!isDeviceId(id)) fail('id', `"${clip(id)}" must be 3–64 of a-z, 0-9, '-', '_' and start with a letter or digit`);
  const province = cell('province');
  if (!province) fail('province', 'required');
  else if (!isProvinceCode(province)) fail('province', `"${clip(province)}" is not one of the 34 province codes (01 Hà Nội, 79 Hồ Chí Minh, 48 Đà Nẵng, …; keep the leading zero)`);
  const domain = cell('domain');
  if (!domain) fail('domain', 'required');
  else if (!isDomain(domain)) fail('domain', `"${clip(domain)}" must be traffic, environment or energy`);
  for (const [column, min, max] of [['lng', -180, 180], ['lat', -90, 90]] as const) {
    const value = cell(column);
    if (!value) fail(column, 'required (decimal degrees, WGS 84)');
    else if (!DECIMAL.test(value)) fail(column, `"${clip(value)}" is not a decimal number (use a point: 105.85)`);
    else if (Number(value) < min || Number(value) > max) fail(column, `${value} is outside ${min}…${max}`);
  }
  const kind = cell('kind');
  if (kind.length > MAX_KIND || CONTROL.test(kind)) fail('kind', `at most ${MAX_KIND} characters, on one line`);
  const name = cell('name');
  if (name.length > MAX_NAME || CONTROL.test(name)) fail('name', `at most ${MAX_NAME} characters, on one line`);
  const gateway = cell('gateway');
  if (gateway && !isDeviceId(gateway)) fail('gateway', `"${clip(gateway)}" is not a service account id`);
  for (const column of PROFILE_COLUMNS) {
    const value = cell(column);
    if (!value) continue;
    if (!DECIMAL.test(value) || !(Number(value) > 0)) fail(column, `"${clip(value)}" must be a positive number`);
    else if (domain !== 'energy') fail(column, 'only energy devices have a rating');
  }
}

function toNewDevice(cell: (column: Column) => string): NewDevice {
  const profile: { -readonly [K in keyof DeviceProfile]: DeviceProfile[K] } = {};
  for (const column of PROFILE_COLUMNS) if (cell(column)) profile[column] = Number(cell(column));
  return {
    id: cell('id'),
    province: cell('province'),
    domain: cell('domain') as NewDevice['domain'],
    location: [Number(cell('lng')), Number(cell('lat'))],
    ...(cell('kind') ? { kind: cell('kind') } : {}),
    ...(cell('name') ? { name: cell('name') } : {}),
    ...(cell('gateway') ? { gateway: cell('gateway') } : {}),
    ...(Object.keys(profile).length > 0 ? { profile } : {}),
  };
}

function clip(text: string, max = 40): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** What only the registry can tell: ids taken, gateways that are not gateway accounts. */
export function checkAgainstRegistry(rows: readonly CsvDeviceRow[], registry: DeviceRegistry, options: { update: boolean }): CsvRowError[] {
  const errors: CsvRowError[] = [];
  for (const { line, device } of rows) {
    if (registry.service(device.id)) errors.push({ line, column: 'id', message: `"${device.id}" is a service account id` });
    else if (registry.device(device.id) && !options.update) {
      errors.push({ line, column: 'id', message: `device "${device.id}" already exists (--update changes its metadata and keeps its secret)` });
    }
    if (device.gateway !== undefined && registry.service(device.gateway)?.role !== 'gateway') {
      errors.push({ line, column: 'gateway', message: `"${device.gateway}" is not a gateway account; create it first (role gateway)` });
    }
  }
  return errors;
}

/** Secrets as CSV, header `id,secret` (ids and base64url secrets need no quoting). */
export function secretsCsv(secrets: readonly { id: string; secret: string }[]): string {
  return ['id,secret', ...secrets.map(({ id, secret }) => `${id},${secret}`)].join('\n') + '\n';
}

export interface ImportOptions {
  /** The CSV file (a relative path is read from the working directory). */
  readonly file: string;
  /** Existing ids get new metadata and keep their secret; without it they are refused. */
  readonly update: boolean;
  /** Write the secrets here (created with mode 0600, never overwritten) instead of to stdout. */
  readonly secretsOut?: string | undefined;
}

export interface CliOutput {
  /** Data (the secrets CSV). */
  stdout(text: string): void;
  /** Messages for the person at the terminal. */
  stderr(text: string): void;
}

export interface ImportResult {
  readonly exitCode: number;
  readonly added: readonly string[];
  readonly updated: readonly string[];
}

/** `pnpm devices import`: checks everything, writes once, prints the secrets once. */
export async function importDevices(registry: DeviceRegistry, options: ImportOptions, out: CliOutput): Promise<ImportResult> {
  const refused = (errors: readonly CsvRowError[]): ImportResult => {
    for (const error of errors) out.stderr(`${formatCsvError(error)}\n`);
    out.stderr(`${options.file}: ${errors.length} problem(s); nothing was imported\n`);
    return { exitCode: 1, added: [], updated: [] };
  };
  const text = await readFile(options.file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw err.code === 'ENOENT' ? new CodedError('E_NOT_FOUND', `no file ${options.file}`) : err;
  });
  const parsed = parseDeviceCsv(text);
  if (parsed.errors.length > 0) return refused(parsed.errors);
  await registry.refreshIfChanged();
  const conflicts = checkAgainstRegistry(parsed.devices, registry, { update: options.update });
  if (conflicts.length > 0) return refused(conflicts);

  const existed = new Set(parsed.devices.filter(({ device }) => registry.device(device.id)).map(({ device }) => device.id));
  // Claim the secrets file before the registry changes: an existing file is refused, not overwritten.
  const secretsFile =
    options.secretsOut === undefined
      ? undefined
      : await open(options.secretsOut, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
          throw err.code === 'EEXIST' ? new CodedError('E_BAD_REQUEST', `--secrets-out ${options.secretsOut} already exists; it is never overwritten: name a new file`) : err;
        });
  let results: { id: string; secret: string | undefined }[];
  try {
    results = await registry.upsertDevices(
      parsed.devices.map(({ device }) => device),
      { existing: options.update ? 'update' : 'refuse' },
    );
  } catch (err) {
    if (secretsFile && options.secretsOut !== undefined) {
      await secretsFile.close();
      await rm(options.secretsOut, { force: true });
    }
    throw err;
  }
  const secrets = results.flatMap(({ id, secret }) => (secret === undefined ? [] : [{ id, secret }]));
  const csv = secretsCsv(secrets);
  if (secretsFile) {
    try {
      await secretsFile.chmod(0o600); // whatever the umask
      await secretsFile.writeFile(csv);
    } finally {
      await secretsFile.close();
    }
  } else {
    out.stdout(csv);
  }
  const added = results.filter(({ id }) => !existed.has(id)).map(({ id }) => id);
  const updated = results.filter(({ id }) => existed.has(id)).map(({ id }) => id);
  const where = options.secretsOut === undefined ? 'above' : `in ${options.secretsOut} (mode 0600)`;
  out.stderr(`imported ${results.length} device(s): ${added.length} added, ${updated.length} updated; ${secrets.length} new secret(s) ${where}, shown this once: the registry keeps only their hashes\n`);
  return { exitCode: 0, added, updated };
}
