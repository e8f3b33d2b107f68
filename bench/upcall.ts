/**
 * bench/upcall — end-to-end keyring upcall latency, nsidmap against Debian's nfsidmap, through the
 * real /sbin/request-key (issue: median ≤ 0.8 × nfsidmap's).
 *
 *   sudo npx tsx bench/upcall.ts [--names 240] [--fallback 60] [--gap-ms 0] [--via syscall|keyctl]
 *
 * --via keyctl runs `keyctl request2 user <description> '' @s` for each lookup and times that
 * process instead of the syscall: the same upcall plus a fork/exec of keyctl(1) that costs both
 * helpers the same (so ratios move towards 1).
 *
 * --gap-ms idles between lookups. Back to back (the default, like the burst of upcalls an
 * `ls -l` in a big directory makes), the kernel's key GC lags: every upcall leaves request-key's
 * thread and auth keys and the looked-up key in /proc/keys for a while, and the table notes how
 * long /proc/keys got — which a helper that reads it pays for.
 *
 * Root only: it adds users and a group (useradd/groupadd: nfsidmap reads them through NSS), writes
 * a temporary /etc/idmapd.conf (Domain = bench.nsidmap.test) and a rule file in /etc/request-key.d,
 * and undoes all of it at the end, on failure and on SIGINT/SIGTERM/SIGHUP (a run killed with -9
 * is cleaned up by the next run). Installs nfs-common with apt-get when /usr/sbin/nfsidmap is
 * missing. Prints figures; asserts nothing.
 *
 * What is timed: one request_key(2) — what `keyctl request2 user uid:<name>@<domain> '' @s` does,
 * called in-process so no keyctl(1) fork is counted — from the call to the instantiated key: the
 * kernel, /sbin/request-key choosing the rule, the helper, its answer. Each lookup runs in a fresh
 * anonymous session keyring and every name is distinct within a phase, so the kernel never serves
 * a key from an earlier lookup: every upcall is cold for both helpers. Every payload is checked.
 *
 * Both helpers sit behind rules on the `user` key type (no NFS here), one rule file at a time,
 * swapped between phases; phases alternate nfsidmap / nsidmap (A/B/A/B) so that drift of the
 * machine falls on both:
 *
 *   for each quarter of the names:  nfsidmap, nsidmap-upcall (daemon cache cold: first time asked)
 *   for each quarter of the names:  nfsidmap, nsidmap-upcall (daemon cache warm: asked before)
 *   then the daemon is stopped:     nsidmap-upcall → Node fallback (dist/keyring/upcall.js)
 *
 * nfsidmap's rule is its own (`/usr/sbin/nfsidmap -t 600 %k %d`), nsidmap's runs
 * dist/keyring/nsidmap-upcall with the daemon's socket. The description pattern in both rules,
 * `uid:nsb*`, is less wild than any `uid:*` rule a test may have installed at the same time, so
 * request-key picks ours (request-key.conf(5): the shortest wildcard skip wins).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { AdminClient } from '../src/responders/admin/client.js';
import * as keyctl from '../src/responders/keyring/keyctl.js';
import { KEY_SPEC, KeyctlError } from '../src/responders/keyring/keyctl.js';

const ROOT = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const HELPER = join(ROOT, 'dist/keyring/nsidmap-upcall');
const DAEMON = join(ROOT, 'dist/src/daemon/main.js');
const NFSIDMAP = '/usr/sbin/nfsidmap';
const DOMAIN = 'bench.nsidmap.test';
const USER_PREFIX = 'nsb';
const GROUP = 'nsbench';
const UID_BASE = 60000;
const WARMUP = 8;
const RULE_FILE = '/etc/request-key.d/nsidmap-bench.conf';
const IDMAPD = '/etc/idmapd.conf';
/** The original idmapd.conf while a run is on (or a marker that there was none): a killed run's state. */
const IDMAPD_SAVED = '/etc/idmapd.conf.nsidmap-bench-saved';
const IDMAPD_ABSENT = '/etc/idmapd.conf.nsidmap-bench-absent';
// A trailing `*`: keyutils 1.6.3 did not match a `*` inside the description here, man page or not.
const RULE_PATTERN = `uid:${USER_PREFIX}*`;

const args = parseArgs({ options: { names: { type: 'string', default: '240' }, fallback: { type: 'string', default: '60' }, 'gap-ms': { type: 'string', default: '0' }, via: { type: 'string', default: 'syscall' } } }).values;
const GAP_MS = Number(args['gap-ms']);
const VIA = args.via;
if (VIA !== 'syscall' && VIA !== 'keyctl') throw new Error('--via: syscall or keyctl');
const NAMES = Number(args.names);
const FALLBACK_RUNS = Math.min(Number(args.fallback), NAMES);
if (!(NAMES >= 200 && NAMES % 4 === 0)) throw new Error('--names: at least 200, a multiple of 4');

