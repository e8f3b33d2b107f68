/**
 * Reads /proc/<pid>/… to learn a task's namespaces and cgroup. Synchronous on purpose: these are
 * a handful of small procfs reads per request (see buildContext), and a sync read of procfs
 * never blocks on a disk.
 *
 * Reading another task's ns links needs ptrace read access to it (fs/proc/namespaces.c,
 * proc_ns_get_link → ptrace_may_access), i.e. root or the same user: nsidmapd runs as root.
 */
import { closeSync, fstatSync, openSync, readSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as KoffiModule from 'koffi';
import { NsidmapError, isNsidmapError } from '../errors.js';
import type { NetNsInfo, UserNsInfo } from '../types.js';
import { parseCgroupFile } from './cgroup.js';
import { isIdentityMap, parseIdMap } from './idmap.js';

export type NsKind = 'user' | 'net' | 'mnt' | 'pid';

/**
 * include/linux/proc_ns.h: PROC_USER_INIT_INO. The initial user namespace has had this fixed
 * inode since Linux 3.8; dynamically allocated ones start at 0xF0000000 (fs/proc/generic.c).
 */
export const USER_INIT_INO = 0xeffffffd;

/** errno codes that mean "the task has exited" rather than "you may not look". */
const GONE_CODES = new Set(['ENOENT', 'ESRCH']);

function errnoCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** True when `e` (from this module) says the process no longer exists. */
export function isProcGone(e: unknown): boolean {
  const cause = isNsidmapError(e) ? e.cause : e;
  const code = errnoCode(cause);
  return code !== undefined && GONE_CODES.has(code);
}

function checkPid(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid < 1) {
    throw new NsidmapError('NSIDMAP_ENS', `pid ${String(pid)} is not a valid process id`);
  }
}

/** Run one procfs read; any failure becomes NSIDMAP_ENS naming the pid and the file. */
function procRead<T>(pid: number, file: string, read: (path: string) => T): T {
  checkPid(pid);
  const path = `/proc/${pid}/${file}`;
  try {
    return read(path);
  } catch (e) {
    if (isNsidmapError(e)) throw new NsidmapError(e.code, `pid ${pid}: ${path}: ${e.message}`, { cause: e });
    const code = errnoCode(e) ?? String(e);
    const why = GONE_CODES.has(code) ? 'the process has exited' : code === 'EACCES' ? 'permission denied' : code;
    throw new NsidmapError('NSIDMAP_ENS', `pid ${pid}: cannot read ${path}: ${why}`, { cause: e });
  }
}

const NS_LINK = /^([a-z_]+):\[(\d+)\]$/;

/** Inode of /proc/<pid>/ns/<kind>; the link reads `user:[4026531837]` (fs/nsfs.c, ns_get_name). */
export function readNsInode(pid: number, kind: NsKind): number {
  return procRead(pid, `ns/${kind}`, (path) => {
    const link = readlinkSync(path);
    const m = NS_LINK.exec(link);
    if (!m || m[1] !== kind) {
      throw new NsidmapError('NSIDMAP_ENS', `unexpected namespace link ${JSON.stringify(link)}`);
    }
    return Number(m[2]);
  });
}

/** ioctl(NS_GET_OWNER_UID) = _IO(0xb7, 0x4), include/uapi/linux/nsfs.h (Linux ≥ 4.11). */
const NS_GET_OWNER_UID = 0xb704;
type Ioctl = (fd: number, request: number, type: string, out: Uint32Array) => number;
/** null: tried and unavailable (no koffi, no glibc); undefined: not tried yet. */
let ioctlFn: Ioctl | null | undefined;
const ownerOut = new Uint32Array(1);

/** Load koffi on first use only: it costs ~15 ms, which the CLI paths that never ask avoid. */
function loadIoctl(): Ioctl | null {
  if (ioctlFn !== undefined) return ioctlFn;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof KoffiModule;
    const libc = koffi.load('libc.so.6');
    ioctlFn = libc.func('int ioctl(int fd, unsigned long request, ...)') as Ioctl;
  } catch {
    ioctlFn = null;
  }
  return ioctlFn;
}

/**
 * Host uid of the user namespace's creator, asked of the namespace fd itself. The kernel reports
 * it in the caller's user namespace (fs/nsfs.c, from_kuid_munged), which for nsidmapd is the
 * host's. undefined when the ioctl is unavailable (old kernel, non-glibc system).
 */
function ownerOfNsFd(fd: number): number | undefined {
  const ioctl = loadIoctl();
  if (!ioctl) return undefined;
  return ioctl(fd, NS_GET_OWNER_UID, 'uint32_t *', ownerOut) === 0 ? ownerOut[0] : undefined;
}

