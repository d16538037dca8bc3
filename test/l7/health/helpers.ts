import { HealthChecker } from '../../../src/l7/health/index.js';
/** Real loopback servers for health tests, always closed on teardown. */
import net from 'node:net';
import type { Endpoint, HealthCheck, Service } from '../../../src/model/types.js';
import { ServiceMap } from '../../../src/model/service-map.js';

export type Mode = 'ok' | 'fail' | 'silent' | 'garbage';

export interface TestServer {
  port: number;
  /** What the next connections get: 200, 500, nothing at all, or a non-HTTP line. */
  mode: Mode;
  connections: number;
  open: number;
  maxOpen: number;
  requests: string[];
  close(): Promise<void>;
}

export async function startServer(mode: Mode = 'ok'): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const state: TestServer = {
    port: 0,
    mode,
    connections: 0,
    open: 0,
    maxOpen: 0,
    requests: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = net.createServer((socket) => {
    sockets.add(socket);
    state.connections++;
    state.open++;
    state.maxOpen = Math.max(state.maxOpen, state.open);
    socket.on('error', () => {});
    socket.on('close', () => {
      sockets.delete(socket);
      state.open--;
    });
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      state.requests.push(buf);
      const m = state.mode;
      if (m === 'silent') return;
      if (m === 'garbage') socket.end('hello there\r\n');
      else socket.end(`HTTP/1.1 ${m === 'ok' ? '200 OK' : '500 Internal Server Error'}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

/** A port nothing listens on (bound, then closed). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export async function waitFor(cond: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5)); // poll interval of this bounded wait
  }
}

/**
 * An observation window counted in events, not milliseconds: it ends when a checker of its own has
 * completed `n` checks (15 ms interval) of a control server. Tests that assert something does NOT happen
 * ("no more checks of a removed endpoint") watch for this long — several check intervals — whatever the
 * machine's load.
 */
export async function checkIntervals(n: number): Promise<void> {
  const srv = await startServer('ok');
  const hc = new HealthChecker();
  hc.update(tableOf(svc('clock@test', [ep(srv.port)], check({ intervalMs: 15 }))));
  try {
    await waitFor(() => (hc.endpoints()[0]?.checksTotal ?? 0) >= n, 5000, `${n} control checks`);
  } finally {
    hc.stop();
    await srv.close();
  }
}

export function check(extra: Partial<HealthCheck> = {}): HealthCheck {
  return { httpPath: '/healthz', expectStatus: [200, 399], intervalMs: 15, timeoutMs: 250, rise: 2, fall: 3, ...extra };
}

export function ep(port: number, address = '127.0.0.1'): Endpoint {
  return { address, port, weight: 1, health: 'unknown', labels: {} };
}

export function svc(id: string, endpoints: Endpoint[], health?: HealthCheck): Service {
  const s: Service = {
    name: id.split('@')[0] as string,
    id,
    provider: 'test',
    framework: 'marathon',
    endpoints,
    balance: { algorithm: 'roundrobin' },
    vips: [],
    labels: {},
  };
  if (health) s.health = health;
  return s;
}

export function tableOf(...services: Service[]): { services: ServiceMap } {
  return { services: ServiceMap.from(services.map((s) => [s.id, s] as const)) };
}

/**
 * Resolves with `count()` once it held still across two control checks: connections a cancelled or
 * in-flight probe had already started have landed by then.
 */
export async function settled(count: () => number, what: string): Promise<number> {
  let last = count();
  for (let i = 0; i < 50; i++) {
    await checkIntervals(2);
    const now = count();
    if (now === last) return now;
    last = now;
  }
  throw new Error(`${what} never settled`);
}
