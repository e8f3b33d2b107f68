/**
 * Keyring upcall codec: key descriptions in, typed requests out; answers in, instantiate payloads
 * out. Pure: no I/O, nothing thrown for hostile input (decoders return a reason instead).
 *
 * Framing (docs/PROTOCOLS.md §2, §5):
 *
 *   id_resolver  uid:<name>  gid:<name>   → payload "<decimal id>\0"        (fs/nfs/nfs4idmap.c)
 *                user:<uid>  group:<gid>  → payload "<wire name>", no NUL, ≤ 128 bytes
 *   cifs.idmap   os:<SID>    gs:<SID>     → payload u32, native endian, 4 bytes (cifsacl.c)
 *                oi:<uid>    gi:<gid>     → payload struct cifs_sid, 68 bytes
 *
 * The value of a description is everything after the FIRST colon: names may contain colons.
 */
import { endianness } from 'node:os';
import { NsidmapError } from '../../errors.js';
import { CIFS_SID_SIZE, decodeSidBinary, encodeSidBinary, formatSid, parseSidParts } from '../../sid.js';
import { ID_MAX, answerTypeOf, isValidId } from '../../types.js';
import type { AnswerType, LookupKind, Request, Sid } from '../../types.js';

export const KEY_TYPES = ['id_resolver', 'cifs.idmap'] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/**
 * Longest name an id_resolver answer may carry: the kernel copies the payload into a buffer of
 * IDMAP_NAMESZ bytes and refuses a longer one (nfs_idmap_get_key, include/uapi/linux/nfs_idmap.h).
 */
export const IDMAP_NAMESZ = 128;
/**
 * Longest name an id_resolver description may carry. Not IDMAP_NAMESZ: the client asks about the
 * owner string the server sent, which fs/nfs/nfs4xdr.c (decode_attr_owner/_group) passes on when
 * it is shorter than XDR_MAX_NETOBJ (1024). Anything longer is not from the kernel.
 */
export const DESCRIPTION_NAME_MAX = 1023;
/** "4294967294" plus NUL: the kernel's id_str[NFS_UINT_MAXLEN] (fs/nfs/nfs4idmap.c). */
export const ID_PAYLOAD_MAX = 11;
/** sizeof(uid_t): fs/smb/client/cifsacl.c sid_to_id() invalidates a key of any other size. */
export const CIFS_ID_SIZE = 4;
/** revision, num_subauth, authority[6]: the smallest SID cifsacl.c id_to_sid() accepts. */
export const CIFS_SID_BASE_SIZE = 8;

export type DecodeResult = { ok: true; request: Request } | { ok: false; reason: string };
export type PayloadResult =
  | { ok: true; request: Request; value: number | string }
  | { ok: false; reason: string };

/**
 * One description prefix: the key type that uses it, the lookup it asks for, and the form of the
 * value after it (a wire name, a decimal id, or SID text).
 */
type Prefix = { readonly keyType: KeyType; readonly prefix: string } & (
  | { readonly form: 'name'; readonly kind: Extract<Request, { name: string }>['kind'] }
  | { readonly form: 'id'; readonly kind: Extract<Request, { id: number }>['kind'] }
  | { readonly form: 'sid'; readonly kind: Extract<Request, { sid: Sid }>['kind'] }
);

/** Every prefix the kernel sends; nfs4idmap.c and cifsacl.c have no others. */
const PREFIXES: readonly Prefix[] = [
  { keyType: 'id_resolver', prefix: 'uid', kind: 'name-to-uid', form: 'name' },
  { keyType: 'id_resolver', prefix: 'gid', kind: 'name-to-gid', form: 'name' },
  { keyType: 'id_resolver', prefix: 'user', kind: 'uid-to-name', form: 'id' },
  { keyType: 'id_resolver', prefix: 'group', kind: 'gid-to-name', form: 'id' },
  { keyType: 'cifs.idmap', prefix: 'os', kind: 'sid-to-uid', form: 'sid' },
  { keyType: 'cifs.idmap', prefix: 'gs', kind: 'sid-to-gid', form: 'sid' },
  { keyType: 'cifs.idmap', prefix: 'oi', kind: 'uid-to-sid', form: 'id' },
  { keyType: 'cifs.idmap', prefix: 'gi', kind: 'gid-to-sid', form: 'id' },
];

