// Typed launchers for every kernel: the grid/block rules live here, so the backend and the tests share them.
import type { DevPtr } from "./ffi.ts";
import type { Kernels } from "./kernels.ts";

export type Half = "bf16" | "f16";
/** Matmul input (activation) dtype: f32 (default; the GEMM splits it into hi + lo halves) or the weight dtype. */
export type ActDType = "f32" | Half;

/**
 * Rows one GEMV launch takes (MAXM of gemv_* in gemm.cu); matmuls up to this many rows take the GEMV kernel, the
 * rest a tensor-core GEMM. (Tried on the H100: 16 rows per GEMV and chunked GEMV up to 64 rows halved batch-16
 * decode and cut batch 64 by 6x: each lane re-reads every row of x per 16-byte weight load.)
 */
export const GEMV_MAX_M = 8;
/** From this many rows the 128x128-tile GEMM takes over from the 64x64 one. */
export const GEMM128_MIN_M = 256;
/** Key positions per attention split for prefill-sized steps; decode steps use shorter splits for parallelism. */
export const ATTN_SPLIT = 256;
export const ATTN_SPLIT_DECODE = 32;
/** Query heads per KV head the attention kernel handles (MAX_G in attention.cu). */
export const ATTN_MAX_GROUP = 16;

export interface RopeKvArgs {
  /** [n, (nh+2nkv)*d] f32 */ readonly qkv: DevPtr;
  /** [maxPos, d/2] f32 */ readonly cos: DevPtr;
  /** [maxPos, d/2] f32 */ readonly sin: DevPtr;
  /** [d] f32 or 0n */ readonly qNorm: DevPtr;
  /** [d] f32 or 0n */ readonly kNorm: DevPtr;
  /** [n] i32 */ readonly positions: DevPtr;
  /** [n] i32, -1 skips the KV write */ readonly slots: DevPtr;
  /** out [n, nh, d] f32 */ readonly q: DevPtr;
  /** [numBlocks, nkv, blockSize, d] kv dtype */ readonly kCache: DevPtr;
  /** [numBlocks, nkv, blockSize, d] kv dtype */ readonly vCache: DevPtr;
  readonly n: number;
  readonly nh: number;
  readonly nkv: number;
  readonly d: number;
  readonly blockSize: number;
  readonly eps: number;
}

export interface AttentionArgs {
  /** [n, nh, d] f32 */ readonly q: DevPtr;
  /** [numBlocks, nkv, blockSize, d] kv dtype */ readonly kCache: DevPtr;
  readonly vCache: DevPtr;
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
}

/** Query rows (token x head of one KV group) and keys per step of the prefill kernel (attention.cu). */
export const PF_ROWS = 64, PF_KEYS = 32;

/** The prefill kernel takes head dims up to 128 (multiples of 8) and groups up to PF_ROWS heads. */
export function prefillKernelFits(G: number, d: number): boolean {
  return d % 8 === 0 && d <= 128 && G <= PF_ROWS;
}

export interface PrefillArgs {
  /** [n, nh, d] f32 */ readonly q: DevPtr;
  /** [numBlocks, nkv, blockSize, d] kv dtype */ readonly kCache: DevPtr;
  readonly vCache: DevPtr;
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
}

export interface AttentionPlan {
  readonly splitLen: number;
  readonly splits: number;
}

/**
 * Split-K plan of one attention launch. `span`: the longest attended span in the step (for a graph: the longest
 * possible). Decode-sized steps (n <= 8 tokens) take short splits, capped at 256 splits.
 */
export function attentionPlan(n: number, span: number): AttentionPlan {
  let splitLen = ATTN_SPLIT;
  if (n <= 8) {
    splitLen = ATTN_SPLIT_DECODE;
    while (Math.ceil(span / splitLen) > 256) splitLen *= 2;
  }
  return { splitLen, splits: Math.max(1, Math.ceil(span / splitLen)) };
}

/** Heads per pass of the attention kernel's weighted-value phase (V_G in attention.cu). */
const ATTN_V_G = 4;

/** Dynamic shared memory of attn_split (layout in attention.cu). */
export function attentionSmemBytes(G: number, d: number, splitLen: number): number {
  const keyGroups = Math.floor(128 / (d / 8));
  return 4 * (G * d + G * splitLen + 1) + 8 + 8 * splitLen + 4 * keyGroups * ATTN_V_G * d;
}

