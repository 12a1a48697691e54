// Quantized checkpoints served end to end: stories260K quantized by our quantizer into a Hugging Face fp8 folder
// (`quantize --w-dtype fp8`, block 32x32: the largest that tiles its widths), an AWQ int4 g32 one, a GPTQ int8 g64
// one and a compressed-tensors pack-quantized int4 g32 one (tests/helpers/ct_fixtures.ts), each served by the real
// HTTP server on each backend with its precision picked from the checkpoint, and called through the official openai
// client. The greedy continuation must match the reference backend's on the same folder (32 ids, as the other backend
// tests require), with int8 KV on top (not on CUDA: see below), and the KV pool must return to idle. WebGPU runs
// here and in CI on lavapipe (in a worker: the quantized tensors must reach it); CUDA runs on the GPU machine and is
// skipped, with its reason, elsewhere.
import assert from "node:assert/strict";
import { probeBackend } from "../src/backends/select.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { generateSequence } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { quantizeModel, type QuantizeOptions } from "../src/quant/quantize.ts";
import type { BackendName, Precision, WeightDType } from "../src/core/types.ts";
import { STORIES_DIR } from "./helpers/models.ts";
import { assertEngineIdle, openaiClient, startTestServer } from "./helpers/server.ts";
import { writeCtStories } from "./helpers/ct_fixtures.ts";

const inCi = Deno.env.get("CI") === "true";

/** Our quantizer's options, or "ct-int4": a compressed-tensors pack-quantized int4 g32 folder (ct_fixtures.ts). */
type Format = Omit<QuantizeOptions, "model" | "out"> | "ct-int4";
const FORMATS: [WeightDType, Format][] = [
  ["fp8", { wDtype: "fp8", block: [32, 32] }],
  ["int4", { bits: 4, groupSize: 32 }],
  ["int8", { bits: 8, groupSize: 64 }],
  ["int4", "ct-int4"],
];

async function referenceGreedy(dir: string, precision: Precision, prompt: number[], n: number): Promise<number[]> {
  const ck = await openCheckpoint(dir);
  await using b = new ReferenceBackend();
  await b.load(ck.spec, ck.weights, { ...precision, compute: "f32" });
  ck.weights.close();
  const greedy = { ...defaultSamplingParams(), temperature: 0 };
  return (await generateSequence(b, prompt, greedy, { maxTokens: n, maxPositions: ck.spec.maxPositions })).ids;
}

/** Quantizes stories260K to `format`, serves it on `name` and compares three concurrent greedy completions. */
async function serveAndCompare(name: BackendName, weight: WeightDType, format: Format): Promise<void> {
  let dir: string;
  if (format === "ct-int4") dir = await writeCtStories(4, 32);
  else {
    dir = await Deno.makeTempDir({ prefix: `stories_${weight}_` });
    await quantizeModel({ model: STORIES_DIR, out: dir, ...format, quiet: true });
  }
  try {
    // CUDA runs quantized matmuls on f16 activations: on this 64-wide model, int8 KV on top of that moved a near-tie
    // at the 26th greedy id of the GPTQ int8 folder (H100), so CUDA keeps f16 KV here, as tests/cuda_quant_test.ts.
    const kvDtype = name === "cuda" ? "f16" : "int8";
    const srv = await startTestServer({ model: dir, backend: name, kvDtype, engine: { numBlocks: 64 } });
    try {
      assert.equal(srv.model.backend.name, name);
      assert.equal(srv.model.precision.weight, weight, "the precision comes from the checkpoint");
      const expected = await referenceGreedy(dir, srv.model.precision, [1], 32);
      const client = openaiClient(srv);
      const one = async () => {
        const r = await client.completions.create({
          model: srv.model.id,
          prompt: [1],
          max_tokens: expected.length,
          temperature: 0,
          // @ts-ignore: vLLM-style extension
          return_token_ids: true,
        });
        return (r.choices[0] as unknown as { token_ids: number[] }).token_ids;
      };
      for (const ids of await Promise.all([one(), one(), one()])) {
        assert.deepEqual(ids, expected, `${name} ${weight} vs reference`);
      }
      await assertEngineIdle(srv);
    } finally {
      await srv.shutdown();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const name of ["reference", "webgpu", "cuda"] as BackendName[]) {
  const probe = await probeBackend(name);
  const mustRun = name !== "cuda" && inCi;
  const skip = !probe.available && !mustRun;
  Deno.test({
    name:
      `POST /v1/completions serves fp8 / AWQ / GPTQ / compressed-tensors checkpoints on the ${name} backend like the ` +
      `reference backend${skip ? ` (skipped: ${name} cannot start here: ${probe.detail})` : ""}`,
    ignore: skip,
    async fn() {
      for (const [weight, format] of FORMATS) await serveAndCompare(name, weight, format);
    },
  });
}
