/**
 * Run inside a network namespace by netns.test.ts (`ip netns exec NS node --import tsx netns-child.ts`).
 * The namespace's `lo` carries the VIP addresses given in argv; this script starts an L4 plane and
 * backends in there, connects through the VIPs and prints one JSON line of what it saw.
 *
 * argv: <v4 VIP address> <v6 VIP address> <v4 address not configured yet>
 */
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import os from 'node:os';
import { createL4Plane } from '../../src/l4/index.js';
import { ep, echoServer, exchange, svc, table, vip } from './helpers.js';

const [v4, v6, later] = process.argv.slice(2) as [string, string, string];
const BOGUS = '11.77.77.77';

// Pretend BOGUS is configured here (it is not): the plane then tries to bind it, gets EADDRNOTAVAIL and
// must fall back to vips.listen — the path a real race (address removed between check and bind) takes.
const realInterfaces = os.networkInterfaces;
(os as { networkInterfaces: typeof os.networkInterfaces }).networkInterfaces = () => {
  const ifs = realInterfaces();
  ifs.fake = [
    { address: BOGUS, netmask: '255.255.255.255', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: `${BOGUS}/32` },
  ];
  return ifs;
};

async function tryExchange(port: number, host: string): Promise<string> {
  return exchange(port, 'ping', { host, timeoutMs: 2_000 }).then(
    (b) => b.toString(),
    (e: NodeJS.ErrnoException) => `error:${e.code ?? e.message}`,
  );
}

async function udpAsk(port: number, host: string): Promise<string> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.close();
      resolve('timeout');
    }, 2_000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m.toString());
    });
    s.send('dns?', port, host);
  });
}

async function main(): Promise<void> {
  const backend = await echoServer();
  const udpBackend = dgram.createSocket('udp4');
  udpBackend.on('message', (m, r) => udpBackend.send(Buffer.concat([Buffer.from('re:'), m]), r.port, r.address));
  await new Promise<void>((r) => udpBackend.bind(0, '127.0.0.1', r));

  const services = [svc('web', [ep('127.0.0.1', backend.port)]), svc('dns', [ep('127.0.0.1', udpBackend.address().port)])];
  const vips = [
    vip('web', 8080, { ip: v4 }),
    vip('web', 8443, { ip: v6, key: 'tcp/web6.marathon:8443' }),
    vip('web', 9090, { ip: later, key: 'tcp/later.marathon:9090' }),
    vip('web', 9191, { ip: BOGUS, key: 'tcp/bogus.marathon:9191' }),
    vip('dns', 5353, { ip: v4, protocol: 'udp' }),
    vip('web', 7070, { key: 'tcp/unallocated.marathon:7070', ip: undefined }),
  ];
  const plane = createL4Plane({
    listenAddress: '127.0.0.1',
    options: { healthCheck: { enabled: false, intervalMs: 1000, timeoutMs: 500, rise: 1, fall: 1 }, timerResolutionMs: 20 },
  });
  await plane.start(table({ services, vips }));
  const out: Record<string, unknown> = {};
  out.listeners = plane.status().listeners.sort();
  out.viaV4 = await tryExchange(8080, v4);
  out.viaV6 = await tryExchange(8443, v6);
  out.laterOnListen = await tryExchange(9090, '127.0.0.1');
  out.bogusOnListen = await tryExchange(9191, '127.0.0.1');
  out.udp = await udpAsk(5353, v4);
  out.v4OnLoopback = await tryExchange(8080, '127.0.0.1');
  out.describe = plane
    .describe()
    .vips.map((v) => ({ key: v.key, listener: v.listener, binding: v.binding, error: v.error }))
    .sort((a, b) => (a.key < b.key ? -1 : 1));

  // The address appears on this machine: the next table binds it there and leaves vips.listen.
  execFileSync('ip', ['addr', 'add', `${later}/32`, 'dev', 'lo']);
  plane.apply(table({ services, vips }));
  await plane.settled();
  out.listenersAfter = plane.status().listeners.sort();
  out.laterOnVip = await tryExchange(9090, later);
  out.laterOnListenAfter = await tryExchange(9090, '127.0.0.1');

  await plane.stop(0);
  await backend.close();
  udpBackend.close();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: Error) => {
  process.stdout.write(`${JSON.stringify({ fatal: err.stack })}\n`);
  process.exitCode = 1;
});
