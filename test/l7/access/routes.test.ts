/**
 * The route fields marathon-lb's USE_HSTS, AUTH and BACKEND_NETWORK_ALLOWED_ACL map onto, through the
 * plane on real sockets: Strict-Transport-Security on TLS only, Basic authentication with every hash
 * scheme (and its verification cache, and its hashing budget), and the source allow-list judged on the
 * socket peer or — behind a trusted proxy only — on X-Forwarded-For.
 */
import t from 'tap';
import type { Test } from 'tap';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { AllowList, effectiveClient } from '../../../src/l7/filters/allow-list.js';
import type { BasicAuth } from '../../../src/l7/filters/basic-auth.js';
import type { Route } from '../../../src/model/types.js';
import { endpoint, service } from '../../helpers/snapshot.js';
import { RawClient, get, startBackend, startPlane, type PlaneHarness, type TableParts } from '../helpers.js';

const run = promisify(execFile);
type R = Omit<Route, 'id' | 'provider'>;

async function makeCert(dir: string, name: string): Promise<{ certFile: string; keyFile: string; pem: string }> {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    `subjectAltName=DNS:${name}`,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  return { certFile, keyFile, pem: await readFile(certFile, 'utf8') };
}

const basic = (user: string, pw: string) => `Authorization: Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}\r\n`;

async function plane(
  t: Test,
  routes: R[],
  extra: Partial<TableParts> = {},
  options = {},
): Promise<{ h: PlaneHarness; b: Awaited<ReturnType<typeof startBackend>> }> {
  const b = await startBackend(t, 'b');
  const h = await startPlane(
    t,
    {
      services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
      routes,
      ...extra,
    },
    options,
  );
  return { h, b };
}

t.test('HSTS: on TLS responses of the route (proxied and local), never over plain HTTP', async (t) => {
  const cert = await makeCert(t.testdir(), 'h.example.test');
  const hsts = { maxAgeS: 15768000, includeSubdomains: true, preload: true };
  const { h, b } = await plane(
    t,
    [
      { entrypoint: 'web', host: 'h.example.test', path: '/', pathMatch: 'prefix', service: 'web', hsts },
      { entrypoint: 'websecure', host: 'h.example.test', path: '/', pathMatch: 'prefix', service: 'web', hsts },
      {
        entrypoint: 'websecure',
        host: 'h.example.test',
        path: '/private',
        pathMatch: 'prefix',
        service: 'web',
        hsts,
        allowFrom: ['192.0.2.0/24'],
      },
      { entrypoint: 'websecure', host: 'plain.example.test', path: '/', pathMatch: 'prefix', service: 'web' },
    ],
    {
      entrypoints: {
        web: { name: 'web', listen: '127.0.0.1:0', trustedProxies: [] },
        websecure: {
          name: 'websecure',
          listen: '127.0.0.1:0',
          trustedProxies: [],
          tls: { auto: false, certificates: [{ certFile: cert.certFile, keyFile: cert.keyFile }] },
        },
      },
    },
  );
  b.handler = (req) => ({ status: 200, headers: req.target === '/sts' ? [['Strict-Transport-Security', 'max-age=1']] : [], body: 'ok' });
  const tlsOpts = { tls: { servername: 'h.example.test', ca: cert.pem } };
  const secure = await get(h.port('websecure'), 'h.example.test', '/', '', tlsOpts);
  t.equal(secure.status, 200);
  t.same(secure.headerAll('strict-transport-security'), ['max-age=15768000; includeSubDomains; preload']);
  const replaced = await get(h.port('websecure'), 'h.example.test', '/sts', '', tlsOpts);
  t.same(
    replaced.headerAll('strict-transport-security'),
    ['max-age=15768000; includeSubDomains; preload'],
    "the backend's own value is replaced, not doubled",
  );
  const local = await get(h.port('websecure'), 'h.example.test', '/private', '', tlsOpts);
  t.equal(local.status, 403);
  t.equal(
    local.header('strict-transport-security'),
    'max-age=15768000; includeSubDomains; preload',
    'a local answer of the route carries it too',
  );
  const plain = await get(h.port('web'), 'h.example.test', '/');
  t.equal(plain.status, 200);
  t.notOk(plain.has('strict-transport-security'), 'never over plain HTTP (RFC 6797 §7.2)');
  const other = await get(h.port('websecure'), 'plain.example.test', '/', '', { tls: { servername: 'h.example.test', ca: cert.pem } });
  t.notOk(other.has('strict-transport-security'), 'a route without hsts adds nothing');

  h.apply({
    entrypoints: {
      web: { name: 'web', listen: '127.0.0.1:0', trustedProxies: [] },
      websecure: {
        name: 'websecure',
        listen: '127.0.0.1:0',
        trustedProxies: [],
        tls: { auto: false, certificates: [{ certFile: cert.certFile, keyFile: cert.keyFile }] },
      },
    },
    services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [
      {
        entrypoint: 'websecure',
        host: 'h.example.test',
        path: '/',
        pathMatch: 'prefix',
        service: 'web',
        hsts: { maxAgeS: 60, includeSubdomains: false, preload: false },
      },
    ],
  });
  const after = await get(h.port('websecure'), 'h.example.test', '/', '', tlsOpts);
  t.equal(after.header('strict-transport-security'), 'max-age=60', 'a table swap changes it (compiled per table)');
});

