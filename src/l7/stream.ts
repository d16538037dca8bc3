/**
 * The byte streams the HTTP engine runs on, behind one small interface with fixed owner callbacks (no
 * event emitter, no closure per request):
 *
 *  - `UvStream`: a libuv TCP handle driven directly (uv.ts), for plain-HTTP client connections and for
 *    every upstream connection. No Readable/Writable machinery, no nextTick rounds, no 'data' events:
 *    a read calls the owner's onStreamData, a write is one binding call. Reads land in ONE buffer shared
 *    by every handle (`volatileReads`): a chunk is valid only during the onStreamData call, and whoever
 *    keeps bytes past it (a body chunk written elsewhere, bytes held for later parsing) copies them.
 *    Heads are parsed into strings, so a request or response without a body copies nothing.
 *  - `SocketStream`: a net.Socket / tls.TLSSocket, for TLS entrypoints (TLS stays on `tls`) and as the
 *    fallback when the bindings are missing (uv.available false) or an address is not an IP literal.
 *
 * Semantics shared by both (those of a net.Socket with allowHalfOpen):
 *  - write() returns false once more than HIGH_WATER_BYTES wait in the kernel-side queue; onStreamDrain
 *    follows when it is empty again. Bytes given to write() must not change afterwards.
 *  - end() sends FIN after what is queued; reading goes on. The peer's FIN is onStreamEnd; when both
 *    sides have ended the stream closes.
 *  - destroy() closes at once. onStreamClose comes once, asynchronously (libuv's close phase / 'close').
 */
import net from 'node:net';
import { refreshClock } from './clock.js';
import type { Latin1Writer } from './headbuf.js';
import * as uv from '../net/uv.js';
import type { UvReq, UvTcp } from '../net/uv.js';

export interface StreamOwner {
  /** Bytes read. When the stream's `volatileReads` is true the chunk is valid only during this call. */
  onStreamData(chunk: Buffer): void;
  /** The peer sent FIN. */
  onStreamEnd(): void;
  /** The write queue emptied after write() returned false. */
  onStreamDrain(): void;
  /** Closed (destroyed, failed, or both sides ended). Once, asynchronously. */
  onStreamClose(): void;
  /** Outgoing streams: connected. */
  onStreamConnect(): void;
}

export interface Stream {
  owner: StreamOwner;
  /** Chunks given to onStreamData are reused after the call (copy what you keep). */
  readonly volatileReads: boolean;
  /** write() copies the bytes before it returns (so volatile bytes need no copy of the caller's). */
  readonly copiesWrites: boolean;
  readonly closed: boolean;
  readonly connected: boolean;
  /** The peer's address (IPv4-mapped IPv6 left as is); '' when unknown. */
  remoteAddress(): string;
  write(chunk: Uint8Array): boolean;
  writeLatin1(s: string): boolean;
  /** Write a copy of buf[start, end): the caller may reuse buf as soon as this returns. */
  writeCopy(buf: Buffer, start: number, end: number): boolean;
  pause(): void;
  resume(): void;
  end(): void;
  destroy(): void;
}

/** Above this many bytes queued, write() says stop (net.Socket's default highWaterMark). */
const HIGH_WATER_BYTES = 16_384;

/** The read buffer every UvStream reads into (one JS thread: one read is handled at a time). */
const SHARED_READ = Buffer.allocUnsafe(65_536);

/**
 * SHARED_READ[0, n) for a read of n bytes: the views of small reads (heads, small bodies: most reads)
 * made once and reused, not one Buffer object per read. A view is as volatile as the bytes it shows.
 */
const VIEWS_UPTO = 4096;
const readViews: Array<Buffer | undefined> = new Array<Buffer | undefined>(VIEWS_UPTO + 1).fill(undefined);
function readView(n: number): Buffer {
  if (n > VIEWS_UPTO) return SHARED_READ.subarray(0, n);
  let v = readViews[n];
  if (v === undefined) v = readViews[n] = SHARED_READ.subarray(0, n);
  return v;
}

