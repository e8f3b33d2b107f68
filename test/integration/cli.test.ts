/**
 * idmapctl as an admin runs it: a real process per command, in-process with --policy and through
 * a real nsidmapd on a Unix socket in this file's own temp directory. Checks what a user and a
 * script rely on: data on stdout, one `NSIDMAP_E…: message` line per error on stderr (never a
 * stack), and the exit status.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as nodeModule from 'node:module';
import { after, before, describe, it } from 'node:test';
import { COMMANDS } from '../../src/cli/app.js';
import { MAX_LINE } from '../../src/responders/admin/protocol.js';
import { cli, CLI_MAIN, exchange, Proc, REPO, scratch, STACK, startDaemon, staticPolicy, waitReady, type CliResult } from './harness.js';

const tmp = scratch('cli');
after(() => tmp.cleanup());

const POLICY = tmp.path('policy.yaml');
writeFileSync(POLICY, staticPolicy(1001));

/** stderr is exactly `lines` error lines, each `CODE: …`, and no stack. */
function assertErrorLines(r: CliResult, code: RegExp, lines = 1): void {
  const got = r.stderr.trimEnd().split('\n');
  assert.equal(got.length, lines, r.stderr);
  for (const l of got) assert.match(l, code);
  assert.doesNotMatch(r.stderr, STACK);
}

const cmdName = (c: (typeof COMMANDS)[number]): string => (c.verb ? `${c.noun} ${c.verb}` : c.noun);

