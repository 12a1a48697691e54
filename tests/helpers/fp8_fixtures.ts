// FP8 E4M3 checkpoint fixtures: a small random Llama written in the published Hugging Face "fp8" layouts, with the
// raw codes and scales of every linear and its expected dequantized weight computed here, independently of
// src/quant/fp8.ts's decoder (e4m3Value below builds the f32 bits).
//   "block":   .weight_scale_inv F32 [ceil(N / 16), ceil(K / 32)], weight_block_size [16, 32]: no width of the model is
//              a multiple of both (N 40 / 8 / 88, K 40 / 88), so partial blocks appear in both directions.
//   "tensor":  .weight_scale per tensor, [] in layer 0 and [1] (BF16) in layer 1, plus an ignored .input_scale
//              (activation_scheme "static", as per-tensor fp8 exporters write).
//   "channel": .weight_scale per output channel, [N] in layer 0 and [N, 1] in layer 1.
// Scales are arbitrary f32 values (not on the fp8Scale grid), so the reader's rounding is part of what is checked.
import { writeSafetensors } from "../../src/model/safetensors.ts";
import { EMBED, FINAL_NORM, layerNames, LINEAR_KEYS } from "../../src/model/weights.ts";
import { fp8Scale } from "../../src/quant/fp8.ts";
import { f16Tensor, type OutTensor } from "../../src/quant/tensors.ts";
import { toF16 } from "../../src/quant/types.ts";
import { mulberry32 } from "../../src/core/prng.ts";

// hidden 40, 5 heads / 1 KV head of 8, FFN 88, 2 layers, vocab 64, tied embeddings.
export const FP8_H = 40, FP8_NH = 5, FP8_NKV = 1, FP8_D = 8, FP8_F = 88, FP8_LAYERS = 2, FP8_V = 64;
export const FP8_BLOCK: readonly [number, number] = [16, 32];
export const FP8_SHAPES: Record<string, [number, number]> = {
  q: [FP8_NH * FP8_D, FP8_H],
  k: [FP8_NKV * FP8_D, FP8_H],
  v: [FP8_NKV * FP8_D, FP8_H],
  o: [FP8_H, FP8_NH * FP8_D],
  gate: [FP8_F, FP8_H],
  up: [FP8_F, FP8_H],
  down: [FP8_H, FP8_F],
};

export type Fp8Kind = "block" | "tensor" | "channel";

/** e4m3fn code → value from the f32 bit pattern (NaN for 0x7f / 0xff): an independent decoder for the tests. */
export function e4m3Value(code: number): number {
  const sign = (code & 0x80) << 24, e = (code >> 3) & 0xf, m = code & 7;
  if ((code & 0x7f) === 0x7f) return NaN;
  const bits = new Uint32Array(1), f = new Float32Array(bits.buffer);
  if (e > 0) bits[0] = (sign | ((e - 7 + 127) << 23) | (m << 20)) >>> 0; // 1.mmm x 2^(e - 7)
  else {
    bits[0] = m === 0 ? sign >>> 0 : (sign | ((127 - 9) << 23)) >>> 0; // 2^-9 (or +-0) ...
    return m === 0 ? f[0]! : f[0]! * m; // ... times m: subnormals m x 2^-9
  }
  return f[0]!;
}

/** A uniformly random finite e4m3 code (0x00..0xff without the NaNs 0x7f / 0xff). */
export function randomCode(rand: () => number): number {
  const c = Math.floor(rand() * 254);
  return c >= 0x7f ? c + 1 : c;
}

export interface Fp8FixtureLinear {
  readonly N: number;
  readonly K: number;
  /** [N, K] e4m3 codes as stored */
  readonly codes: Uint8Array;
  /** the stored scale values (f32; BF16-exact where stored as BF16) and their shape */
  readonly scales: Float32Array;
  readonly scaleShape: readonly number[];
  /** scale of element (n, k) as the format defines it, before the reader's rounding to the kernel grid */
  scaleAt(n: number, k: number): number;
}

/** W[n, k] = e4m3(q[n, k]) * fp8Scale(scale of (n, k)): what a reader must produce, exactly. */
export function fp8Expected(l: Fp8FixtureLinear): Float32Array {
  const out = new Float32Array(l.N * l.K);
  for (let n = 0; n < l.N; n++) {
    for (let k = 0; k < l.K; k++) out[n * l.K + k] = e4m3Value(l.codes[n * l.K + k]!) * fp8Scale(l.scaleAt(n, k));
  }
  return out;
}

