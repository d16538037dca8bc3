/**
 * The L4 engine's settings, with defaults and units beside each. The routing model has no L4 section of
 * its own (a VIP says protocol, port, service and PROXY-to-backend only), so everything else lives here
 * and is passed to `createL4Plane({ options })`.
 *
 * Validated once by `resolveL4Options` (a bad value is a TypeError naming it); per-connection code only
 * reads the frozen result.
 */
import { parseCidr } from '../model/parse.js';

export type L4Balance = 'maglev' | 'leastconn' | 'roundrobin';

/**
 * What Maglev hashes to pick an endpoint for a new connection or UDP flow.
 * - `five-tuple`: client address and port, VIP address and port, protocol (the paper's choice: every
 *   connection lands anywhere, and instances behind ECMP agree on the endpoint of a given flow).
 * - `source-ip`: the client address only (affinity: one client sticks to one endpoint while the set holds).
 */
export type L4HashKey = 'five-tuple' | 'source-ip';

export interface L4HealthDefaults {
  /** Run active TCP connect checks against endpoints of services that configure no `health`. true. */
  enabled: boolean;
  /** Between two checks of one endpoint, ms. 2 s. */
  intervalMs: number;
  /** A connect that has not completed after this long fails the check, ms. 1 s. */
  timeoutMs: number;
  /** Consecutive successes before a down endpoint is served again. 2. */
  rise: number;
  /** Consecutive failures before an endpoint leaves the selection. 3. */
  fall: number;
}

export interface L4Options {
  /** Connecting to an endpoint, per attempt, ms. 5 s. */
  connectTimeoutMs: number;
  /** Attempts after the first, each on another endpoint, when a connect fails or times out. 2. */
  connectRetries: number;
  /** A TCP connection with no byte either way for this long is closed, ms. 15 min (IPVS's tcp timeout). */
  idleTimeoutMs: number;
  /** Open TCP connections per VIP (or SNI entrypoint) at most; beyond it new ones are refused. 10,000. */
  maxConnectionsPerVip: number;
  /**
   * An endpoint that leaves the table, turns unhealthy or draining (weight 0) gets no new connections; its
   * open ones may finish for this long, then they are closed, ms. 60 s. 0 = close them at once.
   */
  drainTimeoutMs: number;
  /** Selection when the service does not ask for one (see `balanceFor`). `maglev`. */
  balance: L4Balance;
  /** Maglev lookup-table size; must be a prime. 65537. */
  maglevTableSize: number;
  /** What Maglev hashes. `five-tuple`. */
  hashKey: L4HashKey;
  /** Active TCP connect checks for services without their own `health`. */
  healthCheck: L4HealthDefaults;
  /** Consecutive connect failures that eject an endpoint passively. 3. 0 = never. */
  passiveFailures: number;
  /** How long a passively ejected endpoint stays out of the selection, ms. 10 s. */
  passiveEjectMs: number;
  /**
   * Accept a PROXY protocol header (v1 or v2) from these sources only (CIDRs: a load balancer in front).
   * A connection from a trusted source must start with one; a connection from anywhere else that starts
   * with one is refused. Empty (the default): PROXY is not accepted and client bytes are not inspected.
   */
  acceptProxyFrom: string[];
  /** A trusted source must send its whole PROXY header within this long, ms. 5 s. */
  proxyHeaderTimeoutMs: number;
  /** An SNI-passthrough client must send its whole ClientHello within this long, ms. 10 s. */
  sniTimeoutMs: number;
  /** Largest ClientHello read to find the server name, bytes (handshake message, over any number of records). 32 KiB. */
  sniMaxHelloBytes: number;
  /** UDP: a flow (client address:port → upstream socket) with no datagram either way for this long expires, ms. 30 s. */
  udpIdleTimeoutMs: number;
  /** UDP: flows per VIP at most; a new client beyond it is dropped (counted, logged) until flows expire. 4096. */
  udpMaxFlows: number;
  /** Kernel receive/send buffer asked for UDP sockets, bytes (capped by net.core.rmem_max). 4 MiB. */
  udpSocketBufferBytes: number;
  /**
   * Bytes one direction of a TCP connection carries through Node's ordinary read path before it switches
   * to a reused per-socket read buffer (no allocation per read). Small exchanges never pay the buffer's
   * memory; bulk ones stop allocating. 128 KiB. 0 = from the first byte; -1 = never.
   */
  bulkThresholdBytes: number;
  /** Size of that per-socket read buffer, bytes. 64 KiB. */
  readBufferBytes: number;
  /**
   * `net` engine: the high-water mark of both net.Sockets of a connection, bytes: how far a socket paused
   * by backpressure still reads ahead before it stops reading the kernel. 1 MiB. (Either engine writes at
   * most one read per direction at a time; the `uv` engine stops reading at once.)
   */
  highWaterMark: number;
  /**
   * Which streams TCP connections (VIPs and SNI entrypoints) run on: `uv` drives libuv handles directly
   * (about half the CPU per connection; see src/net/uv.ts), `net` uses net.Socket. `auto` (the default)
   * is `uv` where this Node has the bindings. One session state machine (tcp.ts) runs on either.
   */
  tcpEngine: 'auto' | 'uv' | 'net';
  /** Listen backlog. 4096. */
  backlog: number;
  /** Timer resolution, ms: idle, connect and drain deadlines are checked this often. 500. */
  timerResolutionMs: number;
  /** Log lines about rejected or failed connections per second at most; the rest are counted in one summary line. 100. */
  logLinesPerSecond: number;
}

