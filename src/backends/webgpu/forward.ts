// One engine step on the GPU: upload the step's index arrays, encode every layer into one compute pass (one
// command buffer, one submit; layers.ts), run the final norm + LM head only on rows that need logits, sample on
// the GPU where sampling.ts allows, copy ids and host-bound logits rows into one staging buffer, and map it once.
// encodeStep() is shared with multi-step decode (multistep.ts), which chains steps on the GPU.
import type { StepInputs, StepResult } from "../../core/types.ts";
import { sampleToken } from "../../sampling/sampler.ts";
import { MAP_READ, USAGE } from "./buffers.ts";
import type { GpuContext } from "./context.ts";
import { encodeLayers, ensureChunkOps, fusedStep, type ModelState } from "./layers.ts";
import { planStep, type StepPlan, validateStep } from "./plan.ts";
import { packSampleConfig } from "./sampling.ts";

export { createModelOps, type ModelOps, type ModelState } from "./layers.ts";

/** Plans a validated step and makes sure the LM-head chunk ops it needs exist. */
export async function planFor(m: ModelState, step: StepInputs): Promise<StepPlan> {
  const maxRows = Math.floor(m.ctx.limits.maxStorageBufferBindingSize / (m.spec.vocabSize * 4));
  const plan = planStep(step, m.spec, maxRows, m.partition || undefined);
  await ensureChunkOps(m.ctx, m.ops, plan.chunks.length, m.w.wt);
  return plan;
}

/** Uploads `data` into the grow-only scratch buffer `name` (ordered before later submits on the queue). */
export function upload(ctx: GpuContext, name: string, data: ArrayBufferView): GPUBuffer {
  const b = ctx.pool.scratch(name, Math.max(4, data.byteLength));
  ctx.pool.write(b, data);
  return b;
}

/** Where encodeStep() leaves its results. */
export interface StepOutput {
  /** Staging buffer (MAP_READ): [nHost, vocab] f32 logits rows at `base`, then [nGpu] i32 ids. */
  readonly staging: GPUBuffer;
  readonly base: number;
  /** Timestamp query pair written at the start / end of the step's first pass (-1: none). */
  readonly query: number;
  /** Sampling draw offset (multi-step decode: the step index within the run). */
  readonly drawOffset: number;
}

/**
 * Encodes one planned step into `enc`: uploads its index arrays (not the tokens: `tok` [T] i32 is given, written by
 * the host or by the previous step's sampler), the layers, the head and the copies into `out`. Returns the ids
 * buffer of the first LM-head chunk ([rows of that chunk sampled on the GPU] i32), null when nothing is sampled.
 */
export function encodeStep(
  m: ModelState,
  step: StepInputs,
  plan: StepPlan,
  enc: GPUCommandEncoder,
  tok: GPUBuffer,
  out: StepOutput,
): GPUBuffer | null {
  const { ctx } = m;
  const b = {
    tok,
    pos: upload(ctx, "positions", step.positions), // [T] i32
    slots: upload(ctx, "slots", step.slots), // [T] i32
    bt: upload(ctx, "block_tables", step.blockTables.subarray(0, plan.B * step.maxBlocksPerSeq)), // [B, maxBlocks] i32
    items: upload(ctx, "attn_items", plan.attention.items), // [nItems, 2] u32
    tiles: upload(ctx, "attn_tiles", plan.attention.tiles), // [nTiles, 8] u32
  };
  const prof = ctx.profiler;
  const pass = enc.beginComputePass({
    label: "layers",
    ...(prof && out.query >= 0
      ? {
        timestampWrites: {
          querySet: prof.querySet,
          beginningOfPassWriteIndex: out.query,
          endOfPassWriteIndex: out.query + 1,
        },
      }
      : {}),
  });
  const xy = encodeLayers(m, step, plan, pass, b);
  return encodeHead(m, plan, enc, pass, xy, out);
}

/** Bytes of a step's results in the staging buffer: [nHost, vocab] f32 logits rows, then [nGpu] i32 ids. */
export function resultBytes(plan: StepPlan, vocab: number): number {
  return plan.nHost * vocab * 4 + (plan.rows.length - plan.nHost) * 4;
}

