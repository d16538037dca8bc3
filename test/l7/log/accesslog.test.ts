/**
 * The access-line writer (src/l7/accesslog.ts) on its own: every line it writes is JSON that reads back
 * as the record it was given (escapes, UTF-8, numbers), through both of its destinations: a plain stream
 * (one write per line) and a sonic-boom file destination (lines gathered into chunks).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import pino from 'pino';
import { AccessLog, newAccessRecord, type AccessRecord } from '../../../src/l7/accesslog.js';

function record(i: number): AccessRecord {
  const r = newAccessRecord();
  const odd = i % 2 === 1;
  r.entrypoint = odd ? 'web' : 'wëb-ü✓';
  r.route = `route-${i % 7}${i % 5 === 0 ? '"quoted"\\' : ''}`;
  r.service = i % 3 === 0 ? undefined : `svc-${i % 3}`;
  r.endpoint = i % 4 === 0 ? undefined : `10.0.0.${i % 250}:80`;
  r.client = i % 2 ? '127.0.0.1' : '::1';
  r.method = ['GET', 'POST', 'HEAD'][i % 3] as string;
  r.host = i % 6 === 0 ? undefined : `h${i}.example.test`;
  // The engine's strings are latin1 (bytes as chars): controls, DEL, C1, quotes, backslashes, é.
  r.path = ['/', '/a"b\\c', '/\x01\x1f\x7f\x85\xa0\xe9\xff', '/x\u2028y\u2029', `/${'p'.repeat(i % 300)}`][i % 5] as string;
  r.status = [200, 404, 502, 0, 999][i % 5] as number;
  r.bytesIn = i * 977;
  r.bytesOut = i % 2 ? 0 : 2 ** 31 + i; // beyond 32 bits too
  r.msTenths = [0, 1, 9, 10, 15, 123456, 2 ** 31][i % 7] as number;
  r.upstreamMsTenths = i % 2 ? undefined : i * 3;
  r.retries = i % 4;
  r.outcome = i % 3 ? 'ok' : 'connect-failed';
  r.requestId = i % 5 === 4 ? undefined : i % 5 === 1 ? 'id"\\\x7f' : `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
  return r;
}

function expected(r: AccessRecord): Record<string, unknown> {
  const e: Record<string, unknown> = {
    entrypoint: r.entrypoint,
    route: r.route,
    client: r.client,
    method: r.method,
    path: r.path,
    status: r.status,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
    ms: r.msTenths / 10,
    retries: r.retries,
    outcome: r.outcome,
  };
  if (r.service !== undefined) e.service = r.service;
  if (r.endpoint !== undefined) e.endpoint = r.endpoint;
  if (r.host !== undefined) e.host = r.host;
  if (r.upstreamMsTenths !== undefined) e.upstreamMs = r.upstreamMsTenths / 10;
  if (r.requestId !== undefined) e.requestId = r.requestId;
  return e;
}

function check(t: Test, lines: string[], n: number): void {
  t.equal(lines.length, n, 'one line per record');
  let bad = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = JSON.parse(lines[i] as string) as Record<string, unknown>;
    const want = expected(record(i));
    const got: Record<string, unknown> = {};
    for (const k of Object.keys(want)) got[k] = line[k];
    if (
      JSON.stringify(got) !== JSON.stringify(want) ||
      line.level !== 30 ||
      line.msg !== 'request' ||
      line.component !== 'access' ||
      typeof line.time !== 'number'
    ) {
      if (bad++ === 0) t.same({ ...line, time: 0 }, { ...want, level: 30, msg: 'request', component: 'access', time: 0 }, `line ${i}`);
    }
  }
  t.equal(bad, 0, 'every line reads back as its record');
}

t.test('one write per line to a plain stream', async (t) => {
  const lines: string[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write: (s: string) => {
        lines.push(s);
      },
    },
  ).child({ component: 'access' });
  const log = new AccessLog(logger);
  for (let i = 0; i < 400; i++) log.write(record(i));
  t.ok(
    lines.every((l) => l.endsWith('}\n') && l.indexOf('\n') === l.length - 1),
    'each write is one whole line',
  );
  check(
    t,
    lines.map((l) => l.trimEnd()),
    400,
  );
});

for (const sync of [true, false]) {
  t.test(
    `gathered into chunks on a ${sync ? 'synchronous' : 'asynchronous'} sonic-boom file destination, the rest written by flush()`,
    async (t) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'portico-access-'));
      t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
      const file = path.join(dir, 'access.log');
      const dest = pino.destination({ dest: file, sync });
      if (!sync) await new Promise((resolve) => dest.once('ready', resolve));
      const root = pino({ level: 'info' }, dest);
      const logger = root.child({ component: 'access' });
      const log = new AccessLog(logger);
      const n = 3000; // several 64 KiB chunks
      for (let i = 0; i < n; i++) {
        log.write(record(i));
        // The logger's own lines, between: each stays whole, and after the access lines written before it.
        if (i === 1500) {
          log.flush();
          root.warn('between');
        }
      }
      // A path longer than the whole buffer: it grows rather than losing or cutting the line.
      const huge = newAccessRecord();
      Object.assign(huge, record(0), { path: `/${'\u0001'.repeat(100_000)}` });
      log.write(huge);
      log.flush();
      dest.flushSync();
      const all = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
      const at = all.findIndex((l) => l.includes('"msg":"between"'));
      t.equal(at, 1501, "the logger's own line sits where it was written");
      const lines = all.filter((_, i) => i !== at);
      const last = JSON.parse(lines.pop() as string) as Record<string, unknown>;
      t.equal(last.path, huge.path, 'a line longer than the buffer is written whole');
      check(t, lines, n);
    },
  );
}

t.test('nothing is formatted by hand when the logger is not pino-shaped', async (t) => {
  const got: Array<Record<string, unknown>> = [];
  const fake = {
    info: (o: Record<string, unknown>, msg: string) => got.push({ ...o, msg }),
    isLevelEnabled: () => true,
    levels: { values: { info: 30 } },
  };
  const log = new AccessLog(fake as never);
  log.write(record(2));
  t.equal(got.length, 1);
  t.equal(got[0]?.ms, record(2).msTenths / 10, 'ms from tenths');
  t.equal(got[0]?.upstreamMs, 0.6);
});
