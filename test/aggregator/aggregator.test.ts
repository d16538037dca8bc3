import t from 'tap';
import { Aggregator } from '../../src/aggregator/index.js';
import type { RoutingTable } from '../../src/model/types.js';
import { endpoint, entrypoint, service, snapshot } from '../helpers/snapshot.js';

const web = () =>
  snapshot('file', {
    entrypoints: { web: entrypoint('web', '127.0.0.1:8080') },
    services: {
      web: service([endpoint('127.0.0.1', 9002), endpoint('127.0.0.1', 9001)], {
        name: 'web',
        vips: [{ name: 'web', port: 80, protocol: 'tcp' }],
      }),
    },
    routes: [{ entrypoint: 'web', host: 'app.example.test', path: '/', pathMatch: 'prefix', service: 'web' }],
  });

const consul = () =>
  snapshot('consul', {
    services: { api: service([endpoint('10.0.0.1', 80)], { name: 'api', framework: 'consul' }) },
    routes: [{ entrypoint: 'web', host: 'api.example.test', path: '/', pathMatch: 'prefix', service: 'api' }],
  });

function nextTable(agg: Aggregator, timeoutMs = 2000): Promise<RoutingTable> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('no table within timeout'));
    }, timeoutMs);
    const off = agg.subscribe((table) => {
      clearTimeout(timer);
      off();
      resolve(table);
    });
  });
}

t.test('starts with an empty version-0 table', async (t) => {
  const agg = new Aggregator();
  t.teardown(() => agg.close());
  const table = agg.current();
  t.equal(table.version, 0);
  t.same(table.routes, []);
  t.same(table.services.keys(), []);
});

t.test('an update publishes a qualified, sorted, frozen table', async (t) => {
  const agg = new Aggregator({ debounceMs: 1 });
  t.teardown(() => agg.close());
  const p = nextTable(agg);
  agg.update('file', 100, web());
  const table = await p;
  t.equal(table.version, 1);
  t.same(table.services.keys(), ['web@file']);
  t.equal(table.routes[0]?.service, 'web@file');
  t.equal(table.routes[0]?.id, 'file/0');
  t.same(
    table.services.get('web@file')?.endpoints.map((e) => e.port),
    [9001, 9002],
    'endpoints sorted',
  );
  t.equal(table.vips[0]?.key, 'tcp/web.marathon:80');
  t.ok(Object.isFrozen(table.services.get('web@file')), 'services are frozen');
  t.ok(Object.isFrozen(table.services.get('web@file')?.endpoints), 'endpoint lists are frozen');
  t.throws(() => {
    (table.routes as unknown[]).push(1);
  });
});

t.test('identical input gives no new version; arrival order does not change the hash', async (t) => {
  const a = new Aggregator({ debounceMs: 0 });
  const b = new Aggregator({ debounceMs: 0 });
  t.teardown(() => {
    a.close();
    b.close();
  });
  a.update('file', 100, web());
  a.update('consul', 50, consul());
  b.update('consul', 50, consul());
  b.update('file', 100, web());
  const ta = a.flush();
  const tb = b.flush();
  t.equal(ta.hash, tb.hash, 'same content, same hash');
  t.equal(ta.version, 1);
  a.update('file', 100, web());
  a.update('consul', 50, consul());
  t.equal(a.flush().version, 1, 'same snapshots again: no new version');
  // a snapshot that differs but merges to the same content (endpoint order) also gives no version
  const reordered = web();
  reordered.services.web!.endpoints.reverse();
  a.update('file', 100, reordered);
  t.equal(a.flush().version, 1, 'equal content after normalisation: no new version');
});

t.test('a burst of updates is debounced into one rebuild', async (t) => {
  const agg = new Aggregator({ debounceMs: 20, maxDelayMs: 1000 });
  t.teardown(() => agg.close());
  let published = 0;
  agg.subscribe(() => {
    published++;
  });
  const p = nextTable(agg);
  for (let i = 0; i < 20; i++) {
    const s = web();
    s.services.web!.endpoints.push(endpoint('127.0.0.2', 10000 + i));
    agg.update('file', 100, s);
  }
  const table = await p;
  t.equal(published, 1);
  t.equal(table.version, 1);
  t.equal(table.services.get('web@file')?.endpoints.length, 3, 'the last snapshot wins');
});

