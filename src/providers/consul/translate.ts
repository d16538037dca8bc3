/**
 * Consul catalog → Portico snapshot parts: pure, deterministic, no I/O. The convention is documented in
 * docs/consul.md; in short:
 *
 *   tag  `portico.<key>=<value>`            (Consul tags are free text)
 *   meta `portico-<key with . as ->`: value  (Consul meta keys allow only [A-Za-z0-9_-], ≤128 chars)
 *
 * Keys are case-insensitive and `.`, `-`, `_` are the same separator, so the tag
 * `portico.http.redirectToHttps=true` and the meta entry `portico-http-redirectToHttps: "true"` are one key.
 *
 *   enable               true|false   false: the service is not published (default: `exposedByDefault`)
 *   http.host            a.example.test[,b.example.test]   one route per host (list; union over instances)
 *   http.path            /api          route path (default /)
 *   http.pathMatch       prefix|exact  (default prefix)
 *   http.entrypoint      web           (default: the provider's `entrypoint` option, `web`)
 *   http.redirectToHttps true|false
 *   http.stripPrefix     /api
 *   vip                  /db:5432[,10.0.0.9:5432]   TCP VIPs (list), dcos-l4lb syntax: `/name:port` or `ip:port`
 *   vip.udp              /dns:53                    UDP VIPs (list)
 *   balance              roundrobin|weighted|leastconn|p2c|hash(...)|sticky(...)   as the config file's `balance`
 *   framework            DNS framework for `<svc>.<framework>.mesos` (default: the provider's `framework`, `consul`)
 *
 * Consul tags and meta are per instance. List keys (http.host, vip, vip.udp) take the union over the
 * service's instances; single-valued keys take the value most instances carry (ties: the smallest). Any
 * disagreement between instances — a rolling update half done, a typo on one node — is reported as a
 * warning, never silently guessed. Within one instance a tag wins over meta for the same key.
 */
import { toFrameworkName, isValidDnsName, isValidRouteHost, splitVipLabel, toVipName } from '../../model/names.js';
import { parseAddress } from '../../model/parse.js';
import { parseBalance, parseHttpPath } from '../../config/formats.js';
import type { Balance, Endpoint, Protocol, Route, Service, Snapshot, Vip } from '../../model/types.js';
import ipaddr from 'ipaddr.js';

// ------------------------------------------------------------------------------------------------
// Consul's documented response shapes (only the fields used). /v1/health/service/:name returns an array of
// { Node, Service, Checks }; /v1/catalog/services returns { name: [tags] }.

export interface ConsulNode {
  Node: string;
  Address: string;
  Datacenter?: string;
  Meta?: Record<string, string> | null;
}

export interface ConsulServiceInstance {
  ID: string;
  Service: string;
  Tags?: string[] | null;
  Address?: string;
  Port: number;
  Meta?: Record<string, string> | null;
  Weights?: { Passing: number; Warning: number } | null;
  /** '' (or absent) for a typical service; `connect-proxy`, `mesh-gateway`, … for Connect's own. */
  Kind?: string;
}

export type ConsulCheckStatus = 'passing' | 'warning' | 'critical' | 'maintenance' | string;

export interface ConsulCheck {
  CheckID: string;
  Name?: string;
  Status: ConsulCheckStatus;
  ServiceID?: string;
  Node?: string;
}

export interface ConsulHealthEntry {
  Node: ConsulNode;
  Service: ConsulServiceInstance;
  Checks: ConsulCheck[];
}

export type ConsulCatalogServices = Record<string, string[] | null>;

// ------------------------------------------------------------------------------------------------

export interface TranslateOptions {
  /** Provider name (route ids are `<provider>/<service>/<host><path>`). */
  provider: string;
  /** Default DNS framework. */
  framework: string;
  /** Default entrypoint of HTTP routes. */
  entrypoint: string;
  /** Publish services that say nothing about `enable`. */
  exposedByDefault: boolean;
}

/**
 * What is known about one Consul service: the instances the health query returned (passing ones, or
 * passing + warning with `includeWarning`), and the catalog's tag union — the only convention source left
 * when no instance passes (the route and VIP stay, answering 503 / refusing, instead of vanishing).
 * `fallbackMeta` is the meta of the last non-empty instance set, kept for the same reason.
 */
export interface ServiceInput {
  name: string;
  entries: ConsulHealthEntry[];
  catalogTags: string[];
  fallbackMeta?: Array<Record<string, string>>;
}

export interface TranslatedService {
  /** Undefined when the service is not published (disabled, or only Connect proxies). */
  service?: Snapshot['services'][string];
  routes: Snapshot['routes'];
  warnings: string[];
  /** Why the service is not published, when it is not. */
  skipped?: string;
}

