/**
 * The embedded store: one machine, zero setup. Everything lives in memory; every acknowledged write is
 * in an fsync'd journal under the data dir first.
 *
 * Files in `dir` (created 0700):
 *   LOCK               pid of the process that has the store open (two writers would interleave frames)
 *   snapshot.bin       the state at the last compaction (absent until the first one), generation G
 *   journal.<G>.log    every write since that snapshot
 *   snapshot.bin.tmp   a compaction in progress (deleted on open)
 *
 * On-disk format. Both files are a sequence of frames:
 *
 *   frame  = magic "PTJ1" (4) | payload length u32le (4) | crc32(payload) u32le (4) | payload
 *   payload = record*,  record = body length u32le (4) | body,  body = type u8 | fields…
 *
 * A frame is the unit of group commit: all the records of one batch, written with one write and made
 * durable by one fdatasync, and covered by one CRC. That makes the frame, not the single record, the
 * unit that is checked and that can be torn, which is what recovery needs: a batch is all-or-nothing,
 * so a lease revocation and the deletes it causes are never half applied.
 *
 * Recovery and honesty. A frame is written only after the previous frame's fdatasync returned, so a
 * crash can damage only the last frame of the journal. On open:
 *   - a bad last frame (short, bad magic, bad CRC) with nothing valid after it is a torn write: it was
 *     never acknowledged, so the file is truncated there and a warning names the byte offset;
 *   - a bad frame followed by any valid frame cannot come from a crash (that later frame was written
 *     after the bad one was fsync'd). It is media or operator damage, and skipping it would silently lose
 *     acknowledged writes and break revision continuity. We refuse to open (STORE_CORRUPT, with file and
 *     offset) and let the operator choose: restore from backup, or truncate at that offset and accept
 *     the loss of everything after it.
 *   - a damaged snapshot is always STORE_CORRUPT: it is fsync'd before it is renamed into place.
 *
 * Durability is also what readers see: memory is updated when a write is issued (so compare-and-set is
 * decided against the latest state), but nothing that depends on a not-yet-durable write leaves the
 * store before it is durable: write promises, reads (get/list/revision/failed cas) and watch events are
 * all released in journal order after the fdatasync that covers what they saw.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { ErrorCodes } from '../model/errors.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import { StoreError, checkKey, checkRevision, checkTtl, leaseNotFound, storeClosed, toBuffer } from './errors.js';
import type { Entry, Lease, PutOptions, Store, StoreHealth, Watch, WatchEvent, WriteOptions } from './types.js';

export interface EmbeddedStoreOptions {
  logger?: Logger;
  /** Compact when the journal is larger than this many bytes and more than twice the live data. Default 64 MiB. */
  compactAfterBytes?: number;
  /** How often lease deadlines are checked, in ms. A lease expires at most this late. Default 100 ms. */
  leaseCheckIntervalMs?: number;
  /** Events queued per watcher before it gets a single `resync` instead. Default 10,000. */
  watchQueueLimit?: number;
}

/** Introspection for tests, benchmarks and the api. */
export interface EmbeddedStoreStats {
  dir: string;
  revision: number;
  keys: number;
  leases: number;
  /** Compaction generation: the snapshot and journal file number. */
  generation: number;
  journalBytes: number;
  /** Frames (group commits, one fdatasync each) written since open. */
  frames: number;
  compactions: number;
}

const DEFAULT_COMPACT_AFTER = 64 * 1024 * 1024;
const DEFAULT_LEASE_CHECK_MS = 100;
const DEFAULT_WATCH_QUEUE = 10_000;

const FORMAT_VERSION = 1;
const MAGIC = 0x50544a31; // "PTJ1"
const MAGIC_BYTES = Buffer.from('PTJ1', 'latin1');
const FRAME_HEADER = 12;
/** Snapshots are cut into frames of about this size so they are written without one giant buffer. */
const SNAPSHOT_FRAME_BYTES = 1 << 20;
/** A batch buffer that grew beyond this (a burst of large values) is not kept for reuse. */
const MAX_RETAINED_FRAME = 4 << 20;

const REC_PUT = 1;
const REC_DEL = 2;
const REC_LEASE = 3;
const REC_LEASE_END = 4;
const REC_JOURNAL_HEADER = 5;
const REC_SNAPSHOT_HEADER = 6;
const REC_SNAPSHOT_END = 7;

const SNAPSHOT_FILE = 'snapshot.bin';
const SNAPSHOT_TMP = 'snapshot.bin.tmp';
const LOCK_FILE = 'LOCK';
const journalFile = (gen: number) => `journal.${gen}.log`;
const JOURNAL_RE = /^journal\.(\d+)\.log$/;

// ---------------------------------------------------------------------------------------------------
// CRC32 (IEEE), native when Node has it (zlib.crc32 since 20.15 / 22.2).

const crc32: (data: Uint8Array) => number =
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

