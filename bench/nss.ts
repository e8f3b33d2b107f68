/**
 * NSS lookups three ways — spawning `getent`, libc `getpw*_r` through koffi inline (sync), and the
 * same on a worker thread (koffi `.async()`, what src/providers/nss.ts keeps) — for latency,
 * throughput, and how long the event loop is held. Prints a table; run `npx tsx bench/nss.ts`.
 *
 * "event-loop µs per lookup" is the main thread's busy time (eventLoopUtilization) divided by the
 * lookups: what one lookup costs every other request of the daemon. The last line shows the case
 * that decides: a slow NSS module (simulated with a 50 ms usleep in libc, as a module waiting on its
 * directory would) holds the loop for the whole wait when called inline, and not at all async.
 */
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import koffi from 'koffi';
import { LibcNss, type NssRecord } from '../src/providers/nss.js';
import type { Entity } from '../src/types.js';

type Lookup = (entity: Entity, key: string | number) => Promise<NssRecord | undefined>;

/** The spawn variant, kept here only to be measured. Exit 2 is getent's "not found". */
function getent(entity: Entity, key: string | number): Promise<NssRecord | undefined> {
  const db = entity === 'user' ? 'passwd' : 'group';
  return new Promise((resolve, reject) => {
    execFile('getent', [db, String(key)], (err, stdout) => {
      if (err) return (err as { code?: unknown }).code === 2 ? resolve(undefined) : reject(err);
      const [name, , id] = stdout.split('\n')[0]!.split(':');
      resolve(name !== undefined && id !== undefined ? { name, id: Number(id) } : undefined);
    });
  });
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

function pct(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Watch a 1 ms timer; the stop function gives its worst lateness in ms (how long the loop was held). */
function stallMeter(): () => number {
  let last = performance.now();
  let worst = 0;
  const t = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 1);
    last = now;
  }, 1);
  return () => {
    clearInterval(t);
    return Math.max(0, worst);
  };
}

interface Latency {
  p50: number;
  p99: number;
}

/** Sequential lookups, one per macrotask (as requests arrive); µs per call. */
async function latency(lookup: Lookup, entity: Entity, key: string | number, n: number): Promise<Latency> {
  const times: number[] = [];
  for (let i = 0; i < 20; i++) await lookup(entity, key); // warm up (first NSS call loads modules)
  for (let i = 0; i < n; i++) {
    await nextTurn();
    const t0 = performance.now();
    await lookup(entity, key);
    times.push((performance.now() - t0) * 1000);
  }
  times.sort((a, b) => a - b);
  return { p50: pct(times, 50), p99: pct(times, 99) };
}

/** `width` concurrent callers, `n` lookups in all: lookups/s and event-loop µs per lookup. */
async function throughput(lookup: Lookup, n: number, width: number): Promise<{ perSec: number; loopUs: number }> {
  let left = n;
  const worker = async (): Promise<void> => {
    while (left-- > 0) await lookup('user', left % 2 === 0 ? 'root' : 0);
  };
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: width }, worker));
  const ms = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  return { perSec: (n / ms) * 1000, loopUs: (elu.active / n) * 1000 };
}

/** The loop stall while one 50 ms libc call runs inline vs on a worker. */
async function slowModule(): Promise<{ sync: number; async: number }> {
  const usleep = koffi.load(null).func('int usleep(uint32_t usec)');
  const measure = async (call: () => Promise<unknown>): Promise<number> => {
    const stop = stallMeter();
    await nextTurn();
    await call();
    await new Promise((r) => setTimeout(r, 5));
    return stop();
  };
  const sync = await measure(async () => usleep(50_000));
  const async = await measure(() => new Promise((r) => usleep.async(50_000, r)));
  return { sync, async };
}

const f = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

async function main(): Promise<void> {
  const ffiSync = await LibcNss.open({ mode: 'sync' });
  const ffiAsync = await LibcNss.open({ mode: 'async' });
  const variants: Array<[string, Lookup, number]> = [
    ['getent (spawn)', getent, 200],
    ['koffi sync', (e, k) => ffiSync.lookup(e, k), 5000],
    ['koffi async', (e, k) => ffiAsync.lookup(e, k), 5000],
  ];
  console.log(`node ${process.version}, ${process.arch}; nsswitch passwd/group as on this host`);
  console.log('variant          | lookup            | p50 µs | p99 µs');
  for (const [label, lookup, n] of variants) {
    const cases: Array<[string, Entity, string | number]> = [
      ['user by name', 'user', 'root'],
      ['user by id', 'user', 0],
      ['group by name', 'group', 'root'],
      ['unknown name', 'user', 'nsidmap-no-such-user'],
    ];
    for (const [what, entity, key] of cases) {
      const r = await latency(lookup, entity, key, n);
      console.log(`${label.padEnd(16)} | ${what.padEnd(17)} | ${f(r.p50).padStart(6)} | ${f(r.p99).padStart(6)}`);
    }
  }
  console.log('\nvariant          | 32 concurrent callers: lookups/s | event-loop µs per lookup');
  for (const [label, lookup, n] of variants) {
    const r = await throughput(lookup, n * 2, 32);
    console.log(`${label.padEnd(16)} | ${f(r.perSec).padStart(32)} | ${f(r.loopUs).padStart(8)}`);
  }
  const slow = await slowModule();
  console.log(`\nsimulated slow NSS module (libc usleep 50 ms): loop held ${f(slow.sync)} ms sync, ${f(slow.async)} ms async`);
}

await main();
