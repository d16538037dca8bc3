/**
 * The HTTP/1.1 proxy engine: one `ClientConn` per accepted connection, one `Exchange` per request.
 *
 * Connections are `Stream`s (stream.ts): libuv handles driven directly for plain HTTP and for every
 * upstream, net/tls sockets for TLS clients; the engine sees the same owner callbacks either way.
 *
 * Per connection: the request parser, timers and handlers are made once. Per request: one Exchange object;
 * the upstream request head is one string built from the parsed fields (framing rebuilt, hop-by-hop and
 * untrusted forwarding fields dropped, ours added: the forwarding fields once per connection and Host),
 * the response head and the first body bytes leave in one write, and body bytes are forwarded as
 * subarrays of what was read — copied first when they were read into the libuv streams' shared buffer
 * (`volatileReads`), since a write may outlive the read. Requests on one connection are handled one at a
 * time (pipelined requests wait in the parser's input), so responses always leave in order. Per-route
 * access control (access.ts) runs before anything is sent upstream. Nothing per request goes through
 * prom-client, a closure, a promise or a setTimeout: counters are plain numbers (metrics.ts), timers are
 * fields on a coarse wheel (timers.ts), the clock is read once per event (clock.ts).
 *
 * The table an exchange routes with is read once, when its head arrives: a table swap mid-request
 * changes nothing for it.
 */
import { AuthVerdict, effectiveClient, type AllowList, type BasicAuth } from './access.js';
import { RequestPickContext, type Upstream, type UpstreamSet } from './balance/index.js';
import { HttpParser, Kind, headerValue, type MessageHead } from './http/parser.js';
import { FieldClass, REASONS, clientAddress, fieldClass, fieldInfo, forwardedFor, lowerName, simpleResponse } from './headers.js';
import { clock } from './clock.js';
import type { RequestStats } from './metrics.js';
import type { ExchangeOutcome, L7Options } from './options.js';
import type { ConnOwner, Pool, PoolWaiter, UpstreamConn, UpstreamError } from './pool.js';
import type { RouteMatch } from './routing/index.js';
import { HeadBuf } from './headbuf.js';
import { newRequestId } from './requestid.js';
import { writable, type Stream, type StreamOwner } from '../net/stream.js';
import { CoarseTimer, type TimerWheel } from './timers.js';

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
  sets: Map<string, UpstreamSet>;
  routes: Map<string, RouteRuntime>;
}

/** Per-route settings resolved at compile time. */
export interface RouteRuntime {
  /** Request counters and latency histogram of (entrypoint, route), resolved at compile time. */
  stats: RequestStats;
  connectMs: number;
  responseHeaderMs: number;
  idleMs: number;
  maxBodyBytes: number;
  /** `strict-transport-security: …\r\n`, added to this route's responses on TLS connections. */
  hsts: string | undefined;
  /** Source allow-list (403 outside it). */
  allow: AllowList | undefined;
  /** Basic authentication (401 without valid credentials). */
  auth: BasicAuth | undefined;
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

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const CONTINUE_100 = 'HTTP/1.1 100 Continue\r\n\r\n';
const EMPTY: readonly string[] = [];

const enum TimerMode {
  None,
  KeepAlive,
  Header,
}

/** How long a client that does not close after our FIN (or does not read our error response) is waited for. */
const CLOSING_GRACE_MS = 5_000;

/** Placeholder owner while a stream is handed over. */
const NO_OWNER: StreamOwner = {
  onStreamData() {},
  onStreamEnd() {},
  onStreamDrain() {},
  onStreamClose() {},
  onStreamConnect() {},
};
export { NO_OWNER };

export class ClientConn implements StreamOwner {
  readonly parser: HttpParser;
  readonly clientIp: string;
  readonly trusted: boolean;
  current: Exchange | undefined;
  /** Bytes read but not yet parsed (the parser is paused between requests). Always our own copy. */
  private pending: Buffer | undefined;
  /**
   * One timer per connection: header/keep-alive timeouts while no request is active, and the active
   * exchange's connect/response/idle timeouts while one is (exchanges on a connection never overlap).
   */
  readonly timer: CoarseTimer<ClientConn>;
  private timerMode = TimerMode.None;
  closed = false;
  /** Close once the current response is written. */
  closeAfter = false;
  readonly pick = new RequestPickContext();
  readonly getHeader: (lower: string) => string | undefined;
  requests = 0;
  /** The bytes being parsed now are the stream's shared read buffer: keep nothing of them uncopied. */
  feedingVolatile = false;
  /** Set once the stream closed. */
  private streamClosed = false;

