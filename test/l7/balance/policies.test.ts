import t from 'tap';
import { p2cLoad, UNSAMPLED_PENALTY, UpstreamSet, type Upstream } from '../../../src/l7/balance/index.js';
import { Clock, ctx, ep, makeSet, options, sequence, service, tally } from './helpers.js';

const keys = (set: UpstreamSet): string[] => set.all.map((u) => u.key);
const up = (set: UpstreamSet, i: number): Upstream => set.all[i] as Upstream;

t.test('roundrobin: even, in order, skips unavailable, honours exclude', async (t) => {
  const { set } = makeSet([ep(1), ep(2), ep(3), ep(4)]);
  const c = ctx();
  const seq = Array.from({ length: 8 }, () => set.pick(c)?.key);
  t.same(seq, [...keys(set), ...keys(set)], 'strict rotation');
  t.same(Object.values(tally(() => set.pick(c), 4000)), [1000, 1000, 1000, 1000], 'even');

  up(set, 1).setActiveHealthy(false, 0);
  const counts = tally(() => set.pick(c), 3000);
  t.same(counts, { '10.0.0.1:8080': 1000, '10.0.0.3:8080': 1000, '10.0.0.4:8080': 1000 }, 'down one skipped, rest even');

  const ex = ctx({ exclude: up(set, 0) });
  for (let i = 0; i < 30; i++) if (set.pick(ex) === up(set, 0)) t.fail('picked the excluded upstream');
  t.equal(makeSet([ep(1)]).set.pick(ctx({ exclude: undefined }))?.key, '10.0.0.1:8080');
  const single = makeSet([ep(1)]).set;
  t.equal(single.pick(ctx({ exclude: up(single, 0) })), undefined, 'only the excluded one left → undefined');
});

t.test('weighted: smooth WRR — exact proportions per cycle, interleaved', async (t) => {
  const { set } = makeSet([ep(1, { weight: 5 }), ep(2, { weight: 1 }), ep(3, { weight: 1 })], { algorithm: 'weighted' });
  const c = ctx();
  const name = (u: Upstream | undefined): string => (u === up(set, 0) ? 'a' : u === up(set, 1) ? 'b' : u === up(set, 2) ? 'c' : '?');
  const cycle = Array.from({ length: 7 }, () => name(set.pick(c))).join(' ');
  t.equal(cycle, 'a a b a c a a', "nginx's sequence for {5,1,1}");
  for (let i = 0; i < 6; i++) t.equal(Array.from({ length: 7 }, () => name(set.pick(c))).join(' '), cycle, `cycle ${i + 2} repeats`);

  const weights = [7, 3, 2, 1, 1];
  const total = weights.reduce((a, b) => a + b, 0);
  const ws = makeSet(
    weights.map((w, i) => ep(i + 1, { weight: w })),
    { algorithm: 'weighted' },
  ).set;
  for (let cycleNo = 0; cycleNo < 5; cycleNo++) {
    const seq = Array.from({ length: total }, () => ws.all.indexOf(ws.pick(c) as Upstream));
    const counts = weights.map((_, i) => seq.filter((x) => x === i).length);
    t.same(counts, weights, `cycle ${cycleNo}: exact counts`);
    // Smooth: at every prefix of the cycle each upstream is within one pick of its ideal share,
    // and the heaviest (7/14) never runs more than twice in a row.
    let worst = 0;
    const running = weights.map(() => 0);
    seq.forEach((x, k) => {
      running[x]!++;
      weights.forEach((w, i) => (worst = Math.max(worst, Math.abs((running[i] as number) - ((k + 1) * w) / total))));
    });
    t.ok(worst < 1, `max deviation from ideal ${worst.toFixed(2)}`);
    let run = 0;
    let maxRun = 0;
    for (const x of seq) maxRun = Math.max(maxRun, (run = x === 0 ? run + 1 : 0));
    t.ok(maxRun <= 2, `heaviest upstream's longest burst ${maxRun}`);
  }
});

t.test('weighted: unavailable and excluded upstreams are left out of the cycle', async (t) => {
  const { set } = makeSet([ep(1, { weight: 3 }), ep(2, { weight: 1 }), ep(3, { weight: 2, health: 'draining' })], {
    algorithm: 'weighted',
  });
  t.same(
    tally(() => set.pick(ctx()), 400),
    { '10.0.0.1:8080': 300, '10.0.0.2:8080': 100 },
  );
  t.same(
    tally(() => set.pick(ctx({ exclude: up(set, 0) })), 10),
    { '10.0.0.2:8080': 10 },
  );
});

