/**
 * Locks with fencing tokens (src/store/lock.ts) over both stores: exclusive while held, a larger token for
 * every later holder, and fencedPut refusing a write made under a lock that has since passed to another.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { fencedPut, fenceOf, tryLock } from '../../src/store/lock.js';
import { RedisStore } from '../../src/store/redis.js';
import type { Store } from '../../src/store/types.js';
import { startRedis } from '../helpers/redis.js';
import { withTimeout } from '../helpers/wait.js';

async function suite(t: Test, open: () => Promise<Store>): Promise<void> {
  const store = await open();
  t.teardown(() => store.close());

  t.test('one holder at a time; a later holder has a larger token', async (t) => {
    const a = await tryLock(store, 'portico/locks/t1', { ttlMs: 5000, owner: 'a' });
    t.ok(a, 'a takes the lock');
    t.equal(await tryLock(store, 'portico/locks/t1', { ttlMs: 5000, owner: 'b' }), null, 'b cannot while a holds it');
    await a!.release();
    await a!.release(); // idempotent
    const b = await tryLock(store, 'portico/locks/t1', { ttlMs: 5000, owner: 'b' });
    t.ok(b, 'b takes it after a released');
    t.ok(b!.token > a!.token, `token grows (${a!.token} → ${b!.token})`);
    t.same(JSON.parse((await store.get('portico/locks/t1'))!.value.toString()).owner, 'b', 'the lock names its owner');
    await b!.release();
    t.equal(await store.get('portico/locks/t1'), undefined, 'released lock is gone');
  });

  t.test('20 contenders at once: exactly one wins', async (t) => {
    const got = await Promise.all(
      Array.from({ length: 20 }, (_, i) => tryLock(store, 'portico/locks/race', { ttlMs: 5000, owner: `c${i}` })),
    );
    t.equal(got.filter(Boolean).length, 1);
    await Promise.all(got.map((l) => l?.release()));
  });

  t.test('fencedPut refuses a write under an older token', async (t) => {
    const old = await tryLock(store, 'portico/locks/f', { ttlMs: 5000, owner: 'old' });
    // The old holder's lease lapses (revoked here, as expiry would) and a new holder takes over.
    await store.revokeLease(old!.leaseId);
    const cur = await tryLock(store, 'portico/locks/f', { ttlMs: 5000, owner: 'new' });
    t.ok(cur && cur.token > old!.token);
    const w1 = await fencedPut(store, 'portico/things/f', cur!.token, { by: 'new' });
    t.ok(w1.ok, 'the current holder writes');
    const w2 = await fencedPut(store, 'portico/things/f', old!.token, { by: 'old' });
    t.same(w2, { ok: false, fencedBy: cur!.token }, 'the late holder is fenced off');
    const stored = (await store.get('portico/things/f'))!;
    t.equal(JSON.parse(stored.value.toString()).by, 'new', 'the newer value stands');
    t.equal(fenceOf(stored.value), cur!.token);
    const w3 = await fencedPut(store, 'portico/things/f', cur!.token, { by: 'new', n: 2 });
    t.ok(w3.ok, 'the same token may write again');
    await old!.release();
    await cur!.release();
  });

  t.test("a lease that expires aborts the holder's signal", async (t) => {
    const l = await tryLock(store, 'portico/locks/exp', { ttlMs: 300, owner: 'x' });
    await store.revokeLease(l!.leaseId); // what expiry does; the next renewal notices
    const reason = await withTimeout(
      new Promise<unknown>((resolve) => {
        l!.signal.addEventListener('abort', () => resolve(l!.signal.reason));
      }),
      5000,
      'the lock signal to abort',
    );
    t.match(String(reason), /lease expired/);
    await l!.release();
  });
}

t.test('embedded store', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'portico-lock-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  await suite(t, () => EmbeddedStore.open(dir, { leaseCheckIntervalMs: 20 }));
});

t.test('redis store', async (t) => {
  const srv = await startRedis();
  t.teardown(() => srv.dispose());
  await suite(t, () => RedisStore.open(srv.url, { reapIntervalMs: 20 }));
});
