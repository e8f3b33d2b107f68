/**
 * PipefsResponder against the simulated kernel side of rpc_pipefs (test/sim/kernel-pipefs.ts):
 * real directories and files under a temp root, so the directory watching runs for real; the
 * pipe itself is the simulation, which enforces every check idmap_pipe_downcall() makes.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { endianness } from 'node:os';
import { describe, it } from 'node:test';
import { PipefsResponder, type ListDir, type PipefsBase, type PipefsOptions } from '../../src/responders/pipefs/listener.js';
import { channelError } from '../../src/responders/channel.js';
import type { Resolver } from '../../src/resolver/resolver.js';
import { staticKind } from '../../src/providers/static.js';
import { silentLogger } from '../../src/log.js';
import { CAPTURED_PIPE } from '../fixtures/pipefs/captures.js';
import { deferred, GateSource, testEnv, until, type PolicyInput, type TestEnv } from '../sim/env.js';
import { legacyDescription, SimLegacyKeyring, SimPipefs, type SimUpcall } from '../sim/kernel-pipefs.js';
import { DIRECTORY, hostPolicy, startRig, valueOf, withRig, workDir, type SimRig } from '../sim/rig.js';

const work = workDir('nsidmap-pipefs-');
const POLICY = hostPolicy('vmtest.example');

interface Rig extends SimRig<SimPipefs, PipefsResponder> {
  /** every client the rig made */
  readonly clnt: string;
}

async function rig(opts: { policy?: PolicyInput; base?: PipefsBase; options?: PipefsOptions; t?: TestEnv; idmap?: boolean; keyring?: SimLegacyKeyring } = {}): Promise<Rig> {
  const root = work.next('m');
  const sim = await new SimPipefs(root, { keyring: opts.keyring }).init();
  const clnt = await sim.addClient({ idmap: opts.idmap });
  const t = opts.t ?? testEnv(opts.policy ?? POLICY);
  const responder = new PipefsResponder(root, opts.base ?? {}, { openChannel: sim.openChannel, rescanMs: 0, reopenMs: 10, ...opts.options });
  const r = await startRig(sim, responder, t, { clnt });
  if (opts.idmap !== false) await sim.waitForReader(clnt);
  return r;
}

const instantiated = valueOf('instantiated');

/** `p`, or a failure after `ms`: an upcall left unanswered would otherwise hang the test. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A source held at a gate (GateSource) over the rig's directory, and a TestEnv resolving through it. */
function gated(): { gate: GateSource; t: TestEnv } {
  const gate = new GateSource(staticKind.create('dir', DIRECTORY, { baseDir: work.path, log: silentLogger }));
  return { gate, t: testEnv(POLICY, { replace: { dir: gate } }) };
}

/** `t` with its resolver's resolve() replaced (a fault the real resolver turns into an answer). */
function withResolve(t: TestEnv, resolve: (...args: Parameters<Resolver['resolve']>) => Promise<unknown>): TestEnv {
  const stub = { resolve } as unknown as Resolver;
  return { ...t, env: { ...t.env, resolver: () => stub } };
}

describe('PipefsResponder: the captured upcalls', { skip: endianness() !== 'LE' && 'captures are little-endian' }, () => {
  it('the simulation accepts exactly the replies the real kernel accepted', () => {
    const sim = new SimPipefs(work.path, { endian: 'LE' });
    for (const c of CAPTURED_PIPE) assert.equal(sim.downcall(c.raw, c.reply).kind, 'instantiated');
  });

  it('answers every captured upcall with the reply bytes the real kernel took', () =>
    withRig(rig(), async (r) => {
      for (const c of CAPTURED_PIPE) {
        const res = await r.sim.upcallRaw(r.clnt, c.raw);
        assert.equal(instantiated(res), c.conv === 1 ? c.replyId : c.replyName);
        assert.equal(r.sim.replies.at(-1)!.bytes.toString('hex'), c.reply.toString('hex'));
      }
      assert.equal(r.sim.counters.rejected, 0);
      const st = r.responder.status().detail[0]!;
      assert.equal(st['served'], CAPTURED_PIPE.length);
      assert.equal(st['mapped'], CAPTURED_PIPE.length);
      assert.equal(st['state'], 'open');
    }));
});

