// The one in-memory form of a group-quantized linear that every format reader produces and every packer consumes.
//
// Math (the spec every kernel is tested against):   W[n, k] = (q[n, k] - z[n, g(k)]) * s[n, g(k)]   in f32,
// where g(k) = gIdx ? gIdx[k] : floor(k / groupSize). s holds f16-representable values, z is an integer and q is an
// unsigned integer in [0, 2^bits). (q - z) * s is exact in f32 (at most 9 + 11 significant bits), so every correct
// implementation, in any evaluation order, gives the same bits.
import { f16ToF32, f32ToF16 } from "../model/dtype.ts";
import { type QuantSpec, quantWeight } from "../core/types.ts";

export type QuantBits = 4 | 8;

/** The format a backend holds quantized linears in: integer bits, or FP8 E4M3 codes (bits 8). */
export interface QuantFormat {
  readonly bits: QuantBits;
  readonly fp8: boolean;
}

/**
 * The quantized linears' format for a weight precision and checkpoint, or null for dense ones. A quantized checkpoint
 * is always held in its own format; a quantized precision naming another one is refused.
 */
export function quantFormat(weight: string, quant: QuantSpec | null): QuantFormat | null {
  const own = weight === "int4" || weight === "int8" || weight === "fp8" ? weight : null;
  if (quant) {
    const theirs = quantWeight(quant);
    if (own !== null && own !== theirs) {
      throw new Error(`weight precision ${weight} does not match the ${theirs} ${quant.method} checkpoint`);
    }
    return { bits: quant.bits, fp8: quant.method === "fp8" };
  }
  if (own === null) return null;
  return { bits: own === "int4" ? 4 : 8, fp8: own === "fp8" };
}

export interface QuantizedLinear {
  /** N: output features (rows of the Hugging Face [out, in] weight). */
  readonly outDim: number;
  /** K: input features, the dimension groups run along. */
  readonly inDim: number;
  readonly bits: QuantBits;
  /** G: input channels per group (== inDim for per-channel quantization). The last group may be partial. */
  readonly groupSize: number;
  /** [N, K] u8 row-major: q[n * K + k] in [0, 2^bits). */
  readonly q: Uint8Array;
  /** [N, numGroups] f32 row-major, every value exactly representable in f16. */
  readonly scales: Float32Array;
  /** [N, numGroups] u16 row-major integer zero points (GPTQ v1 can store 2^bits, hence 16 bits). */
  readonly zeros: Uint16Array;
  /** [K] i32 group of each input channel (GPTQ act-order), or null for floor(k / groupSize). */
  readonly gIdx: Int32Array | null;
  /**
   * FP8 E4M3 weights (bits 8): q holds e4m3 codes, W = e4m3(q) * s (src/quant/fp8.ts; s on its scale grid), zeros are
   * all 0 and unused. Absent: the integer math above.
   */
  readonly fp8?: boolean;
}

export function numGroups(ql: Pick<QuantizedLinear, "inDim" | "groupSize" | "gIdx">): number {
  if (ql.gIdx) return ql.gIdx.reduce((a, b) => Math.max(a, b), -1) + 1;
  return Math.ceil(ql.inDim / ql.groupSize);
}

/** Group index of input channel k. */
export function groupOf(ql: Pick<QuantizedLinear, "groupSize" | "gIdx">, k: number): number {
  return ql.gIdx ? ql.gIdx[k]! : Math.floor(k / ql.groupSize);
}

/** Nearest f16 value (round to nearest even), as a number. */
export function toF16(x: number): number {
  return f16ToF32(f32ToF16(x));
}

/** Smallest f16 value >= x (x >= 0 finite and below 65504). */
export function f16Up(x: number): number {
  const h = f32ToF16(x);
  const v = f16ToF32(h);
  return v >= x ? v : f16ToF32(h + 1);
}

/** Largest f16 value <= x (|x| below 65504). */
export function f16Down(x: number): number {
  const h = f32ToF16(x);
  const v = f16ToF32(h);
  if (v <= x) return v;
  // Stepping the bit pattern toward -inf: down for positives, up for negatives (and +0 → -min subnormal).
  if (v > 0) return f16ToF32(h - 1);
  return f16ToF32(v === 0 ? 0x8001 : h + 1);
}

/** Largest unsigned value of `bits`. */
export function qMax(bits: number): number {
  return (1 << bits) - 1;
}
