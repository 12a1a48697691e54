// Quantized GEMM above qgemv's rows (kernels/qgemm.cu): the skinny-M split-K kernel qgemms_* (tile choice, split-K
// plan, launch) and the older 64 x 128 tile qgemm_* kernel. Pure planning is tested without a GPU
// (tests/cuda_quant_test.ts). The split-K scratch is the dense skinny GEMM's (gemm_skinny.ts skinnyScratch: allocated
// when a CudaOps is built, never during a graph capture; launches on the device's one stream never overlap).
import type { DevPtr } from "./ffi.ts";
import type { Kernels } from "./kernels.ts";
import type { QuantBits } from "../../quant/types.ts";
import { blocksBySmem, type SkinnyScratch, skinnyScratch, splitKWave } from "./gemm_skinny.ts";
import { qName, tileN } from "./qgemv_plan.ts";

/**
 * Most rows quantLinear sends to qgemms (more take the tiled qgemm, slower at every M measured: 16..2048); benchmarks
 * lower it to time the tiled kernel in a model.
 */
export const qgemmRouting = { skinnyMaxM: Infinity };
/**
 * Variant m{bm}c{cw}k{ks}s{stages}: rows of the block tile, 32-column slices per block (c4: 128 columns, c8: 256,
 * int4 only), k-tiles (16 channels) per pipeline stage, and the cp.async ring depth (qgemm.cu QS_ALL).
 */
export type QsTile = "m32c4k4s4" | "m64c4k4s4" | "m32c4k8s4" | "m64c4k8s3" | "m64c8k4s4";
export const QS_TILES: readonly QsTile[] = ["m32c4k4s4", "m64c4k4s4", "m32c4k8s4", "m64c4k8s3", "m64c8k4s4"];
/** The variant's block rows, column slices, k-tiles per stage and stages. */
export function qsConfig(tile: QsTile): { bm: number; cw: number; ks: number; stages: number } {
  const m = /^m(\d+)c(\d)k(\d)s(\d)$/.exec(tile);
  if (!m) throw new RangeError(`qgemms: bad tile ${tile}`);
  return { bm: Number(m[1]), cw: Number(m[2]), ks: Number(m[3]), stages: Number(m[4]) };
}
/** Blocks per SM the kernels are built for (__launch_bounds__(256, 2)). */
const REG_BLOCKS = 2;

export interface QsPlan {
  readonly tile: QsTile;
  readonly bm: number;
  /** block columns (32 * cw) */ readonly bn: number;
  readonly mTiles: number;
  /** ceil(Np / bn) */ readonly nBlocks: number;
  /** splits along K (gridDim.z) */ readonly S: number;
  /** pipeline stages (ks k-tiles each) per split */ readonly tps: number;
  /** k-tiles per quantization group (all of them for one group) */ readonly gt: number;
  /** dynamic shared memory: the ring of stages, or the k-slice partials after the loop */ readonly smem: number;
}

/**
 * Shared memory of a variant: QS_STAGES x (x [bm, 64 + 8] f16 + weight tiles [bn / T][4][512 B] + scale rows
 * [4][bn] u32), at least the (8 / cw - 1) k-slice partials [bm, bn] f32 of the reduction.
 */
export function qsSmem(bits: QuantBits, tile: QsTile): number {
  const { bm, cw, ks, stages } = qsConfig(tile), bn = 32 * cw;
  const stage = bm * (ks * 16 + 8) * 2 + (bn / tileN(bits)) * ks * 512 + ks * bn * 4;
  return Math.max(stages * stage, (8 / cw - 1) * bm * bn * 4);
}

/**
 * Default variant, from bench/cuda_quant.ts on the H100 (int4 g128, the 8B shapes, M = 16..2048): 32-row tiles while
 * their blocks fit one wave of 2 per SM (at M = 64 / 128 they beat 64-row tiles by 10-20% on qkv / o / down: more
 * blocks), 64-row tiles above, 256 columns once 64-row tiles make 1.5 waves (gate_up at M = 128, prefill: 4-7%
 * faster). 128-k stages (k8) beat 64-k ones by 5-15% at int4; int8 keeps 64-k stages (its 128-k stages need 114+ KiB
 * of shared memory: one block per SM).
 */
export function qsTile(bits: QuantBits, M: number, Np: number, smCount: number): QsTile {
  const wave = REG_BLOCKS * smCount, k8 = bits === 4;
  if (Math.ceil(M / 32) * Math.ceil(Np / 128) <= wave) return k8 ? "m32c4k8s4" : "m32c4k4s4";
  if (!k8) return "m64c4k4s4";
  return Math.ceil(M / 64) * Math.ceil(Np / 128) > 1.5 * wave ? "m64c8k4s4" : "m64c4k8s3";
}

/**
 * Split-K plan: as many splits as keep the grid within one wave of resident blocks, at least 2 stages per split, and
 * the partials [S, M, N] within `partFloats`.
 */
