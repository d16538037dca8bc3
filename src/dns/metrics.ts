/**
 * The DNS plane's Prometheus metrics, declared once: names, help, labels and buckets are all here,
 * created when the plane is constructed. The query path counts in plain numbers (a Float64Array of
 * question type × response code, drop and truncation counters) that each metric's collect() copies in
 * at scrape time; upstream attempts, mismatched upstream datagrams and zone compiles are recorded on
 * their metric directly (`DnsMetrics`).
 *
 * The metrics are got-or-created on the registry (telemetry's `metric()`): a second DNS plane made
 * against the same registry gets the first one's metrics, and the collected ones keep reading the
 * first plane.
 */
import { metric, prom, type Registry } from '../telemetry/metrics.js';
import type { AnswerCache } from './cache.js';
import type { TcpCloseReason } from './tcp.js';
import * as wire from './wire.js';
import { slotOf as zoneSlotOf, type Zone } from './zone.js';

// Hot path (queryCell): imported bindings copied into module constants once, as in plane.ts.
const slotOf = zoneSlotOf;
const BADVERS = wire.RCODE.BADVERS;

const TYPE_LABELS = ['A', 'AAAA', 'SRV', 'PTR', 'SOA', 'NS', 'ANY', 'other'];
const RCODE_LABELS = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'BADVERS', 'other'];

/** Cells of the query counts (`DnsMetricsSource.queries`): one per question type × response code. */
export const QUERY_CELLS = TYPE_LABELS.length * RCODE_LABELS.length;

function typeIndex(qtype: number): number {
  const s = slotOf(qtype);
  return s < 0 ? 7 : s;
}

function rcodeIndex(rcode: number): number {
  return rcode <= 5 ? rcode : rcode === BADVERS ? 6 : 7;
}

/** The cell of `portico_dns_queries_total{type,rcode}` that an answer with this question type and rcode counts in. */
export function queryCell(qtype: number, rcode: number): number {
  return typeIndex(qtype) * RCODE_LABELS.length + rcodeIndex(rcode);
}

/** What the collected metrics read at scrape time. */
export interface DnsMetricsSource {
  /** Queries answered, counted at `queryCell(qtype, rcode)`; QUERY_CELLS long. */
  readonly queries: Float64Array;
  /** Packets not answered, by reason. */
  readonly drops: Readonly<Record<'short' | 'response' | 'tcp', number>>;
  /** UDP answers sent with TC. */
  truncated(): number;
  /** Queries answered SERVFAIL because of an internal error. */
  internalErrors(): number;
  /** The forwarder's answer cache. */
  readonly cache: Pick<AnswerCache, 'hits' | 'misses' | 'size'>;
  /** The zone being served now. */
  zone(): Pick<Zone, 'endpoints' | 'size'>;
  /** Open DNS-over-TCP client connections. */
  tcpConnections(): number;
  /** DNS-over-TCP connections the listener accepted (those closed at once by a cap included). */
  tcpAccepted(): number;
  /** DNS-over-TCP connections the server closed, by reason. */
  readonly tcpClosed: Readonly<Record<TcpCloseReason, number>>;
  /** The idle timeout a TCP connection accepted or active now gets, ms. */
  tcpIdleTimeoutMs(): number;
}

/** The metrics the plane records on directly. */
export interface DnsMetrics {
  upstream: prom.Histogram<'upstream' | 'result'>;
  mismatched: prom.Counter<'upstream'>;
  compile: prom.Histogram;
}

