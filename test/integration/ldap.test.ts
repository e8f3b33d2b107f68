/**
 * The ldap source against a real OpenLDAP slapd (test/ldap/slapd.ts): each directory schema, the
 * Source contract, binds and secrets, TLS (LDAPS, StartTLS, SASL EXTERNAL) with a CA made here,
 * failover, an outage under load through a real Resolver and cache, injection, and a server that
 * stops answering. Every slapd runs on its own free loopback port in its own temp dir.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openCache } from '../../src/cache/tiered.js';
import { isNsidmapError } from '../../src/errors.js';
import { createLogger, silentLogger, type Logger } from '../../src/log.js';
import { ldapSchema } from '../../src/providers/ldap/config.js';
import { LdapSource } from '../../src/providers/ldap/source.js';
import { SourceFault, type Source } from '../../src/providers/source.js';
import { compilePolicy } from '../../src/resolver/policy/compile.js';
import { Policy } from '../../src/resolver/policy/schema.js';
import { Resolver } from '../../src/resolver/resolver.js';
import type { Answer, Entity, Sid } from '../../src/types.js';
import { runSourceContract } from '../contract/source.contract.js';
import { AD_BASE, BASE, bulkGid, bulkGroupName, bulkGroupRid, bulkUid, bulkUserName, bulkUserRid, DOMAIN_SID, FIXTURE_DIR, READER_PASSWORD, readerDn } from '../fixtures/ldap/generate.js';
import { makePki, opensslAvailable, type Pki } from '../ldap/pki.js';
import { Slapd, slapdMissing, type SlapdOptions } from '../ldap/slapd.js';

const missing = slapdMissing();
const haveOpenssl = await opensslAvailable();
const tmp = mkdtempSync(join(tmpdir(), 'nsidmap-ldap-test-'));
const started: Slapd[] = [];
after(async () => {
  await Promise.all(started.map((s) => s.stop()));
  rmSync(tmp, { recursive: true, force: true });
});

const LDIF = (f: string) => join(FIXTURE_DIR, f);
const RFC2307: SlapdOptions = { schema: 'nis', suffix: BASE, ldif: [LDIF('rfc2307.ldif')], tmp };
const RFC2307BIS: SlapdOptions = { schema: 'rfc2307bis', suffix: BASE, ldif: [LDIF('rfc2307bis.ldif')], tmp };
const AD: SlapdOptions = { schema: 'nis', suffix: AD_BASE, ldif: [LDIF('ad.ldif')], requireBind: true, tmp };

async function slapd(o: SlapdOptions): Promise<Slapd> {
  const s = await Slapd.start(o);
  started.push(s);
  return s;
}

/** one server per schema, started on first use and shared by the read-only tests */
function shared(o: SlapdOptions): () => Promise<Slapd> {
  let p: Promise<Slapd> | undefined;
  return () => (p ??= slapd(o));
}
const rfc2307 = shared(RFC2307);
const rfc2307bis = shared(RFC2307BIS);
const ad = shared(AD);

const readerPw = join(tmp, 'reader.pw');
writeFileSync(readerPw, READER_PASSWORD + '\n', { mode: 0o600 });

/** an ldap source from a provider block, validated by the policy schema as the daemon would */
function source(block: Record<string, unknown>, log: Logger = silentLogger, name = 'dir'): LdapSource {
  return new LdapSource(name, ldapSchema.parse({ kind: 'ldap', ...block }), { baseDir: tmp, log });
}

async function started_(block: Record<string, unknown>, log?: Logger): Promise<LdapSource> {
  const s = source(block, log);
  await s.start();
  return s;
}

/** a logger whose lines the test can read */
function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ level: 'debug', journal: false, write: (l) => lines.push(l) }), lines };
}

async function faultOf(p: Promise<unknown>): Promise<SourceFault> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SourceFault, `a SourceFault, got ${String(e)}`);
    return e;
  }
  return assert.fail('expected a SourceFault');
}

