/**
 * Hostile input. 100,000 seeded random and mutated datagrams (bit flips, cuts, appended junk, forged
 * counts, label lengths and pointers, opcodes, QR, duplicate OPTs) over real UDP — with a forwarder
 * configured, so what parses reaches the cache and the upstream too — then correct answers must still
 * come, and no query may have hit an internal error. The same inputs also go straight through the
 * query path in-process, where every answer is checked against the question. Random byte streams go
 * over TCP too: every connection must be answered or closed, none left hanging.
 * PORTICO_SEED=<seed> reproduces a run; PORTICO_DNS_FUZZ=<n> changes the count.
 */
import t from 'tap';
import { Query } from '../../src/dns/query.js';
import { endpoint, service, snapshot } from '../helpers/snapshot.js';
import { decode, header, query, Rng, seedFromEnv, startPlane, T, TcpClient, udp, UdpClient } from './helpers.js';
import { FakeUpstream } from './upstream.js';

const COUNT = Number(process.env.PORTICO_DNS_FUZZ ?? 100_000);
const seed = seedFromEnv();
t.comment(`seed ${seed} (PORTICO_SEED=${seed} to reproduce)`);

const NAMES = [
  'web.marathon.mesos',
  '_web._tcp.marathon.mesos',
  'slave.mesos',
  'mesos',
  'nope.mesos',
  'leader.mesos',
  'web.marathon.autoip.dcos.thisdcos.directory',
  '1.0.0.10.in-addr.arpa',
  'www.example.test',
  'a.b.c.example.test',
  'x',
];
const TYPES = [T.A, T.AAAA, T.SRV, T.PTR, T.SOA, T.NS, T.ANY, T.TXT, T.OPT, T.AXFR, 0, 65535];

function valid(rng: Rng): Buffer {
  const name = NAMES[rng.int(NAMES.length)]!;
  const edns = rng.int(3) === 0 ? false : { udpSize: rng.int(5000), version: rng.int(8) === 0 ? 1 : 0, do: rng.int(2) === 0 };
  return query({ name, type: TYPES[rng.int(TYPES.length)]!, id: rng.int(65536), rd: rng.int(2) === 0, edns });
}

function mutate(rng: Rng, b: Buffer): Buffer {
  let out = Buffer.from(b);
  const n = 1 + rng.int(4);
  for (let i = 0; i < n; i++) {
    switch (rng.int(10)) {
      case 0: {
        // flip bits
        const k = rng.int(out.length);
        out[k] = out[k]! ^ (1 << rng.int(8));
        break;
      }
      case 1:
        out = out.subarray(0, rng.int(out.length + 1));
        break; // cut
      case 2:
        out = Buffer.concat([out, rng.bytes(1 + rng.int(64))]);
        break; // junk after
      case 3:
        if (out.length >= 12) out.writeUInt16BE(rng.int(4) === 0 ? 65535 : rng.int(8), 4 + 2 * rng.int(4));
        break; // counts
      case 4:
        if (out.length > 13) out[12 + rng.int(Math.min(out.length - 12, 40))] = [0, 63, 64, 127, 191, 192, 255][rng.int(7)]!;
        break; // label bytes
      case 5:
        if (out.length > 14) {
          const k = 12 + rng.int(out.length - 13);
          out[k] = 0xc0;
          out[k + 1] = rng.int(256);
        }
        break; // pointer
      case 6:
        if (out.length > 2) out[2] = rng.int(256);
        break; // QR, opcode, flags
      case 7:
        if (out.length > 3) out[3] = rng.int(256);
        break;
      case 8: {
        // a second OPT
        out = Buffer.concat([out, Buffer.from([0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0])]);
        if (out.length >= 12) out.writeUInt16BE((out.readUInt16BE(10) + 1) & 0xffff, 10);
        break;
      }
      default: {
        // overwrite a run with random bytes
        const k = rng.int(out.length + 1);
        const r = rng.bytes(rng.int(16));
        out = Buffer.concat([out.subarray(0, k), r, out.subarray(Math.min(out.length, k + r.length))]);
      }
    }
  }
  return out;
}

function input(rng: Rng): Buffer {
  switch (rng.int(4)) {
    case 0:
      return rng.bytes(rng.int(600)); // pure noise, any length
    case 1: {
      // a header claiming many records, then little
      const b = rng.bytes(12 + rng.int(40));
      b.writeUInt16BE(rng.int(65536), 4);
      b.writeUInt16BE(rng.int(65536), 6);
      b.writeUInt16BE(rng.int(65536), 8);
      b.writeUInt16BE(rng.int(65536), 10);
      b[2] = b[2]! & 0x7f;
      return b;
    }
    default:
      return mutate(rng, valid(rng));
  }
}

const fixture = snapshot('file', { services: { web: service([endpoint('10.0.0.1', 8080), endpoint('10.0.0.2', 8080)], { name: 'web' }) } });

