/**
 * /proc/<pid>/mountinfo → typed mounts. Pure, no I/O.
 *
 * One line per mount (fs/proc_namespace.c, show_mountinfo; proc(5)):
 *
 *   36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
 *   (1)(2) (3)  (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
 *
 *   1 mount id, 2 parent id, 3 st_dev of the superblock (major:minor), 4 root of the mount within
 *   its filesystem, 5 mount point relative to the reading task's root, 6 per-mount options,
 *   7 zero or more optional fields `tag[:value]`, 8 the separator `-`, 9 filesystem type,
 *   10 source, 11 per-superblock options.
 *
 * Paths, type and source are escaped by the kernel's mangle()/seq_path(): space, tab, newline and
 * backslash become `\ooo` octal (`\040`, `\011`, `\012`, `\134`), so a line always splits on
 * spaces. Anything else after a backslash is kept as it is.
 */

export interface MountInfo {
  readonly mountId: number;
  readonly parentId: number;
  /** `major:minor` of the superblock: the same for every mount (bind) of one filesystem instance */
  readonly dev: string;
  readonly root: string;
  /** relative to the root of the task whose mountinfo this is */
  readonly mountPoint: string;
  readonly options: string;
  readonly optional: readonly string[];
  readonly fstype: string;
  readonly source: string;
  readonly superOptions: string;
}

const OCTAL = /\\([0-3][0-7]{2})/g;
const DEV = /^\d+:\d+$/;
const ID = /^\d+$/;

/**
 * Undo the kernel's `\ooo` escapes. The escaped bytes are single bytes of a possibly multi-byte
 * UTF-8 path (the kernel escapes bytes, not characters), so decode to bytes first, then UTF-8.
 */
export function unescapeMountField(field: string): string {
  if (!field.includes('\\')) return field;
  const bytes: number[] = [];
  let last = 0;
  for (const m of field.matchAll(OCTAL)) {
    bytes.push(...Buffer.from(field.slice(last, m.index), 'utf8'), parseInt(m[1]!, 8));
    last = m.index + m[0].length;
  }
  bytes.push(...Buffer.from(field.slice(last), 'utf8'));
  return Buffer.from(bytes).toString('utf8');
}

/** One mountinfo line; undefined when it does not have the kernel's shape. */
export function parseMountInfoLine(line: string): MountInfo | undefined {
  const f = line.split(' ');
  const sep = f.indexOf('-', 6);
  if (sep < 0 || f.length !== sep + 4) return undefined;
  const [id, parent, dev, root, mountPoint, options] = f;
  if (!ID.test(id ?? '') || !ID.test(parent ?? '') || !DEV.test(dev ?? '')) return undefined;
  if (!root?.startsWith('/') || !mountPoint?.startsWith('/') || !options) return undefined;
  const fstype = f[sep + 1]!;
  if (fstype === '') return undefined;
  return {
    mountId: Number(id),
    parentId: Number(parent),
    dev: dev!,
    root: unescapeMountField(root),
    mountPoint: unescapeMountField(mountPoint),
    options,
    optional: f.slice(6, sep),
    fstype: unescapeMountField(fstype),
    source: unescapeMountField(f[sep + 2]!),
    superOptions: f[sep + 3]!,
  };
}

/** Every well-formed line of a mountinfo file; malformed lines are skipped. */
export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = parseMountInfoLine(line);
    if (m) out.push(m);
  }
  return out;
}

/** Which mounts are rpc_pipefs: by type by default; tests substitute a predicate for a tmpfs. */
export type MountFilter = (m: MountInfo) => boolean;
export const isRpcPipefs: MountFilter = (m) => m.fstype === 'rpc_pipefs';

/**
 * The mounts that pass `filter`, one per superblock: a filesystem bind-mounted twice is served
 * once, at its first mount point in mount order (rpc_pipefs has one superblock per network
 * namespace: net/sunrpc/rpc_pipe.c keys it on the mounter's netns).
 */
export function mountsBySuperblock(mounts: readonly MountInfo[], filter: MountFilter): MountInfo[] {
  const byDev = new Map<string, MountInfo>();
  for (const m of mounts) {
    if (filter(m) && !byDev.has(m.dev)) byDev.set(m.dev, m);
  }
  return [...byDev.values()];
}
