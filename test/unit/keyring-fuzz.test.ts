/**
 * Fuzz the keyring codec with hostile input: random and mutated key descriptions, random binary
 * SIDs. Properties: decoders never throw; whatever they accept is canonical and its answer, for
 * any plausible value, is a payload of the right size that decodes back to that value.
 *
 * Deterministic: the PRNG seed is printed; rerun one with NSIDMAP_FUZZ_SEED=<seed>.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CIFS_ID_SIZE,
  DESCRIPTION_NAME_MAX,
  IDMAP_NAMESZ,
  ID_PAYLOAD_MAX,
  decodeDescription,
  decodePayload,
  encodeAnswer,
  encodeDescription,
} from '../../src/responders/keyring/codec.js';
import type { KeyType } from '../../src/responders/keyring/codec.js';
import { CIFS_SID_SIZE, decodeSidBinary, encodeSidBinary, formatSid, parseSidParts } from '../../src/sid.js';
import { ID_MAX, answerTypeOf } from '../../src/types.js';
import type { Request } from '../../src/types.js';
import { CAPTURED } from '../fixtures/keyring/captures.js';
import { draws, fuzzSeed, prng } from '../helpers/prng.js';

const SEED = fuzzSeed(0x6b657973);
const DESCRIPTIONS = 120_000;
const SIDS = 120_000;

const rnd = prng(SEED);
const { int, pick } = draws(rnd);

const KEY_TYPES: readonly KeyType[] = ['id_resolver', 'cifs.idmap'];
const PREFIXES = ['uid', 'gid', 'user', 'group', 'os', 'gs', 'oi', 'gi', 'UID', 'u', 'user ', '', 'o', 'si'];
/** Characters a hostile or broken peer might put in a description. */
const ALPHABET = [
  ...'0123456789',
  ...'0123456789',
  ...'Ss-:@.x_ +eEaA',
  '\0', '\n', '\t', '\x7f', '\u0085', '\uFFFD', '\uD800', '\uDFFF', 'é', 'ß', '例', '😀', '١', '\u200b',
];
const HUGE = ['4294967294', '4294967295', '4294967296', '18446744073709551616', '9'.repeat(40), '0x10', '-0', '00', '1e9'];
const SEEDS: readonly [KeyType, string][] = [
  ...CAPTURED.map((c): [KeyType, string] => [c.keyType, c.description]),
  ['id_resolver', 'uid:a:b:c@x'],
  ['id_resolver', 'group:4294967294'],
  ['cifs.idmap', 'os:S-1-5-21-1-2-3-1001'],
  ['cifs.idmap', 'gs:S-1-0x100000000-7'],
  ['cifs.idmap', 'gi:0'],
];

function randomText(max: number): string {
  let s = '';
  const n = int(max + 1);
  for (let i = 0; i < n; i++) s += pick(ALPHABET);
  return s;
}

function mutateOnce(s: string): string {
  const i = int(s.length + 1);
  switch (int(8)) {
    case 0: return s.slice(0, i) + pick(ALPHABET) + s.slice(i + 1); // replace
    case 1: return s.slice(0, i) + pick(ALPHABET) + s.slice(i); // insert
    case 2: return s.slice(0, i) + s.slice(i + 1); // delete
    case 3: return s.slice(0, i); // truncate
    case 4: return s.slice(0, i) + pick(HUGE) + s.slice(i); // huge numbers
    case 5: return s.slice(0, i) + ':'.repeat(1 + int(20)) + s.slice(i); // many colons
    case 6: return s + s.slice(0, i).repeat(1 + int(40)); // grow past the limits
    default: return s.replace(/-\d+/, `-${pick(HUGE)}`); // break a SID part
  }
}

function mutated(): [KeyType, string] {
  const [keyType, base] = pick(SEEDS);
  let s = base;
  const rounds = 1 + int(4);
  for (let i = 0; i < rounds; i++) s = mutateOnce(s);
  return [rnd() < 0.9 ? keyType : pick(KEY_TYPES), s];
}

function randomDescription(): [KeyType, string] {
  return [pick(KEY_TYPES), `${pick(PREFIXES)}:${randomText(rnd() < 0.02 ? 1100 : 40)}`];
}

function randomId(): number {
  return pick([0, 1, 65534, ID_MAX, int(ID_MAX + 1), int(70000)]);
}

function randomSidText(): string {
  const subs = Array.from({ length: int(16) }, () => pick([0, 1, 0xffffffff, int(2 ** 32)]));
  const authority = pick([0, 5, 22, 0xffffffff, 2 ** 32, 2 ** 48 - 1, int(2 ** 48)]);
  return formatSid({ revision: 1 + int(255), authority, subs });
}

function randomName(): string {
  let s = '';
  const chars = [...'abcdefghijklmnopqrstuvwxyz0123456789@._- :', 'é', '例', '😀'];
  while (s === '' || rnd() < 0.93) s += pick(chars);
  while (Buffer.byteLength(s) > IDMAP_NAMESZ) s = s.slice(0, -1);
  // slice(0, -1) may have cut an emoji in half: drop its orphaned high surrogate
  return s.replace(/[\uD800-\uDBFF]$/, '') || 'x';
}

function plausibleValue(request: Request): number | string {
  switch (answerTypeOf(request.kind)) {
    case 'id': return randomId();
    case 'name': return randomName();
    case 'sid': return randomSidText();
  }
}

