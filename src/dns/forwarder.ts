/**
 * The forwarder: names outside our zones go to the configured upstreams.
 *
 * - Each upstream attempt uses a fresh random 16-bit id (from a CSPRNG) and a fresh UDP socket, so a
 *   fresh source port: the socket is `connect()`ed to the upstream, which makes the kernel drop
 *   datagrams from anyone else, and Linux picks the ephemeral port at random. An answer must match
 *   id, QR, opcode and question (case-insensitively) and walk cleanly (message.ts); anything else on
 *   the socket is counted and ignored, and the wait goes on until the attempt's timeout.
 * - A truncated (TC) UDP answer is asked again over TCP from the same upstream.
 * - Timeout, SERVFAIL/REFUSED/NOTIMP/FORMERR, or a malformed answer: the next upstream is tried. An
 *   upstream that timed out is tried last for `downMs`. All failed: SERVFAIL to the client.
 * - Identical queries (same name, any case, same type) in flight together are sent upstream once; every
 *   waiter gets the answer with its own id and case.
 * - Upstreams per zone: the longest zone (suffix) in `zones` that matches the name picks its list;
 *   otherwise the global list.
 * - Bounded: at most `maxInflight` distinct upstream queries and `maxWaiters` clients on one; beyond,
 *   SERVFAIL at once.
 */
import { randomFillSync } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { AnswerCache, CACHE_DEFAULTS, compositeKey, toCached, type CacheOptions, type CachedAnswer } from './cache.js';
import { answersQuery, walkResponse, type ResponseInfo } from './message.js';
import { DNS_DEFAULTS } from './settings.js';
import { HEADER_SIZE, MAX_MESSAGE, OPT_RECORD, RCODE } from './wire.js';

export interface Upstream {
  host: string;
  port: number;
  /** `ip:port` / `[v6]:port`, for metrics and logs. */
  label: string;
  /** Tried last until then (ms since epoch), after a timeout. */
  downUntil: number;
}

export interface ForwarderOptions {
  upstreams: Upstream[];
  /** Upstreams per zone (lower-case, no trailing dot); the longest matching zone wins. */
  zones?: Array<{ zone: string; upstreams: Upstream[] }>;
  /** One attempt's timeout, ms. Default DNS_DEFAULTS.upstreamTimeoutMs (dns.upstreamTimeout). */
  timeoutMs?: number;
  /** An upstream that timed out is tried last for this long, ms. Default DNS_DEFAULTS.upstreamDownMs. */
  downMs?: number;
  /** Distinct upstream queries in flight at most. Default DNS_DEFAULTS.maxInflight. */
  maxInflight?: number;
  /** Clients waiting on one upstream query at most. Default DNS_DEFAULTS.maxWaiters. */
  maxWaiters?: number;
  cache?: Partial<CacheOptions>;
  /** Called once per upstream attempt. */
  onAttempt?: (upstream: string, seconds: number, result: AttemptResult) => void;
  /** A datagram on an upstream socket that did not answer our query (wrong id, question, or garbage). */
  onMismatch?: (upstream: string) => void;
  now?: () => number;
}

export type AttemptResult = 'ok' | 'timeout' | 'error' | 'rcode' | 'malformed' | 'tcp';

/** Completion of one resolution: an answer, or an rcode (SERVFAIL) when there is none. */
export type Waiter = (answer: CachedAnswer | undefined, rcode: number) => void;

interface Inflight {
  waiters: Waiter[];
}

interface Exchanged {
  msg: Buffer;
  info: ResponseInfo;
}

