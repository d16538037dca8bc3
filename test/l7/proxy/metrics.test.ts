/**
 * Request metrics (kept as plain numbers per route, read by prom-client only when scraped) and the
 * access log (formatted by the plane, written to the logger's destination) say what happened.
 */
import t from 'tap';
import pino from 'pino';
import { Aggregator } from '../../../src/aggregator/index.js';
import { L7Plane } from '../../../src/l7/plane.js';
import { prom } from '../../../src/telemetry/metrics.js';
import { endpoint, entrypoint, service, snapshot } from '../../helpers/snapshot.js';
import { Recorder } from '../../helpers/wait.js';
import { RawClient, get, startBackend } from '../helpers.js';

t.test('requests_total by code and the duration histogram, across a table swap', async (t) => {
  const b = await startBackend(t, 'b', (req) => (req.target === '/fail' ? { status: 500, body: 'no' } : { status: 200, body: 'ok' }));
  const registry = new prom.Registry();
  const lines = new Recorder<Record<string, unknown>>();
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  const agg = new Aggregator({ debounceMs: 0 });
  const snap = (n: number) =>
    snapshot('file', {
      entrypoints: { web: entrypoint('web', '127.0.0.1:0') },
      services: { s: service([endpoint('127.0.0.1', b.port)], { name: 's' }) },
      routes: Array.from({ length: n }, (_, i) => ({
        entrypoint: 'web',
        host: i === 0 ? 'a.test' : `h${i}.test`,
        path: '/',
        pathMatch: 'prefix' as const,
        service: 's',
      })),
    });
  agg.update('file', 100, snap(1));
  const plane = new L7Plane({ logger, registry, options: { timerResolutionMs: 20, passiveFailures: 1000 } });
  t.teardown(async () => {
    await plane.stop(0);
    agg.close();
  });
  await plane.start(agg.flush());
  const port = plane.address('web')!.port;
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  for (const path of ['/x', '/y', '/fail']) {
    c.write(`GET ${path} HTTP/1.1\r\nHost: a.test\r\n\r\n`);
    await c.readResponse();
  }
  t.equal((await get(port, 'nowhere.test')).status, 404);
  const route = plane.current().routes.keys().next().value as string;
  let text = await registry.metrics();
  t.match(text, `portico_l7_requests_total{entrypoint="web",route="${route}",code="200"} 2`);
  t.match(text, `portico_l7_requests_total{entrypoint="web",route="${route}",code="500"} 1`);
  t.match(text, 'portico_l7_requests_total{entrypoint="web",route="-",code="404"} 1', 'unrouted requests count under route "-"');
  t.match(text, `portico_l7_request_duration_seconds_count{entrypoint="web",route="${route}"} 3`);
  t.match(text, `portico_l7_request_duration_seconds_bucket{le="+Inf",entrypoint="web",route="${route}"} 3`);
  t.match(text, /# TYPE portico_l7_request_duration_seconds histogram/);
  const buckets = [
    ...text.matchAll(
      new RegExp(
        `portico_l7_request_duration_seconds_bucket\\{le="([^"]+)",entrypoint="web",route="${route.replace('/', '\\/')}"\\} (\\d+)`,
        'g',
      ),
    ),
  ].map((m) => Number(m[2]));
  t.equal(buckets.length, 14, '13 bounds and +Inf');
  t.ok(
    buckets.every((v, i) => i === 0 || v >= (buckets[i - 1] as number)),
    'buckets are cumulative',
  );

  // A swap (a route added) keeps the counts: counters never go backwards.
  agg.update('file', 100, snap(2));
  plane.apply(agg.flush());
  c.write('GET /z HTTP/1.1\r\nHost: a.test\r\n\r\n');
  await c.readResponse();
  text = await registry.metrics();
  t.match(text, `portico_l7_requests_total{entrypoint="web",route="${route}",code="200"} 3`, 'the count goes on after the swap');

  // The access log: one JSON line per request, in the logger's format.
  const line = await lines.until((l) => l.component === 'access' && l.path === '/z', 2000, 'the access line');
  t.equal(line.level, 30);
  t.equal(line.msg, 'request');
  t.equal(line.status, 200);
  t.equal(line.route, route);
  t.equal(line.host, 'a.test');
  t.equal(line.endpoint, `127.0.0.1:${b.port}`);
  t.equal(line.outcome, 'ok');
  t.type(line.time, 'number', "the logger's own time field");
  t.match(line.requestId, /^[0-9a-f-]{36}$/);
});

t.test('access lines stay valid JSON whatever the client sends', async (t) => {
  const b = await startBackend(t, 'b');
  const lines = new Recorder<Record<string, unknown>>();
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  const agg = new Aggregator({ debounceMs: 0 });
  agg.update(
    'file',
    100,
    snapshot('file', {
      entrypoints: { web: entrypoint('web', '127.0.0.1:0') },
      services: { s: service([endpoint('127.0.0.1', b.port)], { name: 's' }) },
      routes: [{ entrypoint: 'web', host: '*', path: '/', pathMatch: 'prefix', service: 's' }],
    }),
  );
  const plane = new L7Plane({ logger, options: { timerResolutionMs: 20 } });
  t.teardown(async () => {
    await plane.stop(0);
    agg.close();
  });
  await plane.start(agg.flush());
  const port = plane.address('web')!.port;
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  c.write('GET /a"b\\c%22\xe9 HTTP/1.1\r\nHost: we"ird\\.test\r\nX-Request-Id: id"\\\x7f\r\n\r\n');
  // (the parser may refuse some of this: either way the line must parse)
  await c.readResponse();
  const line = await lines.until((l) => l.component === 'access', 2000, 'the access line');
  t.type(line.status, 'number');
  if (line.status === 200) {
    t.equal(line.path, '/a"b\\c%22\xe9', 'the path, escaped and read back as sent');
    t.equal(line.requestId, 'id"\\\x7f');
  } else {
    t.equal(line.outcome, 'bad-request');
  }
  const quiet = new L7Plane({
    logger: pino({ level: 'warn' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) }),
    options: { timerResolutionMs: 20 },
  });
  t.teardown(() => quiet.stop(0));
  await quiet.start(agg.flush());
  const before = lines.items.length;
  t.equal((await get(quiet.address('web')!.port, 'a.test')).status, 200);
  t.equal(lines.items.length, before, 'nothing at level warn');
});
