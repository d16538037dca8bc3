/**
 * The byte streams both engines run on (src/net/stream.ts), each kind against a plain net.Socket peer on
 * loopback: what the L4 session relies on — half-close both ways and the close at once after the peer's
 * FIN, resets passed on, the error that closed a stream, paused starts, one write in flight
 * (`highWaterBytes: 0`), and reads moving into a buffer of the stream's own after `ownBufferAfter`.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import t, { type Test } from 'tap';
import { DIRECT } from '../../src/net/listen.js';
import { SocketStream, UvStream, acceptUv, type Stream, type StreamOptions, type StreamOwner } from '../../src/net/stream.js';
import * as uv from '../../src/net/uv.js';
import { once, withTimeout } from '../helpers/wait.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function pattern(bytes: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i + 4 <= bytes; i += 4) b.writeUInt32BE((i * 2654435761) >>> 0, i);
  return b;
}

/** An owner that keeps a copy of every chunk and re-emits every callback as an event. */
class Owner extends EventEmitter implements StreamOwner {
  readonly chunks: Buffer[] = [];
  /** Per chunk: whether the stream said its reads are volatile, and the chunk's memory. */
  readonly reads: Array<{ volatile: boolean; memory: ArrayBufferLike }> = [];
  closeError: Error | undefined;
  closed = false;
  ended = false;
  stream: Stream | undefined;

  onStreamData(chunk: Buffer): void {
    this.reads.push({ volatile: this.stream?.volatileReads ?? false, memory: chunk.buffer });
    this.chunks.push(Buffer.from(chunk));
    this.emit('data', chunk);
  }
  onStreamEnd(): void {
    this.ended = true;
    this.emit('end');
  }
  onStreamDrain(): void {
    this.emit('drain');
  }
  onStreamClose(err: Error | undefined): void {
    this.closed = true;
    this.closeError = err;
    this.emit('close', err);
  }
  onStreamConnect(): void {
    this.emit('connect');
  }
  text(): string {
    return Buffer.concat(this.chunks).toString();
  }
}

interface Kind {
  name: string;
  connect(address: string, port: number, owner: StreamOwner, opts?: StreamOptions): Stream;
}

const KINDS: Kind[] = [
  ...(uv.available ? [{ name: 'UvStream', connect: UvStream.connect }] : []),
  { name: 'SocketStream', connect: SocketStream.connect },
];

/** A plain net.Server on 127.0.0.1:0 (allowHalfOpen), closed at teardown. */
async function server(t: Test): Promise<{ port: number; next(): Promise<net.Socket> }> {
  const srv = net.createServer({ allowHalfOpen: true });
  const queue: net.Socket[] = [];
  const sockets = new Set<net.Socket>();
  srv.on('connection', (s) => {
    s.on('error', () => {});
    sockets.add(s);
    queue.push(s);
    srv.emit('queued');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    srv.close();
  });
  return {
    port: (srv.address() as net.AddressInfo).port,
    async next() {
      while (queue.length === 0) await once(srv, 'queued', 5_000);
      return queue.shift() as net.Socket;
    },
  };
}

/** A stream of `kind` connected to a fresh server, and the server's end of it. */
async function pair(t: Test, kind: Kind, opts?: StreamOptions): Promise<{ stream: Stream; owner: Owner; peer: net.Socket }> {
  const srv = await server(t);
  const owner = new Owner();
  const stream = kind.connect('127.0.0.1', srv.port, owner, opts);
  owner.stream = stream;
  t.teardown(() => stream.destroy());
  await once(owner, 'connect', 5_000);
  return { stream, owner, peer: await srv.next() };
}

/** Everything a peer socket reads until its 'end', or the error that ended it instead. */
function drainPeer(peer: net.Socket): Promise<{ data: Buffer; error?: string }> {
  const chunks: Buffer[] = [];
  peer.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => {
    peer.once('end', () => resolve({ data: Buffer.concat(chunks) }));
    peer.once('error', (e: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), error: e.code ?? e.message }));
  });
}

/** Two turns of the event loop: a poll phase has run (a reading stream would have been handed what had arrived). */
const turns = () => new Promise<void>((r) => setImmediate(() => setImmediate(r)));

