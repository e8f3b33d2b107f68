/**
 * The test doubles of the kernel (test/sim/) are only worth what they refuse: each check the
 * kernel makes on a reply, with the kernel's errno, tried here one by one. The captures prove
 * they accept what the real kernel accepted (test/integration/{pipefs,nfsd}.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { kernelParseReply, kernelQuote, qwordGet, SimNfsd } from '../sim/kernel-nfsd.js';
import { SimPipefs } from '../sim/kernel-pipefs.js';

describe('simulated rpc_pipefs: idmap_pipe_downcall checks', () => {
  const sim = new SimPipefs('/nonexistent', { endian: 'LE' });
  const n2i = sim.message({ type: 'user', conv: 'name-to-id', name: 'alice@example.com' });
  const i2n = sim.message({ type: 'group', conv: 'id-to-name', id: 50 });
  const reply = (base: Buffer, f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(base);
    b[136] = 0x08;
    f(b);
    return b;
  };
  const withName = (b: Buffer, name: string) => {
    b.fill(0, 2, 130);
    Buffer.from(name).copy(b, 2);
  };

  it('accepts a well-formed NAMETOID and IDTONAME reply', () => {
    assert.deepEqual(sim.downcall(n2i, reply(n2i, (b) => b.writeUInt32LE(1001, 132))), { kind: 'instantiated', value: 1001, payload: Buffer.from('1001\0') });
    const r = sim.downcall(i2n, reply(i2n, (b) => withName(b, 'staff@example.com')));
    assert.equal(r.kind === 'instantiated' && r.value, 'staff@example.com');
  });

  const rows: [string, Buffer, Buffer, string, boolean][] = [
    ['139 bytes', n2i, reply(n2i, () => {}).subarray(0, 139), 'ENOSPC', false],
    ['141 bytes', n2i, Buffer.concat([reply(n2i, () => {}), Buffer.alloc(1)]), 'ENOSPC', false],
    ['no SUCCESS bit', n2i, reply(n2i, (b) => (b[136] = 0x04)), 'ENOKEY', true],
    ['an empty name', i2n, reply(i2n, () => {}), 'EINVAL', false],
    ['a 128-byte name', i2n, reply(i2n, (b) => b.fill(0x61, 2, 130)), 'EINVAL', false],
    ['type not echoed', n2i, reply(n2i, (b) => (b[0] = 1)), 'ENOKEY', false],
    ['conv not echoed', i2n, reply(i2n, (b) => ((b[1] = 1), withName(b, 'x'))), 'ENOKEY', false],
    ['NAMETOID name not echoed', n2i, reply(n2i, (b) => withName(b, 'alice@example.co')), 'ENOKEY', false],
    ['IDTONAME id not echoed', i2n, reply(i2n, (b) => (withName(b, 'x@y'), b.writeUInt32LE(51, 132))), 'ENOKEY', false],
  ];
  for (const [what, up, rep, errno, requested] of rows) {
    it(`${what} → negated with ${errno}${requested ? ' (a failure reply)' : ''}`, () => {
      const r = sim.downcall(up, rep);
      assert.equal(r.kind, 'negated');
      if (r.kind === 'negated') assert.deepEqual([r.errno, r.requested], [errno, requested]);
    });
  }
});

describe('simulated nfsd cache: idtoname_parse / nametoid_parse', () => {
  const ok = (cache: 'idtoname' | 'nametoid', line: string) => {
    const p = kernelParseReply(cache, Buffer.from(line, 'latin1'));
    assert.ok(p.ok, `${line}: ${p.ok ? '' : p.what}`);
    return p;
  };
  const refused = (cache: 'idtoname' | 'nametoid', line: string, errno: string) => {
    const p = kernelParseReply(cache, Buffer.from(line, 'latin1'));
    assert.ok(!p.ok, `${JSON.stringify(line)} should be refused`);
    if (!p.ok) assert.equal(p.errno, errno, p.what);
  };

  it('reads positive and negative replies of both caches', () => {
    assert.deepEqual(ok('idtoname', '* user 5 100 a@b\n').result, { kind: 'positive', value: 'a@b', expiry: 100 });
    assert.deepEqual(ok('idtoname', '* user 5 100\n').result, { kind: 'negative', expiry: 100 });
    assert.deepEqual(ok('nametoid', '* group a@b 100 7\n').result, { kind: 'positive', value: 7, expiry: 100 });
    assert.deepEqual(ok('nametoid', '* group a@b 100\n').result, { kind: 'negative', expiry: 100 });
  });

  it('refuses what the kernel refuses, with its errno', () => {
    refused('idtoname', '* user 5 100 a@b', 'EINVAL'); // no newline
    refused('idtoname', `${'a'.repeat(128)} user 5 100 x\n`, 'EINVAL');
    refused('idtoname', '* user x 100 a@b\n', 'EINVAL'); // id without digits
    refused('idtoname', '* user 5\n', 'ENOENT'); // no expiry
    refused('idtoname', '* user 5 soon a@b\n', 'EINVAL');
    refused('idtoname', `* user 5 100 ${'n'.repeat(128)}\n`, 'EINVAL');
    refused('nametoid', '* user  \n', 'EINVAL'); // empty name
    refused('nametoid', '* user a@b 100 12abc\n', 'EINVAL');
    refused('nametoid', '* user a@b 100 08\n', 'EINVAL'); // get_int is base 0: 08 is bad octal
  });

  it('parses quoting exactly as qword_get: \\ooo, \\x, a literal stray backslash', () => {
    const z = (s: string) => Buffer.concat([Buffer.from(s, 'latin1'), Buffer.from([0])]);
    assert.equal(qwordGet(z('a\\040b rest'), 0, 4096).bytes.toString(), 'a b');
    assert.equal(qwordGet(z('\\x4142 rest'), 0, 4096).bytes.toString(), 'AB');
    assert.equal(qwordGet(z('a\\9b'), 0, 4096).bytes.toString(), 'a\\9b');
    assert.equal(qwordGet(z('a\\400'), 0, 4096).bytes.toString(), 'a\\400', 'first octal digit above 3: literal');
    assert.equal(qwordGet(z('\\x41zz'), 0, 4096).len, -1, 'hex stops at a non-hex pair, which is not a separator');
    assert.equal(kernelQuote(Buffer.from('a b\t\n\\')).toString(), 'a\\040b\\011\\012\\134');
  });

  it('get_int reads 4294967294 through (int) back to the same u32; decimal ids of every size survive', () => {
    assert.deepEqual(ok('nametoid', '* user a@b 100 4294967294\n').result, { kind: 'positive', value: 4294967294, expiry: 100 });
    assert.deepEqual(ok('nametoid', '* user a@b 100 2147483648\n').result, { kind: 'positive', value: 2147483648, expiry: 100 });
  });

  it('knows the canonical form: a raw TAB or a \\x field is accepted by the kernel but not canonical', () => {
    const tab = ok('idtoname', '* user 5 100 a\tb@c\n');
    assert.notEqual(tab.canonical.toString(), '* user 5 100 a\tb@c\n');
    const hex = ok('idtoname', '\\x2a user 5 100 a@c\n');
    assert.equal(hex.canonical.toString(), '* user 5 100 a@c\n');
    assert.equal(ok('idtoname', '* users 5 100 a@c\n').canonical.toString(), '* group 5 100 a@c\n', 'anything but "user" is a group to the kernel');
  });

  const work = mkdtempSync(join(tmpdir(), 'nsidmap-ksim-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  it('counts what it accepts but cannot use: a past expiry, a crossed key, a non-canonical line', async () => {
    let ms = 1_800_000_000_000;
    const sim = await new SimNfsd(join(work, 'a'), { now: () => ms }).init();
    const ch = await sim.openChannel(join(sim.procNetRpc, 'nfs4.idtoname', 'channel'), 'rw');
    const pending = sim.request('idtoname', '*', 'user', 5);
    assert.equal((await ch.read())?.toString(), '* user 5\n');
    await ch.write(Buffer.from('* user 5 1799999999 a@b\n'));
    assert.equal(sim.counters.expired, 1);
    await ch.write(Buffer.from('* user 6 1800000600 a@b\n'));
    assert.equal(sim.counters.mismatched, 1);
    await ch.write(Buffer.from('* user 5 1800000600 a\\x@b\n'));
    assert.equal(sim.counters.nonCanonical, 1);
    assert.deepEqual(await pending, { kind: 'positive', value: 'a\\x@b', expiry: 1800000600 });
    assert.equal(sim.clean(), false);
    await assert.rejects(ch.write(Buffer.from('* user 5 1800000600 a@b')), /EINVAL/);
    await ch.close();
    ms += 31_000;
    assert.equal(sim.hasListener('idtoname'), false);
  });

  it('flush takes one number at offset 0, at most 19 bytes', async () => {
    const sim = await new SimNfsd(join(work, 'b')).init();
    const flushPath = join(sim.procNetRpc, 'nfs4.nametoid', 'flush');
    const f = await sim.openChannel(flushPath, 'w');
    await f.write(Buffer.from('1800000000\n'));
    await assert.rejects(f.write(Buffer.from('1\n')), /EINVAL/, 'second write: not at offset 0');
    await assert.rejects((await sim.openChannel(flushPath, 'w')).write(Buffer.from('soon\n')), /EINVAL/);
    await assert.rejects((await sim.openChannel(flushPath, 'w')).write(Buffer.from('1'.repeat(20))), /EINVAL/);
    assert.deepEqual(sim.flushes, [{ cache: 'nametoid', text: '1800000000\n' }]);
  });
});
