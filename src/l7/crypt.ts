/**
 * crypt(3) password hashes as HAProxy userlists take them (`user NAME password HASH`), computed with
 * node:crypto: `$6$` SHA-512-crypt and `$5$` SHA-256-crypt (Ulrich Drepper's "Unix crypt using SHA-256
 * and SHA-512" specification, `rounds=N$` included), `$1$` MD5-crypt (Poul-Henning Kamp's FreeBSD
 * scheme), and `{PLAIN}secret` for a clear-text password (insecure; HAProxy's `insecure-password`).
 *
 * `cryptHash(password, setting)` returns exactly what glibc's / libxcrypt's crypt() returns for that
 * setting (checked in test/l7/crypt.test.ts against the specification's vectors and `openssl passwd`);
 * `verifyPassword` compares in constant time. A hash in any other scheme (DES, bcrypt, yescrypt …) is
 * reported by `hashScheme` as unsupported and never matches.
 *
 * Cost: 5000 rounds (the default) is a few milliseconds of CPU: the L7 plane caches successful
 * verifications (see auth.ts) and never runs this per request for a known (user, password).
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

export type HashScheme = 'sha512' | 'sha256' | 'md5' | 'plain' | 'unsupported';

/** Which scheme a stored hash is in. */
export function hashScheme(hash: string): HashScheme {
  if (hash.startsWith('$6$')) return 'sha512';
  if (hash.startsWith('$5$')) return 'sha256';
  if (hash.startsWith('$1$')) return 'md5';
  if (hash.startsWith('{PLAIN}')) return 'plain';
  return 'unsupported';
}

/** Append `n` base-64 characters of the 24-bit value (b2 b1 b0), least significant 6 bits first. */
function b64(out: string[], b2: number, b1: number, b0: number, n: number): void {
  let w = (b2 << 16) | (b1 << 8) | b0;
  for (let i = 0; i < n; i++) {
    out.push(ITOA64[w & 0x3f] as string);
    w >>>= 6;
  }
}

// Byte triples of the final digest in the order the specification encodes them.
const SHA512_ORDER: ReadonlyArray<readonly [number, number, number]> = [
  [0, 21, 42],
  [22, 43, 1],
  [44, 2, 23],
  [3, 24, 45],
  [25, 46, 4],
  [47, 5, 26],
  [6, 27, 48],
  [28, 49, 7],
  [50, 8, 29],
  [9, 30, 51],
  [31, 52, 10],
  [53, 11, 32],
  [12, 33, 54],
  [34, 55, 13],
  [56, 14, 35],
  [15, 36, 57],
  [37, 58, 16],
  [59, 17, 38],
  [18, 39, 60],
  [40, 61, 19],
  [62, 20, 41],
];
const SHA256_ORDER: ReadonlyArray<readonly [number, number, number]> = [
  [0, 10, 20],
  [21, 1, 11],
  [12, 22, 2],
  [3, 13, 23],
  [24, 4, 14],
  [15, 25, 5],
  [6, 16, 26],
  [27, 7, 17],
  [18, 28, 8],
  [9, 19, 29],
];

const ROUNDS_DEFAULT = 5000;
const ROUNDS_MIN = 1000;
const ROUNDS_MAX = 999_999_999;

/** `bytes` repeated to exactly `len` bytes. */
function repeatTo(bytes: Buffer, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  for (let off = 0; off < len; off += bytes.length) bytes.copy(out, off, 0, Math.min(bytes.length, len - off));
  return out;
}

/**
 * SHA-256-crypt / SHA-512-crypt of `password` with `setting` (`$5$[rounds=N$]salt[$…]`, the rest ignored).
 * Returns undefined when the setting is malformed.
 */
