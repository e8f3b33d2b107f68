/**
 * bench/ldap — the ldap source's speed figures (issue #4 §5), against its own slapd on loopback
 * seeded with test/fixtures/ldap/rfc2307.ldif (1,000 bulk users):
 *
 *   sudo npx tsx bench/ldap.ts [--names 240] [--no-request-key]
 *
 * (~15 s; needs /usr/sbin/slapd: bash test/setup.sh installs it.)
 *
 * - cold miss, source: one search on a pooled connection, one at a time, each name once
 *   (1,000 distinct names, random order);
 * - cold miss, concurrent: the same searches, 32 at a time (the pool's in-flight bound) — throughput;
 * - cold miss, resolver: a name-to-uid through the Resolver with an empty cache (policy, cache
 *   read, source, cache write);
 * - warm hit: the Resolver answering from its cache (memory front over SQLite), no LDAP at all;
 * - then, as root, side by side with nfsidmap's own LDAP method (umich_ldap.so) through the real
 *   /sbin/request-key, in one table: nfsidmap + umich_ldap, nsidmap-upcall + nsidmapd with its
 *   cache cold and warm — see benchUmichLdap. It writes a temporary /etc/idmapd.conf and a rule
 *   file in /etc/request-key.d, and puts both back at the end, on failure and on
 *   SIGINT/SIGTERM/SIGHUP (a run killed with -9: the next run, or bench/upcall, does). Skipped with
 *   a note when not root; --no-request-key skips it.
 *
 * Prints figures; asserts nothing (beyond checking every answer).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openCache } from '../src/cache/tiered.js';
import { silentLogger } from '../src/log.js';
import { ldapSchema } from '../src/providers/ldap/config.js';
import { LdapSource } from '../src/providers/ldap/source.js';
import type { Source } from '../src/providers/source.js';
import { AdminClient } from '../src/responders/admin/client.js';
import { compilePolicy } from '../src/resolver/policy/compile.js';
import { Policy } from '../src/resolver/policy/schema.js';
import { Resolver } from '../src/resolver/resolver.js';
import type { Context } from '../src/types.js';
import { BASE, BULK_USERS, bulkNfsv4Name, bulkUid, bulkUserName, FIXTURE_DIR, NFSV4_DOMAIN, READER_PASSWORD, readerDn } from '../test/fixtures/ldap/generate.js';
import { Slapd, slapdMissing } from '../test/ldap/slapd.js';
import {
  acquireMachine,
  checkInterrupted,
  cleanup,
  DaemonProcess,
  ensureBuilt,
  ensureNfsidmap,
  handleSignals,
  HELPER,
  interrupted,
  NFSIDMAP,
  nfsCommonVersion,
  printTable,
  requestKeyMissing,
  runPhase,
  stats,
  writeIdmapd,
  type Lookup,
  type Phase,
} from './lib/requestkey.js';

const work = mkdtempSync(join(tmpdir(), 'nsidmap-bench-ldap-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}
const us = (ns: number) => `${(ns / 1000).toFixed(1).padStart(7)} µs`;

export interface Figures {
  readonly lookups: number;
  readonly seconds: number;
  /** latencies in ns, sorted */
  readonly latencies: Float64Array;
}

function report(label: string, f: Figures): void {
  const l = f.latencies;
  const rate = Math.round(f.lookups / f.seconds).toLocaleString('en').padStart(9);
  console.log(`${label.padEnd(34)} ${rate} lookups/s   p50 ${us(pct(l, 0.5))}   p90 ${us(pct(l, 0.9))}   p99 ${us(pct(l, 0.99))}   max ${us(l[l.length - 1]!)}   (n=${f.lookups})`);
}

function shuffled(n: number, seed = 42): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  let s = seed;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** `task(i)` for each i in `order`, `concurrency` at a time; latency of each. */
async function measure(order: readonly number[], concurrency: number, task: (i: number) => Promise<void>): Promise<Figures> {
  const lat = new Float64Array(order.length);
  let next = 0;
  const start = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (next < order.length) {
      checkInterrupted(); // a signal: unwind to main's finally (slapd stopped, the machine put back)
      const k = next++;
      const t = process.hrtime.bigint();
      await task(order[k]!);
      lat[k] = Number(process.hrtime.bigint() - t);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  lat.sort();
  return { lookups: order.length, seconds, latencies: lat };
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`wrong answer: ${what}`);
}

