/**
 * NFSv4 client identifiers: the rules (src/ns/clientid.ts), the store and its persistence, the
 * writer on a fake sysfs tree, the responder that ties them together (fake namespaces, fake
 * writer), the policy block, and export/import.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ClientIdStore } from '../../src/cache/clientid.js';
import { makeHandler } from '../../src/daemon/handler.js';
import { silentLogger } from '../../src/log.js';
import {
  CLIENT_ID_MAX,
  checkIdentifier,
  decideIdentifier,
  identifierFromMachineId,
  ruleFor,
  type ClientIdPolicy,
  type ClientIdRule,
} from '../../src/ns/clientid.js';
import { SysfsClientIdWriter, type ApplyMode, type ApplyResult, type ClientIdWriter } from '../../src/ns/clientid-writer.js';
import type { NetNamespace } from '../../src/ns/discovery.js';
import { Policy } from '../../src/resolver/policy/schema.js';
import { decodeRequest } from '../../src/responders/admin/protocol.js';
import { ClientIdResponder, readInRoot } from '../../src/responders/uevent/clientid.js';
import type { ResponderEnv } from '../../src/responders/responder.js';

const tmp = mkdtempSync(join(tmpdir(), 'nsidmap-clientid-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const MACHINE_ID = 'b08dfa6083e7567a1921a715000001fb\n';
const MACHINE_ID_2 = '4f2c6b1e9d8a7c5b3a2918e7d6c5b4a3\n';
/** `sha256sum /etc/machine-id | cut -c1-63` */
const sha = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 63);

describe('checkIdentifier', () => {
  const cases: [string, string, RegExp | undefined][] = [
    ['a sha256 cut to 63', 'a'.repeat(63), undefined],
    ['a UUID', '0b4c2f6e-1d3a-4b5c-9e8f-7a6b5c4d3e2f', undefined],
    ['one character', 'x', undefined],
    ['empty', '', /empty/],
    ['64 characters', 'a'.repeat(64), /63/],
    ['a space', 'a b', /printable/],
    ['a newline (the kernel would cut it there)', 'ab\n', /printable/],
    ['a non-ASCII character', 'é', /printable/],
    ['what the kernel shows when unset', '(null)', /unset|no identifier/],
  ];
  for (const [name, v, want] of cases) {
    it(name, () => (want === undefined ? assert.equal(checkIdentifier(v), undefined) : assert.match(checkIdentifier(v) ?? '', want)));
  }
});

describe('identifierFromMachineId', () => {
  it('is sha256sum of the file, newline included, cut to the 63 characters the kernel keeps', () => {
    const id = identifierFromMachineId(Buffer.from(MACHINE_ID));
    assert.equal(id, sha(MACHINE_ID));
    assert.equal(id?.length, CLIENT_ID_MAX);
    assert.equal(checkIdentifier(id!), undefined);
  });

  it('matches the kernel documentation recipe run by sha256sum(1)', { skip: spawnSync('sha256sum', ['--version']).status !== 0 && 'no sha256sum' }, () => {
    const file = join(tmp, 'machine-id');
    writeFileSync(file, MACHINE_ID);
    const hex = spawnSync('sha256sum', [file], { encoding: 'utf8' }).stdout.split(' ')[0]!;
    assert.equal(identifierFromMachineId(Buffer.from(MACHINE_ID)), hex.slice(0, 63));
  });

  for (const [name, text] of [['empty', ''], ['uninitialized (first boot)', 'uninitialized\n'], ['not hex', 'zz'.repeat(16) + '\n'], ['too short', 'abc\n']] as const) {
    it(`gives nothing for a machine-id that is ${name}`, () => assert.equal(identifierFromMachineId(Buffer.from(text)), undefined));
  }
});

describe('readInRoot', () => {
  const root = join(tmp, 'container-root');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'run'), { recursive: true });
  writeFileSync(join(root, 'run/machine-id'), MACHINE_ID_2);
  writeFileSync(join(root, 'etc/hostname'), 'c1\n');
  symlinkSync('/run/machine-id', join(root, 'etc/machine-id'));
  symlinkSync('hostname', join(root, 'etc/name'));
  symlinkSync('/etc/loop', join(root, 'etc/loop'));
  const read = (p: string): string | undefined => readInRoot(root, p, (f) => readFileSync(f))?.toString();

  it('follows an absolute link inside the container\'s root, not ours', () => assert.equal(read('/etc/machine-id'), MACHINE_ID_2));
  it('follows a relative link', () => assert.equal(read('/etc/name'), 'c1\n'));
  it('reads a plain file', () => assert.equal(read('/etc/hostname'), 'c1\n'));
  it('gives up on a loop', () => assert.equal(read('/etc/loop'), undefined));
  it('gives nothing for a missing file', () => assert.equal(read('/etc/absent'), undefined));
});

