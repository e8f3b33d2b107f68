/**
 * Every network namespace on the host, found from /proc: the host's and each container's, with
 * what nsidmap serves in it (PROTOCOLS.md §3, §4, §6) — its rpc_pipefs mounts, its nfsd idmap
 * channels — and a key to keep its NFSv4 client identifier under.
 *
 * A network namespace has no list of its own in the kernel that userspace can walk; it is known
 * through the tasks in it (/proc/<pid>/ns/net) and through the files that pin it (`ip netns`
 * keeps bind mounts in /run/netns). One pass reads one link per process (~4 µs each: 40 ms for
 * 10,000 processes, in slices) and a few files per namespace: cheap enough to repeat every few
 * seconds.
 *
 * Keys. A namespace's inode number is no name to persist anything under: nsfs hands inodes out
 * from one allocator (fs/nsfs.c, ns_alloc_inum → the proc inode IDA) when the namespace is made,
 * in creation order, and reuses a number once its namespace is freed — so after a reboot, a
 * container restart or a move to another host the same container gets another number, and within
 * one boot a new namespace may get a dead one's. What survives those is the container's id (from
 * its cgroup) and an `ip netns` name; the inode is the last resort, good for this boot only.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { ContainerInfo, UserNsInfo } from '../types.js';
import { containerFromCgroup } from './cgroup.js';
import { isRpcPipefs, mountsBySuperblock, parseMountInfo, type MountFilter } from './mountinfo.js';
import { readCgroup, readInitNetInode, readNsInode, readUserNs } from './proc.js';

/** Where `ip netns add` (iproute2) pins named namespaces; docker's own live elsewhere. */
export const NAMED_NETNS_DIRS: readonly string[] = ['/run/netns'];

export interface PipefsMount {
  /** where the namespace's own tasks see it (mountinfo's mount point) */
  readonly mountPoint: string;
  /** how nsidmapd reaches it: the mount point itself when it shares the task's view, else /proc/<pid>/root/… */
  readonly path: string;
  /** the superblock (major:minor): one rpc_pipefs per network namespace */
  readonly dev: string;
}

/** Why a namespace has the key it has; only `inode` keys are good for this boot alone. */
export type KeySource = 'host' | 'container' | 'named' | 'inode';

export interface NetNamespace {
  /** `host`, the container id, `ipnetns:<name>`, or `netns:<inode>` (see the module comment) */
  readonly key: string;
  readonly keySource: KeySource;
  readonly inode: number;
  readonly isInit: boolean;
  /** the lowest pid of a user task in it (the longest-lived, usually its init); absent when no task is in it */
  readonly pid?: number;
  /** a file that enters it with setns(2)/nsenter: /proc/<pid>/ns/net or /run/netns/<name> */
  readonly nsPath: string;
  /** its `ip netns` name, when it has one */
  readonly name?: string;
  readonly cgroup?: string;
  readonly container?: ContainerInfo;
  /** the representative task's user namespace: who reads the answers given in this namespace */
  readonly userns?: UserNsInfo;
  /** the representative task's root, to read the namespace's own files (etc/machine-id) */
  readonly root?: string;
  readonly pipefs: readonly PipefsMount[];
  /** the `/proc/…/net/rpc` directory holding nfs4.idtoname and nfs4.nametoid, when nfsd has them */
  readonly nfsd?: string;
}

export interface DiscoveryOptions {
  /** which mounts are rpc_pipefs (default: fstype rpc_pipefs); tests use a tmpfs */
  readonly pipefsFilter?: MountFilter;
  /** directories of named namespaces (default NAMED_NETNS_DIRS) */
  readonly namedDirs?: readonly string[];
}

export interface Discovery {
  readonly namespaces: readonly NetNamespace[];
  /** processes whose namespace could not be read (gone meanwhile, or not ours to look at) */
  readonly unreadable: number;
}

/** /proc/<pid>/stat `flags` (field 9): PF_KTHREAD, include/linux/sched.h. */
const PF_KTHREAD = 0x00200000;

/**
 * The flags field of a /proc/<pid>/stat line. `comm` (field 2) may hold spaces and parentheses,
 * so the fields are counted from its closing parenthesis, the last `)` of the line.
 */
export function statFlags(stat: string): number | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const flags = stat.slice(close + 2).split(' ')[6];
  return flags !== undefined && /^\d+$/.test(flags) ? Number(flags) : undefined;
}

