/**
 * Opening a store from the `store:` setting. `embedded` keeps its journal under `<data>/store`; a Redis
 * URL shares state between every instance pointed at it. Everything else is refused with a message that
 * lists what is accepted.
 */
import path from 'node:path';
import { ErrorCodes } from '../model/errors.js';
import type { Logger } from '../telemetry/log.js';
import { EmbeddedStore, type EmbeddedStoreOptions } from './embedded.js';
import { StoreError } from './errors.js';
import { RedisStore, redactUrl, type RedisStoreOptions } from './redis.js';
import type { Store } from './types.js';

export type { Entry, Lease, PutOptions, Store, Watch, WatchEvent } from './types.js';
export { StoreError, type StoreErrorCode } from './errors.js';
export { EmbeddedStore, type EmbeddedStoreOptions, type EmbeddedStoreStats } from './embedded.js';
export { RedisStore, parseRedisUrl, redactUrl, type RedisStoreOptions, type RedisTarget } from './redis.js';

export interface OpenStoreOptions {
  logger?: Logger;
  /** Tuning for `embedded` (tests shrink compaction and lease-check intervals). */
  embedded?: Omit<EmbeddedStoreOptions, 'logger'>;
  /** Tuning for Redis URLs. */
  redis?: Omit<RedisStoreOptions, 'logger'>;
}

const REDIS_SPEC = /^(redis|rediss|redis-sentinel):\/\//i;

/** Open the store named by `spec`: `embedded`, `redis://…`, `rediss://…` or `redis-sentinel://…`. */
export async function openStore(spec: string, dataDir: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const s = typeof spec === 'string' ? spec.trim() : '';
  if (s === 'embedded') {
    return EmbeddedStore.open(path.join(dataDir, 'store'), { ...opts.embedded, ...(opts.logger && { logger: opts.logger }) });
  }
  if (REDIS_SPEC.test(s)) {
    return RedisStore.open(s, { ...opts.redis, ...(opts.logger && { logger: opts.logger }) });
  }
  throw new StoreError(
    ErrorCodes.STORE_UNAVAILABLE,
    `unknown store ${JSON.stringify(redactUrl(String(spec)))}: expected "embedded", redis://host:port/db, rediss://host:port/db or redis-sentinel://host:26379,host:26379/mastername[/db]`,
  );
}
