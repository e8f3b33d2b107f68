#!/usr/bin/env node
/** idmapctl entry point: run the command table (app.ts), map errors to one line and an exit code. */
import { isNsidmapError } from '../errors.js';
import { runCli } from './app.js';

// `idmapctl cache list | head`: a closed pipe ends the output, it is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    if (isNsidmapError(e)) {
      process.stderr.write(e.oneLine() + '\n');
      process.exitCode = e.exitCode;
    } else {
      process.stderr.write(`NSIDMAP_EINTERNAL: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 70;
    }
  },
);
