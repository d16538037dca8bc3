import t from 'tap';
import { buildUpstreamSets, slowStartFactor, UpstreamSet, type Upstream } from '../../../src/l7/balance/index.js';
import type { BalanceAlgorithm, Balance, RoutingTable } from '../../../src/model/types.js';
import { ServiceMap } from '../../../src/model/service-map.js';
import { Clock, ctx, ep, options, service, TestContext } from './helpers.js';

const ALL: Balance[] = [
  { algorithm: 'roundrobin' },
  { algorithm: 'weighted' },
  { algorithm: 'leastconn' },
  { algorithm: 'p2c' },
  { algorithm: 'hash', hashOn: { kind: 'header', name: 'x-k' } },
  { algorithm: 'sticky' },
];

t.test('availability: unhealthy, draining, weight 0, active down and ejected are skipped by every policy', async (t) => {
  for (const balance of ALL) {
    const clock = new Clock();
    const set = new UpstreamSet(
      service(
        [
          ep(1, { health: 'healthy' }),
          ep(2, { health: 'unknown' }),
          ep(3, { health: 'unhealthy' }),
          ep(4, { health: 'draining' }),
          ep(5, { weight: 0 }),
          ep(6),
          ep(7),
        ],
        balance,
      ),
      undefined,
      options(clock),
    );
    (set.get('10.0.0.6:8080') as Upstream).setActiveHealthy(false, clock.t);
    (set.get('10.0.0.7:8080') as Upstream).setEjectedUntil(clock.t + 5000);
    t.same(
      set.available().map((u) => u.key),
      ['10.0.0.1:8080', '10.0.0.2:8080'],
      `${balance.algorithm}: available()`,
    );
    const c = new TestContext();
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const u = set.pick(c.set({ ip: `192.0.2.${i}`, headers: { 'x-k': `k${i}` } }));
      seen.add(u?.key ?? 'none');
    }
    t.same([...seen].sort(), ['10.0.0.1:8080', '10.0.0.2:8080'], `${balance.algorithm}: picks only available ones`);

    clock.advance(5000);
    t.ok(
      set.available().some((u) => u.key === '10.0.0.7:8080'),
      `${balance.algorithm}: ejection expires by itself`,
    );

    for (const u of set.all) u.setActiveHealthy(false, clock.t);
    t.equal(
      set.pick(c.set({ ip: '192.0.2.1', headers: { 'x-k': 'a', cookie: 'portico_sticky=x' } })),
      undefined,
      `${balance.algorithm}: all unavailable → undefined`,
    );
    t.equal(
      new UpstreamSet(service([], balance), undefined, options(clock)).pick(ctx()),
      undefined,
      `${balance.algorithm}: no endpoints → undefined`,
    );
  }
});

t.test('available() is cached until availability changes', async (t) => {
  const clock = new Clock();
  const set = new UpstreamSet(service([ep(1), ep(2)]), undefined, options(clock));
  const a = set.available();
  t.equal(set.available(), a, 'same array while nothing changes');
  (set.all[0] as Upstream).setActiveHealthy(false, clock.t);
  const b = set.available();
  t.not(b, a);
  t.same(
    b.map((u) => u.key),
    ['10.0.0.2:8080'],
  );
  (set.all[0] as Upstream).setActiveHealthy(true, clock.t);
  t.equal(set.available().length, 2);
});

t.test('slow start: 10% → 100% linearly over the window', async (t) => {
  const clock = new Clock();
  const set = new UpstreamSet(service([ep(1)]), undefined, options(clock, { slowStartMs: 10_000 }));
  const u = set.all[0] as Upstream;
  const at = (ms: number): number => slowStartFactor(u, u.warmSince + ms, 10_000);
  t.equal(at(0), 0.1);
  t.equal(at(5000), 0.55);
  t.equal(at(9999) < 1, true);
  t.equal(at(10_000), 1);
  t.equal(at(60_000), 1);
  t.equal(slowStartFactor(u, u.warmSince, 0), 1, 'disabled');
  // coming back up from active down restarts the ramp
  clock.advance(20_000);
  u.setActiveHealthy(false, clock.t);
  clock.advance(1000);
  u.setActiveHealthy(true, clock.t);
  t.equal(slowStartFactor(u, clock.t, 10_000), 0.1);
});

