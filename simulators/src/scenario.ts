import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CodedError, DOMAINS, isProvinceCode, PROVINCE_CODES, provinceByCode, type Domain } from '@citypulse/contracts';
import Type, { type Static, type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { parseDocument } from 'yaml';
import { WORLD_EVENT_TYPES, type DeviceGroup, type WorldEvent } from './events.js';
import { VN_UTC_OFFSET_MS } from './time.js';
import { DURATION_PATTERN, formatDuration, parseDuration } from './units.js';

/**
 * A scenario: which provinces, how many devices of each domain, how often they publish, which
 * faults to inject and what happens when (incidents, rain, outages). Written in YAML or JSON,
 * validated here with messages that name the bad field (`provinces[2].devices.traffic: …`).
 */

export const SCENARIO_LIMITS = {
  maxDevicesPerGroup: 99_999, // ids carry up to five digits
  maxDevices: 200_000,
  minIntervalMs: 100,
  maxIntervalMs: 3_600_000, // a traffic reading counts at most one hour
  maxGateways: 1000,
  maxEvents: 10_000,
} as const;

export const CONNECTION_MODES = ['device', 'gateway'] as const;
export type ConnectionMode = (typeof CONNECTION_MODES)[number];
export const FAULT_TYPES = ['dropout', 'stuck', 'spike', 'malformed', 'wrongTopic', 'flood'] as const;
export type FaultType = (typeof FAULT_TYPES)[number];

const Duration = Type.String({ pattern: DURATION_PATTERN, description: 'e.g. 500ms, 30s, 5m, 2h, 1d' });
const Share = Type.Number({ minimum: 0, maximum: 1, description: 'fraction of devices, 0–1' });
const Probability = Type.Number({ minimum: 0, maximum: 1, description: 'chance per reading, 0–1' });
const PerHour = Type.Number({ minimum: 0, maximum: 3600, description: 'episodes per device-hour' });
const Qos = Type.Union([Type.Literal(0), Type.Literal(1)]);
const count = Type.Integer({ minimum: 0, maximum: SCENARIO_LIMITS.maxDevicesPerGroup });
const Counts = Type.Object({ traffic: Type.Optional(count), environment: Type.Optional(count), energy: Type.Optional(count) }, { additionalProperties: false });
const Intervals = Type.Object({ traffic: Type.Optional(Duration), environment: Type.Optional(Duration), energy: Type.Optional(Duration) }, { additionalProperties: false });
/** When an event starts: "+15m" after the scenario start, "07:40" local time on the start day, or an ISO date-time. */
const At = Type.String({ minLength: 1, maxLength: 40, description: '+15m, 07:40 (Asia/Ho_Chi_Minh) or 2026-01-15T07:40:00+07:00' });
const ProvinceCode = Type.String({ minLength: 1, maxLength: 8 });

const scope = {
  provinces: Type.Optional(Type.Array(ProvinceCode, { minItems: 1 })),
  domains: Type.Optional(Type.Array(Type.Union([Type.Literal('traffic'), Type.Literal('environment'), Type.Literal('energy')]), { minItems: 1 })),
  share: Type.Optional(Share),
};
const FaultSchemas = {
  dropout: Type.Object({ ...scope, rate: Type.Optional(PerHour), duration: Type.Optional(Duration), lose: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
  stuck: Type.Object({ ...scope, rate: Type.Optional(PerHour), duration: Type.Optional(Duration) }, { additionalProperties: false }),
  spike: Type.Object({ ...scope, probability: Type.Optional(Probability), factor: Type.Optional(Type.Number({ minimum: 1.5, maximum: 1000 })) }, { additionalProperties: false }),
  malformed: Type.Object({ ...scope, probability: Type.Optional(Probability) }, { additionalProperties: false }),
  wrongTopic: Type.Object({ ...scope, probability: Type.Optional(Probability) }, { additionalProperties: false }),
  flood: Type.Object({ ...scope, rate: Type.Optional(PerHour), duration: Type.Optional(Duration), factor: Type.Optional(Type.Integer({ minimum: 2, maximum: 1000 })) }, { additionalProperties: false }),
} as const satisfies Record<FaultType, TSchema>;

const window = { at: At, duration: Duration };
const EventSchemas = {
  'traffic-incident': Type.Object({ type: Type.Literal('traffic-incident'), ...window, province: ProvinceCode, segment: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })), severity: Type.Optional(Share) }, { additionalProperties: false }),
  rain: Type.Object({ type: Type.Literal('rain'), ...window, provinces: Type.Array(ProvinceCode, { minItems: 1 }), mmPerHour: Type.Number({ minimum: 0.1, maximum: 300 }) }, { additionalProperties: false }),
  'pollution-episode': Type.Object({ type: Type.Literal('pollution-episode'), ...window, provinces: Type.Array(ProvinceCode, { minItems: 1 }), factor: Type.Number({ minimum: 0.1, maximum: 20 }) }, { additionalProperties: false }),
  'grid-outage': Type.Object({ type: Type.Literal('grid-outage'), ...window, province: ProvinceCode, share: Type.Optional(Share) }, { additionalProperties: false }),
  'frequency-excursion': Type.Object({ type: Type.Literal('frequency-excursion'), ...window, deltaHz: Type.Number({ minimum: -5, maximum: 5 }) }, { additionalProperties: false }),
  'voltage-sag': Type.Object({ type: Type.Literal('voltage-sag'), ...window, province: ProvinceCode, depth: Type.Number({ minimum: -0.9, maximum: 0.3 }) }, { additionalProperties: false }),
} as const satisfies Record<WorldEvent['type'], TSchema>;

