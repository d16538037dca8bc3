/**
 * SNI passthrough: the ClientHello parser on real and hand-broken hellos, then a passthrough entrypoint
 * in front of two TLS backends with their own certificates (made with openssl here): the client verifies
 * the backend's certificate, so the TLS session is the backend's, untouched by Portico.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { parseClientHello } from '../../src/l4/sni.js';
import * as uv from '../../src/net/uv.js';
import { ioRoundTrip, once, waitFor, withTimeout, written } from '../helpers/wait.js';
import { captureLogs, ep, startPlane, svc, table } from './helpers.js';

const run = promisify(execFile);

/** The first bytes a real Node TLS client sends for `servername`. */
async function captureHello(servername: string | undefined, extra: tls.ConnectionOptions = {}): Promise<Buffer> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const got = new Promise<Buffer>((resolve) =>
    srv.once('connection', (s) =>
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
      }),
    ),
  );
  const c = tls.connect({
    port: (srv.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    ...(servername ? { servername } : {}),
    rejectUnauthorized: false,
    ...extra,
  });
  c.on('error', () => {});
  const hello = await got;
  c.destroy();
  srv.close();
  return hello;
}

/** Re-cut a single-record hello into records carrying at most `size` handshake bytes each. */
function refragment(hello: Buffer, size: number): Buffer {
  const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) {
    const part = body.subarray(i, i + size);
    const h = Buffer.from([22, 3, 1, 0, 0]);
    h.writeUInt16BE(part.length, 3);
    out.push(h, part);
  }
  return Buffer.concat(out);
}

t.test('parseClientHello: real hellos, every prefix, fragmented records', async (t) => {
  const hello = await captureHello('App.Example.TEST.', { ALPNProtocols: ['h2', 'http/1.1'] });
  t.match(
    parseClientHello(hello),
    { kind: 'ok', serverName: 'app.example.test', alpn: ['h2', 'http/1.1'], length: hello.length },
    'name lower-cased, trailing dot dropped',
  );
  for (let i = 0; i < hello.length; i++) {
    const r = parseClientHello(hello.subarray(0, i));
    if (r.kind !== 'incomplete') t.fail(`a prefix of ${i} bytes gave ${r.kind}`);
  }
  for (const size of [1, 7, 100]) {
    const frag = refragment(hello, size);
    t.match(
      parseClientHello(frag),
      { kind: 'ok', serverName: 'app.example.test', length: frag.length },
      `hello over records of ${size} bytes`,
    );
    t.equal(parseClientHello(frag.subarray(0, frag.length - 1)).kind, 'incomplete');
  }
  const noSni = await captureHello(undefined);
  const r = parseClientHello(noSni);
  t.equal(r.kind, 'ok');
  t.equal(r.kind === 'ok' ? r.serverName : 'x', undefined, 'a hello without server_name (connect by IP)');
  const tls12 = await captureHello('old.example.test', { maxVersion: 'TLSv1.2' });
  t.match(parseClientHello(tls12), { kind: 'ok', serverName: 'old.example.test' }, 'TLS 1.2 hello');
  t.match(
    parseClientHello(Buffer.concat([hello, Buffer.from([23, 3, 3, 0, 1, 0])])),
    { kind: 'ok', length: hello.length },
    'bytes after the hello (0-RTT data) are left alone',
  );
});