for (const kind of KINDS) {
  t.test(kind.name, async (t) => {
    t.test('the peer half-closes first: its FIN is reported, then end() closes at once with a FIN', async (t) => {
      const { stream, owner, peer } = await pair(t, kind);
      const got = drainPeer(peer);
      peer.end('hello');
      await once(owner, 'end', 5_000);
      t.equal(owner.text(), 'hello', 'the bytes before the FIN');
      t.notOk(stream.closed, 'half-open: still writable');
      t.ok(stream.write(Buffer.from('answer')), 'writes after the peer’s FIN');
      await new Promise((r) => setImmediate(r)); // (a batching stream flushes at the end of the turn)
      stream.end();
      t.ok(stream.closed, 'end() after the peer’s FIN with nothing queued closes at once');
      const [err] = await once<[Error | undefined]>(owner, 'close', 5_000);
      t.equal(err, undefined, 'a clean close');
      const peerSaw = await withTimeout(got, 5_000, 'the peer to see the FIN');
      t.same(peerSaw, { data: Buffer.from('answer') }, 'the peer got the answer and a FIN, not a reset');
    });

    t.test('we half-close first: the peer still talks, its FIN is reported, then the stream closes', async (t) => {
      const { stream, owner, peer } = await pair(t, kind);
      const got = drainPeer(peer);
      stream.write(Buffer.from('question'));
      stream.end();
      const peerSaw = await withTimeout(got, 5_000, 'the peer to see our FIN');
      t.equal(peerSaw.data.toString(), 'question', 'our bytes, then our FIN');
      t.notOk(owner.closed, 'still open: the peer has not ended');
      peer.end('late answer');
      await once(owner, 'end', 5_000);
      t.equal(owner.text(), 'late answer', 'what the peer sent after our FIN arrived');
      const [err] = owner.closed ? [owner.closeError] : await once<[Error | undefined]>(owner, 'close', 5_000);
      t.equal(err, undefined, 'closed once both sides ended');
      t.ok(stream.closed);
    });

    t.test('reset() passes a reset on; a peer’s reset is the error that closes the stream', async (t) => {
      const a = await pair(t, kind);
      const got = drainPeer(a.peer);
      const closed = once<[Error | undefined]>(a.owner, 'close', 5_000);
      a.stream.reset();
      t.equal((await withTimeout(got, 5_000, 'the peer to see the reset')).error, 'ECONNRESET', 'the peer sees a reset');
      const [err] = await closed;
      t.equal(err, undefined, 'a reset of ours closes without an error');

      const b = await pair(t, kind);
      b.peer.resetAndDestroy();
      const [err2] = await once<[NodeJS.ErrnoException | undefined]>(b.owner, 'close', 5_000);
      t.equal(err2?.code, 'ECONNRESET', 'the peer’s reset, as the close error');
    });

    t.test('a refused connect closes with the error', async (t) => {
      const probe = net.createServer();
      await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
      const port = (probe.address() as net.AddressInfo).port;
      await new Promise<void>((r) => probe.close(() => r())); // free a moment ago: nothing listens now
      const owner = new Owner();
      let connected = false;
      owner.on('connect', () => (connected = true));
      kind.connect('127.0.0.1', port, owner);
      const [err] = await once<[NodeJS.ErrnoException | undefined]>(owner, 'close', 5_000);
      t.equal(err?.code, 'ECONNREFUSED', 'the connect error');
      t.notOk(connected, 'no connect reported');
    });

    t.test('paused: nothing is read until resume()', async (t) => {
      const { stream, owner, peer } = await pair(t, kind, { paused: true });
      t.notOk(stream.reading, 'not reading once connected');
      await new Promise<void>((r) => peer.write('early', () => r()));
      await turns();
      t.equal(owner.chunks.length, 0, 'bytes that arrived were not read');
      stream.resume();
      await once(owner, 'data', 5_000);
      t.equal(owner.text(), 'early', 'read after resume()');
      t.ok(stream.reading, 'reading');
      stream.pause();
      // (a net.Socket on its ordinary read path reads ahead while paused, up to its high-water mark)
      if (stream instanceof UvStream) t.notOk(stream.reading, 'pause() stops reading at once');
    });

    t.test('highWaterBytes 0: write() says stop while a write is pending, drain when it is done', async (t) => {
      const { stream, owner, peer } = await pair(t, kind, { highWaterBytes: 0, batch: false });
      peer.pause(); // fills the socket buffers
      const piece = pattern(256 << 10);
      let written = 0;
      let ok = true;
      while (ok && written < 256 << 20) {
        ok = stream.write(piece);
        written += piece.length;
        if (ok && stream instanceof SocketStream) t.equal(stream.socket.writableLength, 0, 'true: nothing left queued');
      }
      t.notOk(ok, `write() said stop after ${written >> 10} KiB`);
      const drained = once(owner, 'drain', 10_000);
      const chunks: Buffer[] = [];
      peer.on('data', (d: Buffer) => chunks.push(d));
      peer.resume();
      await drained;
      t.pass('drain once the peer read');
      await new Promise((r) => setImmediate(r));
      stream.end();
      await once(peer, 'end', 10_000);
      t.equal(Buffer.concat(chunks).length, written, 'every byte written arrived');
    });

    t.test('ownBufferAfter: fresh memory per read, then one reused buffer of the stream’s own', async (t) => {
      const opts: StreamOptions = { reads: 'fresh', ownBufferAfter: 64 << 10, ownBufferBytes: 16 << 10, batch: false };
      const { owner, peer } = await pair(t, kind, opts);
      const sent = pattern(1 << 20);
      peer.end(sent);
      await once(owner, 'end', 10_000);
      t.equal(sha(Buffer.concat(owner.chunks)), sha(sent), 'every byte, in order');
      const first = owner.reads[0];
      t.equal(first?.volatile, false, 'the first reads are the owner’s to keep');
      const own = owner.reads.filter((r) => r.volatile);
      t.ok(own.length > 0, `then reads into the stream’s own buffer (${own.length} of ${owner.reads.length})`);
      t.ok(
        own.every((r) => r.memory === own[0]?.memory),
        'always the same memory',
      );
      t.notOk(
        owner.reads.some((r, i) => r.volatile && owner.reads.slice(i).some((x) => !x.volatile)),
        'and never back',
      );
    });

    t.test('ownBufferAfter 0: the stream’s own buffer from the first read', async (t) => {
      const { owner, peer } = await pair(t, kind, { ownBufferAfter: 0, ownBufferBytes: 4096 });
      const sent = pattern(200_000);
      peer.end(sent);
      await once(owner, 'end', 10_000);
      t.equal(sha(Buffer.concat(owner.chunks)), sha(sent), 'every byte, in order');
      t.ok(
        owner.reads.every((r) => r.volatile && r.memory === owner.reads[0]?.memory),
        'every read in one buffer',
      );
    });
  });
}

