/**
 * The L4 plane's Prometheus metrics, declared once: names, help and labels are all here, created when the
 * plane is constructed. Nothing on the connection path touches prom-client: sessions and flows count in
 * plain numbers (`FrontStats` per VIP or SNI entrypoint, `Backend` per endpoint), and each metric's
 * collect() copies them in at scrape time.
 *
 * The metrics are got-or-created on the registry (telemetry's `metric()`): a second L4 plane made against
 * the same registry gets the first one's metrics, which keep reading the first plane. One L4 plane per
 * registry.
 */
import { metric, prom, type Registry } from '../telemetry/metrics.js';
import { L4_FAILURES } from './options.js';
import type { Backend, ServicePool } from './pool.js';
import type { FrontStats } from './types.js';

/** What the metrics read at scrape time: the plane's own maps (never replaced, only updated). */
export interface L4MetricsSource {
  /** Counters by VIP key or `sni/<entrypoint>`. */
  readonly stats: ReadonlyMap<string, FrontStats>;
  /** Endpoints by `endpointKey`. */
  readonly backends: ReadonlyMap<string, Backend>;
  /** Service pools by service id. */
  readonly pools: ReadonlyMap<string, ServicePool>;
  /** Move the bytes open sessions have counted since their last flush into `stats` and `backends`. */
  flush(): void;
  /** The active checks' probes so far (monotonic; none in a worker that does not probe). */
  checks(): { checksTotal: number; failuresTotal: number };
}

