import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Type, { type Static, type TSchema } from 'typebox';
import { Compile, type Validator } from 'typebox/compile';
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import {
  ALERT_KINDS,
  ALERT_RULE_ID_PATTERN,
  ALERT_SEVERITIES,
  CodedError,
  DERIVED_FIELDS,
  DOMAINS,
  HISTORY_FIELDS,
  isProvinceCode,
  LOS_LEVELS,
  READING_SCHEMAS,
  VN_AQI_BREAKPOINTS,
  type AlertKind,
  type AlertSeverity,
  type Domain,
  type FrequencyBand,
} from '@citypulse/contracts';

/**
 * The alert rules file (ingest/alert-rules.yaml by default): a list of rules, each selecting
 * devices by domain (and optionally provinces and device kinds) and watching one thing about
 * them. Validated at start; every problem names the file, the path of the bad entry and what to
 * write instead (`alert-rules.yaml: rules[2].above: must be a number (line 14)`).
 */

export const ALERT_RULE_LIMITS = {
  maxRules: 1000,
  maxDurationMs: 7 * 86_400_000, // 7 days: longer conditions are reports, not alerts
  maxProblems: 20,
} as const;

/** "500ms", "30s", "1.5m", "10m", "1h", "1d" (as in simulator scenarios), or whole milliseconds. */
export const DURATION_PATTERN = '^\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)$';
const DURATION_UNITS_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_HINT = 'must be a duration such as 30s, 10m or 1h, or whole milliseconds';

const Duration = Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: DURATION_PATTERN })], { description: 'e.g. 30s, 10m, 1h, or milliseconds' });
/** YAML reads an unquoted 01 as the number 1: accept it and pad it back to "01". */
const Province = Type.Union([Type.String({ pattern: '^[0-9]{2}$' }), Type.Integer({ minimum: 1, maximum: 99 })], { description: 'two-digit province code, e.g. "01"' });
const FieldName = Type.String({ minLength: 1, maxLength: 64, description: 'a reading field (flattened: phaseVoltage_L1) or a derived field (vnAqi, los …)' });

const selection = {
  id: Type.String({ pattern: ALERT_RULE_ID_PATTERN.source, description: 'unique rule id: a-z, 0-9, "-", "_", "."' }),
  domain: Type.Enum(DOMAINS),
  severity: Type.Enum(ALERT_SEVERITIES),
  /** Only devices in these provinces (default: every province). */
  provinces: Type.Optional(Type.Array(Province, { minItems: 1, maxItems: 34 })),
  /** Only devices of these registry kinds (default: every kind). */
  deviceKinds: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 100 })),
};

export const ThresholdRuleSchema = Type.Object(
  {
    ...selection,
    kind: Type.Literal('threshold'),
    field: FieldName,
    /** Raised while the value is above this (and/or below `below`: a band). */
    above: Type.Optional(Type.Number()),
    below: Type.Optional(Type.Number()),
    /** Absolute: an alert raised above X clears at X − hysteresis or lower (below Y: Y + hysteresis). */
    hysteresis: Type.Optional(Type.Number({ minimum: 0 })),
    /** How long the condition must hold before the alert is raised (default 0: at once). */
    for: Type.Optional(Duration),
    /** How long the clear condition must hold before the alert clears (default 0). */
    clearFor: Type.Optional(Duration),
  },
  { additionalProperties: false },
);

export const CategoryRuleSchema = Type.Object(
  {
    ...selection,
    kind: Type.Literal('category'),
    field: FieldName,
    /** Raised while the value is one of these (los: [E, F]; outOfBand: [true]). */
    in: Type.Array(Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Boolean()]), { minItems: 1, maxItems: 20 }),
    for: Type.Optional(Duration),
    clearFor: Type.Optional(Duration),
  },
  { additionalProperties: false },
);

export const NoDataRuleSchema = Type.Object(
  {
    ...selection,
    kind: Type.Literal('no-data'),
    /** Raised after this many expected intervals without a reading; cleared by the next reading. */
    intervals: Type.Integer({ minimum: 1, maximum: 10_000 }),
    /** The expected reporting interval; a device seen to report less often gets its own, longer one. */
    interval: Duration,
  },
  { additionalProperties: false },
);