// ---- the machine: users, idmapd.conf, rules; every step undone in cleanup() --------------------

const sh = (cmd: string, argv: string[]): string => execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const quiet = (cmd: string, argv: string[]): boolean => spawnSync(cmd, argv, { stdio: 'ignore' }).status === 0;
const userName = (i: number): string => `${USER_PREFIX}${i}`;
const uidOf = (i: number): number => UID_BASE + i;

function preflight(): void {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) throw new Error('bench/upcall runs as root on Linux (it adds users and request-key rules)');
  if (!existsSync('/sbin/request-key')) throw new Error('/sbin/request-key is missing: apt-get install keyutils');
  keyctl.getKeyringId(KEY_SPEC.SESSION); // throws where the kernel has no keyrings
  if (!existsSync(NFSIDMAP)) {
    console.log(`${NFSIDMAP} is missing: installing nfs-common`);
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'nfs-common'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  if (!existsSync(HELPER) || !existsSync(DAEMON) || !existsSync(join(ROOT, 'dist/keyring/upcall.js'))) {
    if (!existsSync(join(ROOT, 'keyring/nsidmap-upcall.c'))) throw new Error(`${HELPER} is not built and keyring/nsidmap-upcall.c does not exist`);
    console.log('building (npm run build)');
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  }
}

/** Undo what a run killed with SIGKILL left behind. */
function recoverStale(): void {
  if (existsSync(RULE_FILE)) unlinkSync(RULE_FILE);
  restoreIdmapd();
  removeUsers();
}

function removeUsers(): void {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && new RegExp(`^${USER_PREFIX}\\d+$`).test(name) && Number(uid) >= UID_BASE && Number(uid) < UID_BASE + 100000) quiet('userdel', [name]);
  }
  if (quiet('getent', ['group', GROUP])) quiet('groupdel', [GROUP]);
}

function addUsers(total: number): void {
  for (let i = 0; i < total; i++) {
    if (quiet('getent', ['passwd', String(uidOf(i))])) throw new Error(`uid ${uidOf(i)} is taken: bench/upcall needs ${UID_BASE}..${UID_BASE + total - 1} free`);
  }
  sh('groupadd', [GROUP]);
  for (let i = 0; i < total; i++) {
    sh('useradd', ['-M', '-N', '-g', GROUP, '-u', String(uidOf(i)), '-d', '/nonexistent', '-s', '/usr/sbin/nologin', userName(i)]);
  }
}

function writeIdmapd(): void {
  if (existsSync(IDMAPD)) copyFileSync(IDMAPD, IDMAPD_SAVED);
  else writeFileSync(IDMAPD_ABSENT, '');
  writeFileSync(IDMAPD, `# written by nsidmap bench/upcall for the length of a run; the original is restored after\n[General]\nDomain = ${DOMAIN}\n\n[Translation]\nMethod = nsswitch\n`);
}

function restoreIdmapd(): void {
  if (existsSync(IDMAPD_SAVED)) renameSync(IDMAPD_SAVED, IDMAPD);
  else if (existsSync(IDMAPD_ABSENT)) {
    rmSync(IDMAPD, { force: true });
    unlinkSync(IDMAPD_ABSENT);
  }
}

/** One rule file at a time: write beside, rename over (request-key never reads half a file). */
function useRule(program: string): void {
  writeFileSync(`${RULE_FILE}.tmp`, `# nsidmap bench/upcall (removed at the end of the run)\ncreate user ${RULE_PATTERN} * ${program}\n`);
  renameSync(`${RULE_FILE}.tmp`, RULE_FILE);
}

// ---- the daemon ---------------------------------------------------------------------------------

let work = '';
let daemon: ChildProcess | undefined;
let daemonErr = '';

