/**
 * The Consul provider over real sockets against a Consul HTTP api double (double.ts). No Consul binary can
 * be installed on this machine, so the double implements Consul's documented responses instead:
 * `X-Consul-Index`, blocking queries (`index`/`wait`, including the index going backwards after a restore),
 * the `?passing` health filter over per-instance and node checks, `X-Consul-Token` ACLs, `?dc`.
 *
 * The provider runs with `wait` 30 s: a change that arrives within a couple of seconds proves a blocking
 * query returned for it (not a wait running out). Every wait is bounded and on an event or condition;
 * nothing sleeps to synchronise.
 */
import t from 'tap';
import { ConsulProvider } from '../../../src/providers/consul/index.js';
import { createLogger } from '../../../src/telemetry/log.js';
import { waitFor, withTimeout } from '../../helpers/wait.js';
import type { ConsulDouble } from './double.js';
import { LogSink, eps, harness, watches } from './harness.js';

/** web ×2 (one on its node's address), api ×1, and Consul's own `consul` service. */
function standard(consul: ConsulDouble): void {
  consul.registerNode('node1', '10.0.0.1');
  consul.registerNode('node2', '10.0.0.2');
  consul.register({
    name: 'web',
    id: 'web-1',
    node: 'node1',
    address: '10.1.0.1',
    port: 8080,
    tags: ['portico.http.host=web.example.test', 'v1'],
    meta: { version: '1' },
  });
  consul.register({
    name: 'web',
    id: 'web-2',
    node: 'node2',
    port: 8080,
    tags: ['portico.http.host=web.example.test', 'v1'],
    meta: { version: '1' },
  });
  consul.register({ name: 'api', id: 'api-1', node: 'node1', address: '10.1.0.9', port: 9000 });
}

/** All loops back in a blocking query: the provider has nothing more in flight. */
function allBlocking(h: { consul: ConsulDouble; provider: ConsulProvider }, what: string) {
  return waitFor(() => h.consul.blocking === watches(h.provider), { timeoutMs: 3000, what, intervalMs: 5 });
}

t.test('initial snapshot: services, healthy instances, node-address fallback; `consul` itself left out', async (t) => {
  const h = await harness(t, { setup: standard });
  t.equal(h.snaps.items.length, 1, 'start() resolved after exactly one snapshot');
  const s = h.snaps.items[0]!;
  t.equal(s.provider, 'consul');
  t.same(Object.keys(s.services), ['api', 'web']);
  t.same(eps(s, 'web'), ['10.0.0.2:8080', '10.1.0.1:8080'], 'web-2 has no address of its own: its node address is used');
  t.same(s.services.web!.endpoints[0], {
    address: '10.0.0.2',
    port: 8080,
    weight: 1,
    health: 'healthy',
    taskId: 'node2/web-2',
    labels: { version: '1' },
    agentAddress: '10.0.0.2',
  });
  t.equal(s.services.web!.framework, 'consul');
  t.same(s.routes, [
    { id: 'consul/web/web.example.test/', entrypoint: 'web', host: 'web.example.test', path: '/', pathMatch: 'prefix', service: 'web' },
  ]);
  t.same(s.entrypoints, {});

  const st = h.provider.status();
  t.equal(st.state, 'ok');
  t.equal(st.lastError, undefined);
  t.equal(st.details?.services, 2);
  t.equal(st.details?.url, h.consul.url);

  const first = h.consul.requests[0]!;
  t.equal(first.path, '/v1/catalog/services');
  t.equal(first.query.index, undefined, 'the first read is a plain read');
  const health = h.consul.requestsTo('/v1/health/service/web');
  t.equal(health[0]!.query.passing, 'true', 'health is asked with ?passing');
  t.notOk(h.consul.requestsTo('/v1/health/service/consul').length, 'no loop for the ignored `consul` service');
  await allBlocking(h, 'every loop blocking after the first read');
  const blockingReq = h.consul.requestsTo('/v1/health/service/web').at(-1)!;
  t.equal(blockingReq.query.wait, '30000ms');
  t.ok(Number(blockingReq.query.index) > 1, 'blocks on the index the first read returned');
});

