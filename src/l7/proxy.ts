/**
 * The HTTP/1.1 proxy engine: one `ClientConn` per accepted connection (client.ts), one `Exchange` per
 * request (exchange.ts), a `Tunnel` after a 101 (tunnel.ts). This file holds what the engine and the
 * plane share: the compiled table an exchange routes with and the host the engine asks for pools, limits
 * and telemetry.
 *
 * Connections are `Stream`s (stream.ts): libuv handles driven directly for plain HTTP and for every
 * upstream, net/tls sockets for TLS clients; the engine sees the same owner callbacks either way.
 *
 * Per connection: the request parser, timers and handlers are made once. Per request: one Exchange object;
 * the upstream request head is built as bytes from the parsed fields (heads.ts: framing rebuilt,
 * hop-by-hop and untrusted forwarding fields dropped, ours added: the forwarding fields once per
 * connection and Host), the response head and the first body bytes leave in one write, and body bytes
 * are forwarded as subarrays of what was read — copied first when they were read into the libuv streams'
 * shared buffer (`volatileReads`), since a write may outlive the read. Requests on one connection are
 * handled one at a time (pipelined requests wait in the parser's input), so responses always leave in
 * order. The route's request filters (filters/index.ts: redirect, allow-list, basic auth, body limit)
 * run before anything is sent upstream. Nothing per request goes through prom-client, a closure, a
 * promise or a setTimeout: counters are plain numbers (metrics.ts), timers are fields on a coarse wheel
 * (timers.ts), the clock is read once per event (clock.ts).
 *
 * The table an exchange routes with is read once, when its head arrives: a table swap mid-request
 * changes nothing for it.
 */
import type { AllowList } from './filters/allow-list.js';
import type { BasicAuth } from './filters/basic-auth.js';
import type { RequestFilter } from './filters/types.js';
import type { Upstream, UpstreamSet } from './balance/index.js';
import type { ClientConn } from './client.js';
import type { Exchange } from './exchange.js';
import type { RequestStats } from './metrics.js';
import type { L7Options } from './options.js';
import type { Pool } from './pool.js';
import type { RouteMatch } from './routing/index.js';
import type { TimerWheel } from './timers.js';

/** What the proxy needs from the plane: the current compiled table, pools, limits, telemetry. */
export interface ProxyHost {
  readonly opts: L7Options;
  readonly wheel: TimerWheel;
  /** The compiled table now; an exchange keeps the one it started with. */
  current(): CompiledTable;
  pool(u: Upstream): Pool;
  /** An exchange finished: log and count it. */
  record(ex: Exchange): void;
  /** Passive health: a result for an endpoint. */
  observe(u: Upstream, ok: boolean): void;
  /** Retry budget: may another retry start now? Counts it if so. */
  retryStart(): boolean;
  retryEnd(): void;
  active: number;
}

export interface CompiledTable {
  version: number;
  routers: Map<
    string,
    { match(host: string, path: string, method: string, getHeader: (n: string) => string | undefined): RouteMatch | undefined }
  >;
  /** By service id; no set: the table has no such service. */
  sets: ReadonlyMap<string, UpstreamSet>;
  routes: ReadonlyMap<string, RouteRuntime>;
}

/** Per-route settings resolved at compile time. */
export interface RouteRuntime {
  /** Request counters and latency histogram of (entrypoint, route), resolved at compile time. */
  stats: RequestStats;
  connectMs: number;
  responseHeaderMs: number;
  idleMs: number;
  /** Request body limit in bytes, 0 for none (filters/body-limit.ts; also counted as a body streams). */
  maxBodyBytes: number;
  /** `strict-transport-security: …\r\n`, added to this route's responses on TLS connections (filters/hsts.ts). */
  hsts: string | undefined;
  /** Source allow-list (403 outside it; filters/allow-list.ts). */
  allow: AllowList | undefined;
  /** Basic authentication (401 without valid credentials; filters/basic-auth.ts). */
  auth: BasicAuth | undefined;
  /**
   * The request filters this route runs, in order (filters/index.ts): chosen when the table is
   * compiled, from the settings above.
   */
  filters: readonly RequestFilter[];
}

export interface EntrypointRuntime {
  readonly name: string;
  readonly tls: boolean;
  readonly proto: 'http' | 'https';
  /** Is this client address a trusted proxy (its X-Forwarded-* are kept and appended to)? */
  trusted(ip: string): boolean;
  readonly connections: Set<ClientConn>;
  /** Stats of requests that matched no route. */
  readonly noRouteStats: RequestStats;
  /** A connection closed: forget it (and tell a drain waiting for the last one). */
  connectionClosed(c: ClientConn): void;
  draining: boolean;
}
