// Hugging Face "fp8" checkpoints (quantization_config.quant_method "fp8", as transformers' FineGrainedFP8 and vLLM read
// them). Tensors of one linear, for weight name `model.layers.0.self_attn.q_proj.weight` [N, K]:
//   .weight            F8_E4M3 [N, K]     e4m3 codes
//   .weight_scale_inv  F32 (BF16 / F16)  [ceil(N / bn), ceil(K / bk)] with weight_block_size [bn, bk]:
//                      W[n, k] = e4m3(q[n, k]) * scale_inv[n / bn, k / bk] (the "inverse" of the quantizer's scale)
//   .weight_scale      without a block size: [] or [1] (per tensor) or [N] / [N, 1] (per output channel)
// compressed-tensors "float-quantized" FP8 (config.ts parseCompressedTensors) names every scale .weight_scale: [] / [1]
// (tensor), [N, 1] (channel), [ceil(N / bn), ceil(K / bk)] (block) or [N, ceil(K / G)] (group: a block [1, G]).
// Any .input_scale is ignored (weights-only fp8: activations stay 16-bit).
import type { QuantSpec, TensorSource } from "../core/types.ts";
import { fp8ScaleName, linearBase } from "../model/weights.ts";
import { e4m3IsNaN, e4m3ToF32, f32ToE4m3, FP8_SCALE_MIN, fp8Scale } from "./fp8.ts";
import { expectShapePair, type OutTensor, quantTensorError } from "./tensors.ts";
import type { QuantizedLinear } from "./types.ts";

/** Reads one fp8 linear into the QuantizedLinear form (groups along K: bk, or K for per-tensor / per-channel). */
export async function readFp8Linear(
  src: TensorSource,
  quant: QuantSpec,
  weightName: string,
  N: number,
  K: number,
): Promise<QuantizedLinear> {
  const base = linearBase(weightName);
  const wi = src.info(weightName);
  if (wi.dtype !== "F8_E4M3") throw quantTensorError(src, weightName, `dtype ${wi.dtype}, expected F8_E4M3`);
  // compressed-tensors pads block-quantized weights to whole blocks and records the shape in weight_shape_original.
  const [Ns, Ks] = await storedShape(src, base, N, K);
  if (wi.shape.length !== 2 || wi.shape[0] !== Ns || wi.shape[1] !== Ks) {
    throw quantTensorError(src, weightName, `shape ${JSON.stringify(wi.shape)}, expected [${Ns},${Ks}]`);
  }
  const raw = await src.bytes(weightName);
  const q = new Uint8Array(N * K); // a copy (the source buffer may be a shared mapping), without block padding
  for (let n = 0; n < N; n++) q.set(raw.subarray(n * Ks, n * Ks + K), n * K);
  const nan = q.findIndex(e4m3IsNaN);
  if (nan >= 0) {
    throw quantTensorError(src, weightName, `NaN code at row ${Math.floor(nan / K)}, column ${nan % K}`);
  }
  const block = quant.block ?? null;
  const scaleName = `${base}.${fp8ScaleName(quant)}`;
  const si = src.info(scaleName);
  if (!["F32", "BF16", "F16"].includes(si.dtype)) {
    throw quantTensorError(src, scaleName, `dtype ${si.dtype}, expected F32, BF16 or F16`);
  }
  const raw32 = await src.f32(scaleName);
  const G = block ? block[1] : K, nG = Math.ceil(K / G);
  const scales = new Float32Array(N * nG);
  const scaleAt = (i: number): number => {
    const s = raw32[i]!;
    if (!Number.isFinite(s) || s < 0) throw quantTensorError(src, scaleName, `scale ${s} at element ${i}`);
    if (s < FP8_SCALE_MIN) return s; // 0, or below the grid: re-encoded below
    try {
      return fp8Scale(s);
    } catch (e) {
      throw quantTensorError(src, scaleName, `element ${i}: ${(e as Error).message}`);
    }
  };
  const shape = si.shape;
  if (block) {
    const [bn, bk] = block, rows = Math.ceil(N / bn), cols = Math.ceil(K / bk);
    if (shape.length !== 2 || shape[0] !== rows || shape[1] !== cols) {
      throw quantTensorError(src, scaleName, `shape ${JSON.stringify(shape)}, expected [${rows},${cols}]`);
    }
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < nG; g++) scales[n * nG + g] = scaleAt(Math.floor(n / bn) * cols + g);
    }
  } else {
    const count = shape.reduce((a, b) => a * b, 1);
    const perTensor = count === 1 && shape.length <= 1;
    const perChannel = count === N && (shape.length === 1 || (shape.length === 2 && shape[1] === 1));
    if (!perTensor && !perChannel) {
      throw quantTensorError(src, scaleName, `shape ${JSON.stringify(shape)}, expected [], [1], [${N}] or [${N},1]`);
    }
    for (let n = 0; n < N; n++) scales[n] = scaleAt(perTensor ? 0 : n);
  }
  // A scale below the kernels' grid (exporters that clamp max |w| at 1e-4 or 1e-12 write them for near-zero blocks,
  // all |w| < 448 * 2^-22 ~ 1.1e-4): its group is re-encoded at FP8_SCALE_MIN, one more e4m3 rounding of values that
  // small (error <= max(|w| / 16, 2^-32)), instead of refusing the checkpoint.
  for (let i = 0; i < scales.length; i++) {
    const s = scales[i]!, n = Math.floor(i / nG), g = i % nG;
    if (s === 0 || s >= FP8_SCALE_MIN) continue;
    for (let k = g * G; k < Math.min(K, (g + 1) * G); k++) {
      q[n * K + k] = f32ToE4m3((e4m3ToF32(q[n * K + k]!) * s) / FP8_SCALE_MIN);
    }
    scales[i] = FP8_SCALE_MIN;
  }
  return {
    outDim: N,
    inDim: K,
    bits: 8,
    fp8: true,
    groupSize: G,
    q,
    scales,
    zeros: new Uint16Array(N * nG),
    gIdx: null,
  };
}

