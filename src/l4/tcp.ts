/**
 * One forwarded TCP connection, client ⇄ endpoint, as an explicit state machine written once over the
 * byte streams of src/net/stream.ts. The plane picks the stream at accept: libuv handles (UvStream)
 * where this Node has the bindings, net.Socket (SocketStream) otherwise or with `tcpEngine: 'net'`; the
 * endpoint side is opened the same way as the client side.
 *
 *   header  (a trusted source: read its PROXY header)          ─┐
 *   sni     (an SNI entrypoint: read the ClientHello's name)   ─┼─▶ connecting ─▶ open ─▶ closed
 *   (neither: straight to connecting)                          ─┘      │ retry on the next endpoint
 *
 * The client is read only when its bytes have somewhere to go: its prelude in `header` and `sni`, then
 * nothing until the endpoint is connected (a plain VIP's first bytes wait in the kernel).
 *
 * The byte pump, per direction (each `Side` reads its stream and writes the other side's):
 * - backpressure: the streams say stop as soon as a write does not complete at once (`highWaterBytes:
 *   0`), and the side that read it is paused until the other drains. At most one read per direction is
 *   in flight: memory per connection is bounded by one read, whatever the peers do.
 * - reads land in memory of their own per read until a direction has carried `bulkThresholdBytes`; then
 *   in one buffer owned by that stream, reused for every read (a stream does not read while a write of
 *   its last read is pending, by the rule above). Small exchanges never pay for the buffer.
 * - half-close: a FIN read from one side ends the other (after what is queued); the other direction
 *   keeps flowing. The second FIN needs no shutdown() of its own: end() after the peer's FIN closes, and
 *   close() sends it (as HAProxy does).
 * - a read or write error on either side resets the other (RST): a peer's reset is passed on. An
 *   endpoint's error on an open connection is also counted and logged (`upstream-error`).
 * - deadlines (header, sni, connect, idle, drain) are fields checked by the plane's coarse tick, not
 *   timers per connection; activity is a boolean written per read.
 *
 * No closure is made per connection: the streams call the fixed methods of their owner (a Side). The
 * client's addresses are read only when something needs them: a hash over more than one endpoint, a
 * PROXY header, a log line.
 */
import { NO_OWNER, SocketStream, UvStream, type Stream, type StreamOptions, type StreamOwner } from '../net/stream.js';
import { fnv1a } from './maglev.js';
import type { L4Failure, L4Options } from './options.js';
import type { Member, ServicePool } from './pool.js';
import { encodeV1, encodeV2, parseProxyHeader, proxyPrefixVerdict, unmapAddress, type Address } from './proxy-protocol.js';
import { parseClientHello } from './sni.js';
import type { Front, L4Host, L4Session, RejectDetail } from './types.js';

export type SessionState = 'header' | 'sni' | 'connecting' | 'open' | 'closed';

/**
 * How the engine's streams read and write, both sides alike: paused until the session resumes them,
 * one write in flight per direction, per-read memory until `bulkThresholdBytes`, then a reused buffer.
 */
export function streamOptions(o: Readonly<L4Options>): Readonly<StreamOptions> {
  return Object.freeze({
    paused: true,
    highWaterBytes: 0,
    batch: false,
    reads: 'fresh',
    ownBufferAfter: o.bulkThresholdBytes,
    ownBufferBytes: o.readBufferBytes,
    socketHighWaterMark: o.highWaterMark,
    refreshClock: false, // (the session reads the plane's coarse clock, not the streams')
  } satisfies StreamOptions);
}

/** One side of a session: the owner of its stream, and what was read from it. */
class Side implements StreamOwner {
  /** Bytes read from this side and passed on (client: in, endpoint: out). */
  bytes = 0;
  /** Its FIN was read. */
  eof = false;
  /** Its stream has closed. */
  closed = false;

  constructor(
    private readonly session: TcpSession,
    readonly stream: Stream,
  ) {
    stream.owner = this;
  }

  onStreamData(chunk: Buffer): void {
    this.session.data(this, chunk);
  }

  onStreamEnd(): void {
    this.eof = true;
    this.session.ended(this);
  }

