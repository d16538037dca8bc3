/**
 * The strict, bounded query parser of the hot path. Untrusted bytes never reach a general decoder:
 * this reads exactly one question and at most a few additional records, checks every length against
 * the packet before reading, and allocates nothing but the lookup key (one short string).
 *
 * Verdicts (what the server does with the packet):
 * - DROP: not a query we may answer (shorter than a header, or QR set: a response must never be
 *   answered, or two servers could ping-pong).
 * - FORMERR: a header we can echo, but a body we cannot read (no or several questions, answer or
 *   authority records in a query, a compressed or oversized question name, truncated records,
 *   trailing bytes, two OPT records, an OPT not owned by the root).
 * - NOTIMP: an opcode other than QUERY (NOTIFY, UPDATE, ...).
 * - REFUSED: a class other than IN, or a zone transfer (AXFR/IXFR): we do not serve them.
 * - BADVERS: an EDNS version other than 0 (RFC 6891 §6.1.3).
 * - OK: one IN question; `key` is its lower-case wire name.
 */
import * as wire from './wire.js';
// Hot path: imported bindings copied into module constants once. Under tsx (esbuild's CommonJS
// output) every read of an imported binding is a getter call; a profile put a quarter of the query
// path's CPU there. (tsc's output has plain properties; this costs nothing there.)
const { CLASS_IN, HEADER_SIZE, MAX_LABEL, MAX_NAME_WIRE, MIN_UDP_PAYLOAD } = wire;
const { OPT: TYPE_OPT, AXFR: TYPE_AXFR, IXFR: TYPE_IXFR } = wire.TYPE;

