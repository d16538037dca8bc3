/**
 * A reusable `PickContext` and a cookie lookup that scans the Cookie header for one name without
 * building a map of all cookies.
 */
import type { PickContext } from './types.js';
import type { Upstream } from './upstream.js';

export type HeaderLookup = (lowerName: string) => string | undefined;

const noHeaders: HeaderLookup = () => undefined;

/**
 * The value of cookie `name` in a Cookie header (RFC 6265 `a=1; b=2`), or undefined. Both `;` and `,`
 * separate pairs (a cookie value cannot hold a comma, and some parsers join repeated Cookie headers with
 * `, `); surrounding double quotes are removed. Allocates only the returned value.
 */
export function findCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined || name === '') return undefined;
  const len = header.length;
  let i = 0;
  while (i < len) {
    let c = header.charCodeAt(i);
    while (c === 0x20 || c === 0x09 || c === 0x3b || c === 0x2c) c = header.charCodeAt(++i);
    if (i >= len) break;
    let end = i;
    while (end < len) {
      const e = header.charCodeAt(end);
      if (e === 0x3b || e === 0x2c) break;
      end++;
    }
    if (header.startsWith(name, i) && header.charCodeAt(i + name.length) === 0x3d /* = */ && i + name.length < end) {
      let vs = i + name.length + 1;
      let ve = end;
      while (ve > vs && (header.charCodeAt(ve - 1) === 0x20 || header.charCodeAt(ve - 1) === 0x09)) ve--;
      if (ve - vs >= 2 && header.charCodeAt(vs) === 0x22 && header.charCodeAt(ve - 1) === 0x22) {
        vs++;
        ve--;
      }
      return header.slice(vs, ve);
    }
    i = end + 1;
  }
  return undefined;
}

/**
 * A `PickContext` to keep per connection (or per request object) and `reset` for each request: no
 * closure or object per pick, and the Cookie header is looked at only if the policy asks.
 */
export class RequestPickContext implements PickContext {
  clientIp = '';
  exclude: Upstream | undefined = undefined;
  private getHeader: HeaderLookup = noHeaders;

  reset(clientIp: string, getHeader: HeaderLookup, exclude?: Upstream): this {
    this.clientIp = clientIp;
    this.getHeader = getHeader;
    this.exclude = exclude;
    return this;
  }

  header(lowerName: string): string | undefined {
    return this.getHeader(lowerName);
  }

  cookie(name: string): string | undefined {
    return findCookie(this.getHeader('cookie'), name);
  }
}
