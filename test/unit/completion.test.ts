/** contrib/bash-completion/idmapctl is generated from the command table, and completes in bash. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { COMMANDS } from '../../src/cli/app.js';
import { bashCompletion, optionPlaceholder, placeholderCompletion, positionals } from '../../src/cli/completion.js';
import { INTERFACES } from '../../src/types.js';

const FILE = new URL('../../contrib/bash-completion/idmapctl', import.meta.url);
const HAS_BASH = spawnSync('bash', ['-c', 'true']).status === 0;
const work = mkdtempSync(join(tmpdir(), 'nsidmap-completion-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** What bash completes for `line` (the cursor at its end; a trailing space starts a new word). */
function complete(line: string, cwd = work): string[] {
  const words = line.split(' ');
  const script = `
source "$1"
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${words.length - 1}
_idmapctl
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync('bash', ['-c', script, 'complete', FILE.pathname], { cwd, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).sort();
}

describe('bash completion', () => {
  it('contrib/bash-completion/idmapctl matches the command table (run `npm run docs` when this fails)', () => {
    assert.equal(readFileSync(FILE, 'utf8'), bashCompletion(), 'stale: run `npm run docs`');
  });

  it('reads option values and positional arguments from the usage lines', () => {
    const cmd = (noun: string, verb: string) => COMMANDS.find((c) => c.noun === noun && c.verb === verb)!;
    assert.deepEqual(positionals(cmd('query', '')), ['KIND', 'VALUE']);
    assert.deepEqual(positionals(cmd('cache', 'flush')), [], 'a quoted placeholder of --key is its value');
    assert.deepEqual(positionals(cmd('policy', 'test')), ['CASES.yaml']);
    assert.equal(optionPlaceholder(cmd('keys', 'list'), 'type'), 'nfs|cifs|all');
    assert.equal(optionPlaceholder(cmd('query', ''), 'policy'), 'FILE');
    assert.deepEqual(placeholderCompletion('nfs|cifs|all'), { words: ['nfs', 'cifs', 'all'] });
    assert.equal(placeholderCompletion('FILE|-'), 'files');
    assert.equal(placeholderCompletion('CASES.yaml'), 'files');
    assert.equal(placeholderCompletion('NAME'), 'none');
  });

  it('every option of every command is offered after a dash', { skip: HAS_BASH ? false : 'no bash' }, () => {
    for (const c of COMMANDS) {
      const line = ['idmapctl', c.noun, ...(c.verb ? [c.verb] : []), '--'].join(' ');
      const got = complete(line);
      for (const o of [...Object.keys(c.options), 'socket', 'json', 'help']) assert.ok(got.includes(`--${o}`), `${line}: --${o} in ${got.join(' ')}`);
    }
  });

  it('completes nouns, verbs, option values, lookup kinds and file names', { skip: HAS_BASH ? false : 'no bash' }, () => {
    writeFileSync(join(work, 'policy.yaml'), '');
    const nouns = [...new Set(COMMANDS.map((c) => c.noun))].sort();
    assert.deepEqual(complete('idmapctl '), nouns);
    assert.deepEqual(complete('idmapctl --socket /run/x '), nouns, 'a global option and its value come first');
    assert.deepEqual(complete('idmapctl ke'), ['keys']);
    assert.deepEqual(complete('idmapctl keys '), ['clear', 'list', 'revoke']);
    assert.deepEqual(complete('idmapctl keys list --type '), ['all', 'cifs', 'nfs']);
    assert.deepEqual(complete('idmapctl query u'), ['uid', 'uid-to-name', 'uid-to-sid', 'user']);
    assert.deepEqual(complete('idmapctl query uid alice@example.com --as '), [...INTERFACES].sort());
    assert.deepEqual(complete('idmapctl query uid alice@example.com --policy pol'), ['policy.yaml']);
    assert.deepEqual(complete('idmapctl policy check po'), ['policy.yaml']);
    assert.deepEqual(complete('idmapctl policy check policy.yaml '), [], 'one FILE only');
    assert.deepEqual(complete('idmapctl import '), ['idmapd.conf']);
    assert.deepEqual(complete('idmapctl status --j'), ['--json']);
    assert.deepEqual(complete('idmapctl frobnicate '), []);
  });
});
