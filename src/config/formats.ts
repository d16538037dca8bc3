/**
 * The string formats of the config file. Each is one parser that returns a normalised value or a
 * message (never throws). The same function is registered with ajv as a JSON Schema `format` (so the
 * schema the api serves names it and the validator enforces it) and is called by the loader to
 * normalise the value — one rule, one message, wherever it is checked.
 */
import { isValidDnsName, isValidRouteHost, toFrameworkName, toVipName } from '../model/names.js';
import { formatListen, parseAddress, parseCidr, parseDuration, parseListen, parseSize } from '../model/parse.js';
import type { Parsed } from '../model/parse.js';
import type { Balance } from '../model/types.js';
import { DEFAULTS } from './defaults.js';

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

/** RFC 9110 token: header names, methods, cookie names. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A service or entrypoint name: it ends up in ids (`<name>@<provider>`) and DNS labels. */
const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;

export function parseName(text: string): Parsed<string> {
  return NAME.test(text)
    ? ok(text)
    : fail(`"${text}" is not a valid name (1..63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit)`);
}

/** `listen` addresses, normalised: `:8080` → `0.0.0.0:8080`, `[::0]:80` → `[::]:80`. */
export function parseListenText(text: string): Parsed<string> {
  const l = parseListen(text);
  return l.ok ? ok(formatListen(l.value)) : l;
}

/**
 * A CIDR whose address part is a full IPv4 dotted quad or an IPv6 address. model/parse's parseCidr
 * relies on ipaddr.js, which also reads `10/8` as 0.0.0.10/8 (inet_aton forms); that is never what an
 * operator means, so the short forms are refused here.
 */
export function parseStrictCidr(text: string): Parsed<string> {
  const slash = text.indexOf('/');
  const addr = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (!addr.ok) return fail(`"${text}" is not a CIDR (write e.g. "10.0.0.0/8" or "fd00::/8")`);
  if (slash >= 0 && !/^\d{1,3}$/.test(text.slice(slash + 1))) {
    return fail(`"${text}" is not a CIDR: the prefix length must be a number`);
  }
  return parseCidr(text);
}

/** A DNS forwarder: `ip` (port 53) or `ip:port` / `[v6]:port`, normalised to `ip:port`. */
export function parseUpstream(text: string): Parsed<string> {
  const bare = parseAddress(text);
  if (bare.ok && !text.trim().startsWith('[')) return ok(formatListen({ host: bare.value, port: 53 }));
  const l = parseListen(text);
  if (!l.ok || text.trim().startsWith(':') || l.value.port === 0) {
    return fail(`"${text}" is not a DNS upstream (write an IP, "ip:port" or "[v6]:port")`);
  }
  return ok(formatListen(l.value));
}

export function parseDurationText(text: string): Parsed<number> {
  return parseDuration(text);
}

export function parseSizeText(text: string): Parsed<number> {
  return parseSize(text);
}

export function parseIp(text: string): Parsed<string> {
  return parseAddress(text);
}

/**
 * `embedded`, `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS), or
 * `redis-sentinel://[user:pass@]h1[:port],h2[:port]/masterName`. Kept as written; the store parses it.
 */
export function parseStore(text: string): Parsed<string> {
  // Messages end up in logs and the api: never echo the password a URL may carry.
  const shown = text.replace(/^([a-z-]+:\/\/)[^@/]*@/, '$1***@');
  const bad = fail<string>(
    `"${shown}" is not a store (write "embedded", "redis://host:6379/0", "rediss://…" or "redis-sentinel://h1:26379,h2:26379/mymaster")`,
  );
  if (text === 'embedded') return ok(text);
  const scheme = /^([a-z-]+):\/\/(.*)$/.exec(text);
  if (!scheme) return bad;
  const rest = scheme[2] as string;
  switch (scheme[1]) {
    case 'redis':
    case 'rediss': {
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        return bad;
      }
      if (url.hostname === '' || !/^(\/\d*)?$/.test(url.pathname)) return bad;
      return ok(text);
    }
    case 'redis-sentinel': {
      const at = rest.lastIndexOf('@');
      const hostsAndMaster = at >= 0 ? rest.slice(at + 1) : rest;
      const slash = hostsAndMaster.indexOf('/');
      if (slash < 0 || slash === hostsAndMaster.length - 1) {
        return fail(`"${shown}": a sentinel URL names its master after the hosts: "redis-sentinel://h1:26379,h2:26379/mymaster"`);
      }
      const hosts = hostsAndMaster.slice(0, slash).split(',');
      const hostOk = (h: string) => /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(h);
      return hosts.length > 0 && hosts.every(hostOk) ? ok(text) : bad;
    }
    default:
      return bad;
  }
}

/**
 * The `balance` grammar:
 *   roundrobin | weighted | leastconn | p2c
 *   sticky | sticky(cookie:NAME)                         cookie default `portico_sticky`
 *   hash(ip) | hash(header:NAME) | hash(cookie:NAME)
 * Algorithm names are case-insensitive; header names are lower-cased (HTTP header names are), cookie
 * names are kept (cookies are case-sensitive).
 */
