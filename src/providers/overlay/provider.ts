/**
 * The overlay provider: container address leases (the overlay IPAM's Attachments, of every agent, from
 * the store) as services and endpoints. A container whose ADD said who it is (service, task, framework,
 * ports: src/overlay/owner.ts) becomes endpoints `container address : port`, so the DNS plane publishes
 * `<task>.<framework>.containerip.dcos.thisdcos.directory` (and `.autoip.`, `<task>.<framework>.mesos`,
 * the SRV records) for it, and L4/L7 can route to it — as dcos-net does with Mesos' container IPs.
 *
 * What a snapshot holds
 * - One service per (framework, service, declared port index n), named `<service>-<n>` as the Marathon
 *   provider names per-port services (`<framework>.<service>-<n>` when two frameworks use one service
 *   name). An L7 route or a VIP names one port this way; DNS names come from the endpoints' `task`, so
 *   every port of a task answers under `<task>.<framework>`.
 * - Endpoints: each address of the attachment (IPv4 and IPv6 alike) × that port, weight 1, health
 *   `unknown` (no verdict: the IPAM knows the container got an address, not that it serves; active
 *   checks or a scheduler feed with health decide), `task` (default: the service), `taskId` (default: the
 *   container id), `agentAddress` = the underlay IP of the agent that holds the lease (its AgentRecord),
 *   `network` = the overlay network (`dcos`, `dcos6`; the CNI network name for explicit ranges), labels
 *   `containerId`, `ifName`, `cniNetwork`, `portName` when the port has one, `protocol`.
 * - Nothing for an attachment without an owner (a runtime that passes no PORTICO_* / args), and nothing
 *   for one that declares no port: the routing model has no address-only endpoint (port 0 would become
 *   SRV records with port 0 and an L4/L7 target nobody listens on), so such a container has no DNS name
 *   until it declares a port. Both are counted in status().details.
 *
 * It watches `overlay/att/` and `overlay/agents/` (a watch starts with a resync and resyncs again after
 * a lost connection) and debounces bursts (20 parallel ADDs → one or two hand-overs). A lease that changes
 * marks its (framework, service) group, an agent record that changes marks the groups of its leases (a
 * resync marks only what differs from what was read before); a hand-over builds the marked groups again,
 * keeps the object of every service that came out the same, and the Outbox (src/providers/sent.ts) sends
 * what differs: a delta naming those services when the sink takes changes, else a whole snapshot.
 */
import { parseAddress } from '../../model/parse.js';
import type { Endpoint, Service, Snapshot } from '../../model/types.js';
import { KEY, parseJson, type AgentRecord, type Attachment } from '../../overlay/types.js';
import type { Store, Watch, WatchEvent } from '../../store/types.js';
import { silentLogger, type Logger } from '../../telemetry/log.js';
import { Outbox, type Knowledge } from '../sent.js';
import type { Provider, ProviderState, ProviderStatus, SnapshotSink } from '../types.js';

export interface OverlayProviderOptions {
  store: Store;
  /** Provider name in the table (`web-0@overlay`). Default `overlay`. */
  name?: string;
  /** Conflict priority; higher wins. Default 30: a scheduler or Marathon feed that knows the same tasks (with health) wins their DNS names. */
  priority?: number;
  /** DNS framework of containers whose owner names none. Default `overlay`. */
  framework?: string;
  /** Quiet time after a lease change before a snapshot is sent, ms. Default 20. */
  debounceMs?: number;
  /** A steady stream of changes still sends a snapshot at least this often, ms. Default 200. */
  maxDelayMs?: number;
  /** How long start() waits for the store's first answer before reporting an error (and going on waiting). Default 5 s. */
  startTimeoutMs?: number;
  logger?: Logger;
}

export const OVERLAY_PROVIDER_DEFAULTS = {
  name: 'overlay',
  priority: 30,
  framework: 'overlay',
  debounceMs: 20,
  maxDelayMs: 200,
  startTimeoutMs: 5000,
} as const;

type LocalService = Omit<Service, 'id' | 'provider'>;

interface Counts {
  attachments: number;
  services: number;
  endpoints: number;
  /** Attachments whose ADD named no service or task. */
  withoutOwner: number;
  /** Attachments with an owner but no declared port (no endpoint: see the header). */
  withoutPorts: number;
}

/** The overlay network of an address: `o:<overlay>@<subnet>` scopes name it; explicit ranges use the CNI network. */
function networkOf(scope: string, cniNetwork: string): string {
  if (!scope.startsWith('o:')) return cniNetwork;
  const at = scope.lastIndexOf('@');
  return at > 2 ? scope.slice(2, at) : cniNetwork;
}

