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

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * Derives an independent 32-bit seed from a seed and labels (FNV-1a, then murmur3's finaliser).
 * Each device and each reading gets its own stream, so adding a device never shifts the others.
 */
export function deriveSeed(seed: number, ...labels: readonly (string | number)[]): number {
  let h = (FNV_OFFSET ^ seed) >>> 0;
  for (const label of labels) h = hashLabel(h, label);
  return finalise(h);
}

/**
 * The hash state after `seed` and `labels`, to be finished with {@link seedFromPrefix}:
 * `seedFromPrefix(seedPrefix(s, 'a', 'b'), n) === deriveSeed(s, 'a', 'b', n)`. Hot paths (one
 * stream per reading) hash the device id once instead of on every reading.
 */
export function seedPrefix(seed: number, ...labels: readonly (string | number)[]): number {
  let h = (FNV_OFFSET ^ seed) >>> 0;
  for (const label of labels) h = hashLabel(h, label);
  return h;
}

export function seedFromPrefix(prefix: number, label: string | number): number {
  return finalise(hashLabel(prefix, label));
}

function hashLabel(h: number, label: string | number): number {
  const text = typeof label === 'string' ? label : String(label);
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  // The label separator, "\u0000": xor with 0 changes nothing, the multiplication does.
  return Math.imul(h, FNV_PRIME);
}

function finalise(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Rng {
  /** mulberry32's state, kept inline (no closure): one Rng is created per reading. */
  #state: number;
  #spareNormal: number | undefined;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1); the same sequence as {@link mulberry32}. */
  uniform(): number {
    const a = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  between(min: number, max: number): number {
    return min + (max - min) * this.uniform();
  }

  pick<T>(items: readonly [T, ...T[]]): T {
    return items[Math.floor(this.uniform() * items.length)] ?? items[0];
  }

  /** Standard normal (Box–Muller, keeping the second value for the next call). */
  normal(): number {
    if (this.#spareNormal !== undefined) {
      const spare = this.#spareNormal;
      this.#spareNormal = undefined;
      return spare;
    }
    const u = 1 - this.uniform(); // (0, 1]: log(0) never happens
    const v = this.uniform();
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
    let p = this.uniform();
    while (p > limit) {
      k++;
      p *= this.uniform();
    }
    return k;
  }

  /** Binomial draw, exact for small n and normal-approximated above. */
  binomial(n: number, p: number): number {
    if (n <= 0 || p <= 0) return 0;
    if (p >= 1) return n;
    if (n <= 60) {
      let k = 0;
      for (let i = 0; i < n; i++) if (this.uniform() < p) k++;
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

/**
 * A model's named walks, advanced together once per reading: every walk starts from its stationary
 * distribution and then follows {@link walkStep}. The names are listed once, not per reading.
 */
export class WalkSet<K extends string> {
  readonly #keys: readonly K[];
  readonly #specs: readonly WalkSpec[];

  constructor(specs: Readonly<Record<K, WalkSpec>>) {
    this.#keys = Object.keys(specs) as K[];
    this.#specs = this.#keys.map((key) => specs[key]);
  }

  /** The next values after `dtS` seconds; draws one normal per walk from `rng`. */
  advance(previous: Readonly<Record<string, number>>, dtS: number | undefined, rng: Rng): Record<K, number> {
    const next = {} as Record<K, number>;
    for (let i = 0; i < this.#keys.length; i++) {
      const key = this.#keys[i] as K;
      const spec = this.#specs[i] as WalkSpec;
      const prev = previous[key];
      next[key] = prev === undefined || dtS === undefined ? spec.sigma * rng.normal() : walkStep(prev, dtS, spec, rng.normal());
    }
    return next;
  }
}
