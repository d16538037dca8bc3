/**
 * DNS over TCP (RFC 7766): who may hold a connection, which one goes when the listener is full, how
 * long an idle one lives (`TcpClients`), and what one connection does with its bytes (`TcpClient`).
 *
 * Sources. Connections are counted per source: an IPv4 address, or an IPv6 /64 (an IPv4-mapped IPv6
 * address counts as its IPv4 address). IPv6 is grouped per /64, not per address, because a /64 is what
 * one host is given (SLAAC, privacy addresses rotating inside it) and a host can send from any address
 * of a /64 routed to it: counted per address, one host could be as many sources as it likes. Hosts that
 * share a /64 share its cap.
 *
 * Admission, at accept:
 * 1. A source that already holds `maxTcpConnectionsPerSource` connections: the newcomer is closed at
 *    once (`source_limit`).
 * 2. `maxTcpConnections` open: the connection idle longest among the sources that hold the most
 *    connections is closed to make room (`evicted`); only when no connection is idle is the newcomer
 *    closed (`full`).
 * A connection is idle when it has no forwarded query pending and every answer has been handed to the
 * kernel. Bytes of a message not yet complete do not make it busy: only a whole query read or an answer
 * written is activity, so a connection that sent one byte has been idle since it was accepted.
 *
 * Idle timeout. A connection is closed after `tcpIdleMs` without activity. Accepted or active while
 * more than half of `maxTcpConnections` are open, it gets `tcpIdleBusyMs` instead (unbound shortens its
 * tcp-idle-timeout too when more than half its TCP handlers are in use); the timeout is chosen again at
 * each activity. A connection with a forwarded query pending is not closed for idleness (the
 * forwarder's own timeouts bound the wait); one whose client stops reading our answers is.
 *
 * Cost. The sources that have an idle connection are kept in a binary heap (most connections first,
 * then the one whose idle-longest connection became idle first); each source's idle connections are a
 * linked list in the order they became idle. An accept is a Map lookup and O(log sources) heap work;
 * an activity is O(1) list work, plus O(log sources) when it changes the source's idle-longest
 * connection.
 */
import type net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Logger } from '../telemetry/log.js';
import { Query } from './query.js';
import type { DnsOptions } from './settings.js';
import * as wire from './wire.js';

// Hot path: an imported binding copied into a module constant once (see plane.ts).
const { HEADER_SIZE } = wire;

/** Why the server closed a TCP connection (the `reason` label of portico_dns_tcp_closed_total). */
export type TcpCloseReason = 'source_limit' | 'full' | 'evicted' | 'idle';

/** A refusal or an eviction is logged at most this often per reason; the lines between are counted. */
const LOG_EVERY_MS = 10_000;

const LOG_LINES: Record<Exclude<TcpCloseReason, 'idle'>, string> = {
  source_limit: 'dns: tcp connection refused: its source holds maxTcpConnectionsPerSource connections',
  full: 'dns: tcp connection refused: maxTcpConnections open, none idle',
  evicted: 'dns: idle tcp connection closed to make room: maxTcpConnections open',
};

/** What a connection asks of the plane: the query path and two counters. */
export interface TcpHost {
  /** The answer to one message (`prefix` bytes reserved in front): a Buffer, null (drop it), or a symbol: call `forward`. */
  respondTo(msg: Buffer, q: Query, client: string, tcp: boolean, prefix: number): Buffer | null | symbol;
  forward(msg: Buffer, q: Query, tcp: boolean, prefix: number, send: (buf: Buffer | null) => void): void;
  countTcpDrop(): void;
  countTcpMessage(): void;
}

/** The options the TCP side reads (`now` dates the log rate limit). */
export type TcpLimits = Pick<
  DnsOptions,
  'maxTcpConnections' | 'maxTcpConnectionsPerSource' | 'maxTcpPending' | 'tcpIdleMs' | 'tcpIdleBusyMs' | 'now'
>;

/**
 * The key connections from `address` are counted under: an IPv4 address as it is, an IPv4-mapped
 * IPv6 address as its IPv4 address, another IPv6 address as its /64 (`2001:db8:1:2::/64`). A string
 * that is not an address is its own key.
 */