t.test('slow start: a new endpoint’s share ramps under weighted, leastconn and p2c', async (t) => {
  const share = (algorithm: BalanceAlgorithm, afterMs: number): number => {
    const clock = new Clock();
    const opts = options(clock, { slowStartMs: 10_000 });
    const old = new UpstreamSet(service([ep(1), ep(2)], { algorithm }), undefined, opts);
    clock.advance(60_000);
    const set = new UpstreamSet(service([ep(1), ep(2), ep(3)], { algorithm }), old, opts);
    clock.advance(afterMs);
    const fresh = set.get('10.0.0.3:8080') as Upstream;
    for (const u of set.all) u.observeLatency(10, clock.t);
    let n = 0;
    const N = 2100;
    const c = ctx();
    const open: Upstream[] = [];
    for (let i = 0; i < N; i++) {
      const u = set.pick(c) as Upstream;
      if (u === fresh) n++;
      if (algorithm !== 'weighted') {
        // keep a steady concurrency of 20 so load-aware policies see load
        u.begin();
        open.push(u);
        if (open.length > 20) open.shift()?.end(clock.t);
      }
    }
    return n / N;
  };
  // weighted: exact 0.1 / 2.1, 0.55 / 2.55, 1 / 3
  t.ok(Math.abs(share('weighted', 0) - 0.1 / 2.1) < 0.005, `weighted at 0 s: ${share('weighted', 0).toFixed(3)}`);
  t.ok(Math.abs(share('weighted', 5000) - 0.55 / 2.55) < 0.005, `weighted at 5 s: ${share('weighted', 5000).toFixed(3)}`);
  t.ok(Math.abs(share('weighted', 10_000) - 1 / 3) < 0.005, `weighted at 10 s: ${share('weighted', 10_000).toFixed(3)}`);
  for (const alg of ['leastconn', 'p2c'] as const) {
    const s0 = share(alg, 0);
    const s5 = share(alg, 5000);
    const s10 = share(alg, 10_000);
    t.ok(s0 < s5 && s5 < s10, `${alg}: ${s0.toFixed(3)} < ${s5.toFixed(3)} < ${s10.toFixed(3)}`);
    t.ok(s0 < 0.15, `${alg}: starts small`);
    t.ok(Math.abs(s10 - 1 / 3) < 0.06, `${alg}: full share after the window`);
  }
  // the first table's endpoints all start together: equal shares, no ramp visible
  const clock = new Clock();
  const first = new UpstreamSet(service([ep(1), ep(2)], { algorithm: 'weighted' }), undefined, options(clock, { slowStartMs: 10_000 }));
  const c = ctx();
  const picks = Array.from({ length: 100 }, () => first.pick(c)?.key);
  t.equal(picks.filter((k) => k === '10.0.0.1:8080').length, 50);
});

function tableOf(services: Record<string, ReturnType<typeof service>>): Pick<RoutingTable, 'services'> {
  return { services: ServiceMap.from(services) };
}

t.test('UpstreamSet reuse across tables keeps in-flight, health, latency and slow start', async (t) => {
  const clock = new Clock();
  const opts = options(clock, { slowStartMs: 10_000 });
  const t1 = buildUpstreamSets(tableOf({ 'web@test': service([ep(1), ep(2)]) }), undefined, opts);
  const s1 = t1.get('web@test') as UpstreamSet;
  const a = s1.get('10.0.0.1:8080') as Upstream;
  a.begin();
  a.begin();
  a.begin();
  a.setActiveHealthy(false, clock.t);
  a.observeLatency(42, clock.t);
  a.consecutiveFailures = 2;
  clock.advance(3000);

  const t2 = buildUpstreamSets(tableOf({ 'web@test': service([ep(1, { weight: 3 }), ep(3)]) }), t1, opts);
  const s2 = t2.get('web@test') as UpstreamSet;
  t.not(s2, s1, 'changed service → new set');
  const a2 = s2.get('10.0.0.1:8080') as Upstream;
  t.equal(a2, a, 'same Upstream object');
  t.equal(a2.inflight, 3);
  t.equal(a2.activeHealthy, false);
  t.equal(a2.ewmaMs, 42);
  t.equal(a2.consecutiveFailures, 2);
  t.equal(a2.weight, 3, 'weight from the new table');
  t.equal(a2.addedAt, clock.t - 3000, 'slow start keeps its progress');
  t.equal(a2.group, s2, 'points at its current set');
  t.equal(s2.get('10.0.0.2:8080'), undefined, 'removed endpoint gone');
  const c3 = s2.get('10.0.0.3:8080') as Upstream;
  t.equal(c3.addedAt, clock.t, 'new endpoint starts its ramp now');
  t.same(
    s2.available().map((u) => u.key),
    ['10.0.0.3:8080'],
  );
  // a request that started on the old table finishes on the shared object
  a.end(clock.t, 5);
  t.equal(a2.inflight, 2);

  // unchanged service → the very same set (balancer position kept); other services unaffected
  const t3 = buildUpstreamSets(
    tableOf({ 'web@test': service([ep(1, { weight: 3 }), ep(3)]), 'api@test': service([ep(9)], undefined, 'api@test') }),
    t2,
    opts,
  );
  t.equal(t3.get('web@test'), s2);
  t.ok(t3.get('api@test'));
  // a service that disappears and returns starts afresh
  const t4 = buildUpstreamSets(tableOf({ 'api@test': service([ep(9)], undefined, 'api@test') }), t3, opts);
  t.equal(t4.has('web@test'), false);
  t.equal(t4.get('api@test'), t3.get('api@test'));
  // a balance change rebuilds the set but keeps the upstreams
  const t5 = buildUpstreamSets(tableOf({ 'api@test': service([ep(9)], { algorithm: 'p2c' }, 'api@test') }), t4, opts);
  t.not(t5.get('api@test'), t4.get('api@test'));
  t.equal(t5.get('api@test')?.all[0], t4.get('api@test')?.all[0]);
  t.equal(t5.get('api@test')?.balancer.algorithm, 'p2c');

  t.match(s2.stats(), { serviceId: 'web@test', algorithm: 'roundrobin', total: 2, available: 1, inflight: 2 });
});

t.test('duplicate endpoints and IPv6 keys', async (t) => {
  const clock = new Clock();
  const set = new UpstreamSet(service([ep('fd00::1'), ep('fd00::1'), ep(1)]), undefined, options(clock));
  t.same(
    set.all.map((u) => u.key),
    ['[fd00::1]:8080', '10.0.0.1:8080'],
  );
});
