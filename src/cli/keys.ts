/**
 * idmapctl keys list | clear | revoke — the kernel's caches of upcall answers, `.id_resolver`
 * (NFS) and `.cifs_idmap` (SMB): what `nfsidmap -l`, `-c` and `-u/-g/-r` do, for both.
 * Local: the daemon is not involved (these keyrings belong to the kernel).
 *
 * The keyctl bindings (koffi) are imported when a keys command runs, not when idmapctl starts.
 */
import { NsidmapError } from '../errors.js';
import type { CacheKeyring, CachedKey, Protocol, Removal } from '../responders/keyring/cache-keyrings.js';
import { decodeDescription } from '../responders/keyring/codec.js';
import { parseSid } from '../sid.js';
import { json, out, str, type Command, type Parsed } from './common.js';

const TYPES = ['nfs', 'cifs', 'all'] as const;

type Keyrings = typeof import('../responders/keyring/cache-keyrings.js');
const keyrings = (): Promise<Keyrings> => import('../responders/keyring/cache-keyrings.js');

/** The keyrings --type names (default: both). */
function selected({ cacheKeyrings, PROTOCOLS }: Keyrings, p: Parsed): CacheKeyring[] {
  const t = str(p, 'type') ?? 'all';
  if (!(TYPES as readonly string[]).includes(t)) throw new NsidmapError('NSIDMAP_EUSAGE', `--type: "${t}" is not one of ${TYPES.join(', ')}`);
  const rings = cacheKeyrings();
  return t === 'all' ? PROTOCOLS.map((proto) => rings[proto]) : [rings[t as Protocol]];
}

/** nfsidmap -l's header, word for word: scripts parse it. */
export function listHeader(ringName: string, count: number): string {
  if (count === 0) return `No ${ringName} keys found.`;
  return `${count} ${ringName} key${count === 1 ? '' : 's'} found:`;
}

export const keysList: Command = {
  noun: 'keys',
  verb: 'list',
  usage: 'idmapctl keys list [--type nfs|cifs|all] [--json]',
  summary: 'list the kernel\'s cached answers in .id_resolver / .cifs_idmap (as nfsidmap -l)',
  example: 'idmapctl keys list --type nfs',
  options: { type: { type: 'string' } },
  async run(p) {
    const kr = await keyrings();
    const { findKeyring, listCachedKeys, readProcKeys } = kr;
    const rings = selected(kr, p);
    const procKeys = readProcKeys();
    const asJson = p.values['json'] === true;
    const all: (CachedKey & { keyring: string })[] = [];
    for (const ring of rings) {
      const serial = findKeyring(procKeys, ring.name);
      // No keyring: the nfs (cifs) module never made one, so nothing is cached.
      const keys = serial === undefined ? [] : listCachedKeys(ring, serial, procKeys, asJson);
      if (asJson) {
        for (const k of keys) all.push({ keyring: ring.name, ...k });
        continue;
      }
      out(listHeader(ring.name, keys.length));
      for (const k of keys) out(`  ${k.description}`);
    }
    if (asJson) json(all);
    return 0;
  },
};

export const keysClear: Command = {
  noun: 'keys',
  verb: 'clear',
  usage: 'idmapctl keys clear [--type nfs|cifs|all] [--json]',
  summary: 'drop every cached answer from .id_resolver / .cifs_idmap (as nfsidmap -c)',
  example: 'idmapctl keys clear --type nfs',
  options: { type: { type: 'string' } },
  async run(p) {
    const [kr, keyctl] = await Promise.all([keyrings(), import('../responders/keyring/keyctl.js')]);
    const { findKeyring, readProcKeys } = kr;
    const procKeys = readProcKeys();
    const results: { keyring: string; present: boolean; cleared: number }[] = [];
    for (const ring of selected(kr, p)) {
      const serial = findKeyring(procKeys, ring.name);
      if (serial === undefined) {
        results.push({ keyring: ring.name, present: false, cleared: 0 });
        continue;
      }
      const count = keyctl.listKeyring(serial).length;
      keyctl.clear(serial);
      results.push({ keyring: ring.name, present: true, cleared: count });
    }
    if (p.values['json']) return json(results), 0;
    for (const r of results) out(r.present ? `${r.keyring}: ${r.cleared} key${r.cleared === 1 ? '' : 's'} cleared` : `${r.keyring}: no such keyring, nothing to clear`);
    return 0;
  },
};