/** Consul's Connect/gateway kinds: infrastructure, not an application to route to. */
const NON_APP_KINDS = new Set(['connect-proxy', 'mesh-gateway', 'terminating-gateway', 'ingress-gateway', 'api-gateway']);

const LIST_KEYS = new Set(['http.host', 'vip', 'vip.udp']);
const SCALAR_KEYS = new Set([
  'enable',
  'http.path',
  'http.pathmatch',
  'http.entrypoint',
  'http.redirecttohttps',
  'http.stripprefix',
  'balance',
  'framework',
]);

/**
 * The convention key of a tag key or meta key (`portico.http.redirectToHttps`, `portico-http-redirectToHttps`
 * → `http.redirecttohttps`), or undefined when it is not one of ours.
 */
export function normaliseKey(raw: string): string | undefined {
  const k = raw.toLowerCase().replace(/[-_]/g, '.');
  if (!k.startsWith('portico.')) return undefined;
  return k.slice('portico.'.length);
}

/** One instance's convention values: key → values (a list key may have several). */
type InstanceConfig = Map<string, string[]>;

/** Parse one instance's tags and meta. Unknown `portico.*` keys are reported. */
function instanceConfig(tags: readonly string[], meta: Record<string, string>, unknown: Set<string>): InstanceConfig {
  const fromTags: InstanceConfig = new Map();
  const fromMeta: InstanceConfig = new Map();
  const add = (into: InstanceConfig, rawKey: string, value: string) => {
    const key = normaliseKey(rawKey);
    if (key === undefined) return;
    if (!LIST_KEYS.has(key) && !SCALAR_KEYS.has(key)) {
      unknown.add(rawKey);
      return;
    }
    const values = LIST_KEYS.has(key)
      ? value
          .split(',')
          .map((v) => v.trim())
          .filter((v) => v !== '')
      : [value.trim()];
    const prev = into.get(key);
    if (prev) prev.push(...values);
    else into.set(key, values);
  };
  for (const tag of tags) {
    const eq = tag.indexOf('=');
    if (eq <= 0) continue;
    add(fromTags, tag.slice(0, eq).trim(), tag.slice(eq + 1));
  }
  for (const [k, v] of Object.entries(meta)) add(fromMeta, k, v);
  // A tag wins over meta for the same key on one instance (tags are what `consul services register` edits most).
  const out: InstanceConfig = new Map(fromMeta);
  for (const [k, v] of fromTags) out.set(k, v);
  return out;
}

/** Merge instances: list keys → union; scalar keys → majority value. Disagreements → warnings. */
function mergeConfigs(configs: InstanceConfig[], warnings: string[]): Map<string, string[]> {
  const merged = new Map<string, string[]>();
  const keys = new Set<string>();
  for (const c of configs) for (const k of c.keys()) keys.add(k);
  for (const key of [...keys].sort()) {
    if (LIST_KEYS.has(key)) {
      const union = new Set<string>();
      const variants = new Map<string, number>();
      for (const c of configs) {
        const vs = c.get(key) ?? [];
        for (const v of vs) union.add(v);
        const sig = [...new Set(vs)].sort().join(',');
        variants.set(sig, (variants.get(sig) ?? 0) + 1);
      }
      if (variants.size > 1) {
        const desc = [...variants]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([v, n]) => `[${v}] on ${n}`)
          .join(', ');
        warnings.push(`instances disagree on portico.${key}: ${desc}; serving the union`);
      }
      merged.set(key, [...union].sort());
    } else {
      const counts = new Map<string, number>();
      let missing = 0;
      for (const c of configs) {
        const vs = c.get(key);
        if (!vs || vs.length === 0) {
          missing++;
          continue;
        }
        // One instance with several values for a single-valued key: Consul keeps no order, so each counts
        // and the disagreement is reported below.
        for (const v of new Set(vs)) counts.set(v, (counts.get(v) ?? 0) + 1);
      }
      const ranked = [...counts].sort(([a, na], [b, nb]) => nb - na || (a < b ? -1 : 1));
      const top = ranked[0];
      if (!top) continue;
      if (ranked.length > 1 || missing > 0) {
        const desc = ranked
          .map(([v, n]) => `"${v}" on ${n}`)
          .concat(missing > 0 ? [`unset on ${missing}`] : [])
          .join(', ');
        warnings.push(`instances disagree on portico.${key}: ${desc}; using "${top[0]}"`);
      }
      merged.set(key, [top[0]]);
    }
  }
  return merged;
}

function parseBool(v: string): boolean | undefined {
  const t = v.trim().toLowerCase();
  if (t === 'true' || t === '1' || t === 'yes' || t === 'on') return true;
  if (t === 'false' || t === '0' || t === 'no' || t === 'off') return false;
  return undefined;
}

