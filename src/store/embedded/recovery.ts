/**
 * Opening a store directory: the snapshot and the journal read back into a State, and what is truncated
 * or refused on the way, and why.
 *
 * What recovery can know. A frame is written only after the previous frame's fdatasync returned, and a
 * write is acknowledged only after its frame's fdatasync returned (or, with `durability: 'written'`,
 * after the write() that put the whole frame in the page cache). So a crash can cut short only the last
 * frame of the journal, and a frame cut short by a crash was never acknowledged. But the same bytes can
 * come from damage to an acknowledged frame (a bad disk, a filesystem repair, a hand-edit), and the
 * bytes alone cannot tell the two apart. Recovery decides from what it can know besides the bytes:
 *
 *   - CLOSED, written by a clean close (generation, journal length, revision; everything in the journal
 *     was acknowledged by then). Damage before that length is certainly damage of acknowledged writes,
 *     and the revisions lost are exactly those after the last intact frame through CLOSED's revision.
 *     A journal that is intact but shorter than CLOSED says lost its tail the same way.
 *   - The LOCK a holder leaves when it stops without closing the store (dir-lock.ts), and the boot it
 *     ran in. In the same boot, the page cache holds exactly what that process wrote: its last frame
 *     can only be cut short (a whole header whose payload runs past the end, or part of a header), and
 *     such a frame is certainly a torn write of an unacknowledged commit. A last frame whose bytes are
 *     all there but fail their CRC is damage, which a process stopping cannot cause.
 *   - Anything else (the machine restarted since, or nothing says how the store was last closed) is
 *     ambiguous: the last frame may be a commit torn by the stop, never acknowledged, or an
 *     acknowledged one damaged since.
 *
 * On open, with a bad frame in the journal:
 *   - followed by any intact frame: certainly damage (that later frame was written after the bad one
 *     was fsync'd). Replaying around it would break revision continuity and truncating would drop the
 *     intact acknowledged frames after it, so recovery refuses to open (STORE_CORRUPT, logged at error)
 *     and names the frame's offset, the revisions lost with it and those after it; the operator chooses
 *     between a backup and truncating at that offset. The journal is left untouched.
 *   - the last frame, certainly torn (above): a warning "torn write of an unacknowledged commit";
 *   - the last frame, otherwise: "journal damaged: frame at offset N (revision R) lost", at error
 *     level, saying whether the loss is certain or cannot be told from a torn write, and why.
 *   In both last-frame cases the journal as found is first copied to `journal.<G>.log.damaged-<time>`
 *   (0600, fsync'd, never removed by Portico), then truncated to its intact frames.
 *   - a damaged snapshot is always STORE_CORRUPT: it is fsync'd before it is renamed into place.
 *
 * The revisions a damaged frame held are named from what is known: exactly, from CLOSED or from the
 * first revision of the intact frame after it; otherwise from the records of the frame that can still
 * be read and continue the revision sequence ("revisions 5–7 at least"), or as "revisions from 5".
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes } from '../../model/errors.js';
import type { Logger } from '../../telemetry/log.js';
import { StoreError } from '../errors.js';
import type { PreviousHolder } from './dir-lock.js';
import { CLOSED_FILE, CLOSED_TMP, JOURNAL_RE, SNAPSHOT_FILE, SNAPSHOT_TMP, fsyncDir, journalFile, readIfExists } from './files.js';
import { FORMAT_VERSION, FRAME_HEADER, MAGIC, cutShort, decodeFrame, revisionsIn, scanFrames, type RecordVisitor } from './frames.js';
import { State } from './state.js';

/** What a clean close records in CLOSED: the journal then, every byte of it acknowledged. */
export interface ClosedRecord {
  generation: number;
  journalBytes: number;
  revision: number;
}

export interface RecoverOptions {
  logger: Logger;
  /** What the LOCK said about the previous holder (dir-lock.ts). */
  previous: PreviousHolder;
  /** Wall clock for the name of a kept damaged journal. Default Date.now. */
  now?: () => number;
}

export interface Recovered {
  state: State;
  generation: number;
  /** Bytes of the journal after recovery; 0 when it has to be (re)created. */
  journalBytes: number;
}

/**
 * Recover `dir` (locked by the caller): snapshot, then journal, then remove what an interrupted
 * compaction left. CLOSED is read first and removed last (it describes the journal only until
 * something new is written to it); a refused open leaves it, and the journal, as they were.
 */
export async function recover(dir: string, opts: RecoverOptions): Promise<Recovered> {
  const log = opts.logger;
  const closed = await readClosedRecord(dir, log);
  const state = new State();
  const generation = await loadSnapshot(path.join(dir, SNAPSHOT_FILE), state);
  const { bytes } = await loadJournal(path.join(dir, journalFile(generation)), generation, state, log, {
    acknowledged: closed.record?.generation === generation ? closed.record : undefined,
    previous: opts.previous,
    now: opts.now ?? Date.now,
  });
  await removeLeftovers(dir, generation);
  if (closed.present) {
    await fsp.rm(path.join(dir, CLOSED_FILE), { force: true });
    await fsyncDir(dir);
  }
  return { state, generation, journalBytes: bytes };
}

