import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import t from 'tap';
import { ErrorCodes } from '../../src/model/errors.js';
import { EmbeddedStore, type EmbeddedStoreOptions } from '../../src/store/embedded.js';
import { openStore } from '../../src/store/index.js';
import type { WatchEvent } from '../../src/store/types.js';
import { Recorder, waitFor, withTimeout } from '../helpers/wait.js';
import { conformance } from './conformance.js';
import { ERROR, capture } from './embedded/helpers.js';

const ROOT = path.join(__dirname, '..', '..');

async function tmpDir(): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), 'portico-store-'));
  t.teardown(() => fsp.rm(d, { recursive: true, force: true }));
  return d;
}

const journalOf = (dir: string, gen = 0) => path.join(dir, 'store', `journal.${gen}.log`);
const open = (dir: string, opts: EmbeddedStoreOptions = {}) => EmbeddedStore.open(path.join(dir, 'store'), opts);

conformance(t, 'embedded', async () => open(await tmpDir(), { leaseCheckIntervalMs: 25 }));

t.test('data dir is created 0700 and holds a lock while open', async (t) => {
  const dir = await tmpDir();
  const s = await open(dir);
  const st = await fsp.stat(path.join(dir, 'store'));
  t.equal(st.mode & 0o777, 0o700, 'store dir is private');
  await t.rejects(
    open(dir),
    { code: ErrorCodes.STORE_UNAVAILABLE, message: /already open/ },
    'a second open in the same process is refused',
  );
  await s.close();

  // A stale lock (dead pid) is taken over. (What else a LOCK can hold: embedded/dir-lock.test.ts.)
  const dead = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => dead.once('exit', r));
  await fsp.writeFile(path.join(dir, 'store', 'LOCK'), `${dead.pid}\n`);
  const again = await open(dir);
  t.equal(again.kind, 'embedded', 'a stale lock is taken over');
  await again.close();
});

t.test('reopen keeps data, revisions and leases', async (t) => {
  const dir = await tmpDir();
  const s = await open(dir);
  const lease = await s.grantLease(60_000);
  await s.put('a', '1');
  await s.put('b', Buffer.from([0, 255]));
  await s.put('c', 'leased', { lease: lease.id });
  await s.delete('a');
  await s.put('d', 'x');
  const before = await s.list('');
  const rev = await s.revision();
  await s.close();

  const r = await open(dir);
  t.teardown(() => r.close());
  t.same(await r.list(''), before, 'same entries, values, revisions and lease attachments');
  t.equal(await r.revision(), rev, 'same revision');
  t.equal((await r.put('e', 'y')).revision, rev + 1, 'revisions continue');
  t.equal(await r.keepAlive(lease.id), true, 'the lease survived');
  await r.revokeLease(lease.id);
  t.equal(await r.get('c'), undefined, 'and still owns its key');
});

t.test('concurrent writes share fsyncs (group commit)', async (t) => {
  const s = await open(await tmpDir());
  t.teardown(() => s.close());
  const framesBefore = s.stats().frames;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: 500 }, (_, i) => s.put(`g/${i}`, 'x'.repeat(100))));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const frames = s.stats().frames - framesBefore;
  t.ok(frames <= 10, `500 concurrent puts took ${frames} fsync'd frame(s) in ${ms.toFixed(1)} ms`);
  t.equal((await s.list('g/')).length, 500);
});

t.test('compaction keeps data, revisions and leases, and bounds the journal', async (t) => {
  const dir = await tmpDir();
  const s = await open(dir, { compactAfterBytes: 4096 });
  const lease = await s.grantLease(60_000);
  await s.put('leased', 'x', { lease: lease.id });
  for (let round = 0; round < 30; round++) {
    await Promise.all(Array.from({ length: 10 }, (_, i) => s.put(`c/${i}`, `round-${round}-${'p'.repeat(100)}`)));
  }
  await s.delete('c/9');
  const stats = s.stats();
  t.ok(stats.compactions >= 1, `compacted ${stats.compactions} time(s)`);
  t.ok(stats.journalBytes < 3 * 4096, `journal stays small (${stats.journalBytes} bytes)`);
  const files = (await fsp.readdir(path.join(dir, 'store'))).sort();
  t.same(files, ['LOCK', 'snapshot.bin', `journal.${stats.generation}.log`].sort(), 'one snapshot, one current journal, nothing left over');
  const before = await s.list('');
  const rev = await s.revision();
  t.equal(rev, 1 + 300 + 1, 'revision counts every write');
  await s.close();

  const r = await open(dir, { compactAfterBytes: 4096 });
  t.teardown(() => r.close());
  t.same(await r.list(''), before, 'entries and their revisions survive snapshot + journal replay');
  t.equal(await r.revision(), rev);
  t.equal(await r.keepAlive(lease.id), true, 'the lease survived compaction');
  t.equal((await r.get('leased'))?.lease, lease.id);
  await r.revokeLease(lease.id);
  t.equal(await r.get('leased'), undefined);
});

