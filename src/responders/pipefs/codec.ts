/**
 * rpc_pipefs idmap codec: the 140-byte `struct idmap_msg` the NFS client queues on
 * `<rpc_pipefs>/nfs/clnt<hex>/idmap` (docs/PROTOCOLS.md §3), and the 140-byte reply it takes back.
 * Pure: bytes in, a typed message or a typed error out; nothing thrown for hostile input.
 *
 * Framing (include/uapi/linux/nfs_idmap.h; native byte order, no packing attribute):
 *
 *   offset  size  field      values
 *        0     1  im_type    USER 0, GROUP 1
 *        1     1  im_conv    IDTONAME 0, NAMETOID 1
 *        2   128  im_name    NUL-terminated                    (130–131: padding)
 *      132     4  im_id      u32, native endian
 *      136     1  im_status  INVALIDMSG 1, AGAIN 2, LOOKUPFAIL 4, SUCCESS 8   (137–139: padding)
 *
 * The reply rules are those of idmap_pipe_downcall() and nfs_idmap_read_and_verify_message()
 * (fs/nfs/nfs4idmap.c): exactly 140 bytes (else ENOSPC); the SUCCESS bit set (else ENOKEY); a
 * name of 1..127 bytes before the first NUL, in both directions (else EINVAL); type and conv as
 * the upcall had them (else ENOKEY); NAMETOID echoes the name byte for byte (strcmp) and carries
 * the id; IDTONAME echoes the id and carries the name. Whatever fails, the kernel negates the key
 * for key_negative_timeout (60 s) and the write() returns that errno.
 *
 * A NAMETOID name of exactly 127 bytes is not decoded into a request (`name-truncated`): the
 * kernel cuts longer names to 127 bytes (nfs_idmap_prepare_message), so it may not be the name
 * the key is filed under.
 */
import { endianness } from 'node:os';
import { ID_MAX, isValidId } from '../../types.js';
import type { Request } from '../../types.js';

export const IDMAP_MSG_SIZE = 140;
/** sizeof(im_name): names are 1..IDMAP_NAMESZ-1 bytes plus their NUL. */
export const IDMAP_NAMESZ = 128;
export const IDMAP_NAME_MAX = IDMAP_NAMESZ - 1;

/** Field offsets of struct idmap_msg. */
export const OFFSET = { type: 0, conv: 1, name: 2, id: 132, status: 136 } as const;

export const IM_TYPE = { user: 0, group: 1 } as const;
export const IM_CONV = { 'id-to-name': 0, 'name-to-id': 1 } as const;
export const IM_STATUS = { INVALIDMSG: 0x01, AGAIN: 0x02, LOOKUPFAIL: 0x04, SUCCESS: 0x08 } as const;

export type ImType = keyof typeof IM_TYPE;
export type ImConv = keyof typeof IM_CONV;
export type Endian = 'LE' | 'BE';

const NATIVE_ENDIAN: Endian = endianness();

/** A well-framed upcall: what the kernel asked, with the raw name bytes the reply must echo. */
export interface IdmapMsg {
  readonly type: ImType;
  readonly conv: ImConv;
  /** im_name up to its NUL, as bytes: a NAMETOID reply must echo exactly these (strcmp). */
  readonly name: Buffer;
  /** im_id, u32 */
  readonly id: number;
}

export const DECODE_ERRORS = ['size', 'type', 'conv', 'name-unterminated', 'name-empty', 'name-truncated', 'name-invalid', 'id-invalid'] as const;
export type DecodeErrorCode = (typeof DECODE_ERRORS)[number];

export interface DecodeError {
  readonly code: DecodeErrorCode;
  readonly reason: string;
}

/**
 * `msg` is present whenever the frame itself was sound (size, type, conv, terminated name): the
 * listener then answers the very message with a failure reply; without it, it echoes the raw bytes.
 */
export type DecodeResult =
  | { readonly ok: true; readonly msg: IdmapMsg; readonly request: Request }
  | { readonly ok: false; readonly error: DecodeError; readonly msg?: IdmapMsg };

export type EncodeResult = { readonly ok: true; readonly bytes: Buffer } | { readonly ok: false; readonly reason: string };

