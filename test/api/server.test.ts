import http from 'node:http';
import { Writable } from 'node:stream';
import t from 'tap';
import { ApiServer } from '../../src/api/server.js';
import { Reply } from '../../src/api/router.js';
import { ErrorCodes, PorticoError } from '../../src/model/errors.js';
import { createLogger } from '../../src/telemetry/log.js';
import { createRegistry } from '../../src/telemetry/metrics.js';
import { Aggregator } from '../../src/aggregator/aggregator.js';
import { snapshot, startApi, TOKEN } from './helpers.js';

const JSON_TYPE = 'application/json; charset=utf-8';

t.test('auth: 401 without a token or with a wrong one, 200 with the right one', async (t) => {
  const { request } = await startApi(t);
  const none = await request('/v1/table', { token: null });
  t.equal(none.status, 401);
  t.match(none.headers.get('www-authenticate'), /^Bearer realm="portico"$/);
  t.equal(none.json.error.code, ErrorCodes.API_UNAUTHORIZED);
  t.equal(none.headers.get('content-type'), JSON_TYPE);

  for (const wrong of ['', 'x', TOKEN.slice(1), `${TOKEN}a`, TOKEN.replace(/a$/, 'b'), TOKEN.repeat(20)]) {
    const res = await request('/v1/table', { token: wrong });
    t.equal(res.status, 401, `wrong token of length ${wrong.length}`);
    t.match(res.headers.get('www-authenticate'), /^Bearer /);
  }
  const basic = await request('/v1/table', { token: null, headers: { authorization: `Basic ${TOKEN}` } });
  t.equal(basic.status, 401);

  const ok = await request('/v1/table');
  t.equal(ok.status, 200);
  t.equal(ok.json.version, 0);
  t.ok(ok.headers.get('x-request-id'));
  t.equal(ok.headers.get('cache-control'), 'no-store');
});

t.test('unknown paths: 401 before 404 (no mapping the api without a token); 405 with Allow', async (t) => {
  const { request } = await startApi(t);
  t.equal((await request('/v1/nope', { token: null })).status, 401);
  const nf = await request('/v1/nope');
  t.equal(nf.status, 404);
  t.equal(nf.json.error.code, ErrorCodes.API_NOT_FOUND);
  t.equal(nf.headers.get('content-type'), JSON_TYPE);
  t.equal((await request('/v1/table', { method: 'DELETE', token: null })).status, 401);
  const na = await request('/v1/table', { method: 'DELETE' });
  t.equal(na.status, 405);
  t.equal(na.headers.get('allow'), 'GET, HEAD');
  t.equal(na.headers.get('content-type'), JSON_TYPE);
  const head = await request('/v1/table', { method: 'HEAD' });
  t.equal(head.status, 200, 'HEAD is served by the GET route');
  t.equal(head.text, '');
});

t.test('/healthz and /readyz need no token', async (t) => {
  const { request, aggregator } = await startApi(t);
  const h = await request('/healthz', { token: null });
  t.equal(h.status, 200);
  t.same(h.json, { status: 'ok' });

  const notReady = await request('/readyz', { token: null });
  t.equal(notReady.status, 503);
  t.same(notReady.json, { ready: false, degraded: true, reasons: ['no routing table yet'] });

  aggregator.update('file', 100, snapshot('file', ['web']));
  aggregator.flush();
  const ready = await request('/readyz', { token: null });
  t.equal(ready.status, 200);
  t.same(ready.json, { ready: true, degraded: false, reasons: [] });
});

t.test('/readyz: default reasons name a provider in error; ready() overrides', async (t) => {
  const a = await startApi(t, {
    providers: () => [{ name: 'file', priority: 100, state: 'error', lastError: 'cannot read portico.yaml' }],
  });
  const res = await a.request('/readyz', { token: null });
  t.equal(res.status, 503);
  t.same(res.json.reasons, ['no routing table yet', 'provider file: error (cannot read portico.yaml)']);

  const b = await startApi(t, { ready: () => ({ ready: true, reasons: [] }) });
  t.equal((await b.request('/readyz', { token: null })).status, 200);
});

