/**
 * The merged state of every provider's knowledge, kept up to date change by change: the heart of the
 * aggregator. A provider's whole snapshot is diffed against what it sent last (service by service, route by
 * route); a delta is taken as it is. Either way only what changed is merged, and `publish()` hands out the
 * next table's content with everything unchanged shared with the last one, plus what changed.
 *
 * Same inputs (in any arrival order) → same content → same hash. Conflicts (two providers claiming one route
 * key, one VIP, one DNS name, one entrypoint) are decided by provider priority — higher wins, ties go to the
 * lexically smaller provider name so the outcome never depends on arrival order — and every one is reported
 * in `conflicts`. Within one provider the first claim wins: routes in the order the provider listed them,
 * VIPs by service name.
 *
 * Hashes: each service's canonical text is hashed once when it arrives, and a provider's services hash is
 * the sum (mod 2^256) of those — a multiset hash, updated by subtracting the old and adding the new, so a
 * change costs one service's hash. The table hash covers each provider's name, priority and hash, in
 * decision order: the merge is a pure function of exactly these.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../model/canonical.js';
import { ServiceMap } from '../model/service-map.js';
import type {
  Conflict,
  ConflictKind,
  Entrypoint,
  Route,
  RoutingTable,
  Service,
  Snapshot,
  SnapshotDelta,
  TableChange,
  TableWarning,
  VipEntry,
} from '../model/types.js';
import { compareRoutes, deepFreeze, normalizeRoute, normalizeService, routeKey, type LocalService, type SnapshotRoute } from './build.js';

/** A table's content before it is given a version. */
export type TableContent = Omit<RoutingTable, 'version' | 'createdAt'>;

const MOD = 1n << 256n;

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function sumOf(text: string): bigint {
  return BigInt(`0x${sha256(text)}`);
}

interface ServiceEntry {
  name: string;
  /** Canonical form, frozen. */
  local: LocalService;
  /** What the provider handed over (a whole snapshot resent with the same objects is not re-hashed). */
  raw: object;
  /** Canonical text of `local` (what the hash covers and diffs compare). */
  json: string;
  /** Hash of name and text, as a number for the provider's sum. */
  sum: bigint;
}

interface RouteEntry {
  id: string;
  /** Order among the provider's routes: earlier wins a key the provider claims twice. */
  seq: number;
  route: SnapshotRoute;
  /** What the provider handed over (a whole snapshot resent with the same route objects is not re-hashed). */
  raw: object;
  json: string;
  sum: bigint;
  key: string;
}

interface ProviderState {
  name: string;
  priority: number;
  services: Map<string, ServiceEntry>;
  serviceSum: bigint;
  routes: Map<string, RouteEntry>;
  routeSum: bigint;
  nextSeq: number;
  entrypoints: Snapshot['entrypoints'];
  entrypointsText: string;
  warnings: NonNullable<Snapshot['warnings']>;
  warningsText: string;
  hash: string;
}

/**
 * One claim of a key: in decision order by provider (`rank` = minus its priority, then its name), then `a`,
 * then `b`. A rank that does not depend on the other providers keeps every claim in place when a provider
 * comes or goes: only a priority change makes the claims again.
 */
interface Claim {
  provider: string;
  rank: number;
  a: string;
  b: number;
}

function compareClaims(x: Claim, y: Claim): number {
  return (
    x.rank - y.rank || (x.provider < y.provider ? -1 : x.provider > y.provider ? 1 : 0) || (x.a < y.a ? -1 : x.a > y.a ? 1 : 0) || x.b - y.b
  );
}

/** Claims by key, each list in decision order: the first one is served. */
class ClaimBook<C extends Claim> {
  readonly byKey = new Map<string, C[]>();
  /** Keys with more than one claim. */
  readonly conflicted = new Set<string>();
  /** Set when `conflicted` or the claims of a conflicted key changed. */
  dirty = false;

  constructor(readonly kind: ConflictKind) {}

  winner(key: string): C | undefined {
    return this.byKey.get(key)?.[0];
  }

