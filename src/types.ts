/**
 * The vocabulary every layer shares: branded ids, the eight lookups, who asked (Context),
 * and what the resolver says (Answer). Nothing here does I/O.
 */

/** A uid in some id space (which one is always stated by the field that holds it). */
export type Uid = number & { readonly __brand: 'Uid' };
/** A gid in some id space. */
export type Gid = number & { readonly __brand: 'Gid' };
/** A SID in canonical text form: `S-1-5-21-1-2-3-1001` (upper-case `S`, decimal parts). */
export type Sid = string & { readonly __brand: 'Sid' };

export const asUid = (n: number): Uid => n as Uid;
export const asGid = (n: number): Gid => n as Gid;

/** Largest valid 32-bit id; (uid_t)-1 is never a valid id (kernel: INVALID_UID). */
export const ID_MAX = 0xfffffffe;
export function isValidId(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= ID_MAX;
}

/** users or groups: every lookup is about one of them. */
export type Entity = 'user' | 'group';

export const LOOKUP_KINDS = [
  'name-to-uid',
  'name-to-gid',
  'uid-to-name',
  'gid-to-name',
  'sid-to-uid',
  'sid-to-gid',
  'uid-to-sid',
  'gid-to-sid',
] as const;
export type LookupKind = (typeof LOOKUP_KINDS)[number];

/** A typed request: what the kernel (or an admin) asks. */
export type Request =
  | { readonly kind: 'name-to-uid' | 'name-to-gid'; readonly name: string }
  | { readonly kind: 'uid-to-name' | 'gid-to-name' | 'uid-to-sid' | 'gid-to-sid'; readonly id: number }
  | { readonly kind: 'sid-to-uid' | 'sid-to-gid'; readonly sid: Sid };

export function entityOf(kind: LookupKind): Entity {
  switch (kind) {
    case 'name-to-uid':
    case 'uid-to-name':
    case 'sid-to-uid':
    case 'uid-to-sid':
      return 'user';
    case 'name-to-gid':
    case 'gid-to-name':
    case 'sid-to-gid':
    case 'gid-to-sid':
      return 'group';
  }
}

/** What the answer of a lookup is: an id, a (wire) name, or a SID. */
export type AnswerType = 'id' | 'name' | 'sid';
export function answerTypeOf(kind: LookupKind): AnswerType {
  switch (kind) {
    case 'name-to-uid':
    case 'name-to-gid':
    case 'sid-to-uid':
    case 'sid-to-gid':
      return 'id';
    case 'uid-to-name':
    case 'gid-to-name':
      return 'name';
    case 'uid-to-sid':
    case 'gid-to-sid':
      return 'sid';
  }
}

/** Kernel interfaces (and the admin socket) that ask. */
export const INTERFACES = ['keyring-nfs', 'keyring-cifs', 'pipefs', 'nfsd', 'admin'] as const;
export type Interface = (typeof INTERFACES)[number];
/** Interfaces whose answers land in host-wide keyrings: the requester may not choose a scope. */
export const KEYRING_INTERFACES: readonly Interface[] = ['keyring-nfs', 'keyring-cifs'];
/**
 * Interfaces whose answers the kernel caches host-wide, keyed by the lookup alone. Besides the
 * keyrings, the rpc_pipefs path: fs/nfs/nfs4idmap.c instantiates its `id_legacy` keys in the
 * `.id_resolver` keyring of the id_resolver_cache credential — one keyring for every mount, so
 * what one container's pipe answered is what the next container's pipe-path mount reads.
 */
export const HOST_WIDE_INTERFACES: readonly Interface[] = ['keyring-nfs', 'keyring-cifs', 'pipefs'];

/** One line of /proc/<pid>/uid_map or gid_map: ids [inside, inside+count) are host [outside, …). */
export interface IdMapRange {
  readonly inside: number;
  readonly outside: number;
  readonly count: number;
}

export interface UserNsInfo {
  /** inode of /proc/<pid>/ns/user */
  readonly inode: number;
  /** true when this is the initial user namespace (identity map 0 0 4294967295). */
  readonly isInit: boolean;
  readonly uidMap: readonly IdMapRange[];
  readonly gidMap: readonly IdMapRange[];
  /** host uid of the namespace's owner (creator), when known. */
  readonly owner?: number;
}

export interface NetNsInfo {
  readonly inode: number;
  readonly isInit: boolean;
}

export interface ContainerInfo {
  /** full id (docker/containerd/cri-o: 64 hex; nspawn/podman: machine name or id). */
  readonly id: string;
  /** docker | containerd | cri-o | podman | systemd-nspawn | lxc | unknown */
  readonly runtime: string;
}

/** Who asked. Built from /proc/<pid>/… (never trusted from the wire) or from the served namespace. */
export interface Context {
  readonly iface: Interface;
  readonly fs?: 'nfs' | 'cifs';
  /** requesting task, in the init pid namespace; informational (it may be gone). */
  readonly pid?: number;
  /** true when `pid` had exited before its namespaces could be read: only iface/pid (and what the
   *  caller passed) are set. Keyring requests still resolve: their scope never depends on the pid. */
  readonly pidGone?: boolean;
  readonly userns?: UserNsInfo;
  readonly netns?: NetNsInfo;
  /** cgroup v2 path (the `0::` line), e.g. /system.slice/docker-<id>.scope */
  readonly cgroup?: string;
  readonly container?: ContainerInfo;
  /** nfsd: the client's auth domain (e.g. `*` or a client name). */
  readonly authDomain?: string;
  /** pipefs: the rpc_pipefs mount that carried the request. */
  readonly pipefs?: string;
}

/** How an answer came to be. */
export const OUTCOMES_LIST = ['mapped', 'nobody', 'squashed', 'unmappable', 'negative', 'error'] as const;
export type Outcome =
  /** a source mapped it */
  | 'mapped'
  /** nothing mapped it and the scope answers with its nobody user/group */
  | 'nobody'
  /** root (uid/gid 0, root@…) squashed to nobody by `root: squash` */
  | 'squashed'
  /** the id exists but cannot be expressed in the reader's id space: nobody */
  | 'unmappable'
  /** not found, and the scope says answer negatively */
  | 'negative'
  /** a fault (source error, malformed request) */
  | 'error';

export type CacheState = 'fresh' | 'refresh' | 'stale' | 'miss' | 'none';

/** One step of `--explain`: what was tried and what it said. */
export interface ExplainStep {
  readonly step: string;
  readonly detail: string;
}

export interface Answer {
  readonly request: Request;
  readonly outcome: Outcome;
  /** the value to hand to the kernel: id (number), wire name, or SID text. Absent when negative/error. */
  readonly value?: number | string;
  /** the scope that decided; undefined when none matched */
  readonly scope?: string;
  /** the source (provider instance) that answered, when one did */
  readonly source?: string;
  readonly cache: CacheState;
  /** seconds this answer may be kept by the kernel (key timeout, nfsd expiry) */
  readonly ttl: number;
  /** one-line reason for nobody/negative/error, for logs and explain */
  readonly reason?: string;
  /** stable error code when outcome is 'error' */
  readonly code?: string;
  /** only when explain was asked for */
  readonly trail?: readonly ExplainStep[];
}
