// The gate / up pairing of a quantized MLP's stacked gate_up matrix on CUDA: rows interleaved per n-tile so that
// one tile of the packed layout holds `half` gate rows and the same `half` up rows (half = tile width / 2: 32 for
// int4, 16 for int8). A qgemv lane then holds gate column c and up column c in the same registers (accumulator
// blocks j and j + NB / 2), and the GEMV writes silu(gate) * up itself (qgemv.cu's SiLU epilogue) instead of a
// separate silu_mul launch over a [n, 2f] f32 round trip. Pure functions (tests/cuda_quant_test.ts runs them on the
// CPU).
//
// Paired row order (N' = pairedRows(f, half) rows): tile t = rows [2 half t, 2 half (t + 1)): gate rows
// [half t, half t + half) then up rows [half t, half t + half); rows past f (the last tile when half does not divide
// f) are zero weights (q = 0, scale 0, zero 0) and zero bias.
import { numGroups, type QuantBits, type QuantizedLinear } from "../../quant/types.ts";
import { tileN } from "./qgemv_plan.ts";

/** How a QuantMatrix's rows pair gate and up (undefined: a plain stack or another linear). */
export interface GateUpPairs {
  /** gate (= up) rows per n-tile */ readonly half: number;
  /** intermediate size: gate rows, up rows, silu outputs per token */ readonly f: number;
}

/** Gate (= up) rows per n-tile of an int`bits` matrix: half the tile width. */
export const pairHalf = (bits: QuantBits): number => tileN(bits) / 2;
/** The largest pairHalf (int4): workspaces sized for it hold any paired gate_up output. */
export const MAX_PAIR_HALF = pairHalf(4);

/** Rows of the paired matrix: both halves padded to a multiple of `half`. */
export const pairedRows = (f: number, half: number): number => 2 * Math.ceil(f / half) * half;

/** Paired row of gate row r (up: + half). */
export const pairedRow = (r: number, half: number): number => 2 * half * Math.floor(r / half) + (r % half);

/** Gate and up (each [f, K], same K, bits, groups and act-order) interleaved per `half` rows, zero-padded. */
export function pairGateUp(gate: QuantizedLinear, up: QuantizedLinear, half: number): QuantizedLinear {
  const { inDim: K, bits, groupSize, gIdx } = gate, f = gate.outDim;
  const sameG = gIdx === up.gIdx ||
    (!!gIdx && !!up.gIdx && gIdx.length === up.gIdx.length && gIdx.every((v, i) => v === up.gIdx![i]));
  const fp8 = !!gate.fp8;
  if (
    up.outDim !== f || up.inDim !== K || up.bits !== bits || !!up.fp8 !== fp8 || up.groupSize !== groupSize || !sameG
  ) {
    throw new Error("pairGateUp: gate and up differ in shape, bits, fp8, group size or g_idx");
  }
  if (!Number.isInteger(half) || half < 1) throw new RangeError(`pairGateUp: half ${half}`);
  const nG = numGroups(gate), N = pairedRows(f, half);
  const q = new Uint8Array(N * K), scales = new Float32Array(N * nG), zeros = new Uint16Array(N * nG);
  for (const [src, off] of [[gate, 0], [up, half]] as const) {
    for (let r = 0; r < f; r++) {
      const d = pairedRow(r, half) + off;
      q.set(src.q.subarray(r * K, (r + 1) * K), d * K);
      scales.set(src.scales.subarray(r * nG, (r + 1) * nG), d * nG);
      zeros.set(src.zeros.subarray(r * nG, (r + 1) * nG), d * nG);
    }
  }
  return { outDim: N, inDim: K, bits, ...(fp8 ? { fp8 } : {}), groupSize, q, scales, zeros, gIdx };
}

/** Bias [2f] f32 (gate | up) in the paired row order [N'] f32, zero-padded. */
export function pairBias(bias: Float32Array, f: number, half: number): Float32Array {
  if (bias.length !== 2 * f) throw new RangeError(`pairBias: ${bias.length} values for f = ${f}`);
  const out = new Float32Array(pairedRows(f, half));
  for (let r = 0; r < f; r++) {
    out[pairedRow(r, half)] = bias[r]!;
    out[pairedRow(r, half) + half] = bias[f + r]!;
  }
  return out;
}

/** Output columns of a layer's gate_up linear and its pairing half (0: dense, gate | up halves). */
export function gateUpShape(W: bigint | { readonly pairs?: GateUpPairs }, f: number): { N: number; half: number } {
  const half = typeof W === "bigint" ? 0 : W.pairs?.half ?? 0;
  return { N: half ? pairedRows(f, half) : 2 * f, half };
}
