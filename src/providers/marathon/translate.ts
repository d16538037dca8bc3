/**
 * Marathon apps (the JSON of `GET /v2/apps?embed=apps.tasks`) → a provider Snapshot, the way DC/OS's
 * networking pieces read them. Pure: no I/O, no clock; host names are resolved by the caller
 * (`resolveHost`). Built for 10,000 apps: one pass per app, per-app results that a provider caches and
 * re-assembles when one app changes.
 *
 * What each app becomes
 * - One service per port (port index n), named `<task>-<n>` where `<task>` is the app's Mesos task name
 *   as Mesos-DNS writes it: Marathon names tasks `PathId.toHostname` (the path reversed, joined with `.`:
 *   `/grp/app` → `app.grp`), Mesos-DNS turns `.` into `-`. So `/grp/app` port 0 is service `app-grp-0`,
 *   and every endpoint carries `task: "app.grp"` → DNS `app-grp.marathon.mesos`, `_app-grp._tcp.marathon.mesos`.
 *   Framework `marathon` (option). Two app ids that sanitise to one name: the later one (by id) gets a
 *   `-<hash>` suffix and a warning.
 * - Endpoints, per task and port, as marathon-lb's get_task_ip_and_ports: networking mode from `networks`
 *   (Marathon ≥1.5) or the legacy `ipAddress` / `container.docker.network`;
 *     host             → agent address (task.host, resolved) : task.ports[n]
 *     container/bridge → agent address : task.ports[n] (the host port of portMappings[n])
 *     container        → task.ipAddresses[0] : portMappings[n].containerPort (0 = the host port), with
 *                        `network` = the container network's name (DNS `.containerip.`, overlay).
 *   `agentAddress` = the agent's IP, `taskId` = the Marathon task id.
 * - Task state: TASK_STAGING/STARTING/FINISHED/FAILED/KILLED/ERROR/DROPPED/GONE/GONE_BY_OPERATOR/UNKNOWN
 *   are left out (marathon-lb's EXCLUDED_TASK_STATES); TASK_LOST and TASK_UNREACHABLE are kept, as
 *   marathon-lb keeps them (the task may well still run); TASK_KILLING — and a task with `draining: true`
 *   — is kept at weight 0 / health `draining`: open connections finish, no new ones (marathon-lb drops it
 *   at once; HAProxy's `disabled` server is what zdd.py draining used).
 * - Health, when the app has Marathon health checks: a task is `healthy` when it has results and every
 *   result is `alive` (Marathon's own definition: all checks pass); `unhealthy` when one is not. With no
 *   result yet, the last verdict this task had (marathon-lb keeps an LRU of them: results vanish after a
 *   Marathon leader change) — else, with `missingHealth: 'exclude'` (the Marathon provider; marathon-lb
 *   `--health-check`) `unhealthy`, i.e. not served until Marathon says alive; with `'unknown'` (app files,
 *   where nobody runs Marathon's checks) `unknown`, served while Portico's own active checks decide.
 *   Without health checks: `unknown` (no verdict; served), as dcos-l4lb serves running tasks.
 * - VIP labels (dcos-net): a port label whose key starts with `VIP`/`vip` on `portDefinitions[n]`,
 *   `container.portMappings[n]` (or `container.docker.portMappings[n]`): `"/name:port"` → named VIP
 *   `toVipName(name)` (`/grp/app` → `grpapp`), `"ip:port"` → IP VIP; split at the last colon; the port's
 *   protocol (`tcp,udp` gives both).
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
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { isValidRouteHost, splitVipLabel, toFrameworkName, toVipName } from '../../model/names.js';
import { formatListen, parseAddress, parseCidr } from '../../model/parse.js';
import type {
  Balance,
  Endpoint,
  Entrypoint,
  HealthCheck,
  HealthState,
  Protocol,
  RouteBasicAuth,
  Service,
  Snapshot,
  Vip,
} from '../../model/types.js';

// ---------------------------------------------------------------------------------------------------
// Marathon's JSON (only what is read; everything optional: input is never trusted)

export interface MarathonPortDefinition {
  port?: number;
  protocol?: string;
  name?: string;
  labels?: Record<string, string>;
}

export interface MarathonPortMapping {
  containerPort?: number;
  hostPort?: number | null;
  servicePort?: number;
  protocol?: string;
  name?: string;
  labels?: Record<string, string>;
}

export interface MarathonHealthCheck {
  protocol?: string;
  path?: string;
  portIndex?: number;
  port?: number;
  intervalSeconds?: number;
  timeoutSeconds?: number;
  gracePeriodSeconds?: number;
  maxConsecutiveFailures?: number;
}

export interface MarathonHealthResult {
  alive?: boolean;
  taskId?: string;
  instanceId?: string;
  consecutiveFailures?: number;
}

export interface MarathonTask {
  id?: string;
  appId?: string;
  host?: string;
  ports?: number[];
  ipAddresses?: Array<{ ipAddress?: string; protocol?: string }>;
  state?: string;
  slaveId?: string;
  version?: string;
  healthCheckResults?: MarathonHealthResult[];
  /** Not Marathon's: set by deployment tooling (zdd) or Portico's scheduler: no new connections. */
  draining?: boolean;
}

