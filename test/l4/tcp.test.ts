import { createHash } from 'node:crypto';
import net from 'node:net';
import { spawn } from 'node:child_process';
import t, { type Test } from 'tap';
import type { L4Plane } from '../../src/l4/plane.js';
import * as uv from '../../src/net/uv.js';
import { ioRoundTrip, once, pace, waitFor, withTimeout } from '../helpers/wait.js';
import {
  captureLogs,
  echoServer,
  ep,
  exchange,
  readAll,
  recordingServer,
  startPlane as startPlaneBase,
  svc,
  table,
  tagServer,
  vip,
} from './helpers.js';
import type { L4Options } from '../../src/l4/options.js';
import type { RoutingTable } from '../../src/model/types.js';
import type { Logger } from '../../src/telemetry/log.js';

const KEY = 'tcp/web.marathon:0';
const portOf = (plane: L4Plane, key = KEY) => {
  const a = plane.address(key);
  if (!a) throw new Error(`${key} is not bound`);
  return a.port;
};
const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

function pattern(bytes: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i + 4 <= bytes; i += 4) b.writeUInt32BE((i * 2654435761) >>> 0, i);
  return b;
}

const ENGINES = uv.available ? (['uv', 'net'] as const) : (['net'] as const);

/**
 * An endpoint whose connects hang: a listener with a backlog of 1 in a child process that is stopped
 * (SIGSTOP) before it can accept, its accept queue then filled by two connections. The kernel drops
 * further SYNs, so a connect neither succeeds nor fails.
 */
async function hangingEndpoint(t: Test): Promise<number> {
  // (backlog 0 would mean Node's default, 511) The child stops itself right after it prints the port,
  // inside the listen callback: it never gets back to its event loop to accept.
  const script =
    "const s = require('node:net').createServer();" +
    "s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {" +
    "  process.stdout.write(s.address().port + '\\n');" +
    "  process.kill(process.pid, 'SIGSTOP');" +
    '});';
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  // A stopped process cannot notice its parent go: kill it at teardown, or when this process exits.
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  t.teardown(() => {
    process.off('exit', kill);
    kill();
  });
  const [line] = await once<[Buffer]>(child.stdout!, 'data', 10_000);
  const port = Number(String(line).trim());
  for (let i = 0; i < 2; i++) {
    const filler = net.connect({ port, host: '127.0.0.1' });
    filler.on('error', () => {});
    t.teardown(() => filler.destroy());
    await once(filler, 'connect', 2_000);
  }
  return port;
}

