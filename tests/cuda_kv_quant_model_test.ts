// stories260K on CUDA with an int8 / int4 KV cache vs the reference backend with the same KV precision: logits and
// greedy ids. Ignored (with the reason in the name) where no NVIDIA driver is present.
import assert from "node:assert/strict";
import type { Precision } from "../src/core/types.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { cudaTest, relErr } from "../src/backends/cuda/testing.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { readReferenceLogits, STORIES_DIR } from "./helpers/models.ts";

const gpuTest = cudaTest;

// stories260K (d = 8, GQA 2) with int8 / int4 KV, f16 weights, f32 activations, vs the reference backend at the
// same KV precision. Both quantize each K/V row the same way, but their K/V values differ by f32 rounding
// (matmul order, RoPE), which can move one value across a rounding boundary: one quantization step (range/255 for
// int8, range/15 for int4) in a few entries. Measured bounds are stated against that: int8 2e-2, int4 1e-1 of
// max|logit|; greedy ids must agree until the first step whose reference top-2 margin is below that error.
const greedy = { ...defaultSamplingParams(), temperature: 0 };
for (const kv of ["int8", "int4"] as const) {
  gpuTest(
    `CudaBackend with ${kv} KV matches the reference backend with ${kv} KV on stories260K (logits, greedy ids)`,
    async () => {
      const precision: Precision = { weight: "f16", kv, compute: "f32" };
      const load = async <B extends ReferenceBackend | CudaBackend>(b: B) => {
        const ckpt = await openCheckpoint(STORIES_DIR);
        await b.load(ckpt.spec, ckpt.weights, precision);
        ckpt.weights.close();
        return b;
      };
      await using oracle = await load(new ReferenceBackend());
      await using gpu = await load(await CudaBackend.create());
      const bound = kv === "int8" ? 2e-2 : 1e-1;
      for (const c of (await readReferenceLogits()).cases) {
        const err = relErr(await sequenceLogits(gpu, c.tokens, greedy), await sequenceLogits(oracle, c.tokens, greedy));
        console.log(`  ${kv} KV, ${c.tokens.length} tokens: logits vs reference backend ${err.toExponential(2)}`);
        assert.ok(err < bound, `${c.tokens.length} tokens: error ${err} >= ${bound}`);
      }
      const opts = { maxTokens: 40, maxPositions: 512 };
      const want = (await generateSequence(oracle, [1], greedy, opts)).ids,
        got = (await generateSequence(gpu, [1], greedy, opts)).ids;
      let n = 0;
      while (n < want.length && got[n] === want[n]) n++;
      console.log(`  ${kv} KV: ${n}/${want.length} greedy ids agree`);
      if (n < want.length) {
        const logits = await sequenceLogits(oracle, [1, ...want.slice(0, n)], greedy), V = logits.length / (n + 1);
        const last = [...logits.subarray(n * V)].sort((a, b) => b - a), scale = Math.max(...logits.map(Math.abs));
        assert.ok(
          last[0]! - last[1]! < 2 * bound * scale,
          `ids differ at ${n} where the reference's margin is ${last[0]! - last[1]!}`,
        );
      }
    },
  );
}
