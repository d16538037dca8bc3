/**
 * Scale: 10,000 routes compile quickly and a match costs about what it costs with 100 routes (a linear
 * scan would be ~100× slower). Timings are best-of-N to ride out GC and scheduler noise.
 */
import t from 'tap';
import { performance } from 'node:perf_hooks';
import { compileRouter, type CompiledRouter } from '../../../src/l7/routing/index.js';
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

/** Best-of-`rounds` nanoseconds per match over `reqs`. */
function nsPerMatch(r: CompiledRouter, reqs: Req[], rounds = 7, loops = 50): number {
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

t.test('10,000 routes: compile time and match time independent of route count', async (t) => {
  const smallRoutes = routesFor(10, 9); // 10×(9+1) + 1 wildcard + any = 102
  const bigRoutes = routesFor(1000, 9); // 10,000 + 100 wildcards + any = 10,101
  t.ok(bigRoutes.length >= 10_000);

  const small = compileRouter(table(smallRoutes), 'web');
  const c0 = performance.now();
  const big = compileRouter(table(bigRoutes), 'web');
  const compileMs = performance.now() - c0;
  t.ok(compileMs < 2000, `compile ${bigRoutes.length} routes in ${compileMs.toFixed(1)} ms`);

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

  nsPerMatch(small, smallReqs, 2);
  nsPerMatch(big, bigReqs, 2);
  const nsSmall = nsPerMatch(small, smallReqs);
  const nsBig = nsPerMatch(big, bigReqs);
  const ratio = nsBig / nsSmall;
  t.comment(
    `match: ${smallRoutes.length} routes ${nsSmall.toFixed(0)} ns, ${bigRoutes.length} routes ${nsBig.toFixed(0)} ns, ratio ${ratio.toFixed(2)}; compile ${compileMs.toFixed(1)} ms`,
  );
  // 100× more routes; a scan would be ~100× slower. Allow cache effects, not growth.
  t.ok(ratio < 5, `10k/100 match time ratio ${ratio.toFixed(2)} < 5`);
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
  nsPerMatch(small, rs, 2);
  nsPerMatch(big, rb, 2);
  const nsSmall = nsPerMatch(small, rs);
  const nsBig = nsPerMatch(big, rb);
  t.comment(`one host: 101 prefixes ${nsSmall.toFixed(0)} ns, 10,001 prefixes ${nsBig.toFixed(0)} ns`);
  t.ok(nsBig / nsSmall < 5, `ratio ${(nsBig / nsSmall).toFixed(2)} < 5`);
});