describe('PipefsResponder: answers as rpc.idmapd would, but for ids nothing maps', () => {
  it('an unknown name answers SUCCESS + the nobody id; an unknown id is a failure reply (the key is negated)', async () => {
    // rpc.idmapd answers an unknown id with the nobody name. We do not: the kernel also asks the
    // pipe after a failed id_resolver key, and a nobody there makes `chown unmappable` succeed.
    await withRig(rig(), async (r) => {
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'mallory@vmtest.example' })), 65534);
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'group', conv: 'name-to-id', name: 'ghosts@vmtest.example' })), 65534);
      for (const type of ['user', 'group'] as const) {
        const res = await r.sim.upcall(r.clnt, { type, conv: 'id-to-name', id: 4242 });
        assert.ok(res.kind === 'negated' && res.errno === 'ENOKEY', JSON.stringify(res));
      }
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'alice@other.example' })), 65534, 'a foreign domain is nobody too');
      const st = r.responder.status().detail[0]!;
      assert.equal(st['nobody'], 3);
      assert.equal(st['negative'], 2);
    });
  });

  it('a scope that answers negatively gets a failure reply: the kernel negates the key, the ENOKEY is expected', async () => {
    const policy: PolicyInput = { ...POLICY, scopes: [{ name: 'strict', providers: ['dir'], unmapped: { toId: 'negative', toName: 'negative' } }] };
    await withRig(rig({ policy }), async (r) => {
      const res = await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'mallory@vmtest.example' });
      assert.equal(res.kind, 'negated');
      assert.ok(res.kind === 'negated' && res.requested && res.errno === 'ENOKEY', JSON.stringify(res));
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'bob@vmtest.example' })), 2002);
      const st = r.responder.status().detail[0]!;
      assert.deepEqual([st['negative'], st['rejected'], st['lastError']], [1, 0, undefined]);
      assert.equal(r.sim.counters.rejected, 0);
    });
  });

  it('resolves with the base Context of its namespace: iface pipefs, the mount, the container', async () => {
    // A container scope never takes a pipe request (the kernel caches pipe answers host-wide),
    // so the context is checked by what the responder hands the resolver, not by scope choice.
    const policy: PolicyInput = {
      domain: 'example.com',
      providers: { dir: DIRECTORY },
      scopes: [
        { name: 'tenant-a', match: { interface: 'nfsd', container: 'tenant-a*' }, domain: 'a.example', providers: ['dir'] },
        { name: 'pipes', match: { interface: 'pipefs' }, domain: 'pipes.example', providers: ['dir'] },
        { name: 'host', providers: ['dir'] },
      ],
    };
    await withRig(rig({ policy, base: { container: { id: 'tenant-a-0123', runtime: 'docker' }, netns: { inode: 4026532999, isInit: false } } }), async (r) => {
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'id-to-name', id: 2001 })), 'alice@pipes.example');
      assert.deepEqual(r.responder.context.container, { id: 'tenant-a-0123', runtime: 'docker' });
      assert.equal(r.responder.context.pipefs, r.sim.root);
      assert.equal(r.responder.context.iface, 'pipefs');
      const st = r.responder.status().detail[0]!;
      assert.equal(st['container'], 'tenant-a-0123');
      assert.equal(st['netns'], 4026532999);
    });
  });
});