  onStreamDrain(): void {
    this.session.drained(this);
  }

  onStreamClose(err: Error | undefined): void {
    this.closed = true;
    this.session.closed(this, err);
  }

  onStreamConnect(): void {
    this.session.connected(this);
  }
}

export class TcpSession implements L4Session {
  state: SessionState = 'connecting';
  member: Member | undefined;
  /** header/sni/connect deadline, ms since epoch; 0 = none. */
  deadline = 0;
  lastActive: number;
  readonly client: Side;
  /** The endpoint side of the current connect attempt, then of the open session. */
  upstream: Side | undefined = undefined;
  /** Read something since the last tick. */
  private touched = false;
  private src: Address | undefined;
  private dst: Address | undefined;
  private pool: ServicePool | undefined;
  private tried: Member[] | null = null;
  private lastFailure: L4Failure = 'no-endpoint';
  /** Client bytes read before the endpoint can take them (the prelude, an inspection). */
  private pending: Buffer[] | null = null;
  private pendingBytes = 0;
  private hash = 0;
  /** Untrusted source while PROXY is accepted from others: its first bytes must not be a PROXY header. */
  private inspecting = false;
  private serverName: string | undefined;
  private flushedIn = 0;
  private flushedOut = 0;
  private done = false;

  /** `client` is an accepted stream, paused, made with the host's `streamOptions`. */
  constructor(
    private readonly host: L4Host,
    readonly front: Front,
    client: Stream,
    private readonly onClosed: (s: L4Session) => void,
  ) {
    this.client = new Side(this, client);
    this.lastActive = host.now;
  }

  /** Where the client is (from the PROXY header when a trusted balancer sent one). Read lazily. */
  get source(): Address {
    if (this.src === undefined) {
      const p = this.client.stream.remote();
      this.src = { address: unmapAddress(p.address), port: p.port };
    }
    return this.src;
  }

  /** What it connected to (the VIP address and port). Read lazily. */
  get dest(): Address {
    if (this.dst === undefined) {
      const p = this.client.stream.local();
      this.dst = { address: unmapAddress(p.address), port: p.port };
    }
    return this.dst;
  }

  start(): void {
    const host = this.host;
    if (host.acceptProxy) {
      if (host.trustedProxy(this.source.address)) {
        this.state = 'header';
        this.deadline = host.now + host.opts.proxyHeaderTimeoutMs;
        this.client.stream.resume();
        return;
      }
      // (an SNI entrypoint needs no inspection: a PROXY header is not a ClientHello and is refused anyway)
      this.inspecting = this.front.kind !== 'sni';
    }
    this.afterHeader();
  }

  private afterHeader(): void {
    if (this.front.kind === 'sni') {
      this.state = 'sni';
      this.deadline = this.host.now + this.host.opts.sniTimeoutMs;
      if (this.pendingBytes > 0) this.onSni();
      if (this.state === 'sni') this.client.stream.resume();
      return;
    }
    this.pool = this.front.pool;
    this.route();
  }

  // ---- what the sides report

  /** @internal bytes read from `side` */
  data(side: Side, chunk: Buffer): void {
    switch (this.state) {
      case 'open': {
        if (this.inspecting && side === this.client) {
          this.inspect(chunk);
          return;
        }
        side.bytes += chunk.length;
        this.touched = true;
        const to = side === this.client ? (this.upstream as Side) : this.client;
        // The write could not complete at once: read no more from this side until the other drains.
        if (!to.stream.write(chunk)) side.stream.pause();
        return;
      }
      case 'header':
        this.hold(chunk);
        this.onHeader();
        return;
      case 'sni':
        this.hold(chunk);
        this.onSni();
        return;
      case 'connecting':
        // (a stream that delivers while paused: kept for the endpoint)
        if (side === this.client) this.hold(chunk);
        return;
      default:
    }
  }

  /** @internal `side` sent its FIN */
  ended(side: Side): void {
    if (side === this.client) {
      switch (this.state) {
        case 'header':
        case 'sni':
          this.preludeEnd();
          return;
        case 'open':
          if (this.inspecting) this.inspectEnd();
          else (this.upstream as Side).stream.end();
          return;
        default:
        // connecting: remembered (side.eof); the endpoint is ended once connected
      }
      return;
    }
    if (side === this.upstream && this.state === 'open') this.client.stream.end();
  }

