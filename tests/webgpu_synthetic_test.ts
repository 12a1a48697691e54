// WebGpuBackend against ReferenceBackend on small random models that exercise what stories260K does not:
// Qwen3-style q/k norm with q/k/v/o and MLP biases, GQA 4, head_dim != hidden/heads and yarn RoPE; Mistral-style
// sliding window with llama3 RoPE; and f16 weights on a device without shader-f16 (f32 storage fallback).
import assert from "node:assert/strict";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { createWebGpuBackend, type WebGpuOptions } from "../src/backends/webgpu/backend.ts";
import { probeWebGpu } from "../src/backends/webgpu/device.ts";
import {
  gpuTestRegistrar,
  openTestContext,
  randn,
  readF32,
  relError,
  rng,
  testSeed,
} from "../src/backends/webgpu/testing.ts";
import { fillSyntheticQuant } from "../src/backends/webgpu/synthetic.ts";
import { buildSyntheticModel } from "../src/model/synthetic.ts";
import { sequenceLogits } from "../src/engine/sequential.ts";
import { parseModelConfig } from "../src/model/config.ts";
import { MemoryTensorSource } from "../src/model/memory_source.ts";
import { expectedTensors } from "../src/model/weights.ts";
import { f16ToF32, f32ToF16 } from "../src/model/dtype.ts";
import { defaultSamplingParams } from "../src/sampling/sampler.ts";
import type { Backend, ModelSpec, Precision, StepInputs } from "../src/core/types.ts";

const probe = await probeWebGpu();
const gpuTest = gpuTestRegistrar(probe);
const SEED = testSeed();
const seedNote = `(WEBGPU_TEST_SEED=${SEED})`;
const greedy = { ...defaultSamplingParams(), temperature: 0 };

const QWEN3 = {
  architectures: ["Qwen3ForCausalLM"],
  hidden_size: 48,
  intermediate_size: 88,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  head_dim: 16,
  vocab_size: 300,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-6,
  rope_theta: 1e6,
  rope_scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 64 },
  attention_bias: true,
  mlp_bias: true,
};
const MISTRAL = {
  architectures: ["MistralForCausalLM"],
  hidden_size: 64,
  intermediate_size: 100,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  head_dim: 16,
  vocab_size: 260,
  max_position_embeddings: 128,
  sliding_window: 6,
  rope_scaling: { rope_type: "llama3", factor: 8, original_max_position_embeddings: 32 },
  tie_word_embeddings: true,
};

function randomModel(cfg: Record<string, unknown>, seed: number): { spec: ModelSpec; weights: MemoryTensorSource } {
  const spec = parseModelConfig(cfg, "synthetic config");
  const rand = rng(seed), weights = new MemoryTensorSource("synthetic");
  for (const { name, shape } of expectedTensors(spec)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = name.endsWith("norm.weight");
    const data = isNorm
      ? randn(rand, n, 0.2).map((v) => 1 + v)
      : randn(rand, n, shape.length === 1 ? 0.1 : 1.5 / Math.sqrt(shape[1]!));
    weights.addF32(name, shape, name.includes("embed") ? randn(rand, n) : data);
  }
  return { spec, weights };
}

/** A prefill of 13 tokens (GEMM path, one tile boundary) then 4 single-token decode steps (GEMV path). */
function steps(vocab: number, rand: () => number): StepInputs[] {
  const bs = 4,
    table = Int32Array.of(7, 2, 5, 0, 3),
    ids = Array.from({ length: 17 }, () => Math.floor(rand() * vocab));
  const out: StepInputs[] = [];
  for (const [a, b] of [[0, 13], [13, 14], [14, 15], [15, 16], [16, 17]] as const) {
    const positions = Int32Array.from({ length: b - a }, (_, i) => a + i);
    out.push({
      tokens: Int32Array.from(ids.slice(a, b)),
      positions,
      queryStarts: Int32Array.of(0, b - a),
      contextLens: Int32Array.of(b),
      blockTables: table,
      maxBlocksPerSeq: table.length,
      blockSize: bs,
      slots: positions.map((p) => table[Math.floor(p / bs)]! * bs + (p % bs)),
      sample: [true],
      sampling: [{ params: greedy, promptIds: ids, outputIds: [], fallbackSeed: 0 }],
      allLogits: true,
    });
  }
  return out;
}

