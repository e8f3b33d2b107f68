/**
 * idmapd.conf → policy YAML (`idmapctl import idmapd.conf`, docs/policy.md "Migrating from
 * idmapd.conf"). Three parts:
 *
 *  - parseIdmapdConf: the INI dialect of nfs-utils' support/nfs/conffile.c, pure. Section and key
 *    names compare case-insensitively; `#`/`;` start a comment at the start of a line and inside
 *    an unquoted value; "…" and '…' quote a value; a line ending in `\` continues on the next;
 *    `[Section "sub"]` names a subsection; `include = [-]FILE` reads FILE (relative to the including
 *    file, `-`: optional) with the current section; the last assignment of a key wins; an empty
 *    value leaves the key unset; a last line without a newline is dropped — all as libnfsidmap.
 *  - idmapdToPolicy: the conversion, pure. What the policy cannot express becomes a note, listed
 *    in the YAML's header and returned for the CLI to print.
 *  - readIdmapdConf: the only I/O — the file, its includes (cycle-safe) and its drop-ins
 *    `<file>.d/*.conf` (version order, as conf_init_dir), after `/usr<file>` and its drop-ins when
 *    the file is under /etc (conf_init_file's vendor copy).
 */
import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { Document, isMap, isScalar, isSeq, type Node, type YAMLMap } from 'yaml';
import { sourceKind } from '../../providers/registry.js';
import { Policy, Scope } from './schema.js';

// ------------------------------------------------------------------------------------ the parser

/** One `key = value` line. */
export interface IdmapdEntry {
  readonly kind: 'entry';
  /** lower-case: libnfsidmap folds section names */
  readonly section: string;
  /** the quoted part of `[Section "sub"]`; libnfsidmap's lookups never read such entries */
  readonly subsection?: string;
  /** as written; compared case-insensitively */
  readonly key: string;
  /** quotes removed, comment and surrounding blanks stripped; never empty */
  readonly value: string;
  readonly file: string;
  readonly line: number;
}

/** One `include = FILE` line, to be read in place by readIdmapdConf. */
export interface IdmapdInclude {
  readonly kind: 'include';
  /** as written (after the `-`); relative to the including file's directory */
  readonly target: string;
  /** `include = -FILE`: no complaint when FILE is missing */
  readonly optional: boolean;
  /** the section (and subsection) the included file starts in */
  readonly section: string;
  readonly subsection?: string;
  readonly file: string;
  readonly line: number;
}

/** A line libnfsidmap ignores or reads differently than it looks; becomes a note. */
export interface IdmapdIssue {
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

export interface IdmapdParse {
  readonly file: string;
  readonly items: readonly (IdmapdEntry | IdmapdInclude)[];
  readonly issues: readonly IdmapdIssue[];
}

/** A whole configuration as libnfsidmap would read it: every file, includes spliced in place. */
export interface IdmapdConf {
  /** the files read, in reading order */
  readonly files: readonly string[];
  /** in reading order: for a key set twice, the later entry wins */
  readonly entries: readonly IdmapdEntry[];
  readonly issues: readonly IdmapdIssue[];
}

interface SectionState {
  section?: string;
  subsection?: string;
}

/**
 * Parse one file's text. `start` is the section an included file inherits from the line that
 * included it. Never throws: what libnfsidmap would skip is skipped and reported in `issues`.
 */
export function parseIdmapdConf(text: string, file: string, start: { section?: string; subsection?: string } = {}): IdmapdParse {
  const items: (IdmapdEntry | IdmapdInclude)[] = [];
  const issues: IdmapdIssue[] = [];
  const state: SectionState = { ...start };
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  // conf_parse only hands over lines that end in a newline: a last line without one is dropped.
  const last = lines.pop() ?? '';
  if (last.trim() !== '') issues.push({ file, line: lines.length + 1, message: 'the last line does not end with a newline, so idmapd ignores it (add the newline if it was meant)' });
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let line = lines[i] ?? '';
    while (line.endsWith('\\') && i + 1 < lines.length) line = `${line.slice(0, -1)} ${lines[++i] ?? ''}`;
    const issue = parseLine(line.trimStart(), file, lineNo, state, items);
    if (issue) issues.push({ file, line: lineNo, message: issue });
  }
  return { file, items, issues };
}

/** One logical line (leading blanks gone); returns what is wrong with it, if anything. */
function parseLine(line: string, file: string, lineNo: number, state: SectionState, items: (IdmapdEntry | IdmapdInclude)[]): string | undefined {
  if (line === '' || line.startsWith('#') || line.startsWith(';')) return undefined;
  if (line.startsWith('[')) return parseSectionHeader(line, state);
  const eq = line.indexOf('=');
  if (eq < 0) return 'not a `key = value` line; idmapd ignores it';
  if (state.section === undefined) return 'outside any [section]; idmapd ignores it';
  const key = line.slice(0, eq).trimEnd();
  const value = parseValue(line.slice(eq + 1));
  if (value === undefined) return 'unmatched quote; idmapd ignores the line';
  if (key === '') return 'no key before `=`; idmapd ignores the line';
  const where = { section: state.section, ...(state.subsection === undefined ? {} : { subsection: state.subsection }), file, line: lineNo };
  if (key.toLowerCase() === 'include') {
    const optional = value.startsWith('-');
    items.push({ kind: 'include', target: optional ? value.slice(1) : value, optional, ...where });
    return undefined;
  }
  if (value === '') return `${key} has an empty value, which idmapd treats as not set`;
  items.push({ kind: 'entry', key, value, ...where });
  return undefined;
}

