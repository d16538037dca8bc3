/**
 * The byte streams the L7 and L4 engines run on, behind one small interface with fixed owner callbacks
 * (no event emitter, no closure per connection). Shared infrastructure: neither plane imports the other.
 *
 *  - `UvStream`: a libuv TCP handle driven directly (uv.ts). No Readable/Writable machinery, no nextTick
 *    rounds, no 'data' events: a read calls the owner's onStreamData, a write is one binding call.
 *  - `SocketStream`: a net.Socket / tls.TLSSocket, for TLS (L7 entrypoints) and as the fallback when the
 *    bindings are missing (available false), an engine is configured to use `net`, or an address is
 *    not an IP literal.
 *
 * Semantics shared by both (those of a net.Socket with allowHalfOpen):
 *  - Reads land where `StreamOptions` say: in one buffer shared by every UvStream (`reads: 'shared'`, the
 *    UvStream default: a chunk is valid only during onStreamData), in memory of their own per read
 *    (`'fresh'`: the owner may keep the chunk; a net.Socket's way), and once a stream has carried
 *    `ownBufferAfter` bytes, in one buffer of the stream's own, reused for every read (no allocation per
 *    read; a chunk is valid until the stream reads again). `volatileReads` says whether chunks are reused.
 *  - write() returns false once more than `highWaterBytes` wait to be taken by the kernel; onStreamDrain
 *    follows when none wait any more. Bytes given to write() must not change until they have left: with
 *    `highWaterBytes: 0`, once write() returned true or onStreamDrain came (so an owner that passes on
 *    chunks of a reused read buffer pauses the reader until then). `copiesWrites` streams copy at once.
 *  - pause() stops reading (a UvStream stops the handle at once); resume() reads again.
 *  - end() sends FIN after what is queued; reading goes on. The peer's FIN is onStreamEnd, also after our
 *    own end(); when both sides have ended the stream closes. end() after the peer's FIN with nothing
 *    queued closes at once: close() sends the FIN itself (the receive queue is empty, so no reset), which
 *    saves a shutdown round. (Not on TLS, whose end() sends close_notify first.)
 *  - destroy() closes at once; reset() closes with a reset (RST), to pass a peer's reset on.
 *    onStreamClose comes once, asynchronously (a UvStream: from a setImmediate, its descriptor
 *    closed already), with the error that closed the stream if one did (a failed
 *    connect, a read, write or shutdown error): undefined after a clean close, destroy() or reset().
 */
import net from 'node:net';
import type tls from 'node:tls';
import { refreshClock } from './clock.js';
// (Named imports: a namespace import costs a getter per use under tsx, on paths taken per read.)
import {
  UV_ENOTCONN,
  UV_EOF,
  available as uvBindings,
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
} from './uv.js';
import { useUserBuffer } from './userbuffer.js';

export interface StreamOwner {
  /** Bytes read. When the stream's `volatileReads` is true the chunk's memory is reused (see Stream). */
  onStreamData(chunk: Buffer): void;
  /** The peer sent FIN. */
  onStreamEnd(): void;
  /** The write queue emptied after write() returned false. */
  onStreamDrain(): void;
  /** Closed (destroyed, reset, failed, or both sides ended). Once, asynchronously; `err` when an error closed it. */
  onStreamClose(err: Error | undefined): void;
  /** Outgoing streams: connected. */
  onStreamConnect(): void;
}

export interface Stream {
  owner: StreamOwner;
  /**
   * Chunks given to onStreamData live in memory the stream reuses: valid only during the call (the shared
   * buffer) or until the stream reads again (its own buffer). Copy what you keep.
   */
  readonly volatileReads: boolean;
  /** write() copies the bytes before it returns (so volatile bytes need no copy of the caller's). */
  readonly copiesWrites: boolean;
  readonly closed: boolean;
  readonly connected: boolean;
  /**
   * Bytes are being read from the kernel now. False once paused (a SocketStream on the ordinary read
   * path first reads ahead up to its socket's high-water mark), ended, not yet connected, or closed.
   */
  readonly reading: boolean;
  /** The peer's address (IPv4-mapped IPv6 left as is); '' when unknown. Cached. */
  remoteAddress(): string;
  /** The peer's address and port; `{ address: '', port: 0 }` when unknown. */
  remote(): { address: string; port: number };
  /** This end's address and port (what the peer connected to); `{ address: '', port: 0 }` when unknown. */
  local(): { address: string; port: number };
  write(chunk: Uint8Array): boolean;
  writeLatin1(s: string): boolean;
  /** Write a copy of buf[start, end): the caller may reuse buf as soon as this returns. */
  writeCopy(buf: Buffer, start: number, end: number): boolean;
  pause(): void;
  resume(): void;
  end(): void;
  destroy(): void;
  /** Close with a reset (RST): what a peer's reset is passed on as. */
  reset(): void;
}

