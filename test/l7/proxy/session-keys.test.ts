/**
 * Two L7 planes fed by two session-keys managers on one store, as two instances are: a sticky cookie
 * issued by one routes to the same endpoint on the other, a TLS session made with one resumes on the
 * other, and both survive a rotation (the previous key is accepted for its grace), with no connection
 * dropped by the swap. A third plane that never got the shared keys is the control: neither the cookie
 * nor the session means anything to it.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import t from 'tap';
import type { Test } from 'tap';
import { DEFAULT_STICKY_COOKIE } from '../../../src/l7/balance/index.js';
import type { L7Plane } from '../../../src/l7/plane.js';
import { SealedBox } from '../../../src/pki/crypto.js';
import { SESSION_KEY_DEFAULTS, SessionKeyManager, type SessionKeys } from '../../../src/pki/session-keys.js';
import type { Store } from '../../../src/store/types.js';
import { endpoint, entrypoint, service } from '../../helpers/snapshot.js';
import { Recorder, once } from '../../helpers/wait.js';
import { FakeClock } from '../../pki/fake-clock.js';
import { openStore } from '../../pki/helpers.js';
import { RawClient, get, startBackend, startPlane, type TableParts } from '../helpers.js';

const run = promisify(execFile);
const HOST = 'app.example.test';

async function makeCert(dir: string): Promise<{ certFile: string; keyFile: string; pem: string }> {
  const certFile = path.join(dir, 'app.crt');
  const keyFile = path.join(dir, 'app.key');
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
    `/CN=${HOST}`,
    '-addext',
    `subjectAltName=DNS:${HOST}`,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  return { certFile, keyFile, pem: await readFile(certFile, 'utf8') };
}

function manager(t: Test, store: Store, box: SealedBox, clock: FakeClock, plane: L7Plane) {
  const m = new SessionKeyManager({ store, box, clock });
  const rec = new Recorder<SessionKeys>();
  m.onChange((keys) => plane.setSessionKeys(keys));
  m.onChange(rec.push);
  t.teardown(() => m.close());
  return { m, rec };
}

/** The `name=value` of a Set-Cookie header. */
function cookieOf(setCookie: string | undefined): string {
  const m = new RegExp(`^(${DEFAULT_STICKY_COOKIE}=[^;]+);`).exec(setCookie ?? '');
  if (!m) throw new Error(`no sticky Set-Cookie in ${JSON.stringify(setCookie)}`);
  return m[1] as string;
}

/** One TLS handshake: whether it resumed `session`, and the session it leaves (awaited only on request). */
async function handshake(
  t: Test,
  port: number,
  ca: string,
  opts: { session?: Buffer; maxVersion?: tls.SecureVersion; wantSession?: boolean } = {},
): Promise<{ reused: boolean; authorized: boolean; session: Buffer | undefined }> {
  const s = tls.connect({
    port,
    host: '127.0.0.1',
    servername: HOST,
    ca,
    ...(opts.session && { session: opts.session }),
    ...(opts.maxVersion && { maxVersion: opts.maxVersion }),
  });
  t.teardown(() => s.destroy());
  const session = opts.wantSession ? once<[Buffer]>(s, 'session', 5000) : undefined;
  await once(s, 'secureConnect', 5000);
  const out = { reused: s.isSessionReused(), authorized: s.authorized, session: session ? (await session)[0] : undefined };
  s.end();
  return out;
}