/** Where an attachment goes: its group (framework, service), or why it has no endpoint. */
export type Placement = { group: string; framework: string; service: string } | { none: 'withoutOwner' | 'withoutPorts' };

export function placementOf(att: Attachment, defaultFramework: string): Placement {
  const owner = att.owner;
  const service = owner?.service ?? owner?.task;
  if (!owner || service === undefined) return { none: 'withoutOwner' };
  if (owner.ports.length === 0) return { none: 'withoutPorts' };
  const framework = owner.framework ?? defaultFramework;
  return { group: `${framework}\0${service}`, framework, service };
}

/**
 * The services of one (framework, service) group, named `<base>-<port index>`, from its attachments (each
 * with an owner that declares ports, of this framework and service).
 */
export function groupServices(
  framework: string,
  base: string,
  attachments: Iterable<Attachment>,
  agents: ReadonlyMap<string, AgentRecord>,
): Map<string, LocalService> {
  const ports = new Map<number, { endpoints: Map<string, Endpoint>; labels: Record<string, string> }>();
  for (const att of attachments) {
    const owner = att.owner;
    if (!owner) continue;
    const service = owner.service ?? owner.task;
    const agentIp = agents.get(att.agentId)?.agentIp;
    const agentAddress = agentIp !== undefined ? parseAddress(agentIp) : undefined;
    owner.ports.forEach((p, index) => {
      let slot = ports.get(index);
      if (!slot) {
        slot = { endpoints: new Map(), labels: { ...(p.name !== undefined ? { portName: p.name } : {}), protocol: p.protocol } };
        ports.set(index, slot);
      }
      for (const ip of att.ips) {
        const addr = parseAddress(ip.address.split('/')[0] ?? '');
        if (!addr.ok) continue;
        // The model's key order (address, port, weight, health, task, taskId, agentAddress, network,
        // labels): the aggregator hashes endpoints with plain JSON.stringify.
        const e = {
          address: addr.value,
          port: p.port,
          weight: 1,
          health: 'unknown',
          task: owner.task ?? service,
          taskId: owner.taskId ?? att.containerId,
        } as Endpoint;
        if (agentAddress?.ok) e.agentAddress = agentAddress.value;
        e.network = networkOf(ip.scope, att.network);
        e.labels = {
          cniNetwork: att.network,
          containerId: att.containerId,
          ifName: att.ifName,
          ...(p.name !== undefined ? { portName: p.name } : {}),
          protocol: p.protocol,
        };
        slot.endpoints.set(`${e.address} ${e.port}`, e);
      }
    });
  }
  const out = new Map<string, LocalService>();
  for (const index of [...ports.keys()].sort((a, b) => a - b)) {
    const slot = ports.get(index)!;
    const endpoints = [...slot.endpoints.values()].sort((a, b) =>
      a.address !== b.address ? (a.address < b.address ? -1 : 1) : a.port - b.port,
    );
    out.set(`${base}-${index}`, {
      name: `${base}-${index}`,
      framework,
      endpoints,
      balance: { algorithm: 'roundrobin' },
      vips: [],
      labels: slot.labels,
    });
  }
  return out;
}

/**
 * Attachments (and agent records) → a Snapshot. Pure; exported for tests and for anyone who holds the
 * attachments already. (The provider builds the same, group by group, as leases change.)
 */
export function leasesToSnapshot(
  provider: string,
  attachments: Iterable<Attachment>,
  agents: ReadonlyMap<string, AgentRecord>,
  defaultFramework: string,
): { snapshot: Snapshot; counts: Counts } {
  const counts: Counts = { attachments: 0, services: 0, endpoints: 0, withoutOwner: 0, withoutPorts: 0 };
  const groups = new Map<string, { framework: string; service: string; atts: Attachment[] }>();
  for (const att of attachments) {
    counts.attachments++;
    const at = placementOf(att, defaultFramework);
    if ('none' in at) {
      counts[at.none]++;
      continue;
    }
    let g = groups.get(at.group);
    if (!g) groups.set(at.group, (g = { framework: at.framework, service: at.service, atts: [] }));
    g.atts.push(att);
  }
  // Service names: `<service>-<n>`, framework-qualified where two frameworks share a service name.
  const byName = new Map<string, number>();
  for (const g of groups.values()) byName.set(g.service, (byName.get(g.service) ?? 0) + 1);
  const services: Record<string, LocalService> = {};
  for (const gk of [...groups.keys()].sort()) {
    const g = groups.get(gk)!;
    const base = (byName.get(g.service) ?? 0) > 1 ? `${g.framework}.${g.service}` : g.service;
    for (const [name, svc] of groupServices(g.framework, base, g.atts, agents)) {
      services[name] = svc;
      counts.services++;
      counts.endpoints += svc.endpoints.length;
    }
  }
  return { snapshot: { provider, services, routes: [], entrypoints: {} }, counts };
}

