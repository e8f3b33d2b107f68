/**
 * The cache store contract. Two implementations (memory, SQLite) pass one conformance suite
 * (test/contract/cache-store.contract.ts). Only the resolver writes a store.
 *
 * Keys are opaque strings built by the resolver (`<scope>\x1f<kind>\x1f<query>`); a value is the
 * source's answer in the source's id space (decimal id, local name, or SID text), or null for a
 * negative answer. Times are milliseconds since the epoch; the store never reads a clock.
 */

export interface CacheEntry {
  readonly key: string;
  /** scope name (also the key's first field): flush by scope without parsing keys */
  readonly scope: string;
  /** null = negative (not found) */
  readonly value: string | null;
  /** source that answered ('' for negative answers) */
  readonly source: string;
  /** when it was written (ms) */
  readonly stored: number;
  /** when it stops being usable without a refresh (ms) = stored + ttl */
  readonly expires: number;
}

export interface CacheFilter {
  readonly scope?: string;
  /** keys starting with this prefix */
  readonly prefix?: string;
}

export interface CacheStats {
  readonly entries: number;
  readonly negative: number;
}

export interface CacheStore {
  get(key: string): CacheEntry | undefined;
  set(entry: CacheEntry): void;
  /** several at once: all or none (a store that can, writes them in one transaction) */
  setMany?(entries: readonly CacheEntry[]): void;
  delete(key: string): boolean;
  /** delete every entry matching (all when no filter); returns how many */
  flush(filter?: CacheFilter): number;
  /** entries matching, ordered by key, at most `limit` */
  list(filter?: CacheFilter, limit?: number): CacheEntry[];
  stats(): CacheStats;
  close(): void;
}

/** Freshness, from DESIGN.md: fresh; past half the TTL (serve, refresh in the background); expired. */
export type Freshness = 'fresh' | 'refresh' | 'expired';

export function freshness(entry: CacheEntry, now: number): Freshness {
  if (now >= entry.expires) return 'expired';
  const half = entry.stored + (entry.expires - entry.stored) / 2;
  return now >= half ? 'refresh' : 'fresh';
}
