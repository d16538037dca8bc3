/**
 * The L7 data plane: entrypoint listeners (plain and TLS), the table compiled for the proxy (routers,
 * upstream sets, per-route settings — timeouts, body limit, HSTS line, allow-list, basic auth, metric
 * stats, and the route's request filter list — certificate maps), connection pools, health checks,
 * metrics and the access log. Fed routing tables only.
 *
 * Plain-HTTP entrypoints listen on a libuv handle and accept straight into UvStreams; TLS entrypoints
 * on tls.Server (stream.ts says why and how; `engine: 'net'` puts everything on net.Socket). Either way
 * the listening socket comes from the plane's SocketSource (src/net/listen.ts): bound here, or, in one of
 * several workers, the supervisor's socket shared by all of them.
 *
 * apply(table, change) compiles first, then swaps `this.compiled` in one assignment; exchanges in flight
 * keep the compiled table they started with. With a change from the version served now, the next compiled
 * table is the last one patched: the changed services' upstream sets (a persistent map shares the others)
 * and health checks, the routers and route settings only when routes or entrypoints changed, the pools of
 * endpoints no service has any more closed; routes reach their service's set by id, so routers outlive
 * endpoint churn. Without one, or from another version, the whole table is compiled; both give the same.
 * Listeners are opened or closed only when an entrypoint's address or TLS mode changed; certificate and
 * trusted-proxy changes take effect without touching the socket (a TLS listener's certificate map is made
 * again only when its certificates, or for the development certificate its routes, changed).
 */
