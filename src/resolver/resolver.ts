/**
 * The one lookup engine (DESIGN.md "The flow"): policy picks a scope → cache (memory → SQLite)
 * → source chain → cache write → Answer. The only writer of the cache.
 *
 * Id spaces, for one scope:
 *   source ids ──scope.map──► host ids ──reader's uid_map (ids: container)──► answer ids
 * An id that a step cannot carry becomes nobody (outcome `unmappable`): never a wrong id.
 */
import type { Audit } from '../audit.js';
import { freshness, type CacheStore } from '../cache/store.js';
import { describeError, NsidmapError } from '../errors.js';
import type { Logger } from '../log.js';
import { IFACE, Metrics, OUTCOME, type ScopeSlot } from '../metrics/registry.js';
import { fromHost, toHost } from '../ns/idmap.js';
import { SourceFault, type Source, type SourceEntry } from '../providers/source.js';
import { HOST_WIDE_INTERFACES, isValidId, type Answer, type Context, type Entity, type ExplainStep, type LookupKind, type Outcome, type Request, entityOf, answerTypeOf, type CacheState } from '../types.js';
import { requestValue } from './query.js';
import { UNMAPPED_DEFAULTS, type CompiledPolicy, type CompiledScope, type Direction } from './policy/compile.js';
import { nobodyOf, type NobodyValues } from './nobody.js';

export interface ResolveOptions {
  /** record the steps taken (idmapctl --explain) */
  readonly explain?: boolean;
  /** force this scope instead of matching (idmapctl --scope) */
  readonly scope?: string;
  /**
   * asked by an admin (idmapctl query), not by a kernel interface: counted under interface
   * `admin` (the context's interface still picks the scope) and not audited — the admin sees
   * the reason in the answer
   */
  readonly admin?: boolean;
}

const NO_OPTIONS: ResolveOptions = Object.freeze({});

/**
 * Lookup latency is the time to find the answer: in the cache, and on a miss in the sources. A
 * miss is always timed; a cache hit — the hot path, well under a microsecond — one in
 * TIMING_EVERY, observed with that weight: the histogram still counts every lookup while a clock
 * read (~30 ns on bare metal, several times that in some VMs) is paid rarely. Answers decided
 * before the cache (squashed root, foreign domain, numeric name) look nothing up: not timed.
 */
export const TIMING_EVERY = 64;
const TIMING_MASK = TIMING_EVERY - 1;

type Method = 'byName' | 'byId' | 'bySid' | 'sidOf';

/** What to ask the sources, after the request has been checked and translated to source ids. */
interface Query {
  readonly method: Method;
  readonly entity: Entity;
  readonly arg: string | number;
  /** byName: the lower-case domain the name came with */
  readonly domain?: string;
  readonly key: string;
}

interface Found {
  readonly value: string | null;
  readonly source: string;
  readonly cache: CacheState;
}

/** An early answer decided before any source is asked (squash, unmappable, foreign domain…). */
interface Early {
  readonly early: Outcome;
  readonly reason: string;
  readonly value?: number;
}

const METHOD: Record<LookupKind, Method> = {
  'name-to-uid': 'byName', 'name-to-gid': 'byName',
  'uid-to-name': 'byId', 'gid-to-name': 'byId',
  'sid-to-uid': 'bySid', 'sid-to-gid': 'bySid',
  'uid-to-sid': 'sidOf', 'gid-to-sid': 'sidOf',
};

const DIRECTION: Record<'id' | 'name' | 'sid', Direction> = { id: 'toId', name: 'toName', sid: 'toSid' };
const NUMERIC = /^(0|[1-9][0-9]{0,9})$/;

export interface ResolverOptions {
  readonly log: Logger;
  readonly now?: () => number;
  /** the daemon's registry (it outlives reloads); in-process tools get their own */
  readonly metrics?: Metrics;
  /** the daemon's audit trail; none in-process */
  readonly audit?: Audit;
}

