/**
 * A strict, incremental HTTP/1.1 message parser (RFC 9112 syntax, RFC 9110 semantics) for the L7 proxy:
 * client requests and upstream responses, read straight off `net`/`tls` sockets.
 *
 * How it works
 *  - A head (start line + field lines) is parsed in one pass over the incoming Buffer, recording offsets;
 *    only once it is complete are strings made: one latin1 string of the whole head, then `slice`s of it
 *    (one native call per head instead of one per field). Methods and common field names are interned.
 *  - A head that spans chunks is copied into a small carry-over buffer; later chunks are only scanned
 *    for the end of the head (CRLF CRLF, failing fast on a bare CR or LF) and appended, and the head is
 *    parsed once, when complete. Feeding one byte at a time is linear, and gives the same result as
 *    feeding the whole input at once (the head parser's verdict on a prefix is "incomplete" or final).
 *  - Bodies are delivered as subarrays of the input (no copy). Chunked framing is a byte state machine.
 *  - Callbacks are properties set once per connection; nothing allocates a closure per message.
 *
 * Strictness (each is a ParseError; codes and statuses in errors.ts, where we are stricter than Node's
 * llhttp is listed in STRICTER_THAN_NODE):
 *  - Lines end with CRLF only; a bare CR or bare LF anywhere in a head or chunk line is an error. Empty
 *    lines (CRLF) before a start line are skipped (RFC 9112 §2.2), counted against maxHeaderBytes.
 *  - Start line: single SPs; method a token AND one of METHODS (else 501); target of VCHAR except "#",
 *    in origin-form, absolute-form (http/https, no userinfo), "*" (OPTIONS only) or authority-form
 *    (CONNECT only, port required); HTTP/1.0 or HTTP/1.1 only (else 505).
 *  - Status line: "HTTP/1.x SP 3DIGIT [SP reason]" with a status in 100-599 (a missing SP before an
 *    empty reason is accepted: it is common, and has no bearing on framing).
 *  - Field lines: no obs-fold (no line may start with SP/HTAB), name = 1*tchar immediately followed by
 *    ":", value without NUL/CTL/DEL (HTAB allowed, obs-text allowed), OWS trimmed both sides.
 *  - Content-Length: 1*DIGIT, at most 2^53-1, exactly one field (two equal ones are still refused: it is
 *    never needed, and rejecting is simpler than proving the copies equal after every hop).
 *  - Transfer-Encoding: comma-separated tokens (no empty elements, no parameters), case-insensitive,
 *    "chunked" at most once; never with Content-Length; never in HTTP/1.0. Requests: the final coding
 *    must be chunked (400) and it must be the only one (501). Responses: RFC 9112 §6.3 — a final coding
 *    other than chunked means the body runs until the connection closes.
 *  - Content-Length, Transfer-Encoding and Connection may not contain HTAB after their first character
 *    (llhttp misreads a trailing HTAB in them; where parsers can disagree on framing, we refuse).
 *  - An Upgrade field counts only when non-empty (as in llhttp).
 *  - Requests: HTTP/1.1 needs exactly one Host; Host must be uri-host[:port] (port 1*5DIGIT ≤ 65535;
 *    empty Host is allowed); an absolute-form authority must equal Host case-insensitively (no default
 *    port folding). Connection must be a token list. Connection: upgrade in HTTP/1.0 is refused.
 *  - Chunks: size = 1*16HEXDIG ≤ 2^53-1 directly followed by ";" or CRLF (no whitespace); extensions
 *    `;name[=token|quoted-string]` are validated and discarded, at most maxHeaderBytes per message
 *    (413); data must be followed by CRLF. Trailers are parsed like fields and given to onTrailers;
 *    a trailer named like a field the parser interprets (Host, Content-Length, Transfer-Encoding,
 *    Connection, Upgrade, Expect) is refused.
 *  - Limits: head > maxHeaderBytes → 431, target > maxTargetBytes → 414, fields > maxHeaders → 431.
 *
 * After a request head with `upgrade` (Connection: upgrade + Upgrade) or a CONNECT request, and after a
 * 101 response (or a 2xx answer to CONNECT, see `expectTunnel`), the parser stops: execute() returns the
 * offset of the first byte after the head and consumes nothing more (phase `upgraded`). An upgrade request
 * stops after its head even if it declares a body (as llhttp does): a proxy that forwards it must not go
 * back to parsing that connection unless the upstream refused the upgrade AND the body was accounted for
 * — closing is the safe answer. After a message with keepAlive false the parser stops too (phase `done`).
 */
import * as C from './constants.js';
import { COMMON_CONNECTION_TOKENS, COMMON_HEADERS, DEFAULT_LIMITS, HeaderId, METHODS, capitalize, type Limits } from './constants.js';
import { ParseError, type ParseErrorCode } from './errors.js';

// The byte tables, bound locally: module exports may be accessor properties (esbuild's CommonJS output),
// which a per-byte loop must not go through.
const TCHAR = C.TCHAR;
const FIELD_VALUE_CHAR = C.FIELD_VALUE_CHAR;
const REASON_CHAR = C.REASON_CHAR;
const TARGET_CHAR = C.TARGET_CHAR;
const REG_NAME_CHAR = C.REG_NAME_CHAR;
const IPV6_CHAR = C.IPV6_CHAR;
const HEX_VALUE = C.HEX_VALUE;
const QDTEXT = C.QDTEXT;
const QUOTED_PAIR_CHAR = C.QUOTED_PAIR_CHAR;

export type { Limits } from './constants.js';
export { ParseError, type ParseErrorCode } from './errors.js';

export enum Kind {
  Request = 0,
  Response = 1,
}

export interface MessageHead {
  /** Request: the method, always an interned string ('' in responses). */
  method: string;
  /** Request: the request-target as sent ('' in responses). */
  target: string;
  /** Response: the status code (0 in requests). */
  status: number;
  /** Response: the reason phrase ('' when absent, and in requests). */
  reason: string;
  /** 0 or 1: HTTP/1.0 or HTTP/1.1. */
  versionMinor: number;
  /** Flat [name, value, name, value, …]: names as sent (common ones interned), values with OWS trimmed. */
  headers: string[];
  /** Request: the Host field's value (possibly ''), undefined when absent (HTTP/1.0 only). */
  host: string | undefined;
  /** -1 when absent (and when chunked). */
  contentLength: number;
  chunked: boolean;
  /** Whether the connection may carry another message after this one (version + Connection + framing). */
  keepAlive: boolean;
  /** Request: Connection: upgrade and an Upgrade field. Response: a 101, or a 2xx answer to CONNECT. */
  upgrade: boolean;
  /** Request: Expect: 100-continue. */
  expectContinue: boolean;
  /** The options named in Connection, lower-cased (hop-by-hop fields to remove). Shared and frozen when empty. */
  connectionTokens: readonly string[];
  /** Bytes of the head from the start line to the final CRLF inclusive. */
  headBytes: number;
}

