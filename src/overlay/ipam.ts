/**
 * Container address leases, served to `portico-cni` processes by the daemon.
 *
 * Correctness rests on the store, not on this process:
 *   - every address is an IpClaim key created with CAS on revision 0, so no two containers ever hold one
 *     address, whatever runs concurrently (other plugin processes, another daemon on a shared store);
 *   - an ADD writes its address claims first and its Attachment record last; the Attachment is the commit.
 *     A failure between (v6 exhausted after v4 was claimed) deletes the claims it made (all-or-nothing);
 *     a daemon killed between leaves claims with no Attachment, which the next start removes (they were
 *     never acknowledged). A plugin killed mid-ADD leaves a complete, unacknowledged lease: GC reclaims it,
 *     and the same ADD retried gets the same answer.
 *   - the daemon serialises operations per CNI network name, so an ADD picks an address knowing what the
 *     previous one took, and GC never races an ADD of its own network.
 * What is kept in memory (used addresses per scope, a round-robin cursor like host-local's
 * last_reserved_ip) is a cache that saves store round trips; a stale entry costs one failed CAS.
 */
import type { Store } from '../store/types.js';
import {
  bits,
  canonical,
  contains,
  formatAddr,
  formatCidr,
  hostInCidr,
  last,
  parseAddr,
  parseCidr,
  type Cidr,
  type Family,
} from './addr.js';
import { CniCode } from './cni/protocol.js';
import { CniFailure } from './failure.js';
import { ownerOf } from './owner.js';

/**
 * Lease writes are acknowledged once written, with the fsync right behind (WriteOptions `written`): they
 * survive the daemon being killed at any point, as the tests check, and are lost only with the machine,
 * which takes its containers with it. host-local, which this plugin replaces, never fsyncs at all; an
 * fsync before every answer put the ADD's p99 behind host-local's on a busy disk.
 */
const LEASE_WRITE = { durability: 'written' } as const;
import { KEY, parseJson, type Attachment, type AttachmentIp, type CniResult, type IpClaim, type OverlayNetworkConfig } from './types.js';

export { CniFailure };

interface Range {
  subnet: Cidr;
  start: bigint;
  end: bigint;
  gateway?: bigint;
}

interface RangeSet {
  scope: string;
  family: Family;
  ranges: Range[];
  /** For the error message. */
  label: string;
}

export interface Plan {
  network: string;
  sets: RangeSet[];
  routes: Array<{ dst: string; gw?: string }>;
  dns: Record<string, unknown>;
  /** Overlay networks named in the config (for STATUS). */
  overlays: string[];
}

/** What the IPAM needs to know about this agent's overlay networks. */
export interface AgentView {
  agentId: string;
  network(name: string): OverlayNetworkConfig | undefined;
  /** This agent's subnet of the overlay, or the reason it has none. */
  subnet(name: string): { subnet: string } | { error: string };
}

/** Store scope of an agent's slice of an overlay network: its addresses are unique cluster-wide anyway. */
export function overlayScope(network: string, subnet: string): string {
  return `o:${network}@${subnet}`;
}

