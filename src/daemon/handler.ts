/**
 * What the daemon does for each admin op. The resolve op is also the upcall helper's path: the
 * requester's context is read here from /proc/<pid> (never taken from the wire).
 */
import { describeError, NsidmapError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CacheStats, CacheStore } from '../cache/store.js';
import { takeSnapshot, type StatsSnapshot } from '../metrics/snapshot.js';
import { buildContext, buildLazyContext } from '../ns/context.js';
import type { Engine } from '../resolver/engine.js';
import { parseRequest, requestValue } from '../resolver/query.js';
import { printableKey } from '../resolver/resolver.js';
import type { AdminRequest } from '../responders/admin/protocol.js';
import { requesterPidFromProcKeys } from '../responders/keyring/requester.js';
import { actionToWire, decideUpcall, rejectUpcall } from '../responders/keyring/upcall.js';
import type { ClientIdAdmin } from '../responders/uevent/clientid.js';
import type { Answer, Context, Interface, Request } from '../types.js';

export interface DaemonInfo {
  readonly version: string;
  readonly startedAt: number;
  readonly socket: string;
}

/**
 * The interface a query is answered as when the admin names none: as the kernel's keyring would
 * ask — except with --ns PID, where the point is what that namespace sees (`admin`: requester
 * conditions and `ids: container` apply, which they never do to host-wide keyring answers).
 */
export function defaultInterface(req: Request, nsPid?: number): Interface {
  if (nsPid !== undefined) return 'admin';
  return req.kind.includes('sid') ? 'keyring-cifs' : 'keyring-nfs';
}

/** One log line per answered request; mapped answers only at debug (they are the common case). */
export function logAnswer(log: Logger, a: Answer, ctx: Context): void {
  const level = a.outcome === 'mapped' ? 'debug' : a.outcome === 'error' ? 'warn' : 'info';
  if (!log.on(level)) return;
  log[level]('lookup', {
    iface: ctx.iface,
    kind: a.request.kind,
    query: requestValue(a.request),
    outcome: a.outcome,
    value: a.value,
    scope: a.scope,
    source: a.source,
    cache: a.cache,
    reason: a.reason,
    code: a.code,
    pid: ctx.pid,
    container: ctx.container?.id.slice(0, 12),
    userns: ctx.userns && !ctx.userns.isInit ? ctx.userns.inode : undefined,
  });
}

export function contextSummary(ctx: Context): Record<string, unknown> {
  return {
    iface: ctx.iface,
    pid: ctx.pid,
    pidGone: ctx.pidGone,
    userns: ctx.userns ? { inode: ctx.userns.inode, init: ctx.userns.isInit, uidMap: ctx.userns.uidMap } : undefined,
    netns: ctx.netns ? { inode: ctx.netns.inode, init: ctx.netns.isInit } : undefined,
    cgroup: ctx.cgroup,
    container: ctx.container,
  };
}

export function makeHandler(engine: () => Engine, info: DaemonInfo, log: Logger, reload: () => Promise<unknown>, responders: () => unknown[] = () => [], flushKernel: () => Promise<void> = async () => {}, clientIds: () => ClientIdAdmin | undefined = () => undefined) {
  return async (req: AdminRequest): Promise<unknown> => {
    switch (req.op) {
      case 'ping':
        return { pong: true };
      case 'resolve':
        return resolveOp(engine(), req, log);
      case 'upcall':
        return upcallOp(engine(), req, log);
      case 'status':
        return { ...status(engine(), info), responders: responders() };
      case 'reload':
        return reload();
      case 'cache.stats':
        return { ...engine().store.stats(), counters: engine().resolver.metrics.totals() };
      case 'stats':
        return snapshotOf(engine(), info.version);
      case 'cache.list':
        return engine().store.list({ scope: req.scope, prefix: req.prefix }, req.limit ?? 1000).map((e) => ({ ...e, key: printableKey(e.key) }));
      case 'cache.flush': {
        const flushed = flush(engine(), req.scope, req.key);
        await flushKernel(); // nfsd's caches hold answers too: drop them with ours
        return { flushed };
      }
      case 'clientid.list':
        return clientIdAdmin(clientIds).list();
      case 'clientid.show':
        return clientIdAdmin(clientIds).show(req.key);
      case 'clientid.set':
        return clientIdAdmin(clientIds).set(req.key, req.identifier, req.source);
    }
  };
}

function clientIdAdmin(clientIds: () => ClientIdAdmin | undefined): ClientIdAdmin {
  const admin = clientIds();
  if (!admin) throw new NsidmapError('NSIDMAP_EREQUEST', 'this daemon does not manage NFSv4 client identifiers: use idmapctl clientid --cache PATH');
  return admin;
}

