/**
 * The forwarder's answer cache. An entry is the upstream's response as bytes (its OPT record cut off)
 * plus where each TTL is, so a hit is a copy and a few patches — id, flags, the client's question
 * case, TTLs aged by the time spent in the cache, our own OPT — never a decode or an encode.
 *
 * TTLs are honoured and capped: a positive answer lives for the smallest TTL of its answer and
 * authority records (at most `maxTtlS`); a negative one (NXDOMAIN, or NOERROR without answers) for
 * min(SOA TTL, SOA MINIMUM) of the SOA in its authority section (RFC 2308 §5; at most
 * `maxNegativeTtlS`), and not at all without an SOA. Zero TTLs are not cached. Bounded by entries
 * and bytes; when full, the oldest insertion goes first (FIFO: a hit costs no bookkeeping).
 */
import type { ResponseInfo } from './message.js';
import { DNS_DEFAULTS, type DnsSettings } from './settings.js';
import * as wire from './wire.js';
// Hot path: imported bindings copied into module constants once. Under tsx (esbuild's CommonJS
// output) every read of an imported binding is a getter call; a profile put a quarter of the query
// path's CPU there. (tsc's output has plain properties; this costs nothing there.)
const { HEADER_SIZE, OPT_SIZE, writeOpt } = wire;
const { AA, RD, TC } = wire.F2;
const { RA, CD } = wire.F3;

/** The cache's settings: the `dns.cache` section of the config file (src/dns/settings.ts). */
export type CacheOptions = DnsSettings['cache'];

/** Every default of `dns.cache`. */
export const CACHE_DEFAULTS: Readonly<CacheOptions> = DNS_DEFAULTS.cache;

export interface CachedAnswer {
  /** The response, id 0, no OPT (unless `hasOpt`: an OPT we could not cut, served as is). */
  buf: Buffer;
  hasOpt: boolean;
  ttlOffsets: Int32Array;
  ttls: Uint32Array;
  storedAt: number;
  expiresAt: number;
  rcode: number;
}

/** Make a cache entry from a validated upstream response. `ttlS` undefined: not cacheable. */
export function toCached(
  msg: Buffer,
  info: ResponseInfo,
  now: number,
  opts: CacheOptions,
): { answer: CachedAnswer; ttlS: number | undefined } {
  let buf: Buffer;
  let hasOpt = false;
  if (info.optStart >= 0 && info.optEnd === msg.length) {
    buf = Buffer.from(msg.subarray(0, info.optStart));
    buf.writeUInt16BE(info.ar - 1, 10);
  } else {
    buf = Buffer.from(msg);
    hasOpt = info.optStart >= 0;
  }
  buf[0] = 0;
  buf[1] = 0;
  const ttlOffsets = Int32Array.from(info.ttlOffsets);
  const ttls = new Uint32Array(ttlOffsets.length);
  for (let i = 0; i < ttlOffsets.length; i++) ttls[i] = Math.min(buf.readUInt32BE(ttlOffsets[i] as number), 0x7fffffff);

  let ttlS: number | undefined;
  if (info.rcode === 0 && info.an > 0) {
    ttlS = Math.min(info.minTtl, opts.maxTtlS);
  } else if ((info.rcode === 3 || (info.rcode === 0 && info.an === 0)) && info.negativeTtl !== undefined) {
    ttlS = Math.min(info.negativeTtl, opts.maxNegativeTtlS);
  }
  if (ttlS !== undefined && (ttlS <= 0 || hasOpt || buf.length > opts.maxEntryBytes)) ttlS = undefined;
  const answer: CachedAnswer = { buf, hasOpt, ttlOffsets, ttls, storedAt: now, expiresAt: now + (ttlS ?? 0) * 1000, rcode: info.rcode };
  return { answer, ttlS };
}

/**
 * Keyed by (lower-case wire name, qtype). Lookups go through a map per qtype so the query path hashes
 * the name string it already has, without building a composite key; insertion order (for eviction)
 * is kept in one map of composite keys, touched only when an answer is stored.
 */
