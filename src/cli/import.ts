/**
 * idmapctl import idmapd.conf [FILE] — an existing idmapd.conf as a policy (src/resolver/policy/idmapd.ts).
 * Its parser and converter (with the policy schema) are imported when the command runs.
 */
import { NsidmapError } from '../errors.js';
import { hostDomain } from '../resolver/policy/domain.js';
import type { IdmapdConf } from '../resolver/policy/idmapd.js';
import { json, type Command } from './common.js';

export const DEFAULT_IDMAPD_CONF = '/etc/idmapd.conf';

function read(readIdmapdConf: (file: string) => IdmapdConf, file: string): IdmapdConf {
  try {
    return readIdmapdConf(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new NsidmapError('NSIDMAP_EPOLICY_READ', `${file}: ${err.code ?? err.message}: cannot read the idmapd.conf to import`);
  }
}

export const importIdmapd: Command = {
  noun: 'import',
  verb: 'idmapd.conf',
  usage: 'idmapctl import idmapd.conf [FILE] [--json]',
  summary: `convert an idmapd.conf (FILE, default ${DEFAULT_IDMAPD_CONF}, with its includes and FILE.d/*.conf drop-ins) into a policy YAML on stdout; what cannot be carried over becomes a comment in it and a \`note:\` line on stderr`,
  example: 'idmapctl import idmapd.conf /etc/idmapd.conf > policy.yaml && idmapctl policy check policy.yaml',
  options: {},
  async run(p) {
    const [file = DEFAULT_IDMAPD_CONF, ...rest] = p.positionals;
    if (rest.length) throw new NsidmapError('NSIDMAP_EUSAGE', `usage: ${this.usage}`);
    const { idmapdToPolicy, readIdmapdConf } = await import('../resolver/policy/idmapd.js');
    const conv = idmapdToPolicy(read(readIdmapdConf, file), { hostDomain });
    if (p.values['json']) {
      json({ yaml: conv.yaml, notes: conv.notes });
      return 0;
    }
    process.stdout.write(conv.yaml);
    for (const n of conv.notes) process.stderr.write(`note: ${n}\n`);
    return 0;
  },
};
