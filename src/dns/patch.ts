/**
 * The zone's indexes (what zone.ts resolves names from), kept per contributor so that a table change
 * patches them instead of compiling every name again.
 *
 * Every service's part of the walk (names.ts `walkService`) is kept as its Contribution: its served
 * endpoints (one `Indexed` each, the very objects the indexes hold), the agent of each of its
 * endpoints, what it could not publish. A name's records are the union of what every contributor put
 * there — several services can share an SRV set, a task name, an agent, a PTR address — so a change
 * takes out what the old version of a service contributed and puts in what the new one does, and every
 * other contributor's records stay. Endpoints equal in everything the zone reads are matched between
 * the two versions and left in place, so one endpoint change touches that endpoint's names only.
 * Shared names are counted: agents (`slave.<domain>` and their PTR), empty non-terminals (per framework
 * with served endpoints, per VIP name), PTR targets (a list with repeats).
 *
 * A patch reports the names whose records it touched (`DirtyNames`): the zone drops exactly those from
 * its per-name answer memo. An SRV answer carries its targets' addresses, so a touched target name also
 * touches the SRV names that point at it.
 *
 * Named VIPs (their l4lb names, PTR and empty non-terminals) are contributed per VipEntry object: the
 * plane hands over the entries that left and arrived when the table's VIP list changed.
 *
 * The indexes are mutable and owned by one zone at a time: a patched zone takes them over from the zone
 * it was patched from (see zone.ts `patchZone`).
 */
import type { Service, VipEntry } from '../model/types.js';
import { DCOS_ZONE, longestZone, walkService, walkVip, type NameInput, type ServedEndpoint, type TableVisitor } from './names.js';

/** One served endpoint, as the indexes hold it (the same object in every index it is in). */
export interface Indexed {
  address: string;
  agent: string;
  port: number;
  weight: number;
  hostNetworked: boolean;
  /** `C.F`: its canonical name relative to a Mesos-style domain. */
  canonical: string;
  /** `T.F`: its task name, the `tasks` key. */
  task: string;
  /** `_T.F` (`_T` is T cut to 62 bytes): the `srvTasks` key. */
  srv: string;
  /** Framework name (dotted labels). */
  fw: string;
}

/** What one service put into the indexes. */
interface Contribution {
  service: Service;
  endpoints: Indexed[];
  /** The agent of every endpoint with valid addresses, served or not, repeats included. */
  agents: string[];
  /** Endpoints not published (bad address, names too long). */
  skipped: string[];
}

/** What one VipEntry object put in (`n` times: a list may hold the same object twice). */
interface VipContribution {
  /** `<vip>.<framework>`; undefined when it publishes nothing. */
  rel: string | undefined;
  ip: string;
  skipped: string | undefined;
  n: number;
}

/** The names a patch touched, relative to their zones: their cached answers are stale. */
export interface DirtyNames {
  /** Relative to every Mesos-style domain. */
  mesos: Set<string>;
  /** Relative to thisdcos.directory. */
  dcos: Set<string>;
  /** Addresses whose PTR records changed. */
  ptr: Set<string>;
}

/** What a patch changes: services by id (undefined: gone), VIP entries gone and arrived (by identity). */
export interface IndexChanges {
  services: Iterable<readonly [string, Service | undefined]>;
  vipsRemoved?: Iterable<VipEntry>;
  vipsAdded?: Iterable<VipEntry>;
}

/** The entries of `before` not in `after` and those of `after` not in `before`, by identity (repeats counted). */
export function vipDelta(before: readonly VipEntry[], after: readonly VipEntry[]): { vipsRemoved: VipEntry[]; vipsAdded: VipEntry[] } {
  const delta = new Map<VipEntry, number>();
  for (const v of before) delta.set(v, (delta.get(v) ?? 0) + 1);
  for (const v of after) delta.set(v, (delta.get(v) ?? 0) - 1);
  const vipsRemoved: VipEntry[] = [];
  const vipsAdded: VipEntry[] = [];
  for (const [v, n] of delta) {
    for (let i = 0; i < n; i++) vipsRemoved.push(v);
    for (let i = 0; i < -n; i++) vipsAdded.push(v);
  }
  return { vipsRemoved, vipsAdded };
}

