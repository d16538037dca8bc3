/**
 * The Marathon feed's translated apps put together as `assemble` (translate.ts) puts them, kept up to date
 * app by app: a changed app costs its own translation and the apps it shares a name with, not a pass over
 * every app. What one app contributes depends on the others only through
 *   - service names: two app ids that give one name — the smaller id keeps it, the other's service is
 *     `<name>-<hash>` (with a warning);
 *   - service-port entrypoints: the smaller id's claim binds it, later claims get a warning;
 *   - route order: BACKEND_WEIGHT (heaviest first), then app id, then the app's own order.
 * So an app's contribution is made again when it changes or when an app that claims one of its service or
 * entrypoint names comes, goes or changes. `update` returns the names and route ids that may differ, for
 * the Outbox (src/providers/sent.ts) to compare with what was sent; unchanged services keep their objects.
 */
import type { Entrypoint, Snapshot } from '../../model/types.js';
import type { IdRoute, Knowledge, LocalService, ProviderWarning, Touched } from '../sent.js';
import { shortHash } from './names.js';
import type { AppTranslation, AppWarning } from './translate.js';

/** What one app contributes to the provider's knowledge. */
interface Contribution {
  /** Final service name → service, in the app's port order. */
  services: Map<string, LocalService>;
  routes: Array<{ weight: number; route: IdRoute }>;
  /** The entrypoints whose claim this app won. */
  entrypoints: Entrypoint[];
  /** This app's own warnings, then its renames, then its lost entrypoint claims (as assemble lists them). */
  warnings: string[];
  endpoints: number;
}

interface AppEntry {
  piece: AppTranslation;
  out: Contribution;
}

export interface AssemblyStats {
  apps: number;
  tasks: number;
  services: number;
  endpoints: number;
  routes: number;
}

/** A renamed service is a copy of the app's own; the copy is kept while the original and the name are. */
const renamed = new WeakMap<LocalService, LocalService>();

function renamedCopy(s: LocalService, name: string): LocalService {
  const had = renamed.get(s);
  if (had?.name === name) return had;
  const copy = { ...s, name };
  renamed.set(s, copy);
  return copy;
}

function insertSorted(list: string[], id: string): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((list[mid] as string) <= id) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, id);
}

function removeSorted(list: string[], id: string): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((list[mid] as string) < id) lo = mid + 1;
    else hi = mid;
  }
  let n = 0;
  while (list[lo + n] === id) n++;
  if (n > 0) list.splice(lo, n);
}

export class Assembly implements Knowledge {
  private readonly apps = new Map<string, AppEntry>();
  /** App ids, sorted. */
  private readonly order: string[] = [];
  /** Local service name → the app ids that translate to it, sorted. */
  private readonly nameClaims = new Map<string, string[]>();
  /** Entrypoint name → the app ids that claim it, sorted (an app claiming one twice is listed twice). */
  private readonly epClaims = new Map<string, string[]>();
  private readonly services = new Map<string, { app: string; service: LocalService }>();
  private readonly routes = new Map<string, { app: string; rank: string; route: IdRoute }>();
  private readonly winners = new Map<string, { app: string; entrypoint: Entrypoint }>();
  private tasks = 0;
  private endpoints = 0;
  private routeCount = 0;
  private warningCount = 0;
  private warningList: AppWarning[] | undefined;

  constructor(private readonly provider: string) {}

  /** The cached translation of app `id`. */
  piece(id: string): AppTranslation | undefined {
    return this.apps.get(id)?.piece;
  }

  ids(): IterableIterator<string> {
    return this.apps.keys();
  }

  get size(): number {
    return this.apps.size;
  }

  /** Every cached translation, in app id order. */
  pieces(): AppTranslation[] {
    return this.order.map((id) => (this.apps.get(id) as AppEntry).piece);
  }

  stats(): AssemblyStats {
    return { apps: this.apps.size, tasks: this.tasks, services: this.services.size, endpoints: this.endpoints, routes: this.routeCount };
  }

  /** Every app's warnings, in app id order (as assemble lists them). */
  appWarnings(): AppWarning[] {
    if (this.warningList) return this.warningList;
    const out: AppWarning[] = [];
    for (const id of this.order) for (const message of (this.apps.get(id) as AppEntry).out.warnings) out.push({ app: id, message });
    this.warningList = out;
    return out;
  }

