/**
 * Which names the table publishes, as Mesos-DNS and dcos-dns define them — the pure part of the zone
 * compiler (no wire bytes here). `emitRecords` walks the table once and reports every record to a sink;
 * the zone compiler and the lookup api's `enumerate` are two sinks of the same walk, so they cannot
 * disagree.
 *
 * For every served endpoint of a service (task T = toLabel(endpoint.task ?? service name),
 * framework F = toFrameworkName(service.framework), canonical C = `T-<hash5>`, see `canonicalLabel`),
 * in every Mesos-style domain D (`mesos`, then each `dns.domains` entry):
 *   T.F.D, C.F.D                          A/AAAA  endpoint.address (the address its port is served on)
 *   T.F.slave.D, C.F.slave.D              A/AAAA  agent IP (endpoint.agentAddress ?? endpoint.address)
 *   _T._tcp.F.D, _T._udp.F.D              SRV     0 <weight> <port> C.F.D.
 *   _T._tcp.F.slave.D, _T._udp.F.slave.D  SRV     0 <weight> <port> C.F.slave.D.   (host-networked only:
 *                                                  when the endpoint's address is its agent's IP)
 *   slave.D                               A/AAAA  every agent IP (of served and unserved endpoints alike)
 *   leader.D, master.D, ns1.D             A/AAAA  this DNS server's address
 * and under thisdcos.directory (dcos-dns):
 *   T.F.agentip.dcos.thisdcos.directory      agent IP
 *   T.F.containerip.dcos.thisdcos.directory  endpoint.address
 *   T.F.autoip.dcos.thisdcos.directory       endpoint.address
 *   <vip>.F.l4lb.thisdcos.directory          the named VIP's allocated `ip` (none until allocated)
 *   leader|master.dcos.thisdcos.directory, ns1.thisdcos.directory   this DNS server's address
 * PTR: every endpoint address → T.F.mesos., every agent IP → slave.mesos., every VIP ip → its l4lb
 * name, our own address → ns1.mesos. (at most MAX_PTR per address, sorted).
 *
 * Served = health `healthy` or `unknown` and weight > 0; `unhealthy` and `draining` endpoints leave
 * every answer (but their agent stays in slave.D). A service marked `dnsHidden` (another provider won
 * its name) publishes nothing.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { MAX_LABEL, toFrameworkName, toLabel, toVipName } from '../model/names.js';
import type { Endpoint, Service, VipEntry } from '../model/types.js';
import { reverseName } from './wire.js';

/** The dcos-dns zone; always served. */
export const DCOS_ZONE = 'thisdcos.directory';
/** The Mesos-DNS zone; always served. */
export const MESOS_ZONE = 'mesos';
/** PTR records per address, at most (an agent running 500 tasks does not need 500 PTRs). */
export const MAX_PTR = 16;

export type RecordKind = 'A' | 'SRV' | 'PTR';

export interface SrvData {
  priority: number;
  weight: number;
  port: number;
  /** Dotted, no trailing dot. */
  target: string;
}

/** The task an endpoint's records belong to, for `enumerate`. */
export interface TaskRef {
  framework: string;
  name: string;
  id: string;
}

export interface RecordSink {
  /** `value`: an address for A (A or AAAA by family), a name for PTR. */
  address(name: string, value: string, task?: TaskRef): void;
  srv(name: string, srv: SrvData, task?: TaskRef): void;
  ptr(name: string, target: string): void;
  /** The sink wants TaskRefs (enumerate does; the zone compiler does not, and saves 100k objects). */
  readonly tasks?: boolean;
}

export interface NameInput {
  services: Iterable<Service>;
  vips: Iterable<VipEntry>;
  /** Mesos-style domains, `mesos` first. */
  mesosZones: string[];
  /** This DNS server's own address (leader/master/ns1). */
  self: string;
}

/** Health and weight that keep an endpoint in answers. */
export function isServed(e: Endpoint): boolean {
  return (e.health === 'healthy' || e.health === 'unknown') && e.weight > 0;
}

const ZBASE32 = 'ybndrfg8ejkmcpqxot1uwisza345h769';

/**
 * Memo for the per-endpoint work that does not change between tables (sha1, reverse names): a table
 * of 100,000 endpoints is recompiled on every health change. Bounded: cleared when it outgrows
 * MEMO_MAX entries (a full recompute costs one table's worth of hashing, nothing more).
 */
const MEMO_MAX = 500_000;
const canonicalMemo = new Map<string, string>();
const labelMemo = new Map<string, string>();
const ipMemo = new Map<string, string>();

