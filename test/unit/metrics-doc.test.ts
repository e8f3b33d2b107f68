/**
 * docs/metrics.md and the exposed metrics stay in step: every family the endpoint writes has a row
 * in the "Every metric" table with its type and labels, and every metric the docs name is one the
 * endpoint writes (a `_bucket`/`_sum`/`_count` of a histogram counts as its family).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { exposition, METRIC_FAMILIES } from '../../src/metrics/exposition.js';
import { LOOKUP_OUTCOMES, Metrics } from '../../src/metrics/registry.js';
import { takeSnapshot } from '../../src/metrics/snapshot.js';

const doc = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8');

/** `| \`name\` | type | labels | meaning |` rows of the metric table */
function documentedRows(): Map<string, { type: string; labels: string[] }> {
  const rows = new Map<string, { type: string; labels: string[] }>();
  for (const m of doc.matchAll(/^\| `([a-z_:]+)` \| (counter|gauge|histogram) \|([^|]*)\|/gm)) {
    rows.set(m[1]!, { type: m[2]!, labels: [...m[3]!.matchAll(/`([a-z_]+)`/g)].map((x) => x[1]!) });
  }
  return rows;
}

/** the label names each family's samples carry (le aside), from a snapshot with data everywhere */
function exposedLabels(): Map<string, Set<string>> {
  const m = new Metrics();
  m.refused('keyring-nfs', 'malformed');
  m.kernelFlush('nfsd', true);
  const s = takeSnapshot({
    metrics: m, version: '0', cache: { entries: 0, negative: 0 },
    sources: [{ name: 'dir', kind: 'ldap', metrics: () => ({ connections: 1, connectionsMax: 1, inFlight: 0, queued: 0, failovers: 0, rejected: 0, timeouts: 0 }) }],
  });
  const out = new Map<string, Set<string>>();
  for (const line of exposition(s).split('\n')) {
    const x = /^([a-z_:]+?)(?:_bucket|_sum|_count)?(?:\{(.*)\})? /.exec(line);
    if (!x || line.startsWith('#')) continue;
    const family = METRIC_FAMILIES.some((f) => f.name === x[1]) ? x[1]! : line.split(/[{ ]/)[0]!;
    const labels = [...(x[2] ?? '').matchAll(/([a-z_]+)="/g)].map((l) => l[1]!).filter((l) => l !== 'le');
    const set = out.get(family) ?? out.set(family, new Set()).get(family)!;
    for (const l of labels) set.add(l);
  }
  return out;
}

describe('docs/metrics.md', () => {
  const rows = documentedRows();

  it('documents every exposed metric, with its type', () => {
    const missing = METRIC_FAMILIES.filter((f) => rows.get(f.name)?.type !== f.type).map((f) => `${f.name} (${f.type})`);
    assert.deepEqual(missing, [], 'add a row to the "Every metric" table');
  });

  it('names no metric that is not exposed', () => {
    const exposed = new Set(METRIC_FAMILIES.map((f) => f.name));
    const named = new Set([...doc.matchAll(/`((?:nsidmap|process|nodejs)_[a-z_]+)/g)].map((m) => m[1]!.replace(/_(bucket|sum|count)$/, '')));
    const unknown = [...named].filter((n) => !exposed.has(n));
    assert.deepEqual(unknown, []);
  });

  it('lists each metric\'s labels as exposed', () => {
    const labels = exposedLabels();
    for (const f of METRIC_FAMILIES) {
      assert.deepEqual([...(labels.get(f.name) ?? [])].sort(), [...(rows.get(f.name)?.labels ?? [])].sort(), f.name);
    }
  });

  it('explains every lookup outcome', () => {
    const missing = LOOKUP_OUTCOMES.filter((o) => !doc.includes(`| \`${o}\` |`));
    assert.deepEqual(missing, []);
  });
});
