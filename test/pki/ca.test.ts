import { X509Certificate } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { ErrorCodes } from '../../src/model/errors.js';
import { CA_STATE_KEY, CRL_KEY, ClusterCA } from '../../src/pki/ca.js';
import { loadMasterKey, MASTER_KEY_FILE, SealedBox, x509 } from '../../src/pki/crypto.js';
import { createLogger } from '../../src/telemetry/log.js';
import { makeCA, openssl, openStore, tmpDir, verifyLeaf, PKCS8_KEY } from './helpers.js';

t.test('issued leaves verify with openssl against root + intermediate', async (t) => {
  const dir = await tmpDir(t);
  for (const caType of ['ecdsa-p256', 'rsa-2048'] as const) {
    const { ca } = await makeCA(t, { keyType: caType, crlUrl: 'http://127.0.0.1:9900/v1/crl' });
    const info = await ca.init();
    t.equal(info.created, true, `${caType} CA created`);
    t.equal(info.keyType, caType);
    for (const keyType of ['ecdsa-p256', 'rsa-2048'] as const) {
      const leaf = await ca.issue({
        hosts: ['app.example.test', '*.apps.example.test'],
        ips: ['127.0.0.1', '::1'],
        keyType,
        usage: 'both',
      });
      const v = await verifyLeaf(dir, info.rootPem, info.intermediatePem, leaf.certPem, ['-purpose', 'sslserver']);
      t.equal(v.code, 0, `${keyType} leaf under ${caType} CA verifies: ${v.out.trim()}`);
      const text = (await openssl(['x509', '-in', path.join(dir, 'leaf.pem'), '-noout', '-text'])).out;
      t.match(text, /DNS:app\.example\.test, DNS:\*\.apps\.example\.test, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/i, 'SANs');
      t.match(text, /CA:FALSE/, 'not a CA');
      t.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/, 'EKU both');
      t.match(text, /URI:http:\/\/127\.0\.0\.1:9900\/v1\/crl/, 'CRL distribution point');
      t.match(text, keyType === 'rsa-2048' ? /Public-Key: \(2048 bit\)/ : /ASN1 OID: prime256v1/, 'key type');
      t.equal(new X509Certificate(leaf.certPem).serialNumber.toLowerCase(), leaf.serial, 'serial');
      t.match(leaf.keyPem, PKCS8_KEY, 'PKCS#8 key');
      t.ok(new X509Certificate(leaf.certPem).checkPrivateKey((await import('node:crypto')).createPrivateKey(leaf.keyPem)), 'key matches');
    }
    const ci = (await openssl(['x509', '-in', path.join(dir, 'inter.pem'), '-noout', '-text'])).out;
    t.match(ci, /CA:TRUE, pathlen:0/, 'intermediate pathlen 0');
    t.match(ci, /Certificate Sign, CRL Sign/, 'intermediate key usage');
    const cr = (await openssl(['x509', '-in', path.join(dir, 'root.pem'), '-noout', '-text'])).out;
    t.match(cr, /CA:TRUE, pathlen:1/, 'root pathlen 1');
  }
});