/** True for an IP literal (memoised: the model's addresses are normalised, this is a guard). */
function isAddress(a: string): boolean {
  return memo(ipMemo, a, () => (isIP(a) === 0 ? '' : 'y')) === 'y';
}
const reverseMemo = new Map<string, string>();

function memo(map: Map<string, string>, key: string, make: () => string): string {
  let v = map.get(key);
  if (v === undefined) {
    if (map.size >= MEMO_MAX) map.clear();
    v = make();
    map.set(key, v);
  }
  return v;
}

/** First 5 characters of zbase32(sha1(id)), as Mesos-DNS hashes task ids (records/generator.go). */
export function hash5(id: string): string {
  const d = createHash('sha1').update(id).digest();
  // 25 bits from the first 4 bytes.
  const v = (((d[0] as number) << 24) | ((d[1] as number) << 16) | ((d[2] as number) << 8) | (d[3] as number)) >>> 0;
  let out = '';
  for (let i = 0; i < 5; i++) out += ZBASE32[(v >>> (27 - i * 5)) & 31];
  return out;
}

/**
 * `T-<hash5>`: a name per endpoint, so every SRV target resolves to exactly the one address its port is
 * served on. Mesos-DNS's canonical name is `T-<hash5>-<agent id tail>`; we have no agent ids, and hash the
 * task id when the source has one (stable across restarts of the same task), else service id + address:port.
 */
export function canonicalLabel(task: string, e: Endpoint, serviceId: string): string {
  const id = e.taskId ?? `${serviceId}/${e.address}:${e.port}`;
  return memo(canonicalMemo, `${task}\0${id}`, () => `${task.slice(0, MAX_LABEL - 6).replace(/-+$/, '')}-${hash5(id)}`);
}

/** reverseName (the PTR name of an address), memoised. */
export function reverseOf(address: string): string {
  return memo(reverseMemo, address, () => reverseName(address));
}

export function selfNames(zone: string): string[] {
  return zone === DCOS_ZONE
    ? [`ns1.${DCOS_ZONE}`, `leader.dcos.${DCOS_ZONE}`, `master.dcos.${DCOS_ZONE}`]
    : [`ns1.${zone}`, `leader.${zone}`, `master.${zone}`];
}

/** An endpoint that answers, with every label its names are made of. */
export interface ServedEndpoint {
  service: Service;
  endpoint: Endpoint;
  /** Framework name (dotted labels). */
  fw: string;
  /** Task label. */
  t: string;
  /** Canonical label `T-<hash5>`. */
  c: string;
  /** SRV service label `_T` (T cut to 62 bytes). */
  srvLabel: string;
  address: string;
  agent: string;
  port: number;
  /** SRV weight: the endpoint's, 1..65535. */
  weight: number;
  /** Its address is its agent's: the `.slave.` SRV names exist for it. */
  hostNetworked: boolean;
}

export interface TableVisitor {
  /** Every endpoint's agent (served or not) of every published service. */
  agent(agent: string): void;
  endpoint(ep: ServedEndpoint): void;
  /** A named VIP with an address: `rel` is `<vip>.<framework>` (its name under l4lb.thisdcos.directory). */
  vip(rel: string, ip: string): void;
  /** An endpoint or VIP whose names would be longer than DNS allows: published under none. */
  skipped?(what: string): void;
}

const MAX_NAME = 253;

/** Length of the longest Mesos-style domain: what `walkService` checks name lengths against. */
export function longestZone(mesosZones: readonly string[]): number {
  return Math.max(...mesosZones.map((z) => z.length));
}

/**
 * The one walk over the table both the zone and `emitRecords` use: which services publish, which
 * endpoints answer, their labels, and which names would not fit in 253 bytes (those are skipped whole,
 * so no record ever names a target that does not exist). Every service, then every VIP: `walkService`
 * and `walkVip` are its two halves, also run on their own for one service or VIP.
 */
export function walkTable(input: NameInput, v: TableVisitor): void {
  const longest = longestZone(input.mesosZones);
  for (const s of input.services) walkService(s, longest, v);
  for (const vip of input.vips) walkVip(vip, v);
}

