/**
 * The four local source kinds: the Source contract for each, then what is particular to each kind.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FILES_CHECK_INTERVAL_MS, filesKind, parseIdFile } from '../../src/providers/files.js';
import { LibcNss, nssKind } from '../../src/providers/nss.js';
import { SOURCE_KINDS, sourceKind } from '../../src/providers/registry.js';
import { sidKind, sidRangeOverlaps, type SidConfig, type SidRange } from '../../src/providers/sid.js';
import { SourceFault, type MaybePromise, type Source, type SourceEnv } from '../../src/providers/source.js';
import { staticConflicts, staticKind, type StaticConfig } from '../../src/providers/static.js';
import { silentLogger } from '../../src/log.js';
import type { Entity, Sid } from '../../src/types.js';
import { runSourceContract } from '../contract/source.contract.js';

const tmp = mkdtempSync(join(tmpdir(), 'nsidmap-sources-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const env: SourceEnv = { baseDir: tmp, log: silentLogger };
const sid = (s: string): Sid => s as Sid;
/** The static and sid sources answer without a promise (no allocation on the hot path). */
function now<T>(v: MaybePromise<T>): T {
  assert.ok(!(v instanceof Promise), 'answered synchronously');
  return v;
}

// ---------------------------------------------------------------------------------------- files

const PASSWD = [
  '# comment',
  '',
  '   ',
  'root:x:0:0:root:/root:/bin/bash',
  'alice:x:1000:1000:Alice:/home/alice:/bin/sh',
  'bob:x:1001:1001::/home/bob:/bin/sh',
  'svc:x:998:998::/:/usr/sbin/nologin',
  'alice:x:2000:2000:shadowed by the first alice:/:/bin/sh',
  'alias:x:1000:1000:shadowed by alice for id 1000:/:/bin/sh',
  '+nisuser::::::',
  '-baduser::::::',
  '+',
  'broken:x:12:12',
  'neg:x:-1:0::/:/bin/sh',
  'big:x:4294967295:0::/:/bin/sh',
  ':x:13:13::/:/bin/sh',
].join('\n');

const GROUP = ['# groups', 'root:x:0:', 'staff:x:50:alice,bob', 'alice:x:1000:', 'wheel:x:10:alice', 'staff:x:51:', '+:::'].join('\n');

function writeIdFiles(dir: string, passwd = PASSWD, group = GROUP): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'passwd'), passwd);
  writeFileSync(join(dir, 'group'), group);
}

writeIdFiles(join(tmp, 'contract'));
runSourceContract('files', () => filesKind.create('files', { kind: 'files', passwd: 'contract/passwd', group: 'contract/group' }, env), {
  user: {
    known: [
      { name: 'root', id: 0 },
      { name: 'alice', id: 1000 },
      { name: 'bob', id: 1001 },
      { name: 'svc', id: 998 },
    ],
    unknownNames: ['wheel', 'staff', 'nisuser', '+nisuser', 'broken', 'neg', 'big', 'ALICE'],
    unknownIds: [12, 4242],
  },
  group: {
    known: [
      { name: 'root', id: 0 },
      { name: 'staff', id: 50 },
      { name: 'alice', id: 1000 },
      { name: 'wheel', id: 10 },
    ],
    unknownNames: ['bob', 'svc'],
    unknownIds: [1001, 4242],
  },
});