t.test('leastconn: fewest in flight; ties take turns; weights count', async (t) => {
  const { set } = makeSet([ep(1), ep(2), ep(3)], { algorithm: 'leastconn' });
  const c = ctx();
  up(set, 0).inflight = 3;
  up(set, 2).inflight = 2;
  for (let i = 0; i < 5; i++) t.equal(set.pick(c), up(set, 1), 'the idle one');
  up(set, 1).inflight = 5;
  t.equal(set.pick(c), up(set, 2));
  // ties: all equal → rotation
  for (const u of set.all) u.inflight = 1;
  t.same(
    tally(() => set.pick(c), 300),
    { '10.0.0.1:8080': 100, '10.0.0.2:8080': 100, '10.0.0.3:8080': 100 },
  );
  // picks track begin(): a burst of concurrent picks spreads evenly
  for (const u of set.all) u.inflight = 0;
  for (let i = 0; i < 9; i++) set.pick(c)?.begin();
  t.same(
    set.all.map((u) => u.inflight),
    [3, 3, 3],
  );
  t.equal(set.pick(ctx({ exclude: up(set, 0) })) === up(set, 0), false);
  // weight 2 takes twice the in-flight load
  const w = makeSet([ep(1, { weight: 2 }), ep(2)], { algorithm: 'leastconn' }).set;
  for (let i = 0; i < 30; i++) w.pick(c)?.begin();
  t.same(
    w.all.map((u) => u.inflight),
    [20, 10],
  );
});

t.test('p2c: two random choices, lower EWMA × (in flight + 1) wins', async (t) => {
  const clock = new Clock();
  // rnd 0.0 → index 0; 0.99 → last of the remaining
  const set = new UpstreamSet(service([ep(1), ep(2)], { algorithm: 'p2c' }), undefined, options(clock, { rnd: sequence(0, 0.99) }));
  const [fast, slow] = [up(set, 0), up(set, 1)];
  slow.observeLatency(100, clock.t);
  fast.observeLatency(10, clock.t);
  t.equal(set.pick(ctx()), fast, 'fast beats slow');
  fast.inflight = 20; // 10 × 21 = 210 > 100 × 1
  t.equal(set.pick(ctx()), slow, 'a loaded fast one loses to an idle slow one');
  fast.inflight = 5; // 60 < 100
  t.equal(set.pick(ctx()), fast);
  t.equal(set.pick(ctx({ exclude: fast })), slow, 'exclude leaves the other');

  // Over many picks with seeded randomness: 1 fast among 4 → picked whenever drawn (~1/2), not ~1/4.
  const big = makeSet([ep(1), ep(2), ep(3), ep(4)], { algorithm: 'p2c' }).set;
  big.all.forEach((u, i) => u.observeLatency(i === 2 ? 5 : 50, 0));
  const counts = tally(() => big.pick(ctx()), 10_000);
  const share = (counts['10.0.0.3:8080'] ?? 0) / 10_000;
  t.ok(share > 0.45 && share < 0.55, `fast share ${share}`);
  const others = ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.4:8080'].map((k) => (counts[k] ?? 0) / 10_000);
  for (const s of others) t.ok(s > 0.13 && s < 0.2, `slow share ${s} ≈ 1/6`);
  for (let i = 0; i < 200; i++) {
    const excl = big.all[i % 4] as Upstream;
    if (big.pick(ctx({ exclude: excl })) === excl) t.fail('p2c picked the excluded upstream');
  }
});

t.test('p2c: unsampled upstreams are tried when idle, penalised when busy', async (t) => {
  const { set } = makeSet([ep(1)]);
  const u = up(set, 0);
  t.equal(p2cLoad(u), 0);
  u.inflight = 2;
  t.equal(p2cLoad(u), UNSAMPLED_PENALTY + 2);
  u.observeLatency(20, 0);
  t.equal(p2cLoad(u), 60);
  // peak EWMA: a slower sample replaces at once, a faster one decays in
  u.observeLatency(200, 1);
  t.equal(u.ewmaMs, 200);
  u.observeLatency(10, 10_001);
  t.ok(u.ewmaMs < 200 * 0.5 && u.ewmaMs > 10, `decayed to ${u.ewmaMs.toFixed(1)}`);
  u.end(10_002);
  t.equal(u.inflight, 1, 'end without latency: no sample');
  t.ok(u.ewmaMs > 10);
});
