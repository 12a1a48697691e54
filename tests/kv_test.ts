import assert from "node:assert/strict";
import { type BlockHashFn, hashBlock, KvManager, numBlocksFor, ROOT_KEY } from "../src/kv/mod.ts";
import { mulberry32 } from "../src/core/prng.ts";
import { kvBlockBytes } from "../src/backends/cuda/kv.ts";
import { buildSyntheticModel } from "../src/model/synthetic.ts";

const rng = mulberry32;

function range(n: number, from = 0): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}

Deno.test("numBlocksFor() floors free memory share by block size and validates", () => {
  assert.equal(numBlocksFor(1000, 0.5, 100), 5);
  assert.equal(numBlocksFor(1099, 1, 100), 10);
  assert.equal(numBlocksFor(0, 0.9, 64), 0);
  // int4 KV (a quarter of the f16 bytes per block) gives four times the blocks.
  assert.equal(numBlocksFor(1 << 30, 0.75, 4096) * 4, numBlocksFor(1 << 30, 0.75, 1024));
  assert.throws(() => numBlocksFor(-1, 0.5, 100), /freeBytes/);
  assert.throws(() => numBlocksFor(100, 0, 100), /cacheFraction/);
  assert.throws(() => numBlocksFor(100, 1.5, 100), /cacheFraction/);
  assert.throws(() => numBlocksFor(100, 0.5, 0), /bytesPerBlock/);
  assert.throws(() => numBlocksFor(NaN, 0.5, 10), /freeBytes/);
});

Deno.test("hashBlock() is deterministic, chained, and sensitive to every token", () => {
  const t = [1, 2, 3, 4, 5, 6, 7, 8];
  const a = hashBlock(ROOT_KEY, t, 0, 4);
  assert.equal(a, hashBlock(ROOT_KEY, [1, 2, 3, 4], 0, 4));
  assert.ok(Number.isSafeInteger(a) && a >= 0);
  assert.notEqual(a, hashBlock(ROOT_KEY, [1, 2, 3, 5], 0, 4));
  assert.notEqual(a, hashBlock(ROOT_KEY, [2, 1, 3, 4], 0, 4));
  assert.notEqual(hashBlock(a, t, 4, 8), hashBlock(ROOT_KEY, t, 4, 8));
  const seen = new Set<number>();
  for (let i = 0; i < 20000; i++) seen.add(hashBlock(i, [i, i + 1], 0, 2));
  assert.equal(seen.size, 20000);
});

Deno.test("KvManager.allocatePrompt() sizes the table and never partially allocates", () => {
  const kv = new KvManager({ numBlocks: 4, blockSize: 4, enablePrefixCache: false });
  const a = kv.allocatePrompt(1, range(9));
  assert.ok(a);
  assert.equal(a.blockTable.length, 3);
  assert.equal(a.numCachedTokens, 0);
  assert.equal(kv.numFreeBlocks(), 1);
  assert.equal(kv.allocatePrompt(2, range(5)), null);
  assert.equal(kv.numFreeBlocks(), 1);
  assert.equal(kv.has(2), false);
  kv.checkIntegrity();
  assert.throws(() => kv.allocatePrompt(1, [1]), /already holds blocks/);
  assert.throws(() => kv.allocatePrompt(3, []), /no tokens/);
  kv.free(1);
  assert.equal(kv.numFreeBlocks(), 4);
  assert.equal(kv.usage(), 0);
  kv.checkIntegrity();
});

