/**
 * The pure part of the aggregator: merge every provider's latest snapshot into one table's content.
 * Same inputs (in any arrival order) → same content → same hash. No I/O, no clock but `createdAt`.
 *
 * Conflicts (two providers claiming one route key, one VIP, one DNS name, one entrypoint) are decided by
 * provider priority — higher wins, ties go to the lexically smaller provider name so the outcome never
 * depends on arrival order — and every one is reported in `conflicts`.
 */
import { createHash } from 'node:crypto';
import { canonicalJson, contentHash } from '../model/canonical.js';
import type {
  Balance,
  HealthCheck,
  Vip,
  Conflict,
  ConflictKind,
  Endpoint,
  Entrypoint,
  Route,
  RoutingTable,
  Service,
  Snapshot,
  TableWarning,
  VipEntry,
} from '../model/types.js';

export interface ProviderInput {
  priority: number;
  snapshot: NormalizedSnapshot;
  /** Content hash of `snapshot` (computed once when it arrived). */
  hash: string;
}

/** A table's content before it is given a version. */
export type TableContent = Omit<RoutingTable, 'version' | 'createdAt'>;

export { canonicalJson };

/** Content hash of any value (canonical JSON): snapshots, tables. */
export const hashOf = contentHash;

/** The JSON of each service as it was hashed: diffs compare these strings instead of re-serialising. */
const serviceJson = new WeakMap<object, string>();

export function serviceFingerprint(s: Service): string {
  let j = serviceJson.get(s);
  if (j === undefined) {
    j = JSON.stringify(normalizeService(s));
    serviceJson.set(s, j);
  }
  return j;
}

function sortedRecord(r: Record<string, string>): Record<string, string> {
  const keys = Object.keys(r);
  if (keys.length === 0) return EMPTY_LABELS;
  keys.sort();
  const out: Record<string, string> = {};
  for (const k of keys) out[k] = r[k] as string;
  return Object.freeze(out);
}

const EMPTY_LABELS: Record<string, string> = Object.freeze({}) as Record<string, string>;

function labelsSorted(r: Record<string, string>): boolean {
  let prev: string | undefined;
  for (const k in r) {
    if (prev !== undefined && k < prev) return false;
    prev = k;
  }
  return true;
}

/**
 * Endpoints are taken over, not copied (the aggregator owns what providers send it): labels are put in
 * key order only when they are not already. At 100,000 endpoints a copy — or even an Object.freeze — of
 * each costs more than all the rest of the merge, so endpoint objects are the one part of a table that is
 * not frozen: their arrays are, and the types say `readonly` to data planes. Providers build endpoints with
 * the model's key order, so plain JSON.stringify gives their canonical text.
 */
function normalizeEndpoint(e: Endpoint): Endpoint {
  if (!labelsSorted(e.labels)) e.labels = sortedRecord(e.labels);
  return e;
}

function endpointsSorted(eps: Endpoint[]): boolean {
  for (let i = 1; i < eps.length; i++) if (compareEndpoints(eps[i - 1] as Endpoint, eps[i] as Endpoint) > 0) return false;
  return true;
}

function normalizeBalance(b: Balance): Balance {
  const out: Balance = { algorithm: b.algorithm };
  if (b.hashOn) out.hashOn = b.hashOn.kind === 'ip' ? { kind: 'ip' } : { kind: b.hashOn.kind, name: b.hashOn.name };
  if (b.cookie !== undefined) out.cookie = b.cookie;
  return out;
}

function normalizeHealth(h: HealthCheck): HealthCheck {
  const out: HealthCheck = {
    expectStatus: [h.expectStatus[0], h.expectStatus[1]],
    intervalMs: h.intervalMs,
    timeoutMs: h.timeoutMs,
    rise: h.rise,
    fall: h.fall,
  };
  if (h.httpPath !== undefined) out.httpPath = h.httpPath;
  return out;
}

function normalizeVip(v: Vip): Vip {
  const out: Vip = { port: v.port, protocol: v.protocol };
  if (v.name !== undefined) out.name = v.name;
  if (v.address !== undefined) out.address = v.address;
  if (v.proxyProtocol !== undefined) out.proxyProtocol = v.proxyProtocol;
  return out;
}

type LocalService = Omit<Service, 'id' | 'provider'>;

function normalizeService(s: LocalService): LocalService {
  const endpoints = s.endpoints.map(normalizeEndpoint);
  if (!endpointsSorted(endpoints)) endpoints.sort(compareEndpoints);
  Object.freeze(endpoints);
  const out: LocalService = {
    name: s.name,
    framework: s.framework,
    endpoints,
    balance: normalizeBalance(s.balance),
    vips: deepFreeze(s.vips.map(normalizeVip)),
    labels: sortedRecord(s.labels),
  };
  if (s.health) out.health = deepFreeze(normalizeHealth(s.health));
  if (s.dnsHidden) out.dnsHidden = true;
  deepFreeze(out.balance);
  return Object.freeze(out);
}

type SnapshotRoute = Snapshot['routes'][number];

