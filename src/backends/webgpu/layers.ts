// The transformer layers of one step, encoded into the step's compute pass, and the ops (call sites) they use.
// Two encodings of the same math:
//   - unfused (prefill, and matrices the fused GEMV cannot load, act-order ones included): per layer
//     rmsnorm(+residual) → qkv → rope_kv → attention → o → rmsnorm(+residual) → gate|up → silu_mul → down,
//     9-10 dispatches;
//   - fused (decode rows; dense f16/f32 matrices, or int4 / int8 / fp8 ones whose K and group hold whole 16-byte
//     chunks; fused.ts): qkv GEMV with the RMSNorm in its prologue → rope_kv → attention → o GEMV adding into the
//     residual stream → gate|up GEMV with the RMSNorm prologue and SiLU-mul of each gate / up row pair in its
//     epilogue → down GEMV adding into the residual stream: 5 dispatches (6 with split-K attention). The o and down
//     GEMVs also write xg = x * (the next RMSNorm's weight), so the next qkv / gate|up GEMV reads one input vector per
//     weight chunk (its prologue only sums x^2, split over the workgroup); layer 0's qkv applies the norm weight
//     itself (the embedding writes only x).
// After either, x holds the residual stream; the unfused path leaves the last down output in y (not yet added).
import type { ModelSpec, StepInputs } from "../../core/types.ts";
import { AttentionOp, type KvStore, RopeKvOp } from "./attention.ts";
import type { GpuContext } from "./context.ts";
import {
  DECODE_GEMV_SHAPES,
  DECODE_QGEMV_SHAPES,
  fitGemvShape,
  fusedLinearFits,
  FusedLinearOp,
  type FusedQuant,
  gemvChunk,
  type GemvRole,
} from "./fused.ts";
import { EmbedOp, GEMV_MAX_ROWS, LinearOp, RmsNormOp, SampleOp, SiluMulOp } from "./kernels.ts";
import type { StepPlan } from "./plan.ts";
import { type AnyLinearOp, encodeLinear, isQuant, type Matrix, QuantLinearOp } from "./qlinear.ts";
import type { StorageType } from "./shaders.ts";
import type { GpuWeights } from "./weights.ts";

/** The call sites of one model; each owns its uniform slot, shared by all layers within a step. */
export interface ModelOps {
  readonly embed: EmbedOp;
  readonly normFirst: RmsNormOp;
  readonly norm: RmsNormOp;
  /** Linear layers: QuantLinearOp where the model's matrices are int8/int4/fp8 (qlinear.ts). */
  readonly qkv: AnyLinearOp;
  readonly rope: RopeKvOp;
  readonly attn: AttentionOp;
  readonly o: AnyLinearOp;
  readonly gu: AnyLinearOp;
  readonly silu: SiluMulOp;
  readonly down: AnyLinearOp;
  /** Fused decode GEMVs (fused.ts), null where the matrices do not fit its loads (fusedLinearFits) or mix formats. */
  readonly fused: {
    /** Layer 0's qkv (RMSNorm prologue over the embedding); later layers' qkv reads the pre-scaled xg. */
    readonly qkv0: FusedLinearOp;
    readonly qkv: FusedLinearOp;
    readonly o: FusedLinearOp;
    readonly gu: FusedLinearOp;
    readonly down: FusedLinearOp;
    /** LM head rows of decode steps (no prologue / epilogue: the wide-load GEMV). */
    readonly lm: FusedLinearOp;
  } | null;
  /** Per LM-head chunk (usually one). */
  readonly final: RmsNormOp[];
  readonly lm: LinearOp[];
  readonly sample: SampleOp[];
}

export interface ModelState {
  readonly ctx: GpuContext;
  readonly spec: ModelSpec;
  readonly w: GpuWeights;
  readonly ops: ModelOps;
  /** [maxPositions, headDim / 2] vec2<f32> (cos, sin) */
  readonly rope: GPUBuffer;
  /** Per layer K / V caches (attention.ts kvLayerBytes) */
  readonly kc: readonly GPUBuffer[];
  readonly vc: readonly GPUBuffer[];
  readonly numBlocks: number;
  readonly blockSize: number;
  /** Fixed split-K partition (tests); 0 lets planAttention choose. */
  readonly partition: number;
  /** Use the fused decode encoding where it applies (default true; tests compare both). */
  readonly fuse?: boolean;
}

