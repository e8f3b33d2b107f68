/**
 * The SQLite store: the cache that survives restarts, so the daemon can answer from it while the
 * directory is down (DESIGN.md, "State"). WAL lets the upcall helper and idmapctl read while the
 * daemon writes; every statement is prepared once, here, and reused.
 */

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { NsidmapError, isNsidmapError } from '../errors.js';
import { prefixEnd } from './key-order.js';
import { migrate } from './migrations.js';
import type { CacheEntry, CacheFilter, CacheStats, CacheStore } from './store.js';

/** How long a writer waits for another process's lock before giving up (ms). */
const BUSY_TIMEOUT_MS = 5000;

/** SQLite's page cache per connection, in KiB (negative cache_size = KiB). */
const PAGE_CACHE_KIB = 2048;

/** Any BLOB sorts after every TEXT in SQLite: the upper bound for a prefix that has no end. */
const AFTER_ALL_TEXT = Buffer.alloc(0);

const COLUMNS = 'key, scope, value, source, stored, expires';

/**
 * One WHERE clause per filter shape, indexed by `(scope ? 1 : 0) | (prefix ? 2 : 0)`. A prefix is
 * the key range [lo, hi) — exact, and it uses the primary key index (LIKE would fold case and
 * treat `%` and `_` in names as wildcards).
 */
const WHERE = [
  '',
  'WHERE scope = @scope',
  'WHERE key >= @lo AND key < @hi',
  'WHERE scope = @scope AND key >= @lo AND key < @hi',
] as const;

interface FilterParams {
  scope?: string;
  lo?: string;
  hi?: string | Buffer;
  limit?: number;
}

export class SqliteStore implements CacheStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #get: Database.Statement<[string], CacheEntry>;
  readonly #set: Database.Statement<[CacheEntry]>;
  readonly #setMany: (entries: readonly CacheEntry[]) => void;
  readonly #delete: Database.Statement<[string]>;
  readonly #stats: Database.Statement<[], CacheStats>;
  readonly #list: Database.Statement<[FilterParams], CacheEntry>[];
  readonly #flush: Database.Statement<[FilterParams]>[];

  /** Opens (creating when missing) and migrates the database at `path`; ':memory:' for none. */
  constructor(path: string) {
    this.path = path;
    this.#db = open(path);
    const db = this.#db;
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM cache WHERE key = ?`);
    this.#set = db.prepare(
      `INSERT INTO cache (${COLUMNS}) VALUES (@key, @scope, @value, @source, @stored, @expires)
       ON CONFLICT (key) DO UPDATE SET scope = excluded.scope, value = excluded.value,
         source = excluded.source, stored = excluded.stored, expires = excluded.expires`,
    );
    this.#setMany = db.transaction((entries: readonly CacheEntry[]) => {
      for (const e of entries) this.#set.run(e);
    });
    this.#delete = db.prepare('DELETE FROM cache WHERE key = ?');
    this.#stats = db.prepare('SELECT count(*) AS entries, count(*) - count(value) AS negative FROM cache');
    this.#list = WHERE.map((w) => db.prepare(`SELECT ${COLUMNS} FROM cache ${w} ORDER BY key LIMIT @limit`));
    this.#flush = WHERE.map((w) => db.prepare(`DELETE FROM cache ${w}`));
  }

  /** The connection, so other state (NFSv4 client ids) can share the file and its migrations. */
  get db(): Database.Database {
    return this.#db;
  }

  get(key: string): CacheEntry | undefined {
    try {
      return this.#get.get(key);
    } catch (e) {
      throw this.#fault('read', e);
    }
  }

  set(entry: CacheEntry): void {
    try {
      this.#set.run(entry);
    } catch (e) {
      throw this.#fault('write', e);
    }
  }

  /** In one transaction: one commit for the lot. */
  setMany(entries: readonly CacheEntry[]): void {
    try {
      this.#setMany(entries);
    } catch (e) {
      throw this.#fault('write', e);
    }
  }

  delete(key: string): boolean {
    try {
      return this.#delete.run(key).changes > 0;
    } catch (e) {
      throw this.#fault('write', e);
    }
  }

  flush(filter?: CacheFilter): number {
    const [shape, params] = bindFilter(filter);
    try {
      return this.#flush[shape]!.run(params).changes;
    } catch (e) {
      throw this.#fault('write', e);
    }
  }

  list(filter?: CacheFilter, limit?: number): CacheEntry[] {
    const [shape, params] = bindFilter(filter);
    // LIMIT -1 is SQLite's "no limit"; a negative limit from the caller means nothing, as in memory.
    params.limit = limit === undefined || limit === Infinity ? -1 : Math.max(0, Math.trunc(limit));
    try {
      return this.#list[shape]!.all(params);
    } catch (e) {
      throw this.#fault('read', e);
    }
  }

  stats(): CacheStats {
    try {
      const row = this.#stats.get();
      return row ?? { entries: 0, negative: 0 };
    } catch (e) {
      throw this.#fault('read', e);
    }
  }

  close(): void {
    this.#db.close();
  }

  #fault(doing: 'read' | 'write', e: unknown): NsidmapError {
    const reason = e instanceof Error ? e.message : String(e);
    return new NsidmapError(
      'NSIDMAP_ECACHE',
      `cannot ${doing} the cache database ${this.path}: ${reason}; check free space and the file's permissions`,
      { cause: e },
    );
  }
}

/** Picks the statement for a filter's shape and the parameters it binds. */
function bindFilter(filter: CacheFilter | undefined): [number, FilterParams] {
  const params: FilterParams = {};
  let shape = 0;
  if (filter?.scope !== undefined) {
    params.scope = filter.scope;
    shape |= 1;
  }
  if (filter?.prefix !== undefined) {
    params.lo = filter.prefix;
    params.hi = prefixEnd(filter.prefix) ?? AFTER_ALL_TEXT;
    shape |= 2;
  }
  return [shape, params];
}

/** Opens, tunes and migrates; any failure becomes NSIDMAP_ECACHE naming the path. */
function open(path: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    if (path !== ':memory:' && path !== '') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    db = new Database(path);
    // busy_timeout before anything that may wait on another process's lock (WAL switch, migrations).
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('journal_mode = WAL');
    // NORMAL is durable across application crashes in WAL mode; a power cut may lose the last
    // writes, which for a cache only means asking the directory again.
    db.pragma('synchronous = NORMAL');
    // better-sqlite3 builds SQLite with a 16 MiB page cache per connection; the memory front
    // already holds the hot entries and the kernel caches the file, so SQLite's own stock 2 MiB
    // is plenty (16 MiB was most of the daemon's malloc heap with 100k entries: bench/resolve).
    db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
    migrate(db);
    return db;
  } catch (e) {
    db?.close();
    throw openFault(path, e);
  }
}

function openFault(path: string, e: unknown): NsidmapError {
  if (isNsidmapError(e)) return e;
  const code = (e as { code?: unknown } | null)?.code;
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new NsidmapError(
      'NSIDMAP_ECACHE',
      `${path} is not a usable SQLite database (${code}): move it aside or set cache.path to another file; the cache is rebuilt from the directory`,
      { cause: e },
    );
  }
  const reason = e instanceof Error ? e.message : String(e);
  return new NsidmapError(
    'NSIDMAP_ECACHE',
    `cannot open the cache database ${path}: ${reason}; check cache.path, its directory's permissions and free space`,
    { cause: e },
  );
}
