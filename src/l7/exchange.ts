/**
 * One request and its response: routing, the route's request filters (filters/index.ts), an endpoint
 * and a pooled upstream connection, the request head and body upstream, the response head, body and
 * trailers back, a 101's tunnel (tunnel.ts), and the failures on the way — retries on another
 * endpoint where the request can be sent again, timeouts (connect, response head, idle) on the
 * connection's timer, local answers. The heads it writes are built in heads.ts.
 *
 * A client that leaves (client.ts decides when a half-close counts as leaving) aborts the exchange
 * wherever it is (onClientAbort): a queued request leaves the pool's queue, an upstream connection
 * mid-message is destroyed, never pooled, and its place in the pool is free at once; the exchange is
 * recorded with outcome `client-abort` and the phase it was in.
 */
import type { RouteMatch } from './routing/index.js';
import type { Upstream, UpstreamSet } from './balance/index.js';
import type { ClientConn } from './client.js';
import { clock } from './clock.js';
import { FilterStatus, type FilterExchange, type RequestFilter } from './filters/types.js';
import { HeadBuf } from './headbuf.js';
import { simpleResponse } from './headers.js';
import { trailerBlock, writeRequestHead, writeResponseHead } from './heads.js';
import type { MessageHead } from './http/parser.js';
import type { ClientAbortPhase, ExchangeOutcome } from './options.js';
import type { ConnOwner, Pool, PoolWaiter, UpstreamConn, UpstreamError } from './pool.js';
import type { CompiledTable, RouteRuntime } from './proxy.js';
import { writable } from '../net/stream.js';
import type { CoarseTimer } from './timers.js';
import { Tunnel } from './tunnel.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const CONTINUE_100 = 'HTTP/1.1 100 Continue\r\n\r\n';
const EMPTY: readonly string[] = [];

const enum Phase {
  Routing,
  Connecting,
  AwaitingHead,
  Streaming,
  Tunnel,
  Done,
}

/** One try at getting a connection for an exchange. */
class Attempt implements PoolWaiter {
  cancelled = false;
  constructor(private readonly ex: Exchange) {}
  onPoolConnection(uconn: UpstreamConn): void {
    if (this.cancelled || this.ex.attempt !== this) {
      uconn.pool.release(uconn, true);
      return;
    }
    this.ex.onPoolConnection(uconn);
  }
  onPoolError(err: UpstreamError): void {
    if (!this.cancelled && this.ex.attempt === this) this.ex.onPoolError(err);
  }
}

export class Exchange implements ConnOwner, FilterExchange {
  /** When the head was read (the engine's cached clock, refreshed by that read). */
  readonly startedAt = clock.now;
  readonly table: CompiledTable;
  /** The current try at a connection (see Attempt). */
  attempt: Attempt | undefined;
  phase = Phase.Routing;
  match: RouteMatch | undefined;
  rt: RouteRuntime | undefined;
  set: UpstreamSet | undefined;
  upstream: Upstream | undefined;
  pool: Pool | undefined;
  uconn: UpstreamConn | undefined;
  requestId = '';
  /** The request path without its query (what routing matched; the access log's `path`). */
  path = '';
  /** The path and query as the client sent them (origin form). */
  pathAndQuery = '';
  status = 0;
  outcome: ExchangeOutcome = 'ok';
  /** Where the exchange was when its client left (outcome `client-abort`). */
  abortPhase: ClientAbortPhase | undefined = undefined;
  retries = 0;
  bytesIn = 0;
  bytesOut = 0;
  responseHeadAt = 0;
  requestComplete = false;
  responseStarted = false;
  /** The request target as sent upstream (rewritten by the route). */
  upstreamPath = '';
  /** The request id was made here (not the client's): it is added to the upstream head. */
  requestIdMade = false;
  private bodySent = false;
  /** The response is re-framed as chunked for the client (an HTTP/1.1 client, a body of unknown length). */
  clientChunked = false;
  private responseKeepAlive = false;
  private upstreamTrailers: string[] | undefined;
  private requestTrailers: string[] | undefined;
  private retrying = false;
  /** The connection's timer, ours while this exchange is active. */
  private readonly timer: CoarseTimer<ClientConn>;

