/**
 * The Source contract, run against every source kind (test/unit/sources.test.ts): whatever a
 * source can do, it does the same way. For each method the source HAS:
 * - a known key gives an entry with the right id / name / SID;
 * - an unknown key, or an impossible id, gives `undefined` — never a throw (a throw is a fault and
 *   stops the chain);
 * - lookups round-trip (id → name → id, name → id → name, id → SID → id);
 * - repeated calls give equal answers;
 * - an entry is always well-typed: an integer id in 0..ID_MAX, a non-empty name, a canonical SID,
 *   nothing else.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Source, SourceEntry } from '../../src/providers/source.js';
import { parseSid } from '../../src/sid.js';
import { isValidId, type Entity, type Sid } from '../../src/types.js';

export interface KnownEntry {
  readonly id: number;
  /** set when the source knows names; byName/byId are checked with it */
  readonly name?: string;
  /** set when the source knows SIDs; bySid/sidOf are checked with it (sidOf must give this one) */
  readonly sid?: string;
}

export interface EntityFixture {
  readonly known: readonly KnownEntry[];
  readonly unknownNames?: readonly string[];
  /** ids byId must not find */
  readonly unknownIds?: readonly number[];
  readonly unknownSids?: readonly string[];
  /** ids sidOf must not find */
  readonly unknownSidIds?: readonly number[];
}

export interface SourceFixture {
  readonly user: EntityFixture;
  readonly group: EntityFixture;
}

/** Ids no source may answer for: negative, fractional, (uid_t)-1, out of 32 bits, NaN. */
const IMPOSSIBLE_IDS = [-1, 1.5, 0xffffffff, 2 ** 32, Number.NaN];
const ENTITIES: readonly Entity[] = ['user', 'group'];
const ENTRY_KEYS = new Set(['id', 'name', 'sid']);

/** The contract's notion of a well-typed entry. */
export function assertEntry(e: unknown, what: string): asserts e is SourceEntry {
  assert.ok(typeof e === 'object' && e !== null, `${what}: entry is an object`);
  const entry = e as Record<string, unknown>;
  for (const k of Object.keys(entry)) assert.ok(ENTRY_KEYS.has(k), `${what}: unexpected field ${k}`);
  assert.ok(typeof entry['id'] === 'number' && isValidId(entry['id']), `${what}: id ${String(entry['id'])} is a valid id`);
  if (entry['name'] !== undefined) assert.ok(typeof entry['name'] === 'string' && entry['name'] !== '', `${what}: name`);
  if (entry['sid'] !== undefined) {
    assert.ok(typeof entry['sid'] === 'string' && parseSid(entry['sid']) === entry['sid'], `${what}: canonical SID`);
  }
}

type Method = 'byName' | 'byId' | 'bySid' | 'sidOf';

/** Call a method twice: both answers must be equal and well-typed (or undefined). */
async function ask(src: Source, method: Method, entity: Entity, key: string | number): Promise<SourceEntry | undefined> {
  const what = `${method}(${entity}, ${String(key)})`;
  const call = (): unknown => (src[method] as (e: Entity, k: unknown) => unknown).call(src, entity, key);
  const first = await call();
  const again = await call();
  assert.deepEqual(again, first, `${what}: same answer when asked again`);
  if (first !== undefined) assertEntry(first, what);
  return first as SourceEntry | undefined;
}

function skipUnless(t: TestContext, src: Source, method: Method, rows: readonly unknown[]): boolean {
  if (src[method] === undefined) t.skip(`${src.kind} has no ${method}`);
  else if (rows.length === 0) t.skip('no fixture rows for this check');
  else return true;
  return false;
}

