/**
 * Where the data planes get their listening sockets: one interface, `SocketSource`, with a source that
 * binds in this process (`DIRECT`, what a single-process `portico up` does) and a pair that lets several
 * worker processes serve the same listeners (`BrokeredSockets` in each worker, `SocketBroker` in the
 * supervisor that forked them).
 *
 * Why a broker: Node 20's net has no SO_REUSEPORT, so N processes cannot each bind one port. The
 * supervisor binds the socket once and hands the bound descriptor to every worker over the fork IPC
 * channel (child_process `send(msg, handle)` with a raw TCPWrap / UDPWrap, which Node types 'net.Native' /
 * 'dgram.Native'); each worker listens on its copy, and the kernel gives each connection to one of them
 * (the shape of Node's own cluster in its "shared handle" mode, and of HAProxy's master-worker). The
 * supervisor never listens, polls or reads on its copy; it keeps it while the listener exists, so a
 * worker that dies and is replaced leaves connections queued in the kernel's backlog instead of refused.
 *
 * A TCP handle from `tcp()` is listening already, with a placeholder `onconnection` that closes what it
 * is given. Its caller sets its own `onconnection` (or hands the handle to `net.Server#listen(handle)`,
 * which sets it) right after the await, before anything else is awaited: libuv only accepts when the
 * event loop polls, and every continuation of a resolved promise runs before that, so no connection
 * reaches the placeholder. A UDP handle from `udp()` is bound and not reading; `bindDgram()` gives it to a
 * dgram.Socket (dgram's bind() takes a UDP wrap and starts reading on it).
 *
 * Errors are Node's errno errors (`code`, `errno`, `syscall` 'bind' or 'listen', `address`, `port`) with
 * the message `<syscall> <CODE> <host:port>`; `netMessage`/`dgramMessage` give the words net.Server and
 * dgram used for the same failure, so a plane's messages read as they did before it took its sockets
 * from a source. A worker gets the supervisor's error rebuilt with the same fields.
 *
 * Raw handles come from `process.binding('tcp_wrap' | 'udp_wrap')` (the bindings net and dgram are
 * written on; see uv.ts for why that is acceptable), found once here whatever PORTICO_NO_UV says: a
 * listening handle is handed to net.Server as readily as to the libuv engine.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import util from 'node:util';
import { formatListen } from '../model/parse.js';
import type { Logger } from '../telemetry/log.js';
import type { UvTcp } from './uv.js';

// ---------------------------------------------------------------------------------------------------
// The interface

export type SocketKind = 'tcp' | 'udp4' | 'udp6';

/** A socket as it was asked for: the requested port (0: any), and the listener it is for. */
export interface SocketSpec {
  readonly kind: SocketKind;
  readonly host: string;
  readonly port: number;
  /**
   * The listener's stable name (`l7 <entrypoint>`, `l4 <vip key>`, `dns`): with port 0, every worker
   * asking for the same name gets the same socket, and two names get two sockets.
   */
  readonly name: string;
}

/** A libuv UDP handle (udp_wrap's UDP): what dgram.Socket is written on. */
export interface UvUdp {
  bind(address: string, port: number, flags: number): number;
  bind6(address: string, port: number, flags: number): number;
  getsockname(out: Record<string, unknown>): number;
  recvStart(): number;
  recvStop(): number;
  close(cb?: () => void): void;
  [k: string]: unknown;
}

export interface Bound<H> {
  handle: H;
  /** Where it is bound (port 0 asked: the port the kernel chose). */
  address: string;
  port: number;
  /** What was asked for: give it to `release()`. */
  spec: SocketSpec;
}

export interface SocketSource {
  /** A TCP server handle bound to host:port and listening (see the header on setting `onconnection`). */
  tcp(host: string, port: number, backlog: number, name: string): Promise<Bound<UvTcp>>;
  /** A UDP handle bound to host:port, not reading yet (`bindDgram()` makes a dgram.Socket of it). */
  udp(type: 'udp4' | 'udp6', host: string, port: number, name: string): Promise<Bound<UvUdp>>;
  /** The listener is closed for good (its handle is closed by the caller): the socket may go. */
  release(spec: SocketSpec): void;
}

// ---------------------------------------------------------------------------------------------------
// The bindings

interface Wraps {
  TCP: new (type: number) => UvTcp;
  SERVER: number;
  UDP: new () => UvUdp;
}

