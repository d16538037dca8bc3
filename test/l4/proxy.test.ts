/**
 * PROXY protocol through real sockets: sent to backends (v1, v2) and accepted from a trusted balancer in
 * front. The backends here parse the header themselves (independently of src/l4/proxy-protocol.ts).
 */
import net from 'node:net';
import t, { type Test } from 'tap';
import type { L4Options } from '../../src/l4/options.js';
import type { L4Plane } from '../../src/l4/plane.js';
import type { RoutingTable } from '../../src/model/types.js';
import * as uv from '../../src/net/uv.js';
import type { Logger } from '../../src/telemetry/log.js';
import { ioRoundTrip, once, waitFor, written } from '../helpers/wait.js';
import { captureLogs, ep, recordingServer, startPlane as startPlaneBase, svc, table, vip } from './helpers.js';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

interface Seen {
  header: Record<string, string | number>;
  rest: string;
}

/** A backend that parses a v1 or v2 header by hand, then keeps the rest. */
async function headerBackend(t: Test): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const b = await recordingServer(t, (s, received) => {
    s.on('end', () => {
      const buf = received();
      if (buf.subarray(0, 12).equals(SIG)) {
        const len = buf.readUInt16BE(14);
        const fam = buf[13] as number;
        const h: Record<string, string | number> = { version: 2, command: (buf[12] as number) & 0xf, family: fam };
        if (fam === 0x11) {
          h.src = [...buf.subarray(16, 20)].join('.');
          h.dst = [...buf.subarray(20, 24)].join('.');
          h.sport = buf.readUInt16BE(24);
          h.dport = buf.readUInt16BE(26);
        }
        seen.push({ header: h, rest: buf.subarray(16 + len).toString() });
      } else {
        const text = buf.toString('latin1');
        const m = /^PROXY (TCP4|TCP6) (\S+) (\S+) (\d+) (\d+)\r\n/.exec(text);
        if (m)
          seen.push({
            header: {
              version: 1,
              proto: m[1] as string,
              src: m[2] as string,
              dst: m[3] as string,
              sport: Number(m[4]),
              dport: Number(m[5]),
            },
            rest: text.slice(m[0].length),
          });
        else seen.push({ header: {}, rest: text });
      }
      s.end();
    });
  });
  return { port: b.port, seen };
}

/** Write `chunks`; `apart`: each is read by the plane before the next is written (one read per chunk). */
async function send(port: number, chunks: Array<string | Buffer>, apart = false): Promise<{ local: number; error?: string }> {
  const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  c.setNoDelay(true);
  await once(c, 'connect', 2_000);
  const local = c.localPort as number;
  const done = new Promise<{ local: number; error?: string }>((resolve) => {
    c.on('error', (e: NodeJS.ErrnoException) => resolve({ local, error: e.code ?? e.message }));
    c.on('close', () => resolve({ local }));
    c.resume();
  });
  for (const ch of chunks) {
    if (c.destroyed) break;
    if (!apart) c.write(ch);
    else {
      // (a refused connection fails the write: the error handler above records it)
      if (
        !(await written(c, ch).then(
          () => true,
          () => false,
        ))
      )
        break;
      await ioRoundTrip();
    }
  }
  if (!c.destroyed) c.end();
  return done;
}

const port = (plane: L4Plane, key: string) => (plane.address(key) as { port: number }).port;

const ENGINES = uv.available ? (['uv', 'net'] as const) : (['net'] as const);