/** What the patch touched, by index, before it is turned into names. */
interface Touched {
  tasks: Set<string>;
  canon: Set<string>;
  srv: Set<string>;
  ents: Set<string>;
  dcosEnts: Set<string>;
  vips: Set<string>;
  ptr: Set<string>;
  agents: boolean;
}

const DCOS_KINDS = ['agentip', 'containerip', 'autoip'] as const;

/** Every proper suffix of each dotted name, once (`a.b.c` → `b.c`, `c`), `slave` left out (see zone.ts). */
function properSuffixes(names: readonly string[]): string[] {
  const out = new Set<string>();
  for (const name of names) {
    let dot = name.indexOf('.');
    while (dot >= 0) {
      out.add(name.slice(dot + 1));
      dot = name.indexOf('.', dot + 1);
    }
  }
  // `slave` answers the agents, or nothing: never an empty non-terminal.
  out.delete('slave');
  return [...out];
}

/** The empty non-terminals a framework with served endpoints brings (Mesos-style; its host-networked SRV names; dcos). */
interface FrameworkEnts {
  mesos: string[];
  host: string[];
  dcos: string[];
}
const frameworkEnts = new Map<string, FrameworkEnts>();
function entsOf(fw: string): FrameworkEnts {
  let e = frameworkEnts.get(fw);
  if (e === undefined) {
    if (frameworkEnts.size >= 10_000) frameworkEnts.clear();
    e = {
      mesos: properSuffixes([`x.${fw}`, `x.${fw}.slave`, `_x._tcp.${fw}`, `_x._udp.${fw}`]),
      host: properSuffixes([`_x._tcp.${fw}.slave`, `_x._udp.${fw}.slave`]),
      dcos: properSuffixes(DCOS_KINDS.map((kind) => `x.${fw}.${kind}.dcos`)),
    };
    frameworkEnts.set(fw, e);
  }
  return e;
}

/** What makes two endpoints the same to the zone. */
function sameKey(x: Indexed): string {
  return `${x.canonical}\n${x.task}\n${x.srv}\n${x.address}\n${x.agent}\n${x.port}\n${x.weight}`;
}

function pushTo(map: Map<string, Indexed[]>, key: string, x: Indexed): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [x]);
  else list.push(x);
}

function takeFrom(map: Map<string, Indexed[]>, key: string, x: Indexed): void {
  const list = map.get(key);
  if (list === undefined) return;
  const i = list.lastIndexOf(x);
  if (i < 0) return;
  list.splice(i, 1);
  if (list.length === 0) map.delete(key);
}

export class ZoneIndex {
  /** Served endpoints by `T.F`. */
  readonly tasks = new Map<string, Indexed[]>();
  /** Served endpoints by `_T.F` (task labels that share their first 62 bytes share one). */
  readonly srvTasks = new Map<string, Indexed[]>();
  /** Served endpoints by `C.F`: one, or several when sources repeat a task id. */
  readonly canon = new Map<string, Indexed | Indexed[]>();
  /** VIP addresses by `<vip>.<framework>` (repeats included). */
  readonly vipIps = new Map<string, string[]>();
  /** PTR targets by address: one, or a list with repeats (one per contribution). */
  readonly ptrs = new Map<string, string | string[]>();
  /** Empty non-terminals (relative to a Mesos-style domain; to thisdcos.directory), with their contributors counted. */
  readonly ents = new Map<string, number>();
  readonly dcosEnts = new Map<string, number>();
  readonly mesosZones: readonly string[];
  readonly self: string;
  /** Served endpoints indexed. */
  endpoints = 0;
  private readonly agentCount = new Map<string, number>();
  private agentList: string[] | undefined;
  private readonly frameworks = new Map<string, { served: number; host: number }>();
  private readonly byService = new Map<string, Contribution>();
  private readonly byVip = new Map<VipEntry, VipContribution>();
  private readonly longest: number;
  private readonly first: string;
  private readonly slaveFirst: string;
  /** Set while a patch runs: what it touches. */
  private touched: Touched | undefined;
  /** The walk's sink, filled into `current` (one visitor for every service). */
  private current: Contribution | undefined;
  private readonly visitor: TableVisitor;

