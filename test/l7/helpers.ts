/**
 * Shared helpers for the L7 proxy tests: everything runs on real loopback sockets.
 *
 *  - `startBackend`: a raw-socket HTTP/1.1 backend that records every request it receives (method,
 *    target, headers, body, trailers, the raw bytes) and answers with a configurable reply per request
 *    (a response built from parts, raw bytes, a delay, no answer, a reset).
 *  - `RawClient` / `rawExchange`: a client that writes exact bytes and parses what comes back
 *    (Content-Length, chunked with trailers, close-delimited, bodiless), so tests see the framing the
 *    proxy chose, byte for byte.
 *  - `startPlane`: an L7Plane fed by the real aggregator, listening on an ephemeral port, stopped on
 *    teardown; `apply()` swaps in a new table the same way.
 *
 * Waits are bounded and event-driven (test/helpers/wait.ts): nothing here sleeps to synchronise.
 */
import net from 'node:net';
import tls from 'node:tls';
import pino from 'pino';
import { Aggregator } from '../../src/aggregator/index.js';
import { L7Plane } from '../../src/l7/plane.js';
import type { L7Options } from '../../src/l7/options.js';
import type { RoutingTable, Snapshot } from '../../src/model/types.js';
import { prom, type Registry } from '../../src/telemetry/metrics.js';
import { snapshot, entrypoint as entrypointDef } from '../helpers/snapshot.js';
import { Recorder, TimeoutError, waitFor } from '../helpers/wait.js';

/** What tap hands a test (only what the helpers use). */
export interface TestLike {
  teardown(fn: () => unknown): void;
}

// ---------------------------------------------------------------------------------------------------
// Recording backend

export interface RecordedRequest {
  backend: string;
  /** Index of the backend connection it came on (0-based, in accept order). */
  conn: number;
  /** Index of the request on its connection. */
  seq: number;
  method: string;
  target: string;
  version: string;
  headers: Array<[string, string]>;
  rawHead: string;
  body: Buffer;
  chunked: boolean;
  trailers: Array<[string, string]>;
  /** First value of a field, by case-insensitive name. */
  header(name: string): string | undefined;
  /** Every value of a field. */
  headerAll(name: string): string[];
  /** Is a field present at all? */
  has(name: string): boolean;
}

export interface ReplySpec {
  status?: number;
  reason?: string;
  headers?: Array<[string, string]>;
  body?: string | Buffer;
  /** `length` (default): Content-Length; `chunked`; `close`: close-delimited; `none`: no framing field, no body. */
  framing?: 'length' | 'chunked' | 'close' | 'none';
  trailers?: Array<[string, string]>;
  /** Close the connection after this response. */
  close?: boolean;
  /** Wait this long before answering (simulated backend latency, not synchronisation). */
  delayMs?: number;
}

/** Raw bytes written as they are (then optionally closed). */
export interface RawReply {
  raw: string | Buffer;
  close?: boolean;
  delayMs?: number;
}

export type Reply = ReplySpec | RawReply | 'hang' | 'destroy' | 'upgrade';

export type Handler = (req: RecordedRequest, backend: Backend) => Reply | Promise<Reply>;

export interface Backend {
  name: string;
  port: number;
  /** Complete requests received, in arrival order. */
  requests: Recorder<RecordedRequest>;
  /** Connections accepted so far. */
  connections: number;
  /** Connections open now. */
  readonly open: number;
  /** Every byte received, on every connection. */
  bytesReceived: number;
  /** Connections that closed with an incomplete request in their buffer: those partial bytes. */
  aborted: Recorder<string>;
  /** Connections that closed, by index (accept order), in the order they closed. */
  closes: Recorder<number>;
  handler: Handler;
  /** Set by a handler returning 'upgrade': what to do with the socket after the 101 was written. */
  onUpgrade: ((socket: net.Socket, req: RecordedRequest, rest: Buffer) => void) | undefined;
  /** Stop listening and destroy every connection (a crash, as the peer sees it). */
  kill(): Promise<void>;
  /** Requests whose target starts with `prefix`. */
  seen(prefix: string): RecordedRequest[];
}

export function defaultReply(req: RecordedRequest, b: Backend): ReplySpec {
  return {
    status: 200,
    headers: [
      ['x-backend', b.name],
      ['content-type', 'text/plain'],
    ],
    body: `${b.name} ${req.method} ${req.target}`,
  };
}

