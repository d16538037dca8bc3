/**
 * Bounds on a config document, checked by one pass over the text before any parser runs, so that a
 * hostile or broken document costs time in proportion to its size and is refused at the first place it
 * passes a limit, with that place's line and column.
 *
 * The pass reads the text the way the `yaml` package's lexer does (the same rules, ported to char codes,
 * without its tokens): where a quoted scalar, a block scalar, a plain scalar, a comment or a flow
 * collection begins and ends. So what it counts is what the position-tracking parser will build (a test
 * holds the two to the same flow nesting, anchors and aliases on random documents). The fast parser
 * (js-yaml) is also given its own depth bound (load.ts), and what either parser returns is measured
 * again for what its aliases expand to (checkExpansion, below).
 *
 * It measures:
 *   - bytes (UTF-8);
 *   - nesting depth: open flow collections (`[`, `{`) plus open block collections, known from the
 *     columns where lines and `- `/`? `/`: ` indicators begin;
 *   - entries: list items and mapping keys (block `- ` and `key:`, flow items);
 *   - anchors (`&a`) and aliases (`*a`).
 * It also notes what the fast parser reads differently from `yaml`, so that such a document is read
 * by `yaml` alone: a `%` directive (`%YAML 1.1` changes the schema), explicit `? ` keys, and keys that
 * are empty, null (`~:`, `null:`), collections or aliases (js-yaml and `yaml` turn those into different
 * strings).
 *
 * After reading, `checkExpansion` bounds what the aliases expand to (the "billion laughs"): both parsers
 * share an anchored node between its aliases, but everything that walks the value (the schema check,
 * decoding) sees every copy.
 */
import { ValidationError } from '../model/errors.js';

export interface ConfigLimits {
  /** Largest document, in UTF-8 bytes. */
  readonly maxBytes: number;
  /** Deepest nesting of collections (flow and block together). */
  readonly maxDepth: number;
  /** Most entries (list items and mapping keys), in the text and, separately, with aliases expanded. */
  readonly maxEntries: number;
  /** Most anchors (`&name`). */
  readonly maxAnchors: number;
  /** Most aliases (`*name`). */
  readonly maxAliases: number;
}

export const CONFIG_LIMITS: ConfigLimits = Object.freeze({
  /**
   * 16 MiB. A config of 10,000 services and 100,000 endpoints is 4–6 MB; the api takes smaller bodies
   * still (1 MiB to validate, 8 MiB for the shared config).
   */
  maxBytes: 16 * 1024 * 1024,
  /**
   * 64. A valid config nests about 6 deep (`services.web.endpoints[0].labels.zone`); both parsers recurse
   * once per level, and a document of nothing but brackets would otherwise nest as deep as it is long.
   */
  maxDepth: 64,
  /**
   * 2,000,000. The 10,000-service file has ~470,000; `yaml`'s document of it takes ~400 bytes per
   * entry, so the cap also keeps that document under a gigabyte.
   */
  maxEntries: 2_000_000,
  /**
   * 10,000 each. `yaml` resolves every alias by a scan of the anchors and aliases before it, which is
   * quadratic in their number: 20,000 together are ~200 million steps, under a second. A 10,000-service
   * file that shares one anchored block per service still fits.
   */
  maxAnchors: 10_000,
  maxAliases: 10_000,
});

/** What the scan measured. */
export interface ScanReport {
  bytes: number;
  /** Deepest nesting seen (flow and block). */
  depth: number;
  /** Deepest flow nesting seen (`[` and `{` alone). */
  flowDepth: number;
  entries: number;
  anchors: number;
  aliases: number;
  /** Offset of the first alias (-1: none), where an error about what aliases expand to points. */
  firstAlias: number;
  /**
   * Why only the position-tracking parser may read this document (the fast one would read something
   * else), or undefined when the fast parser reads it the same way.
   */
  positionsOnly: string | undefined;
}

export interface Position {
  line: number;
  column: number;
}