export function parseUpstream(text: string): Upstream {
  let host = text;
  let port = 53;
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (m) {
    host = m[1] as string;
    if (m[2]) port = Number(m[2]);
  } else if ((text.match(/:/g) ?? []).length === 1) {
    const i = text.indexOf(':');
    host = text.slice(0, i);
    port = Number(text.slice(i + 1));
  }
  if (!net.isIP(host) || !Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`dns: upstream "${text}" is not ip:port`);
  return { host, port, label: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`, downUntil: 0 };
}

/** 16-bit ids from a CSPRNG, drawn from a refilled pool (one syscall per 2048 ids). */
class IdSource {
  private readonly pool = Buffer.allocUnsafe(4096);
  private at = this.pool.length;
  next(): number {
    if (this.at >= this.pool.length) {
      randomFillSync(this.pool);
      this.at = 0;
    }
    const v = this.pool.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
}

export class Forwarder {
  readonly cache: AnswerCache;
  private readonly inflight = new Map<string, Inflight>();
  private readonly ids = new IdSource();
  private readonly timeoutMs: number;
  private readonly downMs: number;
  private readonly maxInflight: number;
  private readonly maxWaiters: number;
  private readonly now: () => number;
  private readonly sockets = new Set<dgram.Socket | net.Socket>();
  private closed = false;

  constructor(private readonly opts: ForwarderOptions) {
    this.cache = new AnswerCache({ ...CACHE_DEFAULTS, ...opts.cache });
    this.timeoutMs = opts.timeoutMs ?? DNS_DEFAULTS.upstreamTimeoutMs;
    this.downMs = opts.downMs ?? DNS_DEFAULTS.upstreamDownMs;
    this.maxInflight = opts.maxInflight ?? DNS_DEFAULTS.maxInflight;
    this.maxWaiters = opts.maxWaiters ?? DNS_DEFAULTS.maxWaiters;
    this.now = opts.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.opts.upstreams.length > 0 || (this.opts.zones ?? []).length > 0;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /** Upstreams for a dotted lower-case name, or an empty list. */
  upstreamsFor(name: string): Upstream[] {
    let best: { zone: string; upstreams: Upstream[] } | undefined;
    for (const z of this.opts.zones ?? []) {
      if ((name === z.zone || name.endsWith(`.${z.zone}`)) && (!best || z.zone.length > best.zone.length)) best = z;
    }
    return best ? best.upstreams : this.opts.upstreams;
  }

  /**
   * Resolve `question` (name + type + class as the client sent it) of lower-case wire name `nameKey`
   * and `qtype`, for `name` (dotted, lower case). `done` is called exactly once.
   */
  resolve(nameKey: string, qtype: number, name: string, question: Buffer, done: Waiter): void {
    const key = compositeKey(nameKey, qtype);
    if (this.closed) {
      done(undefined, RCODE.SERVFAIL);
      return;
    }
    const existing = this.inflight.get(key);
    if (existing) {
      if (existing.waiters.length >= this.maxWaiters) done(undefined, RCODE.SERVFAIL);
      else existing.waiters.push(done);
      return;
    }
    if (this.inflight.size >= this.maxInflight) {
      done(undefined, RCODE.SERVFAIL);
      return;
    }
    const entry: Inflight = { waiters: [done] };
    this.inflight.set(key, entry);
    this.run(name, question).then(
      (ex) => this.complete(key, nameKey, qtype, entry, ex),
      () => this.complete(key, nameKey, qtype, entry, undefined),
    );
  }

  /** Stop: answers still in flight complete with SERVFAIL; sockets close. */
  close(): void {
    this.closed = true;
    for (const s of this.sockets) {
      if (s instanceof net.Socket) s.destroy();
      else s.close();
    }
    this.sockets.clear();
  }

  private complete(key: string, nameKey: string, qtype: number, entry: Inflight, ex: Exchanged | undefined): void {
    this.inflight.delete(key);
    if (!ex) {
      for (const w of entry.waiters) w(undefined, RCODE.SERVFAIL);
      return;
    }
    const now = this.now();
    const { answer, ttlS } = toCached(ex.msg, ex.info, now, this.cache.opts);
    if (ttlS !== undefined && !this.closed) this.cache.set(nameKey, qtype, answer);
    for (const w of entry.waiters) w(answer, answer.rcode);
  }

  private async run(name: string, question: Buffer): Promise<Exchanged | undefined> {
    const list = this.upstreamsFor(name);
    const now = this.now();
    const order = [...list.filter((u) => u.downUntil <= now), ...list.filter((u) => u.downUntil > now)];
    for (const up of order) {
      if (this.closed) return undefined;
      const ex = await this.attempt(up, question);
      if (ex) return ex;
    }
    return undefined;
  }

  /** One upstream: UDP, then TCP when the UDP answer is truncated. */
  private async attempt(up: Upstream, question: Buffer): Promise<Exchanged | undefined> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    const id = this.ids.next();
    const query = buildQuery(id, question);
    let r = await this.udp(up, query, id, question);
    if (r.kind === 'ok' && r.ex.info.tc) r = await this.tcp(up, query, id, question);
    if (r.kind !== 'ok') {
      if (r.kind === 'timeout') up.downUntil = this.now() + this.downMs;
      this.opts.onAttempt?.(up.label, seconds(), r.kind);
      return undefined;
    }
    const rcode = r.ex.info.rcode;
    if (rcode !== RCODE.NOERROR && rcode !== RCODE.NXDOMAIN) {
      this.opts.onAttempt?.(up.label, seconds(), 'rcode');
      return undefined;
    }
    up.downUntil = 0;
    this.opts.onAttempt?.(up.label, seconds(), 'ok');
    return r.ex;
  }

  private udp(up: Upstream, query: Buffer, id: number, question: Buffer): Promise<Result> {
    return new Promise<Result>((resolve) => {
      const sock = dgram.createSocket(up.host.includes(':') ? 'udp6' : 'udp4');
      this.sockets.add(sock);
      let finished = false;
      const finish = (r: Result): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        this.sockets.delete(sock);
        try {
          sock.close();
        } catch {
          /* already closed by close() */
        }
        resolve(r);
      };
      const timer = setTimeout(() => finish({ kind: 'timeout' }), this.timeoutMs);
      sock.on('error', () => finish({ kind: 'error' }));
      sock.on('close', () => finish({ kind: 'error' }));
      sock.on('message', (msg) => {
        if (!answersQuery(msg, id, question)) {
          this.opts.onMismatch?.(up.label);
          return;
        }
        const info = walkResponse(msg, question.length);
        if (!info) {
          this.opts.onMismatch?.(up.label);
          return;
        }
        finish({ kind: 'ok', ex: { msg, info } });
      });
      sock.connect(up.port, up.host, (err?: Error) => {
        if (err) return finish({ kind: 'error' });
        sock.send(query, (e) => {
          if (e) finish({ kind: 'error' });
        });
      });
    });
  }

  private tcp(up: Upstream, query: Buffer, id: number, question: Buffer): Promise<Result> {
    return new Promise<Result>((resolve) => {
      const sock = net.connect({ host: up.host, port: up.port });
      this.sockets.add(sock);
      let finished = false;
      const chunks: Buffer[] = [];
      let have = 0;
      const finish = (r: Result): void => {
        if (finished) return;
        finished = true;
        this.sockets.delete(sock);
        sock.destroy();
        resolve(r);
      };
      sock.setTimeout(this.timeoutMs, () => finish({ kind: 'timeout' }));
      sock.on('error', () => finish({ kind: 'error' }));
      sock.on('close', () => finish({ kind: 'error' }));
      sock.on('connect', () => {
        const framed = Buffer.allocUnsafe(2 + query.length);
        framed.writeUInt16BE(query.length, 0);
        query.copy(framed, 2);
        sock.write(framed);
      });
      sock.on('data', (d: Buffer) => {
        chunks.push(d);
        have += d.length;
        if (have > 2 + MAX_MESSAGE) return finish({ kind: 'malformed' });
        if (have < 2) return;
        const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
        chunks.length = 0;
        chunks.push(all);
        const len = all.readUInt16BE(0);
        if (have < 2 + len) return;
        const msg = Buffer.from(all.subarray(2, 2 + len));
        if (!answersQuery(msg, id, question)) return finish({ kind: 'malformed' });
        const info = walkResponse(msg, question.length);
        if (!info) return finish({ kind: 'malformed' });
        finish({ kind: 'ok', ex: { msg, info } });
      });
    });
  }
}

type Result = { kind: 'ok'; ex: Exchanged } | { kind: 'timeout' } | { kind: 'error' } | { kind: 'malformed' };

/** Our upstream query: RD, one question, our OPT (1232 bytes, no DO). */
export function buildQuery(id: number, question: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + question.length + OPT_RECORD.length);
  out.writeUInt16BE(id, 0);
  out[2] = 0x01; // RD
  out[3] = 0;
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(1, 10);
  question.copy(out, HEADER_SIZE);
  OPT_RECORD.copy(out, HEADER_SIZE + question.length);
  return out;
}