t.test('an instance failing its check leaves promptly; a node failing takes its instances; recovery brings them back', async (t) => {
  const h = await harness(t, { setup: standard });
  await allBlocking(h, 'loops blocking');
  const n = h.snaps.items.length;
  h.consul.setCheck('web-1', 'critical', { node: 'node1' });
  // The loops block for 30 s: an update within the 5 s wait came from the change waking them.
  const s1 = await h.snaps.until((s) => eps(s, 'web').length === 1, 5000, 'web-1 gone', n);
  t.same(eps(s1, 'web'), ['10.0.0.2:8080'], 'web-1 left without waiting out the blocking query');
  t.same(
    s1.routes.map((r) => r.host),
    ['web.example.test'],
    'the route stays',
  );

  h.consul.setNodeHealth('node2', 'critical');
  const s2 = await h.snaps.until((s) => eps(s, 'web').length === 0, 2000, 'web empty');
  t.same(
    s2.routes.map((r) => r.host),
    ['web.example.test'],
    'no instance passing: route kept (from the catalog tags), it answers 503',
  );
  t.ok(s2.services.web, 'the service stays, with no endpoints');

  h.consul.setCheck('web-1', 'warning', { node: 'node1' });
  h.consul.setNodeHealth('node2', 'passing');
  const s3 = await h.snaps.until((s) => eps(s, 'web').length === 1, 2000, 'web-2 back');
  t.same(eps(s3, 'web'), ['10.0.0.2:8080'], 'a warning instance is not passing: still out');
  h.consul.setCheck('web-1', 'passing', { node: 'node1' });
  await h.snaps.until((s) => eps(s, 'web').length === 2, 2000, 'both back');
});

t.test('includeWarning: warning instances are served with their Warning weight; critical ones are not', async (t) => {
  const h = await harness(t, {
    provider: { includeWarning: true },
    setup: (c) => {
      c.registerNode('node1', '10.0.0.1');
      c.register({
        name: 'web',
        id: 'a',
        node: 'node1',
        address: '10.1.0.1',
        port: 80,
        weights: { Passing: 10, Warning: 1 },
        checks: { 'service:a': 'warning' },
      });
      c.register({ name: 'web', id: 'b', node: 'node1', address: '10.1.0.2', port: 80, weights: { Passing: 10, Warning: 1 } });
      c.register({ name: 'web', id: 'c', node: 'node1', address: '10.1.0.3', port: 80, checks: { 'service:c': 'critical' } });
    },
  });
  const s = h.snaps.items[0]!;
  t.same(
    s.services.web!.endpoints.map((e) => `${e.address}:${e.weight}`),
    ['10.1.0.1:1', '10.1.0.2:10'],
  );
  t.equal(h.consul.requestsTo('/v1/health/service/web')[0]!.query.passing, undefined, 'asked without ?passing');
});

t.test('services appearing and leaving start and stop their loops; a burst of changes is one snapshot', async (t) => {
  const h = await harness(t, { setup: standard, provider: { debounceMs: 200 } });
  await allBlocking(h, 'loops blocking');
  t.equal(watches(h.provider), 3, 'catalog + web + api');

  let n = h.snaps.items.length;
  h.consul.register({ name: 'db', id: 'db-1', node: 'node1', address: '10.1.0.20', port: 5432, tags: ['portico.vip=/db:5432'] });
  const s1 = await h.snaps.until((s) => !!s.services.db, 2000, 'db appears', n);
  t.same(s1.services.db!.vips, [{ name: 'db', port: 5432, protocol: 'tcp' }]);
  t.equal(watches(h.provider), 4);

  h.consul.deregister('db-1', 'node1');
  await h.snaps.until((s) => !s.services.db, 2000, 'db leaves');
  await allBlocking(h, 'loops blocking after db left');
  t.equal(watches(h.provider), 3, 'its loop stopped');

  // Five instances in one go: one snapshot with all of them.
  await allBlocking(h, 'quiet before the burst');
  n = h.snaps.items.length;
  for (let i = 0; i < 5; i++) h.consul.register({ name: 'api', id: `api-x${i}`, node: 'node2', address: `10.2.0.${i + 1}`, port: 9000 });
  await h.snaps.until((s) => eps(s, 'api').length === 6, 2000, 'api with 6 instances', n);
  await allBlocking(h, 'quiet after the burst');
  t.equal(h.snaps.items.length, n + 1, 'one snapshot for the burst');
});

