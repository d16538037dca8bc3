/**
 * The embedded store: one machine, zero setup. Everything lives in memory; every acknowledged write is
 * in an fsync'd journal under the data dir first.
 *
 * Its directory (created 0700) holds the journal, the snapshot of the last compaction, the LOCK and
 * the record of a clean close; files.ts lists them. The format of the journal and snapshot is in
 * frames.ts; what opening a directory recovers, truncates or refuses, and why, in recovery.ts; the LOCK
 * in dir-lock.ts. A clean close() writes CLOSED after the last fdatasync and then removes the LOCK; a
 * store that failed (a journal write or fdatasync error) records nothing and leaves its LOCK, so the
 * next open knows its last frame may have been cut short.
 *
 * Durability is also what readers see: memory is updated when a write is issued (so compare-and-set is
 * decided against the latest state), but nothing that depends on a not-yet-durable write leaves the
 * store before it is durable: write promises, reads (get/list/revision/failed cas) and watch events are
 * all released in journal order after the fdatasync that covers what they saw.
 */
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes } from '../../model/errors.js';
import { silentLogger, type Logger } from '../../telemetry/log.js';
import { StoreError, checkKey, checkRevision, checkTtl, leaseNotFound, storeClosed, toBuffer } from '../errors.js';
import type { Entry, Lease, PutOptions, Store, StoreHealth, Watch, WatchEvent, WriteOptions } from '../types.js';
import { acquireDirLock, type DirLock } from './dir-lock.js';
import { SNAPSHOT_FILE, SNAPSHOT_TMP, closeFd, createJournal, fdatasync, fsyncDir, journalFile, openFd, writeAll } from './files.js';
import { FrameBuilder, SNAPSHOT_FRAME_BYTES } from './frames.js';
import { recover, writeClosedRecord } from './recovery.js';
import type { LeaseState, State } from './state.js';

export interface EmbeddedStoreOptions {
  logger?: Logger;
  /** Compact when the journal is larger than this many bytes and more than twice the live data. Default 64 MiB. */
  compactAfterBytes?: number;
  /** How often lease deadlines are checked, in ms. A lease expires at most this late. Default 100 ms. */
  leaseCheckIntervalMs?: number;
  /** Events queued per watcher before it gets a single `resync` instead. Default 10,000. */
  watchQueueLimit?: number;
}

/** Introspection for tests, benchmarks and the api. */
export interface EmbeddedStoreStats {
  dir: string;
  revision: number;
  keys: number;
  leases: number;
  /** Compaction generation: the snapshot and journal file number. */
  generation: number;
  journalBytes: number;
  /** Frames (group commits, one fdatasync each) written since open. */
  frames: number;
  compactions: number;
}

const DEFAULT_COMPACT_AFTER = 64 * 1024 * 1024;
const DEFAULT_LEASE_CHECK_MS = 100;
const DEFAULT_WATCH_QUEUE = 10_000;

/**
 * Something released in journal order once everything issued before it is durable: a write's promise
 * (with its watch event), a read's promise, or a hook (a watcher's resync).
 */
interface CommitItem {
  resolve: ((value: unknown) => void) | null;
  reject: ((err: Error) => void) | null;
  value: unknown;
  event: WatchEvent | null;
  hook: (() => void) | null;
}

class Batch {
  readonly frame = new FrameBuilder();
  items: CommitItem[] = [];
  /** Some write in it wants fsync before its acknowledgement (the default); false: all are `written`. */
  strict = false;
  reset(): void {
    this.frame.reset();
    this.items.length = 0;
    this.strict = false;
  }
}

class EmbeddedWatch implements Watch {
  closed = false;
  /** Events up to this revision are covered by the resync this watcher was (or will be) given. */
  coveredThrough = 0;
  queue: (WatchEvent | undefined)[] = [];
  head = 0;
  drainScheduled = false;

  constructor(
    private readonly watchers: Set<EmbeddedWatch>,
    readonly prefix: string,
    readonly onEvent: (ev: WatchEvent) => void,
  ) {}

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.head = 0;
    this.watchers.delete(this);
  }
}