/** `[ Name ]` or `[Name "sub"]`; anything after the `]` is ignored, as conffile.c does. */
function parseSectionHeader(line: string, state: SectionState): string | undefined {
  state.section = undefined;
  state.subsection = undefined;
  const close = line.indexOf(']');
  if (close < 0) return 'no closing `]`: idmapd ignores the lines up to the next section';
  const inner = line.slice(1, close).trim();
  const quote = inner.indexOf('"');
  if (quote < 0) {
    state.section = inner.toLowerCase();
    return undefined;
  }
  state.section = inner.slice(0, quote).trimEnd().toLowerCase();
  const end = inner.indexOf('"', quote + 1);
  if (end < 0) return 'unmatched `"` in the section name';
  state.subsection = inner.slice(quote + 1, end);
  return undefined;
}

/** The value after `=`: quoted up to the closing quote, else up to the first `#` or `;`. */
function parseValue(raw: string): string | undefined {
  const v = raw.trimStart();
  const q = v[0];
  if (q === '"' || q === "'") {
    const end = v.indexOf(q, 1);
    return end < 0 ? undefined : v.slice(1, end);
  }
  const cut = Math.min(...['#', ';'].map((c) => (v.includes(c) ? v.indexOf(c) : v.length)));
  return v.slice(0, cut).trimEnd();
}

/** One text on its own (no includes followed): for tests and for text from stdin. */
export function idmapdConfFromText(text: string, file: string): IdmapdConf {
  const p = parseIdmapdConf(text, file);
  const entries: IdmapdEntry[] = [];
  const issues = [...p.issues];
  for (const it of p.items) {
    if (it.kind === 'entry') entries.push(it);
    else issues.push({ file: it.file, line: it.line, message: `include = ${it.target} was not followed (the text was read on its own)` });
  }
  return { files: [file], entries, issues };
}

// ----------------------------------------------------------------------------- reading the files

/** What readIdmapdConf needs from the file system (tests may pass their own). */
export interface IdmapdFs {
  /** the text, or undefined when the file does not exist; throws for other errors */
  read(path: string): string | undefined;
  /** the names in a directory that are files (or links to files), or undefined when there is none */
  list(dir: string): string[] | undefined;
  /** a canonical name, to recognise a file included twice */
  canonical(path: string): string;
}