t.test('tags and meta become routes, VIPs and balance; instances that disagree are reported in status()', async (t) => {
  const h = await harness(t, {
    setup: (c) => {
      c.registerNode('node1', '10.0.0.1');
      c.registerNode('node2', '10.0.0.2');
      c.register({
        name: 'shop',
        id: 'shop-1',
        node: 'node1',
        port: 8000,
        tags: [
          'portico.http.host=shop.example.test,www.example.test',
          'portico.http.path=/store',
          'portico.vip=/shop:80',
          'portico.vip.udp=/shop:5353',
          'portico.balance=leastconn',
        ],
        meta: { 'portico-http-redirectToHttps': 'true' },
      });
      c.register({
        name: 'shop',
        id: 'shop-2',
        node: 'node2',
        port: 8000,
        tags: [
          'portico.http.host=shop2.example.test',
          'portico.http.path=/store',
          'portico.vip=/shop:80',
          'portico.vip.udp=/shop:5353',
          'portico.balance=leastconn',
        ],
        meta: { 'portico-http-redirectToHttps': 'true' },
      });
      c.register({
        name: 'hidden',
        id: 'hidden-1',
        node: 'node1',
        port: 7000,
        tags: ['portico.enable=false', 'portico.http.host=hidden.example.test'],
      });
      c.register({ name: 'shop-sidecar-proxy', id: 'shop-1-sidecar', node: 'node1', port: 21000, kind: 'connect-proxy' });
    },
  });
  const s = h.snaps.items[0]!;
  t.same(Object.keys(s.services), ['shop'], 'disabled service and Connect proxy left out');
  t.same(
    s.routes.map((r) => [r.host, r.path, r.redirectToHttps, r.service]),
    [
      ['shop.example.test', '/store', true, 'shop'],
      ['shop2.example.test', '/store', true, 'shop'],
      ['www.example.test', '/store', true, 'shop'],
    ],
  );
  t.same(s.services.shop!.vips, [
    { name: 'shop', port: 80, protocol: 'tcp' },
    { name: 'shop', port: 5353, protocol: 'udp' },
  ]);
  t.same(s.services.shop!.balance, { algorithm: 'leastconn' });
  const warnings = h.provider.status().details?.warnings as string[];
  t.equal(warnings.length, 1);
  t.match(warnings[0], /^shop: instances disagree on portico\.http\.host/);
  t.ok(
    h.logs.items.some((l) => /instances disagree/.test(l.msg)),
    'and logged',
  );
});

t.test('ACL token: sent as X-Consul-Token, its policy filters; a bad token is reported and never shown', async (t) => {
  const acl = { tokens: { 'good-secret-1111': [''], 'web-only-2222': ['web'] } };
  const good = await harness(t, { double: { acl }, setup: standard, provider: { token: 'good-secret-1111' } });
  t.same(Object.keys(good.snaps.items[0]!.services), ['api', 'web']);
  t.ok(good.consul.requests.length >= 3);
  t.ok(
    good.consul.requests.every((r) => r.token === 'good-secret-1111'),
    'every request carried the token',
  );
  t.equal(good.provider.status().details?.acl, 'token set');

  const narrow = await harness(t, { double: { acl }, setup: standard, provider: { token: 'web-only-2222' } });
  t.same(Object.keys(narrow.snaps.items[0]!.services), ['web'], 'Consul filters what the token may not read');

  const none = await harness(t, { double: { acl }, setup: standard });
  t.same(none.snaps.items[0]!.services, {}, 'anonymous, default deny: an empty catalog (Consul filters, it does not refuse)');

  const bad = await harness(t, { double: { acl }, setup: standard, provider: { token: 'wrong-secret-3333' } });
  t.equal(bad.snaps.items.length, 0, 'nothing sent');
  const st = bad.provider.status();
  t.equal(st.state, 'error', 'never had a good read: error');
  t.match(
    st.lastError,
    /Consul refused to list the service catalog: HTTP 403 "ACL not found" — the ACL token \(consul\.token\) is unknown/,
  );
  await waitFor(() => (bad.provider.status().details?.errors as number) >= 3, { timeoutMs: 3000, what: 'retries with the bad token' });
  const shown = JSON.stringify(bad.provider.status()) + bad.logs.raw + JSON.stringify(good.provider.status()) + good.logs.raw;
  t.notMatch(shown, /wrong-secret-3333|good-secret-1111/, 'the token is in no status and no log line');
  t.ok(
    bad.logs.items.some((l) => l.level === 40 && /ACL not found/.test(l.msg)),
    'the refusal is logged as a warning',
  );
});

t.test('datacenter: sent as ?dc; an unknown one is reported', async (t) => {
  const ok = await harness(t, { setup: standard, provider: { datacenter: 'dc1' } });
  t.ok(ok.consul.requests.every((r) => r.query.dc === 'dc1'));
  t.equal(Object.keys(ok.snaps.items[0]!.services).length, 2);
  const other = await harness(t, { setup: standard, provider: { datacenter: 'dc9' } });
  t.match(other.provider.status().lastError, /HTTP 500 "No path to datacenter"/);
});