t.test('table, versions and diff after two updates', async (t) => {
  const { request, aggregator } = await startApi(t);
  aggregator.update('file', 100, snapshot('file', ['web']));
  const v1 = aggregator.flush();
  aggregator.update('file', 100, snapshot('file', ['web', 'api']));
  const v2 = aggregator.flush();
  t.equal(v1.version, 1);
  t.equal(v2.version, 2);

  const cur = await request('/v1/table');
  t.equal(cur.status, 200);
  t.equal(cur.json.version, 2);
  t.same(Object.keys(cur.json.services), ['api@file', 'web@file']);
  t.equal(cur.json.hash, v2.hash);

  const old = await request('/v1/table?version=1');
  t.equal(old.json.version, 1);
  t.same(Object.keys(old.json.services), ['web@file']);
  t.equal((await request('/v1/table?version=99')).status, 404);
  t.equal((await request('/v1/table?version=abc')).status, 400);

  const versions = await request('/v1/table/versions');
  t.same(
    versions.json.versions.map((v: { version: number }) => v.version),
    [0, 1, 2],
  );
  t.match(versions.json.versions[2], { version: 2, services: 2, routes: 2, endpoints: 2, conflicts: 0 });

  const diff = await request('/v1/table/diff?from=1&to=2');
  t.equal(diff.status, 200);
  t.match(diff.json, { from: 1, to: 2, empty: false, services: { added: ['api@file'], removed: [], changed: [] } });
  const toCurrent = await request('/v1/table/diff?from=0');
  t.match(toCurrent.json, { from: 0, to: 2, services: { added: ['api@file', 'web@file'] } });

  t.equal((await request('/v1/table/diff')).status, 400, 'from is required');
  const bad = await request('/v1/table/diff?from=x');
  t.equal(bad.status, 400);
  t.equal(bad.json.error.code, ErrorCodes.API_BAD_REQUEST);
  t.equal((await request('/v1/table/diff?from=1&to=-2')).status, 400);
  const gone = await request('/v1/table/diff?from=1&to=42');
  t.equal(gone.status, 404);
  t.match(gone.json.error.message, /42 is not in history \(kept: 0\.\.2\)/);
});

t.test('evicted versions give 404', async (t) => {
  const { request, aggregator } = await startApi(t); // historySize 5
  for (let i = 1; i <= 7; i++) {
    aggregator.update(
      'file',
      100,
      snapshot(
        'file',
        Array.from({ length: i }, (_, j) => `s${j}`),
      ),
    );
    aggregator.flush();
  }
  t.equal((await request('/v1/table?version=1')).status, 404);
  t.equal((await request('/v1/table/diff?from=1&to=7')).status, 404);
  t.equal((await request('/v1/table/diff?from=3&to=7')).status, 200);
});

t.test('providers and planes', async (t) => {
  const { request } = await startApi(t, {
    providers: () => [{ name: 'file', priority: 100, state: 'ok', lastUpdate: '2024-01-01T00:00:00.000Z' }],
    planes: () => [{ name: 'l7', state: 'serving', listeners: ['127.0.0.1:8080'], tableVersion: 3 }],
  });
  t.same((await request('/v1/providers')).json, {
    providers: [{ name: 'file', priority: 100, state: 'ok', lastUpdate: '2024-01-01T00:00:00.000Z' }],
  });
  t.same((await request('/v1/planes')).json, {
    planes: [{ name: 'l7', state: 'serving', listeners: ['127.0.0.1:8080'], tableVersion: 3 }],
  });
});

