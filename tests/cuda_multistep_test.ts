// Multi-step decode on CUDA (CudaBackend.decodeSteps, and the engine's use of it) on stories260K: k steps in one call
// equal k single forward() steps token for token, greedy and sampled, graphs on and off; runs that cannot be taken
// are refused before anything is launched. GPU tests are ignored (reason in the name) without an NVIDIA driver.
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { cudaTest } from "../src/backends/cuda/testing.ts";
import { Engine } from "../src/engine/engine.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import type { ModelSpec, Precision, SamplingParams, SequenceSamplingState, StepInputs } from "../src/core/types.ts";
import { STORIES_DIR } from "./helpers/models.ts";

const greedy: SamplingParams = { ...defaultSamplingParams(), temperature: 0 };
const sampled: SamplingParams = { ...defaultSamplingParams(), temperature: 0.9, topK: 40, topP: 0.95 };
const BS = 16;
const PRECISION: Precision = { weight: "f16", kv: "f16", compute: "f16" };
let seed = Math.floor(Math.random() * 2 ** 31);
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);

async function stories(): Promise<{ b: CudaBackend; spec: ModelSpec }> {
  const ckpt = await openCheckpoint(STORIES_DIR);
  const b = await CudaBackend.create();
  await b.load(ckpt.spec, ckpt.weights, PRECISION);
  ckpt.weights.close();
  return { b, spec: ckpt.spec };
}

/** One decode token per sequence b at position pos[b], sequence b owning blocks [4b, 4b + 4). */
function decodeStep(tokens: number[], pos: number[], states: SequenceSamplingState[]): StepInputs {
  const B = tokens.length;
  return {
    tokens: Int32Array.from(tokens),
    positions: Int32Array.from(pos),
    queryStarts: Int32Array.from({ length: B + 1 }, (_, i) => i),
    contextLens: Int32Array.from(pos, (p) => p + 1),
    blockTables: Int32Array.from({ length: B * 4 }, (_, i) => i),
    maxBlocksPerSeq: 4,
    blockSize: BS,
    slots: Int32Array.from(pos, (p, b) => 4 * b * BS + p),
    sample: new Array(B).fill(true),
    sampling: states,
  };
}

/** Prefills sequence s's prompt into its blocks (no sampling). */
async function prefill(b: CudaBackend, prompts: number[][]): Promise<void> {
  for (let s = 0; s < prompts.length; s++) {
    const p = prompts[s]!, n = p.length;
    await b.forward({
      tokens: Int32Array.from(p),
      positions: Int32Array.from({ length: n }, (_, i) => i),
      queryStarts: Int32Array.of(0, n),
      contextLens: Int32Array.of(n),
      blockTables: Int32Array.from({ length: 4 }, (_, i) => 4 * s + i),
      maxBlocksPerSeq: 4,
      blockSize: BS,
      slots: Int32Array.from({ length: n }, (_, i) => 4 * s * BS + i),
      sample: [false],
      sampling: [{ params: greedy, promptIds: p, outputIds: [], fallbackSeed: 0 }],
    });
  }
}

cudaTest(
  "CudaBackend.decodeSteps() equals k single forward() steps (greedy and sampled, graphs on and off)",
  async () => {
    const { b, spec } = await stories();
    await using _ = b;
    b.allocateKv(12, BS);
    for (const graphs of [true, false]) {
      b.graphsEnabled = graphs;
      for (const params of [greedy, sampled]) {
        // Three sequences with prompts of different lengths; the run crosses a block boundary (positions 13..22).
        const prompts = [9, 13, 5].map((n) => Array.from({ length: n }, () => 1 + Math.floor(rand() * 511)));
        const seeds = prompts.map(() => Math.floor(rand() * 2 ** 31));
        const k = 10, single: number[][] = prompts.map(() => []);
        await prefill(b, prompts);
        for (let j = 0; j < k; j++) {
          const tokens = prompts.map((p, s) => j === 0 ? p.at(-1)! : single[s]!.at(-1)!);
          const states = prompts.map((p, s) => ({
            params,
            promptIds: p,
            outputIds: single[s]!.slice(),
            fallbackSeed: seeds[s]!,
          }));
          const r = await b.forward(decodeStep(tokens, prompts.map((p) => p.length - 1 + j), states));
          r.tokens.forEach((t, s) => single[s]!.push(t));
        }
        await prefill(b, prompts); // the same KV again: the run recomputes every position it reads
        const states = prompts.map((p, s) => ({ params, promptIds: p, outputIds: [], fallbackSeed: seeds[s]! }));
        const ids = await b.decodeSteps(
          decodeStep(prompts.map((p) => p.at(-1)!), prompts.map((p) => p.length - 1), states),
          k,
        );
        const multi = prompts.map((_, s) => Array.from({ length: k }, (_, j) => ids[j * prompts.length + s]!));
        assert.deepEqual(multi, single, `graphs ${graphs}, temperature ${params.temperature} (seed ${seed})`);
      }
    }
    assert.ok(spec.vocabSize === 512);
    const seeded = [{ params: { ...sampled, seed: 7 }, promptIds: [1], outputIds: [], fallbackSeed: 0 }];
    await assert.rejects(() => b.decodeSteps(decodeStep([1], [0], seeded), 2), /host sampling/);
    const g1 = [{ params: greedy, promptIds: [1], outputIds: [], fallbackSeed: 0 }];
    await assert.rejects(() => b.decodeSteps(decodeStep([1], [0], g1), 65), /k=65/);
  },
);

cudaTest("Engine on CUDA: multi-step decode (k = 8) gives the same tokens as single steps", async () => {
  const outputs: number[][][] = [];
  const runs: number[] = [];
  for (const multiStep of [1, 8]) {
    const { b, spec } = await stories();
    await using _ = b;
    const run = b.decodeSteps.bind(b);
    b.decodeSteps = (step, k) => (runs.push(k), run(step, k));
    const config = {
      blockSize: BS,
      maxBatchedTokens: 256,
      maxBatchSize: 8,
      cacheFraction: 0.5,
      enablePrefixCache: true,
      numBlocks: 40,
      multiStep,
    };
    const e = new Engine(b, spec, PRECISION, null, config);
    const reqs = [[1, 20, 30], [1, 400, 401, 402, 403], [1, 7]].map((prompt, i) =>
      e.submit({ promptIds: prompt, sampling: greedy, maxTokens: 12 + 5 * i, ignoreEos: true })
    );
    outputs.push(
      await Promise.all(reqs.map(async (h) => {
        const ids: number[] = [];
        for await (const d of h) ids.push(...d.ids);
        return ids;
      })),
    );
    await e.shutdown(0);
  }
  assert.deepEqual(outputs[1], outputs[0]);
  assert.ok(runs.length > 0 && runs.every((k) => k >= 2 && k <= 8), `runs ${runs}`);
});
