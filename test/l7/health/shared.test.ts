/**
 * The HealthChecker's two modes for `portico up`'s workers (one worker probes, the others take its
 * verdicts, src/workers/): a `follow` checker never probes and moves its Upstreams with `setVerdict`; a
 * `probe` checker handed a DOWN verdict (a restarted prober) keeps the endpoint DOWN until `rise` successes.
 */
import t from 'tap';
import { buildUpstreamSets, resolveBalanceOptions, type Upstream } from '../../../src/l7/balance/index.js';
import { HealthChecker, type HealthTransition, type ProbeFn, type ProbeResult } from '../../../src/l7/health/index.js';
import { check, ep, svc, tableOf, waitFor } from './helpers.js';

const opts = resolveBalanceOptions({ slowStartMs: 0 });
const OK: ProbeResult = { ok: true, reason: 'ok', ms: 0 };

t.test('follow: tracks the endpoints of the table, never probes; setVerdict moves the Upstream', async (t) => {
  let followerProbes = 0;
  const never: ProbeFn = (target) => {
    followerProbes++;
    t.fail(`a follower probed ${target.address}:${target.port}`);
    return { cancel: () => {} };
  };
  const events: HealthTransition[] = [];
  const hc = new HealthChecker({ mode: 'follow', probe: never, onTransition: (e) => events.push(e) });
  t.teardown(() => hc.stop());
  // The clock of the window: a prober on the same table, with the same 1 ms interval.
  let leaderProbes = 0;
  const counting: ProbeFn = (_target, done) => {
    leaderProbes++;
    const timer = setImmediate(() => done(OK));
    return { cancel: () => clearImmediate(timer) };
  };
  const leader = new HealthChecker({ probe: counting });
  t.teardown(() => leader.stop());

  const table = tableOf(svc('web@test', [ep(9001), ep(9002)], check({ intervalMs: 1 })));
  const sets = buildUpstreamSets(table, undefined, opts);
  const [u1, u2] = sets.get('web@test')?.all as [Upstream, Upstream];
  hc.update(table, sets);
  leader.update(table, buildUpstreamSets(table, undefined, opts));
  t.same(
    hc.endpoints().map((e) => [e.key, e.up]),
    [
      ['127.0.0.1:9001', true],
      ['127.0.0.1:9002', true],
    ],
    'both endpoints tracked, UP',
  );

  t.equal(hc.setVerdict('web@test', '127.0.0.1:9001', false, 'connect'), true, 'a DOWN verdict changes it');
  t.equal(u1.activeHealthy, false, 'its Upstream follows');
  t.same(
    sets
      .get('web@test')
      ?.available()
      .map((u) => u.key),
    ['127.0.0.1:9002'],
    'the balancer leaves it out',
  );
  t.equal(hc.isUp('web@test', '127.0.0.1:9001'), false);
  t.same(hc.down(), [{ serviceId: 'web@test', key: '127.0.0.1:9001', reason: 'connect' }]);
  t.equal(hc.setVerdict('web@test', '127.0.0.1:9001', false, 'connect'), false, 'the same verdict again changes nothing');
  t.equal(hc.setVerdict('web@test', '127.0.0.1:9999', false), false, 'an endpoint it does not check: ignored');
  t.equal(hc.setVerdict('other@test', '127.0.0.1:9001', false), false, 'a service it does not check: ignored');
  t.equal(u2.activeHealthy, true, 'the other endpoint is untouched');

  // An interval change and a patch do not start probes either.
  const slower = tableOf(svc('web@test', [ep(9001), ep(9002)], check({ intervalMs: 2 })));
  hc.patch(slower, ['web@test'], sets);
  t.equal(hc.isUp('web@test', '127.0.0.1:9001'), false, 'the verdict survives a patch');

  await waitFor(() => leaderProbes >= 20, 5_000, '20 probes of a prober on the same table');
  t.equal(followerProbes, 0, 'the follower never probed meanwhile');
  t.same(events, [], 'verdicts are not transitions found by probes: no onTransition');
  t.same(
    hc.endpoints().map((e) => e.checksTotal),
    [0, 0],
  );

  t.equal(hc.setVerdict('web@test', '127.0.0.1:9001', true), true, 'an UP verdict brings it back');
  t.equal(u1.activeHealthy, true);
  t.same(hc.down(), []);
});

