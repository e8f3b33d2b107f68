/**
 * A latency histogram with fixed buckets, as Prometheus defines one: `le` is an upper bound
 * (inclusive), the last bucket is +Inf. Counts are kept per bucket (not cumulative) in a
 * preallocated Float64Array, so observe() is a short scan and two additions — no allocation.
 * Float64 rather than Uint32: a counter must not wrap (2^53 is out of reach).
 */

/**
 * Seconds. A warm cache hit takes microseconds, a directory round trip milliseconds, a directory
 * that times out seconds: the buckets span all three, with the fine ones first (the common case
 * leaves the scan early).
 */
export const LATENCY_BUCKETS: readonly number[] = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** A histogram as it travels (admin socket JSON): `counts` cumulative, the last one for +Inf. */
export interface HistogramSnapshot {
  /** upper bounds in seconds, ascending, without +Inf */
  readonly bounds: readonly number[];
  /** cumulative counts, `bounds.length + 1` of them (the last is +Inf, equal to `count`) */
  readonly counts: readonly number[];
  readonly sum: number;
  readonly count: number;
}

export class Histogram {
  readonly bounds: readonly number[];
  /** per bucket, not cumulative; index bounds.length is +Inf */
  private readonly buckets: Float64Array;
  private total = 0;
  private n = 0;

  constructor(bounds: readonly number[] = LATENCY_BUCKETS) {
    this.bounds = bounds;
    this.buckets = new Float64Array(bounds.length + 1);
  }

  /** `weight`: how many observations this one stands for (a sampled one stands for the untimed) */
  observe(seconds: number, weight = 1): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.buckets[i]! += weight;
    this.total += seconds * weight;
    this.n += weight;
  }

  get count(): number {
    return this.n;
  }

  snapshot(): HistogramSnapshot {
    const counts: number[] = [];
    let acc = 0;
    for (const c of this.buckets) counts.push((acc += c));
    return { bounds: this.bounds, counts, sum: this.total, count: this.n };
  }
}

/**
 * The value at quantile `q` (0..1), estimated as Prometheus' histogram_quantile() does: linear
 * interpolation inside the bucket that holds it. Undefined when nothing was observed; the highest
 * finite bound when the quantile falls in +Inf.
 */
export function quantile(h: HistogramSnapshot, q: number): number | undefined {
  if (h.count === 0) return undefined;
  const rank = q * h.count;
  for (let i = 0; i < h.counts.length; i++) {
    const upTo = h.counts[i]!;
    if (upTo < rank) continue;
    if (i >= h.bounds.length) return h.bounds[h.bounds.length - 1];
    const lo = i === 0 ? 0 : h.bounds[i - 1]!;
    const below = i === 0 ? 0 : h.counts[i - 1]!;
    const inBucket = upTo - below;
    return inBucket === 0 ? h.bounds[i]! : lo + (h.bounds[i]! - lo) * ((rank - below) / inBucket);
  }
  return h.bounds[h.bounds.length - 1];
}
