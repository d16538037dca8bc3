/**
 * The SSE client: the parser against the WHATWG rules with the stream cut at every byte, and the
 * connection against a real HTTP server on 127.0.0.1 (events, refusals, silence, close).
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { SseError, SseParser, connectSse, redactUrl, type SseEvent } from '../../../src/providers/marathon/sse.js';
import { withTimeout } from '../../helpers/wait.js';

/** A stream with every feature: BOM, CRLF/CR/LF, comments, multi-line data, ids, retry, UTF-8. */
const STREAM = Buffer.from(
  '\uFEFF: a comment first\r\n' +
    'retry: 1500\n' +
    'event: status_update_event\r\n' +
    'data: {"a":1}\r\n' +
    '\r\n' +
    'id: 42\r' +
    'data: line one\r' +
    'data:line two\r' +
    'data:  two spaces kept one\r' +
    '\r' +
    'event: ignored-without-data\n' +
    '\n' +
    'data\n' +
    '\n' +
    'retry: soon\n' +
    'id: bad\0id\n' +
    'event: health_status_changed_event\n' +
    'data: {"name":"café ☕ 𝄞"}\n' +
    'unknownfield: x\n' +
    '\n' +
    'data: an event never terminated',
  'utf8',
);

const EXPECTED: SseEvent[] = [
  { type: 'status_update_event', data: '{"a":1}', lastEventId: '' },
  { type: 'message', data: 'line one\nline two\n two spaces kept one', lastEventId: '42' },
  { type: 'message', data: '', lastEventId: '42' },
  { type: 'health_status_changed_event', data: '{"name":"café ☕ 𝄞"}', lastEventId: '42' },
];

function parseChunks(chunks: Buffer[]): { events: SseEvent[]; parser: SseParser } {
  const events: SseEvent[] = [];
  const parser = new SseParser((e) => events.push(e));
  for (const c of chunks) parser.feed(c);
  parser.end();
  return { events, parser };
}

t.test('parser: every field rule, in one stream', async (t) => {
  const { events, parser } = parseChunks([STREAM]);
  t.same(events, EXPECTED);
  t.equal(parser.retryMs, 1500, 'retry: digits only; "soon" ignored');
  t.equal(parser.lastEventId, '42', 'an id with NUL is ignored');
});

t.test('parser: the stream cut in two at every byte gives the same events', async (t) => {
  let bad = 0;
  for (let i = 0; i <= STREAM.length; i++) {
    const { events } = parseChunks([STREAM.subarray(0, i), STREAM.subarray(i)]);
    if (JSON.stringify(events) !== JSON.stringify(EXPECTED)) {
      bad++;
      t.fail(`split at byte ${i}: ${JSON.stringify(events)}`);
    }
  }
  t.equal(bad, 0, `${STREAM.length + 1} split points`);
});

t.test('parser: one byte at a time, and three-way splits around CR LF pairs', async (t) => {
  const bytes = [...STREAM].map((b) => Buffer.from([b]));
  t.same(parseChunks(bytes).events, EXPECTED, 'byte by byte');
  // Every CR: cut right after it and right before the byte after next (CR | LF | rest).
  for (let i = 0; i < STREAM.length - 2; i++) {
    if (STREAM[i] !== 0x0d) continue;
    const { events } = parseChunks([STREAM.subarray(0, i + 1), STREAM.subarray(i + 1, i + 2), STREAM.subarray(i + 2)]);
    t.same(events, EXPECTED, `cut around the CR at ${i}`);
  }
});

t.test('parser: a multi-megabyte event (a full deployment plan) in small chunks', async (t) => {
  const big = 'x'.repeat(3 * 1024 * 1024);
  const stream = Buffer.from(`event: deployment_info\ndata: {"plan":"${big}"}\n\nevent: b\ndata: 2\n\n`);
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i += 16 * 1024) chunks.push(stream.subarray(i, i + 16 * 1024));
  const { events } = parseChunks(chunks);
  t.equal(events.length, 2);
  t.equal(events[0]?.data.length, big.length + 11);
  t.same(events[1], { type: 'b', data: '2', lastEventId: '' });
});

t.test("parser: Marathon's documented event stream", async (t) => {
  const text = readFileSync(join(__dirname, 'fixtures', 'events.txt'));
  const { events } = parseChunks([text]);
  t.same(
    events.map((e) => e.type),
    ['event_stream_attached', 'status_update_event', 'status_update_event'],
  );
  const last = JSON.parse(events[2]?.data ?? '{}') as { taskStatus: string; appId: string; ports: number[] };
  t.same([last.taskStatus, last.appId, last.ports], ['TASK_RUNNING', '/test-app', [31182]]);
});

