// Typed launchers for every kernel: the grid/block rules live here, so the backend and the tests share them.
import { ENV } from "../../core/env.ts";
import type { DevPtr } from "./ffi.ts";
import type { Kernels } from "./kernels.ts";
import {
  attentionSmemBytes,
  type CudaKv,
  DEC_THREADS,
  DECODE_DIMS,
  decodeGroupPad,
  decodeStages,
  kvQuantized,
} from "./kv.ts";
import { type CudaLinear, isQuant, quantLinear } from "./qlinear.ts";
import { skinnyLinear, type SkinnyScratch, skinnyScratch, type SkinnyTile } from "./gemm_skinny.ts";
import { launchSample, type SampleKernel } from "./sampling.ts";
import {
  type AttentionArgs,
  COMBINE_THREADS,
  DECODE_VARIANTS,
  PF_KEYS,
  PF_ROWS,
  PFT_WARPS,
  type PrefillArgs,
  type PrefillKernel,
  prefillKernelFits,
  prefillTcFits,
  prefillTcSmemBytes,
  type RopeKvArgs,
} from "./attention_args.ts";

export * from "./attention_args.ts";

export type Half = "bf16" | "f16";
/** Matmul input (activation) dtype: f32 (default; the GEMM splits it into hi + lo halves) or the weight dtype. */
export type ActDType = "f32" | Half;

/**
 * Rows one GEMV launch takes (MAXM of gemv_* in gemm.cu). (Tried on the H100: 16 rows per GEMV and chunked GEMV up
 * to 64 rows halved batch-16 decode and cut batch 64 by 6x: each lane re-reads every row of x per 16-byte weight
 * load.)
 */
export const GEMV_MAX_M = 8;
/**
 * The 128x128-tile GEMM (else the 64x64 one) beyond the skinny GEMM's range: 16-bit activations from this many
 * rows where it launches at least one block per SM; f32 activations (hi + lo split: twice the MMAs) from
 * GEMM128_MIN_M_F32 (the 64x64 kernel is faster below, bench/cuda_gemm.ts on the H100).
 */
export const GEMM128_MIN_M = 128, GEMM128_MIN_M_F32 = 512;
/**
 * Rows above GEMV_MAX_M up to this many take the skinny split-K GEMM (gemm_skinny.ts), except 16-bit activations
 * from GEMM128_MIN_M rows where gemm128 fills the GPU (gate_up at M = 128: 157 vs 209 us on the H100).
 */
export const SKINNY_MAX_M = 256;
/**
 * attn_split as a programmatic dependent of rope_kv (sm_90). Off: on the H100 its blocks (one per split of the
 * longest context a decode graph serves) then sit resident early and the W4A16 step got slower (3.24 vs 3.16 ms, 8B
 * shape, bench/cuda_step_profile.ts --ablate); the kernel waits either way, so benches may turn it on.
 */
export const attentionLaunch = { pdl: false };

function kvScales(
  kv: CudaKv,
  who: string,
  a: { kScale?: DevPtr; vScale?: DevPtr },
): { kScale: DevPtr; vScale: DevPtr } {
  const kScale = a.kScale ?? 0n, vScale = a.vScale ?? 0n;
  if (kvQuantized(kv) && (kScale === 0n || vScale === 0n)) throw new RangeError(`${who}: ${kv} KV needs kScale/vScale`);
  return kvQuantized(kv) ? { kScale, vScale } : { kScale: 0n, vScale: 0n };
}

/** gemm_wg.cu's dynamic shared memory: 3 stages x (A + W tiles of 128 rows x 64 k) x 2 bytes. */
const WG_SMEM = 3 * 2 * 128 * 64 * 2;

export type MatmulKind = "gemv" | "skinny" | "gemm" | "gemm128" | "wgmma";

/**
 * Rows up to which dense matmuls take the GEMV kernel (<= GEMV_MAX_M; benches change it); the rest take a
 * tensor-core GEMM. One: the GEMV's CUDA-core dot products are compute-bound from two rows (H100, 8B f16 decode step
 * at batch 2 / 4 / 8: 8.83 / 9.23 / 11.45 ms with GEMVs, 7.08 / 7.19 / 7.30 with the skinny GEMM; the batch-1 GEMV
 * streams at ~2.9 TB/s).
 */