t.test('/metrics needs a token unless metricsPublic; api metrics label by route pattern', async (t) => {
  const closed = await startApi(t);
  t.equal((await closed.request('/metrics', { token: null })).status, 401);
  await closed.request('/v1/table');
  await closed.request('/v1/nothing/here');
  const m = await closed.request('/metrics');
  t.equal(m.status, 200);
  t.match(m.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  t.match(m.text, /portico_api_requests_total\{method="GET",route="\/v1\/table",code="200"\} 1/);
  t.match(m.text, /portico_api_requests_total\{method="GET",route="unmatched",code="404"\} 1/);
  t.match(m.text, /portico_api_requests_total\{method="GET",route="\/metrics",code="401"\} 1/);
  t.match(m.text, /portico_api_request_duration_seconds_count\{method="GET",route="\/v1\/table"\} 1/);
  t.notMatch(m.text, /nothing\/here/, 'raw paths never become labels');

  const open = await startApi(t, { metricsPublic: true });
  t.equal((await open.request('/metrics', { token: null })).status, 200);
  t.equal((await open.request('/v1/table', { token: null })).status, 401, 'only /metrics opens');
});

t.test('two servers on one registry share the metrics instead of throwing', async (t) => {
  const registry = createRegistry({ defaultMetrics: false });
  const aggregator = new Aggregator({ registry });
  t.teardown(() => aggregator.close());
  const deps = { tables: aggregator, providers: () => [], planes: () => [], registry, token: TOKEN };
  t.doesNotThrow(() => {
    new ApiServer(deps);
    new ApiServer(deps);
  });
  t.throws(() => new ApiServer({ ...deps, token: '' }), TypeError);
});

t.test('route() seam: params, auth default, public opt-out, replies, docs in openapi', async (t) => {
  const { api, request } = await startApi(t);
  api.route('GET', '/v1/certs/:name', (ctx) => ({ name: ctx.param('name'), q: ctx.query.get('q') }), {
    doc: { summary: 'One certificate', tags: ['certs'] },
  });
  api.route('POST', '/v1/echo', async (ctx) => Reply.json(201, { got: await ctx.json(), rid: ctx.requestId }));
  api.route('DELETE', '/v1/certs/:name', () => undefined);
  api.route('GET', '/v1/public', () => ({ hello: 'world' }), { auth: false });
  api.route('GET', '/v1/boom', () => {
    throw new Error('secret internals');
  });
  api.route('GET', '/v1/teapot', () => {
    throw new PorticoError(ErrorCodes.API_BAD_REQUEST, 'short and stout', 418);
  });

  t.equal((await request('/v1/certs/web.example.test', { token: null })).status, 401);
  t.same((await request('/v1/certs/web.example.test?q=1')).json, { name: 'web.example.test', q: '1' });
  const echo = await request('/v1/echo', { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } });
  t.equal(echo.status, 201);
  t.same(echo.json.got, { a: 1 });
  t.equal(echo.json.rid, echo.headers.get('x-request-id'));
  const notJson = await request('/v1/echo', { method: 'POST', body: '{', headers: { 'content-type': 'application/json' } });
  t.equal(notJson.status, 400);
  const del = await request('/v1/certs/x', { method: 'DELETE' });
  t.equal(del.status, 204);
  t.same((await request('/v1/public', { token: null })).json, { hello: 'world' });
  const boom = await request('/v1/boom');
  t.equal(boom.status, 500);
  t.same(boom.json, { error: { code: 'PORTICO_INTERNAL', message: 'internal error', requestId: boom.headers.get('x-request-id') } });
  t.notMatch(boom.text, /secret internals|at /, 'no message or stack to the client');
  t.equal((await request('/v1/teapot')).status, 418);

  t.throws(() => api.route('GET', '/v1/certs/:name', () => 1), /already registered/);

  const doc = (await request('/v1/openapi.json')).json;
  t.match(doc.paths['/v1/certs/{name}'].get, {
    summary: 'One certificate',
    tags: ['certs'],
    parameters: [{ name: 'name', in: 'path', required: true }],
    responses: { '401': { $ref: '#/components/responses/Unauthorized' } },
  });
  t.ok(doc.paths['/v1/certs/{name}'].delete, 'routes without a doc are listed too');
  t.same(doc.paths['/v1/public'].get.security, [], 'public routes opt out of the bearer requirement');
});

t.test('openapi lists every registered route with the bearer scheme, and every $ref resolves', async (t) => {
  const { request } = await startApi(t);
  const res = await request('/v1/openapi.json');
  t.equal(res.status, 200);
  const doc = res.json;
  t.equal(doc.openapi, '3.1.0');
  t.same(doc.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer', description: 'The token in `<data>/api-token`.' });
  t.same(doc.security, [{ bearerAuth: [] }]);
  const listed = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops as object).map((m) => `${m.toUpperCase()} ${p}`));
  t.same(listed.sort(), [
    'GET /healthz',
    'GET /metrics',
    'GET /readyz',
    'GET /v1/config/schema',
    'GET /v1/openapi.json',
    'GET /v1/planes',
    'GET /v1/providers',
    'GET /v1/table',
    'GET /v1/table/diff',
    'GET /v1/table/versions',
    'POST /v1/config/validate',
  ]);
  t.same(doc.paths['/healthz'].get.security, []);
  t.same(doc.paths['/readyz'].get.security, []);
  t.notOk(doc.paths['/v1/table'].get.security, 'token routes use the global requirement');
  t.match(doc.paths['/v1/table/diff'].get.parameters, [
    { name: 'from', in: 'query', required: true },
    { name: 'to', in: 'query', required: false },
  ]);
  const ids = new Set<string>();
  for (const ops of Object.values(doc.paths))
    for (const op of Object.values(ops as Record<string, { operationId: string }>)) ids.add(op.operationId);
  t.equal(ids.size, listed.length, 'operationIds are unique');

  const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
  t.ok(refs.length > 10);
  for (const r of new Set(refs)) {
    const pointer = (JSON.parse(`{${r}}`) as { $ref: string }).$ref.replace(/^#\//, '').split('/');
    const target = pointer.reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], doc);
    t.ok(target, `${r} resolves`);
  }
});

