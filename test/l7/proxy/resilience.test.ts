/**
 * Failure handling: retries, passive ejection, active health checks, upstream timeouts, slowloris.
 */
import t from 'tap';
import { endpoint, service } from '../../helpers/snapshot.js';
import { pace } from '../../helpers/wait.js';
import { RawClient, defaultReply, freePort, get, startBackend, startPlane, waitFor } from '../helpers.js';

const HOST = 'a.test';
const route = (service: string, extra: Record<string, unknown> = {}) => ({
  entrypoint: 'web',
  host: HOST,
  path: '/',
  pathMatch: 'prefix' as const,
  service,
  ...extra,
});

t.test('a backend killed mid-run: every request after it still succeeds (retries, then ejection)', async (t) => {
  const a = await startBackend(t, 'a');
  const b = await startBackend(t, 'b');
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', a.port), endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [route('web')],
  });
  const c = await RawClient.connect(h.port());
  t.teardown(() => c.destroy());
  const one = async (i: number) => {
    c.write(`GET /r${i} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    return c.readResponse();
  };
  const before = new Set<string>();
  for (let i = 0; i < 10; i++) before.add((await one(i)).header('x-backend') ?? '');
  t.same([...before].sort(), ['a', 'b'], 'both backends served before the kill');

  await a.kill();
  const aSeen = a.requests.items.length;
  const statuses = new Map<number, number>();
  const by = new Map<string, number>();
  for (let i = 100; i < 200; i++) {
    const r = await one(i);
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    by.set(r.header('x-backend') ?? '-', (by.get(r.header('x-backend') ?? '-') ?? 0) + 1);
  }
  t.same([...statuses], [[200, 100]], 'all 100 requests after the kill succeeded');
  t.same([...by], [['b', 100]], 'all were served by the survivor');
  t.equal(a.requests.items.length, aSeen, 'the dead backend got nothing');
  const retried = h.logs.lines.items.filter((l) => l.component === 'access' && (l.retries as number) > 0);
  t.ok(retried.length >= 1, `requests that met the dead backend were retried (${retried.length})`);
  t.ok(retried.length <= 6, 'and it was ejected after a few failures instead of costing a retry every other request');
  t.ok(
    h.logs.lines.items.some((l) => l.msg === 'endpoint ejected after consecutive failures'),
    'passive ejection logged',
  );
});

t.test('a POST is not retried once sent, but is retried on a connect failure', async (t) => {
  const r1 = await startBackend(t, 'r1', () => 'destroy');
  const r2 = await startBackend(t, 'r2', () => 'destroy');
  const live = await startBackend(t, 'live');
  const dead = await freePort();
  const h = await startPlane(t, {
    services: {
      resets: service([endpoint('127.0.0.1', r1.port), endpoint('127.0.0.1', r2.port)], { name: 'resets' }),
      half: service([endpoint('127.0.0.1', dead), endpoint('127.0.0.1', live.port)], { name: 'half' }),
    },
    routes: [
      { entrypoint: 'web', host: 'resets.test', path: '/', pathMatch: 'prefix', service: 'resets' },
      { entrypoint: 'web', host: 'half.test', path: '/', pathMatch: 'prefix', service: 'half' },
    ],
  });
  const port = h.port();

  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  c.write('POST /order HTTP/1.1\r\nHost: resets.test\r\nContent-Length: 5\r\n\r\nhello');
  const res = await c.readResponse();
  t.equal(res.status, 502, 'the reset after sending is a 502');
  const posts = [...r1.requests.items, ...r2.requests.items].filter((x) => x.method === 'POST');
  t.equal(posts.length, 1, 'the POST reached a backend exactly once (not retried on the other)');
  const line = await h.logs.lines.until((l) => l.component === 'access' && l.method === 'POST' && l.status === 502, 1000, 'the 502 line');
  t.equal(line.retries, 0);
  t.equal(line.outcome, 'upstream-reset');

  // Round robin over [dead, live]: of two POSTs at least one meets the dead endpoint first.
  const retried = () =>
    h.logs.lines.items.filter((l) => l.component === 'access' && l.method === 'POST' && l.status === 200 && (l.retries as number) > 0)
      .length;
  for (let i = 0; i < 2; i++) {
    const c2 = await RawClient.connect(port);
    t.teardown(() => c2.destroy());
    c2.write(`POST /p${i} HTTP/1.1\r\nHost: half.test\r\nContent-Length: 2\r\n\r\nhi`);
    const r = await c2.readResponse();
    t.equal(r.status, 200, `POST ${i} answered by the live endpoint`);
  }
  t.same(
    live.requests.items.map((x) => x.target),
    ['/p0', '/p1'],
    'each POST reached the live backend once',
  );
  const n = retried();
  t.ok(n >= 1 && n <= 2, `a POST that met the refused connect was retried (${n})`);
});

t.test('all endpoints down: 502 (connect failed) or 503 (no healthy endpoint)', async (t) => {
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', await freePort()), endpoint('127.0.0.1', await freePort())], { name: 'web' }) },
    routes: [route('web')],
  });
  for (let i = 0; i < 8; i++) {
    const r = await get(h.port(), HOST, `/d${i}`);
    t.ok(r.status === 502 || r.status === 503, `request ${i}: ${r.status}`);
    t.ok(r.body.length > 0 && r.body.length < 100, 'a short body');
  }
  const lines = h.logs.lines.items.filter((l) => l.component === 'access');
  t.ok(
    lines.every((l) => l.outcome === 'connect-failed' || l.outcome === 'no-healthy-endpoint'),
    'the reason is in the access log',
  );
});

t.test('upstream response timeout: 504', async (t) => {
  const b = await startBackend(t, 'b', () => 'hang');
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [route('web', { timeouts: { responseHeaderMs: 200 } })],
  });
  // The plane's own response timeout is 60 s and get() waits 5 s at most: a 504 at all is the route's timer.
  const r = await get(h.port(), HOST, '/hang');
  t.equal(r.status, 504, "the route's 200 ms response timeout answered, not the plane's 60 s");
  t.equal(b.requests.items.length, 1, 'a timed-out GET is not sent again');
  const line = await h.logs.lines.until((l) => l.component === 'access' && l.status === 504, 1000, 'the 504 line');
  t.equal(line.outcome, 'response-timeout');
});

t.test('slowloris: a head still arriving after headerTimeoutMs gets 408 and is closed; others are served', async (t) => {
  const b = await startBackend(t, 'b');
  const h = await startPlane(
    t,
    {
      services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
      routes: [route('web')],
    },
    { headerTimeoutMs: 300, timerResolutionMs: 20 },
  );
  const port = h.port();

  // A head that never completes: one more byte of a header value every 40 ms (pacing), far more often than
  // headerTimeoutMs, until the plane closes the connection. Only a deadline on the whole head can end it,
  // not one that each byte pushes out. Bounded: 500 bytes (20 s) at most.
  const dribble = async (c: RawClient, head: string): Promise<number> => {
    c.write(head);
    let sent = 0;
    while (!c.ended && sent < 500) {
      c.write('a');
      sent++;
      await pace(40);
    }
    return sent;
  };
  const head = `GET /slow HTTP/1.1\r\nHost: ${HOST}\r\nX-Slow: `;

  // On a new connection.
  const slow = await RawClient.connect(port);
  t.teardown(() => slow.destroy());
  const sending = dribble(slow, head);
  // Meanwhile a normal client on the same listener is served.
  const normal = await get(port, HOST, '/normal');
  t.equal(normal.status, 200, 'a normal client is served while the slow one dribbles');
  const res = await slow.readResponse({ timeoutMs: 20_000 });
  await slow.waitEnded(2000);
  const sent = await sending;
  t.equal(res.status, 408, '408 Request Timeout');
  t.ok(sent > 0 && sent < 500, `closed while bytes were still arriving (${sent} sent)`);
  t.equal(b.seen('/slow').length, 0, 'the slow request never reached the backend');

  // On a keep-alive connection, for its second request.
  const ka = await RawClient.connect(port);
  t.teardown(() => ka.destroy());
  ka.write(`GET /first HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.equal((await ka.readResponse()).status, 200);
  const sending2 = dribble(ka, head);
  const res2 = await ka.readResponse({ timeoutMs: 20_000 });
  await ka.waitEnded(2000);
  await sending2;
  t.equal(res2.status, 408, 'the second head on a kept-alive connection is timed too');
});

