/**
 * The kernel responders the daemon serves besides the keyring helper's `upcall` op: one
 * supervisor that follows every network namespace and gives each its rpc_pipefs and nfsd
 * responders, and the NFSv4 client identifiers (uevents + persisted state).
 * `nsidmapd --serve` chooses which (default: all); what this kernel lacks is picked up when it
 * appears (a responder waits for its files) and costs a scan every few seconds until then.
 */
import { ClientIdStore } from '../cache/clientid.js';
import { NsidmapError } from '../errors.js';
import type { Engine } from '../resolver/engine.js';
import { NfsdResponder } from '../responders/nfsd/listener.js';
import { PipefsResponder } from '../responders/pipefs/listener.js';
import type { Responder } from '../responders/responder.js';
import { NamespaceSupervisor, type NamespaceWatcher } from '../responders/supervisor.js';
import { ClientIdResponder } from '../responders/uevent/clientid.js';
import type { ClientIdAdmin } from '../responders/uevent/clientid.js';

export const SERVABLE = ['pipefs', 'nfsd', 'clientid'] as const;
export type Servable = (typeof SERVABLE)[number];

/** `--serve pipefs,nfsd` → the set; `all` and `none` as words. */
export function parseServe(text: string): ReadonlySet<Servable> {
  if (text === 'all') return new Set(SERVABLE);
  if (text === 'none' || text === '') return new Set();
  const out = new Set<Servable>();
  for (const w of text.split(',').map((x) => x.trim())) {
    if (!(SERVABLE as readonly string[]).includes(w)) {
      throw new NsidmapError('NSIDMAP_EUSAGE', `--serve: "${w}" is not one of ${SERVABLE.join(', ')}, all, none`);
    }
    out.add(w as Servable);
  }
  return out;
}

export interface ResponderSet {
  readonly responders: readonly Responder[];
  readonly clientIds?: ClientIdAdmin;
  /** after the responders stopped */
  close(): void;
}

/** A responder for an interface that is not served: the supervisor still finds its files. */
class Disabled implements Responder {
  constructor(readonly name: string) {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  status() {
    return { name: this.name, detail: [{ served: false }] };
  }
}

export function buildResponders(engine: Engine, serve: ReadonlySet<Servable>): ResponderSet {
  if (serve.size === 0) return { responders: [], close: () => {} };
  const watchers: NamespaceWatcher[] = [];
  let store: ClientIdStore | undefined;
  let clientIds: ClientIdResponder | undefined;
  if (serve.has('clientid')) {
    // the same SQLite file as the cache (its own connection): identifiers survive restarts
    store = ClientIdStore.open(engine.cachePath);
    clientIds = new ClientIdResponder({ store, policy: () => engine.policy.config.clientid });
    watchers.push(clientIds);
  }
  const supervisor = new NamespaceSupervisor({
    factories: {
      pipefs: (root, ctx) => (serve.has('pipefs') ? new PipefsResponder(root, ctx) : new Disabled(`pipefs:${root}`)),
      nfsd: (dir, ctx) => (serve.has('nfsd') ? new NfsdResponder(dir, ctx) : new Disabled(`nfsd:${dir}`)),
    },
    watchers,
  });
  return { responders: [supervisor], clientIds, close: () => store?.close() };
}
