/**
 * nsidmapd as systemd and an admin run it: a real process, its real admin socket, real signals,
 * a real sd_notify datagram socket (bound by python3). Policies use a `static` provider so no
 * answer depends on this machine's users. Every daemon is killed in after(), also on failure.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { sockaddrUn } from '../../src/daemon/notify.js';
import { defaultPaths } from '../../src/daemon/paths.js';
import {
  cli, exchange, Proc, request, scratch, spawnTs, DAEMON_MAIN, STACK, startDaemon, staticPolicy, waitReady,
  type DaemonPaths, type Json,
} from './harness.js';

const tmp = scratch('daemon');
after(() => tmp.cleanup());

const paths = (name: string): DaemonPaths => ({
  policy: tmp.path(`${name}.yaml`),
  socket: tmp.path(`${name}.sock`),
  cache: tmp.path(`${name}.sqlite`),
});

let nextId = 100;
const resolve = async (socket: string, kind: string, value: string): Promise<Json> => {
  const r = await request(socket, { id: nextId++, op: 'resolve', kind, value });
  assert.equal(r['ok'], true, JSON.stringify(r));
  return (r['result'] as { answer: Json }).answer;
};
const ping = async (socket: string): Promise<void> => {
  const r = await request(socket, { id: nextId++, op: 'ping' });
  assert.deepEqual(r['result'], { pong: true });
};
const flush = async (socket: string): Promise<void> => {
  const r = await request(socket, { id: nextId++, op: 'cache.flush' });
  assert.equal(r['ok'], true, JSON.stringify(r));
};
const errorOf = (r: Json | undefined): { code: string; message: string } => {
  assert.ok(r, 'no response');
  assert.equal(r['ok'], false, JSON.stringify(r));
  return r['error'] as { code: string; message: string };
};

describe('sockaddrUn (the NOTIFY_SOCKET address)', () => {
  const family = (b: Buffer) => (endianness() === 'LE' ? b.readUInt16LE(0) : b.readUInt16BE(0));

  it('a path becomes AF_UNIX + the path + a terminating NUL', () => {
    const a = sockaddrUn('/run/systemd/notify');
    assert.equal(family(a), 1);
    assert.equal(a.subarray(2).toString(), '/run/systemd/notify\0');
    assert.equal(a.length, 2 + '/run/systemd/notify'.length + 1);
  });

  it('an abstract name `@name` becomes a leading NUL and no terminator', () => {
    const a = sockaddrUn('@sd-notify-1');
    assert.equal(family(a), 1);
    assert.equal(a[2], 0);
    assert.equal(a.subarray(3).toString(), 'sd-notify-1');
    assert.equal(a.length, 2 + 1 + 'sd-notify-1'.length);
  });

  it('refuses a path that does not fit sun_path (108 bytes)', () => {
    assert.throws(() => sockaddrUn('/' + 'x'.repeat(107)), /too long/);
    assert.doesNotThrow(() => sockaddrUn('/' + 'x'.repeat(106)));
  });
});

describe('nsidmapd serving on its admin socket', () => {
  const p = paths('main');
  let d: Proc;

  before(() => {
    writeFileSync(p.policy, staticPolicy(1001));
    d = startDaemon(p);
  });
  after(async () => {
    if (d?.running) d.signal('SIGKILL');
    await d?.exited;
  });

  it('becomes ready: the socket answers ping (time from spawn reported)', async (t) => {
    const ms = await waitReady(d, p.socket);
    t.diagnostic(`spawn → first successful ping: ${Math.round(ms)} ms`);
    assert.ok(Number.isFinite(ms) && ms > 0);
    // the socket answers first; daemon.ready follows once the kernel responders have started
    assert.match(await d.logLine(/daemon\.ready .*socket=/), /daemon\.ready .*socket=/);
  });

  it('resolves name → uid and uid → name; the same query again is a fresh cache hit', async () => {
    const first = await resolve(p.socket, 'uid', 'alice@example.com');
    assert.equal(first['value'], 1001);
    assert.equal(first['outcome'], 'mapped');
    assert.equal(first['source'], 't');
    assert.equal(first['cache'], 'miss');
    const again = await resolve(p.socket, 'uid', 'alice@example.com');
    assert.equal(again['value'], 1001);
    assert.equal(again['cache'], 'fresh');
    const back = await resolve(p.socket, 'user', '1001');
    assert.equal(back['value'], 'alice@example.com');
    const group = await resolve(p.socket, 'name-to-gid', 'staff@example.com');
    assert.equal(group['value'], 50);
  });

  describe('malformed admin input is answered with NSIDMAP_EREQUEST and never kills the daemon', () => {
    const big = 'x'.repeat(100 * 1024);
    const cases: { name: string; payload: string; id?: number; closes?: boolean }[] = [
      { name: 'a line that is not JSON', payload: 'this is not json\n', id: 0 },
      { name: 'JSON that is not an object', payload: '[1,2]\n', id: 0 },
      { name: 'JSON null', payload: 'null\n', id: 0 },
      { name: 'an unknown op', payload: '{"id":7,"op":"shutdown"}\n', id: 7 },
      { name: 'no op at all', payload: '{"id":8}\n', id: 8 },
      { name: 'resolve without kind and value', payload: '{"id":9,"op":"resolve"}\n', id: 9 },
      { name: 'an unknown field', payload: '{"id":10,"op":"ping","extra":true}\n', id: 10 },
      { name: 'an id that is not a number', payload: '{"id":"x","op":"ping"}\n', id: 0 },
      { name: 'an invalid lookup kind', payload: '{"id":11,"op":"resolve","kind":"passwd","value":"alice"}\n', id: 11 },
      { name: 'an id above 4294967294', payload: '{"id":12,"op":"resolve","kind":"user","value":"4294967295"}\n', id: 12 },
      { name: 'a negative id', payload: '{"id":13,"op":"resolve","kind":"group","value":"-1"}\n', id: 13 },
      { name: 'a non-decimal id', payload: '{"id":14,"op":"resolve","kind":"uid-to-name","value":"0x10"}\n', id: 14 },
      { name: 'a name too long', payload: `{"id":15,"op":"resolve","kind":"uid","value":"${'a'.repeat(2000)}@example.com"}\n`, id: 15 },
      { name: 'a SID that is not one', payload: '{"id":16,"op":"resolve","kind":"sid-to-uid","value":"S-1-x"}\n', id: 16 },
      { name: 'a fractional pid', payload: '{"id":17,"op":"resolve","kind":"uid","value":"alice@example.com","pid":1.5}\n', id: 17 },
      { name: 'an unknown interface', payload: '{"id":18,"op":"resolve","kind":"uid","value":"alice@example.com","iface":"smtp"}\n', id: 18 },
      { name: 'flush of a scope the policy lacks', payload: '{"id":19,"op":"cache.flush","scope":"nope"}\n', id: 19 },
      { name: 'a 100 KB line without a newline (connection closed)', payload: big, id: 0, closes: true },
      // the limit is on the line, not on how the bytes happen to arrive
      { name: 'a 100 KB line with its newline (connection closed)', payload: `{"id":20,"op":"resolve","kind":"uid","value":"${big}"}\n`, id: 0, closes: true },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        // wanting one response more than comes makes exchange() wait for the server to close
        const ex = await exchange(p.socket, c.payload, c.closes ? 2 : 1);
        const err = errorOf(ex.responses[0]);
        assert.equal(err.code, 'NSIDMAP_EREQUEST', err.message);
        if (c.id !== undefined) assert.equal(ex.responses[0]!['id'], c.id);
        if (c.closes) {
          assert.match(err.message, /too long/);
          assert.equal(ex.responses.length, 1, 'one answer');
          assert.ok(ex.closedByServer, 'the server closes the connection after a line that is too long');
        }
        assert.ok(d.running, 'daemon still running');
        await ping(p.socket);
      });
    }

    it('answers every line of a pipelined batch, good and bad, by id', async () => {
      const payload = ['{"id":1,"op":"ping"}', 'garbage', '{"id":2,"op":"resolve","kind":"uid","value":"alice@example.com"}', '', '{"id":3,"op":"nope"}', ''].join('\n');
      const ex = await exchange(p.socket, payload, 4);
      const byId = new Map(ex.responses.map((r) => [r['id'], r]));
      assert.equal(byId.get(1)?.['ok'], true);
      assert.equal(byId.get(2)?.['ok'], true);
      assert.equal(errorOf(byId.get(3)).code, 'NSIDMAP_EREQUEST');
      assert.equal(errorOf(byId.get(0)).code, 'NSIDMAP_EREQUEST');
      assert.equal(ex.responses.length, 4, 'the blank line is not answered');
    });

    it('logs no fault for any of them', () => {
      assert.doesNotMatch(d.stderr, /daemon\.(uncaught|unhandled)|admin\.handler_failed/);
    });
  });

  describe('SIGHUP reload', () => {
    it('reloads a changed policy; the new answer appears after cache flush', async () => {
      const from = d.stderr.length;
      writeFileSync(p.policy, staticPolicy(2002));
      d.signal('SIGHUP');
      await d.logLine(/policy\.reloaded/, from);
      // the cached answer stays until it is flushed or expires
      assert.equal((await resolve(p.socket, 'uid', 'alice@example.com'))['value'], 1001);
      await flush(p.socket);
      const a = await resolve(p.socket, 'uid', 'alice@example.com');
      assert.equal(a['value'], 2002);
      assert.equal(a['cache'], 'miss');
    });

    const broken = [
      { name: 'a YAML error', code: 'NSIDMAP_EPOLICY_SYNTAX', text: 'domain: example.com\nproviders:\n  t: { kind: static, users: { alice: 3003 }\nscopes: [\n' },
      { name: 'a schema error', code: 'NSIDMAP_EPOLICY_SCHEMA', text: staticPolicy(3003).replace('kind: static', 'kind: statik') + '    ttl: { positive: forever }\n' },
      { name: 'a consistency error', code: 'NSIDMAP_EPOLICY_CHECK', text: staticPolicy(3003).replace('providers: [t]', 'providers: [t, missing]') },
    ];
    for (const b of broken) {
      it(`refuses a policy with ${b.name}: logs policy.refused with file:line:column and keeps the previous policy`, async () => {
        const from = d.stderr.length;
        writeFileSync(p.policy, b.text);
        d.signal('SIGHUP');
        const line = await d.logLine(/policy\.refused/, from);
        assert.match(line, /^\S+ ERROR policy\.refused /);
        assert.ok(line.includes(`code=${b.code}`), line);
        assert.ok(line.includes(`${p.policy}:`), line);
        assert.match(line, /\.yaml:\d+:\d+: /, 'file:line:column');
        assert.ok(d.running);
        await flush(p.socket);
        assert.equal((await resolve(p.socket, 'uid', 'alice@example.com'))['value'], 2002, 'previous policy in force');

        const r = await cli(['reload', '--socket', p.socket]);
        assert.notEqual(r.code, 0);
        assert.equal(r.code, 3);
        assert.equal(r.stdout, '');
        const lines = r.stderr.trimEnd().split('\n');
        assert.ok(lines.length >= 1);
        for (const l of lines) assert.match(l, new RegExp(`^${b.code}: .*\\.yaml:\\d+:\\d+: `));
        assert.doesNotMatch(r.stderr, STACK);
        await ping(p.socket);
      });
    }

    it('takes a fixed policy again', async () => {
      writeFileSync(p.policy, staticPolicy(2002));
      const r = await request(p.socket, { id: nextId++, op: 'reload' });
      assert.equal((r['result'] as Json)['reloaded'], true);
    });
  });

  it('SIGTERM: exits 0 within 2 s and removes its socket', async () => {
    assert.ok(existsSync(p.socket));
    const t0 = performance.now();
    d.signal('SIGTERM');
    const exit = await d.waitExit(2000);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(performance.now() - t0 < 2000);
    assert.equal(existsSync(p.socket), false, 'socket file removed');
    assert.match(d.stderr, /daemon\.stopped/);
  });
});

describe('nsidmapd over what a previous run left behind', () => {
  const p = paths('restart');
  let second: Proc | undefined;
  after(async () => {
    if (second?.running) second.signal('SIGKILL');
    await second?.exited;
  });

  it('a socket file left by a killed daemon does not prevent the next start; the cache survives', async () => {
    writeFileSync(p.policy, staticPolicy(1001));
    const first = startDaemon(p);
    await waitReady(first, p.socket);
    assert.equal((await resolve(p.socket, 'uid', 'alice@example.com'))['cache'], 'miss');
    // the answer's cache entry reaches the file at the end of the event-loop turn that answered
    // (src/cache/tiered.ts); a later request is served in a later turn, so it is there by then
    await ping(p.socket);
    first.signal('SIGKILL');
    await first.exited;
    assert.ok(statSync(p.socket).isSocket(), 'the killed daemon left its socket behind');

    second = startDaemon(p);
    await waitReady(second, p.socket);
    const a = await resolve(p.socket, 'uid', 'alice@example.com');
    assert.equal(a['value'], 1001);
    assert.equal(a['cache'], 'fresh', 'answered from the SQLite cache of the previous run');
  });

  it('a second daemon on a socket that is alive refuses to start and leaves the first one serving', async () => {
    assert.ok(second?.running);
    const intruder = startDaemon({ ...p, cache: tmp.path('intruder.sqlite') });
    const exit = await intruder.waitExit(20_000);
    assert.notEqual(exit.code, 0);
    assert.match(intruder.stderr, /^NSIDMAP_EDAEMON: .*restart\.sock/m);
    assert.doesNotMatch(intruder.stderr, STACK);
    assert.ok(existsSync(p.socket));
    await ping(p.socket);
  });

  it('a socket path taken by a regular file: NSIDMAP_EDAEMON in one line, exit 8', async () => {
    const q = { ...paths('notasocket') };
    writeFileSync(q.policy, staticPolicy());
    writeFileSync(q.socket, 'not a socket\n');
    const d = startDaemon(q);
    const exit = await d.waitExit(20_000);
    assert.equal(exit.code, 8);
    assert.match(d.stderr, /^NSIDMAP_EDAEMON: .*notasocket\.sock/m);
    assert.doesNotMatch(d.stderr, STACK);
    assert.equal(statSync(q.socket).isFile(), true, 'the file is left alone');
  });

  it('--cache on the command line wins over the policy\'s cache.path', async () => {
    const q = paths('cacheflag');
    const fromPolicy = tmp.path('from-policy.sqlite');
    writeFileSync(q.policy, staticPolicy(1001) + `cache: { path: ${fromPolicy} }\n`);
    const d = startDaemon(q);
    try {
      await waitReady(d, q.socket);
      const st = await request(q.socket, { id: nextId++, op: 'status' });
      assert.equal(((st['result'] as Json)['cache'] as Json)['path'], q.cache);
      assert.ok(existsSync(q.cache));
      assert.equal(existsSync(fromPolicy), false);
    } finally {
      d.signal('SIGTERM');
      await d.waitExit(5000);
    }
  });
});

const hasPython = spawnSync('python3', ['--version'], { stdio: 'ignore' }).status === 0;

/** A Unix datagram socket bound by python3 that prints each datagram it receives as a JSON string line. */
function notifyReceiver(address: string): Proc {
  const code = [
    'import json, socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    'a = sys.argv[1]',
    's.bind("\\0" + a[1:] if a.startswith("@") else a)',
    'print("bound", flush=True)',
    'while True:',
    '    print(json.dumps(s.recv(4096).decode()), flush=True)',
  ].join('\n');
  return new Proc(spawn('python3', ['-c', code, address], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

const datagrams = (r: Proc): string[] => r.stdout.split('\n').slice(1).filter(Boolean).map((l) => JSON.parse(l) as string);

describe('systemd readiness (sd_notify over NOTIFY_SOCKET)', { skip: !hasPython && 'python3 not found' }, () => {
  const receivers: Proc[] = [];
  after(async () => {
    for (const r of receivers) if (r.running) r.signal('SIGKILL');
    await Promise.all(receivers.map((r) => r.exited));
  });

  const addresses = [
    { name: 'a socket path', address: () => tmp.path('notify.sock') },
    { name: 'an abstract socket (@name)', address: () => `@nsidmap-test-${process.pid}-${Date.now()}` },
  ];
  for (const { name, address } of addresses) {
    it(`on ${name}: READY=1 at start, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM`, async () => {
      const addr = address();
      const recv = notifyReceiver(addr);
      receivers.push(recv);
      await recv.until('receiver bound', () => (recv.stdout.startsWith('bound\n') ? true : undefined));
      const p = paths(`notify-${receivers.length}`);
      writeFileSync(p.policy, staticPolicy());
      const d = startDaemon(p, { NOTIFY_SOCKET: addr });
      try {
        const ready = await recv.until('READY=1', () => datagrams(recv).find((m) => m.split('\n').includes('READY=1')));
        assert.ok(ready.split('\n').includes(`MAINPID=${d.pid}`), ready);
        await ping(p.socket); // READY=1 comes after the socket listens

        const n = datagrams(recv).length;
        d.signal('SIGHUP');
        const [reloading, readyAgain] = await recv.until('RELOADING=1, READY=1', () => {
          const after = datagrams(recv).slice(n);
          return after.length >= 2 ? after : undefined;
        });
        assert.match(reloading!, /^RELOADING=1\nMONOTONIC_USEC=\d+$/);
        assert.equal(readyAgain, 'READY=1');

        d.signal('SIGTERM');
        await recv.until('STOPPING=1', () => datagrams(recv).find((m) => m.startsWith('STOPPING=1')));
        assert.deepEqual(await d.waitExit(2000), { code: 0, signal: null });
        assert.doesNotMatch(d.stderr, /notify\.(failed|unavailable)/);
      } finally {
        if (d.running) d.signal('SIGKILL');
        await d.exited;
      }
    });
  }
});

describe('signals that arrive while it starts', () => {
  // Under systemd, start() loads the sd_notify binding after the socket listens: for that while
  // the socket answers though start() has not returned. A signal then must get the daemon's
  // handling, not the default action (SIGHUP: terminate; SIGTERM: die, leaving the socket).
  const env = { NOTIFY_SOCKET: `@nsidmap-test-nobody-${process.pid}` };

  it('a SIGHUP as soon as the socket answers does not kill it; the reload happens', async () => {
    const p = paths('early-hup');
    writeFileSync(p.policy, staticPolicy());
    const d = startDaemon(p, env);
    try {
      await waitReady(d, p.socket, 20_000, 2);
      d.signal('SIGHUP');
      await d.logLine(/policy\.reloaded/);
      assert.ok(d.running, JSON.stringify(d.exit));
      await ping(p.socket);
    } finally {
      if (d.running) d.signal('SIGKILL');
      await d.exited;
    }
  });

  it('a SIGTERM as soon as the socket answers: exit 0 and the socket removed', async () => {
    const p = paths('early-term');
    writeFileSync(p.policy, staticPolicy());
    const d = startDaemon(p, env);
    await waitReady(d, p.socket, 20_000, 2);
    d.signal('SIGTERM');
    assert.deepEqual(await d.waitExit(2000), { code: 0, signal: null });
    assert.equal(existsSync(p.socket), false);
  });
});

describe('nsidmapd start-up errors and --check', () => {
  it('a missing --policy file: non-zero exit, one NSIDMAP_EPOLICY_READ line on stderr, no stack', async () => {
    const p = paths('missing');
    const d = startDaemon(p);
    const exit = await d.waitExit(20_000);
    assert.notEqual(exit.code, 0);
    assert.equal(exit.code, 3);
    const lines = d.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, d.stderr);
    assert.match(lines[0]!, /^NSIDMAP_EPOLICY_READ: .*missing\.yaml/);
    assert.doesNotMatch(d.stderr, STACK);
    assert.equal(existsSync(p.socket), false);
  });

  it('--check on a good policy exits 0 and says ok', async () => {
    const p = paths('check-good');
    writeFileSync(p.policy, staticPolicy());
    const d = spawnTs(DAEMON_MAIN, ['--check', '--policy', p.policy]);
    assert.deepEqual(await d.waitExit(20_000), { code: 0, signal: null });
    assert.equal(d.stdout, `${p.policy}: ok\n`);
    assert.equal(existsSync(p.socket), false, '--check starts nothing');
  });

  const defaultPolicy = defaultPaths().policy;
  it('--check with no --policy and no default policy file checks the embedded defaults, as start-up would use them', { skip: existsSync(defaultPolicy) && `${defaultPolicy} exists on this machine` }, async () => {
    const d = spawnTs(DAEMON_MAIN, ['--check']);
    assert.deepEqual(await d.waitExit(20_000), { code: 0, signal: null }, d.stderr);
    assert.equal(d.stdout, `${defaultPolicy} does not exist: the embedded defaults: ok\n`);
  });

  it('--check on a broken policy exits 3 with every finding at file:line:column', async () => {
    const p = paths('check-bad');
    writeFileSync(p.policy, staticPolicy().replace('kind: static', 'kind: statik'));
    const d = spawnTs(DAEMON_MAIN, ['--check', '--policy', p.policy]);
    const exit = await d.waitExit(20_000);
    assert.equal(exit.code, 3);
    for (const l of d.stderr.trimEnd().split('\n')) assert.match(l, /^NSIDMAP_EPOLICY_SCHEMA: .*check-bad\.yaml:\d+:\d+: /);
  });

  it('an unknown option: NSIDMAP_EUSAGE, exit 2', async () => {
    const d = spawnTs(DAEMON_MAIN, ['--frobnicate']);
    assert.equal((await d.waitExit(20_000)).code, 2);
    assert.match(d.stderr, /^NSIDMAP_EUSAGE: /);
  });
});
