/**
 * The compiled zone of one routing table. Not changed while it serves; the plane swaps zones in one
 * assignment.
 *
 * Built per table: compact indexes (patch.ts `ZoneIndex`) — served endpoints by `task.framework`, by
 * `_task.framework` (SRV label), by canonical `T-hash.framework`, VIP addresses by `vip.framework`,
 * agents, PTR targets by address, and the empty non-terminals (names with nothing but names below them)
 * — a few map inserts per endpoint, so a 100,000-endpoint table compiles in a fraction of a second and
 * not every name of names.ts is built. On a name's first query it is resolved from the indexes into a
 * ZoneNode (memoised, bounded), and each (name, type) answer is compiled to a complete response message
 * once and reused. `emitRecords` (names.ts) is the specification; tests hold the zone to it.
 *
 * A table change need not compile again: `patchZone` derives the next zone from the one serving, taking
 * over its indexes and its memo of resolved names. The indexes are patched for the changed services and
 * VIPs only, and the memo loses exactly the names whose records the patch touched (the apexes, whose SOA
 * carries the new serial, are new). The zone patched from is retired: it hands its indexes over and is
 * never served or patched again.
 *
 * Zones (apexes): `mesos`, each extra domain from the config, and `thisdcos.directory`. Every name
 * belongs to the longest apex it ends in. Empty non-terminals answer NODATA, not NXDOMAIN (RFC 8020).
 * Reverse (PTR) names belong to no zone of ours: we answer their PTR records, and NODATA without SOA
 * for other types; other reverse names are not ours (forwarded).
 */
import ipaddr from 'ipaddr.js';
import { DCOS_ZONE, MAX_PTR, reverseOf, type NameInput, type SrvData, type TaskRef } from './names.js';
import { ZoneIndex, type DirtyNames, type IndexChanges, type Indexed } from './patch.js';
import type { Query } from './query.js';
import { F2, F3, HEADER_SIZE, isIPv6, MAX_NAME_WIRE, MessageBuilder, nameToWire, TYPE as WIRE_TYPE, type SoaData } from './wire.js';
// Hot path: imported bindings copied into module constants once (see plane.ts).
const TYPE = { ...WIRE_TYPE };

/** Answer slots per name. Other types are NODATA at an existing name. */
export const SLOT = { A: 0, AAAA: 1, SRV: 2, PTR: 3, SOA: 4, NS: 5, ANY: 6 } as const;
const SLOTS = 7;

export function slotOf(qtype: number): number {
  switch (qtype) {
    case TYPE.A:
      return SLOT.A;
    case TYPE.AAAA:
      return SLOT.AAAA;
    case TYPE.SRV:
      return SLOT.SRV;
    case TYPE.PTR:
      return SLOT.PTR;
    case TYPE.SOA:
      return SLOT.SOA;
    case TYPE.NS:
      return SLOT.NS;
    case TYPE.ANY:
      return SLOT.ANY;
    default:
      return -1;
  }
}

/**
 * A precompiled response: header (id 0, QR|AA, RA, rcode 0, counts), the question in lower case,
 * answer, authority and additional records, no OPT. Record boundaries let the query path rotate
 * answers and drop what does not fit.
 */
export interface Answer {
  buf: Buffer;
  /** Offset just past the question name (12 + its wire length). */
  nameEnd: number;
  /** `an[i]` is where answer i starts; `an[anCount]` is where the answer section ends. */
  an: Int32Array;
  anCount: number;
  /** End of the authority section (we put nothing there in positive answers: minimal responses). */
  nsEnd: number;
  /** `ar[i]` is where additional record i starts; `ar[arCount]` = buf.length. */
  ar: Int32Array;
  arCount: number;
}

export interface ZoneApex {
  name: string;
  key: string;
  /** Wire length of the apex name, terminating zero included. */
  wireLength: number;
  /** The DC/OS zone (`thisdcos.directory`) rather than a Mesos-style one. */
  dcos: boolean;
  soa: SoaData;
  /**
   * The SOA record for negative answers (NXDOMAIN/NODATA), owner left as a compression pointer to be
   * patched per query: the apex is always a suffix of the question name.
   */
  negative: Buffer;
}