/** Register the `portico_l4_*` metrics on `r`, reading `src` when scraped. */
export function registerL4Metrics(r: Registry, src: L4MetricsSource): void {
  const fronts = () => {
    src.flush();
    return src.stats;
  };
  metric(
    r,
    'portico_l4_connections_total',
    () =>
      new prom.Counter({
        name: 'portico_l4_connections_total',
        help: 'TCP connections accepted, by VIP (or sni/<entrypoint>)',
        labelNames: ['vip'],
        registers: [],
        collect() {
          this.reset();
          for (const [k, s] of src.stats) this.inc({ vip: k }, s.connections);
        },
      }),
  );
  metric(
    r,
    'portico_l4_active_connections',
    () =>
      new prom.Gauge({
        name: 'portico_l4_active_connections',
        help: 'TCP connections open, by VIP',
        labelNames: ['vip'],
        registers: [],
        collect() {
          this.reset();
          for (const [k, s] of src.stats) this.set({ vip: k }, s.active);
        },
      }),
  );
  metric(
    r,
    'portico_l4_bytes_total',
    () =>
      new prom.Counter({
        name: 'portico_l4_bytes_total',
        help: 'Bytes forwarded, by VIP and direction (in: client to endpoint)',
        labelNames: ['vip', 'direction'],
        registers: [],
        collect() {
          this.reset();
          for (const [k, s] of fronts()) {
            this.inc({ vip: k, direction: 'in' }, s.bytesIn);
            this.inc({ vip: k, direction: 'out' }, s.bytesOut);
          }
        },
      }),
  );
  metric(
    r,
    'portico_l4_rejected_total',
    () =>
      new prom.Counter({
        name: 'portico_l4_rejected_total',
        help: `Connections or flows refused or failed, by VIP and reason (${L4_FAILURES.join(', ')})`,
        labelNames: ['vip', 'reason'],
        registers: [],
        collect() {
          this.reset();
          for (const [k, s] of src.stats) for (const [reason, n] of s.rejected) this.inc({ vip: k, reason }, n);
        },
      }),
  );
  metric(
    r,
    'portico_l4_udp_datagrams_total',
    () =>
      new prom.Counter({
        name: 'portico_l4_udp_datagrams_total',
        help: 'UDP datagrams forwarded, by VIP and direction',
        labelNames: ['vip', 'direction'],
        registers: [],
        collect() {
          this.reset();
          for (const [k, s] of src.stats) {
            if (s.datagramsIn === 0 && s.datagramsOut === 0) continue;
            this.inc({ vip: k, direction: 'in' }, s.datagramsIn);
            this.inc({ vip: k, direction: 'out' }, s.datagramsOut);
          }
        },
      }),
  );
  metric(
    r,
    'portico_l4_udp_flows',
    () =>
      new prom.Gauge({
        name: 'portico_l4_udp_flows',
        help: 'UDP flows open, by VIP',
        labelNames: ['vip'],
        registers: [],
        collect() {
          this.reset();
          for (const [k, s] of src.stats) if (s.flows > 0) this.set({ vip: k }, s.flows);
        },
      }),
  );
  metric(
    r,
    'portico_l4_endpoint_connections_total',
    () =>
      new prom.Counter({
        name: 'portico_l4_endpoint_connections_total',
        help: 'Connections (TCP) and flows (UDP) established to an endpoint',
        labelNames: ['endpoint'],
        registers: [],
        collect() {
          this.reset();
          for (const b of src.backends.values()) this.inc({ endpoint: b.key }, b.connections);
        },
      }),
  );
  metric(
    r,
    'portico_l4_endpoint_active_connections',
    () =>
      new prom.Gauge({
        name: 'portico_l4_endpoint_active_connections',
        help: 'Connections and flows open to an endpoint',
        labelNames: ['endpoint'],
        registers: [],
        collect() {
          this.reset();
          for (const b of src.backends.values()) this.set({ endpoint: b.key }, b.active);
        },
      }),
  );
  metric(
    r,
    'portico_l4_endpoint_bytes_total',
    () =>
      new prom.Counter({
        name: 'portico_l4_endpoint_bytes_total',
        help: 'Bytes forwarded to (in) and from (out) an endpoint',
        labelNames: ['endpoint', 'direction'],
        registers: [],
        collect() {
          this.reset();
          fronts();
          for (const b of src.backends.values()) {
            this.inc({ endpoint: b.key, direction: 'in' }, b.bytesIn);
            this.inc({ endpoint: b.key, direction: 'out' }, b.bytesOut);
          }
        },
      }),
  );
  metric(
    r,
    'portico_l4_endpoint_failures_total',
    () =>
      new prom.Counter({
        name: 'portico_l4_endpoint_failures_total',
        help: 'Connects to an endpoint that failed, by reason (connect-failed, connect-timeout)',
        labelNames: ['endpoint', 'reason'],
        registers: [],
        collect() {
          this.reset();
          for (const b of src.backends.values()) {
            this.inc({ endpoint: b.key, reason: 'connect-failed' }, b.connectFailures);
            this.inc({ endpoint: b.key, reason: 'connect-timeout' }, b.connectTimeouts);
          }
        },
      }),
  );
  metric(
    r,
    'portico_l4_health_checks_total',
    () =>
      new prom.Counter({
        name: 'portico_l4_health_checks_total',
        help: 'Active check probes (TCP connects) completed; with several workers only one probes',
        registers: [],
        collect() {
          this.reset();
          this.inc(src.checks().checksTotal);
        },
      }),
  );
  metric(
    r,
    'portico_l4_health_check_failures_total',
    () =>
      new prom.Counter({
        name: 'portico_l4_health_check_failures_total',
        help: 'Active check probes that failed (refused, timed out)',
        registers: [],
        collect() {
          this.reset();
          this.inc(src.checks().failuresTotal);
        },
      }),
  );
  metric(
    r,
    'portico_l4_endpoint_up',
    () =>
      new prom.Gauge({
        name: 'portico_l4_endpoint_up',
        help: 'Whether an endpoint takes new connections (1) or not (0: down, ejected, draining, unhealthy); over several workers, the lowest',
        labelNames: ['endpoint'],
        // A 0/1 per worker: the workers' scrapes merge to their minimum, not their sum.
        aggregator: 'min',
        registers: [],
        collect() {
          this.reset();
          const now = Date.now();
          const up = new Map<string, number>();
          for (const p of src.pools.values())
            for (const m of p.members.values())
              if (m.present) up.set(m.backend.key, Math.max(up.get(m.backend.key) ?? 0, m.state(now) === 'serving' ? 1 : 0));
          for (const [k, v] of up) this.set({ endpoint: k }, v);
        },
      }),
  );
}
