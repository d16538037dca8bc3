/**
 * The access log: one JSON line per request, written to the destination of the logger the plane was
 * given, in that logger's format (`{"level":30,"time":…,<bindings>,"component":"access",…,"msg":"request"}`),
 * at its level (nothing when `info` is off).
 *
 * Why not `logger.info(obj)`: with the daemon's logger (redaction paths with wildcards, ISO time) that
 * cost ~21 µs of CPU per line here — three times what proxying the request costs. An access line has a
 * fixed set of fields, none of them a secret (the path is logged without its query), so it is formatted
 * here directly, into one reused buffer: the start of the line (level, the logger's own time and
 * bindings) made once per millisecond; each repeating field (entrypoint, route, service, endpoint,
 * client, method, host, outcome, abortPhase) copied as ready-made `,"key":"value"` bytes; numbers written digit by
 * digit; path and request id escaped only when they need it. ~0.65 µs a line on the benchmark machine,
 * and no string per line: building lines by concatenation cost ~1.0 µs and ~1.3 KB of garbage per
 * request, a quarter of what the engine allocated (more young-generation collections, each a pause
 * that lands in the latency tail).
 *
 * Writing: when the destination is a sonic-boom (pino's file-descriptor destination, what the daemon
 * logs to), lines are gathered and written with one call per 64 KiB or 50 ms, whichever comes first (a
 * line reaches the log at most 50 ms late, and stop() writes what is left). A chunk goes straight to the
 * descriptor when sonic-boom holds nothing of its own and the descriptor is written at once anyway
 * (synchronous, or a regular file: see writesDirectly); else as one string through sonic-boom. Any other
 * destination (a test's capture, a transport) gets one write per line, as from pino. Either way lines
 * never interleave inside another log line.
 */
import fs from 'node:fs';
import pino from 'pino';
import type { Logger } from '../telemetry/log.js';

/** Buffered access lines are written when they reach this size, or this long after the first of them. */
const FLUSH_BYTES = 65_536;
const FLUSH_MS = 50;
/** Room kept for one line of fixed-size fields; the variable ones are measured (×6: worst-case escapes). */
const LINE_FIXED = 1024;

/** What a destination must offer (pino's own destinations, sonic-boom, a test capture). */
interface LineSink {
  write(line: string): unknown;
}

type Internals = Record<symbol, unknown>;

/** What flush() reads of a sonic-boom (pino's destination). */
interface SonicBoomLike {
  fd: number;
  sync: boolean;
  _len: number;
  _writing: boolean;
}

// eslint-disable-next-line no-control-regex -- JSON escapes exactly these control characters
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** A JSON string literal; the common case (nothing to escape) without JSON.stringify. */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/**
 * `,"<key>":<JSON literal of the value>` as UTF-8 bytes, for a field whose values repeat from request to
 * request (names, addresses, hosts): the last one at hand (a string comparison, usually of the very same
 * string), the others cached by value.
 */
class Field {
  private last: string | undefined = undefined;
  private lastBytes: Buffer = Buffer.alloc(0);
  private readonly cache = new Map<string, Buffer>();
  constructor(private readonly key: string) {}

  bytes(v: string): Buffer {
    if (v === this.last) return this.lastBytes;
    let b = this.cache.get(v);
    if (b === undefined) {
      b = Buffer.from(`,"${this.key}":${jsonString(v)}`, 'utf8');
      if (this.cache.size >= FIELD_CACHE_MAX) this.cache.clear();
      this.cache.set(v, b);
    }
    this.last = v;
    this.lastBytes = b;
    return b;
  }
}
const FIELD_CACHE_MAX = 4096;

/** Keys of the fields written as numbers or escaped per line. */
const K = {
  path: Buffer.from(',"path":'),
  status: Buffer.from(',"status":'),
  bytesIn: Buffer.from(',"bytesIn":'),
  bytesOut: Buffer.from(',"bytesOut":'),
  ms: Buffer.from(',"ms":'),
  upstreamMs: Buffer.from(',"upstreamMs":'),
  retries: Buffer.from(',"retries":'),
  requestId: Buffer.from(',"requestId":'),
};

export interface AccessRecord {
  entrypoint: string;
  route: string;
  service: string | undefined;
  endpoint: string | undefined;
  client: string;
  method: string;
  host: string | undefined;
  path: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  /** Milliseconds, in tenths: written as `ms / 10` would print (12.3, 7). */
  msTenths: number;
  upstreamMsTenths: number | undefined;
  retries: number;
  outcome: string;
  /** Outcome `client-abort`: where the request was when its client left (options.ts, ClientAbortPhase). */
  abortPhase: string | undefined;
  requestId: string | undefined;
}

/** A record to fill and hand to write() (which reads it at once): one per caller, no object per line. */
export function newAccessRecord(): AccessRecord {
  return {
    entrypoint: '',
    route: '',
    service: undefined,
    endpoint: undefined,
    client: '',
    method: '',
    host: undefined,
    path: '',
    status: 0,
    bytesIn: 0,
    bytesOut: 0,
    msTenths: 0,
    upstreamMsTenths: undefined,
    retries: 0,
    outcome: '',
    abortPhase: undefined,
    requestId: undefined,
  };
}