/**
 * Kernel threads sit in init_net and have no root or mounts of their own worth reading: they
 * never represent a namespace. A task we cannot read counts as one (it cannot represent either).
 */
function isKernelThread(pid: number): boolean {
  try {
    const flags = statFlags(readFileSync(`/proc/${pid}/stat`, 'latin1'));
    return flags === undefined || (flags & PF_KTHREAD) !== 0;
  } catch {
    return true;
  }
}

interface Group {
  inode: number;
  rep?: number;
}

/**
 * Processes read between two turns of the event loop: a readlink costs ~4 µs, so a slice stays
 * near 2 ms and a host of 10,000 processes never holds the responders' upcalls for the ~40 ms a
 * whole pass takes.
 */
const SLICE = 512;

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Distinct network namespaces of all processes, each with its lowest user-task pid. */
async function scanProcesses(): Promise<{ groups: Map<number, Group>; unreadable: number }> {
  const pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  const groups = new Map<number, Group>();
  let unreadable = 0;
  for (const [i, pid] of pids.entries()) {
    if (i > 0 && i % SLICE === 0) await yieldToLoop();
    let inode: number;
    try {
      inode = readNsInode(pid, 'net');
    } catch {
      unreadable++;
      continue;
    }
    let g = groups.get(inode);
    if (!g) groups.set(inode, (g = { inode }));
    if (g.rep === undefined && !isKernelThread(pid)) g.rep = pid;
  }
  return { groups, unreadable };
}

/** `ip netns` names by namespace inode: the files in `dirs` that are nsfs bind mounts. */
function namedNamespaces(dirs: readonly string[]): Map<number, { name: string; path: string }> {
  const out = new Map<number, { name: string; path: string }>();
  let nsfsDev: number;
  try {
    nsfsDev = statSync('/proc/self/ns/net').dev;
  } catch {
    return out;
  }
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      const path = `${dir}/${name}`;
      try {
        // A name whose mount is gone is an empty file on the directory's own filesystem.
        const st = statSync(path);
        if (st.dev === nsfsDev && !out.has(st.ino)) out.set(st.ino, { name, path });
      } catch {
        // removed meanwhile
      }
    }
  }
  return out;
}

function tryRead<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/** nsidmapd's own view of the filesystem: a task that shares it needs no /proc/<pid>/root detour. */
interface OwnView {
  readonly mnt: number | undefined;
  readonly rootDev: number;
  readonly rootIno: number;
  readonly net: number | undefined;
}

function ownView(): OwnView {
  const root = statSync('/');
  return { mnt: tryRead(() => readNsInode(process.pid, 'mnt')), rootDev: root.dev, rootIno: root.ino, net: tryRead(() => readNsInode(process.pid, 'net')) };
}

/**
 * The rpc_pipefs mounts `pid` sees, reachable from here. A task's mountinfo depends on its mount
 * namespace and its root (mount points are shown relative to it), so it is parsed once per pair.
 */
function pipefsOf(pid: number, own: OwnView, filter: MountFilter, seen: Map<string, PipefsMount[]>): PipefsMount[] {
  const mnt = tryRead(() => readNsInode(pid, 'mnt'));
  const root = tryRead(() => statSync(`/proc/${pid}/root`));
  if (mnt === undefined || root === undefined) return [];
  const view = `${mnt} ${root.dev} ${root.ino}`;
  const cached = seen.get(view);
  if (cached) return cached;
  const text = tryRead(() => readFileSync(`/proc/${pid}/mountinfo`, 'utf8'));
  if (text === undefined) return [];
  const same = mnt === own.mnt && root.dev === own.rootDev && root.ino === own.rootIno;
  const found = mountsBySuperblock(parseMountInfo(text), filter).map((m) => ({
    mountPoint: m.mountPoint,
    path: same ? m.mountPoint : `/proc/${pid}/root${m.mountPoint === '/' ? '' : m.mountPoint}`,
    dev: m.dev,
  }));
  seen.set(view, found);
  return found;
}

function nfsdOf(pid: number, inode: number, own: OwnView): string | undefined {
  const dir = inode === own.net ? '/proc/net/rpc' : `/proc/${pid}/net/rpc`;
  return existsSync(`${dir}/nfs4.idtoname/channel`) ? dir : undefined;
}

/** A container id stands as a key by itself unless it could be mistaken for another kind of key. */
function containerKey(c: ContainerInfo): string {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(c.id) && c.id !== 'host' ? c.id : `${c.runtime}:${c.id}`;
}

