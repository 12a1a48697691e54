// FP8 E4M3 ("e4m3fn", as torch.float8_e4m3fn and safetensors F8_E4M3 store it) weights: codec, scale grid, RTN
// quantization and the Hugging Face "fp8" checkpoint layout.
//
// Code c (8 bits) = s eeee mmm: finite values only (0x7f / 0xff are NaN, there is no infinity), bias 7:
//   e > 0: (-1)^s 2^(e-7) (1 + m/8)      e = 0: (-1)^s 2^-6 (m/8)      largest finite: 448 (0x7e).
// Every code is exact in f16 and f32. A linear W[n, k] = e4m3(q[n, k]) * s[n, g(k)] (QuantizedLinear with fp8 set;
// zeros unused, all 0). Kernels convert a code to f16 by moving its bits into place (value * 2^-8, exact: f16 has one
// more exponent bit) and fold the 2^8 into the scale, so a scale must be f16-representable after * 256: FP8_SCALE_MIN
// .. FP8_SCALE_MAX with 11 significant bits (fp8Scale rounds to that grid).
import { f16ToF32, f32ToF16 } from "../model/dtype.ts";
import type { QuantizedLinear } from "./types.ts";

/** Largest finite e4m3 value. */
export const E4M3_MAX = 448;
/** The kernels' scale factor: e4m3 codes become f16 values * 2^-8, the stored scale is s * 2^8. */
export const FP8_SCALE_SHIFT = 256;
/** Smallest scale with full f16 precision after * 256 (the smallest normal f16 / 256). */
export const FP8_SCALE_MIN = 2 ** -22;
/** Largest scale: 65504 / 256. */
export const FP8_SCALE_MAX = 65504 / 256;

const DECODE = new Float32Array(256);
for (let c = 0; c < 256; c++) {
  const s = c & 0x80 ? -1 : 1, e = (c >> 3) & 0xf, m = c & 7;
  DECODE[c] = (c & 0x7f) === 0x7f ? NaN : s * (e === 0 ? (m / 8) * 2 ** -6 : 2 ** (e - 7) * (1 + m / 8));
}

/** e4m3 code → value (NaN for 0x7f / 0xff). */
export function e4m3ToF32(code: number): number {
  return DECODE[code & 0xff]!;
}

/** Whether a code is NaN (the format's only non-finite codes). */
export function e4m3IsNaN(code: number): boolean {
  return (code & 0x7f) === 0x7f;
}

// Non-negative finite values in code order (codes 0x00..0x7e), for round-to-nearest-even by binary search.
const POS = DECODE.slice(0, 0x7f);

/** Nearest e4m3 code (ties to even mantissa), saturating to +-448; x must not be NaN. */
export function f32ToE4m3(x: number): number {
  if (Number.isNaN(x)) throw new RangeError("f32ToE4m3: NaN");
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(x);
  if (a >= E4M3_MAX) return sign | 0x7e;
  let lo = 0, hi = POS.length - 1; // POS[lo] <= a < POS[hi]
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (POS[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - POS[lo]!, dHi = POS[hi]! - a;
  return sign | (dLo < dHi || (dLo === dHi && (lo & 1) === 0) ? lo : hi);
}

/** The scale the kernels hold: s rounded so that s * 256 is an f16 (round to nearest even); 0 or in range. */
export function fp8Scale(s: number, where = "fp8 scale"): number {
  if (s === 0) return 0;
  if (!(s >= FP8_SCALE_MIN && s <= FP8_SCALE_MAX)) {
    throw new RangeError(`${where} ${s} is outside [2^-22, 65504/256] (what the kernels can hold)`);
  }
  return f16ToF32(f32ToF16(s * FP8_SCALE_SHIFT)) / FP8_SCALE_SHIFT;
}

/**
 * Round-to-nearest fp8 quantization of w [N, K] f32 with one scale per block of `rowBlock` rows x `group` input
 * channels (rowBlock 1: per row and group; 128 x 128: the Hugging Face block format): s = fp8Scale(max |x| / 448),
 * at least FP8_SCALE_MIN; q = f32ToE4m3(x / s). The rounded scale may sit slightly below max / 448, so the largest value
 * can saturate at 448 s (an error below one e4m3 step). Scales are stored per row and group (equal within a block).
 */
export function quantizeFp8(w: Float32Array, N: number, K: number, group: number, rowBlock = 1): QuantizedLinear {
  if (w.length !== N * K) throw new Error(`quantizeFp8: ${w.length} values for [${N}, ${K}]`);
  if (!Number.isInteger(group) || group <= 0) throw new Error(`quantizeFp8: bad group size ${group}`);
  if (!Number.isInteger(rowBlock) || rowBlock <= 0) throw new Error(`quantizeFp8: bad row block ${rowBlock}`);
  const nG = Math.ceil(K / group);
  const q = new Uint8Array(N * K), scales = new Float32Array(N * nG);
  for (let r0 = 0; r0 < N; r0 += rowBlock) {
    const r1 = Math.min(N, r0 + rowBlock);
    for (let g = 0; g < nG; g++) {
      const k0 = g * group, k1 = Math.min(K, k0 + group);
      let mx = 0;
      for (let n = r0; n < r1; n++) {
        for (let k = k0; k < k1; k++) {
          const v = w[n * K + k]!;
          if (!Number.isFinite(v)) throw new Error(`quantizeFp8: non-finite weight at row ${n}, column ${k}`);
          mx = Math.max(mx, Math.abs(v));
        }
      }
      const s = fp8Scale(Math.max(mx / E4M3_MAX, FP8_SCALE_MIN));
      for (let n = r0; n < r1; n++) {
        for (let k = k0; k < k1; k++) q[n * K + k] = f32ToE4m3(w[n * K + k]! / s);
        scales[n * nG + g] = s;
      }
    }
  }
  return {
    outDim: N,
    inDim: K,
    bits: 8,
    fp8: true,
    groupSize: group,
    q,
    scales,
    zeros: new Uint16Array(N * nG),
    gIdx: null,
  };
}
