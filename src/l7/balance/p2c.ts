/**
 * Power of two choices on peak-EWMA latency (Finagle's `P2CPeakEwma`, Envoy's least-request with two
 * choices, Traefik's `p2c`): pick two distinct available upstreams at random and take the one with the
 * lower load, load = EWMA latency × (in-flight + 1), divided by the slow-start effective weight.
 *
 * Two random choices avoid the herd behaviour of "always the global best" (every proxy instance piling on
 * the same fastest upstream) at O(1) per pick, while still steering away from slow or busy upstreams.
 * An upstream without a latency sample yet costs 0 while idle (try it) and a large penalty while it has
 * requests in flight (don't pile onto an unknown), as Finagle does.
 */
import { effectiveWeight } from './slowstart.js';
import type { Balancer, PickContext, UpstreamPool } from './types.js';
import type { Upstream } from './upstream.js';

/** Load of an unsampled upstream with requests in flight (Finagle's `Penalty`). */
export const UNSAMPLED_PENALTY = 1e9;

export function p2cLoad(u: Upstream): number {
  if (u.ewmaMs === 0) return u.inflight === 0 ? 0 : UNSAMPLED_PENALTY + u.inflight;
  return u.ewmaMs * (u.inflight + 1);
}

export class PowerOfTwoChoices implements Balancer {
  readonly algorithm = 'p2c' as const;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly rnd: () => number,
    private readonly slowStartMs: number,
  ) {}

  pick(ctx: PickContext): Upstream | undefined {
    const now = this.pool.now();
    const avail = this.pool.availableAt(now);
    const ex = ctx.exclude === undefined ? -1 : avail.indexOf(ctx.exclude);
    const m = ex >= 0 ? avail.length - 1 : avail.length;
    if (m <= 0) return undefined;
    if (m === 1) return avail[ex === 0 ? 1 : 0];
    // Two distinct indexes in [0, m), then skip over the excluded slot.
    let i = Math.floor(this.rnd() * m);
    let j = Math.floor(this.rnd() * (m - 1));
    if (i >= m) i = m - 1;
    if (j >= m - 1) j = m - 2;
    if (j >= i) j++;
    if (ex >= 0) {
      if (i >= ex) i++;
      if (j >= ex) j++;
    }
    const a = avail[i] as Upstream;
    const b = avail[j] as Upstream;
    const sa = p2cLoad(a) / effectiveWeight(a, now, this.slowStartMs);
    const sb = p2cLoad(b) / effectiveWeight(b, now, this.slowStartMs);
    return sb < sa ? b : a;
  }
}
