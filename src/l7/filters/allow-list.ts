/**
 * The allow-list filter: only clients from the route's CIDRs (`allowFrom`, marathon-lb's
 * `HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL`) reach its service; the others get 403.
 *
 * The client address is the socket peer. Only when the peer is a trusted proxy of the entrypoint (the
 * same `trustedProxies` test that keeps its X-Forwarded-For) is X-Forwarded-For read: from the right,
 * the first address that is not itself a trusted proxy (nginx's `real_ip_recursive`), so a client cannot
 * choose its own address by sending the field. For an untrusted peer the verdict is remembered on the
 * connection, per list (the peer does not change).
 *
 * It runs before basic auth (filters/index.ts): a client outside the list learns nothing of the realm
 * and costs no password hashing.
 */
import ipaddr from 'ipaddr.js';
import { parseCidr } from '../../model/parse.js';
import type { MessageHead } from '../http/parser.js';
import { lowerName } from '../headers.js';
import { FilterStatus, type FilterConn, type RequestFilter } from './types.js';

export const allowList: RequestFilter = {
  name: 'allow-list',
  appliesTo: (_route, rt) => rt.allow !== undefined,
  onRequest(ex, head, rt) {
    if (clientAllowed(ex.conn, rt.allow as AllowList, head)) return FilterStatus.Continue;
    ex.respondLocal(403, 'forbidden');
    return FilterStatus.Answered;
  },
};

/** Is this request's client inside `list`? The peer, or what a trusted proxy says it forwards for. */
export function clientAllowed(conn: FilterConn, list: AllowList, head: MessageHead): boolean {
  if (!conn.trusted) {
    if (conn.allowMemo !== list) {
      conn.allowMemo = list;
      conn.allowMemoOk = list.allows(conn.clientIp);
    }
    return conn.allowMemoOk;
  }
  const ep = conn.ep;
  return list.allows(effectiveClient(conn.clientIp, true, joinedField(head, 'x-forwarded-for'), (ip) => ep.trusted(ip)));
}

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** A compiled source allow-list. An empty list allows nobody (fail closed). */
export class AllowList {
  private readonly v4: Array<[number, number]> = [];
  private readonly v6: Range[] = [];
  /** Entries that were not CIDRs (validation should have refused them): left out. */
  readonly invalid: string[] = [];

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const p = parseCidr(c);
      if (!p.ok) {
        this.invalid.push(c);
        continue;
      }
      const [addr, bits] = ipaddr.parseCIDR(p.value);
      if (addr.kind() === 'ipv4') {
        const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
        this.v4.push([(v4Number(addr as ipaddr.IPv4) & mask) >>> 0, mask]);
      } else {
        const v6 = addr as ipaddr.IPv6;
        // An IPv4-mapped range (::ffff:10.0.0.0/104) also covers the plain IPv4 addresses it maps.
        if (v6.isIPv4MappedAddress() && bits >= 96) {
          const mask = bits === 96 ? 0 : (~0 << (128 - bits)) >>> 0;
          this.v4.push([(v4Number(v6.toIPv4Address()) & mask) >>> 0, mask]);
        }
        this.v6.push([v6, bits]);
      }
    }
  }

  /** Is `ip` (a literal as sockets and clientAddress() give it) inside the list? Garbage never is. */
  allows(ip: string): boolean {
    if (ip === '') return false;
    if (ip.includes(':')) {
      let a: ipaddr.IPv6;
      try {
        a = ipaddr.IPv6.parse(ip);
      } catch {
        return false;
      }
      if (a.isIPv4MappedAddress()) return this.allowsV4(v4Number(a.toIPv4Address()));
      for (const [net, bits] of this.v6) if (a.match(net, bits)) return true;
      return false;
    }
    const n = parseV4(ip);
    return n >= 0 && this.allowsV4(n);
  }

  private allowsV4(n: number): boolean {
    const v4 = this.v4;
    for (let i = 0; i < v4.length; i++) {
      const [net, mask] = v4[i] as [number, number];
      if ((n & mask) >>> 0 === net) return true;
    }
    return false;
  }
}

function v4Number(a: ipaddr.IPv4): number {
  const o = a.octets;
  return (((o[0] as number) << 24) | ((o[1] as number) << 16) | ((o[2] as number) << 8) | (o[3] as number)) >>> 0;
}

/** Dotted-quad to a number, or -1 (strict: four decimal parts 0-255, no leading zeros beyond "0"). */
function parseV4(s: string): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || part > 255) return -1;
      n = n * 256 + part;
      parts++;
      part = 0;
      digits = 0;
      continue;
    }
    if (c < 0x30 || c > 0x39) return -1;
    if (digits > 0 && part === 0) return -1; // leading zero
    part = part * 10 + (c - 0x30);
    if (++digits > 3) return -1;
  }
  return parts === 4 ? n : -1;
}

/**
 * The address access control judges: the peer, or — when the peer is a trusted proxy — the rightmost
 * X-Forwarded-For entry that is not a trusted proxy. `xff` is every X-Forwarded-For value, joined with ", ".
 */
export function effectiveClient(peer: string, peerTrusted: boolean, xff: string | undefined, trusted: (ip: string) => boolean): string {
  if (!peerTrusted || xff === undefined) return peer;
  const parts = xff.split(',');
  let last = peer;
  for (let i = parts.length - 1; i >= 0; i--) {
    const ip = stripPort((parts[i] as string).trim());
    if (ip === '') continue;
    if (!trusted(ip)) return ip;
    last = ip;
  }
  return last;
}

/** `1.2.3.4:80` → `1.2.3.4`; `[::1]:80` and `[::1]` → `::1`; `::ffff:1.2.3.4` → `1.2.3.4`. */
function stripPort(s: string): string {
  if (s.charCodeAt(0) === 0x5b /* [ */) {
    const end = s.indexOf(']');
    return end < 0 ? s : s.slice(1, end);
  }
  const colon = s.indexOf(':');
  if (colon >= 0 && s.indexOf(':', colon + 1) < 0) return s.slice(0, colon);
  return s.startsWith('::ffff:') && s.includes('.') ? s.slice(7) : s;
}

/** Every value of a field, joined with ", " (undefined when absent). */
function joinedField(head: MessageHead, lower: string): string | undefined {
  const h = head.headers;
  let out: string | undefined;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i] as string;
    if (name.length === lower.length && lowerName(name) === lower)
      out = out === undefined ? (h[i + 1] as string) : `${out}, ${h[i + 1] as string}`;
  }
  return out;
}
