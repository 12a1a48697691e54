import assert from "node:assert/strict";
import { UserError } from "../src/core/errors.ts";
import type { SamplingParams, StepInputs } from "../src/core/types.ts";
import { KvManager } from "../src/kv/mod.ts";
import {
  buildStepInputs,
  type ScheduledBatch,
  Scheduler,
  type SchedulerConfig,
  Sequence,
  type SequenceOptions,
} from "../src/scheduler/mod.ts";
import { mulberry32 } from "../src/core/prng.ts";

const GREEDY: SamplingParams = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: null,
  topLogprobs: 0,
  logprobs: false,
};

const rng = mulberry32;

function range(n: number, from = 0): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}

function seq(id: number, promptIds: number[], maxTokens: number, extra: Partial<SequenceOptions> = {}): Sequence {
  return new Sequence({ id, promptIds, params: GREEDY, maxTokens, ...extra });
}

function setup(
  cfg: Partial<SchedulerConfig> & { numBlocks: number; prefix?: boolean },
): { kv: KvManager; sched: Scheduler } {
  const blockSize = cfg.blockSize ?? 4;
  const kv = new KvManager({ numBlocks: cfg.numBlocks, blockSize, enablePrefixCache: cfg.prefix ?? false });
  const sched = new Scheduler({
    maxBatchedTokens: cfg.maxBatchedTokens ?? 64,
    maxBatchSize: cfg.maxBatchSize ?? 8,
    blockSize,
    maxModelLen: cfg.maxModelLen ?? 1024,
    chunkedPrefill: cfg.chunkedPrefill ?? true,
  }, kv);
  return { kv, sched };
}

/**
 * A fake model that really uses the paged KV cache. The "KV" written at a position is a hash of the KV at the
 * previous position (read back through the block table, like attention would) with the token and position, so it
 * depends on the whole prefix; the next token is a function of the last KV. Wrong blocks, stale KV, a missed
 * copy-on-write or a wrong prefix-cache hit all change the outputs, and reading an unwritten slot throws.
 */
class FakeModel {
  readonly mem: Float64Array;
  steps = 0;
  constructor(numBlocks: number, blockSize: number, readonly vocab: number) {
    this.mem = new Float64Array(numBlocks * blockSize).fill(-1);
  }

  forward(x: StepInputs): Int32Array {
    this.steps++;
    const out = new Int32Array(x.sample.length).fill(-1);
    for (let b = 0; b < x.sample.length; b++) {
      const row = x.blockTables.subarray(b * x.maxBlocksPerSeq, (b + 1) * x.maxBlocksPerSeq);
      const slotOf = (pos: number) => row[Math.floor(pos / x.blockSize)]! * x.blockSize + (pos % x.blockSize);
      let last = 0;
      for (let t = x.queryStarts[b]!; t < x.queryStarts[b + 1]!; t++) {
        const pos = x.positions[t]!;
        assert.equal(x.slots[t], slotOf(pos), `slot of position ${pos}`);
        const prev = pos === 0 ? 7 : this.mem[slotOf(pos - 1)]!;
        if (prev < 0) throw new Error(`row ${b} reads unwritten KV at position ${pos - 1}`);
        last = (Math.imul(prev | 0, 0x01000193) ^ Math.imul(x.tokens[t]! + 1, 0x9e3779b1) ^ pos) >>> 1;
        this.mem[x.slots[t]!] = last;
      }
      assert.equal(x.contextLens[b], x.positions[x.queryStarts[b + 1]! - 1]! + 1);
      if (x.sample[b]) out[b] = (Math.imul(last, 0x85ebca6b) >>> 7) % this.vocab;
    }
    return out;
  }

  copyBlocks(src: Int32Array, dst: Int32Array, blockSize: number): void {
    for (let i = 0; i < src.length; i++) {
      this.mem.copyWithin(dst[i]! * blockSize, src[i]! * blockSize, (src[i]! + 1) * blockSize);
    }
  }
}

