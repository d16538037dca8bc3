/**
 * Stable addresses for named VIPs, as dcos-l4lb gives them: `web.marathon.l4lb.thisdcos.directory` gets
 * one address from 11.0.0.0/8 (fd01:c::/64 for a VIP whose endpoints are all IPv6), the same on every
 * instance and after every restart.
 *
 * - Initial address: sha1(`<name>.<framework>`) modulo the range (dcos-l4lb uses Erlang's phash2, which
 *   is not portable; sha1 is, so any implementation can recompute it). IPv4 hands out 11.0.0.1 …
 *   11.255.255.254 (not the range's first and last address); IPv6 fd01:c::1 … fd01:c::ffff:ffff:ffff:ffff.
 * - Collision: the next address (linear probing, wrapping), as dcos-l4lb does.
 * - One address per DNS name, not per port: `/web:80` and `/web:443` (and a UDP VIP of the same name) are
 *   one name, so they share one address, each on its own port.
 * - Recorded in the store, so every instance and restart agrees, with compare-and-set only (several
 *   instances may share one Redis store; a lost race is re-read and retried):
 *     `portico/vips/name/<ipv4|ipv6>/<name>.<framework>` → {name, framework, family, ip, allocatedAt, idleSince}
 *     `portico/vips/ip/<address>` → {owner: "<family>/<name>.<framework>", claimedAt}   (the reverse index)
 *   An address is claimed by creating its reverse-index key (CAS on "must not exist"), then the name key is
 *   created pointing at it. A crash or a lost race between the two leaves a reverse entry whose owner has
 *   no name record: the next allocation of that name adopts it, and a sweep removes it after a minute.
 * - Release: a name whose VIPs have had no endpoints for `graceMs` (default 5 min) gives its address back
 *   (`idleSince` is in the store, so the clock survives restarts and is shared). A name without endpoints
 *   keeps an address it has but is not given a new one.
 *
 * annotate() never rejects: if the store cannot be reached it logs and serves the addresses it last saw,
 * so a store outage does not take VIPs away.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { RoutingTable, TableChange, VipEntry } from '../model/types.js';
import type { Entry, Store } from '../store/types.js';
import type { Logger } from '../telemetry/log.js';
import { silentLogger } from '../telemetry/log.js';

export type VipFamily = 'ipv4' | 'ipv6';

export const NAME_PREFIX = 'portico/vips/name/';
export const IP_PREFIX = 'portico/vips/ip/';

/** A reverse-index entry whose owner has no name record is removed after this long (a crashed claim). */
const ORPHAN_MS = 60_000;
/** CAS rounds per name before giving up for this table (the next table tries again). */
const MAX_ROUNDS = 16;

export interface VipAllocatorOptions {
  logger?: Logger;
  /** Release an address after its VIP has had no endpoints this long, ms. Default 5 min. */
  graceMs?: number;
  /** Address ranges (CIDR). Defaults 11.0.0.0/8 and fd01:c::/64, as dcos-l4lb. Tests use tiny ones. */
  ranges?: { ipv4?: string; ipv6?: string };
  /** Addresses tried per name before giving up (range full). Default min(range size, 65536). */
  maxProbes?: number;
  /** ms since epoch (tests). */
  clock?: () => number;
}

interface NameRecord {
  name: string;
  framework: string;
  family: VipFamily;
  ip: string;
  allocatedAt: string;
  /** ISO time since when its VIPs have had no endpoints; null while they have some. */
  idleSince: string | null;
}

interface IpRecord {
  owner: string;
  claimedAt: string;
}

interface Range {
  family: VipFamily;
  /** First usable address as a number. */
  first: bigint;
  /** Usable addresses. */
  size: bigint;
}