export const FrozenRuleSchema = Type.Object(
  {
    ...selection,
    kind: Type.Literal('frozen'),
    field: FieldName,
    /** Raised after this many consecutive readings with the same value … */
    readings: Type.Optional(Type.Integer({ minimum: 2, maximum: 1_000_000 })),
    /** … and (when given) after the value has not changed for this long. */
    for: Type.Optional(Duration),
    /** Changes up to this (absolute) still count as "the same value" (default 0). */
    tolerance: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export const AlertRuleSchema = Type.Union([ThresholdRuleSchema, CategoryRuleSchema, NoDataRuleSchema, FrozenRuleSchema]);

/** The whole file, as JSON Schema (editors can use it for completion). */
export const AlertRulesFileSchema = Type.Object(
  {
    version: Type.Optional(Type.Literal(1)),
    rules: Type.Array(AlertRuleSchema, { maxItems: ALERT_RULE_LIMITS.maxRules }),
  },
  { additionalProperties: false },
);
export type AlertRulesFile = Static<typeof AlertRulesFileSchema>;

/* ---- Validated rules, durations in ms: what the engine runs. ---- */

interface AlertRuleBase {
  readonly id: string;
  readonly domain: Domain;
  readonly severity: AlertSeverity;
  /** Undefined: every province. */
  readonly provinces: readonly string[] | undefined;
  /** Undefined: every device kind. */
  readonly deviceKinds: readonly string[] | undefined;
}

export interface ThresholdRule extends AlertRuleBase {
  readonly kind: 'threshold';
  readonly field: string;
  readonly above: number | undefined;
  readonly below: number | undefined;
  readonly hysteresis: number;
  readonly forMs: number;
  readonly clearForMs: number;
}

export interface CategoryRule extends AlertRuleBase {
  readonly kind: 'category';
  readonly field: string;
  readonly in: readonly (string | boolean)[];
  readonly forMs: number;
  readonly clearForMs: number;
}

export interface NoDataRule extends AlertRuleBase {
  readonly kind: 'no-data';
  readonly intervals: number;
  readonly intervalMs: number;
}

export interface FrozenRule extends AlertRuleBase {
  readonly kind: 'frozen';
  readonly field: string;
  /** Consecutive readings with the same value (at least 2). */
  readonly readings: number;
  /** How long the value must have stayed the same (0: no minimum). */
  readonly forMs: number;
  readonly tolerance: number;
}

export type AlertRule = ThresholdRule | CategoryRule | NoDataRule | FrozenRule;

export interface AlertRules {
  /** Where the rules came from, for logs. */
  readonly source: string;
  readonly rules: readonly AlertRule[];
}

/* ---- Field knowledge per domain ---- */

const FREQUENCY_BANDS = ['normal', 'unstable', 'outside'] as const satisfies readonly FrequencyBand[];

/** Categorical fields (reading and derived) and every value each can take. */
export const CATEGORY_FIELDS: Readonly<Record<Domain, Readonly<Record<string, readonly (string | boolean)[]>>>> = {
  traffic: { los: LOS_LEVELS, congested: [true, false], laneDirection: ['forward', 'backward'] },
  environment: { vnAqiDominant: Object.keys(VN_AQI_BREAKPOINTS) },
  energy: { frequencyBand: FREQUENCY_BANDS, outOfBand: [true, false] },
};

interface Bounds {
  readonly min: number;
  readonly max: number;
}

/** Derived numbers are never negative; VN_AQI stops at 500 (Decision 1459/QĐ-TCMT). */
const DERIVED_BOUNDS: Readonly<Record<string, Bounds>> = { vnAqi: { min: 0, max: 500 } };
const NON_NEGATIVE: Bounds = { min: 0, max: Infinity };
const UNBOUNDED: Bounds = { min: -Infinity, max: Infinity };

interface SchemaNode {
  readonly type?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly properties?: Readonly<Record<string, SchemaNode>>;
}

/** Bounds of every numeric reading field, flattened as stored (phaseVoltage_L1), from the contract's schemas. */
const READING_BOUNDS: Readonly<Record<Domain, ReadonlyMap<string, Bounds>>> = Object.fromEntries(
  DOMAINS.map((domain) => {
    const bounds = new Map<string, Bounds>();
    const walk = (node: SchemaNode, prefix: string) => {
      for (const [name, property] of Object.entries(node.properties ?? {})) {
        const path = prefix === '' ? name : `${prefix}_${name}`;
        if (property.type === 'object') walk(property, path);
        else if (property.type === 'number' || property.type === 'integer') bounds.set(path, { min: property.minimum ?? -Infinity, max: property.maximum ?? Infinity });
      }
    };
    walk(READING_SCHEMAS[domain], '');
    return [domain, bounds];
  }),
) as unknown as Record<Domain, ReadonlyMap<string, Bounds>>;

/** The numeric fields a rule may watch: the schema's and the derived ones (the api's history list). */
export function numericFields(domain: Domain): readonly string[] {
  return HISTORY_FIELDS[domain];
}

function numericBounds(domain: Domain, field: string): Bounds {
  return READING_BOUNDS[domain].get(field) ?? DERIVED_BOUNDS[field] ?? ((DERIVED_FIELDS as readonly string[]).includes(field) ? NON_NEGATIVE : UNBOUNDED);
}

/* ---- Parsing and validation ---- */

type Path = readonly (string | number)[];

interface Problem {
  readonly path: Path;
  readonly message: string;
}

/** The rules shipped with ingest (ingest/alert-rules.yaml): INGEST_RULES_FILE's default. */
export const DEFAULT_RULES_FILE = fileURLToPath(new URL('../../alert-rules.yaml', import.meta.url));

/**
 * Where the rules live by default: `DATA_DIR/alert-rules.yaml`, seeded from the shipped file at
 * first start. Ingest reads and watches it; the api's admins read and replace it (PUT /alert-rules).
 */
export function rulesFileIn(dataDir: string): string {
  return join(dataDir, 'alert-rules.yaml');
}

/** The rules file to use: INGEST_RULES_FILE if set, else DATA_DIR's, copied from the shipped rules if it does not exist yet. */
export async function ensureRulesFile(configured: string | undefined, dataDir: string): Promise<string> {
  if (configured) return configured;
  const file = rulesFileIn(dataDir);
  await mkdir(dirname(file), { recursive: true });
  await copyFile(DEFAULT_RULES_FILE, file, 1 /* COPYFILE_EXCL: keep an existing file */).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  return file;
}

/**
 * Validates rules text and, if valid, replaces the file atomically (a temporary file renamed over
 * it: a watcher never reads half a file). Throws CodedError E_CONFIG listing every problem.
 */
export async function writeAlertRules(file: string, text: string): Promise<AlertRules> {
  const rules = parseAlertRules(text, 'alert rules');
  // One write at a time per process, each through its own temporary file: the last one wins whole.
  const write = rulesWrites.then(async () => {
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, file);
  });
  rulesWrites = write.catch(() => undefined);
  await write;
  return rules;
}
let rulesWrites: Promise<void> = Promise.resolve();

/** Reads and validates a rules file; CodedError E_CONFIG names the file and what to fix. */
export async function readAlertRules(file: string = DEFAULT_RULES_FILE): Promise<AlertRules> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new CodedError('E_CONFIG', `INGEST_RULES_FILE: cannot read ${file} (${reason}); point it at a rules file, or leave it unset for the shipped ${DEFAULT_RULES_FILE}`);
  }
  return parseAlertRules(text, file);
}

