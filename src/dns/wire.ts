/**
 * DNS wire format: the constants we use and a small message builder for the records we publish
 * (A, AAAA, SRV, PTR, SOA, NS, OPT). It runs at zone-compile time only (the query path copies the
 * bytes it builds), so it favours clarity over speed — but it is a plain Buffer writer: dns2's
 * encoder writes bit by bit (≈30 µs per A record, ≈45 µs per SRV record measured here), which would
 * block the event loop for seconds on a 100,000-endpoint table. Tests check every record we build
 * against dns2's decoder.
 *
 * Compression: a builder compresses names only against the question name, which sits at a fixed
 * offset (12) with a fixed length in every answer we send. Records never point into other records,
 * so the query path can rotate, drop or reorder whole records without breaking a pointer.
 */
import ipaddr from 'ipaddr.js';

export const TYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  IXFR: 251,
  AXFR: 252,
  MAILB: 253,
  MAILA: 254,
  ANY: 255,
} as const;

export const CLASS_IN = 1;

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended (RFC 6891): 16 = OPT extended-rcode 1, header rcode 0. */
  BADVERS: 16,
} as const;

/** Header flag bits, byte 2 of the message. */
export const F2 = { QR: 0x80, AA: 0x04, TC: 0x02, RD: 0x01 } as const;
/** Header flag bits, byte 3 of the message. */
export const F3 = { RA: 0x80, AD: 0x20, CD: 0x10 } as const;

export const HEADER_SIZE = 12;
/** Classic DNS over UDP without EDNS (RFC 1035 §4.2.1). */
export const MIN_UDP_PAYLOAD = 512;
/** What we advertise and honour at most over UDP: DNS flag day 2020's value, below common path MTUs. */
export const EDNS_UDP_PAYLOAD = 1232;
/** The largest DNS message over TCP (two-byte length prefix). */
export const MAX_MESSAGE = 65535;
/** RFC 1035 §2.3.4. */
export const MAX_NAME_WIRE = 255;
export const MAX_LABEL = 63;

/** Our OPT record: root owner, type 41, UDP payload 1232, extended rcode 0, version 0, no flags, no options. */
export const OPT_RECORD = Buffer.from([0, 0, 41, EDNS_UDP_PAYLOAD >> 8, EDNS_UDP_PAYLOAD & 0xff, 0, 0, 0, 0, 0, 0]);
export const OPT_SIZE = OPT_RECORD.length;

/** Write our OPT record at `off`, with the extended rcode byte (BADVERS: 1). */
export function writeOpt(out: Buffer, off: number, extendedRcode = 0): void {
  OPT_RECORD.copy(out, off);
  out[off + 5] = extendedRcode;
}

/** Dotted name (any case, optional trailing dot) → its labels, lower-cased. Empty for the root. */
export function labelsOf(name: string): string[] {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n === '' ? [] : n.toLowerCase().split('.');
}

/**
 * Wire form of a name (uncompressed, lower-case). Throws on an empty label, a label over 63 bytes or
 * a name over 255 bytes: callers only pass names the zone compiler built from validated labels.
 */
export function nameToWire(name: string): Buffer {
  const labels = labelsOf(name);
  let size = 1;
  for (const l of labels) {
    if (l.length === 0 || l.length > MAX_LABEL) throw new RangeError(`bad DNS label in "${name}"`);
    size += l.length + 1;
  }
  if (size > MAX_NAME_WIRE) throw new RangeError(`DNS name "${name}" is over ${MAX_NAME_WIRE} bytes`);
  const out = Buffer.allocUnsafe(size);
  let p = 0;
  for (const l of labels) {
    out[p++] = l.length;
    p += out.write(l, p, 'latin1');
  }
  out[p] = 0;
  return out;
}

/**
 * The lookup key of a name: its lower-case wire form as a latin1 string. The query parser builds the
 * same key straight from the packet's bytes, so the hot path never converts to dotted text.
 */
export function wireKey(name: string): string {
  return nameToWire(name).toString('latin1');
}

/** Dotted form (no trailing dot) of a wire-format key built by `wireKey` or the query parser. */
export function keyToName(key: string): string {
  const labels: string[] = [];
  let p = 0;
  while (p < key.length) {
    const len = key.charCodeAt(p);
    if (len === 0) break;
    labels.push(key.slice(p + 1, p + 1 + len));
    p += len + 1;
  }
  return labels.join('.');
}

/** `10.1.2.3` → `3.2.1.10.in-addr.arpa`; IPv6 → nibble form under `ip6.arpa`. */
export function reverseName(address: string): string {
  const addr = ipaddr.parse(address);
  if (addr.kind() === 'ipv4') return `${(addr as ipaddr.IPv4).octets.slice().reverse().join('.')}.in-addr.arpa`;
  const bytes = (addr as ipaddr.IPv6).toByteArray();
  const nibbles: string[] = [];
  for (let i = bytes.length - 1; i >= 0; i--) {
    const b = bytes[i] as number;
    nibbles.push((b & 0xf).toString(16), (b >> 4).toString(16));
  }
  return `${nibbles.join('.')}.ip6.arpa`;
}

