/**
 * idmapctl clientid list | show | set | export | import — the NFSv4 client identifier of each
 * network namespace (PROTOCOLS.md §6, docs/policy.md "clientid").
 *
 * Through the daemon by default: it knows which namespace holds each key now, and a `set` or
 * `import` is written into that namespace at once. With `--cache PATH` the SQLite state file is
 * read and written directly (the daemon stopped, or preparing a host before a container moves
 * in); the daemon then writes the identifier when the namespace next appears.
 *
 * SQLite (--cache), the daemon's clientid views and zod (the export file's schema) are imported
 * when a command needs them, not when idmapctl starts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { z as Zod } from 'zod';
import type { ClientIdRecord, ClientIdStore } from '../cache/clientid.js';
import { NsidmapError } from '../errors.js';
import { checkIdentifier } from '../ns/clientid.js';
import type { ClientIdStatus, ClientIdView } from '../responders/uevent/clientid.js';
import { ask, json, out, str, table, type Command, type Parsed } from './common.js';

/** The export file: what carries an identifier from one host to the next. */
export const EXPORT_FORMAT = 'nsidmap-clientid/1';

function exportSchema(z: typeof Zod) {
  return z.strictObject({
    format: z.literal(EXPORT_FORMAT),
    key: z.string().min(1),
    identifier: z.string(),
    source: z.string().optional(),
    updated: z.string().optional(),
    exported: z.string().optional(),
    host: z.string().optional(),
  });
}
export type ClientIdExport = Zod.infer<ReturnType<typeof exportSchema>>;

/** The export file's schema (zod loaded on first use). */
export async function clientIdExportSchema(): Promise<ReturnType<typeof exportSchema>> {
  return exportSchema((await import('zod')).z);
}

const CACHE_OPTION = { cache: { type: 'string' } } as const;

/** The state file named by --cache; reads refuse a file that does not exist (rather than make one). */
async function openCache(p: Parsed, forWrite: boolean): Promise<ClientIdStore | undefined> {
  const path = str(p, 'cache');
  if (path === undefined) return undefined;
  if (!forWrite && !existsSync(path)) throw new NsidmapError('NSIDMAP_ECACHE', `${path} does not exist: check --cache (the daemon's cache.path)`);
  const { ClientIdStore } = await import('../cache/clientid.js');
  return ClientIdStore.open(path);
}

async function withStore<T>(p: Parsed, forWrite: boolean, local: (s: ClientIdStore) => T | Promise<T>, remote: () => Promise<T>): Promise<T> {
  const store = await openCache(p, forWrite);
  if (!store) return remote();
  try {
    return await local(store);
  } finally {
    store.close();
  }
}

function showLocal(store: ClientIdStore, key: string): ClientIdView {
  const r = store.get(key);
  if (!r) throw new NsidmapError('NSIDMAP_ENOCLIENTID', `no client identifier for "${key}"`);
  return r;
}