describe('PipefsResponder: clnt directories and pipes coming and going', () => {
  it('opens an idmap pipe that appears after its directory', () =>
    withRig(rig({ idmap: false }), async (r) => {
      await until(() => r.responder.status().detail[0]?.['state'] === 'waiting', 'the client to be seen');
      assert.equal(r.sim.readers(r.clnt), 0);
      await r.sim.createPipe(r.clnt);
      await r.sim.waitForReader(r.clnt);
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'carol@vmtest.example' })), 2003);
    }));

  it('picks up a clnt directory made after start from the watch alone (no rescan)', () =>
    withRig(rig(), async (r) => {
      const second = await r.sim.addClient();
      await r.sim.waitForReader(second);
      assert.equal(instantiated(await r.sim.upcall(second, { type: 'group', conv: 'id-to-name', id: 3001 })), 'staff2@vmtest.example');
      assert.equal(r.responder.status().detail.length, 2);
    }));

  it('finds clients by periodic rescan when the watch is not there to tell', async () => {
    const root = work.next('m');
    const sim = new SimPipefs(root); // no nfs/ yet: the responder watches the root, then rescans
    const t = testEnv(POLICY);
    const responder = new PipefsResponder(root, {}, { openChannel: sim.openChannel, rescanMs: 20 });
    await withRig(startRig(sim, responder, t, {}), async () => {
      assert.equal(responder.status().detail[0]?.['state'], 'waiting for nfs/');
      await sim.init();
      const c = await sim.addClient();
      await sim.waitForReader(c);
      assert.equal(instantiated(await sim.upcall(c, { type: 'user', conv: 'id-to-name', id: 2002 })), 'bob@vmtest.example');
    });
  });

  it('a clnt directory removed mid-flight fails that upcall, and the responder carries on with the others', async () => {
    const { gate, t } = gated();
    await withRig(rig({ t }), async (r) => {
      const other = await r.sim.addClient();
      await r.sim.waitForReader(other);
      const hold = deferred();
      gate.hold = hold.promise;
      const inflight = r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'alice@vmtest.example' });
      await until(() => gate.calls > 0, 'the upcall to reach the source');
      await r.sim.removeClient(r.clnt);
      const res = await inflight;
      assert.deepEqual([res.kind, res.kind === 'failed' && res.errno], ['failed', 'EPIPE']);
      gate.hold = undefined;
      hold.resolve();
      await until(() => r.responder.status().detail.every((d) => d['clnt'] !== r.clnt), 'the removed client to leave the status');
      assert.equal(instantiated(await r.sim.upcall(other, { type: 'user', conv: 'name-to-id', name: 'alice@vmtest.example' })), 2001);
      assert.equal(r.sim.counters.rejected, 0);
    });
  });

  it('reopens a pipe that was unlinked and made again while its directory stayed', () =>
    withRig(rig(), async (r) => {
      await r.sim.removePipe(r.clnt);
      await until(() => r.responder.status().detail[0]?.['state'] === 'waiting', 'the pipe to be let go');
      await r.sim.createPipe(r.clnt);
      await r.sim.waitForReader(r.clnt);
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'bob@vmtest.example' })), 2002);
    }));

  it('a listing of nfs/ that fails with EMFILE or ENOMEM keeps every pipe open (an in-flight upcall goes on); only ENOENT and ENOTDIR mean no clients', async () => {
    const { gate, t } = gated();
    let fail: string | undefined;
    let failed = 0;
    const listDir: ListDir = async (path) => {
      if (fail === undefined) return readdir(path, { withFileTypes: true });
      failed++;
      throw channelError(fail, `scandir '${path}'`);
    };
    const hold = deferred();
    await withRig(rig({ t, options: { listDir, rescanMs: 10 } }), async (r) => {
      try {
        gate.hold = hold.promise;
        const inflight = r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'alice@vmtest.example' });
        await until(() => gate.calls > 0, 'the upcall to reach the source');
        for (const errno of ['EMFILE', 'ENOMEM']) {
          fail = errno;
          const before = failed;
          await until(() => failed >= before + 2, `two rescans failing with ${errno}`);
          assert.equal(r.sim.readers(r.clnt), 1, `${errno}: the pipe stays open`);
          assert.equal(r.responder.status().detail[0]?.['state'], 'open');
        }
        fail = undefined;
        gate.hold = undefined;
        hold.resolve();
        assert.equal(instantiated(await inflight), 2001, 'the upcall in flight was not aborted');
        assert.ok(r.t.events('pipefs.scan_failed').length >= 4);
        assert.equal(r.sim.counters.aborted, 0);
        fail = 'ENOENT';
        await until(() => r.sim.readers(r.clnt) === 0, 'ENOENT to close the pipe: no clients');
        assert.equal(r.responder.status().detail[0]?.['state'], 'no clients');
      } finally {
        fail = undefined;
        gate.hold = undefined;
        hold.resolve();
      }
    });
  });

  it('stop() closes every pipe (the kernel aborts a pending upcall then)', async () => {
    const r = await rig();
    await r.stop();
    assert.equal(r.sim.readers(r.clnt), 0);
    const res = await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'bob@vmtest.example' });
    assert.equal(res.kind, 'failed', 'no reader: rpc_queue_upcall fails with EPIPE');
  });
});