export class Resolver {
  private policy: CompiledPolicy;
  private readonly store: CacheStore;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly inflight = new Map<string, Promise<Found>>();
  /** bumped by invalidate(): a source query begun before it does not write its answer to the cache */
  private epoch = 0;
  /** bumped by setPolicy() and invalidate() (see `generation`) */
  private generationCount = 0;
  private nobody = new Map<string, Promise<NobodyValues>>();
  /** counters, histograms: `idmapctl stats`, `status`, the metrics endpoint */
  readonly metrics: Metrics;
  readonly audit: Audit | undefined;
  /** the registry slot of each scope of the policy in force, by scope.index */
  private slots: ScopeSlot[];
  /** lookups since the last timed one (see TIMING_EVERY) */
  private tick = 0;

  constructor(policy: CompiledPolicy, store: CacheStore, opts: ResolverOptions) {
    this.policy = policy;
    this.store = store;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    this.metrics = opts.metrics ?? new Metrics();
    this.audit = opts.audit;
    this.slots = this.slotsOf(policy);
  }

  private slotsOf(policy: CompiledPolicy): ScopeSlot[] {
    return policy.scopes.map((s) => this.metrics.scope(s.name));
  }

  get currentPolicy(): CompiledPolicy {
    return this.policy;
  }

  /**
   * The cache was flushed (idmapctl cache flush): queries in flight were begun before it, and may
   * carry what the flush meant to drop — they still answer their callers, but write nothing to
   * the cache, and a new request does not join them.
   */
  invalidate(): void {
    this.epoch++;
    this.generationCount++;
    this.inflight.clear();
  }

  /**
   * Changes with every reload and every cache flush: an answer resolved across a change may be
   * the old one (a kernel cache flushed meanwhile should keep it only briefly: nfsd's listener).
   */
  get generation(): number {
    return this.generationCount;
  }

  /** Swap in a new policy (reload). Cached answers stay: they are keyed by scope name. */
  setPolicy(policy: CompiledPolicy): void {
    this.policy = policy;
    this.slots = this.slotsOf(policy);
    this.nobody = new Map();
    this.generationCount++;
  }

  selectScope(req: Request, ctx: Context): CompiledScope | undefined {
    for (const s of this.policy.scopes) if (s.matches(req, ctx)) return s;
    return undefined;
  }

  scopeByName(name: string): CompiledScope | undefined {
    return this.policy.scopes.find((s) => s.name === name);
  }

  async resolve(req: Request, ctx: Context, opts: ResolveOptions = NO_OPTIONS): Promise<Answer> {
    const iface = opts.admin ? IFACE.admin : IFACE[ctx.iface];
    const trail: ExplainStep[] | undefined = opts.explain ? [] : undefined;
    const scope = opts.scope !== undefined ? this.scopeByName(opts.scope) : this.selectScope(req, ctx);
    // taken with the scope, before any await: a reload meanwhile must not shift scope indexes under us
    const slot = scope ? this.slots[scope.index]! : this.metrics.noScope;
    let answer: Answer;
    if (!scope) {
      answer = this.noScope(req, ctx, opts, trail);
    } else {
      trail?.push({ step: 'scope', detail: opts.scope !== undefined ? `${scope.name} (forced)` : `${scope.name} (scope #${scope.index + 1}, first whose match fits)` });
      try {
        const pre = this.prepare(req, scope, ctx);
        if ('early' in pre) {
          answer = await this.finishEarly(req, scope, ctx, opts, pre, trail);
        } else {
          const found = await this.lookup(scope, pre, trail, slot, iface);
          answer = await this.finish(req, scope, ctx, opts, found, trail);
        }
      } catch (e) {
        answer = this.fault(req, scope, e, trail);
      }
    }
    slot.add(iface, outcomeOf(answer));
    return answer;
  }

  // ---- before the sources: check and translate the request ----

  private prepare(req: Request, scope: CompiledScope, ctx: Context): Query | Early {
    const entity = entityOf(req.kind);
    const method = METHOD[req.kind];
    if ('name' in req) return this.prepareName(req.kind, req.name, scope, entity, ctx);
    if ('sid' in req) return { method, entity, arg: req.sid, key: cacheKey(scope, req.kind, req.sid) };
    const dirId = this.idToSource(req.id, scope, ctx, entity);
    if (typeof dirId !== 'number') return dirId;
    return { method, entity, arg: dirId, key: cacheKey(scope, req.kind, String(dirId)) };
  }