describe('idmapctl query in-process (--policy)', () => {
  it('name → uid: prints the id, exit 0', async () => {
    const r = await cli(['query', 'uid', 'alice@example.com', '--policy', POLICY]);
    assert.equal(r.stdout, '1001\n');
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
  });

  it('--json: parses, with answer.value', async () => {
    const r = await cli(['query', 'user', '1001', '--policy', POLICY, '--json']);
    assert.equal(r.code, 0);
    const j = JSON.parse(r.stdout) as { answer: { value: unknown; outcome: string } };
    assert.equal(j.answer.value, 'alice@example.com');
    assert.equal(j.answer.outcome, 'mapped');
  });

  it('--explain: shows the scope and the source', async () => {
    const r = await cli(['query', 'gid', 'staff@example.com', '--policy', POLICY, '--explain']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^answer +50$/m);
    assert.match(r.stdout, /^scope +host$/m);
    assert.match(r.stdout, /^source +t$/m);
  });

  it('an unknown user: answered but not mapped, exit 1', async () => {
    const r = await cli(['query', 'uid', 'mallory@example.com', '--policy', POLICY]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /\((nobody|negative)/);
    assert.equal(r.stderr, '');
  });

  it('a bad lookup kind: exit 2, one NSIDMAP_EREQUEST/EUSAGE line, no stack', async () => {
    const r = await cli(['query', 'passwd', 'alice', '--policy', POLICY]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assertErrorLines(r, /^NSIDMAP_E(USAGE|REQUEST): /);
  });

  it('a missing value: exit 2 with the usage', async () => {
    const r = await cli(['query', 'uid', '--policy', POLICY]);
    assert.equal(r.code, 2);
    assertErrorLines(r, /^NSIDMAP_EUSAGE: usage: idmapctl query /);
  });

  it('a policy file that is not there: exit 3, NSIDMAP_EPOLICY_READ', async () => {
    const r = await cli(['query', 'uid', 'alice@example.com', '--policy', tmp.path('absent.yaml')]);
    assert.equal(r.code, 3);
    assertErrorLines(r, /^NSIDMAP_EPOLICY_READ: .*absent\.yaml/);
  });
});

describe('idmapctl through a running daemon (--socket)', () => {
  const socket = tmp.path('admin.sock');
  let d: Proc;
  const S = ['--socket', socket];

  before(async () => {
    d = startDaemon({ policy: POLICY, socket, cache: tmp.path('cache.sqlite') });
    await waitReady(d, socket);
  });
  after(async () => {
    if (d?.running) d.signal('SIGKILL');
    await d?.exited;
  });

  it('query: the same answers as in-process; the second is a cache hit', async () => {
    const first = await cli(['query', 'uid', 'alice@example.com', ...S, '--json']);
    assert.equal(first.code, 0, first.stderr);
    const a = JSON.parse(first.stdout) as { answer: { value: unknown; cache: string } };
    assert.equal(a.answer.value, 1001);
    assert.equal(a.answer.cache, 'miss');
    const again = await cli(['query', 'uid', 'alice@example.com', ...S, '--explain']);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /^answer +1001$/m);
    assert.match(again.stdout, /^scope +host$/m);
    assert.match(again.stdout, /^source +t$/m);
    assert.match(again.stdout, /^cache +fresh$/m);
    const back = await cli(['query', 'user', '1001', ...S]);
    assert.deepEqual([back.code, back.stdout], [0, 'alice@example.com\n']);
  });

  it('query: unknown user exit 1; bad kind exit 2 with one error line', async () => {
    const unknown = await cli(['query', 'uid', 'mallory@example.com', ...S]);
    assert.equal(unknown.code, 1);
    const bad = await cli(['query', 'passwd', 'alice', ...S]);
    assert.equal(bad.code, 2);
    assertErrorLines(bad, /^NSIDMAP_E(USAGE|REQUEST): /);
  });

  it('query --ns PID answers in that process\'s namespaces (here: this test\'s)', async () => {
    const r = await cli(['query', 'uid', 'alice@example.com', '--ns', String(process.pid), '--explain', ...S]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^answer +1001$/m);
  });

  it('status: the policy in force, the scope and the source', async () => {
    const r = await cli(['status', ...S]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^nsidmapd \S+, pid \d+/m);
    assert.ok(r.stdout.includes(POLICY));
    assert.match(r.stdout, /^host +example\.com +host +\S+ +t$/m);
    assert.match(r.stdout, /^t +static +up/m);
  });

  it('status --json: parses, names the policy file and the daemon pid', async () => {
    const r = await cli(['status', '--json', ...S]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as { pid: number; policy: { file: string }; socket: string; scopes: { name: string }[] };
    assert.equal(s.pid, d.pid);
    assert.equal(s.policy.file, POLICY);
    assert.equal(s.socket, socket);
    assert.deepEqual(s.scopes.map((x) => x.name), ['host']);
  });

  it('global options before the command: idmapctl --socket S status, --json --socket=S cache stats', async () => {
    const r = await cli([...S, 'status']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^nsidmapd /);
    const j = await cli(['--json', `--socket=${socket}`, 'cache', 'stats']);
    assert.equal(j.code, 0, j.stderr);
    assert.equal(typeof (JSON.parse(j.stdout) as { entries: unknown }).entries, 'number');
  });

  it('$NSIDMAP_SOCKET stands in for --socket', async () => {
    const r = await cli(['status'], { NSIDMAP_SOCKET: socket });
    assert.equal(r.code, 0, r.stderr);
  });

  it('cache list shows the cached answer under the key cache flush --key takes', async () => {
    const r = await cli(['cache', 'list', ...S]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^KEY +VALUE +SOURCE +EXPIRES$/m);
    assert.match(r.stdout, /^host name-to-uid alice +1001 +t +in /m);
    const j = await cli(['cache', 'list', '--json', ...S]);
    const rows = JSON.parse(j.stdout) as { key: string; value: string }[];
    assert.ok(rows.some((e) => e.key === 'host name-to-uid alice' && String(e.value) === '1001'), j.stdout);
  });

  it('cache list of a cache larger than a request line may be (one response line over 64 KiB)', async () => {
    // 1500 negative answers, asked in one pipelined write on the raw socket
    const n = 1500;
    const batch = Array.from({ length: n }, (_, i) => JSON.stringify({ id: i + 1, op: 'resolve', kind: 'uid', value: `nobody${i}@example.com` })).join('\n') + '\n';
    const ex = await exchange(socket, batch, n, 20_000);
    assert.ok(ex.responses.every((r) => r['ok'] === true));
    const r = await cli(['cache', 'list', '--json', '--limit', '100000', ...S]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.length > MAX_LINE, `${r.stdout.length} bytes`);
    assert.ok((JSON.parse(r.stdout) as unknown[]).length >= n);
  });

  it('cache stats counts the lookups', async () => {
    const r = await cli(['cache', 'stats', ...S]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^entries +[1-9]\d*$/m);
    assert.match(r.stdout, /^hits +[1-9]\d*$/m);
  });

  it('cache flush --key "host name-to-uid alice": one entry; the next query is a miss', async () => {
    const r = await cli(['cache', 'flush', '--key', 'host name-to-uid alice', ...S]);
    assert.deepEqual([r.code, r.stdout], [0, '1 entry flushed\n']);
    const again = await cli(['cache', 'flush', '--key', 'host name-to-uid alice', ...S]);
    assert.equal(again.stdout, '0 entries flushed\n');
    const q = await cli(['query', 'uid', 'alice@example.com', '--json', ...S]);
    assert.equal((JSON.parse(q.stdout) as { answer: { cache: string } }).answer.cache, 'miss');
  });

  it('cache flush --scope host empties the scope; an unknown scope is an error', async () => {
    const r = await cli(['cache', 'flush', '--scope', 'host', ...S]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^[1-9]\d* entr(y|ies) flushed\n$/);
    const list = await cli(['cache', 'list', '--json', '--scope', 'host', ...S]);
    assert.deepEqual(JSON.parse(list.stdout), []);
    const bad = await cli(['cache', 'flush', '--scope', 'nope', ...S]);
    assert.equal(bad.code, 2);
    assertErrorLines(bad, /^NSIDMAP_EREQUEST: no scope named "nope"/);
    const both = await cli(['cache', 'flush', '--scope', 'host', '--key', 'x', ...S]);
    assert.equal(both.code, 2);
    assertErrorLines(both, /^NSIDMAP_EUSAGE: /);
  });

  it('reload: picks up the changed policy file', async () => {
    writeFileSync(POLICY, staticPolicy(2002));
    try {
      const r = await cli(['reload', ...S]);
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, 'policy reloaded\n', '']);
      await cli(['cache', 'flush', ...S]);
      const q = await cli(['query', 'uid', 'alice@example.com', ...S]);
      assert.equal(q.stdout, '2002\n');
    } finally {
      writeFileSync(POLICY, staticPolicy(1001));
    }
  });

  it('reload of a broken policy: exit 3, the finding with its code, the old policy kept', async () => {
    writeFileSync(POLICY, staticPolicy(3003).replace('providers: [t]', 'providers: [t, missing]'));
    try {
      const r = await cli(['reload', ...S]);
      assert.equal(r.code, 3);
      assertErrorLines(r, /^NSIDMAP_EPOLICY_CHECK: .*policy\.yaml:\d+:\d+: .*missing/);
      const q = await cli(['query', 'uid', 'alice@example.com', ...S]);
      assert.equal(q.stdout, '2002\n');
    } finally {
      writeFileSync(POLICY, staticPolicy(1001));
    }
  });
});

