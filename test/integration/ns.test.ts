/**
 * src/ns against real namespaces and cgroups: unshare(1) makes user and network namespaces, and
 * a scratch cgroup v2 directory stands in for a docker container. Needs root (this machine's
 * test runner is root); each part skips with a message when its kernel feature is missing.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { buildContext } from '../../src/ns/context.js';
import { containerFromCgroup } from '../../src/ns/cgroup.js';
import { fromHost, toHost } from '../../src/ns/idmap.js';
import { USER_INIT_INO, readCgroup, readNsInode } from '../../src/ns/proc.js';
import { childPids, comm } from '../helpers/proc.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const isRoot = process.getuid?.() === 0;
const children: ChildProcess[] = [];

function killAll(): void {
  for (const c of children) {
    // detached: the child leads its own process group, which holds unshare and its sleep.
    try {
      if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The pid of `sleep` once unshare has set everything up and exec'd it (itself, or its --fork child). */
async function sleeperOf(child: ChildProcess): Promise<number> {
  const pid = child.pid;
  assert.ok(pid !== undefined, 'spawn failed');
  for (let i = 0; i < 250; i++) {
    const found = [pid, ...childPids(pid)].find((p) => comm(p) === 'sleep');
    if (found !== undefined) return found;
    await sleep(20);
  }
  throw new Error(`unshare (pid ${pid}) did not reach sleep`);
}

/** Start `unshare ARGS sleep 30` (as `uid`) and return the pid of the sleep inside the namespaces. */
async function unshareSleeper(args: readonly string[], uid?: number): Promise<number> {
  const ids = uid === undefined ? {} : { uid, gid: uid };
  const child = spawn('unshare', [...args, 'sleep', '30'], { detached: true, stdio: 'ignore', ...ids });
  children.push(child);
  return sleeperOf(child);
}

/** A pid that existed and has exited (reaped). */
async function exitedPid(): Promise<number> {
  const child = spawn('true', [], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  assert.ok(child.pid !== undefined);
  return child.pid;
}

describe('buildContext on real namespaces', { skip: !isRoot && 'needs root to read other processes\' namespaces' }, () => {
  let ours: { user: number; net: number };
  before(() => {
    ours = { user: readNsInode(process.pid, 'user'), net: readNsInode(process.pid, 'net') };
  });
  after(killAll);

  it('unshare -U -r: a new user namespace mapping root to root, the host network', async () => {
    const pid = await unshareSleeper(['-U', '-r', '--fork']);
    const ctx = buildContext('admin', pid);
    assert.equal(ctx.pid, pid);
    assert.equal(ctx.pidGone, undefined);
    assert.ok(ctx.userns && ctx.netns);
    assert.notEqual(ctx.userns.inode, ours.user);
    assert.deepEqual(ctx.userns.uidMap, [{ inside: 0, outside: 0, count: 1 }]);
    assert.deepEqual(ctx.userns.gidMap, [{ inside: 0, outside: 0, count: 1 }]);
    assert.equal(ctx.userns.isInit, false);
    assert.equal(ctx.userns.owner, 0, 'created by root (NS_GET_OWNER_UID)');
    assert.equal(ctx.netns.isInit, true);
    assert.equal(ctx.netns.inode, ours.net);
  });

  it('unshare -U --map-user=1000: namespace uid 1000 is host root', async () => {
    const pid = await unshareSleeper(['-U', '--map-user=1000', '--map-group=1000']);
    const ctx = buildContext('keyring-nfs', pid, { fs: 'nfs' });
    assert.ok(ctx.userns && ctx.netns);
    assert.equal(ctx.fs, 'nfs');
    assert.deepEqual(ctx.userns.uidMap, [{ inside: 1000, outside: 0, count: 1 }]);
    assert.deepEqual(ctx.userns.gidMap, [{ inside: 1000, outside: 0, count: 1 }]);
    assert.equal(toHost(ctx.userns.uidMap, 1000), 0);
    assert.equal(fromHost(ctx.userns.uidMap, 0), 1000);
    assert.equal(toHost(ctx.userns.uidMap, 0), undefined);
    assert.equal(ctx.userns.isInit, false);
    assert.equal(ctx.netns.isInit, true);
  });

  it('a user namespace made by nobody: owner 65534, its root is host 65534', async () => {
    const pid = await unshareSleeper(['-U', '-r'], 65534);
    const ctx = buildContext('admin', pid);
    assert.ok(ctx.userns);
    assert.equal(ctx.userns.owner, 65534);
    assert.deepEqual(ctx.userns.uidMap, [{ inside: 0, outside: 65534, count: 1 }]);
    assert.equal(toHost(ctx.userns.uidMap, 0), 65534);
    assert.equal(ctx.userns.isInit, false);
  });

  it('unshare -n: the host user namespace, a new network namespace', async () => {
    const pid = await unshareSleeper(['-n']);
    const ctx = buildContext('nfsd', pid);
    assert.ok(ctx.userns && ctx.netns);
    assert.equal(ctx.userns.isInit, true);
    assert.equal(ctx.userns.inode, USER_INIT_INO);
    assert.equal(ctx.netns.isInit, false);
    assert.notEqual(ctx.netns.inode, ours.net);
  });

  it('our own pid is in the initial namespaces', () => {
    const ctx = buildContext('admin', process.pid);
    assert.equal(ctx.userns?.isInit, true);
    assert.equal(ctx.netns?.isInit, true);
    assert.equal(typeof ctx.cgroup, 'string');
  });

  it('no pid: the host context, with the caller\'s facts kept', () => {
    const ctx = buildContext('pipefs', undefined, { pipefs: '/var/lib/nfs/rpc_pipefs' });
    assert.equal(ctx.pid, undefined);
    assert.equal(ctx.iface, 'pipefs');
    assert.equal(ctx.pipefs, '/var/lib/nfs/rpc_pipefs');
    assert.equal(ctx.userns?.isInit, true);
    assert.equal(ctx.userns?.inode, USER_INIT_INO);
    assert.equal(ctx.netns?.isInit, true);
  });

  it('a pid that has exited gives pidGone instead of throwing', async () => {
    const pid = await exitedPid();
    assert.deepEqual(buildContext('keyring-cifs', pid, { fs: 'cifs' }), {
      fs: 'cifs',
      iface: 'keyring-cifs',
      pid,
      pidGone: true,
    });
  });

  it('a pid that cannot exist (pid_max) gives pidGone', () => {
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    assert.equal(buildContext('keyring-nfs', pidMax).pidGone, true);
  });

  it('a zombie (exited, not reaped) gives pidGone', async () => {
    // sh backgrounds a short sleep, then execs a long one that never reaps it.
    const child = spawn('sh', ['-c', 'sleep 0.01 & exec sleep 30'], { detached: true, stdio: 'ignore' });
    children.push(child);
    const parent = await sleeperOf(child);
    let zombie: number | undefined;
    for (let i = 0; i < 250 && zombie === undefined; i++) {
      zombie = childPids(parent).find((p) => readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z '));
      if (zombie === undefined) await sleep(20);
    }
    assert.ok(zombie !== undefined, 'no zombie appeared');
    assert.equal(buildContext('keyring-nfs', zombie).pidGone, true);
  });

  it('without permission it throws NSIDMAP_ENS naming the pid, not pidGone', () => {
    const script = [
      "import { buildContext } from './src/ns/context.ts';",
      "try { buildContext('admin', 1); console.log('no error'); }",
      'catch (e) { console.log(e.code + " " + e.message); }',
    ].join('\n');
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO,
      uid: 65534,
      gid: 65534,
      encoding: 'utf8',
      env: { ...process.env, HOME: '/tmp' },
    });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /^NSIDMAP_ENS pid 1: cannot read \/proc\/1\/ns\/user: permission denied/);
  });

  it('one buildContext takes well under a millisecond', async (t) => {
    const pid = await unshareSleeper(['-U', '-r']);
    buildContext('admin', pid); // warm: koffi loads on first use
    const n = 2000;
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) buildContext('admin', pid);
    const perCall = Number(process.hrtime.bigint() - start) / n / 1000;
    t.diagnostic(`buildContext: ${perCall.toFixed(1)} µs per call (mean of ${n})`);
    assert.ok(perCall < 1000, `${perCall} µs`);
  });
});

