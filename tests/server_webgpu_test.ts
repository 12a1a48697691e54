// The server on the WebGPU backend (lavapipe here and in CI): the openai client gets the same greedy continuation
// as transformers, with concurrent streams, and the KV pool returns to idle.
import assert from "node:assert/strict";
import { probeBackend } from "../src/backends/select.ts";
import { readReferenceLogits } from "./helpers/models.ts";
import { openaiClient, startTestServer } from "./helpers/server.ts";

const probe = await probeBackend("webgpu");
const inCi = Deno.env.get("CI") === "true";
const skip = !probe.available && !inCi;

Deno.test({
  name: `POST /v1/completions on the WebGPU backend reproduces stories260K's greedy continuation${
    skip ? ` (skipped: no WebGPU adapter: ${probe.detail})` : ""
  }`,
  ignore: skip,
  async fn() {
    const ref = await readReferenceLogits();
    const expected = ref.greedy_from_bos.slice(1);
    const srv = await startTestServer({ stories: true, backend: "webgpu", engine: { numBlocks: 64, blockSize: 16 } });
    try {
      assert.equal(srv.model.backend.name, "webgpu");
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
      for (const ids of outs) assert.deepEqual(ids, expected);
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
