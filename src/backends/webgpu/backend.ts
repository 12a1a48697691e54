// The WebGPU backend: the portable GPU path (lavapipe in CI, Vulkan/Metal/D3D12 elsewhere).
//
// Design
// - Weights are packed once at load (weights.ts): fused qkv [(nh + 2 nkv) d, h] and gate|up [2F, h] matrices in
//   WT = f16 when 16-bit weights are asked for and shader-f16 exists (else f32 holding the f16-rounded values);
//   norms and biases in f32 buffers. All arithmetic accumulates in f32. int8/int4/fp8 precisions (and AWQ/GPTQ/fp8
//   checkpoints) hold the linear layers as packed QuantMatrix buffers dequantized in the GEMV/GEMM load path
//   (qlinear.ts; fp8: e4m3 codes decoded by bit moves, wgsl/qweight.wgsl); embedding, LM head and norms then keep the
//   checkpoint's values unrounded.
// - KV cache: one buffer per layer for K and one for V, [numBlocks, kvHeads, blockSize, headDim] KT (f32 or f16),
//   or for int8/int4 [numBlocks, kvHeads] regions of packed q then per-token f16 (scale, zero) pairs
//   (wgsl/kv_quant.wgsl; quantized on write exactly as quant/reference.ts kvRoundTrip, dequantized in attention's
//   loads), so a block is contiguous (copyBlocks is a buffer copy) and each buffer stays under
//   maxStorageBufferBindingSize; kvBytesPerBlock is the reference's kvHeadBytes count, i.e. the real bytes.
// - A step (forward.ts) is one command buffer with one compute pass over all layers, per layer:
//   rmsnorm(+residual) → qkv GEMV/GEMM → rope_kv (q/k norm, RoPE, KV write) → attention (decode split-K and/or
//   prefill tiles) → o GEMV/GEMM → rmsnorm(+residual) → gate|up → silu_mul → down; decode-sized steps over dense
//   matrices take the fused 5-dispatch layer instead (layers.ts, fused.ts). Then the final norm and LM head
//   run only on rows that need logits, the GPU sampler picks ids where sampling.ts allows, and ids plus any
//   host-bound logits rows are copied into one staging buffer, read with one mapAsync.
// - Waiting in Deno 2.9: mapAsync polls the device with a blocking wait on the calling thread, then sleeps 10 ms
//   per poll round. So a step costs at least ~11 ms of wall time however small, and in-thread the event loop is
//   blocked while the GPU works: serve through WorkerBackend (worker_backend.ts), which runs this on a worker.
//   decodeSteps() (multistep.ts) amortises the wait: k decode steps submitted back to back, ids fed back on the GPU.
// - Kernels are WGSL files (/wgsl), composed by a tiny loader, with bind group layouts and uniform layouts
//   reflected by wgsl_reflect (shaders.ts). Pipelines compile once at load; bind groups are cached by buffer
//   identity and reused across steps; uniforms are rewritten with writeBuffer only when values change; scratch
//   buffers grow only (buffers.ts), so a warm decode step allocates no GPU memory.
// - Decode (memory-bound): GEMV streams each weight row once with vec4<WT> loads for all decode tokens at once.
// - memory(): WebGPU cannot report free device memory. The budget is opts.memoryBytes, else 512 MiB on a software
//   adapter (lavapipe: host RAM) and min(4 x maxBufferSize, 8 GiB) on hardware; freeBytes = budget - bytes this
//   backend holds, capped at what the per-layer K/V buffers can still bind (2 x layers x maxStorageBufferBindingSize
//   minus the KV already held). Pass memoryBytes to use more of a big GPU.
import type {
  Backend,
  BackendSupport,
  KvDType,
  MemoryInfo,
  ModelSpec,
  MultiStepDecode,
  Precision,
  ProgressFn,
  StepInputs,
  StepResult,
  TensorSource,
} from "../../core/types.ts";
import { ropeTables } from "../../model/rope.ts";
import { kvLayerBytes, type KvStore } from "./attention.ts";
import { GpuContext } from "./context.ts";
import { type GpuDevice, type GpuDeviceOptions, openGpuDevice } from "./device.ts";
import { createModelOps, type ModelOps, type ModelState, runStep } from "./forward.ts";
import { dropLookAhead, runDecodeSteps } from "./multistep.ts";
import { WEBGPU_MULTI_STEP } from "./sampling.ts";
import { checkBlockCopies, kvBytesPerBlockFor, kvLayerBytesChecked, kvStoreOf } from "./kv.ts";
import { loadGpuWeights } from "./weights.ts";
import { quantFormat } from "../../quant/types.ts";
import { isQuant } from "./qlinear.ts";
import type { GpuWeights } from "./weights.ts";

