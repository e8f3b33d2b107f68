/**
 * NamespaceSupervisor with a scripted discovery and fake responders: what it starts, stops, keeps
 * and reports as namespaces come and go. test/integration/namespaces.test.ts runs it on real ones.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import type { Discovery, NetNamespace } from '../../src/ns/discovery.js';
import type { Responder, ResponderEnv, ResponderStatus } from '../../src/responders/responder.js';
import { NamespaceSupervisor, namespaceContext, type NamespaceWatcher, type ResponderFactories } from '../../src/responders/supervisor.js';
import type { Context } from '../../src/types.js';

class FakeResponder implements Responder {
  readonly name: string;
  started = false;
  stopped = false;
  flushes = 0;
  constructor(readonly kind: 'pipefs' | 'nfsd', readonly path: string, readonly ctx: Context, private readonly failStart?: string, private readonly failFlush?: boolean) {
    this.name = `${kind}:${path}`;
  }
  async start(): Promise<void> {
    if (this.failStart) throw new Error(this.failStart);
    this.started = true;
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  status(): ResponderStatus {
    return { name: this.name, detail: [] };
  }
  async flushKernelCaches(): Promise<void> {
    if (this.failFlush) throw new Error('flush refused');
    this.flushes++;
  }
}

class Fakes implements ResponderFactories {
  made: FakeResponder[] = [];
  failing = new Map<string, string>();
  pipefs(mountRoot: string, ctx: Context): Responder {
    const r = new FakeResponder('pipefs', mountRoot, ctx, this.failing.get(mountRoot));
    this.made.push(r);
    return r;
  }
  nfsd(procNetRpc: string, ctx: Context): Responder {
    const r = new FakeResponder('nfsd', procNetRpc, ctx, this.failing.get(procNetRpc), procNetRpc.includes('flaky'));
    this.made.push(r);
    return r;
  }
  live(): string[] {
    return this.made.filter((r) => r.started && !r.stopped).map((r) => r.name).sort();
  }
}

class RecordingWatcher implements NamespaceWatcher {
  readonly name = 'rec';
  events: string[] = [];
  async appeared(ns: NetNamespace): Promise<void> {
    this.events.push(`+${ns.key}`);
  }
  updated(ns: NetNamespace): void {
    this.events.push(`~${ns.key}`);
  }
  async gone(ns: NetNamespace): Promise<void> {
    this.events.push(`-${ns.key}`);
  }
  describe(ns: NetNamespace): Record<string, unknown> {
    return { watched: ns.key };
  }
}

const HOST: NetNamespace = {
  key: 'host', keySource: 'host', inode: 4026531833, isInit: true, pid: 900, nsPath: '/proc/900/ns/net', root: '/proc/900/root',
  pipefs: [{ mountPoint: '/run/rpc_pipefs', path: '/run/rpc_pipefs', dev: '0:44' }], nfsd: '/proc/net/rpc',
};
const C1_ID = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
const C1: NetNamespace = {
  key: C1_ID, keySource: 'container', inode: 4026532200, isInit: false, pid: 1200, nsPath: '/proc/1200/ns/net', root: '/proc/1200/root',
  cgroup: `/system.slice/docker-${C1_ID}.scope`, container: { id: C1_ID, runtime: 'docker' },
  userns: { inode: 4026532300, isInit: false, uidMap: [{ inside: 0, outside: 100000, count: 65536 }], gidMap: [{ inside: 0, outside: 100000, count: 65536 }] },
  pipefs: [{ mountPoint: '/var/lib/nfs/rpc_pipefs', path: '/proc/1200/root/var/lib/nfs/rpc_pipefs', dev: '0:50' }],
  nfsd: '/proc/1200/net/rpc',
};
const BARE: NetNamespace = { key: 'netns:4026532201', keySource: 'inode', inode: 4026532201, isInit: false, pid: 1300, nsPath: '/proc/1300/ns/net', pipefs: [] };

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ level: 'debug', journal: false, write: (l) => lines.push(l) }), lines };
}

function envWith(log: Logger = silentLogger): ResponderEnv {
  return { resolver: () => assert.fail('no resolver'), engine: () => assert.fail('no engine'), log };
}

describe('NamespaceSupervisor', () => {
  let scan: () => Discovery;
  let fakes: Fakes;
  let watcher: RecordingWatcher;
  let sup: NamespaceSupervisor;
  const found = (...namespaces: NetNamespace[]) => () => ({ namespaces, unreadable: 0 });

  beforeEach(() => {
    fakes = new Fakes();
    watcher = new RecordingWatcher();
    scan = found(HOST);
    sup = new NamespaceSupervisor({ factories: fakes, discover: () => scan(), watchers: [watcher], intervalMs: 3_600_000, watchDirs: [] });
  });

  it('serves the host at start: its rpc_pipefs and its nfsd channels', async () => {
    await sup.start(envWith());
    assert.deepEqual(fakes.live(), ['nfsd:/proc/net/rpc', 'pipefs:/run/rpc_pipefs']);
    assert.deepEqual(watcher.events, ['+host']);
    await sup.stop();
    assert.deepEqual(fakes.live(), []);
  });

  it('picks up a new container and lets it go when it is gone, without a restart', async () => {
    await sup.start(envWith());
    scan = found(HOST, C1);
    await sup.rescan();
    assert.deepEqual(fakes.live(), ['nfsd:/proc/1200/net/rpc', 'nfsd:/proc/net/rpc', 'pipefs:/proc/1200/root/var/lib/nfs/rpc_pipefs', 'pipefs:/run/rpc_pipefs']);
    scan = found(HOST);
    await sup.rescan();
    assert.deepEqual(fakes.live(), ['nfsd:/proc/net/rpc', 'pipefs:/run/rpc_pipefs']);
    assert.deepEqual(watcher.events, ['+host', `+${C1_ID}`, `-${C1_ID}`]);
    await sup.stop();
  });

  it('gives each responder its namespace\'s context: netns, container, user namespace, mount', async () => {
    scan = found(HOST, C1);
    await sup.start(envWith());
    const pipe = fakes.made.find((r) => r.path.startsWith('/proc/1200/root'))!;
    assert.equal(pipe.ctx.iface, 'pipefs');
    assert.deepEqual(pipe.ctx.netns, { inode: C1.inode, isInit: false });
    assert.deepEqual(pipe.ctx.container, C1.container);
    assert.equal(pipe.ctx.cgroup, C1.cgroup);
    assert.equal(pipe.ctx.userns?.inode, 4026532300);
    assert.equal(pipe.ctx.pipefs, '/var/lib/nfs/rpc_pipefs');
    assert.equal(pipe.ctx.pid, undefined, 'no requester: the namespace itself');
    const hostNfsd = fakes.made.find((r) => r.path === '/proc/net/rpc')!;
    assert.equal(hostNfsd.ctx.iface, 'nfsd');
    assert.equal(hostNfsd.ctx.userns?.isInit, true);
    assert.equal(hostNfsd.ctx.netns?.isInit, true);
    await sup.stop();
  });

  it('restarts a responder whose path changed (a new representative task)', async () => {
    scan = found(HOST, C1);
    await sup.start(envWith());
    const moved: NetNamespace = { ...C1, pid: 1250, nfsd: '/proc/1250/net/rpc', pipefs: [{ ...C1.pipefs[0]!, path: '/proc/1250/root/var/lib/nfs/rpc_pipefs' }] };
    scan = found(HOST, moved);
    await sup.rescan();
    assert.ok(fakes.live().includes('nfsd:/proc/1250/net/rpc'));
    assert.ok(!fakes.live().includes('nfsd:/proc/1200/net/rpc'));
    assert.deepEqual(watcher.events, ['+host', `+${C1_ID}`, `~${C1_ID}`]);
    await sup.stop();
  });

  it('keeps the host when a scan fails or cannot see it', async () => {
    await sup.start(envWith());
    scan = () => {
      throw new Error('/proc unreadable');
    };
    await sup.rescan();
    assert.deepEqual(fakes.live(), ['nfsd:/proc/net/rpc', 'pipefs:/run/rpc_pipefs']);
    scan = found(C1);
    await sup.rescan();
    assert.ok(fakes.live().includes('pipefs:/run/rpc_pipefs'));
    assert.deepEqual(sup.namespaces().map((n) => n.key).sort(), [C1_ID, 'host'].sort());
    await sup.stop();
  });

  it('retries a responder that failed to start, logging the failure once', async () => {
    const { log, lines } = capture();
    fakes.failing.set('/proc/1200/net/rpc', 'EACCES');
    scan = found(HOST, C1);
    await sup.start(envWith(log));
    await sup.rescan();
    await sup.rescan();
    assert.equal(lines.filter((l) => l.includes('namespace.serve-failed')).length, 1);
    const line = sup.status().detail.find((d) => d['key'] === C1_ID)!;
    assert.deepEqual(line['errors'], ['nfsd /proc/1200/net/rpc: EACCES']);
    assert.equal(line['nfsd'], undefined);
    fakes.failing.clear();
    await sup.rescan();
    assert.ok(fakes.live().includes('nfsd:/proc/1200/net/rpc'));
    assert.equal(sup.status().detail.find((d) => d['key'] === C1_ID)!['errors'], undefined);
    await sup.stop();
  });

  it('lists per namespace: key, netns inode, container, pipefs and nfsd served, and what watchers add', async () => {
    scan = found(HOST, C1, BARE);
    await sup.start(envWith());
    assert.deepEqual(sup.status(), {
      name: 'namespaces',
      detail: [
        { key: 'host', netns: HOST.inode, init: true, pid: 900, container: undefined, pipefs: ['/run/rpc_pipefs'], nfsd: '/proc/net/rpc', watched: 'host' },
        { key: C1_ID, netns: C1.inode, init: false, pid: 1200, container: `docker:${C1_ID}`, pipefs: ['/proc/1200/root/var/lib/nfs/rpc_pipefs'], nfsd: '/proc/1200/net/rpc', watched: C1_ID },
        { key: BARE.key, netns: BARE.inode, init: false, pid: 1300, container: undefined, pipefs: [], nfsd: undefined, watched: BARE.key },
      ],
    });
    await sup.stop();
  });

  it('fans flushKernelCaches out to every responder; one failing does not stop the others', async () => {
    const { log, lines } = capture();
    const flaky: NetNamespace = { ...BARE, nfsd: '/proc/1300/flaky/net/rpc' };
    scan = found(HOST, C1, flaky);
    await sup.start(envWith(log));
    await sup.flushKernelCaches();
    const counts = fakes.made.filter((r) => r.started).map((r) => [r.path, r.flushes]);
    assert.deepEqual(counts.filter(([p]) => !String(p).includes('flaky')).map(([, n]) => n), [1, 1, 1, 1]);
    assert.equal(lines.filter((l) => l.includes('namespaces.flush-failed')).length, 1);
    await sup.stop();
  });

  it('runs one scan at a time; a scan asked for during one follows it', async () => {
    let calls = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const slowWatcher: NamespaceWatcher = { name: 'slow', appeared: () => gate, gone: async () => undefined };
    const s = new NamespaceSupervisor({ factories: fakes, discover: () => (calls++, { namespaces: [HOST], unreadable: 0 }), watchers: [slowWatcher], intervalMs: 3_600_000, watchDirs: [] });
    const started = s.start(envWith());
    await new Promise((r) => setImmediate(r));
    const a = s.rescan();
    const b = s.rescan();
    assert.equal(a, b);
    release();
    await started;
    await a;
    assert.equal(calls, 2, 'the first scan, then one more for both requests');
    await s.stop();
  });

  it('namespaceContext leaves the host in the initial user namespace', () => {
    const ctx = namespaceContext('nfsd', { ...HOST, userns: C1.userns! }, '/proc/net/rpc');
    assert.equal(ctx.userns?.isInit, true);
  });
});