const adSid = (rid: number) => `${DOMAIN_SID}-${rid}`;
const INJECTIONS = ['*', '*)(uid=*', '*)(|(uid=*', 'alice)(uid=*', ')(objectClass=*', '\\', '\\2a', 'al*', '*ice', 'alice\0', '\0', '(', ')'];

if (missing) {
  it('ldap source against slapd', { skip: missing }, () => {});
} else {
  // ---------------------------------------------------------------------------- the contract

  runSourceContract('ldap (rfc2307, text SIDs)', async () => source({ uri: (await rfc2307()).uri, base: BASE, schema: 'rfc2307', attributes: { objectSid: 'sidText' } }), {
    user: {
      known: [
        { name: 'alice', id: 1000, sid: 'S-1-5-21-1-2-3-1000' },
        { name: 'bob', id: 1001, sid: 'S-1-5-21-1-2-3-1001' },
        { name: 'émile', id: 1003 },
        { name: 'we*rd', id: 1004 },
        { name: 'p(a)r', id: 1005 },
        { name: 'back\\slash', id: 1006 },
        { name: 'alias-a', id: 1010 },
        { name: 'multi', id: 1040 },
        { name: bulkUserName(0), id: bulkUid(0) },
        { name: bulkUserName(999), id: bulkUid(999) },
      ],
      unknownNames: ['ALICE', 'Alice', 'nobody', 'staff', 'we', 'user', ...INJECTIONS],
      unknownIds: [4242, 1999, 99_999],
      unknownSids: ['S-1-5-21-1-2-3-9999', 'S-1-5-32-544'],
      unknownSidIds: [1003, 4242],
    },
    group: {
      known: [
        { name: 'staff', id: 50, sid: 'S-1-5-21-1-2-3-50' },
        { name: 'wheel', id: 10 },
        { name: 'alice', id: 1000 },
        { name: 'engineering', id: 10200 },
        { name: bulkGroupName(0), id: bulkGid(0) },
        { name: bulkGroupName(99), id: bulkGid(99) },
      ],
      unknownNames: ['bob', 'Staff', 'Domain Users', ...INJECTIONS],
      unknownIds: [1001, 4242],
      unknownSids: ['S-1-5-21-1-2-3-1000'],
      unknownSidIds: [10],
    },
  });

  runSourceContract('ldap (rfc2307bis, nfsv4Name)', async () => source({ uri: (await rfc2307bis()).uri, base: BASE, schema: 'rfc2307bis', attributes: { nfsv4Name: 'nfsv4Name' } }), {
    user: {
      known: [
        { name: 'alice', id: 1000 },
        { name: 'carol.v4', id: 1002 },
        { name: bulkUserName(500), id: bulkUid(500) },
      ],
      unknownNames: ['carol', 'carol.v4@example.com', 'carol.v', ...INJECTIONS],
      unknownIds: [4242],
    },
    group: {
      known: [
        { name: 'staff', id: 50 },
        { name: 'alice', id: 1000 },
        { name: bulkGroupName(42), id: bulkGid(42) },
      ],
      unknownNames: ['bob', ...INJECTIONS],
      unknownIds: [4242],
    },
  });

  runSourceContract('ldap (ad, simple bind, binary objectSid)', async () => source({ uri: (await ad()).uri, base: AD_BASE, schema: 'ad', bind: { dn: readerDn(AD_BASE), passwordFile: readerPw } }), {
    user: {
      known: [
        { name: 'alice', id: 1000, sid: adSid(1103) },
        { name: 'bob', id: 1001, sid: adSid(1104) },
        { name: 'émile', id: 1003, sid: adSid(1106) },
        { name: 'we*rd', id: 1004, sid: adSid(1107) },
        { name: bulkUserName(123), id: bulkUid(123), sid: adSid(bulkUserRid(123)) },
      ],
      unknownNames: ['krbtgt', 'Domain Users', ...INJECTIONS],
      unknownIds: [4242],
      unknownSids: [adSid(502), adSid(9999), 'S-1-5-21-1-2-3-1000'],
      unknownSidIds: [4242],
    },
    group: {
      known: [
        { name: 'Domain Users', id: 10000, sid: adSid(513) },
        { name: 'staff', id: 50, sid: adSid(1150) },
        { name: 'engineering', id: 10200, sid: adSid(1200) },
        { name: 'Administrators', id: 544, sid: 'S-1-5-32-544' },
        { name: bulkGroupName(7), id: bulkGid(7), sid: adSid(bulkGroupRid(7)) },
      ],
      unknownNames: ['Domain Admins', 'alice', ...INJECTIONS],
      unknownIds: [4242],
      unknownSids: [adSid(512), adSid(1103)],
      unknownSidIds: [4242],
    },
  });

  // ------------------------------------------------------------------------------- schemas

  describe('ldap: rfc2307', () => {
    let s: LdapSource;
    before(async () => (s = await started_({ uri: (await rfc2307()).uri, base: BASE, schema: 'rfc2307' })));
    after(() => s.stop());

    it('matches names exactly, though uid compares without case in the directory', async () => {
      assert.deepEqual(await s.byName('user', 'alice'), { id: 1000, name: 'alice' });
      assert.equal(await s.byName('user', 'ALICE'), undefined);
    });

    it('finds names with filter metacharacters literally, and nothing by a pattern', async () => {
      assert.deepEqual(await s.byName('user', 'we*rd'), { id: 1004, name: 'we*rd' });
      assert.deepEqual(await s.byName('user', 'p(a)r'), { id: 1005, name: 'p(a)r' });
      assert.deepEqual(await s.byName('user', 'back\\slash'), { id: 1006, name: 'back\\slash' });
      for (const n of ['we*', '*rd', 'p(a', 'back\\', 'we\\2ard']) assert.equal(await s.byName('user', n), undefined, n);
    });

    it('gives no methods for SIDs when no SID attribute is configured', () => {
      assert.equal(s.bySid, undefined);
      assert.equal(s.sidOf, undefined);
    });

    it('answers id → name with the smallest of several names, and with the RDN of a multi-valued uid', async () => {
      assert.deepEqual(await s.byId('user', 1010), { id: 1010, name: 'alias-a' });
      assert.deepEqual(await s.byName('user', 'alias-b'), { id: 1010, name: 'alias-b' });
      assert.deepEqual(await s.byId('user', 1040), { id: 1040, name: 'multi' });
      assert.deepEqual(await s.byName('user', 'a-multi'), { id: 1040, name: 'a-multi' });
    });

    it('faults on a name two entries claim with different ids, naming both', async () => {
      const f = await faultOf(s.byName('user', 'twin'));
      assert.match(f.message, /ambiguous/);
      assert.match(f.message, /uid=twin,ou=people/);
      assert.match(f.message, /uid=twin,ou=staff,ou=people/);
    });

    it('keeps users and groups apart', async () => {
      assert.equal(await s.byName('group', 'bob'), undefined);
      assert.deepEqual(await s.byName('group', 'alice'), { id: 1000, name: 'alice' });
      assert.equal(await s.byId('group', 1001), undefined);
    });

    it('searches userBase and groupBase, one level or the whole sub-tree', async () => {
      const uri = (await rfc2307()).uri;
      const one = await started_({ uri, base: BASE, userBase: `ou=people,${BASE}`, groupBase: `ou=groups,${BASE}`, schema: 'rfc2307', scope: 'one' });
      const sub = await started_({ uri, base: BASE, userBase: `ou=people,${BASE}`, schema: 'rfc2307' });
      const wrong = await started_({ uri, base: BASE, userBase: `ou=groups,${BASE}`, schema: 'rfc2307' });
      try {
        assert.deepEqual(await one.byName('user', 'alice'), { id: 1000, name: 'alice' });
        assert.equal(await one.byName('user', 'deep'), undefined, 'below ou=staff');
        assert.deepEqual(await one.byName('user', 'twin'), { id: 1020, name: 'twin' }, 'the staff twin is out of reach');
        assert.deepEqual(await one.byName('group', 'staff'), { id: 50, name: 'staff' });
        assert.deepEqual(await sub.byName('user', 'deep'), { id: 1030, name: 'deep' });
        assert.equal(await wrong.byName('user', 'alice'), undefined);
      } finally {
        await Promise.all([one.stop(), sub.stop(), wrong.stop()]);
      }
    });

    it('treats a base DN that does not exist as a fault, not as "not found"', async () => {
      const bad = await started_({ uri: (await rfc2307()).uri, base: 'ou=nowhere,dc=example,dc=com', schema: 'rfc2307' });
      try {
        const f = await faultOf(bad.byName('user', 'alice'));
        assert.match(f.message, /No Such Object|result 32/i);
        assert.equal(bad.health().state, 'up', 'the server answered: it stays in service');
      } finally {
        await bad.stop();
      }
    });

    it('says up with its URI', async () => {
      const h = s.health();
      assert.equal(h.state, 'up');
      assert.match(h.detail ?? '', new RegExp((await rfc2307()).uri.replace(/[.]/g, '\\.')));
    });
  });

  describe('ldap: rfc2307bis', () => {
    it('reads groupOfNames + posixGroup groups', async () => {
      const s = await started_({ uri: (await rfc2307bis()).uri, base: BASE, schema: 'rfc2307bis' });
      try {
        assert.deepEqual(await s.byName('group', 'staff'), { id: 50, name: 'staff' });
        assert.deepEqual(await s.byId('group', bulkGid(3)), { id: bulkGid(3), name: bulkGroupName(3) });
        assert.deepEqual(await s.byName('user', 'carol'), { id: 1002, name: 'carol' }, 'without nfsv4Name configured, by uid');
      } finally {
        await s.stop();
      }
    });

    it('with nfsv4Name: an entry that has one answers by it, both ways', async () => {
      const s = await started_({ uri: (await rfc2307bis()).uri, base: BASE, schema: 'rfc2307bis', attributes: { nfsv4Name: 'nfsv4Name' } });
      try {
        assert.deepEqual(await s.byName('user', 'carol.v4'), { id: 1002, name: 'carol.v4' });
        assert.deepEqual(await s.byId('user', 1002), { id: 1002, name: 'carol.v4' });
        assert.equal(await s.byName('user', 'carol'), undefined);
        assert.deepEqual(await s.byId('user', 1001), { id: 1001, name: 'bob' }, 'no nfsv4Name: the uid');
      } finally {
        await s.stop();
      }
    });

    it('with the domain the name came with: equality on the whole NFSv4 name, never a substring filter', async () => {
      // umich's NFSv4Name has no SUBSTR rule: against the real schema `(NFSv4Name=carol@*)` is
      // Undefined and finds no one. The resolver always passes the domain; the filter must use it.
      const filters: string[] = [];
      const log = { ...silentLogger, on: () => true, debug: (e: string, f?: Record<string, unknown>) => { if (e === 'ldap.search') filters.push(String(f?.['filter'])); } };
      const s = await started_({ uri: (await rfc2307bis()).uri, base: BASE, schema: 'rfc2307bis', attributes: { nfsv4Name: 'nfsv4Name' } }, log);
      try {
        assert.deepEqual(await s.byName('user', 'carol.v4', { domain: 'example.com' }), { id: 1002, name: 'carol.v4' });
        assert.equal(await s.byName('user', 'carol.v4', { domain: 'other.example' }), undefined, 'another domain is another name');
        assert.ok(filters.length >= 2 && filters.every((f) => f.includes('(nfsv4Name=carol.v4@') && !f.includes('carol.v4@*')), filters.join('\n'));
      } finally {
        await s.stop();
      }
    });
  });

  describe('ldap: Active Directory', () => {
    let s: LdapSource;
    before(async () => (s = await started_({ uri: (await ad()).uri, base: AD_BASE, schema: 'ad', bind: { dn: readerDn(AD_BASE), passwordFile: readerPw } })));
    after(() => s.stop());

    it('turns the binary objectSid into SID text and back', async () => {
      assert.deepEqual(await s.sidOf!('user', 1000), { id: 1000, sid: adSid(1103) });
      assert.deepEqual(await s.bySid!('user', adSid(1103) as Sid), { id: 1000, sid: adSid(1103) });
      assert.deepEqual(await s.bySid!('user', adSid(1103).toLowerCase() as Sid), { id: 1000, sid: adSid(1103) }, 'any spelling of the SID');
      assert.deepEqual(await s.sidOf!('group', 544), { id: 544, sid: 'S-1-5-32-544' }, 'a SID whose bytes are valid UTF-8');
      assert.deepEqual(await s.bySid!('group', 'S-1-5-32-544' as Sid), { id: 544, sid: 'S-1-5-32-544' });
    });

    it('keeps users and groups apart by SID', async () => {
      assert.equal(await s.bySid!('group', adSid(1103) as Sid), undefined);
      assert.equal(await s.bySid!('user', adSid(513) as Sid), undefined);
    });

    it('answers nothing for an account without Unix ids (the sid source may map it)', async () => {
      assert.equal(await s.byName('user', 'krbtgt'), undefined);
      assert.equal(await s.bySid!('user', adSid(502) as Sid), undefined);
      assert.equal(await s.bySid!('group', adSid(512) as Sid), undefined, 'Domain Admins: no gidNumber');
    });

    it('compares sAMAccountName without case, answering the directory spelling', async () => {
      assert.deepEqual(await s.byName('user', 'ALICE'), { id: 1000, name: 'alice' });
      assert.deepEqual(await s.byName('group', 'domain users'), { id: 10000, name: 'Domain Users' });
    });

    it('finds the primary group from primaryGroupID', async () => {
      assert.deepEqual(await s.primaryGroup('alice'), { sid: adSid(513), gid: 10000 });
      assert.deepEqual(await s.primaryGroup('carol'), { sid: adSid(1200), gid: 10200 });
      assert.deepEqual(await s.primaryGroup('krbtgt'), { sid: adSid(513), gid: 10000 });
      assert.equal(await s.primaryGroup('nobody-here'), undefined);
    });

    it('an anonymous source sees nothing on a directory that wants a bind: a fault, not "not found"', async () => {
      const anon = await started_({ uri: (await ad()).uri, base: AD_BASE, schema: 'ad' });
      try {
        await faultOf(anon.byName('user', 'alice'));
      } finally {
        await anon.stop();
      }
    });
  });

  // ------------------------------------------------------------------------- bind, secrets

  describe('ldap: simple bind and the password', () => {
    const WRONG = 'Wr0ng-But-Secret-Pa55';

    it('never writes the password in logs, faults or health, right or wrong', async () => {
      const uri = (await ad()).uri;
      const wrongPw = join(tmp, 'wrong.pw');
      writeFileSync(wrongPw, WRONG);
      const { log, lines } = capture();
      const good = await started_({ uri, base: AD_BASE, schema: 'ad', bind: { dn: readerDn(AD_BASE), passwordFile: readerPw } }, log);
      const bad = await started_({ uri, base: AD_BASE, schema: 'ad', bind: { dn: readerDn(AD_BASE), passwordFile: wrongPw } }, log);
      try {
        assert.deepEqual(await good.byName('user', 'alice'), { id: 1000, name: 'alice' });
        const f = await faultOf(bad.byName('user', 'alice'));
        assert.match(f.message, /Invalid Credentials|result 49/i);
        const h = bad.health();
        assert.equal(h.state, 'down');
        assert.match(h.detail ?? '', /Invalid Credentials|result 49/i);
        const everything = [f.message, String((f.cause as Error | undefined)?.message), h.detail, good.health().detail, ...lines].join('\n');
        assert.ok(lines.length > 0, 'something was logged');
        for (const secret of [WRONG, READER_PASSWORD]) assert.ok(!everything.includes(secret), `${secret} leaked`);
      } finally {
        await Promise.all([good.stop(), bad.stop()]);
      }
    });

    it('refuses an empty or unreadable password file at start', async () => {
      const uri = (await ad()).uri;
      const empty = join(tmp, 'empty.pw');
      writeFileSync(empty, '\n');
      for (const passwordFile of [empty, join(tmp, 'no-such.pw')]) {
        const s = source({ uri, base: AD_BASE, schema: 'ad', bind: { dn: readerDn(AD_BASE), passwordFile } });
        await assert.rejects(s.start(), (e: unknown) => isNsidmapError(e) && e.code === 'NSIDMAP_EPOLICY_READ' && e.message.includes(passwordFile));
        await s.stop();
      }
    });
  });

  // ------------------------------------------------------------------------------------ TLS

  describe('ldap: TLS', { skip: haveOpenssl ? false : 'openssl is missing (test/setup.sh installs it)' }, () => {
    let pki: Pki;
    let other: Pki;
    let t: Slapd;
    const bind = { dn: readerDn(BASE), passwordFile: readerPw };

    before(async () => {
      [pki, other] = await Promise.all([makePki(tmp, 'ca-a'), makePki(tmp, 'ca-b')]);
      t = await slapd({ ...RFC2307, requireBind: true, tls: { ca: pki.caFile, cert: pki.serverCert, key: pki.serverKey, verifyClient: true } });
    });

    async function works(block: Record<string, unknown>): Promise<void> {
      const s = await started_({ base: BASE, schema: 'rfc2307', ...block });
      try {
        assert.deepEqual(await s.byName('user', 'alice'), { id: 1000, name: 'alice' });
        assert.equal(s.health().state, 'up');
      } finally {
        await s.stop();
      }
    }

    async function refused(block: Record<string, unknown>): Promise<void> {
      const s = await started_({ base: BASE, schema: 'rfc2307', timeout: '2s', ...block });
      try {
        const f = await faultOf(s.byName('user', 'alice'));
        assert.match(f.message, /certificate|self.signed|verify/i);
        assert.equal(s.health().state, 'down');
        assert.match(s.health().detail ?? '', /certificate|self.signed|verify/i);
      } finally {
        await s.stop();
      }
    }

    it('LDAPS with the CA, verification on', () => works({ uri: t.ldapsUri, bind, tls: { caFile: pki.caFile } }));
    it('StartTLS with the CA, verification on', () => works({ uri: t.uri, bind, tls: { startTls: true, caFile: pki.caFile } }));
    it('LDAPS refuses a server certificate from another CA', () => refused({ uri: t.ldapsUri, bind, tls: { caFile: other.caFile } }));
    it('StartTLS refuses a server certificate from another CA', () => refused({ uri: t.uri, bind, tls: { startTls: true, caFile: other.caFile } }));
    it('LDAPS refuses it against the system CAs too', () => refused({ uri: t.ldapsUri, bind, tls: {} }));
    it('verify: false accepts any certificate (and says so)', () => works({ uri: t.ldapsUri, bind, tls: { caFile: other.caFile, verify: false } }));
    it('SASL EXTERNAL binds as the client certificate', () => works({ uri: t.ldapsUri, sasl: 'EXTERNAL', tls: { caFile: pki.caFile, certFile: pki.clientCert, keyFile: pki.clientKey } }));
    it('SASL EXTERNAL over StartTLS', () => works({ uri: t.uri, sasl: 'EXTERNAL', tls: { startTls: true, caFile: pki.caFile, certFile: pki.clientCert, keyFile: pki.clientKey } }));
  });

  // ----------------------------------------------------------------------------- failover

  describe('ldap: failover', () => {
    it('keeps answering from the second server when the first dies, says degraded, and fails back', async () => {
      const [a, b] = await Promise.all([slapd(RFC2307), slapd(RFC2307)]);
      const s = await started_({ uri: [a.uri, b.uri], base: BASE, schema: 'rfc2307', timeout: '1s' });
      try {
        assert.equal(s.health().state, 'up');
        assert.deepEqual(await s.byName('user', 'alice'), { id: 1000, name: 'alice' });
        await a.kill();
        for (let i = 0; i < 50; i++) assert.deepEqual(await s.byName('user', bulkUserName(i)), { id: bulkUid(i), name: bulkUserName(i) }, `lookup ${i} after the kill`);
        const h = s.health();
        assert.equal(h.state, 'degraded');
        assert.ok(h.detail?.startsWith(b.uri), h.detail);
        assert.ok(h.detail?.includes(`failed over from ${a.uri}`), h.detail);
        await a.restart();
        const t0 = performance.now();
        while (s.health().state !== 'up') {
          assert.ok(performance.now() - t0 < 3000, `back on the first server within 3 s: ${s.health().detail}`);
          await sleep(20);
        }
        assert.ok(s.health().detail?.startsWith(a.uri));
        assert.deepEqual(await s.byName('user', 'bob'), { id: 1001, name: 'bob' });
      } finally {
        await s.stop();
        await Promise.all([a.stop(), b.stop()]);
      }
    });

    it('starts degraded when the first server is down at start', async () => {
      const b = await rfc2307();
      const dead = await slapd(RFC2307);
      await dead.kill();
      const s = await started_({ uri: [dead.uri, b.uri], base: BASE, schema: 'rfc2307', timeout: '1s' });
      try {
        assert.equal(s.health().state, 'degraded');
        assert.match(s.health().detail ?? '', /ECONNREFUSED/);
        assert.deepEqual(await s.byName('user', 'alice'), { id: 1000, name: 'alice' });
      } finally {
        await s.stop();
      }
    });
  });

  // ------------------------------------------------------------- outage through the resolver

  describe('ldap: an outage under load, through the Resolver and its cache', () => {
    it('serves stale answers while slapd is down, and fresh ones within 1 s of its restart', async () => {
      const d = await slapd(RFC2307);
      const policy = compilePolicy(
        Policy.parse({
          domain: 'example.com',
          providers: { dir: { kind: 'ldap', uri: d.uri, base: BASE, schema: 'rfc2307', timeout: '500ms' } },
          scopes: [{ name: 'host', providers: ['dir'], ttl: { positive: 1, negative: 1 } }],
        }),
        { log: silentLogger },
      );
      const src = policy.sources.get('dir') as Source;
      await src.start!();
      const store = openCache({ path: ':memory:' });
      let skew = 0;
      const r = new Resolver(policy, store, { log: silentLogger, now: () => Date.now() + skew });
      const ctx = { iface: 'keyring-nfs' } as const;
      const N = 200;
      const ask = (i: number): Promise<Answer> => r.resolve({ kind: 'name-to-uid', name: `${bulkUserName(i)}@example.com` }, ctx);
      const askAll = () => Promise.all(Array.from({ length: N }, (_, i) => ask(i)));
      try {
        for (const [i, a] of (await askAll()).entries()) assert.deepEqual([a.outcome, a.value, a.cache], ['mapped', bulkUid(i), 'miss']);
        await d.kill();
        skew += 10_000; // every entry is now past its TTL
        for (let round = 0; round < 5; round++) {
          for (const [i, a] of (await askAll()).entries()) assert.deepEqual([a.outcome, a.value, a.cache], ['mapped', bulkUid(i), 'stale'], `round ${round}, ${bulkUserName(i)}`);
        }
        assert.equal(src.health!().state, 'down');
        assert.ok(r.metrics.totals().stale >= 5 * N);
        await d.restart();
        const t0 = performance.now();
        for (;;) {
          skew += 10_000;
          const a = await ask(7);
          if (a.cache === 'miss') {
            assert.deepEqual([a.outcome, a.value], ['mapped', bulkUid(7)]);
            break;
          }
          assert.ok(performance.now() - t0 < 1000, `a fresh answer within 1 s of the restart (last: ${a.cache}, ${src.health!().detail})`);
          await sleep(10);
        }
        skew += 10_000;
        for (const [i, a] of (await askAll()).entries()) assert.deepEqual([a.outcome, a.value, a.cache, a.reason], ['mapped', bulkUid(i), 'miss', undefined]);
      } finally {
        await src.stop!();
        store.close();
      }
    });
  });

  // ---------------------------------------------------------------------------- injection

  describe('ldap: injection', () => {
    for (const [what, block, base] of [
      ['rfc2307', async () => ({ uri: (await rfc2307()).uri, schema: 'rfc2307', attributes: { objectSid: 'sidText' } }), BASE],
      ['rfc2307bis with nfsv4Name', async () => ({ uri: (await rfc2307bis()).uri, schema: 'rfc2307bis', attributes: { nfsv4Name: 'nfsv4Name' } }), BASE],
      ['ad', async () => ({ uri: (await ad()).uri, schema: 'ad', bind: { dn: readerDn(AD_BASE), passwordFile: readerPw } }), AD_BASE],
    ] as const) {
      it(`${what}: *, *)(uid=*, \\, NUL and friends match nothing`, async () => {
        const s = await started_({ ...(await block()), base });
        try {
          for (const entity of ['user', 'group'] as Entity[]) {
            for (const n of [...INJECTIONS, 'a'.repeat(300), 'x\uD800y']) assert.equal(await s.byName(entity, n), undefined, `${entity} ${JSON.stringify(n)}`);
          }
        } finally {
          await s.stop();
        }
      });
    }
  });

  // -------------------------------------------------------------------------- slow server

  describe('ldap: a server that stops answering', () => {
    it('times out, bounds what is in flight, fails fast with SourceFault, and recovers on SIGCONT', async () => {
      const d = await slapd(RFC2307);
      const s = await started_({ uri: d.uri, base: BASE, schema: 'rfc2307', timeout: '300ms', pool: 2 });
      try {
        assert.deepEqual(await s.byName('user', 'alice'), { id: 1000, name: 'alice' });
        const limits = s.stats()!;
        d.pause();
        let peakInFlight = 0;
        let peakQueued = 0;
        const sample = setInterval(() => {
          const st = s.stats()!;
          peakInFlight = Math.max(peakInFlight, st.inFlight);
          peakQueued = Math.max(peakQueued, st.queued);
        }, 2);
        const t0 = performance.now();
        const results = await Promise.allSettled(Array.from({ length: 1500 }, (_, i) => s.byName('user', bulkUserName(i))));
        const took = performance.now() - t0;
        clearInterval(sample);
        const st = s.stats()!;
        peakInFlight = Math.max(peakInFlight, st.inFlight);
        assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof SourceFault), 'every request failed with SourceFault');
        assert.ok(took < 1500, `all 1500 settled in ${took.toFixed(0)} ms (timeout 300 ms)`);
        assert.ok(peakInFlight <= limits.maxInFlight, `in flight peaked at ${peakInFlight} ≤ ${limits.maxInFlight}`);
        assert.ok(peakQueued <= limits.maxQueue, `queue peaked at ${peakQueued} ≤ ${limits.maxQueue}`);
        assert.ok(st.saturated > 0, 'the overflow was refused at once');
        assert.ok(st.timeouts > 0);
        assert.deepEqual([st.inFlight, st.queued], [0, 0], 'nothing left behind');
        const reasons = new Set(results.map((r) => (r.status === 'rejected' ? String((r.reason as Error).message).replace(/[0-9]+/g, 'N').slice(0, 40) : '')));
        assert.ok(reasons.size >= 2, `timeouts and refusals: ${[...reasons].join(' | ')}`);
        // while it stays stopped, a lookup fails at once: no waiting on a server known to be out
        const t1 = performance.now();
        await faultOf(s.byName('user', 'bob'));
        assert.ok(performance.now() - t1 < 50, 'failed fast');
        assert.equal(s.health().state, 'down');
        d.resume();
        const t2 = performance.now();
        for (;;) {
          try {
            assert.deepEqual(await s.byName('user', 'bob'), { id: 1001, name: 'bob' });
            break;
          } catch (e) {
            assert.ok(e instanceof SourceFault);
            assert.ok(performance.now() - t2 < 2000, `answers again within 2 s of SIGCONT: ${s.health().detail}`);
            await sleep(20);
          }
        }
        assert.equal(s.health().state, 'up');
      } finally {
        d.resume();
        await s.stop();
        await d.stop();
      }
    });
  });
}