  /** Returns true when the winner of `key` changed. */
  add(key: string, claim: C): boolean {
    let list = this.byKey.get(key);
    if (!list) {
      this.byKey.set(key, [claim]);
      return true;
    }
    let i = list.length;
    while (i > 0 && compareClaims(list[i - 1] as C, claim) > 0) i--;
    list = [...list.slice(0, i), claim, ...list.slice(i)];
    this.byKey.set(key, list);
    this.conflicted.add(key);
    this.dirty = true;
    return i === 0;
  }

  /** Drop `claim` (by identity); returns true when the winner of `key` changed. */
  remove(key: string, claim: C): boolean {
    const list = this.byKey.get(key);
    if (!list) return false;
    const i = list.indexOf(claim);
    if (i < 0) return false;
    if (list.length === 1) {
      this.byKey.delete(key);
      return true;
    }
    const next = list.filter((c) => c !== claim);
    this.byKey.set(key, next);
    if (next.length < 2) this.conflicted.delete(key);
    this.dirty = true;
    return i === 0;
  }

  conflicts(): Conflict[] {
    const out: Conflict[] = [];
    for (const key of [...this.conflicted].sort()) {
      const [w, ...rest] = this.byKey.get(key) as C[];
      const winner = (w as C).provider;
      const losers = rest.map((c) => c.provider);
      const same = losers.every((l) => l === winner);
      out.push({
        kind: this.kind,
        key,
        winner,
        losers,
        message: same
          ? `${this.kind} "${key}" is claimed more than once by provider ${winner}; the first claim is served`
          : `${this.kind} "${key}" is claimed by ${[winner, ...losers].join(', ')}; ${winner} has the highest priority and is served`,
      });
    }
    return out;
  }
}

interface DnsClaim extends Claim {
  name: string;
}
interface VipClaim extends Claim {
  entry: VipEntry;
}
interface RouteClaim extends Claim {
  route: Route;
}
interface EntrypointClaim extends Claim {
  entrypoint: Entrypoint;
}

function vipKey(v: { name?: string; address?: string; protocol: string; port: number }, framework: string): string {
  const target = v.name !== undefined ? `${v.name}.${framework}` : (v.address as string);
  return `${v.protocol}/${target.includes(':') ? `[${target}]` : target}:${v.port}`;
}

function byKeyOrder(a: VipEntry, b: VipEntry): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/**
 * `sorted` with `gone` taken out and `added` put in, in `compare` order; `sorted` is not changed. A few
 * changes are spliced in by binary search; many are sorted in with the rest.
 */
function patchSorted<T>(sorted: readonly T[], gone: Set<T>, added: T[], compare: (a: T, b: T) => number): T[] {
  if (added.length > 64 || gone.size > 64) {
    const out = sorted.filter((x) => !gone.has(x));
    for (const x of added) out.push(x);
    return out.sort(compare);
  }
  const out = [...sorted];
  for (const x of gone) {
    let i = lowerBound(out, x, compare);
    while (i < out.length && out[i] !== x) i++;
    if (i < out.length) out.splice(i, 1);
  }
  for (const x of added) out.splice(upperBound(out, x, compare), 0, x);
  return out;
}