t.test('basic auth: 401 with the realm; every hash scheme; the Authorization field is forwarded', async (t) => {
  const users = [
    { user: 'six', hash: (await run('openssl', ['passwd', '-6', '-salt', 'abcdefgh', 'pw-six'])).stdout.trim() },
    { user: 'sixr', hash: (await run('openssl', ['passwd', '-6', '-salt', 'rounds=1200$abcdefgh', 'pw-sixr'])).stdout.trim() },
    { user: 'five', hash: (await run('openssl', ['passwd', '-5', '-salt', 'abcdefgh', 'pw-five'])).stdout.trim() },
    { user: 'one', hash: (await run('openssl', ['passwd', '-1', '-salt', 'abcdefgh', 'pw-one'])).stdout.trim() },
    { user: 'plain', hash: '{PLAIN}pw-plain' },
  ];
  const { h, b } = await plane(t, [
    { entrypoint: 'web', host: 'a.test', path: '/', pathMatch: 'prefix', service: 'web', basicAuth: { realm: 'ops "team"', users } },
    { entrypoint: 'web', host: 'open.test', path: '/', pathMatch: 'prefix', service: 'web' },
  ]);
  const port = h.port();
  const none = await get(port, 'a.test');
  t.equal(none.status, 401);
  t.equal(none.header('www-authenticate'), 'Basic realm="ops \\"team\\""', 'the challenge names the realm (quoted-string)');
  t.equal(b.requests.items.length, 0, 'nothing reached the backend');
  for (const u of ['six', 'sixr', 'five', 'one', 'plain']) {
    const ok = await get(port, 'a.test', `/${u}`, basic(u, `pw-${u}`));
    t.equal(ok.status, 200, `${u}: the right password passes`);
    const req = await b.requests.until((r) => r.target === `/${u}`, 2000, `the ${u} request`);
    t.equal(
      req.header('authorization'),
      `Basic ${Buffer.from(`${u}:pw-${u}`).toString('base64')}`,
      `${u}: Authorization forwarded as HAProxy does`,
    );
    const bad = await get(port, 'a.test', '/', basic(u, `pw-${u}-wrong`));
    t.equal(bad.status, 401, `${u}: a wrong password is refused`);
  }
  t.equal((await get(port, 'a.test', '/', basic('nobody', 'pw-six'))).status, 401, 'an unknown user is refused');
  t.equal((await get(port, 'a.test', '/', basic('Six', 'pw-six'))).status, 401, 'user names are case-sensitive');
  t.equal((await get(port, 'a.test', '/', 'Authorization: Bearer abc\r\n')).status, 401, 'another scheme is refused');
  t.equal((await get(port, 'a.test', '/', 'Authorization: Basic %%%\r\n')).status, 401, 'bad base64 is refused');
  t.equal(
    (await get(port, 'a.test', '/', `Authorization: basic ${Buffer.from('six:pw-six').toString('base64')}\r\n`)).status,
    200,
    'the scheme name is case-insensitive',
  );
  t.equal(
    (await get(port, 'a.test', '/', basic('six', 'pw-six') + basic('plain', 'pw-plain'))).status,
    401,
    'two Authorization fields are ambiguous: refused',
  );
  t.equal((await get(port, 'open.test', '/')).status, 200, 'a route without basicAuth is open');
  const logged = JSON.stringify(h.logs.lines.items);
  t.notMatch(logged, /pw-|cHct|authorization/i, 'no credential appears in the logs');
});

