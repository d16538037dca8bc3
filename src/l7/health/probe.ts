/**
 * One health probe over a raw `net` socket: a TCP connect check, or a minimal HTTP/1.1 GET whose status
 * line is read and compared with the accepted range. Nothing else of the response is read; the socket
 * is destroyed as soon as the verdict is known. Every probe ends exactly once, with a closed-set reason.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * - `ok`: connected (TCP) or a status in range (HTTP).
 * - `connect`: the connection failed (refused, unreachable, reset before any response).
 * - `timeout`: no verdict within `timeoutMs` (connect or status line).
 * - `status`: an HTTP status outside the accepted range.
 * - `protocol`: the response does not start with an HTTP/1.x status line.
 * - `closed`: the peer closed before sending a status line.
 * - `cancelled`: stopped by the checker (endpoint removed); never counted.
 */
export type ProbeReason = 'ok' | 'connect' | 'timeout' | 'status' | 'protocol' | 'closed' | 'cancelled';

export interface ProbeResult {
  ok: boolean;
  reason: ProbeReason;
  /** HTTP status, when one was read. */
  status?: number;
  /** Duration, ms. */
  ms: number;
  /** The socket error's code or message, for `connect`. */
  error?: string;
}

export interface ProbeTarget {
  address: string;
  port: number;
  /** Absent: TCP connect check. */
  httpPath?: string;
  /** Accepted statuses, inclusive. */
  expectStatus: [number, number];
  timeoutMs: number;
  /** Host header value; default `address:port`. */
  host?: string;
}

export interface ProbeHandle {
  cancel(): void;
}

/** Longest status line we wait for before calling the response garbage. */
const MAX_STATUS_LINE = 1024;
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?:[ \r]|$)/;

export type ProbeFn = (target: ProbeTarget, done: (r: ProbeResult) => void) => ProbeHandle;

export const probe: ProbeFn = (target, done) => {
  const started = performance.now();
  let finished = false;
  let connected = false;
  let head = '';
  const socket = net.connect({ host: target.address, port: target.port });
  socket.setNoDelay(true);

  const finish = (ok: boolean, reason: ProbeReason, status?: number, error?: string): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeAllListeners('data');
    socket.on('error', () => {}); // errors after the verdict are of no interest
    socket.destroy();
    const r: ProbeResult = { ok, reason, ms: performance.now() - started };
    if (status !== undefined) r.status = status;
    if (error !== undefined) r.error = error;
    if (reason !== 'cancelled') done(r);
  };

  const timer = setTimeout(() => finish(false, 'timeout'), target.timeoutMs);
  timer.unref();

  socket.once('connect', () => {
    connected = true;
    if (target.httpPath === undefined) {
      finish(true, 'ok');
      return;
    }
    const host = target.host ?? (target.address.includes(':') ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`);
    socket.write(
      `GET ${target.httpPath} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\nUser-Agent: portico-health\r\nAccept: */*\r\n\r\n`,
    );
  });
  socket.on('data', (chunk: Buffer) => {
    head += chunk.toString('latin1');
    const nl = head.indexOf('\n');
    if (nl < 0) {
      if (head.length > MAX_STATUS_LINE) finish(false, 'protocol');
      return;
    }
    const m = STATUS_LINE.exec(head.slice(0, nl));
    if (!m) {
      finish(false, 'protocol');
      return;
    }
    const status = Number(m[1]);
    const [lo, hi] = target.expectStatus;
    finish(status >= lo && status <= hi, status >= lo && status <= hi ? 'ok' : 'status', status);
  });
  socket.once('error', (err: NodeJS.ErrnoException) => finish(false, connected ? 'closed' : 'connect', undefined, err.code ?? err.message));
  socket.once('close', () => finish(false, connected ? 'closed' : 'connect'));

  return { cancel: () => finish(false, 'cancelled') };
};
