/**
 * The policy registry: `createBalancer` maps a service's `balance` to its policy module. Adding a
 * policy is one file and one case here.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Balance } from '../../model/types.js';
import { ConsistentHash } from './hash.js';
import { LeastRequest } from './leastrequest.js';
import { PowerOfTwoChoices } from './p2c.js';
import { RoundRobin } from './roundrobin.js';
import { DEFAULT_STICKY_COOKIE, StickyCookie, StickySecrets } from './sticky.js';
import type { BalanceOptions, Balancer, ResolvedBalanceOptions, UpstreamPool } from './types.js';
import { SmoothWeighted } from './weighted.js';

export const DEFAULT_SLOW_START_MS = 10_000;
export const DEFAULT_RING_POINTS_PER_ENDPOINT = 160;

let processSecret: Buffer | undefined;
const monotonic = (): number => performance.now();

/** Fill in defaults once (per plane), so sets and balancers share one resolved object. */
export function resolveBalanceOptions(opts: BalanceOptions = {}): ResolvedBalanceOptions {
  return {
    now: opts.now ?? monotonic,
    rnd: opts.rnd ?? Math.random,
    slowStartMs: opts.slowStartMs ?? DEFAULT_SLOW_START_MS,
    stickySecret:
      opts.stickySecret instanceof StickySecrets
        ? opts.stickySecret
        : new StickySecrets(opts.stickySecret ?? (processSecret ??= randomBytes(32))),
    ringPointsPerEndpoint: opts.ringPointsPerEndpoint ?? DEFAULT_RING_POINTS_PER_ENDPOINT,
  };
}

export function createBalancer(balance: Balance, pool: UpstreamPool, opts: ResolvedBalanceOptions): Balancer {
  switch (balance.algorithm) {
    case 'roundrobin':
      return new RoundRobin(pool);
    case 'weighted':
      return new SmoothWeighted(pool, opts.slowStartMs);
    case 'leastconn':
      return new LeastRequest(pool, opts.slowStartMs);
    case 'p2c':
      return new PowerOfTwoChoices(pool, opts.rnd, opts.slowStartMs);
    case 'hash':
      return new ConsistentHash(pool, balance.hashOn, opts.ringPointsPerEndpoint);
    case 'sticky':
      return new StickyCookie(pool, balance.cookie ?? DEFAULT_STICKY_COOKIE, opts.stickySecret, opts.slowStartMs);
    default: {
      const never: never = balance.algorithm;
      throw new TypeError(`unknown balance algorithm ${String(never)}`);
    }
  }
}
