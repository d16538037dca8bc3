/**
 * FNV-1a (32 bits) over a string's UTF-16 code units, finished with murmur3's fmix32 avalanche: FNV's low
 * bits are weak for short, similar keys (ports, addresses), fmix32 spreads them. Shared by the L7
 * consistent-hash ring and the L4 Maglev lookup, which must not import each other.
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
