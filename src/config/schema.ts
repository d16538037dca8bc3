/**
 * The config file, defined once. Every section is a settings definition (src/model/settings.ts): each key
 * carries its JSON Schema (description, default, format, bounds), its decode to the value the code reads
 * (durations in ms, sizes in bytes, addresses and CIDRs normalised, relative paths resolved) and the
 * rules between its keys that a schema cannot state. The engines' sections are defined beside the
 * engines (src/l7/settings.ts, src/l4/settings.ts, src/dns/settings.ts) and composed here.
 *
 * From `configSettings` come the JSON Schema (draft-07) the api serves at /v1/config/schema and the loader
 * compiles with ajv, the TypeScript type of a loaded config (types.ts), its defaults (defaults.ts) and the
 * config reference (docs/config.md, `npm run docs:config`). Every object is closed
 * (`additionalProperties: false`): a misspelt key is an error, never silently ignored. `format` names are
 * Portico's own (formats.ts); generic JSON Schema tools ignore them, ajv enforces them. Rules across
 * sections (routes naming entrypoints and services, duplicate VIPs, colliding listeners) are in rules.ts.
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { Type } from '@sinclair/typebox';
import { dnsSettings } from '../dns/settings.js';
import { l4Settings } from '../l4/settings.js';
import { l7Settings } from '../l7/settings.js';
import {
  bool,
  CIDR,
  custom,
  duration,
  fileOnly,
  HTTP_TOKEN,
  int,
  INVALID,
  IP,
  LISTEN,
  list,
  map,
  oneOf,
  optionalSection,
  required,
  section,
  size,
  str,
  type Format,
  type Setting,
  type ValueOf,
  type Walk,
} from '../model/settings.js';
import { BALANCE, FRAMEWORK, HTTP_PATH, HTTP_URL, NAME, ROUTE_HOST, STATUS_RANGE, STORE, VIP_NAME } from './formats.js';
import { formatPath } from './locate.js';

export type JsonSchema = { [keyword: string]: unknown };

const cidr = str('A CIDR ("10.0.0.0/8", "fd00::/8"); a bare address is a host prefix.', undefined, CIDR);

/** Checked by a format, kept as written (not normalised). */
const asWritten = (f: Format<unknown>): Format => ({
  name: f.name,
  parse(text) {
    const r = f.parse(text);
    return r.ok ? { ok: true, value: text } : r;
  },
});

/** A file path; a relative one is resolved against the config file's directory, so the file means the same from any cwd. */
const filePath = (description: string) =>
  custom<string>({
    schema: Type.String({ description: `${description} Relative paths are relative to the config file.` }),
    decode: (raw, w) => (typeof raw === 'string' ? resolve(w.baseDir, raw) : INVALID),
  });

const labels = map(
  'Free-form string labels (marathon-lb style HAPROXY_* labels included). Values are strings: quote numbers.',
  str('A label value.'),
);

const tls = optionalSection(
  'TLS on this entrypoint. Absent: plain HTTP. Set auto, certificates, or passthrough.',
  {
    auto: bool('Issue a certificate from the cluster CA, by SNI name, for every route host on this entrypoint.', false),
    certificates: list(
      'Certificates to serve, chosen by SNI.',
      section('A PEM certificate (chain) and its key.', {
        certFile: required(filePath('PEM certificate or chain file.')),
        keyFile: required(filePath('PEM private key file.')),
      }),
      [],
    ),
    passthrough: bool('Forward TLS unopened to the backend chosen by SNI (L4); excludes auto and certificates.', false),
  },
  {
    check(t, w) {
      if (t.passthrough && (t.auto || t.certificates.length > 0)) {
        w.fail('passthrough forwards TLS unopened: it cannot be combined with auto or certificates', ['passthrough']);
      } else if (!t.auto && !t.passthrough && t.certificates.length === 0) {
        w.fail('tls needs auto: true, certificates, or passthrough: true (remove tls for plain HTTP)');
      }
    },
  },
);

const entrypoint = section('An L7 (HTTP/HTTPS) listener.', {
  listen: required(
    str('"host:port" or "[v6]:port" (quote IPv6 in YAML); ":8080" means all IPv4 interfaces; port 0 picks a free port.', undefined, LISTEN),
  ),
  tls,
  trustedProxies: list('Peers whose X-Forwarded-* / Forwarded headers are believed.', cidr, []),
});

