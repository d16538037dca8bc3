/**
 * Between the aggregator and the data planes: the table stages (src/stages.ts lists them in order), and
 * the tables the planes serve.
 *
 *   aggregator ──table──▶ stage 1 ─▶ stage 2 ─▶ … ──served table──▶ subscribers (the planes, the api)
 *
 * A stage finishes a table (gives named VIPs their addresses) or acts on it (issues the certificates its
 * hosts need). What comes out of the last stage is the served table: what every plane applies and what
 * `GET /v1/table` shows, with versions and history of its own. A served table gets a new version whenever
 * its content differs from the last one, whether the aggregator built a new table or a stage's own state
 * changed (a VIP address released after its grace period): the same version never names two contents.
 * A served table takes the version of the aggregator's table it was made from while that is ahead, so the
 * two agree until a stage alone changes something; from then on the served versions run ahead.
 *
 * Tables are processed one at a time, in order; a table that is overtaken while the stages work on the one
 * before is skipped (the planes want the latest, not every step), and the changes of the skipped ones are
 * folded into the next: subscribers get each served table with what changed since the last served one. A
 * stage that throws is logged and the table goes on without its contribution: a stage never stops routing.
 */
import { createHash } from 'node:crypto';
import type { RoutingTable, Snapshot, TableChange } from '../model/types.js';
import type { Logger } from '../telemetry/log.js';
import { silentLogger } from '../telemetry/log.js';
import type { Registry } from '../telemetry/metrics.js';
import { metric, prom } from '../telemetry/metrics.js';
import type { Aggregator } from './aggregator.js';
import { deepFreeze } from './build.js';
import { diffTables } from './diff.js';
import { TableHistory } from './history.js';
import type { TableDiff, TableListener, TableVersionInfo } from './types.js';

export interface TableStage {
  readonly name: string;
  /**
   * The table to pass on: `table` itself when the stage only acts on it, or a copy with what the stage adds.
   * Must not change `table` (it is frozen and shared with the aggregator's history). `change` is what
   * differs from the table the stage was handed last (undefined: look at everything); a part the stage
   * does not change must be passed on as the same object, so planes see it unchanged.
   */
  apply(table: RoutingTable, change?: TableChange): RoutingTable | Promise<RoutingTable>;
  /**
   * What this stage added to the table it last returned, as a short string ('' when it adds nothing): the
   * served table's hash covers it, so a change of it alone makes a new version.
   */
  fingerprint?(table: RoutingTable): string;
  /** Subscribe to changes of the stage's own state; the pipeline then runs the current table again. */
  watch?(changed: () => void): () => void;
  /** Release timers and watches. */
  close?(): void;
}

export interface TablePipelineOptions {
  aggregator: Aggregator;
  /** The stages, in order (more can be added with use() before tables flow). */
  stages?: TableStage[];
  /** Served tables kept for versions and diffs. Default 50. */
  historySize?: number;
  logger?: Logger;
  registry?: Registry;
  /**
   * Log `table served` once the subscribers (the planes) have a table (default). False when the planes are
   * in worker processes: then `table served` is theirs to say (src/workers/host.ts), and this says
   * `table published`.
   */
  announce?: boolean;
}

export class TablePipeline {
  private readonly aggregator: Aggregator;
  private readonly stages: TableStage[] = [];
  private readonly history: TableHistory;
  private readonly listeners = new Set<TableListener>();
  private readonly log: Logger;
  private readonly announce: boolean;
  private readonly unwatch: Array<() => void> = [];
  private served: RoutingTable;
  /** The aggregator table the served one was made from. */
  private input: RoutingTable;
  /** Latest aggregator table not yet through the stages, or the served input again after a stage changed. */
  private next: RoutingTable | undefined;
  /** What changed from `input` (or `processing`, while one is) to `next` (undefined: take `next` whole). */
  private nextChange: TableChange | undefined;
  /** The table the stages work on now, once it is taken from `next`. */
  private processing: RoutingTable | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly versionGauge: prom.Gauge | undefined;

  constructor(opts: TablePipelineOptions) {
    this.aggregator = opts.aggregator;
    this.announce = opts.announce ?? true;
    this.history = new TableHistory(Math.max(1, opts.historySize ?? 50));
    this.log = (opts.logger ?? silentLogger).child({ component: 'pipeline' });
    this.versionGauge = opts.registry
      ? metric(
          opts.registry,
          'portico_table_served_version',
          () => new prom.Gauge({ name: 'portico_table_served_version', help: 'Version of the table the data planes serve', registers: [] }),
        )
      : undefined;
    // Version 0: the aggregator's empty table as is (no stage has run yet).
    this.input = opts.aggregator.current();
    this.served = this.input;
    this.history.push(this.served);
    this.unwatch.push(opts.aggregator.subscribe((t, _previous, change) => this.enqueue(t, change)));
    for (const s of opts.stages ?? []) this.use(s);
  }

  /** Add a stage after the others. Tables served from now on go through it. */
  use(stage: TableStage): void {
    this.stages.push(stage);
    // The stage's own state changed: the table goes through the stages again, looked at whole.
    if (stage.watch) this.unwatch.push(stage.watch(() => this.enqueue(this.next ?? this.input, undefined)));
  }

