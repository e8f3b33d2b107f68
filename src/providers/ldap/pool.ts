/**
 * A small pool of persistent LDAP connections over one or more servers, in failover order.
 *
 * - Connections are opened in start() and kept. A connection is opened whole or not at all:
 *   TCP (or TLS for ldaps://), StartTLS when asked, then the bind. ldapts would otherwise
 *   reconnect a closed connection by itself on the next operation — unbound (so an ACL'd directory
 *   answers "not found") and, after StartTLS, in clear text — so each Client here may open its
 *   socket once, and a connection that closed is replaced by a new, fully set-up one ("re-bound on
 *   reconnect").
 * - LDAP multiplexes requests on a connection by message id (RFC 4511 §4.1.1): a connection carries
 *   several searches at once, and the pool bounds the total in flight. Past that, requests wait in
 *   a bounded queue; past the queue they fail at once (SourceFault): a directory that stopped
 *   answering must not pile up work and memory in the daemon.
 * - Every request has one deadline (`timeout`): waiting, connecting, and the search itself (ldapts
 *   destroys a connection whose request timed out, which settles everything else on it).
 * - A server that fails (refused, reset, TLS or bind failure, a timeout, or LDAP busy/unavailable —
 *   RFC 4511 §4.1.9 codes 51/52) is taken out and the next URI in order serves. The failed one is
 *   probed in the background with exponential back-off; when it answers again it serves again
 *   (failback: the URI order is the operator's preference). While every server is out, requests
 *   fail at once and the resolver serves from its cache.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { Client, ResultCodeError } from 'ldapts';
import type { Logger } from '../../log.js';
import { SourceFault, type SourceHealth } from '../source.js';
import { parseFilter } from './filter.js';

/** How the pool authenticates each connection. The password is held here and nowhere else. */
export type Auth = { readonly kind: 'anonymous' } | { readonly kind: 'simple'; readonly dn: string; readonly password: string } | { readonly kind: 'external' };

export interface TlsSettings {
  readonly startTls: boolean;
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly verify: boolean;
}

export interface PoolOptions {
  /** the source's name, for SourceFault */
  readonly source: string;
  readonly uris: readonly string[];
  readonly size: number;
  readonly timeoutMs: number;
  readonly tls: TlsSettings | undefined;
  readonly auth: Auth;
  readonly log: Logger;
  /** requests one connection carries at once (default 16) */
  readonly pipeline?: number;
  /** requests that may wait for a free slot (default 1000) */
  readonly queue?: number;
  /** first and longest wait before probing a failed server again (default 100 ms, 500 ms) */
  readonly backoffMs?: { readonly min: number; readonly max: number };
}

export interface PoolStats {
  readonly inFlight: number;
  readonly queued: number;
  readonly maxInFlight: number;
  readonly maxQueue: number;
  /** connections open and usable */
  readonly connections: number;
  /** requests refused because the pool and its queue were full */
  readonly saturated: number;
  readonly timeouts: number;
  /** connections the pool keeps */
  readonly size: number;
  /** times a server was taken out of service (once per outage) */
  readonly failovers: number;
}

export const DEFAULT_PIPELINE = 16;
/**
 * A burst of distinct lookups (a directory listing of many owners) may well exceed what is in
 * flight; waiting costs a closure and a timer each, and a wait never outlives the request timeout.
 */
export const DEFAULT_QUEUE = 1000;
export const DEFAULT_BACKOFF = { min: 100, max: 500 } as const;

/**
 * LDAP result codes that say "this server cannot serve now" rather than "this is the answer":
 * busy (51) and unavailable (52), RFC 4511 appendix A. Another server may well answer.
 */
const SERVER_TROUBLE = new Set([51, 52]);

/**
 * Bind refused: inappropriateAuthentication (48), invalidCredentials (49), insufficientAccessRights
 * (50). Retrying soon cannot help, and repeated bad binds can lock the account (AD's lockout
 * policy): such a server is probed again only after CREDENTIALS_BACKOFF_MS.
 */
const BIND_REFUSED = new Set([48, 49, 50]);
export const CREDENTIALS_BACKOFF_MS = 30_000;

// ------------------------------------------------------------------------------------ servers

type ServerState = 'unknown' | 'up' | 'down';

class Server {
  state: ServerState = 'unknown';
  failures = 0;
  lastError: string | undefined;
  /** the last failure was the server refusing our bind */
  bindRefused = false;
  retryAt = 0;
  probe: NodeJS.Timeout | undefined;
  readonly secure: boolean;
  readonly host: string;

