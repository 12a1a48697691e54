// Skinny-M split-K GEMM (kernels/gemm_skinny.cu skinny<BM>_*, batched decode): tile choice, split-K plan, the per-device split-K
// scratch, and the launcher. The scratch is allocated when a CudaOps is built (never during graph capture) and is
// shared by every launch on the device's one stream.
import type { CudaDevice, DeviceBuffer } from "./device.ts";
import type { DevPtr } from "./ffi.ts";
import type { Kernels } from "./kernels.ts";

/** k-tile width and pipeline depth of skinny() in gemm_skinny.cu. */
export const SKINNY_BK = 64, SKINNY_STAGES = 4;
/** Kernel variant: rows of the output tile, and "w8" for 8 warps (two column groups) instead of 4. */
export type SkinnyTile = "16" | "32" | "64" | "16w8" | "32w8" | "64w8";
export const SKINNY_TILES: readonly SkinnyTile[] = ["16", "32", "64", "16w8", "32w8", "64w8"];
/**
 * Output tile [bm, bn], warps per block, and blocks per SM the registers allow (gemm_skinny.cu SKINNY_ALL's MINB; 32w8
 * is built for 3, but takes 56 registers, 4 blocks, at 16-bit activations, and at f32 its shared memory allows 3).
 */
const CFG: Record<SkinnyTile, { bm: number; bn: number; warps: number; regBlocks: number }> = {
  "16": { bm: 16, bn: 64, warps: 4, regBlocks: 4 },
  "32": { bm: 32, bn: 64, warps: 4, regBlocks: 4 },
  "64": { bm: 64, bn: 32, warps: 4, regBlocks: 2 },
  "16w8": { bm: 16, bn: 64, warps: 8, regBlocks: 4 },
  "32w8": { bm: 32, bn: 64, warps: 8, regBlocks: 4 },
  "64w8": { bm: 64, bn: 64, warps: 8, regBlocks: 2 },
};
/** Most resident blocks per SM a plan counts on. */
const MAX_BLOCKS_PER_SM = 4;
/** Shared memory per SM the plans count on (the most one sm_90 block may take; plans add 1 KiB per block reserved). */
const SMEM_PER_SM = 227 * 1024;

/**
 * Split-K scratch of one device. part: [partFloats] f32, holding [S, M, N] partials of one launch; counters:
 * [slots] u32, one per output tile, zero between launches (the last block of a tile resets its slot).
 */
export interface SkinnyScratch {
  readonly part: DevPtr;
  readonly partFloats: number;
  readonly counters: DevPtr;
  readonly slots: number;
}

export interface SkinnyPlan {
  readonly tile: SkinnyTile;
  readonly warps: number;
  readonly bm: number;
  readonly bn: number;
  readonly mTiles: number;
  readonly nTiles: number;
  /** splits along K (gridDim.z) */ readonly S: number;
  /** k-tiles (of SKINNY_BK) per split */ readonly tps: number;
  readonly smem: number;
}

/** Dynamic shared memory: the cp.async stages of A [BM, 64+8] and W [BN, 64+8], or the 4 warp partials. */
export function skinnySmem(tile: SkinnyTile, actBytes: number): number {
  const { bm, bn } = CFG[tile], ld = SKINNY_BK + 8, pipe = SKINNY_STAGES * (bm * ld * actBytes + bn * ld * 2);
  return Math.max(pipe, 4 * bm * bn * 4);
}

/**
 * Variant for M rows, from bench/cuda_gemm.ts on the H100: 8 warps (a few % faster than 4 at every shape); 16-row
 * tiles up to 16 rows, 32-row tiles up to 48 (64-row tiles are slower at M = 32 with f32 activations: 2 blocks per
 * SM), 64-row tiles above (up to 1.5x faster than 32-row ones at M = 64..128: W is staged once per 64 rows).
 */
export function skinnyTile(M: number): SkinnyTile {
  return M <= 16 ? "16w8" : M <= 48 ? "32w8" : "64w8";
}

/**
 * Tile and split-K plan: as many splits as keep the grid within one wave of resident blocks (no partial second
 * wave), at least 2 k-tiles per split, and partials within `partFloats`.
 */