export interface MarathonApp {
  id?: string;
  labels?: Record<string, string>;
  ports?: number[];
  portDefinitions?: MarathonPortDefinition[] | null;
  container?: {
    type?: string;
    portMappings?: MarathonPortMapping[] | null;
    docker?: { network?: string; portMappings?: MarathonPortMapping[] | null } | null;
  } | null;
  networks?: Array<{ mode?: string; name?: string }> | null;
  ipAddress?: {
    networkName?: string;
    discovery?: { ports?: Array<{ number?: number; name?: string; protocol?: string; labels?: Record<string, string> }> };
  } | null;
  healthChecks?: MarathonHealthCheck[] | null;
  tasks?: MarathonTask[] | null;
}

// ---------------------------------------------------------------------------------------------------
// Options and results

/** The translation settings a Marathon feed (the api, or app files) takes from its configuration. */
export type MarathonFeedSettings = Pick<
  MarathonTranslateOptions,
  'framework' | 'httpEntrypoint' | 'httpsEntrypoint' | 'defaultBindAddress' | 'bindServicePorts' | 'strictMode' | 'activeHealthChecks'
>;

export interface MarathonTranslateOptions {
  /** Provider name: route ids start with it. */
  provider: string;
  /** marathon-lb groups this instance serves (`--group`); `*` serves every app, grouped or not. */
  groups: readonly string[];
  /** Mesos framework for DNS names. Default `marathon`. */
  framework?: string;
  /** Entrypoint for VHOST routes over http (marathon-lb's :80). Default `web`; null: none. */
  httpEntrypoint?: string | null;
  /** Entrypoint for VHOST routes over https (marathon-lb's :443). Default `websecure`; null: none. */
  httpsEntrypoint?: string | null;
  /** Address service ports bind to without `HAPROXY_{n}_BIND_ADDR`. Default 127.0.0.1 (marathon-lb: `*`). */
  defaultBindAddress?: string;
  /** Bind service ports (tcp: IP VIPs; http: entrypoints `marathon-<port>`). Default true. */
  bindServicePorts?: boolean;
  /** marathon-lb `--strict-mode`: a port is served only with `HAPROXY_{n}_ENABLED=true`. Default false. */
  strictMode?: boolean;
  /** Marathon health checks become active checks of the ports this instance serves. Default true. */
  activeHealthChecks?: boolean;
  /** A task of an app with health checks but no result yet: `exclude` (default) or `unknown`. */
  missingHealth?: 'exclude' | 'unknown';
  /** Host name → IP for agents named by host name; undefined: not resolved (the task is left out). */
  resolveHost?: (host: string) => string | undefined;
  /** Last health verdict per task id, used when a task's results are missing. */
  previousHealth?: ReadonlyMap<string, boolean>;
}

export interface AppWarning {
  app: string;
  message: string;
}

type LocalService = Omit<Service, 'id' | 'provider'>;
type SnapshotRoute = Snapshot['routes'][number];

/** One app, translated: what a provider caches per app and assembles into a snapshot. */
export interface AppTranslation {
  /** App id (`/grp/app`), or `?<n>` for an app without a usable id. */
  id: string;
  services: Array<{ name: string; service: LocalService }>;
  /** Routes with marathon-lb's BACKEND_WEIGHT; `service` is the local name above. */
  routes: Array<{ weight: number; route: SnapshotRoute }>;
  entrypoints: Entrypoint[];
  warnings: string[];
  /** Health verdicts seen in this app's results (task id → alive), to remember for later. */
  verdicts: Array<[string, boolean]>;
  tasks: number;
}

