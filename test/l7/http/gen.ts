/**
 * Random HTTP/1.1 request inputs for the fuzz and differential tests: well-formed pipelines of 1-3
 * requests (random methods, targets, field sets, Content-Length and chunked bodies with extensions and
 * trailers), and mutations of them — byte-level (flip, insert, delete, duplicate, truncate) and
 * structural (the smuggling classics: CL+CL, CL+TE, TE variants, obs-fold, bare CR/LF, bad chunk sizes,
 * HTTP/1.0 with TE, Host edge cases, absolute-form, request-line spacing, versions).
 */
import { METHODS } from '../../../src/l7/http/constants.js';
import { Rng } from './helpers.js';

export interface Chunk {
  size: string;
  ext: string;
  data: string;
  /** What follows the data: CRLF normally. */
  after: string;
}

export interface RequestSpec {
  method: string;
  target: string;
  version: string;
  /** Separator between the request-line parts. */
  sep: string;
  /** [name, value] — serialized as `${name}:${value}` exactly (include OWS in the value). */
  fields: [string, string][];
  body:
    | { kind: 'none' }
    | { kind: 'raw'; data: string }
    | { kind: 'chunked'; chunks: Chunk[]; lastSize: string; lastExt: string; trailers: [string, string][] };
  eol: string;
  /** Bytes before the request line (empty lines). */
  lead: string;
}

export interface Generated {
  input: Buffer;
  /** The mutations applied, for stats and failure messages. */
  labels: string[];
}

const PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@";
const QUERY_CHARS = `${PATH_CHARS}/?`;
const TCHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
const COMMON_METHODS = ['GET', 'GET', 'GET', 'GET', 'POST', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'];
const NAMES = [
  'Accept',
  'accept',
  'User-Agent',
  'user-agent',
  'Accept-Encoding',
  'Accept-Language',
  'Cookie',
  'Referer',
  'X-Request-ID',
  'X-Forwarded-For',
  'Cache-Control',
  'Authorization',
  'Content-Type',
  'content-type',
  'Origin',
  'If-None-Match',
  'DNT',
  'TE',
  'Via',
  'Pragma',
];
const HOSTS = [
  'example.com',
  'a',
  'api.internal:8080',
  '10.0.0.1',
  '10.0.0.1:80',
  '[::1]',
  '[::1]:8443',
  'xn--bcher-kva.example',
  'Example.COM',
  'h_1.local:1',
];

function str(rng: Rng, chars: string, min: number, max: number): string {
  const n = min + rng.int(max - min + 1);
  let s = '';
  for (let i = 0; i < n; i++) s += chars[rng.int(chars.length)];
  return s;
}

function bytes(rng: Rng, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.int(256));
  return s;
}

function ows(rng: Rng): string {
  return rng.chance(0.8) ? rng.pick(['', ' ', ' ', '\t']) : rng.pick(['  ', ' \t', '\t ']);
}

/** OWS after a framing field's value: SP only (HTAB there is refused, by llhttp too). */
function trailingSp(rng: Rng): string {
  return rng.pick(['', '', ' ', '  ']);
}

/** A field value: visible ASCII with inner spaces/tabs, sometimes obs-text. */
function value(rng: Rng): string {
  const n = rng.int(40);
  let s = '';
  for (let i = 0; i < n; i++) {
    const r = rng.int(100);
    if (r < 85) s += String.fromCharCode(0x21 + rng.int(0x7e - 0x21 + 1));
    else if (r < 93) s += ' ';
    else if (r < 96) s += '\t';
    else s += String.fromCharCode(0x80 + rng.int(0x80));
  }
  return s;
}

function path(rng: Rng): string {
  let p = '';
  const segs = rng.int(4);
  for (let i = 0; i < segs; i++) p += `/${str(rng, PATH_CHARS, 0, 12)}`;
  if (p === '') p = '/';
  if (rng.chance(0.3)) p += `?${str(rng, QUERY_CHARS, 0, 30)}`;
  if (rng.chance(0.05)) p += `%${rng.pick(['20', '2F', 'c3%a9', 'ff'])}`;
  return p;
}

function hex(rng: Rng, n: number): string {
  let h = n.toString(16);
  if (rng.chance(0.3)) h = h.toUpperCase();
  if (rng.chance(0.1)) h = '0'.repeat(1 + rng.int(4)) + h;
  return h;
}

