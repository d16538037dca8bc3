/**
 * The DNS data plane: UDP and TCP listeners on `dns.listen` (the TCP connections, their per-source and
 * global caps and idle timeouts are tcp.ts's), the zone compiled from the routing table,
 * the forwarder for everything else, the counters its metrics read (declared in metrics.ts), and the
 * lookups behind the Mesos-DNS-compatible api (the rows are shaped in describe.ts).
 *
 * Query path (UDP and TCP share it, see `respondTo`): strict parse (query.ts) → our zone (a Map lookup
 * by lower-case wire name — resolved from the zone's indexes on a name's first query — then an answer
 * compiled once per table) → or a negative answer with the zone's SOA →
 * or, outside our zones, the forwarder's cache → or the forwarder. Anything thrown on the way becomes
 * SERVFAIL; nothing on the path can stop the process or leave a socket without an answer.
 *
 * Tables: apply() compiles a new Zone and swaps it in one assignment; a table that fails to compile
 * leaves the current zone serving. The new zone's indexes (a second of CPU at 100,000 endpoints) are built
 * in slices between other events, the previous zone serving meanwhile — until anything needs the new one (a
 * query, the next table, the api): then they are finished at once, so every answer given after apply() is
 * the new table's. A plane starting on its first table thus serves (and a worker reports it applied)
 * without waiting for them. Given the change from the table it serves, apply() patches the
 * zone for the changed services (and VIPs, when they changed) instead (zone.ts `patchZone`), unless the
 * set of held providers (below) changes with it. A provider that disappears from the table (it failed
 * over, or restarted and has not sent its snapshot yet) keeps its last records for `holdMs` (Mesos-DNS's
 * stateTimeoutSeconds, 5 min; on the plane's clock, `now`): the zone never empties because a source
 * blinked. Before the first real table (version 0), a name in our zones that we do not have is
 * SERVFAIL, not NXDOMAIN, so resolvers retry instead of caching a negative answer.
 *
 * The listening sockets come from the plane's SocketSource (src/net/listen.ts): bound here, or, in one of
 * several workers, the supervisor's sockets shared by all of them.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import { parseListen, formatListen, type ListenAddress } from '../model/parse.js';
import type { DataPlane, PlaneStatus } from '../model/plane.js';
import type { ServiceMap } from '../model/service-map.js';
import type { RoutingTable, Service, TableChange, VipEntry } from '../model/types.js';
import type { Logger } from '../telemetry/log.js';
import { silentLogger } from '../telemetry/log.js';
import { prom, type Registry } from '../telemetry/metrics.js';
import * as cache from './cache.js';
import {
  enumerateRecords,
  hostRecords,
  mesosDnsConfig,
  serviceRecords,
  type EnumerateResult,
  type HostRecord,
  type ServiceRecord,
} from './describe.js';
import { Forwarder, parseUpstream, type Upstream } from './forwarder.js';
import { DCOS_ZONE, MESOS_ZONE, type NameInput } from './names.js';
import { QUERY_CELLS, queryCell as metricsQueryCell, registerDnsMetrics, type DnsMetrics } from './metrics.js';
import { Query, Verdict as VERDICT } from './query.js';
import * as respond from './respond.js';
import * as wire from './wire.js';
import { vipDelta } from './patch.js';
import { compileZone, patchZone, slotOf as zoneSlotOf, Zone, type ZoneApex, type ZoneOptions } from './zone.js';
import { DNS_DEFAULTS, type DnsOptions, type DnsPlaneConfig } from './settings.js';
import { TcpClients, type TcpCloseReason } from './tcp.js';
import { DIRECT, bindDgram, dgramMessage, netMessage, type Bound, type SocketSource, type SocketSpec, type UvUdp } from '../net/listen.js';
import type { UvTcp } from '../net/uv.js';

// Hot path: imported bindings copied into module constants once. Under tsx (esbuild's CommonJS
// output) every read of an imported binding is a getter call; a profile put a quarter of the query
// path's CPU there. (tsc's output has plain properties; this costs nothing there.)
const { fromCached } = cache;
const { errorAnswer, fromTemplate, negative } = respond;
const { HEADER_SIZE, keyToName, MAX_MESSAGE, MIN_UDP_PAYLOAD } = wire;
const RCODE = { ...wire.RCODE };
const Verdict = { ...VERDICT };
const slotOf = zoneSlotOf;
const queryCell = metricsQueryCell;

export interface DnsPlaneOptions {
  /** The `dns:` section as the config decodes it; engine options it leaves out take DNS_DEFAULTS. */
  config: DnsPlaneConfig;
  logger?: Logger;
  registry?: Registry;
  /** Overrides of engine options (tests: a clock, short timeouts). */
  options?: Partial<DnsOptions>;
  /**
   * Where the listening sockets come from (src/net/listen.ts): DIRECT (default) binds here; a worker of
   * several is given BrokeredSockets, so that every worker serves the same sockets.
   */
  sockets?: SocketSource;
}

