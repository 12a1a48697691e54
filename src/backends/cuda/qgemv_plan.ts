// qgemv's launch plan (kernels/qgemv.cu): how K is split over the warps of a block and over blocks, the shared memory
// it stages, and the split-K scratch a model needs. Pure arithmetic, tested without a GPU (tests/cuda_quant_test.ts).
import type { QuantBits } from "../../quant/types.ts";

/** Rows one qgemv launch takes (8 or 16 rows of the MMA B operand in qgemv.cu); more rows take qgemm. */
export const QGEMV_MAX_M = 16;
/** Rows up to which qgemv has the SiLU epilogue (the 16-row variant leaves it out: its registers, qgemv.cu). */
export const QGEMV_SILU_MAX_M = 8;
/** Warps per qgemv block (qgemv.cu). */
const GEMV_WARPS = 4;
/** qgemv's weight ring per block (qgemv.cu: 4 warps x D groups x 4 tiles x 512 B; D = 3 at M <= 8, QV_D16 = 2 above). */
const ringBytes = (M: number) => 4 * (M <= 8 ? 3 : 2) * 4 * 512;
/** Rows whose per-k-tile x sums qgemv keeps: M rounded up to even (a lane reads two rows at once); none above 8. */
const sumRows = (M: number) => (M <= 8 ? M + (M & 1) : 0);
/**
 * Longest K-range (packed channels) one qgemv block of M rows stages in shared memory: small enough for 4 blocks
 * per SM (55 KiB each: 16 zero bytes, the weight ring, M x (range + 8) f16, then sumRows(M) f32 x sums per 16 channels).
 */
const maxBlockK = (M: number) =>
  Math.floor(((55 * 1024 - 64 - ringBytes(M) - 16 * M) / (2 * M + sumRows(M) / 4)) / 16) * 16;
/** qgemv warps resident per SM (4 blocks of 4 warps: __launch_bounds__(128, 4)). */
export const QGEMV_WARPS_PER_SM = 16;
/**
 * What quantLinear launches qgemv with unless told otherwise (benchmarks may change them before a model is loaded:
 * weights.ts sizes the split-K scratch for warpsPerSm). warpsPerSm: split target (above 16: several waves of shorter
 * runs); interleave: the warps of an n-tile take alternate tiles instead of runs; pdl: programmatic dependent launch.
 */
export const qgemvDefaults = { warpsPerSm: QGEMV_WARPS_PER_SM, interleave: false, pdl: true, early: true };
/** Fewest k-tiles a qgemv warp streams (shorter runs only add partials). */
const MIN_TPS = 4;

/** Kernel-name part of a quantized matrix's format: w4, w8 (integers) or f8 (FP8 E4M3 codes). */
export function qName(W: { readonly bits: QuantBits; readonly fp8?: boolean }): string {
  return W.fp8 ? "f8" : `w${W.bits}`;
}

/** Columns per n-tile of the packed layout. */
export const tileN = (bits: QuantBits): number => (bits === 4 ? 64 : 32);

export interface QgemvPlan {
  /** k-tiles per warp */ readonly tps: number;
  /** warps of a block on the same n-tile, each on its own k-range (1, 2 or 4; 4 / ksb n-tiles per block) */
  readonly ksb: number;
  /** block-level splits (grid y) */ readonly S: number;
  /** grid x: ceil(nTiles / (4 / ksb)) */ readonly gridX: number;
  /**
   * dynamic shared memory: 16 zero bytes + the weight ring + x rows M x (ksb * tps * 16 + 8) f16 (padded to 16 bytes)
   * + x sums [ksb * tps, sumRows(M)] f32
   */
  readonly smem: number;
}

/**
 * Split-K plan of one qgemv launch: about `warpsPerSm` warps per SM in one wave, each streaming `tps` consecutive
 * 16-k tiles of one n-tile; up to 4 warps of a block share an n-tile (reduced in shared memory), the remaining
 * splits go to blocks (f32 partials [S, M, Np], limited to partFloats).
 */
export function qgemvPlan(
  bits: QuantBits,
  N: number,
  K: number,
  M: number,
  smCount: number,
  partFloats = Infinity,
  warpsPerSm: number = qgemvDefaults.warpsPerSm,
): QgemvPlan {
  const T = tileN(bits), Np = Math.ceil(N / T) * T, KT = Math.ceil(K / 16), nTiles = Np / T;
  // Warps per n-tile: fill one wave; runs of at least MIN_TPS tiles.
  const D = Math.max(1, Math.min(Math.floor((warpsPerSm * smCount) / nTiles), Math.ceil(KT / MIN_TPS)));
  const maxK = maxBlockK(M);
  // Up to 4 of them in one block (x staged once, reduced in shared memory), the rest across blocks.
  let ksb = D >= 4 ? 4 : D >= 2 ? 2 : 1, tps = 0;
  for (;;) {
    tps = Math.ceil(KT / (ksb * Math.max(1, Math.floor(D / ksb))));
    if (ksb === 1 || ksb * tps * 16 <= maxK) break;
    ksb /= 2;
  }
  tps = Math.min(tps, maxK / 16);
  let S = Math.ceil(KT / (ksb * tps));
  const tpsCap = Math.max(tps, Math.floor(maxK / 16 / ksb));
  while (S > 1 && S * M * Np > partFloats && tps < tpsCap) {
    tps = Math.min(2 * tps, tpsCap);
    S = Math.ceil(KT / (ksb * tps));
  }
  if (S > 1 && S * M * Np > partFloats) throw new RangeError(`qgemv: split-K scratch too small for [${N}, ${K}]`);
  const xsHalves = Math.ceil((M * (ksb * tps * 16 + 8)) / 8) * 8;
  const smem = 16 + ringBytes(M) + xsHalves * 2 + ksb * tps * sumRows(M) * 4;
  return { tps, ksb, S, gridX: Math.ceil(nTiles / (GEMV_WARPS / ksb)), smem };
}

/** Scratch floats and counter slots qgemv needs for these [N, K] shapes at up to QGEMV_MAX_M rows. */
export function scratchNeed(
  bits: QuantBits,
  shapes: readonly (readonly [number, number])[],
  smCount: number,
  warpsPerSm: readonly number[] = [qgemvDefaults.warpsPerSm],
) {
  let floats = 1, slots = 1;
  for (const [N, K] of shapes) {
    for (const w of warpsPerSm) {
      for (let M = 1; M <= QGEMV_MAX_M; M++) {
        const p = qgemvPlan(bits, N, K, M, smCount, Infinity, w);
        if (p.S > 1) floats = Math.max(floats, p.S * M * Math.ceil(N / tileN(bits)) * tileN(bits));
        slots = Math.max(slots, p.gridX);
      }
    }
  }
  return { floats, slots };
}
