/**
 * From the plain value of a YAML document to a typed PorticoConfig: defaults filled in, strings parsed
 * into normalised values, and the rules a JSON Schema cannot state checked (references between
 * sections, duplicates, one-of-two fields, listeners that would collide).
 *
 * It runs even when the schema found problems, so that one load reports everything wrong with a
 * file. So it reads the input defensively: a value of the wrong type is skipped (the schema has
 * already reported it) and a stand-in keeps the types happy. The result is only used when no issue
 * at all was reported.
 */
import { resolve } from 'node:path';
import { toFrameworkName, toVipName } from '../model/names.js';
import type { Parsed } from '../model/parse.js';
import type { CertificateRef, Endpoint, HeaderMatch, HealthCheck, HealthState, RouteTimeouts, Vip } from '../model/types.js';
import { DEFAULTS } from './defaults.js';
import {
  parseBalance,
  parseDomain,
  parseDurationText,
  parseFramework,
  parseHttpPath,
  parseIp,
  parseListenText,
  parseRouteHost,
  parseSizeText,
  parseStatusRange,
  parseStore,
  parseStrictCidr,
  parseToken,
  parseUpstream,
  parseVipName,
  parseHttpUrl,
} from './formats.js';
import { formatPath } from './locate.js';
import type { PathSegment, PathTarget } from './locate.js';
import type {
  DnsConfig,
  EntrypointConfig,
  EntrypointTlsConfig,
  ConsulConfig,
  L7Config,
  MarathonConfig,
  OverlayConfig,
  PorticoConfig,
  RouteConfig,
  ServiceConfig,
} from './types.js';

/** Receives one problem: where (path into the document, and whether the key or the value is at fault) and what. */
export type Report = (path: PathSegment[], message: string, target?: PathTarget) => void;

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);
const entries = (v: unknown): Array<[string, unknown]> => Object.entries(obj(v) ?? {});
const items = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const bool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);
const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) ? v : undefined);
const has = (o: Obj, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);
const HEALTH_STATES: readonly string[] = ['healthy', 'unknown', 'unhealthy', 'draining'];

class Builder {
  constructor(
    private readonly report: Report,
    private readonly baseDir: string,
    private readonly extraEntrypoints: readonly string[] = [],
  ) {}

  /** Parse a string field; a non-string is left to the schema, a bad string is reported here. */
  parse<T>(value: unknown, path: PathSegment[], parser: (s: string) => Parsed<T>): T | undefined {
    if (typeof value !== 'string') return undefined;
    const r = parser(value);
    if (r.ok) return r.value;
    this.report(path, r.error);
    return undefined;
  }

  parseList<T>(value: unknown, path: PathSegment[], parser: (s: string) => Parsed<T>): T[] {
    const out: T[] = [];
    items(value).forEach((v, i) => {
      const r = this.parse(v, [...path, i], parser);
      if (r !== undefined) out.push(r);
    });
    return out;
  }