t.test('index reset (state restored from a snapshot): the provider starts over at index 0, misses no update, no hot loop', async (t) => {
  const h = await harness(t, { setup: standard });
  await allBlocking(h, 'loops blocking');
  const highIndex = h.consul.index;
  t.ok(highIndex > 5);
  const mark = h.consul.requests.length;
  const n = h.snaps.items.length;

  h.consul.resetIndex(2);
  // A write after the restore has an index (3) below the one every loop held: a client that kept its old
  // index would block past it until the 30 s wait ran out.
  h.consul.register({ name: 'api', id: 'api-2', node: 'node2', address: '10.1.0.10', port: 9000 });
  // Well within the 30 s blocking wait a client holding the old index would sit out.
  const s = await h.snaps.until((x) => eps(x, 'api').length === 2, 5000, 'the post-restore update', n);
  t.same(eps(s, 'api'), ['10.1.0.9:9000', '10.1.0.10:9000'], 'delivered without waiting out the blocking query');

  await allBlocking(h, 'loops blocking again after the reset');
  t.ok((h.provider.status().details?.indexResets as number) >= 3, 'every loop saw the index go back');
  const after = h.consul.requests.slice(mark);
  for (const r of after)
    t.ok(r.query.index === undefined || Number(r.query.index) <= h.consul.index, `never sends the stale index (sent ${r.query.index})`);
  t.ok(
    after.some((r) => r.query.index === undefined),
    'a fresh plain read after the reset',
  );
  // Per loop: the answer to the abandoned query, a plain read, the new blocking query (+ one for the write).
  t.ok(after.length <= 4 * watches(h.provider), `bounded: ${after.length} requests for ${watches(h.provider)} loops`);
  t.ok(h.logs.items.some((l) => /index went backwards/.test(l.msg)));
});

t.test('a Consul that always answers index 0 (an old bug): the rate limit turns the loop into polling', async (t) => {
  const h = await harness(t, { setup: standard, provider: { rateLimit: { burst: 2, intervalMs: 100 } } });
  await allBlocking(h, 'loops blocking');
  h.consul.quirks.zeroIndex = true;
  const mark = h.consul.requests.length;
  const began = Date.now();
  h.consul.setCheck('api-1', 'warning', { node: 'node1' }); // wakes the api loop; from now on its answers say index 0
  const api = () => h.consul.requestsTo('/v1/health/service/api', mark);
  await waitFor(() => api().length >= 8, { timeoutMs: 5000, what: '8 api requests' });
  const elapsed = Date.now() - began;
  // Index 0 is used as 1, so each query returns at once: only the bucket (2 at once, then 1 per 100 ms) spaces them.
  t.ok(elapsed >= 8 * 100 - 2 * 100 - 150, `8 requests took ${elapsed} ms: rate-limited, not a hot loop`);
  t.ok(
    api().every((r) => r.query.index === undefined || r.query.index === '1'),
    'blocks on index 1, never 0',
  );
  t.ok((h.provider.status().details?.rateLimited as number) >= 4);
  h.consul.quirks.zeroIndex = false;
});

