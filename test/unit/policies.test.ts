/**
 * The worked examples in policies/ are part of the product: each passes `policy check` with no
 * error and its policy test file passes, exactly as an admin would run them in CI.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Engine } from '../../src/resolver/engine.js';
import { loadCases, runCase } from '../../src/resolver/policy/cases.js';
import { checkPolicy } from '../../src/resolver/policy/check.js';
import { loadPolicyFile } from '../../src/resolver/policy/load.js';

const dir = new URL('../../policies/', import.meta.url).pathname;
const testFiles = readdirSync(dir).filter((f) => f.endsWith('.test.yaml')).sort();

describe('policies/ examples', () => {
  it('ships the three worked examples, each with a test file', () => {
    assert.deepEqual(testFiles, ['ad-smb.test.yaml', 'container-host.test.yaml', 'host-default.test.yaml']);
  });

  for (const tf of testFiles) {
    describe(tf, () => {
      const cases = loadCases(join(dir, tf));

      it('names a policy that passes policy check without errors', () => {
        assert.ok(cases.policy, `${tf} has no policy: line`);
        const errors = checkPolicy(loadPolicyFile(cases.policy)).filter((f) => f.severity === 'error');
        assert.deepEqual(errors, []);
      });

      it('passes every case', async () => {
        const engine = Engine.create(cases.policy, { defaultCachePath: ':memory:', cachePath: ':memory:' });
        await engine.start();
        try {
          for (let i = 0; i < cases.cases.length; i++) {
            const r = await runCase(engine, cases.cases[i]!, i, cases.where);
            assert.ok(r.ok, `${r.name}: ${r.failures.join('; ')}`);
          }
        } finally {
          await engine.stop();
        }
      });
    });
  }
});
