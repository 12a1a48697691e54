// Invariant checker of the KV block manager. Kept apart from the manager so the manager stays small; it reads the
// manager's state through a read-only view and throws a precise message at the first broken invariant.

import { NO_KEY } from "./hash.ts";

/** Per-sequence bookkeeping of the KV manager. */
export interface SeqBlocks {
  /** Physical block ids, in token order. The array is shared with the caller (read-only for it). */
  readonly table: number[];
  /** Tokens that have a reserved slot: table.length === ceil(numTokens / blockSize). */
  numTokens: number;
  /** Chain keys of the sequence's first keys.length full blocks, already registered (or found) in the cache. */
  readonly keys: number[];
  /** A hash collision was seen on this sequence's chain: no further blocks of it are registered. */
  chainBroken: boolean;
}

/** Read-only view of the manager's state. */
export interface KvStateView {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCache: boolean;
  readonly ref: Int32Array;
  readonly key: Float64Array;
  readonly parent: Float64Array;
  readonly blockTokens: readonly (Int32Array | null)[];
  readonly free: readonly number[];
  readonly inFree: Uint8Array;
  readonly lru: ReadonlySet<number>;
  readonly cache: ReadonlyMap<number, number>;
  readonly seqs: ReadonlyMap<number, SeqBlocks>;
}

function fail(message: string): never {
  throw new Error(`KvManager integrity: ${message}`);
}

/**
 * Every block is exactly one of: free (ref 0, unkeyed, once in the free list), cached-evictable (ref 0, keyed, in the
 * LRU set), or in use (ref == number of tables holding it, in neither list). The key map and the blocks agree, and
 * every table is sized for its token count.
 */
export function checkKvIntegrity(s: KvStateView): void {
  const { numBlocks, blockSize } = s;
  const holders = new Int32Array(numBlocks);
  for (const [seqId, seq] of s.seqs) {
    const want = Math.ceil(seq.numTokens / blockSize);
    if (seq.numTokens <= 0) fail(`sequence ${seqId} holds ${seq.numTokens} tokens`);
    if (seq.table.length !== want) {
      fail(`sequence ${seqId} has ${seq.table.length} blocks for ${seq.numTokens} tokens (want ${want})`);
    }
    if (seq.keys.length > Math.floor(seq.numTokens / blockSize)) {
      fail(`sequence ${seqId} has ${seq.keys.length} keyed blocks but only ${seq.numTokens} tokens`);
    }
    const seen = new Set<number>();
    for (const b of seq.table) {
      if (!Number.isInteger(b) || b < 0 || b >= numBlocks) fail(`sequence ${seqId} holds invalid block id ${b}`);
      if (seen.has(b)) fail(`sequence ${seqId} holds block ${b} twice`);
      seen.add(b);
      holders[b]!++;
    }
  }

  const inFreeList = new Uint8Array(numBlocks);
  for (const b of s.free) {
    if (!Number.isInteger(b) || b < 0 || b >= numBlocks) fail(`free list holds invalid block id ${b}`);
    if (inFreeList[b]) fail(`block ${b} is in the free list twice`);
    inFreeList[b] = 1;
  }
  for (const b of s.lru) {
    if (!Number.isInteger(b) || b < 0 || b >= numBlocks) fail(`evictable set holds invalid block id ${b}`);
  }

  let keyed = 0;
  for (let b = 0; b < numBlocks; b++) {
    const ref = s.ref[b]!;
    const key = s.key[b]!;
    const free = inFreeList[b] === 1;
    const evictable = s.lru.has(b);
    if ((s.inFree[b] === 1) !== free) fail(`block ${b}: free flag ${s.inFree[b]} disagrees with the free list`);
    if (ref !== holders[b]) fail(`block ${b} has refcount ${ref} but ${holders[b]} tables hold it`);
    if (key !== NO_KEY) {
      keyed++;
      if (!s.enablePrefixCache) fail(`block ${b} is keyed while prefix caching is disabled`);
      if (s.cache.get(key) !== b) fail(`block ${b} has key ${key} but the key map gives ${s.cache.get(key)}`);
      if (s.blockTokens[b]?.length !== blockSize) fail(`keyed block ${b} does not store its ${blockSize} token ids`);
    } else if (s.blockTokens[b] !== null) {
      fail(`unkeyed block ${b} still stores token ids`);
    }
    if (ref === 0) {
      if (free && evictable) fail(`block ${b} is both free and evictable`);
      if (!free && !evictable) fail(`block ${b} has refcount 0 but is neither free nor evictable (leaked)`);
      if (free && key !== NO_KEY) fail(`free block ${b} still has key ${key}`);
      if (evictable && key === NO_KEY) fail(`evictable block ${b} has no key`);
    } else if (ref < 0) {
      fail(`block ${b} has negative refcount ${ref}`);
    } else if (free || evictable) {
      fail(`block ${b} is in use (refcount ${ref}) but also ${free ? "free" : "evictable"}`);
    }
  }
  if (keyed !== s.cache.size) fail(`key map has ${s.cache.size} entries but ${keyed} blocks are keyed`);
  for (const [key, b] of s.cache) {
    if (s.key[b] !== key) fail(`key map entry ${key} -> block ${b}, but block ${b} has key ${s.key[b]}`);
  }
}
