/**
 * `idmapctl policy check`: everything the schema cannot see. Errors refuse the policy (the
 * daemon keeps the old one); warnings are printed. Every finding points at file:line:column.
 */
import { formatListen, isLoopback, parseListen } from '../../metrics/listen.js';
import { sidRangeOverlaps } from '../../providers/sid.js';
import { staticConflicts } from '../../providers/static.js';
import { HOST_WIDE_INTERFACES, KEYRING_INTERFACES, type Interface } from '../../types.js';
import { findingAt, type Finding, type LoadedPolicy } from './load.js';
import { interfacesOf, REQUEST_KEYS, REQUESTER_KEYS, usesRequester } from './match.js';
import type { MatchConfig, PolicyConfig, ScopeConfig } from './schema.js';
import { DEFAULT_PROVIDERS } from './compile.js';

type Report = (path: readonly PropertyKey[], message: string, severity?: Finding['severity'], key?: string) => void;

export function checkPolicy(loaded: LoadedPolicy): Finding[] {
  const out: Finding[] = [];
  const report: Report = (path, message, severity = 'error', key) => out.push(findingAt(loaded.src, path, message, severity, key));
  const cfg = loaded.config;
  const scopes = cfg.scopes ?? [];
  checkNames(scopes, report);
  checkReferences(cfg, report);
  checkStatic(cfg, report);
  checkSidRanges(cfg, report);
  scopes.forEach((sc, i) => checkScope(sc, i, report));
  checkReachability(scopes, cfg.defaults?.ids ?? 'host', report);
  checkMetrics(cfg, report);
  return out;
}

/** An endpoint off loopback shows lookup counts, scope and source names to anyone who can reach it. */
function checkMetrics(cfg: PolicyConfig, report: Report): void {
  const listen = cfg.metrics?.listen;
  if (listen === undefined) return;
  const a = parseListen(listen);
  if (typeof a !== 'string' && !isLoopback(a.host)) {
    report(['metrics', 'listen'], `the metrics endpoint listens on ${formatListen(a)}, beyond this host: it has no authentication — firewall it, or listen on 127.0.0.1 and scrape through a proxy`, 'warning');
  }
}

function checkNames(scopes: readonly ScopeConfig[], report: Report): void {
  const seen = new Map<string, number>();
  scopes.forEach((sc, i) => {
    const first = seen.get(sc.name);
    if (first !== undefined) report(['scopes', i, 'name'], `scope name "${sc.name}" is already used by scopes[${first}]`);
    else seen.set(sc.name, i);
  });
}

function checkReferences(cfg: PolicyConfig, report: Report): void {
  const known = new Set(Object.keys(cfg.providers ?? DEFAULT_PROVIDERS));
  const refs = (list: readonly string[] | undefined, path: PropertyKey[]) =>
    list?.forEach((n, j) => { if (!known.has(n)) report([...path, j], `no provider named "${n}" (known: ${[...known].join(', ') || 'none'})`); });
  refs(cfg.defaults?.providers, ['defaults', 'providers']);
  (cfg.scopes ?? []).forEach((sc, i) => refs(sc.providers, ['scopes', i, 'providers']));
}

function checkStatic(cfg: PolicyConfig, report: Report): void {
  for (const [name, p] of Object.entries(cfg.providers ?? {})) {
    if (p.kind !== 'static') continue;
    for (const c of staticConflicts(p as never)) report(['providers', name], `static table is not one-to-one: ${c}`);
  }
}

interface NamedRange { domain: string; first: number; count: number; ridBase?: number; where: PropertyKey[] }

function checkSidRanges(cfg: PolicyConfig, report: Report): void {
  const all: NamedRange[] = [];
  for (const [name, p] of Object.entries(cfg.providers ?? {})) {
    if (p.kind !== 'sid') continue;
    ((p as { ranges?: Omit<NamedRange, 'where'>[] }).ranges ?? []).forEach((r, j) => all.push({ ...r, where: ['providers', name, 'ranges', j] }));
  }
  (cfg.scopes ?? []).forEach((sc, i) => sc.sid?.ranges?.forEach((r, j) => all.push({ ...r, where: ['scopes', i, 'sid', 'ranges', j] })));
  // Ranges must be disjoint across the whole policy: a SID must map to one id fleet-wide.
  for (let a = 0; a < all.length; a++) {
    for (let b = a + 1; b < all.length; b++) {
      const msgs = sidRangeOverlaps([all[a]!, all[b]!]);
      for (const m of msgs) report(all[b]!.where, `SID range overlaps ${pathOf(all[a]!.where)}: ${m}`);
    }
  }
}

const pathOf = (p: readonly PropertyKey[]) => p.map((x) => (typeof x === 'number' ? `[${x}]` : `.${String(x)}`)).join('').replace(/^\./, '');

