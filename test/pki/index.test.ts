import fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { openPki } from '../../src/pki/index.js';
import { openStore, tmpDir } from './helpers.js';

t.test('openPki: master key file 0600, CRL URL from the api base, shared services', async (t) => {
  const { store } = await openStore(t);
  const dataDir = await tmpDir(t, 'pki-data');
  const pki = await openPki({ store, dataDir, apiBaseUrl: 'http://127.0.0.1:9900/', env: {} });
  t.teardown(() => pki.close());
  t.equal((await fsp.stat(path.join(dataDir, 'pki-master.key'))).mode & 0o777, 0o600, 'master key 0600');
  const leaf = await pki.ca.issue({ hosts: ['i.example.test'] });
  const der = Buffer.from(leaf.certPem.replace(/-----[^-]+-----|\s+/g, ''), 'base64');
  t.ok(der.includes('http://127.0.0.1:9900/v1/crl'), 'CRL distribution point from apiBaseUrl');
  await pki.secrets.put('a', 'b');
  t.equal((await pki.secrets.get('a'))?.toString(), 'b');
  // A second instance on the same store and data dir sees the same CA and can open the same secrets.
  const pki2 = await openPki({ store, dataDir, env: {} });
  t.teardown(() => pki2.close());
  t.equal((await pki2.ca.info()).root.fingerprint256, (await pki.ca.info()).root.fingerprint256);
  t.equal((await pki2.secrets.get('a'))?.toString(), 'b');
});
