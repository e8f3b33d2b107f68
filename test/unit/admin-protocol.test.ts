/**
 * The admin socket's framing and request validation (src/responders/admin/protocol.ts): pure,
 * no socket. The daemon integration test sends the same kinds of input over a real socket.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeRequest, encode, errorResponse, LineSplitter, MAX_LINE } from '../../src/responders/admin/protocol.js';

function splitter(): { lines: string[]; s: LineSplitter } {
  const lines: string[] = [];
  return { lines, s: new LineSplitter((l) => lines.push(l)) };
}

describe('LineSplitter', () => {
  it('yields each complete line, without its newline', () => {
    const { lines, s } = splitter();
    assert.equal(s.push('{"a":1}\n{"b":2}\n'), true);
    assert.deepEqual(lines, ['{"a":1}', '{"b":2}']);
  });

  it('holds a partial line until its newline arrives, across any number of chunks', () => {
    const { lines, s } = splitter();
    s.push('{"id":1,');
    s.push('"op":');
    assert.deepEqual(lines, []);
    s.push('"ping"}\n{"id"');
    assert.deepEqual(lines, ['{"id":1,"op":"ping"}']);
    s.push(':2}\n');
    assert.deepEqual(lines, ['{"id":1,"op":"ping"}', '{"id":2}']);
  });

  it('gives the same lines however the stream is cut', () => {
    const text = 'one\ntwo\n\nthree four\nfive\n';
    for (let size = 1; size <= text.length; size++) {
      const { lines, s } = splitter();
      for (let i = 0; i < text.length; i += size) assert.equal(s.push(text.slice(i, i + size)), true);
      assert.deepEqual(lines, ['one', 'two', 'three four', 'five'], `chunks of ${size}`);
    }
  });

  it('ignores blank and whitespace-only lines', () => {
    const { lines, s } = splitter();
    s.push('\n\n  \n\t\nx\n\n');
    assert.deepEqual(lines, ['x']);
  });

  it('accepts a line of exactly MAX_LINE characters', () => {
    const { lines, s } = splitter();
    assert.equal(s.push('x'.repeat(MAX_LINE)), true);
    assert.equal(s.push('\n'), true);
    assert.equal(lines[0]?.length, MAX_LINE);
  });

  it('returns false once a pending line exceeds MAX_LINE', () => {
    const { lines, s } = splitter();
    assert.equal(s.push('x'.repeat(MAX_LINE)), true);
    assert.equal(s.push('x'), false);
    assert.deepEqual(lines, []);
  });

  it('refuses an oversize line even when its newline arrives in the same chunk', () => {
    const { lines, s } = splitter();
    assert.equal(s.push('ok\n' + 'x'.repeat(MAX_LINE + 1) + '\nlater\n'), false);
    assert.deepEqual(lines, ['ok'], 'lines before the oversize one are delivered, none after');
  });

  it('takes no limit when given Infinity (the client reading the daemon\'s answers)', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l), Infinity);
    assert.equal(s.push('x'.repeat(MAX_LINE * 4)), true);
    assert.equal(s.push('\n'), true);
    assert.equal(lines[0]?.length, MAX_LINE * 4);
  });

  it('stays refused after an oversize line, whatever comes next', () => {
    const { lines, s } = splitter();
    assert.equal(s.push('x'.repeat(MAX_LINE + 1)), false);
    assert.equal(s.push('\n{"id":1,"op":"ping"}\n'), false);
    assert.deepEqual(lines, []);
  });
});

describe('decodeRequest', () => {
  const valid: [string, unknown][] = [
    ['ping', { id: 1, op: 'ping' }],
    ['status', { id: 2, op: 'status' }],
    ['reload', { id: 3, op: 'reload' }],
    ['cache.stats', { id: 4, op: 'cache.stats' }],
    ['stats', { id: 9, op: 'stats' }],
    ['resolve with the minimum', { id: 5, op: 'resolve', kind: 'uid', value: 'alice@example.com' }],
    ['resolve with every option', { id: 6, op: 'resolve', kind: 'user', value: '1001', iface: 'pipefs', pid: 42, nsPid: 43, scope: 'host', explain: true }],
    ['cache.list with filters', { id: 7, op: 'cache.list', scope: 'host', prefix: 'host\x1fname-to-uid', limit: 10 }],
    ['cache.flush by key', { id: 8, op: 'cache.flush', key: 'host name-to-uid alice' }],
  ];
  for (const [name, req] of valid) {
    it(`accepts ${name}`, () => {
      const r = decodeRequest(JSON.stringify(req));
      assert.ok(r.ok, JSON.stringify(r));
      assert.deepEqual(r.req, req);
    });
  }

  // [name, line, id echoed in the error, message pattern]
  const invalid: [string, string, number, RegExp][] = [
    ['a line that is not JSON', 'hello', 0, /not JSON/],
    ['truncated JSON', '{"id":1,"op":"pi', 0, /not JSON/],
    ['an array', '[{"id":1,"op":"ping"}]', 0, /object/],
    ['null', 'null', 0, /object/],
    ['a number', '42', 0, /object/],
    ['an unknown op', '{"id":9,"op":"shutdown"}', 9, /op/],
    ['no op', '{"id":10}', 10, /op/],
    ['no id', '{"op":"ping"}', 0, /id/],
    ['a string id', '{"id":"1","op":"ping"}', 0, /id/],
    ['a fractional id', '{"id":1.5,"op":"ping"}', 1.5, /id/],
    ['resolve without kind', '{"id":11,"op":"resolve","value":"x"}', 11, /^kind: /],
    ['resolve without value', '{"id":12,"op":"resolve","kind":"uid"}', 12, /^value: /],
    ['a value that is not a string', '{"id":13,"op":"resolve","kind":"user","value":1001}', 13, /^value: /],
    ['an unknown interface', '{"id":14,"op":"resolve","kind":"uid","value":"a","iface":"smtp"}', 14, /^iface: /],
    ['a zero pid', '{"id":15,"op":"resolve","kind":"uid","value":"a","pid":0}', 15, /^pid: /],
    ['an unknown field', '{"id":16,"op":"ping","force":true}', 16, /force/],
    ['a zero cache.list limit', '{"id":17,"op":"cache.list","limit":0}', 17, /^limit: /],
  ];
  for (const [name, line, id, message] of invalid) {
    it(`answers ${name} with NSIDMAP_EREQUEST`, () => {
      const r = decodeRequest(line);
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.equal(r.res.ok, false);
      assert.equal(r.res.id, id);
      if (r.res.ok) return;
      assert.equal(r.res.error.code, 'NSIDMAP_EREQUEST');
      assert.match(r.res.error.message, message);
    });
  }

  it('does not let __proto__ in the input reach the request', () => {
    const r = decodeRequest('{"id":1,"op":"ping","__proto__":{"polluted":true}}');
    assert.equal(r.ok, false);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });
});

describe('encode', () => {
  it('writes one line per message that decodes back', () => {
    const line = encode({ id: 1, op: 'resolve', kind: 'uid', value: 'a\nb@example.com' });
    assert.equal(line.indexOf('\n'), line.length - 1, 'a newline in a value is escaped');
    const back = decodeRequest(line.slice(0, -1));
    assert.ok(back.ok);
    assert.equal((back.req as { value: string }).value, 'a\nb@example.com');
    assert.deepEqual(JSON.parse(encode(errorResponse(3, 'NSIDMAP_EREQUEST', 'bad'))), { id: 3, ok: false, error: { code: 'NSIDMAP_EREQUEST', message: 'bad' } });
  });
});

describe('decodeRequest: upcall', () => {
  const base = { id: 1, op: 'upcall', keyType: 'id_resolver', descriptionHex: Buffer.from('uid:alice@example.com').toString('hex') };
  it('takes the requester as a pid, or as the auth key and target serial whose /proc/keys line names it', () => {
    for (const extra of [{}, { pid: 1234 }, { authKey: 0x2c3c8502, keySerial: 0x21d8eb56 }]) {
      const d = decodeRequest(JSON.stringify({ ...base, ...extra }));
      assert.equal(d.ok, true, JSON.stringify(extra));
    }
  });
  it('refuses serials that are not positive 32-bit key serials', () => {
    for (const extra of [{ authKey: 0, keySerial: 1 }, { authKey: 1, keySerial: -5 }, { authKey: 2 ** 31, keySerial: 1 }, { authKey: 1.5, keySerial: 1 }, { authKey: '1', keySerial: 1 }]) {
      const d = decodeRequest(JSON.stringify({ ...base, ...extra }));
      assert.equal(d.ok, false, JSON.stringify(extra));
    }
  });
});
