/**
 * The resolver, as a specification: the eight lookups, NFSv4 names, the source chain, what an
 * unmapped lookup answers per interface, root squash and id translation (DESIGN.md "Policy: scopes
 * per namespace"), the cache's three freshness states, and how a scope is chosen.
 *
 * Every Resolver here is built directly: a policy object compiled with compilePolicy, a
 * MemoryStore and a clock the test advances. Mapped data comes from static sources; where a test
 * needs to count calls, delay them or make them fail, a Spy replaces the source of the same name.
 */
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import type { z } from 'zod';
import { MemoryStore } from '../../src/cache/memory.js';
import { silentLogger } from '../../src/log.js';
import { SourceFault, type Source, type SourceEntry } from '../../src/providers/source.js';
import { staticKind, type StaticConfig } from '../../src/providers/static.js';
import { compilePolicy, type CompiledPolicy } from '../../src/resolver/policy/compile.js';
import { Policy } from '../../src/resolver/policy/schema.js';
import { cacheKey, Resolver, type ResolveOptions } from '../../src/resolver/resolver.js';
import type { Answer, Context, Entity, IdMapRange, Interface, LookupKind, Request, Sid } from '../../src/types.js';
import { prng } from '../helpers/prng.js';

// ------------------------------------------------------------------------------------ harness

type PolicyInput = z.input<typeof Policy>;
type Method = 'byName' | 'byId' | 'bySid' | 'sidOf';
type Table = Omit<StaticConfig, 'kind'>;

/** A source answering from a static table that records every call, and can be made to fail or wait. */
class Spy implements Source {
  readonly kind = 'spy';
  readonly calls: { method: Method; entity: Entity; arg: string | number }[] = [];
  /** when set, every call throws SourceFault with this message */
  fault: string | undefined;
  /** when set, every call waits for it before answering */
  gate: Promise<void> | undefined;
  private readonly inner: Source;

  constructor(
    readonly name: string,
    table: Table = {},
  ) {
    this.inner = staticKind.create(name, { kind: 'static', ...table }, { baseDir: tmpdir(), log: silentLogger });
  }

  /** how many times `method` was asked for `arg` */
  asked(method: Method, arg: string | number): number {
    return this.calls.filter((c) => c.method === method && c.arg === arg).length;
  }

  private async call(method: Method, entity: Entity, arg: string | number): Promise<SourceEntry | undefined> {
    this.calls.push({ method, entity, arg });
    if (this.gate) await this.gate;
    if (this.fault !== undefined) throw new SourceFault(this.name, this.fault);
    return (this.inner[method] as (e: Entity, a: string | number) => SourceEntry | undefined).call(this.inner, entity, arg);
  }
  byName(entity: Entity, name: string) {
    return this.call('byName', entity, name);
  }
  byId(entity: Entity, id: number) {
    return this.call('byId', entity, id);
  }
  bySid(entity: Entity, sid: Sid) {
    return this.call('bySid', entity, sid);
  }
  sidOf(entity: Entity, id: number) {
    return this.call('sidOf', entity, id);
  }
}

interface Harness {
  readonly resolver: Resolver;
  readonly store: MemoryStore;
  readonly policy: CompiledPolicy;
  /** the fake clock, in ms */
  readonly clock: { t: number };
  ask(kind: LookupKind, value: string | number, ctx?: Context | Interface, opts?: ResolveOptions): Promise<Answer>;
}

const T0 = 1_700_000_000_000;

/**
 * Validate and compile `input` (as the loader would), then swap in `replace`: every source of a
 * scope whose name is a key of `replace` becomes that object.
 */
function harness(input: PolicyInput, replace: Record<string, Source> = {}): Harness {
  const compiled = compilePolicy(Policy.parse(input), { log: silentLogger, hostDomain: () => 'host.invalid' });
  const scopes = compiled.scopes.map((s) => ({ ...s, sources: s.sources.map((src) => replace[src.name] ?? src) }));
  const policy: CompiledPolicy = { ...compiled, scopes };
  const store = new MemoryStore();
  const clock = { t: T0 };
  const resolver = new Resolver(policy, store, { log: silentLogger, now: () => clock.t });
  const ask = (kind: LookupKind, value: string | number, ctx: Context | Interface = 'keyring-nfs', opts?: ResolveOptions) =>
    resolver.resolve(request(kind, value), typeof ctx === 'string' ? { iface: ctx } : ctx, opts);
  return { resolver, store, policy, clock, ask };
}

function request(kind: LookupKind, value: string | number): Request {
  switch (kind) {
    case 'name-to-uid':
    case 'name-to-gid':
      return { kind, name: String(value) };
    case 'sid-to-uid':
    case 'sid-to-gid':
      return { kind, sid: String(value) as Sid };
    default:
      return { kind, id: Number(value) };
  }
}

/** Let background work (a refresh started by a lookup) run to its end. */
const settle = () => new Promise<void>((r) => setImmediate(r));

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** What the tests compare: outcome, value and (when given) the scope. */
function assertAnswer(a: Answer, want: { outcome: Answer['outcome']; value?: number | string; scope?: string; code?: string }, what = ''): void {
  const got: Record<string, unknown> = { outcome: a.outcome, value: a.value };
  const exp: Record<string, unknown> = { outcome: want.outcome, value: want.value };
  for (const k of ['scope', 'code'] as const) {
    if (want[k] === undefined) continue;
    got[k] = a[k];
    exp[k] = want[k];
  }
  assert.deepEqual(got, exp, `${what} (reason: ${a.reason ?? '-'})`);
}

const DOMAIN_SID = 'S-1-5-21-1-2-3';

/** The shared directory of most tests: a few users and groups, SIDs for some. */
const DIRECTORY: Table = {
  users: { root: 0, alice: 1001, bob: 1002, 'a@b': 1500, nobody: 65534 },
  groups: { root: 0, staff: 50, nogroup: 65534 },
  sids: { users: { [`${DOMAIN_SID}-1001`]: 1001 }, groups: { [`${DOMAIN_SID}-513`]: 50 } },
};

const userns = (uidMap: readonly IdMapRange[], extra: { owner?: number } = {}) => ({ inode: 4026532001, isInit: false, uidMap, gidMap: uidMap, ...extra });

// ------------------------------------------------------------------------------ the eight lookups

