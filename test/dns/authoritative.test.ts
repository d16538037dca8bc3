/**
 * The authoritative side over real UDP and TCP sockets: every name form (Mesos-DNS, dcos-dns, VIPs,
 * our own domains), A/AAAA/SRV/PTR/SOA/NS, NXDOMAIN vs NODATA with the SOA, empty non-terminals,
 * health, case echo, EDNS, TC over UDP and the full answer over TCP, the protocol's error answers,
 * provider hold, and a zone swap under a stream of queries.
 */
import t from 'tap';
import { canonicalLabel } from '../../src/dns/index.js';
import { reverseName } from '../../src/dns/wire.js';
import type { RoutingTable } from '../../src/model/types.js';
import { endpoint, service, snapshot } from '../helpers/snapshot.js';
import { ioRoundTrip, once, waitFor, withTimeout, written } from '../helpers/wait.js';
import { answersOf, decode, header, query, questionName, startPlane, T, tcp, TcpClient, udp, UdpClient } from './helpers.js';
import { ServiceMap } from '../../src/model/service-map.js';

const web = service(
  [
    endpoint('10.0.0.1', 8080, { health: 'healthy', taskId: 'web.1' }),
    endpoint('10.0.0.2', 8081, { agentAddress: '192.168.0.2', network: 'dcos', taskId: 'web.2' }),
    endpoint('10.0.0.3', 8080, { health: 'unhealthy' }),
    endpoint('10.0.0.4', 8080, { health: 'draining' }),
  ],
  { name: 'web', vips: [{ name: 'web', port: 80, protocol: 'tcp' }] },
);
const v6 = service([endpoint('fd00::1', 9000, { agentAddress: 'fd00::100', health: 'healthy' })], { name: 'v6', framework: 'marathon' });
const db = service([endpoint('10.0.1.1', 5432, { task: 'DB_Primary' })], { name: 'db', framework: 'My.Framework' });
const fixture = snapshot('file', { services: { web, v6, db } });

const canon = (task: string, address: string, port: number, taskId?: string, svc = 'web@file') =>
  canonicalLabel(task, { address, port, weight: 1, health: 'healthy', labels: {}, ...(taskId ? { taskId } : {}) }, svc);
const C1 = canon('web', '10.0.0.1', 8080, 'web.1');
const C2 = canon('web', '10.0.0.2', 8081, 'web.2');

async function ask(port: number, name: string, type: number, extra: Parameters<typeof query>[0] extends infer Q ? Partial<Q> : never = {}) {
  const raw = await udp(port, query({ name, type, ...extra }));
  return { raw, h: header(raw), p: decode(raw) };
}

const addrs = (p: ReturnType<typeof decode>, type: number) =>
  answersOf(p, type)
    .map((r) => r.address)
    .sort();