/** Translate one Consul service. Never throws: bad values become warnings and are left out. */
export function translateService(input: ServiceInput, opts: TranslateOptions): TranslatedService {
  const warnings: string[] = [];
  const apps = input.entries.filter((e) => !NON_APP_KINDS.has(e.Service.Kind ?? ''));
  if (input.entries.length > 0 && apps.length === 0) {
    return { routes: [], warnings, skipped: `only Connect proxies/gateways (Kind ${input.entries[0]?.Service.Kind})` };
  }

  const unknown = new Set<string>();
  const configs: InstanceConfig[] =
    apps.length > 0
      ? apps.map((e) => instanceConfig(e.Service.Tags ?? [], e.Service.Meta ?? {}, unknown))
      : fallbackConfigs(input, unknown);
  for (const k of [...unknown].sort()) warnings.push(`unknown convention key "${k}" ignored`);
  const cfg = mergeConfigs(configs, warnings);
  const one = (key: string): string | undefined => cfg.get(key)?.[0];

  // enable
  let enabled = opts.exposedByDefault;
  const enableText = one('enable');
  if (enableText !== undefined) {
    const b = parseBool(enableText);
    if (b === undefined) warnings.push(`portico.enable="${enableText}" is not true or false; using ${enabled}`);
    else enabled = b;
  }
  if (!enabled)
    return { routes: [], warnings, skipped: enableText === undefined ? 'not enabled (exposedByDefault is false)' : 'portico.enable=false' };

  // framework
  let framework = toFrameworkName(opts.framework);
  const fwText = one('framework');
  if (fwText !== undefined) {
    const fw = toFrameworkName(fwText);
    if (fw.length > 0 && isValidDnsName(fw)) framework = fw;
    else warnings.push(`portico.framework="${fwText}" is not a valid framework name; using ${framework}`);
  }

  // balance
  let balance: Balance = { algorithm: 'roundrobin' };
  const balText = one('balance');
  if (balText !== undefined) {
    const b = parseBalance(balText);
    if (b.ok) balance = b.value;
    else warnings.push(`portico.balance: ${b.error}; using roundrobin`);
  }

  // VIPs
  const vips: Vip[] = [];
  for (const [key, protocol] of [
    ['vip', 'tcp'],
    ['vip.udp', 'udp'],
  ] as Array<[string, Protocol]>) {
    for (const text of cfg.get(key) ?? []) {
      const vip = parseVip(text, protocol);
      if (typeof vip === 'string') warnings.push(`portico.${key}="${text}": ${vip}`);
      else if (!vips.some((v) => v.protocol === vip.protocol && v.port === vip.port && v.name === vip.name && v.address === vip.address))
        vips.push(vip);
    }
  }
  // Deterministic: protocol, then name-or-address, then port.
  vips.sort((a, b) => cmp(a.protocol, b.protocol) || cmp(a.name ?? a.address ?? '', b.name ?? b.address ?? '') || a.port - b.port);

  // Endpoints
  const endpoints = toEndpoints(apps, warnings);

  // Routes
  const routes: Snapshot['routes'] = [];
  const hosts: string[] = [];
  for (const h of cfg.get('http.host') ?? []) {
    const host = h.toLowerCase();
    if (isValidRouteHost(host)) {
      if (!hosts.includes(host)) hosts.push(host);
    } else {
      warnings.push(`portico.http.host="${h}" is not a valid host (a DNS name, "*.example.test" or "*"); left out`);
    }
  }
  if (hosts.length > 0) {
    let path = '/';
    const pathText = one('http.path');
    if (pathText !== undefined) {
      const p = parseHttpPath(pathText);
      if (p.ok) path = p.value;
      else warnings.push(`portico.http.path: ${p.error}; using /`);
    }
    let pathMatch: Route['pathMatch'] = 'prefix';
    const pmText = one('http.pathmatch');
    if (pmText !== undefined) {
      const pm = pmText.toLowerCase();
      if (pm === 'prefix' || pm === 'exact') pathMatch = pm;
      else warnings.push(`portico.http.pathMatch="${pmText}" is not prefix or exact; using prefix`);
    }
    const entrypoint = one('http.entrypoint') ?? opts.entrypoint;
    let redirectToHttps: boolean | undefined;
    const rText = one('http.redirecttohttps');
    if (rText !== undefined) {
      redirectToHttps = parseBool(rText);
      if (redirectToHttps === undefined) warnings.push(`portico.http.redirectToHttps="${rText}" is not true or false; ignored`);
    }
    let stripPrefix: string | undefined;
    const sText = one('http.stripprefix');
    if (sText !== undefined) {
      const p = parseHttpPath(sText);
      if (p.ok) stripPrefix = p.value;
      else warnings.push(`portico.http.stripPrefix: ${p.error}; ignored`);
    }
    for (const host of hosts.sort()) {
      const route: Snapshot['routes'][number] = {
        id: `${opts.provider}/${input.name}/${host}${path}`,
        entrypoint,
        host,
        path,
        pathMatch,
        service: input.name,
      };
      if (stripPrefix !== undefined) route.stripPrefix = stripPrefix;
      if (redirectToHttps !== undefined) route.redirectToHttps = redirectToHttps;
      routes.push(route);
    }
  }

  const service: Omit<Service, 'id' | 'provider'> = { name: input.name, framework, endpoints, balance, vips, labels: {} };
  return { service, routes, warnings };
}

