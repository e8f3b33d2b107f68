/**
 * NamespaceSupervisor: one pipefs responder per rpc_pipefs and one nfsd responder per nfsd channel
 * pair, in the host's network namespace and in every container's (DESIGN.md, "Which context may
 * choose a scope": each network namespace has its own nfsd caches and its own rpc_pipefs).
 *
 * It rescans /proc every few seconds — and at once when a named namespace appears in /run/netns
 * or /run/docker/netns, or when a watcher asks — and reconciles: responders for what appeared are
 * created through the injected factories and started; those of what went away are stopped. A
 * responder that fails to start is tried again at the next scan and logged once per distinct
 * failure. Watchers (the NFSv4 client identifier) follow the same namespaces.
 *
 *   start(): watchers → first scan (responders) → timer
 *   stop():  timer, directory watches → responders (reverse start order) → watchers
 *
 * The host's own namespace is never let go: a scan that fails, or that cannot see the host's
 * tasks, keeps what is served there.
 */
import { watch, type FSWatcher } from 'node:fs';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { buildContext } from '../ns/context.js';
import { discoverNetNamespaces, existingDirs, type Discovery, type DiscoveryOptions, type NetNamespace } from '../ns/discovery.js';
import type { Context } from '../types.js';
import type { Responder, ResponderEnv, ResponderStatus } from './responder.js';

/** How responders are made; the daemon passes the real classes, tests pass fakes. */
export interface ResponderFactories {
  /** mountRoot: an rpc_pipefs mount (the directory holding `nfs/`), reachable from nsidmapd */
  pipefs(mountRoot: string, ctx: Context): Responder;
  /** procNetRpc: the namespace's `/proc/…/net/rpc` directory (holding nfs4.idtoname/ and nfs4.nametoid/) */
  nfsd(procNetRpc: string, ctx: Context): Responder;
}

export interface WatcherHooks {
  /** ask for a scan now (e.g. a uevent says a network device moved between namespaces) */
  rescanSoon(reason: string): void;
}

/** Something else that follows the network namespaces: the NFSv4 client identifiers. */
export interface NamespaceWatcher {
  readonly name: string;
  start?(env: ResponderEnv, hooks: WatcherHooks): Promise<void>;
  stop?(): Promise<void>;
  /** a namespace seen for the first time (every namespace, at the first scan) */
  appeared(ns: NetNamespace): Promise<void>;
  /** a namespace seen before whose description changed (representative task, key, mounts) */
  updated?(ns: NetNamespace): void;
  /** a namespace no longer there (not called when the supervisor stops) */
  gone(ns: NetNamespace): Promise<void>;
  /** after each scan, every namespace present */
  scanned?(present: readonly NetNamespace[]): void;
  /** fields added to the namespace's line of status() */
  describe?(ns: NetNamespace): Record<string, unknown>;
}

export interface SupervisorOptions {
  readonly factories: ResponderFactories;
  /** rescan period in ms (default 5000) */
  readonly intervalMs?: number;
  readonly discovery?: DiscoveryOptions;
  /** replaces discoverNetNamespaces (tests) */
  readonly discover?: () => Discovery | Promise<Discovery>;
  readonly watchers?: readonly NamespaceWatcher[];
  /** directories whose changes trigger a scan at once (default: /run/netns, /run/docker/netns) */
  readonly watchDirs?: readonly string[];
}

export const DEFAULT_SCAN_INTERVAL_MS = 5000;
export const DEFAULT_WATCH_DIRS: readonly string[] = ['/run/netns', '/run/docker/netns'];
/** a burst of directory events or uevents makes one scan */
const SOON_MS = 50;

type Kind = 'pipefs' | 'nfsd';

interface Served {
  readonly id: string;
  readonly kind: Kind;
  readonly inode: number;
  readonly path: string;
  readonly responder: Responder;
}

interface Wanted {
  readonly id: string;
  readonly kind: Kind;
  readonly ns: NetNamespace;
  readonly path: string;
  /** where the namespace's own tasks see it: the pipefs mount point, the nfsd directory */
  readonly seenAs: string;
}

/**
 * The context a namespace's responder answers in: the namespace itself, its container, and the
 * user namespace of its representative task (whose ids the answers become; the host's for the
 * host). Requests add what they carry (the nfsd auth domain).
 */
export function namespaceContext(iface: Kind, ns: NetNamespace, seenAs: string): Context {
  return buildContext(iface, undefined, {
    netns: { inode: ns.inode, isInit: ns.isInit },
    ...(!ns.isInit && ns.userns && { userns: ns.userns }),
    ...(ns.cgroup !== undefined && { cgroup: ns.cgroup }),
    ...(ns.container && { container: ns.container }),
    ...(iface === 'pipefs' && { pipefs: seenAs }),
  });
}

