/**
 * Sticky sessions by cookie (HAProxy `cookie … insert`, Traefik `sticky.cookie`): a request whose cookie
 * names an available upstream goes there; any other request (no cookie, an unknown id, or the upstream is
 * unavailable or excluded on a retry) is balanced by smooth weighted round-robin, and `setCookie` tells the
 * proxy which `Set-Cookie` to add so the client sticks to it from then on.
 *
 * The cookie value is an opaque id, HMAC-SHA256(secret, service id + endpoint key) cut to 16 base64url
 * characters (96 bits): it does not reveal the backend address, and cannot be forged to reach an endpoint
 * the secret-holder did not hand out. The id of an endpoint is stable across tables (and across instances
 * and restarts when they share `stickySecret`). It is a session cookie: `Path=/; HttpOnly; SameSite=Lax`,
 * plus `Secure` on TLS entrypoints.
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

  constructor(
    private readonly pool: UpstreamPool,
    readonly cookieName: string,
    secret: string | Buffer,
    slowStartMs: number,
  ) {
    this.inner = new SmoothWeighted(pool, slowStartMs);
    for (const u of pool.all) {
      const id = stickyId(secret, pool.serviceId, u.key);
      const plain = `${cookieName}=${id}; Path=/; HttpOnly; SameSite=Lax`;
      this.byId.set(id, u);
      this.stickers.set(u, { id, plain, secure: `${plain}; Secure` });
    }
  }

  /** The id `u` is known by in cookies. */
  idOf(u: Upstream): string | undefined {
    return this.stickers.get(u)?.id;
  }

  pick(ctx: PickContext): Upstream | undefined {
    const id = ctx.cookie(this.cookieName);
    if (id !== undefined) {
      const u = this.byId.get(id);
      if (u !== undefined && u !== ctx.exclude && u.isAvailable(this.pool.now())) return u;
    }
    return this.inner.pick(ctx);
  }

  setCookie(ctx: PickContext, picked: Upstream, secure = false): string | undefined {
    const s = this.stickers.get(picked);
    if (s === undefined) return undefined;
    if (ctx.cookie(this.cookieName) === s.id) return undefined;
    return secure ? s.secure : s.plain;
  }
}
