/**
 * bench/upcall — end-to-end keyring upcall latency, nsidmap against Debian's nfsidmap, through the
 * real /sbin/request-key (issue: median ≤ 0.8 × nfsidmap's).
 *
 *   sudo npx tsx bench/upcall.ts [--names 240] [--fallback 60] [--gap-ms 0] [--via syscall|keyctl] [--daemon-warmup 40] [--floor]
 *
 * --floor adds two rows next to the cold phase: the same helper talking to stand-ins that answer
 * at once — a C server (bench/lib/instant-server.c, compiled for the run) and a minimal Node
 * net.Server — the fastest that any daemon behind a socket, and any daemon in Node, can be on
 * this machine. What is left above them is the daemon's own work.
 *
 * --via keyctl runs `keyctl request2 user <description> '' @s` for each lookup and times that
 * process instead of the syscall: the same upcall plus a fork/exec of keyctl(1) that costs both
 * helpers the same (so ratios move towards 1).
 *
 * --daemon-warmup ROUNDS: before anything is measured, the daemon answers ROUNDS × 16 upcall ops
 * over fresh connections, as the helper makes them, for the warm-up names (each asked twice, the
 * cache flushed between rounds: the miss path and the hit path). A node process that has just
 * started runs that code in its interpreter for its first few hundred requests — ~0.3–1.5 ms more
 * per upcall, measured here — which would otherwise land in the first measured phase and be
 * reported as "daemon cache cold", when that phase is meant to measure a cache miss of a daemon
 * that has been running (it runs for weeks). 0: measure a daemon just started instead.
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
 *
 * The machinery (idmapd.conf and rules put back, the daemon, the timed lookup, the table) is
 * bench/lib/requestkey.ts, shared with bench/ldap's side-by-side with nfsidmap's umich_ldap.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AdminClient } from '../src/responders/admin/client.js';
import {
  acquireMachine,
  atCleanup,
  cleanup,
  DaemonProcess,
  ensureBuilt,
  ensureNfsidmap,
  handleSignals,
  HELPER,
  interrupted,
  median,
  NFSIDMAP,
  nfsCommonVersion,
  printTable,
  quiet,
  requestKeyMissing,
  runPhase,
  stats,
  writeIdmapd,
  type Lookup,
  type Phase,
} from './lib/requestkey.js';

const DOMAIN = 'bench.nsidmap.test';
const USER_PREFIX = 'nsb';
const GROUP = 'nsbench';
const UID_BASE = 60000;
const WARMUP = 8;
const RULE_PATTERN = `uid:${USER_PREFIX}*`;

const args = parseArgs({ options: { names: { type: 'string', default: '240' }, fallback: { type: 'string', default: '60' }, 'gap-ms': { type: 'string', default: '0' }, via: { type: 'string', default: 'syscall' }, 'daemon-warmup': { type: 'string', default: '40' }, floor: { type: 'boolean', default: false } } }).values;
const DAEMON_WARMUP = Number(args['daemon-warmup']);
if (!(Number.isInteger(DAEMON_WARMUP) && DAEMON_WARMUP >= 0)) throw new Error('--daemon-warmup: a number of rounds, 0 for none');
const GAP_MS = Number(args['gap-ms']);
const VIA = ((v: string | undefined): 'syscall' | 'keyctl' => {
  if (v === 'syscall' || v === 'keyctl') return v;
  throw new Error('--via: syscall or keyctl');
})(args.via);
const NAMES = Number(args.names);
const FALLBACK_RUNS = Math.min(Number(args.fallback), NAMES);
if (!(NAMES >= 200 && NAMES % 4 === 0)) throw new Error('--names: at least 200, a multiple of 4');

// ---- the machine: users (idmapd.conf and the rules: lib/requestkey) -----------------------------

const sh = (cmd: string, argv: string[]): string => execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const userName = (i: number): string => `${USER_PREFIX}${i}`;
const uidOf = (i: number): number => UID_BASE + i;

function preflight(): void {
  const missing = requestKeyMissing();
  if (missing) throw new Error(`bench/upcall ${missing}`);
  ensureNfsidmap();
  ensureBuilt();
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
  atCleanup('users', removeUsers);
  sh('groupadd', [GROUP]);
  for (let i = 0; i < total; i++) {
    sh('useradd', ['-M', '-N', '-g', GROUP, '-u', String(uidOf(i)), '-d', '/nonexistent', '-s', '/usr/sbin/nologin', userName(i)]);
  }
}

/** the lookup of user i: its uid as useradd gave it */
const lookupOf = (i: number): Lookup => ({ description: `uid:${userName(i)}@${DOMAIN}`, payload: `${uidOf(i)}\0` });

