/**
 * The overlay provider over a real embedded store, with leases written by the real IPAM code of two
 * agents sharing that store: owners become per-port services and endpoints (IPv4 and IPv6, agent
 * address, overlay network), DEL and GC remove them, bursts are debounced, records it cannot read are
 * skipped, and a restart of the provider sees what is already there.
 */
import t from 'tap';
import type { Endpoint } from '../../../src/model/types.js';
import { KEY } from '../../../src/overlay/types.js';
import { OverlayProvider } from '../../../src/providers/overlay/index.js';
import { waitFor } from '../../helpers/wait.js';
import { SnapshotLog, bare, conf, endpointsOf, setup } from './helpers.js';

t.test('leases with an owner become per-port services; DEL removes them', async (t) => {
  const { store, a, b } = await setup(t);
  const log = new SnapshotLog();
  const p = new OverlayProvider({ store, debounceMs: 5 });
  t.teardown(() => p.stop());
  await p.start(log.sink);
  t.equal(log.all.length, 1, 'start() resolves after the first snapshot');
  t.same(log.last!.services, {}, 'no lease, no service');
  t.equal(p.status().state, 'ok');

  const r1 = await a.ipam.add(
    conf(),
    'c1',
    'eth0',
    'IgnoreUnknown=1;PORTICO_SERVICE=web;PORTICO_TASK=web-1;PORTICO_FRAMEWORK=marathon;PORTICO_PORTS=http:8080,metrics:9090/tcp',
  );
  const [v4, v6] = r1.ips.map((i) => bare(i.address)) as [string, string];
  const s1 = await log.until((s) => endpointsOf(s).length === 4, 'c1 endpoints');
  t.same(Object.keys(s1.services).sort(), ['web-0', 'web-1'], 'one service per declared port');
  const web0 = s1.services['web-0']!;
  t.equal(web0.framework, 'marathon');
  t.same(web0.labels, { portName: 'http', protocol: 'tcp' });
  t.same(web0.endpoints.map((e) => `${e.address}:${e.port}`).sort(), [`${v4}:8080`, `${v6}:8080`].sort(), 'IPv4 and IPv6 lease × port');
  const e4 = web0.endpoints.find((e) => e.address === v4)!;
  t.same(
    e4,
    {
      address: v4,
      port: 8080,
      weight: 1,
      health: 'unknown',
      task: 'web-1',
      taskId: 'c1',
      agentAddress: '192.0.2.1',
      network: 'dcos',
      labels: { cniNetwork: 'dcos', containerId: 'c1', ifName: 'eth0', portName: 'http', protocol: 'tcp' },
    } satisfies Endpoint,
    'the whole endpoint',
  );
  t.equal(web0.endpoints.find((e) => e.address === v6)!.network, 'dcos6', 'the v6 address is on dcos6');
  t.same(
    Object.keys(e4),
    ['address', 'port', 'weight', 'health', 'task', 'taskId', 'agentAddress', 'network', 'labels'],
    "the model's key order",
  );

  // Another agent's container of the same service: every agent's leases are in the feed.
  const r2 = await b.ipam.add(
    conf(),
    'c2',
    'eth0',
    'PORTICO_SERVICE=web;PORTICO_TASK=web-2;PORTICO_FRAMEWORK=marathon;PORTICO_PORTS=http:8080,metrics:9090',
  );
  const s2 = await log.until((s) => (s.services['web-0']?.endpoints.length ?? 0) === 4, 'c2 endpoints');
  const c2v4 = bare(r2.ips[0]!.address);
  t.equal(
    s2.services['web-0']!.endpoints.find((e) => e.address === c2v4)?.agentAddress,
    '192.0.2.2',
    "agent-b's lease carries agent-b's address",
  );
  t.not(bare(r1.ips[0]!.address).split('.').slice(0, 3).join('.'), c2v4.split('.').slice(0, 3).join('.'), 'from another agent subnet');

  // No owner, an owner without ports: no endpoint, counted.
  await a.ipam.add(conf(), 'anon', 'eth0', undefined);
  await a.ipam.add(conf(), 'portless', 'eth0', 'PORTICO_TASK=batch');
  // Neither changes the snapshot (none is sent): wait on the provider's counters.
  await waitFor(() => p.status().details?.withoutPorts === 1 && p.status().details?.withoutOwner === 1, {
    timeoutMs: 5000,
    what: 'the two leases counted',
  });
  t.match(p.status().details, { attachments: 4, withoutOwner: 1, withoutPorts: 1, services: 2, endpoints: 8, agents: 2 });

  // DEL: gone from the feed; the last one takes the services with it.
  await a.ipam.del(conf(), 'c1', 'eth0');
  const s3 = await log.until((s) => endpointsOf(s).length === 4, 'c1 removed');
  t.notOk(
    endpointsOf(s3).some((x) => x.includes(` ${v4} `)),
    'c1 addresses left',
  );
  await b.ipam.del(conf(), 'c2', 'eth0');
  const s4 = await log.until((s) => Object.keys(s.services).length === 0, 'all removed');
  t.same(s4.routes, [], 'no routes');
  t.same(s4.entrypoints, {});
});