const bad = (msg: string, details?: string) => new CniFailure(CniCode.INVALID_CONFIG, msg, details);

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function parseRange(r: Record<string, unknown>, where: string): Range {
  if (typeof r.subnet !== 'string') throw bad(`${where}: "subnet" is required`, `${where}.subnet`);
  let subnet: Cidr;
  try {
    subnet = parseCidr(r.subnet);
  } catch (e) {
    throw bad(`${where}.subnet: ${(e as Error).message}`, `${where}.subnet`);
  }
  const b = bits(subnet.family);
  if (subnet.prefix > b - 2) throw bad(`${where}.subnet ${r.subnet} is too small to allocate from`, `${where}.subnet`);
  const addr = (k: string): bigint | undefined => {
    const v = r[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw bad(`${where}.${k} must be a string`, `${where}.${k}`);
    let a;
    try {
      a = parseAddr(v);
    } catch (e) {
      throw bad(`${where}.${k}: ${(e as Error).message}`, `${where}.${k}`);
    }
    if (!contains(subnet, a)) throw bad(`${where}.${k} ${v} is not inside ${r.subnet}`, `${where}.${k}`);
    return a.value;
  };
  // host-local's defaults: start at network+1, end at broadcast-1 (IPv4) or the last address (IPv6);
  // the gateway defaults to network+1 and is never handed out.
  const gateway = addr('gateway') ?? subnet.base + 1n;
  const start = addr('rangeStart') ?? subnet.base + 1n;
  const end = addr('rangeEnd') ?? (subnet.family === 4 ? last(subnet) - 1n : last(subnet));
  if (start > end) throw bad(`${where}: rangeStart is after rangeEnd`, where);
  return { subnet, start, end, gateway };
}

/** Turn a network configuration's `ipam` section into what to allocate. Throws CniFailure (code 7). */
export function planFor(config: Record<string, unknown>, agent: AgentView): Plan {
  const network = config.name as string;
  const ipam = asRecord(config.ipam) ?? {};
  const sets: RangeSet[] = [];
  const overlays: string[] = [];
  const routes: Array<{ dst: string; gw?: string }> = [];
  const overlayNames = ipam.network === undefined ? [] : Array.isArray(ipam.network) ? ipam.network : [ipam.network];
  for (const name of overlayNames) {
    if (typeof name !== 'string') throw bad('"ipam.network" must be an overlay network name or a list of them', 'ipam.network');
    const net = agent.network(name);
    if (!net) throw bad(`"ipam.network": no overlay network ${JSON.stringify(name)} is configured`, 'ipam.network');
    const s = agent.subnet(name);
    if ('error' in s)
      throw new CniFailure(CniCode.NO_AGENT_SUBNET, `agent ${agent.agentId} holds no subnet of overlay network ${name}`, s.error);
    const subnet = parseCidr(s.subnet);
    const endAddr = last(subnet) - 1n;
    // Network address, gateway (first host: it goes on the bridge) and broadcast are never leased.
    sets.push({
      scope: overlayScope(name, s.subnet),
      family: subnet.family,
      label: `${name} ${s.subnet}`,
      ranges: [{ subnet, start: subnet.base + 2n, end: endAddr, gateway: subnet.base + 1n }],
    });
    overlays.push(name);
    routes.push({ dst: formatCidr(parseCidr(net.subnet)), gw: formatAddr(subnet.family, subnet.base + 1n) });
  }
  let rangeSets: unknown[] = [];
  if (ipam.ranges !== undefined) {
    if (!Array.isArray(ipam.ranges)) throw bad('"ipam.ranges" must be a list of range sets (lists of ranges)', 'ipam.ranges');
    rangeSets = ipam.ranges;
  }
  if (typeof ipam.subnet === 'string') {
    // Legacy host-local form: a top-level range becomes the first set.
    rangeSets = [[{ subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway }], ...rangeSets];
  }
  rangeSets.forEach((set, i) => {
    if (!Array.isArray(set) || set.length === 0) throw bad(`ipam.ranges[${i}] must be a non-empty list of ranges`, `ipam.ranges[${i}]`);
    const ranges = set.map((r, j) => {
      const rec = asRecord(r);
      if (!rec) throw bad(`ipam.ranges[${i}][${j}] must be an object`, `ipam.ranges[${i}][${j}]`);
      return parseRange(rec, `ipam.ranges[${i}][${j}]`);
    });
    const family = ranges[0]!.subnet.family;
    for (const r of ranges) {
      if (r.subnet.family !== family) throw bad(`ipam.ranges[${i}] mixes IPv4 and IPv6`, `ipam.ranges[${i}]`);
    }
    for (let a = 0; a < ranges.length; a++) {
      for (let b = a + 1; b < ranges.length; b++) {
        if (ranges[a]!.start <= ranges[b]!.end && ranges[b]!.start <= ranges[a]!.end)
          throw bad(`ipam.ranges[${i}]: ranges ${a} and ${b} overlap`, `ipam.ranges[${i}]`);
      }
    }
    sets.push({ scope: `r:${network}`, family, ranges, label: `${network} range set ${i}` });
  });
  if (sets.length === 0) throw bad('"ipam" names no overlay network ("network") and no "ranges" or "subnet"', 'ipam');
  if (ipam.routes !== undefined) {
    if (!Array.isArray(ipam.routes)) throw bad('"ipam.routes" must be a list', 'ipam.routes');
    routes.length = 0;
    for (const r of ipam.routes) {
      const rec = asRecord(r);
      if (!rec || typeof rec.dst !== 'string') throw bad('each of "ipam.routes" needs a "dst"', 'ipam.routes');
      routes.push(rec as { dst: string; gw?: string });
    }
  }
  const dns = asRecord(ipam.dns) ?? {};
  return { network, sets, routes, dns, overlays };
}

/** Addresses asked for: `CNI_ARGS IP=a,b`, `runtimeConfig.ips`, `args.cni.ips`. */
export function requestedIps(
  config: Record<string, unknown>,
  cniArgs: string | undefined,
): Array<{ family: Family; value: bigint; text: string }> {
  const texts: string[] = [];
  for (const kv of (cniArgs ?? '').split(';')) {
    const eq = kv.indexOf('=');
    if (eq > 0 && kv.slice(0, eq).trim() === 'IP') texts.push(...kv.slice(eq + 1).split(','));
  }
  const rc = asRecord(config.runtimeConfig);
  if (Array.isArray(rc?.ips)) texts.push(...rc.ips.filter((x): x is string => typeof x === 'string'));
  const args = asRecord(asRecord(config.args)?.cni);
  if (Array.isArray(args?.ips)) texts.push(...args.ips.filter((x): x is string => typeof x === 'string'));
  const out: Array<{ family: Family; value: bigint; text: string }> = [];
  for (const t0 of texts) {
    const t = t0.trim();
    if (!t) continue;
    const bare = t.includes('/') ? t.slice(0, t.indexOf('/')) : t;
    let a;
    try {
      a = parseAddr(bare);
    } catch {
      throw bad(`requested address ${JSON.stringify(t)} is not an IP address`, 'IP');
    }
    if (!out.some((o) => o.value === a.value && o.family === a.family)) out.push({ ...a, text: t });
  }
  return out;
}

class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private waiting = 0;
  run<T>(fn: () => Promise<T>): Promise<T> {
    this.waiting++;
    const p = this.tail.then(fn);
    this.tail = p
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => this.waiting--);
    return p;
  }
  get idle(): boolean {
    return this.waiting === 0;
  }
}

