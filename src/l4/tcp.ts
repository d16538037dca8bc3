/**
 * The net.Socket engine: one forwarded TCP connection, client socket ⇄ endpoint socket, as an explicit
 * state machine. It serves SNI entrypoints and VIPs that accept PROXY from a balancer in front (both read
 * the connection before routing it), and every VIP where the handle engine (uvtcp.ts) is unavailable.
 *
 *   header  (a trusted source: read its PROXY header)          ─┐
 *   sni     (an SNI entrypoint: read the ClientHello's name)   ─┼─▶ connecting ─▶ open ─▶ closed
 *   (neither: straight to connecting)                          ─┘      │ retry on the next endpoint
 *
 * Forwarding (`Flow`, one per direction) is written for bulk speed and correctness:
 * - backpressure: when the destination's `write()` returns false the source stops reading until the
 *   destination emits 'drain' — memory per connection stays bounded by the high-water mark;
 * - half-close: a FIN from one side ends the other side's writable only; the other direction keeps
 *   flowing until it ends too (both sockets are `allowHalfOpen`);
 * - no allocation per read once a direction has carried `bulkThresholdBytes`: from then on the source
 *   reads into one reused buffer (see fastpath.ts), replaced only when a write still holds it;
 * - idle, connect, header and drain deadlines are fields checked by the plane's coarse tick (`tick`),
 *   not timers per connection; activity is a boolean written per read.
 *
 * And for connection rate: no closure is made per connection. Sockets carry their session (and flows)
 * under symbols, and the event handlers are module-level functions that find them through `this` (the
 * emitter). The client's addresses are read (getpeername/getsockname) only when something needs them:
 * a hash over more than one endpoint, a PROXY header, a log line.
 */
import net from 'node:net';
import { fnv1a } from './maglev.js';
import type { L4Failure } from './options.js';
import type { Member, ServicePool } from './pool.js';
import { encodeV1, encodeV2, parseProxyHeader, proxyPrefixVerdict, unmapAddress, type Address } from './proxy-protocol.js';
import { parseClientHello } from './sni.js';
import { resumeUserBuffer, useUserBuffer } from './fastpath.js';
import type { Front, L4Host, L4Session, RejectDetail } from './types.js';

export type SessionState = 'header' | 'sni' | 'connecting' | 'open' | 'closed';

const kSession = Symbol('l4.session');
/** The flow this socket is the source of (reads). */
const kSrc = Symbol('l4.src');
/** The flow this socket is the destination of (drains). */
const kDst = Symbol('l4.dst');

interface Tagged extends net.Socket {
  [kSession]?: TcpSession | undefined;
  [kSrc]?: Flow;
  [kDst]?: Flow;
}

// ---- shared handlers: `this` is the socket that emitted

function onClientError(this: Tagged): void {
  this[kSession]?.clientError();
}
function onClientClose(this: Tagged): void {
  this[kSession]?.clientClose();
}
function onPrelude(this: Tagged, d: Buffer): void {
  this[kSession]?.prelude(d);
}
function onPreludeEnd(this: Tagged): void {
  this[kSession]?.preludeEnd();
}
function onInspect(this: Tagged, d: Buffer): void {
  this[kSession]?.inspect(d);
}
function onInspectEnd(this: Tagged): void {
  this[kSession]?.inspectEnd();
}
function onUpstreamConnect(this: Tagged): void {
  this[kSession]?.connected(this);
}
function onUpstreamError(this: Tagged, err: Error): void {
  this[kSession]?.upstreamError(this, err);
}
function onUpstreamClose(this: Tagged): void {
  this[kSession]?.upstreamClose(this);
}
function onFlowData(this: Tagged, d: Buffer): void {
  (this[kSrc] as Flow).data(d);
}
function onFlowEnd(this: Tagged): void {
  (this[kSrc] as Flow).end();
}
function onFlowDrain(this: Tagged): void {
  this[kDst]?.drain();
}

/** One direction of an open session: reads `src`, writes `dst`. */
class Flow {
  bytes = 0;
  /** Read something since the last tick. */
  touched = false;
  /** `src` sent its FIN (and `dst` was ended after it). */
  ended = false;
  private buf: Buffer | undefined;
  /** The last write still references `buf`: the next read needs a fresh one. */
  private busy = false;
  private fast = false;

