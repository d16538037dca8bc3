/**
 * The L7 router: a routing table's routes for one entrypoint, compiled once per table into maps and
 * radix trees so that matching a request costs the same with 10 routes or 10,000.
 *
 * Precedence (first that matches wins; a tier that has no matching route falls through to the next):
 *
 * 1. Host, most specific first:
 *    - exact host (`app.example.test`), compared case-insensitively, port stripped, trailing dot ignored;
 *      an IPv6 literal Host (`[::1]:8080`) is unbracketed (`::1`);
 *    - wildcard hosts `*.example.test`, longest suffix first. A wildcard matches ONE OR MORE labels
 *      (`a.example.test` and `a.b.example.test`, never `example.test` itself), as nginx's `*.example.org`,
 *      Envoy virtual-host suffix wildcards, Gateway API hostnames and HAProxy `hdr_end(host)` do. (TLS
 *      certificate wildcards cover only one label; the TLS side must not assume route wildcards do.)
 *      IP-literal hosts never match a wildcard;
 *    - `*`, any host (also a request without a Host header).
 * 2. Within a host: an exact path (`pathMatch: exact`) first, then prefixes, longest first. A prefix is
 *    byte-wise, as HAProxy's `path_beg` and Traefik's `PathPrefix` are: `/api` matches `/api`, `/api/x` and
 *    also `/apix` (write `/api/` to exclude `/apix`). Paths are case-sensitive and compared as given: the
 *    caller passes the path without the query, after whatever normalisation the parser does.
 * 3. At one host and path: routes with matchers (methods, headers) narrow and are tried before routes
 *    without; more matchers first, then table order. A route listing `GET` also takes `HEAD` (RFC 9110
 *    §9.3.2). Header values compare exactly (case-sensitive); a header matcher without a value asks only
 *    that the header is present.
 *
 * A router depends on the table's routes and entrypoints only: routes name their service by id, and the
 * proxy finds the service's upstreams by that id in the compiled table, so a router outlives every table
 * whose routes and entrypoints are unchanged (endpoint churn).
 *
 * Per request: one Map lookup of the raw Host value (a bounded cache of host → the host tiers to try),
 * then per tier one Map lookup for exact paths and one radix-tree walk, O(path length), for prefixes.
 * Nothing scans the routes and nothing is allocated on a cache hit. Each router counts that work as it
 * goes (`work`), so tests check what a match costs by count rather than by a stopwatch.
 */
import type { HeaderMatch, Route, RoutingTable } from '../../model/types.js';
import { normalizeHost, normalizeRouteHost } from './host.js';
import { type Chained, PrefixTree } from './prefix-tree.js';

/** Reads a request header by lower-cased name; repeated headers joined as the parser does. */
export type HeaderGetter = (lowerName: string) => string | undefined;

/** A service as a route names it: by id. */
export interface ServiceRef {
  /** `<name>@<provider>`, the route's `service`. */
  readonly id: string;
}

/** What a match gives the proxy: precompiled per route, shared by every request that matches it. */
export interface RouteMatch {
  readonly route: Route;
  /**
   * The service the route names, by id: its upstreams are the compiled table's set of that id, and no set
   * means the table has no such service (the proxy answers 503). A router holds no service, so it stays
   * valid while services come, go and change endpoints; only the table's routes and entrypoints make a
   * new one.
   */
  readonly service: ServiceRef;
  /**
   * The path to send upstream: `stripPrefix` removed (if the path starts with it), then `addPrefix` put in
   * front, with exactly one leading `/` (as Traefik's StripPrefix/AddPrefix do: strip `/api` from `/apix`
   * gives `/x`). Returns `path` itself when the route rewrites nothing. Pass the path without the query.
   */
  rewrite(path: string): string;
}

/**
 * The work match() has done since the router was compiled, counted (a few integer increments per match):
 * what tests use to show that a match costs the same with 100 routes or 10,000.
 */
export interface MatchWork {
  /** match() calls. */
  matches: number;
  /** Host values not in the host cache, resolved to their tiers (one Map lookup per label). */
  hostsResolved: number;
  /** Host tiers tried: the exact host, wildcard suffixes, `*`. */
  tiers: number;
  /** Route groups tried: an exact path's, the longest prefix's and each shorter prefix's fallen through to. */
  groups: number;
  /** Routes whose methods and headers were compared. */
  routes: number;
  /** Radix-tree edges followed looking for the longest prefix. */
  edges: number;
}