interface Group {
  framework: string;
  service: string;
  /** Attachment keys, in the order they came. */
  atts: Set<string>;
  /** Its services as last built. */
  out: Map<string, LocalService>;
}

export class OverlayProvider implements Provider {
  readonly name: string;
  readonly priority: number;

  private readonly store: Store;
  private readonly framework: string;
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private readonly startTimeoutMs: number;
  private readonly log: Logger;

  private sink: SnapshotSink | undefined;
  private attWatch: Watch | undefined;
  private agentWatch: Watch | undefined;
  private readonly atts = new Map<string, Attachment>();
  /** Each attachment's record as read, to tell what a resync changed. */
  private readonly attText = new Map<string, string>();
  /** Each attachment's group key (absent: no endpoint), and the placements without one, counted. */
  private readonly attGroup = new Map<string, string>();
  private readonly unplaced = new Map<string, 'withoutOwner' | 'withoutPorts'>();
  private readonly groups = new Map<string, Group>();
  /** Service name → the groups (one per framework) that use it: two or more qualify their names. */
  private readonly byService = new Map<string, Set<string>>();
  /** Agent id → its attachments' keys. */
  private readonly agentAtts = new Map<string, Set<string>>();
  private readonly agents = new Map<string, AgentRecord>();
  private readonly agentText = new Map<string, string>();
  /** Groups to build again at the next hand-over. */
  private readonly dirty = new Set<string>();
  /** Every service, by name, as last built. */
  private readonly services = new Map<string, LocalService>();
  private endpointCount = 0;
  private readonly outbox = new Outbox();
  private readonly knowledge: Knowledge = {
    service: (name) => this.services.get(name),
    route: () => undefined,
    entrypoints: () => ({}),
    warnings: () => [],
    snapshot: () => ({ provider: this.name, services: Object.fromEntries(this.services), routes: [], entrypoints: {} }),
  };
  private attsSeen = false;
  private agentsSeen = false;
  private ready: (() => void) | undefined;
  /** start() gave up waiting for the store: the first complete view is still to be sent. */
  private waitingFirst = false;
  private timer: NodeJS.Timeout | undefined;
  private firstPendingAt = 0;
  private stopped = false;

  private state: ProviderState = 'starting';
  private lastUpdate: string | undefined;
  private lastError: string | undefined;
  private lastErrorAt: string | undefined;
  private undecodable = 0;
  private sent = 0;

  constructor(opts: OverlayProviderOptions) {
    this.store = opts.store;
    this.name = opts.name ?? OVERLAY_PROVIDER_DEFAULTS.name;
    this.priority = opts.priority ?? OVERLAY_PROVIDER_DEFAULTS.priority;
    this.framework = opts.framework ?? OVERLAY_PROVIDER_DEFAULTS.framework;
    this.debounceMs = opts.debounceMs ?? OVERLAY_PROVIDER_DEFAULTS.debounceMs;
    this.maxDelayMs = opts.maxDelayMs ?? OVERLAY_PROVIDER_DEFAULTS.maxDelayMs;
    this.startTimeoutMs = opts.startTimeoutMs ?? OVERLAY_PROVIDER_DEFAULTS.startTimeoutMs;
    this.log = (opts.logger ?? silentLogger).child({ component: 'provider', provider: this.name });
  }

  /**
   * Resolves once the first snapshot (every lease in the store at start) has been sent — or, when the
   * store does not answer within startTimeoutMs, with the error in status(); the watches go on, and the
   * first snapshot follows whenever the store answers.
   */
  async start(sink: SnapshotSink): Promise<void> {
    if (this.sink) throw new Error(`overlay provider ${this.name} is already started`);
    this.sink = sink;
    this.stopped = false;
    const first = new Promise<void>((resolve) => {
      this.ready = resolve;
    });
    const timer = setTimeout(() => {
      this.fail(
        `no answer from the ${this.store.kind} store within ${this.startTimeoutMs} ms; container endpoints follow when it answers`,
        undefined,
      );
      this.state = 'error';
      const r = this.ready;
      this.ready = undefined;
      this.waitingFirst = true;
      r?.();
    }, this.startTimeoutMs);
    timer.unref();
    this.agentWatch = this.store.watch(KEY.agents, (ev) => this.onAgent(ev));
    this.attWatch = this.store.watch(KEY.atts, (ev) => this.onAttachment(ev));
    await first;
    clearTimeout(timer);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.attWatch?.close();
    this.agentWatch?.close();
    this.attWatch = undefined;
    this.agentWatch = undefined;
    this.ready?.();
    this.ready = undefined;
    this.state = 'stopped';
    this.sink = undefined;
  }