Deno.test("KvManager.allocatePrompt() reuses cached prefix blocks", () => {
  const kv = new KvManager({ numBlocks: 16, blockSize: 4, enablePrefixCache: true });
  const p1 = [...range(12, 100), 7, 8];
  const a = kv.allocatePrompt(1, p1)!;
  assert.equal(a.numCachedTokens, 0);
  kv.markComputed(1, p1, p1.length);
  assert.equal(kv.numCachedBlocks(), 3); // the partial 4th block is not cached
  const p2 = [...range(12, 100), 9, 9, 9];
  const b = kv.allocatePrompt(2, p2)!;
  assert.equal(b.numCachedTokens, 12);
  assert.deepEqual(b.blockTable.slice(0, 3), a.blockTable.slice(0, 3));
  assert.notEqual(b.blockTable[3], a.blockTable[3]);
  for (const blk of a.blockTable.slice(0, 3)) assert.equal(kv.refCount(blk), 2);
  assert.deepEqual(kv.stats, { prefixQueryTokens: 14 + 15, prefixHitTokens: 12, evictions: 0 });
  // A different second block stops the match after the first block.
  const p3 = [...range(4, 100), 0, 0, 0, 0, ...range(4, 108), 1];
  assert.equal(kv.allocatePrompt(3, p3)!.numCachedTokens, 4);
  kv.checkIntegrity();
  // Freed cached blocks stay reusable (evictable, counted as free).
  kv.free(1);
  kv.free(2);
  kv.free(3);
  assert.equal(kv.numFreeBlocks(), 16);
  assert.equal(kv.allocatePrompt(4, p2)!.numCachedTokens, 12);
  kv.checkIntegrity();
});

Deno.test("KvManager.allocatePrompt() always leaves the last token to compute", () => {
  const kv = new KvManager({ numBlocks: 8, blockSize: 4, enablePrefixCache: true });
  const p = range(8);
  const a = kv.allocatePrompt(1, p)!;
  kv.markComputed(1, p, 8);
  const b = kv.allocatePrompt(2, p)!;
  assert.equal(b.numCachedTokens, 4); // the whole last block is recomputed into a private block
  assert.equal(b.blockTable[0], a.blockTable[0]);
  assert.notEqual(b.blockTable[1], a.blockTable[1]);
  assert.equal(kv.refCount(b.blockTable[1]!), 1);
  kv.checkIntegrity();
});

Deno.test("KvManager.markComputed() registers only computed full blocks", () => {
  const kv = new KvManager({ numBlocks: 8, blockSize: 4, enablePrefixCache: true });
  const p = range(11);
  kv.allocatePrompt(1, p);
  kv.markComputed(1, p, 3);
  assert.equal(kv.numCachedBlocks(), 0);
  kv.markComputed(1, p, 8);
  assert.equal(kv.numCachedBlocks(), 2);
  kv.markComputed(1, p, 11);
  assert.equal(kv.numCachedBlocks(), 2);
  assert.throws(() => kv.markComputed(1, p, 12), /computed tokens/);
  assert.equal(kv.allocatePrompt(2, range(11))!.numCachedTokens, 8);
  kv.checkIntegrity();
});

Deno.test("KvManager.markComputed() leaves duplicates of concurrently computed blocks uncached", () => {
  const kv = new KvManager({ numBlocks: 8, blockSize: 4, enablePrefixCache: true });
  const p = range(9);
  kv.allocatePrompt(1, p);
  kv.allocatePrompt(2, p); // nothing cached yet: two private copies
  kv.markComputed(1, p, 9);
  kv.markComputed(2, p, 9);
  assert.equal(kv.numCachedBlocks(), 2);
  kv.free(1);
  kv.free(2);
  assert.equal(kv.numFreeBlocks(), 8);
  kv.checkIntegrity();
  // The cached copies still serve a later request.
  assert.equal(kv.allocatePrompt(3, p)!.numCachedTokens, 8);
});

Deno.test("KvManager evicts the least recently released cached blocks first", () => {
  const kv = new KvManager({ numBlocks: 4, blockSize: 2, enablePrefixCache: true });
  const a = [1, 1, 2, 2, 3];
  kv.allocatePrompt(1, a);
  kv.markComputed(1, a, 5);
  kv.free(1); // two cached blocks become evictable, the tail one first
  assert.equal(kv.numFreeBlocks(), 4);
  assert.equal(kv.numCachedBlocks(), 2);
  const b = [9, 9, 9, 9, 9];
  kv.allocatePrompt(2, b); // needs 3 blocks: 2 free + 1 eviction (the tail block [2,2])
  assert.equal(kv.stats.evictions, 1);
  assert.equal(kv.numCachedBlocks(), 1);
  kv.checkIntegrity();
  kv.free(2);
  assert.equal(kv.allocatePrompt(3, a)!.numCachedTokens, 2); // [1,1] survived
  kv.free(3);
  assert.equal(kv.evictAll(), 1);
  assert.equal(kv.numCachedBlocks(), 0);
  kv.checkIntegrity();
});