  private prepareName(kind: LookupKind, name: string, scope: CompiledScope, entity: Entity, ctx: Context): Query | Early {
    if (NUMERIC.test(name) && Number(name) <= 0xfffffffe) {
      // nfsd hands us a numeric owner only when numeric ids are turned off (nfs4_disable_idmapping=N):
      // a client that could not name its user sent the raw number. Taking it as an id would let
      // `chown` to an unmappable user land as that number; refuse it, as rpc.idmapd does.
      if (ctx.iface === 'nfsd') return { early: 'negative', reason: `numeric owner "${name}" refused on nfsd (rpc.idmapd does the same; numeric ids are accepted only with nfs4_disable_idmapping=Y, in the kernel)` };
      // The client kernel passes numeric strings through as ids (fs/nfs/nfs4idmap.c nfs_map_string_to_numeric).
      return { early: 'mapped', reason: 'numeric name taken as an id', value: Number(name) };
    }
    const at = name.lastIndexOf('@');
    if (at <= 0) return { early: 'negative', reason: at < 0 ? `"${name}" has no @domain` : `"${name}" has an empty local part` };
    const domain = name.slice(at + 1).toLowerCase();
    if (!scope.accepted.has(domain)) {
      return { early: 'negative', reason: `domain "${domain}" is not accepted by scope ${scope.name} (accepts ${[...scope.accepted].join(', ')}): domain mismatch` };
    }
    const local = name.slice(0, at);
    // The key carries the domain only when it is not the scope's own, so that a source that
    // stores whole NFSv4 names (LDAP NFSv4Name) can answer two accepted domains differently.
    const query = domain === scope.domain ? local : `${local}@${domain}`;
    return { method: 'byName', entity, arg: local, domain, key: cacheKey(scope, kind, query) };
  }

  /** answer-space id → source id, or the early answer that stops it */
  private idToSource(id: number, scope: CompiledScope, ctx: Context, entity: Entity): number | Early {
    if (!isValidId(id)) throw new NsidmapError('NSIDMAP_EREQUEST', `id ${id} is out of range`);
    // root: squash means 0 never maps, in whichever id space it appears (reader, host, source)
    if (scope.root === 'squash' && id === 0) return { early: 'squashed', reason: 'root squashed (root: squash)' };
    let host: number | undefined = id;
    const readerMap = readerMapOf(scope, ctx, entity);
    if (readerMap) host = toHost(readerMap, id);
    if (host === undefined) return { early: 'unmappable', reason: `id ${id} has no host id in the reader's namespace` };
    if (scope.root === 'squash' && host === 0) return { early: 'squashed', reason: 'root squashed (root: squash)' };
    const map = entity === 'user' ? scope.uidMap : scope.gidMap;
    const dir = map ? fromHost(map, host) : host;
    if (dir === undefined) return { early: 'unmappable', reason: `host id ${host} is outside scope ${scope.name}'s map` };
    if (scope.root === 'squash' && dir === 0) return { early: 'squashed', reason: 'root of the mapped namespace squashed (root: squash)' };
    return dir;
  }

  // ---- the cache and the sources ----

  /** `slot`, `iface`: where cache hits and misses are counted and timed (see TIMING_EVERY) */
  private async lookup(scope: CompiledScope, q: Query, trail: ExplainStep[] | undefined, slot: ScopeSlot, iface: number): Promise<Found> {
    const timed = (this.tick = (this.tick + 1) & TIMING_MASK) === 0;
    const t0 = timed ? performance.now() : 0;
    const now = this.now();
    const hit = this.store.get(q.key);
    if (hit) {
      const state = freshness(hit, now);
      if (state !== 'expired') {
        slot.cacheHits++;
        if (timed) this.metrics.observe(iface, (performance.now() - t0) / 1000, TIMING_EVERY);
        if (state === 'refresh') this.refreshInBackground(scope, q);
        trail?.push({ step: 'cache', detail: state === 'fresh' ? `fresh (from ${hit.source || 'negative'})` : `past half its TTL: served, refresh started` });
        return { value: hit.value, source: hit.source, cache: state };
      }
    }
    slot.cacheMisses++;
    const t1 = timed ? t0 : performance.now();
    try {
      return await this.queryOnce(scope, q, trail);
    } catch (e) {
      const maxStale = this.policy.cache.maxStale * 1000;
      if (hit && now - hit.expires <= maxStale) {
        slot.stale++;
        trail?.push({ step: 'cache', detail: `expired entry served: sources failed (${describeError(e).message})` });
        this.log.warn('stale.served', { scope: scope.name, key: printableKey(q.key), reason: describeError(e).message });
        return { value: hit.value, source: hit.source, cache: 'stale' };
      }
      throw e;
    } finally {
      this.metrics.observe(iface, (performance.now() - t1) / 1000, 1);
    }
  }