/** The parser's coarse state, for the owner of the connection. */
export type Phase = 'idle' | 'head' | 'body' | 'upgraded' | 'done' | 'error';

/** Is `c` (a byte) a tchar (RFC 9110 §5.6.2)? */
export function isTokenChar(c: number): boolean {
  return TCHAR[c] === 1;
}

/** Is `s` a non-empty token (method, field name, coding)? */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/** The value of the first field named `lowerName` (given in lower case), matched case-insensitively. */
export function headerValue(head: Pick<MessageHead, 'headers'>, lowerName: string): string | undefined {
  const h = head.headers;
  const len = lowerName.length;
  for (let i = 0; i + 1 < h.length; i += 2) {
    const name = h[i] as string;
    if (name === lowerName || (name.length === len && equalsLower(name, lowerName))) return h[i + 1];
  }
  return undefined;
}

/** Case-insensitive (ASCII) comparison of `s` with an already lower-case `lower` of the same length. */
function equalsLower(s: string, lower: string): boolean {
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Interning tables

interface Spelling {
  str: string;
  bytes: Uint8Array;
}

interface NameEntry {
  id: HeaderId;
  /** The lower-case name, as bytes and as the interned string. */
  lower: Uint8Array;
  lowerStr: string;
  /** The Capitalized-Form spelling (same length). */
  canon: Uint8Array;
  canonStr: string;
  /** Any further interned spellings ("X-Request-ID", "TE", …). */
  others: Spelling[];
}

const bytesOf = (s: string): Uint8Array => Uint8Array.from(s, (ch) => ch.charCodeAt(0));

/** Buckets by (length, first letter case-folded): `(len << 5) | (firstByte & 31)`, for length < 32. */
const NAME_BUCKETS: (NameEntry[] | undefined)[] = new Array(32 * 32).fill(undefined);
for (const [lower, id, ...extra] of COMMON_HEADERS) {
  const canon = capitalize(lower);
  const others = extra.filter((x) => x !== lower && x !== canon).map((str) => ({ str, bytes: bytesOf(str) }));
  const entry: NameEntry = { id, lower: bytesOf(lower), lowerStr: lower, canon: bytesOf(canon), canonStr: canon, others };
  const k = (lower.length << 5) | (lower.charCodeAt(0) & 31);
  (NAME_BUCKETS[k] ??= []).push(entry);
}

const METHOD_BUCKETS: (Spelling[] | undefined)[] = new Array(32 * 32).fill(undefined);
for (const m of METHODS) {
  const k = (m.length << 5) | (m.charCodeAt(0) & 31);
  (METHOD_BUCKETS[k] ??= []).push({ str: m, bytes: bytesOf(m) });
}

const CONNECTION_TOKENS: Spelling[] = COMMON_CONNECTION_TOKENS.map((str) => ({ str, bytes: bytesOf(str) }));

const NO_TOKENS: readonly string[] = Object.freeze([]);

// ---------------------------------------------------------------------------------------------------
// Bytes and states

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const SEMI = 0x3b;
const COMMA = 0x2c;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const SLASH = 0x2f;
const STAR = 0x2a;
const QUESTION = 0x3f;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const PERCENT = 0x25;

/** Results of the head/field parsers besides an offset. */
const INCOMPLETE = -1;
const FAILED = -2;
/** Result of scan(): a bare CR or LF was found at this.scanBadAt. */
const SCAN_BAD = -3;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** The carry buffer starts at this size, and is dropped after use when it grew beyond it. */
const CARRY_KEEP_BYTES = 1024;
const MAX_CHUNK_DIGITS = 16;

const H_HOST = HeaderId.Host;
const H_CONTENT_LENGTH = HeaderId.ContentLength;
const H_TRANSFER_ENCODING = HeaderId.TransferEncoding;
const H_CONNECTION = HeaderId.Connection;
const H_UPGRADE = HeaderId.Upgrade;
const H_EXPECT = HeaderId.Expect;

const enum S {
  MessageStart,
  /** A CR of an empty line before the start line was read. */
  LeadLF,
  /** A head spans chunks: bytes accumulate in the carry buffer. */
  Head,
  BodyLength,
  BodyEof,
  ChunkSizeStart,
  ChunkSize,
  ChunkExtNameStart,
  ChunkExtName,
  ChunkExtValueStart,
  ChunkExtToken,
  ChunkExtQuoted,
  ChunkExtQuotedPair,
  ChunkExtQuotedEnd,
  ChunkSizeLF,
  ChunkData,
  ChunkDataCR,
  ChunkDataLF,
  TrailersStart,
  /** A trailer section spans chunks: bytes accumulate in the carry buffer. */
  Trailers,
  Upgraded,
  Done,
}

const enum Body {
  None,
  Length,
  Chunked,
  Eof,
  Tunnel,
  /** A 1xx other than 101: the final response follows. */
  Interim,
}

const enum Form {
  Origin,
  Absolute,
  Authority,
  Asterisk,
}

const noop = (): void => {};

/**
 * b[s, e) as a latin1 string: Buffer's own `latin1Slice` (what toString('latin1') ends in) without the
 * encoding lookup and argument checks of toString, once per head.
 */
const latin1: (b: Buffer, s: number, e: number) => string =
  typeof (Buffer.prototype as unknown as { latin1Slice?: unknown }).latin1Slice === 'function'
    ? (b, s, e) => (b as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(s, e)
    : (b, s, e) => b.toString('latin1', s, e);

export class HttpParser {
  /** A head is complete. May call pause(). For a request with `upgrade` (or CONNECT), parsing stops after it. */
  onHead: (head: MessageHead) => void = noop;
  /** Decoded body bytes: a subarray of the buffer given to execute() (valid until that buffer is reused). */
  onBody: (chunk: Buffer) => void = noop;
  /** The trailer fields of a chunked message, flat pairs like `headers`; not called when there are none. */
  onTrailers: (trailers: string[]) => void = noop;
  /** The message is complete; the parser is ready for the next one (pipelining). Not called for 1xx or tunnels. */
  onComplete: () => void = noop;

  /**
   * Responses: the request this response answers was HEAD, so the response has no body whatever its
   * fields say. Set it before the response's head arrives (e.g. in the previous response's onComplete);
   * it applies to one final response and is cleared when that response's head has been read.
   */
  expectNoBody = false;
  /** Responses: the request was CONNECT, so a 2xx response ends parsing (a tunnel). Cleared like expectNoBody. */
  expectTunnel = false;

  /** Set when parsing failed; execute() then consumes nothing until reset(). */
  error: ParseError | undefined = undefined;

  readonly kind: Kind;
  readonly limits: Readonly<Limits>;
  private readonly maxHeaderBytes: number;
  private readonly maxTargetBytes: number;
  private readonly maxHeaders: number;

  private state: S = S.MessageStart;
  private paused = false;
  /** Bytes of empty lines before the current start line. */
  private leadBytes = 0;
  /** Parsing a trailer section rather than a head. */
  private inTrailers = false;

  // Carry-over buffer for a head (or trailer section) spanning chunks, and the scanner's state.
  private carry: Buffer | undefined = undefined;
  private carryLen = 0;
  private scanLineLen = 0;
  private scanPrevCR = false;
  private scanBadAt = 0;
  private scanBadCode: ParseErrorCode = 'HPE_CR_EXPECTED';

  // Field lines of the section being parsed: [nameStart, nameEnd, valueStart, valueEnd] per field.
  private readonly offs: Int32Array;
  private readonly ids: Uint8Array;
  private readonly names: (string | undefined)[];
  private nFields = 0;

  // Start line.
  private method = '';
  private targetStart = 0;
  private targetEnd = 0;
  private form: Form = Form.Origin;
  private authStart = 0;
  private authEnd = 0;
  private versionMinor = 1;
  private status = 0;
  private reasonStart = 0;
  private reasonEnd = 0;

  // What the fields said.
  private clCount = 0;
  private contentLength = -1;
  private teSeen = false;
  private teChunkedFinal = false;
  private teChunkedCount = 0;
  private teOther = false;
  private hostCount = 0;
  private hostField = -1;
  private connection = false;
  private connClose = false;
  private connKeepAlive = false;
  private connUpgrade = false;
  private upgradeField = false;
  private expectContinue = false;

  /** Responses: a 1xx before the final response said Connection: close (the connection will not be reused). */
  private interimClose = false;

  // The message being read.
  private body: Body = Body.None;
  private keepAlive = true;
  private remaining = 0;
  private chunkSize = 0;
  private chunkDigits = 0;
  private extBytes = 0;

  constructor(kind: Kind, limits: Partial<Limits> = {}) {
    const l: Limits = { ...DEFAULT_LIMITS, ...limits };
    for (const k of ['maxHeaderBytes', 'maxTargetBytes', 'maxHeaders'] as const) {
      if (!Number.isSafeInteger(l[k]) || l[k] <= 0)
        throw new RangeError(`HttpParser: limits.${k} must be a positive integer, got ${String(l[k])}`);
    }
    this.kind = kind;
    this.limits = Object.freeze(l);
    this.maxHeaderBytes = l.maxHeaderBytes;
    this.maxTargetBytes = l.maxTargetBytes;
    this.maxHeaders = l.maxHeaders;
    this.offs = new Int32Array(l.maxHeaders * 4);
    this.ids = new Uint8Array(l.maxHeaders);
    this.names = new Array<string | undefined>(l.maxHeaders).fill(undefined);
  }

  get phase(): Phase {
    if (this.error !== undefined) return 'error';
    switch (this.state) {
      case S.MessageStart:
      case S.LeadLF:
        return 'idle';
      case S.Head:
        return 'head';
      case S.Upgraded:
        return 'upgraded';
      case S.Done:
        return 'done';
      default:
        return 'body';
    }
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Stop consuming after the current callback returns; execute() returns the offset reached. */
  pause(): void {
    this.paused = true;
  }

  /** Allow consumption again; call execute() with the bytes from the offset it returned. */
  resume(): void {
    this.paused = false;
  }

  /** Back to a fresh connection's state (keeps callbacks, limits and the carry buffer's memory). */
  reset(): void {
    this.state = S.MessageStart;
    this.error = undefined;
    this.paused = false;
    this.leadBytes = 0;
    this.inTrailers = false;
    this.carryLen = 0;
    this.expectNoBody = false;
    this.expectTunnel = false;
    this.interimClose = false;
    this.remaining = 0;
  }

  /**
   * Parse `data` from `start`. Returns the offset of the first byte not consumed: data.length when all
   * was consumed; less when paused, upgraded, done (keepAlive false) or failed (then `error` is set).
   * Bytes before the returned offset must not be given again; bytes from it on may be (after resume()).
   */
  execute(data: Buffer, start = 0): number {
    let p = start;
    const end = data.length;
    while (p < end && !this.paused && this.error === undefined) {
      switch (this.state) {
        case S.MessageStart: {
          const c = data[p] as number;
          if (c === CR) {
            if (++this.leadBytes >= this.maxHeaderBytes) return this.failAt(p, 'HPE_HEADER_OVERFLOW');
            this.state = S.LeadLF;
            p++;
            break;
          }
          if (c === LF) return this.failAt(p, 'HPE_CR_EXPECTED');
          this.inTrailers = false;
          const q = this.startSection(data, p, end);
          if (q === FAILED) return p;
          p = q;
          break;
        }
        case S.LeadLF:
          if (data[p] !== LF) return this.failAt(p, 'HPE_LF_EXPECTED');
          this.leadBytes++;
          this.state = S.MessageStart;
          p++;
          break;
        case S.TrailersStart: {
          const q = this.startSection(data, p, end);
          if (q === FAILED) return p;
          p = q;
          break;
        }
        case S.Head:
        case S.Trailers: {
          const q = this.continueSection(data, p, end);
          if (q === FAILED) return p;
          p = q;
          break;
        }
        case S.BodyLength: {
          const n = end - p < this.remaining ? end - p : this.remaining;
          const chunk = data.subarray(p, p + n);
          p += n;
          this.remaining -= n;
          this.onBody(chunk);
          if (this.remaining === 0) this.complete();
          break;
        }
        case S.ChunkData: {
          const n = end - p < this.remaining ? end - p : this.remaining;
          const chunk = data.subarray(p, p + n);
          p += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S.ChunkDataCR;
          this.onBody(chunk);
          break;
        }
        case S.BodyEof:
          this.onBody(data.subarray(p, end));
          p = end;
          break;
        case S.Upgraded:
        case S.Done:
          return p;
        default: {
          const q = this.chunkLines(data, p, end);
          if (q === FAILED) return p;
          p = q;
        }
      }
    }
    return p;
  }

  /**
   * The peer closed its side (EOF). A close-delimited response body completes (onComplete); EOF between
   * messages, or after an upgrade, is clean; EOF inside a message sets `error`. Nothing is parsed after.
   */
  finish(): void {
    if (this.error !== undefined) return;
    switch (this.state) {
      case S.MessageStart:
      case S.LeadLF:
      case S.Upgraded:
      case S.Done:
        break;
      case S.BodyEof:
        this.complete();
        break;
      case S.Head:
      case S.Trailers:
        // Report what is wrong with the partial section, if anything, as one-shot parsing would.
        if (this.parseSection(this.carry as Buffer, 0, this.carryLen) !== FAILED) this.fail('HPE_INVALID_EOF_STATE');
        break;
      default:
        this.fail('HPE_INVALID_EOF_STATE');
    }
    if (this.error === undefined && this.state !== S.Upgraded) this.state = S.Done;
  }

  // -------------------------------------------------------------------------------------------------
  // Sections: a head, or a trailer section. Parsed in one pass when whole; carried over otherwise.

  private fail(code: ParseErrorCode): number {
    this.error = new ParseError(code);
    return FAILED;
  }

  private reject(code: ParseErrorCode): false {
    this.fail(code);
    return false;
  }

  private failAt(p: number, code: ParseErrorCode): number {
    this.fail(code);
    return p;
  }

  private budget(): number {
    return this.inTrailers ? this.maxHeaderBytes : this.maxHeaderBytes - this.leadBytes;
  }

  private parseSection(b: Buffer, s: number, e: number): number {
    if (this.inTrailers) {
      this.nFields = 0;
      return this.fields(b, s, e, false);
    }
    return this.parseHead(b, s, e);
  }

  /** A section starts at data[p]: parse it in place if whole, else carry it over. */
  private startSection(data: Buffer, p: number, end: number): number {
    const budget = this.budget();
    const lim = end - p > budget ? p + budget : end;
    const r = this.parseSection(data, p, lim);
    if (r >= 0) {
      this.sectionDone(data, p, r);
      return r;
    }
    if (r === FAILED) return FAILED;
    if (lim - p >= budget) return this.fail('HPE_HEADER_OVERFLOW');
    // Incomplete: keep the bytes, and remember where the scanner stands (line length, last byte CR).
    this.carryLen = 0;
    this.append(data, p, end);
    const carry = this.carry as Buffer;
    const lastLF = carry.lastIndexOf(LF, this.carryLen - 1);
    this.scanLineLen = this.carryLen - (lastLF + 1);
    this.scanPrevCR = carry[this.carryLen - 1] === CR;
    this.state = this.inTrailers ? S.Trailers : S.Head;
    return end;
  }

  /** More bytes of a carried-over section: scan for its end, then parse the whole of it once. */
  private continueSection(data: Buffer, p: number, end: number): number {
    const budget = this.budget();
    const room = budget - this.carryLen;
    const lim = end - p > room ? p + room : end;
    const q = this.scan(data, p, lim);
    if (q >= 0) {
      this.append(data, p, q);
      const carry = this.carry as Buffer;
      const r = this.parseSection(carry, 0, this.carryLen);
      if (r === FAILED) return FAILED;
      if (r !== this.carryLen)
        throw new Error(`HttpParser: scanner and parser disagree on the end of a section (${r} vs ${this.carryLen})`);
      this.carryLen = 0;
      // An idle keep-alive connection keeps at most a small carry buffer.
      if (carry.length > CARRY_KEEP_BYTES) this.carry = undefined;
      this.sectionDone(carry, 0, r);
      return q;
    }
    if (q === SCAN_BAD) {
      this.append(data, p, this.scanBadAt + 1);
      if (this.parseSection(this.carry as Buffer, 0, this.carryLen) === FAILED) return FAILED;
      return this.fail(this.scanBadCode);
    }
    this.append(data, p, lim);
    if (this.carryLen >= budget) {
      if (this.parseSection(this.carry as Buffer, 0, this.carryLen) === FAILED) return FAILED;
      return this.fail('HPE_HEADER_OVERFLOW');
    }
    return lim;
  }

  /** Find the end of a section (the empty line) in b[p, e). Returns the offset after it, INCOMPLETE or SCAN_BAD. */
  private scan(b: Buffer, p: number, e: number): number {
    let len = this.scanLineLen;
    let cr = this.scanPrevCR;
    for (; p < e; p++) {
      const c = b[p] as number;
      if (c === LF) {
        if (!cr) return this.scanBad(p, 'HPE_CR_EXPECTED');
        if (len === 1) return p + 1;
        len = 0;
        cr = false;
      } else if (cr) {
        return this.scanBad(p, 'HPE_LF_EXPECTED');
      } else {
        cr = c === CR;
        len++;
      }
    }
    this.scanLineLen = len;
    this.scanPrevCR = cr;
    return INCOMPLETE;
  }

  private scanBad(p: number, code: ParseErrorCode): number {
    this.scanBadAt = p;
    this.scanBadCode = code;
    return SCAN_BAD;
  }

  private append(data: Buffer, s: number, e: number): void {
    const need = this.carryLen + (e - s);
    let carry = this.carry;
    if (carry === undefined || carry.length < need) {
      let size = carry === undefined ? CARRY_KEEP_BYTES : carry.length * 2;
      while (size < need) size *= 2;
      const grown = Buffer.allocUnsafe(Math.min(size, Math.max(need, this.maxHeaderBytes)));
      if (carry !== undefined) carry.copy(grown, 0, 0, this.carryLen);
      this.carry = carry = grown;
    }
    data.copy(carry, this.carryLen, s, e);
    this.carryLen = need;
  }

  private sectionDone(b: Buffer, s: number, r: number): void {
    if (this.inTrailers) this.trailersDone(b, s, r);
    else this.headDone(b, s, r);
  }

  // -------------------------------------------------------------------------------------------------
  // Heads

  /** Parse a head in b[s, e). Returns the offset after its final CRLF, INCOMPLETE, or FAILED (error set). */
  private parseHead(b: Buffer, s: number, e: number): number {
    this.nFields = 0;
    this.clCount = 0;
    this.contentLength = -1;
    this.teSeen = false;
    this.teChunkedFinal = false;
    this.teChunkedCount = 0;
    this.teOther = false;
    this.hostCount = 0;
    this.hostField = -1;
    this.connection = false;
    this.connClose = false;
    this.connKeepAlive = false;
    this.connUpgrade = false;
    this.upgradeField = false;
    this.expectContinue = false;
    let p = this.kind === Kind.Request ? this.requestLine(b, s, e) : this.statusLine(b, s, e);
    if (p < 0) return p;
    p = this.fields(b, p, e, true);
    if (p < 0) return p;
    const ok = this.kind === Kind.Request ? this.requestSemantics(b) : this.responseSemantics();
    return ok ? p : FAILED;
  }

  private requestLine(b: Buffer, s: number, e: number): number {
    let p = s;
    while (p < e && TCHAR[b[p] as number] === 1) p++;
    if (p === e) return INCOMPLETE;
    if (b[p] !== SP || p === s) return this.fail('HPE_INVALID_METHOD');
    const method = lookupMethod(b, s, p);
    if (method === undefined) return this.fail('HPE_METHOD_NOT_IMPLEMENTED');
    this.method = method;

    const ts = ++p;
    while (
      p + 4 <= e &&
      (TARGET_CHAR[b[p] as number]! &
        TARGET_CHAR[b[p + 1] as number]! &
        TARGET_CHAR[b[p + 2] as number]! &
        TARGET_CHAR[b[p + 3] as number]!) ===
        1
    )
      p += 4;
    while (p < e && TARGET_CHAR[b[p] as number] === 1) p++;
    if (p - ts > this.maxTargetBytes) return this.fail('HPE_URI_TOO_LONG');
    if (p === e) return INCOMPLETE;
    if (b[p] !== SP || p === ts) return this.fail('HPE_INVALID_URL');
    this.targetStart = ts;
    this.targetEnd = p;
    if (!this.classifyTarget(b, ts, p)) return FAILED;

    p = this.version(b, p + 1, e);
    if (p < 0) return p;
    return this.lineEnd(b, p, e, 'HPE_INVALID_VERSION');
  }

  private statusLine(b: Buffer, s: number, e: number): number {
    let p = this.version(b, s, e);
    if (p < 0) return p;
    if (p === e) return INCOMPLETE;
    if (b[p] !== SP) return this.fail('HPE_INVALID_STATUS');
    p++;
    let status = 0;
    for (let i = 0; i < 3; i++, p++) {
      if (p === e) return INCOMPLETE;
      const d = (b[p] as number) - 0x30;
      if (d < 0 || d > 9) return this.fail('HPE_INVALID_STATUS');
      status = status * 10 + d;
    }
    if (status < 100 || status > 599) return this.fail('HPE_INVALID_STATUS');
    this.status = status;
    if (p === e) return INCOMPLETE;
    let rs = p;
    if (b[p] === SP) {
      rs = ++p;
      while (p < e && REASON_CHAR[b[p] as number] === 1) p++;
    }
    this.reasonStart = rs;
    this.reasonEnd = p;
    return this.lineEnd(b, p, e, 'HPE_INVALID_STATUS');
  }

  /** CRLF at b[p]: the offset after it, INCOMPLETE, or FAILED (`code` for anything but a bare CR/LF). */
  private lineEnd(b: Buffer, p: number, e: number, code: ParseErrorCode): number {
    if (p === e) return INCOMPLETE;
    const c = b[p];
    if (c !== CR) return this.fail(c === LF ? 'HPE_CR_EXPECTED' : code);
    if (p + 1 === e) return INCOMPLETE;
    if (b[p + 1] !== LF) return this.fail('HPE_LF_EXPECTED');
    return p + 2;
  }

  /** "HTTP/" DIGIT "." DIGIT at b[p]: sets versionMinor; 505 for a well-formed version other than 1.0/1.1. */
  private version(b: Buffer, p: number, e: number): number {
    for (let i = 0; i < 8; i++) {
      if (p + i === e) return INCOMPLETE;
      const c = b[p + i] as number;
      const ok = i < 5 ? c === HTTP_SLASH[i] : i === 6 ? c === 0x2e : c >= 0x30 && c <= 0x39;
      if (!ok) return this.fail('HPE_INVALID_VERSION');
    }
    const major = (b[p + 5] as number) - 0x30;
    const minor = (b[p + 7] as number) - 0x30;
    if (major !== 1 || minor > 1) return this.fail('HPE_VERSION_NOT_SUPPORTED');
    this.versionMinor = minor;
    return p + 8;
  }

  /** Which form the request-target b[ts, te) has, and is it allowed with this method? */
  private classifyTarget(b: Buffer, ts: number, te: number): boolean {
    const c = b[ts];
    if (this.method === 'CONNECT') {
      // authority-form = uri-host ":" port
      if (!validAuthority(b, ts, te, true, false)) return this.reject('HPE_INVALID_URL');
      this.form = Form.Authority;
      return true;
    }
    if (c === SLASH) {
      this.form = Form.Origin;
      return true;
    }
    if (c === STAR) {
      if (te - ts !== 1 || this.method !== 'OPTIONS') return this.reject('HPE_INVALID_URL');
      this.form = Form.Asterisk;
      return true;
    }
    // absolute-form, for the schemes a proxy serves: http:// and https:// (scheme case-insensitive)
    let p = ts;
    if (
      te - p >= 7 &&
      ((b[p] as number) | 0x20) === 0x68 &&
      ((b[p + 1] as number) | 0x20) === 0x74 &&
      ((b[p + 2] as number) | 0x20) === 0x74 &&
      ((b[p + 3] as number) | 0x20) === 0x70
    ) {
      p += 4;
      if (((b[p] as number) | 0x20) === 0x73) p++;
      if (te - p >= 3 && b[p] === COLON && b[p + 1] === SLASH && b[p + 2] === SLASH) {
        const as = p + 3;
        let q = as;
        while (q < te && b[q] !== SLASH && b[q] !== QUESTION) q++;
        if (validAuthority(b, as, q, false, false)) {
          this.form = Form.Absolute;
          this.authStart = as;
          this.authEnd = q;
          return true;
        }
      }
    }
    return this.reject('HPE_INVALID_URL');
  }

  /**
   * Field lines from b[p] to the empty line. Records offsets (and, in a head, checks and remembers the
   * fields the parser interprets). Returns the offset after the empty line, INCOMPLETE, or FAILED.
   */
  private fields(b: Buffer, p: number, e: number, isHead: boolean): number {
    const offs = this.offs;
    for (;;) {
      if (p >= e) return INCOMPLETE;
      let c = b[p] as number;
      if (c === CR) {
        if (p + 1 === e) return INCOMPLETE;
        if (b[p + 1] !== LF) return this.fail('HPE_LF_EXPECTED');
        return p + 2;
      }
      // field-name ":"
      const ns = p;
      while (TCHAR[c] === 1) {
        if (++p === e) return INCOMPLETE;
        c = b[p] as number;
      }
      if (c !== COLON || p === ns) {
        if (p === ns) {
          if (c === SP || c === HTAB) return this.fail('HPE_OBS_FOLD');
          if (c === LF) return this.fail('HPE_CR_EXPECTED');
        }
        return this.fail('HPE_INVALID_HEADER_TOKEN');
      }
      const n = this.nFields;
      if (n === this.maxHeaders) return this.fail('HPE_TOO_MANY_HEADERS');
      const ne = p++;
      // OWS field-value OWS CRLF
      while (p < e && ((c = b[p] as number) === SP || c === HTAB)) p++;
      const vs = p;
      // Four bytes a step while they last (table entries are 0/1, so the AND is 1 only if all four are).
      while (
        p + 4 <= e &&
        (FIELD_VALUE_CHAR[b[p] as number]! &
          FIELD_VALUE_CHAR[b[p + 1] as number]! &
          FIELD_VALUE_CHAR[b[p + 2] as number]! &
          FIELD_VALUE_CHAR[b[p + 3] as number]!) ===
          1
      )
        p += 4;
      while (p < e && FIELD_VALUE_CHAR[b[p] as number] === 1) p++;
      if (p === e) return INCOMPLETE;
      c = b[p] as number;
      if (c !== CR) return this.fail(c === LF ? 'HPE_CR_EXPECTED' : 'HPE_INVALID_HEADER_VALUE');
      if (p + 1 === e) return INCOMPLETE;
      if (b[p + 1] !== LF) return this.fail('HPE_LF_EXPECTED');
      const re = p;
      let ve = p;
      while (ve > vs && ((c = b[ve - 1] as number) === SP || c === HTAB)) ve--;
      p += 2;

      const o = n << 2;
      offs[o] = ns;
      offs[o + 1] = ne;
      offs[o + 2] = vs;
      offs[o + 3] = ve;
      const id = this.internName(b, ns, ne, n);
      this.nFields = n + 1;
      if (id !== 0) {
        // Framing and routing fields belong in the head; in trailers parsers disagree (llhttp applies some).
        if (!isHead) return this.fail('HPE_INVALID_TRAILER');
        if (!this.fieldSemantics(id, b, vs, ve, re, n)) return FAILED;
      }
      // A next line starting with SP/HTAB (obs-fold) is refused at the top of the loop.
    }
  }

  /** Record the interned spelling (or undefined) of field n's name b[s, e); returns its HeaderId. */
  private internName(b: Buffer, s: number, e: number, n: number): number {
    const len = e - s;
    this.names[n] = undefined;
    this.ids[n] = 0;
    if (len >= 32) return 0;
    const bucket = NAME_BUCKETS[(len << 5) | ((b[s] as number) & 31)];
    if (bucket === undefined) return 0;
    for (let k = 0; k < bucket.length; k++) {
      const ent = bucket[k] as NameEntry;
      const lower = ent.lower;
      const canon = ent.canon;
      let exactLower = true;
      let exactCanon = true;
      let i = 0;
      for (; i < len; i++) {
        const x = b[s + i] as number;
        const l = lower[i] as number;
        if (x !== l) {
          // Names are tchar-only, so `| 0x20` folds case without false matches against letters, digits, "-".
          if ((x | 0x20) !== l) break;
          exactLower = false;
        }
        if (x !== canon[i]) exactCanon = false;
      }
      if (i < len) continue;
      this.ids[n] = ent.id;
      if (exactLower) this.names[n] = ent.lowerStr;
      else if (exactCanon) this.names[n] = ent.canonStr;
      else {
        const others = ent.others;
        for (let j = 0; j < others.length; j++) {
          const sp = others[j] as Spelling;
          if (equalBytes(b, s, sp.bytes)) {
            this.names[n] = sp.str;
            break;
          }
        }
      }
      return ent.id;
    }
    return 0;
  }

  /**
   * Check and remember one interpreted field of a head: value b[vs, ve) (OWS trimmed), b[vs, re) before
   * trimming the trailing OWS. False when it failed (error set).
   */
  private fieldSemantics(id: number, b: Buffer, vs: number, ve: number, re: number, n: number): boolean {
    const request = this.kind === Kind.Request;
    switch (id) {
      case H_CONTENT_LENGTH: {
        if (++this.clCount > 1) return this.reject('HPE_DUPLICATE_CONTENT_LENGTH');
        if (vs === ve || hasTab(b, vs, re)) return this.reject('HPE_INVALID_CONTENT_LENGTH');
        let v = 0;
        for (let p = vs; p < ve; p++) {
          const d = (b[p] as number) - 0x30;
          if (d < 0 || d > 9 || v > (MAX_SAFE - d) / 10) return this.reject('HPE_INVALID_CONTENT_LENGTH');
          v = v * 10 + d;
        }
        this.contentLength = v;
        return true;
      }
      case H_TRANSFER_ENCODING:
        if (hasTab(b, vs, re)) return this.reject('HPE_INVALID_TRANSFER_ENCODING');
        return this.transferEncoding(b, vs, ve);
      case H_HOST:
        if (!request) return true;
        if (++this.hostCount > 1) return this.reject('HPE_DUPLICATE_HOST');
        if (!validAuthority(b, vs, ve, false, true)) return this.reject('HPE_INVALID_HOST');
        this.hostField = n;
        return true;
      case H_CONNECTION:
        if (hasTab(b, vs, re)) return this.reject('HPE_INVALID_CONNECTION');
        return this.connectionField(b, vs, ve);
      case H_UPGRADE:
        if (ve > vs) this.upgradeField = true;
        return true;
      case H_EXPECT:
        if (request && ve - vs === 12 && equalsLowerBytes(b, vs, CONTINUE_100)) this.expectContinue = true;
        return true;
      default:
        return true;
    }
  }

  /** Transfer-Encoding = 1#transfer-coding, here: tokens only, no empty elements, chunked at most once. */
  private transferEncoding(b: Buffer, vs: number, ve: number): boolean {
    this.teSeen = true;
    let p = vs;
    for (;;) {
      const ts = p;
      while (p < ve && TCHAR[b[p] as number] === 1) p++;
      if (p === ts) return this.reject('HPE_INVALID_TRANSFER_ENCODING');
      if (p - ts === 7 && equalsLowerBytes(b, ts, CHUNKED)) {
        if (++this.teChunkedCount > 1) return this.reject('HPE_INVALID_TRANSFER_ENCODING');
        this.teChunkedFinal = true;
      } else {
        this.teOther = true;
        this.teChunkedFinal = false;
      }
      p = skipOws(b, p, ve);
      if (p === ve) return true;
      if (b[p] !== COMMA) return this.reject('HPE_INVALID_TRANSFER_ENCODING');
      p = skipOws(b, p + 1, ve);
    }
  }

  /** Connection = #connection-option (tokens; empty elements allowed). */
  private connectionField(b: Buffer, vs: number, ve: number): boolean {
    this.connection = true;
    let p = vs;
    while (p < ve) {
      const ts = p;
      while (p < ve && TCHAR[b[p] as number] === 1) p++;
      const len = p - ts;
      if (len === 5 && equalsLowerBytes(b, ts, CLOSE)) this.connClose = true;
      else if (len === 10 && equalsLowerBytes(b, ts, KEEP_ALIVE)) this.connKeepAlive = true;
      else if (len === 7 && equalsLowerBytes(b, ts, UPGRADE)) this.connUpgrade = true;
      p = skipOws(b, p, ve);
      if (p === ve) break;
      if (b[p] !== COMMA) return this.reject('HPE_INVALID_CONNECTION');
      p = skipOws(b, p + 1, ve);
    }
    return true;
  }

  /** End-of-head checks for a request; decides the framing. False when it failed (error set). */
  private requestSemantics(b: Buffer): boolean {
    if (this.versionMinor === 1 && this.hostCount === 0) return this.reject('HPE_MISSING_HOST');
    if (this.form === Form.Absolute && this.hostField >= 0) {
      const o = this.hostField << 2;
      const hs = this.offs[o + 2] as number;
      const he = this.offs[o + 3] as number;
      if (!equalsCaseless(b, this.authStart, this.authEnd, hs, he)) return this.reject('HPE_HOST_MISMATCH');
    }
    if (this.teSeen) {
      if (this.versionMinor === 0) return this.reject('HPE_TE_IN_HTTP10');
      if (this.clCount > 0) return this.reject('HPE_CL_AND_TE');
      if (!this.teChunkedFinal) return this.reject('HPE_INVALID_TRANSFER_ENCODING');
      if (this.teOther) return this.reject('HPE_TRANSFER_ENCODING_NOT_IMPLEMENTED');
    }
    const upgrade = this.connUpgrade && this.upgradeField;
    if (upgrade && this.versionMinor === 0) return this.reject('HPE_INVALID_UPGRADE');
    this.keepAlive = this.versionMinor === 1 ? !this.connClose : this.connKeepAlive && !this.connClose;
    if (upgrade || this.method === 'CONNECT') this.body = Body.Tunnel;
    else if (this.teSeen) this.body = Body.Chunked;
    else if (this.contentLength > 0) this.body = Body.Length;
    else this.body = Body.None;
    return true;
  }

  /** End-of-head checks for a response; decides the framing. False when it failed (error set). */
  private responseSemantics(): boolean {
    if (this.teSeen) {
      if (this.versionMinor === 0) return this.reject('HPE_TE_IN_HTTP10');
      if (this.clCount > 0) return this.reject('HPE_CL_AND_TE');
    }
    const status = this.status;
    this.keepAlive = !this.interimClose && (this.versionMinor === 1 ? !this.connClose : this.connKeepAlive && !this.connClose);
    if (status < 200) this.interimClose = !this.keepAlive;
    if (status === 101 || (this.expectTunnel && status >= 200 && status < 300)) this.body = Body.Tunnel;
    else if (status < 200) this.body = Body.Interim;
    else if (status === 204 || status === 304 || this.expectNoBody) this.body = Body.None;
    else if (this.teSeen) this.body = this.teChunkedFinal ? Body.Chunked : Body.Eof;
    else if (this.clCount > 0) this.body = this.contentLength > 0 ? Body.Length : Body.None;
    else this.body = Body.Eof;
    if (this.body === Body.Eof) this.keepAlive = false;
    return true;
  }

  /** The head b[s, r) is whole and valid: build it, hand it over, and move to its body. */
  private headDone(b: Buffer, s: number, r: number): void {
    const str = latin1(b, s, r);
    const headers = this.collect(str, s);
    const request = this.kind === Kind.Request;
    const body = this.body;
    const head: MessageHead = {
      method: this.method,
      target: request ? str.slice(this.targetStart - s, this.targetEnd - s) : '',
      status: request ? 0 : this.status,
      reason: request || this.reasonStart === this.reasonEnd ? '' : str.slice(this.reasonStart - s, this.reasonEnd - s),
      versionMinor: this.versionMinor,
      headers,
      host: this.hostField >= 0 ? headers[(this.hostField << 1) + 1] : undefined,
      contentLength: this.teSeen ? -1 : this.contentLength,
      chunked: body === Body.Chunked,
      keepAlive: this.keepAlive,
      upgrade: body === Body.Tunnel && (!request || this.method !== 'CONNECT'),
      expectContinue: this.expectContinue,
      connectionTokens: this.connection ? this.connectionTokens(b, str, s) : NO_TOKENS,
      headBytes: r - s,
    };
    if (!request && body !== Body.Interim) {
      this.expectNoBody = false;
      this.expectTunnel = false;
      this.interimClose = false;
    }
    this.leadBytes = 0;
    switch (body) {
      case Body.Length:
        this.remaining = this.contentLength;
        this.state = S.BodyLength;
        break;
      case Body.Chunked:
        this.extBytes = 0;
        this.state = S.ChunkSizeStart;
        break;
      case Body.Eof:
        this.state = S.BodyEof;
        break;
      case Body.Tunnel:
        this.state = S.Upgraded;
        break;
      default:
        this.state = S.MessageStart;
    }
    this.onHead(head);
    if (body === Body.None) this.complete();
  }

  private trailersDone(b: Buffer, s: number, r: number): void {
    this.inTrailers = false;
    if (this.nFields > 0) this.onTrailers(this.collect(latin1(b, s, r), s));
    this.complete();
  }

  private complete(): void {
    this.state = this.keepAlive ? S.MessageStart : S.Done;
    this.leadBytes = 0;
    this.onComplete();
  }

  /** The recorded fields as [name, value, …], sliced from `str` (the section's text, starting at offset s). */
  private collect(str: string, s: number): string[] {
    const n = this.nFields;
    // Sized once (growing by push reallocated the backing store a few times per head).
    const out = new Array<string>(n << 1);
    const offs = this.offs;
    for (let i = 0, o = 0; i < n; i++, o += 4) {
      const vs = offs[o + 2] as number;
      const ve = offs[o + 3] as number;
      out[i << 1] = this.names[i] ?? str.slice((offs[o] as number) - s, (offs[o + 1] as number) - s);
      out[(i << 1) + 1] = vs === ve ? '' : str.slice(vs - s, ve - s);
    }
    return out;
  }

  /** The lower-cased options of every Connection field (already validated as token lists). */
  private connectionTokens(b: Buffer, str: string, s: number): string[] {
    const out: string[] = [];
    const offs = this.offs;
    for (let i = 0; i < this.nFields; i++) {
      if (this.ids[i] !== H_CONNECTION) continue;
      const ve = offs[(i << 2) + 3] as number;
      let p = offs[(i << 2) + 2] as number;
      while (p < ve) {
        const ts = p;
        let lower = true;
        for (let c: number; p < ve && TCHAR[(c = b[p] as number)] === 1; p++) if (c >= 0x41 && c <= 0x5a) lower = false;
        if (p > ts) out.push(lower ? internConnectionToken(b, ts, p, str, s) : str.slice(ts - s, p - s).toLowerCase());
        while (p < ve && TCHAR[b[p] as number] !== 1) p++;
      }
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------------
  // Chunked framing: chunk-size [ chunk-ext ] CRLF, chunk-data CRLF, …, last-chunk, trailer section.

  private chunkLines(b: Buffer, p: number, e: number): number {
    let state = this.state;
    for (; p < e; p++) {
      const c = b[p] as number;
      switch (state) {
        case S.ChunkSizeStart: {
          const h = HEX_VALUE[c] as number;
          if (h < 0) return this.fail(c === LF ? 'HPE_CR_EXPECTED' : 'HPE_INVALID_CHUNK_SIZE');
          this.chunkSize = h;
          this.chunkDigits = 1;
          state = S.ChunkSize;
          break;
        }
        case S.ChunkSize: {
          const h = HEX_VALUE[c] as number;
          if (h >= 0) {
            if (++this.chunkDigits > MAX_CHUNK_DIGITS || this.chunkSize > (MAX_SAFE - h) / 16) return this.fail('HPE_INVALID_CHUNK_SIZE');
            this.chunkSize = this.chunkSize * 16 + h;
          } else if (c === CR) state = S.ChunkSizeLF;
          else if (c === SEMI) {
            if (!this.extByte()) return FAILED;
            state = S.ChunkExtNameStart;
          } else return this.fail(c === LF ? 'HPE_CR_EXPECTED' : 'HPE_INVALID_CHUNK_SIZE');
          break;
        }
        case S.ChunkSizeLF:
          if (c !== LF) return this.fail('HPE_LF_EXPECTED');
          if (this.chunkSize === 0) {
            this.inTrailers = true;
            this.state = S.TrailersStart;
          } else {
            this.remaining = this.chunkSize;
            this.state = S.ChunkData;
          }
          return p + 1;
        case S.ChunkDataCR:
          if (c !== CR) return this.fail('HPE_MISSING_CHUNK_CRLF');
          state = S.ChunkDataLF;
          break;
        case S.ChunkDataLF:
          if (c !== LF) return this.fail('HPE_MISSING_CHUNK_CRLF');
          state = S.ChunkSizeStart;
          break;
        default:
          // chunk-ext = *( ";" chunk-ext-name [ "=" chunk-ext-val ] ), no whitespace;
          // chunk-ext-val = token / quoted-string
          if (!this.extByte()) return FAILED;
          switch (state) {
            case S.ChunkExtNameStart:
              if (TCHAR[c] !== 1) return this.fail('HPE_INVALID_CHUNK_EXTENSION');
              state = S.ChunkExtName;
              break;
            case S.ChunkExtName:
            case S.ChunkExtToken:
              if (TCHAR[c] === 1) break;
              if (c === EQUALS && state === S.ChunkExtName) state = S.ChunkExtValueStart;
              else if (c === SEMI) state = S.ChunkExtNameStart;
              else if (c === CR) state = S.ChunkSizeLF;
              else return this.fail('HPE_INVALID_CHUNK_EXTENSION');
              break;
            case S.ChunkExtValueStart:
              if (c === DQUOTE) state = S.ChunkExtQuoted;
              else if (TCHAR[c] === 1) state = S.ChunkExtToken;
              else return this.fail('HPE_INVALID_CHUNK_EXTENSION');
              break;
            case S.ChunkExtQuoted:
              if (c === DQUOTE) state = S.ChunkExtQuotedEnd;
              else if (c === BACKSLASH) state = S.ChunkExtQuotedPair;
              else if (QDTEXT[c] !== 1) return this.fail('HPE_INVALID_CHUNK_EXTENSION');
              break;
            case S.ChunkExtQuotedPair:
              if (QUOTED_PAIR_CHAR[c] !== 1) return this.fail('HPE_INVALID_CHUNK_EXTENSION');
              state = S.ChunkExtQuoted;
              break;
            case S.ChunkExtQuotedEnd:
              if (c === SEMI) state = S.ChunkExtNameStart;
              else if (c === CR) state = S.ChunkSizeLF;
              else return this.fail('HPE_INVALID_CHUNK_EXTENSION');
              break;
            default:
              throw new Error(`HttpParser: unexpected state ${state} in chunk framing`);
          }
      }
    }
    this.state = state;
    return p;
  }

  private extByte(): boolean {
    return ++this.extBytes <= this.maxHeaderBytes || this.reject('HPE_CHUNK_EXTENSIONS_OVERFLOW');
  }
}

// ---------------------------------------------------------------------------------------------------
// Byte helpers

const HTTP_SLASH = bytesOf('HTTP/');
const CHUNKED = bytesOf('chunked');
const CLOSE = bytesOf('close');
const KEEP_ALIVE = bytesOf('keep-alive');
const UPGRADE = bytesOf('upgrade');
const CONTINUE_100 = bytesOf('100-continue');

function lookupMethod(b: Buffer, s: number, e: number): string | undefined {
  const len = e - s;
  if (len === 3 && b[s] === 0x47 && b[s + 1] === 0x45 && b[s + 2] === 0x54) return 'GET';
  if (len >= 32) return undefined;
  const bucket = METHOD_BUCKETS[(len << 5) | ((b[s] as number) & 31)];
  if (bucket === undefined) return undefined;
  for (let k = 0; k < bucket.length; k++) {
    const m = bucket[k] as Spelling;
    if (equalBytes(b, s, m.bytes)) return m.str;
  }
  return undefined;
}

/** b[s, s + bytes.length) equals `bytes` exactly (the caller checked the length). */
function equalBytes(b: Buffer, s: number, bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (b[s + i] !== bytes[i]) return false;
  return true;
}

/** b[s, s + lower.length) equals the lower-case ASCII `lower`, ignoring case (the caller checked the length). */
function equalsLowerBytes(b: Buffer, s: number, lower: Uint8Array): boolean {
  for (let i = 0; i < lower.length; i++) {
    let c = b[s + i] as number;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== lower[i]) return false;
  }
  return true;
}

/** b[as, ae) and b[bs, be) are equal ignoring ASCII case. */
function equalsCaseless(b: Buffer, as: number, ae: number, bs: number, be: number): boolean {
  if (ae - as !== be - bs) return false;
  for (let i = 0; i < ae - as; i++) {
    let x = b[as + i] as number;
    let y = b[bs + i] as number;
    if (x >= 0x41 && x <= 0x5a) x |= 0x20;
    if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    if (x !== y) return false;
  }
  return true;
}

/**
 * An HTAB inside (or after) the value of a framing field. OWS may be HTAB by the grammar, but llhttp reads
 * `Connection: close<HTAB>` as not-close and `Content-Length: 1<HTAB>` as invalid: where parsers can
 * disagree on framing, we refuse. (Leading OWS is skipped before vs and may be HTAB.)
 */
function hasTab(b: Buffer, s: number, e: number): boolean {
  for (let p = s; p < e; p++) if (b[p] === HTAB) return true;
  return false;
}

function skipOws(b: Buffer, p: number, e: number): number {
  while (p < e && (b[p] === SP || b[p] === HTAB)) p++;
  return p;
}

function internConnectionToken(b: Buffer, s: number, e: number, str: string, base: number): string {
  for (let i = 0; i < CONNECTION_TOKENS.length; i++) {
    const t = CONNECTION_TOKENS[i] as Spelling;
    if (t.bytes.length === e - s && equalBytes(b, s, t.bytes)) return t.str;
  }
  return str.slice(s - base, e - base);
}

/**
 * uri-host [ ":" port ] in b[s, e) (RFC 3986 §3.2.2, character level): an IP-literal "[…]" of hex digits,
 * ":" and "."; or a non-empty reg-name / IPv4address (unreserved, sub-delims, pct-encoded). The port is
 * 1-5 digits, at most 65535. `requirePort` for authority-form; `allowEmpty` for a Host field.
 */
function validAuthority(b: Buffer, s: number, e: number, requirePort: boolean, allowEmpty: boolean): boolean {
  if (s === e) return allowEmpty;
  let p = s;
  if (b[p] === LBRACKET) {
    p++;
    while (p < e && IPV6_CHAR[b[p] as number] === 1) p++;
    if (p === e || b[p] !== RBRACKET || p - s < 3) return false;
    p++;
  } else {
    while (p < e) {
      const c = b[p] as number;
      if (REG_NAME_CHAR[c] !== 1) break;
      if (c === PERCENT) {
        if (p + 2 >= e || (HEX_VALUE[b[p + 1] as number] as number) < 0 || (HEX_VALUE[b[p + 2] as number] as number) < 0) return false;
        p += 3;
      } else p++;
    }
    if (p === s) return false;
  }
  if (p === e) return !requirePort;
  if (b[p] !== COLON) return false;
  p++;
  const ps = p;
  let port = 0;
  for (; p < e; p++) {
    const d = (b[p] as number) - 0x30;
    if (d < 0 || d > 9) return false;
    port = port * 10 + d;
  }
  return p - ps >= 1 && p - ps <= 5 && port <= 65535;
}
