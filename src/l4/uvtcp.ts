/**
 * The handle engine: one forwarded TCP connection on two libuv handles (uv.ts), no net.Socket.
 * Serves plain TCP VIPs (with or without a PROXY header toward the endpoint). Connections that must be
 * read before they can be routed — a PROXY header from a balancer in front, an SNI ClientHello — go to
 * the net.Socket engine (tcp.ts), which does everything this one does and those too.
 *
 *   connecting ─▶ open ─▶ closed            (a failed connect retries on the next endpoint)
 *
 * The byte pump, per direction (client → endpoint, endpoint → client):
 * - read a chunk, write it to the other handle. A write libuv finishes at once (the common case) leaves
 *   the reader reading. A write that has to wait (the peer's socket buffer is full) stops the reader
 *   until it completes: backpressure with at most one chunk in flight per direction, so memory per
 *   connection is bounded by one read, whatever the peers do.
 * - reads go into memory Node allocates per read until a direction has carried `bulkThresholdBytes`;
 *   then into one buffer owned by that direction, reused for every read (a read never happens while a
 *   write of it is pending, by the rule above). Small exchanges never pay for the buffer.
 * - half-close: a FIN read from one side becomes shutdown() on the other (after anything pending); the
 *   other direction keeps flowing. When both have ended, both handles are closed; the second FIN needs
 *   no shutdown() of its own (close() sends it), as HAProxy does.
 * - a read or write error on either side resets the other (RST): a peer's reset is passed on.
 * - deadlines (connect, idle, drain) are fields checked by the plane's coarse tick.
 *
 * No closure is made per connection: handles carry their session under a symbol and every callback is a
 * module-level function that finds it through `this`.
 */
import { fnv1a } from './maglev.js';
import type { L4Failure } from './options.js';
import type { Member, ServicePool } from './pool.js';
import { encodeV1, encodeV2, unmapAddress, type Address } from './proxy-protocol.js';
import type { Front, L4Host, L4Session, RejectDetail } from './types.js';
import {
  UV_EOF,
  errName,
  lastWriteWasAsync,
  newConnectReq,
  newShutdownReq,
  newSocket,
  newWriteReq,
  peer,
  readOffset,
  readResult,
  uvError,
  type UvReq,
  type UvTcp,
} from '../net/uv.js';

const kS = Symbol('l4.uvsession');

type Handle = UvTcp & { [kS]?: UvSession | undefined };

// ---- shared callbacks: `this` is the handle (reads) or the request (completions)

function onClientRead(this: Handle, ab: ArrayBuffer | undefined): undefined {
  this[kS]?.read(true, ab);
  return undefined;
}

function onUpstreamRead(this: Handle, ab: ArrayBuffer | undefined): undefined {
  this[kS]?.read(false, ab);
  return undefined;
}

function onWriteDone(this: UvReq, status: number): void {
  this.buffer = null;
  const h = this.handle as Handle;
  h[kS]?.writeDone(h, status);
}

function onShutdownDone(this: UvReq, status: number): void {
  const h = this.handle as Handle;
  h[kS]?.shutdownDone(h, status);
}

function onConnectDone(status: number, handle: Handle): void {
  const s = handle[kS];
  if (!s) return; // abandoned (timed out, client gone): already closed
  s.connectDone(handle, status);
}

const noop = (): void => {};

