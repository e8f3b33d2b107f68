/**
 * PipefsResponder: serves the NFS client's legacy idmap upcalls of one rpc_pipefs mount
 * (docs/PROTOCOLS.md §3) — the path taken by mounts made outside the init user namespace, i.e.
 * containers. One instance per mount; the daemon makes one per network namespace it serves and
 * hands it that namespace's base Context (netns, container, userns…).
 *
 *   <root>/nfs/clnt<hex>/        one directory per RPC client, made and removed by the kernel
 *   <root>/nfs/clnt<hex>/idmap   the pipe; may appear after its directory
 *
 * Watching: fs.watch (inotify) on `<root>/nfs` for `clnt*` directories coming and going, and on
 * each directory still waiting for its `idmap`; a periodic rescan catches anything a watch missed
 * (an overflowed inotify queue, a mount made before `nfs` existed).
 *
 * Serving: each pipe is opened O_RDWR and read in a loop, one 140-byte message per read. The
 * kernel keeps one upcall outstanding per client (the idmap mutex and idmap_upcall_data in
 * fs/nfs/nfs4idmap.c), so a client's upcalls are answered one after the other, each with exactly
 * one write, on the pipe it came from — replies cannot cross between clients.
 *
 * What is written:
 * - a value from the resolver (mapped, nobody, squashed, unmappable) → SUCCESS + the value. With
 *   the resolver's `pipefs` defaults unknown names and ids answer nobody both ways, as rpc.idmapd
 *   does (it always sets SUCCESS, so the kernel caches the nobody answer).
 * - no value (a scope with `unmapped: negative`, a source fault, an answer the kernel could not
 *   take, a malformed upcall) → a failure reply: the upcall echoed with LOOKUPFAIL, AGAIN or
 *   INVALIDMSG and no SUCCESS bit. idmap_pipe_downcall() then completes the key construction with
 *   -ENOKEY: the key is negated for key_negative_timeout (60 s), and the write(2) returns ENOKEY,
 *   which is therefore the expected result of a failure reply, not an error. A failure reply is
 *   the only way to free the client's one outstanding upcall without an answer: leaving an upcall
 *   unanswered would stall every later lookup of that client.
 * - a NAMETOID name of exactly 127 bytes → a failure reply, logged as `pipefs.truncated`: the
 *   kernel cuts longer names to that length and would file our answer under the whole name.
 * - an answer not there within RESOLVE_TIMEOUT_MS → a failure reply, logged as `pipefs.timeout`;
 *   the kernel waits for the downcall holding the client's idmap_mutex, so one stuck lookup (an
 *   `nss` source in a hung sssd) would otherwise stall every id mapping of that client. The late
 *   answer is dropped. Anything that throws while the reply is made → a failure reply too.
 * - the kernel sets the key's lifetime itself (nfs_idmap_cache_timeout, 600 s by default); the
 *   answer's ttl cannot be passed on this path.
 *
 * Where the answer lands: not in anything per namespace. nfs_idmap_get_key() looks keys up under
 * the id_resolver_cache credential and nfs_idmap_instantiate() links the answer into its thread
 * keyring — the one host-wide `.id_resolver` keyring — as an `id_legacy` key named by the bare
 * description (`uid:alice@example.com`, `user:1000`). Every NFS client of the host, in every
 * namespace, reads that key until it expires. So, as for keyring upcalls (DESIGN.md "Which context
 * may choose a scope"), an answer given here must be a function of the description: a scope chosen
 * by the container of this mount is safe only where the descriptions it answers are its own (its
 * own id range, its own domain). What is per namespace is which daemon hears the upcall and the
 * user namespace the kernel reads the id in (idmap_userns, the mounter's).
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../log.js';
import type { Answer, Context, Request } from '../../types.js';
import { errnoOf, fdChannelOpener, type KernelChannel, type OpenChannel } from '../channel.js';
import { RESOLVE_TIMEOUT_MS, STOPPING, TIMED_OUT, within } from '../deadline.js';
import type { Responder, ResponderEnv, ResponderStatus } from '../responder.js';
import { decodeUpcall, encodeFailure, encodeReply, IM_STATUS, type Endian } from './codec.js';


/** What the daemon knows about the namespace this mount belongs to; iface and pipefs are filled in. */
export type PipefsBase = Omit<Context, 'iface' | 'pipefs' | 'authDomain'>;