export const uvAvailable = uv.available && process.env.PORTICO_L7_NO_UV !== '1';

/**
 * Writes are queued and made once per event-loop turn (a setImmediate after the turn's reads were all
 * handled), as HAProxy sends after its polling round: a burst of requests reaches a peer as a burst, so
 * the peer is woken once rather than once per request — measured here, ~1.3 µs less kernel time per
 * proxied request. Several writes to one stream in a turn leave in one write call. Latency: a write
 * waits for the rest of the turn (microseconds per event). PORTICO_L7_BATCH=0 writes at once.
 */
let batching = process.env.PORTICO_L7_BATCH !== '0';
let flushList: UvStream[] = [];
/** The other list, reused (flushes may queue writes for the next turn while a list is walked). */
let flushSpare: UvStream[] = [];
let flushScheduled = false;
function flushAll(): void {
  flushScheduled = false;
  refreshClock();
  const list = flushList;
  flushList = flushSpare;
  for (let i = 0; i < list.length; i++) (list[i] as UvStream).flush();
  list.length = 0;
  flushSpare = list;
}

/**
 * Accumulators for the turn's writes, shared by every stream: a stream holds one only between its first
 * write of a turn and the flush (so idle connections hold none), and gives it back when its write
 * completed at once. Standard ones are kept for reuse (up to ACC_SPARE); larger ones (a big body chunk)
 * are made for the occasion.
 */
const ACC_SIZE = 16_384;
const ACC_SPARE = 256;
const accFree: Buffer[] = [];

function takeAccumulator(min: number): Buffer {
  if (min <= ACC_SIZE) return accFree.pop() ?? Buffer.allocUnsafeSlow(ACC_SIZE);
  return Buffer.allocUnsafeSlow(min);
}

function giveAccumulator(b: Buffer): void {
  if (b.length === ACC_SIZE && accFree.length < ACC_SPARE) accFree.push(b);
}

/** Turn batching on or off (tests of both paths). */
export function batchWrites(on: boolean): void {
  batching = on;
}

// ---------------------------------------------------------------------------------------------------
// UvStream

const kStream = Symbol('l7.stream');
type Handle = UvTcp & { [kStream]?: UvStream | undefined };

function onUvRead(this: Handle, _ab: ArrayBuffer | undefined): undefined {
  const s = this[kStream];
  refreshClock();
  if (s !== undefined) s.onRead(uv.readResult());
  return undefined;
}

function onUvWriteDone(this: UvReq, status: number): void {
  this.buffer = null;
  refreshClock();
  const h = this.handle as Handle;
  const s = h[kStream];
  if (s !== undefined) s.onWriteDone(status);
}

function onUvShutdownDone(this: UvReq, status: number): void {
  const s = (this.handle as Handle)[kStream];
  if (s !== undefined) s.onShutdownDone(status);
}

function onUvConnect(status: number, handle: Handle): void {
  const s = handle[kStream];
  refreshClock();
  if (s !== undefined) s.onConnect(status);
}

function onUvClose(this: Handle): void {
  const s = this[kStream];
  refreshClock();
  this[kStream] = undefined;
  if (s !== undefined) s.owner.onStreamClose();
}

export class UvStream implements Stream {
  readonly volatileReads = true;
  closed = false;
  connected: boolean;
  /** libuv is reading (readStart in effect). */
  private reading = false;
  private paused = false;
  /** FIN read from the peer. */
  private eof = false;
  /** Our FIN requested (shutdown). */
  private ended = false;
  private shutdownDone = false;
  /** Asynchronous writes in flight, and whether a writer was told to wait. */
  private pendingWrites = 0;
  private needDrain = false;
  /** A write request free for reuse (a request is free again once its write completed at once). */
  private spare: UvReq | undefined = undefined;
  private peerAddress: string | undefined = undefined;