Deno.test("KvManager with prefix caching disabled never caches", () => {
  const kv = new KvManager({ numBlocks: 8, blockSize: 2, enablePrefixCache: false });
  const p = range(7);
  kv.allocatePrompt(1, p);
  kv.markComputed(1, p, 7);
  assert.equal(kv.numCachedBlocks(), 0);
  assert.equal(kv.allocatePrompt(2, p)!.numCachedTokens, 0);
  kv.free(1);
  kv.free(2);
  assert.equal(kv.numFreeBlocks(), 8);
  kv.checkIntegrity();
});

Deno.test("KvManager.appendSlot() grows the table per block and refuses when the pool is full", () => {
  const kv = new KvManager({ numBlocks: 3, blockSize: 4, enablePrefixCache: false });
  kv.allocatePrompt(1, range(4));
  assert.deepEqual(kv.appendSlot(1, 3), { copy: null }); // already reserved
  assert.equal(kv.blockTable(1).length, 1);
  assert.ok(kv.canAppend(1, 5));
  assert.deepEqual(kv.appendSlot(1, 5), { copy: null });
  assert.equal(kv.blockTable(1).length, 2);
  assert.equal(kv.numTokens(1), 5);
  kv.appendSlot(1, 8);
  assert.equal(kv.blockTable(1).length, 2);
  kv.allocatePrompt(2, [1]);
  assert.equal(kv.canAppend(1, 9), false);
  assert.equal(kv.appendSlot(1, 9), null);
  assert.equal(kv.numTokens(1), 8);
  kv.checkIntegrity();
  assert.throws(() => kv.appendSlot(7, 1), /holds no blocks/);
});

Deno.test("KvManager.fork() shares blocks and appendSlot() copies a shared partial block on write", () => {
  const kv = new KvManager({ numBlocks: 8, blockSize: 4, enablePrefixCache: false });
  kv.allocatePrompt(1, range(6));
  const child = kv.fork(1, 2);
  assert.deepEqual(child, kv.blockTable(1));
  for (const b of child) assert.equal(kv.refCount(b), 2);
  kv.checkIntegrity();
  const shared = kv.blockTable(1)[1]!;
  const r1 = kv.appendSlot(1, 7)!;
  assert.ok(r1.copy);
  assert.equal(r1.copy.src, shared);
  assert.equal(kv.blockTable(1)[1], r1.copy.dst);
  assert.equal(kv.refCount(shared), 1);
  const r2 = kv.appendSlot(2, 7)!; // now the only holder: writes in place
  assert.equal(r2.copy, null);
  assert.equal(kv.blockTable(2)[1], shared);
  assert.equal(kv.refCount(kv.blockTable(1)[0]!), 2);
  kv.checkIntegrity();
  kv.free(1);
  kv.free(2);
  assert.equal(kv.numFreeBlocks(), 8);
  kv.checkIntegrity();
});

Deno.test("KvManager.appendSlot() counts the copy-on-write block in its capacity check", () => {
  const kv = new KvManager({ numBlocks: 2, blockSize: 4, enablePrefixCache: false });
  kv.allocatePrompt(1, range(2));
  kv.fork(1, 2);
  kv.allocatePrompt(3, [5]);
  assert.equal(kv.canAppend(1, 3), false);
  assert.equal(kv.appendSlot(1, 3), null);
  kv.checkIntegrity();
});

Deno.test("KvManager.checkIntegrity() reports a broken invariant", () => {
  const kv = new KvManager({ numBlocks: 4, blockSize: 4, enablePrefixCache: false });
  kv.allocatePrompt(1, range(5));
  const table = kv.blockTable(1) as number[];
  table.push(table[0]!); // corrupt: a block twice, and a table too long for its tokens
  assert.throws(() => kv.checkIntegrity(), /KvManager integrity: sequence 1 has 3 blocks for 5 tokens/);
  table.pop();
  table[1] = 3; // corrupt: holds a free block
  assert.throws(() => kv.checkIntegrity(), /KvManager integrity: .*block [13]/);
});

