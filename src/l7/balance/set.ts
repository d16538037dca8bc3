/**
 * `UpstreamSet`: the upstreams of one service under one routing table, with its balancer.
 *
 * Built per service per table, it reuses the `Upstream` objects of the previous table's set for
 * endpoints that remain (same `address:port`), so in-flight counts, health verdicts, EWMA latency and
 * slow-start progress survive a table swap; only weight and table health are taken from the new table.
 * When a service's endpoints and balance are unchanged, the previous set itself is reused, balancer state
 * (round-robin position, smooth-WRR currents) included. A table's sets are an `OverlayMap` by service id:
 * `buildUpstreamSets` walks every service, `patchUpstreamSets` only the ones a table change names.
 *
 * `availableAt(now)` is cached and recomputed only when some upstream's availability changed (the
 * process-wide epoch moved) or a passive ejection expired, so a pick does not re-test every upstream.
 */
import type { Balance, RoutingTable, Service } from '../../model/types.js';
import { createBalancer, resolveBalanceOptions } from './balancer.js';
import { StickySecrets } from './sticky.js';
import type { BalanceOptions, Balancer, PickContext, ResolvedBalanceOptions, UpstreamPool } from './types.js';
import { OverlayMap } from './overlay-map.js';
import { availabilityEpoch, endpointKey, Upstream, type UpstreamGroup } from './upstream.js';

export interface UpstreamSetStats {
  serviceId: string;
  algorithm: Balance['algorithm'];
  total: number;
  available: number;
  inflight: number;
  upstreams: Array<{
    key: string;
    weight: number;
    health: string;
    activeHealthy: boolean;
    ejectedForMs: number;
    available: boolean;
    inflight: number;
    ewmaMs: number;
    requestsTotal: number;
    failuresTotal: number;
  }>;
}

function signatureOf(service: Service): string {
  let s = JSON.stringify(service.balance);
  for (const e of service.endpoints) s += `|${endpointKey(e.address, e.port)} ${e.weight} ${e.health}`;
  return s;
}

export class UpstreamSet implements UpstreamPool, UpstreamGroup {
  readonly serviceId: string;
  readonly balance: Balance;
  readonly all: readonly Upstream[];
  readonly balancer: Balancer;
  readonly now: () => number;
  readonly options: ResolvedBalanceOptions;
  /** Endpoints and balance, to tell whether the next table changed this service. */
  readonly signature: string;
  private readonly byKey = new Map<string, Upstream>();
  private cached: Upstream[] = [];
  private cachedEpoch = -1;
  private cachedUntil = 0;

  /**
   * @param previous the same service's set under the previous table, whose upstreams are reused.
   * @param options resolved once per plane (`resolveBalanceOptions`) and passed to every set, or raw
   *   options; default: the previous set's.
   */
  constructor(service: Service, previous?: UpstreamSet, options?: BalanceOptions | ResolvedBalanceOptions) {
    this.serviceId = service.id;
    this.balance = service.balance;
    this.options = isResolved(options)
      ? options
      : options !== undefined
        ? resolveBalanceOptions(options)
        : (previous?.options ?? resolveBalanceOptions());
    this.now = this.options.now;
    this.signature = signatureOf(service);
    const now = this.now();
    const all: Upstream[] = [];
    for (const e of service.endpoints) {
      const key = endpointKey(e.address, e.port);
      if (this.byKey.has(key)) continue;
      let u = previous?.get(key);
      if (u) u.updateFrom(e);
      else u = new Upstream(e, now);
      u.group = this;
      this.byKey.set(key, u);
      all.push(u);
    }
    this.all = all;
    this.balancer = createBalancer(service.balance, this, this.options);
  }

  get(key: string): Upstream | undefined {
    return this.byKey.get(key);
  }

  /** Available upstreams now (cached; do not mutate). */
  available(): readonly Upstream[] {
    return this.availableAt(this.now());
  }

  availableAt(now: number): readonly Upstream[] {
    if (this.cachedEpoch !== availabilityEpoch() || now >= this.cachedUntil) this.refresh(now);
    return this.cached;
  }

