import dgram from 'node:dgram';
import t from 'tap';
import type { L4Plane } from '../../src/l4/plane.js';
import { waitFor, withTimeout } from '../helpers/wait.js';
import { captureLogs, ep, startPlane, svc, table, udpEcho, vip } from './helpers.js';

const KEY = 'udp/dns.marathon:0';
const udpVip = () => vip('dns', 0, { protocol: 'udp' });
const portOf = (plane: L4Plane) => (plane.address(KEY) as { port: number }).port;

interface Client {
  socket: dgram.Socket;
  replies: Buffer[];
}

async function client(t: Parameters<typeof startPlane>[0]): Promise<Client> {
  const socket = dgram.createSocket('udp4');
  const c: Client = { socket, replies: [] };
  socket.on('message', (m) => c.replies.push(m));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => socket.close(() => r())));
  return c;
}

/** Send `msg` and wait for the next reply (resending once or twice: this is UDP). */
async function ask(c: Client, port: number, msg: string | Buffer, timeoutMs = 2_000): Promise<Buffer> {
  const before = c.replies.length;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    c.socket.send(msg, port, '127.0.0.1');
    try {
      return await waitFor(() => c.replies[before], { timeoutMs: Math.min(500, deadline - Date.now()), what: 'a UDP reply' });
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
  }
}

t.test('request/response across many clients; each client keeps its endpoint', async (t) => {
  const a = await udpEcho(t, 'A:');
  const b = await udpEcho(t, 'B:');
  const plane = await startPlane(
    t,
    table({ services: [svc('dns', [ep('127.0.0.1', a.port), ep('127.0.0.1', b.port)])], vips: [udpVip()] }),
  );
  const port = portOf(plane);
  const clients = await Promise.all(Array.from({ length: 60 }, () => client(t)));
  const served = new Map<Client, string>();
  await Promise.all(
    clients.map(async (c, i) => {
      for (let k = 0; k < 10; k++) {
        const reply = (await ask(c, port, `q${i}.${k}`)).toString();
        const [tag, body] = reply.split(':');
        if (body !== `q${i}.${k}`) t.fail(`client ${i} got ${reply}`);
        if (served.has(c) && served.get(c) !== tag) t.fail(`client ${i} moved from ${served.get(c)} to ${tag}`);
        served.set(c, tag as string);
      }
    }),
  );
  const tags = [...served.values()];
  t.equal(tags.length, 60, 'every client was answered');
  t.ok(
    tags.includes('A') && tags.includes('B'),
    `clients spread over both endpoints (A ${tags.filter((x) => x === 'A').length}, B ${tags.filter((x) => x === 'B').length})`,
  );
  const d = plane.describe().vips[0];
  t.match(d, { protocol: 'udp', udp: { flows: 60 } }, 'one flow per client');
  t.ok((d?.udp?.datagramsIn ?? 0) >= 600 && (d?.udp?.datagramsOut ?? 0) >= 600, 'datagrams counted both ways');
  t.equal(a.senders.size + b.senders.size, 60, 'one upstream socket per flow');
});

t.test('64 KiB-class datagrams pass whole', async (t) => {
  const a = await udpEcho(t);
  const plane = await startPlane(t, table({ services: [svc('dns', [ep('127.0.0.1', a.port)])], vips: [udpVip()] }));
  const c = await client(t);
  for (const size of [1, 1472, 9000, 65_507]) {
    const payload = Buffer.alloc(size, size % 251);
    const reply = await ask(c, portOf(plane), payload);
    t.equal(reply.length, size, `${size} bytes`);
    t.ok(reply.equals(payload), 'unchanged');
  }
});

t.test('idle flows expire; the flow table is bounded', async (t) => {
  const a = await udpEcho(t);
  const { logger, lines } = captureLogs();
  const plane = await startPlane(
    t,
    table({ services: [svc('dns', [ep('127.0.0.1', a.port)])], vips: [udpVip()] }),
    { udpIdleTimeoutMs: 1_000, udpMaxFlows: 3 },
    logger,
  );
  const cs = await Promise.all(Array.from({ length: 4 }, () => client(t)));
  for (const c of cs.slice(0, 3)) await ask(c, portOf(plane), 'hi');
  cs[3]?.socket.send('over', portOf(plane), '127.0.0.1');
  await waitFor(() => lines.find((l) => l.reason === 'flow-table-full'), { timeoutMs: 2_000, what: 'the table-full log line' });
  t.match(
    plane.describe().vips[0],
    { udp: { flows: 3 }, rejected: { 'flow-table-full': 1 } },
    'a fourth client is dropped while three flows are open',
  );
  await waitFor(() => plane.describe().vips[0]?.udp?.flows === 0, { timeoutMs: 5_000, what: 'the flows to expire' });
  t.pass('idle flows expired');
  t.equal((await ask(cs[3] as Client, portOf(plane), 'now')).toString(), 'now', 'room again for a new client');
});

t.test('PROXY v2 in front of each datagram when the VIP asks for it', async (t) => {
  const got: Buffer[] = [];
  const backend = dgram.createSocket('udp4');
  backend.on('message', (m, r) => {
    got.push(m);
    backend.send('ok', r.port, r.address);
  });
  await new Promise<void>((r) => backend.bind(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => backend.close(() => r())));
  const plane = await startPlane(
    t,
    table({
      services: [svc('dns', [ep('127.0.0.1', backend.address().port)])],
      vips: [vip('dns', 0, { protocol: 'udp', proxyProtocol: 'v2' })],
    }),
  );
  const c = await client(t);
  t.equal((await ask(c, portOf(plane), 'payload')).toString(), 'ok');
  const m = got[0] as Buffer;
  t.equal(m.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a', 'v2 signature');
  t.equal(m[13], 0x12, 'UDP over IPv4');
  t.equal(m.readUInt16BE(24), c.socket.address().port, 'the client’s port');
  t.equal(m.subarray(28).toString(), 'payload', 'then the datagram');
});

t.test('no endpoint: dropped, counted, logged; refused by ICMP counts as a failure', async (t) => {
  const { logger, lines } = captureLogs();
  const gone = dgram.createSocket('udp4');
  await new Promise<void>((r) => gone.bind(0, '127.0.0.1', r));
  const deadPort = gone.address().port;
  await new Promise<void>((r) => gone.close(() => r()));
  const plane = await startPlane(t, table({ services: [svc('dns', [])], vips: [udpVip()] }), {}, logger);
  const c = await client(t);
  c.socket.send('x', portOf(plane), '127.0.0.1');
  await waitFor(() => lines.find((l) => l.reason === 'no-endpoint' && l.protocol === 'udp'), { timeoutMs: 2_000, what: 'no-endpoint' });
  plane.apply(table({ services: [svc('dns', [ep('127.0.0.1', deadPort)])], vips: [udpVip()] }));
  await withTimeout(plane.settled(), 2_000, 'the apply');
  c.socket.send('y', portOf(plane), '127.0.0.1');
  await waitFor(() => (plane.describe().vips[0]?.endpoints[0]?.failures.connect ?? 0) >= 1, {
    timeoutMs: 2_000,
    what: 'the ICMP refusal to count',
  });
  t.pass('port unreachable counted against the endpoint');
});
