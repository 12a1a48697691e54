// The oracle's own checks: RoPE against complex rotation, paged attention against dense attention, and the
// forward pass on Qwen2 (biases) and Qwen3 (q/k norms) shaped checkpoints written by the test.
import assert from "node:assert/strict";
import * as ops from "../src/backends/reference/ops.ts";
import { ropeFrequencies, ropeTables } from "../src/model/rope.ts";
import { parseModelConfig } from "../src/model/config.ts";
import { MemoryTensorSource } from "../src/model/memory_source.ts";
import { expectedTensors } from "../src/model/weights.ts";
import { ReferenceBackend } from "../src/backends/reference/backend.ts";
import { generateSequence, sequenceLogits } from "../src/engine/sequential.ts";
import { defaultSamplingParams } from "../src/sampling/params.ts";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 * 2 - 1;
  };
}

const randArray = (n: number, r: () => number) => Float32Array.from({ length: n }, r);

Deno.test("rope() rotates each half-split pair by position * inv_freq", () => {
  const r = rng(1);
  const d = 16, heads = 3;
  const spec = parseModelConfig({
    architectures: ["LlamaForCausalLM"],
    hidden_size: 48,
    intermediate_size: 64,
    num_hidden_layers: 1,
    num_attention_heads: 3,
    vocab_size: 10,
    rope_theta: 500000,
    rope_scaling: { rope_type: "llama3", factor: 8, original_max_position_embeddings: 64 },
    max_position_embeddings: 512,
  });
  const { cos, sin } = ropeTables(spec.rope, d, 512);
  const inv = ropeFrequencies(spec.rope, d).invFreq;
  const positions = Int32Array.of(0, 7, 300);
  const x = randArray(positions.length * heads * d, r);
  const y = x.slice();
  ops.rope(y, positions, heads, d, cos, sin);
  for (let t = 0; t < positions.length; t++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < d / 2; i++) {
        const o = (t * heads + h) * d;
        const a = positions[t]! * inv[i]!;
        const re = x[o + i]! * Math.cos(a) - x[o + d / 2 + i]! * Math.sin(a);
        const im = x[o + d / 2 + i]! * Math.cos(a) + x[o + i]! * Math.sin(a);
        assert.ok(Math.abs(y[o + i]! - re) < 2e-4 && Math.abs(y[o + d / 2 + i]! - im) < 2e-4, `t${t} h${h} i${i}`);
      }
    }
  }
});

Deno.test("pagedAttention() equals dense causal attention through scattered block tables with GQA", () => {
  const r = rng(2);
  for (const [numHeads, kvHeads, d, bs] of [[8, 2, 8, 3], [4, 4, 16, 5], [8, 1, 8, 4]] as const) {
    const lens = [7, 1, 13];
    const maxBlocks = Math.ceil(Math.max(...lens) / bs);
    const numBlocks = lens.length * maxBlocks + 2;
    const perm = Array.from({ length: numBlocks }, (_, i) => i).sort(() => r());
    const tables = new Int32Array(lens.length * maxBlocks).fill(-1);
    const row = kvHeads * d;
    const kCache = randArray(numBlocks * bs * row, r), vCache = randArray(numBlocks * bs * row, r);
    const dense: { k: Float32Array; v: Float32Array }[] = [];
    let next = 0;
    lens.forEach((len, b) => {
      for (let j = 0; j < Math.ceil(len / bs); j++) tables[b * maxBlocks + j] = perm[next++]!;
      const k = new Float32Array(len * row), v = new Float32Array(len * row);
      for (let p = 0; p < len; p++) {
        const slot = tables[b * maxBlocks + Math.floor(p / bs)]! * bs + (p % bs);
        k.set(kCache.subarray(slot * row, (slot + 1) * row), p * row);
        v.set(vCache.subarray(slot * row, (slot + 1) * row), p * row);
      }
      dense.push({ k, v });
    });
    // Every sequence queries its last 2 positions (or 1).
    const positions: number[] = [], starts = [0];
    lens.forEach((len) => {
      for (let p = Math.max(0, len - 2); p < len; p++) positions.push(p);
      starts.push(positions.length);
    });
    const q = randArray(positions.length * numHeads * d, r);
    const out = ops.pagedAttention({
      q,
      kCache,
      vCache,
      positions: Int32Array.from(positions),
      queryStarts: Int32Array.from(starts),
      blockTables: tables,
      maxBlocksPerSeq: maxBlocks,
      blockSize: bs,
      numHeads,
      kvHeads,
      headDim: d,
      scale: 1 / Math.sqrt(d),
      slidingWindow: null,
    });
    for (let b = 0; b < lens.length; b++) {
      for (let t = starts[b]!; t < starts[b + 1]!; t++) {
        for (let h = 0; h < numHeads; h++) {
          const kvh = Math.floor(h / (numHeads / kvHeads));
          const s: number[] = [];
          for (let j = 0; j <= positions[t]!; j++) {
            let dot = 0;
            for (let i = 0; i < d; i++) dot += q[(t * numHeads + h) * d + i]! * dense[b]!.k[j * row + kvh * d + i]!;
            s.push(dot / Math.sqrt(d));
          }
          const m = Math.max(...s), e = s.map((x) => Math.exp(x - m)), z = e.reduce((a, c) => a + c, 0);
          for (let i = 0; i < d; i++) {
            const want = e.reduce((a, w, j) => a + (w / z) * dense[b]!.v[j * row + kvh * d + i]!, 0);
            const got = out[(t * numHeads + h) * d + i]!;
            assert.ok(
              Math.abs(got - want) < 1e-5,
              `heads ${numHeads}/${kvHeads} seq ${b} t ${t} h ${h}: ${got} vs ${want}`,
            );
          }
        }
      }
    }
  }
});

