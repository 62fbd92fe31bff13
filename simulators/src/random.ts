/**
 * Seeded randomness for placement and models. Math.random is never used: the same seed must give
 * the same devices and the same readings, in tests and between runs.
 */

/** mulberry32: a tiny 32-bit PRNG, good enough for simulation (not for secrets). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * Derives an independent 32-bit seed from a seed and labels (FNV-1a, then murmur3's finaliser).
 * Each device and each reading gets its own stream, so adding a device never shifts the others.
 */
export function deriveSeed(seed: number, ...labels: readonly (string | number)[]): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (const label of labels) {
    const text = `${String(label)}\u0000`;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Rng {
  readonly #next: () => number;
  #spareNormal: number | undefined;

  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.#next();
  }

  between(min: number, max: number): number {
    return min + (max - min) * this.#next();
  }

  pick<T>(items: readonly [T, ...T[]]): T {
    return items[Math.floor(this.#next() * items.length)] ?? items[0];
  }

  /** Standard normal (Box–Muller, keeping the second value for the next call). */
  normal(): number {
    if (this.#spareNormal !== undefined) {
      const spare = this.#spareNormal;
      this.#spareNormal = undefined;
      return spare;
    }
    const u = 1 - this.#next(); // (0, 1]: log(0) never happens
    const v = this.#next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Poisson counts: vehicles passing a detector arrive roughly independently. */
  poisson(mean: number): number {
    if (!(mean > 0)) return 0;
    if (mean > 40) return Math.max(0, Math.round(mean + Math.sqrt(mean) * this.normal()));
    // Knuth's method: fine for small means, which is what short counting periods give.
    const limit = Math.exp(-mean);
    let k = 0;
    let p = this.#next();
    while (p > limit) {
      k++;
      p *= this.#next();
    }
    return k;
  }

  /** Binomial draw, exact for small n and normal-approximated above. */
  binomial(n: number, p: number): number {
    if (n <= 0 || p <= 0) return 0;
    if (p >= 1) return n;
    if (n <= 60) {
      let k = 0;
      for (let i = 0; i < n; i++) if (this.#next() < p) k++;
      return k;
    }
    const draw = Math.round(n * p + Math.sqrt(n * p * (1 - p)) * this.normal());
    return Math.min(n, Math.max(0, draw));
  }
}

/** Parameters of one mean-reverting random walk (an Ornstein–Uhlenbeck process). */
export interface WalkSpec {
  /** Standard deviation of the walk's stationary distribution. */
  readonly sigma: number;
  /** Time constant: how long a deviation takes to fade to 1/e, seconds. */
  readonly tauS: number;
}

/**
 * Advances an Ornstein–Uhlenbeck walk by `dtS` seconds with the exact discretisation, so the
 * statistics do not depend on the publish interval: short steps stay strongly correlated, long
 * gaps forget the past.
 */
export function walkStep(value: number, dtS: number, spec: WalkSpec, z: number): number {
  const a = Math.exp(-Math.max(0, dtS) / spec.tauS);
  return value * a + spec.sigma * Math.sqrt(1 - a * a) * z;
}

/** Advances (or, when absent, starts from the stationary distribution) every walk of a spec. */
export function advanceWalks<K extends string>(
  specs: Readonly<Record<K, WalkSpec>>,
  previous: Readonly<Record<string, number>>,
  dtS: number | undefined,
  rng: Rng,
): Record<K, number> {
  const next = {} as Record<K, number>;
  for (const key of Object.keys(specs) as K[]) {
    const spec = specs[key];
    const prev = previous[key];
    next[key] = prev === undefined || dtS === undefined ? spec.sigma * rng.normal() : walkStep(prev, dtS, spec, rng.normal());
  }
  return next;
}