/** 1-based line and column (in UTF-16 units, as `yaml`'s LineCounter counts) of an offset. */
export function positionAt(text: string, offset: number): Position {
  let line = 1;
  let lineStart = 0;
  for (let nl = text.indexOf('\n'); nl !== -1 && nl < offset; nl = text.indexOf('\n', nl + 1)) {
    line += 1;
    lineStart = nl + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

const count = (n: number): string => n.toLocaleString('en-US');

function refuse(text: string, offset: number, message: string, file: string | undefined): ValidationError {
  return new ValidationError([{ path: '', message, ...positionAt(text, Math.min(offset, text.length)) }], file);
}

/**
 * Check `text` against the limits before parsing it. Returns what it measured; throws ValidationError
 * (one issue, with the line and column where the limit was passed) when a limit is passed.
 */
export function checkConfigLimits(text: string, file?: string, limits: ConfigLimits = CONFIG_LIMITS): ScanReport {
  // A UTF-16 unit is at least one UTF-8 byte: a text longer than the cap is over it without counting.
  const bytes = text.length > limits.maxBytes ? Infinity : Buffer.byteLength(text, 'utf8');
  if (bytes > limits.maxBytes) {
    const at = offsetOfByte(text, limits.maxBytes);
    const size = bytes === Infinity ? `more than ${count(limits.maxBytes)}` : count(bytes);
    throw refuse(text, at, `the document is ${size} bytes; the limit is ${count(limits.maxBytes)} (it passes the limit here)`, file);
  }
  const scan = new Scanner(text, limits);
  scan.run();
  if (scan.violation) throw refuse(text, scan.violation.offset, scan.violation.message, file);
  return {
    bytes,
    depth: scan.maxSeenDepth,
    flowDepth: scan.maxFlowDepth,
    entries: scan.entries,
    anchors: scan.anchors,
    aliases: scan.aliases,
    firstAlias: scan.firstAlias,
    positionsOnly: scan.positionsOnly,
  };
}

/** The offset of the character holding UTF-8 byte number `limit` (0-based). */
function offsetOfByte(text: string, limit: number): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdbff ? 4 : c >= 0xdc00 && c <= 0xdfff ? 0 : 3;
    if (bytes > limit) return i;
  }
  return text.length;
}

/**
 * Bound what the aliases of a parsed document expand to: its entries counted as if every alias were a
 * copy of its anchor, and no alias inside the node it names (a cycle, which js-yaml builds for `&a [*a]`).
 * Linear in the distinct nodes: each is measured once. A document without aliases is a tree the scan
 * already counted.
 */
export function checkExpansion(value: unknown, scan: ScanReport, text: string, file?: string, limits: ConfigLimits = CONFIG_LIMITS): void {
  if (scan.aliases === 0 || value === null || typeof value !== 'object') return;
  const at = scan.firstAlias < 0 ? 0 : scan.firstAlias;
  const measured = new Map<object, number>();
  const open = new Set<object>();
  interface Frame {
    node: object;
    values: unknown[];
    next: number;
    total: number;
  }
  const frame = (node: object): Frame => {
    const values = Array.isArray(node) ? (node as unknown[]) : Object.values(node);
    open.add(node);
    return { node, values, next: 0, total: values.length };
  };
  const tooMany = () =>
    refuse(
      text,
      at,
      `aliases expand the document to more than ${count(limits.maxEntries)} entries (an alias stands for everything its anchor holds); the limit is ${count(limits.maxEntries)}; the first alias is here`,
      file,
    );
  const stack: Frame[] = [frame(value)];
  for (;;) {
    const top = stack[stack.length - 1] as Frame;
    if (top.next < top.values.length) {
      const child = top.values[top.next++];
      if (child === null || typeof child !== 'object') continue;
      const known = measured.get(child);
      if (known !== undefined) {
        top.total += known;
        if (top.total > limits.maxEntries) throw tooMany();
      } else if (open.has(child)) {
        throw refuse(text, at, 'an alias names a node that contains it (a cycle); the first alias is here', file);
      } else {
        stack.push(frame(child));
      }
      continue;
    }
    stack.pop();
    open.delete(top.node);
    measured.set(top.node, top.total);
    if (top.total > limits.maxEntries) throw tooMany();
    const parent = stack[stack.length - 1];
    if (!parent) return;
    parent.total += top.total;
    if (parent.total > limits.maxEntries) throw tooMany();
  }
}