t.test('Consul down: degraded, the last good snapshot kept, backoff; back up: a fresh read and recovery', async (t) => {
  const h = await harness(t, { setup: standard });
  await allBlocking(h, 'loops blocking');
  const n = h.snaps.items.length;
  const logMark = h.logs.items.length;

  await h.consul.down();
  await waitFor(() => h.provider.status().state === 'degraded' && /ECONNREFUSED/.test(h.provider.status().lastError ?? ''), {
    timeoutMs: 3000,
    what: 'degraded, connection refused',
  });
  t.match(h.provider.status().lastError, /cannot reach Consul at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
  t.ok(h.provider.status().lastErrorAt);

  // Backoff: the catalog loop's consecutive failures, spaced by growing delays (20, 40, 80, 160 ms, ±jitter).
  const catalogFail = (k: number) =>
    h.logs.until((l) => l.watch === 'catalog' && (l.consecutive as number) === k, 5000, `catalog failure #${k}`, logMark);
  const f1 = await catalogFail(1);
  const f5 = await catalogFail(5);
  const delays = h.logs.items
    .slice(logMark)
    .filter((l) => l.watch === 'catalog')
    .map((l) => l.retryInMs as number);
  const base = (i: number) => Math.min(200, 20 * 2 ** i);
  t.ok(
    delays.slice(0, 5).every((d, i) => d >= base(i) / 2 && d <= base(i)),
    `delays grow and are capped: ${delays.slice(0, 5).join(', ')}`,
  );
  t.ok(new Date(f5.time as string).getTime() - new Date(f1.time as string).getTime() >= 10 + 20 + 40 + 80 - 20, 'the retries were spaced');
  t.equal(h.snaps.items.length, n, 'nothing sent while Consul is down: the last good snapshot serves');
  t.same(Object.keys(h.snaps.items.at(-1)!.services), ['api', 'web']);

  // Changes while down are picked up by the fresh read on return.
  h.consul.setCheck('web-1', 'critical', { node: 'node1' });
  h.consul.register({ name: 'late', id: 'late-1', node: 'node1', address: '10.1.0.30', port: 3000 });
  await h.consul.up();
  const s = await h.snaps.until((x) => !!x.services.late && eps(x, 'web').length === 1, 3000, 'recovered snapshot', n);
  t.same(eps(s, 'web'), ['10.0.0.2:8080']);
  await waitFor(() => h.provider.status().state === 'ok', { timeoutMs: 2000, what: 'ok again' });
  t.equal(h.provider.status().lastError, undefined, 'a success clears the error');
});

t.test('Consul down at start: start() resolves with the error recorded, the snapshot follows when Consul is up', async (t) => {
  const h = await harness(t, { setup: standard, start: false });
  await h.consul.down();
  await h.provider.start(h.snaps.push);
  t.equal(h.snaps.items.length, 0);
  t.equal(h.provider.status().state, 'error');
  t.match(h.provider.status().lastError, /ECONNREFUSED/);
  await h.consul.up();
  const s = await h.snaps.until(() => true, 3000, 'first snapshot');
  t.same(Object.keys(s.services), ['api', 'web']);
  t.equal(h.provider.status().state, 'ok');
});

t.test('Consul answering 5xx: degraded with its message; cleared: a fresh read, no needless snapshot', async (t) => {
  const h = await harness(t, { setup: standard });
  await allBlocking(h, 'loops blocking');
  const n = h.snaps.items.length;
  h.consul.failWith(500, 'No cluster leader');
  await waitFor(() => h.provider.status().state === 'degraded', { timeoutMs: 3000, what: 'degraded' });
  t.match(h.provider.status().lastError, /Consul answered HTTP 500 "No cluster leader"/);
  h.consul.clearFailure();
  const mark = h.consul.requests.length;
  await waitFor(() => h.provider.status().state === 'ok', { timeoutMs: 3000, what: 'ok again' });
  await allBlocking(h, 'loops blocking after recovery');
  t.ok(
    h.consul.requests.slice(mark).some((r) => r.query.index === undefined),
    'a plain read after the failure',
  );
  t.equal(h.snaps.items.length, n, 'same data: nothing new sent');
});

t.test('stop() aborts blocking queries and closes every socket promptly; idempotent', async (t) => {
  const h = await harness(t, { setup: standard });
  await allBlocking(h, 'loops blocking');
  t.ok(h.consul.openSockets >= 3);
  await withTimeout(h.provider.stop(), 5000, 'stop() with 30 s queries in flight (it aborts them, not waits)');
  t.equal(h.provider.status().state, 'stopped');
  await waitFor(() => h.consul.openSockets === 0 && h.consul.blocking === 0, { timeoutMs: 2000, what: 'sockets closed' });
  const count = h.consul.requests.length;
  h.consul.setCheck('web-1', 'critical', { node: 'node1' });
  await h.provider.stop();
  t.equal(h.consul.requests.length, count, 'no request after stop');
});

t.test('bad options are refused with a clear error', async (t) => {
  t.throws(() => new ConsulProvider({ url: 'not a url' }), /consul\.url: "not a url" is not a URL/);
  t.throws(() => new ConsulProvider({ url: 'ftp://x:1' }), /must be http:\/\/ or https:\/\//);
  t.throws(() => new ConsulProvider({ url: 'http://127.0.0.1:8500', waitMs: 11 * 60_000 }), /at most|10m/);
  const p = new ConsulProvider({
    url: 'http://user:pw@127.0.0.1:8500/consul/',
    logger: createLogger({ level: 'silent', destination: new LogSink() }),
  });
  t.equal(p.status().details?.url, 'http://127.0.0.1:8500/consul', 'credentials in the url are not shown');
  t.equal(p.status().state, 'starting');
  await p.stop();
});
