/**
 * For the overlay provider's tests: a real embedded store with two agents whose real IPAM writes leases to
 * it, and a log of the snapshots a provider sends, with bounded waits for one that satisfies a predicate.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Snapshot } from '../../../src/model/types.js';
import { registerAgent } from '../../../src/overlay/agents.js';
import { Ipam, type AgentView } from '../../../src/overlay/ipam.js';
import { DEFAULT_NETWORKS, DEFAULT_VTEP, type AgentRecord } from '../../../src/overlay/types.js';
import { EmbeddedStore } from '../../../src/store/embedded.js';
import { withTimeout } from '../../helpers/wait.js';
import { tmpdir } from '../../overlay/helpers.js';

export class SnapshotLog {
  readonly all: Snapshot[] = [];
  private waiters: Array<{ pred: (s: Snapshot) => boolean; resolve: (s: Snapshot) => void }> = [];

  readonly sink = (s: Snapshot): void => {
    this.all.push(s);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(s)) return true;
      w.resolve(s);
      return false;
    });
  };

  get last(): Snapshot | undefined {
    return this.all[this.all.length - 1];
  }

  /** The latest snapshot if it satisfies `pred`, else the next one that does. */
  until(pred: (s: Snapshot) => boolean, what: string, ms = 5000): Promise<Snapshot> {
    const l = this.last;
    if (l && pred(l)) return Promise.resolve(l);
    return withTimeout(new Promise<Snapshot>((resolve) => this.waiters.push({ pred, resolve })), ms, what);
  }
}

/** Every endpoint of a snapshot, as `service address port`. */
export function endpointsOf(s: Snapshot): string[] {
  const out: string[] = [];
  for (const [name, svc] of Object.entries(s.services)) for (const e of svc.endpoints) out.push(`${name} ${e.address} ${e.port}`);
  return out.sort();
}

export interface Agent {
  rec: AgentRecord;
  ipam: Ipam;
}

export async function setup(t: { teardown(fn: () => unknown): void }): Promise<{ store: EmbeddedStore; a: Agent; b: Agent }> {
  const dir = tmpdir('ovprov');
  const store = await EmbeddedStore.open(path.join(dir, 'store'));
  t.teardown(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const agent = async (id: string, ip: string): Promise<Agent> => {
    const rec = await registerAgent(store, id, ip, DEFAULT_NETWORKS, DEFAULT_VTEP);
    const view: AgentView = {
      agentId: id,
      network: (n) => DEFAULT_NETWORKS.find((x) => x.name === n),
      subnet: (n) => (rec.subnets[n] ? { subnet: rec.subnets[n]! } : { error: 'none' }),
    };
    return { rec, ipam: new Ipam(store, view) };
  };
  return { store, a: await agent('agent-a', '192.0.2.1'), b: await agent('agent-b', '192.0.2.2') };
}

export const conf = (extra: Record<string, unknown> = {}, name = 'dcos'): Record<string, unknown> => ({
  cniVersion: '1.1.0',
  name,
  type: 'bridge',
  ipam: { type: 'portico-cni', network: ['dcos', 'dcos6'] },
  ...extra,
});
export const bare = (cidr: string) => cidr.split('/')[0]!;