function lowerBound<T>(a: readonly T[], x: T, compare: (a: T, b: T) => number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(a[mid] as T, x) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function upperBound<T>(a: readonly T[], x: T, compare: (a: T, b: T) => number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(a[mid] as T, x) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const EMPTY: readonly never[] = Object.freeze([]);

export interface Published {
  content: TableContent;
  /** What changed since the last published content; undefined when everything must be taken as new. */
  change: Omit<TableChange, 'from'> | undefined;
  /** Endpoints in the content (kept as services change, not counted again). */
  endpoints: number;
}

export class MergeState {
  private readonly providers = new Map<string, ProviderState>();
  private order: ProviderState[] = [];

  private readonly dns = new ClaimBook<DnsClaim>('dns');
  private readonly vipBook = new ClaimBook<VipClaim>('vip');
  private readonly routeBook = new ClaimBook<RouteClaim>('route');
  private readonly epBook = new ClaimBook<EntrypointClaim>('entrypoint');
  /** The claims each service and each route made, to take them back. */
  private readonly serviceClaims = new Map<string, { dns: DnsClaim; vips: Array<[string, VipClaim]> }>();
  private readonly routeClaims = new Map<string, Map<string, RouteClaim>>();
  private readonly epClaims = new Map<string, Map<string, EntrypointClaim>>();

  // Published state.
  private services: ServiceMap = ServiceMap.EMPTY;
  private routes: readonly Route[] = EMPTY;
  private vips: readonly VipEntry[] = EMPTY;
  private entrypoints: Readonly<Record<string, Entrypoint>> = Object.freeze({});
  private conflicts: readonly Conflict[] = EMPTY;
  private warnings: readonly TableWarning[] = EMPTY;
  private endpointCount = 0;

  // Pending since the last publish.
  private readonly upserts = new Map<string, Service>();
  private readonly removals = new Set<string>();
  private readonly routesGone = new Set<Route>();
  private readonly routesAdded = new Set<Route>();
  private readonly vipKeysDirty = new Set<string>();
  private entrypointsDirty = false;
  private warningsDirty = false;
  /** Everything must be taken as new (the decision order changed). */
  private whole = true;
  private changed = true;

  // Derived warnings: VIPs without endpoints (by VIP key) and routes to nothing (by route).
  private readonly vipWarnings = new Map<string, TableWarning>();
  private readonly routeWarnings = new Map<Route, TableWarning[]>();
  /** Winning routes by the service id they name, to look at them again when that service comes or goes. */
  private readonly routesByService = new Map<string, Set<Route>>();

  /** Whether anything changed since the last publish. */
  get pending(): boolean {
    return this.changed;
  }

  /** The hash of `provider`'s knowledge now (what a table built now lists in `sources`). */
  providerHash(provider: string): string | undefined {
    return this.providers.get(provider)?.hash;
  }

  /**
   * Take `snapshot` as everything `provider` knows now. Returns false when it is what the provider had
   * already (nothing to publish).
   */
  replace(provider: string, priority: number, snapshot: Snapshot): boolean {
    const [p, reordered] = this.provider(provider, priority);
    const remove: string[] = [];
    for (const name of p.services.keys()) if (!Object.prototype.hasOwnProperty.call(snapshot.services, name)) remove.push(name);
    let changed = this.applyServices(p, snapshot.services, remove);

    // Routes: ids as the provider gives them, else by position; the position is also the claim order.
    const next = new Map<string, RouteEntry>();
    snapshot.routes.forEach((r, index) => {
      const id = r.id ?? `${provider}/${index}`;
      if (next.has(id)) return; // a second route with one id: the first is served, as a duplicate claim would be
      const old = p.routes.get(id);
      next.set(id, old && old.raw === r ? (old.seq === index ? old : { ...old, seq: index }) : routeEntry(id, index, r));
    });
    changed = this.setRoutes(p, next, snapshot.routes.length) || changed;
    changed = this.setEntrypoints(p, snapshot.entrypoints) || changed;
    changed = this.setWarnings(p, snapshot.warnings ?? []) || changed;
    if (changed) this.rehash(p);
    return changed || reordered;
  }

  /** Apply what changed in `provider`'s knowledge. Returns false when nothing did. */
  apply(provider: string, priority: number, delta: SnapshotDelta): boolean {
    const [p, reordered] = this.provider(provider, priority);
    let changed = this.applyServices(p, delta.upsert ?? {}, delta.remove ?? []);
    if (delta.upsertRoutes?.length || delta.removeRoutes?.length) {
      const next = new Map(p.routes);
      for (const id of delta.removeRoutes ?? []) next.delete(id);
      for (const r of delta.upsertRoutes ?? []) {
        const seq = p.routes.get(r.id)?.seq ?? p.nextSeq++;
        next.set(r.id, routeEntry(r.id, seq, r));
      }
      changed = this.setRoutes(p, next, p.nextSeq) || changed;
    }
    if (delta.entrypoints) changed = this.setEntrypoints(p, delta.entrypoints) || changed;
    if (delta.warnings) changed = this.setWarnings(p, delta.warnings) || changed;
    if (changed) this.rehash(p);
    return changed || reordered;
  }

  /** Forget `provider`. Returns false when it was not known. */
  drop(provider: string): boolean {
    const p = this.providers.get(provider);
    if (!p) return false;
    this.applyServices(p, {}, [...p.services.keys()]);
    this.setRoutes(p, new Map(), 0);
    this.setEntrypoints(p, {});
    this.setWarnings(p, []);
    this.providers.delete(provider);
    // The others' claims keep their order (see Claim): nothing to make again.
    this.sortOrder();
    return true;
  }

  /** The content as of now, and what changed since the last call. */
  publish(): Published {
    const whole = this.whole;
    const vipsChanged = this.vipKeysDirty.size > 0;
    const routesChanged = this.routesGone.size > 0 || this.routesAdded.size > 0;
    const entrypointsChanged = this.entrypointsDirty;

    // Services: removals that were never published are not removals.
    const removed: string[] = [];
    for (const id of this.removals) if (this.services.has(id)) removed.push(id);
    const upserted = [...this.upserts.keys()];
    this.services = this.services.with(this.upserts.values(), removed);

    if (routesChanged) this.patchRoutes();
    if (vipsChanged) this.patchVips();
    if (entrypointsChanged) this.rebuildEntrypoints();
    if (this.warningsDirty || vipsChanged || routesChanged || entrypointsChanged || upserted.length || removed.length)
      this.refreshWarnings(upserted, removed, entrypointsChanged);
    if (this.dns.dirty || this.vipBook.dirty || this.routeBook.dirty || this.epBook.dirty) {
      this.conflicts = Object.freeze([
        ...this.routeBook.conflicts(),
        ...this.vipBook.conflicts(),
        ...this.dns.conflicts(),
        ...this.epBook.conflicts(),
      ]);
      this.dns.dirty = this.vipBook.dirty = this.routeBook.dirty = this.epBook.dirty = false;
    }

    const sources: Record<string, string> = {};
    const hasher = createHash('sha256');
    for (const p of this.order) {
      sources[p.name] = p.hash;
      hasher.update(`${p.name}\0${p.priority}\0${p.hash}\n`);
    }
    const content: TableContent = {
      hash: hasher.digest('hex'),
      services: this.services,
      routes: this.routes as Route[],
      entrypoints: this.entrypoints as Record<string, Entrypoint>,
      vips: this.vips as VipEntry[],
      conflicts: this.conflicts as Conflict[],
      warnings: this.warnings as TableWarning[],
      sources: Object.freeze(sources),
    };
    const change = whole
      ? undefined
      : { upserted: upserted.sort(), removed: removed.sort(), routes: routesChanged, entrypoints: entrypointsChanged, vips: vipsChanged };
    this.upserts.clear();
    this.removals.clear();
    this.routesGone.clear();
    this.routesAdded.clear();
    this.vipKeysDirty.clear();
    this.entrypointsDirty = this.warningsDirty = this.whole = this.changed = false;
    return { content, change, endpoints: this.endpointCount };
  }

  /**
   * A copy that can take changes without touching this one (a dry run): the entries are shared, the maps
   * are not. Costs one pass over the merged state.
   */
  clone(): MergeState {
    const out = new MergeState();
    for (const p of this.order) out.provider(p.name, p.priority);
    for (const p of this.order) {
      const q = out.providers.get(p.name) as ProviderState;
      q.services = new Map(p.services);
      q.serviceSum = p.serviceSum;
      for (const e of q.services.values()) out.claimService(q, e);
      out.setRoutes(q, new Map(p.routes), p.nextSeq);
      out.setEntrypoints(q, p.entrypoints);
      out.setWarnings(q, p.warnings);
      out.rehash(q);
    }
    return out;
  }

  // --- providers and their order

  /** The provider's state, and whether the decision order changed to make room for it. */
  private provider(name: string, priority: number): [ProviderState, boolean] {
    let p = this.providers.get(name);
    if (p && p.priority === priority) return [p, false];
    if (!p) {
      p = {
        name,
        priority,
        services: new Map(),
        serviceSum: 0n,
        routes: new Map(),
        routeSum: 0n,
        nextSeq: 0,
        entrypoints: {},
        entrypointsText: '{}',
        warnings: [],
        warningsText: '[]',
        hash: '',
      };
      this.providers.set(name, p);
      // A newcomer claims nothing yet, and the others' claims keep their order (see Claim): at start each
      // feed's first snapshot no longer makes every claim of the ones before it again.
      this.sortOrder();
    } else {
      p.priority = priority;
      this.reorder();
    }
    this.changed = true;
    return [p, true];
  }

  private sortOrder(): void {
    this.order = [...this.providers.values()].sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * A provider's priority changed, and with it the decision order: every claim is made again in the new
   * order and the next publish is a whole table.
   */
  private reorder(): void {
    this.sortOrder();
    // Take every claim back, then make them again in the new order.
    const held = this.order.map((p) => ({ p, services: [...p.services.values()], routes: p.routes, eps: p.entrypoints }));
    for (const { p, services } of held) {
      for (const e of services) this.unclaimService(p, e);
      for (const c of this.routeClaims.get(p.name)?.values() ?? []) this.unclaimRoute(c);
      this.routeClaims.delete(p.name);
      for (const [n, c] of this.epClaims.get(p.name) ?? []) this.epBook.remove(n, c);
      this.epClaims.delete(p.name);
    }
    for (const { p, services, routes, eps } of held) {
      for (const e of services) this.claimService(p, e);
      for (const r of routes.values()) this.claimRoute(p, r);
      this.claimEntrypoints(p, eps);
    }
    this.entrypointsDirty = true;
    this.whole = true;
    this.changed = true;
  }

  private rehash(p: ProviderState): void {
    // Route order counts only where the provider claims one key more than once: those keys' ids, in order.
    const order: string[] = [];
    for (const key of [...this.routeBook.conflicted].sort()) {
      const ids = (this.routeBook.byKey.get(key) ?? []).filter((c) => c.provider === p.name).map((c) => c.route.id);
      if (ids.length > 1) order.push(ids.join('\0'));
    }
    p.hash = sha256(
      `${p.serviceSum.toString(16)}\n${p.routeSum.toString(16)}\n${order.join('\n')}\n${p.entrypointsText}\n${p.warningsText}`,
    );
    this.changed = true;
  }

  // --- services

  private applyServices(p: ProviderState, upsert: Snapshot['services'], remove: readonly string[]): boolean {
    let changed = false;
    for (const name of remove) {
      const old = p.services.get(name);
      if (!old) continue;
      p.services.delete(name);
      p.serviceSum = (p.serviceSum - old.sum + MOD) % MOD;
      this.unclaimService(p, old);
      this.retract(`${name}@${p.name}`);
      changed = true;
    }
    for (const name of Object.keys(upsert)) {
      const src = upsert[name] as LocalService;
      const old = p.services.get(name);
      if (old && old.raw === src) continue;
      const local = normalizeService({ ...src, name });
      const json = JSON.stringify(local);
      if (old && old.json === json) {
        old.raw = src;
        continue;
      }
      const entry: ServiceEntry = { name, local, raw: src, json, sum: sumOf(`${name}\0${json}`) };
      p.services.set(name, entry);
      p.serviceSum = (p.serviceSum - (old?.sum ?? 0n) + entry.sum + MOD) % MOD;
      changed = true;
      const id = `${name}@${p.name}`;
      if (old && old.local.framework === local.framework && sameVips(old, entry)) {
        // What an endpoint change is: the claims stand, only the service is new.
        const hidden = this.dns.winner(`${name}.${local.framework}`)?.provider !== p.name;
        this.emit(id, p.name, entry, hidden);
        continue;
      }
      if (old) {
        this.unclaimService(p, old);
        this.retract(id);
      }
      this.claimService(p, entry);
    }
    if (changed) this.changed = true;
    return changed;
  }

  private claimService(p: ProviderState, e: ServiceEntry): void {
    const id = `${e.name}@${p.name}`;
    const rank = -p.priority;
    const dnsKey = `${e.name}.${e.local.framework}`;
    const dns: DnsClaim = { provider: p.name, rank, a: '', b: 0, name: e.name };
    const before = this.dns.winner(dnsKey);
    if (this.dns.add(dnsKey, dns) && before) this.reemit(before, true);
    const vips: Array<[string, VipClaim]> = [];
    e.local.vips.forEach((v, i) => {
      const key = vipKey(v, e.local.framework);
      const entry: VipEntry = { key, protocol: v.protocol, framework: e.local.framework, port: v.port, service: id };
      if (v.name !== undefined) entry.name = v.name;
      if (v.address !== undefined) entry.address = v.address;
      if (v.proxyProtocol !== undefined) entry.proxyProtocol = v.proxyProtocol;
      const c: VipClaim = { provider: p.name, rank, a: e.name, b: i, entry: Object.freeze(entry) };
      if (this.vipBook.add(key, c)) this.vipKeysDirty.add(key);
      vips.push([key, c]);
    });
    this.serviceClaims.set(id, { dns, vips });
    this.emit(id, p.name, e, this.dns.winner(dnsKey) !== dns);
  }

  private unclaimService(p: ProviderState, e: ServiceEntry): void {
    const id = `${e.name}@${p.name}`;
    const claims = this.serviceClaims.get(id);
    if (!claims) return;
    this.serviceClaims.delete(id);
    const dnsKey = `${e.name}.${e.local.framework}`;
    if (this.dns.remove(dnsKey, claims.dns)) {
      const now = this.dns.winner(dnsKey);
      if (now) this.reemit(now, false);
    }
    for (const [key, c] of claims.vips) if (this.vipBook.remove(key, c)) this.vipKeysDirty.add(key);
  }

  /** The service `c` claimed for DNS again, with its `dnsHidden` as it is now. */
  private reemit(c: DnsClaim, hidden: boolean): void {
    const e = this.providers.get(c.provider)?.services.get(c.name);
    if (e) this.emit(`${c.name}@${c.provider}`, c.provider, e, hidden);
  }

  private emit(id: string, provider: string, e: ServiceEntry, hidden: boolean): void {
    const s = e.local;
    const service: Service = {
      name: e.name,
      id,
      provider,
      framework: s.framework,
      endpoints: s.endpoints,
      balance: s.balance,
      vips: s.vips,
      labels: s.labels,
    };
    if (s.health) service.health = s.health;
    if (hidden) service.dnsHidden = true;
    const before = this.upserts.get(id) ?? (this.removals.has(id) ? undefined : this.services.get(id));
    this.endpointCount += s.endpoints.length - (before?.endpoints.length ?? 0);
    this.upserts.set(id, Object.freeze(service));
    this.removals.delete(id);
  }

  private retract(id: string): void {
    const before = this.upserts.get(id) ?? (this.removals.has(id) ? undefined : this.services.get(id));
    if (before) this.endpointCount -= before.endpoints.length;
    this.upserts.delete(id);
    this.removals.add(id);
  }

  // --- routes

  private setRoutes(p: ProviderState, next: Map<string, RouteEntry>, nextSeq: number): boolean {
    let changed = false;
    const kept = new Set<string>();
    for (const [id, old] of p.routes) {
      const now = next.get(id);
      if (now && now.json === old.json) {
        // Only the place in the provider's list moved: that matters only against the provider's own other
        // claims of the same key (the first is served). Alone on its key, the claim just takes the new place.
        const c = this.routeClaims.get(p.name)?.get(id);
        const mine = c ? (this.routeBook.byKey.get(old.key) ?? []).filter((x) => x.provider === p.name).length : 0;
        if (now.seq === old.seq || (c && mine < 2)) {
          if (c) c.b = now.seq;
          // Entries are shared with clones (previews): a moved one is a copy.
          next.set(id, now.seq === old.seq ? old : { ...old, seq: now.seq });
          kept.add(id);
          continue;
        }
      }
      p.routeSum = (p.routeSum - old.sum + MOD) % MOD;
      const c = this.routeClaims.get(p.name)?.get(id);
      if (c) {
        this.unclaimRoute(c);
        this.routeClaims.get(p.name)?.delete(id);
      }
      changed = true;
    }
    for (const [id, r] of next) {
      if (kept.has(id)) continue;
      p.routeSum = (p.routeSum + r.sum) % MOD;
      this.claimRoute(p, r);
      changed = true;
    }
    p.routes = next;
    p.nextSeq = Math.max(p.nextSeq, nextSeq);
    if (changed) this.changed = true;
    return changed;
  }

  private claimRoute(p: ProviderState, r: RouteEntry): void {
    const service = r.route.service.includes('@') ? r.route.service : `${r.route.service}@${p.name}`;
    const route = Object.freeze({ ...r.route, id: r.id, provider: p.name, service }) as Route;
    const c: RouteClaim = { provider: p.name, rank: -p.priority, a: '', b: r.seq, route };
    const before = this.routeBook.winner(r.key);
    if (this.routeBook.add(r.key, c)) {
      if (before) this.loseRoute(before.route);
      this.winRoute(route);
    }
    let mine = this.routeClaims.get(p.name);
    if (!mine) this.routeClaims.set(p.name, (mine = new Map()));
    mine.set(r.id, c);
  }

  private unclaimRoute(c: RouteClaim): void {
    const key = routeKey(c.route);
    const was = this.routeBook.winner(key) === c;
    if (this.routeBook.remove(key, c) && was) {
      this.loseRoute(c.route);
      const now = this.routeBook.winner(key);
      if (now) this.winRoute(now.route);
    }
  }

  private winRoute(r: Route): void {
    if (!this.routesGone.delete(r)) this.routesAdded.add(r);
    let set = this.routesByService.get(r.service);
    if (!set) this.routesByService.set(r.service, (set = new Set()));
    set.add(r);
  }

  private loseRoute(r: Route): void {
    if (!this.routesAdded.delete(r)) this.routesGone.add(r);
    const set = this.routesByService.get(r.service);
    set?.delete(r);
    if (set?.size === 0) this.routesByService.delete(r.service);
  }

  private patchRoutes(): void {
    this.routes = Object.freeze(patchSorted(this.routes, this.routesGone, [...this.routesAdded], compareRoutes));
  }

  // --- VIPs

  private patchVips(): void {
    const gone = new Set<VipEntry>();
    const added: VipEntry[] = [];
    for (const key of this.vipKeysDirty) {
      const at = lowerBound(this.vips, { key } as VipEntry, byKeyOrder);
      const had = this.vips[at];
      if (had && had.key === key) gone.add(had);
      const w = this.vipBook.winner(key);
      if (w) added.push(w.entry);
    }
    this.vips = Object.freeze(patchSorted(this.vips, gone, added, byKeyOrder));
  }

  // --- entrypoints

  private setEntrypoints(p: ProviderState, eps: Snapshot['entrypoints']): boolean {
    const text = canonicalJson(eps);
    if (text === p.entrypointsText) return false;
    const mine = this.epClaims.get(p.name);
    for (const [n, c] of mine ?? []) this.epBook.remove(n, c);
    this.epClaims.delete(p.name);
    p.entrypoints = deepFreeze(JSON.parse(text) as Snapshot['entrypoints']);
    p.entrypointsText = text;
    this.claimEntrypoints(p, p.entrypoints);
    this.entrypointsDirty = true;
    this.changed = true;
    return true;
  }

  private claimEntrypoints(p: ProviderState, eps: Snapshot['entrypoints']): void {
    const mine = new Map<string, EntrypointClaim>();
    const rank = -p.priority;
    for (const name of Object.keys(eps)) {
      const c: EntrypointClaim = { provider: p.name, rank, a: '', b: 0, entrypoint: eps[name] as Entrypoint };
      this.epBook.add(name, c);
      mine.set(name, c);
    }
    this.epClaims.set(p.name, mine);
  }

  private rebuildEntrypoints(): void {
    const out: Record<string, Entrypoint> = {};
    for (const name of [...this.epBook.byKey.keys()].sort()) out[name] = (this.epBook.winner(name) as EntrypointClaim).entrypoint;
    this.entrypoints = Object.freeze(out);
  }

  // --- warnings

  private setWarnings(p: ProviderState, warnings: NonNullable<Snapshot['warnings']>): boolean {
    const list = warnings.map((w) => ({ subject: String(w.subject), message: String(w.message) }));
    const text = JSON.stringify(list);
    if (text === p.warningsText) return false;
    p.warnings = list;
    p.warningsText = text;
    this.warningsDirty = true;
    this.changed = true;
    return true;
  }

  /**
   * The derived warnings of what changed, then the list: providers' own first, in decision order. The list
   * is rebuilt only when a warning came, went or changed: a task moving in a service with routes leaves it
   * as it was (the same object, so a plane or a worker sees no change and compares nothing).
   */
  private refreshWarnings(upserted: readonly string[], removed: readonly string[], allRoutes: boolean): void {
    const vipKeys = new Set(this.vipKeysDirty);
    const routes = new Set<Route>(this.routesAdded);
    let changed = false;
    for (const r of this.routesGone) if (this.routeWarnings.delete(r)) changed = true;
    for (const id of [...upserted, ...removed]) {
      for (const r of this.routesByService.get(id) ?? []) routes.add(r);
      for (const [k] of this.serviceClaims.get(id)?.vips ?? []) vipKeys.add(k);
    }
    for (const key of vipKeys) {
      const w = this.vipBook.winner(key);
      const svc = w && this.services.get(w.entry.service);
      const had = this.vipWarnings.get(key);
      if (w && svc && svc.endpoints.length === 0) {
        if (had?.provider === w.provider) continue;
        this.vipWarnings.set(key, { provider: w.provider, subject: key, message: `VIP ${key} has no endpoints` });
        changed = true;
      } else if (this.vipWarnings.delete(key)) changed = true;
    }
    for (const r of allRoutes ? this.routes : routes) {
      const list: TableWarning[] = [];
      if (!this.services.has(r.service))
        list.push({
          provider: r.provider,
          subject: r.id,
          message: `route ${r.id} names service ${r.service}, which no provider has; it answers 503`,
        });
      if (!this.entrypoints[r.entrypoint])
        list.push({
          provider: r.provider,
          subject: r.id,
          message: `route ${r.id} names entrypoint ${r.entrypoint}, which is not defined; it is not served`,
        });
      const had = this.routeWarnings.get(r);
      if (list.length) {
        if (had && sameWarnings(had, list)) continue;
        this.routeWarnings.set(r, list);
        changed = true;
      } else if (this.routeWarnings.delete(r)) changed = true;
    }
    if (!changed && !this.warningsDirty) return;
    const out: TableWarning[] = [];
    for (const p of this.order) for (const w of p.warnings) out.push({ provider: p.name, subject: w.subject, message: w.message });
    for (const key of [...this.vipWarnings.keys()].sort()) out.push(this.vipWarnings.get(key) as TableWarning);
    for (const r of [...this.routeWarnings.keys()].sort(compareRoutes)) out.push(...(this.routeWarnings.get(r) as TableWarning[]));
    this.warnings = deepFreeze(out);
  }
}

function sameWarnings(a: readonly TableWarning[], b: readonly TableWarning[]): boolean {
  return (
    a.length === b.length && a.every((w, i) => w.provider === b[i]!.provider && w.subject === b[i]!.subject && w.message === b[i]!.message)
  );
}

function sameVips(a: ServiceEntry, b: ServiceEntry): boolean {
  return a.local.vips === b.local.vips || JSON.stringify(a.local.vips) === JSON.stringify(b.local.vips);
}

function routeEntry(id: string, seq: number, r: SnapshotRoute): RouteEntry {
  const route = normalizeRoute(r);
  const json = JSON.stringify(route);
  return { id, seq, route, raw: r, json, sum: sumOf(`${id}\0${json}`), key: routeKey(route) };
}
