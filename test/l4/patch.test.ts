/**
 * The L4 plane patched table by table against the same plane compiled from scratch. Tables and their
 * changes come from the real Aggregator, fed a seeded random history by two providers (shared endpoints,
 * IP and named VIPs on tcp and udp, conflicting VIP claims, SNI-passthrough entrypoints and their routes,
 * balance labels, health settings); after every table the patched plane must describe and inspect the same
 * as a fresh plane started on that table. Then: an endpoint change recompiles nothing else, active-check
 * verdicts of unchanged endpoints survive a patch, and a patched pool serves real connections.
 */
import t from 'tap';
import { Aggregator } from '../../src/aggregator/index.js';
import { createL4Plane, type L4Plane } from '../../src/l4/index.js';
import type { ConnectProbe } from '../../src/l4/health.js';
import type { L4Inspection, L4Work } from '../../src/l4/plane.js';
import type { Endpoint, Entrypoint, HealthCheck, RoutingTable, Snapshot, SnapshotDelta, TableChange, Vip } from '../../src/model/types.js';
import { Recorder } from '../helpers/wait.js';
import { exchange, FAST, tagServer } from './helpers.js';

type LocalService = Snapshot['services'][string];
type SnapRoute = Snapshot['routes'][number] & { id: string };

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** The tables an aggregator publishes, each with the change from the one before. */
function feed(): { agg: Aggregator; next: () => { table: RoutingTable; change: TableChange | undefined } | undefined } {
  const agg = new Aggregator({ debounceMs: 60_000, maxDelayMs: 60_000 });
  let last: { table: RoutingTable; change: TableChange | undefined } | undefined;
  agg.subscribe((table, _previous, change) => {
    last = { table, change };
  });
  return {
    agg,
    next: () => {
      last = undefined;
      agg.flush();
      return last;
    },
  };
}

/** A probe that never answers: endpoints are put under check, no verdict ever arrives. */
const silentProbe: ConnectProbe = () => ({ cancel: () => {} });

function plane(probe: ConnectProbe = silentProbe): L4Plane {
  return createL4Plane({
    listenAddress: '127.0.0.1',
    options: {
      ...FAST,
      maglevTableSize: 251,
      healthCheck: { enabled: true, intervalMs: 2_000, timeoutMs: 500, rise: 2, fall: 2 },
    },
    probe,
  });
}

/** What a plane serves, without what differs between two planes on the same table: ephemeral ports, work counters. */
function served(p: L4Plane): { describe: unknown; inspect: Omit<L4Inspection, 'work'>; listeners: string[] } {
  const port = (s: string) => s.replace(/:\d+$/, ':*');
  const d = p.describe();
  const { work: _work, ...inspect } = p.inspect();
  return {
    describe: {
      ...d,
      vips: d.vips.map((v) => ({ ...v, listener: v.listener && port(v.listener) })),
      sni: d.sni.map((s) => ({ ...s, listener: s.listener && port(s.listener) })),
    },
    inspect,
    listeners: p.status().listeners.map(port).sort(),
  };
}

// ---- the random history

const NAMES = ['web', 'api', 'db', 'cache', 'auth', 'idle'];
const HOSTS = ['a.test', 'b.test', '*.w.test', '*'];
const VIP_ADDRESSES = ['10.77.0.1', '10.77.0.2', '10.77.0.3', '127.0.0.1'];
const BALANCES = [undefined, 'maglev', 'leastconn', 'roundrobin'];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] as T;
}

function endpoint(r: () => number): Endpoint {
  const roll = r();
  return {
    address: `127.0.0.${1 + Math.floor(r() * 3)}`,
    port: 9001 + Math.floor(r() * 3),
    weight: roll < 0.1 ? 0 : 1 + Math.floor(r() * 3),
    health: roll < 0.2 ? 'unhealthy' : roll < 0.3 ? 'draining' : roll < 0.6 ? 'unknown' : 'healthy',
    labels: {},
  };
}

function vips(r: () => number): Vip[] {
  const out: Vip[] = [];
  const n = Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    if (r() < 0.2) out.push({ name: pick(r, NAMES), port: 80, protocol: 'tcp' });
    else {
      const v: Vip = { address: pick(r, VIP_ADDRESSES), port: 0, protocol: r() < 0.7 ? 'tcp' : 'udp' };
      if (r() < 0.2) v.proxyProtocol = 'v1';
      out.push(v);
    }
  }
  return out;
}