  constructor(
    readonly host: ProxyHost,
    readonly ep: EntrypointRuntime,
    readonly stream: Stream,
  ) {
    const o = host.opts;
    stream.owner = this;
    this.clientIp = clientAddress(stream.remoteAddress());
    this.trusted = ep.trusted(this.clientIp);
    const parser = new HttpParser(Kind.Request, {
      maxHeaderBytes: o.maxHeaderBytes,
      maxTargetBytes: o.maxTargetBytes,
      maxHeaders: o.maxHeaders,
    });
    parser.onHead = (h) => this.onHead(h);
    parser.onBody = (c) => this.current?.onRequestBody(c);
    parser.onTrailers = (t) => this.current?.onRequestTrailers(t);
    parser.onComplete = () => this.onRequestComplete();
    this.parser = parser;
    this.getHeader = (lower) => {
      const ex = this.current;
      return ex ? headerValue(ex.head, lower) : undefined;
    };
    this.timer = new CoarseTimer<ClientConn>(host.wheel, onClientTimeout, this as ClientConn);
    this.armWaiting();
    ep.connections.add(this);
  }

  // StreamOwner
  onStreamData(d: Buffer): void {
    if (this.closed) return; // after our FIN or an error response: what the client still sends is dropped
    // Paused: between requests, or a head waiting for its upstream. Not merely "an exchange is current":
    // its request body, arriving in later reads, must be parsed and streamed.
    if (this.parser.isPaused) {
      this.hold(d, this.stream.volatileReads);
      this.stream.pause();
      return;
    }
    this.feed(d, this.stream.volatileReads);
  }

  onStreamDrain(): void {
    this.current?.onClientDrain();
  }

  onStreamEnd(): void {
    this.onEnd();
  }

  onStreamClose(): void {
    this.onClose();
  }

  onStreamConnect(): void {}

  /** Keep unparsed bytes (after what is already held). */
  private hold(d: Buffer, volatile: boolean): void {
    this.pending = this.pending ? Buffer.concat([this.pending, d]) : volatile ? Buffer.from(d) : d;
  }

  private fwdHost: string | undefined;
  private fwdMinor = -1;
  private fwdFields = '';

  /**
   * The forwarding fields we add to a request from this connection when nothing forwarded is kept
   * (X-Forwarded-For/-Proto/-Host, Forwarded, Via): the same on every request with the same Host, so
   * built once per connection and Host.
   */
  forwardingFields(host: string, versionMinor: number): string {
    if (host === this.fwdHost && versionMinor === this.fwdMinor) return this.fwdFields;
    const ip = this.clientIp;
    const proto = this.ep.proto;
    let out = `x-forwarded-for: ${ip}\r\nx-forwarded-proto: ${proto}\r\n`;
    if (host) out += `x-forwarded-host: ${host}\r\n`;
    out += `forwarded: for=${forwardedFor(ip)};proto=${proto}${host ? `;host="${host}"` : ''}\r\n`;
    out += versionMinor === 1 ? VIA_11 : VIA_10;
    out.charCodeAt(0); // flatten it now (V8 flattens a concatenation when indexed): one piece per request after
    this.fwdHost = host;
    this.fwdMinor = versionMinor;
    this.fwdFields = out;
    return out;
  }

  /** The allow-list last judged on this connection and its verdict (the peer does not change). */
  private allowList: AllowList | undefined;
  private allowOk = false;

  /** Is this request's client inside `list`? The peer, or what a trusted proxy says it forwards for. */
  allowedBy(list: AllowList, head: MessageHead): boolean {
    if (!this.trusted) {
      if (this.allowList !== list) {
        this.allowList = list;
        this.allowOk = list.allows(this.clientIp);
      }
      return this.allowOk;
    }
    return list.allows(effectiveClient(this.clientIp, true, joinedField(head, 'x-forwarded-for'), (ip) => this.ep.trusted(ip)));
  }