// ---------------------------------------------------------------------------------------------------
// The scan: `yaml`'s lexer (yaml/dist/parse/lexer.js, 2.x), state for state, on the whole text at once.

const TAB = 9;
const LF = 10;
const CR = 13;
const SPACE = 32;
const BANG = 33; // !
const DQUOTE = 34; // "
const HASH = 35; // #
const PERCENT = 37; // %
const AMP = 38; // &
const SQUOTE = 39; // '
const STAR = 42; // *
const COMMA = 44; // ,
const DASH = 45; // -
const DOT = 46; // .
const COLON = 58; // :
const LT = 60; // <
const GT = 62; // >
const QUESTION = 63; // ?
const LBRACKET = 91; // [
const BACKSLASH = 92; // \
const RBRACKET = 93; // ]
const LBRACE = 123; // {
const PIPE = 124; // |
const RBRACE = 125; // }
const BOM = 0xfeff;

const enum State {
  Stream,
  LineStart,
  BlockStart,
  Doc,
  Flow,
}

/** What came last before a `:` value indicator: the key it closes. */
const enum Key {
  None,
  Plain,
  Quoted,
  Alias,
  FlowEnd,
}

/** Space, tab, line break or the end of the text (NaN from charCodeAt). */
function isEmpty(c: number): boolean {
  return c !== c || c === SPACE || c === LF || c === CR || c === TAB;
}

function isFlowIndicator(c: number): boolean {
  return c === COMMA || c === LBRACKET || c === RBRACKET || c === LBRACE || c === RBRACE;
}

function isAnchorChar(c: number): boolean {
  return !(isEmpty(c) || isFlowIndicator(c));
}

/** `yaml`'s tag characters: 0-9 A-Z a-z - # ; / ? : @ & = + $ _ . ! ~ * ' ( ) */
const TAG_CHARS = new Uint8Array(128);
for (const ch of "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-#;/?:@&=+$_.!~*'()") TAG_CHARS[ch.charCodeAt(0)] = 1;

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

class Scanner {
  private pos = 0;
  private readonly len: number;
  // the lexer's state
  private flowLevel = 0;
  private flowKey = false;
  private indentNext = 0;
  private indentValue = 0;
  private blockScalarIndent = -1;
  private blockScalarKeep = false;
  /** Index of the next '\n' at or after `pos` (or the text's length), cached as the lexer caches it. */
  private lineEndPos = -1;
  // block structure: the columns (and kinds) of the open block collections
  private readonly cols: number[] = [];
  private readonly seqs: boolean[] = [];
  private blockDepth = 0;
  /** The first token of this line has not been placed yet. */
  private lineHead = false;
  // what was measured
  entries = 0;
  anchors = 0;
  aliases = 0;
  firstAlias = -1;
  maxSeenDepth = 0;
  maxFlowDepth = 0;
  positionsOnly: string | undefined;
  violation: { offset: number; message: string } | undefined;
  // the last key candidate before a ':'
  private key = Key.None;
  private keyStart = 0;
  private keyEnd = 0;

  constructor(
    private readonly src: string,
    private readonly limits: ConfigLimits,
  ) {
    this.len = src.length;
  }

  run(): void {
    let next = State.Stream;
    let stalled = 0;
    while (this.pos < this.len && !this.violation) {
      const before = this.pos;
      next = this.step(next);
      // The lexer always moves on; should a state ever fail to, step over one character rather than spin.
      if (this.pos === before) {
        if (++stalled > 8) {
          this.pos += 1;
          stalled = 0;
        }
      } else {
        stalled = 0;
      }
    }
  }

