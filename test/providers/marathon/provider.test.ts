/**
 * MarathonProvider against the Marathon API double (api-double.ts: Marathon's documented REST and SSE
 * answers on a real socket), fed Marathon's documentation examples. Every wait is on a recorder (a
 * snapshot, a log line, a request) with a bounded timeout; nothing sleeps to synchronise.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import type { Endpoint, Snapshot } from '../../../src/model/types.js';
import { MarathonProvider, type MarathonProviderOptions } from '../../../src/providers/marathon/index.js';
import { createLogger } from '../../../src/telemetry/log.js';
import net from 'node:net';
import { waitFor, withTimeout } from '../../helpers/wait.js';
import { LogRecorder, SnapshotRecorder } from '../file/recorder.js';
import { MarathonDouble, type RecordedRequest } from './api-double.js';

const FIX = join(__dirname, 'fixtures');
const docsApps = (): Array<Record<string, unknown>> =>
  (JSON.parse(readFileSync(join(FIX, 'apps.json'), 'utf8')) as { apps: Array<Record<string, unknown>> }).apps;

interface Harness {
  d: MarathonDouble;
  p: MarathonProvider;
  snaps: SnapshotRecorder;
  logs: LogRecorder;
}

async function harness(t: Test, opts: Partial<MarathonProviderOptions> = {}, setup?: (d: MarathonDouble) => void): Promise<Harness> {
  const d = new MarathonDouble();
  d.apps = docsApps();
  setup?.(d);
  await d.start();
  const snaps = new SnapshotRecorder();
  const logs = new LogRecorder();
  const p = new MarathonProvider({
    url: d.url,
    groups: ['external'],
    debounceMs: 5,
    backoffMinMs: 20,
    backoffMaxMs: 150,
    logger: createLogger({ level: 'debug', destination: logs }),
    ...opts,
  });
  t.teardown(async () => {
    await p.stop();
    await d.stop();
  });
  await p.start(snaps.sink);
  return { d, p, snaps, logs };
}

const eps = (s: Snapshot | undefined, service: string): Endpoint[] => s?.services[service]?.endpoints ?? [];
const healthOf = (s: Snapshot | undefined, service: string): Array<[number, string]> => eps(s, service).map((e) => [e.port, e.health]);
const app = (d: MarathonDouble, id: string): Record<string, unknown> => d.findApp(id) as Record<string, unknown>;
const tasksOf = (a: Record<string, unknown>): Array<Record<string, unknown>> => a.tasks as Array<Record<string, unknown>>;

t.test('first snapshot: the event stream opens first, then GET /v2/apps?embed=apps.tasks', async (t) => {
  const h = await harness(t);
  t.equal(h.snaps.count, 1, 'sent before start() resolved');
  const snap = h.snaps.items[0];
  t.same(Object.keys(snap?.services ?? {}).sort(), ['pywebserver-0', 'service-prod-0', 'spark-0', 'spark-1', 'spark-2', 'toggle-0']);
  t.same(
    snap?.routes.map((r) => r.id),
    [
      'marathon/pywebserver-0/web/myvhost.com/',
      'marathon/pywebserver-0/websecure/myvhost.com/',
      'marathon/pywebserver-0/marathon-10101/*/',
    ],
  );

  const paths = h.d.requests.map((r) => r.path);
  t.ok(paths.indexOf('/v2/events') < paths.indexOf('/v2/apps'), `order: ${paths.join(', ')}`);
  const events = h.d.requests.find((r) => r.path === '/v2/events') as RecordedRequest;
  t.equal(events.headers.accept, 'text/event-stream');
  t.same(events.query.getAll('event_type').sort(), [
    'api_post_event',
    'app_terminated_event',
    'deployment_failed',
    'deployment_info',
    'deployment_step_failure',
    'deployment_step_success',
    'deployment_success',
    'health_status_changed_event',
    'status_update_event',
  ]);
  t.equal(events.query.get('plan-format'), 'light');
  t.same(h.d.requests.find((r) => r.path === '/v2/apps')?.query.getAll('embed'), ['apps.tasks']);

  const st = h.p.status();
  t.equal(st.state, 'ok');
  t.equal(st.name, 'marathon');
  t.equal(st.priority, 50);
  t.match(st.details, {
    url: h.d.url + '/',
    groups: ['external'],
    eventStream: 'connected',
    apps: 4,
    tasks: 6,
    services: 6,
    routes: 3,
    warningCount: 0,
  });
});

