import fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { runPkiCommand } from '../../src/cli/pki.js';
import { registerPkiApi } from '../../src/pki/api.js';
import { SecretStore } from '../../src/pki/secrets.js';
import { startApi, TOKEN } from '../api/helpers.js';
import { makeCA, openssl, tmpDir, verifyLeaf } from './helpers.js';

/** Run a command with stdout/stderr captured. */
async function cli(base: string, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const [command, ...rest] = argv;
  const positional: string[] = [];
  const flags: Record<string, string | true> = {};
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a.startsWith('--')) {
      if (a === '--json') flags.json = true;
      else flags[a.slice(2)] = rest[++i]!;
    } else positional.push(a);
  }
  let stdout = '';
  let stderr = '';
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((c: string | Uint8Array) => {
    stdout += c.toString();
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => {
    stderr += c.toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await runPkiCommand({ command: command!, positional, flags }, { api: { url: base, token: TOKEN } });
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

t.test('portico ca / cert / secret through the admin api', async (t) => {
  const dir = await tmpDir(t);
  const { ca, store, box } = await makeCA(t);
  const srv = await startApi(t);
  registerPkiApi((m, p, h, o) => srv.api.route(m, p, h, o), { ca, secrets: new SecretStore(store, box) });
  const run = (...argv: string[]) => cli(srv.base, argv);

  const init = await run('ca', 'init', '--key-type', 'ecdsa-p256');
  t.equal(init.code, 0, init.stderr);
  t.match(init.stdout, /created: cluster CA \(ecdsa-p256/);
  t.match((await run('ca', 'init')).stdout, /already initialised/);
  const show = await run('ca', 'show', '--json');
  const info = JSON.parse(show.stdout) as { rootPem: string; intermediatePem: string };

  const out = path.join(dir, 'out');
  const issued = await run('cert', 'issue', '--host', 'a.example.test,*.b.example.test', '--ip', '127.0.0.1', '--out', out);
  t.equal(issued.code, 0, issued.stderr);
  t.notMatch(issued.stdout, 'PRIVATE KEY', 'no key printed when written to a file');
  const key = path.join(out, 'a.example.test.key');
  t.equal((await fsp.stat(key)).mode & 0o777, 0o600, 'key file 0600');
  t.equal((await fsp.stat(out)).mode & 0o777, 0o700, 'out dir 0700');
  const certPem = await fsp.readFile(path.join(out, 'a.example.test.crt'), 'utf8');
  t.equal((await verifyLeaf(dir, info.rootPem, info.intermediatePem, certPem)).code, 0, 'issued certificate verifies');

  t.equal(
    (
      await openssl(
        [
          'req',
          '-new',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          'c.key',
          '-out',
          'c.csr',
          '-subj',
          '/CN=c.example.test',
        ],
        dir,
      )
    ).code,
    0,
  );
  const signed = await run('cert', 'sign', path.join(dir, 'c.csr'), '--out', path.join(dir, 'c.crt'));
  t.equal(signed.code, 0, signed.stderr);
  const serial = /signed ([0-9a-f]+)/.exec(signed.stdout)?.[1];
  t.ok(serial, 'serial printed');
  const rv = await run('cert', 'revoke', serial!, '--reason', 'superseded');
  t.equal(rv.code, 0, rv.stderr);
  t.match(rv.stdout, `revoked ${serial} (superseded)`);
  t.match((await run('cert', 'list')).stdout, new RegExp(`${serial}.*superseded`));
  const again = await run('cert', 'revoke', 'ffff');
  t.equal(again.code, 1);
  t.match(again.stderr, /HTTP 404/);

  t.equal((await run('secret', 'put', 'db/password', '--value', 'hunter2')).code, 0);
  await fsp.writeFile(path.join(dir, 'blob'), Buffer.from([1, 2, 3]));
  t.equal((await run('secret', 'put', 'bin/blob', '--file', path.join(dir, 'blob'))).code, 0);
  t.equal((await run('secret', 'get', 'db/password')).stdout, 'hunter2');
  t.match((await run('secret', 'list')).stdout, 'bin/blob\ndb/password');
  const app = {
    id: '/web',
    env: { DB_PW: { secret: 'pw' } },
    secrets: { pw: { source: 'db/password' } },
    container: { volumes: [{ containerPath: 'secrets/pw', secret: 'pw' }] },
  };
  await fsp.writeFile(path.join(dir, 'app.json'), JSON.stringify(app));
  const task = path.join(dir, 'task');
  const wf = await run('secret', 'write-files', '--app', path.join(dir, 'app.json'), '--dir', task, '--env-out', path.join(dir, 'env'));
  t.equal(wf.code, 0, wf.stderr);
  t.notMatch(wf.stdout, 'hunter2', 'values not printed');
  t.equal(await fsp.readFile(path.join(task, 'secrets/pw'), 'utf8'), 'hunter2');
  t.equal((await fsp.stat(path.join(task, 'secrets/pw'))).mode & 0o777, 0o600, 'secret file 0600');
  t.equal((await fsp.stat(path.join(dir, 'env'))).mode & 0o777, 0o600, 'env file 0600');
  t.equal(await fsp.readFile(path.join(dir, 'env'), 'utf8'), "DB_PW='hunter2'\n");
  t.equal((await run('secret', 'rm', 'db/password')).code, 0);
  t.equal((await run('secret', 'get', 'db/password')).code, 1);
  t.equal((await run('secret', 'put', 'x')).code, 2, 'usage error');
  t.equal((await run('cert', 'frobnicate')).code, 2);
});
