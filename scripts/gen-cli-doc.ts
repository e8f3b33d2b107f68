/**
 * docs/cli.md is generated from the command table (src/cli/app.ts), so `--help` and the docs
 * cannot drift: `npm run docs` rewrites it, test/unit/cli-doc.test.ts fails when it is stale.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cliReference } from '../src/cli/reference.js';

const target = fileURLToPath(new URL('../docs/cli.md', import.meta.url));
writeFileSync(target, cliReference());
process.stdout.write(`wrote ${target}\n`);
