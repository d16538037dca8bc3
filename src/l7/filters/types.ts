/**
 * The request filter contract.
 *
 * A request filter judges a request whose head has been read and routed, before anything of it is sent
 * upstream. It returns `Continue` (the next filter runs, then the exchange picks an endpoint) or
 * `Answered` (it has answered the request itself with `ex.respondLocal(…)`: no later filter runs and
 * nothing reaches an upstream), as Envoy's decoder filters return Continue or StopIteration. The
 * filters run in the order of REQUEST_FILTERS (filters/index.ts), which is the one place that order is
 * written down.
 *
 * A filter is one module-level object with fixed methods: it keeps no per-request state and allocates
 * nothing on its way to `Continue`. Its settings are the route's, compiled once per table into the
 * route's RouteRuntime; which filters a route runs is decided then too (`appliesTo`), so each route
 * carries the array of the filters it needs, and a route that needs none runs an empty loop.
 */
import type { MessageHead } from '../http/parser.js';
import type { Route } from '../../model/types.js';
import type { ExchangeOutcome } from '../options.js';
import type { RouteRuntime } from '../proxy.js';
import type { AllowList } from './allow-list.js';

export const enum FilterStatus {
  /** Not answered: the next filter runs (after the last one, the request goes upstream). */
  Continue = 0,
  /** Answered with a local response (or the connection closed): the exchange stops here. */
  Answered = 1,
}

/** What a filter sees of the client connection (ClientConn, client.ts). */
export interface FilterConn {
  /** The socket peer's address. */
  readonly clientIp: string;
  /** Is the peer a trusted proxy of its entrypoint (its X-Forwarded-For is believed)? */
  readonly trusted: boolean;
  readonly ep: {
    /** The entrypoint serves TLS. */
    readonly tls: boolean;
    /** Is this address a trusted proxy of the entrypoint? */
    trusted(ip: string): boolean;
  };
  /**
   * The allow-list filter's memo of this connection (allow-list.ts): the list last judged for an
   * untrusted peer and its verdict. The peer of a connection does not change, so a keep-alive
   * connection is judged once per list, not once per request.
   */
  allowMemo: AllowList | undefined;
  allowMemoOk: boolean;
}

/** What a filter sees of the exchange (Exchange, exchange.ts). */
export interface FilterExchange {
  readonly conn: FilterConn;
  /** The request's path and query as the client sent them (origin form; `*` for `OPTIONS *`). */
  readonly pathAndQuery: string;
  /**
   * Answer the request ourselves: `status`, the outcome the access log and metrics record, and extra
   * response field lines (each ending in CRLF). The connection is kept when no request body is left to read.
   */
  respondLocal(status: number, outcome: ExchangeOutcome, extraHeaders?: string): void;
}

export interface RequestFilter {
  /** A stable name (`redirect-to-https`, `allow-list`, …): tests and debugging name filters by it. */
  readonly name: string;
  /** At compile time: does `route` (compiled into `rt`, `filters` aside) need this filter? */
  appliesTo(route: Route, rt: RouteRuntime): boolean;
  /**
   * Per request, for a route this filter applies to: Continue, or Answered once `ex.respondLocal` was
   * called. `rt` is the route's runtime, where the filter reads its settings.
   */
  onRequest(ex: FilterExchange, head: MessageHead, rt: RouteRuntime): FilterStatus;
}