/** C0 controls (NUL included), DEL and C1 controls: never part of a name worth answering. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** A lone surrogate, or U+FFFD from a decoder that met bytes that were not UTF-8. */
const NOT_UTF8 = /[\p{Cs}\uFFFD]/u;
/** Strict decimal as the kernel prints a u32 with %u: no sign, no blanks, no leading zeros. */
const DECIMAL = /^(0|[1-9][0-9]{0,9})$/;
const NATIVE_ENDIAN = endianness();

/**
 * Quote untrusted text for a reason string: JSON-escaped and cut at 48 escaped characters, so a
 * log line stays short whatever the input (an escape is never cut in half).
 */
function quote(s: string): string {
  let out = '';
  for (const ch of s) {
    const escaped = JSON.stringify(ch).slice(1, -1);
    if (out.length + escaped.length > 48) return `"${out}…"`;
    out += escaped;
  }
  return `"${out}"`;
}

function isKeyType(t: string): t is KeyType {
  return (KEY_TYPES as readonly string[]).includes(t);
}

function findPrefix(keyType: KeyType, prefix: string): Prefix | undefined {
  return PREFIXES.find((p) => p.keyType === keyType && p.prefix === prefix);
}

function prefixOfKind(kind: LookupKind): Prefix {
  const p = PREFIXES.find((e) => e.kind === kind);
  if (!p) throw new NsidmapError('NSIDMAP_EINTERNAL', `no key description prefix for ${kind}`);
  return p;
}

/** The key type whose upcalls carry this lookup. */
export function keyTypeOf(kind: LookupKind): KeyType {
  return prefixOfKind(kind).keyType;
}

/** Why a name cannot be used, or undefined when it can. `max` is in UTF-8 bytes. */
function nameProblem(name: string, max: number): string | undefined {
  if (name.length === 0) return 'empty name';
  // Length first: it bounds the work of the scans below for hostile megabyte-long input.
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > max) return `name is ${bytes} bytes, longer than ${max}`;
  if (CONTROL.test(name)) return 'name contains a NUL or control character';
  if (NOT_UTF8.test(name)) return 'name is not valid UTF-8';
  return undefined;
}

/** A strict decimal id in 0..4294967294, or undefined. */
export function parseDecimalId(s: string): number | undefined {
  if (!DECIMAL.test(s)) return undefined;
  const n = Number(s);
  return n <= ID_MAX ? n : undefined;
}

function decodeValue(p: Prefix, value: string): DecodeResult {
  switch (p.form) {
    case 'name': {
      const problem = nameProblem(value, DESCRIPTION_NAME_MAX);
      if (problem) return { ok: false, reason: problem };
      return { ok: true, request: { kind: p.kind, name: value } };
    }
    case 'id': {
      const id = parseDecimalId(value);
      if (id === undefined) return { ok: false, reason: `not a decimal id in 0..${ID_MAX}: ${quote(value)}` };
      return { ok: true, request: { kind: p.kind, id } };
    }
    case 'sid': {
      // parseSidParts accepts `s-`; the request carries the canonical `S-` form.
      const parts = parseSidParts(value);
      if (!parts) return { ok: false, reason: `malformed SID ${quote(value)}` };
      return { ok: true, request: { kind: p.kind, sid: formatSid(parts) } };
    }
  }
}

/**
 * Decode a key description as the kernel wrote it (`uid:alice@example.com`, `os:S-1-5-…`).
 * Never throws: anything malformed comes back with a reason to log before answering negatively.
 */
