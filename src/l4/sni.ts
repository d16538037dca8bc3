/**
 * Reading the server name out of a TLS ClientHello without terminating TLS (SNI passthrough).
 *
 * The ClientHello is reassembled from as many handshake records as it spans (RFC 8446 §5.1: a handshake
 * message may be fragmented over records, and no other record type may come between the fragments), then
 * walked field by field with every length checked against what encloses it. Bounded: records of at most
 * 2^14 bytes, a ClientHello of at most `maxHelloBytes`. Never throws: the answer is complete, incomplete
 * (wait for more bytes), or invalid (refuse the connection).
 *
 * Only what routing needs is returned: the host_name of the server_name extension (RFC 6066 §3),
 * lower-cased, without a trailing dot, and the ALPN protocols offered.
 */

export type HelloParse =
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  | {
      kind: 'ok';
      /** Absent when the client sent no server_name (an IP-addressed connection, an old client). */
      serverName?: string;
      alpn: string[];
      /** Bytes of records the ClientHello took (anything after it is forwarded too). */
      length: number;
    };

const RECORD_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const MAX_RECORD = 16_384;
const HOST_CHARS = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$/;

class Malformed extends Error {}

/** A bounds-checked reader over one byte range. */
class Reader {
  constructor(
    private readonly b: Buffer,
    public off: number,
    readonly end: number,
  ) {}
  need(n: number, what: string): void {
    if (this.off + n > this.end) throw new Malformed(`${what} runs past its enclosing length`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.b[this.off++] as number;
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.b.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  skip(n: number, what: string): void {
    this.need(n, what);
    this.off += n;
  }
  /** A sub-reader over the next `n` bytes (and skip them here). */
  sub(n: number, what: string): Reader {
    this.need(n, what);
    const r = new Reader(this.b, this.off, this.off + n);
    this.off += n;
    return r;
  }
  get left(): number {
    return this.end - this.off;
  }
  text(n: number, what: string): string {
    this.need(n, what);
    const s = this.b.toString('latin1', this.off, this.off + n);
    this.off += n;
    return s;
  }
}

/**
 * Parse the ClientHello at the start of `buf` (the client's first bytes, as received so far).
 * `maxHelloBytes` bounds the handshake message (type and length included).
 */
export function parseClientHello(buf: Buffer, maxHelloBytes = 32_768): HelloParse {
  // 1. Reassemble the handshake message from records.
  const fragments: Buffer[] = [];
  let have = 0;
  let need = -1; // total handshake bytes (4 + body length) once known
  let off = 0;
  for (;;) {
    if (need >= 0 && have >= need) break;
    if (buf.length < off + 5) {
      // Say "not TLS" as early as the first byte allows, instead of waiting for five.
      if (off === 0 && buf.length > 0 && buf[0] !== RECORD_HANDSHAKE) return { kind: 'invalid', reason: 'not a TLS handshake record' };
      return { kind: 'incomplete' };
    }
    const type = buf[off] as number;
    if (type !== RECORD_HANDSHAKE)
      return { kind: 'invalid', reason: off === 0 ? 'not a TLS handshake record' : `record type ${type} inside the ClientHello` };
    if (buf[off + 1] !== 3 || (buf[off + 2] as number) > 4) return { kind: 'invalid', reason: 'record version is not TLS' };
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > MAX_RECORD) return { kind: 'invalid', reason: `record length ${len}` };
    if (buf.length < off + 5 + len) {
      // The record is not all here yet; refuse early if what is here already says it is not a ClientHello.
      if (need < 0 && have === 0 && buf.length > off + 5 && buf[off + 5] !== HANDSHAKE_CLIENT_HELLO) {
        return { kind: 'invalid', reason: 'first handshake message is not a ClientHello' };
      }
      return { kind: 'incomplete' };
    }
    fragments.push(buf.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (need < 0 && have >= 4) {
      const head = fragments.length === 1 ? (fragments[0] as Buffer) : Buffer.concat(fragments);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return { kind: 'invalid', reason: 'first handshake message is not a ClientHello' };
      const bodyLen = ((head[1] as number) << 16) | ((head[2] as number) << 8) | (head[3] as number);
      need = 4 + bodyLen;
      if (need > maxHelloBytes) return { kind: 'invalid', reason: `ClientHello of ${need} bytes is larger than ${maxHelloBytes}` };
    }
  }
  const hs = fragments.length === 1 ? (fragments[0] as Buffer) : Buffer.concat(fragments);
  // A following handshake message in the same records (not legal before the server answers) is ignored.
  try {
    const r = new Reader(hs, 4, need);
    const major = r.u8('legacy_version');
    r.u8('legacy_version');
    if (major !== 3) throw new Malformed('legacy_version is not TLS');
    r.skip(32, 'random');
    const sid = r.u8('legacy_session_id length');
    if (sid > 32) throw new Malformed('legacy_session_id longer than 32 bytes');
    r.skip(sid, 'legacy_session_id');
    const cs = r.u16('cipher_suites length');
    if (cs < 2 || cs % 2 !== 0) throw new Malformed('cipher_suites length');
    r.skip(cs, 'cipher_suites');
    const comp = r.u8('legacy_compression_methods length');
    if (comp < 1) throw new Malformed('legacy_compression_methods is empty');
    r.skip(comp, 'legacy_compression_methods');
    const result: HelloParse & { kind: 'ok' } = { kind: 'ok', alpn: [], length: off };
    if (r.left === 0) return result; // no extensions at all (TLS 1.2 allows it)
    const extLen = r.u16('extensions length');
    if (extLen !== r.left) throw new Malformed('extensions length does not match the ClientHello');
    const exts = r.sub(extLen, 'extensions');
    const seen = new Set<number>();
    while (exts.left > 0) {
      const type = exts.u16('extension type');
      const body = exts.sub(exts.u16('extension length'), 'extension');
      if (seen.has(type)) throw new Malformed(`extension ${type} appears twice`);
      seen.add(type);
      if (type === EXT_SERVER_NAME) {
        if (body.left === 0) continue; // an empty server_name is a server's echo, legal but says nothing
        const list = body.sub(body.u16('server_name_list length'), 'server_name_list');
        if (body.left !== 0) throw new Malformed('bytes after server_name_list');
        while (list.left > 0) {
          const nameType = list.u8('name_type');
          const len = list.u16('name length');
          if (nameType !== 0) {
            list.skip(len, 'name');
            continue;
          }
          if (result.serverName !== undefined) throw new Malformed('two host_names in server_name');
          if (len === 0 || len > 254) throw new Malformed(`host_name of ${len} bytes`);
          let name = list.text(len, 'host_name').toLowerCase();
          if (name.endsWith('.')) name = name.slice(0, -1);
          if (name.length === 0 || name.length > 253 || !HOST_CHARS.test(name)) throw new Malformed('host_name is not a DNS name');
          result.serverName = name;
        }
      } else if (type === EXT_ALPN) {
        const list = body.sub(body.u16('alpn list length'), 'alpn list');
        while (list.left > 0) {
          const n = list.u8('protocol name length');
          if (n === 0) throw new Malformed('empty ALPN protocol name');
          result.alpn.push(list.text(n, 'protocol name'));
        }
      }
    }
    return result;
  } catch (err) {
    if (err instanceof Malformed) return { kind: 'invalid', reason: err.message };
    throw err;
  }
}
