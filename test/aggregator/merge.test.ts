/**
 * The incremental merge against a merge from scratch: after every step of a seeded random history of
 * snapshots and deltas from three providers (shared names, VIPs, route keys and entrypoints, so every
 * conflict rule is exercised), the merged content must equal what a fresh merge of the providers' current
 * knowledge gives, and the reported change must be exactly what differs from the last publish.
 */
import t from 'tap';
import type { Test } from 'tap';
import { MergeState, type TableContent } from '../../src/aggregator/merge.js';
import { ServiceMap } from '../../src/model/service-map.js';
import type { Endpoint, Service, Snapshot, SnapshotDelta } from '../../src/model/types.js';

type LocalService = Snapshot['services'][string];
type SnapRoute = Snapshot['routes'][number] & { id: string };

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const NAMES = ['web', 'api', 'db', 'cache', 'auth', 'mail'];
const HOSTS = ['a.test', 'b.test', '*'];

function endpoint(r: () => number): Endpoint {
  return {
    address: `10.0.0.${1 + Math.floor(r() * 4)}`,
    port: 8000 + Math.floor(r() * 3),
    weight: 1,
    health: r() < 0.8 ? 'healthy' : 'unhealthy',
    labels: r() < 0.3 ? { z: '1', a: '2' } : {},
  };
}

function service(r: () => number): LocalService {
  const n = Math.floor(r() * 3);
  const endpoints = Array.from({ length: n }, () => endpoint(r));
  const vips = r() < 0.4 ? [{ name: NAMES[Math.floor(r() * 3)] as string, port: 80, protocol: 'tcp' as const }] : [];
  return {
    name: 'x',
    framework: r() < 0.8 ? 'marathon' : 'other',
    endpoints,
    balance: { algorithm: 'roundrobin' },
    vips,
    labels: {},
  };
}

function route(r: () => number, provider: string, i: number): SnapRoute {
  return {
    id: `${provider}/r${i}`,
    entrypoint: r() < 0.8 ? 'web' : 'missing',
    host: HOSTS[Math.floor(r() * HOSTS.length)] as string,
    path: r() < 0.5 ? '/' : '/api',
    pathMatch: 'prefix',
    service: NAMES[Math.floor(r() * NAMES.length)] as string,
  };
}

/** What each provider knows now, whole. */
class Knowledge {
  services: Record<string, LocalService> = {};
  routes = new Map<string, SnapRoute>();
  entrypoints: Snapshot['entrypoints'] = {};
  warnings: Array<{ subject: string; message: string }> = [];
  constructor(readonly provider: string) {}
  snapshot(): Snapshot {
    return {
      provider: this.provider,
      services: { ...this.services },
      routes: [...this.routes.values()],
      entrypoints: this.entrypoints,
      warnings: this.warnings,
    };
  }
}

function fresh(knowledge: Map<string, { k: Knowledge; priority: number }>): TableContent {
  const m = new MergeState();
  for (const { k, priority } of knowledge.values()) {
    const snap = k.snapshot();
    // Route order matters within a provider (the first claim wins): a fresh merge gets them as a delta would.
    m.replace(k.provider, priority, { ...snap, routes: [] });
    m.apply(k.provider, priority, { upsertRoutes: [...k.routes.values()] });
  }
  return m.publish().content;
}

function json(c: TableContent): string {
  return JSON.stringify({ ...c, hash: '', sources: {} });
}

t.test('incremental merge equals a merge from scratch, and reports exactly what changed', async (t) => {
  history(t, [1, 2, 3, 4, 5], false);
});

t.test('providers that go (drop) and come again mid-history keep the merge equal to one from scratch', async (t) => {
  history(t, [11, 12, 13, 14, 15], true);
});