/** Instances' config when no instance is in the health answer: the catalog's tag union, the last known meta. */
function fallbackConfigs(input: ServiceInput, unknown: Set<string>): InstanceConfig[] {
  const metas = input.fallbackMeta && input.fallbackMeta.length > 0 ? input.fallbackMeta : [{}];
  // The catalog gives one tag union for the whole service: treat it as every remembered instance's tags.
  return metas.map((m) => instanceConfig(input.catalogTags, m, unknown));
}

/** `/name:port` or `name:port` → named VIP; `ip:port` / `[v6]:port` → IP VIP (dcos-net's rule). */
export function parseVip(text: string, protocol: Protocol): Vip | string {
  const split = splitVipLabel(text.trim());
  if (!split) return 'not a VIP (write "/name:port" or "ip:port", port 1..65535)';
  const ip = parseAddress(split.target);
  if (ip.ok && (split.target.includes(':') || ipaddr.IPv4.isValidFourPartDecimal(split.target))) {
    return { address: ip.value, port: split.port, protocol };
  }
  const name = toVipName(split.target);
  if (name.length === 0 || !isValidDnsName(name)) return `"${split.target}" is not a valid VIP name`;
  return { name, port: split.port, protocol };
}

/**
 * One endpoint per instance. Address: the service's, or the node's when the service has none (Consul's
 * documented rule). Weight: Consul's `Weights.Passing` (or `.Warning` for a warning instance), which Consul
 * itself uses for DNS SRV weights. Labels: the instance's Service.Meta.
 */
function toEndpoints(entries: ConsulHealthEntry[], warnings: string[]): Endpoint[] {
  const out: Endpoint[] = [];
  const seen = new Map<string, string>();
  const sorted = [...entries].sort((a, b) => cmp(a.Node.Node, b.Node.Node) || cmp(a.Service.ID, b.Service.ID));
  for (const e of sorted) {
    const s = e.Service;
    const where = `instance ${s.ID} on node ${e.Node.Node}`;
    const rawAddress = s.Address && s.Address !== '' ? s.Address : e.Node.Address;
    const addr = parseAddress(rawAddress ?? '');
    if (!addr.ok) {
      warnings.push(`${where}: address "${rawAddress}" is not an IP address; left out (Portico routes to IPs)`);
      continue;
    }
    if (!Number.isInteger(s.Port) || s.Port < 1 || s.Port > 65535) {
      warnings.push(`${where}: port ${s.Port} is not 1..65535; left out`);
      continue;
    }
    const key = `${addr.value}|${s.Port}`;
    const dup = seen.get(key);
    if (dup !== undefined) {
      warnings.push(`${where}: ${addr.value}:${s.Port} is also ${dup}; counted once`);
      continue;
    }
    seen.set(key, where);
    const warning = e.Checks.some((c) => c.Status === 'warning');
    const w = warning ? s.Weights?.Warning : s.Weights?.Passing;
    const weight = typeof w === 'number' && Number.isFinite(w) ? Math.max(0, Math.min(256, Math.round(w))) : 1;
    const ep: Endpoint = {
      address: addr.value,
      port: s.Port,
      weight,
      health: 'healthy',
      taskId: `${e.Node.Node}/${s.ID}`,
      labels: { ...(s.Meta ?? {}) },
    };
    const node = parseAddress(e.Node.Address ?? '');
    if (node.ok) ep.agentAddress = node.value;
    out.push(ep);
  }
  return out.sort(compareEndpoints);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** IPv4 before IPv6, then numerically by address bytes, then by port (as the config snapshot sorts). */
function compareEndpoints(a: Endpoint, b: Endpoint): number {
  const ka = ipaddr.parse(a.address).toByteArray();
  const kb = ipaddr.parse(b.address).toByteArray();
  if (ka.length !== kb.length) return ka.length - kb.length;
  for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return (ka[i] as number) - (kb[i] as number);
  return a.port - b.port;
}

/** A health entry's own verdict: every check (node and service) passing → passing; any critical → critical. */
export function entryStatus(e: ConsulHealthEntry): 'passing' | 'warning' | 'critical' {
  let status: 'passing' | 'warning' | 'critical' = 'passing';
  for (const c of e.Checks) {
    if (c.Status === 'passing') continue;
    if (c.Status === 'warning') status = 'warning';
    else return 'critical';
  }
  return status;
}
