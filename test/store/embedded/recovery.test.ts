/**
 * Recovery of a damaged journal (src/store/embedded/recovery.ts), each case built byte by byte: what is
 * said (message, level, revisions), what is kept aside, what is truncated, and what is refused. The
 * previous holder's end is real where it can be: a clean close(), or a Portico process killed with
 * SIGKILL while it held the store.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { ErrorCodes } from '../../../src/model/errors.js';
import { StoreError } from '../../../src/store/errors.js';
import { EmbeddedStore } from '../../../src/store/embedded.js';
import { formatLock } from '../../../src/store/embedded/dir-lock.js';
import { FrameBuilder } from '../../../src/store/embedded/frames.js';
import { ERROR, WARN, capture, deadPid, frameOffsets, killAndWait, outcome, startHolder, tmpDir, type LogLine } from './helpers.js';

const value = (i: number) => `value-${i}-${'x'.repeat(100)}`;

/** A store in `<tmp>/store` holding k1..kN (one frame each), closed cleanly. */
async function closedWith(t: Test, n: number): Promise<{ dir: string; file: string }> {
  const dir = path.join(await tmpDir(t), 'store');
  const s = await EmbeddedStore.open(dir);
  for (let i = 1; i <= n; i++) await s.put(`k${i}`, value(i));
  await s.close();
  return { dir, file: path.join(dir, 'journal.0.log') };
}

/** The frame a put of k<rev> at `rev` is written as. */
function putFrame(rev: number): Buffer {
  const fb = new FrameBuilder(256);
  fb.put(rev, `k${rev}`, undefined, Buffer.from(value(rev)));
  return Buffer.from(fb.finish());
}

/** A Portico process opens `dir` and is killed with SIGKILL: its LOCK stays, its open removed CLOSED. */
async function crashedHolder(t: Test, dir: string): Promise<number> {
  const h = startHolder(t, dir);
  t.equal(await outcome(h), 'won', 'a holder opened the store');
  await killAndWait(h);
  t.ok((await fsp.readdir(dir)).includes('LOCK'), 'and left its LOCK when killed');
  return h.pid;
}

async function keptFiles(dir: string): Promise<string[]> {
  return (await fsp.readdir(dir)).filter((n) => n.startsWith('journal.0.log.damaged-')).map((n) => path.join(dir, n));
}

/** The one recovery line (a torn write or damage) among `lines`. */
function recoveryLine(t: Test, lines: LogLine[]): LogLine {
  const found = lines.filter((l) => /torn write|journal damaged/.test(l.msg));
  t.equal(found.length, 1, 'recovery says one thing about the journal');
  return found[0]!;
}

/** The kept copy is the journal as found, 0600, named in the log; the journal is truncated to `offset`. */
async function checkKeptAndTruncated(t: Test, dir: string, file: string, found: Buffer, offset: number, line: LogLine): Promise<void> {
  const kept = await keptFiles(dir);
  t.equal(kept.length, 1, 'one damaged copy kept');
  t.equal(line.keptAs, kept[0], 'the log names it');
  t.same(await fsp.readFile(kept[0]!), found, 'it holds the journal as found');
  t.equal((await fsp.stat(kept[0]!)).mode & 0o777, 0o600, 'readable by the owner only');
  t.equal((await fsp.stat(file)).size, offset, 'the journal is truncated to its intact frames');
  t.equal(line.offset, offset);
}

t.test("an fsync'd last frame cut by 37 bytes after a clean close is data loss: error, revision 5, file kept", async (t) => {
  const { dir, file } = await closedWith(t, 5);
  t.ok((await fsp.readdir(dir)).includes('CLOSED'), 'the clean close was recorded');
  const buf = await fsp.readFile(file);
  const last = frameOffsets(buf).at(-1)!;
  const found = buf.subarray(0, buf.length - 37);
  await fsp.writeFile(file, found);

  const { logger, lines } = capture();
  const s = await EmbeddedStore.open(dir, { logger });
  t.teardown(() => s.close());
  const line = recoveryLine(t, lines);
  t.equal(line.level, ERROR, 'logged at error level');
  t.match(line.msg, new RegExp(`^journal damaged: frame at offset ${last} \\(revision 5\\) lost: data loss: the store was closed cleanly`));
  t.equal(line.dataLoss, 'certain');
  t.same(line.revisions, { from: 5, through: 5, exact: true }, 'exactly revision 5, from the record of the clean close');
  t.notMatch(line.msg, /torn write|never acknowledged/, 'it does not claim a crash it cannot know of');
  await checkKeptAndTruncated(t, dir, file, found, last, line);
  t.same(
    (await s.list('')).map((e) => e.key),
    ['k1', 'k2', 'k3', 'k4'],
  );
  t.equal(await s.revision(), 4);
  t.notOk((await fsp.readdir(dir)).includes('CLOSED'), 'the record of the clean close is gone once the store is open');
});

