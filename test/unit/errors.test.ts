/** docs/errors.md and src/errors.ts list the same codes with the same exit statuses. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ERRORS, NsidmapError } from '../../src/errors.js';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
const rows = [...doc.matchAll(/^\| `(NSIDMAP_E[A-Z_]+)` \| (\d+) \|/gm)].map((m) => [m[1]!, Number(m[2])] as const);

describe('error registry', () => {
  it('docs/errors.md documents every code with its exit status, and nothing else', () => {
    assert.deepEqual(new Map(rows), new Map(Object.entries(ERRORS).map(([k, v]) => [k, v.exit])));
  });

  it('every code has a non-zero exit status, a summary and a hint', () => {
    for (const [code, e] of Object.entries(ERRORS)) {
      assert.ok(e.exit > 0, code);
      assert.ok(e.summary.length > 0 && e.hint.length > 0, code);
    }
  });

  it('prints one line per finding, each carrying the code', () => {
    const e = new NsidmapError('NSIDMAP_EPOLICY_SCHEMA', 'a.yaml:1:1: x: bad\na.yaml:2:3: y: bad');
    assert.equal(e.oneLine(), 'NSIDMAP_EPOLICY_SCHEMA: a.yaml:1:1: x: bad\nNSIDMAP_EPOLICY_SCHEMA: a.yaml:2:3: y: bad');
    assert.equal(e.exitCode, 3);
  });

  it('maps a code it does not know (from a newer daemon) to exit 1', () => {
    assert.equal(new NsidmapError('NSIDMAP_EFUTURE' as never, 'x').exitCode, 1);
  });
});
