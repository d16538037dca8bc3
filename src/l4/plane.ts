/**
 * The L4 data plane: TCP and UDP VIPs and SNI-passthrough entrypoints, fed routing tables only.
 *
 * apply(table) compiles the fronts first (which address each VIP binds, which host goes to which service
 * on a passthrough entrypoint, and so which services need a pool), then commits: pools take their new
 * members and rebuild their selectors only where the eligible set changed, and `this.compiled` is replaced
 * in one assignment. Connections in flight keep the endpoint they have. Listeners are opened or closed only
 * when the set of (protocol, address, port) the table needs changed; that runs after the swap, serialised.
 *
 * apply(table, change), when `change.from` is the version served, patches instead: only the pools of the
 * services the change names are updated (a service no front uses costs nothing), only their endpoints'
 * active checks are revisited, and the fronts are compiled again only when the VIPs, routes or entrypoints
 * changed; then pools of services no longer needed drain and pools of newly needed ones fill, the others
 * stay untouched. Whatever else (a first table, no change, a change from another version) is compiled
 * whole. Either way the outcome is the same (test/l4/patch.test.ts); one difference: which VIP addresses
 * are on this machine is read when the fronts are compiled, so a patched endpoint change does not see an
 * address that appeared on an interface since.
 *
 * Where a VIP binds: on its own address (`ip`, assigned by the VIP allocator for named VIPs) when that
 * address is configured on this machine (os.networkInterfaces() at apply time, as dcos-net's VIPs on its
 * dummy interface), else on `vips.listen` at the VIP's port. A bind on the VIP address that fails with
 * EADDRNOTAVAIL falls back to `vips.listen`. A named VIP without `ip` is not served yet. Two VIPs that
 * need the same (protocol, address, port) — two named VIPs on one port, both falling back to
 * `vips.listen` — cannot both be served: the first by key is, the other is reported in status and the api.
 *
 * Draining: a member that leaves the table, turns unhealthy or draining (weight 0), is found down by the
 * active check or ejected after connect failures takes no new connections from that moment; the ones it
 * has may finish for `drainTimeoutMs`, then they are closed.
 *
 * TCP connections are `TcpSession`s (tcp.ts), one state machine over the byte streams of src/net: on
 * libuv handles driven directly (about half the CPU per connection of net.Socket) where this Node has the
 * bindings, on net.Socket otherwise or with `tcpEngine: 'net'` (options.tcpEngine). VIPs and SNI
 * entrypoints alike; the listener decides, at accept.
 *
 * Listening sockets, TCP and UDP, come from the plane's SocketSource (src/net/listen.ts): bound here, or,
 * in one of several workers, the supervisor's socket shared by all of them.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import ipaddr from 'ipaddr.js';
import type { DataPlane, HealthVerdict, PlaneHealth, PlaneStatus } from '../model/plane.js';
import { formatListen, parseListen } from '../model/parse.js';
import type { RoutingTable, Service, TableChange, VipEntry } from '../model/types.js';
import type { Logger } from '../telemetry/log.js';
import { silentLogger } from '../telemetry/log.js';
import { prom, type Registry } from '../telemetry/metrics.js';
import { describeL4, type L4Description, type VipBinding } from './describe.js';
import { ActiveChecker, type CheckParams, type ConnectProbe, type HealthTransition } from './health.js';
import { registerL4Metrics } from './metrics.js';
import { resolveL4Options, type L4Balance, type L4Failure, type L4Options } from './options.js';
import { Backend, endpointKey, ServicePool, type Member } from './pool.js';
import { streamOptions, TcpSession } from './tcp.js';
import { FrontStats, SniRouter, type Front, type L4Host, type L4Session, type RejectDetail } from './types.js';
import { UdpListener } from './udp.js';
import * as uv from '../net/uv.js';
import { DIRECT, bindDgram, dgramMessage, netMessage, type Bound, type SocketSource, type SocketSpec, type UvUdp } from '../net/listen.js';
import { NO_OWNER, SocketStream, UvStream, type StreamOptions } from '../net/stream.js';

export interface L4PlaneOptions {
  /** `vips.listen` from the config: where a VIP binds when its own address is not on this machine. */
  listenAddress: string;
  logger?: Logger;
  registry?: Registry;
  options?: Partial<L4Options>;
  /** Replaces the active check's TCP connect (tests). */
  probe?: ConnectProbe;
  /**
   * How the active checks run: absent, the plane probes; in a worker of several, one worker probes and
   * publishes its transitions, the others follow (src/model/plane.ts `PlaneHealth`).
   */
  health?: PlaneHealth;
  /**
   * Where listening sockets come from (src/net/listen.ts): DIRECT (default) binds here; a worker of
   * several is given BrokeredSockets, so that every worker serves the same sockets.
   */
  sockets?: SocketSource;
}

/** Label a service can carry to choose its L4 selection: `maglev`, `leastconn` or `roundrobin`. */
export const BALANCE_LABEL = 'PORTICO_L4_BALANCE';

interface FrontSpec {
  kind: 'vip' | 'sni';
  key: string;
  protocol: 'tcp' | 'udp';
  host: string;
  port: number;
  listenerKey: string;
  binding: VipBinding | 'entrypoint';
  /** The listen address to fall back to if binding `host` gives EADDRNOTAVAIL. */
  fallbackHost?: string;
  serviceId?: string;
  proxyProtocol?: 'v1' | 'v2';
  sniRoutes?: Array<{ host: string; service: string }>;
}

