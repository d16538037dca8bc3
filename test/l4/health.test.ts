/**
 * The L4 active checks' two modes for `portico up`'s workers (one worker probes, the others take its
 * verdicts, src/workers/): a `follow` checker never probes and sets `checkUp` from `setVerdict`; a `probe`
 * checker handed a DOWN verdict keeps the endpoint DOWN until `rise` successes. Then the plane: a follower
 * plane leaves a DOWN endpoint out of its Maglev selection; a leader plane publishes what its probes find,
 * and one handed verdicts before its first table starts with them.
 */
import t from 'tap';
import { ActiveChecker, type CheckParams, type ConnectProbe, type HealthTransition } from '../../src/l4/health.js';
import { createL4Plane } from '../../src/l4/index.js';
import { Backend } from '../../src/l4/pool.js';
import type { HealthVerdict } from '../../src/model/plane.js';
import { waitFor } from '../helpers/wait.js';
import { ep, FAST, svc, table, vip } from './helpers.js';

const params = (extra: Partial<CheckParams> = {}): CheckParams => ({ intervalMs: 1, timeoutMs: 500, rise: 2, fall: 2, ...extra });

/** Probes answered one at a time by the test: each waits in `pending` (with its port) until answered. */
function heldProbe(): {
  probe: ConnectProbe;
  pending: Array<{ port: number; done: (ok: boolean, error?: string) => void }>;
  next(ok: boolean): Promise<number>;
} {
  const pending: Array<{ port: number; done: (ok: boolean, error?: string) => void }> = [];
  return {
    probe: (_a, port, _t, done) => {
      pending.push({ port, done });
      return { cancel: () => {} };
    },
    pending,
    async next(ok: boolean) {
      await waitFor(() => pending.length > 0, { timeoutMs: 5_000, what: 'the next probe' });
      const p = pending.shift()!;
      p.done(ok, ok ? undefined : 'ECONNREFUSED');
      return p.port;
    },
  };
}

t.test('follow: never probes; setVerdict sets checkUp, counted afresh, no onTransition', async (t) => {
  let followerProbes = 0;
  const never: ConnectProbe = (address, port) => {
    followerProbes++;
    t.fail(`a follower probed ${address}:${port}`);
    return { cancel: () => {} };
  };
  const events: HealthTransition[] = [];
  const hc = new ActiveChecker((e) => events.push(e), never, 'follow');
  t.teardown(() => hc.stop());
  let leaderProbes = 0;
  const leader = new ActiveChecker(
    () => {},
    (_a, _p, _t, done) => {
      leaderProbes++;
      const timer = setImmediate(() => done(true));
      return { cancel: () => clearImmediate(timer) };
    },
  );
  t.teardown(() => leader.stop());

  const a = new Backend('127.0.0.1', 9001);
  const b = new Backend('127.0.0.1', 9002);
  hc.update(
    new Map([
      [a, params()],
      [b, params()],
    ]),
  );
  leader.update(new Map([[new Backend('127.0.0.1', 9001), params()]]));
  t.equal(hc.size, 2, 'both tracked');
  t.equal(a.checkUp, undefined, 'no verdict yet (served)');

  t.equal(hc.setVerdict('127.0.0.1:9001', false, 'ECONNREFUSED'), a, 'a DOWN verdict changes the backend');
  t.equal(a.checkUp, false);
  t.same(hc.down(), [{ key: '127.0.0.1:9001', reason: 'ECONNREFUSED' }]);
  t.equal(hc.setVerdict('127.0.0.1:9001', false), undefined, 'the same again: nothing to rebuild');
  t.equal(hc.setVerdict('127.0.0.1:9999', false), undefined, 'an endpoint it does not check: ignored');
  t.equal(hc.setVerdict('127.0.0.1:9002', true), b, 'an UP verdict');
  t.equal(b.checkUp, true);
  hc.set(a, params({ intervalMs: 2 }));

  await waitFor(() => leaderProbes >= 20, { timeoutMs: 5_000, what: '20 probes of a prober' });
  t.equal(followerProbes, 0, 'the follower never probed meanwhile');
  t.same(events, [], 'verdicts are not transitions found by probes');
  t.same(hc.stats(), { checksTotal: 0, failuresTotal: 0 });

  hc.set(a, undefined);
  t.equal(a.checkUp, undefined, 'no longer checked: the verdict goes');
  t.equal(hc.setVerdict('127.0.0.1:9001', false), undefined, 'and a verdict for it is ignored');
});

