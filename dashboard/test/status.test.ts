import { describe, expect, it } from 'vitest';
import { STALE_AFTER_MS, staleFor } from '../src/ui/status.js';

describe('staleFor', () => {
  const connected = { kind: 'connected', provinces: ['01'] } as const;

  it('flags the data as stale after 15 s without a frame or heartbeat', () => {
    expect(STALE_AFTER_MS).toBe(15_000);
    expect(staleFor(connected, 1_000, 1_000 + 15_000)).toBeNull();
    expect(staleFor(connected, 1_000, 1_000 + 15_001)).toBe(15_001);
  });

  it('says nothing before the first sign of life or after an intentional close', () => {
    expect(staleFor(connected, null, 100_000)).toBeNull();
    expect(staleFor({ kind: 'closed' }, 1_000, 100_000)).toBeNull();
    expect(staleFor({ kind: 'reconnecting', reason: 'transport close' }, 1_000, 100_000)).toBe(99_000);
  });
});
