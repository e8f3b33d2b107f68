/**
 * Reading what a search returned: ids, names and SIDs out of ldapts entries, defensively. A
 * directory is input too: a value that does not parse is skipped (the entry then answers
 * nothing), never guessed at.
 */
import type { Entry } from 'ldapts';
import { decodeSidBinary, encodeSidBinary, formatSid, parseSid, parseSidParts } from '../../sid.js';
import { isValidId, type Sid } from '../../types.js';

type Value = string | Buffer;

/**
 * The values of `attr` in an entry. Attribute descriptions compare case-insensitively (RFC 4512
 * §2.5), and servers echo them in their own spelling: look the key up without case.
 */
export function valuesOf(entry: Entry, attr: string): Value[] {
  let v = entry[attr];
  if (v === undefined) {
    const want = attr.toLowerCase();
    for (const k of Object.keys(entry)) {
      if (k.toLowerCase() === want) {
        v = entry[k];
        break;
      }
    }
  }
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

function text(v: Value): string {
  return typeof v === 'string' ? v : v.toString('utf8');
}

const DECIMAL = /^(0|[1-9][0-9]{0,9})$/;

/**
 * A uidNumber/gidNumber: RFC 2307 gives them INTEGER syntax, single-valued. Undefined when absent,
 * multi-valued, not a plain decimal, or not a valid 32-bit id ((uid_t)-1 never is).
 */
export function idOf(entry: Entry, attr: string): number | undefined {
  const vs = valuesOf(entry, attr);
  if (vs.length !== 1) return undefined;
  const s = text(vs[0]!).trim();
  if (!DECIMAL.test(s)) return undefined;
  const n = Number(s);
  return isValidId(n) ? n : undefined;
}

/** A SID from a binary (AD objectSid) or text (`S-1-…`) attribute, canonical; undefined when malformed. */
export function sidOf(entry: Entry, attr: string, syntax: 'binary' | 'text'): Sid | undefined {
  const vs = valuesOf(entry, attr);
  if (vs.length !== 1) return undefined;
  const v = vs[0]!;
  if (syntax === 'text') return parseSid(text(v).trim());
  // ldapts hands a value that happens to be valid UTF-8 over as a string: its UTF-8 bytes are the
  // original bytes (a SID never starts with a byte-order mark: its first byte is the revision, 1)
  const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
  const parts = decodeSidBinary(bytes);
  // the packed form is exactly 8 + 4·n bytes (MS-DTYP 2.4.2.2); anything longer is not a SID
  if (!parts || bytes.length !== 8 + 4 * parts.subs.length) return undefined;
  return formatSid(parts);
}

/** The packed binary form of a SID (MS-DTYP 2.4.2.2), as AD stores objectSid. */
export function sidBytes(sid: Sid): Buffer | undefined {
  const parts = parseSidParts(sid);
  if (!parts) return undefined;
  return encodeSidBinary(parts).subarray(0, 8 + 4 * parts.subs.length);
}

export function stringValues(entry: Entry, attr: string): string[] {
  return valuesOf(entry, attr).map(text);
}

/** The local part of an NFSv4 wire name `name@domain`; undefined when there is no `@` or no name. */
export function localPart(wireName: string): string | undefined {
  const at = wireName.lastIndexOf('@');
  return at > 0 ? wireName.slice(0, at) : undefined;
}

/**
 * The value of the first RDN of `dn` when its attribute is `attr` (RFC 4514 §3: `\` escapes a
 * special character or two hex digits of UTF-8). Undefined for a multi-valued RDN or another attr.
 */
export function rdnValue(dn: string, attr: string): string | undefined {
  const eq = dn.indexOf('=');
  if (eq <= 0 || dn.slice(0, eq).trim().toLowerCase() !== attr.toLowerCase()) return undefined;
  const bytes: number[] = [];
  for (let i = eq + 1; i < dn.length; i++) {
    const ch = dn[i]!;
    if (ch === ',') break;
    if (ch === '+') return undefined;
    if (ch === '\\') {
      const hex = dn.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 2;
      } else if (i + 1 < dn.length) {
        bytes.push(...Buffer.from(dn[++i]!, 'utf8'));
      }
    } else {
      const cp = dn.codePointAt(i)!;
      const s = String.fromCodePoint(cp);
      bytes.push(...Buffer.from(s, 'utf8'));
      i += s.length - 1;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The smallest of some strings (code-unit order): a choice every host and replica makes alike. */
export function smallest(xs: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const x of xs) if (best === undefined || x < best) best = x;
  return best;
}