  /** Waiting for the next request: keep-alive idle until its first byte, then the header timeout. */
  private armWaiting(): void {
    if (this.requests === 0) {
      this.timerMode = TimerMode.Header;
      this.timer.start(this.host.opts.headerTimeoutMs);
    } else {
      this.timerMode = TimerMode.KeepAlive;
      this.timer.start(this.host.opts.keepAliveTimeoutMs);
    }
  }

  /** True while the parser runs: callbacks that resume parsing must not re-enter it. */
  private feeding = false;

  private feed(d: Buffer, volatile: boolean): void {
    const parser = this.parser;
    let buf = d;
    this.feeding = true;
    this.feedingVolatile = volatile;
    try {
      for (;;) {
        const off = parser.execute(buf);
        if (parser.error) {
          this.onParseError();
          return;
        }
        if (off >= buf.length) break;
        if (!parser.isPaused && parser.phase !== 'upgraded' && parser.phase !== 'done' && !this.closed) {
          // A callback resumed parsing (the upstream was ready at once): go on with the rest.
          buf = buf.subarray(off);
          continue;
        }
        // Paused (a head arrived, or a request completed), upgraded or done: keep the rest for later.
        const rest = buf.subarray(off);
        this.pending = this.pending ? Buffer.concat([rest, this.pending]) : volatile ? Buffer.from(rest) : rest;
        if (parser.phase !== 'upgraded') this.stream.pause();
        return;
      }
    } finally {
      this.feeding = false;
      this.feedingVolatile = false;
    }
    if (this.current === undefined && this.timerMode === TimerMode.KeepAlive && parser.phase === 'head') {
      // The first bytes of the next head: from now on it must complete within the header timeout.
      this.timerMode = TimerMode.Header;
      this.timer.start(this.host.opts.headerTimeoutMs);
    }
  }

  /** Continue parsing after an exchange finished or its upstream is ready. */
  resumeParsing(): void {
    if (this.closed) return;
    this.parser.resume();
    if (this.feeding) return; // the running feed loop goes on with what is left
    const p = this.pending;
    this.pending = undefined;
    if (p) this.feed(p, false);
    if (!this.closed && !this.parser.isPaused) this.stream.resume();
  }

  /** Bytes read past an upgrade request's head: the start of the tunnel. */
  takePending(): Buffer | undefined {
    const p = this.pending;
    this.pending = undefined;
    return p;
  }

  private onHead(head: MessageHead): void {
    this.parser.pause();
    this.timer.clear();
    this.timerMode = TimerMode.None;
    this.requests++;
    const ex = new Exchange(this, head);
    this.current = ex;
    ex.start();
  }

  private onRequestComplete(): void {
    this.parser.pause();
    this.current?.onRequestComplete();
  }

  private onParseError(): void {
    const err = this.parser.error!;
    const ex = this.current;
    if (ex && ex.responseStarted) {
      // A bad chunk in a request body whose response is already under way: nothing to say, just close.
      this.destroy();
      return;
    }
    if (ex) ex.abandon('bad-request');
    this.writeAndClose(simpleResponse(err.status, { close: true, body: `${err.status} ${REASONS[err.status] ?? ''}: ${err.message}\n` }));
    this.host.record(Exchange.parseFailure(this, err.status));
  }

  /** The exchange finished: next request, or close. */
  exchangeDone(keepAlive: boolean): void {
    this.current = undefined;
    if (!keepAlive || this.closeAfter || this.ep.draining) {
      this.end();
      return;
    }
    this.armWaiting();
    this.resumeParsing();
    // Half-closed by the client and nothing more to answer (what it had sent is parsed now): close.
    if (this.peerEnded && this.current === undefined) this.end();
  }

  writeAndClose(data: string): void {
    if (this.closed) return;
    this.stream.writeLatin1(data);
    this.end();
  }

  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.end();
    // A client that does not read its error response, or never closes its side, is not waited for
    // (a timer of its own: the exchange may still be using the connection's).
    if (!this.streamClosed) {
      this.closeTimer = new CoarseTimer<ClientConn>(this.host.wheel, onClosingTimeout, this as ClientConn);
      this.closeTimer.start(CLOSING_GRACE_MS);
    }
  }

  private closeTimer: CoarseTimer<ClientConn> | undefined;

  destroy(): void {
    this.closed = true;
    this.timer.clear();
    this.stream.destroy();
  }

  /** Drain: an idle connection closes now, a busy one after its response. */
  drain(): void {
    if (this.current === undefined) this.end();
    else this.closeAfter = true;
  }

