// Attention launch parameters shared by the CUDA backend and its tests: the argument types of rope_kv / attn_split /
// attn_prefill, their kernel-fit rules and the split plan (ops.ts launches them).
import type { DevPtr } from "./ffi.ts";
import { type CudaKv, kvQuantized } from "./kv.ts";

/**
 * Key positions per attention split for steps of more than 8 tokens (batch >= 9 decode graphs included; on the
 * H100 at batch 16 and context 4k-8k, 512 beat 256 by 5-8 points of the copy roofline, bench/cuda_attention.ts);
 * decode steps of up to 8 tokens use shorter splits for parallelism.
 */
export const ATTN_SPLIT = 512;
export const ATTN_SPLIT_DECODE = 128;
/**
 * Longest split for int8 / int4 KV (2-4x fewer bytes per key than f16): on the H100 at batch 16, 32 / 8 heads, d 128,
 * context 8k, 2048 beat 1024 by 2 (int8) to 9 (int4) points of the copy roofline (4 splits: 512 blocks, one wave at 4
 * blocks per SM; bench/cuda_attention.ts, 2026-11-24).
 */
export const ATTN_SPLIT_QUANT = 2048;
/** Threads per block of attn_combine (COMB_THREADS in attn_decode.cu): each takes head dims i and i + 128. */
export const COMBINE_THREADS = 128;
export { ATTN_MAX_GROUP, type CudaKv } from "./kv.ts";

export interface RopeKvArgs {
  /** [n, (nh+2nkv)*d] f32 */ readonly qkv: DevPtr;
  /** [maxPos, d/2] f32 */ readonly cos: DevPtr;
  /** [maxPos, d/2] f32 */ readonly sin: DevPtr;
  /** [d] f32 or 0n */ readonly qNorm: DevPtr;
  /** [d] f32 or 0n */ readonly kNorm: DevPtr;
  /** [n] i32 */ readonly positions: DevPtr;
  /** [n] i32, -1 skips the KV write */ readonly slots: DevPtr;
  /** out [n, nh, d] f32 */ readonly q: DevPtr;
  /** rows [numBlocks, nkv, blockSize, kvRowBytes] (kv.ts layout) */ readonly kCache: DevPtr;
  /** rows [numBlocks, nkv, blockSize, kvRowBytes] */ readonly vCache: DevPtr;
  /** [numBlocks, nkv, blockSize, 2] f16 (scale, zero): int8 / int4 caches only */ readonly kScale?: DevPtr;
  /** [numBlocks, nkv, blockSize, 2] f16 (scale, zero): int8 / int4 caches only */ readonly vScale?: DevPtr;
  readonly n: number;
  readonly nh: number;
  readonly nkv: number;
  readonly d: number;
  readonly blockSize: number;
  readonly eps: number;
}

export interface AttentionArgs {
  /** [n, nh, d] f32 */ readonly q: DevPtr;
  /** rows [numBlocks, nkv, blockSize, kvRowBytes] (kv.ts layout) */ readonly kCache: DevPtr;
  readonly vCache: DevPtr;
  /** [numBlocks, nkv, blockSize, 2] f16 (scale, zero): int8 / int4 caches only */ readonly kScale?: DevPtr;
  readonly vScale?: DevPtr;
  /** [B, maxBlocks] i32 */ readonly blockTables: DevPtr;
  /** [n] i32 sequence of each token */ readonly tokenSeq: DevPtr;
  /** [n] i32 */ readonly positions: DevPtr;
  /** [rows] i32 tokens this launch handles, or 0n: all n tokens in order */ readonly tokenList: DevPtr;
  /** tokens handled (n when tokenList is 0n) */ readonly rows: number;
  /** scratch [rows, nh, splits, d] f32 */ readonly partO: DevPtr;
  /** scratch [rows, nh, splits, 2] f32 */ readonly partML: DevPtr;
  /** out [n, nh*d] act dtype */ readonly out: DevPtr;
  readonly n: number;
  readonly nh: number;
  readonly nkv: number;
  readonly d: number;
  readonly blockSize: number;
  readonly maxBlocks: number;
  /** from attentionPlan: splits may exceed what a token needs (those splits are empty) */
  readonly splits: number;
  readonly splitLen: number;
  /** 0: no sliding window */
  readonly window: number;
  readonly scale: number;
  /** Benchmarks only: a register-budget variant of attn_split (DECODE_VARIANTS); omitted: the default kernel. */
  readonly variant?: DecodeVariant;
}

/**
 * Bench-only variants of attn_split at d = 128 and groups of <= 8 heads (int8 / int4): s3 takes 3 cp.async stages per
 * warp (default: kv.ts decodeStages), v0 reads V's fragments as per-lane shared-memory words (vFragQ) instead of by
 * ldmatrix.trans, p2 computes two tiles per iteration (4 stages); lo (loads only) and co (math only on stale stages)
 * are diagnostics whose results are wrong.
 */
