/**
 * HSTS (`hsts`, marathon-lb's `HAPROXY_{n}_USE_HSTS`) is a response-side setting, so it is not in the
 * request filter list: the route's `Strict-Transport-Security` line is compiled once per table into
 * RouteRuntime.hsts (hstsLine below), and on TLS connections (never over plain HTTP, RFC 6797 §7.2)
 * the two places that write a response head add it: the proxied response head (heads.ts, where it
 * replaces the backend's own field, as HAProxy's `http-response set-header` does) and every local answer
 * of the route (Exchange.respondLocal: a 401, 403 or 413 of a filter carries it too).
 */

/** The compiled `Strict-Transport-Security` field line of a route. */
export function hstsLine(h: { maxAgeS: number; includeSubdomains: boolean; preload: boolean }): string {
  const age = Number.isFinite(h.maxAgeS) && h.maxAgeS >= 0 ? Math.floor(h.maxAgeS) : 0;
  return `strict-transport-security: max-age=${age}${h.includeSubdomains ? '; includeSubDomains' : ''}${h.preload ? '; preload' : ''}\r\n`;
}
