import net from 'node:net';
import t, { type Test } from 'tap';
import { createL4Plane, registerL4Api, resolveL4Options, type L4Plane } from '../../src/l4/index.js';
import { once, waitFor, withTimeout } from '../helpers/wait.js';
import { startApi } from '../api/helpers.js';
import { echoServer, ep, exchange, freePort, startPlane, svc, table, tagServer, vip } from './helpers.js';

t.test('options: defaults, and every bad value named', async (t) => {
  const d = resolveL4Options();
  t.match(d, { balance: 'maglev', maglevTableSize: 65_537, hashKey: 'five-tuple', connectRetries: 2 });
  t.ok(Object.isFrozen(d), 'frozen');
  const fails: Array<[string, Record<string, unknown>, RegExp]> = [
    ['table size not prime', { maglevTableSize: 65_536 }, /maglevTableSize/],
    ['negative retries', { connectRetries: -1 }, /connectRetries/],
    ['fractional retries', { connectRetries: 1.5 }, /connectRetries/],
    ['unknown balance', { balance: 'random' }, /balance/],
    ['unknown hash key', { hashKey: 'dest' }, /hashKey/],
    ['zero idle timeout', { idleTimeoutMs: 0 }, /idleTimeoutMs/],
    ['bad CIDR', { acceptProxyFrom: ['10.0.0.0/33'] }, /acceptProxyFrom/],
    ['bad health rise', { healthCheck: { rise: 0 } }, /healthCheck/],
    ['tiny hello limit', { sniMaxHelloBytes: 10 }, /sniMaxHelloBytes/],
  ];
  for (const [what, opts, re] of fails) t.throws(() => resolveL4Options(opts as never), re, what);
  t.throws(() => createL4Plane({ listenAddress: 'localhost' }), /listenAddress/, 'vips.listen must be an IP');
});

t.test('named VIPs without an address are not served; IP VIPs use their address', async (t) => {
  const b = await tagServer(t, 'B');
  const plane = await startPlane(
    t,
    table({
      services: [svc('web', [ep('127.0.0.1', b.port)])],
      vips: [
        vip('web', 0, { ip: undefined }),
        { key: 'tcp/10.9.9.9:0', protocol: 'tcp', framework: 'marathon', address: '10.9.9.9', port: 0, service: 'web@test' },
      ],
    }),
  );
  t.equal(plane.address('tcp/web.marathon:0'), undefined, 'the unallocated named VIP is skipped');
  const ipVip = plane.address('tcp/10.9.9.9:0');
  t.ok(ipVip, 'the IP VIP (not local: on vips.listen) is served');
  const d = plane.describe().vips;
  t.match(
    d.find((v) => v.key === 'tcp/web.marathon:0'),
    { listener: null, ip: null, error: 'no address allocated yet' },
  );
  t.match(
    d.find((v) => v.key === 'tcp/10.9.9.9:0'),
    { ip: '10.9.9.9', binding: 'listen-address' },
  );
});

t.test('two VIPs on one port of vips.listen: the first is served, the other reported', async (t) => {
  const port = await freePort();
  const a = await tagServer(t, 'A');
  const b = await tagServer(t, 'B');
  const plane = await startPlane(
    t,
    table({
      services: [svc('a', [ep('127.0.0.1', a.port)]), svc('b', [ep('127.0.0.1', b.port)])],
      vips: [vip('a', port, { ip: '11.0.0.1' }), vip('b', port, { ip: '11.0.0.2' })],
    }),
  );
  t.equal(plane.status().listeners.length, 1);
  t.equal((await exchange(port, '')).toString(), 'A\n');
  const d = plane.describe().vips;
  t.match(d[1], {
    key: `tcp/b.marathon:${port}`,
    listener: null,
    error: `tcp 127.0.0.1:${port} is already served by tcp/a.marathon:${port}`,
  });
});

t.test('a port taken by someone else is an error in status, not a failed start; tcp and udp share a port', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as net.AddressInfo).port;
  const e = await echoServer(t);
  const plane = await startPlane(
    t,
    table({
      services: [svc('web', [ep('127.0.0.1', e.port)])],
      vips: [vip('web', port), vip('web', port, { protocol: 'udp' })],
    }),
  );
  const st = plane.status();
  t.equal(st.state, 'error');
  t.match(st.error, new RegExp(`tcp/web.marathon:${port}.*EADDRINUSE`));
  t.same(st.listeners, [`udp 127.0.0.1:${port}`], 'the UDP VIP on the same port binds');
  blocker.close();
  plane.apply(
    table({ services: [svc('web', [ep('127.0.0.1', e.port)])], vips: [vip('web', port), vip('web', port, { protocol: 'udp' })] }),
  );
  await plane.settled();
  t.equal(plane.status().state, 'serving', 'the next table binds it once the port is free');
  t.equal((await exchange(port, 'hi')).toString(), 'hi');
});

