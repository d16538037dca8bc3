/**
 * Agent subnets and VTEPs, claimed through the store with compare-and-set: a claim key is created with
 * expected revision 0, so two agents never hold the same subnet; an agent that finds a claim of its own
 * (it restarted) takes it back; when every subnet is taken the agent records why, for the api.
 */
import { ErrorCodes, PorticoError } from '../model/errors.js';
import type { Store } from '../store/types.js';
import { formatAddr, formatCidr, nthSubnet, parseCidr, subnetCount } from './addr.js';
import { KEY, parseJson, type AgentRecord, type OverlayNetworkConfig, type SubnetClaim, type VtepConfig } from './types.js';

export function validateNetworks(networks: OverlayNetworkConfig[]): void {
  const seen = new Set<string>();
  for (const n of networks) {
    const where = `overlay network ${JSON.stringify(n.name)}`;
    if (!n.name || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(n.name))
      throw invalid(`${where}: a name of letters, digits, "_", "." and "-" is required`);
    if (seen.has(n.name)) throw invalid(`${where} is defined twice`);
    seen.add(n.name);
    let c;
    try {
      c = parseCidr(n.subnet);
    } catch (e) {
      throw invalid(`${where}: ${(e as Error).message}`);
    }
    const max = c.family === 4 ? 30 : 126;
    if (!Number.isInteger(n.prefix) || n.prefix < c.prefix || n.prefix > max) {
      throw invalid(`${where}: prefix ${n.prefix} must be between the subnet's /${c.prefix} and /${max}`);
    }
    if (formatCidr(c) !== n.subnet && formatCidr(c) !== formatCidr(parseCidr(n.subnet))) throw invalid(`${where}: bad subnet`);
  }
}

function invalid(msg: string): PorticoError {
  return new PorticoError(ErrorCodes.OVERLAY_CONFIG_INVALID, msg, 400);
}

/**
 * Record the network definitions. A network already in the store with another subnet or prefix is refused
 * while any agent holds a subnet of it (its leases would fall outside the new range); unused, it is replaced.
 */
export async function ensureNetworks(store: Store, networks: OverlayNetworkConfig[]): Promise<void> {
  for (const n of networks) {
    const want = { name: n.name, subnet: formatCidr(parseCidr(n.subnet)), prefix: n.prefix, mtu: n.mtu ?? 1420 };
    for (;;) {
      const cur = await store.get(KEY.network(n.name));
      if (cur) {
        const have = parseJson<OverlayNetworkConfig>(cur.value);
        if (have && have.subnet === want.subnet && have.prefix === want.prefix) {
          if ((have.mtu ?? 1420) === want.mtu) break;
        } else if (have) {
          const claims = await store.list(KEY.subnets(n.name));
          if (claims.length > 0) {
            throw new PorticoError(
              ErrorCodes.OVERLAY_NETWORK_CHANGED,
              `overlay network ${n.name} is ${have.subnet} with a /${have.prefix} per agent and ${claims.length} agent subnet(s) are in use: ` +
                `it cannot become ${want.subnet} /${want.prefix}; remove the agents (DELETE /v1/overlay/agents/:id) or use a new network name`,
              409,
            );
          }
        }
      }
      if (await store.cas(KEY.network(n.name), cur?.revision ?? 0, JSON.stringify(want))) break;
    }
  }
}

/** Claim (or take back) this agent's subnet of `net`. Throws OVERLAY_SUBNETS_EXHAUSTED when none is free. */
export async function claimSubnet(store: Store, net: OverlayNetworkConfig, agentId: string): Promise<string> {
  const whole = parseCidr(net.subnet);
  const count = subnetCount(whole, net.prefix);
  for (let attempt = 0; attempt < 1000; attempt++) {
    const claims = await store.list(KEY.subnets(net.name));
    const used = new Set<string>();
    for (const e of claims) {
      const c = parseJson<SubnetClaim>(e.value);
      const idx = e.key.slice(KEY.subnets(net.name).length);
      if (c?.agentId === agentId) return c.subnet;
      used.add(idx);
    }
    let pick: bigint | undefined;
    for (let i = 0n; i < count; i++) {
      if (!used.has(String(i))) {
        pick = i;
        break;
      }
      if (i > BigInt(claims.length) + 1n) break;
    }
    if (pick === undefined) {
      throw new PorticoError(
        ErrorCodes.OVERLAY_SUBNETS_EXHAUSTED,
        `overlay network ${net.name} (${net.subnet}) has no free /${net.prefix} left for agent ${agentId}: all ${count} are held by other agents`,
        507,
      );
    }
    const subnet = formatCidr(nthSubnet(whole, net.prefix, pick));
    const claim: SubnetClaim = { agentId, subnet, at: new Date().toISOString() };
    if (await store.cas(KEY.subnet(net.name, pick), 0, JSON.stringify(claim))) return subnet;
    // Another agent won this index between our list and our CAS: list again.
  }
  throw new PorticoError(ErrorCodes.STORE_CONFLICT, `could not claim a subnet of ${net.name}: too much contention`, 503);
}

