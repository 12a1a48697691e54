// Reference quantized math: group-wise RTN quantization of weights, exact dequantization, and the per-token KV
// cache quantization. The reference backend runs on these; GPU kernels are tested against them.
import {
  f16Down,
  f16Up,
  groupOf,
  numGroups,
  qMax,
  type QuantBits,
  type QuantFormat,
  type QuantizedLinear,
} from "./types.ts";
import { e4m3ToF32, quantizeFp8 } from "./fp8.ts";

/** Smallest scale we store: the smallest normal f16, so 1/scale never overflows and the scale never flushes. */
export const MIN_SCALE = 2 ** -14;

export interface RtnOptions {
  /**
   * Smallest zero point allowed (default 0). 1 for GPTQ v1, whose stored (zero - 1) cannot hold -1: a group whose
   * range would need zero 0 gets zero 1 and a scale stretched to max / (2^bits - 2) instead.
   */
  readonly minZero?: number;
}

/**
 * Asymmetric round-to-nearest quantization per group of `group` input channels (the last group may be partial).
 * For each row n and group g with values x: lo = min(0, min x), hi = max(0, max x),
 *   s = f16Up(max((hi - lo) / (2^bits - 1), MIN_SCALE)),   z = round(-lo / s),   q = clamp(round(x / s) + z, 0, qmax).
 * Rounding s up keeps [lo, hi] inside the grid, so |x - (q - z) * s| <= s / 2 for every element.
 * w: [N, K] f32 row-major.
 */
export function quantizeRtn(
  w: Float32Array,
  N: number,
  K: number,
  bits: QuantBits,
  group: number,
  opts: RtnOptions = {},
): QuantizedLinear {
  if (w.length !== N * K) throw new Error(`quantizeRtn: ${w.length} values for [${N}, ${K}]`);
  if (!Number.isInteger(group) || group <= 0) throw new Error(`quantizeRtn: bad group size ${group}`);
  const bad = w.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`quantizeRtn: non-finite weight at row ${Math.floor(bad / K)}, column ${bad % K}`);
  const qm = qMax(bits), minZero = opts.minZero ?? 0;
  const nG = Math.ceil(K / group);
  const q = new Uint8Array(N * K), scales = new Float32Array(N * nG), zeros = new Uint16Array(N * nG);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < nG; g++) {
      const k0 = n * K + g * group, k1 = n * K + Math.min(K, (g + 1) * group);
      const { s, z } = groupParams(w.subarray(k0, k1), bits, minZero);
      for (let i = k0; i < k1; i++) q[i] = Math.min(qm, Math.max(0, Math.round(w[i]! / s) + z));
      scales[n * nG + g] = s;
      zeros[n * nG + g] = z;
    }
  }
  return { outDim: N, inDim: K, bits, groupSize: group, q, scales, zeros, gIdx: null };
}

/** Load-time quantization of w [N, K] f32 to `format`: quantizeRtn for integers, quantizeFp8 (per row and group) for fp8. */
export function quantizeAs(format: QuantFormat, w: Float32Array, N: number, K: number, group: number): QuantizedLinear {
  return format.fp8 ? quantizeFp8(w, N, K, group) : quantizeRtn(w, N, K, format.bits, group);
}

/** Scale and zero of one group of finite values by the rule above (also GPTQ's, on its updated weights). */
export function groupParams(x: ArrayLike<number>, bits: QuantBits, minZero = 0): { s: number; z: number } {
  const qm = qMax(bits);
  let lo = 0, hi = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  let s = f16Up(Math.max((hi - lo) / qm, MIN_SCALE));
  let z = Math.round(-lo / s);
  if (z < minZero) {
    s = f16Up(Math.max(hi / (qm - minZero), MIN_SCALE));
    z = minZero;
  }
  return { s, z };
}

/** W[N, K] f32 = (q - z) * s, exact (see types.ts). */
export function dequantize(ql: QuantizedLinear): Float32Array {
  const { outDim: N, inDim: K } = ql;
  const nG = numGroups(ql);
  const out = new Float32Array(N * K);
  const g = Int32Array.from({ length: K }, (_, k) => groupOf(ql, k));
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const j = n * nG + g[k]!;
      const q = ql.q[n * K + k]!;
      out[n * K + k] = ql.fp8 ? e4m3ToF32(q) * ql.scales[j]! : (q - ql.zeros[j]!) * ql.scales[j]!;
    }
  }
  return out;
}

// ---- KV cache ----------------------------------------------------------------------------------------------------
//
// Each K (and V) vector of one token and one KV head — headDim values x — is quantized on write, asymmetric:
//   zero  = f16Down(min x)                                   (f16, rounded toward -inf so min x is on the grid)
//   scale = f16Up((max x - zero) / (2^bits - 1))             (f16, rounded up so max x is on the grid; 0 if flat)
//   q     = clamp(round((x - zero) / scale), 0, 2^bits - 1)  (q = 0 when scale is 0)
//   x'    = fround(q * scale + zero)                         (one f32 FMA on read)
// |x - x'| <= scale / 2 (+ one f32 rounding). The GPU layout stores q (headDim * bits / 8 bytes) and the f16 pair
// (scale, zero): 4 bytes per token, head and K|V.

/** Bytes of one token's K or V for one KV head, scale and zero included. */
export function kvHeadBytes(headDim: number, kv: "f32" | "f16" | "bf16" | "int8" | "int4"): number {
  switch (kv) {
    case "f32":
      return headDim * 4;
    case "f16":
    case "bf16":
      return headDim * 2;
    case "int8":
      return headDim + 4;
    case "int4":
      return Math.ceil(headDim / 2) + 4;
  }
}

/** Quantizes and dequantizes one vector x in place (the reference cache's write path). Returns its scale. */
export function kvRoundTrip(x: Float32Array, bits: QuantBits): number {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const zero = f16Down(lo);
  const qm = qMax(bits);
  const scale = hi > zero ? f16Up((hi - zero) / qm) : 0;
  for (let i = 0; i < x.length; i++) {
    const q = scale === 0 ? 0 : Math.min(qm, Math.max(0, Math.round((x[i]! - zero) / scale)));
    x[i] = q * scale + zero;
  }
  return scale;
}

/** Round trip of a row [heads, headDim] (one token's K or V), head by head. Returns a new array. */
export function kvRoundTripHeads(row: Float32Array, heads: number, headDim: number, bits: QuantBits): Float32Array {
  const out = row.slice();
  for (let h = 0; h < heads; h++) kvRoundTrip(out.subarray(h * headDim, (h + 1) * headDim), bits);
  return out;
}