  constructor(
    private readonly handle: Handle,
    public owner: StreamOwner,
    connected: boolean,
  ) {
    this.connected = connected;
    handle[kStream] = this;
    handle.onread = onUvRead;
    handle.useUserBuffer(SHARED_READ);
    if (connected) {
      handle.setNoDelay(true);
      this.startReading();
    }
  }

  /** Connect a new handle to address:port (IP literals); the owner hears onStreamConnect or onStreamClose. */
  static connect(address: string, port: number, owner: StreamOwner): UvStream {
    const h = uv.newSocket() as Handle;
    const s = new UvStream(h, owner, false);
    const req = uv.newConnectReq();
    req.oncomplete = onUvConnect as unknown as UvReq['oncomplete'];
    req.address = address;
    req.port = port;
    const err = net.isIPv6(address) ? h.connect6(req, address, port) : h.connect(req, address, port);
    if (err) s.destroy();
    return s;
  }

  remoteAddress(): string {
    if (this.peerAddress === undefined) this.peerAddress = this.closed ? '' : uv.peer(this.handle).address;
    return this.peerAddress;
  }

  /** @internal */
  onConnect(status: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.destroy();
      return;
    }
    this.connected = true;
    this.handle.setNoDelay(true);
    this.startReading();
    this.owner.onStreamConnect();
  }

  private startReading(): void {
    if (this.reading || this.paused || this.eof || this.closed) return;
    if (this.handle.readStart() === 0) this.reading = true;
    else this.destroy(); // a handle that cannot read is gone (the owner hears onStreamClose)
  }

  /** @internal */
  onRead(n: number): void {
    if (this.closed) return;
    if (n > 0) {
      this.owner.onStreamData(readView(n));
      return;
    }
    if (n === 0) return;
    if (n === uv.UV_EOF) {
      this.eof = true;
      if (this.reading) {
        this.handle.readStop();
        this.reading = false;
      }
      if (this.ended) {
        // Both directions are done.
        if (this.shutdownDone) this.destroy();
        return;
      }
      this.owner.onStreamEnd();
      return;
    }
    // A read error (ECONNRESET …): the stream is over.
    this.destroy();
  }

  /**
   * Bytes waiting for the end of this event-loop turn (see `batchWrites`): out[0, outLen), an
   * accumulator taken from the shared free list at the first write of the turn and given back after a
   * write that completed at once (the usual case: no allocation per write).
   */
  private out: Buffer | undefined = undefined;
  private outLen = 0;
  private inFlushList = false;

  /** Batched writes copy the bytes at once: the caller may reuse them (a volatile read buffer). */
  get copiesWrites(): boolean {
    return batching;
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed || chunk.length === 0) return !this.closed;
    if (batching) return this.enqueue(chunk);
    return this.writeNow(chunk);
  }

  writeLatin1(s: string): boolean {
    if (this.closed || s.length === 0) return !this.closed;
    if (batching) return this.enqueue(s);
    return this.writeLatin1Now(s);
  }

  writeCopy(buf: Buffer, start: number, end: number): boolean {
    if (this.closed || end <= start) return !this.closed;
    if (batching) {
      buf.copy(this.reserve(end - start), this.outLen, start, end);
      return this.queued(end - start);
    }
    return this.writeNow(Buffer.from(buf.subarray(start, end)));
  }

  /** The accumulator, with room for n more bytes at outLen. */
  private reserve(n: number): Buffer {
    const out = this.out;
    const len = this.outLen;
    if (out === undefined) return (this.out = takeAccumulator(n));
    if (len + n <= out.length) return out;
    const bigger = takeAccumulator(Math.max(len + n, out.length * 2));
    out.copy(bigger, 0, 0, len);
    giveAccumulator(out);
    return (this.out = bigger);
  }

  private enqueue(x: Uint8Array | string): boolean {
    const n = x.length; // a latin1 string: one byte per char
    const out = this.reserve(n);
    if (typeof x === 'string') (out as unknown as Latin1Writer).latin1Write(x, this.outLen, n);
    else out.set(x, this.outLen);
    return this.queued(n);
  }

  /** n bytes were added to the accumulator: count them, make sure a flush comes, say whether to go on. */
  private queued(n: number): boolean {
    this.outLen += n;
    if (!this.inFlushList) {
      this.inFlushList = true;
      flushList.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAll);
      }
    }
    // (libuv's queue is empty while no write is in flight: no call into the binding to ask)
    if (this.outLen + (this.pendingWrites === 0 ? 0 : this.handle.writeQueueSize) > HIGH_WATER_BYTES) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** Drop what is queued (the stream is closing), giving the accumulator back. */
  private dropQueued(): void {
    if (this.out !== undefined) giveAccumulator(this.out);
    this.out = undefined;
    this.outLen = 0;
  }

  /** @internal Make the queued writes: one write call for the turn. */
  flush(): void {
    this.inFlushList = false;
    const out = this.out;
    if (out === undefined) return;
    const len = this.outLen;
    this.out = undefined;
    this.outLen = 0;
    if (this.closed) {
      giveAccumulator(out);
      return;
    }
    const req = this.writeReq();
    const view = out.subarray(0, len);
    const err = this.handle.writeBuffer(req, view);
    if (err || !uv.lastWriteWasAsync()) giveAccumulator(out); // (else libuv holds it: req.buffer keeps it)
    this.afterWrite(req, err, view);
    // A writer told to wait, and everything went out at once: it may go on.
    if (this.needDrain && !this.closed && this.handle.writeQueueSize === 0) {
      this.needDrain = false;
      this.owner.onStreamDrain();
    }
  }

  /** A write request for this handle: the spare one (free again once a write completed at once), or a new one. */
  private writeReq(): UvReq {
    const req = this.spare ?? uv.newWriteReq();
    req.handle = this.handle;
    req.oncomplete = onUvWriteDone as unknown as UvReq['oncomplete'];
    return req;
  }

  private writeNow(chunk: Uint8Array): boolean {
    const req = this.writeReq();
    return this.afterWrite(req, this.handle.writeBuffer(req, chunk), chunk);
  }

  private writeLatin1Now(s: string): boolean {
    const req = this.writeReq();
    return this.afterWrite(req, this.handle.writeLatin1String(req, s), null);
  }

  private afterWrite(req: UvReq, err: number, keep: Uint8Array | null): boolean {
    if (err) {
      this.spare = req;
      this.destroy();
      return false;
    }
    if (!uv.lastWriteWasAsync()) {
      this.spare = req;
      return true;
    }
    // libuv holds the request (and the bytes of a buffer write) until it is done.
    req.buffer = keep;
    this.spare = undefined;
    this.pendingWrites++;
    if (this.handle.writeQueueSize > HIGH_WATER_BYTES) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** @internal */
  onWriteDone(status: number): void {
    this.pendingWrites--;
    if (this.closed) return;
    if (status < 0) {
      this.destroy();
      return;
    }
    if (this.needDrain && this.handle.writeQueueSize === 0 && this.out === undefined) {
      this.needDrain = false;
      this.owner.onStreamDrain();
    }
  }

  pause(): void {
    this.paused = true;
    if (this.reading) {
      this.handle.readStop();
      this.reading = false;
    }
  }

  resume(): void {
    this.paused = false;
    if (this.connected) this.startReading();
  }

  end(): void {
    if (this.ended || this.closed) return;
    if (this.out !== undefined) this.flush();
    if (this.closed) return;
    this.ended = true;
    if (!this.connected) {
      this.destroy();
      return;
    }
    const req = uv.newShutdownReq();
    req.handle = this.handle;
    req.oncomplete = onUvShutdownDone as unknown as UvReq['oncomplete'];
    // libuv shuts down after the writes queued before it.
    const err = this.handle.shutdown(req);
    if (err === 1) this.onShutdownDone(0);
    else if (err) this.destroy();
  }

  /** @internal */
  onShutdownDone(status: number): void {
    this.shutdownDone = true;
    if (this.closed) return;
    if (status < 0 || this.eof) this.destroy();
    else this.startReading(); // keep reading until the peer's FIN (what it sends is still delivered)
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.reading = false;
    if (!this.inFlushList) this.dropQueued(); // (else flush() gives it back)
    this.handle.close(onUvClose);
  }
}