function when(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function positional(p: Parsed, n: number, usage: string): string[] {
  if (p.positionals.length !== n) throw new NsidmapError('NSIDMAP_EUSAGE', `expected ${usage}`);
  return [...p.positionals];
}

function checked(key: string, identifier: string): void {
  const bad = checkIdentifier(identifier);
  if (bad !== undefined) throw new NsidmapError('NSIDMAP_ECLIENTID', `identifier for ${key} ${bad}`);
}

export const clientidList: Command = {
  noun: 'clientid',
  verb: 'list',
  usage: 'idmapctl clientid list [--cache PATH] [--json]',
  summary: 'NFSv4 client identifiers per namespace key: stored value, source, where it is in force now',
  example: 'idmapctl clientid list\n  idmapctl clientid list --cache /var/cache/nsidmap/cache.sqlite',
  options: CACHE_OPTION,
  async run(p) {
    positional(p, 0, 'no arguments');
    const rows = await withStore(p, false, async (s) => {
      const { clientIdViews } = await import('../responders/uevent/clientid.js');
      return clientIdViews(s.list(), []);
    }, () => ask<ClientIdView[]>(p, { op: 'clientid.list' }));
    if (p.values['json']) return json(rows), 0;
    if (rows.length === 0) return out('no client identifiers'), 0;
    out(table([['KEY', 'IDENTIFIER', 'SOURCE', 'UPDATED', 'NETNS', 'STATE'], ...rows.map((r) => [r.key, r.identifier ?? '-', r.source ?? '-', when(r.updated), r.netns === undefined ? '-' : String(r.netns), r.state ?? '-'])]));
    return 0;
  },
};

export const clientidShow: Command = {
  noun: 'clientid',
  verb: 'show',
  usage: 'idmapctl clientid show KEY [--cache PATH] [--json]',
  summary: 'one namespace key\'s client identifier, where it came from, and whether it is in force',
  example: 'idmapctl clientid show host',
  options: CACHE_OPTION,
  async run(p) {
    const [key] = positional(p, 1, 'KEY');
    const v = await withStore(p, false, (s) => showLocal(s, key!), () => ask<ClientIdView>(p, { op: 'clientid.show', key }));
    if (p.values['json']) return json(v), 0;
    out(`key         ${v.key}`);
    out(`identifier  ${v.identifier ?? '(none stored)'}`);
    if (v.source !== undefined) out(`source      ${v.source}, updated ${when(v.updated)}`);
    if (v.applied !== undefined) out(`applied     ${when(v.applied)} in netns ${v.appliedNetns}`);
    if (v.state !== undefined) out(`now         netns ${v.netns}: ${v.state}${v.detail ? ` (${v.detail})` : ''}`);
    return 0;
  },
};

type SetResult = { record: ClientIdRecord; applied?: ClientIdStatus };

async function store(p: Parsed, key: string, identifier: string, source: 'set' | 'import'): Promise<SetResult> {
  checked(key, identifier);
  return withStore(p, true, (s) => ({ record: s.set(key, identifier, source) }), () => ask<SetResult>(p, { op: 'clientid.set', key, identifier, source }));
}

function report(p: Parsed, r: SetResult): number {
  if (p.values['json']) return json(r), 0;
  const where = r.applied ? `; in netns ${r.applied.netns}: ${r.applied.state}${r.applied.detail ? ` (${r.applied.detail})` : ''}` : '; written when its namespace appears';
  out(`${r.record.key}: ${r.record.identifier} (${r.record.source})${where}`);
  return r.applied?.state === 'error' ? 1 : 0;
}

export const clientidSet: Command = {
  noun: 'clientid',
  verb: 'set',
  usage: 'idmapctl clientid set KEY VALUE [--cache PATH]',
  summary: 'store a namespace key\'s client identifier and, when the namespace is there, write it now (replacing what it holds)',
  example: 'idmapctl clientid set web1 3f9c2a7d0e5b4c1a9e8d7f6a5b4c3d2e',
  options: CACHE_OPTION,
  async run(p) {
    const [key, value] = positional(p, 2, 'KEY VALUE');
    return report(p, await store(p, key!, value!, 'set'));
  },
};

export const clientidExport: Command = {
  noun: 'clientid',
  verb: 'export',
  usage: 'idmapctl clientid export KEY [--cache PATH]',
  summary: 'print a key\'s client identifier as JSON, to import on the host a container moves to',
  example: 'idmapctl clientid export web1 > web1.clientid.json',
  options: CACHE_OPTION,
  async run(p) {
    const [key] = positional(p, 1, 'KEY');
    const v = await withStore(p, false, (s) => showLocal(s, key!), () => ask<ClientIdView>(p, { op: 'clientid.show', key }));
    if (v.identifier === undefined) throw new NsidmapError('NSIDMAP_ENOCLIENTID', `no client identifier stored for "${key}" (${v.state ?? 'unknown'}${v.detail ? `: ${v.detail}` : ''})`);
    const doc: ClientIdExport = {
      format: EXPORT_FORMAT,
      key: v.key,
      identifier: v.identifier,
      ...(v.source !== undefined && { source: v.source }),
      ...(v.updated !== undefined && { updated: new Date(v.updated).toISOString() }),
      exported: new Date().toISOString(),
      host: hostname(),
    };
    json(doc);
    return 0;
  },
};

/** An export file (or `-`, stdin), checked. */
export async function readExport(file: string): Promise<ClientIdExport> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file === '-' ? 0 : file, 'utf8'));
  } catch (e) {
    throw new NsidmapError('NSIDMAP_ECLIENTID', `${file}: not an export file (${(e as Error).message}); make one with idmapctl clientid export KEY`);
  }
  const parsed = (await clientIdExportSchema()).safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new NsidmapError('NSIDMAP_ECLIENTID', `${file}: not an ${EXPORT_FORMAT} export: ${issue?.path.join('.') || 'file'}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

export const clientidImport: Command = {
  noun: 'clientid',
  verb: 'import',
  usage: 'idmapctl clientid import FILE|- [--key NEWKEY] [--cache PATH]',
  summary: 'store a client identifier from `clientid export` (under another key with --key: a container id differs per host)',
  example: 'idmapctl clientid import web1.clientid.json --key 9f1c2b3a4d5e',
  options: { ...CACHE_OPTION, key: { type: 'string' } },
  async run(p) {
    const [file] = positional(p, 1, 'FILE (or - for stdin)');
    const doc = await readExport(file!);
    return report(p, await store(p, str(p, 'key') ?? doc.key, doc.identifier, 'import'));
  },
};
