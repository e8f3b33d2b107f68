/**
 * The cache the daemon uses: a memory front for the hot path and a SQLite back that holds the
 * complete set and survives restarts. Writes go back-first and removals front-first, so the front
 * is always a subset of the back: a front hit never serves what the back has lost.
 */

import { MemoryStore } from './memory.js';
import { SqliteStore } from './sqlite.js';
import type { CacheEntry, CacheFilter, CacheStats, CacheStore } from './store.js';

export class TieredStore implements CacheStore {
  readonly #front: MemoryStore;
  readonly #back: CacheStore;

  constructor(front: MemoryStore, back: CacheStore) {
    this.#front = front;
    this.#back = back;
  }

  get(key: string): CacheEntry | undefined {
    const hit = this.#front.get(key);
    if (hit !== undefined) return hit;
    const entry = this.#back.get(key);
    // Promote, so the next lookup (e.g. after a restart, or after eviction) stays in memory.
    if (entry !== undefined) this.#front.set(entry);
    return entry;
  }

  set(entry: CacheEntry): void {
    this.#back.set(entry);
    this.#front.set(entry);
  }

  delete(key: string): boolean {
    const inFront = this.#front.delete(key);
    return this.#back.delete(key) || inFront;
  }

  /** Counts what the back removed: the front holds a subset, so its count adds nothing. */
  flush(filter?: CacheFilter): number {
    this.#front.flush(filter);
    return this.#back.flush(filter);
  }

  list(filter?: CacheFilter, limit?: number): CacheEntry[] {
    return this.#back.list(filter, limit);
  }

  stats(): CacheStats {
    return this.#back.stats();
  }

  close(): void {
    this.#front.close();
    this.#back.close();
  }
}

export interface OpenCacheOptions {
  /** SQLite file, or ':memory:' */
  readonly path: string;
  /** most entries the memory front keeps (default: unbounded) */
  readonly memoryEntries?: number;
}

/** The daemon's cache: memory in front of SQLite at `path`. Throws NSIDMAP_ECACHE when it cannot open. */
export function openCache(opts: OpenCacheOptions): CacheStore {
  return new TieredStore(new MemoryStore({ maxEntries: opts.memoryEntries }), new SqliteStore(opts.path));
}
