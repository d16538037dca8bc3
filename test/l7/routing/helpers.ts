/** Builders for routing tests: a table from a few route fields. */
import type { Route, RoutingTable, Service } from '../../../src/model/types.js';
import { ServiceMap } from '../../../src/model/service-map.js';

export type RouteSpec = Partial<Route> & { id: string };

export function route(spec: RouteSpec): Route {
  return {
    provider: 'test',
    entrypoint: 'web',
    host: '*',
    path: '/',
    pathMatch: 'prefix',
    service: `${spec.id}@test`,
    ...spec,
  };
}

export function svc(id: string): Service {
  const name = id.split('@')[0] as string;
  return { name, id, provider: 'test', framework: 'marathon', endpoints: [], balance: { algorithm: 'roundrobin' }, vips: [], labels: {} };
}

/** A table with the given routes; every route's service exists unless listed in `missing`. */
export function table(routes: Route[], missing: string[] = []): RoutingTable {
  const services: Record<string, Service> = {};
  for (const r of routes) if (!missing.includes(r.service)) services[r.service] = svc(r.service);
  return {
    version: 1,
    hash: 'h',
    createdAt: new Date(0).toISOString(),
    services: ServiceMap.from(services),
    routes,
    entrypoints: { web: { name: 'web', listen: '127.0.0.1:0', trustedProxies: [] } },
    vips: [],
    conflicts: [],
    warnings: [],
    sources: {},
  };
}

/** A header getter over a plain record (keys lower-case). */
export function headers(h: Record<string, string> = {}): (name: string) => string | undefined {
  return (name) => (Object.prototype.hasOwnProperty.call(h, name) ? h[name] : undefined);
}
