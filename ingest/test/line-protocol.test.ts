import { describe, expect, it } from 'vitest';
import { EMPTY_TAG_VALUE, escapeFieldKey, escapeMeasurement, escapeStringField, escapeTag, formatFieldValue, formatLine } from '../src/line-protocol.js';

/**
 * What the escapers write. That InfluxDB 1.6.7 reads these forms back exactly is checked against a
 * real server in storage.test.ts ("hostile strings").
 */

describe('escapeTag', () => {
  it('leaves ordinary ids alone', () => {
    for (const id of ['hcm-feeder-01', '79', 'feeder-22kv', 'Hà_Nội', 'tab\there', 'quote"d']) expect(escapeTag(id)).toBe(id);
  });

  it('escapes comma, equals sign and space', () => {
    expect(escapeTag('a,b c=d')).toBe('a\\,b\\ c\\=d');
    expect(escapeTag('=,  ')).toBe('\\=\\,\\ \\ ');
  });

  it('keeps other backslashes as they are, also one before an escaped character', () => {
    expect(escapeTag('back\\slash')).toBe('back\\slash');
    // 1.x unescapes only "\," "\=" and "\ ": the original backslash stays in front of the escape.
    expect(escapeTag('a\\,b')).toBe('a\\\\,b');
    expect(escapeTag('a\\ b')).toBe('a\\\\ b');
  });

  it('writes something valid for what 1.x cannot carry: empty, line breaks, a trailing backslash', () => {
    expect(escapeTag('')).toBe(EMPTY_TAG_VALUE);
    expect(escapeTag('two\nlines\r\nthree\rfour')).toBe('two\\ lines\\ three\\ four');
    expect(escapeTag('ends\\')).toBe('ends\uFF3C');
    expect(escapeTag('\\')).toBe('\uFF3C');
    // A line break after the backslash: no longer trailing once the break became a space.
    expect(escapeTag('x\\\n')).toBe('x\\\\ ');
  });
});

describe('escapeFieldKey', () => {
  it('leaves schema field names alone', () => {
    for (const name of ['pm25', 'phaseVoltage_L1', 'intensityByVehicleType_motorcycle', 'LAeq']) expect(escapeFieldKey(name)).toBe(name);
  });

  it('escapes comma, equals sign, space and double quote', () => {
    expect(escapeFieldKey('a,b c=d"e')).toBe('a\\,b\\ c\\=d\\"e');
    // An even run of backslashes before a separator is fine: the scanner pairs them.
    expect(escapeFieldKey('a\\\\,b')).toBe('a\\\\\\,b');
    expect(escapeFieldKey('a\\"b')).toBe('a\\\\"b');
  });

  it('replaces a backslash the fields scanner would pair with a separator', () => {
    expect(escapeFieldKey('a\\,b')).toBe('a\uFF3C\\,b');
    expect(escapeFieldKey('a\\ b')).toBe('a\uFF3C\\ b');
    expect(escapeFieldKey('a\\\\\\=b')).toBe('a\\\\\uFF3C\\=b');
    expect(escapeFieldKey('end\\\\')).toBe('end\\\uFF3C');
    expect(escapeFieldKey('two\nlines')).toBe('two\\ lines');
    expect(escapeFieldKey('')).toBe(EMPTY_TAG_VALUE);
  });
});

describe('escapeMeasurement', () => {
  it('escapes comma and space but not the equals sign', () => {
    expect(escapeMeasurement('energy')).toBe('energy');
    expect(escapeMeasurement('my data,v=2')).toBe('my\\ data\\,v=2');
  });

  it('throws on names 1.x cannot write', () => {
    for (const bad of ['', '#comment', 'two\nlines', 'ends\\']) expect(() => escapeMeasurement(bad)).toThrow(RangeError);
  });
});

describe('escapeStringField', () => {
  it('quotes, escaping double quotes and backslashes; line breaks stay', () => {
    expect(escapeStringField('plain')).toBe('"plain"');
    expect(escapeStringField('say "hi"')).toBe('"say \\"hi\\""');
    expect(escapeStringField('C:\\dir\\')).toBe('"C:\\\\dir\\\\"');
    expect(escapeStringField('\\"')).toBe('"\\\\\\""');
    expect(escapeStringField('line 1\nline 2')).toBe('"line 1\nline 2"');
    expect(escapeStringField('')).toBe('""');
  });
});

describe('formatFieldValue', () => {
  it('writes numbers as floats (no i suffix), booleans as words, strings quoted', () => {
    expect(formatFieldValue(5)).toBe('5');
    expect(formatFieldValue(-0.25)).toBe('-0.25');
    expect(formatFieldValue(1e21)).toBe('1e+21');
    expect(formatFieldValue(1e-7)).toBe('1e-7');
    expect(formatFieldValue(true)).toBe('true');
    expect(formatFieldValue(false)).toBe('false');
    expect(formatFieldValue('E')).toBe('"E"');
  });

  it('refuses numbers InfluxDB cannot store', () => {
    for (const bad of [Number.NaN, Infinity, -Infinity]) expect(() => formatFieldValue(bad)).toThrow(RangeError);
  });
});

describe('formatLine', () => {
  it('builds a point, leaving out undefined tags and fields', () => {
    const line = formatLine('alerts', { device: 'hn-air-01', domain: undefined, province: '01' }, { id: 'a|b', value: 62.1, field: undefined, ok: true }, 1_790_000_000_123);
    expect(line).toBe('alerts,device=hn-air-01,province=01 id="a|b",value=62.1,ok=true 1790000000123');
  });

  it('escapes every part', () => {
    expect(formatLine('m x', { 'k,1': 'v 1' }, { 'f=1': 'say "hi"' }, 1)).toBe('m\\ x,k\\,1=v\\ 1 f\\=1="say \\"hi\\"" 1');
  });

  it('refuses what cannot be a point', () => {
    expect(() => formatLine('m', {}, {}, 1)).toThrow(/at least one field/);
    expect(() => formatLine('m', {}, { a: undefined }, 1)).toThrow(/at least one field/);
    expect(() => formatLine('m', { time: 'x' }, { a: 1 }, 1)).toThrow(/"time"/);
    expect(() => formatLine('m', {}, { time: 1 }, 1)).toThrow(/"time"/);
    expect(() => formatLine('m', {}, { a: 1 }, 1.5)).toThrow(/timestamp/);
    expect(() => formatLine('m', {}, { a: Number.NaN }, 1)).toThrow(RangeError);
  });
});