describe('idmapctl with no daemon', () => {
  it('--socket /nonexistent status: NSIDMAP_ENODAEMON, exit 7', async () => {
    const r = await cli(['--socket', '/nonexistent/admin.sock', 'status']);
    assert.equal(r.code, 7);
    assert.equal(r.stdout, '');
    assertErrorLines(r, /^NSIDMAP_ENODAEMON: \/nonexistent\/admin\.sock/);
  });

  it('a socket path nobody listens on (a plain file): NSIDMAP_ENODAEMON, exit 7', async () => {
    const f = tmp.path('plain-file.sock');
    writeFileSync(f, '');
    const r = await cli(['query', 'uid', 'alice@example.com', '--socket', f]);
    assert.equal(r.code, 7);
    assertErrorLines(r, /^NSIDMAP_ENODAEMON: /);
  });
});

describe('idmapctl policy', { concurrency: true }, () => {
  const good = tmp.path('good.yaml');
  const badYaml = tmp.path('bad-yaml.yaml');
  const badSchema = tmp.path('bad-schema.yaml');
  const badCheck = tmp.path('bad-check.yaml');
  const passing = tmp.path('passing.test.yaml');
  const failing = tmp.path('failing.test.yaml');
  writeFileSync(good, staticPolicy(1001));
  writeFileSync(badYaml, 'domain: example.com\nproviders:\n  t: { kind: static, users: { alice: 1 }\nscopes: [\n');
  writeFileSync(badSchema, staticPolicy().replace('kind: static', 'kind: statik') + '    ids: everything\n');
  writeFileSync(badCheck, staticPolicy().replace('providers: [t]', 'providers: [t, missing]') + '  - name: never\n    providers: [t]\n');
  writeFileSync(passing, `policy: good.yaml
cases:
  - name: alice to uid
    query: { uid: alice@example.com }
    expect: { value: 1001, outcome: mapped, scope: host, source: t }
  - query: { group: 50 }
    expect: { value: staff@example.com }
`);
  writeFileSync(failing, `policy: good.yaml
cases:
  - name: alice to uid
    query: { uid: alice@example.com }
    expect: { value: 1001 }
  - name: staff is not 51
    query: { gid: staff@example.com }
    expect: { value: 51 }
`);

  it('check on a good file: exit 0, ok', async () => {
    const r = await cli(['policy', 'check', good]);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, `${good}: ok\n`, '']);
  });

  const bad: [string, string, string, number][] = [
    ['a YAML error', badYaml, 'NSIDMAP_EPOLICY_SYNTAX', 1],
    ['a schema error', badSchema, 'NSIDMAP_EPOLICY_SCHEMA', 2],
    ['consistency errors', badCheck, 'NSIDMAP_EPOLICY_CHECK', 2],
  ];
  for (const [what, file, code, atLeast] of bad) {
    it(`check on a file with ${what}: exit 3, every finding line \`${code}: file:line:col: …\``, async () => {
      const r = await cli(['policy', 'check', file]);
      assert.equal(r.code, 3);
      const lines = r.stderr.trimEnd().split('\n');
      assert.ok(lines.length >= atLeast, r.stderr);
      const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      for (const l of lines) assert.match(l, new RegExp(`^${code}: ${escaped}:\\d+:\\d+: `));
      assert.doesNotMatch(r.stderr, STACK);
      assert.doesNotMatch(r.stdout, /: ok/);
    });
  }

  it('check --json on a bad file: the findings as JSON on stdout, exit 3', async () => {
    const r = await cli(['policy', 'check', badCheck, '--json']);
    assert.equal(r.code, 3);
    const findings = JSON.parse(r.stdout) as { line: number; column: number; severity: string }[];
    assert.ok(findings.filter((f) => f.severity === 'error').length >= 2);
    assertErrorLines(r, /^NSIDMAP_EPOLICY_CHECK: /);
  });

  it('test with passing cases: exit 0, ends with "2 passed, 0 failed"', async () => {
    const r = await cli(['policy', 'test', passing]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ok 1 - alice to uid$/m);
    assert.ok(r.stdout.endsWith('2 passed, 0 failed\n'), r.stdout);
  });

  it('test with a failing case: exit 4, the failure at file:line:col, ends with "1 passed, 1 failed"', async () => {
    const r = await cli(['policy', 'test', failing]);
    assert.equal(r.code, 4);
    assert.match(r.stdout, /^not ok 2 - staff is not 51$/m);
    assert.match(r.stdout, /failing\.test\.yaml:\d+:\d+: expected value 51, got 50/);
    assert.ok(r.stdout.endsWith('1 passed, 1 failed\n'), r.stdout);
    assertErrorLines(r, /^NSIDMAP_EPOLICY_TEST: /);
  });

  it('test --policy overrides the policy the cases file names', async () => {
    const other = tmp.path('other.yaml');
    writeFileSync(other, staticPolicy(1001).replace('staff: 50', 'staff: 51'));
    const r = await cli(['policy', 'test', failing, '--policy', other]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(r.stdout.endsWith('2 passed, 0 failed\n'));
  });

  it('schema prints a JSON Schema', async () => {
    const r = await cli(['policy', 'schema']);
    assert.equal(r.code, 0);
    const s = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(typeof s['$schema'], 'string');
    assert.ok(s['properties'] && typeof s['properties'] === 'object');
  });
});

