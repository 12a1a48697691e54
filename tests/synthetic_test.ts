import assert from "node:assert/strict";
import { buildSyntheticModel, syntheticValue, tensorStream } from "../src/model/synthetic.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { generateSequence } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";

Deno.test("buildSyntheticModel() gives Llama-3-8B's shapes", () => {
  const { spec, weights } = buildSyntheticModel("synthetic:llama3-8b");
  assert.equal(spec.hiddenSize, 4096);
  assert.equal(spec.numKvHeads, 8);
  assert.equal(spec.headDim, 128);
  assert.equal(weights.dtype, "BF16");
  assert.deepEqual(weights.info("model.layers.31.mlp.down_proj.weight").shape, [4096, 14336]);
  const bytes = weights.names().reduce((a, n) => a + weights.info(n).byteLength, 0);
  assert.ok(Math.abs(bytes / 1e9 - 16.06) < 0.05, `about 16 GB of bf16 weights, got ${bytes / 1e9}`);
  assert.throws(() => buildSyntheticModel("synthetic:gpt5"), /unknown synthetic model "gpt5"/);
});

Deno.test("syntheticValue() is deterministic, non-zero and within its amplitude", () => {
  const s = tensorStream("model.layers.0.self_attn.q_proj.weight");
  let sum = 0, sumSq = 0;
  const n = 100000;
  for (let i = 0; i < n; i++) {
    const v = syntheticValue(7, s, i, 0.5);
    assert.ok(v !== 0 && Math.abs(v) < 0.5);
    assert.equal(v, syntheticValue(7, s, i, 0.5));
    sum += v;
    sumSq += v * v;
  }
  assert.ok(Math.abs(sum / n) < 0.01, "mean near 0");
  assert.ok(Math.abs(sumSq / n - 0.25 / 3) < 0.005, "variance of uniform(-0.5, 0.5)");
  assert.notEqual(syntheticValue(7, s, 1, 1), syntheticValue(8, s, 1, 1), "the seed matters");
});

Deno.test("ReferenceBackend runs synthetic:tiny end to end", async () => {
  const { spec, weights } = buildSyntheticModel("synthetic:tiny");
  await using backend = new ReferenceBackend();
  await backend.load(spec, weights, { weight: "f32", kv: "f32", compute: "f32" });
  const greedy = { ...defaultSamplingParams(), temperature: 0 };
  const a = await generateSequence(backend, [1, 5, 9], greedy, { maxTokens: 8, maxPositions: spec.maxPositions });
  const b = await generateSequence(backend, [1, 5, 9], greedy, { maxTokens: 8, maxPositions: spec.maxPositions });
  assert.equal(a.ids.length, 8);
  assert.deepEqual(a.ids, b.ids);
  assert.ok(a.ids.every((id) => id >= 0 && id < spec.vocabSize));
});
