/**
 * Fuzz the rpc_pipefs idmap codec with hostile upcalls: random frames, random sizes, and the
 * captured kernel upcalls mutated. Properties: decodeUpcall never throws; what it accepts it
 * reads faithfully; and every reply the responder would write for it — a SUCCESS reply for a
 * plausible answer, or a failure reply — is one the simulated kernel (test/sim/kernel-pipefs.ts)
 * takes as meant: instantiated with exactly that value, or negated as a failure reply, never
 * refused. A last part runs a few thousand of them through PipefsResponder itself.
 *
 * Deterministic: the PRNG seed is printed; rerun one with NSIDMAP_FUZZ_SEED=<seed>.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeUpcall, encodeFailure, encodeReply, encodeUpcall, IDMAP_MSG_SIZE, IM_STATUS, OFFSET } from '../../src/responders/pipefs/codec.js';
import { PipefsResponder } from '../../src/responders/pipefs/listener.js';
import { ID_MAX } from '../../src/types.js';
import { CAPTURED_PIPE } from '../fixtures/pipefs/captures.js';
import { testEnv } from '../sim/env.js';
import { SimPipefs } from '../sim/kernel-pipefs.js';
import { draws, fuzzSeed, prng } from '../helpers/prng.js';

const SEED = fuzzSeed(0x70697065);
const INPUTS = 120_000;
const THROUGH_RESPONDER = 3000;

const rnd = prng(SEED);
const { int, pick } = draws(rnd);

/** Byte runs a name field may hold: plain, domain-ish, UTF-8, broken UTF-8, controls, NUL. */
const NAME_PIECES: readonly Buffer[] = [
  ...'abcxyz019@._- '.split('').map((c) => Buffer.from(c)),
  Buffer.from('@example.com'),
  Buffer.from('é'),
  Buffer.from('例'),
  Buffer.from('😀'),
  Buffer.from([0xc3]), // a lead byte alone
  Buffer.from([0xff]),
  Buffer.from([0x80]),
  Buffer.from([0x07]),
  Buffer.from([0x7f]),
  Buffer.from([0x00]),
];
const IDS = [0, 1, 1000, 65534, 0x7fffffff, 0x80000000, ID_MAX, 0xffffffff];

function randomName(maxBytes: number): Buffer {
  const parts: Buffer[] = [];
  let n = 0;
  const target = int(maxBytes + 1);
  while (n < target) {
    const p = pick(NAME_PIECES);
    parts.push(p);
    n += p.length;
  }
  return Buffer.concat(parts);
}

function randomFrame(): Buffer {
  const b = Buffer.alloc(IDMAP_MSG_SIZE);
  b[OFFSET.type] = rnd() < 0.85 ? int(2) : int(256);
  b[OFFSET.conv] = rnd() < 0.85 ? int(2) : int(256);
  const name = randomName(rnd() < 0.05 ? 160 : 40);
  name.copy(b, OFFSET.name, 0, Math.min(name.length, 128));
  b.writeUInt32LE(rnd() < 0.5 ? pick(IDS) : int(2 ** 32), OFFSET.id);
  if (rnd() < 0.1) b[OFFSET.status] = int(256);
  if (rnd() < 0.05) b.fill(int(256), 130, 132);
  return b;
}

function mutated(): Buffer {
  let b: Buffer = Buffer.from(pick(CAPTURED_PIPE).raw);
  for (let r = 1 + int(4); r > 0; r--) {
    switch (int(6)) {
      case 0: b[int(b.length)] = int(256); break; // flip a byte
      case 1: b = b.subarray(0, int(b.length + 1)); break; // truncate
      case 2: b = Buffer.concat([b, Buffer.alloc(int(8), int(256))]); break; // extend
      case 3: randomName(140).copy(b, OFFSET.name, 0, Math.max(0, Math.min(128, b.length - OFFSET.name))); break;
      case 4: if (b.length >= 136) b.writeUInt32LE(pick(IDS), OFFSET.id); break;
      default: if (b.length > 3) b[1] = int(3); break;
    }
  }
  return b;
}

function randomBytes(): Buffer {
  const b = Buffer.alloc(int(300));
  for (let i = 0; i < b.length; i++) b[i] = int(256);
  return b;
}

/** The upcall as the kernel would hold it: 140 bytes (what was read, cut or zero-padded). */
const as140 = (raw: Buffer): Buffer => {
  const b = Buffer.alloc(IDMAP_MSG_SIZE);
  raw.copy(b, 0, 0, IDMAP_MSG_SIZE);
  return b;
};

