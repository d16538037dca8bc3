/**
 * The Redis store: the same contract as the embedded one, shared by every Portico instance pointed at
 * one Redis (standalone, or a Sentinel-managed master).
 *
 * Data model, all under `keyPrefix` (default `portico:`):
 *   rev            global revision counter (INCR)
 *   val / krev     hashes: key → value bytes, key → revision of the write that produced it
 *   klease         hash: key → lease id, for keys attached to a lease
 *   keys           sorted set of every key (score 0), so a prefix listing is ZRANGEBYLEX, not a scan
 *   log            stream of every write, entry id `0-<revision>`, fields t (p|d), k, v, l, x (expired)
 *   leases         sorted set: lease id → deadline (ms, Redis server clock)
 *   lttl           hash: lease id → ttl ms
 *   lk:<id>        set of the keys attached to a lease
 *
 * Every write is one Lua script (EVALSHA through ioredis defineCommand): check, INCR the revision,
 * write, XADD the change. Scripts are atomic, so revisions and log entries can never disagree, and
 * many clients may write (and reap leases) at once. Lease deadlines use Redis `TIME`, never a client
 * clock, so clients with skewed clocks agree on when a lease expires.
 *
 * Because stream ids are `0-<revision>`, a watcher's position *is* a revision: it reads the log from
 * the revision it last saw, and any jump (the log was trimmed past it) is detected as a gap and
 * answered with a `resync`, as is a lost connection.
 *
 * Failure behaviour: commands are never queued while disconnected and never re-sent after a
 * reconnect (a re-sent put would be applied twice); they reject at once with STORE_UNAVAILABLE. A write
 * that was in flight when the connection dropped has an unknown outcome, and the error says so.
 * Not supported: Redis Cluster (the scripts touch several keys that are not hash-tagged together).
 */
import { randomBytes } from 'node:crypto';
import Redis, { type RedisOptions } from 'ioredis';
import { ErrorCodes } from '../model/errors.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import { StoreError, checkKey, checkRevision, checkTtl, leaseNotFound, storeClosed, toBuffer } from './errors.js';
import type { Entry, Lease, PutOptions, Store, StoreHealth, Watch, WatchEvent, WriteOptions } from './types.js';

export interface RedisStoreOptions {
  logger?: Logger;
  /** Give up opening after this many ms without a usable connection. Default 5000. */
  connectTimeoutMs?: number;
  /** A command without a reply after this many ms fails with STORE_UNAVAILABLE. Default 5000. */
  commandTimeoutMs?: number;
  /** Prefix of every Redis key this store uses. Default `portico:`. */
  keyPrefix?: string;
  /** How often this client runs the (idempotent, concurrency-safe) lease reaper, ms. Default 250. */
  reapIntervalMs?: number;
  /** Approximate length the change log is trimmed to. Default 100,000 entries. */
  logMaxLen?: number;
  /** Events buffered per watcher while its resync is in flight, before it is redone. Default 10,000. */
  watchQueueLimit?: number;
}

// ---------------------------------------------------------------------------------------------------
// URLs

export interface RedisTarget {
  /** The URL with any password replaced by `***`: safe for logs and error messages. */
  display: string;
  options: RedisOptions;
}

/** Replace the password in anything URL-shaped, for messages about URLs we could not parse. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@]*?:)[^/]*@/i, '$1***@');
}

function invalidUrl(url: string, why: string): StoreError {
  return new StoreError(ErrorCodes.STORE_UNAVAILABLE, `invalid Redis URL ${redactUrl(url)}: ${why}`);
}

function parseDb(url: string, s: string | undefined): number {
  if (s === undefined || s === '') return 0;
  if (!/^\d{1,5}$/.test(s)) throw invalidUrl(url, `database must be a number, got ${JSON.stringify(s)}`);
  return Number(s);
}

function parseHostPort(url: string, s: string, defaultPort: number): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(s);
  if (!m) throw invalidUrl(url, `bad host ${JSON.stringify(s)}`);
  const port = m[3] === undefined ? defaultPort : Number(m[3]);
  if (port < 1 || port > 65535) throw invalidUrl(url, `port out of range in ${JSON.stringify(s)}`);
  return { host: (m[1] ?? m[2])!, port };
}

function hostDisplay(h: { host: string; port: number }): string {
  return `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`;
}

/**
 * `redis://[user][:password]@host[:port][/db]`, `rediss://…` (TLS) and
 * `redis-sentinel://[user][:password]@host[:port][,host[:port]…]/mastername[/db]` (sentinel port 26379 by
 * default; the credentials are for the master, sentinels are assumed to need none).
 */
