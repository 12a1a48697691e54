// One engine step on the GPU: upload the step's index arrays, encode every layer into one compute pass (one
// command buffer, one submit), run the final norm + LM head only on rows that need logits, sample on the GPU
// where sampling.ts allows, copy ids and host-bound logits rows into one staging buffer, and map it once.
import type { ModelSpec, StepInputs, StepResult } from "../../core/types.ts";
import { sampleToken } from "../../sampling/sampler.ts";
import { AttentionOp, type KvStore, RopeKvOp } from "./attention.ts";
import { MAP_READ, USAGE } from "./buffers.ts";
import type { GpuContext } from "./context.ts";
import { EmbedOp, LinearOp, RmsNormOp, SampleOp, SiluMulOp } from "./kernels.ts";
import { planStep, type StepPlan, validateStep } from "./plan.ts";
import { type AnyLinearOp, encodeLinear, isQuant, type Matrix, QuantLinearOp } from "./qlinear.ts";
import { packSampleConfig } from "./sampling.ts";
import type { StorageType } from "./shaders.ts";
import type { GpuWeights } from "./weights.ts";

/** The call sites of one model; each owns its uniform slot, shared by all layers within a step. */
export interface ModelOps {
  readonly embed: EmbedOp;
  readonly normFirst: RmsNormOp;
  readonly norm: RmsNormOp;
  /** Linear layers: QuantLinearOp where the model's matrices are int8/int4 (qlinear.ts). */
  readonly qkv: AnyLinearOp;
  readonly rope: RopeKvOp;
  readonly attn: AttentionOp;
  readonly o: AnyLinearOp;
  readonly gu: AnyLinearOp;
  readonly silu: SiluMulOp;
  readonly down: AnyLinearOp;
  /** Per LM-head chunk (usually one). */
  readonly final: RmsNormOp[];
  readonly lm: LinearOp[];
  readonly sample: SampleOp[];
}

/** The op for a linear layer whose matrix (every layer's, alike) is `m`. */
function linearOp(ctx: GpuContext, name: string, wt: StorageType, m: Matrix | undefined): Promise<AnyLinearOp> {
  if (m && isQuant(m)) return QuantLinearOp.create(ctx, name, m.bits, m.group);
  return LinearOp.create(ctx, name, wt);
}

export async function createModelOps(ctx: GpuContext, spec: ModelSpec, w: GpuWeights, kt: KvStore) {
  const wt = w.wt, L = w.layers[0];
  const ops: ModelOps = {
    embed: await EmbedOp.create(ctx, "embed", wt),
    normFirst: await RmsNormOp.create(ctx, "norm.first"),
    norm: await RmsNormOp.create(ctx, "norm"),
    qkv: await linearOp(ctx, "linear.qkv", wt, L?.qkv),
    rope: await RopeKvOp.create(ctx, "rope_kv", kt, spec.headDim),
    attn: await AttentionOp.create(ctx, "attn", kt, spec.headDim),
    o: await linearOp(ctx, "linear.o", wt, L?.o),
    gu: await linearOp(ctx, "linear.gate_up", wt, L?.gu),
    silu: await SiluMulOp.create(ctx, "silu_mul"),
    down: await linearOp(ctx, "linear.down", wt, L?.down),
    final: [],
    lm: [],
    sample: [],
  };
  await ensureChunkOps(ctx, ops, 1, wt);
  return ops;
}

async function ensureChunkOps(ctx: GpuContext, ops: ModelOps, n: number, wt: StorageType): Promise<void> {
  for (let c = ops.final.length; c < n; c++) {
    ops.final.push(await RmsNormOp.create(ctx, `norm.final.${c}`));
    ops.lm.push(await LinearOp.create(ctx, `linear.lm_head.${c}`, wt));
    ops.sample.push(await SampleOp.create(ctx, `sample.${c}`));
  }
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
}