/** How a stream reads and writes; every field has a default (what the L7 engine uses). */
export interface StreamOptions {
  /**
   * Where a UvStream's reads land until `ownBufferAfter`: `shared` (the default), one buffer shared by
   * every UvStream, a chunk valid only during onStreamData; `fresh`, memory of its own per read that the
   * owner may keep (as a net.Socket, and so every SocketStream, reads).
   */
  reads?: 'shared' | 'fresh';
  /**
   * Once the stream has read this many bytes it reads into a buffer of its own (`ownBufferBytes` long),
   * reused for every read: no allocation per read, and the memory spent only on streams that carry bulk.
   * A chunk from it is valid until the stream reads again. -1 (the default): never; 0: from the first read.
   */
  ownBufferAfter?: number;
  /** Size of that buffer, bytes. 64 KiB. */
  ownBufferBytes?: number;
  /**
   * write() says stop once more than this many bytes wait, bytes. 16 KiB (UvStream; a SocketStream left
   * without one uses its socket's own high-water mark). 0: as soon as a write does not complete at once.
   */
  highWaterBytes?: number;
  /** UvStream: gather each event-loop turn's writes into one write call. Default: `batchWrites()`'s setting. */
  batch?: boolean;
  /** Start paused: nothing is read until resume() (an outgoing stream: not even once connected). */
  paused?: boolean;
  /** SocketStream.connect: the socket's highWaterMark, i.e. how far a paused socket reads ahead, bytes. */
  socketHighWaterMark?: number;
  /**
   * Refresh the cached clock (clock.ts) at each of the stream's events. true: the L7 engine reads that
   * clock; an engine that keeps no time per event turns it off (a clock read per event saved).
   */
  refreshClock?: boolean;
}

const NO_OPTIONS: StreamOptions = Object.freeze({});

/** An owner that ignores everything: a stream's before its real owner takes it, or after it let go. */
export const NO_OWNER: StreamOwner = Object.freeze({
  onStreamData() {},
  onStreamEnd() {},
  onStreamDrain() {},
  onStreamClose() {},
  onStreamConnect() {},
});

/** Above this many bytes queued, write() says stop (net.Socket's default highWaterMark). */
const HIGH_WATER_BYTES = 16_384;

/** Default size of a stream's own read buffer. */
const OWN_BUFFER_BYTES = 65_536;

/** The read buffer every `shared` UvStream reads into (one JS thread: one read is handled at a time). */
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

/** The L7 engine's choice: libuv handles unless the bindings are missing or PORTICO_L7_NO_UV=1. */
export const uvAvailable = uvBindings && process.env.PORTICO_L7_NO_UV !== '1';

/** The one writer of latin1 strings into a Buffer without an intermediate (Buffer#latin1Write). */
interface Latin1Writer {
  latin1Write(s: string, offset: number, length: number): number;
}

/**
 * Writes of batching streams are queued and made once per event-loop turn (a setImmediate after the
 * turn's reads were all handled), as HAProxy sends after its polling round: a burst of requests reaches a
 * peer as a burst, so the peer is woken once rather than once per request — measured here, ~1.3 µs less
 * kernel time per proxied request. Several writes to one stream in a turn leave in one write call.
 * Latency: a write waits for the rest of the turn (microseconds per event). PORTICO_L7_BATCH=0 makes
 * streams without a `batch` option write at once.
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

/** Turn batching on or off for streams without a `batch` option (tests of both paths). */
export function batchWrites(on: boolean): void {
  batching = on;
}

