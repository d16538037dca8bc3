/**
 * The data-directory lock: one process at a time may have a store directory open, because two writers
 * would interleave journal frames. (Not src/store/lock.ts, which is a lock kept on a Store.)
 *
 * `<dir>/LOCK` says who holds the directory, in two lines:
 *
 *   4242
 *   {"program":"portico-store","startTicks":"123456","bootId":"e4b4…","dir":"/var/lib/portico/store"}
 *
 * The pid comes first, alone on its line, so `kill -0 $(head -1 LOCK)` and older Portico versions
 * (which read only the pid) still understand it. The second line is what it takes to check that a live
 * pid is the Portico store that wrote the file: the process start time (field 22 of /proc/<pid>/stat, in
 * clock ticks since boot), the boot it ran in (/proc/sys/kernel/random/boot_id) and the directory.
 *
 * The holder keeps LOCK open for as long as it has the store open. So the test of "is pid N a Portico
 * store on this directory" is exact where /proc/<N>/fd can be read: N has this very LOCK file open (or,
 * for a holder of an older version that did not keep it open, a file under the directory). A live pid that does not (an
 * unrelated program that reused the pid of a crashed Portico, or a pid written there by hand) is
 * taken over with a warning. Where /proc/<N>/fd cannot be read, the start time and boot id decide; a
 * pid-only LOCK held by a live process that cannot be inspected is refused, saying so.
 *
 * Race-free: LOCK is made by link(2) from a private temp file that already holds the full text, so it
 * appears atomically, complete and already open by its holder; link fails with EEXIST when another
 * process got there first (an exclusive create, as O_EXCL). A stale LOCK is never removed: it is
 * replaced, by rename(2) of the taker's own complete LOCK over it, and only by the one process that
 * created the claim `LOCK.takeover.<inode of the stale LOCK>` (O_EXCL) and then found LOCK still to be
 * that file. Openers racing over one stale LOCK thus get exactly one winner; the others wait for it
 * and find its LOCK live. The one case left open: a taker that dies holding its claim, whose claim two
 * later openers then clear at the same moment.
 *
 * What the lock found is handed to recovery: a LOCK left by a holder that did not close the store is
 * evidence that it stopped mid-run, and in which boot (see recovery.ts).
 */
import { randomBytes } from 'node:crypto';
import fsp, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes } from '../../model/errors.js';
import type { Logger } from '../../telemetry/log.js';
import { StoreError } from '../errors.js';
import { LOCK_FILE } from './files.js';

const PROGRAM = 'portico-store';

/** What a LOCK file says about the process that wrote it. */
export interface LockRecord {
  pid: number;
  /** Start time of the process in clock ticks since boot; absent in a pid-only LOCK. */
  startTicks?: string;
  bootId?: string;
  dir?: string;
}

/**
 * How the previous holder left the directory, as far as the LOCK tells: `none` when there was no LOCK
 * (the last holder closed the store, or there was none); `stale` when it was left by a holder that
 * stopped without closing it.
 */
export type PreviousHolder =
  | { lock: 'none' }
  | {
      lock: 'stale';
      pid: number;
      /** Whether that holder ran in this boot of the machine; undefined when the LOCK does not say. */
      sameBoot: boolean | undefined;
      /** Why the LOCK was taken over, for the log. */
      reason: string;
    };

export interface DirLock {
  readonly path: string;
  readonly previous: PreviousHolder;
  /**
   * Give the directory up. `clean`: the store was closed with everything it wrote acknowledged, and
   * LOCK is removed. Otherwise LOCK is left in place (closed, so anyone may take it over) as the
   * record that this holder stopped without closing the store.
   */
  release(clean: boolean): Promise<void>;
}

export interface DirLockOptions {
  logger?: Logger;
  /** Where procfs is mounted. Default /proc; tests point it elsewhere to take the no-procfs path. */
  procDir?: string;
}

/** Directories open in this process (a pid check cannot tell two opens in one process apart). */
const openDirs = new Set<string>();

/** Take `<dir>/LOCK` (dir is absolute), or refuse with STORE_UNAVAILABLE naming the holder. */
export async function acquireDirLock(dir: string, opts: DirLockOptions = {}): Promise<DirLock> {
  if (openDirs.has(dir)) throw new StoreError(ErrorCodes.STORE_UNAVAILABLE, `store directory ${dir} is already open in this process`);
  openDirs.add(dir); // before the first await: a concurrent open in this process is refused above
  try {
    return await acquire(dir, opts);
  } catch (err) {
    openDirs.delete(dir);
    throw err;
  }
}

