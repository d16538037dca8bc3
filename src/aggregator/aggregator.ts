/**
 * The aggregator: keeps every provider's knowledge merged (src/aggregator/merge.ts), publishes it
 * (debounced) as immutable, versioned RoutingTables, and hands each new table to its subscribers with what
 * changed since the one before.
 *
 * - A provider sends a whole snapshot (diffed against its last one) or a delta; either way only what
 *   changed is merged, and a new table shares everything else with the last one.
 * - An update that changes nothing is dropped at once; a publish whose content hashes the same as the
 *   current table publishes nothing (no new version).
 * - Debounce: a burst of updates within `debounceMs` gives one rebuild; a steady stream still gets a
 *   rebuild at least every `maxDelayMs`.
 * - History: the last `historySize` tables are kept for the api's versions and diffs.
 */
import type { Logger } from '../telemetry/log.js';
import { silentLogger } from '../telemetry/log.js';
import type { Registry } from '../telemetry/metrics.js';
import { metric, prom } from '../telemetry/metrics.js';
import type { RoutingTable, Snapshot, SnapshotDelta, TableChange } from '../model/types.js';
import { deepFreeze } from './build.js';
import { diffTables } from './diff.js';
import { TableHistory } from './history.js';
import { MergeState } from './merge.js';
import type { TableDiff, TableListener, TableVersionInfo } from './types.js';

export interface AggregatorOptions {
  /**
   * Quiet time before a publish, ms. Default 0: what changed in one turn of the event loop is published
   * together on the next (a publish costs what changed, so waiting longer only adds latency).
   */
  debounceMs?: number;
  /** A rebuild happens at most this long after the first pending update, however busy. Default 100. */
  maxDelayMs?: number;
  /** Tables kept for versions/diffs. Default 50. */
  historySize?: number;
  logger?: Logger;
  registry?: Registry;
}

export class Aggregator {
  private readonly merge = new MergeState();
  private readonly listeners = new Set<TableListener>();
  private readonly history: TableHistory;
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private readonly log: Logger;
  private table: RoutingTable;
  private timer: NodeJS.Timeout | undefined;
  private firstPendingAt = 0;
  private pending = false;
  private closed = false;
  private readonly metrics:
    | {
        version: prom.Gauge;
        builds: prom.Counter<'result'>;
        buildSeconds: prom.Histogram;
        conflicts: prom.Gauge;
        endpoints: prom.Gauge;
      }
    | undefined;

  constructor(opts: AggregatorOptions = {}) {
    this.debounceMs = opts.debounceMs ?? 0;
    this.maxDelayMs = opts.maxDelayMs ?? 100;
    this.history = new TableHistory(Math.max(1, opts.historySize ?? 50));
    this.log = (opts.logger ?? silentLogger).child({ component: 'aggregator' });
    this.table = deepFreeze({ ...this.merge.publish().content, version: 0, createdAt: new Date().toISOString() });
    this.history.push(this.table);
    const r = opts.registry;
    this.metrics = r && {
      version: metric(
        r,
        'portico_table_version',
        () => new prom.Gauge({ name: 'portico_table_version', help: 'Version of the routing table currently published', registers: [] }),
      ),
      builds: metric(
        r,
        'portico_table_builds_total',
        () =>
          new prom.Counter({
            name: 'portico_table_builds_total',
            help: 'Table rebuilds, by result (published: a new version; unchanged: same content)',
            labelNames: ['result'],
            registers: [],
          }),
      ),
      buildSeconds: metric(
        r,
        'portico_table_build_seconds',
        () =>
          new prom.Histogram({
            name: 'portico_table_build_seconds',
            help: 'Time to merge snapshots into a table',
            buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
            registers: [],
          }),
      ),
      conflicts: metric(
        r,
        'portico_table_conflicts',
        () => new prom.Gauge({ name: 'portico_table_conflicts', help: 'Conflicts reported in the current table', registers: [] }),
      ),
      endpoints: metric(
        r,
        'portico_table_endpoints',
        () => new prom.Gauge({ name: 'portico_table_endpoints', help: 'Endpoints in the current table', registers: [] }),
      ),
    };
  }

