/**
 * The heads the proxy writes, as bytes into a HeadBuf (headbuf.ts). Upstream: the request line with the
 * route's rewritten path, the client's fields without hop-by-hop ones, Connection-named ones and (from an
 * untrusted client) forwarding ones; ours added (X-Forwarded-For/-Proto/-Host, Forwarded, Via,
 * X-Request-Id) and the framing rebuilt. To the client: the status line, the upstream's end-to-end
 * fields, Via, the route's HSTS line on TLS (filters/hsts.ts), a sticky cookie, the framing rebuilt.
 */
import type { Exchange } from './exchange.js';
import type { HeadBuf } from './headbuf.js';
import { FieldClass, REASONS, fieldClass, fieldInfo, forwardedFor, lowerName } from './headers.js';
import { headerValue, type MessageHead } from './http/parser.js';
import { newRequestId } from './requestid.js';

/** Our Via field line, by the request's HTTP version. */
export const VIA_11 = 'via: 1.1 portico\r\n';
export const VIA_10 = 'via: 1.0 portico\r\n';

/**
 * Write the upstream request head of `ex` into `o` (again for a retry: the same bytes, the same request
 * id). It sets `ex.requestId`: the client's X-Request-Id, or one made here (then sent upstream too).
 */
export function writeRequestHead(o: HeadBuf, ex: Exchange): void {
  const head = ex.head;
  const conn = ex.conn;
  const ep = conn.ep;
  const trusted = conn.trusted;
  const fields = head.headers;
  const tokens = head.connectionTokens;
  o.add(head.method);
  o.add(' ');
  o.add(ex.upstreamPath);
  o.add(' HTTP/1.1\r\n');
  let xff: string | undefined;
  let fwd: string | undefined;
  let keptProto = false;
  let keptHost = false;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    const info = fieldInfo(name);
    const lower = info.lower;
    const cls = info.cls;
    if (cls !== FieldClass.Pass) {
      if (cls === FieldClass.Forwarding && trusted) {
        if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`;
        else if (lower === 'forwarded') fwd = fwd === undefined ? value : `${fwd}, ${value}`;
        else {
          if (lower === 'x-forwarded-proto') keptProto = true;
          if (lower === 'x-forwarded-host') keptHost = true;
          addField(o, name, value);
        }
      }
      continue;
    }
    if (tokens.length !== 0 && tokens.includes(lower)) continue;
    if (lower === 'x-request-id' && !ex.requestIdMade) ex.requestId = value;
    addField(o, name, value);
  }
  const host = head.host ?? '';
  if (xff === undefined && fwd === undefined && !keptProto && !keptHost) {
    // The usual case: nothing forwarded is kept, and what we add depends on the connection and Host only.
    o.add(conn.forwardingFields(host, head.versionMinor));
  } else {
    const ip = conn.clientIp;
    addField(o, 'x-forwarded-for', xff === undefined ? ip : `${xff}, ${ip}`);
    if (!keptProto) o.add(ep.proto === 'https' ? 'x-forwarded-proto: https\r\n' : 'x-forwarded-proto: http\r\n');
    if (!keptHost && host) addField(o, 'x-forwarded-host', host);
    const me = `for=${forwardedFor(ip)};proto=${ep.proto}${host ? `;host="${host}"` : ''}`;
    addField(o, 'forwarded', fwd === undefined ? me : `${fwd}, ${me}`);
    o.add(head.versionMinor === 1 ? VIA_11 : VIA_10);
  }
  if (!ex.requestId || ex.requestIdMade) {
    if (!ex.requestId) {
      ex.requestId = newRequestId();
      ex.requestIdMade = true;
    }
    addField(o, 'x-request-id', ex.requestId);
  }
  if (head.upgrade) {
    o.add('connection: upgrade\r\n');
    addField(o, 'upgrade', headerValue(head, 'upgrade') ?? '');
  } else if (head.chunked) {
    o.add('transfer-encoding: chunked\r\n');
  } else if (head.contentLength >= 0) {
    o.add('content-length: ');
    o.addInt(head.contentLength);
    o.add('\r\n');
  }
  o.add('\r\n');
}

/**
 * Write the response head for the client of `ex` into `o`, from the upstream's head `h`: `noBody` for a
 * response without a body (HEAD, 204, 304), `upgrade` for a 101.
 */
export function writeResponseHead(o: HeadBuf, ex: Exchange, h: MessageHead, noBody: boolean, upgrade: boolean): void {
  const fields = h.headers;
  const tokens = h.connectionTokens;
  const hsts = ex.conn.ep.tls ? ex.rt?.hsts : undefined;
  o.add('HTTP/1.1 ');
  o.addInt(h.status);
  o.add(' ');
  o.add(h.reason || REASONS[h.status] || '');
  o.add('\r\n');
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    const info = fieldInfo(name);
    const lower = info.lower;
    // The route's HSTS replaces the backend's (HAProxy's `http-response set-header`).
    if (hsts !== undefined && lower === 'strict-transport-security') continue;
    const cls = info.cls;
    if (cls === FieldClass.HopByHop || cls === FieldClass.Framing) {
      // A HEAD or 304 response's Content-Length describes the representation: pass it on as sent.
      if (noBody && lower === 'content-length') addField(o, name, fields[i + 1] as string);
      continue;
    }
    if (tokens.length !== 0 && tokens.includes(lower)) continue;
    addField(o, name, fields[i + 1] as string);
  }
  o.add(VIA_11);
  if (hsts !== undefined) o.add(hsts);
  if (upgrade) {
    o.add('connection: upgrade\r\n');
    addField(o, 'upgrade', headerValue(h, 'upgrade') ?? '');
    o.add('\r\n');
    return;
  }
  const sticky = ex.set?.balancer.setCookie?.(ex.conn.pick, ex.upstream!, ex.conn.ep.tls);
  if (sticky) addField(o, 'set-cookie', sticky);
  if (!noBody) {
    if (h.contentLength >= 0) {
      o.add('content-length: ');
      o.addInt(h.contentLength);
      o.add('\r\n');
    } else if (ex.clientChunked) o.add('transfer-encoding: chunked\r\n');
  }
  if (ex.conn.closeAfter) o.add('connection: close\r\n');
  else if (ex.head.versionMinor === 0) o.add('connection: keep-alive\r\n');
  o.add('\r\n');
}

/** `name: value` and its line end. */
function addField(o: HeadBuf, name: string, value: string): void {
  o.add(name);
  o.add(': ');
  o.add(value);
  o.add('\r\n');
}

/** The trailer fields passed on (end-to-end ones only), as field lines. */
export function trailerBlock(t: string[] | undefined): string {
  if (!t || t.length === 0) return '';
  let out = '';
  for (let i = 0; i < t.length; i += 2) {
    const lower = lowerName(t[i] as string);
    if (fieldClass(lower) === FieldClass.Pass) out += `${t[i] as string}: ${t[i + 1] as string}\r\n`;
  }
  return out;
}
