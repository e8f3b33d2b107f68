/**
 * The nfsd idmap channel codec as a specification: the real nfsd's request lines parse to what it
 * asked, the replies it accepted are what formatReply/formatNegative write byte for byte, quoting
 * is qword_add's, and every malformed line is a typed error — with a key to answer negatively when
 * one can be read (docs/PROTOCOLS.md §4, net/sunrpc/cache.c, fs/nfsd/nfs4idmap.c).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  expiryAt,
  formatNegative,
  formatReply,
  formatRequest,
  parseRequest,
  quoteField,
  splitLines,
  unquoteField,
  type NfsdCache,
  type NfsdKey,
  type ParseErrorCode,
} from '../../src/responders/nfsd/codec.js';
import { CAPTURED_NFSD } from '../fixtures/nfsd/captures.js';

const b = (s: string) => Buffer.from(s, 'latin1');

describe('nfsd codec: the captured kernel exchanges', () => {
  for (const [i, c] of CAPTURED_NFSD.entries()) {
    const what = `#${i} ${c.cache} ${JSON.stringify(c.request.toString())}`;
    it(`parses ${what} and writes the reply nfsd accepted, byte for byte`, () => {
      const p = parseRequest(c.cache, c.request);
      assert.ok(p.ok, p.ok ? '' : p.reason);
      assert.equal(p.authDomain, '127.0.0.1');
      assert.deepEqual(formatRequest(p.key), c.request, 'the request rebuilds as the kernel wrote it');
      if (c.value === undefined) {
        assert.equal(formatNegative(p.key, c.expiry).toString(), c.reply.toString());
        return;
      }
      const r = formatReply(p.key, c.expiry, c.value);
      assert.ok(r.ok, r.ok ? '' : r.reason);
      assert.equal(r.line.toString(), c.reply.toString());
    });
  }

  it('maps the four request forms to the four lookups', () => {
    const rows: [NfsdCache, string, unknown][] = [
      ['idtoname', '* user 1001\n', { kind: 'uid-to-name', id: 1001 }],
      ['idtoname', '* group 50\n', { kind: 'gid-to-name', id: 50 }],
      ['nametoid', '* user alice@example.com\n', { kind: 'name-to-uid', name: 'alice@example.com' }],
      ['nametoid', '* group staff@example.com\n', { kind: 'name-to-gid', name: 'staff@example.com' }],
    ];
    for (const [cache, line, request] of rows) {
      const p = parseRequest(cache, b(line));
      assert.ok(p.ok);
      assert.deepEqual(p.request, request, line);
    }
  });
});

describe('nfsd codec: quoting', () => {
  const rows: [string, string][] = [
    ['a b', 'a\\040b'],
    ['\\', '\\134'],
    ['tab\there', 'tab\\011here'],
    ['lf\n', 'lf\\012'],
    ['plain@example.com', 'plain@example.com'],
    ['é', 'é'],
  ];
  for (const [raw, quoted] of rows) {
    it(`${JSON.stringify(raw)} ↔ ${JSON.stringify(quoted)}`, () => {
      assert.equal(quoteField(Buffer.from(raw)).toString(), quoted);
      assert.equal(unquoteField(Buffer.from(quoted))?.toString(), raw);
    });
  }
  it('reads a whole field given as \\x<hex>', () => {
    assert.equal(unquoteField(b('\\x616c6963652040782e6f7267'))?.toString(), 'alice @x.org');
    assert.equal(unquoteField(b('\\x4A4b'))?.toString(), 'JK');
  });
  const bad = ['\\', 'a\\b', '\\400', '\\09', '\\x', '\\x1', '\\x4g', 'x\\12'];
  for (const f of bad) {
    it(`refuses the malformed field ${JSON.stringify(f)}`, () => assert.equal(unquoteField(b(f)), undefined));
  }
  it('a name with spaces and backslashes survives request → reply as the kernel would parse it', () => {
    const key: NfsdKey = { cache: 'nametoid', auth: b('client one'), type: 'user', name: Buffer.from('j doe\\x@example.com') };
    const line = formatRequest(key);
    assert.equal(line.toString(), 'client\\040one user j\\040doe\\134x@example.com\n');
    const p = parseRequest('nametoid', line);
    assert.ok(p.ok);
    assert.deepEqual(p.key, key);
    const r = formatReply(p.key, 2_000_000_000, 1234);
    assert.ok(r.ok);
    assert.equal(r.line.toString(), 'client\\040one user j\\040doe\\134x@example.com 2000000000 1234\n');
  });
});

describe('nfsd codec: malformed requests are typed errors, answered negatively when their key is readable', () => {
  const rows: { what: string; cache: NfsdCache; line: string | Buffer; code: ParseErrorCode; key: boolean }[] = [
    { what: 'an empty read', cache: 'idtoname', line: '', code: 'framing', key: false },
    { what: 'no newline', cache: 'idtoname', line: '* user 1', code: 'framing', key: false },
    { what: 'two lines in one', cache: 'idtoname', line: '* user 1\n* user 2\n', code: 'framing', key: false },
    { what: 'a NUL byte', cache: 'nametoid', line: '* user a\0b\n', code: 'framing', key: false },
    { what: 'a line longer than a page', cache: 'nametoid', line: `* user ${'a'.repeat(5000)}\n`, code: 'framing', key: false },
    { what: 'two fields', cache: 'idtoname', line: '* user\n', code: 'fields', key: false },
    { what: 'four fields', cache: 'idtoname', line: '* user 1 2\n', code: 'fields', key: false },
    { what: 'a double space', cache: 'idtoname', line: '*  user 1\n', code: 'fields', key: false },
    { what: 'a trailing space', cache: 'idtoname', line: '* user 1 \n', code: 'fields', key: false },
    { what: 'a stray backslash', cache: 'nametoid', line: '* user a\\b\n', code: 'quoting', key: false },
    { what: 'a quoted NUL', cache: 'nametoid', line: '* user a\\000b\n', code: 'quoting', key: false },
    { what: 'type users', cache: 'idtoname', line: '* users 1\n', code: 'type', key: false },
    { what: 'an auth of 128 bytes', cache: 'idtoname', line: `${'a'.repeat(128)} user 1\n`, code: 'auth', key: false },
    { what: 'id 007', cache: 'idtoname', line: '* user 007\n', code: 'id', key: false },
    { what: 'id -1', cache: 'idtoname', line: '* user -1\n', code: 'id', key: false },
    { what: 'id 4294967296', cache: 'idtoname', line: '* user 4294967296\n', code: 'id', key: false },
    { what: 'id 4294967295 (INVALID_UID)', cache: 'idtoname', line: '* user 4294967295\n', code: 'id', key: true },
    { what: 'a name of 128 bytes', cache: 'nametoid', line: `* user ${'a'.repeat(128)}\n`, code: 'name', key: false },
    { what: 'a name that is not UTF-8', cache: 'nametoid', line: Buffer.from('* user \xff@x\n', 'latin1'), code: 'name', key: true },
    { what: 'a name with a control character', cache: 'nametoid', line: '* group a\x07@x\n', code: 'name', key: true },
  ];
  for (const r of rows) {
    it(`${r.what} → ${r.code}${r.key ? ' with a key' : ', dropped'}`, () => {
      const p = parseRequest(r.cache, typeof r.line === 'string' ? b(r.line) : r.line);
      assert.equal(p.ok, false);
      if (p.ok) return;
      assert.equal(p.code, r.code, p.reason);
      assert.equal(p.key !== undefined, r.key);
      assert.ok(p.reason.length > 0 && p.reason.length < 200 && !p.reason.includes('\n'));
    });
  }

  it('the negative reply to a key-readable malformed request echoes its key', () => {
    const p = parseRequest('nametoid', Buffer.from('gss/krb5 user \xff@x\n', 'latin1'));
    assert.ok(!p.ok && p.key);
    assert.equal(formatNegative(p.key, 1_900_000_000).toString('latin1'), 'gss/krb5 user \xff@x 1900000000\n');
  });
});

describe('nfsd codec: replies', () => {
  const idKey: NfsdKey = { cache: 'idtoname', auth: b('*'), type: 'group', id: 50 };
  const nameKey: NfsdKey = { cache: 'nametoid', auth: b('*'), type: 'user', name: b('bob@example.com') };

  it('writes ids above 2^31 as plain decimal (get_int reads them back through (int) to the same u32)', () => {
    const r = formatReply(nameKey, 1_900_000_000, 4294967294);
    assert.ok(r.ok);
    assert.equal(r.line.toString(), '* user bob@example.com 1900000000 4294967294\n');
  });

  const refused: [string, NfsdKey, number, number | string][] = [
    ['a name for nametoid', nameKey, 1_900_000_000, 'x'],
    ['id (u32)-1', nameKey, 1_900_000_000, 0xffffffff],
    ['an id for idtoname', idKey, 1_900_000_000, 7],
    ['an empty name', idKey, 1_900_000_000, ''],
    ['a 128-byte name', idKey, 1_900_000_000, 'a'.repeat(128)],
    ['a name with a NUL', idKey, 1_900_000_000, 'a\0b'],
    ['expiry 0', idKey, 0, 'staff@example.com'],
    ['expiry 1.5', idKey, 1.5, 'staff@example.com'],
  ];
  for (const [what, key, expiry, value] of refused) {
    it(`refuses ${what} with a reason`, () => {
      const r = formatReply(key, expiry, value);
      assert.equal(r.ok, false);
    });
  }

  it('quotes spaces in an answered name', () => {
    const r = formatReply(idKey, 1_900_000_000, 'domain users@example.com');
    assert.ok(r.ok);
    assert.equal(r.line.toString(), '* group 50 1900000000 domain\\040users@example.com\n');
  });

  it('expiry is absolute wall-clock seconds, at least one second ahead', () => {
    assert.equal(expiryAt(1_700_000_000_999, 600), 1_700_000_600);
    assert.equal(expiryAt(1_700_000_000_000, 0), 1_700_000_001);
    assert.equal(expiryAt(1_700_000_000_000, 0.2), 1_700_000_001);
    assert.equal(expiryAt(1_700_000_000_000, Number.NaN), 1_700_000_001);
  });

  it('splits a read holding several requests into lines', () => {
    assert.deepEqual(splitLines(b('a\nb\nc')).map(String), ['a\n', 'b\n', 'c']);
    assert.deepEqual(splitLines(b('* user 1\n')).map(String), ['* user 1\n']);
  });
});
