/**
 * A client that leaves mid-request aborts its upstream exchange (HAProxy's abortonclose): the upstream
 * connection closes at once (never pooled: it is mid-message), its place in the pool and any queue place
 * go to the next request, and the request is recorded as `client-abort` with where it was. A half-close
 * after a complete request is answered unless `l7.abortOnClose` is set; one before the request is
 * complete always aborts; an upgrade request so answered gets a tunnel that passes the client's FIN on.
 * On both stream engines (libuv handles and net.Socket). The pool's part (a waiter leaving the queue,
 * a destroyed connection's place) is also tested on a Pool directly.
 *
 * The response timeout is 60 s throughout: an access line saying `client-abort` (not `response-timeout`)
 * for a request the backend never answered shows the abort came first, with no clock involved.
 */
import t from 'tap';
import type { Test } from 'tap';
import net from 'node:net';
import { endpoint, service } from '../../helpers/snapshot.js';
import { Recorder, ioRoundTrip, written } from '../../helpers/wait.js';
import type { L7Options } from '../../../src/l7/options.js';
import { Pool, type PoolWaiter, type UpstreamConn } from '../../../src/l7/pool.js';
import { TimerWheel } from '../../../src/l7/timers.js';
import { RawClient, defaultReply, startBackend, startPlane, waitFor, type Backend, type PlaneHarness } from '../helpers.js';

const HOST = 'a.test';
const MiB = 1024 * 1024;

/** A promise the test resolves: a backend reply held until then. */
function gate(): { held: Promise<void>; open: () => void } {
  let open!: () => void;
  const held = new Promise<void>((resolve) => (open = resolve));
  return { held, open };
}

interface Setup {
  b: Backend;
  h: PlaneHarness;
  /** Opens the held replies (`/hold…`). */
  release: () => void;
  route: string;
}

/**
 * One backend behind one route, one connection to it at most, a 60 s response timeout. The backend
 * answers `/hold…` once released, never answers `/hang…`, and answers anything else at once.
 */
async function setup(t: Test, engine: 'uv' | 'net', options: Partial<L7Options> = {}): Promise<Setup> {
  const g = gate();
  const b = await startBackend(t, 'b', async (req, backend) => {
    if (req.target.startsWith('/hang')) return 'hang';
    if (req.target.startsWith('/hold')) await g.held;
    return defaultReply(req, backend);
  });
  const h = await startPlane(
    t,
    {
      services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
      routes: [{ entrypoint: 'web', host: HOST, path: '/', pathMatch: 'prefix', service: 'web' }],
    },
    { responseHeaderTimeoutMs: 60_000, idleTimeoutMs: 60_000, maxConnectionsPerEndpoint: 1, ...options },
    engine,
  );
  t.teardown(g.open);
  return { b, h, release: g.open, route: h.plane.current().routes.keys().next().value as string };
}

async function client(t: Test, port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  return c;
}

/** Write `bytes` and return once the proxy (in this process) has read them. */
async function send(c: RawClient, bytes: string): Promise<void> {
  await written(c.socket, Buffer.from(bytes, 'latin1'));
  await ioRoundTrip();
}

/** Half-close the client and return once the proxy has read the FIN. */
async function halfClose(c: RawClient): Promise<void> {
  await new Promise<void>((resolve) => c.socket.end(resolve));
  await ioRoundTrip();
}

