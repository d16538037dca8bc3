/**
 * The on-disk format of the embedded store: frames of records, how they are built, checked and read.
 * Nothing here touches a file; recovery.ts and store.ts do.
 *
 * Both files (snapshot.bin and journal.<G>.log) are a sequence of frames:
 *
 *   frame  = magic "PTJ1" (4) | payload length u32le (4) | crc32(payload) u32le (4) | payload
 *   payload = record*,  record = body length u32le (4) | body,  body = type u8 | fields…
 *
 * Records (fields in order; numbers little-endian, revisions and times as float64, strings UTF-8):
 *   1 put            revision | key length u32 | key | lease length u16 | lease id | value (the rest)
 *   2 delete         revision | expired u8 (1: its lease ended) | key (the rest)
 *   3 lease          ttl ms | deadline (wall-clock ms) | lease id (the rest)
 *   4 lease end      lease id (the rest)
 *   5 journal header format version u32 | generation u32
 *   6 snapshot header format version u32 | generation u32 | revision
 *   7 snapshot end   entry count
 *
 * A frame is the unit of group commit: all the records of one batch, written with one write and made
 * durable by one fdatasync, and covered by one CRC. That makes the frame, not the single record, the
 * unit that is checked and that can be torn, which is what recovery needs: a batch is all-or-nothing,
 * so a lease revocation and the deletes it causes are never half applied.
 */
import zlib from 'node:zlib';

export const FORMAT_VERSION = 1;
export const MAGIC = 0x50544a31; // "PTJ1"
export const MAGIC_BYTES = Buffer.from('PTJ1', 'latin1');
export const FRAME_HEADER = 12;
/** Snapshots are cut into frames of about this size so they are written without one giant buffer. */
export const SNAPSHOT_FRAME_BYTES = 1 << 20;
/** A batch buffer that grew beyond this (a burst of large values) is not kept for reuse. */
const MAX_RETAINED_FRAME = 4 << 20;

const REC_PUT = 1;
const REC_DEL = 2;
const REC_LEASE = 3;
const REC_LEASE_END = 4;
const REC_JOURNAL_HEADER = 5;
const REC_SNAPSHOT_HEADER = 6;
const REC_SNAPSHOT_END = 7;

// ---------------------------------------------------------------------------------------------------
// CRC32 (IEEE), native when Node has it (zlib.crc32 since 20.15 / 22.2).

export const crc32: (data: Uint8Array) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? (data) => zlib.crc32(data) : tableCrc32;

let crcTable: Int32Array | undefined;
function tableCrc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let crc = -1;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

// ---------------------------------------------------------------------------------------------------
// Encoding: records are appended straight into one growable, reused buffer per batch, with the frame
// header space reserved at its start, so the write path allocates no per-record Buffers.

export class FrameBuilder {
  private buf: Buffer;
  len = FRAME_HEADER;

