/** The embedded store's in-memory state, shared by recovery (which rebuilds it) and the live store. */
import type { Entry } from '../types.js';

export interface LeaseState {
  id: string;
  ttlMs: number;
  /** Wall-clock ms (Date.now()), because it must survive a restart. */
  deadline: number;
  keys: Set<string>;
}

function lowerBound(a: string[], s: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < s) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class State {
  readonly data = new Map<string, Entry>();
  readonly leases = new Map<string, LeaseState>();
  revision = 0;
  /**
   * Keys in sorted order (JS string order, as Redis listings are re-sorted), for prefix listing in
   * O(log n + k). Not maintained during recovery, where it is cheaper to sort once at the end.
   */
  private index: string[] | null = null;

  sortedKeys(): string[] {
    if (!this.index) this.index = [...this.data.keys()].sort();
    return this.index;
  }

  put(entry: Entry): void {
    const key = entry.key;
    const prev = this.data.get(key);
    if (prev === undefined) {
      if (this.index) this.index.splice(lowerBound(this.index, key), 0, key);
    } else if (prev.lease !== undefined && prev.lease !== entry.lease) {
      this.leases.get(prev.lease)?.keys.delete(key);
    }
    if (entry.lease !== undefined) this.leases.get(entry.lease)?.keys.add(key);
    this.data.set(key, entry);
  }

  remove(key: string): Entry | undefined {
    const prev = this.data.get(key);
    if (prev === undefined) return undefined;
    this.data.delete(key);
    if (this.index) {
      const i = lowerBound(this.index, key);
      if (this.index[i] === key) this.index.splice(i, 1);
    }
    if (prev.lease !== undefined) this.leases.get(prev.lease)?.keys.delete(key);
    return prev;
  }

  setLease(id: string, ttlMs: number, deadline: number): LeaseState {
    let l = this.leases.get(id);
    if (l) {
      l.ttlMs = ttlMs;
      l.deadline = deadline;
    } else {
      l = { id, ttlMs, deadline, keys: new Set() };
      this.leases.set(id, l);
    }
    return l;
  }

  list(prefix: string): Entry[] {
    const keys = this.sortedKeys();
    const out: Entry[] = [];
    for (let i = prefix ? lowerBound(keys, prefix) : 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (!k.startsWith(prefix)) break;
      out.push(this.data.get(k)!);
    }
    return out;
  }

  /** What a snapshot of the current state would take on disk, near enough to decide on compaction. */
  liveBytes(): number {
    let n = 64;
    for (const e of this.data.values()) n += 23 + e.key.length + (e.lease?.length ?? 0) + e.value.length;
    for (const l of this.leases.values()) n += 33 + l.id.length;
    return n;
  }
}
