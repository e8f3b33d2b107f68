/**
 * idmapctl stats — what the daemon has measured since it started, the same numbers the
 * Prometheus endpoint serves (docs/metrics.md), without Prometheus. Imports no client library:
 * the daemon sends one snapshot, this file only lays it out.
 */
import { quantile, type HistogramSnapshot } from '../metrics/histogram.js';
import { LOOKUP_OUTCOMES } from '../metrics/registry.js';
import { hitRatio, type StatsSnapshot } from '../metrics/snapshot.js';
import { ask, json, out, table, type Command } from './common.js';

export function formatSeconds(s: number | undefined): string {
  if (s === undefined) return '-';
  if (s < 0.001) return `${(s * 1e6).toFixed(s < 0.00001 ? 1 : 0)}µs`;
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)}ms`;
  return `${s.toFixed(2)}s`;
}

function pct(x: number | undefined): string {
  return x === undefined ? '-' : `${(x * 100).toFixed(1)}%`;
}

function latency(h: HistogramSnapshot): string[] {
  return [String(Math.round(h.count)), formatSeconds(quantile(h, 0.5)), formatSeconds(quantile(h, 0.9)), formatSeconds(quantile(h, 0.99))];
}

/** The human view: every figure of the snapshot; rows that are all zero are left out. */
export function renderStats(s: StatsSnapshot): string[] {
  const lines: string[] = [];
  const total = s.lookups.reduce((a, l) => a + l.count, 0);
  const stale = s.cache.scopes.reduce((a, c) => a + c.stale, 0);
  lines.push(`nsidmapd ${s.version}, up ${s.uptime}s, rss ${Math.round(s.process.rss / 1048576)} MiB, cpu ${s.process.cpuSeconds.toFixed(1)}s`);
  lines.push(`lookups  ${total} (cache hit ratio ${pct(hitRatio(s))}, ${stale} stale answers served)`);
  lines.push(`cache    ${s.cache.entries} entries (${s.cache.negative} negative)`);
  lines.push(`reloads  ${s.reloads.ok} ok, ${s.reloads.refused} refused`);

  const rows = new Map<string, number[]>();
  for (const l of s.lookups) {
    const key = `${l.scope}\0${l.interface}`;
    const row = rows.get(key) ?? rows.set(key, LOOKUP_OUTCOMES.map(() => 0)).get(key)!;
    row[LOOKUP_OUTCOMES.indexOf(l.outcome)] = l.count;
  }
  const lookupRows = [...rows].filter(([, v]) => v.some((n) => n > 0)).map(([k, v]) => [...k.split('\0'), ...v.map(String)]);
  lines.push('', table([['SCOPE', 'INTERFACE', ...LOOKUP_OUTCOMES.map((o) => o.toUpperCase())], ...lookupRows]));

  const lat = s.lookupDuration.filter((d) => d.histogram.count > 0).map((d) => [d.interface, ...latency(d.histogram)]);
  lines.push('', table([['INTERFACE', 'LOOKUPS', 'P50', 'P90', 'P99'], ...lat]));

  const cacheRows = s.cache.scopes.filter((c) => c.hits + c.misses + c.stale > 0).map((c) => [c.scope, String(c.hits), String(c.misses), String(c.stale), pct(c.hits + c.misses ? c.hits / (c.hits + c.misses) : undefined)]);
  if (cacheRows.length) lines.push('', table([['SCOPE', 'CACHE HITS', 'MISSES', 'STALE', 'HIT RATIO'], ...cacheRows]));

  const srcRows = s.sources.map((x) => [
    x.name, x.kind, x.current ? x.state ?? 'up' : '(removed)', String(x.found), String(x.notFound), String(x.errors),
    formatSeconds(quantile(x.duration, 0.5)), formatSeconds(quantile(x.duration, 0.99)), pool(x.pool),
  ]);
  lines.push('', table([['SOURCE', 'KIND', 'STATE', 'FOUND', 'NOT FOUND', 'ERRORS', 'P50', 'P99', 'POOL'], ...srcRows]));

  const refused = s.refused.filter((r) => r.count > 0).map((r) => `${r.interface} ${r.reason} ${r.count}`);
  lines.push('', `refused  ${refused.length ? refused.join(', ') : 'none'}`);
  const flushes = s.kernelFlushes.map((f) => `${f.responder} ${f.ok}${f.failed ? ` (${f.failed} failed)` : ''}`);
  lines.push(`kernel cache flushes  ${flushes.length ? flushes.join(', ') : 'none'}`);
  return lines;
}

function pool(p: StatsSnapshot['sources'][number]['pool']): string {
  if (!p) return '-';
  const parts: string[] = [];
  if (p.connections !== undefined) parts.push(`conn ${p.connections}${p.connectionsMax !== undefined ? `/${p.connectionsMax}` : ''}`);
  if (p.inFlight !== undefined) parts.push(`in flight ${p.inFlight}`);
  if (p.queued) parts.push(`queued ${p.queued}`);
  if (p.failovers !== undefined) parts.push(`failovers ${p.failovers}`);
  if (p.rejected) parts.push(`rejected ${p.rejected}`);
  if (p.timeouts) parts.push(`timeouts ${p.timeouts}`);
  return parts.join(', ') || '-';
}

export const statsCommand: Command = {
  noun: 'stats',
  verb: '',
  usage: 'idmapctl stats [--json]',
  summary: 'measured since start: lookups by scope, interface and outcome, latency, cache hit ratio, sources, refusals, kernel cache flushes (the metrics endpoint\'s numbers)',
  example: 'idmapctl stats\n  idmapctl stats --json | jq \'.lookups[] | select(.outcome == "nobody" and .count > 0)\'',
  options: {},
  async run(p) {
    const s = await ask<StatsSnapshot>(p, { op: 'stats' });
    if (p.values['json']) return json(s), 0;
    for (const l of renderStats(s)) out(l);
    return 0;
  },
};
