/**
 * Puts an NFSv4 client identifier into a network namespace's
 * /sys/fs/nfs/net/nfs_client/identifier (PROTOCOLS.md §6).
 *
 * Which namespace a sysfs file belongs to is not decided by who writes it but by the sysfs mount
 * it is reached through: a sysfs superblock is tagged with the network namespace of the task that
 * mounted it (fs/sysfs/mount.c, sysfs_init_fs_context → kobj_ns_grab_current), and the
 * namespaced `nfs_client` directory it shows is that namespace's. The host's /sys always shows the
 * host's; a container's own /sys is usually read-only. So the write is done the way `ip netns exec`
 * does it: in a short-lived helper process that enters the namespace (nsenter --net), takes a
 * private mount namespace (unshare --mount), mounts a fresh sysfs over /sys and writes there.
 *
 * A helper process, not setns(2) on one of our own threads: entering a mount namespace needs a
 * single-threaded caller, and a libuv pool thread left in another namespace would run unrelated
 * file I/O there. The helper costs a few milliseconds, once per namespace that appears.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { UNSET } from './clientid.js';

/**
 * - written: it held nothing (or, forced, something else) and now holds ours
 * - unchanged: it already held ours
 * - foreign: it holds another value that someone else set; left alone (replacing an identifier in
 *   use makes the server see a new client and drop the old one's state)
 * - no-nfs: this kernel has no NFS client (the nfs module is not loaded): nothing to set yet
 * - no-client: the NFS client has no `nfs_client` object in that namespace
 */
export type ApplyState = 'written' | 'unchanged' | 'foreign' | 'no-nfs' | 'no-client';

export interface ApplyResult {
  readonly state: ApplyState;
  /** what the kernel held before (undefined when unset or not reached) */
  readonly previous?: string;
}

/** auto: write only where nothing is set; force: replace whatever is there (an admin's `set`). */
export type ApplyMode = 'auto' | 'force';

export interface ClientIdWriter {
  /** `nsPath`: a file that enters the namespace (/proc/<pid>/ns/net, /run/netns/<name>) */
  apply(nsPath: string, identifier: string, mode: ApplyMode): Promise<ApplyResult>;
}

export interface SysfsWriterOptions {
  /** the sysfs tree (default /sys); tests point it at a fake tree */
  readonly sysfs?: string;
  /** enter the namespace in a helper process (default true); false: use `sysfs` as it is, here */
  readonly enter?: boolean;
  /** with `enter`: mount a fresh sysfs at `sysfs` inside the namespace (default true) */
  readonly mountSysfs?: boolean;
  /** answer no-nfs without a helper when our own sysfs has no fs/nfs (default true) */
  readonly precheck?: boolean;
  readonly timeoutMs?: number;
}

export const NO_NFS_MESSAGE = 'no NFS client in this kernel (the nfs module is not loaded): nothing to set until it is';

const IDENTIFIER_FILE = 'fs/nfs/net/nfs_client/identifier';

/** Helper exit statuses (the script below). */
const EXIT = { noNfs: 10, noClient: 11, foreign: 12 } as const;

/**
 * Runs inside the namespace. Arguments: sysfs root, mount (1/0), mode (auto/force), identifier —
 * passed as arguments, never spliced into the script. Prints the value it found, then writes.
 */
const SCRIPT = `
root=$1 mount=$2 mode=$3 id=$4
# Off with the old mount first (only in this private mount namespace): where it already is this
# namespace's sysfs (the daemon's own, e.g. the host's), the kernel refuses the same superblock on
# the same mount point with EBUSY (fs/namespace.c, do_add_mount).
if [ "$mount" = 1 ]; then umount -l "$root" 2>/dev/null; mount -t sysfs -o nosuid,nodev,noexec sysfs "$root" || exit 13; fi
[ -d "$root/fs/nfs" ] || exit ${EXIT.noNfs}
f="$root/${IDENTIFIER_FILE}"
[ -f "$f" ] || exit ${EXIT.noClient}
cur=$(cat "$f") || exit 14
printf '%s\\n' "$cur"
[ "$cur" = "$id" ] && exit 0
if [ "$mode" = auto ] && [ -n "$cur" ] && [ "$cur" != '${UNSET}' ]; then exit ${EXIT.foreign}; fi
printf '%s' "$id" > "$f" || exit 15
`;