/** What the plane knows about one VIP or passthrough entrypoint of the current table, for status and the api. */
interface FrontView {
  spec?: FrontSpec;
  vip?: VipEntry;
  entrypoint?: string;
  /** Why it is not served (no address yet, port conflict, bad listen address). */
  skipped?: string;
}

/** What compile() makes of a table's VIPs, entrypoints and routes (the fronts), before pools are attached. */
interface CompiledFronts {
  specs: Map<string, FrontSpec>;
  /** By VIP key / `sni/<entrypoint>`, in table order. */
  views: Map<string, FrontView>;
  /**
   * The services the fronts need: those of VIPs with an address (served or not) and of the routes on
   * passthrough entrypoints. Each has a pool as long as it is listed here.
   */
  services: ReadonlySet<string>;
}

interface CompiledTable extends CompiledFronts {
  version: number;
  /** By listener key: what each listener serves. */
  fronts: Map<string, Front>;
}

/** How much compiling the plane has done since it was created (inspect(): diagnostics and tests). */
export interface L4Work {
  /** Tables taken whole: the first one, one without a change, or one whose change starts elsewhere. */
  full: number;
  /** Tables patched from a change of the one served. */
  patched: number;
  /** Times the fronts (VIPs, passthrough entrypoints, listeners wanted) were compiled from a table. */
  frontCompiles: number;
  /** Pools handed their service's endpoints. */
  poolUpdates: number;
  /** Selectors (Maglev tables, …) built because a pool's eligible set changed. */
  selectorBuilds: number;
}

/** The plane's compiled state, as plain data (inspect()): what each listener serves and what each pool picks from. */
export interface L4Inspection {
  version: number;
  fronts: Array<{
    /** `tcp 127.0.0.1:80` (port 0: `#<front key>` appended, each its own listener). */
    listener: string;
    kind: 'vip' | 'sni';
    key: string;
    protocol: 'tcp' | 'udp';
    /** VIP: the service whose pool it uses. */
    service?: string;
    proxyProtocol?: 'v1' | 'v2';
    /** SNI: host → service, as the router matches them. */
    sni?: Array<{ host: string; service: string }>;
  }>;
  /** By service id, sorted. */
  pools: Array<{
    service: string;
    algorithm: L4Balance;
    /** What the selector was built from (`maglev|10.0.0.1:80*1,…`); members it picks from. */
    selection: string;
    selectorMembers: number;
    /** `address:port` of every member, `-` appended to one no longer listed. */
    members: string[];
    check?: CheckParams;
  }>;
  /** Endpoints under active check, sorted, with the parameters they are checked with. */
  checks: Array<{ endpoint: string } & CheckParams>;
  /** Shared endpoints known, sorted. */
  backends: string[];
  work: L4Work;
}

interface Listener {
  key: string;
  spec: FrontSpec;
  /** Actual bound address, `host:port`. */
  address: string;
  host: string;
  port: number;
  /** Bound on vips.listen after EADDRNOTAVAIL on the VIP address. */
  fellBack: boolean;
  server?: net.Server;
  /** A TCP listener on a libuv handle: connections are accepted straight into UvStreams. */
  uvServer?: uv.UvTcp;
  udp?: UdpListener;
  /** The socket as the source gave it: released when the listener closes. */
  socket: SocketSpec;
  closing: boolean;
}

/** A listener's socket, given to what serves it (bind()). */
interface Opened {
  server?: net.Server;
  uvServer?: uv.UvTcp;
  udp?: dgram.Socket;
  address: { address: string; port: number };
  socket: SocketSpec;
}

function listenerKey(protocol: string, host: string, port: number, frontKey: string): string {
  // Port 0 (ephemeral, tests) never collides: each front gets its own.
  return port === 0 ? `${protocol} ${formatListen({ host, port })}#${frontKey}` : `${protocol} ${formatListen({ host, port })}`;
}

/** Addresses configured on this machine's interfaces, normalised. */
export function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      try {
        out.add(
          a.family === 'IPv6' || (a.family as unknown) === 6
            ? ipaddr.IPv6.parse(a.address.split('%')[0] as string).toRFC5952String()
            : a.address,
        );
      } catch {
        // an address the OS reports that ipaddr cannot read: not one of ours
      }
    }
  }
  return out;
}

function normaliseIp(a: string): string {
  try {
    const p = ipaddr.parse(a);
    return p.kind() === 'ipv6' ? (p as ipaddr.IPv6).toRFC5952String() : p.toString();
  } catch {
    return a;
  }
}

export function balanceFor(svc: Service | undefined, fallback: L4Balance): L4Balance {
  const label = svc?.labels[BALANCE_LABEL]?.toLowerCase();
  if (label === 'maglev' || label === 'leastconn' || label === 'roundrobin') return label;
  if (svc?.balance.algorithm === 'leastconn') return 'leastconn';
  return fallback;
}