/** The payload of an accepted description's answer has the right size and decodes back. */
function checkAnswer(keyType: KeyType, description: string, request: Request, ctx: string): void {
  const value = plausibleValue(request);
  const payload = encodeAnswer(keyType, request, value);
  const sizeOk = (() => {
    switch (answerTypeOf(request.kind)) {
      case 'id': return keyType === 'cifs.idmap' ? payload.length === CIFS_ID_SIZE : payload.length <= ID_PAYLOAD_MAX && payload[payload.length - 1] === 0;
      case 'name': return payload.length >= 1 && payload.length <= IDMAP_NAMESZ;
      case 'sid': return payload.length === CIFS_SID_SIZE;
    }
  })();
  assert.ok(sizeOk, `${ctx}: payload of ${payload.length} bytes for ${JSON.stringify(value)}`);
  const back = decodePayload(keyType, description, payload);
  assert.ok(back.ok, `${ctx}: ${back.ok ? '' : back.reason}`);
  assert.deepEqual(back.value, value, ctx);
}

/** What an accepted request may look like: canonical, bounded, and its own description. */
function checkRequest(keyType: KeyType, request: Request, ctx: string): void {
  if ('name' in request) {
    assert.ok(Buffer.byteLength(request.name) <= DESCRIPTION_NAME_MAX, ctx);
    assert.doesNotMatch(request.name, /[\u0000-\u001f\u007f-\u009f\uFFFD]/, ctx);
  } else if ('id' in request) {
    assert.ok(Number.isInteger(request.id) && request.id >= 0 && request.id <= ID_MAX, ctx);
  } else {
    assert.equal(formatSid(parseSidParts(request.sid)!), request.sid, ctx);
  }
  const again = encodeDescription(request);
  assert.equal(again.keyType, keyType, ctx);
  assert.deepEqual(decodeDescription(keyType, again.description), { ok: true, request }, ctx);
}

describe(`keyring codec fuzz (seed ${SEED}; rerun with NSIDMAP_FUZZ_SEED=${SEED})`, () => {
  it(`${DESCRIPTIONS} random and mutated descriptions: no throw, accepted ones answer validly`, (t) => {
    t.diagnostic(`seed ${SEED}`);
    let accepted = 0;
    for (let i = 0; i < DESCRIPTIONS; i++) {
      const [keyType, description] = i % 3 === 0 ? randomDescription() : mutated();
      const ctx = `seed ${SEED} #${i} ${keyType} ${JSON.stringify(description.slice(0, 200))}`;
      let r: ReturnType<typeof decodeDescription>;
      try {
        r = decodeDescription(keyType, description);
      } catch (e) {
        assert.fail(`${ctx}: decodeDescription threw ${String(e)}`);
      }
      if (!r.ok) {
        assert.ok(r.reason.length > 0 && r.reason.length < 200 && !r.reason.includes('\n'), ctx);
        continue;
      }
      accepted++;
      checkRequest(keyType, r.request, ctx);
      checkAnswer(keyType, description, r.request, ctx);
    }
    t.diagnostic(`${accepted} of ${DESCRIPTIONS} accepted`);
    assert.ok(accepted > DESCRIPTIONS / 20, `too few accepted (${accepted}): the mutator is not reaching valid forms`);
  });

  it('every well-formed request survives description → decode → answer → decode', () => {
    const kinds: Request['kind'][] = ['name-to-uid', 'name-to-gid', 'uid-to-name', 'gid-to-name', 'sid-to-uid', 'sid-to-gid', 'uid-to-sid', 'gid-to-sid'];
    for (let i = 0; i < 20_000; i++) {
      const kind = pick(kinds);
      const request = (answerTypeOf(kind) === 'id' && !kind.startsWith('sid')
        ? { kind, name: randomName() }
        : kind.startsWith('sid')
          ? { kind, sid: randomSidText() }
          : { kind, id: randomId() }) as Request;
      const { keyType, description } = encodeDescription(request);
      const ctx = `seed ${SEED} #${i} ${JSON.stringify(request)}`;
      assert.deepEqual(decodeDescription(keyType, description), { ok: true, request }, ctx);
      checkAnswer(keyType, description, request, ctx);
    }
  });

  it(`${SIDS} random binary SIDs: no throw, accepted ones round-trip`, () => {
    let accepted = 0;
    for (let i = 0; i < SIDS; i++) {
      const buf = Buffer.alloc(int(80));
      for (let j = 0; j < buf.length; j++) buf[j] = int(256);
      // Bias toward the plausible: a real revision and sub-authority count half the time.
      if (buf.length >= 2 && rnd() < 0.5) (buf[0] = 1), (buf[1] = int(17));
      const ctx = `seed ${SEED} #${i} ${buf.toString('hex')}`;
      let parts: ReturnType<typeof decodeSidBinary>;
      let payload: ReturnType<typeof decodePayload>;
      try {
        parts = decodeSidBinary(buf);
        payload = decodePayload('cifs.idmap', 'oi:1', buf);
      } catch (e) {
        assert.fail(`${ctx}: decoder threw ${String(e)}`);
      }
      if (!parts) continue;
      accepted++;
      const text = formatSid(parts);
      assert.deepEqual(parseSidParts(text), parts, ctx);
      const again = encodeSidBinary(parts);
      assert.equal(again.length, CIFS_SID_SIZE, ctx);
      assert.deepEqual(again.subarray(0, 8 + 4 * parts.subs.length), buf.subarray(0, 8 + 4 * parts.subs.length), ctx);
      assert.deepEqual(decodeSidBinary(again), parts, ctx);
      if (buf.length <= CIFS_SID_SIZE) assert.deepEqual(payload, { ok: true, request: { kind: 'uid-to-sid', id: 1 }, value: text }, ctx);
    }
    assert.ok(accepted > SIDS / 10, `too few accepted (${accepted})`);
  });
});