/** The stored [rows, cols] of a weight: [N, K], or padded when `${base}.weight_shape_original` says [N, K]. */
async function storedShape(src: TensorSource, base: string, N: number, K: number): Promise<[number, number]> {
  const name = `${base}.weight_shape_original`;
  if (!src.has(name)) return [N, K];
  await expectShapePair(src, name, N, K);
  const w = src.info(`${base}.weight`).shape;
  if (w.length !== 2 || w[0]! < N || w[1]! < K) {
    throw quantTensorError(src, `${base}.weight`, `shape ${JSON.stringify(w)} is smaller than [${N},${K}]`);
  }
  return [w[0]!, w[1]!];
}

/**
 * The tensors of one fp8 linear in the block-scaled format (weight_block_size [bn, bk]): `ql` must be an fp8 linear
 * whose scales are equal across each block of bn rows (quantizeFp8 with rowBlock bn makes them so) with groups of bk.
 */
export function fp8Tensors(weightName: string, ql: QuantizedLinear, bn: number): OutTensor[] {
  if (!ql.fp8 || ql.gIdx) throw new Error("fp8Tensors: needs an fp8 linear without act-order");
  const { outDim: N, inDim: K, groupSize: bk } = ql;
  const rows = Math.ceil(N / bn), cols = Math.ceil(K / bk);
  const inv = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g++) {
      const s = ql.scales[r * bn * cols + g]!;
      for (let n = r * bn; n < Math.min(N, (r + 1) * bn); n++) {
        if (ql.scales[n * cols + g] !== s) throw new Error(`fp8Tensors: scales differ inside block (${r}, ${g})`);
      }
      inv[r * cols + g] = s;
    }
  }
  return [
    { name: weightName, dtype: "F8_E4M3", shape: [N, K], data: ql.q },
    {
      name: `${linearBase(weightName)}.weight_scale_inv`,
      dtype: "F32",
      shape: [rows, cols],
      data: new Uint8Array(inv.buffer),
    },
  ];
}
