/**
 * nsidmap-upcall through the real kernel: `keyctl request2` → the kernel → /sbin/request-key →
 * dist/keyring/nsidmap-upcall → nsidmapd (or, with the daemon gone, dist/keyring/upcall.js) → the
 * key's payload, timeout, negative or rejected state as the requester sees it.
 *
 * This kernel has no NFS or CIFS, but request-key runs for any key type: the test installs ONE
 * rule file, /etc/request-key.d/nsidmap-upcall-test-<pid>.conf, for `user` keys with the eight
 * description prefixes of id_resolver and cifs.idmap (never a rule for those types themselves).
 * Every line names this run's callout info, `nsidmap-upcall-test-<pid>`: request-key takes the
 * least-wild line, so a rule with `*` there (another test run, a benchmark) never wins our
 * requests, and ours never matches theirs. Each request runs in a fresh session keyring
 * (`keyctl session -`), so no answer comes from an earlier key. The rule goes in after(), on
 * process exit and on SIGINT/SIGTERM.
 *
 * Needs root (request-key.d, cgroups, other uids), keyutils and util-linux; skips with the reason
 * otherwise. The helper is built by `npm run build` (test/run.sh); run alone, this file builds it.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import {
  accessSync, chmodSync, constants, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmdirSync, rmSync,
  statSync, writeFileSync,
} from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import * as keyctl from '../../src/responders/keyring/keyctl.js';
import { REPO, scratch, startDaemon, waitReady, type Proc, type Scratch } from './harness.js';

const run = promisify(execFile);

const HELPER = join(REPO, 'dist/keyring/nsidmap-upcall');
const FALLBACK = join(REPO, 'dist/keyring/upcall.js');
const RULE = `/etc/request-key.d/nsidmap-upcall-test-${process.pid}.conf`;
const CALLOUT = `nsidmap-upcall-test-${process.pid}`;
/** recognisable key timeouts: /proc/keys shows 1357 s as `22m`, 37 s as `37s` (or `36s`) */
const POSITIVE_TTL = 1357;
const NEGATIVE_TTL = 37;
const EXPIRY_POSITIVE = /^22m$/;
const EXPIRY_NEGATIVE = /^3[67]s$/;
/** REJECT_TIMEOUT (60 s) prints as `1m`, then `59s` */
const EXPIRY_REJECTED = /^(1m|5[89]s)$/;
/** the helpers' own-failure timeout, ERROR_TIMEOUT = 5 s; the kernel's fallback would be `1m` */
const EXPIRY_ERROR = /^[45]s$/;
const TIMEOUT_MS = 1500;

function unavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'needs root to install a request-key rule';
  if (!existsSync('/sbin/request-key')) return '/sbin/request-key is not installed (keyutils)';
  try {
    accessSync('/etc/request-key.d', constants.W_OK);
  } catch {
    return '/etc/request-key.d is not writable';
  }
  for (const tool of ['keyctl', 'unshare', 'setpriv']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed`;
    }
  }
  try {
    keyctl.getKeyringId(keyctl.KEY_SPEC.SESSION);
  } catch (e) {
    // ENOSYS: built without CONFIG_KEYS; EPERM/EACCES: a seccomp or LSM policy refuses keyctl
    return `the kernel refuses keyrings here: ${(e as Error).message}`;
  }
  return undefined;
}

const SKIP = unavailable();

// ---- building ---------------------------------------------------------------------------------

function newest(dir: string, suffixes: readonly string[]): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newest(p, suffixes));
    else if (suffixes.some((s) => e.name.endsWith(s))) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

const mtime = (p: string): number => (existsSync(p) ? statSync(p).mtimeMs : 0);

/**
 * Build what is missing or older than its sources (when this file runs alone; test/run.sh has
 * built everything): the C helper, and unless `helperOnly`, the JavaScript of the fallback.
 */
function ensureBuilt(helperOnly = false): void {
  if (!helperOnly && mtime(FALLBACK) < Math.max(newest(join(REPO, 'src'), ['.ts']), newest(join(REPO, 'keyring'), ['.ts']))) {
    // tsc emits even with type errors (someone's half-made edit elsewhere in src/): type-checking
    // is test/run.sh's job, this only needs the JavaScript.
    spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: REPO, stdio: 'ignore' });
    if (!existsSync(FALLBACK)) throw new Error(`tsc -p tsconfig.build.json did not produce ${FALLBACK}`);
  }
  if (mtime(HELPER) < Math.max(mtime(join(REPO, 'keyring/nsidmap-upcall.c')), mtime(join(REPO, 'scripts/build-upcall.sh')))) {
    execFileSync('bash', ['scripts/build-upcall.sh'], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
  }
}

// ---- the rule ---------------------------------------------------------------------------------

const PREFIXES = { nfs: ['uid', 'gid', 'user', 'group'], cifs: ['os', 'gs', 'oi', 'gi'] } as const;

function ruleText(s: Scratch, extra = ''): string {
  const lines: string[] = [];
  for (const [proto, prefixes] of Object.entries(PREFIXES)) {
    for (const p of prefixes) {
      lines.push(`create user ${p}:* ${CALLOUT} ${HELPER} --socket ${s.path('admin.sock')} --policy ${s.path('policy.yaml')} --timeout-ms ${TIMEOUT_MS} ${proto} %k`);
    }
  }
  return `# nsidmap test run ${process.pid} (test/integration/upcall.test.ts); removed when it ends\n${lines.join('\n')}\n${extra}`;
}

