/**
 * Scale: a match against 10,000 routes does the same work as against 100, counted by the router
 * (`CompiledRouter.work`: host tiers, route groups, routes compared, radix-tree edges) rather than timed.
 * Timings are printed as comments for a reader; `npm run bench -- l7` is where speed is judged.
 */
import t from 'tap';
import { performance } from 'node:perf_hooks';
import { compileRouter, type CompiledRouter, type MatchWork } from '../../../src/l7/routing/index.js';
import type { Route } from '../../../src/model/types.js';
import { headers, route, table } from './helpers.js';

/** `hosts` exact hosts × `paths` prefix paths (+ one exact path each), plus wildcards and a catch-all. */
function routesFor(hosts: number, paths: number): Route[] {
  const out: Route[] = [];
  for (let h = 0; h < hosts; h++) {
    for (let p = 0; p < paths; p++) out.push(route({ id: `h${h}p${p}`, host: `app${h}.example.test`, path: `/svc${p}/api` }));
    out.push(route({ id: `h${h}x`, host: `app${h}.example.test`, path: '/exact', pathMatch: 'exact' }));
    if (h % 10 === 0) out.push(route({ id: `w${h}`, host: `*.zone${h}.example.test`, path: '/' }));
  }
  out.push(route({ id: 'any', host: '*', path: '/' }));
  return out;
}

interface Req {
  host: string;
  path: string;
  want: string;
}

function requestsFor(hosts: number, paths: number, n: number): Req[] {
  const reqs: Req[] = [];
  for (let i = 0; i < n; i++) {
    const h = (i * 7919) % hosts;
    const p = (i * 104729) % paths;
    switch (i % 4) {
      case 0:
        reqs.push({ host: `app${h}.example.test`, path: `/svc${p}/api/users/42`, want: `h${h}p${p}` });
        break;
      case 1:
        reqs.push({ host: `App${h}.Example.Test:8080`, path: '/exact', want: `h${h}x` });
        break;
      case 2: {
        const z = h - (h % 10);
        reqs.push({ host: `a.zone${z}.example.test`, path: '/x', want: `w${z}` });
        break;
      }
      default:
        reqs.push({ host: `app${h}.example.test`, path: `/nothing/here`, want: 'any' });
    }
  }
  return reqs;
}

const get = headers();

type Work = Omit<MatchWork, 'matches'>;
const KINDS = ['hostsResolved', 'tiers', 'groups', 'routes', 'edges'] as const;

/** The work of each match of `reqs` (counted by the router), after one warm-up pass that fills the host cache. */
function workPerMatch(r: CompiledRouter, reqs: Req[]): Work[] {
  for (const q of reqs) r.match(q.host, q.path, 'GET', get);
  const out: Work[] = [];
  for (const q of reqs) {
    const before = { ...r.work };
    r.match(q.host, q.path, 'GET', get);
    const w = {} as Work;
    for (const k of KINDS) w[k] = r.work[k] - before[k];
    out.push(w);
  }
  return out;
}

/** The largest count of each kind over `ws`. */
function most(ws: Work[]): Work {
  const m = { hostsResolved: 0, tiers: 0, groups: 0, routes: 0, edges: 0 };
  for (const w of ws) for (const k of KINDS) m[k] = Math.max(m[k], w[k]);
  return m;
}

/** Best-of-`rounds` nanoseconds per match over `reqs`: reported, not judged (the counts above are). */
function nsPerMatch(r: CompiledRouter, reqs: Req[], rounds = 5, loops = 20): number {
  let best = Infinity;
  let sink = 0;
  for (let round = 0; round < rounds; round++) {
    const t0 = performance.now();
    for (let l = 0; l < loops; l++) {
      for (let i = 0; i < reqs.length; i++) {
        const q = reqs[i] as Req;
        const m = r.match(q.host, q.path, 'GET', get);
        if (m !== undefined) sink++;
      }
    }
    best = Math.min(best, ((performance.now() - t0) * 1e6) / (loops * reqs.length));
  }
  if (sink === 0) throw new Error('nothing matched');
  return best;
}