export function sourceKey(address: string): string {
  if (!address.includes(':')) return address;
  try {
    const a = ipaddr.IPv6.parse(address);
    if (a.isIPv4MappedAddress()) return a.toIPv4Address().toString();
    const p = a.parts;
    return `${new ipaddr.IPv6([p[0]!, p[1]!, p[2]!, p[3]!, 0, 0, 0, 0]).toString()}/64`;
  } catch {
    return address;
  }
}

/** One source: its open connections and its idle ones, idle longest first. */
class Source {
  count = 0;
  head: TcpClient | undefined = undefined;
  tail: TcpClient | undefined = undefined;
  /** Index in the heap of sources with an idle connection; -1 when it has none. */
  slot = -1;
  constructor(readonly key: string) {}
}

/** The connections of the TCP listener, by source, and the decisions of the file comment. */
export class TcpClients {
  /** Connections the listener handed over, kept or not. */
  accepted = 0;
  /** Connections the server closed, by reason (read by the metrics at scrape time). */
  readonly closed: Record<TcpCloseReason, number> = { source_limit: 0, full: 0, evicted: 0, idle: 0 };
  private readonly all = new Set<TcpClient>();
  private readonly sources = new Map<string, Source>();
  private readonly heap: Source[] = [];
  /** Orders connections by when they last became idle or active. */
  private seq = 0;
  private stopped = false;
  private readonly logged = {
    source_limit: { at: -Infinity, suppressed: 0 },
    full: { at: -Infinity, suppressed: 0 },
    evicted: { at: -Infinity, suppressed: 0 },
  };

  constructor(
    private readonly host: TcpHost,
    private readonly opts: TcpLimits,
    private readonly log: Logger,
  ) {}

  /** Open connections. */
  get size(): number {
    return this.all.size;
  }

  /** The idle timeout a connection accepted or active now gets, ms. */
  idleTimeoutMs(): number {
    const o = this.opts;
    return this.all.size * 2 > o.maxTcpConnections ? Math.min(o.tcpIdleBusyMs, o.tcpIdleMs) : o.tcpIdleMs;
  }

  /** A connection the listener accepted: keep it, make room for it, or close it. */
  accept(sock: net.Socket): void {
    this.accepted++;
    const address = sock.remoteAddress;
    if (this.stopped || address === undefined) {
      sock.destroy(); // stopping, or already gone (reset before we got to it)
      return;
    }
    const key = sourceKey(address);
    const known = this.sources.get(key);
    if (known !== undefined && known.count >= this.opts.maxTcpConnectionsPerSource) {
      this.refuse(sock, 'source_limit', key);
      return;
    }
    if (this.all.size >= this.opts.maxTcpConnections) {
      const victim = this.heap[0]?.head;
      if (victim === undefined) {
        this.refuse(sock, 'full', key);
        return;
      }
      this.closed.evicted++;
      this.note('evicted', victim.source.key);
      victim.destroy(); // leaves the table now: the source may be gone, look it up again
    }
    let s = this.sources.get(key);
    if (s === undefined) this.sources.set(key, (s = new Source(key)));
    s.count++;
    this.fix(s);
    const c = new TcpClient(this, this.host, s, sock, this.opts.maxTcpPending);
    this.all.add(c);
    this.idle(c);
    c.arm(this.idleTimeoutMs());
  }

  /** Accept no more; every connection reads no more queries and closes once its forwarded ones are answered. */
  drain(): void {
    this.stopped = true;
    for (const c of this.all) c.drain();
  }

  /** Close every connection now. */
  destroy(): void {
    this.stopped = true;
    for (const c of [...this.all]) c.destroy();
  }

  private refuse(sock: net.Socket, reason: 'source_limit' | 'full', key: string): void {
    this.closed[reason]++;
    this.note(reason, key);
    sock.destroy();
  }

  /** A log line per reason at most every LOG_EVERY_MS, saying how many were not logged since the last. */
  private note(reason: Exclude<TcpCloseReason, 'idle'>, source: string): void {
    const l = this.logged[reason];
    const now = this.opts.now();
    if (now - l.at < LOG_EVERY_MS) {
      l.suppressed++;
      return;
    }
    const fields = { reason, source, open: this.all.size, suppressed: l.suppressed };
    if (reason === 'evicted') this.log.info(fields, LOG_LINES[reason]);
    else this.log.warn(fields, LOG_LINES[reason]);
    l.at = now;
    l.suppressed = 0;
  }

