import { readFileSync } from 'node:fs';
import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import { parseDocument, stringify } from 'yaml';
import { CodedError } from '@citypulse/contracts';
import { AlertEngine } from '../src/alerts/engine.js';
import { AlertRulesFileSchema, parseAlertRules, parseDuration, type ThresholdRule } from '../src/alerts/rules.js';

/** The alert rules file: every way it can be wrong names the file, the entry and the fix. */

const FILE = 'alert-rules.yaml';
const SHIPPED = new URL('../alert-rules.yaml', import.meta.url); // ingest/alert-rules.yaml, inside the repository

const PM25 = { id: 'pm25-high', kind: 'threshold', domain: 'environment', field: 'pm25', above: 55.4, for: '10m', severity: 'warning' };
const NO_DATA = { id: 'silent', kind: 'no-data', domain: 'traffic', intervals: 5, interval: '30s', severity: 'warning' };
const FROZEN = { id: 'stuck', kind: 'frozen', domain: 'energy', field: 'frequency', readings: 20, severity: 'warning' };
const LOS = { id: 'los-f', kind: 'category', domain: 'traffic', field: 'los', in: ['F'], severity: 'critical' };

const yamlOf = (...rules: unknown[]): string => stringify({ rules });

/** The E_CONFIG message for rules that must be refused. */
function rejection(text: string): string {
  try {
    parseAlertRules(text, FILE);
  } catch (err) {
    expect(err).toBeInstanceOf(CodedError);
    expect((err as CodedError).code).toBe('E_CONFIG');
    return (err as Error).message;
  }
  throw new Error('the rules were accepted');
}

/** The message for a file whose third rule is `rule` (the first two are fine). */
const third = (rule: Record<string, unknown>): string => rejection(yamlOf(NO_DATA, FROZEN, rule));

describe('parseAlertRules', () => {
  it('parses every rule kind, with durations in milliseconds and province codes padded', () => {
    const text = `
version: 1
rules:
  - { id: pm25-high, kind: threshold, domain: environment, field: pm25, above: 55.4, hysteresis: 5, for: 10m, clearFor: 90000, severity: warning, provinces: [01, "79"], deviceKinds: [roadside] }
  - { id: los-f, kind: category, domain: traffic, field: los, in: [F], for: 5m, severity: critical }
  - { id: silent, kind: no-data, domain: traffic, intervals: 5, interval: 30s, severity: warning }
  - { id: stuck, kind: frozen, domain: energy, field: frequency, for: 5m, severity: info }
`;
    const { source, rules } = parseAlertRules(text, FILE);
    expect(source).toBe(FILE);
    expect(rules).toEqual([
      { id: 'pm25-high', kind: 'threshold', domain: 'environment', field: 'pm25', above: 55.4, below: undefined, hysteresis: 5, forMs: 600_000, clearForMs: 90_000, severity: 'warning', provinces: ['01', '79'], deviceKinds: ['roadside'] },
      { id: 'los-f', kind: 'category', domain: 'traffic', field: 'los', in: ['F'], forMs: 300_000, clearForMs: 0, severity: 'critical', provinces: undefined, deviceKinds: undefined },
      { id: 'silent', kind: 'no-data', domain: 'traffic', intervals: 5, intervalMs: 30_000, severity: 'warning', provinces: undefined, deviceKinds: undefined },
      { id: 'stuck', kind: 'frozen', domain: 'energy', field: 'frequency', readings: 2, forMs: 300_000, tolerance: 0, severity: 'info', provinces: undefined, deviceKinds: undefined },
    ]);
  });

  it('accepts an empty rule list (no alerts)', () => {
    expect(parseAlertRules('rules: []\n', FILE).rules).toEqual([]);
  });

  it('reads durations as in simulator scenarios, or whole milliseconds', () => {
    expect(['500ms', '30s', '1.5m', '10m', '1h', '1d', '10 m'].map((t) => parseDuration(t))).toEqual([500, 30_000, 90_000, 600_000, 3_600_000, 86_400_000, 600_000]);
    expect(parseDuration(2500)).toBe(2500);
    for (const bad of ['-5m', '10', '5 minutes', '', 'm']) expect(parseDuration(bad)).toBeUndefined();
    expect(parseDuration(-1)).toBeUndefined();
    expect(parseDuration(1.5)).toBeUndefined();
  });
});