/** Record a clean close (the caller has made every write durable and writes nothing more). */
export async function writeClosedRecord(dir: string, rec: ClosedRecord): Promise<void> {
  const tmp = path.join(dir, CLOSED_TMP);
  const fh = await fsp.open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(rec)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, path.join(dir, CLOSED_FILE));
  await fsyncDir(dir);
}

async function readClosedRecord(dir: string, log: Logger): Promise<{ present: boolean; record?: ClosedRecord }> {
  const file = path.join(dir, CLOSED_FILE);
  const buf = await readIfExists(file);
  if (!buf) return { present: false };
  try {
    const v = JSON.parse(buf.toString('utf8')) as Record<string, unknown>;
    const ok = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
    if (v && ok(v.generation) && ok(v.journalBytes) && ok(v.revision)) {
      return { present: true, record: { generation: v.generation, journalBytes: v.journalBytes, revision: v.revision } };
    }
  } catch {
    // reported below
  }
  log.warn({ file }, 'ignoring an unreadable record of the last clean close');
  return { present: true };
}

/** The revisions a lost frame held: exactly `from`–`through` (none when `through` is absent), or at least those. */
interface Revisions {
  from: number;
  through?: number;
  exact: boolean;
}

function describe(r: Revisions): string {
  if (r.through === undefined) return r.exact ? 'no revision: lease records only' : `revisions from ${r.from}`;
  const span = r.through === r.from ? `revision ${r.from}` : `revisions ${r.from}–${r.through}`;
  return r.exact ? span : `${span} at least`;
}

