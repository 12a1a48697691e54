// AWQ and GPTQ checkpoints (written by tests/helpers/quant_fixtures.ts in the published formats: AWQ GEMM int4 g32/g64,
// GPTQ v1 symmetric / asymmetric / act-order and v2 int4 and int8) on the CUDA backend: repacked at load into the
// tensor-core fragment layout, they give the logits the reference backend computes from the same checkpoint.
import assert from "node:assert/strict";
import type { Backend, Precision } from "../src/core/types.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { CudaBackend } from "../src/backends/cuda/backend.ts";
import { cudaTest, relErr } from "../src/backends/cuda/testing.ts";
import { sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { FIXTURE_CASES, writeFixture } from "./helpers/quant_fixtures.ts";

async function load<B extends Backend>(backend: B, dir: string, precision: Precision): Promise<B> {
  const ckpt = await openCheckpoint(dir);
  await backend.load(ckpt.spec, ckpt.weights, precision);
  ckpt.weights.close();
  return backend;
}

// Both backends dequantize the same stored integers; the reference computes in f32 with exact (q - z) * s, CUDA rounds
// activations to f16 at each matmul input and weights to f16(q * s + f16(-z * s)) (relative ~5e-4 each). Over two
// layers that stays well inside 3e-2 of the largest logit, while a wrong nibble order, zero or permutation moves
// logits by O(1) of their range.
for (const [kind, bits, G] of FIXTURE_CASES) {
  const name = `CudaBackend.load() runs a ${kind} int${bits} g${G} checkpoint like the reference backend`;
  cudaTest(name, async () => {
    const { dir } = await writeFixture(kind, bits, G);
    try {
      const precision: Precision = { weight: bits === 4 ? "int4" : "int8", kv: "f16", compute: "f16" };
      await using oracle = await load(new ReferenceBackend(), dir, precision);
      await using cuda = await load(await CudaBackend.create(), dir, precision);
      const greedy = { ...defaultSamplingParams(), temperature: 0 };
      for (const ids of [[1, 5, 9, 33, 2, 60, 17], [3, 14, 15, 9, 26, 53, 58, 9, 7, 9, 32, 38, 46]]) {
        const err = relErr(await sequenceLogits(cuda, ids, greedy), await sequenceLogits(oracle, ids, greedy));
        console.log(`  ${kind} int${bits} g${G}, ${ids.length} tokens: logits vs reference ${err.toExponential(2)}`);
        assert.ok(err < 3e-2, `${kind} int${bits} g${G}: logits error ${err}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