/** A route with the model's key order (fixed), so JSON.stringify of it is canonical. */
function normalizeRoute(r: SnapshotRoute): SnapshotRoute {
  const out: SnapshotRoute = { entrypoint: r.entrypoint, host: r.host, path: r.path, pathMatch: r.pathMatch, service: r.service };
  if (r.id !== undefined) out.id = r.id;
  if (r.methods !== undefined) out.methods = [...r.methods];
  if (r.headers !== undefined)
    out.headers = r.headers.map((h) => (h.value === undefined ? { name: h.name } : { name: h.name, value: h.value }));
  if (r.stripPrefix !== undefined) out.stripPrefix = r.stripPrefix;
  if (r.addPrefix !== undefined) out.addPrefix = r.addPrefix;
  if (r.redirectToHttps !== undefined) out.redirectToHttps = r.redirectToHttps;
  if (r.timeouts !== undefined) out.timeouts = JSON.parse(canonicalJson(r.timeouts)) as NonNullable<SnapshotRoute['timeouts']>;
  if (r.maxBodyBytes !== undefined) out.maxBodyBytes = r.maxBodyBytes;
  if (r.hsts !== undefined) out.hsts = { maxAgeS: r.hsts.maxAgeS, includeSubdomains: r.hsts.includeSubdomains, preload: r.hsts.preload };
  if (r.basicAuth !== undefined)
    out.basicAuth = { realm: r.basicAuth.realm, users: r.basicAuth.users.map((u) => ({ user: u.user, hash: u.hash })) };
  if (r.allowFrom !== undefined) out.allowFrom = [...r.allowFrom];
  return out;
}

export interface NormalizedService {
  name: string;
  service: LocalService;
}

/** A provider's snapshot in canonical form, with its hash, computed once when it arrives. */
export interface NormalizedSnapshot {
  provider: string;
  services: NormalizedService[];
  routes: Snapshot['routes'];
  entrypoints: Snapshot['entrypoints'];
  warnings: NonNullable<Snapshot['warnings']>;
  hash: string;
}

/**
 * Canonical form + hash. Everything built here has a fixed key order, so one native JSON.stringify of
 * the whole snapshot is its canonical text (the generic key-sorting serialiser is kept for the small,
 * open-ended parts: routes and entrypoints).
 */
export function normalizeSnapshot(snap: Snapshot): NormalizedSnapshot {
  const services: NormalizedService[] = [];
  for (const name of Object.keys(snap.services).sort()) {
    const src = snap.services[name] as LocalService;
    services.push({ name, service: normalizeService({ ...src, name }) });
  }
  const routes = snap.routes.map(normalizeRoute);
  const entrypointsText = canonicalJson(snap.entrypoints);
  const entrypoints = JSON.parse(entrypointsText) as Snapshot['entrypoints'];
  const warnings = (snap.warnings ?? []).map((w) => ({ subject: String(w.subject), message: String(w.message) }));
  const hasher = createHash('sha256')
    .update(JSON.stringify(services))
    .update('\n')
    .update(JSON.stringify(routes))
    .update('\n')
    .update(entrypointsText);
  if (warnings.length) hasher.update('\n').update(JSON.stringify(warnings));
  return { provider: snap.provider, services, routes, entrypoints, warnings, hash: hasher.digest('hex') };
}

