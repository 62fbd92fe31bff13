import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fields } from '@citypulse/contracts';
import { Influx, startInfluxd, type RunningInfluxd, type SeriesResult } from '@citypulse/infra';
import { seriesPrefix, seriesReadingLine } from '../src/records.js';
import { StreamRollups } from '../src/rollups.js';
import { backfillRollups, ensureStorage, newestRaw, newestRollup } from '../src/storage.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const GRACE = 15_000;
/** 10:00 UTC on a day well inside the retention periods. */
const T = Math.floor((Date.now() - 2 * 24 * HOUR) / HOUR) * HOUR;
const PROVINCES = ['01', '79'];

const prefix = (device: string, province = '01') => seriesPrefix('environment', province, device, 'default');
const fields = (i: number): Fields => ({ seq: i, pm25: 10 + ((i * 7) % 23) + 0.25, temperature: 28 + (i % 5) / 10, aqiBand: i % 2 === 0 ? 'good' : 'moderate', calibrated: i % 3 === 0 });

/** A process that started on the hour before T (its start-up recovery done): every window from T on is its own. */
const running = () => {
  const r = new StreamRollups({ startedAt: T - HOUR - 30_000, recoverFrom: T - HOUR - MINUTE, provinces: PROVINCES, graceMs: GRACE });
  // The last minute before the start, and the hour it ends, from raw (3 domains each).
  expect(r.due(T).jobs.map((j) => `${j.resolutions.join()} ${j.from - T} ${j.to - T}`)).toEqual([...Array<string>(3).fill(`1m ${-HOUR - MINUTE} ${-HOUR}`), ...Array<string>(3).fill(`1h ${-2 * HOUR} ${-HOUR}`)]);
  return r;
};

