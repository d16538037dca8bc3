/**
 * The JSON Schema (draft-07) of the config file. The api serves it at /v1/config/schema, editors can
 * use it for completion, and the loader compiles it once with ajv. Every object is closed
 * (`additionalProperties: false`): a misspelt key is an error, never silently ignored.
 *
 * `format` names are Portico's own (see formats.ts); generic JSON Schema tools ignore them, ajv enforces
 * them. Rules a schema cannot express (references between sections, duplicates, one-of-two fields) are
 * checked by the loader after the schema.
 *
 * Later sections — `pki`, `overlay`, `marathon`, `consul` — are added as top-level properties here, with
 * their defaults in defaults.ts and their types in types.ts, by the issues that bring them.
 */
import { DEFAULTS } from './defaults.js';

export type JsonSchema = { [keyword: string]: unknown };

const str = (description: string, format?: string, def?: string): JsonSchema => ({
  type: 'string',
  ...(format !== undefined && { format }),
  description,
  ...(def !== undefined && { default: def }),
});

const duration = (description: string, def?: string): JsonSchema =>
  str(`${description} A duration string: "250ms", "2s", "1m30s" (units ms, s, m, h).`, 'duration', def);

const port = (description: string): JsonSchema => ({ type: 'integer', minimum: 1, maximum: 65535, description });

const list = (description: string, items: JsonSchema, def?: unknown[]): JsonSchema => ({
  type: 'array',
  items,
  description,
  ...(def !== undefined && { default: def }),
});