  constructor(
    readonly conn: ClientConn,
    readonly head: MessageHead,
  ) {
    this.table = conn.host.current();
    this.timer = conn.timer;
  }

  /** A request that failed to parse, for the access log and metrics. */
  static parseFailure(conn: ClientConn, status: number): Exchange {
    const ex = new Exchange(conn, EMPTY_HEAD);
    ex.status = status;
    ex.outcome = 'bad-request';
    ex.phase = Phase.Done;
    return ex;
  }

  get method(): string {
    return this.head.method;
  }

  /** Waiting for an upstream connection, sending the request or relaying the response (not answered locally, not a tunnel). */
  get upstreamInFlight(): boolean {
    const p = this.phase;
    return p === Phase.Connecting || p === Phase.AwaitingHead || p === Phase.Streaming;
  }

  start(): void {
    const conn = this.conn;
    const head = this.head;
    this.conn.host.active++;
    const target = head.target;
    let path = target;
    if (target.charCodeAt(0) !== 0x2f /* / */) {
      // absolute-form (the parser checked its authority against Host) or `*`
      const i = target.indexOf('/', target.indexOf('//') + 2);
      path = target === '*' ? '*' : i < 0 ? '/' : target.slice(i);
    }
    const q = path.indexOf('?');
    this.path = q < 0 ? path : path.slice(0, q);
    this.pathAndQuery = path;
    const router = this.table.routers.get(conn.ep.name);
    const match = router?.match(head.host ?? '', this.path, head.method, conn.getHeader);
    if (!match) return this.respondLocal(404, 'no-route');
    this.match = match;
    const rt = this.table.routes.get(match.route.id);
    this.rt = rt;
    if (rt !== undefined) {
      // The route's request filters, in order (filters/index.ts); the first that answers ends the exchange here.
      const filters = rt.filters;
      for (let i = 0; i < filters.length; i++) {
        if ((filters[i] as RequestFilter).onRequest(this, head, rt) === FilterStatus.Answered) return;
      }
    }
    const service = match.service;
    const set = service ? this.table.sets.get(service.id) : undefined;
    if (!set) return this.respondLocal(503, 'no-service');
    this.set = set;
    const rewritten = match.rewrite(path);
    this.upstreamPath = rewritten;
    this.pickAndConnect(undefined);
  }

  private pickAndConnect(exclude: Upstream | undefined): void {
    const conn = this.conn;
    const u = this.set!.pick(conn.pick.reset(conn.clientIp, conn.getHeader, exclude));
    if (!u) {
      if (exclude) {
        // No other endpoint to retry on: report the failure we had.
        return this.respondLocal(this.status || 502, this.outcome === 'ok' ? 'connect-failed' : this.outcome);
      }
      return this.respondLocal(503, 'no-healthy-endpoint');
    }
    this.upstream = u;
    u.begin();
    this.phase = Phase.Connecting;
    this.timer.start(this.rt?.connectMs ?? conn.host.opts.connectTimeoutMs);
    const pool = conn.host.pool(u);
    this.pool = pool;
    // A fresh waiter per attempt: a retry must not be confused with the attempt it replaces (which may
    // still sit, cancelled, in another pool's queue).
    this.attempt = new Attempt(this);
    pool.acquire(this.attempt);
  }

  onPoolConnection(uconn: UpstreamConn): void {
    this.attempt = undefined;
    this.uconn = uconn;
    const head = this.head;
    uconn.attach(this, head.method === 'HEAD', false);
    this.phase = Phase.AwaitingHead;
    this.timer.start(this.rt?.responseHeaderMs ?? this.conn.host.opts.responseHeaderTimeoutMs);
    const hasBody = head.chunked || head.contentLength > 0;
    if (head.expectContinue && hasBody && !this.bodySent) this.conn.stream.writeLatin1(CONTINUE_100);
    writeRequestHead(REQUEST_HEAD.reset(), this);
    uconn.stream.writeCopy(REQUEST_HEAD.bytes, 0, REQUEST_HEAD.len);
    if (this.requestComplete) {
      // A retry: the request (without a body, or we would not retry) is complete already.
      return;
    }
    if (this.head.upgrade) {
      // Bytes after an upgrade request's head belong to the tunnel, not to HTTP: hold them.
      return;
    }
    this.bodySent = hasBody;
    this.conn.resumeParsing();
  }

