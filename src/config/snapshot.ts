/**
 * The config file as a provider Snapshot. Pure and deterministic: the same config gives a
 * deep-equal snapshot with the same key order, whatever order the file lists services or
 * entrypoints in, so a re-saved file with the same meaning hashes the same and changes nothing.
 * Only route order is kept from the file (it is part of the meaning).
 */
import { isDeepStrictEqual } from 'node:util';
import ipaddr from 'ipaddr.js';
import { toFrameworkName, toVipName } from '../model/names.js';
import { normalIPv4Bytes, parseAddress } from '../model/parse.js';
import type { Endpoint, Entrypoint, Service, Snapshot, Vip } from '../model/types.js';
import type { PorticoConfig, RouteConfig, ServiceConfig } from './types.js';

/** A config and the snapshot made of it: what the next snapshot reuses where the config did not change. */
export interface ConfigSnapshot {
  cfg: PorticoConfig;
  snapshot: Snapshot;
}

/**
 * Translate a config to the snapshot the file provider sends. Route `service` is the provider-local
 * service name; the aggregator qualifies it to `<name>@<provider>`.
 *
 * With `previous`, a service or route whose config is deep-equal to what it was there (a route: at the
 * same place in the list), or that translates to an equal one, is the previous snapshot's object itself: a save of a 10,000-service file that
 * changes one endpoint makes one new service object, and the aggregator, which skips an object it was
 * handed before, looks at that one only.
 */
export function configToSnapshot(cfg: PorticoConfig, provider: string, previous?: ConfigSnapshot): Snapshot {
  const services: Snapshot['services'] = {};
  for (const name of sortedKeys(cfg.services)) {
    const now = cfg.services[name] as ServiceConfig;
    const was = previous?.cfg.services[name];
    const made = was !== undefined ? previous?.snapshot.services[name] : undefined;
    services[name] = made !== undefined && (was === now || isDeepStrictEqual(was, now)) ? made : reuse(made, toService(name, now));
  }

  const entrypoints: Record<string, Entrypoint> = {};
  for (const name of sortedKeys(cfg.entrypoints)) {
    const e = cfg.entrypoints[name];
    if (!e) continue;
    const entrypoint: Entrypoint = { name, listen: e.listen, trustedProxies: [...e.trustedProxies] };
    if (e.tls) {
      entrypoint.tls = {
        auto: e.tls.auto,
        certificates: e.tls.certificates.map((c) => ({ certFile: c.certFile, keyFile: c.keyFile })),
        passthrough: e.tls.passthrough,
      };
    }
    entrypoints[name] = entrypoint;
  }

  const routes = cfg.routes.map((r, i) => {
    const was = previous?.cfg.routes[i];
    const made = was !== undefined ? previous?.snapshot.routes[i] : undefined;
    return made !== undefined && (was === r || isDeepStrictEqual(was, r)) ? made : reuse(made, toRoute(r));
  });
  return { provider, services, routes, entrypoints };
}

/** `made` when `fresh` says the same (a config written in another order, endpoints listed otherwise). */
function reuse<T>(made: T | undefined, fresh: T): T {
  return made !== undefined && isDeepStrictEqual(made, fresh) ? made : fresh;
}

/**
 * Whether two snapshots made by configToSnapshot (the second with the first as `previous`) say the same:
 * every service and route the same object, the same entrypoints.
 */
export function sameConfigSnapshot(a: Snapshot, b: Snapshot): boolean {
  const as = Object.keys(a.services);
  const bs = Object.keys(b.services);
  if (as.length !== bs.length) return false;
  for (const name of bs) if (a.services[name] !== b.services[name]) return false;
  if (a.routes.length !== b.routes.length) return false;
  for (let i = 0; i < b.routes.length; i++) if (a.routes[i] !== b.routes[i]) return false;
  return isDeepStrictEqual(a.entrypoints, b.entrypoints);
}

function toService(name: string, s: ServiceConfig): Omit<Service, 'id' | 'provider'> {
  const service: Omit<Service, 'id' | 'provider'> = {
    name,
    framework: toFrameworkName(s.framework),
    endpoints: sortEndpoints(s.endpoints.map(toEndpoint)),
    balance: { ...s.balance, ...(s.balance.hashOn && { hashOn: { ...s.balance.hashOn } }) },
    vips: s.vips.map(toVip),
    labels: { ...s.labels },
  };
  if (s.health) service.health = { ...s.health, expectStatus: [...s.health.expectStatus] };
  return service;
}

function toEndpoint(e: Endpoint): Endpoint {
  const out: Endpoint = { ...e, address: normalise(e.address), labels: { ...e.labels } };
  if (e.agentAddress !== undefined) out.agentAddress = normalise(e.agentAddress);
  return out;
}

function toVip(v: Vip): Vip {
  const out: Vip = { ...v };
  if (v.name !== undefined) out.name = toVipName(v.name);
  if (v.address !== undefined) out.address = normalise(v.address);
  return out;
}

function toRoute(r: RouteConfig): Snapshot['routes'][number] {
  const route: Snapshot['routes'][number] = {
    entrypoint: r.entrypoint,
    host: r.host.toLowerCase(),
    path: r.path,
    pathMatch: r.pathMatch,
    service: r.service,
  };
  if (r.methods) route.methods = [...r.methods];
  if (r.headers) route.headers = r.headers.map((h) => ({ ...h }));
  if (r.stripPrefix !== undefined) route.stripPrefix = r.stripPrefix;
  if (r.addPrefix !== undefined) route.addPrefix = r.addPrefix;
  if (r.redirectToHttps !== undefined) route.redirectToHttps = r.redirectToHttps;
  if (r.timeouts) route.timeouts = { ...r.timeouts };
  if (r.maxBodyBytes !== undefined) route.maxBodyBytes = r.maxBodyBytes;
  return route;
}

/** The loader has normalised already; this keeps the translation right for hand-built configs too. */
function normalise(address: string): string {
  const a = parseAddress(address);
  return a.ok ? a.value : address;
}

function sortedKeys(o: Record<string, unknown>): string[] {
  return Object.keys(o).sort();
}

/**
 * IPv4 before IPv6, then numerically by address bytes (10.0.0.2 before 10.0.0.10), then by port. Each
 * address is read once (not once per comparison).
 */
function sortEndpoints(endpoints: Endpoint[]): Endpoint[] {
  if (endpoints.length < 2) return endpoints;
  const keyed = endpoints.map((e) => ({ e, bytes: addressBytes(e.address) }));
  keyed.sort((x, y) => compareEndpoints(x.e, x.bytes, y.e, y.bytes));
  return keyed.map((x) => x.e);
}

function compareEndpoints(a: Endpoint, ka: number[] | undefined, b: Endpoint, kb: number[] | undefined): number {
  if (ka && kb) {
    if (ka.length !== kb.length) return ka.length - kb.length;
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return (ka[i] as number) - (kb[i] as number);
  } else if (a.address !== b.address) {
    return a.address < b.address ? -1 : 1;
  }
  return a.port - b.port;
}

function addressBytes(address: string): number[] | undefined {
  // A normalised IPv4 address (what toEndpoint made): its four numbers, without ipaddr.js.
  const v4 = normalIPv4Bytes(address);
  if (v4) return v4;
  try {
    return ipaddr.parse(address).toByteArray();
  } catch {
    return undefined;
  }
}
