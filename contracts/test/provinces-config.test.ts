import { describe, expect, it } from 'vitest';
import { isInsideProvince, PROVINCE_CODES, PROVINCES, provinceByCode, readConfig } from '../src/index.js';

describe('province catalogue', () => {
  it('has the 34 units of 1 July 2025 with their label points inside', () => {
    expect(PROVINCES).toHaveLength(34);
    expect(new Set(PROVINCE_CODES).size).toBe(34);
    expect(PROVINCES.filter((p) => p.type === 'city')).toHaveLength(7);
    for (const p of PROVINCES) expect(isInsideProvince(p.code, p.label), p.name).toBe(true);
    expect(provinceByCode('01')?.name).toBe('Hà Nội');
    expect(provinceByCode('79')?.nameEn).toMatch(/Ho Chi Minh/);
    expect(provinceByCode('02')).toBeUndefined(); // Hà Giang merged into Tuyên Quang (08)
  });

  it('frames the mainland, not far islands', () => {
    const daNang = provinceByCode('48');
    expect(daNang?.bbox[2]).toBeLessThan(109); // Hoàng Sa lies near 112°E
    expect(isInsideProvince('01', [106.7, 10.78])).toBe(false); // Sài Gòn is not in Hà Nội
  });
});

describe('configuration', () => {
  const spec = {
    PORT: { kind: 'port', default: '3000', description: 'http port' },
    MODE: { kind: 'enum', default: 'a', values: ['a', 'b'], description: 'mode' },
    SECRET: { kind: 'string', description: 'required secret', secret: true },
    FLAG: { kind: 'bool', default: 'false', description: 'flag' },
  } as const;

  it('parses typed values with defaults', () => {
    expect(readConfig(spec, { SECRET: 's', PORT: '8080', FLAG: 'yes' })).toEqual({ PORT: 8080, MODE: 'a', SECRET: 's', FLAG: true });
  });

  it('names every bad variable at once', () => {
    expect(() => readConfig(spec, { PORT: '99999', MODE: 'c', FLAG: 'maybe' })).toThrow(/PORT=99999[\s\S]*MODE="c"[\s\S]*SECRET is required[\s\S]*FLAG="maybe"/);
  });
});
