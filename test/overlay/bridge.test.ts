/**
 * portico-cni under Debian's real `bridge` plugin, as a runtime would run it: `ipam.type: portico-cni`
 * found in CNI_PATH. The bridge plugin runs inside an "agent" namespace (so its bridge and gateway
 * address live there, not on this host); containers are namespaces of their own.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { CniCode } from '../../src/overlay/cni/protocol.js';
import { KEY } from '../../src/overlay/types.js';
import { addNetns, canUseNetns, cni, cniBinDir, delNetns, netnsPath, reach, startDaemon, tmpdir } from './helpers.js';

const skip = canUseNetns();
if (skip) {
  t.plan(0, skip);
} else {
  const dir = tmpdir('bridge');
  const namespaces: string[] = [];
  t.teardown(() => {
    for (const ns of namespaces) delNetns(ns);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const ns = (tag: string) => {
    const n = addNetns(tag);
    namespaces.push(n);
    return n;
  };
  const bin = cniBinDir(dir);
  const bridge = path.join(bin, 'bridge');

  t.test('bridge + portico-cni', async (t) => {
    const d = await startDaemon(path.join(dir, 'd'));
    t.teardown(() => d.close());
    const agent = ns('ag');
    const conf = (name: string, br: string, ipam: Record<string, unknown>) => ({
      cniVersion: '1.0.0',
      name,
      type: 'bridge',
      bridge: br,
      isGateway: true,
      ipMasq: false,
      mtu: 1420,
      ipam: { type: 'portico-cni', socket: d.socket, ...ipam },
    });
    const run = (command: string, config: unknown, container: string, extra: Record<string, unknown> = {}) =>
      cni({
        command,
        config,
        containerId: `cid-${container}`,
        ifName: 'eth0',
        netns: netnsPath(container),
        cniPath: bin,
        plugin: bridge,
        inNetns: agent,
        ...extra,
      });

    await t.test('two containers on the dcos overlay: ADD, ping, CHECK, DEL twice', async (t) => {
      const net = conf('dcos-br', 'ptdcos0', { network: 'dcos' });
      const c1 = ns('c');
      const c2 = ns('c');
      const [a1, a2] = await Promise.all([run('ADD', net, c1), run('ADD', net, c2)]);
      t.equal(a1.code, 0, a1.stdout + a1.stderr);
      t.equal(a2.code, 0, a2.stdout + a2.stderr);
      const ip1 = String(a1.out.ips[0].address).split('/')[0]!;
      const ip2 = String(a2.out.ips[0].address).split('/')[0]!;
      t.match(ip1, /^9\.0\.0\.\d+$/);
      t.not(ip1, ip2);
      t.ok(
        a1.out.interfaces.some((i: { name: string }) => i.name === 'eth0'),
        'the bridge plugin filled in the interfaces',
      );
      t.ok(await reach(c1, c2, ip2), `${c1} reaches ${ip2}`);
      t.ok(await reach(c2, c1, ip1), `${c2} reaches ${ip1}`);
      t.ok(await reach(c1, agent, '9.0.0.1'), "the gateway on the agent's bridge answers");
      t.equal(d.overlay.leases().filter((l) => l.network === 'dcos-br').length, 2);
      for (const [c, a] of [
        [c1, a1],
        [c2, a2],
      ] as const) {
        const chk = await run('CHECK', { ...net, prevResult: a.out }, c);
        t.equal(chk.code, 0, `CHECK ${c}: ${chk.stdout}${chk.stderr}`);
      }
      for (const c of [c1, c2]) {
        t.equal((await run('DEL', net, c)).code, 0, `DEL ${c}`);
        const again = await run('DEL', net, c);
        t.equal(again.code, 0, `DEL ${c} again: ${again.stdout}`);
      }
      t.same(await d.store.list(KEY.attsOf('dcos-br')), [], 'leases released');
      t.same(
        d.overlay.leases().filter((l) => l.network === 'dcos-br'),
        [],
      );
      const gone = await run('CHECK', { ...net, prevResult: a1.out }, c1);
      t.not(gone.code, 0, 'CHECK after DEL fails');
    });

    await t.test('dual stack: one v4 and one v6 address', async (t) => {
      const net = conf('dual-br', 'ptdual0', { network: ['dcos', 'dcos6'] });
      const c = ns('d');
      const c2 = ns('d');
      const a = await run('ADD', net, c);
      const b = await run('ADD', net, c2);
      t.equal(a.code, 0, a.stdout + a.stderr);
      const fams = a.out.ips.map((i: { address: string }) => (i.address.includes(':') ? 6 : 4));
      t.same(fams, [4, 6]);
      t.match(a.out.ips[1].address, /^fd01:b::[0-9a-f:]+\/80$/);
      t.ok(await reach(c, c2, String(b.out.ips[0].address).split('/')[0]!), 'v4 reachable');
      t.ok(await reach(c, c2, String(b.out.ips[1].address).split('/')[0]!), 'v6 reachable');
      await run('DEL', net, c);
      await run('DEL', net, c2);
    });

    await t.test('20 ADDs in parallel through the bridge plugin: 20 distinct addresses', async (t) => {
      const net = conf('par-br', 'ptpar0', { network: 'dcos' });
      const cs = Array.from({ length: 20 }, () => ns('p'));
      const rs = await Promise.all(cs.map((c) => run('ADD', net, c)));
      t.same(
        rs.map((r) => r.code),
        Array(20).fill(0),
        rs
          .filter((r) => r.code !== 0)
          .map((r) => r.stdout)
          .join('\n'),
      );
      const addrs = rs.map((r) => r.out?.ips?.[0]?.address);
      t.equal(new Set(addrs).size, 20, '20 distinct');
      t.ok(await reach(cs[0]!, cs[19]!, String(addrs[19]).split('/')[0]!), 'first reaches last');
      const dels = await Promise.all(cs.map((c) => run('DEL', net, c)));
      t.same(
        dels.map((r) => r.code),
        Array(20).fill(0),
      );
      t.same(await d.store.list(KEY.attsOf('par-br')), []);
    });

    await t.test("exhaustion: the spec's error, relayed by the bridge plugin", async (t) => {
      const net = conf('tiny-br', 'pttiny0', { ranges: [[{ subnet: '10.77.0.0/30' }]] });
      const c1 = ns('x');
      const c2 = ns('x');
      t.equal((await run('ADD', net, c1)).code, 0);
      const r = await run('ADD', net, c2);
      t.not(r.code, 0);
      t.match(r.out, { code: CniCode.EXHAUSTED, msg: /no free address left in tiny-br/ });
      await run('DEL', net, c1);
      await run('DEL', net, c2);
    });
  });
}
