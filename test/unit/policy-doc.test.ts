/** docs/policy.md names every key of the policy schema: the reference cannot silently fall behind. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Match, Policy, Scope } from '../../src/resolver/policy/schema.js';
import { SOURCE_KINDS } from '../../src/providers/registry.js';

const doc = readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8');

function keysOf(schema: { shape: Record<string, unknown> }): string[] {
  return Object.keys(schema.shape);
}

describe('docs/policy.md', () => {
  for (const [what, keys] of [
    ['top-level', keysOf(Policy)],
    ['scope', keysOf(Scope)],
    ['match', keysOf(Match)],
  ] as const) {
    it(`documents every ${what} key`, () => {
      const missing = keys.filter((k) => !new RegExp(`\\b${k}\\b`).test(doc));
      assert.deepEqual(missing, [], `undocumented ${what} keys`);
    });
  }

  it('documents every provider kind', () => {
    const missing = SOURCE_KINDS.map((k) => k.kind).filter((k) => !doc.includes(`| \`${k}\` |`));
    assert.deepEqual(missing, []);
  });
});