t.test('parseClientHello: refuses what is not a well-formed ClientHello, boundedly', async (t) => {
  const hello = await captureHello('a.example.test');
  const mut = (f: (b: Buffer) => void) => {
    const b = Buffer.from(hello);
    f(b);
    return b;
  };
  const bad: Array<[string, Buffer, number?]> = [
    ['HTTP', Buffer.from('GET / HTTP/1.1\r\n')],
    ['one byte of HTTP', Buffer.from('G')],
    ['SSLv2-style hello', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01])],
    [
      'record version 2.0',
      mut((b) => {
        b[1] = 2;
      }),
    ],
    ['record length 0', Buffer.from([22, 3, 1, 0, 0])],
    ['record length > 2^14', Buffer.from([22, 3, 1, 0x40, 0x01])],
    [
      'not a ClientHello',
      mut((b) => {
        b[5] = 2;
      }),
    ],
    ['ClientHello bigger than the limit', hello, 64],
    ['a non-handshake record in between', Buffer.concat([refragment(hello, 50).subarray(0, 55), Buffer.from([23, 3, 3, 0, 1, 0])])],
    [
      'session id longer than 32',
      mut((b) => {
        b[5 + 4 + 2 + 32] = 33;
      }),
    ],
  ];
  for (const [what, buf, max] of bad) t.equal(parseClientHello(buf, max).kind, 'invalid', what);

  // Walk to the SNI extension and break it in specific ways.
  const sniAt = hello.indexOf(Buffer.from('a.example.test')) - 5; // name_type(1) + len(2) before the name, list len(2) before that
  t.ok(sniAt > 0);
  const nameLenAt = sniAt + 3;
  t.equal(
    parseClientHello(
      mut((b) => {
        b[sniAt + 5] = 0x2f;
      }),
    ).kind,
    'invalid',
    'a "/" in the host name',
  );
  t.equal(
    parseClientHello(
      mut((b) => {
        b.writeUInt16BE(200, nameLenAt);
      }),
    ).kind,
    'invalid',
    'host name length past the extension',
  );
  t.equal(
    parseClientHello(
      mut((b) => {
        b.writeUInt16BE(0, nameLenAt);
      }),
    ).kind,
    'invalid',
    'empty host name / inconsistent list',
  );

  // Fuzz: random corruption never throws and never reports something other than the three kinds.
  let seed = 99;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < 3_000; i++) {
    const b = Buffer.from(hello);
    for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    const cut = b.subarray(0, Math.floor(rnd() * (b.length + 1)));
    const r = parseClientHello(cut, 4096);
    if (!['ok', 'invalid', 'incomplete'].includes(r.kind)) t.fail(`odd result ${JSON.stringify(r)}`);
  }
  t.pass('3000 corrupted hellos parsed without a throw');
});

async function makeCert(dir: string, cn: string): Promise<{ cert: string; key: string }> {
  const certFile = path.join(dir, `${cn}.crt`);
  const keyFile = path.join(dir, `${cn}.key`);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    `/CN=${cn}`,
    '-addext',
    `subjectAltName=DNS:${cn}`,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  return { cert: await fs.readFile(certFile, 'utf8'), key: await fs.readFile(keyFile, 'utf8') };
}

/** A TLS backend that greets with its name, then echoes. */
async function tlsBackend(t: Test, name: string, creds: { cert: string; key: string }): Promise<number> {
  const srv = tls.createServer({ ...creds }, (s) => {
    s.on('error', () => {});
    s.write(`${name}:`);
    s.pipe(s);
  });
  srv.on('tlsClientError', () => {});
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return (srv.address() as net.AddressInfo).port;
}

/** A Duplex over a socket that writes in `size`-byte pieces, each read by the plane before the next: the hello arrives in many reads. */
class Trickle extends Duplex {
  constructor(
    private readonly sock: net.Socket,
    private readonly size: number,
  ) {
    super();
    sock.setNoDelay(true);
    sock.on('data', (d) => this.push(d));
    sock.on('end', () => this.push(null));
    sock.on('error', (e) => this.destroy(e));
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const pieces: Buffer[] = [];
    for (let i = 0; i < chunk.length; i += this.size) pieces.push(chunk.subarray(i, i + this.size));
    // Each piece is read by the plane before the next is written.
    void (async () => {
      for (const p of pieces) {
        await written(this.sock, p);
        await ioRoundTrip();
      }
    })().then(
      () => cb(),
      (err: Error) => cb(err),
    );
  }
  override _final(cb: () => void): void {
    this.sock.end();
    cb();
  }
}

async function talk(
  port: number,
  servername: string,
  ca: string,
  viaTrickle = false,
): Promise<{ greeting: string; echo: string; cn: unknown; authorized: boolean }> {
  const opts: tls.ConnectionOptions = { servername, ca, host: '127.0.0.1', port };
  if (viaTrickle) {
    const raw = net.connect({ port, host: '127.0.0.1' });
    await once(raw, 'connect', 2_000);
    opts.socket = new Trickle(raw, 16);
  }
  const c = tls.connect(opts);
  const chunks: string[] = [];
  c.on('data', (d) => chunks.push(String(d)));
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      c.once('secureConnect', resolve);
      c.once('error', reject);
    }),
    5_000,
    `TLS to ${servername}`,
  );
  await waitFor(() => chunks.join('').includes(':'), { timeoutMs: 2_000, what: 'the greeting' });
  c.write('ping');
  await waitFor(() => chunks.join('').endsWith('ping'), { timeoutMs: 2_000, what: 'the echo' });
  const text = chunks.join('');
  const res = {
    greeting: text.slice(0, text.indexOf(':')),
    echo: text.slice(text.indexOf(':') + 1),
    cn: c.getPeerCertificate().subject?.CN,
    authorized: c.authorized,
  };
  c.destroy();
  return res;
}

