import t from 'tap';
import { DEFAULT_STICKY_COOKIE, findCookie, StickyCookie, UpstreamSet, type Upstream } from '../../../src/l7/balance/index.js';
import type { Balance } from '../../../src/model/types.js';
import { Clock, ctx, ep, options, service, TestContext } from './helpers.js';

const sticky: Balance = { algorithm: 'sticky' };

function cookieOf(setCookie: string | undefined): string {
  const m = /^([^=]+)=([^;]*);/.exec(setCookie ?? '');
  if (!m) throw new Error(`bad Set-Cookie ${setCookie}`);
  return `${m[1]}=${m[2]}`;
}

t.test('sticky: no cookie → balanced + Set-Cookie; cookie round trip sticks', async (t) => {
  const clock = new Clock();
  const set = new UpstreamSet(service([ep(1), ep(2), ep(3)], sticky), undefined, options(clock));
  const b = set.balancer as StickyCookie;
  const c = new TestContext();

  const first = set.pick(c.set({})) as Upstream;
  const sc = b.setCookie(c, first);
  t.match(sc, new RegExp(`^${DEFAULT_STICKY_COOKIE}=[A-Za-z0-9_-]{16}; Path=/; HttpOnly; SameSite=Lax$`));
  t.notMatch(sc ?? '', /10\.0\.0|8080/, 'the id does not reveal the backend');
  t.match(b.setCookie(c, first, true), /; Secure$/);
  const cookie = cookieOf(sc);

  for (let i = 0; i < 50; i++) {
    const q = c.set({ headers: { cookie: `other=1; ${cookie}` } });
    const u = set.pick(q);
    if (u !== first) t.fail(`pick ${i} left the sticky upstream`);
    if (b.setCookie(q, first) !== undefined) t.fail('no Set-Cookie when the cookie already names it');
  }
  // a cookie-less client still gets every upstream in turn
  const fresh = new Set(Array.from({ length: 3 }, () => set.pick(c.set({}))));
  t.equal(fresh.size, 3);
});

t.test('sticky: stale, unknown or unavailable targets fall back and re-stick', async (t) => {
  const clock = new Clock();
  const set = new UpstreamSet(service([ep(1), ep(2), ep(3)], sticky), undefined, options(clock));
  const b = set.balancer as StickyCookie;
  const c = new TestContext();

  const q1 = c.set({ headers: { cookie: `${DEFAULT_STICKY_COOKIE}=bogus` } });
  const u1 = set.pick(q1) as Upstream;
  t.ok(u1);
  t.equal(findCookie(cookieOf(b.setCookie(q1, u1)), DEFAULT_STICKY_COOKIE), b.idOf(u1), 'unknown id → new cookie');

  const target = set.all[1] as Upstream;
  const cookie = `${DEFAULT_STICKY_COOKIE}=${b.idOf(target)}`;
  t.equal(set.pick(c.set({ headers: { cookie } })), target);
  target.setEjectedUntil(clock.t + 1000);
  const q2 = c.set({ headers: { cookie } });
  const u2 = set.pick(q2) as Upstream;
  t.not(u2, target, 'ejected target → another');
  t.equal(cookieOf(b.setCookie(q2, u2)), `${DEFAULT_STICKY_COOKIE}=${b.idOf(u2)}`, 're-stick to it');
  clock.advance(1001);
  t.equal(set.pick(c.set({ headers: { cookie } })), target, 'back after the ejection');
  t.not(set.pick(c.set({ headers: { cookie }, exclude: target })), target, 'a retry excludes it');

  // removed endpoint: its cookie is stale in the next table
  const next = new UpstreamSet(service([ep(1), ep(3)], sticky), set, set.options);
  const u3 = next.pick(c.set({ headers: { cookie } }));
  t.ok(u3 && u3.key !== target.key);
});

t.test('sticky: ids stable across tables and instances sharing a secret; custom cookie name', async (t) => {
  const clock = new Clock();
  const a = new UpstreamSet(service([ep(1), ep(2)], { algorithm: 'sticky', cookie: 'srv' }), undefined, options(clock));
  const b = new UpstreamSet(service([ep(2), ep(1), ep(3)], { algorithm: 'sticky', cookie: 'srv' }), undefined, options(new Clock()));
  const ida = (a.balancer as StickyCookie).idOf(a.all[0] as Upstream);
  const idb = (b.balancer as StickyCookie).idOf(b.get('10.0.0.1:8080') as Upstream);
  t.equal(ida, idb);
  t.equal(b.pick(ctx({ headers: { cookie: `srv=${ida}` } }))?.key, '10.0.0.1:8080');
  const other = new UpstreamSet(service([ep(1)], sticky), undefined, options(clock, { stickySecret: 'another' }));
  t.not((other.balancer as StickyCookie).idOf(other.all[0] as Upstream), ida, 'another secret, another id');
  t.equal(b.pick(ctx({ headers: { cookie: `${DEFAULT_STICKY_COOKIE}=${ida}` } })) !== undefined, true, 'the default name is not read');
});

t.test('findCookie', async (t) => {
  const cases: Array<[string | undefined, string, string | undefined]> = [
    ['a=1; b=2', 'a', '1'],
    ['a=1; b=2', 'b', '2'],
    ['a=1;b=2', 'b', '2'],
    ['ab=1; a=2', 'a', '2'],
    ['a=1, b=2', 'b', '2'],
    ['a="quoted"', 'a', 'quoted'],
    ['a=', 'a', ''],
    ['a=1 ', 'a', '1'],
    ['  a=1', 'a', '1'],
    ['a', 'a', undefined],
    ['b=1', 'a', undefined],
    ['', 'a', undefined],
    [undefined, 'a', undefined],
    ['a=1; a=2', 'a', '1'],
    ['x=a=b; y=2', 'x', 'a=b'],
  ];
  for (const [h, name, want] of cases) t.equal(findCookie(h, name), want, `${JSON.stringify(h)} ${name}`);
});

t.test('cookies are parsed only by policies that need them', async (t) => {
  const clock = new Clock();
  const c = new TestContext();
  for (const algorithm of ['roundrobin', 'weighted', 'leastconn', 'p2c'] as const) {
    const set = new UpstreamSet(service([ep(1), ep(2)], { algorithm }), undefined, options(clock));
    for (let i = 0; i < 10; i++) set.pick(c.set({ headers: { cookie: 'a=1' } }));
  }
  const ip = new UpstreamSet(service([ep(1), ep(2)], { algorithm: 'hash', hashOn: { kind: 'ip' } }), undefined, options(clock));
  ip.pick(c.set({ ip: '192.0.2.1', headers: { cookie: 'a=1' } }));
  t.equal(c.cookieReads, 0);
  const s = new UpstreamSet(service([ep(1), ep(2)], sticky), undefined, options(clock));
  s.pick(c.set({ headers: { cookie: 'a=1' } }));
  t.equal(c.cookieReads, 1);
});
