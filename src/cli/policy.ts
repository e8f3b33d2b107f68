/**
 * idmapctl policy check | test | schema
 *
 * The policy modules (YAML, zod, the providers, the engine) are imported by each command when it
 * runs, not when idmapctl starts: the command table must stay cheap to load for every other command.
 */
import { NsidmapError } from '../errors.js';
import type { CaseResult } from '../resolver/policy/cases.js';
import { json, out, str, type Command } from './common.js';

export const policyCheck: Command = {
  noun: 'policy',
  verb: 'check',
  usage: 'idmapctl policy check FILE [--json]',
  summary: 'validate a policy: schema, references, one-to-one static tables, disjoint SID ranges, unreachable scopes, keyring scopes independent of the requester',
  example: 'idmapctl policy check /etc/nsidmap/policy.yaml',
  options: {},
  async run(p) {
    const [file, ...rest] = p.positionals;
    if (file === undefined || rest.length) throw new NsidmapError('NSIDMAP_EUSAGE', `usage: ${this.usage}`);
    const [{ formatFinding, loadPolicyFile }, { checkPolicy }] = await Promise.all([import('../resolver/policy/load.js'), import('../resolver/policy/check.js')]);
    const loaded = loadPolicyFile(file);
    const findings = checkPolicy(loaded);
    const asJson = p.values['json'] === true;
    if (asJson) json(findings);
    else for (const f of findings) if (f.severity === 'warning') out(formatFinding(f));
    const errors = findings.filter((f) => f.severity === 'error');
    // Errors go to stderr one per line with their code, as for a YAML or schema error and as the
    // daemon reports the same policy; with --json they are already on stdout.
    if (errors.length > 0) throw new NsidmapError('NSIDMAP_EPOLICY_CHECK', asJson ? `${file}: ${errors.length} error(s)` : errors.map(formatFinding).join('\n'));
    if (!p.values['json']) out(`${file}: ok${findings.length ? ` (${findings.length} warning${findings.length === 1 ? '' : 's'})` : ''}`);
    return 0;
  },
};

export const policyTest: Command = {
  noun: 'policy',
  verb: 'test',
  usage: 'idmapctl policy test CASES.yaml [--policy FILE] [--json]',
  summary: 'run a YAML table of {context, query, expect} cases against a policy (in-process, cache in memory)',
  example: 'idmapctl policy test policies/host-default.test.yaml',
  options: { policy: { type: 'string' } },
  async run(p) {
    const [file, ...rest] = p.positionals;
    if (file === undefined || rest.length) throw new NsidmapError('NSIDMAP_EUSAGE', `usage: ${this.usage}`);
    const [{ loadCases, runCase }, { Engine }] = await Promise.all([import('../resolver/policy/cases.js'), import('../resolver/engine.js')]);
    const cases = loadCases(file);
    const policy = str(p, 'policy') ?? cases.policy;
    if (policy === undefined) throw new NsidmapError('NSIDMAP_EUSAGE', `${file} names no policy: add \`policy: FILE\` to it or pass --policy FILE`);
    const engine = Engine.create(policy, { defaultCachePath: ':memory:', cachePath: ':memory:' });
    await engine.start();
    const results: CaseResult[] = [];
    try {
      for (let i = 0; i < cases.cases.length; i++) results.push(await runCase(engine, cases.cases[i]!, i, cases.where));
    } finally {
      await engine.stop();
    }
    const failed = results.filter((r) => !r.ok).length;
    if (p.values['json']) json({ passed: results.length - failed, failed, results: results.map((r) => ({ name: r.name, ok: r.ok, failures: r.failures, answer: r.answer })) });
    else {
      for (const r of results) {
        out(`${r.ok ? 'ok' : 'not ok'} ${r.index + 1} - ${r.name}`);
        for (const f of r.failures) out(`  ${f}`);
      }
      out(`${results.length - failed} passed, ${failed} failed`);
    }
    if (failed > 0) throw new NsidmapError('NSIDMAP_EPOLICY_TEST', `${failed} of ${results.length} case(s) failed`);
    return 0;
  },
};

export const policySchema: Command = {
  noun: 'policy',
  verb: 'schema',
  usage: 'idmapctl policy schema',
  summary: 'print the policy JSON Schema (for editors and CI)',
  example: 'idmapctl policy schema > policy.schema.json',
  options: {},
  async run() {
    const { policyJsonSchema } = await import('../resolver/policy/jsonschema.js');
    process.stdout.write(JSON.stringify(policyJsonSchema(), null, 2) + '\n');
    return 0;
  },
};
