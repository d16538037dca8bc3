import t from 'tap';
import { ErrorCodes, PorticoError, ValidationError } from '../../src/model/errors.js';
import { errorReply, intParam, Reply, Router } from '../../src/api/router.js';

const noop = (): undefined => undefined;

t.test('matching: static, params, static before param with backtracking, 405', async (t) => {
  const r = new Router();
  r.add('GET', '/v1/table', noop);
  r.add('GET', '/v1/table/versions', noop);
  r.add('GET', '/v1/certs/:name', noop);
  r.add('DELETE', '/v1/certs/:name', noop);
  r.add('GET', '/v1/certs/:name/pem', noop);
  r.add('GET', '/v1/certs/bundle/all', noop);
  r.add('POST', '/v1/config/validate', noop);

  const cases: Array<[string, string, string, Record<string, string>?]> = [
    ['GET', '/v1/table', '/v1/table'],
    ['HEAD', '/v1/table', '/v1/table'],
    ['GET', '/v1/table/versions', '/v1/table/versions'],
    ['GET', '/v1/certs/web.example.test', '/v1/certs/:name', { name: 'web.example.test' }],
    ['DELETE', '/v1/certs/a%20b', '/v1/certs/:name', { name: 'a b' }],
    ['GET', '/v1/certs/bundle/pem', '/v1/certs/:name/pem', { name: 'bundle' }],
    ['GET', '/v1/certs/bundle/all', '/v1/certs/bundle/all'],
    ['GET', '/v1/certs/bundle', '/v1/certs/:name', { name: 'bundle' }],
  ];
  for (const [method, path, pattern, params] of cases) {
    const m = r.match(method, path);
    t.equal(m.kind, 'found', `${method} ${path}`);
    if (m.kind === 'found') {
      t.equal(m.route.pattern, pattern);
      t.same(m.params, params ?? {});
    }
  }
  for (const path of ['/', '/v1', '/v1/table/', '/v1/tables', '/v1/certs/', '/v1/certs/%zz', '/v1/certs/a/b/c']) {
    t.equal(r.match('GET', path).kind, 'none', `GET ${path} → none`);
  }
  t.same(r.match('POST', '/v1/table'), { kind: 'method', allowed: ['GET', 'HEAD'] });
  t.same(r.match('PUT', '/v1/certs/x'), { kind: 'method', allowed: ['DELETE', 'GET', 'HEAD'] });
  t.same(r.match('GET', '/v1/config/validate'), { kind: 'method', allowed: ['POST'] });
});

t.test('registration errors', async (t) => {
  const r = new Router();
  r.add('GET', '/v1/x/:id', noop);
  t.throws(() => r.add('GET', '/v1/x/:id', noop), /already registered/);
  t.throws(() => r.add('GET', '/v1/x/:name/y', noop), /clashes/);
  t.throws(() => r.add('GET', 'v1/y', noop), /starts with/);
  t.throws(() => r.add('GET', '/v1/:a/:a', noop), /twice/);
  t.throws(() => r.add('GET', '/v1/:1', noop), /bad parameter/);
  r.add('POST', '/v1/x/:id', noop);
  t.equal(r.routes().length, 2);
});

t.test('errorReply maps errors to statuses and hides internals', async (t) => {
  const v = errorReply(new ValidationError([{ path: 'services.web.port', message: 'must be a number', line: 3 }]), 'rid');
  t.equal(v.reply.status, 400);
  t.notOk(v.internal);
  t.match(JSON.parse(String(v.reply.body)), {
    error: { code: ErrorCodes.CONFIG_INVALID, issues: [{ path: 'services.web.port', line: 3 }] },
  });

  const p = errorReply(new PorticoError(ErrorCodes.API_NOT_FOUND, 'nope', 404), 'rid');
  t.equal(p.reply.status, 404);
  t.same(JSON.parse(String(p.reply.body)), { error: { code: ErrorCodes.API_NOT_FOUND, message: 'nope' } });

  const u = errorReply(new Error('db password is hunter2'), 'rid-1');
  t.equal(u.reply.status, 500);
  t.ok(u.internal);
  t.same(JSON.parse(String(u.reply.body)), { error: { code: 'PORTICO_INTERNAL', message: 'internal error', requestId: 'rid-1' } });
  t.equal(u.reply.contentType, 'application/json; charset=utf-8');
});

t.test('intParam', async (t) => {
  const q = new URLSearchParams('a=12&b=x&c=-1&d=1.5&e=&f=99999999999999999');
  t.equal(intParam(q, 'a'), 12);
  t.equal(intParam(q, 'missing'), undefined);
  for (const name of ['b', 'c', 'd', 'e', 'f'])
    t.throws(() => intParam(q, name), { code: ErrorCodes.API_BAD_REQUEST, message: /must be a non-negative integer/ }, name);
});

t.test('Reply', async (t) => {
  t.equal(Reply.json(200, undefined).body, 'null');
  t.equal(Reply.empty().status, 204);
  t.equal(Reply.raw(200, 'text/plain', 'x').contentType, 'text/plain');
});
