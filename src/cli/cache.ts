/** idmapctl cache list | flush | stats */
import { NsidmapError } from '../errors.js';
import type { CacheEntry } from '../cache/store.js';
import { ask, int, json, out, str, table, type Command } from './common.js';

function age(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

export const cacheList: Command = {
  noun: 'cache',
  verb: 'list',
  usage: 'idmapctl cache list [--scope NAME] [--prefix TEXT] [--limit N] [--json]',
  summary: 'list cached answers (key, value or NEGATIVE, source, expiry)',
  example: 'idmapctl cache list --scope host --limit 20',
  options: { scope: { type: 'string' }, prefix: { type: 'string' }, limit: { type: 'string' } },
  async run(p) {
    const prefix = str(p, 'prefix');
    const scope = str(p, 'scope');
    const rows = await ask<CacheEntry[]>(p, { op: 'cache.list', scope, prefix: prefix?.split(' ').join('\x1f'), limit: int(p, 'limit') });
    if (p.values['json']) return json(rows), 0;
    const now = Date.now();
    out(table([['KEY', 'VALUE', 'SOURCE', 'EXPIRES'], ...rows.map((e) => [e.key, e.value ?? 'NEGATIVE', e.source || '-', e.expires > now ? `in ${age(e.expires - now)}` : `${age(now - e.expires)} ago`])]));
    return 0;
  },
};

export const cacheFlush: Command = {
  noun: 'cache',
  verb: 'flush',
  usage: 'idmapctl cache flush [--scope NAME | --key "SCOPE KIND QUERY"]',
  summary: 'drop cached answers: all, one scope\'s, or one key (as `cache list` prints it)',
  example: 'idmapctl cache flush --scope host\n  idmapctl cache flush --key "host name-to-uid alice"',
  options: { scope: { type: 'string' }, key: { type: 'string' } },
  async run(p) {
    if (str(p, 'scope') !== undefined && str(p, 'key') !== undefined) throw new NsidmapError('NSIDMAP_EUSAGE', '--scope and --key exclude each other');
    const r = await ask<{ flushed: number }>(p, { op: 'cache.flush', scope: str(p, 'scope'), key: str(p, 'key') });
    if (p.values['json']) json(r);
    else out(`${r.flushed} entr${r.flushed === 1 ? 'y' : 'ies'} flushed`);
    return 0;
  },
};

export const cacheStats: Command = {
  noun: 'cache',
  verb: 'stats',
  usage: 'idmapctl cache stats [--json]',
  summary: 'entries, negative entries, and lookup counters since start',
  example: 'idmapctl cache stats',
  options: {},
  async run(p) {
    const r = await ask<{ entries: number; negative: number; counters: Record<string, number> }>(p, { op: 'cache.stats' });
    if (p.values['json']) return json(r), 0;
    out(`entries   ${r.entries}`);
    out(`negative  ${r.negative}`);
    for (const [k, v] of Object.entries(r.counters)) out(`${k.padEnd(9)} ${v}`);
    return 0;
  },
};
