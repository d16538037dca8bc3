/**
 * WebSocket through the proxy: the RFC 6455 handshake passes, then the connection is a raw tunnel that
 * survives a table swap (even one that removes its endpoint), new upgrades follow the new table, and a
 * half-close is passed on.
 */
import t from 'tap';
import type { Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { endpoint, service } from '../../helpers/snapshot.js';
import { Recorder } from '../../helpers/wait.js';
import { RawClient, startBackend, startPlane, type Backend } from '../helpers.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const accept = (key: string) =>
  createHash('sha1')
    .update(key + GUID)
    .digest('base64');

/** One frame: FIN + opcode, then the payload (masked when a client sends it). Payloads < 64 KiB. */
function frame(payload: string, opcode = 0x1, mask = true): Buffer {
  const data = Buffer.from(payload);
  const len = data.length;
  const head =
    len < 126
      ? Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | len])
      : Buffer.from([0x80 | opcode, (mask ? 0x80 : 0) | 126, len >> 8, len & 255]);
  if (!mask) return Buffer.concat([head, data]);
  const key = randomBytes(4);
  const masked = Buffer.from(data.map((b, i) => b ^ (key[i % 4] as number)));
  return Buffer.concat([head, key, masked]);
}

/** Frames at the start of `buf`: their payloads, and the bytes they used. */
function parseFrames(buf: Buffer): { payloads: Array<{ opcode: number; text: string }>; used: number } {
  const payloads: Array<{ opcode: number; text: string }> = [];
  let p = 0;
  for (;;) {
    if (buf.length < p + 2) break;
    const opcode = (buf[p] as number) & 0x0f;
    const masked = ((buf[p + 1] as number) & 0x80) !== 0;
    let len = (buf[p + 1] as number) & 0x7f;
    let q = p + 2;
    if (len === 126) {
      if (buf.length < q + 2) break;
      len = buf.readUInt16BE(q);
      q += 2;
    }
    const key = masked ? buf.subarray(q, q + 4) : undefined;
    if (masked) q += 4;
    if (buf.length < q + len) break;
    const data = Buffer.from(buf.subarray(q, q + len));
    if (key) for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) ^ (key[i % 4] as number);
    payloads.push({ opcode, text: data.toString() });
    p = q + len;
  }
  return { payloads, used: p };
}

interface WsBackend extends Backend {
  /** Messages the backend received, in order. */
  messages: Recorder<string>;
  /** A tunnel's client side half-closed (the backend read EOF). */
  eofs: Recorder<net.Socket>;
}

/** An echo server: each text message comes back as `<name>:<message>`. */
async function wsBackend(t: Test, name: string): Promise<WsBackend> {
  const b = (await startBackend(t, name, (req) =>
    req.header('upgrade')?.toLowerCase() === 'websocket' ? 'upgrade' : { status: 426, body: 'upgrade required' },
  )) as WsBackend;
  b.messages = new Recorder<string>();
  b.eofs = new Recorder<net.Socket>();
  b.onUpgrade = (socket, req, rest) => {
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(req.header('sec-websocket-key') ?? '')}\r\nX-Backend: ${name}\r\n\r\n`,
    );
    let buf = rest;
    const onBytes = () => {
      const { payloads, used } = parseFrames(buf);
      buf = buf.subarray(used);
      for (const m of payloads) {
        if (m.opcode !== 0x1) continue;
        b.messages.push(m.text);
        socket.write(frame(`${name}:${m.text}`, 0x1, false));
      }
    };
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      onBytes();
    });
    socket.on('end', () => b.eofs.push(socket));
    onBytes();
  };
  return b;
}

/** A client that upgrades through the proxy; `early` is sent in the same write as the request. */
async function wsClient(t: Test, port: number, early?: Buffer) {
  const c = await RawClient.connect(port);
  t.teardown(() => c.destroy());
  const key = randomBytes(16).toString('base64');
  const req = Buffer.from(
    `GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  c.write(early ? Buffer.concat([req, early]) : req);
  const res = await c.readResponse();
  let pending = Buffer.alloc(0);
  const recv = async (): Promise<string> => {
    for (;;) {
      if (pending.length >= 2 && pending.length >= frameLength(pending)) {
        const n = frameLength(pending);
        const one = parseFrames(pending.subarray(0, n)).payloads[0]!;
        pending = pending.subarray(n);
        return one.text;
      }
      pending = Buffer.concat([pending, await c.readBytes(1)]);
    }
  };
  return { c, res, key, send: (m: string) => c.write(frame(m)), recv };
}

