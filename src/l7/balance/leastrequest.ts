/**
 * Least request (HAProxy `leastconn`, Envoy `LEAST_REQUEST` with all hosts scanned): the available
 * upstream with the lowest (in-flight + 1) / effective weight. With equal weights that is simply the one
 * with the fewest requests in flight; the +1 makes an idle upstream of weight 2 preferred to an idle one
 * of weight 1, and a warming (slow start) upstream look busier than it is.
 *
 * Ties go round-robin: the scan starts one further each pick and keeps the first best, so equally loaded
 * upstreams take turns instead of the first in the list taking every tie. O(available) per pick.
 */
import { effectiveWeight } from './slowstart.js';
import type { Balancer, PickContext, UpstreamPool } from './types.js';
import type { Upstream } from './upstream.js';

export class LeastRequest implements Balancer {
  readonly algorithm = 'leastconn' as const;
  private next = 0;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly slowStartMs: number,
  ) {}

  pick(ctx: PickContext): Upstream | undefined {
    const now = this.pool.now();
    const avail = this.pool.availableAt(now);
    const n = avail.length;
    if (n === 0) return undefined;
    const start = this.next % n;
    this.next = this.next >= 0x3fffffff ? 0 : this.next + 1;
    const exclude = ctx.exclude;
    let best: Upstream | undefined;
    let bestScore = Infinity;
    for (let k = 0; k < n; k++) {
      const u = avail[(start + k) % n] as Upstream;
      if (u === exclude) continue;
      const score = (u.inflight + 1) / effectiveWeight(u, now, this.slowStartMs);
      if (score < bestScore) {
        bestScore = score;
        best = u;
      }
    }
    return best;
  }
}
