/**
 * A client connection: its request parser, its one timer (header and keep-alive timeouts between
 * requests, the active exchange's timeouts during one), the bytes read but not parsed yet, half-close
 * and drain. It starts an Exchange (exchange.ts) for each request head, one at a time: a pipelined
 * request waits in `pending` until the exchange before it is done, so responses leave in order.
 *
 * A client that leaves mid-exchange aborts it (Exchange.onClientAbort: the upstream connection is
 * destroyed, a queued request leaves the queue), as HAProxy does:
 *  - the connection is gone (a reset, a read or write error): always;
 *  - it half-closes (FIN) before its request is complete: always, the request can never complete;
 *  - it half-closes after a complete request: only with `l7.abortOnClose` and while no response has
 *    begun (HAProxy's `option abortonclose`). Without it (the default, as HAProxy's) the request is
 *    answered, as HTTP/1.1 allows a client to half-close and wait.
 * A client that closed its socket shows only a FIN until something is written to it (its reset answers
 * the write): it is judged as a half-close until then. Bytes read but not parsed yet (held while the
 * exchange waited for its connection) may complete the request: the half-close is judged once they
 * are parsed.
 */
import { RequestPickContext } from './balance/index.js';
import { Exchange } from './exchange.js';
import type { AllowList } from './filters/allow-list.js';
import { REASONS, clientAddress, forwardedFor, simpleResponse } from './headers.js';
import { VIA_10, VIA_11 } from './heads.js';
import { HttpParser, Kind, headerValue, type MessageHead } from './http/parser.js';
import type { EntrypointRuntime, ProxyHost } from './proxy.js';
import type { Stream, StreamOwner } from '../net/stream.js';
import { CoarseTimer } from './timers.js';

const enum TimerMode {
  None,
  KeepAlive,
  Header,
}

/** How long a client that does not close after our FIN (or does not read our error response) is waited for. */
const CLOSING_GRACE_MS = 5_000;

/**
 * Bytes held unparsed (a request body while its exchange waits for a connection, pipelined requests)
 * below which the connection goes on reading: a client that leaves (FIN, reset) while its request is
 * queued is seen then, not once the request reaches an endpoint. From this many on, reading stops until
 * they are parsed (backpressure).
 */
const HOLD_BYTES = 16_384;

/** Placeholder owner while a stream is handed over. */
export const NO_OWNER: StreamOwner = {
  onStreamData() {},
  onStreamEnd() {},
  onStreamDrain() {},
  onStreamClose() {},
  onStreamConnect() {},
};

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
      if ((this.pending as Buffer).length >= HOLD_BYTES) this.stream.pause();
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

  /** The allow-list filter's memo (filters/allow-list.ts): the list last judged here and its verdict. */
  allowMemo: AllowList | undefined = undefined;
  allowMemoOk = false;

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
        const held = (this.pending = this.pending ? Buffer.concat([rest, this.pending]) : volatile ? Buffer.from(rest) : rest);
        if (parser.phase !== 'upgraded' && held.length >= HOLD_BYTES) this.stream.pause();
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
    // A half-close that came while bytes waited unparsed: judged now that they are.
    const ex = this.current;
    if (this.peerEnded && ex !== undefined && p !== undefined && this.pending === undefined && !this.closed) this.judgeHalfClose(ex);
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

  /** The client half-closed (FIN): no more bytes will come from it. */
  peerEnded = false;

  private onEnd(): void {
    // The client half-closed: an idle connection closes; an exchange is judged (see the module comment).
    this.peerEnded = true;
    const ex = this.current;
    if (ex === undefined) this.end();
    else this.judgeHalfClose(ex);
  }

  /** The client has half-closed while `ex` is current: abort it, or answer it and close after (module comment). */
  private judgeHalfClose(ex: Exchange): void {
    if (ex.upstreamInFlight) {
      if (this.host.opts.abortOnClose && !ex.responseStarted) return this.abortExchange(ex);
      if (this.pending !== undefined) return; // judged again once parsed (resumeParsing)
      if (!ex.requestComplete && !ex.head.upgrade) return this.abortExchange(ex);
    } else if (this.pending !== undefined) return;
    this.closeAfter = true; // no request after this one
  }

  /** The client left mid-exchange: the exchange gives its upstream side up, and the connection closes. */
  private abortExchange(ex: Exchange): void {
    this.current = undefined;
    ex.onClientAbort();
    this.destroy();
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
      ex.onClientAbort();
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

function onClosingTimeout(c: ClientConn): void {
  c.stream.destroy();
}

function onClientTimeout(c: ClientConn): void {
  c.onTimeout();
}
