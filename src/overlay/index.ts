/**
 * The overlay, daemon side: overlay networks and this agent's subnets (claimed in the store), the IPAM
 * that `portico-cni` processes reach over a unix socket, the VXLAN data path kept in sync with the other
 * agents in the store, and the view the rest of Portico uses (`status()` for `GET /v1/overlay`, `leases()`
 * + `onChange()` for container addresses as endpoints).
 *
 *   const overlay = await openOverlay({ store, agentId, agentIp });
 *   registerOverlayApi(api.route.bind(api), overlay);
 */
import type { RouteRegistrar } from '../api/types.js';
import { ErrorCodes, PorticoError } from '../model/errors.js';
import type { Store, Watch } from '../store/types.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import { parseAddr, parseCidr, size } from './addr.js';
import { ensureNetworks, registerAgent, removeAgent, validateNetworks } from './agents.js';
import { DEFAULT_SOCKET } from './cni/protocol.js';
import { Ipam, overlayScope, type AgentView, type IpamStats } from './ipam.js';
import { startIpamServer, type IpamServer } from './server.js';
import {
  DEFAULT_NETWORKS,
  DEFAULT_VTEP,
  KEY,
  parseJson,
  type AgentRecord,
  type Attachment,
  type LeaseView,
  type OverlayNetworkConfig,
  type VtepConfig,
} from './types.js';
import { VxlanProgrammer } from './vxlan.js';

export type { AgentRecord, AttachmentOwner, LeaseView, OverlayNetworkConfig, OwnerPort, VtepConfig } from './types.js';
export { OWNER_KEYS } from './owner.js';
export { DEFAULT_NETWORKS, DEFAULT_VTEP } from './types.js';
export { DEFAULT_SOCKET } from './cni/protocol.js';

export interface OverlayOptions {
  store: Store;
  /** Stable id of this machine (survives restarts: it is how an agent gets its old subnets back). */
  agentId: string;
  /** This machine's underlay address: where other agents send VXLAN packets for it. */
  agentIp: string;
  /** Default: DC/OS's `dcos` (9.0.0.0/8, /24 per agent) and `dcos6` (fd01:b::/64, /80 per agent). */
  networks?: OverlayNetworkConfig[];
  /** Where `portico-cni` finds the daemon. Default /run/portico/ipam.sock. `null`: serve no socket. */
  socketPath?: string | null;
  /**
   * Where to serve instead when socketPath cannot be served (no permission to create its directory,
   * another live daemon on it): said in a warning. Unset: that failure is an error.
   */
  fallbackSocketPath?: string;
  logger?: Logger;
  /** Program the VXLAN data path with iproute2. Default false. */
  programLinux?: boolean;
  /** VTEP device, VNI, port, subnets, MAC OUI. Default DC/OS's with port 4789. */
  vtep?: Partial<VtepConfig>;
  /** Program inside this network namespace (`ip -n NS`): tests, or an agent in a container. */
  netns?: string;
}

export interface OverlayNetworkStatus extends OverlayNetworkConfig {
  /** Agent slices in the whole network, and how many agents hold one. */
  subnetsTotal: string;
  subnetsUsed: number;
  /** This agent's slice, or why it has none. */
  agentSubnet?: string;
  error?: string;
  /** Addresses leased in this agent's slice, and how many it has. */
  leased: number;
  capacity: string;
}

export interface OverlayStatus {
  agentId: string;
  agentIp: string;
  vtep: { device: string; vni: number; port: number; ip: string; ip6: string; mac: string };
  networks: OverlayNetworkStatus[];
  agents: AgentRecord[];
  leases: number;
  socket: string | null;
  dataPath: { programmed: boolean; lastReconciled?: string; error?: string };
  ipam: IpamStats;
}

export interface Overlay {
  readonly agentId: string;
  /** This agent's record (VTEP, subnets) as published in the store. */
  agent(): AgentRecord;
  status(): Promise<OverlayStatus>;
  /** Every committed container lease in the cluster (all agents), from the store. */
  leases(): LeaseView[];
  /** Called (synchronously, after the change) whenever `leases()` changes. Returns an unsubscribe. */
  onChange(cb: (leases: LeaseView[]) => void): () => void;
  /** Forget an agent (its subnets, VTEP); every agent removes its routes to it. */
  removeAgent(agentId: string): Promise<boolean>;
  /** Reprogram the data path now (also done on every agent change). */
  reconcile(): Promise<void>;
  close(opts?: { teardownLinux?: boolean }): Promise<void>;
}

