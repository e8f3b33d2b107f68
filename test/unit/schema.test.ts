/**
 * schema/policy.schema.json is generated from the zod policy schema (scripts/gen-schema.ts) for
 * editors and CI: it must be current, and the example policies must validate against it.
 *
 * The generated schema uses a small part of JSON Schema 2020-12; `validate` below implements that
 * part and throws on any other keyword, so a schema that grows a keyword fails here instead of
 * being validated loosely.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { policyJsonSchema } from '../../src/resolver/policy/jsonschema.js';
import { formatFinding, validatePolicyText } from '../../src/resolver/policy/load.js';

const root = new URL('../../', import.meta.url).pathname;
const schemaFile = join(root, 'schema/policy.schema.json');
const policiesDir = join(root, 'policies');

type Schema = Record<string, unknown>;

const IGNORED = new Set(['$schema', '$id', 'title', 'description', 'default', 'examples']);
const KNOWN = new Set([
  'type', 'properties', 'required', 'additionalProperties', 'propertyNames', 'items', 'prefixItems', 'minItems', 'maxItems',
  'anyOf', 'enum', 'const', 'pattern', 'minLength', 'maxLength', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum',
]);

function typeOk(type: string, v: unknown): boolean {
  switch (type) {
    case 'object': return typeof v === 'object' && v !== null && !Array.isArray(v);
    case 'array': return Array.isArray(v);
    case 'string': return typeof v === 'string';
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    case 'integer': return Number.isInteger(v);
    case 'boolean': return typeof v === 'boolean';
    case 'null': return v === null;
    default: throw new Error(`unsupported type ${type}`);
  }
}

/** Errors of `v` against `s`, as `path: what`; empty when valid. */
function validate(s: Schema | boolean, v: unknown, path = '$'): string[] {
  if (s === true) return [];
  if (s === false) return [`${path}: not allowed`];
  for (const k of Object.keys(s)) if (!IGNORED.has(k) && !KNOWN.has(k)) throw new Error(`${path}: schema keyword ${k} is not supported by this test`);
  const errs: string[] = [];
  if (s['type'] !== undefined) {
    const types = Array.isArray(s['type']) ? (s['type'] as string[]) : [s['type'] as string];
    if (!types.some((t) => typeOk(t, v))) return [`${path}: expected ${types.join('|')}`];
  }
  if (s['const'] !== undefined && JSON.stringify(s['const']) !== JSON.stringify(v)) errs.push(`${path}: expected ${JSON.stringify(s['const'])}`);
  if (Array.isArray(s['enum']) && !s['enum'].some((e) => JSON.stringify(e) === JSON.stringify(v))) errs.push(`${path}: not one of ${JSON.stringify(s['enum'])}`);
  if (Array.isArray(s['anyOf'])) {
    const branches = (s['anyOf'] as Schema[]).map((b) => validate(b, v, path));
    if (!branches.some((b) => b.length === 0)) errs.push(`${path}: fits no branch (${branches.map((b) => b[0]).join('; ')})`);
  }
  if (typeof v === 'string') {
    if (typeof s['pattern'] === 'string' && !new RegExp(s['pattern'], 'u').test(v)) errs.push(`${path}: does not match ${s['pattern']}`);
    if (typeof s['minLength'] === 'number' && [...v].length < s['minLength']) errs.push(`${path}: too short`);
    if (typeof s['maxLength'] === 'number' && [...v].length > s['maxLength']) errs.push(`${path}: too long`);
  }
  if (typeof v === 'number') {
    if (typeof s['minimum'] === 'number' && v < s['minimum']) errs.push(`${path}: below ${s['minimum']}`);
    if (typeof s['maximum'] === 'number' && v > s['maximum']) errs.push(`${path}: above ${s['maximum']}`);
    if (typeof s['exclusiveMinimum'] === 'number' && v <= s['exclusiveMinimum']) errs.push(`${path}: not above ${s['exclusiveMinimum']}`);
    if (typeof s['exclusiveMaximum'] === 'number' && v >= s['exclusiveMaximum']) errs.push(`${path}: not below ${s['exclusiveMaximum']}`);
  }
  if (Array.isArray(v)) {
    if (typeof s['minItems'] === 'number' && v.length < s['minItems']) errs.push(`${path}: fewer than ${s['minItems']} items`);
    if (typeof s['maxItems'] === 'number' && v.length > s['maxItems']) errs.push(`${path}: more than ${s['maxItems']} items`);
    const prefix = (s['prefixItems'] as Schema[] | undefined) ?? [];
    v.forEach((item, i) => {
      const itemSchema = i < prefix.length ? prefix[i] : (s['items'] as Schema | boolean | undefined);
      if (itemSchema !== undefined) errs.push(...validate(itemSchema, item, `${path}[${i}]`));
    });
  }
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const obj = v as Record<string, unknown>;
    const props = (s['properties'] as Record<string, Schema> | undefined) ?? {};
    for (const r of (s['required'] as string[] | undefined) ?? []) if (!(r in obj)) errs.push(`${path}: missing ${r}`);
    for (const [k, val] of Object.entries(obj)) {
      if (s['propertyNames'] !== undefined) errs.push(...validate(s['propertyNames'] as Schema, k, `${path}.${k} (name)`));
      if (k in props) errs.push(...validate(props[k]!, val, `${path}.${k}`));
      else if (s['additionalProperties'] !== undefined) errs.push(...validate(s['additionalProperties'] as Schema | boolean, val, `${path}.${k}`));
    }
  }
  return errs;
}

