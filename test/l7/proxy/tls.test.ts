/**
 * TLS entrypoints: certificates chosen by SNI and verified by hostname, routing by Host behind them,
 * TLS 1.2+ only, ALPN http/1.1, session resumption, and a certificate added by a table swap served on
 * the same listener.
 */
import t from 'tap';
import type { Test } from 'tap';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import type { L7Options } from '../../../src/l7/options.js';
import type { Entrypoint } from '../../../src/model/types.js';
import { endpoint, service } from '../../helpers/snapshot.js';
import { once, withTimeout } from '../../helpers/wait.js';
import { RawClient, startBackend, startPlane, type TableParts } from '../helpers.js';

const run = promisify(execFile);

interface Cert {
  name: string;
  certFile: string;
  keyFile: string;
  pem: string;
}

async function makeCert(dir: string, name: string): Promise<Cert> {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    `subjectAltName=DNS:${name}`,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  return { name, certFile, keyFile, pem: await readFile(certFile, 'utf8') };
}

async function setup(t: Test, options: Partial<L7Options> = {}) {
  const dir = t.testdir();
  const [a, b, c] = await Promise.all(['a.example.test', 'b.example.test', 'c.example.test'].map((n) => makeCert(dir, n)));
  const backends = {
    a: await startBackend(t, 'backend-a'),
    b: await startBackend(t, 'backend-b'),
    c: await startBackend(t, 'backend-c'),
  };
  const parts = (certs: Cert[]): TableParts => {
    const ep: Entrypoint = {
      name: 'websecure',
      listen: '127.0.0.1:0',
      trustedProxies: [],
      tls: { auto: false, certificates: certs.map((x) => ({ certFile: x.certFile, keyFile: x.keyFile })) },
    };
    const names = certs.map((x) => x.name[0] as 'a' | 'b' | 'c');
    return {
      entrypoints: { websecure: ep },
      services: Object.fromEntries(names.map((n) => [n, service([endpoint('127.0.0.1', backends[n].port)], { name: n })])),
      routes: names.map((n) => ({
        entrypoint: 'websecure',
        host: `${n}.example.test`,
        path: '/',
        pathMatch: 'prefix' as const,
        service: n,
        redirectToHttps: true,
      })),
    };
  };
  const h = await startPlane(t, parts([a!, b!]), options);
  return { h, a: a!, b: b!, c: c!, backends, parts, port: h.port('websecure') };
}

async function httpsGet(t: Test, port: number, servername: string, ca: string, extra: tls.ConnectionOptions = {}) {
  const c = await RawClient.connect(port, { tls: { servername, ca, ALPNProtocols: ['h2', 'http/1.1'], ...extra } });
  t.teardown(() => c.destroy());
  c.write(`GET /hello HTTP/1.1\r\nHost: ${servername}\r\n\r\n`);
  const res = await c.readResponse();
  return { c, res, socket: c.socket as tls.TLSSocket };
}

t.test('two SNI names, each verified by hostname and routed by Host', async (t) => {
  const { a, b, backends, port } = await setup(t);
  for (const [cert, be] of [
    [a, backends.a],
    [b, backends.b],
  ] as const) {
    const { res, socket } = await httpsGet(t, port, cert.name, cert.pem);
    t.ok(socket.authorized, `${cert.name}: the certificate verifies against its own CA and hostname`);
    t.equal(socket.getPeerCertificate().subject.CN, cert.name, `${cert.name}: the certificate for the SNI name`);
    t.equal(socket.alpnProtocol, 'http/1.1', 'ALPN: http/1.1 chosen over h2');
    t.ok(['TLSv1.2', 'TLSv1.3'].includes(socket.getProtocol() ?? ''), `TLS 1.2+ (${socket.getProtocol()})`);
    t.equal(res.status, 200, 'proxied, not redirected: the request is already https');
    t.equal(res.header('x-backend'), be.name, `${cert.name}: routed by Host`);
    t.equal(be.requests.items.at(-1)?.header('x-forwarded-proto'), 'https');
  }
  // b's name with only a's certificate trusted: the server really presents different certificates.
  await t.rejects(RawClient.connect(port, { tls: { servername: b.name, ca: a.pem } }), "b.example.test is not served a's certificate");
});