export async function openOverlay(opts: OverlayOptions): Promise<Overlay> {
  const log = (opts.logger ?? silentLogger).child({ component: 'overlay' });
  const store = opts.store;
  const networks = opts.networks ?? DEFAULT_NETWORKS;
  const vtep: VtepConfig = { ...DEFAULT_VTEP, ...(opts.vtep ?? {}) };
  validateNetworks(networks);
  try {
    parseAddr(opts.agentIp);
    parseCidr(vtep.subnet);
    parseCidr(vtep.subnet6);
  } catch (e) {
    throw new PorticoError(ErrorCodes.OVERLAY_CONFIG_INVALID, `overlay: ${(e as Error).message}`, 400);
  }
  if (!opts.agentId) throw new PorticoError(ErrorCodes.OVERLAY_CONFIG_INVALID, 'overlay: an agent id is required', 400);

  await ensureNetworks(store, networks);
  const self = await registerAgent(store, opts.agentId, opts.agentIp, networks, vtep);
  for (const [n, err] of Object.entries(self.errors ?? {})) log.error({ network: n }, `overlay: ${err}`);
  log.info({ agentId: self.agentId, subnets: self.subnets, vtep: self.vtepIp }, 'overlay: agent registered');

  const byName = new Map(networks.map((n) => [n.name, n]));
  const view: AgentView = {
    agentId: opts.agentId,
    network: (name) => byName.get(name),
    subnet: (name) => {
      const s = self.subnets[name];
      if (s) return { subnet: s };
      return { error: self.errors?.[name] ?? `agent ${opts.agentId} has no subnet of ${name}` };
    },
  };
  const ipam = new Ipam(store, view);
  const orphans = await ipam.reconcile();
  if (orphans > 0) log.warn({ orphans }, 'overlay: removed address claims of ADDs that never committed (daemon stopped mid-ADD)');

  // Agents (for the data path and the api), kept from a watch.
  const agents = new Map<string, AgentRecord>();
  const programmer = opts.programLinux
    ? new VxlanProgrammer({ vtep, logger: log, ...(opts.netns ? { netns: opts.netns } : {}) })
    : undefined;
  let closed = false;
  const reprogram = (): Promise<void> => {
    if (!programmer || closed) return Promise.resolve();
    return programmer.reconcile(self, [...agents.values()]);
  };
  let firstAgents!: () => void;
  const agentsReady = new Promise<void>((r) => {
    firstAgents = r;
  });
  const agentWatch: Watch = store.watch(KEY.agents, (ev) => {
    if (ev.type === 'resync') {
      agents.clear();
      for (const e of ev.entries) {
        const a = parseJson<AgentRecord>(e.value);
        if (a) agents.set(a.agentId, a);
      }
    } else if (ev.type === 'put') {
      const a = parseJson<AgentRecord>(ev.entry.value);
      if (a) agents.set(a.agentId, a);
    } else {
      const id = decodeURIComponent(ev.key.slice(KEY.agents.length));
      agents.delete(id);
      if (id === opts.agentId) log.warn('overlay: this agent was removed from the store; it keeps serving its old subnets until restarted');
    }
    firstAgents();
    void reprogram();
  });

  // Leases (all agents), kept from a watch, for leases()/onChange().
  const leases = new Map<string, LeaseView>();
  const listeners = new Set<(l: LeaseView[]) => void>();
  const toView = (a: Attachment): LeaseView => ({
    network: a.network,
    containerId: a.containerId,
    ifName: a.ifName,
    ips: a.ips.map((i) => i.address.split('/')[0]!),
    agentId: a.agentId,
    ...(a.owner ? { owner: a.owner } : {}),
  });
  const notify = () => {
    const list = [...leases.values()];
    for (const cb of listeners) {
      try {
        cb(list);
      } catch (e) {
        log.error({ err: e }, 'overlay: a lease listener threw');
      }
    }
  };
  const leaseWatch: Watch = store.watch(KEY.atts, (ev) => {
    if (ev.type === 'resync') {
      leases.clear();
      for (const e of ev.entries) {
        const a = parseJson<Attachment>(e.value);
        if (a) leases.set(e.key, toView(a));
      }
    } else if (ev.type === 'put') {
      const a = parseJson<Attachment>(ev.entry.value);
      if (a) leases.set(ev.key, toView(a));
    } else {
      leases.delete(ev.key);
    }
    notify();
  });
  await agentsReady;
  await reprogram();

  let server: IpamServer | undefined;
  const socketPath = opts.socketPath === undefined ? DEFAULT_SOCKET : opts.socketPath;
  if (socketPath !== null) {
    try {
      try {
        server = await startIpamServer(socketPath, ipam, log);
      } catch (e) {
        const fallback = opts.fallbackSocketPath;
        if (fallback === undefined || fallback === socketPath) throw e;
        log.warn(
          { socket: socketPath, reason: (e as Error).message, instead: fallback },
          "overlay: cannot serve IPAM on the default socket; serving it on the data directory's instead (give portico-cni its path: ipam.socket in the CNI config, or PORTICO_IPAM_SOCKET)",
        );
        server = await startIpamServer(fallback, ipam, log);
      }
    } catch (e) {
      agentWatch.close();
      leaseWatch.close();
      throw new PorticoError(ErrorCodes.LISTEN_FAILED, `overlay: cannot serve IPAM on ${socketPath}: ${(e as Error).message}`, 500, {
        cause: e,
      });
    }
  }

  const overlay: Overlay = {
    agentId: opts.agentId,
    agent: () => self,
    leases: () => [...leases.values()],
    onChange(cb) {
      listeners.add(cb);
      return () => listeners.delete(cb);
    },
    async status() {
      const nets: OverlayNetworkStatus[] = [];
      const claims = await store.list('overlay/subnets/');
      for (const n of networks) {
        const whole = parseCidr(n.subnet);
        const prefix = KEY.subnets(n.name);
        const mine = self.subnets[n.name];
        const slice = mine ? parseCidr(mine) : undefined;
        const err = self.errors?.[n.name];
        nets.push({
          ...n,
          mtu: n.mtu ?? 1420,
          subnetsTotal: String(1n << BigInt(n.prefix - whole.prefix)),
          subnetsUsed: claims.filter((c) => c.key.startsWith(prefix)).length,
          ...(mine ? { agentSubnet: mine } : {}),
          ...(err ? { error: err } : {}),
          leased: mine ? await ipam.usage(overlayScope(n.name, mine)) : 0,
          // network, gateway and broadcast are never leased
          capacity: slice ? String(size(slice) - 3n) : '0',
        });
      }
      return {
        agentId: self.agentId,
        agentIp: self.agentIp,
        vtep: { device: vtep.device, vni: vtep.vni, port: vtep.port, ip: self.vtepIp, ip6: self.vtepIp6, mac: self.vtepMac },
        networks: nets,
        agents: [...agents.values()].sort((a, b) => a.agentId.localeCompare(b.agentId)),
        leases: leases.size,
        socket: server?.socketPath ?? null,
        dataPath: {
          programmed: programmer !== undefined,
          ...(programmer?.lastReconciled ? { lastReconciled: programmer.lastReconciled } : {}),
          ...(programmer?.lastError ? { error: programmer.lastError } : {}),
        },
        ipam: { ...ipam.stats },
      };
    },
    async removeAgent(agentId) {
      if (agentId === opts.agentId) throw new PorticoError(ErrorCodes.API_BAD_REQUEST, 'an agent cannot remove itself while it runs', 400);
      return removeAgent(store, agentId);
    },
    reconcile: reprogram,
    async close(o = {}) {
      if (closed) return;
      closed = true;
      agentWatch.close();
      leaseWatch.close();
      listeners.clear();
      await server?.close();
      if (programmer && o.teardownLinux) await programmer.teardown();
    },
  };
  return overlay;
}

/**
 * `GET /v1/overlay` (networks, agents, subnets, usage, errors such as an exhausted network),
 * `GET /v1/overlay/leases`, `DELETE /v1/overlay/agents/:id`. `route` must be callable on its own.
 */
export function registerOverlayApi(route: RouteRegistrar, overlay: Overlay): void {
  const tags = ['overlay'];
  route('GET', '/v1/overlay', () => overlay.status(), {
    doc: { summary: 'Overlay networks, agents and their subnets, VTEPs, lease usage, and why an agent has no subnet', tags },
  });
  route('GET', '/v1/overlay/leases', () => overlay.leases(), {
    doc: {
      summary:
        'Container address leases (network, container id, interface, addresses, agent, owner: service/task/framework/ports) of every agent',
      tags,
    },
  });
  route(
    'DELETE',
    '/v1/overlay/agents/:id',
    async (ctx) => {
      const ok = await overlay.removeAgent(ctx.param('id'));
      if (!ok) throw new PorticoError(ErrorCodes.API_NOT_FOUND, `no overlay agent ${ctx.param('id')}`, 404);
      return undefined;
    },
    { doc: { summary: 'Forget an agent: frees its subnets and VTEP; the other agents remove their routes to it', tags } },
  );
}