const endpoint = section('One backend instance.', {
  address: required(str('IPv4 or IPv6 address of the instance.', undefined, IP)),
  port: required(int('Port of the instance, 1..65535.', undefined, { min: 1, max: 65535 })),
  weight: int('Relative weight 0..256 for weighted balancing; 0 means draining (no new requests).', 1, { min: 0, max: 256 }),
  health: oneOf(
    'Health as the file states it. unknown = no verdict yet (served); unhealthy = never served; draining = open requests finish, no new ones.',
    ['healthy', 'unknown', 'unhealthy', 'draining'],
    'unknown',
  ),
  task: str('Task name for DNS (<task>.<framework>.mesos). Default: the service name.'),
  taskId: str('Unique task id, if the instance has one (e.g. Marathon "web.1b2c…").'),
  agentAddress: str('IP of the machine that runs the instance (for .agentip. names).', undefined, IP),
  network: str('Overlay network the address belongs to, if it is a container IP.'),
  labels,
});

const health = optionalSection(
  'Active health checks. Absent: none (endpoints keep the health the file gives them). Neither http nor tcp: a TCP connect check.',
  {
    httpPath: str('Path to GET (e.g. /healthz); an HTTP check. Excludes tcp: true.', undefined, HTTP_PATH, { file: 'http' }),
    tcp: fileOnly(bool('A TCP connect check (the default kind when http is absent).')),
    intervalMs: duration('Time between two checks of one endpoint.', '2s', { min: 1 }),
    timeoutMs: duration('Time one check may take.', '1s', { min: 1 }),
    rise: int('Consecutive successes before an endpoint is up.', 2, { min: 1, max: 100 }),
    fall: int('Consecutive failures before an endpoint is down.', 3, { min: 1, max: 100 }),
    expectStatus: str('Accepted HTTP status range, inclusive: "200-399" or "204".', '200-399', STATUS_RANGE, { file: 'expect' }),
  },
  {
    check(_h, w, raw) {
      if (raw.http !== undefined && raw.tcp === true) w.fail('a check is either http or tcp: set one of them', ['tcp']);
      if (raw.http === undefined && raw.tcp === false) {
        w.fail('tcp: false leaves no check to run (set http, or remove health to disable checks)', ['tcp']);
      }
    },
  },
);

const vip = section(
  'An L4 virtual IP. Exactly one of name and address.',
  {
    name: str(
      'Named VIP: "web" is served as web.<framework>.l4lb.thisdcos.directory (sanitised as dcos-l4lb does: "/grp/app" → "grpapp").',
      undefined,
      VIP_NAME,
    ),
    address: str('Explicit VIP address (IPv4 or IPv6).', undefined, IP),
    port: required(int('VIP port, 1..65535.', undefined, { min: 1, max: 65535 })),
    protocol: oneOf('tcp or udp.', ['tcp', 'udp'], 'tcp'),
    proxyProtocol: oneOf('Send a PROXY protocol header of this version to backends. Absent: none.', ['v1', 'v2']),
  },
  {
    check(_v, w, raw) {
      if (raw.name !== undefined && raw.address !== undefined) w.fail('a VIP has a name or an address, not both');
      else if (raw.name === undefined && raw.address === undefined) w.fail('a VIP needs a name or an address');
    },
  },
);

const endpointKey = (address: string, port: number) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

const service = section('A service: a set of endpoints and how to balance, check and expose them.', {
  framework: str('Mesos framework for DNS names (web.marathon.mesos). Normalised to DNS labels.', 'marathon', FRAMEWORK),
  endpoints: list('Backend instances. Default: none (requests get 503).', endpoint, [], {
    check(endpoints, w) {
      const seen = new Map<string, number>();
      endpoints.forEach((e, i) => {
        if (e.address === undefined || e.port === undefined) return;
        const key = endpointKey(e.address, e.port);
        const first = seen.get(key);
        if (first !== undefined) w.fail(`duplicate endpoint ${key} (same as ${formatPath([...w.path, first])})`, [i]);
        else seen.set(key, i);
      });
    },
  }),
  balance: str(
    'roundrobin | weighted | leastconn | p2c | sticky | sticky(cookie:NAME) | hash(ip) | hash(header:NAME) | hash(cookie:NAME). sticky uses cookie "portico_sticky" unless named.',
    'roundrobin',
    BALANCE,
  ),
  health,
  vips: list('L4 VIPs that forward to this service.', vip, []),
  labels,
});

