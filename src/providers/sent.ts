/**
 * What a provider handed its sink last, kept so that the next hand-over names only what differs. A provider
 * keeps its knowledge by service name and route id, says which names and ids it touched since the last
 * hand-over, and `Outbox.send` compares just those with what was sent:
 *
 * - Services are compared by identity: a provider hands a service object again only when it changed, and
 *   keeps the very object it sent while it did not (so a whole snapshot is cheap for the aggregator too,
 *   which skips a service sent again by identity).
 * - Routes are compared by their JSON text; entrypoints and warnings whole, by text, when the provider says
 *   they may have changed.
 * - When the sink takes changes (`sink.change`), everything after the first whole snapshot is a
 *   SnapshotDelta of what differs; otherwise a whole snapshot is sent, but only when something differs.
 *
 * Route claim order. Within one provider the first of two routes with one key is served, in the order of
 * the provider's whole snapshot; a route a delta adds is claimed after every route the provider already
 * has. So a delta could serve a different one of two routes than the whole snapshot would: when a route
 * whose place in the provider's order may have moved (a new one, a changed key, a changed `rank`) shares
 * its key with another of the provider's routes, a whole snapshot is sent instead of the delta.
 */
import { canonicalJson } from '../model/canonical.js';
import type { Snapshot, SnapshotDelta } from '../model/types.js';
import type { SnapshotSink } from './types.js';

export type LocalService = Snapshot['services'][string];
export type IdRoute = Snapshot['routes'][number] & { id: string };
export type ProviderWarning = NonNullable<Snapshot['warnings']>[number];

/** A provider's knowledge as it is now, read by name and id. */
export interface Knowledge {
  service(name: string): LocalService | undefined;
  /**
   * The route with this id (a route id is the provider's, unique in its snapshot). `rank` stands for the
   * route's place in the provider's route order: anything that changes whenever that place may move
   * relative to the provider's other routes (a marathon-lb BACKEND_WEIGHT, the app it belongs to).
   */
  route(id: string): { route: IdRoute; rank?: string } | undefined;
  entrypoints(): Snapshot['entrypoints'];
  warnings(): ProviderWarning[];
  /** Everything, as a whole snapshot, its routes in the provider's order. */
  snapshot(): Snapshot;
}

/** What may have changed since the last hand-over. */
export interface Touched {
  services?: Iterable<string>;
  routes?: Iterable<string>;
  entrypoints?: boolean;
  warnings?: boolean;
}

export interface Sent {
  /** `none`: nothing differed, nothing was handed over. */
  kind: 'snapshot' | 'delta' | 'none';
  /** Services upserted and removed (all of them for a first snapshot). */
  services: number;
  routes: number;
  entrypoints: boolean;
  warnings: boolean;
  /** Why a whole snapshot went where a delta could have: `first`, `no-change-sink`, `route-order`, `after-failure`. */
  reason?: 'first' | 'no-change-sink' | 'route-order' | 'after-failure';
}

interface SentRoute {
  text: string;
  key: string;
  rank: string;
}

/**
 * The key two routes of one provider conflict on, coarser than the aggregator's (methods and headers are
 * left out): two routes that differ only there count as sharing one, which costs a whole snapshot, never a
 * wrong claim order.
 */
function orderKey(r: IdRoute): string {
  return `${r.entrypoint} ${r.host} ${r.path} ${r.pathMatch}`;
}

export class Outbox {
  private readonly services = new Map<string, LocalService>();
  private readonly routes = new Map<string, SentRoute>();
  /** Routes sent per order key. */
  private readonly keys = new Map<string, number>();
  private entrypointsText = '{}';
  private warningsText = '[]';
  private sentAny = false;
  /** The last hand-over failed: the aggregator's view is unknown, the next one is whole. */
  private broken = false;

