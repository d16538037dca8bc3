/**
 * One Consul blocking-query loop, as Consul's "Blocking Queries" guidance asks
 * (developer.hashicorp.com/consul/api-docs/features/blocking, "Implementation Details"):
 *
 * - the first read (and the first after an error) is a plain read, `index` 0; then `?index=<X-Consul-Index>&wait=…`;
 * - **index reset**: an `X-Consul-Index` lower than the one held means Consul's state went back (a snapshot
 *   restore, a rebuilt cluster): the data is taken and the next read starts over from index 0 — the index
 *   never goes backwards, and a stale high index is never sent again (it would block past every update);
 * - **index sanity**: an index below 1 is used as 1 (the docs: "always safe"), so a buggy 0 cannot make every
 *   query return at once;
 * - **rate limit**: a token bucket (burst 2, then one request per `intervalMs`) — reads that keep returning
 *   at once (churn, a misbehaving server) degrade to polling, while the happy path never waits;
 * - **errors**: exponential backoff with jitter, capped; the loop never ends on its own (a 400 or 403 may be
 *   fixed on the Consul side without restarting Portico).
 *
 * Why not the `consul` package's `consul.watch()`: its loop has no rate limit (a query that returns at once
 * is re-sent on the next tick, a hot loop), it treats index 0 as an error instead of using 1, it ends for
 * good on an HTTP 400, it reports nothing on a successful read whose index did not change (so a provider
 * cannot tell Consul is back until the data changes — up to `wait` later), and after an error it blocks on
 * the old index instead of doing the fresh read this provider wants. The requests themselves are the
 * package's (`consul.catalog.service.list`, `consul.health.service`), with an abortable `ctx`.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';

/** papi (the package's HTTP layer) aborts a request when its `ctx` emits `cancel`, and resolves `[res, body]` with `includeResponse`. */
export interface RequestCtx extends EventEmitter {
  includeResponse: true;
}

export type Fetch = (index: bigint, ctx: RequestCtx) => Promise<[IncomingMessage, unknown]>;

export interface BackoffOptions {
  /** First retry delay after an error, ms. Default 100. */
  initialMs: number;
  /** Cap, ms. Default 10 000. */
  maxMs: number;
}

export interface RateLimitOptions {
  /** Requests allowed back to back before the limit applies. Default 2 (Consul's suggestion). */
  burst: number;
  /** One more request per this many ms once the burst is spent. Default 1000. */
  intervalMs: number;
}

export interface WatchHooks {
  /** What is watched, for messages: `the service catalog`, `service web`. */
  what: string;
  fetch: Fetch;
  /** A successful read whose index moved (or the first one). Throw to reject a malformed body. */
  onData(body: unknown, index: bigint): void;
  /** Every successful read, changed or not. */
  onOk(): void;
  onError(err: unknown, consecutive: number, retryInMs: number): void;
  /** The index went backwards. */
  onReset(from: bigint, to: bigint): void;
}

export class BlockingWatch {
  index = 0n;
  requests = 0;
  resets = 0;
  /** Requests that waited for a rate-limit token. */
  limited = 0;
  private failures = 0;
  private tokens: number;
  private lastRefill = Date.now();
  private stopped = false;
  private ctx: RequestCtx | undefined;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly hooks: WatchHooks,
    private readonly backoff: BackoffOptions,
    private readonly rate: RateLimitOptions,
  ) {
    this.tokens = rate.burst;
  }

  start(): void {
    this.done = this.loop();
  }

  /** Abort the request in flight and any wait; resolves when the loop has ended. */
  stop(): Promise<void> {
    this.stopped = true;
    this.ctx?.emit('cancel');
    clearTimeout(this.sleepTimer);
    this.wake?.();
    return this.done;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const wait = this.takeToken();
      if (wait > 0) {
        this.limited++;
        await this.sleep(wait);
        if (this.stopped) break;
      }
      const ctx = Object.assign(new EventEmitter(), { includeResponse: true as const });
      this.ctx = ctx;
      this.requests++;
      let res: IncomingMessage;
      let body: unknown;
      try {
        [res, body] = await this.hooks.fetch(this.index, ctx);
        if (this.stopped) break;
        const next = parseIndex(res.headers['x-consul-index']);
        if (next === undefined)
          throw new ProtocolError(`Consul sent no X-Consul-Index header for ${this.hooks.what} (is the url a Consul HTTP api?)`);
        // Sanity first: Consul's servers never answer below 1, so a 0 is a bug and is read as 1 (it must
        // not count as "went backwards" each time, nor make the next query non-blocking).
        const idx = next < 1n ? 1n : next;
        const prev = this.index;
        if (idx < prev) {
          this.resets++;
          this.hooks.onReset(prev, idx);
          this.hooks.onData(body, idx);
          this.index = 0n;
        } else {
          if (prev === 0n || idx !== prev) this.hooks.onData(body, idx);
          this.index = idx;
        }
        this.failures = 0;
        this.hooks.onOk();
      } catch (err) {
        if (this.stopped) break;
        this.failures++;
        // Back from an outage (or a bad answer), read everything afresh before blocking again.
        this.index = 0n;
        const delay = this.backoffMs(this.failures);
        this.hooks.onError(err, this.failures, delay);
        await this.sleep(delay);
      } finally {
        this.ctx = undefined;
      }
    }
  }

  /** ms to wait for a token (0: go now). Token bucket: `burst` tokens, one more per `intervalMs`. */
  private takeToken(): number {
    const now = Date.now();
    this.tokens = Math.min(this.rate.burst, this.tokens + (now - this.lastRefill) / this.rate.intervalMs);
    this.lastRefill = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    const wait = Math.ceil((1 - this.tokens) * this.rate.intervalMs);
    // The token that accrues during the wait is the one this request spends.
    this.tokens -= 1;
    return wait;
  }

  /** Exponential, capped, with "equal jitter" (half fixed, half random) so many instances do not retry in step. */
  private backoffMs(failures: number): number {
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(failures - 1, 30));
    return Math.round(base / 2 + (Math.random() * base) / 2);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
      this.sleepTimer = setTimeout(() => this.wake?.(), ms);
    });
  }
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

function parseIndex(raw: string | string[] | undefined): bigint | undefined {
  const text = Array.isArray(raw) ? raw[0] : raw;
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
  return BigInt(text.trim());
}
