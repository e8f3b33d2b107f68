/**
 * The policy's `daemon:` block: where the admin socket lives, who may use it, how much is logged.
 * Command-line options win over it.
 */
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { scratch, spawnTs, DAEMON_MAIN, request, staticPolicy, waitReady } from './harness.js';

const tmp = scratch('daemon-policy');
after(() => tmp.cleanup());

describe('the policy daemon: block', () => {
  it('daemon.socket places the admin socket; daemon.adminGroup makes it 0660 with that group', async () => {
    const socket = tmp.path('from-policy.sock');
    const policy = tmp.path('p1.yaml');
    writeFileSync(policy, staticPolicy(1001, `daemon:\n  socket: ${socket}\n  adminGroup: 4321\n`));
    const d = spawnTs(DAEMON_MAIN, ['--policy', policy, '--cache', ':memory:']);
    try {
      await waitReady(d, socket);
      const st = statSync(socket);
      assert.equal(st.mode & 0o777, 0o660);
      assert.equal(st.gid, 4321);
    } finally {
      d.signal('SIGTERM');
      await d.waitExit(5000);
    }
  });

  it('an unknown adminGroup name refuses to start with NSIDMAP_EDAEMON in one line', async () => {
    const policy = tmp.path('p2.yaml');
    writeFileSync(policy, staticPolicy(1001, `daemon:\n  adminGroup: no-such-group-nsidmap\n`));
    const d = spawnTs(DAEMON_MAIN, ['--policy', policy, '--socket', tmp.path('p2.sock'), '--cache', ':memory:']);
    const exit = await d.waitExit(10_000);
    assert.notEqual(exit.code, 0);
    assert.match(d.stderr.trim(), /^NSIDMAP_EDAEMON: daemon\.adminGroup: no group "no-such-group-nsidmap"/m);
  });

  it('daemon.logLevel: debug logs mapped lookups; --log-level on the command line wins', async () => {
    const policy = tmp.path('p3.yaml');
    writeFileSync(policy, staticPolicy(1001, `daemon:\n  logLevel: debug\n`));
    for (const [extra, expectDebug] of [[[], true], [['--log-level', 'info'], false]] as const) {
      const socket = tmp.path(`p3-${expectDebug}.sock`);
      const d = spawnTs(DAEMON_MAIN, ['--policy', policy, '--socket', socket, '--cache', ':memory:', ...extra]);
      try {
        await waitReady(d, socket);
        const r = await request(socket, { id: 7, op: 'resolve', kind: 'uid', value: 'alice@example.com' });
        assert.equal(r['ok'], true);
        await new Promise((res) => setTimeout(res, 200));
        assert.equal(/DEBUG lookup .*query=alice@example.com/.test(d.stderr), expectDebug, d.stderr);
      } finally {
        d.signal('SIGTERM');
      await d.waitExit(5000);
      }
    }
  });
});
