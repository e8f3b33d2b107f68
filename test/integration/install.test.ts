/**
 * contrib/install.sh, always with DESTDIR=<temp dir>: the real /etc is never touched.
 *
 * Most cases install from a small stand-in source tree (a built dist/ of a few files, a
 * node_modules with production, optional and dev packages) so that they are fast and exact; the
 * rule template is the repository's own when it exists. One case installs the real tree and runs
 * the installed idmapctl, which proves the production node_modules is complete.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, describe, it } from 'node:test';
import { REPO } from './harness.js';

const work = mkdtempSync(join(tmpdir(), 'nsidmap-install-'));
after(() => rmSync(work, { recursive: true, force: true }));
let seq = 0;

const NODE = process.execPath;
const PREFIX = '/usr/lib/nsidmap';
const HELPER = `${PREFIX}/bin/nsidmap-upcall`;
const TEMPLATE = join(REPO, 'keyring/request-key.d/nsidmap.conf');
const C_SOURCE = join(REPO, 'keyring/nsidmap-upcall.c');
const HAS_CC = spawnSync('sh', ['-c', 'command -v "${CC:-cc}"']).status === 0;
const STAND_IN_TEMPLATE = 'create id_resolver * * @HELPER@ nfs %k\ncreate cifs.idmap * * @HELPER@ cifs %k\n';
const NFSIDMAP_RULE = 'create id_resolver * * /usr/sbin/nfsidmap -t 600 %k %d\n';
const CIFS_RULE = 'create cifs.idmap * * /usr/sbin/cifs.idmap %k\n';

function put(path: string, text: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, mode);
}

/** A built source tree in miniature, with the real install script, unit and rule template. */
function fakeSource(opts: { helper?: boolean; cSource?: boolean } = {}): string {
  const src = join(work, `src-${++seq}`);
  cpSync(join(REPO, 'contrib/install.sh'), join(src, 'contrib/install.sh'));
  cpSync(join(REPO, 'contrib/systemd/nsidmapd.service'), join(src, 'contrib/systemd/nsidmapd.service'));
  put(join(src, 'keyring/request-key.d/nsidmap.conf'), existsSync(TEMPLATE) ? readFileSync(TEMPLATE, 'utf8') : STAND_IN_TEMPLATE);
  put(join(src, 'dist/src/daemon/main.js'), 'console.log("daemon", ...process.argv.slice(2));\n');
  put(join(src, 'dist/src/cli/main.js'), 'console.log("cli", ...process.argv.slice(2));\n');
  put(join(src, 'dist/keyring/upcall.js'), 'console.log("node helper", ...process.argv.slice(2));\n');
  if (opts.helper !== false) put(join(src, 'dist/keyring/nsidmap-upcall'), '#!/bin/sh\necho compiled helper "$@"\n', 0o755);
  if (opts.cSource) {
    // install.sh compiles through the build script `npm run build` uses (same flags)
    cpSync(C_SOURCE, join(src, 'keyring/nsidmap-upcall.c'));
    cpSync(join(REPO, 'scripts/build-upcall.sh'), join(src, 'scripts/build-upcall.sh'));
  }
  const pkg = (name: string, deps: Record<string, string> = {}, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ name, version: '1.0.0', dependencies: deps, ...extra });
  put(join(src, 'package.json'), pkg('nsidmap', { a: '1' }, { devDependencies: { d: '1' } }));
  put(join(src, 'node_modules/a/package.json'), pkg('a', { b: '1' }, { optionalDependencies: { '@s/c': '1', absent: '1' } }));
  put(join(src, 'node_modules/a/node_modules/b/package.json'), pkg('b')); // nested: a's own copy
  put(join(src, 'node_modules/b/package.json'), pkg('b')); // hoisted copy nobody needs but a dev tool
  put(join(src, 'node_modules/@s/c/package.json'), pkg('@s/c'));
  put(join(src, 'node_modules/d/package.json'), pkg('d', { b: '1' }));
  return src;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function install(src: string, dest: string, ...args: string[]): Run {
  const r = spawnSync('bash', [join(src, 'contrib/install.sh'), '--node', NODE, ...args], {
    env: { ...process.env, DESTDIR: dest },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function newDest(): string {
  const d = join(work, `dest-${++seq}`);
  mkdirSync(d);
  return d;
}

/** Every file under `dir`, relative, sorted, with its mode and content. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(relative(dir, p), `${(statSync(p).mode & 0o777).toString(8)} ${readFileSync(p, 'utf8')}`);
    }
  };
  walk(dir);
  return out;
}

/** Does this ELF64 file name a program interpreter (PT_INTERP), i.e. is it dynamically linked? */
function hasInterp(elf: Buffer): boolean {
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const size = elf.readUInt16LE(0x36);
  const count = elf.readUInt16LE(0x38);
  for (let i = 0; i < count; i++) if (elf.readUInt32LE(phoff + i * size) === 3) return true;
  return false;
}

/** The active lines of a request-key rule file. */
const ruleLines = (text: string) => text.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));

describe('contrib/install.sh', () => {
  it('--help says what it installs and every option, with an example', () => {
    const r = spawnSync('bash', [join(REPO, 'contrib/install.sh'), '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    for (const o of ['--prefix', '--destdir', 'DESTDIR', '--node', '--disable-conflicting', '--uninstall', '--dry-run', 'least-wild', 'Examples:']) assert.ok(r.stdout.includes(o), o);
  });

  it('puts every file where it belongs under DESTDIR, with absolute paths in rules, unit and wrappers', () => {
    const src = fakeSource();
    const dest = newDest();
    const realRules = readdirSync('/etc/request-key.d').sort();
    const r = install(src, dest);
    assert.equal(r.code, 0, r.stderr);
    // no C source in this tree: the helper `npm run build` made is installed, and that is said
    assert.match(r.stderr, /^install\.sh: WARNING: cannot compile the helper here .* whose in-process fallback .* runs .*\/dist\/keyring\/upcall\.js/);
    assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
    const P = join(dest, PREFIX);
    for (const f of ['dist/src/daemon/main.js', 'dist/src/cli/main.js', 'dist/keyring/upcall.js', 'package.json', 'install-manifest']) assert.ok(existsSync(join(P, f)), f);
    // production only: a, its optional @s/c (the missing optional one is fine), a's nested b; not d
    assert.deepEqual(readdirSync(join(P, 'node_modules')).sort(), ['@s', 'a']);
    assert.ok(existsSync(join(P, 'node_modules/@s/c/package.json')));
    assert.ok(existsSync(join(P, 'node_modules/a/node_modules/b/package.json')));
    // the compiled helper, byte for byte and executable
    assert.equal(readFileSync(join(dest, HELPER), 'utf8'), readFileSync(join(src, 'dist/keyring/nsidmap-upcall'), 'utf8'));
    assert.equal(statSync(join(dest, HELPER)).mode & 0o777, 0o755);

    const rule = readFileSync(join(dest, '/etc/request-key.d/nsidmap.conf'), 'utf8');
    assert.doesNotMatch(rule, /@[A-Z_]+@/);
    const lines = ruleLines(rule);
    assert.ok(lines.some((l) => l.split(/\s+/)[1] === 'id_resolver'), 'a rule for id_resolver');
    assert.ok(lines.some((l) => l.split(/\s+/)[1] === 'cifs.idmap'), 'a rule for cifs.idmap');
    for (const l of lines) {
      const prog = l.split(/\s+/)[4]!.replace(/^\|/, '');
      assert.ok(prog.startsWith('/'), `absolute program in: ${l}`);
      assert.ok(!prog.startsWith(dest), `no DESTDIR in: ${l}`);
    }
    assert.ok(lines.every((l) => l.includes(HELPER)), 'every rule runs the installed helper');

    const unit = readFileSync(join(dest, '/etc/systemd/system/nsidmapd.service'), 'utf8');
    assert.match(unit, /^Type=notify$/m);
    assert.ok(unit.includes(`\nExecStart=${NODE} --optimize-for-size ${PREFIX}/dist/src/daemon/main.js\n`), unit);
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    for (const d of ['RuntimeDirectory', 'CacheDirectory', 'StateDirectory']) assert.match(unit, new RegExp(`^${d}=nsidmap$`, 'm'));
    assert.doesNotMatch(unit, /@[A-Z_]+@/);

    const daemon = readFileSync(join(dest, '/usr/sbin/nsidmapd'), 'utf8');
    assert.ok(daemon.includes(`exec '${NODE}' '--optimize-for-size' '${PREFIX}/dist/src/daemon/main.js' "$@"`), daemon);
    const ctl = readFileSync(join(dest, '/usr/bin/idmapctl'), 'utf8');
    assert.ok(ctl.includes(`exec '${NODE}' '${PREFIX}/dist/src/cli/main.js' "$@"`), ctl);
    assert.equal(statSync(join(dest, '/usr/bin/idmapctl')).mode & 0o777, 0o755);
    assert.equal(spawnSync('sh', ['-n', join(dest, '/usr/bin/idmapctl')]).status, 0);

    assert.deepEqual(readdirSync('/etc/request-key.d').sort(), realRules, 'the real /etc/request-key.d is untouched');
  });

  it('honours --prefix in every path it writes', () => {
    const src = fakeSource();
    const dest = newDest();
    const r = install(src, dest, '--prefix', '/opt/nsidmap');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(dest, '/opt/nsidmap/bin/nsidmap-upcall')));
    assert.ok(readFileSync(join(dest, '/etc/request-key.d/nsidmap.conf'), 'utf8').includes('/opt/nsidmap/bin/nsidmap-upcall'));
    assert.ok(readFileSync(join(dest, '/usr/bin/idmapctl'), 'utf8').includes("'/opt/nsidmap/dist/src/cli/main.js'"));
  });

  it('warns, and changes nothing, when nfsidmap or cifs.idmap rules are already there', () => {
    const src = fakeSource();
    const dest = newDest();
    put(join(dest, 'etc/request-key.d/id_resolver.conf'), NFSIDMAP_RULE);
    put(join(dest, 'etc/request-key.conf'), '# comment\n' + CIFS_RULE + 'negate * * * /bin/keyctl negate %k 30 %S\n');
    const r = install(src, dest);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /WARNING: other request-key rules already handle id_resolver \/ cifs\.idmap keys/);
    assert.ok(r.stderr.includes(`/etc/request-key.d/id_resolver.conf:1: ${NFSIDMAP_RULE.trim()}`), r.stderr);
    assert.ok(r.stderr.includes(`/etc/request-key.conf:2: ${CIFS_RULE.trim()}`), r.stderr);
    assert.doesNotMatch(r.stderr, /negate \* \* \*/, 'a negate line is not a competing create rule');
    assert.match(r.stderr, /least-wild/);
    assert.match(r.stderr, /first one it reads/);
    assert.match(r.stderr, /--disable-conflicting/);
    assert.equal(readFileSync(join(dest, 'etc/request-key.d/id_resolver.conf'), 'utf8'), NFSIDMAP_RULE);
    assert.ok(existsSync(join(dest, '/etc/request-key.d/nsidmap.conf')));
  });

  it('--disable-conflicting then --uninstall: rules renamed, then restored, and nothing of nsidmap left', () => {
    const src = fakeSource();
    const dest = newDest();
    put(join(dest, 'etc/request-key.d/id_resolver.conf'), NFSIDMAP_RULE);
    put(join(dest, 'etc/request-key.d/cifs.idmap.conf'), CIFS_RULE);
    const mixed = 'create cifs.spnego * * /usr/sbin/cifs.upcall %k\n' + CIFS_RULE;
    put(join(dest, 'etc/request-key.d/cifs.conf'), mixed);
    put(join(dest, 'etc/request-key.d/dns.conf'), 'create dns_resolver * * /sbin/key.dns_resolver %k\n');
    for (const p of ['usr/sbin/nfsidmap', 'usr/sbin/cifs.idmap', 'usr/sbin/cifs.upcall', 'sbin/key.dns_resolver']) put(join(dest, p), '#!/bin/sh\n', 0o755);
    const before = snapshot(dest);

    const r = install(src, dest, '--disable-conflicting');
    assert.equal(r.code, 0, r.stderr);
    const rk = join(dest, 'etc/request-key.d');
    assert.deepEqual(readdirSync(rk).sort(), ['cifs.conf', 'cifs.idmap.conf.disabled-by-nsidmap', 'dns.conf', 'id_resolver.conf.disabled-by-nsidmap', 'nsidmap.conf']);
    assert.equal(readFileSync(join(rk, 'id_resolver.conf.disabled-by-nsidmap'), 'utf8'), NFSIDMAP_RULE);
    // a file with other rules in it is not disabled wholesale: the admin is told to edit it
    assert.match(r.stderr, /\/etc\/request-key\.d\/cifs\.conf also holds other rules: not renamed/);

    const u = install(src, dest, '--uninstall');
    assert.equal(u.code, 0, u.stderr);
    assert.deepEqual(snapshot(dest), before, 'exactly the files there before, with the same content');
    assert.ok(!existsSync(join(dest, PREFIX)));
  });

  it('--uninstall leaves a renamed rule disabled when its program is gone (it would break those lookups)', () => {
    const src = fakeSource();
    const dest = newDest();
    put(join(dest, 'etc/request-key.d/id_resolver.conf'), NFSIDMAP_RULE); // no usr/sbin/nfsidmap under DESTDIR
    assert.equal(install(src, dest, '--disable-conflicting').code, 0);
    const u = install(src, dest, '--uninstall');
    assert.equal(u.code, 0, u.stderr);
    assert.deepEqual(readdirSync(join(dest, 'etc/request-key.d')), ['id_resolver.conf.disabled-by-nsidmap']);
    assert.match(u.stderr, /runs a program that is not installed any more: left disabled/);
  });

  it('--dry-run prints the actions and writes nothing', () => {
    const src = fakeSource();
    const dest = newDest();
    put(join(dest, 'etc/request-key.d/id_resolver.conf'), NFSIDMAP_RULE);
    const before = snapshot(dest);
    const r = install(src, dest, '--dry-run', '--disable-conflicting');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /would run: cp -a .*\/dist\/\. /);
    assert.match(r.stdout, /would write .*\/etc\/request-key\.d\/nsidmap\.conf/);
    assert.match(r.stdout, /would run: mv -f .*id_resolver\.conf .*id_resolver\.conf\.disabled-by-nsidmap/);
    assert.ok(r.stdout.includes(HELPER));
    assert.deepEqual(snapshot(dest), before);
  });

  it('compiles the C helper at install time, with the installed node and fallback paths in it', { skip: existsSync(C_SOURCE) && HAS_CC ? false : 'needs keyring/nsidmap-upcall.c and a C compiler' }, () => {
    const src = fakeSource({ cSource: true });
    const dest = newDest();
    const r = install(src, dest);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const helper = readFileSync(join(dest, HELPER));
    assert.equal(helper.subarray(0, 4).toString('latin1'), '\x7fELF');
    assert.equal(statSync(join(dest, HELPER)).mode & 0o777, 0o755);
    const help = spawnSync(join(dest, HELPER), ['--help'], { encoding: 'utf8' });
    assert.ok(help.stdout.includes(`${NODE} ${PREFIX}/dist/keyring/upcall.js`), help.stdout);
    // a static PIE (no ld.so: ~0.1 ms less per upcall) unless the build said it could not link one
    assert.equal(hasInterp(helper), r.stdout.includes('linking dynamically'), r.stdout);
    assert.equal(helper.readUInt16LE(16), 3, 'ET_DYN: position-independent');
    // the checkout's build, with the checkout's paths compiled in, is not installed
    assert.ok(!existsSync(join(dest, PREFIX, 'dist/keyring/nsidmap-upcall')));
  });

  it('falls back to the Node helper, with a warning, when no C helper can be had', () => {
    const src = fakeSource({ helper: false });
    const dest = newDest();
    const r = install(src, dest);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /WARNING: dist\/keyring\/nsidmap-upcall was not compiled/);
    assert.ok(readFileSync(join(dest, HELPER), 'utf8').includes(`exec '${NODE}' '${PREFIX}/dist/keyring/upcall.js' "$@"`));
  });

  it('refuses an unbuilt tree and unknown options with a clear message', () => {
    const src = fakeSource();
    rmSync(join(src, 'dist'), { recursive: true });
    const r = install(src, newDest());
    assert.equal(r.code, 1);
    assert.match(r.stderr, /dist is not built: run `npm ci && npm run build` first/);
    const o = install(fakeSource(), newDest(), '--frobnicate');
    assert.equal(o.code, 1);
    assert.match(o.stderr, /unknown option "--frobnicate"/);
  });

  const built = existsSync(join(REPO, 'dist/src/cli/main.js')) && existsSync(TEMPLATE);
  it('installs the real tree, whose idmapctl then runs from the installed files alone', { skip: built ? false : 'needs `npm run build` and keyring/request-key.d/nsidmap.conf' }, () => {
    const dest = newDest();
    const r = install(REPO, dest);
    assert.equal(r.code, 0, r.stderr);
    const P = join(dest, PREFIX);
    assert.ok(!existsSync(join(P, 'node_modules/typescript')), 'no dev dependencies');
    const v = spawnSync(NODE, [join(P, 'dist/src/cli/main.js'), 'keys', 'list', '--type', 'nfs'], { encoding: 'utf8', env: { ...process.env, NSIDMAP_KEYRING_NAMES: 'nfs=nsidmap-install-test-absent' } });
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout, 'No nsidmap-install-test-absent keys found.\n');
    // a lookup opens a cache, whose SQL migrations (schema/) must be installed too
    const q = spawnSync(NODE, [join(P, 'dist/src/cli/main.js'), 'query', 'user', '0', '--policy', join(REPO, 'policies/host-default.yaml')], { encoding: 'utf8' });
    assert.equal(q.status, 0, q.stderr);
    assert.equal(q.stdout, 'root@example.com\n');
    const u = install(REPO, dest, '--uninstall');
    assert.equal(u.code, 0, u.stderr);
    assert.ok(!existsSync(P));
  });
});