/** The op for a linear layer whose matrix (every layer's, alike) is `m`. */
function linearOp(ctx: GpuContext, name: string, wt: StorageType, m: Matrix | undefined, actOrder: boolean) {
  if (m && isQuant(m)) return QuantLinearOp.create(ctx, name, m.bits, m.group, m.fp8, actOrder);
  return LinearOp.create(ctx, name, wt);
}

/** Whether some layer's `role` matrix carries an act-order input permutation (GPTQ g_idx). */
function permuted(w: GpuWeights, role: "qkv" | "o" | "gu" | "down"): boolean {
  return w.layers.some((L) => {
    const m = L[role];
    return isQuant(m) && m.perm !== null;
  });
}

export async function createModelOps(ctx: GpuContext, spec: ModelSpec, w: GpuWeights, kt: KvStore) {
  const wt = w.wt, L = w.layers[0];
  // The layers' matrices are all dense, or all quantized alike (then the fused GEMVs dequantize; the LM head stays
  // dense).
  const mats = L ? [L.qkv, L.o, L.gu, L.down] : [];
  const q0 = mats.find(isQuant);
  const fq: FusedQuant | null = q0 ? { bits: q0.bits, fp8: q0.fp8, group: q0.group } : null;
  const alike = mats.every((m) =>
    fq ? isQuant(m) && m.bits === fq.bits && m.fp8 === fq.fp8 && m.group === fq.group : !isQuant(m)
  );
  // Act-order matrices (an input permutation, GPTQ g_idx) take the unfused path, whose QuantLinearOp gathers x first.
  const perm = { qkv: permuted(w, "qkv"), o: permuted(w, "o"), gu: permuted(w, "gu"), down: permuted(w, "down") };
  const h = spec.hiddenSize, F = spec.intermediateSize, qd = spec.numHeads * spec.headDim;
  const canFuse = !!L && alike && !Object.values(perm).some(Boolean) &&
    [h, F, qd].every((k) => fusedLinearFits(k, fq ?? undefined)) && fusedLinearFits(h);
  const lw = fq ?? wt; // the layers' matrices
  const shape = (r: GemvRole, K: number) =>
    r !== "lm" && fq
      ? fitGemvShape(DECODE_QGEMV_SHAPES[r], K, gemvChunk(fq))
      : fitGemvShape(DECODE_GEMV_SHAPES[r], K, gemvChunk(wt));
  const ops: ModelOps = {
    embed: await EmbedOp.create(ctx, "embed", wt),
    normFirst: await RmsNormOp.create(ctx, "norm.first"),
    norm: await RmsNormOp.create(ctx, "norm"),
    qkv: await linearOp(ctx, "linear.qkv", wt, L?.qkv, perm.qkv),
    rope: await RopeKvOp.create(ctx, "rope_kv", kt, spec.headDim),
    attn: await AttentionOp.create(ctx, "attn", kt, spec.headDim),
    o: await linearOp(ctx, "linear.o", wt, L?.o, perm.o),
    gu: await linearOp(ctx, "linear.gate_up", wt, L?.gu, perm.gu),
    silu: await SiluMulOp.create(ctx, "silu_mul"),
    down: await linearOp(ctx, "linear.down", wt, L?.down, perm.down),
    fused: canFuse
      ? {
        qkv0: await FusedLinearOp.create(ctx, "fused.qkv0", lw, "norm", "store", shape("qkv", h)),
        qkv: await FusedLinearOp.create(ctx, "fused.qkv", lw, "prenorm", "store", shape("qkv", h)),
        o: await FusedLinearOp.create(ctx, "fused.o", lw, "none", "addnorm", shape("o", qd)),
        gu: await FusedLinearOp.create(ctx, "fused.gate_up", lw, "prenorm", "silupair", shape("gu", h)),
        down: await FusedLinearOp.create(ctx, "fused.down", lw, "none", "addnorm", shape("down", F)),
        lm: await FusedLinearOp.create(ctx, "fused.lm_head", wt, "none", "store", shape("lm", h)),
      }
      : null,
    final: [],
    lm: [],
    sample: [],
  };
  await ensureChunkOps(ctx, ops, 1, wt);
  return ops;
}

