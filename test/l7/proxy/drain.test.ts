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
  // /slow is answered when the test says so; /hang never.
  let release = () => {};
  const released = new Promise<void>((r) => (release = r));
  const b = await startBackend(t, 'b', async (req, be) => {
    if (req.target === '/slow') {
      await released;
      return { status: 200, body: 'slow done' };
    }
    if (req.target === '/hang') return 'hang';
    return defaultReply(req, be);
  });
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [{ entrypoint: 'web', host: HOST, path: '/', pathMatch: 'prefix', service: 'web' }],
  });
  return { b, h, port: h.port(), release };
}

t.test('stop(10 min): the in-flight request completes, new connections are refused, idle ones are closed at once', async (t) => {
  const { b, h, port, release } = await setup(t);
  const idle = await RawClient.connect(port);
  t.teardown(() => idle.destroy());
  idle.write(`GET /first HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.equal((await idle.readResponse()).status, 200, 'the idle connection served a request and is kept alive');

  const busy = await RawClient.connect(port);
  t.teardown(() => busy.destroy());
  busy.write(`GET /slow HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  await b.requests.until((r) => r.target === '/slow', 2000, 'the slow request at the backend');

  // A drain time far beyond every wait below: whatever ends in them was not ended by the drain deadline.
  let stopped = false;
  const stopping = h.plane.stop(600_000).then(() => {
    stopped = true;
  });

  await idle.waitEnded(5000);
  t.pass('the idle keep-alive connection is closed at once, not after the drain time');
  const refused = await RawClient.connect(port).then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(refused, 'ECONNREFUSED', 'a new connection is refused');
  t.notOk(stopped, 'stop() waits while a request is in flight');

  release();
  const res = await busy.readResponse();
  t.equal(res.status, 200, 'the in-flight request completes');
  t.equal(res.text, 'slow done');
  t.equal(res.header('connection'), 'close', 'and is told the connection closes');
  await busy.waitEnded(5000);
  await withTimeout(stopping, 5000, 'stop() once the in-flight request was done');
  t.equal(h.plane.status().state, 'stopped');
});

t.test('stop(300): a request still running when the drain time is over is cut', async (t) => {
  const { b, h, port } = await setup(t);
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  c.write(`GET /hang HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  await b.requests.until((r) => r.target === '/hang', 2000, 'the request at the backend');
  // The backend never answers and the response timeout is 60 s: only the drain deadline ends this.
  await withTimeout(h.plane.stop(300), 5000, 'stop(300)');
  await c.waitEnded(5000);
  t.equal(c.data.length, 0, 'cut with no partial response written');
});
