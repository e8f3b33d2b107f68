/**
 * SIDs: text ↔ parts ↔ the kernel's binary `struct cifs_sid` (fs/smb/client/cifsacl.h).
 * Pure functions. Text form: `S-<revision 1..255>-<authority>(-<u32>){0,15}`; the authority is
 * decimal, or `0x` hex when it exceeds 2^32-1 (it must fit 48 bits) — as MS-DTYP 2.4.2.1 and
 * Samba print it. Input accepts a lower-case `s-`.
 */
import type { Sid } from './types.js';

export const SID_MAX_SUBAUTH = 15;
/** sizeof(struct cifs_sid): revision, num_subauth, authority[6], sub_auth[15] */
export const CIFS_SID_SIZE = 68;
const AUTH_MAX = 0xffff_ffff_ffff; // 48 bits

export interface SidParts {
  readonly revision: number;
  /** 48-bit identifier authority (a safe integer) */
  readonly authority: number;
  readonly subs: readonly number[];
}

const DEC = /^(0|[1-9][0-9]*)$/;
const HEX = /^0[xX][0-9a-fA-F]{1,12}$/;

function parseU32(s: string): number | undefined {
  if (!DEC.test(s) || s.length > 10) return undefined;
  const n = Number(s);
  return n <= 0xffff_ffff ? n : undefined;
}

function parseAuthority(s: string): number | undefined {
  if (HEX.test(s)) {
    const n = parseInt(s.slice(2), 16);
    return n <= AUTH_MAX ? n : undefined;
  }
  if (!DEC.test(s) || s.length > 15) return undefined;
  const n = Number(s);
  return n <= AUTH_MAX ? n : undefined;
}

/** Parse SID text; undefined when malformed. */
export function parseSidParts(text: string): SidParts | undefined {
  if (text.length < 5 || text.length > 200) return undefined;
  const fields = text.split('-');
  if (fields[0] !== 'S' && fields[0] !== 's') return undefined;
  if (fields.length < 3 || fields.length > 3 + SID_MAX_SUBAUTH) return undefined;
  const revision = parseU32(fields[1]!);
  if (revision === undefined || revision < 1 || revision > 255) return undefined;
  const authority = parseAuthority(fields[2]!);
  if (authority === undefined) return undefined;
  const subs: number[] = [];
  for (let i = 3; i < fields.length; i++) {
    const v = parseU32(fields[i]!);
    if (v === undefined) return undefined;
    subs.push(v);
  }
  return { revision, authority, subs };
}

export function formatSid(parts: SidParts): Sid {
  const auth = parts.authority > 0xffff_ffff ? '0x' + parts.authority.toString(16) : String(parts.authority);
  let s = `S-${parts.revision}-${auth}`;
  for (const sub of parts.subs) s += `-${sub}`;
  return s as Sid;
}

/** Canonical SID text, or undefined when malformed. */
export function parseSid(text: string): Sid | undefined {
  const parts = parseSidParts(text);
  return parts ? formatSid(parts) : undefined;
}

/** Encode to the 68-byte `struct cifs_sid` the kernel expects as a `cifs.idmap` payload. */
export function encodeSidBinary(parts: SidParts): Buffer {
  const buf = Buffer.alloc(CIFS_SID_SIZE);
  buf[0] = parts.revision;
  buf[1] = parts.subs.length;
  // authority: 6 bytes big-endian
  buf.writeUIntBE(parts.authority, 2, 6);
  // sub-authorities: little-endian u32 (le32 in the kernel struct)
  parts.subs.forEach((v, i) => buf.writeUInt32LE(v, 8 + 4 * i));
  return buf;
}

/**
 * Decode a binary SID. Accepts the packed form of any length ≥ 8 + 4·num_subauth (a wire SID)
 * and the padded 68-byte form. Undefined when malformed.
 */
export function decodeSidBinary(buf: Uint8Array): SidParts | undefined {
  if (buf.length < 8) return undefined;
  const revision = buf[0]!;
  const n = buf[1]!;
  if (revision < 1 || n > SID_MAX_SUBAUTH || buf.length < 8 + 4 * n) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const authority = b.readUIntBE(2, 6);
  const subs: number[] = [];
  for (let i = 0; i < n; i++) subs.push(b.readUInt32LE(8 + 4 * i));
  return { revision, authority, subs };
}

/** The domain part of a SID (all but the last sub-authority) and its RID. */
export function splitRid(sid: Sid): { domain: Sid; rid: number } | undefined {
  const i = sid.lastIndexOf('-');
  const parts = parseSidParts(sid);
  if (!parts || parts.subs.length < 1) return undefined;
  return { domain: sid.slice(0, i) as Sid, rid: parts.subs[parts.subs.length - 1]! };
}