describe('ruleFor', () => {
  const policy: ClientIdPolicy = { from: 'random', namespaces: { host: { from: 'fixed', value: 'h1' }, web: { from: 'off' } } };
  const cases: [string, ClientIdPolicy | undefined, string, ClientIdRule][] = [
    ['no policy: machine-id', undefined, 'x', { from: 'machine-id' }],
    ['the policy default', policy, 'other', { from: 'random' }],
    ['a key of its own', policy, 'host', { from: 'fixed', value: 'h1' }],
    ['off for one key', policy, 'web', { from: 'off' }],
    ['not an inherited property', policy, 'constructor', { from: 'random' }],
  ];
  for (const [name, p, key, want] of cases) it(name, () => assert.deepEqual(ruleFor(p, key), want));
});

describe('decideIdentifier', () => {
  const mid = sha(MACHINE_ID);
  const none = (): undefined => undefined;
  const heldBy = (holder: string) => (id: string) => (id === mid || id === 'taken' ? holder : undefined);

  it('keeps a stored identifier whatever the default says', () => {
    assert.deepEqual(decideIdentifier({ from: 'machine-id' }, 'old', { machineId: mid }, none), { action: 'keep', identifier: 'old' });
    assert.deepEqual(decideIdentifier({ from: 'random' }, 'old', {}, none), { action: 'keep', identifier: 'old' });
  });
  it('stores the machine-id digest for a namespace seen the first time', () => {
    assert.deepEqual(decideIdentifier({ from: 'machine-id' }, undefined, { machineId: mid }, none), { action: 'store', identifier: mid, source: 'machine-id' });
  });
  it('falls back to random without a machine-id', () => {
    const d = decideIdentifier({ from: 'machine-id' }, undefined, {}, none);
    assert.equal(d.action, 'store');
    assert.ok(d.action === 'store' && d.source === 'random' && /^[0-9a-f]{32}$/.test(d.identifier) && /no machine-id/.test(d.note ?? ''));
  });
  it('falls back to random when the namespace sees the host\'s machine-id', () => {
    const d = decideIdentifier({ from: 'machine-id' }, undefined, { machineId: mid, sharesHostMachineId: true }, none);
    assert.ok(d.action === 'store' && d.source === 'random' && d.identifier !== mid);
  });
  it('falls back to random when another namespace holds the digest (a cloned machine-id)', () => {
    const d = decideIdentifier({ from: 'machine-id' }, undefined, { machineId: mid }, heldBy('web1'));
    assert.ok(d.action === 'store' && d.source === 'random' && d.identifier !== mid && /web1/.test(d.note ?? ''));
  });
  it('a fixed value replaces a stored one', () => {
    assert.deepEqual(decideIdentifier({ from: 'fixed', value: 'f1' }, 'old', {}, none), { action: 'store', identifier: 'f1', source: 'fixed' });
    assert.deepEqual(decideIdentifier({ from: 'fixed', value: 'f1' }, 'f1', {}, none), { action: 'keep', identifier: 'f1' });
  });
  it('a fixed value another key holds is a conflict, not a second holder', () => {
    assert.deepEqual(decideIdentifier({ from: 'fixed', value: 'taken' }, undefined, {}, heldBy('db')), { action: 'conflict', identifier: 'taken', holder: 'db' });
  });
  it('off touches nothing, stored or not', () => {
    assert.deepEqual(decideIdentifier({ from: 'off' }, 'old', { machineId: mid }, none), { action: 'off' });
  });
  it('random identifiers differ', () => {
    const a = decideIdentifier({ from: 'random' }, undefined, {}, none);
    const b = decideIdentifier({ from: 'random' }, undefined, {}, none);
    assert.ok(a.action === 'store' && b.action === 'store' && a.identifier !== b.identifier);
  });
});