t.test('conflicts are decided by priority and reported', async (t) => {
  const agg = new Aggregator({ debounceMs: 0 });
  t.teardown(() => agg.close());
  const low = snapshot('consul', {
    entrypoints: { web: entrypoint('web', '127.0.0.1:9999') },
    services: { web: service([endpoint('10.0.0.9', 80)], { name: 'web', vips: [{ name: 'web', port: 80, protocol: 'tcp' }] }) },
    routes: [{ entrypoint: 'web', host: 'app.example.test', path: '/', pathMatch: 'prefix', service: 'web' }],
  });
  agg.update('consul', 10, low);
  agg.update('file', 100, web());
  const table = agg.flush();
  const kinds = table.conflicts.map((c) => `${c.kind}:${c.winner}>${c.losers.join(',')}`).sort();
  t.same(kinds, ['dns:file>consul', 'entrypoint:file>consul', 'route:file>consul', 'vip:file>consul']);
  t.equal(table.routes.length, 1);
  t.equal(table.routes[0]?.service, 'web@file', 'the higher-priority route is served');
  t.equal(table.entrypoints.web?.listen, '127.0.0.1:8080');
  t.equal(table.services.get('web@consul')?.dnsHidden, true, 'the loser keeps routing but publishes no DNS');
  t.notOk(table.services.get('web@file')?.dnsHidden);
  t.match(table.conflicts[0]?.message, /highest priority/);

  // swap priorities: the outcome follows priority, not arrival order
  agg.update('consul', 1000, low);
  const t2 = agg.flush();
  t.equal(t2.routes[0]?.service, 'web@consul');
});

t.test('routes to missing services and entrypoints are warnings', async (t) => {
  const agg = new Aggregator({ debounceMs: 0 });
  t.teardown(() => agg.close());
  agg.update('consul', 50, consul());
  const table = agg.flush();
  t.equal(table.warnings.length, 1);
  t.match(table.warnings[0]?.message, /entrypoint web/);
  agg.update('x', 1, snapshot('x', { routes: [{ entrypoint: 'web', host: 'h.test', path: '/', pathMatch: 'prefix', service: 'nope' }] }));
  t.ok(agg.flush().warnings.some((w) => /service nope@x/.test(w.message)));
});

t.test('history is bounded; versions, get and diff', async (t) => {
  const agg = new Aggregator({ debounceMs: 0, historySize: 3 });
  t.teardown(() => agg.close());
  for (let i = 0; i < 5; i++) {
    const s = web();
    s.services.web!.endpoints.push(endpoint('127.0.0.3', 20000 + i));
    agg.update('file', 100, s);
    agg.flush();
  }
  const versions = agg.versions().map((v) => v.version);
  t.same(versions, [3, 4, 5]);
  t.equal(agg.get(1), undefined, 'evicted');
  t.equal(agg.diff(1, 5), undefined);
  agg.update('consul', 50, consul());
  agg.flush();
  const d = agg.diff(5, 6)!;
  t.same(d.services.added, ['api@consul']);
  t.same(d.routes.added, ['consul/0']);
  t.notOk(d.empty);
  const d2 = agg.diff(4, 5)!;
  t.same(d2.services.changed, ['web@file']);
  t.same(d2.services.added, []);
  t.ok(agg.diff(6, 6)!.empty);
});

t.test('preview computes without publishing; remove drops a provider', async (t) => {
  const agg = new Aggregator({ debounceMs: 0 });
  t.teardown(() => agg.close());
  agg.update('file', 100, web());
  agg.flush();
  const { table, diff } = agg.preview('consul', 50, consul());
  t.equal(agg.current().version, 1, 'nothing published');
  t.ok(table.services.get('api@consul'));
  t.same(diff.services.added, ['api@consul']);
  agg.remove('file');
  t.same(agg.flush().services.keys(), []);
});

t.test('a subscriber that throws does not stop the others', async (t) => {
  const agg = new Aggregator({ debounceMs: 0 });
  t.teardown(() => agg.close());
  let got = 0;
  agg.subscribe(() => {
    throw new Error('boom');
  });
  agg.subscribe(() => {
    got++;
  });
  agg.update('file', 100, web());
  agg.flush();
  t.equal(got, 1);
});
