/**
 * The Outbox (src/providers/sent.ts) on its own: what it hands a sink with and without `change`, given a
 * provider's knowledge and what the provider touched — the first hand-over whole, then only what differs,
 * nothing when nothing does; a new route sharing a key with another, or a failed hand-over, makes the next
 * one whole.
 */
import t from 'tap';
import type { Snapshot, SnapshotDelta } from '../../src/model/types.js';
import { Outbox, type IdRoute, type Knowledge, type LocalService } from '../../src/providers/sent.js';
import type { SnapshotSink } from '../../src/providers/types.js';

class Known implements Knowledge {
  services = new Map<string, LocalService>();
  routes = new Map<string, { route: IdRoute; rank?: string }>();
  eps: Snapshot['entrypoints'] = {};
  warns: NonNullable<Snapshot['warnings']> = [];
  service(name: string) {
    return this.services.get(name);
  }
  route(id: string) {
    return this.routes.get(id);
  }
  entrypoints() {
    return this.eps;
  }
  warnings() {
    return this.warns;
  }
  snapshot(): Snapshot {
    const s: Snapshot = {
      provider: 'p',
      services: Object.fromEntries(this.services),
      routes: [...this.routes.values()].map((r) => r.route),
      entrypoints: this.eps,
    };
    if (this.warns.length) s.warnings = this.warns;
    return s;
  }
}

const svc = (name: string, port: number): LocalService => ({
  name,
  framework: 'f',
  endpoints: [{ address: '10.0.0.1', port, weight: 1, health: 'healthy', labels: {} }],
  balance: { algorithm: 'roundrobin' },
  vips: [],
  labels: {},
});
const route = (id: string, host: string, service = 'a'): IdRoute => ({
  id,
  entrypoint: 'web',
  host,
  path: '/',
  pathMatch: 'prefix',
  service,
});

type Got = { snapshot: Snapshot } | { delta: SnapshotDelta };

function sinks(): { got: Got[]; whole: SnapshotSink; changes: SnapshotSink } {
  const got: Got[] = [];
  const whole = (snapshot: Snapshot) => void got.push({ snapshot });
  const changes = Object.assign((snapshot: Snapshot) => void got.push({ snapshot }), {
    change: (delta: SnapshotDelta) => void got.push({ delta }),
  });
  return { got, whole, changes };
}

t.test('a sink without change: whole snapshots, only when something differs, unchanged objects kept', async (t) => {
  const { got, whole } = sinks();
  const k = new Known();
  const a = svc('a', 1);
  k.services.set('a', a).set('b', svc('b', 1));
  const o = new Outbox();
  t.match(o.send(whole, k, {}), { kind: 'snapshot', reason: 'first', services: 2 });
  t.match(o.send(whole, k, { services: ['a', 'b'], routes: ['x'], entrypoints: true, warnings: true }), { kind: 'none' });
  t.equal(got.length, 1, 'nothing differs: nothing handed over');
  k.services.set('b', svc('b', 2));
  t.match(o.send(whole, k, { services: ['b'] }), { kind: 'snapshot', reason: 'no-change-sink', services: 1 });
  t.equal(got.length, 2);
  const s = (got[1] as { snapshot: Snapshot }).snapshot;
  t.equal(s.services.a, a, 'the unchanged service is the object sent before');
  t.equal(s.services.b, k.services.get('b'));
});

t.test('a sink with change: a delta of what differs, by name and id', async (t) => {
  const { got, changes } = sinks();
  const k = new Known();
  k.services.set('a', svc('a', 1)).set('b', svc('b', 1));
  k.routes.set('r1', { route: route('r1', 'one.test'), rank: '0' });
  const o = new Outbox();
  o.send(changes, k, {});
  t.ok('snapshot' in (got[0] as Got), 'the first hand-over is whole');

  k.services.set('a', svc('a', 2));
  k.services.delete('b');
  k.routes.set('r2', { route: route('r2', 'two.test') });
  k.eps = { web: { name: 'web', listen: '127.0.0.1:80', trustedProxies: [] } };
  t.match(o.send(changes, k, { services: ['a', 'b', 'c'], routes: ['r1', 'r2'], entrypoints: true, warnings: true }), {
    kind: 'delta',
    services: 2,
    routes: 1,
    entrypoints: true,
    warnings: false,
  });
  t.same(got[1], {
    delta: { upsert: { a: k.services.get('a') }, remove: ['b'], upsertRoutes: [route('r2', 'two.test')], entrypoints: k.eps },
  });

  // A route whose rank changed but whose key nobody else has: nothing to hand over.
  k.routes.set('r1', { route: route('r1', 'one.test'), rank: '5' });
  t.match(o.send(changes, k, { routes: ['r1'], entrypoints: true }), { kind: 'none' });
  k.routes.delete('r2');
  t.match(o.send(changes, k, { routes: ['r2'] }), { kind: 'delta', routes: 1 });
  t.same(got[2], { delta: { removeRoutes: ['r2'] } });
});

t.test('a new route sharing a key with another of the provider: whole snapshot', async (t) => {
  const { got, changes } = sinks();
  const k = new Known();
  k.routes.set('r1', { route: route('r1', 'one.test', 'a') });
  const o = new Outbox();
  o.send(changes, k, {});
  k.routes.set('r0', { route: route('r0', 'one.test', 'b') });
  t.match(o.send(changes, k, { routes: ['r0'] }), { kind: 'snapshot', reason: 'route-order' });
  t.ok('snapshot' in (got[1] as Got));
  // Its rank moves while it shares the key: whole again; the other one's content changes in place: a delta.
  k.routes.set('r0', { route: route('r0', 'one.test', 'b'), rank: '9' });
  t.match(o.send(changes, k, { routes: ['r0'] }), { kind: 'snapshot', reason: 'route-order' });
  k.routes.set('r1', { route: { ...route('r1', 'one.test', 'a'), stripPrefix: '/x' } });
  t.match(o.send(changes, k, { routes: ['r1'] }), { kind: 'delta', routes: 1 });
});

t.test('a hand-over that throws: rethrown, and the next one is whole', async (t) => {
  const k = new Known();
  k.services.set('a', svc('a', 1));
  let fail = false;
  const got: Got[] = [];
  const sink = Object.assign((snapshot: Snapshot) => void got.push({ snapshot }), {
    change: (delta: SnapshotDelta) => {
      if (fail) throw new Error('refused');
      got.push({ delta });
    },
  });
  const o = new Outbox();
  o.send(sink, k, {});
  fail = true;
  k.services.set('a', svc('a', 2));
  t.throws(() => o.send(sink, k, { services: ['a'] }), /refused/);
  fail = false;
  t.match(o.send(sink, k, {}), { kind: 'snapshot', reason: 'after-failure' }, 'whole, though nothing was touched since');
  t.equal((got[1] as { snapshot: Snapshot }).snapshot.services.a, k.services.get('a'));
});
