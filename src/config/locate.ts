/**
 * Positions in the YAML source. Validation works on plain JS values and speaks in paths
 * (`services.web.endpoints[1].port`); these helpers map such a path back to the node the user wrote,
 * so every issue can say file:line:column. A path that does not exist in the document (a missing key, a
 * value that came from a merge key) falls back to its nearest existing parent.
 */
import { isAlias, isMap, isScalar, isSeq } from 'yaml';
import type { Document, LineCounter, Node, ParsedNode } from 'yaml';

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

/** The source offset of the node at `path` (or of its nearest existing parent). */
export function offsetOf(doc: AnyDoc, path: readonly PathSegment[], target: PathTarget = 'value'): number | undefined {
  let node: unknown = deref(doc, doc.contents);
  let best = startOf(node);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => keyText(p.key) === String(seg));
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

function contains(node: unknown, offset: number): boolean {
  const range = (node as Node | undefined)?.range;
  return range != null && range[0] <= offset && offset < Math.max(range[2], range[0] + 1);
}

/** The path of the innermost key or item at a source offset (for parser errors, e.g. a duplicate key). */
export function pathAtOffset(doc: AnyDoc, offset: number): PathSegment[] {
  const path: PathSegment[] = [];
  let node: unknown = doc.contents;
  for (;;) {
    if (isMap(node)) {
      const pair = node.items.find((p) => contains(p.key, offset) || contains(p.value, offset));
      const key = pair ? keyText(pair.key) : undefined;
      if (!pair || key === undefined) return path;
      path.push(key);
      if (contains(pair.key, offset)) return path;
      node = pair.value;
    } else if (isSeq(node)) {
      const index = node.items.findIndex((item) => contains(item, offset));
      if (index < 0) return path;
      path.push(index);
      node = node.items[index];
    } else {
      return path;
    }
  }
}
