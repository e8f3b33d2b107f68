/**
 * The keyctl binding against the real kernel keyring of this machine.
 *
 * Everything happens in a private session keyring joined for this process, with `user` keys named
 * `nsidmap-keyctl-test:<pid>:…`. The request-key part installs one rule,
 * /etc/request-key.d/nsidmap-keyctl-test-<pid>.conf, for `user` keys with that prefix only (never
 * id_resolver or cifs.idmap), pointing at test/fixtures/keyring/request-key-helper.ts; after()
 * removes it, and an exit hook removes it if after() never runs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as keyctl from '../../src/responders/keyring/keyctl.js';
import { KEY_SPEC, KeyctlError } from '../../src/responders/keyring/keyctl.js';
import type { Report as HelperReport } from '../fixtures/keyring/request-key-helper.js';

const PREFIX = `nsidmap-keyctl-test:${process.pid}`;
const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const HELPER = join(ROOT, 'test/fixtures/keyring/request-key-helper.ts');
const RULE = `/etc/request-key.d/nsidmap-keyctl-test-${process.pid}.conf`;

function keyringsAvailable(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  try {
    keyctl.getKeyringId(KEY_SPEC.SESSION);
    return undefined;
  } catch (e) {
    return `no kernel keyrings: ${String(e)}`;
  }
}

const SKIP = keyringsAvailable();
const hasKeyctlCli = ((): boolean => {
  try {
    execFileSync('keyctl', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

let ring = 0;
let seq = 0;
const uniq = (what: string): string => `${PREFIX}:${what}:${++seq}`;
const errnoOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    if (e instanceof KeyctlError) return e.errnoName;
    throw e;
  }
  return 'no error';
};
const procKeysLine = (serial: number): keyctl.ProcKeysLine | undefined =>
  readFileSync('/proc/keys', 'utf8')
    .split('\n')
    .map((l) => keyctl.parseProcKeysLine(l))
    .find((k) => k?.serial === serial);
const cli = (...args: string[]): Buffer => execFileSync('keyctl', args);

describe('keyctl binding on the real kernel keyring', { skip: SKIP }, () => {
  before(() => {
    ring = keyctl.joinSessionKeyring(`${PREFIX}:session`);
  });
  after(() => {
    if (ring) keyctl.clear(ring);
  });

  it('joins a private session keyring that KEY_SPEC.SESSION then names', () => {
    assert.equal(keyctl.getKeyringId(KEY_SPEC.SESSION), ring);
    const d = keyctl.parseDescribe(keyctl.describe(ring));
    assert.equal(d?.type, 'keyring');
    assert.equal(d?.description, `${PREFIX}:session`);
    assert.equal(d?.uid, process.getuid?.());
  });

  it('adds a user key and reads back its exact bytes, as keyctl(1) does', () => {
    const payload = Buffer.from([0x31, 0x30, 0x00, 0xff, 0x0a, 0x3b]);
    const desc = uniq('bytes');
    const id = keyctl.addKey('user', desc, payload, ring);
    assert.deepEqual(keyctl.read(id), payload);
    assert.deepEqual(keyctl.parseDescribe(keyctl.describe(id)), {
      type: 'user',
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      perm: 0x3f010000,
      description: desc,
    });
    if (hasKeyctlCli) {
      assert.deepEqual(cli('pipe', String(id)), payload);
      assert.equal(cli('rdescribe', String(id)).toString().trim(), keyctl.describe(id));
    }
  });

  it('keeps a description that contains ";" whole', () => {
    const desc = uniq('a;b;c');
    const id = keyctl.addKey('user', desc, Buffer.from('x'), ring);
    assert.equal(keyctl.parseDescribe(keyctl.describe(id))?.description, desc);
  });

  it('reads payloads larger than its first buffer', () => {
    const payload = Buffer.alloc(20_000, 0x5a);
    const id = keyctl.addKey('user', uniq('big'), payload, ring);
    assert.deepEqual(keyctl.read(id), payload);
  });

  it('updates a key in place when add_key sees the same description', () => {
    const desc = uniq('update');
    const a = keyctl.addKey('user', desc, Buffer.from('one'), ring);
    const b = keyctl.addKey('user', desc, Buffer.from('two'), ring);
    assert.equal(a, b);
    assert.equal(keyctl.read(a).toString(), 'two');
  });

  it('search finds a key, and says undefined (not an error) when there is none', () => {
    const desc = uniq('search');
    const id = keyctl.addKey('user', desc, Buffer.from('s'), ring);
    assert.equal(keyctl.search(ring, 'user', desc), id);
    assert.equal(keyctl.search(KEY_SPEC.SESSION, 'user', desc), id);
    assert.equal(keyctl.search(ring, 'user', `${desc}:missing`), undefined);
    assert.equal(keyctl.search(ring, 'keyring', desc), undefined);
  });

  it('lists, links and unlinks keys in a keyring', () => {
    const child = keyctl.addKey('keyring', uniq('child'), null, ring);
    const id = keyctl.addKey('user', uniq('linked'), Buffer.from('l'), ring);
    assert.ok(keyctl.listKeyring(ring).includes(child));
    keyctl.link(id, child);
    assert.deepEqual(keyctl.listKeyring(child), [id]);
    keyctl.unlink(id, child);
    assert.deepEqual(keyctl.listKeyring(child), []);
  });

  it('clear empties a keyring', () => {
    const child = keyctl.addKey('keyring', uniq('clear'), null, ring);
    keyctl.addKey('user', uniq('c1'), Buffer.from('1'), child);
    keyctl.addKey('user', uniq('c2'), Buffer.from('2'), child);
    assert.equal(keyctl.listKeyring(child).length, 2);
    keyctl.clear(child);
    assert.deepEqual(keyctl.listKeyring(child), []);
  });

  it('setTimeout shows in /proc/keys and the key expires with EKEYEXPIRED', async () => {
    const id = keyctl.addKey('user', uniq('timeout'), Buffer.from('t'), ring);
    assert.equal(procKeysLine(id)?.expiry, 'perm');
    keyctl.setTimeout(id, 600);
    assert.match(procKeysLine(id)?.expiry ?? '', /^(9|10)m$/);
    keyctl.setTimeout(id, 1);
    await new Promise((r) => globalThis.setTimeout(r, 1500));
    assert.equal(errnoOf(() => keyctl.read(id)), 'EKEYEXPIRED');
  });

  it('revoke makes reads fail with EKEYREVOKED, shows R in /proc/keys, and search ignores it', () => {
    const desc = uniq('revoke');
    const id = keyctl.addKey('user', desc, Buffer.from('r'), ring);
    keyctl.revoke(id);
    assert.equal(errnoOf(() => keyctl.read(id)), 'EKEYREVOKED');
    assert.equal(procKeysLine(id)?.flags[1], 'R');
    assert.equal(keyctl.search(ring, 'user', desc), undefined);
  });

  it('invalidate removes the key at once: ENOKEY, and search no longer finds it', () => {
    const desc = uniq('invalidate');
    const id = keyctl.addKey('user', desc, Buffer.from('i'), ring);
    keyctl.invalidate(id);
    assert.equal(errnoOf(() => keyctl.describe(id)), 'ENOKEY');
    assert.equal(keyctl.search(ring, 'user', desc), undefined);
  });

  it('errors carry the errno name, number, operation and the stable code', () => {
    const id = keyctl.addKey('user', uniq('errors'), Buffer.from('e'), ring);
    // Instantiating needs an assumed authority (security/keys/keyctl.c): none is held here.
    let err: unknown;
    try {
      keyctl.instantiate(id, Buffer.from('x'));
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof KeyctlError);
    assert.equal(err.errnoName, 'EPERM');
    assert.equal(err.errno, 1);
    assert.equal(err.code, 'NSIDMAP_EKEYRING');
    assert.match(err.message, new RegExp(`^instantiate\\(${id}\\): EPERM`));
    assert.equal(errnoOf(() => keyctl.negate(id, 1)), 'EPERM');
    // Assuming needs an auth key for the target in our keyrings; there is none (no request runs).
    assert.equal(errnoOf(() => keyctl.assumeAuthority(id)), 'ENOKEY');
    assert.equal(errnoOf(() => keyctl.addKey('user', 'a\0b', null, ring)), 'EINVAL');
    assert.equal(errnoOf(() => keyctl.addKey('no_such_type', uniq('t'), null, ring)), 'ENODEV');
  });

  it('finds no requester pid in /proc/keys when no request is being served', () => {
    assert.equal(keyctl.findRequesterPid(readFileSync('/proc/keys', 'utf8'), ring), undefined);
  });
});

function requestKeyUnavailable(): string | undefined {
  if (SKIP) return SKIP;
  if (process.getuid?.() !== 0) return 'needs root to install a request-key rule';
  if (!existsSync('/sbin/request-key')) return '/sbin/request-key is not installed';
  try {
    accessSync('/etc/request-key.d', constants.W_OK);
  } catch {
    return '/etc/request-key.d is not writable';
  }
  return undefined;
}

/** The helper's directory (script, reports, stderr). */
let dir = '';

