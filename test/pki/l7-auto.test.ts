/**
 * The cluster CA behind the L7 engine, end to end: `portico up` with a `tls.auto` entrypoint serves, for
 * each route host, a certificate the CA issued (openssl s_client verifies it against the CA's root), and
 * two instances on one Redis store issue one certificate per host and serve the same one.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { freePort, redisServerPath, startRedis } from '../helpers/redis.js';
import { runPortico, type PorticoProcess } from '../helpers/portico.js';

const run = promisify(execFile);

const config = (port: number, store = 'embedded') => `
store: ${store}
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
entrypoints:
  websecure: { listen: 127.0.0.1:${port}, tls: { auto: true } }
services:
  web:
    endpoints: [ { address: 127.0.0.1, port: 9 } ]
routes:
  - { entrypoint: websecure, host: a.example.test, path: /, service: web }
  - { entrypoint: websecure, host: b.example.test, path: /, service: web }
`;

/** The certificate served for `servername` (no verification: we look at who issued it). */
function servedCert(port: number, servername: string): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      s.destroy();
      resolve(c);
    });
    s.on('error', reject);
  });
}

/** Wait (bounded) until the certificate served for `host` is one the cluster CA issued. */
async function waitForCaCert(port: number, host: string, timeoutMs = 20_000): Promise<tls.PeerCertificate> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = await servedCert(port, host);
    if (!/development certificate/.test(String(c.subject?.O ?? ''))) return c;
    if (Date.now() > deadline) throw new Error(`still the development certificate for ${host} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50)); // poll interval of a bounded wait on an observable condition
  }
}

async function rootOf(p: PorticoProcess): Promise<string> {
  const up = await p.waitForLog((l) => l.msg === 'portico is up', 30_000);
  const res = await fetch(`${up.api as string}/ca/dcos-ca.crt`);
  t.equal(res.status, 200);
  return res.text();
}

t.test('tls.auto: each route host gets a CA certificate that openssl verifies', async (t) => {
  const dir = t.testdir();
  const port = await freePort();
  await writeFile(path.join(dir, 'portico.yaml'), config(port));
  const p = runPortico(['up', '--config', path.join(dir, 'portico.yaml')], { cwd: dir });
  t.teardown(() => p.kill('SIGKILL'));
  const root = await rootOf(p);
  await writeFile(path.join(dir, 'root.pem'), root);
  for (const host of ['a.example.test', 'b.example.test']) {
    const c = await waitForCaCert(port, host);
    t.match(c.subjectaltname, new RegExp(`DNS:${host.replace(/\./g, '\\.')}`), `${host}: the certificate names it`);
    const { stdout } = await run(
      'openssl',
      [
        's_client',
        '-connect',
        `127.0.0.1:${port}`,
        '-servername',
        host,
        '-CAfile',
        path.join(dir, 'root.pem'),
        '-verify_hostname',
        host,
        '-brief',
      ],
      { timeout: 10_000 },
    ).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: `${e.stdout ?? ''}${e.stderr ?? ''}` }));
    t.match(stdout, /Verification: OK|Verify return code: 0/, `${host}: openssl verifies it against the cluster root`);
  }
  const keyMode = await run('sh', ['-c', `stat -c %a ${path.join(dir, 'data', 'pki-master.key')}`]);
  t.equal(keyMode.stdout.trim(), '600', 'the PKI master key file is 0600');
  t.notMatch(p.logs.map((l) => JSON.stringify(l)).join('\n'), /PRIVATE KEY/, 'no key material in the logs');
  p.kill('SIGTERM');
  t.equal(await p.waitForExit(), 0);
});

t.test('two instances on one Redis store issue one certificate per host and serve the same one', async (t) => {
  // No skip: .ci/run installs redis-server, and a machine without it should fail here, loudly.
  t.ok(redisServerPath(), 'redis-server is installed (apt-get install redis-server)');
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const key = randomBytes(32).toString('base64');
  const procs: Array<{ p: PorticoProcess; port: number }> = [];
  const base = t.testdir();
  for (const name of ['one', 'two']) {
    const dir = path.join(base, name);
    await run('mkdir', ['-p', dir]);
    const port = await freePort();
    await writeFile(path.join(dir, 'portico.yaml'), config(port, redis.url));
    const p = runPortico(['up', '--config', path.join(dir, 'portico.yaml')], { cwd: dir, env: { PORTICO_PKI_KEY: key } });
    t.teardown(() => p.kill('SIGKILL'));
    procs.push({ p, port });
  }
  for (const { p } of procs) await p.waitForLog((l) => l.msg === 'portico is up', 30_000);
  for (const host of ['a.example.test', 'b.example.test']) {
    const serials = [];
    for (const { port } of procs) serials.push((await waitForCaCert(port, host)).serialNumber);
    t.equal(serials[0], serials[1], `${host}: both instances serve serial ${serials[0]}`);
  }
  const up = procs[0]!.p.logs.find((l) => l.msg === 'portico is up')!;
  const token = (await readFile(path.join(path.dirname(String(up.config)), 'data', 'api-token'), 'utf8')).trim();
  const res = await fetch(`${up.api as string}/v1/certs`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json()) as { certs?: Array<{ hosts: string[] }> } | Array<{ hosts: string[] }>;
  const list = Array.isArray(body) ? body : (body.certs ?? []);
  const leaves = list.filter((c) => c.hosts?.some((h) => h.endsWith('.example.test')));
  t.equal(leaves.length, 2, 'exactly one certificate was issued per host');
  for (const { p } of procs) p.kill('SIGTERM');
  for (const { p } of procs) t.equal(await p.waitForExit(), 0);
});
