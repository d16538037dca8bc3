/**
 * Reading a net.Socket into a reused buffer: what `net.connect({ onread })` offers, for every socket.
 *
 * Node's ordinary read path allocates a 64 KiB backing store per read, shrinks it, wraps it in a Buffer
 * and emits 'data': at tens of Gbit/s that is a proxy's main cost after the syscalls. `onread` replaces
 * it with one user buffer per socket and a callback — but only sockets made by `net.connect` can ask for
 * it, and accepted sockets are half of every forwarded byte. So this module turns the same mechanism on
 * for any connected socket: it sets the fields `onread` sets (Node keeps them under the symbols
 * `kBuffer`, `kBufferCb`, `kBufferGen` on every net.Socket) and tells the handle to read into the buffer
 * (`useUserBuffer`, the call `onread` makes). Node ≥ 12.
 *
 * With a user buffer, `socket.pause()` stops the handle reading at once and `socket.resume()` starts it
 * again (net.Socket does this for `onread` sockets); 'end', 'error' and 'close' are emitted as before.
 * `available` is false if this Node does not have those fields; callers then stay on the ordinary path.
 */
import net from 'node:net';

interface SocketInternals {
  _handle: { useUserBuffer?: (b: Buffer) => void; reading?: boolean } | null;
  [k: symbol]: unknown;
}

function find(desc: string): symbol | undefined {
  const probe = new net.Socket();
  const s = Object.getOwnPropertySymbols(probe).find((x) => x.description === desc);
  probe.destroy();
  return s;
}

const kBuffer = find('kBuffer');
const kBufferCb = find('kBufferCb');
const kBufferGen = find('kBufferGen');

export const available = kBuffer !== undefined && kBufferCb !== undefined && kBufferGen !== undefined;

/**
 * From the next read on, read `socket` into `buffer`, every time, and call `onRead` (with `this` = the
 * socket) with the number of bytes read instead of emitting 'data'. Returns false (and changes nothing)
 * when it cannot be done: the caller stays on 'data'.
 */
export function useUserBuffer(socket: net.Socket, buffer: Buffer, onRead: (this: net.Socket, nread: number, buf: Buffer) => void): boolean {
  if (!available) return false;
  const s = socket as unknown as SocketInternals;
  const handle = s._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function' || socket.destroyed) return false;
  s[kBuffer as symbol] = buffer;
  s[kBufferCb as symbol] = onRead;
  // No generator: every read goes into the same buffer (the handle keeps the one given here).
  s[kBufferGen as symbol] = null;
  handle.useUserBuffer(buffer);
  return true;
}
