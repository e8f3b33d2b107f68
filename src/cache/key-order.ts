/**
 * Key order shared by every store. SQLite's default BINARY collation compares UTF-8 bytes, which
 * is Unicode code point order; JavaScript's `<` compares UTF-16 code units, which puts astral
 * characters (surrogate pairs, 0xD800–0xDFFF) before U+E000–U+FFFF. The memory store sorts with
 * compareKeys so that `list()` orders keys the same way in both stores.
 */

/** Code point order, without allocating (list() sorts whole caches with it). */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rotateSurrogates(x) - rotateSurrogates(y);
  }
  return a.length - b.length;
}

/**
 * Moves surrogates above U+E000–U+FFFF so that unit order becomes code point order. Only the
 * first differing unit is compared, so a pair's trail unit is only ever compared with another
 * trail unit (same shift) — the lead units were equal.
 */
function rotateSurrogates(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

/**
 * The least string greater than every string starting with `prefix` (code point order), or
 * undefined when there is none (empty prefix, or only U+10FFFF characters). With it a prefix
 * becomes the index range `prefix <= key < end`, exact and without LIKE's wildcards or case folding.
 */
export function prefixEnd(prefix: string): string | undefined {
  let head = prefix;
  while (head.length > 0) {
    const last = lastCodePoint(head);
    head = head.slice(0, head.length - (last > 0xffff ? 2 : 1));
    if (last < 0x10ffff) {
      // Skip the surrogate block: those code points cannot appear in well-formed text.
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      return head + String.fromCodePoint(next);
    }
  }
  return undefined;
}

function lastCodePoint(s: string): number {
  const low = s.charCodeAt(s.length - 1);
  if (low >= 0xdc00 && low <= 0xdfff && s.length > 1) {
    const cp = s.codePointAt(s.length - 2);
    if (cp !== undefined && cp > 0xffff) return cp;
  }
  return low;
}