  /** One chain query per key at a time: concurrent misses share it. */
  private queryOnce(scope: CompiledScope, q: Query, trail: ExplainStep[] | undefined): Promise<Found> {
    const running = this.inflight.get(q.key);
    if (running && !trail) return running;
    const p: Promise<Found> = this.queryChain(scope, q, trail).finally(() => {
      if (this.inflight.get(q.key) === p) this.inflight.delete(q.key);
    });
    if (!trail) this.inflight.set(q.key, p);
    return p;
  }

  private refreshInBackground(scope: CompiledScope, q: Query): void {
    if (this.inflight.has(q.key)) return;
    this.queryOnce(scope, q, undefined).catch((e) => {
      this.log.warn('refresh.failed', { scope: scope.name, key: printableKey(q.key), reason: describeError(e).message });
    });
  }

  private async queryChain(scope: CompiledScope, q: Query, trail: ExplainStep[] | undefined): Promise<Found> {
    const epoch = this.epoch;
    let value: string | null = null;
    let source = '';
    for (const src of scope.sources) {
      const fn = src[q.method];
      if (!fn) continue;
      const entry = await this.askSource(src, fn, q);
      const v = entry === undefined ? undefined : pick(q.method, entry);
      trail?.push({ step: 'source', detail: `${src.name} (${src.kind}): ${v === undefined ? 'not found' : `found ${v}`}` });
      if (v !== undefined) {
        value = v;
        source = src.name;
        break;
      }
    }
    if (scope.sources.every((s) => !s[q.method])) trail?.push({ step: 'source', detail: `no source of scope ${scope.name} answers ${q.method}` });
    const now = this.now();
    const ttl = value === null ? scope.ttlNegative : scope.ttlPositive;
    if (epoch === this.epoch) this.store.set({ key: q.key, scope: scope.name, value, source, stored: now, expires: now + ttl * 1000 });
    return { value, source, cache: 'miss' };
  }

  /** One source call, timed and counted (misses only reach here: the cost is the source's). */
  private async askSource(src: Source, fn: NonNullable<Source[Method]>, q: Query): Promise<SourceEntry | undefined> {
    const m = this.metrics.source(src.name, src.kind);
    const t0 = performance.now();
    try {
      const entry = await fn.call(src, q.entity, q.arg as never, (q.domain === undefined ? undefined : { domain: q.domain }) as never);
      if (entry === undefined) m.notFound++;
      else m.found++;
      return entry;
    } catch (e) {
      m.errors++;
      throw e;
    } finally {
      m.duration.observe((performance.now() - t0) / 1000);
    }
  }

  // ---- after the sources: translate back, squash, nobody ----

  private async finish(req: Request, scope: CompiledScope, ctx: Context, opts: ResolveOptions, found: Found, trail: ExplainStep[] | undefined): Promise<Answer> {
    const type = answerTypeOf(req.kind);
    if (found.value === null) return this.unmapped(req, scope, ctx, opts, 'nobody', 'no source knows it', found.cache, trail);
    if (type !== 'id') {
      const value = type === 'name' ? `${found.value}@${scope.domain}` : found.value;
      return this.answer(req, scope, 'mapped', value, { source: found.source, cache: found.cache, ttl: this.ttlFor(scope, found.cache) }, trail);
    }
    return this.finishId(req, scope, ctx, opts, Number(found.value), found, trail);
  }

