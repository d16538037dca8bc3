/**
 * Byte tables and interned names for the HTTP/1.1 parser (parser.ts). Everything here is built once at
 * module load; the parser only reads it.
 *
 * Tables are 256-entry Uint8Arrays indexed by a byte: 1 = allowed, 0 = not. Grammar references are to
 * RFC 9110 (semantics), RFC 9112 (HTTP/1.1 syntax) and RFC 3986 (URI).
 */

/** Limits applied per message. Zero or negative values are not allowed (the constructor throws). */
export interface Limits {
  /** Bytes of a head: start line, field lines and the final empty line, plus any empty lines before the
   *  start line. Over it → 431. Also caps one trailer section and the chunk extensions of one message. */
  maxHeaderBytes: number;
  /** Bytes of the request-target. Over it → 414. */
  maxTargetBytes: number;
  /** Field lines in a head (or a trailer section). Over it → 431. */
  maxHeaders: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxHeaderBytes: 16_384, // 16 KiB, Node's and HAProxy's (tune.bufsize) order of magnitude
  maxTargetBytes: 8_192, // 8 KiB, RFC 9112 §3 recommends supporting at least 8000 octets
  maxHeaders: 100,
});

function table(pred: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = pred(c) ? 1 : 0;
  return t;
}

const isAlpha = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isHex = (c: number): boolean => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
const has =
  (chars: string) =>
  (c: number): boolean =>
    c < 0x80 && chars.includes(String.fromCharCode(c));

/** tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
export const TCHAR = table((c) => isAlpha(c) || isDigit(c) || has("!#$%&'*+-.^_`|~")(c));

/** Bytes allowed inside a field value: HTAB / SP / VCHAR / obs-text (RFC 9110 §5.5). No NUL, CTL or DEL. */
export const FIELD_VALUE_CHAR = table((c) => c === 0x09 || (c >= 0x20 && c !== 0x7f));

/** Bytes allowed in a reason phrase: the same set as a field value. */
export const REASON_CHAR = FIELD_VALUE_CHAR;

/**
 * Bytes allowed in a request-target: VCHAR except "#" (a fragment is never part of a request-target,
 * RFC 9112 §3.2). Stricter than RFC 3986 would let us be about `"<>\^`{|}` (browsers send some of them
 * unencoded in queries), stricter than llhttp about "#". No obs-text: non-ASCII must be percent-encoded.
 */
export const TARGET_CHAR = table((c) => c > 0x20 && c < 0x7f && c !== 0x23);

/** reg-name = *( unreserved / pct-encoded / sub-delims ); "%" is checked for two HEXDIG by the parser. */
export const REG_NAME_CHAR = table((c) => isAlpha(c) || isDigit(c) || has("-._~!$&'()*+,;=%")(c));

/** Inside "[ ]" of an IP-literal: hex digits, ":" and "." (IPv6address, IPv4 tail). IPvFuture is refused. */
export const IPV6_CHAR = table((c) => isHex(c) || c === 0x3a || c === 0x2e);

/** Hex digit value, or -1. */
export const HEX_VALUE = (() => {
  const t = new Int8Array(256).fill(-1);
  for (let c = 0; c < 256; c++) if (isHex(c)) t[c] = parseInt(String.fromCharCode(c), 16);
  return t;
})();

/** quoted-string's qdtext = HTAB / SP / "!" / %x23-5B / %x5D-7E / obs-text */
export const QDTEXT = table(
  (c) => c === 0x09 || c === 0x20 || c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80,
);

/** What may follow "\" in a quoted-pair: HTAB / SP / VCHAR / obs-text */
export const QUOTED_PAIR_CHAR = table((c) => c === 0x09 || (c >= 0x20 && c !== 0x7f));

/**
 * The request methods we implement: exactly llhttp's HTTP set (Node's `http.METHODS`), so a request the
 * proxy forwards is one every Node upstream can parse. A valid token that is not here → 501.
 */
export const METHODS: readonly string[] = Object.freeze([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
  'ACL',
  'BIND',
  'CHECKOUT',
  'COPY',
  'LINK',
  'LOCK',
  'M-SEARCH',
  'MERGE',
  'MKACTIVITY',
  'MKCALENDAR',
  'MKCOL',
  'MOVE',
  'NOTIFY',
  'PROPFIND',
  'PROPPATCH',
  'PURGE',
  'QUERY',
  'REBIND',
  'REPORT',
  'SEARCH',
  'SOURCE',
  'SUBSCRIBE',
  'UNBIND',
  'UNLINK',
  'UNLOCK',
  'UNSUBSCRIBE',
]);