export async function ensureChunkOps(ctx: GpuContext, ops: ModelOps, n: number, wt: StorageType): Promise<void> {
  for (let c = ops.final.length; c < n; c++) {
    ops.final.push(await RmsNormOp.create(ctx, `norm.final.${c}`));
    ops.lm.push(await LinearOp.create(ctx, `linear.lm_head.${c}`, wt));
    ops.sample.push(await SampleOp.create(ctx, `sample.${c}`));
  }
}

/** Whether this step takes the fused encoding: decode-sized (GEMV) rows over dense matrices. */
export function fusedStep(m: ModelState, T: number): boolean {
  return m.fuse !== false && m.ops.fused !== null && T <= GEMV_MAX_ROWS;
}

/** Step-level buffers the layers read and write. */
export interface LayerBufs {
  /** [T] i32 */ readonly tok: GPUBuffer;
  /** [T] i32 */ readonly pos: GPUBuffer;
  /** [T] i32 */ readonly slots: GPUBuffer;
  /** [B, maxBlocks] i32 */ readonly bt: GPUBuffer;
  /** [nItems, 2] u32 */ readonly items: GPUBuffer;
  /** [nTiles, 8] u32 */ readonly tiles: GPUBuffer;
}

/**
 * Prepares every op for this step and encodes embedding + all layers into `pass`. Returns the residual stream x
 * [T, h] f32 and, for the unfused path, y [T, h] f32 holding the last layer's down output still to be added
 * (null on the fused path, which has added it).
 */
