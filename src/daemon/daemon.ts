/**
 * nsidmapd lifecycle:
 *
 *   start(): policy (load+check+compile) → cache → sources → admin socket → READY=1
 *   SIGHUP : RELOADING=1 → reload (a broken policy is refused, the old one stays) → READY=1
 *   SIGTERM: STOPPING=1 → admin socket → sources → cache (reverse order) → exit 0
 */
import { existsSync } from 'node:fs';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { Engine } from '../resolver/engine.js';
import { formatFinding } from '../resolver/policy/load.js';
import { AdminServer } from '../responders/admin/server.js';
import { VERSION } from '../version.js';
import { makeHandler } from './handler.js';
import { createNotifier, startWatchdog, type Notifier } from './notify.js';

export interface DaemonOptions {
  /** policy file; when it does not exist and `policyRequired` is false, the embedded defaults */
  readonly policy: string;
  readonly policyRequired: boolean;
  readonly socket: string;
  readonly cache: string;
  /** `cache` came from the command line: it overrides the policy's cache.path (else it is the fallback) */
  readonly cacheOverride?: boolean;
  readonly log: Logger;
}

export class Daemon {
  private engine: Engine | undefined;
  private admin: AdminServer | undefined;
  private notifier: Notifier | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private reloading: Promise<unknown> | undefined;

  constructor(private readonly opts: DaemonOptions) {}

  async start(): Promise<void> {
    const t0 = performance.now();
    const { log } = this.opts;
    const file = this.opts.policyRequired || existsSync(this.opts.policy) ? this.opts.policy : undefined;
    if (!file) log.info('policy.embedded', { reason: `${this.opts.policy} does not exist: using the embedded defaults` });
    const engine = Engine.create(file, { log, defaultCachePath: this.opts.cache, cachePath: this.opts.cacheOverride ? this.opts.cache : undefined });
    for (const w of engine.warnings) log.warn('policy.warning', { finding: formatFinding(w) });
    await engine.start();
    this.engine = engine;
    const info = { version: VERSION, startedAt: Date.now(), socket: this.opts.socket };
    this.admin = new AdminServer({ path: this.opts.socket, gid: undefined, log }, makeHandler(() => this.current(), info, log, () => this.reload()));
    try {
      await this.admin.start();
    } catch (e) {
      // release what start() acquired: a source's open connections would keep the process alive
      this.admin = undefined;
      await engine.stop();
      throw e;
    }
    this.notifier = await createNotifier(log);
    this.notifier.send(`READY=1\nSTATUS=serving (policy ${file ?? 'embedded defaults'})\nMAINPID=${process.pid}`);
    this.watchdog = startWatchdog(this.notifier);
    log.info('daemon.ready', { version: VERSION, policy: file ?? 'embedded', domain: engine.policy.domain, socket: this.opts.socket, cache: engine.cachePath, ms: Math.round(performance.now() - t0) });
  }

  private current(): Engine {
    if (!this.engine) throw new Error('daemon not started');
    return this.engine;
  }

  /** Reload the policy; concurrent calls share one reload. Throws (and keeps the old policy) on error. */
  reload(): Promise<unknown> {
    if (!this.reloading) {
      this.reloading = this.doReload().finally(() => { this.reloading = undefined; });
    }
    return this.reloading;
  }

  private async doReload(): Promise<unknown> {
    const { log } = this.opts;
    const engine = this.current();
    if (!engine.file) return { reloaded: false, reason: 'running on the embedded defaults: nothing to reload' };
    this.notifier?.send(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}`);
    try {
      const next = await engine.reload();
      for (const w of next.warnings) log.warn('policy.warning', { finding: formatFinding(w) });
      log.info('policy.reloaded', { file: engine.file, scopes: next.compiled.scopes.length });
      return { reloaded: true, warnings: next.warnings.map(formatFinding) };
    } catch (e) {
      const { code, message } = describeError(e);
      log.error('policy.refused', { file: engine.file, code, error: message.split('\n').join(' | '), kept: 'previous policy' });
      throw e;
    } finally {
      this.notifier?.send('READY=1');
    }
  }

  async stop(): Promise<void> {
    this.notifier?.send('STOPPING=1');
    if (this.watchdog) clearInterval(this.watchdog);
    await this.admin?.stop();
    await this.engine?.stop();
    this.notifier?.close();
    this.opts.log.info('daemon.stopped');
  }
}

function monotonicUsec(): string {
  return String(process.hrtime.bigint() / 1000n);
}
