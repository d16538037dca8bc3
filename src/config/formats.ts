/**
 * The string formats of the config file. Each is one parser that returns a normalised value or a
 * message (never throws). The same parser is registered with ajv as a JSON Schema `format` (so the
 * schema the api serves names it and the validator enforces it) and decodes the value in the
 * settings that use it — one rule, one message, wherever it is checked. The formats the planes'
 * settings use (durations, sizes, addresses, CIDRs, upstreams, domains) are in model/settings.ts.
 */
import { isValidDnsName, isValidRouteHost, toFrameworkName, toVipName } from '../model/names.js';
import type { Parsed } from '../model/parse.js';
import { CIDR, DOMAIN, DURATION, HTTP_TOKEN, IP, LISTEN, SIZE, UPSTREAM, type Format } from '../model/settings.js';
import type { Balance } from '../model/types.js';

/** Cookie used by `balance: sticky` when no name is given. */
export const STICKY_COOKIE = 'portico_sticky';

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

/** RFC 9110 token: header names, methods, cookie names. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A service or entrypoint name: it ends up in ids (`<name>@<provider>`) and DNS labels. */
const NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/;

export function parseName(text: string): Parsed<string> {
  return NAME_RE.test(text)
    ? ok(text)
    : fail(`"${text}" is not a valid name (1..63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit)`);
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
      if (arg === undefined) return ok({ algorithm: 'sticky', cookie: STICKY_COOKIE });
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

export function parseRouteHost(text: string): Parsed<string> {
  const host = text.toLowerCase();
  return isValidRouteHost(host) ? ok(host) : fail(`"${text}" is not a valid route host (a DNS name, "*.example.test" or "*")`);
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

const format = <T>(name: string, parse: (text: string) => Parsed<T>): Format<T> => ({ name, parse });

export const NAME = format('name', parseName);
export const STORE = format('store', parseStore);
export const BALANCE = format('balance', parseBalance);
export const STATUS_RANGE = format('status-range', parseStatusRange);
export const HTTP_PATH = format('http-path', parseHttpPath);
export const ROUTE_HOST = format('route-host', parseRouteHost);
export const FRAMEWORK = format('framework', parseFramework);
export const VIP_NAME = format('vip-name', parseVipName);
export const HTTP_URL = format('http-url', parseHttpUrl);

/** Every format the config file's schema names, by name: what ajv is given, and where its messages come from. */
export const FORMATS: Record<string, (text: string) => Parsed<unknown>> = Object.fromEntries(
  [
    NAME,
    LISTEN,
    IP,
    CIDR,
    UPSTREAM,
    DURATION,
    SIZE,
    STORE,
    BALANCE,
    STATUS_RANGE,
    HTTP_PATH,
    HTTP_TOKEN,
    ROUTE_HOST,
    DOMAIN,
    FRAMEWORK,
    VIP_NAME,
    HTTP_URL,
  ].map((f: Format<unknown>) => [f.name, (text: string) => f.parse(text)]),
);

export function isFormatName(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(FORMATS, name);
}
