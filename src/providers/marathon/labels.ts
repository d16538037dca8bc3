/**
 * marathon-lb's reading of an app: its `HAPROXY_*` labels (parsed; the ones Portico implements, the
 * ones it knows and does not, and the rest, reported as typos), the port's Marathon health check as
 * HAProxy's `check`, and what a served port becomes: its balance, its vhost routes and its service
 * port's frontend.
 *
 * marathon-lb labels (only on ports this instance serves: `HAPROXY_{n}_GROUP`, else `HAPROXY_GROUP`,
 * comma lists, must meet the configured groups; `*` in the config serves all; an app with no group is
 * not served by a group-filtered instance) — and `HAPROXY_{n}_ENABLED` (`--strict-mode` makes it required):
 * - VHOST (comma list, lower-cased) × PATH (space list of `path_beg` prefixes; default `/`) → prefix
 *   routes on the http entrypoint (`web`) and the https one (`websecure`), as marathon-lb fills its :80
 *   and :443 frontends. REDIRECT_TO_HTTPS → the http routes redirect. USE_HSTS → `hsts` max-age 15768000
 *   (marathon-lb's template, no includeSubDomains/preload). AUTH `realm:user:crypt-hash` → `basicAuth`.
 *   BACKEND_NETWORK_ALLOWED_ACL (space list of IPs/CIDRs) → `allowFrom`. HTTP_BACKEND_PROXYPASS_PATH →
 *   `stripPrefix` (marathon-lb's `reqirep "^([^ :]*)\ <path>/?(.*)" "\1\ /\2"`: the prefix goes, one `/`
 *   stays). BACKEND_WEIGHT: marathon-lb orders `use_backend` lines by it; Portico's router orders by
 *   specificity (longest path first), so it only decides which app wins an identical host+path claim
 *   (routes are emitted heaviest first; the aggregator serves the first claim and reports the conflict).
 * - The service port: every served port with a service port (`HAPROXY_{n}_PORT`, else Marathon's
 *   servicePort) > 0 is bound, on `HAPROXY_{n}_BIND_ADDR` (`*` = 0.0.0.0; default `defaultBindAddress`),
 *   as marathon-lb binds a frontend per service port. MODE (`HAPROXY_{n}_MODE`, else http when the
 *   port's health check is HTTP or a VHOST is set, else tcp): tcp → an IP VIP {bindAddr, port} for the
 *   L4 plane; http → an entrypoint `marathon-<port>` of its own with a catch-all route; SSL_CERT (a PEM
 *   holding certificate and key, HAProxy's `crt`) makes that entrypoint TLS, as marathon-lb puts
 *   `ssl crt <path>` on the service port's bind.
 * - BALANCE roundrobin|static-rr → roundrobin, leastconn → leastconn, source → hash(ip), random → p2c
 *   (HAProxy's `random` draws two), hdr(NAME) → hash(header NAME); STICKY → sticky, cookie
 *   `mesosphere_server_id` (marathon-lb's cookie). The port's Marathon health check becomes the service's
 *   active check as marathon-lb's `check inter <interval>s fall <maxConsecutiveFailures+1>` (HTTP path for
 *   HTTP/MESOS_HTTP; TCP connect for TCP/MESOS_TCP and — no TLS check in the model — HTTPS/MESOS_HTTPS;
 *   none for COMMAND or a check on a fixed `port`).
 * - Anything else named `HAPROXY_*` (template overrides, BIND_OPTIONS, HTTP_BACKEND_REVPROXY_PATH,
 *   HTTP_BACKEND_REDIR, BACKEND_HEALTHCHECK_PORT_INDEX, HAPROXY_DEPLOYMENT_*…) is reported per app, never
 *   silently ignored; so are values Portico cannot honour.
 */