describe('the eight lookups, mapped', () => {
  const policy: PolicyInput = {
    domain: 'example.com',
    providers: { dir: { kind: 'static', ...DIRECTORY } },
    scopes: [
      {
        name: 'ad',
        match: { sidDomain: 'S-1-5-21-7-8-9', idRange: { first: 100_000, count: 1000 } },
        providers: ['dir'],
        sid: { ranges: [{ domain: 'S-1-5-21-7-8-9', first: 100_000, count: 1000 }] },
      },
      { name: 'host', providers: ['dir'] },
    ],
  };
  const rows: { kind: LookupKind; query: string | number; value: string | number; scope: string; source: string }[] = [
    { kind: 'name-to-uid', query: 'alice@example.com', value: 1001, scope: 'host', source: 'dir' },
    { kind: 'name-to-gid', query: 'staff@example.com', value: 50, scope: 'host', source: 'dir' },
    { kind: 'uid-to-name', query: 1001, value: 'alice@example.com', scope: 'host', source: 'dir' },
    { kind: 'gid-to-name', query: 50, value: 'staff@example.com', scope: 'host', source: 'dir' },
    { kind: 'sid-to-uid', query: `${DOMAIN_SID}-1001`, value: 1001, scope: 'host', source: 'dir' },
    { kind: 'sid-to-gid', query: `${DOMAIN_SID}-513`, value: 50, scope: 'host', source: 'dir' },
    { kind: 'uid-to-sid', query: 1001, value: `${DOMAIN_SID}-1001`, scope: 'host', source: 'dir' },
    { kind: 'gid-to-sid', query: 50, value: `${DOMAIN_SID}-513`, scope: 'host', source: 'dir' },
    // a scope's `sid.ranges` is an implicit algorithmic source at the end of its chain
    { kind: 'sid-to-uid', query: 'S-1-5-21-7-8-9-5', value: 100_005, scope: 'ad', source: 'ad/sid' },
    { kind: 'sid-to-gid', query: 'S-1-5-21-7-8-9-513', value: 100_513, scope: 'ad', source: 'ad/sid' },
    { kind: 'uid-to-sid', query: 100_005, value: 'S-1-5-21-7-8-9-5', scope: 'ad', source: 'ad/sid' },
    { kind: 'gid-to-sid', query: 100_513, value: 'S-1-5-21-7-8-9-513', scope: 'ad', source: 'ad/sid' },
  ];
  for (const r of rows) {
    it(`${r.kind} ${r.query} → ${r.value} (scope ${r.scope}, source ${r.source})`, async () => {
      const h = harness(policy);
      const a = await h.ask(r.kind, r.query, r.kind.includes('sid') ? 'keyring-cifs' : 'keyring-nfs');
      assertAnswer(a, { outcome: 'mapped', value: r.value, scope: r.scope });
      assert.equal(a.source, r.source);
      assert.equal(a.cache, 'miss');
      assert.equal(a.ttl, 600, 'a mapped answer carries the positive TTL (default 600 s)');
    });
  }

  it('writes id → name answers in the scope domain, not the policy domain', async () => {
    const h = harness({ ...policy, scopes: [{ name: 'tenant', domain: 'Tenant.Example', providers: ['dir'] }] });
    assertAnswer(await h.ask('uid-to-name', 1001), { outcome: 'mapped', value: 'alice@tenant.example' });
  });
});

// ---------------------------------------------------------------------------------- NFSv4 names

describe('NFSv4 names', () => {
  const policy: PolicyInput = {
    domain: 'example.com',
    providers: { dir: { kind: 'static', ...DIRECTORY } },
    scopes: [{ name: 'host', providers: ['dir'], domains: ['corp.example'], realms: ['EXAMPLE.ORG'] }],
  };

  it('splits a name at the LAST @: a@b@example.com is the local name "a@b"', async () => {
    const spy = new Spy('dir', DIRECTORY);
    const h = harness(policy, { dir: spy });
    assertAnswer(await h.ask('name-to-uid', 'a@b@example.com'), { outcome: 'mapped', value: 1500 });
    assert.equal(spy.asked('byName', 'a@b'), 1);
  });

  for (const name of ['alice@EXAMPLE.COM', 'alice@Example.Com', 'alice@corp.example', 'alice@CORP.example', 'alice@example.org', 'alice@Example.Org']) {
    it(`accepts ${name}: the scope domain, extra domains and realms, compared case-insensitively`, async () => {
      const h = harness(policy);
      assertAnswer(await h.ask('name-to-uid', name), { outcome: 'mapped', value: 1001 });
    });
  }

  it('answers a name in a foreign domain as not found, says "domain mismatch", and asks no source', async () => {
    const spy = new Spy('dir', DIRECTORY);
    const h = harness(policy, { dir: spy });
    const nfsd = await h.ask('name-to-uid', 'alice@elsewhere.example', 'nfsd');
    assertAnswer(nfsd, { outcome: 'negative', value: undefined });
    assert.match(nfsd.reason ?? '', /domain mismatch/);
    // the interface decides what "not found" answers: the keyring-nfs default is nobody
    const keyring = await h.ask('name-to-uid', 'alice@elsewhere.example', 'keyring-nfs');
    assertAnswer(keyring, { outcome: 'nobody', value: 65534 });
    assert.match(keyring.reason ?? '', /domain mismatch/);
    assert.equal(spy.asked('byName', 'alice'), 0);
  });

  it('answers a name without @domain as not found', async () => {
    const spy = new Spy('dir', DIRECTORY);
    const h = harness(policy, { dir: spy });
    const a = await h.ask('name-to-uid', 'alice', 'nfsd');
    assertAnswer(a, { outcome: 'negative', value: undefined });
    assert.match(a.reason ?? '', /no @domain/);
    assert.equal(spy.asked('byName', 'alice'), 0);
  });

  it('answers a name with an empty local part ("@example.com") as not found', async () => {
    const h = harness(policy);
    assertAnswer(await h.ask('name-to-uid', '@example.com', 'nfsd'), { outcome: 'negative', value: undefined });
  });

  it('refuses a numeric owner on nfsd (a client that could not name its user sent the raw number)', async () => {
    const spy = new Spy('dir', DIRECTORY);
    const h = harness(policy, { dir: spy });
    const a = await h.ask('name-to-uid', '7666', 'nfsd');
    assertAnswer(a, { outcome: 'negative', value: undefined });
    assert.match(a.reason ?? '', /numeric owner "7666" refused on nfsd/);
    assert.equal(spy.calls.length, 0);
  });

  for (const [name, id] of [['1000', 1000], ['0', 0], ['4294967294', 4294967294]] as const) {
    it(`takes the numeric name "${name}" as the id ${id}, asking no source`, async () => {
      const spy = new Spy('dir', DIRECTORY);
      const h = harness(policy, { dir: spy });
      const a = await h.ask('name-to-uid', name);
      assertAnswer(a, { outcome: 'mapped', value: id });
      assert.equal(spy.calls.length, 0);
    });
  }

  it('does not take "4294967295" ((uid_t)-1) or "01000" as ids', async () => {
    const h = harness(policy);
    for (const name of ['4294967295', '01000']) {
      const a = await h.ask('name-to-uid', name, 'nfsd');
      assertAnswer(a, { outcome: 'negative', value: undefined }, name);
    }
  });
});

