/**
 * The embedded store (one machine, zero setup), split by what a reader looks for:
 *   embedded/store.ts     the Store implementation: reads, writes, leases, watches, group commit, compaction
 *   embedded/frames.ts    the on-disk format: frame layout, records, builder, decoder, CRC
 *   embedded/recovery.ts  opening a directory: snapshot + journal, what is truncated or refused, and why
 *   embedded/dir-lock.ts  the LOCK that keeps a second process off an open directory
 *   embedded/state.ts     the in-memory state; embedded/files.ts the directory's file names and fs helpers
 */
export { EmbeddedStore, type EmbeddedStoreOptions, type EmbeddedStoreStats } from './embedded/store.js';