import { isValidRouteHost } from '../../model/names.js';
import { formatListen, parseAddress, parseCidr } from '../../model/parse.js';
import type { Balance, Entrypoint, HealthCheck, RouteBasicAuth, Service, Snapshot } from '../../model/types.js';
import { isPort, type MarathonHealthCheck } from './json.js';
import type { PortSpec } from './ports.js';

type SnapshotRoute = Snapshot['routes'][number];

/** What the marathon-lb rules read of the translation options (resolved). */
export interface LbSettings {
  /** Provider name: route ids start with it. */
  provider: string;
  groups: ReadonlySet<string>;
  allGroups: boolean;
  httpEntrypoint: string | null;
  httpsEntrypoint: string | null;
  defaultBindAddress: string;
  bindServicePorts: boolean;
}

/** Where a served port's routes, entrypoints and warnings go (an app's translation). */
export interface LbOutput {
  routes: Array<{ weight: number; route: SnapshotRoute }>;
  entrypoints: Entrypoint[];
  warnings: string[];
}

/** marathon-lb's fixed values that Portico copies. */
export const MARATHON_LB = {
  /** marathon-lb's sticky cookie (HAPROXY_BACKEND_STICKY_OPTIONS). */
  stickyCookie: 'mesosphere_server_id',
  /** marathon-lb's HAPROXY_BACKEND_HSTS_OPTIONS: `Strict-Transport-Security: max-age=15768000`. */
  hstsMaxAgeS: 15_768_000,
  /** HAProxy's default `rise`. */
  rise: 2,
} as const;

// ---------------------------------------------------------------------------------------------------
// Labels

/** The per-port labels Portico implements (`HAPROXY_{n}_<NAME>`), as given. */
export interface PortLabels {
  vhost?: string;
  path?: string;
  port?: string;
  bindAddr?: string;
  mode?: string;
  balance?: string;
  sticky?: string;
  redirectToHttps?: string;
  sslCert?: string;
  useHsts?: string;
  auth?: string;
  enabled?: string;
  backendWeight?: string;
  proxyPass?: string;
  group?: string;
  networkAllowed?: string;
}

/** `<NAME>` of `HAPROXY_{n}_<NAME>` → its field. */
const PORT_LABEL_FIELD: Record<string, keyof PortLabels> = {
  VHOST: 'vhost',
  PATH: 'path',
  PORT: 'port',
  BIND_ADDR: 'bindAddr',
  MODE: 'mode',
  BALANCE: 'balance',
  STICKY: 'sticky',
  REDIRECT_TO_HTTPS: 'redirectToHttps',
  SSL_CERT: 'sslCert',
  USE_HSTS: 'useHsts',
  AUTH: 'auth',
  ENABLED: 'enabled',
  BACKEND_WEIGHT: 'backendWeight',
  HTTP_BACKEND_PROXYPASS_PATH: 'proxyPass',
  GROUP: 'group',
  BACKEND_NETWORK_ALLOWED_ACL: 'networkAllowed',
};

export interface ParsedLabels {
  groups: string[];
  ports: Map<number, PortLabels>;
  /** Labels Portico does not implement, by name. */
  unsupported: string[];
  /** Labels that are not marathon-lb's at all (typos). */
  unknown: string[];
}

/** Known marathon-lb per-port labels that Portico does not implement (template overrides and options). */
const KNOWN_UNSUPPORTED_PORT =
  /^(BIND_OPTIONS|HTTP_BACKEND_REVPROXY_PATH|HTTP_BACKEND_REDIR|BACKEND_HEALTHCHECK_PORT_INDEX|FRONTEND_HEAD|USERLIST_HEAD|BACKEND_HEAD|BACKEND_REDIRECT_HTTP_TO_HTTPS(_WITH_PATH)?|(MAP_)?HTTPS?_FRONTEND_(ACL|ROUTING|APPID|AUTH)\w*|BACKEND_HTTP_OPTIONS|BACKEND_(HTTP|TCP)_HEALTHCHECK_OPTIONS|BACKEND_STICKY_OPTIONS|BACKEND_SERVER_\w*|FRONTEND_BACKEND_GLUE|HTTP_BACKEND_(PROXYPASS|REVPROXY)_GLUE|BACKEND_HSTS_OPTIONS|(HTTP|TCP)_BACKEND_NETWORK_ALLOWED_ACL)$/;