function chunkExt(rng: Rng): string {
  if (!rng.chance(0.2)) return '';
  let e = '';
  const n = 1 + rng.int(2);
  for (let i = 0; i < n; i++) {
    e += `;${str(rng, TCHARS, 1, 6)}`;
    if (rng.chance(0.6)) e += `=${rng.chance(0.5) ? str(rng, TCHARS, 1, 6) : `"${rng.pick(['', 'a b', 'x\\"y', 'tab\there', 'q'])}"`}`;
  }
  return e;
}

/** A well-formed request. `last` = may carry Connection: close / an upgrade (ends a pipeline). */
export function request(rng: Rng, last: boolean): RequestSpec {
  const version = rng.chance(0.9) ? 'HTTP/1.1' : 'HTTP/1.0';
  let method = rng.chance(0.95) ? rng.pick(COMMON_METHODS) : rng.pick(METHODS.filter((m) => m !== 'CONNECT'));
  const host = rng.pick(HOSTS);
  let target = path(rng);
  const fields: [string, string][] = [];
  const hostField: [string, string] = [rng.pick(['Host', 'host', 'HOST']), ows(rng) + host + ows(rng)];
  if (version === 'HTTP/1.1' || rng.chance(0.5)) fields.push(hostField);
  const r = rng.int(100);
  if (r < 5 && fields.includes(hostField)) target = `${rng.pick(['http', 'https', 'HTTP'])}://${host}${path(rng)}`;
  else if (r < 7) {
    method = 'OPTIONS';
    target = '*';
  } else if (r < 8 && last && version === 'HTTP/1.1') {
    method = 'CONNECT';
    target = rng.pick(['example.com:443', '10.0.0.1:8443', '[::1]:443']);
  }
  const nFields = rng.int(8);
  for (let i = 0; i < nFields; i++) {
    const name = rng.chance(0.7) ? rng.pick(NAMES) : `X-${str(rng, TCHARS, 1, 10)}`;
    fields.push([name, ows(rng) + value(rng).trim() + ows(rng)]);
  }
  if (rng.chance(0.1)) fields.push([rng.pick(['Expect', 'expect']), ' 100-continue']);
  if (version === 'HTTP/1.0' && (!last || rng.chance(0.5))) fields.push(['Connection', ' keep-alive']);
  else if (last && rng.chance(0.1)) fields.push(['Connection', rng.pick([' close', ' Close', ' keep-alive, close'])]);
  else if (rng.chance(0.1))
    fields.push([rng.pick(['Connection', 'connection']), rng.pick([' keep-alive', ' Keep-Alive', ' TE', ' keep-alive, x-custom'])]);
  if (last && version === 'HTTP/1.1' && method !== 'CONNECT' && rng.chance(0.05)) {
    fields.push(['Connection', ' Upgrade'], ['Upgrade', ' websocket']);
  }
  let body: RequestSpec['body'] = { kind: 'none' };
  const b = rng.int(100);
  if (method !== 'CONNECT' && b < 30) {
    const data = bytes(rng, rng.int(300));
    fields.push([rng.pick(['Content-Length', 'content-length', 'CONTENT-LENGTH']), `${ows(rng)}${data.length}${trailingSp(rng)}`]);
    body = { kind: 'raw', data };
  } else if (method !== 'CONNECT' && b < 50 && version === 'HTTP/1.1') {
    fields.push([
      rng.pick(['Transfer-Encoding', 'transfer-encoding']),
      `${ows(rng)}${rng.pick(['chunked', 'chunked', 'Chunked', 'CHUNKED'])}${trailingSp(rng)}`,
    ]);
    const chunks: Chunk[] = [];
    const n = rng.int(4);
    for (let i = 0; i < n; i++) {
      const data = bytes(rng, 1 + rng.int(100));
      chunks.push({ size: hex(rng, data.length), ext: chunkExt(rng), data, after: '\r\n' });
    }
    const trailers: [string, string][] = [];
    if (rng.chance(0.2)) trailers.push([rng.pick(['X-Checksum', 'Server-Timing', 'x-t']), ` ${str(rng, TCHARS, 1, 16)}`]);
    body = { kind: 'chunked', chunks, lastSize: rng.chance(0.9) ? '0' : '000', lastExt: chunkExt(rng), trailers };
  }
  // Shuffle the fields so Host, framing and the rest come in any order.
  for (let i = fields.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [fields[i], fields[j]] = [fields[j] as [string, string], fields[i] as [string, string]];
  }
  return { method, target, version, sep: ' ', fields, body, eol: '\r\n', lead: '' };
}

