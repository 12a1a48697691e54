// Paged KV block manager: a fixed pool of blocks, per-block refcounts, per-sequence block tables, prefix caching of
// full blocks (chained hashes, guarded by token comparison) with LRU eviction, fork and copy-on-write.
//
// It deals in block ids and token counts only; the backend owns the memory. Every block is in exactly one state:
//   free       refcount 0, not in the prefix cache, in the free list
//   evictable  refcount 0, in the prefix cache (its KV is still valid), in the LRU set; reused on a hit, evicted
//              (oldest first) when a fresh block is needed and the free list is empty
//   in use     refcount = number of block tables holding it (possibly also in the prefix cache)

import { hashBlock, NO_KEY, ROOT_KEY } from "./hash.ts";
import { checkKvIntegrity, type SeqBlocks } from "./integrity.ts";

export interface KvManagerOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCache: boolean;
}

export interface PromptAllocation {
  /** The sequence's block table (live: later appendSlot calls grow it). */
  readonly blockTable: readonly number[];
  /** Leading tokens whose KV is already in cached blocks (a multiple of blockSize, always < the token count). */
  readonly numCachedTokens: number;
}

/** Copy-on-write instruction: the runner copies block src into block dst (Backend.copyBlocks) before the step. */
export interface CopyOp {
  readonly src: number;
  readonly dst: number;
}

export interface AppendResult {
  readonly copy: CopyOp | null;
}

export interface KvStats {
  /** Prompt tokens looked up in the prefix cache (allocatePrompt calls that succeeded). */
  readonly prefixQueryTokens: number;
  /** Of those, tokens found in cached blocks. */
  readonly prefixHitTokens: number;
  /** Cached blocks evicted to make room. */
  readonly evictions: number;
}

const NO_COPY: AppendResult = Object.freeze({ copy: null });

export class KvManager {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCache: boolean;

  readonly #ref: Int32Array;
  /** Prefix-cache key of each block, NO_KEY when not cached; #parent and #tokens guard against collisions. */
  readonly #key: Float64Array;
  readonly #parent: Float64Array;
  readonly #tokens: (Int32Array | null)[];
  /** Stack of free block ids. */
  readonly #free: number[] = [];
  readonly #inFree: Uint8Array;
  /** Evictable cached blocks, least recently released first (Set keeps insertion order). */
  readonly #lru = new Set<number>();
  readonly #cache = new Map<number, number>();
  readonly #seqs = new Map<number, SeqBlocks>();
  #queryTokens = 0;
  #hitTokens = 0;
  #evictions = 0;

