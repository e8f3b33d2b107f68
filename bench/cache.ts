/**
 * Cache get throughput and latency: `npx tsx bench/cache.ts`. Prints figures; asserts nothing.
 *
 * The resolver's budget is ≥ 200k resolves/s in total, so a front-cache get must cost well under
 * 1 µs. A memory get takes tens of ns, below what one hrtime reading can resolve, so latency is
 * taken per batch of gets and divided: p50/p99 are of that per-get mean (batch size printed).
 * Keys are read in a fixed pseudo-random order, so large caches pay their real CPU-cache misses.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../src/cache/memory.js';
import { SqliteStore } from '../src/cache/sqlite.js';
import type { CacheEntry } from '../src/cache/store.js';
import { TieredStore } from '../src/cache/tiered.js';

/** Wall time spent measuring each case (ms), after a warm-up of a quarter of it. */
const RUN_MS = 1000;
const ORDER_LEN = 1 << 20;

/** What is measured: a store, or a bare Map as the floor no store can beat. */
interface Getter {
  get(key: string): unknown;
}

interface Result {
  readonly opsPerSec: number;
  readonly p50: number;
  readonly p99: number;
}

function makeEntries(n: number): CacheEntry[] {
  const now = Date.now();
  const out = new Array<CacheEntry>(n);
  for (let i = 0; i < n; i++) {
    const negative = i % 10 === 0;
    out[i] = {
      key: `default\x1fname-to-uid\x1fuser${i}@example.com`,
      scope: 'default',
      value: negative ? null : String(100_000 + i),
      source: negative ? '' : 'ldap',
      stored: now,
      expires: now + 600_000,
    };
  }
  return out;
}

/** Indices in [0, n) from xorshift32: deterministic, so runs compare. */
function accessOrder(n: number): Uint32Array {
  const order = new Uint32Array(ORDER_LEN);
  let x = 0x9e3779b9;
  for (let i = 0; i < ORDER_LEN; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    order[i] = (x >>> 0) % n;
  }
  return order;
}

/** Runs batches of gets for `ms`; returns throughput and per-get latency percentiles (ns). */
function measure(store: Getter, keys: readonly string[], order: Uint32Array, batch: number, ms: number): Result {
  const samples: number[] = [];
  let pos = 0;
  let found = 0;
  let ops = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let t0 = start;
  while (t0 < deadline) {
    for (let i = 0; i < batch; i++) {
      // Counting hits keeps the lookups from being optimised away.
      if (store.get(keys[order[pos]!]!) !== undefined) found++;
      pos = (pos + 1) & (ORDER_LEN - 1);
    }
    const t1 = process.hrtime.bigint();
    samples.push(Number(t1 - t0) / batch);
    ops += batch;
    t0 = t1;
  }
  if (found !== ops) throw new Error(`bench bug: ${ops - found} of ${ops} gets missed`);
  samples.sort((a, b) => a - b);
  const pct = (p: number): number => samples[Math.min(samples.length - 1, Math.floor(samples.length * p))] ?? NaN;
  return { opsPerSec: ops / (Number(t0 - start) / 1e9), p50: pct(0.5), p99: pct(0.99) };
}

function report(label: string, store: Getter, keys: readonly string[], batch: number): void {
  const order = accessOrder(keys.length);
  measure(store, keys, order, batch, RUN_MS / 4);
  const r = measure(store, keys, order, batch, RUN_MS);
  const fmt = (ns: number): string => (ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`);
  console.log(
    `${label.padEnd(40)} ${Math.round(r.opsPerSec).toLocaleString('en-US').padStart(12)} ops/s` +
      `   p50 ${fmt(r.p50).padStart(9)}   p99 ${fmt(r.p99).padStart(9)}   (batch ${batch})`,
  );
}

/** Fills a SQLite store in one transaction: a million autocommits would time the disk, not the cache. */
function fillSqlite(store: SqliteStore, entries: readonly CacheEntry[]): void {
  store.db.transaction(() => {
    for (const e of entries) store.set(e);
  })();
}

function timed<T>(what: string, fn: () => T): T {
  const t = performance.now();
  const out = fn();
  console.log(`  (${what}: ${((performance.now() - t) / 1000).toFixed(1)} s)`);
  return out;
}

function main(): void {
  const dir = mkdtempSync(join(tmpdir(), 'nsidmap-bench-cache-'));
  try {
    console.log(`node ${process.version}, ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}`);
    runSize(dir, 1_000);
    runSize(dir, 1_000_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runSize(dir: string, n: number): void {
  const label = n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`;
  console.log(`\n${label} entries`);
  const entries = timed('build entries', () => makeEntries(n));
  const keys = entries.map((e) => e.key);

  const map = new Map(entries.map((e) => [e.key, e]));
  report(`bare Map.get (floor), ${label}`, map, keys, 100);
  map.clear();

  const memory = new MemoryStore();
  for (const e of entries) memory.set(e);
  report(`MemoryStore get, ${label}`, memory, keys, 100);
  memory.close();

  const sqlite = new SqliteStore(join(dir, `cache-${label}.db`));
  timed('fill SQLite file', () => fillSqlite(sqlite, entries));
  if (n >= 1_000_000) report(`SqliteStore get (file, WAL), ${label}`, sqlite, keys, 10);

  // Cold front: a 10k front over the whole set, so most gets read SQLite and promote (and evict).
  const cold = new TieredStore(new MemoryStore({ maxEntries: 10_000 }), sqlite);
  if (n >= 1_000_000) report(`TieredStore get, ${label}, 10k front`, cold, keys, 10);

  // Warm front: every key promoted once, as after the daemon has run a while.
  const tiered = new TieredStore(new MemoryStore(), sqlite);
  for (const k of keys) tiered.get(k);
  report(`TieredStore get, ${label}, warm front`, tiered, keys, 100);
  tiered.close();
}

main();