// ---------------------------------------------------------------------------------------------------
// SocketStream

export class SocketStream implements Stream {
  readonly volatileReads = false;
  readonly copiesWrites = false;
  connected: boolean;

  constructor(
    readonly socket: net.Socket,
    public owner: StreamOwner,
    connected: boolean,
  ) {
    this.connected = connected;
    socket.on('data', (d: Buffer) => {
      refreshClock();
      this.owner.onStreamData(d);
    });
    socket.on('end', () => this.owner.onStreamEnd());
    socket.on('drain', () => {
      refreshClock();
      this.owner.onStreamDrain();
    });
    socket.on('error', () => {
      /* 'close' follows */
    });
    socket.on('close', () => {
      refreshClock();
      this.owner.onStreamClose();
    });
    if (!connected) {
      socket.once('connect', () => {
        refreshClock();
        this.connected = true;
        this.owner.onStreamConnect();
      });
    }
  }

  static connect(address: string, port: number, owner: StreamOwner): SocketStream {
    // Half-open, as UvStream is: the upstream's FIN is reported, our side is ended by the owner.
    return new SocketStream(net.connect({ host: address, port, noDelay: true, allowHalfOpen: true }), owner, false);
  }

  get closed(): boolean {
    return this.socket.destroyed;
  }

  remoteAddress(): string {
    return this.socket.remoteAddress ?? '';
  }