function corrupt(file: string, offset: number, why: string, advice = ''): StoreError {
  return new StoreError(ErrorCodes.STORE_CORRUPT, `${file}: ${why} at byte ${offset}${advice ? `; ${advice}` : ''}`);
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

/** What is known besides the journal's bytes (see the top of this file). */
interface Evidence {
  acknowledged: ClosedRecord | undefined;
  previous: PreviousHolder;
  now: () => number;
}

async function loadJournal(file: string, gen: number, state: State, log: Logger, ev: Evidence): Promise<JournalLoad> {
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
  const ack = ev.acknowledged;
  if (scan.bad) {
    const { offset, nextFrame } = scan.bad;
    const from = state.revision + 1;
    if (nextFrame >= 0) throw damagedMidway(file, buf, offset, nextFrame, from, log);
    const tail = judgeTail(buf, offset, from, ev);
    const keptAs = await keepAside(file, ev.now());
    const fh = await fsp.open(file, 'r+');
    try {
      await fh.truncate(offset);
      await fh.sync();
    } finally {
      await fh.close();
    }
    const fields = { file, offset, revisions: tail.lost, discardedBytes: buf.length - offset, keptAs, truncatedTo: offset };
    const done = `the journal as found is kept as ${keptAs} and truncated to its intact ${offset} bytes`;
    if (tail.torn) {
      log.warn(
        fields,
        `journal ends in a torn write of an unacknowledged commit at offset ${offset} (${describe(tail.lost)}): ${tail.why}; ${done}`,
      );
    } else {
      log.error(
        { ...fields, dataLoss: tail.certain ? 'certain' : 'possible' },
        `journal damaged: frame at offset ${offset} (${describe(tail.lost)}) lost: ${tail.why}; ${done}`,
      );
    }
  } else if (ack && scan.end < ack.journalBytes) {
    const lost: Revisions = { from: state.revision + 1, exact: true, ...(ack.revision > state.revision && { through: ack.revision }) };
    log.error(
      { file, offset: scan.end, revisions: lost, closedAtBytes: ack.journalBytes, dataLoss: 'certain' },
      `journal damaged: it ends at byte ${scan.end}, but the store was closed cleanly with ${ack.journalBytes} bytes through revision ${ack.revision}; the frames after byte ${scan.end} (${describe(lost)}) are lost`,
    );
  }
  return { bytes: headerSeen ? scan.end : 0 };
}

interface TailVerdict {
  /** Certainly a torn write of a commit that was never acknowledged. */
  torn: boolean;
  /** Certainly acknowledged (when not torn): data loss for sure, not maybe. */
  certain: boolean;
  lost: Revisions;
  why: string;
}

/** Judge a bad last frame at `offset` (nothing intact after it); `from` is the first revision it can hold. */
function judgeTail(buf: Buffer, offset: number, from: number, ev: Evidence): TailVerdict {
  const ack = ev.acknowledged;
  if (ack && offset < ack.journalBytes) {
    return {
      torn: false,
      certain: true,
      lost: { from, exact: true, ...(ack.revision >= from && { through: ack.revision }) },
      why: `data loss: the store was closed cleanly at revision ${ack.revision} (${ack.journalBytes} journal bytes), so every frame in it had been acknowledged`,
    };
  }
  const lost = readableRevisions(buf, offset, from);
  const prev = ev.previous;
  if (prev.lock === 'stale' && prev.sameBoot === true) {
    if (cutShort(buf, offset)) {
      return {
        torn: true,
        certain: true,
        lost,
        why: `process ${prev.pid} stopped without closing the store, in this boot, while writing it`,
      };
    }
    return {
      torn: false,
      certain: true,
      lost,
      why: `data loss: its bytes were written whole but fail their checksum, which process ${prev.pid} stopping (in this boot) cannot cause`,
    };
  }
  const unknown =
    prev.lock === 'none'
      ? 'nothing records how the store was last closed'
      : prev.sameBoot === false
        ? `the machine has restarted since process ${prev.pid} had the store open`
        : `the lock left by process ${prev.pid} does not say in which boot it ran`;
  return {
    torn: false,
    certain: false,
    lost,
    why: `possible data loss: it is either a commit torn when the store stopped (never acknowledged) or damage to an acknowledged frame, and recovery cannot tell which (${unknown})`,
  };
}

/**
 * The revisions a bad frame at `offset` visibly held: those of its readable records that continue the
 * sequence from `from` (the CRC cannot vouch for them, so they are "at least").
 */
function readableRevisions(buf: Buffer, offset: number, from: number): Revisions {
  const rest = buf.length - offset;
  if (rest < FRAME_HEADER || buf.readUInt32BE(offset) !== MAGIC) return { from, exact: false };
  const len = Math.min(buf.readUInt32LE(offset + 4), rest - FRAME_HEADER);
  let through: number | undefined;
  for (const r of revisionsIn(buf.subarray(offset + FRAME_HEADER, offset + FRAME_HEADER + len)).revisions) {
    if (r !== (through ?? from - 1) + 1) break;
    through = r;
  }
  return through === undefined ? { from, exact: false } : { from, through, exact: false };
}

/** A bad frame at `offset` with an intact one at `next`: the refusal, logged and thrown. */
function damagedMidway(file: string, buf: Buffer, offset: number, next: number, from: number, log: Logger): StoreError {
  const later: number[] = [];
  scanFrames(buf.subarray(next), (payload) => later.push(...revisionsIn(payload).revisions));
  const first = later[0];
  const last = later.at(-1);
  const lost: Revisions =
    first === undefined ? readableRevisions(buf, offset, from) : { from, exact: true, ...(first > from && { through: first - 1 }) };
  const after = first === undefined ? 'no revisions' : describe({ from: first, through: last, exact: true });
  const all = describe({ from, through: last ?? lost.through, exact: last !== undefined || lost.exact });
  const what = `journal damaged: frame at offset ${offset} (${describe(lost)}) lost, and the intact frames after it (from byte ${next}: ${after}) cannot be replayed without it`;
  log.error({ file, offset, revisions: lost, nextIntactFrame: next, dataLoss: 'certain' }, `${what}; refusing to open`);
  return new StoreError(
    ErrorCodes.STORE_CORRUPT,
    `${file}: ${what}. This is damage, not a crash (a frame is written only after the one before it is fsync'd). Refusing to open; restore the data directory from a backup, or keep a copy of ${file} and truncate it to ${offset} bytes to accept losing ${all}`,
  );
}

/**
 * Copy `file` as found to `<file>.damaged-<UTC time>` (0600, fsync'd, with its directory entry) before
 * recovery truncates it. Failing to keep it fails the open: nothing is truncated unkept.
 */
async function keepAside(file: string, now: number): Promise<string> {
  const stamp = new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  for (let i = 0; ; i++) {
    const kept = `${file}.damaged-${stamp}${i ? `-${i}` : ''}`;
    try {
      await fsp.copyFile(file, kept, fs.constants.COPYFILE_EXCL);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && i < 100) continue;
      throw new StoreError(
        ErrorCodes.STORE_UNAVAILABLE,
        `${file} is damaged and must be truncated, but a copy of it could not be kept first (${(err as Error).message}); nothing was truncated — make room in ${path.dirname(file)} and open the store again`,
        { cause: err },
      );
    }
    const fh = await fsp.open(kept, 'r+');
    try {
      await fh.chmod(0o600);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncDir(path.dirname(file));
    return kept;
  }
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
    if (name === SNAPSHOT_TMP || name === CLOSED_TMP || (m && Number(m[1]) !== gen)) await fsp.rm(path.join(dir, name), { force: true });
  }
}
