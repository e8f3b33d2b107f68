/**
 * Scope matching. A scope's `match` has two kinds of conditions:
 * - request properties (idRange, domain, sidDomain): what the request itself carries. A scope
 *   that names any of them takes only requests that carry a property it names, and that fit —
 *   so `{ idRange, domain }` takes ids in the range and names in the domain, and no SIDs.
 * - requester properties (container, runtime, cgroup, netns, userns, authDomain): who asked.
 *   Keyring answers are host-wide (PROTOCOLS.md §2, §5), and so are rpc_pipefs answers (the
 *   kernel keeps them as `id_legacy` keys in the same host-wide keyring), so these never select
 *   a scope for a keyring or pipefs request; `policy check` rejects a scope that could apply to
 *   those interfaces and uses them. Only nfsd's caches are per network namespace.
 */
import { toHost } from '../../ns/idmap.js';
import { entityOf, HOST_WIDE_INTERFACES, type Context, type IdMapRange, type Interface, type Request } from '../../types.js';
import { splitRid } from '../../sid.js';
import type { MatchConfig } from './schema.js';

export type Matcher = (req: Request, ctx: Context) => boolean;

export const REQUESTER_KEYS = ['container', 'runtime', 'cgroup', 'netns', 'userns', 'authDomain'] as const;
export const REQUEST_KEYS = ['idRange', 'domain', 'sidDomain'] as const;

const list = <T>(v: T | readonly T[] | undefined): readonly T[] | undefined =>
  v === undefined ? undefined : Array.isArray(v) ? (v as readonly T[]) : [v as T];

export function globToRegExp(glob: string, caseInsensitive = false): RegExp {
  let re = '';
  for (const ch of glob) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, caseInsensitive ? 'i' : '');
}

function anyGlob(globs: readonly string[] | undefined, ci = false): ((s: string | undefined) => boolean) | undefined {
  if (!globs) return undefined;
  const res = globs.map((g) => globToRegExp(g, ci));
  return (s) => s !== undefined && res.some((r) => r.test(s));
}

/** the domain of an NFSv4 name: after the last `@` */
export function nameDomain(name: string): string | undefined {
  const at = name.lastIndexOf('@');
  return at < 0 ? undefined : name.slice(at + 1);
}

function inRanges(ranges: readonly { first: number; count: number }[], id: number): boolean {
  return ranges.some((r) => id >= r.first && id < r.first + r.count);
}

function mapCoversRange(map: readonly IdMapRange[], r: { first: number; count: number }): boolean {
  return map.some((l) => l.outside <= r.first && r.first + r.count <= l.outside + l.count);
}

/** Conditions compiled once per policy load: no regex is built per request. */
interface Compiled {
  readonly ranges?: readonly { first: number; count: number }[];
  readonly domain?: (s: string | undefined) => boolean;
  readonly sidDomains?: readonly string[];
  readonly container?: (s: string | undefined) => boolean;
  readonly runtime?: readonly string[];
  readonly cgroup?: (s: string | undefined) => boolean;
  readonly authDomain?: (s: string | undefined) => boolean;
}

function compileConditions(m: MatchConfig): Compiled {
  return {
    ranges: list(m.idRange),
    domain: anyGlob(list(m.domain), true),
    sidDomains: list(m.sidDomain)?.map((d) => d.toUpperCase()),
    container: anyGlob(list(m.container)),
    runtime: list(m.runtime),
    cgroup: anyGlob(list(m.cgroup)),
    authDomain: anyGlob(list(m.authDomain)),
  };
}

/**
 * The host id of an id request, for `idRange` (DESIGN.md: "the host id range the id falls in").
 * Only a scope with `ids: container` reads ids in the reader's namespace — on nfsd's channels, or
 * `idmapctl query --ns` — so only there is the id taken back through the reader's map first; one
 * the map cannot express has no host id and fits no range. Host-wide interfaces carry host ids.
 */
function hostIdOf(req: Request & { id: number }, ctx: Context, ids: ScopeIds): number | undefined {
  if (ids !== 'container' || !ctx.userns || ctx.userns.isInit || HOST_WIDE_INTERFACES.includes(ctx.iface)) return req.id;
  return toHost(entityOf(req.kind) === 'user' ? ctx.userns.uidMap : ctx.userns.gidMap, req.id);
}

/** true when the request carries a property the scope names, and it fits; or none is named */
function requestFits(c: Compiled, req: Request, ctx: Context, ids: ScopeIds): boolean {
  if (!c.ranges && !c.domain && !c.sidDomains) return true;
  if ('id' in req) {
    if (c.ranges === undefined) return false;
    const host = hostIdOf(req, ctx, ids);
    return host !== undefined && inRanges(c.ranges, host);
  }
  if ('name' in req) return c.domain !== undefined && c.domain(nameDomain(req.name));
  if (!c.sidDomains) return false;
  const split = splitRid(req.sid);
  return split !== undefined && c.sidDomains.includes(split.domain.toUpperCase());
}

function requesterFits(m: MatchConfig, c: Compiled, ctx: Context): boolean {
  if (c.container && !c.container(ctx.container?.id)) return false;
  if (c.runtime && !c.runtime.includes(ctx.container?.runtime ?? '')) return false;
  if (c.cgroup && !c.cgroup(ctx.cgroup)) return false;
  if (c.authDomain && !c.authDomain(ctx.authDomain)) return false;
  if (m.netns !== undefined && !netnsFits(m.netns, ctx)) return false;
  if (m.userns !== undefined && !usernsFits(m.userns, ctx)) return false;
  return true;
}

function netnsFits(want: NonNullable<MatchConfig['netns']>, ctx: Context): boolean {
  const isInit = ctx.netns?.isInit ?? true;
  if (want === 'init') return isInit;
  if (want === 'container') return !isInit;
  return ctx.netns?.inode === want;
}

function usernsFits(want: NonNullable<MatchConfig['userns']>, ctx: Context): boolean {
  const isInit = ctx.userns?.isInit ?? true;
  if (want === 'init') return isInit;
  if (want === 'container') return !isInit;
  if (isInit || !ctx.userns) return false;
  if (want.owner !== undefined && ctx.userns.owner !== want.owner) return false;
  if (want.hostRange && !mapCoversRange(ctx.userns.uidMap, want.hostRange)) return false;
  return true;
}

export function usesRequester(m: MatchConfig | undefined): boolean {
  return m !== undefined && REQUESTER_KEYS.some((k) => m[k] !== undefined);
}

export function interfacesOf(m: MatchConfig | undefined): readonly Interface[] | undefined {
  return list(m?.interface);
}

export type ScopeIds = 'host' | 'container';

/** `ids`: the scope's id space, which says in whose ids an id request reaches it (hostIdOf). */
export function compileMatch(m: MatchConfig | undefined, ids: ScopeIds = 'host'): Matcher {
  if (!m) return () => true;
  const ifaces = interfacesOf(m);
  const requester = usesRequester(m);
  const c = compileConditions(m);
  return (req, ctx) => {
    if (ifaces && !ifaces.includes(ctx.iface)) return false;
    if (!requestFits(c, req, ctx, ids)) return false;
    if (requester && HOST_WIDE_INTERFACES.includes(ctx.iface)) return false;
    return !requester || requesterFits(m, c, ctx);
  };
}
