/**
 * Bytes through the engine, byte-exact, under backpressure, on every engine the plane can run:
 *  - libuv handles with writes batched per event-loop turn (the default),
 *  - libuv handles with writes made at once,
 *  - net.Socket for everything (the fallback).
 * The libuv engine reads every connection into ONE shared buffer: a byte kept past its read without a
 * copy would be overwritten by the next read of any connection. Random payloads, hashed at both ends,
 * large enough to span many reads and to fill socket buffers (peers that read slowly), and several
 * connections at once, catch that.
 */
import t from 'tap';
import type { Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { batchWrites } from '../../../src/net/stream.js';
import { endpoint, service } from '../../helpers/snapshot.js';
import { once, withTimeout } from '../../helpers/wait.js';
import { startPlane } from '../helpers.js';

const SIZE = 3 * 1024 * 1024;
const sha = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A deterministic payload of n bytes per name (both ends can make it). */
const payloads = new Map<string, Buffer>();
function payload(name: string, n: number): Buffer {
  const key = `${name}:${n}`;
  let p = payloads.get(key);
  if (!p) {
    p = randomBytes(n);
    payloads.set(key, p);
  }
  return p;
}

/** Write `data` in pieces, honouring backpressure. */
async function writeAll(s: net.Socket, data: Buffer, piece = 65_536): Promise<void> {
  for (let off = 0; off < data.length; off += piece) {
    if (!s.write(data.subarray(off, off + piece))) await once(s, 'drain', 10_000);
  }
}

/** A reader that pauses for a few ms every `every` bytes (a slow peer: the proxy must hold back, not buffer all). */
function slowly(s: net.Socket, every = 512 * 1024, pauseMs = 15): void {
  let since = 0;
  s.on('data', (d: Buffer) => {
    since += d.length;
    if (since >= every) {
      since = 0;
      s.pause();
      setTimeout(() => s.resume(), pauseMs); // a load pattern, not synchronisation
    }
  });
}

/**
 * The backend: `POST /up` (Content-Length or chunked) answers the sha256 of the body it read (slowly);
 * `GET /down/<len|chunked>/<name>` sends payload(name) framed so; `GET /echo/<x>` answers `x`;
 * an Upgrade request gets 101 and then an echo of everything.
 */
async function backend(t: Test): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf: Buffer = Buffer.alloc(0);
    let body:
      | {
          left: number;
          chunked: boolean;
          hash: ReturnType<typeof createHash>;
          chunkLeft: number;
          state: 'size' | 'data' | 'crlf' | 'trailer';
        }
      | undefined;
    let upgraded = false;
    const handle = (): void => {
      for (;;) {
        if (upgraded) return;
        if (body) {
          if (!body.chunked) {
            const n = Math.min(body.left, buf.length);
            body.hash.update(buf.subarray(0, n));
            buf = buf.subarray(n);
            body.left -= n;
            if (body.left > 0) return;
          } else {
            // chunk-size CRLF data CRLF ... 0 CRLF CRLF
            let done = false;
            while (!done) {
              if (body.state === 'size') {
                const i = buf.indexOf('\r\n');
                if (i < 0) return;
                body.chunkLeft = parseInt(buf.subarray(0, i).toString('latin1'), 16);
                buf = buf.subarray(i + 2);
                body.state = body.chunkLeft === 0 ? 'trailer' : 'data';
              } else if (body.state === 'data') {
                const n = Math.min(body.chunkLeft, buf.length);
                body.hash.update(buf.subarray(0, n));
                buf = buf.subarray(n);
                body.chunkLeft -= n;
                if (body.chunkLeft > 0) return;
                body.state = 'crlf';
              } else if (body.state === 'crlf') {
                if (buf.length < 2) return;
                buf = buf.subarray(2);
                body.state = 'size';
              } else {
                if (buf.length < 2) return;
                buf = buf.subarray(2); // no trailers
                done = true;
              }
            }
          }
          const h = body.hash.digest('hex');
          body = undefined;
          s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${h.length}\r\n\r\n${h}`);
          continue;
        }
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        const [line, ...fields] = head.split('\r\n');
        const [method, target] = (line ?? '').split(' ') as [string, string];
        const field = (n: string) =>
          fields
            .find((f) => f.toLowerCase().startsWith(`${n}:`))
            ?.slice(n.length + 1)
            .trim();
        if (field('upgrade')) {
          upgraded = true;
          s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n');
          if (buf.length) s.write(buf);
          s.on('data', (d: Buffer) => {
            if (!s.write(d)) s.pause();
          });
          s.on('drain', () => s.resume());
          s.on('end', () => s.end());
          return;
        }
        if (method === 'POST') {
          body = {
            left: Number(field('content-length') ?? 0),
            chunked: field('transfer-encoding') === 'chunked',
            hash: createHash('sha256'),
            chunkLeft: 0,
            state: 'size',
          };
          continue;
        }
        const [, kind, a, b] = target.split('/');
        if (kind === 'echo') {
          s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${(a ?? '').length}\r\n\r\n${a ?? ''}`);
          continue;
        }
        const data = payload(b ?? '', SIZE);
        if (a === 'chunked') {
          void (async () => {
            s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n');
            for (let off = 0; off < data.length; off += 100_000) {
              const piece = data.subarray(off, off + 100_000);
              s.write(`${piece.length.toString(16)}\r\n`);
              s.write(piece);
              if (!s.write('\r\n')) await once(s, 'drain', 10_000);
            }
            s.end('0\r\n\r\n');
          })();
        } else {
          s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${data.length}\r\nconnection: close\r\n\r\n`);
          void writeAll(s, data).then(() => s.end());
        }
        return; // a download is the last response of its connection
      }
    };
    slowly(s);
    s.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      handle();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

interface Res {
  status: number;
  head: string;
  sha: string;
  bytes: number;
  text: string;
}

/**
 * Responses off one connection, in order: head fields and the body (Content-Length or chunked), hashed
 * as it streams. Bytes past one response (pipelining) stay for the next.
 */
class Reader {
  private buf: Buffer = Buffer.alloc(0);
  private cur:
    | {
        head?: string;
        status: number;
        left: number;
        chunked: boolean;
        chunkLeft: number;
        hash: ReturnType<typeof createHash>;
        bytes: number;
        text: string;
      }
    | undefined;
  private readonly done: Res[] = [];
  private waiter: (() => void) | undefined;

  constructor(s: net.Socket) {
    s.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.parse();
      this.waiter?.();
    });
  }

  next(): Promise<Res> {
    return withTimeout(
      new Promise<Res>((resolve) => {
        const check = (): void => {
          const r = this.done.shift();
          if (r) {
            this.waiter = undefined;
            resolve(r);
          }
        };
        this.waiter = check;
        check();
      }),
      20_000,
      'a response',
    );
  }

  private take(n: number): void {
    const c = this.cur!;
    const part = this.buf.subarray(0, n);
    c.hash.update(part);
    c.bytes += n;
    if (c.text.length < 200) c.text += part.toString('latin1');
    this.buf = this.buf.subarray(n);
  }

  private finish(): void {
    const c = this.cur!;
    this.done.push({ status: c.status, head: c.head as string, sha: c.hash.digest('hex'), bytes: c.bytes, text: c.text });
    this.cur = undefined;
  }

  private parse(): void {
    for (;;) {
      if (!this.cur) {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = this.buf.subarray(0, end).toString('latin1');
        this.buf = this.buf.subarray(end + 4);
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
        this.cur = {
          head,
          status: Number(head.slice(9, 12)),
          left: cl ? Number(cl[1]) : 0,
          chunked: /\r\ntransfer-encoding: *chunked/i.test(head),
          chunkLeft: -1,
          hash: createHash('sha256'),
          bytes: 0,
          text: '',
        };
      }
      const c = this.cur;
      if (!c.chunked) {
        const n = Math.min(c.left, this.buf.length);
        this.take(n);
        c.left -= n;
        if (c.left > 0) return;
        this.finish();
        continue;
      }
      // chunked: size CRLF data CRLF … 0 CRLF CRLF (no trailers here)
      if (c.chunkLeft < 0) {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return;
        const size = parseInt(this.buf.subarray(0, i).toString('latin1'), 16);
        if (size === 0) {
          if (this.buf.length < i + 4) return;
          this.buf = this.buf.subarray(i + 4);
          this.finish();
          continue;
        }
        this.buf = this.buf.subarray(i + 2);
        c.chunkLeft = size;
      }
      if (c.chunkLeft > 0) {
        const n = Math.min(c.chunkLeft, this.buf.length);
        this.take(n);
        c.chunkLeft -= n;
        if (c.chunkLeft > 0) return;
      }
      if (this.buf.length < 2) return;
      this.buf = this.buf.subarray(2);
      c.chunkLeft = -1;
    }
  }
}

const ENGINES: Array<{ name: string; engine: 'uv' | 'net'; batch: boolean }> = [
  { name: 'libuv, batched writes', engine: 'uv', batch: true },
  { name: 'libuv, immediate writes', engine: 'uv', batch: false },
  { name: 'net.Socket', engine: 'net', batch: true },
];

for (const e of ENGINES) {
  t.test(e.name, async (t) => {
    batchWrites(e.batch);
    t.teardown(() => batchWrites(true));
    const port = await backend(t);
    const h = await startPlane(
      t,
      {
        services: { s: service([endpoint('127.0.0.1', port)], { name: 's' }) },
        routes: [{ entrypoint: 'web', host: '*', path: '/', pathMatch: 'prefix', service: 's' }],
      },
      {},
      e.engine,
    );
    const connect = async (): Promise<net.Socket> => {
      const s = net.connect({ host: '127.0.0.1', port: h.port() });
      await once(s, 'connect', 5000);
      t.teardown(() => s.destroy());
      return s;
    };

    await t.test('uploads (Content-Length and chunked), two at once, reach the slow backend byte-exact', async (t) => {
      const up = async (name: string, chunked: boolean) => {
        const data = payload(name, SIZE);
        const s = await connect();
        const res = new Reader(s).next();
        if (chunked) {
          s.write('POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
          for (let off = 0; off < data.length; off += 200_000) {
            const piece = data.subarray(off, off + 200_000);
            s.write(`${piece.length.toString(16)}\r\n`);
            await writeAll(s, piece);
            s.write('\r\n');
          }
          s.write('0\r\n\r\n');
        } else {
          s.write(`POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${data.length}\r\n\r\n`);
          await writeAll(s, data);
        }
        const r = await res;
        t.equal(r.status, 200);
        t.equal(r.text, sha(data), `${name}: the backend hashed exactly what was sent`);
      };
      await Promise.all([up('up-a', false), up('up-b', true)]);
    });

    await t.test('downloads (Content-Length and chunked), two at once, reach the slow client byte-exact', async (t) => {
      const down = async (name: string, framing: string) => {
        const s = await connect();
        slowly(s);
        const res = new Reader(s).next();
        s.write(`GET /down/${framing}/${name} HTTP/1.1\r\nHost: x\r\n\r\n`);
        const r = await res;
        t.equal(r.status, 200);
        t.equal(r.bytes, SIZE);
        t.equal(r.sha, sha(payload(name, SIZE)), `${name} (${framing}): byte-exact`);
      };
      await Promise.all([down('down-a', 'len'), down('down-b', 'chunked')]);
    });

    await t.test('pipelined bursts on two connections: every response matches its request', async (t) => {
      const burst = async (tag: string) => {
        const s = await connect();
        let wire = '';
        for (let i = 0; i < 60; i++) wire += `GET /echo/${tag}${i} HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(300)}\r\n\r\n`;
        const reader = new Reader(s);
        s.write(wire);
        const got: string[] = [];
        for (let i = 0; i < 60; i++) got.push((await reader.next()).text);
        t.same(
          got,
          Array.from({ length: 60 }, (_, i) => `${tag}${i}`),
          `${tag}: in order, none mixed up`,
        );
      };
      await Promise.all([burst('a'), burst('b')]);
    });

    await t.test('an upgraded tunnel carries megabytes both ways byte-exact', async (t) => {
      const s = await connect();
      s.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
      let buf: Buffer = Buffer.alloc(0);
      const chunks: Buffer[] = [];
      let got = 0;
      let headSeen = false;
      const data = payload('tunnel', SIZE);
      const done = new Promise<void>((resolve) => {
        s.on('data', (d: Buffer) => {
          if (!headSeen) {
            buf = Buffer.concat([buf, d]);
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) return;
            headSeen = true;
            d = buf.subarray(end + 4);
            t.match(buf.subarray(0, end).toString('latin1'), /^HTTP\/1\.1 101/);
            void writeAll(s, data);
          }
          chunks.push(Buffer.from(d));
          got += d.length;
          if (got >= SIZE) resolve();
        });
      });
      await withTimeout(done, 20_000, 'the echo');
      t.equal(sha(Buffer.concat(chunks).subarray(0, SIZE)), sha(data), 'the echo is byte-exact');
    });
  });
}
