/**
 * Micro-benchmark of the HTTP/1.1 parser (src/l7/http/parser.ts) beside Node's own llhttp, reached through
 * `node:_http_common`'s HTTPParser (the binding node:http uses; headers come back as JS strings, as ours do).
 *
 *   node --import tsx bench/l7-parser.ts [iterations]
 *
 *  1. One typical ~400-byte GET head, parsed 1,000,000 times (one execute() per request).
 *  2. The same request pipelined 16 to a buffer (one execute() per 16 requests).
 *  3. A POST with a 1 KiB chunked body in 4 chunks.
 * Each case runs RUNS times after a warm-up; the median ns/request is reported.
 */
import { HttpParser, Kind, type MessageHead } from '../src/l7/http/parser.js';
import { median, ratio, report, round, say } from './lib.js';

const RUNS = 5;

const GET = Buffer.from(
  [
    'GET /api/v1/accounts/8a1f2c3d/orders?status=open&limit=50 HTTP/1.1',
    'Host: shop.internal.example.com',
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
    'Accept: application/json, text/plain, */*',
    'Accept-Encoding: gzip, deflate, br',
    'Accept-Language: en-US,en;q=0.9',
    'Cookie: session=3b9f0c1e5d7a4b2c8e6f; theme=dark',
    'X-Request-ID: 5f0c6a1e-93b2-4d1e-8a7c-2b9e4f3d1c0a',
    'Connection: keep-alive',
    '',
    '',
  ].join('\r\n'),
  'latin1',
);

const CHUNK = 'x'.repeat(256);
const POST = Buffer.from(
  `POST /upload HTTP/1.1\r\nHost: shop.internal.example.com\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n${`100\r\n${CHUNK}\r\n`.repeat(4)}0\r\n\r\n`,
  'latin1',
);

/** One parser under test: execute() a buffer; count() completed messages; `last` keeps results alive. */
interface Harness {
  execute(buf: Buffer): void;
  count(): number;
  last: unknown;
}

function portico(): Harness {
  const p = new HttpParser(Kind.Request);
  let n = 0;
  const h: Harness = {
    execute(buf) {
      p.execute(buf);
      if (p.error) throw p.error;
    },
    count: () => n,
    last: undefined,
  };
  p.onHead = (head: MessageHead) => {
    h.last = head;
  };
  p.onComplete = () => {
    n++;
  };
  return h;
}

type NodeHTTPParser = {
  new (): NodeHTTPParser;
  REQUEST: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
  execute(buf: Buffer): number | Error;
  [k: number]: unknown;
};

function llhttp(): Harness | undefined {
  let HTTPParser: NodeHTTPParser;
  try {
    // An internal module (what node:http itself uses), only for comparison; absent → our numbers alone.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- an internal module, loaded only if present
    HTTPParser = (require('node:_http_common') as { HTTPParser: NodeHTTPParser }).HTTPParser;
  } catch {
    return undefined;
  }
  const p = new HTTPParser();
  p.initialize(HTTPParser.REQUEST, {}, 0, 0);
  let n = 0;
  const h: Harness = {
    execute(buf) {
      const r = p.execute(buf);
      if (r instanceof Error) throw r;
    },
    count: () => n,
    last: undefined,
  };
  p[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, headers: string[], method: number, url: string) => {
    h.last = { headers, method, url };
    return 0;
  };
  p[HTTPParser.kOnBody] = () => {};
  p[HTTPParser.kOnMessageComplete] = () => {
    n++;
  };
  return h;
}

/** ns per request of `iterations` executes of `buf` holding `perBuf` requests. */
function time(make: () => Harness, buf: Buffer, perBuf: number, iterations: number): number {
  const h = make();
  for (let i = 0; i < 20_000; i++) h.execute(buf); // warm-up
  const samples: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const before = h.count();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) h.execute(buf);
    const ns = Number(process.hrtime.bigint() - t0);
    const done = h.count() - before;
    if (done !== iterations * perBuf) throw new Error(`expected ${iterations * perBuf} requests, parsed ${done}`);
    samples.push(ns / done);
  }
  return median(samples);
}

export async function main(): Promise<void> {
  const iterations = Number(process.argv[2] ?? 1_000_000);
  const pipelined = Buffer.concat(Array.from({ length: 16 }, () => GET));
  const cases = [
    { name: 'get', buf: GET, perBuf: 1, iterations },
    { name: 'pipelined16', buf: pipelined, perBuf: 16, iterations: Math.ceil(iterations / 16) },
    { name: 'chunkedPost', buf: POST, perBuf: 1, iterations: Math.ceil(iterations / 4) },
  ];
  const results: Record<string, Record<string, number> | { skipped: string }> = { portico: {}, llhttp: {} };
  const ours = results.portico as Record<string, number>;
  const theirs = llhttp() ? (results.llhttp as Record<string, number>) : undefined;
  if (!theirs) results.llhttp = { skipped: 'node:_http_common HTTPParser not reachable' };
  say(`request head: ${GET.length} bytes; chunked POST: ${POST.length} bytes; ${RUNS} runs, median`);
  for (const c of cases) {
    const a = time(portico, c.buf, c.perBuf, c.iterations);
    ours[`${c.name}NsPerReq`] = round(a, 1);
    let line = `${c.name.padEnd(12)} portico ${a.toFixed(0).padStart(5)} ns/req`;
    if (theirs) {
      const b = time(llhttp as () => Harness, c.buf, c.perBuf, c.iterations);
      theirs[`${c.name}NsPerReq`] = round(b, 1);
      line += `   llhttp ${b.toFixed(0).padStart(5)} ns/req   portico/llhttp speed ${(b / a).toFixed(2)}×`;
    }
    say(line);
  }
  report({
    bench: 'l7-parser',
    runs: RUNS,
    results,
    ratios: Object.fromEntries(
      cases.map((c) => [`${c.name}SpeedVsLlhttp`, theirs ? ratio(theirs[`${c.name}NsPerReq`], ours[`${c.name}NsPerReq`]) : null]),
    ),
  });
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