function makeRequest(
  backend: string,
  conn: number,
  seq: number,
  method: string,
  target: string,
  version: string,
  headers: Array<[string, string]>,
  rawHead: string,
): RecordedRequest {
  const all = (name: string) => headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
  return {
    backend,
    conn,
    seq,
    method,
    target,
    version,
    headers,
    rawHead,
    body: Buffer.alloc(0),
    chunked: false,
    trailers: [],
    header: (name) => all(name)[0],
    headerAll: all,
    has: (name) => all(name).length > 0,
  };
}

function parseFields(lines: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i <= 0) throw new Error(`bad field line ${JSON.stringify(line)}`);
    out.push([line.slice(0, i), line.slice(i + 1).trim()]);
  }
  return out;
}

/**
 * Incremental parse of one request from `buf`: undefined when incomplete, else the request and the bytes
 * it used. Strict enough for what a proxy sends (CRLF, Content-Length or chunked); throws on anything else.
 */
function parseRequest(buf: Buffer, backend: string, conn: number, seq: number): { req: RecordedRequest; used: number } | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const rawHead = buf.subarray(0, end + 4).toString('latin1');
  const lines = rawHead.slice(0, -4).split('\r\n');
  const m = /^(\S+) (\S+) (HTTP\/1\.[01])$/.exec(lines[0] ?? '');
  if (!m) throw new Error(`bad request line ${JSON.stringify(lines[0])}`);
  const headers = parseFields(lines.slice(1));
  const req = makeRequest(backend, conn, seq, m[1]!, m[2]!, m[3]!, headers, rawHead);
  let p = end + 4;
  const te = req.header('transfer-encoding');
  const cl = req.header('content-length');
  if (req.header('upgrade') !== undefined && /upgrade/i.test(req.header('connection') ?? '')) return { req, used: p };
  if (te !== undefined) {
    if (te.toLowerCase() !== 'chunked') throw new Error(`unexpected transfer-encoding ${te}`);
    req.chunked = true;
    const parts: Buffer[] = [];
    for (;;) {
      const le = buf.indexOf('\r\n', p);
      if (le < 0) return undefined;
      const sizeText = buf.subarray(p, le).toString('latin1');
      const size = parseInt(sizeText.split(';')[0]!, 16);
      if (!/^[0-9a-fA-F]+(;.*)?$/.test(sizeText) || !Number.isFinite(size)) throw new Error(`bad chunk size ${JSON.stringify(sizeText)}`);
      p = le + 2;
      if (size === 0) {
        const tEnd = buf.indexOf('\r\n\r\n', p - 2);
        if (tEnd < 0) return undefined;
        const block = buf.subarray(p, tEnd + 2).toString('latin1');
        req.trailers = parseFields(block.split('\r\n').filter((l) => l.length > 0));
        p = tEnd + 4;
        break;
      }
      if (buf.length < p + size + 2) return undefined;
      parts.push(buf.subarray(p, p + size));
      if (buf.subarray(p + size, p + size + 2).toString('latin1') !== '\r\n') throw new Error('chunk data not followed by CRLF');
      p += size + 2;
    }
    req.body = Buffer.concat(parts);
  } else if (cl !== undefined) {
    const n = Number(cl);
    if (!/^\d+$/.test(cl)) throw new Error(`bad content-length ${cl}`);
    if (buf.length < p + n) return undefined;
    req.body = Buffer.from(buf.subarray(p, p + n));
    p += n;
  }
  return { req, used: p };
}

