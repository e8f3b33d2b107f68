import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeUevent, isNetDeviceChange, isNfsClientAdd, parseUevent, UEVENT_MAX, type Uevent } from '../../src/responders/uevent/codec.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

/** The nfs_client KOBJ_ADD as fs/nfs/sysfs.c makes it. */
const NFS_CLIENT_ADD = 'add@/fs/nfs/net/nfs_client\0ACTION=add\0DEVPATH=/fs/nfs/net/nfs_client\0SUBSYSTEM=nfs\0SEQNUM=4711\0';

function parsed(s: string | Buffer): Uevent {
  const r = parseUevent(typeof s === 'string' ? bytes(s) : s);
  assert.ok(r.ok, r.ok ? '' : r.reason);
  return r.event;
}

describe('parseUevent accepts', () => {
  it('the nfs_client KOBJ_ADD', () => {
    const e = parsed(NFS_CLIENT_ADD);
    assert.equal(e.action, 'add');
    assert.equal(e.devpath, '/fs/nfs/net/nfs_client');
    assert.deepEqual(Object.fromEntries(e.env), { ACTION: 'add', DEVPATH: '/fs/nfs/net/nfs_client', SUBSYSTEM: 'nfs', SEQNUM: '4711' });
  });

  const cases: [string, string, Partial<{ action: string; devpath: string; vars: number }>][] = [
    ['a message without its final NUL', 'remove@/devices/virtual/net/veth0\0ACTION=remove\0SUBSYSTEM=net', { action: 'remove', vars: 2 }],
    ['a header alone', 'change@/devices/virtual/mem/null\0', { action: 'change', vars: 0 }],
    ['an empty value', 'add@/a\0DEVNAME=\0', { vars: 1 }],
    ['a value holding "="', 'add@/a\0X=a=b\0', { vars: 1 }],
    ['a value holding "@"', 'add@/a\0X=u@h\0', { vars: 1 }],
    ['a devpath holding "@"', 'add@/a@b\0', { devpath: '/a@b' }],
    ['a synthetic uevent from a write to a uevent file', 'add@/devices/virtual/net/lo\0ACTION=add\0DEVPATH=/devices/virtual/net/lo\0SUBSYSTEM=net\0SYNTH_UUID=0\0INTERFACE=lo\0IFINDEX=1\0SEQNUM=835\0', { vars: 7 }],
  ];
  for (const [name, msg, want] of cases) {
    it(name, () => {
      const e = parsed(msg);
      if (want.action !== undefined) assert.equal(e.action, want.action);
      if (want.devpath !== undefined) assert.equal(e.devpath, want.devpath);
      if (want.vars !== undefined) assert.equal(e.env.size, want.vars);
    });
  }

  it('a view into a larger buffer (as recv fills one)', () => {
    const big = Buffer.concat([bytes('xxxx'), bytes(NFS_CLIENT_ADD), bytes('yyyy')]);
    assert.equal(parsed(big.subarray(4, 4 + NFS_CLIENT_ADD.length)).devpath, '/fs/nfs/net/nfs_client');
  });

  it('what encodeUevent builds', () => {
    assert.deepEqual(encodeUevent('add', '/fs/nfs/net/nfs_client', { ACTION: 'add', DEVPATH: '/fs/nfs/net/nfs_client', SUBSYSTEM: 'nfs', SEQNUM: '4711' }), bytes(NFS_CLIENT_ADD));
  });
});

describe('parseUevent refuses', () => {
  const cases: [string, string | Buffer, RegExp][] = [
    ['an empty message', '', /empty/],
    ['a message longer than a uevent can be', Buffer.alloc(UEVENT_MAX + 1, 0x41), /more than a uevent/],
    ['a header without "@"', 'add/devices\0', /no "@"/],
    ['an empty header', '\0ACTION=add\0', /no header/],
    ['an upper-case action', 'ADD@/a\0', /action/],
    ['an empty action', '@/a\0', /action/],
    ['a relative devpath', 'add@devices/x\0', /not absolute/],
    ['a udev re-broadcast', 'libudev\0\xfe\xed\xca\xfe', /udev/],
    ['a variable without "="', 'add@/a\0JUNK\0', /KEY=VALUE/],
    ['a lower-case key', 'add@/a\0action=add\0', /KEY=VALUE/],
    ['an empty key', 'add@/a\0=x\0', /KEY=VALUE/],
    ['an empty field in the middle', 'add@/a\0ACTION=add\0\0SUBSYSTEM=nfs\0', /KEY=VALUE/],
    ['a variable twice', 'add@/a\0X=1\0X=2\0', /twice/],
    ['ACTION unlike the header', 'add@/a\0ACTION=remove\0', /ACTION differs/],
    ['DEVPATH unlike the header', 'add@/a\0DEVPATH=/b\0', /DEVPATH differs/],
    ['more variables than the kernel sends', `add@/a\0${Array.from({ length: 65 }, (_, i) => `V${i}=x\0`).join('')}`, /more than the kernel/],
  ];
  for (const [name, msg, reason] of cases) {
    it(name, () => {
      const r = parseUevent(typeof msg === 'string' ? Buffer.from(msg, 'latin1') : msg);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.reason, reason);
    });
  }
});

describe('uevent predicates', () => {
  const cases: [string, string, boolean, boolean][] = [
    ['the nfs_client add', NFS_CLIENT_ADD, true, false],
    ['the nfs_client remove', 'remove@/fs/nfs/net/nfs_client\0ACTION=remove\0SUBSYSTEM=nfs\0', false, false],
    ['another nfs object', 'add@/fs/nfs/net\0ACTION=add\0SUBSYSTEM=nfs\0', false, false],
    ['an nfs_client of another subsystem', 'add@/x/nfs_client\0ACTION=add\0SUBSYSTEM=block\0', false, false],
    ['a veth leaving the namespace', 'remove@/devices/virtual/net/veth1a\0ACTION=remove\0SUBSYSTEM=net\0', false, true],
    ['a device moved', 'move@/devices/virtual/net/eth1\0ACTION=move\0SUBSYSTEM=net\0', false, true],
    ['a net device change', 'change@/devices/virtual/net/lo\0ACTION=change\0SUBSYSTEM=net\0', false, false],
  ];
  for (const [name, msg, nfs, net] of cases) {
    it(name, () => {
      const e = parsed(msg);
      assert.equal(isNfsClientAdd(e), nfs, 'isNfsClientAdd');
      assert.equal(isNetDeviceChange(e), net, 'isNetDeviceChange');
    });
  }
});
