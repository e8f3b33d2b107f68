/** The markdown CLI reference (docs/cli.md), built from the same table as `--help`. */
import { COMMANDS, commandHelp } from './app.js';

export function cliReference(): string {
  const parts = [
    '# idmapctl — command reference',
    '',
    'Generated from the command table (`npm run docs`); every section is what `--help` prints.',
    '`idmapctl <noun> [verb] [args]`: data on stdout (`--json` for machines), errors on stderr as',
    '`NSIDMAP_E…: message` (see `docs/errors.md`). Global options: `--socket PATH`, `--json`.',
    '',
  ];
  for (const c of COMMANDS) {
    parts.push(`## idmapctl ${c.verb ? `${c.noun} ${c.verb}` : c.noun}`, '', '```', commandHelp(c).trimEnd(), '```', '');
  }
  return parts.join('\n');
}