  pick(ctx: PickContext): Upstream | undefined {
    return this.balancer.pick(ctx);
  }

  stats(): UpstreamSetStats {
    const now = this.now();
    const avail = this.availableAt(now);
    let inflight = 0;
    const upstreams = this.all.map((u) => {
      inflight += u.inflight;
      return {
        key: u.key,
        weight: u.weight,
        health: u.health,
        activeHealthy: u.activeHealthy,
        ejectedForMs: Math.max(0, u.passiveEjectedUntil - now),
        available: u.isAvailable(now),
        inflight: u.inflight,
        ewmaMs: u.ewmaMs,
        requestsTotal: u.requestsTotal,
        failuresTotal: u.failuresTotal,
      };
    });
    return {
      serviceId: this.serviceId,
      algorithm: this.balance.algorithm,
      total: this.all.length,
      available: avail.length,
      inflight,
      upstreams,
    };
  }

  private refresh(now: number): void {
    const epoch = availabilityEpoch();
    const list: Upstream[] = [];
    let until = Infinity;
    for (const u of this.all) {
      if (u.isAvailable(now)) list.push(u);
      else if (u.passiveEjectedUntil > now && u.activeHealthy && u.inService && u.passiveEjectedUntil < until)
        until = u.passiveEjectedUntil;
    }
    this.cached = list;
    this.cachedEpoch = epoch;
    this.cachedUntil = until;
  }
}

function isResolved(o: BalanceOptions | ResolvedBalanceOptions | undefined): o is ResolvedBalanceOptions {
  return (
    o !== undefined &&
    typeof o.now === 'function' &&
    typeof o.rnd === 'function' &&
    o.slowStartMs !== undefined &&
    o.stickySecret instanceof StickySecrets &&
    o.ringPointsPerEndpoint !== undefined
  );
}

/** The sets of one compiled table, by service id: a persistent map, so the next table's is made by patching. */
export type UpstreamSets = OverlayMap<UpstreamSet>;

/** `previous` again when it still fits `service` (same options, endpoints and balance), else a new set over its upstreams. */
function setFor(service: Service, previous: UpstreamSet | undefined, options: ResolvedBalanceOptions): UpstreamSet {
  if (previous && previous.options === options && previous.signature === signatureOf(service)) return previous;
  return new UpstreamSet(service, previous, options);
}

/**
 * One set per service of `table`, reusing `previous` (the sets of the table before): an unchanged
 * service keeps its set, a changed one gets a new set over reused upstreams. Pass the same resolved
 * options every time (`resolveBalanceOptions` once per plane): a set made with other options is not reused.
 */
export function buildUpstreamSets(
  table: Pick<RoutingTable, 'services'>,
  previous?: ReadonlyMap<string, UpstreamSet>,
  options?: BalanceOptions | ResolvedBalanceOptions,
): UpstreamSets {
  const resolved = isResolved(options) ? options : resolveBalanceOptions(options);
  const out: Array<[string, UpstreamSet]> = [];
  for (const [id, service] of table.services) out.push([id, setFor(service, previous?.get(id), resolved)]);
  return OverlayMap.from(out);
}

/**
 * The sets of `table` made from `previous`, the sets of the table before, when only the services `ids`
 * may differ: each of them gets its set as `buildUpstreamSets` would make it (kept, made anew over reused
 * upstreams, or gone when `table` no longer has the service); every other set is `previous`'s. Costs the
 * named services, not the table.
 */
export function patchUpstreamSets(
  table: Pick<RoutingTable, 'services'>,
  previous: UpstreamSets,
  ids: Iterable<string>,
  options: ResolvedBalanceOptions,
): UpstreamSets {
  const set: Array<[string, UpstreamSet]> = [];
  const gone: string[] = [];
  for (const id of ids) {
    const service = table.services.get(id);
    if (service) set.push([id, setFor(service, previous.get(id), options)]);
    else gone.push(id);
  }
  return previous.with(set, gone);
}