  /**
   * Compare what `touched` names with what was sent, and hand over what differs. Returns what was sent. A
   * sink that throws is rethrown after the next hand-over is marked whole.
   */
  send(sink: SnapshotSink, now: Knowledge, touched: Touched): Sent {
    if (!this.sentAny) return this.first(sink, now);
    const delta: SnapshotDelta = {};
    const upsert: NonNullable<SnapshotDelta['upsert']> = {};
    const remove: string[] = [];
    let services = 0;
    for (const name of touched.services ?? []) {
      const cur = now.service(name);
      const prev = this.services.get(name);
      if (cur === prev) continue;
      services++;
      if (cur === undefined) {
        this.services.delete(name);
        remove.push(name);
      } else {
        this.services.set(name, cur);
        upsert[name] = cur;
      }
    }
    const upsertRoutes: IdRoute[] = [];
    const removeRoutes: string[] = [];
    let reordered = false;
    const moved: string[] = [];
    for (const id of new Set(touched.routes ?? [])) {
      const cur = now.route(id);
      const prev = this.routes.get(id);
      if (cur === undefined) {
        if (prev === undefined) continue;
        this.routes.delete(id);
        this.count(prev.key, -1);
        removeRoutes.push(id);
        continue;
      }
      const text = JSON.stringify(cur.route);
      const key = orderKey(cur.route);
      const rank = cur.rank ?? '';
      if (prev && prev.text === text && prev.rank === rank) continue;
      if (!prev || prev.key !== key || prev.rank !== rank) moved.push(key);
      if (prev) this.count(prev.key, -1);
      this.count(key, 1);
      this.routes.set(id, { text, key, rank });
      if (!prev || prev.text !== text) upsertRoutes.push(cur.route);
    }
    for (const key of moved) if ((this.keys.get(key) ?? 0) > 1) reordered = true;
    let entrypoints = false;
    if (touched.entrypoints) {
      const eps = now.entrypoints();
      const text = canonicalJson(eps);
      if (text !== this.entrypointsText) {
        this.entrypointsText = text;
        delta.entrypoints = eps;
        entrypoints = true;
      }
    }
    let warnings = false;
    if (touched.warnings) {
      const list = now.warnings();
      const text = JSON.stringify(list);
      if (text !== this.warningsText) {
        this.warningsText = text;
        delta.warnings = list;
        warnings = true;
      }
    }
    const routes = upsertRoutes.length + removeRoutes.length;
    const sent: Sent = { kind: 'none', services, routes, entrypoints, warnings };
    const broken = this.broken;
    // A route that only moved in the provider's order (a weight) changes nothing a delta could say, but
    // may change which of two routes with one key is served.
    if (services === 0 && routes === 0 && !entrypoints && !warnings && !broken && !reordered) return sent;

    if (!sink.change || reordered || broken) {
      sent.kind = 'snapshot';
      sent.reason = !sink.change ? 'no-change-sink' : broken ? 'after-failure' : 'route-order';
      this.hand(() => sink(now.snapshot()));
      return sent;
    }
    if (services > 0) {
      if (Object.keys(upsert).length > 0) delta.upsert = upsert;
      if (remove.length > 0) delta.remove = remove;
    }
    if (upsertRoutes.length > 0) delta.upsertRoutes = upsertRoutes;
    if (removeRoutes.length > 0) delta.removeRoutes = removeRoutes;
    sent.kind = 'delta';
    const change = sink.change;
    this.hand(() => change(delta));
    return sent;
  }

  /** The first hand-over: everything, whole; what was sent is recorded in full. */
  private first(sink: SnapshotSink, now: Knowledge): Sent {
    const snap = now.snapshot();
    this.services.clear();
    this.routes.clear();
    this.keys.clear();
    for (const name of Object.keys(snap.services)) this.services.set(name, snap.services[name] as LocalService);
    for (const r of snap.routes) {
      const id = (r as IdRoute).id;
      // The aggregator serves the first of two routes with one id; so is the first recorded.
      if (id === undefined || this.routes.has(id)) continue;
      const key = orderKey(r as IdRoute);
      const rank = now.route(id)?.rank ?? '';
      this.routes.set(id, { text: JSON.stringify(r), key, rank });
      this.count(key, 1);
    }
    this.entrypointsText = canonicalJson(snap.entrypoints);
    this.warningsText = JSON.stringify(snap.warnings ?? []);
    this.hand(() => sink(snap));
    this.sentAny = true;
    return {
      kind: 'snapshot',
      services: this.services.size,
      routes: this.routes.size,
      entrypoints: true,
      warnings: true,
      reason: 'first',
    };
  }

  private hand(fn: () => void): void {
    try {
      fn();
      this.broken = false;
    } catch (err) {
      this.broken = true;
      throw err;
    }
  }

  private count(key: string, by: number): void {
    const n = (this.keys.get(key) ?? 0) + by;
    if (n <= 0) this.keys.delete(key);
    else this.keys.set(key, n);
  }
}