  /** What of the input is not indexed yet (an index built in steps, see `step`); undefined once all is. */
  private rest: { services: Iterator<Service>; vips: Iterable<VipEntry> } | undefined;
  private unnamed = 0;

  /**
   * The indexes of every service and VIP of `input`: built now, or with `lazy` in steps (`step`, `finish`).
   * A lazy index must be finished before anything is read from it (zone.ts does).
   */
  constructor(input: NameInput, opts: { lazy?: boolean } = {}) {
    this.mesosZones = [...input.mesosZones];
    this.self = input.self;
    this.longest = longestZone(input.mesosZones);
    this.first = input.mesosZones[0] ?? 'mesos';
    this.slaveFirst = `slave.${this.first}`;
    this.visitor = {
      agent: (agent) => this.current!.agents.push(agent),
      endpoint: (ep) => this.current!.endpoints.push(indexed(ep)),
      vip: () => {},
      skipped: (what) => this.current!.skipped.push(what),
    };
    this.addPtr(this.self, `ns1.${this.first}`);
    this.count(this.dcosEnts, properSuffixes(['leader.dcos']), 1, undefined);
    this.rest = { services: input.services[Symbol.iterator](), vips: input.vips };
    if (!opts.lazy) this.finish();
  }

  /** Every service and VIP is indexed. */
  get complete(): boolean {
    return this.rest === undefined;
  }

  /**
   * Index services for about `budgetMs` (checked every 64), then the VIPs once every service is in.
   * True when everything is indexed. A throw (a bug) leaves the index unusable.
   */
  step(budgetMs: number): boolean {
    const rest = this.rest;
    if (rest === undefined) return true;
    const deadline = performance.now() + budgetMs;
    for (let n = 1; ; n++) {
      const next = rest.services.next();
      if (next.done === true) break;
      const s = next.value;
      const c = this.contribution(s);
      // Ids are unique in what the plane hands over; a repeat (hand-made input) is kept under no id.
      this.byService.set(this.byService.has(s.id) ? `\0${this.unnamed++}` : s.id, c);
      this.add(c);
      if ((n & 63) === 0 && performance.now() >= deadline) return false;
    }
    for (const vip of rest.vips) this.addVip(vip, this.vipContribution(vip));
    this.rest = undefined;
    return true;
  }

  /** Index whatever is left, now. */
  finish(): void {
    if (this.rest !== undefined) this.step(Infinity);
  }

  /** Every agent, once (computed on first use after the set changed). */
  agents(): readonly string[] {
    this.finish();
    return (this.agentList ??= [...this.agentCount.keys()]);
  }

  /** Endpoints and VIPs not published, with the reason's subject. */
  skipped(): string[] {
    this.finish();
    const out: string[] = [];
    for (const c of this.byService.values()) out.push(...c.skipped);
    for (const v of this.byVip.values()) if (v.skipped !== undefined) out.push(v.skipped);
    return out;
  }

