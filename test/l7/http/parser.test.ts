/**
 * The parser's rules, one row each: input bytes → expected error (code and status) or expected heads and
 * bodies. Every row is also fed one byte at a time and in random splits, which must give an identical
 * transcript (same heads, bodies, trailers, error, and stop offset).
 */
import t from 'tap';
import { HttpParser, Kind, headerValue, isToken, isTokenChar, type MessageHead } from '../../../src/l7/http/parser.js';
import { ParseError, ParseErrors, type ParseErrorCode } from '../../../src/l7/http/errors.js';
import { comparable, cutsBytes, cutsRandom, feed, latin1, Rng, seedFromEnv, type FeedOptions, type Transcript } from './helpers.js';

interface Row {
  name: string;
  input: string;
  kind?: Kind;
  /** The expected error, or none. */
  error?: ParseErrorCode;
  /** Partial heads, in order (checked with t.match). */
  heads?: Partial<Record<keyof MessageHead, unknown>>[];
  bodies?: string[];
  trailers?: (string[] | undefined)[];
  /** Expected bytes consumed (upgrade / close stop points); checked when given. */
  consumed?: number;
  phase?: Transcript['phase'];
  opts?: FeedOptions;
}

const R = Kind.Request;
const S = Kind.Response;
const GET = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
const chunked = (body: string, head = ''): string => `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n${head}\r\n${body}`;
const withField = (line: string, version = '1.1'): string => `GET / HTTP/${version}\r\nHost: a\r\n${line}\r\n\r\n`;
const withCl = (v: string): string => `POST / HTTP/1.1\r\nHost: a\r\nContent-Length:${v}\r\n\r\nx`;
const withTe = (v: string): string => chunked('1\r\nx\r\n0\r\n\r\n').replace('Transfer-Encoding: chunked', `Transfer-Encoding:${v}`);
const withHost = (v: string): string => `GET / HTTP/1.1\r\nHost:${v}\r\n\r\n`;
const UPGRADE_HEAD = 'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
const CONNECT_HEAD = 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n';
const SWITCHING_HEAD = 'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n';

