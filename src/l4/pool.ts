/**
 * Endpoints as the L4 engine keeps them between tables, and the selection over them.
 *
 * - `Backend`: one `address:port`, shared by every service that lists it: health verdicts (active checks,
 *   passive ejection), open connections, totals. Lives as long as some pool references it.
 * - `Member`: a backend as one service's pool sees it: the weight and health the table gives it, its
 *   open connections, its drain deadline. A member that left the table stays (not `present`) until its
 *   last connection ends, so draining is tracked per service.
 * - `ServicePool`: the members of one service and its current `Selector`. The selector is rebuilt only
 *   when the set of eligible (member, weight) pairs changes — a new table with the same endpoints, or a
 *   health verdict that changes nothing, keeps the Maglev table it has.
 *
 * Selection policies (`Selector.pick`) are small and deterministic: Maglev (the default), least
 * connections and smooth weighted round-robin. Each takes the members already tried for this
 * connection, so a retry goes to another endpoint.
 */
import type { HealthState } from '../model/types.js';
import type { CheckParams } from './health.js';
import { MaglevTable } from './maglev.js';
import type { L4Balance } from './options.js';

/**
 * What the api says about one endpoint of a pool:
 * - `serving`: takes new connections.
 * - `draining`: weight 0, `draining` in the table, or gone from the table: open connections finish.
 * - `unhealthy`: the table says so.
 * - `down`: the active check says so.
 * - `ejected`: consecutive connect failures took it out for a while (passive check).
 */
export type EndpointState = 'serving' | 'draining' | 'unhealthy' | 'down' | 'ejected';

export function endpointKey(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export class Backend {
  readonly key: string;
  /** IPv6 address (connect6 rather than connect). */
  readonly v6: boolean;
  /** Open connections (all pools). */
  active = 0;
  /** Connections established, ever. */
  connections = 0;
  /** Client → endpoint and endpoint → client bytes. */
  bytesIn = 0;
  bytesOut = 0;
  connectFailures = 0;
  connectTimeouts = 0;
  /** The active check's verdict; undefined while there is none (served, like `unknown`). */
  checkUp: boolean | undefined;
  /** Connect failures in a row (passive check). */
  consecutiveFailures = 0;
  /** ms since epoch until which it is ejected; 0 = not ejected. */
  ejectedUntil = 0;
  /** Pools that hold a member for it (a health verdict rebuilds these only). */
  readonly pools = new Set<ServicePool>();

  constructor(
    readonly address: string,
    readonly port: number,
  ) {
    this.key = endpointKey(address, port);
    this.v6 = address.includes(':');
  }
}

export class Member {
  weight = 1;
  health: HealthState = 'unknown';
  /** Listed by the current table. */
  present = true;
  /** Open connections through this member. */
  active = 0;
  /** Whether it was eligible at the last rebuild (for drain transitions). */
  eligible = false;
  /** ms since epoch at which its remaining connections are closed; 0 = not draining. */
  drainDeadline = 0;

  constructor(
    readonly pool: ServicePool,
    readonly backend: Backend,
  ) {}

  state(now: number): EndpointState {
    if (!this.present || this.weight <= 0 || this.health === 'draining') return 'draining';
    if (this.health === 'unhealthy') return 'unhealthy';
    if (this.backend.checkUp === false) return 'down';
    if (this.backend.ejectedUntil > now) return 'ejected';
    return 'serving';
  }
}

export interface Selector {
  readonly algorithm: L4Balance;
  /** Eligible members, in a stable order. */
  readonly members: readonly Member[];
  /** Whether `pick` looks at the hash (Maglev over more than one member): callers skip computing it otherwise. */
  readonly needsHash: boolean;
  /**
   * A member for a new connection with key hash `hash`, skipping `tried` (members that already failed
   * for this connection); undefined when none is left.
   */
  pick(hash: number, tried: readonly Member[] | null): Member | undefined;
}

const EMPTY: readonly Member[] = Object.freeze([]);

class NoneSelector implements Selector {
  readonly members = EMPTY;
  readonly needsHash = false;
  constructor(readonly algorithm: L4Balance) {}
  pick(): undefined {
    return undefined;
  }
}

/** Consistent hashing: the same key keeps its endpoint while the set holds; losing one of N moves ~1/N of keys. */
export class MaglevSelector implements Selector {
  readonly algorithm = 'maglev' as const;
  readonly table: MaglevTable<Member>;
  readonly needsHash: boolean;
  constructor(
    readonly members: readonly Member[],
    size: number,
  ) {
    this.needsHash = members.length > 1;
    this.table = new MaglevTable(
      members.map((m) => ({ name: m.backend.key, weight: m.weight, value: m })),
      size,
    );
  }

  pick(hash: number, tried: readonly Member[] | null): Member | undefined {
    const first = this.table.lookup(hash);
    if (!tried || tried.length === 0 || first === undefined || !tried.includes(first)) return first;
    // (tried may hold members that left the selection since: count only the ones still in it)
    let left = this.members.length;
    for (const m of tried) if (this.members.includes(m)) left--;
    if (left <= 0) return undefined;
    // Walk the table from the key's slot: a deterministic "next endpoint" for this key.
    for (let step = 1; step < this.table.size; step++) {
      const m = this.table.at(hash, step) as Member;
      if (!tried.includes(m)) return m;
    }
    return undefined;
  }
}

/** Fewest open connections per unit of weight; ties rotate so equal endpoints share new connections. */
export class LeastConnSelector implements Selector {
  readonly algorithm = 'leastconn' as const;
  readonly needsHash = false;
  private next = 0;
  constructor(readonly members: readonly Member[]) {}

  pick(_hash: number, tried: readonly Member[] | null): Member | undefined {
    const n = this.members.length;
    let best: Member | undefined;
    let bestLoad = Infinity;
    const start = this.next++ % Math.max(1, n);
    for (let k = 0; k < n; k++) {
      const m = this.members[(start + k) % n] as Member;
      if (tried && tried.includes(m)) continue;
      const load = (m.backend.active + 1) / m.weight;
      if (load < bestLoad) {
        best = m;
        bestLoad = load;
      }
    }
    return best;
  }
}

/** Smooth weighted round-robin (nginx's): weights spread out evenly, never in bursts. */
export class RoundRobinSelector implements Selector {
  readonly algorithm = 'roundrobin' as const;
  readonly needsHash = false;
  private readonly current: Float64Array;
  constructor(readonly members: readonly Member[]) {
    this.current = new Float64Array(members.length);
  }

  pick(_hash: number, tried: readonly Member[] | null): Member | undefined {
    let best = -1;
    let total = 0;
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i] as Member;
      if (tried && tried.includes(m)) continue;
      this.current[i] = (this.current[i] as number) + m.weight;
      total += m.weight;
      if (best < 0 || (this.current[i] as number) > (this.current[best] as number)) best = i;
    }
    if (best < 0) return undefined;
    this.current[best] = (this.current[best] as number) - total;
    return this.members[best];
  }
}