/**
 * Parses and validates an alert rules file. `source` names it in messages (a file name). Throws
 * CodedError E_CONFIG listing every problem, one per line:
 * `alert-rules.yaml: rules[2].above: must be a number (line 14)`.
 */
export function parseAlertRules(text: string, source: string): AlertRules {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]?.message.split('\n')[0] ?? 'unreadable';
    throw new CodedError('E_CONFIG', `${source}: not valid YAML: ${first}`);
  }
  return validateAlertRules(doc.toJS(), source, (path) => lineOf(doc, lineCounter, path));
}

/** Validates already-parsed rules (JSON, tests); `lineOf` maps a path to a line for messages. */
export function validateAlertRules(data: unknown, source: string, lineOf?: (path: Path) => number | undefined): AlertRules {
  const problems: Problem[] = [];
  const rules: AlertRule[] = [];
  if (!isRecord(data)) {
    problems.push({ path: [], message: 'must be a mapping with a `rules:` list' });
  } else {
    problems.push(...schemaProblems(fileShapeValidator, FileShape, data, []));
    const list = data.rules;
    if (Array.isArray(list) && problems.length === 0) {
      const firstUse = new Map<string, number>();
      list.forEach((entry: unknown, i) => {
        const result = checkRule(entry, ['rules', i]);
        problems.push(...result.problems);
        if (!result.rule) return;
        const earlier = firstUse.get(result.rule.id);
        if (earlier !== undefined) {
          problems.push({ path: ['rules', i, 'id'], message: `"${result.rule.id}" is already the id of rules[${earlier}]; rule ids must be unique` });
          return;
        }
        firstUse.set(result.rule.id, i);
        rules.push(result.rule);
      });
    }
  }
  if (problems.length > 0) {
    const lines = problems.slice(0, ALERT_RULE_LIMITS.maxProblems).map((p) => {
      const line = lineOf?.(p.path);
      return `${source}: ${pathText(p.path)}: ${p.message}${line === undefined ? '' : ` (line ${line})`}`;
    });
    if (problems.length > ALERT_RULE_LIMITS.maxProblems) lines.push(`${source}: … and ${problems.length - ALERT_RULE_LIMITS.maxProblems} more problems`);
    throw new CodedError('E_CONFIG', lines.join('\n'));
  }
  return { source, rules };
}

