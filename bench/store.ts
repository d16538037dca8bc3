/**
 * Acknowledged, fsync'd puts: the embedded store (group-committed journal) beside Redis with
 * `appendonly yes, appendfsync always` through RedisStore (Lua script + stream entry per put).
 * Each store gets N puts one at a time (latency of a lone writer) and N puts from 32 concurrent writers
 * (what group commit buys). Bounded: each phase stops after PHASE_CAP_MS even if N was not reached.
 *
 * Used by `npm run bench -- table`; run alone with `node --import tsx bench/store.ts`.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EmbeddedStore } from '../src/store/embedded.js';
import { RedisStore } from '../src/store/redis.js';
import type { Store } from '../src/store/types.js';
import { redisServerPath, startRedis } from '../test/helpers/redis.js';
import { percentile, round } from './lib.js';

export interface StoreBenchStats {
  /** Concurrency 1. */
  putsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Concurrency 32. */
  concurrentPutsPerSec: number;
  concurrentP50Ms: number;
  concurrentP99Ms: number;
  puts: number;
  concurrency: number;
  /** Embedded only: puts per fdatasync at concurrency 32. */
  putsPerFsync?: number;
}

export interface StoreBenchResult {
  embedded: StoreBenchStats;
  redis: StoreBenchStats | { skipped: string };
}

const N = 2000;
const CONCURRENCY = 32;
const WARMUP = 100;
const PHASE_CAP_MS = 4000;
const VALUE = Buffer.alloc(128, 'v');

async function phase(
  store: Store,
  puts: number,
  concurrency: number,
  tag: string,
): Promise<{ perSec: number; p50: number; p99: number; done: number }> {
  const latencies: number[] = [];
  let next = 0;
  const start = performance.now();
  const deadline = start + PHASE_CAP_MS;
  const worker = async () => {
    while (next < puts && performance.now() < deadline) {
      const i = next++;
      const t0 = performance.now();
      await store.put(`bench/${tag}/${i}`, VALUE);
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const secs = (performance.now() - start) / 1000;
  return {
    perSec: round(latencies.length / secs, 0),
    p50: round(percentile(latencies, 50), 3),
    p99: round(percentile(latencies, 99), 3),
    done: latencies.length,
  };
}

/** Warm up, then N puts at concurrency 1 and N at 32. `fsyncs` (embedded) reports puts per fdatasync. */
async function measure(store: Store, puts: number, fsyncs?: () => number): Promise<StoreBenchStats> {
  await phase(store, WARMUP, 8, 'warmup');
  const one = await phase(store, puts, 1, 'c1');
  const fsyncsBefore = fsyncs?.() ?? 0;
  const many = await phase(store, puts, CONCURRENCY, 'c32');
  const stats: StoreBenchStats = {
    putsPerSec: one.perSec,
    p50Ms: one.p50,
    p99Ms: one.p99,
    concurrentPutsPerSec: many.perSec,
    concurrentP50Ms: many.p50,
    concurrentP99Ms: many.p99,
    puts: Math.min(one.done, many.done),
    concurrency: CONCURRENCY,
  };
  if (fsyncs) stats.putsPerFsync = round(many.done / Math.max(1, fsyncs() - fsyncsBefore), 1);
  return stats;
}

export async function benchStore(opts: { puts?: number } = {}): Promise<StoreBenchResult> {
  const puts = opts.puts ?? N;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'portico-bench-store-'));
  let embedded: StoreBenchStats;
  try {
    const store = await EmbeddedStore.open(dir);
    try {
      embedded = await measure(store, puts, () => store.stats().frames);
    } finally {
      await store.close();
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }

  let redis: StoreBenchResult['redis'];
  if (!redisServerPath()) {
    redis = { skipped: 'redis-server is not installed' };
  } else {
    const srv = await startRedis({ persistent: true });
    try {
      const store = await RedisStore.open(srv.url);
      try {
        redis = await measure(store, puts);
      } finally {
        await store.close();
      }
    } finally {
      await srv.dispose();
    }
  }
  return { embedded, redis };
}

if (require.main === module) {
  benchStore().then(
    (r) => process.stdout.write(`${JSON.stringify({ bench: 'store', results: r })}\n`),
    (err: unknown) => {
      process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
