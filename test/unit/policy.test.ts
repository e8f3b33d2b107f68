/**
 * The policy layer, as a specification: the loader (YAML → schema, every finding at
 * `file:line:column: path: message`), the checker (what the schema cannot see) and policy test
 * cases (`idmapctl policy test`).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NsidmapError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { Engine } from '../../src/resolver/engine.js';
import { loadCases, runCase } from '../../src/resolver/policy/cases.js';
import { checkPolicy } from '../../src/resolver/policy/check.js';
import { compilePolicy } from '../../src/resolver/policy/compile.js';
import { formatFinding, loadPolicyFile, validatePolicyText, type Finding, type LoadedPolicy } from '../../src/resolver/policy/load.js';

const tmp = mkdtempSync(join(tmpdir(), `nsidmap-policy-${process.pid}-`));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** YAML from lines, so that line numbers in the tests are easy to read off. */
const yaml = (...lines: string[]) => lines.join('\n') + '\n';

/** The findings of text that must fail to load, formatted. */
function loadErrors(text: string, file = 'p.yaml'): string[] {
  const r = validatePolicyText(text, file);
  assert.ok(!r.ok, 'expected the policy to be refused');
  return r.findings.map(formatFinding);
}

function loaded(text: string, file = 'p.yaml'): LoadedPolicy {
  const r = validatePolicyText(text, file);
  if (!r.ok) assert.fail(`expected a valid policy, got:\n${r.findings.map(formatFinding).join('\n')}`);
  return r.policy;
}

/** checkPolicy's findings, formatted, optionally only one severity. */
function check(text: string, severity?: Finding['severity']): string[] {
  return checkPolicy(loaded(text))
    .filter((f) => severity === undefined || f.severity === severity)
    .map(formatFinding);
}

// ------------------------------------------------------------------------------------------ load

