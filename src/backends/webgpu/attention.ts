// Attention-side kernels: the fused q/k-norm + RoPE + paged KV write (wgsl/rope_kv.wgsl), and paged attention
// (wgsl/attn_decode.wgsl for single-token queries with split-K, wgsl/attn_prefill.wgsl for prefill chunks).
// planAttention() decides on the host which tokens take which kernel and how long contexts are split.
// With an int8/int4 cache (KvStore "int8" | "int4") rope_kv leaves the cache alone and wgsl/kv_write_q.wgsl
// quantizes the new K and V heads into it (layout: wgsl/kv_quant.wgsl); attention dequantizes in its load path.
import { dim, type GpuContext, need, type ParamSlot } from "./context.ts";
import { BYTES } from "./kernels.ts";
import type { Kernel, ShaderDefs, StorageType } from "./shaders.ts";

/** How the KV cache stores values: dense KT (f32 / f16) or packed int8 / int4 with per-token f16 (scale, zero). */
export type KvStore = StorageType | "int8" | "int4";

/** Bits of a quantized cache, 0 for a dense one. */
export function kvBits(kt: KvStore): 0 | 4 | 8 {
  return kt === "int8" ? 8 : kt === "int4" ? 4 : 0;
}

/** Shader variant of the cache loads (wgsl/kv_load.wgsl or kv_load_q.wgsl) for `kt`. */
function kvDefs(kt: KvStore, consts: Readonly<Record<string, number>>): ShaderDefs {
  const bits = kvBits(kt);
  if (!bits) return { kt: kt as StorageType, consts };
  return { consts: { ...consts, KV_BITS: bits }, files: { "kv_load.wgsl": "kv_load_q.wgsl" } };
}

export interface KvDims {
  readonly numHeads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly blockSize: number;
  readonly numBlocks: number;
}

function checkKvDims(d: KvDims, what: string, kt: KvStore = "f32"): void {
  for (const k of ["numHeads", "kvHeads", "headDim", "blockSize", "numBlocks"] as const) dim(d[k], `${what} ${k}`);
  if (d.numHeads % d.kvHeads) throw new RangeError(`${what}: numHeads ${d.numHeads} % kvHeads ${d.kvHeads} != 0`);
  if (d.headDim % 4 || d.headDim > 256) throw new RangeError(`${what}: headDim ${d.headDim} must be 4k <= 256`);
  if (kt === "int4" && d.headDim % 8) throw new RangeError(`${what}: an int4 cache needs headDim % 8 == 0`);
}

/**
 * Bytes of one layer's K (or V) cache: dense [numBlocks, kvHeads, blockSize, headDim] KT; int8/int4 [numBlocks,
 * kvHeads] regions of [blockSize, headDim * bits / 32] u32 packed q then [blockSize] u32 f16 (scale, zero) pairs.
 */
export function kvLayerBytes(d: KvDims, kt: KvStore): number {
  const bits = kvBits(kt);
  const perToken = bits ? (d.headDim * bits) / 8 + 4 : d.headDim * BYTES[kt as StorageType];
  return d.numBlocks * d.kvHeads * d.blockSize * perToken;
}

export interface RopeKvParams extends KvDims {
  readonly T: number;
  readonly qkNorm: boolean;
  readonly eps: number;
  /** Rows of the (cos, sin) table, i.e. the largest position + 1 it covers. */
  readonly ropeRows: number;
}