const ENGINES = uv.available ? (['uv', 'net'] as const) : (['net'] as const);

for (const engine of ENGINES)
  t.test(`SNI passthrough (${engine} engine): each name reaches its own backend with the client’s TLS session intact`, async (t) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'portico-sni-'));
    t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
    const a = await makeCert(dir, 'a.example.test');
    const b = await makeCert(dir, 'b.example.test');
    const w = await makeCert(dir, 'x.wild.test');
    const pa = await tlsBackend(t, 'A', a);
    const pb = await tlsBackend(t, 'B', b);
    const pw = await tlsBackend(t, 'W', w);
    const { logger, lines } = captureLogs();
    const passthrough = (sniTimeoutMs: number) =>
      startPlane(
        t,
        table({
          services: [svc('a', [ep('127.0.0.1', pa)]), svc('b', [ep('127.0.0.1', pb)]), svc('w', [ep('127.0.0.1', pw)])],
          entrypoints: [
            { name: 'tls', listen: '127.0.0.1:0', trustedProxies: [], tls: { auto: false, certificates: [], passthrough: true } },
          ],
          routes: [
            { entrypoint: 'tls', host: 'a.example.test', service: 'a@test' },
            { entrypoint: 'tls', host: 'b.example.test', service: 'b@test' },
            { entrypoint: 'tls', host: '*.wild.test', service: 'w@test' },
          ],
        }),
        { sniTimeoutMs, tcpEngine: engine },
        logger,
      );
    const plane = await passthrough(10_000);
    const port = (plane.address('tls') as { port: number }).port;
    t.match(plane.status().listeners, [`tls 127.0.0.1:${port}`]);

    t.same(
      await talk(port, 'a.example.test', a.cert),
      { greeting: 'A', echo: 'ping', cn: 'a.example.test', authorized: true },
      'a → A, its certificate verified by the client',
    );
    t.same(await talk(port, 'b.example.test', b.cert), { greeting: 'B', echo: 'ping', cn: 'b.example.test', authorized: true }, 'b → B');
    t.same(await talk(port, 'x.wild.test', w.cert), { greeting: 'W', echo: 'ping', cn: 'x.wild.test', authorized: true }, 'wildcard route');
    t.same(
      await talk(port, 'a.example.test', a.cert, true),
      { greeting: 'A', echo: 'ping', cn: 'a.example.test', authorized: true },
      'a ClientHello trickled in 16-byte writes',
    );

    const wrongCa = await talk(port, 'a.example.test', b.cert).then(
      () => 'ok',
      (e: Error) => e.message,
    );
    t.match(
      wrongCa,
      /self.signed|unable to verify|certificate/i,
      'a client trusting another certificate fails: Portico presents none of its own',
    );

    const noRoute = await talk(port, 'c.example.test', a.cert).then(
      () => 'ok',
      (e: NodeJS.ErrnoException) => e.code ?? e.message,
    );
    t.equal(noRoute, 'ECONNRESET', 'an unknown name is refused');
    t.ok(
      lines.some((l) => l.reason === 'sni-no-route' && l.serverName === 'c.example.test' && l.vip === 'sni/tls'),
      'logged with the name',
    );

    const plain = net.connect({ port, host: '127.0.0.1' });
    plain.on('error', () => {});
    plain.write('GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n');
    await withTimeout(new Promise((r) => plain.on('close', r)), 2_000, 'plain HTTP to be refused');
    t.ok(
      lines.some((l) => l.reason === 'sni-invalid'),
      'plain text is refused as sni-invalid',
    );

    // The hello deadline on a plane of its own: short here, while the trickled hello above had the default.
    const quick = await passthrough(300);
    const silent = net.connect({ port: (quick.address('tls') as { port: number }).port, host: '127.0.0.1' });
    silent.on('error', () => {});
    await once(silent, 'connect', 2_000);
    silent.write(Buffer.from([22, 3, 1]));
    await withTimeout(new Promise((r) => silent.on('close', r)), 3_000, 'an incomplete hello to time out');
    t.ok(
      lines.some((l) => l.reason === 'sni-timeout'),
      'an incomplete ClientHello times out',
    );
    t.match(quick.describe().sni[0], { entrypoint: 'tls', rejected: { 'sni-timeout': 1 } });
    const d = plane.describe().sni[0];
    t.match(d, { entrypoint: 'tls', rejected: { 'sni-no-route': 1, 'sni-invalid': 1 } });
    t.same(
      d?.routes.map((r) => r.host),
      ['a.example.test', 'b.example.test', '*.wild.test'],
    );
  });