/** C0 controls (NUL included), DEL, C1 controls: never part of an NFSv4 name worth answering. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function typeOf(byte: number): ImType | undefined {
  return byte === IM_TYPE.user ? 'user' : byte === IM_TYPE.group ? 'group' : undefined;
}

function convOf(byte: number): ImConv | undefined {
  return byte === IM_CONV['id-to-name'] ? 'id-to-name' : byte === IM_CONV['name-to-id'] ? 'name-to-id' : undefined;
}

function readId(b: Uint8Array, endian: Endian): number {
  const v = Buffer.from(b.buffer, b.byteOffset + OFFSET.id, 4);
  return endian === 'LE' ? v.readUInt32LE(0) : v.readUInt32BE(0);
}

/** Why a name cannot be resolved, or undefined; the decoded text when it can. */
function nameText(bytes: Uint8Array): { text: string } | { problem: string } {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    return { problem: 'im_name is not valid UTF-8' };
  }
  if (CONTROL.test(text)) return { problem: 'im_name contains a control character' };
  return { text };
}

function fail(code: DecodeErrorCode, reason: string, msg?: IdmapMsg): DecodeResult {
  return msg ? { ok: false, error: { code, reason }, msg } : { ok: false, error: { code, reason } };
}

function requestOf(msg: IdmapMsg): DecodeResult {
  if (msg.conv === 'id-to-name') {
    // (u32)-1 is INVALID_UID: no valid id can be asked with it.
    if (!isValidId(msg.id)) return fail('id-invalid', `im_id ${msg.id} is not a valid id (0..${ID_MAX})`, msg);
    return { ok: true, msg, request: { kind: msg.type === 'user' ? 'uid-to-name' : 'gid-to-name', id: msg.id } };
  }
  // The kernel fills im_name from the key description with match_strlcpy(…, IDMAP_NAMESZ), and the
  // reply must carry a name of 1..127 bytes: an empty NAMETOID name could never be answered.
  if (msg.name.length === 0) return fail('name-empty', 'NAMETOID upcall with an empty im_name', msg);
  // match_strlcpy cuts a longer name to 127 bytes without a word, the reply is checked (strcmp)
  // against the cut copy, and the key is instantiated — host-wide — under the whole description:
  // answering `<127 bytes>.attacker.invalid` with the id of its first 127 bytes would file that id
  // under a name that is not its own. A name of 127 bytes cannot be told from a cut one: refused.
  // Checked before UTF-8, since the cut may split a character.
  if (msg.name.length === IDMAP_NAME_MAX) {
    return fail('name-truncated', `NAMETOID im_name of ${IDMAP_NAME_MAX} bytes: may be a longer name the kernel cut, and its key would hold the whole name`, msg);
  }
  const t = nameText(msg.name);
  if ('problem' in t) return fail('name-invalid', t.problem, msg);
  return { ok: true, msg, request: { kind: msg.type === 'user' ? 'name-to-uid' : 'name-to-gid', name: t.text } };
}

/**
 * Decode one upcall as read from the pipe. Never throws: anything malformed comes back with a
 * code and a one-line reason (and the framed message when there is one) for the failure reply.
 */
export function decodeUpcall(bytes: Uint8Array, endian: Endian = NATIVE_ENDIAN): DecodeResult {
  if (!(bytes instanceof Uint8Array)) return fail('size', 'upcall is not a byte buffer');
  if (bytes.length !== IDMAP_MSG_SIZE) return fail('size', `upcall of ${bytes.length} bytes, not ${IDMAP_MSG_SIZE}`);
  const type = typeOf(bytes[OFFSET.type]!);
  if (type === undefined) return fail('type', `im_type ${bytes[OFFSET.type]!} is neither USER (0) nor GROUP (1)`);
  const conv = convOf(bytes[OFFSET.conv]!);
  if (conv === undefined) return fail('conv', `im_conv ${bytes[OFFSET.conv]!} is neither IDTONAME (0) nor NAMETOID (1)`);
  const field = bytes.subarray(OFFSET.name, OFFSET.name + IDMAP_NAMESZ);
  const nul = field.indexOf(0);
  if (nul < 0) return fail('name-unterminated', `im_name has no NUL within its ${IDMAP_NAMESZ} bytes`);
  const msg: IdmapMsg = { type, conv, name: Buffer.from(field.subarray(0, nul)), id: readId(bytes, endian) };
  return requestOf(msg);
}