describe('PipefsResponder: hostile input', () => {
  const garbage: [string, Buffer][] = [
    ['im_type 9', Buffer.from([9, 1, 0x61, ...Buffer.alloc(137)])],
    ['im_conv 5', Buffer.from([0, 5, ...Buffer.alloc(138)])],
    ['an unterminated name', Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(138, 0x61)])],
    ['a name that is not UTF-8', Buffer.concat([Buffer.from([0, 1, 0xc3, 0x28]), Buffer.alloc(136)])],
    ['100 bytes', Buffer.alloc(100, 1)],
    ['300 bytes', Buffer.alloc(300, 0)],
  ];
  for (const [what, bytes] of garbage) {
    it(`a malformed upcall (${what}) is answered negatively and logged, and the next one is served`, () =>
      withRig(rig(), async (r) => {
        const res = await r.sim.upcallRaw(r.clnt, bytes);
        assert.ok(res.kind === 'negated' && res.requested, `want a failure reply, got ${JSON.stringify(res)}`);
        assert.equal(r.t.events('pipefs.malformed').length, 1);
        assert.equal(r.responder.status().detail[0]!['malformed'], 1);
        assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'bob@vmtest.example' })), 2002);
        assert.equal(r.sim.counters.rejected, 0);
      }));
  }

  it('a name too long for an IDTONAME reply is a failure reply, never a truncated name', async () => {
    const long = 'x'.repeat(120);
    const policy = hostPolicy('a-very-long-domain.example', { kind: 'static', users: { [long]: 7000 } });
    await withRig(rig({ policy }), async (r) => {
      const res = await r.sim.upcall(r.clnt, { type: 'user', conv: 'id-to-name', id: 7000 });
      assert.ok(res.kind === 'negated' && res.requested, JSON.stringify(res));
      assert.equal(r.t.events('pipefs.unencodable').length, 1);
    });
  });
});

describe('PipefsResponder: NAMETOID names the kernel may have cut (match_strlcpy to IDMAP_NAMESZ)', () => {
  // a×112@vmtest.example is 127 bytes: what the kernel leaves of any longer name that starts so
  const cut = 'a'.repeat(112);
  const fits = 'b'.repeat(111);
  const names = { [cut]: 7001, [fits]: 7002 };
  const policy = hostPolicy('vmtest.example', { kind: 'static', users: names, groups: names });

  it('a name longer than 127 bytes whose first 127 are a known user gets no id (the key would hold it under the full name); a 126-byte name still maps', async () => {
    const keyring = new SimLegacyKeyring();
    await withRig(rig({ policy, keyring }), async (r) => {
      const full = `${cut}@vmtest.example.attacker.invalid`;
      assert.equal(Buffer.byteLength(`${cut}@vmtest.example`), 127);
      for (const type of ['user', 'group'] as const) {
        const up: SimUpcall = { type, conv: 'name-to-id', name: full };
        const sent = r.sim.message(up);
        assert.equal(sent.subarray(2, 130).toString('latin1').replace(/\0+$/, ''), `${cut}@vmtest.example`, 'the simulated kernel cuts im_name as match_strlcpy does');
        const res = await r.sim.upcall(r.clnt, up);
        assert.ok(res.kind === 'negated' && res.requested, `${type}: want a failure reply, got ${JSON.stringify(res)}`);
        assert.equal(keyring.get(legacyDescription(up)), undefined, `${type}: no key under the full description`);
        // a name of exactly 127 bytes cannot be told from a cut one: refused as well
        const exact = await r.sim.upcall(r.clnt, { type, conv: 'name-to-id', name: `${cut}@vmtest.example` });
        assert.ok(exact.kind === 'negated' && exact.requested, `${type}, 127 bytes: ${JSON.stringify(exact)}`);
        const ok = `${fits}@vmtest.example`;
        assert.equal(Buffer.byteLength(ok), 126);
        assert.equal(instantiated(await r.sim.upcall(r.clnt, { type, conv: 'name-to-id', name: ok })), 7002, `${type}: a 126-byte name maps`);
      }
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'id-to-name', id: 7001 })), `${cut}@vmtest.example`, 'IDTONAME of a 127-byte name is ours to give');
      assert.equal(r.t.events('pipefs.truncated').length, 4, 'one log line per refused name');
      const st = r.responder.status().detail[0]!;
      assert.deepEqual([st['negative'], st['malformed'], st['mapped']], [4, 0, 3]);
      assert.equal(r.sim.counters.rejected, 0);
    });
  });
});

