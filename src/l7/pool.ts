/**
 * Upstream connection pools: one per endpoint (`address:port`), shared by every service and table that
 * names it. Keep-alive connections are reused LIFO (the warmest first); at most `maxConnections` are
 * open per endpoint, further requests wait in a bounded FIFO queue, and a full queue is refused at once
 * (the proxy answers 503).
 *
 * A connection belongs to one exchange at a time (`owner`). Its stream (a libuv handle for an IP
 * endpoint, else a net.Socket; see stream.ts) and its response parser are set up once, when it is made;
 * events go to the owner through a small interface, with no closure per request. An upstream's FIN
 * closes the connection (it can take no further request).
 *
 * A connection stops counting against `maxConnections` the moment it is destroyed (not when its close
 * is reported, a turn later), and the next queued request gets a connection in that same call. A waiter
 * that gives up (its client left, its connect timeout passed) is taken out of the queue at once
 * (`cancel`), so it neither holds a queue place nor is handed a connection.
 */
import { HttpParser, Kind, type MessageHead } from './http/parser.js';
import { connectStream, type Stream, type StreamOwner } from '../net/stream.js';
import { CoarseTimer, type TimerWheel } from './timers.js';

export type UpstreamFailure = 'connect' | 'connect-timeout' | 'reset' | 'bad-response' | 'queue-full' | 'pool-closed';