// ---------------------------------------------------------------------------------- source chain

describe('the source chain', () => {
  const policy: PolicyInput = {
    domain: 'example.com',
    providers: { first: { kind: 'static' }, second: { kind: 'static' }, third: { kind: 'static' } },
    scopes: [{ name: 'host', providers: ['first', 'second', 'third'] }],
  };

  it('tries the next source when one does not know the name, and names the source that answered', async () => {
    const first = new Spy('first', { users: { bob: 1002 } });
    const second = new Spy('second', { users: { alice: 1001 } });
    const third = new Spy('third', { users: { alice: 9999 } });
    const h = harness(policy, { first, second, third });
    const a = await h.ask('name-to-uid', 'alice@example.com');
    assertAnswer(a, { outcome: 'mapped', value: 1001 });
    assert.equal(a.source, 'second');
    assert.deepEqual([first.asked('byName', 'alice'), second.asked('byName', 'alice'), third.asked('byName', 'alice')], [1, 1, 0]);
  });

  it('skips a source that has no method for the lookup', async () => {
    const nameless: Source = { name: 'first', kind: 'sid-only', bySid: () => undefined };
    const h = harness(policy, { first: nameless, second: new Spy('second', { users: { alice: 1001 } }) });
    const a = await h.ask('uid-to-name', 1001);
    assertAnswer(a, { outcome: 'mapped', value: 'alice@example.com' });
    assert.equal(a.source, 'second');
  });

  it('stops at a fault: a later source is NOT asked, and with nothing cached the answer is error NSIDMAP_ESOURCE', async () => {
    const first = new Spy('first');
    first.fault = 'ldap server down';
    const second = new Spy('second', { users: { alice: 1001 } });
    const h = harness(policy, { first, second });
    const a = await h.ask('name-to-uid', 'alice@example.com');
    assertAnswer(a, { outcome: 'error', value: undefined, code: 'NSIDMAP_ESOURCE' });
    assert.match(a.reason ?? '', /ldap server down/);
    assert.equal(a.cache, 'none');
    assert.equal(second.asked('byName', 'alice'), 0, 'a later source must not paper over a fault');
    assert.equal(h.store.stats().entries, 0, 'a fault is not cached');
  });

  it('reports a fault of the last source the same way', async () => {
    const third = new Spy('third');
    third.fault = 'EIO';
    const h = harness(policy, { first: new Spy('first'), second: new Spy('second'), third });
    assertAnswer(await h.ask('uid-to-name', 4242), { outcome: 'error', value: undefined, code: 'NSIDMAP_ESOURCE' });
  });

  it('never lets a non-fault error through as a mapping: it is an internal error', async () => {
    const broken: Source = { name: 'first', kind: 'broken', byName: () => { throw new TypeError('bug'); } };
    const second = new Spy('second', { users: { alice: 1001 } });
    const h = harness(policy, { first: broken, second });
    assertAnswer(await h.ask('name-to-uid', 'alice@example.com'), { outcome: 'error', value: undefined, code: 'NSIDMAP_EINTERNAL' });
    assert.equal(second.asked('byName', 'alice'), 0);
  });
});

// ------------------------------------------------------------------------------ unmapped answers

describe('what a lookup nothing maps answers', () => {
  const base = {
    domain: 'example.com',
    providers: { dir: { kind: 'static', ...DIRECTORY } },
  } as const;
  const policy: PolicyInput = { ...base, scopes: [{ name: 'host', providers: ['dir'] }] };
  const nobodyName = 'nobody@example.com';
  const unknownSid = `${DOMAIN_SID}-4242`;

  // As the tool each interface replaces did (compile.ts UNMAPPED_DEFAULTS).
  const rows: { iface: Interface; kind: LookupKind; query: string | number; outcome: 'nobody' | 'negative'; value?: number | string }[] = [
    { iface: 'keyring-nfs', kind: 'name-to-uid', query: 'ghost@example.com', outcome: 'nobody', value: 65534 },
    { iface: 'keyring-nfs', kind: 'name-to-gid', query: 'ghosts@example.com', outcome: 'nobody', value: 65534 },
    { iface: 'keyring-nfs', kind: 'uid-to-name', query: 4242, outcome: 'negative' },
    { iface: 'keyring-nfs', kind: 'gid-to-name', query: 4242, outcome: 'negative' },
    { iface: 'nfsd', kind: 'name-to-uid', query: 'ghost@example.com', outcome: 'negative' },
    { iface: 'nfsd', kind: 'name-to-gid', query: 'ghosts@example.com', outcome: 'negative' },
    { iface: 'nfsd', kind: 'uid-to-name', query: 4242, outcome: 'nobody', value: nobodyName },
    { iface: 'nfsd', kind: 'gid-to-name', query: 4242, outcome: 'nobody', value: 'nogroup@example.com' },
    { iface: 'pipefs', kind: 'name-to-uid', query: 'ghost@example.com', outcome: 'nobody', value: 65534 },
    // negative, unlike rpc.idmapd: the kernel asks the pipe after a failed id_resolver key too
    { iface: 'pipefs', kind: 'uid-to-name', query: 4242, outcome: 'negative' },
    { iface: 'keyring-cifs', kind: 'sid-to-uid', query: unknownSid, outcome: 'negative' },
    { iface: 'keyring-cifs', kind: 'sid-to-gid', query: unknownSid, outcome: 'negative' },
    { iface: 'keyring-cifs', kind: 'uid-to-sid', query: 4242, outcome: 'negative' },
    { iface: 'keyring-cifs', kind: 'gid-to-sid', query: 4242, outcome: 'negative' },
  ];
  for (const r of rows) {
    it(`${r.iface}: ${r.kind} ${r.query} not found → ${r.outcome}${r.value === undefined ? '' : ` ${r.value}`}`, async () => {
      const h = harness(policy);
      const a = await h.ask(r.kind, r.query, r.iface);
      assertAnswer(a, { outcome: r.outcome, value: r.value });
      assert.equal(a.ttl, 60, 'not-found answers carry the negative TTL (default 60 s)');
    });
  }

  it("lets the scope's `unmapped` override the interface default, direction by direction", async () => {
    const h = harness({ ...base, scopes: [{ name: 'host', providers: ['dir'], unmapped: { toId: 'negative', toName: 'nobody' } }] });
    assertAnswer(await h.ask('name-to-uid', 'ghost@example.com', 'keyring-nfs'), { outcome: 'negative', value: undefined });
    assertAnswer(await h.ask('uid-to-name', 4242, 'keyring-nfs'), { outcome: 'nobody', value: nobodyName });
    // a direction the scope does not name keeps the interface default
    assertAnswer(await h.ask('uid-to-sid', 4242, 'keyring-cifs'), { outcome: 'negative', value: undefined });
  });

  it("takes `unmapped` from `defaults` when the scope names none", async () => {
    const h = harness({ ...base, defaults: { unmapped: { toName: 'nobody' } }, scopes: [{ name: 'host', providers: ['dir'] }] });
    assertAnswer(await h.ask('uid-to-name', 4242, 'keyring-nfs'), { outcome: 'nobody', value: nobodyName });
  });

  it("answers with the scope's nobody user, completed through the scope's own sources", async () => {
    const h = harness({
      ...base,
      providers: { dir: { kind: 'static', users: { nfsnobody: 65000 }, groups: { nfsnogroup: 65001 } } },
      scopes: [{ name: 'host', providers: ['dir'], nobody: { user: 'nfsnobody', group: 65001 } }],
    });
    assertAnswer(await h.ask('name-to-uid', 'ghost@example.com', 'pipefs'), { outcome: 'nobody', value: 65000 });
    assertAnswer(await h.ask('uid-to-name', 4242, 'nfsd'), { outcome: 'nobody', value: 'nfsnobody@example.com' });
    assertAnswer(await h.ask('gid-to-name', 4242, 'nfsd'), { outcome: 'nobody', value: 'nfsnogroup@example.com' });
  });

  it('does not keep the fallback nobody after a fault: once the source is back, nobody is looked up again', async () => {
    const spy = new Spy('dir', { users: { nfsnobody: 65000 } });
    const h = harness(
      { ...base, providers: { dir: { kind: 'static' } }, scopes: [{ name: 'host', providers: ['dir'], root: 'squash', nobody: { user: 'nfsnobody' } }] },
      { dir: spy },
    );
    spy.fault = 'directory down';
    // a squashed root is answered without asking the chain, so it is answered while the source is down
    assertAnswer(await h.ask('name-to-uid', '0'), { outcome: 'squashed', value: 65534 });
    spy.fault = undefined;
    assertAnswer(await h.ask('name-to-uid', '0'), { outcome: 'squashed', value: 65000 });
    // and a nobody found is kept: the next answer asks no source
    assertAnswer(await h.ask('name-to-uid', '0'), { outcome: 'squashed', value: 65000 });
    assert.equal(spy.asked('byName', 'nfsnobody'), 2);
  });
});

