import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { NsidmapError } from '../../src/errors.js';
import { MemoryStore } from '../../src/cache/memory.js';
import { loadMigrations, migrate, migrationsDir, userVersion } from '../../src/cache/migrations.js';
import { SqliteStore } from '../../src/cache/sqlite.js';
import type { CacheEntry } from '../../src/cache/store.js';
import { TieredStore, openCache } from '../../src/cache/tiered.js';
import { runCacheStoreContract } from '../contract/cache-store.contract.js';
import { draws, fuzzSeed, prng } from '../helpers/prng.js';

const tmp = mkdtempSync(join(tmpdir(), 'nsidmap-cache-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let files = 0;
/** A fresh database path per call, inside the suite's temp dir. */
const tmpFile = (): string => join(tmp, `cache-${process.pid}-${++files}.db`);

function entry(key: string, value: string | null = '1000'): CacheEntry {
  return { key, scope: key.split('\x1f')[0] ?? '', value, source: value === null ? '' : 'files', stored: 1, expires: 2 };
}

/** Asserts that fn throws NsidmapError with `code` and a message matching `pattern`. */
function assertCacheError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof NsidmapError, `expected NsidmapError, got ${String(e)}`);
    assert.equal(e.code, 'NSIDMAP_ECACHE');
    assert.match(e.message, pattern);
    return true;
  });
}

runCacheStoreContract('MemoryStore', () => new MemoryStore());
runCacheStoreContract('MemoryStore (bounded, large enough)', () => new MemoryStore({ maxEntries: 100 }));
runCacheStoreContract('SqliteStore :memory:', () => new SqliteStore(':memory:'));
runCacheStoreContract('SqliteStore file', () => new SqliteStore(tmpFile()));
runCacheStoreContract('TieredStore', () => new TieredStore(new MemoryStore(), new SqliteStore(':memory:')));
runCacheStoreContract('TieredStore (small front)', () => new TieredStore(new MemoryStore({ maxEntries: 2 }), new SqliteStore(':memory:')));
runCacheStoreContract('openCache', () => openCache({ path: tmpFile(), memoryEntries: 1000 }));

