/**
 * DNS over TCP under a flood: no client starves the others. Floods of idle connections (one byte each,
 * half a length prefix) come from 127.0.0.2 and other 127/8 addresses (the whole 127/8 is on lo); the
 * client that must still be answered comes from 127.0.0.3. Covered: the per-source cap, eviction of the
 * idle-longest connection of the biggest source at the global cap, a connection with a query pending
 * never evicted, refusal when none is idle, the shorter idle timeout above half the cap, rate-limited
 * logs, and a seeded random run against a model of the rules.
 *
 * Waits are on events (a connection's 'close', an answer, the upstream receiving a query), but for the
 * plane's count of accepted connections, which nothing signals (polled with waitFor).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Writable } from 'node:stream';
import t from 'tap';
import { Aggregator } from '../../src/aggregator/aggregator.js';
import { createDnsPlane, type DnsPlane } from '../../src/dns/index.js';
import { sourceKey } from '../../src/dns/tcp.js';
import { createLogger } from '../../src/telemetry/log.js';
import { createRegistry } from '../../src/telemetry/metrics.js';
import { endpoint, service, snapshot } from '../helpers/snapshot.js';
import { Recorder, waitFor } from '../helpers/wait.js';
import { baseConfig, decode, header, query, Rng, seedFromEnv, startPlane, T, TcpClient } from './helpers.js';
import { FakeUpstream } from './upstream.js';

const web = service([endpoint('10.0.0.1', 8080), endpoint('10.0.0.2', 8080)], { name: 'web' });
const fixture = snapshot('file', { services: { web } });
const CLIENT = '127.0.0.3';
/** Timeouts long enough never to close a connection during a test that is not about them. */
const NO_IDLE = { tcpIdleMs: 60_000, tcpIdleBusyMs: 60_000 };

/** Connections of a flood, and every 'close' among them, by source. */
class Flood {
  readonly socks: net.Socket[] = [];
  readonly closes = new Recorder<string>();

  constructor(
    t: { teardown(fn: () => unknown): void },
    private readonly port: number,
    private readonly plane: DnsPlane,
  ) {
    t.teardown(() => {
      for (const s of this.socks) s.destroy();
    });
  }

  /**
   * `n` connections from `source`, each sending one byte once connected; resolves when the plane has
   * accepted all of them (kept or closed). A batch stays under the listener's backlog (511): libuv
   * accepts one connection per event-loop turn, and a handshake the full queue drops is retried by the
   * client's kernel a second later.
   */
  async open(source: string, n: number): Promise<void> {
    const target = this.plane.counters().tcpAccepted + n;
    for (let i = 0; i < n; i++) {
      const s = net.connect({ port: this.port, host: '127.0.0.1', localAddress: source });
      s.on('error', () => {}); // a refused connection may be reset
      s.once('connect', () => s.write(Buffer.from([0])));
      s.once('close', () => this.closes.push(source));
      this.socks.push(s);
    }
    // The listener has no event of its own to wait on: its count is polled.
    await waitFor(() => this.plane.counters().tcpAccepted >= target, {
      timeoutMs: 10_000,
      what: `${n} connections from ${source} accepted`,
    });
  }

  /** Resolves once `n` of the flood's connections have closed. */
  async closed(n: number): Promise<void> {
    if (n > 0) await this.closes.until(() => true, 10_000, `${n} flood connections closed`, n - 1);
  }

  closedFrom(source: string): number {
    return this.closes.items.filter((s) => s === source).length;
  }
}

/** A TCP client from `source` that has been answered once (so: accepted, and idle since that answer). */
async function answered(port: number, source: string, id = 1): Promise<TcpClient> {
  const c = new TcpClient(port, source);
  c.send(query({ name: 'web.marathon.mesos', id }));
  await c.waitFor(1);
  return c;
}

/** Ask `c` once more (activity: it becomes its source's most recently active connection). */
async function again(c: TcpClient, id: number): Promise<Buffer> {
  const n = c.messages.length;
  c.send(query({ name: 'web.marathon.mesos', id }));
  return (await c.waitFor(n + 1))[n]!;
}