describe('StreamRollups', () => {
  it('writes a minute once it is over and the grace has passed, with min, mean, max and count of each field', () => {
    const r = running();
    for (let s = 0; s < 60; s++) expect(r.add(prefix('a'), 'a', 'environment', T + s * 1000, { pm25: s, label: 'x' })).toEqual([]);
    expect(r.due(T + MINUTE + GRACE - 1).minute).toEqual([]);
    const due = r.due(T + MINUTE + GRACE);
    expect(due.minute).toEqual([`${prefix('a')} min_pm25=0,mean_pm25=29.5,max_pm25=59,count_pm25=60i,count_label=60i ${T}`]);
    expect(due.jobs).toEqual([]);
  });

  it('counts a redelivered reading (same timestamp) once', () => {
    const r = running();
    r.add(prefix('a'), 'a', 'environment', T, { pm25: 1 });
    r.add(prefix('a'), 'a', 'environment', T, { pm25: 1 });
    r.add(prefix('a'), 'a', 'environment', T + 1, { pm25: 3 });
    expect(r.due(T + MINUTE + GRACE).minute).toEqual([`${prefix('a')} min_pm25=1,mean_pm25=2,max_pm25=3,count_pm25=2i ${T}`]);
  });

  it('folds minutes into their hour, written after its last minute', () => {
    const r = running();
    for (let m = 0; m < 60; m++) r.add(prefix('a'), 'a', 'environment', T + m * MINUTE, { pm25: m });
    expect(r.due(T + HOUR - MINUTE + GRACE).hour).toEqual([]);
    const due = r.due(T + HOUR + GRACE);
    expect(due.hour).toEqual([`${prefix('a')} min_pm25=0,mean_pm25=29.5,max_pm25=59,count_pm25=60i ${T}`]);
  });

  it('a reading for a minute already written is late: its minute, and then its hour, are recomputed from raw', () => {
    const r = running();
    r.add(prefix('a'), 'a', 'environment', T, { pm25: 1 });
    r.due(T + MINUTE + GRACE);
    expect(r.add(prefix('a'), 'a', 'environment', T + 5, { pm25: 2 })).toEqual(['1m']);
    const due = r.due(T + HOUR + GRACE);
    expect(due.hour).toEqual([]); // not from memory: it lacks the late reading
    expect(due.jobs).toEqual([{ device: 'a', domain: 'environment', from: T, to: T + HOUR, resolutions: ['1h'] }]);
    // Once the hour is written too, a late reading needs both.
    expect(r.add(prefix('a'), 'a', 'environment', T + 6, { pm25: 2 })).toEqual(['1m', '1h']);
  });

  it('after a start mid-hour: the first minutes and that hour come from raw, for the shard', () => {
    const startedAt = T + 20 * MINUTE + 30_000;
    const r = new StreamRollups({ startedAt, recoverFrom: T + 17 * MINUTE, provinces: PROVINCES, graceMs: GRACE });
    // The minute it started in is not counted in memory, nor is a reading before the newest roll-up late yet…
    expect(r.add(prefix('a'), 'a', 'environment', T + 20 * MINUTE + 40_000, { pm25: 1 })).toEqual([]);
    expect(r.add(prefix('a'), 'a', 'environment', T + 10 * MINUTE, { pm25: 1 })).toEqual(['1m']);
    r.add(prefix('a'), 'a', 'environment', T + 21 * MINUTE, { pm25: 5 });
    const first = r.due(T + 22 * MINUTE + GRACE);
    expect(first.minute).toEqual([`${prefix('a')} min_pm25=5,mean_pm25=5,max_pm25=5,count_pm25=1i ${T + 21 * MINUTE}`]);
    expect(first.jobs).toEqual(['traffic', 'environment', 'energy'].map((domain) => ({ provinces: PROVINCES, domain, from: T + 17 * MINUTE, to: T + 21 * MINUTE, resolutions: ['1m'] })));
    const hour = r.due(T + HOUR + GRACE);
    expect(hour.hour).toEqual([]);
    expect(hour.jobs).toEqual(['traffic', 'environment', 'energy'].map((domain) => ({ provinces: PROVINCES, domain, from: T, to: T + HOUR, resolutions: ['1h'] })));
    // The next hour is its own.
    r.add(prefix('a'), 'a', 'environment', T + HOUR + 1, { pm25: 7 });
    expect(r.due(T + 2 * HOUR + GRACE).hour).toEqual([`${prefix('a')} min_pm25=7,mean_pm25=7,max_pm25=7,count_pm25=1i ${T + HOUR}`]);
  });

  it('after a start with nothing stored before it: the minute and hour it starts in are its own, nothing is recomputed', () => {
    const startedAt = T + 20 * MINUTE + 30_000;
    const r = new StreamRollups({ startedAt, recoverFrom: undefined, provinces: PROVINCES, graceMs: GRACE });
    // Readings of the start minute, sent before and after the start, are counted in memory.
    expect(r.add(prefix('a'), 'a', 'environment', T + 20 * MINUTE + 10_000, { pm25: 2 })).toEqual([]);
    expect(r.add(prefix('a'), 'a', 'environment', T + 20 * MINUTE + 40_000, { pm25: 4 })).toEqual([]);
    // One of an earlier minute (a device's backlog) is late from the start: its device is recomputed once it is stored.
    expect(r.add(prefix('b'), 'b', 'environment', T + 5 * MINUTE, { pm25: 1 })).toEqual(['1m']);
    expect(r.add(prefix('b'), 'b', 'environment', T - MINUTE, { pm25: 1 })).toEqual(['1m', '1h']);
    const first = r.due(T + 21 * MINUTE + GRACE);
    expect(first.minute).toEqual([`${prefix('a')} min_pm25=2,mean_pm25=3,max_pm25=4,count_pm25=2i ${T + 20 * MINUTE}`]);
    expect(first.jobs).toEqual([]);
    // The hour it started in is written from memory, except the device with a late reading in it.
    const hour = r.due(T + HOUR + GRACE);
    expect(hour.hour).toEqual([`${prefix('a')} min_pm25=2,mean_pm25=3,max_pm25=4,count_pm25=2i ${T}`]);
    expect(hour.jobs).toEqual([{ device: 'b', domain: 'environment', from: T, to: T + HOUR, resolutions: ['1h'] }]);
  });
});