  private step(state: State): State {
    switch (state) {
      case State.Stream:
        return this.parseStream();
      case State.LineStart:
        return this.parseLineStart();
      case State.BlockStart:
        return this.parseBlockStart();
      case State.Doc:
        return this.parseDocument();
      case State.Flow:
        return this.parseFlowCollection();
    }
  }

  // ---- measuring ----------------------------------------------------------------------------------

  private fail(offset: number, message: string): void {
    if (!this.violation) this.violation = { offset, message };
  }

  private entry(offset: number): void {
    if (++this.entries > this.limits.maxEntries) {
      this.fail(
        offset,
        `more than ${count(this.limits.maxEntries)} entries (list items and mapping keys); the limit is ${count(this.limits.maxEntries)}`,
      );
    }
  }

  private depthCheck(offset: number): void {
    const depth = this.blockDepth + this.flowLevel;
    if (this.flowLevel > this.maxFlowDepth) this.maxFlowDepth = this.flowLevel;
    if (depth > this.maxSeenDepth) this.maxSeenDepth = depth;
    if (depth > this.limits.maxDepth) {
      this.fail(offset, `nested ${depth} levels deep here; the limit is ${this.limits.maxDepth} (a Portico config nests about 6)`);
    }
  }

  private slowOnly(why: string): void {
    if (this.positionsOnly === undefined) this.positionsOnly = why;
  }

  private columnOf(offset: number): number {
    return offset - (this.src.lastIndexOf('\n', offset - 1) + 1);
  }

  /**
   * A block node begins at `offset`: a `- ` item (seq), or a key, `? `, `: ` or scalar (the rest). The
   * collections at a greater column have ended; one at the same column and kind is the same collection;
   * a list may sit at its parent key's column.
   */
  private blockNode(offset: number, seq: boolean): void {
    const col = this.columnOf(offset);
    let n = this.blockDepth;
    while (n > 0 && ((this.cols[n - 1] as number) > col || (this.cols[n - 1] === col && this.seqs[n - 1] && !seq))) n--;
    if (n > 0 && this.cols[n - 1] === col && this.seqs[n - 1] === seq) {
      this.blockDepth = n;
      return;
    }
    this.cols[n] = col;
    this.seqs[n] = seq;
    this.blockDepth = n + 1;
    this.depthCheck(offset);
  }

  /** A `:` value indicator at `offset`: its key is what came last. */
  private valueIndicator(offset: number): void {
    if (this.flowLevel === 0) this.entry(offset);
    switch (this.key) {
      case Key.None:
        this.slowOnly('an empty key');
        break;
      case Key.Alias:
        this.slowOnly('an alias as a key');
        break;
      case Key.FlowEnd:
        this.slowOnly('a collection as a key');
        break;
      case Key.Plain: {
        const n = this.keyEnd - this.keyStart;
        if (n === 1 || n === 4) {
          const k = this.src.slice(this.keyStart, this.keyEnd);
          if (k === '~' || k === 'null' || k === 'Null' || k === 'NULL') this.slowOnly('a null key');
        }
        break;
      }
      case Key.Quoted:
        break;
    }
    this.key = Key.None;
  }

  private alias(): void {
    if (this.firstAlias < 0) this.firstAlias = this.pos;
    if (++this.aliases > this.limits.maxAliases) {
      this.fail(this.pos, `more than ${count(this.limits.maxAliases)} aliases (*name); the limit is ${count(this.limits.maxAliases)}`);
    }
    this.key = Key.Alias;
    this.pushUntilNotAnchorChar();
  }

  // ---- the lexer's helpers -------------------------------------------------------------------------

  private code(i: number): number {
    return this.src.charCodeAt(i);
  }