  constructor(
    private readonly src: Tagged,
    private readonly dst: Tagged,
    private readonly threshold: number,
    private readonly bufSize: number,
  ) {
    src[kSrc] = this;
    dst[kDst] = this;
  }

  start(): void {
    this.dst.on('drain', onFlowDrain);
    if (this.src.readableEnded) {
      // The FIN came while the prelude (PROXY header, ClientHello) was read: a paused stream still emits 'end'.
      this.end();
      return;
    }
    this.src.on('data', onFlowData);
    this.src.on('end', onFlowEnd);
    if (this.threshold === 0) this.goFast();
    this.src.resume();
  }

  data(d: Buffer): void {
    this.bytes += d.length;
    this.touched = true;
    if (!this.dst.write(d)) {
      this.src.pause();
      return;
    }
    if (this.threshold > 0 && this.bytes >= this.threshold) this.goFast();
  }

  private goFast(): void {
    this.buf = Buffer.allocUnsafe(this.bufSize);
    if (useUserBuffer(this.src, this.buf, this.onRead, this.next)) {
      this.fast = true;
      this.src.removeListener('data', onFlowData);
    } else {
      this.buf = undefined;
    }
  }

  // The two closures of the bulk path, made once per direction that turns bulk.
  private readonly onRead = (n: number, b: Buffer): boolean => {
    this.bytes += n;
    this.touched = true;
    const ok = this.dst.write(b.subarray(0, n));
    // Written at once (the common case): the buffer is free for the next read. Queued: it is not.
    if (this.dst.writableLength !== 0) this.busy = true;
    return ok;
  };

  private readonly next = (): Buffer => {
    if (this.busy) {
      this.busy = false;
      this.buf = Buffer.allocUnsafe(this.bufSize);
    }
    return this.buf as Buffer;
  };

  drain(): void {
    if (this.fast) resumeUserBuffer(this.src);
    else this.src.resume();
  }

  end(): void {
    this.ended = true;
    const dst = this.dst;
    // The other direction is over too and nothing is queued: close() sends the FIN itself (the receive
    // queue is empty, so no reset), which saves a shutdown() and the stream's finish round per connection.
    if (dst[kSrc]?.ended && dst.writableLength === 0 && !dst.destroyed) dst.destroy();
    else dst.end();
  }
}

export class TcpSession implements L4Session {
  state: SessionState = 'connecting';
  member: Member | undefined;
  upstream: Tagged | undefined;
  /** header/sni/connect deadline, ms since epoch; 0 = none. */
  deadline = 0;
  lastActive: number;
  private src: Address | undefined;
  private dst: Address | undefined;
  private pool: ServicePool | undefined;
  private tried: Member[] | null = null;
  private lastFailure: L4Failure = 'no-endpoint';
  private pending: Buffer[] | null = null;
  private pendingBytes = 0;
  private hash = 0;
  private c2u: Flow | undefined;
  private u2c: Flow | undefined;
  /** Untrusted source while PROXY is accepted from others: its first bytes must not be a PROXY header. */
  private inspecting = false;
  private clientClosed = false;
  private upstreamClosed = false;
  private flushedIn = 0;
  private flushedOut = 0;
  private serverName: string | undefined;
  private preluding = false;
  private done = false;
  readonly client: Tagged;

  constructor(
    private readonly host: L4Host,
    readonly front: Front,
    client: net.Socket,
    private readonly onClosed: (s: L4Session) => void,
  ) {
    this.client = client as Tagged;
    this.client[kSession] = this;
    this.lastActive = host.now;
  }

  /** Where the client is (from the PROXY header when a trusted balancer sent one). Read lazily. */
  get source(): Address {
    return (this.src ??= { address: unmapAddress(this.client.remoteAddress ?? ''), port: this.client.remotePort ?? 0 });
  }

  /** What it connected to (the VIP address and port). Read lazily. */
  get dest(): Address {
    return (this.dst ??= { address: unmapAddress(this.client.localAddress ?? ''), port: this.client.localPort ?? 0 });
  }