t.test('body too large → 413', async (t) => {
  const { api, addr } = await startApi(t);
  api.route('POST', '/v1/small', async (ctx) => ({ bytes: (await ctx.body()).length }), { bodyLimit: 1024 });

  // Declared length over the default 1 MiB: refused before the body is read.
  const declared = await rawRequest(
    addr.port,
    '/v1/config/validate',
    { 'content-type': 'text/yaml', 'content-length': String((1 << 20) + 1) },
    'services: {}',
  );
  t.equal(declared.status, 413);
  t.equal(declared.headers['content-type'], JSON_TYPE);
  t.equal(declared.headers.connection, 'close');
  t.match(JSON.parse(declared.body), { error: { code: ErrorCodes.API_BAD_REQUEST, message: /larger than 1048576 bytes/ } });

  // Chunked (no length): refused once it passes the route's cap.
  const chunked = await rawRequest(addr.port, '/v1/small', { 'transfer-encoding': 'chunked' }, 'x'.repeat(2048));
  t.equal(chunked.status, 413);
  const fits = await rawRequest(addr.port, '/v1/small', { 'transfer-encoding': 'chunked' }, 'x'.repeat(1024));
  t.equal(fits.status, 200);
  t.same(JSON.parse(fits.body), { bytes: 1024 });
});

t.test('access log: one debug line per request, never the Authorization header', async (t) => {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  const { request } = await startApi(t, { logger });
  await request('/v1/table/diff?from=0&to=0');
  await request('/v1/table', { token: 'wrong-token-value' });
  const access = lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'api request');
  t.equal(access.length, 2);
  t.match(access[0], { level: 20, component: 'api', method: 'GET', route: '/v1/table/diff', status: 200, ms: Number });
  t.match(access[1], { route: '/v1/table', status: 401 });
  const all = lines.join('');
  t.notMatch(all, TOKEN, 'the token never reaches the log');
  t.notMatch(all, /wrong-token-value/);
  t.notMatch(all, /authorization/i);
});

t.test('listen: port 0 gives an ephemeral port; a taken port is a LISTEN_FAILED error; close is idempotent', async (t) => {
  const { addr, deps } = await startApi(t);
  t.equal(addr.host, '127.0.0.1');
  t.ok(addr.port > 0);
  const second = new ApiServer(deps);
  await t.rejects(second.listen({ host: '127.0.0.1', port: addr.port }), { code: ErrorCodes.LISTEN_FAILED });
  await second.close();
  await second.close();
});

/** A request with exact control of the headers (fetch sets its own content-length). */
function rawRequest(
  port: number,
  path: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, ...headers } },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }));
      },
    );
    req.on('error', reject);
    // With a declared length larger than what is sent, the server must answer without waiting for the rest.
    if (headers['content-length']) req.write(body);
    else req.end(body);
  });
}

t.test("a client slow to send its head is cut off at the head timeout, not at Node's 30 s sweep", async (t) => {
  const { addr } = await startApi(t, { headersTimeoutMs: 1_000 });
  const net = await import('node:net');
  // 50 connections that send half a head and then nothing (slowloris).
  const closed = await Promise.all(
    Array.from(
      { length: 50 },
      () =>
        new Promise<string>((resolve, reject) => {
          const s = net.connect(addr.port, '127.0.0.1', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
          let answer = '';
          s.on('data', (d) => {
            answer += d.toString('latin1');
          });
          s.on('error', reject);
          s.on('close', () => resolve(answer));
          // A failure bound only (the sweep would take 30 s); the test waits on the close events.
          setTimeout(() => {
            s.destroy();
            reject(new Error('slow connection still open after 8 s'));
          }, 8_000).unref();
        }),
    ),
  );
  t.equal(closed.length, 50, 'every slow connection was closed by the server');
  t.ok(
    closed.every((a) => a === '' || a.startsWith('HTTP/1.1 408')),
    'each was closed or answered 408 Request Timeout',
  );
});
