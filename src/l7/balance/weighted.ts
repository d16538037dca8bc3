/**
 * Smooth weighted round-robin (nginx `ngx_http_upstream_get_peer`): on every pick each available upstream
 * adds its weight to its `current`, the largest `current` wins and gives back the total. Over a cycle of
 * Σweights picks each upstream is chosen exactly `weight` times, and the choices are interleaved rather
 * than bursty: weights {a:5, b:1, c:1} give `a a b a c a a`, never `a a a a a b c`.
 *
 * The weight is the slow-start effective weight (see slowstart.ts). O(upstreams) per pick, like nginx;
 * `current` values live in this balancer, so they reset when a table changes the service.
 */
import { effectiveWeight } from './slowstart.js';
import type { Balancer, PickContext, UpstreamPool } from './types.js';
import type { Upstream } from './upstream.js';

export class SmoothWeighted implements Balancer {
  readonly algorithm = 'weighted' as const;
  private readonly current: Float64Array;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly slowStartMs: number,
  ) {
    this.current = new Float64Array(pool.all.length);
  }

  pick(ctx: PickContext): Upstream | undefined {
    const now = this.pool.now();
    const all = this.pool.all;
    const current = this.current;
    const exclude = ctx.exclude;
    let total = 0;
    let best = -1;
    let bestCurrent = -Infinity;
    for (let i = 0; i < all.length; i++) {
      const u = all[i] as Upstream;
      if (u === exclude || !u.isAvailable(now)) continue;
      const w = effectiveWeight(u, now, this.slowStartMs);
      const c = (current[i] as number) + w;
      current[i] = c;
      total += w;
      if (c > bestCurrent) {
        bestCurrent = c;
        best = i;
      }
    }
    if (best < 0) return undefined;
    current[best] = bestCurrent - total;
    return all[best];
  }
}
