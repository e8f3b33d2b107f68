import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { statFlags } from '../../src/ns/discovery.js';
import { isRpcPipefs, mountsBySuperblock, parseMountInfo, parseMountInfoLine, unescapeMountField, type MountInfo } from '../../src/ns/mountinfo.js';

describe('unescapeMountField', () => {
  const cases: [string, string, string][] = [
    ['plain text stays', '/var/lib/nfs/rpc_pipefs', '/var/lib/nfs/rpc_pipefs'],
    ['a space', '/mnt/my\\040dir', '/mnt/my dir'],
    ['a tab and a newline', '/a\\011b\\012c', '/a\tb\nc'],
    ['a backslash', '/a\\134b', '/a\\b'],
    ['escapes side by side', '\\040\\040', '  '],
    ['multi-byte UTF-8 left as it is', '/données/é\\040x', '/données/é x'],
    ['escaped bytes of one UTF-8 character', '/\\303\\251', '/é'],
    ['a backslash before something else is kept', '/a\\zb', '/a\\zb'],
    ['an octal escape above \\377 is not one', '/a\\400', '/a\\400'],
  ];
  for (const [name, input, want] of cases) it(name, () => assert.equal(unescapeMountField(input), want));
});

describe('parseMountInfoLine', () => {
  it('reads every field of the proc(5) example', () => {
    assert.deepEqual(parseMountInfoLine('36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue'), {
      mountId: 36,
      parentId: 35,
      dev: '98:0',
      root: '/mnt1',
      mountPoint: '/mnt2',
      options: 'rw,noatime',
      optional: ['master:1'],
      fstype: 'ext3',
      source: '/dev/root',
      superOptions: 'rw,errors=continue',
    });
  });

  const ok: [string, string, Partial<MountInfo>][] = [
    ['no optional fields', '22 27 0:21 / /proc rw,relatime - proc proc rw', { optional: [], fstype: 'proc', mountPoint: '/proc' }],
    ['several optional fields', '1 0 0:1 / / rw shared:1 master:2 propagate_from:3 - ext4 /dev/sda1 rw', { optional: ['shared:1', 'master:2', 'propagate_from:3'] }],
    ['rpc_pipefs', '40 30 0:44 / /run/rpc_pipefs rw,relatime shared:20 - rpc_pipefs sunrpc rw', { fstype: 'rpc_pipefs', source: 'sunrpc', dev: '0:44' }],
    ['an escaped mount point', '41 30 0:45 / /tmp/a\\040b rw - tmpfs none rw', { mountPoint: '/tmp/a b' }],
    ['an escaped source', '42 30 0:46 / /x rw - tmpfs my\\040src rw', { source: 'my src' }],
    ['a bind mount of a subdirectory', '43 30 8:1 /var/lib/x /srv/x rw - ext4 /dev/sda1 rw', { root: '/var/lib/x', mountPoint: '/srv/x' }],
    ['a mount id beyond 32 bits', '4294967297 1 0:1 / /a rw - tmpfs t rw', { mountId: 4294967297 }],
  ];
  for (const [name, line, want] of ok) {
    it(`parses ${name}`, () => {
      const m = parseMountInfoLine(line);
      assert.ok(m, 'parsed');
      for (const [k, v] of Object.entries(want)) assert.deepEqual(m[k as keyof MountInfo], v, k);
    });
  }

  const bad: [string, string][] = [
    ['an empty line', ''],
    ['no separator', '36 35 98:0 /mnt1 /mnt2 rw,noatime ext3 /dev/root rw'],
    ['fields missing after the separator', '36 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root'],
    ['fields too many after the separator', '36 35 98:0 /mnt1 /mnt2 rw - ext3 /dev/root rw extra'],
    ['a separator where the options go', '36 35 98:0 /mnt1 /mnt2 - ext3 /dev/root rw'],
    ['a mount id that is not a number', 'x 35 98:0 / /a rw - ext3 /dev/root rw'],
    ['a device that is not major:minor', '36 35 98 / /a rw - ext3 /dev/root rw'],
    ['a relative mount point', '36 35 98:0 / a rw - ext3 /dev/root rw'],
    ['an empty fstype', '36 35 98:0 / /a rw -  /dev/root rw'],
    ['a line cut short', '36 35 98:0'],
  ];
  for (const [name, line] of bad) it(`refuses ${name}`, () => assert.equal(parseMountInfoLine(line), undefined));
});

describe('parseMountInfo and mountsBySuperblock', () => {
  const text = [
    '22 27 0:21 / /proc rw,relatime - proc proc rw',
    'garbage line',
    '40 22 0:44 / /run/rpc_pipefs rw,relatime - rpc_pipefs sunrpc rw',
    '41 22 0:44 / /var/lib/nfs/rpc_pipefs rw,relatime - rpc_pipefs sunrpc rw',
    '42 22 0:47 / /srv/other\\040pipefs rw,relatime - rpc_pipefs sunrpc rw',
    '43 22 0:48 / /tmp/fake rw - tmpfs nsidmap-fake rw',
    '',
  ].join('\n');

  it('skips malformed lines', () => assert.equal(parseMountInfo(text).length, 5));

  it('keeps one mount per superblock, the first', () => {
    assert.deepEqual(mountsBySuperblock(parseMountInfo(text), isRpcPipefs).map((m) => [m.dev, m.mountPoint]), [
      ['0:44', '/run/rpc_pipefs'],
      ['0:47', '/srv/other pipefs'],
    ]);
  });

  it('takes any filter (a tmpfs standing in for rpc_pipefs in tests)', () => {
    assert.deepEqual(mountsBySuperblock(parseMountInfo(text), (m) => m.source === 'nsidmap-fake').map((m) => m.mountPoint), ['/tmp/fake']);
  });
});

describe('statFlags', () => {
  const cases: [string, string, number | undefined][] = [
    ['a user task', '1079 (bash) S 1 1079 1079 0 -1 4194560 100 0 0 0', 4194560],
    ['a kernel thread', '2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0', 2129984],
    ['a comm with spaces and parentheses', '42 (a (b) c) R 1 42 42 0 -1 4194304 1 2 3', 4194304],
    ['no closing parenthesis', '42 (abc R 1 42 42 0 -1 4194304', undefined],
    ['too few fields', '42 (a) R 1 42', undefined],
  ];
  for (const [name, line, want] of cases) it(name, () => assert.equal(statFlags(line), want));
});