/** An app's `HAPROXY_*` labels: the groups, per-port labels by port index, and what is not implemented or not known. */
export function parseLabels(labels: Record<string, string>): ParsedLabels {
  const out: ParsedLabels = { groups: [], ports: new Map(), unsupported: [], unknown: [] };
  for (const key in labels) {
    if (key.charCodeAt(0) !== 0x48 /* H */ || !key.startsWith('HAPROXY_')) continue;
    const value = labels[key] as string;
    if (key === 'HAPROXY_GROUP') {
      out.groups = splitGroups(value);
      continue;
    }
    const m = /^HAPROXY_(\d+)_(.+)$/.exec(key);
    if (m) {
      const n = Number(m[1]);
      const rest = m[2] as string;
      const field = PORT_LABEL_FIELD[rest];
      if (field) {
        let p = out.ports.get(n);
        if (!p) out.ports.set(n, (p = {}));
        p[field] = value;
      } else if (KNOWN_UNSUPPORTED_PORT.test(rest)) {
        out.unsupported.push(key);
      } else {
        out.unknown.push(key);
      }
      continue;
    }
    if (key.startsWith('HAPROXY_DEPLOYMENT_') || key === 'HAPROXY_APP_ID') out.unsupported.push(key);
    else out.unknown.push(key);
  }
  return out;
}

export function splitGroups(v: string): string[] {
  return v
    .split(',')
    .map((g) => g.trim())
    .filter((g) => g !== '');
}

/** Whether this instance serves a port in `groups` (its HAPROXY_{n}_GROUP, else the app's HAPROXY_GROUP). */
export function served(groups: string[], r: LbSettings): boolean {
  if (r.allGroups) return true;
  for (const g of groups) if (r.groups.has(g)) return true;
  return false;
}

/** marathon-lb's string_to_bool. */
export function truthy(s: string): boolean {
  const l = s.trim().toLowerCase();
  return l === 'true' || l === 't' || l === 'yes' || l === 'y';
}

// ---------------------------------------------------------------------------------------------------
// Health

/** The health check of port `portIndex`, as marathon-lb's get_health_check picks it. */
export function healthCheckFor(
  checks: MarathonHealthCheck[],
  portIndex: number,
): { check: MarathonHealthCheck; index: number } | undefined {
  // marathon-lb get_health_check: the first check with a `port`, or whose portIndex is this port's.
  // Marathon defaults portIndex to 0 when neither is given.
  for (let i = 0; i < checks.length; i++) {
    const c = checks[i] as MarathonHealthCheck;
    if (typeof c.port === 'number' && c.port > 0) return { check: c, index: i };
    const pi = typeof c.portIndex === 'number' ? c.portIndex : 0;
    if (pi === portIndex) return { check: c, index: i };
  }
  return undefined;
}

function protocolOf(c: MarathonHealthCheck): string {
  return typeof c.protocol === 'string' ? c.protocol.toUpperCase() : 'HTTP';
}

/** The active check a Marathon health check becomes (marathon-lb's `check` line), or why there is none. */
export function activeCheck(c: MarathonHealthCheck): HealthCheck | string {
  const protocol = protocolOf(c);
  if (protocol === 'COMMAND') return "a COMMAND health check cannot be run by a load balancer; Marathon's results alone decide";
  if (typeof c.port === 'number' && c.port > 0)
    return `the health check probes fixed port ${c.port}; Portico probes endpoints on their own port, so Marathon's results alone decide`;
  const num = (v: unknown, d: number): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : d);
  const check: HealthCheck = {
    expectStatus: [200, 399],
    intervalMs: Math.max(1, Math.round(num(c.intervalSeconds, 60) * 1000)),
    timeoutMs: Math.max(1, Math.round(num(c.timeoutSeconds, 20) * 1000)),
    rise: MARATHON_LB.rise,
    fall: Math.round(num(c.maxConsecutiveFailures, 3)) + 1,
  };
  if (protocol === 'HTTP' || protocol === 'MESOS_HTTP')
    check.httpPath = typeof c.path === 'string' && c.path.startsWith('/') ? c.path : '/';
  return check;
}

