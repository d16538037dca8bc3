/**
 * Each request filter on its own (src/l7/filters/*): the heads come from the real request parser, the
 * settings are the real compiled forms (AllowList, BasicAuth with its hashing budget on an injected
 * clock), and the exchange is a recorder of the answer a filter gives — what a filter may touch of an
 * exchange is the FilterExchange contract, nothing more. The chain as a whole, on real sockets, is
 * chain.test.ts.
 */
import t from 'tap';
import { allowList, AllowList, clientAllowed } from '../../../src/l7/filters/allow-list.js';
import { basicAuth, BasicAuth, HashBudget, singleAuthorization } from '../../../src/l7/filters/basic-auth.js';
import { bodyLimit } from '../../../src/l7/filters/body-limit.js';
import { REQUEST_FILTERS, NO_FILTERS, requestFilters } from '../../../src/l7/filters/index.js';
import { redirectToHttps } from '../../../src/l7/filters/redirect-to-https.js';
import { FilterStatus, type FilterConn, type FilterExchange, type RequestFilter } from '../../../src/l7/filters/types.js';
import { HttpParser, Kind, type MessageHead } from '../../../src/l7/http/parser.js';
import { RequestMetrics } from '../../../src/l7/metrics.js';
import type { ExchangeOutcome } from '../../../src/l7/options.js';
import type { RouteRuntime } from '../../../src/l7/proxy.js';
import type { Route } from '../../../src/model/types.js';
import { prom } from '../../../src/telemetry/metrics.js';

/** The head the real parser makes of `raw` (a request head, CRLF line ends, ending in an empty line). */
function parseHead(raw: string): MessageHead {
  const p = new HttpParser(Kind.Request);
  let head: MessageHead | undefined;
  p.onHead = (h) => {
    head = h;
  };
  p.execute(Buffer.from(raw, 'latin1'));
  if (p.error) throw new Error(`the parser refused ${JSON.stringify(raw)}: ${p.error.message}`);
  if (!head) throw new Error(`no head in ${JSON.stringify(raw)}`);
  return head;
}