export class UvSession implements L4Session {
  state: 'connecting' | 'open' | 'closed' = 'connecting';
  member: Member | undefined;
  /** connect deadline, ms since epoch; 0 = none. */
  deadline = 0;
  lastActive: number;
  private u: Handle | undefined;
  private readonly c: Handle;
  private tried: Member[] | null = null;
  private lastFailure: L4Failure = 'no-endpoint';
  private hash = 0;
  private src: Address | undefined;
  private dst: Address | undefined;
  /** Client → endpoint, endpoint → client bytes. */
  private inBytes = 0;
  private outBytes = 0;
  private flushedIn = 0;
  private flushedOut = 0;
  private touched = false;
  /** A write toward the endpoint / the client is in progress (its reader is stopped). */
  private c2uPending = false;
  private u2cPending = false;
  /** FIN read from the client / the endpoint. */
  private cEof = false;
  private uEof = false;
  /** shutdown() requests not yet completed. */
  private shutdowns = 0;
  /** Reused read buffers once a direction is bulk. */
  private cBuf: Buffer | undefined;
  private uBuf: Buffer | undefined;
  /** The write request object kept for the next write (a request is free again if its write completed at once). */
  private spare: UvReq | undefined;
  private done = false;

  constructor(
    private readonly host: L4Host,
    readonly front: Front,
    client: UvTcp,
    private readonly onClosed: (s: L4Session) => void,
  ) {
    this.c = client as Handle;
    this.c[kS] = this;
    this.lastActive = host.now;
  }

  get source(): Address {
    if (!this.src) {
      const p = peer(this.c);
      this.src = { address: unmapAddress(p.address), port: p.port };
    }
    return this.src;
  }

  get dest(): Address {
    if (!this.dst) {
      const p = peer(this.c, true);
      this.dst = { address: unmapAddress(p.address), port: p.port };
    }
    return this.dst;
  }

  /** Route and connect. The client handle is not read until the endpoint is connected. */
  start(): void {
    this.c.setNoDelay(true);
    const pool: ServicePool | undefined = this.front.pool;
    if (pool && pool.selector.needsHash) {
      const s = this.source;
      this.hash =
        this.host.opts.hashKey === 'source-ip'
          ? fnv1a(s.address)
          : fnv1a(`${s.address}|${s.port}|${this.dest.address}|${this.dest.port}|tcp`);
    }
    this.connectNext();
  }

  private connectNext(): void {
    const m = this.front.pool?.selector.pick(this.hash, this.tried);
    if (!m) {
      this.reject(this.tried ? this.lastFailure : 'no-endpoint', {});
      return;
    }
    this.member = m;
    m.active++;
    m.backend.active++;
    this.deadline = this.host.now + this.host.opts.connectTimeoutMs;
    const u = newSocket() as Handle;
    u[kS] = this;
    this.u = u;
    const req = newConnectReq();
    req.oncomplete = onConnectDone as unknown as UvReq['oncomplete'];
    const address = m.backend.address;
    req.address = address;
    req.port = m.backend.port;
    const err = m.backend.v6 ? u.connect6(req, address, m.backend.port) : u.connect(req, address, m.backend.port);
    if (err) this.connectFailed('connect-failed', uvError(err, 'connect'));
  }

  /** @internal */
  connectDone(u: Handle, status: number): void {
    if (u !== this.u || this.state !== 'connecting') return;
    if (status < 0) {
      this.connectFailed('connect-failed', uvError(status, 'connect'));
      return;
    }
    const m = this.member as Member;
    this.state = 'open';
    this.deadline = 0;
    this.lastActive = this.host.now;
    m.backend.connections++;
    this.host.connectSucceeded(m);
    u.setNoDelay(true);
    if (this.front.proxyProtocol) {
      const header = this.front.proxyProtocol === 'v1' ? encodeV1(this.source, this.dest) : encodeV2(this.source, this.dest, 'tcp');
      if (!this.write(u, header)) return;
    }
    u.onread = onUpstreamRead;
    this.c.onread = onClientRead;
    const e1 = u.readStart();
    const e2 = this.c2uPending ? 0 : this.c.readStart(); // (a header still being written: writeDone starts it)
    if (e1 || e2) this.fail(uvError(e1 || e2, 'read'));
  }

  private connectFailed(reason: 'connect-failed' | 'connect-timeout', err: Error | undefined): void {
    const m = this.member as Member;
    this.dropUpstream();
    this.host.connectFailed(m, reason, err);
    (this.tried ??= []).push(m);
    this.lastFailure = reason;
    if (this.tried.length <= this.host.opts.connectRetries) this.connectNext();
    else this.reject(reason, err ? { err } : {});
  }

