/**
 * Two "agents" as two namespaces joined by an underlay veth pair, one store between them (as Redis would
 * be across machines), each overlay programming VXLAN inside its namespace (`ip -n`). A container on
 * agent A reaches one on agent B over vtep1024; removing agent B removes A's routes to it.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { openOverlay, type Overlay } from '../../src/overlay/index.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { waitFor } from '../helpers/wait.js';
import { addNetns, canUseNetns, cni, cniBinDir, delNetns, netnsPath, reach, sh, tmpdir } from './helpers.js';

const skip = canUseNetns();
if (skip) {
  t.plan(0, skip);
} else {
  const dir = tmpdir('vxlan');
  const namespaces: string[] = [];
  const ns = (tag: string) => {
    const n = addNetns(tag);
    namespaces.push(n);
    return n;
  };
  const overlays: Overlay[] = [];
  let store: EmbeddedStore | undefined;
  t.teardown(async () => {
    for (const o of overlays) await o.close({ teardownLinux: true }).catch(() => {});
    await store?.close();
    for (const n of namespaces) delNetns(n);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  t.test('two agents over VXLAN', async (t) => {
    const nsA = ns('A');
    const nsB = ns('B');
    const ua = `u${nsA.slice(-6)}`;
    sh('ip', ['link', 'add', ua, 'netns', nsA, 'type', 'veth', 'peer', 'name', 'u0', 'netns', nsB]);
    sh('ip', ['-n', nsA, 'link', 'set', ua, 'name', 'u0']);
    for (const [n, ip] of [
      [nsA, '192.168.250.1/24'],
      [nsB, '192.168.250.2/24'],
    ] as const) {
      sh('ip', ['-n', n, 'addr', 'add', ip, 'dev', 'u0']);
      sh('ip', ['-n', n, 'link', 'set', 'u0', 'up']);
    }
    store = await EmbeddedStore.open(path.join(dir, 'store'));
    const a = await openOverlay({
      store,
      agentId: 'agent-a',
      agentIp: '192.168.250.1',
      socketPath: path.join(dir, 'a.sock'),
      programLinux: true,
      netns: nsA,
    });
    overlays.push(a);
    const b = await openOverlay({
      store,
      agentId: 'agent-b',
      agentIp: '192.168.250.2',
      socketPath: path.join(dir, 'b.sock'),
      programLinux: true,
      netns: nsB,
    });
    overlays.push(b);
    t.not(a.agent().subnets.dcos, b.agent().subnets.dcos, 'different /24s');
    const subnetB = b.agent().subnets.dcos!;
    const subnetB6 = b.agent().subnets.dcos6!;

    const routesA = () =>
      sh('ip', ['-n', nsA, 'route', 'show', 'dev', 'vtep1024']) + sh('ip', ['-n', nsA, '-6', 'route', 'show', 'dev', 'vtep1024']);
    await waitFor(() => routesA().includes(subnetB), { timeoutMs: 5000, what: `A routes ${subnetB} via vtep1024` });
    t.match(routesA(), new RegExp(`${subnetB.replace(/\./g, '\\.')} via ${b.agent().vtepIp.replace(/\./g, '\\.')} onlink`));
    t.match(routesA(), new RegExp(`${subnetB6.split('/')[0]}/80 via ${b.agent().vtepIp6}`));
    t.match(sh('bridge', ['-n', nsA, 'fdb', 'show', 'dev', 'vtep1024']), new RegExp(`${b.agent().vtepMac} dst 192\\.168\\.250\\.2`));
    t.match(
      sh('ip', ['-n', nsA, 'neigh', 'show', 'dev', 'vtep1024']),
      new RegExp(`${b.agent().vtepIp.replace(/\./g, '\\.')} lladdr ${b.agent().vtepMac} PERMANENT`),
    );
    t.match(sh('ip', ['-n', nsA, '-d', 'link', 'show', 'vtep1024']), /vxlan id 1024 local 192\.168\.250\.1 .*dstport 4789/s);
    const before = routesA();
    await a.reconcile();
    await a.reconcile();
    t.equal(routesA(), before, 'reconciling again changes nothing (idempotent)');

    // One container on each agent, through the real bridge plugin running in the agent's namespace.
    const bin = cniBinDir(dir);
    const conf = (sock: string) => ({
      cniVersion: '1.0.0',
      name: 'dcos',
      type: 'bridge',
      bridge: 'd-dcos',
      isGateway: true,
      ipMasq: false,
      mtu: 1420,
      ipam: { type: 'portico-cni', network: ['dcos', 'dcos6'], socket: sock },
    });
    const cA = ns('ca');
    const cB = ns('cb');
    const add = (agentNs: string, c: string, sock: string) =>
      cni({
        command: 'ADD',
        config: conf(sock),
        containerId: c,
        ifName: 'eth0',
        netns: netnsPath(c),
        cniPath: bin,
        plugin: path.join(bin, 'bridge'),
        inNetns: agentNs,
      });
    const [ra, rb] = await Promise.all([add(nsA, cA, path.join(dir, 'a.sock')), add(nsB, cB, path.join(dir, 'b.sock'))]);
    t.equal(ra.code, 0, ra.stdout + ra.stderr);
    t.equal(rb.code, 0, rb.stdout + rb.stderr);
    const ipB = String(rb.out.ips[0].address).split('/')[0]!;
    const ipB6 = String(rb.out.ips[1].address).split('/')[0]!;
    const ipA = String(ra.out.ips[0].address).split('/')[0]!;
    t.ok(ipB.startsWith(subnetB.split('.').slice(0, 3).join('.')), `B's container ${ipB} is in B's subnet`);
    t.ok(await reach(cA, cB, ipB), `container on A reaches ${ipB} on B over VXLAN`);
    t.ok(await reach(cB, cA, ipA), `and back: ${ipA}`);
    t.ok(await reach(cA, cB, ipB6), `IPv6 too: ${ipB6}`);
    t.equal(a.leases().length, 2, 'A sees both leases (all agents share the store)');

    // B goes away: A removes its routes, neighbours and FDB entries.
    t.equal(await a.removeAgent('agent-b'), true);
    await waitFor(() => !routesA().includes(subnetB.split('/')[0]!), { timeoutMs: 5000, what: `A drops the route to ${subnetB}` });
    await a.reconcile(); // the reconcile that removed the route has finished its FDB step too
    t.notMatch(routesA(), /via/, 'no route via any VTEP left on A');
    t.notMatch(sh('bridge', ['-n', nsA, 'fdb', 'show', 'dev', 'vtep1024']), new RegExp(b.agent().vtepMac));
    t.notMatch(sh('ip', ['-n', nsA, 'neigh', 'show', 'dev', 'vtep1024']), /PERMANENT/);
    t.notOk(await reach(cA, cB, ipB, 7778), 'B is unreachable from A');
    const st = await a.status();
    t.same(
      st.agents.map((x) => x.agentId),
      ['agent-a'],
    );
    t.notOk(st.dataPath.error, 'no programming error');
  });
}