  /** Where the current line's content ends: before its '\n' (and a '\r' before that), or at the end. */
  private lineEnd(): number {
    if (this.lineEndPos < this.pos) {
      const nl = this.src.indexOf('\n', this.pos);
      this.lineEndPos = nl === -1 ? this.len : nl;
    }
    const end = this.lineEndPos;
    return end < this.len && end > 0 && this.code(end - 1) === CR ? end - 1 : end;
  }

  /** The character at `pos` if it is on the current line, else NaN (`line[n]` is undefined). */
  private lineChar(lineEnd: number): number {
    return this.pos < lineEnd ? this.code(this.pos) : NaN;
  }

  private atLineEnd(): boolean {
    let i = this.pos;
    let c = this.code(i);
    while (c === SPACE || c === TAB) c = this.code(++i);
    if (c !== c || c === HASH || c === LF) return true;
    if (c === CR) return this.code(i + 1) === LF;
    return false;
  }

  private continueScalar(offset: number): number {
    let c = this.code(offset);
    if (this.indentNext > 0) {
      let indent = 0;
      while (c === SPACE) c = this.code(++indent + offset);
      if (c === CR && this.code(indent + offset + 1) === LF) return offset + indent + 1;
      return c === LF || indent >= this.indentNext ? offset + indent : -1;
    }
    if ((c === DASH || c === DOT) && this.isDocMarker(offset)) return -1;
    return offset;
  }

  /** `---` or `...` followed by a space, a line break or the end. */
  private isDocMarker(offset: number): boolean {
    const c = this.code(offset);
    return (c === DASH || c === DOT) && this.code(offset + 1) === c && this.code(offset + 2) === c && isEmpty(this.code(offset + 3));
  }

  private pushNewline(): number {
    const c = this.code(this.pos);
    if (c === LF) {
      this.pos += 1;
      return 1;
    }
    if (c === CR && this.code(this.pos + 1) === LF) {
      this.pos += 2;
      return 2;
    }
    return 0;
  }

  private pushSpaces(allowTabs: boolean): number {
    const start = this.pos;
    let c = this.code(this.pos);
    while (c === SPACE || (allowTabs && c === TAB)) c = this.code(++this.pos);
    return this.pos - start;
  }

  private pushUntilNotAnchorChar(): void {
    // The lexer pushes until the first non-anchor char, starting at the indicator itself (& or *).
    while (this.pos < this.len && isAnchorChar(this.code(this.pos))) this.pos += 1;
  }

  // ---- the lexer's states --------------------------------------------------------------------------

  private parseStream(): State {
    if (this.code(this.pos) === BOM) this.pos += 1;
    if (this.code(this.pos) === PERCENT) {
      this.slowOnly('a % directive');
      this.pos = this.lineEnd();
      this.pushNewline();
      return State.Stream;
    }
    if (this.atLineEnd()) {
      this.pushSpaces(true);
      this.pos = this.lineEnd();
      this.pushNewline();
      return State.Stream;
    }
    return this.parseLineStart();
  }

  private parseLineStart(): State {
    const c = this.code(this.pos);
    if ((c === DASH || c === DOT) && this.isDocMarker(this.pos)) {
      this.pos += 3;
      this.indentValue = 0;
      this.indentNext = 0;
      this.blockDepth = 0;
      this.lineHead = false;
      this.key = Key.None;
      return c === DASH ? State.Doc : State.Stream;
    }
    this.indentValue = this.pushSpaces(false);
    if (this.indentNext > this.indentValue && !isEmpty(this.code(this.pos + 1))) this.indentNext = this.indentValue;
    this.lineHead = true;
    this.key = Key.None;
    return this.parseBlockStart();
  }