  onPoolError(err: UpstreamError): void {
    this.upstreamFailed(err);
  }

  onRequestBody(chunk: Buffer): void {
    if (this.phase === Phase.Done || !this.uconn) return;
    this.bytesIn += chunk.length;
    // The body limit as the body streams (a declared Content-Length was judged by filters/body-limit.ts).
    const max = this.rt?.maxBodyBytes ?? 0;
    if (max > 0 && this.bytesIn > max) {
      this.releaseUpstream(false);
      this.respondLocal(413, 'body-too-large');
      return;
    }
    const s = this.uconn.stream;
    // Bytes of the client's shared read buffer are copied (by us or the stream): the write may outlive this read.
    const data = writable(s, chunk, this.conn.feedingVolatile);
    let ok: boolean;
    if (this.head.chunked) {
      s.writeLatin1(`${chunk.length.toString(16)}\r\n`);
      s.write(data);
      ok = s.writeLatin1('\r\n');
    } else {
      ok = s.write(data);
    }
    if (!ok) this.conn.stream.pause();
    this.timer.refresh();
  }

  onRequestTrailers(t: string[]): void {
    this.requestTrailers = t;
  }

  onRequestComplete(): void {
    this.requestComplete = true;
    if (this.phase === Phase.Done) {
      // A local response was sent at head time and the (empty) request is now fully read.
      this.finishLocal();
      return;
    }
    if (this.head.chunked && this.uconn && !this.uconn.detached) {
      this.uconn.stream.writeLatin1(`0\r\n${trailerBlock(this.requestTrailers)}\r\n`);
    }
  }

  /** Client socket drained: let the upstream response flow again. */
  onClientDrain(): void {
    this.uconn?.stream.resume();
  }

  onUpstreamDrain(): void {
    if (!this.conn.closed) this.conn.stream.resume();
  }

  // ConnOwner: the response
  onUpstreamHead(h: MessageHead): void {
    const status = h.status;
    if (status < 200 && status !== 101) return; // interim (100, 103): we answered 100-continue ourselves
    this.status = status;
    this.responseHeadAt = clock.now;
    const upstream = this.upstream!;
    if ((status === 502 || status === 503) && this.canRetry()) {
      this.conn.host.observe(upstream, false);
      this.outcome = 'bad-response';
      this.retry();
      return;
    }
    if (status === 101) {
      if (!this.head.upgrade) return this.upstreamFailed(null, 'bad-response', 502);
      this.outcome = 'upgraded';
      writeResponseHead(RESPONSE_HEAD.reset(), this, h, false, true);
      this.conn.stream.writeCopy(RESPONSE_HEAD.bytes, 0, RESPONSE_HEAD.len);
      this.responseStarted = true;
      return; // the tunnel starts in onUpstreamUpgrade, with the bytes after this head
    }
    this.phase = Phase.Streaming;
    this.timer.start(this.rt?.idleMs ?? this.conn.host.opts.idleTimeoutMs);
    const noBody = this.head.method === 'HEAD' || status === 204 || status === 304;
    this.responseKeepAlive = h.keepAlive;
    const clientKeepAlive = this.head.keepAlive && !this.conn.closeAfter && !this.conn.ep.draining && !this.head.upgrade;
    let close = !clientKeepAlive;
    if (!noBody && h.contentLength < 0) {
      // chunked or close-delimited upstream body: chunked to HTTP/1.1 clients, close-delimited to 1.0
      if (this.head.versionMinor === 1) this.clientChunked = true;
      else close = true;
    }
    if (close) this.conn.closeAfter = true;
    // The head is held until the first body bytes (or the end of this read) so that head and body
    // leave in one write: one syscall, no cork/writev machinery. (A head still held by another exchange
    // — which cannot happen within one read, but costs nothing to honour — is written out first.)
    const prev = RESPONSE_HEAD.owner as Exchange | undefined;
    if (prev !== undefined && prev !== this) {
      if (prev.phase === Phase.Streaming && !prev.conn.closed) prev.flushHead();
      else RESPONSE_HEAD.owner = undefined;
    }
    writeResponseHead(RESPONSE_HEAD.reset(), this, h, noBody, false);
    RESPONSE_HEAD.owner = this;
    this.responseStarted = true;
  }