// --------------------------------------------------------------------------------- root: squash

describe('root: squash', () => {
  const squash: PolicyInput = {
    domain: 'example.com',
    providers: { dir: { kind: 'static', ...DIRECTORY } },
    scopes: [{ name: 'host', providers: ['dir'], root: 'squash' }],
  };

  it('answers uid 0 → name with the nobody name, asking no source', async () => {
    const spy = new Spy('dir', DIRECTORY);
    const h = harness(squash, { dir: spy });
    assertAnswer(await h.ask('uid-to-name', 0), { outcome: 'squashed', value: 'nobody@example.com' });
    assertAnswer(await h.ask('gid-to-name', 0), { outcome: 'squashed', value: 'nogroup@example.com' });
    assert.equal(spy.asked('byId', 0), 0);
  });

  it('answers root@domain → id with the nobody id, never 0', async () => {
    const h = harness(squash);
    assertAnswer(await h.ask('name-to-uid', 'root@example.com'), { outcome: 'squashed', value: 65534 });
    assertAnswer(await h.ask('name-to-gid', 'root@example.com'), { outcome: 'squashed', value: 65534 });
  });

  it('squashes even where "not found" would answer negatively (nfsd name → id), so root cannot come back as a raw number', async () => {
    const h = harness(squash);
    assertAnswer(await h.ask('name-to-uid', 'root@example.com', 'nfsd'), { outcome: 'squashed', value: 65534 });
    assertAnswer(await h.ask('uid-to-name', 0, 'keyring-nfs'), { outcome: 'squashed', value: 'nobody@example.com' });
  });

  it('squashes the SID of root both ways', async () => {
    const h = harness({ ...squash, scopes: [{ name: 'host', providers: ['dir'], root: 'squash', sid: { unix: { accept: true } } }] });
    assertAnswer(await h.ask('sid-to-uid', 'S-1-22-1-0', 'keyring-cifs'), { outcome: 'squashed', value: 65534 });
    assertAnswer(await h.ask('uid-to-sid', 0, 'keyring-cifs'), { outcome: 'squashed', value: 'S-1-0-0' });
  });

  it('maps root as any other user under root: allow', async () => {
    const h = harness({ ...squash, scopes: [{ name: 'host', providers: ['dir'], root: 'allow' }] });
    assertAnswer(await h.ask('uid-to-name', 0), { outcome: 'mapped', value: 'root@example.com' });
    assertAnswer(await h.ask('name-to-uid', 'root@example.com'), { outcome: 'mapped', value: 0 });
  });

  describe('DESIGN.md example: a container whose uid_map is "0 1000 2", domain c1.example', () => {
    const c1: PolicyInput = {
      domain: 'example.com',
      providers: {
        c1: { kind: 'static', users: { root: 0, bin: 1, daemon: 7 }, groups: { root: 0, bin: 1 } },
        host: { kind: 'static', users: { root: 0, alice: 1001 } },
      },
      scopes: [
        {
          name: 'c1',
          match: { idRange: { first: 1000, count: 2 }, domain: 'c1.example' },
          domain: 'c1.example',
          providers: ['c1'],
          map: { uid: [[0, 1000, 2]] },
          root: 'squash',
        },
        { name: 'host', providers: ['host'] },
      ],
    };

    it('user:1001 → container uid 1 → bin@c1.example', async () => {
      const h = harness(c1);
      assertAnswer(await h.ask('uid-to-name', 1001), { outcome: 'mapped', value: 'bin@c1.example', scope: 'c1' });
      assertAnswer(await h.ask('gid-to-name', 1001), { outcome: 'mapped', value: 'bin@c1.example', scope: 'c1' });
    });

    it('uid:bin@c1.example → host 1001', async () => {
      const h = harness(c1);
      assertAnswer(await h.ask('name-to-uid', 'bin@c1.example'), { outcome: 'mapped', value: 1001, scope: 'c1' });
      assertAnswer(await h.ask('name-to-gid', 'bin@C1.Example'), { outcome: 'mapped', value: 1001, scope: 'c1' });
    });

    it('user:1000 (its root) → nobody, and root@c1.example → the nobody id', async () => {
      const h = harness(c1);
      assertAnswer(await h.ask('uid-to-name', 1000), { outcome: 'squashed', value: 'nobody@c1.example', scope: 'c1' });
      assertAnswer(await h.ask('name-to-uid', 'root@c1.example'), { outcome: 'squashed', value: 65534, scope: 'c1' });
    });

    it('host 5000 (outside the map) → unmappable, nobody — never a wrong id', async () => {
      const h = harness(c1);
      assertAnswer(await h.ask('uid-to-name', 5000, 'keyring-nfs', { scope: 'c1' }), { outcome: 'unmappable', value: 'nobody@c1.example' });
      // a source id the map cannot carry: daemon is container uid 7, which has no host id
      assertAnswer(await h.ask('name-to-uid', 'daemon@c1.example'), { outcome: 'unmappable', value: 65534, scope: 'c1' });
    });

    it('host uid 0 asked in the mapped scope is squashed, not looked up', async () => {
      const h = harness(c1);
      assertAnswer(await h.ask('uid-to-name', 0, 'keyring-nfs', { scope: 'c1' }), { outcome: 'squashed', value: 'nobody@c1.example' });
    });

    it('under root: allow, host 1000 is the container root and host 0 is not in the map at all', async () => {
      const allow = { ...c1, scopes: [{ ...c1.scopes![0]!, root: 'allow' as const }, c1.scopes![1]!] };
      const h = harness(allow);
      assertAnswer(await h.ask('uid-to-name', 1000), { outcome: 'mapped', value: 'root@c1.example' });
      assertAnswer(await h.ask('name-to-uid', 'root@c1.example'), { outcome: 'mapped', value: 1000 });
      assertAnswer(await h.ask('uid-to-name', 0, 'keyring-nfs', { scope: 'c1' }), { outcome: 'unmappable', value: 'nobody@c1.example' });
    });
  });
});

