/**
 * Header handling on the hot path: lower-casing names through a cache (the parser interns common names,
 * so the cache hits almost always), hop-by-hop removal, and canned response heads.
 */
import { COMMON_HEADERS, capitalize } from './http/constants.js';

const lowerCache = new Map<string, string>();
for (const [lower, , ...extra] of COMMON_HEADERS) {
  lowerCache.set(lower, lower);
  lowerCache.set(capitalize(lower), lower);
  for (const e of extra) lowerCache.set(e, lower);
}
const LOWER_CACHE_MAX = 4096;

/** `Content-Type` → `content-type`, cached (bounded) so repeated names cost one Map lookup. */
export function lowerName(name: string): string {
  let l = lowerCache.get(name);
  if (l === undefined) {
    l = name.toLowerCase();
    if (lowerCache.size < LOWER_CACHE_MAX) lowerCache.set(name, l);
  }
  return l;
}

/**
 * What a field means to the proxy, by lower-case name. Codes:
 *  1 hop-by-hop (RFC 9110 §7.6.1, plus Proxy-Connection/Keep-Alive): never forwarded;
 *  2 framing (Content-Length, Transfer-Encoding): rebuilt by us, never copied;
 *  3 forwarding information (X-Forwarded-*, Forwarded, X-Real-IP): dropped from untrusted clients;
 *  4 Expect: answered by us (100-continue), not forwarded.
 */
export const enum FieldClass {
  Pass = 0,
  HopByHop = 1,
  Framing = 2,
  Forwarding = 3,
  Expect = 4,
}

const CLASS = new Map<string, FieldClass>([
  ['connection', FieldClass.HopByHop],
  ['keep-alive', FieldClass.HopByHop],
  ['proxy-connection', FieldClass.HopByHop],
  ['te', FieldClass.HopByHop],
  ['trailer', FieldClass.HopByHop],
  ['upgrade', FieldClass.HopByHop],
  ['proxy-authenticate', FieldClass.HopByHop],
  ['proxy-authorization', FieldClass.HopByHop],
  ['content-length', FieldClass.Framing],
  ['transfer-encoding', FieldClass.Framing],
  ['x-forwarded-for', FieldClass.Forwarding],
  ['x-forwarded-proto', FieldClass.Forwarding],
  ['x-forwarded-host', FieldClass.Forwarding],
  ['x-forwarded-port', FieldClass.Forwarding],
  ['forwarded', FieldClass.Forwarding],
  ['x-real-ip', FieldClass.Forwarding],
  ['expect', FieldClass.Expect],
]);

export function fieldClass(lower: string): FieldClass {
  return CLASS.get(lower) ?? FieldClass.Pass;
}

/** A field name's lower-case form and class, found with one Map lookup of the name as sent. */
export interface FieldInfo {
  readonly lower: string;
  readonly cls: FieldClass;
}

const infoCache = new Map<string, FieldInfo>();

/** `lowerName` and `fieldClass` in one (bounded) cache lookup: what the head builders ask per field. */
export function fieldInfo(name: string): FieldInfo {
  let info = infoCache.get(name);
  if (info === undefined) {
    const lower = lowerName(name);
    info = { lower, cls: fieldClass(lower) };
    if (infoCache.size < LOWER_CACHE_MAX) infoCache.set(name, info);
  }
  return info;
}

export const REASONS: Record<number, string> = {
  100: 'Continue',
  101: 'Switching Protocols',
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  206: 'Partial Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  304: 'Not Modified',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** A complete response of our own (errors, redirects): short text body, fixed framing. */
export function simpleResponse(
  status: number,
  opts: { close: boolean; body?: string; headers?: string; requestId?: string; head?: boolean },
): string {
  const body = opts.body ?? `${status} ${REASONS[status] ?? ''}\n`;
  let h = `HTTP/1.1 ${status} ${REASONS[status] ?? 'Unknown'}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\n`;
  if (opts.requestId) h += `x-request-id: ${opts.requestId}\r\n`;
  if (opts.headers) h += opts.headers;
  if (opts.close) h += 'connection: close\r\n';
  return `${h}\r\n${opts.head ? '' : body}`;
}

/** `[v6]` for IPv6 literals in a Forwarded `for=` (quoted, RFC 7239 §6). */
export function forwardedFor(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

/** Strip `::ffff:` from IPv4-mapped addresses (dual-stack listeners report them). */
export function clientAddress(remote: string | undefined): string {
  if (!remote) return '';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}