/** Runs the engine loop until all sequences finish; checks KV integrity after every step. */
function runAll(sched: Scheduler, model: FakeModel, pending: Sequence[] = [], addPerStep = 3): void {
  const queue = pending.slice();
  for (let guard = 0; guard < 100000; guard++) {
    for (let i = 0; i < addPerStep && queue.length > 0; i++) sched.add(queue.shift()!);
    if (!sched.hasUnfinished() && queue.length === 0) return;
    const batch = sched.schedule();
    assert.ok(batch.numTokens <= sched.config.maxBatchedTokens, "token budget exceeded");
    assert.ok(batch.seqs.length <= sched.config.maxBatchSize, "batch size exceeded");
    if (batch.copySrc.length > 0) model.copyBlocks(batch.copySrc, batch.copyDst, sched.config.blockSize);
    const sampled = batch.seqs.length > 0 ? model.forward(buildStepInputs(batch, sched.config.blockSize)) : null;
    if (sampled) sched.postprocess(batch, sampled);
    sched.kv.checkIntegrity();
    if (batch.seqs.length === 0 && queue.length === 0) throw new Error("scheduler made no progress");
  }
  throw new Error("simulation did not finish");
}

function makeRequests(seed: number, n: number): { prompt: number[]; maxTokens: number }[] {
  const rand = rng(seed);
  const pick = (k: number) => Math.floor(rand() * k);
  const systemPrompts = range(3).map(() => Array.from({ length: 12 + pick(20) }, () => 1 + pick(60)));
  return range(n).map(() => {
    const head = rand() < 0.7 ? systemPrompts[pick(3)]! : [];
    const prompt = [...head, ...Array.from({ length: 1 + pick(30) }, () => 1 + pick(60))];
    return { prompt, maxTokens: 1 + pick(40) };
  });
}

Deno.test("Scheduler simulation: preemption, chunked prefill and prefix caching reproduce solo outputs", () => {
  const vocab = 64;
  const reqs = makeRequests(11, 48);
  const solo = reqs.map((r, i) => {
    const { sched } = setup({ numBlocks: 64, prefix: false });
    const s = seq(i, r.prompt, r.maxTokens, { eosTokenIds: [0] });
    runAll(sched, new FakeModel(64, 4, vocab), [s]);
    return { out: s.outputIds.slice(), reason: s.finishReason };
  });
  assert.ok(solo.some((s) => s.reason === "stop") && solo.some((s) => s.reason === "length"));

  for (const prefix of [true, false]) {
    const numBlocks = 24; // the longest request needs 23 blocks: only about two fit at once
    const { kv, sched } = setup({ numBlocks, prefix, maxBatchedTokens: 24, maxBatchSize: 6 });
    const model = new FakeModel(numBlocks, 4, vocab);
    const seqs = reqs.map((r, i) => seq(i, r.prompt, r.maxTokens, { eosTokenIds: [0] }));
    runAll(sched, model, seqs);
    for (let i = 0; i < seqs.length; i++) {
      assert.deepEqual(seqs[i]!.outputIds, solo[i]!.out, `request ${i} output differs (prefix cache ${prefix})`);
      assert.equal(seqs[i]!.finishReason, solo[i]!.reason);
      assert.equal(seqs[i]!.blockTable.length, 0);
    }
    const c = sched.counters;
    assert.ok(c.preemptionsTotal > 0, "the small pool should force preemptions");
    assert.equal(c.waiting + c.running, 0);
    assert.equal(kv.numFreeBlocks(), numBlocks, "all blocks return to the pool");
    if (prefix) assert.ok(c.prefixHitTokens > 0, "shared system prompts should hit the prefix cache");
    else assert.equal(c.prefixHitTokens, 0);
  }
});

