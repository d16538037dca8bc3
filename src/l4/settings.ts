/**
 * The L4 engine's settings, defined once: the config file's `l4:` section (schema, description, default)
 * and the engine's options (`L4Options`, engine units: `…Ms` milliseconds, `…Bytes` bytes) come from the
 * same line. The routing model has no L4 section of its own (a VIP says protocol, port, service and
 * PROXY-to-backend only), so every other L4 tunable is here.
 */
import { bool, CIDR, duration, int, list, oneOf, resolveSettings, section, size, str, type ValueOf } from '../model/settings.js';

function isPrime(n: number): boolean {
  if (n < 2 || !Number.isInteger(n)) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

export const l4Settings = section('The L4 engine: TCP and UDP VIPs, SNI passthrough entrypoints.', {
  connectTimeoutMs: duration('Connecting to an endpoint, per attempt (HAProxy timeout connect).', '5s', { min: 1 }),
  connectRetries: int('Attempts after the first, each on another endpoint, when a connect fails or times out.', 2, { min: 0, max: 10 }),
  idleTimeoutMs: duration('A TCP connection with no byte either way for this long is closed (IPVS tcp timeout: 15m).', '15m', { min: 1 }),
  maxConnectionsPerVip: int('Open TCP connections per VIP (or SNI entrypoint) at most; beyond it new ones are refused.', 10_000, {
    min: 1,
    max: 10_000_000,
  }),
  drainTimeoutMs: duration(
    'An endpoint that leaves the table, turns unhealthy or draining (weight 0) gets no new connections; its open ones may finish for this long, then they are closed. "0s": close them at once.',
    '60s',
  ),
  balance: oneOf(
    'Selection for services that choose none (label PORTICO_L4_BALANCE): maglev (consistent hashing), leastconn or roundrobin.',
    ['maglev', 'leastconn', 'roundrobin'],
    'maglev',
  ),
  maglevTableSize: int(
    'Maglev lookup-table size; a prime, larger than 100 × the endpoints of a service.',
    65_537,
    { min: 3, max: 16_777_213 },
    {
      check: (n) => (isPrime(n) ? undefined : `must be a prime (${n} is not; 65537, 655373 are)`),
    },
  ),
  hashKey: oneOf(
    'What Maglev hashes: five-tuple (client address and port, VIP address and port, protocol: every connection lands anywhere, instances behind ECMP agree) or source-ip (one client sticks to one endpoint while the set holds).',
    ['five-tuple', 'source-ip'],
    'five-tuple',
  ),
  healthCheck: section('Active TCP connect checks against endpoints of services that configure no health of their own.', {
    enabled: bool('Run these checks.', true),
    intervalMs: duration('Between two checks of one endpoint.', '2s', { min: 1 }),
    timeoutMs: duration('A connect that has not completed after this long fails the check.', '1s', { min: 1 }),
    rise: int('Consecutive successes before a down endpoint is served again.', 2, { min: 1, max: 100 }),
    fall: int('Consecutive failures before an endpoint leaves the selection.', 3, { min: 1, max: 100 }),
  }),
  passiveFailures: int('Consecutive connect failures that eject an endpoint passively; 0: never.', 3, { min: 0, max: 1000 }),
  passiveEjectMs: duration('How long a passively ejected endpoint stays out of the selection.', '10s', { min: 1 }),
  acceptProxyFrom: list(
    'Accept a PROXY protocol header (v1 or v2) from these sources only: load balancers in front (HAProxy accept-proxy). A connection from a trusted source must start with one; one from anywhere else that starts with one is refused. Empty: PROXY is not accepted and client bytes are not inspected.',
    str('A CIDR ("10.0.0.0/8", "fd00::/8"); a bare address is a host prefix.', undefined, CIDR),
    [],
  ),
  proxyHeaderTimeoutMs: duration('A trusted source must send its whole PROXY header within this long.', '5s', { min: 1 }),
  sniTimeoutMs: duration('An SNI-passthrough client must send its whole ClientHello within this long.', '10s', { min: 1 }),
  sniMaxHelloBytes: size('Largest ClientHello read to find the server name (over any number of records).', '32KiB', {
    min: 512,
    max: 1 << 20,
  }),
  udpIdleTimeoutMs: duration(
    'A UDP flow (client address:port → upstream socket) with no datagram either way for this long expires.',
    '30s',
    {
      min: 1,
    },
  ),
  udpMaxFlows: int('UDP flows per VIP at most; a new client beyond it is dropped (counted, logged) until flows expire.', 4096, {
    min: 1,
    max: 10_000_000,
  }),
  udpSocketBufferBytes: size(
    'Kernel receive and send buffer asked for UDP sockets (capped by net.core.rmem_max); 0: the kernel default.',
    '4MiB',
  ),
  bulkThresholdBytes: size(
    "Bytes one direction of a TCP connection carries through Node's ordinary read path before it switches to a reused per-socket read buffer (no allocation per read). 0: from the first byte; -1: never.",
    '128KiB',
    { min: -1 },
  ),
  readBufferBytes: size('Size of that per-socket read buffer.', '64KiB', { min: 1 }),
  highWaterMark: size(
    'net engine: the high-water mark of both net.Sockets of a connection: how far a socket paused by backpressure still reads ahead before it stops reading the kernel. Either engine writes at most one read per direction at a time; the uv engine stops reading at once.',
    '1MiB',
    { min: 1 },
  ),
  tcpEngine: oneOf(
    'Which streams TCP connections (VIPs and SNI entrypoints) run on: uv drives libuv handles directly (about half the CPU per connection), net uses net.Socket, auto is uv where this Node has the bindings. One session state machine runs on either.',
    ['auto', 'uv', 'net'],
    'auto',
  ),
  backlog: int('Listen backlog of VIP and SNI listeners.', 4096, { min: 1, max: 1_000_000 }),
  timerResolutionMs: duration('How often idle, connect and drain deadlines are checked: they fire up to this much late.', '500ms', {
    min: 1,
    max: 10_000,
  }),
  logLinesPerSecond: int(
    'Log lines about rejected or failed connections per second at most; the rest are counted in one summary line.',
    100,
    { min: 0, max: 1_000_000 },
  ),
});

/** The L4 engine's settings (engine units), as the `l4:` section of the config file decodes to. */
export type L4Options = ValueOf<typeof l4Settings>;

/** Every default of the `l4:` section, decoded. */
export const L4_DEFAULTS: Readonly<L4Options> = l4Settings.defaultValue as L4Options;

/** L4 options from a partial value given in code: defaults filled (healthCheck too), every value checked (TypeError naming it), frozen. */
export function resolveL4Options(
  partial: Partial<Omit<L4Options, 'healthCheck'>> & { healthCheck?: Partial<L4Options['healthCheck']> } = {},
): Readonly<L4Options> {
  return resolveSettings(l4Settings, partial, 'l4 option');
}
