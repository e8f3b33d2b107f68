/** idmapctl status | reload */
import { ask, json, out, table, type Command } from './common.js';

interface Status {
  version: string; pid: number; uptime: number; socket: string;
  policy: { file: string; loadedAt: string; domain: string; warnings: number };
  scopes: { name: string; domain: string; providers: string[]; ids: string; root: string }[];
  sources: { name: string; kind: string; state: string; detail?: string }[];
  cache: { path: string; entries: number; negative: number };
  counters: Record<string, number>;
  rss: number;
  /** each kernel responder's status(): e.g. one line per served namespace */
  responders?: { name: string; detail: Record<string, unknown>[] }[];
}

function cell(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  if (Array.isArray(v)) return v.length === 0 ? '-' : v.map(cell).join(',');
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** A responder's detail lines as a table: one column per field any line has. */
function responderTable(detail: readonly Record<string, unknown>[]): string {
  const cols = [...new Set(detail.flatMap((d) => Object.keys(d)))];
  return table([cols.map((c) => c.toUpperCase()), ...detail.map((d) => cols.map((c) => cell(d[c])))]);
}

export const statusCommand: Command = {
  noun: 'status',
  verb: '',
  usage: 'idmapctl status [--json]',
  summary: 'the daemon: policy in force, scopes, source health, cache, counters, and what each responder serves (per network namespace)',
  example: 'idmapctl status',
  options: {},
  async run(p) {
    const s = await ask<Status>(p, { op: 'status' });
    if (p.values['json']) return json(s), 0;
    out(`nsidmapd ${s.version}, pid ${s.pid}, up ${s.uptime}s, rss ${Math.round(s.rss / 1048576)} MiB`);
    out(`policy   ${s.policy.file} (loaded ${s.policy.loadedAt}, domain ${s.policy.domain}${s.policy.warnings ? `, ${s.policy.warnings} warnings` : ''})`);
    out(`cache    ${s.cache.path}: ${s.cache.entries} entries (${s.cache.negative} negative)`);
    out(`lookups  ${Object.entries(s.counters).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    out('');
    out(table([['SCOPE', 'DOMAIN', 'IDS', 'ROOT', 'PROVIDERS'], ...s.scopes.map((x) => [x.name, x.domain, x.ids, x.root, x.providers.join(' → ')])]));
    out('');
    out(table([['SOURCE', 'KIND', 'STATE', 'DETAIL'], ...s.sources.map((x) => [x.name, x.kind, x.state, x.detail ?? ''])]));
    for (const r of s.responders ?? []) {
      out('');
      out(`responder ${r.name}${r.detail.length === 0 ? ': nothing served' : ''}`);
      if (r.detail.length > 0) out(responderTable(r.detail));
    }
    return 0;
  },
};

export const reloadCommand: Command = {
  noun: 'reload',
  verb: '',
  usage: 'idmapctl reload',
  summary: 'reload the policy file (as SIGHUP); a broken policy is refused and the old one stays',
  example: 'idmapctl reload',
  options: {},
  async run(p) {
    const r = await ask<{ reloaded: boolean; reason?: string; warnings?: string[] }>(p, { op: 'reload' });
    if (p.values['json']) return json(r), 0;
    for (const w of r.warnings ?? []) out(w);
    out(r.reloaded ? 'policy reloaded' : `not reloaded: ${r.reason}`);
    return 0;
  },
};