import net from 'node:net';
import tls from 'node:tls';
import { statSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import type { DataPlane, HealthVerdict, PlaneHealth, PlaneStatus } from '../model/plane.js';
import { parseListen, formatListen } from '../model/parse.js';
import type { Entrypoint, RouteBasicAuth, RoutingTable, TableChange } from '../model/types.js';
import type { Logger } from '../telemetry/log.js';
import { silentLogger } from '../telemetry/log.js';
import { metric, prom, type Registry } from '../telemetry/metrics.js';
import { AllowList } from './filters/allow-list.js';
import { BasicAuth, HashBudget, basicAuthKey } from './filters/basic-auth.js';
import { hstsLine } from './filters/hsts.js';
import { NO_FILTERS, requestFilters } from './filters/index.js';
import {
  OverlayMap,
  buildUpstreamSets,
  patchUpstreamSets,
  resolveBalanceOptions,
  type ResolvedBalanceOptions,
  type Upstream,
  type UpstreamSet,
  type UpstreamSets,
} from './balance/index.js';
import { HealthChecker, OutlierDetector } from './health/index.js';
import { AccessLog, newAccessRecord } from './accesslog.js';
import { clock, refreshClock } from './clock.js';
import { RequestMetrics } from './metrics.js';
import { L7_DEFAULTS, type L7Options } from './options.js';
import { Pool } from './pool.js';
import { ClientConn, NO_OWNER } from './client.js';
import type { Exchange } from './exchange.js';
import type { CompiledTable, EntrypointRuntime, ProxyHost, RouteRuntime } from './proxy.js';
import { compileRouters, type CompiledRouter } from './routing/index.js';
import {
  CertMap,
  INTERMEDIATE_CIPHERS,
  TicketKeyRing,
  devCertificate,
  loadCertFiles,
  loadPem,
  sessionIdContext,
  type LoadedCert,
} from './tls.js';
import { DIRECT, netMessage, type Bound, type SocketSource, type SocketSpec } from '../net/listen.js';
import { SocketStream, UvStream, acceptUv, connectStream, uvAvailable, type UvListener } from '../net/stream.js';
import type { UvTcp } from '../net/uv.js';
import { TimerWheel } from './timers.js';

export interface L7PlaneOptions {
  logger?: Logger;
  registry?: Registry;
  options?: Partial<L7Options>;
  /**
   * Key for sticky-cookie ids until `setSessionKeys` gives the shared one; default random per process
   * (`portico up` gives the store's: src/pki/session-keys.ts).
   */
  stickySecret?: string | Buffer;
  /**
   * `uv` (default when the bindings are there): plain-HTTP client connections and all upstream
   * connections on libuv handles (stream.ts); `net`: everything on net.Socket (comparison, tests).
   * TLS client connections are on `tls` either way.
   */
  engine?: 'uv' | 'net';
  /**
   * Where entrypoint sockets come from (src/net/listen.ts): DIRECT (default) binds here; a worker of
   * several is given BrokeredSockets, so that every worker serves the same listening sockets.
   */
  sockets?: SocketSource;
  /**
   * How the active health checks run: absent, the plane probes; in a worker of several, one worker probes
   * and publishes its transitions, the others follow (src/model/plane.ts `PlaneHealth`).
   */
  health?: PlaneHealth;
}

interface Listener {
  def: Entrypoint;
  rt: EntrypointRuntime & { trustedRanges: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>; onEmpty: (() => void) | undefined };
  /** TLS entrypoints (and plain ones when the libuv bindings are missing): a net/tls server. */
  server: net.Server | undefined;
  /** Plain-HTTP entrypoints: a libuv handle accepting straight into UvStreams. */
  uvServer: UvListener | undefined;
  /** The socket as the source gave it: released when the listener closes. */
  socket: SocketSpec | undefined;
  address: string;
  certs: CertMap | undefined;
  /** What `certs` was made from: the same again makes no new map. */
  certInputs:
    | {
        tls: Entrypoint['tls'];
        auto: ReadonlyMap<string, LoadedCert> | undefined;
        /** The routes the development certificate's names came from, when it is the one served. */
        devRoutes: RoutingTable['routes'] | undefined;
        files: LoadedCert[];
      }
    | undefined;
  closing: boolean;
  /** TLS: every accepted TCP socket, so a drain also ends the ones still in their handshake. */
  rawSockets: Set<net.Socket>;
  /** When an accept error was last logged (ms since epoch). */
  lastAcceptError: number;
}

const NO_ROUTE = '-';

/** The compiled table as the plane keeps it: the parts typed as the next swap patches them. */
interface Compiled extends CompiledTable {
  readonly routers: Map<string, CompiledRouter>;
  readonly sets: UpstreamSets;
  readonly routes: Map<string, RouteRuntime>;
}

/** What one swap did, for tests and benchmarks: which parts were compiled anew. */
export interface SwapReport {
  version: number;
  /** `patch`: from the table before and its change; `whole`: from the table alone. */
  mode: 'patch' | 'whole';
  /** Services whose set was looked at (every one on a whole compile). */
  services: number;
  /** Whether the routers and the route runtimes were compiled anew (else the last table's are served). */
  routers: boolean;
  routes: boolean;
}

export class L7Plane implements DataPlane, ProxyHost {
  readonly name = 'l7';
  readonly opts: L7Options;
  readonly wheel: TimerWheel;
  active = 0;
  private activeRetries = 0;
  private compiled: Compiled;
  /** How many sets of the compiled table hold an upstream of each endpoint key: a pool lives while > 0. */
  private readonly endpointRefs = new Map<string, number>();
  /** Pools made for keys no set holds (an exchange of an older table): closed at the next swap. */
  private readonly strayPools = new Set<string>();
  private swapped: SwapReport | undefined;
  private readonly listeners = new Map<string, Listener>();
  private readonly pools = new Map<string, Pool>();
  private readonly balanceOpts: ResolvedBalanceOptions;
  private readonly health: HealthChecker;
  private readonly outliers: OutlierDetector;
  private readonly log: Logger;
  private readonly accessLog: AccessLog;
  private readonly requestMetrics: RequestMetrics;
  /** Session-ticket keys of every TLS context here: random until `setSessionKeys` gives the shared ones. */
  private readonly ticketKeys = new TicketKeyRing();
  private readonly certCache = new Map<string, { mtimeMs: number; cert: LoadedCert }>();
  private devCerts = new Map<string, LoadedCert>();
  /** Certificates the cluster CA issued for `tls.auto` hosts, by serial (contexts made once). */
  private autoCerts = new Map<string, LoadedCert>();
  private lastTable: RoutingTable | undefined;
  private state: PlaneStatus['state'] = 'starting';
  private lastError: string | undefined;
  private tableVersion = 0;
  /** Compiled basic auth by config, kept while a table still has it (verified credentials survive swaps). */
  private auths = new Map<string, BasicAuth>();
  private readonly hashBudget: HashBudget;
  private readonly useUv: boolean;
  private readonly sockets: SocketSource;
  /** The listener reconciles in flight, one after the other (listenersFor). */
  private reconciling: Promise<void> = Promise.resolve();
  private readonly m: {
    retries: prom.Counter;
    endpointUp: prom.Gauge<'service' | 'endpoint'>;
  };

  constructor(o: L7PlaneOptions = {}) {
    this.opts = { ...L7_DEFAULTS, ...o.options };
    this.wheel = new TimerWheel(this.opts.timerResolutionMs);
    this.useUv = uvAvailable && o.engine !== 'net';
    this.sockets = o.sockets ?? DIRECT;
    this.hashBudget = new HashBudget(this.opts.authHashesPerSecond);
    this.log = (o.logger ?? silentLogger).child({ component: 'l7' });
    this.accessLog = new AccessLog((o.logger ?? silentLogger).child({ component: 'access' }));
    this.balanceOpts = resolveBalanceOptions(o.stickySecret !== undefined ? { stickySecret: o.stickySecret } : {});
    this.outliers = new OutlierDetector({
      consecutiveFailures: this.opts.passiveFailures,
      onEject: (e) => this.log.warn({ ejection: e }, 'endpoint ejected after consecutive failures'),
    });
    const publish = o.health?.publish;
    this.health = new HealthChecker({
      mode: o.health?.mode ?? 'probe',
      onTransition: (t) => {
        this.m.endpointUp.set({ service: t.serviceId, endpoint: t.key }, t.healthy ? 1 : 0);
        this.log.warn(
          { service: t.serviceId, endpoint: t.key, healthy: t.healthy, reason: t.reason, status: t.status },
          t.healthy ? 'endpoint up' : 'endpoint down',
        );
        publish?.({ serviceId: t.serviceId, key: t.key, up: t.healthy, ...(!t.healthy && { reason: t.reason }) });
      },
    });
    this.compiled = { version: 0, routers: new Map(), sets: OverlayMap.from(), routes: new Map() };
    const r = o.registry ?? new prom.Registry();
    this.requestMetrics = new RequestMetrics(r);
    this.m = {
      retries: metric(
        r,
        'portico_l7_retries_total',
        () => new prom.Counter({ name: 'portico_l7_retries_total', help: 'Requests retried on another endpoint', registers: [] }),
      ),
      endpointUp: metric(
        r,
        'portico_l7_endpoint_up',
        () =>
          new prom.Gauge({
            name: 'portico_l7_endpoint_up',
            help: 'Active health of an endpoint (1 up, 0 down), set on transitions',
            labelNames: ['service', 'endpoint'],
            // Every worker holds the one verdict: the scrapes merge to it (their minimum), not to their sum.
            aggregator: 'min',
            registers: [],
          }),
      ),
    };
    const health = this.health;
    metric(
      r,
      'portico_l7_health_checks_total',
      () =>
        new prom.Counter({
          name: 'portico_l7_health_checks_total',
          help: 'Active health check probes completed; with several workers only one probes',
          registers: [],
          collect() {
            this.reset();
            this.inc(health.stats().checksTotal);
          },
        }),
    );
    metric(
      r,
      'portico_l7_health_check_failures_total',
      () =>
        new prom.Counter({
          name: 'portico_l7_health_check_failures_total',
          help: 'Active health check probes that failed (connect, timeout, status, protocol, closed)',
          registers: [],
          collect() {
            this.reset();
            this.inc(health.stats().failuresTotal);
          },
        }),
    );
    const pools = this.pools;
    metric(
      r,
      'portico_l7_upstream_connects_total',
      () =>
        new prom.Counter({
          name: 'portico_l7_upstream_connects_total',
          help: 'Connections opened to endpoints',
          labelNames: ['endpoint'],
          registers: [],
          collect() {
            this.reset();
            for (const p of pools.values()) this.inc({ endpoint: p.key }, p.connectsTotal);
          },
        }),
    );
    metric(
      r,
      'portico_l7_upstream_connect_failures_total',
      () =>
        new prom.Counter({
          name: 'portico_l7_upstream_connect_failures_total',
          help: 'Connections to endpoints that failed or timed out',
          labelNames: ['endpoint'],
          registers: [],
          collect() {
            this.reset();
            for (const p of pools.values()) this.inc({ endpoint: p.key }, p.connectFailuresTotal);
          },
        }),
    );
    const listeners = this.listeners;
    metric(
      r,
      'portico_l7_open_connections',
      () =>
        new prom.Gauge({
          name: 'portico_l7_open_connections',
          help: 'Client connections open, by entrypoint',
          labelNames: ['entrypoint'],
          registers: [],
          collect() {
            this.reset();
            for (const l of listeners.values()) this.set({ entrypoint: l.def.name }, l.rt.connections.size);
          },
        }),
    );
  }

  // ---- DataPlane

  async start(table: RoutingTable): Promise<void> {
    this.swap(table);
    await this.listenersFor(table);
    this.state = this.lastError ? 'error' : 'serving';
  }

  apply(table: RoutingTable, change?: TableChange): void {
    try {
      this.swap(table, change);
    } catch (err) {
      // A table the engine cannot compile must not take down what is serving now.
      this.lastError = `table ${table.version}: ${(err as Error).message}`;
      this.log.error({ err, version: table.version }, 'l7: table not applied; the previous one keeps serving');
      return;
    }
    this.listenersFor(table).then(
      () => {
        if (this.state !== 'stopped') this.state = this.lastError ? 'error' : 'serving';
      },
      (err) => {
        this.lastError = (err as Error).message;
        if (this.state !== 'stopped') this.state = 'error';
      },
    );
  }

  /**
   * Reconcile the listeners with `table`, after the reconciles before it: opening a listener waits for
   * its socket, and two tables applied in a row must not both open the one the second still wants.
   */
  private listenersFor(table: RoutingTable): Promise<void> {
    const run = this.reconciling.then(() => (this.state === 'stopped' ? undefined : this.reconcileListeners(table)));
    this.reconciling = run.catch(() => undefined);
    return run;
  }

  async stop(drainMs: number): Promise<void> {
    this.state = 'stopped';
    const closing = [...this.listeners.values()].map((l) => this.closeListener(l, drainMs));
    this.listeners.clear();
    await Promise.all(closing);
    this.health.stop();
    this.accessLog.flush();
    for (const p of this.pools.values()) p.close();
    this.pools.clear();
    this.wheel.close();
  }

  /** A verdict of the worker that probes (checks here are per service: one without a service is not ours). */
  setHealthVerdict(v: HealthVerdict): void {
    if (v.serviceId === undefined || !this.health.setVerdict(v.serviceId, v.key, v.up, v.reason)) return;
    this.m.endpointUp.set({ service: v.serviceId, endpoint: v.key }, v.up ? 1 : 0);
    this.log.debug(
      { service: v.serviceId, endpoint: v.key, healthy: v.up, reason: v.reason },
      v.up ? 'endpoint up (shared verdict)' : 'endpoint down (shared verdict)',
    );
  }

  healthVerdicts(): HealthVerdict[] {
    return this.health
      .down()
      .map((d) => ({ serviceId: d.serviceId, key: d.key, up: false, ...(d.reason !== undefined && { reason: d.reason }) }));
  }

  status(): PlaneStatus {
    const s: PlaneStatus = {
      name: this.name,
      state: this.state,
      listeners: [...this.listeners.values()].map((l) => `${l.def.tls ? 'https' : 'http'} ${l.address}`),
      tableVersion: this.tableVersion,
    };
    if (this.lastError) s.error = this.lastError;
    return s;
  }

  /** What the last swap compiled (tests and benchmarks count it). */
  get lastSwap(): SwapReport | undefined {
    return this.swapped;
  }

  // ---- ProxyHost

  current(): CompiledTable {
    return this.compiled;
  }

  pool(u: Upstream): Pool {
    let p = this.pools.get(u.key);
    if (!p || p.closed) {
      p = new Pool(u.address, u.port, {
        maxConnections: this.opts.maxConnectionsPerEndpoint,
        maxQueue: this.opts.maxQueuePerEndpoint,
        connectTimeoutMs: this.opts.connectTimeoutMs,
        idleTimeoutMs: this.opts.upstreamKeepAliveMs,
        wheel: this.wheel,
        maxHeaderBytes: Math.max(this.opts.maxHeaderBytes, 65_536),
        connect: this.useUv ? connectStream : SocketStream.connect,
      });
      this.pools.set(u.key, p);
      if (!this.endpointRefs.has(u.key)) this.strayPools.add(u.key);
    }
    return p;
  }

  observe(u: Upstream, ok: boolean): void {
    this.outliers.recordResult(u, ok);
  }

  retryStart(): boolean {
    const allowed = Math.max(this.opts.minRetryConcurrency, this.opts.retryBudget * this.active);
    if (this.activeRetries + 1 > allowed) return false;
    this.activeRetries++;
    this.m.retries.inc();
    return true;
  }

  retryEnd(): void {
    this.activeRetries--;
  }

  record(ex: Exchange): void {
    // Counters and the latency histogram: plain additions on stats resolved at compile time (metrics.ts).
    const stats = ex.rt !== undefined ? ex.rt.stats : ex.conn.ep.noRouteStats;
    const code = ex.status || 499;
    const seconds = (clock.now - ex.startedAt) / 1000;
    stats.observe(code, seconds);
    if (this.opts.accessLog && this.accessLog.enabled) {
      const r = this.accessRecord;
      r.entrypoint = ex.conn.ep.name;
      r.route = ex.match?.route.id ?? NO_ROUTE;
      // The service as the exchange's table has it: a route to a service it does not have logs none.
      const m = ex.match;
      r.service = m !== undefined && ex.table.sets.has(m.service.id) ? m.service.id : undefined;
      r.endpoint = ex.pool?.key;
      r.client = ex.conn.clientIp;
      r.method = ex.head.method;
      r.host = ex.head.host;
      r.path = ex.path;
      r.status = code;
      r.bytesIn = ex.bytesIn;
      r.bytesOut = ex.bytesOut;
      r.msTenths = Math.round(seconds * 1e4);
      r.upstreamMsTenths = ex.responseHeadAt ? Math.round((ex.responseHeadAt - ex.startedAt) * 10) : undefined;
      r.retries = ex.retries;
      r.outcome = ex.outcome;
      r.abortPhase = ex.abortPhase;
      r.requestId = ex.requestId || undefined;
      this.accessLog.write(r);
    }
  }

  /** Filled for each access line (write() reads it at once). */
  private readonly accessRecord = newAccessRecord();

  // ---- compile and swap

  /**
   * Compile `table` and swap it in. With `change` from the version served now, only what changed is
   * compiled: the sets and health checks of the changed services, the routers and route runtimes only when
   * routes or entrypoints changed; every other part is the served table's, shared. Else the whole table.
   * Either way the result is the same, and the table exchanges in flight read is never changed.
   */
  private swap(table: RoutingTable, change?: TableChange): void {
    if (change !== undefined && this.lastTable !== undefined && change.from === this.tableVersion) this.patch(table, change);
    else this.compileWhole(table);
    this.tableVersion = table.version;
    this.lastTable = table;
  }

  private compileWhole(table: RoutingTable): void {
    const prev = this.compiled;
    const sets = buildUpstreamSets(table, prev.sets, this.balanceOpts);
    // Verdicts of the active checker reach the new Upstream objects before they take traffic.
    this.health.update(table, sets);
    // The first table: endpoints DOWN by verdicts handed over before it (a worker that starts) show so.
    if (!this.lastTable) for (const d of this.health.down()) this.m.endpointUp.set({ service: d.serviceId, endpoint: d.key }, 0);
    const routes = this.compileRoutes(table);
    this.compiled = { version: table.version, routers: compileRouters(table), sets, routes };
    this.endpointRefs.clear();
    for (const s of sets.values()) this.reference(s);
    this.retirePools(this.pools.keys());
    this.swapped = { version: table.version, mode: 'whole', services: sets.size, routers: true, routes: true };
  }

  private patch(table: RoutingTable, change: TableChange): void {
    const prev = this.compiled;
    const ids = new Set<string>(change.upserted);
    for (const id of change.removed) ids.add(id);
    const sets = patchUpstreamSets(table, prev.sets, ids, this.balanceOpts);
    this.health.patch(table, ids, sets);
    const routes = change.routes ? this.compileRoutes(table) : prev.routes;
    const newRouters = change.routes || change.entrypoints;
    const routers = newRouters ? compileRouters(table) : prev.routers;
    this.compiled = { version: table.version, routers, sets, routes };
    // Pools: the endpoints the changed services dropped, unless another service still has them.
    const dropped: string[] = [];
    for (const id of ids) {
      const before = prev.sets.get(id);
      const after = sets.get(id);
      if (before === after) continue;
      if (after) this.reference(after);
      if (before) this.release(before, dropped);
    }
    this.retirePools(dropped);
    this.swapped = { version: table.version, mode: 'patch', services: ids.size, routers: newRouters, routes: change.routes };
  }

  /** The per-route settings of every route of `table` (basic auth kept from the last table when identical). */
  private compileRoutes(table: RoutingTable): Map<string, RouteRuntime> {
    const routes = new Map<string, RouteRuntime>();
    const auths = new Map<string, BasicAuth>();
    for (const r of table.routes) {
      const rt: RouteRuntime = {
        connectMs: r.timeouts?.connectMs ?? this.opts.connectTimeoutMs,
        responseHeaderMs: r.timeouts?.responseHeaderMs ?? this.opts.responseHeaderTimeoutMs,
        idleMs: r.timeouts?.idleMs ?? this.opts.idleTimeoutMs,
        maxBodyBytes: r.maxBodyBytes ?? this.opts.maxBodyBytes,
        stats: this.requestMetrics.for(r.entrypoint, r.id),
        hsts: r.hsts ? hstsLine(r.hsts) : undefined,
        allow: r.allowFrom ? this.compileAllow(r.id, r.allowFrom) : undefined,
        auth: r.basicAuth ? this.compileAuth(r.id, r.basicAuth, auths) : undefined,
        filters: NO_FILTERS,
      };
      // The request filters the route runs, in order, chosen from the settings above (filters/index.ts).
      rt.filters = requestFilters(r, rt);
      routes.set(r.id, rt);
    }
    this.auths = auths;
    return routes;
  }

  private compileAllow(routeId: string, cidrs: string[]): AllowList {
    const list = new AllowList(cidrs);
    if (list.invalid.length)
      this.log.error(
        { route: routeId, invalid: list.invalid },
        'l7: allowFrom entries that are not CIDRs are left out (the others are still the only ones allowed)',
      );
    return list;
  }

  /** A route's basic auth: the compiled form of an identical config in the last table is kept (its cache too). */
  private compileAuth(routeId: string, cfg: RouteBasicAuth, next: Map<string, BasicAuth>): BasicAuth {
    const key = basicAuthKey(cfg);
    let a = next.get(key) ?? this.auths.get(key);
    if (!a) {
      a = new BasicAuth(cfg, this.hashBudget);
      // Names only: never a hash or a password.
      if (a.unsupported.length)
        this.log.error(
          { route: routeId, users: a.unsupported },
          'l7: basicAuth users whose hash is not $6$/$5$/$1$/{PLAIN} can never log in',
        );
    }
    next.set(key, a);
    return a;
  }

  /** `set` is in the compiled table: its endpoints' pools live. */
  private reference(set: UpstreamSet): void {
    for (const u of set.all) this.endpointRefs.set(u.key, (this.endpointRefs.get(u.key) ?? 0) + 1);
  }

  /** `set` left the compiled table: the keys no other set holds go to `dropped`. */
  private release(set: UpstreamSet, dropped: string[]): void {
    for (const u of set.all) {
      const n = (this.endpointRefs.get(u.key) ?? 0) - 1;
      if (n > 0) {
        this.endpointRefs.set(u.key, n);
      } else {
        this.endpointRefs.delete(u.key);
        dropped.push(u.key);
      }
    }
  }

  /**
   * Close the pools of `keys` and of earlier strays that no service of the compiled table has (their busy
   * connections finish first).
   */
  private retirePools(keys: Iterable<string>): void {
    const candidates = [...keys, ...this.strayPools];
    this.strayPools.clear();
    for (const key of candidates) {
      if (this.endpointRefs.has(key)) continue;
      const p = this.pools.get(key);
      if (!p) continue;
      p.close();
      this.pools.delete(key);
    }
  }

  /**
   * What the compiled table serves, in a stable order, for checks and the admin view: each entrypoint's
   * routes (in match order of the table) with the service they reach, each route's settings, each set's
   * upstreams with the state the table gave them, the active checks, the endpoints whose pools are kept and
   * the pools there are.
   */
  describe(): L7Description {
    const c = this.compiled;
    const routers: L7Description['routers'] = {};
    for (const name of [...c.routers.keys()].sort()) {
      routers[name] = (c.routers.get(name) as CompiledRouter)
        .routes()
        .map((m) => ({ route: m.route.id, service: m.service.id, served: c.sets.has(m.service.id) }));
    }
    const routes: L7Description['routes'] = {};
    for (const id of [...c.routes.keys()].sort()) {
      const rt = c.routes.get(id) as RouteRuntime;
      routes[id] = {
        connectMs: rt.connectMs,
        responseHeaderMs: rt.responseHeaderMs,
        idleMs: rt.idleMs,
        maxBodyBytes: rt.maxBodyBytes,
        hsts: rt.hsts,
        allow: rt.allow !== undefined,
        auth: rt.auth !== undefined,
        filters: rt.filters.map((f) => f.name),
      };
    }
    const sets: L7Description['sets'] = {};
    for (const id of [...c.sets.keys()].sort()) {
      const s = c.sets.get(id) as UpstreamSet;
      sets[id] = {
        balance: s.balance,
        upstreams: s.all.map((u) => ({ key: u.key, weight: u.weight, health: u.health, activeHealthy: u.activeHealthy })),
      };
    }
    const checks = this.health
      .endpoints()
      .map((e) => `${e.serviceId} ${e.key}`)
      .sort();
    return {
      version: c.version,
      routers,
      routes,
      sets,
      checks,
      endpoints: [...this.endpointRefs.keys()].sort(),
      pools: [...this.pools.keys()].sort(),
    };
  }

  // ---- listeners

  private async reconcileListeners(table: RoutingTable): Promise<void> {
    const wanted = new Map<string, Entrypoint>();
    for (const ep of Object.values(table.entrypoints)) {
      if (ep.tls?.passthrough) continue; // SNI passthrough is an L4 listener
      wanted.set(ep.name, ep);
    }
    const errors: string[] = [];
    for (const [name, l] of [...this.listeners]) {
      const def = wanted.get(name);
      if (!def || def.listen !== l.def.listen || !!def.tls !== !!l.def.tls) {
        this.listeners.delete(name);
        void this.closeListener(l, 30_000);
      }
    }
    for (const def of wanted.values()) {
      const existing = this.listeners.get(def.name);
      if (existing) {
        if (existing.def !== def) {
          existing.def = def;
          existing.rt.trustedRanges = parseRanges(def.trustedProxies);
        }
        if (def.tls) this.updateCerts(existing, table);
        continue;
      }
      try {
        await this.openListener(def, table);
      } catch (err) {
        errors.push(`entrypoint ${def.name} (${def.listen}): ${(err as Error).message}`);
        this.log.error({ entrypoint: def.name, listen: def.listen, err: (err as Error).message }, 'l7: cannot listen');
      }
    }
    this.lastError = errors.length ? errors.join('; ') : undefined;
  }

  private async openListener(def: Entrypoint, table: RoutingTable): Promise<void> {
    const listen = parseListen(def.listen);
    if (!listen.ok) throw new Error(listen.error);
    const rt: Listener['rt'] = {
      name: def.name,
      tls: !!def.tls,
      proto: def.tls ? 'https' : 'http',
      connections: new Set<ClientConn>(),
      draining: false,
      noRouteStats: this.requestMetrics.for(def.name, NO_ROUTE),
      onEmpty: undefined,
      connectionClosed(c: ClientConn): void {
        if (this.connections.delete(c) && this.connections.size === 0) this.onEmpty?.();
      },
      trustedRanges: parseRanges(def.trustedProxies),
      trusted(ip: string): boolean {
        if (this.trustedRanges.length === 0 || !ip) return false;
        try {
          const a = ipaddr.process(ip);
          return this.trustedRanges.some(([net, bits]) => a.kind() === net.kind() && a.match(net, bits));
        } catch {
          return false;
        }
      },
    };
    const l: Listener = {
      def,
      rt,
      server: undefined,
      uvServer: undefined,
      socket: undefined,
      address: '',
      certs: undefined,
      certInputs: undefined,
      closing: false,
      rawSockets: new Set(),
      lastAcceptError: 0,
    };
    const onConnection = (socket: net.Socket) => {
      refreshClock();
      if (l.closing) {
        socket.destroy();
        return;
      }
      new ClientConn(this, rt, new SocketStream(socket, NO_OWNER, true));
    };
    if (def.tls) {
      this.updateCerts(l, table);
      const server = tls.createServer({
        allowHalfOpen: true,
        SNICallback: (servername, cb) => cb(null, l.certs?.lookup(servername)?.context),
        ALPNProtocols: ['http/1.1'],
        minVersion: 'TLSv1.2',
        ciphers: INTERMEDIATE_CIPHERS,
        sessionIdContext: sessionIdContext(def.name),
        sessionTimeout: 300,
        // A handshake is part of "the request head": the same slowloris bound (Node's default is 120 s).
        handshakeTimeout: this.opts.headerTimeoutMs,
        ...this.defaultContextOptions(l),
      });
      this.ticketKeys.installOnServer(server);
      server.on('secureConnection', onConnection);
      server.on('connection', (raw: net.Socket) => {
        l.rawSockets.add(raw);
        raw.once('close', () => l.rawSockets.delete(raw));
      });
      // Handshake failures are the client's business, but the socket is ours: a half-open one would
      // otherwise outlive the client (and hold server.close() forever).
      server.on('tlsClientError', (_err, socket) => socket.destroy());
      l.server = server;
    } else if (!this.useUv) {
      // Half-open: a client's FIN must not end our side (ClientConn.onEnd decides: the response in
      // progress is still sent; a tunnel passes the half-close on).
      l.server = net.createServer({ noDelay: true, allowHalfOpen: true }, onConnection);
    }
    const { host, port } = listen.value;
    let got: Bound<UvTcp>;
    try {
      got = await this.sockets.tcp(host, port, 4096, `l7 ${def.name}`);
    } catch (err) {
      // A net/tls server says it in net.Server's words, as when it bound the socket itself.
      if (l.server) (err as Error).message = netMessage(err as NodeJS.ErrnoException);
      throw err;
    }
    // Nothing is awaited from here until the socket is given to its server or acceptor (listen.ts says why).
    l.socket = got.spec;
    const server = l.server;
    if (server) {
      server.on('error', (err) => this.log.error({ err, entrypoint: def.name }, 'l7: listener error'));
      try {
        await new Promise<void>((resolve, reject) => {
          const onError = (err: Error) => reject(err);
          server.once('error', onError);
          server.listen(got.handle, 4096, () => {
            server.off('error', onError);
            resolve();
          });
        });
      } catch (err) {
        this.sockets.release(got.spec);
        throw err;
      }
      const a = server.address() as net.AddressInfo;
      l.address = formatListen({ host: a.address, port: a.port });
    } else {
      // Plain HTTP on libuv handles (stream.ts): accepted straight into a UvStream, no net.Socket.
      const uvServer = acceptUv(
        got.handle,
        (h) => {
          if (l.closing) {
            h.close();
            return;
          }
          new ClientConn(this, rt, new UvStream(h, NO_OWNER, true));
        },
        (err) => {
          // EMFILE and friends repeat while the condition lasts: say so at most once a second.
          const now = Date.now();
          if (now - l.lastAcceptError < 1000) return;
          l.lastAcceptError = now;
          this.log.warn({ entrypoint: def.name, err: err.code }, 'l7: accept failed');
        },
      );
      l.uvServer = uvServer;
      const a = uvServer.address();
      l.address = formatListen({ host: a.address, port: a.port });
    }
    if (this.state === 'stopped') {
      // stop() came while the socket was on its way: it closed the listeners it knew of.
      void this.closeListener(l, 0);
      return;
    }
    this.listeners.set(def.name, l);
    this.log.info({ entrypoint: def.name, listen: l.address, tls: !!def.tls }, 'l7: listening');
  }

  /** The address an entrypoint is bound to (tests listen on port 0). */
  address(entrypoint: string): { host: string; port: number } | undefined {
    const l = this.listeners.get(entrypoint);
    if (!l) return undefined;
    if (l.uvServer) {
      const u = l.uvServer.address();
      return u.address ? { host: u.address, port: u.port } : undefined;
    }
    const a = l.server?.address() as net.AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : undefined;
  }

  private defaultContextOptions(l: Listener): tls.SecureContextOptions {
    const d = l.certs?.defaultCert;
    return d ? { cert: d.pem.cert, key: d.pem.key } : {};
  }

  /**
   * The certificates the cluster CA holds for `tls.auto` hosts (the PKI's AutoCertManager calls this on
   * every change, renewals by other instances included). The SNI maps of auto entrypoints are rebuilt
   * at once; no listener is touched.
   */
  setAutoCertificates(certs: ReadonlyArray<{ serial: string; certPem: string; chainPem: string; keyPem: string }>): void {
    const next = new Map<string, LoadedCert>();
    for (const c of certs) {
      const have = this.autoCerts.get(c.serial);
      if (have) {
        next.set(c.serial, have);
        continue;
      }
      try {
        next.set(
          c.serial,
          loadPem(`${c.certPem.trim()}\n${c.chainPem.trim()}\n`, c.keyPem, `cluster CA serial ${c.serial}`, this.ticketKeys),
        );
      } catch (err) {
        this.log.error({ serial: c.serial, err: (err as Error).message }, 'l7: a cluster CA certificate could not be loaded');
      }
    }
    this.autoCerts = next;
    const table = this.lastTable;
    if (!table) return;
    for (const l of this.listeners.values()) if (l.def.tls?.auto) this.updateCerts(l, table);
  }

  /**
   * The keys instances share (the PKI's SessionKeyManager calls this on every change, rotations by other
   * instances included): sticky-cookie ids are issued under `sticky.current` and accepted under either
   * secret; TLS session tickets are issued under `tickets.current` (48 bytes, Node's `setTicketKeys`
   * layout) and resumed under either key. Balancers and TLS contexts read them on their next pick or
   * handshake: no table swap, no listener or connection touched. Keys that do not fit are logged (never
   * their bytes) and the ones in effect are kept.
   */
  setSessionKeys(keys: {
    sticky: { current: Buffer; previous?: Buffer | undefined };
    tickets: { current: Buffer; previous?: Buffer | undefined };
  }): void {
    try {
      const { current, previous } = keys.sticky;
      for (const s of previous === undefined ? [current] : [current, previous])
        if (!Buffer.isBuffer(s) || s.length === 0) throw new TypeError('a sticky secret is not a non-empty Buffer');
      this.ticketKeys.set(keys.tickets.current, keys.tickets.previous); // checks both keys before taking either
      this.balanceOpts.stickySecret.set(keys.sticky.current, keys.sticky.previous);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'l7: session keys refused; the ones in effect are kept');
    }
  }

  /**
   * Certificates of a TLS entrypoint: files named in the table; with `auto`, the cluster CA's; with
   * `auto` and nothing yet from the CA, a self-signed development certificate.
   */
  private updateCerts(l: Listener, table: RoutingTable): void {
    const files: LoadedCert[] = [];
    for (const ref of l.def.tls?.certificates ?? []) {
      try {
        files.push(this.loadCached(ref.certFile, ref.keyFile));
      } catch (err) {
        this.lastError = `entrypoint ${l.def.name}: certificate ${ref.certFile}: ${(err as Error).message}`;
        this.log.error({ entrypoint: l.def.name, certFile: ref.certFile, err: (err as Error).message }, 'l7: certificate not loaded');
      }
    }
    // The same certificates as last time (the dev certificate: the same routes): the map made then stays.
    const auto = l.def.tls?.auto ? this.autoCerts : undefined;
    const devRoutes = auto !== undefined && auto.size === 0 && files.length === 0 ? table.routes : undefined;
    const was = l.certInputs;
    if (
      was !== undefined &&
      was.tls === l.def.tls &&
      was.auto === auto &&
      was.devRoutes === devRoutes &&
      was.files.length === files.length &&
      was.files.every((c, i) => c === files[i])
    )
      return;
    l.certInputs = { tls: l.def.tls, auto, devRoutes, files };
    const map = new CertMap();
    for (const c of files) map.add(c);
    if (auto) for (const c of auto.values()) map.add(c);
    if (map.size === 0 && l.def.tls?.auto) {
      const hosts = [...new Set(table.routes.filter((r) => r.entrypoint === l.def.name && r.host !== '*').map((r) => r.host))].sort();
      const key = hosts.join(',');
      let dev = this.devCerts.get(key);
      if (!dev) {
        const pair = devCertificate(hosts);
        dev = loadPem(pair.cert, pair.key, 'development certificate', this.ticketKeys);
        this.devCerts = new Map([[key, dev]]);
        this.log.warn(
          { entrypoint: l.def.name, hosts },
          'l7: tls.auto and no certificate from the cluster CA yet: serving a self-signed development certificate',
        );
      }
      map.add(dev);
    }
    const hadDefault = l.certs?.defaultCert;
    l.certs = map;
    if (l.server instanceof tls.Server && map.defaultCert && map.defaultCert !== hadDefault) {
      l.server.setSecureContext({
        cert: map.defaultCert.pem.cert,
        key: map.defaultCert.pem.key,
        minVersion: 'TLSv1.2',
        ciphers: INTERMEDIATE_CIPHERS,
        sessionIdContext: sessionIdContext(l.def.name),
      });
      this.ticketKeys.installOnServer(l.server);
    }
  }

  private loadCached(certFile: string, keyFile: string): LoadedCert {
    const k = `${certFile}\0${keyFile}`;
    const mtimeMs = Math.max(statSync(certFile).mtimeMs, statSync(keyFile).mtimeMs);
    const hit = this.certCache.get(k);
    if (hit && hit.mtimeMs === mtimeMs) return hit.cert;
    const cert = loadCertFiles(certFile, keyFile, this.ticketKeys);
    this.certCache.set(k, { mtimeMs, cert });
    return cert;
  }

  private closeListener(l: Listener, drainMs: number): Promise<void> {
    refreshClock();
    l.closing = true;
    l.rt.draining = true;
    return new Promise<void>((resolve) => {
      // Done when the listener is closed and every connection of it has closed (net.Server's 'close').
      let listening = true;
      const done = () => {
        if (listening || l.rt.connections.size > 0) return;
        clearTimeout(timer);
        l.rt.onEmpty = undefined;
        resolve();
      };
      l.rt.onEmpty = done;
      const timer = setTimeout(() => {
        for (const c of l.rt.connections) c.destroy();
        for (const s of l.rawSockets) s.destroy();
      }, drainMs);
      timer.unref();
      if (l.uvServer) {
        l.uvServer.close();
        listening = false;
      } else {
        l.server?.close(() => {
          listening = false;
          done();
        });
      }
      if (l.socket) this.sockets.release(l.socket);
      for (const c of l.rt.connections) c.drain();
      done();
    });
  }
}

