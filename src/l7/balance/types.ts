/**
 * The balancer contract. A policy is a small module behind `pick`: given the request's context it
 * returns one available upstream of its set, or `undefined` when none is (the proxy answers 503).
 * Randomness and the clock come from `BalanceOptions`, so tests are deterministic.
 */
import type { BalanceAlgorithm } from '../../model/types.js';
import type { StickySecrets } from './sticky.js';
import type { Upstream } from './upstream.js';

/**
 * What a policy may read about the request. Implement it once per connection or request object
 * (see `RequestPickContext`), not as a fresh object literal with closures per request.
 */
export interface PickContext {
  /** Client address (after trusted-proxy processing), for `hash(ip)`. */
  readonly clientIp: string;
  /** A request header by lower-cased name. */
  header(lowerName: string): string | undefined;
  /**
   * A request cookie by name. Lazy: only `hash(cookie:…)` and `sticky` call it, so requests to other
   * policies never parse the Cookie header.
   */
  cookie(name: string): string | undefined;
  /** On a retry: the upstream that just failed; the policy picks another (or returns undefined). */
  readonly exclude?: Upstream | undefined;
}

export interface Balancer {
  readonly algorithm: BalanceAlgorithm;
  /** One available upstream other than `ctx.exclude`, or undefined when there is none. */
  pick(ctx: PickContext): Upstream | undefined;
  /**
   * `sticky` only: the `Set-Cookie` header value the response must carry so that the client sticks to
   * `picked`, or undefined when the request's cookie already names `picked`. Precomputed strings, no
   * allocation. `secure` adds the `Secure` attribute (TLS entrypoints).
   */
  setCookie?(ctx: PickContext, picked: Upstream, secure?: boolean): string | undefined;
}

/** The upstreams a policy balances over: an `UpstreamSet`, seen through what policies need. */
export interface UpstreamPool {
  readonly serviceId: string;
  /** Every upstream of the service, table order (available or not); fixed for the pool's life. */
  readonly all: readonly Upstream[];
  /** The clock (ms, monotonic). */
  readonly now: () => number;
  /** The available upstreams at `now`; a cached array, do not mutate. */
  availableAt(now: number): readonly Upstream[];
}

export interface BalanceOptions {
  /** Clock in ms; default `performance.now()` (monotonic). Ejections and slow start use it. */
  now?: () => number;
  /** Uniform random in [0, 1); default `Math.random`. */
  rnd?: () => number;
  /**
   * Slow start window in ms (default 10 s; 0 disables): a new upstream's effective weight ramps linearly
   * from 10% to 100% over it, for `weighted`, `leastconn`, `p2c` and `sticky`'s first pick.
   */
  slowStartMs?: number;
  /**
   * Key for sticky cookie ids (HMAC-SHA256 of service and endpoint): a secret, or a `StickySecrets` to
   * rotate later (a plane keeps one and `set`s what the store holds). Default: random per process, so
   * cookies do not survive a restart and differ between instances until a shared secret is set.
   */
  stickySecret?: string | Buffer | StickySecrets;
  /** Ring points per endpoint of weight average (`hash`), default 160, capped at 65,536 in all. */
  ringPointsPerEndpoint?: number;
}

export type ResolvedBalanceOptions = Required<Omit<BalanceOptions, 'stickySecret'>> & { stickySecret: StickySecrets };
