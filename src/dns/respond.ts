/**
 * Per-query response assembly from precompiled bytes: copy, patch id / RD / CD and the question's case
 * (the client's own name bytes are copied over the template's lower-case ones — same length), rotate
 * the answer records, add our OPT when the client sent one, and fit the client's size limit:
 *
 * 1. everything fits: one allocation, three or four copies;
 * 2. answers fit but not all additional records: additional records are dropped from the end, no TC
 *    (RFC 2181 §9: additional data is optional);
 * 3. answers do not fit: TC is set (over UDP) and as many whole answer records as fit are sent, in
 *    the rotated order, with the question and no authority/additional. Over TCP the same window is the
 *    answer (a subset of a set larger than 64 KiB), without TC.
 *
 * `prefix` reserves bytes at the front (2 for TCP's length field; the caller writes it).
 */
import type { Query } from './query.js';
import * as wire from './wire.js';
// Hot path: imported bindings copied into module constants once. Under tsx (esbuild's CommonJS
// output) every read of an imported binding is a getter call; a profile put a quarter of the query
// path's CPU there. (tsc's output has plain properties; this costs nothing there.)
const { HEADER_SIZE, OPT_SIZE, writeOpt } = wire;
const { QR, AA, TC, RD } = wire.F2;
const { RA, CD } = wire.F3;
const BADVERS = wire.RCODE.BADVERS;

import type { Answer, ZoneApex } from './zone.js';

function u16(b: Buffer, at: number, v: number): void {
  b[at] = (v >> 8) & 0xff;
  b[at + 1] = v & 0xff;
}

/** A positive answer from a template. `rot` picks the first answer record (any integer ≥ 0). */
export function fromTemplate(t: Answer, msg: Buffer, q: Query, limit: number, prefix: number, rot: number, tcp: boolean): Buffer {
  const src = t.buf;
  const opt = q.edns ? OPT_SIZE : 0;
  const n = t.anCount;
  const first = n > 1 ? rot % n : 0;
  const anStart = t.an[0] as number;
  const anEnd = t.an[n] as number;

  if (src.length + opt <= limit) {
    const out = Buffer.allocUnsafe(prefix + src.length + opt);
    if (first === 0) {
      out.set(src, prefix);
    } else {
      const split = t.an[first] as number;
      src.copy(out, prefix, 0, anStart);
      let p = prefix + anStart;
      p += src.copy(out, p, split, anEnd);
      p += src.copy(out, p, anStart, split);
      src.copy(out, p, anEnd);
    }
    patchHead(out, prefix, msg, q, src, 0);
    if (opt) {
      writeOpt(out, prefix + src.length);
      u16(out, prefix + 10, t.arCount + 1);
    }
    return out;
  }

  // Answers (and authority) fit: drop additional records from the end.
  const base = t.nsEnd + opt;
  if (base <= limit) {
    let ar = t.arCount;
    while (ar > 0 && base + ((t.ar[ar] as number) - (t.ar[0] as number)) > limit) ar--;
    const arBytes = (t.ar[ar] as number) - (t.ar[0] as number);
    const out = Buffer.allocUnsafe(prefix + t.nsEnd + arBytes + opt);
    src.copy(out, prefix, 0, anStart);
    let p = prefix + anStart;
    const split = t.an[first] as number;
    p += src.copy(out, p, split, anEnd);
    p += src.copy(out, p, anStart, split);
    p += src.copy(out, p, anEnd, t.nsEnd);
    p += src.copy(out, p, t.ar[0] as number, t.ar[ar] as number);
    if (opt) writeOpt(out, p);
    patchHead(out, prefix, msg, q, src, 0);
    u16(out, prefix + 10, ar + (opt ? 1 : 0));
    return out;
  }

  // Truncate: whole answer records in rotated order while they fit.
  let size = anStart + opt;
  let count = 0;
  for (let i = 0; i < n; i++) {
    const k = (first + i) % n;
    const len = (t.an[k + 1] as number) - (t.an[k] as number);
    if (size + len > limit) break;
    size += len;
    count++;
  }
  const out = Buffer.allocUnsafe(prefix + size);
  src.copy(out, prefix, 0, anStart);
  let p = prefix + anStart;
  for (let i = 0; i < count; i++) {
    const k = (first + i) % n;
    p += src.copy(out, p, t.an[k] as number, t.an[k + 1] as number);
  }
  if (opt) writeOpt(out, p);
  patchHead(out, prefix, msg, q, src, tcp ? 0 : TC);
  u16(out, prefix + 6, count);
  u16(out, prefix + 8, 0);
  u16(out, prefix + 10, opt ? 1 : 0);
  return out;
}