  private parseBlockStart(): State {
    const c0 = this.code(this.pos);
    if ((c0 === DASH || c0 === QUESTION || c0 === COLON) && isEmpty(this.code(this.pos + 1))) {
      const at = this.pos;
      if (c0 === DASH) {
        this.blockNode(at, true);
        this.entry(at);
      } else {
        this.blockNode(at, false);
        if (c0 === QUESTION) this.entry(at);
        this.slowOnly(c0 === QUESTION ? 'an explicit key (? )' : 'an empty or explicit key');
      }
      this.lineHead = true; // the node after the indicator begins at its own column
      this.key = Key.None;
      this.pos += 1;
      const n = 1 + this.pushSpaces(true);
      this.indentNext = this.indentValue + 1;
      this.indentValue += n;
      return State.BlockStart;
    }
    return State.Doc;
  }

  private parseDocument(): State {
    this.pushSpaces(true);
    const lineEnd = this.lineEnd();
    const head = this.pos; // a key's anchor or tag belongs to it: the node begins here
    this.pushIndicators();
    const c = this.lineChar(lineEnd);
    if (this.lineHead && c === c && c !== HASH) {
      this.lineHead = false;
      this.blockNode(head, false);
    }
    if (c !== c || c === HASH) {
      if (c === HASH) this.pos = lineEnd;
      this.pushNewline();
      return this.parseLineStart();
    }
    switch (c) {
      case LBRACE:
      case LBRACKET:
        this.entry(this.pos);
        this.pos += 1;
        this.flowKey = false;
        this.flowLevel = 1;
        this.key = Key.None;
        this.depthCheck(this.pos - 1);
        return State.Flow;
      case RBRACE:
      case RBRACKET:
        this.pos += 1; // an error for both parsers
        return State.Doc;
      case STAR:
        this.alias();
        return State.Doc;
      case DQUOTE:
      case SQUOTE:
        this.key = Key.Quoted;
        return this.parseQuotedScalar();
      case PIPE:
      case GT:
        this.parseBlockScalarHeader();
        this.pushSpaces(true);
        this.pos = Math.max(this.pos, lineEnd);
        this.pushNewline();
        return this.parseBlockScalar();
      default:
        return this.parsePlainScalar();
    }
  }

  private parseFlowCollection(): State {
    let nl: number;
    let sp: number;
    let indent = -1;
    do {
      nl = this.pushNewline();
      if (nl > 0) {
        sp = this.pushSpaces(false);
        this.indentValue = indent = sp;
      } else {
        sp = 0;
      }
      sp += this.pushSpaces(true);
    } while (nl + sp > 0);
    let lineEnd = this.lineEnd();
    const c0 = this.lineChar(lineEnd);
    if ((indent !== -1 && indent < this.indentNext && c0 !== HASH) || (indent === 0 && this.isDocMarkerOnLine(lineEnd))) {
      // Allowing for the terminal ] or } at the same (rather than greater) indent level as the initial
      // [ or {, as the lexer does.
      const atFlowEndMarker = indent === this.indentNext - 1 && this.flowLevel === 1 && (c0 === RBRACKET || c0 === RBRACE);
      if (!atFlowEndMarker) {
        this.flowLevel = 0; // an error: the flow collection is cut short
        return this.parseLineStart();
      }
    }
    while (this.lineChar(lineEnd) === COMMA) {
      this.pos += 1;
      this.entry(this.pos - 1);
      this.pushSpaces(true);
      this.flowKey = false;
      this.key = Key.None;
    }
    this.pushIndicators();
    lineEnd = this.lineEnd();
    const c = this.lineChar(lineEnd);
    if (c !== c) return State.Flow;
    switch (c) {
      case HASH:
        this.pos = lineEnd;
        return State.Flow;
      case LBRACE:
      case LBRACKET:
        this.entry(this.pos);
        this.pos += 1;
        this.flowKey = false;
        this.flowLevel += 1;
        this.key = Key.None;
        this.depthCheck(this.pos - 1);
        return State.Flow;
      case RBRACE:
      case RBRACKET:
        this.pos += 1;
        this.flowKey = true;
        this.flowLevel -= 1;
        this.key = Key.FlowEnd;
        return this.flowLevel ? State.Flow : State.Doc;
      case STAR:
        this.alias();
        return State.Flow;
      case DQUOTE:
      case SQUOTE:
        this.flowKey = true;
        this.key = Key.Quoted;
        return this.parseQuotedScalar();
      case COLON: {
        const next = this.code(this.pos + 1);
        if (this.flowKey || isEmpty(next) || next === COMMA) {
          this.valueIndicator(this.pos);
          this.flowKey = false;
          this.pos += 1;
          this.pushSpaces(true);
          return State.Flow;
        }
        this.flowKey = false;
        return this.parsePlainScalar();
      }
      default:
        this.flowKey = false;
        return this.parsePlainScalar();
    }
  }

