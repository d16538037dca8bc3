/**
 * A Sentinel failover under two real `portico up` processes: one master, one replica, three sentinels
 * (quorum 2) on loopback ports; the instances use `store: redis-sentinel://s1,s2,s3/portico`.
 * The master is killed under load: no request through either instance fails, the sentinels promote the
 * replica, the instances find it, the config acknowledged before the kill (and replicated) is still
 * there, and a new push through either instance propagates to both.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Redis from 'ioredis';
import t from 'tap';
import { adminApi, loadLoop, servedEverywhere, sharedDoc, startInstances } from '../helpers/instances.js';
import { startRedis, startSentinel } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const NAME = 'portico';

t.test('Sentinel failover: instances carry on', async (t) => {
  const master = await startRedis({ persistent: true });
  t.teardown(() => master.dispose());
  const replica = await startRedis({ persistent: true, args: ['--replicaof', '127.0.0.1', String(master.port)] });
  t.teardown(() => replica.dispose());
  const sentinels = await Promise.all(
    [0, 1, 2].map(() => startSentinel(master.port, NAME, 10_000, { quorum: 2, downAfterMs: 1000, failoverTimeoutMs: 5000 })),
  );
  for (const s of sentinels) t.teardown(() => s.dispose());
  const url = `redis-sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${NAME}`;

  // The replica is in sync before anything else happens.
  const probe = new Redis({ port: replica.port, host: '127.0.0.1', lazyConnect: true });
  await probe.connect();
  t.teardown(() => probe.disconnect());
  await waitFor(async () => /master_link_status:up/.test(await probe.info('replication')), {
    timeoutMs: 10_000,
    what: 'replica linked to master',
  });

  const backend = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => backend.close(() => r())));
  const port = (backend.address() as AddressInfo).port;

  const instances = await startInstances(t, t.testdir(), url, ['a', 'b']);
  const [a, b] = instances as [(typeof instances)[0], (typeof instances)[0]];

  const first = await adminApi(a, 'PUT', '/v1/config/shared', sharedDoc('one.example.test', port));
  t.equal(first.status, 200, JSON.stringify(first.json));
  await servedEverywhere(instances, 'one.example.test', 'the first push');
  // Acknowledged by the master; wait until the replica has it too (what "kept by Redis" means here).
  await waitFor(async () => Number(await probe.get('portico:rev')) >= first.json.revision, {
    timeoutMs: 5000,
    what: 'the push replicated',
  });

  // Kill the master under load.
  const load = loadLoop(instances, 'one.example.test');
  await waitFor(() => load.ok() >= 20, { timeoutMs: 10_000, what: 'load running' });
  await master.kill();
  const sentinel = new Redis({ port: sentinels[0]!.port, host: '127.0.0.1', lazyConnect: true });
  await sentinel.connect();
  t.teardown(() => sentinel.disconnect());
  await waitFor(
    async () => {
      const addr = (await sentinel.call('SENTINEL', 'get-master-addr-by-name', NAME)) as string[];
      return Number(addr[1]) === replica.port;
    },
    { timeoutMs: 30_000, what: 'the sentinels to promote the replica', intervalMs: 100 },
  );
  t.pass('the replica was promoted');

  // The instances find the new master: a push through B is accepted (retry while they reconnect).
  const second = await waitFor(
    async () => {
      const r = await adminApi(b, 'PUT', '/v1/config/shared', sharedDoc('two.example.test', port));
      return r.status === 200 ? r : undefined;
    },
    { timeoutMs: 30_000, what: 'a push accepted after the failover', intervalMs: 200 },
  );
  t.ok(
    second.json.revision > first.json.revision,
    `the revision kept growing (${first.json.revision} → ${second.json.revision}): the acknowledged write survived`,
  );
  await servedEverywhere(instances, 'two.example.test', 'the push after the failover', 15_000);
  await load.stop();
  // The load host was replaced by the second push; what matters is that nothing failed before that.
  const beforeSwap = load.failures.filter((f) => !/: 404$/.test(f));
  t.same(beforeSwap, [], 'no request failed during the failover');
  t.ok(load.ok() > 20, `requests served through the failover (${load.ok()})`);

  const view = await waitFor(
    async () => {
      const v = (await adminApi(a, 'GET', '/v1/instances')).json;
      return v?.instances?.length === 2 && v.stale.length === 0 ? v : undefined;
    },
    { timeoutMs: 15_000, what: 'both instances fresh in /v1/instances after the failover', intervalMs: 100 },
  );
  t.equal(view.sharedRevision, second.json.revision);
});
