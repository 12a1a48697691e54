import assert from "node:assert/strict";
import { assertForwardEqualsDense } from "./helpers/quant_forward.ts";
import { CheckpointError } from "../src/core/errors.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { writeSafetensors } from "../src/model/safetensors.ts";
import { FIXTURE_CASES, LAYERS, writeFixture } from "./helpers/quant_fixtures.ts";
import { layerNames, LINEAR_KEYS } from "../src/model/weights.ts";
import { loadReferenceWeights } from "../src/backends/reference/weights.ts";
import { dequantize } from "../src/quant/reference.ts";
import type { OutTensor } from "../src/quant/tensors.ts";

Deno.test("loadReferenceWeights() dequantizes AWQ and GPTQ checkpoints bit-exactly to (q - z) * s", async () => {
  for (const [kind, bits, G] of FIXTURE_CASES) {
    const { dir, linears } = await writeFixture(kind, bits, G);
    const ckpt = await openCheckpoint(dir);
    assert.equal(ckpt.spec.quantization?.bits, bits);
    const w = await loadReferenceWeights(ckpt.spec, ckpt.weights, bits === 4 ? "int4" : "int8");
    ckpt.weights.close();
    for (let l = 0; l < LAYERS; l++) {
      const n = layerNames(l);
      for (const key of LINEAR_KEYS) {
        const ql = linears.get(n[key])!;
        const expected = dequantize(ql);
        // Independent check of the math on one element per group: (q - z) * s.
        const G1 = ql.groupSize, k = ql.inDim - 1, g = ql.gIdx ? ql.gIdx[k]! : Math.floor(k / G1), nG = ql.inDim / G1;
        assert.equal(G1, G > 0 ? G : ql.inDim);
        assert.equal(expected[k], (ql.q[k]! - ql.zeros[g]!) * ql.scales[g]!);
        assert.deepEqual(w.layers[l]![key], expected, `${kind} int${bits} g${G}: ${n[key]}`);
        assert.equal(expected.length, ql.outDim * nG * G1);
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ReferenceBackend.forward() on a GPTQ act-order checkpoint equals the f32 model of its dequantized weights", async () => {
  const { dir, linears, tensors } = await writeFixture("gptq-act", 4, 32);
  const dense = [...linears].map(([name, ql]) => [name, [ql.outDim, ql.inDim], dequantize(ql)] as const);
  await assertForwardEqualsDense(dir, "int4", tensors, dense);
});

Deno.test("loadReferenceWeights() rejects a mis-shaped or corrupt quantized tensor with a CheckpointError naming it", async () => {
  const { dir, tensors } = await writeFixture("awq", 4, 32);
  const name = "model.layers.1.mlp.up_proj.qweight";
  const bad = (mut: (t: OutTensor) => OutTensor) => tensors.map((t) => (t.name === name ? mut(t) : t));
  const variants: [string, OutTensor[], RegExp][] = [
    ["shape", bad((t) => ({ ...t, shape: [t.shape[1]!, t.shape[0]!] })), /shape/],
    ["dtype", bad((t) => ({ ...t, dtype: "F32" })), /dtype F32/],
    [
      "scales",
      tensors.map((t) =>
        t.name === "model.layers.1.mlp.up_proj.scales" ? { ...t, data: new Uint8Array(t.data.length).fill(0xff) } : t
      ),
      /scale NaN/,
    ],
  ];
  for (const [what, ts, msg] of variants) {
    await writeSafetensors(`${dir}/model.safetensors`, ts);
    const ckpt = await openCheckpoint(dir);
    await assert.rejects(() => loadReferenceWeights(ckpt.spec, ckpt.weights, "int4"), (e: unknown) => {
      assert.ok(e instanceof CheckpointError, `${what}: ${e}`);
      assert.match(e.message, msg);
      assert.match(e.message, /model\.safetensors/);
      assert.ok(e.tensor?.startsWith("model.layers.1.mlp.up_proj."), `${what}: tensor ${e.tensor}`);
      return true;
    });
    ckpt.weights.close();
  }
  await Deno.remove(dir, { recursive: true });
});
