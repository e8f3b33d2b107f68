/**
 * Namespace discovery, the supervisor, the client identifier writer and the uevent listener on
 * real kernel objects: network and mount namespaces from unshare(1) and `ip netns`, a tmpfs
 * standing in for rpc_pipefs inside a new mount namespace, and real NETLINK_KOBJECT_UEVENT
 * sockets fed by writes to /sys/…/uevent files. Needs root; each part skips with a reason when
 * a tool or kernel feature is missing. Every process and named namespace made here is removed in
 * after(), whatever happened.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientIdStore } from '../../src/cache/clientid.js';
import { silentLogger } from '../../src/log.js';
import { SysfsClientIdWriter } from '../../src/ns/clientid-writer.js';
import { discoverNetNamespaces, type NetNamespace } from '../../src/ns/discovery.js';
import { readNsInode } from '../../src/ns/proc.js';
import type { Responder, ResponderEnv } from '../../src/responders/responder.js';
import { NamespaceSupervisor } from '../../src/responders/supervisor.js';
import { ClientIdResponder } from '../../src/responders/uevent/clientid.js';
import type { Uevent } from '../../src/responders/uevent/codec.js';
import { UeventListener } from '../../src/responders/uevent/listener.js';
import type { Context } from '../../src/types.js';
import { childPids, comm } from '../helpers/proc.js';

const ok = (cmd: string, ...args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const isRoot = process.getuid?.() === 0;
const hasUnshare = ok('unshare', '--version') && ok('nsenter', '--version');
const hasIp = ok('ip', '-V');
const hasCc = spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
const skip = !isRoot ? 'needs root' : !hasUnshare ? 'needs unshare(1) and nsenter(1) (util-linux)' : false;

const tmp = mkdtempSync(join(tmpdir(), 'nsidmap-namespaces-'));
const children: ChildProcess[] = [];
const named: string[] = [];

after(() => {
  for (const c of children) {
    try {
      // detached: each child leads its own process group (unshare and what it forked)
      if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const name of named) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  rmSync(tmp, { recursive: true, force: true });
});

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

interface Spawned {
  readonly child: ChildProcess;
  /** unshare itself: it made the namespaces and stays in them (--fork) */
  readonly leader: number;
  readonly sleeper: number;
  readonly netns: number;
}

/** `unshare ARGS --fork CMD…` whose last step execs `sleep`; resolves once sleep runs. */
async function inNamespaces(args: readonly string[], cmd: readonly string[]): Promise<Spawned> {
  const child = spawn('unshare', [...args, '--fork', ...cmd], { detached: true, stdio: 'ignore' });
  children.push(child);
  const leader = child.pid;
  assert.ok(leader !== undefined, 'spawn failed');
  const sleeper = await until('sleep inside the namespaces', () => childPids(leader).find((p) => comm(p) === 'sleep'));
  return { child, leader, sleeper, netns: readNsInode(sleeper, 'net') };
}

async function exited(s: Spawned): Promise<void> {
  const done = new Promise<void>((resolve) => s.child.once('exit', () => resolve()));
  process.kill(-s.leader, 'SIGKILL');
  await done;
  await until('the namespace\'s tasks to be reaped', () => (existsSync(`/proc/${s.sleeper}`) ? undefined : true));
}

const byInode = async (inode: number): Promise<NetNamespace | undefined> => (await discoverNetNamespaces()).namespaces.find((n) => n.inode === inode);