t.test('TLS 1.1 is refused', async (t) => {
  const { a, port } = await setup(t);
  // SECLEVEL=0 so that this OpenSSL client is willing to offer TLS 1.1 at all; the server must refuse.
  const err = await RawClient.connect(port, {
    tls: { servername: a.name, ca: a.pem, minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' },
  }).then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e,
  );
  t.ok(err, 'the handshake fails');
  t.match(err?.code ?? err?.message, /ALERT_PROTOCOL_VERSION/, `the server answered with a protocol_version alert (${err?.code})`);
  const ok = await RawClient.connect(port, { tls: { servername: a.name, ca: a.pem, maxVersion: 'TLSv1.2' } });
  t.teardown(() => ok.destroy());
  t.equal((ok.socket as tls.TLSSocket).getProtocol(), 'TLSv1.2', 'TLS 1.2 is accepted');
});

t.test('a session is resumed', async (t) => {
  const { a, port } = await setup(t);
  const first = tls.connect({ port, host: '127.0.0.1', servername: a.name, ca: a.pem });
  t.teardown(() => first.destroy());
  const [session] = await once<[Buffer]>(first, 'session', 3000);
  first.end();
  const second = tls.connect({ port, host: '127.0.0.1', servername: a.name, ca: a.pem, session });
  t.teardown(() => second.destroy());
  await once(second, 'secureConnect', 3000);
  t.ok(second.isSessionReused(), 'the second handshake resumed the first session');
});

t.test('a table swap adding a third certificate is served on the same listener', async (t) => {
  const { h, a, b, c, backends, parts, port } = await setup(t);
  const open = await httpsGet(t, port, a.name, a.pem);
  t.equal(open.res.status, 200);
  await t.rejects(RawClient.connect(port, { tls: { servername: c.name, ca: c.pem } }), 'c.example.test has no certificate yet');

  const next = h.apply(parts([a, b, c]));
  t.equal(h.plane.status().tableVersion, next.version);
  t.equal(h.port('websecure'), port, 'the same port: the listener was not reopened');
  const { res, socket } = await httpsGet(t, port, c.name, c.pem);
  t.ok(socket.authorized, 'the new certificate verifies by hostname');
  t.equal(res.header('x-backend'), backends.c.name, 'and its new route is served');

  open.c.write(`GET /again HTTP/1.1\r\nHost: ${a.name}\r\n\r\n`);
  t.equal((await open.c.readResponse()).status, 200, 'a connection opened before the swap keeps working');
});

t.test('a handshake that never completes is closed after headerTimeoutMs and does not hold stop()', async (t) => {
  const { h, a, port } = await setup(t, { headerTimeoutMs: 300 });
  const silent = await RawClient.connect(port); // TCP only: not one byte of TLS
  t.teardown(() => silent.destroy());
  // Nothing else ends it within the wait: the client never closes, and the plane's default header timeout is 10 s.
  await silent.waitEnded(5000);
  t.pass('a silent client is cut by the 300 ms headerTimeoutMs');

  // A client that gives up half-way (it rejects the certificate) leaves a half-open socket behind it.
  await t.rejects(RawClient.connect(port, { tls: { servername: 'other.example.test', ca: a.pem } }));
  const idle = await RawClient.connect(port); // and one more, still in its handshake when the plane stops
  t.teardown(() => idle.destroy());
  await withTimeout(h.plane.stop(100), 3000, 'stop(100) with handshakes pending');
  await idle.waitEnded(1000);
  t.pass('stop() finished within its drain time and closed the pending handshake');
});
