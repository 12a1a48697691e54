// The kernels suite on CUDA: each case through the backend's launchers (src/backends/cuda/ops.ts) over zero-filled
// buffers (timing only), bf16 weights and KV, f32 activations (the backend's defaults). Each case is captured as one
// CUDA graph of back-to-back launches and timed with device events, so host launch cost (JS validation + FFI) is not
// in the numbers. Ceilings: cuMemcpyDtoD bandwidth and this repo's GEMM at 4096^3, measured in the same run.
import { CudaDevice, CudaTimer, type DeviceBuffer } from "../src/backends/cuda/device.ts";
import type { DevPtr } from "../src/backends/cuda/ffi.ts";
import { GraphCache } from "../src/backends/cuda/graphs.ts";
import { Kernels } from "../src/backends/cuda/kernels.ts";
import { attentionPlan, CudaOps, PF_ROWS, prefillKernelFits, prefillTcFits } from "../src/backends/cuda/ops.ts";
import { cudaSkipReason } from "../src/backends/cuda/testing.ts";
import { UserError } from "../src/core/errors.ts";
import type { ModelSpec } from "../src/core/types.ts";
import {
  type KernelCase,
  kernelCases,
  kernelModel,
  type KernelOptions,
  type KernelRun,
  weightCopies,
} from "./kernels.ts";
import { msPerCall } from "./cuda_common.ts";

const BLOCK = 16;
/** Launches per captured graph (fewer when --reps says so). */
const GRAPH_REPS = 100;

/** Enqueues one call of case `c` on the device's stream; buffers are allocated into `made`. */
function setup(dev: CudaDevice, ops: CudaOps, s: ModelSpec, c: KernelCase, made: DeviceBuffer[]): () => void {
  const buf = (bytes: number): DevPtr => {
    const b = dev.alloc(Math.max(256, bytes), `kbench.${c.kind}`);
    made.push(b);
    dev.memset(b.ptr, 0, b.bytes);
    return b.ptr;
  };
  const ints = (a: Int32Array): DevPtr => {
    const p = buf(a.byteLength);
    dev.upload(p, a); // from pageable memory: staged before the call returns
    return p;
  };
  const h = s.hiddenSize, F = s.intermediateSize, nh = s.numHeads, nkv = s.numKvHeads, d = s.headDim;
  const V = s.vocabSize, T = c.T, W = 2, KV = 2, qkvDim = (nh + 2 * nkv) * d;
  switch (c.kind) {
    case "embed": {
      const table = buf(V * h * W), x = buf(T * h * 4);
      const ids = ints(Int32Array.from({ length: T }, (_, i) => i % V)); // distinct rows: no cache reuse
      return () => ops.embed(table, ids, x, T, h, V);
    }
    case "rmsnorm": {
      const x = buf(T * h * 4), res = buf(T * h * 4), w = buf(h * 4), out = buf(T * h * 4);
      return () => ops.rmsnorm(x, res, 0n, w, out, T, h, s.rmsEps);
    }
    case "gemv":
    case "gemm": {
      const wBytes = c.N * c.K * W, x = buf(T * c.K * 4), y = buf(T * c.N * 4);
      const ws = Array.from({ length: c.kind === "gemv" ? weightCopies(wBytes) : 1 }, () => buf(wBytes));
      let i = 0;
      return () => ops.linear(x, ws[i++ % ws.length]!, 0n, y, T, c.N, c.K);
    }
    case "silu_mul": {
      const gu = buf(T * 2 * F * 4), out = buf(T * F * 4);
      return () => ops.siluMul(gu, out, T, F);
    }
    case "argmax": {
      const logits = buf(V * 4), ids = buf(4);
      return () => ops.argmax(logits, ids, 1, V);
    }
    case "rope_kv": {
      const pos = T === 1 ? Int32Array.of(511) : Int32Array.from({ length: T }, (_, i) => i);
      const rows = pos[T - 1]! + 1, kvBytes = Math.ceil(rows / BLOCK) * nkv * BLOCK * d * KV;
      const positions = ints(pos), cos = buf(rows * (d / 2) * 4), sin = buf(rows * (d / 2) * 4);
      const qkv = buf(T * qkvDim * 4), q = buf(T * nh * d * 4), kCache = buf(kvBytes), vCache = buf(kvBytes);
      const a = { qkv, cos, sin, qNorm: 0n, kNorm: 0n, positions, slots: positions, q, kCache, vCache };
      return () => ops.ropeKv({ ...a, n: T, nh, nkv, d, blockSize: BLOCK, eps: s.rmsEps });
    }
    case "attn_decode":
    case "attn_prefill": {
      const maxBlocks = Math.ceil(c.ctx / BLOCK), kvBytes = maxBlocks * nkv * BLOCK * d * KV;
      const kCache = buf(kvBytes), vCache = buf(kvBytes);
      const blockTables = ints(Int32Array.from({ length: maxBlocks }, (_, i) => i));
      const common = { kCache, vCache, blockTables, nh, nkv, d, blockSize: BLOCK, maxBlocks, window: 0 };
      const scale = 1 / Math.sqrt(d);
      if (c.kind === "attn_decode") {
        const plan = attentionPlan(1, c.ctx);
        const q = buf(nh * d * 4), out = buf(nh * d * 4), positions = ints(Int32Array.of(c.ctx - 1));
        const partO = buf(nh * plan.splits * d * 4), partML = buf(nh * plan.splits * 2 * 4);
        const a = { ...common, q, out, positions, tokenSeq: ints(Int32Array.of(0)), tokenList: 0n, partO, partML };
        return () => ops.attention({ ...a, rows: 1, n: 1, splits: plan.splits, splitLen: plan.splitLen, scale });
      }
      const G = nh / nkv, perTile = Math.max(1, Math.floor(PF_ROWS / G));
      if (!prefillKernelFits(G, d)) throw new UserError(`prefill attention: the CUDA kernel does not take d=${d}`);
      const list: number[] = [];
      for (let t = 0; t < T; t += perTile) list.push(0, t, Math.min(perTile, T - t));
      const positions = ints(Int32Array.from({ length: T }, (_, i) => i));
      const q = buf(T * nh * d * 4), out = buf(T * nh * d * 4), tileList = ints(Int32Array.from(list));
      // The tensor-core kernel where it fits (what 16-bit-activation prefill runs), else the CUDA-core one.
      const kernel = prefillTcFits(ops.kv, G, d) ? "tc" : "cores";
      return () =>
        ops.attentionPrefill({ ...common, q, out, positions, tileList, tiles: list.length / 3, scale, kernel });
    }
  }
}

