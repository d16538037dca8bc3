/**
 * Consistent hashing on a request key (a header, a cookie or the client IP): a hash ring with virtual
 * nodes (Ketama, Envoy `RING_HASH`). Each upstream of weight > 0 owns points on a 32-bit ring, in number
 * proportional to its weight; a key belongs to the first point at or after its hash.
 *
 * Why a ring and not Maglev (which L4 uses): when an endpoint leaves, exactly the keys it owned move
 * (to their next point) and no other key does, and an upstream that is merely unavailable (health,
 * ejection) is skipped by walking on along the ring, without rebuilding anything — its keys come back to
 * it when it recovers. Lookup is a binary search, O(log points). Maglev gives O(1) lookup and a more even
 * spread, but moves a few extra keys on every change and needs a rebuild to route around a down host.
 *
 * Points are hashes of `address:port#i`, so every Portico instance (and every table) builds the same
 * ring: the same key goes to the same upstream everywhere. Without a key (header or cookie absent, empty
 * client IP) the request is balanced round-robin.
 */
import { hash32 } from '../../model/hash.js';
import type { Balance } from '../../model/types.js';
import { RoundRobin } from './roundrobin.js';
import type { Balancer, PickContext, UpstreamPool } from './types.js';
import type { Upstream } from './upstream.js';

export { hash32 };

/** Total ring points never exceed this (Envoy's default max is 8M; we keep build time small). */
export const MAX_RING_POINTS = 65_536;

type KeySource = { kind: 'header'; name: string } | { kind: 'cookie'; name: string } | { kind: 'ip' };

export class ConsistentHash implements Balancer {
  readonly algorithm = 'hash' as const;
  /** Sorted ring points and, at the same index, the index in `pool.all` of their owner. */
  readonly points: Uint32Array;
  private readonly owners: Uint32Array;
  private readonly fallback: RoundRobin;
  private readonly source: KeySource;

  constructor(
    private readonly pool: UpstreamPool,
    hashOn: Balance['hashOn'],
    pointsPerEndpoint: number,
  ) {
    this.fallback = new RoundRobin(pool);
    this.source =
      hashOn === undefined
        ? { kind: 'ip' }
        : hashOn.kind === 'ip'
          ? { kind: 'ip' }
          : { kind: hashOn.kind, name: hashOn.kind === 'header' ? hashOn.name.toLowerCase() : hashOn.name };
    const members: number[] = [];
    let weightSum = 0;
    pool.all.forEach((u, i) => {
      if (u.weight > 0) {
        members.push(i);
        weightSum += u.weight;
      }
    });
    const perAverage = members.length === 0 ? 0 : Math.max(1, Math.min(pointsPerEndpoint, Math.floor(MAX_RING_POINTS / members.length)));
    const mean = weightSum / Math.max(1, members.length);
    const ring: Array<[number, number]> = [];
    for (const i of members) {
      const u = pool.all[i] as Upstream;
      const count = Math.max(1, Math.round((perAverage * u.weight) / mean));
      for (let v = 0; v < count; v++) ring.push([hash32(`${u.key}#${v}`), i]);
    }
    // Ties (hash collisions) broken by key so the ring does not depend on table order.
    ring.sort((a, b) => a[0] - b[0] || ((pool.all[a[1]] as Upstream).key < (pool.all[b[1]] as Upstream).key ? -1 : 1));
    this.points = Uint32Array.from(ring, (p) => p[0]);
    this.owners = Uint32Array.from(ring, (p) => p[1]);
  }

  /** The request's key, or undefined when it has none. */
  keyOf(ctx: PickContext): string | undefined {
    const s = this.source;
    const key = s.kind === 'ip' ? ctx.clientIp : s.kind === 'header' ? ctx.header(s.name) : ctx.cookie(s.name);
    return key === '' ? undefined : key;
  }

  pick(ctx: PickContext): Upstream | undefined {
    const key = this.keyOf(ctx);
    if (key === undefined) return this.fallback.pick(ctx);
    const now = this.pool.now();
    if (this.pool.availableAt(now).length === 0) return undefined;
    return this.lookup(hash32(key), now, ctx.exclude);
  }

  /** The owner of the first point at or after `h` that is available and not `exclude`. */
  lookup(h: number, now: number, exclude?: Upstream): Upstream | undefined {
    const points = this.points;
    const n = points.length;
    if (n === 0) return undefined;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((points[mid] as number) < h) lo = mid + 1;
      else hi = mid;
    }
    const all = this.pool.all;
    for (let k = 0; k < n; k++) {
      const u = all[this.owners[(lo + k) % n] as number] as Upstream;
      if (u !== exclude && u.isAvailable(now)) return u;
    }
    return undefined;
  }
}