/** One service's part of `walkTable`. `longest`: `longestZone` of the Mesos-style domains. */
export function walkService(s: Service, longest: number, v: TableVisitor): void {
  if (s.dnsHidden) return;
  const fw = toFrameworkName(s.framework);
  if (fw === '') return;
  for (const e of s.endpoints) {
    const agent = e.agentAddress ?? e.address;
    if (!isAddress(e.address) || !isAddress(agent)) {
      v.skipped?.(`${s.id} ${e.address}`);
      continue;
    }
    v.agent(agent);
    if (!isServed(e)) continue;
    const raw = e.task ?? s.name;
    const t = memo(labelMemo, raw, () => toLabel(raw));
    if (t === '') continue;
    const c = canonicalLabel(t, e, s.id);
    const srvLabel = `_${t.slice(0, MAX_LABEL - 1)}`;
    // The longest names this endpoint publishes.
    if (
      srvLabel.length + fw.length + longest + 13 > MAX_NAME ||
      c.length + fw.length + longest + 8 > MAX_NAME ||
      t.length + fw.length + 1 + '.containerip.dcos.'.length + DCOS_ZONE.length > MAX_NAME
    ) {
      v.skipped?.(`${t}.${fw}`);
      continue;
    }
    v.endpoint({
      service: s,
      endpoint: e,
      fw,
      t,
      c,
      srvLabel,
      address: e.address,
      agent,
      port: e.port,
      weight: Math.max(1, Math.min(65535, e.weight)),
      hostNetworked: agent === e.address,
    });
  }
}

/** One VIP's part of `walkTable`: a named VIP with an allocated address publishes its l4lb name. */
export function walkVip(vip: VipEntry, v: TableVisitor): void {
  if (vip.name === undefined || vip.ip === undefined || !isAddress(vip.ip)) return;
  const name = toVipName(vip.name);
  const fw = toFrameworkName(vip.framework);
  if (name === '' || fw === '') return;
  const rel = `${name}.${fw}`;
  if (rel.length + '.l4lb.'.length + DCOS_ZONE.length > MAX_NAME) {
    v.skipped?.(rel);
    return;
  }
  v.vip(rel, vip.ip);
}

/**
 * Every record the table publishes, name by name: the specification of the zone in one place. The
 * zone answers exactly these (tests hold it to that); the lookup api's `enumerate` lists them.
 */
export function emitRecords(input: NameInput, sink: RecordSink): void {
  const zones = input.mesosZones;
  const first = zones[0] ?? MESOS_ZONE;
  const slaves = zones.map((d) => `slave.${d}`);
  const slaveFirst = `slave.${first}`;
  const wantTasks = sink.tasks === true;
  for (const zone of [...zones, DCOS_ZONE]) for (const n of selfNames(zone)) sink.address(n, input.self);
  sink.ptr(reverseOf(input.self), `ns1.${first}`);
  walkTable(input, {
    agent(agent) {
      for (const n of slaves) sink.address(n, agent);
      sink.ptr(reverseOf(agent), slaveFirst);
    },
    endpoint(ep) {
      const { service: s, endpoint: e, fw, t, c } = ep;
      const task: TaskRef | undefined = wantTasks
        ? { framework: s.framework, name: e.task ?? s.name, id: e.taskId ?? `${s.id}/${e.address}:${e.port}` }
        : undefined;
      const tfw = `${t}.${fw}`;
      const cfw = `${c}.${fw}`;
      for (const d of zones) {
        sink.address(`${tfw}.${d}`, ep.address, task);
        sink.address(`${cfw}.${d}`, ep.address, task);
        sink.address(`${tfw}.slave.${d}`, ep.agent, task);
        sink.address(`${cfw}.slave.${d}`, ep.agent, task);
        const srv: SrvData = { priority: 0, weight: ep.weight, port: ep.port, target: `${cfw}.${d}` };
        const slaveSrv: SrvData = { priority: 0, weight: ep.weight, port: ep.port, target: `${cfw}.slave.${d}` };
        for (const proto of ['_tcp', '_udp']) {
          sink.srv(`${ep.srvLabel}.${proto}.${fw}.${d}`, srv, task);
          if (ep.hostNetworked) sink.srv(`${ep.srvLabel}.${proto}.${fw}.slave.${d}`, slaveSrv, task);
        }
      }
      sink.address(`${tfw}.agentip.dcos.${DCOS_ZONE}`, ep.agent, task);
      sink.address(`${tfw}.containerip.dcos.${DCOS_ZONE}`, ep.address, task);
      sink.address(`${tfw}.autoip.dcos.${DCOS_ZONE}`, ep.address, task);
      sink.ptr(reverseOf(ep.address), `${tfw}.${first}`);
    },
    vip(rel, ip) {
      const fqdn = `${rel}.l4lb.${DCOS_ZONE}`;
      sink.address(fqdn, ip);
      sink.ptr(reverseOf(ip), fqdn);
    },
  });
}
