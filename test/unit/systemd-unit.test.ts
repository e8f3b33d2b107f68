/**
 * contrib/systemd/nsidmapd.service: what the daemon needs from systemd is there, the sandbox is as
 * tight as documented, and systemd itself accepts the unit (systemd-analyze, when installed).
 * The unit was also run for real under systemd 252 by test/package/vm-systemd.sh.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const TEMPLATE = readFileSync(new URL('../../contrib/systemd/nsidmapd.service', import.meta.url), 'utf8');
const HAS_ANALYZE = spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0;
const work = mkdtempSync(join(tmpdir(), 'nsidmap-unit-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** The unit as contrib/install.sh writes it (placeholders filled). */
function unitFile(): string {
  const path = join(work, 'nsidmapd.service');
  writeFileSync(path, TEMPLATE.replaceAll('@NODE@', process.execPath).replaceAll('@PREFIX@', '/usr/lib/nsidmap'));
  return path;
}

/** Every value of a directive (directives may repeat). */
function values(key: string): string[] {
  return [...TEMPLATE.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
}

describe('nsidmapd.service', () => {
  it('notify with a watchdog, reload by SIGHUP, the directories the daemon uses', () => {
    for (const [k, v] of [
      ['Type', 'notify'],
      ['NotifyAccess', 'main'],
      ['WatchdogSec', '30s'],
      ['ExecReload', '/bin/kill -HUP $MAINPID'],
      ['RuntimeDirectory', 'nsidmap'],
      ['CacheDirectory', 'nsidmap'],
      ['StateDirectory', 'nsidmap'],
      ['Environment', 'UV_THREADPOOL_SIZE=8'],
      ['Restart', 'on-failure'],
    ]) assert.deepEqual(values(k!), [v], k);
    assert.deepEqual(values('ExecStart'), ['@NODE@ --optimize-for-size @PREFIX@/dist/src/daemon/main.js']);
  });

  it('keeps exactly the capabilities it documents, each with its reason', () => {
    const caps = values('CapabilityBoundingSet').join(' ').split(/\s+/).sort();
    assert.deepEqual(caps, ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_SYS_ADMIN', 'CAP_SYS_PTRACE']);
    for (const c of caps) assert.match(TEMPLATE, new RegExp(`^# ${c}\\s+\\S`, 'm'), `a comment says why ${c}`);
  });

  it('the sandbox: strict, no new privileges, an allow list with mount(2), V8 allowed its JIT', () => {
    for (const [k, v] of [
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['NoNewPrivileges', 'yes'],
      ['LockPersonality', 'yes'],
      ['MemoryDenyWriteExecute', 'no'],
      ['RestrictAddressFamilies', 'AF_UNIX AF_NETLINK AF_INET AF_INET6'],
      ['RestrictNamespaces', 'mnt net'],
      ['SystemCallArchitectures', 'native'],
    ]) assert.deepEqual(values(k!), [v], k);
    const filter = values('SystemCallFilter').join(' ').split(/\s+/);
    for (const s of ['@system-service', 'mount', 'fsmount', 'move_mount']) assert.ok(filter.includes(s), s);
    assert.match(TEMPLATE, /V8 compiles JavaScript at run time/);
    // these would hide what the daemon must see (other processes, /proc/net, /proc/keys)
    assert.deepEqual(values('ProtectProc'), []);
    assert.deepEqual(values('ProcSubset'), []);
    assert.deepEqual(values('PrivateNetwork'), []);
  });

  it('systemd-analyze verify accepts it', { skip: HAS_ANALYZE ? false : 'systemd-analyze is not installed' }, () => {
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', unitFile()], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '');
  });

  it('systemd-analyze security rates it at most 3.5 (it is 3.3 with systemd 252)', { skip: HAS_ANALYZE ? false : 'systemd-analyze is not installed' }, () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', unitFile()], { encoding: 'utf8' });
    const m = /Overall exposure level for nsidmapd\.service: (\d+\.\d)/.exec(r.stdout);
    assert.ok(m, r.stdout + r.stderr);
    assert.ok(Number(m[1]) <= 3.5, `exposure ${m[1]}`);
  });
});