export interface TranslateResult {
  snapshot: Snapshot;
  warnings: AppWarning[];
  stats: { apps: number; tasks: number; services: number; endpoints: number; routes: number };
}

export const MARATHON_LB = {
  /** marathon-lb's sticky cookie (HAPROXY_BACKEND_STICKY_OPTIONS). */
  stickyCookie: 'mesosphere_server_id',
  /** marathon-lb's HAPROXY_BACKEND_HSTS_OPTIONS: `Strict-Transport-Security: max-age=15768000`. */
  hstsMaxAgeS: 15_768_000,
  /** HAProxy's default `rise`. */
  rise: 2,
} as const;

/** marathon-lb's EXCLUDED_TASK_STATES, less TASK_KILLING (kept, draining). */
const EXCLUDED_STATES = new Set([
  'TASK_STAGING',
  'TASK_STARTING',
  'TASK_FINISHED',
  'TASK_FAILED',
  'TASK_KILLED',
  'TASK_ERROR',
  'TASK_DROPPED',
  'TASK_GONE',
  'TASK_GONE_BY_OPERATOR',
  'TASK_UNKNOWN',
]);

interface PortLabels {
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

type NetMode = 'host' | 'container' | 'container/bridge';

interface PortSpec {
  index: number;
  servicePort: number;
  protocols: Protocol[];
  name?: string;
  labels: Record<string, string>;
  /** container mode: the port inside the container (0: same as the host port). */
  containerPort?: number;
  /** Index into task.ports for this port (host and bridge), or -1 when it has no host port. */
  hostPortIndex: number;
}

interface TaskView {
  id: string;
  /** Agent IP, when known. */
  agent: string | undefined;
  /** Container IP (container mode). */
  containerIp: string | undefined;
  ports: number[];
  health: HealthState;
  weight: number;
}

interface Resolved {
  provider: string;
  groups: ReadonlySet<string>;
  allGroups: boolean;
  framework: string;
  httpEntrypoint: string | null;
  httpsEntrypoint: string | null;
  defaultBindAddress: string;
  bindServicePorts: boolean;
  strictMode: boolean;
  activeHealthChecks: boolean;
  missingHealth: 'exclude' | 'unknown';
  resolveHost: ((host: string) => string | undefined) | undefined;
  previousHealth: ReadonlyMap<string, boolean> | undefined;
  /** host text → normalised IP (or null), memoised across apps. */
  hostMemo: Map<string, string | null>;
}

/** Build the shared, resolved form of the options once per translation run. */
export function resolveOptions(opts: MarathonTranslateOptions): Resolved {
  const groups = new Set(opts.groups.map((g) => g.trim()).filter((g) => g !== ''));
  const bind = parseAddress(opts.defaultBindAddress ?? '127.0.0.1');
  return {
    provider: opts.provider,
    groups,
    allGroups: groups.has('*'),
    framework: toFrameworkName(opts.framework ?? 'marathon') || 'marathon',
    httpEntrypoint: opts.httpEntrypoint === undefined ? 'web' : opts.httpEntrypoint || null,
    httpsEntrypoint: opts.httpsEntrypoint === undefined ? 'websecure' : opts.httpsEntrypoint || null,
    defaultBindAddress: bind.ok ? bind.value : '127.0.0.1',
    bindServicePorts: opts.bindServicePorts ?? true,
    strictMode: opts.strictMode ?? false,
    activeHealthChecks: opts.activeHealthChecks ?? true,
    missingHealth: opts.missingHealth ?? 'exclude',
    resolveHost: opts.resolveHost,
    previousHealth: opts.previousHealth,
    hostMemo: new Map(),
  };
}

export type ResolvedTranslateOptions = Resolved;

// ---------------------------------------------------------------------------------------------------
// Small readers (defensive: Marathon JSON, or a hand-written file, may hold anything)

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringRecord(v: unknown): Record<string, string> {
  if (!isObject(v)) return {};
  let clean = true;
  for (const k in v)
    if (typeof v[k] !== 'string') {
      clean = false;
      break;
    }
  if (clean) return v as Record<string, string>;
  const out: Record<string, string> = {};
  for (const k in v) {
    const x = v[k];
    if (typeof x === 'string') out[k] = x;
    else if (typeof x === 'number' || typeof x === 'boolean') out[k] = String(x);
  }
  return out;
}

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

function asArray<T>(v: unknown): T[] {
  return Array.isArray(v) ? (v as T[]) : [];
}

/** marathon-lb's string_to_bool. */
function truthy(s: string): boolean {
  const l = s.trim().toLowerCase();
  return l === 'true' || l === 't' || l === 'yes' || l === 'y';
}

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** A normalised IP from text, or undefined. Dotted quads (the common case) skip ipaddr. */
function normaliseIp(text: string): string | undefined {
  if (V4.test(text)) return text;
  const a = parseAddress(text);
  return a.ok ? a.value : undefined;
}

/** `/grp/app` → `app.grp` (Marathon's PathId.toHostname: the Mesos task name). */
export function taskNameOf(appId: string): string {
  return appId
    .split('/')
    .filter((p) => p !== '')
    .reverse()
    .join('.');
}

/** The provider-local service name base: the Mesos-DNS form of the task name (no length cap). */
export function serviceBaseOf(appId: string): string {
  return taskNameOf(appId)
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-');
}

/** `grp/app/` → `/grp/app`. */
export function normaliseAppId(id: string): string {
  const parts = id.split('/').filter((p) => p !== '');
  return `/${parts.join('/')}`;
}

function shortHash(s: string): string {
  return createHash('sha1').update(s).digest('hex').slice(0, 6);
}

function protocolsOf(p: unknown): Protocol[] {
  if (typeof p !== 'string' || p === '') return ['tcp'];
  const out: Protocol[] = [];
  for (const part of p.toLowerCase().split(',')) {
    const t = part.trim();
    if ((t === 'tcp' || t === 'udp') && !out.includes(t)) out.push(t);
  }
  return out.length > 0 ? out : ['tcp'];
}

// ---------------------------------------------------------------------------------------------------
// Networking (marathon-lb utils.py: get_app_networking_mode, get_app_port_mappings, get_app_task_ports)

function networkingMode(app: MarathonApp): NetMode {
  let mode: NetMode = 'host';
  if (isObject(app.ipAddress)) mode = 'container';
  const docker = isObject(app.container) && isObject(app.container.docker) ? app.container.docker : undefined;
  if (docker?.network === 'USER') mode = 'container';
  else if (docker?.network === 'BRIDGE') mode = 'container/bridge';
  for (const n of asArray<{ mode?: string }>(app.networks)) {
    // Modes cannot be mixed: the last one is the mode (marathon-lb).
    if (!isObject(n)) continue;
    const m = n.mode ?? 'container';
    if (m === 'host' || m === 'container' || m === 'container/bridge') mode = m;
  }
  return mode;
}

function containerNetworkName(app: MarathonApp): string | undefined {
  for (const n of asArray<{ mode?: string; name?: string }>(app.networks)) {
    if (isObject(n) && (n.mode ?? 'container') === 'container' && typeof n.name === 'string' && n.name !== '') return n.name;
  }
  if (isObject(app.ipAddress) && typeof app.ipAddress.networkName === 'string' && app.ipAddress.networkName !== '')
    return app.ipAddress.networkName;
  return undefined;
}

function portMappingsOf(app: MarathonApp): MarathonPortMapping[] {
  if (!isObject(app.container)) return [];
  const docker = isObject(app.container.docker) ? asArray<MarathonPortMapping>(app.container.docker.portMappings) : [];
  if (docker.length > 0) return docker;
  return asArray<MarathonPortMapping>(app.container.portMappings);
}

function portSpecs(app: MarathonApp, mode: NetMode): PortSpec[] {
  const specs: PortSpec[] = [];
  if (mode !== 'host') {
    const mappings = portMappingsOf(app);
    if (mappings.length > 0) {
      let hostIndex = 0;
      mappings.forEach((m, index) => {
        const mm = isObject(m) ? m : {};
        // Bridge mode: a null hostPort means 0 (any). Container mode: only mappings with a hostPort have
        // one in task.ports.
        const hasHostPort = mode === 'container/bridge' || typeof mm.hostPort === 'number';
        const spec: PortSpec = {
          index,
          servicePort: isPort(mm.servicePort) ? mm.servicePort : 0,
          protocols: protocolsOf(mm.protocol),
          labels: stringRecord(mm.labels),
          containerPort: typeof mm.containerPort === 'number' ? mm.containerPort : 0,
          hostPortIndex: hasHostPort ? hostIndex++ : -1,
        };
        if (typeof mm.name === 'string' && mm.name !== '') spec.name = mm.name;
        specs.push(spec);
      });
      return specs;
    }
    if (mode === 'container' && isObject(app.ipAddress) && isObject(app.ipAddress.discovery)) {
      // Marathon ≤1.4 IP-per-task: ipAddress.discovery.ports carry the container ports.
      asArray<{ number?: number; name?: string; protocol?: string; labels?: Record<string, string> }>(
        app.ipAddress.discovery.ports,
      ).forEach((p, index) => {
        const pp = isObject(p) ? p : {};
        const spec: PortSpec = {
          index,
          servicePort: 0,
          protocols: protocolsOf(pp.protocol),
          labels: stringRecord(pp.labels),
          containerPort: typeof pp.number === 'number' ? pp.number : 0,
          hostPortIndex: -1,
        };
        if (typeof pp.name === 'string' && pp.name !== '') spec.name = pp.name;
        specs.push(spec);
      });
      if (specs.length > 0) return specs;
    }
  }
  const defs = asArray<MarathonPortDefinition>(app.portDefinitions);
  if (defs.length > 0 || Array.isArray(app.portDefinitions)) {
    defs.forEach((d, index) => {
      const dd = isObject(d) ? d : {};
      const spec: PortSpec = {
        index,
        servicePort: isPort(dd.port) ? dd.port : 0,
        protocols: protocolsOf(dd.protocol),
        labels: stringRecord(dd.labels),
        hostPortIndex: index,
      };
      if (typeof dd.name === 'string' && dd.name !== '') spec.name = dd.name;
      specs.push(spec);
    });
    return specs;
  }
  // Legacy `ports: [10000, …]`.
  asArray<number>(app.ports).forEach((p, index) => {
    specs.push({ index, servicePort: isPort(p) ? p : 0, protocols: ['tcp'], labels: {}, hostPortIndex: index });
  });
  return specs;
}

// ---------------------------------------------------------------------------------------------------
// Labels

interface ParsedLabels {
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

function parseLabels(labels: Record<string, string>): ParsedLabels {
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

function splitGroups(v: string): string[] {
  return v
    .split(',')
    .map((g) => g.trim())
    .filter((g) => g !== '');
}

function served(groups: string[], r: Resolved): boolean {
  if (r.allGroups) return true;
  for (const g of groups) if (r.groups.has(g)) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------------
// Health

function healthCheckFor(checks: MarathonHealthCheck[], portIndex: number): { check: MarathonHealthCheck; index: number } | undefined {
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

function activeCheck(c: MarathonHealthCheck): HealthCheck | string {
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
// One app

/** Translate one app. Never throws: anything unusable becomes a warning. */
export function translateApp(raw: unknown, r: Resolved, ordinal = 0): AppTranslation {
  const empty = (id: string, warning: string): AppTranslation => ({
    id,
    services: [],
    routes: [],
    entrypoints: [],
    warnings: [warning],
    verdicts: [],
    tasks: 0,
  });
  if (!isObject(raw)) return empty(`?${ordinal}`, 'not an app object; skipped');
  const app = raw as MarathonApp;
  if (typeof app.id !== 'string' || normaliseAppId(app.id) === '/') return empty(`?${ordinal}`, 'app without an "id"; skipped');
  const id = normaliseAppId(app.id);
  const out: AppTranslation = { id, services: [], routes: [], entrypoints: [], warnings: [], verdicts: [], tasks: 0 };
  try {
    translateInto(app, id, r, out);
  } catch (err) {
    // A shape nobody foresaw: this app is skipped, the others are not.
    return empty(id, `could not be translated (${(err as Error).message}); skipped`);
  }
  return out;
}

function translateInto(app: MarathonApp, id: string, r: Resolved, out: AppTranslation): void {
  const labels = stringRecord(app.labels);
  const mode = networkingMode(app);
  const specs = portSpecs(app, mode);
  const taskName = taskNameOf(id);
  const base = serviceBaseOf(id);
  const parsed = parseLabels(labels);
  const checks = asArray<MarathonHealthCheck>(app.healthChecks).filter(isObject);
  const network = mode === 'container' ? containerNetworkName(app) : undefined;

  // Tasks, once (their health and addresses do not depend on the port).
  const tasks = taskViews(app, mode, checks.length > 0, r, out);
  out.tasks = tasks.length;

  let anyServed = false;
  for (const [n] of parsed.ports) {
    if (n >= specs.length)
      out.warnings.push(
        `marathon-lb labels for port index ${n} (HAPROXY_${n}_*), but the app has ${specs.length} port${specs.length === 1 ? '' : 's'}; ignored`,
      );
  }

  for (const spec of specs) {
    const i = spec.index;
    const pl = parsed.ports.get(i) ?? {};
    const name = `${base}-${i}`;
    const hc = healthCheckFor(checks, i);

    // Endpoints.
    const endpoints: Endpoint[] = [];
    for (const t of tasks) {
      let address: string | undefined;
      let port: number | undefined;
      if (mode === 'container') {
        address = t.containerIp;
        port =
          spec.containerPort && spec.containerPort > 0
            ? spec.containerPort
            : spec.hostPortIndex >= 0
              ? t.ports[spec.hostPortIndex]
              : undefined;
      } else {
        address = t.agent;
        port = spec.hostPortIndex >= 0 ? t.ports[spec.hostPortIndex] : undefined;
      }
      if (address === undefined || !isPort(port)) continue;
      // The model's key order (address … network, labels): the aggregator hashes endpoints with plain
      // JSON.stringify, so equal endpoints must serialise equally.
      const e = { address, port, weight: t.weight, health: t.health, task: taskName } as Endpoint;
      if (t.id !== '') e.taskId = t.id;
      if (t.agent !== undefined) e.agentAddress = t.agent;
      if (network !== undefined) e.network = network;
      e.labels = {};
      endpoints.push(e);
    }
    endpoints.sort(compareEndpoints);

    // VIP labels (dcos-net): any port label whose key starts with VIP / vip.
    const vips: Vip[] = [];
    for (const key in spec.labels) {
      if (!(key.startsWith('VIP') || key.startsWith('vip'))) continue;
      const value = spec.labels[key] as string;
      const split = splitVipLabel(value.trim());
      if (!split) {
        out.warnings.push(`port ${i}: VIP label ${key}="${value}" is not "/name:port" or "ip:port"; ignored`);
        continue;
      }
      const ip = isIP(split.target) ? normaliseIp(split.target) : undefined;
      let vipName: string | undefined;
      if (ip === undefined) {
        vipName = toVipName(split.target);
        if (vipName === '') {
          out.warnings.push(`port ${i}: VIP label ${key}="${value}" has no usable name; ignored`);
          continue;
        }
      }
      for (const protocol of spec.protocols) {
        const v: Vip =
          ip !== undefined ? { address: ip, port: split.port, protocol } : { name: vipName as string, port: split.port, protocol };
        vips.push(v);
      }
    }

    // marathon-lb: is this port served by this instance?
    const groups = pl.group !== undefined ? splitGroups(pl.group) : parsed.groups;
    let enabled = !r.strictMode;
    if (pl.enabled !== undefined) enabled = truthy(pl.enabled);
    const isServed = enabled && served(groups, r);
    const hasLbLabels = Object.keys(pl).length > 0;
    if (!isServed && hasLbLabels && groups.length === 0 && enabled && !r.allGroups) {
      out.warnings.push(
        `port ${i}: has marathon-lb labels but no HAPROXY_GROUP; this instance serves groups [${[...r.groups].join(', ')}], so the port is not load-balanced here`,
      );
    }

    const service: LocalService = {
      name,
      framework: r.framework,
      endpoints,
      balance: { algorithm: 'roundrobin' },
      vips,
      labels: serviceLabels(id, i, spec),
    };

    if (isServed) {
      anyServed = true;
      service.balance = balanceOf(pl, i, out.warnings);
      if (hc && r.activeHealthChecks) {
        const a = activeCheck(hc.check);
        if (typeof a === 'string') out.warnings.push(`port ${i}: ${a}`);
        else service.health = a;
      }
      lbPort(name, spec, pl, hc?.check, r, service, out);
    }
    out.services.push({ name, service });
  }

  if (anyServed || parsed.unknown.length > 0) {
    const unsupported = parsed.unsupported.filter((k) => {
      const m = /^HAPROXY_(\d+)_/.exec(k);
      return !m || Number(m[1]) < specs.length;
    });
    if (anyServed && unsupported.length > 0)
      out.warnings.push(`marathon-lb labels Portico does not support (ignored): ${unsupported.sort().join(', ')}`);
    if (parsed.unknown.length > 0)
      out.warnings.push(`labels that are not marathon-lb's (typo?; ignored): ${parsed.unknown.sort().join(', ')}`);
  }
}

function serviceLabels(id: string, i: number, spec: PortSpec): Record<string, string> {
  const l: Record<string, string> = { 'marathon.app': id, 'marathon.port-index': String(i) };
  if (spec.name !== undefined) l['marathon.port-name'] = spec.name;
  return l;
}

function taskViews(app: MarathonApp, mode: NetMode, hasChecks: boolean, r: Resolved, out: AppTranslation): TaskView[] {
  const views: TaskView[] = [];
  let unresolved: string | undefined;
  let noIp = 0;
  for (const t of asArray<MarathonTask>(app.tasks)) {
    if (!isObject(t)) continue;
    const state = typeof t.state === 'string' ? t.state : undefined;
    if (state !== undefined && EXCLUDED_STATES.has(state)) continue;
    const id = typeof t.id === 'string' ? t.id : '';
    const host = typeof t.host === 'string' ? t.host : '';
    if (host === '' && mode !== 'container') continue;
    const agent = host === '' ? undefined : resolveAgent(host, r);
    if (agent === undefined && host !== '' && mode !== 'container') {
      unresolved ??= host;
      continue;
    }
    let containerIp: string | undefined;
    if (mode === 'container') {
      for (const a of asArray<{ ipAddress?: string }>(t.ipAddresses)) {
        if (isObject(a) && typeof a.ipAddress === 'string') {
          containerIp = normaliseIp(a.ipAddress);
          if (containerIp !== undefined) break;
        }
      }
      if (containerIp === undefined) {
        noIp++;
        continue;
      }
    }

    let health: HealthState = 'unknown';
    if (hasChecks) {
      const results = asArray<MarathonHealthResult>(t.healthCheckResults);
      if (results.length > 0) {
        let alive = true;
        for (const res of results) if (!isObject(res) || res.alive !== true) alive = false;
        health = alive ? 'healthy' : 'unhealthy';
        if (id !== '') out.verdicts.push([id, alive]);
      } else {
        const prev = id !== '' ? r.previousHealth?.get(id) : undefined;
        if (prev !== undefined) health = prev ? 'healthy' : 'unhealthy';
        else health = r.missingHealth === 'exclude' ? 'unhealthy' : 'unknown';
      }
    }
    let weight = 1;
    if (state === 'TASK_KILLING' || t.draining === true) {
      weight = 0;
      if (health !== 'unhealthy') health = 'draining';
    }
    views.push({ id, agent, containerIp, ports: asArray<number>(t.ports), health, weight });
  }
  if (unresolved !== undefined) out.warnings.push(`tasks on agent "${unresolved}" left out: the host name does not resolve (yet)`);
  if (noIp > 0) out.warnings.push(`${noIp} task${noIp === 1 ? '' : 's'} without a container IP yet left out`);
  return views;
}

function resolveAgent(host: string, r: Resolved): string | undefined {
  const hit = r.hostMemo.get(host);
  if (hit !== undefined) return hit ?? undefined;
  let ip: string | undefined = normaliseIp(host);
  if (ip === undefined && r.resolveHost) {
    const res = r.resolveHost(host);
    ip = res === undefined ? undefined : normaliseIp(res);
  }
  r.hostMemo.set(host, ip ?? null);
  return ip;
}

function compareEndpoints(a: Endpoint, b: Endpoint): number {
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return a.port - b.port;
}

function balanceOf(pl: PortLabels, i: number, warnings: string[]): Balance {
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
function lbPort(
  name: string,
  spec: PortSpec,
  pl: PortLabels,
  hc: MarathonHealthCheck | undefined,
  r: Resolved,
  service: LocalService,
  out: AppTranslation,
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
  r: Resolved,
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

// ---------------------------------------------------------------------------------------------------
// Assembly

/**
 * Put translated apps together into one snapshot: service-name collisions are resolved (the app with
 * the smaller id keeps the name), routes are ordered by BACKEND_WEIGHT (heaviest first, then app id),
 * an entrypoint claimed twice keeps its first claimant.
 */
export function assemble(provider: string, pieces: Iterable<AppTranslation>): TranslateResult {
  const sorted = [...pieces].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const services: Snapshot['services'] = {};
  const owner = new Map<string, string>();
  const entrypoints: Record<string, Entrypoint> = {};
  const weighted: Array<{ weight: number; order: number; route: SnapshotRoute }> = [];
  const warnings: AppWarning[] = [];
  let tasks = 0;
  let endpoints = 0;

  for (const p of sorted) {
    tasks += p.tasks;
    for (const message of p.warnings) warnings.push({ app: p.id, message });
    let renames: Map<string, string> | undefined;
    for (const { name, service } of p.services) {
      let final = name;
      const prior = owner.get(name);
      if (prior !== undefined && prior !== p.id) {
        final = `${name}-${shortHash(p.id)}`;
        (renames ??= new Map()).set(name, final);
        warnings.push({
          app: p.id,
          message: `service name ${name} is already ${prior}'s (both ids give that Mesos-DNS name); this app's service is ${final}`,
        });
      }
      owner.set(final, p.id);
      services[final] = final === name ? service : { ...service, name: final };
      endpoints += service.endpoints.length;
    }
    for (const ep of p.entrypoints) {
      if (entrypoints[ep.name]) {
        warnings.push({ app: p.id, message: `service port ${ep.listen} is already bound by another app; not bound again` });
        continue;
      }
      entrypoints[ep.name] = ep;
    }
    for (const { weight, route } of p.routes) {
      const svc = renames?.get(route.service);
      weighted.push({
        weight,
        order: weighted.length,
        route: svc === undefined ? route : { ...route, service: svc, id: route.id?.replace(`/${route.service}/`, `/${svc}/`) },
      });
    }
  }
  // Stable: by weight (descending), then the order apps were assembled in.
  let anyWeight = false;
  for (const x of weighted)
    if (x.weight !== 0) {
      anyWeight = true;
      break;
    }
  if (anyWeight) weighted.sort((a, b) => b.weight - a.weight || a.order - b.order);
  const routes = weighted.map((x) => x.route);
  const snapshot: Snapshot = { provider, services, routes, entrypoints };
  if (warnings.length) snapshot.warnings = warnings.map((w) => ({ subject: w.app, message: w.message }));
  return {
    snapshot,
    warnings,
    stats: { apps: sorted.length, tasks, services: Object.keys(services).length, endpoints, routes: routes.length },
  };
}

/** Translate a whole `/v2/apps` answer (its `apps` array) in one go. */
export function translateApps(
  apps: readonly unknown[],
  opts: MarathonTranslateOptions,
): TranslateResult & { verdicts: Map<string, boolean> } {
  const r = resolveOptions(opts);
  const pieces: AppTranslation[] = [];
  const verdicts = new Map<string, boolean>();
  for (let i = 0; i < apps.length; i++) {
    const p = translateApp(apps[i], r, i);
    pieces.push(p);
    for (const [k, v] of p.verdicts) verdicts.set(k, v);
  }
  // Two entries with one id (a hand-made file): the first wins.
  const seen = new Set<string>();
  const unique: AppTranslation[] = [];
  const dupWarnings: AppWarning[] = [];
  for (const p of pieces) {
    if (seen.has(p.id)) {
      dupWarnings.push({ app: p.id, message: 'defined more than once; the first definition is used' });
      continue;
    }
    seen.add(p.id);
    unique.push(p);
  }
  const res = assemble(opts.provider, unique);
  res.warnings.push(...dupWarnings);
  return { ...res, verdicts };
}
