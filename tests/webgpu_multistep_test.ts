// Multi-step decode (WebGpuBackend.decodeSteps and the engine's use of it) on stories260K: k steps in one call
// equal k single steps token for token, stops inside a run drop the tail, and the KV manager stays consistent.
import assert from "node:assert/strict";
import { createWebGpuBackend } from "../src/backends/webgpu/backend.ts";
import { LOOK_AHEAD, lookAheadStats } from "../src/backends/webgpu/multistep.ts";
import { probeWebGpu } from "../src/backends/webgpu/device.ts";
import { gpuTestRegistrar, rng, testSeed } from "../src/backends/webgpu/testing.ts";
import { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import type { SamplingParams } from "../src/core/types.ts";
import { loadStories } from "./helpers/models.ts";
import { BS, decodeStep, multiStepEngine, prefill, singleVsMulti } from "./helpers/decode_steps.ts";

const gpuTest = gpuTestRegistrar(await probeWebGpu());
const SEED = testSeed();
const greedy: SamplingParams = { ...defaultSamplingParams(), temperature: 0 };
const sampled: SamplingParams = { ...defaultSamplingParams(), temperature: 0.9, topK: 40, topP: 0.95 };

const stories = async () => loadStories(await createWebGpuBackend(), { weight: "f32", kv: "f32", compute: "f32" });

gpuTest(
  "WebGpuBackend.decodeSteps() behaviour: k steps equal k single forward() steps (greedy and sampled)",
  async () => {
    const { b, spec } = await stories();
    await using _ = b;
    b.allocateKv(12, BS);
    const rand = rng(SEED);
    for (const params of [greedy, sampled]) {
      const { single, multi } = await singleVsMulti(b, spec.vocabSize, rand, params, 10);
      assert.deepEqual(multi, single, `temperature ${params.temperature} (WEBGPU_TEST_SEED=${SEED})`);
    }
    const seeded = [{ params: { ...sampled, seed: 7 }, promptIds: [1], outputIds: [], fallbackSeed: 0 }];
    await assert.rejects(() => b.decodeSteps(decodeStep([1], [0], seeded), 2), RangeError); // host-only sampling
    const g1 = [{ params: greedy, promptIds: [1], outputIds: [], fallbackSeed: 0 }];
    await assert.rejects(() => b.decodeSteps(decodeStep([1], [62], g1), 4), RangeError); // past the block table
  },
);

gpuTest(
  "WebGpuBackend.decodeSteps() behaviour: back-to-back runs use the look-ahead; after forward() or another k they do not; ids equal single steps",
  async () => {
    const { b, spec } = await stories();
    await using _ = b;
    b.allocateKv(12, BS);
    const rand = rng(SEED + 2);
    const steps0 = LOOK_AHEAD.steps;
    LOOK_AHEAD.steps = 2;
    const prompts = [6, 11].map((n) => Array.from({ length: n }, () => 1 + Math.floor(rand() * (spec.vocabSize - 1))));
    const seeds = prompts.map(() => Math.floor(rand() * 2 ** 31));
    const ks = [6, 6, 6, 4]; // runs 1-2: back to back; forward() before run 3; run 4 has another k
    const total = ks.reduce((a, v) => a + v, 0);
    const state = (s: number, out: number[]) => ({
      params: sampled,
      promptIds: prompts[s]!,
      outputIds: out.slice(),
      fallbackSeed: seeds[s]!,
    });
    const single: number[][] = prompts.map(() => []);
    await prefill(b, prompts);
    for (let j = 0; j < total; j++) {
      const tokens = prompts.map((p, s) => j === 0 ? p.at(-1)! : single[s]!.at(-1)!);
      const r = await b.forward(
        decodeStep(tokens, prompts.map((p) => p.length - 1 + j), prompts.map((_, s) => state(s, single[s]!))),
      );
      r.tokens.forEach((t, s) => single[s]!.push(t));
    }
    await prefill(b, prompts);
    const multi: number[][] = prompts.map(() => []);
    const used: number[] = [];
    let j = 0;
    for (const [i, k] of ks.entries()) {
      // forward() on sequence 2's blocks (a prefill that samples nothing) between runs 2 and 3.
      if (i === 2) {
        await b.forward({
          tokens: Int32Array.of(1, 2, 3),
          positions: Int32Array.of(0, 1, 2),
          queryStarts: Int32Array.of(0, 3),
          contextLens: Int32Array.of(3),
          blockTables: Int32Array.of(8, 9, 10, 11),
          maxBlocksPerSeq: 4,
          blockSize: BS,
          slots: Int32Array.of(8 * BS, 8 * BS + 1, 8 * BS + 2),
          sample: [false],
          sampling: [{ params: greedy, promptIds: [1, 2, 3], outputIds: [], fallbackSeed: 0 }],
        });
      }
      const before = lookAheadStats.used;
      const tokens = prompts.map((p, s) => j === 0 ? p.at(-1)! : multi[s]!.at(-1)!);
      const step = decodeStep(tokens, prompts.map((p) => p.length - 1 + j), prompts.map((_, s) => state(s, multi[s]!)));
      const ids = await b.decodeSteps(step, k);
      for (let t = 0; t < k; t++) prompts.forEach((_, s) => multi[s]!.push(ids[t * prompts.length + s]!));
      used.push(lookAheadStats.used - before);
      j += k;
    }
    assert.deepEqual(multi, single, `(WEBGPU_TEST_SEED=${SEED})`);
    LOOK_AHEAD.steps = steps0;
    assert.deepEqual(used, [0, 1, 0, 0], "look-ahead used by run 2 only");
  },
);

/** Lengths k of the decodeSteps() calls the engines made. */
const runs: number[] = [];

/** An engine over stories260K on WebGPU; multiStep 1 turns multi-step decode off. */
async function storiesEngine(multiStep: number): Promise<Engine> {
  const { b, spec } = await stories();
  return multiStepEngine(b, spec, { weight: "f32", kv: "f32", compute: "f32" }, multiStep, runs);
}

async function generate(e: Engine, reqs: { prompt: number[]; maxTokens: number; stop?: number[] }[]) {
  const hs = reqs.map((r) =>
    e.submit({ promptIds: r.prompt, sampling: greedy, maxTokens: r.maxTokens, stopTokenIds: r.stop, ignoreEos: true })
  );
  return await Promise.all(hs.map(async (h) => {
    const ids: number[] = [];
    for await (const d of h) ids.push(...d.ids);
    return { ids, reason: (await h.result).finishReason };
  }));
}

gpuTest(
  "Engine.step() behaviour with decodeSteps: same tokens as single steps, stops drop the tail, KV intact",
  async () => {
    const rand = rng(SEED + 1);
    const prompts = [7, 20, 3].map((n) => Array.from({ length: n }, () => 1 + Math.floor(rand() * 500)));
    // Reference: single steps. max_tokens 13 and 21 are not multiples of the run length (8).
    await using single = await storiesEngine(1);
    const ref = await generate(single, prompts.map((prompt, i) => ({ prompt, maxTokens: [13, 21, 9][i]! })));
    await using multi = await storiesEngine(8);
    const idle = multi.kv.numFreeBlocks();
    const got = await generate(multi, prompts.map((prompt, i) => ({ prompt, maxTokens: [13, 21, 9][i]! })));
    assert.deepEqual(got, ref, `(WEBGPU_TEST_SEED=${SEED})`);
    // Runs happened only once all three sequences were decoding, up to 8 steps, capped by the tokens left.
    assert.ok(runs.length > 0 && runs.every((k) => k >= 2 && k <= 8), `decodeSteps calls: ${runs}`);
    assert.ok(runs.includes(8), `decodeSteps calls: ${runs}`);
    // A stop id that the greedy continuation reaches at output 5 (inside the first run of 8): the request ends there.
    const stopId = ref[1]!.ids[5]!;
    const first = ref[1]!.ids.indexOf(stopId);
    const [stopped] = await generate(multi, [{ prompt: prompts[1]!, maxTokens: 21, stop: [stopId] }]);
    assert.deepEqual(stopped, { ids: ref[1]!.ids.slice(0, first + 1), reason: "stop" });
    multi.kv.checkIntegrity();
    assert.equal(multi.kv.numFreeBlocks(), idle, "every block is free again");
    assert.equal(multi.scheduler.numRunning, 0);
  },
);
