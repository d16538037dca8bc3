import t from 'tap';
import ipaddr from 'ipaddr.js';
import { formatListen, normalIPv4Bytes, parseAddress, parseCidr, parseDuration, parseListen, parseSize } from '../../src/model/parse.js';
import type { Parsed } from '../../src/model/parse.js';

function value<T>(p: Parsed<T>): T | undefined {
  return p.ok ? p.value : undefined;
}

t.test('parseDuration', async (t) => {
  const ok: Array<[string, number]> = [
    ['1m30s', 90_000],
    ['250ms', 250],
    ['2s', 2000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['0s', 0],
    ['1h2m3s4ms', 3_723_004],
  ];
  for (const [text, ms] of ok) t.equal(value(parseDuration(text)), ms, text);
  for (const bad of ['', '2', '2 s', 's', '-1s', '1d', '1.s', 'ms', '1s ', ' 1s', '1S']) {
    const r = parseDuration(bad);
    t.notOk(r.ok, JSON.stringify(bad));
    if (!r.ok) t.match(r.error, /duration/);
  }
  t.notOk(parseDuration(5 as unknown as string).ok, 'a number is refused: a unit is always written');
});

t.test('parseSize', async (t) => {
  const ok: Array<[string | number, number]> = [
    [1048576, 1048576],
    ['1048576', 1048576],
    ['512k', 512 * 1024],
    ['16KiB', 16 * 1024],
    ['10MiB', 10 * 1024 * 1024],
    ['10mb', 10 * 1024 * 1024],
    ['1g', 1024 ** 3],
    ['0', 0],
    [' 2 MiB ', 2 * 1024 * 1024],
  ];
  for (const [text, bytes] of ok) t.equal(value(parseSize(text)), bytes, String(text));
  for (const bad of ['', 'MiB', '10XB', '-1', '1e3', '10 M iB'] as const) t.notOk(parseSize(bad).ok, bad);
  t.notOk(parseSize(-1).ok);
  t.notOk(parseSize(1.5).ok);
});

t.test('parseAddress', async (t) => {
  t.equal(value(parseAddress('127.0.0.1')), '127.0.0.1');
  t.equal(value(parseAddress('::1')), '::1');
  t.equal(value(parseAddress('[::1]')), '::1');
  t.equal(value(parseAddress('FD00:0:0:0:0:0:0:1')), 'fd00::1');
  t.equal(value(parseAddress('2001:db8:0:0:1:0:0:1')), '2001:db8::1:0:0:1');
  for (const bad of ['', 'localhost', '1.2.3', '256.1.1.1', '10.0.0.1/8', '::g', '0x7f.0.0.1']) {
    t.notOk(parseAddress(bad).ok, JSON.stringify(bad));
  }
});

t.test('parseAddress: a dotted quad in normal form (the fast path) reads as ipaddr.js reads it', async (t) => {
  const quads = ['0.0.0.0', '255.255.255.255', '10.0.0.1', '1.2.3.4', '100.200.250.9', '99.249.199.0'];
  for (let i = 0; i < 256; i += 17) quads.push(`${i}.${255 - i}.${(i * 7) % 256}.${(i * 13) % 256}`);
  for (const q of quads) {
    t.equal(value(parseAddress(q)), ipaddr.IPv4.parse(q).toString(), q);
    t.same(normalIPv4Bytes(q), ipaddr.IPv4.parse(q).toByteArray(), `${q} bytes`);
  }
  // Not in normal form: read (or refused) by ipaddr.js as before, never taken as written.
  t.equal(value(parseAddress(' 10.0.0.1 ')), '10.0.0.1', 'trimmed');
  for (const q of ['010.0.0.1', '10.00.0.1', '256.0.0.1', '1.2.3.04', '1.2.3.4.']) {
    t.equal(normalIPv4Bytes(q), undefined, `${q}: not normal`);
    const p = parseAddress(q);
    if (p.ok) t.not(p.value, q, `${q} is normalised`);
  }
});

t.test('parseListen / formatListen', async (t) => {
  t.same(value(parseListen('127.0.0.1:8080')), { host: '127.0.0.1', port: 8080, family: 4 });
  t.same(value(parseListen('[::1]:8080')), { host: '::1', port: 8080, family: 6 });
  t.same(value(parseListen(':8080')), { host: '0.0.0.0', port: 8080, family: 4 });
  t.same(value(parseListen('0.0.0.0:0')), { host: '0.0.0.0', port: 0, family: 4 });
  for (const bad of ['127.0.0.1', '127.0.0.1:', '127.0.0.1:65536', '::1:8080', 'localhost:80', '[::1]', '1.2.3.4:80a']) {
    t.notOk(parseListen(bad).ok, JSON.stringify(bad));
  }
  const v6 = parseListen('::1:8080');
  if (!v6.ok) t.match(v6.error, /brackets/);
  t.equal(formatListen({ host: '::1', port: 80 }), '[::1]:80');
  t.equal(formatListen({ host: '10.0.0.1', port: 80 }), '10.0.0.1:80');
});

t.test('parseCidr', async (t) => {
  t.equal(value(parseCidr('10.0.0.0/8')), '10.0.0.0/8');
  t.equal(value(parseCidr('10.1.2.3/8')), '10.0.0.0/8', 'host bits cleared');
  t.equal(value(parseCidr('::1/128')), '::1/128');
  t.equal(value(parseCidr('FD00::/8')), 'fd00::/8');
  t.equal(value(parseCidr('192.168.1.1')), '192.168.1.1/32', 'a bare address is a host prefix');
  t.equal(value(parseCidr('::1')), '::1/128');
  for (const bad of ['', '10.0.0.0/33', '::/129', 'x/8', '10.0.0.0/']) t.notOk(parseCidr(bad).ok, JSON.stringify(bad));
});

t.test('parseAddress takes exactly the IPv4 forms ipaddr.js calls four-part decimal, as they are written', async (t) => {
  const parts = [
    '0',
    '1',
    '9',
    '10',
    '99',
    '100',
    '199',
    '200',
    '249',
    '250',
    '255',
    '256',
    '299',
    '999',
    '1000',
    '00',
    '01',
    '010',
    '',
    '-1',
    'a',
    ' 1',
  ];
  let checked = 0;
  const wrong: string[] = [];
  for (const a of parts)
    for (const b of ['0', '255', '256', '01', ''])
      for (const text of [`${a}.${b}.0.1`, `1.${a}.2.${b}`, `${a}.1.1`, `${a}.1.1.1.1`, `${b}.2.3.${a}`]) {
        checked++;
        const want = ipaddr.IPv4.isValidFourPartDecimal(text.trim());
        const got = parseAddress(text);
        if (want !== (got.ok && !got.value.includes(':')) || (got.ok && want && got.value !== text.trim())) wrong.push(text);
      }
  t.same(wrong, [], `${checked} forms agree`);
});