function history(t: Test, seeds: number[], drops: boolean): void {
  for (const seed of seeds) {
    const r = rng(seed);
    const m = new MergeState();
    const knowledge = new Map<string, { k: Knowledge; priority: number }>();
    for (const [name, priority] of [
      ['file', 100],
      ['marathon', 50],
      ['consul', 50],
    ] as const)
      knowledge.set(name, { k: new Knowledge(name), priority });
    let last = m.publish();
    let routeSeq = 0;
    for (let step = 0; step < 150; step++) {
      const names = [...knowledge.keys()];
      const { k } = knowledge.get(names[Math.floor(r() * names.length)] as string)!;
      const delta: SnapshotDelta = {};
      const kind = r();
      if (kind < 0.45) {
        const name = NAMES[Math.floor(r() * NAMES.length)] as string;
        if (r() < 0.25 && k.services[name]) {
          delete k.services[name];
          delta.remove = [name];
        } else {
          const s = service(r);
          k.services[name] = s;
          delta.upsert = { [name]: s };
        }
      } else if (kind < 0.7) {
        if (r() < 0.3 && k.routes.size) {
          const id = [...k.routes.keys()][Math.floor(r() * k.routes.size)] as string;
          k.routes.delete(id);
          delta.removeRoutes = [id];
        } else {
          const rt = route(r, k.provider, routeSeq++);
          k.routes.set(rt.id, rt);
          delta.upsertRoutes = [rt];
        }
      } else if (kind < 0.8) {
        k.entrypoints = r() < 0.7 ? { web: { name: 'web', listen: `127.0.0.1:${8000 + Math.floor(r() * 2)}`, trustedProxies: [] } } : {};
        delta.entrypoints = k.entrypoints;
      } else if (kind < 0.85) {
        k.warnings = r() < 0.5 ? [{ subject: 'x', message: `w${step}` }] : [];
        delta.warnings = k.warnings;
      } else if (kind < 0.9) {
        // A priority change reorders the decision: the next publish is whole.
        const e = knowledge.get(k.provider)!;
        e.priority = 40 + Math.floor(r() * 30);
      }
      const mode = r() < 0.5 ? 'delta' : 'snapshot';
      const p = knowledge.get(k.provider)!.priority;
      if (drops && r() < 0.08) {
        // The provider stops: it is forgotten, and comes again knowing nothing.
        m.drop(k.provider);
        knowledge.set(k.provider, { k: new Knowledge(k.provider), priority: p });
      }
      // The whole snapshot lists routes in the order they were first sent, which is their claim order.
      else if (mode === 'delta') m.apply(k.provider, p, delta);
      else m.replace(k.provider, p, k.snapshot());
      const out = m.publish();
      const want = fresh(knowledge);
      if (json(out.content) !== json(want)) {
        t.same(JSON.parse(json(out.content)), JSON.parse(json(want)), `seed ${seed} step ${step}: content`);
        return;
      }
      if (out.change) {
        const up = new Set(out.change.upserted);
        const rm = new Set(out.change.removed);
        for (const id of new Set([...last.content.services.keys(), ...out.content.services.keys()])) {
          const a = last.content.services.get(id);
          const b = out.content.services.get(id);
          if (a === b) continue;
          if (!(b ? up.has(id) : rm.has(id))) {
            t.fail(`seed ${seed} step ${step}: ${id} changed but the change does not say so`);
            return;
          }
        }
        for (const id of rm)
          if (out.content.services.has(id)) {
            t.fail(`seed ${seed} step ${step}: ${id} reported removed but present`);
            return;
          }
        if (!out.change.routes && out.content.routes !== last.content.routes) t.fail(`seed ${seed} step ${step}: routes`);
        if (!out.change.vips && out.content.vips !== last.content.vips) t.fail(`seed ${seed} step ${step}: vips`);
        if (!out.change.entrypoints && out.content.entrypoints !== last.content.entrypoints) t.fail(`seed ${seed} step ${step}: eps`);
      }
      let count = 0;
      for (const s of out.content.services.values()) count += s.endpoints.length;
      if (count !== out.endpoints) {
        t.equal(out.endpoints, count, `seed ${seed} step ${step}: endpoint count`);
        return;
      }
      last = out;
    }
  }
  t.pass('every step of every seed matched a fresh merge');
}

