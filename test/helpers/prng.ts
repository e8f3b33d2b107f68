/**
 * A seeded PRNG for fuzzers and property tests, so that a failure can be reproduced from the
 * seed it prints (NSIDMAP_FUZZ_SEED overrides each file's default).
 */

/** mulberry32: tiny, fast, and good enough to drive a fuzzer. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed: NSIDMAP_FUZZ_SEED when set, else the file's own default. */
export function fuzzSeed(fallback: number): number {
  return Number(process.env['NSIDMAP_FUZZ_SEED'] ?? fallback) >>> 0;
}

/** `int(n)`: 0..n-1; `pick(xs)`: one element — both drawn from `rnd`. */
export function draws(rnd: () => number): { int: (n: number) => number; pick: <T>(xs: readonly T[]) => T } {
  const int = (n: number): number => Math.floor(rnd() * n);
  return { int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]! };
}