export class L4Plane implements DataPlane, L4Host {
  readonly name = 'l4';
  readonly opts: Readonly<L4Options>;
  readonly acceptProxy: boolean;
  readonly streamOptions: Readonly<StreamOptions>;
  private readonly listenAddress: string;
  private readonly trustedRanges: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>;
  private compiled: CompiledTable = { version: 0, fronts: new Map(), specs: new Map(), views: new Map(), services: new Set() };
  /** Whether a table was applied: only then can a change be patched onto `compiled`. */
  private hasTable = false;
  private readonly listeners = new Map<string, Listener>();
  /** Listener errors by front key (bind failures), kept until the front binds or goes. */
  private readonly listenErrors = new Map<string, string>();
  private readonly pools = new Map<string, ServicePool>();
  private readonly backends = new Map<string, Backend>();
  private readonly stats = new Map<string, FrontStats>();
  /** Pools the tick looks at: with members that left the table, or no longer needed by any front. */
  private readonly pruning = new Set<ServicePool>();
  /** Counters of fronts that went from the table, dropped by the tick once nothing is open through them. */
  private readonly orphanStats = new Set<string>();
  private readonly work: L4Work = { full: 0, patched: 0, frontCompiles: 0, poolUpdates: 0, selectorBuilds: 0 };
  /** Check parameters of services without `health` (options.healthCheck), or undefined when those are off. */
  private readonly defaultCheck: CheckParams | undefined;
  private readonly sessions = new Set<L4Session>();
  /** TCP listeners on libuv handles (see options.tcpEngine). */
  private readonly uvEngine: boolean;
  private readonly sockets: SocketSource;
  private readonly health: ActiveChecker;
  private readonly publishHealth: ((v: HealthVerdict) => void) | undefined;
  private readonly ejectTimers = new Set<NodeJS.Timeout>();
  private readonly log: Logger;
  private ticker: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> = Promise.resolve();
  private state: PlaneStatus['state'] = 'starting';
  private lastError: string | undefined;
  private logWindow = 0;
  private logLines = 0;
  private suppressed = 0;
  private drainWaiter: (() => void) | undefined;

  constructor(o: L4PlaneOptions) {
    this.opts = resolveL4Options(o.options);
    const listen = normaliseIp(o.listenAddress.startsWith('[') ? o.listenAddress.slice(1, -1) : o.listenAddress);
    if (!net.isIP(listen)) throw new TypeError(`l4: listenAddress ${JSON.stringify(o.listenAddress)} is not an IP address`);
    this.listenAddress = listen;
    this.trustedRanges = this.opts.acceptProxyFrom.map((c) => ipaddr.parseCIDR(c));
    this.acceptProxy = this.trustedRanges.length > 0;
    if (this.opts.tcpEngine === 'uv' && !uv.available)
      throw new TypeError('l4 option tcpEngine = "uv": this Node does not expose the libuv TCP bindings; use "auto" or "net"');
    this.uvEngine = this.opts.tcpEngine !== 'net' && uv.available;
    this.sockets = o.sockets ?? DIRECT;
    this.streamOptions = streamOptions(this.opts);
    this.log = (o.logger ?? silentLogger).child({ component: 'l4' });
    this.health = new ActiveChecker((t) => this.onHealth(t), o.probe, o.health?.mode ?? 'probe');
    this.publishHealth = o.health?.publish;
    const d = this.opts.healthCheck;
    this.defaultCheck = d.enabled
      ? Object.freeze({ intervalMs: d.intervalMs, timeoutMs: d.timeoutMs, rise: d.rise, fall: d.fall })
      : undefined;
    registerL4Metrics(o.registry ?? new prom.Registry(), {
      stats: this.stats,
      backends: this.backends,
      pools: this.pools,
      checks: () => this.health.stats(),
      flush: () => {
        for (const s of this.sessions) s.flush();
      },
    });
  }

  // ---- DataPlane

  async start(table: RoutingTable): Promise<void> {
    this.apply(table);
    await this.reconciling;
  }

  apply(table: RoutingTable, change?: TableChange): void {
    if (this.state === 'stopped') return;
    // A change is patched onto what the plane serves only if it starts from that very table.
    const patch = change !== undefined && this.hasTable && change.from === this.compiled.version ? change : undefined;
    let fronts: CompiledFronts | undefined;
    if (!patch || patch.vips || patch.routes || patch.entrypoints) {
      try {
        fronts = this.compile(table);
      } catch (err) {
        this.lastError = `table ${table.version}: ${(err as Error).message}`;
        this.log.error({ err, version: table.version }, 'l4: table not applied; the previous one keeps serving');
        return;
      }
    }
    try {
      if (patch) {
        try {
          this.commitChange(table, patch, fronts);
        } catch (err) {
          // A bug; what the patch did so far is redone from the whole table.
          this.log.error({ err, version: table.version, from: patch.from }, 'l4: patching the table failed; compiling it whole');
          fronts ??= this.compile(table);
          this.commitAll(table, fronts);
        }
      } else {
        this.commitAll(table, fronts as CompiledFronts);
      }
    } catch (err) {
      // commit only assigns; reaching here is a bug, but the plane must keep serving.
      this.lastError = `table ${table.version}: ${(err as Error).message}`;
      this.log.error({ err, version: table.version }, 'l4: table commit failed');
      return;
    }
    this.hasTable = true;
    this.lastError = undefined;
    this.startTicker();
    // Listeners change only with the fronts; a listener that could not bind is retried with every table.
    const reconcile = fronts !== undefined || this.listenErrors.size > 0;
    this.reconciling = this.reconciling
      .then(() => (reconcile ? this.reconcileListeners() : undefined))
      .then(
        () => {
          if (this.state !== 'stopped') this.state = this.lastError || this.listenErrors.size > 0 ? 'error' : 'serving';
        },
        (err: unknown) => {
          this.lastError = (err as Error).message;
          if (this.state !== 'stopped') this.state = 'error';
        },
      );
  }

