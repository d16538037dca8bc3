/**
 * The elements of one array member of a JSON document's top-level object, as byte ranges, found without
 * parsing the document: `{"apps":[{…},{…}]}` → the range of each app object.
 *
 * A resync of a 10,000-app Marathon reads ~70 MB of `/v2/apps?embed=apps.tasks`; most apps are what they
 * were at the last resync. With each app's bytes in hand, the provider (provider.ts) hashes them and parses
 * and translates only the apps whose bytes differ, instead of JSON.parse of the whole answer (the bulk of a
 * resync's CPU, and of the garbage it leaves).
 *
 * The scan follows JSON's structure exactly where it matters (strings with escapes, nesting) and no more:
 * it does not validate numbers or literals. An element range is handed to JSON.parse, which does; a
 * document this scan cannot place (not an object, the member missing or not an array, an element that is
 * not an object, unbalanced brackets) answers `undefined` and the caller parses the whole as before, so
 * malformed input gets JSON.parse's own error.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Index just past the string whose opening quote is at `at`; -1 when it does not end. */
function stringEnd(buf: Uint8Array, at: number): number {
  let i = at + 1;
  for (;;) {
    const q = buf.indexOf(QUOTE, i);
    if (q < 0) return -1;
    // The quote is escaped when an odd number of backslashes precedes it.
    let n = 0;
    for (let j = q - 1; j > at && buf[j] === BACKSLASH; j--) n++;
    if (n % 2 === 0) return q + 1;
    i = q + 1;
  }
}

/** Index just past the value (object or array) opening at `at`; -1 when unbalanced. */
function containerEnd(buf: Uint8Array, at: number): number {
  let depth = 0;
  let i = at;
  const n = buf.length;
  while (i < n) {
    const c = buf[i] as number;
    if (c === QUOTE) {
      i = stringEnd(buf, i);
      if (i < 0) return -1;
      continue;
    }
    if (c === LBRACE || c === LBRACKET) depth++;
    else if (c === RBRACE || c === RBRACKET) {
      depth--;
      if (depth === 0) return i + 1;
      if (depth < 0) return -1;
    }
    i++;
  }
  return -1;
}

/** Index just past a scalar (number, true, false, null) starting at `at`. */
function scalarEnd(buf: Uint8Array, at: number): number {
  let i = at;
  while (i < buf.length) {
    const c = buf[i] as number;
    if (c === COMMA || c === RBRACE || c === RBRACKET || isWs(c)) break;
    i++;
  }
  return i;
}

function skipWs(buf: Uint8Array, at: number): number {
  let i = at;
  while (i < buf.length && isWs(buf[i] as number)) i++;
  return i;
}

/** Index just past the value starting at `at` (after whitespace); -1 when it cannot be placed. */
function valueEnd(buf: Uint8Array, at: number): number {
  const c = buf[at];
  if (c === undefined) return -1;
  if (c === QUOTE) return stringEnd(buf, at);
  if (c === LBRACE || c === LBRACKET) return containerEnd(buf, at);
  const e = scalarEnd(buf, at);
  return e > at ? e : -1;
}

/**
 * `[start, end)` of each element of the top-level member `key` (an array of objects), in order; undefined
 * when the document is not shaped so (the caller then parses it whole). The member's name is compared as
 * written (no escapes in it).
 */
export function memberElements(buf: Uint8Array, key: string): Array<[number, number]> | undefined {
  const want = Buffer.from(JSON.stringify(key));
  let found: Array<[number, number]> | undefined;
  let i = skipWs(buf, 0);
  if (buf[i] !== LBRACE) return undefined;
  i = skipWs(buf, i + 1);
  if (buf[i] === RBRACE) return undefined;
  for (;;) {
    if (buf[i] !== QUOTE) return undefined;
    const kEnd = stringEnd(buf, i);
    if (kEnd < 0) return undefined;
    const isWanted = kEnd - i === want.length && Buffer.compare(want, Buffer.from(buf.buffer, buf.byteOffset + i, kEnd - i)) === 0;
    i = skipWs(buf, kEnd);
    if (buf[i] !== COLON) return undefined;
    i = skipWs(buf, i + 1);
    let vEnd: number;
    if (isWanted && found === undefined) {
      const elements = arrayObjects(buf, i);
      if (!elements) return undefined;
      found = elements.list;
      vEnd = elements.end;
    } else {
      vEnd = valueEnd(buf, i);
      if (vEnd < 0) return undefined;
    }
    i = skipWs(buf, vEnd);
    if (buf[i] === COMMA) {
      i = skipWs(buf, i + 1);
      continue;
    }
    // The document ends here, with nothing after it but whitespace.
    if (buf[i] !== RBRACE || skipWs(buf, i + 1) !== buf.length) return undefined;
    return found;
  }
}

function arrayObjects(buf: Uint8Array, at: number): { list: Array<[number, number]>; end: number } | undefined {
  if (buf[at] !== LBRACKET) return undefined;
  const list: Array<[number, number]> = [];
  let i = skipWs(buf, at + 1);
  if (buf[i] === RBRACKET) return { list, end: i + 1 };
  for (;;) {
    if (buf[i] !== LBRACE) return undefined;
    const e = containerEnd(buf, i);
    if (e < 0) return undefined;
    list.push([i, e]);
    i = skipWs(buf, e);
    if (buf[i] === COMMA) {
      i = skipWs(buf, i + 1);
      continue;
    }
    return buf[i] === RBRACKET ? { list, end: i + 1 } : undefined;
  }
}