t.test('follow: verdicts given before the first table wait for it; later unknown ones are dropped', async (t) => {
  const hc = new HealthChecker({ mode: 'follow', probe: () => t.fail('probed') as never });
  t.teardown(() => hc.stop());
  t.equal(hc.setVerdict('web@test', '127.0.0.1:9001', false, 'status'), false, 'no target yet');
  const table = tableOf(svc('web@test', [ep(9001), ep(9002)], check()));
  const sets = buildUpstreamSets(table, undefined, opts);
  hc.update(table, sets);
  t.equal(hc.isUp('web@test', '127.0.0.1:9001'), false, 'the first table creates it DOWN');
  t.equal(sets.get('web@test')?.all[0]?.activeHealthy, false, 'and its Upstream');
  t.equal(hc.isUp('web@test', '127.0.0.1:9002'), true);

  // After the first table a verdict for an endpoint not there is not kept for later.
  hc.setVerdict('web@test', '127.0.0.1:9003', false);
  const more = tableOf(svc('web@test', [ep(9001), ep(9002), ep(9003)], check()));
  hc.update(more, buildUpstreamSets(more, sets, opts));
  t.equal(hc.isUp('web@test', '127.0.0.1:9003'), true, 'a new endpoint starts UP');
});

t.test('probe: a prober handed a DOWN verdict keeps the endpoint DOWN until `rise` successes', async (t) => {
  // Probes answered one at a time by the test: each call waits in `pending` until released.
  const pending: Array<(r: ProbeResult) => void> = [];
  const probe: ProbeFn = (_target, done) => {
    pending.push(done);
    return { cancel: () => {} };
  };
  const events: HealthTransition[] = [];
  const hc = new HealthChecker({ probe, onTransition: (e) => events.push(e), jitter: 0 });
  t.teardown(() => hc.stop());
  const key = '127.0.0.1:9001';
  // Handed before the first table, as a worker that starts is.
  hc.setVerdict('web@test', key, false, 'connect');
  const table = tableOf(svc('web@test', [ep(9001)], check({ rise: 3, fall: 2, intervalMs: 1 })));
  const sets = buildUpstreamSets(table, undefined, opts);
  const u = sets.get('web@test')?.all[0] as Upstream;
  hc.update(table, sets);
  t.equal(hc.isUp('web@test', key), false, 'starts DOWN, as the verdict says');
  t.equal(u.activeHealthy, false, 'its Upstream too, before any probe');

  const succeed = async (n: number) => {
    for (let i = 0; i < n; i++) {
      await waitFor(() => pending.length > 0, 5_000, 'the next probe');
      pending.shift()!(OK);
    }
  };
  await succeed(2);
  t.equal(hc.isUp('web@test', key), false, 'still DOWN after rise - 1 successes');
  t.equal(u.activeHealthy, false);
  t.same(events, []);
  await succeed(1);
  t.equal(hc.isUp('web@test', key), true, 'UP after `rise` successes');
  t.equal(u.activeHealthy, true);
  t.match(events, [{ serviceId: 'web@test', key, healthy: true, reason: 'ok' }], 'one transition, found by the probes');

  // The same on a target it probes already: the verdict counts the successes afresh.
  t.equal(hc.setVerdict('web@test', key, false, 'status'), true);
  t.equal(u.activeHealthy, false);
  await succeed(2);
  t.equal(hc.isUp('web@test', key), false, 'DOWN until `rise` successes since the verdict');
  await succeed(1);
  t.equal(hc.isUp('web@test', key), true);
  t.equal(events.length, 2);
});
