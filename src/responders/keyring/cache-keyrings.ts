/**
 * The kernel's host-wide caches of upcall answers: the keyrings `.id_resolver` (NFS,
 * fs/nfs/nfs4idmap.c nfs_idmap_init_keyring) and `.cifs_idmap` (SMB, fs/smb/client/cifsacl.c
 * init_cifs_idmap). What `idmapctl keys` lists, clears and invalidates (nfsidmap -l/-c/-u/-g/-r).
 *
 * The kernel creates these keyrings with no name a process can look up (they hang off a kernel
 * credential's thread keyring), so they are found by name in /proc/keys, as nfsidmap does. They
 * exist only once the nfs or cifs module has been loaded.
 *
 * Access as root without possessing them: the keyrings grant USR_VIEW|USR_READ (their links can
 * be listed), CLEAR works through KEY_FLAG_ROOT_CAN_CLEAR, INVALIDATE on their keys through
 * KEY_FLAG_ROOT_CAN_INVAL; the keys' payloads need POS_READ, so reading a value may fail (EACCES).
 */
import { readFileSync } from 'node:fs';
import { NsidmapError } from '../../errors.js';
import { decodePayload, type KeyType } from './codec.js';
import * as keyctl from './keyctl.js';
import { KeyctlError } from './keyctl.js';
import { parseDescribe, parseProcKeysLine, type ProcKeysLine } from './keytext.js';

export const PROTOCOLS = ['nfs', 'cifs'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** One cache keyring: its kernel name and the key type whose answers it holds. */
export interface CacheKeyring {
  readonly protocol: Protocol;
  readonly name: string;
  readonly keyType: KeyType;
}

const DEFAULT_NAMES: Record<Protocol, string> = { nfs: '.id_resolver', cifs: '.cifs_idmap' };
const KEY_TYPE: Record<Protocol, KeyType> = { nfs: 'id_resolver', cifs: 'cifs.idmap' };

/**
 * Environment variable that renames the keyrings, `nfs=NAME,cifs=NAME` (either part optional).
 * For tests only: they cannot make a keyring called `.id_resolver` (a leading dot is reserved to
 * the kernel), so they make one of their own in a private session keyring and point here at it.
 */
export const KEYRING_NAMES_ENV = 'NSIDMAP_KEYRING_NAMES';

/** The cache keyrings, with names overridden by NSIDMAP_KEYRING_NAMES when it is set. */
export function cacheKeyrings(env: NodeJS.ProcessEnv = process.env): Record<Protocol, CacheKeyring> {
  const names = { ...DEFAULT_NAMES };
  const spec = env[KEYRING_NAMES_ENV];
  for (const part of spec ? spec.split(',') : []) {
    const eq = part.indexOf('=');
    const proto = part.slice(0, eq).trim();
    const name = part.slice(eq + 1).trim();
    if (eq < 0 || !(PROTOCOLS as readonly string[]).includes(proto) || name === '') {
      throw new NsidmapError('NSIDMAP_EUSAGE', `${KEYRING_NAMES_ENV}: "${part}" is not nfs=NAME or cifs=NAME`);
    }
    names[proto as Protocol] = name;
  }
  return {
    nfs: { protocol: 'nfs', name: names.nfs, keyType: KEY_TYPE.nfs },
    cifs: { protocol: 'cifs', name: names.cifs, keyType: KEY_TYPE.cifs },
  };
}

/** /proc/keys parsed; every key the caller may view, by serial. */
export function readProcKeys(path = '/proc/keys'): Map<number, ProcKeysLine> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new NsidmapError('NSIDMAP_EKEYRING', `cannot read ${path}: ${(e as Error).message} (is the kernel built with CONFIG_KEYS and CONFIG_PROC_FS?)`);
  }
  const keys = new Map<number, ProcKeysLine>();
  for (const line of text.split('\n')) {
    const k = parseProcKeysLine(line);
    if (k) keys.set(k.serial, k);
  }
  return keys;
}

/** /proc/keys flags of a key on its way out: revoked (R), dead (D), invalidated (i). */
const GOING = /[RDi]/;

/**
 * The serial of the live keyring called `name`, or undefined. A keyring's /proc/keys text is its
 * description then `: <number of links>` or `: empty` (security/keys/keyring.c keyring_describe).
 */
export function findKeyring(procKeys: ReadonlyMap<number, ProcKeysLine>, name: string, confirm: (serial: number, name: string) => boolean = isRootKeyring): number | undefined {
  for (const k of procKeys.values()) {
    if (k.type !== 'keyring' || !k.flags.startsWith('I') || GOING.test(k.flags)) continue;
    if ((k.summary === name || k.summary.startsWith(`${name}: `)) && confirm(k.serial, name)) return k.serial;
  }
  return undefined;
}

