/**
 * Per-device publish rate (token bucket) and per-address login throttling. Both are plain data in
 * maps keyed by a short string, refilled lazily from a clock the caller passes in: nothing runs per
 * message except a subtraction and a comparison, and nothing runs at all for an idle device.
 */

export interface RateSettings {
  /** Sustained messages per second a device may publish. */
  readonly perSecond: number;
  /** Messages a device may send at once after being quiet. */
  readonly burst: number;
  /** A device over its limit in this many consecutive windows is disconnected (0: never). */
  readonly abuseWindows: number;
  /** Length of one accounting window, ms. */
  readonly windowMs: number;
}

/** What one device's bucket looks like from outside, for its status message and the logs. */
export interface RateWindow {
  readonly deviceId: string;
  /** Messages dropped in the window that just ended. */
  readonly dropped: number;
  /** Consecutive windows with drops, this one included. */
  readonly strikes: number;
}

interface Bucket {
  tokens: number;
  refilledAt: number;
  /** Drops in the current window. */
  dropped: number;
  windowStart: number;
  strikes: number;
}

export type RateVerdict = 'pass' | 'drop' | 'abuse';

/**
 * Token buckets by device id. `take` is the hot path: one map lookup, a refill from elapsed time,
 * one token. A window with drops is reported once through `onWindow` when the device next
 * publishes after the window ended, so a device that stops does not hold a timer.
 */
export class RateLimiter {
  readonly #settings: RateSettings;
  readonly #buckets = new Map<string, Bucket>();
  readonly #onWindow: (window: RateWindow) => void;

  constructor(settings: RateSettings, onWindow: (window: RateWindow) => void = () => undefined) {
    this.#settings = settings;
    this.#onWindow = onWindow;
  }

  /** Takes one token for `deviceId` at `now` (ms). 'abuse': over the limit for abuseWindows windows in a row. */
  take(deviceId: string, now: number): RateVerdict {
    const s = this.#settings;
    let bucket = this.#buckets.get(deviceId);
    if (!bucket) {
      bucket = { tokens: s.burst, refilledAt: now, dropped: 0, windowStart: now, strikes: 0 };
      this.#buckets.set(deviceId, bucket);
    }
    if (now - bucket.windowStart >= s.windowMs) this.#closeWindow(deviceId, bucket, now);
    const elapsed = now - bucket.refilledAt;
    if (elapsed > 0) {
      bucket.tokens = Math.min(s.burst, bucket.tokens + (elapsed * s.perSecond) / 1000);
      bucket.refilledAt = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 'pass';
    }
    bucket.dropped++;
    if (bucket.dropped === 1) bucket.strikes++;
    return s.abuseWindows > 0 && bucket.strikes >= s.abuseWindows ? 'abuse' : 'drop';
  }

  /** Forgets a device (it disconnected, or its rights changed). */
  forget(deviceId: string): void {
    this.#buckets.delete(deviceId);
  }

  get size(): number {
    return this.#buckets.size;
  }

  #closeWindow(deviceId: string, bucket: Bucket, now: number): void {
    if (bucket.dropped > 0) this.#onWindow({ deviceId, dropped: bucket.dropped, strikes: bucket.strikes });
    // Strikes count consecutive windows with drops: a clean window, or a silent gap of one or more, clears them.
    if (bucket.dropped === 0 || now - bucket.windowStart >= 2 * this.#settings.windowMs) bucket.strikes = 0;
    bucket.dropped = 0;
    bucket.windowStart = now;
  }
}

export interface LoginThrottleSettings {
  /** Failures from one address within windowMs after which each answer is delayed. */
  readonly slowAfter: number;
  /** Failures within windowMs after which the address is refused outright until the window ends. */
  readonly refuseAfter: number;
  readonly windowMs: number;
  /** First delay, doubled per further failure, capped at maxDelayMs. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** Addresses tracked at most (the oldest are forgotten first): a scan from many addresses stays bounded. */
  readonly maxAddresses: number;
}

interface Failures {
  count: number;
  firstAt: number;
}

export type LoginVerdict = { readonly action: 'check'; readonly delayMs: number } | { readonly action: 'refuse'; readonly retryAfterMs: number };

/**
 * Failed logins per client address. Below `slowAfter` failures a login is checked at once; from
 * there each answer waits longer (doubling); from `refuseAfter` the address is refused without
 * checking the secret (no scrypt work for an attacker) until its window ends. A success clears it.
 */
export class LoginThrottle {
  readonly #settings: LoginThrottleSettings;
  readonly #failures = new Map<string, Failures>();

  constructor(settings: LoginThrottleSettings) {
    this.#settings = settings;
  }

  /** What to do with a login from `address` now. */
  check(address: string, now: number): LoginVerdict {
    const entry = this.#current(address, now);
    if (!entry) return { action: 'check', delayMs: 0 };
    const s = this.#settings;
    if (entry.count >= s.refuseAfter) return { action: 'refuse', retryAfterMs: entry.firstAt + s.windowMs - now };
    if (entry.count < s.slowAfter) return { action: 'check', delayMs: 0 };
    return { action: 'check', delayMs: Math.min(s.maxDelayMs, s.baseDelayMs * 2 ** (entry.count - s.slowAfter)) };
  }

  failed(address: string, now: number): number {
    let entry = this.#current(address, now);
    if (!entry) {
      if (this.#failures.size >= this.#settings.maxAddresses) {
        const oldest = this.#failures.keys().next();
        if (!oldest.done) this.#failures.delete(oldest.value);
      }
      entry = { count: 0, firstAt: now };
      this.#failures.set(address, entry);
    }
    entry.count++;
    return entry.count;
  }

  succeeded(address: string): void {
    this.#failures.delete(address);
  }

  /** Addresses currently refused. */
  refusedCount(now: number): number {
    let n = 0;
    for (const [address] of this.#failures) if ((this.#current(address, now)?.count ?? 0) >= this.#settings.refuseAfter) n++;
    return n;
  }

  #current(address: string, now: number): Failures | undefined {
    const entry = this.#failures.get(address);
    if (entry && now - entry.firstAt >= this.#settings.windowMs) {
      this.#failures.delete(address);
      return undefined;
    }
    return entry;
  }
}