/** A plausible answer, sometimes one the kernel cannot take. */
function answerFor(conv: 'id-to-name' | 'name-to-id'): number | string {
  if (conv === 'name-to-id') return rnd() < 0.95 ? pick([...IDS.slice(0, 7), int(ID_MAX + 1)]) : pick([0xffffffff, -1, 1.5]);
  const r = rnd();
  if (r < 0.85) return `${randomName(60).toString('utf8').replace(/[\u0000-\u001f\u007f-\u009f]/g, '') || 'x'}@example.com`;
  if (r < 0.95) return 'n'.repeat(100 + int(60));
  return pick(['', 'a\0b', 'tab\there']);
}

describe(`pipefs codec fuzz (seed ${SEED}; rerun with NSIDMAP_FUZZ_SEED=${SEED})`, () => {
  const sim = new SimPipefs('/nonexistent', { endian: 'LE' });

  it(`${INPUTS} random and mutated upcalls: no throw, and every reply the responder would write is taken as meant`, (t) => {
    t.diagnostic(`seed ${SEED}`);
    let accepted = 0;
    let answered = 0;
    let refusedValues = 0;
    for (let i = 0; i < INPUTS; i++) {
      const r = rnd();
      const raw = r < 0.5 ? randomFrame() : r < 0.9 ? mutated() : randomBytes();
      const ctx = `seed ${SEED} #${i} ${raw.toString('hex')}`;
      let d: ReturnType<typeof decodeUpcall>;
      try {
        d = decodeUpcall(raw, 'LE');
      } catch (e) {
        assert.fail(`${ctx}: decodeUpcall threw ${String(e)}`);
      }
      const upcall = as140(raw);
      if (!d.ok) {
        assert.ok(d.error.reason.length > 0 && d.error.reason.length < 200 && !d.error.reason.includes('\n'), ctx);
        const res = sim.downcall(upcall, encodeFailure(d.msg, raw, IM_STATUS.INVALIDMSG, 'LE'));
        assert.ok(res.kind === 'negated' && res.requested, `${ctx}: failure reply ${JSON.stringify(res)}`);
        continue;
      }
      accepted++;
      // read faithfully
      assert.equal(raw.length, IDMAP_MSG_SIZE, ctx);
      assert.equal(d.msg.id, raw.readUInt32LE(OFFSET.id), ctx);
      assert.deepEqual(d.msg.name, raw.subarray(OFFSET.name, OFFSET.name + d.msg.name.length), ctx);
      assert.equal(raw[OFFSET.name + d.msg.name.length], 0, ctx);
      // answer
      const value = answerFor(d.msg.conv);
      const enc = encodeReply(d.msg, value, 'LE');
      if (enc.ok) {
        answered++;
        const res = sim.downcall(upcall, enc.bytes);
        assert.equal(res.kind, 'instantiated', `${ctx}: value ${JSON.stringify(value)}: ${JSON.stringify(res)}`);
        if (res.kind === 'instantiated') assert.equal(res.value, value, ctx);
      } else {
        refusedValues++;
        const bytes = typeof value === 'string' ? Buffer.byteLength(value) : 0;
        const unrepresentable = typeof value === 'number' ? !(Number.isInteger(value) && value >= 0 && value <= ID_MAX) : bytes === 0 || bytes > 127 || /[\u0000-\u001f\u007f-\u009f]/.test(value);
        assert.ok(unrepresentable, `${ctx}: refused ${JSON.stringify(value)}: ${enc.reason}`);
        const res = sim.downcall(upcall, encodeFailure(d.msg, raw, IM_STATUS.LOOKUPFAIL, 'LE'));
        assert.ok(res.kind === 'negated' && res.requested, ctx);
      }
    }
    t.diagnostic(`${accepted} decoded, ${answered} answered with SUCCESS, ${refusedValues} unrepresentable answers`);
    assert.ok(accepted > INPUTS / 5, `too few accepted (${accepted}): the generator is not reaching valid frames`);
    assert.ok(answered > INPUTS / 6, `too few answered (${answered})`);
  });

  it('every well-formed upcall survives encodeUpcall → decode → reply → kernel; a NAMETOID name of 127 bytes or more gets a failure reply', () => {
    let truncated = 0;
    for (let i = 0; i < 20_000; i++) {
      const conv = rnd() < 0.5 ? 'name-to-id' : 'id-to-name';
      const type = rnd() < 0.5 ? 'user' : 'group';
      // one in ten long enough for the kernel to cut (match_strlcpy to 127 bytes)
      const name = `${randomName(rnd() < 0.1 ? 160 : 40).toString('utf8').replace(/[\u0000-\u001f\u007f-\u009f\uFFFD]/g, '') || 'u'}@x`;
      const id = int(ID_MAX + 1);
      const raw = encodeUpcall({ type, conv, name, id }, 'LE');
      const d = decodeUpcall(raw, 'LE');
      const ctx = `seed ${SEED} #${i} ${raw.toString('hex')}`;
      if (conv === 'name-to-id' && Buffer.byteLength(name) >= 127) {
        // match_strlcpy cut it to 127 bytes (or it was 127 bytes, which cannot be told apart): the
        // kernel would file our answer under the whole name, so it gets a failure reply, no id
        assert.ok(!d.ok && d.error.code === 'name-truncated' && d.msg !== undefined, `${ctx}: ${d.ok ? 'decoded' : d.error.code}`);
        const res = sim.downcall(raw, encodeFailure(d.msg, raw, IM_STATUS.LOOKUPFAIL, 'LE'));
        assert.ok(res.kind === 'negated' && res.requested, `${ctx}: ${JSON.stringify(res)}`);
        truncated++;
        continue;
      }
      assert.ok(d.ok, `${ctx}: ${d.ok ? '' : d.error.reason}`);
      assert.deepEqual(d.request, conv === 'name-to-id' ? { kind: type === 'user' ? 'name-to-uid' : 'name-to-gid', name } : { kind: type === 'user' ? 'uid-to-name' : 'gid-to-name', id }, ctx);
      const enc = encodeReply(d.msg, conv === 'name-to-id' ? id : name, 'LE');
      if (conv === 'id-to-name' && Buffer.byteLength(name) > 127) {
        assert.equal(enc.ok, false, `${ctx}: an IDTONAME name over 127 bytes is refused, never cut`);
        continue;
      }
      assert.ok(enc.ok, ctx);
      const res = sim.downcall(raw, enc.bytes);
      assert.equal(res.kind === 'instantiated' && res.value, conv === 'name-to-id' ? id : name, ctx);
    }
    assert.ok(truncated > 0, 'the generator reaches names of 127 bytes and more');
  });
});

