/**
 * The rpc_pipefs idmap codec as a specification: the real kernel's upcalls decode to what it
 * asked, the replies it accepted are what encodeReply writes byte for byte, and every malformed
 * frame is a typed error (docs/PROTOCOLS.md §3, fs/nfs/nfs4idmap.c).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeUpcall,
  encodeFailure,
  encodeReply,
  encodeUpcall,
  IDMAP_MSG_SIZE,
  IM_STATUS,
  OFFSET,
  type DecodeErrorCode,
  type IdmapMsg,
} from '../../src/responders/pipefs/codec.js';
import { CAPTURED_PIPE } from '../fixtures/pipefs/captures.js';

const msg = (m: Partial<IdmapMsg> & Pick<IdmapMsg, 'type' | 'conv'>): IdmapMsg => ({ name: Buffer.alloc(0), id: 0, ...m });

describe('pipefs codec: the captured kernel exchanges', () => {
  for (const [i, c] of CAPTURED_PIPE.entries()) {
    const what = `#${i} type=${c.type} conv=${c.conv} name=${JSON.stringify(c.name)} id=${c.id}`;
    it(`decodes upcall ${what} as the kernel meant it`, () => {
      const d = decodeUpcall(c.raw, 'LE');
      assert.ok(d.ok, d.ok ? '' : d.error.reason);
      assert.equal(d.msg.type, c.type === 0 ? 'user' : 'group');
      assert.equal(d.msg.conv, c.conv === 0 ? 'id-to-name' : 'name-to-id');
      assert.equal(d.msg.name.toString('utf8'), c.name);
      assert.equal(d.msg.id, c.id);
      const kind = c.conv === 1 ? (c.type === 0 ? 'name-to-uid' : 'name-to-gid') : c.type === 0 ? 'uid-to-name' : 'gid-to-name';
      assert.deepEqual(d.request, c.conv === 1 ? { kind, name: c.name } : { kind, id: c.id });
    });
    it(`writes the reply the kernel accepted for ${what}, byte for byte`, () => {
      const d = decodeUpcall(c.raw, 'LE');
      assert.ok(d.ok);
      const value = c.conv === 1 ? c.replyId : c.replyName;
      const r = encodeReply(d.msg, value, 'LE');
      assert.ok(r.ok, r.ok ? '' : r.reason);
      assert.equal(r.bytes.toString('hex'), c.reply.toString('hex'));
    });
    it(`rebuilds upcall ${what} with encodeUpcall`, () => {
      const up = encodeUpcall({ type: c.type === 0 ? 'user' : 'group', conv: c.conv === 0 ? 'id-to-name' : 'name-to-id', name: c.name, id: c.id }, 'LE');
      assert.equal(up.toString('hex'), c.raw.toString('hex'));
    });
  }
});

describe('pipefs codec: decoding rejects what is not a kernel upcall, with a typed error', () => {
  const good = encodeUpcall({ type: 'user', conv: 'name-to-id', name: 'alice@example.com' }, 'LE');
  const mutate = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    f(b);
    return b;
  };
  const rows: { what: string; bytes: Buffer; code: DecodeErrorCode; framed: boolean }[] = [
    { what: 'an empty read', bytes: Buffer.alloc(0), code: 'size', framed: false },
    { what: '139 bytes', bytes: good.subarray(0, 139), code: 'size', framed: false },
    { what: '141 bytes', bytes: Buffer.concat([good, Buffer.alloc(1)]), code: 'size', framed: false },
    { what: 'im_type 2', bytes: mutate((b) => (b[OFFSET.type] = 2)), code: 'type', framed: false },
    { what: 'im_conv 7', bytes: mutate((b) => (b[OFFSET.conv] = 7)), code: 'conv', framed: false },
    { what: 'a name without NUL in 128 bytes', bytes: mutate((b) => b.fill(0x61, OFFSET.name, OFFSET.name + 128)), code: 'name-unterminated', framed: false },
    { what: 'an empty NAMETOID name', bytes: encodeUpcall({ type: 'group', conv: 'name-to-id', name: '' }), code: 'name-empty', framed: true },
    { what: 'a name that is not UTF-8', bytes: mutate((b) => (b[OFFSET.name] = 0xff)), code: 'name-invalid', framed: true },
    { what: 'a name with a control character', bytes: mutate((b) => (b[OFFSET.name + 1] = 0x07)), code: 'name-invalid', framed: true },
    { what: 'IDTONAME of (u32)-1', bytes: encodeUpcall({ type: 'user', conv: 'id-to-name', id: 0xffffffff }, 'LE'), code: 'id-invalid', framed: true },
  ];
  for (const r of rows) {
    it(`${r.what} → ${r.code}${r.framed ? ' (framed: answered as that message)' : ''}`, () => {
      const d = decodeUpcall(r.bytes, 'LE');
      assert.equal(d.ok, false);
      if (d.ok) return;
      assert.equal(d.error.code, r.code);
      assert.equal(d.msg !== undefined, r.framed);
      assert.ok(d.error.reason.length > 0 && !d.error.reason.includes('\n'));
    });
  }

  it('ignores the status byte and padding of an upcall (the kernel zeroes them; they carry nothing)', () => {
    const b = Buffer.from(good);
    b[OFFSET.status] = 0xff;
    b[130] = 0x55;
    b[139] = 0x55;
    assert.equal(decodeUpcall(b, 'LE').ok, true);
  });

  it('takes a NAMETOID name of 126 bytes, and reads the bytes after the NUL as nothing', () => {
    const name = `${'a'.repeat(114)}@example.com`;
    assert.equal(Buffer.byteLength(name), 126);
    const up = encodeUpcall({ type: 'user', conv: 'name-to-id', name });
    up.fill(0x61, OFFSET.name + 127, OFFSET.name + 128);
    const d = decodeUpcall(up);
    assert.ok(d.ok);
    assert.deepEqual(d.request, { kind: 'name-to-uid', name });
  });

  it('refuses a NAMETOID name of 127 bytes (name-truncated, framed): the kernel may have cut a longer one', () => {
    for (const name of [`${'a'.repeat(115)}@example.com`, `${'a'.repeat(115)}@example.com.attacker.invalid`, `${'é'.repeat(64)}@example.com`]) {
      const d = decodeUpcall(encodeUpcall({ type: 'group', conv: 'name-to-id', name }));
      assert.equal(d.ok, false, name);
      if (d.ok) continue;
      assert.equal(d.error.code, 'name-truncated', `${name}: ${d.error.reason}`);
      assert.equal(d.msg?.name.length, 127);
    }
  });
});

describe('pipefs codec: replies', () => {
  const n2i = msg({ type: 'group', conv: 'name-to-id', name: Buffer.from('staff@example.com') });
  const i2n = msg({ type: 'user', conv: 'id-to-name', id: 1001 });

  it('sets SUCCESS, echoes type and conv, and is 140 bytes', () => {
    for (const [m, v] of [[n2i, 50], [i2n, 'alice@example.com']] as const) {
      const r = encodeReply(m, v);
      assert.ok(r.ok);
      assert.equal(r.bytes.length, IDMAP_MSG_SIZE);
      assert.equal(r.bytes[OFFSET.status], IM_STATUS.SUCCESS);
      assert.equal(r.bytes[OFFSET.type], m.type === 'user' ? 0 : 1);
      assert.equal(r.bytes[OFFSET.conv], m.conv === 'id-to-name' ? 0 : 1);
    }
  });

  it('NAMETOID echoes the name and carries the id; IDTONAME echoes the id and carries the name', () => {
    const a = encodeReply(n2i, 4294967294, 'LE');
    assert.ok(a.ok);
    assert.equal(a.bytes.subarray(OFFSET.name, OFFSET.name + 18).toString('latin1'), 'staff@example.com\0');
    assert.equal(a.bytes.readUInt32LE(OFFSET.id), 4294967294);
    const b = encodeReply(i2n, 'alice@example.com', 'BE');
    assert.ok(b.ok);
    assert.equal(b.bytes.readUInt32BE(OFFSET.id), 1001);
    assert.equal(b.bytes.subarray(OFFSET.name, OFFSET.name + 18).toString('latin1'), 'alice@example.com\0');
  });

  const refused: { what: string; m: IdmapMsg; value: number | string }[] = [
    { what: 'an IDTONAME name of 128 bytes', m: i2n, value: 'a'.repeat(128) },
    { what: 'an empty IDTONAME name', m: i2n, value: '' },
    { what: 'an IDTONAME name with a NUL', m: i2n, value: 'a\0b@example.com' },
    { what: 'an id for IDTONAME', m: i2n, value: 5 },
    { what: 'a name for NAMETOID', m: n2i, value: 'x' },
    { what: 'NAMETOID id (u32)-1', m: n2i, value: 0xffffffff },
    { what: 'NAMETOID id -1', m: n2i, value: -1 },
    { what: 'NAMETOID id 1.5', m: n2i, value: 1.5 },
    { what: 'NAMETOID whose name cannot be echoed (empty)', m: msg({ type: 'user', conv: 'name-to-id' }), value: 1 },
  ];
  for (const r of refused) {
    it(`refuses ${r.what} with a reason (never a truncated or wrong reply)`, () => {
      const e = encodeReply(r.m, r.value);
      assert.equal(e.ok, false);
      if (!e.ok) assert.ok(e.reason.length > 0);
    });
  }

  it('takes a 127-byte IDTONAME name, UTF-8 counted in bytes', () => {
    const name = `${'é'.repeat(57)}@example.com`; // 114 + 12 = 126 bytes
    assert.ok(encodeReply(i2n, name).ok);
    assert.ok(encodeReply(i2n, `${name}x`).ok);
    assert.equal(encodeReply(i2n, `${name}xy`).ok, false);
  });

  it('a failure reply has no SUCCESS bit, whatever status is asked, and echoes the upcall', () => {
    const f = encodeFailure(i2n, undefined, IM_STATUS.LOOKUPFAIL | IM_STATUS.SUCCESS, 'LE');
    assert.equal(f.length, IDMAP_MSG_SIZE);
    assert.equal(f[OFFSET.status], IM_STATUS.LOOKUPFAIL);
    assert.equal(f.readUInt32LE(OFFSET.id), 1001);
  });

  it('a failure reply to garbage is 140 bytes of the garbage with the status cleared of SUCCESS', () => {
    const raw = Buffer.alloc(200, 0xff);
    const f = encodeFailure(undefined, raw, IM_STATUS.INVALIDMSG);
    assert.equal(f.length, IDMAP_MSG_SIZE);
    assert.equal(f[OFFSET.status], IM_STATUS.INVALIDMSG);
    assert.equal(encodeFailure(undefined, Buffer.alloc(3)).length, IDMAP_MSG_SIZE);
  });
});
