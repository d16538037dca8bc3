/**
 * A small server-sent events client on node:http/https (WHATWG HTML "Server-sent events", §9.2):
 *
 * - SseParser: bytes in, events out. UTF-8 is decoded in streaming mode (a character split across two
 *   chunks is joined), a leading BOM is dropped, lines end in CRLF, LF or CR — including a CR at the end
 *   of one chunk whose LF starts the next. `event:` sets the type, `data:` lines are joined with LF,
 *   `id:` (without NUL) sets the last event id, `retry:` (digits only) the reconnection time, a line
 *   starting with `:` is a comment, one space after the colon is dropped, a blank line dispatches (an
 *   event with no data is not dispatched), and a partial event at the end of the stream is discarded.
 * - connectSse: GET with `Accept: text/event-stream`, answers other than 200 + text/event-stream are
 *   errors (with the start of the body, which is where Marathon puts its message); a stream silent for
 *   `idleTimeoutMs` is an error (a half-open TCP connection would otherwise wait forever: marathon-lb
 *   sets curl's LOW_SPEED_TIME for the same reason). close() ends it; nothing is left behind.
 */
import http from 'node:http';
import https from 'node:https';
import { StringDecoder } from 'node:string_decoder';

export interface SseEvent {
  /** `event:` field; `message` when absent. */
  type: string;
  data: string;
  /** The last event id at dispatch time. */
  lastEventId: string;
}

export class SseParser {
  /** Last event id seen (`id:` field). */
  lastEventId = '';
  /** Reconnection time from the last `retry:` field, ms. */
  retryMs: number | undefined;

  private readonly decoder = new StringDecoder('utf8');
  /** Pieces of the line not yet ended (kept apart, not re-concatenated per chunk: a line can be megabytes). */
  private partial: string[] = [];
  /** The previous chunk ended in CR: a LF at the start of the next one belongs to it. */
  private skipLf = false;
  private first = true;
  private data: string[] = [];
  private type = '';

  constructor(private readonly onEvent: (e: SseEvent) => void) {}

  /** Linear in the input: each character is looked at a bounded number of times. */
  feed(chunk: Buffer | string): void {
    let text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    if (text.length === 0) return;
    if (this.first) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.skipLf) {
      this.skipLf = false;
      if (text.charCodeAt(0) === 0x0a) text = text.slice(1);
    }
    const n = text.length;
    let start = 0;
    let lf = text.indexOf('\n');
    let cr = text.indexOf('\r');
    for (;;) {
      if (lf !== -1 && lf < start) lf = text.indexOf('\n', start);
      if (cr !== -1 && cr < start) cr = text.indexOf('\r', start);
      const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
      if (end === -1) break;
      const piece = text.slice(start, end);
      let line = piece;
      if (this.partial.length > 0) {
        this.partial.push(piece);
        line = this.partial.join('');
        this.partial = [];
      }
      this.line(line);
      if (end === cr) {
        if (cr + 1 < n) start = text.charCodeAt(cr + 1) === 0x0a ? cr + 2 : cr + 1;
        else {
          start = n;
          this.skipLf = true;
        }
      } else start = lf + 1;
    }
    if (start < n) this.partial.push(start === 0 ? text : text.slice(start));
  }

  /** The stream ended: flush the decoder; an event not yet terminated by a blank line is dropped. */
  end(): void {
    const rest = this.decoder.end();
    if (rest) this.feed(rest);
    this.partial = [];
    this.data = [];
    this.type = '';
  }

  private line(line: string): void {
    if (line.length === 0) {
      this.dispatch();
      return;
    }
    if (line.charCodeAt(0) === 0x3a /* : */) return;
    const colon = line.indexOf(':');
    let field: string;
    let value: string;
    if (colon < 0) {
      field = line;
      value = '';
    } else {
      field = line.slice(0, colon);
      value = line.charCodeAt(colon + 1) === 0x20 ? line.slice(colon + 2) : line.slice(colon + 1);
    }
    switch (field) {
      case 'event':
        this.type = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break;
    }
  }

  private dispatch(): void {
    if (this.data.length === 0) {
      this.type = '';
      return;
    }
    const e: SseEvent = { type: this.type === '' ? 'message' : this.type, data: this.data.join('\n'), lastEventId: this.lastEventId };
    this.data = [];
    this.type = '';
    this.onEvent(e);
  }
}