export const DECODE_VARIANTS = {
  s3: { kvs: ["int8", "int4"], stages: 3 },
  v0: { kvs: ["int8", "int4"], stages: 2 },
  p2: { kvs: ["int8", "int4"], stages: 4 },
  lo: { kvs: ["int8", "int4"], stages: 2 },
  co: { kvs: ["int8", "int4"], stages: 2 },
} as const;
export type DecodeVariant = keyof typeof DECODE_VARIANTS;

/** Query rows (token x head of one KV group) and keys per step of the prefill kernel (attn_prefill.cu). */
export const PF_ROWS = 64, PF_KEYS = 32;

/** The prefill kernel takes head dims up to 128 (multiples of 8) and groups up to PF_ROWS heads. */
export function prefillKernelFits(G: number, d: number): boolean {
  return d % 8 === 0 && d <= 128 && G <= PF_ROWS;
}

/** Head dims of the tensor-core prefill kernel (attn_prefill_tc_<kv>_d<D>_<act> in attn_prefill.cu). */
export const PFT_DIMS: readonly number[] = [64, 80, 96, 128];
/** Keys per step and warps (16 query rows each) of attn_prefill_tc (PFT_KEYS, PFT_WARPS in attn_prefill.cu). */
export const PFT_KEYS = 64, PFT_WARPS = 4;

/** The tensor-core prefill kernel takes f16 / bf16 caches, head dims PFT_DIMS and groups up to PF_ROWS heads. */
export function prefillTcFits(kv: CudaKv, G: number, d: number): boolean {
  return (kv === "bf16" || kv === "f16") && PFT_DIMS.includes(d) && G <= PF_ROWS;
}

/** Dynamic shared memory of attn_prefill_tc (pftSmemBytes): 2 stages of K and V [PFT_KEYS, d + 8] 16-bit + masks. */
export function prefillTcSmemBytes(d: number): number {
  return 2 * 2 * PFT_KEYS * (d + 8) * 2 + 2 * (PFT_KEYS / 32) * 4;
}

/**
 * Which prefill kernel: "tc" (tensor cores; q and p rounded to the cache type, see attn_prefill.cu) or "cores" (f32 on
 * CUDA cores, exact to f32 rounding). auto: "tc" where it fits, with 16-bit activations (f32 activations keep the
 * exact kernel) and unless TURBODENO_CUDA_PREFILL_TC=0.
 */
export type PrefillKernel = "tc" | "cores";

export interface PrefillArgs {
  /** [n, nh, d] f32 */ readonly q: DevPtr;
  /** rows [numBlocks, nkv, blockSize, kvRowBytes] (kv.ts layout) */ readonly kCache: DevPtr;
  readonly vCache: DevPtr;
  /** [numBlocks, nkv, blockSize, 2] f16 (scale, zero): int8 / int4 caches only */ readonly kScale?: DevPtr;
  readonly vScale?: DevPtr;
  /** [B, maxBlocks] i32 */ readonly blockTables: DevPtr;
  /** [n] i32 */ readonly positions: DevPtr;
  /** [tiles, 3] i32: sequence, first token, token count (<= PF_ROWS / G, consecutive positions) */
  readonly tileList: DevPtr;
  readonly tiles: number;
  /** out [n, nh*d] act dtype (rows of the tiles' tokens) */ readonly out: DevPtr;
  readonly nh: number;
  readonly nkv: number;
  readonly d: number;
  readonly blockSize: number;
  readonly maxBlocks: number;
  readonly window: number;
  readonly scale: number;
  /** Tests and benchmarks: force one kernel (it must fit); omitted: the automatic choice (PrefillKernel). */
  readonly kernel?: PrefillKernel;
}

/** Keys per split of decode-sized steps (ATTN_SPLIT_DECODE; benches may change it before graphs are captured). */
export const decodeSplit = { len: ATTN_SPLIT_DECODE };

export interface AttentionPlan {
  readonly splitLen: number;
  readonly splits: number;
}

/**
 * Split-K plan of one attention launch. `span`: the longest attended span in the step (for a graph: the longest
 * possible). Decode-sized steps (n <= 8 tokens) take short splits, capped at 256 splits. With int8 / int4 KV (`kv`),
 * larger steps take splits of up to ATTN_SPLIT_QUANT keys while that leaves at least 4 splits.
 */
export function attentionPlan(n: number, span: number, kv?: CudaKv): AttentionPlan {
  let splitLen = ATTN_SPLIT;
  if (n > 8 && kv !== undefined && kvQuantized(kv)) {
    while (splitLen < ATTN_SPLIT_QUANT && span >= 8 * splitLen) splitLen *= 2;
  } else if (n <= 8) {
    splitLen = decodeSplit.len;
    while (Math.ceil(span / splitLen) > 256) splitLen *= 2;
  }
  return { splitLen, splits: Math.max(1, Math.ceil(span / splitLen)) };
}

/** Scale pointers of a launch: required (non-null) for int8 / int4 caches, null otherwise. */