export const ScenarioFileSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 80 }),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 0xffff_ffff })),
    /** "now" (default), or when the scenario's clock starts: models see that season and hour. */
    start: Type.Optional(Type.String({ minLength: 1, maxLength: 40 })),
    /** Stop after this much scenario time (default: run until stopped). */
    duration: Type.Optional(Duration),
    /** Scenario seconds per wall-clock second, or "max": as fast as the broker takes it. */
    speed: Type.Optional(Type.Union([Type.Number({ minimum: 0.01, maximum: 10_000 }), Type.Literal('max')])),
    /** Stamp readings with the wall clock at publish time (default) or with the scenario clock. */
    timestamps: Type.Optional(Type.Union([Type.Literal('wall'), Type.Literal('scenario')])),
    connection: Type.Optional(
      Type.Object(
        {
          mode: Type.Optional(Type.Union([Type.Literal('device'), Type.Literal('gateway')])),
          gateways: Type.Optional(Type.Integer({ minimum: 1, maximum: SCENARIO_LIMITS.maxGateways })),
          /** A gateway that uploads periodically sends each device's readings since the last upload in one message. */
          upload: Type.Optional(Duration),
        },
        { additionalProperties: false },
      ),
    ),
    qos: Type.Optional(Type.Object({ traffic: Type.Optional(Qos), environment: Type.Optional(Qos), energy: Type.Optional(Qos) }, { additionalProperties: false })),
    defaults: Type.Optional(Type.Object({ devices: Type.Optional(Counts), interval: Type.Optional(Intervals) }, { additionalProperties: false })),
    provinces: Type.Array(Type.Object({ code: ProvinceCode, devices: Type.Optional(Counts), interval: Type.Optional(Intervals) }, { additionalProperties: false }), { minItems: 1, maxItems: 200 }),
    /** Readings a device keeps while it cannot send; the oldest are dropped (and counted) past it. */
    buffer: Type.Optional(Type.Object({ maxReadings: Type.Integer({ minimum: 0, maximum: 1_000_000 }) }, { additionalProperties: false })),
    clockSkew: Type.Optional(Type.Object({ share: Share, maxSeconds: Type.Number({ minimum: 0, maximum: 86_400 }) }, { additionalProperties: false })),
    faults: Type.Optional(
      Type.Object(
        { dropout: Type.Optional(FaultSchemas.dropout), stuck: Type.Optional(FaultSchemas.stuck), spike: Type.Optional(FaultSchemas.spike), malformed: Type.Optional(FaultSchemas.malformed), wrongTopic: Type.Optional(FaultSchemas.wrongTopic), flood: Type.Optional(FaultSchemas.flood) },
        { additionalProperties: false },
      ),
    ),
    /** Checked one by one against the schema of their `type`, so errors name the right fields. */
    events: Type.Optional(Type.Array(Type.Unsafe<{ type: string; [field: string]: unknown }>(Type.Object({ type: Type.String() })), { maxItems: SCENARIO_LIMITS.maxEvents })),
  },
  { additionalProperties: false },
);
export type ScenarioFile = Static<typeof ScenarioFileSchema>;

