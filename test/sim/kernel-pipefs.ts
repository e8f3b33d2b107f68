/**
 * The KERNEL side of the NFS client's legacy idmap pipe, simulated (this machine has no NFS):
 * written from docs/PROTOCOLS.md §3 and fs/nfs/nfs4idmap.c + net/sunrpc/rpc_pipe.c, and on
 * purpose not from the codec under test — it shares no code with src/responders/pipefs/.
 *
 * What it models:
 * - real directories under a temp root: `<root>/nfs/clnt<hex>/` and its `idmap` file (an empty
 *   regular file: it only has to exist, so that the responder's directory watching runs for real),
 *   made late or removed on demand;
 * - per client one outstanding upcall: the next waits until the previous is answered, as the
 *   idmap mutex makes it (nfs_idmap_get_key → idmap_mutex; idmap_upcall_data);
 * - rpc_queue_upcall without a reader fails with EPIPE at once; read() returns one 140-byte
 *   message, null (EPIPE) once the pipe is gone; the last reader's close aborts the upcall;
 * - the downcall checks of idmap_pipe_downcall / nfs_idmap_read_and_verify_message, in the
 *   kernel's order, with the kernel's errno: size ≠ 140 → ENOSPC; no SUCCESS bit → ENOKEY;
 *   strnlen(im_name) 0 or 128 → EINVAL; type/conv not echoed → ENOKEY; NAMETOID name not echoed
 *   (strcmp) → ENOKEY; IDTONAME id not echoed → ENOKEY; unknown conv → EINVAL; a write with no
 *   upcall pending → ENOKEY. Every such write negates the key, except the last which touches none.
 *
 * The test double is reached through `openChannel`, the seam PipefsResponder takes.
 */
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { endianness } from 'node:os';
import { channelError, type KernelChannel, type OpenChannel } from '../../src/responders/channel.js';

export const MSG_SIZE = 140;
const NAMESZ = 128;
const OFF_NAME = 2;
const OFF_ID = 132;
const OFF_STATUS = 136;
const SUCCESS = 0x08;

export type SimType = 'user' | 'group';
export type SimConv = 'id-to-name' | 'name-to-id';

export interface SimUpcall {
  readonly type: SimType;
  readonly conv: SimConv;
  readonly name?: string | Buffer;
  readonly id?: number;
}

export type UpcallResult =
  /** the key was instantiated: `value` is the id (NAMETOID) or the name (IDTONAME) it holds */
  | { readonly kind: 'instantiated'; readonly value: number | string; readonly payload: Buffer; readonly cached?: boolean }
  /**
   * the key was negated by a downcall; `requested` when the reply was a well-formed failure reply
   * (140 bytes without SUCCESS: what a responder writes to say "no"), false when the kernel
   * refused a reply that meant to answer
   */
  | { readonly kind: 'negated'; readonly errno: string; readonly reason: string; readonly requested: boolean }
  /** no answer: no reader, pipe closed or removed before a downcall */
  | { readonly kind: 'failed'; readonly errno: string; readonly reason: string };

interface Pending {
  readonly msg: Buffer;
  readonly resolve: (r: UpcallResult) => void;
  /** the key description, when the upcall came through upcall() (for the shared keyring) */
  readonly description?: string;
}

/**
 * The host-wide `.id_resolver` keyring as the legacy path uses it. nfs_idmap_get_key() looks keys
 * up under the id_resolver_cache credential, and nfs_idmap_instantiate() links the answer into
 * that credential's thread keyring: `id_legacy` keys by bare description (`uid:alice@x`), one set
 * for the whole host, whichever namespace's pipe answered. Share one instance between the
 * SimPipefs of several namespaces to see what that means.
 */
export class SimLegacyKeyring {
  private readonly keys = new Map<string, { value: number | string; expires: number }>();
  constructor(
    private readonly now: () => number = Date.now,
    /** nfs_idmap_cache_timeout: 600 s by default */
    readonly timeoutSec = 600,
  ) {}
  get(description: string): number | string | undefined {
    const k = this.keys.get(description);
    return k && k.expires > this.now() ? k.value : undefined;
  }
  set(description: string, value: number | string): void {
    this.keys.set(description, { value, expires: this.now() + this.timeoutSec * 1000 });
  }
}

/** The key description the kernel builds for a lookup (nfs_idmap_get_desc). */
export function legacyDescription(m: SimUpcall): string {
  if (m.conv === 'name-to-id') return `${m.type === 'user' ? 'uid' : 'gid'}:${Buffer.from(m.name ?? '').toString('latin1')}`;
  return `${m.type}:${(m.id ?? 0) >>> 0}`;
}

