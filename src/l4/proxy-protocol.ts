/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt), both ways:
 * - toward backends: `encodeV1` / `encodeV2` build the header a VIP with `proxyProtocol` sends first;
 * - from a load balancer in front: `parseProxyHeader` reads one (v1 or v2) from the start of a trusted
 *   connection, and `proxyPrefixVerdict` tells whether an untrusted connection starts with one.
 *
 * Parsing is bounded (v1: 107 bytes; v2: 16 + a length we cap) and never throws: a header is complete,
 * incomplete (read more), or invalid (refuse the connection).
 */
import net from 'node:net';
import ipaddr from 'ipaddr.js';

export interface Address {
  address: string;
  port: number;
}

/** `\r\n\r\n\0\r\nQUIT\n`: the v2 signature. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The longest v1 line, CRLF included. */
export const V1_MAX = 107;
/** v2 headers longer than this (addresses plus TLVs) are refused. The spec allows 64 KiB; nobody needs it. */
export const V2_MAX_LENGTH = 2048;

/** `::ffff:10.0.0.1` → `10.0.0.1`; anything else unchanged. */
export function unmapAddress(a: string): string {
  if (a.length > 7 && (a.startsWith('::ffff:') || a.startsWith('::FFFF:'))) {
    const v4 = a.slice(7);
    if (net.isIPv4(v4)) return v4;
  }
  return a;
}

function mapToV6(a: string): string {
  return net.isIPv4(a) ? `::ffff:${a}` : a;
}

/** A v1 header line. Mixed families are written as TCP6 with the IPv4 side mapped (`::ffff:a.b.c.d`). */
export function encodeV1(src: Address, dst: Address): Buffer {
  let s = unmapAddress(src.address);
  let d = unmapAddress(dst.address);
  if (!net.isIP(s) || !net.isIP(d)) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const v4 = net.isIPv4(s) && net.isIPv4(d);
  if (!v4) {
    s = mapToV6(s);
    d = mapToV6(d);
  }
  return Buffer.from(`PROXY ${v4 ? 'TCP4' : 'TCP6'} ${s} ${d} ${src.port} ${dst.port}\r\n`, 'latin1');
}

function writeV6(buf: Buffer, off: number, a: string): void {
  const bytes = ipaddr.IPv6.parse(a).toByteArray();
  for (let i = 0; i < 16; i++) buf[off + i] = bytes[i] as number;
}

function writeV4(buf: Buffer, off: number, a: string): void {
  const p = a.split('.');
  for (let i = 0; i < 4; i++) buf[off + i] = Number(p[i]);
}

/** A v2 PROXY header for a TCP or UDP flow (mixed families: both written as IPv6, the v4 side mapped). */
export function encodeV2(src: Address, dst: Address, protocol: 'tcp' | 'udp' = 'tcp'): Buffer {
  const s = unmapAddress(src.address);
  const d = unmapAddress(dst.address);
  if (!net.isIP(s) || !net.isIP(d)) {
    const b = Buffer.alloc(16);
    V2_SIGNATURE.copy(b, 0);
    b[12] = 0x21; // v2, PROXY
    b[13] = 0x00; // UNSPEC: the receiver uses the real connection's addresses
    return b;
  }
  const v4 = net.isIPv4(s) && net.isIPv4(d);
  const len = v4 ? 12 : 36;
  const b = Buffer.alloc(16 + len);
  V2_SIGNATURE.copy(b, 0);
  b[12] = 0x21;
  b[13] = (v4 ? 0x10 : 0x20) | (protocol === 'tcp' ? 0x01 : 0x02);
  b.writeUInt16BE(len, 14);
  if (v4) {
    writeV4(b, 16, s);
    writeV4(b, 20, d);
    b.writeUInt16BE(src.port, 24);
    b.writeUInt16BE(dst.port, 26);
  } else {
    writeV6(b, 16, mapToV6(s));
    writeV6(b, 32, mapToV6(d));
    b.writeUInt16BE(src.port, 48);
    b.writeUInt16BE(dst.port, 50);
  }
  return b;
}

export type ProxyParse =
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  | {
      kind: 'ok';
      version: 1 | 2;
      /** Bytes the header took: what follows is the client's data. */
      length: number;
      /** LOCAL (v2) or UNKNOWN (v1): the connection's own addresses stand. */
      local: boolean;
      protocol?: 'tcp' | 'udp';
      source?: Address;
      destination?: Address;
    };

const INCOMPLETE: ProxyParse = Object.freeze({ kind: 'incomplete' });
const invalid = (reason: string): ProxyParse => ({ kind: 'invalid', reason });

/** Whether `buf` is a (possibly partial) prefix of `sig`, or starts with all of it. */
function prefixOf(buf: Buffer, sig: Buffer): 'no' | 'partial' | 'full' {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return 'no';
  return buf.length >= sig.length ? 'full' : 'partial';
}