export function skinnyPlan(
  M: number,
  N: number,
  K: number,
  actBytes: number,
  smCount: number,
  partFloats = Infinity,
  tile: SkinnyTile = skinnyTile(M),
): SkinnyPlan {
  const { bm, bn, warps, regBlocks } = CFG[tile], smem = skinnySmem(tile, actBytes);
  const mTiles = Math.ceil(M / bm), nTiles = Math.ceil(N / bn), KT = Math.ceil(K / SKINNY_BK);
  const perSm = Math.min(MAX_BLOCKS_PER_SM, regBlocks, blocksBySmem(smem));
  const { S, tps } = splitKWave(perSm * smCount, mTiles * nTiles, KT, M * N, partFloats);
  return { tile, warps, bm, bn, mTiles, nTiles, S, tps, smem };
}

/** Blocks of `smem` bytes of shared memory one SM holds (at least 1; 1 KiB reserved per block). */
export const blocksBySmem = (smem: number): number => Math.max(1, Math.floor(SMEM_PER_SM / (smem + 1024)));

/**
 * Split-K of a grid of `tiles` output tiles over `kSteps` k-steps: as many splits as keep it within one wave of
 * `slots` resident blocks, at least 2 k-steps per split, and the partials (S x `outFloats`) within `partFloats`.
 * tps: k-steps per split.
 */
export function splitKWave(
  slots: number,
  tiles: number,
  kSteps: number,
  outFloats: number,
  partFloats: number,
): { S: number; tps: number } {
  let S = Math.max(1, Math.min(Math.floor(slots / tiles), Math.ceil(kSteps / 2)));
  let tps = Math.ceil(kSteps / S);
  S = Math.ceil(kSteps / tps);
  while (S > 1 && S * outFloats > partFloats) {
    tps++;
    S = Math.ceil(kSteps / tps);
  }
  return { S, tps };
}

// The buffers are freed with the device (CudaDevice frees what it allocated when disposed).
const scratches = new WeakMap<CudaDevice, { s: SkinnyScratch; owned: DeviceBuffer[] }>();

/**
 * The device's scratch, allocated on first use: a plan only splits while tiles * S <= 4 blocks per SM, so the
 * partials never exceed smCount * (blocks per SM) * BM * BN <= smCount * 8192 floats (4 x 2048 or 2 x 4096) and the
 * counters 4 * smCount tiles.
 */
export function skinnyScratch(dev: CudaDevice): SkinnyScratch {
  const have = scratches.get(dev);
  if (have) return have.s;
  const partFloats = MAX_BLOCKS_PER_SM * dev.smCount * 2048, slots = MAX_BLOCKS_PER_SM * dev.smCount;
  const part = dev.alloc(partFloats * 4, "skinny.part"), counters = dev.alloc(slots * 4, "skinny.counters");
  dev.memset(counters.ptr, 0, slots * 4);
  const s = { part: part.ptr, partFloats, counters: counters.ptr, slots };
  scratches.set(dev, { s, owned: [part, counters] });
  return s;
}

/** y [M, N] f32 = x [M, K] (act) · W [N, K]^T (weight dtype) + bias [N] f32 (or 0n); suffix `${act}_${wt}`. */
export function skinnyLinear(
  k: Kernels,
  suffix: string,
  actBytes: number,
  scratch: SkinnyScratch,
  x: DevPtr,
  W: DevPtr,
  bias: DevPtr,
  y: DevPtr,
  M: number,
  N: number,
  K: number,
  tile?: SkinnyTile,
): void {
  if (!(M > 0 && N > 0 && K > 0)) throw new RangeError(`skinny: bad shape [${M}, ${N}, ${K}]`);
  const p = skinnyPlan(M, N, K, actBytes, k.dev.smCount, scratch.partFloats, tile);
  if (p.S > 1 && p.mTiles * p.nTiles > scratch.slots) {
    throw new RangeError(`skinny: ${p.mTiles * p.nTiles} tiles > ${scratch.slots} counter slots`);
  }
  if (p.S * M * N > scratch.partFloats && p.S > 1) throw new RangeError(`skinny: partials exceed the scratch`);
  const split = p.S > 1 ? { part: scratch.part, counters: scratch.counters } : { part: 0n, counters: 0n };
  k.launch(`skinny${p.tile}`, suffix, [p.mTiles, p.nTiles, p.S], [32 * p.warps], {
    A: x,
    W,
    bias,
    C: y,
    ...split,
    M,
    N,
    K,
    tps: p.tps,
  }, p.smem);
}