  status(): ProviderStatus {
    const s: ProviderStatus = {
      name: this.name,
      priority: this.priority,
      state: this.state,
      details: {
        ...this.counts(),
        agents: this.agents.size,
        undecodable: this.undecodable,
        snapshotsSent: this.sent,
        store: this.store.kind,
      },
    };
    if (this.lastUpdate !== undefined) s.lastUpdate = this.lastUpdate;
    if (this.lastError !== undefined) s.lastError = this.lastError;
    if (this.lastErrorAt !== undefined) s.lastErrorAt = this.lastErrorAt;
    return s;
  }

  // -------------------------------------------------------------------------------------------------

  private counts(): Counts {
    let withoutOwner = 0;
    let withoutPorts = 0;
    for (const why of this.unplaced.values()) {
      if (why === 'withoutOwner') withoutOwner++;
      else withoutPorts++;
    }
    return { attachments: this.atts.size, services: this.services.size, endpoints: this.endpointCount, withoutOwner, withoutPorts };
  }

  private onAttachment(ev: WatchEvent): void {
    if (ev.type === 'resync') {
      const seen = new Set<string>();
      for (const e of ev.entries) {
        seen.add(e.key);
        this.putAttachment(e.key, e.value);
      }
      for (const key of [...this.atts.keys()]) if (!seen.has(key)) this.dropAttachment(key);
      this.attsSeen = true;
    } else if (ev.type === 'put') {
      this.putAttachment(ev.key, ev.entry.value);
    } else {
      this.dropAttachment(ev.key);
    }
    this.changed();
  }

  private putAttachment(key: string, value: Buffer): void {
    const text = value.toString('utf8');
    if (this.attText.get(key) === text) return;
    const a = parseJson<Attachment>(value);
    if (a && Array.isArray(a.ips) && typeof a.containerId === 'string') {
      this.dropAttachment(key);
      this.atts.set(key, a);
      this.attText.set(key, text);
      this.place(key, a);
    } else {
      this.dropAttachment(key);
      this.undecodable++;
      this.log.warn({ key }, 'overlay attachment record is not valid JSON; ignored');
    }
  }

  /** Put attachment `key` in its group (marking it), or count why it has none. */
  private place(key: string, a: Attachment): void {
    let onAgent = this.agentAtts.get(a.agentId);
    if (!onAgent) this.agentAtts.set(a.agentId, (onAgent = new Set()));
    onAgent.add(key);
    const at = placementOf(a, this.framework);
    if ('none' in at) {
      this.unplaced.set(key, at.none);
      return;
    }
    let g = this.groups.get(at.group);
    if (!g) this.groups.set(at.group, (g = { framework: at.framework, service: at.service, atts: new Set(), out: new Map() }));
    if (g.atts.size === 0) {
      // The group is (again) in use.
      let users = this.byService.get(at.service);
      if (!users) this.byService.set(at.service, (users = new Set()));
      users.add(at.group);
      // A second framework using the name qualifies every group's names (and the first's again when it goes).
      if (users.size === 2) for (const gk of users) this.dirty.add(gk);
    }
    g.atts.add(key);
    this.attGroup.set(key, at.group);
    this.dirty.add(at.group);
  }

  private dropAttachment(key: string): void {
    const a = this.atts.get(key);
    if (!a) return;
    this.atts.delete(key);
    this.attText.delete(key);
    this.unplaced.delete(key);
    const onAgent = this.agentAtts.get(a.agentId);
    onAgent?.delete(key);
    if (onAgent?.size === 0) this.agentAtts.delete(a.agentId);
    const gk = this.attGroup.get(key);
    if (gk === undefined) return;
    this.attGroup.delete(key);
    this.dirty.add(gk);
    const g = this.groups.get(gk) as Group;
    g.atts.delete(key);
    if (g.atts.size > 0) return;
    // An empty group stays until the hand-over has taken its services back (see flushGroups).
    const users = this.byService.get(g.service) as Set<string>;
    users.delete(gk);
    if (users.size === 0) this.byService.delete(g.service);
    if (users.size === 1) for (const other of users) this.dirty.add(other);
  }

