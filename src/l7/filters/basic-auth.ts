/**
 * The basic auth filter: HTTP Basic authentication per route (`basicAuth`, marathon-lb's
 * `HAPROXY_{n}_AUTH`, an HAProxy userlist with crypt(3) hashes). Without valid credentials the answer is
 * 401 with the realm's challenge; the Authorization field is forwarded upstream unchanged, as HAProxy
 * does (the backend may use it); credentials are never logged.
 *
 * A (user, password) verified once is remembered for the life of the compiled route (its compiled form
 * is reused across tables while the route's `basicAuth` is unchanged: the plane keeps it by
 * basicAuthKey) as an HMAC of the password under a per-process random key, compared in constant time: a
 * request with known credentials costs one HMAC, never a crypt. Unknown users are checked against a
 * dummy hash, so a wrong user costs what a wrong password does.
 *
 * The hashing budget: hash computations for credentials not yet known are limited per second per plane
 * (HashBudget, `l7.authHashesPerSecond`; each is milliseconds of CPU on the event loop). Beyond it the
 * answer is 429 with Retry-After, so a password-guessing flood cannot starve the proxy.
 *
 * HAProxy under marathon-lb checks auth in the frontend before the backend's network ACL, so a client
 * outside the allow-list sees 401 there and 403 here (the allow-list runs first, filters/index.ts); the
 * verdict for a request that passes both is the same.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { RouteBasicAuth } from '../../model/types.js';
import { hashScheme, safeEqual, verifyPassword } from '../crypt.js';
import type { MessageHead } from '../http/parser.js';
import { lowerName } from '../headers.js';
import { FilterStatus, type RequestFilter } from './types.js';

export const basicAuth: RequestFilter = {
  name: 'basic-auth',
  appliesTo: (_route, rt) => rt.auth !== undefined,
  onRequest(ex, head, rt) {
    const auth = rt.auth as BasicAuth;
    const verdict = auth.check(singleAuthorization(head));
    if (verdict === AuthVerdict.Ok) return FilterStatus.Continue;
    if (verdict === AuthVerdict.Throttled) ex.respondLocal(429, 'auth-throttled', 'retry-after: 1\r\n');
    else ex.respondLocal(401, 'unauthorized', auth.challenge);
    return FilterStatus.Answered;
  },
};

/**
 * The Authorization value the filter judges: the field's value, or undefined when it is absent or
 * repeated (two credentials are ambiguous — the backend might read the other one — so neither counts).
 */
export function singleAuthorization(head: MessageHead): string | undefined {
  const h = head.headers;
  let found: string | undefined;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i] as string;
    if (name.length === 13 && lowerName(name) === 'authorization') {
      if (found !== undefined) return undefined;
      found = h[i + 1] as string;
    }
  }
  return found;
}

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
  /**
   * `now`: the clock in ms. The default reads Date.now at each call, not once at construction, so a test
   * that holds Date.now still (test/l7/access/routes.test.ts) controls the budget of a running plane.
   */
  constructor(
    readonly perSecond: number,
    private readonly now: () => number = () => Date.now(),
  ) {}
  /** May one more slow verification run now? Counts it if so. */
  take(): boolean {
    const now = this.now();
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

/** A stable key of a basicAuth config, to reuse its compiled form (and verified cache) across tables. */
export function basicAuthKey(a: RouteBasicAuth): string {
  return JSON.stringify([a.realm, a.users.map((u) => [u.user, u.hash])]);
}