export class CudaOps {
  constructor(readonly k: Kernels, readonly wt: Half, readonly kv: Half, readonly act: ActDType = "f32") {
    if (act !== "f32" && act !== wt) throw new Error(`activation dtype ${act} must be f32 or the weight dtype ${wt}`);
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

  /** out [rows, f] act = silu(gu[:, :f]) * gu[:, f:]; gu [rows, 2f] f32 */
  siluMul(gu: DevPtr, out: DevPtr, rows: number, f: number): void {
    const blocks = Math.min(65535, Math.ceil((rows * f) / 256));
    this.k.launch("silu_mul", this.act, [blocks], [256], { gu, out, rows, f });
  }

  /** ids [rows] i32 = argmax of logits [rows, vocab] f32 */
  argmax(logits: DevPtr, ids: DevPtr, rows: number, vocab: number): void {
    this.k.launch("argmax", "f32", [rows], [1024], { logits, ids, vocab });
  }

  ropeKv(a: RopeKvArgs): void {
    const heads = a.nh + 2 * a.nkv;
    const { n: _n, ...args } = a;
    this.k.launch("rope_kv", this.kv, [a.n, Math.ceil(heads / 4)], [128], args);
  }

  attention(a: AttentionArgs): void {
    const G = a.nh / a.nkv;
    if (!Number.isInteger(G) || G > ATTN_MAX_GROUP) throw new RangeError(`attention: group ${G} unsupported`);
    if (a.d % 8 !== 0 || a.d > 1024) throw new RangeError(`attention: head dim ${a.d} unsupported (multiple of 8)`);
    const smem = attentionSmemBytes(G, a.d, a.splitLen);
    if (a.rows === 0) return;
    this.k.launch("attn_split", this.kv, [a.nkv, a.rows, a.splits], [128], {
      q: a.q,
      kCache: a.kCache,
      vCache: a.vCache,
      blockTables: a.blockTables,
      tokenSeq: a.tokenSeq,
      positions: a.positions,
      tokenList: a.tokenList,
      partO: a.partO,
      partML: a.partML,
      nh: a.nh,
      nkv: a.nkv,
      d: a.d,
      blockSize: a.blockSize,
      maxBlocks: a.maxBlocks,
      splitLen: a.splitLen,
      window: a.window,
      scale: a.scale,
    }, smem);
    const block = Math.min(128, Math.max(32, Math.ceil(a.d / 32) * 32));
    this.k.launch("attn_combine", this.act, [a.rows * a.nh], [block], {
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
    });
  }

  /** Flash-style causal attention over prefill tiles (see PrefillArgs); writes out rows of the tiles' tokens. */
  attentionPrefill(a: PrefillArgs): void {
    if (a.tiles === 0) return;
    if (!prefillKernelFits(a.nh / a.nkv, a.d)) throw new RangeError(`attn_prefill: d=${a.d}, group ${a.nh / a.nkv}`);
    const smem = 4 * (PF_ROWS * (a.d + 1) + PF_KEYS * (a.d + 1) + PF_KEYS * a.d + PF_ROWS * PF_KEYS + PF_KEYS);
    const { tiles, tileList, ...rest } = a;
    this.k.launch(`attn_prefill`, `${this.kv}_${this.act}`, [a.nkv, tiles], [128], { ...rest, tiles: tileList }, smem);
  }

  /** Dynamic shared memory of a GEMM tile config (3 stages of A and B tiles, rows padded by 16 bytes). */
  #gemmSmem(tile: number): number {
    const a = this.actBytes, ldA = 32 + 16 / a, ldB = 32 + 8;
    return 3 * tile * (ldA * a + ldB * 2);
  }

  /** y [M, N] f32 = x [M, K] act · W [N, K]^T (weight dtype) + bias [N] f32 (or 0n) */
  linear(x: DevPtr, W: DevPtr, bias: DevPtr, y: DevPtr, M: number, N: number, K: number): void {
    const kind = M <= GEMV_MAX_M ? "gemv" : M >= GEMM128_MIN_M ? "gemm128" : "gemm";
    this.linearWith(kind, x, W, bias, y, M, N, K);
  }

  /** One matmul path by name (the tests force each). GEMV takes M in chunks of GEMV_MAX_M rows. */
  linearWith(
    kind: "gemv" | "gemm" | "gemm128",
    x: DevPtr,
    W: DevPtr,
    bias: DevPtr,
    y: DevPtr,
    M: number,
    N: number,
    K: number,
  ): void {
    if (kind === "gemv") {
      for (let m0 = 0; m0 < M; m0 += GEMV_MAX_M) {
        const m = Math.min(GEMV_MAX_M, M - m0);
        const xo = x + BigInt(m0 * K * this.actBytes), yo = y + BigInt(m0 * N * 4);
        const kernel = m === 1 ? "gemv1" : "gemv";
        this.k.launch(kernel, this.#mm, [Math.ceil(N / 4)], [128], { x: xo, W, bias, y: yo, M: m, N, K });
      }
      return;
    }
    const tile = kind === "gemm" ? 64 : 128;
    this.k.launch(kind, this.#mm, [Math.ceil(N / tile), Math.ceil(M / tile)], [tile === 64 ? 128 : 256], {
      A: x,
      W,
      bias,
      C: y,
      M,
      N,
      K,
    }, this.#gemmSmem(tile));
  }
}