// ----------------------------------------------------------------------------- ids: container

describe('ids: container', () => {
  const policy: PolicyInput = {
    domain: 'example.com',
    providers: { dir: { kind: 'static' } },
    scopes: [{ name: 'ns', ids: 'container', providers: ['dir'] }],
  };
  const table: Table = { users: { u5: 100_005, far: 300_000 }, groups: { g7: 100_007 } };
  const reader: Context = { iface: 'nfsd', userns: userns([{ inside: 0, outside: 100_000, count: 65_536 }]) };

  for (const iface of ['keyring-nfs', 'pipefs'] as const) {
    it(`never translates for a ${iface} requester: the kernel caches that answer host-wide`, async () => {
      const h = harness(policy, { dir: new Spy('dir', table) });
      assertAnswer(await h.ask('name-to-uid', 'u5@example.com', { ...reader, iface }), { outcome: 'mapped', value: 100_005 });
    });
  }

  it("answers a host id in the reader's ids: host 100005 is 5 under uid_map 0 100000 65536", async () => {
    const h = harness(policy, { dir: new Spy('dir', table) });
    assertAnswer(await h.ask('name-to-uid', 'u5@example.com', reader), { outcome: 'mapped', value: 5 });
    assertAnswer(await h.ask('name-to-gid', 'g7@example.com', reader), { outcome: 'mapped', value: 7 });
  });

  it("answers an id the reader's map cannot express as unmappable: nobody, never the host id", async () => {
    const h = harness(policy, { dir: new Spy('dir', table) });
    assertAnswer(await h.ask('name-to-uid', 'far@example.com', reader), { outcome: 'unmappable', value: 65534 });
  });

  it("translates the reader's id to the host id before asking (id → name)", async () => {
    const spy = new Spy('dir', table);
    const h = harness(policy, { dir: spy });
    assertAnswer(await h.ask('uid-to-name', 5, reader), { outcome: 'mapped', value: 'u5@example.com' });
    assert.equal(spy.asked('byId', 100_005), 1);
    assert.equal(spy.asked('byId', 5), 0);
  });

  it('answers an id outside the reader’s map as unmappable without asking a source', async () => {
    const spy = new Spy('dir', table);
    const h = harness(policy, { dir: spy });
    assertAnswer(await h.ask('uid-to-name', 70_000, reader), { outcome: 'unmappable', value: 'nobody@example.com' });
    assert.equal(spy.calls.filter((c) => c.method === 'byId').length, 0);
  });

  it('answers in host ids to a reader in the initial user namespace', async () => {
    const h = harness(policy, { dir: new Spy('dir', table) });
    const init: Context = { iface: 'nfsd', userns: { inode: 4026531837, isInit: true, uidMap: [{ inside: 0, outside: 0, count: 4294967295 }], gidMap: [] } };
    assertAnswer(await h.ask('name-to-uid', 'u5@example.com', init), { outcome: 'mapped', value: 100_005 });
  });

  it('leaves answers in host ids under ids: host, whoever reads them', async () => {
    const h = harness({ ...policy, scopes: [{ name: 'ns', ids: 'host', providers: ['dir'] }] }, { dir: new Spy('dir', table) });
    assertAnswer(await h.ask('name-to-uid', 'u5@example.com', reader), { outcome: 'mapped', value: 100_005 });
  });

  it("matches idRange on the host id: the reader's 5 is host 100005 under ids: container, but 5 under ids: host", async () => {
    const two: PolicyInput = {
      domain: 'example.com',
      providers: { dir: { kind: 'static' }, low: { kind: 'static' } },
      scopes: [
        // ids in the container's host range go to `tenant`; 5 as a host id (the host's own user) to `host`
        { name: 'tenant', match: { interface: 'nfsd', idRange: { first: 100_000, count: 65_536 } }, ids: 'container', providers: ['dir'] },
        { name: 'host', match: { idRange: { first: 0, count: 100_000 } }, providers: ['low'] },
      ],
    };
    const h = harness(two, { dir: new Spy('dir', table), low: new Spy('low', { users: { hostfive: 5 } }) });
    const fromContainer = await h.ask('uid-to-name', 5, reader);
    assertAnswer(fromContainer, { outcome: 'mapped', value: 'u5@example.com' });
    assert.equal(fromContainer.scope, 'tenant');
    // the same number from a reader in the initial namespace is host uid 5
    const fromHost = await h.ask('uid-to-name', 5, 'nfsd');
    assertAnswer(fromHost, { outcome: 'mapped', value: 'hostfive@example.com' });
    assert.equal(fromHost.scope, 'host');
    // an id the reader's map cannot express has no host id: no range takes it under ids: container
    const outside = await h.ask('uid-to-name', 70_000, reader);
    assert.equal(outside.scope, 'host', 'read as a host id by the ids: host scope');
  });
});

