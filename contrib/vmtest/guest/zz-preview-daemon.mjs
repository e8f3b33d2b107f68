// TEMPORARY experiment (not part of the harness): nsidmapd with the namespace supervisor wired in,
// as the daemon will be, to try the pipefs/nfsd responders against the real kernel.
const root = process.env.ROOT;
const { Daemon } = await import(`${root}/dist/src/daemon/daemon.js`);
const { NamespaceSupervisor } = await import(`${root}/dist/src/responders/supervisor.js`);
const { NfsdResponder } = await import(`${root}/dist/src/responders/nfsd/listener.js`);
const { PipefsResponder } = await import(`${root}/dist/src/responders/pipefs/listener.js`);
const { createLogger } = await import(`${root}/dist/src/log.js`);
const log = createLogger({ level: 'debug' });
const sup = new NamespaceSupervisor({ factories: {
  pipefs: (mountRoot, ctx) => new PipefsResponder(mountRoot, ctx),
  nfsd: (dir, ctx) => new NfsdResponder(dir, ctx),
} });
const d = new Daemon({ policy: '/etc/nsidmap/policy.yaml', policyRequired: true, defaultSocket: '/run/nsidmap/admin.sock', logLevelExplicit: true, cache: '/var/cache/nsidmap/cache.sqlite', log, responders: [sup] });
process.on('SIGHUP', () => { d.reload().catch(() => {}); });
await d.start();