export function decodeDescription(keyType: KeyType, description: string): DecodeResult {
  if (typeof description !== 'string') return { ok: false, reason: 'description is not a string' };
  if (!isKeyType(keyType)) return { ok: false, reason: `unknown key type ${quote(String(keyType))}` };
  const colon = description.indexOf(':');
  if (colon < 0) return { ok: false, reason: `no "<prefix>:" in ${quote(description)}` };
  const prefix = description.slice(0, colon);
  const p = findPrefix(keyType, prefix);
  if (!p) return { ok: false, reason: `unknown ${keyType} prefix ${quote(prefix)}` };
  const value = description.slice(colon + 1);
  if (value.length === 0) return { ok: false, reason: `empty value after "${prefix}:"` };
  return decodeValue(p, value);
}

/** The description the kernel would use for a request (for lookups, invalidation and tests). */
export function encodeDescription(request: Request): { keyType: KeyType; description: string } {
  const p = prefixOfKind(request.kind);
  let value: string;
  if ('name' in request) value = request.name;
  else if ('id' in request) value = String(request.id);
  else value = request.sid;
  return { keyType: p.keyType, description: `${p.prefix}:${value}` };
}

/** An answer the kernel could not take (too long, out of range). The helper negates instead. */
export class PayloadError extends NsidmapError {
  constructor(message: string) {
    super('NSIDMAP_EKEYRING', `answer cannot be given to the kernel: ${message}`);
    this.name = 'PayloadError';
  }
}

function checkId(id: number): void {
  if (!isValidId(id)) throw new PayloadError(`id ${String(id)} is not in 0..${ID_MAX}`);
}

/** id_resolver name→id payload: decimal plus NUL, which kstrtol() in nfs_idmap_lookup_id needs. */
export function encodeIdPayload(id: number): Buffer {
  checkId(id);
  return Buffer.from(`${id}\0`, 'latin1');
}

/** id_resolver id→name payload: the wire name without NUL; the kernel takes datalen as length. */
export function encodeNamePayload(name: string): Buffer {
  const problem = nameProblem(name, IDMAP_NAMESZ);
  if (problem) throw new PayloadError(problem);
  return Buffer.from(name, 'utf8');
}

/** cifs.idmap SID→id payload: a bare uid_t that cifsacl.c memcpy()s, so native byte order. */
export function encodeCifsIdPayload(id: number, endian: 'LE' | 'BE' = NATIVE_ENDIAN): Buffer {
  checkId(id);
  const buf = Buffer.alloc(CIFS_ID_SIZE);
  if (endian === 'LE') buf.writeUInt32LE(id);
  else buf.writeUInt32BE(id);
  return buf;
}

/** cifs.idmap id→SID payload: the full 68-byte struct cifs_sid, as cifs-utils sends it. */
export function encodeCifsSidPayload(sid: Sid | string): Buffer {
  const parts = parseSidParts(sid);
  if (!parts) throw new PayloadError(`malformed SID ${quote(sid)}`);
  return encodeSidBinary(parts);
}

function asNumber(v: number | string): number {
  if (typeof v !== 'number') throw new PayloadError(`an id answer needs a number, got ${typeof v}`);
  return v;
}

function asString(v: number | string): string {
  if (typeof v !== 'string') throw new PayloadError(`a name or SID answer needs a string, got ${typeof v}`);
  return v;
}

/** Encoder per (key type, answer type); a missing pair means the key type never asks that. */
const ENCODERS: Record<KeyType, Partial<Record<AnswerType, (v: number | string) => Buffer>>> = {
  id_resolver: {
    id: (v) => encodeIdPayload(asNumber(v)),
    name: (v) => encodeNamePayload(asString(v)),
  },
  'cifs.idmap': {
    id: (v) => encodeCifsIdPayload(asNumber(v)),
    sid: (v) => encodeCifsSidPayload(asString(v)),
  },
};

