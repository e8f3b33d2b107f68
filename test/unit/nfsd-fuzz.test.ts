/**
 * Fuzz the nfsd channel codec with hostile request lines: random bytes, random but well-quoted
 * requests, and the captured kernel requests mutated. Properties: parseRequest never throws; the
 * key it reads is the very key the kernel holds for that line (so a reply cannot land on another
 * entry); and every reply the responder would write — positive for a plausible answer, else
 * negative — is parsed by the simulated kernel (test/sim/kernel-nfsd.ts, idtoname_parse /
 * nametoid_parse) without error, is the canonical form of what it stores, carries that value and
 * that expiry. A last part runs a few thousand of them through NfsdResponder itself.
 *
 * Deterministic: the PRNG seed is printed; rerun one with NSIDMAP_FUZZ_SEED=<seed>.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { formatNegative, formatReply, formatRequest, NAME_MAX, parseRequest, type NfsdCache, type NfsdKey } from '../../src/responders/nfsd/codec.js';
import { NfsdResponder } from '../../src/responders/nfsd/listener.js';
import { ID_MAX } from '../../src/types.js';
import { CAPTURED_NFSD } from '../fixtures/nfsd/captures.js';
import { testEnv } from '../sim/env.js';
import { kernelParseReply, kernelRequestKey, SimNfsd } from '../sim/kernel-nfsd.js';
import { draws, fuzzSeed, prng } from '../helpers/prng.js';

const SEED = fuzzSeed(0x6e667364);
const INPUTS = 120_000;
const THROUGH_RESPONDER = 3000;
const EXPIRY = 1_900_000_000;

const rnd = prng(SEED);
const { int, pick } = draws(rnd);
const CACHES: readonly NfsdCache[] = ['idtoname', 'nametoid'];

/** What a hostile or broken peer might put in a line, in pieces. */
const PIECES: readonly string[] = [
  ...'abz09*./:@-_'.split(''),
  ' ', ' ', '  ', '\t', '\n', '\\', '\\040', '\\134', '\\011', '\\012', '\\000', '\\400', '\\9', '\\x', '\\x41', '\\x4', '\\xzz',
  'user', 'group', 'users', '4294967295', '4294967296', '007', '-1', '0x10', '2001',
  '\u00e9', '\u4f8b', '\u{1f600}', '\xff', '\x80', '\x07', '\x00', '@example.com', 'gss/krb5',
];
const IDS = [0, 1, 1000, 65534, 0x7fffffff, 0x80000000, ID_MAX];

function randomText(max: number): string {
  let s = '';
  for (let n = int(max + 1); n > 0; n--) s += pick(PIECES);
  return s;
}

/** A line of random pieces: mostly garbage, sometimes a request by luck. */
function randomLine(): Buffer {
  return Buffer.from(`${randomText(12)}${rnd() < 0.8 ? '\n' : ''}`, 'latin1');
}

/** A well-formed request the kernel could write: random auth and name bytes, quoted as it quotes. */
function wellFormed(cache: NfsdCache): Buffer {
  const auth = Buffer.from(rnd() < 0.5 ? pick(['*', '127.0.0.1', 'gss/krb5', 'client one']) : randomText(6) || '*', 'latin1').subarray(0, NAME_MAX);
  const type = rnd() < 0.5 ? 'user' : 'group';
  const key: NfsdKey =
    cache === 'idtoname'
      ? { cache, auth: nonEmpty(stripNul(auth)), type, id: rnd() < 0.5 ? pick([...IDS, 0xffffffff]) : int(2 ** 32) }
      : { cache, auth: nonEmpty(stripNul(auth)), type, name: nonEmpty(stripNul(Buffer.from(`${randomText(8)}@example.com`, rnd() < 0.5 ? 'utf8' : 'latin1'))).subarray(0, rnd() < 0.05 ? 200 : NAME_MAX) };
  return formatRequest(key);
}
const stripNul = (b: Buffer) => Buffer.from(b.filter((c) => c !== 0));
const nonEmpty = (b: Buffer) => (b.length > 0 ? b : Buffer.from('x'));

function mutated(): Buffer {
  let s = pick(CAPTURED_NFSD).request.toString('latin1');
  for (let r = 1 + int(3); r > 0; r--) {
    const i = int(s.length + 1);
    switch (int(6)) {
      case 0: s = s.slice(0, i) + pick(PIECES) + s.slice(i + 1); break;
      case 1: s = s.slice(0, i) + pick(PIECES) + s.slice(i); break;
      case 2: s = s.slice(0, i) + s.slice(i + 1); break;
      case 3: s = s.slice(0, i); break;
      case 4: s = s.replace(/ \S+\n$/, ` ${'n'.repeat(100 + int(60))}@x\n`); break;
      default: s = s.replace(' ', '  '); break;
    }
  }
  return Buffer.from(s, 'latin1');
}

function answerFor(cache: NfsdCache): number | string {
  if (cache === 'nametoid') return rnd() < 0.95 ? (rnd() < 0.5 ? pick(IDS) : int(ID_MAX + 1)) : pick([0xffffffff, -1, 2.5]);
  const r = rnd();
  if (r < 0.85) return `${randomText(6).replace(/[\u0000-\u001f\u007f-\u009f]/g, '') || 'u'}@example.com`;
  if (r < 0.95) return 'n'.repeat(110 + int(40));
  return pick(['', 'a\0b', 'cr\rlf']);
}