function loadWraps(): Wraps | undefined {
  try {
    const binding = (process as unknown as { binding?: (name: string) => Record<string, unknown> }).binding;
    if (typeof binding !== 'function') return undefined;
    const tcp = binding('tcp_wrap');
    const udp = binding('udp_wrap');
    const w: Wraps = {
      TCP: tcp.TCP as Wraps['TCP'],
      SERVER: (tcp.constants as { SERVER?: number } | undefined)?.SERVER as number,
      UDP: udp.UDP as Wraps['UDP'],
    };
    if (typeof w.TCP !== 'function' || typeof w.UDP !== 'function' || typeof w.SERVER !== 'number') return undefined;
    const t = new w.TCP(w.SERVER);
    const tcpOk = ['bind', 'bind6', 'listen', 'getsockname', 'close'].every(
      (m) => typeof (t as unknown as Record<string, unknown>)[m] === 'function',
    );
    t.close();
    const u = new w.UDP();
    const udpOk = ['bind', 'bind6', 'getsockname', 'recvStart', 'close'].every((m) => typeof u[m] === 'function');
    u.close();
    return tcpOk && udpOk ? w : undefined;
  } catch {
    return undefined;
  }
}

const W = loadWraps();

/** Whether this Node lets us make raw TCP/UDP handles (needed by every source here). */
export const available = W !== undefined;

function unavailable(): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error('listening sockets: the tcp_wrap/udp_wrap bindings are not available on this Node');
  e.code = 'ENOSYS';
  return e;
}

// ---------------------------------------------------------------------------------------------------
// Errors

function errnoOf(code: string): number {
  for (const [errno, [name]] of util.getSystemErrorMap()) if (name === code) return errno;
  return 0;
}

function codeOf(errno: number): string {
  try {
    return util.getSystemErrorName(errno);
  } catch {
    return `UV_${errno}`;
  }
}

/** A failed bind or listen as an errno error: `bind EADDRINUSE 127.0.0.1:80`. */
export function listenError(errno: number, syscall: string, host: string, port: number, code = codeOf(errno)): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException & { address?: string; port?: number } = new Error(`${syscall} ${code} ${formatListen({ host, port })}`);
  e.code = code;
  e.errno = errno;
  e.syscall = syscall;
  e.address = host;
  e.port = port;
  return e;
}

type ListenFailure = NodeJS.ErrnoException & { address?: string; port?: number };

function details(err: ListenFailure): string {
  if (err.port && err.port > 0) return ` ${err.address}:${err.port}`;
  return err.address ? ` ${err.address}` : '';
}

/** The message net.Server#listen gave for the failure: `listen EADDRINUSE: address already in use 127.0.0.1:80`. */
export function netMessage(err: ListenFailure): string {
  if (!err.code || err.errno === undefined) return err.message;
  const text = util.getSystemErrorMap().get(err.errno)?.[1] ?? 'unknown error';
  return `listen ${err.code}: ${text}${details(err)}`;
}

/** The message dgram.Socket#bind gave for the failure: `bind EADDRINUSE 127.0.0.1:53`. */
export function dgramMessage(err: ListenFailure): string {
  if (!err.code || err.errno === undefined) return err.message;
  return `${err.syscall ?? 'bind'} ${err.code}${details(err)}`;
}

// ---------------------------------------------------------------------------------------------------
// Making sockets (DIRECT binds and listens; the broker only binds)

/** Until the caller sets its own: a connection that reaches this was accepted too early, and is closed. */
function placeholder(this: UvTcp, _err: number, client: UvTcp | undefined): void {
  client?.close();
}

function bindTcp(host: string, port: number): UvTcp | NodeJS.ErrnoException {
  if (!W) return unavailable();
  const h = new W.TCP(W.SERVER);
  h.onconnection = placeholder;
  const err = net.isIPv6(host) ? h.bind6(host, port, 0) : h.bind(host, port);
  if (err) {
    h.close();
    return listenError(err, 'bind', host, port);
  }
  if (sockname(h).port === 0) {
    // libuv keeps EADDRINUSE from bind() for listen() to report (as net does: `listen EADDRINUSE`), and
    // the socket stays unbound: a worker's listen() on a copy of it would take an ephemeral port.
    h.close();
    return listenError(errnoOf('EADDRINUSE'), 'listen', host, port, 'EADDRINUSE');
  }
  return h;
}

/** listen() on a bound handle; closes it and gives the error on failure. */
function listenTcp(h: UvTcp, backlog: number, host: string, port: number): NodeJS.ErrnoException | undefined {
  if (typeof h.onconnection !== 'function') h.onconnection = placeholder;
  const err = h.listen(backlog);
  if (!err) return undefined;
  h.close();
  return listenError(err, 'listen', host, port);
}

