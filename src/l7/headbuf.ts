/**
 * A message head being built, as bytes in a reused buffer: no string concatenation (whose pieces and
 * final flattening were a quarter of the garbage the engine made per proxied request), no allocation
 * once the buffer has grown to the largest head seen.
 *
 * One HeadBuf holds one head at a time, and only within the synchronous handling of one event: the
 * engine has one for request heads (built and handed to the upstream stream in one go) and one for
 * response heads (held from the upstream's head until the end of that same read, see Exchange). The
 * bytes must be copied or written before anything else can build into the same HeadBuf; `view()` is
 * valid until then.
 */

/** Buffer's own latin1Write (what buf.write(s, off, 'latin1') ends in), without the argument checks. */
export interface Latin1Writer {
  latin1Write(s: string, offset: number, length: number): number;
}

/** Strings up to this long are copied by a JS loop (cheaper than a call into the binding). */
const SHORT = 32;

export class HeadBuf {
  private buf: Buffer;
  len = 0;
  /** Who holds the head (the response HeadBuf's guard: one held head at a time). */
  owner: object | undefined = undefined;

  constructor(size = 4096) {
    this.buf = Buffer.allocUnsafeSlow(size);
  }

  reset(): this {
    this.len = 0;
    return this;
  }

  /** Append a latin1 string (every char < 256: what the engine's heads are made of). */
  add(s: string): void {
    const n = s.length;
    let p = this.len;
    if (p + n > this.buf.length) this.grow(p + n);
    const b = this.buf;
    if (n <= SHORT) {
      for (let i = 0; i < n; i++) b[p++] = s.charCodeAt(i);
      this.len = p;
    } else {
      (b as unknown as Latin1Writer).latin1Write(s, p, n);
      this.len = p + n;
    }
  }

  /** Append a non-negative integer in decimal, or in hex when `radix` is 16. */
  addInt(v: number, radix: 10 | 16 = 10): void {
    if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER && Math.floor(v) === v)) {
      this.add(v.toString(radix));
      return;
    }
    let digits = 1;
    for (let x = v; x >= radix; x = Math.floor(x / radix)) digits++;
    if (this.len + digits > this.buf.length) this.grow(this.len + digits);
    const b = this.buf;
    let x = v;
    for (let p = this.len + digits - 1; p >= this.len; p--) {
      const d = x % radix;
      b[p] = d < 10 ? 0x30 + d : 0x57 + d;
      x = Math.floor(x / radix);
    }
    this.len += digits;
  }

  /** The buffer: the head is bytes[0, len) (copy or write it before the next build). */
  get bytes(): Buffer {
    return this.buf;
  }

  private grow(min: number): void {
    const next = Buffer.allocUnsafeSlow(Math.max(min, this.buf.length * 2));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
}