export class RopeKvOp {
  #p: RopeKvParams | null = null;
  private constructor(
    private readonly ctx: GpuContext,
    private readonly slot: ParamSlot,
    private readonly k: Kernel,
    private readonly kt: KvStore,
    /** int8/int4 cache: the quantize-on-write kernel and its uniform. */
    private readonly q: { k: Kernel; slot: ParamSlot } | null,
  ) {}
  /** headDim is needed (compile-time) only for an int8/int4 cache. */
  static async create(ctx: GpuContext, name: string, kt: KvStore, headDim = 0): Promise<RopeKvOp> {
    const bits = kvBits(kt);
    const defs = bits ? { consts: { KV_WRITE: 0 } } : { kt: kt as StorageType, consts: { KV_WRITE: 1 } };
    const k = await ctx.pipelines.get("rope_kv.wgsl", "rope_kv", defs);
    let q = null;
    if (bits) {
      dim(headDim, "rope_kv headDim");
      const qk = await ctx.pipelines.get("kv_write_q.wgsl", "kv_write_q", {
        consts: { HEAD_DIM: headDim, KV_BITS: bits },
      });
      q = { k: qk, slot: ctx.slot(`${name}.quant`, qk) };
    }
    return new RopeKvOp(ctx, ctx.slot(name, k), k, kt, q);
  }
  prepare(p: RopeKvParams): void {
    checkKvDims(p, "rope_kv", this.kt);
    dim(p.T, "rope_kv T");
    dim(p.ropeRows, "rope_kv ropeRows");
    const { T, numHeads, kvHeads, headDim, blockSize, eps } = p;
    this.slot.write(this.ctx.device, {
      T,
      numHeads,
      kvHeads,
      headDim,
      blockSize,
      qkNorm: p.qkNorm ? 1 : 0,
      eps,
      _pad: 0,
    });
    this.q?.slot.write(this.ctx.device, { T, numHeads, kvHeads, blockSize });
    this.#p = p;
  }
  /**
   * qkv [T, (numHeads + 2 kvHeads) headDim] f32 (q and k rotated in place), pos/slots [T] i32,
   * rope [ropeRows, headDim/2] vec2 f32, qNorm/kNorm [headDim] f32, kc/vc one layer's K / V cache (kvLayerBytes)
   */
  encode(
    pass: GPUComputePassEncoder,
    b: {
      qkv: GPUBuffer;
      pos: GPUBuffer;
      slots: GPUBuffer;
      rope: GPUBuffer;
      qNorm?: GPUBuffer | null;
      kNorm?: GPUBuffer | null;
      kc: GPUBuffer;
      vc: GPUBuffer;
    },
  ): void {
    const p = this.#p;
    if (!p) throw new Error("RopeKvOp: encode() before prepare()");
    const heads = p.numHeads + 2 * p.kvHeads;
    need(b.qkv, p.T * heads * p.headDim * 4, "rope_kv qkv");
    need(b.pos, p.T * 4, "rope_kv pos");
    need(b.slots, p.T * 4, "rope_kv slots");
    need(b.rope, p.ropeRows * p.headDim * 4, "rope_kv rope");
    need(b.kc, kvLayerBytes(p, this.kt), "rope_kv kc");
    need(b.vc, kvLayerBytes(p, this.kt), "rope_kv vc");
    if (p.qkNorm && !(b.qNorm && b.kNorm)) throw new Error("rope_kv: qkNorm set but no q/k norm weights given");
    const d = this.ctx.dummy;
    const q = this.q;
    // A quantized cache is not written by rope_kv (KV_WRITE 0): it binds a stand-in there (read-write, so not the
    // read-only dummy of the same dispatch).
    const standin = q ? this.ctx.pool.scratch("kv_standin", 16) : null;
    const caches = standin ? { kc: standin, vc: standin } : { kc: b.kc, vc: b.vc };
    const bufs = { p: this.slot.buffer, ...b, ...caches, qNorm: b.qNorm ?? d, kNorm: b.kNorm ?? d };
    this.ctx.dispatch(pass, this.k, bufs, [heads, p.T]);
    if (q) {
      const qb = { p: q.slot.buffer, qkv: b.qkv, slots: b.slots, kc: b.kc, vc: b.vc };
      this.ctx.dispatch(pass, q.k, qb, [2 * p.kvHeads, p.T]);
    }
  }
}

/** Host-side split of a step's queries between the two attention kernels. */
export interface AttentionPlan {
  /** [nItems, 2] u32: (token, sequence) of each sequence that has exactly one query token in the step */
  readonly items: Uint32Array;
  readonly nItems: number;
  /** [nTiles, 8] u32: (sequence, first token, count, 0, kStart, kEnd, 0, 0) of up to 16 query tokens */
  readonly tiles: Uint32Array;
  readonly nTiles: number;
  /** Keys per split-K partition of the decode kernel, and the most partitions any item needs. */
  readonly partition: number;
  readonly maxSplits: number;
}

