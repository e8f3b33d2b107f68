/**
 * What the benchmarks that go through the real /sbin/request-key share (bench/upcall, bench/ldap):
 * the machine set up for a run and put back however it ends, nsidmapd as a child, and one timed
 * request_key(2) per lookup in a fresh session keyring.
 *
 * The machine: a temporary /etc/idmapd.conf (nfsidmap reads no other; the original is kept beside
 * it and put back), one rule file in /etc/request-key.d swapped between phases (both helpers sit
 * behind rules on the `user` key type, so no NFS mount is needed), and whatever a benchmark adds
 * with atCleanup(). Everything is undone at the end: by the benchmark's `finally`, by the exit
 * hook when an exception escapes, and after SIGINT/SIGTERM/SIGHUP (the lookup loop notices the
 * signal between two lookups and unwinds). One run at a time holds the machine (acquireMachine,
 * a lock file); a run killed with -9 is cleaned up by the next one.
 *
 * Root only, Linux only.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AdminClient } from '../../src/responders/admin/client.js';
import * as keyctl from '../../src/responders/keyring/keyctl.js';
import { KEY_SPEC, KeyctlError } from '../../src/responders/keyring/keyctl.js';

export const ROOT = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
export const HELPER = join(ROOT, 'dist/keyring/nsidmap-upcall');
export const DAEMON = join(ROOT, 'dist/src/daemon/main.js');
export const FALLBACK = join(ROOT, 'dist/keyring/upcall.js');
export const NFSIDMAP = '/usr/sbin/nfsidmap';
export const REQUEST_KEY = '/sbin/request-key';
export const RULE_FILE = '/etc/request-key.d/nsidmap-bench.conf';
export const IDMAPD = '/etc/idmapd.conf';
/** The original idmapd.conf while a run is on (or a marker that there was none): a killed run's state. */
const IDMAPD_SAVED = '/etc/idmapd.conf.nsidmap-bench-saved';
const IDMAPD_ABSENT = '/etc/idmapd.conf.nsidmap-bench-absent';

export const quiet = (cmd: string, argv: string[]): boolean => spawnSync(cmd, argv, { stdio: 'ignore' }).status === 0;

// ---- preflight ----------------------------------------------------------------------------------

/** Why request-key runs cannot happen here (not root, no keyrings, no request-key), or undefined. */
export function requestKeyMissing(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs root on Linux (it writes /etc/idmapd.conf and request-key rules)';
  if (!existsSync(REQUEST_KEY)) return `${REQUEST_KEY} is missing: apt-get install keyutils`;
  try {
    keyctl.getKeyringId(KEY_SPEC.SESSION);
  } catch (e) {
    return `no kernel keyrings here: ${(e as Error).message}`;
  }
  return undefined;
}