t.test('a task failing its health check leaves rotation on that one event, without a round trip', async (t) => {
  const h = await harness(t);
  t.same(healthOf(h.snaps.items[0], 'toggle-0'), [
    [31045, 'healthy'],
    [31234, 'healthy'],
  ]);
  const before = h.d.requests.length;
  const n = h.snaps.count;
  // Marathon ≤1.4 ids: the instance id is the task id.
  h.d.pushEvent('health_status_changed_event', {
    appId: '/toggle',
    instanceId: 'toggle.7c99814d-3ad4-11e4-a400-56847afe9799',
    version: '2014-09-12T23:28:21.737Z',
    alive: false,
  });
  const down = await h.snaps.next(n);
  t.same(healthOf(down, 'toggle-0'), [
    [31045, 'healthy'],
    [31234, 'unhealthy'],
  ]);
  t.equal(h.d.requests.length, before, 'patched from the event alone: nothing was asked of Marathon');
  t.same(h.p.status().details?.lastEvent, {
    type: 'health_status_changed_event',
    at: h.p.status().details?.lastEvent && (h.p.status().details?.lastEvent as { at: string }).at,
  });

  h.d.pushEvent('health_status_changed_event', {
    appId: '/toggle',
    instanceId: 'toggle.7c99814d-3ad4-11e4-a400-56847afe9799',
    version: '2014-09-12T23:28:21.737Z',
    alive: true,
  });
  const up = await h.snaps.next(n + 1);
  t.same(healthOf(up, 'toggle-0'), [
    [31045, 'healthy'],
    [31234, 'healthy'],
  ]);

  // DC/OS-era ids: the event names the instance (`app.marathon-<uuid>`), the results carry it.
  h.d.pushEvent('health_status_changed_event', {
    appId: '/spark',
    instanceId: 'spark.marathon-c0efd47d-49b2-11e9-b8cd-1aeaf266c008',
    version: 'x',
    alive: false,
  });
  const spark = await h.snaps.next(n + 2);
  t.same(healthOf(spark, 'spark-2'), [[21517, 'unhealthy']]);
  t.equal(h.d.requests.length, before);
});

t.test('events that arrive while the full state is being fetched are applied after it, in order', async (t) => {
  const d = new MarathonDouble();
  d.apps = docsApps();
  let release!: () => void;
  d.appsGate = new Promise<void>((r) => (release = r));
  await d.start();
  const snaps = new SnapshotRecorder();
  const p = new MarathonProvider({ url: d.url, groups: ['external'], debounceMs: 5 });
  t.teardown(async () => {
    await p.stop();
    await d.stop();
  });
  const asked = new Promise<void>((resolve) => d.on('request', (r: RecordedRequest) => r.path === '/v2/apps' && resolve()));
  const started = p.start(snaps.sink);
  await asked;
  // Marathon's answer was computed before these two events (its state does not have them).
  d.pushEvent('health_status_changed_event', { appId: '/toggle', instanceId: 'toggle.7c99814d-3ad4-11e4-a400-56847afe9799', alive: false });
  d.pushEvent('status_update_event', {
    taskId: 'toggle.802df2ae-3ad4-11e4-a400-56847afe9799',
    taskStatus: 'TASK_FINISHED',
    appId: '/toggle',
  });
  // Both events have reached the provider (same socket, in order) before the answer is let through.
  await waitFor(() => p.status().details?.events === 2, { timeoutMs: 5000, what: 'both events to arrive' });
  release();
  await started;
  t.same(
    healthOf(snaps.items[0], 'toggle-0'),
    [
      [31045, 'healthy'],
      [31234, 'healthy'],
    ],
    'first: the state as fetched',
  );
  const after = await snaps.waitFor((s) => eps(s, 'toggle-0').length === 1, 1, 5000, 'the events applied');
  t.same(healthOf(after, 'toggle-0'), [[31234, 'unhealthy']], 'then both events, in order');
});

