/**
 * Work that must happen once across every instance sharing a store (issuing a certificate, renewing it,
 * reclaiming what a dead instance left): a lock held under a store lease, with a **fencing token**.
 *
 * - The lock is a key created by compare-and-set on "must not exist", attached to a lease that the holder
 *   keeps alive. A holder that dies (or is cut off from the store) stops renewing; the lease expires, the
 *   key goes, and another instance may take the lock.
 * - A lease can expire while its holder still runs (a long GC pause, a partition): two holders then
 *   believe they hold the lock. The fencing token settles it, as Kleppmann's "How to do distributed
 *   locking" describes: the token is the store revision of the write that took the lock. Revisions only
 *   grow, so a later holder always has a larger token. Every write the work makes goes through
 *   `fencedPut`, which records the token beside the value and refuses to overwrite a value written under
 *   a larger one. The late holder's write is refused instead of clobbering the newer result.
 */
import type { Entry, Store } from './types.js';

export interface HeldLock {
  readonly key: string;
  /** Fencing token: the store revision of the lock's creation. */
  readonly token: number;
  readonly leaseId: string;
  /** Aborted when the lease could not be renewed: stop the work, its writes would be fenced anyway. */
  readonly signal: AbortSignal;
  /** Delete the lock (revoke its lease). Idempotent, never rejects. */
  release(): Promise<void>;
}

export interface LockOptions {
  /** Lease TTL, ms. The holder renews at a third of it. */
  ttlMs: number;
  /** Written into the lock's value, for operators looking at who holds it. */
  owner: string;
}

/**
 * Take the lock at `key`, or resolve null when another holder has it. Store errors reject (the caller
 * treats the store being unreachable like the lock being taken: try later).
 */
export async function tryLock(store: Store, key: string, opts: LockOptions): Promise<HeldLock | null> {
  const lease = await store.grantLease(opts.ttlMs);
  let entry: Entry | null;
  try {
    entry = await store.cas(key, 0, JSON.stringify({ owner: opts.owner, at: new Date().toISOString() }), { lease: lease.id });
  } catch (err) {
    await store.revokeLease(lease.id).catch(() => undefined);
    throw err;
  }
  if (!entry) {
    await store.revokeLease(lease.id).catch(() => undefined);
    return null;
  }
  const controller = new AbortController();
  let released = false;
  const renew = setInterval(
    () => {
      store.keepAlive(lease.id).then(
        (alive) => {
          if (!alive && !released) {
            clearInterval(renew);
            controller.abort(new Error(`lock ${key}: lease expired before it could be renewed`));
          }
        },
        () => undefined, // unreachable now; the next tick tries again, and the lease's TTL decides
      );
    },
    Math.max(10, Math.floor(opts.ttlMs / 3)),
  );
  renew.unref();
  return {
    key,
    token: entry.revision,
    leaseId: lease.id,
    signal: controller.signal,
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(renew);
      await store.revokeLease(lease.id).catch(() => undefined);
    },
  };
}

/** The field fencedPut adds to the JSON object it stores. */
export const FENCE_FIELD = 'fence';

export type FencedResult = { ok: true; entry: Entry } | { ok: false; fencedBy: number };

/**
 * Write `value` (a JSON object) at `key` with `fence: token`, unless the value there was written under a
 * larger token. Compare-and-set on the key's revision, retried while other writers race (bounded).
 */
export async function fencedPut(store: Store, key: string, token: number, value: Record<string, unknown>): Promise<FencedResult> {
  const text = JSON.stringify({ ...value, [FENCE_FIELD]: token });
  for (let round = 0; round < 16; round++) {
    const cur = await store.get(key);
    const curFence = cur ? fenceOf(cur.value) : 0;
    if (curFence > token) return { ok: false, fencedBy: curFence };
    const entry = await store.cas(key, cur?.revision ?? 0, text);
    if (entry) return { ok: true, entry };
  }
  throw new Error(`fencedPut ${key}: too many concurrent writers`);
}

/** The fencing token a stored value was written under (0 when none). */
export function fenceOf(value: Buffer): number {
  try {
    const v = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
    const f = v[FENCE_FIELD];
    return typeof f === 'number' && Number.isSafeInteger(f) ? f : 0;
  } catch {
    return 0;
  }
}