export function qsPlan(
  bits: QuantBits,
  N: number,
  K: number,
  M: number,
  G: number,
  smCount: number,
  partFloats = Infinity,
  tile?: QsTile,
): QsPlan {
  const T = tileN(bits), Np = Math.ceil(N / T) * T;
  tile ??= qsTile(bits, M, Np, smCount);
  const { bm, cw, ks } = qsConfig(tile), bn = 32 * cw;
  if (bn < T) throw new RangeError(`qgemms: tile ${tile} is narrower than an int${bits} n-tile`);
  if (G % 16 !== 0 && G < K) throw new RangeError(`qgemms: group ${G} is not a multiple of 16`);
  const KT = Math.ceil(K / 16), nst = Math.ceil(KT / ks);
  const smem = qsSmem(bits, tile), mTiles = Math.ceil(M / bm), nBlocks = Math.ceil(Np / bn);
  const perSm = Math.min(REG_BLOCKS, blocksBySmem(smem));
  const { S, tps } = splitKWave(perSm * smCount, mTiles * nBlocks, nst, M * N, partFloats);
  return { tile, bm, bn, mTiles, nBlocks, S, tps, gt: G >= K ? KT : G / 16, smem };
}

/** The matrix fields the GEMM launches read (a QuantMatrix). */
export interface QgemmWeights {
  readonly bits: QuantBits;
  /** FP8 E4M3 codes (the f8 kernels) */ readonly fp8?: boolean;
  readonly N: number;
  readonly K: number;
  readonly Np: number;
  readonly KT: number;
  readonly group: number;
  readonly qweight: DevPtr;
  readonly scaleBias: DevPtr;
  readonly perm: DevPtr;
}

/** The operands qgemv / qgemm / qgemms launches begin with (kernel_table.ts QGEMM_IO; qgemv adds its own). */
export const qgemmIo = (x: DevPtr, W: QgemmWeights, bias: DevPtr, y: DevPtr) => ({
  x,
  perm: W.perm,
  qweight: W.qweight,
  scaleBias: W.scaleBias,
  bias,
  y,
});

/**
 * y [M, N] f32 = x [M, K] f16 (read through W.perm) · W^T + bias [N] f32 (or 0n) by qgemms; `tile` forces a
 * variant (benchmarks, tests), `scratch` defaults to the device's skinny GEMM scratch.
 */
export function qgemmSkinny(
  k: Kernels,
  x: DevPtr,
  W: QgemmWeights,
  bias: DevPtr,
  y: DevPtr,
  M: number,
  tile?: QsTile,
  scratch: SkinnyScratch = skinnyScratch(k.dev),
): void {
  const { bits, N, K, Np, KT, group: G } = W;
  if (!(Number.isInteger(M) && M > 0 && N > 0 && K > 0)) throw new RangeError(`qgemms: bad shape [${M}, ${N}, ${K}]`);
  if (Np !== Math.ceil(N / tileN(bits)) * tileN(bits) || KT !== Math.ceil(K / 16)) {
    throw new RangeError(`qgemms: Np ${Np} / KT ${KT} do not match [${N}, ${K}] int${bits}`);
  }
  if (tile && bits === 8 && qsConfig(tile).cw === 8) throw new RangeError(`qgemms: no int8 ${tile} variant`);
  const p = qsPlan(bits, N, K, M, G, k.dev.smCount, scratch.partFloats, tile);
  if (p.S > 1 && p.mTiles * p.nBlocks > scratch.slots) {
    throw new RangeError(`qgemms: ${p.mTiles * p.nBlocks} tiles > ${scratch.slots} counter slots`);
  }
  if (p.S > 1 && p.S * M * N > scratch.partFloats) throw new RangeError("qgemms: partials exceed the scratch");
  const split = p.S > 1 ? { part: scratch.part, counters: scratch.counters } : { part: 0n, counters: 0n };
  k.launch("qgemms", `${qName(W)}_${p.tile}`, [p.mTiles, p.nBlocks, p.S], [256], {
    ...qgemmIo(x, W, bias, y),
    ...split,
    ...{ M, N, K, Np, KT, gt: p.gt, tps: p.tps },
  }, p.smem);
}

/** Rows per qgemm block, n-tiles per qgemm block (qgemm.cu qgemm_*: the 64 x 2-n-tile prefill kernel). */
const QG_BM = 64, GEMM_TILES = 2;

/** The same product by the older qgemm_* kernel (64 x 2 n-tiles per block, weights from global memory). */
export function qgemmTiled(k: Kernels, x: DevPtr, W: QgemmWeights, bias: DevPtr, y: DevPtr, M: number): void {
  const { bits, N, K, Np, KT, group: G } = W;
  const grid = [Math.ceil(Np / tileN(bits) / GEMM_TILES), Math.ceil(M / QG_BM)] as const;
  k.launch("qgemm", qName(W), grid, [128], { ...qgemmIo(x, W, bias, y), ...{ M, N, K, Np, KT, G } });
}
