// Decode GEMVs of a model shape on their own (batch 1, f16 weights), as weight bytes streamed per second against the
// copy bandwidth measured in the same run: the fused wide-load kernel (wgsl/gemv_fused.wgsl) with each layer's
// prologue / epilogue, and the plain GEMV (wgsl/gemv.wgsl) it replaces. Used by bench/webgpu_decode.ts.
import type { ModelSpec } from "../src/core/types.ts";
import type { GpuContext } from "../src/backends/webgpu/context.ts";
import { type Epilogue, FusedLinearOp, type Prologue } from "../src/backends/webgpu/fused.ts";
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

export async function gemvBandwidths(
  ctx: GpuContext,
  spec: ModelSpec,
  copyBw: number,
): Promise<{ rows: Record<string, number | string>[]; poolBytes: number }> {
  const h = spec.hiddenSize, F = spec.intermediateSize, d = spec.headDim;
  const qkvN = (spec.numHeads + 2 * spec.numKvHeads) * d, qd = spec.numHeads * d;
  const shapes: [string, number, number, Prologue, Epilogue][] = [
    ["qkv (norm prologue)", qkvN, h, "norm", "store"],
    ["o (residual epilogue)", h, qd, "none", "add"],
    ["gate_up (norm prologue)", 2 * F, h, "norm", "store"],
    ["down (silu prologue, residual)", h, F, "silu", "add"],
    ["lm_head", spec.vocabSize, h, "none", "store"],
  ];
  const rows: Record<string, number | string>[] = [];
  for (const [name, N, K, pro, epi] of shapes) {
    const w = ctx.pool.create("gemv.w", N * K * 2); // [N, K] f16 (zero-filled: timing only)
    const x = ctx.pool.create("gemv.x", 2 * K * 4); // [1, 2K] f32
    const y = ctx.pool.create("gemv.y", N * 4); // [1, N] f32
    const nw = ctx.pool.create("gemv.nw", K * 4); // [K] f32
    const reps = Math.max(20, Math.ceil(0.15 / (w.size / copyBw)));
    const fused = await FusedLinearOp.create(ctx, `bench.fused.${name}`, "f16", pro, epi);
    fused.prepare({ M: 1, N, K, bias: false, eps: 1e-5 });
    const norm = pro === "norm" ? { norm: nw } : {};
    const sf = await secondsPerCall(ctx, reps, (p) => fused.encode(p, { x, w, y, ...norm }));
    const plain = await LinearOp.create(ctx, `bench.plain.${name}`, "f16");
    plain.prepare({ M: 1, N, K, bias: false });
    const sp = await secondsPerCall(ctx, reps, (p) => plain.encode(p, { x, w, y }));
    rows.push({
      gemv: name,
      N,
      K,
      "fused us": sf * 1e6,
      "fused GB/s": w.size / sf / 1e9,
      "fused % copy": (100 * w.size / sf) / copyBw,
      "plain us": sp * 1e6,
      "plain GB/s": w.size / sp / 1e9,
    });
    for (const b of [w, x, y, nw]) ctx.pool.destroy(b);
  }
  return { rows, poolBytes: 0 };
}
