/**
 * Units of the wire layer: every record our builder writes, read back by dns2's decoder; the query
 * parser's verdicts as a table of inputs ("fails" rows included); the bounded response walker; names.
 */
import t from 'tap';
import { walkResponse, answersQuery } from '../../src/dns/message.js';
import { canonicalLabel, hash5 } from '../../src/dns/names.js';
import { Query, Verdict } from '../../src/dns/query.js';
import { keyToName, MessageBuilder, nameToWire, reverseName, wireKey } from '../../src/dns/wire.js';
import { decode, Packet, query, T } from './helpers.js';

t.test('every record we build decodes with dns2 to what we meant', async (t) => {
  const b = new MessageBuilder(16);
  b.header(0x84, 0x80);
  b.question('_web._tcp.marathon.mesos', T.SRV);
  b.a('_web._tcp.marathon.mesos', 5, '10.1.2.3');
  b.aaaa('_web._tcp.marathon.mesos', 5, 'fd00::1:2');
  b.srv('_web._tcp.marathon.mesos', 5, 0, 3, 8080, 'web-abcde.marathon.mesos');
  b.ptr('_web._tcp.marathon.mesos', 5, 'web.marathon.mesos');
  b.ns('_web._tcp.marathon.mesos', 5, 'ns1.mesos');
  b.soa('mesos', 7, {
    mname: 'ns1.mesos',
    rname: 'root.ns1.mesos',
    serial: 4000000000,
    refresh: 60,
    retry: 600,
    expire: 86400,
    minimum: 5,
  });
  b.a('web-abcde.marathon.mesos', 5, '10.9.9.9');
  b.setCounts(1, 6, 0, 1);
  const buf = b.finish();
  const p = decode(buf);
  t.match(p.header, { qr: 1, aa: 1, ra: 1, qdcount: 1, ancount: 6, arcount: 1 });
  t.match(p.questions[0], { name: '_web._tcp.marathon.mesos', type: T.SRV, class: 1 });
  const [a, aaaa, srv, ptr, ns, soa] = p.answers;
  t.match(a, { name: '_web._tcp.marathon.mesos', type: T.A, ttl: 5, address: '10.1.2.3' });
  t.match(aaaa, { type: T.AAAA, address: 'fd00::1:2' });
  t.match(srv, { type: T.SRV, priority: 0, weight: 3, port: 8080, target: 'web-abcde.marathon.mesos' });
  t.match(ptr, { type: T.PTR, domain: 'web.marathon.mesos' });
  t.match(ns, { type: T.NS, ns: 'ns1.mesos' });
  t.match(soa, {
    name: 'mesos',
    type: T.SOA,
    ttl: 7,
    primary: 'ns1.mesos',
    admin: 'root.ns1.mesos',
    serial: 4000000000,
    refresh: 60,
    retry: 600,
    expiration: 86400,
    minimum: 5,
  });
  t.match(p.additionals[0], { name: 'web-abcde.marathon.mesos', address: '10.9.9.9' });
  // Compression only points into the question (offset 12..): the SRV owner is one pointer.
  const firstAnswer = 12 + nameToWire('_web._tcp.marathon.mesos').length + 4;
  t.equal(buf.readUInt16BE(firstAnswer), 0xc00c, 'owner = pointer to the question');
  // Other names point at the question's suffixes only: the glue's owner is one label + a pointer to
  // "marathon.mesos" inside the question (offset 22), so records can be moved and dropped freely.
  const glueOwner = Buffer.concat([Buffer.from([9]), Buffer.from('web-abcde'), Buffer.from([0xc0, 22])]);
  t.ok(buf.includes(glueOwner), 'glue owner compressed against the question');
  // SRV targets are never compressed (RFC 2782).
  t.ok(buf.includes(nameToWire('web-abcde.marathon.mesos')), 'SRV target written in full');
});

