import fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { ErrorCodes } from '../../src/model/errors.js';
import { SealedBox } from '../../src/pki/crypto.js';
import { SECRETS_PREFIX, SecretStore, writeSecretFiles, type MarathonAppJson } from '../../src/pki/secrets.js';
import { openStore, tmpDir } from './helpers.js';

t.test('secrets round-trip, sealed at rest', async (t) => {
  const { store } = await openStore(t);
  const secrets = new SecretStore(store, new SealedBox(Buffer.alloc(32, 3)));
  await secrets.put('db/password', 'hunter2-very-secret');
  t.equal((await secrets.get('db/password'))?.toString(), 'hunter2-very-secret');
  const raw = (await store.get(`${SECRETS_PREFIX}db/password`))!.value;
  t.notMatch(raw.toString('latin1'), 'hunter2', 'the raw store value does not hold the plaintext');
  await secrets.put('tls/blob', Buffer.from([0, 1, 2, 255]));
  t.same([...(await secrets.get('tls/blob'))!], [0, 1, 2, 255], 'binary values');
  t.same(await secrets.list(), ['db/password', 'tls/blob']);
  t.equal(await secrets.delete('db/password'), true);
  t.equal(await secrets.get('db/password'), undefined);
  t.equal(await secrets.delete('db/password'), false);
  for (const bad of ['', '../x', 'a/../b', '/abs', 'a//b', 'a b', 'a/./b']) {
    await t.rejects(secrets.put(bad, 'v'), { code: ErrorCodes.PKI_INVALID_REQUEST }, `path ${JSON.stringify(bad)} refused`);
  }
  const other = new SecretStore(store, new SealedBox(Buffer.alloc(32, 4)));
  await t.rejects(other.get('tls/blob'), { code: ErrorCodes.PKI_KEY }, 'another master key cannot read it');
});

t.test('writeSecretFiles materialises volumes as 0600 files and resolves env secrets', async (t) => {
  const { store } = await openStore(t);
  const secrets = new SecretStore(store, new SealedBox(Buffer.alloc(32, 3)));
  await secrets.put('db/password', 's3cret');
  await secrets.put('api/key', 'k3y');
  const taskDir = await tmpDir(t, 'task');
  const app: MarathonAppJson = {
    id: '/web',
    env: { DB_PW: { secret: 'pw' }, PLAIN: 'x' },
    secrets: { pw: { source: 'db/password' }, key: { source: 'api/key' } },
    container: {
      volumes: [
        { containerPath: 'path/to/db/password', secret: 'pw' },
        { containerPath: 'key', secret: 'key' },
        { containerPath: '/data', hostPath: '/tmp', mode: 'RW' },
      ],
    },
  };
  const r = await writeSecretFiles(app, taskDir, secrets);
  t.same(r.env, { DB_PW: 's3cret' });
  t.same(r.files, [path.join(taskDir, 'path/to/db/password'), path.join(taskDir, 'key')]);
  t.equal(await fsp.readFile(path.join(taskDir, 'path/to/db/password'), 'utf8'), 's3cret');
  for (const f of r.files) t.equal((await fsp.stat(f)).mode & 0o777, 0o600, `${path.basename(f)} is 0600`);
  t.equal((await fsp.stat(path.join(taskDir, 'path/to'))).mode & 0o777, 0o700, 'directories 0700');

  const escape = { ...app, container: { volumes: [{ containerPath: '../../etc/evil', secret: 'pw' }] } };
  await t.rejects(writeSecretFiles(escape, taskDir, secrets), { message: /escapes the task directory/ });
  const abs = { ...app, container: { volumes: [{ containerPath: '/etc/evil', secret: 'pw' }] } };
  await t.rejects(writeSecretFiles(abs, taskDir, secrets), { message: /relative path/ });

  // All or nothing: the second volume's secret is missing, so the first file is not left behind.
  const dir2 = await tmpDir(t, 'task2');
  const partial: MarathonAppJson = {
    secrets: { pw: { source: 'db/password' }, gone: { source: 'no/such' } },
    container: {
      volumes: [
        { containerPath: 'a', secret: 'pw' },
        { containerPath: 'b', secret: 'gone' },
      ],
    },
  };
  await t.rejects(writeSecretFiles(partial, dir2, secrets), { code: ErrorCodes.PKI_NOT_FOUND });
  t.same(await fsp.readdir(dir2), [], 'nothing written');
  await t.rejects(writeSecretFiles({ container: { volumes: [{ containerPath: 'a', secret: 'undeclared' }] } }, dir2, secrets), {
    message: /does not declare/,
  });
});
