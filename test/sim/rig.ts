/**
 * What the responder rigs of test/integration/pipefs.test.ts and nfsd.test.ts share: a temp dir
 * for one test file's simulated kernels, the directory and host policy they serve, a rig (a
 * simulated kernel, the responder under test and the resolver it asks) started and stopped the
 * same way, and the value of a result the test expects to be an answer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import type { Responder } from '../../src/responders/responder.js';
import type { PolicyInput, TestEnv } from './env.js';

type Provider = NonNullable<PolicyInput['providers']>[string];
type Scope = NonNullable<PolicyInput['scopes']>[number];

export interface WorkDir {
  readonly path: string;
  /** a fresh path under the dir: `<stem><n>`, n counting up from 0 */
  next(stem: string): string;
}

/** A temp dir made now and removed after the calling test file's tests. */
export function workDir(prefix: string): WorkDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(path, { recursive: true, force: true }));
  let n = 0;
  return { path, next: (stem) => join(path, `${stem}${n++}`) };
}

/** The users and groups the responder rigs serve (as the VM test's server side has them). */
export const DIRECTORY = {
  kind: 'static' as const,
  users: { root: 0, alice: 2001, bob: 2002, carol: 2003, nobody: 65534 },
  groups: { root: 0, staff2: 3001, bob: 2002, carol: 2003, nogroup: 65534 },
};

/** A policy of one scope, `host`, asking one provider, `dir`; `scope` adds to that scope. */
export function hostPolicy(domain: string, dir: Provider = DIRECTORY, scope: Partial<Scope> = {}): PolicyInput {
  return { domain, providers: { dir }, scopes: [{ name: 'host', providers: ['dir'], ...scope }] };
}

/** A simulated kernel, the responder under test on it, and the TestEnv whose resolver it asks. */
export interface SimRig<S, R> {
  readonly sim: S;
  readonly responder: R;
  readonly t: TestEnv;
  stop(): Promise<void>;
}

/** Starts `responder` with `t`'s env; the rig's stop() stops it. `extra` goes into the rig as is. */
export async function startRig<S, R extends Pick<Responder, 'start' | 'stop'>, X extends object>(sim: S, responder: R, t: TestEnv, extra: X): Promise<SimRig<S, R> & X> {
  await responder.start(t.env);
  return { sim, responder, t, ...extra, stop: () => responder.stop() };
}

/** Runs `body` on the rig once it has started, and stops the rig after, whatever `body` did. */
export async function withRig<R extends { stop(): Promise<void> }>(started: Promise<R>, body: (r: R) => Promise<void>): Promise<void> {
  const r = await started;
  try {
    await body(r);
  } finally {
    await r.stop();
  }
}

/** The value of a simulated kernel's result that must be of kind `kind` (else the test fails, showing the result). */
export function valueOf(kind: string): (r: { readonly kind: string; readonly value?: number | string }) => number | string {
  return (r) => {
    assert.equal(r.kind, kind, JSON.stringify(r));
    return r.kind === kind && r.value !== undefined ? r.value : -1;
  };
}
