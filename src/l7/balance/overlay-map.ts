/**
 * A persistent map by string key: each version is made from the one before plus what changed, shares
 * everything else with it, and never sees a later version's changes. The compiled tables of the L7 plane
 * keep their upstream sets in one, so patching one service's set costs that service, not a copy of the
 * 10,000 entries around it, while an exchange that started on the table before keeps reading the sets it
 * started with.
 *
 * A version is a `base` Map (never changed once shared) and a small `overlay` of the keys set or deleted
 * since that base (a deleted key maps to `GONE`). Deriving a version copies the overlay only; when the
 * overlay grows past an eighth of the base (and past `MIN_FOLD`) it is folded into a new base, so a lookup
 * is at most two Map reads and the amortised cost of a change stays constant (as the model's ServiceMap).
 */

/** Overlays at most this large are never folded, whatever the base size (copying them is cheap). */
const MIN_FOLD = 256;

const GONE: unique symbol = Symbol('gone');
type Slot<V> = V | typeof GONE;

export class OverlayMap<V extends object> implements ReadonlyMap<string, V> {
  readonly #base: ReadonlyMap<string, V>;
  readonly #overlay: ReadonlyMap<string, Slot<V>>;
  readonly size: number;

  private constructor(base: ReadonlyMap<string, V>, overlay: ReadonlyMap<string, Slot<V>>, size: number) {
    this.#base = base;
    this.#overlay = overlay;
    this.size = size;
  }

  /** A map of `entries` (later entries of one key win). */
  static from<V extends object>(entries: Iterable<readonly [string, V]> = []): OverlayMap<V> {
    const base = new Map<string, V>(entries);
    return new OverlayMap<V>(base, new Map(), base.size);
  }

  get(key: string): V | undefined {
    const o = this.#overlay.get(key);
    if (o !== undefined) return o === GONE ? undefined : o;
    return this.#base.get(key);
  }

  has(key: string): boolean {
    const o = this.#overlay.get(key);
    if (o !== undefined) return o !== GONE;
    return this.#base.has(key);
  }

  /**
   * A new version with `set` entries set and `deleted` keys gone (`set` applied after `deleted`, so a key
   * in both is set). This version is unchanged; it is the result when nothing differs. Cost: the overlay's size plus the change, and once per many
   * changes a fold of the whole map.
   */
  with(set: Iterable<readonly [string, V]>, deleted: Iterable<string> = []): OverlayMap<V> {
    const overlay = new Map(this.#overlay);
    let size = this.size;
    let changed = false;
    const base = this.#base;
    /** The value `key` has so far (`GONE`: none). */
    const now = (key: string): Slot<V> => {
      const o = overlay.get(key);
      if (o !== undefined) return o;
      return base.has(key) ? (base.get(key) as V) : GONE;
    };
    for (const key of deleted) {
      if (now(key) === GONE) continue;
      size--;
      changed = true;
      if (base.has(key)) overlay.set(key, GONE);
      else overlay.delete(key);
    }
    for (const [key, value] of set) {
      const had = now(key);
      if (had === value) continue;
      if (had === GONE) size++;
      changed = true;
      // Back to what the base holds: no overlay entry needed.
      if (base.has(key) && base.get(key) === value) overlay.delete(key);
      else overlay.set(key, value);
    }
    if (!changed) return this;
    if (overlay.size > MIN_FOLD && overlay.size * 8 > base.size) return OverlayMap.fold(base, overlay, size);
    return new OverlayMap(base, overlay, size);
  }

  private static fold<V extends object>(base: ReadonlyMap<string, V>, overlay: ReadonlyMap<string, Slot<V>>, size: number): OverlayMap<V> {
    const next = new Map(base);
    for (const [key, v] of overlay) {
      if (v === GONE) next.delete(key);
      else next.set(key, v);
    }
    return new OverlayMap(next, new Map(), size);
  }

  /** Base keys in their order (an overlaid one in its place), then keys the overlay added. */
  *entries(): MapIterator<[string, V]> {
    const overlay = this.#overlay;
    for (const [key, v] of this.#base) {
      const o = overlay.get(key);
      if (o === undefined) yield [key, v];
      else if (o !== GONE) yield [key, o];
    }
    for (const [key, o] of overlay) if (o !== GONE && !this.#base.has(key)) yield [key, o];
  }

  *keys(): MapIterator<string> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: string, map: ReadonlyMap<string, V>) => void, thisArg?: unknown): void {
    for (const [key, v] of this.entries()) fn.call(thisArg, v, key, this);
  }
}