function health(r: () => number): HealthCheck | undefined {
  if (r() < 0.6) return undefined;
  return { expectStatus: [200, 399], intervalMs: pick(r, [1_000, 2_000, 5_000]), timeoutMs: pick(r, [300, 500]), rise: 1, fall: 2 };
}

function service(r: () => number, name: string): LocalService {
  const s: LocalService = {
    name,
    framework: 'marathon',
    endpoints: Array.from({ length: Math.floor(r() * 4) }, () => endpoint(r)),
    balance: { algorithm: r() < 0.8 ? 'roundrobin' : 'leastconn' },
    vips: vips(r),
    labels: {},
  };
  const b = pick(r, BALANCES);
  if (b) s.labels = { PORTICO_L4_BALANCE: b };
  const h = health(r);
  if (h) s.health = h;
  return s;
}

/** The same service with one endpoint added, removed, replaced, reweighted or re-health'd: a new object. */
function endpointChange(r: () => number, s: LocalService): LocalService {
  const eps = [...s.endpoints];
  const roll = r();
  const i = Math.floor(r() * eps.length);
  if (eps.length === 0 || roll < 0.3) eps.push(endpoint(r));
  else if (roll < 0.5) eps.splice(i, 1);
  else if (roll < 0.7) eps[i] = endpoint(r);
  else if (roll < 0.85) eps[i] = { ...(eps[i] as Endpoint), weight: Math.floor(r() * 4) };
  else eps[i] = { ...(eps[i] as Endpoint), health: pick(r, ['healthy', 'unhealthy', 'draining', 'unknown'] as const) };
  return { ...s, endpoints: eps };
}

function entrypoints(r: () => number, provider: string): Record<string, Entrypoint> {
  const out: Record<string, Entrypoint> = {};
  for (const name of provider === 'a' ? ['tls', 'web'] : ['tls', 'tls2']) {
    if (r() < 0.2) continue;
    const passthrough = name !== 'web' && r() < 0.8;
    out[name] = {
      name,
      listen: r() < 0.1 ? 'nowhere' : '127.0.0.1:0',
      trustedProxies: [],
      ...(passthrough || r() < 0.3 ? { tls: { auto: false, certificates: [], passthrough } } : {}),
    };
  }
  return out;
}

function route(r: () => number, provider: string, i: number): SnapRoute {
  return {
    id: `${provider}/r${i}`,
    entrypoint: pick(r, ['tls', 'tls2', 'web']),
    host: pick(r, HOSTS),
    path: '/',
    pathMatch: 'prefix',
    service: pick(r, NAMES),
  };
}

interface Provider {
  name: string;
  priority: number;
  snap: Omit<Snapshot, 'routes'> & { routes: SnapRoute[] };
  nextRoute: number;
}

function provider(r: () => number, name: string, priority: number): Provider {
  const services: Snapshot['services'] = {};
  for (const n of NAMES) if (r() < 0.7) services[n] = service(r, n);
  const routes = Array.from({ length: 3 }, (_, i) => route(r, name, i));
  return { name, priority, snap: { provider: name, services, routes, entrypoints: entrypoints(r, name) }, nextRoute: 3 };
}

/** One random step of a provider's knowledge, sent as a delta or as its whole new snapshot; returns what it did. */
function step(r: () => number, agg: Aggregator, p: Provider): string {
  const snap = p.snap;
  const roll = r();
  const name = pick(r, NAMES);
  const had = snap.services[name];
  const services = { ...snap.services };
  let what: string;
  const delta: SnapshotDelta = {};
  if (roll < 0.5) {
    const s = had ? endpointChange(r, had) : service(r, name);
    services[name] = s;
    delta.upsert = { [name]: s };
    what = `endpoints of ${name}`;
  } else if (roll < 0.6) {
    if (had) {
      delete services[name];
      delta.remove = [name];
    } else {
      services[name] = service(r, name);
      delta.upsert = { [name]: services[name] as LocalService };
    }
    what = `${had ? 'remove' : 'add'} ${name}`;
  } else if (roll < 0.7) {
    const s = { ...(had ?? service(r, name)), vips: vips(r) };
    services[name] = s;
    delta.upsert = { [name]: s };
    what = `vips of ${name}`;
  } else if (roll < 0.8) {
    const s = service(r, name);
    services[name] = { ...s, endpoints: had?.endpoints ?? s.endpoints, vips: had?.vips ?? s.vips };
    delta.upsert = { [name]: services[name] as LocalService };
    what = `balance/health of ${name}`;
  } else if (roll < 0.9) {
    if (snap.routes.length > 0 && r() < 0.4) {
      const gone = pick(r, snap.routes);
      snap.routes = snap.routes.filter((x) => x !== gone);
      delta.removeRoutes = [gone.id];
      what = `remove route ${gone.id}`;
    } else {
      const added = route(r, p.name, p.nextRoute++);
      snap.routes = [...snap.routes, added];
      delta.upsertRoutes = [added];
      what = `add route ${added.id}`;
    }
  } else {
    snap.entrypoints = entrypoints(r, p.name);
    delta.entrypoints = snap.entrypoints;
    what = 'entrypoints';
  }
  snap.services = services;
  if (r() < 0.25) {
    // The whole snapshot: the aggregator diffs it against the last one (unchanged services are the same objects).
    agg.update(p.name, p.priority, { ...snap, routes: [...snap.routes] });
    return `${what} (snapshot)`;
  }
  agg.change(p.name, p.priority, delta);
  return what;
}

