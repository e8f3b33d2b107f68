/**
 * Schema migrations: numbered SQL files `schema/migrations/NNN_name.sql`, applied in order, the
 * version kept in `PRAGMA user_version`. All pending files run in one transaction, so a failed
 * upgrade leaves the database as it was.
 */

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';
import { NsidmapError } from '../errors.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

const FILE = /^(\d{3})_([A-Za-z0-9_-]+)\.sql$/;

let defaultDir: string | undefined;

/**
 * Finds `schema/migrations` by walking up from this module: it sits at src/cache/ under tsx and
 * at dist/src/cache/ once compiled, and the schema stays at the package root in both cases.
 */
export function migrationsDir(): string {
  if (defaultDir !== undefined) return defaultDir;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'schema', 'migrations');
    if (existsSync(candidate) && statSync(candidate).isDirectory()) return (defaultDir = candidate);
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new NsidmapError(
    'NSIDMAP_ECACHE',
    `schema/migrations not found above ${fileURLToPath(import.meta.url)}: the installation is incomplete; reinstall nsidmap`,
  );
}

/** Reads the migration files of `dir`, ordered by number; numbers must run 1, 2, 3… */
export function loadMigrations(dir: string = migrationsDir()): Migration[] {
  const found: Migration[] = [];
  for (const file of readdirSync(dir)) {
    const m = FILE.exec(file);
    if (m === null || m[1] === undefined || m[2] === undefined) continue;
    found.push({ version: Number(m[1]), name: m[2], sql: readFileSync(join(dir, file), 'utf8') });
  }
  found.sort((a, b) => a.version - b.version);
  found.forEach((mig, i) => {
    // A gap or a duplicate would make user_version ambiguous: refuse rather than guess.
    if (mig.version !== i + 1) {
      throw new NsidmapError('NSIDMAP_EINTERNAL', `migration ${mig.version}_${mig.name} in ${dir} is out of sequence (expected ${i + 1})`);
    }
  });
  return found;
}

/** Brings `db` to the newest schema in `dir` (default: the package's); returns that version. */
export function migrate(db: Database.Database, dir?: string): number {
  const migrations = loadMigrations(dir);
  // Fast path without a write lock: every open of an up-to-date file ends here.
  if (checkVersion(db, migrations.length) === migrations.length) return migrations.length;
  // Re-read under the write lock: another process (daemon, upcall, idmapctl) may have migrated
  // the file between our read and BEGIN IMMEDIATE.
  db.transaction(() => {
    for (const mig of migrations.slice(checkVersion(db, migrations.length))) {
      db.exec(mig.sql);
      // An integer from our own file numbering: safe to interpolate (PRAGMA takes no parameters).
      db.pragma(`user_version = ${mig.version}`);
    }
  }).immediate();
  return migrations.length;
}

/** The database's version; refuses one newer than `known` (its schema may mean things we'd break). */
function checkVersion(db: Database.Database, known: number): number {
  const current = userVersion(db);
  if (current > known) {
    throw new NsidmapError(
      'NSIDMAP_ECACHE',
      `cache database ${db.name} has schema version ${current}, newer than this nsidmap knows (${known}): upgrade nsidmap, or move the file aside to start an empty cache`,
    );
  }
  return current;
}

export function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}