describe('PipefsResponder: an upcall is always answered (the kernel waits holding idmap_mutex)', () => {
  it('a resolve that never completes gets a failure reply at the deadline, logged; its late answer is never written', async () => {
    const { gate, t } = gated();
    const hold = deferred();
    await withRig(rig({ t, options: { resolveTimeoutMs: 300 } }), async (r) => {
      // released before the rig stops, whatever happens: stop() waits for the upcall in flight
      gate.hold = hold.promise;
      try {
        const t0 = Date.now();
        const res = await within(r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'alice@vmtest.example' }), 3000, 'reply');
        assert.ok(res.kind === 'negated' && res.requested, `want a failure reply, got ${JSON.stringify(res)}`);
        assert.ok(Date.now() - t0 >= 250, 'not before the deadline');
        assert.equal(r.t.events('pipefs.timeout').length, 1);
        assert.match(r.t.events('pipefs.timeout')[0]!, / WARN /);
        // the next upcall is pending when the source lets both go: the late answer for alice
        // written now would land on bob's upcall (the kernel would refuse it: name not echoed)
        const next = r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'bob@vmtest.example' });
        await until(() => gate.calls >= 2, 'the next upcall to reach the source');
        gate.hold = undefined;
        hold.resolve();
        assert.equal(instantiated(await within(next, 3000, 'reply')), 2002);
        await new Promise((resolve) => setTimeout(resolve, 20));
        assert.equal(r.sim.replies.length, 2, 'one reply per upcall');
        assert.deepEqual([r.sim.counters.rejected, r.sim.counters.strayWrites], [0, 0]);
      } finally {
        gate.hold = undefined;
        hold.resolve();
      }
    });
  });

  it('stop() does not wait out the deadline for a lookup that hangs: it gives up at once', async () => {
    const { gate, t } = gated();
    const hold = deferred();
    const r = await rig({ t, options: { resolveTimeoutMs: 60_000 } });
    gate.hold = hold.promise;
    try {
      void r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'alice@vmtest.example' }).catch(() => undefined);
      await until(() => gate.calls === 1, 'the lookup to hang in the source');
      const t0 = Date.now();
      await within(r.stop(), 2000, 'stop');
      assert.ok(Date.now() - t0 < 2000);
      assert.equal(r.t.events('pipefs.timeout').length, 0, 'a stop is not a timeout');
    } finally {
      gate.hold = undefined;
      hold.resolve();
    }
  });

  it('a resolver that throws gets a failure reply, and the next upcall is served', async () => {
    const base = testEnv(POLICY);
    let calls = 0;
    const t = withResolve(base, async (req, ctx) => {
      if (calls++ === 0) throw new Error('resolver exploded');
      return base.resolver.resolve(req, ctx);
    });
    await withRig(rig({ t }), async (r) => {
      const res = await within(r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'alice@vmtest.example' }), 3000, 'reply');
      assert.ok(res.kind === 'negated' && res.requested, JSON.stringify(res));
      assert.equal(r.t.events('pipefs.resolve_bug').length, 1);
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'bob@vmtest.example' })), 2002);
    });
  });

  it('whatever throws while the reply is made, the upcall still gets a failure reply (never silence), and the next is served', async () => {
    const base = testEnv(POLICY);
    let calls = 0;
    const t = withResolve(base, async (req, ctx) => {
      if (calls++ > 0) return base.resolver.resolve(req, ctx);
      return {
        outcome: 'mapped',
        get value(): number {
          throw new Error('answer exploded');
        },
      };
    });
    await withRig(rig({ t }), async (r) => {
      const res = await within(r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'alice@vmtest.example' }), 3000, 'reply');
      assert.ok(res.kind === 'negated' && res.requested, JSON.stringify(res));
      assert.equal(r.t.events('pipefs.bug').length, 1);
      assert.equal(instantiated(await r.sim.upcall(r.clnt, { type: 'user', conv: 'name-to-id', name: 'bob@vmtest.example' })), 2002);
      assert.deepEqual([r.sim.counters.rejected, r.sim.counters.strayWrites], [0, 0]);
    });
  });
});