/** The bytes of a reply built from parts. */
export function serializeReply(r: ReplySpec, headMethod = false): Buffer {
  const status = r.status ?? 200;
  const body = typeof r.body === 'string' ? Buffer.from(r.body, 'latin1') : (r.body ?? Buffer.alloc(0));
  const framing = r.framing ?? 'length';
  let head = `HTTP/1.1 ${status} ${r.reason ?? 'X'}\r\n`;
  for (const [n, v] of r.headers ?? []) head += `${n}: ${v}\r\n`;
  if (framing === 'length') head += `content-length: ${body.length}\r\n`;
  if (framing === 'chunked') head += 'transfer-encoding: chunked\r\n';
  if (r.close || framing === 'close') head += 'connection: close\r\n';
  head += '\r\n';
  const parts: Buffer[] = [Buffer.from(head, 'latin1')];
  const noBody = headMethod || status === 204 || status === 304 || framing === 'none';
  if (!noBody) {
    if (framing === 'chunked') {
      if (body.length) parts.push(Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n'));
      let tail = '0\r\n';
      for (const [n, v] of r.trailers ?? []) tail += `${n}: ${v}\r\n`;
      parts.push(Buffer.from(`${tail}\r\n`, 'latin1'));
    } else {
      parts.push(body);
    }
  }
  return Buffer.concat(parts);
}

export async function startBackend(t: TestLike, name = 'b', handler: Handler = defaultReply): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  let killed = false;
  // Half-open, as real servers are: a tunnel's half-close must be observable (see onUpgrade).
  const server = net.createServer({ allowHalfOpen: true });
  const b: Backend = {
    name,
    port: 0,
    requests: new Recorder<RecordedRequest>(),
    connections: 0,
    get open() {
      return sockets.size;
    },
    bytesReceived: 0,
    aborted: new Recorder<string>(),
    closes: new Recorder<number>(),
    handler,
    onUpgrade: undefined,
    kill: () => {
      killed = true;
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
      });
    },
    seen: (prefix) => b.requests.items.filter((r) => r.target.startsWith(prefix)),
  };
  server.on('connection', (socket) => {
    if (killed) {
      socket.destroy();
      return;
    }
    const connIndex = b.connections++;
    sockets.add(socket);
    socket.on('error', () => {
      /* resets are part of the tests */
    });
    let buf: Buffer = Buffer.alloc(0);
    let seq = 0;
    let upgraded = false;
    socket.on('close', () => {
      sockets.delete(socket);
      if (buf.length > 0 && !upgraded) b.aborted.push(buf.toString('latin1'));
      b.closes.push(connIndex);
    });
    // Replies leave in request order, whatever their delays.
    let chain: Promise<void> = Promise.resolve();
    socket.on('end', () => {
      // The peer is done sending: answer what was asked, then close (an upgraded socket decides itself).
      if (!upgraded) void chain.then(() => socket.end());
    });
    socket.on('data', (d: Buffer) => {
      b.bytesReceived += d.length;
      if (upgraded) return;
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      for (;;) {
        let parsed: ReturnType<typeof parseRequest>;
        try {
          parsed = parseRequest(buf, name, connIndex, seq);
        } catch (err) {
          socket.destroy(err as Error);
          return;
        }
        if (!parsed) return;
        const req = parsed.req;
        buf = buf.subarray(parsed.used);
        seq++;
        b.requests.push(req);
        const isUpgrade = req.header('upgrade') !== undefined;
        if (isUpgrade) upgraded = true;
        const rest = buf;
        chain = chain
          .then(async () => {
            const reply = await b.handler(req, b);
            await answer(socket, req, reply, rest);
          })
          .catch(() => {
            socket.destroy();
          });
        if (isUpgrade) return;
      }
    });
  });
  async function answer(socket: net.Socket, req: RecordedRequest, reply: Reply, rest: Buffer): Promise<void> {
    if (reply === 'hang') return;
    if (reply === 'destroy') {
      socket.destroy();
      return;
    }
    if (reply === 'upgrade') {
      if (!b.onUpgrade) throw new Error('upgrade reply without onUpgrade');
      b.onUpgrade(socket, req, rest);
      return;
    }
    if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
    if (socket.destroyed) return;
    if ('raw' in reply) {
      socket.write(reply.raw);
      if (reply.close) socket.end();
      return;
    }
    socket.write(serializeReply(reply, req.method === 'HEAD'));
    if (reply.close || reply.framing === 'close') socket.end();
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  b.port = (server.address() as net.AddressInfo).port;
  t.teardown(() => b.kill());
  return b;
}

/** A port nothing listens on (bound, then closed). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------------------------------------------
// Raw client and response parsing

export interface ParsedResponse {
  version: string;
  status: number;
  reason: string;
  headers: Array<[string, string]>;
  body: Buffer;
  trailers: Array<[string, string]>;
  framing: 'length' | 'chunked' | 'close' | 'none';
  /** The exact bytes of this response. */
  raw: Buffer;
  header(name: string): string | undefined;
  headerAll(name: string): string[];
  has(name: string): boolean;
  readonly text: string;
}

/**
 * Parse one response at `buf[off..]`. `noBody`: the request was HEAD. `eof`: no more bytes will come
 * (a close-delimited body ends here). Undefined when incomplete.
 */