function bindUdp(type: 'udp4' | 'udp6', host: string, port: number): UvUdp | NodeJS.ErrnoException {
  if (!W) return unavailable();
  const h = new W.UDP();
  const err = type === 'udp6' ? h.bind6(host, port, 0) : h.bind(host, port, 0);
  if (err) {
    h.close();
    return listenError(err, 'bind', host, port);
  }
  return h;
}

function sockname(h: { getsockname(out: Record<string, unknown>): number }): { address: string; port: number } {
  const out: Record<string, unknown> = {};
  if (h.getsockname(out)) return { address: '', port: 0 };
  return { address: String(out.address ?? ''), port: Number(out.port ?? 0) };
}

/** Binds and listens in this process, as every plane did before there were workers. */
export const DIRECT: SocketSource = Object.freeze({
  tcp(host: string, port: number, backlog: number, name: string): Promise<Bound<UvTcp>> {
    const h = bindTcp(host, port);
    if (h instanceof Error) return Promise.reject(h);
    const err = listenTcp(h, backlog, host, port);
    if (err) return Promise.reject(err);
    return Promise.resolve({ handle: h, ...sockname(h), spec: { kind: 'tcp', host, port, name } });
  },
  udp(type: 'udp4' | 'udp6', host: string, port: number, name: string): Promise<Bound<UvUdp>> {
    const h = bindUdp(type, host, port);
    if (h instanceof Error) return Promise.reject(h);
    return Promise.resolve({ handle: h, ...sockname(h), spec: { kind: type, host, port, name } });
  },
  release(): void {
    // the caller closed the handle, which was the socket
  },
});

/**
 * Give a bound UDP handle to `sock` (made with dgram.createSocket of the same type, not bound): dgram's
 * bind() takes a UDP wrap in place of a port, adopts it and starts reading. Resolves on 'listening'.
 */
