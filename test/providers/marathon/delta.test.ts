/**
 * What the Marathon provider hands over when its sink takes changes: two providers watch one Marathon api
 * double (api-double.ts), one handing a sink with `change` (deltas after the first snapshot), the other a
 * plain function (whole snapshots). Each step changes Marathon as Marathon would (its state, and the event
 * it publishes); then
 *   - every delta applied to a model of the provider's knowledge gives what the whole snapshot says,
 *   - a real Aggregator fed the deltas (`change`) serves what one fed the whole snapshots (`update`) does,
 *   - and a delta names exactly what the step changed: one task, one service.
 * The tables are compared by content, not by hash: an aggregator's hash also covers the position a route was
 * first claimed at: a delta claims a new route after the provider's others, a whole snapshot at its index.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import type { SnapshotDelta } from '../../../src/model/types.js';
import { MarathonProvider } from '../../../src/providers/marathon/index.js';
import { Feed, agree as agreeFeeds, deltaOf, sameObjects, type Handover } from '../feed.js';
import { MarathonDouble } from './api-double.js';

const docsApps = (): Array<Record<string, unknown>> =>
  (JSON.parse(readFileSync(join(__dirname, 'fixtures', 'apps.json'), 'utf8')) as { apps: Array<Record<string, unknown>> }).apps;

interface Setup {
  d: MarathonDouble;
  pd: MarathonProvider;
  pw: MarathonProvider;
  fd: Feed;
  fw: Feed;
}

async function setup(t: Test): Promise<Setup> {
  const d = new MarathonDouble();
  d.apps = docsApps();
  await d.start();
  const opts = { url: d.url, groups: ['external'], debounceMs: 5, resyncIntervalMs: 0 };
  const pd = new MarathonProvider(opts);
  const pw = new MarathonProvider(opts);
  const fd = new Feed('marathon', 50, true);
  const fw = new Feed('marathon', 50, false);
  t.teardown(async () => {
    await pd.stop();
    await pw.stop();
    fd.agg.close();
    fw.agg.close();
    await d.stop();
  });
  await pd.start(fd.sink);
  await pw.start(fw.sink);
  return { d, pd, pw, fd, fw };
}

function agree(t: Test, s: Setup, what: string): void {
  agreeFeeds(t, s.fd, s.fw, what);
}

/** Run `act` and wait for one hand-over from each provider; returns the delta feed's. */
async function step(s: Setup, what: string, act: () => unknown): Promise<Handover> {
  const nd = s.fd.count;
  const nw = s.fw.count;
  await act();
  const h = await s.fd.handovers.until(() => true, 5000, `${what}: the delta feed's hand-over`, nd);
  await s.fw.handovers.until(() => true, 5000, `${what}: the whole feed's hand-over`, nw);
  return h;
}

function delta(t: Test, h: Handover, what: string): SnapshotDelta {
  return deltaOf(t, h, what);
}

const app = (d: MarathonDouble, id: string) => d.findApp(id) as Record<string, unknown> & { tasks: Array<Record<string, unknown>> };