t.test('10,000 routes: a match does the same work as with 100', async (t) => {
  const smallRoutes = routesFor(10, 9); // 10×(9+1) + 1 wildcard + any = 102
  const bigRoutes = routesFor(1000, 9); // 10,000 + 100 wildcards + any = 10,101
  t.ok(bigRoutes.length >= 10_000);

  const small = compileRouter(table(smallRoutes), 'web');
  const c0 = performance.now();
  const big = compileRouter(table(bigRoutes), 'web');
  const compileMs = performance.now() - c0;

  const smallReqs = requestsFor(10, 9, 1000);
  const bigReqs = requestsFor(1000, 9, 1000);
  for (const [r, reqs] of [
    [small, smallReqs],
    [big, bigReqs],
  ] as const) {
    let wrong = 0;
    for (const q of reqs) if (r.match(q.host, q.path, 'GET', get)?.route.id !== q.want) wrong++;
    t.equal(wrong, 0, `${r.size} routes: every request matches its route`);
  }

  // Same request shapes against 100× the routes: the most work any one match does is the same. A scan of
  // the routes, of a host's paths or of the wildcards would multiply one of these counts.
  const wSmall = most(workPerMatch(small, smallReqs));
  const wBig = most(workPerMatch(big, bigReqs));
  t.same(wBig, wSmall, `work per match with ${bigRoutes.length} routes as with ${smallRoutes.length}`);
  t.ok(wBig.routes <= 3 && wBig.groups <= 3 && wBig.tiers <= 3, `a handful of steps: ${JSON.stringify(wBig)}`);
  t.comment(
    `match: ${smallRoutes.length} routes ${nsPerMatch(small, smallReqs).toFixed(0)} ns, ${bigRoutes.length} routes ${nsPerMatch(big, bigReqs).toFixed(0)} ns; compile ${compileMs.toFixed(1)} ms`,
  );
});

t.test('one host with 10,000 prefixes: longest prefix without a scan', async (t) => {
  const mk = (n: number): Route[] => {
    const out: Route[] = [route({ id: 'root', host: 'one.test', path: '/' })];
    for (let i = 0; i < n; i++) out.push(route({ id: `p${i}`, host: 'one.test', path: `/tenant/${i}/` }));
    return out;
  };
  const small = compileRouter(table(mk(100)), 'web');
  const big = compileRouter(table(mk(10_000)), 'web');
  const reqs = (n: number): Req[] =>
    Array.from({ length: 1000 }, (_, i) => ({ host: 'one.test', path: `/tenant/${(i * 31) % n}/items/7`, want: `p${(i * 31) % n}` }));
  const rs = reqs(100);
  const rb = reqs(10_000);
  t.equal(big.match('one.test', '/tenant/9999/x', 'GET', get)?.route.id, 'p9999');
  t.equal(big.match('one.test', '/tenant/99999/x', 'GET', get)?.route.id, 'root');
  t.equal(big.match('one.test', '/tenant/12', 'GET', get)?.route.id, 'root');
  let wrong = 0;
  for (const q of rb) if (big.match(q.host, q.path, 'GET', get)?.route.id !== q.want) wrong++;
  t.equal(wrong, 0, 'every request finds its tenant');

  // The tree walk follows at most one edge per character of the path (fewer: edges carry several), and
  // one group and one route are tried: nothing depends on how many prefixes the host has.
  const perBig = workPerMatch(big, rb);
  const over = perBig.filter((w, i) => w.edges > (rb[i] as Req).path.length).length;
  t.equal(over, 0, 'no match follows more edges than its path has characters');
  const wSmall = most(workPerMatch(small, rs));
  const wBig = most(perBig);
  t.match(wBig, { tiers: 1, groups: 1, routes: 1 }, 'one tier, one group, one route per match');
  t.ok(
    wBig.edges <= wSmall.edges + 2,
    `edges grow with the digits of the tenant number, not the prefix count (${wSmall.edges} → ${wBig.edges})`,
  );
  t.comment(`one host: 101 prefixes ${nsPerMatch(small, rs).toFixed(0)} ns, 10,001 prefixes ${nsPerMatch(big, rb).toFixed(0)} ns`);
});