/**
 * Inode and owner from one open of the ns file, so both describe the same namespace even if the
 * task exits or moves meanwhile (the fd pins it).
 */
function readUserNsHandle(pid: number): { inode: number; owner: number | undefined } {
  return procRead(pid, 'ns/user', (path) => {
    const fd = openSync(path, 'r');
    try {
      return { inode: fstatSync(fd).ino, owner: ownerOfNsFd(fd) };
    } finally {
      closeSync(fd);
    }
  });
}

/** Shared read buffer: reads are synchronous, so one suffices; it grows for long files. */
let textBuf = Buffer.allocUnsafe(16384);

/**
 * A small procfs file as text. readFileSync costs ~4x more here (it stats, then reads a size-0
 * file in growing chunks); procfs seq_files are read to EOF with plain read(2) calls instead.
 */
function readProcText(path: string): string {
  const fd = openSync(path, 'r');
  try {
    let len = 0;
    for (;;) {
      if (len === textBuf.length) textBuf = Buffer.concat([textBuf, Buffer.allocUnsafe(textBuf.length)]);
      const n = readSync(fd, textBuf, len, textBuf.length - len, null);
      if (n === 0) return textBuf.toString('utf8', 0, len);
      len += n;
    }
  } finally {
    closeSync(fd);
  }
}

function readMap(pid: number, file: 'uid_map' | 'gid_map'): ReturnType<typeof parseIdMap> {
  return procRead(pid, file, (path) => parseIdMap(readProcText(path)));
}

/**
 * The task's user namespace. isInit requires both the init namespace's fixed inode and the
 * identity map: a root-made namespace can carry `0 0 4294967295` too, and it is not the host's.
 */
export function readUserNs(pid: number): UserNsInfo {
  const { inode, owner } = readUserNsHandle(pid);
  const uidMap = readMap(pid, 'uid_map');
  const gidMap = readMap(pid, 'gid_map');
  const isInit = inode === USER_INIT_INO && isIdentityMap(uidMap);
  return owner === undefined ? { inode, isInit, uidMap, gidMap } : { inode, isInit, uidMap, gidMap, owner };
}

/**
 * include/uapi/linux/nsfs.h (Linux ≥ 6.18): init_net's fixed inode. No other namespace can have
 * it on any kernel, since dynamic inodes start at 0xF0000000 — but older kernels give init_net a
 * dynamic one, so it must otherwise be learnt from a task known to be in it.
 */
export const NET_INIT_INO = 0xeffffff9;

let initNetInode: number | undefined;

/**
 * init_net's inode: pid 1's (the init of our pid namespace; nsidmapd runs in the host's). Where
 * pid 1 may not be inspected (a sandbox, an LSM) but we ourselves sit in init_net on a kernel with
 * fixed init inodes, that constant. Read once: pid 1 does not change its network namespace.
 */
export function readInitNetInode(): number {
  if (initNetInode !== undefined) return initNetInode;
  try {
    initNetInode = readNsInode(1, 'net');
  } catch (e) {
    // Re-wrapped so that pid 1's failure never reads as the requester being gone (isProcGone).
    if (readNsInode(process.pid, 'net') !== NET_INIT_INO) {
      throw new NsidmapError('NSIDMAP_ENS', `cannot identify the initial network namespace: ${(e as Error).message}`, { cause: e });
    }
    initNetInode = NET_INIT_INO;
  }
  return initNetInode;
}

export function readNetNs(pid: number): NetNsInfo {
  const inode = readNsInode(pid, 'net');
  return { inode, isInit: inode === NET_INIT_INO || inode === readInitNetInode() };
}

/**
 * The initial user namespace, which needs no reading: its map and owner are fixed at build time
 * (kernel/user_namespace.c, init_user_ns: one extent 0 0 4294967295, owner GLOBAL_ROOT_UID).
 */
export const INIT_USER_NS: UserNsInfo = Object.freeze({
  inode: USER_INIT_INO,
  isInit: true,
  uidMap: Object.freeze([Object.freeze({ inside: 0, outside: 0, count: 0xffffffff })]),
  gidMap: Object.freeze([Object.freeze({ inside: 0, outside: 0, count: 0xffffffff })]),
  owner: 0,
});

/** The task's cgroup path (see parseCgroupFile); undefined when the file names none. */
export function readCgroup(pid: number): string | undefined {
  return procRead(pid, 'cgroup', (path) => parseCgroupFile(readProcText(path)));
}
