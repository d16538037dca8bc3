/**
 * ─── API DOUBLE ────────────────────────────────────────────────────────────────────────────────────
 * A stand-in for Marathon's REST api and event stream, for tests and the benchmark: Marathon (a JVM
 * service needing Mesos and ZooKeeper) cannot be installed here. It follows Marathon's documented
 * responses (docs/docs/rest-api, docs/docs/event-bus.md, api/v2/examples), on a real socket:
 *
 *   GET /v2/apps?embed=apps.tasks      200 {"apps": [...]}           (tasks only with the embed, as Marathon)
 *   GET /v2/apps/<id>?embed=app.tasks  200 {"app": {...}}  |  404 {"message": "App '/<id>' does not exist"}
 *   GET /v2/events                     200 text/event-stream: `event: <eventType>\ndata: <json>\n\n`,
 *                                      `event_stream_attached` first; `?event_type=` filters (Marathon ≥1.3.7)
 *   anything else                      404 {"message": "..."}
 *   with `requireAuthorization` set:   401 {"message": "..."} unless the Authorization header matches
 *
 * What is not Marathon: the apps are whatever the test sets (fixtures from Marathon's documentation),
 * and events are pushed by the test (`pushEvent`). Requests are recorded so tests can assert what was asked.
 * ───────────────────────────────────────────────────────────────────────────────────────────────────
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
}

interface Stream {
  res: http.ServerResponse;
  types: Set<string> | undefined;
}

export class MarathonDouble extends EventEmitter {
  apps: Array<Record<string, unknown>> = [];
  readonly requests: RecordedRequest[] = [];
  /** When set: `/v2/apps*` answers this status (e.g. 503: Marathon has no leader). */
  appsStatus: number | undefined;
  /** When set: `/v2/events` answers this status instead of a stream. */
  eventsStatus: number | undefined;
  /** When set: every request must carry exactly this Authorization header. */
  requireAuthorization: string | undefined;
  /** Pre-serialised `/v2/apps` body (the benchmark sets it once for 10,000 apps). */
  appsBody: Buffer | undefined;
  /** When set: `/v2/apps` answers only once this settles (a slow Marathon, for ordering tests). */
  appsGate: Promise<void> | undefined;

  private readonly server = http.createServer((req, res) => this.handle(req, res));
  private readonly sockets = new Set<Socket>();
  private readonly streams = new Set<Stream>();
  private port = 0;

  async start(port = 0): Promise<string> {
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Open event streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Open TCP connections (keep-alive ones included). */
  get connectionCount(): number {
    return this.sockets.size;
  }

  count(path: string): number {
    return this.requests.filter((r) => r.path === path).length;
  }

  /** Push one event to every open stream whose filter takes it, as Marathon writes it. */
  pushEvent(type: string, data: Record<string, unknown>): boolean {
    const body = JSON.stringify({ ...data, eventType: type, timestamp: data.timestamp ?? new Date().toISOString() });
    for (const s of this.streams) {
      if (s.types && !s.types.has(type)) continue;
      s.res.write(`event: ${type}\ndata: ${body}\n\n`);
    }
    return this.emit('pushed', type);
  }

  /** Cut every open event stream (a Marathon leader change, a network blip). */
  dropStreams(): void {
    for (const s of this.streams) s.res.socket?.destroy();
    this.streams.clear();
  }

  /** Stop answering: close the listener and every connection (Marathon is down). */
  async stop(): Promise<void> {
    this.dropStreams();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Listen again on the same port (Marathon is back). */
  async restart(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => resolve());
    });
  }

  findApp(id: string): Record<string, unknown> | undefined {
    return this.apps.find((a) => a.id === id);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const u = new URL(req.url ?? '/', 'http://x');
    const rec: RecordedRequest = { method: req.method ?? 'GET', path: u.pathname, query: u.searchParams, headers: req.headers };
    this.requests.push(rec);
    this.emit('request', rec);
    const json = (status: number, body: unknown) => {
      const text = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json; qs=2', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (this.requireAuthorization !== undefined && req.headers.authorization !== this.requireAuthorization) {
      json(401, { message: 'Please log in' });
      return;
    }
    if (req.method !== 'GET') {
      json(405, { message: 'method not allowed' });
      return;
    }
    if (u.pathname === '/v2/events') {
      if (this.eventsStatus !== undefined) {
        json(this.eventsStatus, { message: 'event stream unavailable' });
        return;
      }
      const types = u.searchParams.getAll('event_type');
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const stream: Stream = { res, types: types.length > 0 ? new Set(types) : undefined };
      this.streams.add(stream);
      res.on('close', () => this.streams.delete(stream));
      if (!stream.types || stream.types.has('event_stream_attached')) {
        res.write(
          `event: event_stream_attached\ndata: ${JSON.stringify({ remoteAddress: req.socket.remoteAddress, eventType: 'event_stream_attached', timestamp: new Date().toISOString() })}\n\n`,
        );
      } else {
        // Headers out now, as Marathon's Jetty does when the stream opens.
        res.flushHeaders();
      }
      this.emit('stream', stream.types);
      return;
    }
    if (u.pathname === '/v2/apps') {
      if (this.appsStatus !== undefined) {
        json(this.appsStatus, { message: 'Could not determine the current leader' });
        return;
      }
      const answer = () => {
        if (this.appsBody) {
          json(200, this.appsBody);
          return;
        }
        const embed = u.searchParams.getAll('embed').includes('apps.tasks');
        json(200, { apps: this.apps.map((a) => (embed ? a : withoutTasks(a))) });
      };
      if (this.appsGate) void this.appsGate.then(answer);
      else answer();
      return;
    }
    if (u.pathname.startsWith('/v2/apps/')) {
      if (this.appsStatus !== undefined) {
        json(this.appsStatus, { message: 'Could not determine the current leader' });
        return;
      }
      const id = `/${u.pathname
        .slice('/v2/apps/'.length)
        .split('/')
        .map(decodeURIComponent)
        .filter((p) => p !== '')
        .join('/')}`;
      const app = this.findApp(id);
      if (!app) {
        json(404, { message: `App '${id}' does not exist` });
        return;
      }
      json(200, { app });
      return;
    }
    json(404, { message: `no route for ${u.pathname}` });
  }
}

function withoutTasks(a: Record<string, unknown>): Record<string, unknown> {
  const { tasks: _tasks, ...rest } = a;
  return rest;
}
