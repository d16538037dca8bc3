/**
 * The files of an embedded store directory, and the small fs helpers the store and recovery share
 * (callback fs on a raw fd: the hot path avoids FileHandle's per-call overhead).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { FrameBuilder } from './frames.js';

/*
 * Files in a store directory (created 0700; files 0600):
 *   LOCK                    who has the store open (dir-lock.ts)
 *   CLOSED                  written by a clean close: generation, journal length and revision then, all
 *                           acknowledged; removed on open before anything new is written (recovery.ts)
 *   snapshot.bin            the state at the last compaction (absent until the first one), generation G
 *   journal.<G>.log         every write since that snapshot
 *   journal.<G>.log.damaged-<time>   a damaged journal as it was found, kept for the operator before
 *                           recovery truncated it (never removed by Portico)
 *   snapshot.bin.tmp, CLOSED.tmp, LOCK.<pid>.<hex>   work in progress, removed on open
 */
export const SNAPSHOT_FILE = 'snapshot.bin';
export const SNAPSHOT_TMP = 'snapshot.bin.tmp';
export const LOCK_FILE = 'LOCK';
export const CLOSED_FILE = 'CLOSED';
export const CLOSED_TMP = 'CLOSED.tmp';
export const journalFile = (gen: number) => `journal.${gen}.log`;
export const JOURNAL_RE = /^journal\.(\d+)\.log$/;

export async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export function openFd(file: string, flags: string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, flags, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function writeAll(fd: number, buf: Buffer): Promise<void> {
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

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

/** Make a create/rename/unlink in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Create a fresh journal for `gen` (replacing any leftover) holding only its header; returns an append fd. */
export async function createJournal(file: string, gen: number): Promise<{ fd: number; bytes: number }> {
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