  /** This exchange's response head is built and not yet written. */
  private get holdsHead(): boolean {
    return RESPONSE_HEAD.owner === this;
  }

  /** Write the held response head, with `chunk` (already framed) after it when given. */
  private flushHead(chunk?: Buffer): boolean {
    RESPONSE_HEAD.owner = undefined;
    const s = this.conn.stream;
    const head = RESPONSE_HEAD.bytes;
    const len = RESPONSE_HEAD.len;
    if (s.closed) return false;
    if (!chunk) return s.writeCopy(head, 0, len);
    if (s.copiesWrites) {
      // Both land in the stream's buffer for this turn, and leave in one write.
      s.writeCopy(head, 0, len);
      return s.write(chunk);
    }
    const out = Buffer.allocUnsafe(len + chunk.length);
    head.copy(out, 0, 0, len);
    chunk.copy(out, len);
    return s.write(out);
  }

  /** End of one upstream read: anything held goes out now. */
  onUpstreamReadEnd(): void {
    if (this.holdsHead) this.flushHead();
  }

  onUpstreamBody(chunk: Buffer): void {
    if (this.phase !== Phase.Streaming) return;
    this.bytesOut += chunk.length;
    const s = this.conn.stream;
    let ok: boolean;
    if (this.clientChunked) {
      if (this.holdsHead) {
        RESPONSE_HEAD.addInt(chunk.length, 16);
        RESPONSE_HEAD.add('\r\n');
      } else s.writeLatin1(`${chunk.length.toString(16)}\r\n`);
      this.flushOrWrite(chunk);
      ok = s.writeLatin1('\r\n');
    } else {
      ok = this.flushOrWrite(chunk);
    }
    if (!ok) this.uconn?.stream.pause();
    this.timer.refresh();
  }

  private flushOrWrite(chunk: Buffer): boolean {
    if (this.holdsHead) return this.flushHead(chunk);
    // Bytes of the upstream's shared read buffer are copied (by us or the stream): the write may outlive this read.
    return this.conn.stream.write(writable(this.conn.stream, chunk, this.uconn !== undefined && this.uconn.stream.volatileReads));
  }

  onUpstreamTrailers(t: string[]): void {
    this.upstreamTrailers = t;
  }

  onUpstreamComplete(): void {
    if (this.phase !== Phase.Streaming) return;
    if (this.holdsHead) {
      if (this.clientChunked) RESPONSE_HEAD.add(`0\r\n${trailerBlock(this.upstreamTrailers)}\r\n`);
      this.flushHead();
    } else if (this.clientChunked) this.conn.stream.writeLatin1(`0\r\n${trailerBlock(this.upstreamTrailers)}\r\n`);
    const u = this.upstream!;
    this.conn.host.observe(u, this.status < 500);
    // Reusable only if the upstream keeps it alive AND it has the whole request: an upstream that
    // answered before the body finished has unread bytes in its socket.
    const reusable = this.responseKeepAlive && this.requestComplete;
    if (!this.requestComplete) this.conn.closeAfter = true;
    this.releaseUpstream(reusable);
    this.finish();
  }

  /** A 101's tunnel: the response parser stopped after the head; `rest` are the upstream's next bytes. */
  onUpstreamUpgrade(rest: Buffer): void {
    const uconn = this.uconn!;
    const conn = this.conn;
    this.phase = Phase.Tunnel;
    this.timer.clear();
    uconn.detach();
    this.uconn = undefined;
    this.upstream?.end(clock.now);
    this.upstream = undefined;
    const a = conn.stream;
    const b = uconn.stream;
    if (rest.length) a.write(writable(a, rest, b.volatileReads));
    const early = conn.takePending();
    if (early?.length) b.write(early);
    // The client half-closed before the 101 (its request was complete): the tunnel starts half-closed.
    if (conn.peerEnded) b.end();
    conn.current = undefined;
    conn.closed = true; // the HTTP side is over; the streams belong to the tunnel
    this.finish(false);
    new Tunnel(conn, a, b, conn.host.wheel, conn.host.opts.tunnelIdleTimeoutMs);
  }

