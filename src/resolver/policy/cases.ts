/**
 * `idmapctl policy test`: a YAML table of `{ context, query, expect }` cases run against a
 * policy — what an admin keeps in CI next to the policy in config management.
 *
 *   policy: host.yaml            # relative to this file; or given on the command line
 *   cases:
 *     - name: alice maps both ways
 *       context: { interface: keyring-nfs }
 *       query: { uid: alice@example.com }
 *       expect: { value: 1001, outcome: mapped, scope: host }
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { NsidmapError } from '../../errors.js';
import { INTERFACES, OUTCOMES_LIST, type Answer, type Context, type IdMapRange } from '../../types.js';
import type { Engine } from '../engine.js';
import { parseRequest, requestValue } from '../query.js';
import { findingAt, formatFinding, parsePolicyText, readPolicyFile, pathText } from './load.js';

const MapLine = z.tuple([z.number().int().min(0), z.number().int().min(0), z.number().int().min(1)]);
const CaseContext = z.strictObject({
  interface: z.enum(INTERFACES).optional(),
  container: z.string().optional(),
  runtime: z.string().optional(),
  cgroup: z.string().optional(),
  netns: z.union([z.enum(['init', 'container']), z.number().int().positive()]).optional(),
  userns: z.union([z.literal('init'), z.strictObject({ uidMap: z.array(MapLine).min(1), gidMap: z.array(MapLine).min(1).optional(), owner: z.number().int().min(0).optional() })]).optional(),
  authDomain: z.string().optional(),
});
const Case = z.strictObject({
  name: z.string().optional(),
  context: CaseContext.optional(),
  query: z.record(z.string(), z.union([z.string(), z.number()])).refine((q) => Object.keys(q).length === 1, 'one lookup per case, e.g. { uid: alice@example.com }'),
  scope: z.string().optional(),
  expect: z.strictObject({
    value: z.union([z.string(), z.number()]).optional(),
    outcome: z.enum(OUTCOMES_LIST).optional(),
    scope: z.string().optional(),
    source: z.string().optional(),
  }),
});
const CasesFile = z.strictObject({ policy: z.string().optional(), cases: z.array(Case).min(1) });
export type CaseConfig = z.infer<typeof Case>;

export interface CaseResult {
  readonly index: number;
  readonly name: string;
  readonly ok: boolean;
  /** `file:line:column: expected … got …` for failures */
  readonly failures: readonly string[];
  readonly answer: Answer;
}

export interface LoadedCases {
  readonly file: string;
  /** the policy the file names, resolved against its directory */
  readonly policy?: string;
  readonly cases: readonly CaseConfig[];
  readonly where: (index: number, ...path: PropertyKey[]) => string;
}

export function loadCases(file: string): LoadedCases {
  const { src, findings } = parsePolicyText(readPolicyFile(file), file);
  if (findings.length > 0) throw new NsidmapError('NSIDMAP_EPOLICY_SYNTAX', findings.map(formatFinding).join('\n'));
  const parsed = CasesFile.safeParse(src.doc.toJS() ?? {});
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => formatFinding(findingAt(src, i.path, i.message)));
    throw new NsidmapError('NSIDMAP_EPOLICY_SCHEMA', lines.join('\n'));
  }
  const where = (index: number, ...path: PropertyKey[]) => {
    const f = findingAt(src, ['cases', index, ...path], '');
    return `${f.file}:${f.line}:${f.column}`;
  };
  const policy = parsed.data.policy === undefined ? undefined : resolve(dirname(file), parsed.data.policy);
  return { file, policy, cases: parsed.data.cases, where };
}

function toMap(lines: readonly (readonly [number, number, number])[] | undefined): IdMapRange[] {
  return (lines ?? []).map(([inside, outside, count]) => ({ inside, outside, count }));
}

export function caseContext(c: CaseConfig['context'], fallbackIface: Context['iface']): Context {
  const userns = c?.userns;
  const netns = c?.netns;
  return {
    iface: c?.interface ?? fallbackIface,
    container: c?.container ? { id: c.container, runtime: c.runtime ?? 'unknown' } : undefined,
    cgroup: c?.cgroup,
    authDomain: c?.authDomain,
    netns: netns === undefined ? undefined : { inode: typeof netns === 'number' ? netns : netns === 'init' ? 1 : 2, isInit: netns === 'init' },
    userns: userns === undefined || userns === 'init' ? undefined : { inode: 0, isInit: false, uidMap: toMap(userns.uidMap), gidMap: toMap(userns.gidMap ?? userns.uidMap), owner: userns.owner },
  };
}

export async function runCase(engine: Engine, c: CaseConfig, index: number, where: LoadedCases['where']): Promise<CaseResult> {
  const [[word, raw]] = Object.entries(c.query) as [[string, string | number]];
  const req = parseRequest(word, String(raw));
  const fallback = req.kind.includes('sid') ? 'keyring-cifs' : 'keyring-nfs';
  const answer = await engine.resolver.resolve(req, caseContext(c.context, fallback), { scope: c.scope });
  const failures: string[] = [];
  const e = c.expect;
  const cmp = (field: string, want: unknown, got: unknown) => {
    if (want !== undefined && String(want) !== String(got)) failures.push(`${where(index, 'expect', field)}: expected ${field} ${JSON.stringify(want)}, got ${JSON.stringify(got ?? null)}${answer.reason ? ` (${answer.reason})` : ''}`);
  };
  cmp('value', e.value, answer.value);
  cmp('outcome', e.outcome, answer.outcome);
  cmp('scope', e.scope, answer.scope);
  cmp('source', e.source, answer.source);
  const name = c.name ?? `${word} ${requestValue(req)}`;
  return { index, name, ok: failures.length === 0, failures, answer };
}

export { pathText };