export async function runStep(m: ModelState, step: StepInputs): Promise<StepResult> {
  const { ctx, spec, w, ops } = m;
  const t0 = performance.now(), d0 = ctx.dispatches;
  validateStep(step, spec, m.numBlocks, m.blockSize);
  const V = spec.vocabSize, h = spec.hiddenSize, d = spec.headDim, F = spec.intermediateSize;
  const maxRows = Math.floor(ctx.limits.maxStorageBufferBindingSize / (V * 4));
  const plan = planStep(step, spec, maxRows, m.partition || undefined);
  await ensureChunkOps(ctx, ops, plan.chunks.length, w.wt);
  const { T, B } = plan;
  if (T === 0) return { tokens: new Int32Array(B).fill(-1), logprobs: new Array(B).fill(null) };
  const qkvDim = (spec.numHeads + 2 * spec.numKvHeads) * d;
  const pool = ctx.pool;
  const up = (name: string, data: ArrayBufferView) => {
    const b = pool.scratch(name, Math.max(4, data.byteLength));
    pool.write(b, data);
    return b;
  };
  // Step inputs.
  const tok = up("tokens", step.tokens); // [T] i32
  const pos = up("positions", step.positions); // [T] i32
  const slots = up("slots", step.slots); // [T] i32
  const bt = up("block_tables", step.blockTables.subarray(0, B * step.maxBlocksPerSeq)); // [B, maxBlocks] i32
  const items = up("attn_items", plan.attention.items); // [nItems, 2] u32
  const tiles = up("attn_tiles", plan.attention.tiles); // [nTiles, 8] u32
  // Activations (grow-only scratch, sized by T).
  const x = pool.scratch("x", T * h * 4); // [T, h] f32 residual stream
  const xn = pool.scratch("xn", T * h * 4); // [T, h] f32 normed
  const qkv = pool.scratch("qkv", T * qkvDim * 4); // [T, (nh + 2 nkv) d] f32
  const attnOut = pool.scratch("attn", T * spec.numHeads * d * 4); // [T, nh, d] f32
  const y = pool.scratch("y", T * h * 4); // [T, h] f32 o_proj, then down_proj output
  const gu = pool.scratch("gate_up", T * 2 * F * 4); // [T, 2F] f32
  const act = pool.scratch("act", T * F * 4); // [T, F] f32
  const part = pool.scratch("attn_partials", AttentionOp.partialBytes(plan.attention, spec.numHeads, d));

  const eps = spec.rmsEps;
  ops.embed.prepare({ n: T, h, vocab: V });
  ops.normFirst.prepare({ n: T, h, eps, residual: false, gather: false, rows: T });
  ops.norm.prepare({ n: T, h, eps, residual: true, gather: false, rows: T });
  ops.qkv.prepare({ M: T, N: qkvDim, K: h, bias: spec.attentionBias });
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
  ops.o.prepare({ M: T, N: h, K: spec.numHeads * d, bias: spec.outputBias });
  ops.gu.prepare({ M: T, N: 2 * F, K: h, bias: spec.mlpBias });
  ops.silu.prepare({ T, F });
  ops.down.prepare({ M: T, N: h, K: F, bias: spec.mlpBias });

  const device = ctx.device;
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  const enc = device.createCommandEncoder({ label: "step" });
  const prof = ctx.profiler;
  const pass = enc.beginComputePass({
    label: "layers",
    ...(prof
      ? { timestampWrites: { querySet: prof.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
      : {}),
  });
  ops.embed.encode(pass, { ids: tok, table: w.embed, x });
  for (let l = 0; l < spec.numLayers; l++) {
    const L = w.layers[l]!;
    const kc = m.kc[l]!, vc = m.vc[l]!;
    if (l === 0) ops.normFirst.encode(pass, { x, w: L.inputNorm, y: xn });
    else ops.norm.encode(pass, { x, r: y, w: L.inputNorm, y: xn });
    encodeLinear(ops.qkv, pass, { x: xn, w: L.qkv, bias: L.qkvBias, y: qkv });
    ops.rope.encode(pass, { qkv, pos, slots, rope: m.rope, qNorm: L.qNorm, kNorm: L.kNorm, kc, vc });
    ops.attn.encode(pass, { qkv, kc, vc, bt, items, tiles, pos, out: attnOut, part });
    encodeLinear(ops.o, pass, { x: attnOut, w: L.o, bias: L.oBias, y });
    ops.norm.encode(pass, { x, r: y, w: L.postNorm, y: xn });
    encodeLinear(ops.gu, pass, { x: xn, w: L.gu, bias: L.guBias, y: gu });
    ops.silu.encode(pass, { gu, act });
    encodeLinear(ops.down, pass, { x: act, w: L.down, bias: L.downBias, y });
  }
  const staging = encodeHead(m, plan, enc, pass, { x, y }, prof ? 16 : 0);
  if (prof) {
    // [2] u64 ns (start, end of the layers pass) land after the results in the staging buffer.
    enc.resolveQuerySet(prof.querySet, 0, 2, prof.resolve, 0);
    enc.copyBufferToBuffer(prof.resolve, 0, staging.buffer, staging.bytes, 16);
  }
  device.queue.submit([enc.finish()]);
  const t1 = performance.now();
  const valErr = await device.popErrorScope();
  const memErr = await device.popErrorScope();
  if (valErr || memErr) throw new Error(`webgpu forward failed: ${(valErr ?? memErr)!.message}`);
  const { result, gpuMs } = await readResults(plan, step, V, staging, prof ? 16 : 0);
  ctx.lastStep = { encodeMs: t1 - t0, waitMs: performance.now() - t1, gpuMs, dispatches: ctx.dispatches - d0 };
  return result;
}

/** Final norm + LM head per chunk of rows, GPU sampling, and copies into the staging buffer. Ends the pass. */
function encodeHead(
  m: ModelState,
  plan: StepPlan,
  enc: GPUCommandEncoder,
  first: GPUComputePassEncoder,
  b: { x: GPUBuffer; y: GPUBuffer },
  extra: number,
): { buffer: GPUBuffer; bytes: number } {
  const { ctx, spec, w, ops } = m;
  const V = spec.vocabSize, h = spec.hiddenSize;
  const R = plan.rows.length, nGpu = R - plan.nHost;
  const idsOff = plan.nHost * V * 4;
  const bytes = idsOff + nGpu * 4;
  // [nHost, vocab] f32 logits rows, then [nGpu] i32 ids, then `extra` bytes (timestamps).
  const staging = ctx.pool.scratch("staging", Math.max(4, bytes + extra), USAGE.MAP_READ | USAGE.COPY_DST);
  const cfgAll = new Uint8Array(packSampleConfig(plan.gpuStates));
  let pass: GPUComputePassEncoder | null = first;
  plan.chunks.forEach(({ r0, r1 }, c) => {
    const n = r1 - r0;
    pass ??= enc.beginComputePass({ label: `lm_head ${c}` });
    const idx = ctx.pool.scratch(`rows.${c}`, n * 4); // [n] u32 token rows of this chunk
    ctx.pool.write(idx, plan.rows.subarray(r0, r1));
    const xf = ctx.pool.scratch(`final.${c}`, n * h * 4); // [n, h] f32 normed rows
    const logits = ctx.pool.scratch(`logits.${c}`, n * V * 4); // [n, vocab] f32
    ops.final[c]!.prepare({ n, h, eps: spec.rmsEps, residual: true, gather: true, rows: plan.T });
    ops.final[c]!.encode(pass, { x: b.x, r: b.y, w: w.finalNorm, idx, y: xf });
    ops.lm[c]!.prepare({ M: n, N: V, K: h, bias: false });
    ops.lm[c]!.encode(pass, { x: xf, w: w.lmHead, y: logits });
    const g0 = Math.max(r0, plan.nHost);
    const ids = ctx.pool.scratch(`ids.${c}`, Math.max(4, (r1 - g0) * 4)); // [gpu rows] i32
    if (r1 > g0) {
      const cfg = ctx.pool.scratch(`sample_cfg.${c}`, (r1 - g0) * 16); // [gpu rows] RowCfg
      ctx.pool.write(cfg, cfgAll.subarray((g0 - plan.nHost) * 16, (r1 - plan.nHost) * 16));
      ops.sample[c]!.prepare({ rows: r1 - g0, vocab: V, row0: g0 - r0 });
      ops.sample[c]!.encode(pass, { logits, cfg, ids });
    }
    pass.end();
    pass = null;
    const h1 = Math.min(r1, plan.nHost);
    if (h1 > r0) enc.copyBufferToBuffer(logits, 0, staging, r0 * V * 4, (h1 - r0) * V * 4);
    if (r1 > g0) enc.copyBufferToBuffer(ids, 0, staging, idsOff + (g0 - plan.nHost) * 4, (r1 - g0) * 4);
  });
  if (plan.chunks.length === 0) first.end();
  return { buffer: staging, bytes };
}

async function readResults(
  plan: StepPlan,
  step: StepInputs,
  V: number,
  staging: { buffer: GPUBuffer; bytes: number },
  extra: number,
): Promise<{ result: StepResult; gpuMs: number }> {
  const tokens = new Int32Array(plan.B).fill(-1);
  const logprobs: StepResult["logprobs"] = new Array(plan.B).fill(null);
  const total = staging.bytes + extra;
  if (total === 0) {
    const result = step.allLogits ? { tokens, logprobs, logits: new Float32Array(0) } : { tokens, logprobs };
    return { result, gpuMs: NaN };
  }
  await staging.buffer.mapAsync(MAP_READ, 0, total);
  const raw = staging.buffer.getMappedRange(0, total).slice(0);
  staging.buffer.unmap();
  let gpuMs = NaN;
  if (extra) {
    const v = new DataView(raw, staging.bytes, 16);
    gpuMs = Number(v.getBigUint64(8, true) - v.getBigUint64(0, true)) / 1e6;
  }
  const hostLogits = new Float32Array(raw, 0, plan.nHost * V);
  const gpuIds = new Int32Array(raw, plan.nHost * V * 4, plan.rows.length - plan.nHost);
  for (let b = 0; b < plan.B; b++) {
    const r = plan.rowOf[b]!;
    if (r < 0) continue;
    if (r >= plan.nHost) {
      tokens[b] = gpuIds[r - plan.nHost]!;
      continue;
    }
    const res = sampleToken(hostLogits.subarray(r * V, (r + 1) * V), step.sampling[b]!);
    tokens[b] = res.id;
    logprobs[b] = res.logprobs;
  }
  return { result: step.allLogits ? { tokens, logprobs, logits: hostLogits } : { tokens, logprobs }, gpuMs };
}