/** A zeroed 140-byte frame with type, conv, name and id written in. */
function frame(msg: IdmapMsg, name: Uint8Array, id: number, status: number, endian: Endian): Buffer {
  const out = Buffer.alloc(IDMAP_MSG_SIZE);
  out[OFFSET.type] = IM_TYPE[msg.type];
  out[OFFSET.conv] = IM_CONV[msg.conv];
  out.set(name, OFFSET.name);
  if (endian === 'LE') out.writeUInt32LE(id >>> 0, OFFSET.id);
  else out.writeUInt32BE(id >>> 0, OFFSET.id);
  out[OFFSET.status] = status;
  return out;
}

/** A name the kernel can take: 1..127 bytes, no NUL (its length is strlen of im_name). */
function replyNameProblem(name: Uint8Array): string | undefined {
  if (name.length === 0) return 'empty name';
  if (name.length > IDMAP_NAME_MAX) return `name is ${name.length} bytes, more than ${IDMAP_NAME_MAX}`;
  if (name.includes(0)) return 'name contains a NUL';
  return undefined;
}

/**
 * The SUCCESS reply to `msg` carrying `value`: an id for NAMETOID, a wire name for IDTONAME.
 * A value the kernel could not take (a name over 127 bytes, an invalid id) comes back as a
 * reason: the caller then answers with a failure reply, never a truncated name.
 */
export function encodeReply(msg: IdmapMsg, value: number | string, endian: Endian = NATIVE_ENDIAN): EncodeResult {
  const echoed = replyNameProblem(msg.name);
  if (msg.conv === 'name-to-id') {
    if (echoed) return { ok: false, reason: `the upcall's name cannot be echoed: ${echoed}` };
    if (typeof value !== 'number' || !isValidId(value)) return { ok: false, reason: `a NAMETOID answer needs an id in 0..${ID_MAX}, got ${String(value)}` };
    return { ok: true, bytes: frame(msg, msg.name, value, IM_STATUS.SUCCESS, endian) };
  }
  if (typeof value !== 'string') return { ok: false, reason: `an IDTONAME answer needs a name, got ${typeof value}` };
  if (CONTROL.test(value)) return { ok: false, reason: 'name contains a NUL or control character' };
  const name = Buffer.from(value, 'utf8');
  const problem = replyNameProblem(name);
  if (problem) return { ok: false, reason: problem };
  return { ok: true, bytes: frame(msg, name, msg.id, IM_STATUS.SUCCESS, endian) };
}

/**
 * A failure reply: 140 bytes without the SUCCESS bit, so idmap_pipe_downcall() completes the
 * pending upcall with ENOKEY (the key is negated for 60 s) and returns ENOKEY to the writer.
 * The kernel looks no further than the status, but the reply still echoes the upcall (from `msg`,
 * or the raw bytes when the frame was broken) so that a log or a capture reads naturally.
 * Written even for garbage: only a downcall frees the client's one outstanding upcall.
 */
export function encodeFailure(
  msg: IdmapMsg | undefined,
  raw: Uint8Array | undefined,
  status: number = IM_STATUS.LOOKUPFAIL,
  endian: Endian = NATIVE_ENDIAN,
): Buffer {
  const st = status & ~IM_STATUS.SUCCESS & 0xff;
  if (msg) return frame(msg, msg.name.subarray(0, IDMAP_NAME_MAX), msg.id, st, endian);
  const out = Buffer.alloc(IDMAP_MSG_SIZE);
  if (raw) out.set(raw.subarray(0, IDMAP_MSG_SIZE));
  out[OFFSET.status] = st;
  return out;
}

/**
 * The upcall the kernel would queue for a request (nfs_idmap_prepare_message): for tests, the
 * simulation and the fuzzer. NAMETOID names longer than 127 bytes are cut as match_strlcpy does.
 */
export function encodeUpcall(
  m: { type: ImType; conv: ImConv; name?: Uint8Array | string; id?: number },
  endian: Endian = NATIVE_ENDIAN,
): Buffer {
  const name = typeof m.name === 'string' ? Buffer.from(m.name, 'utf8') : m.name ?? Buffer.alloc(0);
  const msg: IdmapMsg = { type: m.type, conv: m.conv, name: Buffer.from(name), id: m.id ?? 0 };
  return frame(msg, name.subarray(0, IDMAP_NAME_MAX), msg.id, 0, endian);
}
