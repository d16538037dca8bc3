import fsp from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import type { RoutingTable } from '../../src/model/types.js';
import { AutoCertManager, CERTS_PREFIX, autoHosts, type AutoCert } from '../../src/pki/auto.js';
import { ClusterCA, ISSUED_PREFIX } from '../../src/pki/ca.js';
import { SealedBox } from '../../src/pki/crypto.js';
import { RedisStore } from '../../src/store/redis.js';
import type { Store } from '../../src/store/types.js';
import { redisServerPath, startRedis } from '../helpers/redis.js';
import { createLogger } from '../../src/telemetry/log.js';
import { Recorder } from '../helpers/wait.js';
import { openssl, openStore, tmpDir, verifyLeaf, PKCS8_KEY } from './helpers.js';

type Tbl = Pick<RoutingTable, 'routes' | 'entrypoints'>;

function table(hosts: string[], opts: { auto?: boolean } = {}): Tbl {
  const route = (host: string, entrypoint: string) => ({
    id: `t/${host}`,
    provider: 't',
    entrypoint,
    host,
    path: '/',
    pathMatch: 'prefix' as const,
    service: 'web@t',
  });
  return {
    routes: [...hosts.map((h) => route(h, 'websecure')), route('plain.example.test', 'web'), route('*', 'websecure')],
    entrypoints: {
      web: { name: 'web', listen: '127.0.0.1:8080', trustedProxies: [] },
      websecure: { name: 'websecure', listen: '127.0.0.1:8443', trustedProxies: [], tls: { auto: opts.auto ?? true, certificates: [] } },
    },
  };
}

t.test('autoHosts: tls.auto entrypoints only, * skipped, wildcards kept', async (t) => {
  t.same(autoHosts(table(['b.example.test', 'a.example.test', '*.apps.example.test'])), [
    '*.apps.example.test',
    'a.example.test',
    'b.example.test',
  ]);
  t.same(autoHosts(table(['a.example.test'], { auto: false })), []);
});

t.test('one instance: issues per host (wildcard included), verifies, notifies', async (t) => {
  const dir = await tmpDir(t);
  const { store } = await openStore(t);
  const box = new SealedBox(Buffer.alloc(32, 9));
  const ca = new ClusterCA({ store, box });
  const auto = new AutoCertManager({ ca, store, box });
  t.teardown(() => {
    auto.close();
    ca.close();
  });
  const rec = new Recorder<AutoCert[]>();
  auto.onChange(rec.push);
  auto.update(table(['a.example.test', '*.apps.example.test']));
  const certs = await rec.until((c) => c.length === 2, 10_000, 'two certificates');
  t.same(
    certs.map((c) => c.hosts),
    [['*.apps.example.test'], ['a.example.test']],
  );
  const info = await ca.info();
  for (const c of certs) {
    const v = await verifyLeaf(dir, info.rootPem, c.chainPem, c.certPem);
    t.equal(v.code, 0, `${c.hosts[0]} verifies`);
    t.match(c.keyPem, PKCS8_KEY);
  }
  const raw = (await store.list(CERTS_PREFIX)).map((e) => e.value.toString()).join('');
  t.notMatch(raw, 'PRIVATE KEY', 'keys sealed in the store');
  // Dropping a host from the table drops it from the set.
  const from = rec.items.length;
  auto.update(table(['a.example.test']));
  const after = await rec.until((c) => c.length === 1, 5000, 'one certificate', from);
  t.same(after[0]?.hosts, ['a.example.test']);
});

