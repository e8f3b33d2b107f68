/**
 * buildContext: who asked, read from /proc once per request. Responders call it; the resolver
 * and policy only ever see the resulting Context.
 */
import type { Context, Interface } from '../types.js';
import { containerFromCgroup } from './cgroup.js';
import { INIT_USER_NS, isProcGone, readCgroup, readInitNetInode, readNetNs, readUserNs } from './proc.js';

let hostNs: Pick<Context, 'userns' | 'netns'> | undefined;

/**
 * The host's namespaces: the initial user namespace (constant) and init_net. Not /proc/self: a
 * daemon confined by systemd (PrivateNetwork=, PrivateUsers=) must still describe the host.
 * Computed once; neither changes while the system runs.
 */
function readHostNs(): Pick<Context, 'userns' | 'netns'> {
  hostNs ??= { userns: INIT_USER_NS, netns: { inode: readInitNetInode(), isInit: true } };
  return hostNs;
}

/** Everything /proc says about `pid`; throws NSIDMAP_ENS (see isProcGone). */
function readTask(pid: number): Pick<Context, 'userns' | 'netns' | 'cgroup' | 'container'> {
  const userns = readUserNs(pid);
  const netns = readNetNs(pid);
  const cgroup = readCgroup(pid);
  const container = cgroup === undefined ? undefined : containerFromCgroup(cgroup);
  return { userns, netns, ...(cgroup !== undefined && { cgroup }), ...(container && { container }) };
}

/**
 * The Context of one request.
 * - pid given: its namespaces and cgroup come from /proc and override anything in `extra`.
 *   A pid that has exited yields `{ iface, pid, pidGone: true }` plus `extra`, never a throw:
 *   keyring requests carry the pid for logs only. Other faults (EACCES) throw NSIDMAP_ENS.
 * - pid undefined: the host context. `extra` wins here, so a responder serving one namespace
 *   (nfsd's netns, a pipefs mount) states it and the host's namespaces fill the rest.
 */
export function buildContext(iface: Interface, pid: number | undefined, extra?: Partial<Context>): Context {
  if (pid === undefined) return { ...readHostNs(), ...extra, iface };
  try {
    return { ...extra, iface, pid, ...readTask(pid) };
  } catch (e) {
    if (isProcGone(e)) return { ...extra, iface, pid, pidGone: true };
    throw e;
  }
}

/**
 * A Context whose requester — the pid, and what /proc says about it — is found only when first
 * read, all at once: for keyring upcalls, whose answers never depend on the requester (DESIGN.md
 * "Which context may choose a scope"), it is needed only by a log line or an audit event, and a
 * mapped answer at the default log level has neither. `findPid` may itself be costly (the pid of a
 * keyring requester is read from /proc/keys, src/responders/keyring/requester.ts). Read before
 * the upcall is answered, as the daemon does, the requester is still blocked in request_key(),
 * so what is logged is what an eager read would have found.
 *
 * The requester is informational here, so failing to read it never fails the request: a pid
 * that has exited gives `pidGone` as in buildContext, and any other fault (EACCES on /proc, an
 * unreadable /proc/keys) is passed to `onError` and leaves the requester unknown (the pid, when
 * known, is kept).
 */
export function buildLazyContext(iface: Interface, findPid: () => number | undefined, extra?: Partial<Context>, onError?: (e: unknown) => void): Context {
  return new LazyContext(iface, findPid, extra, onError);
}

/**
 * The requester's members are getters on the prototype: ~0.2 µs a request, where an object
 * literal with getters costs ~5–11 µs here (V8 11). A spread copies only own members (iface and
 * what `extra` gave), so code that copies a Context must read the requester's members by name.
 */
class LazyContext implements Context {
  readonly fs?: 'nfs' | 'cifs';
  readonly authDomain?: string;
  readonly pipefs?: string;
  #found: Context | undefined;

  constructor(
    readonly iface: Interface,
    private readonly findPid: () => number | undefined,
    private readonly extra: Partial<Context> | undefined,
    private readonly onError: ((e: unknown) => void) | undefined,
  ) {
    if (extra?.fs !== undefined) this.fs = extra.fs;
    if (extra?.authDomain !== undefined) this.authDomain = extra.authDomain;
    if (extra?.pipefs !== undefined) this.pipefs = extra.pipefs;
  }

  #requester(): Context {
    if (this.#found) return this.#found;
    let pid: number | undefined;
    try {
      pid = this.findPid();
      this.#found = buildContext(this.iface, pid, this.extra);
    } catch (e) {
      this.#found = { ...this.extra, iface: this.iface, ...(pid !== undefined && { pid }) };
      this.onError?.(e);
    }
    return this.#found;
  }

  get pid(): number | undefined {
    return this.#requester().pid;
  }
  get pidGone(): boolean | undefined {
    return this.#requester().pidGone;
  }
  get userns(): Context['userns'] {
    return this.#requester().userns;
  }
  get netns(): Context['netns'] {
    return this.#requester().netns;
  }
  get cgroup(): string | undefined {
    return this.#requester().cgroup;
  }
  get container(): Context['container'] {
    return this.#requester().container;
  }
}