export function parseResponse(buf: Buffer, off: number, noBody: boolean, eof: boolean): { res: ParsedResponse; next: number } | undefined {
  const end = buf.indexOf('\r\n\r\n', off);
  if (end < 0) {
    if (eof && buf.length > off)
      throw new Error(`truncated response head: ${JSON.stringify(buf.subarray(off).toString('latin1').slice(0, 200))}`);
    return undefined;
  }
  const headText = buf.subarray(off, end).toString('latin1');
  const lines = headText.split('\r\n');
  const m = /^(HTTP\/1\.[01]) (\d{3}) ?(.*)$/.exec(lines[0] ?? '');
  if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
  const headers = parseFields(lines.slice(1));
  const all = (name: string) => headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
  const status = Number(m[2]);
  let p = end + 4;
  let body = Buffer.alloc(0);
  let trailers: Array<[string, string]> = [];
  let framing: ParsedResponse['framing'];
  const te = all('transfer-encoding')[0];
  const cl = all('content-length')[0];
  if (noBody || status < 200 || status === 204 || status === 304) {
    framing = 'none';
  } else if (te !== undefined) {
    framing = 'chunked';
    const parts: Buffer[] = [];
    for (;;) {
      const le = buf.indexOf('\r\n', p);
      if (le < 0) return undefined;
      const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
      if (!Number.isFinite(size)) throw new Error('bad chunk size in response');
      p = le + 2;
      if (size === 0) {
        const tEnd = buf.indexOf('\r\n\r\n', p - 2);
        if (tEnd < 0) return undefined;
        trailers = parseFields(
          buf
            .subarray(p, tEnd + 2)
            .toString('latin1')
            .split('\r\n')
            .filter((l) => l.length > 0),
        );
        p = tEnd + 4;
        break;
      }
      if (buf.length < p + size + 2) return undefined;
      parts.push(buf.subarray(p, p + size));
      p += size + 2;
    }
    body = Buffer.concat(parts);
  } else if (cl !== undefined) {
    framing = 'length';
    const n = Number(cl);
    if (buf.length < p + n) return undefined;
    body = Buffer.from(buf.subarray(p, p + n));
    p += n;
  } else {
    framing = 'close';
    if (!eof) return undefined;
    body = Buffer.from(buf.subarray(p));
    p = buf.length;
  }
  const raw = Buffer.from(buf.subarray(off, p));
  const res: ParsedResponse = {
    version: m[1]!,
    status,
    reason: m[3] ?? '',
    headers,
    body,
    trailers,
    framing,
    raw,
    header: (n) => all(n)[0],
    headerAll: all,
    has: (n) => all(n).length > 0,
    get text() {
      return body.toString('latin1');
    },
  };
  return { res, next: p };
}

export interface ClientOptions {
  host?: string;
  /** Connect with TLS (options for tls.connect; host/port are filled in). */
  tls?: tls.ConnectionOptions;
}