t.test('renewal at 2/3 of a short lifetime replaces the certificate', async (t) => {
  const { store } = await openStore(t);
  const box = new SealedBox(Buffer.alloc(32, 9));
  const ca = new ClusterCA({ store, box });
  const auto = new AutoCertManager({ ca, store, box, ttlDays: 1.5 / 86_400 }); // 1.5 s: renewed after ~1 s
  t.teardown(() => {
    auto.close();
    ca.close();
  });
  const rec = new Recorder<AutoCert[]>();
  auto.onChange(rec.push);
  auto.update(table(['r.example.test']));
  // The stored record says when it was issued and when it is due; the renewal is judged by those.
  const record = async () => {
    const e = await store.get(CERTS_PREFIX + 'r.example.test');
    return JSON.parse(e!.value.toString('utf8')) as { serial: string; issuedAt: string; notAfter: string; renewAt: string };
  };
  const first = await rec.until((c) => c.length === 1, 5000, 'first certificate');
  const r1 = await record();
  t.equal(r1.serial, first[0]!.serial);
  const life = Date.parse(r1.notAfter) - Date.parse(r1.issuedAt);
  const due = Date.parse(r1.renewAt) - Date.parse(r1.issuedAt);
  t.ok(Math.abs(due - (life * 2) / 3) <= 1, `due at 2/3 of its lifetime (${due} of ${life} ms)`);
  const renewed = await rec.until((c) => c.length === 1 && c[0]!.serial !== first[0]!.serial, 5000, 'a renewed certificate');
  const r2 = await record();
  t.equal(r2.serial, renewed[0]!.serial);
  t.ok(Date.parse(r2.issuedAt) >= Date.parse(r1.renewAt), `renewed when due, not before (due ${r1.renewAt}, renewed ${r2.issuedAt})`);
  t.ok(renewed[0]!.notAfter > first[0]!.notAfter, 'later expiry');
});

const skip = redisServerPath() ? false : 'redis-server is not installed';

t.test('two instances on one Redis store issue one certificate per host and agree, renewals included', { skip }, async (t) => {
  const srv = await startRedis();
  t.teardown(() => srv.dispose());
  const box = new SealedBox(Buffer.alloc(32, 5));
  const open = async (): Promise<Store> => {
    const s = await RedisStore.open(srv.url, { keyPrefix: 'pki-test:', reapIntervalMs: 50 });
    t.teardown(() => s.close());
    return s;
  };
  const [s1, s2] = await Promise.all([open(), open()]);
  const hosts = ['a.example.test', 'b.example.test', 'c.example.test', '*.w.example.test'];
  const ttlDays = 3 / 86_400; // 3 s: one renewal during the test
  const make = (store: Store) => {
    const ca = new ClusterCA({ store, box });
    const auto = new AutoCertManager({ ca, store, box, ttlDays });
    const rec = new Recorder<AutoCert[]>();
    auto.onChange(rec.push);
    t.teardown(() => {
      auto.close();
      ca.close();
    });
    return { ca, auto, rec };
  };
  const i1 = make(s1!);
  const i2 = make(s2!);
  // Started together, on the same table.
  i1.auto.update(table(hosts));
  i2.auto.update(table(hosts));
  const [c1, c2] = await Promise.all([
    i1.rec.until((c) => c.length === hosts.length, 10_000, 'instance 1 certificates'),
    i2.rec.until((c) => c.length === hosts.length, 10_000, 'instance 2 certificates'),
  ]);
  t.same(
    c1.map((c) => c.serial),
    c2.map((c) => c.serial),
    'both serve the same certificates',
  );
  t.equal((await s1!.list(ISSUED_PREFIX)).length, hosts.length, 'exactly one issued per host');
  t.equal(new Set((await Promise.all([i1.ca.info(), i2.ca.info()])).map((i) => i.root.fingerprint256)).size, 1, 'one CA');
  // Renewal by whichever instance wins reaches the other through the store watch.
  const old = new Set(c1.map((c) => c.serial));
  const allNew = (c: AutoCert[]) => c.length === hosts.length && c.every((x) => !old.has(x.serial));
  const [r1, r2] = await Promise.all([
    i1.rec.until(allNew, 10_000, 'instance 1 renewed'),
    i2.rec.until(allNew, 10_000, 'instance 2 renewed'),
  ]);
  t.same(
    r1.map((c) => c.serial),
    r2.map((c) => c.serial),
    'both serve the same renewed certificates',
  );
  t.equal((await s1!.list(ISSUED_PREFIX)).length, hosts.length * 2, 'one renewal per host, not two');
});