  write(chunk: Uint8Array): boolean {
    return this.socket.write(chunk);
  }

  writeLatin1(s: string): boolean {
    return this.socket.write(s, 'latin1');
  }

  writeCopy(buf: Buffer, start: number, end: number): boolean {
    return end > start ? this.socket.write(Buffer.from(buf.subarray(start, end))) : !this.socket.destroyed;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** `chunk`, from a read of a stream whose reads are `volatile`, as it may be given to `dest.write()`. */
export function writable(dest: Stream, chunk: Buffer, volatile: boolean): Buffer {
  return volatile && !dest.copiesWrites ? Buffer.from(chunk) : chunk;
}

/** An upstream connection: a UvStream when possible, else a net.Socket. */
export function connectStream(address: string, port: number, owner: StreamOwner): Stream {
  return uvAvailable && net.isIP(address) !== 0 ? UvStream.connect(address, port, owner) : SocketStream.connect(address, port, owner);
}

// ---------------------------------------------------------------------------------------------------
// A listening uv handle

export interface UvListener {
  readonly handle: UvTcp;
  address(): { address: string; port: number };
  close(): void;
}

/** Bind and listen on host:port; `onConnection` gets each accepted handle. Throws an errno error. */
export function listenUv(
  host: string,
  port: number,
  backlog: number,
  onConnection: (h: UvTcp) => void,
  onError: (err: NodeJS.ErrnoException) => void,
): UvListener {
  const server = uv.newServer();
  server.onconnection = (err, client) => {
    refreshClock();
    if (err || !client) {
      if (err) onError(uv.uvError(err, 'accept'));
      return;
    }
    onConnection(client);
  };
  const bindErr = net.isIPv6(host) ? server.bind6(host, port, 0) : server.bind(host, port);
  const err = bindErr || server.listen(backlog);
  if (err) {
    server.close();
    const e = uv.uvError(err, bindErr ? 'bind' : 'listen');
    e.message = `${e.syscall} ${e.code ?? ''} ${host.includes(':') ? `[${host}]` : host}:${port}`;
    throw e;
  }
  return {
    handle: server,
    address: () => uv.peer(server, true),
    close: () => {
      server.onconnection = null;
      server.close();
    },
  };
}
