import fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { registerPkiApi } from '../../src/pki/api.js';
import { AutoCertManager } from '../../src/pki/auto.js';
import { SecretStore } from '../../src/pki/secrets.js';
import { startApi } from '../api/helpers.js';
import { makeCA, openssl, tmpDir, verifyLeaf, PKCS8_KEY } from './helpers.js';

async function setup(t: { teardown(fn: () => unknown): void }) {
  const { ca, store, box } = await makeCA(t, { crlUrl: 'http://127.0.0.1/v1/crl' });
  const secrets = new SecretStore(store, box);
  const auto = new AutoCertManager({ ca, store, box });
  t.teardown(() => auto.close());
  const srv = await startApi(t);
  registerPkiApi((m, p, h, o) => srv.api.route(m, p, h, o), { ca, secrets, auto });
  const post = (p: string, body: unknown, opts: { token?: string | null } = {}) =>
    srv.request(p, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, ...opts });
  return { ...srv, ca, store, secrets, post };
}

const envelope = { success: true, errors: [], messages: [] };

t.test('DC/OS CA api: newcert, newkey, sign, info, dcos-ca.crt', async (t) => {
  const dir = await tmpDir(t);
  const { request, post, ca } = await setup(t);

  const info = await post('/ca/api/v2/info', { label: 'primary' }, { token: null });
  t.equal(info.status, 200, 'info needs no token');
  t.match(info.json, { ...envelope, result: { certificate: /BEGIN CERTIFICATE/, usages: Array } });
  const rootPem = info.json.result.certificate as string;
  t.equal(rootPem, await ca.rootPem());

  const crt = await request('/ca/dcos-ca.crt', { token: null });
  t.equal(crt.status, 200);
  t.equal(crt.headers.get('content-type'), 'application/x-pem-file');
  t.equal(crt.text, rootPem);

  const unauth = await post('/ca/api/v2/newcert', { request: { hosts: ['x.example.test'] } }, { token: null });
  t.equal(unauth.status, 401, 'newcert needs the token');

  const nc = await post('/ca/api/v2/newcert', {
    request: { hosts: ['www.example.test', '10.1.2.3'], CN: 'www.example.test', names: [{ C: 'US', O: 'Acme' }] },
  });
  t.equal(nc.status, 200, 'newcert 200');
  t.match(nc.json, { ...envelope, result: { certificate: /BEGIN CERTIFICATE/, private_key: PKCS8_KEY } });
  const interPem = await ca.chainPem();
  t.equal((await verifyLeaf(dir, rootPem, interPem, nc.json.result.certificate)).code, 0, 'newcert verifies');
  const text = (await openssl(['x509', '-in', path.join(dir, 'leaf.pem'), '-noout', '-subject', '-ext', 'subjectAltName'])).out;
  t.match(text, /C = US, O = Acme, CN = www\.example\.test/);
  t.match(text, /DNS:www\.example\.test, IP Address:10\.1\.2\.3/);

  const nk = await post('/ca/api/v2/newkey', {
    request: { hosts: ['k.example.test'], CN: 'k.example.test', key: { algo: 'rsa', size: 2048 } },
  });
  t.match(nk.json, { ...envelope, result: { certificate_request: /BEGIN CERTIFICATE REQUEST/, private_key: PKCS8_KEY } });
  await fsp.writeFile(path.join(dir, 'k.csr'), nk.json.result.certificate_request);
  t.equal((await openssl(['req', '-in', 'k.csr', '-noout', '-verify'], dir)).code, 0, 'openssl verifies the generated CSR');

  const sg = await post('/ca/api/v2/sign', { certificate_request: nk.json.result.certificate_request });
  t.match(sg.json, { ...envelope, result: { certificate: /BEGIN CERTIFICATE/ } });
  t.equal((await verifyLeaf(dir, rootPem, interPem, sg.json.result.certificate)).code, 0, 'signed CSR verifies');

  const bad = await post('/ca/api/v2/sign', { certificate_request: 'nope' });
  t.equal(bad.status, 400);
  t.match(bad.json, { success: false, result: null, errors: [{ code: 400, message: /PKCS#10/ }], messages: [] }, 'errors in the envelope');
  const badKey = await post('/ca/api/v2/newcert', { request: { hosts: ['a.test'], key: { algo: 'rsa', size: 1024 } } });
  t.match(badKey.json, { success: false, errors: [{ message: /unsupported key/ }] });
});

t.test('certs, revoke, CRL, secrets', async (t) => {
  const dir = await tmpDir(t);
  const { request, post, store, base } = await setup(t);
  const issued = await post('/v1/certs', { hosts: ['a.example.test'], usage: 'server', keyType: 'ecdsa-p256' });
  t.equal(issued.status, 200, issued.text);
  const serial = issued.json.serial as string;
  const list = await request('/v1/certs');
  t.match(list.json, [{ serial, hosts: ['a.example.test'], revoked: null }]);
  t.notMatch(list.text, 'PRIVATE KEY', 'the list carries no keys');
  const rv = await post(`/v1/certs/${serial}/revoke`, { reason: 'keyCompromise' });
  t.equal(rv.status, 200, rv.text);
  t.match(rv.json, { serial, revoked: { reason: 'keyCompromise' } });
  t.equal((await post('/v1/certs/abcdef01/revoke', {})).status, 404);
  t.equal((await post(`/v1/certs/${serial}/revoke`, { reason: 'because' })).status, 400);

  const crl = await request('/v1/crl', { token: null });
  t.equal(crl.status, 200, 'CRL needs no token');
  t.equal(crl.headers.get('content-type'), 'application/pkix-crl');
  const raw = Buffer.from(await (await fetch(`${base}/v1/crl`)).arrayBuffer());
  await fsp.writeFile(path.join(dir, 'crl.der'), raw);
  t.match(
    (await openssl(['crl', '-inform', 'DER', '-in', 'crl.der', '-noout', '-text'], dir)).out,
    new RegExp(`Serial Number: ${serial}`, 'i'),
    'revoked serial in the served CRL',
  );
  const pem = await request('/v1/crl?format=pem', { token: null });
  t.match(pem.text, /BEGIN X509 CRL/);

  const ca = await request('/v1/ca');
  t.match(ca.json, { keyType: 'ecdsa-p256', rootPem: /BEGIN CERTIFICATE/, imported: false });
  t.notMatch(ca.text, 'PRIVATE KEY');

  const put = await request('/v1/secrets/db%2Fpassword', {
    method: 'PUT',
    body: JSON.stringify({ value: 'hunter2' }),
    headers: { 'content-type': 'application/json' },
  });
  t.equal(put.status, 204, put.text);
  const got = await request('/v1/secrets/db%2Fpassword');
  t.match(got.json, { path: 'db/password', value: 'hunter2' });
  t.match((await request('/v1/secrets')).json, { paths: ['db/password'] });
  t.notMatch((await store.get('portico/secrets/db/password'))!.value.toString('latin1'), 'hunter2', 'sealed at rest');
  t.equal((await request('/v1/secrets/db%2Fpassword', { token: null })).status, 401, 'secrets need the token');
  t.equal((await request('/v1/secrets/db%2Fpassword', { method: 'DELETE' })).status, 204);
  t.equal((await request('/v1/secrets/db%2Fpassword')).status, 404);
  t.equal((await request('/v1/secrets/..%2Fx', { method: 'PUT', body: '{"value":"v"}' })).status, 400);
});