describe('files: parsing passwd/group format', () => {
  const cases: Array<[string, string, Array<[string, number]>, number, number]> = [
    // label, text, entries (name, id), malformed, compat
    ['comments and blank lines are skipped', '# x\n\n  \n  # y\nroot:x:0:0::/:/bin/sh', [['root', 0]], 0, 0],
    ['leading blanks before an entry are ignored', '  root:x:0:0::/:/bin/sh', [['root', 0]], 0, 0],
    ['NIS compat + and - lines are skipped and counted', '+\n+user::::::\n-bad::::::\n+@netgroup', [], 0, 4],
    ['a line with too few fields is malformed', 'a:x:1:1::/', [], 1, 0],
    ['a line with too many fields is malformed', 'a:x:1:1::/:/bin/sh:extra', [], 1, 0],
    ['a non-decimal id is malformed', 'a:x:0x10:1::/:/bin/sh\nb:x: 1:1::/:/bin/sh\nc:x::1::/:/bin/sh', [], 3, 0],
    ['(uid_t)-1 and larger ids are malformed', 'a:x:4294967295:1::/:/bin/sh\nb:x:99999999999:1::/:/bin/sh', [], 2, 0],
    ['the largest valid id is kept', 'a:x:4294967294:1::/:/bin/sh', [['a', 4294967294]], 0, 0],
    ['an empty name is malformed', ':x:5:5::/:/bin/sh', [], 1, 0],
  ];
  for (const [label, text, entries, malformed, compat] of cases) {
    it(label, () => {
      const t = parseIdFile(text, 'passwd');
      assert.deepEqual([...t.byName.values()].map((e) => [e.name, e.id]), entries);
      assert.equal(t.malformed, malformed);
      assert.equal(t.compat, compat);
    });
  }

  it('group lines have four fields', () => {
    const t = parseIdFile('staff:x:50:alice,bob\nbad:x:51\nworse:x:52:a:b', 'group');
    assert.deepEqual([...t.byName.keys()], ['staff']);
    assert.equal(t.malformed, 2);
  });

  it('the first entry wins for a duplicate name and, separately, for a duplicate id', () => {
    const t = parseIdFile('a:x:1:1::/:/s\na:x:2:2::/:/s\nb:x:1:1::/:/s', 'passwd');
    assert.equal(t.byName.get('a')?.id, 1);
    assert.equal(t.byName.get('b')?.id, 1);
    assert.equal(t.byId.get(1)?.name, 'a');
    // getpwuid(2) scans for uid 2 and finds the second `a` line, whose name getpwnam never returns
    assert.deepEqual(t.byId.get(2), { id: 2, name: 'a' });
    assert.equal(t.shadowed, 2);
  });
});