/** The file's outer shape; each rule is checked against the schema of its kind, for clearer messages. */
const FileShape = Type.Object(
  { version: Type.Optional(Type.Literal(1)), rules: Type.Array(Type.Unknown(), { maxItems: ALERT_RULE_LIMITS.maxRules }) },
  { additionalProperties: false },
);
const fileShapeValidator = Compile(FileShape);

const RULE_SCHEMAS = {
  threshold: ThresholdRuleSchema,
  category: CategoryRuleSchema,
  'no-data': NoDataRuleSchema,
  frozen: FrozenRuleSchema,
} as const satisfies Record<AlertKind, TSchema>;
const ruleValidators = Object.fromEntries(Object.entries(RULE_SCHEMAS).map(([kind, schema]) => [kind, Compile(schema)])) as Record<AlertKind, Validator>;

function checkRule(entry: unknown, path: Path): { rule?: AlertRule; problems: Problem[] } {
  if (!isRecord(entry)) return { problems: [{ path, message: 'must be a mapping (id: …, kind: …, domain: …)' }] };
  const kind = entry.kind;
  if (kind === undefined) return { problems: [{ path: [...path, 'kind'], message: `is required: one of ${ALERT_KINDS.join(', ')}` }] };
  if (typeof kind !== 'string' || !(ALERT_KINDS as readonly string[]).includes(kind)) {
    return { problems: [{ path: [...path, 'kind'], message: `must be one of ${ALERT_KINDS.join(', ')} (not ${JSON.stringify(kind)})` }] };
  }
  const ruleKind = kind as AlertKind;
  const problems = schemaProblems(ruleValidators[ruleKind], RULE_SCHEMAS[ruleKind], entry, path);
  if (problems.length > 0) return { problems };

  const at = (key: string | number, ...rest: (string | number)[]): Path => [...path, key, ...rest];
  const raw = entry as Static<typeof AlertRuleSchema>;
  const provinces = raw.provinces?.map((code) => (typeof code === 'number' ? String(code).padStart(2, '0') : code));
  provinces?.forEach((code, j) => {
    if (!isProvinceCode(code)) problems.push({ path: at('provinces', j), message: `"${code}" is not one of the 34 province codes (e.g. "01" Hà Nội, "79" Hồ Chí Minh)` });
  });
  const base = { id: raw.id, domain: raw.domain, severity: raw.severity, provinces: provinces && [...new Set(provinces)], deviceKinds: raw.deviceKinds && [...new Set(raw.deviceKinds)] };
  const duration = (key: string, value: number | string | undefined): number => {
    const ms = value === undefined ? 0 : parseDuration(value);
    if (ms === undefined) problems.push({ path: at(key), message: DURATION_HINT });
    else if (ms > ALERT_RULE_LIMITS.maxDurationMs) problems.push({ path: at(key), message: `must be at most 7d (not ${String(value)})` });
    return ms ?? 0;
  };

  let rule: AlertRule | undefined;
  switch (raw.kind) {
    case 'threshold': {
      const fieldProblems = checkNumericField(raw.domain, raw.field, at('field'), 'category');
      problems.push(...fieldProblems);
      const hysteresis = raw.hysteresis ?? 0;
      let consistent = fieldProblems.length === 0;
      if (raw.above === undefined && raw.below === undefined) problems.push({ path, message: 'needs `above`, `below` or both (a band)' });
      if (raw.above !== undefined && raw.below !== undefined) {
        if (raw.below >= raw.above) {
          problems.push({ path: at('below'), message: `must be less than above (${raw.above}): the rule raises outside below…above` });
          consistent = false;
        } else if (raw.below + hysteresis >= raw.above - hysteresis) {
          problems.push({ path: at('hysteresis'), message: `${hysteresis} leaves no value that clears the alert; use less than half of above − below (${trim((raw.above - raw.below) / 2)})` });
          consistent = false;
        }
      }
      // Only against a known field and a sane band: otherwise the message would be noise.
      if (consistent) problems.push(...checkReachable(raw.domain, raw.field, raw.above, raw.below, hysteresis, at));
      rule = { ...base, kind: 'threshold', field: raw.field, above: raw.above, below: raw.below, hysteresis, forMs: duration('for', raw.for), clearForMs: duration('clearFor', raw.clearFor) };
      break;
    }
    case 'category': {
      const values = CATEGORY_FIELDS[raw.domain][raw.field];
      if (!values) {
        const hint = numericFields(raw.domain).includes(raw.field) ? ' (it is numeric: use kind threshold)' : '';
        problems.push({ path: at('field'), message: `"${raw.field}" is not a categorical ${raw.domain} field${hint}; use one of ${Object.keys(CATEGORY_FIELDS[raw.domain]).join(', ')}` });
      } else {
        raw.in.forEach((value, j) => {
          if (!values.includes(value)) problems.push({ path: at('in', j), message: `${JSON.stringify(value)} is not a value of ${raw.field}; use one of ${values.map(String).join(', ')}` });
        });
        if (problems.length === 0 && values.every((v) => raw.in.includes(v))) problems.push({ path: at('in'), message: `lists every value of ${raw.field}, so the alert would never clear` });
      }
      rule = { ...base, kind: 'category', field: raw.field, in: [...new Set(raw.in)], forMs: duration('for', raw.for), clearForMs: duration('clearFor', raw.clearFor) };
      break;
    }
    case 'no-data': {
      const intervalMs = duration('interval', raw.interval);
      if (intervalMs === 0) problems.push({ path: at('interval'), message: 'must be longer than 0 (the interval at which the devices report)' });
      rule = { ...base, kind: 'no-data', intervals: raw.intervals, intervalMs };
      break;
    }
    case 'frozen': {
      problems.push(...checkNumericField(raw.domain, raw.field, at('field'), 'frozen'));
      const forMs = duration('for', raw.for);
      if (raw.readings === undefined && forMs === 0) problems.push({ path, message: 'needs `readings` (consecutive equal readings, at least 2), `for` (longer than 0) or both' });
      rule = { ...base, kind: 'frozen', field: raw.field, readings: raw.readings ?? 2, forMs, tolerance: raw.tolerance ?? 0 };
      break;
    }
    default:
      return assertNever(raw);
  }
  return problems.length > 0 ? { problems } : { rule, problems };
}

