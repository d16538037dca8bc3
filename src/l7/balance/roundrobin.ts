/**
 * Round-robin (CoreDNS `policy.go`, HAProxy `roundrobin` without weights): a counter advances once per
 * pick and indexes the list of available upstreams, so every available upstream gets the same share and
 * unavailable ones are simply not in the list. Weights are ignored — use `weighted` for them.
 *
 * O(1) per pick (plus one step to skip `exclude` on a retry). Node is single-threaded, so the
 * "atomic" counter is a plain number, wrapped before it loses integer precision.
 */
import type { Balancer, PickContext, UpstreamPool } from './types.js';
import type { Upstream } from './upstream.js';

export class RoundRobin implements Balancer {
  readonly algorithm = 'roundrobin' as const;
  private next = 0;

  constructor(private readonly pool: UpstreamPool) {}

  pick(ctx: PickContext): Upstream | undefined {
    const avail = this.pool.availableAt(this.pool.now());
    const n = avail.length;
    if (n === 0) return undefined;
    const start = this.next % n;
    this.next = this.next >= 0x3fffffff ? 0 : this.next + 1;
    const u = avail[start] as Upstream;
    if (u !== ctx.exclude) return u;
    return n > 1 ? avail[(start + 1) % n] : undefined;
  }
}