export function parseRedisUrl(url: string): RedisTarget {
  const m = /^(redis|rediss|redis-sentinel):\/\/([^/]*)(?:\/(.*))?$/i.exec(url.trim());
  if (!m) throw invalidUrl(url, 'expected redis://, rediss:// or redis-sentinel://');
  const scheme = m[1]!.toLowerCase();
  const authority = m[2]!;
  const pathPart = m[3] ?? '';
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at) : undefined;
  const hostPart = at >= 0 ? authority.slice(at + 1) : authority;
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    try {
      username = decodeURIComponent(colon >= 0 ? userinfo.slice(0, colon) : userinfo) || undefined;
      password = colon >= 0 ? decodeURIComponent(userinfo.slice(colon + 1)) : undefined;
    } catch {
      throw invalidUrl(url, 'bad percent-encoding in the credentials');
    }
  }
  const creds = userinfo === undefined ? '' : `${username ? encodeURIComponent(username) : ''}${password !== undefined ? ':***' : ''}@`;
  const auth: RedisOptions = {};
  if (username) auth.username = username;
  if (password !== undefined) auth.password = password;

  if (scheme === 'redis-sentinel') {
    if (!hostPart) throw invalidUrl(url, 'no sentinel hosts');
    const sentinels = hostPart.split(',').map((h) => parseHostPort(url, h, 26379));
    const [name, dbPart, ...extra] = pathPart.split('/');
    if (!name) throw invalidUrl(url, 'no master name (redis-sentinel://host:26379/mastername)');
    if (extra.length) throw invalidUrl(url, 'too many path segments');
    const db = parseDb(url, dbPart);
    return {
      display: `redis-sentinel://${creds}${sentinels.map(hostDisplay).join(',')}/${name}/${db}`,
      options: { ...auth, sentinels, name, db },
    };
  }
  if (!hostPart) throw invalidUrl(url, 'no host');
  if (pathPart.includes('/')) throw invalidUrl(url, 'too many path segments');
  const hp = parseHostPort(url, hostPart, 6379);
  const db = parseDb(url, pathPart);
  const options: RedisOptions = { ...auth, host: hp.host, port: hp.port, db };
  if (scheme === 'rediss') options.tls = { servername: hp.host };
  return { display: `${scheme}://${creds}${hostDisplay(hp)}/${db}`, options };
}

// ---------------------------------------------------------------------------------------------------
// Lua. Every script gets the same KEYS (so they are declared, as Redis asks) and ARGV[1] = prefix of
// the per-lease key sets, ARGV[2] = log MAXLEN; its own arguments start at ARGV[3].

const KEY_NAMES = ['rev', 'val', 'krev', 'klease', 'keys', 'log', 'leases', 'lttl'] as const;

const PREAMBLE = `
local K_REV, K_VAL, K_KREV, K_KLEASE, K_KEYS, K_LOG, K_LEASES, K_LTTL =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local LK, MAXLEN = ARGV[1], ARGV[2]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function del_key(key, expired)
  local lease = redis.call('HGET', K_KLEASE, key)
  if lease then
    redis.call('SREM', LK .. lease, key)
    redis.call('HDEL', K_KLEASE, key)
  end
  redis.call('HDEL', K_VAL, key)
  redis.call('HDEL', K_KREV, key)
  redis.call('ZREM', K_KEYS, key)
  local rev = redis.call('INCR', K_REV)
  if expired then
    redis.call('XADD', K_LOG, 'MAXLEN', '~', MAXLEN, '0-' .. rev, 't', 'd', 'k', key, 'x', '1')
  else
    redis.call('XADD', K_LOG, 'MAXLEN', '~', MAXLEN, '0-' .. rev, 't', 'd', 'k', key)
  end
  return rev
end

-- Delete a lease's keys (each an ordinary logged write, expired) and the lease.
local function end_lease(id)
  local keys = redis.call('SMEMBERS', LK .. id)
  table.sort(keys)
  for _, key in ipairs(keys) do del_key(key, true) end
  redis.call('DEL', LK .. id)
  redis.call('ZREM', K_LEASES, id)
  redis.call('HDEL', K_LTTL, id)
  return #keys
end
`;