  private async finishId(req: Request, scope: CompiledScope, ctx: Context, opts: ResolveOptions, dirId: number, found: Found | undefined, trail: ExplainStep[] | undefined): Promise<Answer> {
    const entity = entityOf(req.kind);
    const cache = found?.cache ?? 'none';
    if (!isValidId(dirId)) return this.unmapped(req, scope, ctx, opts, 'unmappable', `source gave an invalid id ${dirId}`, cache, trail);
    if (scope.root === 'squash' && dirId === 0) return this.unmapped(req, scope, ctx, opts, 'squashed', 'root squashed (root: squash)', cache, trail);
    const map = entity === 'user' ? scope.uidMap : scope.gidMap;
    const host = map ? toHost(map, dirId) : dirId;
    if (host === undefined) return this.unmapped(req, scope, ctx, opts, 'unmappable', `id ${dirId} is outside scope ${scope.name}'s map`, cache, trail);
    if (scope.root === 'squash' && host === 0) return this.unmapped(req, scope, ctx, opts, 'squashed', 'root squashed (root: squash)', cache, trail);
    const readerMap = readerMapOf(scope, ctx, entity);
    const value = readerMap ? fromHost(readerMap, host) : host;
    if (value === undefined) return this.unmapped(req, scope, ctx, opts, 'unmappable', `host id ${host} cannot be expressed in the reader's namespace`, cache, trail);
    if (scope.root === 'squash' && value === 0) return this.unmapped(req, scope, ctx, opts, 'squashed', "the reader's root squashed (root: squash)", cache, trail);
    if (readerMap) trail?.push({ step: 'ids', detail: `host id ${host} → ${value} in the reader's namespace` });
    return this.answer(req, scope, 'mapped', value, { source: found?.source, cache, ttl: this.ttlFor(scope, cache) }, trail);
  }

  private async finishEarly(req: Request, scope: CompiledScope, ctx: Context, opts: ResolveOptions, e: Early, trail: ExplainStep[] | undefined): Promise<Answer> {
    trail?.push({ step: 'request', detail: e.reason });
    if (e.early === 'mapped' && e.value !== undefined) return this.finishId(req, scope, ctx, opts, e.value, undefined, trail);
    const why = e.early === 'squashed' || e.early === 'unmappable' ? e.early : 'nobody';
    return this.unmapped(req, scope, ctx, opts, why, e.reason, 'none', trail);
  }

  /**
   * Not mapped. Squashed and unmappable ids always answer nobody (a negative answer would let
   * the kernel fall back to the raw number — the spoofed root); a plain "not found" answers as
   * the scope (or the interface's default) says.
   */
  private async unmapped(req: Request, scope: CompiledScope, ctx: Context, opts: ResolveOptions, why: 'nobody' | 'squashed' | 'unmappable', reason: string, cache: CacheState, trail: ExplainStep[] | undefined): Promise<Answer> {
    const type = answerTypeOf(req.kind);
    const dir = DIRECTION[type];
    const rule = why === 'nobody' ? scope.unmapped[dir] ?? UNMAPPED_DEFAULTS[ctx.iface][dir] : 'nobody';
    if (rule === 'nobody' && this.audit?.on(why) && !opts.admin) {
      this.audit.note(why, { iface: ctx.iface, scope: scope.name, kind: req.kind, query: requestValue(req), reason, chain: scope.sources, requester: ctx });
    }
    if (rule === 'negative') {
      trail?.push({ step: 'unmapped', detail: `${reason}; answered negatively (unmapped.${dir}: negative)` });
      return this.answer(req, scope, 'negative', undefined, { cache, ttl: scope.ttlNegative, reason }, trail);
    }
    const nob = await this.nobodyFor(scope);
    const value = type === 'id' ? (entityOf(req.kind) === 'user' ? nob.uid : nob.gid) : type === 'name' ? (entityOf(req.kind) === 'user' ? nob.userName : nob.groupName) : nob.sid;
    trail?.push({ step: 'unmapped', detail: `${reason}; answered nobody (${value})` });
    const ttl = why === 'nobody' ? scope.ttlNegative : scope.ttlPositive;
    return this.answer(req, scope, why, value, { cache, ttl, reason }, trail);
  }

  private nobodyFor(scope: CompiledScope): Promise<NobodyValues> {
    let p = this.nobody.get(scope.name);
    if (!p) {
      const cache = this.nobody;
      p = nobodyOf(scope).then((v) => {
        // a fallback used because a source faulted is for this answer only: ask again next time
        if (!v.settled && cache.get(scope.name) === p) cache.delete(scope.name);
        return v;
      });
      cache.set(scope.name, p);
    }
    return p;
  }