const timeouts = optionalSection('Per-route timeouts. A missing one takes the L7 default; "0s" disables it.', {
  connectMs: duration('Time to open a connection to an endpoint.'),
  responseHeaderMs: duration('Time from request sent to response header received.'),
  idleMs: duration('Time a connection may carry no data.'),
});

const route = section(
  'An HTTP route: requests on an entrypoint that match host, path (and methods, headers) go to a service.',
  {
    entrypoint: required(str('Name of an entrypoint (a key of entrypoints).')),
    host: required(
      str(
        'Host to match, case-insensitive: "app.example.test", "*.example.test" (one or more labels), or "*" (any).',
        undefined,
        ROUTE_HOST,
      ),
    ),
    path: str('Path to match.', '/', HTTP_PATH),
    pathMatch: oneOf(
      'prefix: every path that starts with it, byte-wise as HAProxy path_beg and Traefik PathPrefix ("/api" also matches "/apix"; write "/api/" for below only); exact: that path only.',
      ['prefix', 'exact'],
      'prefix',
    ),
    methods: list(
      'HTTP methods to match (upper-cased). Absent: any.',
      str('An HTTP method.', undefined, HTTP_TOKEN, { map: (m) => m.toUpperCase() }),
      undefined,
      { uniqueItems: true, dedupe: true },
    ),
    headers: list(
      'Request headers that must all match. Absent: none.',
      section('A header match.', {
        name: required(str('Header name (case-insensitive).', undefined, HTTP_TOKEN, { map: (n) => n.toLowerCase() })),
        value: str('Exact value (case-sensitive). Absent: the header must be present.'),
      }),
    ),
    service: required(str('Name of a service (a key of services).')),
    stripPrefix: str('Remove this prefix from the path before forwarding; must be a prefix of path.', undefined, HTTP_PATH),
    addPrefix: str('Prepend this prefix to the path before forwarding (after stripPrefix).', undefined, HTTP_PATH),
    redirectToHttps: bool('Answer 308 to the https:// URL instead of forwarding. Default false.'),
    timeouts,
    maxBodyBytes: size('Largest request body accepted (413 above it). Absent: the l7 maxBodySize.', undefined, { file: 'maxBody' }),
  },
  {
    check(r, w) {
      if (r.stripPrefix !== undefined && r.path !== undefined && !r.path.startsWith(r.stripPrefix)) {
        w.fail(`"${r.stripPrefix}" is not a prefix of the route path "${r.path}", so it would never be stripped`, ['stripPrefix']);
      }
    },
  },
);

/** Two routes with the same match: the second can never be chosen, which is never what was meant. */
function checkRouteMatches(routes: Array<ValueOf<typeof route>>, w: Walk): void {
  const matches = new Map<string, number>();
  routes.forEach((r, i) => {
    const key = JSON.stringify([
      r.entrypoint,
      r.host,
      r.path,
      r.pathMatch,
      r.methods ? [...r.methods].sort() : null,
      r.headers ? r.headers.map((h) => `${h.name}=${h.value ?? ''}`).sort() : null,
    ]);
    const first = matches.get(key);
    if (first !== undefined)
      w.fail(`same match as routes[${first}] (entrypoint, host, path, methods, headers): this route would never be used`, [i]);
    else matches.set(key, i);
  });
}

const urls = required(
  custom<string[]>({
    file: 'url',
    schema: Type.Unsafe<string | string[]>({
      oneOf: [
        str('Marathon base URL.', undefined, HTTP_URL).schema,
        list('Several: tried in turn.', str('Marathon base URL.', undefined, HTTP_URL)).schema,
      ],
      description: 'http://master.mesos:8080, or a list tried in turn.',
    }),
    decode(raw) {
      const texts = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : undefined;
      if (texts === undefined) return INVALID;
      const out: string[] = [];
      for (const t of texts) {
        const r = typeof t === 'string' ? HTTP_URL.parse(t) : undefined;
        if (r?.ok) out.push(r.value);
      }
      return out;
    },
  }),
);