t.test('basic auth: a verified password is not hashed again; a table swap keeps the cache; the hashing budget', async (t) => {
  const hash = (await run('openssl', ['passwd', '-6', '-salt', 'cachesalt', 'right'])).stdout.trim();
  const route: R = {
    entrypoint: 'web',
    host: 'a.test',
    path: '/',
    pathMatch: 'prefix',
    service: 'web',
    basicAuth: { realm: 'r', users: [{ user: 'u', hash }] },
  };
  const { h, b } = await plane(t, [route], {}, { authHashesPerSecond: 1000 });
  const port = h.port();
  const auth = () => h.plane.current().routes.values().next().value?.auth as BasicAuth;
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  for (let i = 0; i < 5; i++) {
    c.write(`GET /${i} HTTP/1.1\r\nHost: a.test\r\n${basic('u', 'right')}\r\n`);
    t.equal((await c.readResponse()).status, 200);
  }
  t.equal(auth().hashes, 1, 'five requests, one crypt: the verification is cached');
  t.equal((await get(port, 'a.test', '/', basic('u', 'wrong'))).status, 401);
  t.equal(auth().hashes, 2, 'a wrong password is hashed (and not cached as good)');
  const before = auth();
  h.apply({
    services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [route, { ...route, host: 'other.test' }],
  });
  t.equal(auth(), before, 'an unchanged basicAuth keeps its compiled form across a table swap');
  t.equal((await get(port, 'a.test', '/', basic('u', 'right'))).status, 200);
  t.equal(auth().hashes, 2, 'still cached after the swap');
  h.apply({
    services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [{ ...route, basicAuth: { realm: 'r2', users: [{ user: 'u', hash }] } }],
  });
  t.not(auth(), before, 'a changed basicAuth is compiled anew');
  t.equal((await get(port, 'a.test', '/', basic('u', 'right'))).status, 200);
  t.equal(auth().hashes, 1, 'and verifies again once');
});

t.test('basic auth: beyond the hashing budget, unknown credentials get 429, known ones still pass', async (t) => {
  const hash = (await run('openssl', ['passwd', '-5', '-salt', 'budget', 'right'])).stdout.trim();
  const { h } = await plane(
    t,
    [
      {
        entrypoint: 'web',
        host: 'a.test',
        path: '/',
        pathMatch: 'prefix',
        service: 'web',
        basicAuth: { realm: 'r', users: [{ user: 'u', hash }] },
      },
    ],
    {},
    { authHashesPerSecond: 2 },
  );
  const port = h.port();
  // The budget's one-second window runs on Date.now: the test holds that clock still, then moves it,
  // instead of hoping a run of requests stays inside one second.
  const realNow = Date.now;
  let clock = realNow();
  Date.now = () => clock;
  t.teardown(() => {
    Date.now = realNow;
  });
  const status = async (password: string) => (await get(port, 'a.test', '/', basic('u', password))).status;
  const statuses: number[] = [await status('right')];
  for (let i = 0; i < 4; i++) statuses.push(await status(`guess${i}`));
  t.same(statuses, [200, 401, 429, 429, 429], 'in one window: the good password and one guess hashed, the rest throttled');
  t.equal(await status('right'), 200, 'verified credentials never need the budget');
  const throttled = await get(port, 'a.test', '/', basic('u', 'more0'));
  t.equal(throttled.status, 429);
  t.equal(throttled.header('retry-after'), '1');
  clock += 1000;
  t.same([await status('more1'), await status('more2'), await status('more3')], [401, 401, 429], 'a second later: a fresh budget of 2');
  Date.now = realNow;
});

