/**
 * End to end: the real `portico-cni` plugin process → the IPAM daemon's socket → the embedded store →
 * the overlay provider → the real Aggregator → the real DNS plane on 127.0.0.1, answering
 * `<task>.<framework>.containerip.dcos.thisdcos.directory` with the address the plugin printed — for
 * CNI_ARGS metadata and for the config `args` Mesos' CNI isolator passes — and NXDOMAIN after DEL.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { RoutingTable } from '../../../src/model/types.js';
import { OverlayProvider } from '../../../src/providers/overlay/index.js';
import { withTimeout } from '../../helpers/wait.js';
import { answersOf, decode, header, query, startPlane, T, udp } from '../../dns/helpers.js';
import { cni, startDaemon, tmpdir } from '../../overlay/helpers.js';

const dir = tmpdir('ov-e2e');
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

async function ask(port: number, name: string, type: number) {
  const raw = await udp(port, query({ name, type }));
  const p = decode(raw);
  return { rcode: header(raw).rcode, answers: answersOf(p, type) };
}

t.test('plugin ADD with owner metadata → endpoint → containerip name; DEL → gone', async (t) => {
  const d = await startDaemon(path.join(dir, 'd1'));
  t.teardown(() => d.close());
  const plane = await startPlane(t, []);
  const provider = new OverlayProvider({ store: d.store, debounceMs: 5 });
  t.teardown(() => provider.stop());
  const tableWhere = (pred: (tb: RoutingTable) => boolean, what: string) => {
    if (pred(plane.agg.current())) return Promise.resolve(plane.agg.current());
    return withTimeout(
      new Promise<RoutingTable>((resolve) => {
        const off = plane.agg.subscribe((tb) => {
          if (!pred(tb)) return;
          off();
          resolve(tb);
        });
      }),
      5000,
      what,
    );
  };
  await provider.start((snap) => plane.agg.update(provider.name, provider.priority, snap));

  const conf = {
    cniVersion: '1.1.0',
    name: 'dcos',
    type: 'bridge',
    ipam: { type: 'portico-cni', socket: d.socket, network: ['dcos', 'dcos6'] },
  };
  const add = await cni({
    command: 'ADD',
    config: conf,
    containerId: 'ctr-web-1',
    ifName: 'eth0',
    netns: '/var/run/netns/x',
    args: 'IgnoreUnknown=1;PORTICO_SERVICE=web;PORTICO_TASK=web-1;PORTICO_FRAMEWORK=marathon;PORTICO_PORTS=http:8080/tcp',
  });
  t.equal(add.code, 0, add.stdout + add.stderr);
  const [v4, v6] = (add.out.ips as Array<{ address: string }>).map((i) => i.address.split('/')[0]!);
  t.match(v4, /^9\.0\.\d+\.\d+$/);
  t.match(v6, /^fd01:b:/);

  const table = await tableWhere((tb) => (tb.services.get('web-0@overlay')?.endpoints.length ?? 0) === 2, 'the lease in the table');
  t.same(
    table.services
      .get('web-0@overlay')!
      .endpoints.map((e) => `${e.address} ${e.port} ${e.network}`)
      .sort(),
    [`${v4} 8080 dcos`, `${v6} 8080 dcos6`].sort(),
  );

  const { port } = plane;
  t.same(
    (await ask(port, 'web-1.marathon.containerip.dcos.thisdcos.directory', T.A)).answers.map((r) => r.address),
    [v4],
    'containerip A: the lease',
  );
  t.same(
    (await ask(port, 'web-1.marathon.containerip.dcos.thisdcos.directory', T.AAAA)).answers.map((r) => r.address),
    [v6],
    'containerip AAAA: the v6 lease',
  );
  t.same(
    (await ask(port, 'web-1.marathon.agentip.dcos.thisdcos.directory', T.A)).answers.map((r) => r.address),
    ['192.0.2.1'],
    'agentip: the agent the lease is on',
  );
  t.same(
    (await ask(port, 'web-1.marathon.mesos', T.A)).answers.map((r) => r.address),
    [v4],
    'Mesos-DNS task name',
  );
  t.same([...new Set((await ask(port, '_web-1._tcp.marathon.mesos', T.SRV)).answers.map((r) => r.port))], [8080], 'SRV: the declared port');

  // What Mesos' CNI isolator passes (DC/OS): NetworkInfo labels and port mappings in the config's args.
  const mesos = await cni({
    command: 'ADD',
    containerId: 'ctr-nginx',
    ifName: 'eth0',
    netns: '/var/run/netns/y',
    config: {
      ...conf,
      args: {
        'org.apache.mesos': {
          network_info: {
            name: 'dcos',
            labels: {
              labels: [
                { key: 'PORTICO_SERVICE', value: 'nginx' },
                { key: 'PORTICO_FRAMEWORK', value: 'marathon' },
              ],
            },
            port_mappings: [{ host_port: 31080, container_port: 80, protocol: 'tcp' }],
          },
        },
      },
    },
  });
  t.equal(mesos.code, 0, mesos.stdout + mesos.stderr);
  const nginx4 = (mesos.out.ips as Array<{ address: string }>)[0]!.address.split('/')[0]!;
  await tableWhere((tb) => (tb.services.get('nginx-0@overlay')?.endpoints.length ?? 0) === 2, 'the Mesos-style lease in the table');
  t.same(
    (await ask(port, 'nginx.marathon.containerip.dcos.thisdcos.directory', T.A)).answers.map((r) => r.address),
    [nginx4],
    'Mesos labels: nginx.marathon.containerip',
  );

  const del = await cni({ command: 'DEL', config: conf, containerId: 'ctr-web-1', ifName: 'eth0' });
  t.equal(del.code, 0, del.stdout);
  await tableWhere((tb) => tb.services.get('web-0@overlay') === undefined, 'the lease out of the table');
  t.equal((await ask(port, 'web-1.marathon.containerip.dcos.thisdcos.directory', T.A)).rcode, 3, 'after DEL: NXDOMAIN');
  t.equal(
    (await ask(port, 'nginx.marathon.containerip.dcos.thisdcos.directory', T.A)).answers.length,
    1,
    'the other container still answers',
  );
});

t.test('malformed owner metadata: the ADD is refused with a clear error, no lease is left', async (t) => {
  const d = await startDaemon(path.join(dir, 'd2'));
  t.teardown(() => d.close());
  const conf = { cniVersion: '1.1.0', name: 'dcos', type: 'bridge', ipam: { type: 'portico-cni', socket: d.socket, network: 'dcos' } };
  const r = await cni({
    command: 'ADD',
    config: conf,
    containerId: 'bad',
    ifName: 'eth0',
    netns: '/x',
    args: 'PORTICO_SERVICE=web;PORTICO_PORTS=http:99999',
  });
  t.equal(r.code, 1);
  t.match(r.out, { cniVersion: '1.1.0', code: 4, msg: /PORTICO_PORTS.*1\.\.65535/ });
  t.same(d.overlay.leases(), [], 'nothing leased');
  t.same(await d.store.list('overlay/ip/'), [], 'no address claimed');
});
