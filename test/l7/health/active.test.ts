import t from 'tap';
import { buildUpstreamSets, resolveBalanceOptions, type Upstream } from '../../../src/l7/balance/index.js';
import { HealthChecker, probe, type HealthTransition, type ProbeResult } from '../../../src/l7/health/index.js';
import { check, checkIntervals, closedPort, settled, ep, startServer, svc, tableOf, waitFor } from './helpers.js';

const opts = resolveBalanceOptions({ slowStartMs: 0 });

t.test('probe: HTTP status in range, out of range, garbage, timeout, refused; TCP connect', async (t) => {
  const srv = await startServer('ok');
  t.teardown(() => srv.close());
  const run = (target: Parameters<typeof probe>[0]): Promise<ProbeResult> => new Promise((resolve) => probe(target, resolve));
  const http = {
    address: '127.0.0.1',
    port: srv.port,
    httpPath: '/healthz?full=1',
    expectStatus: [200, 399] as [number, number],
    timeoutMs: 300,
  };

  t.match(await run(http), { ok: true, reason: 'ok', status: 200 });
  t.match(
    srv.requests[0],
    /^GET \/healthz\?full=1 HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\nConnection: close\r\nUser-Agent: portico-health\r\n/,
  );
  srv.mode = 'fail';
  t.match(await run(http), { ok: false, reason: 'status', status: 500 });
  t.match(await run({ ...http, expectStatus: [200, 599] }), { ok: true, status: 500 });
  srv.mode = 'garbage';
  t.match(await run(http), { ok: false, reason: 'protocol' });
  srv.mode = 'silent';
  const slow = await run({ ...http, timeoutMs: 80 });
  t.match(slow, { ok: false, reason: 'timeout' });
  t.ok(slow.ms >= 70, `timed out after ${slow.ms.toFixed(0)} ms`);
  t.match(
    await run({ address: '127.0.0.1', port: srv.port, expectStatus: [200, 399], timeoutMs: 300 }),
    { ok: true, reason: 'ok' },
    'TCP check: connect is enough',
  );
  const port = await closedPort();
  t.match(await run({ ...http, port }), { ok: false, reason: 'connect', error: 'ECONNREFUSED' });
  t.match(await run({ address: '127.0.0.1', port, expectStatus: [200, 399], timeoutMs: 300 }), { ok: false, reason: 'connect' });

  let called = 0;
  const h = probe({ ...http, port: srv.port }, () => called++);
  h.cancel();
  // A probe started after it, to the same server, has reported: the cancelled one would have by now.
  await new Promise<void>((resolve) => {
    probe({ ...http, port: srv.port }, () => resolve());
  });
  t.equal(called, 0, 'a cancelled probe never reports');
});

t.test('rise/fall: down once after `fall` failures, up once after `rise` successes', async (t) => {
  const srv = await startServer('ok');
  t.teardown(() => srv.close());
  const events: HealthTransition[] = [];
  const hc = new HealthChecker({ onTransition: (e) => events.push(e) });
  t.teardown(() => hc.stop());
  const table = tableOf(svc('web@test', [ep(srv.port)], check({ rise: 2, fall: 3 })));
  const sets = buildUpstreamSets(table, undefined, opts);
  const u = sets.get('web@test')?.all[0] as Upstream;
  hc.update(table, sets);

  const key = `127.0.0.1:${srv.port}`;
  t.equal(hc.isUp('web@test', key), true, 'starts up (HAProxy)');
  await waitFor(() => hc.endpoints()[0]!.checksTotal >= 3, 2000, 'a few good checks');
  t.same(events, [], 'no event for probes that change nothing');
  t.equal(u.activeHealthy, true);

  srv.mode = 'fail';
  await waitFor(() => events.length === 1, 2000, 'down');
  t.match(events[0], { serviceId: 'web@test', key, healthy: false, reason: 'status', status: 500 });
  t.equal(u.activeHealthy, false, 'the upstream follows');
  t.equal(sets.get('web@test')?.available().length, 0);
  t.equal(hc.endpoints()[0]?.consecutiveFailures, 3, 'exactly `fall` failures');
  const before = hc.endpoints()[0]!.checksTotal;
  await waitFor(() => hc.endpoints()[0]!.checksTotal >= before + 5, 2000, 'more failing checks');
  t.equal(events.length, 1, 'still one event while it stays down');

  srv.mode = 'ok';
  await waitFor(() => events.length === 2, 2000, 'up');
  t.match(events[1], { healthy: true, reason: 'ok' });
  t.equal(hc.endpoints()[0]?.consecutiveSuccesses, 2, 'exactly `rise` successes');
  t.equal(u.activeHealthy, true);
  const n = hc.endpoints()[0]!.checksTotal;
  await waitFor(() => hc.endpoints()[0]!.checksTotal >= n + 5, 2000, 'more good checks');
  t.equal(events.length, 2, 'no more events');
  t.match(hc.stats(), { endpoints: 1, up: 1, down: 0, transitionsTotal: 2 });
});

