/**
 * bench/responders — the per-namespace responders under load (issue 5, part 6), and the cost of
 * waiting on real kernel-style file descriptors.
 *
 *   npx tsx bench/responders.ts
 *
 * Part 1: 5 network namespaces, each served by a PipefsResponder (4 NFS clients: clnt dirs) and
 * an NfsdResponder (4 NFS clients: auth domains), with a policy that gives each namespace its own
 * scope (match.container), domain, id range and directory — disjoint descriptions, which is what
 * makes per-namespace scopes sound on the pipe path, whose answers the kernel caches host-wide
 * (see src/responders/pipefs/listener.ts; the simulation here leaves that cache out so that every
 * upcall reaches a pipe). 1,000 upcalls at once — 500 on the 20 pipes,
 * 500 on the 5 nfsd channel pairs — against the simulated kernel (test/sim/), every reply checked
 * against the answer expected for its namespace; twice: cold (empty caches), then warm (resolver
 * cache filled, nfsd caches flushed through the responders). Latency is from the kernel queueing
 * the upcall to the key/entry being complete; a client's pipe takes one upcall at a time (as the
 * kernel's idmap mutex makes it), so pipe latencies include the queue behind that client.
 *
 * Part 2: the real channel code (FdChannel) on FIFOs standing in for rpc_pipefs pipes — wake-up
 * latency from a write to the read returning, and the CPU spent while 20 channels sit idle —
 * for the poll(2)-on-a-pool-thread poller and the interval fallback.
 *
 * Prints figures; asserts only that every upcall was answered correctly.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants as fsc, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fdChannelOpener, type KernelChannel } from '../src/responders/channel.js';
import { NfsdResponder } from '../src/responders/nfsd/listener.js';
import { PipefsResponder } from '../src/responders/pipefs/listener.js';
import { createPollPoller, IntervalPoller, type Poller } from '../src/responders/poller.js';
import { testEnv, type PolicyInput } from '../test/sim/env.js';
import { SimNfsd, type NfsdResult } from '../test/sim/kernel-nfsd.js';
import { SimPipefs, type UpcallResult } from '../test/sim/kernel-pipefs.js';

const NAMESPACES = 5;
const CLIENTS_PER_NS = 4;
const USERS = 200;
const PIPE_UPCALLS = 500;
const NFSD_UPCALLS = 500;

const work = mkdtempSync(join(tmpdir(), 'nsidmap-bench-resp-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

const base = (ns: number) => 100_000 * (ns + 1);
const domain = (ns: number) => `t${ns}.example`;

function policy(): PolicyInput {
  const providers: NonNullable<PolicyInput['providers']> = {};
  const scopes: NonNullable<PolicyInput['scopes']> = [];
  for (let ns = 0; ns < NAMESPACES; ns++) {
    const users: Record<string, number> = {};
    for (let k = 0; k < USERS; k++) users[`u${k}`] = base(ns) + k;
    providers[`d${ns}`] = { kind: 'static', users, groups: users };
    scopes.push({ name: `tenant-${ns}`, match: { interface: ['pipefs', 'nfsd'], container: `tenant-${ns}-*` }, domain: domain(ns), providers: [`d${ns}`] });
  }
  scopes.push({ name: 'host', providers: ['d0'], domain: 'host.example' });
  return { domain: 'host.example', providers, scopes };
}

interface Namespace {
  readonly ns: number;
  readonly pipefs: SimPipefs;
  readonly nfsd: SimNfsd;
  readonly clnts: string[];
  readonly responders: [PipefsResponder, NfsdResponder];
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}
const ms = (v: number) => `${v.toFixed(2)} ms`;

interface Job {
  readonly iface: 'pipefs' | 'nfsd';
  readonly run: () => Promise<unknown>;
  readonly check: (r: unknown) => string | undefined;
}

function pipeJob(n: Namespace, i: number): Job {
  const clnt = n.clnts[i % n.clnts.length]!;
  const k = (i * 7) % USERS;
  const type = i % 3 === 0 ? 'group' : 'user';
  const byName = i % 2 === 0;
  const want = byName ? base(n.ns) + k : `u${k}@${domain(n.ns)}`;
  return {
    iface: 'pipefs',
    run: () => (byName ? n.pipefs.upcall(clnt, { type, conv: 'name-to-id', name: `u${k}@${domain(n.ns)}` }) : n.pipefs.upcall(clnt, { type, conv: 'id-to-name', id: base(n.ns) + k })),
    check: (r) => {
      const res = r as UpcallResult;
      return res.kind === 'instantiated' && res.value === want ? undefined : `ns ${n.ns} ${clnt}: want ${want}, got ${JSON.stringify(res)}`;
    },
  };
}

function nfsdJob(n: Namespace, i: number, round: number): Job {
  const auth = `10.${n.ns}.0.${i % CLIENTS_PER_NS}`;
  const k = (i * 11 + round * 97) % USERS;
  const type = i % 3 === 0 ? 'group' : 'user';
  const byName = i % 2 === 0;
  const want = byName ? base(n.ns) + k : `u${k}@${domain(n.ns)}`;
  return {
    iface: 'nfsd',
    run: () => (byName ? n.nfsd.request('nametoid', auth, type, `u${k}@${domain(n.ns)}`) : n.nfsd.request('idtoname', auth, type, base(n.ns) + k)),
    check: (r) => {
      const res = r as NfsdResult;
      return res.kind === 'positive' && res.value === want ? undefined : `ns ${n.ns} ${auth}: want ${want}, got ${JSON.stringify(res)}`;
    },
  };
}

async function setup(): Promise<{ spaces: Namespace[]; stop: () => Promise<void> }> {
  const t = testEnv(policy(), { level: 'error' });
  const spaces: Namespace[] = [];
  for (let ns = 0; ns < NAMESPACES; ns++) {
    const dir = join(work, `ns${ns}`);
    const pipefs = await new SimPipefs(join(dir, 'rpc_pipefs')).init();
    const nfsd = await new SimNfsd(join(dir, 'net', 'rpc')).init();
    const clnts: string[] = [];
    for (let c = 0; c < CLIENTS_PER_NS; c++) clnts.push(await pipefs.addClient());
    const ctx = { netns: { inode: 4026533000 + ns, isInit: false }, container: { id: `tenant-${ns}-${'ab'.repeat(30)}`, runtime: 'containerd' } };
    const p = new PipefsResponder(pipefs.root, ctx, { openChannel: pipefs.openChannel, rescanMs: 0 });
    const d = new NfsdResponder(nfsd.procNetRpc, ctx, { openChannel: nfsd.openChannel });
    await p.start(t.env);
    await d.start(t.env);
    for (const c of clnts) await pipefs.waitForReader(c);
    spaces.push({ ns, pipefs, nfsd, clnts, responders: [p, d] });
  }
  return { spaces, stop: async () => void (await Promise.all(spaces.flatMap((s) => s.responders.map((r) => r.stop())))) };
}

async function round(spaces: Namespace[], r: number, label: string): Promise<void> {
  const jobs: Job[] = [];
  for (let i = 0; i < PIPE_UPCALLS; i++) jobs.push(pipeJob(spaces[i % NAMESPACES]!, Math.floor(i / NAMESPACES)));
  for (let i = 0; i < NFSD_UPCALLS; i++) jobs.push(nfsdJob(spaces[i % NAMESPACES]!, Math.floor(i / NAMESPACES), r));
  const lat: Record<'pipefs' | 'nfsd', number[]> = { pipefs: [], nfsd: [] };
  const errors: string[] = [];
  const t0 = performance.now();
  await Promise.all(
    jobs.map(async (j) => {
      const a = performance.now();
      const res = await j.run();
      lat[j.iface].push(performance.now() - a);
      const bad = j.check(res);
      if (bad) errors.push(bad);
    }),
  );
  const wall = performance.now() - t0;
  const all = [...lat.pipefs, ...lat.nfsd].sort((a, b) => a - b);
  console.log(`\n${label}: ${jobs.length} upcalls at once over ${NAMESPACES} namespaces (${NAMESPACES * CLIENTS_PER_NS} pipe clients, ${NAMESPACES * CLIENTS_PER_NS} nfsd clients)`);
  console.log(`  wall ${ms(wall)}  throughput ${Math.round((jobs.length / wall) * 1000).toLocaleString('en')} upcalls/s`);
  for (const [name, xs] of [['all', all], ['pipefs', lat.pipefs.sort((a, b) => a - b)], ['nfsd', lat.nfsd.sort((a, b) => a - b)]] as const) {
    console.log(`  ${name.padEnd(7)} n=${String(xs.length).padEnd(4)} p50 ${ms(pct(xs, 0.5))}  p99 ${ms(pct(xs, 0.99))}  max ${ms(xs[xs.length - 1]!)}`);
  }
  const rejected = spaces.reduce((s, n) => s + n.pipefs.counters.rejected + n.nfsd.counters.rejected + n.nfsd.counters.mismatched + n.nfsd.counters.nonCanonical + n.nfsd.counters.expired, 0);
  console.log(`  answered ${jobs.length - errors.length}/${jobs.length}, wrong or crossed ${errors.length}, refused by the kernel ${rejected}`);
  if (errors.length > 0 || rejected > 0) {
    console.error(errors.slice(0, 5).join('\n'));
    process.exitCode = 1;
  }
}

// ---- part 2: real descriptors ----

async function fifoChannels(poller: Poller, count: number): Promise<{ chans: KernelChannel[]; writers: number[]; close: () => Promise<void> }> {
  const chans: KernelChannel[] = [];
  const writers: number[] = [];
  for (let i = 0; i < count; i++) {
    const p = join(work, `fifo-${poller.kind}-${i}`);
    execFileSync('mkfifo', [p]);
    chans.push(await fdChannelOpener(poller)(p, 'rw'));
    writers.push(openSync(p, fsc.O_WRONLY | fsc.O_NONBLOCK));
  }
  return { chans, writers, close: async () => {
    writers.forEach((w) => closeSync(w));
    await Promise.all(chans.map((c) => c.close()));
  } };
}

async function wakeLatency(poller: Poller, label: string, pings: number): Promise<void> {
  const { chans, writers, close } = await fifoChannels(poller, 20);
  const msg = Buffer.alloc(140, 1);
  const lat: number[] = [];
  // 19 channels wait idle while one is pinged; the pinged one rotates
  const idle = chans.map((c, i) => (i === 0 ? undefined : c.read()));
  void idle;
  for (let i = 0; i < pings; i++) {
    const r = chans[0]!.read();
    await new Promise((res) => setImmediate(res));
    const a = performance.now();
    writeSync(writers[0]!, msg);
    await r;
    lat.push(performance.now() - a);
  }
  lat.sort((a, b) => a - b);
  // idle cost: 20 channels waiting, nothing written, 2 s
  const pending = chans[0]!.read();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((res) => setTimeout(res, 2000));
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  await close();
  await pending;
  console.log(`  ${label.padEnd(34)} wake p50 ${ms(pct(lat, 0.5))}  p99 ${ms(pct(lat, 0.99))}  max ${ms(lat[lat.length - 1]!)}   idle CPU (20 channels) ${(((cpu.user + cpu.system) / 1000 / wall) * 100).toFixed(2)} %`);
}

async function main(): Promise<void> {
  console.log(`bench/responders — node ${process.version}, ${process.platform}/${process.arch}`);
  console.log('\nPart 1: per-namespace responders against the simulated kernel');
  const { spaces, stop } = await setup();
  await round(spaces, 0, 'cold (empty caches)');
  for (const n of spaces) await n.responders[1].flushKernelCaches();
  await round(spaces, 1, 'warm (resolver cache filled, nfsd caches flushed)');
  await stop();

  console.log('\nPart 2: FdChannel on real FIFOs (stand-ins for rpc_pipefs pipes)');
  const pp = createPollPoller();
  if (pp) await wakeLatency(pp, 'poll(2) on a pool thread (default)', 2000);
  else console.log('  poll/eventfd not loadable here: only the fallback runs');
  await wakeLatency(new IntervalPoller(10), 'interval fallback, 10 ms', 200);
}

await main();