const ROWS: Row[] = [
  // ---- requests that parse
  {
    name: 'simple GET',
    input: 'GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n',
    heads: [
      {
        method: 'GET',
        target: '/a?b=c',
        versionMinor: 1,
        host: 'example.com',
        headers: ['Host', 'example.com', 'User-Agent', 'x'],
        contentLength: -1,
        chunked: false,
        keepAlive: true,
        upgrade: false,
        expectContinue: false,
        connectionTokens: [],
        headBytes: 57,
      },
    ],
    bodies: [''],
  },
  {
    name: 'names as sent, values OWS-trimmed, HTAB and obs-text kept inside',
    input: 'GET / HTTP/1.1\r\nhost:a\r\nX-Mixed-CASE: \t a\tb \xe9\xff \t\r\nEmpty:\r\nSpaces:   \r\n\r\n',
    heads: [{ headers: ['host', 'a', 'X-Mixed-CASE', 'a\tb \xe9\xff', 'Empty', '', 'Spaces', ''] }],
  },
  {
    name: 'POST with Content-Length body',
    input: 'POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello',
    heads: [{ method: 'POST', contentLength: 5 }],
    bodies: ['hello'],
  },
  {
    name: 'Content-Length: 0 and leading zeros',
    input: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n1234567',
    heads: [{ contentLength: 0 }, { contentLength: 7 }],
    bodies: ['', '1234567'],
  },
  {
    name: 'Content-Length at 2^53-1',
    input: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9007199254740991\r\n\r\nab',
    heads: [{ contentLength: 2 ** 53 - 1 }],
    bodies: ['ab'],
    opts: { finish: false },
  },
  {
    name: 'chunked with extensions and trailers',
    input: chunked('3;a=b;c="d \\" e"\r\nabc\r\n0A;x\r\n0123456789\r\n0;last=1\r\nX-Sum: 42\r\nX-Other:  y \r\n\r\n'),
    heads: [{ chunked: true, contentLength: -1 }],
    bodies: ['abc0123456789'],
    trailers: [['X-Sum', '42', 'X-Other', 'y']],
  },
  {
    name: 'chunked: upper-case hex, 16 digits with leading zeros, no trailers',
    input: chunked('000000000000000A\r\n0123456789\r\n0\r\n\r\n'),
    bodies: ['0123456789'],
    trailers: [undefined],
  },
  { name: 'Transfer-Encoding is case-insensitive', input: withTe(' Chunked'), heads: [{ chunked: true }], bodies: ['x'] },
  {
    name: 'pipelined requests complete in order',
    input: `${GET}POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\nHost: b\r\n\r\n`,
    heads: [{ target: '/' }, { target: '/2' }, { target: '/3', host: 'b' }],
    bodies: ['', 'hi', ''],
  },
  { name: 'empty lines before a request line are skipped', input: `\r\n\r\n${GET}\r\n${GET}`, heads: [{ target: '/' }, { target: '/' }] },
  {
    name: 'HTTP/1.0 without Host; not keep-alive: stops after the message',
    input: `GET / HTTP/1.0\r\n\r\n${GET}`,
    heads: [{ versionMinor: 0, host: undefined, keepAlive: false }],
    consumed: 18,
    phase: 'done',
  },
  {
    name: 'HTTP/1.0 keep-alive continues',
    input: `GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n${GET}`,
    heads: [{ keepAlive: true, connectionTokens: ['keep-alive'] }, {}],
  },
  {
    name: 'Connection: close stops after the message',
    input: `GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Foo\r\n\r\n${GET}`,
    heads: [{ keepAlive: false, connectionTokens: ['close', 'x-foo'] }],
    phase: 'done',
  },
  {
    name: 'Connection options from several fields, empty elements allowed',
    input: withField('Connection: ,keep-alive , TE,\r\nConnection: Upgrade'),
    heads: [{ connectionTokens: ['keep-alive', 'te', 'upgrade'], upgrade: false }],
  },
  { name: 'Expect: 100-continue', input: withField('Expect: 100-Continue'), heads: [{ expectContinue: true }] },
  {
    name: 'upgrade stops after the head',
    input: `${UPGRADE_HEAD}\x81\x00tunnel${GET}`,
    heads: [{ upgrade: true }],
    bodies: [''],
    consumed: UPGRADE_HEAD.length,
    phase: 'upgraded',
  },
  {
    name: 'an empty Upgrade is no upgrade',
    input: withField('Connection: upgrade\r\nUpgrade:'),
    heads: [{ upgrade: false }],
    phase: 'done',
  },
  {
    name: 'CONNECT stops after the head',
    input: `${CONNECT_HEAD}\x16\x03\x01`,
    heads: [{ method: 'CONNECT', target: 'example.com:443', upgrade: false }],
    consumed: CONNECT_HEAD.length,
    phase: 'upgraded',
  },
  {
    name: 'CONNECT to an IPv6 literal',
    input: 'CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n',
    heads: [{ target: '[::1]:8443' }],
    phase: 'upgraded',
  },
  { name: 'OPTIONS *', input: 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n', heads: [{ method: 'OPTIONS', target: '*' }] },
  {
    name: 'absolute-form matching Host (case-insensitive)',
    input: 'GET HTTP://Example.COM:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n',
    heads: [{ target: 'HTTP://Example.COM:8080/p?q' }],
  },
  { name: 'absolute-form https, no path', input: 'GET https://a?x HTTP/1.1\r\nHost: a\r\n\r\n', heads: [{ target: 'https://a?x' }] },
  { name: 'absolute-form in HTTP/1.0 without Host', input: 'GET http://a/ HTTP/1.0\r\n\r\n', heads: [{ host: undefined }] },
  {
    name: 'Host forms: empty, IPv6, IPv4:port, reg-name with sub-delims and pct-encoding',
    input: `${withHost('')}${withHost(' [::ffff:10.0.0.1]')}${withHost(' 10.0.0.1:65535')}${withHost(" a_b-c~d.e!$&'()*+,;=%2F")}`,
    heads: [{ host: '' }, { host: '[::ffff:10.0.0.1]' }, { host: '10.0.0.1:65535' }, { host: "a_b-c~d.e!$&'()*+,;=%2F" }],
  },
  {
    name: 'target characters a browser may leave unencoded',
    input: 'GET /a"{|}\\^`<>?x=[1] HTTP/1.1\r\nHost: a\r\n\r\n',
    heads: [{ target: '/a"{|}\\^`<>?x=[1]' }],
  },
  {
    name: 'every implemented method',
    input: ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'M-SEARCH', 'PROPFIND', 'QUERY']
      .map((m) => `${m} / HTTP/1.1\r\nHost: a\r\n\r\n`)
      .join(''),
    heads: ['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'M-SEARCH', 'PROPFIND', 'QUERY'].map((method) => ({ method })),
  },

  // ---- framing
  {
    name: 'Content-Length with Transfer-Encoding',
    input: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
    error: 'HPE_CL_AND_TE',
  },
  {
    name: 'Transfer-Encoding with Content-Length',
    input: 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n',
    error: 'HPE_CL_AND_TE',
  },
  {
    name: 'Transfer-Encoding in HTTP/1.0',
    input: 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    error: 'HPE_TE_IN_HTTP10',
  },
  {
    name: 'duplicate Content-Length, identical',
    input: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx',
    error: 'HPE_DUPLICATE_CONTENT_LENGTH',
  },
  {
    name: 'duplicate Content-Length, different',
    input: 'POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 1\r\nContent-Length: 2\r\n\r\nxx',
    error: 'HPE_DUPLICATE_CONTENT_LENGTH',
  },
  { name: 'Content-Length list', input: withCl(' 1,1'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length list with spaces', input: withCl(' 1, 1'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length with sign', input: withCl(' +1'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length negative', input: withCl(' -1'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length empty', input: withCl(' '), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length with inner space', input: withCl(' 1 1'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length hex', input: withCl(' 0x1'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length non-ASCII digit', input: withCl(' \xb9'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length over 2^53-1', input: withCl(' 9007199254740992'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length over 2^64', input: withCl(' 18446744073709551617'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length with a trailing HTAB', input: withCl(' 1\t'), error: 'HPE_INVALID_CONTENT_LENGTH' },
  { name: 'Content-Length with a leading HTAB and trailing SP is fine', input: withCl('\t1 '), bodies: ['x'] },
  {
    name: 'Transfer-Encoding final coding not chunked',
    input: withTe(' chunked, gzip'),
    error: 'HPE_INVALID_TRANSFER_ENCODING',
    heads: [],
  },
  { name: 'Transfer-Encoding gzip only', input: withTe(' gzip'), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  { name: 'Transfer-Encoding identity', input: withTe(' identity'), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  { name: 'Transfer-Encoding xchunked', input: withTe(' xchunked'), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  { name: 'Transfer-Encoding chunked twice in one field', input: withTe(' chunked, chunked'), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  {
    name: 'Transfer-Encoding chunked twice in two fields',
    input: chunked('0\r\n\r\n', 'Transfer-Encoding: chunked\r\n'),
    error: 'HPE_INVALID_TRANSFER_ENCODING',
  },
  {
    name: 'Transfer-Encoding chunked then gzip in two fields',
    input: chunked('0\r\n\r\n', 'Transfer-Encoding: gzip\r\n'),
    error: 'HPE_INVALID_TRANSFER_ENCODING',
  },
  { name: 'Transfer-Encoding empty element', input: withTe(' ,chunked'), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  { name: 'Transfer-Encoding trailing comma', input: withTe(' chunked,'), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  { name: 'Transfer-Encoding empty', input: withTe(''), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  { name: 'Transfer-Encoding with parameters', input: withTe(' chunked;q=1'), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  { name: 'Transfer-Encoding quoted', input: withTe(' "chunked"'), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  { name: 'Transfer-Encoding with a trailing HTAB', input: withTe(' chunked\t'), error: 'HPE_INVALID_TRANSFER_ENCODING' },
  {
    name: 'Transfer-Encoding gzip, chunked in a request: 501',
    input: withTe(' gzip, chunked'),
    error: 'HPE_TRANSFER_ENCODING_NOT_IMPLEMENTED',
  },

  // ---- line structure and fields
  { name: 'obs-fold', input: 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n', error: 'HPE_OBS_FOLD' },
  { name: 'obs-fold with HTAB', input: 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n', error: 'HPE_OBS_FOLD' },
  { name: 'whitespace right after the request line', input: 'GET / HTTP/1.1\r\n Host: a\r\n\r\n', error: 'HPE_OBS_FOLD' },
  { name: 'bare LF line endings', input: 'GET / HTTP/1.1\nHost: a\n\n', error: 'HPE_CR_EXPECTED' },
  { name: 'bare LF after a field', input: 'GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n', error: 'HPE_CR_EXPECTED' },
  { name: 'bare LF ending the head', input: 'GET / HTTP/1.1\r\nHost: a\r\n\n', error: 'HPE_CR_EXPECTED' },
  { name: 'bare LF before the request line', input: `\n${GET}`, error: 'HPE_CR_EXPECTED' },
  { name: 'bare CR in a value', input: 'GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n', error: 'HPE_LF_EXPECTED' },
  { name: 'bare CR ending a field', input: 'GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n', error: 'HPE_LF_EXPECTED' },
  { name: 'bare CR after the request line', input: 'GET / HTTP/1.1\rHost: a\r\n\r\n', error: 'HPE_LF_EXPECTED' },
  { name: 'bare CR ending the head', input: 'GET / HTTP/1.1\r\nHost: a\r\n\rX', error: 'HPE_LF_EXPECTED' },
  { name: 'bare CR before the request line', input: `\r${GET}`, error: 'HPE_LF_EXPECTED' },
  { name: 'CR CR LF', input: 'GET / HTTP/1.1\r\r\nHost: a\r\n\r\n', error: 'HPE_LF_EXPECTED' },
  { name: 'whitespace between name and colon', input: withField('Content-Length : 0'), error: 'HPE_INVALID_HEADER_TOKEN' },
  { name: 'HTAB between name and colon', input: withField('X-A\t: 0'), error: 'HPE_INVALID_HEADER_TOKEN' },
  { name: 'empty field name', input: withField(': x'), error: 'HPE_INVALID_HEADER_TOKEN' },
  { name: 'non-tchar in a name', input: withField('X(A): x'), error: 'HPE_INVALID_HEADER_TOKEN' },
  { name: 'non-ASCII in a name', input: withField('X\xe9: x'), error: 'HPE_INVALID_HEADER_TOKEN' },
  { name: 'a line without a colon', input: withField('NoColon'), error: 'HPE_INVALID_HEADER_TOKEN' },
  { name: 'NUL in a value', input: withField('X: a\x00b'), error: 'HPE_INVALID_HEADER_VALUE' },
  { name: 'CTL in a value', input: withField('X: a\x01b'), error: 'HPE_INVALID_HEADER_VALUE' },
  { name: 'VT in a value', input: withField('X: a\x0bb'), error: 'HPE_INVALID_HEADER_VALUE' },
  { name: 'DEL in a value', input: withField('X: a\x7fb'), error: 'HPE_INVALID_HEADER_VALUE' },

  // ---- request line
  { name: 'invalid method token', input: 'G(T / HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_METHOD' },
  { name: 'empty method', input: ' / HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_METHOD' },
  { name: 'method followed by HTAB', input: 'GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_METHOD' },
  { name: 'unknown method (a valid token): 501', input: 'BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_METHOD_NOT_IMPLEMENTED' },
  { name: 'methods are case-sensitive: 501', input: 'get / HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_METHOD_NOT_IMPLEMENTED' },
  { name: 'two SP after the method', input: 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'CTL in the target', input: 'GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'HTAB in the target', input: 'GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'SP in the target', input: 'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_VERSION' },
  { name: 'non-ASCII in the target', input: 'GET /\xe9 HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'fragment in the target', input: 'GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'target not starting with /', input: 'GET a HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: '* with a method other than OPTIONS', input: 'GET * HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: '*x with OPTIONS', input: 'OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'CONNECT with origin-form', input: 'CONNECT / HTTP/1.1\r\nHost: a:1\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'CONNECT without a port', input: 'CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'authority-form without CONNECT', input: 'GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'absolute-form with userinfo', input: 'GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'absolute-form with an empty authority', input: 'GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'absolute-form with another scheme', input: 'GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'no version (HTTP/0.9)', input: 'GET /\r\n\r\n', error: 'HPE_INVALID_URL' },
  { name: 'HTTP/1.2: 505', input: 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', error: 'HPE_VERSION_NOT_SUPPORTED' },
  { name: 'PRI (the HTTP/2 preface): 501', input: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', error: 'HPE_METHOD_NOT_IMPLEMENTED' },
  { name: 'HTTP/2.0 with a known method: 505', input: 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', error: 'HPE_VERSION_NOT_SUPPORTED' },
  { name: 'HTTP/0.9 spelled out: 505', input: 'GET / HTTP/0.9\r\n\r\n', error: 'HPE_VERSION_NOT_SUPPORTED' },
  { name: 'lower-case version', input: 'GET / http/1.1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_VERSION' },
  { name: 'version without minor', input: 'GET / HTTP/1\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_VERSION' },
  { name: 'two-digit minor', input: 'GET / HTTP/1.10\r\nHost: a\r\n\r\n', error: 'HPE_INVALID_VERSION' },
  { name: 'SP after the version', input: 'GET / HTTP/1.1 \r\nHost: a\r\n\r\n', error: 'HPE_INVALID_VERSION' },

  // ---- Host
  { name: 'missing Host in HTTP/1.1', input: 'GET / HTTP/1.1\r\nX: y\r\n\r\n', error: 'HPE_MISSING_HOST' },
  { name: 'two Host fields', input: 'GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n', error: 'HPE_DUPLICATE_HOST' },
  { name: 'Host with @', input: withHost(' u@a'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with /', input: withHost(' a/b'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with SP', input: withHost(' a b'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with HTAB', input: withHost(' a\tb'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with an empty port', input: withHost(' a:'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with port 65536', input: withHost(' a:65536'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with a 6-digit port', input: withHost(' a:000080'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with a non-numeric port', input: withHost(' a:http'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with only a port', input: withHost(' :80'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with an unclosed IPv6 literal', input: withHost(' [::1'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with an IPvFuture literal', input: withHost(' [v1.x]'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with a bad percent-encoding', input: withHost(' a%2'), error: 'HPE_INVALID_HOST' },
  { name: 'Host with non-ASCII', input: withHost(' \xe9.example'), error: 'HPE_INVALID_HOST' },
  { name: 'absolute-form authority differs from Host', input: 'GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n', error: 'HPE_HOST_MISMATCH' },
  {
    name: 'absolute-form port differs from Host (no default-port folding)',
    input: 'GET http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n',
    error: 'HPE_HOST_MISMATCH',
  },

  // ---- Connection / Upgrade
  { name: 'Connection not a token list', input: withField('Connection: close x'), error: 'HPE_INVALID_CONNECTION' },
  { name: 'Connection with HTAB', input: withField('Connection: close\t,x'), error: 'HPE_INVALID_CONNECTION' },
  {
    name: 'Connection: upgrade in HTTP/1.0',
    input: 'GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n',
    error: 'HPE_INVALID_UPGRADE',
  },

  // ---- chunked framing
  { name: 'chunk size not hex', input: chunked('g\r\n'), error: 'HPE_INVALID_CHUNK_SIZE' },
  { name: 'chunk size empty', input: chunked('\r\nabc\r\n'), error: 'HPE_INVALID_CHUNK_SIZE' },
  { name: 'chunk size with 0x', input: chunked('0x5\r\n'), error: 'HPE_INVALID_CHUNK_SIZE' },
  { name: 'chunk size negative', input: chunked('-5\r\n'), error: 'HPE_INVALID_CHUNK_SIZE' },
  { name: 'chunk size over 16 digits', input: chunked('00000000000000005\r\nabcde\r\n0\r\n\r\n'), error: 'HPE_INVALID_CHUNK_SIZE' },
  { name: 'chunk size of 2^53', input: chunked('20000000000000\r\n'), error: 'HPE_INVALID_CHUNK_SIZE' },
  { name: 'chunk size with leading SP', input: chunked(' 5\r\n'), error: 'HPE_INVALID_CHUNK_SIZE' },
  { name: 'chunk size with trailing SP', input: chunked('5 \r\n'), error: 'HPE_INVALID_CHUNK_SIZE' },
  { name: 'chunk size with trailing HTAB', input: chunked('5\t\r\n'), error: 'HPE_INVALID_CHUNK_SIZE' },
  { name: 'chunk size line ending in bare LF', input: chunked('5\nabcde\r\n'), error: 'HPE_CR_EXPECTED' },
  { name: 'chunk size line with bare CR', input: chunked('5\rabcde\r\n'), error: 'HPE_LF_EXPECTED' },
  { name: 'chunk extension without a name', input: chunked('5;\r\nabcde\r\n0\r\n\r\n'), error: 'HPE_INVALID_CHUNK_EXTENSION' },
  { name: 'chunk extension with an empty value', input: chunked('5;a=\r\nabcde\r\n0\r\n\r\n'), error: 'HPE_INVALID_CHUNK_EXTENSION' },
  { name: 'chunk extension with whitespace', input: chunked('5; a=b\r\nabcde\r\n0\r\n\r\n'), error: 'HPE_INVALID_CHUNK_EXTENSION' },
  {
    name: 'chunk extension with an unterminated quote',
    input: chunked('5;a="b\r\nabcde\r\n0\r\n\r\n'),
    error: 'HPE_INVALID_CHUNK_EXTENSION',
  },
  {
    name: 'chunk extension with a CTL in quotes',
    input: chunked('5;a="\x01"\r\nabcde\r\n0\r\n\r\n'),
    error: 'HPE_INVALID_CHUNK_EXTENSION',
  },
  {
    name: 'chunk extension with junk after quotes',
    input: chunked('5;a="b"c\r\nabcde\r\n0\r\n\r\n'),
    error: 'HPE_INVALID_CHUNK_EXTENSION',
  },
  {
    name: 'chunk extensions over the budget: 413',
    input: chunked(`1;${'a'.repeat(40)}\r\nx\r\n1;${'b'.repeat(40)}\r\nx\r\n0\r\n\r\n`),
    error: 'HPE_CHUNK_EXTENSIONS_OVERFLOW',
    opts: { limits: { maxHeaderBytes: 80 } },
  },
  { name: 'chunk data not followed by CRLF', input: chunked('3\r\nabcX\r\n0\r\n\r\n'), error: 'HPE_MISSING_CHUNK_CRLF' },
  { name: 'chunk data followed by bare LF', input: chunked('3\r\nabc\n0\r\n\r\n'), error: 'HPE_MISSING_CHUNK_CRLF' },
  { name: 'chunk data followed by bare CR', input: chunked('3\r\nabc\r0\r\n\r\n'), error: 'HPE_MISSING_CHUNK_CRLF' },
  { name: 'trailer with Content-Length', input: chunked('0\r\nContent-Length: 5\r\n\r\n'), error: 'HPE_INVALID_TRAILER' },
  { name: 'trailer with Transfer-Encoding', input: chunked('0\r\ntransfer-encoding: chunked\r\n\r\n'), error: 'HPE_INVALID_TRAILER' },
  { name: 'trailer with Host', input: chunked('0\r\nHost: b\r\n\r\n'), error: 'HPE_INVALID_TRAILER' },
  { name: 'trailer with Connection', input: chunked('0\r\nConnection: close\r\n\r\n'), error: 'HPE_INVALID_TRAILER' },
  { name: 'trailer obs-fold', input: chunked('0\r\nX: a\r\n b\r\n\r\n'), error: 'HPE_OBS_FOLD' },
  { name: 'trailer with a bad name', input: chunked('0\r\nX A: b\r\n\r\n'), error: 'HPE_INVALID_HEADER_TOKEN' },
  { name: 'trailer section ending in bare LF', input: chunked('0\r\n\n'), error: 'HPE_CR_EXPECTED' },

  // ---- limits
  {
    name: 'head at maxHeaderBytes',
    input: `GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(32)}\r\n\r\n`,
    heads: [{ headBytes: 64 }],
    opts: { limits: { maxHeaderBytes: 64 } },
  },
  {
    name: 'head over maxHeaderBytes: 431',
    input: `GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(33)}\r\n\r\n`,
    error: 'HPE_HEADER_OVERFLOW',
    opts: { limits: { maxHeaderBytes: 64 } },
  },
  {
    name: 'empty lines count against maxHeaderBytes',
    input: `\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(32)}\r\n\r\n`,
    error: 'HPE_HEADER_OVERFLOW',
    opts: { limits: { maxHeaderBytes: 64 } },
  },
  {
    name: 'trailer section over maxHeaderBytes: 431',
    input: chunked(`0\r\nX: ${'a'.repeat(80)}\r\n\r\n`),
    error: 'HPE_HEADER_OVERFLOW',
    opts: { limits: { maxHeaderBytes: 80 } },
  },
  {
    name: 'target at maxTargetBytes',
    input: `GET /${'a'.repeat(15)} HTTP/1.1\r\nHost: a\r\n\r\n`,
    heads: [{}],
    opts: { limits: { maxTargetBytes: 16 } },
  },
  {
    name: 'target over maxTargetBytes: 414',
    input: `GET /${'a'.repeat(16)} HTTP/1.1\r\nHost: a\r\n\r\n`,
    error: 'HPE_URI_TOO_LONG',
    opts: { limits: { maxTargetBytes: 16 } },
  },
  { name: 'maxHeaders fields', input: withField('A: 1\r\nB: 2'), heads: [{}], opts: { limits: { maxHeaders: 3 } } },
  {
    name: 'more than maxHeaders fields: 431',
    input: withField('A: 1\r\nB: 2\r\nC: 3'),
    error: 'HPE_TOO_MANY_HEADERS',
    opts: { limits: { maxHeaders: 3 } },
  },

  // ---- EOF
  { name: 'EOF in a head', input: 'GET / HTTP/1.1\r\nHost: a\r\n', error: 'HPE_INVALID_EOF_STATE' },
  { name: 'EOF in a head reports what is already wrong', input: 'GET / HTTP/1.1\r\nHost: a b\r\nX: y', error: 'HPE_INVALID_HOST' },
  {
    name: 'EOF in a body',
    input: 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabc',
    error: 'HPE_INVALID_EOF_STATE',
    bodies: ['abc'],
  },
  { name: 'EOF in chunked framing', input: chunked('3\r\nabc\r\n'), error: 'HPE_INVALID_EOF_STATE' },
  { name: 'EOF between messages is clean', input: `${GET}\r\n`, heads: [{}], phase: 'done' },

  // ---- responses
  {
    name: 'response with Content-Length',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi',
    heads: [{ status: 200, reason: 'OK', method: '', target: '', contentLength: 2, keepAlive: true }],
    bodies: ['hi'],
  },
  {
    name: 'reason phrase with spaces and obs-text; empty reason; missing SP',
    kind: S,
    input: 'HTTP/1.1 404 Not \xc9t\xe9 Found\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 \r\nContent-Length: 0\r\n\r\nHTTP/1.0 204\r\n\r\n',
    heads: [
      { status: 404, reason: 'Not \xc9t\xe9 Found' },
      { status: 200, reason: '' },
      { status: 204, reason: '', versionMinor: 0 },
    ],
  },
  {
    name: '1xx then 200',
    kind: S,
    input: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx',
    heads: [{ status: 100 }, { status: 103, headers: ['Link', '</a>'] }, { status: 200 }],
    bodies: ['', '', 'x'],
  },
  {
    name: 'Connection: close on a 1xx carries to the final response',
    kind: S,
    input: 'HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n',
    heads: [
      { status: 100, keepAlive: false },
      { status: 200, keepAlive: false },
    ],
    bodies: ['', 'x'],
    phase: 'done',
  },
  {
    name: '101 ends parsing',
    kind: S,
    input: `${SWITCHING_HEAD}\x81\x05hello`,
    heads: [{ status: 101, upgrade: true }],
    consumed: SWITCHING_HEAD.length,
    phase: 'upgraded',
  },
  {
    name: '204 has no body whatever its fields say',
    kind: S,
    input: 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx',
    heads: [{ status: 204, contentLength: 5 }, { status: 200 }],
    bodies: ['', 'x'],
  },
  {
    name: '304 has no body',
    kind: S,
    input: 'HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    heads: [{ status: 304 }, { status: 200 }],
    bodies: ['', ''],
  },
  {
    name: 'a response to HEAD has no body',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx',
    heads: [{ contentLength: 10 }, { contentLength: 1 }],
    bodies: ['', 'x'],
    opts: { expectNoBody: (i) => i === 0 },
  },
  {
    name: 'a 2xx answer to CONNECT is a tunnel',
    kind: S,
    input: 'HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03',
    heads: [{ status: 200, upgrade: true }],
    consumed: 39,
    phase: 'upgraded',
    opts: { expectTunnel: () => true },
  },
  {
    name: 'a 407 answer to CONNECT is not',
    kind: S,
    input: 'HTTP/1.1 407 Proxy Auth\r\nContent-Length: 1\r\n\r\nx',
    heads: [{ upgrade: false }],
    bodies: ['x'],
    opts: { expectTunnel: () => true },
  },
  {
    name: 'close-delimited body ends at EOF (finish)',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nServer: x\r\n\r\nall of this\r\n\r\nis body',
    heads: [{ keepAlive: false, contentLength: -1, chunked: false }],
    bodies: ['all of this\r\n\r\nis body'],
    phase: 'done',
  },
  {
    name: 'HTTP/1.0 response without framing reads to EOF',
    kind: S,
    input: 'HTTP/1.0 200 OK\r\n\r\nbody',
    heads: [{ keepAlive: false }],
    bodies: ['body'],
  },
  {
    name: 'response final coding not chunked: read to EOF',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nabcde',
    heads: [{ chunked: false, keepAlive: false }],
    bodies: ['5\r\nabcde'],
  },
  {
    name: 'response gzip, chunked is chunked',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n',
    heads: [{ chunked: true }],
    bodies: ['\x1f\x8b'],
  },
  {
    name: 'response chunked with trailers',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n\r\n',
    bodies: ['a'],
    trailers: [['X-T', '1']],
  },
  {
    name: 'response Connection: close',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n',
    heads: [{ keepAlive: false }],
    phase: 'done',
  },
  {
    name: 'response with CL and TE',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
    error: 'HPE_CL_AND_TE',
  },
  {
    name: 'HTTP/1.0 response with TE',
    kind: S,
    input: 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    error: 'HPE_TE_IN_HTTP10',
  },
  {
    name: 'response with duplicate CL',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx',
    error: 'HPE_DUPLICATE_CONTENT_LENGTH',
  },
  { name: 'status with 2 digits', kind: S, input: 'HTTP/1.1 20 OK\r\n\r\n', error: 'HPE_INVALID_STATUS' },
  { name: 'status with 4 digits', kind: S, input: 'HTTP/1.1 2000 OK\r\n\r\n', error: 'HPE_INVALID_STATUS' },
  { name: 'status 600', kind: S, input: 'HTTP/1.1 600 X\r\n\r\n', error: 'HPE_INVALID_STATUS' },
  { name: 'status 099', kind: S, input: 'HTTP/1.1 099 X\r\n\r\n', error: 'HPE_INVALID_STATUS' },
  { name: 'CTL in the reason', kind: S, input: 'HTTP/1.1 200 O\x01K\r\n\r\n', error: 'HPE_INVALID_STATUS' },
  { name: 'two SP before the status', kind: S, input: 'HTTP/1.1  200 OK\r\n\r\n', error: 'HPE_INVALID_STATUS' },
  { name: 'status line ending in bare LF', kind: S, input: 'HTTP/1.1 200 OK\n\r\n', error: 'HPE_CR_EXPECTED' },
  { name: 'response version HTTP/2', kind: S, input: 'HTTP/2 200 OK\r\n\r\n', error: 'HPE_INVALID_VERSION' },
  { name: 'response version HTTP/2.0', kind: S, input: 'HTTP/2.0 200 OK\r\n\r\n', error: 'HPE_VERSION_NOT_SUPPORTED' },
  { name: 'response bad header', kind: S, input: 'HTTP/1.1 200 OK\r\nX : y\r\n\r\n', error: 'HPE_INVALID_HEADER_TOKEN' },
  { name: 'response obs-fold', kind: S, input: 'HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n', error: 'HPE_OBS_FOLD' },
  {
    name: 'response bad chunk size',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    error: 'HPE_INVALID_CHUNK_SIZE',
  },
  {
    name: 'response EOF in a Content-Length body',
    kind: S,
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab',
    error: 'HPE_INVALID_EOF_STATE',
  },
  { name: 'response a request line', kind: S, input: GET, error: 'HPE_INVALID_VERSION' },
];

const seed = seedFromEnv();
t.comment(`seed ${seed} (PORTICO_SEED=${seed} to reproduce)`);

t.test('rules: one row each, same result whole, byte by byte and in random splits', async (t) => {
  const rng = new Rng(seed);
  for (const row of ROWS) {
    const input = latin1(row.input);
    const kind = row.kind ?? R;
    const whole = feed(kind, input, [], row.opts);
    const label = `${row.name}: ${JSON.stringify(row.input).slice(0, 120)}`;
    if (row.error) {
      t.equal(whole.error, row.error, `${label} → ${row.error}`);
      t.equal(whole.status, ParseErrors[row.error].status, `${row.name}: status ${ParseErrors[row.error].status}`);
    } else {
      t.equal(whole.error, undefined, `${label} parses`);
    }
    if (row.heads) {
      t.equal(whole.messages.length, row.heads.length, `${row.name}: ${row.heads.length} heads`);
      row.heads.forEach((h, i) => t.match(whole.messages[i]?.head, h, `${row.name}: head ${i}`));
    }
    if (row.bodies)
      t.same(
        whole.messages.map((m) => m.body),
        row.bodies,
        `${row.name}: bodies`,
      );
    if (row.trailers)
      t.same(
        whole.messages.map((m) => m.trailers),
        row.trailers,
        `${row.name}: trailers`,
      );
    if (row.consumed !== undefined) t.equal(whole.consumed, row.consumed, `${row.name}: stops at ${row.consumed}`);
    if (row.phase) t.equal(whole.phase, row.phase, `${row.name}: phase ${row.phase}`);
    const expected = comparable(whole);
    t.same(comparable(feed(kind, input, cutsBytes(input.length), row.opts)), expected, `${row.name}: byte by byte`);
    for (let i = 0; i < 3; i++)
      t.same(comparable(feed(kind, input, cutsRandom(input.length, rng), row.opts)), expected, `${row.name}: random split ${i}`);
  }
});

t.test('a rejected request is never handed over: no head after the error, no completion', async (t) => {
  for (const row of ROWS.filter((r) => r.error && (r.kind ?? R) === R)) {
    const whole = feed(R, latin1(row.input), [], row.opts);
    const last = whole.messages[whole.messages.length - 1];
    // The failing message never completes; any earlier complete messages were valid on their own.
    t.ok(!last || !last.complete || whole.messages.every((m) => m.complete), `${row.name}`);
  }
});

t.test('every error code is exercised by a row', async (t) => {
  const seen = new Set(ROWS.map((r) => r.error).filter(Boolean));
  for (const code of Object.keys(ParseErrors)) t.ok(seen.has(code as ParseErrorCode), `${code} has a row`);
});

t.test('body chunks are subarrays of the input, not copies', async (t) => {
  const input = latin1('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello');
  const p = new HttpParser(R);
  const chunks: Buffer[] = [];
  p.onBody = (c) => chunks.push(c);
  t.equal(p.execute(input), input.length);
  t.equal(chunks.length, 1);
  t.equal(chunks[0]?.buffer, input.buffer);
  t.equal(chunks[0]?.byteOffset, input.byteOffset + input.length - 5);
});

t.test('pause in onHead: execute returns at the end of the head; resume continues there', async (t) => {
  const input = latin1('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n');
  const p = new HttpParser(R);
  const events: string[] = [];
  p.onHead = (h) => {
    events.push(`head ${h.target}`);
    p.pause();
  };
  p.onBody = (c) => events.push(`body ${c.toString()}`);
  p.onComplete = () => events.push('complete');
  const n1 = p.execute(input);
  t.equal(n1, input.indexOf('abc'), 'stopped after the first head');
  t.ok(p.isPaused);
  t.same(events, ['head /']);
  t.equal(p.execute(input, n1), n1, 'nothing consumed while paused');
  p.resume();
  const n2 = p.execute(input, n1);
  t.same(events, ['head /', 'body abc', 'complete', 'head /2', 'complete'], 'the bodiless second message completes right after its head');
  t.equal(n2, input.length);
});

t.test('pause in onComplete stops at the message boundary (pipelining, one at a time)', async (t) => {
  const one = 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n';
  const input = latin1(one.repeat(3));
  const p = new HttpParser(R);
  const targets: string[] = [];
  p.onHead = (h) => targets.push(h.target);
  p.onComplete = () => p.pause();
  let off = 0;
  const stops: number[] = [];
  while (off < input.length) {
    p.resume();
    off = p.execute(input, off);
    stops.push(off);
  }
  t.same(stops, [one.length, 2 * one.length, 3 * one.length]);
  t.same(targets, ['/x', '/x', '/x']);
});

t.test('after an error nothing more is consumed; reset() starts over', async (t) => {
  const p = new HttpParser(R);
  const n = p.execute(latin1('GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n'));
  t.ok(p.error instanceof ParseError);
  t.equal(p.error?.code, 'HPE_INVALID_HEADER_TOKEN');
  t.equal(p.error?.status, 400);
  t.equal(p.phase, 'error');
  t.ok(n < 30);
  t.equal(p.execute(latin1(GET)), 0, 'consumes nothing more');
  p.reset();
  let heads = 0;
  p.onHead = () => heads++;
  t.equal(p.execute(latin1(GET)), GET.length);
  t.equal(heads, 1);
  t.equal(p.error, undefined);
});

t.test('phases', async (t) => {
  const p = new HttpParser(R);
  t.equal(p.phase, 'idle');
  p.execute(latin1('POST / HTTP/1.1\r\nHost'));
  t.equal(p.phase, 'head');
  p.execute(latin1(': a\r\nContent-Length: 2\r\n\r\na'));
  t.equal(p.phase, 'body');
  p.execute(latin1('b'));
  t.equal(p.phase, 'idle');
  p.finish();
  t.equal(p.phase, 'done');
});

t.test('limits are validated', async (t) => {
  t.throws(() => new HttpParser(R, { maxHeaderBytes: 0 }), RangeError);
  t.throws(() => new HttpParser(R, { maxHeaders: 1.5 }), RangeError);
  t.throws(() => new HttpParser(R, { maxTargetBytes: -1 }), RangeError);
  t.same(new HttpParser(R).limits, { maxHeaderBytes: 16384, maxTargetBytes: 8192, maxHeaders: 100 });
});

t.test('a head spread over 13,000 one-byte chunks is parsed once, whole', async (t) => {
  const big = latin1(`GET / HTTP/1.1\r\nHost: a\r\n${'X-Filler: 0123456789abcdef0123456789abcdef\r\n'.repeat(300)}\r\n`);
  const p = new HttpParser(R, { maxHeaderBytes: 65536, maxHeaders: 1000 });
  let heads = 0;
  p.onHead = (h) => {
    heads++;
    t.equal(h.headers.length, 602);
  };
  let consumed = 0;
  for (let i = 0; i < big.length; i++) consumed += p.execute(big.subarray(i, i + 1));
  t.equal(consumed, big.length, 'every byte consumed');
  t.equal(heads, 1);
  t.equal(p.phase, 'idle', 'and the parser is ready for the next message');
});

t.test('headerValue, isTokenChar, isToken', async (t) => {
  const { messages } = feed(R, latin1('GET / HTTP/1.1\r\nHost: a\r\nX-Thing: 1\r\nx-thing: 2\r\nACCEPT: */*\r\n\r\n'), []);
  const head = messages[0]?.head as MessageHead;
  t.equal(headerValue(head, 'x-thing'), '1');
  t.equal(headerValue(head, 'accept'), '*/*');
  t.equal(headerValue(head, 'host'), 'a');
  t.equal(headerValue(head, 'missing'), undefined);
  for (const c of "!#$%&'*+-.^_`|~09azAZ") t.ok(isTokenChar(c.charCodeAt(0)), `tchar ${c}`);
  for (const c of ' \t"(),/:;<=>?@[\\]{}\x00\x7f\x80\xff') t.notOk(isTokenChar(c.charCodeAt(0)), `not tchar ${JSON.stringify(c)}`);
  t.ok(isToken('M-SEARCH'));
  t.notOk(isToken(''));
  t.notOk(isToken('a b'));
});