t.test('status updates: a killed task leaves, a new running task joins, an unknown app is fetched', async (t) => {
  const h = await harness(t);
  let n = h.snaps.count;
  h.d.pushEvent('status_update_event', {
    slaveId: 'S1',
    taskId: 'toggle.802df2ae-3ad4-11e4-a400-56847afe9799',
    taskStatus: 'TASK_KILLED',
    appId: '/toggle',
    host: '10.141.141.10',
    ports: [31045],
    version: '2014-09-12T23:28:21.737Z',
  });
  let s = await h.snaps.next(n++);
  t.same(
    eps(s, 'toggle-0').map((e) => e.port),
    [31234],
  );

  h.d.pushEvent('status_update_event', {
    slaveId: 'S2',
    taskId: 'pywebserver.0b6e2d3f-6ca9-11e7-beb2-0e2beceebfcc',
    taskStatus: 'TASK_RUNNING',
    appId: '/pywebserver',
    host: '10.0.2.149',
    ports: [1999],
    ipAddresses: [{ ipAddress: '172.17.0.3', protocol: 'IPv4' }],
    version: '2017-07-19T17:34:41.967Z',
  });
  s = await h.snaps.next(n++);
  t.same(
    eps(s, 'pywebserver-0').map((e) => [e.address, e.port, e.health]),
    [
      ['10.0.2.148', 1565, 'unknown'],
      ['10.0.2.149', 1999, 'unknown'],
    ],
  );

  h.d.pushEvent('status_update_event', {
    taskId: 'toggle.7c99814d-3ad4-11e4-a400-56847afe9799',
    taskStatus: 'TASK_KILLING',
    appId: '/toggle',
    host: '10.141.141.10',
    ports: [31234],
  });
  s = await h.snaps.next(n++);
  t.same(
    eps(s, 'toggle-0').map((e) => [e.port, e.health, e.weight]),
    [[31234, 'draining', 0]],
    'killing: drained, not dropped',
  );

  const fresh = structuredClone(app(h.d, '/pywebserver'));
  fresh.id = '/fresh';
  h.d.apps.push(fresh);
  const fetched = new Promise<void>((resolve) => h.d.on('request', (r: RecordedRequest) => r.path === '/v2/apps/fresh' && resolve()));
  h.d.pushEvent('status_update_event', {
    taskId: 'fresh.1',
    taskStatus: 'TASK_RUNNING',
    appId: '/fresh',
    host: '10.0.2.150',
    ports: [2000],
  });
  s = await h.snaps.next(n++);
  await fetched;
  t.ok(s.services['fresh-0'], 'the app was fetched');
  t.equal(h.d.requests.find((r) => r.path === '/v2/apps/fresh')?.query.get('embed'), 'app.tasks');
});