  /**
   * Resolves once every table applied so far is programmed: listeners opened, moved or closed as it asks
   * (apply() swaps the table at once and reconciles listeners after it, serialised). Never rejects; a
   * listener that could not be opened shows in status() and describe().
   */
  settled(): Promise<void> {
    return this.reconciling;
  }

  /**
   * The TCP sessions open now, as snapshots: bytes moved so far and whether the endpoint's side is being
   * read (false while backpressure pauses it because the client does not read). Diagnostics and tests.
   */
  openSessions(): Array<Pick<L4Session, 'bytes' | 'upstreamReading'>> {
    return [...this.sessions].map((s) => ({ bytes: s.bytes, upstreamReading: s.upstreamReading }));
  }

  async stop(drainMs: number): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    await this.reconciling.catch(() => undefined);
    const closing: Promise<void>[] = [];
    for (const l of this.listeners.values()) closing.push(this.closeListener(l, false));
    this.listeners.clear();
    await Promise.all(closing);
    if (this.sessions.size > 0 && drainMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainMs);
        this.drainWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.drainWaiter = undefined;
    for (const s of [...this.sessions]) s.destroy();
    this.health.stop();
    for (const t of this.ejectTimers) clearTimeout(t);
    this.ejectTimers.clear();
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  status(): PlaneStatus {
    const s: PlaneStatus = {
      name: this.name,
      state: this.state,
      listeners: [...this.listeners.values()].map((l) => `${l.spec.kind === 'sni' ? 'tls' : l.spec.protocol} ${l.address}`),
      tableVersion: this.compiled.version,
    };
    const errors = [...this.listenErrors.values()];
    if (this.lastError) errors.unshift(this.lastError);
    if (errors.length) s.error = errors.join('; ');
    return s;
  }

  /** Where a VIP (by key) or a passthrough entrypoint (by name, or `sni/<name>`) is bound now. */
  address(key: string): { host: string; port: number } | undefined {
    for (const l of this.listeners.values()) {
      if (l.spec.key === key || l.spec.key === `sni/${key}`) return { host: l.host, port: l.port };
    }
    return undefined;
  }

  private get stopped(): boolean {
    return this.state === 'stopped';
  }

  // ---- L4Host

  get now(): number {
    return Date.now();
  }

  trustedProxy(address: string): boolean {
    try {
      const a = ipaddr.process(address);
      return this.trustedRanges.some(([range, bits]) => a.kind() === range.kind() && a.match(range, bits));
    } catch {
      return false;
    }
  }

  connectSucceeded(m: Member): void {
    m.backend.consecutiveFailures = 0;
  }

  connectFailed(m: Member, reason: 'connect-failed' | 'connect-timeout', err: Error | undefined): void {
    const b = m.backend;
    if (reason === 'connect-timeout') b.connectTimeouts++;
    else b.connectFailures++;
    b.consecutiveFailures++;
    this.log.debug({ endpoint: b.key, reason, err: err?.message }, 'l4: connect to endpoint failed');
    const n = this.opts.passiveFailures;
    if (n > 0 && b.consecutiveFailures >= n && b.ejectedUntil <= this.now) {
      b.ejectedUntil = this.now + this.opts.passiveEjectMs;
      // One more failure after it comes back ejects it again at once.
      b.consecutiveFailures = n - 1;
      this.log.warn(
        { endpoint: b.key, failures: n, ejectMs: this.opts.passiveEjectMs, reason, err: err?.message },
        'l4: endpoint ejected after consecutive connect failures',
      );
      this.rebuildFor(b);
      const t = setTimeout(() => {
        this.ejectTimers.delete(t);
        this.rebuildFor(b);
      }, this.opts.passiveEjectMs + 5);
      t.unref();
      this.ejectTimers.add(t);
    }
  }

  rejected(front: Front, reason: L4Failure, detail: RejectDetail): void {
    front.stats.count(reason);
    const now = this.now;
    if (now - this.logWindow >= 1000) {
      if (this.suppressed > 0) this.log.warn({ suppressed: this.suppressed }, 'l4: more connections were refused or failed than logged');
      this.logWindow = now;
      this.logLines = 0;
      this.suppressed = 0;
    }
    if (this.logLines >= this.opts.logLinesPerSecond) {
      this.suppressed++;
      return;
    }
    this.logLines++;
    const line: Record<string, unknown> = { vip: front.key, protocol: front.protocol, reason };
    if (detail.client) line.client = formatListen({ host: detail.client.address, port: detail.client.port });
    if (detail.endpoint) line.endpoint = detail.endpoint;
    if (detail.tried) line.tried = detail.tried;
    if (detail.serverName !== undefined) line.serverName = detail.serverName;
    if (detail.err) line.err = (detail.err as NodeJS.ErrnoException).code ?? detail.err.message;
    if (detail.message) line.detail = detail.message;
    if (reason === 'upstream-error') this.log.info(line, 'l4: connection failed');
    else this.log.warn(line, 'l4: connection refused');
  }

  // ---- compile and commit

