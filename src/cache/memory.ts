/**
 * The in-memory store: the front of the tiered cache and the whole cache when no file is wanted.
 * A Map keeps insertion order, so re-inserting on every write makes the first key the least
 * recently written one: eviction is LRU-on-write without any bookkeeping on the read path.
 */

import { compareKeys } from './key-order.js';
import type { CacheEntry, CacheFilter, CacheStats, CacheStore } from './store.js';

export interface MemoryStoreOptions {
  /** Most entries kept; the least recently written go first. Default: unbounded. */
  readonly maxEntries?: number;
}

export class MemoryStore implements CacheStore {
  readonly #entries = new Map<string, CacheEntry>();
  readonly #max: number;

  constructor(options: MemoryStoreOptions = {}) {
    const max = options.maxEntries ?? Infinity;
    if (!(max === Infinity || (Number.isInteger(max) && max >= 0))) {
      throw new RangeError(`maxEntries must be a non-negative integer, got ${max}`);
    }
    this.#max = max;
  }

  /** The hot path: one Map lookup, nothing allocated. */
  get(key: string): CacheEntry | undefined {
    return this.#entries.get(key);
  }

  set(entry: CacheEntry): void {
    // delete first: Map.set on an existing key keeps its old position, and eviction must see
    // this key as the newest.
    this.#entries.delete(entry.key);
    this.#entries.set(entry.key, entry);
    if (this.#entries.size > this.#max) this.#evict();
  }

  delete(key: string): boolean {
    return this.#entries.delete(key);
  }

  flush(filter?: CacheFilter): number {
    if (filter?.scope === undefined && filter?.prefix === undefined) {
      const n = this.#entries.size;
      this.#entries.clear();
      return n;
    }
    let n = 0;
    // Deleting the current entry while iterating a Map is safe: iteration continues with the next.
    for (const entry of this.#entries.values()) {
      if (matches(entry, filter)) {
        this.#entries.delete(entry.key);
        n++;
      }
    }
    return n;
  }

  list(filter?: CacheFilter, limit = Infinity): CacheEntry[] {
    const out: CacheEntry[] = [];
    for (const entry of this.#entries.values()) {
      if (matches(entry, filter)) out.push(entry);
    }
    out.sort((a, b) => compareKeys(a.key, b.key));
    return out.length > limit ? out.slice(0, Math.max(0, limit)) : out;
  }

  stats(): CacheStats {
    let negative = 0;
    for (const entry of this.#entries.values()) if (entry.value === null) negative++;
    return { entries: this.#entries.size, negative };
  }

  close(): void {
    this.#entries.clear();
  }

  /** Drops the least recently written entries until the store fits again. */
  #evict(): void {
    const keys = this.#entries.keys();
    while (this.#entries.size > this.#max) {
      const oldest = keys.next();
      if (oldest.done === true) return;
      this.#entries.delete(oldest.value);
    }
  }
}

function matches(entry: CacheEntry, filter: CacheFilter | undefined): boolean {
  if (filter === undefined) return true;
  if (filter.scope !== undefined && entry.scope !== filter.scope) return false;
  return filter.prefix === undefined || entry.key.startsWith(filter.prefix);
}