/** Register the contract tests for one source. `make` is called once; start/stop run if present. */
export function runSourceContract(name: string, make: () => Source | Promise<Source>, fixture: SourceFixture): void {
  describe(`Source contract: ${name}`, () => {
    let src: Source;
    before(async () => {
      src = await make();
      await src.start?.();
    });
    after(async () => {
      await src?.stop?.();
    });

    it('names itself and has at least one lookup method', () => {
      assert.equal(typeof src.name, 'string');
      assert.equal(typeof src.kind, 'string');
      assert.ok(src.byName || src.byId || src.bySid || src.sidOf, 'some lookup method');
      if (src.health) assert.ok(['up', 'degraded', 'down'].includes(src.health().state));
    });

    for (const entity of ENTITIES) {
      const fx = fixture[entity];
      const named = fx.known.filter((k): k is KnownEntry & { name: string } => k.name !== undefined);
      const sided = fx.known.filter((k): k is KnownEntry & { sid: string } => k.sid !== undefined);
      const canon = (s: string): Sid => parseSid(s) ?? assert.fail(`fixture SID ${s} does not parse`);

      it(`byName finds every known ${entity} with its id`, async (t) => {
        if (!skipUnless(t, src, 'byName', named)) return;
        for (const k of named) {
          const e = await ask(src, 'byName', entity, k.name);
          assert.equal(e?.id, k.id, `${entity} ${k.name}`);
          if (e?.name !== undefined) assert.equal(e.name, k.name);
        }
      });

      it(`byName gives undefined for unknown ${entity} names and the empty name`, async (t) => {
        const names = [...(fx.unknownNames ?? []), ''];
        if (!skipUnless(t, src, 'byName', names)) return;
        for (const n of names) assert.equal(await ask(src, 'byName', entity, n), undefined, `name ${JSON.stringify(n)}`);
      });

      it(`byId finds every known ${entity} with its name`, async (t) => {
        if (!skipUnless(t, src, 'byId', named)) return;
        for (const k of named) {
          const e = await ask(src, 'byId', entity, k.id);
          assert.equal(e?.name, k.name, `${entity} id ${k.id}`);
          assert.equal(e?.id, k.id);
        }
      });

      it(`byId gives undefined for unknown and impossible ${entity} ids`, async (t) => {
        const ids = [...(fx.unknownIds ?? []), ...IMPOSSIBLE_IDS];
        if (!skipUnless(t, src, 'byId', ids)) return;
        for (const id of ids) assert.equal(await ask(src, 'byId', entity, id), undefined, `id ${id}`);
      });

      it(`byName and byId round-trip for known ${entity}s`, async (t) => {
        if (!skipUnless(t, src, 'byName', named) || !skipUnless(t, src, 'byId', named)) return;
        for (const k of named) {
          const byId = await ask(src, 'byId', entity, k.id);
          assert.equal((await ask(src, 'byName', entity, byId?.name ?? ''))?.id, k.id, `id ${k.id} → name → id`);
          const byName = await ask(src, 'byName', entity, k.name);
          assert.equal((await ask(src, 'byId', entity, byName?.id ?? -1))?.name, k.name, `${k.name} → id → name`);
        }
      });

      it(`bySid finds every known ${entity} SID`, async (t) => {
        if (!skipUnless(t, src, 'bySid', sided)) return;
        for (const k of sided) {
          const e = await ask(src, 'bySid', entity, canon(k.sid));
          assert.equal(e?.id, k.id, `${entity} ${k.sid}`);
          if (e?.sid !== undefined) assert.equal(e.sid, canon(k.sid));
        }
      });

      it(`bySid gives undefined for unknown ${entity} SIDs`, async (t) => {
        const sids = fx.unknownSids ?? [];
        if (!skipUnless(t, src, 'bySid', sids)) return;
        for (const s of sids) assert.equal(await ask(src, 'bySid', entity, canon(s)), undefined, s);
      });

      it(`sidOf gives the SID of every known ${entity}`, async (t) => {
        if (!skipUnless(t, src, 'sidOf', sided)) return;
        for (const k of sided) {
          const e = await ask(src, 'sidOf', entity, k.id);
          assert.equal(e?.sid, canon(k.sid), `${entity} id ${k.id}`);
          assert.equal(e?.id, k.id);
        }
      });

      it(`sidOf gives undefined for unknown and impossible ${entity} ids`, async (t) => {
        const ids = [...(fx.unknownSidIds ?? []), ...IMPOSSIBLE_IDS];
        if (!skipUnless(t, src, 'sidOf', ids)) return;
        for (const id of ids) assert.equal(await ask(src, 'sidOf', entity, id), undefined, `id ${id}`);
      });

      it(`sidOf and bySid round-trip for known ${entity}s`, async (t) => {
        if (!skipUnless(t, src, 'sidOf', sided) || !skipUnless(t, src, 'bySid', sided)) return;
        for (const k of sided) {
          const sid = (await ask(src, 'sidOf', entity, k.id))?.sid;
          assert.ok(sid !== undefined, `sidOf ${k.id}`);
          assert.equal((await ask(src, 'bySid', entity, sid))?.id, k.id, `id ${k.id} → SID → id`);
        }
      });
    }
  });
}