function shaCrypt(algo: 'sha256' | 'sha512', password: Buffer, setting: string): string | undefined {
  const prefix = algo === 'sha512' ? '$6$' : '$5$';
  let rest = setting.slice(3);
  let rounds = ROUNDS_DEFAULT;
  let customRounds = false;
  if (rest.startsWith('rounds=')) {
    const end = rest.indexOf('$');
    const digits = rest.slice(7, end < 0 ? undefined : end);
    if (end < 0 || !/^[0-9]{1,10}$/.test(digits)) return undefined;
    rounds = Math.min(ROUNDS_MAX, Math.max(ROUNDS_MIN, Number(digits)));
    customRounds = true;
    rest = rest.slice(end + 1);
  }
  const dollar = rest.indexOf('$');
  const saltStr = (dollar < 0 ? rest : rest.slice(0, dollar)).slice(0, 16);
  const salt = Buffer.from(saltStr, 'latin1');
  const hashLen = algo === 'sha512' ? 64 : 32;
  const h = () => createHash(algo);

  // B = H(P S P)
  const b = h().update(password).update(salt).update(password).digest();
  // A = H(P S, then B for each byte of P, then per bit of len(P): B or P)
  const actx = h().update(password).update(salt);
  let n = password.length;
  for (; n > hashLen; n -= hashLen) actx.update(b);
  actx.update(b.subarray(0, n));
  for (let i = password.length; i > 0; i >>= 1) actx.update((i & 1) !== 0 ? b : password);
  let c = actx.digest();
  // P sequence: H(P repeated len(P) times), repeated to len(P) bytes
  const dpCtx = h();
  for (let i = 0; i < password.length; i++) dpCtx.update(password);
  const p = repeatTo(dpCtx.digest(), password.length);
  // S sequence: H(S repeated 16 + A[0] times), repeated to len(S) bytes
  const dsCtx = h();
  for (let i = 0; i < 16 + (c[0] as number); i++) dsCtx.update(salt);
  const s = repeatTo(dsCtx.digest(), salt.length);
  for (let i = 0; i < rounds; i++) {
    const ctx = h();
    ctx.update((i & 1) !== 0 ? p : c);
    if (i % 3 !== 0) ctx.update(s);
    if (i % 7 !== 0) ctx.update(p);
    ctx.update((i & 1) !== 0 ? c : p);
    c = ctx.digest();
  }
  const out: string[] = [];
  for (const [x, y, z] of algo === 'sha512' ? SHA512_ORDER : SHA256_ORDER) b64(out, c[x] as number, c[y] as number, c[z] as number, 4);
  if (algo === 'sha512') b64(out, 0, 0, c[63] as number, 2);
  else b64(out, 0, c[31] as number, c[30] as number, 3);
  return `${prefix}${customRounds ? `rounds=${rounds}$` : ''}${saltStr}$${out.join('')}`;
}

/** MD5-crypt (`$1$salt[$…]`, salt at most 8 characters). */
function md5Crypt(password: Buffer, setting: string): string {
  const rest = setting.slice(3);
  const dollar = rest.indexOf('$');
  const saltStr = (dollar < 0 ? rest : rest.slice(0, dollar)).slice(0, 8);
  const salt = Buffer.from(saltStr, 'latin1');
  const h = () => createHash('md5');
  let fin = h().update(password).update(salt).update(password).digest();
  const ctx = h().update(password).update('$1$').update(salt);
  for (let pl = password.length; pl > 0; pl -= 16) ctx.update(fin.subarray(0, Math.min(16, pl)));
  const zero = Buffer.alloc(1);
  const first = password.subarray(0, 1);
  for (let i = password.length; i > 0; i >>= 1) ctx.update((i & 1) !== 0 ? zero : first);
  fin = ctx.digest();
  for (let i = 0; i < 1000; i++) {
    const r = h();
    r.update((i & 1) !== 0 ? password : fin);
    if (i % 3 !== 0) r.update(salt);
    if (i % 7 !== 0) r.update(password);
    r.update((i & 1) !== 0 ? fin : password);
    fin = r.digest();
  }
  const out: string[] = [];
  const f = (i: number) => fin[i] as number;
  b64(out, f(0), f(6), f(12), 4);
  b64(out, f(1), f(7), f(13), 4);
  b64(out, f(2), f(8), f(14), 4);
  b64(out, f(3), f(9), f(15), 4);
  b64(out, f(4), f(10), f(5), 4);
  b64(out, 0, 0, f(11), 2);
  return `$1$${saltStr}$${out.join('')}`;
}

/**
 * crypt(password, setting) for the supported schemes (the setting may be a whole stored hash: only its
 * prefix, rounds and salt are used). Undefined for an unsupported or malformed setting.
 */
export function cryptHash(password: string | Buffer, setting: string): string | undefined {
  const pw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  switch (hashScheme(setting)) {
    case 'sha512':
      return shaCrypt('sha512', pw, setting);
    case 'sha256':
      return shaCrypt('sha256', pw, setting);
    case 'md5':
      return md5Crypt(pw, setting);
    default:
      return undefined;
  }
}

/** Constant-time equality of two strings' bytes (a length difference is not hidden: lengths are public). */
export function safeEqual(a: string | Buffer, b: string | Buffer): boolean {
  const x = typeof a === 'string' ? Buffer.from(a, 'utf8') : a;
  const y = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  if (x.length !== y.length) {
    // Still compare something of the same size, so a mismatch costs what a match does.
    timingSafeEqual(y, y);
    return false;
  }
  return timingSafeEqual(x, y);
}

/** Does `password` match the stored `hash` (any supported scheme)? Unsupported schemes never match. */
export function verifyPassword(password: string | Buffer, hash: string): boolean {
  const pw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  if (hash.startsWith('{PLAIN}')) return safeEqual(pw, Buffer.from(hash.slice(7), 'utf8'));
  const computed = cryptHash(pw, hash);
  if (computed === undefined) return false;
  return safeEqual(computed, hash);
}