async function startDaemon(policy: string, socket: string): Promise<void> {
  daemon = spawn(process.execPath, ['--optimize-for-size', DAEMON, '--policy', policy, '--socket', socket, '--cache', join(work, 'daemon.sqlite'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  daemon.stderr?.setEncoding('utf8').on('data', (d: string) => (daemonErr = (daemonErr + d).slice(-4000)));
  const deadline = performance.now() + 20_000;
  for (;;) {
    if (daemon.exitCode !== null) throw new Error(`nsidmapd exited (${daemon.exitCode}):\n${daemonErr}`);
    try {
      const c = await AdminClient.connect(socket, 1000);
      await c.request({ op: 'ping' });
      c.close();
      return;
    } catch (e) {
      if (performance.now() > deadline) throw e;
      await sleep(20);
    }
  }
}

async function stopDaemon(): Promise<void> {
  const d = daemon;
  if (!d || d.exitCode !== null || d.signalCode !== null) return;
  const gone = new Promise((resolve) => d.once('exit', resolve));
  d.kill('SIGTERM');
  await Promise.race([gone, sleep(5000).then(() => d.kill('SIGKILL'))]);
}

// ---- cleanup, however the run ends --------------------------------------------------------------

let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  const steps: [string, () => void][] = [
    ['daemon', () => daemon?.exitCode === null && daemon.signalCode === null && daemon.kill('SIGKILL')],
    ['rule', () => rmSync(RULE_FILE, { force: true })],
    ['rule.tmp', () => rmSync(`${RULE_FILE}.tmp`, { force: true })],
    ['idmapd.conf', restoreIdmapd],
    ['users', removeUsers],
    ['workdir', () => work && rmSync(work, { recursive: true, force: true })],
  ];
  for (const [what, step] of steps) {
    try {
      step();
    } catch (e) {
      console.error(`cleanup: ${what}: ${(e as Error).message}`);
    }
  }
}

let interrupted: string | undefined;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    // the loop notices between two lookups (a lookup blocks the thread) and unwinds to finally
    if (interrupted) return;
    interrupted = sig;
    console.error(`\n${sig}: stopping after this lookup and cleaning up`);
  });
}
process.on('exit', cleanup); // last resort: an exception that escaped, process.exit()

// ---- measuring ------------------------------------------------------------------------------------

interface Phase {
  readonly label: string;
  readonly ms: number[];
  wrong: number;
  failed: number;
}

const firstProblems: string[] = [];
/**
 * Largest /proc/keys seen (sampled outside the timed part). Every lookup leaves a session keyring
 * and a key behind until the kernel's key GC collects them; a helper that reads /proc/keys (as
 * nsidmap-upcall does, for the requester's pid) would pay for a backlog, so it is watched.
 */
let procKeysMax = 0;
let lookups = 0;

/** `keyctl request2 user DESCRIPTION '' @s` in this (fresh) session keyring, which the child inherits. */
function keyctlRequest2(description: string): number {
  const r = spawnSync('keyctl', ['request2', 'user', description, '', '@s'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`keyctl request2: ${r.stderr.trim() || `exit ${r.status}`}`);
  return Number(r.stdout.trim());
}

/** One upcall, timed; the payload checked against the uid useradd gave. */
function lookup(i: number, phase: Phase): void {
  keyctl.joinSessionKeyring(); // a fresh anonymous session keyring: no key from before is visible
  const description = `uid:${userName(i)}@${DOMAIN}`;
  const t0 = process.hrtime.bigint();
  let serial: number;
  try {
    serial = VIA === 'syscall' ? keyctl.requestKey('user', description, '', KEY_SPEC.SESSION) : keyctlRequest2(description);
  } catch (e) {
    phase.failed++;
    if (firstProblems.length < 5) firstProblems.push(`${phase.label}: ${description}: ${e instanceof KeyctlError ? e.errnoName : (e as Error).message}`);
    return;
  }
  phase.ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  if (++lookups % 20 === 0) procKeysMax = Math.max(procKeysMax, readFileSync('/proc/keys', 'utf8').split('\n').length - 1);
  const got = keyctl.read(serial).toString('latin1');
  if (got !== `${uidOf(i)}\0`) {
    phase.wrong++;
    if (firstProblems.length < 5) firstProblems.push(`${phase.label}: ${description}: payload ${JSON.stringify(got)}, expected ${JSON.stringify(`${uidOf(i)}\0`)}`);
  }
}

async function run(label: string, program: string, names: readonly number[], into: Phase[]): Promise<void> {
  useRule(program);
  let phase = into.find((p) => p.label === label);
  if (!phase) into.push((phase = { label, ms: [], wrong: 0, failed: 0 }));
  for (const i of names) {
    if (interrupted) throw new Error(`interrupted by ${interrupted}`);
    lookup(i, phase);
    if (GAP_MS > 0) await sleep(GAP_MS);
    else await new Promise((r) => setImmediate(r)); // let a signal handler run
  }
}

function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const at = (sorted.length - 1) * p;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

function printTable(phases: Phase[]): void {
  const base = phases.find((p) => p.label.startsWith('nfsidmap'));
  const baseMedian = base ? pct([...base.ms].sort((a, b) => a - b), 0.5) : NaN;
  const rows = [['helper', 'runs', 'median ms', 'p90 ms', 'vs nfsidmap', 'wrong/failed']];
  for (const p of phases) {
    const s = [...p.ms].sort((a, b) => a - b);
    const med = pct(s, 0.5);
    rows.push([p.label, String(s.length), med.toFixed(2), pct(s, 0.9).toFixed(2), `${(med / baseMedian).toFixed(2)}×`, `${p.wrong}/${p.failed}`]);
  }
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(w[c]!) : cell.padStart(w[c]!))).join('  ');
  console.log(line(rows[0]!));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const r of rows.slice(1)) console.log(line(r));
}

