/**
 * The request-smuggling matrix (issue 4, item 1): every malformed or ambiguous request is refused with
 * its status and the connection closed, and the backend receives nothing of it — in particular not the
 * second ("smuggled") request that follows it in the same bytes. Then the other direction: a backend
 * response with bad framing becomes a 502, never a desynchronised connection.
 *
 * After each row a probe request on a new connection is proxied and awaited; only then is the backend's
 * record compared, so anything the bad message had let through would have arrived by then.
 */
import t from 'tap';
import { endpoint, service } from '../../helpers/snapshot.js';
import { RawClient, get, rawExchange, startBackend, startPlane } from '../helpers.js';

const HOST = 'a.test';
const SMUGGLED = `GET /smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;

interface Row {
  name: string;
  bytes: string;
  status: number;
  /**
   * The head was valid and the error is in the body (a chunk, the body limit): the engine streams, so the
   * head may already be on its way upstream when the error is found. The upstream connection is then
   * reset, and the backend must still never see a complete request.
   */
  inBody?: true;
}

const post = (fields: string, body: string, version = '1.1') => `POST /upload HTTP/${version}\r\nHost: ${HOST}\r\n${fields}\r\n${body}`;
const getWith = (fields: string) => `GET /x HTTP/1.1\r\nHost: ${HOST}\r\n${fields}\r\n`;
const chunkedPost = (chunks: string) => `POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`;

const rows: Row[] = [
  // Content-Length with Transfer-Encoding, in both orders and spellings
  { name: 'CL then TE', bytes: post('Content-Length: 6\r\nTransfer-Encoding: chunked\r\n', `0\r\n\r\n${SMUGGLED}`), status: 400 },
  { name: 'TE then CL', bytes: post('Transfer-Encoding: chunked\r\nContent-Length: 60\r\n', `0\r\n\r\n${SMUGGLED}`), status: 400 },
  {
    name: 'CL and TE in odd case',
    bytes: post('content-length: 6\r\nTRANSFER-ENCODING: CHUNKED\r\n', `0\r\n\r\n${SMUGGLED}`),
    status: 400,
  },
  // Transfer-Encoding in HTTP/1.0
  { name: 'TE in HTTP/1.0', bytes: post('Transfer-Encoding: chunked\r\n', `5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`, '1.0'), status: 400 },
  {
    name: 'TE and CL in HTTP/1.0',
    bytes: post('Content-Length: 5\r\nTransfer-Encoding: chunked\r\n', `0\r\n\r\n${SMUGGLED}`, '1.0'),
    status: 400,
  },
  // duplicate or differing Content-Length
  { name: 'two equal CL', bytes: post('Content-Length: 5\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`), status: 400 },
  { name: 'two differing CL', bytes: post('Content-Length: 5\r\nContent-Length: 44\r\n', `hello${SMUGGLED}`), status: 400 },
  { name: 'CL as a list', bytes: post('Content-Length: 5, 5\r\n', `hello${SMUGGLED}`), status: 400 },
  { name: 'CL with a sign', bytes: post('Content-Length: +5\r\n', `hello${SMUGGLED}`), status: 400 },
  { name: 'CL not a number', bytes: post('Content-Length: 5x\r\n', `hello${SMUGGLED}`), status: 400 },
  { name: 'CL over 2^53', bytes: post('Content-Length: 99999999999999999999\r\n', `hello${SMUGGLED}`), status: 400 },
  // Transfer-Encoding not ending in chunked
  { name: 'TE chunked, identity', bytes: post('Transfer-Encoding: chunked, identity\r\n', `0\r\n\r\n${SMUGGLED}`), status: 400 },
  { name: 'TE gzip', bytes: post('Transfer-Encoding: gzip\r\n', `0\r\n\r\n${SMUGGLED}`), status: 400 },
  { name: 'TE xchunked', bytes: post('Transfer-Encoding: xchunked\r\n', `0\r\n\r\n${SMUGGLED}`), status: 400 },
  { name: 'TE chunked twice', bytes: post('Transfer-Encoding: chunked, chunked\r\n', `0\r\n\r\n${SMUGGLED}`), status: 400 },
  {
    name: 'TE split over two fields ending in gzip',
    bytes: post('Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n', `0\r\n\r\n${SMUGGLED}`),
    status: 400,
  },
  { name: 'TE with a parameter', bytes: post('Transfer-Encoding: chunked;q=1\r\n', `0\r\n\r\n${SMUGGLED}`), status: 400 },
  { name: 'TE with an empty element', bytes: post('Transfer-Encoding: ,chunked\r\n', `0\r\n\r\n${SMUGGLED}`), status: 400 },
  // a coding before chunked is well-formed but not implemented: 501, closed just the same
  { name: 'TE gzip, chunked', bytes: post('Transfer-Encoding: gzip, chunked\r\n', `0\r\n\r\n${SMUGGLED}`), status: 501 },
  // obs-fold
  { name: 'obs-fold in a field', bytes: getWith('X-Pad: a\r\n b\r\n') + SMUGGLED, status: 400 },
  {
    name: 'obs-fold of Transfer-Encoding',
    bytes: post('Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`),
    status: 400,
  },
  { name: 'obs-fold with HTAB', bytes: getWith('X-Pad: a\r\n\tb\r\n') + SMUGGLED, status: 400 },
  { name: 'whitespace line after the request line', bytes: `GET /x HTTP/1.1\r\n Host: ${HOST}\r\n\r\n${SMUGGLED}`, status: 400 },
  // bare CR
  { name: 'bare CR in a value', bytes: getWith('X-A: a\rb\r\n') + SMUGGLED, status: 400 },
  { name: 'bare CR as a line end', bytes: getWith('X-A: a\rContent-Length: 5\r\n') + `hello${SMUGGLED}`, status: 400 },
  { name: 'bare CR in the request line', bytes: `GET /x\r HTTP/1.1\r\nHost: ${HOST}\r\n\r\n${SMUGGLED}`, status: 400 },
  // bare LF
  {
    name: 'bare LF as a field line end',
    bytes: `POST /upload HTTP/1.1\r\nHost: ${HOST}\nContent-Length: 5\r\n\r\nhello${SMUGGLED}`,
    status: 400,
  },
  { name: 'LF-only line ends', bytes: `GET /x HTTP/1.1\nHost: ${HOST}\n\n${SMUGGLED}`, status: 400 },
  { name: 'bare LF ending the head', bytes: `GET /x HTTP/1.1\r\nHost: ${HOST}\r\n\n${SMUGGLED}`, status: 400 },
  // whitespace before the colon
  { name: 'SP before the colon (Host)', bytes: `GET /x HTTP/1.1\r\nHost : ${HOST}\r\n\r\n${SMUGGLED}`, status: 400 },
  {
    name: 'SP before the colon (Transfer-Encoding)',
    bytes: post('Transfer-Encoding : chunked\r\nContent-Length: 5\r\n', `hello${SMUGGLED}`),
    status: 400,
  },
  { name: 'HTAB before the colon (Content-Length)', bytes: post('Content-Length\t: 5\r\n', `hello${SMUGGLED}`), status: 400 },
  // NUL and control bytes
  { name: 'NUL in a value', bytes: getWith('X-A: a\0b\r\n') + SMUGGLED, status: 400 },
  { name: 'NUL after chunked', bytes: post('Transfer-Encoding: chunked\0\r\n', `0\r\n\r\n${SMUGGLED}`), status: 400 },
  { name: 'SOH in a value', bytes: getWith('X-A: a\x01b\r\n') + SMUGGLED, status: 400 },
  { name: 'ESC in a value', bytes: getWith('X-A: a\x1b[0m\r\n') + SMUGGLED, status: 400 },
  { name: 'DEL in a value', bytes: getWith('X-A: a\x7fb\r\n') + SMUGGLED, status: 400 },
  { name: 'control byte in a name', bytes: getWith('X\x01A: b\r\n') + SMUGGLED, status: 400 },
  { name: 'NUL in the target', bytes: `GET /x\0y HTTP/1.1\r\nHost: ${HOST}\r\n\r\n${SMUGGLED}`, status: 400 },
  // bad chunk sizes (the head is fine: the error is in the body)
  { name: 'chunk size not hex', bytes: chunkedPost(`zz\r\nhello\r\n0\r\n\r\n${SMUGGLED}`), status: 400, inBody: true },
  { name: 'chunk size negative', bytes: chunkedPost(`-1\r\nhello\r\n0\r\n\r\n${SMUGGLED}`), status: 400, inBody: true },
  { name: 'chunk size 0x-prefixed', bytes: chunkedPost(`0x5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`), status: 400, inBody: true },
  { name: 'chunk size empty', bytes: chunkedPost(`\r\nhello\r\n0\r\n\r\n${SMUGGLED}`), status: 400, inBody: true },
  { name: 'chunk size with trailing SP', bytes: chunkedPost(`5 \r\nhello\r\n0\r\n\r\n${SMUGGLED}`), status: 400, inBody: true },
  { name: 'chunk size with leading SP', bytes: chunkedPost(` 5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`), status: 400, inBody: true },
  { name: 'chunk size of 17 digits', bytes: chunkedPost(`00000000000000005\r\nhello\r\n0\r\n\r\n${SMUGGLED}`), status: 400, inBody: true },
  {
    name: 'chunk size overflowing 64 bits',
    bytes: chunkedPost(`10000000000000005\r\nhello\r\n0\r\n\r\n${SMUGGLED}`),
    status: 400,
    inBody: true,
  },
  { name: 'chunk size ended by bare LF', bytes: chunkedPost(`5\nhello\r\n0\r\n\r\n${SMUGGLED}`), status: 400, inBody: true },
  { name: 'chunk data longer than its size', bytes: chunkedPost(`3\r\nhello\r\n0\r\n\r\n${SMUGGLED}`), status: 400, inBody: true },
  // Host
  { name: 'missing Host', bytes: `GET /x HTTP/1.1\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'two equal Host', bytes: `GET /x HTTP/1.1\r\nHost: ${HOST}\r\nHost: ${HOST}\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'two differing Host', bytes: `GET /x HTTP/1.1\r\nHost: ${HOST}\r\nHost: other.test\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'Host with @', bytes: `GET /x HTTP/1.1\r\nHost: user@${HOST}\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'Host with /', bytes: `GET /x HTTP/1.1\r\nHost: ${HOST}/x\r\n\r\n${SMUGGLED}`, status: 400 },
  { name: 'Host with a bad port', bytes: `GET /x HTTP/1.1\r\nHost: ${HOST}:99999\r\n\r\n${SMUGGLED}`, status: 400 },
  {
    name: 'absolute-form authority differs from Host',
    bytes: `GET http://other.test/x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n${SMUGGLED}`,
    status: 400,
  },
  { name: 'absolute-form with userinfo', bytes: `GET http://u@${HOST}/x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n${SMUGGLED}`, status: 400 },
  // limits
  { name: '17 KiB head → 431', bytes: getWith(`X-Big: ${'a'.repeat(17 * 1024)}\r\n`) + SMUGGLED, status: 431 },
  { name: '101 fields → 431', bytes: getWith(Array.from({ length: 101 }, (_, i) => `X-F${i}: v\r\n`).join('')) + SMUGGLED, status: 431 },
  { name: 'long target → 414', bytes: `GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n${SMUGGLED}`, status: 414 },
  {
    name: 'Content-Length over the route limit → 413',
    bytes: `POST /limited HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 2000\r\n\r\n${'x'.repeat(2000)}${SMUGGLED}`,
    status: 413,
  },
  {
    name: 'chunked body over the route limit → 413',
    bytes: `POST /limited HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n${'x'.repeat(2000)}\r\n0\r\n\r\n${SMUGGLED}`,
    status: 413,
    inBody: true,
  },
];

