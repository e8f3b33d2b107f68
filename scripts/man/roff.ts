/**
 * A small Markdown → man(7) converter for nsidmap's own pages (docs/man/*.md and what they
 * include). Not CommonMark: the subset those files use, converted the way man pages are written.
 *
 *   # name(section)                  the title line (.TH)
 *   ## HEADING / ### Sub             .SH (upper-cased) / .SS
 *   paragraphs, blank-line separated .PP
 *   - item / 1. item (indented lines continue it)      .IP
 *   term line, then `: definition` (indented lines continue it)   .TP
 *   ``` fenced code ```              .nf block, indented, literal
 *   | a | b | tables                 tbl(1) (the page starts with '\" t so man runs it)
 *   **bold**, *italic*, `code`       \fB \fI, code in bold (literal text to type)
 *   [text](target)                   text (a man page cannot follow a link)
 *   <!-- comments -->                dropped
 *
 * Pure: text in, text out. Everything that is not ASCII becomes a groff \[uXXXX] escape, so the
 * output renders the same with or without preconv(1).
 */

export interface TitleInfo {
  /** footer centre, e.g. "nsidmap 0.1.0" */
  readonly source: string;
  /** YYYY-MM-DD */
  readonly date: string;
}

const MANUALS: Record<string, string> = {
  '1': 'User Commands',
  '5': 'File Formats',
  '7': 'Miscellaneous',
  '8': 'System Administration',
};

/** Escape text for roff: backslashes, and every character outside ASCII as \[uXXXX]. */
export function escapeText(s: string): string {
  let out = '';
  for (const ch of s.replace(/\\/g, '\\e')) {
    const cp = ch.codePointAt(0)!;
    out += cp < 0x80 ? ch : `\\[u${cp.toString(16).toUpperCase().padStart(4, '0')}]`;
  }
  return out;
}

/** Literal text (code): escaped, and `-` as a real minus so that options copy and paste. */
export function escapeLiteral(s: string): string {
  return escapeText(s).replace(/-/g, '\\-');
}

/** Inline markup of one paragraph's text. */
export function inline(s: string): string {
  const parts: string[] = [];
  // code spans first: nothing inside them is markup
  const re = /(`+)([\s\S]*?[^`])\1(?!`)/g;
  let last = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    parts.push(emphasis(s.slice(last, m.index)));
    parts.push(`\\fB${escapeLiteral(m[2]!.trim())}\\fR`);
    last = m.index + m[0].length;
  }
  parts.push(emphasis(s.slice(last)));
  return parts.join('');
}

function emphasis(s: string): string {
  return escapeText(s.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, '$1'))
    .replace(/\*\*(\S(?:[\s\S]*?\S)?)\*\*/g, '\\fB$1\\fR')
    .replace(/(^|[^\w*\\])\*(\S(?:[^*]*?\S)?)\*(?!\w)/g, '$1\\fI$2\\fR');
}

/** A roff text line must not start with a control character. */
function textLine(s: string): string {
  return /^[.']/.test(s) ? `\\&${s}` : s;
}

function paragraphLines(lines: readonly string[]): string[] {
  const text = lines.map((l) => l.trim()).join('\n');
  return inline(text).split('\n').map(textLine);
}

function isTableRow(l: string): boolean {
  return /^\s*\|.*\|\s*$/.test(l);
}

function cells(row: string): string[] {
  // split on | not inside a code span and not escaped
  const out: string[] = [];
  let cur = '';
  let code = false;
  const body = row.trim().slice(1, -1);
  for (let i = 0; i < body.length; i++) {
    const ch = body[i]!;
    if (ch === '`') code = !code;
    if (ch === '\\' && body[i + 1] === '|') {
      cur += '|';
      i++;
      continue;
    }
    if (ch === '|' && !code) {
      out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += ch;
  }
  out.push(cur.trim());
  return out;
}

function table(rows: readonly string[]): string[] {
  const parsed = rows.map(cells);
  const header = parsed[0] ?? [];
  const isRule = (r: readonly string[]) => r.every((c) => /^:?-{3,}:?$/.test(c));
  const body = parsed.slice(1).filter((r) => !isRule(r));
  const n = header.length;
  const block = (c: string) => ['T{', ...paragraphLines([c === '' ? ' ' : c]), 'T}'].join('\n');
  // cells left-aligned and unhyphenated: narrow columns justified look like rivers
  const out = ['.na', '.nh', '.TS', 'tab(\t) allbox;', `${Array(n).fill('lb').join(' ')}`, `${Array(n).fill('lx').join(' ')}.`];
  out.push(header.map(block).join('\t'));
  for (const r of body) {
    const full = Array.from({ length: n }, (_, i) => r[i] ?? '');
    out.push(full.map(block).join('\t'));
  }
  out.push('.TE', '.ad', '.hy');
  return out;
}

