/**
 * 20,000 random-garbage and mutated inputs straight through the parser, requests and responses: no
 * exception escapes (errors are reported as ParseError in `error`, never thrown), every execute()
 * returns in bounded time, and each input gives the same transcript whole, byte by byte and in random
 * splits. Seeded: the seed is printed; PORTICO_SEED=<seed> reproduces a run.
 */
import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import { Kind } from '../../../src/l7/http/parser.js';
import { ParseErrors } from '../../../src/l7/http/errors.js';
import { garbage, generate } from './gen.js';
import { comparable, cutsBytes, cutsRandom, feed, Rng, seedFromEnv } from './helpers.js';

const INPUTS = 20_000;
const seed = seedFromEnv();
t.comment(`seed ${seed} (PORTICO_SEED=${seed} to reproduce)`);

/** A response-ish input: a status line (valid or not) in front of generated or garbage bytes. */
function response(rng: Rng): Buffer {
  const lines = [
    'HTTP/1.1 200 OK\r\n',
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n',
    'HTTP/1.0 204 No Content\r\n',
    'HTTP/1.1 101 Switching\r\n',
    'HTTP/1.1 304 \r\n',
    'HTTP/1.1 200\r\n',
    'HTTP/1.1 999 X\r\n',
    'HTTP/2.0 200 OK\r\n',
    '',
  ];
  const fields = [
    'Content-Length: 5\r\n',
    'Transfer-Encoding: chunked\r\n',
    'Transfer-Encoding: gzip\r\n',
    'Connection: close\r\n',
    'X: y\r\n',
    '',
  ];
  const bodies = [
    '\r\nhello',
    '\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n',
    '\r\n',
    '\r\n5;e="q"\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
  ];
  let s = rng.pick(lines);
  for (let i = rng.int(3); i > 0; i--) s += rng.pick(fields);
  s += rng.pick(bodies);
  const b = Buffer.from(s, 'latin1');
  return rng.chance(0.3) ? Buffer.concat([b, garbage(rng)]) : rng.chance(0.3) ? b.subarray(0, rng.int(b.length + 1)) : b;
}

t.test(`${INPUTS} random and mutated inputs: no exception, no hang, identical results in any split`, async (t) => {
  const rng = new Rng(seed);
  const codes = new Map<string, number>();
  let failures = 0;
  let slowest = 0;
  const t0 = Date.now();
  for (let i = 0; i < INPUTS; i++) {
    const kind = i % 4 === 3 ? Kind.Response : Kind.Request;
    const input = kind === Kind.Response ? response(rng) : i % 3 === 0 ? garbage(rng) : generate(rng).input;
    const started = process.hrtime.bigint();
    try {
      const whole = feed(kind, input, []);
      const bytes = feed(kind, input, cutsBytes(input.length));
      const random = feed(kind, input, cutsRandom(input.length, rng));
      const code = whole.error ?? 'accepted';
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (whole.error && whole.status !== ParseErrors[whole.error].status) t.fail(`input ${i}: status ${whole.status} for ${whole.error}`);
      const w = comparable(whole);
      if (!isDeepStrictEqual(w, comparable(bytes)) || !isDeepStrictEqual(w, comparable(random))) {
        failures++;
        t.fail(`input ${i} (seed ${seed}) parses differently when split`, {
          input: input.toString('latin1'),
          whole: w,
          bytes: comparable(bytes),
          random: comparable(random),
        });
      }
    } catch (err) {
      failures++;
      t.fail(`input ${i} (seed ${seed}) threw`, { input: input.toString('latin1'), err: String(err) });
    }
    slowest = Math.max(slowest, Number(process.hrtime.bigint() - started) / 1e6);
    if (failures > 10) break;
  }
  t.equal(failures, 0, 'no exception, no split-dependent result');
  // (a hang is the file's timeout; times are reported, not judged)
  t.comment(
    `${INPUTS} inputs in ${Date.now() - t0} ms, the slowest (3 feeds) ${slowest.toFixed(1)} ms; verdicts: ${[...codes.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
});