t.test('smuggling matrix: refused, closed, nothing reaches the backend', async (t) => {
  const b = await startBackend(t, 'b');
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [
      { entrypoint: 'web', host: HOST, path: '/', pathMatch: 'prefix', service: 'web' },
      { entrypoint: 'web', host: HOST, path: '/limited', pathMatch: 'prefix', service: 'web', maxBodyBytes: 1000 },
    ],
  });
  const port = h.port();

  // The matrix is only meaningful if the same bytes, made valid, do get through.
  const ok = await rawExchange(port, post('Content-Length: 5\r\n', `hello${SMUGGLED}`), { timeoutMs: 300 });
  t.same(
    ok.responses.map((r) => r.status),
    [200, 200],
    'control: a valid request and the one after it are both served',
  );
  t.same(
    b.requests.items.map((r) => r.target),
    ['/upload', '/smuggled'],
    'control: the backend saw both',
  );

  for (const [i, row] of rows.entries()) {
    await t.test(row.name, async (t) => {
      const reqsBefore = b.requests.items.length;
      const bytesBefore = b.bytesReceived;
      const connsBefore = b.connections;
      const abortedBefore = b.aborted.items.length;
      const r = await rawExchange(port, row.bytes, { timeoutMs: 2000 });
      t.ok(r.closed, 'the connection is closed');
      t.equal(r.responses.length, 1, 'exactly one response');
      t.equal(r.responses[0]?.status, row.status, `answered ${row.status}`);
      t.equal(r.responses[0]?.header('connection'), 'close', 'the response says connection: close');

      // Synchronise: a probe on a new connection is proxied; anything the bad bytes let through came first.
      const probe = await get(port, HOST, `/probe-${i}`);
      t.equal(probe.status, 200, 'the listener still serves');
      const since = b.requests.items.slice(reqsBefore);
      t.same(
        since.map((x) => x.target),
        [`/probe-${i}`],
        'the backend received no request but the probe',
      );
      t.notOk(b.seen('/smuggled').length > 1, 'the smuggled request never reached the backend');
      const probeBytes = since.reduce((n, x) => n + x.rawHead.length, 0);
      if (!row.inBody) {
        t.equal(b.bytesReceived - bytesBefore, probeBytes, 'not one byte of the bad message reached the backend');
        t.ok(b.connections - connsBefore <= 1, 'no extra upstream connection was opened for it');
      } else if (b.bytesReceived - bytesBefore !== probeBytes) {
        // The head went upstream before the bad body bytes were read: that connection must be cut
        // with the request incomplete.
        t.comment('the head reached the backend before the bad body bytes; checking its connection was cut');
        const cut = await b.aborted.until((x) => x.startsWith('POST '), 2000, 'the upstream connection to be cut', abortedBefore);
        t.notMatch(cut, /smuggled/, 'what reached the backend stops before the smuggled request');
      }
    });
  }
  t.equal(b.seen('/smuggled').length, 1, 'the only /smuggled the backend ever saw is the control one');
});