/** The soft limit on open files of this process (Linux), when it can be read. */
function openFilesLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return undefined;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return undefined;
  }
}

t.test('sources: an IPv4 address; an IPv4-mapped address as its IPv4; IPv6 by /64', async (t) => {
  const rows: Array<[string, string]> = [
    ['10.1.2.3', '10.1.2.3'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:aaaa::1', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:bbbb:cccc:dddd:eeee', '2001:db8:1:2::/64'],
    ['2001:db8:1:3::1', '2001:db8:1:3::/64'],
    ['::1', '::/64'],
    ['fe80::1%lo', 'fe80::/64'],
    ['not an address', 'not an address'],
  ];
  for (const [address, key] of rows) t.equal(sourceKey(address), key, address);
});

// The finding: 2,000 one-byte connections from one client locked every other client out of a
// 1,024-connection listener. Default caps here (1,024 open, 64 per source). Every connection costs this
// process two descriptors (client and server side), so the flood is kept under the open-files limit —
// but never below 200 (three times the per-source cap): a machine that cannot open that many fails here.
const limit = openFilesLimit();
const FLOOD = Math.min(2000, Math.max(200, limit === undefined ? 2000 : Math.floor((limit - 256) / 2)));
t.test(`${FLOOD} one-byte connections from one source do not lock another client out`, async (t) => {
  const { port, plane, registry } = await startPlane(t, [fixture]);
  const perSource = plane.opts.maxTcpConnectionsPerSource;
  t.equal(perSource, 64, 'the default per-source cap');
  const flood = new Flood(t, port, plane);
  for (let sent = 0; sent < FLOOD; sent += 250) await flood.open('127.0.0.2', Math.min(250, FLOOD - sent));
  await flood.closed(FLOOD - perSource);
  t.equal(flood.closedFrom('127.0.0.2'), FLOOD - perSource, 'every connection beyond the per-source cap was closed');
  t.equal(plane.counters().tcpConnections, perSource, 'the first 64 stay open');
  t.equal(plane.counters().tcpClosed.source_limit, FLOOD - perSource);

  const c = new TcpClient(port, CLIENT);
  t.teardown(() => c.close());
  c.send(query({ name: 'web.marathon.mesos', id: 7 }));
  const [answer] = await c.waitFor(1);
  t.equal(answer!.readUInt16BE(0), 7, 'the other client is answered over TCP');
  t.same(
    decode(answer!)
      .answers.map((r) => r.address)
      .sort(),
    ['10.0.0.1', '10.0.0.2'],
  );
  t.equal(flood.closes.items.length, FLOOD - perSource, "the flooder's kept connections were not closed for it");
  t.match(await registry.metrics(), `portico_dns_tcp_closed_total{reason="source_limit"} ${FLOOD - perSource}`);
});

t.test('beyond the global cap: each newcomer takes the place of the idle-longest connection of the biggest source', async (t) => {
  const { port, plane, registry } = await startPlane(
    t,
    [fixture],
    {},
    { maxTcpConnections: 16, maxTcpConnectionsPerSource: 4, ...NO_IDLE },
  );
  const flood = new Flood(t, port, plane);
  // Four sources fill the 16 slots (4 each; 2 more each are refused).
  for (const source of ['127.0.0.10', '127.0.0.11', '127.0.0.12', '127.0.0.13']) await flood.open(source, 6);
  await flood.closed(8);
  t.equal(plane.counters().tcpConnections, 16);
  t.same(plane.counters().tcpClosed, { source_limit: 8, full: 0, evicted: 0, idle: 0 });
  // A fifth source: its first four each evict from a source holding 4 (never twice from one: it then
  // holds 3); its fifth and sixth meet its own cap.
  await flood.open('127.0.0.14', 6);
  await flood.closed(14);
  for (const source of ['127.0.0.10', '127.0.0.11', '127.0.0.12', '127.0.0.13']) {
    t.equal(flood.closedFrom(source), 3, `${source}: 2 refused, 1 evicted`);
  }
  t.equal(flood.closedFrom('127.0.0.14'), 2, '127.0.0.14: 2 refused, none of its own evicted yet');
  t.same(plane.counters().tcpClosed, { source_limit: 10, full: 0, evicted: 4, idle: 0 });

  // The client is answered; the room is made in the biggest source, 127.0.0.14 (4 against 3).
  const c = await answered(port, CLIENT);
  t.teardown(() => c.close());
  t.equal(header(c.messages[0]!).rcode, 0, 'the client is answered');
  await flood.closed(15);
  t.equal(flood.closedFrom('127.0.0.14'), 3, 'the eviction hit the source holding the most');
  t.same(plane.counters().tcpClosed, { source_limit: 10, full: 0, evicted: 5, idle: 0 });
  t.equal(plane.counters().tcpConnections, 16);
  t.match(await registry.metrics(), 'portico_dns_tcp_closed_total{reason="evicted"} 5');
});

