import t from 'tap';
import { resolveBalanceOptions, Upstream, UpstreamSet } from '../../../src/l7/balance/index.js';
import { OutlierDetector, type EjectionEvent } from '../../../src/l7/health/index.js';
import type { Endpoint } from '../../../src/model/types.js';
import { svc } from './helpers.js';

class Clock {
  t = 1_000_000;
  readonly now = (): number => this.t;
}

const ep = (i: number, extra: Partial<Endpoint> = {}): Endpoint => ({
  address: `10.0.0.${i}`,
  port: 80,
  weight: 1,
  health: 'healthy',
  labels: {},
  ...extra,
});

function setOf(n: number, clock: Clock, extra: Array<Partial<Endpoint>> = []): UpstreamSet {
  const eps = Array.from({ length: n }, (_, i) => ep(i + 1, extra[i] ?? {}));
  return new UpstreamSet(svc('web@test', eps), undefined, resolveBalanceOptions({ now: clock.now, slowStartMs: 0 }));
}

const fail = (d: OutlierDetector, u: Upstream, times: number): boolean[] => Array.from({ length: times }, () => d.recordResult(u, false));

t.test('N consecutive failures eject; a success in between resets the count', async (t) => {
  const clock = new Clock();
  const set = setOf(4, clock);
  const events: EjectionEvent[] = [];
  const d = new OutlierDetector({ onEject: (e) => events.push(e) });
  const u = set.all[0] as Upstream;
  fail(d, u, 4);
  d.recordResult(u, true);
  t.same(fail(d, u, 4), [false, false, false, false], 'reset by a success');
  t.equal(d.recordResult(u, false), true, '5th in a row ejects');
  t.equal(u.passiveEjectedUntil, clock.t + 10_000);
  t.same(events, [{ serviceId: 'web@test', key: '10.0.0.1:80', durationMs: 10_000, ejections: 1 }]);
  t.notOk(set.available().includes(u), 'balancers skip it');
  t.equal(set.pick({ clientIp: '', header: () => undefined, cookie: () => undefined }) === u, false);
  t.same(fail(d, u, 10).filter(Boolean), [], 'late failures while ejected do not re-eject');
  clock.t += 10_000;
  t.ok(set.available().includes(u), 'back after the ejection time, with no timer');
  t.match(d.stats(), { resultsTotal: 20, failuresTotal: 19, ejectionsTotal: 1, ejectionsRefusedTotal: 0 });
  t.equal(u.failuresTotal, 19);
});

t.test('repeated ejections double up to the cap, and start over after a quiet spell', async (t) => {
  const clock = new Clock();
  const set = setOf(4, clock);
  const d = new OutlierDetector({ consecutiveFailures: 2, baseEjectionMs: 1000, maxEjectionMs: 5000 });
  const u = set.all[0] as Upstream;
  const durations: number[] = [];
  for (let i = 0; i < 5; i++) {
    fail(d, u, 2);
    durations.push(u.passiveEjectedUntil - clock.t);
    clock.t = u.passiveEjectedUntil;
  }
  t.same(durations, [1000, 2000, 4000, 5000, 5000]);
  clock.t += 5001; // longer than maxEjectionMs since the last ejection ended
  fail(d, u, 2);
  t.equal(u.passiveEjectedUntil - clock.t, 1000, 'back to the base time');
});

t.test('never more than maxEjectionPercent of a service out at once', async (t) => {
  const clock = new Clock();
  const d = new OutlierDetector({ consecutiveFailures: 1 });
  const four = setOf(4, clock);
  const results = four.all.map((u) => d.recordResult(u, false));
  t.same(results, [true, true, false, false], '50% of 4 → 2');
  t.equal(four.available().length, 2);
  t.equal(d.stats().ejectionsRefusedTotal, 2);

  const one = setOf(1, clock);
  t.same(fail(d, one.all[0] as Upstream, 3), [false, false, false], 'a lone upstream is never ejected');
  const three = setOf(3, clock);
  t.same(
    three.all.map((u) => d.recordResult(u, false)),
    [true, false, false],
    '50% of 3 → 1',
  );

  // active-down upstreams count as out; draining/unhealthy ones are not in service and not counted
  const mixed = setOf(6, clock, [{}, {}, {}, {}, { health: 'draining' }, { weight: 0 }]);
  (mixed.all[0] as Upstream).setActiveHealthy(false, clock.t);
  t.same(
    mixed.all.slice(1, 4).map((u) => d.recordResult(u, false)),
    [true, false, false],
    '4 in service, 1 down → 1 more',
  );

  // the limit is per set: once an ejection ends another may go
  clock.t += 10_000;
  t.equal(d.recordResult(three.all[1] as Upstream, false), true);

  const strict = new OutlierDetector({ consecutiveFailures: 1, maxEjectionPercent: 100 });
  t.same(
    setOf(2, clock).all.map((u) => strict.recordResult(u, false)),
    [true, true],
    '100% allows emptying',
  );
  t.throws(() => new OutlierDetector({ maxEjectionPercent: 150 }), RangeError);
  t.throws(() => new OutlierDetector({ consecutiveFailures: 0 }), RangeError);
});

t.test('an upstream outside any set uses the detector clock and no cap', async (t) => {
  const clock = new Clock();
  const d = new OutlierDetector({ consecutiveFailures: 1, now: clock.now });
  const u = new Upstream(ep(1), clock.t);
  t.equal(d.recordResult(u, false), true);
  t.equal(u.passiveEjectedUntil, clock.t + 10_000);
});
