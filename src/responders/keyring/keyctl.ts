/**
 * The kernel key management syscalls (keyctl, add_key, request_key), called through libc's
 * syscall() with koffi so that nothing but libc is needed (no libkeyutils, which may be absent). Numbers and
 * operations: docs/PROTOCOLS.md §1, include/uapi/linux/keyctl.h, man 2 keyctl.
 *
 * Every call is synchronous and runs on the calling thread: keyrings such as the session keyring
 * and the assumed authority belong to the thread's credentials, so all calls of one upcall must
 * come from the same thread (the main thread).
 *
 * Failures throw KeyctlError carrying the errno name (ENOKEY, EKEYREVOKED, EDQUOT, …); "not found"
 * from search() is a return value.
 */
import { endianness } from 'node:os';
import koffi from 'koffi';
import { NsidmapError } from '../../errors.js';

export { findRequesterPid, parseDescribe, parseProcKeysLine } from './keytext.js';
export type { KeyDescription, ProcKeysLine } from './keytext.js';

/** Special keyring ids (KEY_SPEC_*). */
export const KEY_SPEC = {
  THREAD: -1,
  PROCESS: -2,
  SESSION: -3,
  USER: -4,
  USER_SESSION: -5,
  GROUP: -6,
  REQKEY_AUTH: -7,
  REQUESTOR: -8,
} as const;

/** keyctl(2) operations used here (include/uapi/linux/keyctl.h). */
const OP = {
  GET_KEYRING_ID: 0,
  JOIN_SESSION_KEYRING: 1,
  REVOKE: 3,
  DESCRIBE: 6,
  CLEAR: 7,
  LINK: 8,
  UNLINK: 9,
  SEARCH: 10,
  READ: 11,
  INSTANTIATE: 12,
  NEGATE: 13,
  SET_TIMEOUT: 15,
  ASSUME_AUTHORITY: 16,
  REJECT: 19,
  INVALIDATE: 21,
} as const;

/** Syscall numbers per architecture (arch/x86/entry/syscalls/syscall_64.tbl, asm-generic/unistd.h). */
const SYSCALLS: Partial<Record<NodeJS.Architecture, { keyctl: number; add_key: number; request_key: number }>> = {
  x64: { keyctl: 250, add_key: 248, request_key: 249 },
  arm64: { keyctl: 219, add_key: 217, request_key: 218 },
};

/** A failed key syscall: `errnoName` is what scripts and callers branch on. */
export class KeyctlError extends NsidmapError {
  readonly errno: number;
  readonly errnoName: string;
  readonly op: string;
  constructor(op: string, errno: number, detail = '') {
    const name = errnoName(errno);
    super('NSIDMAP_EKEYRING', `${op}${detail ? ` ${detail}` : ''}: ${name}${ERRNO_TEXT[name] ? ` (${ERRNO_TEXT[name]})` : ''}`);
    this.name = 'KeyctlError';
    this.errno = errno;
    this.errnoName = name;
    this.op = op;
  }
}

/** Plain words for the errors the key syscalls return (man 2 keyctl). */
const ERRNO_TEXT: Record<string, string> = {
  ENOKEY: 'no such key, or a negative key',
  EKEYEXPIRED: 'key has expired',
  EKEYREVOKED: 'key has been revoked',
  EKEYREJECTED: 'key was rejected',
  EDQUOT: 'key quota of the user exceeded',
  EACCES: 'permission denied on the key',
  EPERM: 'operation not permitted (no authority to instantiate?)',
  ENOTDIR: 'not a keyring',
  EINVAL: 'invalid argument',
  ENOMEM: 'out of memory',
  ENFILE: 'too many keys',
  ENOSYS: 'key management is not available',
  EOPNOTSUPP: 'operation not supported by this key type',
};

const LITTLE_ENDIAN = endianness() === 'LE';

let errnoNames: Map<number, string> | undefined;