export function serialize(r: RequestSpec): string {
  let s = `${r.lead}${r.method}${r.sep}${r.target}${r.sep}${r.version}${r.eol}`;
  for (const [n, v] of r.fields) s += `${n}:${v}${r.eol}`;
  s += r.eol;
  if (r.body.kind === 'raw') s += r.body.data;
  else if (r.body.kind === 'chunked') {
    for (const c of r.body.chunks) s += `${c.size}${c.ext}\r\n${c.data}${c.after}`;
    s += `${r.body.lastSize}${r.body.lastExt}\r\n`;
    for (const [n, v] of r.body.trailers) s += `${n}:${v}\r\n`;
    s += '\r\n';
  }
  return s;
}

/** A pipeline of 1-3 well-formed requests. */
export function pipeline(rng: Rng): RequestSpec[] {
  const n = 1 + rng.int(3);
  return Array.from({ length: n }, (_, i) => request(rng, i === n - 1));
}

// ---------------------------------------------------------------------------------------------------
// Structural mutations: each edits one request of the pipeline and names itself.

type Mutator = (rng: Rng, r: RequestSpec) => string;

const TE_VARIANTS = [
  'chunked, gzip',
  'gzip, chunked',
  'Chunked',
  ' chunked',
  'chunked ',
  'xchunked',
  'chunkedx',
  'chunked, chunked',
  ',chunked',
  'chunked,',
  'identity',
  'gzip',
  'chunked;q=1',
  '"chunked"',
  'chunked\t',
  'ch unked',
  'chunked\u000b',
  '',
];
const CL_VARIANTS = [
  '+1',
  '-1',
  '1 1',
  '1,1',
  '0x1',
  '1.0',
  '',
  ' ',
  '01',
  '00',
  '9007199254740991',
  '9007199254740992',
  '18446744073709551616',
  '1\u00a0',
  '١',
];
const HOST_VARIANTS = [
  '',
  'a@b',
  'user@example.com',
  'a/b',
  'a b',
  'a\tb',
  'example.com:',
  'example.com:0',
  'example.com:65535',
  'example.com:65536',
  'example.com:080',
  'example.com:123456',
  ':80',
  '[::1',
  '::1',
  '[::1]x',
  '[v1.x]',
  'a%20b',
  'a%2',
  'a_b-c~d.e',
  'a,b',
  'exa\u00e9mple',
  '[]',
  '[::ffff:10.0.0.1]:1',
];
const CHUNK_SIZES = [
  ' 5',
  '5 ',
  '0x5',
  '-5',
  '',
  'g',
  'fffffffffffffffff',
  '00000000000000005',
  '0000000000000005',
  '20000000000000',
  '1fffffffffffff',
  '5\t',
  '5;',
  '5;a=',
  '5;=b',
  '5;a="b',
  '5; a=b',
  '5;a =b',
  '5;a="\u0001"',
  '5;a=b;c',
  '5;a="x\\\u0001"',
];

