/**
 * `npm run man`: docs/man/*.md → dist/man/<name>.<section> (roff), with scripts/man/roff.ts.
 *
 * Two directives keep the pages from drifting away from what they describe:
 *   <!-- include: ../policy.md -->   the file, without its title line (nsidmap-policy(5) is
 *                                     docs/policy.md with a man page's head on it)
 *   <!-- idmapctl-commands -->       the CLI reference (src/cli/reference.ts, the text of every
 *                                     command's --help), one subsection per command
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cliReference } from '../src/cli/reference.js';
import { toRoff, type TitleInfo } from './man/roff.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const MAN_SOURCES = join(ROOT, 'docs/man');

export interface ManPage {
  readonly name: string;
  readonly section: string;
  /** file name: name.section */
  readonly file: string;
  readonly markdown: string;
  readonly roff: string;
}

/** The CLI reference's command sections, one level down, without its title and introduction. */
export function cliSections(): string {
  const ref = cliReference();
  const start = ref.indexOf('\n## ');
  return ref.slice(start + 1).replace(/^## /gm, '### ');
}

/** Expand the directives of one source file. */
export function expand(markdown: string, from: string): string {
  return markdown
    .replace(/<!--\s*include:\s*(\S+)\s*-->/g, (_, file: string) => {
      const text = readFileSync(resolve(dirname(from), file), 'utf8');
      return text.replace(/^\s*#\s[^\n]*\n/, ''); // its title: the page has its own
    })
    .replace(/<!--\s*idmapctl-commands\s*-->/g, () => cliSections());
}

/** The date on the pages: SOURCE_DATE_EPOCH (reproducible builds), else the last commit's, else today. */
export function pageDate(env = process.env): string {
  const epoch = env['SOURCE_DATE_EPOCH'];
  if (epoch && /^\d+$/.test(epoch)) return new Date(Number(epoch) * 1000).toISOString().slice(0, 10);
  try {
    const d = execFileSync('git', ['log', '-1', '--format=%cs'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (/^\d{4}-\d\d-\d\d$/.test(d)) return d;
  } catch {
    // not a checkout: today
  }
  return new Date().toISOString().slice(0, 10);
}

export function buildManPages(info?: TitleInfo): ManPage[] {
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const title = info ?? { source: `nsidmap ${version}`, date: pageDate() };
  return readdirSync(MAN_SOURCES)
    .filter((f) => /^[a-z0-9_.-]+\.\d\.md$/.test(f))
    .sort()
    .map((f) => {
      const path = join(MAN_SOURCES, f);
      const file = f.slice(0, -3);
      const section = file.slice(file.lastIndexOf('.') + 1);
      const markdown = expand(readFileSync(path, 'utf8'), path);
      return { name: file.slice(0, file.lastIndexOf('.')), section, file, markdown, roff: toRoff(markdown, title) };
    });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = resolve(process.argv[2] ?? join(ROOT, 'dist/man'));
  mkdirSync(outDir, { recursive: true });
  for (const p of buildManPages()) {
    writeFileSync(join(outDir, p.file), p.roff);
    process.stdout.write(`wrote ${join(outDir, p.file)}\n`);
  }
}