/** Against Debian's influxd: what the stream writes is what the continuous query's statement writes. */
describe('stream roll-ups in InfluxDB', () => {
  let dir: string;
  let influxd: RunningInfluxd;
  let influx: Influx;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-rollups-'));
    influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
    influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
    await ensureStorage(influx, { rawRetention: '30d', rollup1mRetention: '90d', rollup1hRetention: '730d', continuousQueries: false });
  }, 60_000);

  afterAll(async () => {
    await influxd?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const read = async (rp: string): Promise<Record<string, unknown>[]> => {
    const [series = []] = await influx.query(`SELECT * FROM "citypulse"."${rp}"."environment" GROUP BY * ORDER BY time`);
    return series.flatMap((s: SeriesResult) => s.values.map((row) => ({ ...s.tags, ...Object.fromEntries(s.columns.map((c, i) => [c, row[i]])) })));
  };

  it('gives the points the continuous query statement gives, field for field, in both roll-ups', async () => {
    const r = running();
    const raw: string[] = [];
    // Two devices in two provinces, readings every 7 s for 2 hours, arriving out of order within a minute, one sent twice.
    for (const [device, province] of [['a', '01'], ['b', '79']] as const) {
      const readings: number[] = [];
      for (let ts = T + 3000; ts < T + 2 * HOUR; ts += 7000) readings.push(ts);
      for (let i = 0; i < readings.length; i++) {
        const j = i % 2 === 0 ? Math.min(i + 1, readings.length - 1) : i - 1; // pairs swapped
        const at = readings[j] as number;
        const f = fields(i);
        raw.push(seriesReadingLine(prefix(device, province), at, f));
        r.add(prefix(device, province), device, 'environment', at, f);
        if (i % 50 === 0) r.add(prefix(device, province), device, 'environment', at, f); // a redelivery
      }
    }
    await influx.writeLines(raw);
    const due = r.due(T + 2 * HOUR + GRACE);
    expect(due.jobs).toEqual([]);
    await influx.writeLines(due.minute, { retentionPolicy: 'rollup_1m' });
    await influx.writeLines(due.hour, { retentionPolicy: 'rollup_1h' });
    const stream = { '1m': await read('rollup_1m'), '1h': await read('rollup_1h') };
    expect(stream['1m']).toHaveLength(2 * 120);
    expect(stream['1h']).toHaveLength(2 * 2);
    expect(await newestRollup(influx, PROVINCES)).toBe(T + 2 * HOUR - MINUTE);
    expect(await newestRollup(influx, ['48'])).toBeUndefined();
    // What a starting ingest checks: any raw reading of its provinces in a range?
    expect(await newestRaw(influx, PROVINCES, T, T + 2 * HOUR)).toBeGreaterThan(T + 2 * HOUR - MINUTE);
    expect(await newestRaw(influx, PROVINCES, T, T + 3000)).toBeUndefined();
    expect(await newestRaw(influx, ['48'], T, T + 2 * HOUR)).toBeUndefined();

    // The CQ statement over the same raw points writes the same series and times: it overwrites them.
    await backfillRollups(influx, T, T + 2 * HOUR, { provinces: PROVINCES });
    for (const rp of ['rollup_1m', 'rollup_1h'] as const) {
      const cq = await read(rp);
      const mine = stream[rp === 'rollup_1m' ? '1m' : '1h'];
      expect(cq).toHaveLength(mine.length);
      for (let i = 0; i < cq.length; i++) {
        const want = cq[i] as Record<string, unknown>;
        const got = mine[i] as Record<string, unknown>;
        expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
        for (const [key, value] of Object.entries(want)) {
          if (typeof value === 'number' && key.startsWith('mean_')) expect(got[key] as number).toBeCloseTo(value, 9);
          else expect(got[key], `${rp} ${key} at ${String(want.time)}`).toEqual(value);
        }
      }
    }
  });
});