async function compare(cfg: Record<string, unknown>, precision: Precision, opts: WebGpuOptions, bound: number) {
  const seed = SEED + Number(cfg.vocab_size);
  const { spec, weights } = randomModel(cfg, seed);
  await using gpu = await createWebGpuBackend(opts);
  await using ref = new ReferenceBackend();
  for (const b of [gpu, ref] as Backend[]) {
    await b.load(spec, weights, precision);
    b.allocateKv(8, 4);
  }
  const rand = rng(seed + 1);
  for (const [i, step] of steps(spec.vocabSize, rand).entries()) {
    const g = await gpu.forward(step), r = await ref.forward(step);
    const err = relError(g.logits!, r.logits!);
    assert.ok(err < bound, `${spec.architecture} step ${i}: max relative error ${err} >= ${bound} ${seedNote}`);
    assert.deepEqual(g.tokens, r.tokens, `${spec.architecture} step ${i}: greedy ids ${seedNote}`);
  }
}

// f32 through 2 layers with the reference's f64 sums: ~1e-6 measured; bound 1e-4 as for stories260K.
gpuTest(
  "WebGpuBackend.forward() behaviour: Qwen3-style q/k norm, biases, GQA 4 and yarn match the reference",
  () => compare(QWEN3, { weight: "f32", kv: "f32", compute: "f32" }, {}, 1e-4),
);

gpuTest(
  "WebGpuBackend.forward() behaviour: Mistral-style sliding window and llama3 RoPE match the reference",
  () => compare(MISTRAL, { weight: "f32", kv: "f32", compute: "f32" }, {}, 1e-4),
);

// Without shader-f16, f16 weights are stored as f32 copies of the f16-rounded values: the very numbers the
// reference uses in f16 mode, so the f32 bound (1e-4) applies.
gpuTest("WebGpuBackend.load() behaviour: f16 weights fall back to f32 storage without shader-f16", async () => {
  await compare(QWEN3, { weight: "f16", kv: "f32", compute: "f32" }, { allowF16: false }, 1e-4);
  await using gpu = await createWebGpuBackend({ allowF16: false });
  assert.deepEqual(gpu.supports.kv, ["f32", "int8", "int4"]);
  const { spec, weights } = randomModel(QWEN3, SEED);
  await assert.rejects(gpu.load(spec, weights, { weight: "f16", kv: "f16", compute: "f32" }), /shader-f16/);
});

gpuTest(
  "WebGpuBackend.load() behaviour: synthetic weights filled on the GPU equal the host's synthetic values",
  async () => {
    const { spec, weights } = buildSyntheticModel("synthetic:tiny:f16");
    await using gpu = await createWebGpuBackend();
    // Without shader-f16 the matrices are f32 storage filled from the host: the comparison still holds.
    await gpu.load(spec, weights, { weight: "f16", kv: "f32", compute: "f32" });
    await using ref = new ReferenceBackend();
    await ref.load(spec, weights, { weight: "f16", kv: "f32", compute: "f32" });
    const ids = [1, 5, 7, 9, 11];
    const a = await sequenceLogits(gpu, ids, greedy), b = await sequenceLogits(ref, ids, greedy);
    // Same f16 weights on both sides: the error is the f16-storage forward's (about 1e-4), far below what a
    // different weight recipe would give (order 1).
    const err = relError(a, b);
    assert.ok(err < 1e-3, `device-filled synthetic weights: relative error ${err} >= 1e-3`);
  },
);