t.test('sign: an openssl CSR is signed; CA:TRUE, bad names and bad signatures are refused', async (t) => {
  const dir = await tmpDir(t);
  const { ca } = await makeCA(t, { policy: { allowedSuffixes: ['example.test'] } });
  const info = await ca.init();
  const req = async (name: string, extra: string[], key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']) => {
    const r = await openssl(
      ['req', '-new', ...key, '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=svc.example.test', ...extra],
      dir,
    );
    t.equal(r.code, 0, `openssl req ${name}: ${r.out}`);
    return fsp.readFile(path.join(dir, `${name}.csr`), 'utf8');
  };
  const good = await req('good', ['-addext', 'subjectAltName=DNS:svc.example.test,DNS:api.example.test,IP:10.0.0.1']);
  const signed = await ca.sign(good);
  t.same(signed.hosts, ['svc.example.test', 'api.example.test']);
  t.same(signed.ips, ['10.0.0.1']);
  const v = await verifyLeaf(dir, info.rootPem, info.intermediatePem, signed.certPem);
  t.equal(v.code, 0, `signed CSR verifies: ${v.out.trim()}`);
  t.equal((await ca.get(signed.serial))?.source, 'csr', 'recorded');

  const rsa = await req('rsa', [], ['-newkey', 'rsa:2048']);
  const s2 = await ca.sign(rsa);
  t.same(s2.hosts, ['svc.example.test'], 'CN used when there are no SANs');
  t.equal((await verifyLeaf(dir, info.rootPem, info.intermediatePem, s2.certPem)).code, 0, 'RSA CSR verifies');

  const caReq = await req('ca', ['-addext', 'basicConstraints=critical,CA:TRUE']);
  await t.rejects(ca.sign(caReq), { code: ErrorCodes.PKI_POLICY, message: /CA:TRUE/ }, 'CA:TRUE refused');

  const outside = await req('outside', ['-addext', 'subjectAltName=DNS:evil.example.com']);
  await t.rejects(ca.sign(outside), { code: ErrorCodes.PKI_POLICY, message: /outside the allowed names/ }, 'name outside policy refused');
  t.ok(await ca.sign(outside, { allowedSuffixes: [] }), 'a caller-given policy overrides the default');

  const email = await req('email', ['-addext', 'subjectAltName=email:a@example.test']);
  await t.rejects(ca.sign(email), { code: ErrorCodes.PKI_POLICY }, 'email SAN refused');

  // Flip a byte inside the signature: the CSR still parses but does not verify.
  const der = Buffer.from(good.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  der[der.length - 5] = (der[der.length - 5] as number) ^ 0xff;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await t.rejects(ca.sign(tampered), { code: ErrorCodes.PKI_POLICY, message: /signature/ }, 'bad signature refused');
  await t.rejects(ca.sign('not a csr'), { code: ErrorCodes.PKI_INVALID_REQUEST }, 'garbage refused');
});

t.test('revocation: the serial appears in the DER CRL as openssl reads it', async (t) => {
  const dir = await tmpDir(t);
  const { ca, store } = await makeCA(t);
  const info = await ca.init();
  const empty = await ca.crlDer();
  await fsp.writeFile(path.join(dir, 'empty.crl'), empty);
  t.match(
    (await openssl(['crl', '-inform', 'DER', '-in', 'empty.crl', '-noout', '-text'], dir)).out,
    /No Revoked Certificates/,
    'an empty CRL before any revocation',
  );
  const a = await ca.issue({ hosts: ['a.example.test'] });
  const b = await ca.issue({ hosts: ['b.example.test'] });
  const rec = await ca.revoke(a.serial, 'keyCompromise');
  t.equal(rec.revoked?.reason, 'keyCompromise');
  const again = await ca.revoke(a.serial.toUpperCase(), 'superseded');
  t.equal(again.revoked?.reason, 'keyCompromise', 'revoking twice keeps the first');
  await fsp.writeFile(path.join(dir, 'crl.der'), await ca.crlDer());
  const text = (await openssl(['crl', '-inform', 'DER', '-in', 'crl.der', '-noout', '-text'], dir)).out;
  t.match(text, new RegExp(`Serial Number: ${a.serial}`, 'i'), 'revoked serial listed');
  t.notMatch(text.toLowerCase(), b.serial, 'the other is not');
  t.match(text, /Key Compromise/);
  // The CRL verifies against the intermediate, and openssl verify -crl_check rejects the revoked leaf.
  await fsp.writeFile(path.join(dir, 'crl.pem'), await ca.crlPem());
  await fsp.writeFile(path.join(dir, 'inter.pem'), info.intermediatePem);
  t.equal((await openssl(['crl', '-in', 'crl.pem', '-CAfile', 'inter.pem', '-noout'], dir)).code, 0, 'CRL signature verifies');
  await fsp.writeFile(path.join(dir, 'chain.pem'), info.intermediatePem + info.rootPem);
  await fsp.writeFile(path.join(dir, 'a.pem'), a.certPem);
  await fsp.writeFile(path.join(dir, 'b.pem'), b.certPem);
  const va = await openssl(['verify', '-crl_check', '-CAfile', 'chain.pem', '-CRLfile', 'crl.pem', 'a.pem'], dir);
  t.not(va.code, 0, 'revoked leaf fails crl_check');
  t.match(va.out, /revoked/);
  const vb = await openssl(['verify', '-crl_check', '-CAfile', 'chain.pem', '-CRLfile', 'crl.pem', 'b.pem'], dir);
  t.equal(vb.code, 0, `unrevoked leaf passes crl_check: ${vb.out.trim()}`);
  t.ok(await store.get(CRL_KEY), 'CRL stored');
  await t.rejects(ca.revoke('abcdef'), { code: ErrorCodes.PKI_NOT_FOUND });
  await t.rejects(ca.revoke('xyz'), { code: ErrorCodes.PKI_INVALID_REQUEST });
  const list = await ca.list();
  t.equal(list.length, 2);
  t.equal(list.filter((r) => r.revoked).length, 1);
});

t.test('instances on one store create one CA; keys are sealed at rest; logs carry no key', async (t) => {
  const { store } = await openStore(t);
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  const box = new SealedBox(Buffer.alloc(32, 7));
  const cas = Array.from({ length: 4 }, () => new ClusterCA({ store, box, logger }));
  t.teardown(() => cas.forEach((c) => c.close()));
  const infos = await Promise.all(cas.map((c) => c.init()));
  t.equal(new Set(infos.map((i) => i.root.fingerprint256)).size, 1, 'one root');
  t.equal(infos.filter((i) => i.created).length, 1, 'created exactly once');
  const leaf = await cas[1]!.issue({ hosts: ['x.example.test'], keyType: 'rsa-2048' });
  await cas[2]!.revoke(leaf.serial);
  const raw = (await store.list('portico/')).map((e) => e.value.toString('latin1')).join('\n');
  t.notMatch(raw, 'PRIVATE KEY', 'no plaintext key in the store');
  t.notMatch(raw, leaf.keyPem.split('\n')[1]!, 'not even a line of the leaf key');
  const log = lines.join('');
  t.match(log, 'certificate issued', 'issuance was logged');
  t.notMatch(log, 'PRIVATE KEY', 'no key in the logs');
  t.notMatch(log, leaf.keyPem.split('\n')[1]!, 'no key material in the logs');

  const wrongKey = new ClusterCA({ store, box: new SealedBox(Buffer.alloc(32, 8)) });
  t.teardown(() => wrongKey.close());
  await t.rejects(
    wrongKey.info(),
    { code: ErrorCodes.PKI_KEY, message: /another PKI master key/ },
    'another master key cannot open the CA',
  );
  const state = JSON.parse((await store.get(CA_STATE_KEY))!.value.toString()) as { keyId: string };
  t.equal(state.keyId, box.keyId, 'the state names its master key');
});

t.test('import: an operator root gets a new intermediate; an operator intermediate is used as is', async (t) => {
  const dir = await tmpDir(t);
  const r = await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'root.key',
      '-out',
      'root.crt',
      '-days',
      '30',
      '-subj',
      '/O=Corp/CN=Corp Root',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  t.equal(r.code, 0, r.out);
  const rootPem = await fsp.readFile(path.join(dir, 'root.crt'), 'utf8');
  const rootKey = await fsp.readFile(path.join(dir, 'root.key'), 'utf8');
  const { ca } = await makeCA(t);
  const info = await ca.import({ certPem: rootPem, keyPem: rootKey });
  t.equal(info.imported, true);
  t.equal(info.root.fingerprint256, new X509Certificate(rootPem).fingerprint256, 'the operator root is the root');
  const leaf = await ca.issue({ hosts: ['corp.example.test'] });
  t.equal((await verifyLeaf(dir, rootPem, info.intermediatePem, leaf.certPem)).code, 0, 'leaf chains to the operator root');
  await t.rejects(ca.import({ certPem: rootPem, keyPem: rootKey }), { code: ErrorCodes.PKI_CONFLICT }, 'no silent replacement');

  // An intermediate made by openssl under that root.
  t.equal(
    (
      await openssl(
        ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'int.key', '-out', 'int.csr', '-subj', '/O=Corp/CN=Corp Issuing'],
        dir,
      )
    ).code,
    0,
  );
  await fsp.writeFile(path.join(dir, 'ext.cnf'), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
  const x = await openssl(
    [
      'x509',
      '-req',
      '-in',
      'int.csr',
      '-CA',
      'root.crt',
      '-CAkey',
      'root.key',
      '-CAcreateserial',
      '-out',
      'int.crt',
      '-days',
      '20',
      '-extfile',
      'ext.cnf',
    ],
    dir,
  );
  t.equal(x.code, 0, x.out);
  const intPem = await fsp.readFile(path.join(dir, 'int.crt'), 'utf8');
  const intKey = await fsp.readFile(path.join(dir, 'int.key'), 'utf8');
  await t.rejects(ca.import({ certPem: intPem, keyPem: rootKey, force: true }), { message: /does not belong/ }, 'mismatched key refused');
  await t.rejects(ca.import({ certPem: intPem, keyPem: intKey, force: true }), { message: /chainPem/ }, 'an intermediate needs its chain');
  const info2 = await ca.import({ certPem: intPem, keyPem: intKey, chainPem: rootPem, force: true });
  t.equal(info2.keyType, 'rsa-2048');
  const leaf2 = await ca.issue({ hosts: ['corp2.example.test'] });
  const v = await verifyLeaf(dir, rootPem, intPem, leaf2.certPem);
  t.equal(v.code, 0, `leaf under the operator intermediate verifies: ${v.out.trim()}`);
});

t.test('master key: created 0600 in the data dir, or taken from the environment', async (t) => {
  const dir = await tmpDir(t);
  const k1 = await loadMasterKey(dir, {});
  const st = await fsp.stat(path.join(dir, MASTER_KEY_FILE));
  t.equal(st.mode & 0o777, 0o600, 'key file is 0600');
  t.same(await loadMasterKey(dir, {}), k1, 'stable across loads');
  const env = { PORTICO_PKI_KEY: Buffer.alloc(32, 1).toString('base64') };
  t.same(await loadMasterKey(dir, env), Buffer.alloc(32, 1), 'env wins');
  await t.rejects(loadMasterKey(dir, { PORTICO_PKI_KEY: 'c2hvcnQ=' }), { code: ErrorCodes.PKI_KEY });
  const box = new SealedBox(k1);
  const sealed = box.seal('hello', 'a');
  t.equal(box.open(sealed, 'a').toString(), 'hello');
  t.throws(() => box.open(sealed, 'b'), { code: ErrorCodes.PKI_KEY }, 'bound to its store key');
  t.not(box.seal('hello', 'a').toString('hex'), sealed.toString('hex'), 'fresh IV per record');
});

t.test('issue refuses bad input', async (t) => {
  const { ca } = await makeCA(t);
  await t.rejects(ca.issue({ hosts: [] }), { code: ErrorCodes.PKI_INVALID_REQUEST });
  await t.rejects(ca.issue({ hosts: ['bad_name!'] }), { code: ErrorCodes.PKI_POLICY });
  await t.rejects(ca.issue({ hosts: ['a.test'], ips: ['300.1.1.1'] }), { code: ErrorCodes.PKI_POLICY });
  await t.rejects(ca.issue({ hosts: ['a.test'], ttlDays: -1 }), { code: ErrorCodes.PKI_INVALID_REQUEST });
});

t.test('prune: records expired beyond the grace period go, revoked ones leave the CRL', async (t) => {
  let now = Date.now();
  const { ca } = await makeCA(t, { now: () => new Date(now) });
  const short = await ca.issue({ hosts: ['old.example.test'], usage: 'server', ttlDays: 1 });
  const shortRevoked = await ca.issue({ hosts: ['bad.example.test'], usage: 'server', ttlDays: 1 });
  await ca.revoke(shortRevoked.serial, 'keyCompromise');
  const long = await ca.issue({ hosts: ['new.example.test'], usage: 'server', ttlDays: 90 });
  const serialsInCrl = async () => new x509.X509Crl(await ca.crlPem()).entries.map((e) => e.serialNumber.toLowerCase());
  t.ok((await serialsInCrl()).includes(shortRevoked.serial.toLowerCase()), 'the revoked serial is in the CRL');
  t.equal(await ca.prune(), 0, 'nothing expired yet');
  now += 40 * 86_400_000; // 40 days on: the 1-day ones expired 39 days ago (> 30 days of grace)
  t.equal(await ca.prune(), 2);
  t.same(
    (await ca.list()).map((r) => r.serial),
    [long.serial],
  );
  t.equal(await ca.get(short.serial), undefined);
  t.notOk((await serialsInCrl()).includes(shortRevoked.serial.toLowerCase()), 'the pruned revoked serial left the CRL');
});