export function bindDgram(sock: dgram.Socket, handle: UvUdp): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    sock.once('error', onError);
    (sock.bind as unknown as (h: UvUdp, cb: () => void) => void)(handle, () => {
      sock.off('error', onError);
      resolve();
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// Messages between a worker and the supervisor

export interface ListenRequest {
  t: 'listen';
  id: number;
  kind: SocketKind;
  host: string;
  port: number;
  /** TCP: the worker listens with it (the supervisor does not listen). */
  backlog?: number;
  name: string;
}

export interface ReleaseRequest {
  t: 'release';
  kind: SocketKind;
  host: string;
  port: number;
  name: string;
}

/** Sent with the handle. */
export interface ListenOk {
  t: 'listen-ok';
  id: number;
  address: string;
  port: number;
}

export interface ListenErr {
  t: 'listen-err';
  id: number;
  code: string;
  message: string;
  errno?: number;
  syscall?: string;
}

export type BrokerReply = ListenOk | ListenErr;

/** The IPC channel to the supervisor: `process` in a forked worker fits. */
export interface BrokerChannel {
  send?(msg: unknown, handle?: unknown): unknown;
  /** false once the channel closed (sending then would only raise an error event). */
  readonly connected?: boolean;
  on(event: 'message', listener: (msg: unknown, handle: unknown) => void): unknown;
  /** The channel closed: requests still waiting are refused. */
  on(event: 'disconnect', listener: () => void): unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

const KINDS: ReadonlySet<string> = new Set<SocketKind>(['tcp', 'udp4', 'udp6']);

function keyOf(kind: SocketKind, host: string, port: number, name: string): string {
  // Port 0 is "any": per listener, so every worker of one listener gets the one socket the kernel chose.
  return port === 0 ? `${kind} ${formatListen({ host, port })}#${name}` : `${kind} ${formatListen({ host, port })}`;
}

// ---------------------------------------------------------------------------------------------------
// Worker side

interface Pending {
  spec: SocketSpec;
  backlog: number;
  resolve: (b: Bound<UvTcp> | Bound<UvUdp>) => void;
  reject: (err: Error) => void;
}

/**
 * A worker's source: asks the supervisor for each socket over `channel` and listens on the copy it is
 * sent. Messages on the channel that are not answers to its requests are left to other listeners.
 */
export class BrokeredSockets implements SocketSource {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly channel: BrokerChannel) {
    channel.on('message', (msg, handle) => this.onMessage(msg, handle));
    channel.on('disconnect', () => {
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(
          new Error(
            `listening sockets: the channel to the supervisor closed before it answered for ${p.spec.kind} ${formatListen(p.spec)}`,
          ),
        );
      }
    });
  }

  tcp(host: string, port: number, backlog: number, name: string): Promise<Bound<UvTcp>> {
    return this.request({ kind: 'tcp', host, port, name }, backlog) as Promise<Bound<UvTcp>>;
  }

  udp(type: 'udp4' | 'udp6', host: string, port: number, name: string): Promise<Bound<UvUdp>> {
    return this.request({ kind: type, host, port, name }, 0) as Promise<Bound<UvUdp>>;
  }

  release(spec: SocketSpec): void {
    // Without a supervisor there is nobody to tell (it closed its copies when it went).
    if (this.channel.connected === false || typeof this.channel.send !== 'function') return;
    const msg: ReleaseRequest = { t: 'release', kind: spec.kind, host: spec.host, port: spec.port, name: spec.name };
    this.send(msg);
  }

  private request(spec: SocketSpec, backlog: number): Promise<Bound<UvTcp> | Bound<UvUdp>> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const msg: ListenRequest = { t: 'listen', id, kind: spec.kind, host: spec.host, port: spec.port, name: spec.name };
      if (spec.kind === 'tcp') msg.backlog = backlog;
      this.pending.set(id, { spec, backlog, resolve, reject });
      try {
        this.send(msg);
      } catch (err) {
        this.pending.delete(id);
        reject(err as Error);
      }
    });
  }

  private send(msg: ListenRequest | ReleaseRequest): void {
    if (typeof this.channel.send !== 'function' || this.channel.connected === false)
      throw new Error('listening sockets: this process has no IPC channel to a supervisor');
    this.channel.send(msg);
  }

  private onMessage(msg: unknown, handle: unknown): void {
    if (!isRecord(msg) || (msg.t !== 'listen-ok' && msg.t !== 'listen-err') || typeof msg.id !== 'number') return;
    const p = this.pending.get(msg.id);
    if (!p) {
      // An answer nobody waits for (cannot happen in order): do not keep its copy open.
      if (isRecord(handle) && typeof handle.close === 'function') (handle as { close(): void }).close();
      return;
    }
    this.pending.delete(msg.id);
    const { spec } = p;
    if (msg.t === 'listen-err') {
      const code = typeof msg.code === 'string' ? msg.code : 'EUNKNOWN';
      const errno = typeof msg.errno === 'number' ? msg.errno : errnoOf(code);
      const e = listenError(errno, typeof msg.syscall === 'string' ? msg.syscall : 'bind', spec.host, spec.port, code);
      if (typeof msg.message === 'string') e.message = msg.message;
      p.reject(e);
      return;
    }
    const address = typeof msg.address === 'string' ? msg.address : '';
    const port = typeof msg.port === 'number' ? msg.port : 0;
    if (spec.kind === 'tcp') {
      const h = handle as UvTcp | undefined;
      if (!isRecord(h) || typeof h.listen !== 'function') {
        this.release(spec);
        p.reject(new Error(`listening sockets: the supervisor's answer for tcp ${formatListen(spec)} came without a TCP handle`));
        return;
      }
      // Listen now, in the callback that delivered the handle: the caller's continuation runs before the
      // loop polls again, so it sets onconnection before any accept.
      const err = listenTcp(h, p.backlog, spec.host, spec.port);
      if (err) {
        this.release(spec);
        p.reject(err);
        return;
      }
      p.resolve({ handle: h, address, port, spec });
      return;
    }
    const u = handle as UvUdp | undefined;
    if (!isRecord(u) || typeof u.recvStart !== 'function') {
      this.release(spec);
      p.reject(new Error(`listening sockets: the supervisor's answer for ${spec.kind} ${formatListen(spec)} came without a UDP handle`));
      return;
    }
    p.resolve({ handle: u, address, port, spec });
  }
}

// ---------------------------------------------------------------------------------------------------
// Supervisor side

interface Held {
  key: string;
  kind: SocketKind;
  handle: UvTcp | UvUdp;
  address: string;
  port: number;
  /** The workers holding a copy, each with the listener name it asked for. */
  holders: Map<number, string>;
}

export interface HeldSocket {
  key: string;
  address: string;
  port: number;
  holders: number[];
}

/**
 * The supervisor's side: binds each socket the first time a worker asks for it, sends every worker that
 * asks a copy, and keeps its own copy until the last worker holding it releases it. A worker that dies
 * is forgotten (`forget`) but its sockets are kept, so its replacement gets the same ones and the
 * connections queued meanwhile; `prune()` closes what no live worker holds when no replacement is coming.
 */