/** Providers in decision order: priority descending, then name ascending. */
function ordered(inputs: Map<string, ProviderInput>): Array<[string, ProviderInput]> {
  return [...inputs.entries()].sort((a, b) => b[1].priority - a[1].priority || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function compareEndpoints(a: Endpoint, b: Endpoint): number {
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return a.port - b.port;
}

function routeKey(r: {
  entrypoint: string;
  host: string;
  path: string;
  pathMatch: string;
  methods?: string[];
  headers?: Array<{ name: string; value?: string }>;
}): string {
  const methods = r.methods && r.methods.length ? [...r.methods].sort().join(',') : '*';
  const headers =
    r.headers && r.headers.length
      ? r.headers
          .map((h) => `${h.name.toLowerCase()}=${h.value ?? '*'}`)
          .sort()
          .join('&')
      : '';
  return `${r.entrypoint} ${r.host} ${r.path} ${r.pathMatch} ${methods}${headers ? ` ${headers}` : ''}`;
}

function compareRoutes(a: Route, b: Route): number {
  if (a.entrypoint !== b.entrypoint) return a.entrypoint < b.entrypoint ? -1 : 1;
  if (a.host !== b.host) return a.host < b.host ? -1 : 1;
  if (a.path.length !== b.path.length) return b.path.length - a.path.length;
  if (a.path !== b.path) return a.path < b.path ? -1 : 1;
  if (a.pathMatch !== b.pathMatch) return a.pathMatch === 'exact' ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

class ClaimBook {
  private readonly claims = new Map<string, { winner: string; losers: string[] }>();
  constructor(private readonly kind: ConflictKind) {}
  /** Returns true if `provider` wins `key` (it is the first to claim it; callers go in decision order). */
  claim(key: string, provider: string): boolean {
    const c = this.claims.get(key);
    if (!c) {
      this.claims.set(key, { winner: provider, losers: [] });
      return true;
    }
    c.losers.push(provider);
    return false;
  }
  conflicts(): Conflict[] {
    const out: Conflict[] = [];
    for (const [key, c] of this.claims) {
      if (c.losers.length === 0) continue;
      const same = c.losers.every((l) => l === c.winner);
      out.push({
        kind: this.kind,
        key,
        winner: c.winner,
        losers: c.losers,
        message: same
          ? `${this.kind} "${key}" is claimed more than once by provider ${c.winner}; the first claim is served`
          : `${this.kind} "${key}" is claimed by ${[c.winner, ...c.losers].join(', ')}; ${c.winner} has the highest priority and is served`,
      });
    }
    return out;
  }
}

export function buildContent(inputs: Map<string, ProviderInput>): TableContent {
  const order = ordered(inputs);
  const services: Record<string, Service> = {};
  const routes: Route[] = [];
  const entrypoints: Record<string, Entrypoint> = {};
  const vips: VipEntry[] = [];
  const warnings: TableWarning[] = [];
  const sources: Record<string, string> = {};
  const routeBook = new ClaimBook('route');
  const vipBook = new ClaimBook('vip');
  const dnsBook = new ClaimBook('dns');
  const epBook = new ClaimBook('entrypoint');
  // The content hash is a hash of the canonical inputs in decision order: each provider's name, priority
  // and snapshot hash. The merge is a pure function of exactly these, so equal hashes mean equal tables,
  // and arrival order cannot matter. (Hashing the merged table again would cost as much as the merge.)
  const contentHasher = createHash('sha256');

  for (const [provider, input] of order) {
    sources[provider] = input.hash;
    contentHasher.update(`${provider}\0${input.priority}\0${input.hash}\n`);
    const snap = input.snapshot;
    for (const w of snap.warnings) warnings.push({ provider, subject: w.subject, message: w.message });

    for (const { name, service: s } of snap.services) {
      const id = `${name}@${provider}`;
      const service: Service = {
        name,
        id,
        provider,
        framework: s.framework,
        endpoints: s.endpoints,
        balance: s.balance,
        vips: s.vips,
        labels: s.labels,
      };
      if (s.health) service.health = s.health;
      if (!dnsBook.claim(`${name}.${s.framework}`, provider)) service.dnsHidden = true;
      services[id] = Object.freeze(service);

      for (const v of s.vips) {
        const target = v.name !== undefined ? `${v.name}.${s.framework}` : (v.address as string);
        const key = `${v.protocol}/${target.includes(':') ? `[${target}]` : target}:${v.port}`;
        if (!vipBook.claim(key, provider)) continue;
        const entry: VipEntry = { key, protocol: v.protocol, framework: s.framework, port: v.port, service: id };
        if (v.name !== undefined) entry.name = v.name;
        if (v.address !== undefined) entry.address = v.address;
        if (v.proxyProtocol !== undefined) entry.proxyProtocol = v.proxyProtocol;
        vips.push(entry);
        if (s.endpoints.length === 0) warnings.push({ provider, subject: key, message: `VIP ${key} has no endpoints` });
      }
    }

    for (const name of Object.keys(snap.entrypoints).sort()) {
      if (epBook.claim(name, provider)) entrypoints[name] = snap.entrypoints[name] as Entrypoint;
    }

    snap.routes.forEach((r, index) => {
      const id = r.id ?? `${provider}/${index}`;
      if (!routeBook.claim(routeKey(r), provider)) return;
      const service = r.service.includes('@') ? r.service : `${r.service}@${provider}`;
      routes.push({ ...r, id, provider, service });
    });
  }

  for (const r of routes) {
    if (!services[r.service]) {
      warnings.push({
        provider: r.provider,
        subject: r.id,
        message: `route ${r.id} names service ${r.service}, which no provider has; it answers 503`,
      });
    }
    if (!entrypoints[r.entrypoint]) {
      warnings.push({
        provider: r.provider,
        subject: r.id,
        message: `route ${r.id} names entrypoint ${r.entrypoint}, which is not defined; it is not served`,
      });
    }
  }

  routes.sort(compareRoutes);
  vips.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const conflicts = [...routeBook.conflicts(), ...vipBook.conflicts(), ...dnsBook.conflicts(), ...epBook.conflicts()];
  const sortedServices: Record<string, Service> = {};
  for (const id of Object.keys(services).sort()) sortedServices[id] = services[id] as Service;
  return { services: sortedServices, routes, entrypoints, vips, conflicts, warnings, sources, hash: contentHasher.digest('hex') };
}

/** Freeze a table and everything in it: a data plane that tried to mutate it would throw in strict mode. */
export function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || Object.isFrozen(v)) continue;
    Object.freeze(v);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x = v[i] as unknown;
        if (x !== null && typeof x === 'object' && !Object.isFrozen(x)) stack.push(x);
      }
    } else {
      for (const k in v as object) {
        const x = (v as Record<string, unknown>)[k];
        if (x !== null && typeof x === 'object' && !Object.isFrozen(x)) stack.push(x);
      }
    }
  }
  return value;
}