export interface VtepClaim {
  index: number;
  ip: string;
  ip6: string;
  mac: string;
}

export async function claimVtep(store: Store, vtep: VtepConfig, agentId: string): Promise<VtepClaim> {
  const v4 = parseCidr(vtep.subnet);
  const v6 = parseCidr(vtep.subnet6);
  const max = Math.min(Number(subnetCount(v4, 32)) - 2, 0xffffff);
  const make = (i: number): VtepClaim => ({
    index: i,
    ip: formatAddr(4, v4.base + BigInt(i)),
    ip6: formatAddr(6, v6.base + BigInt(i)),
    mac: `${vtep.macOui}:${[16, 8, 0].map((s) => ((i >> s) & 0xff).toString(16).padStart(2, '0')).join(':')}`.toLowerCase(),
  });
  for (let attempt = 0; attempt < 1000; attempt++) {
    const claims = await store.list(KEY.vteps);
    const used = new Set<number>();
    for (const e of claims) {
      const i = Number(e.key.slice(KEY.vteps.length));
      if (parseJson<{ agentId: string }>(e.value)?.agentId === agentId) return make(i);
      used.add(i);
    }
    let pick = 0;
    for (let i = 1; i <= max; i++) {
      if (!used.has(i)) {
        pick = i;
        break;
      }
    }
    if (pick === 0) throw new PorticoError(ErrorCodes.OVERLAY_SUBNETS_EXHAUSTED, `no free VTEP address left in ${vtep.subnet}`, 507);
    if (await store.cas(KEY.vtep(pick), 0, JSON.stringify({ agentId, at: new Date().toISOString() }))) return make(pick);
  }
  throw new PorticoError(ErrorCodes.STORE_CONFLICT, 'could not claim a VTEP address: too much contention', 503);
}

/** Claim everything an agent needs and publish its record. Exhaustion of a network is recorded, not thrown. */
export async function registerAgent(
  store: Store,
  agentId: string,
  agentIp: string,
  networks: OverlayNetworkConfig[],
  vtep: VtepConfig,
): Promise<AgentRecord> {
  const v = await claimVtep(store, vtep, agentId);
  const subnets: Record<string, string> = {};
  const errors: Record<string, string> = {};
  for (const n of networks) {
    try {
      subnets[n.name] = await claimSubnet(store, n, agentId);
    } catch (e) {
      if (e instanceof PorticoError && e.code === ErrorCodes.OVERLAY_SUBNETS_EXHAUSTED) errors[n.name] = e.message;
      else throw e;
    }
  }
  const rec: AgentRecord = {
    agentId,
    agentIp,
    vtepIp: v.ip,
    vtepIp6: v.ip6,
    vtepMac: v.mac,
    subnets,
    updatedAt: new Date().toISOString(),
    ...(Object.keys(errors).length > 0 ? { errors } : {}),
  };
  await store.put(KEY.agent(agentId), JSON.stringify(rec));
  return rec;
}

/** Forget an agent: its record, its subnet and VTEP claims. Its peers remove their routes to it. */
export async function removeAgent(store: Store, agentId: string): Promise<boolean> {
  const existed = await store.delete(KEY.agent(agentId));
  for (const e of await store.list('overlay/subnets/')) {
    if (parseJson<SubnetClaim>(e.value)?.agentId === agentId) await store.delete(e.key, e.revision);
  }
  for (const e of await store.list(KEY.vteps)) {
    if (parseJson<{ agentId: string }>(e.value)?.agentId === agentId) await store.delete(e.key, e.revision);
  }
  return existed;
}
