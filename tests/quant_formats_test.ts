import assert from "node:assert/strict";
import { CheckpointError } from "../src/core/errors.ts";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { writeSafetensors } from "../src/model/safetensors.ts";
import { MemoryTensorSource } from "../src/model/memory_source.ts";
import { EMBED, FINAL_NORM, layerNames, LINEAR_KEYS } from "../src/model/weights.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { loadReferenceWeights } from "../src/backends/reference/weights.ts";
import { sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";
import { awqTensors } from "../src/quant/awq.ts";
import { gptqTensors } from "../src/quant/gptq.ts";
import { dequantize } from "../src/quant/reference.ts";
import { f16Tensor, type OutTensor } from "../src/quant/tensors.ts";
import { type QuantBits, type QuantizedLinear, toF16 } from "../src/quant/types.ts";

// A small random Llama: hidden 64, 4 heads / 2 KV heads of 16, FFN 128, 2 layers, vocab 64, tied embeddings.
const H = 64, NH = 4, NKV = 2, D = 16, F = 128, LAYERS = 2, V = 64;
const SHAPES: Record<string, [number, number]> = {
  q: [NH * D, H],
  k: [NKV * D, H],
  v: [NKV * D, H],
  o: [H, NH * D],
  gate: [F, H],
  up: [F, H],
  down: [H, F],
};

function rng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
}

type Kind = "awq" | "gptq-sym" | "gptq-asym" | "gptq-act";

function randomLinear(N: number, K: number, bits: QuantBits, G: number, kind: Kind, r: () => number): QuantizedLinear {
  const qm = (1 << bits) - 1, nG = K / G;
  // GPTQ v1 stores zero - 1: zeros live in [1, 2^bits]; sym uses the constant 2^(bits-1).
  const zero = () =>
    kind === "awq" ? Math.floor(r() * (qm + 1)) : kind === "gptq-sym" ? (qm + 1) / 2 : 1 + Math.floor(r() * (qm + 1));
  let gIdx: Int32Array | null = null;
  if (kind === "gptq-act") {
    const order = Array.from({ length: K }, (_, k) => k).sort(() => r() - 0.5);
    gIdx = new Int32Array(K);
    order.forEach((k, i) => (gIdx![k] = Math.floor(i / G)));
  }
  return {
    outDim: N,
    inDim: K,
    bits,
    groupSize: G,
    q: Uint8Array.from({ length: N * K }, () => Math.floor(r() * (qm + 1))),
    scales: Float32Array.from({ length: N * nG }, () => toF16((0.2 + r()) / (qm * 4))),
    zeros: Uint16Array.from({ length: N * nG }, zero),
    gIdx,
  };
}

/** Writes a quantized checkpoint folder; returns it and the linears it holds. */
async function writeFixture(kind: Kind, bits: QuantBits, G: number) {
  const dir = await Deno.makeTempDir({ prefix: `quant_${kind}_` });
  const r = rng(bits * 1000 + G + kind.length);
  const quantization_config = kind === "awq"
    ? { quant_method: "awq", bits, group_size: G, zero_point: true, version: "gemm" }
    : { quant_method: "gptq", bits, group_size: G, sym: kind === "gptq-sym", desc_act: kind === "gptq-act" };
  const config = {
    architectures: ["LlamaForCausalLM"],
    hidden_size: H,
    num_attention_heads: NH,
    num_key_value_heads: NKV,
    head_dim: D,
    intermediate_size: F,
    num_hidden_layers: LAYERS,
    vocab_size: V,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: true,
    torch_dtype: "float16",
    quantization_config,
  };
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  const vec = (n: number, base: number) => Float32Array.from({ length: n }, () => toF16(base + (r() - 0.5) * 0.2));
  const tensors: OutTensor[] = [f16Tensor(EMBED, [V, H], vec(V * H, 0)), f16Tensor(FINAL_NORM, [H], vec(H, 1))];
  const linears = new Map<string, QuantizedLinear>();
  for (let l = 0; l < LAYERS; l++) {
    const n = layerNames(l);
    tensors.push(f16Tensor(n.inputNorm, [H], vec(H, 1)), f16Tensor(n.postNorm, [H], vec(H, 1)));
    for (const key of LINEAR_KEYS) {
      const [N, K] = SHAPES[key]!;
      const ql = randomLinear(N, K, bits, G, kind, r);
      linears.set(n[key], ql);
      const base = n[key].slice(0, -".weight".length);
      tensors.push(...(kind === "awq" ? awqTensors(base, ql) : gptqTensors(base, ql, 1)));
    }
  }
  await writeSafetensors(`${dir}/model.safetensors`, tensors);
  return { dir, linears, tensors };
}

const CASES: [Kind, QuantBits, number][] = [
  ["awq", 4, 32],
  ["awq", 4, 64],
  ["gptq-sym", 4, 32],
  ["gptq-asym", 4, 64],
  ["gptq-act", 4, 32],
  ["gptq-sym", 8, 32],
  ["gptq-asym", 8, 64],
  ["gptq-act", 8, 32],
];

Deno.test("loadReferenceWeights() dequantizes AWQ and GPTQ checkpoints bit-exactly to (q - z) * s", async () => {
  for (const [kind, bits, G] of CASES) {
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
        const k = ql.inDim - 1, g = ql.gIdx ? ql.gIdx[k]! : Math.floor(k / G), nG = ql.inDim / G;
        assert.equal(expected[k], (ql.q[k]! - ql.zeros[g]!) * ql.scales[g]!);
        assert.deepEqual(w.layers[l]![key], expected, `${kind} int${bits} g${G}: ${n[key]}`);
        assert.equal(expected.length, ql.outDim * nG * G);
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ReferenceBackend.forward() on a GPTQ act-order checkpoint equals the f32 model of its dequantized weights", async () => {
  const { dir, linears, tensors } = await writeFixture("gptq-act", 4, 32);
  const ckpt = await openCheckpoint(dir);
  await using q = new ReferenceBackend();
  await q.load(ckpt.spec, ckpt.weights, { weight: "int4", kv: "f32", compute: "f32" });
  ckpt.weights.close();
  const mem = new MemoryTensorSource();
  for (const t of tensors) if (t.dtype === "F16") mem.add(t.name, t);
  for (const [name, ql] of linears) mem.addF32(name, [ql.outDim, ql.inDim], dequantize(ql));
  await using f = new ReferenceBackend();
  await f.load({ ...ckpt.spec, quantization: null }, mem, { weight: "f32", kv: "f32", compute: "f32" });
  const ids = [1, 5, 9, 33, 2, 60, 17];
  const greedy = { ...defaultSamplingParams(), temperature: 0 };
  assert.deepEqual(await sequenceLogits(q, ids, greedy), await sequenceLogits(f, ids, greedy));
  await Deno.remove(dir, { recursive: true });
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
