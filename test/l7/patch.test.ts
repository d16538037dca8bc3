/**
 * The L7 plane patching what it compiled: a table that comes with its change from the table served now
 * is compiled for the changed services only (and routers and route settings only when routes or
 * entrypoints changed); everything else is shared with the last compiled table.
 *
 * - A seeded random history through the real aggregator (snapshots and deltas from two providers, a third
 *   that comes and goes, shared endpoints, health checks, routes to services that come and go, entrypoints
 *   that change, tables skipped): after every step the patched plane describes exactly what a fresh plane
 *   started on the same table describes, and the pools it keeps are those of endpoints some service has.
 * - One endpoint change recompiles nothing else: routers, route settings and every other set are the same
 *   objects, and the compiled table an exchange in flight holds is not touched.
 * - On real sockets: an endpoint change moves traffic on a kept router; a service that appears or goes
 *   under an unchanged route is answered (or 503) at once.
 */
import tls from 'node:tls';
import t from 'tap';
import { Aggregator } from '../../src/aggregator/index.js';
import { L7Plane } from '../../src/l7/plane.js';
import type { UpstreamSet } from '../../src/l7/balance/index.js';
import type { Pool } from '../../src/l7/pool.js';
import type { Endpoint, HealthCheck, RoutingTable, Snapshot, SnapshotDelta, TableChange } from '../../src/model/types.js';
import { bigSnapshot, endpoint, entrypoint, service, snapshot } from '../helpers/snapshot.js';
import { RawClient, get, startBackend, startPlane, waitFor } from './helpers.js';

type LocalService = Snapshot['services'][string];
type SnapRoute = Snapshot['routes'][number] & { id: string };

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const NAMES = ['web', 'api', 'db', 'cache', 'auth', 'mail', 'queue'];
const HOSTS = ['a.test', 'b.test', '*.w.test', '*'];
const PATHS = ['/', '/api', '/api/v1'];
const ALGORITHMS = ['roundrobin', 'weighted', 'leastconn', 'p2c', 'sticky'] as const;

/** Checks that never run during a test (first probe at a random point of a 10-minute interval). */
function check(intervalMs: number): HealthCheck {
  return { httpPath: '/healthz', expectStatus: [200, 399], intervalMs, timeoutMs: 1000, rise: 2, fall: 3 };
}

function pick<T>(r: () => number, list: readonly T[]): T {
  return list[Math.floor(r() * list.length)] as T;
}

/** Few addresses and ports: services share endpoints often. */
function randomEndpoint(r: () => number): Endpoint {
  return endpoint(`127.0.0.${1 + Math.floor(r() * 3)}`, 19000 + Math.floor(r() * 4), {
    weight: r() < 0.15 ? 0 : 1 + Math.floor(r() * 3),
    health: r() < 0.8 ? 'healthy' : pick(r, ['unknown', 'unhealthy', 'draining'] as const),
  });
}

function randomService(r: () => number, name: string): LocalService {
  const endpoints = Array.from({ length: Math.floor(r() * 4) }, () => randomEndpoint(r));
  const extra: Partial<LocalService> = { name, balance: { algorithm: pick(r, ALGORITHMS) } };
  if (r() < 0.4) extra.health = check(pick(r, [600_000, 900_000]));
  return service(endpoints, extra);
}

/** One endpoint added, dropped or changed: what churn mostly is. */
function churn(r: () => number, s: LocalService): LocalService {
  const endpoints = [...s.endpoints];
  const x = r();
  if (x < 0.35 || endpoints.length === 0) endpoints.push(randomEndpoint(r));
  else if (x < 0.65) endpoints.splice(Math.floor(r() * endpoints.length), 1);
  else {
    const i = Math.floor(r() * endpoints.length);
    endpoints[i] = { ...(endpoints[i] as Endpoint), weight: Math.floor(r() * 4), health: pick(r, ['healthy', 'unhealthy'] as const) };
  }
  return { ...s, endpoints };
}

function randomRoute(r: () => number, provider: string, n: number): SnapRoute {
  const route: SnapRoute = {
    id: `${provider}/r${n}`,
    entrypoint: r() < 0.8 ? 'web' : 'admin',
    host: pick(r, HOSTS),
    path: pick(r, PATHS),
    pathMatch: r() < 0.8 ? 'prefix' : 'exact',
    // Sometimes a service no provider has (yet): the route answers 503 until it comes.
    service: pick(r, NAMES),
  };
  if (r() < 0.2) route.methods = ['GET'];
  if (r() < 0.2) route.timeouts = { connectMs: 500 };
  if (r() < 0.15) route.hsts = { maxAgeS: 600, includeSubdomains: false, preload: false };
  if (r() < 0.15) route.allowFrom = ['127.0.0.0/8'];
  if (r() < 0.1) route.basicAuth = { realm: 'r', users: [{ user: 'u', hash: '{PLAIN}p' }] };
  return route;
}