t.test('patched table by table, the plane serves what a plane started on each table serves', async (t) => {
  const SEED = 15;
  const STEPS = 160;
  const r = rng(SEED);
  const { agg, next } = feed();
  t.teardown(() => agg.close());
  const providers = [provider(r, 'a', 2), provider(r, 'b', 1)];
  for (const p of providers) agg.update(p.name, p.priority, { ...p.snap, routes: [...p.snap.routes] });
  const first = next();
  t.ok(first, 'a first table');
  const patched = plane();
  t.teardown(() => patched.stop(0));
  await patched.start((first as { table: RoutingTable }).table);

  let compared = 0;
  let skipped = false;
  for (let i = 0; i < STEPS; i++) {
    const what = providers.map((p) => (r() < 0.6 || p === providers[0] ? step(r, agg, p) : '')).filter(Boolean);
    const got = next();
    if (!got) continue;
    const roll = r();
    if (roll < 0.06 && !skipped) {
      // This table never reaches the plane: the next change starts from a version it does not serve.
      skipped = true;
      continue;
    }
    skipped = false;
    patched.apply(got.table, roll < 0.1 ? undefined : got.change);
    await patched.settled();
    patched.tick();
    const fresh = plane();
    await fresh.start(got.table);
    fresh.tick();
    const a = served(patched);
    const b = served(fresh);
    await fresh.stop(0);
    compared++;
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      t.same(a, b, `seed ${SEED} step ${i} (v${got.table.version}: ${what.join('; ')}): patched = fresh`);
      break;
    }
  }
  const work = patched.inspect().work;
  t.ok(compared > STEPS * 0.7, `${compared} tables compared`);
  t.ok(work.patched > compared / 2, `most were patched (${work.patched} patched, ${work.full} whole)`);
  t.ok(work.full > 3, 'some were taken whole (no change, or a change from a skipped version)');
  t.ok(work.frontCompiles < work.full + work.patched, `fronts were compiled for fewer tables (${work.frontCompiles})`);
  const last = patched.inspect();
  t.ok(last.fronts.length > 0 && last.pools.length > 0 && last.checks.length > 0, 'the last table has fronts, pools and checks');
});

// ---- what an endpoint change costs

function diff(after: L4Work, before: L4Work): L4Work {
  return {
    full: after.full - before.full,
    patched: after.patched - before.patched,
    frontCompiles: after.frontCompiles - before.frontCompiles,
    poolUpdates: after.poolUpdates - before.poolUpdates,
    selectorBuilds: after.selectorBuilds - before.selectorBuilds,
  };
}

function ep(i: number, port = 9000): Endpoint {
  return { address: `10.1.${i >> 8}.${i & 255}`, port, weight: 1, health: 'healthy', labels: {} };
}