t.test('a genuine torn write: a Portico process killed in this boot mid-frame; a warning, file kept', async (t) => {
  const { dir, file } = await closedWith(t, 4);
  const pid = await crashedHolder(t, dir);
  // What the killed process was writing when it died: the first bytes of the frame of revision 5.
  const intact = await fsp.readFile(file);
  const frame = putFrame(5);
  const found = Buffer.concat([intact, frame.subarray(0, frame.length - 10)]);
  await fsp.writeFile(file, found);

  const { logger, lines } = capture();
  let s = await EmbeddedStore.open(dir, { logger });
  const line = recoveryLine(t, lines);
  t.equal(line.level, WARN, 'a warning, not an error');
  t.match(
    line.msg,
    new RegExp(
      `^journal ends in a torn write of an unacknowledged commit at offset ${intact.length} \\(revisions from 5\\): process ${pid} stopped without closing the store, in this boot, while writing it`,
    ),
  );
  t.equal(line.dataLoss, undefined, 'no data loss is claimed');
  t.same(
    lines.filter((l) => l.level >= ERROR),
    [],
    'nothing at error level',
  );
  await checkKeptAndTruncated(t, dir, file, found, intact.length, line);
  t.equal(await s.revision(), 4);
  t.equal((await s.put('k5', 'again')).revision, 5, 'writing continues from the last intact revision');
  await s.close();

  // Cut inside the header: the first bytes of a frame's magic and length.
  await crashedHolder(t, dir);
  await fsp.appendFile(file, Buffer.from('PTJ1\x05'));
  const cap = capture();
  s = await EmbeddedStore.open(dir, { logger: cap.logger });
  t.equal(recoveryLine(t, cap.lines).level, WARN, 'a partial header is a torn write too');
  t.same(
    (await s.list('')).map((e) => e.key),
    ['k1', 'k2', 'k3', 'k4', 'k5'],
  );
  await s.close();
});

t.test('a last frame whose bytes are all there but fail their CRC is damage even after a crash in this boot', async (t) => {
  const { dir, file } = await closedWith(t, 4);
  await crashedHolder(t, dir);
  const intact = await fsp.readFile(file);
  const frame = putFrame(5);
  frame[frame.length - 3] = frame[frame.length - 3]! ^ 0x20; // one flipped bit in the value
  const found = Buffer.concat([intact, frame]);
  await fsp.writeFile(file, found);

  const { logger, lines } = capture();
  const s = await EmbeddedStore.open(dir, { logger });
  t.teardown(() => s.close());
  const line = recoveryLine(t, lines);
  t.equal(line.level, ERROR);
  t.match(
    line.msg,
    new RegExp(
      `^journal damaged: frame at offset ${intact.length} \\(revision 5 at least\\) lost: data loss: its bytes were written whole but fail their checksum`,
    ),
  );
  t.equal(line.dataLoss, 'certain');
  t.same(line.revisions, { from: 5, through: 5, exact: false }, 'the readable record names revision 5; the CRC cannot vouch for more');
  await checkKeptAndTruncated(t, dir, file, found, intact.length, line);
});

