import { describe, expect, it } from 'vitest';
import { PROVINCE_CODES, TOPIC_FILTERS } from '@citypulse/contracts';
import { everyShardFilter, foreignFilters, MAX_SHARDS, orphanClientIds, parseShard, sessionIndex, shardClientId, shardFilters, shardOf } from '../src/shards.js';

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

  it('gives each session a removed worker can have left (ingest-j, j > N) to exactly one worker of the layout, spread over them', () => {
    for (let count = 1; count <= MAX_SHARDS; count++) {
      const drainers = new Map<string, number>();
      for (let index = 1; index <= count; index++) {
        for (const id of orphanClientIds(shardOf(index, count))) {
          expect(drainers.has(id), `${id} with N=${count}`).toBe(false);
          drainers.set(id, index);
        }
      }
      const expected = Array.from({ length: MAX_SHARDS - count }, (_, k) => `ingest-${count + 1 + k}`);
      expect([...drainers.keys()].sort(), `N=${count}`).toEqual(expected.sort());
      for (const [id, index] of drainers) expect(index, id).toBe(((Number(id.slice(7)) - 1) % count) + 1);
    }
    // 3 → 1: the single worker drains ingest-2 and ingest-3 (and checks the rest up to 34).
    expect(orphanClientIds(shardOf(1, 1)).slice(0, 2)).toEqual(['ingest-2', 'ingest-3']);
    // 6 → 2: worker 1 drains 3 and 5, worker 2 drains 4 and 6.
    expect(orphanClientIds(shardOf(1, 2)).slice(0, 2)).toEqual(['ingest-3', 'ingest-5']);
    expect(orphanClientIds(shardOf(2, 2)).slice(0, 2)).toEqual(['ingest-4', 'ingest-6']);
    // Never its own session, whatever INGEST_CLIENT_ID says.
    expect(orphanClientIds(shardOf(1, 1), 'ingest-5')).not.toContain('ingest-5');
    expect(orphanClientIds(shardOf(34, 34))).toEqual([]);
  });

  it('reads the worker of a default session id, and nothing else', () => {
    expect(sessionIndex('ingest-1')).toBe(1);
    expect(sessionIndex('ingest-34')).toBe(34);
    for (const id of ['ingest-0', 'ingest-35', 'ingest-01', 'ingest-e2e', 'ingest-2-of-3', 'xingest-2']) expect(sessionIndex(id), id).toBeUndefined();
    // The drain drops every filter a layout can subscribe: the country-wide ones and each province's.
    expect(everyShardFilter()).toHaveLength(2 + 34 * 2);
    expect(new Set(everyShardFilter())).toEqual(new Set([...shardFilters(shardOf(1, 1)), ...foreignFilters(shardOf(1, 1))]));
  });
});