// ---------------------------------------------------------------------------------------------------
// UvStream

/**
 * Write requests free for reuse, shared by every UvStream: a request is free again once its write
 * completed at once (the usual case), so most writes make no request object. Kept up to REQ_SPARE.
 */
const REQ_SPARE = 1024;
const freeWriteReqs: UvReq[] = [];
function freeWriteReq(req: UvReq): void {
  if (freeWriteReqs.length < REQ_SPARE) freeWriteReqs.push(req);
}

const kStream = Symbol('net.stream');
type Handle = UvTcp & { [kStream]?: UvStream | undefined };

function onUvRead(this: Handle, ab: ArrayBuffer | undefined): undefined {
  const s = this[kStream];
  if (s !== undefined) {
    if (s.clock) refreshClock();
    s.onRead(readResult(), ab);
  }
  return undefined;
}

function onUvWriteDone(this: UvReq, status: number): void {
  this.buffer = null;
  const s = (this.handle as Handle)[kStream];
  if (s !== undefined) {
    if (s.clock) refreshClock();
    s.onWriteDone(status);
  }
}

function onUvShutdownDone(this: UvReq, status: number): void {
  const s = (this.handle as Handle)[kStream];
  if (s !== undefined) {
    if (s.clock) refreshClock();
    s.onShutdownDone(status);
  }
}

function onUvConnect(status: number, handle: Handle): void {
  const s = handle[kStream];
  if (s !== undefined) {
    if (s.clock) refreshClock();
    s.onConnect(status);
  }
}

/**
 * Streams closed this turn whose owners are still to hear it. A handle is closed without a close
 * callback: Node would store the callback on the handle and call into JS once per handle, and libuv has
 * closed the descriptor by the time close() returns anyway. The owners hear it from one setImmediate per
 * turn for all of them (asynchronously, as the contract says).
 */
let closedList: UvStream[] = [];
let closedSpare: UvStream[] = [];
let closedScheduled = false;
function notifyClosed(): void {
  closedScheduled = false;
  const list = closedList;
  closedList = closedSpare;
  let refreshed = false;
  for (let i = 0; i < list.length; i++) {
    const s = list[i] as UvStream;
    if (s.clock && !refreshed) {
      refreshClock();
      refreshed = true;
    }
    s.owner.onStreamClose(s.error);
  }
  list.length = 0;
  closedSpare = list;
}
function closedNow(s: UvStream): void {
  closedList.push(s);
  if (!closedScheduled) {
    closedScheduled = true;
    setImmediate(notifyClosed);
  }
}

export class UvStream implements Stream {
  /** Refresh the cached clock at each event (StreamOptions.refreshClock). */
  readonly clock: boolean;
  closed = false;
  connected: boolean;
  /** What closed the stream, when an error did (given to onStreamClose). */
  error: Error | undefined = undefined;
  /** libuv is reading (readStart in effect). */
  private readingNow = false;
  private paused: boolean;
  /** FIN read from the peer. */
  private eof = false;
  /** Our FIN requested (shutdown). */
  private ended = false;
  private shutdownDone = false;
  /** Asynchronous writes in flight, and whether a writer was told to wait. */
  private pendingWrites = 0;
  private needDrain = false;
  private peerAddress: string | undefined = undefined;
  private readonly highWater: number;
  private readonly batchOption: boolean | undefined;
  /** Reads land in memory of their own per read (`fresh`) rather than the shared buffer. */
  private readonly fresh: boolean;
  /** The stream's own read buffer, once taken; the bytes read before it is (see ownBufferAfter). */
  private own: Buffer | undefined = undefined;
  private readonly ownAfter: number;
  private readonly ownBytes: number;
  private readBytes = 0;