export class EmbeddedStore implements Store {
  readonly kind = 'embedded';

  private readonly watchers = new Set<EmbeddedWatch>();
  private pending = new Batch();
  private spare: Batch | null = new Batch();
  /** The batch being written and fsync'd, if any. */
  private inflight: Batch | null = null;
  private flushing = false;
  /** The fdatasync in progress, when it follows acknowledgements already given (`durability: 'written'`). */
  private syncing: Promise<void> | null = null;
  private flushScheduled = false;
  private readonly flushBound = () => void this.flush();
  private failure: StoreError | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout;
  private nextCompactCheck: number;
  private frames = 0;
  private compactions = 0;

  health(): StoreHealth {
    if (this.closed) return { ok: false, target: this.dir, error: 'store closed' };
    if (this.failure) return { ok: false, target: this.dir, error: this.failure.message };
    return { ok: true, target: this.dir };
  }

  private constructor(
    private readonly dir: string,
    private readonly state: State,
    private fd: number,
    private gen: number,
    private journalBytes: number,
    private readonly lock: DirLock,
    private readonly log: Logger,
    private readonly compactAfterBytes: number,
    private readonly watchQueueLimit: number,
    leaseCheckIntervalMs: number,
  ) {
    this.nextCompactCheck = compactAfterBytes;
    this.timer = setInterval(() => this.expireDue(Date.now()), leaseCheckIntervalMs);
    this.timer.unref();
  }

  /** Open (creating if needed) the store in `dir`, recovering from its snapshot and journal. */
  static async open(dir: string, opts: EmbeddedStoreOptions = {}): Promise<EmbeddedStore> {
    const log = (opts.logger ?? silentLogger).child({ component: 'store', store: 'embedded' });
    const compactAfterBytes = opts.compactAfterBytes ?? DEFAULT_COMPACT_AFTER;
    const leaseCheckIntervalMs = opts.leaseCheckIntervalMs ?? DEFAULT_LEASE_CHECK_MS;
    const watchQueueLimit = opts.watchQueueLimit ?? DEFAULT_WATCH_QUEUE;
    if (!(compactAfterBytes > 0)) throw new RangeError(`compactAfterBytes must be > 0, got ${compactAfterBytes}`);
    if (!(leaseCheckIntervalMs > 0)) throw new RangeError(`leaseCheckIntervalMs must be > 0, got ${leaseCheckIntervalMs}`);
    if (!(watchQueueLimit >= 1)) throw new RangeError(`watchQueueLimit must be ≥ 1, got ${watchQueueLimit}`);

    dir = path.resolve(dir);
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const lock = await acquireDirLock(dir, { logger: log });
    let fd = -1;
    let store: EmbeddedStore | undefined;
    try {
      const recovered = await recover(dir, { logger: log, previous: lock.previous });
      const { state, generation: gen } = recovered;
      let bytes = recovered.journalBytes;
      const journalPath = path.join(dir, journalFile(gen));
      if (bytes === 0) {
        ({ fd, bytes } = await createJournal(journalPath, gen));
        await fsyncDir(dir);
      } else {
        fd = await openFd(journalPath, 'a');
      }
      store = new EmbeddedStore(dir, state, fd, gen, bytes, lock, log, compactAfterBytes, watchQueueLimit, leaseCheckIntervalMs);
      // Leases whose deadline passed while we were down expire now, as ordinary journaled deletes.
      store.expireDue(Date.now());
      await store.durable(undefined);
      log.info(
        { dir, revision: state.revision, keys: state.data.size, leases: state.leases.size, generation: gen, journalBytes: bytes },
        'embedded store opened',
      );
      return store;
    } catch (err) {
      if (store) clearInterval(store.timer);
      if (fd >= 0) await closeFd(fd).catch(() => undefined);
      // After a failed journal write the LOCK stays, as the record that a frame may have been cut short.
      await lock.release(!store?.failure);
      throw err;
    }
  }