/** What each fault does when switched on without parameters (`--faults stuck,spike`). */
export const FAULT_DEFAULTS = {
  dropout: { share: 0.1, rate: 0.5, durationMs: 120_000, lose: false },
  stuck: { share: 0.1, rate: 0.5, durationMs: 600_000 },
  spike: { share: 0.1, probability: 0.02, factor: 8 },
  malformed: { share: 0.1, probability: 0.02 },
  wrongTopic: { share: 0.05, probability: 0.01 },
  flood: { share: 0.02, rate: 0.5, durationMs: 30_000, factor: 20 },
} as const;

interface FaultScope {
  readonly share: number;
  readonly provinces?: ReadonlySet<string>;
  readonly domains?: ReadonlySet<Domain>;
}
export interface FaultSettings {
  readonly dropout?: FaultScope & { readonly rate: number; readonly durationMs: number; readonly lose: boolean };
  readonly stuck?: FaultScope & { readonly rate: number; readonly durationMs: number };
  readonly spike?: FaultScope & { readonly probability: number; readonly factor: number };
  readonly malformed?: FaultScope & { readonly probability: number };
  readonly wrongTopic?: FaultScope & { readonly probability: number };
  readonly flood?: FaultScope & { readonly rate: number; readonly durationMs: number; readonly factor: number };
}

export interface GroupPlan extends DeviceGroup {
  readonly intervalMs: number;
}

/** A validated scenario with every default applied and every time resolved to epoch ms. */
export interface Scenario {
  readonly name: string;
  readonly description: string;
  readonly seed: number;
  /** Scenario clock at the start, epoch ms. */
  readonly startMs: number;
  readonly durationMs: number | undefined;
  readonly speed: number | 'max';
  readonly timestamps: 'wall' | 'scenario';
  readonly mode: ConnectionMode;
  readonly gateways: number;
  /** Gateway mode: upload each device's readings every this many ms of scenario time (0: at once). */
  readonly uploadMs: number;
  readonly qos: Readonly<Record<Domain, 0 | 1>>;
  readonly groups: readonly GroupPlan[];
  readonly bufferMaxReadings: number;
  readonly clockSkew: { readonly share: number; readonly maxMs: number } | undefined;
  readonly faults: FaultSettings;
  readonly events: readonly WorldEvent[];
}

export const SCENARIO_DEFAULTS = {
  seed: 20_250_701, // 1 July 2025, the day the 34-unit scheme took effect
  devices: { traffic: 3, environment: 3, energy: 3 },
  intervalMs: { traffic: 30_000, environment: 60_000, energy: 15_000 },
  /**
   * QoS 1 for every domain, as the contract's topic scheme asks: a traffic reading is the count of
   * its own period, not a snapshot the next one supersedes, so a lost message is a hole in the flow
   * totals. A scenario may lower a domain to 0 to load-test the broker.
   */
  qos: { traffic: 1, environment: 1, energy: 1 },
  gatewayDevices: 5000, // devices per gateway connection when `gateways` is not given
  bufferMaxReadings: 10_000,
  incidentSeverity: 0.7,
  outageShare: 0.3,
} as const;

export const SCENARIOS_DIR = fileURLToPath(new URL('../scenarios/', import.meta.url));

