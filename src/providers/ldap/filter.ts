/**
 * LDAP search filters as RFC 4515 strings, and the small parser that turns the strings we build
 * into ldapts Filter objects.
 *
 * Every value that goes into a filter passes through `escapeFilterValue` (RFC 4515 §3: `*`, `(`,
 * `)`, `\` and NUL must be written `\XX`). The filter text is then the one artifact: it is what
 * `--explain` and debug logs show, and what is sent.
 *
 * Why our own parser and not ldapts's `FilterParser`: ldapts decodes each `\XX` escape into one
 * UTF-16 code unit and later writes the value as UTF-8, so an escaped byte ≥ 0x80 (a binary
 * objectSid, or a name like `émile` escaped byte-wise) reaches the server as two bytes and the
 * search silently finds nothing. Ours decodes escapes into bytes (RFC 4515 §3: the assertion value
 * is an octet string) and hands ldapts Buffers. It accepts only the grammar we generate: `&`, `|`,
 * `!`, equality, presence and substrings — an attribute description is a name or an OID
 * (RFC 4512 §2.5), never a value, so no escape ever reaches it.
 */
import { AndFilter, EqualityFilter, type Filter, NotFilter, OrFilter, PresenceFilter, SubstringFilter } from 'ldapts';

/** RFC 4512 §1.4: `descr` (keystring) or `numericoid`, optionally with `;options` (e.g. `;binary`). */
export const ATTRIBUTE_NAME = /^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*$/;

const HEX = '0123456789abcdef';

function escapeByte(b: number): string {
  return '\\' + HEX[b >> 4]! + HEX[b & 15]!;
}

/**
 * Escape a value for a filter (RFC 4515 §3, `valueencoding`).
 * - a string: `*` `(` `)` `\` NUL become `\2a` `\28` `\29` `\5c` `\00`, as the RFC requires; C0
 *   controls and DEL are escaped too (allowed by the grammar) so a logged filter stays one line.
 *   Other characters stay as they are: the filter string is UTF-8 (RFC 4515 §3, `UTFMB`).
 * - bytes (a binary objectSid): every byte is escaped, so no byte is ever taken as syntax.
 * A string that is not well-formed UTF-16 (a lone surrogate) has no UTF-8 form: RangeError.
 */
export function escapeFilterValue(value: string | Uint8Array): string {
  if (typeof value !== 'string') {
    let out = '';
    for (const b of value) out += escapeByte(b);
    return out;
  }
  if (!isWellFormed(value)) throw new RangeError('filter value is not well-formed Unicode');
  let out = '';
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    out += c < 0x20 || c === 0x7f || ch === '*' || ch === '(' || ch === ')' || ch === '\\' ? escapeByte(c) : ch;
  }
  return out;
}

const LONE_SURROGATE = /\p{Cs}/u;

/** False for a string with a lone surrogate (no UTF-8 form): String#isWellFormed, which lib ES2023 lacks. */
export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/** `(attr=value)` with the value escaped. `attr` must be an attribute name (checked). */
export function eq(attr: string, value: string | Uint8Array): string {
  return `(${checkedAttr(attr)}=${escapeFilterValue(value)})`;
}

/** `(attr=*)` */
export function present(attr: string): string {
  return `(${checkedAttr(attr)}=*)`;
}

/** `(attr=prefix*)`: a substrings filter with only an initial part (RFC 4515 §3 `substring`). */
export function startsWith(attr: string, prefix: string): string {
  return `(${checkedAttr(attr)}=${escapeFilterValue(prefix)}*)`;
}

export function and(...parts: string[]): string {
  return parts.length === 1 ? parts[0]! : `(&${parts.join('')})`;
}

export function or(...parts: string[]): string {
  return parts.length === 1 ? parts[0]! : `(|${parts.join('')})`;
}

export function not(part: string): string {
  return `(!${part})`;
}

function checkedAttr(attr: string): string {
  if (!ATTRIBUTE_NAME.test(attr)) throw new RangeError(`not an attribute name: ${JSON.stringify(attr)}`);
  return attr;
}

// ------------------------------------------------------------------------------------- parser

export class FilterSyntaxError extends Error {
  constructor(text: string, at: number, what: string) {
    super(`filter ${JSON.stringify(text)}: ${what} at offset ${at}`);
    this.name = 'FilterSyntaxError';
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Parse a filter this module built (the RFC 4515 subset above) into ldapts objects. */
export function parseFilter(text: string): Filter {
  const p = new Parser(text);
  const f = p.filter();
  if (p.pos !== text.length) p.fail('trailing text');
  return f;
}

class Parser {
  pos = 0;
  constructor(private readonly text: string) {}

  fail(what: string): never {
    throw new FilterSyntaxError(this.text, this.pos, what);
  }

  private expect(ch: string): void {
    if (this.text[this.pos] !== ch) this.fail(`expected "${ch}"`);
    this.pos++;
  }

  filter(): Filter {
    this.expect('(');
    let f: Filter;
    switch (this.text[this.pos]) {
      case '&':
        this.pos++;
        f = new AndFilter({ filters: this.list() });
        break;
      case '|':
        this.pos++;
        f = new OrFilter({ filters: this.list() });
        break;
      case '!':
        this.pos++;
        f = new NotFilter({ filter: this.filter() });
        break;
      default:
        f = this.item();
    }
    this.expect(')');
    return f;
  }

  /** RFC 4515: `filterlist = 1*filter` */
  private list(): Filter[] {
    const out: Filter[] = [];
    do out.push(this.filter());
    while (this.text[this.pos] === '(');
    return out;
  }

  private item(): Filter {
    const eqAt = this.text.indexOf('=', this.pos);
    if (eqAt < 0) this.fail('expected "="');
    const attribute = this.text.slice(this.pos, eqAt);
    if (!ATTRIBUTE_NAME.test(attribute)) this.fail('expected an attribute name');
    this.pos = eqAt + 1;
    const end = this.text.indexOf(')', this.pos);
    if (end < 0) this.fail('expected ")"');
    const raw = this.text.slice(this.pos, end);
    this.pos = end;
    if (raw === '*') return new PresenceFilter({ attribute });
    // `*` is always escaped inside a value, so a bare one separates substrings (RFC 4515 §3)
    const parts = raw.split('*').map((s) => this.bytes(s));
    if (parts.length === 1) return new EqualityFilter({ attribute, value: parts[0]! });
    const text = parts.map((b) => this.text8(b));
    return new SubstringFilter({ attribute, initial: text[0]!, any: text.slice(1, -1), final: text.at(-1)! });
  }

  /** a value with its `\XX` escapes decoded, as bytes */
  private bytes(s: string): Buffer {
    const out: number[] = [];
    for (let i = 0; i < s.length; i++) {
      if (s[i] === '\\') {
        const hex = s.slice(i + 1, i + 3);
        if (!/^[0-9A-Fa-f]{2}$/.test(hex)) this.fail('bad escape');
        out.push(parseInt(hex, 16));
        i += 2;
      } else if (s[i] === '(') {
        this.fail('unescaped "("');
      } else {
        const cp = s.codePointAt(i)!;
        const ch = String.fromCodePoint(cp);
        out.push(...encoder.encode(ch));
        i += ch.length - 1;
      }
    }
    return Buffer.from(out);
  }

  /** ldapts takes substring parts as strings (written as UTF-8): they must be UTF-8 to begin with */
  private text8(b: Buffer): string {
    try {
      return utf8.decode(b);
    } catch {
      return this.fail('substring part is not UTF-8');
    }
  }
}
