/**
 * Helpers for the L4 tests: routing tables built by hand, real backends on loopback port 0 (TCP echo,
 * a TCP server that records what it receives, UDP echo), a client that sends, half-closes and reads
 * everything, and a plane started with small timers and torn down with the test.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Test } from 'tap';
import { createL4Plane, type L4Options, type L4Plane } from '../../src/l4/index.js';
import type { Endpoint, Entrypoint, Route, RoutingTable, Service, VipEntry } from '../../src/model/types.js';
import { ServiceMap } from '../../src/model/service-map.js';
import { createLogger, type Logger } from '../../src/telemetry/log.js';
import { TimeoutError } from '../helpers/wait.js';

export function ep(address: string, port: number, extra: Partial<Endpoint> = {}): Endpoint {
  return { address, port, weight: 1, health: 'healthy', labels: {}, ...extra };
}

export function svc(name: string, endpoints: Endpoint[], extra: Partial<Service> = {}): Service {
  return {
    name,
    id: `${name}@test`,
    provider: 'test',
    framework: 'marathon',
    endpoints,
    balance: { algorithm: 'roundrobin' },
    vips: [],
    labels: {},
    ...extra,
  };
}

/** A named TCP/UDP VIP served on `ip` (default 127.0.0.1, not a local address test: see vips.listen) at `port`. */
export function vip(name: string, port: number, extra: Partial<VipEntry> = {}): VipEntry {
  const protocol = extra.protocol ?? 'tcp';
  return {
    key: `${protocol}/${name}.marathon:${port}`,
    protocol,
    name,
    framework: 'marathon',
    port,
    service: `${name}@test`,
    ip: '11.0.0.1',
    ...extra,
  };
}

let version = 0;

export function table(parts: {
  services?: Service[];
  vips?: VipEntry[];
  entrypoints?: Entrypoint[];
  routes?: Array<Partial<Route> & { entrypoint: string; host: string; service: string }>;
}): RoutingTable {
  version++;
  return {
    version,
    hash: `h${version}`,
    createdAt: new Date().toISOString(),
    services: ServiceMap.from((parts.services ?? []).map((s) => [s.id, s] as const)),
    routes: (parts.routes ?? []).map((r, i) => ({ id: `test/${i}`, provider: 'test', path: '/', pathMatch: 'prefix' as const, ...r })),
    entrypoints: Object.fromEntries((parts.entrypoints ?? []).map((e) => [e.name, e])),
    vips: parts.vips ?? [],
    conflicts: [],
    warnings: [],
    sources: {},
  };
}

/** Log lines as objects (to assert on the structured line per refused connection). */
export function captureLogs(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'debug',
    destination: {
      write: (s: string) => {
        lines.push(JSON.parse(s) as Record<string, unknown>);
      },
    },
  });
  return { logger, lines };
}

export const FAST: Partial<L4Options> = {
  timerResolutionMs: 20,
  connectTimeoutMs: 1_000,
  healthCheck: { enabled: false, intervalMs: 1_000, timeoutMs: 500, rise: 1, fall: 1 },
};

/** A plane on `127.0.0.1` (vips.listen), started on `t0`, stopped at teardown. */
export async function startPlane(t: Test, t0: RoutingTable, options: Partial<L4Options> = {}, logger?: Logger): Promise<L4Plane> {
  const plane = createL4Plane({ listenAddress: '127.0.0.1', options: { ...FAST, ...options }, ...(logger ? { logger } : {}) });
  t.teardown(() => plane.stop(0));
  await plane.start(t0);
  return plane;
}

export interface Backend {
  port: number;
  server: net.Server;
  /** Connections accepted so far. */
  accepted: number;
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

function track(t: Test | undefined, server: net.Server): Promise<Backend> {
  const b: Backend = {
    port: 0,
    server,
    accepted: 0,
    sockets: new Set(),
    close: () =>
      new Promise((resolve) => {
        for (const s of b.sockets) s.destroy();
        if (!server.listening) return resolve();
        server.close(() => resolve());
      }),
  };
  server.on('connection', (s: net.Socket) => {
    b.accepted++;
    b.sockets.add(s);
    s.on('close', () => b.sockets.delete(s));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      b.port = (server.address() as net.AddressInfo).port;
      t?.teardown(() => b.close());
      resolve(b);
    });
  });
}

/** Echo: every byte back; the client's FIN is answered with ours once everything is echoed. */
export function echoServer(t?: Test, tag?: string): Promise<Backend> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    if (tag !== undefined) s.write(`${tag}:`);
    s.pipe(s);
  });
  return track(t, server);
}

/** Answers every connection with `tag\n` and closes: which backend served a connection. */
export function tagServer(t: Test | undefined, tag: string): Promise<Backend> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end(`${tag}\n`);
  });
  return track(t, server);
}

/** Whatever a raw server receives, per connection. */
export function recordingServer(t: Test | undefined, onConn: (s: net.Socket, received: () => Buffer) => void): Promise<Backend> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    onConn(s, () => Buffer.concat(chunks));
  });
  return track(t, server);
}

/** Connect, send `payload`, half-close, and read until the server's FIN; resolves with everything read. */
export function exchange(
  port: number,
  payload: Buffer | string,
  opts: { host?: string; timeoutMs?: number; keepOpen?: boolean } = {},
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: opts.host ?? '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new TimeoutError(`an exchange through port ${port} to end`, opts.timeoutMs ?? 10_000, `read ${Buffer.concat(chunks).length} bytes`),
      );
    }, opts.timeoutMs ?? 10_000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('end', () => {
      clearTimeout(timer);
      s.end();
      resolve(Buffer.concat(chunks));
    });
    s.on('connect', () => {
      if (typeof payload === 'string' ? payload.length : payload.length) s.write(payload);
      if (!opts.keepOpen) s.end();
    });
  });
}

/** Read one connection's whole answer (until FIN) without sending anything. */
export function readAll(port: number, host = '127.0.0.1', timeoutMs = 5_000): Promise<string> {
  return exchange(port, '', { host, timeoutMs, keepOpen: true }).then((b) => b.toString());
}

export interface UdpEcho {
  port: number;
  socket: dgram.Socket;
  /** Datagrams received, by sender `address:port`. */
  senders: Map<string, number>;
}

/** UDP echo, prefixing each reply with `tag` when given. */
export function udpEcho(t: Test, tag = ''): Promise<UdpEcho> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const e: UdpEcho = { port: 0, socket, senders: new Map() };
    socket.on('message', (msg, r) => {
      const k = `${r.address}:${r.port}`;
      e.senders.set(k, (e.senders.get(k) ?? 0) + 1);
      socket.send(tag ? [Buffer.from(tag), msg] : msg, r.port, r.address);
    });
    socket.bind(0, '127.0.0.1', () => {
      e.port = socket.address().port;
      t.teardown(() => new Promise<void>((r) => socket.close(() => r())));
      resolve(e);
    });
  });
}

/** A port that was free a moment ago (VIP ports must be fixed numbers; the plane binds them). */
export function freePort(protocol: 'tcp' | 'udp' = 'tcp'): Promise<number> {
  return new Promise((resolve, reject) => {
    if (protocol === 'udp') {
      const s = dgram.createSocket('udp4');
      s.bind(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
      return;
    }
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
}