export function parseBalance(text: string): Parsed<Balance> {
  const grammar = 'roundrobin, weighted, leastconn, p2c, sticky, sticky(cookie:NAME), hash(ip), hash(header:NAME) or hash(cookie:NAME)';
  const m = /^\s*([A-Za-z0-9]+)\s*(?:\(\s*([^)]*?)\s*\))?\s*$/.exec(text);
  if (!m) return fail(`"${text}" is not a balance algorithm (write ${grammar})`);
  const algorithm = (m[1] as string).toLowerCase();
  const arg = m[2];
  const argParts = arg === undefined ? undefined : /^([a-z]+)\s*(?::\s*(\S+))?$/i.exec(arg);
  const kind = argParts?.[1]?.toLowerCase();
  const name = argParts?.[2];
  const badName = (n: string) => fail<Balance>(`"${text}": "${n}" is not a valid ${kind} name`);

  switch (algorithm) {
    case 'roundrobin':
    case 'weighted':
    case 'leastconn':
    case 'p2c':
      if (arg !== undefined) return fail(`"${text}": ${algorithm} takes no argument`);
      return ok({ algorithm });
    case 'sticky':
      if (arg === undefined) return ok({ algorithm: 'sticky', cookie: DEFAULTS.stickyCookie });
      if (kind !== 'cookie' || name === undefined) return fail(`"${text}": write sticky or sticky(cookie:NAME)`);
      if (!TOKEN.test(name)) return badName(name);
      return ok({ algorithm: 'sticky', cookie: name });
    case 'hash':
      if (kind === 'ip' && name === undefined) return ok({ algorithm: 'hash', hashOn: { kind: 'ip' } });
      if ((kind === 'header' || kind === 'cookie') && name !== undefined) {
        if (!TOKEN.test(name)) return badName(name);
        return ok({ algorithm: 'hash', hashOn: { kind, name: kind === 'header' ? name.toLowerCase() : name } });
      }
      return fail(`"${text}": write hash(ip), hash(header:NAME) or hash(cookie:NAME)`);
    default:
      return fail(`"${text}" is not a balance algorithm (write ${grammar})`);
  }
}

/** `200-399` or `204`: an inclusive range of HTTP status codes (100..599). */
export function parseStatusRange(text: string): Parsed<[number, number]> {
  const m = /^\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?$/.exec(text);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo < 100 || hi > 599 || lo > hi) {
    return fail(`"${text}" is not a status range (write e.g. "200-399" or "204"; codes 100..599, low first)`);
  }
  return ok([lo, hi]);
}

/** An absolute request path: starts with `/`, no spaces, no query or fragment. */
export function parseHttpPath(text: string): Parsed<string> {
  return /^\/[^\s?#]*$/.test(text) ? ok(text) : fail(`"${text}" is not a path (it starts with "/" and has no spaces, "?" or "#")`);
}

export function parseToken(text: string): Parsed<string> {
  return TOKEN.test(text) ? ok(text) : fail(`"${text}" is not a valid HTTP token (letters, digits and !#$%&'*+.^_\`|~-)`);
}

export function parseRouteHost(text: string): Parsed<string> {
  const host = text.toLowerCase();
  return isValidRouteHost(host) ? ok(host) : fail(`"${text}" is not a valid route host (a DNS name, "*.example.test" or "*")`);
}

export function parseDomain(text: string): Parsed<string> {
  const d = text.toLowerCase().replace(/\.$/, '');
  return isValidDnsName(d) ? ok(d) : fail(`"${text}" is not a valid DNS domain`);
}

/** Any name that still has a label after DC/OS normalisation (`Marathon`, `my_fw`, `a.b`). */
export function parseFramework(text: string): Parsed<string> {
  const n = toFrameworkName(text);
  return n.length > 0 && isValidDnsName(n)
    ? ok(text)
    : fail(`"${text}" is not a valid framework name (it must keep at least one DNS label: letters, digits, "-")`);
}

export function parseVipName(text: string): Parsed<string> {
  const n = toVipName(text);
  return n.length > 0 && isValidDnsName(n)
    ? ok(text)
    : fail(`"${text}" is not a valid VIP name (it must keep at least one DNS label: letters, digits, "-")`);
}

/** An http:// or https:// base URL (Marathon, Consul). Credentials in it are refused: they would be logged. */
export function parseHttpUrl(text: string): Parsed<string> {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return fail(`"${text}" is not a URL (http://host:port)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return fail(`"${text}": only http:// and https:// are supported`);
  if (u.username || u.password) return fail("put credentials in the section's username/password or token, not in the URL");
  if (u.search || u.hash) return fail(`"${text}": a base URL has no query or fragment`);
  return ok(text.replace(/\/+$/, ''));
}

/** Format name (as the schema writes it) → parser. ajv gets `(s) => parser(s).ok`. */
export const FORMATS = {
  name: parseName,
  listen: parseListenText,
  ip: parseIp,
  cidr: parseStrictCidr,
  upstream: parseUpstream,
  duration: parseDurationText,
  size: parseSizeText,
  store: parseStore,
  balance: parseBalance,
  'status-range': parseStatusRange,
  'http-path': parseHttpPath,
  'http-token': parseToken,
  'route-host': parseRouteHost,
  domain: parseDomain,
  framework: parseFramework,
  'vip-name': parseVipName,
  'http-url': parseHttpUrl,
} satisfies Record<string, (text: string) => Parsed<unknown>>;

export type FormatName = keyof typeof FORMATS;

export function isFormatName(name: string): name is FormatName {
  return Object.prototype.hasOwnProperty.call(FORMATS, name);
}
