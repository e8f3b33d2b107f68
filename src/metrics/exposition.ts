/**
 * The Prometheus text exposition format, version 0.0.4, written from a StatsSnapshot — no
 * client library: the format is a few lines of text per metric, and prom-client would cost
 * ~50 ms to load for nothing the registry does not already hold.
 *
 *   # HELP <name> <text>           (text: `\` and newline escaped)
 *   # TYPE <name> counter|gauge|histogram
 *   <name>{<label>="<value>",…} <number>      (label values: `\`, `"` and newline escaped)
 *   a histogram: <name>_bucket{…,le="<bound>"} (cumulative, last le="+Inf"), <name>_sum, <name>_count
 *
 * One descriptor per metric below; docs/metrics.md documents every name in METRIC_FAMILIES
 * (test/unit/metrics-doc.test.ts keeps the two in step).
 */
import type { HistogramSnapshot } from './histogram.js';
import type { SourceStats, StatsSnapshot } from './snapshot.js';
import type { SourceMetrics } from '../providers/source.js';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Readonly<Record<string, string>>;
interface Sample {
  readonly labels: Labels;
  readonly value: number;
}
interface HistogramSample {
  readonly labels: Labels;
  readonly histogram: HistogramSnapshot;
}

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly samples: (s: StatsSnapshot) => readonly (Sample | HistogramSample)[];
}

const one = (value: number, labels: Labels = {}): Sample[] => [{ labels, value }];

/** A gauge or counter from what pooled sources report; sources that do not report it are left out. */
function poolFamily(name: string, type: 'counter' | 'gauge', help: string, field: keyof SourceMetrics): Family {
  return {
    name,
    type,
    help,
    samples: (s) => s.sources.filter((x): x is SourceStats & { pool: SourceMetrics } => x.current && x.pool?.[field] !== undefined).map((x) => ({ labels: { source: x.name }, value: x.pool[field]! })),
  };
}

