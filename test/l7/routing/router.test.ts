import t from 'tap';
import { compileRouter, compileRouters, HOST_CACHE_SIZE, normalizeHost } from '../../../src/l7/routing/index.js';
import { headers, route, table } from './helpers.js';

t.test('normalizeHost', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['app.example.test', 'app.example.test', false],
    ['App.Example.TEST', 'app.example.test', false],
    ['app.example.test:8080', 'app.example.test', false],
    ['app.example.test.', 'app.example.test', false],
    ['APP.example.test.:443', 'app.example.test', false],
    ['[::1]:8080', '::1', true],
    ['[FD00::1]', 'fd00::1', true],
    ['fd00::1', 'fd00::1', true],
    ['10.0.0.1:80', '10.0.0.1', true],
    ['', '', false],
    [' spaced.test ', 'spaced.test', false],
  ];
  for (const [raw, name, ip] of cases) t.same(normalizeHost(raw), { name, ip }, JSON.stringify(raw));
});

const routes = [
  route({ id: 'app-root', host: 'app.example.test', path: '/' }),
  route({ id: 'app-api', host: 'app.example.test', path: '/api' }),
  route({ id: 'app-api-exact', host: 'app.example.test', path: '/api', pathMatch: 'exact' }),
  route({ id: 'app-api-v1', host: 'app.example.test', path: '/api/v1' }),
  route({ id: 'app-status-exact', host: 'app.example.test', path: '/api/v1/status', pathMatch: 'exact' }),
  route({ id: 'app-upload-put', host: 'app.example.test', path: '/upload', pathMatch: 'exact', methods: ['PUT'] }),
  route({ id: 'app-login', host: 'app.example.test', path: '/login' }),
  route({ id: 'app-login-post', host: 'app.example.test', path: '/login', methods: ['POST'] }),
  route({ id: 'app-beta', host: 'app.example.test', path: '/beta', headers: [{ name: 'X-Beta', value: '1' }] }),
  route({ id: 'app-beta-canary', host: 'app.example.test', path: '/beta', methods: ['GET'], headers: [{ name: 'x-canary' }] }),
  route({ id: 'other-x', host: 'other.example.test', path: '/x', pathMatch: 'exact' }),
  route({ id: 'ip4', host: '10.0.0.1', path: '/' }),
  route({ id: 'wild', host: '*.example.test', path: '/' }),
  route({ id: 'wild-only', host: '*.example.test', path: '/only-wild' }),
  route({ id: 'wild-b', host: '*.b.example.test', path: '/' }),
  route({ id: 'any', host: '*', path: '/' }),
  route({ id: 'any-static', host: '*', path: '/static' }),
];

