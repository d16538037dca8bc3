/**
 * Opening a store directory: the snapshot and the journal read back into a State.
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
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes } from '../../model/errors.js';
import type { Logger } from '../../telemetry/log.js';
import { StoreError } from '../errors.js';
import { FORMAT_VERSION, FRAME_HEADER, decodeFrame, scanFrames, type RecordVisitor } from './frames.js';
import { JOURNAL_RE, SNAPSHOT_FILE, SNAPSHOT_TMP, readIfExists } from './files.js';
import type { State } from './state.js';

function corrupt(file: string, offset: number, why: string, advice = ''): StoreError {
  return new StoreError(ErrorCodes.STORE_CORRUPT, `${file}: ${why} at byte ${offset}${advice ? `; ${advice}` : ''}`);
}

/** Load snapshot.bin into `state`; returns its generation (0 when there is none yet). */
export async function loadSnapshot(file: string, state: State): Promise<number> {
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

export interface JournalLoad {
  /** Bytes of the journal after recovery (0 when it has to be (re)created). */
  bytes: number;
}

export async function loadJournal(file: string, gen: number, state: State, log: Logger): Promise<JournalLoad> {
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
export async function removeLeftovers(dir: string, gen: number): Promise<void> {
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