  onUpstreamError(err: UpstreamError): void {
    this.upstreamFailed(err);
  }

  private upstreamFailed(err: UpstreamError | null, outcome?: ExchangeOutcome, status?: number): void {
    if (this.phase === Phase.Done || this.phase === Phase.Tunnel) return;
    const u = this.upstream;
    let reason: ExchangeOutcome = outcome ?? 'bad-response';
    let code = status ?? 502;
    if (err) {
      switch (err.reason) {
        case 'connect':
          reason = 'connect-failed';
          break;
        case 'connect-timeout':
          reason = 'connect-timeout';
          code = 504;
          break;
        case 'queue-full':
          reason = 'queue-full';
          code = 503;
          break;
        case 'pool-closed':
          reason = 'no-healthy-endpoint';
          code = 503;
          break;
        case 'reset':
          reason = 'upstream-reset';
          break;
        case 'bad-response':
          reason = 'bad-response';
          break;
      }
    }
    this.outcome = reason;
    this.status = code;
    if (u && reason !== 'queue-full') this.conn.host.observe(u, false);
    this.releaseUpstream(false);
    if (this.holdsHead) {
      // The bad bytes came in the same read as the head, which is still held: nothing reached the
      // client yet, so it can still be told 502 instead of having its connection cut.
      RESPONSE_HEAD.owner = undefined;
      this.responseStarted = false;
      this.clientChunked = false;
    }
    if (this.responseStarted) {
      // Part of the response reached the client: the only honest signal left is to cut the connection.
      this.conn.destroy();
      this.finish();
      return;
    }
    const safe =
      err !== null &&
      (err.reason === 'connect' ||
        err.reason === 'connect-timeout' ||
        err.reason === 'pool-closed' ||
        (err.reason === 'reset' && err.reused));
    if (safe && this.canRetry()) {
      this.retry();
      return;
    }
    this.respondLocal(code, reason);
  }

  /** A retry is allowed: attempts left, budget left, and the request can be sent again as it was. */
  private canRetry(): boolean {
    const host = this.conn.host;
    if (this.retries >= host.opts.retries || this.bodySent || this.head.upgrade) return false;
    if (!IDEMPOTENT.has(this.head.method) && this.phase !== Phase.Connecting) return false;
    return true;
  }

  private retry(): void {
    const host = this.conn.host;
    if (!host.retryStart()) {
      this.respondLocal(this.status || 502, this.outcome);
      return;
    }
    this.retrying = true;
    this.retries++;
    const failed = this.upstream;
    this.releaseUpstream(false);
    this.status = 0;
    this.pickAndConnect(failed);
  }

  private releaseUpstream(reusable: boolean): void {
    const uconn = this.uconn;
    const u = this.upstream;
    if (u) {
      u.end(clock.now, this.responseHeadAt ? this.responseHeadAt - this.startedAt : undefined);
      this.upstream = undefined;
    }
    if (uconn) {
      this.uconn = undefined;
      uconn.owner = undefined;
      this.pool!.release(uconn, reusable);
    }
    const attempt = this.attempt;
    if (attempt) {
      // Still waiting: out of the pool's queue now; a connection being made for it goes to the next waiter.
      attempt.cancelled = true;
      this.attempt = undefined;
      this.pool?.cancel(attempt);
    }
  }

