/**
 * The typed, validated form of the config file (config/portico.yaml), as `parseConfigText` returns it:
 * defaults applied, durations in milliseconds (`...Ms`), sizes in bytes, addresses and CIDRs normalised
 * (IPv4 dotted quad, IPv6 RFC 5952, listen addresses `host:port` / `[v6]:port`), hosts lower-cased.
 * Names (services, entrypoints, frameworks, VIP names) are kept as written; the snapshot normalises
 * them for DNS. Objects returned by the loader are deep-frozen.
 *
 * Where a piece has the exact shape of the routing model, the model's type is reused, so the snapshot
 * translation is a copy, not a second interpretation.
 */
import type { Route, Balance, CertificateRef, Endpoint, HealthCheck, Vip } from '../model/types.js';

export interface PorticoConfig {
  /** Data directory, as written (relative paths are relative to the daemon's working directory). */
  data: string;
  /** `embedded`, or a Redis URL: `redis://…`, `rediss://…`, `redis-sentinel://h1:26379,h2:26379/master`. */
  store: string;
  api: ApiConfig;
  /** L7 listeners by name. Empty: no HTTP ingress. */
  entrypoints: Record<string, EntrypointConfig>;
  dns: DnsConfig;
  l7: L7Config;
  overlay: OverlayConfig;
  vips: VipsConfig;
  /** Services by provider-local name. */
  services: Record<string, ServiceConfig>;
  /** In file order: order is the tie-breaker users expect when they read the file. */
  routes: RouteConfig[];
  /** The Marathon feed (absent: off). */
  marathon?: MarathonConfig;
  /** The Consul catalog feed (absent: off). */
  consul?: ConsulConfig;
  /** Marathon app definitions kept in files (`<config dir>/apps/*.json` by default). */
  apps: AppsConfig;
}

export interface MarathonConfig {
  /** Base URLs, tried in turn. */
  urls: string[];
  /** marathon-lb groups this instance serves; `*` for all. */
  groups: string[];
  framework: string;
  httpEntrypoint: string;
  httpsEntrypoint: string;
  /** `HAPROXY_{n}_BIND_ADDR` default for service ports bound by this instance. */
  bindAddress: string;
  /** Bind each app's service port as marathon-lb does (tcp apps become IP VIPs, http ones entrypoints). */
  bindServicePorts: boolean;
  /** marathon-lb `--strict-mode`: only ports with `HAPROXY_{n}_ENABLED=true`. */
  strictMode: boolean;
  priority: number;
  username?: string;
  password?: string;
  /** DC/OS token (`Authorization: token=…`). */
  token?: string;
}

export interface ConsulConfig {
  url: string;
  token?: string;
  datacenter?: string;
  framework: string;
  entrypoint: string;
  exposedByDefault: boolean;
  includeWarning: boolean;
  ignoreServices: string[];
  priority: number;
}

export interface AppsConfig {
  /** Directory of Marathon app JSON files, as written (relative: to the config file's directory). */
  dir: string;
  groups: string[];
}

export interface ApiConfig {
  /** `host:port`. */
  listen: string;
  /** Serve /metrics without the bearer token. */
  metricsPublic: boolean;
}

export interface EntrypointTlsConfig {
  auto: boolean;
  /** Paths resolved against the config file's directory. */
  certificates: CertificateRef[];
  passthrough: boolean;
}

export interface EntrypointConfig {
  /** `host:port`, `[v6]:port`; `0.0.0.0` for all IPv4 interfaces. */
  listen: string;
  /** Absent: plain HTTP. */
  tls?: EntrypointTlsConfig;
  /** Normalised CIDRs whose X-Forwarded-* / Forwarded headers are trusted. Empty: none. */
  trustedProxies: string[];
}

export interface DnsConfig {
  /** UDP and TCP `host:port`. */
  listen: string;
  /** Forwarders as `ip:port` / `[v6]:port` (port 53 filled in). Empty: recursion is refused. */
  upstreams: string[];
  /** Normalised CIDRs allowed to recurse through us. */
  allowRecursionFrom: string[];
  /** TTL of authoritative answers, ms (a whole number of seconds). 0: answers are not to be cached. */
  ttlMs: number;
  /** Extra authoritative domains, lower-case, no trailing dot (mesos and thisdcos.directory always are). */
  domains?: string[];
  /** Per-zone forwarders (`corp.example` → [`10.0.0.2:53`]): names in that zone go there, not to `upstreams`. */
  zoneUpstreams?: Record<string, string[]>;
}

/** Settings of the L7 engine; per-route `timeouts` and `maxBody` override the matching ones. */
export interface L7Config {
  accessLog: boolean;
  headerTimeoutMs: number;
  keepAliveTimeoutMs: number;
  connectTimeoutMs: number;
  responseHeaderTimeoutMs: number;
  idleTimeoutMs: number;
  tunnelIdleTimeoutMs: number;
  upstreamKeepAliveMs: number;
  maxConnectionsPerEndpoint: number;
  maxQueuePerEndpoint: number;
  maxHeaderBytes: number;
  retries: number;
  /** 0..1 */
  retryBudget: number;
  /** basicAuth hashings per second for unverified credentials. */
  authHashesPerSecond: number;
}

/** Overlay networks and their IPAM (src/overlay). */
export interface OverlayConfig {
  enabled: boolean;
  /** Stable agent id; absent: a random one kept in `<data>/agent-id`. */
  agentId?: string;
  /** Underlay address other agents send VXLAN to; absent: this machine's first non-internal IPv4, else 127.0.0.1. */
  agentIp?: string;
  /** Unix socket path for portico-cni (relative: under the data dir). */
  socket: string;
  programLinux: boolean;
  vtep?: { device?: string; vni?: number; port?: number; subnet?: string; subnet6?: string; macOui?: string };
  /** Absent: DC/OS's dcos (9.0.0.0/8, /24 per agent) and dcos6 (fd01:b::/64, /80 per agent). */
  networks?: Array<{ name: string; subnet: string; prefix: number; mtu?: number }>;
}

export interface VipsConfig {
  /** Normalised IP address. */
  listen: string;
}

export interface ServiceConfig {
  /** As written; the snapshot normalises it with toFrameworkName. */
  framework: string;
  /** In file order, defaults filled, addresses normalised. */
  endpoints: Endpoint[];
  balance: Balance;
  /** Absent: no active checks (endpoints keep the health the file gives them). */
  health?: HealthCheck;
  vips: Vip[];
  labels: Record<string, string>;
}

/**
 * A route as the file gives it: the model's Route without the ids the aggregator adds. Here `host` is
 * lower-cased, `methods` upper-cased, header names lower-cased, `service` the provider-local name (a key
 * of `services`), and `timeouts` only the ones the file sets (a missing one is the L7 default).
 */
export type RouteConfig = Omit<Route, 'id' | 'provider'>;
