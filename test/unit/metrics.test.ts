/**
 * The metrics registry as the resolver fills it: one count per lookup under (interface, scope,
 * outcome), cache hits/misses/stale per scope, source requests and timings, refusals; the
 * latency histogram (buckets, weights, quantiles); `metrics.listen` addresses; the snapshot.
 */
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../src/cache/memory.js';
import { silentLogger } from '../../src/log.js';
import { Histogram, quantile } from '../../src/metrics/histogram.js';
import { isLoopback, parseListen } from '../../src/metrics/listen.js';
import { IFACE, LOOKUP_OUTCOMES, Metrics, NO_SCOPE, OUTCOME, type LookupOutcome } from '../../src/metrics/registry.js';
import { hitRatio, takeSnapshot } from '../../src/metrics/snapshot.js';
import { SourceFault, type Source } from '../../src/providers/source.js';
import { staticKind } from '../../src/providers/static.js';
import { checkPolicy } from '../../src/resolver/policy/check.js';
import { compilePolicy } from '../../src/resolver/policy/compile.js';
import { formatFinding, validatePolicyText } from '../../src/resolver/policy/load.js';
import { Policy } from '../../src/resolver/policy/schema.js';
import { Resolver, TIMING_EVERY } from '../../src/resolver/resolver.js';
import type { Interface } from '../../src/types.js';

const T0 = 1_700_000_000_000;

function harness(extra: Record<string, unknown> = {}) {
  const compiled = compilePolicy(
    Policy.parse({
      domain: 'example.com',
      providers: { t: { kind: 'static', users: { alice: 1001, root: 0 }, groups: { staff: 50 } } },
      scopes: [
        { name: 'squash', match: { domain: 'squash.example' }, domains: ['squash.example'], providers: ['t'], root: 'squash' },
        { name: 'host', match: { interface: ['keyring-nfs', 'keyring-cifs', 'admin'] }, providers: ['t'] },
      ],
      ...extra,
    }),
    { log: silentLogger, hostDomain: () => 'host.invalid' },
  );
  const clock = { t: T0 };
  const metrics = new Metrics(T0);
  const store = new MemoryStore();
  const resolver = new Resolver(compiled, store, { log: silentLogger, now: () => clock.t, metrics });
  return { resolver, metrics, clock, store, policy: compiled };
}

/** count of one (interface, scope, outcome) cell */
function cell(m: Metrics, scope: string, iface: Interface, outcome: LookupOutcome): number {
  return (scope === NO_SCOPE ? m.noScope : m.scope(scope)).get(IFACE[iface], OUTCOME[outcome]);
}

function sum(m: Metrics): number {
  return m.scopes().reduce((a, s) => a + s.lookups.reduce((x, y) => x + y, 0), 0);
}

