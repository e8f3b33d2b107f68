/**
 * `files` source: users and groups from files in passwd(5) / group(5) format, as glibc's
 * nss_files reads them, reloaded when a file changes.
 *
 * Parsing follows nss_files where it matters for answers: leading blanks are skipped, `#` lines and
 * blank lines are comments, `+`/`-` lines are NIS compat entries (we have no NIS: skipped), and
 * the first entry wins for a duplicate name and, separately, for a duplicate id — getpwnam and
 * getpwuid both scan from the top and stop at the first match (so a line whose name is shadowed
 * still answers for its id, as on the host; the health detail counts such lines, and a name → id →
 * name round-trip holds only for a file without them). A line that does not parse is
 * skipped and counted (health detail), never guessed at.
 */
import { open, stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { isValidId, type Entity } from '../types.js';
import type { Logger } from '../log.js';
import type { SourceKind } from './kind.js';
import { SourceFault, type MaybePromise, type Source, type SourceEntry, type SourceHealth } from './source.js';

export const filesSchema = z.strictObject({
  kind: z.literal('files'),
  passwd: z.string().min(1).optional(),
  group: z.string().min(1).optional(),
});
export type FilesConfig = z.infer<typeof filesSchema>;

/**
 * How often (at most) a lookup checks whether a file changed: one stat(2) per second of traffic.
 *
 * Why a stat on access and not fs.watch (inotify): useradd, vipw and config management replace
 * /etc/passwd by rename(2), so a watch on the file goes deaf after the first replacement and must be
 * re-armed (racy), while a watch on /etc fires for every file there; inotify watches are a per-user
 * limited resource and do not see changes made through another mount of the same file (bind mounts
 * into containers, NFS, some overlayfs setups). A stat compares (dev, ino, size, mtime, ctime), so
 * it sees both a rename-replacement (new inode) and an in-place write, on every filesystem, with no
 * background state to clean up. The cost is up to one second of staleness — less than any TTL.
 */
export const FILES_CHECK_INTERVAL_MS = 1000;

/**
 * A file modified less than this long before we read it may still change within the same
 * timestamp tick (the kernel stamps with a coarse clock); we do not trust its signature and re-read
 * it at the next check (git's "racy clean" problem).
 */
const RACY_WINDOW_NS = 2_000_000_000n;

/** One parsed file: both directions, first entry wins. */
export interface IdTable {
  readonly byName: ReadonlyMap<string, SourceEntry>;
  readonly byId: ReadonlyMap<number, SourceEntry>;
  /** lines that do not parse */
  readonly malformed: number;
  /** `+`/`-` NIS compat lines */
  readonly compat: number;
  /** lines whose name or id an earlier line already has (then id → name does not round-trip) */
  readonly shadowed: number;
}

export type IdFileFormat = 'passwd' | 'group';

/** passwd: name:passwd:uid:gid:gecos:dir:shell — group: name:passwd:gid:members */
const FIELD_COUNT: Record<IdFileFormat, number> = { passwd: 7, group: 4 };
const DECIMAL = /^[0-9]{1,10}$/;

type LineResult = SourceEntry | 'comment' | 'compat' | 'malformed';

/** One line of a passwd or group file. */
export function parseIdLine(line: string, format: IdFileFormat): LineResult {
  const text = line.trimStart();
  if (text === '' || text.startsWith('#')) return 'comment';
  if (text.startsWith('+') || text.startsWith('-')) return 'compat';
  const fields = text.split(':');
  if (fields.length !== FIELD_COUNT[format]) return 'malformed';
  const name = fields[0]!;
  const idText = fields[2]!;
  if (name === '' || !DECIMAL.test(idText)) return 'malformed';
  const id = Number(idText);
  // (uid_t)-1 is never an id (kernel INVALID_UID); larger values do not fit uid_t
  if (!isValidId(id)) return 'malformed';
  return Object.freeze({ id, name });
}

/** Parse a whole file. Pure: never throws, counts what it skips. */
export function parseIdFile(text: string, format: IdFileFormat): IdTable {
  const byName = new Map<string, SourceEntry>();
  const byId = new Map<number, SourceEntry>();
  let malformed = 0;
  let compat = 0;
  let shadowed = 0;
  for (const line of text.split('\n')) {
    const r = parseIdLine(line, format);
    if (r === 'malformed') malformed++;
    else if (r === 'compat') compat++;
    else if (r !== 'comment') {
      const newName = !byName.has(r.name!);
      const newId = !byId.has(r.id);
      if (newName) byName.set(r.name!, r);
      if (newId) byId.set(r.id, r);
      if (!newName || !newId) shadowed++;
    }
  }
  return { byName, byId, malformed, compat, shadowed };
}

const EMPTY_TABLE: IdTable = parseIdFile('', 'passwd');

/**
 * - `unloaded`: not read yet
 * - `ok`: table is the file's current content (as of the last check)
 * - `missing`: the file never existed since start: empty table, not a fault
 * - `gone`: it existed and disappeared: last good table kept
 * - `fault`: unreadable (EACCES, EISDIR, EIO…); with a good table it is kept, without one
 *   lookups throw — answering "not found" would let a later source hand out another id
 */
type FileState = 'unloaded' | 'ok' | 'missing' | 'gone' | 'fault';

function errCode(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : String(e);
}

/** One file, its last good table, and when to look at it again. */
export class WatchedIdFile {
  private table: IdTable = EMPTY_TABLE;
  private hasGood = false;
  private state: FileState = 'unloaded';
  private problem = '';
  private signature: string | undefined;
  private checkedAt = -Infinity;
  private pending: Promise<void> | undefined;

  constructor(
    readonly path: string,
    private readonly format: IdFileFormat,
    private readonly source: string,
    private readonly log: Logger,
  ) {}

  /** The table to answer from; a promise only when a check is due or running. */
  current(): MaybePromise<IdTable> {
    if (this.pending === undefined && performance.now() - this.checkedAt < FILES_CHECK_INTERVAL_MS) {
      return this.usable();
    }
    return this.check().then(() => this.usable());
  }

  /** Check now (start(), and lookups once the interval passed). Concurrent callers share one check. */
  check(): Promise<void> {
    this.pending ??= this.refresh().finally(() => {
      this.checkedAt = performance.now();
      this.pending = undefined;
    });
    return this.pending;
  }

  private usable(): IdTable {
    if (this.state === 'fault' && !this.hasGood) {
      throw new SourceFault(this.source, `${this.path} cannot be read (${this.problem})`);
    }
    return this.table;
  }

  private async refresh(): Promise<void> {
    try {
      const st = await stat(this.path, { bigint: true });
      if (this.state === 'ok' && signatureOf(st) === this.signature) return;
      await this.load();
    } catch (e) {
      this.failed(e);
    }
  }

  private async load(): Promise<void> {
    // read through one descriptor so the signature describes exactly the bytes we parse
    const fh = await open(this.path, 'r');
    try {
      const st = await fh.stat({ bigint: true });
      const text = await fh.readFile('utf8');
      this.table = parseIdFile(text, this.format);
      this.hasGood = true;
      this.state = 'ok';
      this.signature = isRacy(st) ? undefined : signatureOf(st);
      this.log.info('source.files.loaded', this.loadedFields());
    } finally {
      await fh.close();
    }
  }

  private loadedFields(): Record<string, string | number> {
    const t = this.table;
    return { path: this.path, entries: t.byName.size, malformed: t.malformed, compat: t.compat, shadowed: t.shadowed };
  }

  private failed(e: unknown): void {
    const code = errCode(e);
    const next: FileState = code === 'ENOENT' ? (this.hasGood ? 'gone' : 'missing') : 'fault';
    if (next !== this.state || code !== this.problem) {
      this.log.warn('source.files.unreadable', { path: this.path, error: code, keptTable: this.hasGood });
    }
    this.state = next;
    this.problem = code;
    this.signature = undefined;
  }

  health(): SourceHealth {
    const entries = this.table.byName.size;
    switch (this.state) {
      case 'unloaded':
        return { state: 'down', detail: `${this.path}: not read yet` };
      case 'ok':
        return { state: 'up', detail: this.okDetail() };
      case 'missing':
        return { state: 'down', detail: `${this.path}: missing` };
      case 'gone':
        return { state: 'degraded', detail: `${this.path}: missing; serving the last good table (${entries} entries)` };
      case 'fault':
        return this.hasGood
          ? { state: 'degraded', detail: `${this.path}: ${this.problem}; serving the last good table (${entries} entries)` }
          : { state: 'down', detail: `${this.path}: ${this.problem}` };
    }
  }

  private okDetail(): string {
    const t = this.table;
    let s = `${this.path}: ${t.byName.size} entries`;
    if (t.malformed > 0) s += `, ${t.malformed} malformed line(s) skipped`;
    if (t.compat > 0) s += `, ${t.compat} NIS compat line(s) skipped`;
    if (t.shadowed > 0) s += `, ${t.shadowed} duplicate(s) shadowed`;
    return s;
  }
}

interface BigStats {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

function signatureOf(st: BigStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function isRacy(st: BigStats): boolean {
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  return nowNs - st.mtimeNs < RACY_WINDOW_NS || nowNs - st.ctimeNs < RACY_WINDOW_NS;
}

const STATE_RANK: Record<SourceHealth['state'], number> = { up: 0, degraded: 1, down: 2 };

/** The worse of several healths, details joined. */
function worst(parts: readonly SourceHealth[]): SourceHealth {
  let state: SourceHealth['state'] = 'up';
  for (const p of parts) if (STATE_RANK[p.state] > STATE_RANK[state]) state = p.state;
  return { state, detail: parts.map((p) => p.detail).join('; ') };
}

function thenMap<T, R>(v: MaybePromise<T>, f: (t: T) => R): MaybePromise<R> {
  return v instanceof Promise ? v.then(f) : f(v);
}

class FilesSource implements Source {
  readonly kind = 'files';
  private readonly users: WatchedIdFile;
  private readonly groups: WatchedIdFile;

  constructor(
    readonly name: string,
    passwdPath: string,
    groupPath: string,
    log: Logger,
  ) {
    this.users = new WatchedIdFile(passwdPath, 'passwd', name, log);
    this.groups = new WatchedIdFile(groupPath, 'group', name, log);
  }

  async start(): Promise<void> {
    await Promise.all([this.users.check(), this.groups.check()]);
  }

  byName(entity: Entity, name: string): MaybePromise<SourceEntry | undefined> {
    return thenMap(this.file(entity).current(), (t) => t.byName.get(name));
  }

  byId(entity: Entity, id: number): MaybePromise<SourceEntry | undefined> {
    if (!isValidId(id)) return undefined;
    return thenMap(this.file(entity).current(), (t) => t.byId.get(id));
  }

  health(): SourceHealth {
    return worst([this.users.health(), this.groups.health()]);
  }

  private file(entity: Entity): WatchedIdFile {
    return entity === 'user' ? this.users : this.groups;
  }
}

export const filesKind: SourceKind<FilesConfig> = {
  kind: 'files',
  schema: filesSchema,
  summary: 'users and groups from passwd/group-format files, reloaded when they change',
  create(name, config, env) {
    const at = (p: string): string => (isAbsolute(p) ? p : resolve(env.baseDir, p));
    const log = env.log.child({ source: name });
    return new FilesSource(name, at(config.passwd ?? '/etc/passwd'), at(config.group ?? '/etc/group'), log);
  },
};