export interface DnsAddress {
  udp: { host: string; port: number };
  tcp: { host: string; port: number };
}

interface Held {
  services: Service[];
  vips: VipEntry[];
  until: number;
}

type Reply = Buffer | null | typeof FORWARD;
/** What an error answer needs of a query (a Query, or the copy a forwarded query keeps). */
type QueryShape = Pick<Query, 'questionEnd' | 'edns' | 'qtype'>;
const FORWARD = Symbol('forward');

/** How long one slice of building a zone's indexes runs before other events get their turn, ms. */
const BUILD_SLICE_MS = 10;

/** A zone being built (DnsPlane.build). */
interface Building {
  zone: Zone;
  /** What serving it changes besides the zone (the table it was made from). */
  commit: () => void;
  /** Time spent building, for portico_dns_zone_compile_seconds. */
  spentNs: bigint;
  /** A slice threw: the zone is not served. */
  error: Error | undefined;
}

export class DnsPlane implements DataPlane {
  readonly name = 'dns';
  readonly opts: DnsOptions;
  private readonly config: DnsPlaneConfig;
  private readonly listen: ListenAddress;
  private readonly self: string;
  private readonly mesosZones: string[];
  private readonly log: Logger;
  /** The zone serving; read through `zone`, which first finishes one still being built. */
  private served: Zone;
  /** A whole table's zone whose indexes are being built in steps (see `build`). */
  private building: Building | undefined;
  private readonly forwarder: Forwarder;
  private readonly acl: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>;
  private readonly aclCache = new Map<string, boolean>();
  private readonly ra: boolean;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly sockets: SocketSource;
  /** The sockets as the source gave them, released at stop. */
  private boundSockets: SocketSpec[] = [];
  /** The TCP listener's connections: per-source caps, eviction at the global cap, idle timeouts (tcp.ts). */
  private readonly tcpClients: TcpClients;
  private bound: DnsAddress | undefined;
  private state: PlaneStatus['state'] = 'starting';
  private lastError: string | undefined;
  private lastTable: RoutingTable | undefined;
  /** The services and VIPs of the table the zone was made from (held ones apart). */
  private base: { services: ServiceMap; vips: readonly VipEntry[] } | undefined;
  /** How many services each provider has in `base`: who leaves the table with a change. */
  private providerServices = new Map<string, number>();
  private readonly held = new Map<string, Held>();
  private holdTimer: NodeJS.Timeout | undefined;
  private serial = 0;
  private rnd = (Date.now() ^ (process.pid << 8)) | 1;
  /** UDP handler's reusable parse state (the handler is synchronous up to the forwarder). */
  private readonly q = new Query();
  private internalErrors = 0;
  private lastErrorLog = 0;
  // Metrics: counted in typed arrays on the hot path, read by prom-client at scrape time.
  private readonly counts = new Float64Array(QUERY_CELLS);
  private readonly drops = { short: 0, response: 0, tcp: 0 };
  private truncated = 0;
  private udpReceived = 0;
  private tcpReceived = 0;
  private readonly m: DnsMetrics;

