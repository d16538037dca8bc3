/**
 * State that must be shared is shared: two real `portico up` processes on one private redis-server (one
 * PKI master key, as instances sharing a store must have), each with its own data dir and config file.
 *
 * - A sticky cookie issued by A routes to the same endpoint on B, and on A after A restarts.
 * - A TLS session made with A resumes on B (other arguments, so Node's default session id context would
 *   differ) and on A after its restart.
 * - The cookie is the HMAC of the secret in the store; the store holds the keys sealed, and no log line
 *   of either process carries a key.
 * Needs Debian's redis-server (.ci/run installs it); without it the test fails saying so.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdir, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import type { Test } from 'tap';
import { stickyId } from '../../src/l7/balance/index.js';
import { SealedBox } from '../../src/pki/crypto.js';
import { SESSION_KEYS_KEY } from '../../src/pki/session-keys.js';
import { RedisStore } from '../../src/store/redis.js';
import { runPortico, type PorticoProcess } from '../helpers/portico.js';
import { redisServerPath, startRedis } from '../helpers/redis.js';
import { once } from '../helpers/wait.js';

const HOST = 'app.example.test';

interface Running {
  p: PorticoProcess;
  web: number;
  websecure: number;
}

async function up(t: Test, dir: string, env: Record<string, string>): Promise<Running> {
  const p = runPortico(['up', '--config', path.join(dir, 'portico.yaml')], { cwd: dir, env });
  t.teardown(() => p.kill('SIGKILL'));
  const port = async (ep: string) =>
    Number(
      String((await p.waitForLog((l) => l.msg === 'l7: listening' && l.entrypoint === ep, 30_000)).listen)
        .split(':')
        .pop(),
    );
  const [web, websecure] = [await port('web'), await port('websecure')];
  await p.waitForLog((l) => l.msg === 'portico is up', 30_000);
  return { p, web, websecure };
}

/** One GET through an entrypoint (no keep-alive): the backend's name and the Set-Cookie, if any. */
function send(port: number, cookie?: string): Promise<{ status: number; backend: string; setCookie: string | undefined }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: HOST, ...(cookie && { cookie }) };
    const req = http.get({ host: '127.0.0.1', port, path: '/', headers, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => void (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, backend: body, setCookie: res.headers['set-cookie']?.[0] }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** A handshake with `port`: whether it resumed `session`, and (when asked) the session it leaves. */
async function handshake(t: Test, port: number, opts: { session?: Buffer; wantSession?: boolean } = {}) {
  const s = tls.connect({
    port,
    host: '127.0.0.1',
    servername: HOST,
    rejectUnauthorized: false,
    ...(opts.session && { session: opts.session }),
  });
  t.teardown(() => s.destroy());
  const session = opts.wantSession ? once<[Buffer]>(s, 'session', 10_000) : undefined;
  await once(s, 'secureConnect', 10_000);
  const out = { reused: s.isSessionReused(), session: session ? (await session)[0] : undefined };
  s.end();
  return out;
}

t.test('two instances on one Redis share the sticky secret and the TLS ticket keys, across a restart', async (t) => {
  t.ok(redisServerPath(), 'redis-server is installed (apt-get install redis-server)');
  const redis = await startRedis();
  t.teardown(() => redis.dispose());
  const backends = await Promise.all(
    ['b1', 'b2', 'b3'].map(async (name) => {
      const s = http.createServer((_req, res) => res.end(name));
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      t.teardown(() => new Promise<void>((r) => s.close(() => r())));
      return { name, port: (s.address() as AddressInfo).port };
    }),
  );
  const masterKey = randomBytes(32);
  const env = { PORTICO_PKI_KEY: masterKey.toString('base64') };
  const root = t.testdir();
  const dirs = await Promise.all(
    ['a', 'b'].map(async (name) => {
      const dir = path.join(root, name);
      await mkdir(dir, { recursive: true });
      await writeFile(
        path.join(dir, 'portico.yaml'),
        `
data: ./data
store: ${redis.url}
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
overlay: { enabled: false }
entrypoints:
  web: { listen: 127.0.0.1:0 }
  websecure: { listen: 127.0.0.1:0, tls: { auto: true } }
services:
  app:
    endpoints: [${backends.map((b) => `{ address: 127.0.0.1, port: ${b.port} }`).join(', ')}]
    balance: sticky
routes:
  - { entrypoint: web, host: ${HOST}, path: /, service: app }
  - { entrypoint: websecure, host: ${HOST}, path: /, service: app }
`,
      );
      return dir;
    }),
  );
  // Started together: the two race to create the keys record, and must agree on the winner's.
  const started = (await Promise.all(dirs.map((d) => up(t, d, env)))) as [Running, Running];
  let a = started[0];
  const b = started[1];

  // A issues a cookie; B routes it to the same endpoint and has nothing to re-stamp.
  const first = await send(a.web);
  t.equal(first.status, 200);
  const target = first.backend;
  const cookie = /^([^;]+)/.exec(first.setCookie ?? '')?.[1];
  t.match(cookie, /^portico_sticky=[A-Za-z0-9_-]{16}$/, `A set a sticky cookie (${cookie})`);
  for (let i = 0; i < 6; i++) {
    const r = await send(b.web, cookie);
    t.equal(r.backend, target, `B, request ${i}: A's cookie routes to ${target}`);
    t.equal(r.setCookie, undefined, `B, request ${i}: the cookie already names it`);
  }

  // A TLS session made with A resumes on B.
  const made = await handshake(t, a.websecure, { wantSession: true });
  t.ok((await handshake(t, b.websecure, { session: made.session! })).reused, "A's TLS session resumes on B");

  // The store holds the keys sealed; the cookie is the HMAC of the secret it holds.
  const store = await RedisStore.open(redis.url);
  t.teardown(() => store.close());
  const entry = (await store.get(SESSION_KEYS_KEY))!;
  t.ok(entry, 'one session keys record in the store');
  const rec = JSON.parse(entry.value.toString('utf8')) as { tickets: { generation: number }; sticky: { generation: number }; keys: string };
  const aad = `${SESSION_KEYS_KEY}#tickets=${rec.tickets.generation};sticky=${rec.sticky.generation}`;
  const keys = JSON.parse(new SealedBox(masterKey).open(Buffer.from(rec.keys, 'base64'), aad).toString('utf8')) as {
    sticky: { current: string };
    tickets: { current: string };
  };
  const secret = Buffer.from(keys.sticky.current, 'base64');
  const ids = backends.map((x) => stickyId(secret, 'app@file', `127.0.0.1:${x.port}`));
  t.equal(
    `portico_sticky=${ids[backends.findIndex((x) => x.name === target)]}`,
    cookie,
    "the cookie is the endpoint's id under the store's secret",
  );
  const material = [secret, Buffer.from(keys.tickets.current, 'base64')].flatMap((k) => [
    k.toString('hex'),
    k.toString('base64'),
    k.toString('base64url'),
  ]);
  t.notOk(
    material.some((m) => entry.value.toString().includes(m)),
    'the record does not hold the keys in clear',
  );

  // A restarts (same data dir, same store): the same cookie still routes there, the same session resumes.
  a.p.kill('SIGTERM');
  t.equal(await a.p.waitForExit(20_000), 0, 'A stopped cleanly');
  const before = a;
  a = await up(t, dirs[0]!, env);
  for (let i = 0; i < 6; i++) {
    const r = await send(a.web, cookie);
    t.equal(r.backend, target, `restarted A, request ${i}: the cookie routes to ${target}`);
    t.equal(r.setCookie, undefined);
  }
  t.ok((await handshake(t, a.websecure, { session: made.session! })).reused, 'the TLS session resumes on the restarted A');
  t.equal((await send(b.web, cookie)).backend, target, 'and B still agrees');

  for (const p of [before.p, a.p, b.p]) {
    const text = p.logs.map((l) => JSON.stringify(l)).join('\n');
    t.notOk(
      material.some((m) => text.includes(m)),
      'no key bytes in the logs',
    );
    t.notOk(
      p.logs.some((l) => l.msg.startsWith('session keys not read from the store yet')),
      'the keys were read before the planes started',
    );
  }
  t.ok(
    [before.p, b.p].some((p) => p.logs.some((l) => l.msg === 'session keys written' && l.change === 'created')),
    'one of the first two created the record',
  );
  t.notOk(
    [before.p, b.p].every((p) => p.logs.some((l) => l.msg === 'session keys written' && l.change === 'created')),
    'only one of them did',
  );
  for (const r of [a, b]) r.p.kill('SIGTERM');
  for (const r of [a, b]) t.equal(await r.p.waitForExit(20_000), 0);
});
