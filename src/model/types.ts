/**
 * The routing model: plain, JSON-serialisable data shared by every provider, the aggregator and every
 * data plane. Nothing here imports any other part of Portico.
 *
 * Units: every duration is in milliseconds (`...Ms`), every size in bytes. Addresses are normalised
 * textual IPs (IPv4 dotted quad, IPv6 in RFC 5952 form, no brackets).
 */
import type { ServiceMap } from './service-map.js';

export type Protocol = 'tcp' | 'udp';

/**
 * Health of one endpoint as its source reports it. Data planes add their own active/passive checks on top.
 * - `healthy`: serve traffic.
 * - `unknown`: no verdict yet (no check configured, or not yet run): served, as HAProxy does before a first check.
 * - `unhealthy`: never served, and left out of DNS answers.
 * - `draining`: no new connections/requests; open ones finish (dcos-l4lb weight 0).
 */
export type HealthState = 'healthy' | 'unknown' | 'unhealthy' | 'draining';

export interface Endpoint {
  /** Normalised IP address. */
  address: string;
  port: number;
  /** Relative weight, 0..256. 0 means draining. Default 1. */
  weight: number;
  health: HealthState;
  /** Task name for DNS (`<task>.<framework>.mesos`); defaults to the service name. */
  task?: string;
  /** Unique task id (Marathon `app.1b2c…`), if the source has one. */
  taskId?: string;
  /** IP of the agent (machine) that runs the task, for `.agentip.` and `.slave.mesos` names. */
  agentAddress?: string;
  /** Overlay network the address belongs to (container IP), if any. */
  network?: string;
  labels: Record<string, string>;
}

export type BalanceAlgorithm = 'roundrobin' | 'weighted' | 'leastconn' | 'p2c' | 'hash' | 'sticky';

export interface Balance {
  algorithm: BalanceAlgorithm;
  /** For `hash`: what the key is taken from. */
  hashOn?: { kind: 'header' | 'cookie'; name: string } | { kind: 'ip' };
  /** For `sticky`: cookie name (default `portico_sticky`). */
  cookie?: string;
}

export interface HealthCheck {
  /** HTTP path to GET; absent means a TCP connect check. */
  httpPath?: string;
  /** Accepted status range for HTTP checks (inclusive). Default [200, 399]. */
  expectStatus: [number, number];
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive successes before an endpoint is marked up. */
  rise: number;
  /** Consecutive failures before an endpoint is marked down. */
  fall: number;
}

export interface Vip {
  /** Named VIP (`web` → `web.<framework>.l4lb.thisdcos.directory`), sanitised as dcos-l4lb does. */
  name?: string;
  /** Explicit IP VIP (`"10.1.2.3:80"` style labels). */
  address?: string;
  port: number;
  protocol: Protocol;
  /** Send a PROXY protocol header to backends. */
  proxyProtocol?: 'v1' | 'v2';
}

export interface Service {
  /** Provider-local name. The table keys services by `id` = `<name>@<provider>`. */
  name: string;
  id: string;
  provider: string;
  /** Mesos framework for DNS names (`marathon`). */
  framework: string;
  /** Sorted by (address, port) so equal input is equal output. */
  endpoints: Endpoint[];
  balance: Balance;
  health?: HealthCheck;
  vips: Vip[];
  labels: Record<string, string>;
  /**
   * Set by the aggregator when a higher-priority provider claims the same `<name>.<framework>` DNS name:
   * the service still routes, but publishes no DNS records (see the table's conflicts).
   */
  dnsHidden?: boolean;
}

export interface RouteTimeouts {
  connectMs: number;
  /** Time from request sent to response header received. */
  responseHeaderMs: number;
  idleMs: number;
}

export interface HeaderMatch {
  name: string;
  /** Exact value (case-sensitive); absent means "present". */
  value?: string;
}

export interface Route {
  /** Stable id: `<provider>/<index or name>`. */
  id: string;
  provider: string;
  entrypoint: string;
  /** Lower-cased host; `*.example.test` wildcard; `*` any host. */
  host: string;
  path: string;
  pathMatch: 'prefix' | 'exact';
  methods?: string[];
  headers?: HeaderMatch[];
  /** Service id (`<name>@<provider>`). */
  service: string;
  stripPrefix?: string;
  addPrefix?: string;
  redirectToHttps?: boolean;
  timeouts?: Partial<RouteTimeouts>;
  maxBodyBytes?: number;
  /** Add `Strict-Transport-Security` to responses on TLS entrypoints (marathon-lb `HAPROXY_{n}_USE_HSTS`). */
  hsts?: RouteHsts;
  /** HTTP Basic authentication (marathon-lb `HAPROXY_{n}_AUTH`): 401 with the realm unless a user matches. */
  basicAuth?: RouteBasicAuth;
  /** Only clients from these CIDRs reach the service; others get 403 (`HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL`). */
  allowFrom?: string[];
}

export interface RouteHsts {
  maxAgeS: number;
  includeSubdomains: boolean;
  preload: boolean;
}