const marathon = optionalSection(
  'The Marathon feed: apps and tasks from a Marathon-compatible REST api (GET /v2/apps?embed=apps.tasks, then /v2/events), with marathon-lb HAPROXY_* and VIP labels.',
  {
    urls,
    groups: list('marathon-lb groups (HAPROXY_GROUP) this instance serves; "*" serves every app.', str('A group.'), ['external']),
    framework: str('DNS framework of Marathon apps.', 'marathon', FRAMEWORK),
    httpEntrypoint: str('Entrypoint of HAPROXY_{n}_VHOST routes over http.', 'web', NAME),
    httpsEntrypoint: str('Entrypoint of the same routes over https.', 'websecure', NAME),
    bindAddress: str(
      'Where service ports are bound when an app has no HAPROXY_{n}_BIND_ADDR (marathon-lb: all interfaces).',
      '127.0.0.1',
      IP,
    ),
    bindServicePorts: bool(
      "Bind each app's service port as marathon-lb does: tcp ports as IP VIPs on bindAddress, http ports as entrypoints of their own.",
      true,
    ),
    strictMode: bool('marathon-lb --strict-mode: serve only ports labelled HAPROXY_{n}_ENABLED=true.', false),
    priority: int('Conflict priority (file: 100).', 50, { min: 0, max: 1000 }),
    username: str('HTTP basic auth user.'),
    password: str('HTTP basic auth password (never logged).'),
    token: str('DC/OS authentication token, sent as Authorization: token=… (never logged).'),
  },
  {
    check(m, w) {
      if ((m.username === undefined) !== (m.password === undefined)) {
        w.fail('username and password go together', [m.username === undefined ? 'username' : 'password']);
      }
    },
  },
);

const consul = optionalSection(
  'The Consul catalog feed: healthy instances by blocking queries on /v1/health/service/<name>?passing; portico.* tags and meta make routes and VIPs (docs/consul.md).',
  {
    url: required(str('Consul HTTP api: http://127.0.0.1:8500.', undefined, HTTP_URL)),
    token: str('ACL token, sent as X-Consul-Token (never logged).'),
    datacenter: str("Datacenter to read. Default: the agent's own."),
    framework: str('DNS framework of Consul services.', 'consul', FRAMEWORK),
    entrypoint: str('Entrypoint of routes whose tags name none.', 'web', NAME),
    exposedByDefault: bool('Publish services without a portico.enable tag.', true),
    includeWarning: bool('Also serve instances whose checks are warning.', false),
    ignoreServices: list('Consul services never published.', str('A service name.'), ['consul']),
    priority: int('Conflict priority (file: 100).', 40, { min: 0, max: 1000 }),
  },
);

/** `apps.groups`: an empty list serves every group, as no list does. */
const appGroups = ((base: Setting<string[], false>): Setting<string[], false> => ({
  ...base,
  decode: (raw, w) => {
    const v = base.decode(raw, w);
    return v !== INVALID && v.length === 0 ? ['*'] : v;
  },
}))(list('marathon-lb groups served from these files; an empty list serves every group.', str('A group.'), ['*']));

const overlay = section('Overlay networks: a subnet per agent, an address per container, served to the portico-cni plugin.', {
  enabled: bool('Serve overlay IPAM to portico-cni.', true),
  agentId: str(
    'Stable id of this agent (it gets its subnets back after a restart). Default: random, kept in <data>/agent-id.',
    undefined,
    NAME,
  ),
  agentIp: str('Underlay address other agents send VXLAN packets to. Default: the first non-loopback IPv4, else 127.0.0.1.', undefined, IP),
  socket: str(
    'Unix socket portico-cni talks to (its ipam.socket); relative paths are under the data dir. When the default cannot be served (not root, another daemon on it), <data>/ipam.sock instead, with a warning.',
    '/run/portico/ipam.sock',
  ),
  programLinux: bool('Program vtep1024 (VXLAN VNI 1024), routes and FDB/ARP entries towards other agents. Off: IPAM only.', false),
  vtep: optionalSection('The VXLAN tunnel endpoint (DC/OS defaults).', {
    device: str('Device name. Default vtep1024.', undefined, NAME),
    vni: int('VXLAN network id. Default 1024.', undefined, { min: 1, max: 16777215 }),
    port: int('UDP port. Default 4789.', undefined, { min: 1, max: 65535 }),
    subnet: str('IPv4 VTEP addresses. Default 44.128.0.0/20.', undefined, asWritten(CIDR)),
    subnet6: str('IPv6 VTEP addresses. Default fd01:a::/64.', undefined, asWritten(CIDR)),
    macOui: custom<string>({
      schema: Type.String({
        pattern: '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){2}$',
        description: 'First three bytes of VTEP MACs. Default 70:b3:d5.',
      }),
      decode: (raw) => (typeof raw === 'string' && /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){2}$/.test(raw) ? raw : INVALID),
    }),
  }),
  networks: list(
    'Overlay networks. Default dcos (9.0.0.0/8, /24 per agent) and dcos6 (fd01:b::/64, /80 per agent). A subnet in use cannot be changed.',
    section(
      'An overlay network.',
      {
        name: required(str('Name CNI configs use (ipam.network).', undefined, NAME)),
        subnet: required(str('The whole overlay.', undefined, CIDR)),
        prefix: required(int("Prefix length of each agent's slice.", undefined, { min: 8, max: 126 })),
        mtu: int('MTU for containers. Default 1420.', undefined, { min: 576, max: 9000 }),
      },
      {
        check(n, w) {
          if (n.subnet === undefined || n.prefix === undefined) return;
          const bits = Number(n.subnet.split('/')[1] ?? 0);
          if (n.prefix <= bits) w.fail(`must be longer than the subnet's /${bits}`, ['prefix']);
        },
      },
    ),
  ),
});