/** errno number → name, from koffi's table; EOPNOTSUPP wins over its alias ENOTSUP. */
export function errnoName(errno: number): string {
  if (!errnoNames) {
    errnoNames = new Map();
    for (const [name, n] of Object.entries(koffi.os.errno)) if (!errnoNames.has(n)) errnoNames.set(n, name);
    const eop = koffi.os.errno['EOPNOTSUPP'];
    if (eop !== undefined) errnoNames.set(eop, 'EOPNOTSUPP');
  }
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** errno name → number, for reject(). */
export function errnoNumber(name: string): number | undefined {
  return koffi.os.errno[name];
}

type Syscall = (nr: number, ...typedArgs: unknown[]) => number | bigint;

interface Binding {
  readonly call: Syscall;
  readonly nr: { keyctl: number; add_key: number; request_key: number };
}

let binding: Binding | undefined;

/**
 * Bind syscall() on first use. It is looked up in the symbols node itself already loaded
 * (dlopen(NULL)), which finds the libc in use whether glibc or musl.
 */
function bind(): Binding {
  if (binding) return binding;
  const nr = process.platform === 'linux' ? SYSCALLS[process.arch] : undefined;
  if (!nr) throw new KeyctlError(`keyctl on ${process.platform}/${process.arch}`, errnoNumber('ENOSYS') ?? 38);
  const libc = koffi.load(null);
  binding = { call: libc.func('long syscall(long number, ...)') as Syscall, nr };
  return binding;
}

type Arg = number | string | Buffer | null;

/** Each variadic argument with its C type: integers widened to long, as syscall() reads them. */
function typed(args: readonly Arg[]): unknown[] {
  const out: unknown[] = [];
  for (const a of args) {
    if (typeof a === 'number') out.push('long', a);
    else if (typeof a === 'string') out.push('str', a);
    else out.push('void *', a);
  }
  return out;
}

/** One raw syscall; a negative result becomes a KeyctlError naming `what`. */
function sys(nr: number, what: string, args: readonly Arg[]): number {
  for (const a of args) {
    // The kernel reads C strings: an embedded NUL would silently cut the string short.
    if (typeof a === 'string' && a.includes('\0')) throw new KeyctlError(what, errnoNumber('EINVAL') ?? 22, '(NUL in a string)');
  }
  const b = bind();
  const r = Number(b.call(nr, ...typed(args)));
  if (r < 0) throw new KeyctlError(what, koffi.errno());
  return r;
}

function keyctl(op: number, what: string, ...args: Arg[]): number {
  return sys(bind().nr.keyctl, what, [op, ...args]);
}

/** Instantiate a key under construction with `payload` (needs the assumed authority). */
export function instantiate(serial: number, payload: Buffer, destRing = 0): void {
  keyctl(OP.INSTANTIATE, `instantiate(${serial})`, serial, payload.length ? payload : null, payload.length, destRing);
}

/** Instantiate negatively: lookups fail with ENOKEY until the key expires after `timeoutSec`. */
export function negate(serial: number, timeoutSec: number, destRing = 0): void {
  keyctl(OP.NEGATE, `negate(${serial})`, serial, timeoutSec, destRing);
}

/** Instantiate negatively with a chosen error (name or number) that lookups then return. */
export function reject(serial: number, timeoutSec: number, errno: number | string, destRing = 0): void {
  const n = typeof errno === 'number' ? errno : errnoNumber(errno);
  if (n === undefined) throw new KeyctlError(`reject(${serial})`, errnoNumber('EINVAL') ?? 22, `(unknown errno ${errno})`);
  keyctl(OP.REJECT, `reject(${serial})`, serial, timeoutSec, n, destRing);
}

/** Expire the key `sec` seconds from now (0: never). Allowed before instantiation while authorised. */
export function setTimeout(serial: number, sec: number): void {
  keyctl(OP.SET_TIMEOUT, `set_timeout(${serial})`, serial, sec);
}

/** Assume the authority to instantiate `serial` (0 drops it); returns the auth key's serial. */
export function assumeAuthority(serial: number): number {
  return keyctl(OP.ASSUME_AUTHORITY, `assume_authority(${serial})`, serial);
}

/**
 * Call an operation that fills a buffer and returns the full size, growing the buffer until the
 * whole result fits (the size can change between two calls: a keyring gains a link).
 */
function readInto(op: number, what: string, serial: number, initial: number): Buffer {
  let buf = Buffer.alloc(initial);
  for (;;) {
    const n = keyctl(op, what, serial, buf, buf.length);
    if (n <= buf.length) return buf.subarray(0, n);
    buf = Buffer.alloc(n);
  }
}

/** KEYCTL_DESCRIBE text, `type;uid;gid;perm;description`, without the trailing NUL. */
export function describe(serial: number): string {
  return describeBytes(serial).toString('utf8');
}

/**
 * KEYCTL_DESCRIBE as the kernel's bytes, without the trailing NUL: a key description need not be
 * UTF-8, and decoding it with replacement characters could make two descriptions look alike.
 */
export function describeBytes(serial: number): Buffer {
  const buf = readInto(OP.DESCRIBE, `describe(${serial})`, serial, 256);
  return buf.length > 0 && buf[buf.length - 1] === 0 ? buf.subarray(0, -1) : buf;
}

/** The payload of a key (for a keyring: its links as native-endian 32-bit serials). */
export function read(serial: number): Buffer {
  return readInto(OP.READ, `read(${serial})`, serial, 512);
}

/** The serials linked in a keyring (KEYCTL_READ on a keyring gives key_serial_t in host order). */
export function listKeyring(ringId: number): number[] {
  const buf = read(ringId);
  const out: number[] = [];
  for (let i = 0; i + 4 <= buf.length; i += 4) out.push(LITTLE_ENDIAN ? buf.readInt32LE(i) : buf.readInt32BE(i));
  return out;
}

/**
 * Errors of KEYCTL_SEARCH that mean "no live key matches". Besides ENOKEY (none, or a negative
 * key), a match that was revoked, invalidated or has expired is reported as EKEYREVOKED or
 * EKEYEXPIRED until the garbage collector unlinks it (security/keys/keyring.c, search iterator).
 */
const SEARCH_NOT_FOUND = new Set(['ENOKEY', 'EKEYREVOKED', 'EKEYEXPIRED']);

/** Search a keyring tree for a live key; undefined when there is none. */
export function search(ringId: number, type: string, description: string, destRing = 0): number | undefined {
  try {
    return keyctl(OP.SEARCH, `search(${ringId}, ${type})`, ringId, type, description, destRing);
  } catch (e) {
    if (e instanceof KeyctlError && SEARCH_NOT_FOUND.has(e.errnoName)) return undefined;
    throw e;
  }
}

/** Unlink every key from a keyring. */
export function clear(ringId: number): void {
  keyctl(OP.CLEAR, `clear(${ringId})`, ringId);
}

export function revoke(serial: number): void {
  keyctl(OP.REVOKE, `revoke(${serial})`, serial);
}

/** Invalidate: the key disappears at once for every user (nfsidmap -u/-g/-r). */
export function invalidate(serial: number): void {
  keyctl(OP.INVALIDATE, `invalidate(${serial})`, serial);
}

export function link(serial: number, ringId: number): void {
  keyctl(OP.LINK, `link(${serial}, ${ringId})`, serial, ringId);
}

export function unlink(serial: number, ringId: number): void {
  keyctl(OP.UNLINK, `unlink(${serial}, ${ringId})`, serial, ringId);
}

/** The real serial of a special keyring (KEY_SPEC_*), optionally creating it. */
export function getKeyringId(special: number, create = false): number {
  return keyctl(OP.GET_KEYRING_ID, `get_keyring_id(${special})`, special, create ? 1 : 0);
}

/** Join (or create) a named session keyring; anonymous when `name` is undefined. */
export function joinSessionKeyring(name?: string): number {
  return keyctl(OP.JOIN_SESSION_KEYRING, `join_session_keyring(${name ?? ''})`, name ?? null);
}

/** add_key(2): create or update a key and link it into `ringId`. */
export function addKey(type: string, description: string, payload: Buffer | null, ringId: number): number {
  const p = payload?.length ? payload : null;
  return sys(bind().nr.add_key, `add_key(${type})`, [type, description, p, payload?.length ?? 0, ringId]);
}

/**
 * request_key(2): find a key or have /sbin/request-key construct it. With `callout` undefined the
 * kernel only searches. Blocks the thread while the helper runs.
 */
export function requestKey(type: string, description: string, callout?: string, destRing = 0): number {
  return sys(bind().nr.request_key, `request_key(${type})`, [type, description, callout ?? null, destRing]);
}
