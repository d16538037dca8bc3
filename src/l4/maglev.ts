/**
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4).
 *
 * Why Maglev and not a hash ring: lookups are one array read (the table is precomputed), the load is
 * near-perfectly even (each of N backends owns about M/N slots), and removing one backend moves only
 * about 1/N of the keys, so clients of the other backends keep their endpoint when one task goes.
 *
 * Each backend i has a preference list over the M slots (M prime): offset = h1(name) mod M,
 * skip = h2(name) mod (M − 1) + 1, permutation[j] = (offset + j·skip) mod M. Backends take turns claiming
 * their next preferred free slot until every slot is taken. Weights: in each round a backend takes as
 * many turns as its weight (weights are reduced by their gcd first), so it ends with a share of slots
 * proportional to its weight.
 *
 * The table depends only on the set of (name, weight) pairs, not on their order: callers rebuild it only
 * when that set changes.
 */
import { hash32 } from '../model/hash.js';
import { createHash } from 'node:crypto';

export interface MaglevBackend<T> {
  /** Stable identity: `address:port`. Two backends must not share one. */
  name: string;
  /** Relative weight ≥ 1 (0 never reaches the table: weight 0 means draining). */
  weight: number;
  value: T;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

export class MaglevTable<T> {
  readonly size: number;
  /** Slot → index into `values`; -1 only when there are no backends. */
  private readonly slots: Int32Array;
  private readonly values: T[];

  constructor(backends: ReadonlyArray<MaglevBackend<T>>, size = 65_537) {
    this.size = size;
    this.slots = new Int32Array(size).fill(-1);
    // Sort by name so the result cannot depend on input order (the tie-break in each round is the order).
    const list = [...backends].filter((b) => b.weight > 0).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.values = list.map((b) => b.value);
    const n = list.length;
    if (n === 0) return;
    let g = 0;
    for (const b of list) g = gcd(g, Math.round(b.weight));
    const turns = list.map((b) => Math.max(1, Math.round(b.weight) / g));
    const pos = new Float64Array(n);
    const skip = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const d = createHash('sha1')
        .update((list[i] as MaglevBackend<T>).name)
        .digest();
      pos[i] = d.readUInt32BE(0) % size;
      skip[i] = (d.readUInt32BE(4) % (size - 1)) + 1;
    }
    const slots = this.slots;
    let filled = 0;
    for (;;) {
      for (let i = 0; i < n; i++) {
        for (let t = turns[i] as number; t > 0; t--) {
          let c = pos[i] as number;
          while (slots[c] !== -1) {
            c += skip[i] as number;
            if (c >= size) c -= size;
          }
          slots[c] = i;
          c += skip[i] as number;
          pos[i] = c >= size ? c - size : c;
          if (++filled === size) return;
        }
      }
    }
  }

  get backends(): readonly T[] {
    return this.values;
  }

  /** The backend for a 32-bit key hash; undefined when the table is empty. */
  lookup(hash: number): T | undefined {
    const i = this.slots[(hash >>> 0) % this.size] as number;
    return i < 0 ? undefined : this.values[i];
  }

  /**
   * The backend `step` slots after the key's own slot: a deterministic fallback order when the first
   * choice failed (walk forward until a backend not yet tried). Steps wrap around the table.
   */
  at(hash: number, step: number): T | undefined {
    const i = this.slots[((hash >>> 0) + step) % this.size] as number;
    return i < 0 ? undefined : this.values[i];
  }

  /** Slots owned by each backend (tests and the api: the balance of the table). */
  shares(): number[] {
    const counts = new Array<number>(this.values.length).fill(0);
    for (let s = 0; s < this.size; s++) {
      const i = this.slots[s] as number;
      if (i >= 0) counts[i] = (counts[i] as number) + 1;
    }
    return counts;
  }
}

/** The flow-key hash (see model/hash.ts). */
export const fnv1a = hash32;
