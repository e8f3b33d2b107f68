/**
 * `idmapctl import idmapd.conf`, as a specification: libnfsidmap's INI dialect (conffile.c), the
 * conversion of each section and key into the policy, a note for everything that cannot be
 * carried over, the files read (includes, drop-ins), and a converted policy that loads and
 * resolves.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { sourceKind } from '../../src/providers/registry.js';
import { Engine } from '../../src/resolver/engine.js';
import { caseContext } from '../../src/resolver/policy/cases.js';
import { checkPolicy } from '../../src/resolver/policy/check.js';
import { idmapdConfFromText, idmapdToPolicy, parseIdmapdConf, readIdmapdConf, versionCompare, type IdmapdImport } from '../../src/resolver/policy/idmapd.js';
import { formatFinding, validatePolicyText } from '../../src/resolver/policy/load.js';
import { parseRequest } from '../../src/resolver/query.js';
import { cli } from '../integration/harness.js';

const tmp = mkdtempSync(join(tmpdir(), `nsidmap-idmapd-${process.pid}-`));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A file's text from lines (each ends in a newline, as libnfsidmap requires). */
const conf = (...lines: string[]) => lines.join('\n') + '\n';

const LDAP_REGISTERED = sourceKind('ldap') !== undefined;

interface Policy {
  version?: number;
  domain?: string;
  providers?: Record<string, Record<string, unknown>>;
  defaults?: { nobody?: { user?: string; group?: string }; ttl?: { positive?: number } };
  scopes?: { name: string; providers?: string[]; realms?: string[] }[];
}

function convert(text: string, file = 'idmapd.conf'): IdmapdImport & { policy: Policy } {
  const r = idmapdToPolicy(idmapdConfFromText(text, file), { hostDomain: 'host.example' });
  return { ...r, policy: parseYaml(r.yaml) as Policy };
}

/** The YAML passes the policy loader and `policy check` with no error (skipped for ldap until that kind exists). */
function assertLoads(yaml: string, file = 'converted.yaml'): void {
  const p = parseYaml(yaml) as Policy;
  if (!LDAP_REGISTERED && Object.values(p.providers ?? {}).some((x) => x['kind'] === 'ldap')) return;
  const v = validatePolicyText(yaml, file);
  if (!v.ok) assert.fail(`converted policy does not load:\n${v.findings.map(formatFinding).join('\n')}\n${yaml}`);
  const errors = checkPolicy(v.policy).filter((f) => f.severity === 'error');
  assert.deepEqual(errors.map(formatFinding), []);
}

/** Notes in order, each matching its pattern. */
function assertNotes(notes: readonly string[], want: readonly RegExp[]): void {
  assert.equal(notes.length, want.length, `notes:\n${notes.join('\n')}`);
  want.forEach((re, i) => assert.match(notes[i]!, re));
}

// ----------------------------------------------------------------------------------- the parser