type Draft = Omit<NetNamespace, 'key' | 'keySource'>;

function preferredKey(ns: Draft): { key: string; keySource: KeySource } {
  if (ns.isInit) return { key: 'host', keySource: 'host' };
  if (ns.container) return { key: containerKey(ns.container), keySource: 'container' };
  if (ns.name !== undefined) return { key: `ipnetns:${ns.name}`, keySource: 'named' };
  return inodeKey(ns.inode);
}

function inodeKey(inode: number): { key: string; keySource: KeySource } {
  return { key: `netns:${inode}`, keySource: 'inode' };
}

function describeTask(g: Group & { rep: number }, isInit: boolean, own: OwnView, opts: Required<DiscoveryOptions>, views: Map<string, PipefsMount[]>): Draft {
  const pid = g.rep;
  const cgroup = tryRead(() => readCgroup(pid));
  const container = cgroup === undefined ? undefined : containerFromCgroup(cgroup);
  const userns = tryRead(() => readUserNs(pid));
  const nfsd = nfsdOf(pid, g.inode, own);
  return {
    inode: g.inode,
    isInit,
    pid,
    nsPath: `/proc/${pid}/ns/net`,
    ...(cgroup !== undefined && { cgroup }),
    ...(container && { container }),
    ...(userns && { userns }),
    root: `/proc/${pid}/root`,
    pipefs: pipefsOf(pid, own, opts.pipefsFilter, views),
    ...(nfsd !== undefined && { nfsd }),
  };
}

/**
 * Keys, and which namespace serves an rpc_pipefs superblock seen by several. Namespaces are taken
 * in order — the host first, then by representative pid, then the ones no task is in — and the
 * first to claim a key or a superblock keeps it:
 * - two namespaces of one container (a task that ran `unshare -n` inside it) share a cgroup; the
 *   older keeps the container's key, the other falls back to its inode — two namespaces must never
 *   present one NFSv4 identity;
 * - a task that made a network namespace without a mount namespace still sees the host's
 *   rpc_pipefs (its superblock belongs to the host's network namespace), so the host claims it first.
 */
function settle(drafts: Draft[], named: Map<number, { name: string; path: string }>): NetNamespace[] {
  const keys = new Set<string>();
  const devs = new Set<string>();
  const out: NetNamespace[] = [];
  for (const d of drafts) {
    const n = named.get(d.inode);
    const draft: Draft = n ? { ...d, name: n.name } : d;
    let k = preferredKey(draft);
    if (keys.has(k.key)) k = inodeKey(d.inode);
    keys.add(k.key);
    const pipefs = draft.pipefs.filter((m) => !devs.has(m.dev));
    for (const m of pipefs) devs.add(m.dev);
    out.push({ ...k, ...draft, pipefs });
  }
  return out;
}

/**
 * One pass over /proc (and the named-namespace directories): every network namespace with a task
 * or a name. Asynchronous only to let the event loop breathe on a host with many processes.
 */
export async function discoverNetNamespaces(options: DiscoveryOptions = {}): Promise<Discovery> {
  const opts: Required<DiscoveryOptions> = { pipefsFilter: options.pipefsFilter ?? isRpcPipefs, namedDirs: options.namedDirs ?? NAMED_NETNS_DIRS };
  const own = ownView();
  const initInode = tryRead(readInitNetInode);
  const { groups, unreadable } = await scanProcesses();
  const named = namedNamespaces(opts.namedDirs);
  const views = new Map<string, PipefsMount[]>();
  const withTask = [...groups.values()]
    .filter((g): g is Group & { rep: number } => g.rep !== undefined)
    .sort((a, b) => Number(b.inode === initInode) - Number(a.inode === initInode) || a.rep - b.rep);
  const drafts: Draft[] = withTask.map((g) => describeTask(g, g.inode === initInode, own, opts, views));
  for (const [inode, n] of named) {
    if (groups.get(inode)?.rep === undefined) drafts.push({ inode, isInit: inode === initInode, nsPath: n.path, pipefs: [] });
  }
  return { namespaces: settle(drafts, named), unreadable };
}

/** Where the `ip netns` name files live that are present on this host (to watch for new ones). */
export function existingDirs(dirs: readonly string[]): string[] {
  return dirs.filter((d) => tryRead(() => statSync(d).isDirectory()) === true);
}