Deno.test("Scheduler.add() rejects requests that can never run", () => {
  const { sched } = setup({ numBlocks: 4, maxModelLen: 64 }); // 16 KV tokens in the whole pool
  assert.throws(
    () => sched.add(seq(1, range(20), 1)),
    (e) => e instanceof UserError && /needs 5 KV blocks/.test(e.message),
  );
  assert.throws(() => sched.add(seq(2, range(10), 10)), /whole pool has 4/); // 19 KV tokens at its longest
  assert.throws(() => sched.add(seq(3, [], 1)), /prompt is empty/);
  assert.throws(() => sched.add(seq(4, range(64), 1)), /context length is 64/);
  sched.add(seq(5, range(10), 7)); // 16 KV tokens: fits exactly
  assert.throws(() => sched.add(seq(5, range(3), 1)), /already live/);
  assert.equal(sched.numWaiting, 1);
  const { sched: strict } = setup({ numBlocks: 4, maxModelLen: 16, maxBatchedTokens: 16, chunkedPrefill: false });
  strict.add(seq(1, range(15), 1));
  assert.throws(() => setup({ numBlocks: 4, maxBatchedTokens: 8, chunkedPrefill: false }), /maxBatchedTokens/);
});

Deno.test("Scheduler.schedule() splits a long prompt into chunks within the token budget", () => {
  const { sched } = setup({ numBlocks: 32, maxBatchedTokens: 16 });
  const s = seq(1, range(40), 2);
  sched.add(s);
  const model = new FakeModel(32, 4, 50);
  const chunks: number[] = [];
  for (let step = 0; step < 3; step++) {
    const batch = sched.schedule();
    assert.equal(batch.seqs.length, 1);
    const row = batch.seqs[0]!;
    chunks.push(row.numNewTokens);
    assert.equal(row.start, step * 16);
    assert.equal(row.sample, step === 2);
    const out = model.forward(buildStepInputs(batch, 4));
    assert.equal(sched.postprocess(batch, out).length, step === 2 ? 1 : 0);
  }
  assert.deepEqual(chunks, [16, 16, 8]);
  assert.equal(s.outputIds.length, 1);
  assert.equal(s.numComputedTokens, 40);
});

Deno.test("Scheduler.schedule() mixes decode tokens with a prefill chunk of a new request", () => {
  const { sched } = setup({ numBlocks: 32, maxBatchedTokens: 10 });
  const a = seq(1, range(5), 10);
  sched.add(a);
  const model = new FakeModel(32, 4, 50);
  let batch = sched.schedule();
  sched.postprocess(batch, model.forward(buildStepInputs(batch, 4)));
  sched.add(seq(2, range(20, 100), 10));
  batch = sched.schedule();
  assert.deepEqual(batch.seqs.map((r) => [r.seq.id, r.start, r.numNewTokens, r.sample]), [
    [1, 5, 1, true],
    [2, 0, 9, false],
  ]);
  assert.equal(batch.numTokens, 10);
});

Deno.test("Scheduler.schedule() preempts the most recently admitted sequence and re-queues it first", () => {
  // 4 blocks of 4 tokens: a (7 tokens) and b (7 tokens) hold 2 blocks each; growing a to 9 tokens needs a 3rd.
  const { kv, sched } = setup({ numBlocks: 4, maxBatchedTokens: 64 });
  const a = seq(1, range(7), 5);
  const b = seq(2, range(7, 10), 5);
  const c = seq(3, [1], 1);
  sched.add(a);
  sched.add(b);
  sched.add(c);
  const model = new FakeModel(4, 4, 50);
  let batch = sched.schedule();
  assert.deepEqual(batch.seqs.map((r) => r.seq.id), [1, 2]); // c waits: no block left
  sched.postprocess(batch, model.forward(buildStepInputs(batch, 4))); // a, b: 8 tokens, 7 computed
  batch = sched.schedule(); // both decode into their 2nd block
  sched.postprocess(batch, model.forward(buildStepInputs(batch, 4))); // 9 tokens, 8 computed
  batch = sched.schedule(); // a needs a 3rd block: b (newest) is preempted
  assert.deepEqual(batch.seqs.map((r) => r.seq.id), [1]);
  assert.deepEqual(batch.preempted, [b]);
  assert.equal(b.status, "preempted");
  assert.equal(b.numComputedTokens, 0);
  assert.equal(b.outputIds.length, 2);
  assert.equal(b.blockTable.length, 0);
  assert.equal(sched.numWaiting, 2);
  assert.equal(sched.counters.preemptionsTotal, 1);
  kv.checkIntegrity();
  sched.postprocess(batch, model.forward(buildStepInputs(batch, 4)));
  while ((b.status as string) !== "running") {
    batch = sched.schedule();
    sched.postprocess(batch, model.forward(buildStepInputs(batch, 4)));
  }
  // a finished and freed 3 blocks: b (front of the queue) is re-admitted before c, re-prefilling prompt + output.
  assert.equal(a.status, "finished");
  assert.deepEqual(batch.seqs.map((r) => [r.seq.id, r.start, r.numNewTokens]), [[2, 0, 9], [3, 0, 1]]);
  runAll(sched, model);
  assert.equal(a.outputIds.length, 5);
  assert.equal(b.outputIds.length, 5);
  assert.equal(b.numPreemptions, 1);
  assert.equal(c.status, "finished");
  assert.equal(kv.numFreeBlocks(), 4);
});

