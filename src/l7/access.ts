/**
 * Per-route access control, compiled once per table: the source allow-list (`allowFrom`, marathon-lb's
 * `HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL`) and HTTP Basic authentication (`basicAuth`, marathon-lb's
 * `HAPROXY_{n}_AUTH`, an HAProxy userlist with crypt(3) hashes).
 *
 * Order in the proxy: redirect-to-https first (credentials never cross plain HTTP to be checked), then
 * the allow-list (403: a client outside it learns nothing of the realm and costs no password hashing),
 * then authentication (401 with the realm). HAProxy under marathon-lb checks auth in the frontend before
 * the backend's network ACL, so an outside client sees 401 there and 403 here; the verdict for a request
 * that passes both is the same.
 *
 * The client address is the socket peer. Only when the peer is a trusted proxy of the entrypoint (the
 * same `trustedProxies` test that keeps its X-Forwarded-For) is X-Forwarded-For read: from the right,
 * the first address that is not itself a trusted proxy (nginx's `real_ip_recursive`), so a client cannot
 * choose its own address by sending the field.
 *
 * Basic auth: a (user, password) verified once is remembered for the life of the compiled route (its
 * compiled form is reused across tables while the route's `basicAuth` is unchanged) as an HMAC of the
 * password under a per-process random key, compared in constant time: a request with known credentials
 * costs one HMAC, never a crypt. Unknown users are checked against a dummy hash, so a wrong user costs
 * what a wrong password does. Hash computations for credentials not yet known are limited per second
 * (each is milliseconds of CPU on the event loop); beyond the limit the answer is 429 with Retry-After,
 * so a password-guessing flood cannot starve the proxy. The Authorization field is forwarded upstream
 * unchanged, as HAProxy does (the backend may use it); credentials are never logged.
 */
import { createHmac, randomBytes } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { parseCidr } from '../model/parse.js';
import type { RouteBasicAuth } from '../model/types.js';
import { hashScheme, safeEqual, verifyPassword } from './crypt.js';

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

// ---------------------------------------------------------------------------------------------------
// Basic authentication

/** Per-process key of the verified-password HMACs (never leaves memory). */
const CACHE_KEY = randomBytes(32);

function digest(password: Buffer): Buffer {
  return createHmac('sha256', CACHE_KEY).update(password).digest();
}

export const enum AuthVerdict {
  Ok,
  /** No, malformed or wrong credentials: 401 with the challenge. */
  Denied,
  /** Unknown credentials and the hashing budget is spent: 429, try again shortly. */
  Throttled,
}

/** Slow verifications allowed per second per plane (shared by every route of it). */
export class HashBudget {
  private windowStart = 0;
  private used = 0;
  constructor(readonly perSecond: number) {}
  take(): boolean {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used >= this.perSecond) return false;
    this.used++;
    return true;
  }
}

interface UserEntry {
  hash: string;
  /** HMACs of passwords verified for this user (one, in practice; a few at most). */
  verified: Buffer[];
}

const MAX_VERIFIED_PER_USER = 4;

export class BasicAuth {
  /** The response field line for a 401 (`www-authenticate: Basic realm="…"\r\n`). */
  readonly challenge: string;
  private readonly users = new Map<string, UserEntry>();
  private readonly dummyHash: string;
  /** Users whose hash is in a scheme we cannot check (they can never log in): for the plane's log. */
  readonly unsupported: string[] = [];
  /** Password hashings done (credentials not yet verified): what the cache saves, observable. */
  hashes = 0;

  constructor(
    readonly config: RouteBasicAuth,
    private readonly budget: HashBudget,
  ) {
    this.challenge = `www-authenticate: Basic realm="${quoteRealm(config.realm)}"\r\n`;
    let dummy = '$1$00000000$';
    for (const u of config.users) {
      if (hashScheme(u.hash) === 'unsupported') this.unsupported.push(u.user);
      else if (dummy === '$1$00000000$') dummy = u.hash;
      if (!this.users.has(u.user)) this.users.set(u.user, { hash: u.hash, verified: [] });
    }
    this.dummyHash = dummy;
  }

  /** Judge an Authorization field value (undefined when absent). */
  check(authorization: string | undefined): AuthVerdict {
    if (authorization === undefined) return AuthVerdict.Denied;
    const cred = decodeBasic(authorization);
    if (cred === undefined) return AuthVerdict.Denied;
    const entry = this.users.get(cred.user);
    const mac = digest(cred.password);
    if (entry !== undefined) {
      for (const v of entry.verified) if (safeEqual(v, mac)) return AuthVerdict.Ok;
    }
    if (!this.budget.take()) return AuthVerdict.Throttled;
    this.hashes++;
    if (entry === undefined) {
      verifyPassword(cred.password, this.dummyHash); // same cost as a wrong password
      return AuthVerdict.Denied;
    }
    if (!verifyPassword(cred.password, entry.hash)) return AuthVerdict.Denied;
    if (entry.verified.length >= MAX_VERIFIED_PER_USER) entry.verified.shift();
    entry.verified.push(mac);
    return AuthVerdict.Ok;
  }
}

/** A realm as a quoted-string's content: `"` and `\` escaped, control characters dropped. */
function quoteRealm(realm: string): string {
  let out = '';
  for (const ch of realm) {
    const c = ch.charCodeAt(0);
    if (c < 0x20 || c === 0x7f) continue;
    out += ch === '"' || ch === '\\' ? `\\${ch}` : ch;
  }
  // A field value must be latin1 on the wire; anything else becomes '?' rather than a broken head.
  return out.replace(/[^\x20-\xff]/g, '?');
}

/** `Basic <base64(user:password)>` → the parts; undefined when it is not that. */
function decodeBasic(v: string): { user: string; password: Buffer } | undefined {
  if (v.length < 6) return undefined;
  const scheme = v.slice(0, 6).toLowerCase();
  if (scheme !== 'basic ') return undefined;
  const token = v.slice(6).trim();
  if (token === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(token)) return undefined;
  const raw = Buffer.from(token, 'base64');
  const colon = raw.indexOf(0x3a);
  if (colon < 0) return undefined;
  return { user: raw.subarray(0, colon).toString('utf8'), password: raw.subarray(colon + 1) };
}

/** The compiled `Strict-Transport-Security` field line of a route. */
export function hstsLine(h: { maxAgeS: number; includeSubdomains: boolean; preload: boolean }): string {
  const age = Number.isFinite(h.maxAgeS) && h.maxAgeS >= 0 ? Math.floor(h.maxAgeS) : 0;
  return `strict-transport-security: max-age=${age}${h.includeSubdomains ? '; includeSubDomains' : ''}${h.preload ? '; preload' : ''}\r\n`;
}

/** A stable key of a basicAuth config, to reuse its compiled form (and verified cache) across tables. */
export function basicAuthKey(a: RouteBasicAuth): string {
  return JSON.stringify([a.realm, a.users.map((u) => [u.user, u.hash])]);
}