export function isIPv6(address: string): boolean {
  return address.includes(':');
}

/** SOA timers (seconds), as Mesos-DNS defaults them; `minimum` is the negative-caching TTL (RFC 2308). */
export interface SoaData {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

/**
 * Writes one message. Names are compressed only against `question` (see the file comment). Grows as
 * needed; `finish()` returns a right-sized copy.
 */
export class MessageBuilder {
  private buf: Buffer;
  pos = 0;
  /** Lower-case dotted suffix of the question name → its offset in the message. */
  private readonly suffixes = new Map<string, number>();

  constructor(initial = 512) {
    this.buf = Buffer.alloc(initial);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v & 0xff;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v & 0xffff, this.pos);
    this.pos += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  patchU16(at: number, v: number): void {
    this.buf.writeUInt16BE(v & 0xffff, at);
  }

  /** Header with id 0; counts are patched by `setCounts`. */
  header(flags2: number, flags3: number): void {
    this.u16(0);
    this.u8(flags2);
    this.u8(flags3);
    this.u16(0);
    this.u16(0);
    this.u16(0);
    this.u16(0);
  }

  setCounts(qd: number, an: number, ns: number, ar: number): void {
    this.buf.writeUInt16BE(qd, 4);
    this.buf.writeUInt16BE(an, 6);
    this.buf.writeUInt16BE(ns, 8);
    this.buf.writeUInt16BE(ar, 10);
  }

  /** The question (uncompressed, lower-case); its suffixes become compression targets. */
  question(name: string, qtype: number): void {
    const labels = labelsOf(name);
    for (let i = 0; i < labels.length; i++) {
      this.suffixes.set(labels.slice(i).join('.'), this.pos);
      const l = labels[i] as string;
      this.u8(l.length);
      this.ensure(l.length);
      this.pos += this.buf.write(l, this.pos, 'latin1');
    }
    this.u8(0);
    this.u16(qtype);
    this.u16(CLASS_IN);
  }

  /** A name, pointing at the longest suffix it shares with the question. */
  name(name: string): void {
    const labels = labelsOf(name);
    for (let i = 0; i < labels.length; i++) {
      const at = this.suffixes.get(labels.slice(i).join('.'));
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      const l = labels[i] as string;
      if (l.length === 0 || l.length > MAX_LABEL) throw new RangeError(`bad DNS label in "${name}"`);
      this.u8(l.length);
      this.ensure(l.length);
      this.pos += this.buf.write(l, this.pos, 'latin1');
    }
    this.u8(0);
  }

  /** Owner, type, class IN, TTL and a back-filled RDLENGTH around `rdata()`. */
  record(owner: string, type: number, ttl: number, rdata: () => void): void {
    this.name(owner);
    this.u16(type);
    this.u16(CLASS_IN);
    this.u32(ttl);
    const lenAt = this.pos;
    this.u16(0);
    const start = this.pos;
    rdata();
    this.buf.writeUInt16BE(this.pos - start, lenAt);
  }

  a(owner: string, ttl: number, address: string): void {
    this.record(owner, TYPE.A, ttl, () => this.bytes(Uint8Array.from(ipaddr.IPv4.parse(address).octets)));
  }

  aaaa(owner: string, ttl: number, address: string): void {
    this.record(owner, TYPE.AAAA, ttl, () => this.bytes(Uint8Array.from(ipaddr.IPv6.parse(address).toByteArray())));
  }

  /** A or AAAA by the address's family. */
  address(owner: string, ttl: number, address: string): void {
    if (isIPv6(address)) this.aaaa(owner, ttl, address);
    else this.a(owner, ttl, address);
  }

  srv(owner: string, ttl: number, priority: number, weight: number, port: number, target: string): void {
    this.record(owner, TYPE.SRV, ttl, () => {
      this.u16(priority);
      this.u16(weight);
      this.u16(port);
      // RFC 2782: the target must not be compressed. Resolvers cope either way, but be correct.
      this.rawName(target);
    });
  }

  ptr(owner: string, ttl: number, target: string): void {
    this.record(owner, TYPE.PTR, ttl, () => this.name(target));
  }

  ns(owner: string, ttl: number, target: string): void {
    this.record(owner, TYPE.NS, ttl, () => this.name(target));
  }

  soa(owner: string, ttl: number, soa: SoaData): void {
    this.record(owner, TYPE.SOA, ttl, () => {
      this.name(soa.mname);
      this.name(soa.rname);
      this.u32(soa.serial);
      this.u32(soa.refresh);
      this.u32(soa.retry);
      this.u32(soa.expire);
      this.u32(soa.minimum);
    });
  }

  /** An uncompressed name. */
  rawName(name: string): void {
    this.bytes(nameToWire(name));
  }

  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}