const daemon = new DaemonProcess();

/** --daemon-warmup: the daemon's JIT, through the helper's op over the helper's kind of connection. */
async function warmDaemon(socket: string, names: readonly number[], rounds: number): Promise<number> {
  const ask = async (req: Parameters<AdminClient['request']>[0]) => {
    const c = await AdminClient.connect(socket, 5000);
    try {
      await c.request(req);
    } finally {
      c.close();
    }
  };
  let n = 0;
  for (let r = 0; r < rounds; r++) {
    for (const i of names) {
      const descriptionHex = Buffer.from(lookupOf(i).description).toString('hex');
      for (let twice = 0; twice < 2; twice++, n++) await ask({ op: 'upcall', keyType: 'id_resolver', descriptionHex });
    }
    await ask({ op: 'cache.flush' });
  }
  return n;
}

// ---- --floor: stand-ins that answer at once ------------------------------------------------------

/** The minimal Node server: what is left of a daemon in Node when it does no work at all. */
const NODE_INSTANT = `
const net = require('node:net');
const [sock, prefix, base] = process.argv.slice(1);
require('node:fs').rmSync(sock, { force: true });
net.createServer((s) => {
  let b = '';
  s.setEncoding('utf8');
  s.on('error', () => {});
  s.on('data', (d) => {
    b += d;
    const nl = b.indexOf('\\n');
    if (nl < 0) return;
    const desc = Buffer.from(JSON.parse(b.slice(0, nl)).descriptionHex, 'hex').toString('latin1');
    const m = desc.startsWith('uid:' + prefix) ? Number.parseInt(desc.slice(4 + prefix.length), 10) : NaN;
    const result = Number.isNaN(m) ? { action: 'negate', timeout: 60, reason: 'unknown' } : { action: 'instantiate', payload: Buffer.from(String(Number(base) + m) + '\\0').toString('hex'), timeout: 600 };
    s.end(JSON.stringify({ id: 1, ok: true, result }) + '\\n');
  });
}).listen(sock);
`;

/** Starts both stand-ins; resolves to their sockets once they listen. */
async function startFloorServers(work: string): Promise<{ c: string; node: string }> {
  const bin = join(work, 'instant-server');
  execFileSync(process.env['CC'] ?? 'cc', ['-std=c11', '-O2', '-o', bin, join(new URL('.', import.meta.url).pathname, 'lib/instant-server.c')], { stdio: 'inherit' });
  const socks = { c: join(work, 'instant-c.sock'), node: join(work, 'instant-node.sock') };
  const kids = [
    spawn(bin, [socks.c, USER_PREFIX, String(UID_BASE)], { stdio: 'ignore' }),
    spawn(process.execPath, ['-e', NODE_INSTANT, socks.node, USER_PREFIX, String(UID_BASE)], { stdio: 'ignore' }),
  ];
  atCleanup('floor servers', () => kids.forEach((k) => k.kill('SIGKILL')));
  for (const deadline = performance.now() + 5000; !(existsSync(socks.c) && existsSync(socks.node)); ) {
    if (performance.now() > deadline) throw new Error('--floor: the stand-in servers did not start');
    await new Promise((r) => setTimeout(r, 10));
  }
  return socks;
}

// ---- the run --------------------------------------------------------------------------------------

