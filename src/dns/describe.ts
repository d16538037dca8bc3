/**
 * The DNS plane's lookup views, in Mesos-DNS's shapes (its HTTP api: /v1/hosts, /v1/services,
 * /v1/enumerate, /v1/config): rows read from the zone being served, the records of every task, and the
 * configuration. They read what the plane hands them and change nothing.
 */
import type { DnsPlaneConfig } from './settings.js';
import { DCOS_ZONE, emitRecords, MESOS_ZONE, type NameInput, type SrvData, type TaskRef } from './names.js';
import type { Zone } from './zone.js';

/** Rows of the Mesos-DNS lookup api. */
export interface HostRecord {
  host: string;
  ip: string;
}
export interface ServiceRecord {
  service: string;
  host: string;
  ip: string;
  port: string;
}
export interface EnumerateResult {
  frameworks: Array<{
    name: string;
    tasks: Array<{ name: string; id: string; records: Array<{ name: string; host: string; rtype: string }> }>;
  }>;
}

/** Mesos-DNS strips `.*` wildcards from api lookups. */
function cleanWild(name: string): string {
  return name.includes('.*') ? name.replace(/\.\*/g, '') : name;
}

/** A/AAAA of `name` in `zone`: `[{host: "name.", ip}]`, empty when there are none. */
export function hostRecords(zone: Zone, name: string): HostRecord[] {
  const node = zone.lookup(cleanWild(name));
  if (!node) return [];
  const host = `${node.name}.`;
  return [...node.v4, ...node.v6].map((ip) => ({ host, ip }));
}

/** SRV of `name` in `zone`, each with its target's first address; `service` echoes the name as asked. */
export function serviceRecords(zone: Zone, name: string): ServiceRecord[] {
  const node = zone.lookup(cleanWild(name));
  if (!node) return [];
  return node.srv.map((s: SrvData) => {
    const target = zone.lookup(s.target);
    return { service: name, host: `${s.target}.`, ip: target?.v4[0] ?? target?.v6[0] ?? '', port: String(s.port) };
  });
}

/** Every framework, task and record of `input`, as Mesos-DNS's /v1/enumerate. */
export function enumerateRecords(input: NameInput): EnumerateResult {
  const frameworks = new Map<
    string,
    Map<string, { name: string; id: string; records: Array<{ name: string; host: string; rtype: string }> }>
  >();
  const add = (task: TaskRef | undefined, name: string, host: string, rtype: string): void => {
    if (!task) return;
    let fw = frameworks.get(task.framework);
    if (!fw) frameworks.set(task.framework, (fw = new Map()));
    let t = fw.get(task.id);
    if (!t) fw.set(task.id, (t = { name: task.name, id: task.id, records: [] }));
    t.records.push({ name: `${name}.`, host, rtype });
  };
  emitRecords(input, {
    tasks: true,
    address: (name, value, task) => add(task, name, value, value.includes(':') ? 'AAAA' : 'A'),
    srv: (name, srv, task) => add(task, name, `${srv.target}.:${srv.port}`, 'SRV'),
    ptr: () => {},
  });
  return {
    frameworks: [...frameworks]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, tasks]) => ({ name, tasks: [...tasks.values()] })),
  };
}

/** What the /v1/config view reads of the plane. */
export interface MesosConfigInput {
  config: Pick<DnsPlaneConfig, 'ttlMs' | 'upstreams' | 'allowRecursionFrom'>;
  /** The UDP port served (the configured one before the plane is bound). */
  port: number;
  /** The configured listen host. */
  listenHost: string;
  /** `mesos` and the config's own domains (`thisdcos.directory` is added here). */
  mesosZones: readonly string[];
  upstreamTimeoutMs: number;
  holdMs: number;
  maxUdpPayload: number;
  /** The served zone's SOA serial. */
  serial: number;
  /** Whether recursion is offered (upstreams or per-zone upstreams are configured). */
  recursion: boolean;
}

/** The configuration, in Mesos-DNS's /v1/config shape (plus our own fields). */
export function mesosDnsConfig(x: MesosConfigInput): Record<string, unknown> {
  const ttl = Math.round(x.config.ttlMs / 1000);
  return {
    RefreshSeconds: 0,
    TTL: ttl,
    Port: x.port,
    Domain: MESOS_ZONE,
    Domains: [...x.mesosZones, DCOS_ZONE],
    Resolvers: x.config.upstreams,
    Timeout: Math.ceil(x.upstreamTimeoutMs / 1000),
    StateTimeoutSeconds: Math.round(x.holdMs / 1000),
    SOAMname: `ns1.${MESOS_ZONE}.`,
    SOARname: `root.ns1.${MESOS_ZONE}.`,
    SOASerial: x.serial,
    SOARefresh: 60,
    SOARetry: 600,
    SOAExpire: 86400,
    SOAMinttl: ttl,
    Listener: x.listenHost,
    DnsOn: true,
    HttpOn: true,
    ExternalOn: x.recursion,
    RecurseOn: x.recursion,
    EnumerationOn: true,
    AllowRecursionFrom: x.config.allowRecursionFrom,
    EDNSUDPSize: x.maxUdpPayload,
  };
}