t.test('closed port and silent server: TCP check fails on connect, HTTP check on timeout', async (t) => {
  const silent = await startServer('silent');
  t.teardown(() => silent.close());
  const port = await closedPort();
  const events: HealthTransition[] = [];
  const hc = new HealthChecker({ onTransition: (e) => events.push(e) });
  t.teardown(() => hc.stop());
  hc.update(
    tableOf(
      svc('tcp@test', [ep(port)], check({ httpPath: undefined, fall: 2 })),
      svc('http@test', [ep(silent.port)], check({ timeoutMs: 60, intervalMs: 10, fall: 2 })),
      svc('tcpok@test', [ep(silent.port)], check({ httpPath: undefined, fall: 1 })),
    ),
  );
  await waitFor(() => events.length >= 2, 3000, 'both down');
  await waitFor(() => (hc.endpoints().find((e) => e.serviceId === 'tcpok@test')?.checksTotal ?? 0) >= 3, 3000, 'tcpok checked a few times');
  t.same(events.map((e) => [e.serviceId, e.healthy, e.reason]).sort(), [
    ['http@test', false, 'timeout'],
    ['tcp@test', false, 'connect'],
  ]);
  t.equal(hc.isUp('tcpok@test', `127.0.0.1:${silent.port}`), true, 'a silent server passes a TCP check');
  t.ok(silent.maxOpen <= 2, `at most one probe in flight per check (max open ${silent.maxOpen} for two checks)`);
});

t.test('removing an endpoint stops its checks; remaining ones keep their state', async (t) => {
  const a = await startServer('fail');
  const b = await startServer('ok');
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const events: HealthTransition[] = [];
  const hc = new HealthChecker({ onTransition: (e) => events.push(e) });
  t.teardown(() => hc.stop());
  const t1 = tableOf(svc('web@test', [ep(a.port), ep(b.port)], check({ fall: 1 })));
  const sets1 = buildUpstreamSets(t1, undefined, opts);
  hc.update(t1, sets1);
  await waitFor(() => events.length === 1, 2000, 'a down');
  t.equal(events[0]?.port, a.port);
  const ua = sets1.get('web@test')?.get(`127.0.0.1:${a.port}`) as Upstream;
  t.equal(ua.activeHealthy, false);

  // same endpoints plus one, new sets: a stays down, no new events, upstream object reused
  const c = await startServer('ok');
  t.teardown(() => c.close());
  const t2 = tableOf(svc('web@test', [ep(a.port), ep(b.port), ep(c.port)], check({ fall: 1 })));
  const sets2 = buildUpstreamSets(t2, sets1, opts);
  hc.update(t2, sets2);
  t.equal(hc.isUp('web@test', `127.0.0.1:${a.port}`), false);
  t.equal(sets2.get('web@test')?.get(`127.0.0.1:${a.port}`), ua);
  t.equal(ua.activeHealthy, false);
  await waitFor(() => c.connections >= 2, 2000, 'c checked');
  t.equal(events.length, 1);

  // remove b: its checks stop
  const t3 = tableOf(svc('web@test', [ep(a.port), ep(c.port)], check({ fall: 1 })));
  hc.update(t3, buildUpstreamSets(t3, sets2, opts));
  const bCount = await settled(() => b.connections, 'connections to b');
  const cCount = c.connections;
  await waitFor(() => c.connections > cCount + 3, 3000, 'c checked several more times');
  t.equal(b.connections, bCount, 'no connections to the removed endpoint');
  t.ok(c.connections > cCount + 3, 'the others are still checked');
  t.equal(hc.stats().endpoints, 2);

  // the service drops its check: every check stops and a's upstream is no longer held down
  const t4 = tableOf(svc('web@test', [ep(a.port), ep(c.port)]));
  const sets4 = buildUpstreamSets(t4, undefined, opts);
  hc.update(t4, sets4);
  t.equal(ua.activeHealthy, true, 'no check, no verdict: served again');
  const aCount = await settled(() => a.connections, 'connections to a');
  await checkIntervals(8);
  t.equal(a.connections, aCount);
  t.equal(hc.stats().endpoints, 0);
  t.equal(events.length, 1, 'removal is not a transition');
});