/** What a provider knows, kept by the test to send as a whole snapshot or as deltas. */
interface Known {
  services: Map<string, LocalService>;
  routes: Map<string, SnapRoute>;
  admin: boolean;
  nextRoute: number;
}

function entrypointsOf(k: Known): Snapshot['entrypoints'] {
  const eps: Snapshot['entrypoints'] = { web: entrypoint('web', '127.0.0.1:0') };
  if (k.admin) eps.admin = entrypoint('admin', '127.0.0.1:0');
  return eps;
}

function snapshotOf(provider: string, k: Known): Snapshot {
  return snapshot(provider, {
    services: Object.fromEntries(k.services),
    routes: [...k.routes.values()],
    entrypoints: entrypointsOf(k),
  });
}

/** The described table without what differs between any two planes (nothing, once pools are left out). */
function shape(p: L7Plane): unknown {
  const d = p.describe();
  return { ...d, pools: undefined };
}

t.test('a seeded random history: the patched plane serves what a fresh plane compiles from the same table', async (t) => {
  let patched = 0;
  let whole = 0;
  let checked = 0;
  for (const seed of [11, 12, 13]) {
    const r = rng(seed);
    const agg = new Aggregator({ debounceMs: 60_000, historySize: 4 });
    t.teardown(() => agg.close());
    const served: Array<{ table: RoutingTable; change: TableChange | undefined }> = [];
    agg.subscribe((table, _previous, change) => served.push({ table, change }));
    const known: Record<string, Known> = {
      file: { services: new Map(), routes: new Map(), admin: false, nextRoute: 0 },
      apps: { services: new Map(), routes: new Map(), admin: false, nextRoute: 0 },
    };
    for (const [provider, k] of Object.entries(known)) {
      for (const name of NAMES) if (r() < 0.6) k.services.set(name, randomService(r, name));
      for (let i = 0; i < 4; i++) {
        const route = randomRoute(r, provider, k.nextRoute++);
        k.routes.set(route.id, route);
      }
      agg.update(provider, provider === 'file' ? 100 : 50, snapshotOf(provider, k));
    }
    const plane = new L7Plane({ options: { accessLog: false } });
    t.teardown(() => plane.stop(0));
    await plane.start(agg.flush());
    /** Pools an exchange of the table before made after the last swap, for endpoints it no longer has. */
    let strays: Pool[] = [];

    for (let step = 0; step < 60; step++) {
      // One to three changes per table, from either provider.
      const changes = 1 + Math.floor(r() * 3);
      for (let c = 0; c < changes; c++) {
        const provider = r() < 0.5 ? 'file' : 'apps';
        const priority = provider === 'file' ? 100 : 50;
        const k = known[provider] as Known;
        const x = r();
        const name = pick(r, NAMES);
        const have = k.services.get(name);
        const delta: SnapshotDelta = {};
        if (x < 0.5 && have) {
          const next = churn(r, have);
          k.services.set(name, next);
          delta.upsert = { [name]: next };
        } else if (x < 0.6) {
          const next = randomService(r, name);
          k.services.set(name, next);
          delta.upsert = { [name]: next };
        } else if (x < 0.68 && have) {
          k.services.delete(name);
          delta.remove = [name];
        } else if (x < 0.76) {
          const route = randomRoute(r, provider, k.nextRoute++);
          k.routes.set(route.id, route);
          delta.upsertRoutes = [route];
        } else if (x < 0.82 && k.routes.size > 0) {
          const id = pick(r, [...k.routes.keys()]);
          k.routes.delete(id);
          delta.removeRoutes = [id];
        } else if (x < 0.86) {
          k.admin = !k.admin;
          delta.entrypoints = entrypointsOf(k);
        } else if (x < 0.9) {
          // A third provider comes or goes: the decision order changes, the next table comes whole.
          if (agg.inputHash('extra') === undefined)
            agg.update('extra', 75, snapshot('extra', { services: { [name]: randomService(r, name) } }));
          else agg.remove('extra');
          continue;
        } else if (have) {
          // The provider's whole knowledge again, with one service churned: the aggregator diffs it.
          k.services.set(name, churn(r, have));
        }
        if (Object.keys(delta).length > 0) agg.change(provider, priority, delta);
        else agg.update(provider, priority, snapshotOf(provider, k));
      }
      const before = served.length;
      agg.flush();
      if (served.length === before) continue; // nothing changed in the end
      const { table, change } = served[served.length - 1] as (typeof served)[number];

      // Sometimes a table is not applied: the next change then starts from a version the plane does not
      // serve, and the plane compiles the whole table.
      if (r() < 0.1) continue;
      // Pools for some endpoints of the table served now (as requests would make them), to see which the
      // swap closes: those of endpoints no service has any more, strays too.
      const pools = strays;
      const previous = plane.current();
      for (const set of previous.sets.values()) {
        for (const u of set.all) if (r() < 0.3) pools.push(plane.pool(u));
      }
      plane.apply(table, change);
      const swap = plane.lastSwap;
      if (swap?.mode === 'patch') patched++;
      else whole++;

      const fresh = new L7Plane({ options: { accessLog: false } });
      await fresh.start(table);
      const want = shape(fresh);
      await fresh.stop(0);
      const got = shape(plane);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        t.same(got, want, `seed ${seed} step ${step} (${swap?.mode}): the patched plane describes what a fresh one does`);
        return;
      }
      const d = plane.describe();
      const live = new Set(d.endpoints);
      for (const p of pools) {
        if (p.closed === live.has(p.key)) {
          t.fail(
            `seed ${seed} step ${step}: the pool of ${p.key} is ${p.closed ? 'closed' : 'open'} while ${live.has(p.key) ? 'a' : 'no'} service has it`,
          );
          return;
        }
      }
      if (!d.pools.every((k) => live.has(k))) {
        t.fail(`seed ${seed} step ${step}: open pools ${d.pools.join(' ')} of endpoints no service has`);
        return;
      }
      // An exchange still on the table before retries on an endpoint the swap dropped: its pool is a stray.
      strays = [];
      for (const set of previous.sets.values()) for (const u of set.all) if (!live.has(u.key) && r() < 0.5) strays.push(plane.pool(u));
      checked++;
    }
  }
  t.ok(checked > 150, `${checked} tables applied and checked`);
  t.ok(patched > 60, `most tables were patched (${patched} patched, ${whole} whole)`);
  t.ok(whole > 3, 'some were compiled whole (first tables, a provider came or went, a table skipped)');
});

