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
 * a lost connection), debounces bursts (20 parallel ADDs → one or two snapshots) and sends a complete
 * snapshot each time, dropping one equal to the last sent.
 */
import { contentHash } from '../../model/canonical.js';
import { parseAddress } from '../../model/parse.js';
import type { Endpoint, Service, Snapshot } from '../../model/types.js';
import { KEY, parseJson, type AgentRecord, type Attachment } from '../../overlay/types.js';
import type { Store, Watch, WatchEvent } from '../../store/types.js';
import { silentLogger, type Logger } from '../../telemetry/log.js';
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

/**
 * Attachments (and agent records) → a Snapshot. Pure; exported for tests and for anyone who holds the
 * attachments already.
 */
export function leasesToSnapshot(
  provider: string,
  attachments: Iterable<Attachment>,
  agents: ReadonlyMap<string, AgentRecord>,
  defaultFramework: string,
): { snapshot: Snapshot; counts: Counts } {
  const counts: Counts = { attachments: 0, services: 0, endpoints: 0, withoutOwner: 0, withoutPorts: 0 };
  // (framework, service) → port index → service being built.
  const groups = new Map<
    string,
    { framework: string; service: string; ports: Map<number, { endpoints: Map<string, Endpoint>; labels: Record<string, string> }> }
  >();
  for (const att of attachments) {
    counts.attachments++;
    const owner = att.owner;
    const service = owner?.service ?? owner?.task;
    if (!owner || service === undefined) {
      counts.withoutOwner++;
      continue;
    }
    if (owner.ports.length === 0) {
      counts.withoutPorts++;
      continue;
    }
    const framework = owner.framework ?? defaultFramework;
    const gk = `${framework}\0${service}`;
    let g = groups.get(gk);
    if (!g) groups.set(gk, (g = { framework, service, ports: new Map() }));
    const agentIp = agents.get(att.agentId)?.agentIp;
    const agentAddress = agentIp !== undefined ? parseAddress(agentIp) : undefined;
    owner.ports.forEach((p, index) => {
      let slot = g.ports.get(index);
      if (!slot) {
        slot = { endpoints: new Map(), labels: { ...(p.name !== undefined ? { portName: p.name } : {}), protocol: p.protocol } };
        g.ports.set(index, slot);
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
  // Service names: `<service>-<n>`, framework-qualified where two frameworks share a service name.
  const byName = new Map<string, number>();
  for (const g of groups.values()) byName.set(g.service, (byName.get(g.service) ?? 0) + 1);
  const services: Record<string, LocalService> = {};
  const keys = [...groups.keys()].sort();
  for (const gk of keys) {
    const g = groups.get(gk)!;
    const base = (byName.get(g.service) ?? 0) > 1 ? `${g.framework}.${g.service}` : g.service;
    for (const index of [...g.ports.keys()].sort((a, b) => a - b)) {
      const slot = g.ports.get(index)!;
      const endpoints = [...slot.endpoints.values()].sort((a, b) =>
        a.address !== b.address ? (a.address < b.address ? -1 : 1) : a.port - b.port,
      );
      services[`${base}-${index}`] = {
        name: `${base}-${index}`,
        framework: g.framework,
        endpoints,
        balance: { algorithm: 'roundrobin' },
        vips: [],
        labels: slot.labels,
      };
      counts.services++;
      counts.endpoints += endpoints.length;
    }
  }
  return { snapshot: { provider, services, routes: [], entrypoints: {} }, counts };
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
  private readonly agents = new Map<string, AgentRecord>();
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
  private sentHash: string | undefined;
  private counts: Counts = { attachments: 0, services: 0, endpoints: 0, withoutOwner: 0, withoutPorts: 0 };
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
        ...this.counts,
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

  private onAttachment(ev: WatchEvent): void {
    if (ev.type === 'resync') {
      this.atts.clear();
      for (const e of ev.entries) this.putAttachment(e.key, e.value);
      this.attsSeen = true;
    } else if (ev.type === 'put') {
      this.putAttachment(ev.key, ev.entry.value);
    } else {
      this.atts.delete(ev.key);
    }
    this.changed();
  }

  private putAttachment(key: string, value: Buffer): void {
    const a = parseJson<Attachment>(value);
    if (a && Array.isArray(a.ips) && typeof a.containerId === 'string') {
      this.atts.set(key, a);
    } else {
      this.atts.delete(key);
      this.undecodable++;
      this.log.warn({ key }, 'overlay attachment record is not valid JSON; ignored');
    }
  }

  private onAgent(ev: WatchEvent): void {
    if (ev.type === 'resync') {
      this.agents.clear();
      for (const e of ev.entries) {
        const a = parseJson<AgentRecord>(e.value);
        if (a?.agentId) this.agents.set(a.agentId, a);
      }
      this.agentsSeen = true;
    } else if (ev.type === 'put') {
      const a = parseJson<AgentRecord>(ev.entry.value);
      if (a?.agentId) this.agents.set(a.agentId, a);
    } else {
      this.agents.delete(decodeURIComponent(ev.key.slice(KEY.agents.length)));
    }
    this.changed();
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
    let built: ReturnType<typeof leasesToSnapshot>;
    try {
      built = leasesToSnapshot(this.name, this.atts.values(), this.agents, this.framework);
    } catch (err) {
      this.fail(`could not build the overlay snapshot: ${(err as Error).message}`, err);
      return;
    }
    this.counts = built.counts;
    const hash = contentHash(built.snapshot);
    if (hash === this.sentHash) {
      if (this.state === 'starting') this.state = 'ok';
      return;
    }
    try {
      this.sink(built.snapshot);
    } catch (err) {
      this.fail(`the overlay snapshot was not accepted: ${(err as Error).message}`, err);
      return;
    }
    this.sentHash = hash;
    this.sent++;
    this.lastUpdate = new Date().toISOString();
    this.state = 'ok';
    this.lastError = undefined;
    this.lastErrorAt = undefined;
    this.log.debug(
      { services: built.counts.services, endpoints: built.counts.endpoints, attachments: built.counts.attachments },
      'overlay snapshot sent',
    );
  }

  private fail(message: string, err: unknown): void {
    this.state = 'degraded';
    this.lastError = message;
    this.lastErrorAt = new Date().toISOString();
    this.log.error({ err }, message);
  }
}