  private ttlFor(scope: CompiledScope, cache: CacheState): number {
    // A stale answer is served only while the sources fail: let the kernel ask again soon.
    return cache === 'stale' ? Math.min(scope.ttlNegative, scope.ttlPositive) : scope.ttlPositive;
  }

  private answer(req: Request, scope: CompiledScope, outcome: Outcome, value: number | string | undefined, extra: { source?: string; cache: CacheState; ttl: number; reason?: string }, trail: ExplainStep[] | undefined): Answer {
    return { request: req, outcome, value, scope: scope.name, source: extra.source || undefined, cache: extra.cache, ttl: extra.ttl, reason: extra.reason, trail };
  }

  private noScope(req: Request, ctx: Context, opts: ResolveOptions, trail: ExplainStep[] | undefined): Answer {
    const forced = opts.scope;
    const reason = forced !== undefined ? `no scope named "${forced}"` : 'no scope of the policy matches this request';
    if (!opts.admin) {
      this.metrics.refused(ctx.iface, 'no_scope');
      if (this.audit?.on('refused')) this.audit.note('refused', { iface: ctx.iface, kind: req.kind, query: requestValue(req), reason, requester: ctx });
    }
    trail?.push({ step: 'scope', detail: reason });
    return { request: req, outcome: 'error', code: 'NSIDMAP_ENOSCOPE', cache: 'none', ttl: DEFAULT_ERROR_TTL, reason, trail };
  }

  private fault(req: Request, scope: CompiledScope, e: unknown, trail: ExplainStep[] | undefined): Answer {
    const { code, message } = describeError(e);
    const finalCode = e instanceof SourceFault ? 'NSIDMAP_ESOURCE' : code;
    if (finalCode === 'NSIDMAP_EINTERNAL') this.log.error('resolve.bug', { scope: scope.name, kind: req.kind, error: (e as Error)?.stack ?? message });
    trail?.push({ step: 'error', detail: message });
    return { request: req, outcome: 'error', code: finalCode, scope: scope.name, cache: 'none', ttl: DEFAULT_ERROR_TTL, reason: message, trail };
  }
}

/** The metrics outcome of an answer: a mapped one split by where it came from. */
function outcomeOf(a: Answer): number {
  switch (a.outcome) {
    case 'mapped':
      return a.cache === 'miss' ? OUTCOME.miss : a.cache === 'stale' ? OUTCOME.stale : OUTCOME.hit;
    case 'nobody':
      return OUTCOME.nobody;
    case 'squashed':
      return OUTCOME.squashed;
    case 'unmappable':
      return OUTCOME.unmappable;
    case 'negative':
      return OUTCOME.negative;
    case 'error':
      return OUTCOME.error;
  }
}

/** Errors are kept briefly by the kernel: the next request retries. */
export const DEFAULT_ERROR_TTL = 5;

/**
 * The reader's uid_map/gid_map for `ids: container`. Never for answers the kernel caches
 * host-wide (keyrings, the pipe's id_legacy keys): those are read by every namespace, so
 * translating them for the one that happened to ask would hand the others a wrong id.
 */
function readerMapOf(scope: CompiledScope, ctx: Context, entity: Entity) {
  if (scope.ids !== 'container' || !ctx.userns || ctx.userns.isInit) return undefined;
  if (HOST_WIDE_INTERFACES.includes(ctx.iface)) return undefined;
  return entity === 'user' ? ctx.userns.uidMap : ctx.userns.gidMap;
}

function pick(method: Method, e: { id: number; name?: string; sid?: string }): string | undefined {
  switch (method) {
    case 'byName':
    case 'bySid':
      return isValidId(e.id) ? String(e.id) : undefined;
    case 'byId':
      return e.name ? e.name : undefined;
    case 'sidOf':
      return e.sid ? e.sid : undefined;
  }
}

export const KEY_SEP = '\x1f';
export function cacheKey(scope: CompiledScope, kind: LookupKind, query: string): string {
  return scope.name + KEY_SEP + kind + KEY_SEP + query;
}
export function printableKey(key: string): string {
  return key.split(KEY_SEP).join(' ');
}