describe('load: every finding is file:line:column: path: message', () => {
  it('reports YAML syntax errors at their position, with no path', () => {
    assert.deepEqual(loadErrors(yaml('domain: a.example', 'domain: b.example'), 'dup.yaml'), ['dup.yaml:2:1: Map keys must be unique']);
    assert.deepEqual(loadErrors(yaml('scopes:', '  - name: a', '\tids: host'), 'tab.yaml'), ['tab.yaml:3:1: Tabs are not allowed as indentation']);
  });

  it('points an unknown key at the key itself', () => {
    const text = yaml('scopes:', '  - name: a', '    domian: example.com');
    assert.deepEqual(loadErrors(text), ['p.yaml:3:5: scopes[0].domian: unknown key']);
    assert.deepEqual(loadErrors(yaml('domain: example.com', 'colour: blue')), ['p.yaml:2:1: colour: unknown key']);
  });

  it('points an unknown key inside a provider block at the key', () => {
    const text = yaml('providers:', '  f:', '    kind: files', '    pasword: /etc/passwd');
    assert.deepEqual(loadErrors(text), ['p.yaml:4:5: providers.f.pasword: unknown key']);
  });

  it('points a wrong enum value at the value and lists the allowed ones', () => {
    const [ids] = loadErrors(yaml('scopes:', '  - name: a', '    ids: containr'));
    assert.match(ids ?? '', /^p\.yaml:3:10: scopes\[0\]\.ids: .*"host".*"container"/);
    const [iface] = loadErrors(yaml('scopes:', '  - name: a', '    match:', '      interface: keyring-nsf'));
    assert.match(iface ?? '', /^p\.yaml:4:18: scopes\[0\]\.match\.interface: .*"keyring-nfs"/);
  });

  it('reports a wrong enum value inside a list on its line, naming the allowed values', () => {
    const found = loadErrors(yaml('scopes:', '  - name: a', '    match:', '      interface: [nfsd, pipfs]'));
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(found[0]!, /^p\.yaml:4:\d+: scopes\[0\]\.match\.interface.*"pipefs"/);
  });

  for (const bad of ['10x', '-5', '1.5h', 'ten minutes', '10 m']) {
    it(`refuses the duration "${bad}" at its position`, () => {
      const [f] = loadErrors(yaml('scopes:', '  - name: a', '    ttl:', `      positive: "${bad}"`));
      assert.match(f ?? '', /^p\.yaml:4:17: scopes\[0\]\.ttl\.positive: a duration/);
    });
  }

  it('refuses a malformed SID as a match, a SID range domain, and a static table key, each at its position', () => {
    assert.deepEqual(loadErrors(yaml('scopes:', '  - name: a', '    match:', '      sidDomain: S-1-5-x')), [
      'p.yaml:4:18: scopes[0].match.sidDomain: not a SID (S-1-5-21-…)',
    ]);
    const range = loadErrors(yaml('scopes:', '  - name: a', '    sid:', '      ranges:', '        - { domain: S-1-5-21-x, first: 1000, count: 10 }'));
    assert.equal(range.length, 1, range.join('\n'));
    assert.match(range[0]!, /^p\.yaml:5:21: scopes\[0\]\.sid\.ranges\[0\]\.domain: not a (domain )?SID/);
    const [key] = loadErrors(yaml('providers:', '  t:', '    kind: static', '    sids:', '      users:', '        S-1-zz: 5'));
    assert.match(key ?? '', /^p\.yaml:6:9: providers\.t\.sids\.users\.S-1-zz: not a SID/);
  });

  it('refuses an id out of range at its position', () => {
    const [f] = loadErrors(yaml('providers:', '  t:', '    kind: static', '    users:', '      alice: -1'));
    assert.match(f ?? '', /^p\.yaml:5:14: providers\.t\.users\.alice: /);
  });

  it('reports every finding, not only the first', () => {
    const text = yaml('scopes:', '  - name: a', '    ids: nope', '    colour: blue');
    const found = loadErrors(text);
    assert.equal(found.length, 2, found.join('\n'));
  });

  describe('durations', () => {
    const rows: [string, number][] = [
      ['600', 600],
      ['"600"', 600],
      ['"90s"', 90],
      ['"10m"', 600],
      ['"2h"', 7200],
      ['"7d"', 604800],
    ];
    for (const [text, seconds] of rows) {
      it(`reads ${text} as ${seconds} s (ttl and cache.maxStale alike)`, () => {
        const cfg = loaded(yaml('cache:', `  maxStale: ${text}`, 'scopes:', '  - name: a', '    ttl:', `      positive: ${text}`, `      negative: ${text}`)).config;
        assert.equal(cfg.cache?.maxStale, seconds);
        assert.deepEqual(cfg.scopes?.[0]?.ttl, { positive: seconds, negative: seconds });
      });
    }

    it('reads a maxStale of 0 as 0 s (never serve stale), but refuses a TTL of 0 (a key timeout of 0 never expires)', () => {
      assert.equal(loaded(yaml('cache:', '  maxStale: 0')).config.cache?.maxStale, 0);
      const found = loadErrors(yaml('scopes:', '  - name: a', '    ttl:', '      positive: 0', '      negative: "0s"'));
      assert.equal(found.length, 2, found.join('\n'));
      for (const f of found) assert.match(f, /:\d+:\d+: scopes\[0\]\.ttl\.(positive|negative): a TTL must be at least 1 second/);
    });
  });

  for (const [what, text] of [['an empty file', ''], ['a file of comments', '# nothing here yet\n']] as const) {
    it(`accepts ${what}: the embedded default is one "host" scope over files + nss, in the host's domain`, () => {
      const p = loaded(text);
      assert.deepEqual(p.config, {});
      assert.deepEqual(checkPolicy(p), []);
      const compiled = compilePolicy(p.config, { log: silentLogger, hostDomain: () => 'Lab.Example' });
      assert.equal(compiled.domain, 'lab.example');
      assert.deepEqual(compiled.scopes.map((s) => s.name), ['host']);
      assert.deepEqual([...compiled.sources.keys()], ['files', 'nss']);
      assert.deepEqual(compiled.scopes[0]!.sources.map((s) => `${s.name}:${s.kind}`), ['files:files', 'nss:nss']);
      assert.equal(compiled.scopes[0]!.domain, 'lab.example');
    });
  }

  it('prefers the policy domain over the host domain', () => {
    const compiled = compilePolicy(loaded('domain: Example.COM\n').config, { log: silentLogger, hostDomain: () => 'lab.example' });
    assert.equal(compiled.domain, 'example.com');
  });

  it('loadPolicyFile throws one NsidmapError listing the findings with the file name', () => {
    const file = join(tmp, 'bad-key.yaml');
    writeFileSync(file, yaml('scopes:', '  - name: a', '    domian: example.com'));
    assert.throws(() => loadPolicyFile(file), (e: unknown) => {
      assert.ok(e instanceof NsidmapError);
      assert.equal(e.code, 'NSIDMAP_EPOLICY_SCHEMA');
      assert.equal(e.message, `${file}:3:5: scopes[0].domian: unknown key`);
      return true;
    });
    const syntax = join(tmp, 'bad-yaml.yaml');
    writeFileSync(syntax, yaml('domain: a.example', 'domain: b.example'));
    assert.throws(() => loadPolicyFile(syntax), { code: 'NSIDMAP_EPOLICY_SYNTAX', message: `${syntax}:2:1: Map keys must be unique` });
    assert.throws(() => loadPolicyFile(join(tmp, 'missing.yaml')), { code: 'NSIDMAP_EPOLICY_READ' });
  });
});