interface ScopeCache {
  /** Canonical address → IpClaim (with the entry's revision). */
  used: Map<string, { claim: IpClaim; revision: number }>;
  /** Round-robin cursor (last address handed out), per range set label. */
  cursor: Map<string, bigint>;
  loaded: Promise<void> | undefined;
}

export interface IpamStats {
  adds: number;
  dels: number;
  gcs: number;
  failures: number;
  /** Orphan claims removed (start-up reconcile and GC). */
  orphansReclaimed: number;
}

export class Ipam {
  private readonly locks = new Map<string, Mutex>();
  private readonly scopes = new Map<string, ScopeCache>();
  readonly stats: IpamStats = { adds: 0, dels: 0, gcs: 0, failures: 0, orphansReclaimed: 0 };

  constructor(
    private readonly store: Store,
    private readonly agent: AgentView,
  ) {}

  private lock<T>(network: string, fn: () => Promise<T>): Promise<T> {
    let m = this.locks.get(network);
    if (!m) {
      m = new Mutex();
      this.locks.set(network, m);
    }
    const mm = m;
    return mm.run(fn).finally(() => {
      if (mm.idle && this.locks.get(network) === mm) this.locks.delete(network);
    });
  }

  private async scope(scope: string): Promise<ScopeCache> {
    let s = this.scopes.get(scope);
    if (!s) {
      s = { used: new Map(), cursor: new Map(), loaded: undefined };
      this.scopes.set(scope, s);
    }
    if (!s.loaded) {
      const sc = s;
      sc.loaded = this.reload(scope, sc);
      sc.loaded.catch(() => {
        sc.loaded = undefined;
      });
    }
    await s.loaded;
    return s;
  }