/** Scenarios that ship with the project, by name (their file names without extension). */
export function shippedScenarioPath(name: string): string | undefined {
  for (const ext of ['.yaml', '.yml', '.json']) {
    const path = join(SCENARIOS_DIR, `${name}${ext}`);
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** Reads a scenario file (or a shipped scenario by name) and validates it. */
export async function loadScenarioFile(pathOrName: string): Promise<ScenarioFile> {
  const path = existsSync(pathOrName) ? pathOrName : (shippedScenarioPath(pathOrName) ?? pathOrName);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CodedError('E_CONFIG', `scenario "${pathOrName}": ${code === 'ENOENT' ? 'no such file, and no shipped scenario of that name' : (err as Error).message}`);
  }
  return parseScenarioText(text, basename(path), extname(path) === '.json' ? 'json' : 'yaml');
}

/** Parses and validates scenario text; `source` names it in error messages. */
export function parseScenarioText(text: string, source: string, format: 'json' | 'yaml' = 'yaml'): ScenarioFile {
  let data: unknown;
  if (format === 'json') {
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new CodedError('E_CONFIG', `scenario ${source} is not valid JSON: ${(err as Error).message}`);
    }
  } else {
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length > 0) {
      throw new CodedError('E_CONFIG', `scenario ${source} is not valid YAML: ${doc.errors.map((e) => e.message.split('\n')[0]).join('; ')}`);
    }
    data = doc.toJS();
  }
  const problems = validateScenarioData(data);
  if (problems.length > 0) throw new CodedError('E_CONFIG', `scenario ${source} is invalid:\n  ${problems.slice(0, 20).join('\n  ')}`);
  return data as ScenarioFile;
}

const fileValidator = Compile(ScenarioFileSchema);
const eventValidators = Object.fromEntries(Object.entries(EventSchemas).map(([type, schema]) => [type, Compile(schema)])) as Record<string, ReturnType<typeof Compile>>;

/** Every problem of a scenario document, each starting with the path of the bad field. */
export function validateScenarioData(data: unknown): string[] {
  const problems: string[] = [];
  for (const error of fileValidator.Errors(data)) {
    // An unknown key is easier to fix when the message names it.
    const extra = error.keyword === 'additionalProperties' ? ` (${JSON.stringify((error.params as { additionalProperties?: unknown }).additionalProperties)})` : '';
    problems.push(`${fieldPath(error.instancePath)}: ${error.message}${extra}`);
  }
  if (problems.length > 0) return dedupe(problems);
  const file = data as ScenarioFile;

  const startMs = file.start === undefined || file.start === 'now' ? 0 : parseTime(file.start, undefined);
  if (Number.isNaN(startMs)) problems.push(`start: "${file.start}" must be "now", an ISO date-time such as 2026-01-15T07:00:00+07:00, or 2026-01-15T07:00 (Vietnam time)`);
  let total = 0;
  file.provinces.forEach((entry, i) => {
    if (entry.code !== 'all' && !isProvinceCode(entry.code)) problems.push(`provinces[${i}].code: "${entry.code}" is not one of the 34 province codes (e.g. 01 Hà Nội, 79 Hồ Chí Minh) or "all"`);
    for (const domain of DOMAINS) {
      const interval = entry.interval?.[domain] ?? file.defaults?.interval?.[domain];
      const where = entry.interval?.[domain] !== undefined ? `provinces[${i}].interval.${domain}` : `defaults.interval.${domain}`;
      if (interval !== undefined) problems.push(...checkInterval(where, interval));
      const n = entry.devices?.[domain] ?? file.defaults?.devices?.[domain] ?? SCENARIO_DEFAULTS.devices[domain];
      total += n * (entry.code === 'all' ? PROVINCE_CODES.length : 1);
    }
  });
  if (total > SCENARIO_LIMITS.maxDevices) problems.push(`provinces: ${total} devices in all; at most ${SCENARIO_LIMITS.maxDevices} per simulator process`);
  if (total === 0) problems.push('provinces: no devices at all; give at least one province a device count above 0');
  if (file.duration !== undefined && (parseDuration(file.duration) ?? 0) <= 0) problems.push(`duration: "${file.duration}" must be longer than 0`);
  const upload = file.connection?.upload === undefined ? undefined : parseDuration(file.connection.upload);
  if (upload !== undefined && upload > SCENARIO_LIMITS.maxIntervalMs) problems.push(`connection.upload: "${file.connection?.upload}" must be at most 1h`);
  if (upload !== undefined && upload > 0 && file.connection?.mode !== 'gateway') problems.push('connection.upload: only gateways upload periodically; set connection.mode to gateway');

  for (const type of FAULT_TYPES) {
    const fault = file.faults?.[type];
    fault?.provinces?.forEach((code, j) => {
      if (!isProvinceCode(code)) problems.push(`faults.${type}.provinces[${j}]: "${code}" is not a province code`);
    });
  }

  (file.events ?? []).forEach((event, i) => {
    const validator = eventValidators[event.type];
    if (!validator) {
      problems.push(`events[${i}].type: "${event.type}" must be one of ${WORLD_EVENT_TYPES.join(', ')}`);
      return;
    }
    for (const error of validator.Errors(event)) {
      const extra = error.keyword === 'additionalProperties' ? ` (${JSON.stringify((error.params as { additionalProperties?: unknown }).additionalProperties)})` : '';
      problems.push(`events[${i}]${fieldPath(error.instancePath, '.')}: ${error.message}${extra}`);
    }
    const e = event as { at?: unknown; province?: unknown; provinces?: unknown };
    if (typeof e.at === 'string' && Number.isNaN(parseTime(e.at, Number.isNaN(startMs) ? 0 : startMs))) {
      problems.push(`events[${i}].at: "${e.at}" must be +DURATION after the start (e.g. +15m), HH:MM Vietnam time on the start day, or an ISO date-time`);
    }
    if (typeof e.province === 'string' && !isProvinceCode(e.province)) problems.push(`events[${i}].province: "${e.province}" is not a province code`);
    if (Array.isArray(e.provinces)) {
      (e.provinces as unknown[]).forEach((code, j) => {
        if (typeof code === 'string' && !isProvinceCode(code)) problems.push(`events[${i}].provinces[${j}]: "${code}" is not a province code`);
      });
    }
  });
  return dedupe(problems);
}

