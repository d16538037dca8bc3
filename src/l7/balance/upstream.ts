/**
 * Runtime state of one endpoint of one service: what the balancers read (availability, weight, in-flight
 * requests, latency) and what health checking writes (active up/down, passive ejection).
 *
 * An `Upstream` outlives routing tables: `UpstreamSet` hands the same object to the next table's set
 * while the endpoint (`address:port`) stays in its service, so in-flight counts, health verdicts,
 * latency and slow-start progress survive a table swap.
 *
 * Availability changes (active verdict, ejection, a new table weight or health) bump a process-wide
 * epoch, which is how each `UpstreamSet` knows its cached list of available upstreams is stale.
 */
import type { Endpoint, HealthState } from '../../model/types.js';

let epoch = 0;

/** Bumped on every availability-relevant change of any upstream. */
export function availabilityEpoch(): number {
  return epoch;
}

/** Time constant of the latency EWMA (Finagle's peak EWMA default). */
export const EWMA_DECAY_MS = 10_000;

/** `10.0.0.1:80`, `[fd00::1]:80`. */
export function endpointKey(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The set an upstream currently belongs to, as passive health needs it (its siblings). */
export interface UpstreamGroup {
  readonly serviceId: string;
  readonly all: readonly Upstream[];
  /** The clock `passiveEjectedUntil` and `warmSince` are measured on. */
  readonly now: () => number;
}

export class Upstream {
  /** `address:port` (`[v6]:port`): stable identity across tables. */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** When this upstream first appeared (the clock of the set that made it). */
  readonly addedAt: number;
  /** Start of the current slow-start ramp: `addedAt`, or when active checks last brought it back up. */
  warmSince: number;
  /** Requests sent and not yet finished. */
  inflight = 0;
  /** Peak-EWMA response latency in ms; 0 until the first sample. */
  ewmaMs = 0;
  private ewmaAt = 0;
  /** The current set (updated when a new table reuses this object). */
  group: UpstreamGroup | undefined = undefined;

  // Passive health (outlier detection), written by `OutlierDetector`.
  consecutiveFailures = 0;
  /** Ejections so far; the next ejection lasts base × 2^ejections (capped). */
  ejections = 0;
  lastEjectionEndsAt = 0;

  // Counters for metrics (monotonic).
  requestsTotal = 0;
  failuresTotal = 0;

  private _weight: number;
  private _health: HealthState;
  private _activeHealthy = true;
  private _ejectedUntil = 0;

  constructor(endpoint: Endpoint, now: number) {
    this.address = endpoint.address;
    this.port = endpoint.port;
    this.key = endpointKey(endpoint.address, endpoint.port);
    this._weight = endpoint.weight;
    this._health = endpoint.health;
    this.addedAt = now;
    this.warmSince = now;
    epoch++;
  }

  /** Table weight, 0..256 (0 = draining). */
  get weight(): number {
    return this._weight;
  }

  /** Table (source) health. */
  get health(): HealthState {
    return this._health;
  }

  /** Active health verdict; true until checks say otherwise (and when the service has no check). */
  get activeHealthy(): boolean {
    return this._activeHealthy;
  }

  /** Ejected by passive health until this time (set clock, ms); 0 = not ejected. */
  get passiveEjectedUntil(): number {
    return this._ejectedUntil;
  }

  /** Take weight and health from the next table's endpoint. */
  updateFrom(endpoint: Endpoint): void {
    if (endpoint.weight !== this._weight || endpoint.health !== this._health) {
      this._weight = endpoint.weight;
      this._health = endpoint.health;
      epoch++;
    }
  }

  /** Set by active health checking on an up↔down transition. Coming back up restarts slow start. */
  setActiveHealthy(healthy: boolean, now: number): void {
    if (healthy === this._activeHealthy) return;
    this._activeHealthy = healthy;
    if (healthy) this.warmSince = now;
    epoch++;
  }

  /** Eject until `until` (passive health); `0` lifts an ejection. */
  setEjectedUntil(until: number): void {
    if (until === this._ejectedUntil) return;
    this._ejectedUntil = until;
    epoch++;
  }

  /** Served by the table (not unhealthy/draining, weight > 0): eligible before health checks. */
  get inService(): boolean {
    return this._weight > 0 && this._health !== 'unhealthy' && this._health !== 'draining';
  }

  /** May take a new request at `now`. */
  isAvailable(now: number): boolean {
    return this._activeHealthy && this._ejectedUntil <= now && this.inService;
  }

  /** A request starts on this upstream. */
  begin(): void {
    this.inflight++;
    this.requestsTotal++;
  }

  /**
   * A request finished. Pass `latencyMs` (time to response header) for a response; leave it out for a
   * connect failure or reset, so a fast-failing upstream never looks fast to latency-aware balancers
   * (passive health deals with those).
   */
  end(now: number, latencyMs?: number): void {
    if (this.inflight > 0) this.inflight--;
    if (latencyMs !== undefined) this.observeLatency(latencyMs, now);
  }

  /**
   * Peak EWMA (Finagle): a sample above the average replaces it at once (react to slowness fast), a
   * sample below it is blended in with weight 1 − e^(−Δt/τ) (forget slowness gradually).
   */
  observeLatency(latencyMs: number, now: number): void {
    const rtt = latencyMs > 0 ? latencyMs : 0.001;
    if (this.ewmaMs === 0 || rtt > this.ewmaMs) {
      this.ewmaMs = rtt;
    } else {
      const dt = Math.max(0, now - this.ewmaAt);
      const w = Math.exp(-dt / EWMA_DECAY_MS);
      this.ewmaMs = this.ewmaMs * w + rtt * (1 - w);
    }
    this.ewmaAt = now;
  }
}