t.test(`${COUNT} random and mutated datagrams over UDP: no crash, no internal error, correct answers after`, async (t) => {
  const up = await new FakeUpstream().start();
  up.behave = (name) =>
    name.toLowerCase().endsWith('example.test') ? { answers: [{ type: T.A, address: '192.0.2.77', ttl: 300 }] } : { rcode: 3 };
  t.teardown(() => up.stop());
  const s = await startPlane(t, [fixture], { upstreams: [up.address] }, { upstreamTimeoutMs: 300 });
  const c = await new UdpClient().open();
  t.teardown(() => c.close());
  const rng = new Rng(seed);
  const started = Date.now();
  const BATCH = 256;
  for (let i = 0; i < COUNT; i += BATCH) {
    const end = Math.min(COUNT, i + BATCH);
    for (let j = i; j < end; j++) c.send(s.port, input(rng));
    // Pace like a real sender: let the server (same process) take the burst before the next one.
    const deadline = Date.now() + 100;
    while (s.plane.counters().udpReceived < end && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  }
  // Wait (bounded) for the server to have read what the kernel will deliver: until its counter stops moving.
  for (let last = -1, deadline = Date.now() + 5_000; Date.now() < deadline;) {
    const n = s.plane.counters().udpReceived;
    if (n === last || n >= COUNT) break;
    last = n;
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  }
  const k = s.plane.counters();
  t.comment(
    `sent ${COUNT} in ${Date.now() - started} ms; the server read ${k.udpReceived}, answered ${k.answered}, dropped ${k.dropped}; ${c.received.length} answers came back`,
  );
  t.ok(k.udpReceived > COUNT * 0.9, 'the server read (nearly) all of them');

  // Every answer is well-formed: a response header, and whatever dns2 makes of the rest.
  let malformed = 0;
  for (const m of c.received) {
    if (m.length < 12 || !header(m).qr) malformed++;
  }
  t.equal(malformed, 0, 'every datagram we sent back is a response');

  // Correct answers still come.
  const after = decode(await udp(s.port, query({ name: 'web.marathon.mesos' })));
  t.same(after.answers.map((r) => r.address).sort(), ['10.0.0.1', '10.0.0.2']);
  const fwd = decode(await udp(s.port, query({ name: 'fresh.example.test' })));
  t.same(
    fwd.answers.map((r) => r.address),
    ['192.0.2.77'],
    'the forwarder still works',
  );
  t.equal(s.plane.counters().internalErrors, 0, 'no internal errors');
  t.equal(s.plane.status().state, 'serving');
});

t.test(`the same inputs through the query path in-process: every answer matches its question`, async (t) => {
  const s = await startPlane(t, [fixture]);
  const rng = new Rng(seed ^ 0x5a5a5a5a);
  const q = new Query();
  let answered = 0;
  let problems = 0;
  const n = Math.min(COUNT, 50_000);
  for (let i = 0; i < n; i++) {
    const msg = input(rng);
    const out = s.plane.respondTo(msg, q, '127.0.0.1', i % 2 === 0, 0);
    if (out === null || typeof out === 'symbol') continue;
    answered++;
    const h = header(out);
    // Response, same id, same opcode; a question (if any) is the query's question, byte for byte.
    if (!h.qr || out.readUInt16BE(0) !== msg.readUInt16BE(0) || h.opcode !== ((msg[2]! >> 3) & 15)) problems++;
    else if (h.qd === 1 && !out.subarray(12, q.questionEnd).equals(msg.subarray(12, q.questionEnd))) problems++;
    else if (h.rcode === 0 && h.an > 0) {
      try {
        const p = decode(out);
        if (p.answers.length !== h.an) problems++;
      } catch {
        problems++;
      }
    }
  }
  t.comment(`${answered} of ${n} answered`);
  t.equal(problems, 0, 'no answer contradicts its query');
  t.equal(s.plane.counters().internalErrors, 0, 'no internal errors');
});

t.test('random streams over TCP: every connection answered or closed, none hung', async (t) => {
  // One source opens all 200: its cap is raised so that every stream reaches the parser (tcp-fair.test.ts tests the cap).
  const s = await startPlane(t, [fixture], {}, { tcpIdleMs: 300, maxTcpConnectionsPerSource: 1024 });
  const rng = new Rng(seed ^ 0x1234);
  const clients: TcpClient[] = [];
  for (let i = 0; i < 200; i++) {
    const c = new TcpClient(s.port);
    clients.push(c);
    c.sock.on('connect', () => {
      const parts: Buffer[] = [];
      const k = 1 + rng.int(4);
      for (let j = 0; j < k; j++) {
        if (rng.int(2) === 0) {
          const m = mutate(rng, valid(rng));
          const f = Buffer.alloc(2 + m.length);
          f.writeUInt16BE(rng.int(8) === 0 ? rng.int(65536) : m.length, 0);
          m.copy(f, 2);
          parts.push(f);
        } else {
          parts.push(rng.bytes(rng.int(300)));
        }
      }
      c.sock.write(Buffer.concat(parts));
    });
  }
  await Promise.all(clients.map((c) => c.waitClosed(5000)));
  t.pass('all 200 connections closed by the server (answered, refused, or idle)');
  for (const c of clients) for (const m of c.messages) if (m.length >= 12) t.ok(header(m).qr, 'answers are responses');
  const after = decode(await udp(s.port, query({ name: 'web.marathon.mesos' })));
  t.equal(after.answers.length, 2);
});
