/**
 * Read a policy file: YAML → zod validation → PolicyConfig. Every finding is reported as
 * `file:line:column: key.path: what is wrong`, pointing at the node the finding is about.
 */
import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { NsidmapError } from '../../errors.js';
import { Policy, type PolicyConfig } from './schema.js';

export interface Finding {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly path: string;
  readonly message: string;
  readonly severity: 'error' | 'warning';
}

export function formatFinding(f: Finding): string {
  const where = `${f.file}:${f.line}:${f.column}`;
  const sev = f.severity === 'warning' ? 'warning: ' : '';
  return f.path ? `${where}: ${sev}${f.path}: ${f.message}` : `${where}: ${sev}${f.message}`;
}

/** A parsed source text: the document plus what is needed to point into it. */
export interface PolicySource {
  readonly file: string;
  readonly doc: Document.Parsed;
  readonly lines: LineCounter;
}

export function pathText(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/** Position of the node at `path` (or of its nearest existing ancestor); for a key issue, the key. */
export function locate(src: PolicySource, path: readonly PropertyKey[], key?: string): { line: number; column: number } {
  let node: unknown = src.doc.contents;
  let offset = 0;
  const at = (n: unknown) => {
    const r = (n as Node | null)?.range;
    if (r) offset = r[0];
  };
  at(node);
  const steps = key === undefined ? path : [...path, key];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i];
    const wantKey = key !== undefined && i === steps.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(step));
      if (!pair) break;
      if (wantKey) { at(pair.key); break; }
      node = pair.value;
      at(pair.value ?? pair.key);
    } else if (isSeq(node) && typeof step === 'number') {
      node = node.items[step];
      at(node);
    } else break;
  }
  const pos = src.lines.linePos(offset);
  return { line: pos.line, column: pos.col };
}

export function findingAt(src: PolicySource, path: readonly PropertyKey[], message: string, severity: Finding['severity'] = 'error', key?: string): Finding {
  const { line, column } = locate(src, path, key);
  return { file: src.file, line, column, path: pathText(key === undefined ? path : [...path, key]), message, severity };
}

export function parsePolicyText(text: string, file: string): { src: PolicySource; findings: Finding[] } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const src: PolicySource = { file, doc, lines };
  const findings: Finding[] = doc.errors.map((e) => {
    const pos = lines.linePos(e.pos[0]);
    return { file, line: pos.line, column: pos.col, path: '', message: e.message.split('\n')[0] ?? e.message, severity: 'error' as const };
  });
  return { src, findings };
}

function zodFindings(src: PolicySource, issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): Finding[] {
  const out: Finding[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) out.push(findingAt(src, path, 'unknown key', 'error', k));
    } else if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      out.push(...unionFindings(src, issue, path));
    } else if (issue.code === 'invalid_key') {
      // a record key that fails its schema (a static table's SID): point at the key, say why
      const key = path.at(-1);
      out.push(findingAt(src, path.slice(0, -1), issue.issues[0]?.message ?? issue.message, 'error', key === undefined ? undefined : String(key)));
    } else {
      out.push(findingAt(src, path, issue.message));
    }
  }
  return out;
}

/**
 * zod reports a union failure with one issue list per branch; report the first issue of the
 * branch that got furthest, at its own position (a bad SID deep in a provider block points there).
 */
function unionFindings(src: PolicySource, issue: z.core.$ZodIssueInvalidUnion, path: readonly PropertyKey[]): Finding[] {
  // a provider block names its branch by `kind`: the branches of other kinds are not what was meant
  const ofKind = issue.errors.filter((b) => !b.some((i) => i.path.length === 1 && i.path[0] === 'kind'));
  const best = (ofKind.length > 0 ? ofKind : issue.errors).reduce((a, b) => (b.length < a.length ? b : a));
  const first = best[0];
  return first ? zodFindings(src, [first], path) : [findingAt(src, path, issue.message)];
}

export interface LoadedPolicy {
  readonly config: PolicyConfig;
  readonly src: PolicySource;
  /** warnings found while loading (errors throw) */
  readonly warnings: Finding[];
}

/** Validate text; returns the config or the findings. Never throws for bad input. */
export type Validation =
  | { ok: true; policy: LoadedPolicy }
  | { ok: false; stage: 'syntax' | 'schema'; findings: Finding[] };

export function validatePolicyText(text: string, file: string): Validation {
  const { src, findings } = parsePolicyText(text, file);
  if (findings.length > 0) return { ok: false, stage: 'syntax', findings };
  const raw = src.doc.toJS() ?? {};
  const parsed = Policy.safeParse(raw);
  if (!parsed.success) return { ok: false, stage: 'schema', findings: zodFindings(src, parsed.error.issues) };
  return { ok: true, policy: { config: parsed.data, src, warnings: [] } };
}

export function readPolicyFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new NsidmapError('NSIDMAP_EPOLICY_READ', `${file}: ${err.code ?? err.message}: cannot read the policy file`);
  }
}

/** Load or throw one NsidmapError whose message lists every finding, one per line. */
export function loadPolicyFile(file: string): LoadedPolicy {
  const res = validatePolicyText(readPolicyFile(file), file);
  if (res.ok) return res.policy;
  const code = res.stage === 'syntax' ? 'NSIDMAP_EPOLICY_SYNTAX' : 'NSIDMAP_EPOLICY_SCHEMA';
  throw new NsidmapError(code, res.findings.map(formatFinding).join('\n'));
}