// ------------------------------------------------------------------------------------------ cache

describe('the cache', () => {
  const policy: PolicyInput = {
    domain: 'example.com',
    providers: { dir: { kind: 'static' } },
    scopes: [{ name: 'host', providers: ['dir'], ttl: { positive: 600, negative: 60 } }],
    cache: { maxStale: '1h' },
  };
  const table: Table = { users: { alice: 1001 } };
  const setup = () => {
    const spy = new Spy('dir', table);
    const h = harness(policy, { dir: spy });
    const key = (kind: LookupKind, q: string) => cacheKey(h.policy.scopes[0]!, kind, q);
    return { spy, h, key };
  };
  const sec = (s: number) => s * 1000;

  it('caches a positive answer with the positive TTL and answers it again without the source', async () => {
    const { spy, h, key } = setup();
    assert.equal((await h.ask('name-to-uid', 'alice@example.com')).cache, 'miss');
    assert.deepEqual(h.store.get(key('name-to-uid', 'alice')), {
      key: key('name-to-uid', 'alice'), scope: 'host', value: '1001', source: 'dir', stored: T0, expires: T0 + sec(600),
    });
    h.clock.t += sec(299);
    const again = await h.ask('name-to-uid', 'alice@example.com');
    assertAnswer(again, { outcome: 'mapped', value: 1001 });
    assert.equal(again.cache, 'fresh');
    assert.equal(spy.asked('byName', 'alice'), 1);
  });

  it('a lookup in flight when the cache is flushed answers its caller but puts nothing back', async () => {
    const { spy, h, key } = setup();
    const gate = deferred();
    spy.gate = gate.promise;
    const first = h.ask('name-to-uid', 'alice@example.com');
    await settle();
    assert.equal(spy.asked('byName', 'alice'), 1);
    h.store.flush();
    h.resolver.invalidate();
    gate.resolve();
    assertAnswer(await first, { outcome: 'mapped', value: 1001 });
    assert.equal(h.store.get(key('name-to-uid', 'alice')), undefined, 'the flush is not undone');
  });

  it('a request after a flush does not join a lookup begun before it', async () => {
    const { spy, h, key } = setup();
    const gate = deferred();
    spy.gate = gate.promise;
    const before = h.ask('name-to-uid', 'alice@example.com');
    await settle();
    h.resolver.invalidate();
    const after = h.ask('name-to-uid', 'alice@example.com');
    await settle();
    gate.resolve();
    await Promise.all([before, after]);
    assert.equal(spy.asked('byName', 'alice'), 2);
    assert.equal(h.store.get(key('name-to-uid', 'alice'))?.value, '1001', 'the later lookup caches its answer');
  });

  it('caches a negative answer with the negative TTL', async () => {
    const { spy, h, key } = setup();
    await h.ask('uid-to-name', 4242);
    const entry = h.store.get(key('uid-to-name', '4242'));
    assert.equal(entry?.value, null);
    assert.equal(entry?.expires, T0 + sec(60));
    h.clock.t += sec(29);
    const again = await h.ask('uid-to-name', 4242);
    assertAnswer(again, { outcome: 'negative', value: undefined });
    assert.equal(again.cache, 'fresh');
    assert.equal(spy.asked('byId', 4242), 1);
  });

  it('past half the TTL serves the entry AND refreshes it in the background, calling the source once', async () => {
    const { spy, h, key } = setup();
    await h.ask('name-to-uid', 'alice@example.com');
    h.clock.t += sec(301);
    const served = await h.ask('name-to-uid', 'alice@example.com');
    assertAnswer(served, { outcome: 'mapped', value: 1001 });
    assert.equal(served.cache, 'refresh');
    await settle();
    assert.equal(spy.asked('byName', 'alice'), 2);
    assert.equal(h.store.get(key('name-to-uid', 'alice'))?.stored, h.clock.t, 'the refresh rewrote the entry');
    assert.equal((await h.ask('name-to-uid', 'alice@example.com')).cache, 'fresh');
    assert.equal(spy.asked('byName', 'alice'), 2);
  });

  it('keeps serving the entry when a background refresh fails', async () => {
    const { spy, h } = setup();
    await h.ask('name-to-uid', 'alice@example.com');
    h.clock.t += sec(301);
    spy.fault = 'down';
    assertAnswer(await h.ask('name-to-uid', 'alice@example.com'), { outcome: 'mapped', value: 1001 });
    await settle();
    assertAnswer(await h.ask('name-to-uid', 'alice@example.com'), { outcome: 'mapped', value: 1001 });
  });

  it('asks the source again once the entry has expired', async () => {
    const { spy, h } = setup();
    await h.ask('name-to-uid', 'alice@example.com');
    h.clock.t += sec(600);
    const a = await h.ask('name-to-uid', 'alice@example.com');
    assert.equal(a.cache, 'miss');
    assert.equal(spy.asked('byName', 'alice'), 2);
  });

  it('serves an expired entry while the sources fault, within cache.maxStale: outcome mapped, cache stale, a short TTL', async () => {
    const { spy, h } = setup();
    await h.ask('name-to-uid', 'alice@example.com');
    spy.fault = 'directory down';
    h.clock.t = T0 + sec(600) + sec(3600); // expired for exactly maxStale
    const a = await h.ask('name-to-uid', 'alice@example.com');
    assertAnswer(a, { outcome: 'mapped', value: 1001 });
    assert.equal(a.cache, 'stale');
    assert.equal(a.ttl, 60, 'a stale answer is kept by the kernel only briefly');
  });

  it('serves a stale negative entry the same way', async () => {
    const { spy, h } = setup();
    await h.ask('uid-to-name', 4242);
    spy.fault = 'directory down';
    h.clock.t += sec(120);
    const a = await h.ask('uid-to-name', 4242);
    assertAnswer(a, { outcome: 'negative', value: undefined });
    assert.equal(a.cache, 'stale');
  });

  it('answers error NSIDMAP_ESOURCE once the entry is older than cache.maxStale', async () => {
    const { spy, h } = setup();
    await h.ask('name-to-uid', 'alice@example.com');
    spy.fault = 'directory down';
    h.clock.t = T0 + sec(600) + sec(3600) + 1;
    assertAnswer(await h.ask('name-to-uid', 'alice@example.com'), { outcome: 'error', value: undefined, code: 'NSIDMAP_ESOURCE' });
  });

  it('calls the source once for concurrent misses on one key', async () => {
    const { spy, h } = setup();
    const gate = deferred();
    spy.gate = gate.promise;
    const pending = Array.from({ length: 5 }, () => h.ask('name-to-uid', 'alice@example.com'));
    gate.resolve();
    const answers = await Promise.all(pending);
    for (const a of answers) assertAnswer(a, { outcome: 'mapped', value: 1001 });
    assert.equal(spy.asked('byName', 'alice'), 1);
  });

  it('shares one failing query among concurrent misses: each gets the error, the source is called once', async () => {
    const { spy, h } = setup();
    const gate = deferred();
    spy.gate = gate.promise;
    spy.fault = 'down';
    const pending = Array.from({ length: 3 }, () => h.ask('name-to-uid', 'alice@example.com'));
    gate.resolve();
    for (const a of await Promise.all(pending)) assertAnswer(a, { outcome: 'error', value: undefined, code: 'NSIDMAP_ESOURCE' });
    assert.equal(spy.asked('byName', 'alice'), 1);
  });

  it('keys entries by scope and source-space query: two scopes never share an answer', async () => {
    const two: PolicyInput = {
      domain: 'example.com',
      providers: { a: { kind: 'static', users: { alice: 1001 } }, b: { kind: 'static', users: { alice: 2001 } } },
      scopes: [
        { name: 'a', match: { interface: 'nfsd' }, providers: ['a'] },
        { name: 'b', providers: ['b'] },
      ],
    };
    const h = harness(two);
    assertAnswer(await h.ask('name-to-uid', 'alice@example.com', 'nfsd'), { outcome: 'mapped', value: 1001, scope: 'a' });
    assertAnswer(await h.ask('name-to-uid', 'alice@example.com', 'pipefs'), { outcome: 'mapped', value: 2001, scope: 'b' });
  });
});

