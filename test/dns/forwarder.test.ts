/**
 * The forwarder against a real, test-started upstream (test/dns/upstream.ts) over loopback: answers,
 * the cache (hits, TTL aging, expiry, negative caching per RFC 2308), coalescing, id/question
 * mismatches ignored, timeouts and failover, TCP fallback on TC, per-zone upstreams, the recursion ACL.
 */
import t from 'tap';
import { decode, header, query, questionName, startPlane, T, tcp, udp, UdpClient } from './helpers.js';
import { waitFor } from '../helpers/wait.js';
import { FakeUpstream, type Behaviour } from './upstream.js';

async function upstream(
  t: { teardown(fn: () => unknown): void },
  behave: (name: string, type: number, transport: 'udp' | 'tcp') => Behaviour,
): Promise<FakeUpstream> {
  const u = await new FakeUpstream().start();
  u.behave = behave;
  t.teardown(() => u.stop());
  return u;
}

const A = (address: string, ttl = 300) => ({ type: T.A, address, ttl });
const SOA = (minimum: number, ttl = 300) => ({
  name: 'example.test',
  type: T.SOA,
  ttl,
  primary: 'ns.example.test',
  admin: 'admin.example.test',
  serial: 1,
  refresh: 60,
  retry: 60,
  expiration: 600,
  minimum,
});

t.test('forwards, caches, echoes id and case, strips the upstream OPT and adds ours', async (t) => {
  const up = await upstream(t, (name) =>
    name.toLowerCase() === 'www.example.test' ? { answers: [A('192.0.2.1')] } : { rcode: 3, authorities: [SOA(60)] },
  );
  const { port, registry } = await startPlane(t, [], { upstreams: [up.address] });
  const first = await udp(port, query({ name: 'www.example.test', id: 1 }));
  const h = header(first);
  t.match(h, { id: 1, qr: true, aa: false, ra: true, rcode: 0, an: 1, ar: 1 });
  t.equal(decode(first).answers[0]?.address, '192.0.2.1');
  t.equal(decode(first).additionals.filter((r) => r.type === T.OPT).length, 1, 'exactly one OPT');
  t.equal(up.count(), 1);
  t.ok(up.seen[0]?.edns, 'we ask upstream with EDNS');

  const second = await udp(port, query({ name: 'WWW.Example.TEST', id: 2, edns: false }));
  t.equal(up.count(), 1, 'second answer from the cache');
  t.equal(header(second).id, 2);
  t.equal(questionName(second), 'WWW.Example.TEST', 'case of this query, not the cached one');
  t.equal(header(second).ar, 0, 'no OPT for a client without EDNS');
  t.equal(decode(second).answers[0]?.address, '192.0.2.1');
  const viaTcp = await tcp(port, query({ name: 'www.example.test', id: 3 }));
  t.equal(decode(viaTcp).answers[0]?.address, '192.0.2.1', 'cache serves TCP too');
  t.equal(up.count(), 1);
  const text = await registry.metrics();
  t.match(text, /portico_dns_cache_hits_total 2/);
  t.match(text, /portico_dns_upstream_duration_seconds_count\{upstream="127\.0\.0\.1:\d+",result="ok"\} 1/);
});

t.test('TTLs age in the cache, entries expire; negative answers are cached for the SOA minimum', async (t) => {
  const up = await upstream(t, (name) => {
    switch (name.toLowerCase()) {
      case 'aging.example.test':
        return { answers: [A('192.0.2.2', 300)] };
      case 'short.example.test':
        return { answers: [A('192.0.2.3', 1)] };
      case 'nx.example.test':
        return { rcode: 3, authorities: [SOA(1, 300)] };
      case 'nodata.example.test':
        return { rcode: 0, authorities: [SOA(1, 300)] };
      case 'nosoa.example.test':
        return { rcode: 3 };
      default:
        return { rcode: 3 };
    }
  });
  // The cache ages by the plane's clock: this test moves it instead of waiting.
  let clock = Date.now();
  const { port } = await startPlane(t, [], { upstreams: [up.address] }, { now: () => clock });
  const names = ['aging', 'short', 'nx', 'nodata', 'nosoa'].map((n) => `${n}.example.test`);
  for (const n of names) await udp(port, query({ name: n }));
  for (const n of names) await udp(port, query({ name: n }));
  t.same(
    names.map((n) => up.count(n)),
    [1, 1, 1, 1, 2],
    'cached: positive, short, NXDOMAIN and NODATA with SOA; not NXDOMAIN without SOA',
  );
  const nx = decode(await udp(port, query({ name: 'nx.example.test' })));
  t.equal(header(await udp(port, query({ name: 'nx.example.test' }))).rcode, 3, 'cached NXDOMAIN keeps its rcode');
  t.equal(nx.authorities[0]?.type, T.SOA, 'and its SOA');
  clock += 1150;
  const aged = decode(await udp(port, query({ name: 'aging.example.test' })));
  const ttl = aged.answers[0]?.ttl ?? 0;
  t.ok(ttl < 300 && ttl >= 295, `TTL aged by the time spent in the cache (${ttl})`);
  for (const n of names.slice(1, 4)) await udp(port, query({ name: n }));
  t.same(
    names.slice(1, 4).map((n) => up.count(n)),
    [2, 2, 2],
    'TTL 1 / negative TTL min(300, 1) expired: asked again',
  );
  t.equal(up.count('aging.example.test'), 1);
});