  /** The fronts of a table: which address and port each VIP and passthrough entrypoint binds, and what it serves. */
  private compile(table: RoutingTable): CompiledFronts {
    this.work.frontCompiles++;
    const local = localAddresses();
    const views = new Map<string, FrontView>();
    const specs = new Map<string, FrontSpec>();
    const services = new Set<string>();
    const owner = new Map<string, string>();
    const claim = (spec: FrontSpec, view: FrontView): void => {
      const other = owner.get(spec.listenerKey);
      if (other !== undefined) {
        view.skipped = `${spec.listenerKey} is already served by ${other}`;
        return;
      }
      owner.set(spec.listenerKey, spec.key);
      specs.set(spec.listenerKey, spec);
      view.spec = spec;
    };

    for (const v of table.vips) {
      const view: FrontView = { vip: v };
      views.set(v.key, view);
      const ip = v.ip ?? v.address;
      if (ip === undefined) {
        view.skipped = 'no address allocated yet';
        continue;
      }
      services.add(v.service);
      const onHost = local.has(normaliseIp(ip));
      const host = onHost ? normaliseIp(ip) : this.listenAddress;
      const spec: FrontSpec = {
        kind: 'vip',
        key: v.key,
        protocol: v.protocol,
        host,
        port: v.port,
        listenerKey: listenerKey(v.protocol, host, v.port, v.key),
        binding: onHost ? 'vip-address' : 'listen-address',
        serviceId: v.service,
      };
      if (onHost && host !== this.listenAddress) spec.fallbackHost = this.listenAddress;
      if (v.proxyProtocol) spec.proxyProtocol = v.proxyProtocol;
      claim(spec, view);
    }

    for (const ep of Object.values(table.entrypoints)) {
      if (!ep.tls?.passthrough) continue;
      const key = `sni/${ep.name}`;
      const view: FrontView = { entrypoint: ep.name };
      views.set(key, view);
      const l = parseListen(ep.listen);
      if (!l.ok) {
        view.skipped = l.error;
        continue;
      }
      const sniRoutes: Array<{ host: string; service: string }> = [];
      const seen = new Set<string>();
      for (const r of table.routes) {
        if (r.entrypoint !== ep.name || seen.has(r.host)) continue; // routes are sorted: the first per host wins
        seen.add(r.host);
        sniRoutes.push({ host: r.host, service: r.service });
        services.add(r.service);
      }
      claim(
        {
          kind: 'sni',
          key,
          protocol: 'tcp',
          host: l.value.host,
          port: l.value.port,
          listenerKey: listenerKey('tcp', l.value.host, l.value.port, key),
          binding: 'entrypoint',
          sniRoutes,
        },
        view,
      );
    }
    return { views, specs, services };
  }

  /** Take `table` whole: every pool its fronts need gets its service's endpoints, every other pool drains. */
  private commitAll(table: RoutingTable, c: CompiledFronts): void {
    this.work.full++;
    const now = this.now;
    for (const id of c.services) this.takeService(id, table);
    for (const [id, pool] of this.pools) if (!c.services.has(id)) this.releasePool(pool);
    for (const pool of this.pools.values()) this.rebuildPool(pool, now);
    this.setFronts(table, c);
    const wanted = new Map<Backend, CheckParams>();
    for (const b of this.backends.values()) {
      const p = this.checkFor(b);
      if (p) wanted.set(b, p);
    }
    // Verdicts handed over before the first table (a worker that starts): their pools leave them out now.
    for (const b of this.health.update(wanted)) this.rebuildFor(b);
  }

  /**
   * Patch `change` (from the table served now) in: only the pools of the services it names are updated, and
   * only their endpoints' checks. `c`, when the VIPs, routes or entrypoints changed, is the table's fronts,
   * compiled again: pools of services the fronts no longer need drain, pools of newly needed ones are
   * filled; the pools of every other service stay as they are.
   */
  private commitChange(table: RoutingTable, change: TableChange, c: CompiledFronts | undefined): void {
    this.work.patched++;
    const now = this.now;
    const was = this.compiled.services;
    const wanted = c?.services ?? was;
    const touched = new Set<ServicePool>();
    for (const ids of [change.upserted, change.removed]) {
      for (const id of ids) if (wanted.has(id)) touched.add(this.takeService(id, table));
    }
    if (c) {
      for (const id of wanted) if (!was.has(id)) touched.add(this.takeService(id, table));
      for (const id of was) {
        const pool = this.pools.get(id);
        if (!wanted.has(id) && pool) {
          this.releasePool(pool);
          touched.add(pool);
        }
      }
    }
    for (const pool of touched) this.rebuildPool(pool, now);
    if (c) this.setFronts(table, c);
    else this.compiled = { ...this.compiled, version: table.version };
    for (const pool of touched) for (const m of pool.members.values()) this.health.set(m.backend, this.checkFor(m.backend));
  }

  /** Hand service `id`'s endpoints (none when the table has no such service) to its pool, created if need be. */
  private takeService(id: string, table: RoutingTable): ServicePool {
    const svc = table.services.get(id);
    const algorithm = balanceFor(svc, this.opts.balance);
    let pool = this.pools.get(id);
    if (!pool) {
      pool = new ServicePool(id, algorithm, this.opts.maglevTableSize);
      this.pools.set(id, pool);
    }
    pool.update(svc ? svc.endpoints : [], algorithm, this.backendFor);
    pool.check = svc?.health
      ? { intervalMs: svc.health.intervalMs, timeoutMs: svc.health.timeoutMs, rise: svc.health.rise, fall: svc.health.fall }
      : this.defaultCheck;
    if (pool.leaving > 0) this.pruning.add(pool);
    this.work.poolUpdates++;
    return pool;
  }