export const L4_DEFAULTS: Readonly<L4Options> = Object.freeze({
  connectTimeoutMs: 5_000,
  connectRetries: 2,
  idleTimeoutMs: 900_000,
  maxConnectionsPerVip: 10_000,
  drainTimeoutMs: 60_000,
  balance: 'maglev',
  maglevTableSize: 65_537,
  hashKey: 'five-tuple',
  healthCheck: Object.freeze({ enabled: true, intervalMs: 2_000, timeoutMs: 1_000, rise: 2, fall: 3 }),
  passiveFailures: 3,
  passiveEjectMs: 10_000,
  acceptProxyFrom: Object.freeze([]) as unknown as string[],
  proxyHeaderTimeoutMs: 5_000,
  sniTimeoutMs: 10_000,
  sniMaxHelloBytes: 32_768,
  udpIdleTimeoutMs: 30_000,
  udpMaxFlows: 4_096,
  udpSocketBufferBytes: 4 << 20,
  bulkThresholdBytes: 128 << 10,
  readBufferBytes: 64 << 10,
  highWaterMark: 1 << 20,
  tcpEngine: 'auto',
  backlog: 4_096,
  timerResolutionMs: 500,
  logLinesPerSecond: 100,
});

/** Why a connection (or a UDP flow) was refused or failed: a closed list, for logs, metrics and the api. */
export type L4Failure =
  | 'no-endpoint'
  | 'max-connections'
  | 'connect-failed'
  | 'connect-timeout'
  | 'proxy-required'
  | 'proxy-invalid'
  | 'proxy-untrusted'
  | 'proxy-timeout'
  | 'sni-invalid'
  | 'sni-timeout'
  | 'sni-no-route'
  | 'flow-table-full'
  | 'upstream-error';

export const L4_FAILURES: readonly L4Failure[] = [
  'no-endpoint',
  'max-connections',
  'connect-failed',
  'connect-timeout',
  'proxy-required',
  'proxy-invalid',
  'proxy-untrusted',
  'proxy-timeout',
  'sni-invalid',
  'sni-timeout',
  'sni-no-route',
  'flow-table-full',
  'upstream-error',
];

function isPrime(n: number): boolean {
  if (n < 2 || !Number.isInteger(n)) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** Defaults filled, every value range-checked (TypeError naming the option), frozen. */
export function resolveL4Options(partial: Partial<L4Options> = {}): Readonly<L4Options> {
  const o: L4Options = {
    ...L4_DEFAULTS,
    ...partial,
    healthCheck: { ...L4_DEFAULTS.healthCheck, ...partial.healthCheck },
    acceptProxyFrom: [...(partial.acceptProxyFrom ?? L4_DEFAULTS.acceptProxyFrom)],
  };
  const bad = (name: string, v: unknown, want: string): never => {
    throw new TypeError(`l4 option ${name} = ${JSON.stringify(v)}: ${want}`);
  };
  const nonNeg = (name: keyof L4Options) => {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) bad(name, v, 'must be a number ≥ 0');
  };
  const positive = (name: keyof L4Options) => {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) bad(name, v, 'must be a number > 0');
  };
  for (const k of [
    'connectTimeoutMs',
    'idleTimeoutMs',
    'maxConnectionsPerVip',
    'proxyHeaderTimeoutMs',
    'sniTimeoutMs',
    'udpIdleTimeoutMs',
    'udpMaxFlows',
    'readBufferBytes',
    'highWaterMark',
    'backlog',
    'timerResolutionMs',
    'passiveEjectMs',
  ] as const)
    positive(k);
  for (const k of ['connectRetries', 'drainTimeoutMs', 'passiveFailures', 'udpSocketBufferBytes', 'logLinesPerSecond'] as const) nonNeg(k);
  if (!Number.isInteger(o.connectRetries)) bad('connectRetries', o.connectRetries, 'must be a whole number');
  if (!['maglev', 'leastconn', 'roundrobin'].includes(o.balance)) bad('balance', o.balance, 'must be maglev, leastconn or roundrobin');
  if (!['auto', 'uv', 'net'].includes(o.tcpEngine)) bad('tcpEngine', o.tcpEngine, 'must be auto, uv or net');
  if (!['five-tuple', 'source-ip'].includes(o.hashKey)) bad('hashKey', o.hashKey, 'must be five-tuple or source-ip');
  if (!isPrime(o.maglevTableSize) || o.maglevTableSize > 16_777_213)
    bad('maglevTableSize', o.maglevTableSize, 'must be a prime ≤ 16777213');
  if (!Number.isInteger(o.bulkThresholdBytes) || o.bulkThresholdBytes < -1)
    bad('bulkThresholdBytes', o.bulkThresholdBytes, 'must be a whole number ≥ -1');
  if (o.sniMaxHelloBytes < 512 || o.sniMaxHelloBytes > 1 << 20) bad('sniMaxHelloBytes', o.sniMaxHelloBytes, 'must be 512..1048576');
  const h = o.healthCheck;
  if (!(h.intervalMs > 0) || !(h.timeoutMs > 0)) bad('healthCheck', h, 'intervalMs and timeoutMs must be > 0');
  if (!Number.isInteger(h.rise) || h.rise < 1 || !Number.isInteger(h.fall) || h.fall < 1)
    bad('healthCheck', h, 'rise and fall must be whole numbers ≥ 1');
  o.acceptProxyFrom = o.acceptProxyFrom.map((c) => {
    const p = parseCidr(c);
    return p.ok ? p.value : bad('acceptProxyFrom', c, p.error);
  });
  Object.freeze(o.healthCheck);
  Object.freeze(o.acceptProxyFrom);
  return Object.freeze(o);
}