/** Header fields the parser interprets. 0 = any other field. */
export const HeaderId = {
  Other: 0,
  Host: 1,
  ContentLength: 2,
  TransferEncoding: 3,
  Connection: 4,
  Upgrade: 5,
  Expect: 6,
} as const;
export type HeaderId = (typeof HeaderId)[keyof typeof HeaderId];

/**
 * Field names interned by the parser: a name sent exactly as one of its spellings (all lower case, or the
 * usual Capitalized-Form) comes back as that very string instance; other spellings are still recognised
 * (case-insensitively) for their meaning but are sliced fresh.
 */
export const COMMON_HEADERS: readonly (readonly [lower: string, id: HeaderId, ...extraSpellings: string[]])[] = [
  ['host', HeaderId.Host],
  ['content-length', HeaderId.ContentLength],
  ['transfer-encoding', HeaderId.TransferEncoding],
  ['connection', HeaderId.Connection],
  ['upgrade', HeaderId.Upgrade],
  ['expect', HeaderId.Expect],
  ['user-agent', 0],
  ['accept', 0],
  ['accept-encoding', 0],
  ['accept-language', 0],
  ['accept-charset', 0],
  ['accept-ranges', 0],
  ['content-type', 0],
  ['content-encoding', 0],
  ['content-range', 0],
  ['content-disposition', 0],
  ['cookie', 0],
  ['set-cookie', 0],
  ['referer', 0],
  ['origin', 0],
  ['authorization', 0],
  ['proxy-authorization', 0],
  ['cache-control', 0],
  ['pragma', 0],
  ['if-none-match', 0],
  ['if-modified-since', 0],
  ['if-match', 0],
  ['if-unmodified-since', 0],
  ['range', 0],
  ['x-forwarded-for', 0],
  ['x-forwarded-proto', 0],
  ['x-forwarded-host', 0],
  ['x-forwarded-port', 0],
  ['x-real-ip', 0, 'X-Real-IP'],
  ['x-request-id', 0, 'X-Request-ID'],
  ['x-requested-with', 0],
  ['forwarded', 0],
  ['via', 0],
  ['te', 0, 'TE'],
  ['trailer', 0],
  ['keep-alive', 0],
  ['proxy-connection', 0],
  ['date', 0],
  ['server', 0],
  ['location', 0],
  ['etag', 0, 'ETag'],
  ['last-modified', 0],
  ['vary', 0],
  ['age', 0],
  ['expires', 0],
  ['www-authenticate', 0, 'WWW-Authenticate'],
  ['strict-transport-security', 0],
  ['access-control-allow-origin', 0],
  ['upgrade-insecure-requests', 0],
  ['dnt', 0, 'DNT'],
  ['sec-fetch-site', 0],
  ['sec-fetch-mode', 0],
  ['sec-fetch-dest', 0],
  ['sec-fetch-user', 0],
  ['sec-ch-ua', 0, 'Sec-CH-UA'],
  ['sec-ch-ua-mobile', 0, 'Sec-CH-UA-Mobile'],
  ['sec-ch-ua-platform', 0, 'Sec-CH-UA-Platform'],
  ['sec-websocket-key', 0, 'Sec-WebSocket-Key'],
  ['sec-websocket-version', 0, 'Sec-WebSocket-Version'],
  ['sec-websocket-extensions', 0, 'Sec-WebSocket-Extensions'],
  ['sec-websocket-protocol', 0, 'Sec-WebSocket-Protocol'],
  ['sec-websocket-accept', 0, 'Sec-WebSocket-Accept'],
  ['traceparent', 0],
  ['tracestate', 0],
  ['link', 0],
  ['alt-svc', 0],
  ['x-content-type-options', 0],
  ['x-frame-options', 0],
];

/** Connection options interned when sent in lower case (the usual spelling). */
export const COMMON_CONNECTION_TOKENS: readonly string[] = ['close', 'keep-alive', 'upgrade', 'te', 'http2-settings'];

/** "Foo-Bar" from "foo-bar". */
export function capitalize(lower: string): string {
  return lower.replace(/(^|-)([a-z])/g, (_m, sep: string, ch: string) => sep + ch.toUpperCase());
}