describe('PipefsResponder: many clients at once', () => {
  it('never crosses replies: 12 clients × 25 concurrent upcalls, each answered with its own value', async () => {
    const users: Record<string, number> = {};
    for (let i = 0; i < 300; i++) users[`u${i}`] = 10_000 + i;
    const policy = hostPolicy('many.example', { kind: 'static', users, groups: users });
    await withRig(rig({ policy }), async (r) => {
      const clients = [r.clnt];
      for (let i = 1; i < 12; i++) clients.push(await r.sim.addClient());
      for (const c of clients) await r.sim.waitForReader(c);
      const jobs: Promise<void>[] = [];
      for (let i = 0; i < 300; i++) {
        const c = clients[i % clients.length]!;
        const byName = i % 2 === 0;
        const type = i % 3 === 0 ? 'group' : 'user';
        jobs.push(
          (byName
            ? r.sim.upcall(c, { type, conv: 'name-to-id', name: `u${i}@many.example` })
            : r.sim.upcall(c, { type, conv: 'id-to-name', id: 10_000 + i })
          ).then((res) => assert.equal(instantiated(res), byName ? 10_000 + i : `u${i}@many.example`, `upcall ${i} on ${c}`)),
        );
      }
      await Promise.all(jobs);
      assert.deepEqual(r.sim.counters, { upcalls: 300, instantiated: 300, negativeReplies: 0, rejected: 0, aborted: 0, noReader: 0, strayWrites: 0 });
      const served = r.responder.status().detail.reduce((s, d) => s + Number(d['served']), 0);
      assert.equal(served, 300);
    });
  });
});

describe('the kernel caches pipe answers host-wide (a fact the policy must live with)', () => {
  it('an answer given on one namespace\'s pipe is every namespace\'s answer while its id_legacy key lives', async () => {
    // nfs_idmap_get_key() looks up and nfs_idmap_instantiate() links `id_legacy` keys in the one
    // `.id_resolver` keyring, by bare description: which pipe answered is not part of the key.
    const policy: PolicyInput = {
      domain: 'example.com',
      providers: { a: { kind: 'static', users: { alice: 1000 } }, b: { kind: 'static', users: { bob: 1000 } } },
      // container scopes for the pipe would be refused by `policy check` and are skipped by the
      // resolver: both tenants' pipes are answered by the one host-wide scope
      scopes: [
        { name: 'tenant-b', match: { interface: 'nfsd', container: 'tenant-b' }, domain: 'b.example', providers: ['b'] },
        { name: 'host', domain: 'a.example', providers: ['a'] },
      ],
    };
    const keyring = new SimLegacyKeyring();
    const t = testEnv(policy);
    const ns: { sim: SimPipefs; clnt: string; responder: PipefsResponder }[] = [];
    for (const tenant of ['tenant-a', 'tenant-b']) {
      const root = work.next('m');
      const sim = await new SimPipefs(root, { keyring }).init();
      const clnt = await sim.addClient();
      const responder = new PipefsResponder(root, { container: { id: tenant, runtime: 'docker' } }, { openChannel: sim.openChannel, rescanMs: 0 });
      await responder.start(t.env);
      await sim.waitForReader(clnt);
      ns.push({ sim, clnt, responder });
    }
    try {
      const [a, b] = ns as [(typeof ns)[0], (typeof ns)[0]];
      assert.equal(instantiated(await a.sim.upcall(a.clnt, { type: 'user', conv: 'id-to-name', id: 1000 })), 'alice@a.example');
      const fromB = await b.sim.upcall(b.clnt, { type: 'user', conv: 'id-to-name', id: 1000 });
      assert.deepEqual([fromB.kind === 'instantiated' && fromB.value, fromB.kind === 'instantiated' && fromB.cached], ['alice@a.example', true], "tenant-b's client reads tenant-a's answer: no upcall reached its pipe");
      assert.equal(b.responder.status().detail[0]!['served'], 0);
    } finally {
      await Promise.all(ns.map((x) => x.responder.stop()));
    }
  });
});