t.test('an endpoint change updates that service’s pool and nothing else', async (t) => {
  const ROUTED = 300;
  const snap: Snapshot = {
    provider: 'p',
    services: {},
    routes: [],
    entrypoints: {
      tls: { name: 'tls', listen: '127.0.0.1:0', trustedProxies: [], tls: { auto: false, certificates: [], passthrough: true } },
    },
  };
  for (let i = 0; i < ROUTED; i++) {
    const name = `s${i}`;
    snap.services[name] = {
      name,
      framework: 'marathon',
      endpoints: [ep(i * 3), ep(i * 3 + 1), ep(i * 3 + 2)],
      balance: { algorithm: 'roundrobin' },
      vips: i < 5 ? [{ address: `10.88.0.${i}`, port: 0, protocol: 'tcp' }] : [],
      labels: {},
    };
    snap.routes.push({ entrypoint: 'tls', host: `s${i}.test`, path: '/', pathMatch: 'prefix', service: name });
  }
  snap.services.unused = { ...(snap.services.s0 as LocalService), name: 'unused', vips: [] };
  const { agg, next } = feed();
  t.teardown(() => agg.close());
  agg.update('p', 1, snap);
  const p = plane();
  t.teardown(() => p.stop(0));
  await p.start(next()?.table as RoutingTable);
  const before = p.inspect();
  t.equal(before.pools.length, ROUTED, 'a pool per routed service');
  t.same(diff(before.work, { full: 0, patched: 0, frontCompiles: 0, poolUpdates: 0, selectorBuilds: 0 }), {
    full: 1,
    patched: 0,
    frontCompiles: 1,
    poolUpdates: ROUTED,
    selectorBuilds: ROUTED,
  });

  const s7 = snap.services.s7 as LocalService;
  agg.change('p', 1, { upsert: { s7: { ...s7, endpoints: [ep(7 * 3), ep(7 * 3 + 1), ep(9999)] } } });
  const one = next();
  t.same(one?.change && { ...one.change, upserted: [...one.change.upserted] }, {
    from: before.version,
    upserted: ['s7@p'],
    removed: [],
    routes: false,
    entrypoints: false,
    vips: false,
  });
  p.apply(one?.table as RoutingTable, one?.change);
  const after = p.inspect();
  t.same(
    diff(after.work, before.work),
    { full: 0, patched: 1, frontCompiles: 0, poolUpdates: 1, selectorBuilds: 1 },
    'one pool, one selector',
  );
  t.same(after.fronts, before.fronts, 'fronts as they were');
  const changed = after.pools.filter((x, i) => JSON.stringify(x) !== JSON.stringify(before.pools[i]));
  t.same(
    changed.map((x) => [x.service, x.selection]),
    [['s7@p', 'maglev|10.1.0.21:9000*1,10.1.0.22:9000*1,10.1.39.15:9000*1']],
    'only s7’s pool changed',
  );
  t.ok(
    after.checks.some((c) => c.endpoint === '10.1.39.15:9000'),
    'the new endpoint is checked',
  );
  t.notOk(
    after.checks.some((c) => c.endpoint === '10.1.0.23:9000'),
    'the one that left is no longer checked',
  );
  t.ok(after.backends.includes('10.1.0.23:9000'), 'it stays a member (draining) until the tick prunes it');
  p.tick();
  t.notOk(p.inspect().backends.includes('10.1.0.23:9000'), 'pruned');

  agg.change('p', 1, { upsert: { unused: { ...(snap.services.unused as LocalService), endpoints: [ep(5000)] } } });
  const idle = next();
  const w0 = p.inspect().work;
  p.apply(idle?.table as RoutingTable, idle?.change);
  t.same(
    diff(p.inspect().work, w0),
    { full: 0, patched: 1, frontCompiles: 0, poolUpdates: 0, selectorBuilds: 0 },
    'a service no front uses costs nothing',
  );

  agg.change('p', 1, {
    upsertRoutes: [{ id: 'p/new', entrypoint: 'tls', host: 'unused.test', path: '/', pathMatch: 'prefix', service: 'unused' }],
  });
  const routed = next();
  const w1 = p.inspect().work;
  p.apply(routed?.table as RoutingTable, routed?.change);
  await p.settled();
  t.same(
    diff(p.inspect().work, w1),
    { full: 0, patched: 1, frontCompiles: 1, poolUpdates: 1, selectorBuilds: 1 },
    'a new route: fronts compiled again, and only the newly routed service’s pool filled',
  );

  agg.change('p', 1, { upsert: { s8: { ...(snap.services.s8 as LocalService), endpoints: [ep(8 * 3)] } } });
  const missed = next();
  agg.change('p', 1, { upsert: { s9: { ...(snap.services.s9 as LocalService), endpoints: [ep(9 * 3)] } } });
  const later = next();
  t.equal(later?.change?.from, missed?.table.version, 'the second change starts from the table the plane never got');
  const w2 = p.inspect().work;
  p.apply(later?.table as RoutingTable, later?.change);
  await p.settled();
  t.same(
    diff(p.inspect().work, w2),
    { full: 1, patched: 0, frontCompiles: 1, poolUpdates: ROUTED + 1, selectorBuilds: 2 },
    'a change from another version: compiled whole (selectors rebuilt only where the set changed)',
  );
  t.equal(p.inspect().version, later?.table.version);
});