  /** @internal `side`'s stream took everything written to it: the other side may be read again */
  drained(side: Side): void {
    if (this.state !== 'open') return;
    const from = side === this.client ? this.upstream : this.client;
    if (from !== undefined && !from.eof) from.stream.resume();
  }

  /** @internal the endpoint side of a connect attempt connected */
  connected(side: Side): void {
    if (side !== this.upstream || this.state !== 'connecting') return;
    const m = this.member as Member;
    this.state = 'open';
    this.deadline = 0;
    this.lastActive = this.host.now;
    m.backend.connections++;
    this.host.connectSucceeded(m);
    const u = side.stream;
    const c = this.client;
    let ok = true;
    if (this.front.proxyProtocol === 'v1') ok = u.write(encodeV1(this.source, this.dest));
    else if (this.front.proxyProtocol === 'v2') ok = u.write(encodeV2(this.source, this.dest, 'tcp'));
    u.resume();
    if (this.inspecting) {
      if (c.eof) this.inspectEnd();
      else c.stream.resume();
      return;
    }
    const pending = this.pending;
    if (pending !== null) {
      // The prelude's bytes (PROXY header excluded) were the client's.
      c.bytes += this.pendingBytes;
      for (let i = 0; i < pending.length; i++) ok = u.write(pending[i] as Buffer) && ok;
      this.pending = null;
      this.pendingBytes = 0;
    }
    if (c.eof)
      u.end(); // the client's FIN came while the endpoint was being connected to
    else if (ok) c.stream.resume(); // (else drained() resumes it)
  }

  /** @internal `side`'s stream closed; `err` when an error closed it */
  closed(side: Side, err: Error | undefined): void {
    if (side === this.client) {
      if (this.state === 'open') {
        const u = this.upstream as Side;
        // A client's reset (or error) is passed on; a client gone before the endpoint's FIN ends it too.
        if (!u.closed) {
          if (err !== undefined) u.stream.reset();
          else if (!u.eof) u.stream.destroy();
        }
      } else if (this.state !== 'closed') {
        // Gone before the session opened: drop the connect in progress.
        this.abortConnect();
        this.state = 'closed';
      }
    } else if (side === this.upstream) {
      if (this.state === 'connecting') {
        this.connectFailed('connect-failed', err);
        return;
      }
      if (this.state === 'open') {
        const c = this.client;
        if (err !== undefined) {
          // An endpoint resetting (or failing) an established connection: pass the reset on, count it, log it.
          const code = (err as NodeJS.ErrnoException).code;
          this.host.rejected(this.front, 'upstream-error', this.detail({ err, message: code ?? err.message }));
          if (!c.closed) c.stream.reset();
        } else if (!c.closed && !c.eof) {
          // Nothing can be delivered to a closed endpoint: a client that may still send is closed too.
          c.stream.destroy();
        }
      }
    } else {
      return; // an abandoned attempt
    }
    this.maybeFinish();
  }

  // ---- prelude: PROXY header, ClientHello

  private hold(d: Buffer): void {
    (this.pending ??= []).push(this.client.stream.volatileReads ? Buffer.from(d) : d);
    this.pendingBytes += d.length;
  }

  private joined(): Buffer {
    const p = this.pending;
    if (!p || p.length === 0) return Buffer.alloc(0);
    if (p.length > 1) this.pending = [Buffer.concat(p)];
    return (this.pending as Buffer[])[0] as Buffer;
  }

  private preludeEnd(): void {
    if (this.pendingBytes === 0)
      this.destroy(); // connected and left: a port check, not a failure
    else if (this.state === 'header') this.reject('proxy-invalid', { message: 'closed before the PROXY header was complete' });
    else this.reject('sni-invalid', { message: 'closed before the ClientHello was complete' });
  }