describe('SqliteStore on a file', () => {
  it('keeps its entries across close and reopen', () => {
    const path = tmpFile();
    const first = new SqliteStore(path);
    first.set(entry('s\x1fk\x1fa'));
    first.set(entry('s\x1fk\x1fb', null));
    first.close();
    const again = new SqliteStore(path);
    assert.deepEqual(again.get('s\x1fk\x1fa'), entry('s\x1fk\x1fa'));
    assert.deepEqual(again.stats(), { entries: 2, negative: 1 });
    again.close();
  });

  it('runs in WAL mode with synchronous NORMAL and a 2 MiB page cache', () => {
    const store = new SqliteStore(tmpFile());
    assert.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(store.db.pragma('synchronous', { simple: true }), 1);
    assert.ok(Number(store.db.pragma('busy_timeout', { simple: true })) > 0);
    // better-sqlite3's build default is 16 MiB per connection (cache_size -16000)
    assert.equal(store.db.pragma('cache_size', { simple: true }), -2048);
    store.close();
  });

  it('creates a missing parent directory, private to its owner', () => {
    const dir = join(tmp, `missing-${process.pid}`, 'nested');
    const store = new SqliteStore(join(dir, 'cache.db'));
    store.close();
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  it('refuses a database with a newer schema than it knows, with NSIDMAP_ECACHE', () => {
    const path = tmpFile();
    const db = new Database(path);
    db.pragma('user_version = 999');
    db.close();
    assertCacheError(() => new SqliteStore(path), /schema version 999, newer than this nsidmap knows/);
  });

  it('refuses a file that is not a database, with NSIDMAP_ECACHE naming the path', () => {
    const path = tmpFile();
    writeFileSync(path, 'this is not an SQLite database\n'.repeat(200));
    assertCacheError(() => new SqliteStore(path), new RegExp(`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not a usable SQLite database`));
  });

  it('refuses a path whose directory cannot be created, with NSIDMAP_ECACHE', () => {
    const file = tmpFile();
    writeFileSync(file, '');
    assertCacheError(() => new SqliteStore(join(file, 'sub', 'cache.db')), /cannot open the cache database/);
  });

  it('shares its connection through `db`, with the clientid table migrated', () => {
    const store = new SqliteStore(':memory:');
    store.db.prepare('INSERT INTO clientid VALUES (?, ?, ?, ?)').run('netns:4026531840', 'id-1', 'uevent', 5);
    assert.deepEqual(store.db.prepare('SELECT * FROM clientid').get(), {
      netns_key: 'netns:4026531840',
      identifier: 'id-1',
      source: 'uevent',
      updated: 5,
    });
    store.close();
  });
});

describe('migrations', () => {
  it('finds schema/migrations by walking up from the module', () => {
    assert.match(migrationsDir(), /schema[/\\]migrations$/);
    assert.deepEqual(
      loadMigrations().map((m) => `${String(m.version).padStart(3, '0')}_${m.name}.sql`),
      readdirSync(migrationsDir()).filter((f) => f.endsWith('.sql')).sort(),
    );
  });

  it('set user_version to the last migration and are idempotent', () => {
    const db = new Database(':memory:');
    const latest = loadMigrations().length;
    assert.equal(migrate(db), latest);
    assert.equal(userVersion(db), latest);
    assert.equal(migrate(db), latest);
    assert.equal(userVersion(db), latest);
    db.close();
  });

  describe('from a directory of their own', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmp, 'migrations-'));
      writeFileSync(join(dir, '002_second.sql'), 'CREATE TABLE b (x);');
      writeFileSync(join(dir, '001_first.sql'), 'CREATE TABLE a (x);');
      writeFileSync(join(dir, 'README'), 'not a migration');
    });

    it('apply in numeric order, only the pending ones', () => {
      const db = new Database(':memory:');
      db.exec('CREATE TABLE a (x); PRAGMA user_version = 1;');
      assert.equal(migrate(db, dir), 2);
      assert.deepEqual(db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all(), ['a', 'b']);
      db.close();
    });

    it('roll back every pending migration when one fails', () => {
      const bad = mkdtempSync(join(tmp, 'migrations-bad-'));
      writeFileSync(join(bad, '001_ok.sql'), 'CREATE TABLE ok (x);');
      writeFileSync(join(bad, '002_broken.sql'), 'CREATE TABLE nonsense (;');
      const db = new Database(':memory:');
      assert.throws(() => migrate(db, bad), /syntax error/);
      assert.equal(userVersion(db), 0);
      assert.equal(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'ok'").pluck().get(), 0);
      db.close();
    });

    it('refuse a numbering with a gap', () => {
      const gap = mkdtempSync(join(tmp, 'migrations-gap-'));
      writeFileSync(join(gap, '001_a.sql'), 'SELECT 1;');
      writeFileSync(join(gap, '003_c.sql'), 'SELECT 1;');
      assert.throws(() => loadMigrations(gap), /out of sequence/);
    });
  });
});

describe('MemoryStore eviction', () => {
  it('keeps at most maxEntries, dropping the oldest written first', () => {
    const store = new MemoryStore({ maxEntries: 3 });
    ['a', 'b', 'c', 'd'].forEach((k) => store.set(entry(k)));
    assert.deepEqual(store.stats(), { entries: 3, negative: 0 });
    assert.equal(store.get('a'), undefined);
    assert.ok(store.get('d'));
  });

  it('counts a rewrite as the newest write (LRU on write, not on read)', () => {
    const store = new MemoryStore({ maxEntries: 3 });
    ['a', 'b', 'c'].forEach((k) => store.set(entry(k)));
    store.set(entry('a', '2'));
    store.get('b');
    store.set(entry('d'));
    assert.deepEqual(store.list().map((e) => e.key), ['a', 'c', 'd']);
  });

  it('maxEntries 0 keeps nothing; a negative or fractional bound is refused', () => {
    const store = new MemoryStore({ maxEntries: 0 });
    store.set(entry('a'));
    assert.equal(store.get('a'), undefined);
    assert.throws(() => new MemoryStore({ maxEntries: -1 }), RangeError);
    assert.throws(() => new MemoryStore({ maxEntries: 1.5 }), RangeError);
  });
});