/**
 * The kernel's own description of `serial` says: a keyring of root's, called exactly `name`. A
 * /proc/keys line can be forged — a key description holding a newline and a whole fake line, in
 * a key whose owner let others view it — and the cache keyrings are the kernel's, owned by root.
 */
export function isRootKeyring(serial: number, name: string): boolean {
  try {
    const d = parseDescribe(keyctl.describe(serial));
    return d !== undefined && d.type === 'keyring' && d.uid === 0 && d.description === name;
  } catch {
    return false;
  }
}

/** One key of a cache keyring, as `idmapctl keys list --json` shows it. */
export interface CachedKey {
  readonly serial: number;
  /** the key's type: id_resolver or cifs.idmap (`user` in tests) */
  readonly type: string;
  readonly description: string;
  /** the lookup the description asks for, when it decodes */
  readonly kind?: string;
  /** the decoded answer (id, wire name or SID); null when negative, unreadable or malformed */
  readonly value: number | string | null;
  /** the raw payload in hex, when readable */
  readonly payload?: string;
  /** the time left as /proc/keys prints it (`9m`, `59s`, `perm`, `expd`), when viewable */
  readonly expires?: string;
  /** a negative (or rejected) key: the kernel answers "not found" until it expires */
  readonly negative: boolean;
  /** why `value` is null */
  readonly error?: string;
}

function errnoOf(e: unknown): string {
  if (e instanceof KeyctlError) return e.errnoName;
  throw e;
}

/** A key that is gone by the time it is described (unlinked, garbage-collected): skipped. */
const GONE = new Set(['ENOKEY', 'EKEYREVOKED', 'EKEYEXPIRED']);

/** Describe one linked key; undefined when it vanished between reading the keyring and now. */
function describeKey(serial: number): { type: string; description: string } | undefined {
  let text: string;
  try {
    text = keyctl.describe(serial);
  } catch (e) {
    if (GONE.has(errnoOf(e))) return undefined;
    throw e;
  }
  const d = parseDescribe(text);
  return d ? { type: d.type, description: d.description } : undefined;
}

/** The keys linked in a keyring, described (nfsidmap -l); `withValues` also reads and decodes payloads. */
export function listCachedKeys(ring: CacheKeyring, ringSerial: number, procKeys: ReadonlyMap<number, ProcKeysLine>, withValues: boolean): CachedKey[] {
  const out: CachedKey[] = [];
  for (const serial of keyctl.listKeyring(ringSerial)) {
    const proc = procKeys.get(serial);
    // Invalidated, revoked or dead keys answer nothing (request_key skips them) and the garbage
    // collector unlinks them shortly: not cached answers any more.
    if (proc && GOING.test(proc.flags)) continue;
    const d = describeKey(serial);
    if (!d) continue;
    const negative = proc?.flags[5] === 'N';
    const base = { serial, type: d.type, description: d.description, negative, ...(proc ? { expires: proc.expiry } : {}) };
    out.push(withValues ? { ...base, ...readValue(ring, d.description, serial) } : { ...base, value: null });
  }
  return out;
}

function readValue(ring: CacheKeyring, description: string, serial: number): Pick<CachedKey, 'kind' | 'value' | 'payload' | 'error'> {
  let bytes: Buffer;
  try {
    bytes = keyctl.read(serial);
  } catch (e) {
    // ENOKEY: a negative key; EACCES: root does not possess the kernel's key; EKEYREVOKED: revoked
    return { value: null, error: errnoOf(e) };
  }
  const r = decodePayload(ring.keyType, description, bytes);
  const payload = bytes.toString('hex');
  return r.ok ? { kind: r.request.kind, value: r.value, payload } : { value: null, payload, error: r.reason };
}

/** What invalidating one key did. */
export type Removal = 'invalidated' | 'revoked';

/**
 * Make one key disappear for every user: KEYCTL_INVALIDATE (Linux ≥ 3.5); where the kernel or
 * key type does not offer it (EOPNOTSUPP, EINVAL), KEYCTL_REVOKE — as nfsidmap -r does.
 */
export function removeKey(serial: number): Removal {
  try {
    keyctl.invalidate(serial);
    return 'invalidated';
  } catch (e) {
    const errno = errnoOf(e);
    if (errno !== 'EOPNOTSUPP' && errno !== 'EINVAL') throw e;
  }
  keyctl.revoke(serial);
  return 'revoked';
}
