/**
 * The cache the daemon uses: a memory front for the hot path and a SQLite back that holds the
 * complete set and survives restarts.
 *
 * Writes reach the front at once and the back a moment later: every write made in one turn of the
 * event loop goes to SQLite in one transaction (setImmediate), so a miss does not wait for a
 * commit (~17 µs each here) and a burst of misses — an `ls -l` over many owners — costs one
 * commit instead of hundreds. Until then a pending entry answers from the front, or from the
 * pending set if the front let it go; every other operation (delete, flush, list, stats, close)
 * writes the pending set first, so the store behaves exactly as if writes were synchronous. What a
 * crash can lose is the last turn's writes: for a cache, a question asked again.
 *
 * A write that fails (disk full, a read-only file) does not fail the lookup that caused it: the
 * answer is already in memory. `onWriteError` hears about it; the entries stay in the front (and
 * are missing from the file, and so from `list` and `stats`, which read it).
 */

import { MemoryStore } from './memory.js';
import { SqliteStore } from './sqlite.js';
import type { CacheEntry, CacheFilter, CacheStats, CacheStore } from './store.js';

export interface TieredOptions {
  /** a batch of `lost` entries could not be written to the back */
  readonly onWriteError?: (e: unknown, lost: number) => void;
}

export class TieredStore implements CacheStore {
  readonly #front: MemoryStore;
  readonly #back: CacheStore;
  readonly #onWriteError: ((e: unknown, lost: number) => void) | undefined;
  /** written to the front, not yet to the back; in write order */
  readonly #pending = new Map<string, CacheEntry>();
  #scheduled: NodeJS.Immediate | undefined;

  constructor(front: MemoryStore, back: CacheStore, opts: TieredOptions = {}) {
    this.#front = front;
    this.#back = back;
    this.#onWriteError = opts.onWriteError;
  }

  get(key: string): CacheEntry | undefined {
    const hit = this.#front.get(key);
    if (hit !== undefined) return hit;
    const pending = this.#pending.get(key);
    if (pending !== undefined) return pending;
    const entry = this.#back.get(key);
    // Promote, so the next lookup (e.g. after a restart, or after eviction) stays in memory.
    if (entry !== undefined) this.#front.set(entry);
    return entry;
  }

  set(entry: CacheEntry): void {
    this.#front.set(entry);
    this.#pending.delete(entry.key);
    this.#pending.set(entry.key, entry);
    this.#scheduled ??= setImmediate(() => this.writePending());
  }

  delete(key: string): boolean {
    const wasPending = this.#pending.delete(key);
    const inFront = this.#front.delete(key);
    return this.#back.delete(key) || inFront || wasPending;
  }

  /** Counts what the back removed (after writing what was pending): the front holds a subset. */
  flush(filter?: CacheFilter): number {
    this.writePending();
    this.#front.flush(filter);
    return this.#back.flush(filter);
  }

  list(filter?: CacheFilter, limit?: number): CacheEntry[] {
    this.writePending();
    return this.#back.list(filter, limit);
  }

  stats(): CacheStats {
    this.writePending();
    return this.#back.stats();
  }

  close(): void {
    this.writePending();
    this.#front.close();
    this.#back.close();
  }

  /** How many entries wait for the back (tests, status). */
  get pendingWrites(): number {
    return this.#pending.size;
  }

  /** Writes the pending entries to the back, in one transaction where the back has them. */
  writePending(): void {
    if (this.#scheduled !== undefined) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending.values()];
    this.#pending.clear();
    try {
      if (this.#back.setMany) this.#back.setMany(batch);
      else for (const e of batch) this.#back.set(e);
    } catch (e) {
      // never thrown: this runs from setImmediate too, where a throw would take the daemon down
      this.#onWriteError?.(e, batch.length);
    }
  }
}

export interface OpenCacheOptions extends TieredOptions {
  /** SQLite file, or ':memory:' */
  readonly path: string;
  /** most entries the memory front keeps (default: unbounded) */
  readonly memoryEntries?: number;
}

/** The daemon's cache: memory in front of SQLite at `path`. Throws NSIDMAP_ECACHE when it cannot open. */
export function openCache(opts: OpenCacheOptions): CacheStore {
  return new TieredStore(new MemoryStore({ maxEntries: opts.memoryEntries }), new SqliteStore(opts.path), opts);
}