function suite(t: Test, engine: 'uv' | 'net'): void {
  const startPlane = (tt: Test, tb: RoutingTable, o: Partial<L4Options> = {}, logger?: Logger) =>
    startPlaneBase(tt, tb, { tcpEngine: engine, ...o }, logger);

  t.test('64 MiB echo through a TCP VIP, with half-close, on both read paths', async (t) => {
    for (const bulkThresholdBytes of [131_072, -1, 0]) {
      const b = await echoServer(t);
      const plane = await startPlane(t, table({ services: [svc('web', [ep('127.0.0.1', b.port)])], vips: [vip('web', 0)] }), {
        bulkThresholdBytes,
      });
      const payload = pattern(64 << 20);
      const got = await exchange(portOf(plane), payload, { timeoutMs: 60_000 });
      t.equal(got.length, payload.length, `bulkThreshold ${bulkThresholdBytes}: every byte came back`);
      t.equal(sha1(got), sha1(payload), 'in order, unchanged');
      const d = plane.describe().vips[0];
      t.match(d, { connections: { total: 1 }, bytes: { in: 64 << 20, out: 64 << 20 } }, 'counted per VIP');
      t.match(d?.endpoints[0], { bytes: { in: 64 << 20, out: 64 << 20 }, connections: 1 }, 'and per endpoint');
      await plane.stop(0);
    }
  });

  t.test('half-close both ways: a FIN reaches the other side and the rest still flows', async (t) => {
    // Backend 1 reads until the client's FIN, then answers and closes.
    const counting = await recordingServer(t, (s, received) => {
      s.on('end', () => s.end(`got ${received().length} bytes`));
    });
    // Backend 2 speaks first and closes its side at once; then it keeps reading until the client's FIN.
    const afterFin: string[] = [];
    const early = await recordingServer(t, (s, received) => {
      s.end('bye-first');
      s.on('end', () => afterFin.push(received().toString()));
    });
    const plane = await startPlane(
      t,
      table({
        services: [svc('web', [ep('127.0.0.1', counting.port)]), svc('early', [ep('127.0.0.1', early.port)])],
        vips: [vip('web', 0), vip('early', 0)],
      }),
    );
    const answer = await exchange(portOf(plane), Buffer.alloc(300_000, 7));
    t.equal(answer.toString(), 'got 300000 bytes', 'the client FIN reached the backend; its answer came back after it');

    const s = net.connect({ port: portOf(plane, 'tcp/early.marathon:0'), allowHalfOpen: true });
    let text = '';
    s.on('data', (d) => {
      text += d;
    });
    await withTimeout(new Promise<void>((resolve) => s.on('end', resolve)), 5_000, 'the backend FIN through the VIP');
    t.equal(text, 'bye-first', 'the backend half-closed first');
    s.end('still-talking'); // the client keeps writing after the server's FIN arrived
    await withTimeout(new Promise<void>((resolve) => s.on('close', () => resolve())), 5_000, 'the connection to close');
    const got = await waitFor(() => afterFin[0], { timeoutMs: 5_000, what: 'the backend to read after its own FIN' });
    t.equal(got, 'still-talking', 'data sent after the server half-closed reached it');
  });

  t.test('backpressure: a client that does not read pauses the endpoint', async (t) => {
    const big = pattern(32 << 20);
    const producer = await recordingServer(t, (s) => {
      s.end(big);
    });
    const plane = await startPlane(t, table({ services: [svc('web', [ep('127.0.0.1', producer.port)])], vips: [vip('web', 0)] }), {
      highWaterMark: 256 << 10,
    });
    const c = net.connect({ port: portOf(plane) });
    c.pause();
    await once(c, 'connect', 5_000);
    // While the client reads nothing, the plane must stop reading the endpoint. Bytes already in flight
    // land first: wait (bounded) until it is paused and nothing moves over two I/O round trips.
    const session = () => plane.openSessions()[0];
    const readBefore = await waitFor(
      async () => {
        const s0 = session();
        if (!s0 || s0.bytes.out === 0 || s0.upstreamReading) return undefined;
        await ioRoundTrip();
        await ioRoundTrip();
        const s1 = session();
        return s1 && !s1.upstreamReading && s1.bytes.out === s0.bytes.out ? s1.bytes.out : undefined;
      },
      { timeoutMs: 5_000, what: 'the endpoint side to be paused and hold still' },
    );
    // The endpoint has 32 MiB to offer, so its socket stays readable: a plane that read on would show it
    // within any of these rounds.
    for (let i = 0; i < 20; i++) await ioRoundTrip();
    t.match(session(), { upstreamReading: false, bytes: { out: readBefore } }, 'no more read from the endpoint while the client is paused');
    t.ok(readBefore < 16 << 20, `bounded: ${(readBefore / 2 ** 20).toFixed(1)} MiB read of 32 (kernel buffers + what the plane holds)`);
    const chunks: Buffer[] = [];
    c.on('data', (d: Buffer) => chunks.push(d));
    c.resume();
    await once(c, 'end', 30_000);
    t.equal(sha1(Buffer.concat(chunks)), sha1(big), 'everything arrives once the client reads');
    c.destroy();
  });

  t.test('idle timeout closes a silent connection; traffic keeps one open', async (t) => {
    const b = await echoServer(t);
    const plane = await startPlane(t, table({ services: [svc('web', [ep('127.0.0.1', b.port)])], vips: [vip('web', 0)] }), {
      idleTimeoutMs: 300,
    });
    const c = net.connect({ port: portOf(plane) });
    await once(c, 'connect', 5_000);
    const started = Date.now();
    for (let i = 0; i < 6; i++) {
      c.write('ping');
      await once(c, 'data', 2_000);
      await pace(100); // traffic spread over longer than the idle timeout (pacing, not synchronisation)
    }
    t.ok(!c.destroyed && Date.now() - started > 500, 'active for longer than the idle timeout and still open');
    await withTimeout(new Promise((r) => c.on('close', r)), 3_000, 'the idle connection to be closed');
    t.pass('closed once silent');
  });

  t.test('connect failure: retried on the next endpoint; passive ejection after repeated failures', async (t) => {
    const good = await tagServer(t, 'good');
    const dead = await tagServer(t, 'dead');
    const deadPort = dead.port;
    await dead.close(); // refused from now on
    const { logger, lines } = captureLogs();
    const plane = await startPlane(
      t,
      table({
        services: [svc('web', [ep('127.0.0.1', good.port), ep('127.0.0.1', deadPort)])],
        vips: [vip('web', 0)],
      }),
      { passiveFailures: 2, passiveEjectMs: 60_000 },
      logger,
    );
    for (let i = 0; i < 20; i++) t.equal(await readAll(portOf(plane)), 'good\n', `connection ${i} served`);
    const d = plane.describe().vips[0];
    const deadView = d?.endpoints.find((e) => e.port === deadPort);
    t.equal(deadView?.state, 'ejected', 'the refusing endpoint was ejected');
    t.ok((deadView?.failures.connect ?? 0) >= 2, 'its connect failures are counted');
    t.ok(
      lines.some((l) => l.msg === 'l4: endpoint ejected after consecutive connect failures' && l.endpoint === `127.0.0.1:${deadPort}`),
      'ejection logged',
    );
  });

  t.test('connect timeout: retried on the next endpoint', async (t) => {
    const good = await tagServer(t, 'good');
    const bport = await hangingEndpoint(t);
    const { logger, lines } = captureLogs();
    const plane = await startPlane(
      t,
      table({
        services: [svc('web', [ep('127.0.0.1', good.port), ep('127.0.0.1', bport)], { labels: { PORTICO_L4_BALANCE: 'roundrobin' } })],
        vips: [vip('web', 0)],
      }),
      { connectTimeoutMs: 200, passiveFailures: 0 },
      logger,
    );
    for (let i = 0; i < 4; i++) t.equal(await readAll(portOf(plane)), 'good\n', `connection ${i} served despite a hanging endpoint`);
    t.ok((plane.describe().vips[0]?.endpoints.find((e) => e.port === bport)?.failures.timeout ?? 0) >= 1, 'connect timeouts counted');
    t.ok(
      lines.some((l) => l.msg === 'l4: connect to endpoint failed' && l.reason === 'connect-timeout'),
      'and logged',
    );
  });

  t.test('no endpoint left: refused with a reset and one log line', async (t) => {
    const { logger, lines } = captureLogs();
    const plane = await startPlane(t, table({ services: [svc('web', [])], vips: [vip('web', 0)] }), {}, logger);
    const err = await readAll(portOf(plane)).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e,
    );
    t.equal(err?.code, 'ECONNRESET', 'the client gets a reset');
    const line = await waitFor(() => lines.find((l) => l.msg === 'l4: connection refused'), { timeoutMs: 2_000, what: 'the log line' });
    t.match(line, { vip: KEY, reason: 'no-endpoint', protocol: 'tcp', client: /^127\.0\.0\.1:\d+$/ });
    t.match(plane.describe().vips[0]?.rejected, { 'no-endpoint': 1 });
  });

  t.test('max connections per VIP', async (t) => {
    const b = await echoServer(t);
    const { logger, lines } = captureLogs();
    const plane = await startPlane(
      t,
      table({ services: [svc('web', [ep('127.0.0.1', b.port)])], vips: [vip('web', 0)] }),
      { maxConnectionsPerVip: 2 },
      logger,
    );
    const open: net.Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const c = net.connect({ port: portOf(plane) });
      await once(c, 'connect', 2_000);
      c.write('x');
      await once(c, 'data', 2_000);
      open.push(c);
    }
    t.teardown(() => {
      for (const c of open) c.destroy();
    });
    const err = await exchange(portOf(plane), 'y').then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e,
    );
    t.equal(err?.code, 'ECONNRESET', 'the third is refused');
    t.ok(
      lines.some((l) => l.reason === 'max-connections'),
      'logged as max-connections',
    );
    open[0]?.destroy();
    await waitFor(() => plane.describe().vips[0]?.connections.active === 1, { timeoutMs: 2_000, what: 'a slot to free up' });
    t.equal((await exchange(portOf(plane), 'z')).toString(), 'z', 'a new one is served once a slot is free');
  });

  t.test('draining: an open connection stays while new ones go elsewhere, until the drain timeout', async (t) => {
    const a = await echoServer(t, 'A');
    const b = await echoServer(t, 'B');
    const services = (wa: number) => [
      svc('web', [ep('127.0.0.1', a.port, { weight: wa }), ep('127.0.0.1', b.port)], { labels: { PORTICO_L4_BALANCE: 'leastconn' } }),
    ];
    const plane = await startPlane(t, table({ services: services(1), vips: [vip('web', 0)] }), { drainTimeoutMs: 800 });
    // Open connections until one lands on A.
    let onA: net.Socket | undefined;
    const others: net.Socket[] = [];
    t.teardown(() => {
      onA?.destroy();
      for (const o of others) o.destroy();
    });
    for (let i = 0; i < 10 && !onA; i++) {
      const c = net.connect({ port: portOf(plane) });
      const [first] = await once<[Buffer]>(c, 'data', 2_000);
      if (first.toString().startsWith('A:')) onA = c;
      else others.push(c);
    }
    if (!onA) throw new Error('no connection reached A');
    const conn = onA;
    for (const version of ['weight 0', 'removed']) {
      plane.apply(
        table({
          services:
            version === 'weight 0' ? services(0) : [svc('web', [ep('127.0.0.1', b.port)], { labels: { PORTICO_L4_BALANCE: 'leastconn' } })],
          vips: [vip('web', 0)],
        }),
      );
      await plane.settled();
      conn.write('still-here');
      const [echo] = await once<[Buffer]>(conn, 'data', 2_000);
      t.equal(echo.toString(), 'still-here', `${version}: the open connection to A still works`);
      for (let i = 0; i < 5; i++) {
        const got = await exchange(portOf(plane), 'x');
        t.equal(got.toString(), 'B:x', `${version}: new connection ${i} goes to B`);
      }
      const view = plane.describe().vips[0]?.endpoints.find((e) => e.port === a.port);
      t.match(view, { state: 'draining', active: 1 }, `${version}: A is draining with one connection`);
    }
    // Nothing else closes it: the client and A keep it open, and the idle timeout is the default 15 min.
    await withTimeout(new Promise((r) => conn.on('close', r)), 5_000, 'the drained connection to be closed');
    t.pass('the drain deadline closed the open connection');
    await waitFor(() => !plane.describe().vips[0]?.endpoints.some((e) => e.port === a.port), {
      timeoutMs: 2_000,
      what: 'A to be forgotten',
    });
    t.pass('A leaves the pool once its last connection is gone');
  });

  t.test('a killed backend is ejected by the active check; new connections succeed elsewhere', async (t) => {
    const a = await tagServer(t, 'A');
    const b = await tagServer(t, 'B');
    const { logger, lines } = captureLogs();
    const plane = await startPlane(
      t,
      table({
        services: [
          svc('web', [ep('127.0.0.1', a.port), ep('127.0.0.1', b.port)], {
            health: { intervalMs: 100, timeoutMs: 100, rise: 1, fall: 1, expectStatus: [200, 399] },
          }),
        ],
        vips: [vip('web', 0)],
      }),
      { passiveFailures: 0, connectRetries: 0 },
      logger,
    );
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(await readAll(portOf(plane)));
    t.same([...seen].sort(), ['A\n', 'B\n'], 'both serve while alive (Maglev over the five-tuple spreads clients)');
    await a.close();
    await waitFor(() => plane.describe().vips[0]?.endpoints.find((e) => e.port === a.port)?.state === 'down', {
      timeoutMs: 3_000,
      what: 'A to be marked down',
    });
    t.ok(
      lines.some((l) => l.msg === 'l4: endpoint down (active check)'),
      'the transition is logged',
    );
    // With retries off, only the health check can keep clients away from A.
    for (let i = 0; i < 20; i++) t.equal(await readAll(portOf(plane)), 'B\n', `connection ${i} goes to B`);
  });
}