t.test('allowFrom: the socket peer decides; X-Forwarded-For only from a trusted proxy', async (t) => {
  const r = (host: string, allowFrom: string[], entrypoint = 'web'): R => ({
    entrypoint,
    host,
    path: '/',
    pathMatch: 'prefix',
    service: 'web',
    allowFrom,
  });
  const { h, b } = await plane(
    t,
    [
      r('in.test', ['10.0.0.0/8', '127.0.0.0/8']),
      r('out.test', ['10.0.0.0/8']),
      r('nobody.test', []),
      r('in.test', ['10.0.0.0/8'], 'edge'),
      r('any.test', ['0.0.0.0/0'], 'edge'),
    ],
    {
      entrypoints: {
        web: { name: 'web', listen: '127.0.0.1:0', trustedProxies: [] },
        edge: { name: 'edge', listen: '127.0.0.1:0', trustedProxies: ['127.0.0.0/8', '172.16.0.0/12'] },
      },
    },
  );
  t.equal((await get(h.port(), 'in.test')).status, 200, '127.0.0.1 is inside 127.0.0.0/8');
  const out = await get(h.port(), 'out.test');
  t.equal(out.status, 403, '127.0.0.1 is outside 10.0.0.0/8');
  t.equal((await get(h.port(), 'nobody.test')).status, 403, 'an empty list allows nobody (fail closed)');
  t.equal(
    (await get(h.port(), 'out.test', '/', 'X-Forwarded-For: 10.1.2.3\r\n')).status,
    403,
    'an untrusted client cannot claim an address',
  );
  t.equal(b.seen('/').filter((q) => q.header('host') === 'out.test').length, 0, 'refused requests never reach the backend');
  // Behind a trusted proxy (127.0.0.1 is one on `edge`): the rightmost untrusted X-Forwarded-For entry.
  const edge = h.port('edge');
  t.equal((await get(edge, 'in.test', '/', 'X-Forwarded-For: 10.1.2.3\r\n')).status, 200, 'the forwarded client is inside');
  t.equal((await get(edge, 'in.test', '/', 'X-Forwarded-For: 192.168.1.1\r\n')).status, 403, 'the forwarded client is outside');
  t.equal(
    (await get(edge, 'in.test', '/', 'X-Forwarded-For: 10.1.2.3, 192.168.1.1\r\n')).status,
    403,
    'a client-supplied entry to the left does not count',
  );
  t.equal(
    (await get(edge, 'in.test', '/', 'X-Forwarded-For: 192.168.1.1, 10.9.9.9, 172.16.0.5\r\n')).status,
    200,
    'trusted hops on the right are skipped',
  );
  t.equal(
    (await get(edge, 'in.test', '/', 'X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-For: 192.168.1.1\r\n')).status,
    403,
    'repeated fields are one list',
  );
  t.equal((await get(edge, 'in.test', '/', 'X-Forwarded-For: not-an-ip\r\n')).status, 403, 'garbage is never inside');
  t.equal((await get(edge, 'in.test')).status, 403, 'no X-Forwarded-For: the peer (127.0.0.1) is judged');
  t.equal((await get(edge, 'any.test', '/', 'X-Forwarded-For: 203.0.113.9\r\n')).status, 200);

  // A keep-alive connection: the verdict follows the route of each request.
  const c = await RawClient.connect(h.port());
  t.teardown(() => c.destroy());
  c.write('GET / HTTP/1.1\r\nHost: in.test\r\n\r\nGET / HTTP/1.1\r\nHost: out.test\r\n\r\nGET / HTTP/1.1\r\nHost: in.test\r\n\r\n');
  t.same([(await c.readResponse()).status, (await c.readResponse()).status, (await c.readResponse()).status], [200, 403, 200]);
});

t.test('AllowList and effectiveClient (IPv4, IPv6, mapped addresses)', async (t) => {
  const l = new AllowList(['10.0.0.0/8', '192.0.2.7', 'fd00::/8', '::ffff:198.51.100.0/120', 'bogus']);
  t.same(l.invalid, ['bogus']);
  for (const ip of ['10.0.0.1', '10.255.255.255', '192.0.2.7', 'fd12::1', '::ffff:10.1.1.1', '198.51.100.20', '::ffff:198.51.100.20'])
    t.ok(l.allows(ip), `${ip} allowed`);
  for (const ip of ['11.0.0.1', '192.0.2.8', 'fe80::1', '::1', '', '10.0.0', '010.0.0.1', '10.0.0.1.2', '1.2.3.256', 'x'])
    t.notOk(l.allows(ip), `${ip} refused`);
  t.ok(new AllowList(['0.0.0.0/0']).allows('203.0.113.1'));
  t.notOk(new AllowList(['0.0.0.0/0']).allows('2001:db8::1'), 'an IPv4 range does not cover IPv6');
  t.ok(new AllowList(['::/0']).allows('2001:db8::1'));
  const trusted = (ip: string) => ip.startsWith('10.');
  t.equal(effectiveClient('10.0.0.1', true, '1.1.1.1, 2.2.2.2, 10.0.0.9', trusted), '2.2.2.2');
  t.equal(effectiveClient('10.0.0.1', true, '[2001:db8::5]:443', trusted), '2001:db8::5');
  t.equal(effectiveClient('10.0.0.1', true, '3.3.3.3:8080', trusted), '3.3.3.3');
  t.equal(effectiveClient('10.0.0.1', true, '10.0.0.2, 10.0.0.3', trusted), '10.0.0.2', 'all trusted: the leftmost');
  t.equal(effectiveClient('10.0.0.1', false, '1.1.1.1', trusted), '10.0.0.1', 'an untrusted peer is the client');
});
