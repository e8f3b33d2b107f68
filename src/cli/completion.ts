/**
 * Bash completion for idmapctl (contrib/bash-completion/idmapctl), generated from the command
 * table, so that a new command, verb or option completes without anyone remembering to say so.
 * `npm run docs` writes it; test/unit/completion.test.ts fails when it is stale and runs it in bash.
 *
 * What a word completes to comes from the table itself: the nouns and verbs; each command's
 * options; an option's value from its placeholder in the usage line (`--type nfs|cifs|all` → those
 * words, `--policy FILE` → file names, `--as IFACE` → the interfaces); positional arguments from
 * the usage line too (`KIND` → the lookup kinds, `FILE`, `CASES.yaml` → file names).
 */
import { KIND_ALIASES } from '../resolver/query.js';
import { INTERFACES, LOOKUP_KINDS } from '../types.js';
import { COMMANDS } from './app.js';
import { GLOBAL_OPTIONS, type Command } from './common.js';

/** How a value completes: a word list, file names, or nothing (free text). */
export type ValueCompletion = { readonly words: readonly string[] } | 'files' | 'none';

const FILE_PLACEHOLDER = /^(FILE|PATH|[A-Z]+\.ya?ml)$/;

/** A usage placeholder → how its value completes. */
export function placeholderCompletion(placeholder: string): ValueCompletion {
  const p = placeholder.replace(/[[\]()]/g, '');
  if (p.includes('|') && p.split('|').every((w) => /^[a-z][a-z0-9-]*$/.test(w))) return { words: p.split('|') };
  if (p.split('|').some((w) => FILE_PLACEHOLDER.test(w))) return 'files';
  if (p === 'KIND') return { words: [...LOOKUP_KINDS, ...Object.keys(KIND_ALIASES)] };
  if (p === 'IFACE') return { words: [...INTERFACES] };
  return 'none';
}

const label = (c: Command) => (c.verb ? `${c.noun} ${c.verb}` : c.noun);

/** Words of the usage line after `idmapctl noun [verb]`. */
function usageWords(c: Command): string[] {
  const words = c.usage.match(/"[^"]*"|\S+/g) ?? []; // a quoted placeholder is one word
  return words.slice(c.verb ? 3 : 2);
}

/** The placeholder after `--name` in the usage line, if it shows one. */
export function optionPlaceholder(c: Command, name: string): string | undefined {
  const words = usageWords(c);
  const i = words.findIndex((w) => w.replace(/^[[(]+/, '') === `--${name}`);
  const next = words[i + 1];
  if (i < 0 || next === undefined || /^[[(]*--/.test(next) || next === '|') return undefined;
  return next.replace(/[\])]+$/, '');
}

/** The positional placeholders of a command, in order (options and their values left out). */
export function positionals(c: Command): string[] {
  const words = usageWords(c);
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    const bare = w.replace(/^[[(]+/, '');
    if (bare.startsWith('--')) {
      const name = bare.replace(/[\])]+$/, '').slice(2);
      if (c.options[name]?.type === 'string' || name === 'socket') i++;
      continue;
    }
    if (w === '|') continue;
    if (/^[[(]*[A-Z]/.test(w) || /^[[(]*[a-z]+\.ya?ml/.test(w) || /^[[(]*[A-Z.]+\|-/.test(w)) out.push(w.replace(/^[[(]+|[\])]+$/g, ''));
  }
  return out;
}

function bashWords(ws: readonly string[]): string {
  return ws.join(' ');
}

function compgen(v: ValueCompletion): string {
  if (v === 'files') return 'COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null';
  if (v === 'none') return 'COMPREPLY=()';
  return `COMPREPLY=($(compgen -W "${bashWords(v.words)}" -- "$cur"))`;
}

export function bashCompletion(): string {
  const nouns = [...new Set(COMMANDS.map((c) => c.noun))];
  const globalOpts = Object.keys(GLOBAL_OPTIONS).map((o) => `--${o}`);
  const lines: string[] = [
    '# bash completion for idmapctl (nsidmap).',
    '# Generated from the command table (src/cli/app.ts) by `npm run docs`: do not edit.',
    '# Installed as /usr/share/bash-completion/completions/idmapctl.',
    '',
    '_idmapctl() {',
    '  local cur prev',
    '  cur=${COMP_WORDS[COMP_CWORD]}',
    '  prev=${COMP_WORDS[COMP_CWORD-1]}',
    '  COMPREPLY=()',
    '  # the words before the cursor that are not options nor option values: noun, verb, arguments',
    '  local -a pos=()',
    '  local i w',
    '  for ((i = 1; i < COMP_CWORD; i++)); do',
    '    w=${COMP_WORDS[i]}',
    '    case $w in',
    `      ${valueOptions().map((o) => `--${o}`).join('|')}) ((i++)) ;;`,
    '      -*) ;;',
    '      *) pos+=("$w") ;;',
    '    esac',
    '  done',
    '  if ((${#pos[@]} == 0)); then',
    `    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "${bashWords([...globalOpts, '--version'])}" -- "$cur"));`,
    `    else COMPREPLY=($(compgen -W "${bashWords(nouns)}" -- "$cur")); fi`,
    '    return 0',
    '  fi',
    '  local cmd=${pos[0]} args',
    '  case ${pos[0]} in',
  ];
  for (const noun of nouns) {
    const verbs = COMMANDS.filter((c) => c.noun === noun && c.verb !== '').map((c) => c.verb);
    if (verbs.length === 0) {
      lines.push(`    ${noun}) args=$((${'${#pos[@]}'} - 1)) ;;`);
      continue;
    }
    lines.push(
      `    ${noun})`,
      `      if ((${'${#pos[@]}'} == 1)); then COMPREPLY=($(compgen -W "${bashWords(verbs)}" -- "$cur")); return 0; fi`,
      `      cmd="${noun} ${'${pos[1]}'}" args=$((${'${#pos[@]}'} - 2)) ;;`,
    );
  }
  lines.push('    *) return 0 ;;', '  esac', '  case $cmd in');
  for (const c of COMMANDS) {
    const opts = [...Object.keys(c.options).map((o) => `--${o}`), ...globalOpts];
    lines.push(`    "${label(c)}")`);
    const valued = Object.entries(c.options).filter(([, v]) => v.type === 'string').map(([k]) => k);
    const cases = [...valued, 'socket'].map((o) => {
      const ph = o === 'socket' ? 'PATH' : optionPlaceholder(c, o);
      return `        --${o}) ${compgen(ph === undefined ? 'none' : placeholderCompletion(ph))}; return 0 ;;`;
    });
    lines.push('      case $prev in', ...cases, '      esac');
    lines.push(`      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "${bashWords(opts)}" -- "$cur")); return 0; fi`);
    const pos = positionals(c);
    if (pos.length > 0) {
      lines.push('      case $args in');
      pos.forEach((p, i) => lines.push(`        ${i}) ${compgen(placeholderCompletion(p))} ;;`));
      lines.push('      esac');
    }
    lines.push('      ;;');
  }
  lines.push('  esac', '  return 0', '}', 'complete -F _idmapctl idmapctl', '');
  return lines.join('\n');
}

/** Every option, of any command, that takes a value (so that its value is not taken for a noun). */
function valueOptions(): string[] {
  const s = new Set<string>(['socket']);
  for (const c of COMMANDS) for (const [k, v] of Object.entries(c.options)) if (v.type === 'string') s.add(k);
  return [...s].sort();
}