export interface PipefsOptions {
  /** how pipes are opened: real file descriptors by default, a simulation in tests */
  readonly openChannel?: OpenChannel;
  /** full rescan of `<root>/nfs` every this many ms, in case a watch event was missed (0: never) */
  readonly rescanMs?: number;
  /** wait this long before reopening a pipe that just went away while its directory stayed */
  readonly reopenMs?: number;
  /** byte order of im_id (default: this host's, which is the kernel's) */
  readonly endian?: Endian;
  /** responder name in status and logs (default `pipefs:<root>`) */
  readonly name?: string;
  /** how `<root>/nfs` is listed (default: fs.promises.readdir with file types); a seam for tests */
  readonly listDir?: ListDir;
  /** an upcall not resolved within this many ms gets a failure reply (default RESOLVE_TIMEOUT_MS) */
  readonly resolveTimeoutMs?: number;
}

/** The entries of a directory, as readdir(path, { withFileTypes: true }) gives them. */
export type ListDir = (path: string) => Promise<readonly { readonly name: string; isDirectory(): boolean }[]>;

const readdirTyped: ListDir = (path) => readdir(path, { withFileTypes: true });

export const CLNT_DIR = /^clnt[0-9a-f]+$/;


type ClientStateName = 'waiting' | 'open' | 'closed';

/** One clnt directory and its pipe. */
interface Client {
  readonly clnt: string;
  readonly dir: string;
  readonly pipe: string;
  state: ClientStateName;
  removed: boolean;
  opening: boolean;
  /** a watch event came while an open was in flight: try again when it fails */
  again: boolean;
  channel?: KernelChannel;
  watcher?: FSWatcher;
  loop?: Promise<void>;
  retry?: NodeJS.Timeout;
  /** ms timestamp before which the pipe is not reopened */
  reopenAfter: number;
  served: number;
  mapped: number;
  nobody: number;
  negative: number;
  malformed: number;
  rejected: number;
  /** failure replies because the resolver had no answer in time (counted in `negative` too) */
  timeouts: number;
  lastError?: string;
  lastErrorAt?: number;
  openedAt?: number;
}

export class PipefsResponder implements Responder {
  readonly name: string;
  readonly root: string;
  private readonly nfsDir: string;
  private readonly ctx: Context;
  private readonly open: OpenChannel;
  private readonly rescanMs: number;
  private readonly reopenMs: number;
  private readonly endian: Endian | undefined;
  private readonly listDir: ListDir;
  private readonly resolveTimeoutMs: number;
  /** One per lookup under way (deadline.ts `within`), called by stop(): it gives up (its pipe is closing anyway). */
  private readonly onStop = new Set<() => void>();
  private env: ResponderEnv | undefined;
  private log: Logger = silentLogger;
  private running = false;
  private readonly clients = new Map<string, Client>();
  private rootWatcher: FSWatcher | undefined;
  private watchingNfsDir = false;
  private rescanTimer: NodeJS.Timeout | undefined;
  private scanChain: Promise<void> = Promise.resolve();
  private scanQueued = false;
  private seq = 0;
  /** clients seen go away, for status */
  private gone = 0;

  constructor(root: string, base: PipefsBase = {}, opts: PipefsOptions = {}) {
    this.root = root;
    this.nfsDir = join(root, 'nfs');
    this.ctx = Object.freeze({ ...base, iface: 'pipefs', pipefs: root });
    this.open = opts.openChannel ?? fdChannelOpener();
    this.rescanMs = opts.rescanMs ?? 30_000;
    this.reopenMs = opts.reopenMs ?? 1000;
    this.endian = opts.endian;
    this.listDir = opts.listDir ?? readdirTyped;
    this.resolveTimeoutMs = opts.resolveTimeoutMs ?? RESOLVE_TIMEOUT_MS;
    this.name = opts.name ?? `pipefs:${root}`;
  }

  /** The Context every upcall of this mount is resolved with. */
  get context(): Context {
    return this.ctx;
  }

