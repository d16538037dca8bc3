import t from 'tap';
import { encodeV1, encodeV2, parseProxyHeader, proxyPrefixVerdict, V2_SIGNATURE } from '../../src/l4/proxy-protocol.js';

const src = { address: '192.0.2.10', port: 51000 };
const dst = { address: '11.0.0.7', port: 80 };

t.test('v1: encode', async (t) => {
  t.equal(encodeV1(src, dst).toString(), 'PROXY TCP4 192.0.2.10 11.0.0.7 51000 80\r\n');
  t.equal(
    encodeV1({ address: '::ffff:192.0.2.10', port: 1 }, { address: '::ffff:11.0.0.7', port: 2 }).toString(),
    'PROXY TCP4 192.0.2.10 11.0.0.7 1 2\r\n',
    'v4-mapped is v4',
  );
  t.equal(
    encodeV1({ address: '2001:db8::1', port: 1 }, { address: 'fd01:c::5', port: 2 }).toString(),
    'PROXY TCP6 2001:db8::1 fd01:c::5 1 2\r\n',
  );
  t.equal(
    encodeV1({ address: '2001:db8::1', port: 1 }, dst).toString(),
    'PROXY TCP6 2001:db8::1 ::ffff:11.0.0.7 1 80\r\n',
    'mixed families: TCP6, v4 mapped',
  );
  t.equal(encodeV1({ address: '', port: 0 }, dst).toString(), 'PROXY UNKNOWN\r\n');
});

t.test('v2: encode → parse round trip, byte layout', async (t) => {
  const b = encodeV2(src, dst, 'tcp');
  t.equal(b.length, 28);
  t.ok(b.subarray(0, 12).equals(V2_SIGNATURE));
  t.equal(b[12], 0x21, 'version 2, PROXY');
  t.equal(b[13], 0x11, 'TCP over IPv4');
  t.equal(b.readUInt16BE(14), 12);
  t.same([...b.subarray(16, 20)], [192, 0, 2, 10]);
  t.equal(b.readUInt16BE(24), 51000);
  t.match(parseProxyHeader(b), { kind: 'ok', version: 2, length: 28, local: false, protocol: 'tcp', source: src, destination: dst });
  const u6 = encodeV2({ address: '2001:db8::1', port: 53 }, { address: 'fd01:c::5', port: 5353 }, 'udp');
  t.equal(u6[13], 0x22, 'UDP over IPv6');
  t.match(parseProxyHeader(u6), {
    kind: 'ok',
    protocol: 'udp',
    source: { address: '2001:db8::1', port: 53 },
    destination: { address: 'fd01:c::5', port: 5353 },
  });
});

t.test('parse: v1 accepted forms', async (t) => {
  const ok: Array<[string, object]> = [
    [
      'PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nrest',
      { length: 38, source: { address: '1.2.3.4', port: 1111 }, destination: { address: '5.6.7.8', port: 2222 } },
    ],
    ['PROXY TCP6 ::1 2001:db8::2 1 65535\r\n', { source: { address: '::1', port: 1 } }],
    ['PROXY UNKNOWN\r\n', { local: true, length: 15 }],
    ['PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n', { local: true }],
  ];
  for (const [text, want] of ok) t.match(parseProxyHeader(Buffer.from(text)), { kind: 'ok', version: 1, ...want }, JSON.stringify(text));
});

t.test('parse: incomplete until the header is whole, byte by byte', async (t) => {
  for (const whole of [Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n'), encodeV2(src, dst)]) {
    for (let i = 0; i < whole.length; i++) {
      const r = parseProxyHeader(whole.subarray(0, i));
      if (r.kind !== 'incomplete') t.fail(`prefix of ${i} bytes: ${r.kind}`);
    }
    t.equal(parseProxyHeader(whole).kind, 'ok');
  }
});

t.test('parse: refused forms', async (t) => {
  const bad: Array<[string, Buffer]> = [
    ['not a header', Buffer.from('GET / HTTP/1.1\r\n')],
    ['v1 lowercase', Buffer.from('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n')],
    ['v1 unknown protocol', Buffer.from('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n')],
    ['v1 family mismatch', Buffer.from('PROXY TCP4 ::1 5.6.7.8 1 2\r\n')],
    ['v1 bad address', Buffer.from('PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n')],
    ['v1 port too big', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n')],
    ['v1 leading zero port', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n')],
    ['v1 extra field', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n')],
    ['v1 double space', Buffer.from('PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n')],
    ['v1 no CRLF in 107 bytes', Buffer.from(`PROXY TCP6 ${'a'.repeat(120)}`)],
    ['v2 version 1', Buffer.concat([V2_SIGNATURE, Buffer.from([0x11, 0x11, 0, 12]), Buffer.alloc(12)])],
    ['v2 command 2', Buffer.concat([V2_SIGNATURE, Buffer.from([0x22, 0x11, 0, 12]), Buffer.alloc(12)])],
    ['v2 unknown family', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x41, 0, 12]), Buffer.alloc(12)])],
    ['v2 truncated v4', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, 4]), Buffer.alloc(4)])],
    ['v2 truncated v6', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x21, 0, 12]), Buffer.alloc(12)])],
    ['v2 too long', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])])],
  ];
  for (const [what, buf] of bad) t.equal(parseProxyHeader(buf).kind, 'invalid', what);
  t.match(
    parseProxyHeader(Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0, 0])])),
    { kind: 'ok', local: true, length: 16 },
    'v2 LOCAL',
  );
  t.match(
    parseProxyHeader(Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0, 20]), Buffer.alloc(20)])),
    { kind: 'ok', length: 36 },
    'v2 TLVs after the addresses are skipped',
  );
});

t.test('untrusted inspection verdicts', async (t) => {
  t.equal(proxyPrefixVerdict(Buffer.from('GET /')), 'data');
  t.equal(proxyPrefixVerdict(Buffer.from('P')), 'undecided');
  t.equal(proxyPrefixVerdict(Buffer.from('POST')), 'data', 'diverges at the second byte');
  t.equal(proxyPrefixVerdict(Buffer.from('PROXY')), 'undecided');
  t.equal(proxyPrefixVerdict(Buffer.from('PROXY ')), 'proxy');
  t.equal(proxyPrefixVerdict(V2_SIGNATURE.subarray(0, 5)), 'undecided');
  t.equal(proxyPrefixVerdict(V2_SIGNATURE), 'proxy');
  t.equal(proxyPrefixVerdict(Buffer.from('\r\n\r\nX')), 'data');
});
