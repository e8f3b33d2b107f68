/**
 * nfsd idmap cache channel codec: request lines nfsd writes on
 * `/proc/net/rpc/nfs4.{idtoname,nametoid}/channel` and the reply lines it takes back
 * (docs/PROTOCOLS.md §4). Pure: bytes in, a typed request or a typed error out; nothing thrown
 * for hostile input.
 *
 *   cache     request (kernel → us)          reply (us → kernel)
 *   idtoname  <auth> <user|group> <id>\n     <auth> <type> <id> <expiry> <name>\n
 *   nametoid  <auth> <user|group> <name>\n   <auth> <type> <name> <expiry> <id>\n
 *   negative: the same reply without its last field.
 *
 * Fields are separated by one space. The kernel quotes space, TAB, LF and `\` inside a field as
 * `\ooo` octal (qword_add: string_escape_str(…, ESCAPE_OCTAL, "\\ \n\t"), net/sunrpc/cache.c),
 * and its parser also takes a whole field as `\x<hex>` (qword_get). The reply is parsed by
 * idtoname_parse / nametoid_parse (fs/nfsd/nfs4idmap.c), which force what is written here:
 * the line must end in `\n`; auth and name are 1..127 bytes (IDMAP_NAMESZ is 128 with the NUL);
 * `expiry` is absolute wall-clock seconds (get_expiry subtracts the boot time); an idtoname id
 * is read with simple_strtoul(…, 10), a nametoid id with get_int (simple_strtol base 0, so a
 * decimal without leading zeros is the only safe form); an empty last field makes the entry
 * negative. The reply's auth, type and key must equal the request's byte for byte, or it fills
 * some other cache entry and the waiting request is never answered.
 */
import { ID_MAX, isValidId } from '../../types.js';
import type { Entity, Request } from '../../types.js';

export const NFSD_CACHES = ['idtoname', 'nametoid'] as const;
export type NfsdCache = (typeof NFSD_CACHES)[number];
/** The directory of each cache under /proc/net/rpc (or /proc/<pid>/net/rpc). */
export const CACHE_DIR: Record<NfsdCache, string> = { idtoname: 'nfs4.idtoname', nametoid: 'nfs4.nametoid' };

/** IDMAP_NAMESZ (include/linux/nfs_idmap.h… fs/nfsd/idmap.h): auth and names are < 128 bytes. */
export const IDMAP_NAMESZ = 128;
export const NAME_MAX = IDMAP_NAMESZ - 1;
/** A request is built in one page (sunrpc_cache_pipe_upcall): anything longer is not the kernel's. */
export const LINE_MAX = 4096;

/** What the kernel asked, in its own bytes: a reply must echo auth, type and key exactly. */
export type NfsdKey =
  | { readonly cache: 'idtoname'; readonly auth: Buffer; readonly type: Entity; readonly id: number }
  | { readonly cache: 'nametoid'; readonly auth: Buffer; readonly type: Entity; readonly name: Buffer };

export const PARSE_ERRORS = ['framing', 'fields', 'quoting', 'auth', 'type', 'id', 'name'] as const;
export type ParseErrorCode = (typeof PARSE_ERRORS)[number];

/**
 * `key` is present when auth, type and key could be read even though the request cannot be
 * resolved (an id of 4294967295, a name that is not UTF-8): the listener answers it negatively.
 * Without a key there is nothing a reply could match: the line is logged and dropped.
 */
export type ParseResult =
  | { readonly ok: true; readonly key: NfsdKey; readonly request: Request; readonly authDomain: string }
  | { readonly ok: false; readonly code: ParseErrorCode; readonly reason: string; readonly key?: NfsdKey };

export type FormatResult = { readonly ok: true; readonly line: Buffer } | { readonly ok: false; readonly reason: string };

const SP = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const BSL = 0x5c;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const DECIMAL = /^(0|[1-9][0-9]{0,9})$/;

function fail(code: ParseErrorCode, reason: string, key?: NfsdKey): ParseResult {
  return key ? { ok: false, code, reason, key } : { ok: false, code, reason };
}