  constructor(o: DnsPlaneOptions) {
    this.config = o.config;
    this.opts = { ...DNS_DEFAULTS, ...o.config, ...o.options };
    this.log = (o.logger ?? silentLogger).child({ component: 'dns' });
    this.sockets = o.sockets ?? DIRECT;
    const l = parseListen(o.config.listen);
    if (!l.ok) throw new TypeError(`dns: listen: ${l.error}`);
    this.listen = l.value;
    this.self = l.value.host === '0.0.0.0' ? '127.0.0.1' : l.value.host === '::' ? '::1' : l.value.host;
    const extra = (o.config.domains ?? [])
      .map((d) => d.toLowerCase().replace(/\.$/, ''))
      .filter((d) => d !== DCOS_ZONE && !d.endsWith(`.${DCOS_ZONE}`) && d !== MESOS_ZONE && d !== '');
    this.mesosZones = [MESOS_ZONE, ...new Set(extra)];
    this.acl = o.config.allowRecursionFrom.map((c) => ipaddr.parseCIDR(c));
    const zones = Object.entries(this.opts.zoneUpstreams).map(([zone, ups]) => ({
      zone: zone.toLowerCase().replace(/\.$/, ''),
      upstreams: ups.map(parseUpstream),
    }));
    const upstreams: Upstream[] = o.config.upstreams.map(parseUpstream);
    this.ra = upstreams.length > 0 || zones.length > 0;

    const r = o.registry ?? new prom.Registry();
    this.forwarder = new Forwarder({
      upstreams,
      zones,
      timeoutMs: this.opts.upstreamTimeoutMs,
      downMs: this.opts.upstreamDownMs,
      maxInflight: this.opts.maxInflight,
      maxWaiters: this.opts.maxWaiters,
      cache: this.opts.cache,
      now: this.opts.now,
      onAttempt: (up, seconds, result) => this.m.upstream.observe({ upstream: up, result }, seconds),
      onMismatch: (up) => this.m.mismatched.inc({ upstream: up }),
    });
    this.tcpClients = new TcpClients(this, this.opts, this.log);
    this.m = registerDnsMetrics(r, {
      queries: this.counts,
      drops: this.drops,
      truncated: () => this.truncated,
      internalErrors: () => this.internalErrors,
      cache: this.forwarder.cache,
      // The zone serving (one still being built is not finished for a scrape).
      zone: () => this.served,
      tcpConnections: () => this.tcpClients.size,
      tcpAccepted: () => this.tcpClients.accepted,
      tcpClosed: this.tcpClients.closed,
      tcpIdleTimeoutMs: () => this.tcpClients.idleTimeoutMs(),
    });
    this.served = this.compile([], [], 0);
  }

  /** The zone to answer from: one still being built is finished first (so every answer is the newest table's). */
  private get zone(): Zone {
    if (this.building !== undefined) this.finishBuild();
    return this.served;
  }

  // ---- DataPlane

  async start(table: RoutingTable): Promise<void> {
    this.apply(table);
    try {
      await this.bind();
    } catch (err) {
      this.state = 'error';
      this.lastError = (err as Error).message;
      throw err;
    }
    this.state = 'serving';
    this.log.info(
      {
        udp: formatListen(this.bound!.udp),
        tcp: formatListen(this.bound!.tcp),
        zones: [...this.mesosZones, DCOS_ZONE],
        upstreams: this.config.upstreams,
      },
      'dns listening',
    );
  }

  apply(table: RoutingTable, change?: TableChange): void {
    // A change starts from the table before it: that one's zone is finished first (at most one is built).
    this.finishBuild();
    try {
      this.lastTable = table;
      let patched = false;
      if (change !== undefined) {
        try {
          patched = this.patch(table, change);
        } catch (err) {
          this.log.error({ err, version: table.version }, 'dns: patching the zone failed; compiling the whole table');
        }
      }
      if (!patched) this.compileAll(table);
      if (this.lastError?.startsWith('table ')) this.lastError = undefined;
      if (this.state === 'error' && this.bound) this.state = 'serving';
    } catch (err) {
      this.lastError = `table ${table.version}: ${(err as Error).message}`;
      this.log.error({ err, version: table.version }, 'dns: table not applied; the previous zone keeps serving');
    }
  }

