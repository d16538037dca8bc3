import Redis from 'ioredis';
import t from 'tap';
import { ErrorCodes } from '../../src/model/errors.js';
import { openStore } from '../../src/store/index.js';
import { RedisStore, parseRedisUrl, type RedisStoreOptions } from '../../src/store/redis.js';
import type { Store, WatchEvent } from '../../src/store/types.js';
import { freePort, redisServerPath, startRedis, startSentinel, type RedisServer } from '../helpers/redis.js';
import { Recorder, waitFor } from '../helpers/wait.js';
import { conformance } from './conformance.js';

t.test('parseRedisUrl', async (t) => {
  const ok: [string, string, Record<string, unknown>][] = [
    ['redis://127.0.0.1:6380/2', 'redis://127.0.0.1:6380/2', { host: '127.0.0.1', port: 6380, db: 2 }],
    ['redis://localhost', 'redis://localhost:6379/0', { host: 'localhost', port: 6379, db: 0 }],
    ['redis://:s3cret@h:1/0', 'redis://:***@h:1/0', { host: 'h', port: 1, password: 's3cret' }],
    ['redis://user:p%40ss@h/1', 'redis://user:***@h:6379/1', { username: 'user', password: 'p@ss', db: 1 }],
    ['redis://[::1]:7000', 'redis://[::1]:7000/0', { host: '::1', port: 7000 }],
    ['rediss://h:6390/0', 'rediss://h:6390/0', { host: 'h', port: 6390, tls: { servername: 'h' } }],
    [
      'redis-sentinel://h1:26379,h2/mymaster',
      'redis-sentinel://h1:26379,h2:26379/mymaster/0',
      {
        name: 'mymaster',
        db: 0,
        sentinels: [
          { host: 'h1', port: 26379 },
          { host: 'h2', port: 26379 },
        ],
      },
    ],
    [
      'redis-sentinel://:pw@[::1]:5000/m/3',
      'redis-sentinel://:***@[::1]:5000/m/3',
      { name: 'm', db: 3, password: 'pw', sentinels: [{ host: '::1', port: 5000 }] },
    ],
  ];
  for (const [url, display, options] of ok) {
    const r = parseRedisUrl(url);
    t.equal(r.display, display, `${url} displays as ${display}`);
    t.match(r.options, options, `${url} options`);
  }
  const fails = [
    'http://h',
    'redis://',
    'redis://h:99999',
    'redis://h/x',
    'redis://h/1/2',
    'redis-sentinel:///m',
    'redis-sentinel://h:1',
    'redis-sentinel://:hunter2@h:1/m/x',
  ];
  for (const url of fails) {
    let err: Error | undefined;
    try {
      parseRedisUrl(url);
    } catch (e) {
      err = e as Error;
    }
    t.match(err, { code: ErrorCodes.STORE_UNAVAILABLE, message: /invalid Redis URL/ }, `${url} fails`);
    t.notMatch(err?.message ?? '', 'hunter2', 'without echoing a password');
  }
});