t.test('active-check verdicts of unchanged endpoints survive a patch', async (t) => {
  const up = new Set([9102, 9103]);
  const probes = new Recorder<string>();
  const probe: ConnectProbe = (address, port, _timeoutMs, done) => {
    const timer = setImmediate(() => {
      done(up.has(port), up.has(port) ? undefined : 'ECONNREFUSED');
      probes.push(`${address}:${port}`);
    });
    return { cancel: () => clearImmediate(timer) };
  };
  const e = (port: number): Endpoint => ({ address: '127.0.0.1', port, weight: 1, health: 'healthy', labels: {} });
  const checked: HealthCheck = { expectStatus: [200, 399], intervalMs: 60_000, timeoutMs: 1_000, rise: 1, fall: 1 };
  const web: LocalService = {
    name: 'web',
    framework: 'marathon',
    endpoints: [e(9101), e(9102)],
    balance: { algorithm: 'roundrobin' },
    health: checked,
    vips: [{ address: '10.99.0.1', port: 0, protocol: 'tcp' }],
    labels: {},
  };
  const { agg, next } = feed();
  t.teardown(() => agg.close());
  agg.update('p', 1, { provider: 'p', services: { web }, routes: [], entrypoints: {} });
  const p = plane(probe);
  t.teardown(() => p.stop(0));
  await p.start(next()?.table as RoutingTable);
  await probes.until((k) => k === '127.0.0.1:9101', 5_000, 'the first check of :9101');
  await probes.until((k) => k === '127.0.0.1:9102', 5_000, 'the first check of :9102');
  const state = () =>
    Object.fromEntries((p.describe().vips[0]?.endpoints ?? []).map((x) => [x.port, `${x.activeCheck}/${x.state}`] as const));
  t.same(state(), { 9101: 'down/down', 9102: 'up/serving' }, 'verdicts in');

  agg.change('p', 1, { upsert: { web: { ...web, endpoints: [e(9101), e(9102), e(9103)] } } });
  const added = next();
  p.apply(added?.table as RoutingTable, added?.change);
  t.same(state(), { 9101: 'down/down', 9102: 'up/serving', 9103: 'none/serving' }, 'kept through the patch; the new one has none yet');
  t.equal(p.inspect().work.patched, 1, 'the table was patched');
  await probes.until((k) => k === '127.0.0.1:9103', 5_000, 'the first check of :9103');
  t.same(state(), { 9101: 'down/down', 9102: 'up/serving', 9103: 'up/serving' });
  t.same([...probes.items].sort(), ['127.0.0.1:9101', '127.0.0.1:9102', '127.0.0.1:9103'], 'one check each so far');

  agg.change('p', 1, { upsert: { web: { ...web, endpoints: [e(9102), e(9103)] } } });
  const removed = next();
  p.apply(removed?.table as RoutingTable, removed?.change);
  t.same(
    p.inspect().checks.map((c) => c.endpoint),
    ['127.0.0.1:9102', '127.0.0.1:9103'],
    'the endpoint that left is no longer checked',
  );
  t.same(state(), { 9101: 'none/draining', 9102: 'up/serving', 9103: 'up/serving' }, 'it drains without a verdict');
});

t.test('a patched pool serves real connections on the listener it had', async (t) => {
  const a = await tagServer(t, 'A');
  const b = await tagServer(t, 'B');
  const e = (port: number): Endpoint => ({ address: '127.0.0.1', port, weight: 1, health: 'healthy', labels: {} });
  const web: LocalService = {
    name: 'web',
    framework: 'marathon',
    endpoints: [e(a.port)],
    balance: { algorithm: 'roundrobin' },
    vips: [{ address: '10.99.0.2', port: 0, protocol: 'tcp' }],
    labels: {},
  };
  const { agg, next } = feed();
  t.teardown(() => agg.close());
  agg.update('p', 1, { provider: 'p', services: { web }, routes: [], entrypoints: {} });
  const p = plane();
  t.teardown(() => p.stop(0));
  await p.start(next()?.table as RoutingTable);
  const at = p.address('tcp/10.99.0.2:0');
  t.ok(at, 'the VIP is served');
  t.equal((await exchange(at?.port as number, '')).toString(), 'A\n');

  agg.change('p', 1, { upsert: { web: { ...web, endpoints: [e(b.port)] } } });
  const moved = next();
  p.apply(moved?.table as RoutingTable, moved?.change);
  await p.settled();
  t.same(p.address('tcp/10.99.0.2:0'), at, 'same listener');
  t.equal((await exchange(at?.port as number, '')).toString(), 'B\n', 'the new endpoint serves');
  t.equal(b.accepted, 1);
  t.same(p.inspect().work, { full: 1, patched: 1, frontCompiles: 1, poolUpdates: 2, selectorBuilds: 2 });
});
