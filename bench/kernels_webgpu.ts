// The kernels suite on WebGPU: each case's op (src/backends/webgpu/kernels.ts, attention.ts) recorded many times into
// one compute pass over zero-filled buffers (timing only), the copy kernel's bandwidth and a large GEMM's rate as the
// ceilings. Timing: see calibratedPerCall in bench/kernels.ts.
import { openGpuDevice } from "../src/backends/webgpu/device.ts";
import { GpuContext } from "../src/backends/webgpu/context.ts";
import { BYTES, EmbedOp, LinearOp, RmsNormOp, SampleOp, SiluMulOp } from "../src/backends/webgpu/kernels.ts";
import { AttentionOp, kvLayerBytes, planAttention, RopeKvOp } from "../src/backends/webgpu/attention.ts";
import { copyBandwidth } from "../src/backends/webgpu/synthetic.ts";
import type { StorageType } from "../src/backends/webgpu/shaders.ts";
import type { ModelSpec } from "../src/core/types.ts";
import {
  calibratedPerCall,
  type KernelCase,
  kernelCases,
  kernelModel,
  type KernelOptions,
  type KernelRun,
  weightCopies,
} from "./kernels.ts";

type Encode = (pass: GPUComputePassEncoder) => void;
const BLOCK = 16;

/** Records the calls of case `c` (its buffers come from the pool and are freed by the caller). */
async function setup(
  ctx: GpuContext,
  s: ModelSpec,
  c: KernelCase,
  wt: StorageType,
  made: GPUBuffer[],
): Promise<Encode> {
  const keep = (b: GPUBuffer) => (made.push(b), b);
  const buf = (n: number) => keep(ctx.pool.create(`k.${c.kind}`, Math.max(256, n)));
  const up = (a: Int32Array | Uint32Array | Uint8Array) => keep(ctx.pool.upload(`k.${c.kind}.in`, a));
  const h = s.hiddenSize, F = s.intermediateSize, nh = s.numHeads, nkv = s.numKvHeads, d = s.headDim;
  const V = s.vocabSize, T = c.T, qkvDim = (nh + 2 * nkv) * d, name = `kbench.${c.kind}.${c.shape}`;
  switch (c.kind) {
    case "embed": {
      const op = await EmbedOp.create(ctx, name, wt);
      op.prepare({ n: T, h, vocab: V });
      const ids = up(Int32Array.from({ length: T }, (_, i) => i % V)); // distinct rows: no cache reuse
      const b = { ids, table: buf(V * h * BYTES[wt]), x: buf(T * h * 4) };
      return (p) => op.encode(p, b);
    }
    case "rmsnorm": {
      const op = await RmsNormOp.create(ctx, name);
      op.prepare({ n: T, h, eps: s.rmsEps, residual: true, gather: false, rows: T });
      const b = { x: buf(T * h * 4), r: buf(T * h * 4), w: buf(h * 4), y: buf(T * h * 4) };
      return (p) => op.encode(p, b);
    }
    case "gemv":
    case "gemm": {
      const op = await LinearOp.create(ctx, name, wt);
      op.prepare({ M: T, N: c.N, K: c.K, bias: false });
      const wBytes = c.N * c.K * BYTES[wt], x = buf(T * c.K * 4), y = buf(T * c.N * 4);
      const ws = Array.from({ length: c.kind === "gemv" ? weightCopies(wBytes) : 1 }, () => buf(wBytes));
      let i = 0;
      return (p) => op.encode(p, { x, w: ws[i++ % ws.length]!, y });
    }
    case "silu_mul": {
      const op = await SiluMulOp.create(ctx, name);
      op.prepare({ T, F });
      const b = { gu: buf(T * 2 * F * 4), act: buf(T * F * 4) };
      return (p) => op.encode(p, b);
    }
    case "argmax": {
      const op = await SampleOp.create(ctx, name);
      op.prepare({ rows: 1, vocab: V, row0: 0 });
      const cfg = new DataView(new ArrayBuffer(16)); // temperature 0: greedy
      cfg.setUint32(4, 0, true), cfg.setFloat32(8, 1, true), cfg.setFloat32(12, 0.5, true);
      const b = { logits: buf(V * 4), cfg: up(new Uint8Array(cfg.buffer)), ids: buf(4) };
      return (p) => op.encode(p, b);
    }
    case "rope_kv": {
      // Decode: the token at position 511; prefill: positions 0..T-1.
      const positions = T === 1 ? Int32Array.of(511) : Int32Array.from({ length: T }, (_, i) => i);
      const rows = positions[T - 1]! + 1, numBlocks = Math.ceil(rows / BLOCK);
      const dims = { numHeads: nh, kvHeads: nkv, headDim: d, blockSize: BLOCK, numBlocks };
      const op = await RopeKvOp.create(ctx, name, wt);
      op.prepare({ ...dims, T, qkNorm: false, eps: s.rmsEps, ropeRows: rows });
      const kvBytes = kvLayerBytes(dims, wt), pos = up(positions);
      const b = {
        qkv: buf(T * qkvDim * 4),
        pos,
        slots: pos,
        rope: buf(rows * d * 4),
        kc: buf(kvBytes),
        vc: buf(kvBytes),
      };
      return (p) => op.encode(p, b);
    }
    case "attn_decode":
    case "attn_prefill": {
      const decode = c.kind === "attn_decode";
      const positions = decode ? Int32Array.of(c.ctx - 1) : Int32Array.from({ length: T }, (_, i) => i);
      const numBlocks = Math.ceil(c.ctx / BLOCK);
      const dims = { numHeads: nh, kvHeads: nkv, headDim: d, blockSize: BLOCK, numBlocks };
      const plan = planAttention(Int32Array.of(0, T), positions, nh, null);
      const op = await AttentionOp.create(ctx, name, wt, d);
      op.prepare({ ...dims, maxBlocks: numBlocks, qStride: qkvDim, window: null, scale: 1 / Math.sqrt(d) }, plan);
      const kvBytes = kvLayerBytes(dims, wt);
      const b = {
        qkv: buf(T * qkvDim * 4),
        kc: buf(kvBytes),
        vc: buf(kvBytes),
        bt: up(Int32Array.from({ length: numBlocks }, (_, i) => i)),
        items: plan.nItems ? up(plan.items) : buf(16),
        tiles: plan.nTiles ? up(plan.tiles) : buf(32),
        pos: up(positions),
        out: buf(T * nh * d * 4),
        part: buf(AttentionOp.partialBytes(plan, nh, d)),
      };
      return (p) => op.encode(p, b);
    }
  }
}

