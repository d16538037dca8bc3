/**
 * Where the daemon serves IPAM: the default socket, or — when that is out of reach (here: another live
 * daemon already answers on it) — the fallback the daemon was given, with a warning; without a fallback
 * the failure is an error. A live daemon's socket is never taken over.
 */
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { openOverlay } from '../../src/overlay/index.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { tmpdir } from './helpers.js';

t.test('a socket another daemon serves is left alone: the fallback is served instead, or it is an error', async (t) => {
  const dir = tmpdir('socket');
  const store = await EmbeddedStore.open(path.join(dir, 'store'));
  const taken = path.join(dir, 'taken.sock');
  const other = net.createServer((s) => {
    s.on('error', () => {}); // the daemon's liveness probe hangs up at once
    s.end('other\n');
  });
  await new Promise<void>((resolve) => other.listen(taken, resolve));
  const networks = [{ name: 'small', subnet: '10.8.0.0/23', prefix: 24 }];

  await t.rejects(
    openOverlay({ store, agentId: 'a', agentIp: '192.0.2.1', networks, socketPath: taken }),
    { message: /cannot serve IPAM on .*taken\.sock.*another process already serves/ },
    'no fallback: an error naming the socket',
  );

  const warnings: string[] = [];
  const logger = {
    child: () => logger,
    warn: (_o: unknown, m: string) => {
      warnings.push(m);
    },
    info: () => {},
    debug: () => {},
    error: () => {},
  };
  const fallback = path.join(dir, 'ipam.sock');
  const o = await openOverlay({
    store,
    agentId: 'a',
    agentIp: '192.0.2.1',
    networks,
    socketPath: taken,
    fallbackSocketPath: fallback,
    logger: logger as never,
  });
  t.teardown(async () => {
    await o.close();
    await new Promise<void>((resolve) => other.close(() => resolve()));
    await store.close();
  });
  t.equal((await o.status()).socket, fallback, 'the fallback is served, and GET /v1/overlay says so');
  t.match(warnings.join('\n'), /cannot serve IPAM on the default socket/, 'with a warning');
  const answer = await new Promise<string>((resolve, reject) => {
    const c = net.createConnection(taken);
    let got = '';
    c.on('data', (d) => {
      got += d.toString();
    });
    c.on('end', () => resolve(got));
    c.on('error', reject);
  });
  t.equal(answer, 'other\n', 'the other daemon still answers on its socket');
});

t.test('a socket path too long for a Unix socket is refused with its length, not bound cut short', async (t) => {
  const dir = tmpdir('socket-long');
  const store = await EmbeddedStore.open(path.join(dir, 'store'));
  t.teardown(() => store.close());
  const long = path.join(dir, 'x'.repeat(120), 'ipam.sock');
  await t.rejects(
    openOverlay({
      store,
      agentId: 'a',
      agentIp: '192.0.2.1',
      networks: [{ name: 'n', subnet: '10.9.0.0/23', prefix: 24 }],
      socketPath: long,
    }),
    { message: /cannot serve IPAM on .*: the socket path is \d+ bytes long; a Unix socket path holds at most 107/ },
  );
});