describe('the shipped alert-rules.yaml', () => {
  const text = readFileSync(SHIPPED, 'utf8');
  const { rules } = parseAlertRules(text, 'alert-rules.yaml');
  const byId = new Map(rules.map((r) => [r.id, r]));
  const threshold = (id: string) => byId.get(id) as ThresholdRule;

  it('parses, and matches the file schema editors use', () => {
    expect(rules.length).toBeGreaterThanOrEqual(10);
    expect(Compile(AlertRulesFileSchema).Check(parseDocument(text).toJS())).toBe(true);
    expect(new Set(rules.map((r) => r.kind))).toEqual(new Set(['threshold', 'category', 'no-data', 'frozen']));
    expect(new Set(rules.filter((r) => r.kind === 'no-data').map((r) => r.domain))).toEqual(new Set(['traffic', 'environment', 'energy']));
  });

  it('pins the numbers of domain.md: VN_AQI bands, LOS E/F, the grid code bands, load factor', () => {
    expect(threshold('vn-aqi-bad')).toMatchObject({ field: 'vnAqi', above: 150, forMs: 600_000, severity: 'warning' });
    expect(threshold('vn-aqi-very-bad')).toMatchObject({ field: 'vnAqi', above: 200, forMs: 600_000, severity: 'critical' });
    expect(byId.get('los-e-or-worse')).toMatchObject({ field: 'los', in: ['E', 'F'], forMs: 300_000, severity: 'warning' });
    expect(byId.get('los-f')).toMatchObject({ field: 'los', in: ['F'], forMs: 300_000, severity: 'critical' });
    expect(threshold('frequency-out-of-band')).toMatchObject({ field: 'frequency', below: 49.8, above: 50.2, severity: 'warning' });
    expect(threshold('frequency-unstable-band-exceeded')).toMatchObject({ field: 'frequency', below: 49.5, above: 50.5, severity: 'critical' });
    expect(threshold('voltage-out-of-band')).toMatchObject({ field: 'voltageDeviation', above: 0.05, forMs: 60_000 });
    expect(threshold('load-high')).toMatchObject({ field: 'loadFactor', above: 0.9 });
    for (const rule of rules) if (rule.kind === 'no-data') expect(rule.intervals).toBe(5);
  });

  it('runs in the engine', () => {
    const engine = new AlertEngine({ source: 'alert-rules.yaml', rules });
    const feeder = { deviceId: 'hcm-feeder-01', province: '79', domain: 'energy' as const, kind: 'feeder-22kv' };
    const t0 = Date.UTC(2026, 0, 15);
    const events = [0, 15, 30, 45].flatMap((s) => engine.onReading(feeder, t0 + s * 1000, { frequency: 49.7 }, {}));
    expect(events.map((e) => [e.ruleId, e.message])).toEqual([['frequency-out-of-band', 'frequency outside 49.8–50.2 Hz for 30 s (49.7)']]);
  });
});

