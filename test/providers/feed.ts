/**
 * For tests of what a provider hands over: a sink that feeds a real Aggregator and a model of the
 * provider's knowledge, and records every hand-over. A Feed made with `changes` hands the provider a sink
 * that takes deltas (as main.ts does); without, a plain function (whole snapshots only).
 */
import type { Test } from 'tap';
import { Aggregator } from '../../src/aggregator/aggregator.js';
import type { RoutingTable, Snapshot, SnapshotDelta } from '../../src/model/types.js';
import type { SnapshotSink } from '../../src/providers/types.js';
import { Recorder } from '../helpers/wait.js';

export type Handover = { kind: 'snapshot'; snapshot: Snapshot } | { kind: 'delta'; delta: SnapshotDelta };

/** A provider's knowledge rebuilt from what it handed over (routes by id). */
export class Model {
  services: Snapshot['services'] = {};
  routes = new Map<string, Snapshot['routes'][number]>();
  entrypoints: Snapshot['entrypoints'] = {};
  warnings: NonNullable<Snapshot['warnings']> = [];

  apply(h: Handover): void {
    if (h.kind === 'snapshot') {
      this.services = { ...h.snapshot.services };
      this.routes = new Map();
      h.snapshot.routes.forEach((r, i) => {
        const id = r.id ?? `${h.snapshot.provider}/${i}`;
        if (!this.routes.has(id)) this.routes.set(id, r);
      });
      this.entrypoints = h.snapshot.entrypoints;
      this.warnings = h.snapshot.warnings ?? [];
      return;
    }
    const d = h.delta;
    for (const name of d.remove ?? []) delete this.services[name];
    Object.assign(this.services, d.upsert ?? {});
    for (const id of d.removeRoutes ?? []) this.routes.delete(id);
    for (const r of d.upsertRoutes ?? []) this.routes.set(r.id, r);
    if (d.entrypoints) this.entrypoints = d.entrypoints;
    if (d.warnings) this.warnings = d.warnings;
  }
}

export class Feed {
  readonly agg = new Aggregator({});
  readonly model = new Model();
  readonly handovers = new Recorder<Handover>();
  readonly sink: SnapshotSink;

  constructor(provider: string, priority: number, changes: boolean) {
    const snapshot = (s: Snapshot) => {
      this.agg.update(provider, priority, s);
      this.take({ kind: 'snapshot', snapshot: s });
    };
    this.sink = changes
      ? Object.assign(snapshot, {
          change: (d: SnapshotDelta) => {
            this.agg.change(provider, priority, d);
            this.take({ kind: 'delta', delta: d });
          },
        })
      : snapshot;
  }

  private take(h: Handover): void {
    this.model.apply(h);
    this.handovers.push(h);
  }

  get count(): number {
    return this.handovers.items.length;
  }

  last(): Handover | undefined {
    return this.handovers.items[this.count - 1];
  }

  /** The next hand-over after the `from` already seen. */
  next(from: number, what: string, timeoutMs = 5000): Promise<Handover> {
    return this.handovers.until(() => true, timeoutMs, what, from);
  }
}

/**
 * A table's content: everything but its version, time, hash and sources. (A hash also covers the position
 * each route was first claimed at, which a delta gives differently from a whole snapshot.)
 */
export function content(table: RoutingTable): unknown {
  const { services, routes, entrypoints, vips, conflicts, warnings } = table;
  return JSON.parse(JSON.stringify({ services, routes, entrypoints, vips, conflicts, warnings })) as unknown;
}

/**
 * `deltas` (a Feed with changes) and `wholes` (one without) agree: the model built from the deltas is the
 * whole feed's last snapshot, and both aggregators serve the same table.
 */
export function agree(t: Test, deltas: Feed, wholes: Feed, what: string): void {
  const last = wholes.last();
  if (last?.kind !== 'snapshot') {
    t.fail(`${what}: the whole feed has no snapshot`);
    return;
  }
  const want = last.snapshot;
  const m = deltas.model;
  t.same(m.services, want.services, `${what}: services`);
  t.same(
    Object.fromEntries(m.routes),
    Object.fromEntries(want.routes.map((r, i) => [r.id ?? `${want.provider}/${i}`, r])),
    `${what}: routes`,
  );
  t.same(m.entrypoints, want.entrypoints, `${what}: entrypoints`);
  t.same(m.warnings, want.warnings ?? [], `${what}: warnings`);
  t.same(content(deltas.agg.flush()), content(wholes.agg.flush()), `${what}: the two aggregators serve the same table`);
}

/** The delta in `h`, or a failure (and an empty delta) when it is a whole snapshot. */
export function deltaOf(t: Test, h: Handover, what: string): SnapshotDelta {
  if (h.kind !== 'delta') {
    t.fail(`${what}: a whole snapshot was handed over where a delta was expected`);
    return {};
  }
  return h.delta;
}

/** Whole snapshots `b` after `a`: every service but `changed` is the same object. */
export function sameObjects(t: Test, a: Snapshot, b: Snapshot, changed: readonly string[], what: string): void {
  for (const name of Object.keys(b.services)) {
    if (changed.includes(name)) t.not(b.services[name], a.services[name], `${what}: ${name} is a new object`);
    else t.equal(b.services[name], a.services[name], `${what}: ${name} is the object sent before`);
  }
}
