/**
 * What the Consul provider hands over when its sink takes changes: two providers watch one Consul api
 * double (double.ts; no Consul binary can be installed here), one handing a sink with `change` (deltas
 * after the first snapshot), the other a plain function (whole snapshots). After each change made in Consul,
 * the deltas applied to a model of the provider's knowledge give the whole snapshot, two real Aggregators
 * (fed `change` and `update`) serve the same table, and the deltas of the step name exactly the service the
 * step changed. A blocking query that reads everything again (an index reset) hands over nothing.
 */
import t from 'tap';
import type { Test } from 'tap';
import type { Snapshot, SnapshotDelta } from '../../../src/model/types.js';
import { ConsulProvider } from '../../../src/providers/consul/index.js';
import { waitFor } from '../../helpers/wait.js';
import { Feed, agree, sameObjects, type Handover } from '../feed.js';
import { ConsulDouble } from './double.js';
import { FAST, watches } from './harness.js';

interface Setup {
  consul: ConsulDouble;
  pd: ConsulProvider;
  pw: ConsulProvider;
  fd: Feed;
  fw: Feed;
}

async function setup(t: Test): Promise<Setup> {
  const consul = await ConsulDouble.start();
  consul.registerNode('node1', '10.0.0.1');
  consul.registerNode('node2', '10.0.0.2');
  for (const [id, node] of [
    ['web-1', 'node1'],
    ['web-2', 'node2'],
  ] as const)
    consul.register({ name: 'web', id, node, port: 8080, tags: ['portico.http.host=web.example.test'] });
  consul.register({ name: 'api', id: 'api-1', node: 'node1', address: '10.1.0.9', port: 9000 });
  const pd = new ConsulProvider({ url: consul.url, ...FAST });
  const pw = new ConsulProvider({ url: consul.url, ...FAST });
  const fd = new Feed('consul', 50, true);
  const fw = new Feed('consul', 50, false);
  t.teardown(async () => {
    await pd.stop();
    await pw.stop();
    fd.agg.close();
    fw.agg.close();
    await consul.close();
  });
  await pd.start(fd.sink);
  await pw.start(fw.sink);
  return { consul, pd, pw, fd, fw };
}

type View = Pick<Snapshot, 'services' | 'routes'>;

/**
 * Make a change in Consul and wait until both providers have handed over a state where `done` holds.
 * Returns the delta feed's hand-overs of the step.
 */
async function step(s: Setup, what: string, act: () => void, done: (v: View) => boolean): Promise<Handover[]> {
  const nd = s.fd.count;
  const nw = s.fw.count;
  act();
  const modelView = (): View => ({ services: s.fd.model.services, routes: [...s.fd.model.routes.values()] });
  await s.fd.handovers.until(() => done(modelView()), 5000, `${what}: the delta feed`, nd);
  await s.fw.handovers.until((h) => h.kind === 'snapshot' && done(h.snapshot), 5000, `${what}: the whole feed`, nw);
  return s.fd.handovers.items.slice(nd);
}

/** The services and routes the hand-overs of a step name, all deltas (else a failure). */
function named(t: Test, hs: Handover[], what: string): { services: string[]; routes: string[]; keys: string[] } {
  const services = new Set<string>();
  const routes = new Set<string>();
  const keys = new Set<string>();
  for (const h of hs) {
    if (h.kind !== 'delta') {
      t.fail(`${what}: a whole snapshot where a delta was expected`);
      continue;
    }
    const d: SnapshotDelta = h.delta;
    for (const k of Object.keys(d)) keys.add(k);
    for (const n of [...Object.keys(d.upsert ?? {}), ...(d.remove ?? [])]) services.add(n);
    for (const id of [...(d.upsertRoutes ?? []).map((r) => r.id), ...(d.removeRoutes ?? [])]) routes.add(id);
  }
  return { services: [...services].sort(), routes: [...routes].sort(), keys: [...keys].sort() };
}

const ports = (v: View, name: string): string[] => (v.services[name]?.endpoints ?? []).map((e) => `${e.address}:${e.port}`);

/** Services read and not yet looked at by the provider. */
const pending = (p: ConsulProvider): number => p.status().details?.pending as number;

function lastWhole(s: Setup): Snapshot {
  const h = s.fw.last();
  if (h?.kind !== 'snapshot') throw new Error('the whole feed has no snapshot');
  return h.snapshot;
}