export interface ZoneNode {
  /** Dotted, lower case, no trailing dot. */
  name: string;
  key: string;
  /** Zone the name belongs to; undefined for reverse names. */
  zone: ZoneApex | undefined;
  /** Set when the name is a zone apex (SOA, NS). */
  apex: ZoneApex | undefined;
  v4: readonly string[];
  v6: readonly string[];
  srv: readonly SrvData[];
  ptr: readonly string[];
  /** Compiled answers by SLOT, filled on first use. */
  answers: Array<Answer | null | undefined> | undefined;
}

export interface ZoneOptions {
  /** TTL of every record we serve, and the negative TTL (SOA minimum), seconds. */
  ttl: number;
  serial: number;
  version: number;
  /** False for the aggregator's initial empty table: in-zone misses are SERVFAIL, not NXDOMAIN. */
  ready: boolean;
  /** RA flag in every answer. */
  recursionAvailable: boolean;
  /** Resolved names kept at most (then the memo starts over). Default 200,000. */
  maxNodes?: number;
}

/**
 * Build the Zone for `input`. Throws only on a bug (the plane keeps the old zone then). With `lazy` the
 * indexes are built in steps (`Zone.step`), or whole as soon as anything is read from them: the first
 * names resolved, `endpoints`, `skipped`, a patch. A lazy zone throws its bug from there.
 */
export function compileZone(input: NameInput, opts: ZoneOptions, lazy = false): Zone {
  return new Zone(new ZoneIndex(input, { lazy }), opts, new Map());
}

/**
 * The zone of the next table, patched from `prev` (the zone serving the table `changes` starts from):
 * `changes` names the services (by id, with what the new table has for them) and VIP entries whose
 * records may differ; everything else is the same as in `prev`. `prev` is retired. Also returns what the
 * changed services and VIPs could not publish (for the log).
 *
 * Throws on a retired `prev`. `prev` is retired even when the patch throws: a throw while walking the
 * changed services leaves its indexes as they were, a throw after that (a bug) half-patched; the plane
 * compiles the whole table then.
 */
export function patchZone(prev: Zone, changes: IndexChanges, opts: ZoneOptions): { zone: Zone; skipped: string[] } {
  const { index, nodes } = prev.handOver();
  const { dirty, skipped } = index.patch(changes);
  const zone = new Zone(index, opts, nodes);
  zone.forget(dirty);
  return { zone, skipped };
}

/** Shared empty list: most names have records of one kind only. */
const NONE: readonly never[] = Object.freeze([]);
const SELF_MESOS = new Set(['ns1', 'leader', 'master']);
const SELF_DCOS = new Set(['ns1', 'leader.dcos', 'master.dcos']);
const IN_ADDR = '.in-addr.arpa';
const IP6 = '.ip6.arpa';
/** Wire suffixes of the reverse trees, for the query path's cheap test. */
const IN_ADDR_KEY = '\x07in-addr\x04arpa\x00';
const IP6_KEY = '\x03ip6\x04arpa\x00';

/** Sorted, duplicates removed (a copy). */
function uniqueSorted<T>(xs: readonly T[], cmp?: (a: T, b: T) => number): T[] {
  const out = [...xs];
  if (out.length < 2) return out;
  out.sort(cmp);
  let n = 1;
  for (let i = 1; i < out.length; i++) {
    const same = cmp ? cmp(out[i] as T, out[n - 1] as T) === 0 : out[i] === out[n - 1];
    if (!same) out[n++] = out[i] as T;
  }
  out.length = n;
  return out;
}

/** SRV order: target, port, weight, priority (a total order: equal means the same record). */
const bySrv = (x: SrvData, y: SrvData): number =>
  x.target < y.target ? -1 : x.target > y.target ? 1 : x.port - y.port || x.weight - y.weight || x.priority - y.priority;

/**
 * Lower-case dotted name (no trailing dot) → wire key, without a Buffer; undefined when it is not a
 * valid name (an empty or 64+ byte label, over 255 bytes).
 */
export function keyOf(name: string): string | undefined {
  if (name === '') return '\0';
  let out = '';
  let start = 0;
  for (;;) {
    const dot = name.indexOf('.', start);
    const end = dot < 0 ? name.length : dot;
    const len = end - start;
    if (len < 1 || len > 63) return undefined;
    out += String.fromCharCode(len) + name.slice(start, end);
    if (dot < 0) break;
    start = dot + 1;
  }
  out += '\0';
  return out.length > MAX_NAME_WIRE ? undefined : out;
}