  private onAgent(ev: WatchEvent): void {
    if (ev.type === 'resync') {
      const seen = new Set<string>();
      for (const e of ev.entries) {
        const a = parseJson<AgentRecord>(e.value);
        if (!a?.agentId) continue;
        seen.add(a.agentId);
        this.putAgent(a, e.value.toString('utf8'));
      }
      for (const id of [...this.agents.keys()]) if (!seen.has(id)) this.dropAgent(id);
      this.agentsSeen = true;
    } else if (ev.type === 'put') {
      const a = parseJson<AgentRecord>(ev.entry.value);
      if (a?.agentId) this.putAgent(a, ev.entry.value.toString('utf8'));
    } else {
      this.dropAgent(decodeURIComponent(ev.key.slice(KEY.agents.length)));
    }
    this.changed();
  }

  private putAgent(a: AgentRecord, text: string): void {
    if (this.agentText.get(a.agentId) === text) return;
    this.agents.set(a.agentId, a);
    this.agentText.set(a.agentId, text);
    this.agentChanged(a.agentId);
  }

  private dropAgent(id: string): void {
    if (!this.agents.delete(id)) return;
    this.agentText.delete(id);
    this.agentChanged(id);
  }

  /** The agent's address is in its leases' endpoints: their groups are built again. */
  private agentChanged(id: string): void {
    for (const key of this.agentAtts.get(id) ?? []) {
      const gk = this.attGroup.get(key);
      if (gk !== undefined) this.dirty.add(gk);
    }
  }

  /** Build the marked groups again; returns the service names that may differ. */
  private flushGroups(): Set<string> {
    const touched = new Set<string>();
    for (const gk of this.dirty) {
      const g = this.groups.get(gk);
      if (!g) continue;
      const before = g.out;
      let now = new Map<string, LocalService>();
      if (g.atts.size > 0) {
        const base = (this.byService.get(g.service)?.size ?? 0) > 1 ? `${g.framework}.${g.service}` : g.service;
        now = groupServices(
          g.framework,
          base,
          [...g.atts].map((k) => this.atts.get(k) as Attachment),
          this.agents,
        );
      } else {
        this.groups.delete(gk);
      }
      for (const [name, svc] of before) {
        touched.add(name);
        if (this.services.get(name) === svc) this.services.delete(name);
        this.endpointCount -= svc.endpoints.length;
      }
      for (const [name, svc] of now) {
        const old = before.get(name);
        // The same service as built before: its object, as the sink was handed it.
        const kept = old !== undefined && JSON.stringify(old) === JSON.stringify(svc) ? old : svc;
        now.set(name, kept);
        touched.add(name);
        this.services.set(name, kept);
        this.endpointCount += kept.endpoints.length;
      }
      g.out = now;
    }
    this.dirty.clear();
    return touched;
  }

  private changed(): void {
    if (this.stopped) return;
    if (this.ready || this.waitingFirst) {
      // Before the first snapshot: send it as soon as both watches have given their contents.
      if (this.attsSeen && this.agentsSeen) {
        this.waitingFirst = false;
        this.publish();
        const r = this.ready;
        this.ready = undefined;
        r?.();
      }
      return;
    }
    const now = Date.now();
    if (this.timer) {
      // Debounce, but never past maxDelayMs after the first change that is waiting.
      if (now - this.firstPendingAt + this.debounceMs <= this.maxDelayMs) this.timer.refresh();
      return;
    }
    this.firstPendingAt = now;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.publish();
    }, this.debounceMs);
    this.timer.unref();
  }

  private publish(): void {
    if (this.stopped || !this.sink) return;
    let touched: Set<string>;
    try {
      touched = this.flushGroups();
    } catch (err) {
      this.fail(`could not build the overlay services: ${(err as Error).message}`, err);
      return;
    }
    let sent;
    try {
      sent = this.outbox.send(this.sink, this.knowledge, { services: touched });
    } catch (err) {
      this.fail(`the overlay snapshot was not accepted: ${(err as Error).message}`, err);
      return;
    }
    if (sent.kind === 'none') {
      if (this.state === 'starting') this.state = 'ok';
      return;
    }
    this.sent++;
    this.lastUpdate = new Date().toISOString();
    this.state = 'ok';
    this.lastError = undefined;
    this.lastErrorAt = undefined;
    this.log.debug(
      {
        sent: sent.kind,
        servicesChanged: sent.services,
        services: this.services.size,
        endpoints: this.endpointCount,
        attachments: this.atts.size,
      },
      sent.kind === 'delta' ? 'overlay changes sent' : 'overlay snapshot sent',
    );
  }

  private fail(message: string, err: unknown): void {
    this.state = 'degraded';
    this.lastError = message;
    this.lastErrorAt = new Date().toISOString();
    this.log.error({ err }, message);
  }
}