  /**
   * Record a provider's latest complete snapshot; only what differs from its last one is merged again. The
   * aggregator takes ownership: endpoints are taken over in place (not copied, for speed at 100,000
   * endpoints), and a service object sent again unchanged is recognised by identity: the provider must not
   * change what it sent.
   */
  update(provider: string, priority: number, snapshot: Snapshot): void {
    if (this.closed) return;
    if (this.guard(() => this.merge.replace(provider, priority, snapshot), provider)) this.schedule();
  }

  /** Record what changed in a provider's knowledge since what it sent last (same ownership rules). */
  change(provider: string, priority: number, delta: SnapshotDelta): void {
    if (this.closed) return;
    if (this.guard(() => this.merge.apply(provider, priority, delta), provider)) this.schedule();
  }

  /** Forget a provider (it stopped): its services and routes leave the next table. */
  remove(provider: string): void {
    if (this.closed) return;
    if (this.guard(() => this.merge.drop(provider), provider)) this.schedule();
  }

  current(): RoutingTable {
    return this.table;
  }

  /** Content hash of `provider`'s knowledge now (what a table built now lists in `sources`). */
  inputHash(provider: string): string | undefined {
    return this.merge.providerHash(provider);
  }

  get(version: number): RoutingTable | undefined {
    return this.history.get(version);
  }

  versions(): TableVersionInfo[] {
    return this.history.versions();
  }

  diff(from: number, to: number): TableDiff | undefined {
    return this.history.diff(from, to);
  }

  /** The table `snapshot` would give if `provider` sent it now, and its diff from the current one. Publishes nothing. */
  preview(provider: string, priority: number, snapshot: Snapshot): { table: RoutingTable; diff: TableDiff } {
    const merge = this.merge.clone();
    merge.replace(provider, priority, snapshot);
    const table: RoutingTable = { ...merge.publish().content, version: this.table.version + 1, createdAt: new Date().toISOString() };
    return { table, diff: diffTables(this.table, table) };
  }

  /**
   * Call `fn` with every new table and what changed since the one before (not with the current one: read
   * `current()` for that). Returns unsubscribe.
   */
  subscribe(fn: TableListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Rebuild now if an update is pending; returns the current table. */
  flush(): RoutingTable {
    if (this.pending) this.rebuild();
    return this.table;
  }

  /**
   * Run a change of the merged state. A merge that throws (a bug: inputs are validated before they get here)
   * is logged and counted; the table served so far keeps serving.
   */
  private guard(fn: () => boolean, provider: string): boolean {
    try {
      return fn();
    } catch (err) {
      this.log.error({ err, provider }, 'merging a provider change failed; the previous table keeps serving');
      this.metrics?.builds.inc({ result: 'error' });
      return false;
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  private schedule(): void {
    const now = Date.now();
    if (!this.pending) {
      this.pending = true;
      this.firstPendingAt = now;
    }
    if (this.timer && this.debounceMs === 0) return; // already due on the next turn
    if (this.timer) clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.debounceMs, this.firstPendingAt + this.maxDelayMs - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.rebuild();
    }, wait);
  }

  private rebuild(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = false;
    const started = process.hrtime.bigint();
    const { content, change: changed, endpoints } = this.merge.publish();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.metrics?.buildSeconds.observe(seconds);
    if (content.hash === this.table.hash) {
      this.metrics?.builds.inc({ result: 'unchanged' });
      return;
    }
    const previous = this.table;
    const table = deepFreeze<RoutingTable>({ ...content, version: previous.version + 1, createdAt: new Date().toISOString() });
    const change: TableChange | undefined = changed && { ...changed, from: previous.version };
    this.table = table;
    this.history.push(table);
    if (this.metrics) {
      this.metrics.builds.inc({ result: 'published' });
      this.metrics.version.set(table.version);
      this.metrics.conflicts.set(table.conflicts.length);
      this.metrics.endpoints.set(endpoints);
    }
    if (table.conflicts !== previous.conflicts) for (const c of table.conflicts) this.log.warn({ conflict: c }, c.message);
    this.log.info(
      {
        version: table.version,
        hash: table.hash.slice(0, 12),
        services: table.services.size,
        changed: change ? change.upserted.length + change.removed.length : 'all',
        routes: table.routes.length,
        ms: Math.round(seconds * 1000),
      },
      'routing table published',
    );
    for (const fn of [...this.listeners]) {
      try {
        fn(table, previous, change);
      } catch (err) {
        this.log.error({ err }, 'table subscriber threw');
      }
    }
  }
}