/** `d.c.b.a.in-addr.arpa` / 32 nibbles `.ip6.arpa` → the normalised address, or undefined. */
function addressOfReverse(name: string): string | undefined {
  try {
    if (name.endsWith(IN_ADDR)) {
      const parts = name.slice(0, -IN_ADDR.length).split('.');
      if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) < 256)) return undefined;
      return parts.reverse().join('.');
    }
    if (name.endsWith(IP6)) {
      const parts = name.slice(0, -IP6.length).split('.');
      if (parts.length !== 32 || !parts.every((p) => /^[0-9a-f]$/.test(p))) return undefined;
      const hex = parts.reverse().join('');
      const groups: string[] = [];
      for (let i = 0; i < 32; i += 4) groups.push(hex.slice(i, i + 4));
      return ipaddr.IPv6.parse(groups.join(':')).toRFC5952String();
    }
  } catch {
    return undefined;
  }
  return undefined;
}

export class Zone {
  readonly version: number;
  readonly serial: number;
  readonly ready: boolean;
  readonly ttl: number;
  /** Longest apex first. */
  readonly apexes: ZoneApex[];
  /**
   * Resolved names by lower-case wire key: the query path's one lookup. Apexes are always there; other
   * names arrive on their first query (and leave when the memo outgrows `maxNodes`, or when a patch
   * touches their records).
   */
  readonly nodes: Map<string, ZoneNode>;
  private readonly flags3: number;
  private readonly maxNodes: number;
  private readonly self: string;
  /** The indexes names are resolved from (relative to a zone: `t.fw`, `_t.fw`, `c.fw`, `vip.fw`). */
  private readonly index: ZoneIndex;
  private readonly apexNodes: ZoneNode[] = [];
  private retired = false;

  /** A zone over `index` (owned from now on), memo `nodes` (cleared of what changed by the caller). */
  constructor(index: ZoneIndex, opts: ZoneOptions, nodes: Map<string, ZoneNode>) {
    this.version = opts.version;
    this.serial = opts.serial >>> 0;
    this.ready = opts.ready;
    this.ttl = opts.ttl;
    this.flags3 = opts.recursionAvailable ? F3.RA : 0;
    this.maxNodes = opts.maxNodes ?? 200_000;
    this.index = index;
    this.self = index.self;
    this.nodes = nodes;
    const apexNames = [...new Set([...index.mesosZones, DCOS_ZONE])].sort((a, b) => b.length - a.length);
    this.apexes = apexNames.map((name) => this.makeApex(name));
    for (const apex of this.apexes) {
      const node = this.newNode(apex.name, apex.key, apex);
      node.apex = apex;
      this.apexNodes.push(node);
      this.nodes.set(apex.key, node);
    }
  }

  /** Served endpoints indexed. */
  get endpoints(): number {
    this.index.finish();
    return this.index.endpoints;
  }

  /** The indexes are built (a lazy zone's: see compileZone). */
  get complete(): boolean {
    return this.index.complete;
  }

  /** Build a lazy zone's indexes for about `budgetMs` more; true once they are complete. */
  step(budgetMs: number): boolean {
    return this.index.step(budgetMs);
  }

  /** Build whatever is left of a lazy zone's indexes, now. */
  finish(): void {
    this.index.finish();
  }

  /** Endpoints/VIPs with a bad address or names over 253 bytes: not published. */
  get skipped(): string[] {
    return this.index.skipped();
  }

  /** For `patchZone`: this zone's indexes and memo, to the zone patched from it. This zone is retired. */
  handOver(): { index: ZoneIndex; nodes: Map<string, ZoneNode> } {
    if (this.retired) throw new Error(`dns: zone ${this.version} was patched already`);
    this.index.finish();
    this.retired = true;
    return { index: this.index, nodes: this.nodes };
  }

  /** Drop the memoised nodes (and their compiled answers) of the names a patch touched. */
  forget(dirty: DirtyNames): void {
    const nodes = this.nodes;
    // A relative name's wire key without its root label, then each apex's key after it.
    const drop = (rels: Set<string>, dcos: boolean): void => {
      for (const rel of rels) {
        const key = keyOf(rel);
        if (key === undefined) continue;
        const stem = key.slice(0, -1);
        for (const apex of this.apexes) {
          if (apex.dcos === dcos && stem.length + apex.key.length <= MAX_NAME_WIRE) nodes.delete(stem + apex.key);
        }
      }
    };
    drop(dirty.mesos, false);
    drop(dirty.dcos, true);
    for (const address of dirty.ptr) {
      const key = keyOf(reverseOf(address));
      if (key !== undefined) nodes.delete(key);
    }
  }

