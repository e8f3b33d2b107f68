/**
 * idmapctl query KIND VALUE — any of the eight lookups, as the kernel would get it.
 *
 * Through the daemon it needs only the admin client; the engine, the namespace context and the
 * daemon's handler (with zod, the providers, SQLite) are loaded for --policy alone.
 */
import { NsidmapError } from '../errors.js';
import { KIND_ALIASES, parseRequest, requestValue } from '../resolver/query.js';
import { INTERFACES, LOOKUP_KINDS, type Answer, type Interface } from '../types.js';
import { ask, int, json, out, str, type Command, type Parsed } from './common.js';

interface QueryResult {
  answer: Answer;
  context?: Record<string, unknown>;
}

function ifaceOf(p: Parsed): Interface | undefined {
  const v = str(p, 'as');
  if (v === undefined) return undefined;
  if (!(INTERFACES as readonly string[]).includes(v)) throw new NsidmapError('NSIDMAP_EUSAGE', `--as: "${v}" is not one of ${INTERFACES.join(', ')}`);
  return v as Interface;
}

async function inProcess(file: string, kind: string, value: string, p: Parsed): Promise<QueryResult> {
  const [{ Engine }, { buildContext }, { contextSummary, defaultInterface }] = await Promise.all([
    import('../resolver/engine.js'),
    import('../ns/context.js'),
    import('../daemon/handler.js'),
  ]);
  const engine = Engine.create(file, { defaultCachePath: ':memory:', cachePath: ':memory:' });
  await engine.start();
  try {
    const req = parseRequest(kind, value);
    const ctx = buildContext(ifaceOf(p) ?? defaultInterface(req, int(p, 'ns')), int(p, 'ns'));
    const answer = await engine.resolver.resolve(req, ctx, { scope: str(p, 'scope'), explain: p.values['explain'] === true });
    return { answer, context: p.values['explain'] ? contextSummary(ctx) : undefined };
  } finally {
    await engine.stop();
  }
}

function printHuman(r: QueryResult, explain: boolean): void {
  const a = r.answer;
  const shown = a.value === undefined ? (a.outcome === 'error' ? `error ${a.code}` : 'negative (no answer)') : String(a.value);
  if (!explain) {
    const note = a.outcome === 'mapped' ? '' : `  (${a.outcome}${a.reason ? `: ${a.reason}` : ''})`;
    out(`${shown}${note}`);
    return;
  }
  out(`query    ${a.request.kind} ${requestValue(a.request)}`);
  out(`answer   ${shown}`);
  out(`outcome  ${a.outcome}${a.reason ? ` — ${a.reason}` : ''}`);
  out(`scope    ${a.scope ?? '(none)'}`);
  out(`source   ${a.source ?? '-'}`);
  out(`cache    ${a.cache}`);
  out(`ttl      ${a.ttl}s`);
  const c = r.context as { iface?: string; pid?: number; container?: { id: string; runtime: string }; userns?: { init: boolean; inode: number } } | undefined;
  if (c) out(`context  ${c.iface}${c.pid ? ` pid ${c.pid}` : ''}${c.userns && !c.userns.init ? ` userns ${c.userns.inode}` : ''}${c.container ? ` container ${c.container.runtime}:${c.container.id.slice(0, 12)}` : ''}`);
  for (const s of a.trail ?? []) out(`  ${s.step.padEnd(8)} ${s.detail}`);
}

export const queryCommand: Command = {
  noun: 'query',
  verb: '',
  usage: 'idmapctl query KIND VALUE [--ns PID] [--scope NAME] [--as IFACE] [--explain] [--json] [--policy FILE]',
  summary: `resolve one lookup. KIND: ${LOOKUP_KINDS.join(', ')}, or the keyring prefixes ${Object.keys(KIND_ALIASES).join(' ')}. Answered as --as IFACE asks (default: as the keyring would; with --ns PID, as that process's namespace sees it: admin)`,
  example: 'idmapctl query uid alice@example.com --explain\n  idmapctl query sid-to-uid S-1-5-21-1-2-3-1001\n  idmapctl query user 1000 --ns 4242 --as pipefs',
  options: {
    ns: { type: 'string' },
    scope: { type: 'string' },
    as: { type: 'string' },
    explain: { type: 'boolean' },
    policy: { type: 'string' },
  },
  async run(p) {
    const [kind, value, ...rest] = p.positionals;
    if (kind === undefined || value === undefined || rest.length > 0) throw new NsidmapError('NSIDMAP_EUSAGE', `usage: ${this.usage}`);
    const explain = p.values['explain'] === true;
    const policy = str(p, 'policy');
    const r = policy !== undefined
      ? await inProcess(policy, kind, value, p)
      : await ask<QueryResult>(p, { op: 'resolve', kind, value, iface: ifaceOf(p), nsPid: int(p, 'ns'), scope: str(p, 'scope'), explain });
    if (p.values['json']) json(r);
    else printHuman(r, explain);
    if (r.answer.outcome === 'error') throw new NsidmapError((r.answer.code ?? 'NSIDMAP_EINTERNAL') as never, r.answer.reason ?? 'lookup failed');
    // exit 1: answered, but not mapped (nobody, squashed, unmappable, negative) — like getent's 2, scripts can tell
    return r.answer.outcome === 'mapped' ? 0 : 1;
  },
};
