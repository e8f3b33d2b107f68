import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdMapParseError, MAX_EXTENTS, fromHost, isIdentityMap, parseIdMap, toHost } from '../../src/ns/idmap.js';
import type { IdMapRange } from '../../src/types.js';

/** The kernel's own formatting: `%10u %10u %10u\n` (kernel/user_namespace.c, uid_m_show). */
const line = (inside: number, outside: number, count: number): string =>
  `${String(inside).padStart(10)} ${String(outside).padStart(10)} ${String(count).padStart(10)}\n`;
const r = (inside: number, outside: number, count: number): IdMapRange => ({ inside, outside, count });

describe('parseIdMap accepts what the kernel writes', () => {
  const cases: [string, string, IdMapRange[]][] = [
    ['the initial namespace', line(0, 0, 4294967295), [r(0, 0, 4294967295)]],
    ['unshare -r', line(0, 0, 1), [r(0, 0, 1)]],
    ['a rootless podman map', line(0, 1000, 1) + line(1, 100000, 65536), [r(0, 1000, 1), r(1, 100000, 65536)]],
    ['an empty map (not written yet)', '', []],
    ['no trailing newline', '0 1000 2', [r(0, 1000, 2)]],
    ['tabs and extra padding', '\t 5\t\t6   7  \n', [r(5, 6, 7)]],
    ['a range ending at the last valid id', line(4294967294, 0, 1), [r(4294967294, 0, 1)]],
  ];
  for (const [name, text, want] of cases) {
    it(name, () => assert.deepEqual(parseIdMap(text), want));
  }
  it(`${MAX_EXTENTS} lines, the kernel's limit`, () => {
    const text = Array.from({ length: MAX_EXTENTS }, (_, i) => line(i, 1000 + i, 1)).join('');
    assert.equal(parseIdMap(text).length, MAX_EXTENTS);
  });
});

describe('parseIdMap rejects what the kernel could not write', () => {
  const cases: [string, string, number][] = [
    ['two fields', '0 1000\n', 1],
    ['four fields', '0 1000 1 1\n', 1],
    ['a negative number', '-1 0 1\n', 1],
    ['a hex number', '0x10 0 1\n', 1],
    ['a fraction', '0 1000.5 1\n', 1],
    ['count 0', '0 1000 0\n', 1],
    ['inside range past u32', line(4294967295, 0, 1), 1],
    ['outside range past u32', line(0, 4294967290, 6), 1],
    ['count of 2^32', '0 0 4294967296\n', 1],
    ['an 11-digit field', '0 0 10000000000\n', 1],
    ['a blank line in between', line(0, 0, 1) + '\n' + line(1, 1, 1), 2],
    ['overlapping inside ranges', line(0, 1000, 10) + line(9, 5000, 1), 2],
    ['overlapping outside ranges', line(0, 1000, 10) + line(100, 1005, 1), 2],
    ['a word', 'root 0 1\n', 1],
  ];
  for (const [name, text, badLine] of cases) {
    it(name, () => {
      assert.throws(() => parseIdMap(text), (e: unknown) => {
        assert.ok(e instanceof IdMapParseError);
        assert.equal(e.code, 'NSIDMAP_ENS');
        assert.equal(e.line, badLine);
        return true;
      });
    });
  }
  it(`more than ${MAX_EXTENTS} lines`, () => {
    const text = Array.from({ length: MAX_EXTENTS + 1 }, (_, i) => line(i, 1000 + i, 1)).join('');
    assert.throws(() => parseIdMap(text), IdMapParseError);
  });
});

describe('isIdentityMap', () => {
  const cases: [string, IdMapRange[], boolean][] = [
    ['0 0 4294967295', [r(0, 0, 4294967295)], true],
    ['0 0 4294967294 (one short)', [r(0, 0, 4294967294)], false],
    ['0 0 1', [r(0, 0, 1)], false],
    ['the identity split in two', [r(0, 0, 10), r(10, 10, 4294967285)], false],
    ['empty', [], false],
  ];
  for (const [name, ranges, want] of cases) it(name, () => assert.equal(isIdentityMap(ranges), want));
});

describe('toHost and fromHost', () => {
  // container root and bin are host 1000 and 1001; ids 1000.. are host 100000..
  const map = [r(0, 1000, 2), r(1000, 100000, 65536)];
  const cases: [string, readonly IdMapRange[], number, number | undefined][] = [
    ['first id of a range', map, 0, 1000],
    ['last id of a range', map, 1, 1001],
    ['one past a range', map, 2, undefined],
    ['first id of the second range', map, 1000, 100000],
    ['last id of the second range', map, 66535, 165535],
    ['one past the second range', map, 66536, undefined],
    ['the identity map', [r(0, 0, 4294967295)], 4294967294, 4294967294],
    ['(u32)-1 is never mapped', [r(0, 0, 4294967295)], 4294967295, undefined],
    ['an empty map maps nothing', [], 0, undefined],
    ['a negative id', map, -1, undefined],
    ['a fractional id', map, 0.5, undefined],
  ];
  for (const [name, ranges, inside, host] of cases) {
    it(`toHost: ${name}`, () => assert.equal(toHost(ranges, inside), host));
    if (host !== undefined) it(`fromHost: ${name} (inverse)`, () => assert.equal(fromHost(ranges, host), inside));
  }
  const hostCases: [string, number, number | undefined][] = [
    ['host id below every range', 999, undefined],
    ['host id between ranges', 1002, undefined],
    ['host id one past the last range', 165536, undefined],
    ['host root, unmapped in the container', 0, undefined],
  ];
  for (const [name, host, inside] of hostCases) it(`fromHost: ${name}`, () => assert.equal(fromHost(map, host), inside));
  it('fromHost: an empty map expresses nothing', () => assert.equal(fromHost([], 0), undefined));
});