/** The descriptions `keys revoke` looks for, and the keyrings to look in. */
interface Target {
  readonly descriptions: readonly string[];
  readonly protocols: readonly Protocol[];
}

/** Which keyring a description belongs in, from its prefix (`uid:` → nfs, `os:` → cifs). */
function protocolOf(description: string): Protocol | undefined {
  if (decodeDescription('id_resolver', description).ok) return 'nfs';
  if (decodeDescription('cifs.idmap', description).ok) return 'cifs';
  return undefined;
}

function target({ PROTOCOLS }: Keyrings, p: Parsed): Target {
  const given = [
    p.positionals.length ? 'DESCRIPTION' : undefined,
    ...(['user', 'group', 'sid'] as const).map((o) => (str(p, o) !== undefined ? `--${o}` : undefined)),
  ].filter((x) => x !== undefined);
  if (given.length !== 1 || p.positionals.length > 1) {
    throw new NsidmapError('NSIDMAP_EUSAGE', `give exactly one of DESCRIPTION, --user, --group, --sid${given.length > 1 ? ` (got ${given.join(', ')})` : ''}`);
  }
  const user = str(p, 'user');
  const group = str(p, 'group');
  const sidText = str(p, 'sid');
  // nfsidmap -u/-g: the key of a name → id lookup for that wire name
  if (user !== undefined) return { descriptions: [`uid:${user}`], protocols: ['nfs'] };
  if (group !== undefined) return { descriptions: [`gid:${group}`], protocols: ['nfs'] };
  if (sidText !== undefined) {
    const sid = parseSid(sidText);
    if (!sid) throw new NsidmapError('NSIDMAP_EUSAGE', `--sid: "${sidText}" is not a SID (S-1-5-21-…)`);
    // The owner and the group form of a SID → id lookup are two keys; either may be cached.
    return { descriptions: [`os:${sid}`, `gs:${sid}`], protocols: ['cifs'] };
  }
  const description = p.positionals[0]!;
  const proto = protocolOf(description);
  return { descriptions: [description], protocols: proto ? [proto] : PROTOCOLS };
}

interface Revoked {
  keyring: string;
  serial: number;
  description: string;
  action: Removal;
}

export const keysRevoke: Command = {
  noun: 'keys',
  verb: 'revoke',
  usage: 'idmapctl keys revoke (DESCRIPTION | --user NAME | --group NAME | --sid SID) [--type nfs|cifs|all] [--json]',
  summary: 'forget one cached answer, so the next lookup asks again (as nfsidmap -u/-g/-r)',
  example: 'idmapctl keys revoke --user alice@example.com\n  idmapctl keys revoke --sid S-1-5-21-1-2-3-1001\n  idmapctl keys revoke user:1001',
  options: { user: { type: 'string' }, group: { type: 'string' }, sid: { type: 'string' }, type: { type: 'string' } },
  async run(p) {
    const kr = await keyrings();
    const { cacheKeyrings, findKeyring, listCachedKeys, readProcKeys, removeKey } = kr;
    const t = target(kr, p);
    const rings = cacheKeyrings();
    const search = str(p, 'type') === undefined ? t.protocols.map((proto) => rings[proto]) : selected(kr, p);
    const procKeys = readProcKeys();
    const done: Revoked[] = [];
    const absent: string[] = [];
    for (const ring of search) {
      const serial = findKeyring(procKeys, ring.name);
      if (serial === undefined) {
        absent.push(ring.name);
        continue;
      }
      for (const k of listCachedKeys(ring, serial, procKeys, false)) {
        if (t.descriptions.includes(k.description)) done.push({ keyring: ring.name, serial: k.serial, description: k.description, action: removeKey(k.serial) });
      }
    }
    if (done.length === 0) {
      const where = search.map((r) => r.name).join(' or ');
      const why = absent.length ? `; no ${absent.join(' or ')} keyring exists on this host, so nothing is cached there` : '';
      throw new NsidmapError('NSIDMAP_ENOKEY', `no key ${t.descriptions.map((d) => `"${d}"`).join(' or ')} in ${where}${why} (see idmapctl keys list)`);
    }
    if (p.values['json']) return json(done), 0;
    for (const r of done) out(`${r.keyring}: ${r.description} ${r.action} (key ${r.serial})`);
    return 0;
  },
};
