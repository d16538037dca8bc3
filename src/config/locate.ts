/**
 * Positions in the YAML source. Validation works on plain JS values and speaks in paths
 * (`services.web.endpoints[1].port`); these helpers map such a path back to the node the user wrote,
 * so every issue can say file:line:column. A path that does not exist in the document (a missing key, a
 * value that came from a merge key) falls back to its nearest existing parent.
 */
import { isAlias, isMap, isScalar, isSeq } from 'yaml';
import type { Document, LineCounter, Node, Pair, ParsedNode, YAMLMap } from 'yaml';

export type PathSegment = string | number;

/** Where in a pair a path points: the key (an unknown or duplicate key) or its value. */
export type PathTarget = 'key' | 'value';

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `['services', 'web', 'endpoints', 1, 'port']` → `services.web.endpoints[1].port`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

export interface Position {
  line: number;
  column: number;
}

type AnyDoc = Document.Parsed<ParsedNode> | Document;

function deref(doc: AnyDoc, node: unknown): unknown {
  // An alias points at its anchor; follow it so paths through `*ref` still find their node.
  return isAlias(node) ? node.resolve(doc as Document) : node;
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return typeof key === 'string' || typeof key === 'number' ? String(key) : undefined;
}

function startOf(node: unknown): number | undefined {
  const range = (node as Node | undefined)?.range;
  return range ? range[0] : undefined;
}

/**
 * The first pair of a mapping whose key reads `key`, from an index built on the mapping's first lookup:
 * many issues under one large mapping (10,000 services) each find their pair without a scan of it.
 */
const pairIndexes = new WeakMap<object, Map<string, Pair>>();
function pairOf(map: YAMLMap, key: string): Pair | undefined {
  let index = pairIndexes.get(map);
  if (!index) {
    index = new Map();
    for (const pair of map.items) {
      const text = keyText(pair.key);
      if (text !== undefined && !index.has(text)) index.set(text, pair);
    }
    pairIndexes.set(map, index);
  }
  return index.get(key);
}

/** The source offset of the node at `path` (or of its nearest existing parent). */
export function offsetOf(doc: AnyDoc, path: readonly PathSegment[], target: PathTarget = 'value'): number | undefined {
  let node: unknown = deref(doc, doc.contents);
  let best = startOf(node);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = pairOf(node, String(seg));
      if (!pair) return best;
      if (last && target === 'key') return startOf(pair.key) ?? best;
      // `key:` with no value has no value node: point at the key.
      const next = deref(doc, pair.value);
      best = startOf(next) ?? startOf(pair.key) ?? best;
      node = next;
    } else if (isSeq(node) && typeof seg === 'number') {
      const next = deref(doc, node.items[seg]);
      if (next === undefined) return best;
      best = startOf(next) ?? best;
      node = next;
    } else {
      return best;
    }
  }
  return best;
}

export function positionOf(
  doc: AnyDoc,
  lineCounter: LineCounter,
  path: readonly PathSegment[],
  target: PathTarget = 'value',
): Position | undefined {
  const offset = offsetOf(doc, path, target);
  return offset === undefined ? undefined : toPosition(lineCounter, offset);
}

export function toPosition(lineCounter: LineCounter, offset: number): Position {
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

/** A key written twice in one mapping: where the second one is, and its path. */
export interface DuplicateKey {
  offset: number;
  path: PathSegment[];
}

/**
 * The duplicate keys of a document parsed with `uniqueKeys: false`, as `yaml` finds them with
 * `uniqueKeys: true`: a scalar key whose value equals (===) an earlier key's in the same mapping; merge
 * keys (`<<`, each its own symbol) and NaN never do. `yaml` compares each key with every earlier one, which
 * is quadratic in a mapping's size (seconds for the 10,000 keys of a large `services:`); this is one pass.
 * Aliases are not followed: the node they name is checked where it is written.
 */
export function duplicateKeys(doc: AnyDoc): DuplicateKey[] {
  const found: DuplicateKey[] = [];
  const stack: Array<{ node: unknown; path: PathSegment[] }> = [{ node: doc.contents, path: [] }];
  for (let top = stack.pop(); top; top = stack.pop()) {
    const { node, path } = top;
    const children: Array<{ node: unknown; path: PathSegment[] }> = [];
    if (isMap(node)) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        const key = pair.key;
        const text = keyText(key);
        if (isScalar(key)) {
          const v = key.value;
          if (typeof v !== 'symbol' && v === v) {
            if (seen.has(v)) found.push({ offset: startOf(key) ?? 0, path: [...path, text ?? ''] });
            else seen.add(v);
          }
        } else if (isMap(key) || isSeq(key)) {
          children.push({ node: key, path });
        }
        if (isMap(pair.value) || isSeq(pair.value)) children.push({ node: pair.value, path: text === undefined ? path : [...path, text] });
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        if (isMap(item) || isSeq(item)) children.push({ node: item, path: [...path, i] });
      });
    }
    // Depth first, in document order.
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i] as { node: unknown; path: PathSegment[] });
  }
  return found.sort((a, b) => a.offset - b.offset);
}
