// Paged KV block manager: per-sequence block tables over a BlockPool, prefix caching of full blocks (chained hashes,
// every match verified exactly by token ids and parent registration) with LRU eviction of unreferenced cached
// blocks, fork and copy-on-write.
//
// It deals in block ids and token counts only; the backend owns the memory. A block's refcount is the number of
// block tables holding it; see block_pool.ts for the free / evictable / in-use states.

import { BlockPool, NO_REG } from "./block_pool.ts";
import { hashBlock, ROOT_KEY } from "./hash.ts";
import { checkKvIntegrity, type SeqBlocks } from "./integrity.ts";

export interface KvManagerOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCache: boolean;
  /** Block hash (default hashBlock). Only speed depends on its quality: matches are verified exactly. */
  readonly hash?: BlockHashFn;
}

/** Key of the block holding tokens[start, end), chained on the previous block's key (ROOT_KEY for the first). */
export type BlockHashFn = (parentKey: number, tokens: ArrayLike<number>, start: number, end: number) => number;

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

  readonly #pool: BlockPool;
  readonly #hash: BlockHashFn;
  readonly #seqs = new Map<number, SeqBlocks>();
  #queryTokens = 0;
  #hitTokens = 0;

  constructor(options: KvManagerOptions) {
    this.#pool = new BlockPool(options.numBlocks, options.blockSize);
    this.numBlocks = options.numBlocks;
    this.blockSize = options.blockSize;
    this.enablePrefixCache = options.enablePrefixCache;
    this.#hash = options.hash ?? hashBlock;
  }

  /** Blocks that can be handed out now: free plus evictable cached blocks. */
  numFreeBlocks(): number {
    return this.#pool.numAvailable();
  }

  /** Fraction of the pool held by sequences, in [0, 1]. */
  usage(): number {
    return 1 - this.numFreeBlocks() / this.numBlocks;
  }

  /** Blocks currently registered in the prefix cache (in use or evictable). */
  numCachedBlocks(): number {
    return this.#pool.cache.size;
  }

  get stats(): KvStats {
    return { prefixQueryTokens: this.#queryTokens, prefixHitTokens: this.#hitTokens, evictions: this.#pool.evictions };
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
    const r = this.#pool.ref[block];
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
    const regs: number[] = [];
    if (this.enablePrefixCache) {
      const maxHits = Math.floor((n - 1) / bs);
      let parentKey = ROOT_KEY;
      let parentReg = NO_REG;
      for (let i = 0; i < maxHits; i++) {
        const key = this.#hash(parentKey, tokenIds, i * bs, (i + 1) * bs);
        const b = this.#pool.lookup(key, parentReg, tokenIds, i * bs);
        if (b < 0) break;
        hits.push(b);
        keys.push(key);
        regs.push(this.#pool.reg[b]!);
        parentKey = key;
        parentReg = this.#pool.reg[b]!;
      }
    }
    let hitsEvictable = 0;
    for (const b of hits) if (this.#pool.ref[b] === 0) hitsEvictable++;
    const fresh = this.blocksFor(n) - hits.length;
    if (fresh > this.numFreeBlocks() - hitsEvictable) return null;

    for (const b of hits) this.#pool.acquire(b);
    const table = hits;
    for (let i = 0; i < fresh; i++) table.push(this.#pool.takeFresh());
    this.#seqs.set(seqId, { table, numTokens: n, keys, regs, chainBroken: false });
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
      const dst = this.#pool.takeFresh();
      this.#pool.release(src); // still held by the other tables: it was shared
      s.table[i] = dst;
      copy = { src, dst };
    }
    const want = this.blocksFor(totalTokens);
    while (s.table.length < want) s.table.push(this.#pool.takeFresh());
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
    const pool = this.#pool;
    for (let i = s.keys.length; i < full; i++) {
      const parentKey = i === 0 ? ROOT_KEY : s.keys[i - 1]!;
      const parentReg = i === 0 ? NO_REG : s.regs[i - 1]!;
      const start = i * bs;
      const key = this.#hash(parentKey, tokenIds, start, start + bs);
      const b = s.table[i]!;
      const existing = pool.cache.get(key);
      let reg: number;
      if (existing === b) {
        reg = pool.reg[b]!; // registered by a fork sibling
      } else if (existing !== undefined && pool.sameContent(existing, parentReg, tokenIds, start)) {
        reg = pool.reg[existing]!; // an identical block computed concurrently is cached; ours stays unkeyed
      } else {
        if (existing !== undefined) {
          // The key names other content (hash collision) or an entry chained on an evicted parent.
          if (pool.ref[existing] !== 0) {
            s.chainBroken = true; // cannot displace an entry in use: stop caching this sequence's chain
            return;
          }
          pool.evict(existing);
        }
        reg = pool.register(b, key, parentReg, tokenIds, start);
      }
      s.keys.push(key);
      s.regs.push(reg);
    }
  }

  /**
   * The child shares all of the parent's blocks (refcounts +1); the first appendSlot past the shared partial block
   * copies it. Fork only a parent whose reserved slots are all computed (numTokens), since writes into slots that
   * were reserved before the fork would land in a shared block.
   */
  fork(parentId: number, childId: number): readonly number[] {
    const p = this.#seq(parentId, "fork");
    if (this.#seqs.has(childId)) throw new Error(`KvManager.fork: sequence ${childId} already holds blocks`);
    for (const b of p.table) this.#pool.acquire(b);
    const child: SeqBlocks = {
      table: p.table.slice(),
      numTokens: p.numTokens,
      keys: p.keys.slice(),
      regs: p.regs.slice(),
      chainBroken: p.chainBroken,
    };
    this.#seqs.set(childId, child);
    return child.table;
  }

  /** Releases all blocks of a sequence (tail first, so its tail blocks are the first cached ones evicted). */
  free(seqId: number): void {
    const s = this.#seq(seqId, "free");
    for (let i = s.table.length - 1; i >= 0; i--) this.#pool.release(s.table[i]!);
    this.#seqs.delete(seqId);
  }

  /** Drops every evictable cached block back to the free list; returns how many. Blocks in use keep their keys. */
  evictAll(): number {
    return this.#pool.evictAll();
  }

  /** Throws with a precise message if any invariant of the pool is broken. O(blocks + table entries). */
  checkIntegrity(): void {
    checkKvIntegrity(this.#pool, this.enablePrefixCache, this.#seqs);
  }

  #seq(seqId: number, op: string): SeqBlocks {
    const s = this.#seqs.get(seqId);
    if (s === undefined) throw new Error(`KvManager.${op}: sequence ${seqId} holds no blocks`);
    return s;
  }

  #needsCopy(s: SeqBlocks): boolean {
    if (s.numTokens % this.blockSize === 0) return false;
    return this.#pool.ref[s.table[Math.floor(s.numTokens / this.blockSize)]!]! > 1;
  }

  #blocksToAppend(s: SeqBlocks, totalTokens: number): number {
    if (totalTokens <= s.numTokens) return 0;
    return this.blocksFor(totalTokens) - s.table.length + (this.#needsCopy(s) ? 1 : 0);
  }
}