  get size(): number {
    return this.nodes.size;
  }

  /**
   * The node for the parsed query's name when `nodes` did not have it: resolved from the indexes and
   * memoised. `apex` is `findApex(q)`. Undefined when the name does not exist here (NXDOMAIN if `apex`
   * is set; otherwise the name is not ours).
   */
  resolve(q: Query, apex: ZoneApex | undefined): ZoneNode | undefined {
    const key = q.key;
    if (apex === undefined && !key.endsWith(IN_ADDR_KEY) && !key.endsWith(IP6_KEY)) return undefined;
    return this.resolveKey(key, apex);
  }

  /** Node by dotted name (any case, optional trailing dot). */
  lookup(name: string): ZoneNode | undefined {
    const n = name.toLowerCase().replace(/\.$/, '');
    const key = keyOf(n);
    if (key === undefined) return undefined;
    const known = this.nodes.get(key);
    if (known) return known;
    return this.resolveKey(key, this.zoneOf(n), n);
  }

  /** The zone a name falls in (dotted), longest apex first. */
  zoneOf(name: string): ZoneApex | undefined {
    for (const apex of this.apexes) {
      if (name === apex.name || name.endsWith(`.${apex.name}`)) return apex;
    }
    return undefined;
  }

  /** The zone the parsed query's name falls in, from its wire key and label starts. */
  findApex(q: Query): ZoneApex | undefined {
    const key = q.key;
    for (const apex of this.apexes) {
      const start = q.nameLength - apex.wireLength;
      if (start < 0 || !key.endsWith(apex.key)) continue;
      for (let i = 0; i < q.labels; i++) {
        const s = q.labelStarts[i] as number;
        if (s === start) return apex;
        if (s > start) break;
      }
    }
    return undefined;
  }

  /** The compiled answer for `slot` at `node`, or null for NODATA. Compiled on first use, then cached. */
  answer(node: ZoneNode, slot: number, qtype: number): Answer | null {
    const answers = (node.answers ??= new Array<Answer | null | undefined>(SLOTS));
    let a = answers[slot];
    if (a === undefined) {
      a = this.build(node, slot, qtype);
      answers[slot] = a;
    }
    return a;
  }

  // ---- resolution

  private resolveKey(key: string, apex: ZoneApex | undefined, dotted?: string): ZoneNode | undefined {
    this.index.finish();
    const name = dotted ?? keyName(key);
    // A label holding a "." (legal on the wire) must not pass for two labels.
    if (dotted === undefined && keyOf(name) !== key) return undefined;
    let node: ZoneNode | undefined;
    if (apex !== undefined) {
      const rel = name === apex.name ? '' : name.slice(0, name.length - apex.name.length - 1);
      node = apex.dcos ? this.resolveDcos(name, key, rel, apex) : this.resolveMesos(name, key, rel, apex);
    } else {
      const address = addressOfReverse(name);
      const targets = address === undefined ? undefined : this.index.ptrs.get(address);
      if (targets !== undefined) {
        node = this.newNode(name, key, undefined);
        node.ptr = typeof targets === 'string' ? [targets] : uniqueSorted(targets).slice(0, MAX_PTR);
      }
    }
    if (node !== undefined) this.remember(node);
    return node;
  }