describe('MemoryStore against a plain Map model (slot reuse, growth, eviction order)', () => {
  for (const max of [Infinity, 37]) {
    it(`agrees with the model over 20,000 random operations (maxEntries ${max})`, () => {
      const seed = fuzzSeed(0x5107);
      const { int, pick } = draws(prng(seed));
      const store = new MemoryStore({ maxEntries: max });
      const model = new Map<string, CacheEntry>();
      const scopes = ['a', 'ab', 'b'];
      for (let op = 0; op < 20_000; op++) {
        const scope = pick(scopes);
        // keys built by concatenation, as the resolver does
        const key = scope + '\x1f' + 'name-to-uid' + '\x1f' + 'u' + String(int(300));
        const r = int(100);
        if (r < 60) {
          const value = int(5) === 0 ? null : String(int(1e6));
          const e: CacheEntry = { key, scope, value, source: value === null ? '' : pick(['files', 'nss', 'ldap']), stored: 1.7e12 + op, expires: 1.7e12 + op + int(1e6) + 0.5 };
          store.set(e);
          model.delete(key);
          model.set(key, e);
          if (model.size > max) model.delete(model.keys().next().value!);
        } else if (r < 85) {
          assert.deepEqual(store.get(key), model.get(key), `seed ${seed}, op ${op}: get ${key}`);
        } else if (r < 95) {
          assert.equal(store.delete(key), model.delete(key), `seed ${seed}, op ${op}: delete`);
        } else {
          const prefix = int(2) === 0 ? scope + '\x1fname-to-uid\x1fu1' : undefined;
          const filter = int(3) === 0 ? { prefix } : { scope, prefix };
          let n = 0;
          for (const [k, e] of model) {
            if (('scope' in filter && e.scope !== filter.scope) || (prefix !== undefined && !k.startsWith(prefix))) continue;
            model.delete(k);
            n++;
          }
          assert.equal(store.flush(filter), n, `seed ${seed}, op ${op}: flush`);
        }
      }
      assert.deepEqual(store.list(), [...model.values()].sort((x, y) => (x.key < y.key ? -1 : 1)));
      assert.deepEqual(store.stats(), { entries: model.size, negative: [...model.values()].filter((e) => e.value === null).length });
    });
  }
});

