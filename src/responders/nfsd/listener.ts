/**
 * NfsdResponder: serves the NFS server's idmap caches of one network namespace
 * (docs/PROTOCOLS.md §4) — `<procNetRpc>/nfs4.idtoname` and `<procNetRpc>/nfs4.nametoid`, where
 * `procNetRpc` is /proc/net/rpc for the daemon's own namespace or /proc/<pid>/net/rpc for a
 * container's. One instance per namespace, given that namespace's base Context; the client's auth
 * domain of each request is added to it (policy `match.authDomain`).
 *
 * - Both channels are opened O_RDWR at start and kept open: nfsd fails upcalls at once when no
 *   process holds a channel open for writing and none did in the last 30 s
 *   (cache_listeners_exist, net/sunrpc/cache.c), logging "nfsv4 idmapping failing". A channel
 *   that is missing (nfsd not loaded yet in that namespace) is retried every `retryMs`.
 * - One read() is one request; requests are answered concurrently, each with one write() of one
 *   line. A reply names its key (auth, type, id or name), so answers may go back in any order.
 * - expiry = now + answer.ttl, absolute wall-clock seconds; 1 s for an answer resolved while a
 *   reload flushed nfsd's caches (it may be the old policy's).
 * - No value for nametoid → a negative reply (a chown must not silently become nobody). No value
 *   for idtoname (a source error, a name nfsd cannot hold, a malformed request) → the bare
 *   `nobody`, as rpc.idmapd: a negative idtoname entry makes nfsd put the numeric id on the wire.
 *   Only a policy's explicit `unmapped.toName: negative` gets a negative idtoname reply.
 * - A malformed request is logged; when its key can still be read it is answered as above, else
 *   it is dropped (no reply could match it — nfsd then gives up on it after its own timeout).
 * - flushKernelCaches() writes the wall-clock time and a newline to each cache's `flush` file,
 *   on a fresh open each time: write_flush() takes only a write at offset 0, checks that it is a
 *   number and flushes the whole cache whatever the number (older kernels used it as a time).
 */
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../log.js';
import { readNsInode } from '../../ns/proc.js';
import type { Answer, Context, Request } from '../../types.js';
import { errnoOf, fdChannelOpener, type KernelChannel, type OpenChannel } from '../channel.js';
import { RESOLVE_TIMEOUT_MS, TIMED_OUT, within } from '../deadline.js';
import type { Responder, ResponderEnv, ResponderStatus } from '../responder.js';
import { CACHE_DIR, expiryAt, formatNegative, formatReply, NFSD_CACHES, printable, splitLines, type NfsdCache, type NfsdKey, parseRequest } from './codec.js';

export type NfsdBase = Omit<Context, 'iface' | 'authDomain' | 'pipefs'>;

export interface NfsdOptions {
  /** how channel and flush files are opened: real file descriptors by default, a simulation in tests */
  readonly openChannel?: OpenChannel;
  /** wall clock in ms, for expiry times (default Date.now) */
  readonly now?: () => number;
  /** retry opening a missing channel this often, in ms (default 5000) */
  readonly retryMs?: number;
  /** requests of one channel resolved at once; past it the channel is not read (default MAX_IN_FLIGHT) */
  readonly maxInFlight?: number;
  /** a request not resolved within this many ms is answered as for an error (default RESOLVE_TIMEOUT_MS) */
  readonly resolveTimeoutMs?: number;
  /** responder name in status and logs (default `nfsd:<procNetRpc>`) */
  readonly name?: string;
}

/** How long a negative answer to a malformed request is kept: long enough to stop a storm. */
export const MALFORMED_TTL = 60;
/** `/proc/<pid>/net/rpc`: a path that follows a process, not a namespace */
const PROC_PID_NET = /^\/proc\/(\d+)\/net\/rpc\/?$/;
/** Requests of one nfsd cache resolved at once (a handful of clients' `ls -l` fits easily). */
export const MAX_IN_FLIGHT = 64;
/** How long nfsd keeps the answer to a request that timed out. */
const TIMEOUT_TTL = 5;
/** How long nfsd keeps an answer resolved across a reload (its flush already happened). */
export const RELOAD_RACE_TTL = 1;
/** What idtoname answers when it has no name: rpc.idmapd's bare "nobody" (no domain). */
const NFSD_NOBODY = 'nobody';
/** Contexts kept per auth domain; cleared past this (auth domains are a handful of clients). */
const CONTEXTS_MAX = 256;

