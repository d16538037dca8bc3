/**
 * Linux data path of the overlay, as dcos-overlay programs it, with iproute2:
 *   - one VXLAN device (`vtep1024`, VNI 1024, UDP 4789, no learning) carrying this agent's VTEP addresses
 *     (IPv4 from 44.128.0.0/20, IPv6 from fd01:a::/64) and MAC;
 *   - for every other agent: an FDB entry (its VTEP MAC → its underlay IP), permanent neighbour entries
 *     (its VTEP IPs → its VTEP MAC) and routes to its subnets via its VTEP IPs.
 * Every step is idempotent (`replace`), and `reconcile` also deletes what no agent wants any more, so it
 * can run on start and on every change of the agents in the store.
 */
import { execFile } from 'node:child_process';
import type { Logger } from '../telemetry/log.js';
import { parseCidr } from './addr.js';
import type { AgentRecord, VtepConfig } from './types.js';

export interface VxlanOptions {
  vtep: VtepConfig;
  /** Run every command inside this network namespace (`ip -n NS`), for tests and containerised agents. */
  netns?: string;
  logger: Logger;
}

function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 10_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr: String(stderr).trim() }));
      else resolve(String(stdout));
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

export class VxlanProgrammer {
  private queue: Promise<void> = Promise.resolve();
  private readonly ns: string[];
  lastError: string | undefined;
  lastReconciled: string | undefined;

  constructor(private readonly opts: VxlanOptions) {
    this.ns = opts.netns ? ['-n', opts.netns] : [];
  }

  private ip(args: string[]): Promise<string> {
    return run('ip', [...this.ns, ...args]);
  }

  private bridge(args: string[]): Promise<string> {
    return run('bridge', [...this.ns, ...args]);
  }

  /** Serialised: the latest desired state wins, never two reconciles at once. */
  reconcile(self: AgentRecord, peers: AgentRecord[]): Promise<void> {
    const p = this.queue
      .then(() => this.doReconcile(self, peers))
      .then(
        () => {
          this.lastError = undefined;
          this.lastReconciled = new Date().toISOString();
        },
        (e: Error & { stderr?: string }) => {
          this.lastError = `${e.message}${e.stderr ? `: ${e.stderr}` : ''}`;
          this.opts.logger.error({ err: e, stderr: e.stderr }, 'overlay: programming the VXLAN data path failed');
        },
      );
    this.queue = p;
    return p;
  }

