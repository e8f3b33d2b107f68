/**
 * The man pages (docs/man/*.md → roff by scripts/gen-man.ts): the sections a man page must have,
 * groff and man accept them, and they say what the code does (every nsidmapd option, every
 * idmapctl command).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { COMMANDS } from '../../src/cli/app.js';
import { buildManPages } from '../../scripts/gen-man.js';
import { escapeText, inline, toRoff } from '../../scripts/man/roff.js';

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const HAS_GROFF = has('groff');
const HAS_MAN = has('man');
const INFO = { source: 'nsidmap 0.0.0', date: '2026-01-02' };
const pages = buildManPages(INFO);
const work = mkdtempSync(join(tmpdir(), 'nsidmap-man-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** The page as plain text (groff -Tutf8, no overstriking): what a reader sees. */
function render(roff: string): { text: string; warnings: string } {
  // -t: tables through tbl; -ww -Wbreak: every warning but "cannot break/adjust line" (a long path)
  const r = spawnSync('groff', ['-man', '-t', '-Tutf8', '-ww', '-Wbreak', '-P-c', '-P-b', '-P-u'], { input: roff, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { text: r.stdout.replace(/[ \t]+/g, ' '), warnings: r.stderr };
}

describe('man pages', () => {
  it('nsidmapd(8), idmapctl(8) and nsidmap-policy(5) are built', () => {
    assert.deepEqual(pages.map((p) => p.file), ['idmapctl.8', 'nsidmap-policy.5', 'nsidmapd.8']);
  });

  for (const p of pages) {
    it(`${p.file}: title, and NAME (with \\-), SYNOPSIS, DESCRIPTION, SEE ALSO`, () => {
      assert.match(p.roff, new RegExp(`^\\.TH ${p.name.toUpperCase()} ${p.section} "2026-01-02" "nsidmap 0\\.0\\.0" "`, 'm'));
      for (const s of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'SEE ALSO']) assert.match(p.roff, new RegExp(`^\\.SH "${s}"$`, 'm'), s);
      assert.match(p.roff, new RegExp(`^\\.SH "NAME"\\n\\.PP\\n${p.name.replace(/-/g, '\\\\?-')} \\\\- \\S`, 'm'), 'NAME line: name \\- summary (for whatis)');
      assert.doesNotMatch(p.roff, /<!--|-->|(?<!\\)\[[^\]]*\]\(|```/, 'no Markdown left over');
      assert.ok(!/[^\x00-\x7f]/.test(p.roff), 'ASCII only: everything else is a \\[uXXXX] escape');
    });

    it(`${p.file}: groff renders it without warnings`, { skip: HAS_GROFF ? false : 'groff is not installed' }, () => {
      const { text, warnings } = render(p.roff);
      assert.equal(warnings, '');
      for (const s of ['NAME', 'SYNOPSIS', 'DESCRIPTION']) assert.match(text, new RegExp(`^${s}$`, 'm'));
    });

    it(`${p.file}: man -l shows it`, { skip: HAS_MAN && HAS_GROFF ? false : 'man is not installed' }, () => {
      const file = join(work, p.file);
      writeFileSync(file, p.roff);
      const r = spawnSync('man', ['-l', file], { encoding: 'utf8', env: { ...process.env, MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '100', LC_ALL: 'C.UTF-8' } });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${p.name.toUpperCase()}\\(${p.section}\\)`));
      assert.match(r.stdout, /\nDESCRIPTION\n/);
    });
  }

  it('idmapctl(8) has every command with its usage and example (the CLI reference, built in)', { skip: HAS_GROFF ? false : 'groff is not installed' }, () => {
    const { text } = render(pages.find((p) => p.name === 'idmapctl')!.roff);
    for (const c of COMMANDS) {
      assert.ok(text.includes(`Usage: ${c.usage}`.replace(/\s+/g, ' ')), c.usage);
      assert.ok(text.includes(c.example.split('\n')[0]!.replace(/\s+/g, ' ')), c.example);
    }
  });

  it('nsidmapd(8) documents every option of nsidmapd --help', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/daemon/main.ts', '--help'], { cwd: new URL('../..', import.meta.url), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const options = [...new Set(r.stdout.match(/--[a-z][a-z-]+/g))];
    assert.ok(options.length >= 8, options.join(' '));
    const md = pages.find((p) => p.name === 'nsidmapd')!.markdown;
    for (const o of options) assert.ok(md.includes(`\`${o}\``), `nsidmapd(8) lacks ${o}`);
  });

  it('nsidmap-policy(5) is docs/policy.md: every section of it is in the page', () => {
    const md = pages.find((p) => p.name === 'nsidmap-policy')!.markdown;
    for (const h of ['## Providers (sources)', '## Scopes', '### match', '## cache', '## clientid', '## Policy tests']) assert.ok(md.includes(h), h);
  });
});

describe('the Markdown to roff converter', () => {
  it('escapes backslashes, control characters at line starts and everything outside ASCII', () => {
    assert.equal(escapeText('a\\b — “x” ≥ 20'), 'a\\eb \\[u2014] \\[u201C]x\\[u201D] \\[u2265] 20');
    const roff = toRoff('# x(8)\n\n## NAME\n\nx - y\n\n## DESCRIPTION\n\n.starts with a dot\n\'and a quote\n', INFO);
    assert.match(roff, /^\\&\.starts with a dot$/m);
    assert.match(roff, /^\\&'and a quote$/m);
    assert.match(roff, /^x \\- y$/m);
  });

  it('code in bold with real minus signs, emphasis, links as their text', () => {
    assert.equal(inline('run `idmapctl keys clear --type nfs`'), 'run \\fBidmapctl keys clear \\-\\-type nfs\\fR');
    assert.equal(inline('**bold** and *FILE*, not 2*3*4'), '\\fBbold\\fR and \\fIFILE\\fR, not 2*3*4');
    assert.equal(inline('see [the guide](docs/migration.md)'), 'see the guide');
    assert.equal(inline('`**not bold**`'), '\\fB**not bold**\\fR');
  });

  it('headings, lists, definitions, code blocks and tables', () => {
    const md = [
      '# t(5)', '', '## Files', '', '### sub `x`', '', '- one', '  more', '- two', '', '1. first', '',
      '`-p` *FILE*', ': the policy', '  second line', '', '```', '.x -y \\z', '```', '', '| a | b |', '|---|---|', '| `c\\|d` | e |', '',
    ].join('\n');
    const roff = toRoff(md, INFO);
    assert.match(roff, /^\.SH "FILES"$/m);
    assert.match(roff, /^\.SS "sub x"$/m);
    assert.match(roff, /^\.IP \\\(bu 2\none\nmore\n\.IP \\\(bu 2\ntwo$/m);
    assert.match(roff, /^\.IP 1\. 4\nfirst$/m);
    assert.match(roff, /^\.TP\n\\fB\\-p\\fR \\fIFILE\\fR\nthe policy\nsecond line$/m);
    assert.match(roff, /^\.nf\n\\&\.x \\-y \\ez\n\.fi$/m);
    assert.match(roff, /^\.TS\ntab\(\t\) allbox;\nlb lb\nlx lx\.\nT\{\na\nT\}\tT\{\nb\nT\}\nT\{\n\\fBc\|d\\fR\nT\}\tT\{\ne\nT\}\n\.TE$/m);
  });

  it('refuses a source without a `# name(section)` title', () => {
    assert.throws(() => toRoff('## NAME\n', INFO), /# name\(section\)/);
  });
});