function mayServe(m: MatchConfig | undefined, which: readonly Interface[]): boolean {
  const ifaces = interfacesOf(m);
  return !ifaces || ifaces.some((i) => which.includes(i));
}
const mayServeKeyring = (m: MatchConfig | undefined) => mayServe(m, KEYRING_INTERFACES);

function checkScope(sc: ScopeConfig, i: number, report: Report): void {
  const m = sc.match;
  if (usesRequester(m) && mayServe(m, HOST_WIDE_INTERFACES)) {
    const keys = REQUESTER_KEYS.filter((k) => m?.[k] !== undefined).join(', ');
    report(['scopes', i, 'match'], `matches on the requester (${keys}) but may answer keyring or pipefs requests, whose answers the kernel caches host-wide: ` +
      `set match.interface to nfsd/admin, or select those requests by idRange/domain/sidDomain (DESIGN.md "Which context may choose a scope")`);
  }
  if (sc.ids === 'container' && mayServeKeyring(m) && !interfacesOf(m)) {
    report(['scopes', i, 'ids'], 'ids: container has no effect on keyring answers (the kernel reads them in the init namespace)', 'warning');
  }
  if (sc.root !== 'squash' && (m?.userns === 'container' || typeof m?.userns === 'object')) {
    report(['scopes', i, 'root'], 'scope for container user namespaces allows root: a root made with `unshare -U -r` maps to root on the wire; consider root: squash', 'warning');
  }
  checkMapLines(sc.map?.uid, ['scopes', i, 'map', 'uid'], report);
  checkMapLines(sc.map?.gid, ['scopes', i, 'map', 'gid'], report);
}

function checkMapLines(lines: readonly (readonly [number, number, number])[] | undefined, path: PropertyKey[], report: Report): void {
  if (!lines) return;
  for (let a = 0; a < lines.length; a++) {
    for (let b = a + 1; b < lines.length; b++) {
      const [ia, oa, ca] = lines[a]!;
      const [ib, ob, cb] = lines[b]!;
      if (ia < ib + cb && ib < ia + ca) report([...path, b], `inside ids overlap line ${a}`);
      if (oa < ob + cb && ob < oa + ca) report([...path, b], `host ids overlap line ${a}`);
    }
  }
}

const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);

/**
 * Scope B is unreachable when an earlier A takes every request B takes. `ids` are the scopes' id
 * spaces: an `idRange` is matched on the host id, which a scope with `ids: container` reads
 * through the reader's map (match.ts hostIdOf) — so the same range under two different `ids`
 * takes different requests, and neither shadows the other.
 */
function shadows(a: MatchConfig | undefined, b: MatchConfig | undefined, ids: { a: string; b: string }): boolean {
  if (a?.idRange !== undefined && b?.idRange !== undefined && ids.a !== ids.b) return false;
  // interface and requester conditions narrow: A's must be a subset of B's, with equal values
  const narrowing = ['interface', ...REQUESTER_KEYS] as const;
  if (!narrowing.every((k) => a?.[k] === undefined || same(a[k], b?.[k]))) return false;
  // request properties select which requests a scope takes at all (match.ts requestFits): naming
  // one more widens a scope to another kind of request. A naming none takes every kind; else every
  // property B names, A must name with the same value (`{idRange}` does not shadow `{idRange, domain}`).
  if (REQUEST_KEYS.every((k) => a?.[k] === undefined)) return true;
  const named = REQUEST_KEYS.filter((k) => b?.[k] !== undefined);
  return named.length > 0 && named.every((k) => same(a?.[k], b?.[k]));
}

function checkReachability(scopes: readonly ScopeConfig[], defaultIds: string, report: Report): void {
  const idsOf = (s: ScopeConfig) => s.ids ?? defaultIds;
  for (let b = 1; b < scopes.length; b++) {
    const sb = scopes[b]!;
    const a = scopes.slice(0, b).findIndex((s) => shadows(s.match, sb.match, { a: idsOf(s), b: idsOf(sb) }));
    if (a >= 0) report(['scopes', b, 'name'], `unreachable: every request it matches is taken by scopes[${a}] (${scopes[a]!.name}) first`);
  }
  const catchAll = (iface: Interface) =>
    scopes.some((s) => Object.keys(s.match ?? {}).every((k) => k === 'interface') && (interfacesOf(s.match)?.includes(iface) ?? true));
  const uncovered = (['keyring-nfs', 'keyring-cifs', 'pipefs', 'nfsd'] as const).filter((i) => !catchAll(i));
  if (scopes.length > 0 && uncovered.length > 0) {
    report(['scopes'], `no catch-all scope for ${uncovered.join(', ')}: requests no scope matches are refused (NSIDMAP_ENOSCOPE)`, 'warning');
  }
}