t.test('api_post_event and deployments fetch the apps they name; a 404 or app_terminated_event removes', async (t) => {
  const h = await harness(t);
  let n = h.snaps.count;
  const py = app(h.d, '/pywebserver');
  py.labels = { HAPROXY_GROUP: 'external', HAPROXY_0_VHOST: 'new.example.test' };
  h.d.pushEvent('api_post_event', { clientIp: '0:0:0:0:0:0:0:1', uri: '/v2/apps/pywebserver', appDefinition: { ...py, tasks: undefined } });
  let s = await h.snaps.next(n++);
  t.same(
    s.routes.filter((r) => r.entrypoint === 'web').map((r) => r.host),
    ['new.example.test'],
  );

  h.d.apps = h.d.apps.filter((a) => a.id !== '/spark');
  h.d.pushEvent('deployment_success', {
    id: '867ed450-f6a8-4d33-9b0e-e11c5513990b',
    plan: { id: '867ed450-f6a8-4d33-9b0e-e11c5513990b', steps: [{ actions: [{ action: 'StopApplication', app: '/spark' }] }] },
  });
  s = await h.snaps.next(n++);
  t.notOk(s.services['spark-0'], 'fetched, 404, removed');
  t.ok(h.d.requests.some((r) => r.path === '/v2/apps/spark'));

  const fetchesBefore = h.d.requests.length;
  h.d.pushEvent('app_terminated_event', { appId: '/toggle' });
  s = await h.snaps.next(n++);
  t.notOk(s.services['toggle-0']);
  t.equal(h.d.requests.length, fetchesBefore, 'removed without a fetch');

  // The event-bus documentation's deployment_info (old plan format: steps[].app).
  const py2 = app(h.d, '/pywebserver');
  tasksOf(py2).push({ id: 'pywebserver.2', host: '10.0.2.151', ports: [1777], state: 'TASK_RUNNING' });
  h.d.pushEvent('deployment_info', {
    plan: { id: 'p', steps: [{ action: 'ScaleApplication', app: '/pywebserver' }] },
    currentStep: { actions: [{ type: 'ScaleApplication', app: '/pywebserver' }] },
  });
  s = await h.snaps.next(n++);
  t.equal(eps(s, 'pywebserver-0').length, 2);

  // A deployment that names no app: a full resync.
  const syncs = h.d.count('/v2/apps');
  tasksOf(py2).pop();
  h.d.pushEvent('deployment_failed', { id: 'x' });
  s = await h.snaps.next(n++);
  t.equal(eps(s, 'pywebserver-0').length, 1);
  t.equal(h.d.count('/v2/apps'), syncs + 1);
});

t.test('reconnect: the stream drops, the provider reconnects and resyncs in full', async (t) => {
  const h = await harness(t);
  const n = h.snaps.count;
  // A change Marathon made while no event reached us.
  tasksOf(app(h.d, '/toggle')).splice(0, 1);
  h.d.dropStreams();
  const s = await h.snaps.next(n);
  t.same(
    eps(s, 'toggle-0').map((e) => e.port),
    [31234],
  );
  t.equal(h.d.count('/v2/events'), 2);
  t.equal(h.d.count('/v2/apps'), 2);
  await waitFor(() => h.p.status().state === 'ok', { timeoutMs: 5000, what: 'state ok after the reconnect' });
  t.equal(h.p.status().lastError, undefined, 'a success clears the error');
});

t.test('Marathon down: degraded, the last snapshot kept; back up: a full resync', async (t) => {
  const h = await harness(t);
  const n = h.snaps.count;
  const from = h.logs.count;
  await h.d.stop();
  await h.logs.message('ECONNREFUSED', from);
  const st = h.p.status();
  t.equal(st.state, 'degraded');
  t.match(st.lastError, /ECONNREFUSED.*serving what was last fetched/);
  t.type(st.lastErrorAt, 'string');
  t.equal(h.snaps.count, n, 'nothing sent: the last good snapshot keeps serving');
  t.equal(st.details?.eventStream, 'disconnected');

  tasksOf(app(h.d, '/toggle')).splice(1, 1);
  await h.d.restart();
  const s = await h.snaps.next(n);
  t.same(
    eps(s, 'toggle-0').map((e) => e.port),
    [31045],
  );
  await waitFor(() => h.p.status().state === 'ok', { timeoutMs: 5000, what: 'state ok' });
});

t.test('Marathon without a leader (503 on /v2/apps) at start: start() resolves, state error, nothing sent', async (t) => {
  const h = await harness(t, {}, (d) => (d.appsStatus = 503));
  t.equal(h.snaps.count, 0);
  const st = h.p.status();
  t.equal(st.state, 'error');
  t.match(st.lastError, /HTTP 503: Could not determine the current leader/);
  h.d.appsStatus = undefined;
  const s = await h.snaps.next(0);
  t.ok(s.services['toggle-0'], 'retried with backoff, then served');
});

