// The server on each GPU backend: the openai client gets the same greedy continuation as the reference backend at
// the backend's precision, over concurrent and streaming requests, and the KV pool returns to idle.
// WebGPU runs here and in CI on lavapipe (CI fails if it is missing); CUDA runs on the GPU machine and is skipped,
// with its reason, elsewhere.
import assert from "node:assert/strict";
import { probeBackend } from "../src/backends/select.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { generateSequence } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import type { BackendName, Precision } from "../src/core/types.ts";
import { STORIES_DIR } from "./helpers/models.ts";
import { openaiClient, startTestServer } from "./helpers/server.ts";

const inCi = Deno.env.get("CI") === "true";

/** Greedy ids of the reference backend at the same precision as the backend under test. */
async function referenceGreedy(precision: Precision, prompt: number[], n: number): Promise<number[]> {
  const ck = await openCheckpoint(STORIES_DIR);
  await using b = new ReferenceBackend();
  await b.load(ck.spec, ck.weights, { ...precision, compute: "f32" });
  ck.weights.close();
  const greedy = { ...defaultSamplingParams(), temperature: 0 };
  return (await generateSequence(b, prompt, greedy, { maxTokens: n, maxPositions: ck.spec.maxPositions })).ids;
}

for (const name of ["webgpu", "cuda"] as BackendName[]) {
  const probe = await probeBackend(name);
  const mustRun = name === "webgpu" && inCi;
  const skip = !probe.available && !mustRun;
  Deno.test({
    name: `POST /v1/completions on the ${name} backend matches the reference backend's greedy ids${
      skip ? ` (skipped: ${name} cannot start here: ${probe.detail})` : ""
    }`,
    ignore: skip,
    async fn() {
      // f32 matmul inputs on CUDA: stories260K is so small that bf16-rounded activations alone move greedy ids
      // within 32 tokens (the half default is what serving uses; tests/cuda_model_test.ts bounds it).
      const srv = await startTestServer({
        stories: true,
        backend: name,
        activations: "f32",
        engine: { numBlocks: 64, blockSize: 16 },
      });
      try {
        assert.equal(srv.model.backend.name, name);
        const expected = await referenceGreedy(srv.model.precision, [1], 64);
        const client = openaiClient(srv);
        const model = srv.model.id;
        const one = async () => {
          const r = await client.completions.create({
            model,
            prompt: [1],
            max_tokens: expected.length,
            temperature: 0,
            // @ts-ignore: vLLM-style extension
            return_token_ids: true,
          });
          return (r.choices[0] as unknown as { token_ids: number[] }).token_ids;
        };
        const outs = await Promise.all([one(), one(), one(), one()]);
        // bf16 weights on two different machines can round differently where two logits nearly tie; the first
        // 32 ids must agree (the issue's bar), and all four requests must agree with each other.
        for (const ids of outs) {
          assert.deepEqual(
            ids.slice(0, 32),
            expected.slice(0, 32),
            `${name} vs reference (${srv.model.precision.weight})`,
          );
          assert.deepEqual(ids, outs[0]);
        }
        const stream = await client.completions.create({
          model,
          prompt: [1, ...expected.slice(0, 10)],
          max_tokens: 20,
          temperature: 0,
          stream: true,
          stream_options: { include_usage: true },
        });
        let usage = 0;
        for await (const c of stream) if (c.usage) usage = c.usage.completion_tokens;
        assert.equal(usage, 20);
        assert.equal(srv.engine.numRequests, 0);
        assert.equal(srv.engine.kv.numFreeBlocks(), 64);
        srv.engine.kv.checkIntegrity();
      } finally {
        await srv.shutdown();
      }
    },
  });
}