t.test('every name form', async (t) => {
  const s = await startPlane(t, [fixture], { domains: ['corp.example'] });
  const { port } = s;

  // Mesos-DNS task names: served endpoints only (healthy + unknown), task IP vs agent IP.
  const cases: Array<[string, number, string[]]> = [
    ['web.marathon.mesos', T.A, ['10.0.0.1', '10.0.0.2']],
    ['web.marathon.slave.mesos', T.A, ['10.0.0.1', '192.168.0.2']],
    [`${C1}.marathon.mesos`, T.A, ['10.0.0.1']],
    [`${C2}.marathon.mesos`, T.A, ['10.0.0.2']],
    [`${C2}.marathon.slave.mesos`, T.A, ['192.168.0.2']],
    ['v6.marathon.mesos', T.AAAA, ['fd00::1']],
    ['v6.marathon.slave.mesos', T.AAAA, ['fd00::100']],
    ['db-primary.my.framework.mesos', T.A, ['10.0.1.1']],
    // Our own domain gets the same names.
    ['web.marathon.corp.example', T.A, ['10.0.0.1', '10.0.0.2']],
    // dcos-dns.
    ['web.marathon.agentip.dcos.thisdcos.directory', T.A, ['10.0.0.1', '192.168.0.2']],
    ['web.marathon.containerip.dcos.thisdcos.directory', T.A, ['10.0.0.1', '10.0.0.2']],
    ['web.marathon.autoip.dcos.thisdcos.directory', T.A, ['10.0.0.1', '10.0.0.2']],
    // Specials: this server (127.0.0.1), every agent.
    ['leader.mesos', T.A, ['127.0.0.1']],
    ['master.mesos', T.A, ['127.0.0.1']],
    ['ns1.mesos', T.A, ['127.0.0.1']],
    ['leader.corp.example', T.A, ['127.0.0.1']],
    ['leader.dcos.thisdcos.directory', T.A, ['127.0.0.1']],
    ['master.dcos.thisdcos.directory', T.A, ['127.0.0.1']],
    ['ns1.thisdcos.directory', T.A, ['127.0.0.1']],
    ['slave.mesos', T.A, ['10.0.0.1', '10.0.0.3', '10.0.0.4', '10.0.1.1', '192.168.0.2']],
    ['slave.mesos', T.AAAA, ['fd00::100']],
  ];
  for (const [name, type, want] of cases) {
    const { h, p } = await ask(port, name, type);
    t.equal(h.rcode, 0, `${name} NOERROR`);
    t.ok(h.aa, `${name} AA`);
    t.same(addrs(p, type), want, `${name} ${type === T.A ? 'A' : 'AAAA'}`);
    for (const r of p.answers) t.equal(r.ttl, 5, `${name} TTL 5`);
  }

  // SRV: one per served endpoint, target = canonical name, its address in the additional section.
  for (const proto of ['_tcp', '_udp']) {
    const { h, p } = await ask(port, `_web.${proto}.marathon.mesos`, T.SRV);
    t.equal(h.rcode, 0);
    const srv = answersOf(p, T.SRV)
      .map((r) => `${r.priority} ${r.weight} ${r.port} ${r.target}`)
      .sort();
    t.same(srv, [`0 1 8080 ${C1}.marathon.mesos`, `0 1 8081 ${C2}.marathon.mesos`].sort(), `${proto} SRV set`);
    const extra = p.additionals
      .filter((r) => r.type === T.A)
      .map((r) => `${r.name} ${r.address}`)
      .sort();
    t.same(extra, [`${C1}.marathon.mesos 10.0.0.1`, `${C2}.marathon.mesos 10.0.0.2`].sort(), "targets' A in additional");
  }
  // .slave. SRV only for host-networked endpoints (address = agent IP).
  {
    const { p } = await ask(port, '_web._tcp.marathon.slave.mesos', T.SRV);
    t.same(
      answersOf(p, T.SRV).map((r) => `${r.port} ${r.target}`),
      [`8080 ${C1}.marathon.slave.mesos`],
    );
  }

  // Named VIP: published only once the allocator has given it an address.
  t.equal((await ask(port, 'web.marathon.l4lb.thisdcos.directory', T.A)).h.rcode, 3, 'unallocated VIP: NXDOMAIN');
  const table = s.agg.current();
  s.apply({ ...table, version: table.version + 1, vips: table.vips.map((v) => ({ ...v, ip: '11.0.0.7' })) } as RoutingTable);
  t.same(addrs((await ask(port, 'web.marathon.l4lb.thisdcos.directory', T.A)).p, T.A), ['11.0.0.7'], 'allocated VIP');

  // PTR for every address we publish.
  const ptr = async (name: string) =>
    answersOf((await ask(port, name, T.PTR)).p, T.PTR)
      .map((r) => r.domain)
      .sort();
  t.same(await ptr('1.0.0.10.in-addr.arpa'), ['slave.mesos', 'web.marathon.mesos'], 'endpoint address (also its own agent)');
  t.same(await ptr('2.0.0.10.in-addr.arpa'), ['web.marathon.mesos'], 'container address');
  t.same(await ptr('2.0.168.192.in-addr.arpa'), ['slave.mesos'], 'agent address');
  t.same(await ptr('7.0.0.11.in-addr.arpa'), ['web.marathon.l4lb.thisdcos.directory'], 'VIP address');
  t.same(await ptr('1.0.0.127.in-addr.arpa'), ['ns1.mesos'], 'our own address');
  t.equal(reverseName('fd00::1'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa');
  t.same(await ptr(reverseName('fd00::1')), ['v6.marathon.mesos'], 'IPv6 endpoint');
  t.same(await ptr('3.0.0.10.in-addr.arpa'), ['slave.mesos'], 'an unhealthy endpoint: only as an agent');
  {
    const { h } = await ask(port, '9.9.9.10.in-addr.arpa', T.PTR);
    t.equal(h.rcode, 5, 'reverse names we do not own are not ours (REFUSED without upstreams)');
    const other = await ask(port, '1.0.0.10.in-addr.arpa', T.A);
    t.equal(other.h.rcode, 0, 'other types at a reverse name we own: NODATA');
    t.equal(other.h.ns, 0, 'without SOA (no zone of ours holds it)');
  }

  // SOA and NS at each apex, in the answer section, NS with glue.
  for (const apex of ['mesos', 'thisdcos.directory', 'corp.example']) {
    const soa = await ask(port, apex, T.SOA);
    t.equal(soa.h.rcode, 0);
    const rr = answersOf(soa.p, T.SOA)[0];
    t.equal(rr?.primary, `ns1.${apex}`, `${apex} SOA mname`);
    t.equal(rr?.admin, `root.ns1.${apex}`, `${apex} SOA rname`);
    t.equal(rr?.minimum, 5, 'negative TTL = TTL');
    const ns = await ask(port, apex, T.NS);
    t.same(
      answersOf(ns.p, T.NS).map((r) => r.ns),
      [`ns1.${apex}`],
      `${apex} NS`,
    );
    t.same(
      ns.p.additionals.filter((r) => r.type === T.A).map((r) => r.address),
      ['127.0.0.1'],
      `${apex} NS glue`,
    );
  }
});

t.test('NXDOMAIN vs NODATA, both with the SOA; empty non-terminals', async (t) => {
  const { port } = await startPlane(t, [fixture]);
  const check = async (name: string, type: number, rcode: number, zone: string) => {
    const { h, p } = await ask(port, name, type);
    t.equal(h.rcode, rcode, `${name}/${type}: rcode ${rcode}`);
    t.ok(h.aa, 'authoritative');
    t.equal(h.an, 0, 'no answers');
    t.equal(p.authorities.length, 1, 'one authority record');
    t.equal(p.authorities[0]?.type, T.SOA, 'it is the SOA');
    t.equal(p.authorities[0]?.name, zone, 'of the zone');
    t.equal(p.authorities[0]?.ttl, 5, 'negative TTL');
  };
  await check('nope.marathon.mesos', T.A, 3, 'mesos');
  await check('a.b.c.nope.mesos', T.A, 3, 'mesos');
  await check('nope.dcos.thisdcos.directory', T.A, 3, 'thisdcos.directory');
  await check('web.marathon.mesos', T.AAAA, 0, 'mesos'); // exists, no AAAA
  await check('web.marathon.mesos', T.SRV, 0, 'mesos');
  await check('web.marathon.mesos', T.TXT, 0, 'mesos'); // a type we never serve
  await check('marathon.mesos', T.A, 0, 'mesos'); // empty non-terminal
  await check('_tcp.marathon.mesos', T.SRV, 0, 'mesos');
  await check('dcos.thisdcos.directory', T.A, 0, 'thisdcos.directory');
  await check('l4lb.thisdcos.directory', T.A, 3, 'thisdcos.directory'); // no VIP has an address yet
  await check('mesos', T.A, 0, 'mesos'); // apex: SOA/NS only
  // An unhealthy-only service does not exist.
  const s2 = await startPlane(t, [
    snapshot('file', { services: { sick: service([endpoint('10.9.9.9', 1, { health: 'unhealthy' })], { name: 'sick' }) } }),
  ]);
  t.equal((await ask(s2.port, 'sick.marathon.mesos', T.A)).h.rcode, 3, 'all endpoints unhealthy: NXDOMAIN');
});

t.test('case: lookups ignore it, answers echo the question as asked', async (t) => {
  const { port } = await startPlane(t, [fixture]);
  for (const name of ['WEB.Marathon.MESOS', 'wEb.mArAtHoN.mEsOs', 'NoPe.MeSoS']) {
    const { raw, h } = await ask(port, name, T.A);
    t.equal(questionName(raw), name, `question echoed as ${name}`);
    t.equal(h.rcode, name.startsWith('NoPe') ? 3 : 0);
  }
  const { p } = await ask(port, '_WEB._TCP.marathon.MESOS', T.SRV);
  t.equal(answersOf(p, T.SRV).length, 2);
  t.ok(
    answersOf(p, T.SRV).every((r) => r.name === '_WEB._TCP.marathon.MESOS'),
    'owner names point at the question: same case',
  );
});

t.test('health: only healthy and unknown endpoints answer; a health change takes effect on the next table', async (t) => {
  const s = await startPlane(t, [
    snapshot('file', {
      services: {
        app: service([endpoint('10.1.0.1', 80, { health: 'healthy' }), endpoint('10.1.0.2', 80, { health: 'healthy' })], { name: 'app' }),
      },
    }),
  ]);
  t.same(addrs((await ask(s.port, 'app.marathon.mesos', T.A)).p, T.A), ['10.1.0.1', '10.1.0.2']);
  await s.publish(
    snapshot('file', {
      services: {
        app: service([endpoint('10.1.0.1', 80, { health: 'healthy' }), endpoint('10.1.0.2', 80, { health: 'unhealthy' })], { name: 'app' }),
      },
    }),
  );
  t.same(addrs((await ask(s.port, 'app.marathon.mesos', T.A)).p, T.A), ['10.1.0.1'], 'unhealthy left');
  await s.publish(
    snapshot('file', {
      services: {
        app: service([endpoint('10.1.0.1', 80, { health: 'draining' }), endpoint('10.1.0.2', 80, { health: 'unknown', weight: 0 })], {
          name: 'app',
        }),
      },
    }),
  );
  t.equal((await ask(s.port, 'app.marathon.mesos', T.A)).h.rcode, 3, 'draining and weight 0 left too');
  t.same(addrs((await ask(s.port, 'slave.mesos', T.A)).p, T.A), ['10.1.0.1', '10.1.0.2'], 'the agents are still agents');
});

t.test('a service whose name another provider won publishes nothing', async (t) => {
  const s = await startPlane(t, [fixture]);
  await s.publish(snapshot('low', { services: { web: service([endpoint('10.5.5.5', 80)], { name: 'web' }) } }), -1);
  t.same(addrs((await ask(s.port, 'web.marathon.mesos', T.A)).p, T.A), ['10.0.0.1', '10.0.0.2'], 'the winner only');
});

t.test('answers are shuffled per query (rotation)', async (t) => {
  const eps = Array.from({ length: 8 }, (_, i) => endpoint(`10.2.0.${i + 1}`, 80));
  const { port } = await startPlane(t, [snapshot('file', { services: { many: service(eps, { name: 'many' }) } })]);
  const c = await new UdpClient().open();
  t.teardown(() => c.close());
  const firsts = new Set<string>();
  for (let i = 0; i < 64; i++) {
    const p = decode(await c.ask(port, query({ name: 'many.marathon.mesos', id: i })));
    t.equal(p.answers.length, 8);
    t.same(p.answers.map((r) => r.address).sort(), eps.map((e) => e.address).sort());
    firsts.add(p.answers[0]!.address!);
  }
  t.ok(firsts.size >= 4, `first answer varies (${firsts.size} distinct of 8)`);
});

t.test('EDNS: OPT echoed with 1232; no OPT without EDNS; BADVERS for version 1; flags', async (t) => {
  const { port } = await startPlane(t, [fixture]);
  const withEdns = await udp(port, query({ name: 'web.marathon.mesos', edns: { udpSize: 4096, do: true } }));
  const opt = decode(withEdns).additionals.find((r) => r.type === T.OPT);
  t.ok(opt, 'OPT in the answer');
  t.equal(opt?.class, 1232, 'advertises 1232');
  t.equal(header(withEdns).ar, 1);
  const plain = await udp(port, query({ name: 'web.marathon.mesos', edns: false }));
  t.equal(header(plain).ar, 0, 'no OPT without EDNS');
  const bad = await udp(port, query({ name: 'web.marathon.mesos', edns: { version: 1 } }));
  t.equal(header(bad).rcode, 0, 'low bits 0');
  const badOpt = decode(bad).additionals.find((r) => r.type === T.OPT) as
    (ReturnType<typeof decode>['additionals'][number] & { extendedRcode?: number }) | undefined;
  t.equal(badOpt?.extendedRcode, 1, 'extended rcode 1: BADVERS (16)');
  // RD and CD copied, RA clear without upstreams, AA set, id echoed.
  const h = header(await udp(port, query({ name: 'web.marathon.mesos', id: 0xbeef, rd: false, cd: true })));
  t.match(h, { id: 0xbeef, qr: true, aa: true, rd: false, cd: true, ra: false, opcode: 0 });
});

t.test('a large SRV set: TC over UDP (whole records, question kept), the full answer over TCP', async (t) => {
  const eps = Array.from({ length: 100 }, (_, i) => endpoint(`10.3.${i >> 8}.${i & 255}`, 10000 + i));
  const { port } = await startPlane(t, [snapshot('file', { services: { big: service(eps, { name: 'big' }) } })]);
  for (const edns of [false, {}] as const) {
    const raw = await udp(port, query({ name: '_big._tcp.marathon.mesos', type: T.SRV, edns }));
    const h = header(raw);
    const limit = edns ? 1232 : 512;
    t.ok(h.tc, `TC set (${edns ? 'EDNS 1232' : 'no EDNS'})`);
    t.ok(raw.length <= limit, `fits ${limit} (${raw.length})`);
    t.equal(h.qd, 1, 'question kept');
    const p = decode(raw);
    t.ok(p.answers.length > 0 && p.answers.length < 100, `some whole records (${p.answers.length})`);
    t.equal(p.answers.length, h.an);
    t.ok(
      p.answers.every((r) => r.type === T.SRV && typeof r.port === 'number' && r.target?.endsWith('.marathon.mesos')),
      'records decode whole',
    );
  }
  const full = await tcp(port, query({ name: '_big._tcp.marathon.mesos', type: T.SRV }));
  const h = header(full);
  t.notOk(h.tc, 'no TC over TCP');
  const p = decode(full);
  t.equal(answersOf(p, T.SRV).length, 100, 'all 100 SRV records');
  t.equal(p.additionals.filter((r) => r.type === T.A).length, 100, 'and 100 target addresses');
  t.same(
    answersOf(p, T.SRV)
      .map((r) => r.port)
      .sort(),
    eps.map((e) => e.port).sort(),
  );

  // Answers that fit but whose additional records do not: additional trimmed, no TC.
  const mid = Array.from({ length: 8 }, (_, i) => endpoint(`10.4.0.${i + 1}`, 20000 + i));
  const s2 = await startPlane(t, [snapshot('file', { services: { mid: service(mid, { name: 'mid' }) } })]);
  const raw = await udp(s2.port, query({ name: '_mid._tcp.marathon.mesos', type: T.SRV, edns: false }));
  const hm = header(raw);
  t.notOk(hm.tc, 'no TC when only additional records are dropped');
  t.equal(hm.an, 8, 'every SRV record');
  t.ok(hm.ar < 8, `fewer additional records (${hm.ar})`);
  t.ok(raw.length <= 512);
});

t.test('TCP: several queries per connection, pipelined; idle timeout; garbage framing closes', async (t) => {
  const { port, registry } = await startPlane(t, [fixture], {}, { tcpIdleMs: 200 });
  const c = new TcpClient(port);
  t.teardown(() => c.close());
  await c.connected();
  const names = ['web.marathon.mesos', 'nope.mesos', 'leader.mesos', 'WEB.marathon.mesos'];
  names.forEach((name, i) => c.send(query({ name, id: 100 + i })));
  const got = await c.waitFor(names.length);
  t.same(got.map((m) => m.readUInt16BE(0)).sort(), [100, 101, 102, 103]);
  t.same(got.map((m) => header(m).rcode).sort(), [0, 0, 0, 3]);
  // One message split across writes.
  const q = query({ name: 'ns1.mesos', id: 200 });
  const framed = Buffer.alloc(q.length + 2);
  framed.writeUInt16BE(q.length, 0);
  q.copy(framed, 2);
  // Each piece is read by the server before the next is written: three reads for one message.
  c.sock.setNoDelay(true);
  for (const piece of [framed.subarray(0, 1), framed.subarray(1, 9), framed.subarray(9)]) {
    await written(c.sock, piece);
    await ioRoundTrip();
  }
  t.equal((await c.waitFor(5))[4]!.readUInt16BE(0), 200, 'reassembled');
  await c.waitClosed(2000);
  t.notMatch(
    await registry.metrics(),
    /portico_dns_dropped_total\{reason="tcp"\}/,
    'idle connection closed by the server, not as bad framing',
  );

  const g = new TcpClient(port);
  t.teardown(() => g.close());
  await g.connected();
  g.sock.write(Buffer.from([0, 3, 1, 2, 3]));
  await g.waitClosed(2000);
  // (the idle timeout would close it too: the counter says which one did)
  t.match(await registry.metrics(), /portico_dns_dropped_total\{reason="tcp"\} 1/, 'a frame shorter than a header closes the connection');
});

t.test('protocol errors: FORMERR, NOTIMP, REFUSED; responses and runts are dropped', async (t) => {
  const { port } = await startPlane(t, [fixture]);
  const rcodeOf = async (b: Buffer) => header(await udp(port, b)).rcode;
  t.equal(await rcodeOf(query({ name: 'web.marathon.mesos', opcode: 4 })), 4, 'NOTIFY: NOTIMP');
  t.equal(await rcodeOf(query({ name: 'web.marathon.mesos', opcode: 5 })), 4, 'UPDATE: NOTIMP');
  t.equal(await rcodeOf(query({ name: 'web.marathon.mesos', cls: 3 })), 5, 'class CH: REFUSED');
  t.equal(await rcodeOf(query({ name: 'mesos', type: T.AXFR })), 5, 'AXFR: REFUSED');
  const two = query({ name: 'web.marathon.mesos', edns: false });
  two.writeUInt16BE(2, 4);
  t.equal(await rcodeOf(two), 1, 'two questions: FORMERR');
  const none = query({ name: 'web.marathon.mesos', edns: false }).subarray(0, 12);
  t.equal(await rcodeOf(Buffer.from(none)), 1, 'no question: FORMERR');
  const truncated = query({ name: 'web.marathon.mesos', edns: false }).subarray(0, 20);
  t.equal(await rcodeOf(Buffer.from(truncated)), 1, 'cut in the name: FORMERR');
  const trailing = Buffer.concat([query({ name: 'web.marathon.mesos', edns: false }), Buffer.from([1, 2, 3])]);
  t.equal(await rcodeOf(trailing), 1, 'trailing bytes: FORMERR');
  const pointer = Buffer.from(query({ name: 'a', edns: false }));
  pointer[12] = 0xc0;
  t.equal(await rcodeOf(pointer), 1, 'a pointer in the question: FORMERR');
  const formerr = await udp(port, two);
  t.equal(formerr.readUInt16BE(0), 0x1234, 'id echoed');
  t.ok(header(formerr).qr);

  // Dropped: a response (QR set), a runt. The server stays up and answers the next query.
  const c = await new UdpClient().open();
  t.teardown(() => c.close());
  const resp = query({ name: 'web.marathon.mesos', id: 7 });
  resp[2] = resp[2]! | 0x80;
  c.send(port, resp);
  c.send(port, Buffer.from([1, 2, 3]));
  const after = await c.ask(port, query({ name: 'web.marathon.mesos', id: 8 }));
  t.equal(header(after).rcode, 0);
  t.same(
    c.received.map((m) => m.readUInt16BE(0)),
    [8],
    'nothing came back for the response or the runt',
  );
});

t.test('no upstreams: names outside our zones are REFUSED (no open resolver)', async (t) => {
  const { port } = await startPlane(t, [fixture]);
  const h = header(await udp(port, query({ name: 'example.com' })));
  t.equal(h.rcode, 5);
  t.notOk(h.aa);
});

t.test('before the first table: in-zone misses are SERVFAIL (not a cached NXDOMAIN); specials answer', async (t) => {
  const s = await startPlane(t, []);
  t.equal(s.plane.status().tableVersion, 0);
  t.equal((await ask(s.port, 'web.marathon.mesos', T.A)).h.rcode, 2);
  t.same(addrs((await ask(s.port, 'leader.mesos', T.A)).p, T.A), ['127.0.0.1']);
  await s.publish(fixture);
  t.equal((await ask(s.port, 'web.marathon.mesos', T.A)).h.rcode, 0);
  t.equal((await ask(s.port, 'nope.marathon.mesos', T.A)).h.rcode, 3);
});

t.test('a provider that leaves the table keeps its records for holdMs; one present with nothing is honoured', async (t) => {
  const s = await startPlane(
    t,
    [fixture, snapshot('sched', { services: { job: service([endpoint('10.7.0.1', 80)], { name: 'job' }) } })],
    {},
    { holdMs: 300 },
  );
  t.equal((await ask(s.port, 'job.marathon.mesos', T.A)).h.rcode, 0);
  const removedAt = Date.now();
  s.agg.remove('sched');
  await new Promise<void>((resolve) => {
    const off = s.agg.subscribe(() => {
      off();
      resolve();
    });
  });
  t.same(addrs((await ask(s.port, 'job.marathon.mesos', T.A)).p, T.A), ['10.7.0.1'], 'held after the provider left');
  await waitFor(async () => (await ask(s.port, 'job.marathon.mesos', T.A)).h.rcode === 3, {
    timeoutMs: 5000,
    what: 'held records to expire',
  });
  t.ok(Date.now() - removedAt >= 300, 'gone after holdMs, not before');
  // Present but empty: removal is real, at once.
  await s.publish(snapshot('file', { services: {} }));
  t.equal((await ask(s.port, 'web.marathon.mesos', T.A)).h.rcode, 3);
});

t.test('a table that cannot compile leaves the current zone serving; bad addresses are skipped', async (t) => {
  const s = await startPlane(t, [fixture]);
  const table = s.agg.current();
  s.apply({ ...table, version: table.version + 1, services: null } as unknown as RoutingTable);
  t.same(addrs((await ask(s.port, 'web.marathon.mesos', T.A)).p, T.A), ['10.0.0.1', '10.0.0.2'], 'old zone still served');
  t.match(s.plane.status().error ?? '', /table/, 'the failure is reported');
  t.equal(s.plane.status().tableVersion, table.version);
  const odd = {
    ...table,
    version: table.version + 2,
    services: ServiceMap.from({
      'x@file': {
        ...table.services.get('web@file')!,
        name: 'x',
        endpoints: [
          { address: 'not-an-ip', port: 1, weight: 1, health: 'healthy', labels: {} },
          { address: '10.6.0.1', port: 1, weight: 1, health: 'healthy', labels: {} },
        ],
      },
    }),
  } as unknown as RoutingTable;
  s.apply(odd);
  t.same(
    addrs((await ask(s.port, 'x.marathon.mesos', T.A)).p, T.A),
    ['10.6.0.1'],
    'the endpoint with a bad address is skipped, the rest served',
  );
});

t.test('zone swap under a stream of queries: not one failed answer', async (t) => {
  const s = await startPlane(t, [fixture]);
  const c = await new UdpClient().open();
  t.teardown(() => c.close());
  let stop = false;
  let sent = 0;
  let bad = 0;
  const stream = (async () => {
    let id = 0;
    while (!stop) {
      const batch: Array<Promise<Buffer>> = [];
      for (let i = 0; i < 32; i++) {
        id = (id + 1) & 0xffff;
        batch.push(c.ask(s.port, query({ name: 'web.marathon.mesos', id })));
      }
      sent += batch.length;
      for (const r of await Promise.all(batch)) {
        const p = decode(r);
        if (header(r).rcode !== 0 || p.answers.length === 0) bad++;
      }
    }
  })();
  for (let v = 0; v < 40; v++) {
    const eps = [endpoint('10.0.0.1', 8080), endpoint(`10.0.9.${v + 1}`, 8080)];
    await s.publish(
      snapshot('file', {
        services: { web: service(eps, { name: 'web' }), [`extra${v}`]: service([endpoint('10.8.0.1', 1)], { name: `extra${v}` }) },
      }),
    );
  }
  stop = true;
  await stream;
  t.ok(sent > 200, `${sent} queries during 40 swaps`);
  t.equal(bad, 0, 'every query answered NOERROR with records');
  t.equal(s.plane.status().tableVersion, s.agg.current().version, 'serving the last table');
});

t.test('metrics: queries by type and rcode', async (t) => {
  const s = await startPlane(t, [fixture]);
  await ask(s.port, 'web.marathon.mesos', T.A);
  await ask(s.port, 'nope.mesos', T.A);
  await ask(s.port, '_web._tcp.marathon.mesos', T.SRV);
  const text = await s.registry.metrics();
  t.match(text, /portico_dns_queries_total\{type="A",rcode="NOERROR"\} 1/);
  t.match(text, /portico_dns_queries_total\{type="A",rcode="NXDOMAIN"\} 1/);
  t.match(text, /portico_dns_queries_total\{type="SRV",rcode="NOERROR"\} 1/);
  t.match(text, /portico_dns_zone_endpoints \d+/);
  t.match(s.plane.status(), { name: 'dns', state: 'serving', listeners: [/^udp 127\.0\.0\.1:\d+$/, /^tcp 127\.0\.0\.1:\d+$/] });
});

/**
 * Why this machine cannot bind ::1 at all (no IPv6 loopback: the kernel has IPv6 off, or `lo` has no ::1),
 * or undefined when it can. Any other error is not a reason to skip: the test then fails on it.
 */
async function noIpv6Loopback(): Promise<string | undefined> {
  const { default: net } = await import('node:net');
  const srv = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(0, '::1', resolve);
    });
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT') return `cannot bind ::1 on this machine (${code})`;
    return undefined;
  } finally {
    if (srv.listening) await new Promise<void>((r) => srv.close(() => r()));
  }
}