function checkNumericField(domain: Domain, field: string, path: Path, kind: 'category' | 'frozen'): Problem[] {
  if (numericFields(domain).includes(field)) return [];
  const hint = kind === 'category' && CATEGORY_FIELDS[domain][field] ? ' (it is categorical: use kind category)' : '';
  return [{ path, message: `"${field}" is not a numeric ${domain} field${hint}; use one of ${numericFields(domain).join(', ')}` }];
}

/** A limit the field can never cross raises nothing; a hysteresis past the field's range never clears. */
function checkReachable(domain: Domain, field: string, above: number | undefined, below: number | undefined, hysteresis: number, at: (key: string) => Path): Problem[] {
  const { min, max } = numericBounds(domain, field);
  const problems: Problem[] = [];
  if (above !== undefined) {
    if (above >= max) problems.push({ path: at('above'), message: `${field} is at most ${max}, so it can never be above ${above}` });
    else if (above - hysteresis < min) {
      problems.push({ path: at('hysteresis'), message: `${hysteresis} would clear the alert only at ${field} ≤ ${trim(above - hysteresis)}, below its minimum ${min}; use at most ${trim(above - min)}` });
    }
  }
  if (below !== undefined) {
    if (below <= min) problems.push({ path: at('below'), message: `${field} is at least ${min}, so it can never be below ${below}` });
    else if (below + hysteresis > max) {
      problems.push({ path: at('hysteresis'), message: `${hysteresis} would clear the alert only at ${field} ≥ ${trim(below + hysteresis)}, above its maximum ${max}; use at most ${trim(max - below)}` });
    }
  }
  return problems;
}

/** "10m" → 600000; a number is already milliseconds. Undefined when the text is not a duration. */
export function parseDuration(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * DURATION_UNITS_MS[match[2] as keyof typeof DURATION_UNITS_MS]);
}

/* ---- TypeBox errors → messages people can act on ---- */

interface SchemaError {
  readonly keyword: string;
  readonly instancePath: string;
  readonly params: Readonly<Record<string, unknown>>;
}

