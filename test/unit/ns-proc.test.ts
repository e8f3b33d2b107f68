import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NsidmapError } from '../../src/errors.js';
import { buildContext } from '../../src/ns/context.js';
import { INIT_USER_NS, isProcGone, readNsInode } from '../../src/ns/proc.js';
import { isIdentityMap } from '../../src/ns/idmap.js';

const errno = (code: string): Error => Object.assign(new Error(code), { code });

describe('isProcGone', () => {
  const cases: [string, unknown, boolean][] = [
    ['ENOENT: no /proc/<pid>, or a zombie\'s ns link', errno('ENOENT'), true],
    ['ESRCH: the task exited while its file was opened', errno('ESRCH'), true],
    ['EACCES: not ours to look at', errno('EACCES'), false],
    ['ENOENT wrapped in NSIDMAP_ENS', new NsidmapError('NSIDMAP_ENS', 'x', { cause: errno('ENOENT') }), true],
    ['EACCES wrapped in NSIDMAP_ENS', new NsidmapError('NSIDMAP_ENS', 'x', { cause: errno('EACCES') }), false],
    ['a parse error', new NsidmapError('NSIDMAP_ENS', 'bad map'), false],
    ['a non-error', 'ENOENT', false],
  ];
  for (const [name, e, want] of cases) it(name, () => assert.equal(isProcGone(e), want));
});

describe('pids that are not pids', () => {
  for (const pid of [0, -1, 1.5, Number.NaN, 2 ** 60]) {
    it(`${pid} is refused with NSIDMAP_ENS before any /proc path is built`, () => {
      assert.throws(() => readNsInode(pid, 'user'), (e: unknown) => e instanceof NsidmapError && e.code === 'NSIDMAP_ENS');
      assert.throws(() => buildContext('admin', pid), (e: unknown) => e instanceof NsidmapError && e.code === 'NSIDMAP_ENS');
    });
  }
});

describe('INIT_USER_NS', () => {
  it('is the kernel\'s init_user_ns: identity map, root-owned, fixed inode', () => {
    assert.equal(isIdentityMap(INIT_USER_NS.uidMap), true);
    assert.equal(isIdentityMap(INIT_USER_NS.gidMap), true);
    assert.equal(INIT_USER_NS.owner, 0);
    assert.equal(INIT_USER_NS.isInit, true);
  });
  it('matches what our own process reads when we run in it', (t) => {
    const inode = readNsInode(process.pid, 'user');
    if (inode !== INIT_USER_NS.inode) return t.skip('this test runs inside a user namespace');
    assert.equal(inode, 4026531837);
  });
});