function suite(t: Test, engine: 'uv' | 'net'): void {
  const startPlane = (tt: Test, tb: RoutingTable, o: Partial<L4Options> = {}, logger?: Logger) =>
    startPlaneBase(tt, tb, { tcpEngine: engine, ...o }, logger);

  t.test('PROXY v1 and v2 toward backends (opt-in per VIP)', async (t) => {
    const b1 = await headerBackend(t);
    const b2 = await headerBackend(t);
    const b0 = await headerBackend(t);
    const plane = await startPlane(
      t,
      table({
        services: [svc('one', [ep('127.0.0.1', b1.port)]), svc('two', [ep('127.0.0.1', b2.port)]), svc('none', [ep('127.0.0.1', b0.port)])],
        vips: [vip('one', 0, { proxyProtocol: 'v1' }), vip('two', 0, { proxyProtocol: 'v2' }), vip('none', 0)],
      }),
    );
    const p1 = port(plane, 'tcp/one.marathon:0');
    const r1 = await send(p1, ['hello ', 'v1']);
    await waitFor(() => b1.seen[0], { timeoutMs: 2_000, what: 'the v1 backend' });
    t.same(b1.seen[0], {
      header: { version: 1, proto: 'TCP4', src: '127.0.0.1', dst: '127.0.0.1', sport: r1.local, dport: p1 },
      rest: 'hello v1',
    });

    const p2 = port(plane, 'tcp/two.marathon:0');
    const r2 = await send(p2, ['hello v2']);
    await waitFor(() => b2.seen[0], { timeoutMs: 2_000, what: 'the v2 backend' });
    t.same(b2.seen[0], {
      header: { version: 2, command: 1, family: 0x11, src: '127.0.0.1', dst: '127.0.0.1', sport: r2.local, dport: p2 },
      rest: 'hello v2',
    });

    await send(port(plane, 'tcp/none.marathon:0'), ['plain']);
    await waitFor(() => b0.seen[0], { timeoutMs: 2_000, what: 'the plain backend' });
    t.same(b0.seen[0], { header: {}, rest: 'plain' }, 'no header unless the VIP asks for one');
  });

  t.test('accepting PROXY from a trusted balancer', async (t) => {
    const b = await headerBackend(t);
    const { logger, lines } = captureLogs();
    const plane = await startPlane(
      t,
      table({
        services: [svc('web', [ep('127.0.0.1', b.port)])],
        vips: [vip('web', 0, { proxyProtocol: 'v1' })],
      }),
      { acceptProxyFrom: ['127.0.0.0/8'] },
      logger,
    );
    const p = port(plane, 'tcp/web.marathon:0');

    await send(p, ['PROXY TCP4 203.0.113.9 11.0.0.1 4444 80\r\nfrom-v1']);
    const v2in = Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0, 12, 198, 51, 100, 7, 11, 0, 0, 1, 0x15, 0xb3, 0, 80])]);
    await send(p, [Buffer.concat([v2in, Buffer.from('from-v2')])]);
    // The header spread over many small writes.
    const frag = 'PROXY TCP4 203.0.113.10 11.0.0.1 5555 80\r\nslow';
    await send(p, frag.split(''), true);
    await send(p, [Buffer.concat([SIG, Buffer.from([0x20, 0x00, 0, 0]), Buffer.from('local')])]);
    await waitFor(() => b.seen.length >= 4 && b.seen, { timeoutMs: 3_000, what: 'four connections at the backend' });
    t.match(
      b.seen[0],
      { header: { src: '203.0.113.9', sport: 4444, dst: '11.0.0.1', dport: 80 }, rest: 'from-v1' },
      'v1 in: the balancer’s client is passed on',
    );
    t.match(b.seen[1], { header: { src: '198.51.100.7', sport: 5555, dst: '11.0.0.1', dport: 80 }, rest: 'from-v2' }, 'v2 in, v1 out');
    t.match(b.seen[2], { header: { src: '203.0.113.10', sport: 5555 }, rest: 'slow' }, 'a header split over many reads');
    t.match(b.seen[3], { header: { src: '127.0.0.1' }, rest: 'local' }, 'v2 LOCAL: the connection’s own address');

    const missing = await send(p, ['GET / HTTP/1.1\r\n\r\n']);
    t.equal(missing.error, 'ECONNRESET', 'a trusted source without a header is refused');
    t.ok(
      lines.some((l) => l.reason === 'proxy-required'),
      'logged as proxy-required',
    );
    const garbage = await send(p, ['PROXY TCP4 1.2.3.4 nonsense\r\n']);
    t.equal(garbage.error, 'ECONNRESET', 'a malformed header is refused');
    t.ok(
      lines.some((l) => l.reason === 'proxy-invalid'),
      'logged as proxy-invalid',
    );

    // The header deadline on a plane of its own: short here, while the slow header above had the default.
    const quick = await startPlane(
      t,
      table({ services: [svc('web', [ep('127.0.0.1', b.port)])], vips: [vip('web', 0, { proxyProtocol: 'v1' })] }),
      { acceptProxyFrom: ['127.0.0.0/8'], proxyHeaderTimeoutMs: 300 },
      logger,
    );
    const c = net.connect({ port: port(quick, 'tcp/web.marathon:0'), host: '127.0.0.1' });
    c.on('error', () => {});
    c.write('PROX');
    await waitFor(() => lines.some((l) => l.reason === 'proxy-timeout'), { timeoutMs: 3_000, what: 'the header timeout' });
    t.pass('an incomplete header times out');
    c.destroy();
    t.equal(b.seen.length, 4, 'nothing refused reached the backend');
  });

  t.test('a PROXY header from an untrusted source is refused; its other traffic passes', async (t) => {
    const b = await headerBackend(t);
    const { logger, lines } = captureLogs();
    const plane = await startPlane(
      t,
      table({ services: [svc('web', [ep('127.0.0.1', b.port)])], vips: [vip('web', 0)] }),
      { acceptProxyFrom: ['10.0.0.0/8'] },
      logger,
    );
    const p = port(plane, 'tcp/web.marathon:0');
    const spoof = await send(p, ['PROXY TCP4 10.1.1.1 10.2.2.2 1 2\r\nsecret']);
    t.equal(spoof.error, 'ECONNRESET', 'refused');
    t.ok(
      lines.some((l) => l.reason === 'proxy-untrusted'),
      'logged as proxy-untrusted',
    );
    const spoof2 = await send(p, ['PR', 'OXY ', 'TCP4 10.1.1.1 10.2.2.2 1 2\r\n'], true);
    t.equal(spoof2.error, 'ECONNRESET', 'refused when the signature arrives in pieces');
    await send(p, ['P', 'OST / HTTP/1.1\r\n\r\n'], true);
    await send(p, ['\r\n\r\nnot-a-signature']);
    await waitFor(() => b.seen.filter((s) => s.rest).length >= 2 && b.seen, { timeoutMs: 3_000, what: 'the two ordinary connections' });
    const rests = b.seen
      .map((s) => s.rest)
      .filter(Boolean)
      .sort();
    t.same(rests, ['\r\n\r\nnot-a-signature', 'POST / HTTP/1.1\r\n\r\n'], 'prefixes of a signature that diverge are forwarded whole');
    t.notOk(
      b.seen.some((s) => s.rest.includes('secret') || s.rest.includes('PROXY')),
      'no spoofed header reached the backend',
    );
  });
}

for (const engine of ENGINES) t.test(`${engine} engine`, async (t) => suite(t, engine));