const SCRIPTS = {
  /** ARGV: key, value, expected revision (-1: unconditional), lease ('' none) → {1, rev} | {0, current} | {-1, 0} */
  porticoPut: `
local key, value, expected, lease = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local cur = tonumber(redis.call('HGET', K_KREV, key) or '0')
if expected >= 0 and cur ~= expected then return {0, cur} end
if lease ~= '' then
  local deadline = redis.call('ZSCORE', K_LEASES, lease)
  if not deadline or tonumber(deadline) <= now_ms() then return {-1, 0} end
end
local old = redis.call('HGET', K_KLEASE, key)
if old and old ~= lease then redis.call('SREM', LK .. old, key) end
if lease ~= '' then
  redis.call('HSET', K_KLEASE, key, lease)
  redis.call('SADD', LK .. lease, key)
elseif old then
  redis.call('HDEL', K_KLEASE, key)
end
local rev = redis.call('INCR', K_REV)
redis.call('HSET', K_VAL, key, value)
redis.call('HSET', K_KREV, key, rev)
redis.call('ZADD', K_KEYS, 0, key)
if lease ~= '' then
  redis.call('XADD', K_LOG, 'MAXLEN', '~', MAXLEN, '0-' .. rev, 't', 'p', 'k', key, 'v', value, 'l', lease)
else
  redis.call('XADD', K_LOG, 'MAXLEN', '~', MAXLEN, '0-' .. rev, 't', 'p', 'k', key, 'v', value)
end
return {1, rev}
`,
  /** ARGV: key, expected revision (-1: any) → 1 deleted | 0 not */
  porticoDel: `
local key, expected = ARGV[3], tonumber(ARGV[4])
local cur = redis.call('HGET', K_KREV, key)
if not cur then return 0 end
if expected >= 0 and tonumber(cur) ~= expected then return 0 end
del_key(key, false)
return 1
`,
  /** ARGV: key → {value, revision, lease|''} | nil */
  porticoGet: `
local key = ARGV[3]
local v = redis.call('HGET', K_VAL, key)
if not v then return false end
return {v, tonumber(redis.call('HGET', K_KREV, key)), redis.call('HGET', K_KLEASE, key) or ''}
`,
  /** ARGV: prefix → {store revision, key1, value1, rev1, lease1|'', key2, …}, read atomically */
  porticoList: `
local prefix = ARGV[3]
local keys
if prefix == '' then
  keys = redis.call('ZRANGE', K_KEYS, 0, -1)
else
  keys = redis.call('ZRANGEBYLEX', K_KEYS, '[' .. prefix, '(' .. prefix .. '\\255')
end
local out = {tonumber(redis.call('GET', K_REV) or '0')}
for i, key in ipairs(keys) do
  local b = (i - 1) * 4 + 1
  out[b + 1] = key
  out[b + 2] = redis.call('HGET', K_VAL, key)
  out[b + 3] = tonumber(redis.call('HGET', K_KREV, key))
  out[b + 4] = redis.call('HGET', K_KLEASE, key) or ''
end
return out
`,
  /** ARGV: id, ttl ms → 1 | 0 (id taken) */
  porticoGrant: `
local id, ttl = ARGV[3], tonumber(ARGV[4])
if redis.call('ZSCORE', K_LEASES, id) then return 0 end
redis.call('ZADD', K_LEASES, now_ms() + ttl, id)
redis.call('HSET', K_LTTL, id, ttl)
return 1
`,
  /** ARGV: id → 1 renewed | 0 unknown or expired (an expired one is reaped here, so its keys are gone) */
  porticoKeepAlive: `
local id = ARGV[3]
local deadline = redis.call('ZSCORE', K_LEASES, id)
if not deadline then return 0 end
local now = now_ms()
if tonumber(deadline) <= now then
  end_lease(id)
  return 0
end
redis.call('ZADD', K_LEASES, now + tonumber(redis.call('HGET', K_LTTL, id)), id)
return 1
`,
  /** ARGV: id → number of keys deleted */
  porticoRevoke: `
if not redis.call('ZSCORE', K_LEASES, ARGV[3]) then return 0 end
return end_lease(ARGV[3])
`,
  /** ARGV: max leases → number of leases expired. Safe to run from many clients at once. */
  porticoReap: `
local ids = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do end_lease(id) end
return #ids
`,
} as const;

