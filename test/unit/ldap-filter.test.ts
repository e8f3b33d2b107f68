/**
 * The ldap source's pure parts: RFC 4515 escaping and the filter parser (bytes, not UTF-16 code
 * units, reach the server), the provider block's schema, and reading entries (ids, SIDs, RDNs).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EqualityFilter, type Filter, OrFilter, PresenceFilter, SubstringFilter, AndFilter, NotFilter } from 'ldapts';
import { attributeMap, ldapSchema } from '../../src/providers/ldap/config.js';
import { idOf, localPart, rdnValue, sidBytes, sidOf, smallest } from '../../src/providers/ldap/entry.js';
import { and, eq, escapeFilterValue, FilterSyntaxError, not, or, parseFilter, present, startsWith } from '../../src/providers/ldap/filter.js';
import { describeLdapError } from '../../src/providers/ldap/pool.js';
import type { Sid } from '../../src/types.js';

describe('escapeFilterValue (RFC 4515 §3)', () => {
  const cases: [string, string | Uint8Array, string][] = [
    ['plain text stays', 'alice', 'alice'],
    ['* is escaped', '*', '\\2a'],
    ['( and ) are escaped', 'p(a)r', 'p\\28a\\29r'],
    ['\\ is escaped', 'back\\slash', 'back\\5cslash'],
    ['NUL is escaped', 'a\0b', 'a\\00b'],
    ['an injection becomes one literal value', '*)(uid=*', '\\2a\\29\\28uid=\\2a'],
    ['a filter-closing injection', 'x)(|(objectClass=*)', 'x\\29\\28|\\28objectClass=\\2a\\29'],
    ['control characters are escaped (one log line)', 'a\nb\tc\x7f', 'a\\0ab\\09c\\7f'],
    ['UTF-8 stays as it is (RFC 4515 UTFMB)', 'émile 名', 'émile 名'],
    ['= and & and | need no escape', 'a=b&c|d', 'a=b&c|d'],
    ['the empty value', '', ''],
    ['bytes: every byte escaped', new Uint8Array([0x01, 0x05, 0x2a, 0xff]), '\\01\\05\\2a\\ff'],
  ];
  for (const [what, input, want] of cases) it(what, () => assert.equal(escapeFilterValue(input), want));

  it('refuses a string with a lone surrogate (it has no UTF-8 form)', () => {
    assert.throws(() => escapeFilterValue('a\uD800b'), RangeError);
  });
});

describe('filter builders', () => {
  it('build RFC 4515 text with escaped values', () => {
    assert.equal(and(eq('objectClass', 'posixAccount'), eq('uid', '*)(uid=*')), '(&(objectClass=posixAccount)(uid=\\2a\\29\\28uid=\\2a))');
    assert.equal(or(startsWith('nfsv4Name', 'a*b@'), and(not(present('nfsv4Name')), eq('uid', 'a'))), '(|(nfsv4Name=a\\2ab@*)(&(!(nfsv4Name=*))(uid=a)))');
    assert.equal(and(eq('uid', 'x')), '(uid=x)');
  });

  it('refuse anything but an attribute name where one goes', () => {
    for (const bad of ['uid)(x', 'u id', '', '1.', 'a=b', '*']) assert.throws(() => eq(bad, 'v'), RangeError, bad);
    for (const good of ['uid', 'sAMAccountName', 'objectSid;binary', '1.3.6.1.1.1.1.0']) assert.doesNotThrow(() => eq(good, 'v'));
  });
});

/** what a parsed filter says, without ldapts's classes: equality values as bytes */
type Shape = { eq: [string, string] } | { present: string } | { sub: [string, string, string[], string] } | { and: Shape[] } | { or: Shape[] } | { not: Shape };
function shape(f: Filter): Shape {
  if (f instanceof EqualityFilter) return { eq: [f.attribute, Buffer.isBuffer(f.value) ? f.value.toString('hex') : Buffer.from(f.value).toString('hex')] };
  if (f instanceof PresenceFilter) return { present: f.attribute };
  if (f instanceof SubstringFilter) return { sub: [f.attribute, f.initial, f.any, f.final] };
  if (f instanceof AndFilter) return { and: f.filters.map(shape) };
  if (f instanceof OrFilter) return { or: f.filters.map(shape) };
  if (f instanceof NotFilter) return { not: shape(f.filter) };
  throw new Error(`unexpected ${f.constructor.name}`);
}
const hex = (s: string | Uint8Array) => Buffer.from(s).toString('hex');