  private async doReconcile(self: AgentRecord, peers: AgentRecord[]): Promise<void> {
    const { device: dev, vni, port } = this.opts.vtep;
    const v4len = parseCidr(this.opts.vtep.subnet).prefix;
    const v6len = parseCidr(this.opts.vtep.subnet6).prefix;
    let link: Array<{ address?: string; linkinfo?: { info_kind?: string; info_data?: { id?: number; port?: number; local?: string } } }> =
      [];
    try {
      link = JSON.parse(await this.ip(['-j', '-d', 'link', 'show', 'dev', dev])) as typeof link;
    } catch {
      link = [];
    }
    const info = link[0]?.linkinfo;
    if (
      link[0] &&
      (info?.info_kind !== 'vxlan' ||
        info.info_data?.id !== vni ||
        info.info_data?.port !== port ||
        (info.info_data?.local !== undefined && canonicalIp(info.info_data.local) !== canonicalIp(self.agentIp)))
    ) {
      // A device of that name with other parameters (an old VNI, port or underlay address): rebuild it.
      await this.ip(['link', 'del', 'dev', dev]);
      link = [];
    }
    if (!link[0]) {
      await this.ip(['link', 'add', dev, 'type', 'vxlan', 'id', String(vni), 'dstport', String(port), 'local', self.agentIp, 'nolearning']);
    }
    // In batch mode the family comes from the addresses (no -4/-6 per line).
    const batch: string[] = [
      `link set dev ${dev} address ${self.vtepMac}`,
      `link set dev ${dev} up`,
      `addr replace ${self.vtepIp}/${v4len} dev ${dev}`,
      `addr replace ${self.vtepIp6}/${v6len} dev ${dev} nodad`,
    ];
    const fdb: string[] = [];
    const wantRoutes = new Set<string>();
    const wantNeigh = new Set<string>();
    const wantMacs = new Set<string>();
    for (const p of peers) {
      if (p.agentId === self.agentId) continue;
      const mac = p.vtepMac.toLowerCase();
      wantMacs.add(mac);
      fdb.push(`fdb replace ${mac} dev ${dev} dst ${p.agentIp} self permanent`);
      batch.push(`neigh replace ${p.vtepIp} lladdr ${mac} dev ${dev} nud permanent`);
      batch.push(`neigh replace ${p.vtepIp6} lladdr ${mac} dev ${dev} nud permanent`);
      wantNeigh.add(p.vtepIp).add(p.vtepIp6);
      for (const subnet of Object.values(p.subnets)) {
        const c = parseCidr(subnet);
        const via = c.family === 4 ? p.vtepIp : p.vtepIp6;
        batch.push(`route replace ${subnet} via ${via} dev ${dev} onlink`);
        wantRoutes.add(subnet);
      }
    }
    await run('ip', [...this.ns, '-batch', '-'], `${batch.join('\n')}\n`);
    if (fdb.length > 0) await run('bridge', [...this.ns, '-batch', '-'], `${fdb.join('\n')}\n`);

    // Remove what no agent wants any more.
    const del: string[] = [];
    for (const fam of ['-4', '-6']) {
      const routes = JSON.parse(await this.ip(['-j', fam, 'route', 'show', 'dev', dev])) as Array<{
        dst: string;
        gateway?: string;
        protocol?: string;
      }>;
      for (const r of routes) {
        if (!r.gateway || r.protocol === 'kernel') continue;
        const dst = r.dst.includes('/') ? r.dst : `${r.dst}/${fam === '-4' ? 32 : 128}`;
        const canon = (() => {
          try {
            const c = parseCidr(dst);
            return Object.values(peers)
              .flatMap((p) => Object.values(p.subnets))
              .find((s) => {
                const d = parseCidr(s);
                return d.base === c.base && d.prefix === c.prefix && d.family === c.family;
              });
          } catch {
            return undefined;
          }
        })();
        if (!canon || !wantRoutes.has(canon)) del.push(`route del ${dst} dev ${dev}`);
      }
    }
    const neighs = JSON.parse(await this.ip(['-j', 'neigh', 'show', 'dev', dev])) as Array<{
      dst: string;
      lladdr?: string;
      state?: string[];
    }>;
    const wantNeighCanon = new Set([...wantNeigh].map((a) => canonicalIp(a)));
    for (const n of neighs) {
      if (!n.state?.includes('PERMANENT')) continue;
      if (!wantNeighCanon.has(canonicalIp(n.dst))) del.push(`neigh del ${n.dst} dev ${dev}`);
    }
    if (del.length > 0)
      await run('ip', [...this.ns, '-force', '-batch', '-'], `${del.join('\n')}\n`).catch((e: Error & { stderr?: string }) => {
        this.opts.logger.warn({ stderr: e.stderr }, 'overlay: some stale entries could not be removed');
      });
    const fdbs = JSON.parse(await this.bridge(['-j', 'fdb', 'show', 'dev', dev])) as Array<{ mac: string; dst?: string }>;
    const fdel: string[] = [];
    for (const f of fdbs) {
      if (!f.dst) continue;
      if (!wantMacs.has(f.mac.toLowerCase())) fdel.push(`fdb del ${f.mac} dev ${dev} dst ${f.dst} self`);
    }
    if (fdel.length > 0) await run('bridge', [...this.ns, '-force', '-batch', '-'], `${fdel.join('\n')}\n`).catch(() => '');
    this.opts.logger.debug({ peers: peers.length - 1, removed: del.length + fdel.length }, 'overlay: VXLAN data path reconciled');
  }

  /** Remove the device (and with it every route, neighbour and FDB entry on it). */
  async teardown(): Promise<void> {
    await this.queue;
    await this.ip(['link', 'del', 'dev', this.opts.vtep.device]).catch(() => '');
  }
}

function canonicalIp(a: string): string {
  try {
    const c = parseCidr(a.includes('/') ? a : `${a}/${a.includes(':') ? 128 : 32}`);
    return `${c.family}:${c.base}`;
  } catch {
    return a;
  }
}