t.test('a damaged snapshot refuses to open', async (t) => {
  const dir = await tmpDir();
  const s = await open(dir, { compactAfterBytes: 1024 });
  for (let i = 0; i < 50; i++) await s.put(`k/${i % 5}`, 'y'.repeat(64));
  t.ok(s.stats().compactions > 0);
  await s.close();
  const snap = path.join(dir, 'store', 'snapshot.bin');
  const buf = await fsp.readFile(snap);
  await fsp.writeFile(snap, buf.subarray(0, buf.length - 3));
  await t.rejects(open(dir), { code: ErrorCodes.STORE_CORRUPT, message: /snapshot\.bin/ });
});

t.test('leftovers of an interrupted compaction are removed; a missing snapshot is refused', async (t) => {
  const dir = await tmpDir();
  const storeDir = path.join(dir, 'store');
  const s = await open(dir, { compactAfterBytes: 1024 });
  for (let i = 0; i < 50; i++) await s.put(`k/${i % 5}`, 'z'.repeat(64));
  const { generation } = s.stats();
  t.ok(generation > 0);
  await s.put('last', 'write');
  const before = await s.list('');
  await s.close();

  // A crash after the new (header-only) journal and the temp snapshot were written, before the rename.
  const header = (await fsp.readFile(journalOf(dir, generation))).subarray(0, 25);
  await fsp.writeFile(journalOf(dir, generation + 1), header);
  await fsp.writeFile(path.join(storeDir, 'snapshot.bin.tmp'), 'partial');
  const r = await open(dir);
  t.same(await r.list(''), before, 'the current generation is used');
  await r.close();
  t.same((await fsp.readdir(storeDir)).sort(), ['CLOSED', 'snapshot.bin', `journal.${generation}.log`].sort(), 'leftovers removed');

  // Without its snapshot, a later generation's journal must not be thrown away.
  await fsp.rm(path.join(storeDir, 'snapshot.bin'));
  await t.rejects(open(dir), { code: ErrorCodes.STORE_CORRUPT, message: /snapshot\.bin is missing/ });
  t.ok((await fsp.readdir(storeDir)).includes(`journal.${generation}.log`), 'the journal is kept');
});

t.test('leases whose deadline passed while closed expire on open, as journaled deletes', async (t) => {
  const dir = await tmpDir();
  const s = await open(dir);
  const lease = await s.grantLease(150);
  const granted = Date.now();
  await s.put('eph', 'x', { lease: lease.id });
  await s.put('stays', 'x');
  const rev = await s.revision();
  await s.close();
  await waitFor(() => Date.now() > granted + 250, { timeoutMs: 5000, what: 'the lease deadline to pass' });

  const r = await open(dir);
  t.equal(await r.get('eph'), undefined, 'the leased key is gone');
  t.ok(await r.get('stays'));
  t.equal(await r.revision(), rev + 1, 'its deletion is a write');
  t.equal(await r.keepAlive(lease.id), false);
  await r.close();
  const again = await open(dir);
  t.equal(await again.revision(), rev + 1, 'and that write is durable');
  await again.close();
});

t.test('a watcher that falls behind gets one resync instead of the overflow', async (t) => {
  const s = await open(await tmpDir(), { watchQueueLimit: 10 });
  t.teardown(() => s.close());
  const rec = new Recorder<WatchEvent>();
  const w = s.watch('o/', rec.push);
  t.teardown(() => w.close());
  await rec.until((ev) => ev.type === 'resync', 5000, 'the first resync');
  const written = await Promise.all(Array.from({ length: 50 }, (_, i) => s.put(`o/${i}`, 'x'))); // one batch
  const last = Math.max(...written.map((e) => e.revision));
  const resync = await rec.until((ev) => ev.type === 'resync' && ev.revision === last, 5000, 'a resync at the last revision');
  t.equal(resync.type === 'resync' && resync.entries.length, 50, 'holding everything');
  t.ok(rec.items.filter((ev) => ev.type === 'put').length <= 10, 'instead of more events than the queue holds');
  await s.put('o/after', 'x');
  await rec.until((ev) => ev.type === 'put' && ev.key === 'o/after', 5000, 'events continue after the resync');
});

