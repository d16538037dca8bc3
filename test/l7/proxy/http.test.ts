/**
 * HTTP/1.1 behaviour through the proxy, checked on both sides: what the backend received (recorded
 * byte-exact by the raw backend) and what the client received (parsed byte-exact by the raw client).
 */
import t from 'tap';
import type { Test } from 'tap';
import { endpoint, service } from '../../helpers/snapshot.js';
import {
  RawClient,
  defaultReply,
  rawExchange,
  startBackend,
  startPlane,
  type Backend,
  type PlaneHarness,
  type Reply,
  waitFor,
} from '../helpers.js';

const HOST = 'a.test';

function handler(req: Parameters<typeof defaultReply>[0], b: Backend): Reply {
  const path = req.target.split('?')[0] as string;
  const slow = /^\/slow\/(\d+)\/(\w+)$/.exec(path);
  if (slow) return { status: 200, body: `slow ${slow[2]}`, delayMs: Number(slow[1]) };
  switch (path) {
    case '/hop':
      return {
        status: 200,
        headers: [
          ['Connection', 'X-Resp-Hop, keep-alive'],
          ['Keep-Alive', 'timeout=5'],
          ['Proxy-Connection', 'keep-alive'],
          ['TE', 'trailers'],
          ['Trailer', 'X-Resp-T'],
          ['Upgrade', 'h2c'],
          ['X-Resp-Hop', '1'],
          ['X-Resp-Keep', 'yes'],
        ],
        body: 'hop',
      };
    case '/chunked-trailers':
      return { status: 200, framing: 'chunked', headers: [['Trailer', 'X-Sum']], body: 'chunky body', trailers: [['X-Sum', '42']] };
    case '/close-delimited':
      return { status: 200, framing: 'close', body: 'until the end' };
    case '/204':
      return { status: 204, framing: 'none', headers: [['x-kind', 'no-content']] };
    case '/304':
      return {
        status: 304,
        framing: 'none',
        headers: [
          ['etag', '"v1"'],
          ['content-length', '11'],
        ],
      };
    default:
      return defaultReply(req, b);
  }
}

async function setup(t: Test): Promise<{ b: Backend; h: PlaneHarness; port: number }> {
  const b = await startBackend(t, 'b', handler);
  const h = await startPlane(t, {
    entrypoints: {
      web: { name: 'web', listen: '127.0.0.1:0', trustedProxies: [] },
      edge: { name: 'edge', listen: '127.0.0.1:0', trustedProxies: ['127.0.0.0/8'] },
    },
    services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [
      { entrypoint: 'web', host: HOST, path: '/', pathMatch: 'prefix', service: 'web' },
      { entrypoint: 'edge', host: HOST, path: '/', pathMatch: 'prefix', service: 'web' },
      { entrypoint: 'web', host: 'r.test', path: '/', pathMatch: 'prefix', service: 'web', redirectToHttps: true },
      { entrypoint: 'web', host: 's.test', path: '/api', pathMatch: 'prefix', service: 'web', stripPrefix: '/api', addPrefix: '/v2' },
    ],
  });
  return { b, h, port: h.port() };
}

async function client(t: Test, port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  return c;
}

