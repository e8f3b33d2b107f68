/**
 * PolicyConfig → CompiledPolicy: defaults applied, sources created (not started), scopes with
 * their matchers and translation maps. Pure but for source construction; checks live in check.ts.
 */
import { dirname, resolve } from 'node:path';
import { NsidmapError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { sourceKind } from '../../providers/registry.js';
import type { Source } from '../../providers/source.js';
import type { IdMapRange, Interface } from '../../types.js';
import { DEFAULT_AUDIT_INTERVAL, DEFAULT_AUDIT_MAX_KEYS } from '../../audit.js';
import { DEFAULT_METRICS_PORT, parseListen, type ListenAddress } from '../../metrics/listen.js';
import { hostDomain } from './domain.js';
import { compileMatch, type Matcher } from './match.js';
import type { PolicyConfig, ScopeConfig } from './schema.js';

export type Unmapped = 'nobody' | 'negative';
export type Direction = 'toId' | 'toName' | 'toSid';

/**
 * What a lookup nothing maps answers when the scope does not say: as the tool each interface
 * replaces did (PROTOCOLS.md), except where the kernel makes that unsafe. nfsidmap's name→id
 * never fails (nobody) and its id→name leaves the key negative; nfsd's nametoid stays negative (a
 * chown must not silently become nobody) and idtoname gives nobody; cifs.idmap fails.
 * rpc_pipefs: name→id nobody as rpc.idmapd, but id→name NEGATIVE, unlike rpc.idmapd — the kernel
 * asks the pipe after every failed id_resolver key too (fs/nfs/nfs4idmap.c falls back to the
 * legacy upcall), so a nobody there would turn `chown unmappable-user` into a file owned by
 * nobody instead of EINVAL (seen against the real kernel in the VM test).
 */
export const UNMAPPED_DEFAULTS: Record<Interface, Record<Direction, Unmapped>> = {
  'keyring-nfs': { toId: 'nobody', toName: 'negative', toSid: 'negative' },
  'keyring-cifs': { toId: 'negative', toName: 'negative', toSid: 'negative' },
  pipefs: { toId: 'nobody', toName: 'negative', toSid: 'negative' },
  nfsd: { toId: 'negative', toName: 'nobody', toSid: 'negative' },
  admin: { toId: 'negative', toName: 'negative', toSid: 'negative' },
};

export interface CompiledScope {
  readonly name: string;
  readonly index: number;
  readonly config: ScopeConfig;
  readonly matches: Matcher;
  /** lower-case domain names are written in */
  readonly domain: string;
  /** lower-case domains and realms accepted on incoming names (includes `domain`) */
  readonly accepted: ReadonlySet<string>;
  readonly sources: readonly Source[];
  readonly ids: 'host' | 'container';
  /** sources' ids → host ids (undefined: identity) */
  readonly uidMap?: readonly IdMapRange[];
  readonly gidMap?: readonly IdMapRange[];
  readonly root: 'squash' | 'allow';
  readonly nobodyUser: number | string;
  readonly nobodyGroup: number | string;
  readonly ttlPositive: number;
  readonly ttlNegative: number;
  readonly unmapped: Partial<Record<Direction, Unmapped>>;
}

export interface CompiledPolicy {
  readonly file?: string;
  readonly domain: string;
  readonly scopes: readonly CompiledScope[];
  readonly sources: ReadonlyMap<string, Source>;
  readonly cache: { readonly path?: string; readonly memoryEntries?: number; readonly maxStale: number };
  readonly daemon: { readonly socket?: string; readonly adminGroup?: string | number; readonly logLevel?: 'error' | 'warn' | 'info' | 'debug' };
  /** the Prometheus endpoint; undefined: off */
  readonly metrics?: ListenAddress;
  readonly audit: { readonly interval: number; readonly maxKeys: number };
  readonly config: PolicyConfig;
}

export const DEFAULT_TTL_POSITIVE = 600;
export const DEFAULT_TTL_NEGATIVE = 60;
export const DEFAULT_MAX_STALE = 7 * 86400;

/** The embedded default: one host scope answering from the passwd/group files and the host's NSS. */
export const DEFAULT_PROVIDERS: NonNullable<PolicyConfig['providers']> = {
  files: { kind: 'files' },
  nss: { kind: 'nss' },
};

export interface CompileOptions {
  readonly file?: string;
  readonly log: Logger;
  /** override the host domain lookup (tests) */
  readonly hostDomain?: () => string;
}

function toMap(lines: readonly (readonly [number, number, number])[] | undefined): IdMapRange[] | undefined {
  return lines?.map(([inside, outside, count]) => ({ inside, outside, count }));
}

function createSources(cfg: PolicyConfig, opts: CompileOptions): Map<string, Source> {
  const baseDir = opts.file ? dirname(resolve(opts.file)) : process.cwd();
  const out = new Map<string, Source>();
  for (const [name, pc] of Object.entries(cfg.providers ?? DEFAULT_PROVIDERS)) {
    const kind = sourceKind((pc as { kind: string }).kind);
    if (!kind) throw new NsidmapError('NSIDMAP_EPOLICY_SCHEMA', `providers.${name}: unknown kind`);
    out.set(name, kind.create(name, pc as never, { baseDir, log: opts.log.child({ source: name }) }));
  }
  return out;
}

function implicitSidSource(sc: ScopeConfig, opts: CompileOptions): Source | undefined {
  if (!sc.sid) return undefined;
  const kind = sourceKind('sid');
  if (!kind) return undefined;
  const cfg = { kind: 'sid', ...sc.sid };
  return kind.create(`${sc.name}/sid`, cfg as never, { baseDir: process.cwd(), log: opts.log.child({ source: `${sc.name}/sid` }) });
}

function compileScope(sc: ScopeConfig, index: number, cfg: PolicyConfig, domain: string, sources: Map<string, Source>, opts: CompileOptions): CompiledScope {
  const d = cfg.defaults ?? {};
  const names = sc.providers ?? d.providers ?? Object.keys(cfg.providers ?? DEFAULT_PROVIDERS);
  const chain = names.map((n) => {
    const s = sources.get(n);
    if (!s) throw new NsidmapError('NSIDMAP_EPOLICY_CHECK', `scopes[${index}].providers: no provider named "${n}"`);
    return s;
  });
  const sid = implicitSidSource(sc, opts);
  if (sid) {
    sources.set(sid.name, sid);
    chain.push(sid);
  }
  const scopeDomain = (sc.domain ?? d.domain ?? domain).toLowerCase();
  const accepted = new Set([scopeDomain, ...[...(sc.domains ?? d.domains ?? []), ...(sc.realms ?? d.realms ?? [])].map((x) => x.toLowerCase())]);
  const map = sc.map ?? d.map;
  const ids = sc.ids ?? d.ids ?? 'host';
  return {
    name: sc.name,
    index,
    config: sc,
    matches: compileMatch(sc.match, ids),
    domain: scopeDomain,
    accepted,
    sources: chain,
    ids,
    uidMap: toMap(map?.uid),
    gidMap: toMap(map?.gid ?? map?.uid),
    root: sc.root ?? d.root ?? 'allow',
    nobodyUser: sc.nobody?.user ?? d.nobody?.user ?? 'nobody',
    nobodyGroup: sc.nobody?.group ?? d.nobody?.group ?? 'nogroup',
    ttlPositive: sc.ttl?.positive ?? d.ttl?.positive ?? DEFAULT_TTL_POSITIVE,
    ttlNegative: sc.ttl?.negative ?? d.ttl?.negative ?? DEFAULT_TTL_NEGATIVE,
    unmapped: { ...d.unmapped, ...sc.unmapped },
  };
}

function compileListen(listen: string | number | undefined): ListenAddress {
  const a = parseListen(listen ?? DEFAULT_METRICS_PORT);
  if (typeof a === 'string') throw new NsidmapError('NSIDMAP_EPOLICY_SCHEMA', `metrics.listen: ${a}`);
  return a;
}

export function compilePolicy(cfg: PolicyConfig, opts: CompileOptions): CompiledPolicy {
  const domain = (cfg.domain ?? (opts.hostDomain ?? hostDomain)()).toLowerCase();
  const sources = createSources(cfg, opts);
  const scopeConfigs = cfg.scopes ?? [{ name: 'host' }];
  const scopes = scopeConfigs.map((sc, i) => compileScope(sc, i, cfg, domain, sources, opts));
  return {
    file: opts.file,
    domain,
    scopes,
    sources,
    cache: { path: cfg.cache?.path, memoryEntries: cfg.cache?.memoryEntries, maxStale: cfg.cache?.maxStale ?? DEFAULT_MAX_STALE },
    daemon: { socket: cfg.daemon?.socket, adminGroup: cfg.daemon?.adminGroup, logLevel: cfg.daemon?.logLevel },
    metrics: cfg.metrics ? compileListen(cfg.metrics.listen) : undefined,
    audit: { interval: cfg.audit?.interval ?? DEFAULT_AUDIT_INTERVAL, maxKeys: cfg.audit?.maxKeys ?? DEFAULT_AUDIT_MAX_KEYS },
    config: cfg,
  };
}