/** The cgroup v2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one. */
function cgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup2 ')) return left?.split(' ')[4];
  }
  return undefined;
}

function cgroupWritable(mount: string | undefined): string | true {
  if (!isRoot) return 'needs root to create a cgroup';
  if (mount === undefined) return 'no cgroup v2 hierarchy is mounted';
  const probe = `${mount}/nsidmap-probe-${process.pid}`;
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return true;
  } catch (e) {
    return `cgroup v2 at ${mount} is not writable (${(e as Error).message})`;
  }
}

describe('container recognition from a real cgroup', () => {
  const mount = cgroup2Mount();
  const writable = cgroupWritable(mount);
  const id = 'c0ffee'.padEnd(64, '0');
  const outer = `${mount}/nsidmap-test-${process.pid}`;
  const inner = `${outer}/docker-${id}.scope`;
  let sleeper: ChildProcess | undefined;

  after(async () => {
    if (sleeper?.pid !== undefined) {
      // Move the sleeper back to the root before removing its cgroup, then stop it.
      try {
        writeFileSync(`${mount}/cgroup.procs`, String(sleeper.pid));
      } catch {
        // it may have exited already
      }
      try {
        process.kill(sleeper.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of [inner, outer]) {
      for (let i = 0; i < 50 && existsSync(dir); i++) {
        try {
          rmdirSync(dir);
        } catch {
          await sleep(20); // EBUSY until the killed task has left
        }
      }
    }
  });

  it('a task in …/docker-<64hex>.scope is docker container <64hex>', { skip: writable === true ? false : writable }, () => {
    mkdirSync(inner, { recursive: true });
    sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    assert.ok(sleeper.pid !== undefined);
    writeFileSync(`${inner}/cgroup.procs`, String(sleeper.pid));
    const path = readCgroup(sleeper.pid);
    assert.equal(path, `/nsidmap-test-${process.pid}/docker-${id}.scope`);
    assert.deepEqual(containerFromCgroup(path!), { id, runtime: 'docker' });
    const ctx = buildContext('admin', sleeper.pid);
    assert.equal(ctx.cgroup, path);
    assert.deepEqual(ctx.container, { id, runtime: 'docker' });
  });
});