/** A short printable form of untrusted bytes for a reason string. */
export function printable(b: Uint8Array, max = 48): string {
  const s = JSON.stringify(Buffer.from(b.subarray(0, max)).toString('latin1'));
  return b.length > max ? `${s}…` : s;
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

const isOctal = (c: number | undefined): boolean => c !== undefined && c >= 0x30 && c <= 0x37;

/** `\x<hex pairs>` → bytes, or undefined when the field is not entirely that. */
function unhex(f: Uint8Array): Buffer | undefined {
  const digits = f.length - 2;
  if (digits < 2 || digits % 2 !== 0) return undefined;
  const out = Buffer.allocUnsafe(digits / 2);
  for (let i = 0; i < out.length; i++) {
    const h = hexVal(f[2 + 2 * i]!);
    const l = hexVal(f[3 + 2 * i]!);
    if (h < 0 || l < 0) return undefined;
    out[i] = (h << 4) | l;
  }
  return out;
}

/** Text with `\ooo` escapes (first digit 0–3, as qword_get wants) → bytes; undefined on a stray `\`. */
function unoctal(f: Uint8Array): Buffer | undefined {
  const out = Buffer.allocUnsafe(f.length);
  let n = 0;
  for (let i = 0; i < f.length; i++) {
    const c = f[i]!;
    if (c !== BSL) {
      out[n++] = c;
      continue;
    }
    const a = f[i + 1];
    if (a === undefined || a < 0x30 || a > 0x33 || !isOctal(f[i + 2]) || !isOctal(f[i + 3])) return undefined;
    out[n++] = ((a - 0x30) << 6) | ((f[i + 2]! - 0x30) << 3) | (f[i + 3]! - 0x30);
    i += 3;
  }
  return out.subarray(0, n);
}

/**
 * One field as the kernel wrote it → its bytes. Stricter than qword_get, which takes a stray `\`
 * literally: the kernel itself never writes one, so a field with one is not the kernel's.
 */
export function unquoteField(f: Uint8Array): Buffer | undefined {
  if (f.length >= 2 && f[0] === BSL && f[1] === 0x78 /* x */) return unhex(f);
  return unoctal(f);
}

/** Bytes → a field: space, TAB, LF and `\` as `\ooo`, everything else as it is (qword_add). */
export function quoteField(b: Uint8Array): Buffer {
  let extra = 0;
  for (const c of b) if (c === SP || c === TAB || c === LF || c === BSL) extra += 3;
  if (extra === 0) return Buffer.from(b);
  const out = Buffer.allocUnsafe(b.length + extra);
  let n = 0;
  for (const c of b) {
    if (c === SP || c === TAB || c === LF || c === BSL) {
      out[n++] = BSL;
      out[n++] = 0x30 + (c >> 6);
      out[n++] = 0x30 + ((c >> 3) & 7);
      out[n++] = 0x30 + (c & 7);
    } else out[n++] = c;
  }
  return out;
}

/** Split `<a> <b> <c>` (no newline) at single spaces; undefined if any field is empty. */
function splitFields(body: Uint8Array): Uint8Array[] | undefined {
  const fields: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= body.length; i++) {
    if (i < body.length && body[i] !== SP) continue;
    if (i === start) return undefined;
    fields.push(body.subarray(start, i));
    start = i + 1;
  }
  return fields;
}

function textOf(b: Uint8Array): string | undefined {
  try {
    const s = UTF8.decode(b);
    return CONTROL.test(s) ? undefined : s;
  } catch {
    return undefined;
  }
}

/** Framing and fields: the three unquoted fields, or the error. */
function fieldsOf(line: Uint8Array): Buffer[] | ParseResult {
  if (!(line instanceof Uint8Array)) return fail('framing', 'request is not a byte buffer');
  if (line.length === 0) return fail('framing', 'empty request');
  if (line.length > LINE_MAX) return fail('framing', `request of ${line.length} bytes, longer than a page (${LINE_MAX})`);
  if (line[line.length - 1] !== LF) return fail('framing', `request does not end in a newline: ${printable(line)}`);
  const body = line.subarray(0, line.length - 1);
  if (body.includes(LF)) return fail('framing', 'more than one line in one request');
  if (body.includes(0)) return fail('framing', 'request contains a NUL byte');
  const raw = splitFields(body);
  if (!raw || raw.length !== 3) return fail('fields', `want "<auth> <user|group> <key>", got ${printable(body)}`);
  const fields: Buffer[] = [];
  for (const f of raw) {
    const b = unquoteField(f);
    if (!b) return fail('quoting', `malformed \\ooo or \\x quoting in ${printable(f)}`);
    if (b.includes(0)) return fail('quoting', `field ${printable(f)} unquotes to a NUL byte`);
    fields.push(b);
  }
  return fields;
}

function typeOf(b: Buffer): Entity | undefined {
  const s = b.toString('latin1');
  return s === 'user' ? 'user' : s === 'group' ? 'group' : undefined;
}

/**
 * Decode one request line, newline included. Never throws. `authDomain` is the auth name as text
 * for the Context (policy `match.authDomain`), the key keeps the exact bytes for the reply.
 */
export function parseRequest(cache: NfsdCache, line: Uint8Array): ParseResult {
  const fields = fieldsOf(line);
  if (!Array.isArray(fields)) return fields;
  const [auth, typeField, keyField] = fields as [Buffer, Buffer, Buffer];
  if (auth.length > NAME_MAX) return fail('auth', `auth name of ${auth.length} bytes, longer than ${NAME_MAX}`);
  const type = typeOf(typeField);
  if (!type) return fail('type', `type ${printable(typeField)} is neither user nor group`);
  const authDomain = auth.toString('utf8');
  return cache === 'idtoname' ? idRequest(auth, type, keyField, authDomain) : nameRequest(auth, type, keyField, authDomain);
}

