/**
 * Instances sharing one store say who they are and what they serve, so `GET /v1/instances` on any of them
 * lists them all and points at the one that lags.
 *
 * Each instance keeps one key, `portico/instances/<id>`, attached to a store lease it renews: an
 * instance that dies or loses the store disappears from the list when its lease expires (15 s by
 * default); one that stops cleanly revokes its lease and leaves at once. The record is rewritten when
 * the instance applies a new table (so the view converges in a fraction of a second: at most one write
 * per `minGapMs`, so a cluster publishing a hundred table versions a second writes the store a few times a
 * second, not a hundred) and on every renewal (so `updatedAt` shows it is alive).
 *
 * "Stale" compares what is comparable across instances: table versions are each instance's own counter,
 * but the shared config has one store revision, so an instance that serves an older revision of it than
 * the store holds is stale. The table's content hash is shown too: instances whose files differ have
 * different hashes on purpose, so a differing hash is reported, not flagged.
 */
import os from 'node:os';
import type { Store } from '../store/types.js';
import { silentLogger, type Logger } from '../telemetry/log.js';

export const INSTANCES_PREFIX = 'portico/instances/';

/** What an instance says about itself (the parts the appliance fills in). */
export interface InstanceState {
  /** `http://host:port` of its admin api. */
  api: string;
  table: { version: number; hash: string };
  /** Store revision of the shared config its data planes serve (0: none). */
  sharedRevision: number;
  ready: boolean;
  degraded: boolean;
  reasons: string[];
  planes: Array<{ name: string; state: string }>;
}

export interface InstanceRecord extends InstanceState {
  id: string;
  hostname: string;
  pid: number;
  startedAt: string;
  updatedAt: string;
}

export interface InstanceView extends InstanceRecord {
  /** True when it serves an older shared config than the store holds, or has not reported for too long. */
  stale: boolean;
  staleReason?: string;
  /** ms since its last report. */
  ageMs: number;
}

export interface InstancesView {
  store: { kind: string; target: string; ok: boolean };
  /** Store revision of the shared config (0 when none was pushed). */
  sharedRevision: number;
  instances: InstanceView[];
  /** Distinct table hashes served, with the instances serving each. */
  tableHashes: Record<string, string[]>;
  stale: string[];
}

export interface InstanceRegistryOptions {
  store: Store;
  id: string;
  describe: () => InstanceState;
  logger?: Logger;
  /** Lease TTL. Default 15 s. */
  ttlMs?: number;
  /** Renewal and rewrite interval. Default ttl / 3. */
  intervalMs?: number;
  /** Least time between the end of one write and the start of the next, ms. Default 250. */
  minGapMs?: number;
}

export class InstanceRegistry {
  readonly id: string;
  private readonly log: Logger;
  private readonly ttlMs: number;
  private readonly intervalMs: number;
  private readonly minGapMs: number;
  /** When the last write ended (performance.now()); the wait before the next, cut short by stop(). */
  private lastWriteEnd = -Infinity;
  private gap: { timer: NodeJS.Timeout; done: () => void } | undefined;
  private readonly startedAt = new Date().toISOString();
  private leaseId: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private warned = false;

  constructor(private readonly opts: InstanceRegistryOptions) {
    this.id = opts.id;
    this.log = (opts.logger ?? silentLogger).child({ component: 'instances', instance: opts.id });
    this.ttlMs = opts.ttlMs ?? 15_000;
    this.intervalMs = opts.intervalMs ?? Math.floor(this.ttlMs / 3);
    this.minGapMs = opts.minGapMs ?? 250;
  }

  get key(): string {
    return INSTANCES_PREFIX + this.id;
  }

  /** Write the first record (a store error is logged; the timer keeps trying) and start renewing. */
  async start(): Promise<void> {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
    await this.publish();
  }