/**
 * For an untrusted connection: `proxy` if it starts with a PROXY header signature (refuse it), `data`
 * if it cannot (forward it), `undecided` while the bytes so far are a prefix of a signature.
 */
export function proxyPrefixVerdict(buf: Buffer): 'proxy' | 'data' | 'undecided' {
  const a = prefixOf(buf, V1_PREFIX);
  const b = prefixOf(buf, V2_SIGNATURE);
  if (a === 'full' || b === 'full') return 'proxy';
  if (a === 'partial' || b === 'partial') return 'undecided';
  return 'data';
}

const PORT = /^(?:0|[1-9]\d{0,4})$/;

function parseV1(buf: Buffer): ProxyParse {
  const end = buf.indexOf('\r\n', 0, 'latin1');
  if (end < 0) return buf.length >= V1_MAX ? invalid('v1 header longer than 107 bytes') : INCOMPLETE;
  if (end + 2 > V1_MAX) return invalid('v1 header longer than 107 bytes');
  const line = buf.toString('latin1', 0, end);
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { kind: 'ok', version: 1, length: end + 2, local: true };
  if (parts.length !== 6) return invalid('v1 header does not have 6 fields');
  const [, proto, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const want = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  if (!want) return invalid(`v1 protocol ${JSON.stringify(proto.slice(0, 8))} is not TCP4, TCP6 or UNKNOWN`);
  if (net.isIP(src) !== want || net.isIP(dst) !== want) return invalid(`v1 addresses are not ${proto}`);
  if (!PORT.test(sport) || !PORT.test(dport) || Number(sport) > 65535 || Number(dport) > 65535) return invalid('v1 port out of range');
  return {
    kind: 'ok',
    version: 1,
    length: end + 2,
    local: false,
    protocol: 'tcp',
    source: { address: unmapAddress(src), port: Number(sport) },
    destination: { address: unmapAddress(dst), port: Number(dport) },
  };
}

function readV6(buf: Buffer, off: number): string {
  const a = ipaddr.fromByteArray([...buf.subarray(off, off + 16)]) as ipaddr.IPv6;
  return a.isIPv4MappedAddress() ? a.toIPv4Address().toString() : a.toRFC5952String();
}

function parseV2(buf: Buffer): ProxyParse {
  if (buf.length < 16) return INCOMPLETE;
  const verCmd = buf[12] as number;
  if (verCmd >> 4 !== 2) return invalid(`v2 version ${verCmd >> 4} is not 2`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return invalid(`v2 command ${cmd} is neither LOCAL nor PROXY`);
  const fam = buf[13] as number;
  const len = buf.readUInt16BE(14);
  if (len > V2_MAX_LENGTH) return invalid(`v2 header of ${len} bytes is longer than ${V2_MAX_LENGTH}`);
  const total = 16 + len;
  if (buf.length < total) return INCOMPLETE;
  if (cmd === 0) return { kind: 'ok', version: 2, length: total, local: true };
  const family = fam >> 4;
  const proto = fam & 0x0f;
  if (family === 0 || family === 3) return { kind: 'ok', version: 2, length: total, local: true }; // UNSPEC, AF_UNIX
  if ((family !== 1 && family !== 2) || (proto !== 1 && proto !== 2))
    return invalid(`v2 family/protocol byte 0x${fam.toString(16)} is unknown`);
  const protocol = proto === 1 ? 'tcp' : 'udp';
  if (family === 1) {
    if (len < 12) return invalid('v2 IPv4 addresses are truncated');
    return {
      kind: 'ok',
      version: 2,
      length: total,
      local: false,
      protocol,
      source: { address: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`, port: buf.readUInt16BE(24) },
      destination: { address: `${buf[20]}.${buf[21]}.${buf[22]}.${buf[23]}`, port: buf.readUInt16BE(26) },
    };
  }
  if (len < 36) return invalid('v2 IPv6 addresses are truncated');
  return {
    kind: 'ok',
    version: 2,
    length: total,
    local: false,
    protocol,
    source: { address: readV6(buf, 16), port: buf.readUInt16BE(48) },
    destination: { address: readV6(buf, 32), port: buf.readUInt16BE(50) },
  };
}

/** Parse a PROXY header (v1 or v2) at the start of `buf`. */
export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length === 0) return INCOMPLETE;
  const v2 = prefixOf(buf, V2_SIGNATURE);
  if (v2 === 'full') return parseV2(buf);
  const v1 = prefixOf(buf, V1_PREFIX);
  if (v1 === 'full') return parseV1(buf);
  if (v1 === 'partial' || v2 === 'partial') return INCOMPLETE;
  return invalid('the connection does not start with a PROXY header');
}