t.test('hop-by-hop fields are removed in both directions; Via is added', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write(
    `GET /hop HTTP/1.1\r\nHost: ${HOST}\r\nConnection: keep-alive, X-Custom-Hop\r\nKeep-Alive: timeout=9\r\n` +
      'Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Custom-Hop: secret\r\n' +
      'Via: 1.1 upstream-cache\r\nX-Keep: yes\r\n\r\n',
  );
  const res = await c.readResponse();
  t.equal(res.status, 200);
  const req = await b.requests.until((r) => r.target === '/hop', 1000, 'the request');
  for (const name of ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'x-custom-hop']) {
    t.notOk(req.has(name), `backend did not get ${name}`);
  }
  t.equal(req.header('x-keep'), 'yes', 'an end-to-end field passes');
  t.same(req.headerAll('via'), ['1.1 upstream-cache', '1.1 portico'], "Via: the client's kept, ours added");
  for (const name of ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'x-resp-hop']) {
    t.notOk(res.has(name), `client did not get ${name}`);
  }
  t.equal(res.header('x-resp-keep'), 'yes');
  t.equal(res.header('via'), '1.1 portico', 'Via on the response');
  t.equal(res.text, 'hop');
  // The connection is still in step: a second request on it.
  c.write(`GET /again HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.equal((await c.readResponse()).text, 'b GET /again');
});

t.test('forwarding fields: replaced for an untrusted client, appended for a trusted one', async (t) => {
  const { b, h } = await setup(t);
  const spoof =
    'X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n' +
    'Forwarded: for=203.0.113.9;proto=https\r\nX-Real-IP: 203.0.113.9\r\n';
  for (const [ep, target] of [
    ['web', '/untrusted'],
    ['edge', '/trusted'],
  ] as const) {
    const r = await rawExchange(h.port(ep), `GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\n${spoof}Connection: close\r\n\r\n`);
    t.equal(r.responses[0]?.status, 200, `${ep}: served`);
  }
  const untrusted = b.seen('/untrusted')[0]!;
  t.same(untrusted.headerAll('x-forwarded-for'), ['127.0.0.1'], 'XFF: only the real peer');
  t.same(untrusted.headerAll('x-forwarded-proto'), ['http']);
  t.same(untrusted.headerAll('x-forwarded-host'), [HOST]);
  t.same(untrusted.headerAll('forwarded'), [`for=127.0.0.1;proto=http;host="${HOST}"`]);
  t.notOk(untrusted.has('x-real-ip'), 'X-Real-IP from an untrusted client is dropped');
  t.notMatch(untrusted.rawHead, /203\.0\.113\.9|evil\.test/, 'nothing the client claimed survives');

  const trusted = b.seen('/trusted')[0]!;
  t.same(trusted.headerAll('x-forwarded-for'), ['203.0.113.9, 127.0.0.1'], 'XFF: appended to');
  t.same(trusted.headerAll('x-forwarded-proto'), ['https'], "a trusted proxy's proto is kept");
  t.same(trusted.headerAll('x-forwarded-host'), ['evil.test'], "a trusted proxy's host is kept");
  t.same(
    trusted.headerAll('forwarded'),
    [`for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host="${HOST}"`],
    'Forwarded: appended to',
  );
});

t.test('X-Request-Id: kept when sent, created when not', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write(`GET /with-id HTTP/1.1\r\nHost: ${HOST}\r\nX-Request-Id: abc-123\r\n\r\nGET /without-id HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  await c.readResponse();
  await c.readResponse();
  t.same(b.seen('/with-id')[0]!.headerAll('x-request-id'), ['abc-123'], 'kept, not duplicated');
  const made = b.seen('/without-id')[0]!.headerAll('x-request-id');
  t.equal(made.length, 1);
  t.match(made[0], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a fresh UUID');
});

t.test('pipelining: three requests in one write get three responses in order', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  // The first is the slowest: a proxy that answered out of order would put "3" first.
  c.write(
    `GET /slow/150/1 HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET /slow/60/2 HTTP/1.1\r\nHost: ${HOST}\r\n\r\n` +
      `GET /slow/0/3 HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`,
  );
  const bodies = [];
  for (let i = 0; i < 3; i++) bodies.push((await c.readResponse()).text);
  t.same(bodies, ['slow 1', 'slow 2', 'slow 3'], 'responses in request order');
  t.same(
    b.seen('/slow').map((r) => r.target),
    ['/slow/150/1', '/slow/60/2', '/slow/0/3'],
  );
  t.equal(c.unread().length, 0, 'nothing else arrived');
  t.notOk(c.ended, 'the connection is still open');
  t.equal(b.connections, 1, 'one upstream connection, kept alive and reused');
});

t.test('a chunked request with trailers reaches the backend re-chunked, trailers included', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write(
    `POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n` +
      '5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n',
  );
  t.equal((await c.readResponse()).status, 200);
  const req = b.seen('/upload')[0]!;
  t.ok(req.chunked, 'sent chunked');
  t.notOk(req.has('content-length'), 'no Content-Length next to chunked');
  t.equal(req.body.toString(), 'hello world');
  t.same(req.trailers, [['X-Checksum', 'abc']], 'the trailer field arrives as a trailer');
});