export const matmulRouting = { gemvMaxM: 1 };

/**
 * The dense matmul path for M rows and N output columns (thresholds above). `wgmma`: the device runs gemm_wg.cu
 * (compute capability 9.0), which then takes the large 16-bit-activation GEMMs instead of gemm128.
 */
export function matmulKind(M: number, N: number, act: ActDType, smCount: number, wgmma = false): MatmulKind {
  if (M <= matmulRouting.gemvMaxM) return "gemv";
  if (act === "f32") return M <= SKINNY_MAX_M ? "skinny" : M >= GEMM128_MIN_M_F32 ? "gemm128" : "gemm";
  const fills = Math.ceil(N / 128) * Math.ceil(M / 128) >= smCount;
  if (M <= SKINNY_MAX_M && (M < GEMM128_MIN_M || !fills)) return "skinny";
  return wgmma ? "wgmma" : "gemm128";
}

export class CudaOps {
  /** Split-K scratch of the skinny GEMM, per device (allocated here, so never during a graph capture). */
  readonly #skinny: SkinnyScratch;

  constructor(readonly k: Kernels, readonly wt: Half, readonly kv: CudaKv, readonly act: ActDType = "f32") {
    if (act !== "f32" && act !== wt) throw new Error(`activation dtype ${act} must be f32 or the weight dtype ${wt}`);
    this.#skinny = skinnyScratch(k.dev);
  }

  get actBytes(): number {
    return this.act === "f32" ? 4 : 2;
  }