/** Register the `portico_dns_*` metrics on `r`; the collected ones read `src` when scraped. */
export function registerDnsMetrics(r: Registry, src: DnsMetricsSource): DnsMetrics {
  const m: DnsMetrics = {
    upstream: metric(
      r,
      'portico_dns_upstream_duration_seconds',
      () =>
        new prom.Histogram({
          name: 'portico_dns_upstream_duration_seconds',
          help: 'Forwarded queries: one upstream attempt, by upstream and result (ok, timeout, error, rcode, malformed)',
          labelNames: ['upstream', 'result'],
          buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
          registers: [],
        }),
    ),
    mismatched: metric(
      r,
      'portico_dns_upstream_mismatched_total',
      () =>
        new prom.Counter({
          name: 'portico_dns_upstream_mismatched_total',
          help: 'Datagrams on an upstream socket that did not answer our query (wrong id or question, malformed): ignored',
          labelNames: ['upstream'],
          registers: [],
        }),
    ),
    compile: metric(
      r,
      'portico_dns_zone_compile_seconds',
      () =>
        new prom.Histogram({
          name: 'portico_dns_zone_compile_seconds',
          help: 'Time to compile a routing table into the DNS zone',
          buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
          registers: [],
        }),
    ),
  };
  metric(
    r,
    'portico_dns_queries_total',
    () =>
      new prom.Counter({
        name: 'portico_dns_queries_total',
        help: 'Queries answered, by question type and response code',
        labelNames: ['type', 'rcode'],
        registers: [],
        collect() {
          this.reset();
          for (let t = 0; t < TYPE_LABELS.length; t++) {
            for (let c = 0; c < RCODE_LABELS.length; c++) {
              const v = src.queries[t * RCODE_LABELS.length + c] as number;
              if (v > 0) this.inc({ type: TYPE_LABELS[t] as string, rcode: RCODE_LABELS[c] as string }, v);
            }
          }
        },
      }),
  );
  metric(
    r,
    'portico_dns_dropped_total',
    () =>
      new prom.Counter({
        name: 'portico_dns_dropped_total',
        help: 'Packets not answered: short (under a header), response (QR set), tcp (bad framing: connection closed)',
        labelNames: ['reason'],
        registers: [],
        collect() {
          this.reset();
          for (const [k, v] of Object.entries(src.drops)) if (v) this.inc({ reason: k }, v);
        },
      }),
  );
  metric(
    r,
    'portico_dns_truncated_total',
    () =>
      new prom.Counter({
        name: 'portico_dns_truncated_total',
        help: 'UDP answers sent with TC (too large for the client): it retries over TCP',
        registers: [],
        collect() {
          this.reset();
          const n = src.truncated();
          if (n) this.inc(n);
        },
      }),
  );
  metric(
    r,
    'portico_dns_internal_errors_total',
    () =>
      new prom.Counter({
        name: 'portico_dns_internal_errors_total',
        help: 'Queries answered SERVFAIL because of an internal error',
        registers: [],
        collect() {
          this.reset();
          const n = src.internalErrors();
          if (n) this.inc(n);
        },
      }),
  );
  metric(
    r,
    'portico_dns_cache_hits_total',
    () =>
      new prom.Counter({
        name: 'portico_dns_cache_hits_total',
        help: 'Forwarded names answered from the cache',
        registers: [],
        collect() {
          this.reset();
          if (src.cache.hits) this.inc(src.cache.hits);
        },
      }),
  );
  metric(
    r,
    'portico_dns_cache_misses_total',
    () =>
      new prom.Counter({
        name: 'portico_dns_cache_misses_total',
        help: 'Forwarded names not in the cache (asked upstream, or joined a query in flight)',
        registers: [],
        collect() {
          this.reset();
          if (src.cache.misses) this.inc(src.cache.misses);
        },
      }),
  );
  metric(
    r,
    'portico_dns_cache_entries',
    () =>
      new prom.Gauge({
        name: 'portico_dns_cache_entries',
        help: 'Answers in the forwarder cache',
        registers: [],
        collect() {
          this.set(src.cache.size);
        },
      }),
  );
  metric(
    r,
    'portico_dns_zone_endpoints',
    () =>
      new prom.Gauge({
        name: 'portico_dns_zone_endpoints',
        help: 'Endpoints answering in the served zone (healthy or unknown, weight > 0)',
        registers: [],
        collect() {
          this.set(src.zone().endpoints);
        },
      }),
  );
  metric(
    r,
    'portico_dns_zone_cached_names',
    () =>
      new prom.Gauge({
        name: 'portico_dns_zone_cached_names',
        help: 'Names of the served zone resolved so far (their answers are compiled once per table)',
        registers: [],
        collect() {
          this.set(src.zone().size);
        },
      }),
  );
  metric(
    r,
    'portico_dns_tcp_connections',
    () =>
      new prom.Gauge({
        name: 'portico_dns_tcp_connections',
        help: 'Open DNS-over-TCP client connections',
        registers: [],
        collect() {
          this.set(src.tcpConnections());
        },
      }),
  );
  metric(
    r,
    'portico_dns_tcp_accepted_total',
    () =>
      new prom.Counter({
        name: 'portico_dns_tcp_accepted_total',
        help: 'DNS-over-TCP connections accepted by the listener, those then closed at once by a cap included',
        registers: [],
        collect() {
          this.reset();
          const n = src.tcpAccepted();
          if (n) this.inc(n);
        },
      }),
  );
  metric(
    r,
    'portico_dns_tcp_closed_total',
    () =>
      new prom.Counter({
        name: 'portico_dns_tcp_closed_total',
        help:
          'DNS-over-TCP connections the server closed, by reason: source_limit (its source held maxTcpConnectionsPerSource), ' +
          'full (maxTcpConnections open, none idle), evicted (idle longest, closed to make room for a newcomer), idle (idle timeout)',
        labelNames: ['reason'],
        registers: [],
        collect() {
          this.reset();
          for (const [k, v] of Object.entries(src.tcpClosed)) if (v) this.inc({ reason: k }, v);
        },
      }),
  );
  metric(
    r,
    'portico_dns_tcp_idle_timeout_seconds',
    () =>
      new prom.Gauge({
        name: 'portico_dns_tcp_idle_timeout_seconds',
        help: 'The idle timeout a DNS-over-TCP connection accepted or active now gets (tcpIdleTimeoutBusy above half of maxTcpConnections open)',
        registers: [],
        collect() {
          this.set(src.tcpIdleTimeoutMs() / 1000);
        },
      }),
  );
  return m;
}