t.test('names: wire form, keys, reverse names, canonical labels', async (t) => {
  t.same([...nameToWire('Web.Marathon.MESOS.')], [3, 119, 101, 98, 8, 109, 97, 114, 97, 116, 104, 111, 110, 5, 109, 101, 115, 111, 115, 0]);
  t.equal(keyToName(wireKey('a.b.c')), 'a.b.c');
  t.throws(() => nameToWire(`${'a'.repeat(64)}.mesos`), RangeError);
  t.throws(() => nameToWire('a..b'), RangeError);
  t.equal(reverseName('10.1.2.3'), '3.2.1.10.in-addr.arpa');
  t.equal(reverseName('2001:db8::1'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
  t.match(hash5('nginx.1'), /^[ybndrfg8ejkmcpqxot1uwisza345h769]{5}$/);
  t.equal(hash5('x'), hash5('x'), 'stable');
  const long = canonicalLabel('a'.repeat(63), { address: '10.0.0.1', port: 1, weight: 1, health: 'healthy', labels: {} }, 's@p');
  t.ok(long.length <= 63, 'a canonical label stays a label');
});

t.test('query parser verdicts', async (t) => {
  const ok = query({ name: 'web.marathon.mesos' });
  const set = (b: Buffer, at: number, v: number) => {
    const c = Buffer.from(b);
    c[at] = v;
    return c;
  };
  const u16 = (b: Buffer, at: number, v: number) => {
    const c = Buffer.from(b);
    c.writeUInt16BE(v, at);
    return c;
  };
  const rows: Array<[string, Buffer, Verdict]> = [
    ['a plain query', ok, Verdict.OK],
    ['no EDNS', query({ name: 'a', edns: false }), Verdict.OK],
    ['the root name', query({ name: '', type: T.NS }), Verdict.OK],
    ['63-byte label', query({ name: `${'a'.repeat(63)}.mesos` }), Verdict.OK],
    // fails
    ['empty', Buffer.alloc(0), Verdict.DROP],
    ['11 bytes', Buffer.alloc(11), Verdict.DROP],
    ['a response', set(ok, 2, 0x81), Verdict.DROP],
    ['opcode NOTIFY', set(ok, 2, 4 << 3), Verdict.NOTIMP],
    ['no question', u16(ok, 4, 0), Verdict.FORMERR],
    ['two questions', u16(ok, 4, 2), Verdict.FORMERR],
    ['answer count', u16(ok, 6, 1), Verdict.FORMERR],
    ['authority count', u16(ok, 8, 1), Verdict.FORMERR],
    ['65535 additional', u16(ok, 10, 65535), Verdict.FORMERR],
    ['additional count beyond the packet', u16(ok, 10, 3), Verdict.FORMERR],
    ['64-byte label', query({ name: `${'a'.repeat(64)}.mesos` }), Verdict.FORMERR],
    ['name over 255 bytes', query({ name: Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.') }), Verdict.FORMERR],
    ['a pointer in the question', set(ok, 12, 0xc0), Verdict.FORMERR],
    ['reserved label type 0x40', set(ok, 12, 0x40), Verdict.FORMERR],
    ['cut before qtype', ok.subarray(0, 12 + 20 + 2), Verdict.FORMERR],
    ['trailing byte', Buffer.concat([ok, Buffer.from([0])]), Verdict.FORMERR],
    [
      'OPT not owned by the root',
      (() => {
        const c = Buffer.from(ok);
        c[c.length - 11] = 1;
        return Buffer.concat([c.subarray(0, c.length - 10), Buffer.from([0x61, 0]), c.subarray(c.length - 10)]);
      })(),
      Verdict.FORMERR,
    ],
    ['two OPT records', u16(Buffer.concat([ok, ok.subarray(ok.length - 11)]), 10, 2), Verdict.FORMERR],
    ['OPT rdata longer than the packet', u16(ok, ok.length - 2, 100), Verdict.FORMERR],
    ['EDNS version 1', query({ name: 'a', edns: { version: 1 } }), Verdict.BADVERS],
    ['class CH', query({ name: 'version.bind', cls: 3, type: T.TXT }), Verdict.REFUSED],
    ['class ANY', query({ name: 'a', cls: 255 }), Verdict.REFUSED],
    ['AXFR', query({ name: 'mesos', type: T.AXFR }), Verdict.REFUSED],
    ['qtype OPT', query({ name: 'a', type: T.OPT }), Verdict.FORMERR],
  ];
  const q = new Query();
  for (const [what, buf, want] of rows) t.equal(q.parse(buf), want, what);

  q.parse(query({ name: 'WeB.Marathon.MESOS', type: T.SRV, edns: { udpSize: 100 } }));
  t.equal(q.key, wireKey('web.marathon.mesos'), 'key is the lower-case wire name');
  t.equal(q.nameLength, 20);
  t.equal(q.qtype, T.SRV);
  t.ok(q.edns);
  t.equal(q.udpSize, 512, 'an advertised size below 512 counts as 512');
  t.same([...q.labelStarts.subarray(0, q.labels)], [0, 4, 13]);
});

t.test('response walker: bounded, exact', async (t) => {
  const req = Packet.parse(query({ name: 'www.example.test', id: 9 }));
  const res = new Packet();
  res.header = { ...req.header, qr: 1, rcode: 3 } as Packet['header'];
  res.questions = req.questions;
  res.authorities = [
    {
      name: 'example.test',
      type: T.SOA,
      class: 1,
      ttl: 300,
      primary: 'ns.example.test',
      admin: 'a.example.test',
      serial: 1,
      refresh: 1,
      retry: 1,
      expiration: 1,
      minimum: 30,
    } as never,
  ];
  res.additionals = [Packet.Resource.EDNS([]) as never];
  const buf = res.toBuffer();
  const question = query({ name: 'www.example.test', edns: false }).subarray(12);
  t.ok(answersQuery(buf, 9, question));
  t.notOk(answersQuery(buf, 10, question), 'wrong id');
  t.notOk(answersQuery(query({ name: 'www.example.test', id: 9 }), 9, question), 'not a response');
  const info = walkResponse(buf, question.length);
  t.match(info, { rcode: 3, an: 0, ns: 1, ar: 1, negativeTtl: 30 });
  t.ok(info!.optStart > 0 && info!.optEnd === buf.length);
  t.equal(walkResponse(buf.subarray(0, buf.length - 1), question.length), undefined, 'cut');
  t.equal(walkResponse(Buffer.concat([buf, Buffer.from([0])]), question.length), undefined, 'trailing');
  const lying = Buffer.from(buf);
  lying.writeUInt16BE(65535, 6);
  t.equal(walkResponse(lying, question.length), undefined, 'counts beyond the packet: refused before walking');
});