  // ---- the connection's state changes (called by TcpClient)

  /** @internal `c` is idle from now: last in its source's list. */
  idle(c: TcpClient): void {
    this.append(c);
    if (c.source.head === c) this.push(c.source);
  }

  /** @internal `c` has a query pending or an answer not yet handed to the kernel: never evicted while so. */
  busy(c: TcpClient): void {
    if (!c.listed) return;
    const s = c.source;
    const first = s.head === c;
    this.unlink(c);
    if (first) {
      if (s.head === undefined) this.pull(s);
      else this.fix(s);
    }
  }

  /** @internal Activity on `c`, which stays idle: it becomes the idle-shortest of its source. */
  touch(c: TcpClient): void {
    if (!c.listed) {
      this.idle(c);
      return;
    }
    const s = c.source;
    const first = s.head === c;
    if (s.tail !== c) {
      this.unlink(c);
      this.append(c);
    } else {
      c.idleSeq = ++this.seq;
    }
    if (first) this.fix(s);
  }

  /** @internal `c` is closing or closed: it leaves the table (once). */
  remove(c: TcpClient): void {
    if (!this.all.delete(c)) return;
    this.busy(c);
    const s = c.source;
    s.count--;
    if (s.count === 0) this.sources.delete(s.key);
    else this.fix(s);
  }

  private append(c: TcpClient): void {
    const s = c.source;
    c.idleSeq = ++this.seq;
    c.listed = true;
    c.prevIdle = s.tail;
    c.nextIdle = undefined;
    if (s.tail !== undefined) s.tail.nextIdle = c;
    else s.head = c;
    s.tail = c;
  }

  private unlink(c: TcpClient): void {
    const s = c.source;
    if (c.prevIdle !== undefined) c.prevIdle.nextIdle = c.nextIdle;
    else s.head = c.nextIdle;
    if (c.nextIdle !== undefined) c.nextIdle.prevIdle = c.prevIdle;
    else s.tail = c.prevIdle;
    c.prevIdle = c.nextIdle = undefined;
    c.listed = false;
  }

  // ---- the heap of sources with an idle connection: the one to evict from on top

  /** `a` is evicted from before `b`: it holds more connections, or as many and has been idle longer. */
  private static before(a: Source, b: Source): boolean {
    return a.count !== b.count ? a.count > b.count : a.head!.idleSeq < b.head!.idleSeq;
  }

  private push(s: Source): void {
    s.slot = this.heap.length;
    this.heap.push(s);
    this.up(s.slot);
  }

  private pull(s: Source): void {
    const h = this.heap;
    const i = s.slot;
    const last = h.pop()!;
    s.slot = -1;
    if (last !== s) {
      h[i] = last;
      last.slot = i;
      this.fix(last);
    }
  }

  /** Restore the heap around `s` after its count or its idle-longest connection changed. */
  private fix(s: Source): void {
    if (s.slot < 0) return;
    this.up(s.slot);
    this.down(s.slot);
  }

  private up(i: number): void {
    const h = this.heap;
    const s = h[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const ps = h[p]!;
      if (!TcpClients.before(s, ps)) break;
      h[i] = ps;
      ps.slot = i;
      i = p;
    }
    h[i] = s;
    s.slot = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const n = h.length;
    const s = h[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && TcpClients.before(h[c + 1]!, h[c]!)) c++;
      const cs = h[c]!;
      if (!TcpClients.before(cs, s)) break;
      h[i] = cs;
      cs.slot = i;
      i = c;
    }
    h[i] = s;
    s.slot = i;
  }
}

/**
 * One DNS-over-TCP client (RFC 7766): two-byte length framing, any number of queries, answers in
 * completion order (forwarded ones may overtake), an idle timeout, bounded buffering (one message at
 * most is buffered; reading pauses while the client does not read our answers or while too many
 * forwarded queries are pending).
 */
export class TcpClient {
  // The table's links (TcpClients): the source's idle list and the order in it.
  /** @internal */ prevIdle: TcpClient | undefined = undefined;
  /** @internal */ nextIdle: TcpClient | undefined = undefined;
  /** @internal */ idleSeq = 0;
  /** @internal In its source's idle list. */ listed = false;

  private readonly q = new Query();
  private pending: Buffer | undefined;
  private forwards = 0;
  private ended = false;
  private draining = false;
  /** Out of the table: destroyed, or closed by either side. */
  private gone = false;
  private timer: NodeJS.Timeout | undefined;
  private timerMs = 0;
  private readonly client: string;