export async function cudaKernels(o: KernelOptions): Promise<KernelRun> {
  const skip = cudaSkipReason();
  if (skip) throw new UserError(`--backend cuda: ${skip}`);
  const model = o.model ?? "synthetic:llama3-8b";
  const spec = kernelModel(model);
  const cases = kernelCases(spec, o.prefill ?? 2048, { w: 2, kv: 2 });
  const log = (m: string) => o.quiet || console.error(m);
  await using dev = CudaDevice.open(0);
  using kernels = await Kernels.load(dev);
  using graphs = new GraphCache(dev);
  using timer = new CudaTimer(dev);
  const ops = new CudaOps(kernels, "bf16", "bf16", "f32");
  const reps = Math.max(1, Math.min(GRAPH_REPS, o.maxReps));

  /** Seconds per call: warm-up launch, `reps` launches as one graph, best of 3 event-timed replays. */
  const time = async (c: KernelCase): Promise<number> => {
    const made: DeviceBuffer[] = [];
    try {
      const enqueue = setup(dev, ops, spec, c, made);
      return await msPerCall(dev, graphs, timer, enqueue, reps) / 1000;
    } finally {
      graphs.clear();
      await dev.sync();
      for (const b of made) b[Symbol.dispose]();
    }
  };

  // Ceiling 1: device-to-device copy, bytes read + written, 10 copies between two events.
  const copyBytes = Math.min(2 ** 30, Math.floor(dev.memInfo().freeBytes / 4 / 2 ** 20) * 2 ** 20);
  let copy: number;
  {
    using src = dev.alloc(copyBytes, "kbench.src"), dst = dev.alloc(copyBytes, "kbench.dst");
    dev.memset(src.ptr, 1, copyBytes);
    dev.copy(dst.ptr, src.ptr, copyBytes);
    timer.start();
    for (let i = 0; i < 10; i++) dev.copy(dst.ptr, src.ptr, copyBytes);
    copy = (2 * copyBytes * 10) / ((await timer.stop()) / 1000);
  }
  log(`${dev.description}: copy ${(copy / 1e9).toFixed(0)} GB/s`);
  // Ceiling 2: this repo's tensor-core GEMM (f32 activations, as timed below) at 4096^3.
  const S = 4096;
  const peakCase: KernelCase = {
    kind: "gemm",
    kernel: "peak",
    shape: "",
    T: S,
    N: S,
    K: S,
    ctx: 0,
    bytes: 0,
    flops: 0,
  };
  const peak = (2 * S ** 3) / await time(peakCase);
  log(`GEMM ${S}^3: ${(peak / 1e12).toFixed(1)} TFLOP/s`);

  const seconds: number[] = [];
  for (const c of cases) {
    seconds.push(await time(c));
    log(`${c.kernel} ${c.shape}: ${(seconds[seconds.length - 1]! * 1e6).toFixed(2)} us`);
  }
  return {
    device: `CUDA: ${dev.description}`,
    model,
    copyBytesPerS: copy,
    copyNote: `cuMemcpyDtoD of ${copyBytes / 2 ** 20} MiB`,
    peakFlopsPerS: peak,
    peakNote: `this backend's mma.sync GEMM (bf16 weights, f32 activations) at ${S}^3`,
    seconds,
    cases,
  };
}