t.test('openStore', async (t) => {
  const dir = await tmpDir();
  const s = await openStore('embedded', dir);
  t.equal(s.kind, 'embedded');
  await s.put('x', 'y');
  await s.close();
  t.ok((await fsp.stat(path.join(dir, 'store'))).isDirectory(), 'embedded lives in <data>/store');
  await t.rejects(openStore('etcd://somewhere', dir), {
    code: ErrorCodes.STORE_UNAVAILABLE,
    message: /unknown store "etcd:\/\/somewhere".*embedded/,
  });
  await t.rejects(openStore('mongodb://u:hunter2@h/db', dir), { message: /\*\*\*/ });
  await openStore('mongodb://u:hunter2@h/db', dir).catch((e: Error) => t.notMatch(e.message, 'hunter2', 'no password in the message'));
});

for (const durability of ['fsync', 'written'] as const)
  t.test(`crash recovery: every acknowledged put survives kill -9 (durability: ${durability})`, async (t) => {
    const dir = path.join(await tmpDir(), 'store');
    const fixture = path.join(__dirname, 'fixtures', 'crash-writer.ts');
    const acked: string[] = [];
    for (const round of ['r1', 'r2']) {
      const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir, round, durability], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      t.teardown(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      const rl = readline.createInterface({ input: child.stdout! });
      // Lines still in the pipe when the child dies were acknowledged too: read to the end.
      const drained = new Promise<void>((r) => rl.once('close', () => r()));
      const roundAcks: string[] = [];
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          rl.on('line', (line) => {
            if (line === 'ready') return;
            roundAcks.push(line);
            if (roundAcks.length === 400) {
              child.kill('SIGKILL');
              resolve();
            }
          });
          child.once('exit', (code) => {
            if (roundAcks.length < 400) reject(new Error(`writer exited (${code}) early: ${stderr}`));
          });
        }),
        60_000,
        `400 acknowledged puts in ${round}`,
      );
      await withTimeout(Promise.all([exited, drained]), 10_000, 'the writer to exit');
      t.equal(child.signalCode, 'SIGKILL', `${round}: writer killed mid-stream`);
      acked.push(...roundAcks);

      const { logger, lines } = capture();
      const s = await EmbeddedStore.open(dir, { logger });
      t.same(
        lines.filter((l) => l.level >= ERROR),
        [],
        `${round}: recovery after kill -9 in this boot reports no damage (at most a torn write)`,
      );
      const missing: string[] = [];
      for (const key of acked) {
        const e = await s.get(key);
        if (e?.value.toString() !== `value-${Number(key.split('/')[1])}`) missing.push(key);
      }
      t.same(missing, [], `${round}: all ${acked.length} acknowledged keys are present with their values`);
      const all = await s.list('');
      t.equal(await s.revision(), all.length, `${round}: revision matches the number of writes recovered (${all.length})`);
      await s.close();
    }
  });

t.test("durability 'written': acknowledged before its fsync, one fsync still follows, reads and watchers agree", async (t) => {
  const dir = path.join(await tmpDir(), 'store');
  const s = await EmbeddedStore.open(dir);
  t.teardown(() => s.close());
  const seen: string[] = [];
  s.watch('ip/', (ev) => {
    if (ev.type === 'put') seen.push(ev.key);
  });
  const writes = await Promise.all(Array.from({ length: 20 }, (_, i) => s.cas(`ip/${i}`, 0, 'x', { durability: 'written' })));
  t.ok(writes.every(Boolean), 'all 20 claims acknowledged');
  t.equal((await s.list('ip/')).length, 20, 'readable once acknowledged');
  t.ok(await s.delete('ip/0', writes[0]!.revision, { durability: 'written' }));
  await s.put('strict', 'y'); // a default write after them: its fsync covers everything before
  await s.close();
  const again = await EmbeddedStore.open(dir);
  t.equal((await again.list('ip/')).length, 19, 'all survived a close and reopen');
  await again.close();
  t.equal(seen.length, 20, 'watchers saw each put');
});