function parseRange(cidr: string, family: VipFamily): Range {
  const [addr, bits] = ipaddr.parseCIDR(cidr);
  if ((addr.kind() === 'ipv4') !== (family === 'ipv4')) throw new TypeError(`VIP range ${cidr} is not ${family}`);
  const width = family === 'ipv4' ? 32 : 128;
  const total = 1n << BigInt(width - bits);
  const base = toBig(addr) & ~(total - 1n);
  // Skip the first and the last address (network/broadcast-looking) when the range has room for it.
  if (total > 4n) return { family, first: base + 1n, size: total - 2n };
  return { family, first: base, size: total };
}

function toBig(a: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  let n = 0n;
  for (const b of a.toByteArray()) n = (n << 8n) | BigInt(b);
  return n;
}

function fromBig(n: bigint, family: VipFamily): string {
  const len = family === 'ipv4' ? 4 : 16;
  const bytes: number[] = new Array<number>(len);
  for (let i = len - 1; i >= 0; i--) {
    bytes[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  const a = ipaddr.fromByteArray(bytes);
  return a.kind() === 'ipv6' ? (a as ipaddr.IPv6).toRFC5952String() : a.toString();
}

/** The address a name starts probing from: sha1(`name.framework`) modulo the range. */
export function initialOffset(fqn: string, range: { size: bigint }): bigint {
  const d = createHash('sha1').update(fqn).digest();
  return d.readBigUInt64BE(0) % range.size;
}

const decode = <T>(e: Entry): T | undefined => {
  try {
    return JSON.parse(e.value.toString('utf8')) as T;
  } catch {
    return undefined;
  }
};

interface Demand {
  name: string;
  framework: string;
  hasEndpoints: boolean;
  v4: boolean;
  v6: boolean;
  /** Ids of the services behind the name's VIPs. */
  services: string[];
}

function addEndpoints(d: Demand, table: RoutingTable, service: string): void {
  for (const e of table.services.get(service)?.endpoints ?? []) {
    d.hasEndpoints = true;
    if (net.isIPv6(e.address)) d.v6 = true;
    else d.v4 = true;
  }
}

function sameEntry(a: VipEntry, b: VipEntry): boolean {
  return (
    a.key === b.key &&
    a.ip === b.ip &&
    a.service === b.service &&
    a.port === b.port &&
    a.protocol === b.protocol &&
    a.name === b.name &&
    a.address === b.address &&
    a.framework === b.framework &&
    a.proxyProtocol === b.proxyProtocol
  );
}

export class VipAllocator {
  private readonly log: Logger;
  private readonly graceMs: number;
  private readonly ranges: Record<VipFamily, Range>;
  private readonly maxProbes: Record<VipFamily, number>;
  private readonly clock: () => number;
  /** `<family>/<fqn>` → address, as last read or written: served while the store is unreachable. */
  private readonly known = new Map<string, string>();
  private queue: Promise<unknown> = Promise.resolve();
  /** The last table annotated: its VIPs in and out, and what each name asked for. */
  private last: { in: readonly VipEntry[]; out: readonly VipEntry[]; demand: Map<string, Demand> } | undefined;

  constructor(
    private readonly store: Store,
    opts: VipAllocatorOptions = {},
  ) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'vips' });
    this.graceMs = opts.graceMs ?? 300_000;
    if (!(this.graceMs >= 0)) throw new TypeError(`VipAllocator: graceMs ${opts.graceMs} must be ≥ 0`);
    this.ranges = {
      ipv4: parseRange(opts.ranges?.ipv4 ?? '11.0.0.0/8', 'ipv4'),
      ipv6: parseRange(opts.ranges?.ipv6 ?? 'fd01:c::/64', 'ipv6'),
    };
    const cap = (r: Range) => Number(r.size < BigInt(opts.maxProbes ?? 65_536) ? r.size : BigInt(opts.maxProbes ?? 65_536));
    this.maxProbes = { ipv4: cap(this.ranges.ipv4), ipv6: cap(this.ranges.ipv6) };
    this.clock = opts.clock ?? Date.now;
  }

  /** The address `name.framework` would try first in `family` (tests, and operators checking a mapping). */
  initialAddress(name: string, framework: string, family: VipFamily = 'ipv4'): string {
    const r = this.ranges[family];
    return fromBig(r.first + initialOffset(`${name}.${framework}`, r), family);
  }

  /**
   * A new table (same version and hash, frozen) whose named VIPs carry `ip` (absent while a name has no
   * address: it has never had endpoints, or its range is full) and whose IP VIPs carry `ip = address`.
   * Calls are serialised: a table is annotated after the one before it.
   *
   * With `change` (what differs from the table annotated last), a table whose VIPs are the same and whose
   * changed services leave every name's demand as it was (endpoints or none, which families) gets the last
   * addresses without reading the store: an endpoint change costs a look at that service only.
   */
  annotate(table: RoutingTable, change?: TableChange): Promise<RoutingTable> {
    const run = this.queue.then(() => this.annotateNow(table, change));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async annotateNow(table: RoutingTable, change: TableChange | undefined): Promise<RoutingTable> {
    const last = this.last;
    if (change && last && !change.vips && last.in === table.vips && this.sameDemand(table, change, last.demand))
      return Object.freeze({ ...table, vips: last.out as VipEntry[] });
    const demand = new Map<string, Demand>();
    for (const v of table.vips) {
      if (v.name === undefined) continue;
      const fqn = `${v.name}.${v.framework}`;
      let d = demand.get(fqn);
      if (!d) {
        d = { name: v.name, framework: v.framework, hasEndpoints: false, v4: false, v6: false, services: [] };
        demand.set(fqn, d);
      }
      d.services.push(v.service);
      addEndpoints(d, table, v.service);
    }
    let assigned: Map<string, string>;
    try {
      assigned = await this.reconcile(demand);
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, version: table.version },
        'vips: store unavailable; serving the VIP addresses last seen',
      );
      assigned = new Map();
      for (const [fqn, d] of demand) {
        const ip = this.known.get(`${this.familyOf(d)}/${fqn}`) ?? this.known.get(`ipv4/${fqn}`) ?? this.known.get(`ipv6/${fqn}`);
        if (ip) assigned.set(fqn, ip);
      }
    }
    const vips = table.vips.map((v): VipEntry => {
      const out: VipEntry = { ...v };
      delete out.ip;
      if (v.name !== undefined) {
        const ip = assigned.get(`${v.name}.${v.framework}`);
        if (ip) out.ip = ip;
      } else if (v.address !== undefined) {
        out.ip = v.address;
      }
      return Object.freeze(out);
    });
    // The same addresses as last time: pass the same array on, so the planes see the VIPs unchanged.
    const same = last !== undefined && last.out.length === vips.length && vips.every((v, i) => sameEntry(v, last.out[i] as VipEntry));
    const out = same ? last.out : Object.freeze(vips);
    this.last = { in: table.vips, out, demand };
    return Object.freeze({ ...table, vips: out as VipEntry[] });
  }

  /** Whether every name served by a changed service asks for what it asked before. */
  private sameDemand(table: RoutingTable, change: TableChange, demand: Map<string, Demand>): boolean {
    const ids = new Set([...change.upserted, ...change.removed]);
    if (ids.size === 0) return true;
    for (const d of demand.values()) {
      if (!d.services.some((id) => ids.has(id))) continue;
      const now: Demand = { ...d, hasEndpoints: false, v4: false, v6: false };
      for (const id of d.services) addEndpoints(now, table, id);
      if (now.hasEndpoints !== d.hasEndpoints || now.v4 !== d.v4 || now.v6 !== d.v6) return false;
    }
    return true;
  }

  /** IPv6 when every endpoint is IPv6 (and there is one); IPv4 otherwise. */
  private familyOf(d: Demand): VipFamily {
    return d.v6 && !d.v4 ? 'ipv6' : 'ipv4';
  }

  private async reconcile(demand: Map<string, Demand>): Promise<Map<string, string>> {
    const now = this.clock();
    const names = new Map<string, { entry: Entry; rec: NameRecord }>();
    for (const e of await this.store.list(NAME_PREFIX)) {
      const rec = decode<NameRecord>(e);
      if (rec && typeof rec.ip === 'string') names.set(e.key.slice(NAME_PREFIX.length), { entry: e, rec });
    }
    const ips = new Map<string, { entry: Entry; rec: IpRecord }>();
    for (const e of await this.store.list(IP_PREFIX)) {
      const rec = decode<IpRecord>(e);
      if (rec && typeof rec.owner === 'string') ips.set(e.key.slice(IP_PREFIX.length), { entry: e, rec });
    }
    const assigned = new Map<string, string>();
    const active = new Set<string>();
    for (const [fqn, d] of demand) {
      const family = this.familyOf(d);
      const owner = `${family}/${fqn}`;
      if (d.hasEndpoints) {
        active.add(owner);
        const ip = await this.ensure(d, family, names, ips, now);
        if (ip) assigned.set(fqn, ip);
      } else {
        // No endpoints: keep what it has (the other family's too), allocate nothing.
        const ip = names.get(owner)?.rec.ip ?? names.get(`ipv4/${fqn}`)?.rec.ip ?? names.get(`ipv6/${fqn}`)?.rec.ip;
        if (ip) assigned.set(fqn, ip);
      }
    }
    // Everything recorded but not in use with endpoints: start its grace period, or end it.
    for (const [owner, { entry, rec }] of names) {
      if (active.has(owner)) continue;
      if (rec.idleSince === null || rec.idleSince === undefined) {
        await this.store.cas(NAME_PREFIX + owner, entry.revision, JSON.stringify({ ...rec, idleSince: new Date(now).toISOString() }));
        continue;
      }
      if (now - Date.parse(rec.idleSince) < this.graceMs) continue;
      if (await this.store.delete(NAME_PREFIX + owner, entry.revision)) {
        const r = ips.get(rec.ip);
        if (r && r.rec.owner === owner) await this.store.delete(IP_PREFIX + rec.ip, r.entry.revision);
        this.known.delete(owner);
        const fqn = owner.slice(owner.indexOf('/') + 1);
        if (assigned.get(fqn) === rec.ip) assigned.delete(fqn);
        this.log.info({ vip: fqn, ip: rec.ip, idleSince: rec.idleSince }, 'vips: address released (no endpoints for the grace period)');
      }
    }
    // Reverse entries of claims that never got their name record (a crash between the two writes).
    for (const [ip, { entry, rec }] of ips) {
      if (names.get(rec.owner)?.rec.ip === ip) continue;
      if (now - Date.parse(rec.claimedAt) < ORPHAN_MS) continue;
      if (await this.store.delete(IP_PREFIX + ip, entry.revision))
        this.log.info({ ip, owner: rec.owner }, 'vips: orphaned address claim removed');
    }
    return assigned;
  }

  /** The address of `d` in `family`: the recorded one (repaired if its reverse entry is missing), or a new one. */
  private async ensure(
    d: Demand,
    family: VipFamily,
    names: Map<string, { entry: Entry; rec: NameRecord }>,
    ips: Map<string, { entry: Entry; rec: IpRecord }>,
    now: number,
  ): Promise<string | undefined> {
    const fqn = `${d.name}.${d.framework}`;
    const owner = `${family}/${fqn}`;
    const nameKey = NAME_PREFIX + owner;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const cur = names.get(owner);
      if (cur) {
        const { entry, rec } = cur;
        const rev = ips.get(rec.ip);
        if (!rev) {
          // Reverse entry missing (released under us, or a half-finished claim): take it back.
          const made = await this.store.cas(IP_PREFIX + rec.ip, 0, JSON.stringify({ owner, claimedAt: new Date(now).toISOString() }));
          if (!made) {
            await this.reread(IP_PREFIX + rec.ip, ips, IP_PREFIX);
            continue;
          }
          ips.set(rec.ip, { entry: made, rec: { owner, claimedAt: new Date(now).toISOString() } });
        } else if (rev.rec.owner !== owner) {
          // Our address belongs to another name now: drop our record and allocate afresh.
          this.log.warn({ vip: fqn, ip: rec.ip, holder: rev.rec.owner }, 'vips: recorded address is held by another VIP; reallocating');
          await this.store.delete(nameKey, entry.revision);
          names.delete(owner);
          continue;
        }
        if (rec.idleSince !== null && rec.idleSince !== undefined) {
          const upd = await this.store.cas(nameKey, entry.revision, JSON.stringify({ ...rec, idleSince: null }));
          if (!upd) {
            await this.rereadName(owner, names);
            continue;
          }
          names.set(owner, { entry: upd, rec: { ...rec, idleSince: null } });
        }
        this.known.set(owner, rec.ip);
        return rec.ip;
      }
      const claimed = await this.claim(d, family, owner, ips, now);
      if (!claimed) return undefined;
      const rec: NameRecord = {
        name: d.name,
        framework: d.framework,
        family,
        ip: claimed,
        allocatedAt: new Date(now).toISOString(),
        idleSince: null,
      };
      const made = await this.store.cas(nameKey, 0, JSON.stringify(rec));
      if (made) {
        names.set(owner, { entry: made, rec });
        this.known.set(owner, claimed);
        this.log.info({ vip: fqn, ip: claimed, family }, 'vips: address allocated');
        return claimed;
      }
      // Another instance recorded this name first: use its record; give our claim back if it differs.
      const theirs = await this.rereadName(owner, names);
      if (theirs && theirs.rec.ip !== claimed) {
        const mine = ips.get(claimed);
        if (mine && mine.rec.owner === owner) {
          await this.store.delete(IP_PREFIX + claimed, mine.entry.revision);
          ips.delete(claimed);
        }
      }
    }
    this.log.warn(
      { vip: fqn, family },
      'vips: could not settle an address (the store keeps changing under us); retrying with the next table',
    );
    return undefined;
  }

  /** Claim the first free address from the name's hash on (its reverse entry); undefined when the range is full. */
  private async claim(
    d: Demand,
    family: VipFamily,
    owner: string,
    ips: Map<string, { entry: Entry; rec: IpRecord }>,
    now: number,
  ): Promise<string | undefined> {
    const range = this.ranges[family];
    const start = initialOffset(`${d.name}.${d.framework}`, range);
    const value = JSON.stringify({ owner, claimedAt: new Date(now).toISOString() });
    for (let i = 0; i < this.maxProbes[family]; i++) {
      const ip = fromBig(range.first + ((start + BigInt(i)) % range.size), family);
      const held = ips.get(ip);
      if (held) {
        if (held.rec.owner === owner) return ip; // ours already (an earlier, interrupted claim)
        continue;
      }
      const made = await this.store.cas(IP_PREFIX + ip, 0, value);
      if (made) {
        ips.set(ip, { entry: made, rec: { owner, claimedAt: new Date(now).toISOString() } });
        return ip;
      }
      const now2 = await this.reread(IP_PREFIX + ip, ips, IP_PREFIX);
      if (now2?.owner === owner) return ip;
    }
    this.log.error({ vip: `${d.name}.${d.framework}`, family, probes: this.maxProbes[family] }, 'vips: no free address in the VIP range');
    return undefined;
  }

  private async reread(key: string, ips: Map<string, { entry: Entry; rec: IpRecord }>, prefix: string): Promise<IpRecord | undefined> {
    const e = await this.store.get(key);
    const ip = key.slice(prefix.length);
    const rec = e ? decode<IpRecord>(e) : undefined;
    if (e && rec) ips.set(ip, { entry: e, rec });
    else ips.delete(ip);
    return rec;
  }

  private async rereadName(
    owner: string,
    names: Map<string, { entry: Entry; rec: NameRecord }>,
  ): Promise<{ entry: Entry; rec: NameRecord } | undefined> {
    const e = await this.store.get(NAME_PREFIX + owner);
    const rec = e ? decode<NameRecord>(e) : undefined;
    if (e && rec) {
      const v = { entry: e, rec };
      names.set(owner, v);
      return v;
    }
    names.delete(owner);
    return undefined;
  }
}