t.test('a damaged last frame that cannot be told from a torn write is possible data loss, saying why', async (t) => {
  const cases: { name: string; lock: (dir: string) => Promise<string | null>; why: RegExp }[] = [
    {
      name: 'the machine restarted since',
      lock: async (dir) => formatLock({ pid: await deadPid(), startTicks: '1', bootId: '00000000-0000-0000-0000-000000000000', dir }),
      why: /the machine has restarted since process \d+ had the store open/,
    },
    {
      name: 'a pid-only LOCK',
      lock: async () => `${await deadPid()}\n`,
      why: /the lock left by process \d+ does not say in which boot it ran/,
    },
    { name: 'no LOCK and no record of a clean close', lock: async () => null, why: /nothing records how the store was last closed/ },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const { dir, file } = await closedWith(t, 4);
      await fsp.rm(path.join(dir, 'CLOSED'));
      const lock = await c.lock(dir);
      if (lock !== null) await fsp.writeFile(path.join(dir, 'LOCK'), lock);
      const intact = await fsp.readFile(file);
      const frame = putFrame(5);
      const found = Buffer.concat([intact, frame.subarray(0, frame.length - 37)]);
      await fsp.writeFile(file, found);

      const { logger, lines } = capture();
      const s = await EmbeddedStore.open(dir, { logger });
      t.teardown(() => s.close());
      const line = recoveryLine(t, lines);
      t.equal(line.level, ERROR);
      t.match(line.msg, new RegExp(`^journal damaged: frame at offset ${intact.length} \\(revisions from 5\\) lost: possible data loss`));
      t.match(line.msg, /either a commit torn when the store stopped \(never acknowledged\) or damage to an acknowledged frame/);
      t.match(line.msg, c.why);
      t.equal(line.dataLoss, 'possible');
      await checkKeptAndTruncated(t, dir, file, found, intact.length, line);
      t.equal(await s.revision(), 4);
    });
  }
});

t.test('a flipped byte in a middle frame refuses to open: error naming the frame, its revision and what follows', async (t) => {
  const { dir, file } = await closedWith(t, 5);
  const buf = await fsp.readFile(file);
  const offsets = frameOffsets(buf);
  const victim = offsets[2]!; // the frame of revision 2 (offsets[0] is the journal header)
  buf[victim + 12 + 20] = buf[victim + 12 + 20]! ^ 0x01;
  await fsp.writeFile(file, buf);

  const { logger, lines } = capture();
  const err = await EmbeddedStore.open(dir, { logger }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, StoreError);
  t.equal((err as StoreError).code, ErrorCodes.STORE_CORRUPT);
  const msg = (err as StoreError).message;
  t.match(msg, `${file}: journal damaged: frame at offset ${victim} (revision 2) lost`, 'names the file, the offset and the revision');
  t.match(msg, `the intact frames after it (from byte ${offsets[3]}: revisions 3–5) cannot be replayed without it`);
  t.match(msg, `truncate it to ${victim} bytes to accept losing revisions 2–5`);
  const line = recoveryLine(t, lines);
  t.equal(line.level, ERROR);
  t.same(line.revisions, { from: 2, through: 2, exact: true });
  t.same(await fsp.readFile(file), buf, 'the journal is left untouched for the operator');
  t.same(await keptFiles(dir), [], 'nothing truncated, so nothing to keep aside');
  t.same((await fsp.readdir(dir)).sort(), ['CLOSED', 'journal.0.log'], 'no LOCK left by the refused open; the clean-close record stays');

  // The operator accepts the loss: the journal, now intact, is shorter than the clean close recorded.
  await fsp.truncate(file, victim);
  const cap = capture();
  const s = await EmbeddedStore.open(dir, { logger: cap.logger });
  t.teardown(() => s.close());
  const after = recoveryLine(t, cap.lines);
  t.equal(after.level, ERROR, 'the loss is still said, at error level');
  t.match(
    after.msg,
    `journal damaged: it ends at byte ${victim}, but the store was closed cleanly with ${buf.length} bytes through revision 5`,
  );
  t.same(after.revisions, { from: 2, through: 5, exact: true });
  t.same(
    (await s.list('')).map((e) => e.key),
    ['k1'],
  );
});

t.test('a clean close, reopened without damage, says nothing about the journal', async (t) => {
  const { dir } = await closedWith(t, 3);
  const { logger, lines } = capture();
  const s = await EmbeddedStore.open(dir, { logger });
  t.equal(await s.revision(), 3);
  await s.close();
  t.same(
    lines.filter((l) => l.level >= WARN),
    [],
    'no warning, no error',
  );
});