async function resolveOp(engine: Engine, req: Extract<AdminRequest, { op: 'resolve' }>, log: Logger) {
  const request = parseRequest(req.kind, req.value);
  const iface = req.iface ?? defaultInterface(request, req.nsPid);
  const ctx = buildContext(iface, req.nsPid ?? req.pid);
  const answer = await engine.resolver.resolve(request, ctx, { scope: req.scope, explain: req.explain, admin: true });
  logAnswer(log, answer, ctx);
  return { answer, context: req.explain ? contextSummary(ctx) : undefined };
}

async function upcallOp(engine: Engine, req: Extract<AdminRequest, { op: 'upcall' }>, log: Logger) {
  const iface = req.keyType === 'id_resolver' ? 'keyring-nfs' : 'keyring-cifs';
  // the requester is read only if a log line or audit event asks for it (buildLazyContext)
  const findPid = () => req.pid ?? (req.authKey !== undefined && req.keySerial !== undefined ? requesterPidFromProcKeys(req.authKey, req.keySerial) : undefined);
  const ctx = buildLazyContext(iface, findPid, { fs: iface === 'keyring-nfs' ? 'nfs' : 'cifs' }, (e) => log.warn('upcall.requester', { error: (e as Error)?.message ?? String(e) }));
  const description = strictUtf8(Buffer.from(req.descriptionHex, 'hex'));
  const action = description === undefined
    ? rejectUpcall(req.keyType, 'description is not valid UTF-8', ctx, log, engine.resolver.audit?.on('refused') === true)
    : await decideUpcall(engine.resolver, req.keyType, description, ctx, log);
  if (action.action === 'reject') refused(engine, req.keyType, description ?? `hex:${req.descriptionHex}`, action.reason, ctx);
  else if (action.answer) logAnswer(log, action.answer, ctx);
  return actionToWire(action);
}

/** A refused upcall: counted, and in the audit trail (rate-limited; upcall.rejected is then debug). */
function refused(engine: Engine, keyType: string, description: string, reason: string, ctx: Context): void {
  const { metrics, audit } = engine.resolver;
  metrics.refused(ctx.iface, 'malformed');
  if (audit?.on('refused')) audit.note('refused', { iface: ctx.iface, kind: keyType, query: description, reason, requester: ctx });
}

/**
 * Everything measured: the `stats` op and the metrics endpoint show this same reading. Counting a
 * large SQLite cache blocks for tens of milliseconds (~60 ms at a million entries), so a scrape
 * (`cacheMaxAgeMs`) reuses a count up to that old; `idmapctl stats` counts afresh.
 */
export function snapshotOf(engine: Engine, version: string, cacheMaxAgeMs = 0): StatsSnapshot {
  return takeSnapshot({ metrics: engine.resolver.metrics, version, sources: engine.policy.sources.values(), cache: cacheStats(engine.store, cacheMaxAgeMs) });
}

const counted = new WeakMap<CacheStore, { at: number; stats: CacheStats }>();

function cacheStats(store: CacheStore, maxAgeMs: number): CacheStats {
  const now = performance.now();
  const last = counted.get(store);
  if (last && now - last.at < maxAgeMs) return last.stats;
  const stats = store.stats();
  counted.set(store, { at: now, stats });
  return stats;
}

/**
 * Key descriptions are bytes; names are UTF-8. Bytes that are not UTF-8 are refused rather than
 * decoded with replacement characters, which could make two different names look alike.
 */
export function strictUtf8(bytes: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/** `cache flush` takes a scope, a key as printed by `cache list` (space-separated), or nothing (all). */
function flush(engine: Engine, scope: string | undefined, key: string | undefined): number {
  if (scope !== undefined && key === undefined && !engine.policy.scopes.some((s) => s.name === scope)) {
    throw new NsidmapError('NSIDMAP_EREQUEST', `no scope named "${scope}" (scopes: ${engine.policy.scopes.map((s) => s.name).join(', ')})`);
  }
  // lookups in flight began before the flush: they must not put back what it drops
  engine.resolver.invalidate();
  if (key !== undefined) return engine.store.delete(key.split(' ').join('\x1f')) ? 1 : 0;
  return engine.store.flush(scope === undefined ? undefined : { scope });
}

function status(engine: Engine, info: DaemonInfo) {
  const p = engine.policy;
  return {
    version: info.version,
    pid: process.pid,
    uptime: Math.round((Date.now() - info.startedAt) / 1000),
    socket: info.socket,
    policy: { file: engine.file ?? '(embedded defaults)', loadedAt: new Date(engine.loadedAt).toISOString(), domain: p.domain, warnings: engine.warnings.length },
    scopes: p.scopes.map((s) => ({ name: s.name, domain: s.domain, providers: s.sources.map((x) => x.name), ids: s.ids, root: s.root })),
    sources: [...p.sources.values()].map((s) => ({ name: s.name, kind: s.kind, ...(s.health?.() ?? { state: 'up' }) })),
    cache: { path: engine.cachePath, ...engine.store.stats() },
    counters: engine.resolver.metrics.totals(),
    rss: process.memoryUsage.rss(),
    heapUsed: process.memoryUsage().heapUsed,
  };
}

export { describeError };