t.test('probe: handed a DOWN verdict before the first update, the endpoint stays DOWN until `rise` successes', async (t) => {
  const held = heldProbe();
  const events: HealthTransition[] = [];
  const hc = new ActiveChecker((e) => events.push(e), held.probe);
  t.teardown(() => hc.stop());
  const a = new Backend('127.0.0.1', 9001);
  t.equal(hc.setVerdict('127.0.0.1:9001', false, 'ECONNREFUSED'), undefined, 'no target yet: kept for the first update');
  t.same(hc.update(new Map([[a, params({ rise: 3 })]])), [a], 'the update reports the backend the verdict took (its pools need a rebuild)');
  t.equal(a.checkUp, false, 'DOWN before any probe');
  t.same(hc.down(), [{ key: '127.0.0.1:9001', reason: 'ECONNREFUSED' }]);
  await held.next(true);
  await held.next(true);
  t.equal(a.checkUp, false, 'still DOWN after rise - 1 successes (from no verdict, one would do)');
  t.same(events, []);
  await held.next(true);
  t.equal(a.checkUp, true, 'UP after `rise` successes');
  t.same(
    events.map((e) => [e.backend.key, e.up]),
    [['127.0.0.1:9001', true]],
    'one transition, found by the probes',
  );
  t.same(hc.update(new Map([[a, params()]])), [], 'a later update takes no verdict');
  t.same(hc.stats(), { checksTotal: 3, failuresTotal: 0 });
});

t.test('plane: a follower leaves a DOWN endpoint out of its selection; a leader publishes and starts from verdicts', async (t) => {
  const t0 = () =>
    table({
      services: [
        svc('web', [ep('127.0.0.1', 9001), ep('127.0.0.1', 9002)], {
          health: { expectStatus: [200, 399], intervalMs: 1, timeoutMs: 500, rise: 2, fall: 1 },
        }),
      ],
      vips: [vip('web', 0)],
    });
  const options = { ...FAST, maglevTableSize: 251 };
  const never: ConnectProbe = () => {
    t.fail('a follower plane probed');
    return { cancel: () => {} };
  };
  const follower = createL4Plane({ listenAddress: '127.0.0.1', options, probe: never, health: { mode: 'follow' } });
  t.teardown(() => follower.stop(0));
  await follower.start(t0());
  const selected = (p: typeof follower) => p.inspect().pools.find((x) => x.service === 'web@test')?.selectorMembers;
  t.equal(selected(follower), 2);
  follower.setHealthVerdict({ key: '127.0.0.1:9001', up: false, reason: 'ECONNREFUSED' });
  t.equal(selected(follower), 1, 'the DOWN endpoint leaves the selection');
  t.match(
    follower.describe().vips[0]?.endpoints.map((e) => [e.port, e.activeCheck, e.state]),
    [
      [9001, 'down', 'down'],
      [9002, 'none', 'serving'],
    ],
  );
  t.same(follower.healthVerdicts(), [{ key: '127.0.0.1:9001', up: false, reason: 'ECONNREFUSED' }]);
  follower.setHealthVerdict({ serviceId: 'web@test', key: '127.0.0.1:9002', up: false });
  t.equal(selected(follower), 1, 'a verdict of a check per service is not the L4 plane’s');
  follower.setHealthVerdict({ key: '127.0.0.1:9001', up: true });
  t.equal(selected(follower), 2, 'back UP');

  // The leader: its probes' transitions are published; handed a verdict before its first table, it starts with it.
  const published: HealthVerdict[] = [];
  const held = heldProbe();
  const leader = createL4Plane({
    listenAddress: '127.0.0.1',
    options,
    probe: held.probe,
    health: { mode: 'probe', publish: (v) => published.push(v) },
  });
  t.teardown(() => leader.stop(0));
  leader.setHealthVerdict({ key: '127.0.0.1:9002', up: false, reason: 'timeout' });
  await leader.start(t0());
  t.equal(selected(leader), 1, 'the endpoint handed DOWN is out of the selection from the first table');
  t.same(published, [], 'a verdict handed over is not published back');
  // Fail every probe (fall 1): 9001, which had no verdict, goes DOWN and is published; 9002 already is.
  while (published.length === 0) await held.next(false);
  t.same(published, [{ key: '127.0.0.1:9001', up: false, reason: 'ECONNREFUSED' }], 'a transition its probes found, published');
  t.same(
    leader.healthVerdicts().map((v) => v.key),
    ['127.0.0.1:9001', '127.0.0.1:9002'],
    'both DOWN now',
  );
});