  private async reload(scope: string, s: ScopeCache): Promise<void> {
    const prefix = KEY.ips(scope);
    const entries = await this.store.list(prefix);
    s.used.clear();
    for (const e of entries) {
      const claim = parseJson<IpClaim>(e.value);
      if (claim) s.used.set(e.key.slice(prefix.length), { claim, revision: e.revision });
    }
  }

  /**
   * Start-up reconcile: claims with no Attachment were written by an ADD that never committed (the daemon
   * died between). Ours are removed now; another agent's only when older than `graceMs` (it may be in flight).
   */
  async reconcile(graceMs = 60_000): Promise<number> {
    const atts = new Set((await this.store.list(KEY.atts)).map((e) => e.key));
    let removed = 0;
    for (const e of await this.store.list('overlay/ip/')) {
      const c = parseJson<IpClaim>(e.value);
      if (!c) continue;
      if (atts.has(KEY.att(c.network, c.containerId, c.ifName))) continue;
      const old = Date.now() - Date.parse(c.at) > graceMs;
      if (c.agentId !== this.agent.agentId && !old) continue;
      if (await this.store.delete(e.key, e.revision)) removed++;
    }
    this.scopes.clear();
    this.stats.orphansReclaimed += removed;
    return removed;
  }

  async add(config: Record<string, unknown>, containerId: string, ifName: string, cniArgs: string | undefined): Promise<CniResult> {
    const plan = planFor(config, this.agent);
    const wanted = requestedIps(config, cniArgs);
    const owner = ownerOf(config, cniArgs);
    const cniVersion = typeof config.cniVersion === 'string' ? config.cniVersion : '1.1.0';
    return this.lock(plan.network, async () => {
      const attKey = KEY.att(plan.network, containerId, ifName);
      const existing = await this.store.get(attKey);
      if (existing) {
        // The same ADD again (a plugin killed after we committed, then retried): same answer, no new address.
        const att = parseJson<Attachment>(existing.value);
        if (att) return { ...att.result, cniVersion };
      }
      const build = (picked: Array<{ set: RangeSet; value: bigint; rangeIndex: number }>): { result: CniResult; att: Attachment } => {
        const ips: AttachmentIp[] = picked.map(({ set, value, rangeIndex }) => {
          const range = set.ranges[rangeIndex]!;
          return {
            address: hostInCidr(range.subnet, value),
            scope: set.scope,
            ...(range.gateway !== undefined ? { gateway: formatAddr(set.family, range.gateway) } : {}),
          };
        });
        const unmatched = wanted.filter((w) => !picked.some((p) => p.value === w.value && p.set.family === w.family));
        if (unmatched.length > 0) {
          throw new CniFailure(
            CniCode.INVALID_CONFIG,
            `requested address ${unmatched[0]!.text} is in none of the ranges of network ${plan.network}`,
            'IP',
          );
        }
        const result: CniResult = {
          cniVersion,
          ips: ips.map((ip) => ({
            address: ip.address,
            ...(ip.gateway !== undefined ? { gateway: ip.gateway } : {}),
            ...(cniVersion.startsWith('0.') ? { version: ip.address.includes(':') ? '6' : '4' } : {}),
          })),
          routes: plan.routes,
          dns: plan.dns,
        };
        const att: Attachment = {
          network: plan.network,
          containerId,
          ifName,
          agentId: this.agent.agentId,
          ips,
          ...(owner ? { owner } : {}),
          result,
          at: new Date().toISOString(),
        };
        return { result, att };
      };
      const wantFor = (set: RangeSet) => wanted.find((w) => w.family === set.family && set.ranges.some((r) => contains(r.subnet, w)));

      const fast = await this.addFast(plan, containerId, ifName, attKey, wantFor, build);
      if (fast) {
        this.stats.adds++;
        return fast;
      }

      // Slow path (a stale cache, a requested address in use, exhaustion): one claim after another.
      const taken: Array<{ scope: string; addr: string; revision: number }> = [];
      try {
        const picked: Array<{ set: RangeSet; value: bigint; rangeIndex: number }> = [];
        for (const set of plan.sets) {
          const got = await this.claimOne(set, plan.network, containerId, ifName, wantFor(set));
          taken.push(got);
          picked.push({ set, value: got.value, rangeIndex: got.rangeIndex });
        }
        const { result, att } = build(picked);
        if (!(await this.store.cas(attKey, 0, JSON.stringify(att), LEASE_WRITE))) {
          throw new CniFailure(CniCode.TRY_AGAIN_LATER, `a concurrent ADD for ${containerId}/${ifName} on ${plan.network} won`);
        }
        this.stats.adds++;
        return result;
      } catch (e) {
        // All-or-nothing: give back every address this ADD claimed.
        await Promise.all(taken.map((t) => this.release(t.scope, t.addr, t.revision)));
        this.stats.failures++;
        throw e;
      }
    });
  }