t.test('identical queries in flight are coalesced; each waiter gets its own id and case', async (t) => {
  // The upstream answers only once the plane has read all 30: every one of them meets the query in flight.
  let release = () => {};
  const held = new Promise<void>((r) => (release = r));
  const up = await upstream(t, () => ({ answers: [A('192.0.2.9')], hold: held }));
  const { port, plane } = await startPlane(t, [], { upstreams: [up.address] });
  const c = await new UdpClient().open();
  t.teardown(() => c.close());
  const spellings = ['slow.example.test', 'SLOW.example.test', 'Slow.Example.Test'];
  const asking = Promise.all(Array.from({ length: 30 }, (_, i) => c.ask(port, query({ name: spellings[i % 3]!, id: 1000 + i }), 5000)));
  await waitFor(() => plane.counters().udpReceived >= 30, { timeoutMs: 5000, what: 'the plane to read the 30 queries' });
  release();
  const answers = await asking;
  t.equal(up.count(), 1, 'one upstream query for 30 clients');
  answers.forEach((a, i) => {
    t.equal(a.readUInt16BE(0), 1000 + i);
    t.equal(questionName(a), spellings[i % 3]);
    t.equal(decode(a).answers[0]?.address, '192.0.2.9');
  });
});

t.test('answers with a wrong id, a wrong question, or garbage are ignored', async (t) => {
  for (const decoy of ['wrong-id', 'wrong-question', 'garbage'] as const) {
    const up = await upstream(t, () => ({ answers: [A('192.0.2.10')], decoy }));
    const { port, registry } = await startPlane(t, [], { upstreams: [up.address] });
    const p = decode(await udp(port, query({ name: 'decoy.example.test' })));
    t.same(
      p.answers.map((r) => r.address),
      ['192.0.2.10'],
      `${decoy}: the real answer, not the decoy`,
    );
    t.match(await registry.metrics(), /portico_dns_upstream_mismatched_total\{upstream="[^"]+"\} 1/, `${decoy} counted`);
  }
});

t.test('timeout, failover to the next upstream, and the dead one tried last afterwards', async (t) => {
  const dead = await upstream(t, () => ({ drop: true }));
  const alive = await upstream(t, () => ({ answers: [A('192.0.2.20')] }));
  const { port, registry } = await startPlane(t, [], { upstreams: [dead.address, alive.address] }, { upstreamTimeoutMs: 150 });
  const p = decode(await udp(port, query({ name: 'one.example.test' })));
  t.same(
    p.answers.map((r) => r.address),
    ['192.0.2.20'],
  );
  t.equal(dead.count('one.example.test'), 1);
  t.match(
    await registry.metrics(),
    new RegExp(`portico_dns_upstream_duration_seconds_count\\{upstream="${dead.address}",result="timeout"\\} 1`),
    "the first upstream's timeout fired before the second was asked",
  );
  const two = decode(await udp(port, query({ name: 'two.example.test' })));
  t.same(
    two.answers.map((r) => r.address),
    ['192.0.2.20'],
  );
  t.equal(dead.count('two.example.test'), 0, 'the timed-out upstream is tried last now: never reached');
  t.match(await registry.metrics(), /portico_dns_upstream_duration_seconds_count\{upstream="[^"]+",result="timeout"\} 1/);
});

t.test('SERVFAIL/REFUSED upstream: next one; all failing: SERVFAIL to the client, not cached', async (t) => {
  const refusing = await upstream(t, () => ({ rcode: 5 }));
  const good = await upstream(t, () => ({ answers: [A('192.0.2.30')] }));
  const s1 = await startPlane(t, [], { upstreams: [refusing.address, good.address] });
  t.same(
    decode(await udp(s1.port, query({ name: 'x.example.test' }))).answers.map((r) => r.address),
    ['192.0.2.30'],
  );

  const dead = await upstream(t, () => ({ drop: true }));
  const failing = await upstream(t, () => ({ rcode: 2 }));
  const s2 = await startPlane(t, [], { upstreams: [dead.address, failing.address] }, { upstreamTimeoutMs: 80 });
  const h = header(await udp(s2.port, query({ name: 'y.example.test', id: 77 })));
  t.match(h, { id: 77, rcode: 2, qd: 1 });
  await udp(s2.port, query({ name: 'y.example.test' }));
  t.equal(failing.count('y.example.test'), 2, 'a failure is not cached');
});

t.test('a truncated upstream answer is fetched again over TCP; a large answer is TC to a UDP client and whole over TCP', async (t) => {
  const many = Array.from({ length: 60 }, (_, i) => A(`198.51.100.${i + 1}`));
  const up = await upstream(t, () => ({ answers: many, truncateUdp: true }));
  const { port } = await startPlane(t, [], { upstreams: [up.address] });
  const small = await udp(port, query({ name: 'big.example.test', edns: false }));
  t.same(
    up.seen.map((s) => s.transport),
    ['udp', 'tcp'],
    'TC over UDP, then TCP',
  );
  t.ok(header(small).tc, 'too big for 512: TC to the client');
  t.equal(header(small).qd, 1);
  const full = decode(await tcp(port, query({ name: 'big.example.test' })));
  t.equal(full.answers.length, 60, 'the whole answer over TCP, from the cache');
  t.equal(up.count(), 2);
  const edns = decode(await udp(port, query({ name: 'big.example.test', edns: { udpSize: 1232 } })));
  t.equal(edns.answers.length, 60, '60 A records fit 1232 bytes');
});

t.test('random id and source port per upstream query', async (t) => {
  const up = await upstream(t, () => ({ answers: [A('192.0.2.40')] }));
  const { port } = await startPlane(t, [], { upstreams: [up.address] });
  for (let i = 0; i < 8; i++) await udp(port, query({ name: `r${i}.example.test`, id: 5 }));
  t.equal(new Set(up.seen.map((s) => s.port)).size, 8, 'eight source ports');
  t.ok(new Set(up.seen.map((s) => s.id)).size >= 7, "ids differ (and are not the client's)");
  t.ok(up.seen.every((s) => s.id !== 5) || new Set(up.seen.map((s) => s.id)).size === 8);
});

t.test('per-zone upstreams', async (t) => {
  const global = await upstream(t, () => ({ answers: [A('192.0.2.50')] }));
  const corp = await upstream(t, () => ({ answers: [A('10.50.0.1')] }));
  const { port } = await startPlane(t, [], { upstreams: [global.address] }, { zoneUpstreams: { 'corp.test': [corp.address] } });
  t.same(
    decode(await udp(port, query({ name: 'db.corp.test' }))).answers.map((r) => r.address),
    ['10.50.0.1'],
  );
  t.same(
    decode(await udp(port, query({ name: 'www.example.test' }))).answers.map((r) => r.address),
    ['192.0.2.50'],
  );
  t.equal(corp.count(), 1);
  t.equal(global.count(), 1);
});

t.test('clients outside allowRecursionFrom are REFUSED; our zones still answer them', async (t) => {
  const up = await upstream(t, () => ({ answers: [A('192.0.2.60')] }));
  const { port } = await startPlane(t, [], { upstreams: [up.address], allowRecursionFrom: ['10.0.0.0/8'] });
  const h = header(await udp(port, query({ name: 'www.example.test' })));
  t.equal(h.rcode, 5);
  t.equal(up.count(), 0, 'nothing sent upstream');
  t.equal(header(await udp(port, query({ name: 'leader.mesos' }))).rcode, 0);
});

t.test('the cache is bounded: entries and bytes, oldest out first; expired entries are misses', async (t) => {
  const { AnswerCache } = await import('../../src/dns/cache.js');
  const entry = (bytes: number, expiresAt = Infinity) => ({
    buf: Buffer.alloc(bytes),
    hasOpt: false,
    ttlOffsets: new Int32Array(0),
    ttls: new Uint32Array(0),
    storedAt: 0,
    expiresAt,
    rcode: 0,
  });
  const c = new AnswerCache({ maxEntries: 3, maxBytes: 1000, maxTtlS: 3600, maxNegativeTtlS: 900, maxEntryBytes: 16384 });
  for (const n of ['a', 'b', 'c', 'd']) c.set(n, T.A, entry(100));
  t.equal(c.size, 3);
  t.equal(c.get('a', T.A, 0), undefined, 'the oldest went first');
  t.ok(c.get('d', T.A, 0));
  t.equal(c.get('d', T.AAAA, 0), undefined, 'per type');
  c.set('big', T.A, entry(900));
  t.ok(c.sizeBytes <= 1000, `bytes bounded (${c.sizeBytes})`);
  t.ok(c.get('big', T.A, 0));
  c.set('old', T.TXT, entry(10, 50));
  t.equal(c.get('old', T.TXT, 100), undefined, 'expired: a miss, and dropped');
  t.equal(c.get('old', T.TXT, 0), undefined);
});

t.test('stop() lets forwarded queries in flight answer, then closes', async (t) => {
  let release = () => {};
  const held = new Promise<void>((r) => (release = r));
  const up = await upstream(t, () => ({ answers: [A('192.0.2.70')], hold: held }));
  const { port, plane } = await startPlane(t, [], { upstreams: [up.address] });
  const c = await new UdpClient().open();
  t.teardown(() => c.close());
  const pending = c.ask(port, query({ name: 'late.example.test', id: 99 }), 3000);
  await up.arrived.until((q) => q.name === 'late.example.test', 2000, 'the query at the upstream');
  const stopped = plane.stop(2000);
  release();
  const answer = await pending;
  t.same(
    decode(answer).answers.map((r) => r.address),
    ['192.0.2.70'],
    'answered during the drain',
  );
  await stopped;
  t.equal(plane.status().state, 'stopped');
});