class Client {
  readonly dir: string;
  readonly pipe: string;
  hasPipe = false;
  removed = false;
  /** messages queued and not yet read (pipe->pipe) */
  readonly queue: Buffer[] = [];
  /** idmap_upcall_data */
  pending: Pending | undefined;
  readonly readers = new Set<SimPipeChannel>();
  /** idmap_mutex: upcalls of one client run one at a time */
  mutex: Promise<unknown> = Promise.resolve();
  readonly wakers = new Set<() => void>();
  upcalls = 0;

  constructor(
    readonly name: string,
    nfsDir: string,
  ) {
    this.dir = join(nfsDir, name);
    this.pipe = join(this.dir, 'idmap');
  }

  wake(): void {
    for (const w of [...this.wakers]) w();
  }
}

export interface SimPipefsCounters {
  upcalls: number;
  instantiated: number;
  /** well-formed failure replies (no SUCCESS bit) */
  negativeReplies: number;
  /** replies the kernel refused: wrong size, bad name length, not echoed… */
  rejected: number;
  /** upcalls that ended without a downcall (pipe closed, client removed) */
  aborted: number;
  /** upcalls refused because nobody had the pipe open */
  noReader: number;
  /** writes with no upcall pending */
  strayWrites: number;
}

export class SimPipefs {
  readonly root: string;
  readonly nfsDir: string;
  readonly endian: 'LE' | 'BE';
  private readonly clients = new Map<string, Client>();
  private next = 0x1a;
  readonly counters: SimPipefsCounters = { upcalls: 0, instantiated: 0, negativeReplies: 0, rejected: 0, aborted: 0, noReader: 0, strayWrites: 0 };
  /** every refused reply, for test messages */
  readonly rejections: { clnt: string; errno: string; reason: string }[] = [];
  /** every downcall, in order, as written */
  readonly replies: { clnt: string; bytes: Buffer }[] = [];

  /** when set, answers are cached host-wide by description, as the kernel does (see SimLegacyKeyring) */
  readonly keyring: SimLegacyKeyring | undefined;

  constructor(root: string, opts: { endian?: 'LE' | 'BE'; keyring?: SimLegacyKeyring } = {}) {
    this.root = root;
    this.nfsDir = join(root, 'nfs');
    this.endian = opts.endian ?? endianness();
    this.keyring = opts.keyring;
  }

  async init(): Promise<this> {
    await mkdir(this.nfsDir, { recursive: true });
    return this;
  }

  /** Make `clnt<hex>/` and, unless `idmap: false`, its pipe. */
  async addClient(opts: { name?: string; idmap?: boolean } = {}): Promise<string> {
    const name = opts.name ?? `clnt${(this.next++).toString(16)}`;
    const c = new Client(name, this.nfsDir);
    this.clients.set(name, c);
    await mkdir(c.dir, { recursive: true });
    if (opts.idmap !== false) await this.createPipe(name);
    return name;
  }

  /** The pipe appears (rpc_mkpipe_dentry), after its directory. */
  async createPipe(clnt: string): Promise<void> {
    const c = this.client(clnt);
    // the flag first: a watcher woken by the file's creation must find the pipe openable
    c.hasPipe = true;
    await writeFile(c.pipe, '');
  }

  /** The client goes away (rpc_unlink of the pipe, then the directory): pending upcalls fail. */
  async removeClient(clnt: string): Promise<void> {
    const c = this.client(clnt);
    c.removed = true;
    c.hasPipe = false;
    this.clients.delete(clnt);
    c.queue.length = 0;
    this.abort(c, 'EPIPE', 'pipe removed');
    c.wake();
    await rm(c.dir, { recursive: true, force: true });
  }

  /**
   * The pipe alone goes away (nfs_idmap_pipe_destroy: rpc_unlink of `idmap`) while the directory
   * stays: readers get EPIPE, the pending upcall fails.
   */
  async removePipe(clnt: string): Promise<void> {
    const c = this.client(clnt);
    c.hasPipe = false;
    c.queue.length = 0;
    this.abort(c, 'EPIPE', 'pipe unlinked');
    for (const ch of [...c.readers]) ch.gone = true;
    c.wake();
    await rm(c.pipe, { force: true });
  }

  clientNames(): string[] {
    return [...this.clients.keys()];
  }

  /** Live readers of `clnt`'s pipe. */
  readers(clnt: string): number {
    return [...(this.clients.get(clnt)?.readers ?? [])].filter((r) => !r.gone).length;
  }

