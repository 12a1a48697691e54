// Quantized checkpoint fixtures: a small random Llama written in the published AWQ (GEMM) and GPTQ (v1, and v2 for
// "gptq-v2") formats, with
// the QuantizedLinear each tensor holds, for the format tests and for loading the same folder on every backend.
import { writeSafetensors } from "../../src/model/safetensors.ts";
import { EMBED, FINAL_NORM, layerNames, LINEAR_KEYS } from "../../src/model/weights.ts";
import { awqTensors } from "../../src/quant/awq.ts";
import { gptqTensors } from "../../src/quant/gptq.ts";
import { f16Tensor, type OutTensor } from "../../src/quant/tensors.ts";
import { type QuantBits, type QuantizedLinear, toF16 } from "../../src/quant/types.ts";

// A small random Llama: hidden 64, 8 heads / 4 KV heads of 8, FFN 128, 2 layers, vocab 64, tied embeddings.
export const H = 64, NH = 8, NKV = 4, D = 8, F = 128, LAYERS = 2, V = 64;
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

export type Kind = "awq" | "gptq-sym" | "gptq-asym" | "gptq-act" | "gptq-v2";

function randomLinear(
  N: number,
  K: number,
  bits: QuantBits,
  G: number,
  kind: Kind,
  r: () => number,
  shared?: Int32Array | null,
): QuantizedLinear {
  // G = -1 (GPTQ's per-channel scales): one group per row.
  const g = G > 0 ? G : K, qm = (1 << bits) - 1, nG = K / g;
  // GPTQ v1 stores zero - 1: zeros live in [1, 2^bits]; sym uses the constant 2^(bits-1). AWQ and GPTQ v2 store the
  // zero itself: [0, 2^bits - 1] (zero 0 is what v1 cannot hold).
  const zero = () =>
    kind === "awq" || kind === "gptq-v2"
      ? Math.floor(r() * (qm + 1))
      : kind === "gptq-sym"
      ? (qm + 1) / 2
      : 1 + Math.floor(r() * (qm + 1));
  let gIdx: Int32Array | null = shared ?? null;
  if (kind === "gptq-act" && !gIdx) {
    const order = Array.from({ length: K }, (_, k) => k).sort(() => r() - 0.5);
    gIdx = new Int32Array(K);
    order.forEach((k, i) => (gIdx![k] = Math.floor(i / g)));
  }
  return {
    outDim: N,
    inDim: K,
    bits,
    groupSize: g,
    q: Uint8Array.from({ length: N * K }, () => Math.floor(r() * (qm + 1))),
    scales: Float32Array.from({ length: N * nG }, () => toF16((0.2 + r()) / (qm * 4))),
    zeros: Uint16Array.from({ length: N * nG }, zero),
    gIdx,
  };
}

/** Writes a quantized checkpoint folder; returns it and the linears it holds. */
export async function writeFixture(kind: Kind, bits: QuantBits, G: number) {
  const dir = await Deno.makeTempDir({ prefix: `quant_${kind}_` });
  const r = rng(bits * 1000 + G + kind.length);
  const quantization_config = kind === "awq"
    ? { quant_method: "awq", bits, group_size: G, zero_point: true, version: "gemm" }
    : {
      quant_method: "gptq",
      bits,
      group_size: G,
      sym: kind === "gptq-sym",
      desc_act: kind === "gptq-act",
      checkpoint_format: kind === "gptq-v2" ? "gptq_v2" : "gptq",
    };
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
    const sharedGIdx = new Map<string, Int32Array>();
    tensors.push(f16Tensor(n.inputNorm, [H], vec(H, 1)), f16Tensor(n.postNorm, [H], vec(H, 1)));
    for (const key of LINEAR_KEYS) {
      const [N, K] = SHAPES[key]!;
      // GPTQ's act-order comes from the Hessian of the layer input, so linears that read the same input (q, k, v;
      // gate, up) share one g_idx, as real checkpoints do.
      const input = key === "q" || key === "k" || key === "v" ? "attn" : key === "gate" || key === "up" ? "mlp" : key;
      const ql = randomLinear(N, K, bits, G, kind, r, sharedGIdx.get(input));
      if (ql.gIdx) sharedGIdx.set(input, ql.gIdx);
      linears.set(n[key], ql);
      const base = n[key].slice(0, -".weight".length);
      tensors.push(...(kind === "awq" ? awqTensors(base, ql) : gptqTensors(base, ql, kind === "gptq-v2" ? 2 : 1)));
    }
  }
  await writeSafetensors(`${dir}/model.safetensors`, tensors);
  return { dir, linears, tensors };
}

/** The format cases the tests cover: [kind, bits, group size]. */
export const FIXTURE_CASES: readonly [Kind, QuantBits, number][] = [
  ["awq", 4, 32],
  ["awq", 4, 64],
  ["gptq-sym", 4, 32],
  ["gptq-asym", 4, 64],
  ["gptq-act", 4, 32],
  ["gptq-sym", 8, 32],
  ["gptq-asym", 8, 64],
  ["gptq-act", 8, 32],
  ["gptq-v2", 4, 64],
  ["gptq-v2", 8, 32],
  ["gptq-asym", 8, -1],
];
