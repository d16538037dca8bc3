/**
 * The request filter chain through the plane, on real sockets: the list each route compiles to, the
 * order the filters answer in (a request that several would refuse gets the answer of the first), that a
 * refused request never reaches the backend, and that a table swap recompiles a route's list.
 */
import t from 'tap';
import type { Test } from 'tap';
import type { BasicAuth } from '../../../src/l7/filters/basic-auth.js';
import { NO_FILTERS } from '../../../src/l7/filters/index.js';
import type { Route } from '../../../src/model/types.js';
import { endpoint, service } from '../../helpers/snapshot.js';
import { RawClient, get, startBackend, startPlane, type Backend, type PlaneHarness } from '../helpers.js';

type R = Omit<Route, 'id' | 'provider'>;

const basic = (user: string, pw: string) => `Authorization: Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}\r\n`;
const users = [{ user: 'u', hash: '{PLAIN}right' }];
const r = (host: string, over: Partial<R> = {}): R => ({
  entrypoint: 'web',
  host,
  path: '/',
  pathMatch: 'prefix',
  service: 'web',
  ...over,
});

async function plane(t: Test, routes: R[]): Promise<{ h: PlaneHarness; b: Backend }> {
  const b = await startBackend(t, 'b');
  const h = await startPlane(t, { services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) }, routes });
  return { h, b };
}

/** The filter names each route of the plane's compiled table runs, by route host. */
function lists(h: PlaneHarness): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const route of h.table.routes) out[route.host] = (h.plane.current().routes.get(route.id)?.filters ?? []).map((f) => f.name);
  return out;
}

t.test('each route compiles to the filters it needs, in list order', async (t) => {
  const { h } = await plane(t, [
    r('open.test'),
    r('all.test', { redirectToHttps: true, allowFrom: ['127.0.0.0/8'], basicAuth: { realm: 'r', users }, maxBodyBytes: 10 }),
    r('limit.test', { maxBodyBytes: 10, allowFrom: ['127.0.0.0/8'] }),
  ]);
  t.same(lists(h), {
    'open.test': [],
    'all.test': ['redirect-to-https', 'allow-list', 'basic-auth', 'body-limit'],
    'limit.test': ['allow-list', 'body-limit'],
  });
  const open = h.table.routes.find((x) => x.host === 'open.test');
  t.equal(h.plane.current().routes.get(open?.id ?? '')?.filters, NO_FILTERS, 'a route without filters shares the empty list');
});

t.test('the first filter that refuses answers; refused requests never reach the backend', async (t) => {
  const { h, b } = await plane(t, [
    // Plain HTTP, outside the list, no credentials, too big: the redirect answers.
    r('redirect.test', { redirectToHttps: true, allowFrom: ['192.0.2.0/24'], basicAuth: { realm: 'r', users }, maxBodyBytes: 10 }),
    // Outside the list and no credentials: 403, no realm shown, nothing hashed.
    r('outside.test', { allowFrom: ['192.0.2.0/24'], basicAuth: { realm: 'r', users } }),
    // Inside the list, a body over the limit: 401 without credentials, 413 with them.
    r('inside.test', { allowFrom: ['127.0.0.0/8'], basicAuth: { realm: 'r', users }, maxBodyBytes: 10 }),
  ]);
  const port = h.port();
  const big = 'Content-Length: 11\r\n';

  const redirected = await get(port, 'redirect.test', '/p?q=1', big);
  t.equal(redirected.status, 308);
  t.equal(redirected.header('location'), 'https://redirect.test/p?q=1');

  const outside = await get(port, 'outside.test', '/', basic('u', 'right'));
  t.equal(outside.status, 403, 'the allow-list answers before basic auth');
  t.notOk(outside.has('www-authenticate'), 'the realm is not shown to a client outside the list');
  const outsideRoute = h.table.routes.find((x) => x.host === 'outside.test');
  const auth = h.plane.current().routes.get(outsideRoute?.id ?? '')?.auth as BasicAuth;
  t.equal(auth.hashes, 0, 'and its credentials cost no hashing');

  const anonymous = await get(port, 'inside.test', '/', big);
  t.equal(anonymous.status, 401, 'basic auth answers before the body limit');
  t.equal(anonymous.header('www-authenticate'), 'Basic realm="r"');
  const tooBig = await get(port, 'inside.test', '/', basic('u', 'right') + big);
  t.equal(tooBig.status, 413, 'past auth, the body limit answers');
  t.equal(b.requests.items.length, 0, 'none of these reached the backend');

  const fine = await get(port, 'inside.test', '/fine', basic('u', 'right'));
  t.equal(fine.status, 200, 'a request every filter lets go on is proxied');
  t.equal(b.requests.items.length, 1);
  t.equal(b.requests.items[0]?.target, '/fine');
});

t.test('a local answer keeps the connection; the next request runs the filters again', async (t) => {
  const { h, b } = await plane(t, [r('a.test', { basicAuth: { realm: 'r', users } })]);
  const c = await RawClient.connect(h.port());
  t.teardown(() => c.destroy());
  c.write(
    `GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: a.test\r\n${basic('u', 'right')}\r\nGET /3 HTTP/1.1\r\nHost: a.test\r\n\r\n`,
  );
  const statuses = [(await c.readResponse()).status, (await c.readResponse()).status, (await c.readResponse()).status];
  t.same(statuses, [401, 200, 401], 'judged per request, in order, on one connection');
  t.same(
    b.requests.items.map((q) => q.target),
    ['/2'],
  );
});

t.test('a table swap recompiles the lists: a setting removed takes its filter with it', async (t) => {
  const { h, b } = await plane(t, [r('a.test', { allowFrom: ['192.0.2.0/24'] })]);
  const port = h.port();
  t.equal((await get(port, 'a.test')).status, 403);
  h.apply({ services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) }, routes: [r('a.test', { maxBodyBytes: 5 })] });
  t.same(lists(h), { 'a.test': ['body-limit'] });
  t.equal((await get(port, 'a.test')).status, 200, 'the allow-list is gone');
  t.equal((await get(port, 'a.test', '/', 'Content-Length: 6\r\n')).status, 413, 'the body limit is in');
});
