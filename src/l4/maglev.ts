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
 * when that set changes. Building one is about 65,537 claims and, for 10 backends, 7 probes per slot (about
 * 2 ms of CPU); it takes a byte per slot for up to 256 backends, two up to 65,536.
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

/** Slot → backend index, in the narrowest array that holds every index (a byte for up to 256 backends). */
type Slots = Uint8Array | Uint16Array | Uint32Array;

export class MaglevTable<T> {
  readonly size: number;
  /** Slot → index into `values`; empty when there are no backends. */
  private readonly slots: Slots;
  private readonly values: T[];

  constructor(backends: ReadonlyArray<MaglevBackend<T>>, size = 65_537) {
    this.size = size;
    // Sort by name so the result cannot depend on input order (the tie-break in each round is the order).
    const list = [...backends].filter((b) => b.weight > 0).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.values = list.map((b) => b.value);
    const n = list.length;
    this.slots =
      n === 0 ? new Uint8Array(0) : n <= 256 ? new Uint8Array(size) : n <= 65_536 ? new Uint16Array(size) : new Uint32Array(size);
    // One backend owns every slot: the zeroed array is its table.
    if (n <= 1) return;
    let g = 0;
    for (const b of list) g = gcd(g, Math.round(b.weight));
    const turns = new Int32Array(n);
    const next = new Int32Array(n);
    const skip = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const b = list[i] as MaglevBackend<T>;
      turns[i] = Math.max(1, Math.round(b.weight) / g);
      const d = createHash('sha1').update(b.name).digest();
      next[i] = d.readUInt32BE(0) % size;
      skip[i] = (d.readUInt32BE(4) % (size - 1)) + 1;
    }
    populate(this.slots, next, skip, turns, size);
  }

  get backends(): readonly T[] {
    return this.values;
  }

  /** The backend for a 32-bit key hash; undefined when the table is empty. */
  lookup(hash: number): T | undefined {
    if (this.values.length === 0) return undefined;
    return this.values[this.slots[(hash >>> 0) % this.size] as number];
  }

  /**
   * The backend `step` slots after the key's own slot: a deterministic fallback order when the first
   * choice failed (walk forward until a backend not yet tried). Steps wrap around the table.
   */
  at(hash: number, step: number): T | undefined {
    if (this.values.length === 0) return undefined;
    return this.values[this.slots[((hash >>> 0) + step) % this.size] as number];
  }

  /** Slots owned by each backend (tests and the api: the balance of the table). */
  shares(): number[] {
    const counts = new Array<number>(this.values.length).fill(0);
    for (let s = 0; s < this.slots.length; s++) {
      const i = this.slots[s] as number;
      counts[i] = (counts[i] as number) + 1;
    }
    return counts;
  }
}

/** The taken-slot bitmap populate() works in, kept between builds (tables are built one at a time). */
let takenScratch = new Int32Array(0);

/**
 * Fill every slot: backends take turns (`turns[i]` slots each per round, in index order), each claiming the
 * next free slot of its preference list, `next[i]` then every `skip[i]` slots on. A bitmap of taken slots
 * (a 65,537-slot table's fits in 8 KiB) is what the probes read, and the wrap-around is arithmetic, not a
 * branch: the probes are most of the work, about 7 per slot for 10 backends.
 */
function populate(slots: Slots, next: Int32Array, skip: Int32Array, turns: Int32Array, size: number): void {
  const n = next.length;
  const words = (size + 31) >>> 5;
  if (takenScratch.length < words) takenScratch = new Int32Array(words);
  else takenScratch.fill(0, 0, words);
  const taken = takenScratch;
  let i = 0;
  let t = turns[0] as number;
  for (let filled = 0; filled < size; filled++) {
    let c = next[i] as number;
    const k = skip[i] as number;
    while (((taken[c >>> 5] as number) & (1 << (c & 31))) !== 0) {
      c = c + k - size;
      c += (c >> 31) & size;
    }
    taken[c >>> 5] = (taken[c >>> 5] as number) | (1 << (c & 31));
    slots[c] = i;
    c = c + k - size;
    next[i] = c + ((c >> 31) & size);
    if (--t === 0) {
      i = i + 1 === n ? 0 : i + 1;
      t = turns[i] as number;
    }
  }
}

/** The flow-key hash (see model/hash.ts). */
export const fnv1a = hash32;
