/**
 * Overlay networks and what the store holds about them. Defaults are DC/OS's (dcos/dcos gen/calc.py,
 * dcos_overlay_network): `dcos` 9.0.0.0/8 with a /24 per agent, `dcos6` fd01:b::/64 with a /80 per
 * agent, MTU 1420, VTEPs from 44.128.0.0/20 and fd01:a::/64, MAC OUI 70:B3:D5, VXLAN VNI 1024 (`vtep1024`).
 *
 * Store layout (every key under `overlay/`):
 *   overlay/networks/<net>                 OverlayNetworkConfig as first claimed (changing a subnet in use is refused)
 *   overlay/subnets/<net>/<index>          SubnetClaim: which agent holds the index-th subnet (created by CAS 0)
 *   overlay/vteps/<index>                  { agentId }: the index-th VTEP address (CAS 0)
 *   overlay/agents/<agentId>               AgentRecord: underlay IP, VTEP addresses and MAC, subnets
 *   overlay/ip/<scope>/<address>           IpClaim: one container address (CAS 0: never two owners)
 *   overlay/att/<cniNet>/<cid>/<ifName>    Attachment: the commit record of one ADD (written last)
 * A scope is `o:<overlay>@<agent subnet>` for overlay networks and `r:<cni network name>` for explicit ranges.
 */
import type { AttachmentOwner } from './owner.js';

export type { AttachmentOwner, OwnerPort } from './owner.js';

export interface OverlayNetworkConfig {
  /** `dcos`, `dcos6`: what `ipam.network` names. */
  name: string;
  /** The whole overlay, IPv4 or IPv6 CIDR. */
  subnet: string;
  /** Prefix length of each agent's slice (24 for 9.0.0.0/8, 80 for fd01:b::/64). */
  prefix: number;
  /** MTU containers on this network should use (informational; the main plugin sets it). Default 1420. */
  mtu?: number;
}

export interface VtepConfig {
  /** Default `vtep1024`. */
  device: string;
  vni: number;
  /** UDP port. Default 4789 (IANA). */
  port: number;
  subnet: string;
  subnet6: string;
  /** First three bytes of VTEP MACs. */
  macOui: string;
}

export const DEFAULT_NETWORKS: OverlayNetworkConfig[] = [
  { name: 'dcos', subnet: '9.0.0.0/8', prefix: 24, mtu: 1420 },
  { name: 'dcos6', subnet: 'fd01:b::/64', prefix: 80, mtu: 1420 },
];

export const DEFAULT_VTEP: VtepConfig = {
  device: 'vtep1024',
  vni: 1024,
  port: 4789,
  subnet: '44.128.0.0/20',
  subnet6: 'fd01:a::/64',
  macOui: '70:b3:d5',
};

export interface SubnetClaim {
  agentId: string;
  subnet: string;
  at: string;
}

export interface AgentRecord {
  agentId: string;
  /** Underlay address: where VXLAN packets for this agent go. */
  agentIp: string;
  vtepIp: string;
  vtepIp6: string;
  vtepMac: string;
  /** Overlay network name → this agent's subnet of it. */
  subnets: Record<string, string>;
  /** Overlay network name → why the agent has no subnet of it (exhausted). */
  errors?: Record<string, string>;
  updatedAt: string;
}

export interface IpClaim {
  network: string;
  containerId: string;
  ifName: string;
  /** Agent whose daemon wrote it. */
  agentId: string;
  at: string;
}

export interface AttachmentIp {
  /** `9.0.1.5/24` (the CNI result form). */
  address: string;
  gateway?: string;
  /** Store scope of the address's IpClaim. */
  scope: string;
}

export interface Attachment {
  network: string;
  containerId: string;
  ifName: string;
  agentId: string;
  ips: AttachmentIp[];
  /** Who the container is (service, task, framework, ports), as the runtime said at ADD (owner.ts). */
  owner?: AttachmentOwner;
  /** The ADD's result, replayed when the same ADD arrives again (a plugin killed after the daemon finished). */
  result: CniResult;
  at: string;
}

export interface CniResult {
  cniVersion: string;
  ips: Array<{ address: string; gateway?: string; version?: string }>;
  routes: Array<{ dst: string; gw?: string }>;
  dns: Record<string, unknown>;
}

/** One container lease as the rest of Portico sees it (endpoint addresses). */
export interface LeaseView {
  network: string;
  containerId: string;
  ifName: string;
  /** Bare addresses, no prefix length. */
  ips: string[];
  agentId: string;
  owner?: AttachmentOwner;
}

export const KEY = {
  root: 'overlay/',
  network: (n: string) => `overlay/networks/${enc(n)}`,
  subnets: (n: string) => `overlay/subnets/${enc(n)}/`,
  subnet: (n: string, i: bigint | number) => `overlay/subnets/${enc(n)}/${i}`,
  vteps: 'overlay/vteps/',
  vtep: (i: number) => `overlay/vteps/${i}`,
  agents: 'overlay/agents/',
  agent: (id: string) => `overlay/agents/${enc(id)}`,
  ips: (scope: string) => `overlay/ip/${enc(scope)}/`,
  ip: (scope: string, addr: string) => `overlay/ip/${enc(scope)}/${addr}`,
  atts: 'overlay/att/',
  attsOf: (net: string) => `overlay/att/${enc(net)}/`,
  att: (net: string, cid: string, ifName: string) => `overlay/att/${enc(net)}/${enc(cid)}/${enc(ifName)}`,
};

export function enc(s: string): string {
  return encodeURIComponent(s);
}

export function parseJson<T>(b: Buffer): T | undefined {
  try {
    return JSON.parse(b.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}
