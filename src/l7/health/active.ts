/**
 * Active health checking: for every service with a `health` check in the table, each endpoint is probed
 * every `intervalMs` (± `jitter`, first probe at a random point of the first interval so checks spread
 * out), with at most one probe in flight per endpoint and every timer unref'd.
 *
 * Verdicts follow HAProxy: an endpoint starts UP (as HAProxy starts servers, and as the model's `unknown`
 * is served); `fall` consecutive failures take it DOWN, then `rise` consecutive successes bring it back
 * UP. Only up↔down transitions are propagated — to the endpoint's `Upstream` (which balancers read) and to
 * `onTransition` — never individual probes (Traefik's `SetStatus` rule).
 *
 * `update(table, sets)` reconciles with a new table: endpoints that remain keep their state and schedule,
 * removed ones stop (timer cleared, a probe in flight cancelled), new ones start UP. `patch(table, ids,
 * sets)` does the same for the named services only, when nothing else changed. The same endpoint in two
 * services is checked once per service: each service has its own check.
 *
 * In `follow` mode (a data-plane worker other than the one that probes, src/workers/) the checker keeps
 * the same targets, state and Upstream bindings but never probes: verdicts come from `setVerdict`, and move
 * the Upstream as a transition found by a probe would. In `probe` mode `setVerdict` seeds a target's state
 * (a restarted prober is handed the verdicts found before it: a DOWN endpoint stays DOWN until `rise`
 * successes). Verdicts given before the first table are kept until it creates the targets they name.
 */
import type { RoutingTable, HealthCheck, Service } from '../../model/types.js';
import type { Upstream } from '../balance/upstream.js';
import { endpointKey } from '../balance/upstream.js';
import { probe as netProbe, type ProbeFn, type ProbeHandle, type ProbeReason, type ProbeResult } from './probe.js';
import { performance } from 'node:perf_hooks';

export interface HealthTransition {
  serviceId: string;
  /** `address:port` / `[v6]:port`. */
  key: string;
  address: string;
  port: number;
  healthy: boolean;
  /** The last probe's reason (`ok` when coming up). */
  reason: ProbeReason;
  status?: number;
}

export interface HealthCheckerOptions {
  /** Called once per up↔down change. */
  onTransition?: (t: HealthTransition) => void;
  /** Uniform random in [0,1) for jitter; default Math.random. */
  rnd?: () => number;
  /** Interval jitter as a fraction (0.1 = ±10%); default 0.1. */
  jitter?: number;
  /** Clock for upstreams not in a set (their set's clock is used otherwise). */
  now?: () => number;
  /** The probe; default the real `net` one. */
  probe?: ProbeFn;
  /** `probe` (default): probe every target; `follow`: never probe, take verdicts from `setVerdict`. */
  mode?: 'probe' | 'follow';
}

/** An endpoint found DOWN (`HealthChecker.down()`). */
export interface DownEndpoint {
  serviceId: string;
  key: string;
  reason: string | undefined;
}

/** The up-to-date lookup of upstreams: the plane's current sets. */
export interface UpstreamLookup {
  get(serviceId: string): { get(key: string): Upstream | undefined } | undefined;
}

export interface EndpointHealth {
  serviceId: string;
  key: string;
  up: boolean;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
  checksTotal: number;
  failuresTotal: number;
  inFlight: boolean;
  last?: ProbeResult;
}

export interface HealthCheckerStats {
  endpoints: number;
  up: number;
  down: number;
  inFlight: number;
  /** Monotonic, including endpoints since removed. */
  checksTotal: number;
  failuresTotal: number;
  transitionsTotal: number;
}

class Target {
  up = true;
  successes = 0;
  failures = 0;
  checksTotal = 0;
  failuresTotal = 0;
  last: ProbeResult | undefined = undefined;
  timer: NodeJS.Timeout | undefined = undefined;
  inflight: ProbeHandle | undefined = undefined;
  upstream: Upstream | undefined = undefined;
  removed = false;
  /** Why it went DOWN (the probe's reason, or the verdict's). */
  reason: string | undefined = undefined;
  constructor(
    readonly serviceId: string,
    readonly key: string,
    readonly address: string,
    readonly port: number,
    public check: HealthCheck,
  ) {}
}