  private onHeader(): void {
    const buf = this.joined();
    const r = parseProxyHeader(buf);
    if (r.kind === 'incomplete') return;
    if (r.kind === 'invalid') {
      this.reject(proxyPrefixVerdict(buf) === 'data' ? 'proxy-required' : 'proxy-invalid', { message: r.reason });
      return;
    }
    if (!r.local && r.source && r.destination) {
      this.src = r.source;
      this.dst = r.destination;
    }
    const rest = buf.subarray(r.length);
    this.pending = rest.length ? [rest] : null;
    this.pendingBytes = rest.length;
    this.deadline = 0;
    // An SNI entrypoint reads on (the ClientHello); a VIP routes now, and reads again once connected.
    if (this.front.kind !== 'sni') this.client.stream.pause();
    this.afterHeader();
  }

  private onSni(): void {
    const buf = this.joined();
    const max = this.host.opts.sniMaxHelloBytes;
    const r = parseClientHello(buf, max);
    if (r.kind === 'incomplete') {
      // Records carry ≤16 KiB each and the message is bounded; many tiny records are bounded here.
      if (this.pendingBytes > max * 2 + 65_536) this.reject('sni-invalid', { message: 'ClientHello spread over too many records' });
      return;
    }
    if (r.kind === 'invalid') {
      this.reject('sni-invalid', { message: r.reason });
      return;
    }
    this.serverName = r.serverName;
    const pool = this.front.sni?.lookup(r.serverName);
    if (!pool) {
      this.reject(
        'sni-no-route',
        r.serverName !== undefined ? { serverName: r.serverName } : { message: 'no server_name and no "*" route' },
      );
      return;
    }
    this.client.stream.pause();
    this.pool = pool;
    this.route();
  }

  /** Client bytes from an untrusted source while PROXY is accepted from others: refuse a PROXY header. */
  private inspect(d: Buffer): void {
    this.hold(d);
    const buf = this.joined();
    const v = proxyPrefixVerdict(buf);
    if (v === 'undecided') return;
    if (v === 'proxy') {
      this.reject('proxy-untrusted', { message: 'a PROXY header from a source not in acceptProxyFrom' });
      return;
    }
    this.inspecting = false;
    this.pending = null;
    this.pendingBytes = 0;
    this.client.bytes += buf.length;
    this.touched = true;
    if (!(this.upstream as Side).stream.write(buf)) this.client.stream.pause();
  }

  /** The client ended while its bytes were still a possible signature prefix: they are data after all. */
  private inspectEnd(): void {
    this.inspecting = false;
    const u = (this.upstream as Side).stream;
    const pending = this.pending;
    if (pending !== null) {
      this.client.bytes += this.pendingBytes;
      for (let i = 0; i < pending.length; i++) u.write(pending[i] as Buffer);
      this.pending = null;
      this.pendingBytes = 0;
    }
    u.end();
  }

  // ---- routing and connecting

  private route(): void {
    // The hash only matters to Maglev over more than one endpoint: skip the address syscalls otherwise.
    if (this.pool && this.pool.selector.needsHash) {
      const s = this.source;
      this.hash =
        this.host.opts.hashKey === 'source-ip'
          ? fnv1a(s.address)
          : fnv1a(`${s.address}|${s.port}|${this.dest.address}|${this.dest.port}|tcp`);
    }
    this.state = 'connecting';
    this.connectNext();
  }

  private connectNext(): void {
    const m = this.pool?.selector.pick(this.hash, this.tried);
    if (!m) {
      this.reject(this.tried ? this.lastFailure : 'no-endpoint', {});
      return;
    }
    this.member = m;
    m.active++;
    m.backend.active++;
    this.deadline = this.host.now + this.host.opts.connectTimeoutMs;
    const b = m.backend;
    const opts = this.host.streamOptions;
    // The endpoint side runs on what the client side runs on.
    const u =
      this.client.stream instanceof UvStream
        ? UvStream.connect(b.address, b.port, NO_OWNER, opts)
        : SocketStream.connect(b.address, b.port, NO_OWNER, opts);
    this.upstream = new Side(this, u);
  }