  constructor(
    private readonly handle: Handle,
    public owner: StreamOwner,
    connected: boolean,
    opts: StreamOptions = NO_OPTIONS,
  ) {
    this.connected = connected;
    this.clock = opts.refreshClock !== false;
    this.highWater = opts.highWaterBytes ?? HIGH_WATER_BYTES;
    this.batchOption = opts.batch;
    this.paused = opts.paused === true;
    this.ownAfter = opts.ownBufferAfter ?? -1;
    this.ownBytes = opts.ownBufferBytes ?? OWN_BUFFER_BYTES;
    this.fresh = opts.reads === 'fresh';
    handle[kStream] = this;
    handle.onread = onUvRead;
    if (this.ownAfter === 0) this.takeOwnBuffer();
    else if (!this.fresh) handle.useUserBuffer(SHARED_READ);
    if (connected) {
      handle.setNoDelay(true);
      this.startReading();
    }
  }

  /** Connect a new handle to address:port (IP literals); the owner hears onStreamConnect or onStreamClose. */
  static connect(address: string, port: number, owner: StreamOwner, opts: StreamOptions = NO_OPTIONS): UvStream {
    const h = newSocket() as Handle;
    const s = new UvStream(h, owner, false, opts);
    const req = newConnectReq();
    req.oncomplete = onUvConnect as unknown as UvReq['oncomplete'];
    req.address = address;
    req.port = port;
    const err = address.includes(':') ? h.connect6(req, address, port) : h.connect(req, address, port);
    if (err) s.fail(uvError(err, 'connect'));
    return s;
  }

  get volatileReads(): boolean {
    return !this.fresh || this.own !== undefined;
  }

  get reading(): boolean {
    return this.readingNow;
  }

  remoteAddress(): string {
    if (this.peerAddress === undefined) this.peerAddress = this.closed ? '' : peer(this.handle).address;
    return this.peerAddress;
  }

  remote(): { address: string; port: number } {
    return this.closed ? { address: '', port: 0 } : peer(this.handle);
  }

  local(): { address: string; port: number } {
    return this.closed ? { address: '', port: 0 } : peer(this.handle, true);
  }