t.test('one endpoint change compiles that service only; everything else is the same objects', async (t) => {
  const agg = new Aggregator({ debounceMs: 60_000 });
  t.teardown(() => agg.close());
  let last: { table: RoutingTable; change: TableChange | undefined } | undefined;
  agg.subscribe((table, _previous, change) => (last = { table, change }));
  const snap = bigSnapshot('file', 300, 4);
  for (const [i, s] of Object.values(snap.services).entries()) if (i % 3 === 0) s.health = check(600_000);
  agg.update('file', 100, snap);
  const plane = new L7Plane({ options: { accessLog: false } });
  t.teardown(() => plane.stop(0));
  await plane.start(agg.flush());
  t.equal(plane.lastSwap?.mode, 'whole', 'the first table is compiled whole');
  const before = plane.current();
  const checksBefore = plane.describe().checks;

  // app3 (checked: 3 % 3 === 0) drops one endpoint and gains another.
  const app3 = snap.services.app3 as LocalService;
  const kept = app3.endpoints.slice(1);
  const moved = { ...app3, endpoints: [...kept, endpoint('10.200.0.1', 9999)] };
  agg.change('file', 100, { upsert: { app3: moved } });
  agg.flush();
  t.same(last?.change && { ...last.change, from: 0 }, {
    from: 0,
    upserted: ['app3@file'],
    removed: [],
    routes: false,
    entrypoints: false,
    vips: false,
  });
  plane.apply((last as NonNullable<typeof last>).table, last?.change);
  const after = plane.current();

  t.same(plane.lastSwap, { version: after.version, mode: 'patch', services: 1, routers: false, routes: false });
  t.equal(after.routers, before.routers, 'the routers are the same objects');
  t.equal(after.routes, before.routes, 'the route settings are the same objects');
  let same = 0;
  for (const [id, set] of before.sets) if (id !== 'app3@file' && after.sets.get(id) === set) same++;
  t.equal(same, 299, 'every other service keeps its set object');
  const oldSet = before.sets.get('app3@file') as UpstreamSet;
  const newSet = after.sets.get('app3@file') as UpstreamSet;
  t.not(newSet, oldSet, 'the changed service has a new set');
  t.same(
    newSet.all.map((u) => u.key),
    [...kept.map((e) => `${e.address}:${e.port}`), '10.200.0.1:9999'],
  );
  for (const e of kept)
    t.equal(newSet.get(`${e.address}:${e.port}`), oldSet.get(`${e.address}:${e.port}`), 'a kept endpoint keeps its Upstream');
  t.equal(before.sets.get('app3@file'), oldSet, 'the table an exchange in flight holds still has the old set');
  t.equal(before.sets.size, 300);

  // Health: the checks of app3 follow its endpoints; nothing else changed.
  const dropped = `app3@file ${app3.endpoints[0]?.address}:${app3.endpoints[0]?.port}`;
  const checksAfter = plane.describe().checks;
  t.same(
    checksAfter,
    [...checksBefore.filter((c) => c !== dropped), 'app3@file 10.200.0.1:9999'].sort(),
    'the dropped endpoint is no longer checked, the new one is',
  );

  // A route change makes the routers and route settings anew; the sets stay.
  agg.change('file', 100, {
    upsertRoutes: [{ id: 'file/extra', entrypoint: 'web', host: 'extra.example.test', path: '/', pathMatch: 'prefix', service: 'app1' }],
  });
  agg.flush();
  plane.apply((last as NonNullable<typeof last>).table, last?.change);
  t.same(plane.lastSwap, { version: plane.current().version, mode: 'patch', services: 0, routers: true, routes: true });
  t.not(plane.current().routers, after.routers);
  t.equal(plane.current().sets, after.sets, 'no service changed: the very same sets map');

  // An entrypoint change makes the routers anew (an entrypoint without routes gets an empty one); the
  // route settings and sets stay.
  const withRoutes = plane.current();
  agg.change('file', 100, { entrypoints: { web: entrypoint('web', '127.0.0.1:0'), idle: entrypoint('idle', '127.0.0.1:0') } });
  agg.flush();
  plane.apply((last as NonNullable<typeof last>).table, last?.change);
  t.same(plane.lastSwap, { version: plane.current().version, mode: 'patch', services: 0, routers: true, routes: false });
  t.same(plane.describe().routers.idle, [], 'the new entrypoint has its (empty) router');
  t.equal(plane.current().routes, withRoutes.routes);
  t.equal(plane.current().sets, withRoutes.sets);

  // A change from a version the plane does not serve is not patched.
  const stale = plane.current().version;
  agg.change('file', 100, { upsert: { app5: { ...(snap.services.app5 as LocalService), endpoints: [] } } });
  const skipped = agg.flush();
  agg.change('file', 100, { upsert: { app6: { ...(snap.services.app6 as LocalService), endpoints: [] } } });
  agg.flush();
  t.equal(last?.change?.from, skipped.version);
  t.not(last?.change?.from, stale);
  plane.apply((last as NonNullable<typeof last>).table, last?.change);
  t.equal(plane.lastSwap?.mode, 'whole', 'a change from another version: the whole table');
  t.equal(plane.current().sets.get('app5@file')?.all.length, 0, 'and it has the skipped table’s change too');
});