  constructor(
    readonly uri: string,
    readonly index: number,
  ) {
    const u = new URL(uri);
    this.secure = u.protocol.toLowerCase() === 'ldaps:';
    this.host = u.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost';
  }
}

// -------------------------------------------------------------------------------- connections

/** One ldapts Client whose socket(s) we create, so that we alone decide when it reconnects. */
class Conn {
  inFlight = 0;
  /** its server is no longer the preferred one: close once idle */
  retiring = false;
  private closed = false;
  private plain: net.Socket | undefined;
  private secure: tls.TLSSocket | undefined;
  readonly client: Client;

  constructor(
    readonly server: Server,
    private readonly needBind: boolean,
    timeoutMs: number,
    tlsOptions: tls.ConnectionOptions | undefined,
  ) {
    this.client = new Client({
      url: server.uri,
      timeout: timeoutMs,
      connectTimeout: timeoutMs,
      tlsOptions: server.secure ? tlsOptions : undefined,
      createConnection: ((port: number, host: string) => this.connectPlain(port, host)) as typeof net.connect,
      createSecureConnection: ((...args: unknown[]) => this.connectSecure(args, tlsOptions)) as typeof tls.connect,
    });
  }

  private connectPlain(port: number, host: string): net.Socket {
    if (this.plain || this.closed) throw new Error('connection closed (not reopened: a new connection is set up instead)');
    this.plain = net.connect(port, host);
    this.plain.setKeepAlive(true, 60_000);
    return this.plain;
  }

  /** ldaps: (port, host, options); StartTLS: (options with the plain socket) */
  private connectSecure(args: unknown[], tlsOptions: tls.ConnectionOptions | undefined): tls.TLSSocket {
    if (this.secure || this.closed) throw new Error('connection closed (not reopened: a new connection is set up instead)');
    if (typeof args[0] === 'number') {
      this.secure = tls.connect(args[0], args[1] as string, { ...tlsOptions });
      this.secure.setKeepAlive(true, 60_000);
    } else {
      this.secure = tls.connect(args[0] as tls.ConnectionOptions);
    }
    return this.secure;
  }

  /** usable for a request now (checked synchronously right before ldapts is called) */
  get alive(): boolean {
    const sock = this.secure ?? this.plain;
    // a socket the server ended is not usable even before ldapts sees it close
    if (this.closed || sock === undefined || sock.destroyed || sock.readableEnded) return false;
    return this.client.isConnected && (!this.needBind || this.client.isBound);
  }

  /** Close now: pending requests on it fail (ldapts rejects them when the socket closes). */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.secure?.destroy();
    this.plain?.destroy();
  }

  /** Close politely (unbind, RFC 4511 §4.3), but never wait long for a server that is gone. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.client.isConnected) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((r) => (timer = setTimeout(r, 200)));
      await Promise.race([this.client.unbind().catch(() => undefined), grace]);
      clearTimeout(timer);
    }
    this.destroy();
  }
}

// -------------------------------------------------------------------------------------- queue

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/** A one-line, secret-free description of an error from ldapts, net or tls. */
export function describeLdapError(e: unknown): string {
  if (e instanceof ResultCodeError) return `${e.message.replace(/ Code: 0x[0-9a-f]+$/, '')} (LDAP result ${e.code})`;
  if (!(e instanceof Error)) return String(e);
  const code = (e as NodeJS.ErrnoException).code;
  // ldapts wraps socket errors as "Socket error. Message type: …\n<cause>": keep the cause
  const lines = e.message.split('\n').filter((l) => l.trim() !== '');
  const msg = (lines.at(-1) ?? e.name).slice(0, 200);
  return code !== undefined && !msg.includes(code) ? `${code}: ${msg}` : msg;
}

function isTimeout(e: unknown): boolean {
  return e instanceof Error && /timed out|timeout/i.test(e.message);
}

export class LdapPool {
  private readonly servers: Server[];
  private readonly slots: (Conn | undefined)[];
  private readonly opening: ({ readonly server: Server; readonly conn: Promise<Conn> } | undefined)[];
  private readonly waiters: Waiter[] = [];
  private readonly maxInFlight: number;
  private readonly maxQueue: number;
  private readonly backoff: { readonly min: number; readonly max: number };
  private readonly tlsOptions: ((s: Server) => tls.ConnectionOptions) | undefined;
  private inFlight = 0;
  private started = false;
  private stopped = false;
  private saturated = 0;
  private timeouts = 0;
  private failovers = 0;
  private saturatedLoggedAt = -Infinity;