  stats(): EmbeddedStoreStats {
    return {
      dir: this.dir,
      revision: this.state.revision,
      keys: this.state.data.size,
      leases: this.state.leases.size,
      generation: this.gen,
      journalBytes: this.journalBytes,
      frames: this.frames,
      compactions: this.compactions,
    };
  }

  // ----- reads

  async get(key: string): Promise<Entry | undefined> {
    this.assertUsable();
    checkKey(key);
    return this.durable(this.state.data.get(key));
  }

  async list(prefix: string): Promise<Entry[]> {
    this.assertUsable();
    if (typeof prefix !== 'string') throw new TypeError('list prefix must be a string');
    return this.durable(this.state.list(prefix));
  }

  async revision(): Promise<number> {
    this.assertUsable();
    return this.durable(this.state.revision);
  }

  // ----- writes

  async put(key: string, value: Buffer | string, opts?: PutOptions): Promise<Entry> {
    this.assertUsable();
    checkKey(key);
    const lease = this.checkLease(opts);
    const entry = this.applyPut(key, toBuffer(value), lease);
    return this.commit(entry, this.watchers.size ? { type: 'put', key, entry, revision: entry.revision } : null, opts);
  }

  async cas(key: string, expectedRevision: number, value: Buffer | string, opts?: PutOptions): Promise<Entry | null> {
    this.assertUsable();
    checkKey(key);
    checkRevision(expectedRevision, 'expectedRevision');
    if ((this.state.data.get(key)?.revision ?? 0) !== expectedRevision) return this.durable(null);
    const lease = this.checkLease(opts);
    const entry = this.applyPut(key, toBuffer(value), lease);
    return this.commit(entry, this.watchers.size ? { type: 'put', key, entry, revision: entry.revision } : null, opts);
  }

  async delete(key: string, expectedRevision?: number, opts?: WriteOptions): Promise<boolean> {
    this.assertUsable();
    checkKey(key);
    if (expectedRevision !== undefined) checkRevision(expectedRevision, 'expectedRevision');
    const cur = this.state.data.get(key);
    if (!cur || (expectedRevision !== undefined && cur.revision !== expectedRevision)) return this.durable(false);
    return this.commit(true, this.applyDelete(key, false), opts);
  }

  // ----- leases

  async grantLease(ttlMs: number): Promise<Lease> {
    this.assertUsable();
    checkTtl(ttlMs);
    let id: string;
    do id = randomBytes(8).toString('hex');
    while (this.state.leases.has(id));
    const deadline = Date.now() + ttlMs;
    this.state.setLease(id, ttlMs, deadline);
    this.pending.frame.lease(id, ttlMs, deadline);
    return this.commit({ id, ttlMs }, null);
  }

  async keepAlive(id: string): Promise<boolean> {
    this.assertUsable();
    const lease = this.state.leases.get(id);
    if (!lease) return this.durable(false);
    const now = Date.now();
    if (lease.deadline <= now) {
      // Due but the timer has not run yet: expire it now, so `false` always means "its keys are gone".
      this.endLease(lease);
      return this.commit(false, null);
    }
    lease.deadline = now + lease.ttlMs;
    this.pending.frame.lease(id, lease.ttlMs, lease.deadline);
    return this.commit(true, null);
  }

  async revokeLease(id: string): Promise<void> {
    this.assertUsable();
    const lease = this.state.leases.get(id);
    if (!lease) return this.durable(undefined);
    this.endLease(lease);
    return this.commit(undefined, null);
  }

  // ----- watch

  watch(prefix: string, onEvent: (ev: WatchEvent) => void): Watch {
    this.assertUsable();
    if (typeof prefix !== 'string') throw new TypeError('watch prefix must be a string');
    const w = new EmbeddedWatch(this.watchers, prefix, onEvent);
    this.watchers.add(w);
    this.resync(w);
    return w;
  }