const DURATION_KEYS: ReadonlySet<string> = new Set(['for', 'clearFor', 'interval']);
const TYPE_NAMES: Readonly<Record<string, string>> = {
  number: 'a number',
  integer: 'a whole number',
  string: 'text',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
};
/** What to write, for keys whose schema is a union or a pattern. */
const HINTS: Readonly<Record<string, string>> = {
  id: 'must be 1–64 characters of a-z, 0-9, "-", "_", "." starting with a letter or digit',
  provinces: 'must be a two-digit province code such as "01" or "79"',
  in: 'must be a value of the field, such as E or true',
};

function schemaProblems(validator: Validator, schema: TSchema, value: Record<string, unknown>, base: Path): Problem[] {
  const groups = new Map<string, SchemaError[]>();
  for (const error of validator.Errors(value) as SchemaError[]) {
    if (error.keyword === 'boolean') continue; // the additionalProperties error says it better
    const list = groups.get(error.instancePath);
    if (list) list.push(error);
    else groups.set(error.instancePath, [error]);
  }
  const allowed = Object.keys((schema as SchemaNode).properties ?? {});
  const problems: Problem[] = [];
  for (const [pointer, errors] of groups) {
    const path = [...base, ...pointerParts(pointer)];
    // The key this value sits under: for a list item, the list's key.
    const key = [...path].reverse().find((p): p is string => typeof p === 'string') ?? '';
    const own = path[path.length - 1];
    const required = errors.find((e) => e.keyword === 'required');
    const extra = errors.find((e) => e.keyword === 'additionalProperties');
    if (required) for (const name of required.params.requiredProperties as string[]) problems.push({ path: [...path, name], message: 'is required' });
    if (extra) {
      for (const name of extra.params.additionalProperties as string[]) problems.push({ path: [...path, name], message: `is not a known key; use ${allowed.join(', ')}` });
    }
    const rest = errors.filter((e) => e !== required && e !== extra);
    const first = rest[0];
    if (!first) continue;
    if (typeof own === 'string' && DURATION_KEYS.has(own)) {
      const text = valueAt(value, path.slice(base.length));
      const negative = (typeof text === 'number' && text < 0) || (typeof text === 'string' && text.trim().startsWith('-'));
      problems.push({ path, message: negative ? 'must not be negative' : DURATION_HINT });
    } else if (rest.some((e) => e.keyword === 'anyOf' || e.keyword === 'pattern') && HINTS[key]) {
      problems.push({ path, message: HINTS[key] });
    } else {
      problems.push({ path, message: explain(first, valueAt(value, path.slice(base.length))) });
    }
  }
  return problems;
}

function explain(error: SchemaError, value: unknown): string {
  const limit = error.params.limit as number;
  switch (error.keyword) {
    case 'type':
      return `must be ${TYPE_NAMES[error.params.type as string] ?? String(error.params.type)}`;
    case 'enum':
      return `must be one of ${(error.params.allowedValues as unknown[]).map(String).join(', ')} (not ${JSON.stringify(value)})`;
    case 'const':
      return `must be ${JSON.stringify(error.params.allowedValue)}`;
    case 'minimum':
      return limit === 0 ? 'must not be negative' : `must be at least ${limit}`;
    case 'maximum':
      return `must be at most ${limit}`;
    case 'minItems':
      return `must list at least ${limit} ${limit === 1 ? 'entry' : 'entries'}`;
    case 'maxItems':
      return `must list at most ${limit} entries`;
    case 'minLength':
      return limit === 1 ? 'must not be empty' : `must be at least ${limit} characters`;
    case 'maxLength':
      return `must be at most ${limit} characters`;
    default:
      return 'is not valid here';
  }
}

function pointerParts(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

/** ['rules', 2, 'above'] → "rules[2].above". */
function pathText(path: Path): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  return out === '' ? '(root)' : out;
}

function valueAt(value: unknown, path: Path): unknown {
  let current = value;
  for (const part of path) current = isRecord(current) || Array.isArray(current) ? (current as Record<string | number, unknown>)[part] : undefined;
  return current;
}

/** The line of the deepest node on `path` that the document has (a missing key: its mapping). */
function lineOf(doc: Document, lineCounter: LineCounter, path: Path): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node: unknown = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Drops binary noise from computed limits in messages: 0.30000000000000004 → 0.3. */
function trim(value: number): number {
  return Number(value.toPrecision(12));
}

function assertNever(value: never): never {
  throw new Error(`unexpected rule ${JSON.stringify(value)}`);
}