export class SocketBroker {
  private readonly held = new Map<string, Held>();
  private readonly log: Logger | undefined;

  constructor(opts: { logger?: Logger } = {}) {
    this.log = opts.logger?.child({ component: 'sockets' });
  }

  /**
   * A message from worker `worker`: a listen request is answered through `reply` (with the handle on
   * success: wire it to `child.send(msg, handle)`), a release is taken. Returns whether the message was
   * one of these (others are the caller's).
   */
  handle(worker: number, msg: unknown, reply: (msg: BrokerReply, handle?: unknown) => void): boolean {
    if (!isRecord(msg)) return false;
    if (msg.t === 'listen') {
      this.listen(worker, msg, reply);
      return true;
    }
    if (msg.t === 'release') {
      if (KINDS.has(msg.kind as string) && typeof msg.host === 'string' && typeof msg.port === 'number' && typeof msg.name === 'string')
        this.release(worker, keyOf(msg.kind as SocketKind, msg.host, msg.port, msg.name));
      return true;
    }
    return false;
  }

  /** Worker `worker` is gone: it holds nothing now. Its sockets stay open for a replacement. */
  forget(worker: number): void {
    for (const h of this.held.values()) h.holders.delete(worker);
  }

  /** Close the sockets no worker holds (after `forget` of a worker that will not be replaced). */
  prune(): number {
    let n = 0;
    for (const h of [...this.held.values()]) {
      if (h.holders.size > 0) continue;
      this.drop(h);
      n++;
    }
    return n;
  }

  /** Close every socket (the supervisor is stopping). */
  close(): void {
    for (const h of [...this.held.values()]) this.drop(h);
  }

  /** The sockets held now, by key (diagnostics, tests). */
  sockets(): HeldSocket[] {
    return [...this.held.values()].map((h) => ({
      key: h.key,
      address: h.address,
      port: h.port,
      holders: [...h.holders.keys()].sort((a, b) => a - b),
    }));
  }

  private listen(worker: number, msg: Record<string, unknown>, reply: (msg: BrokerReply, handle?: unknown) => void): void {
    const id = typeof msg.id === 'number' ? msg.id : -1;
    const fail = (e: NodeJS.ErrnoException): void =>
      reply({
        t: 'listen-err',
        id,
        code: e.code ?? 'EINVAL',
        message: e.message,
        ...(e.errno !== undefined ? { errno: e.errno } : {}),
        ...(e.syscall ? { syscall: e.syscall } : {}),
      });
    const { kind, host, port, name } = msg;
    if (
      !KINDS.has(kind as string) ||
      typeof host !== 'string' ||
      net.isIP(host) === 0 ||
      typeof port !== 'number' ||
      !Number.isInteger(port) ||
      port < 0 ||
      port > 65535 ||
      typeof name !== 'string'
    ) {
      fail(listenError(errnoOf('EINVAL'), 'bind', String(host), Number(port) || 0, 'EINVAL'));
      return;
    }
    const k = kind as SocketKind;
    const key = keyOf(k, host, port, name);
    let h = this.held.get(key);
    if (h?.holders.has(worker)) {
      // A second listener on it in one worker: what a second bind in one process would say.
      fail(listenError(errnoOf('EADDRINUSE'), 'bind', host, port, 'EADDRINUSE'));
      return;
    }
    if (!h) {
      const made = k === 'tcp' ? bindTcp(host, port) : bindUdp(k, host, port);
      if (made instanceof Error) {
        this.log?.warn({ socket: key, worker, err: made.message }, 'sockets: cannot bind');
        fail(made);
        return;
      }
      h = { key, kind: k, handle: made, ...sockname(made), holders: new Map() };
      this.held.set(key, h);
      this.log?.info({ socket: key, address: formatListen({ host: h.address, port: h.port }), worker }, 'sockets: bound');
    }
    h.holders.set(worker, name);
    const ok: ListenOk = { t: 'listen-ok', id, address: h.address, port: h.port };
    reply(ok, h.handle);
  }

  private release(worker: number, key: string): void {
    const h = this.held.get(key);
    if (!h || !h.holders.delete(worker)) return;
    if (h.holders.size === 0) this.drop(h);
  }

  private drop(h: Held): void {
    this.held.delete(h.key);
    h.handle.close();
    this.log?.info({ socket: h.key }, 'sockets: closed');
  }
}