t.test('two planes, two managers, one store: sticky cookies and TLS sessions work across them, rotations included', async (t) => {
  const dir = t.testdir();
  const cert = await makeCert(dir);
  const backends = await Promise.all(['b1', 'b2', 'b3'].map((n) => startBackend(t, n)));
  const parts: TableParts = {
    entrypoints: {
      web: entrypoint('web', '127.0.0.1:0'),
      websecure: {
        ...entrypoint('websecure', '127.0.0.1:0'),
        tls: { auto: false, certificates: [{ certFile: cert.certFile, keyFile: cert.keyFile }] },
      },
    },
    services: {
      app: service(
        backends.map((b) => endpoint('127.0.0.1', b.port)),
        { name: 'app', balance: { algorithm: 'sticky' } },
      ),
    },
    routes: ['web', 'websecure'].map((ep) => ({ entrypoint: ep, host: HOST, path: '/', pathMatch: 'prefix' as const, service: 'app' })),
  };
  const [A, B, C] = [await startPlane(t, parts), await startPlane(t, parts), await startPlane(t, parts)];
  const web = (h: typeof A) => h.port('web');
  const tlsPort = (h: typeof A) => h.port('websecure');
  const send = (h: typeof A, cookie?: string) => get(web(h), HOST, '/', cookie ? `Cookie: ${cookie}\r\n` : '');

  // Before any shared key, the planes serve with their own (nothing waits on the store).
  const early = await send(A);
  t.equal(early.status, 200, 'served before the store answered');
  const earlyCookie = cookieOf(early.header('set-cookie'));

  const { store } = await openStore(t);
  const box = new SealedBox(randomBytes(32));
  const clock = new FakeClock();
  const ma = manager(t, store, box, clock, A.plane);
  const mb = manager(t, store, box, clock, B.plane);
  await Promise.all([ma.m.start(), mb.m.start()]);

  // --- sticky: a cookie A issued routes the same on B.
  const first = await send(A, earlyCookie);
  const target = first.header('x-backend');
  const cookie = cookieOf(first.header('set-cookie'));
  t.not(cookie, earlyCookie, "A's own early cookie is unknown under the shared secret: re-stamped");
  for (const [name, h] of [
    ['B', B],
    ['A', A],
  ] as const) {
    for (let i = 0; i < 4; i++) {
      const r = await send(h, cookie);
      t.equal(r.header('x-backend'), target, `${name} request ${i}: the cookie from A routes to ${target}`);
      t.equal(r.header('set-cookie'), undefined, `${name} request ${i}: nothing to re-stamp`);
    }
  }
  const onC = await send(C, cookie);
  t.not(cookieOf(onC.header('set-cookie')), cookie, 'the control plane (no shared keys) does not know the cookie');

  // --- TLS: a session made with A resumes on B (TLS 1.3 and 1.2).
  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    const made = await handshake(t, tlsPort(A), cert.pem, { maxVersion, wantSession: true });
    t.notOk(made.reused);
    const onB = await handshake(t, tlsPort(B), cert.pem, { maxVersion, session: made.session! });
    t.ok(onB.reused, `${maxVersion}: A's session resumes on B`);
    t.ok(onB.authorized);
    const onControl = await handshake(t, tlsPort(C), cert.pem, { maxVersion, session: made.session! });
    t.notOk(onControl.reused, `${maxVersion}: not on the control plane`);
  }

  // A keep-alive connection open across the rotations below is not dropped.
  const kept = await RawClient.connect(tlsPort(A), { tls: { servername: HOST, ca: cert.pem } });
  t.teardown(() => kept.destroy());
  kept.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.equal((await kept.readResponse()).status, 200);

  // --- ticket key rotation (12 h): a session under the previous key still resumes, on either plane.
  const oldSession = (await handshake(t, tlsPort(A), cert.pem, { wantSession: true })).session!;
  clock.advance(SESSION_KEY_DEFAULTS.ticketRotateMs);
  await Promise.all([ma, mb].map((x) => x.rec.until((k) => k.tickets.generation === 2, 10_000, 'tickets generation 2')));
  t.ok((await handshake(t, tlsPort(B), cert.pem, { session: oldSession })).reused, 'a ticket under the previous key resumes on B');
  const newSession = (await handshake(t, tlsPort(B), cert.pem, { wantSession: true })).session!;
  t.ok((await handshake(t, tlsPort(A), cert.pem, { session: newSession })).reused, "B's new ticket resumes on A");

  // The grace ends: the old ticket gets a full handshake (which succeeds), the new one still resumes.
  clock.advance(SESSION_KEY_DEFAULTS.ticketGraceMs);
  await Promise.all(
    [ma, mb].map((x) =>
      x.rec.until((k) => k.tickets.generation === 2 && k.tickets.previous === undefined, 10_000, 'previous ticket key retired'),
    ),
  );
  const late = await handshake(t, tlsPort(B), cert.pem, { session: oldSession });
  t.notOk(late.reused, 'the retired key no longer resumes');
  t.ok(late.authorized, 'a full handshake instead');
  t.ok((await handshake(t, tlsPort(B), cert.pem, { session: newSession })).reused);

  // --- sticky secret rotation (30 days): the old cookie still routes, and is re-stamped; the new one routes everywhere.
  clock.advance(SESSION_KEY_DEFAULTS.stickyRotateMs);
  await Promise.all([ma, mb].map((x) => x.rec.until((k) => k.sticky.generation === 2, 10_000, 'sticky generation 2')));
  const stamped = await send(B, cookie);
  t.equal(stamped.header('x-backend'), target, 'a cookie under the previous secret still routes to its endpoint');
  const renewed = cookieOf(stamped.header('set-cookie'));
  t.not(renewed, cookie, 're-stamped under the current secret');
  for (const h of [A, B]) {
    const r = await send(h, renewed);
    t.equal(r.header('x-backend'), target, 'the re-stamped cookie routes to the same endpoint');
    t.equal(r.header('set-cookie'), undefined);
  }

  kept.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.equal((await kept.readResponse()).status, 200, 'the connection opened before the rotations still serves');
  for (const h of [A, B, C]) t.equal(h.plane.status().state, 'serving');
});

t.test('setSessionKeys refuses keys that do not fit, keeps the ones in effect, and logs no key bytes', async (t) => {
  const h = await startPlane(t, {});
  const good = { sticky: { current: randomBytes(32) }, tickets: { current: randomBytes(48) } };
  h.plane.setSessionKeys(good);
  const short = randomBytes(47);
  h.plane.setSessionKeys({ sticky: { current: randomBytes(32) }, tickets: { current: short } });
  h.plane.setSessionKeys({ sticky: { current: Buffer.alloc(0) }, tickets: { current: randomBytes(48) } });
  const refusals = h.logs.lines.items.filter((l) => l.msg === 'l7: session keys refused; the ones in effect are kept');
  t.equal(refusals.length, 2, 'both refused, each logged');
  t.match(String(refusals[0]?.err), /48 bytes, got 47/, 'the log says what is wrong');
  const text = JSON.stringify(h.logs.lines.items);
  for (const b of [good.sticky.current, good.tickets.current, short]) {
    t.notOk(text.includes(b.toString('hex')) || text.includes(b.toString('base64')), 'no key bytes in the logs');
  }
  t.equal(h.plane.status().state, 'serving');
});
