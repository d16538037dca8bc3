/**
 * The services of a routing table, as a persistent map: a new table version is made from the last one
 * plus what changed, sharing everything else, so one endpoint change costs work in proportion to that
 * change and not to the 10,000 services around it.
 *
 * A version is a `base` Map (never changed once shared) and a small `overlay` of the ids that changed since
 * that base (a removed id maps to `null`). Deriving a version copies the overlay only; when the overlay
 * grows past an eighth of the base it is folded into a new base, so a lookup is at most two Map reads and
 * the amortised cost of a change stays constant. Versions never see each other's later changes.
 *
 * Iteration is in id order (what `JSON.stringify` of a table shows, and what a plane compiling a whole
 * table walks): the sorted ids are computed on the first full walk of a version and kept.
 */
import type { Service } from './types.js';

/** Overlays at most this large are never folded, whatever the base size (copying them is cheap). */
const MIN_FOLD = 256;

/** Each version's ids in order, computed on its first full walk (the versions themselves are frozen). */
const sortedIds = new WeakMap<ServiceMap, readonly string[]>();

export class ServiceMap implements Iterable<[string, Service]> {
  readonly #base: ReadonlyMap<string, Service>;
  readonly #overlay: ReadonlyMap<string, Service | null>;
  /** Number of ids present (base minus removed plus added). */
  readonly size: number;

  private constructor(base: ReadonlyMap<string, Service>, overlay: ReadonlyMap<string, Service | null>, size: number) {
    this.#base = base;
    this.#overlay = overlay;
    this.size = size;
    Object.freeze(this);
  }

  static readonly EMPTY: ServiceMap = new ServiceMap(new Map(), new Map(), 0);

  /** A map of `services` (a record keyed by id, or [id, service] pairs). */
  static from(services: Record<string, Service> | Iterable<readonly [string, Service]>): ServiceMap {
    const base = new Map<string, Service>(
      Symbol.iterator in services ? (services as Iterable<readonly [string, Service]>) : Object.entries(services),
    );
    return new ServiceMap(base, new Map(), base.size);
  }

  get(id: string): Service | undefined {
    const o = this.#overlay.get(id);
    if (o !== undefined) return o ?? undefined;
    return this.#base.get(id);
  }

  has(id: string): boolean {
    const o = this.#overlay.get(id);
    if (o !== undefined) return o !== null;
    return this.#base.has(id);
  }

  /**
   * A new version with `upserts` set and `removals` gone. This version is unchanged. Cost: the overlay's
   * size plus the change (and, once per many changes, one fold of the whole map).
   */
  with(upserts: Iterable<Service>, removals: Iterable<string> = []): ServiceMap {
    const overlay = new Map(this.#overlay);
    let size = this.size;
    for (const id of removals) {
      if (!this.has(id)) continue;
      size--;
      overlay.set(id, null);
    }
    for (const s of upserts) {
      const had = overlay.has(s.id) ? overlay.get(s.id) !== null : this.#base.has(s.id);
      if (!had) size++;
      // Back to what the base holds: no overlay entry needed.
      if (this.#base.get(s.id) === s) overlay.delete(s.id);
      else overlay.set(s.id, s);
    }
    if (overlay.size > MIN_FOLD && overlay.size * 8 > this.#base.size) return ServiceMap.fold(this.#base, overlay, size);
    return new ServiceMap(this.#base, overlay, size);
  }

  private static fold(base: ReadonlyMap<string, Service>, overlay: ReadonlyMap<string, Service | null>, size: number): ServiceMap {
    const next = new Map(base);
    for (const [id, s] of overlay) {
      if (s === null) next.delete(id);
      else next.set(id, s);
    }
    return new ServiceMap(next, new Map(), size);
  }

  /** Ids in order. Computed once per version, on first use. */
  keys(): readonly string[] {
    const cached = sortedIds.get(this);
    if (cached) return cached;
    const ids: string[] = [];
    for (const id of this.#base.keys()) if (!this.#overlay.has(id)) ids.push(id);
    for (const [id, s] of this.#overlay) if (s !== null) ids.push(id);
    ids.sort();
    Object.freeze(ids);
    sortedIds.set(this, ids);
    return ids;
  }

  *values(): IterableIterator<Service> {
    for (const id of this.keys()) yield this.get(id) as Service;
  }

  *entries(): IterableIterator<[string, Service]> {
    for (const id of this.keys()) yield [id, this.get(id) as Service];
  }

  [Symbol.iterator](): IterableIterator<[string, Service]> {
    return this.entries();
  }

  /** A plain record in id order: what a table's JSON shows. */
  toJSON(): Record<string, Service> {
    const out: Record<string, Service> = {};
    for (const id of this.keys()) out[id] = this.get(id) as Service;
    return out;
  }
}