const HARDWARE_BUDGET = 8 * 2 ** 30;
const SOFTWARE_BUDGET = 512 * 2 ** 20;

export interface WebGpuOptions extends GpuDeviceOptions {
  /** Device memory this backend may use in total (weights, scratch, KV); see memory(). */
  readonly memoryBytes?: number;
  /** Fixed split-K partition of decode attention, in keys (tests); default: chosen per step. */
  readonly attentionPartition?: number;
  /** Fused decode kernels (layers.ts; default true). false runs the 9-dispatch layer (tests compare the two). */
  readonly fuse?: boolean;
}

interface Loaded {
  readonly spec: ModelSpec;
  readonly precision: Precision;
  readonly w: GpuWeights;
  readonly ops: ModelOps;
  readonly kt: KvStore;
  /** [maxPositions, headDim / 2] vec2<f32> (cos, sin) */
  readonly rope: GPUBuffer;
}

export class WebGpuBackend implements Backend {
  readonly name = "webgpu" as const;
  readonly supports: BackendSupport;
  readonly device: string;
  /** The adapter is a software rasterizer (lavapipe / llvmpipe): "auto" backend selection passes it over. */
  readonly software: boolean;
  readonly #gpu: GpuDevice;
  readonly #ctx: GpuContext;
  readonly #opts: WebGpuOptions;
  #m: Loaded | null = null;
  /** Per layer K and V caches (attention.ts kvLayerBytes: dense KT, or int8/int4 regions per (block, head)). */
  #kc: GPUBuffer[] = [];
  #vc: GPUBuffer[] = [];
  #numBlocks = 0;
  #blockSize = 0;
  /** Error scopes of copyBlocks() submissions, checked by the next forward(). */
  #pending: Promise<GPUError | null>[] = [];
  /** Steps run one at a time (the staging buffer is shared). */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(gpu: GpuDevice, opts: WebGpuOptions = {}) {
    this.#gpu = gpu;
    this.#opts = opts;
    this.#ctx = new GpuContext(gpu.device, gpu.hasF16, gpu.hasTimestamps);
    this.device = `${gpu.description} (WebGPU${gpu.hasF16 ? ", shader-f16" : ""})`;
    this.software = gpu.adapter.info.isFallbackAdapter;
    this.supports = {
      weight: ["f32", "f16", "bf16", "int8", "int4", "fp8"],
      // The int8/int4 cache needs no shader-f16 (pack2x16float is core WGSL), so every adapter offers it.
      kv: gpu.hasF16 ? ["f32", "f16", "int8", "int4"] : ["f32", "int8", "int4"],
    };
  }

  /** The GPU context (kernel tests and benchmarks). */
  get context(): GpuContext {
    return this.#ctx;
  }

