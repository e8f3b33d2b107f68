/**
 * ClientIdResponder: every network namespace's NFSv4 client identifier (PROTOCOLS.md §6), set
 * - when the supervisor finds the namespace (every namespace at start, then each new one within
 *   a scan — at once for those that appear in /run/netns or /run/docker/netns);
 * - when the namespace's `nfs_client` KOBJ_ADD uevent arrives (the nfs module loaded while the
 *   namespace exists: the usual first-mount case, racing its EXCHANGE_ID);
 * - when an admin sets or imports one (`idmapctl clientid set|import`, forced).
 *
 * The value comes from the store when the key has one (what keeps a restarted or migrated
 * container the same client), else from the policy's `clientid` rule (src/ns/clientid.ts), and is
 * stored before it is written. The automatic paths never replace an identifier someone else set
 * in a namespace; they report it.
 *
 * Keys that are inode numbers (`netns:N`) name a namespace for its lifetime only: their record is
 * deleted when the namespace goes, so a later namespace given the same number starts afresh.
 */
import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import type { ClientIdRecord, ClientIdStore } from '../../cache/clientid.js';
import { describeError, NsidmapError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { decideIdentifier, identifierFromMachineId, ruleFor, type ClientIdPolicy, type ClientIdRule, type Derivation } from '../../ns/clientid.js';
import { NO_NFS_MESSAGE, SysfsClientIdWriter, type ApplyMode, type ApplyResult, type ClientIdWriter } from '../../ns/clientid-writer.js';
import type { NetNamespace } from '../../ns/discovery.js';
import type { ResponderEnv } from '../responder.js';
import type { NamespaceWatcher, WatcherHooks } from '../supervisor.js';
import { isNetDeviceChange, isNfsClientAdd, type Uevent } from './codec.js';
import { UeventListener } from './listener.js';

/** What the uevent side needs of a listener (UeventListener; a fake in tests). */
export interface UeventSource {
  start(): Promise<void>;
  stop(): Promise<void>;
  watch(tag: string, nsPath: string): Promise<void>;
  unwatch(tag: string): void;
}

export interface ClientIdResponderOptions {
  readonly store: ClientIdStore;
  /** the policy's `clientid` block in force (it changes on reload: called per use) */
  readonly policy: () => ClientIdPolicy | undefined;
  /** default: SysfsClientIdWriter through a helper in each namespace */
  readonly writer?: ClientIdWriter;
  /** per-namespace uevent listeners: default a UeventListener; false for none */
  readonly uevents?: ((onEvent: (tag: string, e: Uevent) => void, log: Logger, onOverflow: (tag: string) => void) => UeventSource) | false;
  /** reads a host file (the nfs module parameter); tests substitute one */
  readonly readFile?: (path: string) => Buffer;
  /** reads a file as a namespace's root sees it (`/` for ours); default readInRoot; tests substitute one */
  readonly readInRoot?: (root: string, path: string) => Buffer | undefined;
}

/** Where a namespace stands, for status and `idmapctl clientid list`. */
export type ClientIdState = ApplyResult['state'] | 'off' | 'conflict' | 'error';

export interface ClientIdStatus {
  readonly key: string;
  readonly netns: number;
  readonly identifier?: string;
  readonly state: ClientIdState;
  readonly detail?: string;
  readonly at: number;
}

/** nfs.nfs4_unique_id (fs/nfs/super.c): the host-wide uniquifier a host may already rely on. */
const UNIQUE_ID_PARAM = '/sys/module/nfs/parameters/nfs4_unique_id';

/** Reads `path` inside `root` (/proc/<pid>/root), following symlinks as that root sees them. */
export function readInRoot(root: string, path: string, read: (p: string) => Buffer): Buffer | undefined {
  let inside = path;
  for (let hops = 0; hops < 8; hops++) {
    const full = `${root}${inside}`;
    let target: string;
    try {
      if (!lstatSync(full).isSymbolicLink()) return read(full);
      target = readlinkSync(full);
    } catch {
      return undefined;
    }
    // An absolute link means the container's /, not ours.
    inside = target.startsWith('/') ? target : `${inside.slice(0, inside.lastIndexOf('/'))}/${target}`;
  }
  return undefined;
}

export class ClientIdResponder implements NamespaceWatcher, ClientIdAdmin {
  readonly name = 'clientid';
  readonly #opts: ClientIdResponderOptions;
  readonly #writer: ClientIdWriter;
  readonly #read: (path: string) => Buffer;
  readonly #readInRoot: (root: string, path: string) => Buffer | undefined;
  #log: Logger | undefined;
  #hooks: WatcherHooks | undefined;
  #uevents: UeventSource | undefined;
  /** by inode: the namespaces the supervisor reported */
  readonly #namespaces = new Map<number, NetNamespace>();
  readonly #status = new Map<number, ClientIdStatus>();
  /** per inode: the apply in flight, so a uevent and a scan never write at once */
  readonly #queue = new Map<number, Promise<unknown>>();
  #hostMachineId: string | undefined;
  #noNfsLogged = false;
  #purged = false;

  constructor(opts: ClientIdResponderOptions) {
    this.#opts = opts;
    this.#writer = opts.writer ?? new SysfsClientIdWriter();
    this.#read = opts.readFile ?? ((p) => readFileSync(p));
    this.#readInRoot = opts.readInRoot ?? ((root, path) => readInRoot(root === '/' ? '' : root, path, (p) => readFileSync(p)));
  }

  async start(env: ResponderEnv, hooks: WatcherHooks): Promise<void> {
    this.#log = env.log.child({ responder: this.name });
    this.#hooks = hooks;
    this.#hostMachineId = this.#machineIdOf('/');
    if (this.#opts.uevents === false) return;
    const make = this.#opts.uevents ?? ((onEvent, log, onOverflow) => new UeventListener({ log, onEvent, onOverflow }));
    // events were lost (the socket overflowed): a scan finds what they would have said
    const source = make((tag, e) => this.#onUevent(tag, e), this.#log, (tag) => this.#hooks?.rescanSoon(`uevents lost in netns ${tag} (socket overflow)`));
    try {
      await source.start();
      this.#uevents = source;
    } catch (e) {
      // Without uevents the scan still sets every identifier, only later.
      this.#log.warn('uevent.unavailable', { error: describeError(e).message });
    }
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.#queue.values()]);
    await this.#uevents?.stop();
    this.#uevents = undefined;
    this.#namespaces.clear();
  }

  async appeared(ns: NetNamespace): Promise<void> {
    this.#namespaces.set(ns.inode, ns);
    const watching = this.#uevents?.watch(String(ns.inode), ns.nsPath).catch((e: unknown) => {
      this.#log?.debug('uevent.watch-failed', { key: ns.key, netns: ns.inode, error: describeError(e).message });
    });
    await Promise.all([watching, this.apply(ns.inode, 'appeared')]);
  }

  /**
   * After the first scan: drop the records of inode keys whose namespace is not here — they died
   * while nsidmapd was not running (or before a reboot), and their number may come back.
   */
  scanned(present: readonly NetNamespace[]): void {
    if (this.#purged) return;
    this.#purged = true;
    const here = new Set(present.map((n) => n.key));
    try {
      for (const r of this.#opts.store.list()) {
        if (r.key.startsWith('netns:') && !here.has(r.key)) this.#opts.store.delete(r.key);
      }
    } catch (e) {
      this.#log?.warn('clientid.purge-failed', { error: describeError(e).message });
    }
  }

  updated(ns: NetNamespace): void {
    this.#namespaces.set(ns.inode, ns);
  }

  async gone(ns: NetNamespace): Promise<void> {
    this.#uevents?.unwatch(String(ns.inode));
    await this.#queue.get(ns.inode);
    this.#namespaces.delete(ns.inode);
    this.#status.delete(ns.inode);
    if (ns.keySource === 'inode' && this.#opts.store.delete(ns.key)) this.#log?.debug('clientid.dropped', { key: ns.key });
  }

  describe(ns: NetNamespace): Record<string, unknown> {
    const s = this.#status.get(ns.inode);
    return s ? { clientid: s.identifier, clientidState: s.state } : {};
  }

  /** Every namespace's status, for the admin socket. */
  statuses(): ClientIdStatus[] {
    return [...this.#status.values()];
  }

  list(): ClientIdView[] {
    return clientIdViews(this.#opts.store.list(), this.statuses());
  }

  /** One key's record and state; NSIDMAP_ENOCLIENTID when neither the store nor a namespace has it. */
  show(key: string): ClientIdView {
    const record = this.#opts.store.get(key);
    const views = clientIdViews(record ? [record] : [], this.statuses().filter((s) => s.key === key));
    if (views[0] === undefined) throw new NsidmapError('NSIDMAP_ENOCLIENTID', `no client identifier for "${key}"`);
    return views[0];
  }

  /** The namespace currently known under `key`. */
  namespaceOf(key: string): NetNamespace | undefined {
    return [...this.#namespaces.values()].find((ns) => ns.key === key);
  }

  /**
   * Set the namespace's identifier now; one at a time per namespace. `force` (an admin's set or
   * import) replaces an identifier someone else put there. Never throws: the outcome is the status.
   */
  apply(inode: number, reason: string, mode: ApplyMode = 'auto'): Promise<ClientIdStatus | undefined> {
    const prior = this.#queue.get(inode) ?? Promise.resolve();
    const run = prior.then(() => this.#applyNow(inode, reason, mode));
    const settled = run.catch(() => undefined);
    this.#queue.set(inode, settled);
    void settled.then(() => {
      if (this.#queue.get(inode) === settled) this.#queue.delete(inode);
    });
    return run;
  }

  async #applyNow(inode: number, reason: string, mode: ApplyMode): Promise<ClientIdStatus | undefined> {
    const ns = this.#namespaces.get(inode);
    if (!ns) return undefined;
    const decided = this.#decide(ns);
    if (decided.identifier === undefined) return this.#record(ns, decided.state, undefined, decided.detail);
    try {
      const result = await this.#writer.apply(ns.nsPath, decided.identifier, mode);
      if (result.state === 'written' || result.state === 'unchanged') this.#opts.store.markApplied(ns.key, ns.inode);
      this.#logResult(ns, decided.identifier, result, reason);
      return this.#record(ns, result.state, decided.identifier, result.state === 'foreign' ? `the namespace holds ${result.previous ?? 'another identifier'}` : result.state === 'no-nfs' ? NO_NFS_MESSAGE : undefined);
    } catch (e) {
      const message = describeError(e).message;
      this.#log?.warn('clientid.failed', { key: ns.key, netns: ns.inode, reason, error: message });
      return this.#record(ns, 'error', decided.identifier, message);
    }
  }

  /** The identifier to write (stored first when new), or why there is none. */
  #decide(ns: NetNamespace): { identifier?: string; state: ClientIdState; detail?: string } {
    const store = this.#opts.store;
    const rule = this.#ruleFor(ns);
    if (rule === undefined) return { state: 'off', detail: 'the host has nfs.nfs4_unique_id set: left to it' };
    let stored: ClientIdRecord | undefined;
    try {
      stored = store.get(ns.key);
      const d = decideIdentifier(rule, stored?.identifier, this.#derive(ns, rule), (id) => store.holderOf(id, ns.key));
      switch (d.action) {
        case 'off':
          return { state: 'off', detail: 'clientid: off in the policy' };
        case 'keep':
          return { identifier: d.identifier, state: 'unchanged' };
        case 'conflict':
          this.#log?.error('clientid.conflict', { key: ns.key, identifier: d.identifier, holder: d.holder });
          return { state: 'conflict', detail: `the policy's value for ${ns.key} is already ${d.holder}'s` };
        case 'store':
          store.set(ns.key, d.identifier, d.source);
          this.#log?.info('clientid.chosen', { key: ns.key, netns: ns.inode, identifier: d.identifier, source: d.source, note: d.note });
          return { identifier: d.identifier, state: 'unchanged' };
      }
    } catch (e) {
      const message = describeError(e).message;
      this.#log?.warn('clientid.failed', { key: ns.key, netns: ns.inode, error: message });
      return { state: 'error', detail: message };
    }
  }

  /**
   * The host is left alone when it already has a uniquifier from the module parameter and the
   * policy does not name it: writing one would change the identity its servers know it by.
   */
  #ruleFor(ns: NetNamespace): ClientIdRule | undefined {
    const policy = this.#opts.policy();
    if (ns.isInit && !(policy?.namespaces && Object.hasOwn(policy.namespaces, ns.key))) {
      const param = this.#tryRead(UNIQUE_ID_PARAM)?.toString('utf8').trim();
      if (param) return undefined;
    }
    return ruleFor(policy, ns.key);
  }

  #derive(ns: NetNamespace, rule: ClientIdRule): Derivation {
    if (rule.from !== 'machine-id' || ns.root === undefined) return {};
    const machineId = this.#machineIdOf(ns.root);
    if (machineId === undefined) return {};
    return { machineId, sharesHostMachineId: !ns.isInit && machineId === this.#hostMachineId };
  }

  #machineIdOf(root: string): string | undefined {
    const file = this.#readInRoot(root, '/etc/machine-id');
    return file === undefined ? undefined : identifierFromMachineId(file);
  }

  #tryRead(path: string): Buffer | undefined {
    try {
      return this.#read(path);
    } catch {
      return undefined;
    }
  }

  #onUevent(tag: string, e: Uevent): void {
    const inode = Number(tag);
    const ns = this.#namespaces.get(inode);
    if (isNfsClientAdd(e)) {
      this.#log?.info('uevent.nfs-client', { key: ns?.key, netns: inode });
      void this.apply(inode, 'uevent');
    } else if (ns?.isInit && isNetDeviceChange(e)) {
      // A device leaving or joining the host's namespace: a runtime wiring a new one, likely.
      this.#hooks?.rescanSoon(`uevent ${e.action} ${e.devpath}`);
    }
  }

  #logResult(ns: NetNamespace, identifier: string, r: ApplyResult, reason: string): void {
    const log = this.#log;
    if (!log) return;
    const fields = { key: ns.key, netns: ns.inode, identifier, reason };
    switch (r.state) {
      case 'written':
        return log.info('clientid.written', { ...fields, previous: r.previous });
      case 'unchanged':
        return log.debug('clientid.unchanged', fields);
      case 'foreign':
        return log.warn('clientid.foreign', { ...fields, current: r.previous, hint: 'left alone: `idmapctl clientid set KEY VALUE` replaces it' });
      case 'no-client':
        return log.debug('clientid.no-client', fields);
      case 'no-nfs':
        if (this.#noNfsLogged) return;
        this.#noNfsLogged = true;
        return log.info('clientid.no-nfs', { reason: NO_NFS_MESSAGE });
    }
  }

  #record(ns: NetNamespace, state: ClientIdState, identifier: string | undefined, detail: string | undefined): ClientIdStatus {
    const s: ClientIdStatus = { key: ns.key, netns: ns.inode, state, at: Date.now(), ...(identifier !== undefined && { identifier }), ...(detail !== undefined && { detail }) };
    this.#status.set(ns.inode, s);
    return s;
  }

  /**
   * An admin's `set`/`import`: store `identifier` for `key` (NSIDMAP_ECLIENTID when another key
   * holds it) and, when that namespace is here, write it now, replacing what is there.
   */
  async set(key: string, identifier: string, source: 'set' | 'import'): Promise<{ record: ClientIdRecord; applied?: ClientIdStatus }> {
    const rule = ruleFor(this.#opts.policy(), key);
    if (rule.from === 'fixed' && rule.value !== identifier) {
      throw new NsidmapError('NSIDMAP_ECLIENTID', `the policy fixes ${key}'s identifier to ${rule.value}: change the policy instead`);
    }
    const record = this.#opts.store.set(key, identifier, source);
    const ns = this.namespaceOf(key);
    const applied = ns && rule.from !== 'off' ? await this.apply(ns.inode, `admin ${source}`, 'force') : undefined;
    return applied ? { record, applied } : { record };
  }
}

/** One key as `idmapctl clientid list/show` shows it: the stored record and, from a daemon, its namespace now. */
export interface ClientIdView {
  readonly key: string;
  readonly identifier?: string;
  readonly source?: string;
  readonly updated?: number;
  readonly applied?: number;
  readonly appliedNetns?: number;
  /** the namespace holding this key now (daemon only) */
  readonly netns?: number;
  readonly state?: ClientIdState;
  readonly detail?: string;
}

/** Stored records joined with live statuses by key; live namespaces without a record are listed too. */
export function clientIdViews(records: readonly ClientIdRecord[], live: readonly ClientIdStatus[]): ClientIdView[] {
  const byKey = new Map<string, ClientIdView>(records.map((r) => [r.key, { ...r }]));
  for (const s of live) {
    const base = byKey.get(s.key) ?? { key: s.key };
    byKey.set(s.key, { ...base, netns: s.netns, state: s.state, ...(s.detail !== undefined && { detail: s.detail }) });
  }
  return [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** What the admin socket asks of the daemon's client identifiers (src/daemon/handler.ts). */
export interface ClientIdAdmin {
  list(): ClientIdView[];
  show(key: string): ClientIdView;
  set(key: string, identifier: string, source: 'set' | 'import'): Promise<{ record: ClientIdRecord; applied?: ClientIdStatus }>;
}