describe('parseFilter', () => {
  it('an escaped injection is one equality assertion on the literal bytes', () => {
    const f = parseFilter(eq('uid', '*)(uid=*'));
    assert.deepEqual(shape(f), { eq: ['uid', hex('*)(uid=*')] });
  });

  it('decodes escapes into bytes: non-ASCII text and binary SIDs reach the server intact', () => {
    // ldapts's own parser would turn \c3\a9 into two UTF-16 units and send four bytes
    assert.deepEqual(shape(parseFilter('(uid=\\c3\\a9mile)')), { eq: ['uid', hex('émile')] });
    assert.deepEqual(shape(parseFilter(eq('uid', 'émile'))), { eq: ['uid', hex('émile')] });
    const sid = sidBytes('S-1-5-21-1004336348-1177238915-682003330-1103' as Sid)!;
    assert.deepEqual(shape(parseFilter(eq('objectSid', sid))), { eq: ['objectSid', sid.toString('hex')] });
    assert.deepEqual(shape(parseFilter(eq('uid', 'a\0b\\'))), { eq: ['uid', hex('a\0b\\')] });
  });

  it('parses and / or / not / presence / substrings', () => {
    const text = and(eq('objectClass', 'posixAccount'), or(startsWith('nfsv4Name', 'c*l@'), and(not(present('nfsv4Name')), eq('uid', 'c'))));
    assert.deepEqual(shape(parseFilter(text)), {
      and: [
        { eq: ['objectClass', hex('posixAccount')] },
        { or: [{ sub: ['nfsv4Name', 'c*l@', [], ''] }, { and: [{ not: { present: 'nfsv4Name' } }, { eq: ['uid', hex('c')] }] }] },
      ],
    });
  });

  const bad: [string, string][] = [
    ['unescaped ( in a value', '(uid=a(b)'],
    ['unbalanced', '(&(uid=a)'],
    ['trailing text', '(uid=a))'],
    ['bad escape', '(uid=\\zz)'],
    ['short escape', '(uid=\\2)'],
    ['no attribute', '(=a)'],
    ['not a filter', 'uid=a'],
    ['empty and', '(&)'],
    ['substring that is not UTF-8', '(uid=\\ff*)'],
  ];
  for (const [what, text] of bad) it(`refuses: ${what}`, () => assert.throws(() => parseFilter(text), FilterSyntaxError));
});

describe('ldap provider block', () => {
  const base = { kind: 'ldap', uri: 'ldap://127.0.0.1:3389', base: 'dc=example,dc=com', schema: 'rfc2307' } as const;
  const ok = (extra: object) => ldapSchema.safeParse({ ...base, ...extra });

  it('takes one URI or several, ldap:// and ldaps:// with host and port only', () => {
    for (const uri of ['ldap://h', 'ldaps://h:636/', 'LDAP://[::1]:389', ['ldap://a', 'ldaps://b']]) assert.equal(ok({ uri }).success, true, JSON.stringify(uri));
    for (const uri of ['http://h', 'ldap://h/dc=x', 'ldap://h:389?uid', 'ldapi:///', [], 'ldap://']) assert.equal(ok({ uri }).success, false, JSON.stringify(uri));
  });

  it('reads a timeout as seconds, or with a unit; default 4 s', () => {
    const t = (v: unknown) => {
      const r = ok({ timeout: v });
      return r.success ? r.data.timeout : 'error';
    };
    assert.equal(t(4), 4000);
    assert.equal(t('4s'), 4000);
    assert.equal(t('500ms'), 500);
    assert.equal(t('1.5'), 1500);
    assert.equal(t(0), 'error');
    assert.equal(t('4m'), 'error');
    assert.equal(ok({}).success && ok({}).data?.timeout, undefined);
  });

  it('refuses bind with sasl, EXTERNAL without a client certificate, a cert without its key', () => {
    assert.equal(ok({ bind: { dn: 'cn=x', passwordFile: 'p' }, sasl: 'EXTERNAL', tls: { certFile: 'c', keyFile: 'k' } }).success, false);
    assert.equal(ok({ sasl: 'EXTERNAL' }).success, false);
    assert.equal(ok({ sasl: 'EXTERNAL', tls: { certFile: 'c', keyFile: 'k' } }).success, true);
    assert.equal(ok({ tls: { certFile: 'c' } }).success, false);
    assert.equal(ok({ sasl: 'PLAIN' }).success, false);
  });

  it('has no place for a password in the policy itself', () => {
    assert.equal(ok({ bind: { dn: 'cn=x', password: 'secret' } }).success, false);
    assert.equal(ok({ bind: { dn: 'cn=x', passwordFile: 'p', password: 'secret' } }).success, false);
  });

  it('refuses attribute names that are not names', () => {
    assert.equal(ok({ attributes: { userName: 'uid)(x' } }).success, false);
    assert.equal(ok({ attributes: { userName: 'mail', nfsv4Name: 'NFSv4Name', objectSid: 'sambaSID' } }).success, true);
  });

  it('maps each schema to its attributes, overrides winning', () => {
    const m = (extra: object) => attributeMap(ldapSchema.parse({ ...base, ...extra }));
    assert.deepEqual(
      [m({}).userClass, m({}).groupClass, m({}).userName, m({}).groupName, m({}).objectSid],
      ['posixAccount', 'posixGroup', 'uid', 'cn', undefined],
    );
    const ad = m({ schema: 'ad' });
    assert.deepEqual([ad.userClass, ad.groupClass, ad.userName, ad.objectSid, ad.sidSyntax, ad.primaryGroupId, ad.caseInsensitiveNames], ['user', 'group', 'sAMAccountName', 'objectSid', 'binary', 'primaryGroupID', true]);
    const o = m({ schema: 'rfc2307bis', attributes: { objectSid: 'sambaSID', groupClass: 'groupOfNames' } });
    assert.deepEqual([o.objectSid, o.sidSyntax, o.groupClass, o.caseInsensitiveNames], ['sambaSID', 'text', 'groupOfNames', false]);
  });
});