const PREFILL_TILE = 16;
const MAX_SPLITS = 32;

/**
 * Split-K sizing of the decode kernel (bench/webgpu_decode.ts --attn-split overrides it): the workgroups aimed
 * for, and the shortest partition (keys). A context of at most 256 keys is never split (no reduce dispatch).
 * H100, context 2048, batch 1, 32 heads (17 splits instead of 9): GPU time per decode step 9.03 ms against 9.37 ms
 * with the former 512 / 256 (bench/webgpu_decode.ts --attn-split 512,256, 2026-11-24).
 */
export const ATTENTION_SPLIT = { targetWorkgroups: 1024, minPartition: 128 };

/**
 * Splits the queries: single-token sequences go to the decode kernel (split-K when the grid would otherwise be
 * small: ATTENTION_SPLIT.targetWorkgroups are aimed for, up to 32 partitions of at least minPartition keys, in
 * multiples of 128); longer ones to prefill tiles.
 */
export function planAttention(
  queryStarts: Int32Array,
  positions: Int32Array,
  numHeads: number,
  window: number | null,
  opts: { partition?: number } = {},
): AttentionPlan {
  const B = queryStarts.length - 1;
  const first = (p: number) => (window ? Math.max(0, p - window + 1) : 0);
  const items: number[] = [];
  const tiles: number[] = [];
  let maxCtx = 1;
  for (let b = 0; b < B; b++) {
    const s = queryStarts[b]!, e = queryStarts[b + 1]!;
    if (e - s === 1) {
      items.push(s, b);
      maxCtx = Math.max(maxCtx, positions[s]! + 1 - first(positions[s]!));
      continue;
    }
    for (let t0 = s; t0 < e; t0 += PREFILL_TILE) {
      const n = Math.min(PREFILL_TILE, e - t0);
      let kStart = Infinity, kEnd = 0;
      for (let t = t0; t < t0 + n; t++) {
        kStart = Math.min(kStart, first(positions[t]!));
        kEnd = Math.max(kEnd, positions[t]! + 1);
      }
      tiles.push(b, t0, n, 0, kStart, kEnd, 0, 0);
    }
  }
  const nItems = items.length / 2;
  let partition = opts.partition ?? 0;
  if (!partition) {
    const { targetWorkgroups, minPartition } = ATTENTION_SPLIT;
    const want = Math.min(MAX_SPLITS, Math.max(1, Math.floor(targetWorkgroups / Math.max(1, nItems * numHeads))));
    const least = maxCtx <= 256 ? 256 : minPartition;
    partition = Math.max(least, Math.ceil(maxCtx / want / 128) * 128); // whole 128-key chunks of the kernel
  }
  dim(partition, "attention partition");
  return {
    items: Uint32Array.from(items),
    nItems,
    tiles: Uint32Array.from(tiles),
    nTiles: tiles.length / 8,
    partition,
    maxSplits: Math.ceil(maxCtx / partition),
  };
}

export interface AttentionParams extends KvDims {
  readonly maxBlocks: number;
  /** Row stride of the qkv buffer in floats; query head h starts at h * headDim. */
  readonly qStride: number;
  readonly window: number | null;
  readonly scale: number;
}

/** Rows of keys per prefill tile step: keeps K and V tiles within 8 KiB of workgroup memory. */
export function prefillKvTile(headDim: number): number {
  return Math.min(16, Math.max(4, Math.floor(1024 / headDim)));
}