/** Replace the rule file whole: request-key reads *.conf while we write, so never a half-written one. */
function writeRule(text: string): void {
  const tmp = `${RULE}.tmp`; // not *.conf: request-key does not read it
  writeFileSync(tmp, text);
  renameSync(tmp, RULE);
}

function removeRule(): void {
  rmSync(RULE, { force: true });
  rmSync(`${RULE}.tmp`, { force: true });
}

function removeRuleAndDie(signal: NodeJS.Signals): void {
  removeRule();
  process.kill(process.pid, signal);
}

// ---- one upcall -------------------------------------------------------------------------------

/**
 * Run by `keyctl session - sh req.sh …` (a fresh session keyring): one request2, reported as
 * k=v lines. `$$` of the inner sh is the pid of keyctl after exec: the requester the daemon logs.
 * $3 (optional): fill the user's key quota first, leaving this many bytes free.
 */
const REQ_SH = `#!/bin/sh
if [ -n "$3" ]; then
  q=$(grep "^ *$(id -u):" /proc/key-users | awk '{print $5}')
  head -c $(( \${q#*/} - \${q%/*} - 5 - $3 )) /dev/zero | keyctl padd user fill @s >/dev/null || exit 1
fi
res=$(sh -c 'echo $$; exec keyctl request2 user "$1" "$2" @s 2>&1' sh "$1" "$2")
echo "rc=$?"
echo "pid=\${res%%
*}"
echo "out=\${res#*
}"
echo "userns=$(readlink /proc/self/ns/user)"
for k in $(keyctl rlist @s); do grep "^$(printf %08x "$k") " /proc/keys | sed 's/^/key=/'; done
case "\${res#*
}" in
  ''|*[!0-9]*) ;;
  *) echo "payload=$(keyctl pipe "\${res#*
}" | od -An -v -tx1 | tr -d ' \\n')" ;;
esac
`;

interface Upcall {
  readonly desc: string;
  readonly rc: number;
  /** the serial, or keyctl's error text */
  readonly out: string;
  readonly pid: number;
  readonly userns: string;
  /** the key's /proc/keys line, read inside the session */
  readonly key?: keyctl.ProcKeysLine;
  readonly payload?: string;
  readonly ms: number;
}

interface UpcallOptions {
  readonly callout?: string;
  /** words run before `keyctl session - …`: unshare, setpriv */
  readonly wrap?: readonly string[];
  readonly quotaRoom?: number;
}

let script = '';

