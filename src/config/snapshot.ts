/**
 * The config file as a provider Snapshot. Pure and deterministic: the same config gives a
 * deep-equal snapshot with the same key order, whatever order the file lists services or
 * entrypoints in, so a re-saved file with the same meaning hashes the same and changes nothing.
 * Only route order is kept from the file (it is part of the meaning).
 */
import ipaddr from 'ipaddr.js';
import { toFrameworkName, toVipName } from '../model/names.js';
import { normalIPv4Bytes, parseAddress } from '../model/parse.js';
import type { Endpoint, Entrypoint, Service, Snapshot, Vip } from '../model/types.js';
import type { PorticoConfig, RouteConfig, ServiceConfig } from './types.js';

/**
 * Translate a config to the snapshot the file provider sends. Route `service` is the provider-local
 * service name; the aggregator qualifies it to `<name>@<provider>`.
 */
export function configToSnapshot(cfg: PorticoConfig, provider: string): Snapshot {
  const services: Snapshot['services'] = {};
  for (const name of sortedKeys(cfg.services)) services[name] = toService(name, cfg.services[name] as ServiceConfig);

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

  return { provider, services, routes: cfg.routes.map(toRoute), entrypoints };
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