/** The kernel takes `line` as the canonical store of `want` under the request's own key. */
function assertTaken(cache: NfsdCache, request: Buffer, line: Buffer, want: { kind: 'positive'; value: number | string } | { kind: 'negative' }, ctx: string): void {
  const p = kernelParseReply(cache, line);
  assert.ok(p.ok, `${ctx}: kernel refused ${JSON.stringify(line.toString('latin1'))}: ${p.ok ? '' : `${p.errno} ${p.what}`}`);
  assert.equal(p.canonical.toString('latin1'), line.toString('latin1'), `${ctx}: not canonical`);
  assert.equal(p.key, kernelRequestKey(cache, request), `${ctx}: the reply's key is not the request's`);
  assert.deepEqual(p.result, { ...want, expiry: EXPIRY }, ctx);
}

describe(`nfsd codec fuzz (seed ${SEED}; rerun with NSIDMAP_FUZZ_SEED=${SEED})`, () => {
  it(`${INPUTS} random, well-formed and mutated request lines: no throw, and every reply is taken as meant`, (t) => {
    t.diagnostic(`seed ${SEED}`);
    let parsed = 0;
    let positive = 0;
    let negativeMalformed = 0;
    for (let i = 0; i < INPUTS; i++) {
      const cache = pick(CACHES);
      const r = rnd();
      const line = r < 0.3 ? randomLine() : r < 0.75 ? wellFormed(cache) : mutated();
      const ctx = `seed ${SEED} #${i} ${cache} ${JSON.stringify(line.toString('latin1'))}`;
      let p: ReturnType<typeof parseRequest>;
      try {
        p = parseRequest(cache, line);
      } catch (e) {
        assert.fail(`${ctx}: parseRequest threw ${String(e)}`);
      }
      if (!p.ok) {
        assert.ok(p.reason.length > 0 && p.reason.length < 300 && !p.reason.includes('\n'), `${ctx}: reason ${p.reason}`);
        if (p.key) {
          negativeMalformed++;
          assertTaken(cache, line, formatNegative(p.key, EXPIRY), { kind: 'negative' }, ctx);
        }
        continue;
      }
      parsed++;
      assert.equal(kernelRequestKey(cache, line), kernelRequestKey(cache, formatRequest(p.key)), `${ctx}: key read differently`);
      const value = answerFor(cache);
      const f = formatReply(p.key, EXPIRY, value);
      if (f.ok) {
        positive++;
        assertTaken(cache, line, f.line, { kind: 'positive', value }, ctx);
      } else {
        const bytes = typeof value === 'string' ? Buffer.byteLength(value) : 0;
        const unrepresentable = typeof value === 'number' ? !(Number.isInteger(value) && value >= 0 && value <= ID_MAX) : bytes === 0 || bytes > NAME_MAX || /[\u0000-\u001f\u007f-\u009f]/.test(value);
        assert.ok(unrepresentable, `${ctx}: refused ${JSON.stringify(value)}: ${f.reason}`);
      }
      assertTaken(cache, line, formatNegative(p.key, EXPIRY), { kind: 'negative' }, ctx);
    }
    t.diagnostic(`${parsed} parsed, ${positive} answered positively, ${negativeMalformed} malformed answered negatively`);
    assert.ok(parsed > INPUTS / 4, `too few parsed (${parsed})`);
    assert.ok(negativeMalformed > 100, `too few malformed-with-key (${negativeMalformed})`);
  });
});

describe(`nfsd responder fuzz (seed ${SEED})`, () => {
  const work = mkdtempSync(join(tmpdir(), 'nsidmap-nfsd-fuzz-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  it(`${THROUGH_RESPONDER} hostile requests through NfsdResponder: every reply taken, nothing crossed, malformed ones logged`, async () => {
    const sim = await new SimNfsd(work).init();
    const users: Record<string, number> = { alice: 2001, 'j doe': 2002 };
    const t = testEnv({ domain: 'example.com', providers: { dir: { kind: 'static', users, groups: users } }, scopes: [{ name: 'host', providers: ['dir'] }] }, { level: 'warn' });
    const responder = new NfsdResponder(work, {}, { openChannel: sim.openChannel });
    await responder.start(t.env);
    try {
      const answerable: Promise<unknown>[] = [];
      // the kernel queues one request per key (CACHE_PENDING): a later line with the same key
      // shares the first one's fate, which may be a dropped line
      const firstOfKey = new Map<string, boolean>();
      let lines = 0;
      for (let i = 0; i < THROUGH_RESPONDER; i++) {
        const cache = pick(CACHES);
        const r = rnd();
        let line = r < 0.2 ? randomLine() : r < 0.8 ? wellFormed(cache) : mutated();
        // one line per request, as nfsd writes them: a lone newline inside would split it
        line = Buffer.from(line.toString('latin1').split('\n')[0] + '\n', 'latin1');
        lines++;
        const res = sim.requestRaw(cache, line);
        const p = parseRequest(cache, line);
        const key = `${cache} ${kernelRequestKey(cache, line) ?? `none-${i}`}`;
        if (!firstOfKey.has(key)) firstOfKey.set(key, p.ok || p.key !== undefined);
        if (firstOfKey.get(key)) answerable.push(res.then((x) => assert.notEqual(x.kind, 'failed', `#${i}`)));
      }
      await Promise.all(answerable);
      await new Promise((r) => setTimeout(r, 20));
      assert.ok(sim.clean(), JSON.stringify(sim.failures.slice(0, 3)));
      const st = responder.status().detail;
      const served = st.reduce((s, d) => s + Number(d['served']), 0);
      assert.ok(served > 0 && served <= lines);
      assert.equal(st.reduce((s, d) => s + Number(d['rejected']), 0), 0);
      const malformed = st.reduce((s, d) => s + Number(d['malformed']), 0);
      assert.ok(malformed > 0);
      assert.equal(t.events('nfsd.malformed').length, malformed, 'one log line per malformed request');
    } finally {
      await responder.stop();
    }
  });
});
