/**
 * The Store contract, as tests. Every implementation runs this suite unchanged (test/store/*.test.ts);
 * what a store may do differently (several clients on one store) is passed in, not branched on here.
 */
import { ErrorCodes } from '../../src/model/errors.js';
import type { Entry, Store, WatchEvent } from '../../src/store/types.js';
import type {} from 'tap';
import { Recorder, pace, withTimeout } from '../helpers/wait.js';

export interface ConformanceOptions {
  /**
   * Open another client of the same store as `primary` (Redis). Absent when a store can only be open
   * once (embedded): the suite then runs its multi-client cases against the one instance.
   */
  openPeer?: (primary: Store) => Promise<Store>;
}

const EVENT_TIMEOUT = 10_000;

/** tap's CJS typings export the Test type through the global `tap` namespace. */
type Test = tap.Test;

const text = (e: Entry | undefined | null) => e?.value.toString('utf8');
const keysOf = (es: Entry[]) => es.map((e) => e.key);

function isResync(ev: WatchEvent): ev is Extract<WatchEvent, { type: 'resync' }> {
  return ev.type === 'resync';
}

/** Watch `prefix`, returning the recorder and the first event (always a resync). */
async function watched(store: Store, prefix: string) {
  const rec = new Recorder<WatchEvent>();
  const w = store.watch(prefix, rec.push);
  const first = await rec.until(() => true, EVENT_TIMEOUT, `the first event of a watch on ${prefix}`);
  return { rec, w, first };
}