  /**
   * The common case in one group commit: pick every address from the cache, then issue their claims and
   * the Attachment together (the embedded store decides each CAS when issued and journals them in order,
   * usually in one frame: one fdatasync instead of one per write). If any claim loses (the cache was
   * stale), everything this attempt wrote is deleted and the caller takes the slow path. Returns
   * undefined when the fast path does not apply.
   */
  private async addFast(
    plan: Plan,
    containerId: string,
    ifName: string,
    attKey: string,
    wantFor: (set: RangeSet) => { value: bigint; text: string } | undefined,
    build: (picked: Array<{ set: RangeSet; value: bigint; rangeIndex: number }>) => { result: CniResult; att: Attachment },
  ): Promise<CniResult | undefined> {
    const caches = await Promise.all(plan.sets.map((set) => this.scope(set.scope)));
    const picked: Array<{ set: RangeSet; value: bigint; rangeIndex: number; addr: string; cache: ScopeCache }> = [];
    for (let i = 0; i < plan.sets.length; i++) {
      const set = plan.sets[i]!;
      const cache = caches[i]!;
      const want = wantFor(set);
      let pick: { value: bigint; rangeIndex: number } | undefined;
      if (want) {
        const ri = set.ranges.findIndex((r) => want.value >= r.start && want.value <= r.end && want.value !== r.gateway);
        if (ri >= 0 && !cache.used.has(formatAddr(set.family, want.value))) pick = { value: want.value, rangeIndex: ri };
      } else {
        pick = this.candidates(set, cache).next().value ?? undefined;
      }
      if (!pick || picked.some((p) => p.set.scope === set.scope && p.value === pick!.value)) return undefined;
      picked.push({ set, ...pick, addr: formatAddr(set.family, pick.value), cache });
    }
    let built;
    try {
      built = build(picked);
    } catch {
      return undefined; // let the slow path report it
    }
    const claim = JSON.stringify({
      network: plan.network,
      containerId,
      ifName,
      agentId: this.agent.agentId,
      at: new Date().toISOString(),
    } satisfies IpClaim);
    const placeholder: IpClaim = JSON.parse(claim) as IpClaim;
    for (const p of picked) p.cache.used.set(p.addr, { claim: placeholder, revision: -1 });
    const writes = picked.map((p) => this.store.cas(KEY.ip(p.set.scope, p.addr), 0, claim, LEASE_WRITE));
    const attWrite = this.store.cas(attKey, 0, JSON.stringify(built.att), LEASE_WRITE);
    const settled = await Promise.allSettled([...writes, attWrite]);
    const ok = settled.every((r) => r.status === 'fulfilled' && r.value !== null);
    if (ok) {
      picked.forEach((p, i) => {
        const e = (settled[i] as PromiseFulfilledResult<{ revision: number }>).value;
        p.cache.used.set(p.addr, { claim: placeholder, revision: e.revision });
        if (!wantFor(p.set)) p.cache.cursor.set(p.set.label, p.value);
      });
      return built.result;
    }
    // Undo: the Attachment first (it is the commit), then our claims; refresh what we lost.
    const attRes = settled[settled.length - 1]!;
    if (attRes.status === 'fulfilled' && attRes.value) await this.store.delete(attKey, attRes.value.revision, LEASE_WRITE);
    await Promise.all(
      picked.map(async (p, i) => {
        const r = settled[i]!;
        if (r.status === 'fulfilled' && r.value) {
          await this.store.delete(KEY.ip(p.set.scope, p.addr), r.value.revision, LEASE_WRITE);
          p.cache.used.delete(p.addr);
        } else {
          const cur = await this.store.get(KEY.ip(p.set.scope, p.addr));
          const c = cur && parseJson<IpClaim>(cur.value);
          if (cur && c) p.cache.used.set(p.addr, { claim: c, revision: cur.revision });
          else p.cache.used.delete(p.addr);
        }
      }),
    );
    if (attRes.status === 'fulfilled' && !attRes.value) {
      throw new CniFailure(CniCode.TRY_AGAIN_LATER, `a concurrent ADD for ${containerId}/${ifName} on ${plan.network} won`);
    }
    const rejected = settled.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (rejected) throw rejected.reason;
    return undefined;
  }

