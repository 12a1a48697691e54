// Invariant checker of the KV block manager. Kept apart from the manager so the manager stays small; it reads the
// manager's block pool and sequence tables and throws a precise message at the first broken invariant.

import { type BlockPool, NO_REG } from "./block_pool.ts";
import { NO_KEY } from "./hash.ts";

/** Per-sequence bookkeeping of the KV manager. */
export interface SeqBlocks {
  /** Physical block ids, in token order. The array is shared with the caller (read-only for it). */
  readonly table: number[];
  /** Tokens that have a reserved slot: table.length === ceil(numTokens / blockSize). */
  numTokens: number;
  /** Chain keys of the sequence's first keys.length full blocks, already registered (or found) in the cache. */
  readonly keys: number[];
  /** Registration id of the cache entry matched or registered for each of those blocks (same length as keys). */
  readonly regs: number[];
  /** A hash collision was seen on this sequence's chain: no further blocks of it are registered. */
  chainBroken: boolean;
}

function fail(message: string): never {
  throw new Error(`KvManager integrity: ${message}`);
}

/**
 * Every block is exactly one of: free (ref 0, unkeyed, once in the free list), cached-evictable (ref 0, keyed, in the
 * LRU set), or in use (ref == number of tables holding it, in neither list). The key map and the blocks agree, and
 * every table is sized for its token count.
 */
export function checkKvIntegrity(
  s: BlockPool,
  enablePrefixCache: boolean,
  seqs: ReadonlyMap<number, SeqBlocks>,
): void {
  const { numBlocks, blockSize } = s;
  const holders = new Int32Array(numBlocks);
  for (const [seqId, seq] of seqs) {
    const want = Math.ceil(seq.numTokens / blockSize);
    if (seq.numTokens <= 0) fail(`sequence ${seqId} holds ${seq.numTokens} tokens`);
    if (seq.table.length !== want) {
      fail(`sequence ${seqId} has ${seq.table.length} blocks for ${seq.numTokens} tokens (want ${want})`);
    }
    if (seq.keys.length > Math.floor(seq.numTokens / blockSize)) {
      fail(`sequence ${seqId} has ${seq.keys.length} keyed blocks but only ${seq.numTokens} tokens`);
    }
    if (seq.regs.length !== seq.keys.length) {
      fail(`sequence ${seqId} has ${seq.keys.length} chain keys but ${seq.regs.length} registrations`);
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
      if (!enablePrefixCache) fail(`block ${b} is keyed while prefix caching is disabled`);
      if (s.cache.get(key) !== b) fail(`block ${b} has key ${key} but the key map gives ${s.cache.get(key)}`);
      if (s.tokens[b]?.length !== blockSize) fail(`keyed block ${b} does not store its ${blockSize} token ids`);
      if (!(s.reg[b]! > s.parentReg[b]!)) {
        fail(`keyed block ${b} has registration ${s.reg[b]} not after its parent's ${s.parentReg[b]}`);
      }
    } else if (s.tokens[b] !== null || s.reg[b] !== NO_REG || s.parentReg[b] !== NO_REG) {
      fail(`unkeyed block ${b} still stores token ids or registrations`);
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