function idRequest(auth: Buffer, type: Entity, field: Buffer, authDomain: string): ParseResult {
  const text = field.toString('latin1');
  // The kernel prints the id with %u (idtoname_request): anything else is not its request.
  if (!DECIMAL.test(text) || Number(text) > 0xffffffff) return fail('id', `id ${printable(field)} is not a u32 in decimal`);
  const key: NfsdKey = { cache: 'idtoname', auth, type, id: Number(text) };
  if (!isValidId(key.id)) return fail('id', `id ${key.id} is not a valid id (0..${ID_MAX})`, key);
  return { ok: true, key, request: { kind: type === 'user' ? 'uid-to-name' : 'gid-to-name', id: key.id }, authDomain };
}

function nameRequest(auth: Buffer, type: Entity, name: Buffer, authDomain: string): ParseResult {
  if (name.length > NAME_MAX) return fail('name', `name of ${name.length} bytes, longer than ${NAME_MAX}`);
  const key: NfsdKey = { cache: 'nametoid', auth, type, name };
  const text = textOf(name);
  if (text === undefined) return fail('name', `name ${printable(name)} is not UTF-8 without control characters`, key);
  return { ok: true, key, request: { kind: type === 'user' ? 'name-to-uid' : 'name-to-gid', name: text }, authDomain };
}

function checkExpiry(expiry: number): string | undefined {
  return Number.isSafeInteger(expiry) && expiry > 0 ? undefined : `expiry ${String(expiry)} is not positive whole seconds`;
}

/** `<auth> <type> <key> <expiry>` — the common head of every reply, without separator or newline. */
function head(key: NfsdKey, expiry: number): Buffer {
  const k = key.cache === 'idtoname' ? Buffer.from(String(key.id), 'latin1') : quoteField(key.name);
  return Buffer.concat([quoteField(key.auth), Buffer.from(` ${key.type} `, 'latin1'), k, Buffer.from(` ${expiry}`, 'latin1')]);
}

function withLast(key: NfsdKey, expiry: number, last: Buffer | undefined): Buffer {
  const h = head(key, expiry);
  return last ? Buffer.concat([h, Buffer.from(' '), last, Buffer.from('\n')]) : Buffer.concat([h, Buffer.from('\n')]);
}

/**
 * The positive reply to `key`: a wire name for idtoname, an id for nametoid, valid until `expiry`
 * (absolute wall-clock seconds). A value the kernel could not take comes back as a reason; the
 * caller then answers negatively instead of writing something the kernel would refuse or mangle.
 */
export function formatReply(key: NfsdKey, expiry: number, value: number | string): FormatResult {
  const bad = checkExpiry(expiry);
  if (bad) return { ok: false, reason: bad };
  if (key.cache === 'nametoid') {
    if (typeof value !== 'number' || !isValidId(value)) return { ok: false, reason: `a nametoid answer needs an id in 0..${ID_MAX}, got ${String(value)}` };
    return { ok: true, line: withLast(key, expiry, Buffer.from(String(value), 'latin1')) };
  }
  if (typeof value !== 'string') return { ok: false, reason: `an idtoname answer needs a name, got ${typeof value}` };
  if (value.length === 0) return { ok: false, reason: 'empty name' };
  if (CONTROL.test(value)) return { ok: false, reason: 'name contains a NUL or control character' };
  const name = Buffer.from(value, 'utf8');
  if (name.length > NAME_MAX) return { ok: false, reason: `name is ${name.length} bytes, more than ${NAME_MAX}` };
  return { ok: true, line: withLast(key, expiry, quoteField(name)) };
}

/**
 * The negative reply to `key`: the last field dropped, the kernel marks the entry CACHE_NEGATIVE.
 * `expiry` comes from expiryAt(); a value that is not positive whole seconds is written as 1 —
 * long past, so the kernel asks again rather than keeping it.
 */
export function formatNegative(key: NfsdKey, expiry: number): Buffer {
  return withLast(key, checkExpiry(expiry) ? 1 : expiry, undefined);
}

/**
 * Absolute expiry for an answer kept `ttl` seconds, from the wall clock in ms: at least one second
 * ahead, since an entry already expired on arrival is never used (cache_is_expired, cache.c).
 */
export function expiryAt(nowMs: number, ttl: number): number {
  const t = Number.isFinite(ttl) ? Math.ceil(ttl) : 0;
  return Math.floor(nowMs / 1000) + Math.max(1, t);
}

/** The request line the kernel writes for `key` (idtoname_request / nametoid_request): for tests and the simulation. */
export function formatRequest(key: NfsdKey): Buffer {
  const k = key.cache === 'idtoname' ? Buffer.from(String(key.id), 'latin1') : quoteField(key.name);
  return Buffer.concat([quoteField(key.auth), Buffer.from(` ${key.type} `, 'latin1'), k, Buffer.from('\n')]);
}

/**
 * A read may, defensively, carry more than one request: the lines, each with its newline; a
 * trailing piece without one is returned as it is (and fails to parse as unterminated).
 */
export function splitLines(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = buf.indexOf(LF); i >= 0; i = buf.indexOf(LF, start)) {
    out.push(buf.subarray(start, i + 1));
    start = i + 1;
  }
  if (start < buf.length) out.push(buf.subarray(start));
  return out;
}
