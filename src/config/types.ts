/**
 * The typed, validated form of the config file (config/portico.yaml), as `parseConfigText` returns it:
 * the decoded value of `configSettings` (schema.ts) — defaults applied, durations in milliseconds
 * (`...Ms`), sizes in bytes (`...Bytes`), addresses and CIDRs normalised (IPv4 dotted quad, IPv6 RFC 5952,
 * listen addresses `host:port` / `[v6]:port`), hosts lower-cased, relative certificate paths resolved.
 * Names (services, entrypoints, frameworks, VIP names) are kept as written; the snapshot normalises them
 * for DNS. Objects returned by the loader are deep-frozen.
 *
 * These types are derived from the definitions, never written by hand: a key added to a definition is in
 * the type, the schema, the defaults and docs/config.md at once.
 */
import type { DnsPlaneConfig } from '../dns/settings.js';
import type { ValueOf } from '../model/settings.js';
import type { Endpoint, HealthCheck, Route, Vip } from '../model/types.js';
import type { configSettings } from './schema.js';

export type PorticoConfig = ValueOf<typeof configSettings>;

export type ApiConfig = PorticoConfig['api'];
/** An L7 listener. */
export type EntrypointConfig = PorticoConfig['entrypoints'][string];
export type EntrypointTlsConfig = NonNullable<EntrypointConfig['tls']>;
/** The whole `dns:` section: the server and its engine options. */
export type DnsSectionConfig = PorticoConfig['dns'];
/** What the DNS plane must be given of the `dns:` section (listen, upstreams, allowRecursionFrom, ttlMs; the rest defaults). */
export type DnsConfig = DnsPlaneConfig;
/** Settings of the L7 engine; per-route `timeouts` and `maxBody` override the matching ones. */
export type L7Config = PorticoConfig['l7'];
/** Settings of the L4 engine. */
export type L4Config = PorticoConfig['l4'];
/** Overlay networks and their IPAM (src/overlay). */
export type OverlayConfig = PorticoConfig['overlay'];
export type VipsConfig = PorticoConfig['vips'];
export type ServiceConfig = PorticoConfig['services'][string];
/**
 * A route as the file gives it: the model's Route without the ids the aggregator adds. Here `host` is
 * lower-cased, `methods` upper-cased, header names lower-cased, `service` the provider-local name (a key
 * of `services`), and `timeouts` only the ones the file sets (a missing one is the L7 default).
 */
export type RouteConfig = PorticoConfig['routes'][number];
export type MarathonConfig = NonNullable<PorticoConfig['marathon']>;
export type ConsulConfig = NonNullable<PorticoConfig['consul']>;
export type AppsConfig = PorticoConfig['apps'];

/**
 * Where the file has the exact shape of the routing model, the decoded type must be assignable to the
 * model's type, so the snapshot translation is a copy, not a second interpretation. A definition that
 * drifts from the model fails to compile here.
 */
export type ModelShapes = [
  Assignable<ServiceConfig['endpoints'][number], Endpoint>,
  Assignable<NonNullable<ServiceConfig['health']>, HealthCheck>,
  Assignable<ServiceConfig['vips'][number], Vip>,
  Assignable<RouteConfig, Omit<Route, 'id' | 'provider'>>,
];
type Assignable<A extends B, B> = [A, B];