export async function runStep(m: ModelState, step: StepInputs): Promise<StepResult> {
  const { ctx, spec } = m;
  const t0 = performance.now(), d0 = ctx.dispatches;
  validateStep(step, spec, m.numBlocks, m.blockSize);
  const plan = await planFor(m, step);
  if (plan.T === 0) return { tokens: new Int32Array(plan.B).fill(-1), logprobs: new Array(plan.B).fill(null) };
  const V = spec.vocabSize;
  const prof = ctx.profiler;
  const bytes = resultBytes(plan, V), extra = prof ? 16 : 0;
  const staging = ctx.pool.scratch("staging", Math.max(4, bytes + extra), USAGE.MAP_READ | USAGE.COPY_DST);
  const device = ctx.device;
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  const enc = device.createCommandEncoder({ label: "step" });
  const tok = upload(ctx, "tokens", step.tokens); // [T] i32
  encodeStep(m, step, plan, enc, tok, { staging, base: 0, query: prof ? 0 : -1, drawOffset: 0 });
  if (prof) {
    // [2] u64 ns (start, end of the layers pass) land after the results in the staging buffer.
    enc.resolveQuerySet(prof.querySet, 0, 2, prof.resolve, 0);
    enc.copyBufferToBuffer(prof.resolve, 0, staging, bytes, 16);
  }
  device.queue.submit([enc.finish()]);
  const t1 = performance.now();
  const valErr = await device.popErrorScope();
  const memErr = await device.popErrorScope();
  if (valErr || memErr) throw new Error(`webgpu forward failed: ${(valErr ?? memErr)!.message}`);
  const { result, gpuMs } = await readResults(plan, step, V, { buffer: staging, bytes }, extra);
  ctx.lastStep = {
    encodeMs: t1 - t0,
    waitMs: performance.now() - t1,
    gpuMs,
    dispatches: ctx.dispatches - d0,
    steps: 1,
  };
  return result;
}

/** Final norm + LM head per chunk of rows, GPU sampling, and copies into the staging buffer. Ends the pass. */
function encodeHead(
  m: ModelState,
  plan: StepPlan,
  enc: GPUCommandEncoder,
  first: GPUComputePassEncoder,
  b: { x: GPUBuffer; y: GPUBuffer | null },
  out: StepOutput,
): GPUBuffer | null {
  const { ctx, spec, w, ops } = m;
  const V = spec.vocabSize, h = spec.hiddenSize;
  const idsOff = out.base + plan.nHost * V * 4;
  const cfgAll = new Uint8Array(packSampleConfig(plan.gpuStates, out.drawOffset));
  const wide = fusedStep(m, plan.T) && plan.chunks.length === 1 ? ops.fused!.lm : null;
  let firstIds: GPUBuffer | null = null;
  let pass: GPUComputePassEncoder | null = first;
  plan.chunks.forEach(({ r0, r1 }, c) => {
    const n = r1 - r0;
    pass ??= enc.beginComputePass({ label: `lm_head ${c}` });
    const idx = ctx.pool.scratch(`rows.${c}`, n * 4); // [n] u32 token rows of this chunk
    ctx.pool.write(idx, plan.rows.subarray(r0, r1));
    const xf = ctx.pool.scratch(`final.${c}`, n * h * 4); // [n, h] f32 normed rows
    const logits = ctx.pool.scratch(`logits.${c}`, n * V * 4); // [n, vocab] f32
    const residual = b.y !== null; // the unfused path still has the last down output to add
    ops.final[c]!.prepare({ n, h, eps: spec.rmsEps, residual, gather: true, rows: plan.T });
    ops.final[c]!.encode(pass, { x: b.x, ...(b.y ? { r: b.y } : {}), w: w.finalNorm, idx, y: xf });
    if (wide) {
      wide.prepare({ M: n, N: V, K: h, bias: false, eps: spec.rmsEps });
      wide.encode(pass, { x: xf, w: w.lmHead, y: logits });
    } else {
      ops.lm[c]!.prepare({ M: n, N: V, K: h, bias: false });
      ops.lm[c]!.encode(pass, { x: xf, w: w.lmHead, y: logits });
    }
    const g0 = Math.max(r0, plan.nHost);
    const ids = ctx.pool.scratch(`ids.${c}`, Math.max(4, (r1 - g0) * 4)); // [gpu rows] i32
    if (r1 > g0) {
      const cfg = ctx.pool.scratch(`sample_cfg.${c}`, (r1 - g0) * 16); // [gpu rows] RowCfg
      ctx.pool.write(cfg, cfgAll.subarray((g0 - plan.nHost) * 16, (r1 - plan.nHost) * 16));
      ops.sample[c]!.prepare({ rows: r1 - g0, vocab: V, row0: g0 - r0 });
      ops.sample[c]!.encode(pass, { logits, cfg, ids });
      if (c === 0) firstIds = ids;
    }
    pass.end();
    pass = null;
    const h1 = Math.min(r1, plan.nHost);
    if (h1 > r0) enc.copyBufferToBuffer(logits, 0, out.staging, out.base + r0 * V * 4, (h1 - r0) * V * 4);
    if (r1 > g0) enc.copyBufferToBuffer(ids, 0, out.staging, idsOff + (g0 - plan.nHost) * 4, (r1 - g0) * 4);
  });
  if (plan.chunks.length === 0) first.end();
  return firstIds;
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