  /** The client half-closed: what it sent (pipelined requests too) is answered, then we close. */
  private peerEnded = false;

  private onEnd(): void {
    // The client half-closed. A request in progress still gets its response; an idle connection closes.
    this.peerEnded = true;
    if (this.current === undefined) this.end();
    else if (this.pending === undefined) this.closeAfter = true; // no request after this one
  }

  private onClose(): void {
    this.closed = true;
    this.streamClosed = true;
    this.timer.clear();
    this.closeTimer?.clear();
    this.ep.connectionClosed(this);
    const ex = this.current;
    if (ex) {
      this.current = undefined;
      ex.onClientClosed();
    }
  }

  /** The tunnel that took this connection's stream over has closed. */
  tunnelClosed(): void {
    this.onClose();
  }

  onTimeout(): void {
    const ex = this.current;
    if (ex !== undefined) {
      ex.onTimeout();
      return;
    }
    if (this.timerMode === TimerMode.Header && this.parser.phase === 'head') {
      // A head that never completes: 408, as nginx and HAProxy answer a slow client.
      this.writeAndClose(simpleResponse(408, { close: true }));
    } else {
      this.destroy();
    }
  }
}

/** Every value of a field, joined with ", " (undefined when absent). */
function joinedField(head: MessageHead, lower: string): string | undefined {
  const h = head.headers;
  let out: string | undefined;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i] as string;
    if (name.length === lower.length && lowerName(name) === lower)
      out = out === undefined ? (h[i + 1] as string) : `${out}, ${h[i + 1] as string}`;
  }
  return out;
}

function onClosingTimeout(c: ClientConn): void {
  c.stream.destroy();
}

function onClientTimeout(c: ClientConn): void {
  c.onTimeout();
}

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