  private resolveMesos(name: string, key: string, rel: string, apex: ZoneApex): ZoneNode | undefined {
    if (rel === '') return this.nodes.get(key);
    const d = apex.name;
    const ix = this.index;
    if (SELF_MESOS.has(rel)) return this.addresses(name, key, apex, [this.self]);
    if (rel === 'slave') {
      const agents = ix.agents();
      return agents.length > 0 ? this.addresses(name, key, apex, agents) : undefined;
    }
    if (rel.charCodeAt(0) === 0x5f /* _ */) {
      const m = /^(_[^.]+)\._(tcp|udp)\.(.+)$/.exec(rel);
      if (m) {
        const svc = m[1] as string;
        const rest = m[3] as string;
        const plain = ix.srvTasks.get(`${svc}.${rest}`);
        if (plain !== undefined)
          return this.srvNode(
            name,
            key,
            apex,
            plain.map((x) => ({ priority: 0, weight: x.weight, port: x.port, target: `${x.canonical}.${d}` })),
          );
        if (rest.endsWith('.slave')) {
          const group = ix.srvTasks.get(`${svc}.${rest.slice(0, -6)}`)?.filter((x) => x.hostNetworked);
          if (group !== undefined && group.length > 0) {
            return this.srvNode(
              name,
              key,
              apex,
              group.map((x) => ({ priority: 0, weight: x.weight, port: x.port, target: `${x.canonical}.slave.${d}` })),
            );
          }
        }
      }
    } else {
      const group = ix.tasks.get(rel);
      if (group !== undefined)
        return this.addresses(
          name,
          key,
          apex,
          group.map((x) => x.address),
        );
      const one = ix.canon.get(rel);
      if (one !== undefined) return this.addresses(name, key, apex, canonical(one, false));
      if (rel.endsWith('.slave')) {
        const base = rel.slice(0, -6);
        const g = ix.tasks.get(base);
        if (g !== undefined)
          return this.addresses(
            name,
            key,
            apex,
            g.map((x) => x.agent),
          );
        const c = ix.canon.get(base);
        if (c !== undefined) return this.addresses(name, key, apex, canonical(c, true));
      }
    }
    return ix.ents.has(rel) ? this.newNode(name, key, apex) : undefined;
  }

  private resolveDcos(name: string, key: string, rel: string, apex: ZoneApex): ZoneNode | undefined {
    if (rel === '') return this.nodes.get(key);
    const ix = this.index;
    if (SELF_DCOS.has(rel)) return this.addresses(name, key, apex, [this.self]);
    const dot = rel.lastIndexOf('.', rel.length - 6); // before ".dcos"
    if (rel.endsWith('.dcos') && dot > 0) {
      const kind = rel.slice(dot + 1, -5);
      const base = rel.slice(0, dot);
      const group = kind === 'agentip' || kind === 'containerip' || kind === 'autoip' ? ix.tasks.get(base) : undefined;
      if (group !== undefined)
        return this.addresses(
          name,
          key,
          apex,
          group.map((x) => (kind === 'agentip' ? x.agent : x.address)),
        );
    }
    if (rel.endsWith('.l4lb')) {
      const ips = ix.vipIps.get(rel.slice(0, -5));
      if (ips !== undefined) return this.addresses(name, key, apex, ips);
    }
    return ix.dcosEnts.has(rel) ? this.newNode(name, key, apex) : undefined;
  }

  private addresses(name: string, key: string, apex: ZoneApex, list: readonly string[]): ZoneNode {
    const node = this.newNode(name, key, apex);
    const all = uniqueSorted(list);
    let v6 = 0;
    for (const a of all) if (isIPv6(a)) v6++;
    if (v6 === 0) node.v4 = all;
    else if (v6 === all.length) node.v6 = all;
    else {
      node.v4 = all.filter((a) => !isIPv6(a));
      node.v6 = all.filter(isIPv6);
    }
    return node;
  }

  private srvNode(name: string, key: string, apex: ZoneApex, srv: SrvData[]): ZoneNode {
    const node = this.newNode(name, key, apex);
    node.srv = uniqueSorted(srv, bySrv);
    return node;
  }

  private newNode(name: string, key: string, zone: ZoneApex | undefined): ZoneNode {
    return { name, key, zone, apex: undefined, v4: NONE, v6: NONE, srv: NONE, ptr: NONE, answers: undefined };
  }

  private remember(node: ZoneNode): void {
    if (this.nodes.size >= this.maxNodes) {
      // Bounded: start over (apexes stay). Hot names come back on their next query.
      this.nodes.clear();
      for (const a of this.apexNodes) this.nodes.set(a.key, a);
    }
    this.nodes.set(node.key, node);
  }

  // ---- answers