t.test(
  'an accepted UvStream (acceptUv) starts paused when asked, and knows both addresses',
  { skip: !uv.available && 'no libuv bindings' },
  async (t) => {
    const owner = new Owner();
    let accepted: UvStream | undefined;
    const got = new EventEmitter();
    const socket = await DIRECT.tcp('127.0.0.1', 0, 16, 'test');
    const l = acceptUv(
      socket.handle,
      (h) => {
        accepted = new UvStream(h, owner, true, { paused: true, reads: 'fresh' });
        owner.stream = accepted;
        got.emit('accepted');
      },
      () => {},
    );
    t.teardown(() => {
      accepted?.destroy();
      l.close();
    });
    const c = net.connect({ port: l.address().port, host: '127.0.0.1' });
    c.on('error', () => {});
    t.teardown(() => c.destroy());
    await Promise.all([once(got, 'accepted', 5_000), once(c, 'connect', 5_000)]);
    const s = accepted as UvStream;
    t.same(s.remote(), { address: '127.0.0.1', port: c.localPort }, 'remote(): the client');
    t.same(s.local(), { address: '127.0.0.1', port: l.address().port }, 'local(): what it connected to');
    await new Promise<void>((r) => c.write('hi', () => r()));
    await turns();
    t.equal(owner.chunks.length, 0, 'not read while paused');
    s.resume();
    await once(owner, 'data', 5_000);
    t.equal(owner.text(), 'hi');
    t.equal(owner.reads[0]?.volatile, false, 'fresh reads are the owner’s');
  },
);
