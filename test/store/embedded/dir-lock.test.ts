/**
 * The data-directory LOCK (src/store/embedded/dir-lock.ts), with real processes: a live Portico process
 * on the directory is refused; anything else a LOCK can point at (a dead pid, a `sleep`, a reused pid,
 * a Portico on another directory) is taken over with a warning; racing openers get one winner.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { ErrorCodes } from '../../../src/model/errors.js';
import { EmbeddedStore } from '../../../src/store/embedded.js';
import { acquireDirLock, formatLock, parseLock } from '../../../src/store/embedded/dir-lock.js';
import { withTimeout } from '../../helpers/wait.js';
import { WARN, bootId, capture, deadPid, killAndWait, outcome, sleeper, startHolder, tmpDir } from './helpers.js';

/** Field 22 of /proc/<pid>/stat. */
async function startTicks(pid: number | 'self'): Promise<string> {
  const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

t.test('LOCK names the holder (pid, start time, boot, directory), is 0600, and goes on a clean close', async (t) => {
  const dir = path.join(await tmpDir(t), 'store');
  const s = await EmbeddedStore.open(dir);
  const lockFile = path.join(dir, 'LOCK');
  const text = await fsp.readFile(lockFile, 'utf8');
  t.equal(text.split('\n')[0], String(process.pid), 'the pid comes first, alone on its line');
  t.same(parseLock(text), { pid: process.pid, startTicks: await startTicks('self'), bootId: await bootId(), dir });
  t.equal((await fsp.stat(lockFile)).mode & 0o777, 0o600);
  t.same(
    (await fsp.readdir(dir)).filter((n) => n.startsWith('LOCK')),
    ['LOCK'],
    'no temp file is left beside it',
  );
  await s.close();
  t.notOk((await fsp.readdir(dir)).includes('LOCK'), 'removed by close');
  t.same(
    JSON.parse(await fsp.readFile(path.join(dir, 'CLOSED'), 'utf8')),
    { generation: 0, journalBytes: 25, revision: 0 },
    'and the clean close is recorded',
  );
});

t.test('a live Portico process on this directory is refused, saying so; once it is gone the LOCK is taken over', async (t) => {
  const dir = path.join(await tmpDir(t), 'store');
  const holder = startHolder(t, dir);
  t.equal(await outcome(holder), 'won');
  const err = await EmbeddedStore.open(dir).then(
    () => undefined,
    (e: unknown) => e as { code: string; message: string },
  );
  t.equal(err?.code, ErrorCodes.STORE_UNAVAILABLE);
  t.match(err?.message, `in use by Portico process ${holder.pid}, which has ${path.join(dir, 'LOCK')} open`);

  await killAndWait(holder);
  const { logger, lines } = capture();
  const s = await EmbeddedStore.open(dir, { logger });
  const warn = lines.find((l) => /stale store lock/.test(l.msg));
  t.equal(warn?.level, WARN, 'taking over is a warning');
  t.match(warn?.msg, `process ${holder.pid} that held it is no longer running`);
  await s.close();
});

t.test('a LOCK naming a live process that is not Portico (a sleep) is taken over with a warning', async (t) => {
  const dir = path.join(await tmpDir(t), 'store');
  await fsp.mkdir(dir, { recursive: true });
  const pid = await sleeper(t);

  // As an older Portico wrote it (pid only) or as a person might.
  await fsp.writeFile(path.join(dir, 'LOCK'), `${pid}\n`);
  let cap = capture();
  let s = await EmbeddedStore.open(dir, { logger: cap.logger });
  let warn = cap.lines.find((l) => /stale store lock/.test(l.msg));
  t.equal(warn?.level, WARN);
  t.equal(warn?.pid, pid);
  t.match(warn?.msg, `process ${pid} is running but is not a Portico store on this directory`);
  t.equal(parseLock(await fsp.readFile(path.join(dir, 'LOCK'), 'utf8'))?.pid, process.pid, 'the LOCK is ours now');
  await s.close();

  // As a crashed Portico wrote it, its pid since reused by the sleep: the start time tells them apart.
  await fsp.writeFile(path.join(dir, 'LOCK'), formatLock({ pid, startTicks: '1', bootId: await bootId(), dir }));
  cap = capture();
  s = await EmbeddedStore.open(dir, { logger: cap.logger });
  warn = cap.lines.find((l) => /stale store lock/.test(l.msg));
  t.match(warn?.msg, `process ${pid} is running but is not the one that wrote it (its pid was reused)`);
  await s.close();
});

t.test('a LOCK copied from another directory a live Portico holds is taken over: that process has nothing here open', async (t) => {
  const base = await tmpDir(t);
  const held = path.join(base, 'a');
  const copy = path.join(base, 'b');
  const holder = startHolder(t, held);
  t.equal(await outcome(holder), 'won');
  await fsp.mkdir(copy, { recursive: true });
  await fsp.copyFile(path.join(held, 'LOCK'), path.join(copy, 'LOCK'));
  const { logger, lines } = capture();
  const s = await EmbeddedStore.open(copy, { logger });
  t.match(lines.find((l) => /stale store lock/.test(l.msg))?.msg, `Portico process ${holder.pid} wrote it for ${held}, not this directory`);
  await s.close();
  await t.rejects(EmbeddedStore.open(held), { code: ErrorCodes.STORE_UNAVAILABLE }, 'the directory it does hold stays refused');
});

t.test('without procfs a live pid cannot be checked: a pid-only LOCK is refused, saying why', async (t) => {
  const dir = path.join(await tmpDir(t), 'store');
  await fsp.mkdir(dir, { recursive: true });
  const pid = await sleeper(t);
  await fsp.writeFile(path.join(dir, 'LOCK'), `${pid}\n`);
  const noProc = path.join(dir, 'no-proc');
  await t.rejects(acquireDirLock(dir, { procDir: noProc }), {
    code: ErrorCodes.STORE_UNAVAILABLE,
    message: new RegExp(`locked by process ${pid} .*cannot be checked to be a Portico store on this directory`),
  });
  // A dead pid needs no procfs to be judged.
  await fsp.writeFile(path.join(dir, 'LOCK'), `${await deadPid()}\n`);
  const lock = await acquireDirLock(dir, { procDir: noProc });
  t.equal(lock.previous.lock, 'stale');
  t.equal(lock.previous.lock === 'stale' && lock.previous.sameBoot, undefined, 'a pid-only LOCK does not say in which boot it ran');
  await lock.release(true);
});

t.test('a LOCK that is not one (empty, no pid) is taken over', async (t) => {
  const dir = path.join(await tmpDir(t), 'store');
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'LOCK'), '');
  const lock = await acquireDirLock(dir);
  t.match(lock.previous.lock === 'stale' && lock.previous.reason, /holds no pid/);
  await lock.release(true);
  t.notOk((await fsp.readdir(dir)).includes('LOCK'));
});