function randomCheckpoint(arch: string, extra: Record<string, unknown>) {
  const spec = parseModelConfig({
    architectures: [arch],
    hidden_size: 32,
    intermediate_size: 44,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    vocab_size: 50,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    ...extra,
  });
  const r = rng(arch.length * 7 + 3);
  const src = new MemoryTensorSource(arch);
  for (const t of expectedTensors(spec)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    src.addF32(
      t.name,
      t.shape,
      t.shape.length === 1 ? Float32Array.from({ length: n }, () => 1 + 0.2 * r()) : randArray(n, () => r() * 0.3),
      "BF16",
    );
  }
  return { spec, src };
}

Deno.test("ReferenceBackend runs Qwen2 (q/k/v biases) and Qwen3 (q/k norms) checkpoints in bf16", async () => {
  const greedy = { ...defaultSamplingParams(), temperature: 0 };
  for (
    const [arch, extra, needed] of [
      ["Qwen2ForCausalLM", { tie_word_embeddings: true }, "model.layers.1.self_attn.k_proj.bias"],
      ["Qwen3ForCausalLM", {}, "model.layers.1.self_attn.k_norm.weight"],
    ] as const
  ) {
    const { spec, src } = randomCheckpoint(arch, extra);
    assert.ok(src.has(needed), `${arch} has ${needed}`);
    await using b = new ReferenceBackend();
    await b.load(spec, src, { weight: "bf16", kv: "f32", compute: "f32" });
    const ids = [1, 7, 3, 9, 12];
    const logits = await sequenceLogits(b, ids, greedy);
    assert.equal(logits.length, ids.length * spec.vocabSize);
    assert.ok(logits.every(Number.isFinite));
    // Incremental decode gives the same next token as the full pass's last row.
    const gen = await generateSequence(b, ids, greedy, { maxTokens: 1, maxPositions: spec.maxPositions });
    const last = logits.subarray((ids.length - 1) * spec.vocabSize);
    assert.equal(gen.ids[0], last.indexOf(Math.max(...last)));
    // The architecture-specific tensors matter: zeroing them changes the logits.
    const { src: src2 } = randomCheckpoint(arch, extra);
    src2.addF32(needed, src2.info(needed).shape, new Float32Array(spec.headDim * (needed.endsWith("bias") ? 2 : 1)));
    await using b2 = new ReferenceBackend();
    await b2.load(spec, src2, { weight: "bf16", kv: "f32", compute: "f32" });
    const logits2 = await sequenceLogits(b2, ids, greedy);
    assert.ok(logits2.some((x, i) => Math.abs(x - logits[i]!) > 1e-4), `${needed} is used`);
  }
});
