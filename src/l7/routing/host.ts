/**
 * Host header normalisation for routing. The request's `Host` is matched against route hosts, which
 * the model keeps lower-cased, without a port and without a trailing dot.
 *
 * Only the router's per-host cache miss path calls this, so it may allocate.
 */

const IPV4 = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

export interface HostKey {
  /** Lower-cased name: no port, no trailing dot, no brackets around an IPv6 literal. `''` when absent. */
  name: string;
  /** An IP literal (`10.0.0.1`, `[::1]`): matched exactly and by `*`, never by a `*.domain` wildcard. */
  ip: boolean;
}

/**
 * `App.Example.TEST:8080` → `app.example.test`; `a.example.test.` → `a.example.test`;
 * `[::1]:8080` → `::1` (ip); `10.0.0.1:80` → `10.0.0.1` (ip); `''` → `''`.
 * A bare IPv6 literal without brackets (not valid in a Host header, but seen) is taken whole.
 */
export function normalizeHost(raw: string): HostKey {
  let h = raw.trim();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    const inner = end < 0 ? h.slice(1) : h.slice(1, end);
    return { name: inner.toLowerCase(), ip: true };
  }
  const first = h.indexOf(':');
  if (first >= 0) {
    if (h.indexOf(':', first + 1) >= 0) return { name: h.toLowerCase(), ip: true };
    h = h.slice(0, first);
  }
  while (h.endsWith('.')) h = h.slice(0, -1);
  h = h.toLowerCase();
  return { name: h, ip: IPV4.test(h) };
}

/** A route host as the router keys it: lower-cased, trailing dot removed (the model allows `a.test.`). */
export function normalizeRouteHost(host: string): string {
  let h = host.toLowerCase();
  while (h.length > 1 && h.endsWith('.')) h = h.slice(0, -1);
  return h;
}