t.test('Marathon unreachable at start: start() resolves at once, state error, nothing sent', async (t) => {
  const d = new MarathonDouble();
  await d.start();
  const url = d.url;
  await d.stop(); // the port is free again: connections are refused
  const snaps = new SnapshotRecorder();
  const p = new MarathonProvider({ url: [url, `${url}/marathon`], backoffMinMs: 20, backoffMaxMs: 100 });
  t.teardown(() => p.stop());
  await p.start(snaps.sink);
  t.equal(snaps.count, 0);
  const st = p.status();
  t.equal(st.state, 'error');
  t.match(st.lastError, /ECONNREFUSED/);
  t.same(st.details?.urls, [`${url}/`, `${url}/marathon`], 'both urls listed, without credentials');
  await waitFor(() => p.status().details?.url === `${url}/marathon`, { timeoutMs: 5000, what: 'the next url to be tried' });
});

t.test('no event stream (404) but /v2/apps answers: served, polled on each retry, degraded', async (t) => {
  const h = await harness(t, {}, (d) => (d.eventsStatus = 404));
  t.equal(h.snaps.count, 1);
  t.equal(h.p.status().state, 'degraded');
  t.match(h.p.status().lastError, /event stream .*HTTP 404/);
  tasksOf(app(h.d, '/toggle')).splice(0, 1);
  const s = await h.snaps.next(1);
  t.equal(eps(s, 'toggle-0').length, 1, 'the next poll saw the change');
});

t.test('auth: basic credentials and DC/OS tokens are sent; a 401 is reported without the secret', async (t) => {
  const basic = `Basic ${Buffer.from('admin:s3cret').toString('base64')}`;
  const ok = await harness(t, { auth: { username: 'admin', password: 's3cret' } }, (d) => (d.requireAuthorization = basic));
  t.equal(ok.snaps.count, 1);

  const inUrl = new MarathonDouble();
  inUrl.apps = docsApps();
  inUrl.requireAuthorization = basic;
  await inUrl.start();
  const snaps = new SnapshotRecorder();
  const logs = new LogRecorder();
  const p = new MarathonProvider({
    url: inUrl.url.replace('http://', 'http://admin:s3cret@'),
    groups: ['*'],
    logger: createLogger({ level: 'debug', destination: logs }),
  });
  t.teardown(async () => {
    await p.stop();
    await inUrl.stop();
  });
  await p.start(snaps.sink);
  t.equal(snaps.count, 1, 'credentials in the url work');
  t.equal(p.status().details?.url, inUrl.url + '/', 'and are not shown');

  const token = await harness(t, { token: 'eyJhbGciOi.token' }, (d) => (d.requireAuthorization = 'token=eyJhbGciOi.token'));
  t.equal(token.snaps.count, 1, 'Authorization: token=<jwt>, as DC/OS wants');

  const wrong = await harness(t, { auth: { username: 'admin', password: 'wrong-pw' } }, (d) => (d.requireAuthorization = basic));
  t.equal(wrong.snaps.count, 0);
  t.equal(wrong.p.status().state, 'error');
  t.match(wrong.p.status().lastError, /HTTP 401: Please log in/);
  const all = JSON.stringify(wrong.p.status()) + JSON.stringify(wrong.logs.items) + JSON.stringify(logs.items);
  t.notOk(
    all.includes('wrong-pw') || all.includes('s3cret') || all.includes(Buffer.from('admin:wrong-pw').toString('base64')),
    'no secret in status or logs',
  );
});