Deno.test("KvManager.allocatePrompt() never matches an entry chained on a re-registered colliding parent", () => {
  // Keys depend only on the parent key and the block's first token: [0,1] and [0,2] collide, and so do their children.
  const hash: BlockHashFn = (parent, tokens, start) => parent * 4 + tokens[start]! + 1;
  const kv = new KvManager({ numBlocks: 8, blockSize: 2, enablePrefixCache: true, hash });
  const a = [0, 1, 3, 3, 9];
  const b = [0, 2, 3, 3, 9];
  const t1 = kv.allocatePrompt(1, a)!.blockTable.slice();
  kv.markComputed(1, a, 5);
  kv.free(1);
  assert.equal(kv.allocatePrompt(2, b)!.numCachedTokens, 0); // [0,2] is not [0,1]
  kv.markComputed(2, b, 5); // displaces both evictable entries of a
  const t2 = kv.blockTable(2).slice();
  kv.free(2);
  kv.checkIntegrity();
  const c = kv.allocatePrompt(3, b)!;
  assert.equal(c.numCachedTokens, 4);
  assert.deepEqual(c.blockTable.slice(0, 2), t2.slice(0, 2));
  assert.notEqual(c.blockTable[1], t1[1]);
  kv.free(3);
  assert.equal(kv.allocatePrompt(4, a)!.numCachedTokens, 0);
  kv.checkIntegrity();
});

/**
 * Simulated KV memory. Like real KV, a slot's value depends on the whole prefix up to its position (a rolling hash of
 * the tokens) and on the position, so stale, foreign or wrongly shared KV is detected.
 */