t.test('a removed endpoint with a probe in flight: the probe is cancelled and never counted', async (t) => {
  const silent = await startServer('silent');
  t.teardown(() => silent.close());
  const events: HealthTransition[] = [];
  const hc = new HealthChecker({ onTransition: (e) => events.push(e) });
  t.teardown(() => hc.stop());
  hc.update(tableOf(svc('web@test', [ep(silent.port)], check({ timeoutMs: 100, fall: 1, intervalMs: 5 }))));
  await waitFor(() => silent.open === 1, 2000, 'probe connected');
  hc.update(tableOf());
  await waitFor(() => silent.open === 0, 2000, 'probe socket closed');
  await checkIntervals(8);
  t.same(events, []);
  t.equal(silent.connections, 1);
});

t.test('interval change reschedules; transition listener errors do not stop checks; stop()', async (t) => {
  const srv = await startServer('fail');
  t.teardown(() => srv.close());
  let calls = 0;
  const hc = new HealthChecker({
    onTransition: () => {
      calls++;
      throw new Error('listener bug');
    },
  });
  hc.update(tableOf(svc('web@test', [ep(srv.port)], check({ intervalMs: 60_000, fall: 1 }))));
  await checkIntervals(3);
  hc.update(tableOf(svc('web@test', [ep(srv.port)], check({ intervalMs: 10, fall: 1, rise: 1 }))));
  await waitFor(() => calls === 1, 3000, 'down after the faster interval applies');
  srv.mode = 'ok';
  await waitFor(() => calls === 2, 2000, 'up: checks went on after the listener threw');
  hc.stop();
  const n = await settled(() => srv.connections, 'connections after stop()');
  await checkIntervals(8);
  t.equal(srv.connections, n, 'no checks after stop()');
  hc.update(tableOf(svc('web@test', [ep(srv.port)], check())));
  t.equal(hc.stats().endpoints, 0, 'update after stop is a no-op');
});

t.test('patch: the named services are reconciled as update would; the others are left as they are', async (t) => {
  const hc = new HealthChecker();
  t.teardown(() => hc.stop());
  // Checks far apart: nothing is probed while the test runs, only the targets are looked at.
  const slow = check({ intervalMs: 600_000 });
  const targets = () =>
    hc
      .endpoints()
      .map((e) => `${e.serviceId} ${e.key}`)
      .sort();
  const t1 = tableOf(svc('a@test', [ep(1001), ep(1002)], slow), svc('b@test', [ep(2001)], slow));
  hc.update(t1, buildUpstreamSets(t1, undefined, opts));
  t.same(targets(), ['a@test 127.0.0.1:1001', 'a@test 127.0.0.1:1002', 'b@test 127.0.0.1:2001']);

  // a and b both change in the table, only a is named: b's checks stay what they were.
  const t2 = tableOf(svc('a@test', [ep(1002), ep(1003)], slow), svc('b@test', [ep(2002)], slow));
  const sets2 = buildUpstreamSets(t2, undefined, opts);
  hc.patch(t2, ['a@test'], sets2);
  t.same(targets(), ['a@test 127.0.0.1:1002', 'a@test 127.0.0.1:1003', 'b@test 127.0.0.1:2001']);
  hc.patch(t2, ['b@test'], sets2);
  t.same(targets(), ['a@test 127.0.0.1:1002', 'a@test 127.0.0.1:1003', 'b@test 127.0.0.1:2002']);

  // A service gone, a service that lost its check, a service named that never had one.
  const t3 = tableOf(svc('b@test', [ep(2002)]), svc('c@test', [ep(3001)]));
  hc.patch(t3, ['a@test', 'b@test', 'c@test'], buildUpstreamSets(t3, undefined, opts));
  t.same(targets(), [], 'no checks are left');
  t.equal(hc.stats().endpoints, 0);

  // isUp reads the targets a patch made.
  const t4 = tableOf(svc('d@test', [ep(4001)], slow));
  hc.patch(t4, ['d@test'], buildUpstreamSets(t4, undefined, opts));
  t.equal(hc.isUp('d@test', '127.0.0.1:4001'), true);
  t.equal(hc.isUp('d@test', '127.0.0.1:9'), undefined, 'an endpoint that is not checked');
});