  constructor(private readonly opts: PoolOptions) {
    this.servers = opts.uris.map((u, i) => new Server(u, i));
    this.slots = new Array<Conn | undefined>(opts.size).fill(undefined);
    this.opening = new Array<{ server: Server; conn: Promise<Conn> } | undefined>(opts.size).fill(undefined);
    this.maxInFlight = opts.size * (opts.pipeline ?? DEFAULT_PIPELINE);
    this.maxQueue = opts.queue ?? DEFAULT_QUEUE;
    this.backoff = opts.backoffMs ?? DEFAULT_BACKOFF;
    const t = opts.tls;
    this.tlsOptions = t
      ? (s) => ({
          ca: t.ca,
          cert: t.cert,
          key: t.key,
          rejectUnauthorized: t.verify,
          host: s.host,
          // SNI carries a host name, never an address (RFC 6066 §3)
          servername: net.isIP(s.host) ? undefined : s.host,
        })
      : undefined;
  }

  /** Open the pool's connections on the first server that answers. Never throws: health says. */
  async start(): Promise<void> {
    this.started = true;
    for (;;) {
      const server = this.active();
      if (!server) return;
      const results = await Promise.allSettled(this.slots.map((_, i) => this.openSlot(i, server)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (!failed) return;
      if (results.some((r) => r.status === 'fulfilled')) return;
      this.serverFailed(server, failed.reason);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.servers) clearTimeout(s.probe);
    this.failWaiters(new SourceFault(this.opts.source, 'stopped'));
    await Promise.allSettled(this.opening.map((o) => o?.conn));
    await Promise.all(this.slots.map((c) => c?.close()));
    this.slots.fill(undefined);
  }

  stats(): PoolStats {
    const connections = this.slots.filter((c) => c?.alive).length;
    return { inFlight: this.inFlight, queued: this.waiters.length, maxInFlight: this.maxInFlight, maxQueue: this.maxQueue, connections, saturated: this.saturated, timeouts: this.timeouts, size: this.slots.length, failovers: this.failovers };
  }

  /** Run one operation on a pooled connection, within the deadline, failing over as needed. */
  async run<T>(op: (client: Client) => Promise<T>): Promise<T> {
    if (!this.started || this.stopped) throw this.fault(this.stopped ? 'stopped' : 'not started');
    const deadline = performance.now() + this.opts.timeoutMs;
    await this.acquire(deadline);
    try {
      return await this.attempt(op, deadline);
    } finally {
      this.release();
    }
  }

  private async attempt<T>(op: (client: Client) => Promise<T>, deadline: number): Promise<T> {
    // a try per server, and per slot: each pooled connection may turn out to have been closed by
    // the server (idle timeout, restart) only when used
    const tries = this.servers.length + this.slots.length;
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw this.fault('stopped');
      const server = this.active();
      if (!server) throw this.downFault();
      let conn: Conn;
      try {
        conn = await this.connFor(server, deadline);
      } catch (e) {
        if (e instanceof SourceFault) throw e;
        this.serverFailed(server, e);
        if (attempt >= tries) throw this.fault(`${server.uri}: ${describeLdapError(e)}`, e);
        continue;
      }
      conn.inFlight++;
      try {
        if (!conn.alive) throw new Error('connection closed');
        return await op(conn.client);
      } catch (e) {
        if (e instanceof ResultCodeError && !SERVER_TROUBLE.has(e.code)) {
          // the directory answered: that is the answer, another server would say the same
          throw this.fault(`${server.uri}: ${describeLdapError(e)}`, e);
        }
        conn.destroy();
        const timedOut = isTimeout(e);
        if (timedOut) this.timeouts++;
        if (timedOut || e instanceof ResultCodeError) this.serverFailed(server, e);
        if (timedOut || attempt >= tries || performance.now() >= deadline) {
          throw this.fault(`${server.uri}: ${timedOut ? `no answer within ${this.opts.timeoutMs} ms` : describeLdapError(e)}`, e);
        }
      } finally {
        conn.inFlight--;
        if (conn.retiring && conn.inFlight === 0) void conn.close();
      }
    }
  }

  // ---- slots: bounded in-flight, bounded queue ----

  private acquire(deadline: number): Promise<void> | void {
    if (!this.active()) throw this.downFault();
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return;
    }
    if (this.waiters.length >= this.maxQueue) {
      this.saturated++;
      this.logSaturated();
      throw this.fault(`saturated: ${this.inFlight} requests in flight and ${this.waiters.length} waiting; the directory is not keeping up`);
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          this.timeouts++;
          reject(this.fault(`no free connection within ${this.opts.timeoutMs} ms (${this.inFlight} requests in flight)`));
        }, Math.max(0, deadline - performance.now())),
      };
      this.waiters.push(w);
    });
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next) {
      clearTimeout(next.timer);
      next.resolve();
    } else {
      this.inFlight--;
    }
  }

  private failWaiters(e: Error): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(e);
    }
  }

  private logSaturated(): void {
    const now = performance.now();
    if (now - this.saturatedLoggedAt < 1000) return;
    this.saturatedLoggedAt = now;
    this.opts.log.warn('ldap.saturated', { inFlight: this.inFlight, queued: this.waiters.length, refused: this.saturated });
  }

  // ---- connections ----

  /**
   * The least busy open connection to `server`. A free slot is filled too: in the background when
   * a connection is at hand, else awaited. Connections to another server are retired.
   */
  private async connFor(server: Server, deadline: number): Promise<Conn> {
    let best: Conn | undefined;
    let free = -1;
    let pending: Promise<Conn> | undefined;
    for (let i = 0; i < this.slots.length; i++) {
      const c = this.slots[i];
      if (c !== undefined && (c.server !== server || !c.alive)) this.vacate(i, c);
      const s = this.slots[i];
      if (s !== undefined) {
        if (best === undefined || s.inFlight < best.inFlight) best = s;
        continue;
      }
      const o = this.opening[i];
      if (o === undefined) free = free < 0 ? i : free;
      else if (o.server === server) pending ??= o.conn;
    }
    if (best && (best.inFlight === 0 || free < 0)) return best;
    if (free >= 0 && best) {
      this.openSlot(free, server).catch((e: unknown) => this.opts.log.debug('ldap.connect.failed', { uri: server.uri, error: this.scrub(describeLdapError(e)) }));
      return best;
    }
    if (free >= 0) return this.withDeadline(this.openSlot(free, server), deadline);
    if (pending) return this.withDeadline(pending, deadline);
    // every slot is being opened for another server: open for this one in the first
    return this.withDeadline(this.openSlot(0, server), deadline);
  }

  /** Empty slot i of `c`: retire it when its server is no longer preferred, drop it when dead. */
  private vacate(i: number, c: Conn): void {
    this.slots[i] = undefined;
    if (c.alive) {
      c.retiring = true;
      if (c.inFlight === 0) void c.close();
    } else if (c.inFlight === 0) {
      c.destroy();
    }
  }

  private openSlot(i: number, server: Server): Promise<Conn> {
    const running = this.opening[i];
    if (running?.server === server) return running.conn;
    const p = this.open(server)
      .then((conn) => {
        if (this.stopped) {
          void conn.close();
          throw this.fault('stopped');
        }
        const old = this.slots[i];
        if (old !== undefined) this.vacate(i, old);
        this.slots[i] = conn;
        this.serverUp(server);
        return conn;
      })
      .finally(() => {
        if (this.opening[i]?.conn === p) this.opening[i] = undefined;
      });
    this.opening[i] = { server, conn: p };
    return p;
  }

  /** A new connection, set up whole: connect (TLS for ldaps), StartTLS, bind; within the timeout. */
  private async open(server: Server): Promise<Conn> {
    const { auth, tls: t, timeoutMs } = this.opts;
    const tlsOptions = this.tlsOptions?.(server);
    const conn = new Conn(server, auth.kind !== 'anonymous', timeoutMs, tlsOptions);
    const setup = async (): Promise<Conn> => {
      if (t?.startTls && !server.secure) await conn.client.startTLS({ ...tlsOptions });
      switch (auth.kind) {
        case 'simple':
          await conn.client.bind(auth.dn, auth.password);
          break;
        case 'external':
          // RFC 4513 §5.2.3: the identity comes from the TLS layer; no authorization identity asked for
          await conn.client.bind('EXTERNAL');
          break;
        case 'anonymous':
          // nothing to bind; read the root DSE (RFC 4512 §5.1) so that "open" means "answers"
          await conn.client.search('', { scope: 'base', filter: parseFilter('(objectClass=*)'), attributes: ['1.1'] });
          break;
      }
      return conn;
    };
    try {
      return await this.withDeadline(setup(), performance.now() + timeoutMs, () => conn.destroy());
    } catch (e) {
      conn.destroy();
      throw e;
    }
  }

  private withDeadline<T>(p: Promise<T>, deadline: number, onTimeout?: () => void): Promise<T> {
    const ms = deadline - performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout?.();
        reject(new Error(`timed out after ${this.opts.timeoutMs} ms`));
      }, Math.max(0, ms));
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  // ---- failover ----

  /** the server requests go to: the first in order that is not out */
  private active(): Server | undefined {
    for (const s of this.servers) if (s.state !== 'down') return s;
    return undefined;
  }

  private serverUp(server: Server): void {
    if (server.state === 'up') return;
    const wasDown = server.state === 'down';
    server.state = 'up';
    server.failures = 0;
    clearTimeout(server.probe);
    server.probe = undefined;
    this.opts.log.info(wasDown ? 'ldap.server.recovered' : 'ldap.server.up', { uri: server.uri });
  }

  /** Take a server out (once per outage), close its connections, schedule a probe. */
  private serverFailed(server: Server, e: unknown): void {
    this.noteError(server, e);
    if (server.state === 'down' || this.stopped) return;
    server.state = 'down';
    this.failovers++;
    for (let i = 0; i < this.slots.length; i++) {
      const c = this.slots[i];
      if (c?.server === server) {
        c.destroy();
        this.slots[i] = undefined;
      }
    }
    const next = this.active();
    this.opts.log.warn('ldap.server.down', { uri: server.uri, error: server.lastError, failover: next?.uri ?? 'none' });
    if (!next) this.failWaiters(this.downFault());
    this.scheduleProbe(server);
  }

  private noteError(server: Server, e: unknown): void {
    server.lastError = this.scrub(describeLdapError(e));
    server.bindRefused = e instanceof ResultCodeError && BIND_REFUSED.has(e.code);
  }

  private scheduleProbe(server: Server): void {
    server.failures++;
    const delay = server.bindRefused ? CREDENTIALS_BACKOFF_MS : Math.min(this.backoff.max, this.backoff.min * 2 ** Math.min(server.failures - 1, 20));
    server.retryAt = performance.now() + delay;
    clearTimeout(server.probe);
    server.probe = setTimeout(() => void this.probe(server), delay);
    server.probe.unref();
  }

  private async probe(server: Server): Promise<void> {
    server.probe = undefined;
    if (this.stopped) return;
    try {
      const conn = await this.open(server);
      if (this.stopped) return void conn.close();
      // adopt it: a free slot, or one holding a connection to a less preferred server
      const i = this.slots.findIndex((c) => c === undefined || !c.alive || c.server.index > server.index);
      const old = i >= 0 ? this.slots[i] : undefined;
      if (i >= 0 && this.opening[i] === undefined) {
        if (old) {
          old.retiring = true;
          if (old.inFlight === 0) void old.close();
        }
        this.slots[i] = conn;
      } else {
        void conn.close();
      }
      this.serverUp(server);
    } catch (e) {
      this.noteError(server, e);
      if (!this.stopped) this.scheduleProbe(server);
    }
  }

  // ---- health and faults ----

  health(): SourceHealth {
    if (!this.started) return { state: 'down', detail: 'not started' };
    if (this.stopped) return { state: 'down', detail: 'stopped' };
    const active = this.active();
    const open = this.slots.filter((c) => c?.alive).length;
    if (!active) return { state: 'down', detail: `no server reachable: ${this.outages()}` };
    const where = `${active.uri} (${open}/${this.slots.length} connections)`;
    if (active.index === 0) return { state: 'up', detail: where };
    return { state: 'degraded', detail: `${where}; failed over from ${this.outages(active.index)}` };
  }

  private outages(upTo = this.servers.length): string {
    const now = performance.now();
    return this.servers
      .slice(0, upTo)
      .map((s) => `${s.uri}: ${s.lastError ?? 'down'}${s.state === 'down' ? `, retry in ${Math.max(0, Math.round(s.retryAt - now))} ms` : ''}`)
      .join('; ');
  }

  private downFault(): SourceFault {
    return this.fault(`no server reachable: ${this.outages()}`);
  }

  private fault(message: string, cause?: unknown): SourceFault {
    return new SourceFault(this.opts.source, this.scrub(message), cause === undefined ? undefined : { cause: new Error(this.scrub(describeLdapError(cause))) });
  }

  /** Nothing from a server or a library may carry the bind password into a log line or status. */
  private scrub(s: string): string {
    const a = this.opts.auth;
    return a.kind === 'simple' && a.password.length > 0 ? s.split(a.password).join('***') : s;
  }
}