t.test('active health check: a backend whose /healthz fails is taken out, and comes back', async (t) => {
  let bHealthy = false;
  let aHealthy = true;
  const health = (ok: () => boolean) => (req: Parameters<typeof defaultReply>[0], be: Parameters<typeof defaultReply>[1]) =>
    req.target === '/healthz' ? { status: ok() ? 200 : 500, body: ok() ? 'ok' : 'sick' } : defaultReply(req, be);
  const a = await startBackend(
    t,
    'a',
    health(() => aHealthy),
  );
  const b = await startBackend(
    t,
    'b',
    health(() => bHealthy),
  );
  const h = await startPlane(t, {
    services: {
      web: service([endpoint('127.0.0.1', a.port), endpoint('127.0.0.1', b.port)], {
        name: 'web',
        health: { httpPath: '/healthz', intervalMs: 50, timeoutMs: 200, rise: 1, fall: 1, expectStatus: [200, 399] },
      }),
    },
    routes: [route('web')],
  });
  const port = h.port();
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  let n = 0;
  const next = async () => {
    c.write(`GET /h${n++} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    return c.readResponse();
  };
  /** Poll with requests until `k` in a row satisfy `pred`. */
  const until = (what: string, k: number, pred: (r: Awaited<ReturnType<typeof next>>) => boolean) => {
    let streak = 0;
    return waitFor(
      async () => {
        streak = pred(await next()) ? streak + 1 : 0;
        return streak >= k;
      },
      { timeoutMs: 5000, what, intervalMs: 10 },
    );
  };

  await until('b to be taken out', 20, (r) => r.header('x-backend') === 'a');
  t.pass('20 requests in a row all went to the healthy backend');
  await h.logs.lines.until((l) => l.msg === 'endpoint down' && l.endpoint === `127.0.0.1:${b.port}`, 1000, 'the down transition log');
  t.ok(
    b.requests.items.some((r) => r.target === '/healthz'),
    'b was probed',
  );

  bHealthy = true;
  await until('b to come back', 1, (r) => r.header('x-backend') === 'b');
  t.pass('a request reached b again once /healthz recovered');

  aHealthy = false;
  bHealthy = false;
  await until('every endpoint down → 503', 3, (r) => r.status === 503);
  const line = await h.logs.lines.until((l) => l.component === 'access' && l.status === 503, 1000, 'a 503 line');
  t.equal(line.outcome, 'no-healthy-endpoint');
});

t.test('a retried request carries the same request id to every backend it reaches', async (t) => {
  const busy = await startBackend(t, 'busy', () => ({ status: 503, body: 'busy\n' }));
  const ok = await startBackend(t, 'ok');
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', busy.port), endpoint('127.0.0.1', ok.port)], { name: 'web' }) },
    routes: [route('web')],
  });
  const c = await RawClient.connect(h.port());
  t.teardown(() => c.destroy());
  // Round robin over [busy, ok]: of two GETs at least one meets the busy backend first and is retried.
  for (let i = 0; i < 2; i++) {
    c.write(`GET /id${i} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    t.equal((await c.readResponse()).status, 200, `GET /id${i} is answered by the healthy backend`);
  }
  const retriedPath = busy.seen('/id')[0]?.target;
  t.ok(retriedPath, 'one request reached the busy backend');
  const first = busy.seen(retriedPath!)[0]!.headerAll('x-request-id');
  const second = ok.seen(retriedPath!)[0]!.headerAll('x-request-id');
  t.equal(first.length, 1, 'the first try carried one made request id');
  t.same(second, first, 'the retry carried the same one');
  const line = await h.logs.lines.until(
    (l) => l.component === 'access' && l.path === retriedPath && l.status === 200,
    1000,
    'the access line',
  );
  t.equal(line.requestId, first[0], 'and the access log has it');
  t.equal(line.retries, 1);
});