function wantedOf(namespaces: Iterable<NetNamespace>): Map<string, Wanted> {
  const out = new Map<string, Wanted>();
  for (const ns of namespaces) {
    // The key is part of the id: a namespace whose container becomes known is served anew, in its context.
    for (const m of ns.pipefs) {
      const id = `pipefs ${ns.inode} ${ns.key} ${m.path}`;
      out.set(id, { id, kind: 'pipefs', ns, path: m.path, seenAs: m.mountPoint });
    }
    if (ns.nfsd !== undefined) {
      const id = `nfsd ${ns.inode} ${ns.key} ${ns.nfsd}`;
      out.set(id, { id, kind: 'nfsd', ns, path: ns.nfsd, seenAs: ns.nfsd });
    }
  }
  return out;
}

function sameDescription(a: NetNamespace, b: NetNamespace): boolean {
  return a.key === b.key && a.pid === b.pid && a.nsPath === b.nsPath &&
    JSON.stringify(a.pipefs) === JSON.stringify(b.pipefs) && a.nfsd === b.nfsd;
}

export class NamespaceSupervisor implements Responder {
  readonly name = 'namespaces';
  readonly #opts: SupervisorOptions;
  readonly #watchers: readonly NamespaceWatcher[];
  #env: ResponderEnv | undefined;
  #log: Logger | undefined;
  #namespaces = new Map<number, NetNamespace>();
  readonly #served = new Map<string, Served>();
  /** id → the last start failure logged, so a failing responder logs once, not every scan */
  readonly #failures = new Map<string, string>();
  readonly #dirWatches = new Map<string, FSWatcher>();
  #timer: NodeJS.Timeout | undefined;
  #soon: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  #again = false;
  #running = false;
  #scans = 0;
  #unreadable = 0;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#watchers = opts.watchers ?? [];
  }

  async start(env: ResponderEnv): Promise<void> {
    this.#env = env;
    this.#log = env.log.child({ responder: this.name });
    this.#running = true;
    const hooks: WatcherHooks = { rescanSoon: (reason) => this.rescanSoon(reason) };
    for (const w of this.#watchers) await w.start?.(env, hooks);
    await this.rescan();
    this.#timer = setInterval(() => void this.rescan(), this.#opts.intervalMs ?? DEFAULT_SCAN_INTERVAL_MS);
    // The daemon's sockets keep the process alive; the timer alone must not.
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#running = false;
    clearInterval(this.#timer);
    clearTimeout(this.#soon);
    for (const w of this.#dirWatches.values()) w.close();
    this.#dirWatches.clear();
    await this.#scanning;
    for (const s of [...this.#served.values()].reverse()) await this.#stopOne(s, 'stopping');
    for (const w of [...this.#watchers].reverse()) await w.stop?.().catch(() => undefined);
    this.#namespaces.clear();
  }

  /** Scan now; concurrent calls share a scan, and one asked for during a scan runs after it. */
  rescan(): Promise<void> {
    if (this.#scanning) {
      this.#again = true;
      return this.#scanning;
    }
    this.#scanning = (async () => {
      do {
        this.#again = false;
        await this.#scanOnce();
      } while (this.#again && this.#running);
    })().finally(() => {
      this.#scanning = undefined;
    });
    return this.#scanning;
  }

  /** A scan shortly (bursts of triggers make one). */
  rescanSoon(reason: string): void {
    if (!this.#running || this.#soon) return;
    this.#log?.debug('namespaces.rescan', { reason });
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      void this.rescan();
    }, SOON_MS);
    this.#soon.unref();
  }

  /** The namespaces as last scanned, host first. */
  namespaces(): NetNamespace[] {
    return [...this.#namespaces.values()];
  }

  status(): ResponderStatus {
    const detail = this.namespaces().map((ns) => {
      const served = [...this.#served.values()].filter((s) => s.inode === ns.inode);
      const errors = [...this.#failures].filter(([id]) => id.split(' ')[1] === String(ns.inode)).map(([, why]) => why);
      return {
        key: ns.key,
        netns: ns.inode,
        init: ns.isInit,
        pid: ns.pid,
        ...(ns.name !== undefined && { name: ns.name }),
        container: ns.container ? `${ns.container.runtime}:${ns.container.id}` : undefined,
        pipefs: served.filter((s) => s.kind === 'pipefs').map((s) => s.path),
        nfsd: served.find((s) => s.kind === 'nfsd')?.path,
        ...(errors.length > 0 && { errors }),
        ...Object.assign({}, ...this.#watchers.map((w) => w.describe?.(ns) ?? {})),
      };
    });
    return { name: this.name, detail };
  }

  /** After a reload or a cache flush: every namespace's kernel caches (each nfsd's flush files). */
  async flushKernelCaches(): Promise<void> {
    const served = [...this.#served.values()];
    const results = await Promise.allSettled(served.map((s) => s.responder.flushKernelCaches?.()));
    results.forEach((r, i) => {
      if (r.status === 'rejected') this.#log?.warn('namespaces.flush-failed', { responder: served[i]!.id, error: describeError(r.reason).message });
    });
  }

  async #scanOnce(): Promise<void> {
    if (!this.#running) return;
    let found: Discovery;
    try {
      found = await (this.#opts.discover ?? (() => discoverNetNamespaces(this.#opts.discovery)))();
    } catch (e) {
      // Keep serving what we serve: a namespace is let go only when a scan shows it gone.
      this.#log?.warn('namespaces.scan-failed', { error: describeError(e).message });
      return;
    }
    this.#scans++;
    if (found.unreadable !== this.#unreadable && found.unreadable > 0) this.#log?.debug('namespaces.unreadable', { processes: found.unreadable });
    this.#unreadable = found.unreadable;
    const before = this.#namespaces;
    const next = new Map(found.namespaces.map((ns) => [ns.inode, ns]));
    // The host's own stays even if this scan could not see its tasks.
    for (const ns of before.values()) if (ns.isInit && !next.has(ns.inode)) next.set(ns.inode, ns);
    this.#namespaces = next;
    // Side by side: a new namespace needs its client identifier before its first NFS mount, and
    // its responders before that mount's first upcall; neither should wait for the other.
    await Promise.all([this.#reconcile(wantedOf(next.values())), this.#tellWatchers(before, next)]);
    for (const w of this.#watchers) w.scanned?.([...next.values()]);
    this.#watchDirs();
  }

  async #reconcile(wanted: Map<string, Wanted>): Promise<void> {
    for (const s of [...this.#served.values()].reverse()) {
      if (!wanted.has(s.id)) await this.#stopOne(s, 'gone');
    }
    for (const id of this.#failures.keys()) if (!wanted.has(id)) this.#failures.delete(id);
    for (const w of wanted.values()) {
      if (!this.#served.has(w.id)) await this.#startOne(w);
    }
  }

  async #tellWatchers(before: Map<number, NetNamespace>, next: Map<number, NetNamespace>): Promise<void> {
    const calls: Promise<void>[] = [];
    for (const [inode, ns] of before) {
      if (next.has(inode)) continue;
      this.#log?.info('namespace.gone', { key: ns.key, netns: inode });
      for (const w of this.#watchers) calls.push(w.gone(ns));
    }
    for (const [inode, ns] of next) {
      const old = before.get(inode);
      if (old === undefined) {
        this.#log?.info('namespace.found', { key: ns.key, netns: inode, pid: ns.pid, container: ns.container?.id, pipefs: ns.pipefs.length, nfsd: ns.nfsd !== undefined });
        for (const w of this.#watchers) calls.push(w.appeared(ns));
      } else if (!sameDescription(old, ns)) {
        for (const w of this.#watchers) w.updated?.(ns);
      }
    }
    const results = await Promise.allSettled(calls);
    for (const r of results) {
      if (r.status === 'rejected') this.#log?.warn('namespaces.watcher-failed', { error: describeError(r.reason).message });
    }
  }

  async #startOne(w: Wanted): Promise<void> {
    const env = this.#env;
    if (!env) return;
    let responder: Responder | undefined;
    try {
      const ctx = namespaceContext(w.kind, w.ns, w.seenAs);
      responder = w.kind === 'pipefs' ? this.#opts.factories.pipefs(w.path, ctx) : this.#opts.factories.nfsd(w.path, ctx);
      await responder.start({ ...env, log: env.log.child({ ns: w.ns.key }) });
    } catch (e) {
      const why = `${w.kind} ${w.path}: ${describeError(e).message}`;
      if (this.#failures.get(w.id) !== why) this.#log?.warn('namespace.serve-failed', { key: w.ns.key, netns: w.ns.inode, error: why });
      this.#failures.set(w.id, why);
      await responder?.stop().catch(() => undefined);
      return;
    }
    this.#failures.delete(w.id);
    this.#served.set(w.id, { id: w.id, kind: w.kind, inode: w.ns.inode, path: w.path, responder });
    this.#log?.info('namespace.serving', { key: w.ns.key, netns: w.ns.inode, [w.kind]: w.path });
  }

  async #stopOne(s: Served, why: 'gone' | 'stopping'): Promise<void> {
    this.#served.delete(s.id);
    try {
      await s.responder.stop();
    } catch (e) {
      this.#log?.warn('namespace.stop-failed', { responder: s.id, error: describeError(e).message });
    }
    if (why === 'gone') this.#log?.info('namespace.released', { netns: s.inode, [s.kind]: s.path });
  }

  /** Watch the named-namespace directories that exist now (docker makes its own on first use). */
  #watchDirs(): void {
    if (!this.#running) return;
    for (const dir of existingDirs(this.#opts.watchDirs ?? DEFAULT_WATCH_DIRS)) {
      if (this.#dirWatches.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, () => this.rescanSoon(`change in ${dir}`));
        w.on('error', () => {
          w.close();
          this.#dirWatches.delete(dir);
        });
        this.#dirWatches.set(dir, w);
      } catch {
        // gone meanwhile, or no inotify: the timer still finds everything
      }
    }
  }

  /** Scans done (for tests and status). */
  get scans(): number {
    return this.#scans;
  }
}