  /** Close the upstream handle of a connect in progress and release its member. */
  private dropUpstream(): void {
    const u = this.u;
    if (u) {
      u[kS] = undefined;
      u.close();
      this.u = undefined;
    }
    if (this.member) {
      this.member.active--;
      this.member.backend.active--;
      this.member = undefined;
    }
  }

  /** @internal a read on the client (`fromClient`) or the endpoint handle */
  read(fromClient: boolean, ab: ArrayBuffer | undefined): void {
    if (this.state !== 'open') return;
    const n = readResult();
    if (n > 0) {
      this.touched = true;
      const dst = (fromClient ? this.u : this.c) as Handle;
      let chunk: Uint8Array;
      if (ab === undefined) {
        chunk = (fromClient ? this.cBuf : this.uBuf) as Buffer;
        chunk = chunk.subarray(0, n);
      } else {
        chunk = new Uint8Array(ab, readOffset(), n);
      }
      const total = fromClient ? (this.inBytes += n) : (this.outBytes += n);
      if (!this.write(dst, chunk)) return;
      if (fromClient ? this.c2uPending : this.u2cPending) {
        // The peer's socket is full: stop reading this side until the write completes.
        (fromClient ? this.c : (this.u as Handle)).readStop();
      } else if (ab !== undefined) {
        const t = this.host.opts.bulkThresholdBytes;
        if (t >= 0 && total >= t) this.goBulk(fromClient);
      }
      return;
    }
    if (n === 0) return;
    if (n === UV_EOF) {
      this.eof(fromClient);
      return;
    }
    // A read error: the reset (or worse) is passed on to the other side.
    if (fromClient) this.resetBoth();
    else this.fail(uvError(n, 'read'));
  }

  /** From now on read this direction into one reused buffer (no allocation per read). */
  private goBulk(fromClient: boolean): void {
    const size = this.host.opts.readBufferBytes;
    const buf = Buffer.allocUnsafe(size);
    if (fromClient) {
      this.cBuf = buf;
      this.c.useUserBuffer(buf);
    } else {
      this.uBuf = buf;
      (this.u as Handle).useUserBuffer(buf);
    }
  }

  /** Write `chunk` to `dst`; false (and the session failed) on an immediate error. */
  private write(dst: Handle, chunk: Uint8Array): boolean {
    const req = this.spare ?? newWriteReq();
    req.handle = dst;
    req.oncomplete = onWriteDone as unknown as UvReq['oncomplete'];
    const err = dst.writeBuffer(req, chunk);
    if (err) {
      this.spare = req;
      this.fail(uvError(err, 'write'));
      return false;
    }
    if (lastWriteWasAsync()) {
      // libuv holds the request and the bytes until it is done; so must we.
      req.buffer = chunk;
      this.spare = undefined;
      if (dst === this.c) this.u2cPending = true;
      else this.c2uPending = true;
    } else {
      this.spare = req;
    }
    return true;
  }

  /** @internal */
  writeDone(dst: Handle, status: number): void {
    if (this.state !== 'open') return;
    if (status < 0) {
      if (dst === this.c) this.resetBoth();
      else this.fail(uvError(status, 'write'));
      return;
    }
    if (dst === this.c) {
      this.u2cPending = false;
      if (!this.uEof) (this.u as Handle).readStart();
    } else {
      this.c2uPending = false;
      if (!this.cEof) this.c.readStart();
    }
    this.maybeClose();
  }