export class UpstreamError extends Error {
  constructor(
    readonly reason: UpstreamFailure,
    message: string,
    readonly reused = false,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** What an exchange implements to receive a connection and its response. */
export interface ConnOwner {
  onUpstreamHead(head: MessageHead): void;
  onUpstreamBody(chunk: Buffer): void;
  onUpstreamTrailers(trailers: string[]): void;
  onUpstreamComplete(): void;
  /** The connection failed or closed before the response completed. */
  onUpstreamError(err: UpstreamError): void;
  /** The upstream socket's write buffer drained (backpressure). */
  onUpstreamDrain(): void;
  /** One read from the upstream socket has been parsed (flush what was held for coalescing). */
  onUpstreamReadEnd(): void;
  /** After a 101 head: the parser stopped; `rest` are the bytes that followed the head (tunnel data). */
  onUpstreamUpgrade(rest: Buffer): void;
}

export interface PoolWaiter {
  onPoolConnection(conn: UpstreamConn): void;
  onPoolError(err: UpstreamError): void;
  /** Set when the waiter gave up (client gone); the pool skips it. */
  cancelled: boolean;
}

export interface PoolOptions {
  /** Open connections per endpoint at most. */
  maxConnections: number;
  /** Requests waiting for a connection at most; more are refused with `queue-full`. */
  maxQueue: number;
  connectTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long. */
  idleTimeoutMs: number;
  wheel: TimerWheel;
  /** Parser limits for responses. */
  maxHeaderBytes: number;
  /** How a connection is opened (default: connectStream — libuv handle or net.Socket). */
  connect?: (address: string, port: number, owner: StreamOwner) => Stream;
}

export class UpstreamConn implements StreamOwner {
  /** A UvStream (IP endpoints) or a net.Socket stream; a tunnel takes it over after detach(). */
  readonly stream: Stream;
  readonly parser: HttpParser;
  owner: ConnOwner | undefined;
  /** A waiter this connection is being made for (until it connects). */
  private waiter: PoolWaiter | undefined;
  connected = false;
  /** Requests sent on this connection (1 = first use). */
  uses = 0;
  /** Response bytes received for the current request (0 = nothing yet: safe to retry). */
  responseBytes = 0;
  /** Detached: a tunnel, or destroyed; never returns to the pool. */
  detached = false;
  /** Counted in the pool's `total`: until destroyed, closed or detached (whichever comes first). */
  private counted = true;
  private readonly idleTimer: CoarseTimer<UpstreamConn>;
  private readonly connectTimer: CoarseTimer<UpstreamConn>;

  constructor(
    readonly pool: Pool,
    waiter: PoolWaiter,
  ) {
    this.waiter = waiter;
    const parser = new HttpParser(Kind.Response, { maxHeaderBytes: pool.opts.maxHeaderBytes, maxHeaders: 200, maxTargetBytes: 8192 });
    parser.onHead = (h) => this.owner?.onUpstreamHead(h);
    parser.onBody = (c) => this.owner?.onUpstreamBody(c);
    parser.onTrailers = (t) => this.owner?.onUpstreamTrailers(t);
    parser.onComplete = () => this.owner?.onUpstreamComplete();
    this.parser = parser;
    this.idleTimer = new CoarseTimer<UpstreamConn>(pool.opts.wheel, onIdleTimeout, this as UpstreamConn);
    this.connectTimer = new CoarseTimer<UpstreamConn>(pool.opts.wheel, onConnectTimeout, this as UpstreamConn);
    this.connectTimer.start(pool.opts.connectTimeoutMs);
    this.stream = (pool.opts.connect ?? connectStream)(pool.address, pool.port, this);
  }

  onStreamDrain(): void {
    this.owner?.onUpstreamDrain();
  }

  onStreamConnect(): void {
    this.connected = true;
    this.connectTimer.clear();
    const w = this.waiter;
    this.waiter = undefined;
    this.pool.onConnected(this, w);
  }

  onStreamData(d: Buffer): void {
    const owner = this.owner;
    if (!owner) {
      // Bytes on an idle connection: the server is confused (or closing); never reuse it.
      this.destroy();
      return;
    }
    this.responseBytes += d.length;
    this.idleTimer.refresh();
    const parser = this.parser;
    const off = parser.execute(d);
    if (parser.phase === 'upgraded' && this.owner === owner) {
      owner.onUpstreamUpgrade(d.subarray(off));
      return;
    }
    if (parser.error && this.owner === owner) {
      this.destroy();
      owner.onUpstreamError(
        new UpstreamError('bad-response', `bad response from ${this.pool.key}: ${parser.error.message}`, this.uses > 1),
      );
      return;
    }
    owner.onUpstreamReadEnd();
  }

  onStreamEnd(): void {
    // A close-delimited response completes here; finish() fires onComplete or sets an error.
    if (this.owner && this.parser.phase === 'body') this.parser.finish();
    // An upstream that sent FIN cannot take another request: close (an owner still waiting hears of it).
    if (!this.detached) this.stream.destroy();
  }

  onStreamClose(): void {
    this.connectTimer.clear();
    this.idleTimer.clear();
    this.detached = true;
    this.leavePool();
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      const reason = this.connectTimedOut ? 'connect-timeout' : 'connect';
      if (!w.cancelled)
        w.onPoolError(new UpstreamError(reason, `${reason === 'connect' ? 'cannot connect to' : 'connect timed out to'} ${this.pool.key}`));
      return;
    }
    const owner = this.owner;
    if (owner) {
      this.owner = undefined;
      owner.onUpstreamError(
        new UpstreamError('reset', `connection to ${this.pool.key} closed before the response completed`, this.uses > 1),
      );
    }
  }

  connectTimedOut = false;

  /** Start a request on this connection. */
  attach(owner: ConnOwner, expectNoBody: boolean, expectTunnel: boolean): void {
    this.owner = owner;
    this.uses++;
    this.responseBytes = 0;
    this.idleTimer.clear();
    this.parser.expectNoBody = expectNoBody;
    this.parser.expectTunnel = expectTunnel;
  }

  /** Idle-in-pool timer. */
  armIdle(): void {
    this.idleTimer.start(this.pool.opts.idleTimeoutMs);
  }

  /** Close now; its place in the pool is free as this returns (see the module comment). */
  destroy(): void {
    this.detached = true;
    this.owner = undefined;
    this.idleTimer.clear();
    this.stream.destroy();
    this.leavePool();
  }

  /** Take the connection out of the pool for good (a WebSocket tunnel); the caller owns the stream. */
  detach(): void {
    this.detached = true;
    this.owner = undefined;
    this.idleTimer.clear();
    this.counted = false;
    this.pool.onDetached(this);
  }

  /** Give the connection's place back to the pool, once. */
  private leavePool(): void {
    if (!this.counted) return;
    this.counted = false;
    this.pool.onClosed(this);
  }
}

function onIdleTimeout(c: UpstreamConn): void {
  c.destroy();
}

function onConnectTimeout(c: UpstreamConn): void {
  c.connectTimedOut = true;
  c.stream.destroy();
}

/** A FIFO of waiters on a growable ring buffer (no Array.shift on the hot path). */
class WaiterQueue {
  private buf: (PoolWaiter | undefined)[] = new Array(16);
  private head = 0;
  length = 0;
  push(w: PoolWaiter): void {
    if (this.length === this.buf.length) {
      const next = new Array<PoolWaiter | undefined>(this.buf.length * 2);
      for (let i = 0; i < this.length; i++) next[i] = this.buf[(this.head + i) % this.buf.length];
      this.buf = next;
      this.head = 0;
    }
    this.buf[(this.head + this.length) % this.buf.length] = w;
    this.length++;
  }
  shift(): PoolWaiter | undefined {
    if (this.length === 0) return undefined;
    const w = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) % this.buf.length;
    this.length--;
    return w;
  }
  /** Take `w` out, keeping the others' order; false if it is not queued. (A scan: only a waiter giving up pays it.) */
  remove(w: PoolWaiter): boolean {
    const buf = this.buf;
    const size = buf.length;
    let i = 0;
    while (i < this.length && buf[(this.head + i) % size] !== w) i++;
    if (i === this.length) return false;
    for (; i < this.length - 1; i++) buf[(this.head + i) % size] = buf[(this.head + i + 1) % size];
    buf[(this.head + this.length - 1) % size] = undefined;
    this.length--;
    return true;
  }
}