Deno.test("Scheduler.postprocess() applies stop ids, ignoreEos, maxTokens and maxModelLen", () => {
  const run = (s: Sequence, tokens: number[], maxModelLen = 1024) => {
    const { kv, sched } = setup({ numBlocks: 16, maxModelLen });
    sched.add(s);
    for (const t of tokens) {
      const batch = sched.schedule();
      sched.postprocess(batch, Int32Array.of(t));
    }
    assert.equal(kv.numFreeBlocks(), 16);
    return s;
  };
  assert.equal(run(seq(1, [1, 2], 10, { eosTokenIds: [9] }), [3, 9]).finishReason, "stop");
  const ignored = run(seq(2, [1, 2], 3, { eosTokenIds: [9], ignoreEos: true }), [9, 9, 9]);
  assert.equal(ignored.finishReason, "length");
  assert.deepEqual(ignored.outputIds, [9, 9, 9]);
  assert.equal(run(seq(3, [1], 10, { stopTokenIds: [5], ignoreEos: true }), [4, 5]).finishReason, "stop");
  const capped = run(seq(4, [1, 2, 3], 100), [4, 4, 4], 6);
  assert.equal(capped.finishReason, "length");
  assert.equal(capped.numTokens, 6);
  assert.throws(() => {
    const { sched } = setup({ numBlocks: 4 });
    sched.add(seq(5, [1], 2));
    sched.postprocess(sched.schedule(), Int32Array.of(-1));
  }, /no sampled token/);
});

Deno.test("Scheduler.abort() frees blocks at once, also while a step is in flight", () => {
  const { kv, sched } = setup({ numBlocks: 8 });
  const a = seq(1, range(10), 5);
  const b = seq(2, range(10), 5);
  const w = seq(3, range(28), 5);
  sched.add(a);
  sched.add(b);
  sched.add(w); // waits: 3 + 3 + 7 blocks > 8
  const batch = sched.schedule();
  assert.equal(batch.seqs.length, 2);
  assert.equal(sched.abort(1), a); // during the "forward"
  assert.equal(kv.numFreeBlocks(), 5);
  assert.equal(sched.abort(3), w);
  assert.equal(sched.numWaiting, 0);
  const updates = sched.postprocess(batch, Int32Array.of(7, 8));
  assert.deepEqual(updates.map((u) => u.seq.id), [2]);
  assert.equal(a.finishReason, "abort");
  assert.deepEqual(a.outputIds, []);
  assert.equal(sched.abort(1), null);
  sched.abort(2);
  assert.equal(kv.numFreeBlocks(), 8);
  assert.equal(sched.hasUnfinished(), false);
  kv.checkIntegrity();
});