t.test('auto certificates served by SNI pass openssl s_client verification; logs carry no key', async (t) => {
  const dir = await tmpDir(t);
  const { store } = await openStore(t);
  const box = new SealedBox(Buffer.alloc(32, 9));
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  const ca = new ClusterCA({ store, box, logger });
  const auto = new AutoCertManager({ ca, store, box, logger });
  t.teardown(() => {
    auto.close();
    ca.close();
  });
  const hosts = ['one.example.test', 'two.example.test', '*.wild.example.test'];
  let sni = new Map<string, tls.SecureContext>();
  const rec = new Recorder<AutoCert[]>();
  auto.onChange((certs) => {
    // What the L7 engine does: compile an SNI map from the set, swap it in one assignment.
    const next = new Map<string, tls.SecureContext>();
    for (const c of certs) for (const h of c.hosts) next.set(h, tls.createSecureContext({ cert: c.certPem + c.chainPem, key: c.keyPem }));
    sni = next;
    rec.push(certs);
  });
  auto.update(table(hosts));
  const certs = await rec.until((c) => c.length === hosts.length, 10_000, 'certificates');
  const server = tls.createServer(
    {
      SNICallback: (name, cb) => {
        const exact = sni.get(name);
        const wild = sni.get(`*.${name.split('.').slice(1).join('.')}`);
        cb(null, exact ?? wild);
      },
    },
    (s) => s.end('hi\n'),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  await fsp.writeFile(path.join(dir, 'root.pem'), await ca.rootPem());
  for (const name of ['one.example.test', 'two.example.test', 'x.wild.example.test']) {
    const r = await openssl(
      [
        's_client',
        '-connect',
        `127.0.0.1:${port}`,
        '-servername',
        name,
        '-CAfile',
        'root.pem',
        '-verify_hostname',
        name,
        '-verify_return_error',
        '-brief',
      ],
      dir,
    );
    t.match(r.out, /Verification: OK|Verify return code: 0/, `${name}: verify return code 0`);
    const expected = certs.find((c) => c.hosts[0] === name || c.hosts[0] === `*.${name.split('.').slice(1).join('.')}`)!;
    const peer = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', servername: name, rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()!.serialNumber.toLowerCase());
        s.destroy();
      });
      s.on('error', reject);
    });
    t.equal(peer, expected.serial, `${name} is served its auto certificate`);
  }
  const log = lines.join('');
  t.match(log, 'automatic certificate issued');
  t.notMatch(log, 'PRIVATE KEY', 'no key material in the logs');
  for (const c of certs) t.notMatch(log, c.keyPem.split('\n')[1]!, 'not a line of any key');
});

t.test('a lock left by a dead instance expires with its lease, and another instance issues', async (t) => {
  const { store } = await openStore(t);
  const box = new SealedBox(Buffer.alloc(32, 9));
  // A "dead" instance holds the lock for d.example.test on a 300 ms lease it will never renew.
  const lease = await store.grantLease(300);
  await store.put(`portico/pki/locks/d.example.test`, 'dead-instance', { lease: lease.id });
  const ca = new ClusterCA({ store, box });
  const auto = new AutoCertManager({ ca, store, box });
  t.teardown(() => {
    auto.close();
    ca.close();
  });
  const rec = new Recorder<AutoCert[]>();
  auto.onChange(rec.push);
  const started = Date.now();
  auto.update(table(['d.example.test']));
  await rec.until((c) => c.length === 1, 5000, 'a certificate after the lease expired');
  const waited = Date.now() - started;
  t.ok(waited >= 250, `waited for the dead lock (${waited} ms)`);
  t.equal((await store.list(ISSUED_PREFIX)).length, 1, 'one certificate');
});