/** The whole file. */
/**
 * Data-plane worker processes. `auto` is one per core this process may use (os.availableParallelism());
 * 0 runs the planes inside the control process (no isolation from config parsing: for debugging).
 */
const workers = custom<number, 'auto'>({
  // One schema, not a union: `minimum`/`maximum` bind numbers and `enum`-like `pattern` strings only, so a wrong
  // value gets one error that says what is wrong instead of one per branch.
  schema: Type.Unsafe<number | 'auto'>({
    type: ['integer', 'string'],
    pattern: '^auto$',
    minimum: 0,
    maximum: 64,
    description:
      '`portico up` runs the L7, L4 and DNS planes in this many worker processes, all serving the same listeners; ' +
      '"auto" = one per core. 0: in the control process itself (config parsing and feeds then share their thread). ' +
      'Applies at start.',
    default: 'auto',
  }),
  def: 'auto',
  decode: (raw) =>
    raw === 'auto'
      ? availableParallelism()
      : Number.isInteger(raw) && (raw as number) >= 0 && (raw as number) <= 64
        ? (raw as number)
        : INVALID,
});

export const configSettings = section(
  'Portico configuration (config/portico.yaml). Every section is optional; an empty file is all defaults.',
  {
    data: str('Data directory: embedded store journal, CA, api token (created 0700). Relative to the working directory.', './data'),
    store: str(
      'Shared state: "embedded" (one machine) or redis://host:6379/0, rediss://… (TLS), redis-sentinel://h1:26379,h2:26379/mymaster.',
      'embedded',
      STORE,
    ),
    workers,
    api: section('The admin api (REST, /metrics, UI). Every path but /healthz and /readyz wants the bearer token in <data>/api-token.', {
      listen: str('"host:port" the api listens on (loopback by default: the api is an admin surface).', '127.0.0.1:9900', LISTEN),
      metricsPublic: bool('Serve /metrics without the bearer token.', false),
    }),
    entrypoints: map('L7 listeners by name.', entrypoint, { key: NAME }),
    dns: dnsSettings,
    l7: l7Settings,
    l4: l4Settings,
    overlay,
    marathon,
    consul,
    apps: section('Marathon app definitions kept in files, translated as the Marathon feed does.', {
      dir: str('Directory of *.json app definitions (one app, a list, or {apps: [...]}); relative to the config file.', 'apps'),
      groups: appGroups,
    }),
    vips: section('L4 virtual IPs.', {
      listen: str('Address VIPs bind to when the VIP address is not routable on this machine.', '127.0.0.1', IP),
    }),
    services: map('Services by name (names: letters, digits, "-", "_", ".").', service, { key: NAME }),
    routes: list('HTTP routes, in order.', route, [], { check: checkRouteMatches }),
  },
);

/**
 * The JSON Schema (draft-07) of the config file, as plain JSON: what the api serves, editors complete
 * from, and the loader compiles once with ajv.
 */
export const configSchema: JsonSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://portico.invalid/schemas/config.json',
  title: 'Portico config file',
  ...(JSON.parse(JSON.stringify(configSettings.schema)) as JsonSchema),
};