/** Every YAML file under `dir`, recursively, but the policy test files. */
function policyFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...policyFiles(p));
    else if (/\.ya?ml$/.test(e.name) && !/\.test\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

describe('schema/policy.schema.json', () => {
  it('equals policyJsonSchema() (else: run `npm run schema`)', () => {
    const hint = 'schema/policy.schema.json is stale or missing: run `npm run schema` and commit the result';
    assert.ok(existsSync(schemaFile), hint);
    let onDisk: unknown;
    try {
      onDisk = JSON.parse(readFileSync(schemaFile, 'utf8'));
    } catch (e) {
      assert.fail(`${hint} (${(e as Error).message})`);
    }
    // through JSON, as the generator writes it: undefined members vanish the same way
    const current: unknown = JSON.parse(JSON.stringify(policyJsonSchema()));
    assert.deepEqual(onDisk, current, hint);
  });

  it('accepts a policy that uses every block, and refuses unknown keys and wrong values (the validator can fail)', () => {
    const schema = policyJsonSchema();
    const good = parse(`
version: 1
domain: example.com
providers:
  dir: { kind: files, passwd: /etc/passwd }
  tbl: { kind: static, users: { alice: 1001 } }
defaults: { ttl: { positive: 10m, negative: 60 }, root: squash }
scopes:
  - name: c1
    match: { interface: [keyring-nfs], idRange: { first: 1000, count: 2 }, domain: c1.example }
    map: { uid: [[0, 1000, 2]] }
    providers: [tbl]
  - name: host
cache: { path: ":memory:", maxStale: 7d }
`);
    assert.deepEqual(validate(schema, good), []);
    assert.notDeepEqual(validate(schema, { ...good, colour: 'blue' }), []);
    assert.notDeepEqual(validate(schema, { scopes: [{ name: 'a', ids: 'containr' }] }), []);
    assert.notDeepEqual(validate(schema, { scopes: [{ name: 'a', map: { uid: [[0, 1000]] } }] }), []);
    assert.notDeepEqual(validate(schema, { providers: { x: { kind: 'ldapp' } } }), []);
  });
});

describe('policies/*.yaml', () => {
  const files = policyFiles(policiesDir);
  if (files.length === 0) it('validates every policy', { skip: 'policies/ has no YAML yet' }, () => {});

  for (const file of files) {
    const name = relative(root, file);
    it(`${name} validates against schema/policy.schema.json`, () => {
      const schema = JSON.parse(readFileSync(schemaFile, 'utf8')) as Schema;
      assert.deepEqual(validate(schema, parse(readFileSync(file, 'utf8')) ?? {}), []);
    });

    it(`${name} loads through the zod schema with no finding`, () => {
      const r = validatePolicyText(readFileSync(file, 'utf8'), name);
      assert.ok(r.ok, r.ok ? '' : r.findings.map(formatFinding).join('\n'));
    });
  }
});
