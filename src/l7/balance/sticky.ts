/**
 * Sticky sessions by cookie (HAProxy `cookie … insert`, Traefik `sticky.cookie`): a request whose cookie
 * names an available upstream goes there; any other request (no cookie, an unknown id, or the upstream is
 * unavailable or excluded on a retry) is balanced by smooth weighted round-robin, and `setCookie` tells the
 * proxy which `Set-Cookie` to add so the client sticks to it from then on.
 *
 * The cookie value is an opaque id, HMAC-SHA256(secret, service id + endpoint key) cut to 16 base64url
 * characters (96 bits): it does not reveal the backend address, and cannot be forged to reach an endpoint
 * the secret-holder did not hand out. The id of an endpoint is stable across tables, and across instances
 * and restarts that share the secret (`portico up` keeps it in the store: src/pki/session-keys.ts). It is
 * a session cookie: `Path=/; HttpOnly; SameSite=Lax`, plus `Secure` on TLS entrypoints.
 *
 * Secrets rotate (`StickySecrets.set`): ids are issued under the current secret, and a cookie issued under
 * the previous one still routes to its endpoint; its response then carries the id under the current secret,
 * so a client that comes back within the grace period is re-stamped without losing its endpoint. Balancers
 * see a rotation on their next pick (one integer compare per pick), with no table swap.
 */
import { createHmac } from 'node:crypto';
import type { Balancer, PickContext, UpstreamPool } from './types.js';
import type { Upstream } from './upstream.js';
import { SmoothWeighted } from './weighted.js';

export const DEFAULT_STICKY_COOKIE = 'portico_sticky';

/** The opaque cookie id of an endpoint of a service. */
export function stickyId(secret: string | Buffer, serviceId: string, key: string): string {
  return createHmac('sha256', secret).update(`${serviceId}\n${key}`).digest('base64url').slice(0, 16);
}

/**
 * The secret cookie ids are made with, and the one before it (accepted, not issued). One object per plane,
 * shared by every sticky balancer of it; `set` is seen by all of them at their next pick.
 */
export class StickySecrets {
  private cur: string | Buffer;
  private prev: string | Buffer | undefined;
  private gen = 0;

  constructor(current: string | Buffer, previous?: string | Buffer) {
    this.cur = checkSecret(current, 'current');
    this.prev = previous === undefined ? undefined : checkSecret(previous, 'previous');
  }

  get current(): string | Buffer {
    return this.cur;
  }

  get previous(): string | Buffer | undefined {
    return this.prev;
  }

  /** Moves on every `set` that changes a secret; balancers rebuild their ids when it differs from theirs. */
  get generation(): number {
    return this.gen;
  }

  /** Issue under `current` from now on; accept `previous` too. Throws a TypeError on an empty secret. */
  set(current: string | Buffer, previous?: string | Buffer): void {
    const cur = checkSecret(current, 'current');
    const prev = previous === undefined ? undefined : checkSecret(previous, 'previous');
    if (
      sameSecret(cur, this.cur) &&
      (prev === undefined ? this.prev === undefined : this.prev !== undefined && sameSecret(prev, this.prev))
    )
      return;
    this.cur = cur;
    this.prev = prev;
    this.gen++;
  }

  /** Never the secrets themselves (logs, api answers). */
  toJSON(): { generation: number; previous: boolean } {
    return { generation: this.gen, previous: this.prev !== undefined };
  }
}

function checkSecret(s: string | Buffer, which: string): string | Buffer {
  if ((typeof s !== 'string' && !Buffer.isBuffer(s)) || s.length === 0)
    throw new TypeError(`sticky ${which} secret must be a non-empty string or Buffer`);
  return Buffer.isBuffer(s) ? Buffer.from(s) : s;
}

function sameSecret(a: string | Buffer, b: string | Buffer): boolean {
  return typeof a === typeof b && (typeof a === 'string' ? a === b : (a as Buffer).equals(b as Buffer));
}

interface Sticker {
  id: string;
  plain: string;
  secure: string;
}

export class StickyCookie implements Balancer {
  readonly algorithm = 'sticky' as const;
  private readonly byId = new Map<string, Upstream>();
  private readonly stickers = new Map<Upstream, Sticker>();
  private readonly inner: SmoothWeighted;
  private readonly secrets: StickySecrets;
  /** The secrets' generation the ids were made for. */
  private builtFor = -1;

  constructor(
    private readonly pool: UpstreamPool,
    readonly cookieName: string,
    secret: StickySecrets | string | Buffer,
    slowStartMs: number,
  ) {
    this.inner = new SmoothWeighted(pool, slowStartMs);
    this.secrets = secret instanceof StickySecrets ? secret : new StickySecrets(secret);
    this.build();
  }

  /** The id `u` is known by in cookies (under the current secret). */
  idOf(u: Upstream): string | undefined {
    if (this.builtFor !== this.secrets.generation) this.build();
    return this.stickers.get(u)?.id;
  }

  pick(ctx: PickContext): Upstream | undefined {
    if (this.builtFor !== this.secrets.generation) this.build();
    const id = ctx.cookie(this.cookieName);
    if (id !== undefined) {
      const u = this.byId.get(id);
      if (u !== undefined && u !== ctx.exclude && u.isAvailable(this.pool.now())) return u;
    }
    return this.inner.pick(ctx);
  }

  setCookie(ctx: PickContext, picked: Upstream, secure = false): string | undefined {
    if (this.builtFor !== this.secrets.generation) this.build();
    const s = this.stickers.get(picked);
    if (s === undefined) return undefined;
    if (ctx.cookie(this.cookieName) === s.id) return undefined;
    return secure ? s.secure : s.plain;
  }

  /** Ids under the previous secret first, so that the current one wins the (2^-96) case of a clash. */
  private build(): void {
    const { current, previous } = this.secrets;
    this.builtFor = this.secrets.generation;
    this.byId.clear();
    this.stickers.clear();
    const { serviceId } = this.pool;
    if (previous !== undefined) for (const u of this.pool.all) this.byId.set(stickyId(previous, serviceId, u.key), u);
    for (const u of this.pool.all) {
      const id = stickyId(current, serviceId, u.key);
      const plain = `${this.cookieName}=${id}; Path=/; HttpOnly; SameSite=Lax`;
      this.byId.set(id, u);
      this.stickers.set(u, { id, plain, secure: `${plain}; Secure` });
    }
  }
}