t.test('one instance change is a delta naming that one service; deltas and whole snapshots serve the same table', async (t) => {
  const s = await setup(t);
  t.equal(s.fd.handovers.items[0]?.kind, 'snapshot', 'the first hand-over is whole');
  agree(t, s.fd, s.fw, 'start');

  const before = lastWhole(s);
  let hs = await step(
    s,
    'check critical',
    () => s.consul.setCheck('web-1', 'critical', { node: 'node1' }),
    (v) => ports(v, 'web').length === 1,
  );
  let n = named(t, hs, 'check critical');
  t.same(n, { services: ['web'], routes: [], keys: ['upsert'] }, 'an instance failing: exactly its service');
  agree(t, s.fd, s.fw, 'check critical');
  sameObjects(t, before, lastWhole(s), ['web'], 'whole snapshots');

  hs = await step(
    s,
    'new instance',
    () => s.consul.register({ name: 'api', id: 'api-2', node: 'node2', address: '10.1.0.10', port: 9000 }),
    (v) => ports(v, 'api').length === 2,
  );
  n = named(t, hs, 'new instance');
  t.same(n, { services: ['api'], routes: [], keys: ['upsert'] }, 'an instance joining: exactly its service');
  agree(t, s.fd, s.fw, 'new instance');

  hs = await step(
    s,
    'new service',
    () => s.consul.register({ name: 'db', id: 'db-1', node: 'node1', port: 5432, tags: ['portico.http.host=db.example.test'] }),
    (v) => v.services.db !== undefined,
  );
  n = named(t, hs, 'new service');
  t.same(n.services, ['db']);
  t.same(n.routes, ['consul/db/db.example.test/'], 'its route, by id');
  agree(t, s.fd, s.fw, 'new service');

  // Instances that disagree on a key: a warning (handed over whole) and the union of their hosts.
  hs = await step(
    s,
    'disagree',
    () =>
      s.consul.register({
        name: 'api',
        id: 'api-2',
        node: 'node2',
        address: '10.1.0.10',
        port: 9000,
        tags: ['portico.http.host=api.example.test'],
      }),
    (v) => v.routes.some((r) => r.host === 'api.example.test'),
  );
  n = named(t, hs, 'disagree');
  t.same(n.services, [], 'the service itself is the same: not named');
  t.same(n.routes, ['consul/api/api.example.test/']);
  t.ok(n.keys.includes('warnings'), 'the warnings, whole');
  t.match(s.fd.model.warnings, [{ subject: 'api', message: /instances disagree on portico\.http\.host/ }]);
  agree(t, s.fd, s.fw, 'disagree');

  hs = await step(
    s,
    'service gone',
    () => s.consul.deregister('db-1', 'node1'),
    (v) => v.services.db === undefined,
  );
  n = named(t, hs, 'service gone');
  t.same(n.services, ['db']);
  t.same(n.routes, ['consul/db/db.example.test/']);
  agree(t, s.fd, s.fw, 'service gone');

  // A snapshot restore: every loop reads everything afresh. Nothing differs, nothing is handed over.
  const nd = s.fd.count;
  const nw = s.fw.count;
  // Every query blocked at the reset is answered at once (the double abandons them): a loop blocking now has
  // asked again since.
  const loops = watches(s.pd) + watches(s.pw);
  const mark = s.consul.requests.length;
  s.consul.resetIndex();
  await waitFor(
    () =>
      s.consul.requestsTo('/v1/', mark).filter((r) => r.query.index !== undefined).length >= loops &&
      s.consul.blocking === loops &&
      pending(s.pd) === 0 &&
      pending(s.pw) === 0,
    { timeoutMs: 5000, what: 'every loop to read afresh and block again, and what they read to be looked at', intervalMs: 5 },
  );
  t.ok(
    s.consul.requestsTo('/v1/health/service/', mark).some((r) => r.query.index === undefined),
    'the loops read everything afresh',
  );
  t.equal(s.fd.count, nd, 'delta feed: nothing handed over');
  t.equal(s.fw.count, nw, 'whole feed: nothing handed over');
});

t.test('a new route sharing a key with another: whole snapshot, so the route served is the one it would be', async (t) => {
  const s = await setup(t);
  // `shop` sorts before `web`: in a whole snapshot its route comes first and is served.
  const hs = await step(
    s,
    'shop',
    () => s.consul.register({ name: 'shop', id: 'shop-1', node: 'node1', port: 7000, tags: ['portico.http.host=web.example.test'] }),
    (v) => v.services.shop !== undefined,
  );
  t.same(
    hs.map((h) => h.kind),
    ['snapshot'],
    'the claim order may change: a whole snapshot',
  );
  agree(t, s.fd, s.fw, 'shop');
  t.same(
    s.fd.agg.current().routes.map((r) => r.service),
    ['shop@consul'],
    'the first route in the provider order wins the key',
  );
});
