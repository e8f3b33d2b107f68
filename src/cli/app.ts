/**
 * idmapctl — nsidmap's admin tool: `idmapctl <noun> [verb] [args]`. One command table; one file
 * per noun. Data on stdout (--json for machines), errors on stderr as `NSIDMAP_E…: message`.
 */
import { VERSION } from '../version.js';
import { cacheFlush, cacheList, cacheStats } from './cache.js';
import { clientidExport, clientidImport, clientidList, clientidSet, clientidShow } from './clientid.js';
import { parse, type Command } from './common.js';
import { importIdmapd } from './import.js';
import { keysClear, keysList, keysRevoke } from './keys.js';
import { policyCheck, policySchema, policyTest } from './policy.js';
import { queryCommand } from './query.js';
import { statsCommand } from './stats.js';
import { reloadCommand, statusCommand } from './status.js';

export const COMMANDS: readonly Command[] = [
  queryCommand,
  cacheList,
  cacheFlush,
  cacheStats,
  keysList,
  keysClear,
  keysRevoke,
  clientidList,
  clientidShow,
  clientidSet,
  clientidExport,
  clientidImport,
  policyCheck,
  policyTest,
  policySchema,
  importIdmapd,
  statusCommand,
  statsCommand,
  reloadCommand,
];

const name = (c: Command) => (c.verb ? `${c.noun} ${c.verb}` : c.noun);

export function mainHelp(): string {
  const rows = COMMANDS.map((c) => `  ${name(c).padEnd(14)} ${c.summary}`);
  return `Usage: idmapctl <command> [options]

Commands:
${rows.join('\n')}

Global options:
  --socket PATH   the daemon's admin socket (default: $NSIDMAP_SOCKET, /run/nsidmap/admin.sock)
  --json          machine-readable output
  -h, --help      help for a command: idmapctl query --help

Exit status: 0 ok; 1 answered but not mapped (query); other codes per docs/errors.md.
`;
}

export function commandHelp(c: Command): string {
  const opts = Object.entries(c.options).map(([k, v]) => `--${k}${v.type === 'string' ? ' VALUE' : ''}`);
  return `Usage: ${c.usage}\n\n${c.summary}\n${opts.length ? `\nOptions: ${opts.join(', ')}, --socket PATH, --json\n` : ''}\nExample:\n  ${c.example}\n`;
}

export function findCommand(argv: readonly string[]): { cmd: Command; rest: string[] } | undefined {
  const [noun, verb] = argv;
  const withVerb = COMMANDS.find((c) => c.noun === noun && c.verb !== '' && c.verb === verb);
  if (withVerb) return { cmd: withVerb, rest: argv.slice(2) };
  const bare = COMMANDS.find((c) => c.noun === noun && c.verb === '');
  return bare ? { cmd: bare, rest: argv.slice(1) } : undefined;
}

/** Global options may come before the command: `idmapctl --socket S status` → `status --socket S`. */
export function hoistGlobals(argv: readonly string[]): string[] {
  const lead: string[] = [];
  let i = 0;
  while (i < argv.length && (argv[i] === '--json' || argv[i] === '--socket' || argv[i]?.startsWith('--socket='))) {
    lead.push(argv[i]!);
    if (argv[i] === '--socket' && i + 1 < argv.length) lead.push(argv[++i]!);
    i++;
  }
  if (lead.length === 0) return [...argv];
  const rest = argv.slice(i);
  const cmd = findCommand(rest);
  if (!cmd) return [...rest, ...lead];
  const head = rest.slice(0, rest.length - cmd.rest.length);
  return [...head, ...lead, ...cmd.rest];
}

export async function runCli(rawArgv: string[]): Promise<number> {
  const argv = hoistGlobals(rawArgv);
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(mainHelp());
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version' || argv[0] === '-V') return void process.stdout.write(`idmapctl ${VERSION}\n`), 0;
  const found = findCommand(argv);
  if (!found) {
    const verbs = COMMANDS.filter((c) => c.noun === argv[0]).map((c) => c.verb);
    const hint = verbs.length ? `"${argv[0]}" needs one of: ${verbs.join(', ')}` : `unknown command "${argv[0]}"`;
    process.stderr.write(`NSIDMAP_EUSAGE: ${hint} (see idmapctl --help)\n`);
    return 2;
  }
  const parsed = parse(found.cmd, found.rest);
  if (parsed.values['help']) return void process.stdout.write(commandHelp(found.cmd)), 0;
  return found.cmd.run(parsed);
}

