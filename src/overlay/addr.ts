/**
 * Addresses as BigInt, so IPv4 and IPv6 pools (a /24 or a /80 with 2^48 addresses) share one arithmetic.
 * Parsing and formatting go through ipaddr.js.
 */
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export interface Addr {
  family: Family;
  value: bigint;
}

export interface Cidr {
  family: Family;
  /** The network address (host bits cleared). */
  base: bigint;
  prefix: number;
}

export function bits(family: Family): number {
  return family === 4 ? 32 : 128;
}

export function parseAddr(text: string): Addr {
  if (!ipaddr.isValid(text)) throw new Error(`not an IP address: ${JSON.stringify(text)}`);
  let a = ipaddr.parse(text);
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
  let v = 0n;
  for (const b of a.toByteArray()) v = (v << 8n) | BigInt(b);
  return { family: a.kind() === 'ipv4' ? 4 : 6, value: v };
}

export function formatAddr(family: Family, value: bigint): string {
  const n = family === 4 ? 4 : 16;
  const bytes: number[] = new Array(n);
  let v = value;
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  if (slash < 0) throw new Error(`not a CIDR (no prefix length): ${JSON.stringify(text)}`);
  const a = parseAddr(text.slice(0, slash));
  const ptext = text.slice(slash + 1);
  const prefix = Number(ptext);
  if (!/^\d+$/.test(ptext) || prefix > bits(a.family)) throw new Error(`bad prefix length in ${JSON.stringify(text)}`);
  return { family: a.family, base: a.value & mask(a.family, prefix), prefix };
}

export function mask(family: Family, prefix: number): bigint {
  const b = BigInt(bits(family));
  const all = (1n << b) - 1n;
  return all ^ ((1n << (b - BigInt(prefix))) - 1n);
}

export function size(c: Cidr): bigint {
  return 1n << BigInt(bits(c.family) - c.prefix);
}

export function last(c: Cidr): bigint {
  return c.base + size(c) - 1n;
}

export function contains(c: Cidr, a: Addr): boolean {
  return c.family === a.family && (a.value & mask(c.family, c.prefix)) === c.base;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  return a.base <= last(b) && b.base <= last(a);
}

export function formatCidr(c: Cidr): string {
  return `${formatAddr(c.family, c.base)}/${c.prefix}`;
}

/** `address/prefix` of one host address inside `c` (the CNI result form: `10.0.0.5/24`). */
export function hostInCidr(c: Cidr, value: bigint): string {
  return `${formatAddr(c.family, value)}/${c.prefix}`;
}

/** The `index`-th subnet of length `prefix` inside `c`. */
export function nthSubnet(c: Cidr, prefix: number, index: bigint): Cidr {
  const step = 1n << BigInt(bits(c.family) - prefix);
  return { family: c.family, base: c.base + index * step, prefix };
}

export function subnetCount(c: Cidr, prefix: number): bigint {
  return 1n << BigInt(prefix - c.prefix);
}

/** Canonical text of an address (so `9.0.1.02`-style or `FD01:B::1` keys never duplicate). */
export function canonical(text: string): string {
  const a = parseAddr(text);
  return formatAddr(a.family, a.value);
}
