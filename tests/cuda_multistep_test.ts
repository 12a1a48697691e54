// Multi-step decode on CUDA (CudaBackend.decodeSteps, and the engine's use of it) on stories260K: k steps in one call
// equal k single forward() steps token for token, greedy and sampled, graphs on and off; runs that cannot be taken
// are refused before anything is launched. GPU tests are ignored (reason in the name) without an NVIDIA driver.
import assert from "node:assert/strict";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { cudaTest } from "../src/backends/cuda/testing.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import type { Precision, SamplingParams } from "../src/core/types.ts";
import { loadStories } from "./helpers/models.ts";
import { BS, decodeStep, multiStepEngine, singleVsMulti } from "./helpers/decode_steps.ts";

const greedy: SamplingParams = { ...defaultSamplingParams(), temperature: 0 };
const sampled: SamplingParams = { ...defaultSamplingParams(), temperature: 0.9, topK: 40, topP: 0.95 };
const PRECISION: Precision = { weight: "f16", kv: "f16", compute: "f16" };
let seed = Math.floor(Math.random() * 2 ** 31);
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);

const stories = async () => loadStories(await CudaBackend.create(), PRECISION);

cudaTest(
  "CudaBackend.decodeSteps() equals k single forward() steps (greedy and sampled, graphs on and off)",
  async () => {
    const { b, spec } = await stories();
    await using _ = b;
    b.allocateKv(12, BS);
    for (const graphs of [true, false]) {
      b.graphsEnabled = graphs;
      for (const params of [greedy, sampled]) {
        const { single, multi } = await singleVsMulti(b, spec.vocabSize, rand, params, 10);
        assert.deepEqual(multi, single, `graphs ${graphs}, temperature ${params.temperature} (seed ${seed})`);
      }
    }
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
    const e = multiStepEngine(b, spec, PRECISION, multiStep, runs);
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