export class SseError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'SseError';
  }
}

export interface SseOptions {
  headers?: Record<string, string>;
  agent?: http.Agent;
  /** TLS: extra CA certificates (PEM) and whether to verify. */
  ca?: string | Buffer;
  rejectUnauthorized?: boolean;
  /** Connect + response head within this long. Default 10 s. */
  connectTimeoutMs?: number;
  /** No byte for this long (after the head) ends the stream with an error. Default 5 min. 0: never. */
  idleTimeoutMs?: number;
  /** The response head arrived and is an event stream. */
  onOpen?: () => void;
  onEvent: (e: SseEvent) => void;
}

export interface SseConnection {
  /** Resolves when the server ends the stream or close() is called; rejects on an error. */
  readonly done: Promise<void>;
  /** End the stream now (resolves `done`). Idempotent. */
  close(): void;
  readonly parser: SseParser;
}

/** Open an event stream. Never throws synchronously: errors reject `done`. */
export function connectSse(url: URL, opts: SseOptions): SseConnection {
  const parser = new SseParser(opts.onEvent);
  let settle!: (err?: Error) => void;
  let settled = false;
  let req: http.ClientRequest | undefined;
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<void>((resolve, reject) => {
    settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      timer = undefined;
      if (req && !req.destroyed) req.destroy();
      if (err) reject(err);
      else resolve();
    };
  });
  const connectMs = opts.connectTimeoutMs ?? 10_000;
  const idleMs = opts.idleTimeoutMs ?? 300_000;

  const lib = url.protocol === 'https:' ? https : http;
  try {
    const reqOpts: https.RequestOptions = {
      method: 'GET',
      headers: { accept: 'text/event-stream', 'cache-control': 'no-cache', ...opts.headers },
    };
    if (opts.agent) reqOpts.agent = opts.agent;
    if (opts.ca !== undefined) reqOpts.ca = opts.ca;
    if (opts.rejectUnauthorized !== undefined) reqOpts.rejectUnauthorized = opts.rejectUnauthorized;
    req = lib.request(url, reqOpts);
  } catch (err) {
    settle(err as Error);
    return { done, close: () => settle(), parser };
  }
  timer = setTimeout(() => settle(new SseError(`event stream ${redactUrl(url)}: no answer within ${connectMs} ms`)), connectMs);
  req.on('error', (err) => settle(err));
  req.on('response', (res) => {
    const type = String(res.headers['content-type'] ?? '');
    if (res.statusCode !== 200 || !type.toLowerCase().startsWith('text/event-stream')) {
      // Read a little of the body: Marathon says why in it.
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < 512) parts.push(c);
        size += c.length;
      });
      const fail = () => {
        const body = Buffer.concat(parts).toString('utf8').slice(0, 300).trim();
        settle(
          new SseError(
            `event stream ${redactUrl(url)}: HTTP ${res.statusCode}${res.statusCode === 200 ? ` with content-type "${type}"` : ''}${body ? `: ${body}` : ''}`,
            res.statusCode,
          ),
        );
      };
      res.on('end', fail);
      res.on('error', fail);
      return;
    }
    clearTimeout(timer);
    timer = undefined;
    const arm = () => {
      if (idleMs <= 0 || settled) return;
      if (timer) timer.refresh();
      else timer = setTimeout(() => settle(new SseError(`event stream ${redactUrl(url)}: silent for ${idleMs} ms`)), idleMs);
    };
    arm();
    try {
      opts.onOpen?.();
    } catch (err) {
      settle(err as Error);
      return;
    }
    res.on('data', (chunk: Buffer) => {
      if (settled) return;
      arm();
      try {
        parser.feed(chunk);
      } catch (err) {
        settle(err as Error);
      }
    });
    res.on('end', () => {
      parser.end();
      settle();
    });
    res.on('error', (err) => settle(err));
    res.on('close', () => settle(new SseError(`event stream ${redactUrl(url)}: connection closed`)));
  });
  req.end();
  return { done, close: () => settle(), parser };
}

/** A URL for logs and status: no user info, no query secrets. */
export function redactUrl(url: URL | string): string {
  const u = new URL(typeof url === 'string' ? url : url.href);
  u.username = '';
  u.password = '';
  return `${u.protocol}//${u.host}${u.pathname}`;
}