interface Server {
  url: string;
  server: http.Server;
  sockets: Set<Socket>;
  requests: http.IncomingMessage[];
}

async function serve(t: Test, handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Server> {
  const sockets = new Set<Socket>();
  const requests: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req);
    handler(req, res);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, sockets, requests };
}

t.test('connectSse: events over a real socket, the Accept header, a clean end', async (t) => {
  const s = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('event: a\ndata: 1\n\n');
    setImmediate(() => res.end('event: b\ndata: 2\n\n'));
  });
  const events: SseEvent[] = [];
  let opened = false;
  const c = connectSse(new URL(`${s.url}/v2/events`), {
    onOpen: () => (opened = true),
    onEvent: (e) => events.push(e),
    headers: { authorization: 'token=x' },
  });
  await withTimeout(c.done, 5000, 'the stream to end');
  t.ok(opened);
  t.same(
    events.map((e) => [e.type, e.data]),
    [
      ['a', '1'],
      ['b', '2'],
    ],
  );
  t.equal(s.requests[0]?.headers.accept, 'text/event-stream');
  t.equal(s.requests[0]?.headers.authorization, 'token=x');
});

t.test("connectSse: a refusal carries the status and Marathon's message", async (t) => {
  const s = await serve(t, (_req, res) => {
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end('{"message":"Could not determine the current leader"}');
  });
  const c = connectSse(new URL(`${s.url}/v2/events`), { onEvent: () => undefined });
  const err = await withTimeout(
    c.done.then(
      () => undefined,
      (e: unknown) => e,
    ),
    5000,
    'a refusal',
  );
  t.type(err, SseError);
  t.equal((err as SseError).status, 503);
  t.match((err as Error).message, /HTTP 503: \{"message":"Could not determine the current leader"\}/);
});

t.test('connectSse: 200 that is not an event stream is refused', async (t) => {
  const s = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html>login</html>');
  });
  const c = connectSse(new URL(`${s.url}/v2/events`), { onEvent: () => undefined });
  const err = await withTimeout(
    c.done.then(
      () => undefined,
      (e: unknown) => e,
    ),
    5000,
    'a refusal',
  );
  t.match((err as Error).message, /HTTP 200 with content-type "text\/html"/);
});

t.test('connectSse: a silent stream fails after idleTimeoutMs; close() ends one at once', async (t) => {
  const s = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(': hello\n\n');
  });
  const c = connectSse(new URL(`${s.url}/`), { onEvent: () => undefined, idleTimeoutMs: 150 });
  const err = await withTimeout(
    c.done.then(
      () => undefined,
      (e: unknown) => e,
    ),
    5000,
    'the idle timeout',
  );
  t.match((err as Error).message, /silent for 150 ms/);

  let opened!: () => void;
  const open = new Promise<void>((r) => (opened = r));
  const c2 = connectSse(new URL(`${s.url}/`), { onEvent: () => undefined, onOpen: () => opened(), idleTimeoutMs: 0 });
  await withTimeout(open, 5000, 'the stream to open');
  c2.close();
  await withTimeout(c2.done, 5000, 'close() to end the stream');
  t.pass('closed');
});

t.test('connectSse: connection refused rejects; no response head within connectTimeoutMs rejects', async (t) => {
  const gone = await serve(t, () => undefined);
  const port = new URL(gone.url).port;
  await new Promise<void>((r) => gone.server.close(() => r()));
  const c = connectSse(new URL(`http://127.0.0.1:${port}/`), { onEvent: () => undefined });
  const err = await withTimeout(
    c.done.then(
      () => undefined,
      (e: unknown) => e,
    ),
    5000,
    'ECONNREFUSED',
  );
  t.equal((err as NodeJS.ErrnoException).code, 'ECONNREFUSED');

  const mute = await serve(t, () => undefined); // accepts, never answers
  const c2 = connectSse(new URL(`${mute.url}/`), { onEvent: () => undefined, connectTimeoutMs: 100 });
  const err2 = await withTimeout(
    c2.done.then(
      () => undefined,
      (e: unknown) => e,
    ),
    5000,
    'the connect timeout',
  );
  t.match((err2 as Error).message, /no answer within 100 ms/);
});

t.test('redactUrl drops user info and query', async (t) => {
  t.equal(redactUrl('http://admin:s3cret@marathon.mesos:8080/v2/events?token=abc'), 'http://marathon.mesos:8080/v2/events');
});