  /** @internal */
  onConnect(status: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.fail(uvError(status, 'connect'));
      return;
    }
    this.connected = true;
    this.handle.setNoDelay(true);
    this.startReading();
    this.owner.onStreamConnect();
  }

  private startReading(): void {
    if (this.readingNow || this.paused || this.eof || this.closed) return;
    const err = this.handle.readStart();
    if (err === 0) this.readingNow = true;
    else this.fail(uvError(err, 'read')); // a handle that cannot read is gone (the owner hears onStreamClose)
  }

  /** From the next read on, read into a buffer of this stream's own. */
  private takeOwnBuffer(): void {
    this.own = Buffer.allocUnsafe(this.ownBytes);
    this.handle.useUserBuffer(this.own);
  }

  /** @internal `ab`: the read's own memory (`fresh` reads), else undefined (the bytes are in a user buffer). */
  onRead(n: number, ab: ArrayBuffer | undefined): void {
    if (this.closed) return;
    if (n > 0) {
      const own = this.own;
      if (ab !== undefined) this.owner.onStreamData(Buffer.from(ab, readOffset(), n));
      else if (own !== undefined) this.owner.onStreamData(n === own.length ? own : own.subarray(0, n));
      else this.owner.onStreamData(readView(n));
      if (own === undefined && this.ownAfter > 0 && (this.readBytes += n) >= this.ownAfter && !this.closed) this.takeOwnBuffer();
      return;
    }
    if (n === 0) return;
    if (n === UV_EOF) {
      this.eof = true;
      if (this.readingNow) {
        this.handle.readStop();
        this.readingNow = false;
      }
      this.owner.onStreamEnd();
      // Both directions are done (our FIN went out, theirs came in).
      if (this.ended && this.shutdownDone) this.destroy();
      return;
    }
    // A read error (ECONNRESET …): the stream is over.
    this.fail(uvError(n, 'read'));
  }

  /**
   * Bytes waiting for the end of this event-loop turn (see `batchWrites`): out[0, outLen), an
   * accumulator taken from the shared free list at the first write of the turn and given back after a
   * write that completed at once (the usual case: no allocation per write).
   */
  private out: Buffer | undefined = undefined;
  private outLen = 0;
  private inFlushList = false;

  private get batched(): boolean {
    return this.batchOption ?? batching;
  }

  /** Batched writes copy the bytes at once: the caller may reuse them (a volatile read buffer). */
  get copiesWrites(): boolean {
    return this.batched;
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed || chunk.length === 0) return !this.closed;
    if (this.batched) return this.enqueue(chunk);
    return this.writeNow(chunk);
  }

  writeLatin1(s: string): boolean {
    if (this.closed || s.length === 0) return !this.closed;
    if (this.batched) return this.enqueue(s);
    return this.writeLatin1Now(s);
  }

  writeCopy(buf: Buffer, start: number, end: number): boolean {
    if (this.closed || end <= start) return !this.closed;
    if (this.batched) {
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
    if (this.outLen + (this.pendingWrites === 0 ? 0 : this.handle.writeQueueSize) > this.highWater) {
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
    if (err || !lastWriteWasAsync()) giveAccumulator(out); // (else libuv holds it: req.buffer keeps it)
    this.afterWrite(req, err, view);
    // A writer told to wait, and everything went out at once: it may go on.
    if (this.needDrain && !this.closed && this.handle.writeQueueSize === 0) {
      this.needDrain = false;
      this.owner.onStreamDrain();
    }
  }

  /** A write request for this handle: a free one (see freeWriteReqs), or a new one. */
  private writeReq(): UvReq {
    const req = freeWriteReqs.pop() ?? newWriteReq();
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
      freeWriteReq(req);
      this.fail(uvError(err, 'write'));
      return false;
    }
    if (!lastWriteWasAsync()) {
      freeWriteReq(req);
      return true;
    }
    // libuv holds the request (and the bytes of a buffer write) until it is done.
    req.buffer = keep;
    this.pendingWrites++;
    if (this.handle.writeQueueSize > this.highWater) {
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
      this.fail(uvError(status, 'write'));
      return;
    }
    if (this.needDrain && this.handle.writeQueueSize === 0 && this.out === undefined) {
      this.needDrain = false;
      this.owner.onStreamDrain();
    }
  }

  pause(): void {
    this.paused = true;
    if (this.readingNow) {
      this.handle.readStop();
      this.readingNow = false;
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
    // Not connected, or the peer's FIN is in and nothing waits to be sent: close() sends our FIN.
    if (!this.connected || (this.eof && this.pendingWrites === 0)) {
      this.destroy();
      return;
    }
    const req = newShutdownReq();
    req.handle = this.handle;
    req.oncomplete = onUvShutdownDone as unknown as UvReq['oncomplete'];
    // libuv shuts down after the writes queued before it. (1: done at once; ENOTCONN: the write side is shut already.)
    const err = this.handle.shutdown(req);
    if (err === 1 || err === UV_ENOTCONN) this.onShutdownDone(0);
    else if (err) this.fail(uvError(err, 'shutdown'));
  }

  /** @internal */
  onShutdownDone(status: number): void {
    this.shutdownDone = true;
    if (this.closed) return;
    if (status < 0 && status !== UV_ENOTCONN) this.fail(uvError(status, 'shutdown'));
    else if (this.eof) this.destroy();
    else this.startReading(); // keep reading until the peer's FIN (what it sends is still delivered)
  }

  /** Close because of `err` (the owner hears it in onStreamClose). */
  private fail(err: Error): void {
    this.error ??= err;
    this.destroy();
  }

  private markClosed(): void {
    this.closed = true;
    this.readingNow = false;
    if (!this.inFlushList) this.dropQueued(); // (else flush() gives it back)
  }

  destroy(): void {
    if (this.closed) return;
    this.markClosed();
    this.handle.close();
    closedNow(this);
  }

  reset(): void {
    if (this.closed) return;
    // libuv refuses a reset while a shutdown is in flight, and Node then never closes the handle: close.
    if (!this.connected || (this.ended && !this.shutdownDone)) {
      this.destroy();
      return;
    }
    this.markClosed();
    // (the only failure is the one avoided above)
    this.handle.reset();
    closedNow(this);
  }
}

// ---------------------------------------------------------------------------------------------------
// SocketStream

const kSocketStream = Symbol('net.socketstream');
type TaggedSocket = net.Socket & { [kSocketStream]: SocketStream };

// Shared handlers: `this` is the socket that emitted.
function onSocketData(this: TaggedSocket, d: Buffer): void {
  if (this[kSocketStream].clock) refreshClock();
  this[kSocketStream].onData(d);
}
function onSocketOwnRead(this: TaggedSocket, n: number, buf: Buffer): void {
  if (this[kSocketStream].clock) refreshClock();
  this[kSocketStream].owner.onStreamData(n === buf.length ? buf : buf.subarray(0, n));
}
function onSocketEnd(this: TaggedSocket): void {
  if (this[kSocketStream].clock) refreshClock();
  this[kSocketStream].owner.onStreamEnd();
}
function onSocketDrain(this: TaggedSocket): void {
  if (this[kSocketStream].clock) refreshClock();
  this[kSocketStream].drained();
}
function onSocketError(this: TaggedSocket, err: Error): void {
  // 'close' follows; the first error is what closed it.
  const s = this[kSocketStream];
  s.error ??= err;
}
function onSocketClose(this: TaggedSocket): void {
  if (this[kSocketStream].clock) refreshClock();
  const s = this[kSocketStream];
  s.owner.onStreamClose(s.error);
}
function onSocketConnect(this: TaggedSocket): void {
  if (this[kSocketStream].clock) refreshClock();
  this[kSocketStream].onConnect();
}

export class SocketStream implements Stream {
  readonly copiesWrites = false;
  /** Refresh the cached clock at each event (StreamOptions.refreshClock). */
  readonly clock: boolean;
  connected: boolean;
  /** What closed the socket, when an error did (given to onStreamClose). */
  error: Error | undefined = undefined;
  /** -1: the socket's own high-water mark and 'drain'; else write() says stop above this many bytes queued. */
  private readonly highWater: number;
  private needDrain = false;
  /** Per-write completion callback (made once per stream, only when `highWater` is ours). */
  private readonly written: ((err?: Error | null) => void) | undefined;
  private paused: boolean;
  private own: Buffer | undefined = undefined;
  private readonly ownAfter: number;
  private readonly ownBytes: number;
  private readBytes = 0;

  constructor(
    readonly socket: net.Socket,
    public owner: StreamOwner,
    connected: boolean,
    opts: StreamOptions = NO_OPTIONS,
  ) {
    this.connected = connected;
    this.clock = opts.refreshClock !== false;
    this.highWater = opts.highWaterBytes ?? -1;
    this.written = this.highWater >= 0 ? (err) => this.afterWritten(err) : undefined;
    this.ownAfter = opts.ownBufferAfter ?? -1;
    this.ownBytes = opts.ownBufferBytes ?? OWN_BUFFER_BYTES;
    (socket as TaggedSocket)[kSocketStream] = this;
    this.paused = opts.paused === true || socket.isPaused();
    if (opts.paused === true) socket.pause(); // (before 'data' is listened to, which would resume it)
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('drain', onSocketDrain);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    if (connected) {
      if (this.ownAfter === 0) this.takeOwnBuffer();
    } else {
      socket.once('connect', onSocketConnect);
    }
  }

  /** Connect to address:port (a host name is resolved first); half-open, as UvStream is. */
  static connect(address: string, port: number, owner: StreamOwner, opts: StreamOptions = NO_OPTIONS): SocketStream {
    const o = { host: address, port, noDelay: true, allowHalfOpen: true } as net.NetConnectOpts & { highWaterMark?: number };
    // `highWaterMark` is a stream option net.Socket passes on (both directions); @types/node omits it.
    if (opts.socketHighWaterMark !== undefined) o.highWaterMark = opts.socketHighWaterMark;
    return new SocketStream(net.connect(o), owner, false, opts);
  }

  get closed(): boolean {
    return this.socket.destroyed;
  }

  get volatileReads(): boolean {
    return this.own !== undefined;
  }

  get reading(): boolean {
    const h = (this.socket as unknown as { _handle?: { reading?: boolean } | null })._handle;
    return !!h && h.reading === true && !this.socket.destroyed;
  }

  remoteAddress(): string {
    return this.socket.remoteAddress ?? '';
  }

  remote(): { address: string; port: number } {
    return { address: this.socket.remoteAddress ?? '', port: this.socket.remotePort ?? 0 };
  }

  local(): { address: string; port: number } {
    return { address: this.socket.localAddress ?? '', port: this.socket.localPort ?? 0 };
  }

  /** @internal */
  onConnect(): void {
    this.connected = true;
    if (this.ownAfter === 0) this.takeOwnBuffer();
    this.owner.onStreamConnect();
  }

  /** @internal a read on the ordinary path ('data') */
  onData(d: Buffer): void {
    this.owner.onStreamData(d);
    if (this.ownAfter > 0 && (this.readBytes += d.length) >= this.ownAfter) this.maybeTakeOwnBuffer();
  }

  /**
   * Read into a buffer of the stream's own from now on — when nothing read earlier still waits in the
   * socket's readable buffer (those bytes must come out first, in order); else at a later read.
   */
  private maybeTakeOwnBuffer(): void {
    if (this.own !== undefined || this.paused || this.socket.readableLength !== 0 || this.socket.destroyed) return;
    this.takeOwnBuffer();
  }

  private takeOwnBuffer(): void {
    const own = Buffer.allocUnsafe(this.ownBytes);
    if (useUserBuffer(this.socket, own, onSocketOwnRead as (this: net.Socket, n: number, b: Buffer) => void)) this.own = own;
  }

  write(chunk: Uint8Array): boolean {
    const socket = this.socket;
    if (this.written === undefined) return socket.write(chunk);
    if (socket.destroyed) return false;
    socket.write(chunk, this.written);
    if (socket.writableLength <= this.highWater) return true;
    this.needDrain = true;
    return false;
  }

  writeLatin1(s: string): boolean {
    return this.written === undefined ? this.socket.write(s, 'latin1') : this.write(Buffer.from(s, 'latin1'));
  }

  writeCopy(buf: Buffer, start: number, end: number): boolean {
    return end > start ? this.write(Buffer.from(buf.subarray(start, end))) : !this.socket.destroyed;
  }

  private afterWritten(err: Error | null | undefined): void {
    if (!err) this.drained();
  }

  /** @internal the socket's 'drain', or (our own high-water mark) a write completed */
  drained(): void {
    if (this.written === undefined) {
      this.owner.onStreamDrain();
      return;
    }
    if (this.needDrain && this.socket.writableLength === 0 && !this.socket.destroyed) {
      this.needDrain = false;
      this.owner.onStreamDrain();
    }
  }

  pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    this.paused = false;
    if (!this.socket.readableEnded) this.socket.resume();
  }

  end(): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    // The peer's FIN is in and nothing waits to be sent: close() sends our FIN (see the module comment).
    if (socket.readableEnded && socket.writableLength === 0 && (socket as tls.TLSSocket).encrypted !== true) socket.destroy();
    else socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  reset(): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    if (!this.connected) {
      socket.destroy();
      return;
    }
    try {
      socket.resetAndDestroy(); // (a TLS socket has no TCP handle of its own to reset)
    } catch {
      socket.destroy();
    }
  }
}

/** `chunk`, from a read of a stream whose reads are `volatile`, as it may be given to `dest.write()`. */
export function writable(dest: Stream, chunk: Buffer, volatile: boolean): Buffer {
  return volatile && !dest.copiesWrites ? Buffer.from(chunk) : chunk;
}

/** An upstream connection for the L7 engine: a UvStream when possible, else a net.Socket. */
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

/**
 * Accept on `server`, a listening handle from a SocketSource (listen.ts): `onConnection` gets each
 * accepted handle. Call it right after the source's promise resolved, before anything else is awaited.
 */
export function acceptUv(server: UvTcp, onConnection: (h: UvTcp) => void, onError: (err: NodeJS.ErrnoException) => void): UvListener {
  server.onconnection = (err, client) => {
    refreshClock();
    if (err || !client) {
      if (err) onError(uvError(err, 'accept'));
      return;
    }
    onConnection(client);
  };
  return {
    handle: server,
    address: () => peer(server, true),
    close: () => {
      server.onconnection = null;
      server.close();
    },
  };
}