  constructor(private readonly initialSize = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  get empty(): boolean {
    return this.len === FRAME_HEADER;
  }

  reset(): void {
    this.len = FRAME_HEADER;
    if (this.buf.length > MAX_RETAINED_FRAME) this.buf = Buffer.allocUnsafe(this.initialSize);
  }

  /** Fill in the header and return the frame (a view of the internal buffer, valid until reset). */
  finish(): Buffer {
    const b = this.buf;
    b.writeUInt32BE(MAGIC, 0);
    b.writeUInt32LE(this.len - FRAME_HEADER, 4);
    b.writeUInt32LE(crc32(b.subarray(FRAME_HEADER, this.len)), 8);
    return b.subarray(0, this.len);
  }

  put(rev: number, key: string, lease: string | undefined, value: Buffer): void {
    const kl = Buffer.byteLength(key, 'utf8');
    const ll = lease === undefined ? 0 : Buffer.byteLength(lease, 'utf8');
    let o = this.begin(REC_PUT, 8 + 4 + kl + 2 + ll + value.length);
    const b = this.buf;
    o = b.writeDoubleLE(rev, o);
    o = b.writeUInt32LE(kl, o);
    o += b.write(key, o, kl, 'utf8');
    o = b.writeUInt16LE(ll, o);
    if (lease !== undefined) o += b.write(lease, o, ll, 'utf8');
    value.copy(b, o);
  }

  del(rev: number, key: string, expired: boolean): void {
    const kl = Buffer.byteLength(key, 'utf8');
    let o = this.begin(REC_DEL, 8 + 1 + kl);
    o = this.buf.writeDoubleLE(rev, o);
    o = this.buf.writeUInt8(expired ? 1 : 0, o);
    this.buf.write(key, o, kl, 'utf8');
  }

  lease(id: string, ttlMs: number, deadline: number): void {
    const il = Buffer.byteLength(id, 'utf8');
    let o = this.begin(REC_LEASE, 8 + 8 + il);
    o = this.buf.writeDoubleLE(ttlMs, o);
    o = this.buf.writeDoubleLE(deadline, o);
    this.buf.write(id, o, il, 'utf8');
  }

  leaseEnd(id: string): void {
    const il = Buffer.byteLength(id, 'utf8');
    const o = this.begin(REC_LEASE_END, il);
    this.buf.write(id, o, il, 'utf8');
  }

  journalHeader(gen: number): void {
    let o = this.begin(REC_JOURNAL_HEADER, 4 + 4);
    o = this.buf.writeUInt32LE(FORMAT_VERSION, o);
    this.buf.writeUInt32LE(gen, o);
  }

  snapshotHeader(gen: number, revision: number): void {
    let o = this.begin(REC_SNAPSHOT_HEADER, 4 + 4 + 8);
    o = this.buf.writeUInt32LE(FORMAT_VERSION, o);
    o = this.buf.writeUInt32LE(gen, o);
    this.buf.writeDoubleLE(revision, o);
  }

  snapshotEnd(count: number): void {
    const o = this.begin(REC_SNAPSHOT_END, 8);
    this.buf.writeDoubleLE(count, o);
  }

  /** Reserve room for a record with `fields` bytes after its type; returns the offset of the fields. */
  private begin(type: number, fields: number): number {
    const bodyLen = 1 + fields;
    const need = this.len + 4 + bodyLen;
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.len);
      this.buf = grown;
    }
    let o = this.buf.writeUInt32LE(bodyLen, this.len);
    o = this.buf.writeUInt8(type, o);
    this.len = need;
    return o;
  }
}

// ---------------------------------------------------------------------------------------------------
// Decoding and scanning.

export interface RecordVisitor {
  put(rev: number, key: string, lease: string | undefined, value: Buffer): void;
  del(rev: number, key: string, expired: boolean): void;
  lease(id: string, ttlMs: number, deadline: number): void;
  leaseEnd(id: string): void;
  journalHeader(version: number, gen: number): void;
  snapshotHeader(version: number, gen: number, revision: number): void;
  snapshotEnd(count: number): void;
}

/** Decode the records of one frame whose CRC has already been checked. Throws on a malformed record. */
export function decodeFrame(p: Buffer, v: RecordVisitor): void {
  let off = 0;
  while (off < p.length) {
    if (off + 5 > p.length) throw new Error('truncated record header');
    const len = p.readUInt32LE(off);
    const start = off + 4;
    const end = start + len;
    if (len < 1 || end > p.length) throw new Error(`record length ${len} overruns its frame`);
    const need = (n: number) => {
      if (n > end) throw new Error(`record of type ${p[start]} is too short`);
    };
    const o = start + 1;
    switch (p[start]) {
      case REC_PUT: {
        need(o + 12);
        const rev = p.readDoubleLE(o);
        const kl = p.readUInt32LE(o + 8);
        const ks = o + 12;
        need(ks + kl + 2);
        const ll = p.readUInt16LE(ks + kl);
        const ls = ks + kl + 2;
        need(ls + ll);
        v.put(
          rev,
          p.toString('utf8', ks, ks + kl),
          ll ? p.toString('utf8', ls, ls + ll) : undefined,
          Buffer.from(p.subarray(ls + ll, end)),
        );
        break;
      }
      case REC_DEL:
        need(o + 9);
        v.del(p.readDoubleLE(o), p.toString('utf8', o + 9, end), p[o + 8] === 1);
        break;
      case REC_LEASE:
        need(o + 16);
        v.lease(p.toString('utf8', o + 16, end), p.readDoubleLE(o), p.readDoubleLE(o + 8));
        break;
      case REC_LEASE_END:
        v.leaseEnd(p.toString('utf8', o, end));
        break;
      case REC_JOURNAL_HEADER:
        need(o + 8);
        v.journalHeader(p.readUInt32LE(o), p.readUInt32LE(o + 4));
        break;
      case REC_SNAPSHOT_HEADER:
        need(o + 16);
        v.snapshotHeader(p.readUInt32LE(o), p.readUInt32LE(o + 4), p.readDoubleLE(o + 8));
        break;
      case REC_SNAPSHOT_END:
        need(o + 8);
        v.snapshotEnd(p.readDoubleLE(o));
        break;
      default:
        throw new Error(`unknown record type ${p[start]}`);
    }
    off = end;
  }
}