  get #mm(): string {
    return `${this.act}_${this.wt}`;
  }

  /** x [n, h] f32 = table [vocab, h] (weight dtype) rows ids [n] i32 */
  embed(table: DevPtr, ids: DevPtr, x: DevPtr, n: number, h: number, vocab: number): void {
    this.k.launch("embed", this.wt, [n], [128], { table, ids, x, n, h, vocab });
  }

  /** out [rows, h] act = rmsnorm(x[rowIdx[r]] (+= res)) * w; x [*, h] f32, res [*, h] f32 or 0n, w [h] f32 */
  rmsnorm(x: DevPtr, res: DevPtr, rowIdx: DevPtr, w: DevPtr, out: DevPtr, rows: number, h: number, eps: number) {
    this.k.launch("rmsnorm", this.act, [rows], [h >= 1024 ? 1024 : 256], { x, res, rowIdx, w, out, h, eps });
  }

  /** out [rows, f] = silu(gate) * up of gu [rows, N] f32: gate | up halves, or pairs per `half` rows (gate_up.ts). */
  siluMul(gu: DevPtr, out: DevPtr, rows: number, f: number, half = 0): void {
    if (!Number.isInteger(half) || half < 0) throw new RangeError(`silu_mul: half ${half}`);
    const blocks = Math.min(65535, Math.ceil((rows * f) / 256));
    this.k.launch("silu_mul", this.act, [blocks], [256], { gu, out, rows, f, half }, 0, true);
  }

  /** ids [rows] i32 = argmax of logits [rows, vocab] f32 */
  argmax(logits: DevPtr, ids: DevPtr, rows: number, vocab: number): void {
    this.k.launch("argmax", "f32", [rows], [1024], { logits, ids, vocab });
  }

  /**
   * ids [rows] i32 = the token each row of logits [rows, vocab] f32 samples under its config row in cfg [rows] x
   * (temperature f32, topK u32, topP f32, u f32): greedy, temperature, top-k, top-p (sampling.ts, sample.cu).
   */
  sample(logits: DevPtr, cfg: DevPtr, ids: DevPtr, rows: number, vocab: number, kernel?: SampleKernel): void {
    launchSample(this.k, { logits, cfg, ids, rows, vocab, kernel });
  }

  /** RoPE + KV write (int8 / int4: quantized on write, kv.ts layout; needs kScale / vScale). */
  ropeKv(a: RopeKvArgs): void {
    const heads = a.nh + 2 * a.nkv;
    if (kvQuantized(this.kv) && a.d > 1024) throw new RangeError(`rope_kv: head dim ${a.d} > 1024`);
    const { n: _n, ...args } = a;
    const scales = kvScales(this.kv, "rope_kv", a);
    this.k.launch("rope_kv", this.kv, [a.n, Math.ceil(heads / 4)], [128], { ...args, ...scales }, 0, true);
  }

  /**
   * Split-K decode attention on tensor cores (attn_split_<kv>_d<D>_g<GP>: the G query heads of a KV head in n-tiles
   * of 8, GP = 8 or 16) and the combine of its splits (attn_combine, COMBINE_THREADS per (token, head)), a
   * programmatic dependent of attn_split; attn_split one of rope_kv when attentionLaunch.pdl is on.
   */
  attention(a: AttentionArgs): void {
    const G = a.nh / a.nkv, GP = decodeGroupPad(G);
    if (!DECODE_DIMS.includes(a.d)) throw new RangeError(`attention: head dim ${a.d} not in ${DECODE_DIMS.join(", ")}`);
    if (!(a.splitLen > 0 && a.splits > 0)) throw new RangeError(`attention: bad plan ${a.splits} x ${a.splitLen}`);
    if (a.rows === 0) return;
    let suffix = `${this.kv}_d${a.d}_g${GP}`, stages = decodeStages(this.kv);
    if (a.variant) {
      const v = DECODE_VARIANTS[a.variant], kvs: readonly string[] = v.kvs;
      if (!kvs.includes(this.kv) || a.d !== 128 || GP !== 8) throw new RangeError(`attention: no ${a.variant} variant`);
      suffix += `_${a.variant}`;
      stages = v.stages;
    }
    this.k.launch(
      "attn_split",
      suffix,
      [a.nkv, a.rows, a.splits],
      [DEC_THREADS],
      {
        q: a.q,
        kCache: a.kCache,
        vCache: a.vCache,
        ...kvScales(this.kv, "attn_split", a),
        blockTables: a.blockTables,
        tokenSeq: a.tokenSeq,
        positions: a.positions,
        tokenList: a.tokenList,
        partO: a.partO,
        partML: a.partML,
        nh: a.nh,
        nkv: a.nkv,
        blockSize: a.blockSize,
        maxBlocks: a.maxBlocks,
        splitLen: a.splitLen,
        window: a.window,
        scale: a.scale,
      },
      attentionSmemBytes(G, a.d, this.kv, stages),
      attentionLaunch.pdl,
    );
    const combine = {
      partO: a.partO,
      partML: a.partML,
      out: a.out,
      positions: a.positions,
      tokenList: a.tokenList,
      nh: a.nh,
      d: a.d,
      splits: a.splits,
      splitLen: a.splitLen,
      window: a.window,
    };
    // Programmatic dependent launch: attn_combine waits for attn_split's partials with griddepcontrol.wait.
    this.k.launch("attn_combine", this.act, [a.rows * a.nh], [COMBINE_THREADS], combine, 0, true);
  }

  /** Flash-style causal attention over prefill tiles (see PrefillArgs); writes out rows of the tiles' tokens. */
  attentionPrefill(a: PrefillArgs): void {
    if (a.tiles === 0) return;
    const G = a.nh / a.nkv;
    if (!prefillKernelFits(G, a.d)) throw new RangeError(`attn_prefill: d=${a.d}, group ${G}`);
    if (this.prefillKernel(G, a.d, a.kernel) === "tc") {
      if (!prefillTcFits(this.kv, G, a.d)) throw new RangeError(`attn_prefill_tc: ${this.kv} KV, d=${a.d}, group ${G}`);
      const { tiles, tileList, kernel: _, kScale: _k, vScale: _v, d: _d, ...rest } = a;
      const args = { ...rest, tiles: tileList };
      const suffix = `${this.kv}_d${a.d}_${this.act}`;
      this.k.launch("attn_prefill_tc", suffix, [a.nkv, tiles], [PFT_WARPS * 32], args, prefillTcSmemBytes(a.d));
      return;
    }
    const smem = 4 * (PF_ROWS * (a.d + 1) + PF_KEYS * (a.d + 1) + PF_KEYS * a.d + PF_ROWS * PF_KEYS + PF_KEYS);
    const { tiles, tileList, kernel: _, ...rest } = a;
    const args = { ...rest, ...kvScales(this.kv, "attn_prefill", a), tiles: tileList };
    this.k.launch(`attn_prefill`, `${this.kv}_${this.act}`, [a.nkv, tiles], [128], args, smem);
  }

  /** The prefill kernel attentionPrefill launches for group G and head dim d (`force`: PrefillArgs.kernel). */
  prefillKernel(G: number, d: number, force?: PrefillKernel): PrefillKernel {
    if (force) return force;
    return ENV.cudaPrefillTc && this.act !== "f32" && prefillTcFits(this.kv, G, d) ? "tc" : "cores";
  }

  /** Dynamic shared memory of a GEMM tile config (3 stages of A and B tiles, rows padded by 16 bytes). */
  #gemmSmem(tile: number): number {
    const a = this.actBytes, ldA = 32 + 16 / a, ldB = 32 + 8;
    return 3 * tile * (ldA * a + ldB * 2);
  }

  /**
   * y [M, N] f32 = x [M, K] act · W [N, K]^T + bias [N] f32 (or 0n). W: dense (weight dtype) or a QuantMatrix
   * (qlinear.ts; x must then be f16 activations).
   */
  linear(x: DevPtr, W: CudaLinear, bias: DevPtr, y: DevPtr, M: number, N: number, K: number): void {
    if (isQuant(W)) {
      if (this.act !== "f16") throw new Error(`quantized linear needs f16 activations (ops act ${this.act})`);
      if (W.N !== N || W.K !== K) throw new RangeError(`linear: [${N}, ${K}] given a quantized [${W.N}, ${W.K}]`);
      quantLinear(this.k, x, W, bias, y, M);
      return;
    }
    this.linearWith(this.matmulKind(M, N), x, W, bias, y, M, N, K);
  }

  /** The dense matmul path linear() takes for M rows and N output columns. */
  matmulKind(M: number, N: number): MatmulKind {
    return matmulKind(M, N, this.act, this.k.dev.smCount, this.#wgmma);
  }

  /** gemm_wg.cu runs here: its wgmma image is sm_90a (H100 / H200). */
  get #wgmma(): boolean {
    return this.k.dev.cc[0] === 9 && this.k.dev.cc[1] === 0;
  }

  /**
   * One matmul path by name (the tests and benches force each). GEMV takes M in chunks of GEMV_MAX_M rows; `tile`
   * forces the skinny GEMM's variant.
   */
  linearWith(
    kind: MatmulKind,
    x: DevPtr,
    W: DevPtr,
    bias: DevPtr,
    y: DevPtr,
    M: number,
    N: number,
    K: number,
    tile?: SkinnyTile,
  ): void {
    if (kind === "skinny") {
      skinnyLinear(this.k, this.#mm, this.actBytes, this.#skinny, x, W, bias, y, M, N, K, tile);
      return;
    }
    if (kind === "gemv") {
      for (let m0 = 0; m0 < M; m0 += GEMV_MAX_M) {
        const m = Math.min(GEMV_MAX_M, M - m0);
        const xo = x + BigInt(m0 * K * this.actBytes), yo = y + BigInt(m0 * N * 4);
        const kernel = m === 1 ? "gemv1" : "gemv";
        this.k.launch(kernel, this.#mm, [Math.ceil(N / 4)], [128], { x: xo, W, bias, y: yo, M: m, N, K });
      }
      return;
    }
    if (kind === "wgmma") {
      // 16-bit activations, K a multiple of 8 (16-byte rows), sm_90a; anything else takes gemm128.
      if (this.act !== "f32" && K % 8 === 0 && this.#wgmma) {
        const grid = [Math.ceil(N / 128), Math.ceil(M / 128)] as const;
        this.k.launch("gemm_wg", this.wt, grid, [256], { A: x, W, bias, C: y, M, N, K }, WG_SMEM);
        return;
      }
      kind = "gemm128";
    }
    const t = kind === "gemm" ? 64 : 128;
    this.k.launch(kind, this.#mm, [Math.ceil(N / t), Math.ceil(M / t)], [t === 64 ? 128 : 256], {
      A: x,
      W,
      bias,
      C: y,
      M,
      N,
      K,
    }, this.#gemmSmem(t));
  }
}