describe('parseIdmapdConf: the INI dialect of libnfsidmap (conffile.c)', () => {
  const entries = (text: string) =>
    parseIdmapdConf(text, 'f.conf').items.flatMap((i) => (i.kind === 'entry' ? [[i.section, i.key, i.value, i.line] as const] : []));
  const issues = (text: string) => parseIdmapdConf(text, 'f.conf').issues.map((i) => `${i.line}: ${i.message}`);

  const cases: { name: string; text: string; entries: (readonly [string, string, string, number])[]; issues?: RegExp[] }[] = [
    {
      name: 'section names fold to lower case; keys keep their spelling; values are trimmed',
      text: conf('[General]', '  Domain   =   example.com   ', '[ TRANSLATION ]', 'method=nsswitch'),
      entries: [['general', 'Domain', 'example.com', 2], ['translation', 'method', 'nsswitch', 4]],
    },
    {
      name: '# and ; start a comment line, and cut an unquoted value',
      text: conf('# comment', '; comment', '[General]', '   # indented comment', 'Domain = example.com # ours', 'Local-Realms = A.ORG;B.ORG'),
      entries: [['general', 'Domain', 'example.com', 5], ['general', 'Local-Realms', 'A.ORG', 6]],
    },
    {
      name: 'quotes keep # ; and blanks',
      text: conf('[Regex]', 'Prepend-Before-User = "DOMAIN\\ "', "Append-After-User = '@A.ORG#x;y'"),
      entries: [['regex', 'Prepend-Before-User', 'DOMAIN\\ ', 2], ['regex', 'Append-After-User', '@A.ORG#x;y', 3]],
    },
    {
      name: 'a line ending in \\ continues on the next, numbered by its first line',
      text: conf('[Translation]', 'Method = nsswitch,\\', '  static'),
      entries: [['translation', 'Method', 'nsswitch,   static', 2]],
    },
    {
      name: 'lines idmapd ignores are reported with their line',
      text: conf('Domain = outside.org', '[General]', 'just words', '= value', 'Domain = "unterminated', 'Domain =', '[Broken', 'Domain = lost.org'),
      entries: [],
      issues: [/^1: outside any \[section\]/, /^3: not a `key = value` line/, /^4: no key before `=`/, /^5: unmatched quote/, /^6: Domain has an empty value/, /^7: no closing `\]`/, /^8: outside any \[section\]/],
    },
    {
      name: 'a last line without a newline is dropped, as conf_parse does',
      text: '[General]\nDomain = example.com',
      entries: [],
      issues: [/^2: the last line does not end with a newline/],
    },
    {
      name: 'CRLF line ends are taken as LF',
      text: '[General]\r\nDomain = example.com\r\n',
      entries: [['general', 'Domain', 'example.com', 2]],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(entries(c.text), c.entries);
      assert.equal(issues(c.text).length, (c.issues ?? []).length, issues(c.text).join('\n'));
      (c.issues ?? []).forEach((re, i) => assert.match(issues(c.text)[i]!, re));
    });
  }

  it('[Section "sub"] names a subsection; include lines keep their section', () => {
    const p = parseIdmapdConf(conf('[General "x"]', 'Domain = a.org', '[Mapping]', 'include = -more.conf'), 'f.conf');
    assert.deepEqual(p.items, [
      { kind: 'entry', section: 'general', subsection: 'x', key: 'Domain', value: 'a.org', file: 'f.conf', line: 2 },
      { kind: 'include', target: 'more.conf', optional: true, section: 'mapping', file: 'f.conf', line: 4 },
    ]);
  });

  it('drop-ins sort as versionsort: digit runs compare as numbers', () => {
    assert.deepEqual(['10-b.conf', '9-a.conf', 'a.conf', '2.conf'].sort(versionCompare), ['2.conf', '9-a.conf', '10-b.conf', 'a.conf']);
    // glibc's strverscmp(3) example: a run with a leading zero is a fraction and sorts first
    assert.deepEqual(['10', '9', '1', '0', '09', '010', '01', '00', '000'].sort(versionCompare), ['000', '00', '01', '010', '09', '0', '1', '9', '10']);
  });
});

// ------------------------------------------------------------------------------- the conversion

/** Debian's /etc/idmapd.conf (nfs-common 2.6, bookworm) as shipped. */
const DEBIAN = conf(
  '[General]',
  '',
  'Verbosity = 0',
  '# set your own domain here, if it differs from FQDN minus hostname',
  '# Domain = localdomain',
  '',
  '[Mapping]',
  '',
  'Nobody-User = nobody',
  'Nobody-Group = nogroup',
);

/** Every section, after idmapd.conf(5)'s example. */
const EVERY_SECTION = conf(
  '[General]',
  'Verbosity = 2',
  'Domain = domain.org',
  'Local-Realms = DOMAIN.ORG,MY.DOMAIN.ORG',
  'Cache-Expiration = 900',
  'No-Strip = both',
  'Reformat-Group = true',
  '[Mapping]',
  'Nobody-User = nfsnobody',
  'Nobody-Group = nfsnobody',
  '[Translation]',
  'Method = umich_ldap,regex,nsswitch,static',
  'GSS-Methods = umich_ldap,regex,static',
  '[Static]',
  'johndoe@OTHER.DOMAIN.ORG = johnny',
  'alice@DOMAIN.ORG = bob',
  '[Regex]',
  'User-Regex = ^DOMAIN\\\\([^@]+)@DOMAIN.ORG$',
  'Group-Regex = ^([^@]+)@DOMAIN.ORG@DOMAIN.ORG$',
  '[UMICH_SCHEMA]',
  'LDAP_server = ldap.domain.org',
  'LDAP_base = dc=org,dc=domain',
  'LDAP_people_base = ou=People,dc=org,dc=domain',
  'LDAP_use_ssl = yes',
  'LDAP_ca_cert = /etc/ssl/certs/domain-ca.pem',
  'LDAP_timeout_seconds = 10',
  'LDAP_user_dn = cn=idmap,dc=org,dc=domain',
  'LDAP_passwd = s3cret',
  'GSS_principal_attr = GSSAuthName',
  'NFSv4_uid_attr = uidNumber',
);