  constructor(
    private readonly table: TcpClients,
    private readonly host: TcpHost,
    /** @internal */ readonly source: Source,
    private readonly sock: net.Socket,
    private readonly maxPending: number,
  ) {
    this.client = sock.remoteAddress ?? '';
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('end', () => {
      this.ended = true;
      this.maybeEnd();
    });
    sock.on('drain', () => this.resume());
    sock.on('error', () => this.destroy());
    sock.on('close', () => this.leave());
  }

  /** (Re)start the idle timer with `ms`: refreshed when unchanged, replaced when not. */
  arm(ms: number): void {
    if (this.gone) return;
    if (this.timer !== undefined && ms === this.timerMs) {
      this.timer.refresh();
      return;
    }
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerMs = ms;
    this.timer = setTimeout(this.onTimeout, ms);
    this.timer.unref();
  }

  /** Read no more queries; close once the forwarded ones are answered. */
  drain(): void {
    this.ended = true;
    this.draining = true;
    this.sock.pause();
    this.maybeEnd();
  }

  /** Close now (and leave the table at once). */
  destroy(): void {
    this.leave();
    this.sock.destroy();
  }

  private leave(): void {
    if (this.gone) return;
    this.gone = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.table.remove(this);
  }

  private readonly onTimeout = (): void => {
    // A forwarded query pending: its answer is activity and re-arms the timer.
    if (this.gone || this.forwards > 0) return;
    this.table.closed.idle++;
    this.destroy();
  };

  /** An answer has been handed to the kernel: idle again if nothing else is pending. */
  private readonly onWritten = (): void => {
    if (this.gone || this.listed || this.forwards > 0 || this.sock.writableLength > 0) return;
    this.table.idle(this);
    this.arm(this.table.idleTimeoutMs());
  };

  private onData(d: Buffer): void {
    if (this.draining) return;
    let buf = this.pending ? Buffer.concat([this.pending, d]) : d;
    this.pending = undefined;
    let off = 0;
    let read = 0;
    while (buf.length - off >= 2) {
      const len = buf.readUInt16BE(off);
      if (len < HEADER_SIZE) {
        // No header to answer: the stream is garbage from here on.
        this.host.countTcpDrop();
        this.destroy();
        return;
      }
      if (buf.length - off - 2 < len) break;
      const msg = buf.subarray(off + 2, off + 2 + len);
      off += 2 + len;
      read++;
      this.host.countTcpMessage();
      this.handle(msg);
      if (this.gone) return;
    }
    if (off < buf.length) {
      // At most one partial message (≤ 64 KiB + 2) is kept; copy so the big chunk it came in can go.
      buf = buf.subarray(off);
      this.pending = Buffer.from(buf);
    }
    if (this.forwards >= this.maxPending || this.sock.writableNeedDrain) this.sock.pause();
    if (read > 0) this.settle();
  }

  private handle(msg: Buffer): void {
    const out = this.host.respondTo(msg, this.q, this.client, true, 2);
    if (out === null) return; // a response sent to us: ignore it, keep the connection
    if (typeof out === 'symbol') {
      this.forwards++;
      this.host.forward(msg, this.q, true, 2, (buf) => {
        this.forwards--;
        if (buf) this.write(buf);
        this.resume();
        this.maybeEnd();
        this.settle();
      });
      return;
    }
    this.write(out);
  }

  /** After activity: idle (the idle-shortest of its source) or busy, and the idle timer restarted. */
  private settle(): void {
    if (this.gone) return;
    if (this.forwards > 0 || this.sock.writableLength > 0) this.table.busy(this);
    else this.table.touch(this);
    this.arm(this.table.idleTimeoutMs());
  }

  private write(framed: Buffer): void {
    if (this.gone) return;
    framed.writeUInt16BE(framed.length - 2, 0);
    this.sock.write(framed, this.onWritten);
  }

  private resume(): void {
    if (this.gone || this.draining || this.sock.writableNeedDrain || this.forwards >= this.maxPending) return;
    if (this.sock.isPaused()) this.sock.resume();
  }

  private maybeEnd(): void {
    if (this.ended && this.forwards === 0 && !this.gone) this.sock.end();
  }
}