// ------------------------------------------------------------------------------ scope selection

describe('scope selection', () => {
  const providers = { dir: { kind: 'static', ...DIRECTORY } } as const;

  it('takes the first scope whose match fits', async () => {
    const h = harness({
      domain: 'example.com',
      providers,
      defaults: { providers: ['dir'] },
      scopes: [{ name: 'server', match: { interface: 'nfsd' } }, { name: 'client', match: { interface: ['keyring-nfs', 'pipefs'] } }, { name: 'rest' }],
    });
    assert.equal((await h.ask('uid-to-name', 1001, 'nfsd')).scope, 'server');
    assert.equal((await h.ask('uid-to-name', 1001, 'keyring-nfs')).scope, 'client');
    assert.equal((await h.ask('uid-to-name', 1001, 'pipefs')).scope, 'client');
    assert.equal((await h.ask('uid-to-name', 1001, 'keyring-cifs')).scope, 'rest');
  });

  describe('request properties', () => {
    const h = () =>
      harness({
        domain: 'example.com',
        providers,
        defaults: { providers: ['dir'], domains: ['eng.corp.example', 'sales.example'] },
        scopes: [
          { name: 'range', match: { idRange: [{ first: 2000, count: 100 }, { first: 5000, count: 1 }] } },
          { name: 'corp', match: { domain: '*.corp.example' } },
          { name: 'ad', match: { sidDomain: DOMAIN_SID } },
          { name: 'rest' },
        ],
      });
    const rows: { kind: LookupKind; query: string | number; scope: string; why: string }[] = [
      { kind: 'uid-to-name', query: 2000, scope: 'range', why: 'first id of the range' },
      { kind: 'gid-to-name', query: 2099, scope: 'range', why: 'last id of the range' },
      { kind: 'uid-to-sid', query: 5000, scope: 'range', why: 'a second range' },
      { kind: 'uid-to-name', query: 2100, scope: 'rest', why: 'one past the range' },
      { kind: 'uid-to-name', query: 1999, scope: 'rest', why: 'one before the range' },
      { kind: 'name-to-uid', query: 'alice@eng.corp.example', scope: 'corp', why: 'domain glob' },
      { kind: 'name-to-uid', query: 'alice@ENG.Corp.Example', scope: 'corp', why: 'domain glob, case-insensitive' },
      { kind: 'name-to-uid', query: 'alice@sales.example', scope: 'rest', why: 'another domain' },
      { kind: 'name-to-uid', query: 'alice@corp.example', scope: 'rest', why: '*. needs a label before the suffix' },
      { kind: 'name-to-uid', query: '2000', scope: 'rest', why: 'a numeric name is not an id request' },
      { kind: 'sid-to-uid', query: `${DOMAIN_SID}-1001`, scope: 'ad', why: 'SID under the domain SID' },
      { kind: 'sid-to-uid', query: 'S-1-5-21-1-2-4-1001', scope: 'rest', why: 'SID of another domain' },
      { kind: 'sid-to-uid', query: DOMAIN_SID, scope: 'rest', why: 'the domain SID itself is not under itself' },
    ];
    for (const r of rows) {
      it(`${r.kind} ${r.query} → scope ${r.scope} (${r.why})`, async () => {
        assert.equal((await h().ask(r.kind, r.query)).scope, r.scope);
      });
    }

    it('a scope naming only idRange takes no name or SID requests, and one naming only domain takes no id requests', async () => {
      const hh = harness({
        domain: 'example.com',
        providers,
        defaults: { providers: ['dir'] },
        scopes: [{ name: 'ids', match: { idRange: { first: 0, count: 4294967295 } } }, { name: 'names', match: { domain: '*' } }, { name: 'rest' }],
      });
      assert.equal((await hh.ask('name-to-uid', 'alice@example.com')).scope, 'names');
      assert.equal((await hh.ask('sid-to-uid', `${DOMAIN_SID}-1001`)).scope, 'rest');
      assert.equal((await hh.ask('uid-to-name', 1001)).scope, 'ids');
    });
  });

  describe('requester properties apply to nfsd only, never to the host-wide keyring and pipefs caches', () => {
    const policy: PolicyInput = {
      domain: 'example.com',
      providers,
      defaults: { providers: ['dir'] },
      scopes: [
        { name: 'web', match: { container: 'web-*' } },
        { name: 'podman', match: { runtime: 'podman' } },
        { name: 'cg', match: { cgroup: '/system.slice/docker-*.scope' } },
        { name: 'netc', match: { netns: 'container' } },
        { name: 'net42', match: { netns: 42 } },
        { name: 'owner', match: { userns: { owner: 1000 } } },
        { name: 'hostrange', match: { userns: { hostRange: { first: 200_000, count: 65_536 } } } },
        { name: 'userc', match: { userns: 'container' } },
        { name: 'auth', match: { authDomain: 'client*.example' } },
        { name: 'neti', match: { netns: 'init', interface: 'nfsd' } },
        { name: 'rest' },
      ],
    };
    const rows: { why: string; ctx: Omit<Context, 'iface'>; scope: string }[] = [
      { why: 'container id glob', ctx: { container: { id: 'web-1', runtime: 'docker' } }, scope: 'web' },
      { why: 'runtime', ctx: { container: { id: 'db', runtime: 'podman' } }, scope: 'podman' },
      { why: 'cgroup glob', ctx: { cgroup: '/system.slice/docker-0123abcd.scope' }, scope: 'cg' },
      { why: 'netns: container', ctx: { netns: { inode: 4026532100, isInit: false } }, scope: 'netc' },
      { why: 'netns by inode', ctx: { netns: { inode: 42, isInit: true } }, scope: 'net42' },
      { why: 'userns owner', ctx: { userns: userns([{ inside: 0, outside: 100_000, count: 65_536 }], { owner: 1000 }) }, scope: 'owner' },
      { why: 'userns host range', ctx: { userns: userns([{ inside: 0, outside: 200_000, count: 65_536 }]) }, scope: 'hostrange' },
      { why: 'userns: container', ctx: { userns: userns([{ inside: 0, outside: 300_000, count: 10 }]) }, scope: 'userc' },
      { why: 'auth domain glob', ctx: { authDomain: 'client7.example', netns: { inode: 4026531840, isInit: true } }, scope: 'auth' },
      { why: 'netns: init (nfsd only)', ctx: { netns: { inode: 4026531840, isInit: true } }, scope: 'neti' },
    ];
    for (const r of rows) {
      for (const iface of ['pipefs', 'nfsd', 'keyring-nfs', 'keyring-cifs'] as const) {
        // keyring and pipefs answers are cached host-wide by the kernel: the requester never chooses
        const want = iface === 'nfsd' ? r.scope : 'rest';
        it(`${iface}: ${r.why} → scope ${want}`, async () => {
          const h = harness(policy);
          const req: [LookupKind, string | number] = iface === 'keyring-cifs' ? ['sid-to-uid', `${DOMAIN_SID}-1001`] : ['uid-to-name', 1001];
          const a = await h.ask(req[0], req[1], { iface, ...r.ctx });
          assert.equal(a.scope, want);
        });
      }
    }

    it('a container glob does not match a requester that is in no container', async () => {
      const h = harness(policy);
      assert.equal((await h.ask('uid-to-name', 1001, { iface: 'nfsd', netns: { inode: 4026532100, isInit: false } })).scope, 'netc');
    });
  });

  it('answers error NSIDMAP_ENOSCOPE when no scope matches', async () => {
    const h = harness({ domain: 'example.com', providers, scopes: [{ name: 'server', match: { interface: 'nfsd' }, providers: ['dir'] }] });
    const a = await h.ask('uid-to-name', 1001, 'keyring-nfs');
    assertAnswer(a, { outcome: 'error', value: undefined, code: 'NSIDMAP_ENOSCOPE' });
    assert.equal(a.scope, undefined);
  });

  it('uses a forced scope even when another matches first, and refuses an unknown one', async () => {
    const h = harness({
      domain: 'example.com',
      providers,
      defaults: { providers: ['dir'] },
      scopes: [{ name: 'first' }, { name: 'second', domain: 'second.example', match: { interface: 'nfsd' } }],
    });
    const forced = await h.ask('uid-to-name', 1001, 'keyring-nfs', { scope: 'second' });
    assertAnswer(forced, { outcome: 'mapped', value: 'alice@second.example', scope: 'second' });
    const unknown = await h.ask('uid-to-name', 1001, 'keyring-nfs', { scope: 'nope' });
    assertAnswer(unknown, { outcome: 'error', value: undefined, code: 'NSIDMAP_ENOSCOPE' });
    assert.match(unknown.reason ?? '', /nope/);
  });

  it('records an explain trail only when asked', async () => {
    const h = harness({ domain: 'example.com', providers, scopes: [{ name: 'host', providers: ['dir'] }] });
    assert.equal((await h.ask('uid-to-name', 1001)).trail, undefined);
    const a = await h.ask('uid-to-name', 1002, 'keyring-nfs', { explain: true });
    const steps = a.trail?.map((s) => s.step) ?? [];
    assert.ok(steps.includes('scope') && steps.includes('source'), `trail steps: ${steps.join(', ')}`);
    assert.match(a.trail?.find((s) => s.step === 'source')?.detail ?? '', /dir .*found bob/);
  });
});

