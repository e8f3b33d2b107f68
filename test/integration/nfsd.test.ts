/**
 * NfsdResponder against the simulated kernel side of nfsd's idmap caches
 * (test/sim/kernel-nfsd.ts): channel and flush files under a temp dir, request lines as nfsd
 * writes them, every reply parsed as idtoname_parse / nametoid_parse parse it — and held to
 * the canonical form, the right key and a future expiry.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../src/log.js';
import { SourceFault, type Source } from '../../src/providers/source.js';
import { staticKind } from '../../src/providers/static.js';
import { readNsInode } from '../../src/ns/proc.js';
import { NfsdResponder, type NfsdBase } from '../../src/responders/nfsd/listener.js';
import { compile, deferred, GateSource, testEnv, until, type PolicyInput } from '../sim/env.js';
import { SimNfsd } from '../sim/kernel-nfsd.js';
import { DIRECTORY, hostPolicy, startRig, valueOf, withRig, workDir, type SimRig } from '../sim/rig.js';
import { CAPTURED_NFSD } from '../fixtures/nfsd/captures.js';

const work = workDir('nsidmap-nfsd-');
const POLICY = hostPolicy('vmtest.example', DIRECTORY, { root: 'allow' });

interface Rig extends SimRig<SimNfsd, NfsdResponder> {
  readonly clock: { ms: number };
}

async function rig(opts: { policy?: PolicyInput; base?: NfsdBase; init?: boolean; retryMs?: number; replace?: Record<string, Source>; maxInFlight?: number; resolveTimeoutMs?: number } = {}): Promise<Rig> {
  const dir = work.next('ns');
  const clock = { ms: 1_795_966_710_000 };
  const now = () => clock.ms;
  const sim = new SimNfsd(dir, { now });
  if (opts.init !== false) await sim.init();
  const t = testEnv(opts.policy ?? POLICY, { now, replace: opts.replace });
  const responder = new NfsdResponder(dir, opts.base ?? {}, { openChannel: sim.openChannel, now, retryMs: opts.retryMs ?? 20, maxInFlight: opts.maxInFlight, resolveTimeoutMs: opts.resolveTimeoutMs });
  return startRig(sim, responder, t, { clock });
}

const positive = valueOf('positive');

function assertClean(sim: SimNfsd): void {
  assert.ok(sim.clean(), `the kernel would not take every reply: ${JSON.stringify(sim.failures.slice(0, 3))}`);
}

describe('NfsdResponder: channels', () => {
  it('holds both channels open from start, before any request (nfsd fails upcalls otherwise)', () =>
    withRig(rig(), async (r) => {
      assert.equal(r.sim.openWriters('idtoname'), 1);
      assert.equal(r.sim.openWriters('nametoid'), 1);
      assert.deepEqual(r.responder.status().detail.map((d) => d['state']), ['open', 'open']);
    }));

  it('opens channels that appear after start (nfsd started later in that namespace)', () =>
    withRig(rig({ init: false }), async (r) => {
      assert.deepEqual(r.responder.status().detail.map((d) => d['state']), ['waiting', 'waiting']);
      await r.sim.init();
      await until(() => r.sim.openWriters('idtoname') === 1 && r.sim.openWriters('nametoid') === 1, 'the channels to be opened');
      assert.equal(positive(await r.sim.request('idtoname', '*', 'user', 2001)), 'alice@vmtest.example');
    }));

  it('after stop() nfsd still counts the listener for 30 s, then fails upcalls', async () => {
    const r = await rig();
    await r.stop();
    assert.equal(r.sim.openWriters('idtoname'), 0);
    assert.equal(r.sim.hasListener('idtoname'), true);
    r.clock.ms += 31_000;
    const res = await r.sim.request('idtoname', '*', 'user', 2001);
    assert.equal(res.kind, 'failed');
  });
});

describe('NfsdResponder: a channel path through /proc/<pid>', () => {
  it('opens only while the pid is still in the namespace it serves (a reused pid is another namespace\'s)', async () => {
    const opened: string[] = [];
    const openChannel = async (path: string): Promise<never> => {
      opened.push(path);
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    };
    const ours = readNsInode(process.pid, 'net');
    const t = testEnv(POLICY);
    const stale = new NfsdResponder(`/proc/${process.pid}/net/rpc`, { netns: { inode: ours + 1, isInit: false } }, { openChannel, retryMs: 60_000 });
    await stale.start(t.env);
    await stale.stop();
    assert.deepEqual(opened, [], 'nothing opened through a pid now in another namespace');
    assert.match(String(stale.status().detail[0]!['lastError']), /no longer in network namespace/);
    const live = new NfsdResponder(`/proc/${process.pid}/net/rpc`, { netns: { inode: ours, isInit: true } }, { openChannel, retryMs: 60_000 });
    await live.start(t.env);
    await live.stop();
    assert.equal(opened.length, 2, 'both channels tried through the pid still in the namespace');
  });
});

describe('NfsdResponder: the captured exchanges', () => {
  it('writes the very reply lines the real nfsd accepted, for every request the stand-in answered', () =>
    withRig(rig(), async (r) => {
      for (const c of CAPTURED_NFSD) {
        if (c.value === undefined) continue;
        r.clock.ms = (c.expiry - 600) * 1000 + 400; // the captured expiry is now + 600
        const res = await r.sim.requestRaw(c.cache, c.request);
        assert.equal(positive(res), c.value);
        assert.equal(r.sim.replies.at(-1)!.line, c.reply.toString('latin1'));
      }
      assertClean(r.sim);
    }));

  it('answers the ones the stand-in refused as rpc.idmapd would: an unknown id → nobody, and the kernel takes it', () =>
    withRig(rig(), async (r) => {
      const unknown = CAPTURED_NFSD.filter((c) => c.value === undefined && c.cache === 'idtoname');
      assert.ok(unknown.length > 0);
      for (const c of unknown) {
        const v = positive(await r.sim.requestRaw(c.cache, c.request));
        assert.match(String(v), /^no(body|group)@vmtest\.example$/);
      }
      assertClean(r.sim);
    }));
});

describe('NfsdResponder: answers', () => {
  it('an unknown name stays negative (a chown must not become nobody); expiry is now + the negative TTL', () =>
    withRig(rig(), async (r) => {
      const res = await r.sim.request('nametoid', '*', 'user', 'mallory@vmtest.example');
      assert.deepEqual(res, { kind: 'negative', expiry: Math.floor(r.clock.ms / 1000) + 60 });
      const ok = await r.sim.request('nametoid', '*', 'group', 'staff2@vmtest.example');
      assert.deepEqual(ok, { kind: 'positive', value: 3001, expiry: Math.floor(r.clock.ms / 1000) + 600 });
      assertClean(r.sim);
    }));

  it('puts the client auth domain into the Context: a scope per client', async () => {
    const policy: PolicyInput = {
      domain: 'example.com',
      providers: { dir: DIRECTORY },
      scopes: [
        { name: 'krb', match: { interface: 'nfsd', authDomain: 'gss/*' }, domain: 'krb.example', providers: ['dir'] },
        { name: 'host', providers: ['dir'] },
      ],
    };
    await withRig(rig({ policy }), async (r) => {
      assert.equal(positive(await r.sim.request('idtoname', 'gss/krb5', 'user', 2002)), 'bob@krb.example');
      assert.equal(positive(await r.sim.request('idtoname', '10.0.0.7', 'user', 2002)), 'bob@example.com');
      assert.equal(positive(await r.sim.request('nametoid', 'gss/krb5', 'user', 'bob@krb.example')), 2002);
      assert.equal((await r.sim.request('nametoid', '10.0.0.7', 'user', 'bob@krb.example')).kind, 'negative', 'krb.example is not the host scope\'s domain');
      assertClean(r.sim);
    });
  });

  it('quotes what needs quoting, both ways: an auth domain and a name with spaces and a backslash', async () => {
    const policy = hostPolicy('example.com', { kind: 'static', users: { 'j doe\\x': 4001 }, groups: { 'domain users': 513 } });
    await withRig(rig({ policy }), async (r) => {
      assert.equal(positive(await r.sim.request('nametoid', 'my client', 'user', 'j doe\\x@example.com')), 4001);
      assert.equal(positive(await r.sim.request('idtoname', 'tab\tclient', 'group', 513)), 'domain users@example.com');
      assert.ok(r.sim.replies.some((x) => x.line.startsWith('my\\040client user j\\040doe\\134x@example.com ')));
      assertClean(r.sim);
    });
  });

  it('a name the kernel cannot hold is never truncated: idtoname answers the bare nobody', async () => {
    const long = 'x'.repeat(120);
    const policy = hostPolicy('a-long-domain.example', { kind: 'static', users: { [long]: 7000 } });
    await withRig(rig({ policy }), async (r) => {
      assert.equal(positive(await r.sim.request('idtoname', '*', 'user', 7000)), 'nobody');
      assert.equal(r.t.events('nfsd.unencodable').length, 1);
      assertClean(r.sim);
    });
  });

  it('a source error never puts the raw id on the wire: idtoname answers nobody for a short while, nametoid stays negative', async () => {
    // a negative idtoname entry makes nfsd send the numeric id (encode_ascii_id), which a client
    // would take as one of its own ids
    const broken: Source = { kind: 'static', name: 'dir', byId: async () => { throw new SourceFault('dir', 'directory down'); }, byName: async () => { throw new SourceFault('dir', 'directory down'); } };
    await withRig(rig({ replace: { dir: broken } }), async (r) => {
      const id = await r.sim.request('idtoname', '*', 'user', 2001);
      assert.equal(positive(id), 'nobody');
      assert.ok(id.kind === 'positive' && id.expiry - Math.floor(r.clock.ms / 1000) <= 60, `a short expiry: ${JSON.stringify(id)}`);
      assert.equal((await r.sim.request('nametoid', '*', 'user', 'alice@vmtest.example')).kind, 'negative');
      assertClean(r.sim);
    });
  });

  it('a negative the policy asks for on idtoname (unmapped.toName: negative) is given', () =>
    withRig(rig({ policy: hostPolicy('vmtest.example', DIRECTORY, { unmapped: { toName: 'negative' } }) }), async (r) => {
      assert.equal((await r.sim.request('idtoname', '*', 'user', 4242)).kind, 'negative');
      assertClean(r.sim);
    }));
});

describe('NfsdResponder: hostile input', () => {
  it('a malformed request with a readable key is answered (idtoname: nobody, nametoid: negative) and logged', () =>
    withRig(rig(), async (r) => {
      const res = await r.sim.requestRaw('idtoname', Buffer.from('* user 4294967295\n'));
      assert.equal(positive(res), 'nobody', 'idtoname: never negative (nfsd would send the number)');
      const bad = await r.sim.requestRaw('nametoid', Buffer.from('* group \xff\xfe@vmtest.example\n', 'latin1'));
      assert.equal(bad.kind, 'negative');
      assert.equal(r.t.events('nfsd.malformed').length, 2);
      assertClean(r.sim);
    }));

  it('a request with no readable key is logged and dropped; the channel goes on serving', () =>
    withRig(rig(), async (r) => {
      for (const line of ['garbage\n', '* user\n', '* user 1 2 3\n', '* user a\\b\n', 'no newline']) void r.sim.requestRaw('idtoname', Buffer.from(line));
      await until(() => r.responder.status().detail[0]!['dropped'] === 5, 'five requests dropped');
      assert.equal(r.t.events('nfsd.malformed').length, 5);
      assert.equal(positive(await r.sim.request('idtoname', '*', 'group', 3001)), 'staff2@vmtest.example');
      assertClean(r.sim);
    }));
});

describe('NfsdResponder: flush', () => {
  it('after a reload, flushKernelCaches() empties both caches and the next requests get the new answers', () =>
    withRig(rig(), async (r) => {
      assert.equal(positive(await r.sim.request('idtoname', '*', 'user', 2001)), 'alice@vmtest.example');
      assert.equal(positive(await r.sim.request('nametoid', '*', 'user', 'alice@vmtest.example')), 2001);
      const upcalls = r.sim.counters.upcalls;
      assert.equal(positive(await r.sim.request('idtoname', '*', 'user', 2001)), 'alice@vmtest.example');
      assert.equal(r.sim.counters.upcalls, upcalls, 'answered from the kernel cache');

      // a new scope name: the resolver keys its own cache by scope, so nothing old is served
      r.t.resolver.setPolicy(compile({ domain: 'new.example', providers: { dir: { ...DIRECTORY, users: { alice: 5001 } } }, scopes: [{ name: 'v2', providers: ['dir'] }] }));
      await r.responder.flushKernelCaches();
      const sec = Math.floor(r.clock.ms / 1000);
      assert.deepEqual(r.sim.flushes, [
        { cache: 'idtoname', text: `${sec}\n` },
        { cache: 'nametoid', text: `${sec}\n` },
      ]);
      assert.equal(r.sim.cached('idtoname') + r.sim.cached('nametoid'), 0);
      r.clock.ms += 1000;
      assert.equal(positive(await r.sim.request('idtoname', '*', 'user', 5001)), 'alice@new.example');
      assert.equal(positive(await r.sim.request('nametoid', '*', 'user', 'alice@new.example')), 5001);
      assert.deepEqual(r.responder.status().detail.map((d) => d['flushes']), [1, 1]);
      assertClean(r.sim);
    }));

  it('an answer resolved across a reload is kept by nfsd for 1 s only (its flush happened meanwhile)', async () => {
    const gate = new GateSource(staticKind.create('dir', DIRECTORY, { baseDir: work.path, log: silentLogger }));
    await withRig(rig({ replace: { dir: gate } }), async (r) => {
      const held = deferred();
      gate.hold = held.promise;
      const pending = r.sim.request('idtoname', '*', 'user', 2001);
      await until(() => gate.calls === 1, 'the source to be asked');
      r.t.resolver.setPolicy(compile({ domain: 'vmtest.example', providers: { dir: { ...DIRECTORY, users: { alice: 5001 } } }, scopes: [{ name: 'v2', providers: ['dir'] }] }));
      await r.responder.flushKernelCaches();
      gate.hold = undefined;
      held.resolve();
      const res = await pending;
      assert.equal(positive(res), 'alice@vmtest.example');
      assert.ok(res.kind === 'positive' && res.expiry === Math.floor(r.clock.ms / 1000) + 1, `expiry now + 1 s: ${JSON.stringify(res)}`);
      assertClean(r.sim);
    });
  });

  it('an answer resolved across a cache flush is kept by nfsd for 1 s only, as across a reload', async () => {
    const gate = new GateSource(staticKind.create('dir', DIRECTORY, { baseDir: work.path, log: silentLogger }));
    await withRig(rig({ replace: { dir: gate } }), async (r) => {
      const held = deferred();
      gate.hold = held.promise;
      const pending = r.sim.request('nametoid', '*', 'user', 'alice@vmtest.example');
      await until(() => gate.calls === 1, 'the source to be asked');
      r.t.resolver.invalidate();
      await r.responder.flushKernelCaches();
      gate.hold = undefined;
      held.resolve();
      const res = await pending;
      assert.ok(res.kind === 'positive' && res.expiry === Math.floor(r.clock.ms / 1000) + 1, `expiry now + 1 s: ${JSON.stringify(res)}`);
      assertClean(r.sim);
    });
  });

  it('a flush where nfsd is not running is a quiet no-op', () =>
    withRig(rig({ init: false }), async (r) => {
      await r.responder.flushKernelCaches();
      assert.deepEqual(r.responder.status().detail.map((d) => [d['flushes'], d['lastError']]), [[0, undefined], [0, undefined]]);
    }));
});

describe('NfsdResponder: many requests at once', () => {
  it('a lookup that hangs is answered at the deadline as for an error (idtoname nobody, nametoid negative, 5 s), and does not hold the channel', async () => {
    const gate = new GateSource(staticKind.create('dir', DIRECTORY, { baseDir: work.path, log: silentLogger }));
    await withRig(rig({ replace: { dir: gate }, maxInFlight: 1, resolveTimeoutMs: 200 }), async (r) => {
      const held = deferred();
      gate.hold = held.promise;
      try {
        const sec = Math.floor(r.clock.ms / 1000);
        const id = await r.sim.request('idtoname', '*', 'user', 2001);
        assert.deepEqual(id, { kind: 'positive', value: 'nobody', expiry: sec + 5 });
        // with one request in flight allowed, the channel went on after the first timed out
        const name = await r.sim.request('nametoid', '*', 'user', 'bob@vmtest.example');
        assert.deepEqual(name, { kind: 'negative', expiry: sec + 5 });
        assert.equal(r.t.events('nfsd.timeout').length, 2);
        assert.deepEqual(r.responder.status().detail.map((d) => d['timeouts']), [1, 1]);
        assertClean(r.sim);
      } finally {
        gate.hold = undefined;
        held.resolve();
      }
    });
  });

  it('resolves at most maxInFlight requests of a channel at once; the rest wait in the kernel and are all answered', async () => {
    const gate = new GateSource(staticKind.create('dir', DIRECTORY, { baseDir: work.path, log: silentLogger }));
    await withRig(rig({ replace: { dir: gate }, maxInFlight: 5 }), async (r) => {
      const held = deferred();
      gate.hold = held.promise;
      const all = Array.from({ length: 20 }, (_, i) => r.sim.request('idtoname', '*', 'user', 3000 + i));
      await until(() => gate.calls === 5, 'five lookups under way');
      await new Promise((res) => setTimeout(res, 50));
      assert.equal(gate.calls, 5, 'no sixth request read while five are in flight');
      gate.hold = undefined;
      held.resolve();
      const answers = await Promise.all(all);
      assert.equal(answers.length, 20);
      for (const a of answers) assert.equal(positive(a), 'nobody@vmtest.example');
      assertClean(r.sim);
    });
  });

  it('answers 400 concurrent requests from 4 clients, each with its own key, none crossed', async () => {
    const users: Record<string, number> = {};
    for (let i = 0; i < 100; i++) users[`u${i}`] = 20_000 + i;
    const policy: PolicyInput = {
      domain: 'example.com',
      providers: { dir: { kind: 'static', users, groups: users } },
      scopes: [
        { name: 'c0', match: { interface: 'nfsd', authDomain: '10.0.0.0' }, domain: 'c0.example', providers: ['dir'] },
        { name: 'c1', match: { interface: 'nfsd', authDomain: '10.0.0.1' }, domain: 'c1.example', providers: ['dir'] },
        { name: 'other', providers: ['dir'] },
      ],
    };
    await withRig(rig({ policy }), async (r) => {
      const jobs: Promise<void>[] = [];
      for (let i = 0; i < 400; i++) {
        const client = i % 4;
        const auth = `10.0.0.${client}`;
        const domain = client < 2 ? `c${client}.example` : 'example.com';
        const u = i % 100;
        const type = i % 3 === 0 ? 'group' : 'user';
        if (i % 2 === 0) jobs.push(r.sim.request('idtoname', auth, type, 20_000 + u).then((res) => assert.equal(positive(res), `u${u}@${domain}`, `#${i}`)));
        else jobs.push(r.sim.request('nametoid', auth, type, `u${u}@${domain}`).then((res) => assert.equal(positive(res), 20_000 + u, `#${i}`)));
      }
      await Promise.all(jobs);
      assertClean(r.sim);
      assert.equal(r.sim.counters.negative, 0);
    });
  });
});