  /**
   * Take out what the changed services and VIP entries contributed and put in what they contribute now.
   * The new contributions are walked first (a walk that throws changes nothing); then the indexes change.
   * Returns the names touched and what the changed services could not publish.
   */
  patch(changes: IndexChanges): { dirty: DirtyNames; skipped: string[] } {
    this.finish();
    const staged: Array<[string, Contribution | undefined, Contribution | undefined]> = [];
    for (const [id, s] of changes.services) {
      const old = this.byService.get(id);
      if (old?.service === s) continue;
      staged.push([id, old, s === undefined ? undefined : this.contribution(s)]);
    }
    const vipsIn: Array<[VipEntry, VipContribution]> = [];
    for (const vip of changes.vipsAdded ?? []) vipsIn.push([vip, this.vipContribution(vip)]);

    const touched: Touched = {
      tasks: new Set(),
      canon: new Set(),
      srv: new Set(),
      ents: new Set(),
      dcosEnts: new Set(),
      vips: new Set(),
      ptr: new Set(),
      agents: false,
    };
    const skipped: string[] = [];
    this.touched = touched;
    try {
      for (const [id, old, next] of staged) {
        if (next === undefined) this.byService.delete(id);
        else {
          this.byService.set(id, next);
          skipped.push(...next.skipped);
        }
        if (old === undefined && next !== undefined) this.add(next);
        else if (old !== undefined && next === undefined) this.remove(old);
        else if (old !== undefined && next !== undefined) this.replace(old, next);
      }
      for (const vip of changes.vipsRemoved ?? []) this.removeVip(vip);
      for (const [vip, c] of vipsIn) {
        this.addVip(vip, c);
        if (c.skipped !== undefined) skipped.push(c.skipped);
      }
    } finally {
      this.touched = undefined;
    }
    return { dirty: this.names(touched), skipped };
  }

  // ---- contributions

  private contribution(s: Service): Contribution {
    const c: Contribution = { service: s, endpoints: [], agents: [], skipped: [] };
    this.current = c;
    try {
      walkService(s, this.longest, this.visitor);
    } finally {
      this.current = undefined;
    }
    return c;
  }

  private add(c: Contribution): void {
    for (const x of c.endpoints) this.addEndpoint(x);
    for (const a of c.agents) this.addAgent(a);
  }

  private remove(c: Contribution): void {
    for (const x of c.endpoints) this.removeEndpoint(x);
    for (const a of c.agents) this.removeAgent(a);
  }

  /**
   * From `old` to `next` of one service: endpoints equal in everything the zone reads stay (`next` takes
   * over the indexed objects, so a later patch finds them); the rest leave and arrive. Counts go up
   * before they go down, so nothing shared blinks out on the way.
   */
  private replace(old: Contribution, next: Contribution): void {
    const pool = new Map<string, Indexed[]>();
    for (const x of old.endpoints) pushTo(pool, sameKey(x), x);
    const eps = next.endpoints;
    for (let i = 0; i < eps.length; i++) {
      const x = eps[i] as Indexed;
      const list = pool.get(sameKey(x));
      const same = list?.pop();
      if (same !== undefined) eps[i] = same;
      else this.addEndpoint(x);
    }
    for (const list of pool.values()) for (const x of list) this.removeEndpoint(x);
    for (const a of next.agents) this.addAgent(a);
    for (const a of old.agents) this.removeAgent(a);
  }

  private addEndpoint(x: Indexed): void {
    this.endpoints++;
    pushTo(this.tasks, x.task, x);
    pushTo(this.srvTasks, x.srv, x);
    const c = this.canon.get(x.canonical);
    if (c === undefined) this.canon.set(x.canonical, x);
    else if (Array.isArray(c)) c.push(x);
    else this.canon.set(x.canonical, [c, x]);
    let f = this.frameworks.get(x.fw);
    if (f === undefined) this.frameworks.set(x.fw, (f = { served: 0, host: 0 }));
    if (f.served++ === 0) {
      this.count(this.ents, entsOf(x.fw).mesos, 1, this.touched?.ents);
      this.count(this.dcosEnts, entsOf(x.fw).dcos, 1, this.touched?.dcosEnts);
    }
    if (x.hostNetworked && f.host++ === 0) this.count(this.ents, entsOf(x.fw).host, 1, this.touched?.ents);
    this.addPtr(x.address, `${x.task}.${this.first}`);
    this.touch(x);
  }

