/** test/fixtures/ldap/*.ldif are generate.ts's output: regenerate after changing it. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BULK_GROUPS, BULK_USERS, FIXTURE_DIR, generate } from '../fixtures/ldap/generate.js';

describe('LDAP fixtures', () => {
  const files = generate();
  for (const [file, text] of Object.entries(files)) {
    it(`${file} is current (npx tsx test/fixtures/ldap/generate.ts)`, () => {
      assert.ok(readFileSync(join(FIXTURE_DIR, file), 'utf8') === text, `${file} differs from the generator's output`);
    });
  }

  it(`hold ${BULK_USERS} bulk users and ${BULK_GROUPS} bulk groups each`, () => {
    for (const text of Object.values(files)) {
      assert.equal(text.match(/^uidNumber: 1\d{5}$/gm)?.length, BULK_USERS);
      assert.equal(text.match(/^gidNumber: 2000\d\d$/gm)?.length, BULK_GROUPS + BULK_USERS);
    }
  });
});
