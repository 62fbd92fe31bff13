import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BROKER_CONFIG, BROKER_DEFAULTS, BROKER_LIMIT_SPECS, guardPacketSize, limitsFromConfig, limitVariable, LoginThrottle, RateLimiter, domainOfTopic, type RateWindow } from '../src/index.js';
import { readConfig } from '@citypulse/contracts';

describe('per-device publish rate (token bucket)', () => {
  const settings = { perSecond: 10, burst: 20, windowMs: 10_000, abuseWindows: 3 };

  it('lets a burst through, then the sustained rate, and drops the rest', () => {
    const limiter = new RateLimiter(settings);
    const verdicts = Array.from({ length: 25 }, () => limiter.take('d1', 0));
    expect(verdicts.filter((v) => v === 'pass')).toHaveLength(20);
    expect(verdicts.slice(20)).toEqual(['drop', 'drop', 'drop', 'drop', 'drop']);
    // 500 ms later, 5 tokens are back.
    const later = Array.from({ length: 7 }, () => limiter.take('d1', 500));
    expect(later.filter((v) => v === 'pass')).toHaveLength(5);
    // Another device has its own bucket.
    expect(limiter.take('d2', 500)).toBe('pass');
  });

  it('reports each window with drops once, and calls it abuse after N windows in a row', () => {
    const windows: RateWindow[] = [];
    const limiter = new RateLimiter(settings, (w) => windows.push(w));
    const flood = (from: number) => {
      const verdicts = [];
      for (let t = from; t < from + 10_000; t += 10) verdicts.push(limiter.take('d1', t)); // 100/s against 10/s
      return verdicts;
    };
    expect(flood(0)).not.toContain('abuse');
    expect(flood(10_000)).not.toContain('abuse');
    expect(windows).toHaveLength(1);
    expect(windows[0]).toMatchObject({ deviceId: 'd1', strikes: 1 });
    expect(windows[0]?.dropped).toBeGreaterThan(800);
    expect(flood(20_000)).toContain('abuse');
  });

  it('forgives a device that calms down', () => {
    const limiter = new RateLimiter(settings);
    for (let t = 0; t < 10_000; t += 10) limiter.take('d1', t);
    for (let t = 10_000; t < 20_000; t += 10) limiter.take('d1', t);
    // A quiet window clears the strikes.
    for (let t = 20_000; t < 30_000; t += 200) expect(limiter.take('d1', t)).toBe('pass');
    const verdicts = [];
    for (let t = 30_000; t < 40_000; t += 10) verdicts.push(limiter.take('d1', t));
    expect(verdicts).not.toContain('abuse');
  });
});

describe('failed logins per address', () => {
  const throttle = () => new LoginThrottle({ slowAfter: 3, refuseAfter: 6, windowMs: 60_000, baseDelayMs: 100, maxDelayMs: 1_000, maxAddresses: 3 });

  it('checks at once, then slows down (doubling, capped), then refuses until the window ends', () => {
    const t = throttle();
    const delays = [];
    for (let i = 0; i < 6; i++) {
      const verdict = t.check('10.0.0.9', 1000);
      delays.push(verdict.action === 'check' ? verdict.delayMs : -1);
      t.failed('10.0.0.9', 1000);
    }
    expect(delays).toEqual([0, 0, 0, 100, 200, 400]);
    expect(t.check('10.0.0.9', 2000)).toEqual({ action: 'refuse', retryAfterMs: 59_000 });
    expect(t.refusedCount(2000)).toBe(1);
    expect(t.check('10.0.0.10', 2000)).toEqual({ action: 'check', delayMs: 0 });
    expect(t.check('10.0.0.9', 61_000)).toEqual({ action: 'check', delayMs: 0 });
  });

  it('a success clears the address; memory stays bounded under a scan from many addresses', () => {
    const t = throttle();
    for (let i = 0; i < 4; i++) t.failed('a', 0);
    t.succeeded('a');
    expect(t.check('a', 0)).toEqual({ action: 'check', delayMs: 0 });
    for (const address of ['b', 'c', 'd', 'e']) for (let i = 0; i < 6; i++) t.failed(address, 0);
    expect(t.refusedCount(0)).toBe(3); // 'b' was forgotten to make room
  });
});

describe('oversized packets', () => {
  const frame = (type: number, length: number) => {
    const bytes = [type];
    let n = length;
    do {
      let byte = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) byte |= 0x80;
      bytes.push(byte);
    } while (n > 0);
    return Buffer.concat([Buffer.from(bytes), Buffer.alloc(Math.min(length, 64))]);
  };

  it('follows packet boundaries across chunks and reports the first packet over the limit at its header', async () => {
    const stream = new PassThrough();
    const seen: number[] = [];
    guardPacketSize(stream, 1000, (bytes) => seen.push(bytes));
    const small = Buffer.concat([frame(0x30, 10).subarray(0, 12), frame(0x30, 200).subarray(0, 3 + 64)]);
    stream.write(small.subarray(0, 5));
    stream.write(small.subarray(5));
    stream.write(Buffer.alloc(200 - 64)); // the rest of the 200-byte body
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual([]);
    stream.write(frame(0x30, 5_000_000).subarray(0, 2)); // header split mid-length (1 type byte, 4 length bytes)
    stream.write(frame(0x30, 5_000_000).subarray(2, 5));
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual([5_000_000]);
  });
});

describe('configuration of the limits', () => {
  it('names one environment variable per limit and reads them all', () => {
    expect(limitVariable('connectTimeoutMs')).toBe('BROKER_CONNECT_TIMEOUT_MS');
    expect(limitVariable('ratePerS')).toBe('BROKER_RATE_PER_S');
    for (const key of Object.keys(BROKER_LIMIT_SPECS)) expect(Object.keys(BROKER_CONFIG)).toContain(limitVariable(key as keyof typeof BROKER_LIMIT_SPECS));
    expect(limitsFromConfig(readConfig(BROKER_CONFIG, {}))).toEqual(BROKER_DEFAULTS);
    expect(limitsFromConfig(readConfig(BROKER_CONFIG, { BROKER_RATE_PER_S: '50', BROKER_MAX_CONNECTIONS: '10' }))).toMatchObject({ ratePerS: 50, maxConnections: 10 });
  });

  it('refuses a bad value with the variable and its bounds', () => {
    expect(() => readConfig(BROKER_CONFIG, { BROKER_RATE_PER_S: '0' })).toThrow(/BROKER_RATE_PER_S=0 must be between 1 and 1000000/);
    expect(() => readConfig(BROKER_CONFIG, { BROKER_STORE: 'tape' })).toThrow(/BROKER_STORE/);
    expect(() => readConfig(BROKER_CONFIG, { BROKER_AUTH: 'maybe' })).toThrow(/BROKER_AUTH="maybe" must be true or false/);
  });
});

describe('domain of a topic', () => {
  it('reads the domain level without parsing the rest', () => {
    expect(domainOfTopic('city/01/traffic/hn-1/telemetry')).toBe('traffic');
    expect(domainOfTopic('city/79/environment/x/status')).toBe('environment');
    expect(domainOfTopic('city/48/energy/e')).toBe('energy');
    expect(domainOfTopic('city/48/energyx/e/telemetry')).toBe('other');
    expect(domainOfTopic('town/01/traffic/hn-1/telemetry')).toBe('other');
    expect(domainOfTopic('$SYS/broker/heartbeat')).toBe('other');
    expect(domainOfTopic('city')).toBe('other');
  });
});
