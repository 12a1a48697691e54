// Decode GEMVs of a model shape on their own (batch 1, f16 weights), as weight bytes streamed per second against the
// copy bandwidth measured in the same run: the fused wide-load kernel (wgsl/gemv_fused.wgsl) with each layer's
// prologue / epilogue and its tuned workgroup shape (fused.ts DECODE_GEMV_SHAPES), and the plain GEMV
// (wgsl/gemv.wgsl) it replaces. Used by bench/webgpu_decode.ts; run alone it sweeps workgroup shapes per matrix:
//   deno run -A bench/webgpu_gemv.ts [--model synthetic:llama3-8b] [--best best.json]
import type { ModelSpec } from "../src/core/types.ts";
import type { GpuContext } from "../src/backends/webgpu/context.ts";
import {
  DECODE_GEMV_SHAPES,
  type Epilogue,
  fitGemvShape,
  FusedLinearOp,
  type GemvRole,
  type GemvShape,
  type Prologue,
} from "../src/backends/webgpu/fused.ts";
import { LinearOp } from "../src/backends/webgpu/kernels.ts";

/** Seconds per call of `encode`, from two rep counts (cancels Deno's ~10 ms wait granularity). */
async function secondsPerCall(ctx: GpuContext, reps: number, encode: (p: GPUComputePassEncoder) => void) {
  const run = async (r: number) => {
    const enc = ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let i = 0; i < r; i++) encode(pass);
    pass.end();
    ctx.device.queue.submit([enc.finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
  };
  await run(2);
  const t0 = performance.now();
  await run(reps);
  const t1 = performance.now();
  await run(2 * reps);
  const t2 = performance.now();
  return Math.max(1e-9, ((t2 - t1) - (t1 - t0)) / reps / 1000);
}

const shapeTag = (s: GemvShape) => `${s.wgs}/${s.lanes}/${s.r}/${s.u}`;

type Matrix = [string, number, number, Prologue, Epilogue, GemvRole];

/**
 * The decode GEMVs of one layer and the LM head as layers.ts runs them: name, N, K, prologue, epilogue, role.
 * With `previous`, also the previous layout's qkv / gate_up (norm weight applied in the prologue, gate_up stored)
 * and down (SiLU-mul in the prologue), for comparison; role-best shapes come from the first five only.
 */
function matrices(spec: ModelSpec, previous = false): Matrix[] {
  const h = spec.hiddenSize, F = spec.intermediateSize, d = spec.headDim;
  const qkvN = (spec.numHeads + 2 * spec.numKvHeads) * d, qd = spec.numHeads * d;
  const now: Matrix[] = [
    ["qkv (prenorm)", qkvN, h, "prenorm", "store", "qkv"],
    ["o (residual + next norm's input)", h, qd, "none", "addnorm", "o"],
    ["gate_up (prenorm, silu pairs)", 2 * F, h, "prenorm", "silupair", "gu"],
    ["down (residual + next norm's input)", h, F, "none", "addnorm", "down"],
    ["lm_head", spec.vocabSize, h, "none", "store", "lm"],
  ];
  if (!previous) return now;
  return [
    ...now,
    ["previous: qkv (norm prologue)", qkvN, h, "norm", "store", "qkv"],
    ["previous: gate_up (norm prologue)", 2 * F, h, "norm", "store", "gu"],
    ["previous: down (silu prologue, residual)", h, F, "silu", "add", "down"],
  ];
}

/** Weight copies cycled through, so that back-to-back calls find none of their weights in the 50 MB L2 (as in a
 * decode step, where every layer has its own): at least 256 MB of them. */
const ROTATE_BYTES = 256 * 2 ** 20;

/**
 * Buffers for one matrix's GEMV at M = 1 (zero-filled: timing only), and the encode() bindings of call i (the
 * weights rotate over copies of the matrix, ROTATE_BYTES).
 */
function gemvBuffers(ctx: GpuContext, N: number, K: number, pro: Prologue, epi: Epilogue) {
  const copies = Math.max(1, Math.ceil(ROTATE_BYTES / (N * K * 2)));
  const ws = Array.from({ length: copies }, () => ctx.pool.create("gemv.w", N * K * 2)); // each [N, K] f16
  const w = ws[0]!;
  const x = ctx.pool.create("gemv.x", 2 * K * 4); // [1, 2K] f32
  const y = ctx.pool.create("gemv.y", N * 4); // [1, N] f32
  const nw = ctx.pool.create("gemv.nw", Math.max(K, N) * 4); // [max(K, N)] f32 norm weight, or the raw residual
  const xg = ctx.pool.create("gemv.xg", N * 4); // [1, N] f32
  const extra = {
    ...(pro === "norm" ? { norm: nw } : {}),
    ...(pro === "prenorm" ? { residual: nw } : {}),
    ...(epi === "addnorm" ? { nextNorm: nw, xg } : {}),
  };
  const bind = { x, w, y, ...extra };
  let i = 0;
  const next = () => ({ ...bind, w: ws[i++ % copies]! });
  return { w, bind, next, all: [...ws, x, y, nw, xg] };
}

/** Weight GB/s of each matrix under each workgroup shape (fused kernel, M = 1), for tuning DECODE_GEMV_SHAPES. */
export async function gemvSweep(
  ctx: GpuContext,
  spec: ModelSpec,
  copyBw: number,
  shapes: GemvShape[],
  previous = false,
) {
  const rows: Record<string, number | string>[] = [];
  for (const [name, N, K, pro, epi] of matrices(spec, previous)) {
    const { w, next, all } = gemvBuffers(ctx, N, K, pro, epi);
    const reps = Math.max(20, Math.ceil(0.1 / (w.size / copyBw)));
    const row: Record<string, number | string> = { gemv: name };
    for (const shape of shapes) {
      const tag = shapeTag(shape);
      if (epi === "silupair" && shape.r !== 2) {
        row[tag] = "-"; // the SiLU pairs need two rows per group
        continue;
      }
      const op = await FusedLinearOp.create(ctx, `sweep.${name}.${tag}`, "f16", pro, epi, shape);
      op.prepare({ M: 1, N, K, bias: false, eps: 1e-5 });
      const sec = await secondsPerCall(ctx, reps, (p) => op.encode(p, next()));
      row[tag] = Math.round((100 * w.size / sec) / copyBw);
    }
    rows.push(row);
    for (const b of all) ctx.pool.destroy(b);
  }
  return rows;
}

export async function gemvBandwidths(
  ctx: GpuContext,
  spec: ModelSpec,
  copyBw: number,
): Promise<{ rows: Record<string, number | string>[]; poolBytes: number }> {
  const rows: Record<string, number | string>[] = [];
  for (const [name, N, K, pro, epi, role] of matrices(spec)) {
    const { w, bind, next, all } = gemvBuffers(ctx, N, K, pro, epi);
    const reps = Math.max(20, Math.ceil(0.15 / (w.size / copyBw)));
    const shape = fitGemvShape(DECODE_GEMV_SHAPES[role], K);
    const fused = await FusedLinearOp.create(ctx, `bench.fused.${name}`, "f16", pro, epi, shape);
    fused.prepare({ M: 1, N, K, bias: false, eps: 1e-5 });
    const sf = await secondsPerCall(ctx, reps, (p) => fused.encode(p, next()));
    const plain = await LinearOp.create(ctx, `bench.plain.${name}`, "f16");
    plain.prepare({ M: 1, N, K, bias: false });
    const sp = await secondsPerCall(ctx, reps, (p) => plain.encode(p, { x: bind.x, w: next().w, y: bind.y }));
    rows.push({
      gemv: name,
      N,
      K,
      shape: shapeTag(shape),
      "fused us": sf * 1e6,
      "fused GB/s": w.size / sf / 1e9,
      "fused % copy": (100 * w.size / sf) / copyBw,
      "plain us": sp * 1e6,
      "plain GB/s": w.size / sp / 1e9,
    });
    for (const b of all) ctx.pool.destroy(b);
  }
  return { rows, poolBytes: 0 };
}

if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  const { createWebGpuBackend } = await import("../src/backends/webgpu/backend.ts");
  const { copyBandwidth } = await import("../src/backends/webgpu/synthetic.ts");
  const { buildSyntheticModel } = await import("../src/model/synthetic.ts");
  const { markdown } = await import("./report.ts");
  const { values: f } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string", default: "synthetic:llama3-8b" },
      best: { type: "string" },
      // Also sweep the previous layout's qkv / gate_up / down (norm and SiLU-mul prologues) for comparison.
      previous: { type: "boolean", default: false },
    },
  });
  const { spec } = buildSyntheticModel(f.model);
  await using b = await createWebGpuBackend({ memoryBytes: 2 ** 30 });
  const bw = await copyBandwidth(b.context, 2 ** 30, 20);
  // Fewer registers per thread (small U, R = 1) against more bytes in flight (larger U, R, lanes).
  const shapes: GemvShape[] = [
    { wgs: 256, lanes: 32, r: 1, u: 4 },
    { wgs: 256, lanes: 32, r: 1, u: 2 },
    { wgs: 256, lanes: 32, r: 1, u: 3 },
    { wgs: 128, lanes: 32, r: 1, u: 3 },
    { wgs: 256, lanes: 64, r: 1, u: 2 },
    { wgs: 128, lanes: 64, r: 1, u: 1 },
    { wgs: 128, lanes: 64, r: 1, u: 2 },
    { wgs: 128, lanes: 64, r: 1, u: 3 },
    { wgs: 128, lanes: 64, r: 2, u: 2 },
    { wgs: 64, lanes: 64, r: 1, u: 2 },
    { wgs: 128, lanes: 128, r: 1, u: 1 },
    { wgs: 128, lanes: 128, r: 1, u: 2 },
    { wgs: 256, lanes: 128, r: 1, u: 2 },
    { wgs: 256, lanes: 32, r: 2, u: 2 },
    { wgs: 256, lanes: 32, r: 4, u: 2 },
    // Two rows per group (one input read for both; the SiLU pairs of gate_up take only these).
    { wgs: 128, lanes: 32, r: 2, u: 2 },
    { wgs: 64, lanes: 32, r: 2, u: 2 },
    { wgs: 128, lanes: 64, r: 2, u: 1 },
    { wgs: 256, lanes: 64, r: 2, u: 2 },
    { wgs: 256, lanes: 32, r: 2, u: 3 },
    { wgs: 128, lanes: 32, r: 2, u: 4 },
    { wgs: 256, lanes: 16, r: 2, u: 2 },
    { wgs: 256, lanes: 64, r: 2, u: 1 },
    { wgs: 64, lanes: 64, r: 2, u: 1 },
    { wgs: 128, lanes: 128, r: 2, u: 1 },
    { wgs: 256, lanes: 128, r: 2, u: 1 },
    // Three or four rows per group, one load each: one input read for all of them.
    { wgs: 128, lanes: 64, r: 3, u: 1 },
    { wgs: 128, lanes: 64, r: 4, u: 1 },
  ];

  const rows = await gemvSweep(b.context, spec, bw, shapes, f.previous);
  // Best shape per role, written for bench/webgpu_decode.ts --gemv-shapes (tuning runs).
  const best: Record<string, GemvShape> = {};
  for (const [i, [, , , , , role]] of matrices(spec).entries()) {
    const row = rows[i]!;
    const score = (sh: GemvShape) => Number(row[shapeTag(sh)]); // NaN where the shape does not apply
    let top = shapes.find((sh) => !Number.isNaN(score(sh)))!;
    for (const sh of shapes) if (score(sh) > score(top)) top = sh;
    best[role] = top;
  }
  if (f.best) await Deno.writeTextFile(f.best, JSON.stringify(best));
  console.log(`${b.device}: copy ${(bw / 1e12).toFixed(3)} TB/s; % of copy by workgroup shape (wgs/lanes/r/u), M = 1`);
  console.log(`best: ${JSON.stringify(best)}`);
  const chart = { value: "", label: () => "", title: "" };
  console.log(markdown({ suite: "gemv_sweep", meta: {}, columns: Object.keys(rows[0]!), rows, chart }));
}
