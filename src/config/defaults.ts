/**
 * Every default of the config file, in one place. The schema (for documentation), the loader (to fill
 * what a file leaves out) and DEFAULT_CONFIG all read from here, so a default is changed in one line.
 *
 * Durations and sizes are written as the config file writes them (strings); the loader converts them.
 */
export const DEFAULTS = {
  /** Directory for the embedded store's journal, the CA and the api token. Relative to the daemon's cwd. */
  data: './data',
  /** `embedded` = in-process store, one machine, nothing to set up. */
  store: 'embedded',
  api: {
    /** Admin REST api, /metrics and the UI. Loopback only by default: the api is an admin surface. */
    listen: '127.0.0.1:9900',
    /** When false, /metrics wants the bearer token like every other path. */
    metricsPublic: false,
  },
  entrypoint: {
    tls: {
      /** Issue certificates from the cluster CA for the entrypoint's route hosts. */
      auto: false,
      /** SNI passthrough (no termination). */
      passthrough: false,
    },
  },
  dns: {
    /** Port 8053, not 53: binding 53 needs privileges, and the default must start as any user. */
    listen: '127.0.0.1:8053',
    /** Where names outside our zones are forwarded. Empty: recursion is refused (REFUSED). */
    upstreams: [] as string[],
    /** Who may use us as a recursive resolver (forwarding). Loopback only, to avoid an open resolver. */
    allowRecursionFrom: ['127.0.0.0/8', '::1/128'],
    /** TTL of the answers we are authoritative for: 5 s, as dcos-dns. Whole seconds. */
    ttl: '5s',
  },
  l7: {
    /** One JSON access-log line per request (pino, component "access"). */
    accessLog: true,
    /** A client must send a whole request head within this long of its first byte (slowloris). */
    headerTimeout: '10s',
    /** An idle keep-alive client connection is closed after this long. */
    keepAliveTimeout: '60s',
    /** Connecting to an endpoint, queueing for a pool slot included. */
    connectTimeout: '5s',
    /** From request sent to response head received. */
    responseHeaderTimeout: '60s',
    /** No byte either way while a body streams. */
    idleTimeout: '60s',
    /** An upgraded (WebSocket) tunnel with no traffic is closed after this long. */
    tunnelIdleTimeout: '1h',
    /** An idle pooled connection to an endpoint is closed after this long. */
    upstreamKeepAlive: '30s',
    /** Open connections per endpoint at most; further requests queue. */
    maxConnectionsPerEndpoint: 1024,
    /** Requests queued per endpoint at most; beyond it, 503. */
    maxQueuePerEndpoint: 1024,
    /** Request head limit (431 above it). */
    maxHeaderSize: '16KiB',
    /** Attempts after the first for one request (connect failures; 502/503 for idempotent requests). */
    retries: 2,
    /** Retries in flight at most, as a share of requests in flight. */
    retryBudget: 0.2,
    /** basicAuth: password hashings per second for credentials not yet verified (429 beyond). */
    authHashesPerSecond: 20,
  },
  overlay: {
    /** Serve overlay IPAM (agent subnets, container leases) to the portico-cni plugin. */
    enabled: true,
    /**
     * Unix socket portico-cni talks to (its own default too); relative paths are under the data dir. When
     * this default cannot be served (not root, another daemon on it) the daemon serves `<data>/ipam.sock`
     * instead and says so.
     */
    socket: '/run/portico/ipam.sock',
    /** Program Linux (vtep1024, routes, FDB/ARP) towards other agents. Off: IPAM only. */
    programLinux: false,
  },
  marathon: {
    /** marathon-lb groups served (the DC/OS marathon-lb package's default). `*` serves every app. */
    groups: ['external'],
    framework: 'marathon',
    httpEntrypoint: 'web',
    httpsEntrypoint: 'websecure',
    /** Where service ports are bound when an app gives no HAPROXY_{n}_BIND_ADDR (marathon-lb: all interfaces). */
    bindAddress: '127.0.0.1',
    bindServicePorts: true,
    strictMode: false,
    /** Below the config file's 100. */
    priority: 50,
  },
  consul: {
    framework: 'consul',
    entrypoint: 'web',
    exposedByDefault: true,
    includeWarning: false,
    ignoreServices: ['consul'],
    priority: 40,
  },
  apps: {
    /** Marathon app JSON files, relative to the config file's directory. */
    dir: 'apps',
    groups: ['*'],
  },
  vips: {
    /** Address L4 VIPs bind to when the VIP's own address is not routable on this machine. */
    listen: '127.0.0.1',
  },
  service: {
    /** Mesos framework used for the service's DNS names (`<task>.marathon.mesos`). */
    framework: 'marathon',
    balance: 'roundrobin',
  },
  endpoint: {
    /** Relative weight, 0..256; 0 = draining. */
    weight: 1,
    /** No verdict yet: served, as HAProxy serves a server before its first check. */
    health: 'unknown' as const,
  },
  health: {
    /** Time between two checks of one endpoint: 2 s. */
    interval: '2s',
    /** Time one check may take: 1 s. */
    timeout: '1s',
    /** Consecutive successes before an endpoint is marked up. */
    rise: 2,
    /** Consecutive failures before an endpoint is marked down. */
    fall: 3,
    /** Accepted HTTP status range, inclusive. */
    expect: '200-399',
  },
  vip: {
    protocol: 'tcp' as const,
  },
  route: {
    path: '/',
    pathMatch: 'prefix' as const,
  },
  /** Cookie used by `balance: sticky` when no name is given. */
  stickyCookie: 'portico_sticky',
} as const;
