/**
 * The Store contract: a small, etcd-like key/value space shared by every part of Portico that keeps
 * state (config pushed through the api, certificates, VIP addresses, IPAM leases, instance heartbeats).
 *
 * Two implementations honour it exactly: `embedded` (one machine: memory + fsync'd journal) and `redis`
 * (many machines). One conformance suite (test/store/conformance.ts) runs against both.
 *
 * Revisions: the store has one global revision counter. Every successful write (put, cas, delete, and the
 * deletion of a key whose lease expired) increments it by exactly one, and the entry written carries that
 * revision as its `revision`. Watchers see writes in revision order with no gaps; a watcher that cannot be
 * given every event (it fell behind a bounded buffer, or the connection to Redis was lost) receives one
 * `resync` event with the full current contents of its prefix instead, and continues from there.
 */

export interface Entry {
  key: string;
  value: Buffer;
  /** Store revision of the write that produced this value (etcd's mod_revision). Always ≥ 1. */
  revision: number;
  /** Lease this key is attached to; the key is deleted when the lease expires or is revoked. */
  lease?: string;
}

export interface WriteOptions {
  /**
   * When the write is acknowledged. `fsync` (the default): once it is on stable storage. `written`: once
   * the operating system has it (it survives the process being killed, not the machine losing power),
   * with the fsync following at once: host-local's guarantee, for state that dies with the machine anyway
   * (container leases). Watchers and reads see a write at the same point it is acknowledged.
   * Redis applies its own `appendfsync` policy to every write and ignores this.
   */
  durability?: 'fsync' | 'written';
}

export interface PutOptions extends WriteOptions {
  /** Attach the key to a lease (from `grantLease`). Unknown or expired lease → StoreError LEASE_NOT_FOUND. */
  lease?: string;
}

export type WatchEvent =
  | { type: 'put'; key: string; entry: Entry; revision: number }
  | { type: 'delete'; key: string; revision: number; /** true when removed by lease expiry/revoke */ expired?: boolean }
  /** Replaces everything the watcher knew under its prefix: `entries` is the full current list, at `revision`. */
  | { type: 'resync'; entries: Entry[]; revision: number };

export interface Watch {
  /** Stop delivering events. Idempotent. */
  close(): void;
}

export interface Lease {
  id: string;
  ttlMs: number;
}

/** Whether the store can be reached now (an embedded store always can, until closed). */
export interface StoreHealth {
  ok: boolean;
  /** Where the store is, for operators (a Redis URL never shows its password). */
  target: string;
  /** ISO time the connection was lost, while it is lost. */
  since?: string;
  /** The last connection error while lost. */
  error?: string;
}

export interface Store {
  /** `embedded` or `redis`, for logs and the api. */
  readonly kind: string;

  /**
   * Reachability now, for readiness and the cluster view. Cheap and synchronous: it reports what the
   * connection last said, it does not ask the server.
   */
  health(): StoreHealth;

  get(key: string): Promise<Entry | undefined>;

  /** Unconditional write. Resolves after the write is durable (embedded: fsync'd; redis: acknowledged). */
  put(key: string, value: Buffer | string, opts?: PutOptions): Promise<Entry>;

  /**
   * Compare-and-set: write only if the key's current revision equals `expectedRevision`
   * (0 = the key must not exist). Resolves the new entry on success, `null` when the revision did not match.
   */
  cas(key: string, expectedRevision: number, value: Buffer | string, opts?: PutOptions): Promise<Entry | null>;

  /**
   * Delete a key. With `expectedRevision`, only if it matches. Resolves true if a key was deleted.
   */
  delete(key: string, expectedRevision?: number, opts?: WriteOptions): Promise<boolean>;

  /** Every entry whose key starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<Entry[]>;

  /** Current store revision (0 for an empty, never-written store). */
  revision(): Promise<number>;

  /**
   * Watch a prefix. The first event is always a `resync` with the current contents (so a watcher never
   * needs a separate list), then `put`/`delete` in revision order. `onEvent` is called synchronously in
   * order; it must not throw (a throw is logged and swallowed).
   */
  watch(prefix: string, onEvent: (ev: WatchEvent) => void): Watch;

  /** Create a lease that expires `ttlMs` after its last renewal. */
  grantLease(ttlMs: number): Promise<Lease>;
  /** Renew a lease. Resolves false if it had already expired (its keys are gone). */
  keepAlive(id: string): Promise<boolean>;
  /** Revoke a lease now, deleting its keys. */
  revokeLease(id: string): Promise<void>;

  /** Flush, stop timers and watches, close files or connections. Further calls reject with STORE_CLOSED. */
  close(): Promise<void>;
}