describe('reading entries', () => {
  const sid = 'S-1-5-21-1004336348-1177238915-682003330-1103' as Sid;

  it('ids: one decimal value in range, else nothing', () => {
    const e = (v: unknown) => idOf({ dn: 'x', uidNumber: v as string }, 'uidnumber');
    assert.equal(e('1000'), 1000);
    assert.equal(e('0'), 0);
    for (const bad of ['-1', '4294967295', '1e3', '0x10', '', 'abc', '01', ['1', '2']]) assert.equal(e(bad), undefined, JSON.stringify(bad));
  });

  it('SIDs: packed binary as Buffer or as the string ldapts makes of valid UTF-8; text', () => {
    const bin = sidBytes(sid)!;
    assert.equal(sidOf({ dn: 'x', objectSid: bin }, 'objectSid', 'binary'), sid);
    const utf8 = sidBytes('S-1-5-32-544' as Sid)!;
    assert.equal(sidOf({ dn: 'x', objectsid: utf8.toString('utf8') }, 'objectSid', 'binary'), 'S-1-5-32-544');
    assert.equal(sidOf({ dn: 'x', objectSid: Buffer.concat([bin, Buffer.from([0])]) }, 'objectSid', 'binary'), undefined, 'trailing bytes');
    assert.equal(sidOf({ dn: 'x', objectSid: bin.subarray(0, 10) }, 'objectSid', 'binary'), undefined, 'truncated');
    assert.equal(sidOf({ dn: 'x', sambaSID: 's-1-5-21-1-2-3-4' }, 'sambaSID', 'text'), 'S-1-5-21-1-2-3-4');
    assert.equal(sidOf({ dn: 'x', sambaSID: 'nope' }, 'sambaSID', 'text'), undefined);
  });

  it('RDN values, unescaped (RFC 4514)', () => {
    assert.equal(rdnValue('uid=alice,ou=people,dc=x', 'uid'), 'alice');
    assert.equal(rdnValue('UID=alice,ou=people', 'uid'), 'alice');
    assert.equal(rdnValue('uid=back\\5Cslash,ou=p', 'uid'), 'back\\slash');
    assert.equal(rdnValue('uid=a\\,b,ou=p', 'uid'), 'a,b');
    assert.equal(rdnValue('uid=\\C3\\A9mile,ou=p', 'uid'), 'émile');
    assert.equal(rdnValue('cn=alice,ou=p', 'uid'), undefined);
    assert.equal(rdnValue('uid=a+cn=b,ou=p', 'uid'), undefined);
  });

  it('local parts of NFSv4 names, and the smallest of several', () => {
    assert.equal(localPart('carol@example.com'), 'carol');
    assert.equal(localPart('a@b@example.com'), 'a@b');
    assert.equal(localPart('@example.com'), undefined);
    assert.equal(localPart('carol'), undefined);
    assert.equal(smallest(['b', 'alias-b', 'alias-a']), 'alias-a');
    assert.equal(smallest([]), undefined);
  });

  it('describes errors in one line', () => {
    const e = new Error('Socket error. Message type: SearchRequest (0x63)\nread ECONNRESET');
    (e as NodeJS.ErrnoException).code = 'ECONNRESET';
    assert.equal(describeLdapError(e), 'read ECONNRESET');
  });
});