describe('discoverNetNamespaces on real namespaces', { skip }, () => {
  it('finds the host\'s namespace, keyed `host`, first', async () => {
    const { namespaces } = await discoverNetNamespaces();
    assert.equal(namespaces[0]?.key, 'host');
    assert.equal(namespaces[0]?.isInit, true);
  });

  it('finds a new network namespace with the lowest pid in it, and loses it when its processes exit', async () => {
    const s = await inNamespaces(['-n'], ['sleep', '30']);
    const ns = await byInode(s.netns);
    assert.ok(ns, `netns ${s.netns} not found`);
    assert.equal(ns.pid, Math.min(s.leader, s.sleeper));
    assert.equal(ns.nsPath, `/proc/${ns.pid}/ns/net`);
    assert.equal(ns.isInit, false);
    // No container here: an inode key, unless this test itself runs in a container.
    if (ns.keySource === 'inode') assert.equal(ns.key, `netns:${s.netns}`);
    assert.equal(ns.nfsd, undefined, 'no nfsd channels in a fresh namespace');
    await exited(s);
    assert.equal(await byInode(s.netns), undefined);
  });

  it('finds a namespace `ip netns add` made, with no process in it, by name; and names the one a process joins', { skip: !hasIp && 'needs ip(8) (iproute2)' }, async () => {
    const name = `nsidmap-disc-${process.pid}`;
    named.push(name);
    assert.ok(ok('ip', 'netns', 'add', name), 'ip netns add');
    // The name is an nsfs bind mount: its inode is the namespace's.
    const ino = statSync(`/run/netns/${name}`).ino;
    const empty = await byInode(ino);
    assert.ok(empty, 'processless named namespace not found');
    assert.deepEqual([empty.key, empty.keySource, empty.pid, empty.nsPath, empty.name], [`ipnetns:${name}`, 'named', undefined, `/run/netns/${name}`, name]);

    const child = spawn('ip', ['netns', 'exec', name, 'sleep', '30'], { detached: true, stdio: 'ignore' });
    children.push(child);
    const withTask = await until('a task in the named namespace', async () => {
      const n = await byInode(ino);
      return n?.pid !== undefined ? n : undefined;
    });
    assert.equal(withTask.key, `ipnetns:${name}`);
    assert.equal(withTask.name, name);
    process.kill(-child.pid!, 'SIGKILL');
    spawnSync('ip', ['netns', 'del', name]);
    await until('the named namespace to go', async () => ((await byInode(ino)) === undefined ? true : undefined));
  });
});

/** Responders that record what they were made for and whether they run. */
class Recorder {
  made: { kind: string; path: string; ctx: Context; running: boolean }[] = [];
  factory(kind: 'pipefs' | 'nfsd') {
    return (path: string, ctx: Context): Responder => {
      const rec = { kind, path, ctx, running: false };
      this.made.push(rec);
      return {
        name: `${kind} ${path}`,
        start: async () => void (rec.running = true),
        stop: async () => void (rec.running = false),
        status: () => ({ name: kind, detail: [] }),
      };
    };
  }
}

const env: ResponderEnv = { resolver: () => assert.fail('no resolver'), engine: () => assert.fail('no engine'), log: silentLogger };

describe('NamespaceSupervisor on real namespaces', { skip }, () => {
  it('serves an rpc_pipefs (a tmpfs stand-in) mounted inside a new mount+net namespace, and stops when it goes', async () => {
    const dir = mkdtempSync(join(tmp, 'pipefs-'));
    const source = `nsidmap-fake-pipefs-${process.pid}`;
    const rec = new Recorder();
    const sup = new NamespaceSupervisor({
      factories: { pipefs: rec.factory('pipefs'), nfsd: rec.factory('nfsd') },
      discovery: { pipefsFilter: (m) => m.fstype === 'tmpfs' && m.source === source },
      intervalMs: 3_600_000,
      watchDirs: [],
    });
    await sup.start(env);
    try {
      // Started first: the namespace is picked up by a later scan, without a restart.
      const s = await inNamespaces(['-n', '-m'], ['sh', '-c', `mount -t tmpfs ${source} '${dir}' && exec sleep 30`]);
      await sup.rescan();
      const ns = sup.namespaces().find((n) => n.inode === s.netns);
      assert.ok(ns, 'namespace not picked up');
      const served = rec.made.filter((m) => m.kind === 'pipefs' && m.ctx.netns?.inode === s.netns);
      assert.equal(served.length, 1, 'one pipefs responder for the namespace');
      const pipefs = served[0]!;
      assert.equal(pipefs.path, `/proc/${ns.pid}/root${dir}`);
      assert.equal(pipefs.running, true);
      assert.equal(pipefs.ctx.iface, 'pipefs');
      assert.equal(pipefs.ctx.pipefs, dir);
      // The path reaches the namespace's own mount, which the host does not see.
      writeFileSync(join(pipefs.path, 'probe'), 'x');
      assert.equal(existsSync(join(dir, 'probe')), false);
      const line = sup.status().detail.find((d) => d['netns'] === s.netns);
      assert.deepEqual(line?.['pipefs'], [pipefs.path]);

      await exited(s);
      await sup.rescan();
      assert.equal(pipefs.running, false, 'responder stopped');
      assert.equal(sup.namespaces().some((n) => n.inode === s.netns), false);
      assert.equal(sup.status().detail.some((d) => d['netns'] === s.netns), false);
    } finally {
      await sup.stop();
    }
  });

  it('leaves the host\'s rpc_pipefs to the host when a netns-only task sees it too', async (t) => {
    const host = (await discoverNetNamespaces()).namespaces.find((n) => n.isInit);
    if (host?.pid === undefined || readNsInode(host.pid, 'mnt') !== readNsInode(process.pid, 'mnt')) {
      t.skip('the host\'s representative task is in another mount namespace than this test');
      return;
    }
    const dir = mkdtempSync(join(tmp, 'hostmount-'));
    const source = `nsidmap-host-pipefs-${process.pid}`;
    // A mount in the host's own mount namespace, as /run/rpc_pipefs is; removed below.
    assert.ok(ok('mount', '-t', 'tmpfs', source, dir), 'mount');
    try {
      const s = await inNamespaces(['-n'], ['sleep', '30']);
      const { namespaces } = await discoverNetNamespaces({ pipefsFilter: (m) => m.source === source });
      const owners = namespaces.filter((n) => n.pipefs.length > 0).map((n) => n.key);
      assert.deepEqual(owners, ['host'], 'one namespace serves the superblock: the host, which comes first');
      assert.deepEqual(namespaces.find((n) => n.inode === s.netns)?.pipefs, []);
    } finally {
      spawnSync('umount', ['-l', dir]);
    }
  });
});

