import { PROVINCES } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import { fold, searchDevices, SEARCH_LIMIT, type SearchableDevice, type SearchResult } from '../src/ui/search.js';

const device = (id: string, name: string, province = '01'): SearchableDevice => ({ id, name, province });

const DEVICES: SearchableDevice[] = [
  device('env-01-0001', 'Trạm quan trắc Hà Nội 1'),
  device('env-01-0010', 'Trạm quan trắc Hà Nội 10'),
  device('env-01-0002', 'Trạm quan trắc Hà Nội 2'),
  device('trf-79-0001', 'Trạm đếm xe TP. Hồ Chí Minh Võ Văn Kiệt, đoạn 1 – làn 1', '79'),
  device('grid-48-0001', 'Trạm biến áp Đà Nẵng 1', '48'),
  device('env-48-0001', 'Trạm quan trắc Đà Nẵng 1', '48'),
  device('x-hanoi', 'Cảm biến phụ', '01'),
];

const keys = (results: readonly SearchResult[]): string[] => results.map((r) => (r.kind === 'province' ? `p:${r.province.code}` : `d:${r.device.id}`));

describe('fold', () => {
  it('drops case and Vietnamese diacritics, including đ', () => {
    expect(fold('Hà Nội')).toBe('ha noi');
    expect(fold('ĐÀ NẴNG')).toBe('da nang');
    expect(fold('Trạm đếm xe')).toBe('tram dem xe');
    expect(fold('Thừa Thiên Huế')).toBe('thua thien hue');
  });
});

describe('searchDevices', () => {
  it('ranks exact id, then id prefix, then a word of the name, then substrings', () => {
    const devices = [device('abc', 'Khác'), device('abc-2', 'Khác nữa'), device('zzz', 'Trạm Abc Bắc'), device('yyy', 'Trạm xabcx'), device('qqq', 'không liên quan')];
    expect(keys(searchDevices('ABC', devices, []))).toEqual(['d:abc', 'd:abc-2', 'd:zzz', 'd:yyy']);
  });

  it('ignores diacritics in the query and the names, and matches every word', () => {
    expect(keys(searchDevices('da nang', DEVICES, []))).toEqual(['d:grid-48-0001', 'd:env-48-0001']);
    expect(keys(searchDevices('Đà Nẵng quan', DEVICES, []))).toEqual(['d:env-48-0001']);
    expect(keys(searchDevices('vo van kiet', DEVICES, []))).toEqual(['d:trf-79-0001']);
    expect(searchDevices('   ', DEVICES, PROVINCES)).toEqual([]);
  });

  it('orders names naturally within a rank (2 before 10)', () => {
    // x-hanoi has both words only inside its id: a substring match, last.
    expect(keys(searchDevices('ha noi', DEVICES, []))).toEqual(['d:env-01-0001', 'd:env-01-0002', 'd:env-01-0010', 'd:x-hanoi']);
  });

  it('puts matching provinces first, by name without diacritics, English name or code', () => {
    expect(keys(searchDevices('ha noi', DEVICES, PROVINCES)).slice(0, 2)).toEqual(['p:01', 'd:env-01-0001']);
    expect(keys(searchDevices('hanoi', DEVICES, PROVINCES))).toEqual(['p:01', 'd:x-hanoi']);
    expect(keys(searchDevices('48', DEVICES, PROVINCES))[0]).toBe('p:48');
    expect(keys(searchDevices('hue', [], PROVINCES))).toEqual(['p:46']);
  });

  it('returns at most the limit, leaving room for devices when many provinces match', () => {
    const many = Array.from({ length: 500 }, (_, i) => device(`env-${i}`, `Trạm Hà ${i}`));
    const results = searchDevices('ha', many, PROVINCES);
    expect(results).toHaveLength(SEARCH_LIMIT);
    const provinces = results.filter((r) => r.kind === 'province');
    expect(provinces.length).toBeGreaterThan(0);
    expect(provinces.length).toBeLessThan(SEARCH_LIMIT);
    // The best devices of the 500, in natural order.
    const devices = results.flatMap((r) => (r.kind === 'device' ? [r.device.id] : []));
    expect(devices.slice(0, 3)).toEqual(['env-0', 'env-1', 'env-2']);
    expect(searchDevices('ha', many, PROVINCES, 3)).toHaveLength(3);
  });

  it('follows a renamed device', () => {
    const d = { id: 'env-9', name: 'Trạm cũ', province: '01' };
    expect(keys(searchDevices('cu', [d], []))).toEqual(['d:env-9']);
    d.name = 'Trạm mới';
    expect(keys(searchDevices('cu', [d], []))).toEqual([]);
    expect(keys(searchDevices('moi', [d], []))).toEqual(['d:env-9']);
  });
});