  /** Resolves once someone holds `clnt`'s pipe open for reading. */
  async waitForReader(clnt: string, timeoutMs = 5000): Promise<void> {
    const t0 = Date.now();
    while (this.readers(clnt) === 0) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`no reader on ${clnt} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** An upcall as nfs_idmap_legacy_upcall makes it; resolves when the key is complete. */
  upcall(clnt: string, m: SimUpcall): Promise<UpcallResult> {
    const description = legacyDescription(m);
    const cached = this.keyring?.get(description);
    if (cached !== undefined) return Promise.resolve({ kind: 'instantiated', value: cached, payload: Buffer.alloc(0), cached: true });
    return this.queueUpcall(clnt, this.message(m), description);
  }

  /** Queue any bytes as an upcall (the kernel never sends garbage; tests do). */
  upcallRaw(clnt: string, bytes: Buffer): Promise<UpcallResult> {
    return this.queueUpcall(clnt, Buffer.from(bytes), undefined);
  }

  private queueUpcall(clnt: string, bytes: Buffer, description: string | undefined): Promise<UpcallResult> {
    const c = this.client(clnt);
    const run = c.mutex.then(() => this.runUpcall(c, bytes, description));
    c.mutex = run.catch(() => {});
    return run;
  }

  /** The 140-byte struct idmap_msg of an upcall (nfs_idmap_prepare_message). */
  message(m: SimUpcall): Buffer {
    const b = Buffer.alloc(MSG_SIZE);
    b[0] = m.type === 'user' ? 0 : 1;
    b[1] = m.conv === 'id-to-name' ? 0 : 1;
    if (m.conv === 'name-to-id') {
      const name = typeof m.name === 'string' ? Buffer.from(m.name, 'utf8') : m.name ?? Buffer.alloc(0);
      name.copy(b, OFF_NAME, 0, Math.min(name.length, NAMESZ - 1)); // match_strlcpy
    } else {
      this.writeU32(b, m.id ?? 0);
    }
    return b;
  }

  private async runUpcall(c: Client, msg: Buffer, description: string | undefined): Promise<UpcallResult> {
    this.counters.upcalls++;
    c.upcalls++;
    if (c.removed || !c.hasPipe || ![...c.readers].some((r) => !r.gone)) {
      this.counters.noReader++;
      return { kind: 'failed', errno: 'EPIPE', reason: 'no reader on the pipe (rpc_queue_upcall)' };
    }
    return new Promise<UpcallResult>((resolve) => {
      c.pending = { msg, resolve, description };
      c.queue.push(msg);
      c.wake();
    });
  }

  /** Complete the pending upcall without a downcall (idmap_release_pipe, rpc_close_pipes). */
  private abort(c: Client, errno: string, reason: string): void {
    const p = c.pending;
    if (!p) return;
    c.pending = undefined;
    this.counters.aborted++;
    p.resolve({ kind: 'failed', errno, reason });
  }

  // ---- the file side, for the responder ----

  readonly openChannel: OpenChannel = async (path, mode) => {
    const rel = relative(this.nfsDir, path);
    const parts = rel.split(sep);
    const c = parts.length === 2 && parts[1] === 'idmap' ? this.clients.get(parts[0]!) : undefined;
    if (!c || c.removed || !c.hasPipe || !existsSync(path)) throw channelError('ENOENT', `open ${path}`);
    if (mode !== 'rw') throw channelError('EINVAL', `open ${path} write-only: the responder must read the pipe`);
    const ch = new SimPipeChannel(this, c);
    c.readers.add(ch);
    return ch;
  };

  /** rpc_pipe_read: the next queued message, or wait for one. */
  async read(c: Client, ch: SimPipeChannel): Promise<Buffer | null> {
    for (;;) {
      if (ch.closed || ch.gone || c.removed) return null;
      const msg = c.queue.shift();
      if (msg) return Buffer.from(msg);
      await new Promise<void>((resolve) => {
        const w = () => {
          c.wakers.delete(w);
          ch.wakers.delete(w);
          resolve();
        };
        c.wakers.add(w);
        ch.wakers.add(w);
      });
    }
  }

  /** rpc_pipe_write → idmap_pipe_downcall. Returns normally for an accepted reply, else throws errno. */
  write(c: Client, ch: SimPipeChannel, reply: Uint8Array): void {
    if (ch.closed) throw channelError('EBADF', 'write to a closed pipe');
    if (c.removed || ch.gone) throw channelError('EPIPE', `write to removed ${c.pipe}`);
    const p = c.pending;
    if (!p) {
      this.counters.strayWrites++;
      throw channelError('ENOKEY', `write to ${c.name} with no upcall pending`);
    }
    c.pending = undefined;
    this.replies.push({ clnt: c.name, bytes: Buffer.from(reply) });
    const r = this.downcall(p.msg, Buffer.from(reply));
    if (r.kind === 'instantiated') {
      this.counters.instantiated++;
      if (p.description !== undefined) this.keyring?.set(p.description, r.value);
    }
    else if (r.kind === 'negated' && r.requested) this.counters.negativeReplies++;
    else if (r.kind === 'negated') {
      this.counters.rejected++;
      this.rejections.push({ clnt: c.name, errno: r.errno, reason: r.reason });
    }
    p.resolve(r);
    if (r.kind === 'negated') throw channelError(r.errno, `idmap downcall on ${c.name}: ${r.reason}`);
  }

  /** The last reader's close aborts the upcall (rpc_pipe_release → idmap_release_pipe). */
  close(c: Client, ch: SimPipeChannel): void {
    c.readers.delete(ch);
    for (const w of [...ch.wakers]) w();
    if (c.readers.size === 0) {
      c.queue.length = 0;
      this.abort(c, 'EPIPE', 'last reader closed the pipe');
    }
  }

  /** The kernel's checks, in its order; what the key ends up as. */
  downcall(upcall: Buffer, reply: Buffer): UpcallResult {
    const neg = (errno: string, reason: string, requested = false): UpcallResult => ({ kind: 'negated', errno, reason, requested });
    if (reply.length !== MSG_SIZE) return neg('ENOSPC', `reply of ${reply.length} bytes, not ${MSG_SIZE}`);
    if ((reply[OFF_STATUS]! & SUCCESS) === 0) return neg('ENOKEY', `im_status 0x${reply[OFF_STATUS]!.toString(16)} has no SUCCESS bit`, true);
    const nameLen = cstrlen(reply, OFF_NAME, NAMESZ);
    if (nameLen === 0 || nameLen === NAMESZ) return neg('EINVAL', `reply im_name length ${nameLen === 0 ? 0 : '≥ 128'}`);
    if (reply[0] !== upcall[0] || reply[1] !== upcall[1]) return neg('ENOKEY', `type/conv ${reply[0]}/${reply[1]} do not echo ${upcall[0]}/${upcall[1]}`);
    const name = reply.subarray(OFF_NAME, OFF_NAME + nameLen);
    switch (reply[1]) {
      case 1: {
        const asked = upcall.subarray(OFF_NAME, OFF_NAME + cstrlen(upcall, OFF_NAME, NAMESZ));
        if (!asked.equals(name)) return neg('ENOKEY', `NAMETOID name ${JSON.stringify(name.toString('latin1'))} does not echo ${JSON.stringify(asked.toString('latin1'))}`);
        const id = this.readU32(reply);
        return { kind: 'instantiated', value: id, payload: Buffer.from(`${id}\0`, 'latin1') };
      }
      case 0: {
        const asked = this.readU32(upcall);
        const got = this.readU32(reply);
        if (asked !== got) return neg('ENOKEY', `IDTONAME id ${got} does not echo ${asked}`);
        return { kind: 'instantiated', value: name.toString('utf8'), payload: Buffer.from(name) };
      }
      default:
        return neg('EINVAL', `unknown im_conv ${reply[1]}`);
    }
  }

  private client(clnt: string): Client {
    const c = this.clients.get(clnt);
    if (!c) throw new Error(`no simulated client ${clnt}`);
    return c;
  }

  private readU32(b: Buffer): number {
    return this.endian === 'LE' ? b.readUInt32LE(OFF_ID) : b.readUInt32BE(OFF_ID);
  }

  private writeU32(b: Buffer, v: number): void {
    if (this.endian === 'LE') b.writeUInt32LE(v >>> 0, OFF_ID);
    else b.writeUInt32BE(v >>> 0, OFF_ID);
  }

  /** For tests: the clnt name of a pipe path. */
  static clntOf(pipe: string): string {
    return basename(dirname(pipe));
  }
}

/** strnlen of a C string field. */
function cstrlen(b: Buffer, off: number, max: number): number {
  const i = b.subarray(off, off + max).indexOf(0);
  return i < 0 ? max : i;
}

export class SimPipeChannel implements KernelChannel {
  closed = false;
  /** the pipe this was opened on was unlinked (the file stays open, and dead) */
  gone = false;
  readonly wakers = new Set<() => void>();
  constructor(
    private readonly sim: SimPipefs,
    private readonly c: Client,
  ) {}

  read(): Promise<Buffer | null> {
    return this.sim.read(this.c, this);
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.sim.write(this.c, this, bytes);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sim.close(this.c, this);
  }
}
