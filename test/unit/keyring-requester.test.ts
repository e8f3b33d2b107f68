/**
 * The keyring requester, found only when needed: requesterPidFromProcKeys (the auth key's
 * /proc/keys line, read by the daemon) and buildLazyContext (the Context that reads it on first use).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { buildContext, buildLazyContext } from '../../src/ns/context.js';
import { requesterPidFromProcKeys } from '../../src/responders/keyring/requester.js';

const dir = mkdtempSync(join(tmpdir(), 'nsidmap-requester-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (text: string): string => {
  const p = join(dir, `keys-${++n}`);
  writeFileSync(p, text, 'latin1');
  return p;
};

const AUTH = 0x2c3c8502;
const TARGET = 0x21d8eb56;
// as security/keys/proc.c prints them (columns from this machine's kernel)
const line = (serial: number, type: string, rest: string) =>
  `${serial.toString(16).padStart(8, '0')} I--Q---     1 perm 1b010000     0     0 ${type.padEnd(9).slice(0, 9)} ${rest}\n`;
const authLine = (serial = AUTH, target = TARGET, pid = 22619) => line(serial, '.request_key_auth', `key:${target.toString(16)} pid:${pid} ci:0`);

describe('requesterPidFromProcKeys', () => {
  it('reads the pid on the auth key line', () => {
    const text = line(0x0036e9c7, 'keyring', '_ses: 1') + authLine() + line(0x3a0b2c1d, 'user', 'uid:alice@example.com: 5');
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(text)), 22619);
  });

  it('takes only the line whose serial column is the auth key: a fake line inside a description does not count', () => {
    // any user may put a newline and a line of their choice into a key description
    const fake = line(0x01000000, 'user', `x\n${line(0x01000001, '.request_key_auth', `key:${TARGET.toString(16)} pid:666 ci:0`).trimEnd()}: 3`);
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(fake + authLine())), 22619);
    // a fake line for another auth serial never matches ours
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(fake)), undefined);
  });

  it('names nobody when two lines carry the auth key\'s serial (a requester of its own key knows the serial and can forge one)', () => {
    const forged = line(0x01000000, 'user', `x\n${authLine(AUTH, TARGET, 666).trimEnd()}: 3`);
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(forged + authLine())), undefined);
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(authLine() + forged)), undefined);
  });

  it('wants the target key too: the auth key of another request names no pid for this one', () => {
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(authLine(AUTH, 0x12345678))), undefined);
  });

  it('undefined for no line, a line without a pid, a pid out of range', () => {
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file('')), undefined);
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(line(AUTH, '.request_key_auth', `key:${TARGET.toString(16)}`))), undefined);
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(authLine(AUTH, TARGET, 0))), undefined);
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(line(AUTH, '.request_key_auth', `key:${TARGET.toString(16)} pid:99999999999 ci:0`))), undefined);
  });

  it('finds the line far into a long file, after lines longer than its read buffer, and as the last line without a newline', () => {
    const filler = Array.from({ length: 5000 }, (_, i) => line(0x01000000 + i, 'user', `uid:user${i}@example.com: 5`)).join('');
    const long = line(0x00ffffff, 'user', `${'x'.repeat(100_000)}: 100000`);
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(long + filler + authLine() + filler)), 22619);
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(filler + authLine().trimEnd())), 22619);
    assert.equal(requesterPidFromProcKeys(AUTH, TARGET, file(long + filler)), undefined);
  });

  it('throws when /proc/keys cannot be read (the caller decides what that means)', () => {
    assert.throws(() => requesterPidFromProcKeys(AUTH, TARGET, join(dir, 'absent')), { code: 'ENOENT' });
  });
});

describe('buildLazyContext', () => {
  it('reads nothing until a requester member is read, then everything once', () => {
    let calls = 0;
    const ctx = buildLazyContext('keyring-nfs', () => (calls++, process.pid), { fs: 'nfs' });
    assert.equal(ctx.iface, 'keyring-nfs');
    assert.equal(ctx.fs, 'nfs');
    assert.equal(calls, 0);
    const eager = buildContext('keyring-nfs', process.pid, { fs: 'nfs' });
    assert.equal(ctx.pid, process.pid);
    assert.deepEqual(ctx.userns, eager.userns);
    assert.deepEqual(ctx.netns, eager.netns);
    assert.equal(ctx.cgroup, eager.cgroup);
    assert.deepEqual(ctx.container, eager.container);
    assert.equal(ctx.pidGone, undefined);
    assert.equal(calls, 1);
  });

  it('no pid: the host context, as buildContext gives it', () => {
    const ctx = buildLazyContext('keyring-cifs', () => undefined, { fs: 'cifs' });
    const host = buildContext('keyring-cifs', undefined, { fs: 'cifs' });
    assert.equal(ctx.pid, undefined);
    assert.deepEqual(ctx.userns, host.userns);
    assert.deepEqual(ctx.netns, host.netns);
  });

  it('a pid that has exited: pidGone, as buildContext says', () => {
    const ctx = buildLazyContext('keyring-nfs', () => 0x3ffffffe, { fs: 'nfs' });
    assert.equal(ctx.pidGone, true);
    assert.equal(ctx.pid, 0x3ffffffe);
    assert.equal(ctx.userns, undefined);
  });

  it('never throws: a fault finding the requester goes to onError and leaves it unknown', () => {
    const errors: unknown[] = [];
    const ctx = buildLazyContext('keyring-nfs', () => { throw Object.assign(new Error('EACCES: /proc/keys'), { code: 'EACCES' }); }, { fs: 'nfs' }, (e) => errors.push(e));
    assert.equal(ctx.container, undefined);
    assert.equal(ctx.pid, undefined);
    assert.equal(ctx.userns, undefined);
    assert.equal(errors.length, 1);
    assert.match((errors[0] as Error).message, /EACCES/);
  });
});