describe('SysfsClientIdWriter in a real network namespace', { skip }, () => {
  it('enters the namespace through the helper and writes the identifier file it is given', async () => {
    const s = await inNamespaces(['-n'], ['sleep', '30']);
    const root = mkdtempSync(join(tmp, 'sysfs-'));
    mkdirSync(join(root, 'fs/nfs/net/nfs_client'), { recursive: true });
    const file = join(root, 'fs/nfs/net/nfs_client/identifier');
    writeFileSync(file, '(null)\n');
    const writer = new SysfsClientIdWriter({ sysfs: root, mountSysfs: false });
    const nsPath = `/proc/${s.sleeper}/ns/net`;
    assert.deepEqual(await writer.apply(nsPath, 'ns-identity-1', 'auto'), { state: 'written' });
    assert.equal(readFileSync(file, 'utf8'), 'ns-identity-1');
    assert.deepEqual(await writer.apply(nsPath, 'ns-identity-1', 'auto'), { state: 'unchanged', previous: 'ns-identity-1' });
    assert.deepEqual(await writer.apply(nsPath, 'ns-identity-2', 'auto'), { state: 'foreign', previous: 'ns-identity-1' });
    assert.deepEqual(await writer.apply(nsPath, 'ns-identity-2', 'force'), { state: 'written', previous: 'ns-identity-1' });
    await exited(s);
    await assert.rejects(writer.apply(nsPath, 'x', 'auto'), /cannot set the NFSv4 client identifier through/);
  });

  it('reports "no NFS client in this kernel" from a fresh sysfs mounted inside the namespace', { skip: existsSync('/sys/fs/nfs') && 'this kernel has an NFS client' }, async () => {
    const s = await inNamespaces(['-n'], ['sleep', '30']);
    const nsPath = `/proc/${s.sleeper}/ns/net`;
    assert.deepEqual(await new SysfsClientIdWriter({ precheck: false }).apply(nsPath, 'x', 'auto'), { state: 'no-nfs' });
    assert.deepEqual(await new SysfsClientIdWriter().apply(nsPath, 'x', 'auto'), { state: 'no-nfs' }, 'and without a helper');
  });

  it("reaches its own namespace too, whose sysfs is already on /sys (the host's identifier)", { skip: existsSync('/sys/fs/nfs') && 'this kernel has an NFS client' }, async () => {
    // A fresh sysfs of the namespace /sys already shows is the same superblock: mounted on the
    // same mount point the kernel refuses it with EBUSY (fs/namespace.c, do_add_mount). Seen in
    // contrib/vmtest: the host's identifier could never be set.
    assert.deepEqual(await new SysfsClientIdWriter({ precheck: false }).apply('/proc/self/ns/net', 'x', 'auto'), { state: 'no-nfs' });
  });
});

