/**
 * Bounded reading of upstream responses (the forwarder's input is untrusted too: anyone can aim a
 * datagram at our source port). Nothing here follows compression pointers or decodes names: a
 * response is walked record by record with every length checked against the packet, which is all the
 * cache needs — where each TTL is, the SOA's minimum for negative caching, and where the OPT record is.
 */
import { HEADER_SIZE, MAX_LABEL, TYPE } from './wire.js';

export interface ResponseInfo {
  rcode: number;
  tc: boolean;
  an: number;
  ns: number;
  ar: number;
  /** Offsets of the TTL field of every record but OPT, in message order. */
  ttlOffsets: number[];
  /** Smallest TTL in the answer and authority sections (Infinity when both are empty). */
  minTtl: number;
  /** RFC 2308 negative TTL: min(SOA TTL, SOA MINIMUM) of an SOA in the authority section. */
  negativeTtl: number | undefined;
  /** The OPT record's bounds, or -1. */
  optStart: number;
  optEnd: number;
}

/** Most records we accept in one upstream response: more is a malformed or hostile answer. */
export const MAX_RECORDS = 4096;

/** Skip a name at `p`; returns the offset after it, or -1. */
function skipName(msg: Buffer, p: number): number {
  const len = msg.length;
  for (let hops = 0; hops < 128; hops++) {
    if (p >= len) return -1;
    const l = msg[p] as number;
    if (l === 0) return p + 1;
    if ((l & 0xc0) === 0xc0) return p + 2 <= len ? p + 2 : -1;
    if (l > MAX_LABEL) return -1;
    p += l + 1;
  }
  return -1;
}

/**
 * True when `msg` answers the query we sent: id, QR, opcode QUERY, one question equal to ours
 * (`question` = name + type + class as sent; names compared without regard to ASCII case).
 */
export function answersQuery(msg: Buffer, id: number, question: Buffer): boolean {
  if (msg.length < HEADER_SIZE + question.length) return false;
  if ((((msg[0] as number) << 8) | (msg[1] as number)) !== id) return false;
  if (((msg[2] as number) & 0xf8) !== 0x80) return false; // QR set, opcode 0
  if ((msg[4] as number) !== 0 || (msg[5] as number) !== 1) return false;
  for (let i = 0; i < question.length; i++) {
    let a = msg[HEADER_SIZE + i] as number;
    let b = question[i] as number;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b) return false;
  }
  return true;
}

/**
 * Walk a response whose question (of `questionLength` bytes from offset 12) was already checked by
 * `answersQuery`. Undefined when the records do not add up to exactly the packet.
 */
export function walkResponse(msg: Buffer, questionLength: number): ResponseInfo | undefined {
  const len = msg.length;
  const an = ((msg[6] as number) << 8) | (msg[7] as number);
  const ns = ((msg[8] as number) << 8) | (msg[9] as number);
  const ar = ((msg[10] as number) << 8) | (msg[11] as number);
  const total = an + ns + ar;
  if (total > MAX_RECORDS) return undefined;
  let p = HEADER_SIZE + questionLength;
  // Each record takes at least 11 bytes: refuse before walking when the counts cannot fit.
  if (p + total * 11 > len) return undefined;
  const info: ResponseInfo = {
    rcode: (msg[3] as number) & 0x0f,
    tc: ((msg[2] as number) & 0x02) !== 0,
    an,
    ns,
    ar,
    ttlOffsets: [],
    minTtl: Infinity,
    negativeTtl: undefined,
    optStart: -1,
    optEnd: -1,
  };
  for (let i = 0; i < total; i++) {
    const start = p;
    p = skipName(msg, p);
    if (p < 0 || p + 10 > len) return undefined;
    const type = ((msg[p] as number) << 8) | (msg[p + 1] as number);
    const ttl = msg.readUInt32BE(p + 4);
    const rdlen = ((msg[p + 8] as number) << 8) | (msg[p + 9] as number);
    const rdata = p + 10;
    if (rdata + rdlen > len) return undefined;
    if (type === TYPE.OPT) {
      if (i < an + ns || info.optStart >= 0) return undefined;
      info.optStart = start;
      info.optEnd = rdata + rdlen;
    } else {
      info.ttlOffsets.push(p + 4);
      const t = Math.min(ttl, 0x7fffffff);
      if (i < an + ns && t < info.minTtl) info.minTtl = t;
      if (type === TYPE.SOA && i >= an && i < an + ns && rdlen >= 22) {
        const minimum = Math.min(msg.readUInt32BE(rdata + rdlen - 4), 0x7fffffff);
        info.negativeTtl = Math.min(t, minimum);
      }
    }
    p = rdata + rdlen;
  }
  if (p !== len) return undefined;
  return info;
}
