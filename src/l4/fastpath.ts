/**
 * Reading a socket into a reused buffer: what `net.connect({ onread })` offers, for every socket.
 *
 * Node's ordinary read path allocates a 64 KiB backing store per read, shrinks it, wraps it in a Buffer
 * and emits 'data': at tens of Gbit/s that is the proxy's main cost after the syscalls. `onread` replaces
 * it with one user buffer per socket and a callback — but only sockets made by `net.connect` can ask for
 * it, and accepted (client) sockets are half of every forwarded byte. So this module turns the same
 * mechanism on for any connected socket: it sets the three fields `onread` sets (Node keeps them under
 * the symbols `kBuffer`, `kBufferCb`, `kBufferGen` on every net.Socket) and tells the handle to read into
 * the buffer (`useUserBuffer`, the call `onread` makes). Node ≥ 12.
 *
 * `available` is false if this Node does not have those fields; callers then stay on the ordinary path.
 * The buffer generator runs after every read: returning a fresh buffer there is how a caller whose last
 * write still references the old one (the write did not complete at once) avoids it being overwritten.
 */
import net from 'node:net';

interface SocketInternals {
  _handle: { useUserBuffer?: (b: Buffer) => void; reading?: boolean } | null;
  _read(n: number): void;
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

export const available =
  kBuffer !== undefined &&
  kBufferCb !== undefined &&
  kBufferGen !== undefined &&
  typeof (net.Socket.prototype as unknown as SocketInternals)._read === 'function';

/**
 * From the next read on, read `socket` into `buffer` and call `onRead(nread, buffer)` instead of emitting
 * 'data'. `onRead` returning false stops reading (resume with `resumeUserBuffer`). After each read,
 * `next()` gives the buffer for the following read. 'end', 'error' and 'close' are emitted as before.
 * Returns false (and changes nothing) when it cannot be done.
 */
export function useUserBuffer(
  socket: net.Socket,
  buffer: Buffer,
  onRead: (nread: number, buf: Buffer) => boolean,
  next: () => Buffer,
): boolean {
  if (!available) return false;
  const s = socket as unknown as SocketInternals;
  const handle = s._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function' || socket.destroyed) return false;
  s[kBuffer as symbol] = buffer;
  s[kBufferCb as symbol] = onRead;
  s[kBufferGen as symbol] = next;
  handle.useUserBuffer(buffer);
  return true;
}

/** Start reading again a user-buffer socket whose callback returned false. */
export function resumeUserBuffer(socket: net.Socket): void {
  const s = socket as unknown as SocketInternals;
  if (s._handle && !s._handle.reading && !socket.destroyed) s._read(0);
}