export function conformance(t: Test, name: string, open: () => Promise<Store>, opts: ConformanceOptions = {}): void {
  /** A fresh, empty store (closed at the end of the subtest). */
  async function fresh(t: Test): Promise<Store> {
    const s = await open();
    t.teardown(() => s.close());
    return s;
  }
  async function peers(t: Test, primary: Store, n: number): Promise<Store[]> {
    const out = [primary];
    if (!opts.openPeer) return out;
    for (let i = 1; i < n; i++) {
      const p = await opts.openPeer(primary);
      t.teardown(() => p.close());
      out.push(p);
    }
    return out;
  }

  t.test(`${name}: get, put and list by prefix`, async (t) => {
    const s = await fresh(t);
    t.equal(await s.get('a/1'), undefined, 'missing key is undefined');
    for (const k of ['a/3', 'b/1', 'a/1', 'a', 'a/2', 'ab/1']) await s.put(k, `v:${k}`);
    const e = await s.get('a/2');
    t.equal(text(e), 'v:a/2');
    t.equal(e?.key, 'a/2');
    t.ok(Buffer.isBuffer(e?.value), 'values are Buffers');
    t.same(keysOf(await s.list('a/')), ['a/1', 'a/2', 'a/3'], 'prefix listing is sorted and exact');
    t.same(keysOf(await s.list('a')), ['a', 'a/1', 'a/2', 'a/3', 'ab/1']);
    t.same(keysOf(await s.list('')), ['a', 'a/1', 'a/2', 'a/3', 'ab/1', 'b/1'], 'empty prefix lists everything');
    t.same(await s.list('zz'), []);
    t.same((await s.list('a/')).map(text), ['v:a/1', 'v:a/2', 'v:a/3'], 'listing carries values');

    const bin = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x0d, 0x0a]);
    await s.put('bin', bin);
    t.ok((await s.get('bin'))?.value.equals(bin), 'binary values round-trip');
    await s.put('empty', '');
    t.equal((await s.get('empty'))?.value.length, 0, 'empty values are kept');
    await s.put('ü/日本/🙂', 'unicode');
    t.equal(text(await s.get('ü/日本/🙂')), 'unicode', 'unicode keys');

    const before = await s.get('a/1');
    const after = await s.put('a/1', 'new');
    t.equal(text(await s.get('a/1')), 'new', 'put overwrites');
    t.ok(after.revision > before!.revision, 'overwrite gets a newer revision');

    const mutable = Buffer.from('original');
    await s.put('copy', mutable);
    mutable.write('CHANGED!');
    t.equal(text(await s.get('copy')), 'original', 'the store keeps its own copy of a Buffer value');

    await t.rejects(s.put('', 'x'), TypeError, 'empty key is refused');
    await t.rejects(s.put('half-\uD83D', 'x'), TypeError, 'a key that cannot be stored as UTF-8 is refused');
  });

  t.test(`${name}: every write increments the revision by exactly one`, async (t) => {
    const s = await fresh(t);
    t.equal(await s.revision(), 0, 'a fresh store is at revision 0');
    const r1 = (await s.put('k1', 'a')).revision;
    t.equal(r1, 1, 'first write is revision 1');
    t.equal((await s.put('k2', 'b')).revision, 2);
    t.equal((await s.put('k1', 'c')).revision, 3, 'overwrite');
    t.equal((await s.cas('k1', 3, 'd'))?.revision, 4, 'cas');
    t.equal(await s.cas('k1', 3, 'e'), null, 'failed cas');
    t.equal(await s.revision(), 4, 'failed cas does not write');
    t.equal(await s.delete('k2'), true);
    t.equal(await s.revision(), 5, 'delete writes');
    t.equal(await s.delete('k2'), false);
    t.equal(await s.delete('k1', 1), false);
    t.equal(await s.revision(), 5, 'failed deletes do not write');
    t.equal((await s.get('k1'))?.revision, 4, 'an entry carries the revision of the write that produced it');
    t.equal((await s.list('k'))[0]?.revision, 4);
  });

  t.test(`${name}: compare-and-set`, async (t) => {
    const s = await fresh(t);
    const created = await s.cas('c', 0, 'one');
    t.ok(created, 'expected revision 0 creates a missing key');
    t.equal(text(created), 'one');
    t.equal(await s.cas('c', 0, 'again'), null, '0 fails when the key exists');
    t.equal(await s.cas('c', created!.revision + 10, 'x'), null, 'a wrong revision fails');
    t.equal(await s.cas('missing', 5, 'x'), null, 'a revision for a missing key fails');
    t.equal(await s.get('missing'), undefined, 'and creates nothing');
    const updated = await s.cas('c', created!.revision, 'two');
    t.ok(updated && updated.revision > created!.revision, 'the right revision writes');
    t.equal(text(await s.get('c')), 'two');
    await s.delete('c');
    t.ok(await s.cas('c', 0, 'reborn'), '0 creates again after a delete');
    await t.rejects(s.cas('c', -1, 'x'), RangeError, 'a negative revision is refused');
  });

  t.test(`${name}: delete with and without an expected revision`, async (t) => {
    const s = await fresh(t);
    t.equal(await s.delete('nope'), false, 'deleting a missing key is false');
    const e = await s.put('d', 'x');
    t.equal(await s.delete('d', e.revision + 1), false, 'wrong revision: not deleted');
    t.equal(text(await s.get('d')), 'x', 'key still there');
    t.equal(await s.delete('d', e.revision), true, 'right revision: deleted');
    t.equal(await s.get('d'), undefined);
    await s.put('d', 'y');
    t.equal(await s.delete('d'), true, 'unconditional delete');
    t.equal(await s.get('d'), undefined);
    t.same(await s.list('d'), []);
  });

  t.test(`${name}: 100 concurrent compare-and-set increments give exactly 100`, async (t) => {
    const s = await fresh(t);
    const clients = await peers(t, s, 4);
    let conflicts = 0;
    const increment = async (store: Store) => {
      for (;;) {
        const cur = await store.get('counter');
        const n = cur ? Number(cur.value.toString()) : 0;
        if (await store.cas('counter', cur?.revision ?? 0, String(n + 1))) return;
        conflicts++;
      }
    };
    await withTimeout(
      Promise.all(Array.from({ length: 100 }, (_, i) => increment(clients[i % clients.length]!))),
      60_000,
      '100 increments',
    );
    t.equal(text(await s.get('counter')), '100', `exactly 100 (${clients.length} client(s), ${conflicts} conflicts retried)`);
    t.ok(conflicts > 0, 'the increments really raced');
  });

  t.test(`${name}: watch delivers every write in revision order, after a first resync`, async (t) => {
    const s = await fresh(t);
    await s.put('ord/pre', 'existing');
    const { rec, w, first } = await watched(s, 'ord/');
    t.teardown(() => w.close());
    t.equal(first.type, 'resync', 'the first event is a resync');
    if (!isResync(first)) return;
    t.same(keysOf(first.entries), ['ord/pre'], 'with the current contents');
    t.equal(first.revision, await s.revision(), 'at the current revision');

    const written = await Promise.all(Array.from({ length: 500 }, (_, i) => s.put(`ord/${String(i).padStart(3, '0')}`, String(i))));
    const last = Math.max(...written.map((e) => e.revision));
    await rec.until((ev) => ev.type !== 'resync' && ev.revision === last, EVENT_TIMEOUT, `the event for revision ${last}`);
    const events = rec.items.slice(1);
    t.equal(events.length, 500, 'one event per write');
    let expected = first.revision + 1;
    let inOrder = true;
    for (const ev of events) {
      if (ev.type !== 'put' || ev.revision !== expected) {
        inOrder = false;
        break;
      }
      expected++;
    }
    t.ok(inOrder, 'revisions strictly increase by one, no gaps, no duplicates');
    const byKey = new Map(written.map((e) => [e.key, e]));
    t.ok(
      events.every((ev) => ev.type === 'put' && byKey.get(ev.key)?.revision === ev.revision && text(ev.entry) === text(byKey.get(ev.key))),
      'each event carries the entry its write produced',
    );
  });

  t.test(`${name}: watch filters by prefix and stops on close`, async (t) => {
    const s = await fresh(t);
    await s.put('p/a/1', '1');
    await s.put('p/b/1', '1');
    await s.put('p/ab', '1');
    const { rec, w, first } = await watched(s, 'p/a/');
    t.ok(isResync(first) && first.entries.length === 1 && first.entries[0]?.key === 'p/a/1', 'the resync holds only the prefix');

    await s.put('p/b/2', 'x');
    await s.put('p/a/2', 'x');
    await s.put('p/abc', 'x');
    await s.delete('p/a/1');
    await s.delete('p/b/1');
    const marker = await s.put('p/a/zz', 'marker');
    await rec.until((ev) => ev.type === 'put' && ev.key === 'p/a/zz', EVENT_TIMEOUT, 'the marker event');
    t.same(
      rec.items.slice(1).map((ev) => `${ev.type} ${'key' in ev ? ev.key : ''}`),
      ['put p/a/2', 'delete p/a/1', 'put p/a/zz'],
      'only writes under the prefix, in order',
    );
    const del = rec.items.find((ev) => ev.type === 'delete');
    t.ok(del && del.type === 'delete' && !del.expired, 'a plain delete is not marked expired');
    t.equal(rec.items.at(-1)?.type === 'put' ? (rec.items.at(-1) as { revision: number }).revision : 0, marker.revision);

    w.close();
    w.close();
    const other = await watched(s, 'p/a/');
    t.teardown(() => other.w.close());
    await s.put('p/a/after-close', 'x');
    await other.rec.until(
      (ev) => ev.type === 'put' && ev.key === 'p/a/after-close',
      EVENT_TIMEOUT,
      'the write after close, on another watcher',
    );
    t.notOk(
      rec.items.some((ev) => ev.type === 'put' && ev.key === 'p/a/after-close'),
      'a closed watch receives nothing more',
    );
  });

  t.test(`${name}: a watcher that throws does not stop delivery`, async (t) => {
    const s = await fresh(t);
    let thrown = 0;
    const bad = s.watch('t/', () => {
      thrown++;
      throw new Error('watcher bug');
    });
    const { rec, w } = await watched(s, 't/');
    t.teardown(() => {
      bad.close();
      w.close();
    });
    await s.put('t/1', 'x');
    await s.put('t/2', 'x');
    await rec.until((ev) => ev.type === 'put' && ev.key === 't/2', EVENT_TIMEOUT, 'the second put');
    t.equal(thrown, 3, 'the throwing watcher kept receiving (resync + 2 puts)');
  });

  t.test(`${name}: lease expiry deletes its keys as ordinary writes`, async (t) => {
    const s = await fresh(t);
    const lease = await s.grantLease(300);
    t.equal(lease.ttlMs, 300);
    t.type(lease.id, 'string');
    await s.put('l/a', 'a', { lease: lease.id });
    await s.put('l/b', 'b', { lease: lease.id });
    await s.put('l/keep', 'k');
    t.equal((await s.get('l/a'))?.lease, lease.id, 'the entry names its lease');
    t.equal((await s.get('l/keep'))?.lease, undefined);
    const { rec, w } = await watched(s, 'l/');
    t.teardown(() => w.close());
    const revBefore = await s.revision();

    const isExpiry = (ev: WatchEvent) => ev.type === 'delete' && ev.expired === true;
    await rec.until((ev) => isExpiry(ev) && 'key' in ev && ev.key === 'l/a', EVENT_TIMEOUT, 'the expiry of l/a');
    await rec.until((ev) => isExpiry(ev) && 'key' in ev && ev.key === 'l/b', EVENT_TIMEOUT, 'the expiry of l/b');
    const dels = rec.items.filter(isExpiry) as Extract<WatchEvent, { type: 'delete' }>[];
    t.same(
      dels.map((d) => d.revision).sort((a, b) => a - b),
      [revBefore + 1, revBefore + 2],
      'each expiry delete is one revision',
    );
    t.equal(await s.get('l/a'), undefined, 'leased keys are gone');
    t.equal(await s.get('l/b'), undefined);
    t.equal(text(await s.get('l/keep')), 'k', 'other keys stay');
    t.equal(await s.revision(), revBefore + 2);
    t.equal(await s.keepAlive(lease.id), false, 'keepAlive of an expired lease is false');
    await t.rejects(s.put('l/c', 'c', { lease: lease.id }), { code: ErrorCodes.STORE_LEASE_NOT_FOUND }, 'an expired lease cannot be used');
  });

  t.test(`${name}: keepAlive extends a lease`, async (t) => {
    const s = await fresh(t);
    const ttl = 600;
    const lease = await s.grantLease(ttl);
    await s.put('ka/k', 'v', { lease: lease.id });
    const { rec, w } = await watched(s, 'ka/');
    t.teardown(() => w.close());
    const start = Date.now();
    let renewals = 0;
    let lastRenewal = Date.now();
    while (Date.now() - start < 3 * ttl) {
      await pace(150);
      if (await s.keepAlive(lease.id)) renewals++;
      lastRenewal = Date.now();
    }
    t.ok(renewals >= 10, `every keepAlive succeeded (${renewals})`);
    t.equal(text(await s.get('ka/k')), 'v', 'the key outlives its ttl three times over while renewed');
    t.notOk(
      rec.items.some((ev) => ev.type === 'delete'),
      'no expiry while renewed',
    );
    await rec.until((ev) => ev.type === 'delete' && ev.expired === true, EVENT_TIMEOUT, 'expiry once renewals stop');
    t.ok(Date.now() - lastRenewal >= ttl - 50, 'it expired a ttl after the last renewal, not before');
    t.equal(await s.keepAlive(lease.id), false);
  });

  t.test(`${name}: revokeLease deletes its keys now`, async (t) => {
    const s = await fresh(t);
    const lease = await s.grantLease(60_000);
    await s.put('r/1', 'x', { lease: lease.id });
    await s.put('r/2', 'x', { lease: lease.id });
    await s.put('r/3', 'x', { lease: lease.id });
    await s.put('r/3', 'detached'); // a put without the lease detaches the key from it
    const { rec, w } = await watched(s, 'r/');
    t.teardown(() => w.close());
    await s.revokeLease(lease.id);
    t.same(keysOf(await s.list('r/')), ['r/3'], 'attached keys are gone when revoke resolves; the detached one stays');
    await rec.until((ev) => ev.type === 'delete' && ev.key === 'r/2', EVENT_TIMEOUT, 'delete events');
    const dels = rec.items.filter((ev) => ev.type === 'delete');
    t.same(dels.map((ev) => 'key' in ev && ev.key).sort(), ['r/1', 'r/2']);
    t.ok(
      dels.every((ev) => ev.type === 'delete' && ev.expired === true),
      'revocation deletes are marked expired',
    );
    t.equal(await s.keepAlive(lease.id), false, 'a revoked lease is gone');
    await t.resolves(s.revokeLease(lease.id), 'revoking an unknown lease is a no-op');
  });

  t.test(`${name}: an unknown lease is refused`, async (t) => {
    const s = await fresh(t);
    const rev = await s.revision();
    await t.rejects(s.put('u/1', 'x', { lease: 'no-such-lease' }), { code: ErrorCodes.STORE_LEASE_NOT_FOUND, status: 404 });
    await t.rejects(s.cas('u/1', 0, 'x', { lease: 'no-such-lease' }), { code: ErrorCodes.STORE_LEASE_NOT_FOUND });
    t.equal(await s.get('u/1'), undefined, 'nothing was written');
    t.equal(await s.revision(), rev, 'and the revision did not move');
    t.equal(await s.keepAlive('no-such-lease'), false);
    await t.rejects(s.grantLease(0), RangeError, 'a zero ttl is refused');
  });

  t.test(`${name}: after close every call rejects with STORE_CLOSED`, async (t) => {
    const s = await open();
    await s.put('x', 'y');
    const lease = await s.grantLease(10_000);
    await s.close();
    const closed = { code: ErrorCodes.STORE_CLOSED };
    await t.rejects(s.get('x'), closed, 'get');
    await t.rejects(s.put('x', 'z'), closed, 'put');
    await t.rejects(s.cas('x', 1, 'z'), closed, 'cas');
    await t.rejects(s.delete('x'), closed, 'delete');
    await t.rejects(s.list(''), closed, 'list');
    await t.rejects(s.revision(), closed, 'revision');
    await t.rejects(s.grantLease(1000), closed, 'grantLease');
    await t.rejects(s.keepAlive(lease.id), closed, 'keepAlive');
    await t.rejects(s.revokeLease(lease.id), closed, 'revokeLease');
    t.throws(() => s.watch('', () => undefined), closed, 'watch');
    await t.resolves(s.close(), 'close is idempotent');
  });
}
