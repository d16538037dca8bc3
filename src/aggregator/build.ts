/**
 * The canonical form of what providers send: services and routes with a fixed key order (so one native
 * JSON.stringify is their canonical text), and the orders the table keeps them in. Used by the merge
 * (src/aggregator/merge.ts) as each service or route arrives.
 */
import { canonicalJson, contentHash } from '../model/canonical.js';
import type { Balance, HealthCheck, Vip, Endpoint, Route, Service, Snapshot } from '../model/types.js';

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

export type LocalService = Omit<Service, 'id' | 'provider'>;

export function normalizeService(s: LocalService): LocalService {
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

export type SnapshotRoute = Snapshot['routes'][number];

/** A route with the model's key order (fixed), so JSON.stringify of it is canonical. */
export function normalizeRoute(r: SnapshotRoute): SnapshotRoute {
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

function compareEndpoints(a: Endpoint, b: Endpoint): number {
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return a.port - b.port;
}

export function routeKey(r: {
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

export function compareRoutes(a: Route, b: Route): number {
  if (a.entrypoint !== b.entrypoint) return a.entrypoint < b.entrypoint ? -1 : 1;
  if (a.host !== b.host) return a.host < b.host ? -1 : 1;
  if (a.path.length !== b.path.length) return b.path.length - a.path.length;
  if (a.path !== b.path) return a.path < b.path ? -1 : 1;
  if (a.pathMatch !== b.pathMatch) return a.pathMatch === 'exact' ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
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
