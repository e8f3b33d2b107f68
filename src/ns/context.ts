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