  /** The client socket is paused (accepted with pauseOnConnect). */
  start(): void {
    const { client, host } = this;
    client.on('error', onClientError);
    client.on('close', onClientClose);
    if (host.acceptProxy) {
      if (host.trustedProxy(this.source.address)) {
        this.state = 'header';
        this.deadline = host.now + host.opts.proxyHeaderTimeoutMs;
        this.readPrelude();
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
      if (this.state === 'sni') this.readPrelude();
      return;
    }
    this.pool = this.front.pool;
    this.route();
  }

  private readPrelude(): void {
    if (!this.preluding) {
      this.preluding = true;
      this.client.on('data', onPrelude);
      this.client.on('end', onPreludeEnd);
    }
    this.client.resume();
  }

  private stopPrelude(): void {
    this.preluding = false;
    this.client.removeListener('data', onPrelude);
    this.client.removeListener('end', onPreludeEnd);
    this.client.pause();
  }

  private hold(d: Buffer): void {
    (this.pending ??= []).push(d);
    this.pendingBytes += d.length;
  }

  /** @internal client data while the header or the ClientHello is read */
  prelude(d: Buffer): void {
    this.hold(d);
    if (this.state === 'header') this.onHeader();
    else if (this.state === 'sni') this.onSni();
  }

  /** @internal */
  preludeEnd(): void {
    if (this.state !== 'header' && this.state !== 'sni') return;
    if (this.pendingBytes === 0)
      this.destroy(); // connected and left: a port check, not a failure
    else if (this.state === 'header') this.reject('proxy-invalid', { message: 'closed before the PROXY header was complete' });
    else this.reject('sni-invalid', { message: 'closed before the ClientHello was complete' });
  }

  private joined(): Buffer {
    const p = this.pending;
    if (!p || p.length === 0) return Buffer.alloc(0);
    if (p.length > 1) this.pending = [Buffer.concat(p)];
    return (this.pending as Buffer[])[0] as Buffer;
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
    if (this.front.kind === 'sni') {
      this.afterHeader();
      return;
    }
    this.stopPrelude();
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
    this.stopPrelude();
    this.pool = pool;
    this.route();
  }

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
    const opts = this.host.opts;
    this.deadline = this.host.now + opts.connectTimeoutMs;
    // `highWaterMark` is a stream option net.Socket passes on (both directions); @types/node omits it.
    const u = net.connect({
      host: m.backend.address,
      port: m.backend.port,
      allowHalfOpen: true,
      noDelay: true,
      highWaterMark: opts.highWaterMark,
    } as net.NetConnectOpts) as Tagged;
    u[kSession] = this;
    this.upstream = u;
    u.on('connect', onUpstreamConnect);
    u.on('error', onUpstreamError);
    u.on('close', onUpstreamClose);
  }

  /** @internal the upstream socket connected */
  connected(u: Tagged): void {
    if (u !== this.upstream || this.state !== 'connecting') return;
    const m = this.member as Member;
    this.state = 'open';
    this.deadline = 0;
    this.lastActive = this.host.now;
    m.backend.connections++;
    this.host.connectSucceeded(m);
    const opts = this.host.opts;
    if (this.front.proxyProtocol === 'v1') u.write(encodeV1(this.source, this.dest));
    else if (this.front.proxyProtocol === 'v2') u.write(encodeV2(this.source, this.dest, 'tcp'));
    if (this.pending) for (const b of this.pending) u.write(b);
    this.u2c = new Flow(u, this.client, opts.bulkThresholdBytes, opts.readBufferBytes);
    this.c2u = new Flow(this.client, u, opts.bulkThresholdBytes, opts.readBufferBytes);
    this.c2u.bytes = this.pendingBytes; // the prelude's bytes (PROXY header excluded) were the client's
    this.pending = null;
    this.pendingBytes = 0;
    this.u2c.start();
    if (this.inspecting) {
      this.client.on('data', onInspect);
      this.client.on('end', onInspectEnd);
      this.client.resume();
    } else {
      this.c2u.start();
    }
  }

  /** @internal first client bytes from an untrusted source while PROXY is accepted elsewhere: refuse a PROXY header */
  inspect(d: Buffer): void {
    this.hold(d);
    const buf = this.joined();
    const v = proxyPrefixVerdict(buf);
    if (v === 'undecided') return;
    if (v === 'proxy') {
      this.reject('proxy-untrusted', { message: 'a PROXY header from a source not in acceptProxyFrom' });
      return;
    }
    this.inspecting = false;
    this.client.removeListener('data', onInspect);
    this.client.removeListener('end', onInspectEnd);
    const u = this.upstream as Tagged;
    this.pending = null;
    this.pendingBytes = 0;
    const c2u = this.c2u as Flow;
    c2u.bytes += buf.length;
    u.write(buf); // backpressure, if any, is seen by the flow's first write
    c2u.start();
  }