// ------------------------------------------------------------------------------------ invariant

describe('invariant: a mapping within a scope is consistent both ways', () => {
  const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789._-';

  /** n users with distinct names and distinct ids in [lo, hi] */
  function randomUsers(seed: number, n: number, lo: number, hi: number): Record<string, number> {
    const rnd = prng(seed);
    const names = new Set<string>();
    const ids = new Set<number>();
    const out: Record<string, number> = {};
    while (names.size < n) {
      let name = String.fromCharCode(97 + Math.floor(rnd() * 26));
      const len = 1 + Math.floor(rnd() * 12);
      for (let i = 0; i < len; i++) name += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
      const id = lo + Math.floor(rnd() * (hi - lo + 1));
      if (names.has(name) || ids.has(id) || id === 0) continue;
      names.add(name);
      ids.add(id);
      out[name] = id;
    }
    return out;
  }

  const cases = [
    { what: 'host scope, ids anywhere in 1..4294967294', seed: 20240601, lo: 1, hi: 4294967294, scope: {} },
    { what: 'scope with map 0 100000 65536, source ids in 1..65535', seed: 7, lo: 1, hi: 65535, scope: { map: { uid: [[0, 100_000, 65_536]] as [number, number, number][] } } },
  ];
  for (const c of cases) {
    it(`name → uid → name and uid → name → uid round-trip for 200 random users (${c.what})`, async () => {
      const users = randomUsers(c.seed, 200, c.lo, c.hi);
      const h = harness({
        domain: 'example.com',
        providers: { dir: { kind: 'static', users } },
        scopes: [{ name: 'host', providers: ['dir'], root: 'squash', ...c.scope }],
      });
      for (const name of Object.keys(users)) {
        const wire = `${name}@example.com`;
        const id = await h.ask('name-to-uid', wire);
        assert.equal(id.outcome, 'mapped', `${wire}: ${id.reason ?? ''}`);
        const back = await h.ask('uid-to-name', id.value as number);
        assert.equal(back.value, wire, `${wire} → ${id.value} → ${back.value}`);
        const again = await h.ask('name-to-uid', back.value as string);
        assert.equal(again.value, id.value);
      }
    });
  }
});