const MUTATORS: [string, Mutator][] = [
  [
    'dup-cl',
    (rng, r) => {
      const n = rng.int(10);
      r.fields.push(['Content-Length', ` ${n}`], [rng.pick(['Content-Length', 'content-length']), ` ${rng.chance(0.5) ? n : n + 1}`]);
      r.body = { kind: 'raw', data: 'x'.repeat(n) };
      return 'dup-cl';
    },
  ],
  [
    'cl-te',
    (rng, r) => {
      r.fields.push(['Content-Length', ' 3'], ['Transfer-Encoding', ' chunked']);
      r.body = rng.chance(0.5)
        ? { kind: 'raw', data: 'abc' }
        : { kind: 'chunked', chunks: [{ size: '3', ext: '', data: 'abc', after: '\r\n' }], lastSize: '0', lastExt: '', trailers: [] };
      return 'cl-te';
    },
  ],
  [
    'te-variant',
    (rng, r) => {
      r.fields = r.fields.filter(([n]) => !/^(content-length|transfer-encoding)$/i.test(n));
      const v = rng.pick(TE_VARIANTS);
      r.fields.push([rng.pick(['Transfer-Encoding', 'transfer-encoding', 'Transfer-encoding']), ` ${v}`]);
      r.body = { kind: 'chunked', chunks: [{ size: '3', ext: '', data: 'abc', after: '\r\n' }], lastSize: '0', lastExt: '', trailers: [] };
      return `te:${JSON.stringify(v)}`;
    },
  ],
  [
    'te-twice',
    (rng, r) => {
      r.fields = r.fields.filter(([n]) => !/^(content-length|transfer-encoding)$/i.test(n));
      r.fields.push(['Transfer-Encoding', rng.pick([' gzip', ' chunked'])], ['Transfer-Encoding', ' chunked']);
      r.body = { kind: 'chunked', chunks: [{ size: '3', ext: '', data: 'abc', after: '\r\n' }], lastSize: '0', lastExt: '', trailers: [] };
      return 'te-twice';
    },
  ],
  [
    'cl-variant',
    (rng, r) => {
      r.fields = r.fields.filter(([n]) => !/^(content-length|transfer-encoding)$/i.test(n));
      const v = rng.pick(CL_VARIANTS);
      r.fields.push(['Content-Length', ` ${v}`]);
      r.body = { kind: 'raw', data: 'a' };
      return `cl:${JSON.stringify(v)}`;
    },
  ],
  [
    'http10-te',
    (_rng, r) => {
      r.version = 'HTTP/1.0';
      r.fields = r.fields.filter(([n]) => !/^(content-length|transfer-encoding)$/i.test(n));
      r.fields.push(['Transfer-Encoding', ' chunked']);
      r.body = { kind: 'chunked', chunks: [{ size: '3', ext: '', data: 'abc', after: '\r\n' }], lastSize: '0', lastExt: '', trailers: [] };
      return 'http10-te';
    },
  ],
  [
    'obs-fold',
    (rng, r) => {
      if (r.fields.length === 0) r.fields.push(['X-A', ' b']);
      const f = r.fields[rng.int(r.fields.length)] as [string, string];
      f[1] += `\r\n${rng.pick([' ', '\t', '  '])}folded`;
      return 'obs-fold';
    },
  ],
  [
    'space-first-line',
    (rng, r) => {
      r.fields.unshift([`${rng.pick([' ', '\t'])}X-A`, ' b']);
      return 'space-first-line';
    },
  ],
  [
    'space-before-colon',
    (rng, r) => {
      r.fields.push([`${rng.pick(['Host', 'Content-Length', 'X-A', 'Transfer-Encoding'])}${rng.pick([' ', '\t'])}`, ' 1']);
      return 'space-before-colon';
    },
  ],
  [
    'bad-name',
    (rng, r) => {
      r.fields.push([rng.pick(['', 'X A', 'X\u0000', 'X"', 'X(', 'é', 'X/Y', 'X@', '[x]', 'X\u007f']), ' 1']);
      return 'bad-name';
    },
  ],
  [
    'bad-value',
    (rng, r) => {
      r.fields.push(['X-V', ` a${rng.pick(['\u0000', '\u0001', '\u001f', '\u007f', '\r', '\n', '\u000b', '\u000c'])}b`]);
      return 'bad-value';
    },
  ],
  [
    'eol',
    (rng, r) => {
      r.eol = rng.pick(['\n', '\r', '\r\r\n', '\n\r']);
      return `eol:${JSON.stringify(r.eol)}`;
    },
  ],
  [
    'lead',
    (rng, r) => {
      r.lead = rng.pick(['\r\n', '\r\n\r\n', '\n', '\r', ' ', '\t', '\r\n\n']);
      return `lead:${JSON.stringify(r.lead)}`;
    },
  ],
  [
    'request-line',
    (rng, r) => {
      const k = rng.int(6);
      if (k === 0) r.sep = rng.pick(['  ', '\t', ' \t']);
      else if (k === 1) r.method = rng.pick(['get', 'Get', 'FOO', 'G T', 'GET\u0000', 'PRI', 'BREW', 'M-SEARCH', 'G(ET', '']);
      else if (k === 2)
        r.version = rng.pick([
          'HTTP/1.2',
          'HTTP/2.0',
          'HTTP/0.9',
          'HTTP/1',
          'http/1.1',
          'HTTP/1.1 ',
          'HTTP/11',
          'HTTP/1.10',
          'HTTP/3.0',
          'HTTPS/1.1',
          '',
        ]);
      else if (k === 3)
        r.target = rng.pick([
          '',
          '*',
          'a',
          '/a b',
          '/a#b',
          '/\u00e9',
          '/\u0001',
          '//x',
          '/%',
          '/a?b=c#',
          'ftp://x/',
          'http://',
          'http:///',
          'http://a@b/',
          '\\x',
        ]);
      else if (k === 4) r.target = `${r.target}${rng.pick(['"', '{', '|', '}', '^', '`', '<', '>', '\\'])}`;
      else r.target = `/${'a'.repeat(rng.pick([8190, 8191, 8192, 8193, 9000]))}`;
      return `request-line:${k}`;
    },
  ],
  [
    'host',
    (rng, r) => {
      r.fields = r.fields.filter(([n]) => n.toLowerCase() !== 'host');
      const k = rng.int(4);
      if (k === 0) return 'host:missing';
      if (k === 1) {
        r.fields.push(['Host', ' a'], [rng.pick(['Host', 'host']), rng.pick([' a', ' b'])]);
        return 'host:dup';
      }
      const v = rng.pick(HOST_VARIANTS);
      r.fields.push(['Host', ` ${v}`]);
      return `host:${JSON.stringify(v)}`;
    },
  ],
  [
    'absolute-form',
    (rng, r) => {
      const auth = rng.pick(['example.com', 'example.com:80', 'EXAMPLE.com', 'other.com', 'a@example.com', '[::1]:80', 'example.com:']);
      r.target = `${rng.pick(['http', 'https', 'HtTp'])}://${auth}${rng.pick(['', '/', '/p?q', '?q'])}`;
      r.fields = r.fields.filter(([n]) => n.toLowerCase() !== 'host');
      if (rng.chance(0.9)) r.fields.push(['Host', ` ${rng.pick(['example.com', 'example.com:80', 'Example.Com'])}`]);
      return 'absolute-form';
    },
  ],
  [
    'chunk-size',
    (rng, r) => {
      const size = rng.pick(CHUNK_SIZES);
      r.fields = r.fields.filter(([n]) => !/^(content-length|transfer-encoding)$/i.test(n));
      r.fields.push(['Transfer-Encoding', ' chunked']);
      r.body = { kind: 'chunked', chunks: [{ size, ext: '', data: 'abcde', after: '\r\n' }], lastSize: '0', lastExt: '', trailers: [] };
      return `chunk-size:${JSON.stringify(size)}`;
    },
  ],
  [
    'chunk-crlf',
    (rng, r) => {
      r.fields = r.fields.filter(([n]) => !/^(content-length|transfer-encoding)$/i.test(n));
      r.fields.push(['Transfer-Encoding', ' chunked']);
      const after = rng.pick(['', '\n', '\r', 'x\r\n', '\r\r\n', ' \r\n']);
      r.body = { kind: 'chunked', chunks: [{ size: '3', ext: '', data: 'abc', after }], lastSize: '0', lastExt: '', trailers: [] };
      return `chunk-crlf:${JSON.stringify(after)}`;
    },
  ],
  [
    'trailer',
    (rng, r) => {
      r.fields = r.fields.filter(([n]) => !/^(content-length|transfer-encoding)$/i.test(n));
      r.fields.push(['Transfer-Encoding', ' chunked']);
      const t = rng.pick<[string, string]>([
        ['X-T', ' ok'],
        ['X T', ' bad'],
        ['X-T', ' a\u0000'],
        ['X-T', ' a\r\n b'],
        ['Content-Length', ' 5'],
        ['', ' v'],
      ]);
      r.body = { kind: 'chunked', chunks: [{ size: '3', ext: '', data: 'abc', after: '\r\n' }], lastSize: '0', lastExt: '', trailers: [t] };
      return 'trailer';
    },
  ],
  [
    'upgrade',
    (rng, r) => {
      r.fields.push(['Connection', rng.pick([' upgrade', ' Upgrade', ' keep-alive, upgrade'])], ['Upgrade', ' websocket']);
      if (rng.chance(0.5)) r.version = 'HTTP/1.0';
      return 'upgrade';
    },
  ],
  [
    'connection',
    (rng, r) => {
      r.fields.push([
        'Connection',
        ` ${rng.pick(['close', 'a b', 'keep-alive;x', '"close"', ', close', 'close,,keep-alive', '', 'upgrade'])}`,
      ]);
      return 'connection';
    },
  ],
  [
    'many-fields',
    (rng, r) => {
      const n = rng.pick([99, 100, 101, 150]);
      for (let i = 0; i < n; i++) r.fields.push([`X-F${i}`, ' v']);
      return `many-fields:${n}`;
    },
  ],
  [
    'big-head',
    (rng, r) => {
      r.fields.push(['X-Big', ` ${'b'.repeat(rng.pick([15000, 16300, 17000, 20000]))}`]);
      return 'big-head';
    },
  ],
];

