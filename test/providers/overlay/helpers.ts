/**
 * Snapshots a provider sends, kept in order, with bounded waits for one that satisfies a predicate.
 */
import type { Snapshot } from '../../../src/model/types.js';
import { withTimeout } from '../../helpers/wait.js';

export class SnapshotLog {
  readonly all: Snapshot[] = [];
  private waiters: Array<{ pred: (s: Snapshot) => boolean; resolve: (s: Snapshot) => void }> = [];

  readonly sink = (s: Snapshot): void => {
    this.all.push(s);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(s)) return true;
      w.resolve(s);
      return false;
    });
  };

  get last(): Snapshot | undefined {
    return this.all[this.all.length - 1];
  }

  /** The latest snapshot if it satisfies `pred`, else the next one that does. */
  until(pred: (s: Snapshot) => boolean, what: string, ms = 5000): Promise<Snapshot> {
    const l = this.last;
    if (l && pred(l)) return Promise.resolve(l);
    return withTimeout(new Promise<Snapshot>((resolve) => this.waiters.push({ pred, resolve })), ms, what);
  }
}

/** Every endpoint of a snapshot, as `service address port`. */
export function endpointsOf(s: Snapshot): string[] {
  const out: string[] = [];
  for (const [name, svc] of Object.entries(s.services)) for (const e of svc.endpoints) out.push(`${name} ${e.address} ${e.port}`);
  return out.sort();
}
