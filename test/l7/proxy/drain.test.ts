/**
 * Drain: stop(drainMs) stops accepting at once, lets in-flight requests finish within drainMs, closes idle
 * keep-alive connections now, and cuts what is still running when drainMs is over.
 */
import t from 'tap';
import type { Test } from 'tap';
import { endpoint, service } from '../../helpers/snapshot.js';
import { withTimeout } from '../../helpers/wait.js';
import { RawClient, defaultReply, startBackend, startPlane } from '../helpers.js';

const HOST = 'a.test';

async function setup(t: Test) {
  const b = await startBackend(t, 'b', (req, be) => {
    if (req.target === '/slow') return { status: 200, body: 'slow done', delayMs: 300 };
    if (req.target === '/hang') return 'hang';
    return defaultReply(req, be);
  });
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [{ entrypoint: 'web', host: HOST, path: '/', pathMatch: 'prefix', service: 'web' }],
  });
  return { b, h, port: h.port() };
}

t.test('stop(2000): the in-flight request completes, new connections are refused, idle ones are closed', async (t) => {
  const { b, h, port } = await setup(t);
  const idle = await RawClient.connect(port);
  t.teardown(() => idle.destroy());
  idle.write(`GET /first HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.equal((await idle.readResponse()).status, 200, 'the idle connection served a request and is kept alive');

  const busy = await RawClient.connect(port);
  t.teardown(() => busy.destroy());
  busy.write(`GET /slow HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  await b.requests.until((r) => r.target === '/slow', 2000, 'the slow request at the backend');

  const started = Date.now();
  const stopping = h.plane.stop(2000);

  await idle.waitEnded(1000);
  t.ok(Date.now() - started < 1000, `the idle keep-alive connection is closed at once, not after drainMs (${Date.now() - started} ms)`);
  const refused = await RawClient.connect(port).then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(refused, 'ECONNREFUSED', 'a new connection is refused');

  const res = await busy.readResponse();
  t.equal(res.status, 200, 'the in-flight request completes');
  t.equal(res.text, 'slow done');
  t.equal(res.header('connection'), 'close', 'and is told the connection closes');
  await busy.waitEnded(1000);
  await withTimeout(stopping, 3000, 'stop()');
  const took = Date.now() - started;
  t.ok(took >= 200 && took < 1500, `stop() resolved once the in-flight request was done, not after drainMs (${took} ms)`);
  t.equal(h.plane.status().state, 'stopped');
});

t.test('stop(300): a request still running when the drain time is over is cut', async (t) => {
  const { b, h, port } = await setup(t);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  c.write(`GET /hang HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  await b.requests.until((r) => r.target === '/hang', 2000, 'the request at the backend');
  const started = Date.now();
  await withTimeout(h.plane.stop(300), 3000, 'stop(300)');
  await c.waitEnded(1000);
  const took = Date.now() - started;
  t.ok(took >= 250 && took < 1500, `cut after the drain time (${took} ms)`);
  t.equal(c.data.length, 0, 'no partial response was written');
});