  /**
   * A response of our own (a filter's answer, or an error of routing or upstream). Keeps the connection
   * when the request has no body left to read. On TLS it carries the route's HSTS line.
   */
  respondLocal(status: number, outcome: ExchangeOutcome, extraHeaders?: string): void {
    this.status = status;
    this.outcome = outcome;
    if (this.upstream || this.uconn) this.releaseUpstream(false);
    const conn = this.conn;
    if (this.responseStarted) {
      conn.destroy();
      this.finish();
      return;
    }
    const head = this.head;
    const bodyLeft = !this.requestComplete && (head.chunked || head.contentLength > 0);
    const close = bodyLeft || !head.keepAlive || conn.closeAfter || conn.ep.draining || head.upgrade;
    let extra = extraHeaders;
    const hsts = this.rt?.hsts;
    if (hsts !== undefined && conn.ep.tls) extra = extra === undefined ? hsts : extra + hsts;
    const text = simpleResponse(status, {
      close,
      requestId: this.requestId || undefined,
      head: head.method === 'HEAD',
      ...(extra ? { headers: extra } : {}),
    });
    this.responseStarted = true;
    this.phase = Phase.Done;
    if (close) {
      conn.writeAndClose(text);
      this.finish(false);
      return;
    }
    conn.stream.writeLatin1(text);
    if (this.requestComplete) this.finishLocal();
    else conn.resumeParsing(); // the empty body completes at once → onRequestComplete → finishLocal
  }

  private finishLocal(): void {
    this.finish(true);
  }

  /**
   * The client left (closed, reset, or half-closed where that counts as leaving: client.ts): the upstream
   * side is given up at once wherever it is, and the exchange is recorded as `client-abort` with its
   * phase (in the access log, and in portico_l7_client_aborts_total). The caller closes the connection.
   */
  onClientAbort(): void {
    const phase = this.phase;
    if (phase === Phase.Done || phase === Phase.Tunnel) return;
    let where: ClientAbortPhase;
    if (phase === Phase.Streaming) where = 'response-body';
    else if (phase === Phase.AwaitingHead) where = this.requestComplete || this.head.upgrade ? 'response-head' : 'request-body';
    else {
      // Connecting: queued for a place in the pool, or its connection being made.
      const attempt = this.attempt;
      where = attempt !== undefined && this.pool !== undefined && this.pool.cancel(attempt) ? 'queue' : 'connect';
    }
    this.outcome = 'client-abort';
    this.abortPhase = where;
    if (!this.status) this.status = 499;
    if (this.holdsHead) RESPONSE_HEAD.owner = undefined;
    this.releaseUpstream(false);
    (this.rt !== undefined ? this.rt.stats : this.conn.ep.noRouteStats).clientAbort(where);
    this.finish(false);
  }

  /** A parse error on the client side while this exchange was active. */
  abandon(outcome: ExchangeOutcome): void {
    this.outcome = outcome;
    this.releaseUpstream(false);
    this.phase = Phase.Done;
    this.timer.clear();
    this.conn.host.active--;
  }

  onTimeout(): void {
    switch (this.phase) {
      case Phase.Connecting:
        this.upstreamFailed(null, 'connect-timeout', 504);
        // retry on another endpoint is allowed for a connect timeout
        break;
      case Phase.AwaitingHead:
        this.upstreamFailed(null, 'response-timeout', 504);
        break;
      case Phase.Streaming:
        this.outcome = 'idle-timeout';
        this.releaseUpstream(false);
        this.conn.destroy();
        this.finish(false);
        break;
      default:
        break;
    }
  }

  private finish(keepAlive = true): void {
    if (this.phase === Phase.Done && this.finished) return;
    this.finished = true;
    this.phase = this.phase === Phase.Tunnel ? Phase.Tunnel : Phase.Done;
    this.timer.clear();
    const host = this.conn.host;
    host.active--;
    if (this.retrying) host.retryEnd();
    host.record(this);
    if (this.phase === Phase.Tunnel) return;
    if (this.conn.current === this) this.conn.exchangeDone(keepAlive && this.head.keepAlive);
  }

  private finished = false;
}

/**
 * The heads being built (headbuf.ts): request heads are built and written in one go; a response head is
 * held (by the exchange that is its `owner`) until the body bytes of the same upstream read, so that
 * head and body leave in one write (see onUpstreamHead).
 */
const REQUEST_HEAD = new HeadBuf();
const RESPONSE_HEAD = new HeadBuf();

const EMPTY_HEAD: MessageHead = Object.freeze({
  method: '',
  target: '',
  status: 0,
  reason: '',
  versionMinor: 1,
  headers: [],
  host: undefined,
  contentLength: -1,
  chunked: false,
  keepAlive: false,
  upgrade: false,
  expectContinue: false,
  connectionTokens: EMPTY,
  headBytes: 0,
}) as MessageHead;