Deno.test("Scheduler hits the prefix cache when two prompts share a long prefix", () => {
  const { kv, sched } = setup({ numBlocks: 32, prefix: true });
  const shared = range(33, 100);
  const a = seq(1, [...shared, 1, 2], 3);
  const model = new FakeModel(32, 4, 50);
  runAll(sched, model, [a]);
  const b = seq(2, [...shared, 3], 3);
  sched.add(b);
  const batch = sched.schedule();
  assert.equal(b.numCachedTokens, 32);
  assert.deepEqual(batch.seqs.map((r) => [r.start, r.numNewTokens]), [[32, 2]]);
  assert.deepEqual(sched.counters.prefixHitTokens, 32);
  assert.equal(sched.counters.prefixQueryTokens, 35 + 34);
  kv.checkIntegrity();
});

Deno.test("Scheduler without chunked prefill schedules whole prompts only", () => {
  const { sched } = setup({ numBlocks: 64, maxBatchedTokens: 32, maxModelLen: 32, chunkedPrefill: false });
  sched.add(seq(1, range(20), 4));
  sched.add(seq(2, range(20), 4));
  let batch = sched.schedule();
  assert.deepEqual(batch.seqs.map((r) => r.numNewTokens), [20]); // the second prompt does not fit the budget
  sched.postprocess(batch, Int32Array.of(1));
  batch = sched.schedule();
  assert.deepEqual(batch.seqs.map((r) => r.numNewTokens), [1, 20]);
});

Deno.test("Scheduler.schedule() respects maxBatchSize", () => {
  const { sched } = setup({ numBlocks: 64, maxBatchSize: 2 });
  for (let i = 0; i < 5; i++) sched.add(seq(i, [1, 2, 3], 2));
  const batch = sched.schedule();
  assert.equal(batch.seqs.length, 2);
  assert.equal(sched.counters.waiting, 3);
  assert.equal(sched.counters.running, 2);
});

Deno.test("buildStepInputs() lays out a mixed prefill + decode batch", () => {
  const { sched } = setup({ numBlocks: 16 });
  const a = seq(1, range(5, 10), 4);
  sched.add(a);
  let batch: ScheduledBatch = sched.schedule();
  sched.postprocess(batch, Int32Array.of(42)); // a: 6 tokens, 5 computed, blocks [0, 1]
  sched.add(seq(2, range(6, 20), 4));
  batch = sched.schedule(); // a decodes position 5; b prefills 6 tokens into blocks [2, 3]
  const x = buildStepInputs(batch, 4);
  assert.deepEqual([...x.tokens], [42, 20, 21, 22, 23, 24, 25]);
  assert.deepEqual([...x.positions], [5, 0, 1, 2, 3, 4, 5]);
  assert.deepEqual([...x.queryStarts], [0, 1, 7]);
  assert.deepEqual([...x.contextLens], [6, 6]);
  assert.equal(x.maxBlocksPerSeq, 2);
  assert.deepEqual([...x.blockTables], [0, 1, 2, 3]);
  assert.deepEqual([...x.slots], [1 * 4 + 1, 8, 9, 10, 11, 12, 13]);
  assert.deepEqual(x.sample, [true, true]);
  assert.equal(x.sampling[0], a);
  assert.equal(x.sampling[0]!.outputIds.length, 1);
  assert.equal(x.blockSize, 4);
  assert.equal(x.allLogits, undefined);
  assert.equal(buildStepInputs(batch, 4, { allLogits: true }).allLogits, true);
});

Deno.test("buildStepInputs() pads block tables with -1 to the widest context", () => {
  const { sched } = setup({ numBlocks: 16, maxBatchedTokens: 12 });
  sched.add(seq(1, range(3), 2));
  sched.add(seq(2, range(20), 2));
  const x = buildStepInputs(sched.schedule(), 4); // b's first chunk: 9 tokens = 3 blocks
  assert.equal(x.maxBlocksPerSeq, 3);
  assert.deepEqual([...x.blockTables.subarray(0, 3)], [0, -1, -1]);
  assert.deepEqual(x.sample, [true, false]);
  assert.deepEqual([...x.contextLens], [3, 9]);
});
