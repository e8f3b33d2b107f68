/**
 * NFSv4 client identifiers per namespace key, in the same SQLite file as the cache (DESIGN.md,
 * "State"; schema/migrations/002_clientid.sql, 003_clientid_applied.sql). The daemon writes it
 * when a namespace appears; idmapctl reads it, and sets or imports identifiers for a container
 * that moves. Statements are prepared once; every write that could give two keys one identifier
 * checks and writes in one transaction.
 */
import type Database from 'better-sqlite3';
import { NsidmapError } from '../errors.js';
import { checkIdentifier } from '../ns/clientid.js';
import { SqliteStore } from './sqlite.js';

export interface ClientIdRecord {
  /** the namespace key (see src/ns/discovery.ts): `host`, a container id, `ipnetns:NAME`, `netns:INODE` */
  readonly key: string;
  readonly identifier: string;
  /** machine-id | random | fixed | set | import */
  readonly source: string;
  /** ms since the epoch */
  readonly updated: number;
  /** when it was last found in force in its namespace (written there, or already there) */
  readonly applied?: number;
  /** that namespace's inode at the time */
  readonly appliedNetns?: number;
}

interface Row {
  key: string;
  identifier: string;
  source: string;
  updated: number;
  applied: number | null;
  netns: number | null;
}

const SELECT = `SELECT c.netns_key AS key, c.identifier, c.source, c.updated, a.applied, a.netns
  FROM clientid c LEFT JOIN clientid_applied a ON a.netns_key = c.netns_key`;

function toRecord(r: Row): ClientIdRecord {
  const base = { key: r.key, identifier: r.identifier, source: r.source, updated: r.updated };
  return r.applied === null || r.netns === null ? base : { ...base, applied: r.applied, appliedNetns: r.netns };
}

export class ClientIdStore {
  readonly path: string;
  readonly #owned: SqliteStore | undefined;
  readonly #db: Database.Database;
  readonly #get: Database.Statement<[string], Row>;
  readonly #list: Database.Statement<[], Row>;
  readonly #holder: Database.Statement<[string, string], { key: string }>;
  readonly #upsert: Database.Statement<[{ key: string; identifier: string; source: string; updated: number }]>;
  readonly #delete: Database.Statement<[string]>;
  readonly #unapply: Database.Statement<[string]>;
  readonly #apply: Database.Statement<[{ key: string; applied: number; netns: number }]>;

  /** On a connection already opened and migrated (SqliteStore.db); `owned` is closed by close(). */
  constructor(db: Database.Database, owned?: SqliteStore) {
    this.#db = db;
    this.#owned = owned;
    this.path = db.name;
    this.#get = db.prepare(`${SELECT} WHERE c.netns_key = ?`);
    this.#list = db.prepare(`${SELECT} ORDER BY c.netns_key`);
    this.#holder = db.prepare('SELECT netns_key AS key FROM clientid WHERE identifier = ? AND netns_key <> ? LIMIT 1');
    this.#upsert = db.prepare(
      `INSERT INTO clientid (netns_key, identifier, source, updated) VALUES (@key, @identifier, @source, @updated)
       ON CONFLICT (netns_key) DO UPDATE SET identifier = excluded.identifier, source = excluded.source, updated = excluded.updated`,
    );
    this.#delete = db.prepare('DELETE FROM clientid WHERE netns_key = ?');
    this.#unapply = db.prepare('DELETE FROM clientid_applied WHERE netns_key = ?');
    this.#apply = db.prepare(
      `INSERT INTO clientid_applied (netns_key, applied, netns) VALUES (@key, @applied, @netns)
       ON CONFLICT (netns_key) DO UPDATE SET applied = excluded.applied, netns = excluded.netns`,
    );
  }

  /** Opens (creating and migrating) the state file at `path`, as the cache does. */
  static open(path: string): ClientIdStore {
    const sqlite = new SqliteStore(path);
    return new ClientIdStore(sqlite.db, sqlite);
  }

  get(key: string): ClientIdRecord | undefined {
    const row = this.#guard('read', () => this.#get.get(key));
    return row && toRecord(row);
  }

  list(): ClientIdRecord[] {
    return this.#guard('read', () => this.#list.all()).map(toRecord);
  }

  /** The key other than `except` that holds `identifier`, if any. */
  holderOf(identifier: string, except = ''): string | undefined {
    return this.#guard('read', () => this.#holder.get(identifier, except))?.key;
  }

  /**
   * Store `identifier` for `key`. Refused (NSIDMAP_ECLIENTID) when it is not a usable identifier
   * or another key holds it. A changed identifier is no longer applied anywhere.
   */
  set(key: string, identifier: string, source: string, updated: number = Date.now()): ClientIdRecord {
    const bad = checkIdentifier(identifier);
    if (bad !== undefined) throw new NsidmapError('NSIDMAP_ECLIENTID', `identifier for ${key} ${bad}`);
    if (key === '') throw new NsidmapError('NSIDMAP_ECLIENTID', 'a namespace key cannot be empty');
    return this.#guard('write', () =>
      this.#db.transaction(() => {
        const holder = this.#holder.get(identifier, key);
        if (holder) {
          throw new NsidmapError('NSIDMAP_ECLIENTID', `identifier ${identifier} is already ${holder.key}'s: two namespaces must not present one NFSv4 client; choose another, or give ${holder.key} another first`);
        }
        if (this.#get.get(key)?.identifier !== identifier) this.#unapply.run(key);
        this.#upsert.run({ key, identifier, source, updated });
        return toRecord(this.#get.get(key)!);
      }).immediate(),
    );
  }

  delete(key: string): boolean {
    return this.#guard('write', () =>
      this.#db.transaction(() => {
        this.#unapply.run(key);
        return this.#delete.run(key).changes > 0;
      }).immediate(),
    );
  }

  /** Record that `key`'s identifier is in force in the namespace with inode `netns`. */
  markApplied(key: string, netns: number, applied: number = Date.now()): void {
    this.#guard('write', () => this.#apply.run({ key, applied, netns }));
  }

  close(): void {
    if (this.#owned) this.#owned.close();
  }

  #guard<T>(doing: 'read' | 'write', fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof NsidmapError) throw e;
      const reason = e instanceof Error ? e.message : String(e);
      throw new NsidmapError('NSIDMAP_ECACHE', `cannot ${doing} client identifiers in ${this.path}: ${reason}; check free space and the file's permissions`, { cause: e });
    }
  }
}