export interface RouteBasicAuth {
  realm: string;
  /**
   * `hash` is a crypt(3) string as HAProxy userlists take (`$6$salt$…` SHA-512, `$5$` SHA-256, `$1$` MD5),
   * or `{PLAIN}secret` for an insecure clear-text password.
   */
  users: Array<{ user: string; hash: string }>;
}

export interface CertificateRef {
  /** PEM files (paths as given in config, resolved against the config's directory). */
  certFile: string;
  keyFile: string;
}

export interface EntrypointTls {
  /** Issue certificates from the cluster CA for every route host on this entrypoint. */
  auto: boolean;
  certificates: CertificateRef[];
  /** SNI passthrough instead of termination (L4). */
  passthrough?: boolean;
}

export interface Entrypoint {
  name: string;
  /** `host:port`, `[v6]:port`. */
  listen: string;
  tls?: EntrypointTls;
  /** CIDRs whose X-Forwarded-* / Forwarded headers are trusted. */
  trustedProxies: string[];
}

/**
 * What one provider knows, complete. Services are keyed by their provider-local name. A provider that
 * knows what changed sends a `SnapshotDelta` instead; the aggregator diffs a whole snapshot against the
 * provider's last one, so both kinds cost the planes only what changed.
 */
export interface Snapshot {
  provider: string;
  services: Record<string, Omit<Service, 'id' | 'provider'>>;
  /** `service` here is the provider-local name (or an explicit `<name>@<provider>`); the aggregator qualifies it. */
  routes: Array<Omit<Route, 'id' | 'provider'> & { id?: string }>;
  entrypoints: Record<string, Entrypoint>;
  /**
   * What the provider could not translate faithfully (an unsupported marathon-lb label, a bad tag), per
   * subject: they reach the table's `warnings`, so an operator sees them on `GET /v1/table`.
   */
  warnings?: Array<{ subject: string; message: string }>;
}

/**
 * What changed in one provider's knowledge since what it sent last (a whole snapshot or a delta). Anything
 * left out is unchanged.
 */
export interface SnapshotDelta {
  /** Services added or replaced whole, by provider-local name. */
  upsert?: Snapshot['services'];
  /** Services gone, by provider-local name. */
  remove?: string[];
  /** Routes added or replaced whole, by id (a delta's routes name theirs). */
  upsertRoutes?: Array<Snapshot['routes'][number] & { id: string }>;
  /** Routes gone, by id. */
  removeRoutes?: string[];
  /** The provider's entrypoints, all of them, when they changed. */
  entrypoints?: Snapshot['entrypoints'];
  /** The provider's warnings, all of them, when they changed. */
  warnings?: NonNullable<Snapshot['warnings']>;
}

export type ConflictKind = 'route' | 'vip' | 'dns' | 'entrypoint';

export interface Conflict {
  kind: ConflictKind;
  /** What is claimed twice: `web app.example.test /api prefix`, `tcp web.marathon:80`. */
  key: string;
  /** Provider whose claim is served. */
  winner: string;
  /** Providers whose claims were dropped. */
  losers: string[];
  message: string;
}

export interface TableWarning {
  provider: string;
  /** What it is about: a route id, a service id. */
  subject: string;
  message: string;
}

export interface VipEntry {
  /** `tcp/web.marathon:80` or `tcp/10.0.0.1:80`. */
  key: string;
  protocol: Protocol;
  name?: string;
  framework: string;
  address?: string;
  port: number;
  service: string;
  proxyProtocol?: 'v1' | 'v2';
  /**
   * The address this VIP is served on: for an IP VIP its `address`; for a named VIP the stable address
   * the VIP allocator assigned (11.0.0.0/8, or fd01:c::/64 for IPv6), recorded in the store. Absent
   * until allocated: data planes skip a named VIP without one (DNS publishes no record for it yet).
   */
  ip?: string;
}

/**
 * The merged view every data plane consumes. Immutable once published (deep-frozen by the aggregator).
 * `hash` is a content hash of everything but `version` and `createdAt`: equal hash, equal table.
 */
export interface RoutingTable {
  version: number;
  hash: string;
  createdAt: string;
  /**
   * Keyed by service id `<name>@<provider>`, iterated (and shown as JSON) in id order; a persistent map, so
   * a version shares every unchanged service with the one before.
   */
  services: ServiceMap;
  /** Sorted: entrypoint, host, then longer paths first. */
  routes: Route[];
  entrypoints: Record<string, Entrypoint>;
  vips: VipEntry[];
  conflicts: Conflict[];
  /** Problems that are not conflicts: a route to a service no provider has, a VIP without endpoints. */
  warnings: TableWarning[];
  /** Content hash of each provider's snapshot that went into this table. */
  sources: Record<string, string>;
}

/**
 * What differs from one served table to the next: a plane patches what it compiled for exactly these
 * and keeps the rest. Parts not named are the very same objects in both tables.
 */
export interface TableChange {
  /** The version this change starts from: a plane that serves another version compiles the whole table. */
  from: number;
  /** Service ids added or changed (a changed `dnsHidden` included). */
  upserted: readonly string[];
  /** Service ids gone. */
  removed: readonly string[];
  /** Whether `routes`, `entrypoints`, `vips` differ. */
  routes: boolean;
  entrypoints: boolean;
  vips: boolean;
}