  get spec(): ModelSpec {
    if (!this.#m) throw new Error("webgpu backend: no model loaded");
    return this.#m.spec;
  }

  memory(): MemoryInfo {
    const lim = this.#gpu.limits;
    const total = this.#opts.memoryBytes ??
      (this.#gpu.adapter.info.isFallbackAdapter ? SOFTWARE_BUDGET : Math.min(4 * lim.maxBufferSize, HARDWARE_BUDGET));
    let free = Math.max(0, total - this.#ctx.pool.bytes);
    if (this.#m) {
      const kvHeld = [...this.#kc, ...this.#vc].reduce((a, b) => a + b.size, 0);
      free = Math.min(free, 2 * this.#m.spec.numLayers * lim.maxStorageBufferBindingSize - kvHeld);
    }
    return { freeBytes: free, totalBytes: total };
  }

  async load(spec: ModelSpec, weights: TensorSource, precision: Precision, onProgress?: ProgressFn): Promise<void> {
    this.#live();
    if (!this.supports.weight.includes(precision.weight)) {
      throw new Error(`webgpu backend: weight precision ${precision.weight} is not supported`);
    }
    if (!this.supports.kv.includes(precision.kv)) {
      const why = precision.kv === "f16" ? " (the adapter lacks shader-f16)" : "";
      throw new Error(`webgpu backend: KV precision ${precision.kv} is not supported${why}`);
    }
    if (spec.headDim % 4 || spec.headDim > 256 || spec.hiddenSize % 4 || spec.intermediateSize % 4) {
      throw new Error(
        `webgpu backend: head_dim (${spec.headDim}) must be a multiple of 4 up to 256, and hidden ` +
          `(${spec.hiddenSize}) and intermediate (${spec.intermediateSize}) sizes multiples of 4 (vectorised loads)`,
      );
    }
    const ropeBytes = spec.maxPositions * spec.headDim * 4;
    if (ropeBytes > this.#gpu.limits.maxStorageBufferBindingSize) {
      throw new Error(`webgpu backend: the RoPE table for ${spec.maxPositions} positions exceeds one binding`);
    }
    if (precision.kv === "int4" && spec.headDim % 8) {
      throw new Error(`webgpu backend: an int4 KV cache needs head_dim (${spec.headDim}) % 8 == 0`);
    }
    const kt = kvStoreOf(precision.kv);
    dropLookAhead(this.#ctx);
    if (this.#m) this.#unload();
    quantFormat(precision.weight, spec.quantization); // a mismatched quantized checkpoint fails before anything is read
    const w = await loadGpuWeights(this.#ctx, spec, weights, precision, onProgress);
    const ops = await createModelOps(this.#ctx, spec, w, kt);
    const { cos, sin } = ropeTables(spec.rope, spec.headDim, spec.maxPositions);
    const table = new Float32Array(cos.length * 2); // interleaved (cos, sin)
    for (let i = 0; i < cos.length; i++) {
      table[2 * i] = cos[i]!;
      table[2 * i + 1] = sin[i]!;
    }
    const rope = this.#ctx.pool.upload("rope_table", table);
    this.#m = { spec, precision, w, ops, kt, rope };
  }

  kvBytesPerBlock(blockSize: number, kv: KvDType): number {
    return kvBytesPerBlockFor(this.spec, blockSize, kv);
  }

  allocateKv(numBlocks: number, blockSize: number): void {
    this.#live();
    const m = this.#m;
    if (!m) throw new Error("webgpu backend: load() before allocateKv()");
    dropLookAhead(this.#ctx);
    const s = m.spec;
    const bytes = kvLayerBytesChecked(s, numBlocks, blockSize, m.kt, this.#gpu.limits.maxStorageBufferBindingSize);
    this.#releaseKv();
    for (let l = 0; l < s.numLayers; l++) {
      this.#kc.push(this.#ctx.pool.create(`k_cache.${l}`, bytes));
      this.#vc.push(this.#ctx.pool.create(`v_cache.${l}`, bytes));
    }
    this.#numBlocks = numBlocks;
    this.#blockSize = blockSize;
  }

  copyBlocks(src: Int32Array, dst: Int32Array): void {
    this.#live();
    checkBlockCopies(src, dst, this.#numBlocks);
    if (src.length === 0) return;
    dropLookAhead(this.#ctx); // a pending decode look-ahead predicted the blocks before this copy
    const m = this.#m!;
    const s = m.spec;
    const blockBytes = kvLayerBytes({
      numHeads: s.numHeads,
      kvHeads: s.numKvHeads,
      headDim: s.headDim,
      blockSize: this.#blockSize,
      numBlocks: 1,
    }, m.kt);
    // WebGPU forbids a copy within one buffer, so blocks go through a staging buffer: [n, block bytes]. Every
    // layout keeps a block contiguous (int8/int4: its kvHeads regions, values and scales together).
    const tmp = this.#ctx.pool.scratch("copy_blocks", src.length * blockBytes);
    const dev = this.#ctx.device;
    dev.pushErrorScope("validation");
    const enc = dev.createCommandEncoder({ label: "copy_blocks" });
    for (let l = 0; l < s.numLayers; l++) {
      for (const cache of [this.#kc[l]!, this.#vc[l]!]) {
        for (let i = 0; i < src.length; i++) {
          enc.copyBufferToBuffer(cache, src[i]! * blockBytes, tmp, i * blockBytes, blockBytes);
        }
        for (let i = 0; i < dst.length; i++) {
          enc.copyBufferToBuffer(tmp, i * blockBytes, cache, dst[i]! * blockBytes, blockBytes);
        }
      }
    }
    dev.queue.submit([enc.finish()]); // ordered before any later step on the same queue
    this.#pending.push(dev.popErrorScope()); // copyBlocks is synchronous: the next forward() reports an error
  }

  forward(step: StepInputs): Promise<StepResult> {
    const run = this.#tail.then(async () => {
      const errors = await Promise.all(this.#pending.splice(0));
      const err = errors.find((e) => e);
      if (err) throw new Error(`webgpu copyBlocks failed: ${err.message}`);
      dropLookAhead(this.#ctx); // forward() rewrites the token buffer a decode look-ahead continues from
      return await this.#forward(step);
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  /** Multi-step decode (multistep.ts): k steps in one call, sampled ids fed back on the GPU. */
  readonly multiStep: MultiStepDecode = WEBGPU_MULTI_STEP;

  decodeSteps(step: StepInputs, k: number): Promise<Int32Array> {
    const run = this.#tail.then(async () => {
      const errors = await Promise.all(this.#pending.splice(0));
      const err = errors.find((e) => e);
      if (err) throw new Error(`webgpu copyBlocks failed: ${err.message}`);
      return await runDecodeSteps(this.#state(), step, k);
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  #forward(step: StepInputs): Promise<StepResult> {
    return runStep(this.#state(), step);
  }

  #state(): ModelState {
    this.#live();
    const m = this.#m;
    if (!m) throw new Error("webgpu backend: no model loaded");
    return {
      ctx: this.#ctx,
      spec: m.spec,
      w: m.w,
      ops: m.ops,
      rope: m.rope,
      kc: this.#kc,
      vc: this.#vc,
      numBlocks: this.#numBlocks,
      blockSize: this.#blockSize,
      partition: this.#opts.attentionPartition ?? 0,
      fuse: this.#opts.fuse ?? true,
    };
  }

  #live(): void {
    if (this.#gpu.lostReason) throw new Error(`webgpu device lost (${this.#gpu.lostReason})`);
  }

  /** Frees the loaded model's weights, RoPE table and KV before another load(). */
  #unload(): void {
    const m = this.#m!;
    const layerBufs = m.w.layers.flatMap((l) => Object.values(l)).flatMap((b) => b && isQuant(b) ? [b.w, b.sb] : [b]);
    const bufs = [m.rope, m.w.embed, m.w.lmHead, m.w.finalNorm, ...layerBufs];
    for (const b of new Set(bufs)) if (b) this.#ctx.pool.destroy(b);
    this.#releaseKv();
    this.#m = null;
  }

  #releaseKv(): void {
    for (const b of [...this.#kc, ...this.#vc]) this.#ctx.pool.destroy(b);
    this.#kc = [];
    this.#vc = [];
    this.#numBlocks = 0;
    this.#ctx.invalidateBindGroups();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#tail;
    this.#ctx.destroy();
    this.#m = null;
    this.#kc = [];
    this.#vc = [];
    this.#gpu.device.destroy();
  }
}

/** Opens the adapter and device and returns an empty backend (load() next). Throws when no adapter exists. */
export async function createWebGpuBackend(opts: WebGpuOptions = {}): Promise<WebGpuBackend> {
  return new WebGpuBackend(await openGpuDevice(opts), opts);
}