  private removeEndpoint(x: Indexed): void {
    this.endpoints--;
    takeFrom(this.tasks, x.task, x);
    takeFrom(this.srvTasks, x.srv, x);
    const c = this.canon.get(x.canonical);
    if (c === x) this.canon.delete(x.canonical);
    else if (Array.isArray(c)) {
      const i = c.lastIndexOf(x);
      if (i >= 0) c.splice(i, 1);
      if (c.length === 1) this.canon.set(x.canonical, c[0] as Indexed);
    }
    const f = this.frameworks.get(x.fw);
    if (f !== undefined) {
      if (x.hostNetworked && --f.host === 0) this.count(this.ents, entsOf(x.fw).host, -1, this.touched?.ents);
      if (--f.served === 0) {
        this.count(this.ents, entsOf(x.fw).mesos, -1, this.touched?.ents);
        this.count(this.dcosEnts, entsOf(x.fw).dcos, -1, this.touched?.dcosEnts);
        this.frameworks.delete(x.fw);
      }
    }
    this.removePtr(x.address, `${x.task}.${this.first}`);
    this.touch(x);
  }

  private touch(x: Indexed): void {
    const t = this.touched;
    if (t === undefined) return;
    t.tasks.add(x.task);
    t.srv.add(x.srv);
    t.canon.add(x.canonical);
  }

  private addAgent(agent: string): void {
    const n = this.agentCount.get(agent) ?? 0;
    this.agentCount.set(agent, n + 1);
    if (n === 0) {
      this.agentList = undefined;
      this.addPtr(agent, this.slaveFirst);
      if (this.touched) this.touched.agents = true;
    }
  }

  private removeAgent(agent: string): void {
    const n = this.agentCount.get(agent);
    if (n === undefined) return;
    if (n > 1) {
      this.agentCount.set(agent, n - 1);
      return;
    }
    this.agentCount.delete(agent);
    this.agentList = undefined;
    this.removePtr(agent, this.slaveFirst);
    if (this.touched) this.touched.agents = true;
  }

  private addPtr(address: string, target: string): void {
    const cur = this.ptrs.get(address);
    if (cur === undefined) this.ptrs.set(address, target);
    else if (typeof cur === 'string') this.ptrs.set(address, [cur, target]);
    else cur.push(target);
    this.touched?.ptr.add(address);
  }

  private removePtr(address: string, target: string): void {
    const cur = this.ptrs.get(address);
    if (cur === target) this.ptrs.delete(address);
    else if (Array.isArray(cur)) {
      const i = cur.lastIndexOf(target);
      if (i >= 0) cur.splice(i, 1);
      if (cur.length === 1) this.ptrs.set(address, cur[0] as string);
    }
    this.touched?.ptr.add(address);
  }

  /** Count each of `names` up or down by one; a name that appears or goes is touched. */
  private count(map: Map<string, number>, names: readonly string[], by: 1 | -1, touched: Set<string> | undefined): void {
    for (const n of names) {
      const v = (map.get(n) ?? 0) + by;
      if (v > 0) map.set(n, v);
      else map.delete(n);
      if (v === 0 || (v === 1 && by === 1)) touched?.add(n);
    }
  }

  // ---- VIPs

  private vipContribution(vip: VipEntry): VipContribution {
    const c: VipContribution = { rel: undefined, ip: '', skipped: undefined, n: 1 };
    walkVip(vip, {
      agent: () => {},
      endpoint: () => {},
      vip: (rel, ip) => {
        c.rel = rel;
        c.ip = ip;
      },
      skipped: (what) => (c.skipped = what),
    });
    return c;
  }

