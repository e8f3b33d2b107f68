#!/usr/bin/env node
/**
 * nsidmapd — the nsidmap daemon. See `nsidmapd --help`.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { describeError, isNsidmapError, NsidmapError } from '../errors.js';
import { createLogger, LEVELS, type Level } from '../log.js';
import { VERSION } from '../version.js';
import { Daemon } from './daemon.js';
import { defaultPaths } from './paths.js';
import { buildResponders, parseServe } from './responders.js';

const HELP = `Usage: nsidmapd [options]

The nsidmap daemon: answers the kernel's identity-mapping requests (NFSv4 id_resolver keys,
cifs.idmap keys) and idmapctl on its admin socket, from the policy's sources and its cache.

Options:
  -p, --policy FILE     policy file (default ${defaultPaths().policy}; when it does not
                        exist, the embedded defaults: files + nss sources, one host scope)
  -s, --socket PATH     admin socket (default: the policy's daemon.socket, else
                        ${defaultPaths().socket})
  -c, --cache PATH      SQLite cache file or :memory: (default: the policy's cache.path,
                        else ${defaultPaths().cache})
  -l, --log-level LVL   error | warn | info | debug (default: the policy's daemon.logLevel, else info)
      --serve LIST      kernel interfaces served besides the keyring helper's requests:
                        pipefs, nfsd, clientid (comma-separated), all (default) or none.
                        Every network namespace's rpc_pipefs and nfsd channels are found and
                        followed; NFSv4 client identifiers are set per namespace
      --check           load and check the policy, print findings, exit (0 when usable)
  -h, --help            this text
  -V, --version         print the version

Signals: SIGHUP reloads the policy (a broken one is refused and the old one stays in force);
SIGTERM/SIGINT stop gracefully. Under systemd (Type=notify) it reports READY=1 and WATCHDOG=1.

Example:
  nsidmapd --policy /etc/nsidmap/policy.yaml --log-level debug
`;

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        policy: { type: 'string', short: 'p' },
        socket: { type: 'string', short: 's' },
        cache: { type: 'string', short: 'c' },
        'log-level': { type: 'string', short: 'l' },
        check: { type: 'boolean' },
        serve: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    throw new NsidmapError('NSIDMAP_EUSAGE', `${(e as Error).message} (see nsidmapd --help)`);
  }
  if (args.help) return void process.stdout.write(HELP), 0;
  if (args.version) return void process.stdout.write(`nsidmapd ${VERSION}\n`), 0;
  const level = args['log-level'] ?? 'info';
  if (!(level in LEVELS)) throw new NsidmapError('NSIDMAP_EUSAGE', `--log-level: "${level}" is not one of ${Object.keys(LEVELS).join(', ')}`);
  const log = createLogger({ level: level as Level });
  const paths = defaultPaths();
  const serve = parseServe(args.serve ?? 'all');
  const daemon = new Daemon({
    policy: args.policy ?? paths.policy,
    policyRequired: args.policy !== undefined,
    socket: args.socket,
    defaultSocket: paths.socket,
    logLevelExplicit: args['log-level'] !== undefined,
    responders: (engine) => buildResponders(engine, serve),
    cache: args.cache ?? paths.cache,
    cacheOverride: args.cache !== undefined,
    log,
  });
  if (args.check) return checkOnly(args.policy ?? paths.policy, args.policy !== undefined);
  // Handlers first: start() yields (sources, listen, loading the notifier) while the socket may
  // already answer, and a signal with no handler takes its default action — SIGHUP would kill us.
  let started!: (ok: boolean) => void;
  installSignals(daemon, log, new Promise<boolean>((resolve) => (started = resolve)));
  try {
    await daemon.start();
  } catch (e) {
    started(false);
    throw e;
  }
  started(true);
  installFaultHandlers(log);
  return -1; // keep running
}

/** Check what start() would load: the default policy path, when absent, means the embedded defaults. */
async function checkOnly(file: string, required: boolean): Promise<number> {
  const { Engine } = await import('../resolver/engine.js');
  const { formatFinding } = await import('../resolver/policy/load.js');
  const used = required || existsSync(file) ? file : undefined;
  const e = Engine.create(used, { defaultCachePath: ':memory:' });
  for (const w of e.warnings) process.stdout.write(formatFinding(w) + '\n');
  process.stdout.write(`${used ?? `${file} does not exist: the embedded defaults`}: ok\n`);
  return 0;
}

/** Signals that arrive during start-up act once it is done (a failed start reports its own error). */
function installSignals(daemon: Daemon, log: ReturnType<typeof createLogger>, started: Promise<boolean>): void {
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info('daemon.stopping', { signal: sig });
    void started.then((ok) => {
      if (!ok) return;
      daemon.stop().then(() => process.exit(0), (e) => { log.error('daemon.stop_failed', { error: describeError(e).message }); process.exit(1); });
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    void started.then((ok) => { if (ok && !stopping) daemon.reload().catch(() => undefined); });
  });
}

function installFaultHandlers(log: ReturnType<typeof createLogger>): void {
  // A fault must never take the daemon down silently; log it with its stack and keep serving.
  process.on('uncaughtException', (e) => log.error('daemon.uncaught', { error: e.stack ?? String(e) }));
  process.on('unhandledRejection', (e) => log.error('daemon.unhandled', { error: (e as Error)?.stack ?? String(e) }));
}

main(process.argv.slice(2)).then(
  (code) => { if (code >= 0) process.exitCode = code; },
  (e) => {
    if (isNsidmapError(e)) process.stderr.write(e.oneLine() + '\n');
    else process.stderr.write(`NSIDMAP_EDAEMON: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = isNsidmapError(e) ? e.exitCode : 8;
  },
);