async function main(): Promise<void> {
  preflight();
  handleSignals();
  await acquireMachine(); // one request-key benchmark at a time; what one killed with -9 left is undone
  removeUsers(); // and its users
  const work = mkdtempSync(join(tmpdir(), 'nsidmap-bench-upcall-'));
  atCleanup('workdir', () => rmSync(work, { recursive: true, force: true }));
  const socket = join(work, 'admin.sock');
  const policy = join(work, 'policy.yaml');
  // cache.path: where the Node fallback keeps its cache (the daemon gets --cache)
  writeFileSync(policy, `version: 1\ndomain: ${DOMAIN}\nproviders:\n  files: { kind: files }\n  nss: { kind: nss }\ncache:\n  path: ${join(work, 'fallback.sqlite')}\nscopes:\n  - name: host\n    providers: [files, nss]\n`);

  const t0 = performance.now();
  addUsers(NAMES + WARMUP);
  writeIdmapd(`# written by nsidmap bench/upcall for the length of a run; the original is restored after\n[General]\nDomain = ${DOMAIN}\n\n[Translation]\nMethod = nsswitch\n`);
  console.log(`setup: ${NAMES + WARMUP} users ${userName(0)}..${userName(NAMES + WARMUP - 1)} (uid ${uidOf(0)}..), group ${GROUP}, /etc/idmapd.conf with Domain = ${DOMAIN} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  await daemon.start({ policy, socket, cache: join(work, 'daemon.sqlite') });

  const NFS = `${NFSIDMAP} -t 600 %k %d`;
  const OURS = `${HELPER} --socket ${socket} --policy ${policy} nfs %k`;
  const L = { nfs: 'nfsidmap (nfs-common)', cold: 'nsidmap-upcall, daemon cache cold', warm: 'nsidmap-upcall, daemon cache warm', fallback: 'nsidmap Node fallback (daemon stopped)', floorC: 'floor: helper + instant C server', floorNode: 'floor: helper + minimal Node server' };
  const floor = args.floor ? await startFloorServers(work) : undefined;
  const helperOn = (sock: string) => `${HELPER} --socket ${sock} --policy ${policy} nfs %k`;
  const phases: Phase[] = [];
  const scratch: Phase[] = [];
  const o = { via: VIA, gapMs: GAP_MS } as const;
  const run = (label: string, program: string, names: readonly number[], into: Phase[]) => runPhase(label, RULE_PATTERN, program, names.map(lookupOf), into, o);
  const measured = Array.from({ length: NAMES }, (_, i) => i);
  const warm = Array.from({ length: WARMUP }, (_, i) => NAMES + i);
  // warm-up, not counted: the daemon's JIT (--daemon-warmup), page cache for both helpers' binaries and libraries
  const warmOps = await warmDaemon(socket, warm, DAEMON_WARMUP);
  await run('warm-up nfsidmap', NFS, warm, scratch);
  await run('warm-up nsidmap', OURS, warm, scratch);
  if (floor) {
    await run('warm-up floor C', helperOn(floor.c), warm, scratch);
    await run('warm-up floor Node', helperOn(floor.node), warm, scratch);
  }

  const q = NAMES / 4;
  const quarters = [0, 1, 2, 3].map((k) => measured.slice(k * q, (k + 1) * q));
  for (const names of quarters) {
    await run(L.nfs, NFS, names, phases);
    await run(L.cold, OURS, names, phases);
    if (floor) {
      await run(L.floorC, helperOn(floor.c), names, phases);
      await run(L.floorNode, helperOn(floor.node), names, phases);
    }
  }
  for (const names of quarters) {
    await run(L.nfs, NFS, names, phases);
    await run(L.warm, OURS, names, phases);
  }
  await daemon.stop();
  await run(L.fallback, OURS, measured.slice(0, FALLBACK_RUNS), phases);

  console.log(`\nbench/upcall — end-to-end ${VIA === 'syscall' ? 'request_key(2)' : "`keyctl request2 user … '' @s`"} → /sbin/request-key → helper → instantiated key`);
  console.log(`kernel ${release()}, node ${process.version}, ${cpus().length} CPU ${cpus()[0]?.model ?? ''}, nfs-common ${nfsCommonVersion()}`);
  console.log(`${NAMES} distinct names per pass, each lookup in a fresh session keyring; phases A/B/A/B; ${GAP_MS ? `${GAP_MS} ms between lookups` : 'lookups back to back'}`);
  console.log(warmOps ? `daemon warmed up first with ${warmOps} upcall ops for ${warm.length} other names (--daemon-warmup ${DAEMON_WARMUP}), not counted\n` : 'daemon not warmed up (--daemon-warmup 0): the cold phase includes its JIT warm-up\n');
  printTable(phases, L.nfs, { first: 'helper', ratio: 'vs nfsidmap' });
  const med = (label: string) => median(phases.find((p) => p.label === label));
  const target = 0.8 * med(L.nfs);
  console.log(`\ntarget: median ≤ 0.8 × nfsidmap's = ${target.toFixed(2)} ms — cold ${med(L.cold) <= target ? 'met' : 'NOT met'}, warm ${med(L.warm) <= target ? 'met' : 'NOT met'}`);
  console.log(`/proc/keys: at most ${stats.procKeysMax} lines seen during the run (sampled every 20 lookups)`);
  if (stats.problems.length) console.log(`problems (first ${stats.problems.length}):\n  ${stats.problems.join('\n  ')}`);
}

try {
  await main();
} catch (e) {
  console.error(`bench/upcall: ${(e as Error).message}`);
  if (daemon.stderr) console.error(`nsidmapd stderr (tail):\n${daemon.stderr}`);
  process.exitCode = interrupted() ? 130 : 1;
} finally {
  await daemon.stop().catch(() => {});
  cleanup();
}