const nodeFs: IdmapdFs = {
  read(path) {
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  },
  list(dir) {
    try {
      return readdirSync(dir).filter((n) => {
        try {
          return statSync(`${dir}/${n}`).isFile();
        } catch {
          return false;
        }
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw e;
    }
  },
  canonical(path) {
    try {
      return realpathSync(path);
    } catch {
      return resolve(path);
    }
  },
};

/**
 * strverscmp, as scandir(…, versionsort) orders drop-ins: digit runs compare as numbers, and a run
 * with a leading zero is a fraction that sorts first (glibc: 000 < 00 < 01 < 010 < 09 < 0 < 1 < 9 < 10).
 */
export function versionCompare(a: string, b: string): number {
  const split = (s: string) => s.match(/\d+|\D+/g) ?? [];
  const pa = split(a);
  const pb = split(b);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    if (x === y) continue;
    if (/^\d/.test(x) && /^\d/.test(y)) return digitRuns(x, y);
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

function digitRuns(x: string, y: string): number {
  const frac = (d: string) => d.length > 1 && d.startsWith('0');
  if (frac(x) !== frac(y)) return frac(x) ? -1 : 1;
  if (frac(x)) {
    const zeros = (d: string) => /^0*/.exec(d)![0].length;
    return zeros(y) - zeros(x) || (x < y ? -1 : 1);
  }
  return x.length - y.length || (x < y ? -1 : 1);
}

/** `<file>.d/*.conf` as conf_init_dir takes them: no dot files, a name longer than `.conf`. */
function dropIns(file: string, fs: IdmapdFs): string[] {
  const dir = `${file}.d`;
  const names = fs.list(dir) ?? [];
  return names.filter((n) => !n.startsWith('.') && n.length > 5 && n.endsWith('.conf')).sort(versionCompare).map((n) => `${dir}/${n}`);
}

class Reader {
  readonly files: string[] = [];
  readonly entries: IdmapdEntry[] = [];
  readonly issues: IdmapdIssue[] = [];
  private readonly open: string[] = [];
  constructor(private readonly fs: IdmapdFs) {}

  /** Read one file (and its includes); false when it does not exist. */
  file(path: string, start: SectionState = {}): boolean {
    const text = this.fs.read(path);
    if (text === undefined) return false;
    const canon = this.fs.canonical(path);
    this.files.push(path);
    this.open.push(canon);
    const p = parseIdmapdConf(text, path, start);
    this.issues.push(...p.issues);
    for (const it of p.items) {
      if (it.kind === 'entry') this.entries.push(it);
      else this.include(it);
    }
    this.open.pop();
    return true;
  }

  private include(inc: IdmapdInclude): void {
    const target = inc.target.startsWith('/') ? inc.target : `${dirname(inc.file)}/${inc.target}`;
    const at = { file: inc.file, line: inc.line };
    if (inc.target === '') return void this.issues.push({ ...at, message: 'include names no file' });
    if (this.open.includes(this.fs.canonical(target))) {
      return void this.issues.push({ ...at, message: `include = ${inc.target} includes a file that is already being read (a cycle): not read again` });
    }
    let found: boolean;
    try {
      found = this.file(target, { section: inc.section, subsection: inc.subsection });
    } catch (e) {
      return void this.issues.push({ ...at, message: `include = ${inc.target}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}: not read` });
    }
    if (!found && !inc.optional) this.issues.push({ ...at, message: `include = ${inc.target}: no such file; idmapd skips it` });
  }
}

/**
 * Read an idmapd.conf as libnfsidmap does: for a file under /etc, first `/usr<file>` and its
 * drop-ins (vendor defaults), then the file, then `<file>.d/*.conf` — later values win. Throws
 * the file system's error when nothing at all could be read, or a file cannot be read.
 */
export function readIdmapdConf(path: string, opts: { fs?: IdmapdFs; vendor?: boolean } = {}): IdmapdConf {
  const fs = opts.fs ?? nodeFs;
  const r = new Reader(fs);
  const layers = (opts.vendor ?? true) && path.startsWith('/etc/') ? [`/usr${path}`, path] : [path];
  for (const layer of layers) {
    const found = r.file(layer);
    const drops = dropIns(layer, fs);
    if (!found && layer === path) {
      if (r.files.length === 0 && drops.length === 0) throw Object.assign(new Error(`${path}: no such file`), { code: 'ENOENT', path });
      r.issues.push({ file: path, line: 0, message: 'no such file; converted from the other files idmapd reads' });
    }
    for (const d of drops) {
      try {
        r.file(d);
      } catch (e) {
        r.issues.push({ file: d, line: 0, message: `${(e as NodeJS.ErrnoException).code ?? (e as Error).message}: not read` });
      }
    }
  }
  return { files: r.files, entries: r.entries, issues: r.issues };
}

// ------------------------------------------------------------------------------ the conversion

/** A place in the configuration, for notes and for the YAML's comments. */
type Loc = Pick<IdmapdEntry, 'file' | 'line'>;

/** The last value of every key, as libnfsidmap looks keys up; entries of subsections aside. */
class ConfView {
  private readonly last = new Map<string, IdmapdEntry>();
  private readonly order: string[] = [];
  readonly subsectioned: IdmapdEntry[] = [];

  constructor(readonly conf: IdmapdConf) {
    for (const e of conf.entries) {
      if (e.subsection !== undefined) {
        this.subsectioned.push(e);
        continue;
      }
      const k = `${e.section}\0${e.key.toLowerCase()}`;
      if (!this.last.has(k)) this.order.push(k);
      this.last.set(k, e);
    }
  }

  get(section: string, key: string): IdmapdEntry | undefined {
    return this.last.get(`${section}\0${key.toLowerCase()}`);
  }

  /** Every key's winning entry, in the order the keys first appear. */
  all(): IdmapdEntry[] {
    return this.order.map((k) => this.last.get(k)!);
  }

  section(section: string): IdmapdEntry[] {
    return this.all().filter((e) => e.section === section);
  }
}

/** libnfsidmap's conf_get_list: comma-separated, blanks around items dropped, empty items skipped. */
function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/** atoi, as conf_get_num reads a number: leading digits, else 0. */
function atoi(value: string): { n: number; exact: boolean } {
  const m = /^\s*([+-]?\d+)/.exec(value);
  const n = m ? parseInt(m[1]!, 10) : 0;
  return { n, exact: /^\s*\d+\s*$/.test(value) };
}

/** LDAP_use_ssl and friends: umich_ldap takes true/on/yes (any case) as true, anything else false. */
function yes(value: string | undefined): boolean {
  return value !== undefined && ['true', 'on', 'yes'].includes(value.toLowerCase());
}

/** Reformat-Group and friends: conf_get_bool's true (1, t, true, y, yes, on; any case). */
function confBool(value: string): boolean {
  return ['1', 't', 'true', 'y', 'yes', 'on'].includes(value.toLowerCase());
}

/** The policy schema's own checks, so that a value it would refuse is noted instead of written. */
const isDomain = (v: string) => Policy.shape.domain.safeParse(v).success;
const isRealm = (v: string) => Scope.shape.realms.safeParse([v]).success;

export interface IdmapdImport {
  readonly yaml: string;
  /** one line each, `file:line: what was not carried over and what to do` */
  readonly notes: readonly string[];
}

export interface IdmapdImportOptions {
  /** the host's DNS domain, to say what an absent Domain becomes on this host (asked only then) */
  readonly hostDomain?: string | (() => string);
}

/** The parts of the policy being built, each with where its value came from. */
class Builder {
  readonly policy: Record<string, unknown> = { version: 1 };
  readonly providers: Record<string, Record<string, unknown>> = {};
  readonly defaults: Record<string, unknown> = {};
  readonly scope: Record<string, unknown> = { name: 'host' };
  /** inline comments: YAML path → text */
  readonly comments: { path: (string | number)[]; text: string }[] = [];
  readonly notes: { loc?: Loc; text: string }[] = [];
  readonly chain: string[] = [];

  constructor(readonly view: ConfView, readonly short: (loc: Loc) => string) {}

  note(loc: Loc | undefined, text: string): void {
    this.notes.push({ loc, text });
  }

  comment(path: (string | number)[], text: string): void {
    this.comments.push({ path, text });
  }
}

/**
 * Convert. The YAML is valid against the policy schema (an ldap block is checked against the ldap
 * kind's schema, and left out with a note when it fails); the notes say, per entry, what could not
 * be carried over and what to do.
 */
export function idmapdToPolicy(conf: IdmapdConf, opts: IdmapdImportOptions = {}): IdmapdImport {
  const view = new ConfView(conf);
  const b = new Builder(view, shortLocator(conf.files));
  for (const i of conf.issues) b.note(i, i.message);
  const domain = convertDomain(b, opts);
  convertRealms(b, domain);
  convertMapping(b);
  convertGeneral(b);
  convertMethods(b);
  reportUnknown(b);
  return render(b);
}

/** `file:line` with the file's base name when that is unambiguous, else its path. */
function shortLocator(files: readonly string[]): (loc: Loc) => string {
  const names = files.map((f) => basename(f));
  const unique = new Set(names).size === names.length;
  return (loc) => `${unique ? basename(loc.file) : loc.file}${loc.line > 0 ? `:${loc.line}` : ''}`;
}

function convertDomain(b: Builder, opts: IdmapdImportOptions): string | undefined {
  const e = b.view.get('general', 'Domain');
  if (!e) {
    const host = typeof opts.hostDomain === 'function' ? opts.hostDomain() : opts.hostDomain;
    const here = host ? ` (on this host: ${host})` : '';
    b.note(undefined, `[General] Domain is not set: idmapd takes the host's DNS domain${here}, and so does the policy when \`domain\` is absent (without idmapd's _nfsv4idmapdomain TXT lookup) — set \`domain:\` to pin it`);
    return undefined;
  }
  if (!isDomain(e.value)) {
    b.note(e, `[General] Domain = ${e.value} is not a domain name the policy accepts (letters, digits, _ . -): not carried over — set \`domain:\` by hand`);
    return undefined;
  }
  b.policy['domain'] = e.value;
  b.comment(['domain'], `[General] Domain (${b.short(e)})`);
  return e.value;
}

function convertRealms(b: Builder, domain: string | undefined): void {
  const e = b.view.get('general', 'Local-Realms');
  if (!e) {
    if (domain === undefined) return;
    b.scope['realms'] = [domain.toUpperCase()];
    b.comment(['scopes', 0, 'realms'], 'Local-Realms not set: idmapd\'s default, the upper-cased Domain');
    return;
  }
  const realms: string[] = [];
  for (const r of list(e.value)) {
    if (isRealm(r)) realms.push(r);
    else b.note(e, `[General] Local-Realms: "${r}" is not a realm name the policy accepts: left out`);
  }
  if (realms.length === 0) return;
  b.scope['realms'] = realms;
  b.comment(['scopes', 0, 'realms'], `[General] Local-Realms (${b.short(e)})`);
  const extra = realms.filter((r) => r.toLowerCase() !== domain?.toLowerCase());
  if (extra.length > 0) {
    b.note(e, `[General] Local-Realms: ${extra.join(', ')} will be accepted on NFSv4 names as well (user@${extra[0]}); idmapd used Local-Realms only for Kerberos principals — drop them from \`realms\` if such names must stay unmapped`);
  }
}

function convertMapping(b: Builder): void {
  const user = b.view.get('mapping', 'Nobody-User');
  const group = b.view.get('mapping', 'Nobody-Group');
  if (!user && !group) return;
  b.defaults['nobody'] = { ...(user ? { user: user.value } : {}), ...(group ? { group: group.value } : {}) };
  const from = [user && `Nobody-User (${b.short(user)})`, group && `Nobody-Group (${b.short(group)})`].filter(Boolean).join(', ');
  b.comment(['defaults', 'nobody'], `[Mapping] ${from}`);
}

/** [General]: Cache-Expiration is carried; the rest have no counterpart and are noted. */
function convertGeneral(b: Builder): void {
  const exp = b.view.get('general', 'Cache-Expiration');
  if (exp) {
    const { n, exact } = atoi(exp.value);
    if (!exact) b.note(exp, `[General] Cache-Expiration = ${exp.value} is not a plain number of seconds; idmapd reads it as ${n}`);
    if (n >= 0) {
      b.defaults['ttl'] = { positive: n };
      b.comment(['defaults', 'ttl'], `[General] Cache-Expiration, seconds (${b.short(exp)})`);
    }
  }
  const verbosity = b.view.get('general', 'Verbosity');
  if (verbosity && atoi(verbosity.value).n !== 0) {
    b.note(verbosity, `[General] Verbosity = ${verbosity.value}: not carried over — for debug logs set \`daemon: { logLevel: debug }\``);
  }
  const noStrip = b.view.get('general', 'No-Strip');
  if (noStrip && noStrip.value.toLowerCase() !== 'none') {
    b.note(noStrip, `[General] No-Strip = ${noStrip.value}: not carried over — idmapd first looked up the whole name (alice@domain) in NSS; the policy's nss source always looks up the name without its domain`);
  }
  const reformat = b.view.get('general', 'Reformat-Group');
  if (reformat && confBool(reformat.value)) {
    b.note(reformat, `[General] Reformat-Group = ${reformat.value}: not carried over — a winbind group-name workaround that only applies with No-Strip`);
  }
  const pipefs = b.view.get('general', 'Pipefs-Directory');
  if (pipefs) b.note(pipefs, `[General] Pipefs-Directory = ${pipefs.value}: rpc.idmapd's rpc_pipefs mount point, not a policy setting — nothing to carry over`);
}

/** [Translation] Method, in order: each method becomes a provider in the scope's chain, or a note. */
function convertMethods(b: Builder): void {
  const m = b.view.get('translation', 'Method');
  const methods = m ? list(m.value) : ['nsswitch'];
  const seen = new Set<string>();
  for (const raw of methods) {
    const method = raw.toLowerCase();
    if (seen.has(method)) {
      b.note(m, `[Translation] Method names ${raw} twice: the second is left out`);
      continue;
    }
    seen.add(method);
    if (method === 'nsswitch') addNss(b, m);
    else if (method === 'static') convertStatic(b);
    else if (method === 'regex') convertRegex(b);
    else if (method === 'umich_ldap') convertUmich(b);
    else b.note(m, `[Translation] Method ${raw}: ${unknownMethodHint(method)}`);
  }
  const gss = b.view.get('translation', 'GSS-Methods');
  if (gss) b.note(gss, `[Translation] GSS-Methods = ${gss.value}: Kerberos principal mapping for rpc.svcgssd/gssproxy, which keep reading idmapd.conf — nothing to carry over`);
  for (const [section, method] of [['static', 'static'], ['regex', 'regex'], ['umich_schema', 'umich_ldap']] as const) {
    const entries = b.view.section(section);
    if (!seen.has(method) && entries.length > 0) {
      b.note(entries[0], `[${sectionName(section)}]: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} unused by idmapd (${method} is not in [Translation] Method${method === 'static' ? '; [Static] may serve GSS-Methods' : ''}): not carried over`);
    }
  }
  finishChain(b, m, methods);
}

function unknownMethodHint(method: string): string {
  if (method === 'sss') return 'sssd\'s libnfsidmap plugin — not carried over; the nss provider reaches sssd when nsswitch.conf lists `sss` for passwd and group';
  return 'not a method nsidmap knows (nsswitch, static, regex, umich_ldap) — not carried over';
}

function sectionName(section: string): string {
  return ({ general: 'General', mapping: 'Mapping', translation: 'Translation', static: 'Static', regex: 'Regex', umich_schema: 'UMICH_SCHEMA' } as Record<string, string>)[section] ?? section;
}

function addNss(b: Builder, m: IdmapdEntry | undefined): void {
  b.providers['nss'] = { kind: 'nss' };
  b.comment(['providers', 'nss'], m ? `[Translation] Method nsswitch (${b.short(m)})` : 'idmapd\'s default method, nsswitch');
  b.chain.push('nss');
}

/** The scope's chain, in Method's order; a chain nothing could be carried into maps nothing. */
function finishChain(b: Builder, m: IdmapdEntry | undefined, methods: string[]): void {
  if (b.chain.length === 0) {
    b.providers['none'] = { kind: 'static' };
    b.comment(['providers', 'none'], 'maps nothing: no method of idmapd.conf could be carried over');
    b.chain.push('none');
    b.note(m, `[Translation] Method = ${methods.join(',')}: no method could be carried over, so the policy maps nothing — add a provider`);
  }
  b.scope['providers'] = b.chain;
  const left = methods.filter((x) => !['nsswitch', 'umich_ldap'].includes(x.toLowerCase()));
  const order = m ? `[Translation] Method = ${methods.join(',')} (${b.short(m)})${left.length ? `; not carried over: ${left.join(', ')}` : ''}` : 'idmapd\'s default Method, nsswitch';
  b.comment(['scopes', 0, 'providers'], order);
}

/** [Static] `principal@REALM = localname` renames; the policy maps names to ids, so each is a note. */
function convertStatic(b: Builder): void {
  const entries = b.view.section('static');
  if (entries.length === 0) b.note(b.view.get('translation', 'Method'), '[Translation] Method static: [Static] has no entries — nothing to carry over');
  const domain = typeof b.policy['domain'] === 'string' ? (b.policy['domain'] as string).toLowerCase() : undefined;
  const realms = ((b.scope['realms'] as string[] | undefined) ?? []).map((r) => r.toLowerCase());
  for (const e of entries) {
    const at = e.key.lastIndexOf('@');
    const name = at < 0 ? e.key : e.key.slice(0, at);
    const realm = at < 0 ? undefined : e.key.slice(at + 1);
    const accepted = realm === undefined || realm.toLowerCase() === domain || realms.includes(realm.toLowerCase());
    const todo = accepted
      ? `add \`${name}: <uid of ${e.value}>\` to the users (or groups: <gid>) of a static provider placed where static stood in Method`
      : `add a scope with \`match: { domain: ${realm} }\`, \`domains: [${realm}]\` and a static provider with users: { ${name}: <uid of ${e.value}> } (or groups)`;
    b.note(e, `[Static] ${e.key} = ${e.value}: not carried over — a rename (principal → local account), and the policy maps names to ids only; to keep it, ${todo}`);
  }
}

/** [Regex] rewrites names with regular expressions; the resolver has no rewriting, so each is a note. */
function convertRegex(b: Builder): void {
  const entries = b.view.section('regex');
  if (entries.length === 0) b.note(b.view.get('translation', 'Method'), '[Translation] Method regex: [Regex] has no entries — nothing to carry over');
  for (const e of entries) {
    if (!REGEX_KEYS.has(e.key.toLowerCase())) continue; // reported as unknown
    b.note(e, `[Regex] ${e.key} = ${e.value}: not carried over — the policy does not rewrite names (list such names in a static provider, or rename the accounts)`);
  }
}

const REGEX_KEYS = new Set(['user-regex', 'group-regex', 'prepend-before-user', 'append-after-user', 'prepend-before-group', 'append-after-group', 'group-name-prefix', 'group-name-no-prefix-regex']);

// ------------------------------------------------------------------------------ umich_ldap → ldap

/** [UMICH_SCHEMA] keys carried into the ldap block, or noted by convertUmich itself. */
const UMICH_CARRIED = new Set([
  'ldap_server', 'ldap_port', 'ldap_use_ssl', 'ldap_base', 'ldap_people_base', 'ldap_group_base', 'ldap_ca_cert', 'ldap_tls_reqcert',
  'ldap_timeout_seconds', 'ldap_user_dn', 'ldap_sasl_mech', 'nfsv4_person_objectclass', 'nfsv4_group_objectclass', 'nfsv4_name_attr',
  'nfsv4_group_attr', 'nfsv4_uid_attr', 'nfsv4_gid_attr',
]);

/** Where the converted ldap provider expects the bind password (never copied into the policy). */
const LDAP_SECRET = '/etc/nsidmap/ldap.pw';

/** [UMICH_SCHEMA] keys with no counterpart, and why. */
const UMICH_NOTES: Record<string, string> = {
  ldap_passwd: `a secret, not copied into the policy: write it to ${LDAP_SECRET} (readable by root only), the ldap provider's bind.passwordFile`,
  ldap_canonicalize_name: 'the ldap source connects to the name as given (and checks the certificate against it)',
  ldap_follow_referrals: 'the ldap source does not follow referrals',
  ldap_sasl_realm: 'the ldap source binds with SASL EXTERNAL only',
  ldap_realm: 'the ldap source binds with SASL EXTERNAL only',
  ldap_sasl_authcid: 'the ldap source binds with SASL EXTERNAL only',
  ldap_sasl_authzid: 'the ldap source binds with SASL EXTERNAL only',
  ldap_sasl_secprops: 'the ldap source binds with SASL EXTERNAL only',
  ldap_sasl_canonicalize: 'the ldap source binds with SASL EXTERNAL only',
  ldap_sasl_krb5_ccname: 'the ldap source binds with SASL EXTERNAL only',
  gss_principal_attr: 'used only for Kerberos principal → group lists (rpc.svcgssd/gssproxy), not an idmap lookup',
  nfsv4_acctname_attr: 'used only for Kerberos principal → group lists (rpc.svcgssd/gssproxy), not an idmap lookup',
  ldap_use_memberof_for_groups: 'used only for Kerberos principal → group lists (rpc.svcgssd/gssproxy), not an idmap lookup',
  nfsv4_member_attr: 'used only for Kerberos principal → group lists (rpc.svcgssd/gssproxy), not an idmap lookup',
  nfsv4_member_of_attr: 'used only for Kerberos principal → group lists (rpc.svcgssd/gssproxy), not an idmap lookup',
  nfsv4_grouplist_filter: 'used only for Kerberos principal → group lists (rpc.svcgssd/gssproxy), not an idmap lookup',
};

/** umich_ldap's defaults (nfs-utils support/nfsidmap/umich_ldap.c) where they differ from RFC 2307's. */
const UMICH_DEFAULTS = { userClass: 'NFSv4RemotePerson', groupClass: 'NFSv4RemoteGroup', nfsv4Name: 'NFSv4Name', timeout: 4 };

/** An LDAP URL's host part: an IPv6 literal goes in brackets. */
function urlHost(server: string): string {
  return server.includes(':') && !server.startsWith('[') ? `[${server}]` : server;
}

/**
 * [UMICH_SCHEMA] → an `ldap` provider (src/providers/ldap/config.ts). umich_ldap searches
 * `(objectClass=NFSv4RemotePerson)` entries by `NFSv4Name`, which holds the whole wire name
 * (alice@example.com), and reads uidNumber/gidNumber: RFC 2307 with those object classes and the
 * NFSv4 name attribute. The block is checked against the ldap kind's own schema; a block that
 * does not pass is left out (with the reasons) rather than making the whole policy invalid.
 */
function convertUmich(b: Builder): void {
  const get = (k: string) => b.view.get('umich_schema', k);
  const m = b.view.get('translation', 'Method');
  const server = get('LDAP_server');
  const base = get('LDAP_base');
  if (!server || !base) {
    const missing = [!server && 'LDAP_server', !base && 'LDAP_base'].filter(Boolean).join(' and ');
    b.note(m, `[Translation] Method umich_ldap: [UMICH_SCHEMA] has no ${missing}, so idmapd could not use it either — not carried over; write the ldap provider by hand`);
    return;
  }
  const ssl = yes(get('LDAP_use_ssl')?.value);
  const port = get('LDAP_port');
  const portNo = port ? atoi(port.value).n : 0;
  const block: Record<string, unknown> = { kind: 'ldap', uri: `${ssl ? 'ldaps' : 'ldap'}://${urlHost(server.value)}${portNo > 0 ? `:${portNo}` : ''}`, base: base.value };
  const people = get('LDAP_people_base');
  const groups = get('LDAP_group_base');
  if (people) block['userBase'] = people.value;
  if (groups) block['groupBase'] = groups.value;
  block['schema'] = 'rfc2307';
  umichBind(b, block, ssl);
  umichTls(b, block, ssl);
  umichTimeout(b, block);
  block['attributes'] = umichAttributes(b);
  const kind = sourceKind('ldap');
  const check = kind?.schema.safeParse(block);
  if (check && !check.success) {
    const why = check.error.issues.map((i) => `${i.path.join('.') || 'block'}: ${i.message}`).join('; ');
    b.note(server, `[UMICH_SCHEMA]: the ldap provider built from it does not pass the ldap schema (${why}) — not carried over; write it by hand`);
    return;
  }
  b.providers['ldap'] = block;
  b.comment(['providers', 'ldap'], `[Translation] Method umich_ldap, [UMICH_SCHEMA] (${b.short(server)})${kind ? '' : ' — needs the ldap source, not in this build'}`);
  if (!kind) b.note(server, '[UMICH_SCHEMA]: the ldap provider needs the ldap source, which this build of nsidmap lacks — the policy will not load until it has it');
  b.chain.push('ldap');
  for (const e of b.view.section('umich_schema')) {
    const why = UMICH_NOTES[e.key.toLowerCase()];
    if (why) b.note(e, `[UMICH_SCHEMA] ${e.key}: not carried over — ${why}`);
  }
}

/** LDAP_user_dn + LDAP_passwd → a simple bind whose password is in a file; LDAP_sasl_mech → sasl. */
function umichBind(b: Builder, block: Record<string, unknown>, ssl: boolean): void {
  const dn = b.view.get('umich_schema', 'LDAP_user_dn');
  const mech = b.view.get('umich_schema', 'LDAP_sasl_mech');
  if (mech) {
    const todo = mech.value.toUpperCase() === 'EXTERNAL' ? 'set `sasl: EXTERNAL` with tls.certFile and tls.keyFile (the client certificate libldap took from ldap.conf)' : 'the ldap source binds with SASL EXTERNAL only';
    b.note(mech, `[UMICH_SCHEMA] LDAP_sasl_mech = ${mech.value}: not carried over — ${todo}`);
    return;
  }
  if (!dn) return;
  if (b.view.get('umich_schema', 'LDAP_passwd')) {
    block['bind'] = { dn: dn.value, passwordFile: LDAP_SECRET };
    if (!ssl) b.note(dn, '[UMICH_SCHEMA] LDAP_user_dn over ldap:// without LDAP_use_ssl: the bind password travels in clear, as it did with idmapd — consider ldaps:// or tls: { startTls: true }');
  } else b.note(dn, '[UMICH_SCHEMA] LDAP_user_dn without LDAP_passwd: an unauthenticated bind, which the ldap source refuses — not carried over (the source binds anonymously)');
}

/** LDAP_ca_cert and LDAP_tls_reqcert, which umich_ldap applies only with LDAP_use_ssl. */
function umichTls(b: Builder, block: Record<string, unknown>, ssl: boolean): void {
  const ca = b.view.get('umich_schema', 'LDAP_ca_cert');
  const req = b.view.get('umich_schema', 'LDAP_tls_reqcert');
  if (!ssl) {
    for (const e of [ca, req]) if (e) b.note(e, `[UMICH_SCHEMA] ${e.key}: unused by idmapd without LDAP_use_ssl — not carried over`);
    return;
  }
  const tls: Record<string, unknown> = {};
  if (ca) tls['caFile'] = ca.value;
  // ldap.conf(5) TLS_REQCERT: never and allow accept a bad certificate; try, demand and hard refuse it
  if (req && ['never', 'allow'].includes(req.value.toLowerCase())) {
    tls['verify'] = false;
    b.note(req, `[UMICH_SCHEMA] LDAP_tls_reqcert = ${req.value}: carried over as tls.verify: false — any server certificate is accepted; set a CA file and drop it`);
  }
  if (Object.keys(tls).length > 0) block['tls'] = tls;
}

function umichTimeout(b: Builder, block: Record<string, unknown>): void {
  const t = b.view.get('umich_schema', 'LDAP_timeout_seconds');
  const n = t ? atoi(t.value).n : UMICH_DEFAULTS.timeout;
  if (n >= 1 && n <= 600) block['timeout'] = n;
  else if (t) b.note(t, `[UMICH_SCHEMA] LDAP_timeout_seconds = ${t.value}: outside 1-600 s — not carried over (the ldap source's default, 4 s, applies)`);
}

/** Object classes and the NFSv4 name attribute always (umich's, not RFC 2307's); id attributes when renamed. */
function umichAttributes(b: Builder): Record<string, string> {
  const get = (k: string) => b.view.get('umich_schema', k)?.value;
  const userName = get('NFSv4_name_attr') ?? UMICH_DEFAULTS.nfsv4Name;
  const groupName = get('NFSv4_group_attr') ?? UMICH_DEFAULTS.nfsv4Name;
  if (userName.toLowerCase() !== groupName.toLowerCase()) {
    const e = b.view.get('umich_schema', 'NFSv4_group_attr') ?? b.view.get('umich_schema', 'NFSv4_name_attr');
    b.note(e, `[UMICH_SCHEMA] NFSv4_name_attr = ${userName} and NFSv4_group_attr = ${groupName} differ; the ldap source reads one NFSv4 name attribute for both — ${userName} is used`);
  }
  const attrs: Record<string, string> = {
    userClass: get('NFSv4_person_objectclass') ?? UMICH_DEFAULTS.userClass,
    groupClass: get('NFSv4_group_objectclass') ?? UMICH_DEFAULTS.groupClass,
    nfsv4Name: userName,
  };
  const uid = get('NFSv4_uid_attr');
  const gid = get('NFSv4_gid_attr');
  if (uid && uid !== 'uidNumber') attrs['uidNumber'] = uid;
  if (gid && gid !== 'gidNumber') attrs['gidNumber'] = gid;
  return attrs;
}

// ----------------------------------------------------------------------------- unknown entries

/** Keys each known section may hold; `*` takes any key. */
const KNOWN_KEYS: Record<string, ReadonlySet<string> | '*'> = {
  general: new Set(['verbosity', 'domain', 'local-realms', 'no-strip', 'reformat-group', 'cache-expiration', 'pipefs-directory']),
  mapping: new Set(['nobody-user', 'nobody-group']),
  translation: new Set(['method', 'gss-methods']),
  static: '*',
  regex: REGEX_KEYS,
  umich_schema: new Set([...UMICH_CARRIED, ...Object.keys(UMICH_NOTES)]),
};

function reportUnknown(b: Builder): void {
  for (const e of b.view.all()) {
    const known = KNOWN_KEYS[e.section];
    if (known === '*' || known?.has(e.key.toLowerCase())) continue;
    const what = known ? `not a key of [${sectionName(e.section)}]` : `[${e.section}] is not a section idmapd reads`;
    b.note(e, `[${sectionName(e.section)}] ${e.key} = ${e.value}: ${what} — not carried over`);
  }
  for (const e of b.view.subsectioned) {
    b.note(e, `[${sectionName(e.section)} "${e.subsection}"] ${e.key}: libnfsidmap does not read keys of a subsection — not carried over`);
  }
}

// ------------------------------------------------------------------------------------ rendering

/** A comment's text wrapped at ~100 columns: `first` before the first line, `rest` before the others. */
function wrap(text: string, first: string, rest: string, width = 100): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && (out.length === 0 ? first : rest).length + line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  out.push(line);
  return out.map((l, i) => `${i === 0 ? first : rest}${l}`);
}

function render(b: Builder): IdmapdImport {
  const files = b.view.conf.files;
  const where = (loc: Loc | undefined, short: boolean) => (loc ? (short ? b.short(loc) : `${loc.file}${loc.line > 0 ? `:${loc.line}` : ''}`) : short ? '' : files[0] ?? 'idmapd.conf');
  // in reading order: the files in the order read, then by line (notes without a place first)
  const rank = (n: { loc?: Loc }) => (n.loc ? (files.indexOf(n.loc.file) + 1) * 1e7 + n.loc.line : -1);
  const sorted = b.notes.map((n, i) => ({ n, i })).sort((x, y) => rank(x.n) - rank(y.n) || x.i - y.i).map((x) => x.n);
  const notes = sorted.map((n) => `${where(n.loc, false)}: ${n.text}`);
  const policy: Record<string, unknown> = { ...b.policy, providers: b.providers };
  if (Object.keys(b.defaults).length > 0) policy['defaults'] = b.defaults;
  const { name, providers, ...rest } = b.scope;
  policy['scopes'] = [{ name, description: 'converted from idmapd.conf', providers, ...rest }];

  const doc = new Document(policy);
  const header = [
    `nsidmap policy converted by \`idmapctl import idmapd.conf\` from ${files.length === 1 ? files[0] : 'these files, in this order (later values win):'}`,
    ...(files.length === 1 ? [] : files.map((f) => `  ${f}`)),
    'Check it with `idmapctl policy check FILE` before installing it as /etc/nsidmap/policy.yaml.',
  ];
  if (b.notes.length > 0) {
    header.push('', 'Not carried over, or to review:');
    for (const n of sorted) header.push(...wrap(`${n.loc ? `${where(n.loc, true)}: ` : ''}${n.text}`, '- ', '  '));
  }
  doc.commentBefore = header.map((l) => (l === '' ? '' : ` ${l}`)).join('\n');
  flowSmallCollections(doc.contents as Node);
  for (const p of (doc.contents as YAMLMap).items) if (isScalar(p.key) && p.key.value !== 'version' && p.key.value !== 'domain') p.key.spaceBefore = true;
  for (const { path, text } of b.comments) attachComment(doc, path, ` ${text}`);
  return { yaml: doc.toString({ lineWidth: 0 }), notes };
}

/** `{ kind: nss }`, `[nss, ldap]`: maps and lists of a few scalars are written on one line. */
function flowSmallCollections(node: Node | null | undefined): void {
  if (!isMap(node) && !isSeq(node)) return;
  const children = isMap(node) ? node.items.map((p) => p.value as Node | null) : (node.items as (Node | null)[]);
  for (const c of children) flowSmallCollections(c);
  if (children.length <= 4 && children.every((c) => isScalar(c))) node.flow = true;
}

/** An end-of-line comment on a scalar or a one-line collection; above the key of a block. */
function attachComment(doc: Document, path: readonly (string | number)[], text: string): void {
  const parent = doc.getIn(path.slice(0, -1), true) as Node | undefined;
  const last = path[path.length - 1];
  if (!isMap(parent)) return;
  const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === last);
  const value = pair?.value as Node | null | undefined;
  if (!pair || !value) return;
  if (isScalar(value) || ((isMap(value) || isSeq(value)) && value.flow)) value.comment = text;
  else if (isScalar(pair.key)) pair.key.commentBefore = text;
}