/** Events by tag, and a wait for one carrying our SYNTH_UUID. */
class Events {
  seen: { tag: string; e: Uevent }[] = [];
  readonly onEvent = (tag: string, e: Uevent): void => void this.seen.push({ tag, e });
  tagged(uuid: string): { tag: string; e: Uevent }[] {
    return this.seen.filter((x) => x.e.env.get('SYNTH_UUID') === uuid);
  }
}

/** A synthetic uevent (lib/kobject_uevent.c, kobject_synth_uevent): `ACTION UUID KEY=VALUE` written to a uevent file. */
function synth(file: string, action: string, uuid: string): void {
  writeFileSync(file, `${action} ${uuid} NSIDMAP=test`);
}

describe('UeventListener with real NETLINK_KOBJECT_UEVENT sockets', { skip }, () => {
  it('sees and parses a real uevent in the host\'s namespace', async () => {
    const events = new Events();
    const l = new UeventListener({ log: silentLogger, onEvent: events.onEvent });
    await l.start();
    try {
      await l.watch('host', '/proc/self/ns/net');
      const uuid = randomUUID();
      synth('/sys/class/net/lo/uevent', 'add', uuid);
      const [got] = await until('the uevent', () => (events.tagged(uuid).length > 0 ? events.tagged(uuid) : undefined));
      assert.equal(got!.tag, 'host');
      assert.equal(got!.e.action, 'add');
      assert.equal(got!.e.devpath, '/devices/virtual/net/lo');
      assert.equal(got!.e.env.get('SUBSYSTEM'), 'net');
      assert.equal(got!.e.env.get('INTERFACE'), 'lo');
      assert.equal(got!.e.env.get('SYNTH_ARG_NSIDMAP'), 'test');
      assert.match(got!.e.env.get('SEQNUM') ?? '', /^\d+$/);
    } finally {
      await l.stop();
    }
  });

  it('a socket opened in a namespace sees that namespace\'s tagged uevents, not the host\'s, and untagged ones too', async () => {
    const s = await inNamespaces(['-n'], ['sleep', '30']);
    const events = new Events();
    const l = new UeventListener({ log: silentLogger, onEvent: events.onEvent });
    await l.start();
    try {
      await l.watch('host', '/proc/self/ns/net');
      const home = readlinkSync('/proc/thread-self/ns/net');
      await l.watch('child', `/proc/${s.sleeper}/ns/net`);
      // the socket was made in the child's namespace by this very thread, which is back home
      assert.equal(readlinkSync('/proc/thread-self/ns/net'), home);
      assert.notEqual(readlinkSync(`/proc/${s.sleeper}/ns/net`), home);
      assert.deepEqual([...l.watching].sort(), ['child', 'host']);
      const [hostLo, childLo, devNull] = [randomUUID(), randomUUID(), randomUUID()];
      synth('/sys/class/net/lo/uevent', 'change', hostLo);
      // The child's `lo` is reached through a sysfs mounted inside its namespace (see clientid-writer.ts).
      const r = spawnSync('nsenter', [`--net=/proc/${s.sleeper}/ns/net`, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', `mount -t sysfs sysfs /sys && echo 'change ${childLo}' > /sys/class/net/lo/uevent`], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      synth('/sys/devices/virtual/mem/null/uevent', 'change', devNull);
      await until('the untagged uevent in both', () => (events.tagged(devNull).length === 2 ? true : undefined));
      await until('the child\'s lo uevent', () => (events.tagged(childLo).length > 0 ? true : undefined));
      assert.deepEqual(events.tagged(hostLo).map((x) => x.tag), ['host']);
      assert.deepEqual(events.tagged(childLo).map((x) => x.tag), ['child']);
      assert.deepEqual(events.tagged(devNull).map((x) => x.tag).sort(), ['child', 'host']);
      l.unwatch('child');
      assert.deepEqual([...l.watching], ['host']);
    } finally {
      await l.stop();
    }
  });

  it('a flood of uevents does not hold the event loop: it reads in batches and lets the daemon run between them', { skip: !hasCc && 'needs a C compiler (cc) for the flood' }, async (t) => {
    // A shell loop cannot write uevents faster than they are read; this writes ~200k/s.
    const dir = mkdtempSync(join(tmp, 'flood-'));
    const flood = join(dir, 'flood');
    try {
      writeFileSync(`${flood}.c`, [
        '#include <fcntl.h>',
        '#include <stdlib.h>',
        '#include <time.h>',
        '#include <unistd.h>',
        'int main(int c, char **v) {',
        '  int fd = open("/sys/class/net/lo/uevent", O_WRONLY);',
        '  if (fd < 0) return 1;',
        '  time_t end = time(0) + atoi(v[1]);',
        '  while (time(0) < end) for (int i = 0; i < 1000; i++) if (write(fd, "change", 6) < 0) return 1;',
        '  return 0;',
        '}',
      ].join('\n'));
      assert.equal(spawnSync('cc', ['-O2', '-o', flood, `${flood}.c`]).status, 0, 'cc');
      let events = 0;
      const l = new UeventListener({ log: silentLogger, onEvent: () => void events++ });
      await l.start();
      // unshare without --fork execs sh in the new namespaces: the child's pid is in them
      const child = spawn('unshare', ['-n', '-m', '--propagation', 'private', 'sh', '-c', `mount -t sysfs sysfs /sys && sleep 0.5 && exec ${flood} 2`], { stdio: 'ignore' });
      try {
        await until('the child\'s network namespace', () => (child.pid && readlinkSync(`/proc/${child.pid}/ns/net`) !== readlinkSync('/proc/self/ns/net') ? true : undefined));
        await l.watch('flood', `/proc/${child.pid}/ns/net`);
        let last = performance.now();
        let worst = 0;
        const tick = setInterval(() => {
          const now = performance.now();
          worst = Math.max(worst, now - last);
          last = now;
        }, 5);
        const code = await new Promise<number | null>((r) => child.on('exit', r));
        clearInterval(tick);
        t.diagnostic(`${events} uevents read; the event loop's longest wait for a 5 ms timer: ${worst.toFixed(0)} ms`);
        assert.equal(code, 0, 'the flood ran');
        assert.ok(events > 1000, `read ${events} uevents`);
        assert.ok(worst < 500, `the event loop was held for ${worst.toFixed(0)} ms`);
      } finally {
        child.kill('SIGKILL');
        await l.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a handler that unwatches its namespace and watches another: the next events go to the new tag only', async () => {
    // closing A and opening B at once usually hands B A's fd number; the old read loop must stop
    const [u1, u2] = [randomUUID(), randomUUID()];
    const seen: string[] = [];
    const l: UeventListener = new UeventListener({
      log: silentLogger,
      onEvent: (tag, e) => {
        const u = e.env.get('SYNTH_UUID');
        if (u !== u1 && u !== u2) return;
        seen.push(`${tag}:${u === u1 ? 'u1' : 'u2'}`);
        if (u === u1 && tag === 'A') {
          l.unwatch('A');
          void l.watch('B', '/proc/self/ns/net');
          synth('/sys/class/net/lo/uevent', 'change', u2);
        }
      },
    });
    await l.start();
    try {
      await l.watch('A', '/proc/self/ns/net');
      synth('/sys/class/net/lo/uevent', 'change', u1);
      await until('u2 seen', () => (seen.includes('B:u2') ? true : undefined));
      await sleep(100);
      assert.deepEqual(seen, ['A:u1', 'B:u2']);
    } finally {
      await l.stop();
    }
  });

  it('refuses to watch a namespace that is gone', async () => {
    const l = new UeventListener({ log: silentLogger, onEvent: () => undefined });
    await l.start();
    try {
      await assert.rejects(l.watch('gone', '/proc/0/ns/net'), /cannot listen for uevents in gone/);
      assert.deepEqual([...l.watching], []);
    } finally {
      await l.stop();
    }
  });

  it('ClientIdResponder asks the supervisor for a scan when a network device changes in the host\'s namespace', async () => {
    const reasons: string[] = [];
    const store = ClientIdStore.open(':memory:');
    const host = (await discoverNetNamespaces()).namespaces.find((n) => n.isInit);
    assert.ok(host);
    const r = new ClientIdResponder({ store, policy: () => ({ from: 'off' }), writer: { apply: async () => ({ state: 'no-nfs' }) } });
    await r.start(env, { rescanSoon: (why) => void reasons.push(why) });
    try {
      await r.appeared(host);
      synth('/sys/class/net/lo/uevent', 'add', randomUUID());
      await until('a rescan request', () => (reasons.some((x) => x.includes('/devices/virtual/net/lo')) ? true : undefined));
    } finally {
      await r.stop();
      store.close();
    }
  });
});