  get warningTotal(): number {
    return this.warningCount;
  }

  /**
   * Take the new translations of the apps in `changes` (undefined: the app is gone). Returns what may
   * differ since, and per app the warnings it has now that it did not have before (to log).
   */
  update(changes: ReadonlyMap<string, AppTranslation | undefined>): { touched: Touched; newWarnings: AppWarning[] } {
    const affected = new Set<string>();
    const names = new Set<string>();
    const eps = new Set<string>();
    for (const [id, piece] of changes) {
      const had = this.apps.get(id);
      if (had?.piece === piece) continue;
      affected.add(id);
      if (had) {
        for (const s of had.piece.services) {
          names.add(s.name);
          this.unclaim(this.nameClaims, s.name, id);
        }
        for (const e of had.piece.entrypoints) {
          eps.add(e.name);
          this.unclaim(this.epClaims, e.name, id);
        }
        if (!piece) removeSorted(this.order, id);
      } else if (piece) {
        insertSorted(this.order, id);
      }
      if (piece) {
        for (const s of piece.services) {
          names.add(s.name);
          this.claim(this.nameClaims, s.name, id);
        }
        for (const e of piece.entrypoints) {
          eps.add(e.name);
          this.claim(this.epClaims, e.name, id);
        }
      }
    }
    for (const n of names) for (const id of this.nameClaims.get(n) ?? []) affected.add(id);
    for (const e of eps) for (const id of this.epClaims.get(e) ?? []) affected.add(id);

    const services = new Set<string>();
    const routes = new Set<string>();
    let entrypoints = false;
    let warnings = false;
    const newWarnings: AppWarning[] = [];
    const before = new Map<string, Contribution>();
    // Every old contribution out first, so a name passing from one app to another is not taken back.
    for (const id of affected) {
      const had = this.apps.get(id);
      if (!had) continue;
      before.set(id, had.out);
      this.retract(id, had, services, routes);
    }
    for (const id of affected) {
      const piece = changes.has(id) ? changes.get(id) : this.apps.get(id)?.piece;
      const old = before.get(id);
      if (!piece) {
        this.apps.delete(id);
        if (old && old.entrypoints.length > 0) entrypoints = true;
        if (old && old.warnings.length > 0) warnings = true;
        continue;
      }
      const entry: AppEntry = { piece, out: this.contribution(id, piece) };
      this.apps.set(id, entry);
      this.put(id, entry, services, routes);
      const out = entry.out;
      if (
        (old?.entrypoints.length ?? 0) + out.entrypoints.length > 0 &&
        JSON.stringify(old?.entrypoints ?? []) !== JSON.stringify(out.entrypoints)
      )
        entrypoints = true;
      if (out.warnings.join('\n') !== (old?.warnings ?? []).join('\n')) {
        warnings = true;
        const had = new Set(old?.warnings ?? []);
        for (const message of out.warnings) if (!had.has(message)) newWarnings.push({ app: id, message });
      }
    }
    if (warnings) this.warningList = undefined;
    return { touched: { services, routes, entrypoints, warnings }, newWarnings };
  }

  // --- Knowledge (what the Outbox reads)

  service(name: string): LocalService | undefined {
    return this.services.get(name)?.service;
  }

  route(id: string): { route: IdRoute; rank: string } | undefined {
    return this.routes.get(id);
  }

  entrypoints(): Snapshot['entrypoints'] {
    const out: Snapshot['entrypoints'] = {};
    for (const [name, w] of this.winners) out[name] = w.entrypoint;
    return out;
  }

  warnings(): ProviderWarning[] {
    return this.appWarnings().map((w) => ({ subject: w.app, message: w.message }));
  }

