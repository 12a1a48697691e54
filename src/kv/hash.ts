// Chained hashing of full KV blocks for prefix caching.
//
// The key of block i of a sequence is hash(key of block i-1, token ids of block i), so equal keys mean equal whole
// prefixes up to hash collisions. The key only finds a candidate: the block pool verifies every match exactly (the
// block's token ids and its parent's registration, see block_pool.ts). Two murmur3-style 32-bit lanes with different
// seeds and multipliers are combined into a 53-bit integer, which is exact as a JS number and a fast Map key.

/** Parent key of a sequence's first block. */
export const ROOT_KEY = 0;

/** Marks a block that is not registered in the prefix cache. Keys are always >= 0. */
export const NO_KEY = -1;

const TWO_POW_32 = 4294967296;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Lane 1 absorbs one 32-bit word (murmur3 x86_32 body). */
function mix1(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = rotl(k, 15);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = rotl(h, 13);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** Lane 2 absorbs one 32-bit word with different constants, so the lanes are independent. */
function mix2(h: number, k: number): number {
  k = Math.imul(k, 0x239b961b);
  k = rotl(k, 17);
  k = Math.imul(k, 0xab0e9789);
  h ^= k;
  h = rotl(h, 15);
  return (Math.imul(h, 5) + 0x38b34ae5) | 0;
}

/**
 * Key of the block holding tokens[start, end), chained on `parent` (ROOT_KEY for a sequence's first block).
 * Deterministic across runs and processes; the result is an integer in [0, 2^53).
 */
export function hashBlock(parent: number, tokens: ArrayLike<number>, start: number, end: number): number {
  const parentLo = parent >>> 0;
  const parentHi = Math.floor(parent / TWO_POW_32) >>> 0;
  let h1 = mix1(mix1(0x9747b28c, parentLo), parentHi);
  let h2 = mix2(mix2(0x5bd1e995, parentHi), parentLo);
  for (let i = start; i < end; i++) {
    const t = tokens[i]! | 0;
    h1 = mix1(h1, t);
    h2 = mix2(h2, t);
  }
  const len = end - start;
  h1 ^= len;
  h2 ^= len;
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  h1 = fmix32(h1);
  h2 = fmix32(h2);
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  return (h1 & 0x1fffff) * TWO_POW_32 + (h2 >>> 0);
}