t.test('precedence: host tiers, exact path, longest prefix, matchers', async (t) => {
  const r = compileRouter(table(routes), 'web');
  t.equal(r.size, routes.length);
  // [host, path, method, headers, expected route id]
  const cases: Array<[string, string, string, Record<string, string>, string | undefined]> = [
    // exact host, case, port, trailing dot
    ['app.example.test', '/', 'GET', {}, 'app-root'],
    ['APP.Example.Test:8080', '/api/users', 'GET', {}, 'app-api'],
    ['app.example.test.', '/api/v1/x', 'GET', {}, 'app-api-v1'],
    // exact path beats prefixes; prefix is byte-wise (path_beg)
    ['app.example.test', '/api', 'GET', {}, 'app-api-exact'],
    ['app.example.test', '/api/', 'GET', {}, 'app-api'],
    ['app.example.test', '/apix', 'GET', {}, 'app-api'],
    ['app.example.test', '/ap', 'GET', {}, 'app-root'],
    ['app.example.test', '/api/v1/status', 'GET', {}, 'app-status-exact'],
    ['app.example.test', '/api/v1/status/x', 'GET', {}, 'app-api-v1'],
    ['app.example.test', '/API', 'GET', {}, 'app-root'],
    // exact path whose method does not match falls through to prefixes
    ['app.example.test', '/upload', 'PUT', {}, 'app-upload-put'],
    ['app.example.test', '/upload', 'GET', {}, 'app-root'],
    // method matcher narrows and wins at the same path
    ['app.example.test', '/login', 'POST', {}, 'app-login-post'],
    ['app.example.test', '/login/x', 'POST', {}, 'app-login-post'],
    ['app.example.test', '/login', 'GET', {}, 'app-login'],
    ['app.example.test', '/login', 'post', {}, 'app-login'],
    // headers: value exact, presence-only; more matchers first; no match falls to a shorter prefix
    ['app.example.test', '/beta', 'GET', {}, 'app-root'],
    ['app.example.test', '/beta', 'GET', { 'x-beta': '1' }, 'app-beta'],
    ['app.example.test', '/beta', 'GET', { 'x-beta': '2' }, 'app-root'],
    ['app.example.test', '/beta', 'GET', { 'x-canary': '', 'x-beta': '1' }, 'app-beta-canary'],
    ['app.example.test', '/beta', 'HEAD', { 'x-canary': 'yes' }, 'app-beta-canary'],
    ['app.example.test', '/beta', 'POST', { 'x-canary': 'yes', 'x-beta': '1' }, 'app-beta'],
    // the exact host has "/" so it never falls through to the wildcard
    ['app.example.test', '/only-wild', 'GET', {}, 'app-root'],
    // wildcards: one or more labels, most specific suffix first, never the bare domain
    ['x.example.test', '/', 'GET', {}, 'wild'],
    ['X.EXAMPLE.TEST:80', '/only-wild/a', 'GET', {}, 'wild-only'],
    ['a.b.example.test', '/', 'GET', {}, 'wild-b'],
    ['a.b.example.test', '/only-wild', 'GET', {}, 'wild-b'],
    ['b.example.test', '/', 'GET', {}, 'wild'],
    ['a.x.y.example.test', '/', 'GET', {}, 'wild'],
    ['example.test', '/', 'GET', {}, 'any'],
    ['notexample.test', '/', 'GET', {}, 'any'],
    // a host with no matching route falls through to the next tier
    ['other.example.test', '/x', 'GET', {}, 'other-x'],
    ['other.example.test', '/y', 'GET', {}, 'wild'],
    // any host
    ['unknown.test', '/static/a.css', 'GET', {}, 'any-static'],
    ['unknown.test', '/', 'GET', {}, 'any'],
    ['', '/', 'GET', {}, 'any'],
    ['[::1]:8080', '/', 'GET', {}, 'any'],
    ['10.0.0.1:8080', '/', 'GET', {}, 'ip4'],
    ['10.0.0.2', '/', 'GET', {}, 'any'],
  ];
  for (const [host, path, method, h, want] of cases) {
    const m = r.match(host, path, method, headers(h));
    t.equal(m?.route.id, want, `${method} ${host}${path} ${JSON.stringify(h)} → ${want}`);
  }
  // repeated lookups hit the host cache and answer the same
  for (const [host, path, method, h, want] of cases) t.equal(r.match(host, path, method, headers(h))?.route.id, want);
});

t.test('no match without a catch-all', async (t) => {
  const r = compileRouter(
    table([route({ id: 'a', host: 'a.test', path: '/api' }), route({ id: 'w', host: '*.a.test', path: '/x', pathMatch: 'exact' })]),
    'web',
  );
  t.equal(r.match('a.test', '/', 'GET', headers()), undefined);
  t.equal(r.match('b.test', '/api', 'GET', headers()), undefined);
  t.equal(r.match('b.a.test', '/x/', 'GET', headers()), undefined);
  t.equal(r.match('b.a.test', '/x', 'GET', headers())?.route.id, 'w');
  t.equal(r.match('', '/api', 'GET', headers()), undefined);
  t.equal(compileRouter(table([]), 'web').match('a', '/', 'GET', headers()), undefined);
});