type Arg = string | Buffer | number;
type ScriptName = keyof typeof SCRIPTS;
/** The commands defineCommand adds (ioredis cannot type them). `…Buffer` variants return Buffers. */
type Scripted = {
  [K in ScriptName]: (...args: Arg[]) => Promise<unknown>;
} & {
  [K in ScriptName as `${K}Buffer`]: (...args: Arg[]) => Promise<unknown>;
};
type Client = Redis & Scripted;

// ---------------------------------------------------------------------------------------------------
// Watch

/** One change from the log, decoded once and shared by every watcher it is delivered to. */
interface Change {
  revision: number;
  key: string;
  event: WatchEvent;
}

class RedisWatch implements Watch {
  closed = false;
  /**
   * waiting: registered, its first resync is started when the log reader has a position;
   * syncing: resync in flight, matching changes are buffered; live: changes are delivered.
   */
  state: 'waiting' | 'syncing' | 'live' = 'waiting';
  /** Last revision delivered or covered by the resync. */
  revision = 0;
  syncGen = 0;
  buffer: Change[] = [];
  overflowed = false;

  constructor(
    private readonly watchers: Set<RedisWatch>,
    readonly prefix: string,
    readonly onEvent: (ev: WatchEvent) => void,
  ) {}

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.buffer = [];
    this.watchers.delete(this);
  }
}

/** XREAD BLOCK time; the reader re-issues it this often when idle. */
const BLOCK_MS = 1000;
const READ_COUNT = 1000;
const REAP_BATCH = 100;
const WRITE_OPS = new Set(['put', 'cas', 'delete', 'grantLease', 'keepAlive', 'revokeLease']);

function str(b: unknown): string {
  return Buffer.isBuffer(b) ? b.toString('utf8') : String(b);
}

/** Stream id `0-<revision>` → revision; NaN for anything else (treated as a gap). */
function revisionOfId(id: unknown): number {
  const s = str(id);
  return s.startsWith('0-') ? Number(s.slice(2)) : Number.NaN;
}