// ----------------------------------------------------------------------------------------- check

describe('check: what the schema cannot see', () => {
  const providers = ['providers:', '  dir: { kind: static }'];

  it('refuses a scope name used twice, at the second one', () => {
    const text = yaml(...providers, 'scopes:', '  - name: host', '    match: { interface: nfsd }', '  - name: host');
    assert.deepEqual(check(text, 'error'), ['p.yaml:6:11: scopes[1].name: scope name "host" is already used by scopes[0]']);
  });

  it('refuses a reference to a provider that does not exist, at the reference', () => {
    const text = yaml(...providers, 'defaults:', '  providers: [dir, ldpa]', 'scopes:', '  - name: host', '    providers: [dir, nope]');
    assert.deepEqual(check(text, 'error'), [
      'p.yaml:4:20: defaults.providers[1]: no provider named "ldpa" (known: dir)',
      'p.yaml:7:22: scopes[0].providers[1]: no provider named "nope" (known: dir)',
    ]);
  });

  it('knows the embedded providers (files, nss) when the policy declares none', () => {
    assert.deepEqual(check(yaml('scopes:', '  - name: host', '    providers: [files, nss]'), 'error'), []);
  });

  it('refuses a static table that is not one-to-one', () => {
    const text = yaml('providers:', '  t:', '    kind: static', '    users: { alice: 1001, alias: 1001 }');
    const [f, ...rest] = check(text, 'error');
    assert.deepEqual(rest, []);
    assert.match(f ?? '', /^p\.yaml:3:5: providers\.t: static table is not one-to-one: .*alice, alias.*1001/);
  });

  it('refuses SID ranges of two scopes that share ids, and accepts disjoint ones', () => {
    const ranges = (a: string, b: string) =>
      yaml(
        'scopes:',
        '  - name: corp',
        '    match: { sidDomain: S-1-5-21-1-2-3 }',
        `    sid: { ranges: [ ${a} ] }`,
        '  - name: emea',
        '    match: { sidDomain: S-1-5-21-4-5-6 }',
        `    sid: { ranges: [ ${b} ] }`,
        '  - name: rest',
      );
    const overlapping = check(ranges('{ domain: S-1-5-21-1-2-3, first: 1000000, count: 1000000 }', '{ domain: S-1-5-21-4-5-6, first: 1500000, count: 1000000 }'), 'error');
    assert.equal(overlapping.length, 1, overlapping.join('\n'));
    assert.match(overlapping[0]!, /^p\.yaml:7:22: scopes\[1\]\.sid\.ranges\[0\]: SID range overlaps scopes\[0\]\.sid\.ranges\[0\]: .*1500000–1999999/);
    const disjoint = check(ranges('{ domain: S-1-5-21-1-2-3, first: 1000000, count: 1000000 }', '{ domain: S-1-5-21-4-5-6, first: 2000000, count: 1000000 }'), 'error');
    assert.deepEqual(disjoint, []);
  });

  it('refuses a SID range of a scope that overlaps a sid provider', () => {
    const text = yaml(
      'providers:',
      '  algo: { kind: sid, ranges: [ { domain: S-1-5-21-1-2-3, first: 5000, count: 100 } ] }',
      'scopes:',
      '  - name: host',
      '    sid: { ranges: [ { domain: S-1-5-21-9-9-9, first: 5050, count: 10 } ] }',
    );
    const errors = check(text, 'error');
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0]!, /scopes\[0\]\.sid\.ranges\[0\]: SID range overlaps providers\.algo\.ranges\[0\]/);
  });

  describe('unreachable scopes', () => {
    it('refuses a scope after a catch-all', () => {
      const text = yaml(...providers, 'scopes:', '  - name: all', '  - name: never', '    match: { interface: nfsd }');
      assert.deepEqual(check(text, 'error'), ['p.yaml:5:11: scopes[1].name: unreachable: every request it matches is taken by scopes[0] (all) first']);
    });

    it('refuses a scope shadowed by an earlier scope whose conditions are a subset of its own', () => {
      const text = yaml(
        'scopes:',
        '  - name: server',
        '    match: { interface: nfsd }',
        '  - name: tenant',
        '    match: { interface: nfsd, authDomain: "tenant-*" }',
        '  - name: rest',
      );
      assert.deepEqual(check(text, 'error'), ['p.yaml:4:11: scopes[1].name: unreachable: every request it matches is taken by scopes[0] (server) first']);
    });

    it('accepts a scope that adds a request property (domain) to an earlier idRange scope: it takes names the earlier one never does', () => {
      // match.ts: a scope naming only idRange takes no name requests, so `tenant` is reachable
      const text = yaml(
        'scopes:',
        '  - name: ids',
        '    match: { idRange: { first: 1000, count: 10 } }',
        '  - name: tenant',
        '    match: { idRange: { first: 1000, count: 10 }, domain: c1.example }',
        '  - name: rest',
      );
      assert.deepEqual(check(text, 'error'), []);
    });

    it('refuses a scope whose only request property an earlier scope already takes with the same value', () => {
      const text = yaml(
        'scopes:',
        '  - name: c1',
        '    match: { idRange: { first: 1000, count: 10 }, domain: c1.example }',
        '  - name: c1-names',
        '    match: { domain: c1.example }',
        '  - name: rest',
      );
      assert.deepEqual(check(text, 'error'), ['p.yaml:4:11: scopes[1].name: unreachable: every request it matches is taken by scopes[0] (c1) first']);
    });

    it('accepts the same idRange under another id space: under ids: container it is matched through the reader\'s map', () => {
      // a container reader's id with no host id fits `tenant`'s range not at all; `plain` still takes it
      const scopes = (ids: string) => yaml(
        'scopes:',
        '  - name: tenant',
        '    match: { interface: nfsd, idRange: { first: 100000, count: 65536 } }',
        '    ids: container',
        '  - name: plain',
        '    match: { interface: nfsd, idRange: { first: 100000, count: 65536 } }',
        `    ids: ${ids}`,
        '  - name: rest',
      );
      assert.deepEqual(check(scopes('host'), 'error'), []);
      assert.deepEqual(check(scopes('container'), 'error'), ['p.yaml:5:11: scopes[1].name: unreachable: every request it matches is taken by scopes[0] (tenant) first']);
    });

    it('accepts scopes whose conditions differ', () => {
      const text = yaml(
        'scopes:',
        '  - name: c1',
        '    match: { idRange: { first: 1000, count: 10 }, domain: c1.example }',
        '  - name: c2',
        '    match: { idRange: { first: 2000, count: 10 }, domain: c2.example }',
        '  - name: nfsd',
        '    match: { interface: nfsd }',
        '  - name: rest',
      );
      assert.deepEqual(check(text), []);
    });

    it('warns when an interface has no catch-all scope, and counts an empty match as one', () => {
      const none = check(yaml('scopes:', '  - name: server', '    match: { interface: nfsd }'), 'warning');
      assert.equal(none.length, 1);
      assert.match(none[0]!, /no catch-all scope for keyring-nfs, keyring-cifs, pipefs/);
      assert.deepEqual(check(yaml('scopes:', '  - name: all', '    match: {}'), 'warning'), []);
      assert.deepEqual(check(yaml('scopes:', '  - name: all'), 'warning'), []);
    });
  });

  describe('the keyring rule: a requester may not choose the scope of a host-wide keyring answer', () => {
    it('refuses a scope that matches on the container and may answer keyring requests', () => {
      const text = yaml('scopes:', '  - name: web', '    match: { container: "web-*" }', '  - name: rest');
      const [f, ...rest] = check(text, 'error');
      assert.deepEqual(rest, []);
      assert.match(f ?? '', /^p\.yaml:3:12: scopes\[0\]\.match: matches on the requester \(container\) but may answer keyring or pipefs requests/);
    });

    for (const iface of ['keyring-nfs', 'keyring-cifs', 'pipefs']) {
      it(`refuses it when the scope names ${iface} among its interfaces (cached host-wide by the kernel)`, () => {
        const text = yaml('scopes:', '  - name: web', `    match: { interface: [nfsd, ${iface}], netns: container }`, '  - name: rest');
        assert.match(check(text, 'error').join('\n'), /keyring/);
      });
    }

    it('accepts the same condition on a scope for nfsd only', () => {
      const text = yaml('scopes:', '  - name: web', '    match: { interface: [nfsd], container: "web-*" }', '  - name: rest');
      assert.deepEqual(check(text, 'error'), []);
    });

    it('accepts keyring scopes chosen by request properties', () => {
      const text = yaml('scopes:', '  - name: c1', '    match: { interface: keyring-nfs, idRange: { first: 1000, count: 2 }, domain: c1.example }', '  - name: rest');
      assert.deepEqual(check(text, 'error'), []);
    });
  });

  it('refuses map lines that overlap, inside or on the host side', () => {
    const text = yaml(
      'scopes:',
      '  - name: c1',
      '    match: { interface: nfsd }',
      '    map:',
      '      uid: [[0, 100000, 1000], [500, 200000, 10]]',
      '      gid: [[0, 100000, 1000], [5000, 100500, 10]]',
      '  - name: rest',
      '    map:',
      '      uid: [[0, 100000, 1000], [1000, 300000, 10]]',
    );
    assert.deepEqual(check(text, 'error'), [
      'p.yaml:5:32: scopes[0].map.uid[1]: inside ids overlap line 0',
      'p.yaml:6:32: scopes[0].map.gid[1]: host ids overlap line 0',
    ]);
  });
});