describe('idmapctl help and usage', { concurrency: true }, () => {
  it('idmapctl --help lists every command', async () => {
    const r = await cli(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: idmapctl /);
    for (const c of COMMANDS) assert.match(r.stdout, new RegExp(`^  ${cmdName(c)} +\\S`, 'm'), cmdName(c));
  });

  for (const c of COMMANDS) {
    it(`idmapctl ${cmdName(c)} --help: a usage line and an Example: section`, async () => {
      const r = await cli([...cmdName(c).split(' '), '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.startsWith(`Usage: idmapctl ${cmdName(c)}`), r.stdout);
      assert.match(r.stdout, /\nExample:\n {2}idmapctl \S/);
      assert.equal(r.stderr, '');
    });
  }

  it('no command: the help, exit 2; an unknown command or a missing verb: one NSIDMAP_EUSAGE line, exit 2', async () => {
    const none = await cli([]);
    assert.equal(none.code, 2);
    assert.match(none.stdout, /^Usage: idmapctl /);
    const unknown = await cli(['frobnicate']);
    assert.equal(unknown.code, 2);
    assertErrorLines(unknown, /^NSIDMAP_EUSAGE: unknown command "frobnicate"/);
    const noVerb = await cli(['cache']);
    assert.equal(noVerb.code, 2);
    assertErrorLines(noVerb, /^NSIDMAP_EUSAGE: "cache" needs one of: list, flush, stats/);
    const badOpt = await cli(['status', '--frobnicate']);
    assert.equal(badOpt.code, 2);
    assertErrorLines(badOpt, /^NSIDMAP_EUSAGE: /);
  });
});

/**
 * Start-up cost: a command that only talks to the daemon must not load what only the in-process
 * commands need (zod, SQLite, koffi, the LDAP client, YAML, the engine): on a slow VM each of
 * them is seconds. A resolve hook (module.register, Node ≥ 20.6) registered after tsx's own
 * appends every module URL the CLI resolves to a file; the test reads it after the CLI exits.
 */
describe('idmapctl start-up loads no heavy module for commands that ask the daemon', { concurrency: true, skip: typeof nodeModule.register !== 'function' && 'needs module.register (Node >= 20.6)' }, () => {
  // Under this file's scratch directory, removed by its `after` even when a test fails.
  const hooks = tmp.path('trace-hooks.mjs');
  const register = tmp.path('trace-register.mjs');
  writeFileSync(hooks, `import { appendFileSync } from 'node:fs';
let out;
export async function initialize(data) { out = data.out; }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(out, r.url + '\\n');
  return r;
}
`);
  writeFileSync(register, `import { register } from 'node:module';
register('./trace-hooks.mjs', import.meta.url, { data: { out: process.env.NSIDMAP_TEST_MODULE_TRACE } });
`);
  const HEAVY = /\/node_modules\/(zod|better-sqlite3|koffi|ldapts|yaml)\/|\/src\/resolver\/engine\.[jt]s\b|\/src\/daemon\/handler\.[jt]s\b/;
  const absent = tmp.path('absent.sock');
  let n = 0;

  /** Run idmapctl (the sources, through tsx, as `cli()` does) with the hook; its exit and the URLs it resolved. */
  async function traced(args: readonly string[]): Promise<CliResult & { urls: string[] }> {
    const trace = tmp.path(`modules-${++n}.txt`);
    writeFileSync(trace, '');
    try {
      const p = new Proc(spawn(process.execPath, ['--import', 'tsx', '--import', register, CLI_MAIN, ...args], {
        cwd: REPO,
        env: { ...process.env, NSIDMAP_TEST_MODULE_TRACE: trace },
        stdio: ['ignore', 'pipe', 'pipe'],
      }));
      const exit = await p.waitExit(20_000);
      const urls = [...new Set(readFileSync(trace, 'utf8').split('\n').filter((u) => u !== ''))];
      return { code: exit.code, stdout: p.stdout, stderr: p.stderr, urls };
    } finally {
      rmSync(trace, { force: true });
    }
  }

  const daemonCommands: [string[], number][] = [
    [['--version'], 0],
    [['status', '--socket', absent], 7],
    [['query', 'uid', 'a@b', '--socket', absent], 7],
    [['cache', 'stats', '--socket', absent], 7],
    [['stats', '--socket', absent], 7],
  ];
  for (const [args, code] of daemonCommands) {
    it(`idmapctl ${args.join(' ').replace(absent, 'ABSENT')}: exit ${code}, no zod, better-sqlite3, koffi, ldapts, yaml, engine or handler loaded`, async () => {
      const r = await traced(args);
      assert.equal(r.code, code, r.stderr);
      // the hook saw the CLI's own modules: an empty trace would prove nothing
      assert.ok(r.urls.some((u) => /\/src\/cli\/app\.[jt]s\b/.test(u)), `no module trace:\n${r.urls.join('\n')}`);
      assert.deepEqual(r.urls.filter((u) => HEAVY.test(u)), []);
    });
  }

  it('idmapctl policy check policies/host-default.yaml still works (exit 0) and the trace does see the policy modules', async () => {
    const r = await traced(['policy', 'check', 'policies/host-default.yaml']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /policies\/host-default\.yaml: ok/);
    assert.ok(r.urls.some((u) => /\/node_modules\/yaml\//.test(u)), r.urls.join('\n'));
  });
});