const FENCE = /^\s*```/;
const ITEM = /^(\s*)(?:[-*]|(\d+)\.)\s+(.*)$/;
const HEADING = /^(#{1,4})\s+(.*?)\s*#*\s*$/;
const DEF = /^:\s+(.*)$/;

/** Markdown → roff. The first line must be `# name(section)`. */
export function toRoff(markdown: string, info: TitleInfo): string {
  const src = markdown.replace(/<!--[\s\S]*?-->/g, '').split('\n');
  const first = src.findIndex((l) => l.trim() !== '');
  const title = /^#\s+([A-Za-z0-9_.-]+)\((\d[a-z]*)\)\s*$/.exec(src[first] ?? '');
  if (!title) throw new Error(`the first line must be "# name(section)", not: ${src[first] ?? '(empty)'}`);
  const [, name, section] = title as unknown as [string, string, string];
  const out: string[] = [
    "'\\\" t",
    `.\\" Generated by scripts/gen-man.ts from docs/man/${name}.${section}.md: edit that, not this.`,
    `.TH ${name.toUpperCase()} ${section} "${info.date}" "${escapeText(info.source)}" "${MANUALS[section] ?? ''}"`,
  ];
  let inName = false;
  let i = first + 1;
  while (i < src.length) {
    const line = src[i]!;
    if (line.trim() === '') {
      i++;
      continue;
    }
    const h = HEADING.exec(line);
    if (h) {
      const text = h[2]!;
      inName = h[1]!.length === 2 && text.toUpperCase() === 'NAME';
      out.push(h[1]!.length <= 2 ? `.SH "${escapeText(text.toUpperCase()).replace(/"/g, '')}"` : `.SS "${escapeText(text.replace(/`/g, '')).replace(/"/g, '')}"`);
      i++;
      continue;
    }
    if (FENCE.test(line)) {
      const body: string[] = [];
      for (i++; i < src.length && !FENCE.test(src[i]!); i++) body.push(src[i]!);
      i++; // the closing fence
      out.push('.PP', '.RS 4', '.nf', ...body.map((l) => textLine(escapeLiteral(l))), '.fi', '.RE');
      continue;
    }
    if (isTableRow(line)) {
      const rows: string[] = [];
      for (; i < src.length && isTableRow(src[i]!); i++) rows.push(src[i]!);
      out.push('.PP', ...table(rows));
      continue;
    }
    const item = ITEM.exec(line);
    if (item && item[1]!.length < 2) {
      const lines = [item[3]!];
      for (i++; i < src.length && /^\s{2,}\S/.test(src[i]!); i++) lines.push(src[i]!);
      out.push(item[2] !== undefined ? `.IP ${item[2]}. 4` : '.IP \\(bu 2', ...paragraphLines(lines));
      continue;
    }
    const next = src[i + 1];
    if (next !== undefined && DEF.test(next)) {
      const term = paragraphLines([line]);
      const lines = [DEF.exec(next)![1]!];
      for (i += 2; i < src.length && /^\s{2,}\S/.test(src[i]!); i++) lines.push(src[i]!);
      out.push('.TP', ...term, ...paragraphLines(lines));
      continue;
    }
    // a paragraph: up to a blank line or the start of another block
    const lines: string[] = [];
    for (; i < src.length; i++) {
      const l = src[i]!;
      if (l.trim() === '' || HEADING.test(l) || FENCE.test(l) || isTableRow(l) || (lines.length > 0 && ITEM.test(l) && ITEM.exec(l)![1]!.length < 2)) break;
      lines.push(l);
    }
    let para = paragraphLines(lines);
    // NAME: "name, name - summary" — the dash must be \- for whatis/apropos (man-pages(7))
    if (inName) para = para.map((l) => l.replace(/\s+(?:-|\\\[u2014\])\s+/, ' \\- '));
    out.push('.PP', ...para);
  }
  return out.join('\n') + '\n';
}
