/**
 * The Marathon provider's app-by-app assembly (src/providers/marathon/assembly.ts) against `assemble`
 * (translate.ts), which puts every app together from scratch: after every step of a seeded random history
 * of apps coming, changing and going — sharing service names, service-port entrypoints, route keys and
 * BACKEND_WEIGHTs, so every rule that ties apps together is exercised — the assembly's whole snapshot must
 * equal assemble's (route order included), and what it reports as touched must cover everything that
 * differs from the step before.
 */
import t from 'tap';
import type { Entrypoint, Snapshot } from '../../../src/model/types.js';
import { Assembly } from '../../../src/providers/marathon/assembly.js';
import { assemble, type AppTranslation } from '../../../src/providers/marathon/translate.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const IDS = ['/a', '/b', '/c', '/d', '/e', '/f'];
const NAMES = ['web-0', 'web-1', 'api-0'];

function pick<T>(r: () => number, list: readonly T[]): T {
  return list[Math.floor(r() * list.length)] as T;
}

function piece(r: () => number, id: string): AppTranslation {
  const p: AppTranslation = { id, services: [], routes: [], entrypoints: [], warnings: [], verdicts: [], tasks: 0 };
  for (const name of NAMES) {
    if (r() < 0.5) continue;
    const endpoints = Array.from({ length: 1 + Math.floor(r() * 2) }, (_, i) => ({
      address: `10.0.0.${1 + i}`,
      port: 31000 + Math.floor(r() * 3),
      weight: 1,
      health: 'unknown' as const,
      task: id.slice(1),
      labels: {},
    }));
    p.tasks += endpoints.length;
    p.services.push({
      name,
      service: { name, framework: 'marathon', endpoints, balance: { algorithm: 'roundrobin' }, vips: [], labels: { 'marathon.app': id } },
    });
    const weight = pick(r, [0, 0, 1, 3]);
    for (const host of ['x.test', 'y.test']) {
      if (r() < 0.6) continue;
      p.routes.push({
        weight,
        route: { id: `marathon/${name}/web/${host}/`, entrypoint: 'web', host, path: '/', pathMatch: 'prefix', service: name },
      });
    }
  }
  for (const port of [80, 81]) {
    if (r() < 0.7) continue;
    const ep: Entrypoint = { name: `marathon-${port}`, listen: `127.0.0.${1 + IDS.indexOf(id)}:${port}`, trustedProxies: [] };
    p.entrypoints.push(ep);
    if (r() < 0.2) p.entrypoints.push({ ...ep }); // one app binding one service port twice
  }
  if (r() < 0.3) p.warnings.push(`warning ${Math.floor(r() * 3)}`);
  return p;
}

t.test('the assembly equals assemble after every change, and reports everything that changed', async (t) => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const r = rng(seed);
    const a = new Assembly('marathon');
    let last: Snapshot = a.snapshot();
    for (let step = 0; step < 200; step++) {
      const changes = new Map<string, AppTranslation | undefined>();
      const n = 1 + Math.floor(r() * 2);
      for (let k = 0; k < n; k++) {
        const id = pick(r, IDS);
        const had = a.piece(id);
        changes.set(id, r() < 0.2 ? undefined : had && r() < 0.1 ? had : piece(r, id));
      }
      const { touched } = a.update(changes);
      const got = a.snapshot();
      const want = assemble('marathon', a.pieces());
      if (JSON.stringify(got) !== JSON.stringify(want.snapshot)) {
        t.same(got, want.snapshot, `seed ${seed} step ${step}: snapshot`);
        return;
      }
      t.same(a.stats(), want.stats, `seed ${seed} step ${step}: stats`);
      t.same(a.appWarnings(), want.warnings, `seed ${seed} step ${step}: warnings`);

      const services = new Set(touched.services);
      for (const name of new Set([...Object.keys(last.services), ...Object.keys(got.services)])) {
        if (last.services[name] !== got.services[name] && !services.has(name)) {
          t.fail(`seed ${seed} step ${step}: service ${name} changed but is not touched`);
          return;
        }
      }
      const routes = new Set(touched.routes);
      const byId = (s: Snapshot) => new Map(s.routes.map((x) => [x.id as string, JSON.stringify(x)]));
      const before = byId(last);
      const after = byId(got);
      for (const id of new Set([...before.keys(), ...after.keys()])) {
        if (before.get(id) !== after.get(id) && !routes.has(id)) {
          t.fail(`seed ${seed} step ${step}: route ${id} changed but is not touched`);
          return;
        }
      }
      if (JSON.stringify(last.entrypoints) !== JSON.stringify(got.entrypoints) && !touched.entrypoints)
        t.fail(`seed ${seed} step ${step}: entrypoints changed but are not touched`);
      if (JSON.stringify(last.warnings ?? []) !== JSON.stringify(got.warnings ?? []) && !touched.warnings)
        t.fail(`seed ${seed} step ${step}: warnings changed but are not touched`);
      last = got;
    }
  }
  t.pass('every step of every seed matched assemble');
});

t.test('renamed services keep their objects while nothing about them changes', async (t) => {
  const a = new Assembly('marathon');
  const svc = (id: string) => ({
    name: 'web-0',
    framework: 'marathon',
    endpoints: [],
    balance: { algorithm: 'roundrobin' as const },
    vips: [],
    labels: { 'marathon.app': id },
  });
  const p = (id: string): AppTranslation => ({
    id,
    services: [{ name: 'web-0', service: svc(id) }],
    routes: [],
    entrypoints: [],
    warnings: [],
    verdicts: [],
    tasks: 0,
  });
  const web = p('/web');
  const other = p('/zz/web'); // gives the name web-0 too; the larger id is renamed
  a.update(new Map([['/web', web]]));
  a.update(new Map([['/zz/web', other]]));
  const first = a.snapshot();
  const renamedName = Object.keys(first.services).find((n) => n !== 'web-0') as string;
  t.match(renamedName, /^web-0-[0-9a-f]{6}$/);
  const { touched } = a.update(new Map([['/web', p('/web')]]));
  t.ok([...(touched.services ?? [])].includes(renamedName), 'the other claimant of the name was looked at again');
  t.equal(a.snapshot().services[renamedName], first.services[renamedName], 'and its renamed service is the same object');
  a.update(new Map([['/web', undefined]]));
  t.equal(a.snapshot().services['web-0'], other.services[0]?.service, 'the name passes to the other app, unrenamed');
  t.notOk(a.snapshot().services[renamedName]);
});
