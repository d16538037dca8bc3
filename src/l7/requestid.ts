/**
 * X-Request-Id values for requests that come without one: random (version 4) UUIDs, as Envoy makes them.
 *
 * Not `crypto.randomUUID()`: it draws from the same kind of cached entropy pool, but builds its string
 * from 17 concatenated pieces (a cons-string tree V8 flattens later): ~0.5 KB of garbage per request,
 * 9% of what the engine allocated. Here the hex digits go into a reused 36-byte buffer and one flat
 * string is made of it.
 */
import { randomFillSync } from 'node:crypto';

/** Random bytes for 256 ids, refilled when used up (one getrandom call per 256 requests). */
const POOL = Buffer.allocUnsafe(16 * 256);
let poolOffset = POOL.length;
const OUT = Buffer.allocUnsafe(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Where each of the 16 bytes goes in the text (dashes at 8, 13, 18, 23). */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

export function newRequestId(): string {
  if (poolOffset === POOL.length) {
    randomFillSync(POOL);
    poolOffset = 0;
  }
  const o = poolOffset;
  poolOffset += 16;
  POOL[o + 6] = ((POOL[o + 6] as number) & 0x0f) | 0x40; // version 4
  POOL[o + 8] = ((POOL[o + 8] as number) & 0x3f) | 0x80; // variant 10
  for (let i = 0; i < 16; i++) {
    const b = POOL[o + i] as number;
    const p = AT[i] as number;
    OUT[p] = HEX[b >> 4] as number;
    OUT[p + 1] = HEX[b & 15] as number;
  }
  OUT[8] = 0x2d;
  OUT[13] = 0x2d;
  OUT[18] = 0x2d;
  OUT[23] = 0x2d;
  return (OUT as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(0, 36);
}