t.test('apply: listeners move only when needed; a table that changes nothing keeps the socket', async (t) => {
  const e = await echoServer(t);
  const t1 = table({ services: [svc('web', [ep('127.0.0.1', e.port)])], vips: [vip('web', 0)] });
  const plane = await startPlane(t, t1);
  const before = plane.address('tcp/web.marathon:0');
  const c = net.connect({ port: before?.port as number });
  await once(c, 'connect', 2_000);
  t.teardown(() => c.destroy());
  for (let i = 0; i < 5; i++) {
    plane.apply(table({ services: [svc('web', [ep('127.0.0.1', e.port)])], vips: [vip('web', 0)] }));
    await plane.settled();
  }
  t.same(plane.address('tcp/web.marathon:0'), before, 'same listener after five identical tables');
  c.write('still');
  const [d] = await once<[Buffer]>(c, 'data', 2_000);
  t.equal(d.toString(), 'still', 'and the open connection is untouched');
  t.equal(plane.status().tableVersion, 6 + (t1.version - 1), 'serves the latest version');
  plane.apply(table({ services: [svc('web', [ep('127.0.0.1', e.port)])], vips: [] }));
  await plane.settled();
  t.equal(plane.address('tcp/web.marathon:0'), undefined, 'a VIP that leaves the table is unbound');
  c.write('after');
  const [d2] = await once<[Buffer]>(c, 'data', 2_000);
  t.equal(d2.toString(), 'after', 'its open connections finish on the endpoint they have');
});

t.test('apply never throws: a VIP naming a service the table lacks is served with no endpoint', async (t) => {
  const plane = await startPlane(t, table({ vips: [vip('ghost', 0)] }));
  t.doesNotThrow(() => plane.apply(table({ vips: [vip('ghost', 0), vip('ghost', 0, { key: 'broken', ip: 'not-an-ip' })] })));
  await plane.settled();
  const err = await exchange((plane.address('tcp/ghost.marathon:0') as { port: number }).port, 'x').then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e.code,
  );
  t.equal(err, 'ECONNRESET');
});

async function drainSetup(t: Test): Promise<{ plane: L4Plane; port: number; c: net.Socket }> {
  const e = await echoServer(t);
  const plane = createL4Plane({
    listenAddress: '127.0.0.1',
    options: { healthCheck: { enabled: false, intervalMs: 1000, timeoutMs: 1000, rise: 1, fall: 1 } },
  });
  t.teardown(() => plane.stop(0));
  await plane.start(table({ services: [svc('web', [ep('127.0.0.1', e.port)])], vips: [vip('web', 0)] }));
  const port = (plane.address('tcp/web.marathon:0') as { port: number }).port;
  const c = net.connect({ port });
  t.teardown(() => c.destroy());
  await once(c, 'connect', 2_000);
  c.write('x');
  await once(c, 'data', 2_000);
  return { plane, port, c };
}

t.test('stop(drainMs) stops accepting, lets open connections finish, and resolves when the last one closes', async (t) => {
  const { plane, port, c } = await drainSetup(t);
  let stopped = false;
  const stopping = plane.stop(600_000).then(() => {
    stopped = true;
  });
  await waitFor(
    async () =>
      await exchange(port, 'y').then(
        () => false,
        () => true,
      ),
    { timeoutMs: 2_000, what: 'new connections to be refused' },
  );
  c.write('during-drain');
  const [d] = await once<[Buffer]>(c, 'data', 2_000);
  t.equal(d.toString(), 'during-drain', 'an open connection works while draining');
  t.notOk(stopped, 'stop() waits while a connection is open');
  c.end();
  await withTimeout(stopping, 5_000, 'stop() once the last connection closed (its drain time is 10 min)');
  t.equal(plane.status().state, 'stopped');
});

t.test('stop(drainMs) closes what is still open when the drain time is over', async (t) => {
  const { plane, c } = await drainSetup(t);
  const closed = new Promise((r) => c.on('close', r));
  // The client and the echo endpoint keep the connection open: only the drain deadline ends it.
  await withTimeout(plane.stop(200), 5_000, 'stop(200)');
  await withTimeout(closed, 2_000, 'the open connection to be closed');
  t.pass('the drain deadline closed the open connection');
  t.equal(plane.status().state, 'stopped');
});

t.test('GET /v1/vips on the admin api', async (t) => {
  const e = await echoServer(t);
  const plane = await startPlane(
    t,
    table({
      services: [svc('web', [ep('127.0.0.1', e.port), ep('127.0.0.1', 1, { weight: 0 })], { labels: { PORTICO_L4_BALANCE: 'leastconn' } })],
      vips: [vip('web', 0, { proxyProtocol: 'v2' })],
    }),
  );
  const { api, request } = await startApi(t);
  registerL4Api(api.route.bind(api), plane);
  t.equal((await request('/v1/vips', { token: null })).status, 401, 'behind the bearer token');
  const res = await request('/v1/vips');
  t.equal(res.status, 200);
  const port = (plane.address('tcp/web.marathon:0') as { port: number }).port;
  t.match(res.json, {
    listenAddress: '127.0.0.1',
    vips: [
      {
        key: 'tcp/web.marathon:0',
        name: 'web',
        framework: 'marathon',
        ip: '11.0.0.1',
        port: 0,
        protocol: 'tcp',
        proxyProtocol: 'v2',
        service: 'web@test',
        balance: 'leastconn',
        listener: `tcp 127.0.0.1:${port}`,
        binding: 'listen-address',
        connections: { active: 0, total: 0 },
        bytes: { in: 0, out: 0 },
        rejected: {},
        endpoints: [
          { address: '127.0.0.1', port: 1, weight: 0, state: 'draining' },
          { address: '127.0.0.1', port: e.port, weight: 1, state: 'serving', health: 'healthy', activeCheck: 'none', active: 0 },
        ],
      },
    ],
    sni: [],
  });
  const doc = (await request('/v1/openapi.json')).json as { paths: Record<string, unknown> };
  t.ok(doc.paths['/v1/vips'], 'documented in the OpenAPI document');
});
