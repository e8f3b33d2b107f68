/**
 * The in-process metrics registry. Always on, so it must cost next to nothing on the hot path:
 * every counter is a plain number in a slot allocated up front — per scope a Float64Array indexed
 * by (interface, outcome), per interface and per source a fixed-bucket histogram — and the
 * resolver holds direct references to its scopes' slots (no map lookup, no label string, no
 * allocation per lookup). Reading (`idmapctl stats`, a Prometheus scrape) walks the slots and
 * builds plain objects: that side may allocate.
 *
 * Counters only grow: a scope or source that a reload removed keeps its slot (and its series),
 * as Prometheus expects of a counter. Slots are made only for names from the policy, so their
 * number is bounded by what the policies in force ever named.
 */
import { INTERFACES, type Interface } from '../types.js';
import { Histogram } from './histogram.js';

/**
 * How a lookup ended, one per lookup. A mapped answer is split by where it came from: `hit` (the
 * cache, or no source needed: a numeric name), `miss` (the sources were asked), `stale` (an
 * expired entry served because every source failed). The others are the Answer's outcome.
 */
export const LOOKUP_OUTCOMES = ['hit', 'miss', 'stale', 'negative', 'nobody', 'squashed', 'unmappable', 'error'] as const;
export type LookupOutcome = (typeof LOOKUP_OUTCOMES)[number];

export const OUTCOME: { readonly [K in LookupOutcome]: number } = {
  hit: 0, miss: 1, stale: 2, negative: 3, nobody: 4, squashed: 5, unmappable: 6, error: 7,
};

/** Interface → slot index, in INTERFACES order. */
export const IFACE: { readonly [K in Interface]: number } = Object.fromEntries(INTERFACES.map((k, i) => [k, i])) as { [K in Interface]: number };

/** Why a request was refused before (or instead of) a lookup. */
export const REFUSALS = ['malformed', 'no_scope'] as const;
export type Refusal = (typeof REFUSALS)[number];

const N_OUTCOMES = LOOKUP_OUTCOMES.length;
const N_IFACES = INTERFACES.length;

/** The label a lookup that no scope took is counted under: not a valid scope name (schema: [A-Za-z0-9_.-]). */
export const NO_SCOPE = '(none)';

/** One scope's counters. */
export class ScopeSlot {
  /** [iface * N_OUTCOMES + outcome] */
  readonly lookups = new Float64Array(N_IFACES * N_OUTCOMES);
  /** cache entries found usable (fresh or past half their TTL), positive or negative */
  cacheHits = 0;
  /** no entry, or an expired one: the sources were asked */
  cacheMisses = 0;
  /** expired entries served because every source failed */
  stale = 0;
  constructor(readonly name: string) {}

  /** One finished lookup — the hot path: one array increment. `iface`: IFACE[…], `outcome`: OUTCOME[…]. */
  add(iface: number, outcome: number): void {
    this.lookups[iface * N_OUTCOMES + outcome]!++;
  }

  get(iface: number, outcome: number): number {
    return this.lookups[iface * N_OUTCOMES + outcome] ?? 0;
  }
}

/** One source's counters (only misses reach a source). */
export class SourceSlot {
  found = 0;
  notFound = 0;
  errors = 0;
  readonly duration = new Histogram();
  constructor(readonly name: string, readonly kind: string) {}
}

export interface FlushCount {
  ok: number;
  failed: number;
}

/** The counters `status` and `cache stats` showed before there was a registry (same meaning). */
export interface Totals {
  lookups: number;
  hits: number;
  misses: number;
  stale: number;
  negative: number;
  nobody: number;
  squashed: number;
  unmappable: number;
  errors: number;
}

export class Metrics {
  /** wall-clock ms when counting started (process start, for the daemon) */
  readonly startedAt: number;
  readonly noScope = new ScopeSlot(NO_SCOPE);
  private readonly scopeSlots = new Map<string, ScopeSlot>();
  private readonly sourceSlots = new Map<string, SourceSlot>();
  private readonly latency: Histogram[] = INTERFACES.map(() => new Histogram());
  private readonly refusals = new Float64Array(N_IFACES * REFUSALS.length);
  private readonly flushes = new Map<string, FlushCount>();
  readonly reloads = { ok: 0, refused: 0 };

  constructor(now: number = Date.now()) {
    this.startedAt = now;
  }

  /** The slot of a scope name, made on first use (the resolver asks once per policy, not per lookup). */
  scope(name: string): ScopeSlot {
    let s = this.scopeSlots.get(name);
    if (!s) this.scopeSlots.set(name, (s = new ScopeSlot(name)));
    return s;
  }

  source(name: string, kind: string): SourceSlot {
    let s = this.sourceSlots.get(name);
    if (!s) this.sourceSlots.set(name, (s = new SourceSlot(name, kind)));
    return s;
  }

  /** How long a lookup took; `weight` > 1 when it stands for that many untimed ones (sampling). */
  observe(iface: number, seconds: number, weight: number): void {
    this.latency[iface]!.observe(seconds, weight);
  }

  refused(iface: Interface, reason: Refusal): void {
    this.refusals[IFACE[iface] * REFUSALS.length + REFUSALS.indexOf(reason)]!++;
  }

  kernelFlush(responder: string, ok: boolean): void {
    let f = this.flushes.get(responder);
    if (!f) this.flushes.set(responder, (f = { ok: 0, failed: 0 }));
    if (ok) f.ok++;
    else f.failed++;
  }

  reload(ok: boolean): void {
    if (ok) this.reloads.ok++;
    else this.reloads.refused++;
  }

  // ---- reading ----

  /** every scope slot, the no-scope one last */
  scopes(): ScopeSlot[] {
    return [...this.scopeSlots.values(), this.noScope];
  }

  sources(): SourceSlot[] {
    return [...this.sourceSlots.values()];
  }

  latencyOf(iface: Interface): Histogram {
    return this.latency[IFACE[iface]]!;
  }

  refusedCount(iface: Interface, reason: Refusal): number {
    return this.refusals[IFACE[iface] * REFUSALS.length + REFUSALS.indexOf(reason)] ?? 0;
  }

  kernelFlushes(): [string, FlushCount][] {
    return [...this.flushes.entries()].map(([k, v]) => [k, { ...v }]);
  }

  totals(): Totals {
    const t: Totals = { lookups: 0, hits: 0, misses: 0, stale: 0, negative: 0, nobody: 0, squashed: 0, unmappable: 0, errors: 0 };
    for (const s of this.scopes()) {
      for (let i = 0; i < s.lookups.length; i++) t.lookups += s.lookups[i]!;
      t.hits += s.cacheHits;
      t.misses += s.cacheMisses;
      t.stale += s.stale;
      for (let f = 0; f < N_IFACES; f++) {
        t.negative += s.get(f, OUTCOME.negative);
        t.nobody += s.get(f, OUTCOME.nobody);
        t.squashed += s.get(f, OUTCOME.squashed);
        t.unmappable += s.get(f, OUTCOME.unmappable);
        t.errors += s.get(f, OUTCOME.error);
      }
    }
    return t;
  }
}