t.test('open against a closed port rejects with STORE_UNAVAILABLE naming the URL', async (t) => {
  const port = await freePort();
  const started = Date.now();
  const err = await RedisStore.open(`redis://:s3cret@127.0.0.1:${port}/0`, { connectTimeoutMs: 500 }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  const elapsed = Date.now() - started;
  t.match(err, { code: ErrorCodes.STORE_UNAVAILABLE, status: 503 });
  t.match(err?.message, `redis://:***@127.0.0.1:${port}/0`, 'names the URL');
  t.notMatch(err?.message, 's3cret', 'without the password');
  t.ok(elapsed < 2500, `within the connect timeout (${elapsed} ms)`);
});

const skip = redisServerPath() ? false : 'redis-server is not installed';

t.test('against a private redis-server', { skip }, async (t) => {
  const srv = await startRedis();
  t.teardown(() => srv.dispose());
  let n = 0;
  const prefixes = new WeakMap<Store, string>();
  const openWith = async (prefix: string, opts: RedisStoreOptions = {}) => {
    const s = await RedisStore.open(srv.url, { keyPrefix: prefix, reapIntervalMs: 50, ...opts });
    prefixes.set(s, prefix);
    return s;
  };

  conformance(t, 'redis', () => openWith(`conf${n++}:`), { openPeer: (s) => openWith(prefixes.get(s)!) });

  t.test('openStore with a redis:// URL', async (t) => {
    const s = await openStore(srv.url, '/nonexistent', { redis: { keyPrefix: 'os:' } });
    t.teardown(() => s.close());
    t.equal(s.kind, 'redis');
    t.equal((await s.put('k', 'v')).revision, 1);
  });

  t.test('many clients reap a lease exactly once', async (t) => {
    const a = await openWith('reap:');
    const b = await openWith('reap:');
    const c = await openWith('reap:');
    t.teardown(() => Promise.all([a.close(), b.close(), c.close()]));
    const rec = new Recorder<WatchEvent>();
    const w = c.watch('e/', rec.push);
    t.teardown(() => w.close());
    await rec.until((ev) => ev.type === 'resync', 5000, 'resync');
    const lease = await a.grantLease(200);
    await a.put('e/1', 'x', { lease: lease.id });
    await b.put('e/2', 'x', { lease: lease.id });
    await rec.until((ev) => ev.type === 'delete' && ev.key === 'e/1', 5000, 'expiry of e/1');
    await rec.until((ev) => ev.type === 'delete' && ev.key === 'e/2', 5000, 'expiry of e/2');
    await a.put('e/marker', 'x');
    await rec.until((ev) => ev.type === 'put' && ev.key === 'e/marker', 5000, 'the marker');
    t.equal(rec.items.filter((ev) => ev.type === 'delete').length, 2, 'one delete per key, however many reapers ran');
  });

  t.test('a gap in the change log (trimmed past a watcher) becomes a resync', async (t) => {
    const s = await openWith('gap:');
    t.teardown(() => s.close());
    const raw = new Redis(srv.port, '127.0.0.1');
    t.teardown(() => raw.quit());
    const rec = new Recorder<WatchEvent>();
    const w = s.watch('g/', rec.push);
    t.teardown(() => w.close());
    await rec.until((ev) => ev.type === 'resync', 5000, 'the first resync');
    await s.put('g/before', 'x');
    await rec.until((ev) => ev.type === 'put' && ev.key === 'g/before', 5000, 'a normal event');
    // Writes whose log entries were trimmed away before this watcher read them look like this:
    // the revision moved on, the log does not have them.
    await raw.incrby('gap:rev', 5);
    const e = await s.put('g/after', 'y');
    const resync = await rec.until((ev) => ev.type === 'resync' && ev.revision >= e.revision, 5000, 'a resync after the gap');
    t.same(resync.type === 'resync' && resync.entries.map((x) => x.key), ['g/after', 'g/before'], 'with the current contents');
    t.notOk(
      rec.items.some((ev) => ev.type === 'put' && ev.key === 'g/after'),
      'the change after the gap is not passed off as contiguous',
    );
  });

  t.test('a revision that goes backwards (Redis lost its data) becomes a resync', async (t) => {
    const s = await openWith('flush:');
    t.teardown(() => s.close());
    const raw = new Redis(srv.port, '127.0.0.1');
    t.teardown(() => raw.quit());
    const rec = new Recorder<WatchEvent>();
    const w = s.watch('f/', rec.push);
    t.teardown(() => w.close());
    await rec.until((ev) => ev.type === 'resync', 5000, 'the first resync');
    for (let i = 0; i < 5; i++) await s.put(`f/${i}`, 'x');
    await rec.until((ev) => ev.type === 'put' && ev.key === 'f/4', 5000, 'the events');
    for (const k of await raw.keys('flush:*')) await raw.del(k);
    await s.put('f/new', 'y');
    const resync = await rec.until((ev) => ev.type === 'resync' && ev.entries.some((e) => e.key === 'f/new'), 5000, 'a resync');
    t.same(resync.type === 'resync' && resync.entries.map((e) => e.key), ['f/new'], 'holding what Redis has now');
  });
});

t.test('redis-sentinel:// URLs find the master through a sentinel', { skip }, async (t) => {
  const srv = await startRedis();
  t.teardown(() => srv.dispose());
  const sentinel = await startSentinel(srv.port, 'portico-master');
  t.teardown(() => sentinel.dispose());
  const s = await RedisStore.open(sentinel.url('portico-master'), { connectTimeoutMs: 5000 });
  t.teardown(() => s.close());
  await s.put('via/sentinel', 'yes');
  const raw = new Redis(srv.port, '127.0.0.1');
  t.teardown(() => raw.quit());
  t.equal(await raw.hget('portico:val', 'via/sentinel'), 'yes', 'the write reached the monitored master');
});

t.test('Redis going away and coming back', { skip }, async (t) => {
  const srv: RedisServer = await startRedis();
  t.teardown(() => srv.dispose());
  const a = await RedisStore.open(srv.url, { commandTimeoutMs: 2000 });
  t.teardown(() => a.close());
  const rec = new Recorder<WatchEvent>();
  const w = a.watch('k/', rec.push);
  t.teardown(() => w.close());
  await rec.until((ev) => ev.type === 'resync', 5000, 'the first resync');
  await a.put('k/1', 'before');
  await rec.until((ev) => ev.type === 'put' && ev.key === 'k/1', 5000, 'the event for k/1');

  await srv.kill();
  const ops: [string, () => Promise<unknown>][] = [
    ['put', () => a.put('k/2', 'x')],
    ['get', () => a.get('k/1')],
    ['list', () => a.list('k/')],
    ['cas', () => a.cas('k/1', 1, 'x')],
    ['grantLease', () => a.grantLease(1000)],
  ];
  for (const [what, op] of ops) {
    const started = Date.now();
    await t.rejects(
      op(),
      { code: ErrorCodes.STORE_UNAVAILABLE, message: new RegExp(`127\\.0\\.0\\.1:${srv.port}`) },
      `${what} rejects with STORE_UNAVAILABLE`,
    );
    t.ok(Date.now() - started < 1000, `${what} fails fast (${Date.now() - started} ms), it does not hang`);
  }

  await srv.restart();
  const b = await RedisStore.open(srv.url);
  t.teardown(() => b.close());
  await b.put('k/from-b', 'after restart');
  await rec.until(
    (ev) => (ev.type === 'put' && ev.key === 'k/from-b') || (ev.type === 'resync' && ev.entries.some((e) => e.key === 'k/from-b')),
    15_000,
    'the write from another client, as an event or in a resync',
  );
  t.pass('the watcher saw a write made after Redis came back');
  const recovered = await waitFor(
    () =>
      a.put('k/3', 'a works again').then(
        (e) => e,
        () => undefined,
      ),
    { timeoutMs: 10_000, what: 'the first client to reconnect', intervalMs: 100 },
  );
  t.equal(recovered.key, 'k/3', 'the first client reconnects by itself');
  await rec.until((ev) => ev.type === 'put' && ev.key === 'k/3', 5000, 'events flow again');
});

t.test('with appendfsync always, acknowledged writes survive kill -9 of redis-server', { skip }, async (t) => {
  const srv = await startRedis({ persistent: true });
  t.teardown(() => srv.dispose());
  const s = await RedisStore.open(srv.url);
  t.teardown(() => s.close());
  await Promise.all(Array.from({ length: 50 }, (_, i) => s.put(`p/${i}`, String(i))));
  await srv.kill();
  await srv.restart();
  const r = await RedisStore.open(srv.url);
  t.teardown(() => r.close());
  t.equal((await r.list('p/')).length, 50);
  t.equal(await r.revision(), 50);
});