function randomized(seed: number, options: { prefix: boolean; hash?: BlockHashFn; ops: number }): KvManager {
  const bs = 4;
  const numBlocks = 40;
  const kv = new KvManager({ numBlocks, blockSize: bs, enablePrefixCache: options.prefix, hash: options.hash });
  const mem = new Float64Array(numBlocks * bs).fill(-1);
  const codes = (tokens: readonly number[]) => {
    let h = 7;
    return tokens.map((t, pos) => (h = (h * 1000003 + t + 1) % 2147483647) * 64 + (pos % 64));
  };
  const rand = rng(seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const docs = range(4).map(() => Array.from({ length: 40 }, () => pick(3)));
  const heads = [[0, 1, 1, 1], [0, 2, 2, 2], [0, 1, 2, 0]];
  const seqs = new Map<number, { tokens: number[]; computed: number }>();
  let nextId = 0;

  const compute = (id: number, n: number) => {
    const s = seqs.get(id)!;
    const res = kv.appendSlot(id, s.computed + n);
    if (res === null) return;
    if (res.copy) mem.copyWithin(res.copy.dst * bs, res.copy.src * bs, res.copy.src * bs + bs);
    const table = kv.blockTable(id);
    const want = codes(s.tokens);
    for (let pos = s.computed; pos < s.computed + n; pos++) {
      const blk = table[Math.floor(pos / bs)]!;
      assert.equal(kv.refCount(blk), 1, `seq ${id} writes position ${pos} into shared block ${blk}`);
      mem[blk * bs + (pos % bs)] = want[pos]!;
    }
    s.computed += n;
    kv.markComputed(id, s.tokens, s.computed);
  };

  for (let op = 0; op < options.ops; op++) {
    const ids = [...seqs.keys()];
    const id = ids[pick(ids.length)];
    const r = rand();
    if (r < 0.25 || id === undefined) {
      // Different heads (same first token, so weak hashes collide) followed by shared document text.
      const head = heads[pick(heads.length)]!.slice(0, pick(2) * bs);
      const doc = docs[pick(docs.length)]!;
      const tokens = [...head, ...doc.slice(0, 1 + pick(26)), ...Array.from({ length: pick(4) }, () => pick(3))];
      const before = kv.numFreeBlocks();
      const alloc = kv.allocatePrompt(nextId, tokens);
      if (alloc === null) {
        assert.equal(kv.numFreeBlocks(), before);
        assert.ok(before < kv.blocksFor(tokens.length), "allocation refused although the pool had room");
      } else {
        assert.ok(alloc.numCachedTokens < tokens.length && alloc.numCachedTokens % bs === 0);
        seqs.set(nextId, { tokens, computed: alloc.numCachedTokens });
      }
      nextId++;
    } else if (r < 0.55) {
      const s = seqs.get(id)!;
      if (s.computed === s.tokens.length) s.tokens.push(...Array.from({ length: 1 + pick(3) }, () => pick(3)));
      compute(id, 1 + pick(s.tokens.length - s.computed));
    } else if (r < 0.65) {
      const s = seqs.get(id)!;
      if (s.computed === kv.numTokens(id) && seqs.size < 14) {
        kv.fork(id, nextId);
        seqs.set(nextId++, { tokens: s.tokens.slice(), computed: s.computed });
      }
    } else if (r < 0.97) {
      kv.free(id);
      seqs.delete(id);
    } else {
      kv.evictAll();
    }
    kv.checkIntegrity();
    for (const [sid, s] of seqs) {
      const table = kv.blockTable(sid);
      const want = codes(s.tokens);
      for (let pos = 0; pos < s.computed; pos++) {
        const got = mem[table[Math.floor(pos / bs)]! * bs + (pos % bs)];
        assert.equal(got, want[pos], `seq ${sid} reads wrong KV at position ${pos} after op ${op}`);
      }
    }
  }
  for (const id of seqs.keys()) kv.free(id);
  kv.checkIntegrity();
  assert.equal(kv.numFreeBlocks(), numBlocks);
  return kv;
}

Deno.test("KvManager randomized allocate/append/fork/free/evict keeps invariants and KV contents", () => {
  const kv = randomized(1, { prefix: true, ops: 4000 });
  assert.ok(kv.stats.prefixHitTokens > 0, "the workload should hit the prefix cache");
  assert.ok(kv.stats.evictions > 0, "the workload should evict cached blocks");
  randomized(2, { prefix: true, ops: 4000 });
  randomized(3, { prefix: false, ops: 3000 });
});

Deno.test("KvManager randomized with a colliding hash never matches a wrong prefix", () => {
  // Every key collides with many others: correctness must come from exact verification alone.
  const weak: BlockHashFn = (parent, tokens, start) => (parent * 4 + tokens[start]! + 1) % 11;
  randomized(4, { prefix: true, hash: weak, ops: 4000 });
  randomized(5, { prefix: true, hash: () => 0, ops: 2000 });
});

Deno.test("kvBlockBytes() at Llama-3-8B shape: int8 KV holds ~1.94x the tokens of f16 and int4 ~3.76x", () => {
  // The CUDA backend's KV layout (src/backends/cuda/kv.ts, pure functions: no GPU needed) for d = 128: a token's K or
  // V per KV head is 256 bytes in f16, 128 + 4 (f16 scale and zero) in int8, 64 + 4 in int4.
  const spec = buildSyntheticModel("synthetic:llama3-8b").spec;
  const free = 60 * 2 ** 30, fraction = 0.9, bs = 64;
  const tokens = (kv: "f16" | "int8" | "int4") => numBlocksFor(free, fraction, kvBlockBytes(spec, kv, bs)) * bs;
  const f16 = tokens("f16"), i8 = tokens("int8"), i4 = tokens("int4");
  assert.equal(kvBlockBytes(spec, "f16", bs), 2 * spec.numLayers * bs * spec.numKvHeads * 256);
  assert.ok(Math.abs(i8 / f16 - 256 / 132) < 0.01, `int8 / f16 tokens ${i8 / f16}`);
  assert.ok(Math.abs(i4 / f16 - 256 / 68) < 0.01, `int4 / f16 tokens ${i4 / f16}`);
});
