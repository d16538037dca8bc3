/**
 * Passive health: outlier detection from real traffic (Envoy `outlier_detection`, consecutive-5xx mode).
 *
 * The proxy reports every finished attempt with `recordResult(upstream, ok)`; `ok = false` for a connect
 * failure, a reset before the response, or a 5xx. After `consecutiveFailures` failures in a row (default
 * 5) the upstream is ejected — balancers skip it — for `baseEjectionMs` × 2^(earlier ejections), capped
 * at `maxEjectionMs` (default 10 s doubling to 5 min), so a flapping upstream stays out longer each time.
 * The doubling starts over once an upstream has gone `maxEjectionMs` past its last ejection's end.
 * An ejection ends by itself (balancers compare the time); no timer runs.
 *
 * Never more than `maxEjectionPercent` (default 50%) of a service's in-service upstreams are out at once
 * (counting those down by active checks, rounding down), so one bad deploy cannot empty a service: a
 * service with a single upstream is never ejected, one with two or three at most one at a time.
 */
import type { Upstream } from '../balance/upstream.js';
import { performance } from 'node:perf_hooks';

export interface OutlierOptions {
  /** Failures in a row that eject; default 5. */
  consecutiveFailures?: number;
  /** First ejection's length in ms; default 10 s. */
  baseEjectionMs?: number;
  /** Longest ejection in ms; default 300 s. */
  maxEjectionMs?: number;
  /** Most of a service's in-service upstreams that may be out at once, percent; default 50. */
  maxEjectionPercent?: number;
  /** Clock for upstreams not in a set; an upstream's set's clock is used otherwise. */
  now?: () => number;
  /** Called on each ejection (logs, metrics); not called when it ends. */
  onEject?: (e: EjectionEvent) => void;
}

export interface EjectionEvent {
  serviceId: string;
  key: string;
  /** Length of this ejection, ms. */
  durationMs: number;
  /** Ejections of this upstream so far, this one included. */
  ejections: number;
}

export interface OutlierStats {
  /** Results recorded, failures among them. */
  resultsTotal: number;
  failuresTotal: number;
  ejectionsTotal: number;
  /** Ejections that were due but refused by `maxEjectionPercent`. */
  ejectionsRefusedTotal: number;
}

export class OutlierDetector {
  readonly consecutiveFailures: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
  private readonly now: () => number;
  private readonly onEject: ((e: EjectionEvent) => void) | undefined;
  private counters: OutlierStats = { resultsTotal: 0, failuresTotal: 0, ejectionsTotal: 0, ejectionsRefusedTotal: 0 };

  constructor(opts: OutlierOptions = {}) {
    this.consecutiveFailures = positive(opts.consecutiveFailures, 5, 'consecutiveFailures');
    this.baseEjectionMs = positive(opts.baseEjectionMs, 10_000, 'baseEjectionMs');
    this.maxEjectionMs = Math.max(this.baseEjectionMs, positive(opts.maxEjectionMs, 300_000, 'maxEjectionMs'));
    const pct = opts.maxEjectionPercent ?? 50;
    if (!(pct >= 0 && pct <= 100)) throw new RangeError(`maxEjectionPercent must be 0..100, got ${pct}`);
    this.maxEjectionPercent = pct;
    this.now = opts.now ?? (() => performance.now());
    this.onEject = opts.onEject;
  }

  /** Record one finished attempt. Returns true when this result ejected the upstream. */
  recordResult(u: Upstream, ok: boolean): boolean {
    this.counters.resultsTotal++;
    if (ok) {
      u.consecutiveFailures = 0;
      return false;
    }
    this.counters.failuresTotal++;
    u.failuresTotal++;
    if (++u.consecutiveFailures < this.consecutiveFailures) return false;
    const group = u.group;
    const now = group ? group.now() : this.now();
    if (u.passiveEjectedUntil > now) return false; // already out; late results of requests in flight
    if (group && !this.mayEject(u, group.all, now)) {
      this.counters.ejectionsRefusedTotal++;
      return false;
    }
    if (u.ejections > 0 && now - u.lastEjectionEndsAt > this.maxEjectionMs) u.ejections = 0;
    const durationMs = Math.min(this.maxEjectionMs, this.baseEjectionMs * 2 ** Math.min(u.ejections, 30));
    u.ejections++;
    u.consecutiveFailures = 0;
    u.lastEjectionEndsAt = now + durationMs;
    u.setEjectedUntil(now + durationMs);
    this.counters.ejectionsTotal++;
    this.onEject?.({ serviceId: group?.serviceId ?? '', key: u.key, durationMs, ejections: u.ejections });
    return true;
  }

  stats(): OutlierStats {
    return { ...this.counters };
  }

  /** True when ejecting `u` keeps the out-of-service share within `maxEjectionPercent`. */
  private mayEject(u: Upstream, all: readonly Upstream[], now: number): boolean {
    let eligible = 0;
    let out = 0;
    for (const o of all) {
      if (!o.inService) continue;
      eligible++;
      if (o !== u && (!o.activeHealthy || o.passiveEjectedUntil > now)) out++;
    }
    return out + 1 <= Math.floor((eligible * this.maxEjectionPercent) / 100);
  }
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`${name} must be a positive number, got ${v}`);
  return v;
}
