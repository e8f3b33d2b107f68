/**
 * One reading of everything the daemon measures, as plain data: what the `stats` admin op returns
 * (`idmapctl stats`, `--json`) and what the Prometheus exposition is written from — so both always
 * show the same numbers. Counters come from the registry; gauges (cache entries, source health,
 * pool figures, memory) are read now.
 */
import type { CacheStats } from '../cache/store.js';
import type { Source, SourceHealth, SourceMetrics } from '../providers/source.js';
import { INTERFACES, type Interface } from '../types.js';
import type { HistogramSnapshot } from './histogram.js';
import { LOOKUP_OUTCOMES, OUTCOME, REFUSALS, type LookupOutcome, type Metrics, type Refusal } from './registry.js';

export interface LookupCount {
  readonly interface: Interface;
  readonly scope: string;
  readonly outcome: LookupOutcome;
  readonly count: number;
}

export interface ScopeCache {
  readonly scope: string;
  readonly hits: number;
  readonly misses: number;
  readonly stale: number;
}

export interface SourceStats {
  readonly name: string;
  readonly kind: string;
  /** a source of the policy in force (else one a reload removed: counters only) */
  readonly current: boolean;
  /** health, for a current source */
  readonly state?: SourceHealth['state'];
  readonly detail?: string;
  readonly found: number;
  readonly notFound: number;
  readonly errors: number;
  readonly duration: HistogramSnapshot;
  /** what a pooled source reports (connections, failovers, …) */
  readonly pool?: SourceMetrics;
}

export interface StatsSnapshot {
  readonly version: string;
  /** seconds since the epoch */
  readonly startedAt: number;
  readonly uptime: number;
  /** every interface × scope × outcome, zeros included */
  readonly lookups: readonly LookupCount[];
  /** per interface; admin queries are counted under `admin` */
  readonly lookupDuration: readonly { readonly interface: Interface; readonly histogram: HistogramSnapshot }[];
  readonly cache: CacheStats & { readonly scopes: readonly ScopeCache[] };
  readonly sources: readonly SourceStats[];
  readonly refused: readonly { readonly interface: Interface; readonly reason: Refusal; readonly count: number }[];
  readonly kernelFlushes: readonly { readonly responder: string; readonly ok: number; readonly failed: number }[];
  readonly reloads: { readonly ok: number; readonly refused: number };
  readonly process: { readonly rss: number; readonly heapUsed: number; readonly cpuSeconds: number };
}

export interface SnapshotInputs {
  readonly metrics: Metrics;
  readonly version: string;
  /** the sources of the policy in force */
  readonly sources: Iterable<Source>;
  readonly cache: CacheStats;
  readonly now?: number;
}

export function takeSnapshot(inp: SnapshotInputs): StatsSnapshot {
  const m = inp.metrics;
  const now = inp.now ?? Date.now();
  const lookups: LookupCount[] = [];
  for (const s of m.scopes()) {
    for (const iface of INTERFACES) {
      for (const outcome of LOOKUP_OUTCOMES) lookups.push({ interface: iface, scope: s.name, outcome, count: s.get(INTERFACES.indexOf(iface), OUTCOME[outcome]) });
    }
  }
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  return {
    version: inp.version,
    startedAt: Math.floor(m.startedAt / 1000),
    uptime: Math.max(0, Math.round((now - m.startedAt) / 1000)),
    lookups,
    lookupDuration: INTERFACES.map((iface) => ({ interface: iface, histogram: m.latencyOf(iface).snapshot() })),
    cache: { ...inp.cache, scopes: m.scopes().map((s) => ({ scope: s.name, hits: s.cacheHits, misses: s.cacheMisses, stale: s.stale })) },
    sources: sourceStats(m, inp.sources),
    refused: INTERFACES.flatMap((iface) => REFUSALS.map((reason) => ({ interface: iface, reason, count: m.refusedCount(iface, reason) }))),
    kernelFlushes: m.kernelFlushes().map(([responder, f]) => ({ responder, ok: f.ok, failed: f.failed })),
    reloads: { ...m.reloads },
    process: { rss: mem.rss, heapUsed: mem.heapUsed, cpuSeconds: (cpu.user + cpu.system) / 1e6 },
  };
}

/** Current sources first (in policy order) with their health, then retired ones (counters only). */
function sourceStats(m: Metrics, current: Iterable<Source>): SourceStats[] {
  const out: SourceStats[] = [];
  const seen = new Set<string>();
  for (const src of current) {
    seen.add(src.name);
    const slot = m.source(src.name, src.kind);
    const h = src.health?.() ?? { state: 'up' as const };
    const pool = src.metrics?.();
    out.push({ name: src.name, kind: src.kind, current: true, state: h.state, detail: h.detail, found: slot.found, notFound: slot.notFound, errors: slot.errors, duration: slot.duration.snapshot(), pool: pool && Object.keys(pool).length > 0 ? pool : undefined });
  }
  for (const slot of m.sources()) {
    if (seen.has(slot.name)) continue;
    out.push({ name: slot.name, kind: slot.kind, current: false, found: slot.found, notFound: slot.notFound, errors: slot.errors, duration: slot.duration.snapshot() });
  }
  return out;
}

/** Cache hit ratio since start (hits / (hits + misses)); undefined before the first lookup. */
export function hitRatio(s: StatsSnapshot): number | undefined {
  let hits = 0;
  let misses = 0;
  for (const c of s.cache.scopes) {
    hits += c.hits;
    misses += c.misses;
  }
  return hits + misses === 0 ? undefined : hits / (hits + misses);
}
