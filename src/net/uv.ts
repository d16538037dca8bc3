/**
 * libuv TCP handles without net.Socket: the bindings `net` itself is written on (`tcp_wrap`,
 * `stream_wrap`), typed here, feature-detected once.
 *
 * Why: a forwarded connection through two net.Sockets costs ~170 µs of CPU on this class of machine, over
 * twice HAProxy's ~70 µs; most of the difference is the stream machinery (Readable/Writable state, nextTick
 * rounds, 'data'/'end'/'finish'/'close' events) that a byte pump does not need. Driving the handles directly
 * (accept → connect → readStart → writeBuffer → shutdown → close, as net.js does underneath) cuts that
 * roughly in half; see bench/l4.ts and bench/l7.ts. The same calls, argument orders and completion callbacks
 * net.js uses are used here, and nothing else. Shared by the L4 and L7 planes (neither imports the other).
 *
 * The bindings are reached through `process.binding()`, which Node documents as deprecated (DEP0111,
 * documentation-only; a runtime warning only under --pending-deprecation) but keeps on an allow-list that
 * includes these two modules. `available` is false if any piece is missing or behaves differently; the
 * engine then runs every connection on net.Socket.
 */
import util from 'node:util';

export interface UvReq {
  handle?: UvTcp;
  oncomplete?: (...args: never[]) => void;
  /** Keeps a buffer alive while an asynchronous write uses it. */
  buffer?: Uint8Array | null;
  [k: string]: unknown;
}

export interface UvTcp {
  // stream
  readStart(): number;
  readStop(): number;
  writeBuffer(req: UvReq, buf: Uint8Array): number;
  /** The string is copied by the binding when the write cannot complete at once: no need to keep it. */
  writeLatin1String(req: UvReq, s: string): number;
  shutdown(req: UvReq): number;
  useUserBuffer(buf: Uint8Array): void;
  /** `cb` is called with `this` = the handle, from libuv's close phase. */
  close(cb?: (this: UvTcp) => void): void;
  reset(cb?: () => void): number;
  setNoDelay(on: boolean): number;
  getpeername(out: Record<string, unknown>): number;
  getsockname(out: Record<string, unknown>): number;
  /** Called with `this` = the handle; bytes or error in `streamBaseState[kReadBytesOrError]`. */
  onread: ((this: UvTcp, ab: ArrayBuffer | undefined) => Uint8Array | undefined) | null;
  readonly writeQueueSize: number;
  // tcp
  connect(req: UvReq, address: string, port: number): number;
  connect6(req: UvReq, address: string, port: number): number;
  bind(address: string, port: number): number;
  bind6(address: string, port: number, flags: number): number;
  listen(backlog: number): number;
  onconnection: ((err: number, client: UvTcp | undefined) => void) | null;
  ref(): void;
  unref(): void;
  [k: symbol]: unknown;
}

interface Bindings {
  TCP: new (type: number) => UvTcp;
  TCPConnectWrap: new () => UvReq;
  WriteWrap: new () => UvReq;
  ShutdownWrap: new () => UvReq;
  SOCKET: number;
  SERVER: number;
  state: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
}

const METHODS = [
  'readStart',
  'readStop',
  'writeBuffer',
  'writeLatin1String',
  'shutdown',
  'useUserBuffer',
  'close',
  'reset',
  'setNoDelay',
  'getpeername',
  'getsockname',
  'connect',
  'connect6',
  'bind',
  'bind6',
  'listen',
];