describe('files: the source', () => {
  const make = (dir: string): Source =>
    filesKind.create('f', { kind: 'files', passwd: join(dir, 'passwd'), group: join(dir, 'group') }, env);

  it('reports malformed and NIS lines in its health detail', async () => {
    const src = make(join(tmp, 'contract'));
    await src.start?.();
    const h = src.health?.();
    assert.equal(h?.state, 'up');
    const passwdDetail = /passwd: 5 entries, 4 malformed line\(s\) skipped, 3 NIS compat line\(s\) skipped, 2 duplicate\(s\) shadowed/;
    assert.match(h?.detail ?? '', passwdDetail);
    assert.match(h?.detail ?? '', /1 NIS compat line\(s\) skipped/); // the group file's `+:::`
  });

  it('resolves relative paths against the policy directory', async () => {
    const src = filesKind.create('f', { kind: 'files', passwd: 'contract/passwd', group: 'contract/group' }, env);
    assert.equal((await src.byName?.('user', 'alice'))?.id, 1000);
  });

  it('a missing file at start: not found for everything, health down with the path', async () => {
    const dir = join(tmp, 'missing');
    mkdirSync(dir);
    const src = make(dir);
    await src.start?.();
    assert.equal(await src.byName?.('user', 'root'), undefined);
    assert.equal(await src.byId?.('group', 0), undefined);
    assert.equal(src.health?.().state, 'down');
    assert.match(src.health?.().detail ?? '', new RegExp(`${join(dir, 'passwd')}: missing`));
  });

  it('an unreadable file with no good table is a fault, not "not found"', async () => {
    const dir = join(tmp, 'unreadable');
    mkdirSync(join(dir, 'passwd'), { recursive: true }); // a directory: EISDIR on read
    writeFileSync(join(dir, 'group'), GROUP);
    const src = make(dir);
    await assert.rejects(async () => src.byName?.('user', 'root'), SourceFault);
    assert.equal((await src.byName?.('group', 'staff'))?.id, 50, 'the other file still answers');
    assert.equal(src.health?.().state, 'down');
  });

  it('reloads a file rewritten in place once the check interval has passed', async () => {
    const dir = join(tmp, 'inplace');
    writeIdFiles(dir);
    const src = make(dir);
    assert.equal((await src.byName?.('user', 'alice'))?.id, 1000);
    writeFileSync(join(dir, 'passwd'), 'alice:x:3000:3000::/:/bin/sh\ncarol:x:3001:3001::/:/bin/sh\n');
    await sleep(FILES_CHECK_INTERVAL_MS + 100);
    assert.equal((await src.byName?.('user', 'alice'))?.id, 3000);
    assert.equal((await src.byId?.('user', 3001))?.name, 'carol');
    assert.equal(await src.byName?.('user', 'bob'), undefined);
  });

  it('reloads a file replaced by rename (as useradd and vipw do), even with the same size', async () => {
    const dir = join(tmp, 'rename');
    writeIdFiles(dir, 'alice:x:1000:1000::/:/bin/sh\n');
    const src = make(dir);
    await src.start?.();
    writeFileSync(join(dir, 'passwd+'), 'alice:x:1001:1000::/:/bin/sh\n');
    renameSync(join(dir, 'passwd+'), join(dir, 'passwd'));
    await sleep(FILES_CHECK_INTERVAL_MS + 100);
    assert.equal((await src.byName?.('user', 'alice'))?.id, 1001);
  });

  it('a file that disappears keeps the last good table and reports degraded', async () => {
    const dir = join(tmp, 'vanish');
    writeIdFiles(dir);
    const src = make(dir);
    await src.start?.();
    rmSync(join(dir, 'passwd'));
    await sleep(FILES_CHECK_INTERVAL_MS + 100);
    assert.equal((await src.byName?.('user', 'alice'))?.id, 1000);
    assert.equal(src.health?.().state, 'degraded');
    assert.match(src.health?.().detail ?? '', /missing; serving the last good table/);
    writeFileSync(join(dir, 'passwd'), 'dave:x:4000:4000::/:/bin/sh\n');
    await sleep(FILES_CHECK_INTERVAL_MS + 100);
    assert.equal((await src.byName?.('user', 'dave'))?.id, 4000, 'and picks the file up when it comes back');
    assert.equal(src.health?.().state, 'up');
  });
});

// ------------------------------------------------------------------------------------------ nss

const isRoot = process.getuid?.() === 0;
const testUser = `nsidmap-src-${process.pid}`;