  /** The whole table (plus the services of providers held) compiled into a new zone. */
  private compileAll(table: RoutingTable): void {
    const now = this.opts.now();
    // Providers that left: hold their last records (see the file comment).
    const present = new Set(Object.keys(table.sources));
    const counts = new Map<string, number>();
    for (const s of table.services.values()) {
      present.add(s.provider);
      counts.set(s.provider, (counts.get(s.provider) ?? 0) + 1);
    }
    const prev = this.base;
    if (this.opts.holdMs > 0 && prev !== undefined) {
      const leaving = new Map<string, Held>();
      for (const s of prev.services.values()) {
        if (present.has(s.provider) || this.held.has(s.provider)) continue;
        let h = leaving.get(s.provider);
        if (!h) leaving.set(s.provider, (h = { services: [], vips: [], until: now + this.opts.holdMs }));
        h.services.push(s);
      }
      for (const v of prev.vips) {
        const provider = v.service.slice(v.service.lastIndexOf('@') + 1);
        leaving.get(provider)?.vips.push(v);
      }
      for (const [p, h] of leaving) {
        this.held.set(p, h);
        this.log.warn(
          { provider: p, services: h.services.length, holdMs: this.opts.holdMs },
          'dns: provider left the table; keeping its records',
        );
      }
    }
    for (const p of [...this.held.keys()]) {
      const h = this.held.get(p)!;
      if (present.has(p) || h.until <= now) this.held.delete(p);
    }
    const { services, vips } = this.effective(table.services, table.vips);
    const base = { services: table.services, vips: table.vips };
    this.build(compileZone(this.nameInput(services, vips), this.zoneOptions(table.version), true), () => {
      this.base = base;
      this.providerServices = counts;
    });
    this.scheduleHoldExpiry();
  }

  /**
   * Serve `zone` (a lazy one: compileZone) once its indexes are built, and then `commit`. They are built in
   * slices of a few ms between other events, so a plane starting on a table of 100,000 endpoints (a second of
   * CPU) serves — and its worker reports the table applied — without waiting for them; anything that needs
   * the zone before (a query, the next table, the api) finishes them at once. A build that throws (a bug)
   * leaves the previous zone serving, as a compile that throws always did.
   */
  private build(zone: Zone, commit: () => void): void {
    const b: Building = { zone, commit, spentNs: 0n, error: undefined };
    this.building = b;
    const step = (): void => {
      if (this.building !== b) return;
      const began = process.hrtime.bigint();
      let done = true;
      try {
        done = zone.step(BUILD_SLICE_MS);
      } catch (err) {
        b.error = err as Error;
      }
      b.spentNs += process.hrtime.bigint() - began;
      if (done) this.finishBuild();
      else setImmediate(step);
    };
    setImmediate(step);
  }

  /** Finish the zone being built, now, and serve it. */
  private finishBuild(): void {
    const b = this.building;
    if (b === undefined) return;
    this.building = undefined;
    const began = process.hrtime.bigint();
    try {
      if (b.error) throw b.error;
      b.zone.finish();
    } catch (err) {
      this.lastError = `table ${b.zone.version}: ${(err as Error).message}`;
      this.log.error({ err, version: b.zone.version }, 'dns: table not applied; the previous zone keeps serving');
      return;
    }
    this.served = b.zone;
    b.commit();
    this.m.compile.observe(Number(b.spentNs + process.hrtime.bigint() - began) / 1e9);
    const skipped = b.zone.skipped;
    if (skipped.length > 0) this.log.warn({ names: skipped.slice(0, 10), count: skipped.length }, 'dns: names too long to publish');
  }

  /**
   * Patch the serving zone to `table` with `change`. False (nothing done) when the change does not start
   * from the table the zone was made from, or when the held providers would change with it (a provider
   * leaves, comes back, or its hold is over): the whole table is compiled then.
   */
  private patch(table: RoutingTable, change: TableChange): boolean {
    const base = this.base;
    if (base === undefined || change.from !== this.zone.version) return false;
    const now = this.opts.now();
    const counts = new Map(this.providerServices);
    const add = (provider: string, by: number): void => {
      const n = (counts.get(provider) ?? 0) + by;
      if (n > 0) counts.set(provider, n);
      else counts.delete(provider);
    };
    const services: Array<[string, Service | undefined]> = [];
    for (const id of change.removed) {
      const old = base.services.get(id);
      if (old !== undefined) add(old.provider, -1);
      services.push([id, undefined]);
    }
    for (const id of change.upserted) {
      const old = base.services.get(id);
      if (old !== undefined) add(old.provider, -1);
      const s = table.services.get(id);
      if (s !== undefined) add(s.provider, 1);
      services.push([id, s]);
    }
    const present = (p: string): boolean => counts.has(p) || Object.hasOwn(table.sources, p);
    for (const [p, h] of this.held) if (present(p) || h.until <= now) return false;
    if (this.opts.holdMs > 0) for (const p of this.providerServices.keys()) if (!present(p)) return false;

    // The VIP entries that left and arrived (the held providers' stay).
    const vips = change.vips || table.vips !== base.vips ? vipDelta(base.vips, table.vips) : {};
    const started = process.hrtime.bigint();
    const { zone, skipped } = patchZone(this.zone, { services, ...vips }, this.zoneOptions(table.version));
    this.m.compile.observe(Number(process.hrtime.bigint() - started) / 1e9);
    if (skipped.length > 0) this.log.warn({ names: skipped.slice(0, 10), count: skipped.length }, 'dns: names too long to publish');
    this.served = zone;
    this.base = { services: table.services, vips: table.vips };
    this.providerServices = counts;
    return true;
  }