/** Wall ms of r calls in one compute pass, one submit, waited for. */
function runner(ctx: GpuContext, encode: Encode): (r: number) => Promise<number> {
  return async (r) => {
    const t0 = performance.now();
    const enc = ctx.device.createCommandEncoder({ label: "kernels bench" });
    const pass = enc.beginComputePass();
    for (let i = 0; i < r; i++) encode(pass);
    pass.end();
    ctx.device.queue.submit([enc.finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
}

export async function webgpuKernels(o: KernelOptions): Promise<KernelRun> {
  const g = await openGpuDevice();
  const ctx = new GpuContext(g.device, g.hasF16);
  try {
    const software = g.adapter.info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader|software/i.test(g.description);
    const model = o.model ?? (software ? "synthetic:tiny" : "synthetic:llama3-8b");
    const spec = kernelModel(model);
    const wt: StorageType = ctx.hasF16 ? "f16" : "f32";
    const cases = kernelCases(spec, o.prefill ?? (software ? 512 : 2048), { w: BYTES[wt], kv: BYTES[wt] });
    const targetMs = software ? 30 : 150;
    const log = (m: string) => o.quiet || console.error(m);

    // Ceiling 1: the WGSL copy kernel (bytes read + written); noise can make one measurement useless, so best of 3.
    const lim = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
    const copyBytes = Math.min(software ? 32 * 2 ** 20 : 2 ** 30, Math.floor(lim / 16) * 16);
    let copy = 0;
    for (let i = 0; i < 3; i++) copy = Math.max(copy, await copyBandwidth(ctx, copyBytes, software ? 4 : 20));
    if (!(copy > 0)) throw new Error("webgpu: the copy-bandwidth probe measured no time (too noisy)");
    log(`${g.description}: copy ${(copy / 1e9).toFixed(1)} GB/s`);

    // Ceiling 2: this backend's tiled GEMM at S^3 (4096^3 on a GPU; a software adapter would take minutes).
    const S = software ? 512 : 4096;
    const peakCase = { kind: "gemm", kernel: "peak", shape: `S=${S}`, T: S, N: S, K: S, ctx: 0, bytes: 0, flops: 0 };
    const peakSeconds = await timeCase(ctx, spec, peakCase as KernelCase, wt, targetMs, Math.min(o.maxReps, 64));
    const peak = (2 * S ** 3) / peakSeconds;
    log(`GEMM ${S}^3: ${(peak / 1e12).toFixed(3)} TFLOP/s`);

    const seconds: number[] = [];
    for (const c of cases) {
      seconds.push(await timeCase(ctx, spec, c, wt, targetMs, o.maxReps));
      log(`${c.kernel} ${c.shape}: ${(seconds[seconds.length - 1]! * 1e6).toFixed(1)} us`);
    }
    return {
      device: `WebGPU: ${g.description}`,
      model,
      copyBytesPerS: copy,
      copyNote: `WGSL vec4 copy of ${copyBytes / 2 ** 20} MiB`,
      peakFlopsPerS: peak,
      peakNote: `this backend's ${wt}-weight GEMM at ${S}^3`,
      seconds,
      cases,
    };
  } finally {
    ctx.destroy();
    g.device.destroy();
  }
}

async function timeCase(
  ctx: GpuContext,
  spec: ModelSpec,
  c: KernelCase,
  wt: StorageType,
  targetMs: number,
  maxReps: number,
): Promise<number> {
  const made: GPUBuffer[] = [];
  ctx.device.pushErrorScope("validation");
  let seconds = NaN;
  try {
    seconds = await calibratedPerCall(runner(ctx, await setup(ctx, spec, c, wt, made)), targetMs, maxReps);
  } finally {
    const err = await ctx.device.popErrorScope();
    for (const b of made) ctx.pool.destroy(b);
    ctx.invalidateBindGroups();
    if (err) seconds = NaN, console.error(`webgpu ${c.kernel} ${c.shape}: validation error: ${err.message}`);
  }
  if (!(seconds > 0)) throw new Error(`webgpu ${c.kernel} ${c.shape}: no valid time`);
  return seconds;
}