interface Case {
  readonly name: string;
  readonly text: string;
  readonly policy: Policy;
  readonly notes: RegExp[];
}

const CASES: Case[] = [
  {
    name: "Debian's default file: nsswitch, Debian's nobody, the domain left to the host",
    text: DEBIAN,
    policy: {
      version: 1,
      providers: { nss: { kind: 'nss' } },
      defaults: { nobody: { user: 'nobody', group: 'nogroup' } },
      scopes: [{ name: 'host', providers: ['nss'] }],
    },
    notes: [/^idmapd\.conf: \[General\] Domain is not set: idmapd takes the host's DNS domain \(on this host: host\.example\)/],
  },
  {
    name: 'a plain domain: Local-Realms defaults to the upper-cased Domain, written out',
    text: conf('[General]', 'Domain = example.com', '[Translation]', 'Method = nsswitch'),
    policy: { version: 1, domain: 'example.com', providers: { nss: { kind: 'nss' } }, scopes: [{ name: 'host', providers: ['nss'], realms: ['EXAMPLE.COM'] }] },
    notes: [],
  },
  {
    name: 'every section: carried values, the chain in Method order, a note for each thing left behind',
    text: EVERY_SECTION,
    policy: {
      domain: 'domain.org',
      defaults: { nobody: { user: 'nfsnobody', group: 'nfsnobody' }, ttl: { positive: 900 } },
      scopes: [{ name: 'host', providers: ['ldap', 'nss'], realms: ['DOMAIN.ORG', 'MY.DOMAIN.ORG'] }],
    },
    notes: [
      /:2: \[General\] Verbosity = 2: not carried over/,
      /:4: \[General\] Local-Realms: MY\.DOMAIN\.ORG will be accepted on NFSv4 names as well/,
      /:6: \[General\] No-Strip = both: not carried over/,
      /:7: \[General\] Reformat-Group = true: not carried over/,
      /:13: \[Translation\] GSS-Methods = umich_ldap,regex,static: .*nothing to carry over/,
      /:15: \[Static\] johndoe@OTHER\.DOMAIN\.ORG = johnny: not carried over .*add a scope with `match: \{ domain: OTHER\.DOMAIN\.ORG \}`.*johndoe: <uid of johnny>/,
      /:16: \[Static\] alice@DOMAIN\.ORG = bob: not carried over .*add `alice: <uid of bob>`/,
      /:18: \[Regex\] User-Regex = \^DOMAIN\\\\\(\[\^@\]\+\)@DOMAIN\.ORG\$: not carried over/,
      /:19: \[Regex\] Group-Regex = .*: not carried over/,
      /:28: \[UMICH_SCHEMA\] LDAP_passwd: not carried over — a secret/,
      /:29: \[UMICH_SCHEMA\] GSS_principal_attr: not carried over/,
    ],
  },
  {
    name: 'names are case-insensitive: sections, keys and method names',
    text: conf('[GENERAL]', 'DOMAIN = Example.COM', 'local-realms = EXAMPLE.COM', '[mapping]', 'nobody-user = nobody', '[Translation]', 'METHOD = NSSwitch'),
    policy: { domain: 'Example.COM', defaults: { nobody: { user: 'nobody' } }, scopes: [{ name: 'host', providers: ['nss'], realms: ['EXAMPLE.COM'] }] },
    notes: [],
  },
  {
    name: 'comments and quoting: what idmapd reads is what is carried',
    text: conf('# site config', '[General]', 'Domain = example.com   # the NFSv4 domain', '; Domain = wrong.org', '[Mapping]', 'Nobody-User = "nobody"', "Nobody-Group = 'nogroup' ; Debian's"),
    policy: { domain: 'example.com', defaults: { nobody: { user: 'nobody', group: 'nogroup' } } },
    notes: [],
  },
  {
    name: 'the last assignment of a key wins',
    text: conf('[General]', 'Domain = first.org', 'Domain = second.org'),
    policy: { domain: 'second.org', scopes: [{ name: 'host', providers: ['nss'], realms: ['SECOND.ORG'] }] },
    notes: [],
  },
  {
    name: 'static before nsswitch: the order is kept, each [Static] entry is a note',
    text: conf('[General]', 'Domain = example.com', '[Translation]', 'Method = static,nsswitch', '[Static]', 'svc-backup@EXAMPLE.COM = backup'),
    policy: { scopes: [{ name: 'host', providers: ['nss'], realms: ['EXAMPLE.COM'] }] },
    notes: [/:6: \[Static\] svc-backup@EXAMPLE\.COM = backup: not carried over .*svc-backup: <uid of backup>/],
  },
  {
    name: 'nothing in Method can be carried: a chain that maps nothing, and a note saying so',
    text: conf('[General]', 'Domain = example.com', '[Translation]', 'Method = regex', '[Regex]', 'User-Regex = ^(.*)@EXAMPLE.COM$'),
    policy: { providers: { none: { kind: 'static' } }, scopes: [{ name: 'host', providers: ['none'], realms: ['EXAMPLE.COM'] }] },
    notes: [/:4: \[Translation\] Method = regex: no method could be carried over/, /:6: \[Regex\] User-Regex = .*not carried over/],
  },
  {
    name: 'an unknown method, an unknown key, an unknown section, a subsection: a note each',
    text: conf('[General]', 'Domain = example.com', 'Colour = blue', '[Translation]', 'Method = nsswitch,sss', '[Frobnicate]', 'x = 1', '[Mapping "ns1"]', 'Nobody-User = nfsnobody'),
    policy: { scopes: [{ name: 'host', providers: ['nss'], realms: ['EXAMPLE.COM'] }] },
    notes: [
      /:3: \[General\] Colour = blue: not a key of \[General\]/,
      /:5: \[Translation\] Method sss: sssd's libnfsidmap plugin/,
      /:7: \[frobnicate\] x = 1: \[frobnicate\] is not a section idmapd reads/,
      /:9: \[Mapping "ns1"\] Nobody-User: libnfsidmap does not read keys of a subsection/,
    ],
  },
  {
    name: 'sections for methods not in Method are unused by idmapd, and said so',
    text: conf('[General]', 'Domain = example.com', '[Static]', 'a@B.ORG = c', '[UMICH_SCHEMA]', 'LDAP_server = l'),
    policy: { scopes: [{ name: 'host', providers: ['nss'], realms: ['EXAMPLE.COM'] }] },
    notes: [/:4: \[Static\]: 1 entry unused by idmapd \(static is not in \[Translation\] Method; \[Static\] may serve GSS-Methods\)/, /:6: \[UMICH_SCHEMA\]: 1 entry unused by idmapd/],
  },
  {
    name: 'umich_ldap without LDAP_base: idmapd could not use it, so it is left out',
    text: conf('[General]', 'Domain = example.com', '[Translation]', 'Method = nsswitch,umich_ldap', '[UMICH_SCHEMA]', 'LDAP_server = ldap.example.com'),
    policy: { providers: { nss: { kind: 'nss' } }, scopes: [{ name: 'host', providers: ['nss'], realms: ['EXAMPLE.COM'] }] },
    notes: [/:4: \[Translation\] Method umich_ldap: \[UMICH_SCHEMA\] has no LDAP_base/],
  },
  {
    name: 'Cache-Expiration is read as atoi reads it; a Domain the policy cannot take is left out',
    text: conf('[General]', 'Domain = example com', 'Cache-Expiration = 300s'),
    policy: { defaults: { ttl: { positive: 300 } }, scopes: [{ name: 'host', providers: ['nss'] }] },
    notes: [/:2: \[General\] Domain = example com is not a domain name/, /:3: \[General\] Cache-Expiration = 300s is not a plain number of seconds; idmapd reads it as 300/],
  },
  {
    name: 'lines idmapd ignores become notes',
    text: conf('[General]', 'Domain = example.com', 'Pipefs-Directory = /run/rpc_pipefs', 'Local-Realms =', 'garbage'),
    policy: { domain: 'example.com' },
    notes: [/:3: \[General\] Pipefs-Directory = \/run\/rpc_pipefs: .*nothing to carry over/, /:4: Local-Realms has an empty value/, /:5: not a `key = value` line/],
  },
];

describe('idmapdToPolicy: each idmapd.conf setting, carried over or noted', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const r = convert(c.text);
      // the fields named in the case, exactly; unnamed top-level fields are not checked
      for (const [k, v] of Object.entries(c.policy)) {
        if (k === 'scopes') {
          const got = (r.policy.scopes ?? []).map((s) => ({ name: s.name, providers: s.providers, ...(s.realms ? { realms: s.realms } : {}) }));
          assert.deepEqual(got, v, r.yaml);
        } else assert.deepEqual(r.policy[k as keyof Policy], v, `${k}\n${r.yaml}`);
      }
      assertNotes(r.notes, c.notes);
      assertLoads(r.yaml);
    });
  }

  it('starts with a header naming the source, and lists every note in it too', () => {
    const r = convert(EVERY_SECTION, '/etc/idmapd.conf');
    assert.match(r.yaml, /^# nsidmap policy converted by `idmapctl import idmapd\.conf` from \/etc\/idmapd\.conf\n/);
    const header = r.yaml.slice(0, r.yaml.indexOf('\nversion:'));
    assert.match(header, /# Not carried over, or to review:/);
    for (const n of r.notes) {
      const line = /^\/etc\/idmapd\.conf:(\d+):/.exec(n)?.[1];
      assert.ok(line, n);
      assert.ok(header.includes(`# - idmapd.conf:${line}: `), `header lacks the note of line ${line}`);
    }
  });

  it('writes where each value came from beside it', () => {
    const r = convert(EVERY_SECTION);
    assert.match(r.yaml, /^domain: domain\.org # \[General\] Domain \(idmapd\.conf:3\)$/m);
    assert.match(r.yaml, /^ {4}providers: \[ ldap, nss \] # \[Translation\] Method = umich_ldap,regex,nsswitch,static \(idmapd\.conf:12\); not carried over: regex, static$/m);
  });

  it('[UMICH_SCHEMA] becomes an ldap provider: URI, bases, TLS CA, timeout, umich object classes and NFSv4Name', () => {
    const ldap = convert(EVERY_SECTION).policy.providers?.['ldap'];
    assert.deepEqual(ldap, {
      kind: 'ldap',
      uri: 'ldaps://ldap.domain.org',
      base: 'dc=org,dc=domain',
      userBase: 'ou=People,dc=org,dc=domain',
      schema: 'rfc2307',
      bind: { dn: 'cn=idmap,dc=org,dc=domain', passwordFile: '/etc/nsidmap/ldap.pw' },
      tls: { caFile: '/etc/ssl/certs/domain-ca.pem' },
      timeout: 10,
      attributes: { userClass: 'NFSv4RemotePerson', groupClass: 'NFSv4RemoteGroup', nfsv4Name: 'NFSv4Name' },
    });
  });

  it('never copies the LDAP bind password into the policy or a note', () => {
    const r = convert(EVERY_SECTION);
    assert.doesNotMatch(r.yaml, /s3cret/);
    for (const n of r.notes) assert.doesNotMatch(n, /s3cret/);
  });

  const umich = (...lines: string[]) => convert(conf('[General]', 'Domain = example.com', '[Translation]', 'Method = umich_ldap', '[UMICH_SCHEMA]', 'LDAP_server = ldap.example.com', 'LDAP_base = dc=example,dc=com', ...lines));
  const UMICH_CASES: { name: string; lines: string[]; ldap: Record<string, unknown> | undefined; notes: RegExp[] }[] = [
    {
      name: 'LDAP_tls_reqcert = never is carried as tls.verify: false, and said so',
      lines: ['LDAP_use_ssl = true', 'LDAP_tls_reqcert = never'],
      ldap: { tls: { verify: false } },
      notes: [/:9: \[UMICH_SCHEMA\] LDAP_tls_reqcert = never: carried over as tls\.verify: false/],
    },
    {
      name: 'without LDAP_use_ssl, the CA file is unused by idmapd and left out',
      lines: ['LDAP_ca_cert = /etc/ssl/ca.pem'],
      ldap: { uri: 'ldap://ldap.example.com', tls: undefined },
      notes: [/:8: \[UMICH_SCHEMA\] LDAP_ca_cert: unused by idmapd without LDAP_use_ssl/],
    },
    {
      name: 'a bind DN without a password is an unauthenticated bind: left out',
      lines: ['LDAP_user_dn = cn=idmap,dc=example,dc=com'],
      ldap: { bind: undefined },
      notes: [/:8: \[UMICH_SCHEMA\] LDAP_user_dn without LDAP_passwd: an unauthenticated bind/],
    },
    {
      name: 'a bind over ldap:// is carried, with a note that the password travels in clear (as with idmapd)',
      lines: ['LDAP_user_dn = cn=idmap,dc=example,dc=com', 'LDAP_passwd = pw'],
      ldap: { uri: 'ldap://ldap.example.com', bind: { dn: 'cn=idmap,dc=example,dc=com', passwordFile: '/etc/nsidmap/ldap.pw' } },
      notes: [/:8: \[UMICH_SCHEMA\] LDAP_user_dn over ldap:\/\/ without LDAP_use_ssl: the bind password travels in clear/, /:9: \[UMICH_SCHEMA\] LDAP_passwd: not carried over — a secret/],
    },
    {
      name: 'SASL: EXTERNAL needs a client certificate the file does not name; other mechanisms are not supported',
      lines: ['LDAP_sasl_mech = EXTERNAL', 'LDAP_sasl_authcid = x'],
      ldap: { bind: undefined },
      notes: [/:8: \[UMICH_SCHEMA\] LDAP_sasl_mech = EXTERNAL: not carried over — set `sasl: EXTERNAL` with tls\.certFile/, /:9: \[UMICH_SCHEMA\] LDAP_sasl_authcid: not carried over/],
    },
    {
      name: 'renamed attributes and object classes are carried; differing user and group name attributes are noted',
      lines: ['NFSv4_person_objectclass = inetOrgPerson', 'NFSv4_uid_attr = uidNum', 'NFSv4_name_attr = nfsName', 'NFSv4_group_attr = nfsGroupName'],
      ldap: { attributes: { userClass: 'inetOrgPerson', groupClass: 'NFSv4RemoteGroup', nfsv4Name: 'nfsName', uidNumber: 'uidNum' } },
      notes: [/:11: \[UMICH_SCHEMA\] NFSv4_name_attr = nfsName and NFSv4_group_attr = nfsGroupName differ/],
    },
    {
      name: 'a timeout outside 1-600 s is left to the default',
      lines: ['LDAP_timeout_seconds = 0'],
      ldap: { timeout: undefined },
      notes: [/:8: \[UMICH_SCHEMA\] LDAP_timeout_seconds = 0: outside 1-600 s/],
    },
  ];
  for (const c of UMICH_CASES) {
    it(`[UMICH_SCHEMA]: ${c.name}`, () => {
      const r = umich(...c.lines);
      const ldap = r.policy.providers?.['ldap'];
      for (const [k, v] of Object.entries(c.ldap ?? {})) assert.deepEqual(ldap?.[k], v, `${k}\n${r.yaml}`);
      assertNotes(r.notes, c.notes);
      assertLoads(r.yaml);
    });
  }

  it('[UMICH_SCHEMA]: a server the ldap schema refuses leaves the provider out, with the reason', { skip: !LDAP_REGISTERED && 'the ldap kind is not registered' }, () => {
    const r = convert(conf('[General]', 'Domain = example.com', '[Translation]', 'Method = umich_ldap,nsswitch', '[UMICH_SCHEMA]', 'LDAP_server = ldap://ldap.example.com', 'LDAP_base = dc=x'));
    assert.equal(r.policy.providers?.['ldap'], undefined);
    assert.deepEqual(r.policy.scopes?.[0]?.providers, ['nss']);
    assertNotes(r.notes, [/:6: \[UMICH_SCHEMA\]: the ldap provider built from it does not pass the ldap schema \(uri: /]);
    assertLoads(r.yaml);
  });

  it('LDAP_port and an IPv6 server make the URI; without LDAP_use_ssl it is ldap://, timeout 4 by default', () => {
    const r = convert(conf('[Translation]', 'Method = umich_ldap', '[UMICH_SCHEMA]', 'LDAP_server = fd00::1', 'LDAP_port = 3389', 'LDAP_base = dc=x'));
    const ldap = r.policy.providers?.['ldap'];
    assert.equal(ldap?.['uri'], 'ldap://[fd00::1]:3389');
    assert.equal(ldap?.['timeout'], 4);
  });
});

// --------------------------------------------------------------------------- files: includes, drop-ins

describe('readIdmapdConf: the file, its includes and its drop-ins, as libnfsidmap reads them', () => {
  const dir = join(tmp, 'etc');
  mkdirSync(join(dir, 'idmapd.conf.d'), { recursive: true });
  mkdirSync(join(dir, 'site'), { recursive: true });
  const main = join(dir, 'idmapd.conf');
  writeFileSync(main, conf('[General]', 'Domain = main.org', 'include = site/general.conf', 'include = -site/optional-missing.conf', 'include = site/missing.conf', '[Mapping]', 'Nobody-User = nobody'));
  // included with [General] in force: its keys land there until it names a section
  writeFileSync(join(dir, 'site/general.conf'), conf('Local-Realms = MAIN.ORG,KRB.MAIN.ORG', 'include = ../idmapd.conf'));
  // drop-ins in version order: 9 before 10; dot files and other names are skipped
  writeFileSync(join(dir, 'idmapd.conf.d/10-domain.conf'), conf('[General]', 'Domain = dropin.org'));
  writeFileSync(join(dir, 'idmapd.conf.d/9-mapping.conf'), conf('[Mapping]', 'Nobody-Group = nogroup', 'Nobody-User = overridden'));
  writeFileSync(join(dir, 'idmapd.conf.d/.hidden.conf'), conf('[General]', 'Domain = hidden.org'));
  writeFileSync(join(dir, 'idmapd.conf.d/README'), 'not a conf file\n');
  writeFileSync(join(dir, 'idmapd.conf.d/.conf'), conf('[General]', 'Domain = short.org'));
  mkdirSync(join(dir, 'idmapd.conf.d/dir.conf'));
  writeFileSync(join(dir, 'site/cache.conf'), conf('[General]', 'Cache-Expiration = 120'));
  symlinkSync(join(dir, 'site/cache.conf'), join(dir, 'idmapd.conf.d/20-link.conf'));

  const read = () => readIdmapdConf(main);

  it('reads the file, then its includes in place, then the drop-ins in version order', () => {
    assert.deepEqual(read().files, [main, join(dir, 'site/general.conf'), join(dir, 'idmapd.conf.d/9-mapping.conf'), join(dir, 'idmapd.conf.d/10-domain.conf'), join(dir, 'idmapd.conf.d/20-link.conf')]);
  });

  it('later values win: the drop-ins override the file; an included file inherits the section', () => {
    const r = idmapdToPolicy(read());
    const p = parseYaml(r.yaml) as Policy;
    assert.equal(p.domain, 'dropin.org');
    assert.deepEqual(p.defaults?.nobody, { user: 'overridden', group: 'nogroup' });
    assert.deepEqual(p.scopes?.[0]?.realms, ['MAIN.ORG', 'KRB.MAIN.ORG']);
    assert.deepEqual(p.defaults?.ttl, { positive: 120 }, 'a drop-in that is a link to a file is read');
    assertLoads(r.yaml);
  });

  it('a cycle is cut and reported; a missing include is reported unless optional (-)', () => {
    const r = idmapdToPolicy(read());
    const notes = r.notes.filter((n) => /include/.test(n));
    assert.equal(notes.length, 2, r.notes.join('\n'));
    assert.match(notes[0]!, /idmapd\.conf:5: include = site\/missing\.conf: no such file/);
    assert.match(notes[1]!, /general\.conf:2: include = \.\.\/idmapd\.conf includes a file that is already being read \(a cycle\)/);
  });

  it('the header names every file read, in order', () => {
    const r = idmapdToPolicy(read());
    assert.match(r.yaml, /from these files, in this order \(later values win\):\n# {3}\/.*\/etc\/idmapd\.conf\n# {3}.*site\/general\.conf\n/);
  });

  it('under /etc: the /usr/etc copy and its drop-ins come first (vendor defaults), then the /etc ones', () => {
    const files: Record<string, string> = {
      '/usr/etc/idmapd.conf': conf('[General]', 'Domain = vendor.org', 'Cache-Expiration = 60'),
      '/usr/etc/idmapd.conf.d/50-vendor.conf': conf('[Mapping]', 'Nobody-Group = nogroup'),
      '/etc/idmapd.conf': conf('[General]', 'Domain = admin.org'),
      '/etc/idmapd.conf.d/50-admin.conf': conf('[General]', 'Cache-Expiration = 30'),
    };
    const fs = {
      read: (p: string) => files[p],
      list: (d: string) => {
        const names = Object.keys(files).filter((f) => f.startsWith(`${d}/`)).map((f) => f.slice(d.length + 1));
        return names.length ? names : undefined;
      },
      canonical: (p: string) => p,
    };
    const c = readIdmapdConf('/etc/idmapd.conf', { fs });
    assert.deepEqual(c.files, ['/usr/etc/idmapd.conf', '/usr/etc/idmapd.conf.d/50-vendor.conf', '/etc/idmapd.conf', '/etc/idmapd.conf.d/50-admin.conf']);
    const p = parseYaml(idmapdToPolicy(c).yaml) as Policy;
    assert.equal(p.domain, 'admin.org');
    assert.deepEqual(p.defaults, { nobody: { group: 'nogroup' }, ttl: { positive: 30 } });
    assert.deepEqual(readIdmapdConf('/etc/idmapd.conf', { fs, vendor: false }).files, ['/etc/idmapd.conf', '/etc/idmapd.conf.d/50-admin.conf']);
  });

  it('a file that does not exist (and has no drop-ins) is an ENOENT error', () => {
    assert.throws(() => readIdmapdConf(join(tmp, 'nope.conf')), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  });
});

// ------------------------------------------------------------------------------ resolving, the CLI

describe('a converted idmapd.conf resolves through the Engine', () => {
  it('Domain + nsswitch: root@DOMAIN → 0, and uid 0 → root@domain', async () => {
    const r = convert(conf('[General]', 'Domain = example.com', '[Mapping]', 'Nobody-User = nobody', 'Nobody-Group = nogroup', '[Translation]', 'Method = nsswitch'));
    const engine = Engine.create(undefined, { text: r.yaml, defaultCachePath: ':memory:', cachePath: ':memory:' });
    await engine.start();
    try {
      const ctx = caseContext(undefined, 'keyring-nfs');
      const toId = await engine.resolver.resolve(parseRequest('uid', 'root@EXAMPLE.COM'), ctx);
      assert.equal(toId.value, 0);
      assert.equal(toId.outcome, 'mapped');
      assert.equal(toId.source, 'nss');
      const toName = await engine.resolver.resolve(parseRequest('user', '0'), ctx);
      assert.equal(toName.value, 'root@example.com');
    } finally {
      await engine.stop();
    }
  });
});

describe('idmapctl import idmapd.conf', () => {
  const file = join(tmp, 'cli-idmapd.conf');
  writeFileSync(file, conf('[General]', 'Domain = example.com', 'Verbosity = 1', '[Translation]', 'Method = nsswitch'));

  it('prints the YAML on stdout and each note on stderr as `note: …`, exit 0', async () => {
    const r = await cli(['import', 'idmapd.conf', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, convert(readFileSync(file, 'utf8'), file).yaml);
    assert.equal(r.stderr, `note: ${file}:3: [General] Verbosity = 1: not carried over — for debug logs set \`daemon: { logLevel: debug }\`\n`);
  });

  it('--json prints {yaml, notes}', async () => {
    const r = await cli(['import', 'idmapd.conf', file, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { yaml: string; notes: string[] };
    assert.match(j.yaml, /^domain: example\.com/m);
    assert.equal(j.notes.length, 1);
    assert.equal(r.stderr, '');
  });

  it('a missing file: one NSIDMAP_EPOLICY_READ line, exit 3', async () => {
    const r = await cli(['import', 'idmapd.conf', join(tmp, 'absent.conf')]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /^NSIDMAP_EPOLICY_READ: .*absent\.conf: ENOENT: cannot read the idmapd\.conf to import\n$/);
  });
});