  async close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    clearInterval(this.timer);
    this.closing = (async () => {
      // Writes issued before close still complete (or fail) normally.
      if (!this.failure && (this.pending.items.length > 0 || this.inflight)) {
        await new Promise<void>((resolve) =>
          this.enqueueAfterWrites({ resolve: () => resolve(), reject: () => resolve(), value: undefined, event: null, hook: null }),
        );
      }
      await this.syncing?.catch(() => undefined);
      for (const w of [...this.watchers]) w.close();
      // Every write is durable now: record that (recovery then knows the journal was acknowledged whole).
      // After a failure, nothing is recorded and the LOCK stays: the last frame may have been cut short.
      const clean = !this.failure;
      if (clean) {
        await writeClosedRecord(this.dir, { generation: this.gen, journalBytes: this.journalBytes, revision: this.state.revision }).catch(
          (err) =>
            this.log.warn({ err }, 'could not record the clean close; the next open will not know the journal was acknowledged whole'),
        );
      }
      await closeFd(this.fd).catch((err) => this.log.warn({ err }, 'closing the journal failed'));
      await this.lock.release(clean);
      this.log.info({ dir: this.dir, revision: this.state.revision }, 'embedded store closed');
    })();
    return this.closing;
  }

  // ----- internals: state changes (memory + journal record, in the same synchronous step)

  private assertUsable(): void {
    if (this.closed) throw storeClosed(this.kind);
    if (this.failure) throw this.failure;
  }

  private checkLease(opts: PutOptions | undefined): string | undefined {
    const lease = opts?.lease;
    if (lease === undefined) return undefined;
    const l = this.state.leases.get(lease);
    // A lease past its deadline is expired even if the timer has not removed it yet.
    if (!l || l.deadline <= Date.now()) throw leaseNotFound(lease);
    return lease;
  }

  private applyPut(key: string, value: Buffer, lease: string | undefined): Entry {
    const revision = ++this.state.revision;
    const entry: Entry = lease === undefined ? { key, value, revision } : { key, value, revision, lease };
    this.state.put(entry);
    this.pending.frame.put(revision, key, lease, value);
    return entry;
  }

  /** Returns the watch event to publish when the delete is durable (null when nobody watches). */
  private applyDelete(key: string, expired: boolean): WatchEvent | null {
    const revision = ++this.state.revision;
    this.state.remove(key);
    this.pending.frame.del(revision, key, expired);
    if (!this.watchers.size) return null;
    return expired ? { type: 'delete', key, revision, expired: true } : { type: 'delete', key, revision };
  }

  /** Delete a lease's keys (each an ordinary write, `expired: true`), then the lease itself. */
  private endLease(lease: LeaseState): void {
    this.state.leases.delete(lease.id);
    for (const key of [...lease.keys].sort()) {
      const event = this.applyDelete(key, true);
      this.pending.items.push({ resolve: null, reject: null, value: undefined, event, hook: null });
    }
    this.pending.frame.leaseEnd(lease.id);
    this.kick();
  }

  private expireDue(now: number): void {
    if (this.closed || this.failure) return;
    for (const lease of this.state.leases.values()) {
      if (lease.deadline <= now) {
        this.log.debug({ lease: lease.id, keys: lease.keys.size, lateMs: now - lease.deadline }, 'lease expired');
        this.endLease(lease);
      }
    }
  }

  // ----- internals: group commit

  private commit<T>(value: T, event: WatchEvent | null, opts?: WriteOptions): Promise<T> {
    if (opts?.durability !== 'written') this.pending.strict = true;
    return new Promise<T>((resolve, reject) => {
      this.pending.items.push({ resolve: resolve as (v: unknown) => void, reject, value, event, hook: null });
      this.kick();
    });
  }

  /** Resolve with `value` once every write issued so far is durable (at once if none is outstanding). */
  private durable<T>(value: T): Promise<T> {
    if (this.pending.items.length === 0 && this.inflight === null) return Promise.resolve(value);
    return new Promise<T>((resolve, reject) => {
      this.enqueueAfterWrites({ resolve: resolve as (v: unknown) => void, reject, value, event: null, hook: null });
    });
  }

  /** Queue `item` behind every outstanding write; false when nothing is outstanding. */
  private enqueueAfterWrites(item: CommitItem): boolean {
    if (this.pending.items.length > 0) this.pending.items.push(item);
    else if (this.inflight) this.inflight.items.push(item);
    else return false;
    return true;
  }

  private kick(): void {
    if (this.flushing || this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate, not a microtask: the continuations of callers whose writes just committed run first
    // and add their next writes to this batch.
    setImmediate(this.flushBound);
  }

  /**
   * The group-commit loop: while writes are pending, take them all as one batch, write it as one frame
   * and fdatasync once (or, when due, compact: the snapshot then covers the batch), then release the
   * batch's items in order. Writes issued meanwhile wait for the next turn.
   */
  private async flush(): Promise<void> {
    this.flushScheduled = false;
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.items.length > 0 && !this.failure) {
        const batch = this.pending;
        this.pending = this.spare ?? new Batch();
        this.spare = null;
        this.inflight = batch;
        if (!batch.frame.empty) {
          if (this.compactionDue()) {
            await this.compact();
          } else {
            const frame = batch.frame.finish();
            await writeAll(this.fd, frame);
            this.journalBytes += frame.length;
            this.frames++;
            if (!batch.strict) {
              // Every write in it asked only to be written: acknowledge now, then make it durable before
              // the next batch (whose writes may want fsync, which then covers these too).
              this.inflight = null;
              this.release(batch.items);
              batch.items.length = 0;
            }
            this.syncing = fdatasync(this.fd);
            try {
              await this.syncing;
            } finally {
              this.syncing = null;
            }
          }
        }
        this.inflight = null;
        this.release(batch.items);
        batch.reset();
        this.spare = batch;
        if (this.pending.items.length > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.flushing = false;
    }
  }

  private release(items: CommitItem[]): void {
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (it.hook) it.hook();
      else {
        if (it.event && this.watchers.size) this.publish(it.event as Extract<WatchEvent, { key: string }>);
        if (it.resolve) it.resolve(it.value);
      }
    }
  }

  /**
   * A journal write or fdatasync failed. Memory now holds writes that may not be on disk and, after a
   * failed fsync, the kernel may have dropped the dirty pages, so retrying proves nothing. The only
   * honest state is failed: reject everything outstanding and every further call until the store is
   * reopened, which recovers from what actually reached the disk.
   */
  private fail(err: Error): void {
    const file = path.join(this.dir, journalFile(this.gen));
    this.failure = new StoreError(
      ErrorCodes.STORE_UNAVAILABLE,
      `embedded store journal ${file} could not be written (${err.message}); the store must be reopened`,
      { cause: err },
    );
    this.log.error({ err, file }, 'journal write failed; the embedded store refuses further operations until reopened');
    clearInterval(this.timer);
    for (const batch of [this.inflight, this.pending]) {
      for (const it of batch?.items ?? []) it.reject?.(this.failure);
    }
    this.inflight = null;
    this.pending = new Batch();
  }

  // ----- internals: compaction

  private compactionDue(): boolean {
    if (this.journalBytes < this.nextCompactCheck) return false;
    const live = this.state.liveBytes();
    if (this.journalBytes > 2 * live) return true;
    this.nextCompactCheck = Math.max(this.compactAfterBytes, 2 * live);
    return false;
  }

  /**
   * Write the whole state (including the in-flight batch, already applied to memory) as a new snapshot
   * generation, then switch to a fresh journal. Order: snapshot.tmp fsync'd → new empty journal
   * fsync'd → rename over snapshot.bin → fsync the dir. A crash before the rename leaves the old
   * generation intact (the batch was not acknowledged); after it, the new one is complete.
   */
  private async compact(): Promise<void> {
    const gen = this.gen + 1;
    // Captured synchronously: entries are immutable, so references are a consistent snapshot.
    const revision = this.state.revision;
    const entries = this.state.sortedKeys().map((k) => this.state.data.get(k)!);
    const leases = [...this.state.leases.values()].map((l) => ({ id: l.id, ttlMs: l.ttlMs, deadline: l.deadline }));
    const before = this.journalBytes;

    const tmp = path.join(this.dir, SNAPSHOT_TMP);
    const fh = await fsp.open(tmp, 'w', 0o600);
    let snapshotBytes = 0;
    try {
      const fb = new FrameBuilder(SNAPSHOT_FRAME_BYTES + 64 * 1024);
      const cut = async () => {
        const frame = fb.finish();
        for (let off = 0; off < frame.length;) off += (await fh.write(frame, off, frame.length - off)).bytesWritten;
        snapshotBytes += frame.length;
        fb.reset();
      };
      fb.snapshotHeader(gen, revision);
      for (const l of leases) fb.lease(l.id, l.ttlMs, l.deadline);
      for (const e of entries) {
        fb.put(e.revision, e.key, e.lease, e.value);
        if (fb.len >= SNAPSHOT_FRAME_BYTES) await cut();
      }
      fb.snapshotEnd(entries.length);
      await cut();
      await fh.sync();
    } finally {
      await fh.close();
    }
    const journal = await createJournal(path.join(this.dir, journalFile(gen)), gen);
    try {
      await fsp.rename(tmp, path.join(this.dir, SNAPSHOT_FILE));
      await fsyncDir(this.dir);
    } catch (err) {
      await closeFd(journal.fd).catch(() => undefined);
      throw err;
    }
    const oldFd = this.fd;
    const oldJournal = path.join(this.dir, journalFile(this.gen));
    this.fd = journal.fd;
    this.gen = gen;
    this.journalBytes = journal.bytes;
    this.nextCompactCheck = this.compactAfterBytes;
    this.compactions++;
    await closeFd(oldFd).catch(() => undefined);
    // Recovery ignores journals of other generations, so a failure here costs only disk space.
    await fsp.rm(oldJournal, { force: true }).catch((err) => this.log.warn({ err, file: oldJournal }, 'could not remove the old journal'));
    this.log.info(
      { generation: gen, revision, keys: entries.length, journalBytesBefore: before, snapshotBytes },
      'store journal compacted',
    );
  }

  // ----- internals: watch delivery

  /** Give `w` a resync of its prefix as of now, delivered once everything it reflects is durable. */
  private resync(w: EmbeddedWatch): void {
    w.queue = [];
    w.head = 0;
    const entries = this.state.list(w.prefix);
    const revision = this.state.revision;
    w.coveredThrough = revision;
    const hook = () => {
      if (w.closed) return;
      this.enqueue(w, { type: 'resync', entries, revision });
    };
    if (!this.enqueueAfterWrites({ resolve: null, reject: null, value: undefined, event: null, hook })) queueMicrotask(hook);
  }

  private publish(ev: Extract<WatchEvent, { key: string }>): void {
    for (const w of this.watchers) {
      if (ev.revision <= w.coveredThrough || !ev.key.startsWith(w.prefix)) continue;
      if (w.queue.length - w.head >= this.watchQueueLimit) {
        this.log.warn(
          { prefix: w.prefix, limit: this.watchQueueLimit, revision: ev.revision },
          'store watcher fell behind; replacing its queued events with a resync',
        );
        this.resync(w);
      } else {
        this.enqueue(w, ev);
      }
    }
  }

  private enqueue(w: EmbeddedWatch, ev: WatchEvent): void {
    w.queue.push(ev);
    if (!w.drainScheduled) {
      w.drainScheduled = true;
      queueMicrotask(() => this.drain(w));
    }
  }

  private drain(w: EmbeddedWatch): void {
    w.drainScheduled = false;
    const q = w.queue;
    while (w.head < q.length && !w.closed && w.queue === q) {
      const ev = q[w.head]!;
      q[w.head++] = undefined;
      try {
        w.onEvent(ev);
      } catch (err) {
        this.log.error({ err, prefix: w.prefix }, 'store watcher threw; event dropped for that watcher');
      }
    }
    if (w.queue === q && w.head === q.length) {
      q.length = 0;
      w.head = 0;
    }
  }
}