async function coldSource(uri: string): Promise<void> {
  const src = new LdapSource('dir', ldapSchema.parse({ kind: 'ldap', uri, base: BASE, schema: 'rfc2307' }), { baseDir: work, log: silentLogger });
  await src.start();
  try {
    // warm the JIT and slapd's entry cache on lookups that are not measured (by id, not by name)
    for (let i = 0; i < 2000; i++) await src.byId('user', bulkUid(i % BULK_USERS));
    const sequential = await measure(shuffled(BULK_USERS), 1, async (i) => {
      const e = await src.byName('user', bulkUserName(i));
      check(e?.id === bulkUid(i), bulkUserName(i));
    });
    report('cold miss, source (1 at a time)', sequential);
    const concurrent = await measure(shuffled(BULK_USERS, 7), 32, async (i) => {
      const e = await src.byName('user', bulkUserName(i));
      check(e?.id === bulkUid(i), bulkUserName(i));
    });
    report('cold miss, source (32 at a time)', concurrent);
  } finally {
    await src.stop();
  }
}

async function throughResolver(uri: string): Promise<void> {
  const policy = compilePolicy(
    Policy.parse({ domain: 'example.com', providers: { dir: { kind: 'ldap', uri, base: BASE, schema: 'rfc2307' } }, scopes: [{ name: 'host', providers: ['dir'] }] }),
    { log: silentLogger },
  );
  const src = policy.sources.get('dir') as Source;
  await src.start!();
  const store = openCache({ path: join(work, 'cache.sqlite') });
  const r = new Resolver(policy, store, { log: silentLogger });
  const ctx: Context = { iface: 'keyring-nfs' };
  const ask = async (i: number, cache: string): Promise<void> => {
    const a = await r.resolve({ kind: 'name-to-uid', name: `${bulkUserName(i)}@example.com` }, ctx);
    check(a.outcome === 'mapped' && a.value === bulkUid(i) && a.cache === cache, `${bulkUserName(i)}: ${a.outcome} ${String(a.value)} ${a.cache}`);
  };
  try {
    report('cold miss, resolver (1 at a time)', await measure(shuffled(BULK_USERS, 3), 1, (i) => ask(i, 'miss')));
    const order: number[] = [];
    for (let k = 0; k < 200_000; k++) order.push(k % BULK_USERS);
    await measure(order.slice(0, 20_000), 1, (i) => ask(i, 'fresh')); // JIT warm-up
    report('warm hit, resolver (1 at a time)', await measure(shuffled(order.length).map((k) => order[k]!), 1, (i) => ask(i, 'fresh')));
  } finally {
    await src.stop!();
    store.close();
  }
}

// -------------------------------------------------- side by side with nfsidmap's umich_ldap

export interface UmichBenchEnv {
  /** the slapd this run started (ldap://127.0.0.1:PORT), seeded with rfc2307.ldif */
  readonly slapd: Slapd;
  readonly base: string;
  /** bulk users (generate.ts indices) in the order to look them up: the first `names` measured, the last few warm-up */
  readonly order: readonly number[];
  /** distinct names per phase (≥ 200, a multiple of 4) */
  readonly names: number;
  /** a scratch directory removed at exit */
  readonly work: string;
}

/** request-key rule pattern for the bulk users' keys (`uid:user0123@example.com`) */
const RULE_PATTERN = 'uid:user*';
const WARMUP = 8;
const UMICH_SO = '/usr/lib/x86_64-linux-gnu/libnfsidmap/umich_ldap.so';

/** idmapd.conf for nfsidmap: umich_ldap on our slapd, as idmapd.conf(5) [UMICH_SCHEMA] spells it */
function umichIdmapdConf(slapd: Slapd, base: string): string {
  return [
    '# written by nsidmap bench/ldap for the length of a run; the original is restored after',
    '[General]',
    'Verbosity = 0',
    `Domain = ${NFSV4_DOMAIN}`,
    '',
    '[Mapping]',
    'Nobody-User = nobody',
    'Nobody-Group = nogroup',
    '',
    '[Translation]',
    'Method = umich_ldap',
    '',
    '[UMICH_SCHEMA]',
    'LDAP_server = 127.0.0.1',
    `LDAP_port = ${slapd.port}`,
    // no reverse lookup of 127.0.0.1 (umich_ldap canonicalises the server name by default)
    'LDAP_canonicalize_name = false',
    `LDAP_base = ${base}`,
    `LDAP_user_dn = ${readerDn(base)}`,
    `LDAP_passwd = ${READER_PASSWORD}`,
    'LDAP_use_ssl = false',
    'LDAP_timeout_seconds = 4',
    'NFSv4_person_objectclass = NFSv4RemotePerson',
    'NFSv4_name_attr = NFSv4Name',
    'NFSv4_uid_attr = uidNumber',
    'NFSv4_acctname_attr = uid',
    'NFSv4_group_objectclass = NFSv4RemoteGroup',
    'NFSv4_group_attr = NFSv4Name',
    'NFSv4_gid_attr = gidNumber',
    '',
  ].join('\n');
}

