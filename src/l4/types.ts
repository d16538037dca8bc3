/**
 * Shapes shared by the L4 engine's parts: what a listener serves (a `Front`: a VIP, or an SNI-passthrough
 * entrypoint), its counters, and what a TCP session or UDP flow asks of the plane (`L4Host`).
 */
import type { Protocol } from '../model/types.js';
import type { StreamOptions } from '../net/stream.js';
import type { L4Failure, L4Options } from './options.js';
import type { Member, ServicePool } from './pool.js';
import type { Address } from './proxy-protocol.js';

/** Counters of one VIP or SNI entrypoint: plain numbers, read by the metrics collector and the api. */
export class FrontStats {
  /** TCP connections accepted. */
  connections = 0;
  /** TCP connections open now. */
  active = 0;
  /** Client → endpoint bytes (TCP and UDP payload). */
  bytesIn = 0;
  /** Endpoint → client bytes. */
  bytesOut = 0;
  /** UDP datagrams client → endpoint, endpoint → client. */
  datagramsIn = 0;
  datagramsOut = 0;
  /** UDP flows open now. */
  flows = 0;
  readonly rejected = new Map<L4Failure, number>();

  count(reason: L4Failure): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }
}

/** Host → service routing of an SNI-passthrough entrypoint, compiled from the table's routes on it. */
export class SniRouter {
  constructor(
    private readonly exact: ReadonlyMap<string, ServicePool>,
    /** `*.example.test` as `.example.test`, longest first. */
    private readonly wildcards: ReadonlyArray<readonly [string, ServicePool]>,
    private readonly fallback: ServicePool | undefined,
  ) {}

  /** The pool for a server name (lower-cased, no trailing dot); `undefined` name: only the `*` route matches. */
  lookup(serverName: string | undefined): ServicePool | undefined {
    if (serverName !== undefined) {
      const hit = this.exact.get(serverName);
      if (hit) return hit;
      for (const [suffix, pool] of this.wildcards) {
        // `*.example.test` matches one or more labels before `.example.test`, not the bare domain.
        if (serverName.length > suffix.length && serverName.endsWith(suffix)) return pool;
      }
    }
    return this.fallback;
  }

  /** host → service id, for the api. */
  describe(): Array<{ host: string; service: string }> {
    const out = [...this.exact].map(([host, p]) => ({ host, service: p.id }));
    for (const [suffix, p] of this.wildcards) out.push({ host: `*${suffix}`, service: p.id });
    if (this.fallback) out.push({ host: '*', service: this.fallback.id });
    return out;
  }
}

export interface Front {
  kind: 'vip' | 'sni';
  /** VIP key (`tcp/web.marathon:80`), or `sni/<entrypoint>`. */
  key: string;
  protocol: Protocol;
  stats: FrontStats;
  /** VIP: the service's pool. SNI: chosen per connection by `sni`. */
  pool?: ServicePool;
  sni?: SniRouter;
  /** VIP: send a PROXY header of this version to endpoints. */
  proxyProtocol?: 'v1' | 'v2';
}

/** What a TCP session or UDP flow needs from the plane. */
export interface L4Host {
  readonly opts: Readonly<L4Options>;
  /** How TCP sessions' streams read and write (`streamOptions(opts)` of tcp.ts), made once. */
  readonly streamOptions: Readonly<StreamOptions>;
  /** A cached clock (ms since epoch), updated every timer tick and at each accept. */
  readonly now: number;
  /** PROXY headers are accepted from some sources (and inspected for on every other connection). */
  readonly acceptProxy: boolean;
  trustedProxy(address: string): boolean;
  /** A connect to `m` succeeded (passive health: reset the failure run). */
  connectSucceeded(m: Member): void;
  /** A connect to `m` failed or timed out (passive health; counted per endpoint). */
  connectFailed(m: Member, reason: 'connect-failed' | 'connect-timeout', err: Error | undefined): void;
  /** A connection or flow was refused or failed: count it and log one line. */
  rejected(front: Front, reason: L4Failure, detail: RejectDetail): void;
}

/** One forwarded TCP connection (tcp.ts), on libuv handles or net.Sockets: what the plane holds of it. */
export interface L4Session {
  readonly front: Front;
  /** The endpoint it is connected (or connecting) to. */
  readonly member: Member | undefined;
  /** Client → endpoint and endpoint → client bytes so far. */
  readonly bytes: { in: number; out: number };
  /** Whether the endpoint's side is being read now (false while paused by backpressure). Tests. */
  readonly upstreamReading: boolean;
  /** The plane's coarse tick: deadlines, idleness, draining, byte counters. */
  tick(now: number): void;
  /** Close both sides now. */
  destroy(): void;
  /** Report bytes moved since the last flush to the VIP's and the endpoint's counters. */
  flush(): void;
}

export interface RejectDetail {
  client?: Address;
  endpoint?: string;
  tried?: string[];
  serverName?: string;
  err?: Error;
  message?: string;
}