  /** What the zone publishes: `services` and `vips`, and those of the providers held (ids not in `services`). */
  private effective(services: ServiceMap, vips: readonly VipEntry[]): { services: Service[]; vips: VipEntry[] } {
    const outServices: Service[] = [...services.values()];
    const outVips: VipEntry[] = [...vips];
    for (const h of this.held.values()) {
      for (const s of h.services) if (!services.has(s.id)) outServices.push(s);
      outVips.push(...h.vips);
    }
    return { services: outServices, vips: outVips };
  }

  async stop(drainMs: number): Promise<void> {
    this.state = 'stopped';
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    // Stop accepting (no new datagrams, connections or queries), let forwarded queries answer.
    const udp = this.udp;
    udp?.off('message', this.onUdp);
    const tcp = this.tcp;
    this.tcp = undefined;
    const closed = tcp ? new Promise<void>((resolve) => tcp.close(() => resolve())) : Promise.resolve();
    this.tcpClients.drain();
    const deadline = Date.now() + Math.max(0, drainMs);
    while ((this.tcpClients.size > 0 || this.forwarder.inflightCount > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    this.tcpClients.destroy();
    this.forwarder.close();
    this.udp = undefined;
    if (udp) await new Promise<void>((resolve) => udp.close(() => resolve()));
    await closed;
    for (const spec of this.boundSockets.splice(0)) this.sockets.release(spec);
  }

  status(): PlaneStatus {
    const s: PlaneStatus = {
      name: this.name,
      state: this.state,
      listeners: this.bound ? [`udp ${formatListen(this.bound.udp)}`, `tcp ${formatListen(this.bound.tcp)}`] : [],
      // The table applied, built or not (a status must not make the plane finish building it).
      tableVersion: (this.building?.zone ?? this.served).version,
    };
    if (this.lastError) s.error = this.lastError;
    return s;
  }

  /** Where the listeners are bound (after start; port 0 resolved). */
  address(): DnsAddress {
    if (!this.bound) throw new Error('dns: not started');
    return this.bound;
  }

  /** The zone being served (read-only). */
  currentZone(): Zone {
    return this.zone;
  }

  // ---- lookup api (Mesos-DNS compatible rows)

  /** A/AAAA of `name`: `[{host: "name.", ip}]`, empty when there are none. */
  hosts(name: string): HostRecord[] {
    return hostRecords(this.zone, name);
  }

  /** SRV of `name`, each with its target's first address; `service` echoes the name as asked. */
  services(name: string): ServiceRecord[] {
    return serviceRecords(this.zone, name);
  }

  /** Every framework, task and record, as Mesos-DNS's /v1/enumerate. */
  enumerate(): EnumerateResult {
    this.finishBuild();
    const { services, vips } = this.base ? this.effective(this.base.services, this.base.vips) : { services: [], vips: [] };
    return enumerateRecords(this.nameInput(services, vips));
  }

  /** The configuration, in Mesos-DNS's /v1/config shape (plus our own fields). */
  mesosConfig(): Record<string, unknown> {
    return mesosDnsConfig({
      config: this.config,
      port: this.bound?.udp.port ?? this.listen.port,
      listenHost: this.listen.host,
      mesosZones: this.mesosZones,
      upstreamTimeoutMs: this.opts.upstreamTimeoutMs,
      holdMs: this.opts.holdMs,
      maxUdpPayload: this.opts.maxUdpPayload,
      serial: this.zone.serial,
      recursion: this.ra,
    });
  }

  // ---- compile

  private nameInput(services: Iterable<Service>, vips: Iterable<VipEntry>): NameInput {
    return { services, vips, mesosZones: this.mesosZones, self: this.self };
  }

  /** Options of the zone for table `version`, with the next SOA serial. */
  private zoneOptions(version: number): ZoneOptions {
    this.serial = Math.max(this.serial + 1, Math.floor(Date.now() / 1000));
    return { ttl: Math.round(this.config.ttlMs / 1000), serial: this.serial, version, ready: version > 0, recursionAvailable: this.ra };
  }

  private compile(services: Service[], vips: VipEntry[], version: number): Zone {
    const started = process.hrtime.bigint();
    const zone = compileZone(this.nameInput(services, vips), this.zoneOptions(version));
    this.m.compile.observe(Number(process.hrtime.bigint() - started) / 1e9);
    if (zone.skipped.length > 0)
      this.log.warn({ names: zone.skipped.slice(0, 10), count: zone.skipped.length }, 'dns: names too long to publish');
    return zone;
  }

  private scheduleHoldExpiry(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    if (this.held.size === 0 || this.state === 'stopped') return;
    const next = Math.min(...[...this.held.values()].map((h) => h.until));
    this.holdTimer = setTimeout(
      () => {
        this.holdTimer = undefined;
        if (this.lastTable) this.apply(this.lastTable);
      },
      Math.max(0, next - this.opts.now()) + 5,
    );
    this.holdTimer.unref();
  }

  // ---- listeners

  /**
   * TCP first, then UDP on the same port. With port 0 the kernel picks the TCP port; UDP on the same
   * number is rarely taken (TCP ports are: every outgoing connection holds one), so that order needs
   * fewer retries on a busy machine. A fixed port that is taken is an error at once.
   */
  private async bind(): Promise<void> {
    const { host, port, family } = this.listen;
    let lastErr: unknown;
    for (let attempt = 0; attempt < (port === 0 ? 32 : 1); attempt++) {
      const tcp = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => this.accept(sock));
      let tcpSocket: Bound<UvTcp> | undefined;
      try {
        tcpSocket = await this.sockets.tcp(host, port, 511, 'dns');
        const handle = tcpSocket.handle;
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen(handle, 511, () => {
            tcp.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        if (tcpSocket) this.sockets.release(tcpSocket.spec);
        const message = tcpSocket ? (err as Error).message : netMessage(err as NodeJS.ErrnoException);
        throw new Error(`dns: cannot listen on tcp ${formatListen({ host, port })}: ${message}`);
      }
      const tcpPort = tcpSocket.port;
      const udp = dgram.createSocket({
        type: family === 6 ? 'udp6' : 'udp4',
        recvBufferSize: this.opts.udpBufferBytes,
        sendBufferSize: this.opts.udpBufferBytes,
        lookup: literalLookup,
      });
      let udpSocket: Bound<UvUdp> | undefined;
      try {
        udpSocket = await this.sockets.udp(family === 6 ? 'udp6' : 'udp4', host, tcpPort, 'dns');
        await bindDgram(udp, udpSocket.handle);
      } catch (err) {
        lastErr = udpSocket ? err : new Error(dgramMessage(err as NodeJS.ErrnoException));
        udp.close();
        if (udpSocket) this.sockets.release(udpSocket.spec);
        await new Promise<void>((resolve) => tcp.close(() => resolve()));
        this.sockets.release(tcpSocket.spec);
        continue; // port 0: the TCP port we got is taken for UDP; try another
      }
      udp.on('error', (err) => {
        this.lastError = `udp: ${err.message}`;
        this.log.error({ err }, 'dns: udp socket error');
      });
      udp.on('message', this.onUdp);
      tcp.on('error', (err) => {
        this.lastError = `tcp: ${err.message}`;
        this.log.error({ err }, 'dns: tcp listener error');
      });
      this.udp = udp;
      this.tcp = tcp;
      this.boundSockets = [tcpSocket.spec, udpSocket.spec];
      this.bound = { udp: { host, port: tcpPort }, tcp: { host, port: tcpPort } };
      return;
    }
    throw new Error(`dns: cannot listen on udp ${formatListen({ host, port })}: ${(lastErr as Error | undefined)?.message ?? 'unknown'}`);
  }

  private readonly onUdp = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    this.udpReceived++;
    // A source port of 0 cannot be answered (and dgram.send would throw on it).
    if (rinfo.port === 0) return;
    const q = this.q;
    const out = this.respondTo(msg, q, rinfo.address, false, 0);
    if (out === null) return;
    if (out === FORWARD) {
      this.forward(msg, q, false, 0, (buf) => {
        if (buf) this.sendUdp(buf, rinfo.port, rinfo.address);
      });
      return;
    }
    this.sendUdp(out, rinfo.port, rinfo.address);
  };

  private sendUdp(buf: Buffer, port: number, address: string): void {
    try {
      this.udp?.send(buf, port, address);
    } catch (err) {
      this.internalErrors++;
      this.log.debug({ err }, 'dns: udp send failed');
    }
  }

  private accept(sock: net.Socket): void {
    if (this.state === 'stopped') {
      sock.destroy();
      return;
    }
    this.tcpClients.accept(sock);
  }

  // ---- the query path

  /**
   * The answer to one message: a Buffer (with `prefix` bytes reserved at the front), null (drop), or
   * FORWARD (not ours, allowed to recurse, not cached: call `forward`). Never throws.
   */
  respondTo(msg: Buffer, q: Query, client: string, tcp: boolean, prefix: number): Reply {
    try {
      const v = q.parse(msg);
      if (v !== Verdict.OK) {
        if (v === Verdict.DROP) {
          if (msg.length < HEADER_SIZE) this.drops.short++;
          else this.drops.response++;
          return null;
        }
        const rcode =
          v === Verdict.FORMERR
            ? RCODE.FORMERR
            : v === Verdict.NOTIMP
              ? RCODE.NOTIMP
              : v === Verdict.BADVERS
                ? RCODE.BADVERS
                : RCODE.REFUSED;
        return this.counted(q.qtype, rcode, errorAnswer(msg, q, rcode, this.ra, prefix));
      }
      const zone = this.zone;
      let node = zone.nodes.get(q.key);
      let apex: ZoneApex | undefined;
      if (node === undefined) {
        apex = zone.findApex(q);
        node = zone.resolve(q, apex);
      }
      const limit = tcp ? MAX_MESSAGE : q.edns ? Math.min(Math.max(q.udpSize, MIN_UDP_PAYLOAD), this.opts.maxUdpPayload) : MIN_UDP_PAYLOAD;
      if (node !== undefined) {
        const slot = slotOf(q.qtype);
        const ans = slot < 0 ? null : zone.answer(node, slot, q.qtype);
        if (ans !== null) {
          let x = this.rnd;
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          this.rnd = x;
          const out = fromTemplate(ans, msg, q, limit, prefix, x >>> 1, tcp);
          if (!tcp && ((out[prefix + 2] as number) & 0x02) !== 0) this.truncated++;
          return this.counted(q.qtype, RCODE.NOERROR, out);
        }
        return this.counted(q.qtype, RCODE.NOERROR, negative(msg, q, RCODE.NOERROR, node.zone, this.ra, prefix));
      }
      if (apex !== undefined) {
        if (!zone.ready) return this.counted(q.qtype, RCODE.SERVFAIL, errorAnswer(msg, q, RCODE.SERVFAIL, this.ra, prefix));
        return this.counted(q.qtype, RCODE.NXDOMAIN, negative(msg, q, RCODE.NXDOMAIN, apex, this.ra, prefix));
      }
      // Not ours: forward, if this client may recurse.
      if (!this.forwarder.enabled || !this.mayRecurse(client)) {
        return this.counted(q.qtype, RCODE.REFUSED, errorAnswer(msg, q, RCODE.REFUSED, this.ra, prefix));
      }
      const now = this.opts.now();
      const hit = this.forwarder.cache.get(q.key, q.qtype, now);
      if (hit !== undefined) {
        const out = fromCached(hit, msg, q.nameLength, q.edns, limit, prefix, now);
        if (!tcp && ((out[prefix + 2] as number) & 0x02) !== 0) this.truncated++;
        return this.counted(q.qtype, hit.rcode, out);
      }
      return FORWARD;
    } catch (err) {
      return this.internalError(err, msg, q, prefix);
    }
  }

  /** Send the query `respondTo` said FORWARD to upstream; `send` gets the answer (or SERVFAIL). */
  forward(msg: Buffer, q: Query, tcp: boolean, prefix: number, send: (buf: Buffer | null) => void): void {
    // Copy what the answer needs: the packet (and the reusable Query) are gone when it arrives.
    const head = Buffer.from(msg.subarray(0, q.questionEnd));
    const nameLength = q.nameLength;
    const edns = q.edns;
    const qtype = q.qtype;
    const limit = tcp ? MAX_MESSAGE : edns ? Math.min(Math.max(q.udpSize, MIN_UDP_PAYLOAD), this.opts.maxUdpPayload) : MIN_UDP_PAYLOAD;
    const question = head.subarray(HEADER_SIZE);
    const saved: QueryShape = { questionEnd: q.questionEnd, edns, qtype };
    this.forwarder.resolve(q.key, qtype, keyToName(q.key), question, (answer, rcode) => {
      let out: Buffer | null;
      try {
        out = answer
          ? fromCached(answer, head, nameLength, edns, limit, prefix, this.opts.now())
          : errorAnswer(head, saved, rcode, this.ra, prefix);
        if (!tcp && ((out[prefix + 2] as number) & 0x02) !== 0) this.truncated++;
        this.counted(qtype, answer ? answer.rcode : rcode, out);
      } catch (err) {
        out = this.internalError(err, head, saved, prefix);
      }
      send(out);
    });
  }

  private counted(qtype: number, rcode: number, out: Buffer): Buffer {
    const i = queryCell(qtype, rcode);
    this.counts[i] = (this.counts[i] as number) + 1;
    return out;
  }

  private internalError(err: unknown, msg: Buffer, q: QueryShape, prefix: number): Buffer | null {
    this.internalErrors++;
    const now = Date.now();
    if (now - this.lastErrorLog > 10_000) {
      this.lastErrorLog = now;
      this.log.error({ err, total: this.internalErrors }, 'dns: internal error answering a query (SERVFAIL)');
    }
    if (msg.length < HEADER_SIZE) return null;
    try {
      return this.counted(q.qtype, RCODE.SERVFAIL, errorAnswer(msg, q, RCODE.SERVFAIL, this.ra, prefix));
    } catch {
      return null;
    }
  }

  /** allowRecursionFrom, memoised per client address (bounded). */
  private mayRecurse(client: string): boolean {
    const known = this.aclCache.get(client);
    if (known !== undefined) return known;
    let ok = false;
    try {
      let addr = ipaddr.parse(client);
      if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) addr = (addr as ipaddr.IPv6).toIPv4Address();
      ok = this.acl.some(([range, bits]) => range.kind() === addr.kind() && addr.match(range, bits));
    } catch {
      ok = false;
    }
    if (this.aclCache.size >= 4096) this.aclCache.clear();
    this.aclCache.set(client, ok);
    return ok;
  }

  /** @internal TcpClient's counters (tcp.ts). */
  countTcpDrop(): void {
    this.drops.tcp++;
  }

  /** @internal */
  countTcpMessage(): void {
    this.tcpReceived++;
  }

  /** Totals since start (what the metrics report, without a scrape). */
  counters(): {
    udpReceived: number;
    tcpReceived: number;
    answered: number;
    dropped: number;
    truncated: number;
    internalErrors: number;
    cacheHits: number;
    cacheMisses: number;
    forwardsInFlight: number;
    tcpAccepted: number;
    tcpConnections: number;
    tcpClosed: Record<TcpCloseReason, number>;
  } {
    let answered = 0;
    for (const v of this.counts) answered += v;
    return {
      udpReceived: this.udpReceived,
      tcpReceived: this.tcpReceived,
      answered,
      dropped: this.drops.short + this.drops.response + this.drops.tcp,
      truncated: this.truncated,
      internalErrors: this.internalErrors,
      cacheHits: this.forwarder.cache.hits,
      cacheMisses: this.forwarder.cache.misses,
      forwardsInFlight: this.forwarder.inflightCount,
      tcpAccepted: this.tcpClients.accepted,
      tcpConnections: this.tcpClients.size,
      tcpClosed: { ...this.tcpClients.closed },
    };
  }
}

/**
 * dgram resolves every destination through `lookup` (dns.lookup by default: a nextTick per datagram).
 * We only ever send to the IP literal a datagram came from, and bind to a parsed IP: answer at once.
 * Measured: +12% answers/s for a minimal responder on this machine.
 */
function literalLookup(
  address: string,
  options: unknown,
  cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const family = typeof options === 'number' ? options : (options as { family?: number } | undefined)?.family;
  cb(null, address, family === 6 || address.includes(':') ? 6 : 4);
}

export function createDnsPlane(opts: DnsPlaneOptions): DnsPlane {
  return new DnsPlane(opts);
}
