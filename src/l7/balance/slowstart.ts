/**
 * Slow start (Envoy's `slow_start_config`, HAProxy's `slowstart`): a freshly added upstream, or one that
 * active checks just brought back, gets a fraction of its weight that grows linearly from 10% to 100%
 * over `slowStartMs`, so a cold JVM or an empty cache is not handed a full share at once.
 *
 * The weight-aware policies apply it: `weighted` uses it as the smooth-WRR weight, `leastconn` and `p2c`
 * divide their load score by it (a warming upstream looks busier than it is). `roundrobin` and `hash`
 * ignore weights by design and do not ramp.
 */
import type { Upstream } from './upstream.js';

export const SLOW_START_MIN_FACTOR = 0.1;

/** 0.1 … 1 over the window; exactly 1 outside it (so integer weights stay integers). */
export function slowStartFactor(u: Upstream, now: number, slowStartMs: number): number {
  if (slowStartMs <= 0) return 1;
  const elapsed = now - u.warmSince;
  if (elapsed >= slowStartMs) return 1;
  if (elapsed <= 0) return SLOW_START_MIN_FACTOR;
  return SLOW_START_MIN_FACTOR + (1 - SLOW_START_MIN_FACTOR) * (elapsed / slowStartMs);
}

export function effectiveWeight(u: Upstream, now: number, slowStartMs: number): number {
  return u.weight * slowStartFactor(u, now, slowStartMs);
}
