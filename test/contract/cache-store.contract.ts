/**
 * The CacheStore contract (src/cache/store.ts), run against every implementation: whatever the
 * resolver and idmapctl see must not depend on which store is behind them.
 */

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { freshness, type CacheEntry, type CacheStore } from '../../src/cache/store.js';

const SEP = '\x1f';
const T0 = 1_750_000_000_000;

/** An entry as the resolver builds it: key `<scope>\x1f<kind>\x1f<query>`. */
function entry(scope: string, query: string, value: string | null, over: Partial<CacheEntry> = {}): CacheEntry {
  return {
    key: `${scope}${SEP}name-to-uid${SEP}${query}`,
    scope,
    value,
    source: value === null ? '' : 'files',
    stored: T0,
    expires: T0 + 600_000,
    ...over,
  };
}

export function runCacheStoreContract(name: string, make: () => CacheStore): void {
  describe(`CacheStore contract: ${name}`, () => {
    let store: CacheStore;
    beforeEach(() => {
      store = make();
    });
    afterEach(() => {
      store.close();
    });

    const fill = (...entries: CacheEntry[]): void => entries.forEach((e) => store.set(e));
    const keys = (list: CacheEntry[]): string[] => list.map((e) => e.key);

    describe('get, set, delete', () => {
      it('returns undefined for a key never set', () => {
        assert.equal(store.get('nope'), undefined);
      });

      it('returns every field of an entry as it was set', () => {
        const e = entry('default', 'alice@example.com', '1000');
        store.set(e);
        assert.deepEqual(store.get(e.key), e);
      });

      it('replaces every field when a key is set again', () => {
        store.set(entry('default', 'alice', '1000'));
        const newer = entry('default', 'alice', '2000', { source: 'ldap', stored: T0 + 5, expires: T0 + 10 });
        store.set(newer);
        assert.deepEqual(store.get(newer.key), newer);
        assert.equal(store.stats().entries, 1);
      });

      it('delete removes the key and says whether it was there', () => {
        const e = entry('default', 'alice', '1000');
        store.set(e);
        assert.equal(store.delete(e.key), true);
        assert.equal(store.get(e.key), undefined);
        assert.equal(store.delete(e.key), false);
      });

      it('keeps millisecond timestamps exact', () => {
        const e = entry('default', 'bob', '1001', { stored: 8_640_000_000_000_000 - 1, expires: 8_640_000_000_000_000 });
        store.set(e);
        assert.deepEqual(store.get(e.key), e);
      });
    });

    describe('negative entries', () => {
      it('keeps a cached "not found" (value null) distinct from a missing key', () => {
        const neg = entry('default', 'ghost', null);
        store.set(neg);
        const got = store.get(neg.key);
        assert.notEqual(got, undefined);
        assert.equal(got?.value, null);
        assert.equal(got?.source, '');
        assert.equal(store.get(entry('default', 'other', null).key), undefined);
      });

      it('a negative entry can become positive and back', () => {
        const neg = entry('default', 'carol', null);
        store.set(neg);
        store.set(entry('default', 'carol', '1002'));
        assert.equal(store.get(neg.key)?.value, '1002');
        store.set(neg);
        assert.equal(store.get(neg.key)?.value, null);
      });

      it('a value that spells "null" or is empty is not negative', () => {
        store.set(entry('default', 'a', 'null'));
        store.set(entry('default', 'b', ''));
        assert.equal(store.get(entry('default', 'a', null).key)?.value, 'null');
        assert.equal(store.get(entry('default', 'b', null).key)?.value, '');
        assert.deepEqual(store.stats(), { entries: 2, negative: 0 });
      });
    });

    describe('flush', () => {
      beforeEach(() => {
        fill(
          entry('default', 'alice', '1000'),
          entry('default', 'bob', null),
          entry('tenant-a', 'alice', '5000'),
          entry('tenant-a', 'dave', '5001'),
          entry('tenant-ab', 'erin', '6000'),
        );
      });

      it('with no filter removes everything and returns how many', () => {
        assert.equal(store.flush(), 5);
        assert.deepEqual(store.stats(), { entries: 0, negative: 0 });
        assert.equal(store.flush(), 0);
      });

      it('by scope removes only that scope (not scopes sharing its prefix)', () => {
        assert.equal(store.flush({ scope: 'tenant-a' }), 2);
        assert.deepEqual(keys(store.list()).map((k) => k.split(SEP)[0]), ['default', 'default', 'tenant-ab']);
      });

      it('by key prefix removes keys starting with it', () => {
        assert.equal(store.flush({ prefix: `tenant-a` }), 3);
        assert.equal(store.flush({ prefix: `default${SEP}name-to-uid${SEP}b` }), 1);
        assert.deepEqual(keys(store.list()), [entry('default', 'alice', '').key]);
      });

      it('by scope and prefix removes only keys matching both', () => {
        assert.equal(store.flush({ scope: 'tenant-a', prefix: `tenant-a${SEP}name-to-uid${SEP}d` }), 1);
        assert.equal(store.stats().entries, 4);
      });

      it('returns 0 when nothing matches', () => {
        assert.equal(store.flush({ scope: 'nope' }), 0);
        assert.equal(store.flush({ prefix: 'zzz' }), 0);
        assert.equal(store.stats().entries, 5);
      });

      it('treats a prefix literally: no wildcards, no case folding', () => {
        fill(entry('p%', 'x', '1'), entry('p_', 'y', '2'), entry('pX', 'z', '3'), entry('P%', 'w', '4'));
        assert.equal(store.flush({ prefix: 'p%' }), 1);
        assert.equal(store.flush({ prefix: 'p_' }), 1);
        assert.deepEqual(keys(store.list({ prefix: 'p' })), [entry('pX', 'z', '').key]);
        assert.equal(store.list({ prefix: 'P%' }).length, 1);
      });

      it('an empty prefix matches every key', () => {
        assert.equal(store.flush({ prefix: '' }), 5);
      });
    });

    describe('list', () => {
      it('orders by key whatever the insertion order', () => {
        fill(entry('b', 'x', '1'), entry('a', 'y', '2'), entry('c', 'z', null), entry('a', 'x', '3'));
        assert.deepEqual(
          keys(store.list()),
          [entry('a', 'x', '').key, entry('a', 'y', '').key, entry('b', 'x', '').key, entry('c', 'z', '').key],
        );
      });

      it('filters by scope and by prefix, and returns whole entries', () => {
        const e = entry('s2', 'q', null);
        fill(entry('s1', 'q', '1'), e, entry('s2', 'r', '2'));
        assert.deepEqual(keys(store.list({ scope: 's2' })), [e.key, entry('s2', 'r', '').key]);
        assert.deepEqual(store.list({ prefix: `s2${SEP}name-to-uid${SEP}q` }), [e]);
      });

      it('returns at most limit entries, the first by key', () => {
        fill(entry('s', 'c', '3'), entry('s', 'a', '1'), entry('s', 'b', '2'));
        assert.deepEqual(keys(store.list(undefined, 2)), [entry('s', 'a', '').key, entry('s', 'b', '').key]);
        assert.deepEqual(keys(store.list({ scope: 's' }, 1)), [entry('s', 'a', '').key]);
        assert.deepEqual(store.list(undefined, 0), []);
        assert.equal(store.list(undefined, 10).length, 3);
      });

      it('returns an empty list from an empty store', () => {
        assert.deepEqual(store.list(), []);
      });
    });

    describe('stats', () => {
      it('counts entries and, among them, negative ones', () => {
        assert.deepEqual(store.stats(), { entries: 0, negative: 0 });
        fill(entry('s', 'a', '1'), entry('s', 'b', null), entry('s', 'c', null));
        assert.deepEqual(store.stats(), { entries: 3, negative: 2 });
        store.delete(entry('s', 'b', null).key);
        assert.deepEqual(store.stats(), { entries: 2, negative: 1 });
      });
    });

    describe('keys with odd bytes', () => {
      const odd = [
        `s${SEP}uid-to-name${SEP}1000`,
        'with spaces and\ttab',
        'ünïcödé@exämple.org',
        'emoji 😀 key',
        '日本語\x1f名前',
        'nul\0inside',
        '',
        "quote'\"; DROP TABLE cache; --",
      ];

      it('round-trips every key exactly', () => {
        odd.forEach((key, i) => store.set({ ...entry('s', 'x', String(i)), key }));
        odd.forEach((key, i) => assert.equal(store.get(key)?.value, String(i), JSON.stringify(key)));
        assert.equal(store.stats().entries, odd.length);
      });

      it('orders keys by Unicode code point (as SQLite compares UTF-8 bytes)', () => {
        // U+FF5E is below U+1F600, though its UTF-16 unit sorts after the surrogate 0xD83D.
        const ordered = ['k', 'k\x1f', 'k~', 'k\u00e9', 'k\uff5e', 'k\u{1f600}', 'k\u{1f600}a', 'k\u{10ffff}'];
        [...ordered].reverse().forEach((key) => store.set({ ...entry('s', 'x', '1'), key }));
        assert.deepEqual(keys(store.list()), ordered);
      });

      it('matches prefixes that end in astral and in the highest code points', () => {
        const ks = ['a\u{1f600}', 'a\u{1f600}b', 'a\u{1f601}', 'b\u{10ffff}', 'b\u{10ffff}\u{10ffff}z', 'c'];
        ks.forEach((key) => store.set({ ...entry('s', 'x', '1'), key }));
        assert.deepEqual(keys(store.list({ prefix: 'a\u{1f600}' })), ['a\u{1f600}', 'a\u{1f600}b']);
        assert.deepEqual(keys(store.list({ prefix: 'b\u{10ffff}' })), ['b\u{10ffff}', 'b\u{10ffff}\u{10ffff}z']);
        assert.equal(store.flush({ prefix: '\u{10ffff}' }), 0);
        assert.equal(store.flush({ prefix: 'a\ud7ff' }), 0);
      });
    });

    describe('freshness of a stored entry', () => {
      // ttl 600 s: fresh for the first half, then "refresh" (serve and refresh in the background).
      const e = entry('default', 'fresh', '1000');
      const cases: [string, number, string][] = [
        ['just written', T0, 'fresh'],
        ['just before half the TTL', T0 + 299_999, 'fresh'],
        ['at half the TTL', T0 + 300_000, 'refresh'],
        ['just before expiry', T0 + 599_999, 'refresh'],
        ['at expiry', T0 + 600_000, 'expired'],
        ['long after expiry', T0 + 86_400_000, 'expired'],
      ];
      for (const [when, now, expected] of cases) {
        it(`is ${expected} ${when}`, () => {
          store.set(e);
          const got = store.get(e.key);
          assert.ok(got);
          assert.equal(freshness(got, now), expected);
        });
      }

      it('a zero-TTL entry is expired at once', () => {
        const z = entry('default', 'zero', null, { expires: T0 });
        store.set(z);
        const got = store.get(z.key);
        assert.ok(got);
        assert.equal(freshness(got, T0), 'expired');
      });
    });
  });
}