t.test('a backend response with bad framing is a 502, and the next connection works', async (t) => {
  let bad: string | undefined;
  const b = await startBackend(t, 'b', (req) => (bad !== undefined ? { raw: bad } : { status: 200, body: `fine ${req.target}` }));
  const h = await startPlane(t, {
    services: { web: service([endpoint('127.0.0.1', b.port)], { name: 'web' }) },
    routes: [{ entrypoint: 'web', host: HOST, path: '/', pathMatch: 'prefix', service: 'web' }],
  });
  const port = h.port();
  const responses: Record<string, string> = {
    'CL and TE': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'two differing CL': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello!!',
    'two equal CL': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello',
    'bad chunk size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
    'chunk size with trailing SP': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n',
    'obs-fold': 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n',
    'bare LF': 'HTTP/1.1 200 OK\nContent-Length: 0\n\n',
    'NUL in a value': 'HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n',
    'not HTTP': 'hello there\r\n\r\n',
    'bad status code': 'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n',
  };
  for (const [name, raw] of Object.entries(responses)) {
    await t.test(name, async (t) => {
      bad = raw;
      const c = await RawClient.connect(port);
      t.teardown(() => c.destroy());
      c.write(`GET /bad HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      const r = await c.readResponse();
      t.equal(r.status, 502, '502 Bad Gateway');
      t.notMatch(r.text, /hello/, 'nothing of the bad response reached the client');
      bad = undefined;
      const next = await get(port, HOST, '/next');
      t.equal(next.status, 200, 'the next request on a new connection is served');
      t.equal(next.text, 'fine /next');
    });
  }
  const line = await h.logs.lines.until((l) => l.component === 'access' && l.status === 502, 1000, 'a 502 access line');
  t.equal(line.outcome, 'bad-response', 'the access log gives the reason');
});