  private eof(fromClient: boolean): void {
    const other = fromClient ? this.uEof : this.cEof;
    const pendingTowardOther = fromClient ? this.c2uPending : this.u2cPending;
    if (fromClient) {
      this.cEof = true;
      this.c.readStop();
    } else {
      this.uEof = true;
      (this.u as Handle).readStop();
    }
    // The other side ended already and nothing is queued toward it: close() will send its FIN.
    if (other && !pendingTowardOther) {
      this.maybeClose();
      return;
    }
    const dst = (fromClient ? this.u : this.c) as Handle;
    const req = newShutdownReq();
    req.handle = dst;
    req.oncomplete = onShutdownDone as unknown as UvReq['oncomplete'];
    const err = dst.shutdown(req);
    if (err === 1) return this.maybeClose(); // done at once
    if (err) {
      if (errName(err) === 'ENOTCONN') return this.maybeClose();
      this.fail(uvError(err, 'shutdown'));
      return;
    }
    this.shutdowns++;
  }

  /** @internal */
  shutdownDone(_h: Handle, status: number): void {
    this.shutdowns--;
    if (this.state !== 'open') return;
    if (status < 0 && errName(status) !== 'ENOTCONN') {
      this.resetBoth();
      return;
    }
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.cEof && this.uEof && !this.c2uPending && !this.u2cPending && this.shutdowns === 0) this.closeBoth();
  }

  private closeBoth(): void {
    this.c[kS] = undefined;
    this.c.close();
    const u = this.u;
    if (u) {
      u[kS] = undefined;
      u.close();
    }
    this.finish();
  }

  /** An endpoint-side error on an open connection: counted, logged, and the client gets a reset. */
  private fail(err: Error): void {
    if (this.state === 'closed') return;
    if (this.state === 'open') {
      this.host.rejected(this.front, 'upstream-error', this.detail({ err, message: (err as NodeJS.ErrnoException).code ?? err.message }));
      this.resetBoth();
    } else {
      this.reject('upstream-error', { err });
    }
  }

  private resetBoth(): void {
    for (const h of [this.c, this.u]) {
      if (!h) continue;
      h[kS] = undefined;
      if (h.reset(noop) !== 0) h.close();
    }
    this.u = undefined;
    this.finish();
  }

  private detail(extra: RejectDetail): RejectDetail {
    const d: RejectDetail = { client: this.source, ...extra };
    if (this.member) d.endpoint = this.member.backend.key;
    if (this.tried) d.tried = this.tried.map((m) => m.backend.key);
    return d;
  }

  /** Refuse the connection (no endpoint, connects failed): counted, logged, the client gets a reset. */
  reject(reason: L4Failure, extra: RejectDetail): void {
    if (this.state === 'closed') return;
    this.host.rejected(this.front, reason, this.detail(extra));
    this.dropUpstream();
    this.resetBoth();
  }

  /** Close both sides now (idle, drained, stopped). */
  destroy(): void {
    if (this.state === 'closed') return;
    if (this.state === 'connecting') this.dropUpstream();
    this.closeBoth();
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
    this.cBuf = undefined;
    this.uBuf = undefined;
    this.onClosed(this);
  }

  flush(): void {
    const di = this.inBytes - this.flushedIn;
    const dout = this.outBytes - this.flushedOut;
    if (di === 0 && dout === 0) return;
    this.flushedIn = this.inBytes;
    this.flushedOut = this.outBytes;
    this.front.stats.bytesIn += di;
    this.front.stats.bytesOut += dout;
    const b = this.member?.backend;
    if (b) {
      b.bytesIn += di;
      b.bytesOut += dout;
    }
  }

  tick(now: number): void {
    if (this.state === 'connecting') {
      if (this.deadline !== 0 && now >= this.deadline) this.connectFailed('connect-timeout', undefined);
      return;
    }
    if (this.state !== 'open') return;
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
  }

  get bytes(): { in: number; out: number } {
    return { in: this.inBytes, out: this.outBytes };
  }

  /** Whether the endpoint's side is being read now (false: paused by backpressure, or not yet open). Tests. */
  get upstreamReading(): boolean {
    return this.state === 'open' && !this.uEof && !this.u2cPending;
  }
}
