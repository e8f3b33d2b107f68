/**
 * The Prometheus text format (0.0.4) as written by src/metrics/exposition.ts, read back with a
 * strict parser of that format (test/fixtures/prometheus.ts): every line must be a HELP, a TYPE
 * or a sample that belongs to the family its TYPE announced; counters end in `_total`; histograms
 * have cumulative `_bucket`s ending in `le="+Inf"` equal to `_count`; no series twice; label
 * values escaped.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../src/cache/memory.js';
import { silentLogger } from '../../src/log.js';
import { exposition, escapeLabelValue, formatNumber, METRIC_FAMILIES } from '../../src/metrics/exposition.js';
import { Metrics } from '../../src/metrics/registry.js';
import { takeSnapshot, type StatsSnapshot } from '../../src/metrics/snapshot.js';
import type { Source } from '../../src/providers/source.js';
import { compilePolicy } from '../../src/resolver/policy/compile.js';
import { Policy } from '../../src/resolver/policy/schema.js';
import { Resolver } from '../../src/resolver/resolver.js';
import { checkConventions, parseExposition } from '../fixtures/prometheus.js';

async function busySnapshot(): Promise<StatsSnapshot> {
  const policy = compilePolicy(
    Policy.parse({ domain: 'example.com', providers: { t: { kind: 'static', users: { alice: 1001, root: 0 } } }, scopes: [{ name: 'host', providers: ['t'], root: 'squash' }] }),
    { log: silentLogger, hostDomain: () => 'x' },
  );
  const metrics = new Metrics();
  const r = new Resolver(policy, new MemoryStore(), { log: silentLogger, metrics });
  for (const name of ['alice@example.com', 'alice@example.com', 'mallory@example.com', 'root@example.com', '17']) await r.resolve({ kind: 'name-to-uid', name }, { iface: 'keyring-nfs' });
  await r.resolve({ kind: 'uid-to-name', id: 1001 }, { iface: 'nfsd' }, { admin: true });
  metrics.refused('keyring-cifs', 'malformed');
  metrics.kernelFlush('nfsd:/proc/net/rpc', true);
  metrics.kernelFlush('nfsd:/proc/net/rpc', false);
  metrics.reload(true);
  // a pooled source, with a name that needs escaping in a label value
  const odd: Source = { name: 'we"ird\\name\nx', kind: 'ldap', health: () => ({ state: 'degraded' }), metrics: () => ({ connections: 2, connectionsMax: 4, inFlight: 1, queued: 0, failovers: 3, rejected: 0, timeouts: 5 }) };
  metrics.source(odd.name, odd.kind).duration.observe(0.003);
  return takeSnapshot({ metrics, version: '1.2.3', sources: [...policy.sources.values(), odd], cache: { entries: 3, negative: 1 } });
}

describe('Prometheus exposition', () => {
  it('parses back: every line valid, every family with HELP and TYPE, named by convention', async () => {
    const text = exposition(await busySnapshot());
    checkConventions(parseExposition(text));
  });

  it('exposes exactly the families of METRIC_FAMILIES, each with samples when there is data', async () => {
    const families = parseExposition(exposition(await busySnapshot()));
    assert.deepEqual([...families.keys()], METRIC_FAMILIES.map((f) => f.name));
    const empty = [...families.values()].filter((f) => f.samples.length === 0).map((f) => f.name);
    assert.deepEqual(empty, []);
  });

  it('the numbers are the snapshot\'s', async () => {
    const f = parseExposition(exposition(await busySnapshot()));
    const value = (name: string, labels: Record<string, string>) =>
      (f.get(name) ?? f.get(name.replace(/_(bucket|sum|count)$/, '')))!.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    assert.equal(value('nsidmap_lookups_total', { interface: 'keyring-nfs', scope: 'host', outcome: 'hit' }), 2, 'alice (cache) and 17 (numeric)');
    assert.equal(value('nsidmap_lookups_total', { interface: 'keyring-nfs', scope: 'host', outcome: 'miss' }), 1);
    assert.equal(value('nsidmap_lookups_total', { interface: 'keyring-nfs', scope: 'host', outcome: 'nobody' }), 1);
    assert.equal(value('nsidmap_lookups_total', { interface: 'keyring-nfs', scope: 'host', outcome: 'squashed' }), 1);
    assert.equal(value('nsidmap_lookups_total', { interface: 'admin', scope: 'host', outcome: 'miss' }), 1);
    assert.equal(value('nsidmap_cache_entries', {}), 3);
    assert.equal(value('nsidmap_requests_refused_total', { interface: 'keyring-cifs', reason: 'malformed' }), 1);
    assert.equal(value('nsidmap_kernel_cache_flush_failures_total', { responder: 'nfsd:/proc/net/rpc' }), 1);
    assert.equal(value('nsidmap_source_up', { source: 'we"ird\\name\nx' }), 1, 'escaped and read back');
    assert.equal(value('nsidmap_source_degraded', { source: 'we"ird\\name\nx' }), 1);
    assert.equal(value('nsidmap_source_timeouts_total', { source: 'we"ird\\name\nx' }), 5);
    assert.equal(value('nsidmap_source_duration_seconds_bucket', { source: 'we"ird\\name\nx', le: '0.005' }), 1);
    assert.equal(value('nsidmap_source_duration_seconds_bucket', { source: 'we"ird\\name\nx', le: '0.0025' }), 0);
    assert.equal(value('nsidmap_policy_reloads_total', { result: 'ok' }), 1);
    assert.equal(value('nsidmap_build_info', { version: '1.2.3' }), 1);
    assert.equal(f.get('nsidmap_source_connections')!.samples.length, 1, 'only sources that report pool figures');
  });

  it('escapes label values (backslash, quote, newline) and spells special numbers', () => {
    assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
    assert.deepEqual([Infinity, -Infinity, NaN, 0.00001, 3].map(formatNumber), ['+Inf', '-Inf', 'NaN', '0.00001', '3']);
  });

  it('an idle daemon\'s exposition is valid too (empty histograms, no sources)', () => {
    const s = takeSnapshot({ metrics: new Metrics(), version: '0', sources: [], cache: { entries: 0, negative: 0 } });
    checkConventions(parseExposition(exposition(s)));
  });
});