/** the daemon's policy: one ldap provider on the same slapd, bound as the same reader */
function daemonPolicy(slapd: Slapd, base: string, passwordFile: string, fallbackCache: string): string {
  return [
    'version: 1',
    `domain: ${NFSV4_DOMAIN}`,
    'providers:',
    '  dir:',
    '    kind: ldap',
    `    uri: ${slapd.uri}`,
    `    base: "${base}"`,
    '    schema: rfc2307',
    `    bind: { dn: "${readerDn(base)}", passwordFile: ${passwordFile} }`,
    'cache:',
    `  path: ${fallbackCache}`,
    'scopes:',
    '  - name: host',
    '    providers: [dir]',
    '',
  ].join('\n');
}

async function cacheCounters(socket: string): Promise<{ hits: number; misses: number }> {
  const c = await AdminClient.connect(socket, 2000);
  try {
    const r = (await c.request({ op: 'cache.stats' })) as { counters: { hits: number; misses: number } };
    return { hits: r.counters.hits, misses: r.counters.misses };
  } finally {
    c.close();
  }
}

/**
 * The side-by-side with nfsidmap's own LDAP method (issue #4 §5), both through the real
 * /sbin/request-key as bench/upcall does (bench/lib/requestkey.ts), so the two figures cost the
 * same kernel round trip: one request_key(2) of a `user` key `uid:userNNNN@example.com` in a
 * fresh session keyring, timed to the instantiated key, its payload (the uid) checked.
 *
 * - nfsidmap + umich_ldap: Debian's /usr/sbin/nfsidmap (`-t 600 %k %d`) with a temporary
 *   /etc/idmapd.conf, `Method = umich_ldap` and an [UMICH_SCHEMA] on this slapd: per lookup it
 *   connects, binds as the reader, searches `(&(objectClass=NFSv4RemotePerson)(NFSv4Name=…))`
 *   and unbinds (the bulk users are NFSv4RemotePerson entries with an NFSv4Name, generate.ts);
 * - nsidmap: dist/keyring/nsidmap-upcall asking nsidmapd (`--serve none`), whose policy has one
 *   ldap provider on the same slapd bound as the same reader (a pooled connection): cache cold
 *   (every name asked for the first time: one search) and warm (asked before: no LDAP).
 *
 * Phases alternate (A/B/A/B, a quarter of the names at a time): umich_ldap and cold over the
 * names, then umich_ldap and warm over the same names. Returns the phases, or undefined with the
 * reason printed when this machine cannot run them (not root, no keyrings, no umich_ldap.so).
 */
