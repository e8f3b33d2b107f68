/**
 * The source (provider) contract. A source is a descriptor with optional methods — the chain
 * calls only what a source has (as libnfsidmap's trans_func table). Every method returns
 * `undefined` for "not mine / not found" (the chain tries the next source) and throws for a fault
 * (the chain stops: a fault must never be papered over by a later source giving another id).
 *
 * Ids here are in the source's (directory's) own id space; the resolver translates them.
 * Names are local names (no `@domain`); the resolver qualifies and strips domains.
 */
import type { Entity, Sid } from '../types.js';

export type MaybePromise<T> = T | Promise<T>;

/**
 * What came with a name besides its local part: the (lower-case) domain of the NFSv4 name the
 * kernel sent, already accepted by the scope. A directory that stores whole NFSv4 names (umich
 * `NFSv4Name`) matches `name@domain` exactly; every other source ignores it.
 */
export interface NameHint {
  readonly domain?: string;
}

/** What a source knows about one user or group. */
export interface SourceEntry {
  readonly id: number;
  /** local name (no domain) */
  readonly name?: string;
  readonly sid?: Sid;
}

export interface SourceHealth {
  readonly state: 'up' | 'degraded' | 'down';
  readonly detail?: string;
}

/**
 * Figures a pooled source reports for metrics (`idmapctl stats`, Prometheus), read when asked —
 * never counted by the resolver. Every field is optional: a source reports what it has.
 */
export interface SourceMetrics {
  /** connections open and usable, and how many the pool keeps */
  readonly connections?: number;
  readonly connectionsMax?: number;
  /** requests on the wire now, and waiting for a free slot */
  readonly inFlight?: number;
  readonly queued?: number;
  /** since start: times a server was taken out of service (the next in order serves, if any) */
  readonly failovers?: number;
  /** since start: requests refused at once because the pool and its queue were full */
  readonly rejected?: number;
  /** since start: requests that ran out of time */
  readonly timeouts?: number;
}

export interface Source {
  /** instance name from the policy (`providers: { <name>: … }`) */
  readonly name: string;
  /** kind: files | nss | static | sid | ldap */
  readonly kind: string;
  /** acquire connections, watchers. Optional. */
  start?(): Promise<void>;
  /** release in reverse order. Optional. */
  stop?(): Promise<void>;
  /** name → entry (answers name-to-uid / name-to-gid); `hint` for sources that store full NFSv4 names */
  byName?(entity: Entity, name: string, hint?: NameHint): MaybePromise<SourceEntry | undefined>;
  /** id → entry with `name` (answers uid-to-name / gid-to-name) */
  byId?(entity: Entity, id: number): MaybePromise<SourceEntry | undefined>;
  /** SID → entry (answers sid-to-uid / sid-to-gid) */
  bySid?(entity: Entity, sid: Sid): MaybePromise<SourceEntry | undefined>;
  /** id → entry with `sid` (answers uid-to-sid / gid-to-sid) */
  sidOf?(entity: Entity, id: number): MaybePromise<SourceEntry | undefined>;
  /** for `idmapctl status` */
  health?(): SourceHealth;
  /** for `idmapctl stats` and the metrics endpoint. Optional. */
  metrics?(): SourceMetrics;
}

/** A fault inside a source (directory down, file unreadable, …). Stops the chain. */
export class SourceFault extends Error {
  readonly source: string;
  constructor(source: string, message: string, options?: { cause?: unknown }) {
    super(`${source}: ${message}`, options);
    this.name = 'SourceFault';
    this.source = source;
  }
}

/**
 * Factory signature every source kind exports. `config` is the provider's validated policy
 * block (minus `kind`); `env` carries what a source may need from outside.
 */
export interface SourceEnv {
  /** base directory relative paths in the policy resolve against (the policy file's dir) */
  readonly baseDir: string;
  readonly log: import('../log.js').Logger;
}