  /** `line.startsWith('---' | '...') && isEmpty(line[3])`, with the line ending at `lineEnd`. */
  private isDocMarkerOnLine(lineEnd: number): boolean {
    const p = this.pos;
    const c = this.code(p);
    if (!(c === DASH || c === DOT) || p + 3 > lineEnd) return false;
    return this.code(p + 1) === c && this.code(p + 2) === c && (p + 3 >= lineEnd || isEmpty(this.code(p + 3)));
  }

  /**
   * The lexer finds the closing quote first (for `'`, one not doubled; for `"`, one after an even run of
   * backslashes), then cuts the scalar at the first line break before it that the next line's indentation
   * does not continue. A quote never closed runs to the end. This walks forward once and gives the same end.
   */
  private parseQuotedScalar(): State {
    const quote = this.code(this.pos);
    let i = this.pos + 1;
    let close = -1;
    let cut = -1;
    while (i < this.len) {
      const c = this.code(i);
      if (c === quote) {
        if (quote === SQUOTE && this.code(i + 1) === SQUOTE) {
          i += 2;
          continue;
        }
        close = i;
        break;
      }
      if (c === BACKSLASH && quote === DQUOTE) {
        let j = i;
        while (this.code(j) === BACKSLASH) j++;
        // An odd run escapes a quote right after it; anything else after the run is looked at normally.
        i = (j - i) % 2 === 1 && this.code(j) === DQUOTE ? j + 1 : j;
        continue;
      }
      if (c === LF && cut === -1) {
        const cs = this.continueScalar(i + 1);
        if (cs === -1) {
          cut = i;
        } else {
          i = Math.max(cs, i + 1);
          continue;
        }
      }
      i++;
    }
    let end: number;
    if (close === -1) end = this.len;
    else if (cut !== -1) end = cut - (this.code(cut - 1) === CR ? 2 : 1);
    else end = close;
    this.pos = Math.max(this.pos, Math.min(end + 1, this.len));
    return this.flowLevel ? State.Flow : State.Doc;
  }

  private parseBlockScalarHeader(): void {
    this.blockScalarIndent = -1;
    this.blockScalarKeep = false;
    let i = this.pos;
    for (;;) {
      const c = this.code(++i);
      if (c === 43 /* + */) this.blockScalarKeep = true;
      else if (c > 48 && c <= 57) this.blockScalarIndent = c - 48 - 1;
      else if (c !== DASH) break;
    }
    while (this.pos < this.len) {
      const c = this.code(this.pos);
      if (isEmpty(c) || c === HASH) break;
      this.pos += 1;
    }
  }