t.test('groups: this instance serves only its marathon-lb groups; "*" serves all', async (t) => {
  const internal = await harness(t, { groups: ['internal'] });
  const s = internal.snaps.items[0];
  t.same(s?.routes, []);
  t.same(s?.entrypoints, {});
  t.ok(s?.services['pywebserver-0'], 'the service (DNS, VIPs) is there all the same');
  const all = await harness(t, { groups: ['*'] });
  // Every app now, grouped or not: each service port gets its marathon-lb frontend.
  t.same(
    Object.keys(all.snaps.items[0]?.entrypoints ?? {}).sort(),
    ['marathon-10000', 'marathon-10002', 'marathon-10101'],
    'http ports (an HTTP health check or a VHOST)',
  );
  t.same(
    all.snaps.items[0]?.services['service-prod-0']?.vips.filter((v) => v.address !== undefined),
    [{ address: '127.0.0.1', port: 10200, protocol: 'tcp' }],
    'a tcp port: an IP VIP',
  );
});

t.test('warnings are kept in status and logged once', async (t) => {
  const h = await harness(t, {}, (d) => {
    const py = d.findApp('/pywebserver') as Record<string, unknown>;
    py.labels = { HAPROXY_GROUP: 'external', HAPROXY_0_VHOST: 'myvhost.com', HAPROXY_0_BACKEND_HEAD: 'backend x' };
  });
  const st = h.p.status();
  t.same(st.details?.warnings, [
    { app: '/pywebserver', message: 'marathon-lb labels Portico does not support (ignored): HAPROXY_0_BACKEND_HEAD' },
  ]);
  t.equal(st.details?.warningCount, 1);
  await h.logs.message('HAPROXY_0_BACKEND_HEAD', 0);
  const n = h.snaps.count;
  h.d.pushEvent('status_update_event', {
    taskId: 'toggle.802df2ae-3ad4-11e4-a400-56847afe9799',
    taskStatus: 'TASK_FAILED',
    appId: '/toggle',
  });
  await h.snaps.next(n);
  t.equal(h.logs.items.filter((l) => l.msg.includes('HAPROXY_0_BACKEND_HEAD')).length, 1, 'not repeated for an unchanged warning');
});

t.test('stop() closes the stream and every connection; status says stopped', async (t) => {
  const h = await harness(t);
  t.equal(h.d.streamCount, 1);
  await h.p.stop();
  await waitFor(() => h.d.connectionCount === 0, { timeoutMs: 5000, what: 'every connection to the double closed' });
  t.equal(h.p.status().state, 'stopped');
  await h.p.stop();
  t.equal(h.p.status().state, 'stopped', 'stop() again resolves and changes nothing');
});

t.test('stop() during a start() that waits on a silent Marathon: both return', async (t) => {
  const sockets: net.Socket[] = [];
  const mute = net.createServer((s) => sockets.push(s)); // accepts, never answers
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => mute.close(() => r()));
  });
  const p = new MarathonProvider({ url: `http://127.0.0.1:${(mute.address() as net.AddressInfo).port}`, connectTimeoutMs: 60_000 });
  const started = p.start(() => undefined);
  await waitFor(() => sockets.length > 0, { timeoutMs: 5000, what: 'the provider to connect' });
  await withTimeout(p.stop(), 5000, 'stop()');
  await withTimeout(started, 5000, 'start() to return after stop()');
  t.equal(p.status().state, 'stopped');
});

t.test('resync() fetches the whole state on demand', async (t) => {
  const h = await harness(t);
  tasksOf(app(h.d, '/toggle')).splice(0, 1);
  t.equal(await h.p.resync(), true);
  t.equal(eps(h.snaps.items[h.snaps.count - 1], 'toggle-0').length, 1);
  h.d.appsStatus = 503;
  t.equal(await h.p.resync(), false);
  t.equal(h.p.status().state, 'degraded');
  t.match(h.p.status().lastError, /HTTP 503/);
});

t.test('bad options are refused at construction', async (t) => {
  t.throws(() => new MarathonProvider({ url: 'not a url' }), /is not a url/);
  t.throws(() => new MarathonProvider({ url: 'ftp://x' }), /must be http:\/\/ or https:\/\//);
  t.throws(() => new MarathonProvider({ url: [] }), /at least one url/);
});