for (const engine of ENGINES) t.test(`${engine} engine`, async (t) => suite(t, engine));

t.test('counters on /metrics', async (t) => {
  const { createRegistry } = await import('../../src/telemetry/metrics.js');
  const { createL4Plane } = await import('../../src/l4/index.js');
  const registry = createRegistry({ defaultMetrics: false });
  const b = await echoServer(t);
  const plane = createL4Plane({
    listenAddress: '127.0.0.1',
    registry,
    options: { healthCheck: { enabled: false, intervalMs: 1000, timeoutMs: 1000, rise: 1, fall: 1 } },
  });
  t.teardown(() => plane.stop(0));
  await plane.start(table({ services: [svc('web', [ep('127.0.0.1', b.port)])], vips: [vip('web', 0)] }));
  await exchange(portOf(plane), 'hello');
  const text = await registry.metrics();
  t.match(text, /portico_l4_connections_total\{vip="tcp\/web.marathon:0"\} 1/);
  t.match(text, /portico_l4_bytes_total\{vip="tcp\/web.marathon:0",direction="in"\} 5/);
  t.match(text, new RegExp(`portico_l4_endpoint_connections_total\\{endpoint="127.0.0.1:${b.port}"\\} 1`));
  t.match(text, new RegExp(`portico_l4_endpoint_up\\{endpoint="127.0.0.1:${b.port}"\\} 1`));
});