const INTERESTING = [0x0d, 0x0a, 0x00, 0x20, 0x09, 0x3a, 0x2c, 0x3b, 0x7f, 0x80, 0xff, 0x61, 0x30, 0x22, 0x5c];

/** Byte-level mutation of a serialized input. */
function mutateBytes(rng: Rng, s: Buffer): [Buffer, string] {
  const k = rng.int(5);
  const at = rng.int(s.length + 1);
  const b = (): number => (rng.chance(0.7) ? rng.pick(INTERESTING) : rng.int(256));
  switch (k) {
    case 0: {
      if (s.length === 0) return [s, 'flip'];
      const c = Buffer.from(s);
      c[Math.min(at, s.length - 1)] = b();
      return [c, 'flip'];
    }
    case 1:
      return [Buffer.concat([s.subarray(0, at), Buffer.from([b()]), s.subarray(at)]), 'insert'];
    case 2:
      return [Buffer.concat([s.subarray(0, at), s.subarray(at + 1 + rng.int(3))]), 'delete'];
    case 3: {
      const len = 1 + rng.int(20);
      return [Buffer.concat([s.subarray(0, at), s.subarray(at, at + len), s.subarray(at)]), 'duplicate'];
    }
    default:
      return [s.subarray(0, at), 'truncate'];
  }
}