t.test('a takeover claim left by a process that died mid-takeover does not block the next one', async (t) => {
  const dir = path.join(await tmpDir(t), 'store');
  await fsp.mkdir(dir, { recursive: true });
  const lockFile = path.join(dir, 'LOCK');
  await fsp.writeFile(lockFile, formatLock({ pid: await deadPid(), startTicks: '1', bootId: await bootId(), dir }));
  const claim = path.join(dir, `LOCK.takeover.${(await fsp.stat(lockFile)).ino}`);
  await fsp.writeFile(claim, `${await deadPid()}\n`);
  const lock = await acquireDirLock(dir);
  t.equal(lock.previous.lock, 'stale', 'the stale LOCK is taken over');
  t.equal(lock.previous.lock === 'stale' && lock.previous.sameBoot, true, 'and it says it ran in this boot');
  t.same((await fsp.readdir(dir)).sort(), ['LOCK'], 'the dead claim is gone');
  await lock.release(true);
});

t.test('processes racing to open one directory over a stale LOCK: exactly one wins', async (t) => {
  const dir = path.join(await tmpDir(t), 'store');
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'LOCK'), formatLock({ pid: await deadPid(), startTicks: '1', bootId: await bootId(), dir }));
  const holders = Array.from({ length: 4 }, () => startHolder(t, dir, 'race'));
  await Promise.all(holders.map((h) => h.lines.until((l) => l === 'loaded', 30_000, `holder ${h.pid} to load`)));
  for (const h of holders) h.send('go');
  const results = await Promise.all(holders.map(outcome));
  t.equal(results.filter((r) => r === 'won').length, 1, `one winner: ${JSON.stringify(results)}`);
  for (const r of results.filter((r) => r !== 'won')) t.match(r, /in use by Portico process \d+/, 'the others name it');
  const winner = holders[results.indexOf('won')]!;
  t.equal(parseLock(await fsp.readFile(path.join(dir, 'LOCK'), 'utf8'))?.pid, winner.pid, 'and the LOCK names the winner');
  winner.send('close');
  await withTimeout(winner.exited, 30_000, 'the winner to close');
  t.equal(winner.child.exitCode, 0);
  t.same(
    (await fsp.readdir(dir)).filter((n) => n.startsWith('LOCK')),
    [],
    'after it closes, no LOCK and no temp files are left',
  );
});