describe('alert rule validation messages', () => {
  it('names the file, the path of the bad entry, what to fix and the line', () => {
    const text = ['rules:', '  - id: a', '    kind: no-data', '    domain: traffic', '    intervals: 5', '    interval: 30s', '    severity: info', '  - id: b', '    kind: frozen', '    domain: energy', '    field: frequency', '    readings: 3', '    severity: info', '  - id: pm25-high', '    kind: threshold', '    domain: environment', '    field: pm25', '    above: lots', '    severity: warning', ''].join('\n');
    expect(rejection(text)).toBe('alert-rules.yaml: rules[2].above: must be a number (line 18)');
  });

  it('lists every problem, one per line', () => {
    const message = rejection(yamlOf({ ...PM25, above: 'x' }, { ...NO_DATA, severity: 'urgent' }));
    expect(message.split('\n')).toEqual([
      'alert-rules.yaml: rules[0].above: must be a number (line 6)',
      'alert-rules.yaml: rules[1].severity: must be one of info, warning, critical (not "urgent") (line 14)',
    ]);
  });

  it.each([
    ['YAML syntax', 'rules: [\n', /^alert-rules\.yaml: not valid YAML: .*line 2/],
    ['duplicate YAML keys', 'rules:\n  - id: a\n    id: b\n', /^alert-rules\.yaml: not valid YAML: Map keys must be unique/],
    ['an empty file', '', /^alert-rules\.yaml: \(root\): must be a mapping with a `rules:` list$/],
    ['a list at the top', '- a\n', /\(root\): must be a mapping with a `rules:` list/],
    ['no rules key', 'version: 1\n', /alert-rules\.yaml: rules: is required/],
    ['rules not a list', 'rules: {}\n', /rules: must be a list/],
    ['an unknown top-level key', 'rules: []\nrule: []\n', /rule: is not a known key; use version, rules \(line 2\)/],
    ['another version', 'version: 2\nrules: []\n', /version: must be 1/],
  ])('file: %s', (_name, text, expected) => {
    expect(rejection(text)).toMatch(expected);
  });

  it.each([
    ['a rule that is not a mapping', 'pm25 above 50', 'rules[2]: must be a mapping (id: …, kind: …, domain: …)'],
    ['a missing kind', { ...PM25, kind: undefined }, 'rules[2].kind: is required: one of threshold, category, no-data, frozen'],
    ['an unknown kind', { ...PM25, kind: 'limit' }, 'rules[2].kind: must be one of threshold, category, no-data, frozen (not "limit")'],
    ['a missing key', { ...PM25, field: undefined }, 'rules[2].field: is required'],
    ['a misspelt key', { ...PM25, abov: 3 }, 'rules[2].abov: is not a known key; use id, domain, severity, provinces, deviceKinds, kind, field, above, below, hysteresis, for, clearFor'],
    ['a bad rule id', { ...PM25, id: 'PM25 High' }, 'rules[2].id: must be 1–64 characters of a-z, 0-9, "-", "_", "." starting with a letter or digit'],
    ['an id with the alert id separator', { ...PM25, id: 'a|b' }, 'rules[2].id: must be 1–64 characters'],
    ['an unknown domain', { ...PM25, domain: 'water' }, 'rules[2].domain: must be one of traffic, environment, energy (not "water")'],
    ['an unknown severity', { ...PM25, severity: 'high' }, 'rules[2].severity: must be one of info, warning, critical (not "high")'],
    ['a number as text', { ...PM25, above: '55.4' }, 'rules[2].above: must be a number'],
    ['an unknown field', { ...PM25, field: 'pm2.5' }, 'rules[2].field: "pm2.5" is not a numeric environment field; use one of seq, pm25, pm10'],
    ['a field of another domain', { ...PM25, field: 'frequency' }, 'rules[2].field: "frequency" is not a numeric environment field'],
    ['a categorical field in a threshold', { ...LOS, kind: 'threshold', in: undefined, above: 3 }, 'rules[2].field: "los" is not a numeric traffic field (it is categorical: use kind category)'],
    ['a numeric field in a category', { ...LOS, field: 'occupancy' }, 'rules[2].field: "occupancy" is not a categorical traffic field (it is numeric: use kind threshold); use one of los, congested, laneDirection'],
    ['a value the field cannot take', { ...LOS, in: ['F', 'G'] }, 'rules[2].in[1]: "G" is not a value of los; use one of A, B, C, D, E, F'],
    ['a boolean as text', { ...LOS, domain: 'energy', field: 'outOfBand', in: ['yes'] }, 'rules[2].in[0]: "yes" is not a value of outOfBand; use one of true, false'],
    ['every value listed', { ...LOS, field: 'congested', in: [true, false] }, 'rules[2].in: lists every value of congested, so the alert would never clear'],
    ['an empty value list', { ...LOS, in: [] }, 'rules[2].in: must list at least 1 entry'],
    ['a value that is a list', { ...LOS, in: [['F']] }, 'rules[2].in[0]: must be a value of the field, such as E or true'],
    ['neither above nor below', { ...PM25, above: undefined }, 'rules[2]: needs `above`, `below` or both (a band)'],
    ['a band upside down', { ...PM25, field: 'temperature', above: 10, below: 30 }, 'rules[2].below: must be less than above (10): the rule raises outside below…above'],
    ['a band the hysteresis closes', { ...FROZEN, kind: 'threshold', readings: undefined, below: 49.8, above: 50.2, hysteresis: 0.2 }, 'rules[2].hysteresis: 0.2 leaves no value that clears the alert; use less than half of above − below (0.2)'],
    ['a hysteresis that never clears', { ...PM25, field: 'vnAqi', above: 150, hysteresis: 160 }, 'rules[2].hysteresis: 160 would clear the alert only at vnAqi ≤ -10, below its minimum 0; use at most 150'],
    ['a hysteresis past the maximum', { ...PM25, field: 'relativeHumidity', above: undefined, below: 0.2, hysteresis: 0.9 }, 'rules[2].hysteresis: 0.9 would clear the alert only at relativeHumidity ≥ 1.1, above its maximum 1; use at most 0.8'],
    ['a negative hysteresis', { ...PM25, hysteresis: -5 }, 'rules[2].hysteresis: must not be negative'],
    ['a limit above the maximum', { ...PM25, domain: 'traffic', field: 'occupancy', above: 1 }, 'rules[2].above: occupancy is at most 1, so it can never be above 1'],
    ['a limit below the minimum', { ...PM25, above: undefined, below: 0 }, 'rules[2].below: pm25 is at least 0, so it can never be below 0'],
    ['a negative duration', { ...PM25, for: '-5m' }, 'rules[2].for: must not be negative'],
    ['negative milliseconds', { ...PM25, clearFor: -100 }, 'rules[2].clearFor: must not be negative'],
    ['a duration without a unit', { ...PM25, for: '10' }, 'rules[2].for: must be a duration such as 30s, 10m or 1h, or whole milliseconds'],
    ['a duration in words', { ...PM25, for: '10 minutes' }, 'rules[2].for: must be a duration such as 30s, 10m or 1h, or whole milliseconds'],
    ['a duration too long', { ...PM25, for: '8d' }, 'rules[2].for: must be at most 7d (not 8d)'],
    ['a no-data interval of 0', { ...NO_DATA, id: 'x', interval: 0 }, 'rules[2].interval: must be longer than 0 (the interval at which the devices report)'],
    ['no-data without intervals', { ...NO_DATA, id: 'x', intervals: undefined }, 'rules[2].intervals: is required'],
    ['no-data with 0 intervals', { ...NO_DATA, id: 'x', intervals: 0 }, 'rules[2].intervals: must be at least 1'],
    ['no-data with a fraction of intervals', { ...NO_DATA, id: 'x', intervals: 2.5 }, 'rules[2].intervals: must be a whole number'],
    ['frozen without readings or for', { ...FROZEN, id: 'x', readings: undefined }, 'rules[2]: needs `readings` (consecutive equal readings, at least 2), `for` (longer than 0) or both'],
    ['frozen with 1 reading', { ...FROZEN, id: 'x', readings: 1 }, 'rules[2].readings: must be at least 2'],
    ['a negative tolerance', { ...FROZEN, id: 'x', tolerance: -0.1 }, 'rules[2].tolerance: must not be negative'],
    ['a province that does not exist', { ...PM25, provinces: ['01', '99'] }, 'rules[2].provinces[1]: "99" is not one of the 34 province codes (e.g. "01" Hà Nội, "79" Hồ Chí Minh)'],
    ['a province written as a name', { ...PM25, provinces: ['Hà Nội'] }, 'rules[2].provinces[0]: must be a two-digit province code such as "01" or "79"'],
    ['an empty province list', { ...PM25, provinces: [] }, 'rules[2].provinces: must list at least 1 entry'],
    ['an empty device kind', { ...PM25, deviceKinds: [''] }, 'rules[2].deviceKinds[0]: must not be empty'],
    ['a duplicate rule id', { ...FROZEN, field: 'totalActivePower' }, 'rules[2].id: "stuck" is already the id of rules[1]; rule ids must be unique'],
  ])('rule: %s', (_name, rule, expected) => {
    const message = third(rule as Record<string, unknown>);
    expect(message.startsWith(`alert-rules.yaml: ${expected}`), message).toBe(true);
  });

  it('accepts a limit just inside the range and a hysteresis that clears exactly at the minimum', () => {
    expect(() => parseAlertRules(yamlOf({ ...PM25, domain: 'traffic', field: 'occupancy', above: 0.99 }, { ...PM25, id: 'b', field: 'vnAqi', above: 150, hysteresis: 150 }), FILE)).not.toThrow();
  });

  it('stops after 20 problems and says how many more there are', () => {
    const message = rejection(yamlOf(...Array.from({ length: 25 }, (_, i) => ({ ...PM25, id: `r${i}`, above: 'x' }))));
    const lines = message.split('\n');
    expect(lines).toHaveLength(21);
    expect(lines[20]).toBe('alert-rules.yaml: … and 5 more problems');
  });
});

describe('readAlertRules (INGEST_RULES_FILE)', () => {
  it('reads the shipped file by default', async () => {
    const { readAlertRules, DEFAULT_RULES_FILE } = await import('../src/alerts/rules.js');
    expect(DEFAULT_RULES_FILE.endsWith('alert-rules.yaml')).toBe(true);
    expect((await readAlertRules()).rules.length).toBeGreaterThan(5);
  });

  it('names a missing file and how to fix it (E_CONFIG)', async () => {
    const { readAlertRules } = await import('../src/alerts/rules.js');
    const error = await readAlertRules('/nonexistent/rules.yaml').catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CodedError);
    expect(error).toMatchObject({ code: 'E_CONFIG' });
    expect((error as Error).message).toMatch(/INGEST_RULES_FILE: cannot read \/nonexistent\/rules\.yaml \(no such file\)/);
  });
});