  private connectFailed(reason: 'connect-failed' | 'connect-timeout', err: Error | undefined): void {
    const m = this.member as Member;
    this.abortConnect();
    this.host.connectFailed(m, reason, err);
    (this.tried ??= []).push(m);
    this.lastFailure = reason;
    if (this.tried.length <= this.host.opts.connectRetries) this.connectNext();
    else this.reject(reason, err ? { err } : {});
  }

  /** Drop the endpoint stream of a connect in progress (its events go nowhere from now on) and release its member. */
  private abortConnect(): void {
    const u = this.upstream;
    if (u !== undefined) {
      u.stream.owner = NO_OWNER;
      u.stream.destroy();
      this.upstream = undefined;
    }
    if (this.member) {
      this.member.active--;
      this.member.backend.active--;
      this.member = undefined;
    }
  }

  // ---- ending

  private detail(extra: RejectDetail): RejectDetail {
    const d: RejectDetail = { client: this.source, ...extra };
    if (this.member) d.endpoint = this.member.backend.key;
    if (this.tried) d.tried = this.tried.map((m) => m.backend.key);
    if (this.serverName !== undefined) d.serverName = this.serverName;
    return d;
  }

  /** Refuse or fail the connection: one counted, logged reason; the client (and an open endpoint) get a reset. */
  reject(reason: L4Failure, extra: RejectDetail): void {
    if (this.state === 'closed') return;
    this.host.rejected(this.front, reason, this.detail(extra));
    if (this.state !== 'open') this.abortConnect();
    this.state = 'closed';
    this.client.stream.reset();
    this.upstream?.stream.reset();
    this.maybeFinish();
  }

  /** Close both sides now (idle, drained, stopped). */
  destroy(): void {
    if (this.state !== 'open') this.abortConnect();
    this.state = 'closed';
    this.client.stream.destroy();
    this.upstream?.stream.destroy();
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.client.closed && (this.upstream === undefined || this.upstream.closed)) this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.state = 'closed';
    this.flush();
    if (this.member) {
      this.member.active--;
      this.member.backend.active--;
      this.member = undefined;
    }
    this.onClosed(this);
  }

  /** Report bytes moved since the last flush to the VIP's and the endpoint's counters. */
  flush(): void {
    const inB = this.client.bytes;
    const outB = this.upstream !== undefined ? this.upstream.bytes : 0;
    const di = inB - this.flushedIn;
    const dout = outB - this.flushedOut;
    if (di === 0 && dout === 0) return;
    this.flushedIn = inB;
    this.flushedOut = outB;
    this.front.stats.bytesIn += di;
    this.front.stats.bytesOut += dout;
    const b = this.member?.backend;
    if (b) {
      b.bytesIn += di;
      b.bytesOut += dout;
    }
  }

  /** The plane's coarse tick: deadlines, idleness, draining, byte counters. */
  tick(now: number): void {
    switch (this.state) {
      case 'open': {
        if (this.touched) {
          this.touched = false;
          this.lastActive = now;
        } else if (now - this.lastActive >= this.host.opts.idleTimeoutMs) {
          this.destroy();
          return;
        }
        const m = this.member;
        if (m && m.drainDeadline !== 0 && now >= m.drainDeadline) {
          this.destroy();
          return;
        }
        this.flush();
        return;
      }
      case 'connecting':
        if (this.deadline !== 0 && now >= this.deadline) this.connectFailed('connect-timeout', undefined);
        return;
      case 'header':
        if (now >= this.deadline)
          this.reject('proxy-timeout', { message: `no complete PROXY header within ${this.host.opts.proxyHeaderTimeoutMs} ms` });
        return;
      case 'sni':
        if (now >= this.deadline)
          this.reject('sni-timeout', { message: `no complete ClientHello within ${this.host.opts.sniTimeoutMs} ms` });
        return;
      default:
    }
  }

  /** Bytes client → endpoint and back so far. */
  get bytes(): { in: number; out: number } {
    return { in: this.client.bytes, out: this.upstream !== undefined ? this.upstream.bytes : 0 };
  }

  get upstreamReading(): boolean {
    return this.state === 'open' && this.upstream !== undefined && this.upstream.stream.reading;
  }
}