t.test('real sockets: endpoint changes and services that come and go under kept routers', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', a.port)], { name: 'web' }) },
    routes: [
      { entrypoint: 'web', host: 'web.test', path: '/', pathMatch: 'prefix', service: 'web' },
      { entrypoint: 'web', host: 'late.test', path: '/', pathMatch: 'prefix', service: 'late' },
    ],
  });
  let last: { table: RoutingTable; change: TableChange | undefined } | undefined;
  h.agg.subscribe((table, _previous, change) => (last = { table, change }));
  const apply = (delta: SnapshotDelta): void => {
    h.agg.change('file', 100, delta);
    h.agg.flush();
    h.plane.apply((last as NonNullable<typeof last>).table, last?.change);
    t.equal(h.plane.lastSwap?.mode, 'patch');
  };
  const routers = h.plane.current().routers;
  const port = h.port();

  const access = (path: string) =>
    h.logs.lines.until((l) => l.component === 'access' && l.path === path, 5_000, `the access line of ${path}`);
  t.equal((await get(port, 'web.test')).header('x-backend'), 'a');
  t.equal((await get(port, 'late.test', '/missing')).status, 503, 'a route to a service no provider has: 503');
  t.equal((await access('/missing')).service, undefined, 'its access line names no service');

  apply({ upsert: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) } });
  const r1 = await get(port, 'web.test');
  t.equal(r1.status, 200);
  t.equal(r1.header('x-backend'), 'b', 'the endpoint change is served');

  apply({ upsert: { late: service([endpoint('127.0.0.1', a.port)], { name: 'late' }) } });
  const r2 = await get(port, 'late.test', '/x');
  t.equal(r2.status, 200, 'the service came: its route answers');
  t.equal(r2.header('x-backend'), 'a');
  t.equal(a.seen('/x').length, 1);
  t.equal((await access('/x')).service, 'late@file', 'its access line names the service');

  apply({ remove: ['late'] });
  t.equal((await get(port, 'late.test')).status, 503, 'the service went: 503 again');
  t.equal(h.plane.current().routers, routers, 'one router served all of it');
});