function decodeChange(revision: number, fields: unknown[]): Change | undefined {
  let t: string | undefined;
  let key: string | undefined;
  let value: Buffer | undefined;
  let lease: string | undefined;
  let expired = false;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const f = str(fields[i]);
    const v = fields[i + 1];
    if (f === 't') t = str(v);
    else if (f === 'k') key = str(v);
    else if (f === 'v') value = Buffer.isBuffer(v) ? v : Buffer.from(str(v));
    else if (f === 'l') lease = str(v);
    else if (f === 'x') expired = str(v) === '1';
  }
  if (key === undefined) return undefined;
  if (t === 'p' && value !== undefined) {
    const entry: Entry = lease === undefined ? { key, value, revision } : { key, value, revision, lease };
    return { revision, key, event: { type: 'put', key, entry, revision } };
  }
  if (t === 'd') {
    return { revision, key, event: expired ? { type: 'delete', key, revision, expired: true } : { type: 'delete', key, revision } };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// The store

export class RedisStore implements Store {
  readonly kind = 'redis';

  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly keys: string[];
  private readonly lkPrefix: string;
  private readonly revKey: string;
  private readonly logKey: string;
  private readonly reaper: NodeJS.Timeout;
  private reaping = false;
  private readonly watchers = new Set<RedisWatch>();
  private watchConn: Redis | null = null;
  /** Revision up to which the log reader has dispatched changes. */
  private position = 0;
  /** True while `position` is trustworthy; false until the reader (re)establishes it. */
  private established = false;
  /** Set when the reader's connection dropped: positions and in-flight reads are stale. */
  private readerStale = false;
  private readonly wakeOnClose = new Set<() => void>();
  private connectionLost = false;
  private lostAt: number | undefined;
  private lastConnError: string | undefined;

  private constructor(
    private readonly client: Client,
    private readonly target: RedisTarget,
    private readonly log: Logger,
    prefix: string,
    private readonly commandTimeoutMs: number,
    private readonly logMaxLen: number,
    private readonly watchQueueLimit: number,
    reapIntervalMs: number,
  ) {
    this.keys = KEY_NAMES.map((n) => prefix + n);
    this.revKey = prefix + 'rev';
    this.logKey = prefix + 'log';
    this.lkPrefix = prefix + 'lk:';
    this.reaper = setInterval(() => void this.reap(), reapIntervalMs);
    this.reaper.unref();
    client.on('error', (err: Error) => {
      this.lastConnError = err.message;
      if (!this.connectionLost && !this.closed) this.log.warn({ err: err.message, url: target.display }, 'redis connection error');
    });
    client.on('close', () => {
      if (!this.connectionLost && !this.closed) this.log.warn({ url: target.display }, 'redis connection lost; reconnecting');
      if (!this.connectionLost) this.lostAt = Date.now();
      this.connectionLost = true;
    });
    client.on('ready', () => {
      if (this.connectionLost)
        this.log.info(
          { url: target.display, downMs: this.lostAt === undefined ? undefined : Date.now() - this.lostAt },
          'redis connection restored',
        );
      this.connectionLost = false;
      this.lostAt = undefined;
      this.lastConnError = undefined;
    });
  }

  /**
   * Connect to `url`. Rejects with STORE_UNAVAILABLE, naming the URL (without its password), when no
   * connection is ready within `connectTimeoutMs`; it keeps retrying until then, so a Redis that is
   * still starting is waited for.
   */
  static async open(url: string, opts: RedisStoreOptions = {}): Promise<RedisStore> {
    const target = parseRedisUrl(url);
    const log = (opts.logger ?? silentLogger).child({ component: 'store', store: 'redis' });
    const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    const commandTimeoutMs = opts.commandTimeoutMs ?? 5000;
    const prefix = opts.keyPrefix ?? 'portico:';
    const client = new Redis({
      ...target.options,
      connectionName: 'portico',
      // RESP2: reply shapes (XREAD, script tables) are the same on every Redis version.
      protocol: 2,
      lazyConnect: true,
      connectTimeout: connectTimeoutMs,
      commandTimeout: commandTimeoutMs,
      // Fail fast instead of queueing while disconnected, and never re-send a write after a reconnect.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 5), 1000),
    }) as Client;
    for (const [name, lua] of Object.entries(SCRIPTS)) {
      client.defineCommand(name, { numberOfKeys: KEY_NAMES.length, lua: PREAMBLE + lua });
    }
    let lastError: Error | undefined;
    const onError = (err: Error) => {
      lastError = err;
    };
    client.on('error', onError);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          client.off('ready', onReady);
          reject(new Error('timeout'));
        }, connectTimeoutMs);
        const onReady = () => {
          clearTimeout(timer);
          resolve();
        };
        client.once('ready', onReady);
        client.connect().catch(() => undefined);
      });
    } catch {
      client.disconnect();
      throw new StoreError(
        ErrorCodes.STORE_UNAVAILABLE,
        `Redis at ${target.display} is unreachable: no usable connection within ${connectTimeoutMs} ms${lastError ? ` (last error: ${lastError.message})` : ''}`,
      );
    } finally {
      client.off('error', onError);
    }
    const store = new RedisStore(
      client,
      target,
      log,
      prefix,
      commandTimeoutMs,
      opts.logMaxLen ?? 100_000,
      opts.watchQueueLimit ?? 10_000,
      opts.reapIntervalMs ?? 250,
    );
    log.info({ url: target.display, keyPrefix: prefix }, 'redis store opened');
    return store;
  }

  health(): StoreHealth {
    if (this.closed) return { ok: false, target: this.target.display, error: 'store closed' };
    if (!this.connectionLost && this.client.status === 'ready') return { ok: true, target: this.target.display };
    const h: StoreHealth = { ok: false, target: this.target.display };
    if (this.lostAt !== undefined) h.since = new Date(this.lostAt).toISOString();
    h.error = this.lastConnError ?? `connection ${this.client.status}`;
    return h;
  }

  // ----- reads

  async get(key: string): Promise<Entry | undefined> {
    checkKey(key);
    const r = (await this.run('get', () => this.client.porticoGetBuffer(...this.args(key)))) as [Buffer, number, Buffer] | null;
    if (!r) return undefined;
    const lease = r[2].length ? r[2].toString('utf8') : undefined;
    return lease === undefined ? { key, value: r[0], revision: r[1] } : { key, value: r[0], revision: r[1], lease };
  }

  async list(prefix: string): Promise<Entry[]> {
    if (typeof prefix !== 'string') throw new TypeError('list prefix must be a string');
    return (await this.listAt(prefix)).entries;
  }

  async revision(): Promise<number> {
    const r = await this.run('revision', () => this.client.get(this.revKey));
    return r === null ? 0 : Number(r);
  }

  // ----- writes

  async put(key: string, value: Buffer | string, opts?: PutOptions): Promise<Entry> {
    checkKey(key);
    return (await this.write(key, -1, value, opts))!;
  }

  async cas(key: string, expectedRevision: number, value: Buffer | string, opts?: PutOptions): Promise<Entry | null> {
    checkKey(key);
    checkRevision(expectedRevision, 'expectedRevision');
    return this.write(key, expectedRevision, value, opts);
  }

  async delete(key: string, expectedRevision?: number, _opts?: WriteOptions): Promise<boolean> {
    checkKey(key);
    if (expectedRevision !== undefined) checkRevision(expectedRevision, 'expectedRevision');
    const r = await this.run('delete', () => this.client.porticoDel(...this.args(key, expectedRevision ?? -1)));
    return r === 1;
  }

  // ----- leases

  async grantLease(ttlMs: number): Promise<Lease> {
    checkTtl(ttlMs);
    for (;;) {
      const id = randomBytes(8).toString('hex');
      if ((await this.run('grantLease', () => this.client.porticoGrant(...this.args(id, ttlMs)))) === 1) return { id, ttlMs };
    }
  }

  async keepAlive(id: string): Promise<boolean> {
    return (await this.run('keepAlive', () => this.client.porticoKeepAlive(...this.args(String(id))))) === 1;
  }

  async revokeLease(id: string): Promise<void> {
    await this.run('revokeLease', () => this.client.porticoRevoke(...this.args(String(id))));
  }

  // ----- watch

  watch(prefix: string, onEvent: (ev: WatchEvent) => void): Watch {
    if (this.closed) throw storeClosed(this.kind);
    if (typeof prefix !== 'string') throw new TypeError('watch prefix must be a string');
    const w = new RedisWatch(this.watchers, prefix, onEvent);
    this.watchers.add(w);
    if (this.established) this.resync(w);
    this.startReader();
    return w;
  }

  async close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    clearInterval(this.reaper);
    for (const w of [...this.watchers]) w.close();
    for (const wake of [...this.wakeOnClose]) wake();
    this.closing = (async () => {
      this.watchConn?.disconnect();
      if (this.client.status === 'ready') {
        // QUIT lets replies to commands already sent arrive; bounded in case Redis hangs.
        await Promise.race([
          this.client.quit().catch(() => undefined),
          new Promise((resolve) => setTimeout(resolve, this.commandTimeoutMs).unref()),
        ]);
      }
      this.client.disconnect();
      this.log.info({ url: this.target.display }, 'redis store closed');
    })();
    return this.closing;
  }

  // ----- internals: commands

  private args(...rest: Arg[]): Arg[] {
    return [...this.keys, this.lkPrefix, this.logMaxLen, ...rest];
  }

  /** Run one command; connection problems become STORE_UNAVAILABLE naming the URL (never a password). */
  private async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw storeClosed(this.kind);
    try {
      return await fn();
    } catch (err) {
      if (this.closed) throw storeClosed(this.kind);
      const msg = (err as Error).message;
      // "isn't writeable": never sent. Anything else (connection dropped, timeout) after sending a write
      // leaves its outcome unknown, and the caller should know that before retrying a non-idempotent op.
      const unknownOutcome = WRITE_OPS.has(op) && !/isn't writeable/.test(msg);
      throw new StoreError(
        ErrorCodes.STORE_UNAVAILABLE,
        `redis ${op} failed against ${this.target.display}: ${msg}${unknownOutcome ? ' (the write may or may not have been applied)' : ''}`,
        { cause: err },
      );
    }
  }

  private async write(key: string, expected: number, value: Buffer | string, opts: PutOptions | undefined): Promise<Entry | null> {
    const lease = opts?.lease;
    if (lease !== undefined && typeof lease !== 'string') throw new TypeError('lease must be a lease id string');
    const buf = toBuffer(value);
    const r = (await this.run(expected < 0 ? 'put' : 'cas', () =>
      this.client.porticoPut(...this.args(key, buf, expected, lease ?? '')),
    )) as [number, number];
    if (r[0] === -1) throw leaseNotFound(lease!);
    if (r[0] === 0) return null;
    return lease === undefined ? { key, value: buf, revision: r[1] } : { key, value: buf, revision: r[1], lease };
  }

  /** The entries under `prefix` and the store revision they are current at, read atomically. */
  private async listAt(prefix: string): Promise<{ revision: number; entries: Entry[] }> {
    const r = (await this.run('list', () => this.client.porticoListBuffer(...this.args(prefix)))) as unknown[];
    const revision = Number(r[0]);
    const entries: Entry[] = [];
    for (let i = 1; i + 3 < r.length; i += 4) {
      const key = str(r[i]);
      if (!key.startsWith(prefix)) continue;
      const value = r[i + 1] as Buffer;
      const lease = r[i + 3] as Buffer;
      const rev = Number(r[i + 2]);
      entries.push(lease.length ? { key, value, revision: rev, lease: lease.toString('utf8') } : { key, value, revision: rev });
    }
    // Redis orders by bytes; the contract's order is JavaScript's (the embedded store's). They differ
    // only around astral characters, and the list is nearly sorted already.
    entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { revision, entries };
  }

  private async reap(): Promise<void> {
    if (this.reaping || this.closed || this.client.status !== 'ready') return;
    this.reaping = true;
    try {
      let n: number;
      do {
        n = Number(await this.client.porticoReap(...this.args(REAP_BATCH)));
        if (n > 0) this.log.debug({ leases: n }, 'expired leases reaped');
      } while (n === REAP_BATCH && !this.closed);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'lease reaper run failed; will retry');
    } finally {
      this.reaping = false;
    }
  }

  // ----- internals: watch

  /**
   * Start the log reader: one dedicated connection (XREAD BLOCK is exclusive) per store, shared by all
   * its watchers, filtering by prefix client-side.
   */
  private startReader(): void {
    if (this.watchConn || this.closed) return;
    const conn = this.client.duplicate({ connectionName: 'portico-watch', commandTimeout: undefined });
    this.watchConn = conn;
    conn.on('error', () => undefined); // reported by the command connection; the reader just resyncs
    conn.on('close', () => {
      this.readerStale = true;
      this.established = false;
    });
    conn.connect().catch(() => undefined);
    void this.readLoop(conn);
  }

  private async readLoop(conn: Redis): Promise<void> {
    let needPosition = true;
    while (!this.closed) {
      try {
        if (needPosition || this.readerStale) {
          await this.whenReady(conn);
          if (this.closed) break;
          this.readerStale = false;
          const rev = await this.guarded(conn, () => conn.get(this.revKey));
          if (this.readerStale) continue;
          // Position first, then every watcher lists: each list is at a revision ≥ this position, so
          // nothing between the two is lost (a watcher skips what its list already covers).
          this.position = rev === null ? 0 : Number(rev);
          this.established = true;
          needPosition = false;
          for (const w of this.watchers) this.resync(w);
        }
        const reply = await this.guarded(conn, () =>
          conn.xreadBuffer('COUNT', READ_COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', this.logKey, `0-${this.position}`),
        );
        if (this.readerStale || this.closed) continue;
        if (reply && !this.dispatch(reply)) {
          this.log.info({ position: this.position }, 'store change log has a gap (trimmed past this reader); resyncing watchers');
          this.established = false;
          needPosition = true;
        } else if (!reply) {
          // Idle: make sure the revision did not go backwards under us (a Redis that restarted empty
          // without this connection noticing, a FLUSHALL): the log would then never reach our position.
          const rev = Number((await this.guarded(conn, () => conn.get(this.revKey))) ?? 0);
          if (rev < this.position) {
            this.log.warn(
              { position: this.position, revision: rev },
              'store revision went backwards (Redis lost its data?); resyncing watchers',
            );
            this.established = false;
            needPosition = true;
          }
        }
      } catch (err) {
        if (this.closed) break;
        this.log.debug({ err: (err as Error).message }, 'store log reader failed; resyncing once the connection is back');
        this.established = false;
        needPosition = true;
        if (conn.status === 'ready') await this.pause(200);
      }
    }
  }

  /**
   * A reader command with a watchdog: a connection that stops answering (half-open TCP, a hung Redis)
   * is dropped and reconnected, which fails the command and makes the reader resync. (A plain command
   * timeout would not do: it fails the command but keeps the dead connection.)
   */
  private async guarded<T>(conn: Redis, fn: () => Promise<T>): Promise<T> {
    const watchdog = setTimeout(() => {
      this.log.warn({ url: this.target.display }, 'store log reader got no reply; reconnecting it');
      this.readerStale = true;
      conn.disconnect(true);
    }, BLOCK_MS + this.commandTimeoutMs);
    watchdog.unref();
    try {
      return await fn();
    } finally {
      clearTimeout(watchdog);
    }
  }

  /** Hand the changes in an XREAD reply to the watchers. False on a gap in revisions. */
  private dispatch(reply: unknown): boolean {
    const streams = reply as [unknown, [unknown, unknown[]][]][];
    for (const [, items] of streams) {
      for (const [id, fields] of items) {
        const revision = revisionOfId(id);
        if (revision <= this.position) continue;
        if (revision !== this.position + 1) return false;
        this.position = revision;
        const change = decodeChange(revision, fields);
        if (!change) continue;
        for (const w of this.watchers) this.offer(w, change);
      }
    }
    return true;
  }

  private offer(w: RedisWatch, c: Change): void {
    if (w.state === 'waiting' || !c.key.startsWith(w.prefix)) return;
    if (w.state === 'syncing') {
      if (w.buffer.length >= this.watchQueueLimit) {
        w.overflowed = true;
        w.buffer = [];
      } else if (!w.overflowed) {
        w.buffer.push(c);
      }
      return;
    }
    if (c.revision <= w.revision) return;
    w.revision = c.revision;
    this.deliver(w, c.event);
  }

  /** List the watcher's prefix and deliver it as a `resync`, then what arrived meanwhile. */
  private resync(w: RedisWatch): void {
    const gen = ++w.syncGen;
    w.state = 'syncing';
    w.buffer = [];
    w.overflowed = false;
    this.listAt(w.prefix).then(
      ({ revision, entries }) => {
        if (w.closed || gen !== w.syncGen) return;
        if (w.overflowed) {
          this.resync(w);
          return;
        }
        const buffered = w.buffer;
        w.buffer = [];
        w.state = 'live';
        w.revision = revision;
        this.deliver(w, { type: 'resync', entries, revision });
        for (const c of buffered) {
          if (w.closed || gen !== w.syncGen) break;
          if (c.revision <= w.revision) continue;
          w.revision = c.revision;
          this.deliver(w, c.event);
        }
      },
      () => {
        if (w.closed || gen !== w.syncGen || this.closed) return;
        // If the reader lost its connection too, it resyncs everyone when it is back; otherwise retry.
        setTimeout(() => {
          if (!w.closed && gen === w.syncGen && this.established) this.resync(w);
        }, 250).unref();
      },
    );
  }

  private deliver(w: RedisWatch, ev: WatchEvent): void {
    try {
      w.onEvent(ev);
    } catch (err) {
      this.log.error({ err, prefix: w.prefix }, 'store watcher threw; event dropped for that watcher');
    }
  }

  private whenReady(conn: Redis): Promise<void> {
    if (conn.status === 'ready' || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        conn.off('ready', done);
        this.wakeOnClose.delete(done);
        resolve();
      };
      conn.on('ready', done);
      this.wakeOnClose.add(done);
    });
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeOnClose.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeOnClose.add(done);
    });
  }
}