export function encodeLayers(
  m: ModelState,
  step: StepInputs,
  plan: StepPlan,
  pass: GPUComputePassEncoder,
  b: LayerBufs,
): { x: GPUBuffer; y: GPUBuffer | null } {
  const { ctx, spec, w, ops } = m;
  const { T } = plan;
  const h = spec.hiddenSize, d = spec.headDim, F = spec.intermediateSize, eps = spec.rmsEps;
  const qkvDim = (spec.numHeads + 2 * spec.numKvHeads) * d, qd = spec.numHeads * d;
  const pool = ctx.pool;
  const fused = fusedStep(m, T) ? ops.fused : null;
  const x = pool.scratch("x", T * h * 4); // [T, h] f32 residual stream
  const xn = pool.scratch("xn", T * h * 4); // [T, h] f32 normed (unfused path)
  const qkv = pool.scratch("qkv", T * qkvDim * 4); // [T, (nh + 2 nkv) d] f32
  const attnOut = pool.scratch("attn", T * qd * 4); // [T, nh, d] f32
  const y = pool.scratch("y", T * h * 4); // [T, h] f32 o_proj, then down_proj output (unfused path)
  const gu = pool.scratch("gate_up", T * 2 * F * 4); // [T, 2F] f32
  const act = pool.scratch("act", T * F * 4); // [T, F] f32 (unfused path)
  const part = pool.scratch("attn_partials", AttentionOp.partialBytes(plan.attention, spec.numHeads, d));

  ops.embed.prepare({ n: T, h, vocab: spec.vocabSize });
  ops.rope.prepare({
    T,
    numHeads: spec.numHeads,
    kvHeads: spec.numKvHeads,
    headDim: d,
    blockSize: m.blockSize,
    numBlocks: m.numBlocks,
    qkNorm: spec.qkNorm,
    eps,
    ropeRows: spec.maxPositions,
  });
  ops.attn.prepare({
    numHeads: spec.numHeads,
    kvHeads: spec.numKvHeads,
    headDim: d,
    blockSize: m.blockSize,
    numBlocks: m.numBlocks,
    maxBlocks: step.maxBlocksPerSeq,
    qStride: qkvDim,
    window: spec.slidingWindow,
    scale: 1 / Math.sqrt(d),
  }, plan.attention);
  const attention = (l: number) => {
    const L = w.layers[l]!, kc = m.kc[l]!, vc = m.vc[l]!;
    ops.rope.encode(pass, { qkv, pos: b.pos, slots: b.slots, rope: m.rope, qNorm: L.qNorm, kNorm: L.kNorm, kc, vc });
    ops.attn.encode(pass, { qkv, kc, vc, bt: b.bt, items: b.items, tiles: b.tiles, pos: b.pos, out: attnOut, part });
  };
  ops.embed.encode(pass, { ids: b.tok, table: w.embed, x });

  if (fused) {
    const xg = pool.scratch("xg", T * h * 4); // [T, h] f32 x * the next RMSNorm's weight
    fused.qkv0.prepare({ M: T, N: qkvDim, K: h, bias: spec.attentionBias, eps });
    fused.qkv.prepare({ M: T, N: qkvDim, K: h, bias: spec.attentionBias, eps });
    fused.o.prepare({ M: T, N: h, K: qd, bias: spec.outputBias, eps });
    fused.gu.prepare({ M: T, N: 2 * F, K: h, bias: spec.mlpBias, eps });
    fused.down.prepare({ M: T, N: h, K: F, bias: spec.mlpBias, eps });
    for (let l = 0; l < spec.numLayers; l++) {
      const L = w.layers[l]!;
      const qb = { w: L.qkv, bias: L.qkvBias, y: qkv };
      if (l === 0) fused.qkv0.encode(pass, { x, norm: L.inputNorm, ...qb });
      else fused.qkv.encode(pass, { x: xg, residual: x, ...qb });
      attention(l);
      fused.o.encode(pass, { x: attnOut, w: L.o, bias: L.oBias, y: x, nextNorm: L.postNorm, xg });
      fused.gu.encode(pass, { x: xg, residual: x, w: L.gu, bias: L.guBias, y: act });
      // The last layer's xg (times the final norm's weight) goes unread: the head gathers and norms x itself.
      const nextNorm = w.layers[l + 1]?.inputNorm ?? w.finalNorm;
      fused.down.encode(pass, { x: act, w: L.down, bias: L.downBias, y: x, nextNorm, xg });
    }
    return { x, y: null };
  }

  ops.normFirst.prepare({ n: T, h, eps, residual: false, gather: false, rows: T });
  ops.norm.prepare({ n: T, h, eps, residual: true, gather: false, rows: T });
  ops.qkv.prepare({ M: T, N: qkvDim, K: h, bias: spec.attentionBias });
  ops.o.prepare({ M: T, N: h, K: qd, bias: spec.outputBias });
  ops.gu.prepare({ M: T, N: 2 * F, K: h, bias: spec.mlpBias });
  ops.silu.prepare({ T, F });
  ops.down.prepare({ M: T, N: h, K: F, bias: spec.mlpBias });
  for (let l = 0; l < spec.numLayers; l++) {
    const L = w.layers[l]!;
    if (l === 0) ops.normFirst.encode(pass, { x, w: L.inputNorm, y: xn });
    else ops.norm.encode(pass, { x, r: y, w: L.inputNorm, y: xn });
    encodeLinear(ops.qkv, pass, { x: xn, w: L.qkv, bias: L.qkvBias, y: qkv });
    attention(l);
    encodeLinear(ops.o, pass, { x: attnOut, w: L.o, bias: L.oBias, y });
    ops.norm.encode(pass, { x, r: y, w: L.postNorm, y: xn });
    encodeLinear(ops.gu, pass, { x: xn, w: L.gu, bias: L.guBias, y: gu });
    ops.silu.encode(pass, { gu, act });
    encodeLinear(ops.down, pass, { x: act, w: L.down, bias: L.downBias, y });
  }
  return { x, y };
}
