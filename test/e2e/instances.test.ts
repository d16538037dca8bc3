/**
 * Many instances, one truth: three real `portico up` processes on one private redis-server.
 *
 * - A route pushed through one instance's api is served by all three.
 * - `GET /v1/instances` on any of them lists the three, none stale.
 * - Redis killed (SIGKILL) under load: every request on every instance still succeeds, readiness stays
 *   200 but says degraded, and a push is refused with 503 naming the store.
 * - Redis back (same port, its append-only file): the instances reconnect and resync without a restart,
 *   and a new push propagates to all three again.
 * Needs Debian's redis-server (.ci/run installs it); without it the test fails saying so.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import {
  adminApi as api,
  httpGet,
  loadLoop,
  servedEverywhere as served,
  sharedDoc as shared,
  startInstances,
  type Instance,
} from '../helpers/instances.js';
import { startRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

t.test('three instances on one Redis', async (t) => {
  const redis = await startRedis({ persistent: true });
  t.teardown(() => redis.dispose());
  const backend = http.createServer((_req, res) => res.end('from-backend'));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => backend.close(() => r())));
  const backendPort = (backend.address() as AddressInfo).port;

  const instances = await startInstances(t, t.testdir(), redis.url, ['a', 'b', 'c']);
  const [a, b, c] = instances as [Instance, Instance, Instance];

  const servedEverywhere = (host: string, what: string) => served(instances, host, what);

  // 1. Push through A; all three serve it.
  const pushed = await api(a, 'PUT', '/v1/config/shared', shared('api.example.test', backendPort));
  t.equal(pushed.status, 200, JSON.stringify(pushed.json));
  t.ok(pushed.json.revision > 0);
  t.same(pushed.json.diff.services.added, ['api@shared']);
  await servedEverywhere('api.example.test', 'the pushed route');
  for (const i of instances) t.equal((await httpGet(i.web, 'api.example.test')).body, 'from-backend');

  const got = await api(b, 'GET', '/v1/config/shared');
  t.equal(got.json.revision, pushed.json.revision, 'B shows the revision A accepted');
  t.match(got.json.text, /api\.example\.test/);

  // A conditional push with a stale revision is refused.
  const stalePush = await api(c, 'PUT', '/v1/config/shared', shared('x.example.test', backendPort));
  t.equal(stalePush.status, 200);
  const refused = await fetch(`${c.api}/v1/config/shared`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/yaml', 'if-match': `"${pushed.json.revision}"` },
    body: shared('api.example.test', backendPort),
  });
  t.equal(refused.status, 412, 'If-Match with an old revision: 412');
  const restored = await api(c, 'PUT', '/v1/config/shared', shared('api.example.test', backendPort));
  t.equal(restored.status, 200);
  await servedEverywhere('api.example.test', 'the route again');

  // 2. The cluster view: three instances, same shared revision, none stale.
  const view = await waitFor(
    async () => {
      const v = (await api(c, 'GET', '/v1/instances')).json;
      return v.instances.length === 3 && v.stale.length === 0 && v.sharedRevision === restored.json.revision ? v : undefined;
    },
    { timeoutMs: 10_000, what: 'three fresh instances in /v1/instances' },
  );
  t.same(
    view.instances.map((i: any) => i.sharedRevision),
    [restored.json.revision, restored.json.revision, restored.json.revision],
  );
  t.equal(Object.keys(view.tableHashes).length, 1, 'same files, same pushed config: one table hash');
  t.ok(view.instances.every((i: any) => i.ready === true && i.degraded === false));

  // 3. Kill Redis under load: every request still succeeds on every instance.
  const loader = loadLoop(instances, 'api.example.test');
  const ok = loader.ok;
  await waitFor(() => ok() >= 30, { timeoutMs: 10_000, what: 'load running' });
  await redis.kill();
  const before = ok();
  for (const i of instances) {
    const ready = await waitFor(
      async () => {
        const r = await fetch(`${i.api}/readyz`);
        const j = (await r.json()) as any;
        return j.degraded ? { status: r.status, j } : undefined;
      },
      { timeoutMs: 10_000, what: 'readiness to report degraded' },
    );
    t.equal(ready.status, 200, 'still ready: it serves its last table');
    t.match(ready.j.reasons.join('\n'), /store redis:\/\/127\.0\.0\.1:\d+\/0: unreachable/);
  }
  await waitFor(() => ok() >= before + 60, { timeoutMs: 10_000, what: 'requests while Redis is down' });
  const denied = await api(b, 'PUT', '/v1/config/shared', shared('new.example.test', backendPort));
  t.equal(denied.status, 503, 'a write without the store: 503');
  t.match(denied.json.error.message, /redis/);
  await loader.stop();
  t.same(loader.failures, [], 'no request failed while Redis was down');
  t.ok(ok() > before, `requests served during the outage (${ok() - before})`);

  // 4. Redis back: instances resync and a new push propagates again.
  await redis.restart();
  for (const i of instances) {
    await waitFor(async () => ((await (await fetch(`${i.api}/readyz`)).json()) as any).degraded === false, {
      timeoutMs: 15_000,
      what: 'readiness back to not degraded',
    });
  }
  const again = await api(b, 'PUT', '/v1/config/shared', shared('new.example.test', backendPort));
  t.equal(again.status, 200, JSON.stringify(again.json));
  await servedEverywhere('new.example.test', 'the push after Redis came back');
  for (const i of instances) t.equal((await httpGet(i.web, 'api.example.test')).status, 404, 'the replaced route is gone');
});
