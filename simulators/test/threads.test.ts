import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { resolveScenario, scenarioFromFlags } from '../src/scenario.js';
import { MAX_THREADS, RecordMerge, resolveThreads, THREADS_AUTO_MIN_DEVICES } from '../src/simulation.js';
import type { RecordEntry } from '../src/simulation-worker.js';

const file = scenarioFromFlags({ provinces: ['01'], domains: ['energy'], devicesPerProvince: 1, intervalMs: 1000 });
const realTime = resolveScenario(file, { nowMs: 0 });
const max = resolveScenario(file, { nowMs: 0, speed: 'max' });

describe('how many threads run a simulation', () => {
  it('auto: one per core (up to the connections) for large real-time runs, else one', () => {
    const cores = availableParallelism();
    expect(resolveThreads({ scenario: realTime }, THREADS_AUTO_MIN_DEVICES - 1, 0)).toBe(1);
    expect(resolveThreads({ scenario: realTime }, 50_014, 0)).toBe(cores);
    expect(resolveThreads({ scenario: realTime, threads: 'auto' }, 50_014, 10)).toBe(Math.min(cores, 10));
    expect(resolveThreads({ scenario: realTime }, 50_014, 1)).toBe(1);
    expect(resolveThreads({ scenario: max }, 50_014, 10)).toBe(1);
    expect(resolveThreads({ scenario: realTime, wallClock: Date.now }, 50_014, 10)).toBe(1);
  });

  it('takes a number, capped by the connections, and says why it cannot', () => {
    expect(resolveThreads({ scenario: realTime, threads: 4 }, 100, 0)).toBe(4);
    expect(resolveThreads({ scenario: realTime, threads: 4 }, 100, 2)).toBe(2);
    expect(resolveThreads({ scenario: max, threads: 1 }, 100, 0)).toBe(1);
    expect(() => resolveThreads({ scenario: realTime, threads: 0 }, 100, 0)).toThrow(`threads 0 must be "auto" or a whole number from 1 to ${MAX_THREADS}`);
    expect(() => resolveThreads({ scenario: realTime, threads: 1.5 }, 100, 0)).toThrow(/threads 1.5 must be/);
    expect(() => resolveThreads({ scenario: max, threads: 2 }, 100, 0)).toThrow(/threads 2 needs a real-time speed/);
    expect(() => resolveThreads({ scenario: realTime, threads: 2, wallClock: Date.now }, 100, 0)).toThrow(/custom wall clock/);
  });
});

describe('merging what the threads publish into one recording', () => {
  const entry = (at: number, topic = 't'): RecordEntry => ({ at, topic, qos: 1, retain: false, payload: String(at) });

  it('writes in time order, holding a message while another thread may still send an older one', () => {
    const written: number[] = [];
    const merge = new RecordMerge({ write: (m) => written.push(m.at) }, 2);
    merge.add(0, [entry(10), entry(20), entry(30)], 30);
    expect(written).toEqual([]); // thread 1 has said nothing yet
    merge.add(1, [entry(15)], 25);
    expect(written).toEqual([10, 15, 20]); // 30 waits: thread 1 may still send something from 25 to 30
    merge.add(1, [], 40);
    expect(written).toEqual([10, 15, 20, 30]);
    merge.add(1, [entry(41), entry(42)], 42);
    merge.add(0, [entry(40)], 45);
    expect(written).toEqual([10, 15, 20, 30, 40, 41, 42]);
  });

  it('lets a finished thread out of the ordering, and drains everything at the end', () => {
    const written: number[] = [];
    const merge = new RecordMerge({ write: (m) => written.push(m.at) }, 3);
    merge.add(0, [entry(5), entry(9)], 9);
    merge.add(1, [entry(7)], 7);
    expect(written).toEqual([]);
    merge.close(2);
    expect(written).toEqual([5, 7]);
    merge.add(1, [entry(8)], 8);
    expect(written).toEqual([5, 7, 8]);
    merge.drain();
    expect(written).toEqual([5, 7, 8, 9]);
  });

  it('writes every message of a long run, in order', () => {
    let count = 0;
    let last = -Infinity;
    const merge = new RecordMerge(
      {
        write: (m) => {
          expect(m.at).toBeGreaterThanOrEqual(last);
          last = m.at;
          count++;
        },
      },
      2,
    );
    for (let t = 0; t < 20_000; t += 100) {
      merge.add(0, Array.from({ length: 100 }, (_, i) => entry(t + i)), t + 99);
      merge.add(1, Array.from({ length: 50 }, (_, i) => entry(t + 2 * i)), t + 99);
    }
    merge.drain();
    expect(count).toBe(200 * 150);
  });
});