t.test('eviction picks the connection idle longest: by last activity, within the source holding the most', async (t) => {
  t.test('one source: the idle-longest, not the oldest', async (t) => {
    const { port, plane } = await startPlane(t, [fixture], {}, { maxTcpConnections: 3, maxTcpConnectionsPerSource: 3, ...NO_IDLE });
    const a = await answered(port, '127.0.0.2', 1);
    const b = await answered(port, '127.0.0.2', 2);
    const c = await answered(port, '127.0.0.2', 3);
    t.teardown(() => [a, b, c].forEach((x) => x.close()));
    await again(a, 4); // a is the oldest, but b is now idle longest
    const d = await answered(port, CLIENT, 5);
    t.teardown(() => d.close());
    await b.waitClosed();
    t.equal(b.messages.length, 1, 'b (idle longest) was closed');
    t.equal((await again(a, 6)).readUInt16BE(0), 6, 'a still answers');
    t.equal((await again(c, 7)).readUInt16BE(0), 7, 'c still answers');
    t.equal(plane.counters().tcpClosed.evicted, 1);
  });

  t.test('the source holding the most goes first, though another was idle longer', async (t) => {
    const { port } = await startPlane(t, [fixture], {}, { maxTcpConnections: 3, maxTcpConnectionsPerSource: 3, ...NO_IDLE });
    const x = await answered(port, '127.0.0.4', 1); // idle longest of all
    const p = await answered(port, '127.0.0.2', 2);
    const q = await answered(port, '127.0.0.2', 3);
    t.teardown(() => [x, p, q].forEach((c) => c.close()));
    const n = await answered(port, CLIENT, 4);
    t.teardown(() => n.close());
    await p.waitClosed();
    t.pass('p, the idle-longest of 127.0.0.2 (2 connections), was closed');
    t.equal((await again(x, 5)).readUInt16BE(0), 5, 'x (127.0.0.4, 1 connection) still answers');
    t.equal((await again(q, 6)).readUInt16BE(0), 6);
  });

  t.test('sources holding as many: the idle-longest across them', async (t) => {
    const { port } = await startPlane(t, [fixture], {}, { maxTcpConnections: 3, maxTcpConnectionsPerSource: 3, ...NO_IDLE });
    const u = await answered(port, '127.0.0.4', 1);
    const v = await answered(port, '127.0.0.5', 2);
    const w = await answered(port, '127.0.0.6', 3);
    t.teardown(() => [u, v, w].forEach((c) => c.close()));
    await again(u, 4);
    const n = await answered(port, CLIENT, 5);
    t.teardown(() => n.close());
    await v.waitClosed();
    t.pass('v, idle longest, was closed');
    t.equal((await again(u, 6)).readUInt16BE(0), 6);
    t.equal((await again(w, 7)).readUInt16BE(0), 7);
  });
});