const QUOTE = 0x22;
const DOT = 0x2e;
const ZERO = 0x30;

export class AccessLog {
  private readonly sink: LineSink | undefined;
  private readonly time: (() => string) | undefined;
  private readonly bindings: string;
  private readonly msgKey: Buffer;
  private readonly entrypoint = new Field('entrypoint');
  private readonly route = new Field('route');
  private readonly service = new Field('service');
  private readonly endpoint = new Field('endpoint');
  private readonly client = new Field('client');
  private readonly method = new Field('method');
  private readonly host = new Field('host');
  private readonly outcome = new Field('outcome');
  private readonly abortPhase = new Field('abortPhase');
  private readonly level: number;
  private readonly batch: boolean;
  /** Chunks may be written to the destination's descriptor directly (see flush). */
  private readonly direct: boolean;
  /** The descriptor last looked at, and whether it is written directly. */
  private checkedFd = -1;
  private directFd = false;

  /**
   * Write to this destination's descriptor ourselves? When it is synchronous (it would write at once
   * itself), or its descriptor is a regular file (a write is a copy into the page cache, tens of
   * microseconds per 64 KiB chunk). Not an asynchronous pipe or socket (journald, a container's log
   * driver): a reader that stalls must not stall the event loop, so those go through sonic-boom's
   * thread-pool writes. (Measured here for a file: 0.8 µs of CPU per line written directly, 2.0 µs
   * through the asynchronous destination.)
   */
  private writesDirectly(sb: SonicBoomLike): boolean {
    if (sb.sync) return true;
    if (sb.fd !== this.checkedFd) {
      this.checkedFd = sb.fd;
      try {
        this.directFd = fs.fstatSync(sb.fd).isFile();
      } catch {
        this.directFd = false;
      }
    }
    return this.directFd;
  }

  /** Lines not yet written: buf[0, pos). */
  private buf = Buffer.allocUnsafe(FLUSH_BYTES + LINE_FIXED);
  private pos = 0;
  private scheduled = false;
  private readonly flushSoon = (): void => {
    this.scheduled = false;
    this.flush();
  };

  constructor(private readonly logger: Logger) {
    const l = logger as unknown as Internals;
    const sink = l[pino.symbols.streamSym] as LineSink | undefined;
    const time = l[pino.symbols.timeSym] as (() => string) | undefined;
    const bindings = l[pino.symbols.chindingsSym];
    const messageKey = l[pino.symbols.messageKeySym];
    // Fall back to logger.info() if this pino does not look as expected.
    const ok = sink !== undefined && typeof sink.write === 'function' && typeof time === 'function' && typeof bindings === 'string';
    this.sink = ok ? sink : undefined;
    this.time = ok ? time : undefined;
    this.bindings = ok ? (bindings as string) : '';
    this.msgKey = Buffer.from(`,${jsonString(typeof messageKey === 'string' ? messageKey : 'msg')}:"request"}\n`, 'utf8');
    this.level = logger.levels?.values?.info ?? 30;
    // sonic-boom: pino.destination() and pino's default stdout stream.
    const sb = sink as { fd?: unknown; flushSync?: unknown } | undefined;
    this.batch = ok && typeof sb?.flushSync === 'function' && 'fd' in (sb as object);
    // sonic-boom 4's state, where it is as expected: its descriptor, and how much it holds unwritten.
    const state = sink as unknown as Partial<SonicBoomLike> | undefined;
    this.direct =
      this.batch &&
      typeof state?.sync === 'boolean' &&
      typeof state._len === 'number' &&
      typeof state._writing === 'boolean' &&
      typeof state.fd === 'number';
  }

  /** Write what is buffered (when due; and on stop). */
  flush(): void {
    if (this.pos === 0) return;
    let from = 0;
    const sb = this.sink as unknown as SonicBoomLike;
    if (this.direct && sb._len === 0 && !sb._writing && sb.fd >= 0 && this.writesDirectly(sb)) {
      // A sonic-boom with nothing of its own pending, on a descriptor that is written at once (a
      // synchronous one, or a regular file): write our bytes to it without a string each way. What the
      // descriptor refuses goes through the destination after all, behind what was written.
      try {
        while (from < this.pos) from += fs.writeSync(sb.fd, this.buf, from, this.pos - from);
      } catch {
        // EAGAIN (a pipe that is full), or a descriptor gone: the destination's own handling applies
      }
    }
    if (from < this.pos) (this.sink as LineSink).write(this.buf.toString('utf8', from, this.pos));
    this.pos = 0;
  }

  private lastMs = -1;
  private lastStart = Buffer.alloc(0);

