/** docs/cli.md is the command table's help text; it must not drift from the code. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { COMMANDS, commandHelp } from '../../src/cli/app.js';
import { cliReference } from '../../src/cli/reference.js';

describe('CLI reference', () => {
  it('docs/cli.md matches the command table (run `npm run docs` when this fails)', () => {
    const doc = readFileSync(new URL('../../docs/cli.md', import.meta.url), 'utf8');
    assert.equal(doc, cliReference(), 'docs/cli.md is stale: run `npm run docs`');
  });

  it('every command has a usage line and an example', () => {
    for (const c of COMMANDS) {
      const help = commandHelp(c);
      assert.match(help, /^Usage: idmapctl /, c.noun);
      assert.match(help, /\nExample:\n {2}idmapctl /, `${c.noun} ${c.verb}`);
    }
  });
});