  /** No front needs the pool any more: its members drain, and the tick drops it once they are gone. */
  private releasePool(pool: ServicePool): void {
    pool.update([], pool.algorithm, this.backendFor);
    this.pruning.add(pool);
  }

  private rebuildPool(pool: ServicePool, now: number): void {
    if (pool.rebuild(now, this.onDrain)) this.work.selectorBuilds++;
  }

  private readonly backendFor = (address: string, port: number): Backend => {
    const key = endpointKey(address, port);
    let b = this.backends.get(key);
    if (!b) {
      b = new Backend(address, port);
      this.backends.set(key, b);
    }
    return b;
  };

  /** Swap in new fronts (their pools are in place) in one assignment. */
  private setFronts(table: RoutingTable, c: CompiledFronts): void {
    const fronts = new Map<string, Front>();
    for (const [lk, spec] of c.specs) {
      let stats = this.stats.get(spec.key);
      if (!stats) {
        stats = new FrontStats();
        this.stats.set(spec.key, stats);
      }
      const front: Front = { kind: spec.kind, key: spec.key, protocol: spec.protocol, stats };
      if (spec.serviceId) front.pool = this.pools.get(spec.serviceId);
      if (spec.proxyProtocol) front.proxyProtocol = spec.proxyProtocol;
      if (spec.sniRoutes) front.sni = this.sniRouter(spec.sniRoutes);
      fronts.set(lk, front);
    }
    this.compiled = { version: table.version, fronts, specs: c.specs, views: c.views, services: c.services };
    for (const key of [...this.listenErrors.keys()]) if (!c.views.get(key)?.spec) this.listenErrors.delete(key);
    for (const key of this.stats.keys()) if (!c.views.get(key)?.spec) this.orphanStats.add(key);
  }

  private sniRouter(routes: Array<{ host: string; service: string }>): SniRouter {
    const exact = new Map<string, ServicePool>();
    const wild: Array<[string, ServicePool]> = [];
    let fallback: ServicePool | undefined;
    for (const r of routes) {
      const pool = this.pools.get(r.service);
      if (!pool) continue;
      if (r.host === '*') fallback ??= pool;
      else if (r.host.startsWith('*.')) wild.push([r.host.slice(1), pool]);
      else exact.set(r.host, pool);
    }
    wild.sort((a, b) => b[0].length - a[0].length);
    return new SniRouter(exact, wild, fallback);
  }

  /**
   * Whether and how `b` gets active checks: the parameters of the pools that list it, the shortest interval
   * winning (a tie goes to the pool of the smallest service id, so the answer does not depend on history).
   */
  private checkFor(b: Backend): CheckParams | undefined {
    let best: CheckParams | undefined;
    let bestId = '';
    for (const pool of b.pools) {
      const p = pool.check;
      if (!p || !pool.members.get(b.key)?.present) continue;
      if (!best || p.intervalMs < best.intervalMs || (p.intervalMs === best.intervalMs && pool.id < bestId)) {
        best = p;
        bestId = pool.id;
      }
    }
    return best;
  }

  private readonly onDrain = (m: Member, eligible: boolean): void => {
    if (eligible) m.drainDeadline = 0;
    else if (m.drainDeadline === 0) m.drainDeadline = this.now + this.opts.drainTimeoutMs;
  };

  /** Rebuild the selectors of the pools that hold `b` (a health verdict or an ejection changed). */
  private rebuildFor(b: Backend): void {
    const now = this.now;
    for (const pool of b.pools) this.rebuildPool(pool, now);
  }

  private onHealth(t: HealthTransition): void {
    const b = t.backend;
    if (t.up) this.log.info({ endpoint: b.key }, 'l4: endpoint up');
    else this.log.warn({ endpoint: b.key, err: t.error }, 'l4: endpoint down (active check)');
    this.rebuildFor(b);
    this.publishHealth?.({ key: b.key, up: t.up, ...(t.error !== undefined && { reason: t.error }) });
  }

  /** A verdict of the worker that probes (checks here are per endpoint: a verdict for a service's is not ours). */
  setHealthVerdict(v: HealthVerdict): void {
    if (v.serviceId !== undefined) return;
    const b = this.health.setVerdict(v.key, v.up, v.reason);
    if (!b) return;
    this.log.debug(
      { endpoint: b.key, up: v.up, reason: v.reason },
      v.up ? 'l4: endpoint up (shared verdict)' : 'l4: endpoint down (shared verdict)',
    );
    this.rebuildFor(b);
  }

  healthVerdicts(): HealthVerdict[] {
    return this.health.down().map((d) => ({ key: d.key, up: false, ...(d.reason !== undefined && { reason: d.reason }) }));
  }

  // ---- the tick: deadlines, idleness, draining, counters, cleanup

  private startTicker(): void {
    if (this.ticker || this.state === 'stopped') return;
    this.ticker = setInterval(() => this.tick(), this.opts.timerResolutionMs);
    this.ticker.unref();
  }