describe(`pipefs responder fuzz (seed ${SEED})`, () => {
  const work = mkdtempSync(join(tmpdir(), 'nsidmap-pipefs-fuzz-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  it(`${THROUGH_RESPONDER} hostile upcalls through PipefsResponder: every one answered, none refused by the kernel, malformed ones logged`, async () => {
    const sim = await new SimPipefs(work).init();
    const users: Record<string, number> = { alice: 2001 };
    const t = testEnv({ domain: 'example.com', providers: { dir: { kind: 'static', users, groups: users } }, scopes: [{ name: 'host', providers: ['dir'] }] }, { level: 'warn' });
    const responder = new PipefsResponder(work, {}, { openChannel: sim.openChannel, rescanMs: 0, endian: sim.endian });
    const clients = [await sim.addClient(), await sim.addClient(), await sim.addClient()];
    await responder.start(t.env);
    try {
      for (const c of clients) await sim.waitForReader(c);
      const jobs: Promise<void>[] = [];
      for (let i = 0; i < THROUGH_RESPONDER; i++) {
        const r = rnd();
        const raw = r < 0.6 ? randomFrame() : r < 0.9 ? mutated() : randomBytes();
        if (sim.endian === 'BE' && raw.length >= 136) raw.writeUInt32BE(raw.readUInt32LE(OFFSET.id), OFFSET.id);
        jobs.push(
          sim.upcallRaw(pick(clients), raw).then((res) => {
            assert.ok(res.kind === 'instantiated' || (res.kind === 'negated' && res.requested), `seed ${SEED} #${i} ${raw.toString('hex')}: ${JSON.stringify(res)}`);
          }),
        );
      }
      await Promise.all(jobs);
      assert.equal(sim.counters.rejected, 0, JSON.stringify(sim.rejections.slice(0, 3)));
      assert.equal(sim.counters.upcalls, THROUGH_RESPONDER);
      const st = responder.status().detail;
      assert.equal(st.reduce((s, d) => s + Number(d['served']), 0), THROUGH_RESPONDER);
      const malformed = st.reduce((s, d) => s + Number(d['malformed']), 0);
      assert.ok(malformed > 0);
      assert.equal(t.events('pipefs.malformed').length, malformed, 'one log line per malformed upcall');
    } finally {
      await responder.stop();
    }
  });
});
