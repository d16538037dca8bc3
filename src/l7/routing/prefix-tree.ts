/**
 * A character radix tree of path prefixes: `longest(path)` finds the longest stored prefix of `path` in
 * O(length of path), independent of how many prefixes are stored, and without allocating (edges are
 * compared with `startsWith(label, offset)`, children are found by char code).
 *
 * Prefixes are byte-wise, as HAProxy's `path_beg` and Traefik's `PathPrefix` are: `/api` is a prefix of
 * `/api`, `/api/v1` and `/apix`.
 *
 * Each value also gets `parent`: the value of the nearest shorter stored prefix, so a caller can walk
 * from the longest match to shorter ones (fall through) without searching again.
 */

export interface Chained<T> {
  /** The value stored at the nearest shorter prefix, set by `seal()`. */
  parent: T | undefined;
}

class Node<T> {
  children: Map<number, Node<T>> | undefined = undefined;
  value: T | undefined = undefined;
  constructor(public label: string) {}
}

export class PrefixTree<T extends Chained<T>> {
  private readonly root = new Node<T>('');
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The value stored at exactly `prefix`, or undefined. */
  get(prefix: string): T | undefined {
    let node = this.root;
    let i = 0;
    while (i < prefix.length) {
      const child = node.children?.get(prefix.charCodeAt(i));
      if (!child || !prefix.startsWith(child.label, i)) return undefined;
      i += child.label.length;
      node = child;
    }
    return node.value;
  }

  /** Store `value` at `prefix` (replacing any). Build time only. */
  set(prefix: string, value: T): void {
    let node = this.root;
    let i = 0;
    for (;;) {
      if (i === prefix.length) {
        if (node.value === undefined) this.count++;
        node.value = value;
        return;
      }
      const c = prefix.charCodeAt(i);
      const child = node.children?.get(c);
      if (!child) {
        const leaf = new Node<T>(prefix.slice(i));
        leaf.value = value;
        (node.children ??= new Map()).set(c, leaf);
        this.count++;
        return;
      }
      // Length of the common part of the child's label and the rest of the prefix.
      const label = child.label;
      let k = 0;
      while (k < label.length && i + k < prefix.length && label.charCodeAt(k) === prefix.charCodeAt(i + k)) k++;
      if (k < label.length) {
        // Split the edge: node → mid(label[0,k)) → child(label[k..]).
        const mid = new Node<T>(label.slice(0, k));
        child.label = label.slice(k);
        mid.children = new Map([[child.label.charCodeAt(0), child]]);
        node.children!.set(c, mid);
        node = mid;
      } else {
        node = child;
      }
      i += k;
    }
  }

  /** Link every value to the value of its nearest shorter stored prefix. Call once after the last `set`. */
  seal(): void {
    const walk = (node: Node<T>, above: T | undefined): void => {
      let nearest = above;
      if (node.value !== undefined) {
        node.value.parent = above;
        nearest = node.value;
      }
      if (node.children) for (const child of node.children.values()) walk(child, nearest);
    };
    walk(this.root, undefined);
  }

  /** The value at the longest stored prefix of `path`, or undefined. No allocation. Counts edges followed in `work`. */
  longest(path: string, work: { edges: number }): T | undefined {
    let node = this.root;
    let best = node.value;
    let i = 0;
    while (i < path.length) {
      const children = node.children;
      if (children === undefined) break;
      const child = children.get(path.charCodeAt(i));
      if (child === undefined || !path.startsWith(child.label, i)) break;
      work.edges++;
      i += child.label.length;
      node = child;
      if (node.value !== undefined) best = node.value;
    }
    return best;
  }
}