function isUnset(v: string): boolean {
  return v === '' || v === UNSET;
}

/** The decision the script makes, from what it printed and how it exited. */
function resultOf(code: number, current: string | undefined, identifier: string): ApplyResult {
  const previous = current === undefined || isUnset(current) ? undefined : current;
  if (code === EXIT.noNfs) return { state: 'no-nfs' };
  if (code === EXIT.noClient) return { state: 'no-client' };
  if (code === EXIT.foreign) return { state: 'foreign', ...(previous !== undefined && { previous }) };
  if (current === identifier) return { state: 'unchanged', previous: identifier };
  return { state: 'written', ...(previous !== undefined && { previous }) };
}

export class SysfsClientIdWriter implements ClientIdWriter {
  readonly #sysfs: string;
  readonly #enter: boolean;
  readonly #mount: boolean;
  readonly #precheck: boolean;
  readonly #timeoutMs: number;

  constructor(opts: SysfsWriterOptions = {}) {
    this.#sysfs = opts.sysfs ?? '/sys';
    this.#enter = opts.enter ?? true;
    this.#mount = opts.mountSysfs ?? true;
    this.#precheck = opts.precheck ?? true;
    this.#timeoutMs = opts.timeoutMs ?? 5000;
  }

  async apply(nsPath: string, identifier: string, mode: ApplyMode): Promise<ApplyResult> {
    // /sys/fs/nfs is the module's kset, not namespaced: if our sysfs lacks it, every namespace's does.
    if (this.#precheck && !existsSync(`${this.#sysfs}/fs/nfs`)) return { state: 'no-nfs' };
    return this.#enter ? this.#helper(nsPath, identifier, mode) : this.#direct(identifier, mode);
  }

  /** The same steps as the script, on `sysfs` as it is (a fake tree in tests). */
  #direct(identifier: string, mode: ApplyMode): ApplyResult {
    if (!existsSync(`${this.#sysfs}/fs/nfs`)) return { state: 'no-nfs' };
    const file = `${this.#sysfs}/${IDENTIFIER_FILE}`;
    if (!existsSync(file)) return { state: 'no-client' };
    const current = readFileSync(file, 'utf8').replace(/\n+$/, '');
    if (current !== identifier && mode === 'auto' && !isUnset(current)) return resultOf(EXIT.foreign, current, identifier);
    if (current !== identifier) writeFileSync(file, identifier);
    return resultOf(0, current, identifier);
  }

  #helper(nsPath: string, identifier: string, mode: ApplyMode): Promise<ApplyResult> {
    const args = [
      `--net=${nsPath}`, '--', 'unshare', '--mount', '--propagation', 'private', '--',
      'sh', '-c', SCRIPT, 'nsidmap-clientid', this.#sysfs, this.#mount ? '1' : '0', mode, identifier,
    ];
    return new Promise((resolve, reject) => {
      execFile('nsenter', args, { timeout: this.#timeoutMs, maxBuffer: 64 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
        const current = stdout === '' ? undefined : stdout.replace(/\n$/, '');
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : undefined;
        if (code === 0 || code === EXIT.noNfs || code === EXIT.noClient || code === EXIT.foreign) {
          resolve(resultOf(code, current, identifier));
          return;
        }
        const why = (stderr.trim().split('\n').pop() ?? '') || (err?.code === 'ENOENT' ? 'nsenter not found: install util-linux' : err?.message ?? 'failed');
        reject(new Error(`cannot set the NFSv4 client identifier through ${nsPath}: ${why}`));
      });
    });
  }
}