describe('ClientIdStore', () => {
  const file = join(tmp, 'state.sqlite');

  it('keeps identifiers across a reopen (a daemon restart)', () => {
    const s1 = ClientIdStore.open(file);
    s1.set('web1', 'id-web1', 'machine-id', 1000);
    s1.markApplied('web1', 4026532177, 2000);
    s1.close();
    const s2 = ClientIdStore.open(file);
    assert.deepEqual(s2.get('web1'), { key: 'web1', identifier: 'id-web1', source: 'machine-id', updated: 1000, applied: 2000, appliedNetns: 4026532177 });
    assert.deepEqual(s2.list().map((r) => r.key), ['web1']);
    s2.close();
  });

  it('refuses to give two keys one identifier', () => {
    const s = ClientIdStore.open(file);
    assert.throws(() => s.set('web2', 'id-web1', 'set'), (e: Error & { code?: string }) => e.code === 'NSIDMAP_ECLIENTID' && /already web1's/.test(e.message));
    assert.equal(s.holderOf('id-web1'), 'web1');
    assert.equal(s.holderOf('id-web1', 'web1'), undefined);
    s.close();
  });

  it('refuses an identifier the kernel would not keep whole', () => {
    const s = ClientIdStore.open(file);
    assert.throws(() => s.set('web3', 'x'.repeat(64), 'set'), /63/);
    assert.throws(() => s.set('', 'abc', 'set'), /empty/);
    s.close();
  });

  it('forgets where it was applied when the identifier changes', () => {
    const s = ClientIdStore.open(file);
    s.set('web1', 'id-web1', 'set', 3000);
    assert.equal(s.get('web1')?.applied, 2000, 'same identifier: still applied');
    s.set('web1', 'id-web1-new', 'set', 4000);
    assert.equal(s.get('web1')?.applied, undefined);
    s.close();
  });

  it('deletes a key with where it was applied', () => {
    const s = ClientIdStore.open(file);
    s.markApplied('web1', 1, 5000);
    assert.equal(s.delete('web1'), true);
    assert.equal(s.get('web1'), undefined);
    assert.equal(s.delete('web1'), false);
    s.set('web1', 'again', 'set');
    assert.equal(s.get('web1')?.applied, undefined);
    s.close();
  });
});

describe('SysfsClientIdWriter on a fake sysfs tree (no helper)', () => {
  let root: string;
  const file = (): string => join(root, 'fs/nfs/net/nfs_client/identifier');
  beforeEach(() => {
    root = mkdtempSync(join(tmp, 'sysfs-'));
    mkdirSync(join(root, 'fs/nfs/net/nfs_client'), { recursive: true });
    writeFileSync(file(), '(null)\n');
  });
  const writer = (): SysfsClientIdWriter => new SysfsClientIdWriter({ sysfs: root, enter: false });

  it('writes into an unset identifier, without a newline', async () => {
    assert.deepEqual(await writer().apply('/proc/self/ns/net', 'abc', 'auto'), { state: 'written' });
    assert.equal(readFileSync(file(), 'utf8'), 'abc');
  });
  it('leaves its own value as it is', async () => {
    writeFileSync(file(), 'abc\n');
    assert.deepEqual(await writer().apply('/proc/self/ns/net', 'abc', 'auto'), { state: 'unchanged', previous: 'abc' });
  });
  it('leaves a value someone else set, unless forced', async () => {
    writeFileSync(file(), 'theirs\n');
    assert.deepEqual(await writer().apply('/proc/self/ns/net', 'ours', 'auto'), { state: 'foreign', previous: 'theirs' });
    assert.equal(readFileSync(file(), 'utf8'), 'theirs\n');
    assert.deepEqual(await writer().apply('/proc/self/ns/net', 'ours', 'force'), { state: 'written', previous: 'theirs' });
    assert.equal(readFileSync(file(), 'utf8'), 'ours');
  });
  it('says "no NFS client in this kernel" when there is no fs/nfs', async () => {
    rmSync(join(root, 'fs/nfs'), { recursive: true });
    assert.deepEqual(await writer().apply('/proc/self/ns/net', 'abc', 'auto'), { state: 'no-nfs' });
  });
  it('says when the namespace has no nfs_client object', async () => {
    rmSync(join(root, 'fs/nfs/net/nfs_client'), { recursive: true });
    assert.deepEqual(await writer().apply('/proc/self/ns/net', 'abc', 'auto'), { state: 'no-client' });
  });
});

/** A writer that records calls and answers from a per-path script. */
class FakeWriter implements ClientIdWriter {
  calls: { nsPath: string; identifier: string; mode: ApplyMode }[] = [];
  held = new Map<string, string>();
  noNfs = false;
  async apply(nsPath: string, identifier: string, mode: ApplyMode): Promise<ApplyResult> {
    this.calls.push({ nsPath, identifier, mode });
    if (this.noNfs) return { state: 'no-nfs' };
    const cur = this.held.get(nsPath);
    if (cur === identifier) return { state: 'unchanged', previous: cur };
    if (cur !== undefined && mode === 'auto') return { state: 'foreign', previous: cur };
    this.held.set(nsPath, identifier);
    return cur === undefined ? { state: 'written' } : { state: 'written', previous: cur };
  }
}

function ns(over: Partial<NetNamespace> & Pick<NetNamespace, 'key' | 'inode'>): NetNamespace {
  const pid = over.pid ?? over.inode % 10000;
  return { keySource: 'container', isInit: false, pid, nsPath: `/proc/${pid}/ns/net`, root: `/fake/${over.key}`, pipefs: [], ...over };
}

const env: ResponderEnv = { resolver: () => assert.fail('no resolver'), engine: () => assert.fail('no engine'), log: silentLogger };
const hooks = { rescanSoon: () => undefined };

describe('ClientIdResponder', () => {
  const HOST = ns({ key: 'host', inode: 4026531833, isInit: true, keySource: 'host', root: '/' });
  const WEB1 = ns({ key: 'web1', inode: 4026532101 });
  const WEB2 = ns({ key: 'web2', inode: 4026532102 });
  const EPHEMERAL = ns({ key: 'netns:4026532103', inode: 4026532103, keySource: 'inode', root: undefined });
  let files: Map<string, string>;
  let store: ClientIdStore;
  let writer: FakeWriter;
  let policy: ClientIdPolicy | undefined;

  const make = (): ClientIdResponder =>
    new ClientIdResponder({
      store,
      writer,
      policy: () => policy,
      uevents: false,
      readFile: (p) => {
        const v = files.get(p);
        if (v === undefined) throw Object.assign(new Error(`ENOENT ${p}`), { code: 'ENOENT' });
        return Buffer.from(v);
      },
      readInRoot: (root, p) => {
        const v = files.get(`${root === '/' ? '' : root}${p}`);
        return v === undefined ? undefined : Buffer.from(v);
      },
    });

  beforeEach(() => {
    files = new Map([['/etc/machine-id', MACHINE_ID], ['/fake/web1/etc/machine-id', MACHINE_ID_2], ['/fake/web2/etc/machine-id', MACHINE_ID_2]]);
    store = ClientIdStore.open(':memory:');
    writer = new FakeWriter();
    policy = undefined;
  });

  it('sets each namespace from its own machine-id when it appears, and stores it first', async () => {
    const r = make();
    await r.start(env, hooks);
    await r.appeared(HOST);
    await r.appeared(WEB1);
    assert.deepEqual(writer.calls.map((c) => [c.nsPath, c.identifier, c.mode]), [
      [HOST.nsPath, sha(MACHINE_ID), 'auto'],
      [WEB1.nsPath, sha(MACHINE_ID_2), 'auto'],
    ]);
    assert.equal(store.get('web1')?.source, 'machine-id');
    assert.equal(store.get('web1')?.appliedNetns, WEB1.inode);
    assert.deepEqual(r.describe(WEB1), { clientid: sha(MACHINE_ID_2), clientidState: 'written' });
    await r.stop();
  });

  it('gives a second container with the same machine-id a random identifier', async () => {
    const r = make();
    await r.start(env, hooks);
    await r.appeared(WEB1);
    await r.appeared(WEB2);
    const ids = [store.get('web1')!, store.get('web2')!];
    assert.equal(ids[0]!.identifier, sha(MACHINE_ID_2));
    assert.equal(ids[1]!.source, 'random');
    assert.notEqual(ids[1]!.identifier, ids[0]!.identifier);
    await r.stop();
  });

  it('gives a namespace that sees the host\'s machine-id a random identifier, not the host\'s', async () => {
    files.set('/fake/web1/etc/machine-id', MACHINE_ID);
    const r = make();
    await r.start(env, hooks);
    await r.appeared(WEB1);
    assert.equal(store.get('web1')?.source, 'random');
    await r.stop();
  });

  it('keeps the stored identifier of a restarted container (new namespace, same key)', async () => {
    store.set('web1', 'kept-from-before', 'import');
    const r = make();
    await r.start(env, hooks);
    await r.appeared({ ...WEB1, inode: 4026532199 });
    assert.deepEqual(writer.calls.map((c) => c.identifier), ['kept-from-before']);
    await r.stop();
  });

  it('leaves an identifier someone else set, and says so', async () => {
    writer.held.set(WEB1.nsPath, 'set-by-the-container');
    const r = make();
    await r.start(env, hooks);
    await r.appeared(WEB1);
    assert.equal(r.describe(WEB1)['clientidState'], 'foreign');
    assert.equal(writer.held.get(WEB1.nsPath), 'set-by-the-container');
    await r.stop();
  });

  it('an admin set replaces it at once, forced', async () => {
    writer.held.set(WEB1.nsPath, 'set-by-the-container');
    const r = make();
    await r.start(env, hooks);
    await r.appeared(WEB1);
    const res = await r.set('web1', 'admin-choice', 'set');
    assert.equal(res.record.source, 'set');
    assert.equal(res.applied?.state, 'written');
    assert.equal(writer.held.get(WEB1.nsPath), 'admin-choice');
    assert.equal(writer.calls.at(-1)?.mode, 'force');
    await r.stop();
  });

  it('an admin set for a key with no namespace here is stored for later', async () => {
    const r = make();
    await r.start(env, hooks);
    const res = await r.set('elsewhere', 'later', 'import');
    assert.equal(res.applied, undefined);
    assert.equal(r.show('elsewhere').identifier, 'later');
    await r.stop();
  });

  it('follows the policy: fixed, off, and the host left to nfs.nfs4_unique_id', async () => {
    policy = { namespaces: { web1: { from: 'fixed', value: 'fixed-web1' }, web2: { from: 'off' } } };
    files.set('/sys/module/nfs/parameters/nfs4_unique_id', 'site-wide\n');
    const r = make();
    await r.start(env, hooks);
    await r.appeared(HOST);
    await r.appeared(WEB1);
    await r.appeared(WEB2);
    assert.deepEqual(writer.calls.map((c) => c.identifier), ['fixed-web1']);
    assert.equal(r.describe(HOST)['clientidState'], 'off');
    assert.equal(r.describe(WEB2)['clientidState'], 'off');
    await assert.rejects(r.set('web1', 'other', 'set'), /policy fixes/);
    await r.stop();
  });

  it('a fixed value another key already holds is a conflict, not written', async () => {
    store.set('web2', 'fixed-web1', 'set');
    policy = { namespaces: { web1: { from: 'fixed', value: 'fixed-web1' } } };
    const r = make();
    await r.start(env, hooks);
    await r.appeared(WEB1);
    assert.equal(writer.calls.length, 0);
    assert.equal(r.describe(WEB1)['clientidState'], 'conflict');
    await r.stop();
  });

  it('forgets an inode-keyed namespace when it goes; keeps a container\'s', async () => {
    const r = make();
    await r.start(env, hooks);
    await r.appeared(EPHEMERAL);
    await r.appeared(WEB1);
    assert.equal(store.get(EPHEMERAL.key)?.source, 'random');
    await r.gone(EPHEMERAL);
    await r.gone(WEB1);
    assert.equal(store.get(EPHEMERAL.key), undefined);
    assert.ok(store.get('web1'));
    assert.deepEqual(r.statuses(), []);
    await r.stop();
  });

  it('after its first scan, drops inode keys of namespaces that died meanwhile, and nothing else', async () => {
    store.set('netns:4026532999', 'stale', 'random');
    store.set(EPHEMERAL.key, 'still-here', 'random');
    store.set('web-stopped', 'kept', 'machine-id');
    const r = make();
    await r.start(env, hooks);
    await r.appeared(EPHEMERAL);
    r.scanned([EPHEMERAL]);
    assert.deepEqual(store.list().map((x) => x.key), [EPHEMERAL.key, 'web-stopped']);
    store.set('netns:4026532998', 'later', 'random');
    r.scanned([EPHEMERAL]);
    assert.ok(store.get('netns:4026532998'), 'only the first scan purges');
    await r.stop();
  });

  it('reports "no NFS client in this kernel" and still stores the identifier', async () => {
    writer.noNfs = true;
    const r = make();
    await r.start(env, hooks);
    await r.appeared(WEB1);
    const v = r.show('web1');
    assert.equal(v.state, 'no-nfs');
    assert.match(v.detail ?? '', /no NFS client in this kernel/);
    assert.equal(v.identifier, sha(MACHINE_ID_2));
    assert.equal(v.applied, undefined);
    await r.stop();
  });

  it('lists stored keys and live namespaces together', async () => {
    store.set('moved-away', 'm1', 'import');
    const r = make();
    await r.start(env, hooks);
    await r.appeared(WEB1);
    assert.deepEqual(r.list().map((v) => [v.key, v.state ?? '-']), [['moved-away', '-'], ['web1', 'written']]);
    assert.throws(() => r.show('nothing'), (e: Error & { code?: string }) => e.code === 'NSIDMAP_ENOCLIENTID');
    await r.stop();
  });

  it('never writes one namespace twice at once (a uevent during a scan)', async () => {
    let inFlight = 0;
    let most = 0;
    const slow: ClientIdWriter = {
      apply: async () => {
        most = Math.max(most, ++inFlight);
        await new Promise((res) => setTimeout(res, 10));
        inFlight--;
        return { state: 'written' };
      },
    };
    const r = new ClientIdResponder({ store, writer: slow, policy: () => undefined, uevents: false, readInRoot: () => Buffer.from(MACHINE_ID_2) });
    await r.start(env, hooks);
    await r.appeared(WEB1);
    await Promise.all([r.apply(WEB1.inode, 'uevent'), r.apply(WEB1.inode, 'uevent'), r.apply(WEB1.inode, 'scan')]);
    assert.equal(most, 1);
    await r.stop();
  });
});

describe('the policy\'s clientid block', () => {
  const parse = (clientid: unknown): string => {
    const r = Policy.safeParse({ clientid });
    return r.success ? 'ok' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  };
  const cases: [string, unknown, RegExp][] = [
    ['a default and per-key rules', { from: 'machine-id', namespaces: { host: { from: 'fixed', value: 'h-1' }, web: { from: 'off' }, db: { from: 'random' } } }, /^ok$/],
    ['an empty block', {}, /^ok$/],
    ['a fixed default (every namespace one client)', { from: 'fixed' }, /clientid\.from: .*namespaces/],
    ['fixed without a value', { namespaces: { a: { from: 'fixed' } } }, /namespaces\.a\.value/],
    ['a value with a space', { namespaces: { a: { from: 'fixed', value: 'a b' } } }, /printable/],
    ['a value of 64 characters', { namespaces: { a: { from: 'fixed', value: 'x'.repeat(64) } } }, /63/],
    ['"(null)"', { namespaces: { a: { from: 'fixed', value: '(null)' } } }, /no identifier is set/],
    ['one fixed value for two keys', { namespaces: { a: { from: 'fixed', value: 'v' }, b: { from: 'fixed', value: 'v' } } }, /namespaces\.b\.value: the same value as a/],
    ['a value with a non-fixed rule', { namespaces: { a: { from: 'random', value: 'v' } } }, /value/],
    ['an unknown key', { from: 'random', extra: 1 }, /extra/],
  ];
  for (const [name, block, want] of cases) it(name, () => assert.match(parse(block), want));
});

describe('idmapctl clientid export / import (--cache)', () => {
  const ROOT = fileURLToPath(new URL('../..', import.meta.url));
  const idmapctl = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, encoding: 'utf8' });
  const oldHost = join(tmp, 'old-host.sqlite');
  const newHost = join(tmp, 'new-host.sqlite');

  it('carries an identifier to another host under the container\'s new key', () => {
    const s = ClientIdStore.open(oldHost);
    s.set('c0ffee', 'identity-of-web', 'machine-id');
    s.close();
    const exp = idmapctl('clientid', 'export', 'c0ffee', '--cache', oldHost);
    assert.equal(exp.status, 0, exp.stderr);
    const doc = JSON.parse(exp.stdout) as Record<string, string>;
    assert.equal(doc['format'], 'nsidmap-clientid/1');
    assert.equal(doc['identifier'], 'identity-of-web');
    const file = join(tmp, 'web.clientid.json');
    writeFileSync(file, exp.stdout);
    const imp = idmapctl('clientid', 'import', file, '--key', 'beef01', '--cache', newHost);
    assert.equal(imp.status, 0, imp.stderr);
    assert.match(imp.stdout, /beef01: identity-of-web \(import\); written when its namespace appears/);
    const show = idmapctl('clientid', 'show', 'beef01', '--cache', newHost, '--json');
    assert.equal(show.status, 0, show.stderr);
    assert.deepEqual({ ...JSON.parse(show.stdout), updated: 0 }, { key: 'beef01', identifier: 'identity-of-web', source: 'import', updated: 0 });
  });

  it('refuses to import an identifier another key holds', () => {
    const file = join(tmp, 'web.clientid.json');
    const again = idmapctl('clientid', 'import', file, '--key', 'other', '--cache', newHost);
    assert.equal(again.status, 10);
    assert.match(again.stderr, /^NSIDMAP_ECLIENTID: identifier identity-of-web is already beef01's/);
  });

  it('refuses a file that is not an export', () => {
    const file = join(tmp, 'not-export.json');
    writeFileSync(file, JSON.stringify({ key: 'x', identifier: 'y' }));
    const r = idmapctl('clientid', 'import', file, '--cache', newHost);
    assert.equal(r.status, 10);
    assert.match(r.stderr, /not an nsidmap-clientid\/1 export: format/);
  });

  it('shows nothing for an unknown key (exit 1) and refuses a --cache file that is not there', () => {
    const r = idmapctl('clientid', 'show', 'nope', '--cache', newHost);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /NSIDMAP_ENOCLIENTID/);
    const missing = idmapctl('clientid', 'list', '--cache', join(tmp, 'absent.sqlite'));
    assert.equal(missing.status, 6);
  });

  it('lists in columns, and as JSON', () => {
    const r = idmapctl('clientid', 'list', '--cache', newHost);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^KEY\s+IDENTIFIER\s+SOURCE\s+UPDATED\s+NETNS\s+STATE\nbeef01\s+identity-of-web\s+import\s+\S+Z\s+-\s+-\n$/);
    const j = idmapctl('clientid', 'list', '--cache', newHost, '--json');
    assert.deepEqual((JSON.parse(j.stdout) as { key: string }[]).map((v) => v.key), ['beef01']);
  });
});