/** The u32 hash of wgsl/synth_qfill.wgsl (and kernels/qgemm.cu qhash). */
function qhash(seed: number, i: number): number {
  let x = (Math.imul(i, 0x9e3779b1) ^ Math.imul(seed, 0x85ebca6b)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

gpuTest("fillSyntheticQuant() writes qfill's random codes and (scale, bias) pairs for int4, int8 and fp8", async () => {
  const ctx = await openTestContext();
  const N = 37, K = 200, G = 40, amp = 0.05, seed = 0x1234567;
  for (const format of [{ bits: 4, fp8: false }, { bits: 8, fp8: false }, { bits: 8, fp8: true }] as const) {
    const m = await fillSyntheticQuant(ctx, "t", { format, N, K, group: G, amp, seed });
    const Kw = Math.ceil(K / (32 / format.bits)), nG = Math.ceil(K / G);
    assert.deepEqual([m.N, m.K, m.Kw, m.nG, m.bits, m.fp8], [N, K, Kw, nG, format.bits, format.fp8]);
    const words = new Uint32Array((await readF32(ctx, m.w, N * Kw)).buffer);
    const mask = format.fp8 ? 0xbfbfbfbf : 0xffffffff;
    for (let i = 0; i < words.length; i++) assert.equal(words[i], (qhash(seed, i) & mask) >>> 0, `word ${i}`);
    const sb = await readF32(ctx, m.sb, N * nG * 2);
    const qmax = (1 << format.bits) - 1, z = format.fp8 ? 0 : (1 << (format.bits - 1)) + 1;
    const s0 = format.fp8 ? amp / 2 : (2 * amp) / qmax;
    for (let i = 0; i < N * nG; i++) {
      const u = (qhash((seed ^ 0x5bd1e995) >>> 0, i) >>> 8) / 16777216;
      const s = sb[2 * i]! / (format.fp8 ? 256 : 1), want = s0 * (0.75 + 0.5 * u);
      // f16-rounded scale (pack2x16float may round either way: within one f16 step, 2^-10 relative), an exact f16
      // value, bias = -z * s exactly.
      assert.ok(Math.abs(s - want) <= want * 2 ** -10, `pair ${i}: scale ${s}, want ~${want}`);
      assert.equal(f16ToF32(f32ToF16(s)), s, `pair ${i}: not an f16`);
      assert.equal(sb[2 * i + 1], format.fp8 ? 0 : Math.fround(-z * s), `pair ${i}: bias`);
    }
    ctx.pool.destroy(m.w);
    ctx.pool.destroy(m.sb);
  }
});

gpuTest("WebGpuBackend.load() behaviour: synthetic models get GPU-filled int4 / fp8 linears and decode", async () => {
  const { spec, weights } = buildSyntheticModel("synthetic:tiny:f16");
  // The source's tensor reads are recorded: GPU-filled linears never read (and quantize) host values.
  const reads: string[] = [];
  const src = new Proxy(weights, {
    get(t, k) {
      const v = Reflect.get(t, k, t);
      if (typeof v !== "function") return v;
      if (k === "f32" || k === "bytes") {
        return (name: string, ...a: unknown[]) => (reads.push(name), v.call(t, name, ...a));
      }
      return v.bind(t);
    },
  });
  for (const weight of ["int4", "fp8"] as const) {
    await using gpu = await createWebGpuBackend();
    let ticks = 0;
    reads.length = 0;
    await gpu.load(spec, src, { weight, group: 32, kv: "f32", compute: "f32" }, (_d, _t, name) => {
      if (name?.includes("proj")) ticks++;
    });
    assert.equal(ticks, 7 * spec.numLayers, `${weight}: one progress tick per linear`);
    assert.ok(reads.length > 0 && !reads.some((n) => n.includes("proj")), `${weight}: host reads ${reads}`);
    const logits = await sequenceLogits(gpu, [1, 5, 7, 9], greedy);
    assert.ok(logits.every(Number.isFinite), `${weight}: finite logits`);
    const max = logits.reduce((a, v) => Math.max(a, v), -Infinity), min = logits.reduce((a, v) => Math.min(a, v));
    assert.ok(max - min > 1e-3, `${weight}: logits vary (${min}..${max})`);
  }
});
