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
