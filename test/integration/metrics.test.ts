/**
 * Metrics and the audit trail in a running nsidmapd: a policy with `metrics.listen` on an
 * ephemeral loopback port; lookups and keyring upcalls over the admin socket; then /metrics
 * scraped over HTTP and read back with a strict parser of the exposition format, `idmapctl stats`
 * compared with it, the audit lines found in the daemon's log.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { METRIC_FAMILIES } from '../../src/metrics/exposition.js';
import type { StatsSnapshot } from '../../src/metrics/snapshot.js';
import { checkConventions, parseExposition, type ParsedFamily } from '../fixtures/prometheus.js';
import { cli, request, scratch, startDaemon, staticPolicy, waitReady, type DaemonPaths, type Json, type Proc } from './harness.js';

const tmp = scratch('metrics');
after(() => tmp.cleanup());

const paths = (name: string): DaemonPaths => ({ policy: tmp.path(`${name}.yaml`), socket: tmp.path(`${name}.sock`), cache: tmp.path(`${name}.sqlite`) });

interface HttpResult {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

function http(url: string, method = 'GET'): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

let nextId = 1;
async function op(socket: string, body: Json): Promise<Json> {
  const r = await request(socket, { id: nextId++, ...body });
  assert.equal(r['ok'], true, JSON.stringify(r));
  return r['result'] as Json;
}
const upcall = (socket: string, keyType: string, description: string) => op(socket, { op: 'upcall', keyType, descriptionHex: Buffer.from(description).toString('hex') });

function value(f: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const fam = f.get(name) ?? f.get(name.replace(/_(bucket|sum|count)$/, ''));
  return fam?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe('nsidmapd with metrics.listen on an ephemeral port', () => {
  const p = paths('m');
  let d: Proc;
  let url: string;

  before(async () => {
    writeFileSync(p.policy, staticPolicy(1001, '    root: squash\nmetrics: { listen: "127.0.0.1:0" }\naudit: { interval: 1h }\n'));
    d = startDaemon(p);
    await waitReady(d, p.socket);
    const ready = await d.logLine(/daemon\.ready /);
    url = /metrics=(http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(ready)?.[1] ?? assert.fail(`no metrics URL in ${ready}`);
  });
  after(async () => {
    if (d?.running) d.signal('SIGKILL');
    await d?.exited;
  });

  it('logs the bound address in daemon.ready and shows it in status', async () => {
    assert.doesNotMatch(url, /:0\//, 'the real port, not 0');
    const st = await op(p.socket, { op: 'status' });
    const m = (st['responders'] as { name: string; detail: Json[] }[]).find((r) => r.name === 'metrics');
    assert.deepEqual(m?.detail[0]?.['url'], url);
    assert.equal(m?.detail[0]?.['state'], 'listening');
  });

  it('serves lookups over the admin socket and upcalls; /metrics counts them, every line valid', async () => {
    for (let i = 0; i < 3; i++) await op(p.socket, { op: 'resolve', kind: 'uid', value: 'alice@example.com' });
    for (let i = 0; i < 5; i++) await upcall(p.socket, 'id_resolver', 'uid:alice@example.com');
    for (let i = 0; i < 4; i++) await upcall(p.socket, 'id_resolver', 'uid:bob@other.org');
    await upcall(p.socket, 'id_resolver', 'user:0');
    const bad = await upcall(p.socket, 'id_resolver', 'bogus:thing');
    assert.equal(bad['action'], 'reject');

    const res = await http(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    const f = parseExposition(res.body);
    checkConventions(f);
    assert.deepEqual([...f.keys()], METRIC_FAMILIES.map((x) => x.name));

    const lookups = (iface: string, outcome: string) => value(f, 'nsidmap_lookups_total', { interface: iface, scope: 'host', outcome });
    assert.equal(lookups('admin', 'miss'), 1, 'the first admin query asked the source');
    assert.equal(lookups('admin', 'hit'), 2);
    assert.equal(lookups('keyring-nfs', 'hit'), 5, 'the upcalls found it cached');
    assert.equal(lookups('keyring-nfs', 'nobody'), 4, 'foreign domain: nobody (keyring-nfs name→id)');
    assert.equal(lookups('keyring-nfs', 'squashed'), 1);
    assert.equal(value(f, 'nsidmap_requests_refused_total', { interface: 'keyring-nfs', reason: 'malformed' }), 1);
    assert.equal(value(f, 'nsidmap_cache_misses_total', { scope: 'host' }), 1);
    assert.ok(value(f, 'nsidmap_cache_hits_total', { scope: 'host' })! >= 7);
    assert.ok(value(f, 'nsidmap_cache_entries')! >= 1);
    assert.equal(value(f, 'nsidmap_source_up', { source: 't', kind: 'static' }), 1);
    assert.equal(value(f, 'nsidmap_source_requests_total', { source: 't', result: 'found' }), 1);
    assert.equal(value(f, 'nsidmap_source_duration_seconds_count', { source: 't' }), 1);
    assert.ok(value(f, 'nsidmap_lookup_duration_seconds_count', { interface: 'admin' })! >= 1, 'the miss, timed');
    assert.ok(value(f, 'process_resident_memory_bytes')! > 0);
  });

  it('audits the nobody fallback, the squashed root and the refused upcall once each, with scope and chain', async () => {
    const nobody = d.stderr.split('\n').filter((l) => /audit\.nobody /.test(l));
    assert.equal(nobody.length, 1, nobody.join('\n'));
    assert.match(nobody[0]!, /iface=keyring-nfs scope=host kind=name-to-uid query=bob@other\.org reason=".*domain mismatch" chain=t$/);
    assert.match(d.stderr, /audit\.squashed iface=keyring-nfs scope=host kind=uid-to-name query=0 reason="root squashed \(root: squash\)" chain=t/);
    assert.match(d.stderr, /audit\.refused iface=keyring-nfs kind=id_resolver query=bogus:thing reason=/);
    assert.doesNotMatch(d.stderr, /audit\.\w+ iface=admin/, 'admin queries are not audited');
  });

  it('idmapctl stats shows the same numbers (table and --json)', async () => {
    const j = await cli(['stats', '--json', '--socket', p.socket]);
    assert.equal(j.code, 0, j.stderr);
    const s = JSON.parse(j.stdout) as StatsSnapshot;
    const nobody = s.lookups.find((l) => l.interface === 'keyring-nfs' && l.scope === 'host' && l.outcome === 'nobody');
    assert.equal(nobody?.count, 4);
    const f = parseExposition((await http(url)).body);
    for (const l of s.lookups) assert.equal(value(f, 'nsidmap_lookups_total', { interface: l.interface, scope: l.scope, outcome: l.outcome }), l.count);
    const t = await cli(['stats', '--socket', p.socket]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^lookups +\d+ \(cache hit ratio \d+\.\d%, 0 stale answers served\)$/m);
    assert.match(t.stdout, /^SCOPE +INTERFACE +HIT +MISS +STALE +NEGATIVE +NOBODY +SQUASHED +UNMAPPABLE +ERROR$/m);
    assert.match(t.stdout, /^host +keyring-nfs +5 +0 +0 +0 +4 +1 +0 +0$/m);
    assert.match(t.stdout, /^t +static +up +1 +0 +0 /m);
    assert.match(t.stdout, /^refused +keyring-nfs malformed 1$/m);
  });

  it('answers HEAD, 404 elsewhere, 405 for other methods', async () => {
    const head = await http(url, 'HEAD');
    assert.deepEqual([head.status, head.body], [200, '']);
    assert.equal((await http(url.replace('/metrics', '/'))).status, 404);
    const post = await http(url, 'POST');
    assert.equal(post.status, 405);
    assert.equal(post.headers['allow'], 'GET, HEAD');
  });

  it('counts kernel cache flushes and reloads; the endpoint stops with the daemon', async () => {
    await op(p.socket, { op: 'reload' });
    const f = parseExposition((await http(url)).body);
    assert.equal(value(f, 'nsidmap_policy_reloads_total', { result: 'ok' }), 1);
    // the namespace supervisor (nfsd's caches, per network namespace) flushed once, after the reload
    assert.equal(value(f, 'nsidmap_kernel_cache_flushes_total', { responder: 'namespaces' }), 1);
    assert.equal(value(f, 'nsidmap_kernel_cache_flush_failures_total', { responder: 'namespaces' }), 0);
    d.signal('SIGTERM');
    assert.equal((await d.waitExit(10_000)).code, 0);
    await assert.rejects(http(url), /ECONNREFUSED/);
  });
});

describe('nsidmapd whose metrics port is taken', () => {
  it('logs metrics.listen_failed, serves on, and says so in status', async () => {
    const first = paths('a');
    writeFileSync(first.policy, staticPolicy(1001, 'metrics: { listen: "127.0.0.1:0" }\n'));
    const a = startDaemon(first);
    try {
      await waitReady(a, first.socket);
      const port = /metrics=http:\/\/127\.0\.0\.1:(\d+)\//.exec(await a.logLine(/daemon\.ready /))?.[1];
      const second = paths('b');
      writeFileSync(second.policy, staticPolicy(1001, `metrics: { listen: "127.0.0.1:${port}" }\n`));
      const b = startDaemon(second);
      await waitReady(b, second.socket);
      assert.match(await b.logLine(/metrics\.listen_failed /), /listen=127\.0\.0\.1:\d+ error=.*EADDRINUSE/);
      const st = await op(second.socket, { op: 'status' });
      const m = (st['responders'] as { name: string; detail: Json[] }[]).find((r) => r.name === 'metrics');
      assert.match(String(m?.detail[0]?.['state']), /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
      assert.equal((await op(second.socket, { op: 'resolve', kind: 'uid', value: 'alice@example.com' }))['answer'] !== undefined, true);
      b.signal('SIGTERM');
      assert.equal((await b.waitExit(10_000)).code, 0);
    } finally {
      a.signal('SIGTERM');
      await a.waitExit(10_000);
    }
  });

  it('without a metrics block there is no endpoint', async () => {
    const q = paths('off');
    writeFileSync(q.policy, staticPolicy(1001));
    const c = startDaemon(q);
    try {
      await waitReady(c, q.socket);
      const ready = await c.logLine(/daemon\.ready /);
      assert.doesNotMatch(ready, /metrics=/);
      const st = await op(q.socket, { op: 'status' });
      assert.equal((st['responders'] as { name: string }[]).some((r) => r.name === 'metrics'), false);
    } finally {
      c.signal('SIGTERM');
      await c.waitExit(10_000);
    }
  });
});