describe('admin socket: clientid ops', () => {
  const info = { version: 'test', startedAt: 0, socket: '/dev/null' };
  const noEngine = () => assert.fail('the clientid ops need no engine');

  it('decodes list, show and set requests, and refuses a set without a source', () => {
    assert.equal(decodeRequest('{"id":1,"op":"clientid.list"}').ok, true);
    assert.equal(decodeRequest('{"id":2,"op":"clientid.show","key":"host"}').ok, true);
    assert.equal(decodeRequest('{"id":3,"op":"clientid.set","key":"web1","identifier":"abc","source":"import"}').ok, true);
    assert.equal(decodeRequest('{"id":4,"op":"clientid.set","key":"web1","identifier":"abc"}').ok, false);
    assert.equal(decodeRequest('{"id":5,"op":"clientid.show","key":""}').ok, false);
  });

  it('answers from the responder the daemon passes, and says so when there is none', async () => {
    const store = ClientIdStore.open(':memory:');
    const writer = new FakeWriter();
    const r = new ClientIdResponder({ store, writer, policy: () => undefined, uevents: false, readInRoot: () => Buffer.from(MACHINE_ID_2) });
    await r.start(env, hooks);
    await r.appeared(ns({ key: 'web1', inode: 4026532101 }));
    const handler = makeHandler(noEngine, info, silentLogger, async () => undefined, () => [], async () => undefined, () => r);
    const list = (await handler({ id: 1, op: 'clientid.list' })) as { key: string; state: string }[];
    assert.deepEqual(list.map((v) => [v.key, v.state]), [['web1', 'written']]);
    const set = (await handler({ id: 2, op: 'clientid.set', key: 'web1', identifier: 'from-admin', source: 'set' })) as { applied: { state: string } };
    assert.equal(set.applied.state, 'written');
    assert.equal(((await handler({ id: 3, op: 'clientid.show', key: 'web1' })) as { identifier: string }).identifier, 'from-admin');
    await r.stop();
    const without = makeHandler(noEngine, info, silentLogger, async () => undefined);
    await assert.rejects(without({ id: 4, op: 'clientid.list' }), /does not manage NFSv4 client identifiers/);
  });
});