  /** Run one tick now (tests). */
  tick(): void {
    const now = this.now;
    for (const s of this.sessions) s.tick(now);
    for (const l of this.listeners.values()) l.udp?.tick(now);
    // Members that left and have nothing open, pools nobody needs, backends nobody lists.
    const wanted = this.compiled.services;
    for (const pool of this.pruning) {
      for (const b of pool.prune()) if (b.pools.size === 0) this.backends.delete(b.key);
      if (pool.leaving === 0) this.pruning.delete(pool);
      if (!wanted.has(pool.id) && pool.members.size === 0 && this.pools.get(pool.id) === pool) this.pools.delete(pool.id);
    }
    for (const key of this.orphanStats) {
      const st = this.stats.get(key);
      if (!st || this.compiled.views.get(key)?.spec) this.orphanStats.delete(key);
      else if (st.active === 0 && st.flows === 0) {
        this.stats.delete(key);
        this.orphanStats.delete(key);
      }
    }
  }

  private readonly onSessionClosed = (s: L4Session): void => {
    this.sessions.delete(s);
    s.front.stats.active--;
    if (this.sessions.size === 0 && this.drainWaiter) this.drainWaiter();
  };

  // ---- listeners

  private async reconcileListeners(): Promise<void> {
    if (this.state === 'stopped') return;
    const specs = this.compiled.specs;
    for (const [key, l] of [...this.listeners]) {
      const want = specs.get(key);
      if (!want || want.kind !== l.spec.kind || want.key !== l.spec.key) {
        this.listeners.delete(key);
        void this.closeListener(l, true);
      } else {
        l.spec = want;
      }
    }
    for (const [key, spec] of specs) {
      if (this.listeners.has(key)) continue;
      try {
        await this.openListener(spec);
        this.listenErrors.delete(spec.key);
      } catch (err) {
        const msg = `${spec.key} (${spec.protocol} ${formatListen(spec)}): ${(err as Error).message}`;
        this.listenErrors.set(spec.key, msg);
        this.log.error(
          { vip: spec.key, listen: formatListen(spec), protocol: spec.protocol, err: (err as Error).message },
          'l4: cannot listen',
        );
      }
      if (this.stopped) return;
    }
  }

  private async openListener(spec: FrontSpec): Promise<void> {
    let host = spec.host;
    let fellBack = false;
    let bound: Opened;
    try {
      bound = await this.bind(spec, host);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRNOTAVAIL' || !spec.fallbackHost) throw err;
      this.log.warn(
        { vip: spec.key, address: host, fallback: spec.fallbackHost },
        'l4: VIP address not bindable here; binding vips.listen instead',
      );
      host = spec.fallbackHost;
      fellBack = true;
      bound = await this.bind(spec, host);
    }
    const a = bound.address;
    const l: Listener = {
      key: spec.listenerKey,
      spec,
      address: formatListen({ host: a.address, port: a.port }),
      host: a.address,
      port: a.port,
      fellBack,
      socket: bound.socket,
      closing: false,
    };
    if (bound.server) {
      l.server = bound.server;
      bound.server.on('connection', (socket: net.Socket) => this.onConnection(l, socket));
    } else if (bound.uvServer) {
      l.uvServer = bound.uvServer;
      bound.uvServer.onconnection = (err, client) => this.onUvConnection(l, err, client);
    } else if (bound.udp) {
      l.udp = new UdpListener(this, bound.udp, () => this.compiled.fronts.get(l.key), { address: a.address, port: a.port });
    }
    if (this.stopped) {
      void this.closeListener(l, false);
      return;
    }
    this.listeners.set(spec.listenerKey, l);
    this.log.info(
      {
        vip: spec.key,
        protocol: spec.kind === 'sni' ? 'tls-passthrough' : spec.protocol,
        listen: l.address,
        binding: fellBack ? 'listen-address' : spec.binding,
      },
      'l4: listening',
    );
  }

  /**
   * The socket for `spec` on `host`, from the plane's source, given to what serves it: a libuv handle
   * (the caller sets onconnection, nothing awaited in between), a net.Server, or a dgram socket. A failure
   * reads as it did when the plane bound the socket itself with that API.
   */
  private async bind(spec: FrontSpec, host: string): Promise<Opened> {
    const name = `l4 ${spec.key}`;
    if (spec.protocol === 'udp') {
      let got: Bound<UvUdp>;
      try {
        got = await this.sockets.udp(net.isIPv6(host) ? 'udp6' : 'udp4', host, spec.port, name);
      } catch (err) {
        (err as Error).message = dgramMessage(err as NodeJS.ErrnoException);
        throw err;
      }
      const sock = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4' });
      try {
        await bindDgram(sock, got.handle);
      } catch (err) {
        sock.close();
        this.sockets.release(got.spec);
        throw err;
      }
      sock.on('error', (err) => this.log.error({ err: err.message, vip: spec.key }, 'l4: udp listener error'));
      const size = this.opts.udpSocketBufferBytes;
      if (size > 0) {
        try {
          sock.setRecvBufferSize(size);
          sock.setSendBufferSize(size);
        } catch {
          // capped by the kernel: keep its default
        }
      }
      return { udp: sock, address: sock.address(), socket: got.spec };
    }
    let got: Bound<uv.UvTcp>;
    try {
      got = await this.sockets.tcp(host, spec.port, this.opts.backlog, name);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      e.message = this.uvEngine ? `${e.syscall} ${e.code}: ${formatListen({ host, port: spec.port })}` : netMessage(e);
      throw e;
    }
    if (this.uvEngine) return { uvServer: got.handle, address: { address: got.address, port: got.port }, socket: got.spec };
    // highWaterMark for accepted sockets: a net.Server option since Node 18.17/20.1 (absent from @types/node 20).
    const server = net.createServer({
      pauseOnConnect: true,
      allowHalfOpen: true,
      noDelay: true,
      highWaterMark: this.opts.highWaterMark,
    } as net.ServerOpts);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(got.handle, this.opts.backlog, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.sockets.release(got.spec);
      throw err;
    }
    server.on('error', (err) => this.log.error({ err: err.message, vip: spec.key }, 'l4: listener error'));
    return { server, address: server.address() as net.AddressInfo, socket: got.spec };
  }