/** A client connection that writes exact bytes and reads responses one at a time. */
export class RawClient {
  data = Buffer.alloc(0);
  private offset = 0;
  /** The peer sent FIN (or the socket closed). */
  ended = false;
  closed = false;
  /** A reset or other error on the socket. */
  error: Error | undefined;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('close', () => {
      this.ended = true;
      this.closed = true;
      this.wake();
    });
  }

  static connect(port: number, opts: ClientOptions = {}): Promise<RawClient> {
    const host = opts.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      const socket = opts.tls ? tls.connect({ ...opts.tls, host, port }) : net.connect({ host, port });
      const ready = opts.tls ? 'secureConnect' : 'connect';
      socket.once(ready, () => {
        socket.off('error', reject);
        resolve(new RawClient(socket));
      });
      socket.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves when `check` returns a value (re-checked on every socket event), or rejects after `ms`. */
  private until<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const run = () => {
        let v: T | undefined;
        try {
          v = check();
        } catch (err) {
          cleanup();
          reject(err as Error);
          return;
        }
        if (v !== undefined) {
          cleanup();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new TimeoutError(what, ms, `received ${JSON.stringify(this.data.subarray(this.offset).toString('latin1').slice(0, 300))}`));
      }, ms);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(run);
      };
      this.waiters.add(run);
      run();
    });
  }

  write(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /** Half-close: no more bytes from us. */
  end(): void {
    this.socket.end();
  }

  /** The next complete response (interim 1xx ones included). */
  readResponse(opts: { head?: boolean; timeoutMs?: number } = {}): Promise<ParsedResponse> {
    return this.until(
      () => {
        const r = parseResponse(this.data, this.offset, opts.head ?? false, this.ended);
        if (r) {
          this.offset = r.next;
          return r.res;
        }
        if (this.ended)
          throw new Error(
            `connection closed before a complete response; got ${JSON.stringify(this.data.subarray(this.offset).toString('latin1').slice(0, 300))}`,
          );
        return undefined;
      },
      opts.timeoutMs ?? 5000,
      'a response',
    );
  }

  /** `n` bytes after what was parsed so far (raw tunnel data). */
  readBytes(n: number, timeoutMs = 5000): Promise<Buffer> {
    return this.until(
      () => {
        if (this.data.length - this.offset >= n) {
          const out = Buffer.from(this.data.subarray(this.offset, this.offset + n));
          this.offset += n;
          return out;
        }
        if (this.ended) throw new Error(`closed after ${this.data.length - this.offset} of ${n} bytes`);
        return undefined;
      },
      timeoutMs,
      `${n} bytes`,
    );
  }

  /** Bytes received and not parsed yet. */
  unread(): Buffer {
    return this.data.subarray(this.offset);
  }

  /** Resolves once the peer has closed (FIN or reset). */
  waitEnded(timeoutMs = 5000): Promise<true> {
    return this.until(() => (this.ended ? true : undefined), timeoutMs, 'the connection to close');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export interface ExchangeResult {
  data: Buffer;
  text: string;
  /** The peer closed the connection within the time allowed. */
  closed: boolean;
  responses: ParsedResponse[];
}

/**
 * Connect, write `bytes` (one write, or several in order), then collect everything until the peer closes
 * or `timeoutMs` passes; parse the responses that came back.
 */
export async function rawExchange(
  port: number,
  bytes: string | Buffer | Array<string | Buffer>,
  opts: ClientOptions & { timeoutMs?: number; head?: boolean } = {},
): Promise<ExchangeResult> {
  const c = await RawClient.connect(port, opts);
  try {
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) c.write(b);
    let closed = true;
    try {
      await c.waitEnded(opts.timeoutMs ?? 3000);
    } catch (err) {
      if (!(err instanceof TimeoutError)) throw err;
      closed = false;
    }
    const responses: ParsedResponse[] = [];
    let off = 0;
    for (;;) {
      const r = parseResponse(c.data, off, opts.head ?? false, closed);
      if (!r) break;
      responses.push(r.res);
      off = r.next;
      if (off >= c.data.length) break;
    }
    return { data: c.data, text: c.data.toString('latin1'), closed, responses };
  } finally {
    c.destroy();
  }
}

/** One GET on a new connection (Connection: close), its response. */
export async function get(port: number, host: string, path = '/', extra = '', opts: ClientOptions = {}): Promise<ParsedResponse> {
  const c = await RawClient.connect(port, opts);
  try {
    c.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`);
    return await c.readResponse();
  } finally {
    c.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------
// The plane under test

export interface LogCapture {
  lines: Recorder<Record<string, unknown>>;
  logger: pino.Logger;
}

/** A pino logger whose JSON lines are kept (access log: `component: 'access'`). */
export function captureLogs(): LogCapture {
  const lines = new Recorder<Record<string, unknown>>();
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { lines, logger };
}

export type TableParts = Partial<Omit<Snapshot, 'provider'>>;

export interface PlaneHarness {
  plane: L7Plane;
  agg: Aggregator;
  table: RoutingTable;
  logs: LogCapture;
  /** The registry the plane's metrics are on (its own). */
  registry: Registry;
  /** Port of an entrypoint (default `web`). */
  port(entrypoint?: string): number;
  /** Publish new parts through the aggregator and apply the resulting table. */
  apply(parts: TableParts): RoutingTable;
}

/** Entrypoint `web` on 127.0.0.1:0 unless `parts.entrypoints` says otherwise. */
export async function startPlane(
  t: TestLike,
  parts: TableParts,
  options: Partial<L7Options> = {},
  engine?: 'uv' | 'net',
): Promise<PlaneHarness> {
  const agg = new Aggregator({ debounceMs: 0 });
  const withDefaults = (p: TableParts): Snapshot => snapshot('file', { entrypoints: { web: entrypointDef('web', '127.0.0.1:0') }, ...p });
  agg.update('file', 100, withDefaults(parts));
  const table = agg.flush();
  const logs = captureLogs();
  const registry = new prom.Registry();
  const plane = new L7Plane({
    logger: logs.logger,
    registry,
    options: { timerResolutionMs: 20, ...options },
    ...(engine ? { engine } : {}),
  });
  t.teardown(async () => {
    await plane.stop(0);
    agg.close();
  });
  await plane.start(table);
  const st = plane.status();
  if (st.state !== 'serving') throw new Error(`plane not serving: ${JSON.stringify(st)}`);
  const h: PlaneHarness = {
    plane,
    agg,
    table,
    logs,
    registry,
    port: (ep = 'web') => {
      const a = plane.address(ep);
      if (!a) throw new Error(`entrypoint ${ep} is not listening`);
      return a.port;
    },
    apply: (p) => {
      agg.update('file', 100, withDefaults(p));
      const next = agg.flush();
      plane.apply(next);
      h.table = next;
      return next;
    },
  };
  return h;
}

export { waitFor };