export class HealthChecker {
  /** Targets by service id, then by endpoint key. */
  private readonly byService = new Map<string, Map<string, Target>>();
  private readonly onTransition: ((t: HealthTransition) => void) | undefined;
  private readonly rnd: () => number;
  private readonly jitter: number;
  private readonly now: () => number;
  private readonly probe: ProbeFn;
  readonly mode: 'probe' | 'follow';
  private closed = false;
  /** Verdicts given before the first table, by `<service id> <key>`: applied to the targets it creates. */
  private seeds: Map<string, { up: boolean; reason: string | undefined }> | undefined = new Map();
  private totals = { checksTotal: 0, failuresTotal: 0, transitionsTotal: 0 };

  constructor(opts: HealthCheckerOptions = {}) {
    this.onTransition = opts.onTransition;
    this.rnd = opts.rnd ?? Math.random;
    const jitter = opts.jitter ?? 0.1;
    if (!(jitter >= 0 && jitter < 1)) throw new RangeError(`jitter must be in [0, 1), got ${jitter}`);
    this.jitter = jitter;
    this.now = opts.now ?? (() => performance.now());
    this.probe = opts.probe ?? netProbe;
    this.mode = opts.mode ?? 'probe';
  }

  /**
   * Reconcile with `table`: start checks for new endpoints of services with a check, keep state for those
   * that remain, stop removed ones. `sets` (the plane's `UpstreamSet`s for this table) binds each
   * endpoint to its `Upstream`, which gets the current verdict at once and every transition after.
   * No-op after `stop()`.
   */
  update(table: Pick<RoutingTable, 'services'>, sets?: UpstreamLookup): void {
    if (this.closed) return;
    for (const service of table.services.values()) this.reconcile(service.id, service, sets);
    for (const id of [...this.byService.keys()]) if (!table.services.has(id)) this.reconcile(id, undefined, sets);
    this.seeds = undefined;
  }

  /**
   * Reconcile the services `ids` only, with what `table` has for them now (nothing: their checks stop), as
   * `update` would; the checks of every other service are left as they are. For a table that differs from
   * the last one reconciled in these services only: costs their endpoints, not the table's. No-op after
   * `stop()`.
   */
  patch(table: Pick<RoutingTable, 'services'>, ids: Iterable<string>, sets?: UpstreamLookup): void {
    if (this.closed) return;
    for (const id of ids) this.reconcile(id, table.services.get(id), sets);
    this.seeds = undefined;
  }

  /**
   * Take a verdict found elsewhere for endpoint `key` of service `serviceId`: the target takes it (its
   * Upstream too) and counts its probes afresh from it, so in `probe` mode a DOWN one needs `rise` successes
   * to come back. Returns whether the verdict changed anything; `onTransition` is not called (it reports
   * what probes find). Before the first table the verdict waits for the target; after it, a verdict for an
   * endpoint not checked is ignored.
   */
  setVerdict(serviceId: string, key: string, up: boolean, reason?: string): boolean {
    if (this.closed) return false;
    const t = this.byService.get(serviceId)?.get(key);
    if (!t) {
      this.seeds?.set(`${serviceId} ${key}`, { up, reason });
      return false;
    }
    if (t.up === up) return false;
    t.successes = 0;
    t.failures = 0;
    t.up = up;
    t.reason = up ? undefined : reason;
    if (t.upstream) t.upstream.setActiveHealthy(up, this.clockOf(t.upstream));
    return true;
  }

  /** The endpoints DOWN now, with why. */
  down(): DownEndpoint[] {
    const out: DownEndpoint[] = [];
    for (const targets of this.byService.values())
      for (const t of targets.values()) if (!t.up) out.push({ serviceId: t.serviceId, key: t.key, reason: t.reason });
    return out;
  }

  /** Current verdict of an endpoint of a service, undefined when it is not checked. */
  isUp(serviceId: string, key: string): boolean | undefined {
    return this.byService.get(serviceId)?.get(key)?.up;
  }

  /** Stop every check (timers cleared, probes in flight cancelled). Upstreams keep their last verdict. */
  stop(): void {
    this.closed = true;
    for (const targets of this.byService.values()) for (const t of targets.values()) this.remove(t, false);
    this.byService.clear();
  }

  stats(): HealthCheckerStats {
    let endpoints = 0;
    let up = 0;
    let inFlight = 0;
    for (const targets of this.byService.values()) {
      for (const t of targets.values()) {
        endpoints++;
        if (t.up) up++;
        if (t.inflight) inFlight++;
      }
    }
    return { endpoints, up, down: endpoints - up, inFlight, ...this.totals };
  }

