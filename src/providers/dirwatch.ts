/**
 * Watching a directory for the file providers (the config file, Marathon app files), the way editors and
 * orchestrators actually change files.
 *
 * - The *directory* is watched, not a file: editors that save atomically (write a temp file, rename it
 *   over) replace the inode, and a watch on the old one would go quiet. `..data` is how Kubernetes swaps
 *   a mounted ConfigMap (a symlink flip, with no event on the file's own name), so it always counts.
 * - Events are debounced: a save is often several events (truncate, write, chmod, rename); `onChange`
 *   runs once after them.
 * - A directory that does not exist yet, or whose watch breaks (it was deleted), is watched again every
 *   `rearmMs`; when the watch comes back, `onChange` runs once, since changes may have happened unseen.
 */
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from '../telemetry/log.js';

export interface DirWatchOptions {
  dir: string;
  /** Whether a changed name matters. Events that do not say which name changed always count. */
  matches: (name: string) => boolean;
  /** Called after changes, debounced. */
  onChange: () => void;
  /** Quiet time after the last event, ms. */
  debounceMs: number;
  /** Retry interval while the directory cannot be watched, ms. Default 1000. */
  rearmMs?: number;
  /** Where watch failures are reported (warn); silent without one. */
  logger?: Logger;
}

export class DirWatch {
  private watcher: FSWatcher | undefined;
  private rearmTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private stopped = true;

  constructor(private readonly opts: DirWatchOptions) {}

  start(): void {
    this.stopped = false;
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = undefined;
    clearTimeout(this.rearmTimer);
    this.rearmTimer = undefined;
    clearTimeout(this.debounceTimer);
    this.debounceTimer = undefined;
  }

  /** Run `onChange` after the debounce, as if an event had come. */
  trigger(): void {
    if (this.stopped) return;
    if (this.debounceTimer) {
      this.debounceTimer.refresh();
      return;
    }
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      if (!this.stopped) this.opts.onChange();
    }, this.opts.debounceMs);
    this.debounceTimer.unref();
  }

  private arm(): void {
    if (this.stopped || this.watcher) return;
    const { dir, logger } = this.opts;
    try {
      // persistent: false: the watcher alone must not keep the process alive; the daemon's servers do.
      const w = watch(dir, { persistent: false }, (_event, filename) => {
        const name = filename === null ? null : filename.toString();
        if (name === null || name === '..data' || this.opts.matches(name)) this.trigger();
      });
      w.on('error', (err) => {
        logger?.warn({ err, dir }, 'directory watch failed; re-arming');
        this.watcher?.close();
        this.watcher = undefined;
        this.scheduleRearm();
        this.trigger();
      });
      this.watcher = w;
    } catch (err) {
      logger?.warn({ err, dir }, 'cannot watch the directory yet; retrying');
      this.scheduleRearm();
    }
  }

  private scheduleRearm(): void {
    if (this.stopped || this.rearmTimer) return;
    this.rearmTimer = setTimeout(() => {
      this.rearmTimer = undefined;
      this.arm();
      // Things may have changed while nothing watched: look once.
      if (this.watcher) this.trigger();
    }, this.opts.rearmMs ?? 1000);
    this.rearmTimer.unref();
  }
}
