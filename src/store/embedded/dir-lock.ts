/** The data-directory lock: one process at a time may have a store directory open. */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes } from '../../model/errors.js';
import { StoreError } from '../errors.js';
import { LOCK_FILE } from './files.js';

/** Directories open in this process (a pid check cannot tell two opens in one process apart). */
const openDirs = new Set<string>();

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take `<dir>/LOCK`. A lock left by a process that no longer runs (a crash, kill -9) is taken over;
 * one held by a live process is refused, because two writers would interleave journal frames.
 */
export async function acquireLock(dir: string): Promise<() => Promise<void>> {
  if (openDirs.has(dir)) throw new StoreError(ErrorCodes.STORE_UNAVAILABLE, `store directory ${dir} is already open in this process`);
  const lockPath = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fsp.writeFile(lockPath, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      openDirs.add(dir);
      return async () => {
        openDirs.delete(dir);
        await fsp.rm(lockPath, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt(await fsp.readFile(lockPath, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new StoreError(
          ErrorCodes.STORE_UNAVAILABLE,
          `store directory ${dir} is in use by process ${pid} (${lockPath}); if that process is not Portico, remove the file`,
        );
      }
      await fsp.rm(lockPath, { force: true });
    }
  }
  throw new StoreError(ErrorCodes.STORE_UNAVAILABLE, `could not take the lock ${lockPath}`);
}
