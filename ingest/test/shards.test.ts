import { describe, expect, it } from 'vitest';
import { PROVINCE_CODES, TOPIC_FILTERS } from '@citypulse/contracts';
import { foreignFilters, parseShard, shardClientId, shardFilters, shardOf } from '../src/shards.js';

describe('ingest shards', () => {
  it('deals the 34 provinces out with no overlap and no gap, for every N', () => {
    for (let count = 1; count <= PROVINCE_CODES.length; count++) {
      const owners = new Map<string, number>();
      for (let index = 1; index <= count; index++) {
        for (const province of shardOf(index, count).provinces) {
          expect(owners.has(province)).toBe(false);
          owners.set(province, index);
        }
      }
      expect([...owners.keys()].sort()).toEqual([...PROVINCE_CODES].sort());
    }
  });

  it('parses i/N and says what to fix', () => {
    expect(parseShard('2/3')).toMatchObject({ index: 2, count: 3 });
    expect(parseShard(' 1 / 1 ').provinces).toHaveLength(34);
    expect(() => parseShard('2')).toThrow(/INGEST_SHARD="2" must be i\/N/);
    expect(() => parseShard('0/2')).toThrow(/i must be 1–2/);
    expect(() => parseShard('3/2')).toThrow(/i must be 1–2/);
    expect(() => parseShard('1/35')).toThrow(/N must be 1–34/);
    expect(() => parseShard('a/b')).toThrow(/must be i\/N/);
  });

  it('subscribes to its own provinces and drops every filter another layout left', () => {
    const shard = shardOf(1, 2);
    const own = shardFilters(shard);
    expect(own).toHaveLength(shard.provinces.length * 2);
    expect(own).toContain(TOPIC_FILTERS.provinceTelemetry(shard.provinces[0] as string));
    const foreign = foreignFilters(shard);
    expect(foreign).toContain(TOPIC_FILTERS.allTelemetry);
    expect(foreign.filter((f) => own.includes(f))).toEqual([]);
    expect(foreign).toHaveLength(2 + (34 - shard.provinces.length) * 2);
    expect(shardClientId(shardOf(1, 1))).toBe('ingest-1');
    expect(shardClientId(shard)).toBe('ingest-1');
    expect(shardClientId(shardOf(2, 2))).toBe('ingest-2');
  });
});