  private async claimOne(
    set: RangeSet,
    network: string,
    containerId: string,
    ifName: string,
    want: { value: bigint; text: string } | undefined,
  ): Promise<{ scope: string; addr: string; revision: number; value: bigint; rangeIndex: number }> {
    const s = await this.scope(set.scope);
    const claim: IpClaim = { network, containerId, ifName, agentId: this.agent.agentId, at: new Date().toISOString() };
    const value = JSON.stringify(claim);
    const tryClaim = async (v: bigint): Promise<number | null> => {
      const addr = formatAddr(set.family, v);
      s.used.set(addr, { claim, revision: -1 }); // reserve before the await: nobody here picks it meanwhile
      const entry = await this.store.cas(KEY.ip(set.scope, addr), 0, value, LEASE_WRITE);
      if (entry) {
        s.used.set(addr, { claim, revision: entry.revision });
        return entry.revision;
      }
      const cur = await this.store.get(KEY.ip(set.scope, addr));
      const c = cur && parseJson<IpClaim>(cur.value);
      if (cur && c) s.used.set(addr, { claim: c, revision: cur.revision });
      else s.used.delete(addr);
      return null;
    };
    if (want) {
      const rangeIndex = set.ranges.findIndex((r) => want.value >= r.start && want.value <= r.end && want.value !== r.gateway);
      if (rangeIndex < 0)
        throw new CniFailure(
          CniCode.INVALID_CONFIG,
          `requested address ${want.text} is outside the allocatable range of ${set.label} (or is its gateway)`,
          'IP',
        );
      const rev = await tryClaim(want.value);
      if (rev === null) {
        const holder = s.used.get(formatAddr(set.family, want.value))?.claim;
        throw new CniFailure(
          CniCode.ADDRESS_IN_USE,
          `requested address ${want.text} is already in use`,
          holder ? `held by ${holder.containerId}/${holder.ifName} on ${holder.network}` : undefined,
        );
      }
      return { scope: set.scope, addr: formatAddr(set.family, want.value), revision: rev, value: want.value, rangeIndex };
    }
    for (let pass = 0; pass < 2; pass++) {
      for (const cand of this.candidates(set, s)) {
        const rev = await tryClaim(cand.value);
        if (rev !== null) {
          s.cursor.set(set.label, cand.value);
          return {
            scope: set.scope,
            addr: formatAddr(set.family, cand.value),
            revision: rev,
            value: cand.value,
            rangeIndex: cand.rangeIndex,
          };
        }
      }
      // Nothing free according to the cache: re-read the scope once (another daemon may have released some).
      await this.reload(set.scope, s);
    }
    throw new CniFailure(
      CniCode.EXHAUSTED,
      `no free address left in ${set.label}`,
      set.ranges.map((r) => `${formatAddr(set.family, r.start)}-${formatAddr(set.family, r.end)}`).join(', '),
    );
  }