  /** A string→string map; non-string values are the schema's to report. */
  labels(value: unknown): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of entries(value)) if (typeof v === 'string') out[k] = v;
    return out;
  }

  build(raw: unknown): PorticoConfig {
    const root = obj(raw) ?? {};
    const entrypoints = this.entrypoints(root.entrypoints);
    const services = this.services(root.services);
    const config: PorticoConfig = {
      data: text(root.data) ?? DEFAULTS.data,
      store: this.parse(root.store, ['store'], parseStore) ?? DEFAULTS.store,
      api: {
        listen: this.parse(obj(root.api)?.listen, ['api', 'listen'], parseListenText) ?? DEFAULTS.api.listen,
        metricsPublic: bool(obj(root.api)?.metricsPublic) ?? DEFAULTS.api.metricsPublic,
      },
      entrypoints,
      dns: this.dns(root.dns),
      l7: this.l7(root.l7),
      overlay: this.overlay(root.overlay),
      vips: { listen: this.parse(obj(root.vips)?.listen, ['vips', 'listen'], parseIp) ?? DEFAULTS.vips.listen },
      services,
      routes: this.routes(
        root.routes,
        [...Object.keys(obj(root.entrypoints) ?? {}), ...this.extraEntrypoints],
        Object.keys(obj(root.services) ?? {}),
      ),
      apps: {
        dir: text(obj(root.apps)?.dir) ?? DEFAULTS.apps.dir,
        groups: items(obj(root.apps)?.groups).filter((g): g is string => typeof g === 'string').length
          ? items(obj(root.apps)?.groups).filter((g): g is string => typeof g === 'string')
          : [...DEFAULTS.apps.groups],
      },
    };
    const marathon = this.marathon(root.marathon);
    if (marathon) config.marathon = marathon;
    const consul = this.consul(root.consul);
    if (consul) config.consul = consul;
    this.checkListeners(config);
    return config;
  }

  entrypoints(value: unknown): Record<string, EntrypointConfig> {
    const out: Record<string, EntrypointConfig> = {};
    for (const [name, v] of entries(value)) {
      const path = ['entrypoints', name];
      const e = obj(v) ?? {};
      const entrypoint: EntrypointConfig = {
        listen: this.parse(e.listen, [...path, 'listen'], parseListenText) ?? '',
        trustedProxies: this.parseList(e.trustedProxies, [...path, 'trustedProxies'], parseStrictCidr),
      };
      const tls = this.tls(e.tls, [...path, 'tls']);
      if (tls) entrypoint.tls = tls;
      out[name] = entrypoint;
    }
    return out;
  }

  tls(value: unknown, path: PathSegment[]): EntrypointTlsConfig | undefined {
    const t = obj(value);
    if (!t) return undefined;
    const certificates: CertificateRef[] = [];
    for (const c of items(t.certificates)) {
      const certFile = text(obj(c)?.certFile);
      const keyFile = text(obj(c)?.keyFile);
      // Resolved here, against the config file's directory, so the file means the same from any cwd.
      if (certFile !== undefined && keyFile !== undefined) {
        certificates.push({ certFile: resolve(this.baseDir, certFile), keyFile: resolve(this.baseDir, keyFile) });
      }
    }
    const tls: EntrypointTlsConfig = {
      auto: bool(t.auto) ?? DEFAULTS.entrypoint.tls.auto,
      certificates,
      passthrough: bool(t.passthrough) ?? DEFAULTS.entrypoint.tls.passthrough,
    };
    const certCount = items(t.certificates).length;
    if (tls.passthrough && (tls.auto || certCount > 0)) {
      this.report([...path, 'passthrough'], 'passthrough forwards TLS unopened: it cannot be combined with auto or certificates');
    } else if (!tls.auto && !tls.passthrough && certCount === 0) {
      this.report(path, 'tls needs auto: true, certificates, or passthrough: true (remove tls for plain HTTP)');
    }
    return tls;
  }

  dns(value: unknown): DnsConfig {
    const d = obj(value) ?? {};
    const ttlMs = this.parse(d.ttl, ['dns', 'ttl'], parseDurationText);
    if (ttlMs !== undefined && ttlMs % 1000 !== 0) {
      this.report(['dns', 'ttl'], `DNS TTLs are whole seconds ("${String(d.ttl)}" is ${ttlMs}ms)`);
    }
    const dns: DnsConfig = {
      listen: this.parse(d.listen, ['dns', 'listen'], parseListenText) ?? DEFAULTS.dns.listen,
      upstreams: has(d, 'upstreams') ? this.parseList(d.upstreams, ['dns', 'upstreams'], parseUpstream) : [...DEFAULTS.dns.upstreams],
      allowRecursionFrom: has(d, 'allowRecursionFrom')
        ? this.parseList(d.allowRecursionFrom, ['dns', 'allowRecursionFrom'], parseStrictCidr)
        : [...DEFAULTS.dns.allowRecursionFrom],
      ttlMs: ttlMs ?? (parseDurationText(DEFAULTS.dns.ttl) as { value: number }).value,
    };
    if (has(d, 'domains')) dns.domains = [...new Set(this.parseList(d.domains, ['dns', 'domains'], parseDomain))];
    if (obj(d.zoneUpstreams)) {
      const zu: Record<string, string[]> = {};
      for (const [zone, ups] of entries(d.zoneUpstreams)) {
        const z = this.parse(zone, ['dns', 'zoneUpstreams', zone], parseDomain);
        if (z !== undefined) zu[z] = this.parseList(ups, ['dns', 'zoneUpstreams', zone], parseUpstream);
      }
      dns.zoneUpstreams = zu;
    }
    return dns;
  }

  marathon(value: unknown): MarathonConfig | undefined {
    const v = obj(value);
    if (!v) return undefined;
    const d = DEFAULTS.marathon;
    const urls = (typeof v.url === 'string' ? [v.url] : items(v.url))
      .map((u, i) => this.parse(u, typeof v.url === 'string' ? ['marathon', 'url'] : ['marathon', 'url', i], parseHttpUrl))
      .filter((u): u is string => u !== undefined);
    const strings = (x: unknown): string[] | undefined =>
      Array.isArray(x) ? x.filter((g): g is string => typeof g === 'string') : undefined;
    const out: MarathonConfig = {
      urls,
      groups: strings(v.groups) ?? [...d.groups],
      framework: text(v.framework) ?? d.framework,
      httpEntrypoint: text(v.httpEntrypoint) ?? d.httpEntrypoint,
      httpsEntrypoint: text(v.httpsEntrypoint) ?? d.httpsEntrypoint,
      bindAddress: this.parse(v.bindAddress, ['marathon', 'bindAddress'], parseIp) ?? d.bindAddress,
      bindServicePorts: bool(v.bindServicePorts) ?? d.bindServicePorts,
      strictMode: bool(v.strictMode) ?? d.strictMode,
      priority: int(v.priority) ?? d.priority,
    };
    if (typeof v.username === 'string') out.username = v.username;
    if (typeof v.password === 'string') out.password = v.password;
    if (typeof v.token === 'string') out.token = v.token;
    if ((out.username === undefined) !== (out.password === undefined))
      this.report(['marathon', out.username === undefined ? 'username' : 'password'], 'username and password go together');
    return out;
  }

  consul(value: unknown): ConsulConfig | undefined {
    const v = obj(value);
    if (!v) return undefined;
    const d = DEFAULTS.consul;
    const out: ConsulConfig = {
      url: this.parse(v.url, ['consul', 'url'], parseHttpUrl) ?? '',
      framework: text(v.framework) ?? d.framework,
      entrypoint: text(v.entrypoint) ?? d.entrypoint,
      exposedByDefault: bool(v.exposedByDefault) ?? d.exposedByDefault,
      includeWarning: bool(v.includeWarning) ?? d.includeWarning,
      ignoreServices: Array.isArray(v.ignoreServices)
        ? v.ignoreServices.filter((g): g is string => typeof g === 'string')
        : [...d.ignoreServices],
      priority: int(v.priority) ?? d.priority,
    };
    if (typeof v.token === 'string') out.token = v.token;
    if (typeof v.datacenter === 'string') out.datacenter = v.datacenter;
    return out;
  }

  overlay(value: unknown): OverlayConfig {
    const v = obj(value) ?? {};
    const d = DEFAULTS.overlay;
    const out: OverlayConfig = {
      enabled: bool(v.enabled) ?? d.enabled,
      socket: text(v.socket) ?? d.socket,
      programLinux: bool(v.programLinux) ?? d.programLinux,
    };
    if (typeof v.agentId === 'string') out.agentId = v.agentId;
    const ip = this.parse(v.agentIp, ['overlay', 'agentIp'], parseIp);
    if (ip !== undefined) out.agentIp = ip;
    const vtep = obj(v.vtep);
    if (vtep) out.vtep = JSON.parse(JSON.stringify(vtep)) as NonNullable<OverlayConfig['vtep']>;
    if (Array.isArray(v.networks)) {
      out.networks = items(v.networks).map((n, i) => {
        const o = obj(n) ?? {};
        const net = {
          name: text(o.name) ?? '',
          subnet: this.parse(o.subnet, ['overlay', 'networks', i, 'subnet'], parseStrictCidr) ?? '',
          prefix: int(o.prefix) ?? 0,
        } as { name: string; subnet: string; prefix: number; mtu?: number };
        if (int(o.mtu) !== undefined) net.mtu = int(o.mtu) as number;
        const bits = Number(net.subnet.split('/')[1] ?? 0);
        if (net.subnet && net.prefix <= bits)
          this.report(['overlay', 'networks', i, 'prefix'], `must be longer than the subnet's /${bits}`);
        return net;
      });
    }
    return out;
  }

  l7(value: unknown): L7Config {
    const v = obj(value) ?? {};
    const d = DEFAULTS.l7;
    const dur = (
      key:
        | 'headerTimeout'
        | 'keepAliveTimeout'
        | 'connectTimeout'
        | 'responseHeaderTimeout'
        | 'idleTimeout'
        | 'tunnelIdleTimeout'
        | 'upstreamKeepAlive',
    ): number => this.parse(v[key] ?? d[key], ['l7', key], parseDurationText) ?? (parseDurationText(d[key]) as { value: number }).value;
    const size =
      typeof v.maxHeaderSize === 'number'
        ? int(v.maxHeaderSize)
        : this.parse(v.maxHeaderSize ?? d.maxHeaderSize, ['l7', 'maxHeaderSize'], parseSizeText);
    return {
      accessLog: bool(v.accessLog) ?? d.accessLog,
      headerTimeoutMs: dur('headerTimeout'),
      keepAliveTimeoutMs: dur('keepAliveTimeout'),
      connectTimeoutMs: dur('connectTimeout'),
      responseHeaderTimeoutMs: dur('responseHeaderTimeout'),
      idleTimeoutMs: dur('idleTimeout'),
      tunnelIdleTimeoutMs: dur('tunnelIdleTimeout'),
      upstreamKeepAliveMs: dur('upstreamKeepAlive'),
      maxConnectionsPerEndpoint: int(v.maxConnectionsPerEndpoint) ?? d.maxConnectionsPerEndpoint,
      maxQueuePerEndpoint: int(v.maxQueuePerEndpoint) ?? d.maxQueuePerEndpoint,
      maxHeaderBytes: size ?? 16_384,
      retries: int(v.retries) ?? d.retries,
      retryBudget: typeof v.retryBudget === 'number' ? v.retryBudget : d.retryBudget,
      authHashesPerSecond: int(v.authHashesPerSecond) ?? d.authHashesPerSecond,
    };
  }

  services(value: unknown): Record<string, ServiceConfig> {
    const out: Record<string, ServiceConfig> = {};
    /** VIP key → path of its first claimant, across all services: one file cannot claim a VIP twice. */
    const vipOwners = new Map<string, PathSegment[]>();
    for (const [name, v] of entries(value)) {
      const path = ['services', name];
      const s = obj(v) ?? {};
      const framework = this.parse(s.framework, [...path, 'framework'], parseFramework) ?? DEFAULTS.service.framework;
      const service: ServiceConfig = {
        framework,
        endpoints: this.endpoints(s.endpoints, [...path, 'endpoints']),
        balance: this.parse(s.balance ?? DEFAULTS.service.balance, [...path, 'balance'], parseBalance) ?? { algorithm: 'roundrobin' },
        vips: this.vips(s.vips, [...path, 'vips'], framework, vipOwners),
        labels: this.labels(s.labels),
      };
      const health = this.health(s.health, [...path, 'health']);
      if (health) service.health = health;
      out[name] = service;
    }
    return out;
  }

  endpoints(value: unknown, path: PathSegment[]): Endpoint[] {
    const out: Endpoint[] = [];
    const seen = new Map<string, number>();
    items(value).forEach((v, i) => {
      const e = obj(v) ?? {};
      const at = [...path, i];
      const address = this.parse(e.address, [...at, 'address'], parseIp);
      const port = int(e.port);
      const endpoint: Endpoint = {
        address: address ?? '',
        port: port ?? 0,
        weight: int(e.weight) ?? DEFAULTS.endpoint.weight,
        health: HEALTH_STATES.includes(e.health as string) ? (e.health as HealthState) : DEFAULTS.endpoint.health,
        labels: this.labels(e.labels),
      };
      for (const key of ['task', 'taskId', 'network'] as const) {
        const t = text(e[key]);
        if (t !== undefined) endpoint[key] = t;
      }
      const agent = this.parse(e.agentAddress, [...at, 'agentAddress'], parseIp);
      if (agent !== undefined) endpoint.agentAddress = agent;

      if (address !== undefined && port !== undefined) {
        const key = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
        const first = seen.get(key);
        if (first !== undefined) this.report(at, `duplicate endpoint ${key} (same as ${formatPath([...path, first])})`);
        else seen.set(key, i);
      }
      out.push(endpoint);
    });
    return out;
  }

  health(value: unknown, path: PathSegment[]): HealthCheck | undefined {
    const h = obj(value);
    if (!h) return undefined;
    const httpPath = this.parse(h.http, [...path, 'http'], parseHttpPath);
    const tcp = bool(h.tcp);
    if (h.http !== undefined && tcp === true) this.report([...path, 'tcp'], 'a check is either http or tcp: set one of them');
    if (h.http === undefined && tcp === false)
      this.report([...path, 'tcp'], 'tcp: false leaves no check to run (set http, or remove health to disable checks)');
    const positive = (key: 'interval' | 'timeout'): number => {
      const ms = this.parse(h[key] ?? DEFAULTS.health[key], [...path, key], parseDurationText) ?? 1;
      if (ms <= 0) this.report([...path, key], `must be longer than 0s`);
      return ms;
    };
    const check: HealthCheck = {
      expectStatus: this.parse(h.expect ?? DEFAULTS.health.expect, [...path, 'expect'], parseStatusRange) ?? [200, 399],
      intervalMs: positive('interval'),
      timeoutMs: positive('timeout'),
      rise: int(h.rise) ?? DEFAULTS.health.rise,
      fall: int(h.fall) ?? DEFAULTS.health.fall,
    };
    if (httpPath !== undefined) check.httpPath = httpPath;
    return check;
  }

  vips(value: unknown, path: PathSegment[], framework: string, owners: Map<string, PathSegment[]>): Vip[] {
    const out: Vip[] = [];
    items(value).forEach((v, i) => {
      const x = obj(v) ?? {};
      const at = [...path, i];
      const name = this.parse(x.name, [...at, 'name'], parseVipName);
      const address = this.parse(x.address, [...at, 'address'], parseIp);
      const protocol = x.protocol === 'udp' ? 'udp' : DEFAULTS.vip.protocol;
      const port = int(x.port) ?? 0;
      const vip: Vip = { port, protocol };
      if (name !== undefined) vip.name = name;
      if (address !== undefined) vip.address = address;
      if (x.proxyProtocol === 'v1' || x.proxyProtocol === 'v2') vip.proxyProtocol = x.proxyProtocol;

      if (has(x, 'name') && has(x, 'address')) {
        this.report(at, 'a VIP has a name or an address, not both');
      } else if (!has(x, 'name') && !has(x, 'address')) {
        this.report(at, 'a VIP needs a name or an address');
      } else if ((name !== undefined || address !== undefined) && port > 0) {
        const target = name !== undefined ? `${toVipName(name)}.${toFrameworkName(framework)}` : (address as string);
        const key = `${protocol}/${target.includes(':') ? `[${target}]` : target}:${port}`;
        const first = owners.get(key);
        if (first) this.report(at, `duplicate VIP ${key} (also ${formatPath(first)})`);
        else owners.set(key, at);
      }
      out.push(vip);
    });
    return out;
  }

  routes(value: unknown, entrypointNames: string[], serviceNames: string[]): RouteConfig[] {
    const out: RouteConfig[] = [];
    const matches = new Map<string, number>();
    items(value).forEach((v, i) => {
      const r = obj(v) ?? {};
      const path: PathSegment[] = ['routes', i];
      const entrypoint = text(r.entrypoint) ?? '';
      const service = text(r.service) ?? '';
      if (typeof r.entrypoint === 'string' && !entrypointNames.includes(entrypoint)) {
        this.report([...path, 'entrypoint'], `unknown entrypoint "${entrypoint}" (${known(entrypointNames)})`);
      }
      if (typeof r.service === 'string' && !serviceNames.includes(service)) {
        this.report([...path, 'service'], `unknown service "${service}" (${known(serviceNames)})`);
      }
      const route: RouteConfig = {
        entrypoint,
        host: this.parse(r.host, [...path, 'host'], parseRouteHost) ?? '*',
        path: this.parse(r.path ?? DEFAULTS.route.path, [...path, 'path'], parseHttpPath) ?? '/',
        pathMatch: r.pathMatch === 'exact' ? 'exact' : DEFAULTS.route.pathMatch,
        service,
      };
      if (has(r, 'methods')) {
        route.methods = [...new Set(this.parseList(r.methods, [...path, 'methods'], parseToken).map((m) => m.toUpperCase()))];
      }
      if (has(r, 'headers')) route.headers = this.headers(r.headers, [...path, 'headers']);
      const strip = this.parse(r.stripPrefix, [...path, 'stripPrefix'], parseHttpPath);
      if (strip !== undefined) {
        route.stripPrefix = strip;
        if (!route.path.startsWith(strip)) {
          this.report(
            [...path, 'stripPrefix'],
            `"${strip}" is not a prefix of the route path "${route.path}", so it would never be stripped`,
          );
        }
      }
      const add = this.parse(r.addPrefix, [...path, 'addPrefix'], parseHttpPath);
      if (add !== undefined) route.addPrefix = add;
      const redirect = bool(r.redirectToHttps);
      if (redirect !== undefined) route.redirectToHttps = redirect;
      const timeouts = this.timeouts(r.timeouts, [...path, 'timeouts']);
      if (timeouts) route.timeouts = timeouts;
      const maxBody = typeof r.maxBody === 'number' ? int(r.maxBody) : this.parse(r.maxBody, [...path, 'maxBody'], parseSizeText);
      if (maxBody !== undefined) route.maxBodyBytes = maxBody;

      // Two routes with the same match: the second can never be chosen, which is never what was meant.
      const key = JSON.stringify([
        route.entrypoint,
        route.host,
        route.path,
        route.pathMatch,
        route.methods ? [...route.methods].sort() : null,
        route.headers ? route.headers.map((h) => `${h.name}=${h.value ?? ''}`).sort() : null,
      ]);
      const first = matches.get(key);
      if (first !== undefined)
        this.report(path, `same match as routes[${first}] (entrypoint, host, path, methods, headers): this route would never be used`);
      else matches.set(key, i);
      out.push(route);
    });
    return out;
  }

  headers(value: unknown, path: PathSegment[]): HeaderMatch[] {
    const out: HeaderMatch[] = [];
    items(value).forEach((v, i) => {
      const h = obj(v) ?? {};
      const name = this.parse(h.name, [...path, i, 'name'], parseToken);
      if (name === undefined) return;
      const match: HeaderMatch = { name: name.toLowerCase() };
      const value = text(h.value);
      if (value !== undefined) match.value = value;
      out.push(match);
    });
    return out;
  }

  timeouts(value: unknown, path: PathSegment[]): Partial<RouteTimeouts> | undefined {
    const t = obj(value);
    if (!t) return undefined;
    const out: Partial<RouteTimeouts> = {};
    const fields = { connect: 'connectMs', responseHeader: 'responseHeaderMs', idle: 'idleMs' } as const;
    for (const [key, field] of Object.entries(fields)) {
      const ms = this.parse(t[key], [...path, key], parseDurationText);
      if (ms !== undefined) out[field] = ms;
    }
    return out;
  }

  /**
   * Two TCP listeners on one port fail at bind time with EADDRINUSE, and then the appliance does not
   * start; say so at load time instead, naming both. A wildcard overlaps every address of its family,
   * and `::` overlaps IPv4 too (Node listens dual-stack). Port 0 is ephemeral: never a collision.
   */
  checkListeners(cfg: PorticoConfig): void {
    const listeners: Array<{ path: PathSegment[]; listen: string }> = [
      { path: ['api', 'listen'], listen: cfg.api.listen },
      { path: ['dns', 'listen'], listen: cfg.dns.listen },
      ...Object.entries(cfg.entrypoints).map(([name, e]) => ({ path: ['entrypoints', name, 'listen'], listen: e.listen })),
    ];
    const parsed = listeners
      .map((l) => ({ ...l, ...splitListen(l.listen) }))
      .filter((l): l is typeof l & { host: string; port: number } => l.host !== undefined && l.port !== undefined && l.port !== 0);
    for (let i = 1; i < parsed.length; i++) {
      const b = parsed[i] as (typeof parsed)[number];
      const a = parsed.slice(0, i).find((x) => x.port === b.port && hostsOverlap(x.host, b.host));
      if (a) this.report(b.path, `${b.listen} collides with ${formatPath(a.path)} (${a.listen}): both would listen on TCP port ${b.port}`);
    }
  }
}

function splitListen(listen: string): { host?: string; port?: number } {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(listen);
  return m ? { host: m[1] as string, port: Number(m[2]) } : {};
}

function hostsOverlap(a: string, b: string): boolean {
  if (a === b || a === '::' || b === '::') return true;
  const v6 = (h: string) => h.includes(':');
  return v6(a) === v6(b) && (a === '0.0.0.0' || b === '0.0.0.0');
}

function known(names: string[]): string {
  return names.length === 0 ? 'none are defined' : `defined: ${names.join(', ')}`;
}

/** Build the typed config from a parsed document, reporting every problem through `report`. */
export function buildConfig(raw: unknown, baseDir: string, report: Report, extraEntrypoints: readonly string[] = []): PorticoConfig {
  return new Builder(report, baseDir, extraEntrypoints).build(raw);
}
