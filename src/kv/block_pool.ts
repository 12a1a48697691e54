// The physical side of the KV manager: a fixed pool of block ids with refcounts, a free list, and the prefix cache
// whose unreferenced blocks sit in an LRU set.
//
// Prefix-cache entries are exact, whatever the hash: the key (a chained hash) only finds a candidate block, which
// matches only if its stored token ids equal the block's tokens AND its parent registration equals the registration
// matched for the previous block. Registration ids are never reused, so an entry whose parent was evicted (or whose
// parent key now names other content after a collision) can never be matched again.
//
// Every block is in exactly one state:
//   free       refcount 0, not cached, in the free list
//   evictable  refcount 0, cached (its KV is still valid), in the LRU set; reused on a hit, evicted (least recently
//              released first) when a fresh block is needed and the free list is empty
//   in use     refcount >= 1 (possibly also cached)

import { NO_KEY } from "./hash.ts";

/** Registration id meaning "none"; also the parent registration of a sequence's first block. */
export const NO_REG = 0;

export class BlockPool {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly ref: Int32Array;
  /** Prefix-cache key of each block, NO_KEY when not cached. */
  readonly key: Float64Array;
  /** Registration id of each cached block (NO_REG when not cached) and of the entry it was chained on. */
  readonly reg: Float64Array;
  readonly parentReg: Float64Array;
  readonly tokens: (Int32Array | null)[];
  /** Stack of free block ids, and a membership flag per block. */
  readonly free: number[] = [];
  readonly inFree: Uint8Array;
  /** Evictable cached blocks, least recently released first (a Set keeps insertion order). */
  readonly lru = new Set<number>();
  readonly cache = new Map<number, number>();
  evictions = 0;
  #nextReg = 1;

  constructor(numBlocks: number, blockSize: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new RangeError(`KvManager: numBlocks must be >= 1`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`KvManager: blockSize must be >= 1`);
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.ref = new Int32Array(numBlocks);
    this.key = new Float64Array(numBlocks).fill(NO_KEY);
    this.reg = new Float64Array(numBlocks).fill(NO_REG);
    this.parentReg = new Float64Array(numBlocks).fill(NO_REG);
    this.tokens = new Array<Int32Array | null>(numBlocks).fill(null);
    this.inFree = new Uint8Array(numBlocks).fill(1);
    for (let b = numBlocks - 1; b >= 0; b--) this.free.push(b);
  }

  /** Free plus evictable blocks. */
  numAvailable(): number {
    return this.free.length + this.lru.size;
  }

  /** The cached block for `key` if it holds tokenIds[start, start + blockSize) chained on `parentReg`, else -1. */
  lookup(key: number, parentReg: number, tokenIds: ArrayLike<number>, start: number): number {
    const b = this.cache.get(key);
    if (b === undefined || !this.sameContent(b, parentReg, tokenIds, start)) return -1;
    return b;
  }

  sameContent(b: number, parentReg: number, tokenIds: ArrayLike<number>, start: number): boolean {
    const stored = this.tokens[b];
    if (stored === null || stored === undefined || this.parentReg[b] !== parentReg) return false;
    for (let j = 0; j < stored.length; j++) if (stored[j] !== tokenIds[start + j]) return false;
    return true;
  }

  /** Takes one more reference on a block found in the cache (removing it from the LRU set if it was evictable). */
  acquire(b: number): void {
    if (this.ref[b] === 0) this.lru.delete(b);
    this.ref[b]!++;
  }

  /** A block with refcount 1: from the free list, else the least recently released cached block. */
  takeFresh(): number {
    let b = this.free.pop();
    if (b !== undefined) {
      this.inFree[b] = 0;
    } else {
      const oldest = this.lru.values().next();
      if (oldest.done) throw new Error("KvManager: out of blocks (caller skipped the capacity check)");
      b = oldest.value;
      this.lru.delete(b);
      this.#uncache(b);
      this.evictions++;
    }
    this.ref[b] = 1;
    return b;
  }

  /** Drops one reference; at 0 a cached block becomes evictable and any other block free. */
  release(b: number): void {
    const r = --this.ref[b]!;
    if (r > 0) return;
    if (r < 0) throw new Error(`KvManager: block ${b} released more often than held`);
    if (this.key[b] !== NO_KEY) this.lru.add(b);
    else this.#pushFree(b);
  }

  /**
   * Registers block b (whose KV is computed) in the cache under `key`, chained on `parentReg`; returns its new
   * registration id. The key must be unused and b uncached.
   */
  register(b: number, key: number, parentReg: number, tokenIds: ArrayLike<number>, start: number): number {
    if (this.key[b] !== NO_KEY) throw new Error(`KvManager: block ${b} is already cached with other content`);
    if (this.cache.has(key)) throw new Error(`KvManager: key ${key} is already cached`);
    if (!Number.isSafeInteger(key) || key < 0) {
      throw new RangeError(`KvManager: block hash gave ${key}, want an integer >= 0`);
    }
    const reg = this.#nextReg++;
    this.key[b] = key;
    this.reg[b] = reg;
    this.parentReg[b] = parentReg;
    this.tokens[b] = Int32Array.from({ length: this.blockSize }, (_, j) => tokenIds[start + j]!);
    this.cache.set(key, b);
    return reg;
  }

  /** Evicts one evictable cached block to the free list (to make room for a fresher entry under its key). */
  evict(b: number): void {
    if (!this.lru.delete(b)) throw new Error(`KvManager: block ${b} is not evictable`);
    this.#uncache(b);
    this.#pushFree(b);
    this.evictions++;
  }

  /** Moves every evictable block to the free list; returns how many. */
  evictAll(): number {
    const n = this.lru.size;
    for (const b of [...this.lru]) {
      this.lru.delete(b);
      this.#uncache(b);
      this.#pushFree(b);
    }
    return n;
  }

  #uncache(b: number): void {
    this.cache.delete(this.key[b]!);
    this.key[b] = NO_KEY;
    this.reg[b] = NO_REG;
    this.parentReg[b] = NO_REG;
    this.tokens[b] = null;
  }

  #pushFree(b: number): void {
    this.free.push(b);
    this.inFree[b] = 1;
  }
}