t.test('owners from args.portico, runtimeConfig.portMappings and Mesos network_info; framework default and clashes', async (t) => {
  const { store, a } = await setup(t);
  const log = new SnapshotLog();
  const p = new OverlayProvider({ store, debounceMs: 5, framework: 'containers' });
  t.teardown(() => p.stop());
  await p.start(log.sink);
  await a.ipam.add(conf({ args: { portico: { service: 'api', ports: [{ name: 'grpc', port: 9000 }] } } }), 'p1', 'eth0', undefined);
  await a.ipam.add(
    conf({
      args: { portico: { service: 'api', framework: 'marathon' } },
      runtimeConfig: { portMappings: [{ hostPort: 31000, containerPort: 80, protocol: 'tcp' }] },
    }),
    'p2',
    'eth0',
    undefined,
  );
  await a.ipam.add(
    conf({
      args: {
        'org.apache.mesos': {
          network_info: {
            name: 'dcos',
            labels: {
              labels: [
                { key: 'PORTICO_SERVICE', value: 'nginx' },
                { key: 'PORTICO_TASK_ID', value: 'nginx.3f2a' },
              ],
            },
            port_mappings: [{ host_port: 8080, container_port: 80 }],
          },
        },
      },
    }),
    'p3',
    'eth0',
    undefined,
  );
  const s = await log.until((x) => Object.keys(x.services).length === 3, 'three services');
  t.same(
    Object.keys(s.services).sort(),
    ['containers.api-0', 'marathon.api-0', 'nginx-0'],
    'two frameworks with one service name: framework-qualified',
  );
  t.equal(s.services['containers.api-0']!.framework, 'containers', 'no framework said: the provider default');
  t.equal(s.services['containers.api-0']!.endpoints[0]!.port, 9000);
  t.equal(s.services['marathon.api-0']!.endpoints[0]!.port, 80, 'portMap capability: the container port');
  const n = s.services['nginx-0']!.endpoints.find((e) => !e.address.includes(':'))!;
  t.match(n, { port: 80, task: 'nginx', taskId: 'nginx.3f2a' }, 'Mesos labels and port mappings; task defaults to the service');
});

t.test('a burst of 20 parallel ADDs gives one or a few snapshots, the last with all 20', async (t) => {
  const { store, a } = await setup(t);
  const log = new SnapshotLog();
  const p = new OverlayProvider({ store, debounceMs: 100, maxDelayMs: 10_000 });
  t.teardown(() => p.stop());
  await p.start(log.sink);
  const before = log.all.length;
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      a.ipam.add(
        conf({ ipam: { type: 'portico-cni', network: 'dcos' } }),
        `b${i}`,
        'eth0',
        `PORTICO_SERVICE=burst;PORTICO_TASK=burst-${i};PORTICO_PORTS=80`,
      ),
    ),
  );
  const s = await log.until((x) => (x.services['burst-0']?.endpoints.length ?? 0) === 20, '20 endpoints');
  const sent = log.all.length - before;
  t.ok(sent >= 1 && sent <= 3, `${sent} snapshot(s) for 20 ADDs`);
  t.equal(new Set(s.services['burst-0']!.endpoints.map((e) => e.task)).size, 20, '20 tasks');
  t.ok(
    log.all.every((x) => x.provider === 'overlay'),
    'complete snapshots, named by the provider',
  );
});

t.test('undecodable records are skipped; a provider started later sees the leases already there; stop is final', async (t) => {
  const { store, a } = await setup(t);
  await a.ipam.add(conf(), 'old', 'eth0', 'PORTICO_SERVICE=db;PORTICO_PORTS=5432');
  await store.put(`${KEY.atts}dcos/garbage/eth0`, '{not json');
  const log = new SnapshotLog();
  const p = new OverlayProvider({ store, debounceMs: 5 });
  await p.start(log.sink);
  t.same(
    endpointsOf(log.last!).map((x) => x.split(' ')[0]),
    ['db-0', 'db-0'],
    'the lease made before start, v4 and v6',
  );
  t.match(p.status().details, { undecodable: 1, attachments: 1 });
  await p.stop();
  t.equal(p.status().state, 'stopped');
  const n = log.all.length;
  await a.ipam.add(conf(), 'after', 'eth0', 'PORTICO_SERVICE=db;PORTICO_PORTS=5432');
  // A provider started now sees `after`: once it has, the stopped one has had every chance to send too.
  const again = new SnapshotLog();
  const p2 = new OverlayProvider({ store });
  t.teardown(() => p2.stop());
  await p2.start(again.sink);
  t.equal(again.last!.services['db-0']!.endpoints.length, 4);
  t.equal(log.all.length, n, 'nothing sent after stop()');
});