  private parseBlockScalar(): State {
    let nl = this.pos - 1;
    let indent = 0;
    let i = this.pos;
    for (; i < this.len; ++i) {
      const c = this.code(i);
      if (c === SPACE) indent += 1;
      else if (c === LF) {
        nl = i;
        indent = 0;
      } else if (c === CR && this.code(i + 1) === LF) {
        continue;
      } else break;
    }
    if (indent >= this.indentNext) {
      if (this.blockScalarIndent === -1) this.indentNext = indent;
      else this.indentNext = this.blockScalarIndent + (this.indentNext === 0 ? 1 : this.indentNext);
      do {
        const cs = this.continueScalar(nl + 1);
        if (cs === -1) break;
        nl = this.src.indexOf('\n', cs);
      } while (nl !== -1);
      if (nl === -1) nl = this.len;
    }
    // Trailing insufficiently indented tabs are part of the scalar (the parser reports them).
    i = nl + 1;
    let c = this.code(i);
    while (c === SPACE) c = this.code(++i);
    if (c === TAB) {
      while (c === TAB || c === SPACE || c === CR || c === LF) c = this.code(++i);
      nl = i - 1;
    } else if (!this.blockScalarKeep) {
      for (;;) {
        let j = nl - 1;
        let d = this.code(j);
        if (d === CR) d = this.code(--j);
        const lastChar = j;
        while (d === SPACE) d = this.code(--j);
        if (d === LF && j >= this.pos && j + 1 + indent > lastChar) nl = j;
        else break;
      }
    }
    this.pos = Math.max(this.pos, Math.min(nl + 1, this.len));
    return this.parseLineStart();
  }

  private parsePlainScalar(): State {
    const inFlow = this.flowLevel > 0;
    const start = this.pos;
    let end = this.pos - 1;
    let i = this.pos - 1;
    while (++i < this.len) {
      let c = this.code(i);
      if (c === COLON) {
        const next = this.code(i + 1);
        if (isEmpty(next) || (inFlow && isFlowIndicator(next))) break;
        end = i;
      } else if (isEmpty(c)) {
        let next = this.code(i + 1);
        if (c === CR) {
          if (next === LF) {
            i += 1;
            c = LF;
            next = this.code(i + 1);
          } else {
            end = i;
          }
        }
        if (next === HASH || (inFlow && isFlowIndicator(next))) break;
        if (c === LF) {
          const cs = this.continueScalar(i + 1);
          if (cs === -1) break;
          i = Math.max(i, cs - 2); // to advance, but still account for ' #'
        }
      } else {
        if (inFlow && isFlowIndicator(c)) break;
        end = i;
      }
    }
    this.pos = Math.max(this.pos, end + 1);
    this.key = Key.Plain;
    this.keyStart = start;
    this.keyEnd = this.pos;
    return inFlow ? State.Flow : State.Doc;
  }

  private pushIndicators(): void {
    for (;;) {
      const c = this.code(this.pos);
      if (c === BANG) {
        this.pushTag();
        this.pushSpaces(true);
      } else if (c === AMP) {
        if (++this.anchors > this.limits.maxAnchors) {
          this.fail(this.pos, `more than ${count(this.limits.maxAnchors)} anchors (&name); the limit is ${count(this.limits.maxAnchors)}`);
        }
        this.pushUntilNotAnchorChar();
        this.pushSpaces(true);
      } else if (c === DASH || c === QUESTION || c === COLON) {
        const inFlow = this.flowLevel > 0;
        const c1 = this.code(this.pos + 1);
        if (!(isEmpty(c1) || (inFlow && isFlowIndicator(c1)))) return;
        if (!inFlow) this.indentNext = this.indentValue + 1;
        else if (this.flowKey) this.flowKey = false;
        if (c === COLON) this.valueIndicator(this.pos);
        else {
          if (c === QUESTION) this.slowOnly('an explicit key (? )');
          this.key = Key.None;
        }
        this.pos += 1;
        this.pushSpaces(true);
      } else {
        return;
      }
    }
  }

  private pushTag(): void {
    if (this.code(this.pos + 1) === LT) {
      let i = this.pos + 2;
      let c = this.code(i);
      while (!isEmpty(c) && c !== GT) c = this.code(++i);
      this.pos = c === GT ? i + 1 : i;
      return;
    }
    let i = this.pos + 1;
    for (;;) {
      const c = this.code(i);
      if (c < 128 && TAG_CHARS[c] === 1) i += 1;
      else if (c === PERCENT && isHex(this.code(i + 1)) && isHex(this.code(i + 2))) i += 3;
      else break;
    }
    this.pos = i;
  }
}