export interface CompiledRouter {
  readonly entrypoint: string;
  /** Number of routes compiled. */
  readonly size: number;
  /** Work done by match() so far (counts only grow). */
  readonly work: Readonly<MatchWork>;
  match(host: string, path: string, method: string, getHeader: HeaderGetter): RouteMatch | undefined;
  /** Every compiled route, table order (admin views, TLS name lists). */
  routes(): readonly RouteMatch[];
}

/** Most Host values a router remembers (host → tiers); beyond it the cache starts over. */
export const HOST_CACHE_SIZE = 1024;

class CompiledRoute implements RouteMatch {
  readonly specificity: number;
  private readonly methods: ReadonlySet<string> | undefined;
  private readonly headerNames: readonly string[];
  private readonly headerValues: ReadonlyArray<string | undefined>;
  private readonly strip: string;
  private readonly add: string;

  readonly service: ServiceRef;

  constructor(
    readonly route: Route,
    readonly order: number,
  ) {
    this.service = { id: route.service };
    const methods = route.methods && route.methods.length > 0 ? new Set(route.methods.map((m) => m.toUpperCase())) : undefined;
    if (methods?.has('GET')) methods.add('HEAD');
    this.methods = methods;
    const headers: readonly HeaderMatch[] = route.headers ?? [];
    this.headerNames = headers.map((h) => h.name.toLowerCase());
    this.headerValues = headers.map((h) => h.value);
    this.specificity = (methods ? 1 : 0) + headers.length;
    this.strip = route.stripPrefix ?? '';
    this.add = route.addPrefix ?? '';
  }

  matches(method: string, getHeader: HeaderGetter): boolean {
    if (this.methods !== undefined && !this.methods.has(method)) return false;
    const names = this.headerNames;
    for (let i = 0; i < names.length; i++) {
      const got = getHeader(names[i] as string);
      if (got === undefined) return false;
      const want = this.headerValues[i];
      if (want !== undefined && got !== want) return false;
    }
    return true;
  }

  rewrite(path: string): string {
    let p = path;
    const strip = this.strip;
    if (strip !== '' && p.startsWith(strip)) {
      p = p.slice(strip.length);
      if (p.charCodeAt(0) !== 0x2f /* / */) p = '/' + p;
    }
    const add = this.add;
    if (add !== '') {
      if (add.charCodeAt(add.length - 1) === 0x2f) p = add + p.slice(1);
      else p = add + p;
    }
    return p;
  }
}

/** Routes at one (host, path, pathMatch), most specific first. */
class RouteGroup implements Chained<RouteGroup> {
  parent: RouteGroup | undefined = undefined;
  readonly routes: CompiledRoute[] = [];

  match(method: string, getHeader: HeaderGetter, work: MatchWork): CompiledRoute | undefined {
    const routes = this.routes;
    work.groups++;
    for (let i = 0; i < routes.length; i++) {
      const r = routes[i] as CompiledRoute;
      work.routes++;
      if (r.matches(method, getHeader)) return r;
    }
    return undefined;
  }

  sort(): void {
    this.routes.sort((a, b) => b.specificity - a.specificity || a.order - b.order);
  }
}

/** Everything routed for one host pattern. */
class HostNode {
  readonly exact = new Map<string, RouteGroup>();
  readonly prefixes = new PrefixTree<RouteGroup>();

  add(route: CompiledRoute): void {
    const path = route.route.path;
    let group = route.route.pathMatch === 'exact' ? this.exact.get(path) : this.prefixes.get(path);
    if (!group) {
      group = new RouteGroup();
      if (route.route.pathMatch === 'exact') this.exact.set(path, group);
      else this.prefixes.set(path, group);
    }
    group.routes.push(route);
  }

  /** Sort exact groups and chain prefix groups; prefix groups are sorted by the router, which knows them. */
  seal(): void {
    for (const g of this.exact.values()) g.sort();
    this.prefixes.seal();
  }

  match(path: string, method: string, getHeader: HeaderGetter, work: MatchWork): CompiledRoute | undefined {
    if (this.exact.size !== 0) {
      const g = this.exact.get(path);
      if (g !== undefined) {
        const r = g.match(method, getHeader, work);
        if (r !== undefined) return r;
      }
    }
    let g = this.prefixes.longest(path, work);
    while (g !== undefined) {
      const r = g.match(method, getHeader, work);
      if (r !== undefined) return r;
      g = g.parent;
    }
    return undefined;
  }
}

const NO_TIERS: readonly HostNode[] = [];