interface CacheChannel {
  readonly cache: NfsdCache;
  readonly channelPath: string;
  readonly flushPath: string;
  state: 'waiting' | 'open' | 'closed';
  opening: boolean;
  channel?: KernelChannel;
  loop?: Promise<void>;
  readonly inflight: Set<Promise<void>>;
  served: number;
  mapped: number;
  nobody: number;
  negative: number;
  malformed: number;
  dropped: number;
  rejected: number;
  /** requests answered as for an error because the resolver had no answer in time */
  timeouts: number;
  flushes: number;
  lastFlushAt?: number;
  lastError?: string;
  lastErrorAt?: number;
}

export class NfsdResponder implements Responder {
  readonly name: string;
  readonly procNetRpc: string;
  private readonly base: NfsdBase;
  private readonly open: OpenChannel;
  private readonly now: () => number;
  private readonly retryMs: number;
  private readonly maxInFlight: number;
  private readonly resolveTimeoutMs: number;
  private readonly caches: Record<NfsdCache, CacheChannel>;
  private readonly contexts = new Map<string, Context>();
  private env: ResponderEnv | undefined;
  private log: Logger = silentLogger;
  private running = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private seq = 0;

  constructor(procNetRpc: string, base: NfsdBase = {}, opts: NfsdOptions = {}) {
    this.procNetRpc = procNetRpc;
    this.base = base;
    this.open = opts.openChannel ?? fdChannelOpener();
    this.now = opts.now ?? Date.now;
    this.retryMs = opts.retryMs ?? 5000;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? MAX_IN_FLIGHT);
    this.resolveTimeoutMs = opts.resolveTimeoutMs ?? RESOLVE_TIMEOUT_MS;
    this.name = opts.name ?? `nfsd:${procNetRpc}`;
    const make = (cache: NfsdCache): CacheChannel => ({
      cache,
      channelPath: join(procNetRpc, CACHE_DIR[cache], 'channel'),
      flushPath: join(procNetRpc, CACHE_DIR[cache], 'flush'),
      state: 'waiting', opening: false, inflight: new Set(),
      served: 0, mapped: 0, nobody: 0, negative: 0, malformed: 0, dropped: 0, rejected: 0, timeouts: 0, flushes: 0,
    });
    this.caches = { idtoname: make('idtoname'), nametoid: make('nametoid') };
  }

  async start(env: ResponderEnv): Promise<void> {
    this.env = env;
    this.log = env.log.child({ responder: this.name, container: this.base.container?.id.slice(0, 12) });
    this.running = true;
    await Promise.all(NFSD_CACHES.map((c) => this.tryOpen(this.caches[c])));
    this.retryTimer = setInterval(() => {
      for (const c of NFSD_CACHES) if (this.caches[c].state === 'waiting') void this.tryOpen(this.caches[c]);
    }, this.retryMs);
    this.retryTimer.unref();
    this.log.info('nfsd.started', { procNetRpc: this.procNetRpc, idtoname: this.caches.idtoname.state, nametoid: this.caches.nametoid.state });
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearInterval(this.retryTimer);
    const waits: Promise<void>[] = [];
    for (const c of NFSD_CACHES) {
      const cc = this.caches[c];
      const ch = cc.channel;
      cc.channel = undefined;
      cc.state = 'closed';
      if (ch) void ch.close().catch(() => {});
      if (cc.loop) waits.push(cc.loop);
      waits.push(...cc.inflight);
    }
    await Promise.all(waits);
    this.log.info('nfsd.stopped', { procNetRpc: this.procNetRpc });
  }

  status(): ResponderStatus {
    const detail = NFSD_CACHES.map((c) => {
      const cc = this.caches[c];
      return {
        procNetRpc: this.procNetRpc,
        netns: this.base.netns?.inode,
        container: this.base.container?.id,
        cache: CACHE_DIR[c],
        channel: cc.channelPath,
        state: cc.state,
        served: cc.served,
        mapped: cc.mapped,
        nobody: cc.nobody,
        negative: cc.negative,
        malformed: cc.malformed,
        dropped: cc.dropped,
        rejected: cc.rejected,
        timeouts: cc.timeouts,
        inflight: cc.inflight.size,
        flushes: cc.flushes,
        lastFlush: cc.lastFlushAt === undefined ? undefined : new Date(cc.lastFlushAt).toISOString(),
        lastError: cc.lastError,
        lastErrorAt: cc.lastErrorAt === undefined ? undefined : new Date(cc.lastErrorAt).toISOString(),
      };
    });
    return { name: this.name, detail };
  }

  /**
   * After a policy reload or a cache flush: make nfsd forget every idmap answer of this namespace.
   * Never throws; a cache whose flush file is missing (nfsd not running here) is skipped.
   */
  async flushKernelCaches(): Promise<void> {
    await Promise.all(NFSD_CACHES.map((c) => this.flushOne(this.caches[c])));
  }

  private async flushOne(cc: CacheChannel): Promise<void> {
    const text = Buffer.from(`${Math.floor(this.now() / 1000)}\n`, 'latin1');
    let ch: KernelChannel | undefined;
    try {
      ch = await this.open(cc.flushPath, 'w');
      await ch.write(text);
      cc.flushes++;
      cc.lastFlushAt = this.now();
      this.log.info('nfsd.flushed', { cache: CACHE_DIR[cc.cache] });
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return;
      this.noteError(cc, `flush: ${(e as Error).message}`);
    } finally {
      await ch?.close().catch(() => {});
    }
  }

  // ---- channels ----

  /**
   * A channel path through /proc/<pid>/net names whatever namespace that pid is in now: once the
   * process is gone the number may be another's, in another namespace, whose caches this
   * responder would then answer with the wrong context. True when the path still reaches the
   * namespace this responder serves (or when it cannot tell: a path not under /proc/<pid>).
   */
  private stillOurNamespace(): boolean {
    const want = this.base.netns?.inode;
    const m = PROC_PID_NET.exec(this.procNetRpc);
    if (want === undefined || !m) return true;
    try {
      return readNsInode(Number(m[1]), 'net') === want;
    } catch {
      return false; // gone
    }
  }

  private async tryOpen(cc: CacheChannel): Promise<void> {
    if (!this.running || cc.state !== 'waiting' || cc.opening) return;
    if (!this.stillOurNamespace()) {
      this.noteError(cc, `open: ${this.procNetRpc} is no longer in network namespace ${this.base.netns?.inode} (its process is gone): waiting for the supervisor`);
      return;
    }
    cc.opening = true;
    let ch: KernelChannel;
    try {
      ch = await this.open(cc.channelPath, 'rw');
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') this.noteError(cc, `open: ${(e as Error).message}`);
      return;
    } finally {
      cc.opening = false;
    }
    // checked again: the pid may have changed hands while the open was under way
    if (!this.running || cc.state !== 'waiting' || !this.stillOurNamespace()) {
      void ch.close().catch(() => {});
      return;
    }
    cc.channel = ch;
    cc.state = 'open';
    this.log.info('nfsd.channel_opened', { cache: CACHE_DIR[cc.cache] });
    cc.loop = this.serve(cc, ch);
  }

  private async serve(cc: CacheChannel, ch: KernelChannel): Promise<void> {
    for (;;) {
      let buf: Buffer | null;
      try {
        buf = await ch.read();
      } catch (e) {
        this.noteError(cc, `read: ${(e as Error).message}`);
        break;
      }
      if (buf === null) break;
      for (const line of splitLines(buf)) this.track(cc, this.handle(cc, ch, line));
      // At the cap, read no more until one is answered: the kernel keeps the rest queued, and a
      // flood of distinct owners cannot fill the sources' queues (LDAP) and starve everyone.
      while (cc.inflight.size >= this.maxInFlight) await Promise.race(cc.inflight);
    }
    await ch.close().catch(() => {});
    if (cc.channel !== ch) return; // closed by stop()
    // the channel went away (nfsd unloaded, namespace gone): back to waiting, the retry timer reopens
    cc.channel = undefined;
    cc.state = 'waiting';
    this.log.warn('nfsd.channel_closed', { cache: CACHE_DIR[cc.cache] });
  }

  private track(cc: CacheChannel, work: Promise<void>): void {
    const p = work.catch((e: unknown) => {
      // nothing in handle() throws for any input; should it anyway, log it and keep serving
      this.log.error('nfsd.bug', { cache: CACHE_DIR[cc.cache], error: (e as Error)?.stack ?? String(e) });
    });
    cc.inflight.add(p);
    void p.then(() => cc.inflight.delete(p));
  }

  // ---- requests ----

  private async handle(cc: CacheChannel, ch: KernelChannel, line: Buffer): Promise<void> {
    const rid = ++this.seq;
    cc.served++;
    const p = parseRequest(cc.cache, line);
    if (!p.ok) {
      cc.malformed++;
      this.log.warn('nfsd.malformed', { rid, cache: CACHE_DIR[cc.cache], code: p.code, reason: p.reason, answered: p.key ? 'negative' : 'dropped' });
      if (!p.key) {
        cc.dropped++;
        return;
      }
      return this.write(cc, ch, this.unanswered(cc, p.key, expiryAt(this.now(), MALFORMED_TTL)), rid);
    }
    const generation = this.env!.resolver().generation;
    const answer = await this.resolve(p.request, this.contextFor(p.authDomain), rid, cc);
    if (answer === TIMED_OUT) {
      // a hung source (an NSS module waiting on a dead server) must not hold the request — and,
      // at maxInFlight, the whole channel: answered as for an error, for a few seconds
      cc.timeouts++;
      this.log.warn('nfsd.timeout', { rid, cache: CACHE_DIR[cc.cache], kind: p.request.kind, ms: this.resolveTimeoutMs });
      return this.write(cc, ch, this.unanswered(cc, p.key, expiryAt(this.now(), TIMEOUT_TTL)), rid);
    }
    // A reload or a cache flush (each flushes nfsd's caches) happened while this was resolved: the
    // answer may be the old one, and written now it would outlive the flush for its whole TTL. Let
    // nfsd keep it only briefly; its next question gets the new answer.
    const reloaded = this.env!.resolver().generation !== generation;
    if (reloaded) this.log.debug('nfsd.reloaded_meanwhile', { rid, cache: CACHE_DIR[cc.cache] });
    return this.write(cc, ch, this.replyFor(cc, p.key, answer, rid, reloaded ? RELOAD_RACE_TTL : undefined), rid);
  }

  /**
   * No answer to give (a malformed request with a readable key, a resolver error, a name nfsd
   * cannot hold). nametoid: negative — the kernel then refuses the owner (a chown gets EINVAL).
   * idtoname: `nobody`, as rpc.idmapd answers — a negative idtoname entry makes nfsd put the
   * numeric id on the wire (encode_ascii_id), which a client reads as one of its own ids.
   */
  private unanswered(cc: CacheChannel, key: NfsdKey, expiry: number): Buffer {
    if (key.cache === 'idtoname') {
      const f = formatReply(key, expiry, NFSD_NOBODY);
      if (f.ok) {
        cc.nobody++;
        return f.line;
      }
    }
    cc.negative++;
    return formatNegative(key, expiry);
  }

  private replyFor(cc: CacheChannel, key: NfsdKey, answer: Answer | undefined, rid: number, ttlCap?: number): Buffer {
    const ttl = answer?.ttl ?? MALFORMED_TTL;
    const expiry = expiryAt(this.now(), ttlCap === undefined ? ttl : Math.min(ttl, ttlCap));
    if (answer?.value !== undefined) {
      const f = formatReply(key, expiry, answer.value);
      if (f.ok) {
        if (answer.outcome === 'mapped') cc.mapped++;
        else cc.nobody++;
        if (this.log.on('debug')) this.log.debug('nfsd.answer', { rid, cache: CACHE_DIR[cc.cache], kind: answer.request.kind, outcome: answer.outcome, scope: answer.scope, auth: printable(key.auth) });
        return f.line;
      }
      this.log.warn('nfsd.unencodable', { rid, cache: CACHE_DIR[cc.cache], kind: answer.request.kind, reason: f.reason });
    }
    if (this.log.on('debug')) this.log.debug('nfsd.negative', { rid, cache: CACHE_DIR[cc.cache], outcome: answer?.outcome, reason: answer?.reason });
    // a negative the policy asked for (unmapped.toName: negative) is the policy's to give
    if (answer?.outcome === 'negative' && answer.value === undefined) {
      cc.negative++;
      return formatNegative(key, expiry);
    }
    return this.unanswered(cc, key, expiry);
  }

  private async write(cc: CacheChannel, ch: KernelChannel, line: Buffer, rid: number): Promise<void> {
    if (cc.channel !== ch) return; // stopped meanwhile: nfsd asks again on the next open
    try {
      await ch.write(line);
    } catch (e) {
      cc.rejected++;
      this.noteError(cc, `write: ${(e as Error).message}`, rid);
    }
  }

  /** The resolver's answer; TIMED_OUT when none comes within the deadline (a late one is dropped). */
  private async resolve(request: Request, ctx: Context, rid: number, cc: CacheChannel): Promise<Answer | undefined | typeof TIMED_OUT> {
    try {
      // no stoppers: stop() lets these finish (nfsd keeps its listener count for 30 s)
      return await within(this.env!.resolver().resolve(request, ctx), this.resolveTimeoutMs);
    } catch (e) {
      this.log.error('nfsd.resolve_bug', { rid, cache: CACHE_DIR[cc.cache], error: (e as Error)?.stack ?? String(e) });
      return undefined;
    }
  }

  /** The base Context with this request's auth domain; one object per auth domain, reused. */
  private contextFor(authDomain: string): Context {
    let ctx = this.contexts.get(authDomain);
    if (!ctx) {
      if (this.contexts.size >= CONTEXTS_MAX) this.contexts.clear();
      ctx = Object.freeze({ ...this.base, iface: 'nfsd', authDomain });
      this.contexts.set(authDomain, ctx);
    }
    return ctx;
  }

  private noteError(cc: CacheChannel, message: string, rid?: number): void {
    cc.lastError = message;
    cc.lastErrorAt = Date.now();
    this.log.warn('nfsd.error', { rid, cache: CACHE_DIR[cc.cache], error: message });
  }
}
