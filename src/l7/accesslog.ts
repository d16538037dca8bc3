/**
 * The access log: one JSON line per request, written to the destination of the logger the plane was
 * given, in that logger's format (`{"level":30,"time":…,<bindings>,"component":"access",…,"msg":"request"}`),
 * at its level (nothing when `info` is off).
 *
 * Why not `logger.info(obj)`: with the daemon's logger (redaction paths with wildcards, ISO time) that
 * cost ~21 µs of CPU per line here — three times what proxying the request costs. An access line has a
 * fixed set of fields, none of them a secret (the path is logged without its query), so it is formatted
 * here directly: the logger's own time function (called at most once per millisecond) and bindings, and
 * a hand-written JSON body with cached literals for the fields that repeat: ~0.6 µs a line.
 *
 * Writing: when the destination is a sonic-boom (pino's file-descriptor destination, what the daemon
 * logs to), lines are gathered and written with one call per 64 KiB or 50 ms, whichever comes first (the
 * destination's per-write cost — its bookkeeping, a thread-pool write — is paid per chunk, not per
 * request; a line reaches the log at most 50 ms late, and stop() writes what is left); any other
 * destination (a test's capture, a transport) gets one write per line, as from pino. Either way the
 * lines go to the logger's own stream, so they never interleave inside another log line.
 */
import pino from 'pino';
import type { Logger } from '../telemetry/log.js';

/** Buffered access lines are written when they reach this size, or this long after the first of them. */
const FLUSH_BYTES = 65_536;
const FLUSH_MS = 50;

/** What a destination must offer (pino's own destinations, sonic-boom, a test capture). */
interface LineSink {
  write(line: string): unknown;
}

type Internals = Record<symbol, unknown>;

const NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** A JSON string literal; the common case (nothing to escape) without JSON.stringify. */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/** JSON literals of values that repeat from request to request (names, addresses, hosts), cached. */
const literals = new Map<string, string>();
const LITERALS_MAX = 4096;

function literal(s: string): string {
  let l = literals.get(s);
  if (l === undefined) {
    l = jsonString(s);
    if (literals.size >= LITERALS_MAX) literals.clear();
    literals.set(s, l);
  }
  return l;
}

export interface AccessRecord {
  entrypoint: string;
  route: string;
  service: string | undefined;
  endpoint: string | undefined;
  client: string;
  method: string;
  host: string | undefined;
  path: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  ms: number;
  upstreamMs: number | undefined;
  retries: number;
  outcome: string;
  requestId: string | undefined;
}

export class AccessLog {
  private readonly sink: LineSink | undefined;
  private readonly time: (() => string) | undefined;
  private readonly bindings: string;
  private readonly messageKey: string;
  private readonly level: number;

  constructor(private readonly logger: Logger) {
    const l = logger as unknown as Internals;
    const sink = l[pino.symbols.streamSym] as LineSink | undefined;
    const time = l[pino.symbols.timeSym] as (() => string) | undefined;
    const bindings = l[pino.symbols.chindingsSym];
    const messageKey = l[pino.symbols.messageKeySym];
    // Fall back to logger.info() if this pino does not look as expected.
    const ok = sink !== undefined && typeof sink.write === 'function' && typeof time === 'function' && typeof bindings === 'string';
    this.sink = ok ? sink : undefined;
    this.time = ok ? time : undefined;
    this.bindings = ok ? (bindings as string) : '';
    this.messageKey = typeof messageKey === 'string' ? messageKey : 'msg';
    this.level = logger.levels?.values?.info ?? 30;
    // sonic-boom: pino.destination() and pino's default stdout stream.
    const sb = sink as { fd?: unknown; flushSync?: unknown } | undefined;
    this.batch = ok && typeof sb?.flushSync === 'function' && 'fd' in (sb as object);
  }

  private readonly batch: boolean;
  /** Lines of this turn (joined into one flat string at the flush: the destination measures and copies it). */
  private buffered: string[] = [];
  private bufferedBytes = 0;
  private scheduled = false;
  private readonly flushSoon = (): void => {
    this.scheduled = false;
    this.flush();
  };

  /** Write what is buffered (end of the turn; and on stop). */
  flush(): void {
    if (this.buffered.length === 0) return;
    const chunk = this.buffered.join('');
    this.buffered = [];
    this.bufferedBytes = 0;
    (this.sink as LineSink).write(chunk);
  }

  private lastMs = -1;
  private lastTime = '';

  /** The logger's time field, made at most once per millisecond (pino's are ms-precise). */
  private timeField(): string {
    const ms = Date.now();
    if (ms !== this.lastMs) {
      this.lastMs = ms;
      this.lastTime = (this.time as () => string)();
    }
    return this.lastTime;
  }

  get enabled(): boolean {
    return this.logger.isLevelEnabled('info');
  }

  write(r: AccessRecord): void {
    if (this.sink === undefined) {
      this.logger.info({ ...r }, 'request');
      return;
    }
    let line = `{"level":${this.level}${this.timeField()}${this.bindings}`;
    line += `,"entrypoint":${literal(r.entrypoint)},"route":${literal(r.route)}`;
    if (r.service !== undefined) line += `,"service":${literal(r.service)}`;
    if (r.endpoint !== undefined) line += `,"endpoint":${literal(r.endpoint)}`;
    line += `,"client":${literal(r.client)},"method":${literal(r.method)}`;
    if (r.host !== undefined) line += `,"host":${literal(r.host)}`;
    line += `,"path":${jsonString(r.path)},"status":${r.status},"bytesIn":${r.bytesIn},"bytesOut":${r.bytesOut},"ms":${r.ms}`;
    if (r.upstreamMs !== undefined) line += `,"upstreamMs":${r.upstreamMs}`;
    line += `,"retries":${r.retries},"outcome":${literal(r.outcome)}`;
    if (r.requestId !== undefined) line += `,"requestId":${jsonString(r.requestId)}`;
    line += `,${jsonString(this.messageKey)}:"request"}\n`;
    if (!this.batch) {
      this.sink.write(line);
      return;
    }
    this.buffered.push(line);
    this.bufferedBytes += line.length;
    if (this.bufferedBytes >= FLUSH_BYTES) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(this.flushSoon, FLUSH_MS).unref();
    }
  }
}
