/**
 * `idmapctl keys list | clear | revoke` against real kernel keyrings.
 *
 * The test cannot make keyrings called `.id_resolver` or `.cifs_idmap` (a leading dot is the
 * kernel's), so it joins a private anonymous session keyring, makes keyrings of its own in it with
 * keyctl(1), fills them with `user` keys carrying the real descriptions and payload formats, and
 * points idmapctl at them with NSIDMAP_KEYRING_NAMES. idmapctl runs as a child process and
 * inherits the session keyring, so it finds them in /proc/keys as it would find the kernel's.
 * Nothing outside this session is touched.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { endianness } from 'node:os';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import * as keyctl from '../../src/responders/keyring/keyctl.js';
import { KEY_SPEC } from '../../src/responders/keyring/keyctl.js';
import { cli, STACK } from './harness.js';

function unavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  try {
    keyctl.getKeyringId(KEY_SPEC.SESSION);
  } catch (e) {
    return `the kernel refuses keyrings here: ${String(e)}`;
  }
  try {
    execFileSync('keyctl', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'keyctl(1) is not installed (apt-get install keyutils)';
  }
  return undefined;
}
const SKIP = unavailable();

const spawnOk = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const kc = (args: string[], input?: Buffer): string => execFileSync('keyctl', args, { input, encoding: 'utf8' }).trim();

let session = 0;
let seq = 0;

/** A pair of fresh, empty keyrings standing in for .id_resolver and .cifs_idmap. */
interface Rings {
  readonly nfs: { name: string; serial: number };
  readonly cifs: { name: string; serial: number };
  readonly env: NodeJS.ProcessEnv;
}

function freshRings(): Rings {
  const n = ++seq;
  const mk = (proto: string) => {
    const name = `nsidmap-keys-test-${process.pid}-${n}-${proto}`;
    return { name, serial: Number(kc(['newring', name, String(session)])) };
  };
  const nfs = mk('nfs');
  const cifs = mk('cifs');
  return { nfs, cifs, env: { NSIDMAP_KEYRING_NAMES: `nfs=${nfs.name},cifs=${cifs.name}` } };
}

/** keyctl padd: a `user` key with exactly these payload bytes; its serial. */
function addKey(ring: number, description: string, payload: Buffer): number {
  return Number(kc(['padd', 'user', description, String(ring)], payload));
}

const idPayload = (id: number) => Buffer.from(`${id}\0`, 'latin1');
function u32(id: number): Buffer {
  const b = Buffer.alloc(4);
  if (endianness() === 'LE') b.writeUInt32LE(id);
  else b.writeUInt32BE(id);
  return b;
}
/** S-1-5-21-1-2-3-1001 as struct cifs_sid (docs/PROTOCOLS.md §5), 68 bytes. */
const SID_1001 = Buffer.concat([Buffer.from('01 05 00 00 00 00 00 05 15 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 e9 03 00 00'.replaceAll(' ', ''), 'hex'), Buffer.alloc(40)]);

/** The serials of a keyring in the kernel's order, as keyctl(1) reads them. */
const rlist = (ring: number): number[] => kc(['rlist', String(ring)]).split(/\s+/).filter(Boolean).map(Number);

/** Whether a key still serves answers: listed in /proc/keys and neither invalidated nor revoked. */
function live(serial: number): boolean {
  const hex = serial.toString(16).padStart(8, '0');
  const line = readFileSync('/proc/keys', 'utf8').split('\n').find((l) => l.startsWith(`${hex} `));
  return line !== undefined && !/^\S+ \S*[RDi]/.test(line);
}

