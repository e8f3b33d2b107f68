/**
 * docs/cli.md and contrib/bash-completion/idmapctl are generated from the command table
 * (src/cli/app.ts), so `--help`, the docs and the completion cannot drift: `npm run docs` rewrites
 * them; test/unit/cli-doc.test.ts and test/unit/completion.test.ts fail when they are stale.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bashCompletion } from '../src/cli/completion.js';
import { cliReference } from '../src/cli/reference.js';

for (const [rel, text] of [
  ['../docs/cli.md', cliReference()],
  ['../contrib/bash-completion/idmapctl', bashCompletion()],
] as const) {
  const target = fileURLToPath(new URL(rel, import.meta.url));
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text);
  process.stdout.write(`wrote ${target}\n`);
}