const get = (target: string, fields = '', host = 'a.test') => parseHead(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${fields}\r\n`);

interface Answer {
  status: number;
  outcome: ExchangeOutcome;
  extra: string | undefined;
}

/** An exchange as a filter sees it, recording the local answers given. */
class RecordingExchange implements FilterExchange {
  readonly answers: Answer[] = [];
  readonly conn: FilterConn;
  constructor(
    readonly pathAndQuery = '/',
    conn: { clientIp?: string; trusted?: boolean; tls?: boolean; trustedProxy?: (ip: string) => boolean } = {},
  ) {
    const trustedProxy = conn.trustedProxy ?? (() => false);
    this.conn = {
      clientIp: conn.clientIp ?? '127.0.0.1',
      trusted: conn.trusted ?? false,
      ep: { tls: conn.tls ?? false, trusted: trustedProxy },
      allowMemo: undefined,
      allowMemoOk: false,
    };
  }
  respondLocal(status: number, outcome: ExchangeOutcome, extraHeaders?: string): void {
    this.answers.push({ status, outcome, extra: extraHeaders });
  }
}

const metrics = new RequestMetrics(new prom.Registry());

/** A compiled route runtime with `over` set (no filter settings unless given). */
function runtime(over: Partial<RouteRuntime> = {}): RouteRuntime {
  return {
    stats: metrics.for('web', 'file/0'),
    connectMs: 1000,
    responseHeaderMs: 1000,
    idleMs: 1000,
    maxBodyBytes: 0,
    hsts: undefined,
    allow: undefined,
    auth: undefined,
    filters: NO_FILTERS,
    ...over,
  };
}

function route(over: Partial<Route> = {}): Route {
  return {
    id: 'file/0',
    provider: 'file',
    entrypoint: 'web',
    host: 'a.test',
    path: '/',
    pathMatch: 'prefix',
    service: 'web@file',
    ...over,
  };
}

/** Run one filter the way the exchange does and return its status and the answers recorded. */
function run(f: RequestFilter, ex: RecordingExchange, head: MessageHead, rt: RouteRuntime): FilterStatus {
  const before = ex.answers.length;
  const status = f.onRequest(ex, head, rt);
  // The contract: Answered exactly when the filter answered, once.
  if (status === FilterStatus.Answered && ex.answers.length !== before + 1) throw new Error(`${f.name}: Answered without one answer`);
  if (status === FilterStatus.Continue && ex.answers.length !== before) throw new Error(`${f.name}: answered yet Continue`);
  return status;
}

t.test('the list: the order is the one the file declares; a route takes only what it needs', async (t) => {
  t.same(
    REQUEST_FILTERS.map((f) => f.name),
    ['redirect-to-https', 'allow-list', 'basic-auth', 'body-limit'],
  );
  t.equal(requestFilters(route(), runtime()), NO_FILTERS, 'a route that needs none shares the one empty list');
  t.equal(NO_FILTERS.length, 0);
  const auth = new BasicAuth({ realm: 'r', users: [{ user: 'u', hash: '{PLAIN}pw' }] }, new HashBudget(10));
  const all = requestFilters(route({ redirectToHttps: true }), runtime({ allow: new AllowList(['10.0.0.0/8']), auth, maxBodyBytes: 10 }));
  t.same(
    all.map((f) => f.name),
    ['redirect-to-https', 'allow-list', 'basic-auth', 'body-limit'],
  );
  t.same(
    requestFilters(route(), runtime({ maxBodyBytes: 10, auth })).map((f) => f.name),
    ['basic-auth', 'body-limit'],
    'in list order, whatever the order of the settings',
  );
  t.same(
    requestFilters(route({ redirectToHttps: false }), runtime({ maxBodyBytes: 0 })).map((f) => f.name),
    [],
    'redirectToHttps false and a zero body limit take nothing',
  );
});

t.test('redirect-to-https: 308 to the same host (port dropped), path and query; TLS goes on', async (t) => {
  t.ok(redirectToHttps.appliesTo(route({ redirectToHttps: true }), runtime()));
  t.notOk(redirectToHttps.appliesTo(route(), runtime()));
  const rt = runtime();
  const plain = new RecordingExchange('/some/page?x=1');
  t.equal(run(redirectToHttps, plain, get('/some/page?x=1', '', 'r.test:8080'), rt), FilterStatus.Answered);
  t.same(plain.answers, [{ status: 308, outcome: 'redirect-https', extra: 'location: https://r.test/some/page?x=1\r\n' }]);
  const v6 = new RecordingExchange('/p');
  run(redirectToHttps, v6, get('/p', '', '[::1]:8080'), rt);
  t.equal(v6.answers[0]?.extra, 'location: https://[::1]/p\r\n', 'an IPv6 literal keeps its brackets');
  const noPort = new RecordingExchange('/');
  run(redirectToHttps, noPort, get('/', '', 'r.test'), rt);
  t.equal(noPort.answers[0]?.extra, 'location: https://r.test/\r\n');
  const secure = new RecordingExchange('/p', { tls: true });
  t.equal(run(redirectToHttps, secure, get('/p'), rt), FilterStatus.Continue, 'over TLS the request goes on');
  t.same(secure.answers, []);
});

t.test("allow-list: the peer, remembered per connection and list; a trusted proxy's X-Forwarded-For", async (t) => {
  const inside = new AllowList(['10.0.0.0/8']);
  const other = new AllowList(['192.0.2.0/24']);
  t.ok(allowList.appliesTo(route(), runtime({ allow: inside })));
  t.notOk(allowList.appliesTo(route(), runtime()));
  const rt = runtime({ allow: inside });

  const ex = new RecordingExchange('/', { clientIp: '10.1.2.3' });
  t.equal(run(allowList, ex, get('/'), rt), FilterStatus.Continue, 'a peer inside the list goes on');
  t.equal(ex.conn.allowMemo, inside, 'the verdict is remembered on the connection');
  t.equal(ex.conn.allowMemoOk, true);
  t.equal(
    run(allowList, ex, get('/', 'X-Forwarded-For: 192.0.2.1\r\n'), rt),
    FilterStatus.Continue,
    'an untrusted peer cannot claim an address',
  );
  t.equal(
    run(allowList, ex, get('/'), runtime({ allow: other })),
    FilterStatus.Answered,
    'another list on the same connection is judged anew',
  );
  t.same(ex.answers, [{ status: 403, outcome: 'forbidden', extra: undefined }]);
  t.equal(ex.conn.allowMemo, other);
  t.equal(ex.conn.allowMemoOk, false);

  const outside = new RecordingExchange('/', { clientIp: '127.0.0.1' });
  t.equal(run(allowList, outside, get('/'), rt), FilterStatus.Answered);
  t.equal(outside.answers[0]?.status, 403);

  // Behind a trusted proxy (127.0.0.0/8 here): the rightmost X-Forwarded-For entry that is not one.
  const proxy = (ip: string) => ip.startsWith('127.');
  const behind = () => new RecordingExchange('/', { clientIp: '127.0.0.1', trusted: true, trustedProxy: proxy });
  t.equal(run(allowList, behind(), get('/', 'X-Forwarded-For: 10.9.9.9\r\n'), rt), FilterStatus.Continue);
  t.equal(run(allowList, behind(), get('/', 'X-Forwarded-For: 10.9.9.9, 192.0.2.1\r\n'), rt), FilterStatus.Answered);
  t.equal(
    run(allowList, behind(), get('/', 'X-Forwarded-For: 192.0.2.1, 10.9.9.9, 127.0.0.5\r\n'), rt),
    FilterStatus.Continue,
    'trusted hops on the right are skipped',
  );
  t.equal(
    run(allowList, behind(), get('/', 'X-Forwarded-For: 10.9.9.9\r\nx-forwarded-for: 192.0.2.1\r\n'), rt),
    FilterStatus.Answered,
    'repeated fields (any case) are one list',
  );
  t.equal(run(allowList, behind(), get('/'), rt), FilterStatus.Answered, 'no X-Forwarded-For: the peer is judged');
  const b = behind();
  run(allowList, b, get('/', 'X-Forwarded-For: 10.9.9.9\r\n'), rt);
  t.equal(b.conn.allowMemo, undefined, "a trusted peer's verdict depends on each request: nothing is remembered");
  t.equal(clientAllowed(b.conn, inside, get('/', 'X-Forwarded-For: 10.0.0.1\r\n')), true, 'clientAllowed gives the verdict alone');
});

t.test('basic-auth: 401 with the challenge; ambiguous credentials; 429 past the hashing budget', async (t) => {
  let now = 5_000;
  const budget = new HashBudget(1, () => now);
  const auth = new BasicAuth({ realm: 'ops "team"', users: [{ user: 'u', hash: '{PLAIN}right' }] }, budget);
  t.ok(basicAuth.appliesTo(route(), runtime({ auth })));
  t.notOk(basicAuth.appliesTo(route(), runtime()));
  const rt = runtime({ auth });
  const basic = (user: string, pw: string) => `Authorization: Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}\r\n`;
  const challenge = 'www-authenticate: Basic realm="ops \\"team\\""\r\n';

  const none = new RecordingExchange();
  t.equal(run(basicAuth, none, get('/'), rt), FilterStatus.Answered);
  t.same(none.answers, [{ status: 401, outcome: 'unauthorized', extra: challenge }]);
  t.equal(auth.hashes, 0, 'no credentials cost no hashing');

  const ok = new RecordingExchange();
  t.equal(run(basicAuth, ok, get('/', basic('u', 'right')), rt), FilterStatus.Continue, 'the right password goes on');
  t.equal(auth.hashes, 1, 'and used the one hashing of this second');

  const guess = new RecordingExchange();
  t.equal(run(basicAuth, guess, get('/', basic('u', 'guess')), rt), FilterStatus.Answered);
  t.same(guess.answers, [{ status: 429, outcome: 'auth-throttled', extra: 'retry-after: 1\r\n' }], 'the budget is spent: 429');
  t.equal(auth.hashes, 1, 'a throttled guess is not hashed');
  t.equal(
    run(basicAuth, new RecordingExchange(), get('/', basic('u', 'right')), rt),
    FilterStatus.Continue,
    'known credentials need no budget',
  );

  now += 1_000; // the next second: a fresh budget
  const wrong = new RecordingExchange();
  t.equal(run(basicAuth, wrong, get('/', basic('u', 'guess')), rt), FilterStatus.Answered);
  t.same(wrong.answers, [{ status: 401, outcome: 'unauthorized', extra: challenge }], 'a hashed wrong password is 401');
  t.equal(auth.hashes, 2);

  const twice = new RecordingExchange();
  t.equal(run(basicAuth, twice, get('/', basic('u', 'right') + basic('u', 'right')), rt), FilterStatus.Answered);
  t.equal(twice.answers[0]?.status, 401, 'two Authorization fields are ambiguous: refused');
  t.equal(singleAuthorization(get('/', basic('u', 'right') + 'authorization: x\r\n')), undefined, 'whatever their case');
  t.equal(singleAuthorization(get('/', 'AUTHORIZATION: Basic eA==\r\n')), 'Basic eA==');
  t.equal(singleAuthorization(get('/')), undefined);
});

t.test('HashBudget: perSecond slow verifications per one-second window of its clock', async (t) => {
  let now = 0;
  const b = new HashBudget(2, () => now);
  t.same([b.take(), b.take(), b.take()], [true, true, false]);
  now = 999;
  t.equal(b.take(), false, 'the window lasts a second');
  now = 1_000;
  t.same([b.take(), b.take(), b.take()], [true, true, false], 'then it is full again');
  t.equal(new HashBudget(0, () => 0).take(), false, 'a budget of 0 allows no hashing');
});

t.test('body-limit: a declared length over the limit is 413; at the limit, or undeclared, goes on', async (t) => {
  t.ok(bodyLimit.appliesTo(route(), runtime({ maxBodyBytes: 1 })));
  t.notOk(bodyLimit.appliesTo(route(), runtime({ maxBodyBytes: 0 })), '0 is no limit: no filter');
  const rt = runtime({ maxBodyBytes: 1000 });
  const post = (fields: string) => parseHead(`POST /up HTTP/1.1\r\nHost: a.test\r\n${fields}\r\n`);
  const over = new RecordingExchange('/up');
  t.equal(run(bodyLimit, over, post('Content-Length: 1001\r\n'), rt), FilterStatus.Answered);
  t.same(over.answers, [{ status: 413, outcome: 'body-too-large', extra: undefined }]);
  t.equal(run(bodyLimit, new RecordingExchange('/up'), post('Content-Length: 1000\r\n'), rt), FilterStatus.Continue, 'at the limit');
  t.equal(
    run(bodyLimit, new RecordingExchange('/up'), post('Transfer-Encoding: chunked\r\n'), rt),
    FilterStatus.Continue,
    'chunked: counted as it streams, not here',
  );
  t.equal(run(bodyLimit, new RecordingExchange('/'), get('/'), rt), FilterStatus.Continue, 'no body');
});