function parseRanges(cidrs: string[]): Array<[ipaddr.IPv4 | ipaddr.IPv6, number]> {
  const out: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]> = [];
  for (const c of cidrs) {
    try {
      out.push(ipaddr.parseCIDR(c));
    } catch {
      // the config validated these; a bad one is simply not trusted
    }
  }
  return out;
}

/** What `describe()` shows: the compiled table, in a stable order. */
export interface L7Description {
  version: number;
  /** Per entrypoint, its routes in match order: the service each names and whether the table has it. */
  routers: Record<string, Array<{ route: string; service: string; served: boolean }>>;
  /** Per route id, its settings. */
  routes: Record<
    string,
    {
      connectMs: number;
      responseHeaderMs: number;
      idleMs: number;
      maxBodyBytes: number;
      hsts: string | undefined;
      allow: boolean;
      auth: boolean;
      filters: string[];
    }
  >;
  /** Per service id, its balance and upstreams (table order) with the state the table and checks gave them. */
  sets: Record<
    string,
    {
      balance: UpstreamSet['balance'];
      upstreams: Array<{ key: string; weight: number; health: string; activeHealthy: boolean }>;
    }
  >;
  /** Active checks, `<service id> <endpoint key>`, sorted. */
  checks: string[];
  /** Endpoint keys some set holds (their pools are kept), sorted. */
  endpoints: string[];
  /** Endpoint keys with a connection pool now (made on first use), sorted. */
  pools: string[];
}

/** The factory `src/planes.ts` registers. */
export function createL7Plane(o: L7PlaneOptions): L7Plane {
  return new L7Plane(o);
}