async function upcall(desc: string, o: UpcallOptions = {}): Promise<Upcall> {
  const args = [...(o.wrap ?? []), 'keyctl', 'session', '-', 'sh', script, desc, o.callout ?? CALLOUT, ...(o.quotaRoom ? [String(o.quotaRoom)] : [])];
  const t0 = performance.now();
  const { stdout } = await run(args[0]!, args.slice(1), { timeout: 30_000 });
  const ms = performance.now() - t0;
  const get = (k: string) => stdout.split('\n').filter((l) => l.startsWith(`${k}=`)).map((l) => l.slice(k.length + 1));
  const key = get('key').map((l) => keyctl.parseProcKeysLine(l)).find((k) => k && (k.summary === desc || k.summary.startsWith(`${desc}: `)));
  return {
    desc,
    rc: Number(get('rc')[0]),
    out: get('out')[0] ?? '',
    pid: Number(get('pid')[0]),
    userns: get('userns')[0] ?? '',
    key,
    payload: get('payload')[0],
    ms,
  };
}

// ---- expected answers -------------------------------------------------------------------------

const hex = (s: string): string => Buffer.from(s).toString('hex');
const u32 = (n: number): string => {
  const b = Buffer.alloc(4);
  if (endianness() === 'LE') b.writeUInt32LE(n);
  else b.writeUInt32BE(n);
  return b.toString('hex');
};
/** struct cifs_sid of S-1-22-<family>-<id>: revision 1, 2 sub-authorities, authority 22 big-endian, subs little-endian, 68 bytes */
const unixSid = (family: number, id: number): string => {
  const b = Buffer.alloc(68);
  b[0] = 1;
  b[1] = 2;
  b.writeUIntBE(22, 2, 6);
  b.writeUInt32LE(family, 8);
  b.writeUInt32LE(id, 12);
  return b.toString('hex');
};

/** The eight description forms (docs/PROTOCOLS.md §2, §5) with the exact payload bytes. */
const FORMS: readonly (readonly [string, string])[] = [
  ['uid:alice@example.com', '3130303100'],
  ['gid:staff@example.com', '353000'],
  ['user:1001', hex('alice@example.com')],
  ['group:50', hex('staff@example.com')],
  ['os:S-1-22-1-1001', u32(1001)],
  ['gs:S-1-22-2-50', u32(50)],
  ['oi:1001', unixSid(1, 1001)],
  ['gi:50', unixSid(2, 50)],
];
/** names nothing knows: nobody, as nfsidmap answers (and cached for the negative TTL) */
const UNKNOWN_NAMES: readonly (readonly [string, string])[] = [
  ['uid:carol@example.com', hex('65534\0')],
  ['gid:nogroup@example.com', hex('65534\0')],
];
/** ids and SIDs nothing knows: negated with the scope's negative TTL */
const UNKNOWN_IDS = ['user:4242', 'group:4242', 'os:S-1-5-21-1-2-3-4'];
/** malformed: rejected. (`os:S-1-99999999999` is a valid SID — a 48-bit decimal authority.) */
const MALFORMED: readonly (readonly [string, RegExp])[] = [
  ['user:abc', /reason="not a decimal id in 0\.\.4294967294: \\"abc\\""/],
  ['os:S-1-281474976710656', /reason="malformed SID \\"S-1-281474976710656\\""/],
  ['gi:-1', /reason="not a decimal id/],
];

function assertPositive(u: Upcall, payload: string): void {
  assert.equal(u.rc, 0, `${u.desc}: ${u.out}`);
  assert.equal(u.payload, payload, u.desc);
  assert.match(u.key?.expiry ?? '', EXPIRY_POSITIVE, `${u.desc}: timeout`);
}

function assertNegative(u: Upcall, expiry: RegExp): void {
  assert.equal(u.rc, 1, u.desc);
  assert.match(u.out, /Required key not available/, u.desc); // ENOKEY
  assert.equal(u.key?.flags[5], 'N', `${u.desc}: negative flag in ${JSON.stringify(u.key)}`);
  assert.match(u.key?.expiry ?? '', expiry, `${u.desc}: timeout`);
}

function assertRejected(u: Upcall): void {
  assert.equal(u.rc, 1, u.desc);
  assert.match(u.out, /Key was rejected by service/, u.desc); // EKEYREJECTED
  assert.equal(u.key?.flags[5], 'N', u.desc);
  assert.match(u.key?.expiry ?? '', EXPIRY_REJECTED, `${u.desc}: timeout`);
}

/** Every case the daemon answers, for the daemon and again for the fallback: same answers. */
async function allCases(concurrency: number): Promise<number[]> {
  const jobs: (() => Promise<number>)[] = [
    ...FORMS.map(([d, p]) => async () => { const u = await upcall(d); assertPositive(u, p); return u.ms; }),
    ...UNKNOWN_NAMES.map(([d, p]) => async () => {
      const u = await upcall(d);
      assert.equal(u.payload, p, d);
      assert.match(u.key?.expiry ?? '', EXPIRY_NEGATIVE, `${d}: nobody is kept only for the negative TTL`);
      return u.ms;
    }),
    ...UNKNOWN_IDS.map((d) => async () => { const u = await upcall(d); assertNegative(u, EXPIRY_NEGATIVE); return u.ms; }),
    ...MALFORMED.map(([d]) => async () => { const u = await upcall(d); assertRejected(u); return u.ms; }),
  ];
  const times: number[] = [];
  for (let i = 0; i < jobs.length; i += concurrency) times.push(...(await Promise.all(jobs.slice(i, i + concurrency).map((j) => j()))));
  return times;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

// ---- cgroup (a stand-in docker container) -------------------------------------------------------

/** The cgroup v2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one. */
function cgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup2 ')) return left?.split(' ')[4];
  }
  return undefined;
}