class FrameBuilder {
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

interface RecordVisitor {
  put(rev: number, key: string, lease: string | undefined, value: Buffer): void;
  del(rev: number, key: string, expired: boolean): void;
  lease(id: string, ttlMs: number, deadline: number): void;
  leaseEnd(id: string): void;
  journalHeader(version: number, gen: number): void;
  snapshotHeader(version: number, gen: number, revision: number): void;
  snapshotEnd(count: number): void;
}

/** Decode the records of one frame whose CRC has already been checked. Throws on a malformed record. */
function decodeFrame(p: Buffer, v: RecordVisitor): void {
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
function frameAt(buf: Buffer, off: number): number {
  if (buf.length - off < FRAME_HEADER) return -1;
  if (buf.readUInt32BE(off) !== MAGIC) return -1;
  const len = buf.readUInt32LE(off + 4);
  if (len > buf.length - off - FRAME_HEADER) return -1;
  const start = off + FRAME_HEADER;
  return crc32(buf.subarray(start, start + len)) === buf.readUInt32LE(off + 8) ? len : -1;
}

/** Is there any intact frame starting after `from`? (Decides torn tail vs damage in the middle.) */
function validFrameAfter(buf: Buffer, from: number): boolean {
  for (let i = buf.indexOf(MAGIC_BYTES, from); i >= 0; i = buf.indexOf(MAGIC_BYTES, i + 1)) {
    if (frameAt(buf, i) >= 0) return true;
  }
  return false;
}

interface ScanResult {
  /** Bytes of intact frames from the start. */
  end: number;
  /** Set when the file continues past `end` with bytes that are not a frame. */
  bad?: { offset: number; followedByValid: boolean };
}

function scanFrames(buf: Buffer, onFrame: (payload: Buffer, offset: number) => void): ScanResult {
  let off = 0;
  while (off < buf.length) {
    const len = frameAt(buf, off);
    if (len < 0) return { end: off, bad: { offset: off, followedByValid: validFrameAfter(buf, off + 1) } };
    onFrame(buf.subarray(off + FRAME_HEADER, off + FRAME_HEADER + len), off);
    off += FRAME_HEADER + len;
  }
  return { end: off };
}

// ---------------------------------------------------------------------------------------------------
// In-memory state, shared by recovery and the live store.

interface LeaseState {
  id: string;
  ttlMs: number;
  /** Wall-clock ms (Date.now()), because it must survive a restart. */
  deadline: number;
  keys: Set<string>;
}

function lowerBound(a: string[], s: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < s) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

class State {
  readonly data = new Map<string, Entry>();
  readonly leases = new Map<string, LeaseState>();
  revision = 0;
  /**
   * Keys in sorted order (JS string order, as Redis listings are re-sorted), for prefix listing in
   * O(log n + k). Not maintained during recovery, where it is cheaper to sort once at the end.
   */
  private index: string[] | null = null;

  sortedKeys(): string[] {
    if (!this.index) this.index = [...this.data.keys()].sort();
    return this.index;
  }

  put(entry: Entry): void {
    const key = entry.key;
    const prev = this.data.get(key);
    if (prev === undefined) {
      if (this.index) this.index.splice(lowerBound(this.index, key), 0, key);
    } else if (prev.lease !== undefined && prev.lease !== entry.lease) {
      this.leases.get(prev.lease)?.keys.delete(key);
    }
    if (entry.lease !== undefined) this.leases.get(entry.lease)?.keys.add(key);
    this.data.set(key, entry);
  }

  remove(key: string): Entry | undefined {
    const prev = this.data.get(key);
    if (prev === undefined) return undefined;
    this.data.delete(key);
    if (this.index) {
      const i = lowerBound(this.index, key);
      if (this.index[i] === key) this.index.splice(i, 1);
    }
    if (prev.lease !== undefined) this.leases.get(prev.lease)?.keys.delete(key);
    return prev;
  }

  setLease(id: string, ttlMs: number, deadline: number): LeaseState {
    let l = this.leases.get(id);
    if (l) {
      l.ttlMs = ttlMs;
      l.deadline = deadline;
    } else {
      l = { id, ttlMs, deadline, keys: new Set() };
      this.leases.set(id, l);
    }
    return l;
  }

  list(prefix: string): Entry[] {
    const keys = this.sortedKeys();
    const out: Entry[] = [];
    for (let i = prefix ? lowerBound(keys, prefix) : 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (!k.startsWith(prefix)) break;
      out.push(this.data.get(k)!);
    }
    return out;
  }

  /** What a snapshot of the current state would take on disk, near enough to decide on compaction. */
  liveBytes(): number {
    let n = 64;
    for (const e of this.data.values()) n += 23 + e.key.length + (e.lease?.length ?? 0) + e.value.length;
    for (const l of this.leases.values()) n += 33 + l.id.length;
    return n;
  }
}

// ---------------------------------------------------------------------------------------------------
// Recovery.

function corrupt(file: string, offset: number, why: string, advice = ''): StoreError {
  return new StoreError(ErrorCodes.STORE_CORRUPT, `${file}: ${why} at byte ${offset}${advice ? `; ${advice}` : ''}`);
}

async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Load snapshot.bin into `state`; returns its generation (0 when there is none yet). */
async function loadSnapshot(file: string, state: State): Promise<number> {
  const buf = await readIfExists(file);
  if (!buf) return 0;
  let gen = -1;
  let ended = false;
  let at = 0;
  const visitor: RecordVisitor = {
    snapshotHeader(version, g, revision) {
      if (gen !== -1 || version !== FORMAT_VERSION) throw new Error(`unexpected snapshot header (format ${version})`);
      gen = g;
      state.revision = revision;
    },
    lease(id, ttlMs, deadline) {
      if (gen === -1 || ended) throw new Error('lease record outside the snapshot body');
      state.setLease(id, ttlMs, deadline);
    },
    put(rev, key, lease, value) {
      if (gen === -1 || ended) throw new Error('entry record outside the snapshot body');
      state.put(lease === undefined ? { key, value, revision: rev } : { key, value, revision: rev, lease });
    },
    snapshotEnd(count) {
      if (count !== state.data.size) throw new Error(`snapshot holds ${state.data.size} entries, its trailer says ${count}`);
      ended = true;
    },
    del() {
      throw new Error('delete record in a snapshot');
    },
    leaseEnd() {
      throw new Error('lease-end record in a snapshot');
    },
    journalHeader() {
      throw new Error('journal header in a snapshot');
    },
  };
  const scan = scanFrames(buf, (payload, offset) => {
    at = offset;
    try {
      decodeFrame(payload, visitor);
    } catch (err) {
      throw corrupt(file, offset, (err as Error).message, 'restore the data directory from a backup');
    }
  });
  if (scan.bad) throw corrupt(file, scan.bad.offset, 'damaged snapshot frame', 'restore the data directory from a backup');
  if (gen === -1 || !ended) throw corrupt(file, at, 'snapshot is incomplete', 'restore the data directory from a backup');
  return gen;
}

interface JournalLoad {
  /** Bytes of the journal after recovery (0 when it has to be (re)created). */
  bytes: number;
}

async function loadJournal(file: string, gen: number, state: State, log: Logger): Promise<JournalLoad> {
  const buf = await readIfExists(file);
  if (!buf || buf.length === 0) return { bytes: 0 };
  let headerSeen = false;
  const visitor: RecordVisitor = {
    journalHeader(version, g) {
      if (headerSeen || version !== FORMAT_VERSION || g !== gen) {
        throw new Error(`unexpected journal header (format ${version}, generation ${g}; expected generation ${gen})`);
      }
      headerSeen = true;
    },
    put(rev, key, lease, value) {
      if (!headerSeen) throw new Error('record before the journal header');
      if (rev !== state.revision + 1) throw new Error(`revision ${rev} follows ${state.revision}`);
      state.revision = rev;
      if (lease !== undefined && !state.leases.has(lease)) {
        log.warn({ file, key, lease }, 'journal entry refers to an unknown lease; keeping the key without it');
        lease = undefined;
      }
      state.put(lease === undefined ? { key, value, revision: rev } : { key, value, revision: rev, lease });
    },
    del(rev, key) {
      if (!headerSeen) throw new Error('record before the journal header');
      if (rev !== state.revision + 1) throw new Error(`revision ${rev} follows ${state.revision}`);
      state.revision = rev;
      state.remove(key);
    },
    lease(id, ttlMs, deadline) {
      if (!headerSeen) throw new Error('record before the journal header');
      state.setLease(id, ttlMs, deadline);
    },
    leaseEnd(id) {
      state.leases.delete(id);
    },
    snapshotHeader() {
      throw new Error('snapshot header in a journal');
    },
    snapshotEnd() {
      throw new Error('snapshot trailer in a journal');
    },
  };
  const scan = scanFrames(buf, (payload, offset) => {
    try {
      decodeFrame(payload, visitor);
    } catch (err) {
      throw corrupt(
        file,
        offset,
        `intact frame with an invalid record (${(err as Error).message})`,
        'refusing to open; restore the data directory from a backup',
      );
    }
  });
  if (scan.bad) {
    const { offset, followedByValid } = scan.bad;
    if (followedByValid) {
      throw corrupt(
        file,
        offset,
        "damaged frame followed by intact ones (not a crash artifact: later frames were written after it was fsync'd)",
        `refusing to open, since skipping it would silently lose acknowledged writes; restore the data directory from a backup, or truncate ${file} to ${offset} bytes to accept losing everything after that offset`,
      );
    }
    log.warn(
      { file, offset, discardedBytes: buf.length - offset },
      'journal ends in a torn write (crash during a commit that was never acknowledged); truncating it',
    );
    const fh = await fsp.open(file, 'r+');
    try {
      await fh.truncate(offset);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
  return { bytes: headerSeen ? scan.end : 0 };
}

/** Size of a journal that holds only its header frame. */
const EMPTY_JOURNAL_BYTES = FRAME_HEADER + 4 + 1 + 4 + 4;

/**
 * Remove what an interrupted compaction leaves: the temp snapshot, journals of older generations, and
 * the header-only journal of a generation whose snapshot was never renamed into place. A journal of a
 * newer generation that holds records cannot be a leftover (records go there only after the rename):
 * its snapshot is missing, and starting without it would silently lose data.
 */
async function removeLeftovers(dir: string, gen: number): Promise<void> {
  for (const name of await fsp.readdir(dir)) {
    const file = path.join(dir, name);
    const m = JOURNAL_RE.exec(name);
    if (m && Number(m[1]) > gen && (await fsp.stat(file)).size > EMPTY_JOURNAL_BYTES) {
      throw new StoreError(
        ErrorCodes.STORE_CORRUPT,
        `${file} holds writes of generation ${m[1]}, but ${path.join(dir, SNAPSHOT_FILE)} is ${gen === 0 ? 'missing' : `of generation ${gen}`}; refusing to open without the snapshot those writes follow — restore the data directory from a backup`,
      );
    }
  }
  for (const name of await fsp.readdir(dir)) {
    const m = JOURNAL_RE.exec(name);
    if (name === SNAPSHOT_TMP || (m && Number(m[1]) !== gen)) await fsp.rm(path.join(dir, name), { force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// Small fs helpers (callback fs on a raw fd: the hot path avoids FileHandle's per-call overhead).

function openFd(file: string, flags: string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, flags, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function writeAll(fd: number, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let off = 0;
    const step = () =>
      fs.write(fd, buf, off, buf.length - off, null, (err, n) => {
        if (err) return reject(err);
        off += n;
        if (off < buf.length) step();
        else resolve();
      });
    step();
  });
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

/** Make a create/rename/unlink in `dir` durable. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Create a fresh journal for `gen` (replacing any leftover) holding only its header; returns an append fd. */
async function createJournal(file: string, gen: number): Promise<{ fd: number; bytes: number }> {
  await fsp.rm(file, { force: true });
  const fd = await openFd(file, 'a');
  try {
    const fb = new FrameBuilder(64);
    fb.journalHeader(gen);
    const frame = fb.finish();
    await writeAll(fd, frame);
    await fdatasync(fd);
    return { fd, bytes: frame.length };
  } catch (err) {
    await closeFd(fd).catch(() => undefined);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// The data-directory lock.

/** Directories open in this process (a pid check cannot tell two opens in one process apart). */
const openDirs = new Set<string>();

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take `<dir>/LOCK`. A lock left by a process that no longer runs (a crash, kill -9) is taken over;
 * one held by a live process is refused, because two writers would interleave journal frames.
 */
async function acquireLock(dir: string): Promise<() => Promise<void>> {
  if (openDirs.has(dir)) throw new StoreError(ErrorCodes.STORE_UNAVAILABLE, `store directory ${dir} is already open in this process`);
  const lockPath = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fsp.writeFile(lockPath, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      openDirs.add(dir);
      return async () => {
        openDirs.delete(dir);
        await fsp.rm(lockPath, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt(await fsp.readFile(lockPath, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new StoreError(
          ErrorCodes.STORE_UNAVAILABLE,
          `store directory ${dir} is in use by process ${pid} (${lockPath}); if that process is not Portico, remove the file`,
        );
      }
      await fsp.rm(lockPath, { force: true });
    }
  }
  throw new StoreError(ErrorCodes.STORE_UNAVAILABLE, `could not take the lock ${lockPath}`);
}

// ---------------------------------------------------------------------------------------------------
// The store.

/**
 * Something released in journal order once everything issued before it is durable: a write's promise
 * (with its watch event), a read's promise, or a hook (a watcher's resync).
 */
interface CommitItem {
  resolve: ((value: unknown) => void) | null;
  reject: ((err: Error) => void) | null;
  value: unknown;
  event: WatchEvent | null;
  hook: (() => void) | null;
}

class Batch {
  readonly frame = new FrameBuilder();
  items: CommitItem[] = [];
  /** Some write in it wants fsync before its acknowledgement (the default); false: all are `written`. */
  strict = false;
  reset(): void {
    this.frame.reset();
    this.items.length = 0;
    this.strict = false;
  }
}

class EmbeddedWatch implements Watch {
  closed = false;
  /** Events up to this revision are covered by the resync this watcher was (or will be) given. */
  coveredThrough = 0;
  queue: (WatchEvent | undefined)[] = [];
  head = 0;
  drainScheduled = false;

  constructor(
    private readonly watchers: Set<EmbeddedWatch>,
    readonly prefix: string,
    readonly onEvent: (ev: WatchEvent) => void,
  ) {}

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.head = 0;
    this.watchers.delete(this);
  }
}

export class EmbeddedStore implements Store {
  readonly kind = 'embedded';

  private readonly watchers = new Set<EmbeddedWatch>();
  private pending = new Batch();
  private spare: Batch | null = new Batch();
  /** The batch being written and fsync'd, if any. */
  private inflight: Batch | null = null;
  private flushing = false;
  /** The fdatasync in progress, when it follows acknowledgements already given (`durability: 'written'`). */
  private syncing: Promise<void> | null = null;
  private flushScheduled = false;
  private readonly flushBound = () => void this.flush();
  private failure: StoreError | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout;
  private nextCompactCheck: number;
  private frames = 0;
  private compactions = 0;

  health(): StoreHealth {
    if (this.closed) return { ok: false, target: this.dir, error: 'store closed' };
    if (this.failure) return { ok: false, target: this.dir, error: this.failure.message };
    return { ok: true, target: this.dir };
  }

  private constructor(
    private readonly dir: string,
    private readonly state: State,
    private fd: number,
    private gen: number,
    private journalBytes: number,
    private readonly releaseLock: () => Promise<void>,
    private readonly log: Logger,
    private readonly compactAfterBytes: number,
    private readonly watchQueueLimit: number,
    leaseCheckIntervalMs: number,
  ) {
    this.nextCompactCheck = compactAfterBytes;
    this.timer = setInterval(() => this.expireDue(Date.now()), leaseCheckIntervalMs);
    this.timer.unref();
  }

  /** Open (creating if needed) the store in `dir`, recovering from its snapshot and journal. */
  static async open(dir: string, opts: EmbeddedStoreOptions = {}): Promise<EmbeddedStore> {
    const log = (opts.logger ?? silentLogger).child({ component: 'store', store: 'embedded' });
    const compactAfterBytes = opts.compactAfterBytes ?? DEFAULT_COMPACT_AFTER;
    const leaseCheckIntervalMs = opts.leaseCheckIntervalMs ?? DEFAULT_LEASE_CHECK_MS;
    const watchQueueLimit = opts.watchQueueLimit ?? DEFAULT_WATCH_QUEUE;
    if (!(compactAfterBytes > 0)) throw new RangeError(`compactAfterBytes must be > 0, got ${compactAfterBytes}`);
    if (!(leaseCheckIntervalMs > 0)) throw new RangeError(`leaseCheckIntervalMs must be > 0, got ${leaseCheckIntervalMs}`);
    if (!(watchQueueLimit >= 1)) throw new RangeError(`watchQueueLimit must be ≥ 1, got ${watchQueueLimit}`);

    dir = path.resolve(dir);
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const releaseLock = await acquireLock(dir);
    let fd = -1;
    let store: EmbeddedStore | undefined;
    try {
      const state = new State();
      const gen = await loadSnapshot(path.join(dir, SNAPSHOT_FILE), state);
      const journalPath = path.join(dir, journalFile(gen));
      let { bytes } = await loadJournal(journalPath, gen, state, log);
      await removeLeftovers(dir, gen);
      if (bytes === 0) {
        ({ fd, bytes } = await createJournal(journalPath, gen));
        await fsyncDir(dir);
      } else {
        fd = await openFd(journalPath, 'a');
      }
      store = new EmbeddedStore(dir, state, fd, gen, bytes, releaseLock, log, compactAfterBytes, watchQueueLimit, leaseCheckIntervalMs);
      // Leases whose deadline passed while we were down expire now, as ordinary journaled deletes.
      store.expireDue(Date.now());
      await store.durable(undefined);
      log.info(
        { dir, revision: state.revision, keys: state.data.size, leases: state.leases.size, generation: gen, journalBytes: bytes },
        'embedded store opened',
      );
      return store;
    } catch (err) {
      if (store) clearInterval(store.timer);
      if (fd >= 0) await closeFd(fd).catch(() => undefined);
      await releaseLock();
      throw err;
    }
  }

  stats(): EmbeddedStoreStats {
    return {
      dir: this.dir,
      revision: this.state.revision,
      keys: this.state.data.size,
      leases: this.state.leases.size,
      generation: this.gen,
      journalBytes: this.journalBytes,
      frames: this.frames,
      compactions: this.compactions,
    };
  }

  // ----- reads

  async get(key: string): Promise<Entry | undefined> {
    this.assertUsable();
    checkKey(key);
    return this.durable(this.state.data.get(key));
  }

  async list(prefix: string): Promise<Entry[]> {
    this.assertUsable();
    if (typeof prefix !== 'string') throw new TypeError('list prefix must be a string');
    return this.durable(this.state.list(prefix));
  }

  async revision(): Promise<number> {
    this.assertUsable();
    return this.durable(this.state.revision);
  }

  // ----- writes

  async put(key: string, value: Buffer | string, opts?: PutOptions): Promise<Entry> {
    this.assertUsable();
    checkKey(key);
    const lease = this.checkLease(opts);
    const entry = this.applyPut(key, toBuffer(value), lease);
    return this.commit(entry, this.watchers.size ? { type: 'put', key, entry, revision: entry.revision } : null, opts);
  }

  async cas(key: string, expectedRevision: number, value: Buffer | string, opts?: PutOptions): Promise<Entry | null> {
    this.assertUsable();
    checkKey(key);
    checkRevision(expectedRevision, 'expectedRevision');
    if ((this.state.data.get(key)?.revision ?? 0) !== expectedRevision) return this.durable(null);
    const lease = this.checkLease(opts);
    const entry = this.applyPut(key, toBuffer(value), lease);
    return this.commit(entry, this.watchers.size ? { type: 'put', key, entry, revision: entry.revision } : null, opts);
  }

  async delete(key: string, expectedRevision?: number, opts?: WriteOptions): Promise<boolean> {
    this.assertUsable();
    checkKey(key);
    if (expectedRevision !== undefined) checkRevision(expectedRevision, 'expectedRevision');
    const cur = this.state.data.get(key);
    if (!cur || (expectedRevision !== undefined && cur.revision !== expectedRevision)) return this.durable(false);
    return this.commit(true, this.applyDelete(key, false), opts);
  }

  // ----- leases

  async grantLease(ttlMs: number): Promise<Lease> {
    this.assertUsable();
    checkTtl(ttlMs);
    let id: string;
    do id = randomBytes(8).toString('hex');
    while (this.state.leases.has(id));
    const deadline = Date.now() + ttlMs;
    this.state.setLease(id, ttlMs, deadline);
    this.pending.frame.lease(id, ttlMs, deadline);
    return this.commit({ id, ttlMs }, null);
  }

  async keepAlive(id: string): Promise<boolean> {
    this.assertUsable();
    const lease = this.state.leases.get(id);
    if (!lease) return this.durable(false);
    const now = Date.now();
    if (lease.deadline <= now) {
      // Due but the timer has not run yet: expire it now, so `false` always means "its keys are gone".
      this.endLease(lease);
      return this.commit(false, null);
    }
    lease.deadline = now + lease.ttlMs;
    this.pending.frame.lease(id, lease.ttlMs, lease.deadline);
    return this.commit(true, null);
  }

  async revokeLease(id: string): Promise<void> {
    this.assertUsable();
    const lease = this.state.leases.get(id);
    if (!lease) return this.durable(undefined);
    this.endLease(lease);
    return this.commit(undefined, null);
  }

  // ----- watch

  watch(prefix: string, onEvent: (ev: WatchEvent) => void): Watch {
    this.assertUsable();
    if (typeof prefix !== 'string') throw new TypeError('watch prefix must be a string');
    const w = new EmbeddedWatch(this.watchers, prefix, onEvent);
    this.watchers.add(w);
    this.resync(w);
    return w;
  }

  async close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    clearInterval(this.timer);
    this.closing = (async () => {
      // Writes issued before close still complete (or fail) normally.
      if (!this.failure && (this.pending.items.length > 0 || this.inflight)) {
        await new Promise<void>((resolve) =>
          this.enqueueAfterWrites({ resolve: () => resolve(), reject: () => resolve(), value: undefined, event: null, hook: null }),
        );
      }
      await this.syncing?.catch(() => undefined);
      for (const w of [...this.watchers]) w.close();
      await closeFd(this.fd).catch((err) => this.log.warn({ err }, 'closing the journal failed'));
      await this.releaseLock();
      this.log.info({ dir: this.dir, revision: this.state.revision }, 'embedded store closed');
    })();
    return this.closing;
  }

  // ----- internals: state changes (memory + journal record, in the same synchronous step)

  private assertUsable(): void {
    if (this.closed) throw storeClosed(this.kind);
    if (this.failure) throw this.failure;
  }

  private checkLease(opts: PutOptions | undefined): string | undefined {
    const lease = opts?.lease;
    if (lease === undefined) return undefined;
    const l = this.state.leases.get(lease);
    // A lease past its deadline is expired even if the timer has not removed it yet.
    if (!l || l.deadline <= Date.now()) throw leaseNotFound(lease);
    return lease;
  }

  private applyPut(key: string, value: Buffer, lease: string | undefined): Entry {
    const revision = ++this.state.revision;
    const entry: Entry = lease === undefined ? { key, value, revision } : { key, value, revision, lease };
    this.state.put(entry);
    this.pending.frame.put(revision, key, lease, value);
    return entry;
  }

  /** Returns the watch event to publish when the delete is durable (null when nobody watches). */
  private applyDelete(key: string, expired: boolean): WatchEvent | null {
    const revision = ++this.state.revision;
    this.state.remove(key);
    this.pending.frame.del(revision, key, expired);
    if (!this.watchers.size) return null;
    return expired ? { type: 'delete', key, revision, expired: true } : { type: 'delete', key, revision };
  }

  /** Delete a lease's keys (each an ordinary write, `expired: true`), then the lease itself. */
  private endLease(lease: LeaseState): void {
    this.state.leases.delete(lease.id);
    for (const key of [...lease.keys].sort()) {
      const event = this.applyDelete(key, true);
      this.pending.items.push({ resolve: null, reject: null, value: undefined, event, hook: null });
    }
    this.pending.frame.leaseEnd(lease.id);
    this.kick();
  }

  private expireDue(now: number): void {
    if (this.closed || this.failure) return;
    for (const lease of this.state.leases.values()) {
      if (lease.deadline <= now) {
        this.log.debug({ lease: lease.id, keys: lease.keys.size, lateMs: now - lease.deadline }, 'lease expired');
        this.endLease(lease);
      }
    }
  }

  // ----- internals: group commit

  private commit<T>(value: T, event: WatchEvent | null, opts?: WriteOptions): Promise<T> {
    if (opts?.durability !== 'written') this.pending.strict = true;
    return new Promise<T>((resolve, reject) => {
      this.pending.items.push({ resolve: resolve as (v: unknown) => void, reject, value, event, hook: null });
      this.kick();
    });
  }

  /** Resolve with `value` once every write issued so far is durable (at once if none is outstanding). */
  private durable<T>(value: T): Promise<T> {
    if (this.pending.items.length === 0 && this.inflight === null) return Promise.resolve(value);
    return new Promise<T>((resolve, reject) => {
      this.enqueueAfterWrites({ resolve: resolve as (v: unknown) => void, reject, value, event: null, hook: null });
    });
  }

  /** Queue `item` behind every outstanding write; false when nothing is outstanding. */
  private enqueueAfterWrites(item: CommitItem): boolean {
    if (this.pending.items.length > 0) this.pending.items.push(item);
    else if (this.inflight) this.inflight.items.push(item);
    else return false;
    return true;
  }

  private kick(): void {
    if (this.flushing || this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate, not a microtask: the continuations of callers whose writes just committed run first
    // and add their next writes to this batch.
    setImmediate(this.flushBound);
  }

  /**
   * The group-commit loop: while writes are pending, take them all as one batch, write it as one frame
   * and fdatasync once (or, when due, compact: the snapshot then covers the batch), then release the
   * batch's items in order. Writes issued meanwhile wait for the next turn.
   */
  private async flush(): Promise<void> {
    this.flushScheduled = false;
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.items.length > 0 && !this.failure) {
        const batch = this.pending;
        this.pending = this.spare ?? new Batch();
        this.spare = null;
        this.inflight = batch;
        if (!batch.frame.empty) {
          if (this.compactionDue()) {
            await this.compact();
          } else {
            const frame = batch.frame.finish();
            await writeAll(this.fd, frame);
            this.journalBytes += frame.length;
            this.frames++;
            if (!batch.strict) {
              // Every write in it asked only to be written: acknowledge now, then make it durable before
              // the next batch (whose writes may want fsync, which then covers these too).
              this.inflight = null;
              this.release(batch.items);
              batch.items.length = 0;
            }
            this.syncing = fdatasync(this.fd);
            try {
              await this.syncing;
            } finally {
              this.syncing = null;
            }
          }
        }
        this.inflight = null;
        this.release(batch.items);
        batch.reset();
        this.spare = batch;
        if (this.pending.items.length > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.flushing = false;
    }
  }

  private release(items: CommitItem[]): void {
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (it.hook) it.hook();
      else {
        if (it.event && this.watchers.size) this.publish(it.event as Extract<WatchEvent, { key: string }>);
        if (it.resolve) it.resolve(it.value);
      }
    }
  }

  /**
   * A journal write or fdatasync failed. Memory now holds writes that may not be on disk and, after a
   * failed fsync, the kernel may have dropped the dirty pages, so retrying proves nothing. The only
   * honest state is failed: reject everything outstanding and every further call until the store is
   * reopened, which recovers from what actually reached the disk.
   */
  private fail(err: Error): void {
    const file = path.join(this.dir, journalFile(this.gen));
    this.failure = new StoreError(
      ErrorCodes.STORE_UNAVAILABLE,
      `embedded store journal ${file} could not be written (${err.message}); the store must be reopened`,
      { cause: err },
    );
    this.log.error({ err, file }, 'journal write failed; the embedded store refuses further operations until reopened');
    clearInterval(this.timer);
    for (const batch of [this.inflight, this.pending]) {
      for (const it of batch?.items ?? []) it.reject?.(this.failure);
    }
    this.inflight = null;
    this.pending = new Batch();
  }

  // ----- internals: compaction

  private compactionDue(): boolean {
    if (this.journalBytes < this.nextCompactCheck) return false;
    const live = this.state.liveBytes();
    if (this.journalBytes > 2 * live) return true;
    this.nextCompactCheck = Math.max(this.compactAfterBytes, 2 * live);
    return false;
  }

  /**
   * Write the whole state (including the in-flight batch, already applied to memory) as a new snapshot
   * generation, then switch to a fresh journal. Order: snapshot.tmp fsync'd → new empty journal
   * fsync'd → rename over snapshot.bin → fsync the dir. A crash before the rename leaves the old
   * generation intact (the batch was not acknowledged); after it, the new one is complete.
   */
  private async compact(): Promise<void> {
    const gen = this.gen + 1;
    // Captured synchronously: entries are immutable, so references are a consistent snapshot.
    const revision = this.state.revision;
    const entries = this.state.sortedKeys().map((k) => this.state.data.get(k)!);
    const leases = [...this.state.leases.values()].map((l) => ({ id: l.id, ttlMs: l.ttlMs, deadline: l.deadline }));
    const before = this.journalBytes;

    const tmp = path.join(this.dir, SNAPSHOT_TMP);
    const fh = await fsp.open(tmp, 'w', 0o600);
    let snapshotBytes = 0;
    try {
      const fb = new FrameBuilder(SNAPSHOT_FRAME_BYTES + 64 * 1024);
      const cut = async () => {
        const frame = fb.finish();
        for (let off = 0; off < frame.length;) off += (await fh.write(frame, off, frame.length - off)).bytesWritten;
        snapshotBytes += frame.length;
        fb.reset();
      };
      fb.snapshotHeader(gen, revision);
      for (const l of leases) fb.lease(l.id, l.ttlMs, l.deadline);
      for (const e of entries) {
        fb.put(e.revision, e.key, e.lease, e.value);
        if (fb.len >= SNAPSHOT_FRAME_BYTES) await cut();
      }
      fb.snapshotEnd(entries.length);
      await cut();
      await fh.sync();
    } finally {
      await fh.close();
    }
    const journal = await createJournal(path.join(this.dir, journalFile(gen)), gen);
    try {
      await fsp.rename(tmp, path.join(this.dir, SNAPSHOT_FILE));
      await fsyncDir(this.dir);
    } catch (err) {
      await closeFd(journal.fd).catch(() => undefined);
      throw err;
    }
    const oldFd = this.fd;
    const oldJournal = path.join(this.dir, journalFile(this.gen));
    this.fd = journal.fd;
    this.gen = gen;
    this.journalBytes = journal.bytes;
    this.nextCompactCheck = this.compactAfterBytes;
    this.compactions++;
    await closeFd(oldFd).catch(() => undefined);
    // Recovery ignores journals of other generations, so a failure here costs only disk space.
    await fsp.rm(oldJournal, { force: true }).catch((err) => this.log.warn({ err, file: oldJournal }, 'could not remove the old journal'));
    this.log.info(
      { generation: gen, revision, keys: entries.length, journalBytesBefore: before, snapshotBytes },
      'store journal compacted',
    );
  }

  // ----- internals: watch delivery

  /** Give `w` a resync of its prefix as of now, delivered once everything it reflects is durable. */
  private resync(w: EmbeddedWatch): void {
    w.queue = [];
    w.head = 0;
    const entries = this.state.list(w.prefix);
    const revision = this.state.revision;
    w.coveredThrough = revision;
    const hook = () => {
      if (w.closed) return;
      this.enqueue(w, { type: 'resync', entries, revision });
    };
    if (!this.enqueueAfterWrites({ resolve: null, reject: null, value: undefined, event: null, hook })) queueMicrotask(hook);
  }

  private publish(ev: Extract<WatchEvent, { key: string }>): void {
    for (const w of this.watchers) {
      if (ev.revision <= w.coveredThrough || !ev.key.startsWith(w.prefix)) continue;
      if (w.queue.length - w.head >= this.watchQueueLimit) {
        this.log.warn(
          { prefix: w.prefix, limit: this.watchQueueLimit, revision: ev.revision },
          'store watcher fell behind; replacing its queued events with a resync',
        );
        this.resync(w);
      } else {
        this.enqueue(w, ev);
      }
    }
  }

  private enqueue(w: EmbeddedWatch, ev: WatchEvent): void {
    w.queue.push(ev);
    if (!w.drainScheduled) {
      w.drainScheduled = true;
      queueMicrotask(() => this.drain(w));
    }
  }

  private drain(w: EmbeddedWatch): void {
    w.drainScheduled = false;
    const q = w.queue;
    while (w.head < q.length && !w.closed && w.queue === q) {
      const ev = q[w.head]!;
      q[w.head++] = undefined;
      try {
        w.onEvent(ev);
      } catch (err) {
        this.log.error({ err, prefix: w.prefix }, 'store watcher threw; event dropped for that watcher');
      }
    }
    if (w.queue === q && w.head === q.length) {
      q.length = 0;
      w.head = 0;
    }
  }
}