function load(): Bindings | undefined {
  if (process.env.PORTICO_NO_UV === '1') return undefined; // every plane on net.Socket, for comparison
  try {
    const binding = (process as unknown as { binding?: (name: string) => Record<string, unknown> }).binding;
    if (typeof binding !== 'function') return undefined;
    const tcp = binding('tcp_wrap');
    const sw = binding('stream_wrap');
    const constants = tcp.constants as { SOCKET?: number; SERVER?: number } | undefined;
    const b: Bindings = {
      TCP: tcp.TCP as Bindings['TCP'],
      TCPConnectWrap: tcp.TCPConnectWrap as Bindings['TCPConnectWrap'],
      WriteWrap: sw.WriteWrap as Bindings['WriteWrap'],
      ShutdownWrap: sw.ShutdownWrap as Bindings['ShutdownWrap'],
      SOCKET: constants?.SOCKET as number,
      SERVER: constants?.SERVER as number,
      state: sw.streamBaseState as Int32Array,
      kReadBytesOrError: sw.kReadBytesOrError as number,
      kArrayBufferOffset: sw.kArrayBufferOffset as number,
      kLastWriteWasAsync: sw.kLastWriteWasAsync as number,
    };
    if (
      typeof b.TCP !== 'function' ||
      typeof b.TCPConnectWrap !== 'function' ||
      typeof b.WriteWrap !== 'function' ||
      typeof b.ShutdownWrap !== 'function'
    )
      return undefined;
    if (typeof b.SOCKET !== 'number' || typeof b.SERVER !== 'number' || !(b.state instanceof Int32Array)) return undefined;
    if (
      ![b.kReadBytesOrError, b.kArrayBufferOffset, b.kLastWriteWasAsync].every((k) => Number.isInteger(k) && k >= 0 && k < b.state.length)
    )
      return undefined;
    const probe = new b.TCP(b.SOCKET);
    const ok = METHODS.every((m) => typeof (probe as unknown as Record<string, unknown>)[m] === 'function');
    probe.close();
    return ok ? b : undefined;
  } catch {
    return undefined;
  }
}

const B = load();

/** Whether the handle engine can run on this Node. */
export const available = B !== undefined;

function bindings(): Bindings {
  if (!B) throw new Error('libuv TCP bindings are not available on this Node');
  return B;
}

/** libuv's end-of-stream code (UV_EOF). */
export const UV_EOF = -4095;

/** libuv's code for ENOTCONN on this platform (0 if it has none). */
export const UV_ENOTCONN = errCode('ENOTCONN');

function errCode(name: string): number {
  for (const [code, [n]] of util.getSystemErrorMap()) if (n === name) return code;
  return 0;
}

/** bind6 flag: IPv6 only (no IPv4-mapped connections on a `::` listener). */
export const UV_TCP_IPV6ONLY = 1;

export function newSocket(): UvTcp {
  const b = bindings();
  return new b.TCP(b.SOCKET);
}

export function newServer(): UvTcp {
  const b = bindings();
  return new b.TCP(b.SERVER);
}

export const newWriteReq = (): UvReq => new (bindings().WriteWrap)();
export const newShutdownReq = (): UvReq => new (bindings().ShutdownWrap)();
export const newConnectReq = (): UvReq => new (bindings().TCPConnectWrap)();

/** In `onread`: bytes read (> 0), 0 (nothing, ignore), UV_EOF, or a negative libuv error. */
export function readResult(): number {
  return (B as Bindings).state[(B as Bindings).kReadBytesOrError] as number;
}

/** In `onread` without a user buffer: where the bytes start in the ArrayBuffer. */
export function readOffset(): number {
  return (B as Bindings).state[(B as Bindings).kArrayBufferOffset] as number;
}

/** Right after a write call: whether the write is still in progress (the buffer must stay untouched). */
export function lastWriteWasAsync(): boolean {
  return (B as Bindings).state[(B as Bindings).kLastWriteWasAsync] !== 0;
}

/** A libuv error code as an Error with the usual `code` (`ECONNREFUSED`) and `syscall`. */
export function uvError(err: number, syscall: string): NodeJS.ErrnoException {
  const code = errName(err);
  const e: NodeJS.ErrnoException = new Error(`${syscall} ${code}`);
  e.code = code;
  e.errno = err;
  e.syscall = syscall;
  return e;
}

export function errName(err: number): string {
  try {
    return util.getSystemErrorName(err);
  } catch {
    return `UV_${err}`;
  }
}

/** `{address, port}` of a handle's peer or own end; empty on error. */
export function peer(h: UvTcp, own = false): { address: string; port: number } {
  const out: Record<string, unknown> = {};
  const err = own ? h.getsockname(out) : h.getpeername(out);
  if (err) return { address: '', port: 0 };
  return { address: String(out.address ?? ''), port: Number(out.port ?? 0) };
}
