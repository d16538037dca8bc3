/**
 * Small, strict parsers for the scalar forms the config uses: durations, sizes, addresses, listen
 * addresses and CIDRs. Each returns a value or a message; none throws.
 */
import ipaddr from 'ipaddr.js';

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `250ms`, `2s`, `1.5s`, `5m`, `1h`, `1m30s`. Bare numbers are refused: a unit is always written. */
export function parseDuration(text: string): Parsed<number> {
  if (typeof text !== 'string') return fail('must be a duration string such as "250ms" or "2s"');
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
    consumed = re.lastIndex;
  }
  if (consumed === 0 || consumed !== text.length) {
    return fail(`"${text}" is not a duration (write e.g. "250ms", "2s", "1m30s")`);
  }
  return ok(Math.round(total));
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1 << 20,
  mb: 1 << 20,
  mib: 1 << 20,
  g: 1 << 30,
  gb: 1 << 30,
  gib: 1 << 30,
};

/** `1048576`, `512k`, `16KiB`, `10MiB`, `1g`. */
export function parseSize(text: string | number): Parsed<number> {
  if (typeof text === 'number') return Number.isInteger(text) && text >= 0 ? ok(text) : fail('must be a whole number of bytes');
  if (typeof text !== 'string') return fail('must be a size such as "16KiB" or a whole number of bytes');
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m ? SIZE_UNITS[(m[2] as string).toLowerCase()] : undefined;
  if (!m || unit === undefined) return fail(`"${text}" is not a size (write e.g. "16KiB", "10MiB")`);
  return ok(Math.round(Number(m[1]) * unit));
}

/**
 * Four decimal parts 0..255 without leading zeros (`10.0.0.1`, not `010.0.0.1` or `10.1`): what
 * ipaddr.js's isValidFourPartDecimal accepts, and already its own normal form. Checked by hand: a config
 * or feed of 100,000 endpoints has 100,000 of them, and ipaddr.js's validate-then-parse read each twice.
 */
function isDottedQuad(t: string): boolean {
  let parts = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= t.length; i++) {
    const c = i < t.length ? t.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || value > 255) return false;
      parts++;
      value = 0;
      digits = 0;
      continue;
    }
    if (c < 0x30 || c > 0x39) return false;
    if (digits === 1 && value === 0) return false; // a leading zero
    if (++digits > 3) return false;
    value = value * 10 + (c - 0x30);
  }
  return parts === 4;
}

/** A normalised IP (v4 dotted quad, v6 RFC 5952), or an error. IPv4-mapped v6 stays v6. */
export function parseAddress(text: string): Parsed<string> {
  if (typeof text !== 'string') return fail('must be an IP address');
  let t = text.trim();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  if (isDottedQuad(t)) return ok(t);
  if (t.includes(':') && ipaddr.IPv6.isValid(t)) return ok(ipaddr.IPv6.parse(t).toRFC5952String());
  return fail(`"${text}" is not an IPv4 or IPv6 address`);
}

export interface ListenAddress {
  host: string;
  port: number;
  /** 4 or 6 */
  family: 4 | 6;
}

/** `127.0.0.1:8080`, `[::1]:8080`, `:8080` (all v4 interfaces), `0.0.0.0:53`. Port 0 allowed (ephemeral). */
export function parseListen(text: string): Parsed<ListenAddress> {
  if (typeof text !== 'string') return fail('must be "host:port"');
  const i = text.lastIndexOf(':');
  if (i < 0) return fail(`"${text}" is not host:port (write e.g. "127.0.0.1:8080" or "[::1]:8080")`);
  const hostText = text.slice(0, i);
  const portText = text.slice(i + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return fail(`"${text}": port must be 0..65535`);
  if (hostText === '' || hostText === '*') return ok({ host: '0.0.0.0', port: Number(portText), family: 4 });
  if (hostText.includes(':') && !hostText.startsWith('[')) {
    return fail(`"${text}": an IPv6 listen address is written in brackets, e.g. "[::1]:8080"`);
  }
  const addr = parseAddress(hostText);
  if (!addr.ok) return fail(`"${text}": ${addr.error}`);
  return ok({ host: addr.value, port: Number(portText), family: addr.value.includes(':') ? 6 : 4 });
}

export function formatListen(l: { host: string; port: number }): string {
  return l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/** `10.0.0.0/8`, `::1/128`; a bare address is a host prefix. Normalised to network/prefix. */
export function parseCidr(text: string): Parsed<string> {
  if (typeof text !== 'string') return fail('must be a CIDR such as "10.0.0.0/8"');
  try {
    if (!text.includes('/')) {
      const a = parseAddress(text);
      if (!a.ok) return fail(a.error);
      return ok(`${a.value}/${a.value.includes(':') ? 128 : 32}`);
    }
    const slash = text.indexOf('/');
    const head = text.slice(0, slash);
    if (
      !(ipaddr.IPv4.isValidFourPartDecimal(head) || (head.includes(':') && ipaddr.IPv6.isValid(head))) ||
      !/^\d{1,3}$/.test(text.slice(slash + 1))
    ) {
      return fail(`"${text}" is not a CIDR (write e.g. "10.0.0.0/8" or "fd00::/8")`);
    }
    const [addr, bits] = ipaddr.parseCIDR(text);
    const net =
      addr.kind() === 'ipv4'
        ? ipaddr.IPv4.networkAddressFromCIDR(text).toString()
        : ipaddr.IPv6.networkAddressFromCIDR(text).toRFC5952String();
    return ok(`${net}/${bits}`);
  } catch {
    return fail(`"${text}" is not a CIDR (write e.g. "10.0.0.0/8" or "fd00::/8")`);
  }
}