const bf16Exact = (x: number) => {
  const f = new Float32Array([x]);
  new Uint32Array(f.buffer)[0]! &= 0xffff0000;
  return f[0]!;
};

/** Writes an fp8 checkpoint folder of `kind`; returns it, its tensors and its linears by weight name. */
export async function writeFp8Fixture(kind: Fp8Kind, seed = 1) {
  const dir = await Deno.makeTempDir({ prefix: `fp8_${kind}_` });
  const r = mulberry32(seed + kind.length);
  const [bn, bk] = FP8_BLOCK;
  const quantization_config = kind === "block"
    ? { quant_method: "fp8", fmt: "e4m3", activation_scheme: "dynamic", weight_block_size: [bn, bk] }
    : { quant_method: "fp8", activation_scheme: kind === "tensor" ? "static" : "dynamic" };
  const config = {
    architectures: ["LlamaForCausalLM"],
    hidden_size: FP8_H,
    num_attention_heads: FP8_NH,
    num_key_value_heads: FP8_NKV,
    head_dim: FP8_D,
    intermediate_size: FP8_F,
    num_hidden_layers: FP8_LAYERS,
    vocab_size: FP8_V,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
    quantization_config,
  };
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  const vec = (n: number, base: number) => Float32Array.from({ length: n }, () => toF16(base + (r() - 0.5) * 0.2));
  const tensors: OutTensor[] = [
    f16Tensor(EMBED, [FP8_V, FP8_H], vec(FP8_V * FP8_H, 0)),
    f16Tensor(FINAL_NORM, [FP8_H], vec(FP8_H, 1)),
  ];
  const linears = new Map<string, Fp8FixtureLinear>();
  // Any finite code: both signs, zeros, subnormals and +-448 included.
  const code = () => randomCode(r);
  for (let l = 0; l < FP8_LAYERS; l++) {
    const n = layerNames(l);
    tensors.push(f16Tensor(n.inputNorm, [FP8_H], vec(FP8_H, 1)), f16Tensor(n.postNorm, [FP8_H], vec(FP8_H, 1)));
    for (const key of LINEAR_KEYS) {
      const [N, K] = FP8_SHAPES[key]!;
      const codes = Uint8Array.from({ length: N * K }, code);
      // Scales near 1 / (448 * 8), as max |w| / 448 gives for weights of ~0.1; one block or channel exactly 0.
      const scale = () => (0.5 + r()) / 4096;
      const base = n[key].slice(0, -".weight".length);
      let lin: Fp8FixtureLinear;
      tensors.push({ name: n[key], dtype: "F8_E4M3", shape: [N, K], data: codes });
      if (kind === "block") {
        const rows = Math.ceil(N / bn), cols = Math.ceil(K / bk);
        const scales = Float32Array.from({ length: rows * cols }, scale);
        if (key === "up") scales[1] = 0;
        lin = {
          N,
          K,
          codes,
          scales,
          scaleShape: [rows, cols],
          scaleAt: (i, j) => scales[Math.floor(i / bn) * cols + Math.floor(j / bk)]!,
        };
        tensors.push({ name: `${base}.weight_scale_inv`, dtype: "F32", shape: [rows, cols], data: bytes(scales) });
      } else if (kind === "tensor") {
        const scales = Float32Array.of(bf16Exact(scale()));
        const shape = l === 0 ? [] : [1];
        lin = { N, K, codes, scales, scaleShape: shape, scaleAt: () => scales[0]! };
        const data = l === 0 ? bytes(scales) : bf16Bytes(scales);
        tensors.push({ name: `${base}.weight_scale`, dtype: l === 0 ? "F32" : "BF16", shape, data });
        tensors.push({ name: `${base}.input_scale`, dtype: "F32", shape: [], data: bytes(Float32Array.of(0.02)) });
      } else {
        const scales = Float32Array.from({ length: N }, scale);
        if (key === "gate") scales[2] = 0;
        const shape = l === 0 ? [N] : [N, 1];
        lin = { N, K, codes, scales, scaleShape: shape, scaleAt: (i) => scales[i]! };
        tensors.push({ name: `${base}.weight_scale`, dtype: "F32", shape, data: bytes(scales) });
      }
      linears.set(n[key], lin);
    }
  }
  await writeSafetensors(`${dir}/model.safetensors`, tensors);
  return { dir, tensors, linears };
}

function bytes(x: Float32Array): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

function bf16Bytes(x: Float32Array): Uint8Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length), out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = u[i]! >>> 16;
  return new Uint8Array(out.buffer);
}