/** The instantiate payload answering `request` with `value` (id, wire name or SID text). */
export function encodeAnswer(keyType: KeyType, request: Request, value: number | string): Buffer {
  const encode = ENCODERS[keyType]?.[answerTypeOf(request.kind)];
  if (!encode || keyTypeOf(request.kind) !== keyType) {
    throw new PayloadError(`a ${keyType} key does not answer ${request.kind}`);
  }
  return encode(value);
}

type ValueOut = { ok: true; value: number | string } | { ok: false; reason: string };

/** "<digits>\0", at most 11 bytes. */
export function decodeIdPayload(bytes: Uint8Array): ValueOut {
  if (bytes.length < 2 || bytes.length > ID_PAYLOAD_MAX) return { ok: false, reason: `id payload of ${bytes.length} bytes` };
  if (bytes[bytes.length - 1] !== 0) return { ok: false, reason: 'id payload lacks its NUL terminator' };
  const text = Buffer.from(bytes.subarray(0, bytes.length - 1)).toString('latin1');
  const id = parseDecimalId(text);
  return id === undefined ? { ok: false, reason: `id payload ${quote(text)} is not a decimal id` } : { ok: true, value: id };
}

/** A UTF-8 wire name of 1..128 bytes. */
export function decodeNamePayload(bytes: Uint8Array): ValueOut {
  let name: string;
  try {
    name = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return { ok: false, reason: 'name payload is not valid UTF-8' };
  }
  const problem = nameProblem(name, IDMAP_NAMESZ);
  return problem ? { ok: false, reason: `name payload: ${problem}` } : { ok: true, value: name };
}

/** Exactly 4 bytes, native byte order. */
export function decodeCifsIdPayload(bytes: Uint8Array, endian: 'LE' | 'BE' = NATIVE_ENDIAN): ValueOut {
  if (bytes.length !== CIFS_ID_SIZE) return { ok: false, reason: `id payload of ${bytes.length} bytes, not ${CIFS_ID_SIZE}` };
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const id = endian === 'LE' ? b.readUInt32LE(0) : b.readUInt32BE(0);
  // make_kuid() of (uid_t)-1 is invalid: cifsacl.c then falls back to the mount's uid=.
  return isValidId(id) ? { ok: true, value: id } : { ok: false, reason: `id ${id} is not a valid id` };
}

/**
 * A binary SID: the padded 68-byte struct or the packed 8 + 4·n form, both of which cifsacl.c
 * id_to_sid() accepts (it only checks datalen ≥ 8 + 4·num_subauth).
 */
export function decodeCifsSidPayload(bytes: Uint8Array): ValueOut {
  if (bytes.length > CIFS_SID_SIZE) return { ok: false, reason: `SID payload of ${bytes.length} bytes, more than ${CIFS_SID_SIZE}` };
  const parts = decodeSidBinary(bytes);
  return parts ? { ok: true, value: formatSid(parts) } : { ok: false, reason: `malformed SID payload of ${bytes.length} bytes` };
}

/** Decoder per (key type, answer type), mirroring ENCODERS. */
const DECODERS: Record<KeyType, Partial<Record<AnswerType, (b: Uint8Array) => ValueOut>>> = {
  id_resolver: { id: decodeIdPayload, name: decodeNamePayload },
  'cifs.idmap': { id: (b) => decodeCifsIdPayload(b), sid: decodeCifsSidPayload },
};

/** Decode the payload of an instantiated key (for `idmapctl keys list` and tests). Never throws. */
export function decodePayload(keyType: KeyType, description: string, bytes: Uint8Array): PayloadResult {
  const d = decodeDescription(keyType, description);
  if (!d.ok) return d;
  const decode = DECODERS[keyType][answerTypeOf(d.request.kind)];
  if (!decode) return { ok: false, reason: `${keyType} has no payload for ${d.request.kind}` };
  const v = decode(bytes);
  return v.ok ? { ok: true, request: d.request, value: v.value } : v;
}