/** `buf.latin1Slice(start, end)` where Node has it (it does: Buffer#toString('latin1') calls it after checks). */
const latin1: (b: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as unknown as { latin1Slice?: unknown }).latin1Slice === 'function'
    ? (b, start, end) => (b as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(start, end)
    : (b, start, end) => b.toString('latin1', start, end);

export const Verdict = {
  OK: 0,
  DROP: 1,
  FORMERR: 2,
  NOTIMP: 3,
  REFUSED: 4,
  BADVERS: 5,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** At most this many additional records are read (OPT, a cookie-less TSIG...); more is FORMERR. */
export const MAX_ADDITIONAL = 4;
/** A label count above this cannot fit 255 bytes anyway. */
const MAX_LABELS = 128;

/**
 * One parsed query. Reused across packets by its owner (the UDP handler keeps one), so it must be
 * copied (see `snapshot` fields) before anything asynchronous happens.
 */
export class Query {
  verdict: Verdict = Verdict.DROP;
  /** Opcode from the header (valid from FORMERR on). */
  opcode = 0;
  /** Offset just past the question's QCLASS; 0 when the question could not be read. */
  questionEnd = 0;
  /** Wire length of the question name, the terminating zero included. */
  nameLength = 0;
  qtype = 0;
  qclass = 0;
  /** The client sent an OPT record. */
  edns = false;
  /** The client's UDP payload size (512 without EDNS, never below 512). */
  udpSize = MIN_UDP_PAYLOAD;
  /** Lower-case wire name as a latin1 string (valid when the name was read). */
  key = '';
  /** Offsets (relative to the name's start) at which each label begins; `labels` of them. */
  readonly labelStarts = new Int32Array(MAX_LABELS);
  labels = 0;
  private readonly scratch = Buffer.allocUnsafe(MAX_NAME_WIRE + 1);

  reset(): void {
    this.verdict = Verdict.DROP;
    this.opcode = 0;
    this.questionEnd = 0;
    this.nameLength = 0;
    this.qtype = 0;
    this.qclass = 0;
    this.edns = false;
    this.udpSize = MIN_UDP_PAYLOAD;
    this.key = '';
    this.labels = 0;
  }

  /** Parse `msg` into this object; returns the verdict. Never throws, never reads out of bounds. */
  parse(msg: Buffer): Verdict {
    this.reset();
    const len = msg.length;
    if (len < HEADER_SIZE) return (this.verdict = Verdict.DROP);
    const b2 = msg[2] as number;
    if (b2 & 0x80) return (this.verdict = Verdict.DROP);
    this.opcode = (b2 >> 3) & 0x0f;
    if (this.opcode !== 0) return (this.verdict = Verdict.NOTIMP);
    const qd = ((msg[4] as number) << 8) | (msg[5] as number);
    const an = ((msg[6] as number) << 8) | (msg[7] as number);
    const ns = ((msg[8] as number) << 8) | (msg[9] as number);
    const ar = ((msg[10] as number) << 8) | (msg[11] as number);
    // One question, nothing in answer/authority, a few additional records, and enough bytes for them
    // (a minimal record is 11 bytes) — checked before reading any of them.
    if (qd !== 1 || an !== 0 || ns !== 0 || ar > MAX_ADDITIONAL) return (this.verdict = Verdict.FORMERR);
    if (len < HEADER_SIZE + 5 + ar * 11) return (this.verdict = Verdict.FORMERR);

    // The question name: plain labels only (a pointer in a query's question is legal in theory, but no
    // client sends one, and refusing it keeps this loop trivially bounded).
    let p = HEADER_SIZE;
    const scratch = this.scratch;
    let n = 0;
    for (;;) {
      if (p >= len) return (this.verdict = Verdict.FORMERR);
      const l = msg[p] as number;
      if (l === 0) break;
      if (l > MAX_LABEL) return (this.verdict = Verdict.FORMERR); // pointers (0xc0) and reserved (0x40/0x80) too
      if (p + 1 + l > len || n + 1 + l + 1 > MAX_NAME_WIRE) return (this.verdict = Verdict.FORMERR);
      this.labelStarts[this.labels++] = n;
      scratch[n++] = l;
      for (let i = 1; i <= l; i++) {
        const c = msg[p + i] as number;
        scratch[n++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
      }
      p += l + 1;
    }
    scratch[n++] = 0;
    p++;
    this.nameLength = n;
    if (p + 4 > len) return (this.verdict = Verdict.FORMERR);
    this.qtype = ((msg[p] as number) << 8) | (msg[p + 1] as number);
    this.qclass = ((msg[p + 2] as number) << 8) | (msg[p + 3] as number);
    p += 4;
    this.questionEnd = p;
    this.key = latin1(scratch, 0, n);

    // Additional records: find the OPT; skip anything else by its lengths.
    let badVersion = false;
    for (let i = 0; i < ar; i++) {
      const ownerStart = p;
      // Owner: labels, or labels ending in a pointer (never followed: we only skip it).
      let hops = 0;
      for (;;) {
        if (p >= len || ++hops > MAX_LABELS) return (this.verdict = Verdict.FORMERR);
        const l = msg[p] as number;
        if (l === 0) {
          p++;
          break;
        }
        if ((l & 0xc0) === 0xc0) {
          p += 2;
          break;
        }
        if (l > MAX_LABEL) return (this.verdict = Verdict.FORMERR);
        p += l + 1;
      }
      if (p + 10 > len) return (this.verdict = Verdict.FORMERR);
      const type = ((msg[p] as number) << 8) | (msg[p + 1] as number);
      const rclass = ((msg[p + 2] as number) << 8) | (msg[p + 3] as number);
      const version = msg[p + 5] as number;
      const rdlen = ((msg[p + 8] as number) << 8) | (msg[p + 9] as number);
      p += 10;
      if (p + rdlen > len) return (this.verdict = Verdict.FORMERR);
      p += rdlen;
      if (type === TYPE_OPT) {
        if (this.edns || p - rdlen - 10 - ownerStart !== 1 || msg[ownerStart] !== 0) return (this.verdict = Verdict.FORMERR);
        this.edns = true;
        this.udpSize = rclass < MIN_UDP_PAYLOAD ? MIN_UDP_PAYLOAD : rclass;
        if (version !== 0) badVersion = true;
      }
    }
    if (p !== len) return (this.verdict = Verdict.FORMERR);
    if (badVersion) return (this.verdict = Verdict.BADVERS);
    if (this.qclass !== CLASS_IN) return (this.verdict = Verdict.REFUSED);
    if (this.qtype === TYPE_OPT) return (this.verdict = Verdict.FORMERR);
    if (this.qtype === TYPE_AXFR || this.qtype === TYPE_IXFR) return (this.verdict = Verdict.REFUSED);
    return (this.verdict = Verdict.OK);
  }
}