describe('metrics: what one lookup counts', () => {
  it('a miss, then hits: miss once, hit after; cache misses/hits per scope', async () => {
    const { resolver, metrics } = harness();
    for (let i = 0; i < 3; i++) await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    assert.equal(cell(metrics, 'host', 'keyring-nfs', 'miss'), 1);
    assert.equal(cell(metrics, 'host', 'keyring-nfs', 'hit'), 2);
    assert.equal(metrics.scope('host').cacheMisses, 1);
    assert.equal(metrics.scope('host').cacheHits, 2);
    assert.equal(sum(metrics), 3, 'each lookup counted once');
  });

  const table: [string, Parameters<Resolver['resolve']>[0], Interface, string, LookupOutcome][] = [
    ['unknown name → nobody (keyring-nfs name→id default)', { kind: 'name-to-uid', name: 'mallory@example.com' }, 'keyring-nfs', 'host', 'nobody'],
    ['foreign domain → nobody', { kind: 'name-to-uid', name: 'bob@other.org' }, 'keyring-nfs', 'host', 'nobody'],
    ['unknown id → negative (keyring-nfs id→name default)', { kind: 'uid-to-name', id: 4242 }, 'keyring-nfs', 'host', 'negative'],
    ['root@ under root: squash → squashed', { kind: 'name-to-uid', name: 'root@squash.example' }, 'keyring-nfs', 'squash', 'squashed'],
    ['numeric name → hit (no source needed)', { kind: 'name-to-uid', name: '1234' }, 'keyring-nfs', 'host', 'hit'],
    ['no scope for pipefs → error under (none)', { kind: 'name-to-uid', name: 'alice@example.com' }, 'pipefs', NO_SCOPE, 'error'],
  ];
  for (const [what, req, iface, scope, outcome] of table) {
    it(what, async () => {
      const { resolver, metrics } = harness();
      await resolver.resolve(req, { iface });
      assert.equal(cell(metrics, scope, iface, outcome), 1);
      assert.equal(sum(metrics), 1);
    });
  }

  it('an id outside the scope map → unmappable', async () => {
    const { resolver, metrics } = harness({ scopes: [{ name: 'host', providers: ['t'], map: { uid: [[0, 100000, 65536]] } }] });
    await resolver.resolve({ kind: 'uid-to-name', id: 5 }, { iface: 'keyring-nfs' });
    assert.equal(cell(metrics, 'host', 'keyring-nfs', 'unmappable'), 1);
  });

  it('admin queries are counted under interface admin, whatever interface they name', async () => {
    const { resolver, metrics } = harness();
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' }, { admin: true });
    assert.equal(cell(metrics, 'host', 'admin', 'miss'), 1);
    assert.equal(cell(metrics, 'host', 'keyring-nfs', 'miss'), 0);
  });

  it('a refused request (no scope) is counted as refused for kernel interfaces only', async () => {
    const { resolver, metrics } = harness();
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'nfsd' });
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'nfsd' }, { admin: true });
    assert.equal(metrics.refusedCount('nfsd', 'no_scope'), 1);
  });

  it('a source fault with an expired entry → stale, counted per scope', async () => {
    const { resolver, metrics, clock, policy } = harness();
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    const src = policy.scopes[1]!.sources[0]! as { byName?: Source['byName'] };
    src.byName = () => { throw new SourceFault('t', 'directory down'); };
    clock.t += 3600_000;
    const a = await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    assert.equal(a.cache, 'stale');
    assert.equal(cell(metrics, 'host', 'keyring-nfs', 'stale'), 1);
    assert.equal(metrics.scope('host').stale, 1);
    assert.equal(metrics.source('t', 'static').errors, 1);
    const b = await resolver.resolve({ kind: 'name-to-uid', name: 'nobody-cached@example.com' }, { iface: 'keyring-nfs' });
    assert.equal(b.outcome, 'error');
    assert.equal(cell(metrics, 'host', 'keyring-nfs', 'error'), 1);
  });

  it('sources: found / not found / timed, for every source request', async () => {
    const { resolver, metrics } = harness();
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    await resolver.resolve({ kind: 'name-to-uid', name: 'mallory@example.com' }, { iface: 'keyring-nfs' });
    const s = metrics.source('t', 'static');
    assert.deepEqual([s.found, s.notFound, s.errors], [1, 1, 0]);
    assert.equal(s.duration.count, 2);
  });

  it('latency: every miss timed; hits timed one in TIMING_EVERY with that weight', async () => {
    const { resolver, metrics } = harness();
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    assert.equal(metrics.latencyOf('keyring-nfs').count, 1, 'the miss');
    const n = TIMING_EVERY * 4;
    for (let i = 0; i < n; i++) await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    const h = metrics.latencyOf('keyring-nfs').snapshot();
    assert.equal((h.count - 1) % TIMING_EVERY, 0);
    assert.ok(Math.abs(h.count - 1 - n) <= TIMING_EVERY, `≈ ${n} hits (${h.count - 1})`);
  });

  it('a reload keeps the counters; a removed scope keeps its series, a new one gets its own', async () => {
    const { resolver, metrics } = harness();
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    resolver.setPolicy(compilePolicy(Policy.parse({ domain: 'example.com', providers: { t: { kind: 'static', users: { alice: 1001 } } }, scopes: [{ name: 'other', providers: ['t'] }] }), { log: silentLogger }));
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    assert.equal(cell(metrics, 'host', 'keyring-nfs', 'miss'), 1);
    assert.equal(cell(metrics, 'other', 'keyring-nfs', 'miss'), 1);
    assert.deepEqual(metrics.scopes().map((s) => s.name), ['squash', 'host', 'other', NO_SCOPE]);
  });

  it('totals: the counters `status` and `cache stats` show', async () => {
    const { resolver, metrics } = harness();
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    await resolver.resolve({ kind: 'name-to-uid', name: 'mallory@example.com' }, { iface: 'keyring-nfs' });
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'pipefs' });
    assert.deepEqual(metrics.totals(), { lookups: 4, hits: 1, misses: 2, stale: 0, negative: 0, nobody: 1, squashed: 0, unmappable: 0, errors: 1 });
  });
});

