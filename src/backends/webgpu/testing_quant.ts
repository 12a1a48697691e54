// Test support for tests/webgpu_quant_test.ts and tests/webgpu_fp8_test.ts: reading back the int8/int4 KV cache, and
// writing small AWQ / GPTQ / fp8 checkpoints. Not used by the backend itself.
import { writeSafetensors } from "../../model/safetensors.ts";
import { EMBED, FINAL_NORM, layerNames, LINEAR_KEYS } from "../../model/weights.ts";
import { f16ToF32 } from "../../model/dtype.ts";
import { awqTensors } from "../../quant/awq.ts";
import { gptqTensors } from "../../quant/gptq.ts";
import { quantizeRtn } from "../../quant/reference.ts";
import { quantizeFp8 } from "../../quant/fp8.ts";
import { fp8Tensors } from "../../quant/fp8_checkpoint.ts";
import { f16Tensor, type OutTensor } from "../../quant/tensors.ts";
import type { QuantBits } from "../../quant/types.ts";
import { randn, rng } from "./testing.ts";

/** One layer's int8/int4 cache read back and dequantized (wgsl/kv_quant.wgsl layout) into ops.ts's
 * [numBlocks, blockSize, kvHeads, d] f32. */
export function decodeQuantCache(
  words: Uint32Array,
  bits: QuantBits,
  numBlocks: number,
  bs: number,
  nkv: number,
  d: number,
) {
  const vpw = 32 / bits, dw = d / vpw, mask = (1 << bits) - 1;
  const x = new Float32Array(numBlocks * bs * nkv * d);
  for (let b = 0; b < numBlocks; b++) {
    for (let h = 0; h < nkv; h++) {
      const base = (b * nkv + h) * bs * (dw + 1);
      for (let o = 0; o < bs; o++) {
        const sz = words[base + bs * dw + o]!, scale = f16ToF32(sz & 0xffff), zero = f16ToF32(sz >>> 16);
        for (let i = 0; i < d; i++) {
          const q = (words[base + o * dw + Math.floor(i / vpw)]! >>> (bits * (i % vpw))) & mask;
          x[((b * bs + o) * nkv + h) * d + i] = Math.fround(q * scale + zero);
        }
      }
    }
  }
  return x;
}

/** Scales of a test fp8 checkpoint: weight_scale_inv per block [bn, bk], or weight_scale per channel / tensor. */
export type Fp8Scales = { block: [number, number] } | "channel" | "tensor";

/** A small random Llama (hidden 64, 4 heads / 2 KV heads of 16, FFN 128, 2 layers, vocab 64) saved as an AWQ or
 * GPTQ (v1) checkpoint of RTN-quantized random weights. Returns its folder. */
export function writeQuantCheckpoint(method: "awq" | "gptq", bits: QuantBits, G: number, seed: number) {
  const rand = rng(seed);
  const quantization_config = method === "awq"
    ? { quant_method: "awq", bits, group_size: G, zero_point: true, version: "gemm" }
    : { quant_method: "gptq", bits, group_size: G, sym: false, desc_act: false };
  return writeTinyLlama(method, quantization_config, rand, (weightName, N, K) => {
    const base = weightName.slice(0, -".weight".length);
    const ql = quantizeRtn(randn(rand, N * K, 0.2), N, K, bits, G, { minZero: method === "awq" ? 0 : 1 });
    return method === "awq" ? awqTensors(base, ql) : gptqTensors(base, ql, 1);
  });
}

/** The same small Llama as a Hugging Face "fp8" checkpoint (F8_E4M3 weights, quantizeFp8 of random values, F32
 * scales as `scales` says). Returns its folder. */
export function writeFp8Checkpoint(scales: Fp8Scales, seed: number) {
  const rand = rng(seed), block = typeof scales === "object" ? scales.block : null;
  const quantization_config = { quant_method: "fp8", fmt: "e4m3", activation_scheme: "dynamic" };
  const config = block ? { ...quantization_config, weight_block_size: block } : quantization_config;
  return writeTinyLlama("fp8", config, rand, (weightName, N, K) => {
    const w = randn(rand, N * K, 0.2);
    if (block) return fp8Tensors(weightName, quantizeFp8(w, N, K, block[1], block[0]), block[0]);
    const ql = quantizeFp8(w, N, K, K, scales === "tensor" ? N : 1); // one group per row (of one shared scale)
    const s = scales === "tensor" ? ql.scales.slice(0, 1) : ql.scales;
    return [
      { name: weightName, dtype: "F8_E4M3", shape: [N, K], data: ql.q },
      {
        name: `${weightName.slice(0, -".weight".length)}.weight_scale`,
        dtype: "F32",
        shape: scales === "tensor" ? [] : [N],
        data: new Uint8Array(s.buffer, s.byteOffset, s.byteLength),
      },
    ];
  });
}

/** Writes the small random Llama with each linear's tensors from `linear`; returns the folder. */
async function writeTinyLlama(
  tag: string,
  quantization_config: Record<string, unknown>,
  rand: () => number,
  linear: (weightName: string, N: number, K: number) => OutTensor[],
): Promise<string> {
  const H = 64, NH = 4, NKV = 2, D = 16, F = 128, V = 64, LAYERS = 2;
  const dir = await Deno.makeTempDir({ prefix: `webgpu_${tag}_` });
  const config = {
    architectures: ["LlamaForCausalLM"],
    ...{ hidden_size: H, num_attention_heads: NH, num_key_value_heads: NKV, head_dim: D, intermediate_size: F },
    ...{ num_hidden_layers: LAYERS, vocab_size: V, max_position_embeddings: 64, rms_norm_eps: 1e-5 },
    ...{ tie_word_embeddings: true, torch_dtype: "float16", quantization_config },
  };
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  const vec = (n: number, base: number) => Float32Array.from({ length: n }, () => base + (rand() - 0.5) * 0.2);
  const tensors: OutTensor[] = [f16Tensor(EMBED, [V, H], randn(rand, V * H)), f16Tensor(FINAL_NORM, [H], vec(H, 1))];
  const shapes: Record<string, [number, number]> = {
    ...{ q: [NH * D, H], k: [NKV * D, H], v: [NKV * D, H], o: [H, NH * D] },
    ...{ gate: [F, H], up: [F, H], down: [H, F] },
  };
  for (let l = 0; l < LAYERS; l++) {
    const n = layerNames(l);
    tensors.push(f16Tensor(n.inputNorm, [H], vec(H, 1)), f16Tensor(n.postNorm, [H], vec(H, 1)));
    for (const key of LINEAR_KEYS) tensors.push(...linear(n[key], ...shapes[key]!));
  }
  await writeSafetensors(`${dir}/model.safetensors`, tensors);
  return dir;
}