export const METRIC_FAMILIES: readonly Family[] = [
  { name: 'nsidmap_build_info', type: 'gauge', help: 'Always 1; the version of the running daemon as a label.', samples: (s) => one(1, { version: s.version }) },
  { name: 'process_start_time_seconds', type: 'gauge', help: 'Start time of the daemon since the Unix epoch, in seconds.', samples: (s) => one(s.startedAt) },
  { name: 'process_resident_memory_bytes', type: 'gauge', help: 'Resident set size of the daemon, in bytes.', samples: (s) => one(s.process.rss) },
  { name: 'process_cpu_seconds_total', type: 'counter', help: 'User and system CPU time of the daemon, in seconds.', samples: (s) => one(s.process.cpuSeconds) },
  { name: 'nodejs_heap_size_used_bytes', type: 'gauge', help: 'JavaScript heap in use, in bytes.', samples: (s) => one(s.process.heapUsed) },
  {
    name: 'nsidmap_lookups_total',
    type: 'counter',
    help: 'Lookups answered, by interface, scope and outcome (hit, miss, stale, negative, nobody, squashed, unmappable, error).',
    samples: (s) => s.lookups.map((l) => ({ labels: { interface: l.interface, scope: l.scope, outcome: l.outcome }, value: l.count })),
  },
  {
    name: 'nsidmap_lookup_duration_seconds',
    type: 'histogram',
    help: 'Time to find an answer in the cache and, on a miss, the sources, by interface (cache hits are sampled and weighted).',
    samples: (s) => s.lookupDuration.map((d) => ({ labels: { interface: d.interface }, histogram: d.histogram })),
  },
  { name: 'nsidmap_cache_entries', type: 'gauge', help: 'Answers in the cache (positive and negative).', samples: (s) => one(s.cache.entries) },
  { name: 'nsidmap_cache_negative_entries', type: 'gauge', help: 'Negative answers (not found) in the cache.', samples: (s) => one(s.cache.negative) },
  { name: 'nsidmap_cache_hits_total', type: 'counter', help: 'Lookups answered from a usable cache entry, by scope.', samples: (s) => s.cache.scopes.map((c) => ({ labels: { scope: c.scope }, value: c.hits })) },
  { name: 'nsidmap_cache_misses_total', type: 'counter', help: 'Lookups that found no usable cache entry and asked the sources, by scope.', samples: (s) => s.cache.scopes.map((c) => ({ labels: { scope: c.scope }, value: c.misses })) },
  { name: 'nsidmap_stale_answers_total', type: 'counter', help: 'Expired cache entries served because every source failed, by scope.', samples: (s) => s.cache.scopes.map((c) => ({ labels: { scope: c.scope }, value: c.stale })) },
  {
    name: 'nsidmap_source_up',
    type: 'gauge',
    help: '1 when the source can answer (up or degraded), 0 when it is down.',
    samples: (s) => s.sources.filter((x) => x.current).map((x) => ({ labels: { source: x.name, kind: x.kind }, value: x.state === 'down' ? 0 : 1 })),
  },
  {
    name: 'nsidmap_source_degraded',
    type: 'gauge',
    help: '1 when the source answers but not as configured (e.g. failed over to a later server).',
    samples: (s) => s.sources.filter((x) => x.current).map((x) => ({ labels: { source: x.name }, value: x.state === 'degraded' ? 1 : 0 })),
  },
  {
    name: 'nsidmap_source_requests_total',
    type: 'counter',
    help: 'Requests to a source, by source and result (found, not_found, error).',
    samples: (s) => s.sources.flatMap((x) => [
      { labels: { source: x.name, result: 'found' }, value: x.found },
      { labels: { source: x.name, result: 'not_found' }, value: x.notFound },
      { labels: { source: x.name, result: 'error' }, value: x.errors },
    ]),
  },
  {
    name: 'nsidmap_source_duration_seconds',
    type: 'histogram',
    help: 'Time a source took to answer one request, by source.',
    samples: (s) => s.sources.map((x) => ({ labels: { source: x.name }, histogram: x.duration })),
  },
  poolFamily('nsidmap_source_connections', 'gauge', 'Open, usable connections of a pooled source (ldap).', 'connections'),
  poolFamily('nsidmap_source_connections_max', 'gauge', 'Connections a pooled source keeps open when all is well.', 'connectionsMax'),
  poolFamily('nsidmap_source_in_flight', 'gauge', 'Requests a pooled source has on the wire now.', 'inFlight'),
  poolFamily('nsidmap_source_queued', 'gauge', 'Requests waiting for a free slot of a pooled source.', 'queued'),
  poolFamily('nsidmap_source_failovers_total', 'counter', 'Times a server of the source was taken out of service (the next one in order serves, if any).', 'failovers'),
  poolFamily('nsidmap_source_rejected_total', 'counter', 'Requests a pooled source refused at once because it and its queue were full.', 'rejected'),
  poolFamily('nsidmap_source_timeouts_total', 'counter', 'Requests to a pooled source that ran out of time.', 'timeouts'),
  {
    name: 'nsidmap_requests_refused_total',
    type: 'counter',
    help: 'Requests refused without an answer, by interface and reason (malformed, no_scope).',
    samples: (s) => s.refused.map((r) => ({ labels: { interface: r.interface, reason: r.reason }, value: r.count })),
  },
  { name: 'nsidmap_kernel_cache_flushes_total', type: 'counter', help: 'Kernel caches flushed (after a reload or cache flush), by responder.', samples: (s) => s.kernelFlushes.map((f) => ({ labels: { responder: f.responder }, value: f.ok })) },
  { name: 'nsidmap_kernel_cache_flush_failures_total', type: 'counter', help: 'Kernel cache flushes that failed, by responder.', samples: (s) => s.kernelFlushes.map((f) => ({ labels: { responder: f.responder }, value: f.failed })) },
  {
    name: 'nsidmap_policy_reloads_total',
    type: 'counter',
    help: 'Policy reloads, by result (ok, refused: the old policy stayed in force).',
    samples: (s) => [
      { labels: { result: 'ok' }, value: s.reloads.ok },
      { labels: { result: 'refused' }, value: s.reloads.refused },
    ],
  },
];

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value: integers as such, +Inf/-Inf/NaN as Prometheus spells them. */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

function labelText(labels: Labels, extra?: [string, string]): string {
  let out = '';
  for (const k in labels) out += `${out ? ',' : ''}${k}="${escapeLabelValue(labels[k]!)}"`;
  if (extra) out += `${out ? ',' : ''}${extra[0]}="${escapeLabelValue(extra[1])}"`;
  return out ? `{${out}}` : '';
}

function histogramLines(name: string, s: HistogramSample, lines: string[]): void {
  const h = s.histogram;
  h.bounds.forEach((b, i) => lines.push(`${name}_bucket${labelText(s.labels, ['le', formatNumber(b)])} ${formatNumber(h.counts[i] ?? 0)}`));
  lines.push(`${name}_bucket${labelText(s.labels, ['le', '+Inf'])} ${formatNumber(h.count)}`);
  lines.push(`${name}_sum${labelText(s.labels)} ${formatNumber(h.sum)}`);
  lines.push(`${name}_count${labelText(s.labels)} ${formatNumber(h.count)}`);
}

/** The whole exposition, one family after the other, ending with a newline. */
export function exposition(s: StatsSnapshot): string {
  const lines: string[] = [];
  for (const f of METRIC_FAMILIES) {
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const sample of f.samples(s)) {
      if ('histogram' in sample) histogramLines(f.name, sample, lines);
      else lines.push(`${f.name}${labelText(sample.labels)} ${formatNumber(sample.value)}`);
    }
  }
  return lines.join('\n') + '\n';
}