export class Pool {
  readonly key: string;
  private readonly idle: UpstreamConn[] = [];
  private readonly queue = new WaiterQueue();
  /** Connections open or opening. */
  total = 0;
  busy = 0;
  closed = false;
  connectsTotal = 0;
  connectFailuresTotal = 0;

  constructor(
    readonly address: string,
    readonly port: number,
    readonly opts: PoolOptions,
  ) {
    this.key = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  }

  /** Give `w` a connection now, when one connects, or when one is released; or an error. */
  acquire(w: PoolWaiter): void {
    if (this.closed) {
      w.onPoolError(new UpstreamError('pool-closed', `endpoint ${this.key} was removed`));
      return;
    }
    let conn = this.idle.pop();
    while (conn && conn.detached) conn = this.idle.pop();
    if (conn) {
      this.busy++;
      w.onPoolConnection(conn);
      return;
    }
    if (this.total < this.opts.maxConnections) {
      this.total++;
      this.connectsTotal++;
      new UpstreamConn(this, w);
      return;
    }
    if (this.queue.length >= this.opts.maxQueue) {
      w.onPoolError(
        new UpstreamError('queue-full', `endpoint ${this.key}: ${this.total} connections busy and ${this.queue.length} requests queued`),
      );
      return;
    }
    this.queue.push(w);
  }

  /**
   * Return a connection: every connection handed to a waiter is released exactly once, by its exchange,
   * whether the exchange completed (`reusable` true keeps it alive) or failed (false closes it).
   */
  release(conn: UpstreamConn, reusable: boolean): void {
    conn.owner = undefined;
    this.busy--;
    if (!reusable || conn.detached || this.closed) {
      conn.destroy();
      return;
    }
    for (;;) {
      const w = this.queue.shift();
      if (!w) break;
      if (w.cancelled) continue;
      this.busy++;
      w.onPoolConnection(conn);
      return;
    }
    conn.armIdle();
    this.idle.push(conn);
  }

  /**
   * `w` gives up (its client left, its connect timeout passed): out of the queue now, so it holds no
   * place there. True if it was queued, false if not (a connection being made for it goes to the next
   * waiter, or to the idle list, once it connects: the waiter is marked cancelled).
   */
  cancel(w: PoolWaiter): boolean {
    return this.queue.remove(w);
  }

  /** Called by a connection that connected for `w`. */
  onConnected(conn: UpstreamConn, w: PoolWaiter | undefined): void {
    if (w && !w.cancelled) {
      this.busy++;
      w.onPoolConnection(conn);
      return;
    }
    // Its waiter gave up: serve the queue or keep it idle.
    this.busy++;
    this.release(conn, true);
  }

  /** A connection's place is free: it was destroyed or it closed (once per connection). */
  onClosed(conn: UpstreamConn): void {
    this.total--;
    if (!conn.connected) this.connectFailuresTotal++;
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    // (A busy connection is released by its exchange, which hears of the close through onUpstreamError.)
    // Room for a queued request: open a connection for it.
    this.drainQueue();
  }

  onDetached(_conn: UpstreamConn): void {
    // A tunnel no longer counts against the pool's connections.
    this.total--;
    this.busy--;
    this.drainQueue();
  }

  private drainQueue(): void {
    while (this.queue.length > 0 && this.total < this.opts.maxConnections && !this.closed) {
      const w = this.queue.shift();
      if (!w || w.cancelled) continue;
      this.total++;
      this.connectsTotal++;
      new UpstreamConn(this, w);
    }
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Stop: close idle connections; busy ones close when released. Queued waiters are refused. */
  close(): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.destroy();
    for (;;) {
      const w = this.queue.shift();
      if (!w) break;
      if (!w.cancelled) w.onPoolError(new UpstreamError('pool-closed', `endpoint ${this.key} was removed`));
    }
  }
}
