/**
 * Prometheus text exposition (format 0.0.4) for the services' /metrics. Counters and gauges are
 * plain numbers the services keep (the hot path only adds); histograms have fixed buckets.
 */
export type Sample = readonly [labels: string, value: number];

export class PrometheusText {
  readonly #out: string[] = [];

  family(name: string, type: 'counter' | 'gauge', help: string, samples: readonly Sample[]): this {
    this.#out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) this.#out.push(`${name}${labels} ${Number.isFinite(value) ? value : 0}`);
    return this;
  }

  histogram(name: string, help: string, histogram: Histogram): this {
    this.#out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    let cumulative = 0;
    histogram.bounds.forEach((bound, i) => {
      cumulative += histogram.counts[i] ?? 0;
      this.#out.push(`${name}_bucket{le="${bound}"} ${cumulative}`);
    });
    this.#out.push(`${name}_bucket{le="+Inf"} ${histogram.count}`, `${name}_sum ${histogram.sum}`, `${name}_count ${histogram.count}`);
    return this;
  }

  /** Memory, CPU and start time of this process (the standard `process_*` names). */
  process(startedAt: number): this {
    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    this.family('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', [['', memory.rss]]);
    this.family('process_heap_bytes', 'gauge', 'V8 heap used in bytes.', [['', memory.heapUsed]]);
    this.family('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, seconds.', [['', (cpu.user + cpu.system) / 1e6]]);
    this.family('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch, seconds.', [['', Math.floor(startedAt / 1000)]]);
    return this;
  }

  toString(): string {
    return `${this.#out.join('\n')}\n`;
  }
}

/** A histogram with fixed upper bounds; `observe` is O(buckets) and allocates nothing. */
export class Histogram {
  readonly bounds: readonly number[];
  readonly counts: number[];
  count = 0;
  sum = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = bounds.map(() => 0);
  }

  observe(value: number, times = 1): void {
    this.count += times;
    this.sum += value * times;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= (this.bounds[i] as number)) {
        (this.counts[i] as number) += times;
        return;
      }
    }
  }

  /** The upper bound of the bucket holding quantile q (0–1); Infinity past the last bound. */
  quantile(q: number): number {
    const rank = q * this.count;
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i] as number;
      if (cumulative >= rank && cumulative > 0) return this.bounds[i] as number;
    }
    return this.count === 0 ? 0 : Infinity;
  }
}