t.test('a whole snapshot is diffed: the same snapshot again changes nothing, one endpoint changes one service', async (t) => {
  const m = new MergeState();
  const snap = (port: number): Snapshot => ({
    provider: 'file',
    services: Object.fromEntries(
      NAMES.map((n, i) => [
        n,
        {
          name: n,
          framework: 'marathon',
          endpoints: [{ address: '10.0.0.1', port: n === 'web' ? port : 9000 + i, weight: 1, health: 'healthy', labels: {} }],
          balance: { algorithm: 'roundrobin' },
          vips: [],
          labels: {},
        } satisfies LocalService,
      ]),
    ),
    routes: [{ entrypoint: 'web', host: '*', path: '/', pathMatch: 'prefix', service: 'web' }],
    entrypoints: { web: { name: 'web', listen: '127.0.0.1:8080', trustedProxies: [] } },
  });
  t.ok(m.replace('file', 100, snap(1)));
  const first = m.publish();
  t.equal(first.change, undefined, 'the first publish is whole');
  t.notOk(m.replace('file', 100, snap(1)), 'an equal snapshot changes nothing');
  t.ok(m.replace('file', 100, snap(2)));
  const second = m.publish();
  t.same(second.change, { upserted: ['web@file'], removed: [], routes: false, entrypoints: false, vips: false });
  t.equal(second.content.routes, first.content.routes, 'routes are shared');
  t.equal(second.content.services.get('api@file'), first.content.services.get('api@file'), 'unchanged services are shared');
  t.not(second.content.hash, first.content.hash);
  t.ok(m.replace('file', 100, snap(1)));
  t.equal(m.publish().content.hash, first.content.hash, 'the same content hashes the same, whatever the path to it');
});

t.test('ServiceMap: versions share, never see each other, fold, iterate in id order', async (t) => {
  const svc = (id: string, port = 1): Service => ({
    id,
    name: id,
    provider: 'p',
    framework: 'f',
    endpoints: [{ address: '10.0.0.1', port, weight: 1, health: 'healthy', labels: {} }],
    balance: { algorithm: 'roundrobin' },
    vips: [],
    labels: {},
  });
  const base = ServiceMap.from(Array.from({ length: 1000 }, (_, i) => [`s${i}`, svc(`s${i}`)] as const));
  const v1 = base.with([svc('s1', 2), svc('new')], ['s2', 'absent']);
  t.equal(v1.size, 1000, 'one added, one removed, one absent ignored');
  t.equal(base.get('s1')?.endpoints[0]?.port, 1, 'the old version is unchanged');
  t.equal(v1.get('s1')?.endpoints[0]?.port, 2);
  t.notOk(v1.has('s2'));
  t.ok(base.has('s2'));
  t.ok(v1.has('new'));
  t.equal(v1.get('s3'), base.get('s3'), 'unchanged entries are the same objects');
  let v = v1;
  for (let i = 0; i < 600; i++) v = v.with([svc(`s${i}`, 3)]);
  t.equal(v.size, 1001, 's2 is back');
  t.equal(v.get('s599')?.endpoints[0]?.port, 3);
  t.equal(v1.get('s599')?.endpoints[0]?.port, 1, 'a fold does not reach older versions');
  t.same(v.keys().slice(0, 3), ['new', 's0', 's1']);
  t.same(Object.keys(v.toJSON()).slice(0, 3), ['new', 's0', 's1'], 'JSON is a record in id order');
  t.same([...ServiceMap.EMPTY], []);
  const back = v1.with([], ['new']).with([base.get('s2') as Service]);
  t.ok(back.has('s2') && !back.has('new'), 'removed and put back');
});