t.test('response framing: chunked passes with trailers, close-delimited becomes chunked for HTTP/1.1', async (t) => {
  const { port } = await setup(t);
  const c = await client(t, port);
  c.write(`GET /chunked-trailers HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  const r1 = await c.readResponse();
  t.equal(r1.framing, 'chunked');
  t.equal(r1.text, 'chunky body');
  t.same(r1.trailers, [['X-Sum', '42']], 'trailers reach the client');
  c.write(`GET /close-delimited HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  const r2 = await c.readResponse();
  t.equal(r2.framing, 'chunked', 'a close-delimited body is re-framed as chunked');
  t.equal(r2.text, 'until the end');
  t.notOk(r2.has('connection'), 'and the client connection is kept');
  c.write(`GET /after HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.equal((await c.readResponse()).text, 'b GET /after', 'the same connection serves the next request');
});

t.test('an HTTP/1.0 client gets Content-Length or close-delimited responses, then the connection closes', async (t) => {
  const { b, port } = await setup(t);
  for (const path of ['/chunked-trailers', '/close-delimited', '/plain']) {
    const r = await rawExchange(port, `GET ${path} HTTP/1.0\r\nHost: ${HOST}\r\n\r\n`);
    t.ok(r.closed, `${path}: closed after the response`);
    t.equal(r.responses.length, 1);
    const res = r.responses[0]!;
    t.notOk(res.has('transfer-encoding'), `${path}: no chunked framing to an HTTP/1.0 client`);
    t.ok(res.framing === 'length' || res.framing === 'close', `${path}: framed by length or by close`);
    t.equal(res.text, path === '/plain' ? 'b GET /plain' : path === '/close-delimited' ? 'until the end' : 'chunky body');
  }
  t.equal(b.seen('/plain')[0]?.header('via'), '1.0 portico', "Via names the client's version");
});

t.test('Expect: 100-continue gets 100 Continue, then the response', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write(`PUT /put HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`);
  const interim = await c.readResponse();
  t.equal(interim.status, 100, '100 Continue before the body is sent');
  c.write('hello');
  const res = await c.readResponse();
  t.equal(res.status, 200);
  const req = b.seen('/put')[0]!;
  t.equal(req.body.toString(), 'hello');
  t.notOk(req.has('expect'), 'Expect is answered by the proxy, not forwarded');
});

t.test('a request body arriving in later reads is streamed to the backend', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write(`POST /pieces HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 10\r\n\r\n`);
  // The head is forwarded on its own; each piece of the body follows once the one before arrived.
  await waitFor(() => b.bytesReceived > 0, { timeoutMs: 2000, what: 'the head upstream' });
  let seen = b.bytesReceived;
  for (const piece of ['hel', 'lowo', 'rld']) {
    c.write(piece);
    await waitFor(() => b.bytesReceived >= seen + piece.length, { timeoutMs: 2000, what: `"${piece}" upstream` });
    seen = b.bytesReceived;
  }
  const res = await c.readResponse();
  t.equal(res.status, 200);
  t.equal(b.seen('/pieces')[0]?.body.toString(), 'helloworld');
});

t.test('a client that half-closes after its request still gets the response', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write(`GET /slow/50/half HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  c.end();
  const res = await c.readResponse();
  t.equal(res.status, 200);
  t.equal(res.text, 'slow half');
  t.equal(res.header('connection'), 'close', 'and is told the connection closes');
  await c.waitEnded(2000);
  t.equal(b.seen('/slow').length, 1);
});

t.test('pipelined requests followed at once by a half-close are all answered', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write(`GET /slow/30/1 HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET /slow/0/2 HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  c.end();
  t.equal((await c.readResponse()).text, 'slow 1');
  t.equal((await c.readResponse()).text, 'slow 2');
  await c.waitEnded(2000);
  t.equal(b.seen('/slow').length, 2);
});

t.test('Connection: close from the client: the response says so and the connection closes', async (t) => {
  const { port } = await setup(t);
  const c = await client(t, port);
  c.write(`GET /bye HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  const r = await c.readResponse();
  t.equal(r.header('connection'), 'close');
  await c.waitEnded(2000);
  t.equal(c.unread().length, 0, 'the request after Connection: close is not answered');
});

t.test('HEAD, 204 and 304 responses have no body and the connection stays usable', async (t) => {
  const { port } = await setup(t);
  const c = await client(t, port);
  c.write(`HEAD /head HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  const head = await c.readResponse({ head: true });
  t.equal(head.status, 200);
  t.equal(head.header('content-length'), String('b HEAD /head'.length), "HEAD keeps the representation's length");
  for (const [path, status] of [
    ['/204', 204],
    ['/304', 304],
  ] as const) {
    c.write(`GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    const r = await c.readResponse();
    t.equal(r.status, status);
    t.notOk(r.has('transfer-encoding'), `${status}: no chunked framing`);
  }
  c.write(`GET /next HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  const next = await c.readResponse();
  t.equal(next.text, 'b GET /next', 'the next response parses where the bodiless ones ended');
  t.equal(c.unread().length, 0, 'no stray bytes');
});

t.test('absolute-form targets are routed and sent upstream in origin-form', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write(`GET http://${HOST}/abs?q=1 HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.equal((await c.readResponse()).status, 200);
  t.equal(b.seen('/abs')[0]?.target, '/abs?q=1');
});

t.test('a 404 for no route keeps the connection alive', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write(`GET /x HTTP/1.1\r\nHost: nobody.test\r\n\r\n`);
  const r = await c.readResponse();
  t.equal(r.status, 404);
  t.notOk(r.has('connection'), 'not closed');
  c.write(`GET /found HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.equal((await c.readResponse()).status, 200, 'the same connection serves the next request');
  t.equal(b.requests.items.length, 1, 'the unrouted request never reached a backend');
});

t.test('redirectToHttps answers 308 with the https Location', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write('GET /some/page?x=1 HTTP/1.1\r\nHost: r.test:8080\r\n\r\n');
  const r = await c.readResponse();
  t.equal(r.status, 308);
  t.equal(r.header('location'), 'https://r.test/some/page?x=1');
  t.equal(b.requests.items.length, 0, 'nothing was proxied');
});

t.test('stripPrefix and addPrefix rewrite the path sent to the backend', async (t) => {
  const { b, port } = await setup(t);
  const c = await client(t, port);
  c.write('GET /api/users?id=7 HTTP/1.1\r\nHost: s.test\r\n\r\n');
  t.equal((await c.readResponse()).status, 200);
  t.equal(b.requests.items[0]?.target, '/v2/users?id=7');
});