  /** Free addresses in round-robin order after the cursor (host-local's way), bounded: a /80 is never enumerated. */
  private *candidates(set: RangeSet, s: ScopeCache): Generator<{ value: bigint; rangeIndex: number }> {
    const cursor = s.cursor.get(set.label);
    const n = set.ranges.length;
    const segs: Array<[number, bigint, bigint]> = [];
    const ci = cursor === undefined ? -1 : set.ranges.findIndex((r) => cursor >= r.start && cursor <= r.end);
    if (ci < 0 || cursor === undefined) {
      set.ranges.forEach((r, i) => segs.push([i, r.start, r.end]));
    } else {
      const r = set.ranges[ci]!;
      segs.push([ci, cursor + 1n, r.end]);
      for (let k = 1; k < n; k++) {
        const j = (ci + k) % n;
        segs.push([j, set.ranges[j]!.start, set.ranges[j]!.end]);
      }
      segs.push([ci, r.start, cursor]);
    }
    let budget = s.used.size + 4096;
    for (const [ri, from, to] of segs) {
      const gw = set.ranges[ri]!.gateway;
      for (let v = from; v <= to; v++) {
        if (v === gw || s.used.has(formatAddr(set.family, v))) continue;
        yield { value: v, rangeIndex: ri };
        if (--budget <= 0) return;
      }
    }
  }

  private async release(scope: string, addr: string, revision: number): Promise<void> {
    await this.store.delete(KEY.ip(scope, addr), revision, LEASE_WRITE);
    this.scopes.get(scope)?.used.delete(addr);
  }

  /**
   * Release everything held by (network, containerId, ifName). Idempotent. The Attachment (the commit
   * record) and the claims are deleted in one go: one group commit (one fdatasync) on the embedded store,
   * the Attachment first, so a daemon stopped in between leaves only orphan claims, which the next
   * start-up removes.
   */
  async del(config: Record<string, unknown>, containerId: string, ifName: string): Promise<void> {
    const network = config.name as string;
    await this.lock(network, async () => {
      const attKey = KEY.att(network, containerId, ifName);
      const cur = await this.store.get(attKey);
      const att = cur && parseJson<Attachment>(cur.value);
      const scopes = new Set<string>(att ? att.ips.map((i) => i.scope) : []);
      // Claims without an Attachment (an ADD cut short) are found through the scopes the config names.
      try {
        for (const set of planFor(config, this.agent).sets) scopes.add(set.scope);
      } catch {
        // A DEL must succeed even when the config no longer plans (the agent lost its subnet): scan all.
        for (const e of await this.store.list('overlay/ip/')) scopes.add(decodeURIComponent(e.key.split('/')[2] ?? ''));
      }
      const listed = await Promise.all([...scopes].map(async (scope) => ({ scope, entries: await this.store.list(KEY.ips(scope)) })));
      const writes: Array<Promise<unknown>> = [];
      if (cur) writes.push(this.store.delete(attKey, cur.revision, LEASE_WRITE));
      for (const { scope, entries } of listed) {
        const prefix = KEY.ips(scope);
        for (const e of entries) {
          const c = parseJson<IpClaim>(e.value);
          if (!c || c.network !== network || c.containerId !== containerId || c.ifName !== ifName) continue;
          writes.push(
            this.store.delete(e.key, e.revision, LEASE_WRITE).then((ok) => {
              if (ok) this.scopes.get(scope)?.used.delete(e.key.slice(prefix.length));
            }),
          );
        }
      }
      await Promise.all(writes);
      this.stats.dels++;
    });
  }

  private async releaseOwned(scope: string, owned: (c: IpClaim) => boolean): Promise<number> {
    const prefix = KEY.ips(scope);
    let n = 0;
    for (const e of await this.store.list(prefix)) {
      const c = parseJson<IpClaim>(e.value);
      if (c && owned(c) && (await this.store.delete(e.key, e.revision))) {
        this.scopes.get(scope)?.used.delete(e.key.slice(prefix.length));
        n++;
      }
    }
    return n;
  }