t.test(
  'equal content hashes equal whatever the route history: positions count only between a provider’s own claims of one key',
  async (t) => {
    const r = (id: string, host: string): SnapRoute => ({ id, entrypoint: 'web', host, path: '/', pathMatch: 'prefix', service: 'web' });
    const snap = (routes: SnapRoute[]): Snapshot => ({ provider: 'p', services: {}, routes, entrypoints: {} });
    const a = new MergeState();
    a.replace('p', 1, snap([r('a', 'a.test'), r('b', 'b.test'), r('c', 'c.test')]));
    a.publish();
    a.apply('p', 1, { removeRoutes: ['b'] });
    const viaDelta = a.publish();
    const b = new MergeState();
    b.replace('p', 1, snap([r('a', 'a.test'), r('c', 'c.test')]));
    t.equal(viaDelta.content.hash, b.publish().content.hash, 'a delta and a snapshot of the same routes hash the same');
    t.notOk(a.replace('p', 1, snap([r('a', 'a.test'), r('c', 'c.test')])), 'resending it whole changes nothing');
    // Two routes of one provider on one key: their order decides which is served, and the hash follows it.
    const first = new MergeState();
    first.replace('p', 1, snap([r('x', 'same.test'), r('y', 'same.test')]));
    const second = new MergeState();
    second.replace('p', 1, snap([r('y', 'same.test'), r('x', 'same.test')]));
    const f = first.publish().content;
    const s = second.publish().content;
    t.equal(f.routes[0]?.id, 'x');
    t.equal(s.routes[0]?.id, 'y');
    t.not(f.hash, s.hash, 'a different order on a shared key is a different table');
    t.ok(first.replace('p', 1, snap([r('y', 'same.test'), r('x', 'same.test')])), 'swapping them is a change');
    t.equal(first.publish().content.hash, s.hash);
  },
);

t.test('a provider arriving later takes its place in decision order: equal priority, the smaller name wins', async (t) => {
  const svc: LocalService = { name: 'x', framework: 'marathon', endpoints: [], balance: { algorithm: 'roundrobin' }, vips: [], labels: {} };
  const snap = (provider: string): Snapshot => ({
    provider,
    services: { web: { ...svc, vips: [{ name: 'web', port: 80, protocol: 'tcp' }] } },
    routes: [{ id: `${provider}/r`, entrypoint: 'web', host: 'a.test', path: '/', pathMatch: 'prefix', service: 'web' }],
    entrypoints: { web: { name: 'web', listen: `127.0.0.1:${provider === 'a' ? 1 : 2}`, trustedProxies: [] } },
  });
  const late = new MergeState();
  late.replace('b', 50, snap('b'));
  late.publish();
  late.replace('a', 50, snap('a'));
  late.replace('z', 10, { provider: 'z', services: {}, routes: [], entrypoints: {} });
  const got = late.publish();
  const early = new MergeState();
  early.replace('a', 50, snap('a'));
  early.replace('b', 50, snap('b'));
  early.replace('z', 10, { provider: 'z', services: {}, routes: [], entrypoints: {} });
  const want = early.publish();
  t.same(JSON.parse(json(got.content)), JSON.parse(json(want.content)), 'the same table whichever came first');
  t.equal(got.content.routes[0]?.provider, 'a', 'a wins the route');
  t.equal(got.content.entrypoints.web?.listen, '127.0.0.1:1', 'and the entrypoint');
  t.same(
    got.content.conflicts.map((c) => [c.kind, c.winner]),
    want.content.conflicts.map((c) => [c.kind, c.winner]),
  );
  t.ok(got.content.services.get('web@b')?.dnsHidden, "b's DNS name is hidden behind a's");
  t.ok(got.change, 'a newcomer is a change, not a whole table');
  late.drop('a');
  const back = late.publish();
  t.equal(back.content.routes[0]?.provider, 'b', 'a gone: b serves');
  t.notOk(back.content.services.get('web@b')?.dnsHidden);
});