  /** @internal */
  inspectEnd(): void {
    // Ended while the bytes were still a possible signature prefix: they are data after all.
    if (!this.inspecting) return;
    this.inspecting = false;
    const u = this.upstream as Tagged;
    if (this.pending) for (const b of this.pending) u.write(b);
    this.pending = null;
    u.end();
  }

  /** @internal */
  upstreamError(u: Tagged, err: Error): void {
    if (u !== this.upstream) return;
    if (this.state === 'connecting') {
      this.connectFailed('connect-failed', err);
      return;
    }
    if (this.state === 'closed') return;
    const code = (err as NodeJS.ErrnoException).code;
    // An endpoint resetting an established connection: pass the reset on, count it, log it.
    this.host.rejected(this.front, 'upstream-error', this.detail({ err, message: code ?? err.message }));
    this.resetBoth();
  }

  /** @internal */
  upstreamClose(u: Tagged): void {
    if (u !== this.upstream || this.state === 'connecting' || this.state === 'closed') return;
    this.upstreamClosed = true;
    // Nothing can be delivered to a closed endpoint: if the client may still send, end it.
    if (this.c2u && !this.c2u.ended && !this.clientClosed) this.client.destroy();
    this.maybeFinish();
  }

  /** @internal a client reset or timeout is the client's business: pass the reset on and close */
  clientError(): void {
    const u = this.upstream;
    if (u && !u.destroyed) {
      if (this.state === 'open') u.resetAndDestroy();
      else u.destroy();
    }
  }

  /** @internal */
  clientClose(): void {
    this.clientClosed = true;
    if (this.state !== 'open') {
      // Gone before the session opened (or refused): drop the connect in progress.
      if (this.state !== 'closed') this.abortConnect();
      this.finish();
      return;
    }
    if (this.u2c && !this.u2c.ended && this.upstream && !this.upstreamClosed) this.upstream.destroy();
    this.maybeFinish();
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

  /** Drop the upstream socket of a connect in progress and release its member. */
  private abortConnect(): void {
    const u = this.upstream;
    if (u) {
      u[kSession] = undefined; // its handlers are no-ops from now on ('error' stays handled)
      u.destroy();
      this.upstream = undefined;
    }
    if (this.member) {
      this.member.active--;
      this.member.backend.active--;
      this.member = undefined;
    }
  }

  private detail(extra: RejectDetail): RejectDetail {
    const d: RejectDetail = { client: this.source, ...extra };
    if (this.member) d.endpoint = this.member.backend.key;
    if (this.tried) d.tried = this.tried.map((m) => m.backend.key);
    if (this.serverName !== undefined) d.serverName = this.serverName;
    return d;
  }

  /** Refuse or fail the connection: one counted, logged reason; the client gets a reset. */
  reject(reason: L4Failure, extra: RejectDetail): void {
    if (this.state === 'closed') return;
    this.host.rejected(this.front, reason, this.detail(extra));
    if (this.state === 'open') {
      this.resetBoth();
      return;
    }
    this.abortConnect();
    this.state = 'closed';
    this.resetBoth();
    this.finish();
  }

  private resetBoth(): void {
    for (const s of [this.client, this.upstream]) {
      if (!s || s.destroyed) continue;
      try {
        s.resetAndDestroy();
      } catch {
        s.destroy();
      }
    }
  }

  /** Close both sides now (idle, drained, stopped). */
  destroy(): void {
    if (this.state !== 'open') this.abortConnect();
    this.client.destroy();
    this.upstream?.destroy();
    if (this.state !== 'open') this.finish();
  }

  private maybeFinish(): void {
    if (this.clientClosed && (this.upstream === undefined || this.upstreamClosed)) this.finish();
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
    const inB = this.c2u ? this.c2u.bytes : 0;
    const outB = this.u2c ? this.u2c.bytes : 0;
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
        const c2u = this.c2u as Flow;
        const u2c = this.u2c as Flow;
        if (c2u.touched || u2c.touched) {
          c2u.touched = false;
          u2c.touched = false;
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
    return { in: this.c2u?.bytes ?? 0, out: this.u2c?.bytes ?? 0 };
  }

  get upstreamReading(): boolean {
    const h = (this.upstream as unknown as { _handle?: { reading?: boolean } } | undefined)?._handle;
    return this.state === 'open' && !!h && h.reading === true;
  }
}