const closed = (description: string, properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema => ({
  type: 'object',
  description,
  properties,
  ...(required.length > 0 && { required }),
  additionalProperties: false,
});

/** A map keyed by names (services, entrypoints). */
const namedMap = (description: string, value: JsonSchema): JsonSchema => ({
  type: 'object',
  description,
  propertyNames: { type: 'string', format: 'name' },
  additionalProperties: value,
  default: {},
});

const labels: JsonSchema = {
  type: 'object',
  description: 'Free-form string labels (marathon-lb style HAPROXY_* labels included). Values are strings: quote numbers.',
  additionalProperties: { type: 'string', description: 'A label value.' },
  default: {},
};

const cidrList = (description: string, def?: string[]): JsonSchema =>
  list(description, str('A CIDR ("10.0.0.0/8", "fd00::/8"); a bare address is a host prefix.', 'cidr'), def);

const tls = closed('TLS on this entrypoint. Absent: plain HTTP. Set auto, certificates, or passthrough.', {
  auto: {
    type: 'boolean',
    description: 'Issue a certificate from the cluster CA, by SNI name, for every route host on this entrypoint.',
    default: DEFAULTS.entrypoint.tls.auto,
  },
  certificates: list(
    'Certificates to serve, chosen by SNI. Default: none.',
    closed(
      'A PEM certificate (chain) and its key. Relative paths are relative to the config file.',
      { certFile: str('PEM certificate or chain file.'), keyFile: str('PEM private key file.') },
      ['certFile', 'keyFile'],
    ),
    [],
  ),
  passthrough: {
    type: 'boolean',
    description: 'Forward TLS unopened to the backend chosen by SNI (L4); excludes auto and certificates.',
    default: DEFAULTS.entrypoint.tls.passthrough,
  },
});

const entrypoint = closed(
  'An L7 (HTTP/HTTPS) listener.',
  {
    listen: str('"host:port" or "[v6]:port" (quote IPv6 in YAML); ":8080" means all IPv4 interfaces; port 0 picks a free port.', 'listen'),
    tls,
    trustedProxies: cidrList('Peers whose X-Forwarded-* / Forwarded headers are believed. Default: none.', []),
  },
  ['listen'],
);

const endpoint = closed(
  'One backend instance.',
  {
    address: str('IPv4 or IPv6 address of the instance.', 'ip'),
    port: port('Port of the instance, 1..65535.'),
    weight: {
      type: 'integer',
      minimum: 0,
      maximum: 256,
      description: 'Relative weight 0..256 for weighted balancing; 0 means draining (no new requests). Default 1.',
      default: DEFAULTS.endpoint.weight,
    },
    health: {
      enum: ['healthy', 'unknown', 'unhealthy', 'draining'],
      description:
        'Health as the file states it. unknown = no verdict yet (served); unhealthy = never served; draining = open requests finish, no new ones. Default unknown.',
      default: DEFAULTS.endpoint.health,
    },
    task: str('Task name for DNS (<task>.<framework>.mesos). Default: the service name.'),
    taskId: str('Unique task id, if the instance has one (e.g. Marathon "web.1b2c…").'),
    agentAddress: str('IP of the machine that runs the instance (for .agentip. names).', 'ip'),
    network: str('Overlay network the address belongs to, if it is a container IP.'),
    labels,
  },
  ['address', 'port'],
);

const health = closed(
  'Active health checks. Absent: none (endpoints keep the health the file gives them). Neither http nor tcp: a TCP connect check.',
  {
    http: str('Path to GET (e.g. /healthz); an HTTP check. Excludes tcp: true.', 'http-path'),
    tcp: { type: 'boolean', description: 'A TCP connect check (the default kind when http is absent).' },
    interval: duration('Time between two checks of one endpoint; must be > 0. Default 2s.', DEFAULTS.health.interval),
    timeout: duration('Time one check may take; must be > 0. Default 1s.', DEFAULTS.health.timeout),
    rise: {
      type: 'integer',
      minimum: 1,
      maximum: 100,
      description: 'Consecutive successes before an endpoint is up. Default 2.',
      default: DEFAULTS.health.rise,
    },
    fall: {
      type: 'integer',
      minimum: 1,
      maximum: 100,
      description: 'Consecutive failures before an endpoint is down. Default 3.',
      default: DEFAULTS.health.fall,
    },
    expect: str('Accepted HTTP status range, inclusive: "200-399" or "204". Default "200-399".', 'status-range', DEFAULTS.health.expect),
  },
);

const vip = closed(
  'An L4 virtual IP. Exactly one of name and address.',
  {
    name: str(
      'Named VIP: "web" is served as web.<framework>.l4lb.thisdcos.directory (sanitised as dcos-l4lb does: "/grp/app" → "grpapp").',
      'vip-name',
    ),
    address: str('Explicit VIP address (IPv4 or IPv6).', 'ip'),
    port: port('VIP port, 1..65535.'),
    protocol: { enum: ['tcp', 'udp'], description: 'Default tcp.', default: DEFAULTS.vip.protocol },
    proxyProtocol: { enum: ['v1', 'v2'], description: 'Send a PROXY protocol header of this version to backends. Absent: none.' },
  },
  ['port'],
);

const service = closed('A service: a set of endpoints and how to balance, check and expose them.', {
  framework: str(
    'Mesos framework for DNS names (web.marathon.mesos). Normalised to DNS labels. Default marathon.',
    'framework',
    DEFAULTS.service.framework,
  ),
  endpoints: list('Backend instances. Default: none (requests get 503).', endpoint, []),
  balance: str(
    'roundrobin | weighted | leastconn | p2c | sticky | sticky(cookie:NAME) | hash(ip) | hash(header:NAME) | hash(cookie:NAME). sticky uses cookie "portico_sticky" unless named. Default roundrobin.',
    'balance',
    DEFAULTS.service.balance,
  ),
  health,
  vips: list('L4 VIPs that forward to this service. Default: none.', vip, []),
  labels,
});

const timeouts = closed('Per-route timeouts. A missing one takes the L7 default; "0s" disables it.', {
  connect: duration('Time to open a connection to an endpoint.'),
  responseHeader: duration('Time from request sent to response header received.'),
  idle: duration('Time a connection may carry no data.'),
});

const route = closed(
  'An HTTP route: requests on an entrypoint that match host, path (and methods, headers) go to a service.',
  {
    entrypoint: str('Name of an entrypoint (a key of entrypoints).'),
    host: str('Host to match, case-insensitive: "app.example.test", "*.example.test" (one or more labels), or "*" (any).', 'route-host'),
    path: str('Path to match. Default "/".', 'http-path', DEFAULTS.route.path),
    pathMatch: {
      enum: ['prefix', 'exact'],
      description:
        'prefix: every path that starts with it, byte-wise as HAProxy path_beg and Traefik PathPrefix ("/api" also matches "/apix"; write "/api/" for below only); exact: that path only. Default prefix.',
      default: DEFAULTS.route.pathMatch,
    },
    methods: { ...list('HTTP methods to match (upper-cased). Absent: any.', str('An HTTP method.', 'http-token')), uniqueItems: true },
    headers: list(
      'Request headers that must all match. Absent: none.',
      closed(
        'A header match.',
        {
          name: str('Header name (case-insensitive).', 'http-token'),
          value: str('Exact value (case-sensitive). Absent: the header must be present.'),
        },
        ['name'],
      ),
    ),
    service: str('Name of a service (a key of services).'),
    stripPrefix: str('Remove this prefix from the path before forwarding; must be a prefix of path.', 'http-path'),
    addPrefix: str('Prepend this prefix to the path before forwarding (after stripPrefix).', 'http-path'),
    redirectToHttps: { type: 'boolean', description: 'Answer 308 to the https:// URL instead of forwarding. Default false.' },
    timeouts,
    maxBody: {
      type: ['string', 'integer'],
      format: 'size',
      minimum: 0,
      description: 'Largest request body accepted (413 above it): bytes, or "512k", "10MiB", "1g" (binary units). Absent: no limit.',
    },
  },
  ['entrypoint', 'host', 'service'],
);

export const configSchema: JsonSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://portico.invalid/schemas/config.json',
  title: 'Portico config file',
  ...closed('Portico configuration (config/portico.yaml). Every section is optional; an empty file is all defaults.', {
    data: str(
      'Data directory: embedded store journal, CA, api token (created 0700). Relative to the working directory. Default ./data.',
      undefined,
      DEFAULTS.data,
    ),
    store: str(
      'Shared state: "embedded" (one machine) or redis://host:6379/0, rediss://… (TLS), redis-sentinel://h1:26379,h2:26379/mymaster. Default embedded.',
      'store',
      DEFAULTS.store,
    ),
    api: closed('The admin api (REST, /metrics, UI). Every path but /healthz and /readyz wants the bearer token in <data>/api-token.', {
      listen: str('"host:port" the api listens on. Default 127.0.0.1:9900.', 'listen', DEFAULTS.api.listen),
      metricsPublic: {
        type: 'boolean',
        description: 'Serve /metrics without the bearer token. Default false.',
        default: DEFAULTS.api.metricsPublic,
      },
    }),
    entrypoints: namedMap('L7 listeners by name. Default: none.', entrypoint),
    dns: closed('The DNS server: authoritative for DC/OS names, forwarder for the rest.', {
      listen: str('"host:port" for UDP and TCP. Default 127.0.0.1:8053.', 'listen', DEFAULTS.dns.listen),
      upstreams: list(
        'Forwarders for names outside our zones: an IP (port 53) or "ip:port". Default: none (recursion refused).',
        str('A forwarder.', 'upstream'),
        [...DEFAULTS.dns.upstreams],
      ),
      allowRecursionFrom: cidrList('Clients allowed to recurse through us. Default [127.0.0.0/8, ::1/128].', [
        ...DEFAULTS.dns.allowRecursionFrom,
      ]),
      ttl: duration('TTL of authoritative answers, whole seconds; "0s" asks resolvers not to cache. Default 5s.', DEFAULTS.dns.ttl),
      zoneUpstreams: {
        type: 'object',
        description:
          'Per-zone forwarders: names in a zone go to its upstreams instead of the global ones, e.g. { "corp.example": ["192.0.2.53"] }.',
        propertyNames: { type: 'string', format: 'domain' },
        additionalProperties: list('Forwarders for this zone.', str('A forwarder.', 'upstream')),
      },
      domains: list(
        'Extra domains we are authoritative for, with the same Mesos-style names under each. mesos and thisdcos.directory are always served.',
        str('A DNS domain.', 'domain'),
      ),
    }),
    l7: closed('The L7 (HTTP) engine. Per-route timeouts and maxBody override these.', {
      accessLog: { type: 'boolean', description: 'One JSON access-log line per request. Default true.', default: DEFAULTS.l7.accessLog },
      headerTimeout: duration(
        'A client must send a whole request head within this long of its first byte (slowloris); 408 after it. Default 10s.',
        DEFAULTS.l7.headerTimeout,
      ),
      keepAliveTimeout: duration(
        'An idle keep-alive client connection is closed after this long. Default 60s.',
        DEFAULTS.l7.keepAliveTimeout,
      ),
      connectTimeout: duration('Connecting to an endpoint, queueing included. Default 5s.', DEFAULTS.l7.connectTimeout),
      responseHeaderTimeout: duration(
        'From request sent to response head received (504 after it). Default 60s.',
        DEFAULTS.l7.responseHeaderTimeout,
      ),
      idleTimeout: duration('No byte either way while a body streams. Default 60s.', DEFAULTS.l7.idleTimeout),
      tunnelIdleTimeout: duration(
        'An upgraded (WebSocket) tunnel with no traffic is closed after this long. Default 1h.',
        DEFAULTS.l7.tunnelIdleTimeout,
      ),
      upstreamKeepAlive: duration(
        'An idle pooled connection to an endpoint is closed after this long. Default 30s.',
        DEFAULTS.l7.upstreamKeepAlive,
      ),
      maxConnectionsPerEndpoint: {
        type: 'integer',
        minimum: 1,
        maximum: 1000000,
        description: 'Open connections per endpoint at most; further requests queue. Default 1024.',
        default: DEFAULTS.l7.maxConnectionsPerEndpoint,
      },
      maxQueuePerEndpoint: {
        type: 'integer',
        minimum: 0,
        maximum: 1000000,
        description: 'Requests queued per endpoint at most; beyond it, 503. Default 1024.',
        default: DEFAULTS.l7.maxQueuePerEndpoint,
      },
      maxHeaderSize: {
        type: ['string', 'integer'],
        format: 'size',
        minimum: 1024,
        description: 'Request head limit, 431 above it: bytes or "16KiB". Default 16KiB.',
        default: DEFAULTS.l7.maxHeaderSize,
      },
      retries: {
        type: 'integer',
        minimum: 0,
        maximum: 10,
        description: 'Attempts after the first: on connect failures, and on 502/503 for idempotent requests with no body. Default 2.',
        default: DEFAULTS.l7.retries,
      },
      retryBudget: {
        type: 'number',
        minimum: 0,
        maximum: 1,
        description: 'Retries in flight at most, as a share of requests in flight (3 are always allowed). Default 0.2.',
        default: DEFAULTS.l7.retryBudget,
      },
      authHashesPerSecond: {
        type: 'integer',
        minimum: 1,
        maximum: 100000,
        description:
          'basicAuth: password hashings per second for credentials not yet verified (crypt costs milliseconds of CPU); beyond it such requests get 429. Verified credentials are never hashed again. Default 20.',
        default: DEFAULTS.l7.authHashesPerSecond,
      },
    }),
    overlay: closed('Overlay networks: a subnet per agent, an address per container, served to the portico-cni plugin.', {
      enabled: { type: 'boolean', description: 'Serve overlay IPAM to portico-cni. Default true.', default: DEFAULTS.overlay.enabled },
      agentId: str('Stable id of this agent (it gets its subnets back after a restart). Default: random, kept in <data>/agent-id.', 'name'),
      agentIp: str('Underlay address other agents send VXLAN packets to. Default: the first non-loopback IPv4, else 127.0.0.1.', 'ip'),
      socket: str(
        'Unix socket portico-cni talks to (its ipam.socket); relative paths are under the data dir. Default /run/portico/ipam.sock (the plugin default too); when that cannot be served (not root, another daemon on it), <data>/ipam.sock instead, with a warning.',
        undefined,
        DEFAULTS.overlay.socket,
      ),
      programLinux: {
        type: 'boolean',
        description: 'Program vtep1024 (VXLAN VNI 1024), routes and FDB/ARP entries towards other agents. Default false (IPAM only).',
        default: DEFAULTS.overlay.programLinux,
      },
      vtep: closed('The VXLAN tunnel endpoint (DC/OS defaults).', {
        device: str('Device name. Default vtep1024.', 'name'),
        vni: { type: 'integer', minimum: 1, maximum: 16777215, description: 'VXLAN network id. Default 1024.' },
        port: port('UDP port. Default 4789.'),
        subnet: str('IPv4 VTEP addresses. Default 44.128.0.0/20.', 'cidr'),
        subnet6: str('IPv6 VTEP addresses. Default fd01:a::/64.', 'cidr'),
        macOui: {
          type: 'string',
          pattern: '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){2}$',
          description: 'First three bytes of VTEP MACs. Default 70:b3:d5.',
        },
      }),
      networks: list(
        'Overlay networks. Default dcos (9.0.0.0/8, /24 per agent) and dcos6 (fd01:b::/64, /80 per agent). A subnet in use cannot be changed.',
        closed(
          'An overlay network.',
          {
            name: str('Name CNI configs use (ipam.network).', 'name'),
            subnet: str('The whole overlay.', 'cidr'),
            prefix: { type: 'integer', minimum: 8, maximum: 126, description: "Prefix length of each agent's slice." },
            mtu: { type: 'integer', minimum: 576, maximum: 9000, description: 'MTU for containers. Default 1420.' },
          },
          ['name', 'subnet', 'prefix'],
        ),
      ),
    }),
    marathon: closed(
      'The Marathon feed: apps and tasks from a Marathon-compatible REST api (GET /v2/apps?embed=apps.tasks, then /v2/events), with marathon-lb HAPROXY_* and VIP labels.',
      {
        url: {
          oneOf: [str('Marathon base URL.', 'http-url'), list('Several: tried in turn.', str('Marathon base URL.', 'http-url'))],
          description: 'http://master.mesos:8080, or a list.',
        },
        groups: list(
          'marathon-lb groups (HAPROXY_GROUP) this instance serves; "*" serves every app. Default [external].',
          str('A group.'),
          [...DEFAULTS.marathon.groups],
        ),
        framework: str('DNS framework of Marathon apps. Default marathon.', 'framework', DEFAULTS.marathon.framework),
        httpEntrypoint: str('Entrypoint of HAPROXY_{n}_VHOST routes over http. Default web.', 'name', DEFAULTS.marathon.httpEntrypoint),
        httpsEntrypoint: str('Entrypoint of the same routes over https. Default websecure.', 'name', DEFAULTS.marathon.httpsEntrypoint),
        bindAddress: str(
          'Where service ports are bound when an app has no HAPROXY_{n}_BIND_ADDR. Default 127.0.0.1 (marathon-lb: all interfaces).',
          'ip',
          DEFAULTS.marathon.bindAddress,
        ),
        bindServicePorts: {
          type: 'boolean',
          description:
            "Bind each app's service port as marathon-lb does: tcp ports as IP VIPs on bindAddress, http ports as entrypoints of their own. Default true.",
          default: DEFAULTS.marathon.bindServicePorts,
        },
        strictMode: {
          type: 'boolean',
          description: 'marathon-lb --strict-mode: serve only ports labelled HAPROXY_{n}_ENABLED=true. Default false.',
          default: DEFAULTS.marathon.strictMode,
        },
        priority: {
          type: 'integer',
          minimum: 0,
          maximum: 1000,
          description: 'Conflict priority (file: 100). Default 50.',
          default: DEFAULTS.marathon.priority,
        },
        username: str('HTTP basic auth user.'),
        password: str('HTTP basic auth password (never logged).'),
        token: str('DC/OS authentication token, sent as Authorization: token=… (never logged).'),
      },
      ['url'],
    ),
    consul: closed(
      'The Consul catalog feed: healthy instances by blocking queries on /v1/health/service/<name>?passing; portico.* tags and meta make routes and VIPs (docs/consul.md).',
      {
        url: str('Consul HTTP api: http://127.0.0.1:8500.', 'http-url'),
        token: str('ACL token, sent as X-Consul-Token (never logged).'),
        datacenter: str("Datacenter to read. Default: the agent's own."),
        framework: str('DNS framework of Consul services. Default consul.', 'framework', DEFAULTS.consul.framework),
        entrypoint: str('Entrypoint of routes whose tags name none. Default web.', 'name', DEFAULTS.consul.entrypoint),
        exposedByDefault: {
          type: 'boolean',
          description: 'Publish services without a portico.enable tag. Default true.',
          default: DEFAULTS.consul.exposedByDefault,
        },
        includeWarning: {
          type: 'boolean',
          description: 'Also serve instances whose checks are warning. Default false.',
          default: DEFAULTS.consul.includeWarning,
        },
        ignoreServices: list('Consul services never published. Default [consul].', str('A service name.'), [
          ...DEFAULTS.consul.ignoreServices,
        ]),
        priority: {
          type: 'integer',
          minimum: 0,
          maximum: 1000,
          description: 'Conflict priority (file: 100). Default 40.',
          default: DEFAULTS.consul.priority,
        },
      },
      ['url'],
    ),
    apps: closed('Marathon app definitions kept in files, translated as the Marathon feed does.', {
      dir: str(
        'Directory of *.json app definitions (one app, a list, or {apps: [...]}); relative to the config file. Default apps.',
        undefined,
        DEFAULTS.apps.dir,
      ),
      groups: list('marathon-lb groups served from these files. Default ["*"].', str('A group.'), [...DEFAULTS.apps.groups]),
    }),
    vips: closed('L4 virtual IPs.', {
      listen: str(
        'Address VIPs bind to when the VIP address is not routable on this machine. Default 127.0.0.1.',
        'ip',
        DEFAULTS.vips.listen,
      ),
    }),
    services: namedMap('Services by name (names: letters, digits, "-", "_", "."). Default: none.', service),
    routes: list('HTTP routes, in order. Default: none.', route, []),
  }),
};