  constructor(options: KvManagerOptions) {
    const { numBlocks, blockSize } = options;
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new RangeError(`KvManager: numBlocks must be >= 1`);
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`KvManager: blockSize must be >= 1`);
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.enablePrefixCache = options.enablePrefixCache;
    this.#ref = new Int32Array(numBlocks);
    this.#key = new Float64Array(numBlocks).fill(NO_KEY);
    this.#parent = new Float64Array(numBlocks).fill(NO_KEY);
    this.#tokens = new Array<Int32Array | null>(numBlocks).fill(null);
    this.#inFree = new Uint8Array(numBlocks).fill(1);
    for (let b = numBlocks - 1; b >= 0; b--) this.#free.push(b);
  }

  /** Blocks that can be handed out now: free plus evictable cached blocks. */
  numFreeBlocks(): number {
    return this.#free.length + this.#lru.size;
  }

  /** Fraction of the pool held by sequences, in [0, 1]. */
  usage(): number {
    return 1 - this.numFreeBlocks() / this.numBlocks;
  }

  /** Blocks currently registered in the prefix cache (in use or evictable). */
  numCachedBlocks(): number {
    return this.#cache.size;
  }

  get stats(): KvStats {
    return { prefixQueryTokens: this.#queryTokens, prefixHitTokens: this.#hitTokens, evictions: this.#evictions };
  }

  has(seqId: number): boolean {
    return this.#seqs.has(seqId);
  }

  /** The live block table of a sequence. */
  blockTable(seqId: number): readonly number[] {
    return this.#seq(seqId, "blockTable").table;
  }

  /** Tokens with a reserved slot in the sequence's table. */
  numTokens(seqId: number): number {
    return this.#seq(seqId, "numTokens").numTokens;
  }

  refCount(block: number): number {
    const r = this.#ref[block];
    if (r === undefined) throw new RangeError(`KvManager.refCount: no block ${block}`);
    return r;
  }

  /** Blocks needed to hold `numTokens` tokens. */
  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  /**
   * Gives a new sequence a table for all of `tokenIds`, reusing cached blocks for the longest cached prefix of full
   * blocks. At least the last token is never taken from the cache (the model must compute it to produce logits), so
   * numCachedTokens < tokenIds.length and no cached block is ever written. Returns null, changing nothing, when the
   * pool cannot hold the whole table.
   */
  allocatePrompt(seqId: number, tokenIds: ArrayLike<number>): PromptAllocation | null {
    if (this.#seqs.has(seqId)) throw new Error(`KvManager.allocatePrompt: sequence ${seqId} already holds blocks`);
    const n = tokenIds.length;
    if (n === 0) throw new RangeError(`KvManager.allocatePrompt: sequence ${seqId} has no tokens`);
    const bs = this.blockSize;
    const hits: number[] = [];
    const keys: number[] = [];
    if (this.enablePrefixCache) {
      const maxHits = Math.floor((n - 1) / bs);
      let parent = ROOT_KEY;
      for (let i = 0; i < maxHits; i++) {
        const key = hashBlock(parent, tokenIds, i * bs, (i + 1) * bs);
        const b = this.#cache.get(key);
        if (b === undefined || !this.#sameContent(b, parent, tokenIds, i * bs)) break;
        hits.push(b);
        keys.push(key);
        parent = key;
      }
    }
    let hitsEvictable = 0;
    for (const b of hits) if (this.#ref[b] === 0) hitsEvictable++;
    const fresh = this.blocksFor(n) - hits.length;
    if (fresh > this.numFreeBlocks() - hitsEvictable) return null;

    for (const b of hits) {
      if (this.#ref[b] === 0) this.#lru.delete(b);
      this.#ref[b]!++;
    }
    const table = hits;
    for (let i = 0; i < fresh; i++) table.push(this.#takeFresh());
    this.#seqs.set(seqId, { table, numTokens: n, keys, chainBroken: false });
    const cached = keys.length * bs;
    this.#queryTokens += n;
    this.#hitTokens += cached;
    return { blockTable: table, numCachedTokens: cached };
  }

  /** Whether appendSlot(seqId, totalTokens) would succeed now. */
  canAppend(seqId: number, totalTokens: number): boolean {
    const s = this.#seq(seqId, "canAppend");
    return this.#blocksToAppend(s, totalTokens) <= this.numFreeBlocks();
  }

  /**
   * Grows the sequence's reserved slots to `totalTokens` (no-op when it already has them), for a decode token or the
   * next prefill chunk. If the block receiving the next token is partially filled and shared (after fork), it is
   * replaced by a fresh private block and the returned copy must run before the step writes into it. Returns null,
   * changing nothing, when the pool is short of blocks.
   */
  appendSlot(seqId: number, totalTokens: number): AppendResult | null {
    const s = this.#seq(seqId, "appendSlot");
    if (!Number.isInteger(totalTokens)) throw new RangeError(`KvManager.appendSlot: bad token count ${totalTokens}`);
    if (totalTokens <= s.numTokens) return NO_COPY;
    if (this.#blocksToAppend(s, totalTokens) > this.numFreeBlocks()) return null;
    let copy: CopyOp | null = null;
    if (this.#needsCopy(s)) {
      const i = Math.floor(s.numTokens / this.blockSize);
      const src = s.table[i]!;
      const dst = this.#takeFresh();
      this.#ref[src]!--; // still >= 1: it was shared
      s.table[i] = dst;
      copy = { src, dst };
    }
    const want = this.blocksFor(totalTokens);
    while (s.table.length < want) s.table.push(this.#takeFresh());
    s.numTokens = totalTokens;
    return copy === null ? NO_COPY : { copy };
  }

  /**
   * Registers the sequence's full blocks among its first `numComputedTokens` tokens in the prefix cache, once their
   * KV has actually been written. `tokenIds` are the sequence's tokens (at least numComputedTokens of them).
   */
  markComputed(seqId: number, tokenIds: ArrayLike<number>, numComputedTokens: number): void {
    const s = this.#seq(seqId, "markComputed");
    if (numComputedTokens > s.numTokens || numComputedTokens > tokenIds.length || numComputedTokens < 0) {
      throw new RangeError(
        `KvManager.markComputed: sequence ${seqId} reports ${numComputedTokens} computed tokens ` +
          `(${s.numTokens} reserved, ${tokenIds.length} given)`,
      );
    }
    if (!this.enablePrefixCache || s.chainBroken) return;
    const bs = this.blockSize;
    const full = Math.floor(numComputedTokens / bs);
    for (let i = s.keys.length; i < full; i++) {
      const parent = i === 0 ? ROOT_KEY : s.keys[i - 1]!;
      const key = hashBlock(parent, tokenIds, i * bs, (i + 1) * bs);
      const b = s.table[i]!;
      const existing = this.#cache.get(key);
      if (existing === undefined) {
        if (this.#key[b] !== NO_KEY) {
          throw new Error(`KvManager.markComputed: block ${b} of sequence ${seqId} is cached with other content`);
        }
        this.#key[b] = key;
        this.#parent[b] = parent;
        this.#tokens[b] = Int32Array.from({ length: bs }, (_, j) => tokenIds[i * bs + j]!);
        this.#cache.set(key, b);
      } else if (existing !== b && !this.#sameContent(existing, parent, tokenIds, i * bs)) {
        // True hash collision: stop registering this chain so no later block can be matched under a wrong prefix.
        s.chainBroken = true;
        return;
      } // else: this block or an identical one computed concurrently is already cached; ours stays unkeyed.
      s.keys.push(key);
    }
  }

  /** The child shares all of the parent's blocks (refcounts +1); the first append into a shared block copies it. */
  fork(parentId: number, childId: number): readonly number[] {
    const p = this.#seq(parentId, "fork");
    if (this.#seqs.has(childId)) throw new Error(`KvManager.fork: sequence ${childId} already holds blocks`);
    for (const b of p.table) this.#ref[b]!++;
    const child: SeqBlocks = {
      table: p.table.slice(),
      numTokens: p.numTokens,
      keys: p.keys.slice(),
      chainBroken: p.chainBroken,
    };
    this.#seqs.set(childId, child);
    return child.table;
  }

  /** Releases all blocks of a sequence (tail first, so its tail blocks are the first cached ones evicted). */
  free(seqId: number): void {
    const s = this.#seq(seqId, "free");
    for (let i = s.table.length - 1; i >= 0; i--) this.#release(s.table[i]!);
    this.#seqs.delete(seqId);
  }

  /** Drops every evictable cached block back to the free list; returns how many. Blocks in use keep their keys. */
  evictAll(): number {
    const n = this.#lru.size;
    for (const b of [...this.#lru]) {
      this.#lru.delete(b);
      this.#uncache(b);
      this.#pushFree(b);
    }
    return n;
  }

  /** Throws with a precise message if any invariant of the pool is broken. O(blocks + table entries). */
  checkIntegrity(): void {
    checkKvIntegrity({
      numBlocks: this.numBlocks,
      blockSize: this.blockSize,
      enablePrefixCache: this.enablePrefixCache,
      ref: this.#ref,
      key: this.#key,
      parent: this.#parent,
      blockTokens: this.#tokens,
      free: this.#free,
      inFree: this.#inFree,
      lru: this.#lru,
      cache: this.#cache,
      seqs: this.#seqs,
    });
  }

  #seq(seqId: number, op: string): SeqBlocks {
    const s = this.#seqs.get(seqId);
    if (s === undefined) throw new Error(`KvManager.${op}: sequence ${seqId} holds no blocks`);
    return s;
  }

  #needsCopy(s: SeqBlocks): boolean {
    if (s.numTokens % this.blockSize === 0) return false;
    return this.#ref[s.table[Math.floor(s.numTokens / this.blockSize)]!]! > 1;
  }

  #blocksToAppend(s: SeqBlocks, totalTokens: number): number {
    if (totalTokens <= s.numTokens) return 0;
    return this.blocksFor(totalTokens) - s.table.length + (this.#needsCopy(s) ? 1 : 0);
  }

  #sameContent(b: number, parent: number, tokenIds: ArrayLike<number>, start: number): boolean {
    const stored = this.#tokens[b];
    if (stored === null || stored === undefined || this.#parent[b] !== parent) return false;
    for (let j = 0; j < stored.length; j++) if (stored[j] !== tokenIds[start + j]) return false;
    return true;
  }

  /** A block with refcount 1: from the free list, else the least recently released cached block. */
  #takeFresh(): number {
    let b = this.#free.pop();
    if (b !== undefined) {
      this.#inFree[b] = 0;
    } else {
      const oldest = this.#lru.values().next();
      if (oldest.done) throw new Error("KvManager: out of blocks (caller skipped the capacity check)");
      b = oldest.value;
      this.#lru.delete(b);
      this.#uncache(b);
      this.#evictions++;
    }
    this.#ref[b] = 1;
    return b;
  }

  #release(b: number): void {
    const r = --this.#ref[b]!;
    if (r > 0) return;
    if (r < 0) throw new Error(`KvManager: block ${b} released more often than held`);
    if (this.#key[b] !== NO_KEY) this.#lru.add(b);
    else this.#pushFree(b);
  }

  #uncache(b: number): void {
    this.#cache.delete(this.#key[b]!);
    this.#key[b] = NO_KEY;
    this.#parent[b] = NO_KEY;
    this.#tokens[b] = null;
  }

  #pushFree(b: number): void {
    this.#free.push(b);
    this.#inFree[b] = 1;
  }
}