  async check(config: Record<string, unknown>, containerId: string, ifName: string): Promise<void> {
    const network = config.name as string;
    const cur = await this.store.get(KEY.att(network, containerId, ifName));
    const att = cur && parseJson<Attachment>(cur.value);
    if (!att) throw new CniFailure(CniCode.NO_LEASE, `no lease for container ${containerId} interface ${ifName} on network ${network}`);
    for (const ip of att.ips) {
      const [addr] = ip.address.split('/');
      const claim = await this.store.get(KEY.ip(ip.scope, canonical(addr!)));
      const c = claim && parseJson<IpClaim>(claim.value);
      if (!c || c.containerId !== containerId || c.ifName !== ifName || c.network !== network) {
        throw new CniFailure(CniCode.NO_LEASE, `lease of ${ip.address} for ${containerId}/${ifName} on ${network} is gone`);
      }
    }
    const prev = asRecord(config.prevResult);
    if (prev && Array.isArray(prev.ips)) {
      const have = new Set(att.ips.map((i) => canonical(i.address.split('/')[0]!)));
      for (const p of prev.ips) {
        const a = asRecord(p)?.address;
        if (typeof a !== 'string') continue;
        const c = canonical(a.split('/')[0]!);
        if (!have.has(c))
          throw new CniFailure(CniCode.NO_LEASE, `prevResult address ${a} is not leased to ${containerId}/${ifName} on ${network}`);
      }
    }
  }

  /** CNI GC: free every lease of this network not in `cni.dev/valid-attachments`. Keeps going on errors. */
  async gc(config: Record<string, unknown>): Promise<number> {
    const network = config.name as string;
    const valid = new Set<string>();
    const list = config['cni.dev/valid-attachments'];
    if (list !== undefined && !Array.isArray(list)) throw bad('"cni.dev/valid-attachments" must be a list', 'cni.dev/valid-attachments');
    for (const v of (list as unknown[] | undefined) ?? []) {
      const r = asRecord(v);
      if (r && typeof r.containerID === 'string' && typeof r.ifname === 'string') valid.add(`${r.containerID}\0${r.ifname}`);
    }
    return this.lock(network, async () => {
      let freed = 0;
      const errors: string[] = [];
      const keep = (cid: string, ifName: string) => valid.has(`${cid}\0${ifName}`);
      const scopes = new Set<string>();
      for (const e of await this.store.list(KEY.attsOf(network))) {
        const att = parseJson<Attachment>(e.value);
        if (!att) continue;
        for (const ip of att.ips) scopes.add(ip.scope);
        if (keep(att.containerId, att.ifName)) continue;
        try {
          await this.store.delete(e.key, e.revision);
          freed++;
        } catch (err) {
          errors.push(String(err));
        }
      }
      try {
        for (const set of planFor(config, this.agent).sets) scopes.add(set.scope);
      } catch {
        // keep the scopes the attachments named
      }
      for (const scope of scopes) {
        try {
          const n = await this.releaseOwned(scope, (c) => c.network === network && !keep(c.containerId, c.ifName));
          this.stats.orphansReclaimed += n;
        } catch (err) {
          errors.push(String(err));
        }
      }
      this.stats.gcs++;
      if (errors.length > 0)
        throw new CniFailure(CniCode.IO_FAILURE, `GC of ${network} freed ${freed} lease(s) but hit errors`, errors.join('; '));
      return freed;
    });
  }

  /** STATUS: can an ADD be served for this config? (An agent subnet is held and a pool has a free address.) */
  async status(config: Record<string, unknown>): Promise<void> {
    let plan: Plan;
    try {
      plan = planFor(config, this.agent);
    } catch (e) {
      if (e instanceof CniFailure && e.code === CniCode.NO_AGENT_SUBNET) throw new CniFailure(CniCode.NOT_AVAILABLE, e.message, e.details);
      throw e;
    }
    for (const set of plan.sets) {
      const s = await this.scope(set.scope);
      if (this.candidates(set, s).next().done) throw new CniFailure(CniCode.NOT_AVAILABLE, `no free address left in ${set.label}`);
    }
  }

  /** Leased and total addresses of a scope's cache, for status. */
  async usage(scope: string): Promise<number> {
    return (await this.scope(scope)).used.size;
  }
}
