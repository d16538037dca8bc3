/**
 * Bounded waits for tests. Tests wait on what they are waiting for (an event, a line of output, a
 * condition) with a deadline, never on a fixed sleep; a timeout rejects with what was awaited, so a
 * failure says what did not happen instead of hanging until tap's file timeout.
 */
import dgram from 'node:dgram';
import type { EventEmitter } from 'node:events';
import type { Writable } from 'node:stream';

export class TimeoutError extends Error {
  constructor(what: string, ms: number, detail = '') {
    super(`timed out after ${ms} ms waiting for ${what}${detail ? `; ${detail}` : ''}`);
    this.name = 'TimeoutError';
  }
}

/** `p`, or a TimeoutError after `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** The next `event` from `emitter` (its arguments), or a TimeoutError after `ms`. */
export function once<T extends unknown[] = unknown[]>(emitter: EventEmitter, event: string, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const handler = (...args: unknown[]) => {
      clearTimeout(timer);
      resolve(args as T);
    };
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new TimeoutError(`'${event}'`, ms));
    }, ms);
    emitter.once(event, handler);
  });
}

export interface WaitForOptions {
  timeoutMs: number;
  /** Described in the timeout error. */
  what: string;
  /** How often to re-check, for conditions nothing signals (a deadline passing, a reconnect). */
  intervalMs?: number;
}

/**
 * Re-check `check` until it returns something other than undefined/false (sync or async; a throw counts
 * as "not yet" and is reported on timeout). For conditions with no event to wait on.
 */
export async function waitFor<T>(check: () => T | undefined | false | Promise<T | undefined | false>, opts: WaitForOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      throw new TimeoutError(opts.what, opts.timeoutMs, lastErr ? `last error: ${(lastErr as Error).message}` : '');
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}

/**
 * Resolves once `stream` has handed `chunk` to the kernel (the write callback), so that a loopback peer
 * can read it. Rejects with the write error.
 */
export function written(stream: Writable, chunk: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => stream.write(chunk, (err) => (err ? reject(err) : resolve())));
}

/**
 * Resolves after this process's event loop has polled for I/O at least twice: a datagram goes from one
 * loopback UDP socket to another and back. A socket of this process that was readable when it was called
 * (bytes already written to an in-process server, see written()) has had its data read by then: the poll
 * that reports the first hop reports that socket too, and the loop runs every callback of a poll before it
 * polls again, which the second hop needs. Tests use it so that an in-process server reads one piece of a
 * message before the next is written (a message split over several reads), instead of sleeping.
 */
export async function ioRoundTrip(timeoutMs = 2_000): Promise<void> {
  const a = dgram.createSocket('udp4');
  const b = dgram.createSocket('udp4');
  try {
    await Promise.all([new Promise<void>((r) => a.bind(0, '127.0.0.1', r)), new Promise<void>((r) => b.bind(0, '127.0.0.1', r))]);
    b.on('message', (m, rinfo) => b.send(m, rinfo.port, rinfo.address));
    const back = once(a, 'message', timeoutMs);
    a.send('turn', b.address().port, '127.0.0.1');
    await back;
  } finally {
    a.close();
    b.close();
  }
}

/**
 * Pace an operation (renew a lease every 100 ms). Not for synchronisation: to wait for something,
 * use the functions above.
 */
export function pace(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Records everything a callback receives, and lets a test wait for the first item (already received or
 * still to come) that matches a predicate.
 */
export class Recorder<T> {
  readonly items: T[] = [];
  private readonly waiters = new Set<() => void>();

  /** Bound, so it can be passed as a callback directly. */
  readonly push = (item: T): void => {
    this.items.push(item);
    for (const w of [...this.waiters]) w();
  };

  /** Resolves with the first item at index ≥ `from` matching `pred`. */
  until(pred: (item: T) => boolean, timeoutMs: number, what: string, from = 0): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        for (let i = from; i < this.items.length; i++) {
          const item = this.items[i]!;
          if (pred(item)) {
            clearTimeout(timer);
            this.waiters.delete(check);
            resolve(item);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new TimeoutError(what, timeoutMs, `received ${this.items.length}: ${preview(this.items.slice(-5))}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }
}

function preview(items: unknown[]): string {
  return JSON.stringify(items, (_k, v: unknown) => {
    if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') return '<buffer>';
    return v;
  }).slice(0, 600);
}