export class AnswerCache {
  private readonly byType = new Map<number, Map<string, CachedAnswer>>();
  private readonly order = new Map<string, true>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly opts: CacheOptions = CACHE_DEFAULTS) {}

  get size(): number {
    return this.order.size;
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  /** A live entry, or undefined (an expired one is dropped on the way). */
  get(name: string, qtype: number, now: number): CachedAnswer | undefined {
    const e = this.byType.get(qtype)?.get(name);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    if (e.expiresAt <= now) {
      this.delete(name, qtype);
      this.misses++;
      return undefined;
    }
    this.hits++;
    return e;
  }

  set(name: string, qtype: number, e: CachedAnswer): void {
    this.delete(name, qtype);
    let m = this.byType.get(qtype);
    if (m === undefined) this.byType.set(qtype, (m = new Map()));
    m.set(name, e);
    this.order.set(compositeKey(name, qtype), true);
    this.bytes += e.buf.length;
    while (this.order.size > this.opts.maxEntries || this.bytes > this.opts.maxBytes) {
      const first = this.order.keys().next();
      if (first.done) break;
      const k = first.value;
      this.delete(k.slice(0, -2), (k.charCodeAt(k.length - 2) << 8) | k.charCodeAt(k.length - 1));
    }
  }

  clear(): void {
    this.byType.clear();
    this.order.clear();
    this.bytes = 0;
  }

  private delete(name: string, qtype: number): void {
    const m = this.byType.get(qtype);
    const e = m?.get(name);
    if (e === undefined || m === undefined) return;
    m.delete(name);
    this.order.delete(compositeKey(name, qtype));
    this.bytes -= e.buf.length;
  }
}

/** One string for (name key, qtype): coalescing and eviction order. */
export function compositeKey(name: string, qtype: number): string {
  return name + String.fromCharCode(qtype >> 8, qtype & 0xff);
}

/**
 * A response to the query `msg` (at least its header and question name) from a cached answer: id,
 * RD/CD and the question's case from the query, AA
 * cleared (it is not our data), TTLs aged, our OPT when the client sent EDNS. Too large for `limit`:
 * TC with the question only (the client retries over TCP, where it fits).
 */
export function fromCached(
  e: CachedAnswer,
  msg: Buffer,
  nameLength: number,
  edns: boolean,
  limit: number,
  prefix: number,
  now: number,
): Buffer {
  const src = e.buf;
  const opt = edns && !e.hasOpt ? OPT_SIZE : 0;
  if (src.length + opt > limit) {
    const qEnd = HEADER_SIZE + nameLength + 4;
    const out = Buffer.alloc(prefix + qEnd + opt);
    src.copy(out, prefix, 0, qEnd);
    finishHead(out, prefix, msg, nameLength, TC);
    out.writeUInt16BE(0, prefix + 6);
    out.writeUInt16BE(0, prefix + 8);
    out.writeUInt16BE(opt ? 1 : 0, prefix + 10);
    if (opt) writeOpt(out, prefix + qEnd);
    return out;
  }
  const out = Buffer.allocUnsafe(prefix + src.length + opt);
  out.set(src, prefix);
  finishHead(out, prefix, msg, nameLength, 0);
  const age = Math.floor((now - e.storedAt) / 1000);
  if (age > 0) {
    for (let i = 0; i < e.ttlOffsets.length; i++) {
      const t = (e.ttls[i] as number) - age;
      out.writeUInt32BE(t > 0 ? t : 0, prefix + (e.ttlOffsets[i] as number));
    }
  }
  if (opt) {
    writeOpt(out, prefix + src.length);
    out.writeUInt16BE(out.readUInt16BE(prefix + 10) + 1, prefix + 10);
  }
  return out;
}

function finishHead(out: Buffer, prefix: number, msg: Buffer, nameLength: number, extra2: number): void {
  out[prefix] = msg[0] as number;
  out[prefix + 1] = msg[1] as number;
  out[prefix + 2] = ((out[prefix + 2] as number) & ~(AA | RD | TC)) | ((msg[2] as number) & RD) | extra2;
  out[prefix + 3] = ((out[prefix + 3] as number) & ~CD) | ((msg[3] as number) & CD) | RA;
  const to = prefix + HEADER_SIZE;
  for (let i = 0; i < nameLength; i++) out[to + i] = msg[HEADER_SIZE + i] as number;
}