describe('idmapctl keys (real kernel keyrings, private session)', { skip: SKIP }, () => {
  before(() => {
    session = keyctl.joinSessionKeyring(); // anonymous, this process only; children inherit it
  });
  after(() => {
    if (session) keyctl.clear(session);
  });

  describe('list: nfsidmap -l format, byte for byte', () => {
    it('prints "No .id_resolver keys found." and exits 0 when the keyring does not exist', async () => {
      const r = await cli(['keys', 'list', '--type', 'nfs'], { NSIDMAP_KEYRING_NAMES: `nfs=nsidmap-keys-test-${process.pid}-absent` });
      assert.equal(r.stdout, 'No nsidmap-keys-test-' + process.pid + '-absent keys found.\n');
      assert.equal(r.code, 0);
      const real = await cli(['keys', 'list', '--type', 'nfs'], { NSIDMAP_KEYRING_NAMES: '' });
      // this machine has no NFS client: the real keyring does not exist either
      if (!readFileSync('/proc/keys', 'utf8').includes(' .id_resolver')) assert.equal(real.stdout, 'No .id_resolver keys found.\n');
      assert.equal(real.code, 0);
    });

    it('prints the no-keys line for an empty keyring', async () => {
      const rings = freshRings();
      const r = await cli(['keys', 'list', '--type', 'nfs'], rings.env);
      assert.equal(r.stdout, `No ${rings.nfs.name} keys found.\n`);
      assert.equal(r.code, 0);
    });

    it('prints "1 … key found:" then the description indented by two spaces', async () => {
      const rings = freshRings();
      addKey(rings.nfs.serial, 'uid:alice@example.com', idPayload(1001));
      const r = await cli(['keys', 'list', '--type', 'nfs'], rings.env);
      assert.equal(r.stdout, `1 ${rings.nfs.name} key found:\n  uid:alice@example.com\n`);
      assert.equal(r.stderr, '');
    });

    it('prints "N … keys found:" then every description in the keyring\'s own order', async () => {
      const rings = freshRings();
      const keys = new Map<number, string>();
      const add = (d: string, p: Buffer) => keys.set(addKey(rings.nfs.serial, d, p), d);
      add('uid:alice@example.com', idPayload(1001));
      add('gid:staff@example.com', idPayload(50));
      add('user:1001', Buffer.from('alice@example.com'));
      add('group:50', Buffer.from('staff@example.com'));
      add('uid:name:with:colons@example.com', idPayload(1002));
      const expected = `5 ${rings.nfs.name} keys found:\n` + rlist(rings.nfs.serial).map((s) => `  ${keys.get(s)}\n`).join('');
      const r = await cli(['keys', 'list', '--type', 'nfs'], rings.env);
      assert.equal(r.stdout, expected);
      assert.equal(r.code, 0);
    });

    it('prints the same shape for the cifs keyring, and both with --type all (the default)', async () => {
      const rings = freshRings();
      addKey(rings.cifs.serial, 'os:S-1-5-21-1-2-3-1001', u32(1001));
      addKey(rings.nfs.serial, 'uid:alice@example.com', idPayload(1001));
      const cifs = await cli(['keys', 'list', '--type', 'cifs'], rings.env);
      assert.equal(cifs.stdout, `1 ${rings.cifs.name} key found:\n  os:S-1-5-21-1-2-3-1001\n`);
      const both = await cli(['keys', 'list'], rings.env);
      assert.equal(both.stdout, `1 ${rings.nfs.name} key found:\n  uid:alice@example.com\n1 ${rings.cifs.name} key found:\n  os:S-1-5-21-1-2-3-1001\n`);
    });

    it('refuses an unknown --type with a usage error', async () => {
      const r = await cli(['keys', 'list', '--type', 'smb']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^NSIDMAP_EUSAGE: --type: "smb" is not one of nfs, cifs, all\n$/);
    });
  });

  describe('list --json', () => {
    it('gives serial, type, description, the decoded value and the expiry of every key', async () => {
      const rings = freshRings();
      const alice = addKey(rings.nfs.serial, 'uid:alice@example.com', idPayload(1001));
      kc(['timeout', String(alice), '600']);
      const staff = addKey(rings.nfs.serial, 'gid:staff@example.com', idPayload(50));
      const u1001 = addKey(rings.nfs.serial, 'user:1001', Buffer.from('alice@example.com'));
      const g50 = addKey(rings.nfs.serial, 'group:50', Buffer.from('staff@example.com'));
      const os = addKey(rings.cifs.serial, 'os:S-1-5-21-1-2-3-1001', u32(1001));
      const gs = addKey(rings.cifs.serial, 'gs:S-1-5-21-1-2-3-513', u32(100));
      const oi = addKey(rings.cifs.serial, 'oi:1001', SID_1001);
      const gi = addKey(rings.cifs.serial, 'gi:1001', SID_1001.subarray(0, 28)); // the packed form cifsacl.c also takes
      const bad = addKey(rings.nfs.serial, 'uid:broken@example.com', Buffer.from('12x'));
      const r = await cli(['keys', 'list', '--json'], rings.env);
      assert.equal(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
      const by = new Map(rows.map((k) => [k['serial'] as number, k]));
      assert.equal(rows.length, 9);
      const expect: [number, string, string, number | string][] = [
        [alice, rings.nfs.name, 'name-to-uid', 1001],
        [staff, rings.nfs.name, 'name-to-gid', 50],
        [u1001, rings.nfs.name, 'uid-to-name', 'alice@example.com'],
        [g50, rings.nfs.name, 'gid-to-name', 'staff@example.com'],
        [os, rings.cifs.name, 'sid-to-uid', 1001],
        [gs, rings.cifs.name, 'sid-to-gid', 100],
        [oi, rings.cifs.name, 'uid-to-sid', 'S-1-5-21-1-2-3-1001'],
        [gi, rings.cifs.name, 'gid-to-sid', 'S-1-5-21-1-2-3-1001'],
      ];
      for (const [serial, ring, kind, value] of expect) {
        const k = by.get(serial);
        assert.ok(k, `key ${serial} listed`);
        assert.equal(k['keyring'], ring);
        assert.equal(k['type'], 'user');
        assert.equal(k['kind'], kind);
        assert.equal(k['value'], value);
        assert.equal(k['negative'], false);
      }
      assert.equal(by.get(alice)?.['description'], 'uid:alice@example.com');
      assert.equal(by.get(alice)?.['payload'], '3130303100');
      assert.match(String(by.get(alice)?.['expires']), /^(10m|9m)$/);
      assert.equal(by.get(staff)?.['expires'], 'perm');
      // a payload that is not in the key type's format: shown raw, value null, with the reason
      assert.equal(by.get(bad)?.['value'], null);
      assert.equal(by.get(bad)?.['payload'], Buffer.from('12x').toString('hex'));
      assert.match(String(by.get(bad)?.['error']), /id payload/);
    });

    it('gives [] when there is nothing', async () => {
      const rings = freshRings();
      const r = await cli(['keys', 'list', '--json'], rings.env);
      assert.deepEqual(JSON.parse(r.stdout), []);
    });
  });

  describe('clear', () => {
    it('empties only the keyring --type names, then list finds nothing there', async () => {
      const rings = freshRings();
      addKey(rings.nfs.serial, 'uid:alice@example.com', idPayload(1001));
      addKey(rings.nfs.serial, 'gid:staff@example.com', idPayload(50));
      addKey(rings.cifs.serial, 'oi:1001', SID_1001);
      const r = await cli(['keys', 'clear', '--type', 'nfs'], rings.env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${rings.nfs.name}: 2 keys cleared\n`);
      assert.deepEqual(rlist(rings.nfs.serial), []);
      assert.equal(rlist(rings.cifs.serial).length, 1);
      const l = await cli(['keys', 'list', '--type', 'nfs'], rings.env);
      assert.equal(l.stdout, `No ${rings.nfs.name} keys found.\n`);
    });

    it('clears both by default; an absent keyring is nothing to clear, not an error', async () => {
      const rings = freshRings();
      addKey(rings.cifs.serial, 'oi:1001', SID_1001);
      const r = await cli(['keys', 'clear', '--json'], { NSIDMAP_KEYRING_NAMES: `nfs=nsidmap-keys-test-${process.pid}-absent,cifs=${rings.cifs.name}` });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), [
        { keyring: `nsidmap-keys-test-${process.pid}-absent`, present: false, cleared: 0 },
        { keyring: rings.cifs.name, present: true, cleared: 1 },
      ]);
      assert.deepEqual(rlist(rings.cifs.serial), []);
    });
  });

  it('a forged /proc/keys line (another user\'s key description with a newline) is not taken for the keyring', { skip: spawnOk('setpriv', ['--version']) ? false : 'needs setpriv(1)' }, async () => {
    const rings = freshRings();
    const name = `nsidmap-keys-test-${process.pid}-forged`;
    // nobody makes a key of its own whose description holds a whole fake line naming `name`,
    // pointing at a keyring of nobody's, and lets others view it (so /proc/keys shows it to root)
    // (in a session of its own, so that it possesses the key and may set its permissions; linked
    // into its user keyring so that the key outlives that session)
    // (both made in the session first: if a step fails, they go with it)
    const script = 'ring=$(keyctl newring decoy @s) && k=$(keyctl add user "$(printf "x\\n%08x I------     1 perm 3f030000     0     0 keyring   %s: empty" "$ring" "$1")" d @s) && keyctl setperm "$k" 0x3f3f0001 && keyctl link "$k" @u && keyctl link "$ring" @u && echo "$ring $k"';
    const out = execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'keyctl', 'session', '-', 'sh', '-c', script, 'sh', name], { encoding: 'utf8' }).trim().split('\n').at(-1)!;
    const [decoy, forger] = out.split(' ').map(Number);
    try {
      assert.ok(readFileSync('/proc/keys', 'utf8').split('\n').some((l) => l.startsWith(`${decoy!.toString(16).padStart(8, '0')} I------`) && l.includes(name)), 'the forged line is in /proc/keys');
      const r = await cli(['keys', 'clear', '--json'], { NSIDMAP_KEYRING_NAMES: `nfs=${name},cifs=${rings.cifs.name}` });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout)[0], { keyring: name, present: false, cleared: 0 });
    } finally {
      execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'keyctl', 'session', '-', 'sh', '-c', `keyctl unlink ${forger} @u && keyctl unlink ${decoy} @u`], { stdio: 'ignore' });
    }
  });

  describe('revoke', () => {
    const cases: { name: string; args: string[]; gone: string[] }[] = [
      { name: '--user NAME invalidates uid:NAME (nfsidmap -u)', args: ['--user', 'alice@example.com'], gone: ['uid:alice@example.com'] },
      { name: '--group NAME invalidates gid:NAME (nfsidmap -g)', args: ['--group', 'staff@example.com'], gone: ['gid:staff@example.com'] },
      { name: '--sid SID invalidates both os:SID and gs:SID, given in any case', args: ['--sid', 's-1-5-21-1-2-3-1001'], gone: ['os:S-1-5-21-1-2-3-1001', 'gs:S-1-5-21-1-2-3-1001'] },
      { name: 'DESCRIPTION invalidates that key in the keyring its prefix names (nfsidmap -r)', args: ['user:1001'], gone: ['user:1001'] },
      { name: 'DESCRIPTION works for cifs keys too', args: ['oi:1001'], gone: ['oi:1001'] },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const rings = freshRings();
        const all = new Map<string, number>();
        const put = (ring: number, d: string, p: Buffer) => all.set(d, addKey(ring, d, p));
        put(rings.nfs.serial, 'uid:alice@example.com', idPayload(1001));
        put(rings.nfs.serial, 'gid:staff@example.com', idPayload(50));
        put(rings.nfs.serial, 'user:1001', Buffer.from('alice@example.com'));
        put(rings.cifs.serial, 'os:S-1-5-21-1-2-3-1001', u32(1001));
        put(rings.cifs.serial, 'gs:S-1-5-21-1-2-3-1001', u32(1001));
        put(rings.cifs.serial, 'oi:1001', SID_1001);
        const r = await cli(['keys', 'revoke', ...c.args], rings.env);
        assert.equal(r.code, 0, r.stderr);
        for (const d of c.gone) assert.match(r.stdout, new RegExp(`: ${d.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} invalidated \\(key ${all.get(d)}\\)\n`));
        assert.equal(r.stdout.split('\n').filter(Boolean).length, c.gone.length);
        for (const [d, serial] of all) assert.equal(live(serial), !c.gone.includes(d), `${d} ${c.gone.includes(d) ? 'gone' : 'kept'}`);
        const l = await cli(['keys', 'list', '--json'], rings.env);
        const listed = (JSON.parse(l.stdout) as { description: string }[]).map((k) => k.description).sort();
        assert.deepEqual(listed, [...all.keys()].filter((d) => !c.gone.includes(d)).sort());
      });
    }

    it('--json reports what was done', async () => {
      const rings = freshRings();
      const serial = addKey(rings.nfs.serial, 'uid:alice@example.com', idPayload(1001));
      const r = await cli(['keys', 'revoke', '--user', 'alice@example.com', '--json'], rings.env);
      assert.deepEqual(JSON.parse(r.stdout), [{ keyring: rings.nfs.name, serial, description: 'uid:alice@example.com', action: 'invalidated' }]);
    });

    it('says clearly that nothing matched, exits non-zero, and leaves the other keys', async () => {
      const rings = freshRings();
      const serial = addKey(rings.nfs.serial, 'uid:alice@example.com', idPayload(1001));
      const r = await cli(['keys', 'revoke', '--user', 'bob@example.com'], rings.env);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `NSIDMAP_ENOKEY: no key "uid:bob@example.com" in ${rings.nfs.name} (see idmapctl keys list)\n`);
      assert.doesNotMatch(r.stderr, STACK);
      assert.ok(live(serial));
    });

    it('says so when the keyring itself does not exist', async () => {
      const r = await cli(['keys', 'revoke', '--user', 'bob@example.com'], { NSIDMAP_KEYRING_NAMES: `nfs=nsidmap-keys-test-${process.pid}-absent` });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^NSIDMAP_ENOKEY: no key "uid:bob@example.com" in nsidmap-keys-test-\d+-absent; no nsidmap-keys-test-\d+-absent keyring exists on this host/);
    });

    const usage: [string, string[], RegExp][] = [
      ['nothing to revoke', [], /give exactly one of DESCRIPTION, --user, --group, --sid/],
      ['two selectors', ['--user', 'a', '--group', 'b'], /got --user, --group/],
      ['a malformed SID', ['--sid', 'S-1-x'], /--sid: "S-1-x" is not a SID/],
    ];
    for (const [what, args, re] of usage) {
      it(`refuses ${what} with a usage error`, async () => {
        const r = await cli(['keys', 'revoke', ...args]);
        assert.equal(r.code, 2);
        assert.match(r.stderr, /^NSIDMAP_EUSAGE: /);
        assert.match(r.stderr, re);
      });
    }

    it('refuses a malformed NSIDMAP_KEYRING_NAMES', async () => {
      const r = await cli(['keys', 'list'], { NSIDMAP_KEYRING_NAMES: 'smb=x' });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^NSIDMAP_EUSAGE: NSIDMAP_KEYRING_NAMES: "smb=x" is not nfs=NAME or cifs=NAME\n$/);
    });
  });
});