// ----------------------------------------------------------------------------------------- cases

describe('cases: idmapctl policy test', () => {
  const dir = join(tmp, 'cases');
  const policyFile = join(dir, 'policy.yaml');
  const casesFile = join(dir, 'policy.test.yaml');
  const casesText = yaml(
    'policy: policy.yaml',
    'cases:',
    '  - name: alice maps',
    '    query: { uid: alice@example.com }',
    '    expect: { value: 1001, outcome: mapped, scope: host, source: dir }',
    '  - name: wrong on purpose',
    '    query: { user: 1001 }',
    '    expect:',
    '      outcome: mapped',
    '      value: bob@example.com',
  );
  let engine: Engine;

  before(async () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(policyFile, yaml('domain: example.com', 'providers:', '  dir: { kind: static, users: { alice: 1001 } }', 'scopes:', '  - name: host', '    providers: [dir]'));
    writeFileSync(casesFile, casesText);
    engine = Engine.create(policyFile, { defaultCachePath: ':memory:', cachePath: ':memory:', hostDomain: () => 'unused.example' });
    await engine.start();
  });
  after(() => engine?.stop());

  it('resolves the policy named in the cases file against the file’s directory', () => {
    assert.equal(loadCases(casesFile).policy, policyFile);
  });

  it('passes a case whose expectations all hold', async () => {
    const c = loadCases(casesFile);
    const r = await runCase(engine, c.cases[0]!, 0, c.where);
    assert.deepEqual({ ok: r.ok, failures: r.failures, name: r.name }, { ok: true, failures: [], name: 'alice maps' });
  });

  it('fails a case and points the failure at file:line:column of the expect field that did not hold', async () => {
    const c = loadCases(casesFile);
    const r = await runCase(engine, c.cases[1]!, 1, c.where);
    assert.equal(r.ok, false);
    const lines = casesText.split('\n');
    const line = lines.findIndex((l) => l.includes('value: bob@example.com')) + 1;
    const column = lines[line - 1]!.indexOf('bob@') + 1;
    assert.deepEqual(r.failures, [`${casesFile}:${line}:${column}: expected value "bob@example.com", got "alice@example.com"`]);
    assert.equal(r.answer.value, 'alice@example.com');
  });

  it('refuses a cases file with an unknown expect field, at the key', () => {
    const bad = join(dir, 'bad.test.yaml');
    writeFileSync(bad, yaml('cases:', '  - query: { uid: a@example.com }', '    expect: { valu: 1 }'));
    assert.throws(() => loadCases(bad), (e: unknown) => {
      assert.ok(e instanceof NsidmapError);
      assert.equal(e.code, 'NSIDMAP_EPOLICY_SCHEMA');
      assert.match(e.message, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:`));
      return true;
    });
  });
});