/** Payload length of a valid frame at `off`, or -1 if the bytes there are not one. */
export function frameAt(buf: Buffer, off: number): number {
  if (buf.length - off < FRAME_HEADER) return -1;
  if (buf.readUInt32BE(off) !== MAGIC) return -1;
  const len = buf.readUInt32LE(off + 4);
  if (len > buf.length - off - FRAME_HEADER) return -1;
  const start = off + FRAME_HEADER;
  return crc32(buf.subarray(start, start + len)) === buf.readUInt32LE(off + 8) ? len : -1;
}

/** Offset of the first intact frame starting at or after `from`, or -1. */
export function nextFrameAt(buf: Buffer, from: number): number {
  for (let i = buf.indexOf(MAGIC_BYTES, from); i >= 0; i = buf.indexOf(MAGIC_BYTES, i + 1)) {
    if (frameAt(buf, i) >= 0) return i;
  }
  return -1;
}

/**
 * Do the bytes from `off` to the end look like the start of a frame whose write was cut short: a part
 * of the magic, or a whole header whose payload length runs past the end of the file?
 */
export function cutShort(buf: Buffer, off: number): boolean {
  const rest = buf.length - off;
  if (rest < 4) return MAGIC_BYTES.subarray(0, rest).equals(buf.subarray(off));
  if (buf.readUInt32BE(off) !== MAGIC) return false;
  return rest < FRAME_HEADER || buf.readUInt32LE(off + 4) > rest - FRAME_HEADER;
}

/**
 * The revisions of the put and delete records at the start of `payload`, read for as long as records
 * are whole and well formed, without a CRC to vouch for them (recovery uses it to name what a damaged
 * frame held). `complete`: every byte of the payload was read as records.
 */
export function revisionsIn(payload: Buffer): { revisions: number[]; complete: boolean } {
  const revisions: number[] = [];
  const collect: RecordVisitor = {
    put: (rev) => revisions.push(rev),
    del: (rev) => revisions.push(rev),
    lease: () => undefined,
    leaseEnd: () => undefined,
    journalHeader: () => undefined,
    snapshotHeader: () => undefined,
    snapshotEnd: () => undefined,
  };
  let off = 0;
  while (off + 4 <= payload.length) {
    const end = off + 4 + payload.readUInt32LE(off);
    if (end > payload.length) break;
    try {
      decodeFrame(payload.subarray(off, end), collect);
    } catch {
      break;
    }
    off = end;
  }
  return { revisions, complete: off === payload.length };
}

export interface ScanResult {
  /** Bytes of intact frames from the start. */
  end: number;
  /** Set when the file continues past `end` with bytes that are not a frame: where, and the next intact frame after it (-1: none). */
  bad?: { offset: number; nextFrame: number };
}

/** Call `onFrame` for each intact frame from the start, up to the first bytes that are not one. */
export function scanFrames(buf: Buffer, onFrame: (payload: Buffer, offset: number) => void): ScanResult {
  let off = 0;
  while (off < buf.length) {
    const len = frameAt(buf, off);
    if (len < 0) return { end: off, bad: { offset: off, nextFrame: nextFrameAt(buf, off + 1) } };
    onFrame(buf.subarray(off + FRAME_HEADER, off + FRAME_HEADER + len), off);
    off += FRAME_HEADER + len;
  }
  return { end: off };
}