function accessLine(h: PlaneHarness, path: string): Promise<Record<string, unknown>> {
  return h.logs.lines.until((l) => l.component === 'access' && l.path === path, 5000, `the access line of ${path}`);
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;

for (const engine of ['uv', 'net'] as const) {
  t.test(
    `${engine}: a chunked POST abandoned after 2 MiB closes its upstream connection, and the next request gets the slot`,
    async (t) => {
      const { b, h, route } = await setup(t, engine);
      const up = await client(t, h.port());
      up.write(`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x61), Buffer.from('\r\n')]);
      for (let i = 0; i < 32; i++) up.write(chunk);
      await waitFor(() => b.bytesReceived >= 2 * MiB, { timeoutMs: 10_000, what: 'the 2 MiB of body at the backend' });

      const next = await client(t, h.port());
      await send(next, get('/next'));
      t.equal(b.connections, 1, 'the next request waits: the only connection is the upload’s');

      up.destroy(); // the client gives up: close (FIN), the request unfinished
      const partial = await b.aborted.until(() => true, 5000, 'the upstream connection of the upload to close');
      t.ok(partial.length >= 2 * MiB, 'the connection that closed is the one carrying the upload');

      const res = await next.readResponse();
      t.equal(res.status, 200, 'the next request is answered');
      t.equal(b.seen('/next')[0]?.conn, 1, 'on a new connection: the abandoned one was not pooled');

      const line = await accessLine(h, '/upload');
      t.equal(line.outcome, 'client-abort');
      t.equal(line.abortPhase, 'request-body');
      t.equal(line.status, 499);
      t.notOk(
        h.logs.lines.items.some((l) => l.outcome === 'response-timeout'),
        'the 60 s response timeout did not fire: the abort came first',
      );
      t.match(await h.registry.metrics(), `portico_l7_client_aborts_total{entrypoint="web",route="${route}",phase="request-body"} 1`);
    },
  );

  t.test(`${engine}: a client that resets while waiting for the response head`, async (t) => {
    const { b, h } = await setup(t, engine);
    const c = await client(t, h.port());
    c.write(get('/hang'));
    await b.requests.until((r) => r.target === '/hang', 5000, 'the request at the backend');
    c.socket.resetAndDestroy();

    t.equal(await b.closes.until((i) => i === 0, 5000, 'the upstream connection to close'), 0);
    const line = await accessLine(h, '/hang');
    t.equal(line.outcome, 'client-abort');
    t.equal(line.abortPhase, 'response-head');
    t.equal(line.status, 499);
    t.equal(line.endpoint, `127.0.0.1:${b.port}`, 'the endpoint it was waiting on is logged');

    const after = await client(t, h.port());
    after.write(get('/after'));
    t.equal((await after.readResponse()).status, 200, 'the freed slot serves the next request');
    t.equal(b.seen('/after')[0]?.conn, 1, 'on a new connection');
  });

  t.test(`${engine}: a queued request whose client leaves gives its queue place up at once`, async (t) => {
    const { b, h, release, route } = await setup(t, engine, { maxQueuePerEndpoint: 1 });
    const first = await client(t, h.port());
    first.write(get('/hold'));
    await b.requests.until((r) => r.target === '/hold', 5000, 'the first request at the backend');

    const queued = await client(t, h.port());
    await send(queued, get('/queued')); // the one queue place
    queued.socket.resetAndDestroy();
    const line = await accessLine(h, '/queued');
    t.equal(line.outcome, 'client-abort');
    t.equal(line.abortPhase, 'queue');

    // Were the abandoned waiter still queued, this one would be refused at once (503, queue full).
    const last = await client(t, h.port());
    await send(last, get('/last'));
    release();
    t.equal((await first.readResponse()).status, 200);
    const res = await last.readResponse();
    t.equal(res.status, 200, 'the next request took the queue place');
    t.equal(b.seen('/queued').length, 0, 'the abandoned request never reached the backend');
    t.match(await h.registry.metrics(), `portico_l7_client_aborts_total{entrypoint="web",route="${route}",phase="queue"} 1`);
  });

  t.test(`${engine}: half-close after a complete request, abortOnClose off (the default): answered`, async (t) => {
    const { b, h, release } = await setup(t, engine);
    t.equal(h.plane.opts.abortOnClose, false, 'off by default, as in HAProxy');
    const c = await client(t, h.port());
    c.write(get('/hold'));
    await b.requests.until((r) => r.target === '/hold', 5000, 'the request at the backend');
    await halfClose(c);
    t.same(b.closes.items, [], 'the upstream connection is kept while the client waits');
    release();
    const res = await c.readResponse();
    t.equal(res.status, 200, 'the half-closed client gets its response');
    t.equal(res.header('connection'), 'close');
    await c.waitEnded();
    t.equal((await accessLine(h, '/hold')).outcome, 'ok');
  });

  t.test(`${engine}: half-close after a complete request, abortOnClose on: aborted before the response`, async (t) => {
    const { b, h } = await setup(t, engine, { abortOnClose: true });
    const c = await client(t, h.port());
    c.write(get('/hang'));
    await b.requests.until((r) => r.target === '/hang', 5000, 'the request at the backend');
    c.end();
    t.equal(await b.closes.until((i) => i === 0, 5000, 'the upstream connection to close'), 0);
    await c.waitEnded();
    t.equal(c.data.length, 0, 'no response: the client is gone');
    const line = await accessLine(h, '/hang');
    t.equal(line.outcome, 'client-abort');
    t.equal(line.abortPhase, 'response-head');
  });

  t.test(`${engine}: abortOnClose on: a response under way is finished for a half-closed client`, async (t) => {
    const { b, h } = await setup(t, engine, { abortOnClose: true });
    const half = 'x'.repeat(1000);
    const head = `HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n`;
    // The backend sends the head and half the body, and the rest when the test says.
    let backendSide: net.Socket | undefined;
    b.handler = () => 'upgrade';
    b.onUpgrade = (socket) => {
      backendSide = socket;
      socket.write(head + half);
    };
    const c = await client(t, h.port());
    c.write(get('/partial'));
    await waitFor(() => c.data.length >= head.length + 1000, { timeoutMs: 5000, what: 'half the body at the client' });
    await halfClose(c);
    t.same(b.closes.items, [], 'the response goes on: the upstream connection is kept');
    backendSide!.write(half);
    const res = await c.readResponse();
    t.equal(res.body.length, 2000, 'the whole body reached the half-closed client');
    t.equal((await accessLine(h, '/partial')).outcome, 'ok');
  });

  t.test(`${engine}: an upgrade request, then a half-close before the 101: the tunnel starts half-closed`, async (t) => {
    const { b, h } = await setup(t, engine);
    const upstream = gate();
    let backendSide: net.Socket | undefined;
    b.handler = () => 'upgrade';
    b.onUpgrade = (socket) => {
      backendSide = socket;
      upstream.open();
    };
    const ends = new Recorder<true>();
    const c = await client(t, h.port());
    c.write(`GET /tunnel HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n`);
    await upstream.held;
    backendSide!.on('end', () => ends.push(true));
    await halfClose(c);
    t.same(b.closes.items, [], 'a complete request: not aborted');
    backendSide!.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n');
    t.equal((await c.readResponse()).status, 101);
    await ends.until(() => true, 5000, "the client's FIN at the backend, through the tunnel");
    backendSide!.end('bye');
    t.equal((await c.readBytes(3)).toString(), 'bye', 'the other direction still flows');
    await c.waitEnded();
  });

  for (const abortOnClose of [false, true]) {
    t.test(`${engine}: half-close before the request body is complete aborts (abortOnClose ${abortOnClose})`, async (t) => {
      const { b, h } = await setup(t, engine, { abortOnClose });
      const c = await client(t, h.port());
      c.write(`POST /short HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 100\r\n\r\n0123456789`);
      await waitFor(() => b.bytesReceived > 0, { timeoutMs: 5000, what: 'the request at the backend' });
      c.end();
      const partial = await b.aborted.until(() => true, 5000, 'the upstream connection to close');
      t.match(partial, /^POST \/short /, 'the request the backend never got whole');
      await c.waitEnded();
      const line = await accessLine(h, '/short');
      t.equal(line.outcome, 'client-abort');
      t.equal(line.abortPhase, 'request-body');
      t.equal(line.bytesIn, 10);
    });
  }

  t.test(`${engine}: a queued request, then a half-close: answered when off, dropped from the queue when on`, async (t) => {
    for (const abortOnClose of [false, true]) {
      const { b, h, release } = await setup(t, engine, { abortOnClose });
      const first = await client(t, h.port());
      first.write(get('/hold'));
      await b.requests.until((r) => r.target === '/hold', 5000, 'the first request at the backend');
      const queued = await client(t, h.port());
      // A complete POST whose body waits unparsed while the request queues, then the client's FIN.
      await send(queued, `POST /queued HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\n\r\nhello`);
      await halfClose(queued);
      release();
      t.equal((await first.readResponse()).status, 200);
      if (!abortOnClose) {
        const res = await queued.readResponse();
        t.equal(res.status, 200, 'off: the request is answered after its queue wait');
        t.equal(b.seen('/queued')[0]?.body.toString(), 'hello');
      } else {
        const line = await accessLine(h, '/queued');
        t.equal(line.outcome, 'client-abort', 'on: aborted');
        t.equal(line.abortPhase, 'queue', 'while it queued');
        await queued.waitEnded();
        t.equal(queued.data.length, 0);
        t.equal(b.seen('/queued').length, 0, 'it never reached the backend');
      }
    }
  });
}

t.test(
  'the pool: a waiter that gives up leaves the queue from any place, and a destroyed connection frees its place at once',
  async (t) => {
    const server = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const wheel = new TimerWheel(50);
    t.teardown(() => wheel.close());
    const port = (server.address() as net.AddressInfo).port;
    const pool = new Pool('127.0.0.1', port, {
      maxConnections: 1,
      maxQueue: 100,
      connectTimeoutMs: 5000,
      idleTimeoutMs: 5000,
      wheel,
      maxHeaderBytes: 16_384,
    });
    t.teardown(() => pool.close());
    const served: number[] = [];
    let conn: UpstreamConn | undefined;
    const connected = gate();
    const last = gate();
    const waiters: PoolWaiter[] = [];
    const waiter = (i: number): PoolWaiter => {
      const w: PoolWaiter = {
        cancelled: false,
        onPoolConnection(c) {
          served.push(i);
          conn = c;
          connected.open();
          if (i === 41) last.open();
        },
        onPoolError(err) {
          t.fail(`waiter ${i}: ${err.message}`);
        },
      };
      waiters[i] = w;
      return w;
    };
    pool.acquire(waiter(0)); // the one connection is made for it
    for (let i = 1; i <= 20; i++) pool.acquire(waiter(i)); // the rest queue
    await connected.held;
    // Ten hand-overs move the queue's head along its ring; then more waiters wrap around its end.
    for (let i = 0; i < 10; i++) pool.release(conn!, true);
    for (let i = 21; i <= 40; i++) pool.acquire(waiter(i));
    t.same(served, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const gone = [11, 25, 32, 40];
    for (const i of gone) t.ok(pool.cancel(waiters[i]!), `waiter ${i} leaves the queue`);
    t.notOk(pool.cancel(waiters[5]!), 'a waiter already served is not in the queue');
    t.notOk(pool.cancel(waiters[25]!), 'nor is one that left');
    for (let i = 0; i < 26; i++) pool.release(conn!, true);
    const expected = Array.from({ length: 41 }, (_, i) => i).filter((i) => !gone.includes(i));
    t.same(served, expected, 'everyone else is served, in order, and the queue is empty');

    // One more waits; the busy connection is destroyed (mid-message): the waiter gets a new one, and
    // the old one's place is free as release() returns (not a turn later, when its close is reported).
    pool.acquire(waiter(41));
    const before = pool.connectsTotal;
    pool.release(conn!, false);
    t.equal(pool.connectsTotal, before + 1, 'a connection for the waiter is being made already');
    t.equal(pool.total, 1, 'and it is the only one counted');
    await last.held;
    t.equal(served.at(-1), 41, 'the waiter has its connection');
    conn!.destroy();
  },
);
