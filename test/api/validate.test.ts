import t from 'tap';
import { ErrorCodes } from '../../src/model/errors.js';
import { snapshot, startApi } from './helpers.js';

const GOOD = `
entrypoints:
  web: { listen: 127.0.0.1:8080 }
services:
  web:
    framework: marathon
    endpoints:
      - { address: 127.0.0.1, port: 9000 }
  api:
    framework: marathon
    endpoints:
      - { address: 127.0.0.1, port: 9100 }
routes:
  - { entrypoint: web, host: web.example.test, path: /, service: web }
  - { entrypoint: web, host: api.example.test, path: /, service: api }
`;

const BAD = `entrypoints:
  web: { listen: 127.0.0.1:8080 }
services:
  web:
    endpoints:
      - { address: 127.0.0.1, port: nope }
`;

t.test('a good config: 200 with the diff it would make, and nothing changes', async (t) => {
  const { request, aggregator } = await startApi(t);
  aggregator.update('file', 100, snapshot('file', ['web']));
  const before = aggregator.flush();

  const res = await request('/v1/config/validate', { method: 'POST', body: GOOD, headers: { 'content-type': 'text/yaml' } });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
  t.match(res.json, {
    valid: true,
    diff: { from: before.version, services: { added: ['api@file'], removed: [] }, empty: false },
    conflicts: [],
    table: { services: 2, routes: 2 },
  });

  t.equal(aggregator.current(), before, 'the published table is untouched');
  t.equal(aggregator.versions().length, 2);
});

t.test('JSON bodies are accepted too; other content types are 415', async (t) => {
  const { request } = await startApi(t);
  const json = JSON.stringify({
    entrypoints: { web: { listen: '127.0.0.1:8080' } },
    services: { web: { endpoints: [{ address: '127.0.0.1', port: 9000 }] } },
  });
  const res = await request('/v1/config/validate', {
    method: 'POST',
    body: json,
    headers: { 'content-type': 'application/json; charset=utf-8' },
  });
  t.equal(res.status, 200);
  t.match(res.json, { valid: true, diff: { services: { added: ['web@file'] } }, table: { services: 1, routes: 0 } });

  const form = await request('/v1/config/validate', {
    method: 'POST',
    body: json,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.equal(form.status, 415);
  t.equal(form.json.error.code, ErrorCodes.API_BAD_REQUEST);
  t.match(form.json.error.message, /text\/yaml/);
});

t.test("a bad config: 422 with each issue's path and line", async (t) => {
  const { request, aggregator } = await startApi(t);
  const res = await request('/v1/config/validate', { method: 'POST', body: BAD, headers: { 'content-type': 'application/yaml' } });
  t.equal(res.status, 422);
  t.equal(res.json.valid, false);
  t.match(res.json.issues, [{ path: 'services.web.endpoints[0].port', message: String, line: 6, column: Number }]);
  t.equal(aggregator.current().version, 0);

  const broken = await request('/v1/config/validate', { method: 'POST', body: 'services: [\n', headers: { 'content-type': 'text/plain' } });
  t.equal(broken.status, 422, 'YAML syntax errors are issues too');
  t.ok(broken.json.issues.length > 0);
});

t.test('validate needs the token; the schema is served', async (t) => {
  const { request } = await startApi(t);
  t.equal(
    (await request('/v1/config/validate', { method: 'POST', body: GOOD, token: null, headers: { 'content-type': 'text/yaml' } })).status,
    401,
  );
  t.equal((await request('/v1/config/schema', { token: null })).status, 401);
  const schema = await request('/v1/config/schema');
  t.equal(schema.status, 200);
  t.equal(schema.json.type, 'object');
  t.ok(schema.json.properties.services, 'describes services');
});

t.test('conflicts the config would cause with other providers are reported', async (t) => {
  const { request, aggregator } = await startApi(t);
  // A higher-priority provider already serves web.example.test/ on entrypoint web.
  aggregator.update('consul', 200, snapshot('consul', ['web']));
  aggregator.flush();
  const res = await request('/v1/config/validate', { method: 'POST', body: GOOD, headers: { 'content-type': 'text/yaml' } });
  t.equal(res.status, 200);
  t.match(res.json.conflicts, [{ kind: 'route', winner: 'consul', losers: ['file'] }]);
});
