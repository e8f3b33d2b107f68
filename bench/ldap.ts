/**
 * bench/ldap — the ldap source's speed figures (issue #4 §5), against its own slapd on loopback
 * seeded with test/fixtures/ldap/rfc2307.ldif (1,000 bulk users):
 *
 *   npx tsx bench/ldap.ts            (~5 s; needs /usr/sbin/slapd: bash test/setup.sh installs it)
 *   npx tsx bench/ldap.ts --umich    (also the side-by-side with nfsidmap's umich_ldap: see benchUmichLdap)
 *
 * - cold miss, source: one search on a pooled connection, one at a time, each name once
 *   (1,000 distinct names, random order);
 * - cold miss, concurrent: the same searches, 32 at a time (the pool's in-flight bound) — throughput;
 * - cold miss, resolver: a name-to-uid through the Resolver with an empty cache (policy, cache
 *   read, source, cache write);
 * - warm hit: the Resolver answering from its cache (memory front over SQLite), no LDAP at all.
 *
 * Prints figures; asserts nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCache } from '../src/cache/tiered.js';
import { silentLogger } from '../src/log.js';
import { ldapSchema } from '../src/providers/ldap/config.js';
import { LdapSource } from '../src/providers/ldap/source.js';
import type { Source } from '../src/providers/source.js';
import { compilePolicy } from '../src/resolver/policy/compile.js';
import { Policy } from '../src/resolver/policy/schema.js';
import { Resolver } from '../src/resolver/resolver.js';
import type { Context } from '../src/types.js';
import { BASE, BULK_USERS, bulkUid, bulkUserName, FIXTURE_DIR } from '../test/fixtures/ldap/generate.js';
import { Slapd, slapdMissing } from '../test/ldap/slapd.js';

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

// ------------------------------------------------------------------- nfsidmap umich_ldap hook

export interface UmichBenchEnv {
  /** the slapd this run started (ldap://127.0.0.1:PORT), seeded with rfc2307.ldif */
  readonly slapd: Slapd;
  readonly base: string;
  /** the names measured on our side, in the order measured (name-to-uid of `name@example.com`) */
  readonly names: readonly string[];
  /** a scratch directory removed at exit */
  readonly work: string;
}

/**
 * The side-by-side with nfsidmap's own LDAP method (issue #4 §5): NOT DONE YET — this is the entry
 * point to fill in. Return figures for the same lookups, or undefined with the reason printed.
 *
 * What it needs (Debian bookworm): libnfsidmap1 ships /usr/lib/x86_64-linux-gnu/libnfsidmap/umich_ldap.so;
 * keyutils' /sbin/request-key with a request-key.d rule for `id_resolver` that runs nfsidmap
 * (`create id_resolver * * /usr/sbin/nfsidmap -t 600 %k %d`) and an idmapd.conf for it
 * (`nfsidmap -c`/`-d` read /etc/idmapd.conf; keep a copy and restore it) with `Method = umich_ldap`
 * and an `[UMICH_SCHEMA]` section — keys as umich_ldap.so reads them: LDAP_server, LDAP_port,
 * LDAP_base, LDAP_people_base, LDAP_group_base, NFSv4_person_objectclass, NFSv4_name_attr,
 * NFSv4_uid_attr, NFSv4_acctname_attr, NFSv4_group_objectclass, NFSv4_gid_attr, NFSv4_group_attr,
 * LDAP_timeout_seconds (check idmapd.conf(5)). umich_ldap binds per lookup and looks a name up by
 * NFSv4_name_attr holding the full `name@domain`: either point NFSv4_name_attr at a fixture
 * attribute that holds it (give the bulk users an `nfsv4Name`, test/fixtures/ldap/generate.ts) or
 * measure what it does with `uid`. Drive both sides through the real request-key as the keyring
 * issue's benchmark (bench/upcall.ts) does, so the two figures cost the same kernel round trip.
 */
export async function benchUmichLdap(env: UmichBenchEnv): Promise<Figures | undefined> {
  void env;
  console.log('umich_ldap via request-key              not measured yet: bench/ldap.ts benchUmichLdap() is the hook to fill in');
  return undefined;
}

// ---------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const missing = slapdMissing();
  if (missing) {
    console.log(`bench/ldap: ${missing}`);
    process.exitCode = 1;
    return;
  }
  const t0 = performance.now();
  const slapd = await Slapd.start({ schema: 'nis', suffix: BASE, ldif: [join(FIXTURE_DIR, 'rfc2307.ldif')], tmp: work });
  try {
    console.log(`slapd ${slapd.uri}: started and loaded (${BULK_USERS} users, 100 groups + named) in ${((performance.now() - t0) / 1000).toFixed(2)} s; node ${process.version}`);
    await coldSource(slapd.uri);
    await throughResolver(slapd.uri);
    if (process.argv.includes('--umich')) {
      const f = await benchUmichLdap({ slapd, base: BASE, names: shuffled(BULK_USERS).map(bulkUserName), work });
      if (f) report('umich_ldap via request-key', f);
    }
  } finally {
    await slapd.stop();
  }
}

if (process.argv[1] === new URL(import.meta.url).pathname) await main();
