/**
 * The audit trail's rate limiter, on a fake clock: a key is logged at its first occurrence, then
 * at most once per interval while it keeps occurring (`repeats=N`, the occurrences since the
 * previous line); quiet keys are forgotten; the table of keys is bounded; off costs nothing.
 * Then the resolver and the daemon's upcall path feeding it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Audit, type AuditEvent } from '../../src/audit.js';
import { MemoryStore } from '../../src/cache/memory.js';
import { createLogger, silentLogger, type Level } from '../../src/log.js';
import { compilePolicy } from '../../src/resolver/policy/compile.js';
import { Policy } from '../../src/resolver/policy/schema.js';
import { Resolver } from '../../src/resolver/resolver.js';

function setup(opts: { interval?: number; maxKeys?: number; level?: Level } = {}) {
  const lines: string[] = [];
  const log = createLogger({ level: opts.level ?? 'info', journal: true, write: (l) => lines.push(l) });
  const clock = { t: 1_000_000 };
  const audit = new Audit(log, { interval: opts.interval ?? 60, maxKeys: opts.maxKeys, now: () => clock.t });
  return { audit, lines, clock, log };
}

const ev = (query: string, extra: Partial<AuditEvent> = {}): AuditEvent => ({
  iface: 'keyring-nfs', scope: 'host', kind: 'name-to-uid', query, reason: 'no source knows it', chain: [{ name: 'files' }, { name: 'nss' }], ...extra,
});

const repeatsOf = (line: string) => Number(/ repeats=(\d+)/.exec(line)?.[1] ?? 0);

describe('Audit: once per key and interval', () => {
  it('logs the first occurrence at once, with scope, chain and container', () => {
    const { audit, lines } = setup();
    audit.note('nobody', ev('bob@other.org', { requester: { container: { id: '3f2a91c07d1e5b7f00000000', runtime: 'docker' }, pid: 42 } }));
    assert.deepEqual(lines, ['<6>audit.nobody iface=keyring-nfs scope=host kind=name-to-uid query=bob@other.org reason="no source knows it" chain=files,nss container=3f2a91c07d1e pid=42']);
  });

  it('repeats within the interval are counted, not logged; the sweep after it reports them once', () => {
    const { audit, lines, clock } = setup();
    for (let i = 0; i < 18; i++) {
      audit.note('nobody', ev('bob@other.org', { requester: { pid: 100 + i } }));
      clock.t += 1000;
    }
    assert.equal(lines.length, 1);
    audit.sweep();
    assert.equal(lines.length, 1, 'the interval is not over yet');
    clock.t += 60_000;
    audit.sweep();
    assert.equal(lines.length, 2);
    assert.equal(repeatsOf(lines[1]!), 17);
    assert.match(lines[1]!, /pid=117/, 'the fields of the latest occurrence');
    clock.t += 60_000;
    audit.sweep();
    assert.equal(lines.length, 2, 'nothing new: nothing logged');
    assert.equal(audit.size, 0, 'and the key is forgotten');
    audit.note('nobody', ev('bob@other.org'));
    assert.equal(lines.length, 3, 'a forgotten key is new again');
    assert.equal(repeatsOf(lines[2]!), 0);
  });

  it('without a sweep, the first occurrence past the interval carries the count', () => {
    const { audit, lines, clock } = setup({ interval: 10 });
    audit.note('squashed', ev('root@example.com'));
    for (let i = 0; i < 4; i++) audit.note('squashed', ev('root@example.com'));
    clock.t += 10_000;
    audit.note('squashed', ev('root@example.com'));
    assert.equal(lines.length, 2);
    assert.equal(repeatsOf(lines[1]!), 5, 'four suppressed and this one');
    audit.note('squashed', ev('root@example.com'));
    assert.equal(lines.length, 2, 'a new interval started with that line');
  });

  it('at most one line per key per interval however many occur, and every occurrence is accounted for', () => {
    const { audit, lines, clock } = setup({ interval: 60 });
    let n = 0;
    for (let s = 0; s < 600; s++) {
      for (let k = 0; k < 7; k++, n++) audit.note('nobody', ev('bob@other.org'));
      clock.t += 1000;
      if (s % 5 === 0) audit.sweep();
    }
    audit.stop(); // the daemon stopping: what is still counted is logged
    assert.ok(lines.length <= 1 + 600 / 60 + 1, `${lines.length} lines for 10 minutes`);
    const accounted = lines.reduce((a, l) => a + (repeatsOf(l) || 1), 0);
    assert.equal(accounted, n);
  });

  it('reads the requester (a lazy context may read /proc for it) only for a line written', () => {
    const { audit, lines, clock } = setup();
    let reads = 0;
    const requester = { get pid() { reads++; return 42; }, get container() { reads++; return undefined; } };
    for (let i = 0; i < 100; i++) audit.note('nobody', ev('bob@other.org', { requester }));
    assert.equal(reads, 2, 'the first line only');
    clock.t += 60_000;
    audit.sweep();
    assert.equal(reads, 4, 'and the summary line');
    assert.equal(lines.length, 2);
  });

  it('keys differ by kind, interface, scope and query', () => {
    const { audit, lines } = setup();
    audit.note('nobody', ev('a@x'));
    audit.note('nobody', ev('b@x'));
    audit.note('nobody', ev('a@x', { iface: 'pipefs' }));
    audit.note('nobody', ev('a@x', { scope: 'other' }));
    audit.note('unmappable', ev('a@x'));
    audit.note('nobody', ev('a@x', { reason: 'another reason, same key' }));
    assert.equal(lines.length, 5);
  });

  it('refusals are warnings; the others info', () => {
    const { audit, lines } = setup();
    audit.note('refused', { iface: 'keyring-nfs', kind: 'id_resolver', query: 'bogus', reason: 'unknown type' });
    audit.note('unmappable', ev('1000'));
    assert.match(lines[0]!, /^<4>audit\.refused iface=keyring-nfs kind=id_resolver query=bogus reason="unknown type"$/);
    assert.match(lines[1]!, /^<6>audit\.unmappable /);
  });

  it('off (log level warn): nobody is not even remembered; refusals still are', () => {
    const { audit, lines } = setup({ level: 'warn' });
    assert.equal(audit.on('nobody'), false);
    audit.note('nobody', ev('bob@other.org'));
    assert.equal(audit.size, 0);
    audit.note('refused', { iface: 'keyring-cifs', kind: 'cifs.idmap', query: 'x', reason: 'y' });
    assert.equal(lines.length, 1);
  });
});

describe('Audit: bounded memory', () => {
  it('a long query (a hostile key description) is cut in the key and the line', () => {
    const { audit, lines } = setup();
    audit.note('refused', { iface: 'keyring-nfs', kind: 'id_resolver', query: 'x'.repeat(4000), reason: 'malformed' });
    audit.note('refused', { iface: 'keyring-nfs', kind: 'id_resolver', query: 'x'.repeat(3000), reason: 'malformed' });
    assert.equal(lines.length, 1, 'the same first 256 characters: one key');
    assert.ok(lines[0]!.length < 400, `${lines[0]!.length} characters`);
    assert.match(lines[0]!, /query="x{256}…" /);
  });

  it('past maxKeys, new keys are counted and reported as one overflow line per sweep', () => {
    const { audit, lines, clock } = setup({ maxKeys: 100 });
    for (let i = 0; i < 10_000; i++) audit.note('refused', { iface: 'keyring-nfs', kind: 'id_resolver', query: `garbage${i}`, reason: 'malformed' });
    assert.equal(audit.size, 100);
    assert.equal(lines.length, 100);
    clock.t += 60_000;
    audit.sweep();
    assert.equal(lines.length, 101);
    assert.match(lines[100]!, /^<4>audit\.overflow maxKeys=100 note="[^"]+" refused=9900$/);
    assert.equal(audit.size, 0, 'quiet keys are forgotten: room again');
    audit.sweep();
    assert.equal(lines.length, 101, 'one overflow line, not one per sweep');
  });

  it('configure() changes the interval and the bound', () => {
    const { audit, lines, clock } = setup({ interval: 60 });
    audit.configure({ interval: 1, maxKeys: 1 });
    audit.note('nobody', ev('a@x'));
    audit.note('nobody', ev('b@x'));
    audit.note('nobody', ev('a@x'));
    clock.t += 1000;
    audit.sweep();
    assert.deepEqual(lines.map((l) => /^<\d>(\S+)/.exec(l)?.[1] + ' ' + (/query=(\S+)/.exec(l)?.[1] ?? /nobody=\d+/.exec(l)?.[0])), ['audit.nobody a@x', 'audit.nobody a@x', 'audit.overflow nobody=1']);
  });
});

describe('Audit fed by the resolver', () => {
  function resolverWith(level: Level = 'info') {
    const lines: string[] = [];
    const log = createLogger({ level, journal: true, write: (l) => lines.push(l) });
    const audit = new Audit(log, { interval: 60 });
    const policy = compilePolicy(
      Policy.parse({
        domain: 'example.com',
        providers: { files: { kind: 'static', users: { alice: 1001, root: 0 } }, nss: { kind: 'static' } },
        scopes: [{ name: 'host', match: { interface: ['keyring-nfs', 'admin'] }, providers: ['files', 'nss'], root: 'squash' }],
      }),
      { log: silentLogger, hostDomain: () => 'x' },
    );
    const r = new Resolver(policy, new MemoryStore(), { log: silentLogger, audit });
    return { r, lines };
  }
  const container = { id: '3f2a91c07d1e'.padEnd(64, '0'), runtime: 'docker' };

  it('a nobody fallback: why, the chain tried, the container; a thousand lookups, one line', async () => {
    const { r, lines } = resolverWith();
    for (let i = 0; i < 1000; i++) await r.resolve({ kind: 'name-to-uid', name: 'bob@other.org' }, { iface: 'keyring-nfs', pid: 7, container });
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^<6>audit\.nobody iface=keyring-nfs scope=host kind=name-to-uid query=bob@other\.org reason=".*domain mismatch" chain=files,nss container=3f2a91c07d1e pid=7$/);
  });

  it('root squash and a request no scope takes', async () => {
    const { r, lines } = resolverWith();
    await r.resolve({ kind: 'uid-to-name', id: 0 }, { iface: 'keyring-nfs' });
    await r.resolve({ kind: 'name-to-uid', name: 'alice@example.com' }, { iface: 'pipefs' });
    assert.match(lines[0]!, /^<6>audit\.squashed .*kind=uid-to-name query=0 reason="root squashed \(root: squash\)"/);
    assert.match(lines[1]!, /^<4>audit\.refused iface=pipefs kind=name-to-uid query=alice@example\.com reason="no scope of the policy matches this request"/);
  });

  it('a negative answer is not a fallback: not audited; an admin\'s query is not audited', async () => {
    const { r, lines } = resolverWith();
    await r.resolve({ kind: 'uid-to-name', id: 4242 }, { iface: 'keyring-nfs' });
    await r.resolve({ kind: 'name-to-uid', name: 'bob@other.org' }, { iface: 'keyring-nfs' }, { admin: true, explain: true });
    assert.deepEqual(lines, []);
  });
});