t.test('IPv6 listener: answers over udp6 and tcp6, and names itself with AAAA', async (t) => {
  const why = await noIpv6Loopback();
  if (why) {
    t.plan(0, why);
    return;
  }
  const s = await startPlane(t, [fixture], { listen: '[::1]:0', allowRecursionFrom: ['::1/128'] });
  const { default: dgram } = await import('node:dgram');
  const sock = dgram.createSocket('udp6');
  t.teardown(() => sock.close());
  const answering = once<[Buffer]>(sock, 'message', 2000);
  sock.send(query({ name: 'leader.mesos', type: T.AAAA }), s.port, '::1');
  const [answer] = await answering;
  t.same(addrs(decode(answer), T.AAAA), ['::1']);
  const { default: net } = await import('node:net');
  const c = net.connect({ host: '::1', port: s.port });
  t.teardown(() => c.destroy());
  const q = query({ name: 'web.marathon.mesos' });
  const framed = Buffer.alloc(q.length + 2);
  framed.writeUInt16BE(q.length, 0);
  q.copy(framed, 2);
  c.write(framed);
  const got = await withTimeout(
    new Promise<Buffer>((resolve) => {
      let b = Buffer.alloc(0);
      c.on('data', (d) => {
        b = Buffer.concat([b, d]);
        if (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) resolve(b.subarray(2));
      });
    }),
    2000,
    'the answer over tcp6',
  );
  t.same(addrs(decode(got), T.A), ['10.0.0.1', '10.0.0.2'], 'over TCP too');
});