  private makeApex(name: string): ZoneApex {
    const soa: SoaData = {
      mname: `ns1.${name}`,
      rname: `root.ns1.${name}`,
      serial: this.serial,
      refresh: 60,
      retry: 600,
      expire: 86400,
      minimum: this.ttl,
    };
    // Negative answers: SOA TTL = min(SOA TTL, minimum) = ttl (RFC 2308 §3). Owner: a pointer, patched.
    const b = new MessageBuilder(128);
    b.u16(0xc000);
    b.u16(TYPE.SOA);
    b.u16(1);
    b.u32(this.ttl);
    const lenAt = b.pos;
    b.u16(0);
    const start = b.pos;
    b.rawName(soa.mname);
    b.rawName(soa.rname);
    b.u32(soa.serial);
    b.u32(soa.refresh);
    b.u32(soa.retry);
    b.u32(soa.expire);
    b.u32(soa.minimum);
    b.patchU16(lenAt, b.pos - start);
    const wire = nameToWire(name);
    return { name, key: wire.toString('latin1'), wireLength: wire.length, dcos: name === DCOS_ZONE, soa, negative: b.finish() };
  }

  private build(node: ZoneNode, slot: number, qtype: number): Answer | null {
    const ttl = this.ttl;
    const writers: Array<(b: MessageBuilder) => void> = [];
    const extra: Array<(b: MessageBuilder) => void> = [];
    const addresses = (owner: string, target: ZoneNode | undefined, into: typeof writers): void => {
      if (!target) return;
      for (const a of target.v4) into.push((b) => b.a(owner, ttl, a));
      for (const a of target.v6) into.push((b) => b.aaaa(owner, ttl, a));
    };
    const any = slot === SLOT.ANY;
    if (slot === SLOT.A || any) for (const a of node.v4) writers.push((b) => b.a(node.name, ttl, a));
    if (slot === SLOT.AAAA || any) for (const a of node.v6) writers.push((b) => b.aaaa(node.name, ttl, a));
    if (slot === SLOT.SRV || any) {
      const seen = new Set<string>();
      for (const s of node.srv) {
        writers.push((b) => b.srv(node.name, ttl, s.priority, s.weight, s.port, s.target));
        if (!any && !seen.has(s.target)) {
          seen.add(s.target);
          addresses(s.target, this.lookup(s.target), extra);
        }
      }
    }
    if (slot === SLOT.PTR || any) for (const p of node.ptr) writers.push((b) => b.ptr(node.name, ttl, p));
    const apex = node.apex;
    if (apex && (slot === SLOT.SOA || any)) writers.push((b) => b.soa(node.name, ttl, apex.soa));
    if (apex && (slot === SLOT.NS || any)) {
      writers.push((b) => b.ns(node.name, ttl, apex.soa.mname));
      if (!any) addresses(apex.soa.mname, this.lookup(apex.soa.mname), extra);
    }
    if (writers.length === 0) return null;

    const b = new MessageBuilder(HEADER_SIZE + node.key.length + 4 + writers.length * 32);
    b.header(F2.QR | F2.AA, this.flags3);
    b.question(node.name, qtype);
    const nameEnd = HEADER_SIZE + node.key.length;
    const an = new Int32Array(writers.length + 1);
    writers.forEach((w, i) => {
      an[i] = b.pos;
      w(b);
    });
    an[writers.length] = b.pos;
    const nsEnd = b.pos;
    const ar = new Int32Array(extra.length + 1);
    extra.forEach((w, i) => {
      ar[i] = b.pos;
      w(b);
    });
    ar[extra.length] = b.pos;
    b.setCounts(1, writers.length, 0, extra.length);
    return { buf: b.finish(), nameEnd, an, anCount: writers.length, nsEnd, ar, arCount: extra.length };
  }
}

/**
 * The addresses of a canonical name (agents for its `.slave` form): every endpoint it names, as
 * `emitRecords` publishes them (several when sources repeat a task id).
 */
function canonical(c: Indexed | readonly Indexed[], agent: boolean): string[] {
  if (!Array.isArray(c)) return [agent ? (c as Indexed).agent : (c as Indexed).address];
  return (c as readonly Indexed[]).map((x) => (agent ? x.agent : x.address));
}

/** Dotted name of a wire key. */
function keyName(key: string): string {
  let out = '';
  let p = 0;
  while (p < key.length) {
    const len = key.charCodeAt(p);
    if (len === 0) break;
    out += (out === '' ? '' : '.') + key.slice(p + 1, p + 1 + len);
    p += len + 1;
  }
  return out;
}

export type { TaskRef };