  /** `{"level":30,"time":…<bindings>`: the logger's own start of a line, made at most once per millisecond (pino's times are ms-precise). */
  private lineStart(): Buffer {
    const ms = Date.now();
    if (ms !== this.lastMs) {
      this.lastMs = ms;
      this.lastStart = Buffer.from(`{"level":${this.level}${(this.time as () => string)()}${this.bindings}`, 'utf8');
    }
    return this.lastStart;
  }

  get enabled(): boolean {
    return this.logger.isLevelEnabled('info');
  }

  write(r: AccessRecord): void {
    if (this.sink === undefined) {
      const { msTenths, upstreamMsTenths, ...rest } = r;
      this.logger.info(
        { ...rest, ms: msTenths / 10, upstreamMs: upstreamMsTenths === undefined ? undefined : upstreamMsTenths / 10 },
        'request',
      );
      return;
    }
    // Room for the line: the fixed part, and the variable strings at their worst (every char escaped).
    const need =
      LINE_FIXED +
      6 *
        (this.bindings.length +
          r.path.length +
          (r.host?.length ?? 0) +
          (r.requestId?.length ?? 0) +
          r.route.length +
          (r.service?.length ?? 0) +
          (r.endpoint?.length ?? 0) +
          r.entrypoint.length +
          r.client.length +
          r.method.length +
          r.outcome.length +
          (r.abortPhase?.length ?? 0));
    if (this.pos + need > this.buf.length) {
      if (this.batch) this.flush();
      if (need > this.buf.length) this.buf = Buffer.allocUnsafe(need + FLUSH_BYTES);
    }
    const start = this.pos;
    this.put(this.lineStart());
    this.put(this.entrypoint.bytes(r.entrypoint));
    this.put(this.route.bytes(r.route));
    if (r.service !== undefined) this.put(this.service.bytes(r.service));
    if (r.endpoint !== undefined) this.put(this.endpoint.bytes(r.endpoint));
    this.put(this.client.bytes(r.client));
    this.put(this.method.bytes(r.method));
    if (r.host !== undefined) this.put(this.host.bytes(r.host));
    this.put(K.path);
    this.str(r.path);
    this.put(K.status);
    this.int(r.status);
    this.put(K.bytesIn);
    this.int(r.bytesIn);
    this.put(K.bytesOut);
    this.int(r.bytesOut);
    this.put(K.ms);
    this.tenths(r.msTenths);
    if (r.upstreamMsTenths !== undefined) {
      this.put(K.upstreamMs);
      this.tenths(r.upstreamMsTenths);
    }
    this.put(K.retries);
    this.int(r.retries);
    this.put(this.outcome.bytes(r.outcome));
    if (r.abortPhase !== undefined) this.put(this.abortPhase.bytes(r.abortPhase));
    if (r.requestId !== undefined) {
      this.put(K.requestId);
      this.str(r.requestId);
    }
    this.put(this.msgKey);
    if (!this.batch) {
      this.sink.write(this.buf.toString('utf8', start, this.pos));
      this.pos = 0;
      return;
    }
    if (this.pos >= FLUSH_BYTES) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(this.flushSoon, FLUSH_MS).unref();
    }
  }

  // ---- writing into buf at pos (the room was checked in write())

  /** Bytes as they are (a cached piece). */
  private put(x: Buffer): void {
    this.buf.set(x, this.pos);
    this.pos += x.length;
  }

  /** Text already in JSON form, as UTF-8. */
  private text(s: string): void {
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) b[p++] = c;
      else {
        // Anything beyond ASCII: the rest of the string through the encoder.
        this.pos = p + b.write(s.slice(i), p, 'utf8');
        return;
      }
    }
    this.pos = p;
  }

  /** A string value, quoted and escaped as JSON.stringify would. */
  private str(s: string): void {
    if (NEEDS_ESCAPE.test(s)) {
      this.text(JSON.stringify(s));
      return;
    }
    this.buf[this.pos++] = QUOTE;
    this.text(s);
    this.buf[this.pos++] = QUOTE;
  }

  /** A non-negative integer (a negative or fractional one, which the engine does not make, as JS prints it). */
  private int(n: number): void {
    if (!(n >= 0 && n <= 0x7fffffff && (n | 0) === n)) {
      this.text(String(n));
      return;
    }
    const b = this.buf;
    let digits = 1;
    for (let x = n; x >= 10; x = (x / 10) | 0) digits++;
    const start = this.pos;
    this.pos = start + digits;
    let x = n;
    for (let p = this.pos - 1; p >= start; p--) {
      b[p] = ZERO + (x % 10);
      x = (x / 10) | 0;
    }
  }

  /** `tenths / 10` as JS prints it (12.3, 7), for a non-negative integer count of tenths. */
  private tenths(t: number): void {
    if (!(t >= 0 && t <= 0x7fffffff && (t | 0) === t)) {
      this.text(String(t / 10));
      return;
    }
    this.int((t / 10) | 0);
    const d = t % 10;
    if (d !== 0) {
      this.buf[this.pos++] = DOT;
      this.buf[this.pos++] = ZERO + d;
    }
  }
}