export interface ResolveOptions {
  /** Wall clock now, epoch ms: the start when the scenario says "now". */
  readonly nowMs: number;
  /** Command-line overrides. */
  readonly seed?: number;
  readonly speed?: number | 'max';
  readonly mode?: ConnectionMode;
  readonly gateways?: number;
  readonly uploadMs?: number;
  readonly durationMs?: number;
  readonly start?: string;
  readonly timestamps?: 'wall' | 'scenario';
  /** Switch these faults on with their defaults where the scenario does not configure them. */
  readonly faults?: readonly FaultType[];
}

/** Applies defaults and overrides and resolves every time: the scenario the engine runs. */
export function resolveScenario(file: ScenarioFile, options: ResolveOptions): Scenario {
  const startText = options.start ?? file.start ?? 'now';
  const startMs = startText === 'now' ? options.nowMs : parseTime(startText, undefined);
  if (Number.isNaN(startMs)) throw new CodedError('E_CONFIG', `start "${startText}" must be "now" or a date-time such as 2026-01-15T07:00:00+07:00`);

  const groups: GroupPlan[] = [];
  const seen = new Map<string, number>();
  for (const entry of file.provinces) {
    const codes = entry.code === 'all' ? PROVINCE_CODES : [entry.code];
    for (const province of codes) {
      for (const domain of DOMAINS) {
        const count = entry.devices?.[domain] ?? file.defaults?.devices?.[domain] ?? SCENARIO_DEFAULTS.devices[domain];
        const intervalText = entry.interval?.[domain] ?? file.defaults?.interval?.[domain];
        const intervalMs = intervalText === undefined ? SCENARIO_DEFAULTS.intervalMs[domain] : (parseDuration(intervalText) ?? SCENARIO_DEFAULTS.intervalMs[domain]);
        // A later entry for the same province replaces an earlier one ("all" first, then exceptions).
        const key = `${province}/${domain}`;
        const existing = seen.get(key);
        const plan: GroupPlan = { province, domain, count, intervalMs };
        if (existing === undefined) {
          seen.set(key, groups.length);
          groups.push(plan);
        } else {
          groups[existing] = plan;
        }
      }
    }
  }

  const total = groups.reduce((sum, g) => sum + g.count, 0);
  const mode = options.mode ?? file.connection?.mode ?? 'device';
  const gateways = options.gateways ?? file.connection?.gateways ?? Math.max(1, Math.ceil(total / SCENARIO_DEFAULTS.gatewayDevices));

  const faults: Record<string, unknown> = {};
  for (const type of FAULT_TYPES) {
    const given = file.faults?.[type];
    if (!given && !options.faults?.includes(type)) continue;
    faults[type] = resolveFault(type, given ?? {});
  }

  const events = (file.events ?? []).map((event) => resolveEvent(event as RawEvent, startMs));
  const durationText = file.duration;
  return {
    name: file.name,
    description: file.description ?? '',
    seed: options.seed ?? file.seed ?? SCENARIO_DEFAULTS.seed,
    startMs,
    durationMs: options.durationMs ?? (durationText === undefined ? undefined : parseDuration(durationText)),
    speed: options.speed ?? file.speed ?? 1,
    timestamps: options.timestamps ?? file.timestamps ?? 'wall',
    mode,
    gateways: Math.min(gateways, Math.max(1, total)),
    uploadMs: options.uploadMs ?? (file.connection?.upload === undefined ? 0 : (parseDuration(file.connection.upload) ?? 0)),
    qos: { ...SCENARIO_DEFAULTS.qos, ...file.qos },
    groups: groups.filter((g) => g.count > 0),
    bufferMaxReadings: file.buffer?.maxReadings ?? SCENARIO_DEFAULTS.bufferMaxReadings,
    clockSkew: file.clockSkew ? { share: file.clockSkew.share, maxMs: file.clockSkew.maxSeconds * 1000 } : undefined,
    faults: faults,
    events,
  };
}