  private onConnection(l: Listener, socket: net.Socket): void {
    const front = this.compiled.fronts.get(l.key);
    if (!front || l.closing || this.state === 'stopped') {
      socket.destroy();
      return;
    }
    if (front.stats.active >= this.opts.maxConnectionsPerVip) {
      socket.on('error', () => {});
      this.rejected(front, 'max-connections', {
        client: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
        message: `${front.stats.active} open`,
      });
      socket.resetAndDestroy();
      return;
    }
    front.stats.connections++;
    front.stats.active++;
    const s = new TcpSession(this, front, new SocketStream(socket, NO_OWNER, true, this.streamOptions), this.onSessionClosed);
    this.sessions.add(s);
    s.start();
  }

  private onUvConnection(l: Listener, err: number, client: uv.UvTcp | undefined): void {
    if (err || !client) {
      // EMFILE and friends: the kernel keeps the connection queued; say so once per burst.
      if (err) this.log.warn({ vip: l.spec.key, err: uv.errName(err) }, 'l4: accept failed');
      return;
    }
    const front = this.compiled.fronts.get(l.key);
    if (!front || l.closing || this.stopped) {
      client.close();
      return;
    }
    if (front.stats.active >= this.opts.maxConnectionsPerVip) {
      this.rejected(front, 'max-connections', { client: uv.peer(client), message: `${front.stats.active} open` });
      if (client.reset(() => {}) !== 0) client.close();
      return;
    }
    front.stats.connections++;
    front.stats.active++;
    const s = new TcpSession(this, front, new UvStream(client, NO_OWNER, true, this.streamOptions), this.onSessionClosed);
    this.sessions.add(s);
    s.start();
  }

  /** Stop accepting (TCP: open connections continue; UDP: flows end with the socket). */
  private closeListener(l: Listener, log: boolean): Promise<void> {
    l.closing = true;
    if (log) this.log.info({ vip: l.spec.key, listen: l.address }, 'l4: listener closed');
    if (l.udp) {
      l.udp.shutdown();
      this.sockets.release(l.socket);
      return Promise.resolve();
    }
    if (l.uvServer) {
      l.uvServer.onconnection = null;
      l.uvServer.close();
      this.sockets.release(l.socket);
      return Promise.resolve();
    }
    const server = l.server;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      // close() resolves only when every connection ended; we only wait for the socket to stop listening.
      server.close();
      this.sockets.release(l.socket);
      setImmediate(resolve);
    });
  }

  // ---- api

  /** The VIPs and passthrough entrypoints of the current table, with their listeners, endpoints and counters. */
  describe(): L4Description {
    const now = this.now;
    for (const s of this.sessions) s.flush();
    return describeL4({
      now,
      version: this.compiled.version,
      listenAddress: this.listenAddress,
      defaultBalance: this.opts.balance,
      views: this.compiled.views,
      listeners: this.listeners.values(),
      listenErrors: this.listenErrors,
      pools: this.pools,
      stats: this.stats,
    });
  }

  /**
   * The compiled state as plain data: each listener's front, each pool's selection and members, the
   * endpoints under active check, and how much compiling was done so far. Diagnostics and tests (a plane
   * patched table by table must inspect the same as one started on the last table, but for `work`).
   */
  inspect(): L4Inspection {
    const by =
      <T>(k: (x: T) => string) =>
      (a: T, b: T): number =>
        k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0;
    const fronts: L4Inspection['fronts'] = [];
    for (const [listener, f] of this.compiled.fronts) {
      fronts.push({
        listener,
        kind: f.kind,
        key: f.key,
        protocol: f.protocol,
        ...(f.pool ? { service: f.pool.id } : {}),
        ...(f.proxyProtocol ? { proxyProtocol: f.proxyProtocol } : {}),
        ...(f.sni ? { sni: f.sni.describe() } : {}),
      });
    }
    const pools: L4Inspection['pools'] = [...this.pools.values()].map((p) => ({
      service: p.id,
      algorithm: p.algorithm,
      selection: p.selection,
      selectorMembers: p.selector.members.length,
      members: [...p.members.values()].map((m) => (m.present ? m.backend.key : `${m.backend.key}-`)).sort(),
      ...(p.check ? { check: { ...p.check } } : {}),
    }));
    const checks: L4Inspection['checks'] = [];
    for (const b of this.health.checked()) checks.push({ endpoint: b.key, ...(this.health.paramsOf(b) as CheckParams) });
    return {
      version: this.compiled.version,
      fronts: fronts.sort(by((f) => f.listener)),
      pools: pools.sort(by((p) => p.service)),
      checks: checks.sort(by((c) => c.endpoint)),
      backends: [...this.backends.keys()].sort(),
      work: { ...this.work },
    };
  }
}

/** The L4 plane, named `l4`.
/** The L4 plane, named `l4`. `listenAddress` is the config's `vips.listen`. */
export function createL4Plane(opts: L4PlaneOptions): L4Plane {
  return new L4Plane(opts);
}