export async function benchUmichLdap(env: UmichBenchEnv): Promise<Phase[] | undefined> {
  const missing = requestKeyMissing() ?? (existsSync(UMICH_SO) ? undefined : `${UMICH_SO} is missing (apt-get install libnfsidmap1)`);
  if (missing) {
    console.log(`\nrequest-key side by side with umich_ldap: skipped, ${missing}`);
    return undefined;
  }
  if (!(env.names >= 200 && env.names % 4 === 0 && env.names + WARMUP <= env.order.length)) throw new Error(`--names: at least 200, a multiple of 4, at most ${env.order.length - WARMUP}`);
  ensureNfsidmap();
  ensureBuilt();
  await acquireMachine(); // one request-key benchmark at a time; what one killed with -9 left is undone

  const socket = join(env.work, 'admin.sock');
  const policy = join(env.work, 'policy.yaml');
  const passwordFile = join(env.work, 'reader.pw');
  writeFileSync(passwordFile, READER_PASSWORD, { mode: 0o600 });
  writeFileSync(policy, daemonPolicy(env.slapd, env.base, passwordFile, join(env.work, 'fallback.sqlite')));
  const daemon = new DaemonProcess();
  try {
    writeIdmapd(umichIdmapdConf(env.slapd, env.base), { secret: true });
    await daemon.start({ policy, socket, cache: join(env.work, 'daemon.sqlite'), args: ['--serve', 'none'] });

    const NFS = `${NFSIDMAP} -t 600 %k %d`;
    const OURS = `${HELPER} --socket ${socket} --policy ${policy} nfs %k`;
    const L = { umich: 'nfsidmap + umich_ldap', cold: 'nsidmap-upcall + nsidmapd, cache cold (1 search)', warm: 'nsidmap-upcall + nsidmapd, cache warm' };
    const lookupOf = (i: number): Lookup => ({ description: `uid:${bulkNfsv4Name(i)}`, payload: `${bulkUid(i)}\0` });
    const run = (label: string, program: string, users: readonly number[], into: Phase[]) => runPhase(label, RULE_PATTERN, program, users.map(lookupOf), into);
    const phases: Phase[] = [];
    const scratch: Phase[] = [];
    const measured = env.order.slice(0, env.names);
    const warm = env.order.slice(env.order.length - WARMUP);
    // warm-up, not counted: both helpers' binaries and libraries in the page cache, the daemon's JIT
    await run('warm-up umich_ldap', NFS, warm, scratch);
    await run('warm-up nsidmap', OURS, warm, scratch);
    for (const p of scratch) if (p.wrong || p.failed) throw new Error(`${p.label}: ${p.wrong} wrong, ${p.failed} failed: ${stats.problems.join('; ')}`);

    const q = env.names / 4;
    const quarters = [0, 1, 2, 3].map((k) => measured.slice(k * q, (k + 1) * q));
    const c0 = await cacheCounters(socket);
    for (const users of quarters) {
      await run(L.umich, NFS, users, phases);
      await run(L.cold, OURS, users, phases);
    }
    const c1 = await cacheCounters(socket);
    for (const users of quarters) {
      await run(L.umich, NFS, users, phases);
      await run(L.warm, OURS, users, phases);
    }
    const c2 = await cacheCounters(socket);

    console.log(`\nbench/ldap — end to end: request_key(2) → /sbin/request-key → helper → LDAP or cache → instantiated key`);
    console.log(`kernel ${release()}, node ${process.version}, ${cpus().length} CPU ${cpus()[0]?.model ?? ''}, nfs-common ${nfsCommonVersion()}, slapd ${env.slapd.uri}`);
    console.log(`${env.names} distinct names per phase (uid:userNNNN@${NFSV4_DOMAIN}), each lookup in a fresh session keyring; phases A/B/A/B, back to back`);
    console.log(`umich_ldap: connect + simple bind as ${readerDn(env.base)} + search + unbind per lookup; nsidmapd: the same bind, once per pooled connection\n`);
    printTable(phases, L.umich, { first: 'method', ratio: 'ratio to nfsidmap+umich_ldap' });
    console.log(`\nnsidmapd cache during the cold phases: ${c1.misses - c0.misses} misses, ${c1.hits - c0.hits} hits; warm phases: ${c2.misses - c1.misses} misses, ${c2.hits - c1.hits} hits`);
    console.log(`/proc/keys: at most ${stats.procKeysMax} lines seen during the run (sampled every 20 lookups)`);
    if (stats.problems.length) console.log(`problems (first ${stats.problems.length}):\n  ${stats.problems.join('\n  ')}`);
    return phases;
  } catch (e) {
    if (daemon.stderr) console.error(`nsidmapd stderr (tail):\n${daemon.stderr}`);
    throw e;
  } finally {
    await daemon.stop().catch(() => {});
    cleanup(); // the rule, /etc/idmapd.conf back, the daemon if it lingers
  }
}

// ---------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const args = parseArgs({ options: { names: { type: 'string', default: '240' }, 'no-request-key': { type: 'boolean', default: false } } }).values;
  const missing = slapdMissing();
  if (missing) {
    console.log(`bench/ldap: ${missing}`);
    process.exitCode = 1;
    return;
  }
  handleSignals();
  const t0 = performance.now();
  const slapd = await Slapd.start({ schema: 'nis', suffix: BASE, ldif: [join(FIXTURE_DIR, 'rfc2307.ldif')], tmp: work });
  try {
    console.log(`slapd ${slapd.uri}: started and loaded (${BULK_USERS} users, 100 groups + named) in ${((performance.now() - t0) / 1000).toFixed(2)} s; node ${process.version}`);
    await coldSource(slapd.uri);
    await throughResolver(slapd.uri);
    if (!args['no-request-key']) await benchUmichLdap({ slapd, base: BASE, order: shuffled(BULK_USERS, 11), names: Number(args.names), work });
  } finally {
    await slapd.stop();
  }
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  try {
    await main();
  } catch (e) {
    console.error(`bench/ldap: ${(e as Error).message}`);
    process.exitCode = interrupted() ? 130 : 1;
  } finally {
    cleanup();
  }
}