t.test('rewrite: stripPrefix then addPrefix, one leading slash', async (t) => {
  const cases: Array<[string | undefined, string | undefined, string, string]> = [
    ['/api', undefined, '/api/users', '/users'],
    ['/api', undefined, '/api', '/'],
    ['/api', undefined, '/apix', '/x'],
    ['/api/', undefined, '/api/users', '/users'],
    ['/api', undefined, '/other', '/other'],
    [undefined, '/v2', '/users', '/v2/users'],
    [undefined, '/v2/', '/users', '/v2/users'],
    [undefined, '/', '/users', '/users'],
    ['/api', '/v2', '/api/users', '/v2/users'],
    ['/api', '/v2', '/api', '/v2/'],
    [undefined, undefined, '/x/y', '/x/y'],
  ];
  for (const [stripPrefix, addPrefix, path, want] of cases) {
    const spec = { id: 'r', path: '/', ...(stripPrefix ? { stripPrefix } : {}), ...(addPrefix ? { addPrefix } : {}) };
    const m = compileRouter(table([route(spec)]), 'web').match('h', path, 'GET', headers());
    t.equal(m?.rewrite(path), want, `strip ${stripPrefix} add ${addPrefix}: ${path} → ${want}`);
  }
});

t.test('match objects: shared per route, the service named by id whether the table has it or not', async (t) => {
  const tbl = table([route({ id: 'a', host: 'a.test' }), route({ id: 'b', host: 'b.test', service: 'gone@test' })], ['gone@test']);
  const r = compileRouter(tbl, 'web');
  const m1 = r.match('a.test', '/x', 'GET', headers());
  const m2 = r.match('a.test', '/y', 'GET', headers());
  t.equal(m1, m2, 'same object for every request on the route');
  t.equal(m1?.service.id, 'a@test');
  t.equal(m1?.service, m2?.service, 'one reference per route');
  const mb = r.match('b.test', '/', 'GET', headers());
  t.equal(mb?.route.id, 'b');
  t.equal(mb?.service.id, 'gone@test', 'a missing service is named all the same: the compiled table has no set for it');
  t.same(
    r.routes().map((x) => x.route.id),
    ['a', 'b'],
  );
});

t.test('compileRouters: one router per entrypoint', async (t) => {
  const tbl = table([route({ id: 'w', entrypoint: 'web', host: 'a.test' }), route({ id: 's', entrypoint: 'websecure', host: 'a.test' })]);
  tbl.entrypoints.idle = { name: 'idle', listen: '127.0.0.1:0', trustedProxies: [] };
  const routers = compileRouters(tbl);
  t.same([...routers.keys()].sort(), ['idle', 'web', 'websecure']);
  t.equal(routers.get('web')?.match('a.test', '/', 'GET', headers())?.route.id, 'w');
  t.equal(routers.get('websecure')?.match('a.test', '/', 'GET', headers())?.route.id, 's');
  t.equal(routers.get('idle')?.match('a.test', '/', 'GET', headers()), undefined);
  t.equal(routers.get('idle')?.size, 0);
  t.equal(compileRouter(tbl, 'web').size, 1);
});

t.test('route hosts are normalised too (case, trailing dot)', async (t) => {
  const r = compileRouter(table([route({ id: 'a', host: 'A.Test.' }), route({ id: 'w', host: '*.Wild.Test' })]), 'web');
  t.equal(r.match('a.test', '/', 'GET', headers())?.route.id, 'a');
  t.equal(r.match('x.wild.test', '/', 'GET', headers())?.route.id, 'w');
});

t.test('the host cache is bounded and stays correct past its size', async (t) => {
  const r = compileRouter(
    table([route({ id: 'w', host: '*.example.test' }), route({ id: 'e', host: 'e.example.test', path: '/e' })]),
    'web',
  );
  for (let i = 0; i < HOST_CACHE_SIZE * 3; i++) {
    const host = `h${i}.example.test`;
    if (r.match(host, '/', 'GET', headers())?.route.id !== 'w') t.fail(host);
  }
  t.equal(r.match('e.example.test', '/e', 'GET', headers())?.route.id, 'e');
  t.equal(r.match('e.example.test', '/', 'GET', headers())?.route.id, 'w');
});