// ---------------------------------------------------------------------------------------------------
// A served port

/** A served port's selection from STICKY and BALANCE; a value Portico cannot honour warns and gives roundrobin. */
export function balanceOf(pl: PortLabels, i: number, warnings: string[]): Balance {
  if (pl.sticky !== undefined && truthy(pl.sticky)) return { algorithm: 'sticky', cookie: MARATHON_LB.stickyCookie };
  if (pl.balance === undefined) return { algorithm: 'roundrobin' };
  const b = pl.balance.trim();
  const lower = b.toLowerCase();
  if (lower === 'roundrobin' || lower === 'static-rr') return { algorithm: 'roundrobin' };
  if (lower === 'leastconn') return { algorithm: 'leastconn' };
  if (lower === 'source') return { algorithm: 'hash', hashOn: { kind: 'ip' } };
  if (lower === 'random' || lower === 'random(2)') return { algorithm: 'p2c' };
  const hdr = /^hdr\(([!#$%&'*+.^_`|~0-9A-Za-z-]+)\)$/i.exec(b);
  if (hdr) return { algorithm: 'hash', hashOn: { kind: 'header', name: (hdr[1] as string).toLowerCase() } };
  warnings.push(
    `port ${i}: HAPROXY_${i}_BALANCE="${b}" is not supported (roundrobin, static-rr, leastconn, source, random, hdr(name)); using roundrobin`,
  );
  return { algorithm: 'roundrobin' };
}

/** marathon-lb's frontends and vhost ACLs for one served port. */
export function lbPort(
  name: string,
  spec: PortSpec,
  pl: PortLabels,
  hc: MarathonHealthCheck | undefined,
  r: LbSettings,
  service: Pick<Service, 'vips'>,
  out: LbOutput,
): void {
  const i = spec.index;
  const w = out.warnings;

  // Mode: the label, else http for an HTTP health check or a VHOST, else tcp.
  let mode: 'http' | 'tcp' | undefined;
  if (pl.mode !== undefined) {
    const m = pl.mode.trim().toLowerCase();
    if (m === 'http' || m === 'tcp') mode = m;
    else w.push(`port ${i}: HAPROXY_${i}_MODE="${pl.mode}" is neither http nor tcp; ignored`);
  }
  const vhosts =
    pl.vhost !== undefined
      ? pl.vhost
          .split(',')
          .map((h) => h.trim().toLowerCase())
          .filter((h) => h !== '')
      : [];
  if (mode === undefined) {
    const p = hc ? protocolOf(hc) : '';
    mode = p === 'HTTP' || p === 'MESOS_HTTP' || vhosts.length > 0 ? 'http' : 'tcp';
  }
  if (mode === 'tcp' && vhosts.length > 0)
    w.push(`port ${i}: HAPROXY_${i}_MODE=tcp with a VHOST: the vhost routes are served over HTTP anyway, the service port as TCP`);

  // Route attributes shared by every route of this port.
  const attrs: Partial<SnapshotRoute> = {};
  if (pl.proxyPass !== undefined && pl.proxyPass.trim() !== '') {
    const p = pl.proxyPass.trim();
    if (p.startsWith('/')) attrs.stripPrefix = p;
    else w.push(`port ${i}: HAPROXY_${i}_HTTP_BACKEND_PROXYPASS_PATH="${p}" does not start with "/"; ignored`);
  }
  if (pl.useHsts !== undefined && truthy(pl.useHsts))
    attrs.hsts = { maxAgeS: MARATHON_LB.hstsMaxAgeS, includeSubdomains: false, preload: false };
  if (pl.auth !== undefined) {
    const a = basicAuthOf(pl.auth);
    if (typeof a === 'string') {
      // Fail closed: an app that asked for authentication is not published without it.
      w.push(`port ${i}: HAPROXY_${i}_AUTH ${a}; the port is not load-balanced (fail closed)`);
      return;
    }
    attrs.basicAuth = a;
  }
  if (pl.networkAllowed !== undefined) {
    const cidrs: string[] = [];
    for (const tok of pl.networkAllowed.split(/\s+/)) {
      if (tok === '') continue;
      const c = parseCidr(tok);
      if (c.ok) cidrs.push(c.value);
      else
        w.push(
          `port ${i}: HAPROXY_${i}_BACKEND_NETWORK_ALLOWED_ACL entry "${tok}" is not an IP or CIDR; left out (the others are still the only ones allowed)`,
        );
    }
    attrs.allowFrom = cidrs;
  }

  let weight = vhosts.length > 0 && pl.path !== undefined ? 1 : 0;
  if (pl.backendWeight !== undefined) {
    const bw = Number(pl.backendWeight.trim());
    if (Number.isInteger(bw)) weight = bw;
    else w.push(`port ${i}: HAPROXY_${i}_BACKEND_WEIGHT="${pl.backendWeight}" is not an integer; ignored`);
  }

  // VHOST × PATH routes on the http and https entrypoints.
  const paths: string[] = [];
  if (pl.path !== undefined) {
    let caseless = false;
    for (const tok of pl.path.trim().split(/\s+/)) {
      if (tok === '') continue;
      if (tok === '-i') caseless = true;
      else if (tok.startsWith('-')) w.push(`port ${i}: HAPROXY_${i}_PATH flag "${tok}" is not supported; ignored`);
      else if (tok.startsWith('/')) {
        if (!paths.includes(tok)) paths.push(tok);
      } else w.push(`port ${i}: HAPROXY_${i}_PATH entry "${tok}" does not start with "/"; ignored`);
    }
    if (caseless) w.push(`port ${i}: HAPROXY_${i}_PATH "-i" (case-insensitive paths) is not supported; paths match case-sensitively`);
    if (vhosts.length === 0) w.push(`port ${i}: HAPROXY_${i}_PATH needs a HAPROXY_${i}_VHOST (as in marathon-lb); ignored`);
  }
  if (paths.length === 0) paths.push('/');
  const redirect = pl.redirectToHttps !== undefined && truthy(pl.redirectToHttps);
  if (redirect && vhosts.length === 0)
    w.push(`port ${i}: HAPROXY_${i}_REDIRECT_TO_HTTPS needs a HAPROXY_${i}_VHOST (as in marathon-lb); ignored`);
  if (vhosts.length > 0 && r.httpEntrypoint === null && r.httpsEntrypoint === null)
    w.push(`port ${i}: HAPROXY_${i}_VHOST is set but this instance binds no http/https entrypoint for vhosts`);
  for (const host of vhosts) {
    if (!isValidRouteHost(host)) {
      w.push(`port ${i}: VHOST "${host}" is not a valid host name; ignored`);
      continue;
    }
    for (const path of paths) {
      if (r.httpEntrypoint !== null) {
        const route = makeRoute(r, name, r.httpEntrypoint, host, path, attrs);
        if (redirect) route.redirectToHttps = true;
        out.routes.push({ weight, route });
      }
      if (r.httpsEntrypoint !== null) out.routes.push({ weight, route: makeRoute(r, name, r.httpsEntrypoint, host, path, attrs) });
    }
  }

  // The service port's own frontend.
  let servicePort = spec.servicePort;
  if (pl.port !== undefined) {
    const p = Number(pl.port.trim());
    if (isPort(p)) servicePort = p;
    else w.push(`port ${i}: HAPROXY_${i}_PORT="${pl.port}" is not a port; ignored`);
  }
  let bindAddr = r.defaultBindAddress;
  if (pl.bindAddr !== undefined) {
    const b = pl.bindAddr.trim();
    if (b === '*' || b === '') bindAddr = '0.0.0.0';
    else {
      const a = parseAddress(b);
      if (a.ok) bindAddr = a.value;
      else {
        w.push(`port ${i}: HAPROXY_${i}_BIND_ADDR="${b}" is not an IP address; the service port is not bound`);
        servicePort = 0;
      }
    }
  }
  const sslCert = pl.sslCert !== undefined && pl.sslCert.trim() !== '' ? pl.sslCert.trim() : undefined;
  if (!r.bindServicePorts || servicePort === 0) {
    if (sslCert !== undefined)
      w.push(
        `port ${i}: HAPROXY_${i}_SSL_CERT applies to the service port's frontend, which is not bound here${servicePort === 0 ? ' (no service port)' : ''}`,
      );
    return;
  }
  if (mode === 'tcp') {
    if (!spec.protocols.includes('tcp')) {
      w.push(`port ${i}: a udp-only port cannot have a marathon-lb frontend (HAProxy is TCP); service port ${servicePort} not bound`);
      return;
    }
    if (sslCert !== undefined)
      w.push(`port ${i}: HAPROXY_${i}_SSL_CERT on a tcp service port (TLS termination at L4) is not supported; served as plain TCP`);
    if (attrs.allowFrom !== undefined) {
      // Fail closed: L4 VIPs have no source filter, and this port asked for one.
      w.push(
        `port ${i}: HAPROXY_${i}_BACKEND_NETWORK_ALLOWED_ACL on a tcp service port cannot be enforced (L4 VIPs have no source filter); service port ${servicePort} not bound`,
      );
      return;
    }
    service.vips.push({ address: bindAddr, port: servicePort, protocol: 'tcp' });
    return;
  }
  const ep: Entrypoint = {
    name: `marathon-${servicePort}`,
    listen: formatListen({ host: bindAddr, port: servicePort }),
    trustedProxies: [],
  };
  if (sslCert !== undefined) ep.tls = { auto: false, certificates: [{ certFile: sslCert, keyFile: sslCert }] };
  out.entrypoints.push(ep);
  out.routes.push({ weight, route: makeRoute(r, name, ep.name, '*', '/', attrs) });
}

function makeRoute(
  r: LbSettings,
  service: string,
  entrypoint: string,
  host: string,
  path: string,
  attrs: Partial<SnapshotRoute>,
): SnapshotRoute {
  const route: SnapshotRoute = {
    entrypoint,
    host,
    path,
    pathMatch: 'prefix',
    service,
    id: `${r.provider}/${service}/${entrypoint}/${host}${path}`,
  };
  if (attrs.stripPrefix !== undefined) route.stripPrefix = attrs.stripPrefix;
  if (attrs.hsts !== undefined) route.hsts = { ...attrs.hsts };
  if (attrs.basicAuth !== undefined)
    route.basicAuth = { realm: attrs.basicAuth.realm, users: attrs.basicAuth.users.map((u) => ({ ...u })) };
  if (attrs.allowFrom !== undefined) route.allowFrom = [...attrs.allowFrom];
  return route;
}

/** `realm:user:crypt-hash` (marathon-lb splits on `:` into exactly three). */
function basicAuthOf(v: string): RouteBasicAuth | string {
  const parts = v.split(':');
  if (parts.length !== 3) return 'is not "realm:user:encrypted-password"';
  const [realm, user, hash] = parts as [string, string, string];
  if (user === '' || hash === '') return 'has an empty user or password hash';
  return { realm, users: [{ user, hash }] };
}