  /** Everything, as assemble gives it: services and routes in app id order, routes heaviest first. */
  snapshot(): Snapshot {
    const services: Snapshot['services'] = {};
    const entrypoints: Snapshot['entrypoints'] = {};
    const weighted: Array<{ weight: number; order: number; route: IdRoute }> = [];
    let anyWeight = false;
    for (const id of this.order) {
      const out = (this.apps.get(id) as AppEntry).out;
      for (const [name, s] of out.services) services[name] = s;
      for (const e of out.entrypoints) entrypoints[e.name] = e;
      for (const { weight, route } of out.routes) {
        if (weight !== 0) anyWeight = true;
        weighted.push({ weight, order: weighted.length, route });
      }
    }
    if (anyWeight) weighted.sort((a, b) => b.weight - a.weight || a.order - b.order);
    const snapshot: Snapshot = { provider: this.provider, services, routes: weighted.map((w) => w.route), entrypoints };
    if (this.warningCount > 0) snapshot.warnings = this.warnings();
    return snapshot;
  }

  // --- one app

  private contribution(id: string, p: AppTranslation): Contribution {
    const out: Contribution = { services: new Map(), routes: [], entrypoints: [], warnings: [...p.warnings], endpoints: 0 };
    let renames: Map<string, string> | undefined;
    for (const { name, service } of p.services) {
      const owner = (this.nameClaims.get(name) as string[])[0] as string;
      let final = name;
      if (owner !== id) {
        final = `${name}-${shortHash(id)}`;
        (renames ??= new Map()).set(name, final);
        out.warnings.push(`service name ${name} is already ${owner}'s (both ids give that Mesos-DNS name); this app's service is ${final}`);
      }
      out.services.set(final, final === name ? service : renamedCopy(service, final));
      out.endpoints += service.endpoints.length;
    }
    const seen = new Map<string, number>();
    for (const ep of p.entrypoints) {
      const k = seen.get(ep.name) ?? 0;
      seen.set(ep.name, k + 1);
      if (k === 0 && (this.epClaims.get(ep.name) as string[])[0] === id) out.entrypoints.push(ep);
      else out.warnings.push(`service port ${ep.listen} is already bound by another app; not bound again`);
    }
    p.routes.forEach(({ weight, route }, i) => {
      const svc = renames?.get(route.service);
      const r = (
        svc === undefined ? route : { ...route, service: svc, id: route.id?.replace(`/${route.service}/`, `/${svc}/`) }
      ) as IdRoute;
      if (r.id === undefined) r.id = `${this.provider}/${r.service}/${i}`;
      out.routes.push({ weight, route: r });
    });
    return out;
  }

  private put(id: string, e: AppEntry, services: Set<string>, routes: Set<string>): void {
    const out = e.out;
    for (const [name, service] of out.services) {
      services.add(name);
      this.services.set(name, { app: id, service });
    }
    out.routes.forEach(({ weight, route }, i) => {
      routes.add(route.id);
      // The aggregator serves the first of two routes with one id (a VHOST listed twice).
      if (this.routes.has(route.id)) return;
      this.routes.set(route.id, { app: id, rank: `${weight}\0${id}\0${i}`, route });
    });
    for (const ep of out.entrypoints) this.winners.set(ep.name, { app: id, entrypoint: ep });
    this.tasks += e.piece.tasks;
    this.endpoints += out.endpoints;
    this.routeCount += out.routes.length;
    this.warningCount += out.warnings.length;
  }

  private retract(id: string, e: AppEntry, services: Set<string>, routes: Set<string>): void {
    const out = e.out;
    for (const name of out.services.keys()) {
      services.add(name);
      if (this.services.get(name)?.app === id) this.services.delete(name);
    }
    for (const { route } of out.routes) {
      routes.add(route.id);
      if (this.routes.get(route.id)?.app === id) this.routes.delete(route.id);
    }
    for (const ep of out.entrypoints) if (this.winners.get(ep.name)?.app === id) this.winners.delete(ep.name);
    this.tasks -= e.piece.tasks;
    this.endpoints -= out.endpoints;
    this.routeCount -= out.routes.length;
    this.warningCount -= out.warnings.length;
  }

  private claim(claims: Map<string, string[]>, name: string, id: string): void {
    let list = claims.get(name);
    if (!list) claims.set(name, (list = []));
    insertSorted(list, id);
  }

  private unclaim(claims: Map<string, string[]>, name: string, id: string): void {
    const list = claims.get(name);
    if (!list) return;
    removeSorted(list, id);
    if (list.length === 0) claims.delete(name);
  }
}