export function makeSelector(algorithm: L4Balance, members: readonly Member[], maglevSize: number): Selector {
  if (members.length === 0) return new NoneSelector(algorithm);
  switch (algorithm) {
    case 'maglev':
      return new MaglevSelector(members, maglevSize);
    case 'leastconn':
      return new LeastConnSelector(members);
    case 'roundrobin':
      return new RoundRobinSelector(members);
  }
}

export interface EndpointSpec {
  address: string;
  port: number;
  weight: number;
  health: HealthState;
}

/** A member's eligibility changed at a rebuild: the plane starts or stops its drain clock. */
export type DrainHook = (m: Member, eligible: boolean) => void;

export class ServicePool {
  readonly members = new Map<string, Member>();
  selector: Selector;
  /** The active check its service asks for (its `health`, else the plane's defaults); undefined: none. */
  check: CheckParams | undefined;
  /** Members no longer listed by the table, kept while they have connections (prune() drops them). */
  leaving = 0;
  private signature = '';

  constructor(
    readonly id: string,
    public algorithm: L4Balance,
    private readonly maglevSize: number,
  ) {
    this.selector = new NoneSelector(algorithm);
  }

  /** What the current selector was built from: the algorithm and each eligible `address:port*weight`. */
  get selection(): string {
    return this.signature;
  }

  /**
   * Take the endpoints the table lists now. Members not listed any more are kept, not present, while they
   * have open connections. `backendFor` returns the shared Backend of an address (creating it).
   */
  update(endpoints: readonly EndpointSpec[], algorithm: L4Balance, backendFor: (address: string, port: number) => Backend): void {
    this.algorithm = algorithm;
    const seen = new Set<string>();
    for (const ep of endpoints) {
      const key = endpointKey(ep.address, ep.port);
      if (seen.has(key)) continue; // a duplicate endpoint: the first wins
      seen.add(key);
      let m = this.members.get(key);
      if (!m) {
        const b = backendFor(ep.address, ep.port);
        b.pools.add(this);
        m = new Member(this, b);
        this.members.set(key, m);
      }
      m.present = true;
      m.weight = Math.max(0, Math.min(256, Math.round(ep.weight)));
      m.health = ep.health;
    }
    let leaving = 0;
    for (const [key, m] of this.members) {
      if (seen.has(key)) continue;
      m.present = false;
      leaving++;
    }
    this.leaving = leaving;
  }

  /**
   * Recompute eligibility and, when the eligible set or a weight changed, the selector. Members that turned
   * ineligible or eligible are reported to `onDrain`. Returns whether the selector was rebuilt.
   */
  rebuild(now: number, onDrain: DrainHook): boolean {
    const eligible: Member[] = [];
    for (const m of this.members.values()) {
      const ok = m.state(now) === 'serving';
      if (ok !== m.eligible) {
        m.eligible = ok;
        onDrain(m, ok);
      }
      if (ok) eligible.push(m);
    }
    eligible.sort((a, b) => (a.backend.key < b.backend.key ? -1 : a.backend.key > b.backend.key ? 1 : 0));
    const signature = `${this.algorithm}|${eligible.map((m) => `${m.backend.key}*${m.weight}`).join(',')}`;
    if (signature === this.signature) return false;
    this.signature = signature;
    this.selector = makeSelector(this.algorithm, eligible, this.maglevSize);
    return true;
  }

  /** Drop members that left the table and have no connection left; returns their backends (no longer held by this pool). */
  prune(): Backend[] {
    const gone: Backend[] = [];
    if (this.leaving === 0) return gone;
    for (const [key, m] of this.members) {
      if (!m.present && m.active === 0) {
        this.members.delete(key);
        this.leaving--;
        m.backend.pools.delete(this);
        gone.push(m.backend);
      }
    }
    return gone;
  }
}