/**
 * One input: a well-formed pipeline (≈40%), or one with 1-2 structural mutations (≈40%), or with 1-3
 * byte-level mutations (≈20%).
 */
export function generate(rng: Rng): Generated {
  const reqs = pipeline(rng);
  const labels: string[] = [];
  const r = rng.int(100);
  if (r >= 40 && r < 80) {
    const n = 1 + rng.int(2);
    for (let i = 0; i < n; i++) {
      const [name, mut] = rng.pick(MUTATORS);
      labels.push(mut(rng, rng.pick(reqs)) || name);
    }
  }
  let input: Buffer = Buffer.from(reqs.map(serialize).join(''), 'latin1');
  if (r >= 80) {
    const n = 1 + rng.int(3);
    for (let i = 0; i < n; i++) {
      const [next, label] = mutateBytes(rng, input);
      input = next;
      labels.push(label);
    }
  }
  return { input, labels: labels.length ? labels : ['well-formed'] };
}

/** Random garbage: bytes from a small alphabet of HTTP-ish pieces, or uniform noise. */
export function garbage(rng: Rng): Buffer {
  if (rng.chance(0.3)) return Buffer.from(bytes(rng, rng.int(200)), 'latin1');
  const pieces = [
    'GET',
    'POST',
    ' ',
    '/',
    'HTTP/1.1',
    'HTTP/1.0',
    '\r\n',
    '\n',
    '\r',
    ':',
    'Host',
    'Content-Length',
    'Transfer-Encoding',
    'chunked',
    '0',
    '5',
    'a',
    ';',
    '=',
    '"',
    '\\',
    '\t',
    ',',
    '\u0000',
    '\u0080',
    'ffffffff',
    'Connection',
    'upgrade',
    'Upgrade',
    'close',
    'HTTP/1.1 200 OK',
  ];
  let s = '';
  const n = rng.int(60);
  for (let i = 0; i < n; i++) s += rng.pick(pieces);
  return Buffer.from(s, 'latin1');
}