describe('TieredStore', () => {
  it('promotes an entry found only in the back into the front', () => {
    const front = new MemoryStore();
    const back = new SqliteStore(':memory:');
    back.set(entry('s\x1fk\x1fa'));
    const tiered = new TieredStore(front, back);
    assert.equal(front.get('s\x1fk\x1fa'), undefined);
    assert.deepEqual(tiered.get('s\x1fk\x1fa'), entry('s\x1fk\x1fa'));
    assert.deepEqual(front.get('s\x1fk\x1fa'), entry('s\x1fk\x1fa'));
    tiered.close();
  });

  it('lists and counts from the back, even what the front evicted', () => {
    const tiered = new TieredStore(new MemoryStore({ maxEntries: 1 }), new SqliteStore(':memory:'));
    ['a', 'b', 'c'].forEach((k) => tiered.set(entry(k)));
    assert.deepEqual(tiered.list().map((e) => e.key), ['a', 'b', 'c']);
    assert.equal(tiered.stats().entries, 3);
    assert.ok(tiered.get('a'));
    tiered.close();
  });

  it('removes from the front too, so a flushed entry is not served from memory', () => {
    const front = new MemoryStore();
    const tiered = new TieredStore(front, new SqliteStore(':memory:'));
    tiered.set(entry('s\x1fk\x1fa'));
    tiered.set(entry('t\x1fk\x1fb'));
    assert.equal(tiered.flush({ scope: 's' }), 1);
    assert.equal(front.get('s\x1fk\x1fa'), undefined);
    assert.equal(tiered.delete('t\x1fk\x1fb'), true);
    assert.equal(front.get('t\x1fk\x1fb'), undefined);
    tiered.close();
  });

  describe('writes to the back after the turn, in one transaction', () => {
    /** A SQLite back that counts how it is written to, and can be made to fail. */
    class CountingBack extends SqliteStore {
      batches: number[] = [];
      singles = 0;
      failWith: Error | undefined;
      override set(e: CacheEntry): void {
        this.singles++;
        super.set(e);
      }
      override setMany(entries: readonly CacheEntry[]): void {
        if (this.failWith) throw this.failWith;
        this.batches.push(entries.length);
        super.setMany(entries);
      }
    }
    const turn = () => new Promise<void>((r) => setImmediate(r));

    it('a burst of 200 writes is one transaction once the turn ends; until then the front answers', async () => {
      const back = new CountingBack(':memory:');
      const tiered = new TieredStore(new MemoryStore(), back);
      for (let i = 0; i < 200; i++) tiered.set(entry(`s\x1fk\x1fu${i}`, String(i)));
      assert.equal(back.get('s\x1fk\x1fu7'), undefined, 'not in the file yet');
      assert.equal(tiered.get('s\x1fk\x1fu7')?.value, '7');
      assert.equal(tiered.pendingWrites, 200);
      await turn();
      assert.deepEqual(back.batches, [200]);
      assert.equal(back.singles, 0);
      assert.equal(back.get('s\x1fk\x1fu7')?.value, '7');
      assert.equal(tiered.pendingWrites, 0);
      tiered.close();
    });

    it('the last write of a key in the turn is the one written', async () => {
      const back = new CountingBack(':memory:');
      const tiered = new TieredStore(new MemoryStore(), back);
      tiered.set(entry('s\x1fk\x1fa', '1'));
      tiered.set(entry('s\x1fk\x1fa', null));
      await turn();
      assert.deepEqual(back.batches, [1]);
      assert.equal(back.get('s\x1fk\x1fa')?.value, null);
      tiered.close();
    });

    it('a pending entry the front has already let go is still answered', () => {
      const tiered = new TieredStore(new MemoryStore({ maxEntries: 1 }), new CountingBack(':memory:'));
      tiered.set(entry('s\x1fk\x1fa', '1'));
      tiered.set(entry('s\x1fk\x1fb', '2'));
      assert.equal(tiered.get('s\x1fk\x1fa')?.value, '1');
      tiered.close();
    });

    it('delete, flush, list, stats and close see pending writes as written', () => {
      const path = tmpFile();
      const tiered = new TieredStore(new MemoryStore(), new CountingBack(path));
      tiered.set(entry('s\x1fk\x1fa'));
      tiered.set(entry('t\x1fk\x1fb'));
      tiered.set(entry('t\x1fk\x1fc'));
      assert.deepEqual(tiered.stats(), { entries: 3, negative: 0 });
      tiered.set(entry('s\x1fk\x1fd'));
      assert.deepEqual(tiered.list({ scope: 's' }).map((e) => e.key), ['s\x1fk\x1fa', 's\x1fk\x1fd']);
      tiered.set(entry('s\x1fk\x1fe'));
      assert.equal(tiered.flush({ scope: 's' }), 3);
      tiered.set(entry('u\x1fk\x1ff'));
      assert.equal(tiered.delete('u\x1fk\x1ff'), true);
      assert.equal(tiered.get('u\x1fk\x1ff'), undefined);
      tiered.set(entry('u\x1fk\x1fg'));
      tiered.close();
      const again = new SqliteStore(path);
      assert.deepEqual(again.list().map((e) => e.key), ['t\x1fk\x1fb', 't\x1fk\x1fc', 'u\x1fk\x1fg']);
      again.close();
    });

    it('a failed write neither throws nor loses the answers from memory; onWriteError hears how many', async () => {
      const back = new CountingBack(':memory:');
      back.failWith = new Error('database or disk is full');
      const heard: [string, number][] = [];
      const tiered = new TieredStore(new MemoryStore(), back, { onWriteError: (e, n) => heard.push([(e as Error).message, n]) });
      ['a', 'b', 'c'].forEach((k) => tiered.set(entry(`s\x1fk\x1f${k}`)));
      await turn();
      assert.deepEqual(heard, [['database or disk is full', 3]]);
      assert.ok(tiered.get('s\x1fk\x1fb'), 'still answered from memory');
      assert.equal(tiered.pendingWrites, 0);
      back.failWith = undefined;
      tiered.close();
    });
  });

  it('openCache answers from the file after a restart', () => {
    const path = tmpFile();
    const first = openCache({ path });
    first.set(entry('s\x1fk\x1fa'));
    first.close();
    const again = openCache({ path, memoryEntries: 10 });
    assert.deepEqual(again.get('s\x1fk\x1fa'), entry('s\x1fk\x1fa'));
    again.close();
  });
});