t.test('a connection with a query pending is never evicted; when none is idle the newcomer is closed', async (t) => {
  let release = () => {};
  const held = new Promise<void>((r) => (release = r));
  const up = await new FakeUpstream().start();
  up.behave = () => ({ answers: [{ type: T.A, address: '192.0.2.1' }], hold: held });
  t.teardown(() => up.stop());
  t.teardown(() => release());
  const { port, plane, registry } = await startPlane(
    t,
    [fixture],
    { upstreams: [up.address] },
    { maxTcpConnections: 2, maxTcpConnectionsPerSource: 2, upstreamTimeoutMs: 60_000, ...NO_IDLE },
  );

  // P, the oldest connection, waits on a forwarded query; I, of the same source, is idle.
  const p = new TcpClient(port, '127.0.0.2');
  t.teardown(() => p.close());
  p.send(query({ name: 'one.example.test', id: 1 }));
  await up.arrived.until((s) => s.name === 'one.example.test', 2000, 'the upstream to receive P’s query');
  const i = await answered(port, '127.0.0.2', 2);
  t.teardown(() => i.close());

  const n = await answered(port, CLIENT, 3);
  t.teardown(() => n.close());
  await i.waitClosed();
  t.pass('the idle connection was evicted, not the older one with a query pending');
  t.notOk(p.closed, 'P is open');

  // Now both open connections wait on the upstream: nothing to evict.
  n.send(query({ name: 'two.example.test', id: 4 }));
  await up.arrived.until((s) => s.name === 'two.example.test', 2000, 'the upstream to receive N’s query');
  const late = new TcpClient(port, '127.0.0.4');
  t.teardown(() => late.close());
  late.send(query({ name: 'web.marathon.mesos', id: 5 }));
  await late.waitClosed();
  t.equal(late.messages.length, 0, 'the newcomer is closed unanswered');
  t.same(plane.counters().tcpClosed, { source_limit: 0, full: 1, evicted: 1, idle: 0 });
  t.match(await registry.metrics(), 'portico_dns_tcp_closed_total{reason="full"} 1');

  release();
  t.equal(decode((await p.waitFor(1))[0]!).answers[0]?.address, '192.0.2.1', 'P gets its answer');
  t.equal(decode((await n.waitFor(2))[1]!).answers[0]?.address, '192.0.2.1', 'N gets its answer');
});

t.test('more than half of maxTcpConnections open: connections get the busy idle timeout', async (t) => {
  t.test('what the gauge says', async (t) => {
    const { port, plane, registry } = await startPlane(
      t,
      [fixture],
      {},
      { maxTcpConnections: 4, tcpIdleMs: 60_000, tcpIdleBusyMs: 30_000 },
    );
    const gauge = async () => Number(/^portico_dns_tcp_idle_timeout_seconds (\S+)$/m.exec(await registry.metrics())?.[1]);
    t.equal(await gauge(), 60, 'none open');
    const a = await answered(port, '127.0.0.2', 1);
    const b = await answered(port, '127.0.0.4', 2);
    t.teardown(() => [a, b].forEach((c) => c.close()));
    t.equal(await gauge(), 60, 'half open');
    const c = await answered(port, '127.0.0.5', 3);
    t.equal(await gauge(), 30, 'more than half open');
    c.close();
    // The server closes its side after reading the client's FIN: nothing of its own to wait on.
    await waitFor(() => plane.counters().tcpConnections === 2, { timeoutMs: 2000, what: 'the server to close its side' });
    t.equal(await gauge(), 60, 'half again');
  });

  t.test('a connection accepted above half closes after the busy timeout; the others keep theirs', async (t) => {
    const { port, plane } = await startPlane(t, [fixture], {}, { maxTcpConnections: 4, tcpIdleMs: 60_000, tcpIdleBusyMs: 50 });
    const a = await answered(port, '127.0.0.2', 1);
    const b = await answered(port, '127.0.0.4', 2);
    t.teardown(() => [a, b].forEach((c) => c.close()));
    const c = await answered(port, '127.0.0.5', 3);
    t.teardown(() => c.close());
    await c.waitClosed();
    t.equal(plane.counters().tcpClosed.idle, 1, 'closed by the server for idleness (tcpIdleTimeout is 60s)');
    t.equal((await again(a, 4)).readUInt16BE(0), 4, 'a, answered below half, is still open');
    t.equal((await again(b, 5)).readUInt16BE(0), 5);
  });
});