export class Exchange implements ConnOwner {
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
  path = '';
  status = 0;
  outcome: ExchangeOutcome = 'ok';
  retries = 0;
  bytesIn = 0;
  bytesOut = 0;
  responseHeadAt = 0;
  requestComplete = false;
  responseStarted = false;
  /** The request target as sent upstream (rewritten by the route). */
  private upstreamPath = '';
  /** The request id was made here (not the client's): it is added to the upstream head. */
  private requestIdMade = false;
  private bodySent = false;
  private clientChunked = false;
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
    const router = this.table.routers.get(conn.ep.name);
    const match = router?.match(head.host ?? '', this.path, head.method, conn.getHeader);
    if (!match) return this.respondLocal(404, 'no-route');
    this.match = match;
    const route = match.route;
    this.rt = this.table.routes.get(route.id);
    if (route.redirectToHttps && !conn.ep.tls) {
      const host = (head.host ?? '').replace(/:\d+$/, '');
      return this.respondLocal(308, 'redirect-https', `location: https://${host}${path}\r\n`);
    }
    const rt = this.rt;
    if (rt !== undefined) {
      if (rt.allow !== undefined && !conn.allowedBy(rt.allow, head)) return this.respondLocal(403, 'forbidden');
      if (rt.auth !== undefined) {
        const verdict = rt.auth.check(singleAuthorization(head));
        if (verdict === AuthVerdict.Throttled) return this.respondLocal(429, 'auth-throttled', 'retry-after: 1\r\n');
        if (verdict !== AuthVerdict.Ok) return this.respondLocal(401, 'unauthorized', rt.auth.challenge);
      }
    }
    const max = rt?.maxBodyBytes ?? 0;
    if (max > 0 && head.contentLength > max) return this.respondLocal(413, 'body-too-large');
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
    this.buildRequestHead(REQUEST_HEAD.reset());
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
      this.buildResponseHead(RESPONSE_HEAD.reset(), h, false, true);
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
    this.buildResponseHead(RESPONSE_HEAD.reset(), h, noBody, false);
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
    if (this.attempt) {
      // still waiting in the pool's queue or for a connect: the pool skips cancelled waiters
      this.attempt.cancelled = true;
      this.attempt = undefined;
    }
  }

  /** A response of our own. Keeps the connection when the request has no body left to read. */
  private respondLocal(status: number, outcome: ExchangeOutcome, extraHeaders?: string): void {
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

  /** The client went away. */
  onClientClosed(): void {
    if (this.phase === Phase.Done || this.phase === Phase.Tunnel) return;
    this.outcome = 'client-closed';
    if (!this.status) this.status = 499;
    this.releaseUpstream(false);
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

  /** Write the upstream request head into `o` (again for a retry: the same bytes, the same request id). */
  private buildRequestHead(o: HeadBuf): void {
    const head = this.head;
    const conn = this.conn;
    const ep = conn.ep;
    const trusted = conn.trusted;
    const fields = head.headers;
    const tokens = head.connectionTokens;
    o.add(head.method);
    o.add(' ');
    o.add(this.upstreamPath);
    o.add(' HTTP/1.1\r\n');
    let xff: string | undefined;
    let fwd: string | undefined;
    let keptProto = false;
    let keptHost = false;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i] as string;
      const value = fields[i + 1] as string;
      const info = fieldInfo(name);
      const lower = info.lower;
      const cls = info.cls;
      if (cls !== FieldClass.Pass) {
        if (cls === FieldClass.Forwarding && trusted) {
          if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`;
          else if (lower === 'forwarded') fwd = fwd === undefined ? value : `${fwd}, ${value}`;
          else {
            if (lower === 'x-forwarded-proto') keptProto = true;
            if (lower === 'x-forwarded-host') keptHost = true;
            addField(o, name, value);
          }
        }
        continue;
      }
      if (tokens.length !== 0 && tokens.includes(lower)) continue;
      if (lower === 'x-request-id' && !this.requestIdMade) this.requestId = value;
      addField(o, name, value);
    }
    const host = head.host ?? '';
    if (xff === undefined && fwd === undefined && !keptProto && !keptHost) {
      // The usual case: nothing forwarded is kept, and what we add depends on the connection and Host only.
      o.add(conn.forwardingFields(host, head.versionMinor));
    } else {
      const ip = conn.clientIp;
      addField(o, 'x-forwarded-for', xff === undefined ? ip : `${xff}, ${ip}`);
      if (!keptProto) o.add(ep.proto === 'https' ? 'x-forwarded-proto: https\r\n' : 'x-forwarded-proto: http\r\n');
      if (!keptHost && host) addField(o, 'x-forwarded-host', host);
      const me = `for=${forwardedFor(ip)};proto=${ep.proto}${host ? `;host="${host}"` : ''}`;
      addField(o, 'forwarded', fwd === undefined ? me : `${fwd}, ${me}`);
      o.add(head.versionMinor === 1 ? VIA_11 : VIA_10);
    }
    if (!this.requestId || this.requestIdMade) {
      if (!this.requestId) {
        this.requestId = newRequestId();
        this.requestIdMade = true;
      }
      addField(o, 'x-request-id', this.requestId);
    }
    if (head.upgrade) {
      o.add('connection: upgrade\r\n');
      addField(o, 'upgrade', headerValue(head, 'upgrade') ?? '');
    } else if (head.chunked) {
      o.add('transfer-encoding: chunked\r\n');
    } else if (head.contentLength >= 0) {
      o.add('content-length: ');
      o.addInt(head.contentLength);
      o.add('\r\n');
    }
    o.add('\r\n');
  }

  /** Write the response head for the client into `o`. */
  private buildResponseHead(o: HeadBuf, h: MessageHead, noBody: boolean, upgrade: boolean): void {
    const fields = h.headers;
    const tokens = h.connectionTokens;
    const hsts = this.conn.ep.tls ? this.rt?.hsts : undefined;
    o.add('HTTP/1.1 ');
    o.addInt(h.status);
    o.add(' ');
    o.add(h.reason || REASONS[h.status] || '');
    o.add('\r\n');
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i] as string;
      const info = fieldInfo(name);
      const lower = info.lower;
      // The route's HSTS replaces the backend's (HAProxy's `http-response set-header`).
      if (hsts !== undefined && lower === 'strict-transport-security') continue;
      const cls = info.cls;
      if (cls === FieldClass.HopByHop || cls === FieldClass.Framing) {
        // A HEAD or 304 response's Content-Length describes the representation: pass it on as sent.
        if (noBody && lower === 'content-length') addField(o, name, fields[i + 1] as string);
        continue;
      }
      if (tokens.length !== 0 && tokens.includes(lower)) continue;
      addField(o, name, fields[i + 1] as string);
    }
    o.add(VIA_11);
    if (hsts !== undefined) o.add(hsts);
    if (upgrade) {
      o.add('connection: upgrade\r\n');
      addField(o, 'upgrade', headerValue(h, 'upgrade') ?? '');
      o.add('\r\n');
      return;
    }
    const sticky = this.set?.balancer.setCookie?.(this.conn.pick, this.upstream!, this.conn.ep.tls);
    if (sticky) addField(o, 'set-cookie', sticky);
    if (!noBody) {
      if (h.contentLength >= 0) {
        o.add('content-length: ');
        o.addInt(h.contentLength);
        o.add('\r\n');
      } else if (this.clientChunked) o.add('transfer-encoding: chunked\r\n');
    }
    if (this.conn.closeAfter) o.add('connection: close\r\n');
    else if (this.head.versionMinor === 0) o.add('connection: keep-alive\r\n');
    o.add('\r\n');
  }
}

/**
 * The Authorization value access control judges: the field's value, or undefined when it is absent or
 * repeated (two credentials are ambiguous — the backend might read the other one — so neither counts).
 */
function singleAuthorization(head: MessageHead): string | undefined {
  const h = head.headers;
  let found: string | undefined;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i] as string;
    if (name.length === 13 && lowerName(name) === 'authorization') {
      if (found !== undefined) return undefined;
      found = h[i + 1] as string;
    }
  }
  return found;
}

/** `name: value` and its line end. */
function addField(o: HeadBuf, name: string, value: string): void {
  o.add(name);
  o.add(': ');
  o.add(value);
  o.add('\r\n');
}

/**
 * The heads being built (headbuf.ts): request heads are built and written in one go; a response head is
 * held (by the exchange that is its `owner`) until the body bytes of the same upstream read, so that
 * head and body leave in one write (see onUpstreamHead).
 */
const REQUEST_HEAD = new HeadBuf();
const RESPONSE_HEAD = new HeadBuf();

const VIA_11 = 'via: 1.1 portico\r\n';
const VIA_10 = 'via: 1.0 portico\r\n';

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

function trailerBlock(t: string[] | undefined): string {
  if (!t || t.length === 0) return '';
  let out = '';
  for (let i = 0; i < t.length; i += 2) {
    const lower = lowerName(t[i] as string);
    if (fieldClass(lower) === FieldClass.Pass) out += `${t[i] as string}: ${t[i + 1] as string}\r\n`;
  }
  return out;
}

/**
 * A raw two-way tunnel (after 101): backpressure both ways, half-close passed on, idle timeout. It holds
 * no reference to any table, so it survives every table swap. It takes both streams over; when the
 * client's closes, the client connection hears of it (the entrypoint tracks it for drains).
 */
export class Tunnel {
  private readonly timer: CoarseTimer<Tunnel>;
  readonly client: TunnelSide;
  readonly upstream: TunnelSide;

  constructor(
    private readonly conn: ClientConn,
    a: Stream,
    b: Stream,
    wheel: TimerWheel,
    idleMs: number,
  ) {
    this.timer = new CoarseTimer<Tunnel>(wheel, onTunnelIdle, this as Tunnel);
    this.timer.start(idleMs);
    this.client = new TunnelSide(this, a, b);
    this.upstream = new TunnelSide(this, b, a);
    a.owner = this.client;
    b.owner = this.upstream;
    a.resume();
    b.resume();
  }

  touch(): void {
    this.timer.refresh();
  }

  closed(side: TunnelSide): void {
    this.timer.clear();
    if (side === this.client) this.conn.tunnelClosed();
  }

  destroy(): void {
    this.client.from.destroy();
    this.upstream.from.destroy();
  }
}

/** One direction of a tunnel: what `from` reads goes to `to`. */
class TunnelSide implements StreamOwner {
  constructor(
    private readonly t: Tunnel,
    readonly from: Stream,
    readonly to: Stream,
  ) {}
  onStreamData(d: Buffer): void {
    this.t.touch();
    if (!this.to.write(writable(this.to, d, this.from.volatileReads))) this.from.pause();
  }
  onStreamEnd(): void {
    this.to.end();
  }
  /** `from` drained: the other direction, which writes into it, may read again. */
  onStreamDrain(): void {
    this.to.resume();
  }
  onStreamClose(): void {
    this.t.closed(this);
    this.to.destroy();
  }
  onStreamConnect(): void {}
}

function onTunnelIdle(t: Tunnel): void {
  t.destroy();
}