  /** Publish the state now (after a table is applied). Coalesces: at most one write in flight, one queued. */
  publish(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.writing) {
      this.again = true;
      return this.writing;
    }
    this.writing = (async () => {
      do {
        await this.waitGap();
        if (this.stopped) break;
        this.again = false;
        await this.write();
        this.lastWriteEnd = performance.now();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.writing = undefined;
    });
    return this.writing;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.gap) {
      clearTimeout(this.gap.timer);
      this.gap.done();
    }
    await this.writing?.catch(() => undefined);
    if (this.leaseId) await this.opts.store.revokeLease(this.leaseId).catch(() => undefined);
    this.leaseId = undefined;
  }

  /** Until `minGapMs` after the last write (at once if that is past). */
  private waitGap(): Promise<void> {
    const wait = this.lastWriteEnd + this.minGapMs - performance.now();
    if (wait <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.gap = undefined;
        resolve();
      };
      // Not unref'd: a table served just before the process is left alone must still be written.
      const timer = setTimeout(done, wait);
      this.gap = { timer, done };
    });
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    if (this.leaseId) {
      const alive = await this.opts.store.keepAlive(this.leaseId).catch(() => undefined);
      if (alive === false) this.leaseId = undefined; // expired while we were cut off: take a new one
    }
    await this.publish();
  }

  private async write(): Promise<void> {
    const { store } = this.opts;
    try {
      if (!this.leaseId) this.leaseId = (await store.grantLease(this.ttlMs)).id;
      const rec: InstanceRecord = {
        id: this.id,
        hostname: os.hostname(),
        pid: process.pid,
        startedAt: this.startedAt,
        updatedAt: new Date().toISOString(),
        ...this.opts.describe(),
      };
      try {
        await store.put(this.key, JSON.stringify(rec), { lease: this.leaseId });
      } catch (err) {
        if ((err as { code?: string }).code === 'PORTICO_STORE_LEASE_NOT_FOUND') {
          this.leaseId = (await store.grantLease(this.ttlMs)).id;
          await store.put(this.key, JSON.stringify(rec), { lease: this.leaseId });
        } else {
          throw err;
        }
      }
      if (this.warned) this.log.info('instance record published again');
      this.warned = false;
    } catch (err) {
      if (!this.warned) this.log.warn({ err: (err as Error).message }, 'instance record not published; retrying on the next renewal');
      this.warned = true;
    }
  }
}

/** Every instance in the store, flagged. `sharedKey` is the shared config's key (its revision is the reference). */
export async function instancesView(store: Store, sharedKey: string, now = Date.now(), staleAfterMs = 20_000): Promise<InstancesView> {
  const [entries, shared] = await Promise.all([store.list(INSTANCES_PREFIX), store.get(sharedKey)]);
  const sharedRevision = shared?.revision ?? 0;
  const instances: InstanceView[] = [];
  const tableHashes: Record<string, string[]> = {};
  for (const e of entries) {
    let rec: InstanceRecord;
    try {
      rec = JSON.parse(e.value.toString('utf8')) as InstanceRecord;
    } catch {
      continue;
    }
    const ageMs = Math.max(0, now - Date.parse(rec.updatedAt));
    const view: InstanceView = { ...rec, ageMs, stale: false };
    if (rec.sharedRevision !== sharedRevision) {
      view.stale = true;
      view.staleReason = `serves shared config revision ${rec.sharedRevision}; the store holds ${sharedRevision}`;
    } else if (ageMs > staleAfterMs) {
      view.stale = true;
      view.staleReason = `no report for ${Math.round(ageMs / 1000)} s`;
    }
    instances.push(view);
    (tableHashes[rec.table.hash] ??= []).push(rec.id);
  }
  const health = store.health();
  return {
    store: { kind: store.kind, target: health.target, ok: health.ok },
    sharedRevision,
    instances,
    tableHashes,
    stale: instances.filter((i) => i.stale).map((i) => i.id),
  };
}