export class AttentionOp {
  #a: AttentionParams | null = null;
  #plan: AttentionPlan | null = null;
  private constructor(
    private readonly ctx: GpuContext,
    private readonly kt: KvStore,
    private readonly k: { decode: Kernel; reduce: Kernel; prefill: Kernel },
    private readonly s: { decode: ParamSlot; prefill: ParamSlot },
  ) {}
  static async create(ctx: GpuContext, name: string, kt: KvStore, headDim: number): Promise<AttentionOp> {
    const dd = kvDefs(kt, { HEAD_DIM: headDim });
    const decode = await ctx.pipelines.get("attn_decode.wgsl", "attn_decode", dd);
    const reduce = await ctx.pipelines.get("attn_decode.wgsl", "attn_reduce", dd);
    const prefill = await ctx.pipelines.get(
      "attn_prefill.wgsl",
      "attn_prefill",
      kvDefs(kt, { HEAD_DIM: headDim, KV_TILE: prefillKvTile(headDim) }),
    );
    const slots = { decode: ctx.slot(`${name}.decode`, decode), prefill: ctx.slot(`${name}.prefill`, prefill) };
    return new AttentionOp(ctx, kt, { decode, reduce, prefill }, slots);
  }

  /** Bytes of the split-K partials buffer this plan needs: [nItems, numHeads, maxSplits, headDim + 2] f32. */
  static partialBytes(plan: AttentionPlan, numHeads: number, headDim: number): number {
    return plan.maxSplits > 1 ? plan.nItems * numHeads * plan.maxSplits * (headDim + 2) * 4 : 4;
  }

  prepare(a: AttentionParams, plan: AttentionPlan): void {
    checkKvDims(a, "attention", this.kt);
    dim(a.maxBlocks, "attention maxBlocks");
    if (a.qStride < a.numHeads * a.headDim) throw new RangeError("attention: qStride is shorter than the q heads");
    if (!(a.scale > 0)) throw new RangeError(`attention: scale must be > 0: ${a.scale}`);
    const { numHeads, kvHeads, headDim, blockSize, maxBlocks, qStride, scale } = a;
    const window = a.window ?? 0;
    const common = { numHeads, kvHeads, blockSize, maxBlocks, qStride, window, scale };
    if (plan.nItems) {
      const { nItems, partition: partLen, maxSplits } = plan;
      const direct = maxSplits === 1 ? 1 : 0;
      this.s.decode.write(this.ctx.device, { ...common, nItems, headDim, partLen, maxSplits, direct });
    }
    if (plan.nTiles) this.s.prefill.write(this.ctx.device, { ...common, nTiles: plan.nTiles });
    this.#a = a;
    this.#plan = plan;
  }

  /**
   * qkv [T, qStride] f32, kc/vc one layer's K / V cache (kvLayerBytes), bt [B, maxBlocks] i32,
   * items [nItems, 2] u32, tiles [nTiles, 8] u32, pos [T] i32, out [T, numHeads, headDim] f32, part (partialBytes)
   */
  encode(
    pass: GPUComputePassEncoder,
    b: Readonly<Record<"qkv" | "kc" | "vc" | "bt" | "items" | "tiles" | "pos" | "out" | "part", GPUBuffer>>,
  ): void {
    const a = this.#a, plan = this.#plan;
    if (!a || !plan) throw new Error("AttentionOp: encode() before prepare()");
    need(b.kc, kvLayerBytes(a, this.kt), "attention kc");
    need(b.vc, kvLayerBytes(a, this.kt), "attention vc");
    need(b.items, plan.nItems * 8, "attention items");
    need(b.tiles, plan.nTiles * 32, "attention tiles");
    need(b.part, AttentionOp.partialBytes(plan, a.numHeads, a.headDim), "attention partials");
    const { qkv, kc, vc, bt, items, tiles, pos, out, part } = b;
    if (plan.nItems) {
      const grid = [plan.nItems, a.numHeads, plan.maxSplits] as const;
      this.ctx.dispatch(pass, this.k.decode, { p: this.s.decode.buffer, qkv, kc, vc, bt, items, pos, out, part }, grid);
      if (plan.maxSplits > 1) {
        const bufs = { p: this.s.decode.buffer, items, pos, out, part };
        this.ctx.dispatch(pass, this.k.reduce, bufs, [plan.nItems, a.numHeads]);
      }
    }
    if (plan.nTiles) {
      const bufs = { p: this.s.prefill.buffer, qkv, kc, vc, bt, tiles, pos, out };
      this.ctx.dispatch(pass, this.k.prefill, bufs, [plan.nTiles, a.numHeads]);
    }
  }
}