  private addVip(vip: VipEntry, c: VipContribution): void {
    const had = this.byVip.get(vip);
    if (had !== undefined) had.n++;
    else this.byVip.set(vip, c);
    const rel = c.rel;
    if (rel === undefined) return;
    const list = this.vipIps.get(rel);
    if (list === undefined) this.vipIps.set(rel, [c.ip]);
    else list.push(c.ip);
    this.count(this.dcosEnts, properSuffixes([`${rel}.l4lb`]), 1, this.touched?.dcosEnts);
    this.addPtr(c.ip, `${rel}.l4lb.${DCOS_ZONE}`);
    this.touched?.vips.add(rel);
  }

  private removeVip(vip: VipEntry): void {
    const c = this.byVip.get(vip);
    if (c === undefined) return;
    if (--c.n === 0) this.byVip.delete(vip);
    const rel = c.rel;
    if (rel === undefined) return;
    const list = this.vipIps.get(rel);
    if (list !== undefined) {
      const i = list.lastIndexOf(c.ip);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.vipIps.delete(rel);
    }
    this.count(this.dcosEnts, properSuffixes([`${rel}.l4lb`]), -1, this.touched?.dcosEnts);
    this.removePtr(c.ip, `${rel}.l4lb.${DCOS_ZONE}`);
    this.touched?.vips.add(rel);
  }

  // ---- touched names

  /** Canonical entries at `key`, as a list. */
  private canonAt(key: string): readonly Indexed[] {
    const c = this.canon.get(key);
    return c === undefined ? [] : Array.isArray(c) ? c : [c];
  }

  /**
   * Which names read what the patch touched (zone.ts resolves a Mesos-style name `R` from tasks[R],
   * canon[R], tasks/canon of R without `.slave`, srvTasks, the agents or the empty non-terminals; a
   * dcos one from tasks of its base, the VIP addresses or the dcos non-terminals; a reverse one from
   * the PTR targets of its address).
   */
  private names(t: Touched): DirtyNames {
    const mesos = new Set<string>();
    const dcos = new Set<string>();
    const targets = new Set<string>();
    for (const k of t.tasks) {
      mesos.add(k);
      mesos.add(`${k}.slave`);
      for (const kind of DCOS_KINDS) dcos.add(`${k}.${kind}.dcos`);
      targets.add(k);
    }
    for (const k of t.canon) {
      mesos.add(k);
      mesos.add(`${k}.slave`);
      targets.add(k);
    }
    // SRV answers carry their targets' addresses (`C.F.<domain>`, `C.F.slave.<domain>`): a touched
    // target touches the SRV names of the endpoints it is the canonical name of.
    const srv = t.srv;
    for (const k of targets) {
      for (const x of this.canonAt(k)) srv.add(x.srv);
      if (k.endsWith('.slave')) for (const x of this.canonAt(k.slice(0, -6))) srv.add(x.srv);
    }
    for (const k of srv) {
      const dot = k.indexOf('.');
      const label = k.slice(0, dot);
      const rest = k.slice(dot + 1);
      for (const proto of ['_tcp', '_udp']) {
        mesos.add(`${label}.${proto}.${rest}`);
        mesos.add(`${label}.${proto}.${rest}.slave`);
      }
    }
    for (const r of t.ents) mesos.add(r);
    if (t.agents) mesos.add('slave');
    for (const r of t.dcosEnts) dcos.add(r);
    for (const r of t.vips) dcos.add(`${r}.l4lb`);
    return { mesos, dcos, ptr: t.ptr };
  }
}

function indexed(ep: ServedEndpoint): Indexed {
  return {
    address: ep.address,
    agent: ep.agent,
    port: ep.port,
    weight: ep.weight,
    hostNetworked: ep.hostNetworked,
    canonical: `${ep.c}.${ep.fw}`,
    task: `${ep.t}.${ep.fw}`,
    srv: `${ep.srvLabel}.${ep.fw}`,
    fw: ep.fw,
  };
}