  async start(env: ResponderEnv): Promise<void> {
    this.env = env;
    this.log = env.log.child({ responder: this.name, container: this.ctx.container?.id.slice(0, 12) });
    this.running = true;
    this.watchRoot();
    this.scheduleScan();
    await this.scanChain;
    if (this.rescanMs > 0) {
      this.rescanTimer = setInterval(() => this.scheduleScan(), this.rescanMs);
      this.rescanTimer.unref();
    }
    this.log.info('pipefs.started', { root: this.root, clients: this.clients.size });
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const giveUp of [...this.onStop]) giveUp();
    clearInterval(this.rescanTimer);
    this.rootWatcher?.close();
    this.rootWatcher = undefined;
    const loops: Promise<void>[] = [];
    for (const c of this.clients.values()) {
      this.release(c);
      if (c.loop) loops.push(c.loop);
    }
    await Promise.all(loops);
    await this.scanChain;
    this.log.info('pipefs.stopped', { root: this.root });
  }

  status(): ResponderStatus {
    const base = { pipefs: this.root, netns: this.ctx.netns?.inode, container: this.ctx.container?.id };
    const detail: Record<string, unknown>[] = [];
    for (const c of this.clients.values()) {
      detail.push({
        ...base,
        clnt: c.clnt,
        pipe: c.pipe,
        state: c.state,
        openedAt: c.openedAt === undefined ? undefined : new Date(c.openedAt).toISOString(),
        served: c.served,
        mapped: c.mapped,
        nobody: c.nobody,
        negative: c.negative,
        malformed: c.malformed,
        rejected: c.rejected,
        timeouts: c.timeouts,
        lastError: c.lastError,
        lastErrorAt: c.lastErrorAt === undefined ? undefined : new Date(c.lastErrorAt).toISOString(),
      });
    }
    if (detail.length === 0) detail.push({ ...base, state: this.watchingNfsDir ? 'no clients' : 'waiting for nfs/', gone: this.gone });
    return { name: this.name, detail };
  }

  // ---- directories ----

  /** Watch `<root>/nfs`, or `<root>` until `nfs` appears there. */
  private watchRoot(): void {
    if (!this.running) return;
    if (this.rootWatcher && this.watchingNfsDir) return;
    const w = tryWatch(this.nfsDir, () => this.scheduleScan()) ?? tryWatch(this.root, () => this.scheduleScan());
    if (!w) return; // nothing to watch yet: the periodic rescan tries again
    this.rootWatcher?.close();
    this.rootWatcher = w.watcher;
    this.watchingNfsDir = w.path === this.nfsDir;
    w.watcher.on('error', () => {
      // the watched directory went away (rpc_pipefs unmounted): fall back to rescans
      if (this.rootWatcher === w.watcher) this.rootWatcher = undefined;
      this.watchingNfsDir = false;
      w.watcher.close();
      this.scheduleScan();
    });
  }

  /** Coalesce bursts of watch events into one scan; scans never overlap. */
  private scheduleScan(): void {
    if (!this.running || this.scanQueued) return;
    this.scanQueued = true;
    this.scanChain = this.scanChain.then(() => {
      this.scanQueued = false;
      return this.rescan();
    });
  }

  /** Bring the client table in line with the directory. */
  private async rescan(): Promise<void> {
    if (!this.running) return;
    if (!this.watchingNfsDir) this.watchRoot();
    let present: Set<string>;
    try {
      present = await listClnt(this.nfsDir, this.listDir);
    } catch (e) {
      // EMFILE, ENOMEM…: not "no clients" — closing every pipe would abort the upcalls in flight
      this.log.warn('pipefs.scan_failed', { dir: this.nfsDir, error: (e as Error)?.message ?? String(e), clients: this.clients.size });
      return;
    }
    if (!this.running) return;
    for (const clnt of present) if (!this.clients.has(clnt)) this.addClient(clnt);
    for (const c of [...this.clients.values()]) {
      if (!present.has(c.clnt)) this.removeClient(c, 'directory removed');
      else if (c.state === 'waiting') void this.tryOpen(c);
    }
  }

  private addClient(clnt: string): void {
    const dir = join(this.nfsDir, clnt);
    const c: Client = {
      clnt, dir, pipe: join(dir, 'idmap'), state: 'waiting', removed: false, opening: false, again: false, reopenAfter: 0,
      served: 0, mapped: 0, nobody: 0, negative: 0, malformed: 0, rejected: 0, timeouts: 0,
    };
    this.clients.set(clnt, c);
    this.log.info('pipefs.client_added', { clnt });
    void this.tryOpen(c);
  }

  private removeClient(c: Client, why: string): void {
    c.removed = true;
    this.release(c);
    this.clients.delete(c.clnt);
    this.gone++;
    this.log.info('pipefs.client_removed', { clnt: c.clnt, why, served: c.served });
  }

  /** Close the client's watcher, retry timer and pipe; its loop ends on its own. */
  private release(c: Client): void {
    c.watcher?.close();
    c.watcher = undefined;
    clearTimeout(c.retry);
    const ch = c.channel;
    c.channel = undefined;
    c.state = 'closed';
    if (ch) void ch.close().catch(() => {});
  }

  /** Watch a directory that has no `idmap` yet, so its arrival opens it without waiting for a rescan. */
  private watchClient(c: Client): void {
    if (c.watcher) return;
    const w = tryWatch(c.dir, (file) => {
      if (file === null || file === 'idmap') void this.tryOpen(c);
    });
    if (!w) return;
    c.watcher = w.watcher;
    w.watcher.on('error', () => {
      w.watcher.close();
      if (c.watcher === w.watcher) c.watcher = undefined;
      this.scheduleScan();
    });
  }

  private async tryOpen(c: Client): Promise<void> {
    if (c.opening) c.again = true;
    if (!this.running || c.removed || c.state !== 'waiting' || c.opening) return;
    const wait = c.reopenAfter - Date.now();
    if (wait > 0) {
      clearTimeout(c.retry);
      c.retry = setTimeout(() => void this.tryOpen(c), wait);
      c.retry.unref();
      return;
    }
    this.watchClient(c);
    c.opening = true;
    c.again = false;
    let ch: KernelChannel;
    try {
      ch = await this.open(c.pipe, 'rw');
    } catch (e) {
      c.opening = false;
      const errno = errnoOf(e);
      // ENOENT: the pipe is not there yet; the directory watch or a rescan brings us back —
      // unless its event came while this open was failing: then try once more now
      if (errno !== 'ENOENT') this.noteError(c, `open: ${(e as Error).message}`);
      else if (c.again) void this.tryOpen(c);
      return;
    }
    c.opening = false;
    if (!this.running || c.removed || c.state !== 'waiting') {
      void ch.close().catch(() => {});
      return;
    }
    c.watcher?.close();
    c.watcher = undefined;
    c.channel = ch;
    c.state = 'open';
    c.openedAt = Date.now();
    this.log.info('pipefs.pipe_opened', { clnt: c.clnt });
    c.loop = this.serve(c, ch);
  }

  // ---- upcalls ----

  private async serve(c: Client, ch: KernelChannel): Promise<void> {
    for (;;) {
      let msg: Buffer | null;
      try {
        msg = await ch.read();
      } catch (e) {
        this.noteError(c, `read: ${(e as Error).message}`);
        break;
      }
      if (msg === null) break;
      try {
        await this.answer(c, ch, msg);
      } catch (e) {
        // answer() writes a failure reply for whatever throws while the reply is made; this is
        // past its write, so writing again here would answer the client's next upcall instead
        this.log.error('pipefs.bug', { clnt: c.clnt, error: (e as Error)?.stack ?? String(e) });
      }
    }
    await ch.close().catch(() => {});
    if (c.channel !== ch) return; // released by stop() or removal
    // the pipe went away under us (EPIPE/POLLHUP) while the directory may remain
    c.channel = undefined;
    c.state = 'waiting';
    c.reopenAfter = Date.now() + this.reopenMs;
    this.log.info('pipefs.pipe_closed', { clnt: c.clnt });
    this.scheduleScan();
  }

  private async answer(c: Client, ch: KernelChannel, raw: Buffer): Promise<void> {
    const rid = ++this.seq;
    let out: { reply: Buffer; failure: boolean };
    try {
      out = await this.replyFor(c, raw, rid);
    } catch (e) {
      // nothing in replyFor throws for any input; should it anyway, the upcall still needs its
      // one downcall: without it the client's idmap_mutex stays held
      this.log.error('pipefs.bug', { rid, clnt: c.clnt, error: (e as Error)?.stack ?? String(e) });
      out = { reply: encodeFailure(undefined, raw, IM_STATUS.AGAIN, this.endian), failure: true };
    }
    const { reply, failure } = out;
    c.served++;
    if (c.channel !== ch) return; // stopped or removed while resolving: the upcall is gone with the pipe
    try {
      await ch.write(reply);
    } catch (e) {
      const errno = errnoOf(e);
      // A failure reply is meant to be refused with ENOKEY: that is how the kernel negates the key.
      if (failure && errno === 'ENOKEY') return;
      c.rejected++;
      this.noteError(c, `write: ${(e as Error).message}`, rid);
    }
  }

  /** The 140 bytes answering `raw`, and whether they are a failure reply. */
  private async replyFor(c: Client, raw: Buffer, rid: number): Promise<{ reply: Buffer; failure: boolean }> {
    const d = decodeUpcall(raw, this.endian);
    if (!d.ok && d.error.code === 'name-truncated' && d.msg) {
      // the kernel's doing, not a malformed message: no warning
      c.negative++;
      this.log.info('pipefs.truncated', { rid, clnt: c.clnt, type: d.msg.type, name: d.msg.name.toString('utf8'), reason: d.error.reason });
      return { reply: encodeFailure(d.msg, raw, IM_STATUS.LOOKUPFAIL, this.endian), failure: true };
    }
    if (!d.ok) {
      c.malformed++;
      this.log.warn('pipefs.malformed', { rid, clnt: c.clnt, code: d.error.code, reason: d.error.reason, bytes: raw.length });
      return { reply: encodeFailure(d.msg, raw, IM_STATUS.INVALIDMSG, this.endian), failure: true };
    }
    const answer = await this.resolve(d.request, rid, c);
    if (answer === STOPPING) return { reply: encodeFailure(d.msg, raw, IM_STATUS.AGAIN, this.endian), failure: true };
    if (answer === TIMED_OUT) {
      c.negative++;
      c.timeouts++;
      this.log.warn('pipefs.timeout', { rid, clnt: c.clnt, kind: d.request.kind, ms: this.resolveTimeoutMs });
      return { reply: encodeFailure(d.msg, raw, IM_STATUS.AGAIN, this.endian), failure: true };
    }
    if (answer?.value !== undefined) {
      const enc = encodeReply(d.msg, answer.value, this.endian);
      if (enc.ok) {
        if (answer.outcome === 'mapped') c.mapped++;
        else c.nobody++;
        if (this.log.on('debug')) this.log.debug('pipefs.answer', { rid, clnt: c.clnt, kind: d.request.kind, outcome: answer.outcome, scope: answer.scope });
        return { reply: enc.bytes, failure: false };
      }
      this.log.warn('pipefs.unencodable', { rid, clnt: c.clnt, kind: d.request.kind, reason: enc.reason });
    }
    c.negative++;
    if (this.log.on('debug')) this.log.debug('pipefs.negative', { rid, clnt: c.clnt, kind: d.request.kind, outcome: answer?.outcome, reason: answer?.reason });
    const status = answer?.outcome === 'error' ? IM_STATUS.AGAIN : IM_STATUS.LOOKUPFAIL;
    return { reply: encodeFailure(d.msg, raw, status, this.endian), failure: true };
  }

  /** The resolver's answer; TIMED_OUT when it has none within the deadline (a later one is dropped). */
  private async resolve(request: Request, rid: number, c: Client): Promise<Answer | undefined | typeof TIMED_OUT | typeof STOPPING> {
    try {
      return await within(this.env!.resolver().resolve(request, this.ctx), this.resolveTimeoutMs, this.onStop);
    } catch (e) {
      // the resolver turns faults into answers; reaching here is a bug — answer, log, go on
      this.log.error('pipefs.resolve_bug', { rid, clnt: c.clnt, error: (e as Error)?.stack ?? String(e) });
      return undefined;
    }
  }

  private noteError(c: Client, message: string, rid?: number): void {
    c.lastError = message;
    c.lastErrorAt = Date.now();
    this.log.warn('pipefs.error', { rid, clnt: c.clnt, error: message });
  }
}

/** Errors of readdir that mean there is no `nfs` directory, hence no clients. */
const NO_DIR = new Set(['ENOENT', 'ENOTDIR']);

/**
 * clnt* directories under `nfsDir`: empty when it does not exist (ENOENT, ENOTDIR). Any other
 * failure (EMFILE, ENOMEM, EACCES…) says nothing about the clients and is thrown.
 */
export async function listClnt(nfsDir: string, listDir: ListDir = readdirTyped): Promise<Set<string>> {
  let entries: Awaited<ReturnType<ListDir>>;
  try {
    entries = await listDir(nfsDir);
  } catch (e) {
    if (NO_DIR.has(errnoOf(e) ?? '')) return new Set();
    throw e;
  }
  return new Set(entries.filter((e) => e.isDirectory() && CLNT_DIR.test(e.name)).map((e) => e.name));
}

function tryWatch(path: string, onEvent: (file: string | null) => void): { path: string; watcher: FSWatcher } | undefined {
  try {
    const watcher = watch(path, { persistent: false }, (_ev, file) => onEvent(file === null ? null : String(file)));
    return { path, watcher };
  } catch {
    return undefined;
  }
}