t.test('refusals are logged at most every 10s per reason, with how many were not', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const registry = createRegistry({ defaultMetrics: false });
  const agg = new Aggregator({ debounceMs: 0, registry });
  let clock = 1_700_000_000_000;
  const plane = createDnsPlane({
    config: baseConfig(),
    registry,
    logger: createLogger({ level: 'info', destination }),
    options: { now: () => clock, maxTcpConnectionsPerSource: 1, ...NO_IDLE },
  });
  await plane.start(agg.current());
  t.teardown(async () => {
    await plane.stop(100);
    agg.close();
  });
  const port = plane.address().tcp.port;
  const first = await answered(port, '127.0.0.2');
  t.teardown(() => first.close());
  const flood = new Flood(t, port, plane);
  await flood.open('127.0.0.2', 5);
  await flood.closed(5);
  const refusals = () => lines.filter((l) => l.reason === 'source_limit');
  t.equal(refusals().length, 1, 'one line for five refusals');
  t.match(refusals()[0], { level: 40, source: '127.0.0.2', suppressed: 0, msg: /maxTcpConnectionsPerSource/ });
  clock += 10_000;
  await flood.open('127.0.0.2', 1);
  await flood.closed(6);
  t.equal(refusals().length, 2);
  t.match(refusals()[1], { source: '127.0.0.2', suppressed: 4 }, 'the next line says how many were not logged');
  t.equal(plane.counters().tcpClosed.source_limit, 6, 'every refusal is counted');
});

t.test('a seeded random run: every accept follows the rules of a model', async (t) => {
  const seed = seedFromEnv();
  t.comment(`PORTICO_SEED=${seed}`);
  const rng = new Rng(seed);
  const max = 6;
  const perSource = 3;
  const { port, plane } = await startPlane(t, [fixture], {}, { maxTcpConnections: max, maxTcpConnectionsPerSource: perSource, ...NO_IDLE });
  const sources = ['127.0.0.2', '127.0.0.4', '127.0.0.5', '127.0.0.6'];
  interface Open {
    c: TcpClient;
    source: string;
    /** When it last had activity (accepted, or a query answered). */
    at: number;
  }
  const open: Open[] = [];
  t.teardown(() => open.forEach((o) => o.c.close()));
  let tick = 0;
  let id = 0;
  const held = (source: string) => open.filter((o) => o.source === source).length;
  for (let step = 0; step < 80; step++) {
    if (open.length > 0 && rng.int(3) === 0) {
      const o = open[rng.int(open.length)]!;
      await again(o.c, ++id & 0xffff);
      o.at = ++tick;
      continue;
    }
    const source = sources[rng.int(sources.length)]!;
    const c = new TcpClient(port, source);
    c.send(query({ name: 'web.marathon.mesos', id: ++id & 0xffff }));
    if (held(source) >= perSource) {
      await c.waitClosed();
      t.equal(c.messages.length, 0, `step ${step}: ${source} at its cap: refused`);
      continue;
    }
    let victim: Open | undefined;
    if (open.length >= max) {
      // The model: most connections held by its source first, then the longest idle.
      victim = [...open].sort((a, b) => held(b.source) - held(a.source) || a.at - b.at)[0]!;
      open.splice(open.indexOf(victim), 1);
    }
    const entry: Open = { c, source, at: ++tick }; // accepted (idle from now), then answered
    await c.waitFor(1);
    entry.at = ++tick;
    open.push(entry);
    if (victim) {
      await victim.c.waitClosed();
      t.ok(victim.c.closed, `step ${step}: the model's victim (${victim.source}) was evicted`);
    }
    t.equal(plane.counters().tcpConnections, open.length, `step ${step}: as many open as the model says`);
  }
  for (const o of open) t.notOk(o.c.closed, `${o.source}: still open at the end`);
  const { evicted, source_limit } = plane.counters().tcpClosed;
  t.comment(`${evicted} evicted, ${source_limit} refused at a source's cap`);
  t.ok(evicted > 0, 'the run evicted');
});