/** Remove the rule and the helper whatever happens; after() does not run if the process is killed. */
function removeRule(): void {
  rmSync(RULE, { force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
}

function removeRuleAndDie(signal: NodeJS.Signals): void {
  removeRule();
  process.kill(process.pid, signal);
}

describe('instantiate, negate, reject and authority through a real request-key upcall', { skip: requestKeyUnavailable() }, () => {

  before(() => {
    process.on('exit', removeRule);
    process.once('SIGINT', removeRuleAndDie);
    process.once('SIGTERM', removeRuleAndDie);
    dir = mkdtempSync(join(tmpdir(), 'nsidmap-keyctl-test-'));
    // request-key runs the helper with PATH=/sbin:/bin:/usr/sbin:/usr/bin and cwd /: absolute paths only.
    const script = join(dir, 'helper.sh');
    writeFileSync(script, `#!/bin/sh\ncd '${ROOT}' || exit 1\nexec '${process.execPath}' --import tsx '${HELPER}' "$@" 2>>'${dir}/helper.err'\n`);
    chmodSync(script, 0o755);
    writeFileSync(RULE, `create user ${PREFIX}:rk:* * ${script} %k %d %c\n`);
    if (!ring) ring = keyctl.joinSessionKeyring(`${PREFIX}:session`);
  });

  // Each request blocks the thread; yield to the event loop between tests so that a SIGINT or
  // SIGTERM is handled (rule removed, process ended) instead of waiting for the whole suite.
  beforeEach(() => new Promise<void>((r) => setImmediate(r)));

  after(() => {
    removeRule();
    process.off('exit', removeRule);
    process.off('SIGINT', removeRuleAndDie);
    process.off('SIGTERM', removeRuleAndDie);
  });

  function request(steps: string): { serial?: number; errno?: string; report?: HelperReport; desc: string } {
    const desc = uniq('rk');
    const reportPath = join(dir, `report-${seq}.json`);
    let serial: number | undefined;
    let errno: string | undefined;
    try {
      serial = keyctl.requestKey('user', desc, `${reportPath} ${steps}`, ring);
    } catch (e) {
      if (!(e instanceof KeyctlError)) throw e;
      errno = e.errnoName;
    }
    const report = existsSync(reportPath) ? (JSON.parse(readFileSync(reportPath, 'utf8')) as HelperReport) : undefined;
    return { serial, errno, report, desc };
  }

  const helperErrors = (): string => (existsSync(join(dir, 'helper.err')) ? readFileSync(join(dir, 'helper.err'), 'utf8') : '');

  it('the helper instantiates; the requester reads the payload', () => {
    const r = request('instantiate=hello');
    assert.ok(r.report, `helper did not run: ${helperErrors()}`);
    assert.equal(r.report.error, undefined);
    assert.deepEqual(r.report.steps, ['ok']);
    assert.ok(r.serial !== undefined, r.errno);
    assert.equal(keyctl.read(r.serial).toString(), 'hello');
    assert.equal(keyctl.parseDescribe(r.report.targetDescribe ?? '')?.description, r.desc);
  });

  it('the helper holds the authority: .request_key_auth describes the target serial in hex', () => {
    const r = request('instantiate=x');
    assert.ok(r.report && r.serial !== undefined, helperErrors());
    // request-key passes the authority on to the program it runs; assuming it again is harmless.
    const before = keyctl.parseDescribe(r.report.authBefore ?? '');
    assert.equal(before?.type, '.request_key_auth');
    assert.equal(before?.description, r.serial.toString(16));
    assert.equal(r.report.authDescribe, r.report.authBefore);
    assert.equal(typeof r.report.authSerial, 'number');
  });

  it('the helper finds the requesting pid on the auth key line of /proc/keys', () => {
    const r = request('instantiate=x');
    assert.ok(r.report, helperErrors());
    const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]?.split(/\s+/) ?? [];
    // The pid is numbered in the init pid namespace: comparable with ours only when we live there.
    if (nspid.length <= 1) assert.equal(r.report.requesterPid, process.pid);
    else assert.ok(Number.isInteger(r.report.requesterPid));
    const line = keyctl.parseProcKeysLine(r.report.authLine ?? '');
    assert.equal(line?.type, '.request_');
    assert.equal(line?.serial, r.report.authSerial);
    assert.match(line?.summary ?? '', new RegExp(`^key:${r.serial?.toString(16)} pid:${r.report.requesterPid} ci:\\d+$`));
  });

  it('setTimeout works before instantiation while the authority is held', () => {
    const r = request('timeout=600,instantiate=t');
    assert.deepEqual(r.report?.steps, ['ok', 'ok'], helperErrors());
    assert.ok(r.serial !== undefined);
    assert.match(procKeysLine(r.serial)?.expiry ?? '', /^(9|10)m$/);
  });

  it('negate: the request fails with ENOKEY, and the negative key answers the next one', () => {
    const r = request('negate=30');
    assert.deepEqual(r.report?.steps, ['ok'], helperErrors());
    assert.equal(r.errno, 'ENOKEY');
    const again = (() => {
      try {
        return keyctl.requestKey('user', r.desc, `${join(dir, 'never.json')} instantiate=late`, ring);
      } catch (e) {
        return e instanceof KeyctlError ? e.errnoName : String(e);
      }
    })();
    assert.equal(again, 'ENOKEY');
    assert.equal(existsSync(join(dir, 'never.json')), false, 'the helper ran again despite the negative key');
  });

  it('reject: the request fails with the chosen errno', () => {
    const r = request('reject=30/ECONNREFUSED');
    assert.deepEqual(r.report?.steps, ['ok'], helperErrors());
    assert.equal(r.errno, 'ECONNREFUSED');
  });

  it('a helper that answers nothing leaves the kernel to negate the key', () => {
    const r = request('none');
    assert.deepEqual(r.report?.steps, ['ok'], helperErrors());
    assert.equal(r.errno, 'ENOKEY');
  });

  it('the authority ends with the first answer; afterwards the helper is no longer a possessor', () => {
    const r = request('instantiate=first,instantiate=second,timeout=600');
    assert.ok(r.serial !== undefined, helperErrors());
    // The auth key is revoked once the key is instantiated (security/keys/request_key_auth.c),
    // so a second answer is refused; and without possession the key's user bits (view only)
    // refuse setattr: set the timeout BEFORE instantiating, as cifs.idmap does (PROTOCOLS.md §1).
    assert.deepEqual(r.report?.steps, ['ok', 'EPERM', 'EACCES'], helperErrors());
    assert.equal(keyctl.read(r.serial).toString(), 'first');
  });
});