  /** The table the planes serve now. */
  current(): RoutingTable {
    return this.served;
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

  /**
   * The table `snapshot` would give if `provider` sent it now, and what would change. Stages are not run
   * (a dry run allocates no VIP address and issues no certificate), so the diff compares what the
   * aggregator builds; the version is the one it would be served as.
   */
  preview(provider: string, priority: number, snapshot: Snapshot): { table: RoutingTable; diff: TableDiff } {
    const p = this.aggregator.preview(provider, priority, snapshot);
    const version = Math.max(this.served.version + 1, p.table.version);
    return {
      table: { ...p.table, version },
      diff: { ...diffTables(this.aggregator.current(), p.table), from: this.served.version, to: version },
    };
  }

  /**
   * Call `fn` with every new served table. With `since`, a table served after that version and before this
   * call is handed over at once: a part that started on version `since` misses nothing served meanwhile.
   */
  subscribe(fn: TableListener, since?: number): () => void {
    this.listeners.add(fn);
    if (since !== undefined && this.served.version > since) this.call(fn, this.served, this.get(since));
    return () => this.listeners.delete(fn);
  }

  /** Build what the aggregator has pending and run it through the stages; resolves with the served table. */
  async flush(): Promise<RoutingTable> {
    const t = this.aggregator.flush();
    if (t !== this.input && t !== this.next) this.enqueue(t, undefined);
    await this.settled();
    return this.served;
  }

  /** Resolves once every table handed to the pipeline so far has been served (or skipped for a newer one). */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  close(): void {
    this.closed = true;
    for (const off of this.unwatch.splice(0)) off();
    for (const s of this.stages) s.close?.();
    this.listeners.clear();
  }

  private enqueue(table: RoutingTable, change: TableChange | undefined): void {
    if (this.closed) return;
    const from = this.next ?? this.input;
    this.nextChange =
      this.next === undefined
        ? sinceInput(change, this.processing ?? this.input)
        : compose(this.nextChange, change, from === table ? undefined : from);
    this.next = table;
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  private async drain(): Promise<void> {
    for (let t = this.next; t && !this.closed; t = this.next) {
      const change = this.nextChange;
      this.next = undefined;
      this.nextChange = undefined;
      this.processing = t;
      const out = await this.run(t, change).finally(() => (this.processing = undefined));
      if (this.closed) return;
      this.input = t;
      if (out.hash === this.served.hash) continue;
      const previous = this.served;
      // The aggregator's version when it is new (so logs and api agree); one more than the last served when
      // only a stage's contribution changed.
      const version = Math.max(previous.version + 1, t.version);
      this.served = deepFreeze<RoutingTable>({ ...out, version, createdAt: new Date().toISOString() });
      this.history.push(this.served);
      this.versionGauge?.set(this.served.version);
      const served = servedChange(change, previous, this.served);
      for (const fn of [...this.listeners]) this.call(fn, this.served, previous, served);
      // After the subscribers: once this line is logged, every plane has applied the table.
      this.log.debug(
        { version: this.served.version, built: t.version, hash: this.served.hash.slice(0, 12) },
        this.announce ? 'table served' : 'table published',
      );
    }
  }

  /** Run `table` through every stage; the result's hash covers what the stages added. */
  private async run(table: RoutingTable, change: TableChange | undefined): Promise<RoutingTable> {
    let t = table;
    const prints: string[] = [];
    for (const s of this.stages) {
      try {
        t = await s.apply(t, change);
        const p = s.fingerprint?.(t);
        if (p) prints.push(`${s.name}:${p}`);
      } catch (err) {
        this.log.error({ err, stage: s.name, version: table.version }, `table stage ${s.name} failed; the table goes on without it`);
      }
    }
    if (prints.length === 0) return t;
    const hash = createHash('sha256').update(table.hash).update('\n').update(prints.join('\n')).digest('hex');
    return { ...t, hash };
  }

  private call(fn: TableListener, table: RoutingTable, previous: RoutingTable | undefined, change?: TableChange): void {
    try {
      fn(table, previous, change);
    } catch (err) {
      this.log.error({ err }, 'table subscriber threw');
    }
  }
}

/** `change` when it starts from `input` (an aggregator table's change is from the one before it). */
function sinceInput(change: TableChange | undefined, input: RoutingTable): TableChange | undefined {
  return change && change.from === input.version ? change : undefined;
}

/**
 * What changed from `a`'s start to the end of `b`, `b` starting where `a` ended (`at`, when given, is the
 * table between them). Either unknown makes the whole unknown.
 */
function compose(a: TableChange | undefined, b: TableChange | undefined, at: RoutingTable | undefined): TableChange | undefined {
  if (!a || !b || !at || b.from !== at.version) return undefined;
  const removed = new Set(a.removed);
  const upserted = new Set(a.upserted);
  for (const id of b.removed) {
    upserted.delete(id);
    removed.add(id);
  }
  for (const id of b.upserted) {
    removed.delete(id);
    upserted.add(id);
  }
  return {
    from: a.from,
    upserted: [...upserted].sort(),
    removed: [...removed].sort(),
    routes: a.routes || b.routes,
    entrypoints: a.entrypoints || b.entrypoints,
    vips: a.vips || b.vips,
  };
}

/**
 * What a subscriber is told changed from `previous` to `served`: the services the aggregator changed, and
 * the other parts by identity (a stage that filled in VIP addresses made new `vips`).
 */
function servedChange(change: TableChange | undefined, previous: RoutingTable, served: RoutingTable): TableChange | undefined {
  if (!change) return undefined;
  return {
    from: previous.version,
    upserted: change.upserted,
    removed: change.removed,
    routes: served.routes !== previous.routes,
    entrypoints: served.entrypoints !== previous.entrypoints,
    vips: served.vips !== previous.vips,
  };
}