/** Id, flags and the question's original case. */
function patchHead(out: Buffer, prefix: number, msg: Buffer, q: Query, src: Buffer, extra2: number): void {
  out[prefix] = msg[0] as number;
  out[prefix + 1] = msg[1] as number;
  out[prefix + 2] = (src[2] as number) | ((msg[2] as number) & RD) | extra2;
  out[prefix + 3] = (src[3] as number) | ((msg[3] as number) & CD);
  copyName(out, prefix, msg, q.nameLength);
}

/** The question name's bytes (≤ 255), by hand: cheaper than Buffer#copy's checks at this size. */
function copyName(out: Buffer, prefix: number, msg: Buffer, n: number): void {
  const to = prefix + HEADER_SIZE;
  for (let i = 0; i < n; i++) out[to + i] = msg[HEADER_SIZE + i] as number;
}

/**
 * NXDOMAIN or NODATA: the question, and (when the name is in one of our zones) the zone's SOA in the
 * authority section with the negative TTL. Always small enough for 512 bytes.
 */
export function negative(msg: Buffer, q: Query, rcode: number, apex: ZoneApex | undefined, ra: boolean, prefix: number): Buffer {
  const qLen = q.questionEnd - HEADER_SIZE;
  const tail = apex ? apex.negative.length : 0;
  const opt = q.edns ? OPT_SIZE : 0;
  const out = Buffer.allocUnsafe(prefix + HEADER_SIZE + qLen + tail + opt);
  out[prefix] = msg[0] as number;
  out[prefix + 1] = msg[1] as number;
  out[prefix + 2] = QR | AA | ((msg[2] as number) & RD);
  out[prefix + 3] = (ra ? RA : 0) | ((msg[3] as number) & CD) | rcode;
  u16(out, prefix + 4, 1);
  u16(out, prefix + 6, 0);
  u16(out, prefix + 8, apex ? 1 : 0);
  u16(out, prefix + 10, opt ? 1 : 0);
  let p = prefix + HEADER_SIZE;
  p += msg.copy(out, p, HEADER_SIZE, q.questionEnd);
  if (apex) {
    apex.negative.copy(out, p);
    u16(out, p, 0xc000 | (HEADER_SIZE + q.nameLength - apex.wireLength));
    p += tail;
  }
  if (opt) writeOpt(out, p);
  return out;
}

/**
 * An error answer (FORMERR, SERVFAIL, NOTIMP, REFUSED, BADVERS): the header echoed with QR, the opcode
 * and RD kept; the question when it could be read; our OPT when the client sent one (BADVERS carries
 * its extended rcode there). `msg` must be at least a header long.
 */
export function errorAnswer(msg: Buffer, q: Pick<Query, 'questionEnd' | 'edns'>, rcode: number, ra: boolean, prefix: number): Buffer {
  const withQuestion = q.questionEnd > 0;
  const qLen = withQuestion ? q.questionEnd - HEADER_SIZE : 0;
  const opt = q.edns || rcode === BADVERS ? OPT_SIZE : 0;
  const out = Buffer.allocUnsafe(prefix + HEADER_SIZE + qLen + opt);
  out[prefix] = msg[0] as number;
  out[prefix + 1] = msg[1] as number;
  out[prefix + 2] = QR | ((msg[2] as number) & 0x78) | ((msg[2] as number) & RD);
  out[prefix + 3] = (ra ? RA : 0) | ((msg[3] as number) & CD) | (rcode & 0x0f);
  u16(out, prefix + 4, withQuestion ? 1 : 0);
  u16(out, prefix + 6, 0);
  u16(out, prefix + 8, 0);
  u16(out, prefix + 10, opt ? 1 : 0);
  if (withQuestion) msg.copy(out, prefix + HEADER_SIZE, HEADER_SIZE, q.questionEnd);
  if (opt) writeOpt(out, prefix + HEADER_SIZE + qLen, rcode >> 4);
  return out;
}