/** Bytes of the frame at the start of `buf` (Infinity until its length is known). */
function frameLength(buf: Buffer): number {
  let len = (buf[1] as number) & 0x7f;
  let q = 2;
  if (len === 126) {
    if (buf.length < 4) return Infinity;
    len = buf.readUInt16BE(2);
    q = 4;
  }
  if (((buf[1] as number) & 0x80) !== 0) q += 4;
  return q + len;
}

t.test('WebSocket echo through the proxy survives a table swap; new upgrades follow the new table', async (t) => {
  const one = await wsBackend(t, 'one');
  const two = await wsBackend(t, 'two');
  const parts = (svc: 'one' | 'two', port: number) => ({
    services: { [svc]: service([endpoint('127.0.0.1', port)], { name: svc }) },
    routes: [{ entrypoint: 'web', host: 'ws.test', path: '/', pathMatch: 'prefix' as const, service: svc }],
  });
  const h = await startPlane(t, parts('one', one.port));
  const port = h.port();

  const ws = await wsClient(t, port);
  t.equal(ws.res.status, 101, '101 Switching Protocols');
  t.equal(ws.res.header('sec-websocket-accept'), accept(ws.key), "the backend's accept key reaches the client unchanged");
  t.match(ws.res.header('upgrade') ?? '', /^websocket$/i);
  t.match(ws.res.header('connection') ?? '', /upgrade/i);
  t.equal(ws.res.header('x-backend'), 'one');
  const upReq = one.requests.items[0]!;
  t.equal(upReq.header('upgrade'), 'websocket', 'the backend got the Upgrade field');
  t.match(upReq.header('connection') ?? '', /upgrade/i, 'and Connection: upgrade');
  ws.send('hello');
  t.equal(await ws.recv(), 'one:hello');
  ws.send('x'.repeat(300));
  t.equal(await ws.recv(), `one:${'x'.repeat(300)}`, 'a longer frame too');

  // The route now goes to another service; "one" is no longer in the table at all.
  const next = h.apply(parts('two', two.port));
  t.equal(h.plane.status().tableVersion, next.version, 'the new table is in');
  ws.send('still there?');
  t.equal(await ws.recv(), 'one:still there?', 'the open tunnel still echoes through the old backend');

  // A new connection goes where the new table says; a frame sent with the upgrade request is kept.
  const ws2 = await wsClient(t, port, frame('early'));
  t.equal(ws2.res.status, 101);
  t.equal(ws2.res.header('x-backend'), 'two', 'the new upgrade goes to the new service');
  t.equal(await ws2.recv(), 'two:early', 'bytes sent right behind the upgrade request reach the backend');
  ws2.send('hi');
  t.equal(await ws2.recv(), 'two:hi');
  t.same(two.messages.items, ['early', 'hi']);
  t.same(one.messages.items, ['hello', 'x'.repeat(300), 'still there?']);
});

t.test('a half-close of the tunnel is passed on, and the other direction keeps flowing', async (t) => {
  const one = await wsBackend(t, 'one');
  const h = await startPlane(t, {
    services: { one: service([endpoint('127.0.0.1', one.port)], { name: 'one' }) },
    routes: [{ entrypoint: 'web', host: 'ws.test', path: '/', pathMatch: 'prefix', service: 'one' }],
  });
  const ws = await wsClient(t, h.port());
  ws.send('before');
  t.equal(await ws.recv(), 'one:before');

  ws.c.end(); // client: no more bytes from me
  const backendSide = await one.eofs.until(() => true, 2000, 'the backend to read EOF');
  t.pass("the client's FIN reached the backend");
  t.notOk(ws.c.ended, "the client's read side is still open");
  backendSide.write(frame('one:goodbye', 0x1, false));
  t.equal(await ws.recv(), 'one:goodbye', 'data from the backend still reaches the half-closed client');
  backendSide.end();
  await ws.c.waitEnded(2000);
  t.pass("the backend's FIN closes the client side");
});