async function acquire(dir: string, opts: DirLockOptions): Promise<DirLock> {
  const proc = opts.procDir ?? '/proc';
  const lockPath = path.join(dir, LOCK_FILE);
  const bootId = await readBootId(proc);
  const text = formatLock({ pid: process.pid, startTicks: await readStartTicks(proc, process.pid), bootId, dir });
  const deadline = Date.now() + TAKEOVER_WAIT_MS;
  for (;;) {
    if (Date.now() > deadline) {
      throw new StoreError(ErrorCodes.STORE_UNAVAILABLE, `could not take the lock ${lockPath}: other processes kept taking it over`);
    }
    const fh = await createExclusive(dir, lockPath, text);
    if (fh) return held(dir, lockPath, fh, { lock: 'none' });
    // LOCK exists. Read it through one descriptor, so the verdict is about the file whose inode we know.
    let seen: { text: string; dev: number; ino: number };
    try {
      const h = await fsp.open(lockPath, 'r');
      try {
        const st = await h.stat();
        seen = { text: await h.readFile('utf8'), dev: st.dev, ino: st.ino };
      } finally {
        await h.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile: try again
      throw err;
    }
    const rec = parseLock(seen.text);
    const verdict = await judge(rec, seen, dir, lockPath, proc, bootId);
    if (verdict.held) throw new StoreError(ErrorCodes.STORE_UNAVAILABLE, verdict.message);
    const taken = await takeOver(dir, lockPath, seen, text);
    if (taken === 'busy') {
      await new Promise((r) => setTimeout(r, 5)); // another opener's takeover: a few syscalls
      continue;
    }
    if (!taken) continue; // LOCK changed under us: judge the new one
    opts.logger?.warn({ lock: lockPath, pid: rec?.pid, reason: verdict.reason }, `taking over a stale store lock: ${verdict.reason}`);
    return held(dir, lockPath, taken, {
      lock: 'stale',
      pid: rec?.pid ?? 0,
      sameBoot: rec?.bootId && bootId ? rec.bootId === bootId : undefined,
      reason: verdict.reason,
    });
  }
}

/** How long an opener waits for another one's takeover of a stale LOCK (microseconds of work) to finish. */
const TAKEOVER_WAIT_MS = 2000;
/** A takeover claim older than this was left by a process that died during the takeover. */
const CLAIM_STALE_MS = 10_000;

async function held(dir: string, lockPath: string, fh: FileHandle, previous: PreviousHolder): Promise<DirLock> {
  let released = false;
  await removeDeadTemps(dir);
  return {
    path: lockPath,
    previous,
    release: async (clean) => {
      if (released) return;
      released = true;
      try {
        if (clean && (await sameFile(lockPath, fh))) await fsp.rm(lockPath, { force: true });
      } finally {
        openDirs.delete(dir);
        await fh.close();
      }
    },
  };
}

/**
 * Replace the stale LOCK `seen` with ours. Only the process that creates the claim
 * `LOCK.takeover.<inode of the stale LOCK>` may; it checks that LOCK is still that file, and renames
 * its own complete, open LOCK over it, so LOCK never goes missing. Returns our handle, null when LOCK
 * is no longer the file judged stale, or 'busy' when another process holds the claim.
 */
async function takeOver(
  dir: string,
  lockPath: string,
  seen: { dev: number; ino: number },
  text: string,
): Promise<FileHandle | null | 'busy'> {
  const claim = path.join(dir, `${LOCK_FILE}.takeover.${seen.ino}`);
  try {
    await fsp.writeFile(claim, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const st = await fsp.stat(claim).catch(() => null);
    const pid = Number.parseInt(await fsp.readFile(claim, 'utf8').catch(() => ''), 10);
    const dead = Number.isSafeInteger(pid) && pid > 0 ? pid !== process.pid && !processAlive(pid) : false;
    // Its taker died mid-takeover (a process does not die mid-way through a few syscalls twice in a row).
    if (st && (dead || Date.now() - st.mtimeMs > CLAIM_STALE_MS)) await fsp.rm(claim, { force: true });
    return 'busy';
  }
  try {
    const cur = await fsp.stat(lockPath).catch(() => null);
    if (!cur || cur.dev !== seen.dev || cur.ino !== seen.ino) return null;
    const tmp = path.join(dir, `${LOCK_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`);
    const fh = await fsp.open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fsp.rename(tmp, lockPath);
      return fh;
    } catch (err) {
      await fh.close();
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  } finally {
    await fsp.rm(claim, { force: true });
  }
}

/** The LOCK text for `rec`: the pid on its own line, then the JSON that lets the pid be checked. */
export function formatLock(rec: LockRecord): string {
  const extra: Record<string, string> = { program: PROGRAM };
  if (rec.startTicks !== undefined) extra.startTicks = rec.startTicks;
  if (rec.bootId !== undefined) extra.bootId = rec.bootId;
  if (rec.dir !== undefined) extra.dir = rec.dir;
  return `${rec.pid}\n${JSON.stringify(extra)}\n`;
}

/** Read a LOCK's text: undefined when it does not start with a pid (empty, or not a LOCK). */
export function parseLock(text: string): LockRecord | undefined {
  const [first = '', second] = text.split('\n');
  if (!/^\s*\d+\s*$/.test(first)) return undefined;
  const pid = Number(first);
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const rec: LockRecord = { pid };
  if (second) {
    try {
      const v = JSON.parse(second) as Record<string, unknown>;
      if (v && v.program === PROGRAM) {
        if (typeof v.startTicks === 'string') rec.startTicks = v.startTicks;
        if (typeof v.bootId === 'string') rec.bootId = v.bootId;
        if (typeof v.dir === 'string') rec.dir = v.dir;
      }
    } catch {
      // a pid-only LOCK with something else after it: judged on the pid
    }
  }
  return rec;
}

type Verdict = { held: true; message: string } | { held: false; reason: string };

async function judge(
  rec: LockRecord | undefined,
  seen: { dev: number; ino: number },
  dir: string,
  lockPath: string,
  proc: string,
  bootId: string | undefined,
): Promise<Verdict> {
  if (!rec) return { held: false, reason: `${lockPath} holds no pid` };
  const { pid } = rec;
  const alive = processAlive(pid);
  const startTicks = alive ? await readStartTicks(proc, pid) : undefined;
  /** Is the live `pid` the process that wrote the LOCK? undefined when either side does not say. */
  const sameProcess =
    rec.startTicks !== undefined && rec.bootId !== undefined && startTicks !== undefined && bootId !== undefined
      ? rec.startTicks === startTicks && rec.bootId === bootId
      : undefined;
  if (pid === process.pid) {
    if (sameProcess === false) return { held: false, reason: `process ${pid} that held it is gone (its pid is now this process's)` };
    // Not open in this process (checked first), so an earlier open here stopped without closing it.
    return { held: false, reason: `it was left by this process (${pid}), by an open that did not close the store` };
  }
  if (!alive) return { held: false, reason: `process ${pid} that held it is no longer running` };
  const holds = await holdsOpen(proc, pid, seen, dir);
  if (typeof holds === 'string') {
    return {
      held: true,
      message: `store directory ${dir} is in use by Portico process ${pid}, which has ${holds} open; stop that process first`,
    };
  }
  if (holds === false) {
    const who =
      sameProcess === true
        ? rec.dir !== undefined && !(await sameDirectory(rec.dir, dir))
          ? `Portico process ${pid} wrote it for ${rec.dir}, not this directory (copied with the data?), and has nothing here open`
          : `Portico process ${pid} wrote it but no longer has the store open`
        : sameProcess === false
          ? `process ${pid} is running but is not the one that wrote it (its pid was reused)`
          : `process ${pid} is running but is not a Portico store on this directory (it has neither the LOCK nor any file here open)`;
    return { held: false, reason: who };
  }
  // /proc/<pid>/fd could not be read (another user's process, or no procfs): judge by what LOCK recorded.
  if (sameProcess === false)
    return { held: false, reason: `process ${pid} is running but is not the one that wrote it (its pid was reused)` };
  if (sameProcess === true) {
    if (rec.dir !== undefined && !(await sameDirectory(rec.dir, dir))) {
      return { held: false, reason: `it was written by Portico process ${pid} for ${rec.dir}, not this directory (copied with the data?)` };
    }
    return {
      held: true,
      message: `store directory ${dir} is in use by Portico process ${pid} (the process that wrote ${lockPath} still runs); stop that process first`,
    };
  }
  return {
    held: true,
    message: `store directory ${dir} is locked by process ${pid} (${lockPath}), which is running; it cannot be checked to be a Portico store on this directory (${path.join(proc, String(pid), 'fd')} is not readable and the lock records no start time). If it is not, remove ${lockPath}`,
  };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Does `pid` have the LOCK file `seen` open, or any file under `dir`? The path it has open, false when
 * none, undefined when its descriptors cannot be read.
 */
async function holdsOpen(proc: string, pid: number, seen: { dev: number; ino: number }, dir: string): Promise<string | false | undefined> {
  const fdDir = path.join(proc, String(pid), 'fd');
  let fds: string[];
  try {
    fds = await fsp.readdir(fdDir);
  } catch {
    return undefined;
  }
  const under = dir.endsWith(path.sep) ? dir : dir + path.sep;
  for (const fd of fds) {
    const link = path.join(fdDir, fd);
    try {
      const st = await fsp.stat(link);
      if (st.dev === seen.dev && st.ino === seen.ino) return path.join(dir, LOCK_FILE);
      const target = await fsp.readlink(link);
      if (target.startsWith(under) && !target.endsWith(' (deleted)')) return target;
    } catch {
      // closed meanwhile, or not statable (an anonymous inode): not ours
    }
  }
  return false;
}

/** Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or undefined. */
async function readStartTicks(proc: string, pid: number): Promise<string | undefined> {
  try {
    const stat = await fsp.readFile(path.join(proc, String(pid), 'stat'), 'utf8');
    // Fields after the command name, which is in parentheses and may itself hold spaces or ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = rest[22 - 3];
    return ticks && /^\d+$/.test(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

async function readBootId(proc: string): Promise<string | undefined> {
  try {
    const id = (await fsp.readFile(path.join(proc, 'sys', 'kernel', 'random', 'boot_id'), 'utf8')).trim();
    return id || undefined;
  } catch {
    return undefined;
  }
}

async function sameDirectory(a: string, b: string): Promise<boolean> {
  if (path.resolve(a) === path.resolve(b)) return true;
  try {
    const [sa, sb] = await Promise.all([fsp.stat(a), fsp.stat(b)]);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/**
 * Create `lockPath` holding `text`, atomically: write a private temp file, then link it into place.
 * Returns the open handle (kept for as long as the lock is held), or null when LOCK already exists.
 */
async function createExclusive(dir: string, lockPath: string, text: string): Promise<FileHandle | null> {
  const tmp = path.join(dir, `${LOCK_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`);
  const fh = await fsp.open(tmp, 'wx', 0o600);
  let linked = false;
  try {
    await fh.writeFile(text);
    await fsp.link(tmp, lockPath);
    linked = true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') {
      await fh.close();
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    if (code !== 'EEXIST') {
      // A filesystem without hard links: fall back to an exclusive create, written in one call.
      await fh.close();
      await fsp.rm(tmp, { force: true });
      return createExclusiveDirect(lockPath, text);
    }
  }
  await fsp.rm(tmp, { force: true });
  if (linked) return fh;
  await fh.close();
  return null;
}

async function createExclusiveDirect(lockPath: string, text: string): Promise<FileHandle | null> {
  let fh: FileHandle;
  try {
    fh = await fsp.open(lockPath, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return null;
    throw err;
  }
  try {
    await fh.writeFile(text);
    return fh;
  } catch (err) {
    await fh.close();
    await fsp.rm(lockPath, { force: true });
    throw err;
  }
}

const TEMP_RE = new RegExp(`^${LOCK_FILE}\\.(\\d+)\\.[0-9a-f]{8}$`);
const CLAIM_RE = new RegExp(`^${LOCK_FILE}\\.takeover\\.\\d+$`);

/** Remove temp files and takeover claims left by processes that died before they could (they hold nothing). */
async function removeDeadTemps(dir: string): Promise<void> {
  for (const name of await fsp.readdir(dir).catch(() => [])) {
    const file = path.join(dir, name);
    let pid = NaN;
    if (TEMP_RE.test(name)) pid = Number(TEMP_RE.exec(name)![1]);
    else if (CLAIM_RE.test(name)) pid = Number.parseInt(await fsp.readFile(file, 'utf8').catch(() => ''), 10);
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid))
      await fsp.rm(file, { force: true }).catch(() => undefined);
  }
}

/** Is `file` still the file open as `fh`? */
async function sameFile(file: string, fh: FileHandle): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([fsp.stat(file), fh.stat()]);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}