/** Create a user (and its user-private group) for the nss contract; undefined when not root. */
function createTestUser(): { uid: number; gid: number } | undefined {
  if (!isRoot) return undefined;
  execFileSync('useradd', ['--no-create-home', '--user-group', '--shell', '/usr/sbin/nologin', testUser]);
  const uid = Number(execFileSync('id', ['-u', testUser], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', testUser], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

/** An id this host surely does not have: no NSS entry for it as user or group. */
function freeId(): number {
  for (let id = 3_987_654_321; ; id++) {
    const taken = ['passwd', 'group'].some((db) => {
      try {
        execFileSync('getent', [db, String(id)], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    });
    if (!taken) return id;
  }
}

const created = createTestUser();
after(() => {
  if (created) execFileSync('userdel', [testUser]);
});

if (created) {
  const unknownId = freeId();
  runSourceContract('nss', () => nssKind.create('nss', { kind: 'nss' }, env), {
    user: {
      known: [{ name: 'root', id: 0 }, { name: testUser, id: created.uid }],
      unknownNames: [`nsidmap-none-${process.pid}`, 'a\0b'],
      unknownIds: [unknownId],
    },
    group: {
      known: [{ name: 'root', id: 0 }, { name: testUser, id: created.gid }],
      unknownNames: [`nsidmap-none-${process.pid}`],
      unknownIds: [unknownId],
    },
  });
} else {
  describe('Source contract: nss', () => {
    it('needs root to create a test user with useradd', (t) => t.skip('not root: run the tests as root to check the nss source'));
  });
}

describe('nss: libc calls', () => {
  it('retries with a bigger buffer on ERANGE', async () => {
    const nss = await LibcNss.open({ firstBuffer: 8 });
    assert.deepEqual(await nss.lookup('user', 'root'), { name: 'root', id: 0 });
    assert.deepEqual(await nss.lookup('group', 0), { name: 'root', id: 0 });
  });

  it('runs many concurrent lookups to completion (at most MAX_IN_FLIGHT on the pool at once)', async () => {
    const nss = await LibcNss.open();
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => nss.lookup('user', i % 2 ? 'root' : 0)));
    assert.ok(answers.every((a) => a?.id === 0 && a.name === 'root'));
  });

  it('reports health up once it has answered', async () => {
    const src = nssKind.create('nss', { kind: 'nss' }, env);
    await src.start?.();
    assert.equal(src.health?.().state, 'up');
  });
});

// --------------------------------------------------------------------------------------- static

const D = 'S-1-5-21-1-2-3';
const STATIC: StaticConfig = {
  kind: 'static',
  users: { alice: 1000, bob: 1001, root: 0 },
  groups: { staff: 50, alice: 1000 },
  sids: {
    users: { [`${D}-1000`]: 1000, [`${D}-1001`]: 1001 },
    groups: { [`${D}-513`]: 50, 'S-1-5-32-544': 1000 },
  },
};

runSourceContract('static', () => staticKind.create('static', staticKind.schema.parse(STATIC), env), {
  user: {
    known: [
      { name: 'alice', id: 1000, sid: `${D}-1000` },
      { name: 'bob', id: 1001, sid: `${D}-1001` },
      { name: 'root', id: 0 },
    ],
    unknownNames: ['staff', 'carol'],
    unknownIds: [50, 2000],
    unknownSids: [`${D}-513`, `${D}-9999`, 'S-1-5-32-544'],
    unknownSidIds: [0, 50],
  },
  group: {
    known: [
      { name: 'staff', id: 50, sid: `${D}-513` },
      { name: 'alice', id: 1000, sid: 'S-1-5-32-544' },
    ],
    unknownNames: ['bob', 'root'],
    unknownIds: [0, 1001],
    unknownSids: [`${D}-1000`],
    unknownSidIds: [1001],
  },
});

describe('static: schema', () => {
  const bad: Array<[string, unknown]> = [
    ['a negative id', { kind: 'static', users: { a: -1 } }],
    ['a fractional id', { kind: 'static', groups: { a: 1.5 } }],
    ['(uid_t)-1', { kind: 'static', users: { a: 4294967295 } }],
    ['an id written as a string', { kind: 'static', users: { a: '1000' } }],
    ['an empty name', { kind: 'static', users: { '': 5 } }],
    ['a SID key that does not parse', { kind: 'static', sids: { users: { 'S-1-5-21-x': 5 } } }],
    ['a SID key with too many sub-authorities', { kind: 'static', sids: { groups: { [`S-1-5${'-1'.repeat(16)}`]: 5 } } }],
    ['a bad id in a SID table', { kind: 'static', sids: { users: { [`${D}-1`]: -5 } } }],
    ['an unknown key', { kind: 'static', userz: {} }],
    ['an unknown key under sids', { kind: 'static', sids: { user: {} } }],
  ];
  for (const [label, config] of bad) {
    it(`rejects ${label}`, () => assert.equal(staticKind.schema.safeParse(config).success, false));
  }

  it('accepts ids 0 and 4294967294 and lower-case SIDs', () => {
    const ok = { kind: 'static', users: { a: 0, b: 4294967294 }, sids: { users: { 's-1-5-21-1-2-3-7': 7 } } };
    assert.equal(staticKind.schema.safeParse(ok).success, true);
  });

  it('answers a SID key written in lower case by its canonical form', () => {
    const src = staticKind.create('s', { kind: 'static', sids: { users: { 's-1-5-21-1-2-3-7': 7 } } }, env);
    assert.deepEqual(src.bySid?.('user', sid('S-1-5-21-1-2-3-7')), { id: 7, sid: 'S-1-5-21-1-2-3-7' });
    assert.deepEqual(src.sidOf?.('user', 7), { id: 7, sid: 'S-1-5-21-1-2-3-7' });
  });
});

describe('static: staticConflicts', () => {
  it('finds nothing in a one-to-one table', () => assert.deepEqual(staticConflicts(STATIC), []));

  it('finds two names with the same id, per entity', () => {
    const found = staticConflicts({ kind: 'static', users: { a: 5, b: 5, c: 6 }, groups: { a: 6, c: 7 } });
    assert.equal(found.length, 1);
    assert.match(found[0]!, /users: names a, b .*id 5/);
  });

  it('finds two SIDs with the same id in the same entity only', () => {
    const cfg: StaticConfig = { kind: 'static', sids: { users: { [`${D}-1`]: 9, [`${D}-2`]: 9 }, groups: { [`${D}-3`]: 9 } } };
    const found = staticConflicts(cfg);
    assert.equal(found.length, 1);
    assert.match(found[0]!, /sids\.users: SIDs .*-1, .*-2 .*id 9/);
  });

  it('finds one SID written twice', () => {
    const found = staticConflicts({ kind: 'static', sids: { groups: { [`${D}-1`]: 1, [`s-1-5-21-1-2-3-1`]: 2 } } });
    assert.ok(found.some((f) => /same SID S-1-5-21-1-2-3-1/.test(f)), found.join('\n'));
  });

  it('a non-injective table answers id → name with the first name', () => {
    const src = staticKind.create('s', { kind: 'static', users: { a: 5, b: 5 } }, env);
    assert.equal((src.byId?.('user', 5) as { name?: string } | undefined)?.name, 'a');
  });
});

// ------------------------------------------------------------------------------------------ sid

const E = 'S-1-5-21-9-9-9';
const SID_CFG: SidConfig = {
  kind: 'sid',
  ranges: [
    { domain: D, first: 100000, count: 1000 },
    { domain: E, first: 200000, count: 100, ridBase: 1000 },
  ],
};

runSourceContract('sid', () => sidKind.create('sid', sidKind.schema.parse(SID_CFG), env), {
  user: {
    known: [
      { id: 100000, sid: `${D}-0` },
      { id: 100500, sid: `${D}-500` },
      { id: 200099, sid: `${E}-1099` },
      { id: 5, sid: 'S-1-22-1-5' },
      { id: 0, sid: 'S-1-22-1-0' },
    ],
    unknownSids: ['S-1-22-2-5', 'S-1-5-88-2-5', 'S-1-0-0', 'S-1-5-7', 'S-1-5-18', `${D}-1000`, `${E}-999`, 'S-1-5-21-4-4-4-1'],
  },
  group: {
    known: [
      { id: 100513, sid: `${D}-513` },
      { id: 7, sid: 'S-1-22-2-7' },
    ],
    unknownSids: ['S-1-22-1-7', 'S-1-5-88-1-7', 'S-1-1-0', 'S-1-5-32-544'],
  },
});

describe('sid: SID → id', () => {
  const src = sidKind.create('sid', sidKind.schema.parse(SID_CFG), env);
  const cases: Array<[string, Entity, string, number | undefined]> = [
    ['first RID of a range (ridBase 0)', 'user', `${D}-0`, 100000],
    ['last RID of a range', 'user', `${D}-999`, 100999],
    ['one RID past a range', 'user', `${D}-1000`, undefined],
    ['rid = ridBase', 'group', `${E}-1000`, 200000],
    ['one RID below ridBase', 'group', `${E}-999`, undefined],
    ['last RID above ridBase', 'group', `${E}-1099`, 200099],
    ['one past the last RID above ridBase', 'group', `${E}-1100`, undefined],
    ['a RID of another domain', 'user', 'S-1-5-21-4-4-4-0', undefined],
    ['a SID one level below the domain', 'user', `${D}-5-1`, undefined],
    ['the domain SID itself', 'user', D, undefined],
    ['lower-case input', 'user', 's-1-5-21-1-2-3-5', 100005],
    ['Samba Unix user', 'user', 'S-1-22-1-1000', 1000],
    ['Samba Unix group', 'group', 'S-1-22-2-1000', 1000],
    ['NFS Unix user', 'user', 'S-1-5-88-1-1000', 1000],
    ['NFS Unix group', 'group', 'S-1-5-88-2-1000', 1000],
    ['Samba Unix user SID asked as a group', 'group', 'S-1-22-1-1000', undefined],
    ['NFS Unix group SID asked as a user', 'user', 'S-1-5-88-2-1000', undefined],
    ['NFS mode SID', 'user', 'S-1-5-88-3-420', undefined],
    ['Unix SID of (uid_t)-1', 'user', 'S-1-22-1-4294967295', undefined],
    ['Unix SID without an id', 'user', 'S-1-22-1', undefined],
    ['Unix SID with an extra part', 'user', 'S-1-22-1-5-6', undefined],
    ['Nobody', 'user', 'S-1-0-0', undefined],
    ['Anonymous', 'user', 'S-1-5-7', undefined],
    ['SYSTEM (well-known: static tables only)', 'user', 'S-1-5-18', undefined],
    ['BUILTIN\\Administrators', 'group', 'S-1-5-32-544', undefined],
    ['Everyone', 'group', 'S-1-1-0', undefined],
  ];
  for (const [label, entity, text, id] of cases) {
    it(`${label}: ${text} as ${entity} → ${id ?? 'not found'}`, () => {
      assert.equal(now(src.bySid?.(entity, sid(text)))?.id, id);
    });
  }

  it('does not accept Unix SIDs when unix.accept is false', () => {
    const off = sidKind.create('sid', { kind: 'sid', unix: { accept: false } }, env);
    assert.equal(now(off.bySid?.('user', sid('S-1-22-1-5'))), undefined);
    assert.equal(now(off.bySid?.('user', sid('S-1-5-88-1-5'))), undefined);
  });

  it('never maps a SID to id 0 through a range, even one built without the schema', () => {
    const raw = sidKind.create('sid', { kind: 'sid', ranges: [{ domain: D, first: 0, count: 10 }] }, env);
    assert.equal(now(raw.bySid?.('user', sid(`${D}-0`))), undefined);
    assert.equal(now(raw.bySid?.('user', sid(`${D}-1`)))?.id, 1);
    assert.equal(now(raw.sidOf?.('user', 0))?.sid, 'S-1-22-1-0');
  });
});

describe('sid: id → SID', () => {
  const src = sidKind.create('sid', sidKind.schema.parse(SID_CFG), env);
  const cases: Array<[Entity, number, string | undefined]> = [
    ['user', 100000, `${D}-0`],
    ['group', 100999, `${D}-999`],
    ['user', 101000, 'S-1-22-1-101000'],
    ['group', 101000, 'S-1-22-2-101000'],
    ['user', 199999, 'S-1-22-1-199999'],
    ['group', 200000, `${E}-1000`],
    ['user', 200099, `${E}-1099`],
    ['user', 200100, 'S-1-22-1-200100'],
    ['user', 0, 'S-1-22-1-0'],
    ['group', 4294967294, 'S-1-22-2-4294967294'],
    ['user', 4294967295, undefined],
  ];
  for (const [entity, id, expected] of cases) {
    it(`${entity} ${id} → ${expected ?? 'not found'}`, () => assert.equal(now(src.sidOf?.(entity, id))?.sid, expected));
  }

  it("produces S-1-5-88 SIDs when asked to, and none with 'none'", () => {
    const nfs = sidKind.create('sid', { ...SID_CFG, unix: { produce: 'S-1-5-88' } }, env);
    assert.equal(now(nfs.sidOf?.('user', 5))?.sid, 'S-1-5-88-1-5');
    assert.equal(now(nfs.sidOf?.('group', 5))?.sid, 'S-1-5-88-2-5');
    const none = sidKind.create('sid', { ...SID_CFG, unix: { produce: 'none' } }, env);
    assert.equal(now(none.sidOf?.('user', 5)), undefined);
    assert.equal(now(none.sidOf?.('user', 100001))?.sid, `${D}-1`, 'ranges still answer');
  });

  it('has no name lookups: it only knows SIDs', () => {
    assert.equal(src.byName, undefined);
    assert.equal(src.byId, undefined);
  });
});

describe('sid: schema', () => {
  const range = (r: Partial<SidRange>): unknown => ({ kind: 'sid', ranges: [{ domain: D, first: 1000, count: 10, ...r }] });
  const bad: Array<[string, unknown]> = [
    ['a range containing id 0 (root)', range({ first: 0 })],
    ['an empty range', range({ count: 0 })],
    ['a range past the largest id', range({ first: 4294967290, count: 10 })],
    ['RIDs past 2^32-1', range({ ridBase: 4294967290, count: 10 })],
    ['a domain that is not a SID', range({ domain: 'EXAMPLE' })],
    ['a domain with no room for a RID', range({ domain: `S-1-5${'-1'.repeat(15)}` })],
    ['an unknown key in a range', { kind: 'sid', ranges: [{ domain: D, first: 1, count: 1, rid: 0 }] }],
    ['an unknown produce family', { kind: 'sid', unix: { produce: 'S-1-99' } }],
  ];
  for (const [label, config] of bad) {
    it(`rejects ${label}`, () => assert.equal(sidKind.schema.safeParse(config).success, false));
  }
  it('accepts a range ending at the largest id', () => {
    assert.equal(sidKind.schema.safeParse(range({ first: 4294967285, count: 10 })).success, true);
  });
});

describe('sid: sidRangeOverlaps', () => {
  const r = (domain: string, first: number, count: number, ridBase?: number): SidRange =>
    ridBase === undefined ? { domain, first, count } : { domain, first, count, ridBase };
  const cases: Array<[string, SidRange[], RegExp[]]> = [
    ['disjoint ranges', [r(D, 1000, 100), r(E, 2000, 100)], []],
    ['adjacent ranges', [r(D, 1000, 100), r(D, 1100, 100, 100)], []],
    ['one domain, disjoint RIDs, disjoint ids', [r(D, 1000, 100), r(D, 5000, 100, 500)], []],
    ['id intervals that overlap', [r(D, 1000, 100), r(E, 1050, 100)], [/share ids 1050–1099/]],
    ['one domain with overlapping RIDs', [r(D, 1000, 100), r(D, 5000, 100, 50)], [/both map RIDs 50–99 of S-1-5-21-1-2-3/]],
    ['the same range twice, spelled differently', [r(D, 1000, 10), r(D.toLowerCase(), 1000, 10)], [/share ids 1000–1009/, /RIDs 0–9/]],
  ];
  for (const [label, ranges, expected] of cases) {
    it(label, () => {
      const found = sidRangeOverlaps(ranges);
      assert.equal(found.length, expected.length, found.join('\n'));
      expected.forEach((re, i) => assert.match(found[i]!, re));
    });
  }
});

// ------------------------------------------------------------------------------------- registry

describe('registry', () => {
  it('lists the four local kinds and ldap', () => assert.deepEqual(SOURCE_KINDS.map((k) => k.kind), ['files', 'nss', 'static', 'sid', 'ldap']));

  it('finds a kind by name, and nothing for an unknown one', () => {
    assert.equal(sourceKind('static'), staticKind);
    assert.equal(sourceKind('ldap')?.kind, 'ldap');
    assert.equal(sourceKind('ldapp'), undefined);
  });

  /** the least each kind's block needs (most need nothing but their kind) */
  const MINIMAL: Record<string, object> = { ldap: { uri: 'ldap://127.0.0.1', base: 'dc=example,dc=com', schema: 'rfc2307' } };
  for (const k of SOURCE_KINDS) {
    it(`${k.kind}: the schema rejects unknown keys and another kind`, () => {
      const min = MINIMAL[k.kind] ?? {};
      assert.equal(k.schema.safeParse({ kind: k.kind, ...min }).success, true);
      assert.equal(k.schema.safeParse({ kind: k.kind, ...min, bogus: 1 }).success, false);
      assert.equal(k.schema.safeParse({ ...min, kind: 'other' }).success, false);
    });
  }
});
