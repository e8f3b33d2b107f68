/**
 * Kernel uevents as NETLINK_KOBJECT_UEVENT delivers them. Pure: bytes in, a typed event or a
 * reason out.
 *
 * One datagram per event (lib/kobject_uevent.c, alloc_uevent_skb): the header
 * `ACTION@DEVPATH\0`, then the environment, each `KEY=VALUE\0`:
 *
 *   add@/fs/nfs/net/nfs_client\0ACTION=add\0DEVPATH=/fs/nfs/net/nfs_client\0SUBSYSTEM=nfs\0SEQNUM=4711\0
 *
 * The environment is at most UEVENT_BUFFER_SIZE (2048) bytes and 64 variables
 * (UEVENT_NUM_ENVP, include/linux/kobject.h). udev's re-broadcasts (group 2) start with
 * `libudev\0` and a binary header instead; they are refused here, and the listener joins only the
 * kernel's group anyway.
 */

/** Header + environment: the kernel never sends more; anything longer is not from it. */
export const UEVENT_MAX = 8192;
const MAX_VARS = 64;

export interface Uevent {
  readonly action: string;
  readonly devpath: string;
  readonly env: ReadonlyMap<string, string>;
}

export type UeventParse = { readonly ok: true; readonly event: Uevent } | { readonly ok: false; readonly reason: string };

const ACTION = /^[a-z]+$/;
const KEY = /^[A-Z0-9_]+$/;

const fail = (reason: string): UeventParse => ({ ok: false, reason });

/** The NUL-separated fields; a final NUL is optional (the kernel sends one). */
function fields(bytes: Uint8Array): string[] {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  const parts = text.split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts;
}

function parseHeader(header: string): { action: string; devpath: string } | string {
  const at = header.indexOf('@');
  if (at < 0) return 'header has no "@"';
  const action = header.slice(0, at);
  const devpath = header.slice(at + 1);
  if (!ACTION.test(action)) return `action ${JSON.stringify(action)} is not a lower-case word`;
  if (!devpath.startsWith('/')) return `devpath ${JSON.stringify(devpath)} is not absolute`;
  return { action, devpath };
}

function parseEnv(vars: readonly string[]): Map<string, string> | string {
  if (vars.length > MAX_VARS) return `${vars.length} variables, more than the kernel's ${MAX_VARS}`;
  const env = new Map<string, string>();
  for (const v of vars) {
    const eq = v.indexOf('=');
    const key = eq < 0 ? v : v.slice(0, eq);
    if (eq < 0 || !KEY.test(key)) return `variable ${JSON.stringify(v.slice(0, 40))} is not KEY=VALUE`;
    if (env.has(key)) return `variable ${key} appears twice`;
    env.set(key, v.slice(eq + 1));
  }
  return env;
}

export function parseUevent(bytes: Uint8Array): UeventParse {
  if (bytes.byteLength === 0) return fail('empty message');
  if (bytes.byteLength > UEVENT_MAX) return fail(`${bytes.byteLength} bytes, more than a uevent can be (${UEVENT_MAX})`);
  const [header, ...vars] = fields(bytes);
  if (header === undefined || header === '') return fail('no header');
  if (header === 'libudev') return fail('a udev re-broadcast, not the kernel\'s message');
  const head = parseHeader(header);
  if (typeof head === 'string') return fail(head);
  const env = parseEnv(vars);
  if (typeof env === 'string') return fail(env);
  // The kernel writes both from the same values; a mismatch is not its message.
  if (env.has('ACTION') && env.get('ACTION') !== head.action) return fail('ACTION differs from the header');
  if (env.has('DEVPATH') && env.get('DEVPATH') !== head.devpath) return fail('DEVPATH differs from the header');
  return { ok: true, event: { action: head.action, devpath: head.devpath, env } };
}

/**
 * The NFS client's per-namespace object appearing (fs/nfs/sysfs.c, nfs_netns_sysfs_setup:
 * kobject `nfs_client` under the `nfs` kset's `net`, KOBJ_ADD): time to set the identifier.
 */
export function isNfsClientAdd(e: Uevent): boolean {
  return e.action === 'add' && e.env.get('SUBSYSTEM') === 'nfs' && e.devpath.endsWith('/nfs_client');
}

/**
 * A network device added to, removed from or moved between namespaces: what a container runtime
 * does when it wires a new namespace (a veth end leaves the host's). Worth a rescan.
 */
export function isNetDeviceChange(e: Uevent): boolean {
  return e.env.get('SUBSYSTEM') === 'net' && (e.action === 'add' || e.action === 'remove' || e.action === 'move');
}

/** Builds a uevent datagram, as the kernel lays it out (tests). */
export function encodeUevent(action: string, devpath: string, env: Readonly<Record<string, string>>): Buffer {
  const parts = [`${action}@${devpath}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
  return Buffer.from(parts.map((p) => `${p}\0`).join(''), 'utf8');
}
