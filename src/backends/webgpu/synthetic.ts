// Device-side helpers for synthetic models and benchmarks: filling f16 matrices with the synthetic weights, and
// quantized matrices with random codes and scales, on the GPU (no 16 GB of host-side random numbers for
// synthetic:llama3-8b), and a copy-bandwidth probe.
import type { SyntheticFill } from "../../model/synthetic.ts";
import { tensorStream } from "../../model/synthetic.ts";
import type { TensorSource } from "../../core/types.ts";
import type { QuantFormat } from "../../quant/types.ts";
import { dim, type GpuContext, need } from "./context.ts";
import { allocQuantMatrix, type QuantMatrix } from "./qlinear.ts";

/** The synthetic recipe of a weight source, when it has one (src/model/synthetic.ts). */
export function syntheticFill(src: TensorSource): SyntheticFill | null {
  const s = (src as { synthetic?: SyntheticFill }).synthetic;
  return s && typeof s.amplitude === "function" ? s : null;
}

/**
 * Writes tensor `name` (`elems` values) into `dst` as f16, starting at byte `byteOffset`, on the GPU.
 * dst: [..., elems] f16 (the stacked matrix of weights.ts). One submit per call.
 */
export async function fillSyntheticF16(
  ctx: GpuContext,
  fill: SyntheticFill,
  name: string,
  dst: GPUBuffer,
  byteOffset: number,
  elems: number,
): Promise<void> {
  dim(elems, "synth elems");
  if (elems % 2 !== 0 || byteOffset % 4 !== 0) throw new RangeError(`synth ${name}: odd size or offset`);
  need(dst, byteOffset + elems * 2, `synth ${name}`);
  const k = await ctx.pipelines.get("synth_fill.wgsl", "synth_fill");
  const slot = ctx.slot(`synth`, k);
  const { amp, offset } = fill.amplitude(name);
  slot.write(ctx.device, {
    pair0: byteOffset / 4,
    pairs: elems / 2,
    seed: fill.seed >>> 0,
    stream: tensorStream(name),
    amp,
    base: offset,
    _a: 0,
    _b: 0,
  });
  const enc = ctx.device.createCommandEncoder({ label: `synth ${name}` });
  const pass = enc.beginComputePass();
  ctx.dispatch(pass, k, { p: slot.buffer, dst }, ctx.grid2d(Math.ceil(elems / 2 / 256)));
  pass.end();
  ctx.device.queue.submit([enc.finish()]);
  await ctx.device.queue.onSubmittedWorkDone();
}

/** Shape and recipe of a synthetic quantized matrix (several linears stacked by rows count as one). */
export interface SyntheticQuant {
  readonly format: QuantFormat;
  /** rows and input channels */
  readonly N: number;
  readonly K: number;
  readonly group: number;
  /** weights span about [-amp, amp] */
  readonly amp: number;
  readonly seed: number;
}

/**
 * A QuantMatrix ("rows-k", qlinear.ts) generated on the GPU, as the CUDA backend's qfill does (wgsl/synth_qfill.wgsl):
 * w [N, Kw] u32 random codes, sb [N, nG] f32 (scale, bias) pairs with scales from a second hash stream. Synthetic
 * quantized weights are random codes, not a quantization of the synthetic float values. One submit per call.
 */
export async function fillSyntheticQuant(ctx: GpuContext, label: string, q: SyntheticQuant): Promise<QuantMatrix> {
  const { bits, fp8 } = q.format;
  dim(q.N, "synth quant N");
  dim(q.K, "synth quant K");
  dim(q.group, "synth quant group");
  const m = allocQuantMatrix(ctx, label, { bits, fp8, N: q.N, K: q.K, group: q.group }, null);
  const words = q.N * m.Kw, pairs = q.N * m.nG;
  const k = await ctx.pipelines.get("synth_qfill.wgsl", "synth_qfill");
  const slot = ctx.slot(`synth_qfill`, k);
  const qmax = fp8 ? 255 : (1 << bits) - 1;
  slot.write(ctx.device, {
    words,
    pairs,
    seed: q.seed >>> 0,
    mask: fp8 ? 0xbfbfbfbf : 0xffffffff,
    s0: fp8 ? q.amp / 2 : (2 * q.amp) / qmax,
    z: fp8 ? 0 : (1 << (bits - 1)) + 1,
    mul: fp8 ? 256 : 1,
    _a: 0,
  });
  const enc = ctx.device.createCommandEncoder({ label: `synth ${label}` });
  const pass = enc.beginComputePass();
  ctx.dispatch(pass, k, { p: slot.buffer, w: m.w, sb: m.sb }, ctx.grid2d(Math.ceil(Math.max(words, pairs) / 256)));
  pass.end();
  ctx.device.queue.submit([enc.finish()]);
  await ctx.device.queue.onSubmittedWorkDone();
  return m;
}

/** Measured copy bandwidth in bytes/s (bytes read + bytes written), over `reps` copies of `bytes`. */
export async function copyBandwidth(ctx: GpuContext, bytes: number, reps: number): Promise<number> {
  const n = Math.floor(bytes / 16);
  const src = ctx.pool.create("copy.src", n * 16); // [n] vec4<u32>
  const dst = ctx.pool.create("copy.dst", n * 16); // [n] vec4<u32>
  const k = await ctx.pipelines.get("copy.wgsl", "copy");
  const slot = ctx.slot("copy", k);
  slot.write(ctx.device, { n, _a: 0, _b: 0, _c: 0 });
  const run = async (r: number) => {
    const enc = ctx.device.createCommandEncoder({ label: "copy" });
    const pass = enc.beginComputePass();
    for (let i = 0; i < r; i++) ctx.dispatch(pass, k, { p: slot.buffer, src, dst }, ctx.grid2d(Math.ceil(n / 256)));
    pass.end();
    ctx.device.queue.submit([enc.finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
  };
  await run(2); // warm-up
  // Subtract the submit round trip (Deno polls the GPU every ~10 ms) by timing two rep counts.
  const t0 = performance.now();
  await run(reps);
  const t1 = performance.now();
  await run(2 * reps);
  const t2 = performance.now();
  const secondsPerCopy = ((t2 - t1) - (t1 - t0)) / reps / 1000;
  ctx.pool.destroy(src);
  ctx.pool.destroy(dst);
  return (2 * n * 16) / secondsPerCopy;
}