t.test('health checks of a patched service reach its new set', async (t) => {
  const good = await startBackend(t, 'good');
  const bad = await startBackend(t, 'bad', () => ({ status: 500 }));
  const fast: HealthCheck = { httpPath: '/healthz', expectStatus: [200, 399], intervalMs: 15, timeoutMs: 2_000, rise: 1, fall: 1 };
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', good.port)], { name: 'web', health: fast }) },
    routes: [{ entrypoint: 'web', host: 'web.test', path: '/', pathMatch: 'prefix', service: 'web' }],
  });
  let last: { table: RoutingTable; change: TableChange | undefined } | undefined;
  h.agg.subscribe((table, _previous, change) => (last = { table, change }));
  await good.requests.until((r) => r.target === '/healthz', 5_000, 'a first check of the good endpoint');

  h.agg.change('file', 100, {
    upsert: { web: service([endpoint('127.0.0.1', good.port), endpoint('127.0.0.1', bad.port)], { name: 'web', health: fast }) },
  });
  h.agg.flush();
  h.plane.apply((last as NonNullable<typeof last>).table, last?.change);
  t.equal(h.plane.lastSwap?.mode, 'patch');
  const set = h.plane.current().sets.get('web@file') as UpstreamSet;
  const badUp = set.get(`127.0.0.1:${bad.port}`);
  await bad.requests.until((r) => r.target === '/healthz', 5_000, 'a first check of the new endpoint');
  await waitFor(() => badUp?.activeHealthy === false, { timeoutMs: 5_000, what: 'the failing endpoint marked down in the set served now' });
  t.equal(set.get(`127.0.0.1:${good.port}`)?.activeHealthy, true, 'the good one stays up');
  const d = h.plane.describe();
  t.same(
    Object.fromEntries(d.sets['web@file']?.upstreams.map((u) => [u.key, u.activeHealthy]) ?? []),
    { [`127.0.0.1:${good.port}`]: true, [`127.0.0.1:${bad.port}`]: false },
    'describe shows the verdicts',
  );
  for (let i = 0; i < 4; i++) t.equal((await get(h.port(), 'web.test')).header('x-backend'), 'good', 'only the healthy endpoint is picked');
});

t.test('tls.auto without CA certificates: the development certificate follows route changes, not endpoint churn', async (t) => {
  const be = await startBackend(t, 'be');
  const route = (host: string) => ({ entrypoint: 'websecure', host, path: '/', pathMatch: 'prefix' as const, service: 'web' });
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', be.port)], { name: 'web' }) },
    routes: [route('a.test')],
    entrypoints: {
      websecure: { ...entrypoint('websecure', '127.0.0.1:0'), tls: { auto: true, certificates: [] } },
    },
  });
  let last: { table: RoutingTable; change: TableChange | undefined } | undefined;
  h.agg.subscribe((table, _previous, change) => (last = { table, change }));
  const apply = (delta: SnapshotDelta): void => {
    h.agg.change('file', 100, delta);
    h.agg.flush();
    h.plane.apply((last as NonNullable<typeof last>).table, last?.change);
  };
  const presented = async (): Promise<{ serial: string; names: string }> => {
    const c = await RawClient.connect(h.port('websecure'), { tls: { servername: 'a.test', rejectUnauthorized: false } });
    try {
      const cert = (c.socket as tls.TLSSocket).getPeerCertificate();
      return { serial: cert.serialNumber, names: cert.subjectaltname ?? '' };
    } finally {
      c.destroy();
    }
  };
  const first = await presented();
  t.equal(first.names, 'DNS:a.test');

  apply({ upsert: { web: service([endpoint('127.0.0.1', be.port, { weight: 2 })], { name: 'web' }) } });
  t.equal(h.plane.lastSwap?.mode, 'patch');
  t.same(await presented(), first, 'an endpoint change: the same certificate');

  apply({ upsertRoutes: [{ id: 'file/c', ...route('c.test') }] });
  t.equal(h.plane.lastSwap?.routes, true);
  const next = await presented();
  t.not(next.serial, first.serial, 'a new route host: a new development certificate');
  t.equal(next.names, 'DNS:a.test, DNS:c.test');
});