class Router implements CompiledRouter {
  private readonly exactHosts = new Map<string, HostNode>();
  /** Keyed by the suffix after `*.`: `*.example.test` → `example.test`. */
  private readonly wildcards = new Map<string, HostNode>();
  private anyHost: HostNode | undefined = undefined;
  private readonly compiled: CompiledRoute[] = [];
  private readonly cache = new Map<string, readonly HostNode[]>();
  private readonly anyOnly: readonly HostNode[];
  readonly work: MatchWork = { matches: 0, hostsResolved: 0, tiers: 0, groups: 0, routes: 0, edges: 0 };

  constructor(
    readonly entrypoint: string,
    routes: readonly Route[],
  ) {
    const prefixGroups = new Set<RouteGroup>();
    for (const route of routes) {
      const cr = new CompiledRoute(route, this.compiled.length);
      this.compiled.push(cr);
      const host = normalizeRouteHost(route.host);
      let node: HostNode | undefined;
      if (host === '*') node = this.anyHost ??= new HostNode();
      else if (host.startsWith('*.')) node = getOrAdd(this.wildcards, host.slice(2));
      else node = getOrAdd(this.exactHosts, host);
      node.add(cr);
      if (route.pathMatch !== 'exact') prefixGroups.add(node.prefixes.get(route.path) as RouteGroup);
    }
    for (const g of prefixGroups) g.sort();
    for (const n of this.exactHosts.values()) n.seal();
    for (const n of this.wildcards.values()) n.seal();
    this.anyHost?.seal();
    this.anyOnly = this.anyHost ? [this.anyHost] : NO_TIERS;
  }

  get size(): number {
    return this.compiled.length;
  }

  routes(): readonly RouteMatch[] {
    return this.compiled;
  }

  match(host: string, path: string, method: string, getHeader: HeaderGetter): RouteMatch | undefined {
    const work = this.work;
    work.matches++;
    let tiers = this.cache.get(host);
    if (tiers === undefined) tiers = this.resolve(host);
    for (let i = 0; i < tiers.length; i++) {
      work.tiers++;
      const r = (tiers[i] as HostNode).match(path, method, getHeader, work);
      if (r !== undefined) return r;
    }
    return undefined;
  }

  /** The host tiers to try for a raw Host value, most specific first; cached. */
  private resolve(raw: string): readonly HostNode[] {
    this.work.hostsResolved++;
    const { name, ip } = normalizeHost(raw);
    let tiers: readonly HostNode[];
    const exact = name === '' ? undefined : this.exactHosts.get(name);
    if (exact === undefined && (ip || this.wildcards.size === 0)) {
      tiers = this.anyOnly;
    } else {
      const list: HostNode[] = [];
      if (exact) list.push(exact);
      if (!ip && this.wildcards.size !== 0) {
        // Longest suffix first: drop one leading label at a time.
        for (let dot = name.indexOf('.'); dot >= 0; dot = name.indexOf('.', dot + 1)) {
          const w = this.wildcards.get(name.slice(dot + 1));
          if (w) list.push(w);
        }
      }
      if (this.anyHost) list.push(this.anyHost);
      tiers = list;
    }
    if (this.cache.size >= HOST_CACHE_SIZE) this.cache.clear();
    this.cache.set(raw, tiers);
    return tiers;
  }
}

function getOrAdd(map: Map<string, HostNode>, key: string): HostNode {
  let n = map.get(key);
  if (!n) map.set(key, (n = new HostNode()));
  return n;
}

/** Compile the routes of `table` served on `entrypoint`. */
export function compileRouter(table: Pick<RoutingTable, 'routes'>, entrypoint: string): CompiledRouter {
  return new Router(
    entrypoint,
    table.routes.filter((r) => r.entrypoint === entrypoint),
  );
}

/**
 * One router per entrypoint: every entrypoint the table defines (empty if it has no routes) and every
 * entrypoint a route names. Routes are grouped in one pass.
 */
export function compileRouters(table: Pick<RoutingTable, 'routes' | 'entrypoints'>): Map<string, CompiledRouter> {
  const byEntrypoint = new Map<string, Route[]>();
  for (const name of Object.keys(table.entrypoints)) byEntrypoint.set(name, []);
  for (const r of table.routes) {
    let list = byEntrypoint.get(r.entrypoint);
    if (!list) byEntrypoint.set(r.entrypoint, (list = []));
    list.push(r);
  }
  const out = new Map<string, CompiledRouter>();
  for (const [name, routes] of byEntrypoint) out.set(name, new Router(name, routes));
  return out;
}