// ---- the suite --------------------------------------------------------------------------------

describe('nsidmap-upcall through /sbin/request-key on the real kernel', { skip: SKIP }, () => {
  let s: Scratch;
  let daemon: Proc;
  const cgroupMount = cgroup2Mount();
  const containerId = `5eed${process.pid.toString(16)}`.padEnd(64, '0');
  const cgOuter = `${cgroupMount}/nsidmap-upcall-test-${process.pid}`;
  const cgInner = `${cgOuter}/docker-${containerId}.scope`;

  before(async () => {
    ensureBuilt();
    process.on('exit', removeRule);
    process.once('SIGINT', removeRuleAndDie);
    process.once('SIGTERM', removeRuleAndDie);
    s = scratch('upc');
    // other uids (the quota case) run req.sh from here; the socket itself stays 0600 root
    chmodSync(s.dir, 0o711);
    script = s.path('req.sh');
    writeFileSync(script, REQ_SH, { mode: 0o755 });
    writeFileSync(s.path('policy.yaml'), `domain: example.com
providers:
  t: { kind: static, users: { alice: 1001, bob: 1002 }, groups: { staff: 50 } }
defaults:
  ttl: { positive: ${POSITIVE_TTL}, negative: ${NEGATIVE_TTL} }
scopes:
  - name: host
    providers: [t]
    sid:
      unix: { accept: true, produce: S-1-22 }
cache: { path: ${s.path('fallback.sqlite')} }
`);
    daemon = startDaemon({ policy: s.path('policy.yaml'), socket: s.path('admin.sock'), cache: s.path('daemon.sqlite') }, {}, ['--log-level', 'debug']);
    await waitReady(daemon, s.path('admin.sock'));
    writeRule(ruleText(s));
  });

  after(async () => {
    removeRule();
    process.off('exit', removeRule);
    process.off('SIGINT', removeRuleAndDie);
    process.off('SIGTERM', removeRuleAndDie);
    for (const dir of [cgInner, cgOuter]) {
      for (let i = 0; i < 50 && existsSync(dir); i++) {
        try {
          rmdirSync(dir);
        } catch {
          await sleep(20); // EBUSY until its last task has left
        }
      }
    }
    await s?.cleanup();
  });

  it("the issue's command: `keyctl request2 user 'uid:alice@example.com' '' @s` leaves 31 30 30 31 00", async () => {
    // An empty callout needs a `*` callout line; it is there only for this one request, since
    // such a line would tie with any other `user uid:*` rule on this machine.
    writeRule(ruleText(s, `create user uid:* * ${HELPER} --socket ${s.path('admin.sock')} --policy ${s.path('policy.yaml')} nfs %k\n`));
    let u: Upcall;
    try {
      u = await upcall('uid:alice@example.com', { callout: '' });
    } finally {
      writeRule(ruleText(s));
    }
    assert.equal(u.payload, '3130303100', u.out);
  });

  it('answers all eight forms byte for byte, unknown names with nobody, unknown ids negated, malformed rejected', async (t) => {
    const from = daemon.stderr.length;
    const times = await allCases(1);
    t.diagnostic(`through the daemon: median ${median(times).toFixed(1)} ms per case (the whole req.sh: keyctl session, request2, pipe, grep — not the upcall alone)`);
    const log = daemon.stderr.slice(from);
    for (const [d, re] of MALFORMED) {
      // the audit trail's line (one per distinct description and interval), not a warning per upcall
      const line = log.split('\n').find((l) => l.includes('audit.refused') && l.includes(` query=${d} `) && re.test(l));
      assert.ok(line, `the daemon logs the rejection of ${d}:\n${log}`);
      assert.ok(!log.split('\n').some((l) => l.includes('WARN upcall.rejected') && re.test(l)), 'upcall.rejected is not a warning when the audit trail has it');
    }
  });

  it('the daemon logs the requesting pid, read from the auth key in /proc/keys', async () => {
    const from = daemon.stderr.length;
    const u = await upcall('uid:bob@example.com');
    assert.equal(u.payload, '3130303200');
    const line = await daemon.logLine(/ lookup .*query=bob@example.com/, from);
    assert.match(line, new RegExp(` pid=${u.pid}( |$)`));
    assert.doesNotMatch(line, / userns=/, 'a requester in the initial user namespace');
  });

  it('a requester inside a user namespace (unshare -U -r) and a container cgroup: both in the logged context', async (t) => {
    const ownUserns = readlinkSync('/proc/self/ns/user');
    let wrap: string[] = ['unshare', '-U', '-r', '--fork'];
    let container = false;
    try {
      mkdirSync(cgInner, { recursive: true });
      // move the shell into the scope, then exec the rest: every process below inherits it
      wrap = ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgInner, ...wrap];
      container = true;
    } catch (e) {
      t.diagnostic(`no container cgroup (${(e as Error).message}): checking the user namespace only`);
    }
    const from = daemon.stderr.length;
    const u = await upcall('group:50', { wrap });
    assert.equal(u.payload, hex('staff@example.com'), u.out);
    assert.match(u.userns, /^user:\[\d+\]$/);
    assert.notEqual(u.userns, ownUserns, 'the requester runs in a new user namespace');
    const line = await daemon.logLine(/ lookup .*kind=gid-to-name query=50 /, from);
    assert.match(line, new RegExp(` pid=${u.pid}( |$)`));
    assert.match(line, new RegExp(` userns=${/\[(\d+)\]/.exec(u.userns)?.[1]}( |$)`));
    if (container) assert.match(line, new RegExp(` container=${containerId.slice(0, 12)}( |$)`));
    // the answer is the host-wide one all the same (DESIGN.md: keyring scopes never match the requester)
    assert.match(u.key?.expiry ?? '', EXPIRY_POSITIVE);
  });

  it('a full key quota (EDQUOT on instantiate): the helper negates for ERROR_TIMEOUT instead of leaving 60 s to the kernel', async (t) => {
    // A requester uid of its own, whose 20000-byte quota (keys/maxbytes) is filled so that the
    // key and request-key's _req keyring still fit but the 68-byte SID does not. The kernel's own
    // bookkeeping decides the exact room; two sizes cover the few bytes it varies by.
    let u: Upcall | undefined;
    for (const [i, room] of [90, 110].entries()) {
      const uid = 3_000_000 + (process.pid % 100_000) * 10 + i;
      u = await upcall('oi:1002', { wrap: ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'], quotaRoom: room });
      if (!/Disk quota exceeded/.test(u.out)) break; // else the kernel refused before any upcall: more room
    }
    assert.ok(u);
    if (u.rc === 0) return void t.skip(`the SID still fitted in the quota on this kernel (${u.out})`);
    assertNegative(u, EXPIRY_ERROR);
  });

  it('with the daemon killed (stale socket: ECONNREFUSED), the fallback gives the same answers', async (t) => {
    daemon.signal('SIGKILL');
    await daemon.exited;
    assert.ok(existsSync(s.path('admin.sock')), 'the stale socket stays: connecting is refused');
    assert.equal(existsSync(s.path('fallback.sqlite')), false);
    const times = await allCases(4);
    t.diagnostic(`through the fallback: median ${median(times).toFixed(0)} ms per case (4 at a time)`);
    // the fallback's engine used the policy's cache.path (the daemon had --cache)
    assert.ok(existsSync(s.path('fallback.sqlite')), 'the fallback answered');
  });

  it('with no socket at all (ENOENT), the fallback answers', async () => {
    rmSync(s.path('admin.sock'), { force: true });
    assertPositive(await upcall('user:1002'), hex('bob@example.com'));
  });

  it('with a daemon that never answers, the helper gives up after --timeout-ms and the fallback answers', async () => {
    const held: Socket[] = [];
    const silent: Server = createServer((c) => void held.push(c));
    await new Promise<void>((r) => silent.listen(s.path('admin.sock'), r));
    try {
      const u = await upcall('gs:S-1-22-2-50');
      assertPositive(u, u32(50));
      assert.equal(held.length, 1, 'the helper asked the silent daemon first');
      assert.ok(u.ms >= TIMEOUT_MS, `${u.ms} ms`);
    } finally {
      for (const c of held) c.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('a daemon payload that is not of the key\'s kind is never instantiated: the key is negated for ERROR_TIMEOUT and logged', async () => {
    // the kernel trusts the bytes: nfs_idmap_lookup_id parses up to 11 of them with kstrtol, so an
    // id without its NUL would be read on into its stack
    const bad: Record<string, string> = {
      'uid:alice@example.com': hex('1001'), // no NUL
      'gid:staff@example.com': hex('01001\0'), // a leading zero
      'user:1001': hex('a'.repeat(129)), // over 128 bytes
      'group:50': hex('st\0aff'), // a NUL inside a name
    };
    const scripted: Server = createServer((c) => {
      let buf = '';
      c.on('data', (d) => {
        buf += d.toString('utf8');
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        const desc = Buffer.from(String((JSON.parse(buf.slice(0, nl)) as { descriptionHex: string }).descriptionHex), 'hex').toString('utf8');
        c.end(`{"id":1,"ok":true,"result":{"action":"instantiate","payload":"${bad[desc] ?? hex('1001\0')}","timeout":1357}}\n`); // 22m: EXPIRY_POSITIVE
      });
    });
    rmSync(s.path('admin.sock'), { force: true });
    await new Promise<void>((r) => scripted.listen(s.path('admin.sock'), r));
    try {
      for (const desc of Object.keys(bad)) assertNegative(await upcall(desc), EXPIRY_ERROR);
      // and a payload of the right form from the same daemon is taken
      assertPositive(await upcall('uid:bob@example.com'), hex('1001\0'));
    } finally {
      await new Promise<void>((r) => scripted.close(() => r()));
    }
  });

  it('the requester goes as the auth key (the daemon reads /proc/keys only if it logs); a daemon that knows only "pid" is asked again with it', async () => {
    // a scripted daemon of the time before authKey/keySerial: zod's strict object refused them
    const asked: Record<string, unknown>[] = [];
    const old: Server = createServer((c) => {
      let buf = '';
      c.on('data', (d) => {
        buf += d.toString('utf8');
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        const req = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        asked.push(req);
        c.end(
          'authKey' in req
            ? '{"id":1,"ok":false,"error":{"code":"NSIDMAP_EREQUEST","message":"Unrecognized keys: \\"authKey\\", \\"keySerial\\""}}\n'
            : `{"id":1,"ok":true,"result":{"action":"instantiate","payload":"${hex('alice@example.com')}","timeout":1357}}\n`, // shows as 22m (EXPIRY_POSITIVE)
        );
      });
    });
    rmSync(s.path('admin.sock'), { force: true });
    await new Promise<void>((r) => old.listen(s.path('admin.sock'), r));
    try {
      const u = await upcall('user:1001');
      assertPositive(u, hex('alice@example.com'));
      assert.equal(asked.length, 2, JSON.stringify(asked));
      // root asked (keyctl as root): the daemon can read the auth key's line itself
      assert.equal(typeof asked[0]!.authKey, 'number');
      assert.equal(typeof asked[0]!.keySerial, 'number');
      assert.equal(asked[0]!.pid, undefined);
      // asked again in the old form, with the pid the helper read from /proc/keys
      assert.equal(asked[1]!.pid, u.pid);
      assert.equal(asked[1]!.authKey, undefined);
    } finally {
      await new Promise<void>((r) => old.close(() => r()));
    }
  });
});

// ---- the helper's reading of daemon replies (no kernel, no root) --------------------------------

describe('nsidmap-upcall --dry-run: what it sends the daemon and which replies it accepts', { skip: process.platform !== 'linux' && 'not Linux' }, () => {
  let s: Scratch;
  let server: Server;
  /** what the scripted daemon answers next, and what it was asked */
  let next: string | undefined;
  let asked: string[] = [];

  before(async () => {
    ensureBuilt(true);
    s = scratch('upd');
    server = createServer((c) => {
      let buf = '';
      c.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        if (!buf.includes('\n')) return;
        asked.push(buf);
        if (next === 'hang') return;
        if (next === 'close') return void c.end();
        c.end(`${next}\n`);
      });
      c.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(s.path('d.sock'), r));
  });

  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await s.cleanup();
  });

  async function dryRun(reply: string, proto = 'nfs', desc = 'uid:alice@example.com'): Promise<{ code: number; stdout: string; stderr: string }> {
    next = reply;
    asked = [];
    try {
      const { stdout, stderr } = await run(HELPER, ['--socket', s.path('d.sock'), '--timeout-ms', '300', '--dry-run', proto, desc]);
      return { code: 0, stdout, stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, stdout: x.stdout, stderr: x.stderr };
    }
  }

  it('sends one upcall request with the description hex-encoded, byte for byte', async () => {
    const desc = 'os:S-1-5;x\n\u00e9:y';
    await dryRun('{"id":1,"ok":true,"result":{"action":"negate","timeout":1}}', 'cifs', desc);
    assert.equal(asked.length, 1);
    assert.deepEqual(JSON.parse(asked[0]!), { id: 1, op: 'upcall', keyType: 'cifs.idmap', descriptionHex: Buffer.from(desc).toString('hex') });
    assert.ok(asked[0]!.endsWith('}\n'));
  });

  const ACCEPTED: readonly (readonly [string, string, string])[] = [
    ['instantiate', '{"id":1,"ok":true,"result":{"action":"instantiate","payload":"3130303100","timeout":600,"outcome":"mapped","scope":"host"}}', 'instantiate 3130303100 600'],
    ['negate, with whitespace, escapes and unknown members of every kind', ' { "id" : 1 , "ok" : true , "result" : { "scope":"a\\"b\\\\c\\u00e9", "x":[1,-2.5e3,{"y":null},true,false], "action" : "negate" , "timeout" : 37, "reason":"x\\ny" } } ', 'negate 37'],
    ['reject', '{"id":1,"ok":true,"result":{"action":"reject","timeout":60,"reason":"not a decimal id: \\"abc\\""}}', 'reject 60'],
    ['the largest key timeout', '{"id":1,"ok":true,"result":{"action":"negate","timeout":4294967295}}', 'negate 4294967295'],
  ];
  for (const [what, reply, out] of ACCEPTED) {
    it(`accepts ${what}`, async () => {
      const r = await dryRun(reply);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${out}\n`);
    });
  }

  it("reports the daemon's error (exit 1)", async () => {
    const r = await dryRun('{"id":0,"ok":false,"error":{"code":"NSIDMAP_EREQUEST","message":"request is not JSON"}}');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /NSIDMAP_EREQUEST: request is not JSON/);
  });

  const REFUSED: readonly (readonly [string, string])[] = [
    ['an odd-length payload', '{"id":1,"ok":true,"result":{"action":"instantiate","payload":"313","timeout":600}}'],
    ['a payload that is not hex', '{"id":1,"ok":true,"result":{"action":"instantiate","payload":"zz","timeout":600}}'],
    ['an instantiate without payload', '{"id":1,"ok":true,"result":{"action":"instantiate","timeout":600}}'],
    ['a payload on a negate', '{"id":1,"ok":true,"result":{"action":"negate","payload":"00","timeout":60}}'],
    ['a payload over 1024 bytes', `{"id":1,"ok":true,"result":{"action":"instantiate","payload":"${'00'.repeat(1025)}","timeout":600}}`],
    ['a fractional timeout', '{"id":1,"ok":true,"result":{"action":"negate","timeout":60.5}}'],
    ['a negative timeout', '{"id":1,"ok":true,"result":{"action":"negate","timeout":-1}}'],
    ['a timeout over 32 bits', '{"id":1,"ok":true,"result":{"action":"negate","timeout":4294967296}}'],
    ['no timeout', '{"id":1,"ok":true,"result":{"action":"negate"}}'],
    ['a timeout of 0 (a key that would never expire)', '{"id":1,"ok":true,"result":{"action":"negate","timeout":0}}'],
    ['a backslash before a raw NUL', '{"id":1,"ok":true,"result":{"action":"negate","timeout":60,"reason":"a\\\u0000b"}}'],
    ['a repeated member', '{"id":1,"ok":true,"result":{"action":"negate","timeout":60,"timeout":1}}'],
    ['an unknown action', '{"id":1,"ok":true,"result":{"action":"Negate","timeout":60}}'],
    ['an escaped action', '{"id":1,"ok":true,"result":{"action":"neg\\u0061te","timeout":60}}'],
    ['another request id', '{"id":2,"ok":true,"result":{"action":"negate","timeout":60}}'],
    ['an unknown top-level member', '{"id":1,"ok":true,"result":{"action":"negate","timeout":60},"more":1}'],
    ['both result and error', '{"id":1,"ok":true,"result":{"action":"negate","timeout":60},"error":{}}'],
    ['no result', '{"id":1,"ok":true}'],
    ['trailing bytes', '{"id":1,"ok":true,"result":{"action":"negate","timeout":60}} x'],
    ['a raw control character in a string', '{"id":1,"ok":true,"result":{"action":"negate","timeout":60,"reason":"a\tb"}}'],
    ['nesting deeper than four', '{"id":1,"ok":true,"result":{"action":"negate","timeout":60,"x":[[[[[1]]]]]}}'],
    ['a line over 64 KiB', `{"id":1,"ok":true,"result":{"action":"negate","timeout":60,"x":"${'a'.repeat(70_000)}"}}`],
    ['not JSON', 'negate 60'],
  ];
  for (const [what, reply] of REFUSED) {
    it(`refuses ${what} (exit 70)`, async () => {
      const r = await dryRun(reply);
      assert.equal(r.code, 70, `${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /sent a reply this helper does not understand/);
    });
  }

  it('a daemon that closes without answering, or never answers within --timeout-ms, is unreachable (exit 69)', async () => {
    const closed = await dryRun('close');
    assert.equal(closed.code, 69, closed.stderr);
    const t0 = performance.now();
    const hung = await dryRun('hang');
    assert.equal(hung.code, 69, hung.stderr);
    assert.ok(performance.now() - t0 >= 300);
    assert.match(hung.stderr, /no answer from nsidmapd .* within 300 ms/);
  });

  it('survives 300k mutated replies under AddressSanitizer and UBSan', async (t) => {
    const bin = s.path('reply-fuzz');
    const cc = process.env['CC'] ?? 'cc';
    const built = spawnSync(cc, ['-std=c11', '-g', '-O1', '-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-Wno-unused-function',
      '-DNSIDMAP_NODE="/nonexistent/node"', '-DNSIDMAP_FALLBACK="/nonexistent/upcall.js"', '-o', bin, join(REPO, 'test/fixtures/keyring/reply-fuzz.c')], { encoding: 'utf8' });
    if (built.status !== 0) return void t.skip(`cannot build with sanitizers here: ${(built.stderr || built.error?.message || '').split('\n')[0]}`);
    const { stdout } = await run(bin, ['300000', String(process.pid)], { timeout: 60_000 });
    t.diagnostic(stdout.trim());
    assert.match(stdout, /^\d+ of 300000 mutated replies accepted/);
  });
});