/** /usr/sbin/nfsidmap, installed with apt-get (nfs-common) when missing. */
export function ensureNfsidmap(): void {
  if (existsSync(NFSIDMAP)) return;
  console.log(`${NFSIDMAP} is missing: installing nfs-common`);
  execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'nfs-common'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/** dist/ with the daemon, the helper and its fallback; built (npm run build) when one is missing. */
export function ensureBuilt(): void {
  if (existsSync(HELPER) && existsSync(DAEMON) && existsSync(FALLBACK)) return;
  if (!existsSync(join(ROOT, 'keyring/nsidmap-upcall.c'))) throw new Error(`${HELPER} is not built and keyring/nsidmap-upcall.c does not exist`);
  console.log('building (npm run build)');
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
}

/** The installed nfs-common's version (dpkg), or `?`. */
export function nfsCommonVersion(): string {
  return spawnSync('dpkg-query', ['-W', '-f', '${Version}', 'nfs-common'], { encoding: 'utf8' }).stdout || '?';
}

// ---- /etc/idmapd.conf and the rule file ---------------------------------------------------------

/** Write /etc/idmapd.conf for the run, the original kept beside it (restoreIdmapd puts it back). */
export function writeIdmapd(text: string, opts: { secret?: boolean } = {}): void {
  if (!existsSync(IDMAPD_SAVED) && !existsSync(IDMAPD_ABSENT)) {
    if (existsSync(IDMAPD)) copyFileSync(IDMAPD, IDMAPD_SAVED);
    else writeFileSync(IDMAPD_ABSENT, '');
  }
  atCleanup('idmapd.conf', restoreIdmapd);
  writeFileSync(IDMAPD, text);
  // a bind password in it: root only while it is there (the original's mode comes back with it)
  if (opts.secret) chmodSync(IDMAPD, 0o600);
}

export function restoreIdmapd(): void {
  if (existsSync(IDMAPD_SAVED)) renameSync(IDMAPD_SAVED, IDMAPD);
  else if (existsSync(IDMAPD_ABSENT)) {
    rmSync(IDMAPD, { force: true });
    unlinkSync(IDMAPD_ABSENT);
  }
}

/**
 * One rule file at a time: write beside, rename over (request-key never reads half a file).
 * `pattern` is the description the rule matches on the `user` key type; keep it less wild than any
 * `uid:*` rule a test may have installed meanwhile, so request-key picks this one
 * (request-key.conf(5): the shortest wildcard skip wins). A trailing `*` only: keyutils 1.6.3 did
 * not match a `*` inside the description here, man page or not.
 */
export function useRule(pattern: string, program: string): void {
  atCleanup('rule', removeRule);
  writeFileSync(`${RULE_FILE}.tmp`, `# nsidmap bench (removed at the end of the run)\ncreate user ${pattern} * ${program}\n`);
  renameSync(`${RULE_FILE}.tmp`, RULE_FILE);
}

export function removeRule(): void {
  rmSync(RULE_FILE, { force: true });
  rmSync(`${RULE_FILE}.tmp`, { force: true });
}

/** Undo what a run killed with SIGKILL left behind: the rule file and idmapd.conf. */
function recoverStale(): void {
  if (existsSync(RULE_FILE) || existsSync(`${RULE_FILE}.tmp`)) removeRule();
  restoreIdmapd();
}

/** Held (with the holder's pid in it) while a run has the machine: idmapd.conf and the rule file. */
const LOCK = '/run/nsidmap-bench.lock';

function holder(): number | undefined {
  try {
    const pid = Number(readFileSync(LOCK, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    // EPERM: alive, someone else's; anything else (ENOENT, ESRCH): nobody holds it
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? Number(readFileSync(LOCK, 'utf8').trim()) : undefined;
  }
}

/**
 * Take the machine for this run: one request-key benchmark at a time (bench/upcall and bench/ldap
 * share the rule file and idmapd.conf), waiting up to `waitMs` for a running one to finish; then
 * undo what a run killed with -9 left behind. Released at cleanup.
 */
export async function acquireMachine(waitMs = 300_000): Promise<void> {
  const deadline = performance.now() + waitMs;
  let said = false;
  for (;;) {
    try {
      writeFileSync(LOCK, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const pid = holder();
    if (pid === undefined) {
      rmSync(LOCK, { force: true }); // its holder is gone (killed with -9): take it over
      continue;
    }
    if (performance.now() > deadline) throw new Error(`another request-key benchmark (pid ${pid}) has held ${LOCK} for ${Math.round(waitMs / 1000)} s`);
    if (!said) console.log(`waiting for another request-key benchmark (pid ${pid}, ${LOCK}) to finish`);
    said = true;
    checkInterrupted();
    await sleep(500);
  }
  atCleanup('lock', () => {
    if (readFileSync(LOCK, 'utf8').trim() === String(process.pid)) rmSync(LOCK, { force: true });
  });
  recoverStale();
}

// ---- nsidmapd as a child ------------------------------------------------------------------------

export interface DaemonOptions {
  readonly policy: string;
  readonly socket: string;
  readonly cache: string;
  /** more arguments, e.g. ['--serve', 'none'] */
  readonly args?: readonly string[];
}

export class DaemonProcess {
  private child: ChildProcess | undefined;
  private err = '';

  /** the last lines it wrote to stderr (diagnostics) */
  get stderr(): string {
    return this.err;
  }

  /** Start it and wait until its admin socket answers a ping. */
  async start(o: DaemonOptions): Promise<void> {
    const child = spawn(process.execPath, ['--optimize-for-size', DAEMON, '--policy', o.policy, '--socket', o.socket, '--cache', o.cache, '--log-level', 'warn', ...(o.args ?? [])], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    atCleanup('daemon', () => this.killNow());
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.err = (this.err + d).slice(-4000)));
    const deadline = performance.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nsidmapd exited (${child.exitCode ?? child.signalCode}):\n${this.err}`);
      try {
        const c = await AdminClient.connect(o.socket, 1000);
        await c.request({ op: 'ping' });
        c.close();
        return;
      } catch (e) {
        if (performance.now() > deadline) throw e;
        await sleep(20);
      }
    }
  }

  /** SIGTERM, SIGKILL after 5 s. */
  async stop(): Promise<void> {
    const d = this.child;
    if (!d || d.exitCode !== null || d.signalCode !== null) return;
    const gone = new Promise((resolve) => d.once('exit', resolve));
    d.kill('SIGTERM');
    await Promise.race([gone, sleep(5000).then(() => d.kill('SIGKILL'))]);
  }

  /** synchronous, for cleanup */
  killNow(): void {
    const d = this.child;
    if (d && d.exitCode === null && d.signalCode === null) d.kill('SIGKILL');
  }
}

// ---- cleanup, however the run ends --------------------------------------------------------------

const steps = new Map<string, () => void>();

/** Run `step` at cleanup (once per name; the last registered runs first, like a stack of defers). */
export function atCleanup(what: string, step: () => void): void {
  if (!steps.has(what)) steps.set(what, step);
}

/** Every registered step, each once, latest first; a failing step does not stop the others. */
export function cleanup(): void {
  for (const [what, step] of [...steps].reverse()) {
    steps.delete(what);
    try {
      step();
    } catch (e) {
      console.error(`cleanup: ${what}: ${(e as Error).message}`);
    }
  }
}

let interruptedBy: string | undefined;
let signalsHandled = false;

/** The signal that asked the run to stop, if one did. */
export function interrupted(): string | undefined {
  return interruptedBy;
}

/** Throw when a signal asked the run to stop (call between lookups). */
export function checkInterrupted(): void {
  if (interruptedBy) throw new Error(`interrupted by ${interruptedBy}`);
}

/**
 * SIGINT/SIGTERM/SIGHUP set a flag that the lookup loops check between two lookups (a lookup
 * blocks the thread) and unwind to their `finally`; the exit hook runs cleanup() as a last resort
 * (an exception that escaped, process.exit()).
 */
export function handleSignals(): void {
  if (signalsHandled) return;
  signalsHandled = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (interruptedBy) return;
      interruptedBy = sig;
      console.error(`\n${sig}: stopping after this lookup and cleaning up`);
    });
  }
  process.on('exit', cleanup);
}

// ---- measuring ------------------------------------------------------------------------------------

export interface Phase {
  readonly label: string;
  readonly ms: number[];
  wrong: number;
  failed: number;
}

/** One lookup: the `user` key description asked for and the payload the helper must instantiate. */
export interface Lookup {
  readonly description: string;
  readonly payload: string;
}

export interface MeasureOptions {
  /** request_key(2) in-process (default), or `keyctl request2 user … '' @s` timed as a process */
  readonly via?: 'syscall' | 'keyctl';
  /** idle between lookups (default 0: back to back) */
  readonly gapMs?: number;
}

export const stats = {
  /** the first few wrong or failed lookups, for the report */
  problems: [] as string[],
  /**
   * Largest /proc/keys seen (sampled outside the timed part, every 20 lookups). Every lookup
   * leaves a session keyring and a key behind until the kernel's key GC collects them; a helper
   * that reads /proc/keys (as nsidmap-upcall does, for the requester's pid) would pay for a
   * backlog, so it is watched.
   */
  procKeysMax: 0,
  lookups: 0,
};

/** `keyctl request2 user DESCRIPTION '' @s` in this (fresh) session keyring, which the child inherits. */
function keyctlRequest2(description: string): number {
  const r = spawnSync('keyctl', ['request2', 'user', description, '', '@s'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`keyctl request2: ${r.stderr.trim() || `exit ${r.status}`}`);
  return Number(r.stdout.trim());
}

/**
 * One upcall, timed: from the request_key(2) call to the instantiated key — the kernel,
 * /sbin/request-key choosing the rule, the helper, its answer. In a fresh anonymous session
 * keyring, so no key from an earlier lookup is visible. The payload is checked after the clock.
 */
export function lookup(l: Lookup, phase: Phase, o: MeasureOptions = {}): void {
  keyctl.joinSessionKeyring();
  const t0 = process.hrtime.bigint();
  let serial: number;
  try {
    serial = o.via === 'keyctl' ? keyctlRequest2(l.description) : keyctl.requestKey('user', l.description, '', KEY_SPEC.SESSION);
  } catch (e) {
    phase.failed++;
    if (stats.problems.length < 5) stats.problems.push(`${phase.label}: ${l.description}: ${e instanceof KeyctlError ? e.errnoName : (e as Error).message}`);
    return;
  }
  phase.ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  if (++stats.lookups % 20 === 0) stats.procKeysMax = Math.max(stats.procKeysMax, readFileSync('/proc/keys', 'utf8').split('\n').length - 1);
  const got = keyctl.read(serial).toString('latin1');
  if (got !== l.payload) {
    phase.wrong++;
    if (stats.problems.length < 5) stats.problems.push(`${phase.label}: ${l.description}: payload ${JSON.stringify(got)}, expected ${JSON.stringify(l.payload)}`);
  }
}

/** Swap in the rule `pattern` → `program`, then each lookup in turn, into the phase `label` of `into`. */
export async function runPhase(label: string, pattern: string, program: string, lookups: readonly Lookup[], into: Phase[], o: MeasureOptions = {}): Promise<void> {
  useRule(pattern, program);
  let phase = into.find((p) => p.label === label);
  if (!phase) into.push((phase = { label, ms: [], wrong: 0, failed: 0 }));
  for (const l of lookups) {
    checkInterrupted();
    lookup(l, phase, o);
    if (o.gapMs) await sleep(o.gapMs);
    else await new Promise((r) => setImmediate(r)); // let a signal handler run
  }
}

/** Interpolated percentile of sorted values (p in 0..1). */
export function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const at = (sorted.length - 1) * p;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

export function median(p: Phase | undefined): number {
  return pct([...(p?.ms ?? [])].sort((a, b) => a - b), 0.5);
}

/** runs, median, p90, ratio of the median to `base`'s, wrong/failed: one row per phase. */
export function printTable(phases: readonly Phase[], base: string, head: { first: string; ratio: string }): void {
  const baseMedian = median(phases.find((p) => p.label === base));
  const rows = [[head.first, 'runs', 'median ms', 'p90 ms', head.ratio, 'wrong/failed']];
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
