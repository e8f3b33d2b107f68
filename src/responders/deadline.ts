/**
 * A kernel upcall must be answered even when its lookup hangs (an NSS module waiting on a dead
 * server): the pipe and nfsd responders race the resolver against a deadline, and the pipe
 * responder also against its own stop. What loses the race is dropped, never written.
 */

/** How long an upcall waits for the resolver before it is answered as for an error. */
export const RESOLVE_TIMEOUT_MS = 10_000;

export const TIMED_OUT = Symbol('timed out');
export const STOPPING = Symbol('stopping');

/**
 * `work`'s value; TIMED_OUT after `ms`; STOPPING when a function added to `stoppers` (one per
 * call, removed when it ends: racing one long-lived promise would keep every result alive) is
 * called. A rejection of `work` is the caller's, as from `await work`.
 */
export function within<T>(work: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT>;
export function within<T>(work: Promise<T>, ms: number, stoppers: Set<() => void>): Promise<T | typeof TIMED_OUT | typeof STOPPING>;
export async function within<T>(work: Promise<T>, ms: number, stoppers?: Set<() => void>): Promise<T | typeof TIMED_OUT | typeof STOPPING> {
  let timer: NodeJS.Timeout | undefined;
  let stop: (() => void) | undefined;
  const racers: Promise<T | typeof TIMED_OUT | typeof STOPPING>[] = [work, new Promise((done) => (timer = setTimeout(done, ms, TIMED_OUT)))];
  if (stoppers) {
    racers.push(new Promise((done) => (stop = () => done(STOPPING))));
    stoppers.add(stop!);
  }
  try {
    // race() handles a late rejection too: nothing is left unhandled
    return await Promise.race(racers);
  } finally {
    clearTimeout(timer);
    if (stop) stoppers!.delete(stop);
  }
}