describe('Histogram', () => {
  it('puts a value equal to a bound in that bucket (le is inclusive); above the last in +Inf', () => {
    const h = new Histogram([0.1, 1]);
    h.observe(0.1);
    h.observe(0.5);
    h.observe(7);
    assert.deepEqual(h.snapshot(), { bounds: [0.1, 1], counts: [1, 2, 3], sum: 7.6, count: 3 });
  });

  it('a weighted observation stands for that many', () => {
    const h = new Histogram([1]);
    h.observe(0.5, 64);
    assert.deepEqual(h.snapshot(), { bounds: [1], counts: [64, 64], sum: 32, count: 64 });
  });

  it('quantile interpolates inside the bucket, as histogram_quantile() does', () => {
    const h = new Histogram([1, 2, 4]);
    for (let i = 0; i < 50; i++) h.observe(0.5);
    for (let i = 0; i < 50; i++) h.observe(1.5);
    const s = h.snapshot();
    assert.equal(quantile(s, 0.5), 1);
    assert.equal(quantile(s, 0.75), 1.5);
    assert.equal(quantile(new Histogram([1]).snapshot(), 0.5), undefined);
  });
});

describe('metrics.listen', () => {
  const ok: [string | number, string, number][] = [
    [9851, '127.0.0.1', 9851],
    ['9851', '127.0.0.1', 9851],
    [':9851', '127.0.0.1', 9851],
    ['0.0.0.0:9851', '0.0.0.0', 9851],
    ['[::1]:0', '::1', 0],
    ['localhost:9100', 'localhost', 9100],
  ];
  for (const [v, host, port] of ok) {
    it(`${JSON.stringify(v)} → ${host}:${port}`, () => assert.deepEqual(parseListen(v), { host, port }));
  }
  for (const bad of ['', 'host:', '127.0.0.1:70000', '[nope]:1', 'a b:1', '::1:9851', 'http://x:1']) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.equal(typeof parseListen(bad), 'string'));
  }
  it('loopback: 127/8, ::1, localhost', () => {
    assert.deepEqual(['127.0.0.1', '127.1.2.3', '::1', 'localhost', '0.0.0.0', '10.0.0.1', '::'].map(isLoopback), [true, true, true, true, false, false, false]);
  });
  it('policy check warns about an endpoint beyond loopback, at its line', () => {
    const findings = (text: string) => {
      const r = validatePolicyText(text, 'p.yaml');
      assert.ok(r.ok);
      return checkPolicy(r.policy).map(formatFinding);
    };
    assert.deepEqual(findings('metrics: { listen: ":9851" }\n'), []);
    assert.deepEqual(findings('metrics:\n  listen: "[::1]:9851"\n'), []);
    const w = findings('metrics:\n  listen: 0.0.0.0:9851\n');
    assert.equal(w.length, 1);
    assert.match(w[0]!, /^p\.yaml:2:11: warning: metrics\.listen: the metrics endpoint listens on 0\.0\.0\.0:9851, beyond this host/);
  });

  it('the policy: the block alone means the default address; a bad one is a schema error', () => {
    assert.deepEqual(compilePolicy(Policy.parse({ metrics: {} }), { log: silentLogger, hostDomain: () => 'x' }).metrics, { host: '127.0.0.1', port: 9851 });
    assert.equal(compilePolicy(Policy.parse({}), { log: silentLogger, hostDomain: () => 'x' }).metrics, undefined);
    assert.equal(Policy.safeParse({ metrics: { listen: '127.0.0.1:99999' } }).success, false);
  });
});

describe('takeSnapshot', () => {
  it('every interface × scope × outcome, zeros included; sources with health and pool figures', async () => {
    const { resolver, metrics, policy, store } = harness();
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    await resolver.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'keyring-nfs' });
    const pooled = { ...staticKind.create('dir', { kind: 'static' }, { baseDir: tmpdir(), log: silentLogger }), health: () => ({ state: 'degraded' as const, detail: 'failed over' }), metrics: () => ({ connections: 1, failovers: 2 }) };
    metrics.kernelFlush('nfsd', true);
    metrics.reload(false);
    const s = takeSnapshot({ metrics, version: '9.9', sources: [...policy.sources.values(), pooled], cache: store.stats(), now: T0 + 5000 });
    assert.equal(s.lookups.length, 3 * 5 * LOOKUP_OUTCOMES.length);
    assert.equal(s.uptime, 5);
    assert.equal(hitRatio(s), 0.5);
    assert.deepEqual(s.sources.map((x) => [x.name, x.state, x.pool]), [['t', 'up', undefined], ['dir', 'degraded', { connections: 1, failovers: 2 }]]);
    assert.deepEqual(s.kernelFlushes, [{ responder: 'nfsd', ok: 1, failed: 0 }]);
    assert.deepEqual(s.reloads, { ok: 0, refused: 1 });
    assert.equal(JSON.parse(JSON.stringify(s)).lookupDuration.length, 5, 'travels as JSON');
  });
});
