/**
 * Request metrics without prom-client on the request path: each (entrypoint, route) has a `RequestStats`
 * of plain numbers, resolved once per compiled route, that a request updates with a few additions
 * (status counts, histogram bucket, sum). prom-client reads them only when scraped:
 *
 *  - `portico_l7_requests_total{entrypoint,route,code}`: a prom-client Counter whose collect() copies
 *    the counts in;
 *  - `portico_l7_request_duration_seconds{entrypoint,route}`: a histogram metric object the registry
 *    formats like prom-client's own (`_bucket{le}` cumulative, `_sum`, `_count`);
 *  - `portico_l7_client_aborts_total{entrypoint,route,phase}`: exchanges whose client left before they
 *    were done (outcome `client-abort`), by where they were (options.ts, CLIENT_ABORT_PHASES).
 *
 * Stats live as long as the plane (like prom-client's label children): counters never go backwards
 * across table swaps.
 */
import { prom, type Registry } from '../telemetry/metrics.js';
import { CLIENT_ABORT_PHASES, type ClientAbortPhase } from './options.js';

export const DURATION_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class RequestStats {
  /** Status codes seen and their counts (parallel; a route sees a handful of codes). */
  readonly codes: number[] = [];
  readonly counts: number[] = [];
  /** Per bucket (not cumulative); the last slot is above the highest bound. */
  readonly buckets = new Float64Array(DURATION_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  /** Client aborts, by phase (CLIENT_ABORT_PHASES' order). */
  readonly aborts = new Float64Array(CLIENT_ABORT_PHASES.length);

  constructor(
    readonly entrypoint: string,
    readonly route: string,
  ) {}

  observe(code: number, seconds: number): void {
    const codes = this.codes;
    let i = 0;
    while (i < codes.length && codes[i] !== code) i++;
    if (i === codes.length) {
      codes.push(code);
      this.counts.push(1);
    } else {
      this.counts[i] = (this.counts[i] as number) + 1;
    }
    const bounds = DURATION_BUCKETS;
    let b = 0;
    while (b < bounds.length && seconds > (bounds[b] as number)) b++;
    this.buckets[b] = (this.buckets[b] as number) + 1;
    this.sum += seconds;
    this.count++;
  }

  /** An exchange's client left while it was in `phase` (counted beside observe(), which counts its status). */
  clientAbort(phase: ClientAbortPhase): void {
    const i = CLIENT_ABORT_PHASES.indexOf(phase);
    this.aborts[i] = (this.aborts[i] as number) + 1;
  }
}

interface ValuePair {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** The histogram as a registry metric (what Registry.getMetricsAsString and getMetricsAsJSON read). */
class StatsHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames = ['entrypoint', 'route'];
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly all: () => Iterable<RequestStats>,
  ) {}

  get(): Promise<{ name: string; help: string; type: string; values: ValuePair[]; aggregator: string }> {
    const values: ValuePair[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.all()) {
      if (s.count === 0) continue;
      const labels = { entrypoint: s.entrypoint, route: s.route };
      let acc = 0;
      for (let i = 0; i < DURATION_BUCKETS.length; i++) {
        acc += s.buckets[i] as number;
        // `le` first, as prom-client's own histogram writes it
        values.push({ labels: { le: DURATION_BUCKETS[i] as number, ...labels }, value: acc, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf', ...labels }, value: s.count, metricName: bucket });
      values.push({ labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: s.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  /** Registry.resetMetrics(): the stats are the plane's; a reset starts them over. */
  reset(): void {
    for (const s of this.all()) {
      s.buckets.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

/** Where the registered metrics read from: the newest plane registered against the registry. */
interface Source {
  stats: Map<string, RequestStats>;
}
const kSource = Symbol('portico.l7.statsSource');
type Sourced = { [kSource]?: Source };

export class RequestMetrics {
  private readonly stats = new Map<string, RequestStats>();

  constructor(registry: Registry) {
    const requests = 'portico_l7_requests_total';
    const duration = 'portico_l7_request_duration_seconds';
    const aborts = 'portico_l7_client_aborts_total';
    // A plane made again against the same registry (tests, a re-registered plane) takes the metrics over.
    const existing = registry.getSingleMetric(requests) as Sourced | undefined;
    const source: Source = existing?.[kSource] ?? { stats: this.stats };
    source.stats = this.stats;
    if (!existing) {
      const counter = new prom.Counter({
        name: requests,
        help: 'HTTP requests answered, by entrypoint, route and status code',
        labelNames: ['entrypoint', 'route', 'code'],
        registers: [],
        collect() {
          this.reset();
          for (const s of source.stats.values()) {
            for (let i = 0; i < s.codes.length; i++)
              this.inc({ entrypoint: s.entrypoint, route: s.route, code: String(s.codes[i]) }, s.counts[i] as number);
          }
        },
      });
      (counter as unknown as Sourced)[kSource] = source;
      registry.registerMetric(counter);
    }
    if (!registry.getSingleMetric(aborts)) {
      registry.registerMetric(
        new prom.Counter({
          name: aborts,
          help: 'Requests whose client left (closed, reset, or half-closed where that aborts) before they were done, by entrypoint, route and where the request was',
          labelNames: ['entrypoint', 'route', 'phase'],
          registers: [],
          collect() {
            this.reset();
            for (const s of source.stats.values()) {
              for (let i = 0; i < CLIENT_ABORT_PHASES.length; i++) {
                const n = s.aborts[i] as number;
                if (n > 0) this.inc({ entrypoint: s.entrypoint, route: s.route, phase: CLIENT_ABORT_PHASES[i] as string }, n);
              }
            }
          },
        }),
      );
    }
    if (!registry.getSingleMetric(duration)) {
      registry.registerMetric(
        new StatsHistogram(duration, 'Time from request head to response end', () =>
          source.stats.values(),
        ) as unknown as prom.Metric<string>,
      );
    }
  }

  /** The stats of (entrypoint, route), made on first use and kept. */
  for(entrypoint: string, route: string): RequestStats {
    const key = `${entrypoint}\0${route}`;
    let s = this.stats.get(key);
    if (!s) {
      s = new RequestStats(entrypoint, route);
      this.stats.set(key, s);
    }
    return s;
  }
}