/** A scenario from command-line flags alone: the same devices in every listed province. */
export function scenarioFromFlags(options: { provinces: readonly string[]; domains: readonly Domain[]; devicesPerProvince: number; intervalMs: number }): ScenarioFile {
  const devices = Object.fromEntries(DOMAINS.map((d) => [d, options.domains.includes(d) ? options.devicesPerProvince : 0]));
  const interval = Object.fromEntries(DOMAINS.map((d) => [d, formatDuration(options.intervalMs)]));
  return { name: 'command-line', provinces: options.provinces.map((code) => ({ code })), defaults: { devices, interval } };
}

type RawEvent = { type: WorldEvent['type']; at: string; duration: string } & Record<string, unknown>;

function resolveEvent(event: RawEvent, startMs: number): WorldEvent {
  const begin = parseTime(event.at, startMs);
  const window = { startMs: begin, endMs: begin + (parseDuration(event.duration) ?? 0) };
  switch (event.type) {
    case 'traffic-incident':
      return { type: 'traffic-incident', ...window, province: event.province as string, ...(typeof event.segment === 'string' ? { segment: event.segment } : {}), severity: (event.severity as number | undefined) ?? SCENARIO_DEFAULTS.incidentSeverity };
    case 'rain':
      return { type: 'rain', ...window, provinces: event.provinces as string[], mmPerHour: event.mmPerHour as number };
    case 'pollution-episode':
      return { type: 'pollution-episode', ...window, provinces: event.provinces as string[], factor: event.factor as number };
    case 'grid-outage':
      return { type: 'grid-outage', ...window, province: event.province as string, share: (event.share as number | undefined) ?? SCENARIO_DEFAULTS.outageShare };
    case 'frequency-excursion':
      return { type: 'frequency-excursion', ...window, deltaHz: event.deltaHz as number };
    case 'voltage-sag':
      return { type: 'voltage-sag', ...window, province: event.province as string, depth: event.depth as number };
  }
}

function resolveFault(type: FaultType, given: Record<string, unknown>): unknown {
  const defaults: Record<string, unknown> = FAULT_DEFAULTS[type];
  const out: Record<string, unknown> = { ...defaults };
  for (const [key, value] of Object.entries(given)) {
    if (key === 'duration') out.durationMs = parseDuration(value as string);
    else if (key === 'provinces') out.provinces = new Set(value as string[]);
    else if (key === 'domains') out.domains = new Set(value as Domain[]);
    else out[key] = value;
  }
  return out;
}

function checkInterval(where: string, text: string): string[] {
  const ms = parseDuration(text);
  if (ms === undefined) return [];
  if (ms < SCENARIO_LIMITS.minIntervalMs || ms > SCENARIO_LIMITS.maxIntervalMs) return [`${where}: "${text}" must be from ${SCENARIO_LIMITS.minIntervalMs}ms to 1h`];
  return [];
}

/**
 * "+15m" (after `startMs`), "07:40" (Vietnam time on the start's local day), an ISO date-time with
 * an offset, or one without (read as Vietnam time). NaN when the text is none of these.
 */