  /** Per-endpoint state, for the admin api. */
  endpoints(): EndpointHealth[] {
    const out: EndpointHealth[] = [];
    for (const targets of this.byService.values()) {
      for (const t of targets.values()) {
        const e: EndpointHealth = {
          serviceId: t.serviceId,
          key: t.key,
          up: t.up,
          consecutiveSuccesses: t.successes,
          consecutiveFailures: t.failures,
          checksTotal: t.checksTotal,
          failuresTotal: t.failuresTotal,
          inFlight: t.inflight !== undefined,
        };
        if (t.last) e.last = { ...t.last };
        out.push(e);
      }
    }
    return out;
  }

  /**
   * The targets of service `id` made to fit `service` (undefined: the table has no such service): one per
   * endpoint when it has a check (kept when it stays, started UP when new), none otherwise; each bound to
   * its Upstream in `sets`.
   */
  private reconcile(id: string, service: Service | undefined, sets: UpstreamLookup | undefined): void {
    const had = this.byService.get(id);
    const check = service?.health;
    if (!service || !check) {
      if (!had) return;
      for (const t of had.values()) this.remove(t, true);
      this.byService.delete(id);
      return;
    }
    const targets = new Map<string, Target>();
    const set = sets?.get(id);
    for (const ep of service.endpoints) {
      const key = endpointKey(ep.address, ep.port);
      if (targets.has(key)) continue;
      let t = had?.get(key);
      if (!t) {
        t = new Target(id, key, ep.address, ep.port, check);
        const seed = this.seeds?.get(`${id} ${key}`);
        if (seed && !seed.up) {
          t.up = false;
          t.reason = seed.reason;
        }
        this.schedule(t, this.rnd() * check.intervalMs);
      } else {
        const before = t.check;
        t.check = check;
        if (before.intervalMs !== check.intervalMs && !t.inflight) this.schedule(t, this.rnd() * check.intervalMs);
      }
      targets.set(key, t);
      const u = set?.get(key);
      t.upstream = u;
      if (u && u.activeHealthy !== t.up) u.setActiveHealthy(t.up, this.clockOf(u));
    }
    if (had) for (const [key, t] of had) if (!targets.has(key)) this.remove(t, true);
    this.byService.set(id, targets);
  }

  /** Stop `t` (its owner forgets it). */
  private remove(t: Target, restoreUpstream: boolean): void {
    t.removed = true;
    if (t.timer) clearTimeout(t.timer);
    t.timer = undefined;
    t.inflight?.cancel();
    t.inflight = undefined;
    // The endpoint may stay in a service that no longer has a check: it must not stay down forever.
    if (restoreUpstream && t.upstream && !t.upstream.activeHealthy) t.upstream.setActiveHealthy(true, this.clockOf(t.upstream));
  }

  private schedule(t: Target, delayMs: number): void {
    if (this.mode === 'follow') return; // its verdicts come from setVerdict
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => this.run(t), Math.max(0, delayMs));
    t.timer.unref();
  }

  private run(t: Target): void {
    t.timer = undefined;
    if (t.removed || t.inflight) return;
    const c = t.check;
    const target = {
      address: t.address,
      port: t.port,
      expectStatus: c.expectStatus,
      timeoutMs: c.timeoutMs,
      ...(c.httpPath !== undefined ? { httpPath: c.httpPath } : {}),
    };
    t.inflight = this.probe(target, (r) => this.done(t, r));
  }

  private done(t: Target, r: ProbeResult): void {
    t.inflight = undefined;
    if (t.removed) return;
    t.last = r;
    t.checksTotal++;
    this.totals.checksTotal++;
    const c = t.check;
    if (r.ok) {
      t.successes++;
      t.failures = 0;
      if (!t.up && t.successes >= c.rise) this.transition(t, true, r);
    } else {
      t.failures++;
      t.successes = 0;
      t.failuresTotal++;
      this.totals.failuresTotal++;
      if (t.up && t.failures >= c.fall) this.transition(t, false, r);
    }
    const interval = c.intervalMs * (1 + this.jitter * (2 * this.rnd() - 1));
    this.schedule(t, interval - r.ms);
  }

  private transition(t: Target, up: boolean, r: ProbeResult): void {
    t.up = up;
    t.reason = up ? undefined : r.reason;
    this.totals.transitionsTotal++;
    if (t.upstream) t.upstream.setActiveHealthy(up, this.clockOf(t.upstream));
    if (!this.onTransition) return;
    const ev: HealthTransition = { serviceId: t.serviceId, key: t.key, address: t.address, port: t.port, healthy: up, reason: r.reason };
    if (r.status !== undefined) ev.status = r.status;
    try {
      this.onTransition(ev);
    } catch {
      // a listener's failure must not stop health checking; listeners log their own errors
    }
  }

  private clockOf(u: Upstream): number {
    return u.group ? u.group.now() : this.now();
  }
}
