/**
 * The in-memory store: the front of the tiered cache and the whole cache when no file is wanted.
 * A Map keeps insertion order, so re-inserting on every write makes the first key the least
 * recently written one: eviction is LRU-on-write without any bookkeeping on the read path.
 * The Map holds slot numbers; the fields live in columns (typed arrays where they are numbers),
 * so an entry costs its key, its value and ~80 bytes of table.
 */

import { compareKeys } from './key-order.js';
import type { CacheEntry, CacheFilter, CacheStats, CacheStore } from './store.js';

export interface MemoryStoreOptions {
  /** Most entries kept; the least recently written go first. Default: unbounded. */
  readonly maxEntries?: number;
}

export class MemoryStore implements CacheStore {
  /** key → slot in the columns below; insertion order is write order (eviction) */
  readonly #slots = new Map<string, number>();
  readonly #max: number;
  // One column per field instead of one object per entry: an entry object with its two boxed
  // doubles cost ~110 bytes more per cached entry (measured in bench/resolve's daemon figures).
  #values: (string | null)[] = [];
  /**
   * Per slot, side by side so that a lookup touches one cache line: stored, expires, then the
   * scope's and the source's index into #names (a handful of strings shared by every entry).
   */
  #meta = new Float64Array(INITIAL_SLOTS * META);
  readonly #names: string[] = [];
  readonly #nameIds = new Map<string, number>();
  /** slots freed by delete, flush and eviction, reused before the columns grow */
  #free: number[] = [];
  #used = 0;

  constructor(options: MemoryStoreOptions = {}) {
    const max = options.maxEntries ?? Infinity;
    if (!(max === Infinity || (Number.isInteger(max) && max >= 0))) {
      throw new RangeError(`maxEntries must be a non-negative integer, got ${max}`);
    }
    this.#max = max;
  }

  /** The hot path: one Map lookup and one small short-lived object. */
  get(key: string): CacheEntry | undefined {
    const slot = this.#slots.get(key);
    return slot === undefined ? undefined : this.#entry(key, slot);
  }

  set(entry: CacheEntry): void {
    // delete first: Map.set on an existing key keeps its old position, and eviction must see
    // this key as the newest.
    const old = this.#slots.get(entry.key);
    if (old !== undefined) this.#slots.delete(entry.key);
    const slot = old ?? this.#allocate();
    this.#values[slot] = entry.value;
    const m = slot * META;
    this.#meta[m] = entry.stored;
    this.#meta[m + 1] = entry.expires;
    this.#meta[m + 2] = this.#nameId(entry.scope);
    this.#meta[m + 3] = this.#nameId(entry.source);
    this.#slots.set(flatten(entry.key), slot);
    if (this.#slots.size > this.#max) this.#evict();
  }

  delete(key: string): boolean {
    const slot = this.#slots.get(key);
    if (slot === undefined) return false;
    this.#slots.delete(key);
    this.#release(slot);
    return true;
  }

  flush(filter?: CacheFilter): number {
    if (filter?.scope === undefined && filter?.prefix === undefined) {
      const n = this.#slots.size;
      this.#reset();
      return n;
    }
    const scopeId = filter.scope === undefined ? -1 : this.#nameIds.get(filter.scope);
    if (scopeId === undefined) return 0; // a scope no entry ever had
    let n = 0;
    // Deleting the current entry while iterating a Map is safe: iteration continues with the next.
    for (const [key, slot] of this.#slots) {
      if (scopeId >= 0 && this.#meta[slot * META + 2] !== scopeId) continue;
      if (filter.prefix !== undefined && !key.startsWith(filter.prefix)) continue;
      this.#slots.delete(key);
      this.#release(slot);
      n++;
    }
    return n;
  }

  list(filter?: CacheFilter, limit = Infinity): CacheEntry[] {
    const out: CacheEntry[] = [];
    for (const [key, slot] of this.#slots) {
      if (filter?.scope !== undefined && this.#names[this.#meta[slot * META + 2]!] !== filter.scope) continue;
      if (filter?.prefix !== undefined && !key.startsWith(filter.prefix)) continue;
      out.push(this.#entry(key, slot));
    }
    out.sort((a, b) => compareKeys(a.key, b.key));
    return out.length > limit ? out.slice(0, Math.max(0, limit)) : out;
  }

  stats(): CacheStats {
    let negative = 0;
    for (const slot of this.#slots.values()) if (this.#values[slot] === null) negative++;
    return { entries: this.#slots.size, negative };
  }

  close(): void {
    this.#reset();
  }

  #entry(key: string, slot: number): CacheEntry {
    const m = slot * META;
    const meta = this.#meta;
    return {
      key,
      scope: this.#names[meta[m + 2]!]!,
      value: this.#values[slot]!,
      source: this.#names[meta[m + 3]!]!,
      stored: meta[m]!,
      expires: meta[m + 1]!,
    };
  }

  #allocate(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    const slot = this.#used++;
    if (slot * META === this.#meta.length) this.#grow();
    return slot;
  }

  #release(slot: number): void {
    this.#values[slot] = null; // let the string go
    this.#free.push(slot);
  }

  #grow(): void {
    const meta = new Float64Array(this.#meta.length * 2);
    meta.set(this.#meta);
    this.#meta = meta;
  }

  #nameId(name: string): number {
    let id = this.#nameIds.get(name);
    if (id === undefined) {
      id = this.#names.length;
      this.#names.push(name);
      this.#nameIds.set(name, id);
    }
    return id;
  }

  #reset(): void {
    this.#slots.clear();
    this.#values = [];
    this.#free = [];
    this.#used = 0;
    this.#meta = new Float64Array(INITIAL_SLOTS * META);
  }

  /** Drops the least recently written entries until the store fits again. */
  #evict(): void {
    for (const [key, slot] of this.#slots) {
      if (this.#slots.size <= this.#max) return;
      this.#slots.delete(key);
      this.#release(slot);
    }
  }
}

const INITIAL_SLOTS = 64;
/** numbers per slot in #meta */
const META = 4;

/**
 * A copy of `s` in one piece. Keys are built by concatenation, which V8 keeps as a tree of cons
 * strings; hashing one for the Map flattens it into a new string but the tree stays referenced
 * from the entry: ~120 bytes per cached entry for nothing (measured: 214 → 93 B per Map key).
 * The JSON round trip is exact for every string, lone surrogates included, and costs ~0.5 µs on a
 * write, never on a lookup.
 */
function flatten(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}