t.test('one task change is a delta naming that one service; deltas and whole snapshots serve the same table', async (t) => {
  const s = await setup(t);
  t.equal(s.fd.handovers.items[0]?.kind, 'snapshot', 'the first hand-over is whole');
  agree(t, s, 'start');

  // A task is killed: Marathon drops it and says so.
  const toggle = app(s.d, '/toggle');
  toggle.tasks = toggle.tasks.filter((x) => x.id !== 'toggle.802df2ae-3ad4-11e4-a400-56847afe9799');
  const beforeKill = s.fw.handovers.items[s.fw.count - 1] as Handover & { kind: 'snapshot' };
  let h = await step(s, 'kill', () =>
    s.d.pushEvent('status_update_event', {
      taskId: 'toggle.802df2ae-3ad4-11e4-a400-56847afe9799',
      taskStatus: 'TASK_KILLED',
      appId: '/toggle',
      host: '10.141.141.10',
      ports: [31045],
    }),
  );
  let d = delta(t, h, 'kill');
  t.same(Object.keys(d), ['upsert'], 'kill: only services');
  t.same(Object.keys(d.upsert ?? {}), ['toggle-0'], 'kill: exactly the one service');
  t.same(
    d.upsert?.['toggle-0']?.endpoints.map((e) => e.port),
    [31234],
  );
  agree(t, s, 'kill');
  const afterKill = s.fw.handovers.items[s.fw.count - 1] as Handover & { kind: 'snapshot' };
  sameObjects(t, beforeKill.snapshot, afterKill.snapshot, ['toggle-0'], 'whole snapshots');

  // A new task runs.
  const task = { id: 'pywebserver.0b6e2d3f-6ca9-11e7-beb2-0e2beceebfcc', appId: '/pywebserver', host: '10.0.2.149', ports: [1999] };
  app(s.d, '/pywebserver').tasks.push({ ...task, state: 'TASK_RUNNING' });
  h = await step(s, 'start', () => s.d.pushEvent('status_update_event', { ...task, taskId: task.id, taskStatus: 'TASK_RUNNING' }));
  d = delta(t, h, 'start');
  t.same(Object.keys(d), ['upsert']);
  t.same(Object.keys(d.upsert ?? {}), ['pywebserver-0'], 'start: exactly the one service');
  agree(t, s, 'start');

  // A task fails its health check.
  const left = app(s.d, '/toggle').tasks[0] as Record<string, unknown>;
  left.healthCheckResults = [{ alive: false, taskId: left.id }];
  h = await step(s, 'unhealthy', () =>
    s.d.pushEvent('health_status_changed_event', { appId: '/toggle', instanceId: left.id, taskId: left.id, alive: false }),
  );
  d = delta(t, h, 'unhealthy');
  t.same(Object.keys(d.upsert ?? {}), ['toggle-0'], 'unhealthy: exactly the one service');
  t.same(
    d.upsert?.['toggle-0']?.endpoints.map((e) => e.health),
    ['unhealthy'],
  );
  agree(t, s, 'unhealthy');

  // A deployment changes the app's VHOST: its routes, by id.
  const py = app(s.d, '/pywebserver');
  py.labels = { HAPROXY_GROUP: 'external', HAPROXY_0_VHOST: 'new.example.test' };
  h = await step(s, 'vhost', () => s.d.pushEvent('api_post_event', { uri: '/v2/apps/pywebserver', appDefinition: { id: '/pywebserver' } }));
  d = delta(t, h, 'vhost');
  t.same(d.removeRoutes?.sort(), ['marathon/pywebserver-0/web/myvhost.com/', 'marathon/pywebserver-0/websecure/myvhost.com/']);
  t.same(d.upsertRoutes?.map((r) => r.id).sort(), [
    'marathon/pywebserver-0/web/new.example.test/',
    'marathon/pywebserver-0/websecure/new.example.test/',
  ]);
  t.notOk(d.upsert, 'vhost: no service changed');
  agree(t, s, 'vhost');

  // The app is gone.
  h = await step(s, 'terminated', () => {
    s.d.apps = s.d.apps.filter((a) => a.id !== '/spark');
    s.d.pushEvent('app_terminated_event', { appId: '/spark' });
  });
  d = delta(t, h, 'terminated');
  t.same(d.remove?.sort(), ['spark-0', 'spark-1', 'spark-2']);
  t.notOk(d.upsert);
  agree(t, s, 'terminated');

  // Marathon changed while no event said so; the periodic resync finds the one app that differs.
  const prod = app(s.d, '/prod/service');
  (prod.tasks[0] as Record<string, unknown>).state = 'TASK_KILLING';
  h = await step(s, 'resync', () => Promise.all([s.pd.resync(), s.pw.resync()]));
  d = delta(t, h, 'resync');
  t.same(Object.keys(d), ['upsert']);
  t.same(Object.keys(d.upsert ?? {}), ['service-prod-0'], 'resync: exactly the one service that differs');
  agree(t, s, 'resync');

  const nd = s.fd.count;
  const nw = s.fw.count;
  t.same(await Promise.all([s.pd.resync(), s.pw.resync()]), [true, true]);
  t.equal(s.fd.count, nd, 'a resync that finds nothing new hands over nothing (delta feed)');
  t.equal(s.fw.count, nw, 'nor a whole snapshot (whole feed)');
});

t.test('a new route sharing a key with another: whole snapshot, so the heavier route is served as it would be', async (t) => {
  const s = await setup(t);
  // A second app on pywebserver's VHOST, heavier (marathon-lb serves the heavier BACKEND_WEIGHT first).
  const shop = structuredClone(app(s.d, '/pywebserver'));
  shop.id = '/shop';
  shop.labels = { HAPROXY_GROUP: 'external', HAPROXY_0_VHOST: 'myvhost.com', HAPROXY_0_BACKEND_WEIGHT: '5', HAPROXY_0_PORT: '10102' };
  shop.tasks = [{ id: 'shop.1', appId: '/shop', host: '10.0.2.160', ports: [1600], state: 'TASK_RUNNING' }];
  s.d.apps.push(shop);
  const h = await step(s, 'shop', () => s.d.pushEvent('api_post_event', { uri: '/v2/apps/shop', appDefinition: { id: '/shop' } }));
  t.equal(h.kind, 'snapshot', 'the route claim order may change: a whole snapshot');
  agree(t, s, 'shop');
  const served = s.fd.agg.current().routes.filter((r) => r.entrypoint === 'web' && r.host === 'myvhost.com');
  t.same(
    served.map((r) => r.service),
    ['shop-0@marathon'],
    'the heavier route wins the key',
  );

  // Only a weight changes: no route's content does, but the other one is now served first.
  const py = app(s.d, '/pywebserver');
  py.labels = { HAPROXY_GROUP: 'external', HAPROXY_0_VHOST: 'myvhost.com', HAPROXY_0_BACKEND_WEIGHT: '10' };
  const w = await step(s, 'weight', () =>
    s.d.pushEvent('api_post_event', { uri: '/v2/apps/pywebserver', appDefinition: { id: '/pywebserver' } }),
  );
  t.equal(w.kind, 'snapshot', 'a weight alone reorders the claims: a whole snapshot');
  agree(t, s, 'weight');
  t.same(
    s.fd.agg
      .current()
      .routes.filter((r) => r.entrypoint === 'web' && r.host === 'myvhost.com')
      .map((r) => r.service),
    ['pywebserver-0@marathon'],
    'the now heavier route wins the key',
  );

  // After it, changes are deltas again.
  const task = app(s.d, '/shop').tasks[0] as Record<string, unknown>;
  task.state = 'TASK_KILLING';
  const k = await step(s, 'killing', () =>
    s.d.pushEvent('status_update_event', {
      taskId: 'shop.1',
      appId: '/shop',
      taskStatus: 'TASK_KILLING',
      host: '10.0.2.160',
      ports: [1600],
    }),
  );
  t.same(Object.keys(delta(t, k, 'killing').upsert ?? {}), ['shop-0']);
  agree(t, s, 'killing');
});