export function parseTime(text: string, startMs: number | undefined): number {
  const t = text.trim();
  if (t.startsWith('+')) {
    const ms = parseDuration(t.slice(1));
    return ms === undefined || startMs === undefined ? Number.NaN : startMs + ms;
  }
  const clock = /^(\d{1,2}):(\d{2})$/.exec(t);
  if (clock) {
    if (startMs === undefined) return Number.NaN;
    const hours = Number(clock[1]);
    const minutes = Number(clock[2]);
    if (hours > 23 || minutes > 59) return Number.NaN;
    const localMidnight = Math.floor((startMs + VN_UTC_OFFSET_MS) / 86_400_000) * 86_400_000 - VN_UTC_OFFSET_MS;
    return localMidnight + (hours * 60 + minutes) * 60_000;
  }
  const iso = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(t);
  if (!iso) return Number.NaN;
  if (iso[7] !== undefined) return Date.parse(t.replace(' ', 'T'));
  const [, y, mo, d, h = '0', mi = '0', s = '0'] = iso;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) - VN_UTC_OFFSET_MS;
  return Number.isFinite(ms) ? ms : Number.NaN;
}

/** "/provinces/2/devices/traffic" → "provinces[2].devices.traffic". */
function fieldPath(pointer: string, prefix = ''): string {
  if (pointer === '') return prefix === '' ? '(root)' : '';
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let out = '';
  for (const part of parts) out += /^\d+$/.test(part) ? `[${part}]` : out === '' && prefix === '' ? part : `.${part}`;
  return out;
}

function dedupe(items: readonly string[]): string[] {
  return [...new Set(items)];
}

/** Readings the scenario produces in its duration (undefined when it runs until stopped). */
export function expectedReadings(scenario: Scenario): number | undefined {
  if (scenario.durationMs === undefined) return undefined;
  const duration = scenario.durationMs;
  return scenario.groups.reduce((sum, g) => sum + g.count * Math.ceil(duration / g.intervalMs), 0);
}

/** What `--check` prints: the scenario as the engine will run it. */
export function describeScenario(scenario: Scenario): string {
  const devices = scenario.groups.reduce((sum, g) => sum + g.count, 0);
  const perSecond = scenario.groups.reduce((sum, g) => sum + (g.count * 1000) / g.intervalMs, 0) * (scenario.speed === 'max' ? 1 : scenario.speed);
  const provinces = [...new Set(scenario.groups.map((g) => g.province))];
  const lines = [
    `scenario ${scenario.name}: ${devices} devices in ${provinces.length} provinces, ${perSecond.toFixed(1)} readings/s${scenario.speed === 'max' ? ' of scenario time, as fast as possible' : ''}, ${scenario.mode === 'gateway' ? `${scenario.gateways} gateway connections` : 'one connection per device'}`,
    `  clock starts ${vnClock(scenario.startMs)} (Vietnam time) at ${scenario.speed === 'max' ? 'max speed' : `${scenario.speed}×`}${scenario.durationMs !== undefined ? ` for ${formatDuration(scenario.durationMs)}` : ', until stopped'}; readings stamped with the ${scenario.timestamps} clock; seed ${scenario.seed}`,
  ];
  for (const province of provinces) {
    const groups = scenario.groups.filter((g) => g.province === province);
    lines.push(`  ${province} ${provinceByCode(province)?.name ?? ''}: ${groups.map((g) => `${g.count} ${g.domain} every ${formatDuration(g.intervalMs)}`).join(', ')}`);
  }
  const faults = Object.entries(scenario.faults).map(([type, f]) => `${type} (${Math.round((f as { share: number }).share * 100)} % of devices)`);
  if (faults.length > 0) lines.push(`  faults: ${faults.join(', ')}`);
  for (const event of scenario.events) {
    const where = 'province' in event ? ` in ${event.province}` : 'provinces' in event ? ` in ${event.provinces.join(', ')}` : '';
    lines.push(`  event ${event.type}${where} ${vnClock(event.startMs)} – ${vnClock(event.endMs).slice(11)}`);
  }
  if (scenario.clockSkew) lines.push(`  clock skew: ${Math.round(scenario.clockSkew.share * 100)} % of devices, up to ±${scenario.clockSkew.maxMs / 1000} s`);
  return lines.join('\n');
}

/** Scenario time as Vietnam local time, e.g. "2026-01-15 07:42". */
export function vnClock(ms: number): string {
  return new Date(ms + VN_UTC_OFFSET_MS).toISOString().slice(0, 16).replace('T', ' ');
}