// ---- the run --------------------------------------------------------------------------------------

async function main(): Promise<void> {
  preflight();
  recoverStale();
  work = mkdtempSync(join(tmpdir(), 'nsidmap-bench-upcall-'));
  const socket = join(work, 'admin.sock');
  const policy = join(work, 'policy.yaml');
  // cache.path: where the Node fallback keeps its cache (the daemon gets --cache)
  writeFileSync(policy, `version: 1\ndomain: ${DOMAIN}\nproviders:\n  files: { kind: files }\n  nss: { kind: nss }\ncache:\n  path: ${join(work, 'fallback.sqlite')}\nscopes:\n  - name: host\n    providers: [files, nss]\n`);

  const t0 = performance.now();
  addUsers(NAMES + WARMUP);
  writeIdmapd();
  console.log(`setup: ${NAMES + WARMUP} users ${userName(0)}..${userName(NAMES + WARMUP - 1)} (uid ${uidOf(0)}..), group ${GROUP}, ${IDMAPD} with Domain = ${DOMAIN} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  await startDaemon(policy, socket);

  const NFS = `${NFSIDMAP} -t 600 %k %d`;
  const OURS = `${HELPER} --socket ${socket} --policy ${policy} nfs %k`;
  const L = { nfs: 'nfsidmap (nfs-common)', cold: 'nsidmap-upcall, daemon cache cold', warm: 'nsidmap-upcall, daemon cache warm', fallback: 'nsidmap Node fallback (daemon stopped)' };
  const phases: Phase[] = [];
  const scratch: Phase[] = [];
  const measured = Array.from({ length: NAMES }, (_, i) => i);
  const warm = Array.from({ length: WARMUP }, (_, i) => NAMES + i);
  // warm-up, not counted: page cache for both helpers' binaries and libraries, the daemon's JIT
  await run('warm-up nfsidmap', NFS, warm, scratch);
  await run('warm-up nsidmap', OURS, warm, scratch);

  const q = NAMES / 4;
  const quarters = [0, 1, 2, 3].map((k) => measured.slice(k * q, (k + 1) * q));
  for (const names of quarters) {
    await run(L.nfs, NFS, names, phases);
    await run(L.cold, OURS, names, phases);
  }
  for (const names of quarters) {
    await run(L.nfs, NFS, names, phases);
    await run(L.warm, OURS, names, phases);
  }
  await stopDaemon();
  await run(L.fallback, OURS, measured.slice(0, FALLBACK_RUNS), phases);

  const nfsVersion = spawnSync('dpkg-query', ['-W', '-f', '${Version}', 'nfs-common'], { encoding: 'utf8' }).stdout || '?';
  console.log(`\nbench/upcall — end-to-end ${VIA === 'syscall' ? 'request_key(2)' : "`keyctl request2 user … '' @s`"} → /sbin/request-key → helper → instantiated key`);
  console.log(`kernel ${release()}, node ${process.version}, ${cpus().length} CPU ${cpus()[0]?.model ?? ''}, nfs-common ${nfsVersion}`);
  console.log(`${NAMES} distinct names per pass, each lookup in a fresh session keyring; phases A/B/A/B; ${GAP_MS ? `${GAP_MS} ms between lookups` : 'lookups back to back'}\n`);
  printTable(phases);
  const med = (label: string) => pct([...(phases.find((p) => p.label === label)?.ms ?? [])].sort((a, b) => a - b), 0.5);
  const target = 0.8 * med(L.nfs);
  console.log(`\ntarget: median ≤ 0.8 × nfsidmap's = ${target.toFixed(2)} ms — cold ${med(L.cold) <= target ? 'met' : 'NOT met'}, warm ${med(L.warm) <= target ? 'met' : 'NOT met'}`);
  console.log(`/proc/keys: at most ${procKeysMax} lines seen during the run (sampled every 20 lookups)`);
  if (firstProblems.length) console.log(`problems (first ${firstProblems.length}):\n  ${firstProblems.join('\n  ')}`);
}

try {
  await main();
} catch (e) {
  console.error(`bench/upcall: ${(e as Error).message}`);
  if (daemonErr) console.error(`nsidmapd stderr (tail):\n${daemonErr}`);
  process.exitCode = interrupted ? 130 : 1;
} finally {
  await stopDaemon().catch(() => {});
  cleanup();
}
